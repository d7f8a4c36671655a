//! Reads over HTTP of a store damaged after the server opened it: every
//! read answers `500 store_damaged` naming the file and seq instead of a
//! short answer, and a stream that meets the damage mid-way ends as a
//! failure a client can detect (a last error line or event, then an
//! aborted body), never as a clean end.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
#![allow(
    clippy::indexing_slicing,
    reason = "tests fail loudly on unexpected errors"
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::Method;
use http_body_util::BodyExt as _;
use sealog::format::frame::{self, FrameRead};
use sealog::format::segment::{FOOTER_LEN, HEADER_LEN, SegmentFooter};
use sealog_testkit::client::Client;
use sealog_testkit::server::TestServer;
use serde_json::Value;

/// Sealed segment files of the store in `dir` (each with its footer), in
/// log order.
fn sealed_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .filter(|p| {
            let bytes = std::fs::read(p).unwrap();
            bytes.len() > FOOTER_LEN
                && SegmentFooter::decode(&bytes[bytes.len() - FOOTER_LEN..])
                    .is_ok_and(|f| f.file_len() == bytes.len() as u64)
        })
        .collect();
    files.sort();
    files
}

fn first_seq(path: &Path) -> u64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// A server whose store holds several sealed segments of `ingest.*`
/// events.
async fn server_with_sealed_segments() -> (TestServer, Vec<PathBuf>) {
    let server = TestServer::with_sealed_segments("ingest.one").await;
    // Sealed in the store's view: their footers are on disk too, but a
    // moment may pass before the file listing shows it.
    for _ in 0..200 {
        if sealed_files(&server.dir).len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let files = sealed_files(&server.dir);
    assert!(files.len() >= 3, "{files:?}");
    (server, files)
}

/// Flips a byte inside the record of frame `n` of `file`, in place (the
/// server's memory map sees it); returns the frame's offset.
fn damage_record_in_place(file: &Path, n: usize) -> u64 {
    use std::os::unix::fs::FileExt as _;
    let bytes = std::fs::read(file).unwrap();
    let mut pos = HEADER_LEN;
    for _ in 0..n {
        let Ok(FrameRead::Frame(f)) = frame::read_frame(&bytes[pos..]) else {
            panic!("frame {n}");
        };
        pos += f.len;
    }
    let Ok(FrameRead::Frame(f)) = frame::read_frame(&bytes[pos..]) else {
        panic!("frame {n}");
    };
    let at = pos + f.len - 20;
    let out = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    out.write_all_at(&[bytes[at] ^ 0x10], at as u64).unwrap();
    out.sync_all().unwrap();
    pos as u64
}

fn assert_damaged(body: &Value, file: &str, seq: u64) {
    let error = &body["error"];
    assert_eq!(error["code"], "store_damaged", "{body}");
    assert_eq!(error["file"], file, "{body}");
    assert_eq!(error["seq"], seq, "{body}");
    assert!(
        error["message"].as_str().unwrap().contains("sealog verify"),
        "{body}"
    );
}

/// Reads a streamed body until it ends: its bytes, and whether it ended
/// with an error (aborted) rather than cleanly.
async fn read_stream(c: &mut Client, path: &str, headers: &[(&str, &str)]) -> (u16, String, bool) {
    let response = c
        .send(Method::GET, path, headers, bytes::Bytes::new())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut text = String::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), body.frame())
            .await
            .expect("the stream moves within 20 s")
        {
            None => return (status, text, false),
            Some(Err(_)) => return (status, text, true),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    text.push_str(&String::from_utf8_lossy(&data));
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_of_a_record_damaged_under_the_server_fails_and_streams_end_as_failures() {
    let (server, files) = server_with_sealed_segments().await;
    let target = &files[1];
    let file = format!("segments/{}", target.file_name().unwrap().to_str().unwrap());
    let bad = first_seq(target) + 3;
    damage_record_in_place(target, 3);
    let mut c = server.admin();

    // A page that holds the record.
    let r = c.get("/v1/events?order=oldest&limit=10000").await.unwrap();
    assert_eq!(r.status, 500, "{}", r.text());
    assert_damaged(&r.json(), &file, bad);
    // The record itself, its receipt and its inclusion proof.
    for path in [
        format!("/v1/events/{bad}"),
        format!("/v1/events/{bad}?proof=true"),
        format!("/v1/proof/inclusion?seq={bad}"),
    ] {
        let r = c.get(&path).await.unwrap();
        assert_eq!(r.status, 500, "{path}: {}", r.text());
        assert_damaged(&r.json(), &file, bad);
    }
    // Its neighbours read.
    let r = c.get(&format!("/v1/events/{}", bad + 1)).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // The export: the records before the damage, a last error line, and a
    // body that never ends cleanly.
    let (status, text, aborted) = read_stream(
        &mut c,
        "/v1/events?order=oldest",
        &[("accept", "application/x-ndjson")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(aborted, "the export ended cleanly: {}", text.len());
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (last, records) = lines.split_last().unwrap();
    assert_damaged(last, &file, bad);
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..bad).collect::<Vec<_>>());

    // A tail resuming before the damage: the records before it, an `error`
    // event, then an aborted stream.
    let mut follower = server.admin();
    let last_id = (bad - 2).to_string();
    let (status, text, aborted) = read_stream(
        &mut follower,
        "/v1/tail",
        &[("last-event-id", last_id.as_str())],
    )
    .await;
    assert_eq!(status, 200);
    assert!(aborted, "the tail ended cleanly: {text}");
    let blocks: Vec<&str> = text
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .collect();
    let id = |block: &str| {
        block
            .lines()
            .find_map(|l| l.strip_prefix("id:"))
            .map(|v| v.trim().parse::<u64>().unwrap())
    };
    assert_eq!(id(blocks[0]), Some(bad - 1), "{text}");
    assert_eq!(blocks.len(), 2, "{text}");
    let error = blocks.last().unwrap();
    assert!(error.contains("event: error"), "{text}");
    let data = error
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .unwrap()
        .trim();
    assert_damaged(&serde_json::from_str(data).unwrap(), &file, bad);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_of_a_store_whose_sealed_segment_was_deleted_under_the_server_is_an_error() {
    let (server, files) = server_with_sealed_segments().await;
    let mut c = server.admin();
    let r = c.get("/v1/stats").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let target = &files[1];
    let file = format!("segments/{}", target.file_name().unwrap().to_str().unwrap());
    std::fs::remove_file(target).unwrap();
    let r = c.get("/v1/stats").await.unwrap();
    assert_eq!(r.status, 500, "{}", r.text());
    let body = r.json();
    assert_eq!(body["error"]["code"], "store_damaged", "{body}");
    assert_eq!(body["error"]["file"], file.as_str(), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is missing"),
        "{body}"
    );
    server.stop().await;
}
