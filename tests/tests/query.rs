//! Queries against a naive full scan: random event sets spread over many
//! sealed segments and the active one, random queries built from every
//! predicate; the results, their order, pagination through cursors and
//! counts must equal the scan's. Then the incident questions, by example.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::net::IpAddr;

use proptest::prelude::*;
use sealog::format::{Actor, Event, Outcome, Record, Resource, Timestamp};
use sealog::query::{ActionPattern, ActorFilter, IpFilter, Order, Query, ResourceFilter};
use sealog::{Durability, Store};
use sealog_tests::small_options;

const ACTORS: [(&str, &str); 6] = [
    ("user", "alice"),
    ("user", "bob"),
    ("user", "carol"),
    ("service", "billing"),
    ("service", "alice"),
    ("api_key", "k-17"),
];
const ACTIONS: [&str; 8] = [
    "auth.login",
    "auth.login_failed",
    "customer.read",
    "customer.delete",
    "customer.export",
    "invoice.export",
    "report.export_csv",
    "order.update",
];
const RESOURCES: [(&str, Option<&str>); 6] = [
    ("order", Some("456")),
    ("order", Some("457")),
    ("customer", Some("456")),
    ("customer", Some("9")),
    ("invoice", Some("88")),
    ("session", None),
];
const IPS: [&str; 6] = [
    "10.0.0.1",
    "10.0.1.7",
    "192.168.5.5",
    "2001:db8::1",
    "2001:db8:1::9",
    "::ffff:10.0.0.9",
];
const T0: i64 = 1_790_000_000_000_000_000;
const HOUR: i64 = 3_600_000_000_000;

fn event_strategy() -> impl Strategy<Value = Event> {
    (
        0..ACTORS.len(),
        0..ACTIONS.len(),
        0..RESOURCES.len(),
        0..3u8,
        0..3usize,
        0..7usize,
        0..5usize,
        0..48i64,
        0..8u8,
    )
        .prop_map(|(a, act, r, o, tenant, ip, req, hour, untimed)| {
            let (kind, id) = ACTORS[a];
            let (rkind, rid) = RESOURCES[r];
            let resource = match rid {
                Some(rid) => Resource::new(rkind, rid),
                None => Resource::kind(rkind),
            };
            let outcome = [Outcome::Success, Outcome::Failure, Outcome::Denied][o as usize];
            let mut e = Event::new(Actor::new(kind, id), ACTIONS[act], resource, outcome);
            // Some events carry no time: their event time is the recorded
            // time, as for the server's own audit events.
            if untimed != 0 {
                e = e.with_time(Timestamp::from_nanos(T0 + hour * HOUR + (a as i64) * 1000));
            }
            if tenant < 2 {
                e = e.with_tenant(format!("t{tenant}"));
            }
            if ip < IPS.len() {
                e = e.with_source_ip(IPS[ip].parse().unwrap());
            }
            if req < 4 {
                e = e.with_request_id(format!("req-{req}"));
            }
            e
        })
}

fn query_strategy() -> impl Strategy<Value = Query> {
    let actor = prop_oneof![
        Just(None),
        (0..ACTORS.len(), any::<bool>()).prop_map(|(i, typed)| {
            let (kind, id) = ACTORS[i];
            Some(ActorFilter {
                kind: typed.then(|| kind.to_owned()),
                id: id.to_owned(),
            })
        })
    ];
    let actions = prop_oneof![
        Just(vec![]),
        (0..ACTIONS.len()).prop_map(|i| vec![ActionPattern::new(ACTIONS[i]).unwrap()]),
        Just(vec![ActionPattern::new("customer.*").unwrap()]),
        Just(vec![ActionPattern::new("*.export").unwrap()]),
        Just(vec![ActionPattern::new("*export*").unwrap()]),
        Just(vec![
            ActionPattern::new("auth.login").unwrap(),
            ActionPattern::new("order.*").unwrap()
        ]),
    ];
    let resource = prop_oneof![
        Just(None),
        Just(Some(ResourceFilter::parse("order:456"))),
        Just(Some(ResourceFilter::parse("456"))),
        Just(Some(ResourceFilter::parse("customer:"))),
        Just(Some(ResourceFilter::parse("invoice:88"))),
    ];
    let ip = prop_oneof![
        Just(None),
        Just(Some(IpFilter::parse("10.0.0.0/8").unwrap())),
        Just(Some(IpFilter::parse("10.0.0.1").unwrap())),
        Just(Some(IpFilter::parse("2001:db8::/32").unwrap())),
        Just(Some(IpFilter::parse("192.168.0.0/16").unwrap())),
    ];
    let time = prop_oneof![
        Just((None, None)),
        (0..48i64, 1..48i64).prop_map(|(a, len)| (
            Some(Timestamp::from_nanos(T0 + a * HOUR)),
            Some(Timestamp::from_nanos(T0 + (a + len) * HOUR))
        )),
        (0..48i64).prop_map(|a| (Some(Timestamp::from_nanos(T0 + a * HOUR)), None)),
    ];
    (
        actor,
        actions,
        resource,
        prop_oneof![
            Just(None),
            Just(Some("order".to_owned())),
            Just(Some("session".to_owned()))
        ],
        prop_oneof![
            Just(None),
            Just(Some(Outcome::Failure)),
            Just(Some(Outcome::Denied))
        ],
        prop_oneof![Just(None), Just(Some("t0".to_owned()))],
        ip,
        prop_oneof![Just(None), Just(Some("req-1".to_owned()))],
        time,
        prop_oneof![
            Just(Order::NewestFirst),
            Just(Order::OldestFirst),
            Just(Order::LatestTimeFirst),
            Just(Order::EarliestTimeFirst)
        ],
        1usize..25,
    )
        .prop_map(
            |(
                actor,
                actions,
                resource,
                resource_type,
                outcome,
                tenant,
                source_ip,
                request_id,
                (from, to),
                order,
                limit,
            )| Query {
                actor,
                actions,
                resource,
                resource_type,
                outcome,
                tenant,
                source_ip,
                request_id,
                from,
                to,
                order,
                limit,
                cursor: None,
            },
        )
}

/// The oracle: written independently of the engine's matching.
fn oracle_matches(q: &Query, r: &Record) -> bool {
    let e = &r.event;
    let glob = |pattern: &str, text: &str| -> bool {
        fn rec(p: &[u8], t: &[u8]) -> bool {
            match p.split_first() {
                None => t.is_empty(),
                Some((b'*', rest)) => (0..=t.len()).any(|i| rec(rest, &t[i..])),
                Some((c, rest)) => t.first() == Some(c) && rec(rest, &t[1..]),
            }
        }
        rec(pattern.as_bytes(), text.as_bytes())
    };
    let in_net = |ip: IpAddr, f: &IpFilter| -> bool {
        let v4 = |ip: IpAddr| match ip {
            IpAddr::V4(a) => Some(u32::from(a)),
            IpAddr::V6(a) => a.to_ipv4_mapped().map(u32::from),
        };
        match *f {
            IpFilter::Exact(want) => match (v4(ip), v4(want)) {
                (Some(a), Some(b)) => a == b,
                (None, None) => ip == want,
                _ => false,
            },
            IpFilter::Cidr { network, prefix } => match (v4(ip), network) {
                (Some(a), IpAddr::V4(n)) => prefix == 0 || (a ^ u32::from(n)) >> (32 - prefix) == 0,
                (None, IpAddr::V6(n)) => match ip {
                    IpAddr::V6(a) => {
                        prefix == 0 || (u128::from(a) ^ u128::from(n)) >> (128 - prefix) == 0
                    }
                    IpAddr::V4(_) => false,
                },
                _ => false,
            },
        }
    };
    q.actor
        .as_ref()
        .is_none_or(|a| a.id == e.actor.id && a.kind.as_ref().is_none_or(|k| *k == e.actor.kind))
        && (q.actions.is_empty() || q.actions.iter().any(|p| glob(p.as_str(), &e.action)))
        && q.resource.as_ref().is_none_or(|f| {
            f.kind.as_ref().is_none_or(|k| *k == e.resource.kind)
                && f.id
                    .as_ref()
                    .is_none_or(|id| e.resource.id.as_ref() == Some(id))
        })
        && q.resource_type
            .as_ref()
            .is_none_or(|t| *t == e.resource.kind)
        && q.outcome.is_none_or(|o| o == e.outcome)
        && q.tenant
            .as_ref()
            .is_none_or(|t| e.tenant.as_ref() == Some(t))
        && q.source_ip.as_ref().is_none_or(|f| {
            e.source
                .as_ref()
                .and_then(|s| s.ip)
                .is_some_and(|ip| in_net(ip, f))
        })
        && q.request_id
            .as_ref()
            .is_none_or(|id| e.request_id.as_ref() == Some(id))
        && q.from.is_none_or(|from| r.event_time() >= from)
        && q.to.is_none_or(|to| r.event_time() < to)
}

/// The model of every order: the matches sorted by seq, or by (event time,
/// seq), then reversed for the descending orders.
fn model_order(all: &[Record], q: &Query) -> Vec<u64> {
    let mut matching: Vec<&Record> = all.iter().filter(|r| oracle_matches(q, r)).collect();
    match q.order {
        Order::NewestFirst | Order::OldestFirst => matching.sort_by_key(|r| r.seq),
        Order::LatestTimeFirst | Order::EarliestTimeFirst => {
            matching.sort_by_key(|r| (r.event_time(), r.seq))
        }
    }
    if matches!(q.order, Order::NewestFirst | Order::LatestTimeFirst) {
        matching.reverse();
    }
    matching.iter().map(|r| r.seq).collect()
}

fn all_pages(store: &Store, q: &Query) -> Vec<u64> {
    let mut q = q.clone();
    let mut seqs = Vec::new();
    loop {
        let page = store.query(&q).unwrap();
        in_memory_is_the_page_or_nothing(store, &q);
        assert!(page.records.len() <= q.limit);
        seqs.extend(page.records.iter().map(|r| r.seq));
        match page.next_cursor {
            Some(c) => {
                assert_eq!(
                    page.records.len(),
                    q.limit,
                    "a cursor is only given after a full page"
                );
                q.cursor = Some(c);
            }
            None => break,
        }
    }
    seqs
}

/// `Store::query_from_open` answers `q` with exactly `Store::query`'s page
/// or not at all; returns whether it answered.
fn from_open_is_the_page_or_nothing(store: &Store, q: &Query) -> bool {
    let Some(page) = store.query_from_open(q).unwrap() else {
        return false;
    };
    let full = store.query(q).unwrap();
    let seqs = |p: &sealog::query::Page| p.records.iter().map(|r| r.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(&page),
        seqs(&full),
        "the page of {q:?} from open segments"
    );
    assert_eq!(page.next_cursor, full.next_cursor, "the cursor of {q:?}");
    true
}

/// `Store::query_in_memory_with` answers `q` with exactly `Store::query`'s
/// page or not at all; returns whether it answered.
fn in_memory_is_the_page_or_nothing(store: &Store, q: &Query) -> bool {
    let Some(page) = store
        .query_in_memory_with(q, |view| view.to_record().unwrap().seq)
        .unwrap()
    else {
        return false;
    };
    let full = store.query(q).unwrap();
    let seqs: Vec<u64> = full.records.iter().map(|r| r.seq).collect();
    assert_eq!(page.records, seqs, "the page of {q:?} from memory");
    assert_eq!(page.next_cursor, full.next_cursor, "the cursor of {q:?}");
    true
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn queries_equal_a_full_scan(
        batches in proptest::collection::vec(proptest::collection::vec(event_strategy(), 1..12), 10..40),
        queries in proptest::collection::vec(query_strategy(), 12),
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
        let all: Vec<Record> = store.scan(..).map(|r| r.unwrap()).collect();
        prop_assert!(store.stats().sealed_segments >= 2, "the data spans several segments");
        for q in &queries {
            let expected = model_order(&all, q);
            prop_assert_eq!(&all_pages(&store, q), &expected, "query {:?}", q);
            prop_assert_eq!(store.count(q).unwrap(), expected.len() as u64, "count of {:?}", q);
            let streamed: Vec<u64> = store.matches(q).unwrap().map(|r| r.unwrap().seq).collect();
            prop_assert_eq!(&streamed, &expected);
            from_open_is_the_page_or_nothing(&store, q);
            // Every segment was written just now: what is in memory
            // answers any page in the log's order over at most 32 sealed
            // segments.
            let answered = in_memory_is_the_page_or_nothing(&store, q);
            let sealed = store.stats().sealed_segments;
            if !q.order.by_time() && sealed <= 32 {
                prop_assert!(answered, "{:?} over {} sealed segments", q, sealed);
            }
            // A count from memory is the count or nothing, and here the
            // count.
            let counted = store.count_in_memory(q).unwrap();
            if let Some(n) = counted {
                prop_assert_eq!(n, expected.len() as u64, "count from memory of {:?}", q);
            }
            if sealed <= 32 {
                prop_assert!(counted.is_some(), "{:?} over {} sealed segments", q, sealed);
            }
        }
    }
}

/// Checks every newest-first page size of `q` against the full answer:
/// the first page of N is the full answer's first N (with a cursor exactly
/// when more remain), and following the cursors gives the full answer.
fn check_newest_pages(store: &Store, q: &Query, all: &[Record]) {
    let mut full_q = q.clone();
    full_q.order = Order::NewestFirst;
    let expected = model_order(all, &full_q);
    let streamed: Vec<u64> = store
        .matches(&full_q)
        .unwrap()
        .map(|r| r.unwrap().seq)
        .collect();
    assert_eq!(streamed, expected, "the full answer of {full_q:?}");
    for limit in [1, 2, 10, 11, 100, expected.len().max(1)] {
        let page_q = Query {
            limit,
            ..full_q.clone()
        };
        let page = store.query(&page_q).unwrap();
        // Every record is in the open segment: it alone answers.
        assert!(
            from_open_is_the_page_or_nothing(store, &page_q),
            "the open segment holds the page of {page_q:?}"
        );
        let seqs: Vec<u64> = page.records.iter().map(|r| r.seq).collect();
        assert_eq!(
            seqs,
            expected.iter().take(limit).copied().collect::<Vec<_>>(),
            "the newest {limit} of {full_q:?}"
        );
        assert_eq!(page.next_cursor.is_some(), expected.len() > limit);
    }
    let paged = Query {
        limit: 7,
        ..full_q.clone()
    };
    assert_eq!(
        all_pages(store, &paged),
        expected,
        "pages of 7 of {full_q:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Newest-first pages from an open segment holding thousands of
    /// records (where only the newest candidates are taken from its
    /// in-memory index) equal the first N of the full answer, while the
    /// store is open and after a read-only open has loaded the segment's
    /// index from its snapshot.
    #[test]
    fn newest_pages_of_a_large_open_segment_are_the_full_answers_first(
        events in proptest::collection::vec(event_strategy(), 64),
        repeats in 60..120usize,
        queries in proptest::collection::vec(query_strategy(), 10),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let all: Vec<Record> = {
            let store = Store::open(dir.path(), small_options(16 << 20)).unwrap();
            for _ in 0..repeats {
                store.append_batch_with(&events, Durability::Buffered).unwrap();
            }
            prop_assert_eq!(store.stats().sealed_segments, 0, "every record is in the open segment");
            let all: Vec<Record> = store.scan(..).map(|r| r.unwrap()).collect();
            prop_assert_eq!(all.len(), events.len() * repeats);
            for q in &queries {
                check_newest_pages(&store, q, &all);
            }
            all
        };
        let store = Store::open_read_only(dir.path()).unwrap();
        for q in &queries {
            check_newest_pages(&store, q, &all);
        }
    }
}

#[test]
fn a_page_is_answered_from_open_segments_only_when_they_hold_all_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options(4 << 10)).unwrap();
    let event = |actor: &str, action: &str| {
        Event::new(
            Actor::new("user", actor),
            action,
            Resource::new("order", "1"),
            Outcome::Success,
        )
    };
    // bob only before the seal; alice before and after it.
    let before: Vec<Event> = (0..20)
        .map(|i| event(if i % 2 == 0 { "alice" } else { "bob" }, "order.read"))
        .collect();
    store.append_batch(&before).unwrap();
    store.roll().unwrap();
    store.wait_sealed().unwrap();
    assert!(store.stats().sealed_segments >= 1);
    let after: Vec<Event> = (0..5).map(|_| event("alice", "order.update")).collect();
    store.append_batch(&after).unwrap();
    let q = |actor: &str, limit: usize| Query {
        actor: Some(ActorFilter::parse(&format!("user:{actor}"))),
        limit,
        ..Query::default()
    };
    // The newest 4 of alice, and the fifth that decides the cursor, are
    // all in the open segment.
    assert!(from_open_is_the_page_or_nothing(&store, &q("alice", 4)));
    let page = store.query_from_open(&q("alice", 4)).unwrap().unwrap();
    assert_eq!(page.records.len(), 4);
    assert!(page.next_cursor.is_some());
    // Five in the open segment, but whether more follow is in the sealed one.
    assert!(store.query_from_open(&q("alice", 5)).unwrap().is_none());
    assert!(store.query_from_open(&q("alice", 50)).unwrap().is_none());
    // bob is only in the sealed segment.
    assert!(store.query_from_open(&q("bob", 1)).unwrap().is_none());
    // Oldest first starts in the sealed segment; event-time orders merge.
    for order in [
        Order::OldestFirst,
        Order::LatestTimeFirst,
        Order::EarliestTimeFirst,
    ] {
        let oldest = Query {
            order,
            ..q("alice", 1)
        };
        assert!(
            store.query_from_open(&oldest).unwrap().is_none(),
            "{order:?}"
        );
    }
    // A cursor from a page of the open segment leads into the sealed one.
    let next = Query {
        cursor: page.next_cursor.clone(),
        ..q("alice", 1)
    };
    assert!(store.query_from_open(&next).unwrap().is_none());
    assert_eq!(store.query(&next).unwrap().records.len(), 1);
}

/// A fixture for the incident questions: a few hundred events over two days.
fn incident_store(dir: &std::path::Path) -> (Store, Vec<Record>) {
    let store = Store::open(dir, small_options(8 << 10)).unwrap();
    let mut events = Vec::new();
    for i in 0..400i64 {
        let (kind, id) = ACTORS[(i % 6) as usize];
        let action = ACTIONS[((i * 7) % 8) as usize];
        let (rkind, rid) = RESOURCES[((i * 5) % 6) as usize];
        let resource = match rid {
            Some(rid) => Resource::new(rkind, rid),
            None => Resource::kind(rkind),
        };
        let outcome = if i % 3 == 0 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        events.push(
            Event::new(Actor::new(kind, id), action, resource, outcome)
                .with_time(Timestamp::from_nanos(T0 + i * HOUR / 32))
                .with_source_ip(IPS[(i % 6) as usize].parse().unwrap()),
        );
    }
    for chunk in events.chunks(10) {
        store.append_batch(chunk).unwrap();
    }
    store.wait_sealed().unwrap();
    let all = store.scan(..).map(|r| r.unwrap()).collect();
    (store, all)
}

#[test]
fn an_actors_newest_50_events() {
    let dir = tempfile::tempdir().unwrap();
    let (store, all) = incident_store(dir.path());
    let q = Query {
        actor: Some(ActorFilter::parse("user:alice")),
        limit: 50,
        ..Query::default()
    };
    let page = store.query(&q).unwrap();
    let expected: Vec<u64> = all
        .iter()
        .rev()
        .filter(|r| r.event.actor.kind == "user" && r.event.actor.id == "alice")
        .take(50)
        .map(|r| r.seq)
        .collect();
    assert_eq!(expected.len(), 50);
    assert_eq!(
        page.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        expected
    );
    assert!(page.next_cursor.is_some());
    // Without the type, service:alice's events count too.
    let untyped = Query {
        actor: Some(ActorFilter::parse("alice")),
        ..Query::default()
    };
    let n = store.count(&untyped).unwrap();
    assert_eq!(
        n,
        all.iter().filter(|r| r.event.actor.id == "alice").count() as u64
    );
    assert!(n > store.count(&Query { limit: 50, ..q }).unwrap());
}

#[test]
fn all_events_on_order_456_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let (store, all) = incident_store(dir.path());
    let q = Query {
        resource: Some(ResourceFilter::parse("order:456")),
        order: Order::OldestFirst,
        limit: 10_000,
        ..Query::default()
    };
    let got: Vec<u64> = store
        .query(&q)
        .unwrap()
        .records
        .iter()
        .map(|r| r.seq)
        .collect();
    let expected: Vec<u64> = all
        .iter()
        .filter(|r| {
            r.event.resource.kind == "order" && r.event.resource.id.as_deref() == Some("456")
        })
        .map(|r| r.seq)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
}

#[test]
fn failed_logins_in_the_last_hour() {
    let dir = tempfile::tempdir().unwrap();
    let (store, all) = incident_store(dir.path());
    let last = all.iter().map(|r| r.event_time().as_nanos()).max().unwrap();
    let from = Timestamp::from_nanos(last - HOUR);
    let q = Query {
        actions: vec![ActionPattern::new("auth.login").unwrap()],
        outcome: Some(Outcome::Failure),
        from: Some(from),
        ..Query::default()
    };
    let got: Vec<u64> = store
        .query(&q)
        .unwrap()
        .records
        .iter()
        .map(|r| r.seq)
        .collect();
    let expected: Vec<u64> = all
        .iter()
        .rev()
        .filter(|r| {
            r.event.action == "auth.login"
                && r.event.outcome == Outcome::Failure
                && r.event_time() >= from
        })
        .map(|r| r.seq)
        .collect();
    assert!(
        !expected.is_empty(),
        "the fixture has failed logins in its last hour"
    );
    assert_eq!(got, expected);
}

#[test]
fn exports_between_two_dates() {
    let dir = tempfile::tempdir().unwrap();
    let (store, all) = incident_store(dir.path());
    let from = Timestamp::from_nanos(T0 + 2 * HOUR);
    let to = Timestamp::from_nanos(T0 + 9 * HOUR);
    let q = Query {
        actions: vec![ActionPattern::new("*.export*").unwrap()],
        from: Some(from),
        to: Some(to),
        limit: 10_000,
        ..Query::default()
    };
    let got: Vec<u64> = store
        .query(&q)
        .unwrap()
        .records
        .iter()
        .map(|r| r.seq)
        .collect();
    let expected: Vec<u64> = all
        .iter()
        .rev()
        .filter(|r| {
            r.event.action.contains(".export") && r.event_time() >= from && r.event_time() < to
        })
        .map(|r| r.seq)
        .collect();
    assert!(expected.len() > 10);
    assert_eq!(got, expected);
    assert_eq!(store.count(&q).unwrap(), expected.len() as u64);
}

#[test]
fn pagination_stays_correct_while_events_are_appended() {
    let dir = tempfile::tempdir().unwrap();
    let (store, all) = incident_store(dir.path());
    let mut q = Query {
        actor: Some(ActorFilter::parse("user:bob")),
        limit: 7,
        ..Query::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = store.query(&q).unwrap();
        seen.extend(page.records.iter().map(|r| r.seq));
        // New events by the same actor arrive between pages.
        store
            .append(Event::new(
                Actor::new("user", "bob"),
                "auth.login",
                Resource::kind("session"),
                Outcome::Success,
            ))
            .unwrap();
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    let expected: Vec<u64> = all
        .iter()
        .rev()
        .filter(|r| r.event.actor.id == "bob" && r.event.actor.kind == "user")
        .map(|r| r.seq)
        .collect();
    assert_eq!(
        seen, expected,
        "every original match exactly once, newest first"
    );
}

#[test]
fn bad_queries_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = incident_store(dir.path());
    let err = store
        .query(&Query {
            cursor: Some("nonsense".into()),
            ..Query::default()
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            sealog::Error::InvalidQuery {
                field: "cursor",
                ..
            }
        ),
        "{err}"
    );
    let page = store
        .query(&Query {
            limit: 1,
            ..Query::default()
        })
        .unwrap();
    let other = Query {
        tenant: Some("t0".into()),
        cursor: page.next_cursor,
        ..Query::default()
    };
    let err = store.query(&other).unwrap_err();
    assert!(err.to_string().contains("different query"), "{err}");
    let err = store
        .query(&Query {
            limit: 20_000,
            ..Query::default()
        })
        .unwrap_err();
    assert!(
        matches!(err, sealog::Error::InvalidQuery { field: "limit", .. }),
        "{err}"
    );
}

fn sample_queries() -> Vec<Query> {
    vec![
        Query {
            actor: Some(ActorFilter::parse("user:alice")),
            limit: 10_000,
            ..Query::default()
        },
        Query {
            actions: vec![ActionPattern::new("*.export*").unwrap()],
            limit: 10_000,
            ..Query::default()
        },
        Query {
            source_ip: Some(IpFilter::parse("10.0.0.0/8").unwrap()),
            limit: 10_000,
            ..Query::default()
        },
        Query {
            resource: Some(ResourceFilter::parse("order:456")),
            limit: 10_000,
            ..Query::default()
        },
        Query {
            outcome: Some(Outcome::Failure),
            from: Some(Timestamp::from_nanos(T0 + 3 * HOUR)),
            limit: 10_000,
            ..Query::default()
        },
    ]
}

#[test]
fn damaged_or_missing_indexes_are_rebuilt_and_queries_stay_correct() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = incident_store(dir.path());
    let expected: Vec<Vec<u64>> = sample_queries()
        .iter()
        .map(|q| {
            store
                .query(q)
                .unwrap()
                .records
                .iter()
                .map(|r| r.seq)
                .collect()
        })
        .collect();
    store.close().unwrap();
    let files = sealog_tests::index_files(dir.path());
    assert!(files.len() >= 4, "{} index files", files.len());
    let originals: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    // One deleted, one with a flipped byte inside a section, one cut short.
    std::fs::remove_file(&files[0]).unwrap();
    let mut bytes = std::fs::read(&files[1]).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::write(&files[1], &bytes).unwrap();
    let bytes = std::fs::read(&files[2]).unwrap();
    std::fs::write(&files[2], &bytes[..bytes.len() / 3]).unwrap();

    let store = Store::open(dir.path(), small_options(8 << 10)).unwrap();
    for (q, want) in sample_queries().iter().zip(&expected) {
        let got: Vec<u64> = store
            .query(q)
            .unwrap()
            .records
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(&got, want, "{q:?}");
    }
    assert_eq!(store.stats().index_rebuilds, 3);
    // The rebuilt files are sound and identical to what sealing wrote.
    for (file, original) in files.iter().zip(&originals).take(3) {
        let bytes = std::fs::read(file).unwrap();
        sealog::format::index::IndexReader::parse(&bytes).unwrap();
        assert!(
            bytes == *original,
            "{} differs from the sealed original",
            file.display()
        );
    }
    store.verify().unwrap();
}

#[test]
fn a_read_only_store_without_indexes_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = incident_store(dir.path());
    let expected: Vec<u64> = store
        .query(&sample_queries()[0])
        .unwrap()
        .records
        .iter()
        .map(|r| r.seq)
        .collect();
    store.close().unwrap();
    for f in sealog_tests::index_files(dir.path()) {
        std::fs::remove_file(f).unwrap();
    }
    let store = Store::open_read_only(dir.path()).unwrap();
    let got: Vec<u64> = store
        .query(&sample_queries()[0])
        .unwrap()
        .records
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(got, expected);
    assert!(
        sealog_tests::index_files(dir.path()).is_empty(),
        "a read-only store writes nothing"
    );
}

/// Open segments are indexed in the background as records commit, so a
/// query during a busy ingest does not first have to index everything
/// appended since the previous query.
#[test]
fn open_segments_are_indexed_without_waiting_for_a_query() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), sealog_tests::small_options(64 << 20)).unwrap();
    for i in 0..20 {
        store
            .append_batch(sealog_tests::events(i * 250, (i + 1) * 250))
            .unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.stats().index_lag > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} committed records still unindexed after 30 s",
            store.stats().index_lag
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(store.stats().records, 5000);
    let q = Query {
        limit: 10,
        ..Query::default()
    };
    assert_eq!(store.query(&q).unwrap().records.len(), 10);
}

#[test]
fn a_page_by_event_time_opens_only_the_segments_its_range_reaches() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options(4 << 10)).unwrap();
    for i in 0..60i64 {
        let batch: Vec<Event> = (0..10)
            .map(|j| {
                Event::new(
                    Actor::new("user", "alice"),
                    "doc.read",
                    Resource::new("doc", format!("{j}")),
                    Outcome::Success,
                )
                .with_time(Timestamp::from_nanos(T0 + (i * 10 + j) * HOUR))
            })
            .collect();
        store.append_batch(&batch).unwrap();
    }
    store.wait_sealed().unwrap();
    let all: Vec<Record> = store.scan(..).map(|r| r.unwrap()).collect();
    let sealed = store.stats().sealed_segments;
    store.close().unwrap();
    // Without sidecars, every segment the query opens must rebuild its
    // index, so the rebuild count says how many were opened.
    for file in sealog_tests::index_files(dir.path()) {
        std::fs::remove_file(file).unwrap();
    }
    let store = Store::open(dir.path(), small_options(4 << 10)).unwrap();
    for order in [Order::LatestTimeFirst, Order::EarliestTimeFirst] {
        let q = Query {
            order,
            limit: 5,
            ..Query::default()
        };
        let mut expected: Vec<&Record> = all.iter().collect();
        expected.sort_by_key(|r| (r.event_time(), r.seq));
        if order == Order::LatestTimeFirst {
            expected.reverse();
        }
        let want: Vec<u64> = expected.iter().take(5).map(|r| r.seq).collect();
        let got: Vec<u64> = store
            .query(&q)
            .unwrap()
            .records
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(got, want, "{order:?}");
    }
    let opened = store.stats().index_rebuilds;
    assert!(sealed >= 8, "{sealed} sealed segments");
    assert!(
        opened <= 4,
        "two pages of 5 opened {opened} of {sealed} sealed segments"
    );
}

#[test]
fn event_time_pages_neither_repeat_nor_skip_while_events_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let (store, all) = incident_store(dir.path());
    for order in [Order::LatestTimeFirst, Order::EarliestTimeFirst] {
        let mut q = Query {
            actor: Some(ActorFilter::parse("user:bob")),
            order,
            limit: 7,
            ..Query::default()
        };
        let mut seen = Vec::new();
        let mut arrived = 0i64;
        loop {
            let page = store.query(&q).unwrap();
            seen.extend(page.records.iter().map(|r| r.seq));
            // Events of bob arrive between pages, dated far in the past and
            // far in the future: behind the cursor in one order or the other.
            arrived += 1;
            for hours in [-1000 * arrived, 1000 * arrived] {
                store
                    .append(
                        Event::new(
                            Actor::new("user", "bob"),
                            "auth.login",
                            Resource::kind("session"),
                            Outcome::Success,
                        )
                        .with_time(Timestamp::from_nanos(T0 + hours * HOUR)),
                    )
                    .unwrap();
            }
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => break,
            }
        }
        let mut expected: Vec<&Record> = all
            .iter()
            .filter(|r| r.event.actor.id == "bob" && r.event.actor.kind == "user")
            .collect();
        expected.sort_by_key(|r| (r.event_time(), r.seq));
        if order == Order::LatestTimeFirst {
            expected.reverse();
        }
        let expected: Vec<u64> = expected.iter().map(|r| r.seq).collect();
        // Every event present at the first page, once, in order; the new
        // ones were all behind the cursor when they arrived, except those
        // dated ahead of it, which come after the old ones.
        let old: Vec<u64> = seen
            .iter()
            .copied()
            .filter(|s| *s < all.len() as u64)
            .collect();
        assert_eq!(old, expected, "{order:?}");
        let mut unique = seen.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "a record was repeated");
    }
}

#[test]
fn event_time_pages_reach_events_at_the_latest_representable_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options(4 << 10)).unwrap();
    for time in [Timestamp::MAX, Timestamp::MAX, Timestamp::UNIX_EPOCH] {
        store
            .append(
                Event::new(
                    Actor::new("user", "alice"),
                    "doc.read",
                    Resource::kind("doc"),
                    Outcome::Success,
                )
                .with_time(time),
            )
            .unwrap();
    }
    let q = Query {
        order: Order::LatestTimeFirst,
        limit: 1,
        ..Query::default()
    };
    assert_eq!(all_pages(&store, &q), [1, 0, 2]);
}

/// A store of 48 sealed segments (counts over 32 or more are spread over
/// the cores) and its records.
fn many_segments(dir: &std::path::Path) -> (Store, Vec<Record>) {
    let store = Store::open(dir, small_options(1 << 20)).unwrap();
    let workload = sealog::workload::Workload::new(3);
    for i in 0..48u64 {
        store
            .append_batch_with(
                workload.events(i * 150, (i + 1) * 150),
                Durability::Buffered,
            )
            .unwrap();
        store.roll().unwrap();
    }
    store.wait_sealed().unwrap();
    assert!(store.stats().sealed_segments >= 48);
    let all = store.scan(..).map(|r| r.unwrap()).collect();
    (store, all)
}

#[test]
fn a_count_over_many_segments_equals_the_records_it_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (store, all) = many_segments(dir.path());
    let some = &all
        .iter()
        .skip(all.len() / 3)
        .find(|r| r.event.resource.id.is_some() && r.event.request_id.is_some())
        .unwrap()
        .event;
    let queries = [
        Query::default(),
        Query {
            actor: Some(ActorFilter::parse(&format!(
                "{}:{}",
                some.actor.kind, some.actor.id
            ))),
            ..Query::default()
        },
        Query {
            actions: vec![ActionPattern::new(some.action.clone()).unwrap()],
            ..Query::default()
        },
        Query {
            outcome: Some(Outcome::Denied),
            ..Query::default()
        },
        // Candidates checked against their records.
        Query {
            request_id: some.request_id.clone(),
            ..Query::default()
        },
        Query {
            resource: Some(ResourceFilter::parse(&format!(
                "{}:{}",
                some.resource.kind,
                some.resource.id.as_deref().unwrap()
            ))),
            ..Query::default()
        },
    ];
    for q in &queries {
        let expected = model_order(&all, q).len() as u64;
        assert!(expected > 0, "{q:?}");
        assert_eq!(store.count(q).unwrap(), expected, "{q:?}");
    }
}

#[test]
fn a_count_spread_over_the_cores_reports_the_first_damaged_segment_in_log_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = many_segments(dir.path());
    store.close().unwrap();
    // Two neighbouring segments (likely counted at once) whose index and
    // first record are both damaged: each index is rebuilt from the
    // records, which fails.
    let segments = sealog_tests::segment_files(dir.path());
    for at in [9, 10] {
        let segment = &segments[at];
        std::fs::write(segment.with_extension("idx"), b"not an index").unwrap();
        let mut bytes = std::fs::read(segment).unwrap();
        bytes[128 + 12 + 40] ^= 0x08;
        std::fs::write(segment, &bytes).unwrap();
    }
    let want = segments[9]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    for _ in 0..5 {
        let store = Store::open_read_only(dir.path()).unwrap();
        let q = Query {
            outcome: Some(Outcome::Denied),
            ..Query::default()
        };
        let err = store.count(&q).unwrap_err();
        assert!(err.to_string().contains(&want), "{err}");
    }
}

/// A rare value over many sealed segments (a search that meets many
/// segments without candidates between its matches, and plans those on
/// the cores, in order, until one has candidates): every match in
/// order, page after page, whatever the page size, with matches in
/// neighbouring segments, in the first and in the open segment, and a
/// request id found only in the oldest record.
#[test]
fn a_rare_value_across_many_segments_is_found_in_order_page_after_page() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options(8 << 10)).unwrap();
    let mut events = Vec::new();
    for i in 0..1_500i64 {
        let actor = if [3, 4, 700, 705, 1_100, 1_498].contains(&i) {
            "mallory"
        } else {
            "alice"
        };
        let mut event = Event::new(
            Actor::new("user", actor),
            "doc.read",
            Resource::new("doc", "7"),
            Outcome::Success,
        )
        .with_reason("read from the shared drive by the desktop client, version 7.2.1 ".repeat(3));
        if i == 0 {
            event = event.with_request_id("r-oldest");
        }
        events.push(event);
    }
    for chunk in events.chunks(10) {
        store.append_batch(chunk).unwrap();
    }
    store.wait_sealed().unwrap();
    let all: Vec<Record> = store.scan(..).map(|r| r.unwrap()).collect();
    let stats = store.stats();
    assert!(stats.sealed_segments >= 40, "{stats:?}");
    let mallory = Query {
        actor: Some(ActorFilter::parse("user:mallory")),
        ..Query::default()
    };
    for order in [Order::NewestFirst, Order::OldestFirst] {
        for limit in [1, 2, 3, 10] {
            let q = Query {
                order,
                limit,
                ..mallory.clone()
            };
            assert_eq!(
                all_pages(&store, &q),
                model_order(&all, &q),
                "{order:?} {limit}"
            );
        }
        let q = Query {
            order,
            ..mallory.clone()
        };
        let lazily: Vec<u64> = store.matches(&q).unwrap().map(|r| r.unwrap().seq).collect();
        assert_eq!(lazily, model_order(&all, &q), "{order:?}");
    }
    let oldest = Query {
        request_id: Some("r-oldest".into()),
        ..Query::default()
    };
    assert_eq!(all_pages(&store, &oldest), vec![0]);
    let absent = Query {
        request_id: Some("r-absent".into()),
        ..Query::default()
    };
    assert!(all_pages(&store, &absent).is_empty());
}
