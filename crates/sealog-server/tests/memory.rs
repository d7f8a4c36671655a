//! Memory stays within the in-flight budget (`ingest_inflight_bytes`,
//! which covers bodies and their parsed events), measured with a counting
//! allocator. This file is a test binary of its own so that the allocator
//! sees only the server under test, and its tests run one at a time.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
#![allow(clippy::indexing_slicing, reason = "tests fail loudly")]
#![allow(
    unsafe_code,
    reason = "a global allocator that counts bytes is the only in-process measure of memory"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::Method;
use bytes::Bytes;
use sealog::format::validate::Validator;
use sealog_server::ingest::{self, Framing};
use sealog_server::{Layer, Limits};

use sealog_testkit::server::{Setup, TestServer};

/// Counts the bytes allocated now and the most at any moment.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = CURRENT.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(n: usize) {
    CURRENT.fetch_sub(n, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator with the same
// arguments; the counters are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Large blocks are moved by remapping pages, not copied: count
            // the change in size only.
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The tests of this file, one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const MIB: usize = 1 << 20;

/// What the server may use beyond the budget: connection buffers, tasks,
/// one event being parsed per core (uncharged until it is parsed: at most
/// about 16 times `max_event_bytes`), error responses.
const OVERHEAD: usize = 8 * MIB;

/// Runs `test` alone (no other test of this file allocates meanwhile) on a
/// runtime of two workers.
fn alone<F: std::future::Future<Output = ()>>(test: impl FnOnce() -> F) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(test());
}

/// Starts measuring: the peak from now, above what is allocated now.
fn start() -> usize {
    let now = CURRENT.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}

fn peak_since(base: usize) -> usize {
    PEAK.load(Ordering::Relaxed).saturating_sub(base)
}

/// Posts `body` from `clients` connections at once; returns the statuses
/// and error codes.
async fn flood(
    server: &TestServer,
    clients: usize,
    headers: &'static [(&'static str, &'static str)],
    body: Bytes,
) -> Vec<(u16, String)> {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut c = server.admin();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            match c.request(Method::POST, "/v1/events", headers, body).await {
                Ok(r) => (r.status, r.error_code()),
                Err(e) => (0, e.to_string()),
            }
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn zeros_array(len: usize) -> Bytes {
    let mut body = Vec::with_capacity(len);
    body.push(b'[');
    while body.len() + 4 <= len {
        body.extend_from_slice(b"0,");
    }
    body.extend_from_slice(b"0]");
    assert!(body.len() <= len);
    Bytes::from(body)
}

#[test]
fn four_concurrent_16_mib_arrays_of_zeros_stay_within_the_ingest_budget() {
    alone(|| async {
        let limits = Limits::default();
        let budget = usize::try_from(limits.ingest_inflight_bytes).unwrap();
        let server = TestServer::start(Setup::default()).await;
        let body = zeros_array(usize::try_from(limits.max_body_bytes).unwrap());
        let base = start();
        let answers = flood(
            &server,
            4,
            &[("content-type", "application/json")],
            body.clone(),
        )
        .await;
        let peak = peak_since(base);
        eprintln!(
            "four 16 MiB arrays of zeros: peak {:.1} MiB above the start; answers {answers:?}",
            peak as f64 / MIB as f64
        );
        for (status, code) in &answers {
            assert!(
                (*status, code.as_str()) == (413, "too_many_events")
                    || (*status, code.as_str()) == (503, "ingest_saturated"),
                "{status} {code}"
            );
        }
        assert!(answers.iter().any(|(s, _)| *s == 413));
        assert!(
            peak <= budget + OVERHEAD,
            "peak {peak} bytes, budget {budget} + overhead {OVERHEAD}"
        );
        // NDJSON bodies of zeros, one per line, are bounded the same way.
        let mut lines = Vec::with_capacity(body.len());
        while lines.len() + 2 <= body.len() {
            lines.extend_from_slice(b"0\n");
        }
        let lines = Bytes::from(lines);
        drop(body);
        let base = start();
        let answers = flood(
            &server,
            4,
            &[("content-type", "application/x-ndjson")],
            lines,
        )
        .await;
        let peak = peak_since(base);
        eprintln!(
            "four 16 MiB NDJSON bodies of zeros: peak {:.1} MiB; answers {answers:?}",
            peak as f64 / MIB as f64
        );
        assert!(answers.iter().any(|(s, _)| *s == 413));
        assert!(peak <= budget + OVERHEAD, "peak {peak} bytes");
    });
}

#[test]
fn a_decompression_bomb_is_refused_without_decoding_past_the_body_limit() {
    alone(|| async {
        let limits = Limits::default();
        let budget = usize::try_from(limits.ingest_inflight_bytes).unwrap();
        // 1 GiB of zeros (inside a JSON array, as an attacker would send it),
        // compressed to about a megabyte with gzip and to kilobytes with zstd.
        let chunk = vec![b'0'; MIB];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut zs = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        gz.write_all(b"[").unwrap();
        zs.write_all(b"[").unwrap();
        for _ in 0..1024 {
            gz.write_all(&chunk).unwrap();
            zs.write_all(&chunk).unwrap();
        }
        let gz = Bytes::from(gz.finish().unwrap());
        let zs = Bytes::from(zs.finish().unwrap());
        drop(chunk);
        eprintln!(
            "1 GiB bombs: gzip {} bytes, zstd {} bytes",
            gz.len(),
            zs.len()
        );
        let server = TestServer::start(Setup::default()).await;
        let gzip: &'static [(&str, &str)] = &[("content-encoding", "gzip")];
        let zstd: &'static [(&str, &str)] = &[("content-encoding", "zstd")];
        for (headers, bomb) in [(gzip, gz), (zstd, zs)] {
            let base = start();
            let started = std::time::Instant::now();
            let answers = flood(&server, 2, headers, bomb).await;
            let peak = peak_since(base);
            eprintln!(
                "{headers:?} bomb from two clients: peak {:.1} MiB, {:?}, answers {answers:?}",
                peak as f64 / MIB as f64,
                started.elapsed()
            );
            for (status, code) in &answers {
                assert_eq!((*status, code.as_str()), (413, "body_too_large"));
            }
            assert!(peak <= budget + OVERHEAD, "peak {peak} bytes");
        }
    });
}

/// The budget a parse reports must cover what the parse really allocates,
/// however the events are shaped.
#[test]
fn the_parsed_events_estimate_covers_their_real_memory() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let limits = Limits::default();
    let validator = Validator::default();
    let zeros = vec!["0"; 4000].join(",");
    let nested = format!("{}{}", "[".repeat(15), "]".repeat(15));
    let keys: Vec<String> = (0..1000).map(|i| format!("\"k{i}\":0")).collect();
    let shapes = [
        r#"{"actor":{"type":"user","id":"a"},"action":"x.y","resource":{"type":"r"},"outcome":"success"}"#.to_owned(),
        format!(
            r#"{{"actor":{{"type":"user","id":"a","on_behalf_of":{{"type":"u","id":"b"}},"session_id":"s"}},"action":"x.y","resource":{{"type":"r","id":"1"}},"outcome":"success","tenant":"t","source":{{"ip":"::1","user_agent":"ua"}},"request_id":"r","reason":"{}","metadata":{{"a":[{zeros}]}}}}"#,
            "w".repeat(1000)
        ),
        format!(
            r#"{{"actor":{{"type":"user","id":"a"}},"action":"x.y","resource":{{"type":"r"}},"outcome":"success","metadata":{{"n":{nested},"m":{{{}}}}}}}"#,
            keys.join(",")
        ),
        // Not events at all: each is a problem listed in the answer.
        "0".to_owned(),
        r#"{"actor":5}"#.to_owned(),
    ];
    for shape in &shapes {
        for framing in [Framing::Json, Framing::Ndjson] {
            let n = 300;
            let body = match framing {
                Framing::Json => format!("[{}]", vec![shape.as_str(); n].join(",")),
                Framing::Ndjson => vec![shape.as_str(); n].join("\n"),
            };
            let mut reported = 0usize;
            let base = start();
            let result = ingest::parse_within(
                body.as_bytes(),
                framing,
                &limits,
                &validator,
                &mut |bytes| {
                    reported = reported.max(bytes);
                    Ok(())
                },
            );
            let peak = peak_since(base);
            let answer = match &result {
                Ok(b) => format!("{} events", b.events.len()),
                Err(e) => e.code.as_str().to_owned(),
            };
            drop(result);
            eprintln!(
                "{framing:?} {:.40}...: reported {reported}, allocated at most {peak} ({answer})",
                shape
            );
            // What is not reported: one event being parsed, and the
            // refusal's own body.
            let slack = 2 * MIB;
            assert!(
                peak <= reported + slack,
                "{framing:?} `{shape:.60}`: allocated {peak} bytes, reported {reported}"
            );
        }
    }
}

#[test]
fn a_batch_whose_parsed_events_outgrow_the_budget_is_refused_within_it() {
    alone(|| async {
        let budget = 16 * MIB;
        let server = TestServer::start(Setup {
            layer: Layer {
                ingest_inflight_bytes: Some(budget as u64),
                max_body_bytes: Some(4 << 20),
                ..Layer::default()
            },
            ..Setup::default()
        })
        .await;
        // Events whose metadata is an array of zeros: each 2 bytes of JSON
        // become a 72-byte value once parsed.
        let zeros = vec!["0"; 3000].join(",");
        let one = format!(
            r#"{{"actor":{{"type":"user","id":"a"}},"action":"x.y","resource":{{"type":"r"}},"outcome":"success","metadata":{{"a":[{zeros}]}}}}"#
        );
        let n = (4 << 20) / (one.len() + 1);
        let body = Bytes::from(vec![one.as_str(); n].join("\n"));
        let base = start();
        let answers = flood(
            &server,
            1,
            &[("content-type", "application/x-ndjson")],
            body,
        )
        .await;
        let peak = peak_since(base);
        eprintln!(
            "{n} events of {} bytes with large metadata: peak {:.1} MiB, answers {answers:?}",
            one.len(),
            peak as f64 / MIB as f64
        );
        assert_eq!(answers, vec![(413, "batch_too_large".to_owned())]);
        assert!(peak <= budget + OVERHEAD, "peak {peak} bytes");
        // A batch that fits is written.
        let small = Bytes::from([one.as_str(); 10].join("\n"));
        let answers = flood(
            &server,
            1,
            &[("content-type", "application/x-ndjson")],
            small,
        )
        .await;
        assert_eq!(answers[0].0, 200, "{answers:?}");
    });
}
