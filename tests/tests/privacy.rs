//! Privacy policies: the transforms are applied before an event is
//! written (what is stored, hashed and proven is the transformed event; a
//! dropped value never reaches the disk), and a query with the clear value
//! finds the transformed records.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::net::IpAddr;
use std::path::Path;

use sealog::Store;
use sealog::format::{Actor, Event, Metadata, Outcome, Resource};
use sealog::privacy::{PrivacyKey, PrivacyPolicy};
use sealog::query::{ActorFilter, IpFilter, Query, ResourceFilter};
use sealog_tests::small_options;

fn key() -> PrivacyKey {
    PrivacyKey::from_bytes(b"0123456789abcdef0123456789abcdef").unwrap()
}

fn policy() -> PrivacyPolicy {
    PrivacyPolicy::parse(
        &[
            "actor.id=hash",
            "resource.id=hash",
            "source.ip=mask",
            "metadata.email=hash",
            "metadata.phone=drop",
        ],
        Some(key()),
    )
    .unwrap()
}

fn personal_event(actor: &str, ip: &str) -> Event {
    let mut metadata = Metadata::new();
    metadata.insert("email".into(), "alice.liddell@example.com".into());
    metadata.insert("phone".into(), "+44-555-0199".into());
    metadata.insert("plan".into(), "pro".into());
    Event::new(
        Actor::new("user", actor),
        "customer.update",
        Resource::new("customer", "cust-8812"),
        Outcome::Success,
    )
    .with_source_ip(ip.parse().unwrap())
    .with_metadata(metadata)
}

fn open_with(dir: &Path, privacy: PrivacyPolicy) -> Store {
    let options = sealog::StoreOptions {
        privacy,
        ..small_options(64 << 10)
    };
    Store::open(dir, options).unwrap()
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else {
            out.extend(std::fs::read(&path).unwrap());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_stored_record_is_the_transformed_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), policy());
    let receipt = store.append(personal_event("alice", "10.1.2.3")).unwrap();
    store.close().unwrap();

    // Read back without the policy: the record itself is transformed.
    let store = Store::open(dir.path(), small_options(64 << 10)).unwrap();
    let record = store.get(receipt.seq).unwrap().unwrap();
    let k = key();
    assert_eq!(record.event.actor.id, k.hash(b"alice"));
    assert_eq!(
        record.event.resource.id.as_deref(),
        Some(k.hash(b"cust-8812").as_str())
    );
    assert_eq!(
        record.event.source.as_ref().unwrap().ip,
        Some("10.1.2.0".parse::<IpAddr>().unwrap())
    );
    let metadata = record.event.metadata.as_ref().unwrap();
    assert_eq!(
        metadata["email"],
        k.hash(b"alice.liddell@example.com").as_str()
    );
    assert_eq!(metadata["plan"], "pro");
    assert!(!metadata.contains_key("phone"));
    // The chain and the tree cover the transformed record.
    // The log's first record says which rules (and key id) applied.
    let first = store.get(0).unwrap().unwrap();
    assert_eq!(first.event.action, sealog::privacy::POLICY_ACTION);
    let report = store.verify().unwrap();
    assert_eq!(report.records, 2, "{report:?}");
    store.close().unwrap();
}

#[test]
fn dropped_and_hashed_values_never_reach_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), policy());
    // Enough records to seal segments, so that indexes are written too.
    for i in 0..400 {
        store
            .append(personal_event(&format!("alice-{i}"), "10.1.2.3"))
            .unwrap();
    }
    store.close().unwrap();
    let bytes = all_bytes(dir.path());
    assert!(contains(&bytes, b"plan"), "the test reads the stored bytes");
    // (The dropped key's name is on disk by design: the record of the
    // policy names its rules, `metadata.phone=drop`. Its value is not.)
    for clear in [
        &b"+44-555-0199"[..],
        b"alice.liddell",
        b"alice-1",
        b"cust-8812",
    ] {
        assert!(
            !contains(&bytes, clear),
            "`{}` is on disk",
            String::from_utf8_lossy(clear)
        );
    }
}

#[test]
fn a_query_with_the_clear_value_finds_the_transformed_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), policy());
    store.append(personal_event("alice", "10.1.2.3")).unwrap();
    store.append(personal_event("bob", "10.1.3.3")).unwrap();
    store
        .append(personal_event("alice", "2001:db8:1:2::7"))
        .unwrap();
    // Seq 0 is the record of the policy: the events are 1, 2, 3, and the
    // figures below count from the first event.
    let found = |q: Query| -> Vec<u64> {
        let seqs: Vec<u64> = store
            .query(&q)
            .unwrap()
            .records
            .iter()
            .map(|r| r.seq - 1)
            .collect();
        assert_eq!(store.count(&q).unwrap(), seqs.len() as u64, "{q:?}");
        let mut lazily: Vec<u64> = store
            .matches(&q)
            .unwrap()
            .map(|r| r.unwrap().seq - 1)
            .collect();
        lazily.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(lazily, seqs, "{q:?}");
        seqs
    };
    let actor = |text: &str| Query {
        actor: Some(ActorFilter::parse(text)),
        ..Query::default()
    };
    let ip = |text: &str| Query {
        source_ip: Some(IpFilter::parse(text).unwrap()),
        ..Query::default()
    };
    assert_eq!(found(actor("user:alice")), [2, 0]);
    assert_eq!(found(actor("bob")), [1]);
    assert_eq!(found(actor("carol")), Vec::<u64>::new());
    // The stored form is taken as it is.
    assert_eq!(found(actor(&key().hash(b"bob"))), [1]);
    assert_eq!(
        found(Query {
            resource: Some(ResourceFilter::parse("customer:cust-8812")),
            ..Query::default()
        }),
        [2, 1, 0]
    );
    assert_eq!(found(ip("10.1.2.3")), [0]);
    // Every address of the masked /24 is the same once masked.
    assert_eq!(found(ip("10.1.2.200")), [0]);
    assert_eq!(found(ip("10.1.2.128/25")), [0]);
    assert_eq!(found(ip("10.1.0.0/16")), [1, 0]);
    assert_eq!(found(ip("2001:db8:1:ffff::1")), [2]);

    // Without the policy, the clear values are not in the records.
    store.close().unwrap();
    let plain = Store::open(dir.path(), small_options(64 << 10)).unwrap();
    assert!(
        plain
            .query(&actor("user:alice"))
            .unwrap()
            .records
            .is_empty()
    );
    plain.close().unwrap();
}

#[test]
fn another_key_gives_other_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), policy());
    store.append(personal_event("alice", "10.1.2.3")).unwrap();
    store.close().unwrap();
    let other = PrivacyKey::from_bytes(&[9u8; 32]).unwrap();
    let store = open_with(
        dir.path(),
        PrivacyPolicy::parse(&["actor.id=hash"], Some(other)).unwrap(),
    );
    let q = Query {
        actor: Some(ActorFilter::parse("user:alice")),
        ..Query::default()
    };
    assert!(store.query(&q).unwrap().records.is_empty());
    store.close().unwrap();
}

#[test]
fn the_log_records_each_change_of_rules_or_key_and_only_a_change() {
    use sealog::privacy::PolicyDescription;
    let dir = tempfile::tempdir().unwrap();
    let recorded = |store: &Store| store.recorded_privacy_policy().unwrap();
    // No rules: nothing recorded, nothing looked up.
    let store = Store::open(dir.path(), small_options(64 << 10)).unwrap();
    store.append(personal_event("alice", "10.1.2.3")).unwrap();
    assert_eq!(recorded(&store), None);
    store.close().unwrap();
    // Rules: recorded once, with the key's id, not again on the next open.
    let expected = PolicyDescription {
        rules: vec![
            "actor.id=hash".into(),
            "metadata.email=hash".into(),
            "metadata.phone=drop".into(),
            "resource.id=hash".into(),
            "source.ip=mask".into(),
        ],
        key_id: Some(key().id()),
    };
    for _ in 0..2 {
        let store = open_with(dir.path(), policy());
        assert_eq!(recorded(&store), Some((1, expected.clone())));
        assert_eq!(store.len(), 2);
        store.close().unwrap();
    }
    // Another key is a change: recorded, and the newest wins.
    let other = PrivacyKey::from_bytes(&[9u8; 32]).unwrap();
    let store = open_with(
        dir.path(),
        PrivacyPolicy::parse(&["actor.id=hash"], Some(other.clone())).unwrap(),
    );
    assert_ne!(other.id(), key().id());
    assert_eq!(
        recorded(&store),
        Some((
            2,
            PolicyDescription {
                rules: vec!["actor.id=hash".into()],
                key_id: Some(other.id()),
            }
        ))
    );
    // The record is found whatever the reader's rules: by its action and
    // resource type, not by its (hashed) actor.
    store.close().unwrap();
    let reader = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(recorded(&reader).unwrap().0, 2);
    let record = reader.get(2).unwrap().unwrap();
    assert_eq!(record.event.actor.id, other.hash(b"sealog"));
    // Rules without a hash name no key.
    drop(reader);
    let store = open_with(
        dir.path(),
        PrivacyPolicy::parse(&["source.ip=mask"], None).unwrap(),
    );
    assert_eq!(
        recorded(&store).unwrap().1,
        PolicyDescription {
            rules: vec!["source.ip=mask".into()],
            key_id: None,
        }
    );
    assert!(store.verify().is_ok());
    store.close().unwrap();
}

/// The note of the store `dir`, decoded.
fn read_note(dir: &Path) -> sealog::format::segment::PolicyNote {
    let bytes = std::fs::read(dir.join("privacy-policy.note")).unwrap();
    sealog::format::segment::PolicyNote::decode(&bytes).unwrap()
}

/// The first seq of the newest segment file: the end of the sealed log
/// when that segment is open.
fn newest_segment_start(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".seg")?.parse::<u64>().ok()
        })
        .max()
        .unwrap()
}

/// `verify_dir` of `dir`; a verification of the log only, which reads the
/// records another way, must say the same of the policy note.
fn verify_both(dir: &Path) -> sealog::Result<sealog::VerifyReport> {
    let full = sealog::verify_dir(dir);
    let options = sealog::VerifyOptions {
        log_only: true,
        ..Default::default()
    };
    let log_only = sealog::verify_dir_with(dir, &options);
    match (&full, &log_only) {
        (Ok(a), Ok(b)) => assert_eq!(a.policy_note_covers, b.policy_note_covers),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("full: {full:?}, log only: {log_only:?}"),
    }
    full
}

/// The corruption `verify_dir` reports for `dir`.
fn note_problem(dir: &Path) -> sealog::Corruption {
    match verify_both(dir) {
        Err(sealog::Error::Corruption(c)) => *c,
        other => panic!("expected a corruption, got {other:?}"),
    }
}

#[test]
fn the_privacy_policy_note_follows_the_seals_and_readers_and_verify_use_it() {
    use sealog::CorruptionKind;
    use sealog::format::segment::PolicyNote;
    let dir = tempfile::tempdir().unwrap();
    let note_path = dir.path().join("privacy-policy.note");
    // A writer without rules: the seals write a note that names no policy.
    let store = Store::open(dir.path(), small_options(64 << 10)).unwrap();
    for i in 0..600 {
        store
            .append(personal_event(&format!("u{i}"), "10.1.2.3"))
            .unwrap();
    }
    store.close().unwrap();
    let note = read_note(dir.path());
    assert_eq!(note.newest, None);
    assert_eq!(note.covered, newest_segment_start(dir.path()));
    assert!(note.covered > 0);
    let reader = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.recorded_privacy_policy().unwrap(), None);
    drop(reader);
    // A writer with rules records them; its seals bring the note up.
    let store = open_with(dir.path(), policy());
    let policy_seq = store.len() - 1;
    for i in 0..600 {
        store
            .append(personal_event(&format!("v{i}"), "10.1.2.4"))
            .unwrap();
    }
    store.close().unwrap();
    let note = read_note(dir.path());
    assert_eq!(note.newest, Some(policy_seq));
    assert_eq!(note.covered, newest_segment_start(dir.path()));
    assert!(note.covered > policy_seq);
    let report = verify_both(dir.path()).unwrap();
    assert_eq!(report.policy_note_covers, Some(note.covered));
    let recorded = |dir: &Path| {
        Store::open_read_only(dir)
            .unwrap()
            .recorded_privacy_policy()
            .unwrap()
            .map(|(seq, _)| seq)
    };
    assert_eq!(recorded(dir.path()), Some(policy_seq));

    // Readers trust a note that decodes: one that names no policy hides
    // the record from them (as a sidecar that lost a term hides it), and
    // verify reports it.
    let intact = note;
    let write = |note: PolicyNote| std::fs::write(&note_path, note.encode()).unwrap();
    write(PolicyNote {
        newest: None,
        ..intact
    });
    assert_eq!(recorded(dir.path()), None);
    let c = note_problem(dir.path());
    assert_eq!(c.location.file, "privacy-policy.note");
    assert!(
        matches!(c.kind, CorruptionKind::PolicyNote { stored: None, computed: Some(s), .. } if s == policy_seq),
        "{c}"
    );
    assert!(c.to_string().contains("remove the file"), "{c}");
    // One that names a record that is not a policy is not trusted.
    write(PolicyNote {
        newest: Some(policy_seq + 5),
        ..intact
    });
    assert_eq!(recorded(dir.path()), Some(policy_seq));
    assert!(matches!(
        note_problem(dir.path()).kind,
        CorruptionKind::PolicyNote { .. }
    ));
    // Nor one that covers more than the sealed log.
    write(PolicyNote {
        covered: 1 << 40,
        newest: None,
        ..intact
    });
    assert_eq!(recorded(dir.path()), Some(policy_seq));
    assert!(
        note_problem(dir.path())
            .to_string()
            .contains("more records than the log holds")
    );
    // Nor a damaged one, nor another store's.
    let mut damaged = intact.encode();
    damaged[40] ^= 0x01;
    std::fs::write(&note_path, damaged).unwrap();
    assert_eq!(recorded(dir.path()), Some(policy_seq));
    assert!(matches!(
        note_problem(dir.path()).kind,
        CorruptionKind::Structure(_)
    ));
    write(PolicyNote {
        store_id: [7; 16],
        newest: None,
        ..intact
    });
    assert_eq!(recorded(dir.path()), Some(policy_seq));
    assert!(matches!(
        note_problem(dir.path()).kind,
        CorruptionKind::ForeignFile { .. }
    ));
    // Without a note, readers search every segment; the next seal writes
    // it again.
    std::fs::remove_file(&note_path).unwrap();
    assert_eq!(recorded(dir.path()), Some(policy_seq));
    assert_eq!(verify_both(dir.path()).unwrap().policy_note_covers, None);
    let store = open_with(dir.path(), policy());
    let len = store.len();
    for i in 0..600 {
        store
            .append(personal_event(&format!("w{i}"), "10.1.2.5"))
            .unwrap();
    }
    store.close().unwrap();
    let note = read_note(dir.path());
    assert_eq!(note.newest, Some(policy_seq));
    assert!(note.covered > len);
    assert_eq!(
        verify_both(dir.path()).unwrap().policy_note_covers,
        Some(note.covered)
    );
}
