//! `query_cursor`: the engine's query-side parsers, and queries run
//! against a small store with an oracle.
//!
//! [`arbitrary`] values build a [`Query`] through the parsers a server or
//! the CLI uses: [`ActorFilter::parse`], [`ActionPattern::new`],
//! [`ResourceFilter::parse`], [`IpFilter::parse`], and a cursor that is
//! either arbitrary text (decoded by the query engine, the only place a
//! cursor is parsed) or the `next_cursor` of a real page. The query is
//! validated and run on a store of 150 varied events in several sealed
//! segments (with sidecars) and an open one, built once per process.
//!
//! Properties: nothing panics; a query that runs passed
//! [`Query::validate`]; its page is exactly the first `limit` records of a
//! full scan filtered by [`Query::matches`], in the query's order, after
//! the cursor; `next_cursor` is present exactly when more match; and
//! [`Store::count`] agrees with the scan. (The HTTP server's query strings
//! have a target of their own, `server_query_string`, on the same store.)

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use sealog::format::{Actor, Event, Metadata, Outcome, Resource, Timestamp};
use sealog::query::{ActionPattern, ActorFilter, IpFilter, Order, Query, ResourceFilter};
use sealog::{Preallocation, Store, StoreOptions};
use sealog_format::record;

/// First event time of the store's events.
const T0: i64 = 1_700_000_000_000_000_000;

/// Words the store's events use, so that filters match something.
const WORDS: &[&str] = &[
    "user:alice",
    "alice",
    "service:billing",
    "bob",
    "customer.delete",
    "customer.*",
    "*.export",
    "auth.login*",
    "customer:",
    "customer:7",
    "invoice",
    "t1",
    "t2",
    "req-3",
    "10.0.0.0/8",
    "10.1.2.3",
    "::ffff:10.0.0.0/104",
    "2001:db8::/32",
    "v1.n.5.0",
    "",
];

/// One of the store's events.
pub fn store_event(i: u64) -> Event {
    let actors = [("user", "alice"), ("user", "bob"), ("service", "billing")];
    let actions = [
        "customer.delete",
        "customer.read",
        "auth.login",
        "invoice.export",
    ];
    let (kind, id) = actors[(i % 3) as usize];
    let outcome = Outcome::ALL[(i % 3) as usize];
    let mut e = Event::new(
        Actor::new(kind, id),
        actions[(i % 4) as usize],
        Resource::new(
            if i.is_multiple_of(5) {
                "invoice"
            } else {
                "customer"
            },
            format!("{}", i % 9),
        ),
        outcome,
    )
    .with_request_id(format!("req-{}", i % 11));
    if i.is_multiple_of(2) {
        e = e.with_tenant(format!("t{}", i % 3));
    }
    if i % 3 != 1 {
        e = e.with_source_ip(IpAddr::V4(Ipv4Addr::new(
            10,
            (i % 4) as u8,
            2,
            (i % 7) as u8,
        )));
    }
    if i % 7 == 3 {
        e = e.with_source_ip(
            "2001:db8::1"
                .parse()
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        );
    }
    // Event times are not in seq order: some run backwards.
    let skew = if i.is_multiple_of(4) {
        -(i as i64) * 3
    } else {
        i as i64
    };
    e = e.with_time(Timestamp::from_nanos(T0 + skew * 1_000_000_000));
    if i.is_multiple_of(6) {
        let mut m = Metadata::new();
        m.insert("n".into(), i.into());
        e = e.with_metadata(m);
    }
    e
}

/// The store of 150 events the queries run on, built once per process
/// (shared with `server_query_string`).
pub(crate) fn store() -> Option<&'static Store> {
    static STORE: OnceLock<Option<(tempfile::TempDir, Store)>> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let dir = tempfile::tempdir().ok()?;
            let options = StoreOptions {
                segment_size: sealog::MIN_SEGMENT_SIZE,
                preallocation: Preallocation::Allocate,
                ..StoreOptions::default()
            };
            let store = Store::open(dir.path(), options).ok()?;
            for chunk in (0..150u64).collect::<Vec<_>>().chunks(5) {
                store
                    .append_batch(chunk.iter().map(|&i| store_event(i)))
                    .ok()?;
            }
            store.wait_sealed().ok()?;
            Some((dir, store))
        })
        .as_ref()
        .map(|(_, s)| s)
}

fn text(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    let pick = u8::arbitrary(u)?;
    match WORDS.get(usize::from(pick)) {
        Some(word) => Ok((*word).to_owned()),
        None => {
            let s = <&str>::arbitrary(u)?;
            Ok(s.chars().take(64).collect())
        }
    }
}

fn maybe<T>(
    u: &mut Unstructured<'_>,
    f: impl FnOnce(&mut Unstructured<'_>) -> arbitrary::Result<T>,
) -> arbitrary::Result<Option<T>> {
    if bool::arbitrary(u)? {
        f(u).map(Some)
    } else {
        Ok(None)
    }
}

fn time(u: &mut Unstructured<'_>) -> arbitrary::Result<Timestamp> {
    Ok(match u8::arbitrary(u)? % 3 {
        0 => Timestamp::from_nanos(i64::arbitrary(u)?),
        _ => Timestamp::from_nanos(T0 + i64::from(i16::arbitrary(u)?) * 1_000_000_000),
    })
}

/// The query the input describes.
fn query(u: &mut Unstructured<'_>) -> arbitrary::Result<(Query, bool)> {
    let mut q = Query {
        actor: maybe(u, text)?.map(|t| ActorFilter::parse(&t)),
        resource: maybe(u, text)?.map(|t| ResourceFilter::parse(&t)),
        resource_type: maybe(u, text)?,
        tenant: maybe(u, text)?,
        request_id: maybe(u, text)?,
        outcome: maybe(u, |u| Ok(Outcome::ALL[usize::from(u8::arbitrary(u)? % 3)]))?,
        from: maybe(u, time)?,
        to: maybe(u, time)?,
        order: match u8::arbitrary(u)? % 4 {
            0 => Order::NewestFirst,
            1 => Order::OldestFirst,
            2 => Order::LatestTimeFirst,
            _ => Order::EarliestTimeFirst,
        },
        limit: match u8::arbitrary(u)? {
            0 => 0,
            255 => usize::arbitrary(u)?,
            n => usize::from(n % 40) + 1,
        },
        ..Query::default()
    };
    for _ in 0..u8::arbitrary(u)? % 4 {
        if let Ok(p) = ActionPattern::new(text(u)?) {
            assert!(!p.as_str().is_empty());
            let _ = (
                p.literal_prefix(),
                p.is_exact(),
                p.matches("customer.delete"),
            );
            q.actions.push(p);
        }
    }
    if let Some(t) = maybe(u, text)?
        && let Ok(f) = IpFilter::parse(&t)
    {
        let _ = f.range();
        q.source_ip = Some(f);
    }
    // Arbitrary cursor text, or (flag) continue through real pages.
    let paginate = bool::arbitrary(u)?;
    if !paginate {
        q.cursor = maybe(u, text)?;
    }
    Ok((q, paginate))
}

/// A record's position in the query's order: its seq, or its event time
/// and seq.
type Position = (i64, u64);

/// The records a query must return, in its order, from a full scan, with
/// their positions.
fn oracle(store: &Store, q: &Query) -> Vec<(Position, u64)> {
    let mut found: Vec<(Position, u64)> = (0..store.len())
        .filter_map(|seq| {
            let bytes = store.get_raw(seq).ok()??;
            let view = record::decode(&bytes).ok()?;
            let time = if q.order.by_time() {
                view.event_time().as_nanos()
            } else {
                0
            };
            q.matches(&view).then_some(((time, seq), seq))
        })
        .collect();
    found.sort_unstable();
    if q.order.descending() {
        found.reverse();
    }
    found
}

/// The position a cursor text names, if it is one of the store's shapes
/// (`v1.<order>.<seq>.<fp>` or `v1.<order>.<time>_<seq>.<fp>`).
fn cursor_position(text: &str) -> Option<Position> {
    let position = text.split('.').nth(2)?;
    match position.split_once('_') {
        Some((time, seq)) => Some((time.parse().ok()?, seq.parse().ok()?)),
        None => Some((0, position.parse().ok()?)),
    }
}

/// The target body.
pub fn run(data: &[u8]) {
    if data.len() > crate::MAX_INPUT {
        return;
    }
    let Some(store) = store() else {
        return;
    };
    let Ok((mut q, paginate)) = query(&mut Unstructured::new(data)) else {
        return;
    };
    let valid = q.validate().is_ok();
    let page = store.query(&q);
    let count = store.count(&q);
    if !valid {
        assert!(page.is_err(), "an invalid query ran");
        return;
    }
    let Ok(page) = page else {
        // Only the cursor can make a valid query fail.
        assert!(q.cursor.is_some(), "a valid query failed: {:?}", page.err());
        return;
    };
    let expected = oracle(store, &q);
    if q.cursor.is_none() {
        assert_eq!(
            count.ok(),
            Some(expected.len() as u64),
            "count disagrees with the scan"
        );
    }
    let after = |found: &[(Position, u64)], cursor: Option<Position>| -> Vec<u64> {
        found
            .iter()
            .filter(|&&(p, _)| match cursor {
                None => true,
                Some(c) if q.order.descending() => p < c,
                Some(c) => p > c,
            })
            .map(|&(_, seq)| seq)
            .collect()
    };
    let cursor = q.cursor.as_deref().and_then(cursor_position);
    let mut want = after(&expected, cursor);
    let mut page = page;
    loop {
        let got: Vec<u64> = page.records.iter().map(|r| r.seq).collect();
        let n = q.limit.min(want.len());
        assert_eq!(
            got,
            want.get(..n).unwrap_or_default(),
            "a page differs from the scan"
        );
        assert_eq!(
            page.next_cursor.is_some(),
            want.len() > q.limit,
            "next_cursor is wrong"
        );
        let (Some(next), true) = (page.next_cursor.take(), paginate) else {
            break;
        };
        want.drain(..n);
        q.cursor = Some(next);
        page = match store.query(&q) {
            Ok(p) => p,
            Err(e) => panic!("a cursor the store returned is refused: {e}"),
        };
    }
}
