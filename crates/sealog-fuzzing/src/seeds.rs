//! Small valid inputs for every target: the seed corpus.
//!
//! Built from the golden fixtures (`crates/sealog-format/tests/fixtures`,
//! `tests/fixtures/store-v1`) and from a tiny store this module writes with
//! the engine (4 KiB segments, a signed checkpoint, sidecars; its sealed
//! segments compressed, and one larger compressed segment with a
//! dictionary), so each target starts from inputs that pass its parsers and reach deep code.
//! `cargo run -p sealog-fuzzing --bin fuzz-seeds -- fuzz/corpus` writes them.

use std::path::Path;

use sealog::checkpoint::CheckpointOptions;
use sealog::{Preallocation, Store, StoreOptions};
use sealog_format::compressed::{self, CompressOptions};
use sealog_format::frame;

use crate::segment_recovery::{Entry, Mode, pack};

const FORMAT_FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../sealog-format/tests/fixtures/v1"
);
const STORE_FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/store-v1");
const NDJSON_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/store-v1.ndjson"
);

/// One seed: the target, a file name, the bytes.
pub type Seed = (&'static str, String, Vec<u8>);

fn read(path: impl AsRef<Path>) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
}

/// The files of a store directory as archive entries, in log order.
fn store_files(dir: &Path) -> std::io::Result<Vec<(Entry, Vec<u8>)>> {
    let mut files = vec![(Entry::Manifest, read(dir.join("STORE"))?)];
    let mut names: Vec<String> = std::fs::read_dir(dir.join("segments"))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    for name in names {
        files.push((Entry::Segment, read(dir.join("segments").join(&name))?));
        let idx = dir.join("segments").join(name.replace(".seg", ".idx"));
        if idx.exists() {
            files.push((Entry::Sidecar, read(idx)?));
        }
    }
    for (entry, path) in [
        (Entry::Leaves, "tree/leaves"),
        (Entry::Level1, "tree/level-1"),
        (Entry::Checkpoints, "checkpoints.log"),
    ] {
        if let Ok(bytes) = read(dir.join(path)) {
            files.push((entry, bytes));
        }
    }
    Ok(files)
}

/// Trailing zeros of a preallocated open segment add nothing for a fuzzer.
fn trim_zeros(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    bytes.get(..end).unwrap_or_default()
}

fn packed(mode: Mode, files: &[(Entry, Vec<u8>)]) -> Vec<u8> {
    let refs: Vec<(Entry, &[u8])> = files
        .iter()
        .map(|(e, b)| {
            (
                *e,
                if *e == Entry::Segment {
                    trim_zeros(b)
                } else {
                    b.as_slice()
                },
            )
        })
        .collect();
    pack(mode, &refs)
}

/// Every seed.
pub fn all() -> Result<Vec<Seed>, Box<dyn std::error::Error>> {
    let mut seeds: Vec<Seed> = Vec::new();
    let fixtures = Path::new(FORMAT_FIXTURES);
    for name in ["frames.bin", "record-full.bin", "record-minimal.bin"] {
        seeds.push(("frame_record", name.to_owned(), read(fixtures.join(name))?));
    }

    // A tiny live store: 4 KiB segments, sealed ones with sidecars, a
    // signed checkpoint.
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("store");
    let key = crate::fuzz_key();
    let options = StoreOptions {
        segment_size: sealog::MIN_SEGMENT_SIZE,
        preallocation: Preallocation::Allocate,
        checkpoints: Some(CheckpointOptions {
            on_seal: false,
            every: None,
            ..CheckpointOptions::new(key.clone())
        }),
        ..StoreOptions::default()
    };
    let store = Store::open(&dir, options.clone())?;
    for i in 0..30u64 {
        store.append_batch([
            crate::query_cursor::store_event(i),
            crate::query_cursor::store_event(i + 100),
        ])?;
    }
    store.wait_sealed()?;
    let checkpoint = store.checkpoint()?;
    let receipt = store.receipt(3)?;
    store.close()?;
    // One batch after the checkpoint, written without the key (a writer
    // with it would sign a checkpoint covering the batch as it closes): the
    // torn-tail seed cuts into it.
    let store = Store::open(
        &dir,
        StoreOptions {
            checkpoints: None,
            ..options
        },
    )?;
    store.append_batch([
        crate::query_cursor::store_event(7),
        crate::query_cursor::store_event(8),
    ])?;
    let mut frames = Vec::new();
    for seq in [0u64, 1, 59] {
        if let Some(body) = store.get_raw(seq)? {
            seeds.push(("frame_record", format!("store-record-{seq}"), body.clone()));
            frame::encode_frame(&body, frame::FRAME_COMMIT, &mut frames)?;
        }
    }
    seeds.push(("frame_record", "store-frames".into(), frames));
    store.close()?;

    let files = store_files(&dir)?;
    seeds.push((
        "segment_recovery",
        "live-store".into(),
        packed(Mode::default(), &files),
    ));
    seeds.push((
        "segment_recovery",
        "live-store-grow".into(),
        packed(Mode { grow: true }, &files),
    ));
    // The open segment torn in its last frame: recovery's truncation.
    let mut torn = files.clone();
    if let Some((_, last)) = torn.iter_mut().rfind(|(e, _)| *e == Entry::Segment) {
        let end = trim_zeros(last).len();
        last.truncate(end.saturating_sub(40));
    }
    seeds.push((
        "segment_recovery",
        "torn-tail".into(),
        packed(Mode::default(), &torn),
    ));
    // The committed v1 fixture.
    let fixture = store_files(Path::new(STORE_FIXTURE))?;
    seeds.push((
        "segment_recovery",
        "store-v1".into(),
        packed(Mode::default(), &fixture),
    ));

    // The live store's first sealed segment, compressed: as the sealer
    // writes it (one block, no dictionary: too few records), and in blocks
    // of about 512 bytes.
    if let Some((_, image)) = files.iter().find(|(e, b)| {
        *e == Entry::Segment && compressed::compress(b, &no_dictionary(16 << 10)).is_ok()
    }) {
        seeds.push((
            "compressed_segment",
            "sealed".into(),
            compressed::compress(image, &CompressOptions::default())?,
        ));
        seeds.push((
            "compressed_segment",
            "sealed-blocks".into(),
            compressed::compress(image, &no_dictionary(512))?,
        ));
    }
    // A segment of 1,100 records with a dictionary.
    seeds.push((
        "compressed_segment",
        "dictionary".into(),
        dictionary_segment()?,
    ));

    for (n, (entry, bytes)) in files.iter().enumerate() {
        if *entry == Entry::Sidecar {
            seeds.push(("index_sidecar", format!("sidecar-{n}"), bytes.clone()));
        }
    }
    // A sidecar whose columns and hashed index span several blocks, and
    // whose actor dictionary has a term filter (the live store's segments
    // are too small for either).
    seeds.push(("index_sidecar", "sidecar-blocks".into(), blocked_sidecar()?));

    seeds.push((
        "checkpoint_note",
        "checkpoint".into(),
        checkpoint.text.clone().into_bytes(),
    ));
    seeds.push((
        "checkpoint_note",
        "verifier-key".into(),
        key.verifier().to_text().into_bytes(),
    ));
    seeds.push((
        "checkpoint_note",
        "signing-key".into(),
        key.to_text().into_bytes(),
    ));
    let note_body = sealog_format::note::Note::parse(&checkpoint.text)?
        .text()
        .to_owned();
    seeds.push((
        "checkpoint_note",
        "checkpoint-body".into(),
        note_body.into_bytes(),
    ));

    let mut r = vec![0u8];
    r.extend_from_slice(receipt.as_bytes());
    seeds.push(("receipt_proof", "receipt".into(), r));
    for (n, bytes) in [
        vec![1u8; 64],
        (0u8..=255).collect::<Vec<u8>>(),
        [1u8, 1, 0, 3, 2, 7, 0, 9].repeat(40),
    ]
    .into_iter()
    .enumerate()
    {
        seeds.push(("receipt_proof", format!("proofs-{n}"), bytes));
    }

    for (n, bytes) in [
        vec![0u8; 64],
        (0u8..64).collect::<Vec<u8>>(),
        [1u8, 0, 1, 4, 0, 1, 11, 1, 2, 0, 1, 5].repeat(8),
        [1u8, 4, 1, 14, 0, 0, 1, 0, 20, 1].repeat(8),
    ]
    .into_iter()
    .enumerate()
    {
        seeds.push(("query_cursor", format!("query-{n}"), bytes));
    }

    let ndjson = std::fs::read_to_string(NDJSON_FIXTURE)?;
    for (n, line) in ndjson.lines().take(12).enumerate() {
        seeds.push((
            "event_json",
            format!("export-{n}"),
            line.as_bytes().to_vec(),
        ));
        if n < 3 {
            // The event without the store's fields, as `append --json` takes it.
            let mut value: serde_json::Value = serde_json::from_str(line)?;
            if let Some(o) = value.as_object_mut() {
                o.remove("seq");
                o.remove("recorded_at");
            }
            seeds.push((
                "event_json",
                format!("event-{n}"),
                serde_json::to_vec(&value)?,
            ));
        }
    }
    let batch: Vec<&str> = ndjson.lines().skip(20).take(5).collect();
    seeds.push((
        "event_json",
        "ndjson-batch".into(),
        batch.join("\n").into_bytes(),
    ));
    seeds.push((
        "event_json",
        "repeated-metadata-key".into(),
        br#"{"actor":{"type":"user","id":"a"},"action":"auth.login","resource":{"type":"session"},"outcome":"success","metadata":{"user":{"role":"user","role":"admin"}}}"#.to_vec(),
    ));
    seeds.push((
        "event_json",
        "bidi-identifier".into(),
        "{\"actor\":{\"type\":\"user\",\"id\":\"\u{202e}nimda\"},\"action\":\"auth.login\",\"resource\":{\"type\":\"session\"},\"outcome\":\"success\"}".as_bytes().to_vec(),
    ));
    seeds.push((
        "event_json",
        "secret-metadata".into(),
        br#"{"actor":{"type":"user","id":"a"},"action":"auth.login","resource":{"type":"session"},"outcome":"success","metadata":{"nested":{"api_key":"x","ok":[1,2.5,{"password":"y"}]}}}"#.to_vec(),
    ));
    for (n, query) in [
        "actor=user%3Aalice&action=customer.*&action=auth.login&resource=customer:&outcome=denied&source_ip=10.0.0.0/8&from=2023-11-01T00:00:00Z&order=oldest&limit=5",
        "tenant=t1&request_id=req-3&resource_type=invoice&to=2030-01-01T00:00:00Z&limit=3",
        "order=newest&limit=2",
        "limit=2&cursor=v1.n.5.0",
        "actr=alice&limit=1&limit=2",
        "actor=%FF&source_ip=2001:db8::/32",
        "seq=3&tree_size=10",
        "from=2&to=7",
        "since=1h&order=time&limit=3",
        "from=2023-11-14&to=2023-11-14&order=time_oldest&count=true",
        "since=2d&to=2023-11-20&count=false",
    ]
    .into_iter()
    .enumerate()
    {
        seeds.push((
            "server_query_string",
            format!("query-{n}"),
            query.as_bytes().to_vec(),
        ));
    }
    // A real cursor, as a client sends it back.
    if let Some(store) = crate::query_cursor::store() {
        let q = sealog::query::Query {
            limit: 2,
            ..sealog::query::Query::default()
        };
        if let Some(cursor) = store.query(&q)?.next_cursor {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("limit", "2")
                .append_pair("cursor", &cursor)
                .finish();
            seeds.push(("server_query_string", "cursor".into(), query.into_bytes()));
        }
    }

    // Ingest: framing byte, most events (16), largest event (64 KiB), body.
    let events: Vec<String> = ndjson
        .lines()
        .skip(30)
        .take(4)
        .map(|line| {
            let mut value: serde_json::Value = serde_json::from_str(line)?;
            if let Some(o) = value.as_object_mut() {
                o.remove("seq");
                o.remove("recorded_at");
            }
            serde_json::to_string(&value)
        })
        .collect::<Result<_, _>>()?;
    let ingest = |framing: u8, max_events: u8, max_event: u16, body: String| {
        let mut bytes = vec![framing, max_events];
        bytes.extend(max_event.to_le_bytes());
        bytes.extend(body.into_bytes());
        bytes
    };
    let one = events.first().cloned().unwrap_or_default();
    for (name, bytes) in [
        ("object", ingest(0, 15, u16::MAX, one.clone())),
        (
            "array",
            ingest(0, 15, u16::MAX, format!("[{}]", events.join(","))),
        ),
        (
            "ndjson",
            ingest(1, 15, u16::MAX, format!("{}\r\n\n", events.join("\n"))),
        ),
        (
            "ndjson-bad-lines",
            ingest(
                1,
                15,
                u16::MAX,
                format!(
                    "{one}\n{{oops\n{}\n",
                    one.replace("\"action\":\"", "\"action\":\"X ")
                ),
            ),
        ),
        (
            "array-over-limits",
            ingest(0, 1, 200, format!("[{one},{one}]")),
        ),
    ] {
        seeds.push(("server_ingest", name.into(), bytes));
    }
    Ok(seeds)
}

/// A sidecar of 1,100 records with an actor dictionary: both columns
/// longer than a 4 KiB block, so it has block checksums for both.
fn blocked_sidecar() -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    use sealog_format::index::{IndexBuilder, IndexField, SegmentIdentity};
    let n = 1_100u32;
    let mut b = IndexBuilder::new(SegmentIdentity {
        store_id: [7; 16],
        segment_no: 3,
        first_seq: 5_000,
        record_count: u64::from(n),
        segment_footer_crc: 0x5eed,
    });
    b.set_columns(
        (0..n).map(|i| i * 211).collect(),
        (0..n)
            .map(|i| 1_700_000_000_000_000_000 + i64::from(i % 97) * 1_000_000_007)
            .collect(),
    )?;
    b.add_hashed_field(IndexField::RequestId);
    for i in 0..n {
        b.add_term(IndexField::Actor, format!("user:{}", i % 300).as_bytes(), i)?;
        // 13,208 bytes of hashed index: four blocks with checksums.
        b.add_hashed(
            IndexField::RequestId,
            format!("req-{}", i / 2).as_bytes(),
            i,
        )?;
    }
    Ok(b.encode()?)
}

/// Compression without a dictionary, in blocks of about `block_target`
/// bytes.
fn no_dictionary(block_target: usize) -> CompressOptions {
    CompressOptions {
        block_target,
        dictionary_len: 0,
        ..CompressOptions::default()
    }
}

/// A sealed segment of 1,100 records written by the engine, compressed
/// with a dictionary of at most 4 KiB (the writer trains one only on 64
/// samples, every 16th record, of 16 KiB in all: the live store's 4 KiB
/// segments are far too small) at level 19, in the writer's 16 KiB blocks,
/// so that it fits [`crate::MAX_INPUT`]. Every record carries a note of
/// about 150 bytes, so the samples are large enough whichever records they
/// are.
fn dictionary_segment() -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("store");
    let store = Store::open(
        &dir,
        StoreOptions {
            segment_size: 1 << 20,
            preallocation: Preallocation::None,
            ..StoreOptions::default()
        },
    )?;
    let words = [
        "invoice", "customer", "export", "refund", "login", "session",
    ];
    for batch in 0..11u64 {
        store.append_batch((batch * 100..(batch + 1) * 100).map(|i| {
            let mut m = sealog_format::Metadata::new();
            let note: Vec<&str> = (0..22)
                .map(|k| words[((i * 7 + k * 3) % words.len() as u64) as usize])
                .collect();
            m.insert("note".into(), note.join(" ").into());
            crate::query_cursor::store_event(i).with_metadata(m)
        }))?;
    }
    store.roll()?;
    store.wait_sealed()?;
    store.close()?;
    let mut names: Vec<_> = std::fs::read_dir(dir.join("segments"))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    let first = names.first().ok_or("the store has no segment")?;
    let image = read(dir.join("segments").join(first))?;
    Ok(compressed::compress(
        &image,
        &CompressOptions {
            level: 19,
            dictionary_len: 4 << 10,
            ..CompressOptions::default()
        },
    )?)
}

#[cfg(test)]
mod tests {
    use sealog_format::compressed::CompressedSegment;

    #[test]
    fn the_dictionary_seed_has_a_dictionary_and_fits() -> Result<(), Box<dyn std::error::Error>> {
        let file = super::dictionary_segment()?;
        assert!(file.len() <= crate::MAX_INPUT, "{} bytes", file.len());
        let segment = CompressedSegment::parse(&file)?;
        assert!(
            !segment.dictionary().is_empty(),
            "no dictionary was trained"
        );
        assert!(segment.block_count() > 1);
        segment.decode_image()?;
        Ok(())
    }
}
