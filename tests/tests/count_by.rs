//! Counts by group against a naive count over a full scan: random event
//! sets spread over sealed segments and the open one, random filters, every
//! field to group by; then damaged stores, which must fail the count or
//! (reading around damage) count what can be read.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use proptest::prelude::*;
use sealog::aggregate::{CountBy, CountField, Group};
use sealog::format::{Actor, Event, Outcome, Record, Resource, Timestamp};
use sealog::query::{ActionPattern, ActorFilter, IpFilter, Query, ResourceFilter};
use sealog::{Durability, Error, OnDamage, Store, StoreOptions};
use sealog_tests::small_options;

const ACTORS: [(&str, &str); 5] = [
    ("user", "alice"),
    ("user", "bob"),
    ("service", "billing"),
    ("service", "alice"),
    ("api_key", "k-17"),
];
const ACTIONS: [&str; 5] = [
    "auth.login",
    "auth.login_failed",
    "customer.delete",
    "customer.export",
    "invoice.export",
];
const RESOURCES: [(&str, Option<&str>); 4] = [
    ("order", Some("456")),
    ("customer", Some("456")),
    ("customer", Some("9")),
    ("session", None),
];
const IPS: [&str; 4] = ["10.0.0.1", "192.168.5.5", "2001:db8::1", "::ffff:10.0.0.1"];
const T0: i64 = 1_790_000_000_000_000_000;
const HOUR: i64 = 3_600_000_000_000;

fn event_strategy() -> impl Strategy<Value = Event> {
    (
        0..ACTORS.len(),
        0..ACTIONS.len(),
        0..RESOURCES.len(),
        0..3usize,
        0..3usize,
        0..=IPS.len(),
        0..3usize,
        0..60i64,
        0..6u8,
    )
        .prop_map(|(a, act, r, o, tenant, ip, req, minutes, untimed)| {
            let (kind, id) = ACTORS[a];
            let (rkind, rid) = RESOURCES[r];
            let resource = match rid {
                Some(rid) => Resource::new(rkind, rid),
                None => Resource::kind(rkind),
            };
            let outcome = [Outcome::Success, Outcome::Failure, Outcome::Denied][o];
            let mut e = Event::new(Actor::new(kind, id), ACTIONS[act], resource, outcome);
            // Some events carry no time: they count under their recorded
            // time, as `from`/`to` filter them.
            if untimed != 0 {
                e = e.with_time(Timestamp::from_nanos(T0 + minutes * 50 * 60_000_000_000));
            }
            if tenant < 2 {
                e = e.with_tenant(format!("t{tenant}"));
            }
            if ip < IPS.len() {
                e = e.with_source_ip(IPS[ip].parse().unwrap());
            }
            if req < 2 {
                e = e.with_request_id(format!("req-{req}"));
            }
            e
        })
}

fn query_strategy() -> impl Strategy<Value = Query> {
    let actor = prop_oneof![
        3 => Just(None),
        1 => (0..ACTORS.len(), any::<bool>()).prop_map(|(i, typed)| {
            let (kind, id) = ACTORS[i];
            Some(ActorFilter {
                kind: typed.then(|| kind.to_owned()),
                id: id.to_owned(),
            })
        })
    ];
    let actions = prop_oneof![
        3 => Just(vec![]),
        1 => Just(vec![ActionPattern::new("customer.*").unwrap()]),
        1 => Just(vec![ActionPattern::new("*.export").unwrap()]),
    ];
    let resource = prop_oneof![
        4 => Just(None),
        1 => Just(Some(ResourceFilter::parse("customer:"))),
        1 => Just(Some(ResourceFilter::parse("456"))),
    ];
    let time = prop_oneof![
        2 => Just((None, None)),
        1 => (0..50i64, 1..50i64).prop_map(|(a, len)| (
            Some(Timestamp::from_nanos(T0 + a * HOUR)),
            Some(Timestamp::from_nanos(T0 + (a + len) * HOUR))
        )),
    ];
    (
        actor,
        actions,
        resource,
        prop_oneof![3 => Just(None), 1 => Just(Some(Outcome::Denied))],
        prop_oneof![3 => Just(None), 1 => Just(Some("t0".to_owned()))],
        prop_oneof![
            3 => Just(None),
            1 => Just(Some(IpFilter::parse("10.0.0.0/8").unwrap()))
        ],
        prop_oneof![4 => Just(None), 1 => Just(Some("req-1".to_owned()))],
        time,
    )
        .prop_map(
            |(actor, actions, resource, outcome, tenant, source_ip, request_id, (from, to))| {
                Query {
                    actor,
                    actions,
                    resource,
                    outcome,
                    tenant,
                    source_ip,
                    request_id,
                    from,
                    to,
                    ..Query::default()
                }
            },
        )
}

fn field_strategy() -> impl Strategy<Value = CountField> {
    (0..CountField::ALL.len()).prop_map(|i| CountField::ALL[i])
}

/// The key of a record, written apart from the engine's: `None` when it
/// lacks the field.
fn naive_key(field: CountField, r: &Record) -> Option<String> {
    let e = &r.event;
    let hour = r.event_time().as_nanos().div_euclid(HOUR) * HOUR;
    let hour = Timestamp::from_nanos(hour).to_rfc3339();
    match field {
        CountField::Actor => Some(format!("{}:{}", e.actor.kind, e.actor.id)),
        CountField::Action => Some(e.action.clone()),
        CountField::Resource => e
            .resource
            .id
            .as_ref()
            .map(|id| format!("{}:{id}", e.resource.kind)),
        CountField::ResourceType => Some(e.resource.kind.clone()),
        CountField::Outcome => Some(e.outcome.as_str().to_owned()),
        CountField::Tenant => e.tenant.clone(),
        CountField::SourceIp => e.source.as_ref().and_then(|s| s.ip).map(|ip| match ip {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
            v4 => v4.to_string(),
        }),
        CountField::Hour => Some(hour),
        CountField::Day => Some(hour[..10].to_owned()),
    }
}

/// The naive count: every record of a scan checked with `Query::matches`'
/// public twin (a page of every match), grouped, sorted, cut at `top`.
fn naive_count(all: &[Record], matching: &[u64], field: CountField, top: usize) -> CountBy {
    let mut groups: BTreeMap<String, u64> = BTreeMap::new();
    let mut missing = 0;
    for r in all
        .iter()
        .filter(|r| matching.binary_search(&r.seq).is_ok())
    {
        match naive_key(field, r) {
            Some(k) => *groups.entry(k).or_default() += 1,
            None => missing += 1,
        }
    }
    let mut groups: Vec<Group> = groups
        .into_iter()
        .map(|(key, count)| Group { key, count })
        .collect();
    groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.key.cmp(&b.key)));
    let rest = groups.split_off(top.min(groups.len()));
    CountBy {
        field,
        groups,
        total: matching.len() as u64,
        other_groups: rest.len() as u64,
        other_count: rest.iter().map(|g| g.count).sum(),
        missing,
    }
}

/// The seqs a query matches, from every page.
fn matching_seqs(store: &Store, q: &Query) -> Vec<u64> {
    let mut seqs: Vec<u64> = store.matches(q).unwrap().map(|r| r.unwrap().seq).collect();
    seqs.sort_unstable();
    seqs
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn counts_by_group_equal_a_naive_count_over_a_scan(
        batches in proptest::collection::vec(proptest::collection::vec(event_strategy(), 1..12), 8..30),
        cases in proptest::collection::vec((query_strategy(), field_strategy(), 1usize..6), 16),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), small_options(4 << 10)).unwrap();
        for (i, batch) in batches.iter().enumerate() {
            store.append_batch_with(batch, Durability::Buffered).unwrap();
            // The last batches stay in the open segment.
            if i % 4 == 3 && i + 1 < batches.len() {
                store.roll().unwrap();
            }
        }
        store.wait_sealed().unwrap();
        prop_assert!(store.stats().sealed_segments >= 1, "the data spans sealed segments");
        let all: Vec<Record> = store.scan(..).map(|r| r.unwrap()).collect();
        for (q, field, top) in &cases {
            let want = naive_count(&all, &matching_seqs(&store, q), *field, *top);
            let got = store.count_by(q, *field, *top).unwrap();
            prop_assert_eq!(&got, &want, "count by {} of {:?}", field, q);
            prop_assert_eq!(got.total, store.count(q).unwrap());
        }
    }
}

/// Denied events per actor over a week: one call.
#[test]
fn denied_events_per_actor_are_counted_across_sealed_and_open_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options(4 << 10)).unwrap();
    let at = |h: i64| Timestamp::from_nanos(T0 + h * HOUR);
    let event = |actor: &str, outcome, h| {
        Event::new(
            Actor::new("user", actor),
            "customer.read",
            Resource::new("customer", "9"),
            outcome,
        )
        .with_time(at(h))
    };
    let mut events = Vec::new();
    for h in 0..200 {
        events.push(event("mallory", Outcome::Denied, h));
        if h % 2 == 0 {
            events.push(event("bob", Outcome::Denied, h));
        }
        events.push(event("alice", Outcome::Success, h));
    }
    // One old denial outside the week.
    events.push(event("eve", Outcome::Denied, -1000));
    for chunk in events.chunks(25) {
        store.append_batch(chunk).unwrap();
    }
    store.wait_sealed().unwrap();
    assert!(store.stats().sealed_segments >= 2);
    let week = Query {
        outcome: Some(Outcome::Denied),
        from: Some(at(0)),
        to: Some(at(7 * 24)),
        ..Query::default()
    };
    let counted = store.count_by(&week, CountField::Actor, 20).unwrap();
    let groups: Vec<(&str, u64)> = counted
        .groups
        .iter()
        .map(|g| (g.key.as_str(), g.count))
        .collect();
    assert_eq!(groups, [("user:mallory", 168), ("user:bob", 84)]);
    assert_eq!(
        (counted.total, counted.other_groups, counted.missing),
        (252, 0, 0)
    );
    let by_day = store.count_by(&week, CountField::Day, 1).unwrap();
    assert_eq!(by_day.groups.len(), 1);
    assert_eq!(by_day.groups[0].count, 36);
    // T0 is 14:13 UTC: the 168 hours touch eight days.
    assert_eq!((by_day.other_groups, by_day.other_count), (7, 216));
}

#[test]
fn a_count_refuses_a_cursor_and_a_top_outside_its_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options(4 << 10)).unwrap();
    for top in [0, sealog::aggregate::MAX_TOP + 1] {
        let err = store
            .count_by(&Query::default(), CountField::Action, top)
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidQuery { field: "top", .. }),
            "{err}"
        );
    }
    let q = Query {
        cursor: Some("v1.n.5.0000000000000000".into()),
        ..Query::default()
    };
    let err = store.count_by(&q, CountField::Action, 5).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidQuery {
                field: "cursor",
                ..
            }
        ),
        "{err}"
    );
}

/// A closed store with several sealed segments; returns the segment files.
fn sealed_store(dir: &Path) -> Vec<std::path::PathBuf> {
    let store = Store::open(dir, small_options(4 << 10)).unwrap();
    for i in 0..60 {
        store
            .append_batch(sealog_tests::events(i * 4, i * 4 + 4))
            .unwrap();
    }
    store.wait_sealed().unwrap();
    store.close().unwrap();
    let files = sealog_tests::segment_files(dir);
    assert!(files.len() >= 5, "{} segments", files.len());
    files
}

fn first_seq(path: &Path) -> u64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// Overwrites the middle of record `n`'s frame in `file`: its checksum no
/// longer holds.
fn damage_record(file: &Path, n: usize) {
    use sealog::format::frame::{self, FrameRead};
    let mut bytes = fs::read(file).unwrap();
    let mut pos = sealog::format::segment::HEADER_LEN;
    for _ in 0..n {
        let Ok(FrameRead::Frame(f)) = frame::read_frame(&bytes[pos..]) else {
            panic!("no frame {n}");
        };
        pos += f.len;
    }
    let len = match frame::read_frame(&bytes[pos..]) {
        Ok(FrameRead::Frame(f)) => f.len,
        _ => panic!("no frame {n}"),
    };
    bytes[pos + len - 20] ^= 0x10;
    fs::write(file, &bytes).unwrap();
}

#[test]
fn a_count_that_meets_a_damaged_record_fails_naming_its_seq() {
    let dir = tempfile::tempdir().unwrap();
    let files = sealed_store(dir.path());
    let target = &files[1];
    damage_record(target, 2);
    let bad = first_seq(target) + 2;
    let store = Store::open_read_only(dir.path()).unwrap();
    // Grouping by resource reads every matching record.
    let err = store
        .count_by(&Query::default(), CountField::Resource, 10)
        .unwrap_err();
    let corruption = err.corruption().unwrap_or_else(|| panic!("{err}"));
    assert_eq!(corruption.location.seq, Some(bad), "{err}");
    drop(store);
    // Without its index, the segment's index is rebuilt from its records,
    // which meets the damage too: every field fails.
    fs::remove_file(target.with_extension("idx")).unwrap();
    let store = Store::open_read_only(dir.path()).unwrap();
    for field in CountField::ALL {
        let err = store.count_by(&Query::default(), field, 10).unwrap_err();
        let corruption = err.corruption().unwrap_or_else(|| panic!("{field}: {err}"));
        assert_eq!(corruption.location.seq, Some(bad), "{field}: {err}");
    }
}

#[test]
fn reading_around_damage_counts_every_readable_record_and_lists_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let files = sealed_store(dir.path());
    let target = &files[1];
    damage_record(target, 2);
    let bad = first_seq(target) + 2;
    fs::remove_file(target.with_extension("idx")).unwrap();
    let store = Store::open_read_only_with(
        dir.path(),
        StoreOptions {
            on_damage: OnDamage::ReadAround,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let all: Vec<Record> = store.scan(..).filter_map(Result::ok).collect();
    // Without the index, what follows the bad frame in its segment cannot
    // be found either.
    assert!((200..240).contains(&all.len()), "{}", all.len());
    let seqs: Vec<u64> = all.iter().map(|r| r.seq).collect();
    for field in CountField::ALL {
        let want = naive_count(&all, &seqs, field, 50);
        assert_eq!(
            store.count_by(&Query::default(), field, 50).unwrap(),
            want,
            "{field}"
        );
    }
    let damage = store.damage();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0].first_seq, bad);
}

#[test]
fn a_damaged_dictionary_is_rebuilt_and_the_counts_stay_right() {
    let dir = tempfile::tempdir().unwrap();
    let files = sealed_store(dir.path());
    let store = Store::open_read_only(dir.path()).unwrap();
    let want = store
        .count_by(&Query::default(), CountField::Actor, 50)
        .unwrap();
    drop(store);
    // Flip a byte in the middle of every section of every sidecar: each
    // fails its check when first used.
    let mut sidecars = 0;
    for file in &files {
        let idx = file.with_extension("idx");
        let Ok(mut bytes) = fs::read(&idx) else {
            continue;
        };
        sidecars += 1;
        for (offset, len) in sections(&bytes) {
            bytes[offset + len / 2] ^= 0x55;
        }
        fs::write(&idx, &bytes).unwrap();
    }
    assert!(sidecars >= 4, "{sidecars} sidecars");
    let store = Store::open(dir.path(), small_options(4 << 10)).unwrap();
    for field in [CountField::Actor, CountField::SourceIp, CountField::Hour] {
        let got = store.count_by(&Query::default(), field, 50).unwrap();
        let all: Vec<Record> = store.scan(..).map(|r| r.unwrap()).collect();
        let seqs: Vec<u64> = all.iter().map(|r| r.seq).collect();
        assert_eq!(got, naive_count(&all, &seqs, field, 50), "{field}");
        if field == CountField::Actor {
            assert_eq!(got, want);
        }
    }
    assert_eq!(store.stats().index_rebuilds, sidecars);
}

/// (offset, length) of every section of a sidecar (see format.md, "Section
/// table").
fn sections(bytes: &[u8]) -> Vec<(usize, usize)> {
    use sealog::format::index::{HEADER_LEN, SECTION_ENTRY_LEN};
    let count = u32::from_le_bytes(bytes[60..64].try_into().unwrap()) as usize;
    (0..count)
        .map(|i| {
            let entry = &bytes[HEADER_LEN + SECTION_ENTRY_LEN * i..][..SECTION_ENTRY_LEN];
            let offset = u64::from_le_bytes(entry[8..16].try_into().unwrap()) as usize;
            let len = u64::from_le_bytes(entry[16..24].try_into().unwrap()) as usize;
            (offset, len)
        })
        .filter(|&(_, len)| len > 0)
        .collect()
}

/// A sidecar whose actor dictionary states one record more for a term than
/// the term's bitmap holds, with every checksum fixed: a search for another
/// actor answers from the sidecar (a lookup checks the bitmaps it decodes,
/// not every bitmap), while a search for that actor and a count from the
/// dictionary's entries find the damage, rebuild the sidecar, and answer
/// what the records say.
#[test]
fn a_miscounted_bitmap_is_found_by_what_uses_it_and_nothing_else_is_rebuilt() {
    use sealog::format::index::{IndexField, IndexReader, SECTION_ENTRY_LEN, SectionKind};
    let dir = tempfile::tempdir().unwrap();
    sealed_store(dir.path());
    let idx = dir.path().join("segments/00000000000000000000.idx");
    let mut bytes = fs::read(&idx).unwrap();
    let reader = IndexReader::parse(&bytes).unwrap();
    let (section, info) = reader
        .sections()
        .enumerate()
        .find(|(_, s)| s.kind == SectionKind::TermDict && s.field == IndexField::Actor.id())
        .unwrap();
    let dict = reader.field(IndexField::Actor).unwrap();
    let mut terms = dict
        .iter()
        .map(|e| (e.index, e.term.to_vec(), e.cardinality));
    let (damaged, damaged_actor, _) = terms.find(|(_, _, n)| *n > 1).unwrap();
    let (_, other_actor, _) = terms.next().unwrap();
    let count = reader.section_count();
    // The entry's cardinality (entries follow the 16-byte header; the
    // cardinality is the third u32), then the section's, the table's and
    // the header's CRCs, as a forger would.
    let at = info.offset as usize + 16 + 20 * damaged + 8;
    let stated = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    bytes[at..at + 4].copy_from_slice(&(stated + 1).to_le_bytes());
    let crc = crc32fast::hash(&bytes[info.offset as usize..(info.offset + info.len) as usize]);
    let entry = 72 + SECTION_ENTRY_LEN * section;
    bytes[entry + 4..entry + 8].copy_from_slice(&crc.to_le_bytes());
    let table = crc32fast::hash(&bytes[72..72 + SECTION_ENTRY_LEN * count]);
    bytes[64..68].copy_from_slice(&table.to_le_bytes());
    let header = crc32fast::hash(&bytes[..68]);
    bytes[68..72].copy_from_slice(&header.to_le_bytes());
    assert!(
        IndexReader::parse(&bytes).is_err(),
        "the full check sees it"
    );
    let damaged_copy = tempfile::tempdir().unwrap();
    sealog_tests::copy_store(dir.path(), damaged_copy.path());
    fs::write(&idx, &bytes).unwrap();
    fs::write(
        damaged_copy
            .path()
            .join("segments/00000000000000000000.idx"),
        &bytes,
    )
    .unwrap();

    // An actor term is `id ‖ 0x00 ‖ type` (docs/format.md).
    let actor = |term: &[u8]| {
        let text = std::str::from_utf8(term).unwrap();
        let (id, kind) = text.split_once('\0').unwrap();
        ActorFilter {
            kind: Some(kind.to_owned()),
            id: id.to_owned(),
        }
    };
    let query = |filter: &ActorFilter| Query {
        actor: Some(filter.clone()),
        limit: 10_000,
        ..Query::default()
    };
    let naive = |store: &Store, filter: &ActorFilter| -> Vec<u64> {
        store
            .scan(..)
            .map(|r| r.unwrap())
            .filter(|r| {
                r.event.actor.id == filter.id
                    && Some(r.event.actor.kind.as_str()) == filter.kind.as_deref()
            })
            .map(|r| r.seq)
            .collect()
    };
    let seqs = |store: &Store, filter: &ActorFilter| -> Vec<u64> {
        let page = store.query(&query(filter)).unwrap();
        let mut got: Vec<u64> = page.records.iter().map(|r| r.seq).collect();
        got.sort_unstable();
        assert!(!got.is_empty());
        got
    };

    let store = Store::open(dir.path(), small_options(4 << 10)).unwrap();
    let other = actor(&other_actor);
    assert_eq!(seqs(&store, &other), naive(&store, &other));
    assert_eq!(store.stats().index_rebuilds, 0, "another term's lookup");
    let same = actor(&damaged_actor);
    assert_eq!(seqs(&store, &same), naive(&store, &same));
    assert_eq!(store.stats().index_rebuilds, 1, "the damaged term's lookup");
    drop(store);

    let store = Store::open(damaged_copy.path(), small_options(4 << 10)).unwrap();
    let got = store
        .count_by(&Query::default(), CountField::Actor, 50)
        .unwrap();
    let all: Vec<Record> = store.scan(..).map(|r| r.unwrap()).collect();
    let every: Vec<u64> = all.iter().map(|r| r.seq).collect();
    assert_eq!(got, naive_count(&all, &every, CountField::Actor, 50));
    assert_eq!(store.stats().index_rebuilds, 1, "counts from the entries");
}
