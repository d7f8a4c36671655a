//! The key filters (`key-filters`): a lookup of one value opens only the
//! indexes of segments whose filter may hold it, and no damage to the file
//! ever hides a record.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::path::Path;

use sealog::format::keyfilter::{
    ENTRY_HEADER_LEN, EntryHead, FILE_HEADER_LEN, KeyFilterBuilder, encode_file_header,
};
use sealog::query::{ActionPattern, ActorFilter, Query};
use sealog::{CorruptionKind, Durability, Error, Record, Store};
use sealog_tests::small_options;

const SEGMENTS: u64 = 12;
const PER_SEGMENT: u64 = 150;

/// A store of [`SEGMENTS`] sealed segments of realistic events, closed;
/// returns every record.
fn store(dir: &Path) -> Vec<Record> {
    let store = Store::open(dir, small_options(1 << 20)).unwrap();
    let workload = sealog::workload::Workload::new(5);
    for i in 0..SEGMENTS {
        store
            .append_batch_with(
                workload.events(i * PER_SEGMENT, (i + 1) * PER_SEGMENT),
                Durability::Buffered,
            )
            .unwrap();
        store.roll().unwrap();
    }
    store.wait_sealed().unwrap();
    let all = store.scan(..).map(|r| r.unwrap()).collect();
    store.close().unwrap();
    all
}

/// Queries naming values of records spread over the store, and values no
/// record has.
fn queries(all: &[Record]) -> Vec<Query> {
    let mut queries = Vec::new();
    for r in all.iter().step_by(97) {
        let e = &r.event;
        if let Some(id) = &e.request_id {
            queries.push(Query {
                request_id: Some(id.clone()),
                ..Query::default()
            });
        }
        queries.push(Query {
            actor: Some(ActorFilter::parse(&format!(
                "{}:{}",
                e.actor.kind, e.actor.id
            ))),
            limit: 1000,
            ..Query::default()
        });
        queries.push(Query {
            actions: vec![ActionPattern::new(&e.action).unwrap()],
            resource: e.resource.id.as_ref().map(|id| {
                sealog::query::ResourceFilter::parse(&format!("{}:{id}", e.resource.kind))
            }),
            limit: 1000,
            ..Query::default()
        });
    }
    queries.push(Query {
        request_id: Some("no-such-request".into()),
        ..Query::default()
    });
    queries.push(Query {
        actor: Some(ActorFilter::parse("user:nobody")),
        ..Query::default()
    });
    queries
}

fn seqs(store: &Store, q: &Query) -> Vec<u64> {
    store
        .query(q)
        .unwrap()
        .records
        .iter()
        .map(|r| r.seq)
        .collect()
}

/// The answers of [`queries`] with no key filters at all (the file
/// removed for the while).
fn answers_without_filters(dir: &Path, all: &[Record]) -> Vec<(Query, Vec<u64>)> {
    let path = dir.join("key-filters");
    let aside = dir.join("key-filters.aside");
    std::fs::rename(&path, &aside).unwrap();
    let store = Store::open_read_only(dir).unwrap();
    let answers = queries(all)
        .into_iter()
        .map(|q| {
            let got = seqs(&store, &q);
            (q, got)
        })
        .collect();
    drop(store);
    std::fs::rename(&aside, &path).unwrap();
    answers
}

/// Every query answers as it does without key filters, on a read-only
/// open.
fn assert_answers(dir: &Path, expected: &[(Query, Vec<u64>)], what: &str) {
    let store = Store::open_read_only(dir).unwrap();
    for (q, want) in expected {
        assert_eq!(&seqs(&store, q), want, "{what}: {q:?}");
    }
}

/// The byte ranges of the entries' filter blocks in the file.
fn block_ranges(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut at = FILE_HEADER_LEN;
    let mut ranges = Vec::new();
    while at < bytes.len() {
        let head = EntryHead::parse(&bytes[at..]).unwrap();
        ranges.push(at + head.head_len() as usize..at + head.len() as usize);
        at += head.len() as usize;
    }
    ranges
}

#[test]
fn a_lookup_opens_only_the_indexes_of_the_segments_its_filters_admit() {
    let dir = tempfile::tempdir().unwrap();
    let all = store(dir.path());
    let filters = dir.path().join("key-filters");
    assert_eq!(
        block_ranges(&std::fs::read(&filters).unwrap()).len() as u64,
        SEGMENTS,
        "an entry per sealed segment"
    );
    // Without their indexes, the segments a search looks into are rebuilt
    // (in memory, on a read-only open), and counted.
    for file in sealog_tests::index_files(dir.path()) {
        std::fs::remove_file(file).unwrap();
    }
    let r = &all[(5 * PER_SEGMENT + 17) as usize];
    let q = Query {
        request_id: r.event.request_id.clone(),
        ..Query::default()
    };
    let store = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(seqs(&store, &q), [r.seq]);
    let opened = store.stats().index_rebuilds;
    assert!((1..=2).contains(&opened), "{opened} indexes opened");
    let nobody = Query {
        actor: Some(ActorFilter::parse("user:nobody")),
        ..Query::default()
    };
    assert_eq!(seqs(&store, &nobody), Vec::<u64>::new());
    assert!(store.stats().index_rebuilds - opened <= 1);
    drop(store);

    std::fs::remove_file(&filters).unwrap();
    let store = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(seqs(&store, &q), [r.seq]);
    assert_eq!(
        store.stats().index_rebuilds,
        SEGMENTS,
        "without the filters"
    );
}

#[test]
fn no_damage_to_the_key_filters_hides_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let all = store(dir.path());
    let path = dir.path().join("key-filters");
    let good = std::fs::read(&path).unwrap();
    let ranges = block_ranges(&good);
    let first = EntryHead::parse(&good[FILE_HEADER_LEN..]).unwrap();
    let expected = answers_without_filters(dir.path(), &all);
    assert!(
        expected.iter().filter(|(_, got)| !got.is_empty()).count() >= 20,
        "most queries find records"
    );
    assert_answers(dir.path(), &expected, "intact");

    // Every filter page zeroed under intact heads: a filter read without
    // its page checks would say that no segment holds anything.
    let mut zeroed = good.clone();
    for r in &ranges {
        zeroed[r.clone()].fill(0);
    }
    // A stale entry appended: the first segment's, but for a segment with
    // another footer, covering every field and holding no key.
    let mut stale_identity = first.identity;
    stale_identity.segment_footer_crc ^= 1;
    let mut empty = KeyFilterBuilder::new();
    for field in sealog::format::index::IndexField::ALL {
        empty.cover(*field);
    }
    let mut stale = good.clone();
    stale.extend_from_slice(&empty.encode(&stale_identity));
    // The first segment's entry again, covering no field: it holds no key,
    // and says nothing about any field.
    let mut uncovered = good.clone();
    uncovered.extend_from_slice(&KeyFilterBuilder::new().encode(&first.identity));
    let mut foreign = good.clone();
    foreign[..FILE_HEADER_LEN].copy_from_slice(&encode_file_header(&[0xab; 16]));
    let garbage: Vec<u8> = (0..good.len()).map(|i| (i * 131 % 251) as u8).collect();
    let mid_head = ranges[SEGMENTS as usize / 2].start - ENTRY_HEADER_LEN;
    let mut bad_head = good.clone();
    bad_head[mid_head + 20] ^= 0x40;
    // A power loss during an append: the file's new length reached the
    // disk, not the bytes (zeros); or the head did and not the pages.
    let last = EntryHead::parse(&good[ranges[SEGMENTS as usize - 2].end..]).unwrap();
    let mut length_only = good.clone();
    length_only.resize(good.len() + last.len() as usize, 0);
    let mut head_only = good.clone();
    head_only[ranges[SEGMENTS as usize - 1].clone()].fill(0);
    let damages: [(&str, Vec<u8>, bool); 9] = [
        ("an append's length kept, not its bytes", length_only, true),
        (
            "the last append's head kept, not its pages",
            head_only,
            true,
        ),
        ("pages zeroed", zeroed, false),
        ("a stale entry", stale, true),
        ("an entry that covers no field", uncovered, false),
        ("another store's file", foreign, false),
        ("random bytes", garbage, false),
        (
            "cut in the middle of an entry",
            good[..ranges[7].start + 100].to_vec(),
            true,
        ),
        ("a damaged head halfway", bad_head, false),
    ];
    for (what, bytes, verifies) in damages {
        std::fs::write(&path, &bytes).unwrap();
        assert_answers(dir.path(), &expected, what);
        match sealog::verify_dir(dir.path()) {
            Ok(_) => assert!(verifies, "{what}: verify found nothing"),
            Err(Error::Corruption(c)) => {
                assert!(!verifies, "{what}: {c}");
                assert!(
                    matches!(c.kind, CorruptionKind::KeyFilters { .. }),
                    "{what}: {c}"
                );
                assert_eq!(c.location.file, "key-filters", "{what}");
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }

    // A writable open writes what readers cannot use again.
    for (what, bytes) in [
        ("cut short", good[..ranges[3].start + 10].to_vec()),
        ("another store's file", {
            let mut b = good.clone();
            b[..FILE_HEADER_LEN].copy_from_slice(&encode_file_header(&[0xab; 16]));
            b
        }),
        ("last entry's pages zeroed", {
            let mut b = good.clone();
            b[ranges[SEGMENTS as usize - 1].clone()].fill(0);
            b
        }),
        ("missing", Vec::new()),
        // A power loss within an append's head: part of it and zeros.
        ("an append cut within its head", {
            let mut b = good.clone();
            let at = ranges[SEGMENTS as usize - 1].start - last.head_len() as usize;
            b[at + 40..].fill(0);
            b
        }),
    ] {
        if bytes.is_empty() {
            std::fs::remove_file(&path).unwrap();
        } else {
            std::fs::write(&path, &bytes).unwrap();
        }
        let store = Store::open(dir.path(), small_options(1 << 20)).unwrap();
        // At once, before the sealer writes the missing entries again:
        // nothing that is left reads as damage.
        store
            .verify()
            .unwrap_or_else(|e| panic!("{what}: verify after a writable open: {e}"));
        store.close().unwrap();
        let report = sealog::verify_dir(dir.path()).unwrap();
        assert_eq!(report.key_filters_checked, SEGMENTS, "{what}");
        assert_eq!(report.key_filters_missing, 0, "{what}");
        assert_answers(dir.path(), &expected, what);
    }
}

#[test]
fn verify_names_an_entry_rewritten_to_hide_a_segments_values() {
    let dir = tempfile::tempdir().unwrap();
    let all = store(dir.path());
    let path = dir.path().join("key-filters");
    let good = std::fs::read(&path).unwrap();
    let report = sealog::verify_dir(dir.path()).unwrap();
    assert_eq!(report.key_filters_checked, SEGMENTS);
    // Someone who can write the store clears segment 4's filter and
    // recomputes its CRCs: queries trust it (derived data, like a
    // sidecar) and miss that segment's records; verify names the entry.
    let ranges = block_ranges(&good);
    let r = &ranges[4];
    let entry = r.start - 4 - ENTRY_HEADER_LEN;
    let head = EntryHead::parse(&good[entry..]).unwrap();
    assert_eq!(head.head_len(), (ENTRY_HEADER_LEN + 4) as u64, "one page");
    let mut bytes = good.clone();
    bytes[r.clone()].fill(0);
    let crc = crc32fast::hash(&bytes[r.clone()]);
    bytes[r.start - 4..r.start].copy_from_slice(&crc.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[entry..entry + 92]);
    h.update(&bytes[entry + ENTRY_HEADER_LEN..r.start]);
    bytes[entry + 92..entry + 96].copy_from_slice(&h.finalize().to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let hidden = &all[(4 * PER_SEGMENT + 3) as usize];
    let q = Query {
        request_id: hidden.event.request_id.clone(),
        ..Query::default()
    };
    assert_eq!(
        seqs(&Store::open_read_only(dir.path()).unwrap(), &q),
        Vec::<u64>::new()
    );
    match sealog::verify_dir(dir.path()) {
        Err(Error::Corruption(c)) => {
            assert!(matches!(c.kind, CorruptionKind::KeyFilters { .. }), "{c}");
            // The head's CRC is the first byte that differs.
            assert_eq!(c.location.offset, Some(entry as u64 + 92), "{c}");
            assert!(
                c.to_string().contains(&format!(
                    "the entry of segments/{:020}.seg",
                    head.identity.first_seq
                )),
                "{c}"
            );
        }
        other => panic!("{other:?}"),
    }
    // The fix verify gives: remove the file; a writable open writes it again.
    std::fs::remove_file(&path).unwrap();
    Store::open(dir.path(), small_options(1 << 20))
        .unwrap()
        .close()
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap().len(), good.len());
    assert_eq!(
        seqs(&Store::open_read_only(dir.path()).unwrap(), &q),
        [hidden.seq]
    );
}
