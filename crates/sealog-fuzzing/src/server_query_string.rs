//! `server_query_string`: the HTTP server's query strings, parsed by
//! `sealog_server::params` as each endpoint does.
//!
//! The input, as text (invalid UTF-8 replaced, as no request line carries
//! it), is the raw query string of `GET /v1/events`
//! ([`params::QUERY_PARAMS`]), of `GET /v1/tail` and the filters of the
//! export ([`params::FILTERS`]), of `GET /v1/proof/inclusion` and
//! `/v1/proof/consistency`, and of an endpoint that takes no parameter.
//! Queries run on the store of [`crate::query_cursor`], and proofs are
//! asked of it.
//!
//! Properties, beyond no panic:
//!
//! - splitting refuses exactly what it should: a parameter an endpoint
//!   does not take (all of them listed, by name), a repeat of one other
//!   than `action` (named), text that is not UTF-8 after percent-decoding;
//!   what it accepts is the query string's pairs, in order;
//! - every refusal of a parameter's value is a 400 `invalid_parameter`
//!   naming a parameter the request gave, and renders as a response;
//! - a query that parses has the values given (`since=D` is the range
//!   `[now - D, now]`, its end replaced by a `to` given; `order` names one
//!   of the four orders) and passes
//!   `Query::validate`; `count` is `true` or `false` or refused naming it;
//!   the engine runs it or refuses it only for its
//!   cursor (arbitrary cursor text is refused as a 400 naming `cursor`);
//!   a page holds at most `limit` records, and its `next_cursor`, sent back
//!   in a query string, is accepted;
//! - the audit event the server writes for the read passes the default
//!   validator;
//! - the parameters, rendered back into a query string, parse to the same
//!   parameters and the same query;
//! - proof parameters that parse name a proof the store gives (`seq <
//!   tree_size <= durable`, `from <= to <= durable`).

use sealog::format::validate::Validator;
use sealog::format::{Metadata, Resource};
use sealog::query::{MAX_LIMIT, Order, Query};
use sealog::{Store, Timestamp};
use sealog_server::ApiError;
use sealog_server::audit::{self, Origin, Principal};
use sealog_server::params::{self, FILTERS, Params, QUERY_PARAMS};

/// The instant `since` counts back from, fixed so that parsing twice gives
/// the same query.
const NOW: Timestamp = Timestamp::from_nanos(1_790_000_000_000_000_000);

/// The pairs of a query string, decoded (the model of what is given).
fn pairs(raw: &str) -> Params {
    form_urlencoded::parse(raw.as_bytes())
        .into_owned()
        .collect()
}

fn render(params: &Params) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

fn parameter(e: &ApiError) -> Option<&str> {
    e.details.get("parameter").and_then(|p| p.as_str())
}

/// Checks a refusal of `params::parse` against the pairs given.
fn check_split_refusal(e: &ApiError, given: &Params, allowed: &[&str], repeatable: &[&str]) {
    assert_eq!(e.status.as_u16(), 400, "{e}");
    let _ = e.body().to_string();
    match e.code.as_str() {
        "unknown_parameter" => {
            let unknown: Vec<String> = given
                .iter()
                .filter(|(k, _)| !allowed.contains(&k.as_str()))
                .map(|(k, _)| audit::clean(k, 64))
                .collect();
            let listed: Vec<&str> = e
                .details
                .get("unknown")
                .and_then(|u| u.as_array())
                .map(|u| u.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            assert_eq!(listed, unknown, "not every unknown parameter is listed");
            for name in &unknown {
                assert!(e.message.contains(&format!("`{name}`")), "{e}");
            }
        }
        "invalid_parameter" => match parameter(e) {
            Some(name) => {
                assert!(
                    allowed.contains(&name) && !repeatable.contains(&name),
                    "a repeat refused for `{name}`"
                );
                let times = given.iter().filter(|(k, _)| k == name).count();
                assert!(
                    times > 1,
                    "`{name}` refused as repeated, given {times} time(s)"
                );
            }
            None => {
                assert!(e.message.contains("UTF-8"), "{e}");
                assert!(
                    given
                        .iter()
                        .any(|(k, v)| k.contains('\u{fffd}') || v.contains('\u{fffd}')),
                    "refused as not UTF-8: {given:?}"
                );
            }
        },
        other => panic!("params::parse refused with `{other}`: {e}"),
    }
}

/// `params::parse`, checked; the parameters if it accepts.
fn split(raw: &str, given: &Params, allowed: &[&str], repeatable: &[&str]) -> Option<Params> {
    match params::parse(Some(raw), allowed, repeatable) {
        Ok(params) => {
            assert_eq!(&params, given, "accepted parameters differ from the pairs");
            for (n, (k, v)) in params.iter().enumerate() {
                assert!(allowed.contains(&k.as_str()), "`{k}` accepted");
                assert!(!k.contains('\u{fffd}') && !v.contains('\u{fffd}'));
                if !repeatable.contains(&k.as_str()) {
                    assert!(
                        !params.iter().skip(n + 1).any(|(later, _)| later == k),
                        "`{k}` accepted twice"
                    );
                }
            }
            Some(params)
        }
        Err(e) => {
            check_split_refusal(&e, given, allowed, repeatable);
            None
        }
    }
}

/// A refusal of a parameter's value: a 400 naming a parameter given.
fn check_value_refusal(e: &ApiError, given: &Params) {
    let _ = e.body().to_string();
    assert_eq!(
        (e.status.as_u16(), e.code.as_str()),
        (400, "invalid_parameter"),
        "{e}"
    );
    let Some(name) = parameter(e) else {
        panic!("a refusal names no parameter: {e}");
    };
    assert!(
        given.iter().any(|(k, _)| k == name),
        "a refusal names `{name}`, which the request did not give: {e}"
    );
}

/// The values a parsed query must hold.
fn check_values(q: &Query, given: &Params) {
    let value = |name: &str| params::get(given, name);
    assert_eq!(q.resource_type.as_deref(), value("resource_type"));
    assert_eq!(q.tenant.as_deref(), value("tenant"));
    assert_eq!(q.request_id.as_deref(), value("request_id"));
    assert_eq!(q.cursor.as_deref(), value("cursor"));
    let actions: Vec<&str> = q.actions.iter().map(|a| a.as_str()).collect();
    let given_actions: Vec<&str> = given
        .iter()
        .filter(|(k, _)| k == "action")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(actions, given_actions);
    match value("limit") {
        Some(text) => assert_eq!(Ok(q.limit), text.parse::<usize>()),
        None => assert_eq!(q.limit, Query::default().limit),
    }
    assert!((1..=MAX_LIMIT).contains(&q.limit));
    match value("order") {
        Some("oldest") => assert_eq!(q.order, Order::OldestFirst),
        Some("time" | "time_newest") => assert_eq!(q.order, Order::LatestTimeFirst),
        Some("time_oldest") => assert_eq!(q.order, Order::EarliestTimeFirst),
        Some(other) => assert_eq!((q.order, other), (Order::NewestFirst, "newest")),
        None => assert_eq!(q.order, Query::default().order),
    }
    if let Some(text) = value("since") {
        assert!(value("from").is_none(), "`since` accepted with `from`");
        let duration = match sealog::query::parse_duration("since", text) {
            Ok(d) => d,
            Err(e) => panic!("`since={text}` accepted, not a duration: {e}"),
        };
        let (from, to) = sealog::query::since(duration, NOW);
        assert_eq!(q.from, Some(from), "since={text}");
        if value("to").is_none() {
            assert_eq!(q.to, Some(to), "since={text} does not end at now");
        }
    }
}

/// One listing endpoint (`allowed` is its parameters): parse, validate,
/// run, record, render.
fn listing(raw: &str, given: &Params, allowed: &[&str], store: Option<&Store>) {
    let Some(params) = split(raw, given, allowed, &["action"]) else {
        return;
    };
    let q = match params::query_at(&params, NOW) {
        Ok(q) => q,
        Err(e) => {
            check_value_refusal(&e, &params);
            return;
        }
    };
    check_values(&q, &params);
    if allowed.contains(&"count") {
        match params::count(&params) {
            Ok(count) => assert_eq!(count, params::get(&params, "count") == Some("true")),
            Err(e) => check_value_refusal(&e, &params),
        }
    }
    if let Err(e) = q.validate() {
        panic!("a parsed query does not validate: {e}");
    }

    // What the server records for the read must pass validation.
    let mut metadata = Metadata::new();
    metadata.insert("params".into(), audit::params_metadata(&params));
    metadata.insert("returned".into(), MAX_LIMIT.into());
    let origin = Origin {
        endpoint: "GET /v1/events".into(),
        ..Origin::default()
    };
    let mut event = audit::event(
        "log.query",
        Principal::local().actor(),
        Resource::kind("log"),
        sealog::Outcome::Success,
        &origin,
        metadata,
    );
    if let Err(e) = Validator::default().validate(&mut event) {
        panic!("the audit event of a read is refused: {e}");
    }

    // Rendered back, the same parameters and the same query.
    let rendered = render(&params);
    match params::parse(Some(&rendered), allowed, &["action"]) {
        Ok(again) => {
            assert_eq!(again, params, "parameters change through rendering");
            match params::query_at(&again, NOW) {
                Ok(q2) => assert_eq!(q2, q, "a query changes through rendering"),
                Err(e) => panic!("a rendered query is refused: {e}"),
            }
        }
        Err(e) => panic!("a rendered query string is refused: {e}"),
    }

    let Some(store) = store else {
        return;
    };
    let page = match store.query(&q) {
        Ok(page) => page,
        Err(e) => {
            let api = ApiError::from_store(&e);
            assert!(
                q.cursor.is_some(),
                "a valid query without a cursor is refused: {e}"
            );
            assert_eq!(parameter(&api), Some("cursor"), "{api}");
            check_value_refusal(&api, &params);
            return;
        }
    };
    assert!(page.records.len() <= q.limit, "a page is over its limit");
    if let Err(e) = store.count(&q) {
        panic!("a query that runs cannot be counted: {e}");
    }
    // The next page, where the endpoint pages (the tail and the export
    // stream every match and take no cursor).
    let (Some(next), true) = (page.next_cursor, allowed.contains(&"cursor")) else {
        return;
    };
    let mut next_params: Params = params.into_iter().filter(|(k, _)| k != "cursor").collect();
    next_params.push(("cursor".into(), next));
    let next_raw = render(&next_params);
    let next_query = params::parse(Some(&next_raw), allowed, &["action"])
        .and_then(|p| params::query_at(&p, NOW));
    match next_query {
        Ok(nq) => {
            if let Err(e) = store.query(&nq) {
                panic!("the next page's cursor is refused: {e}");
            }
        }
        Err(e) => panic!("the next page's query string is refused: {e}"),
    }
}

/// A refusal of a proof request: a 400 naming one of its parameters.
fn check_proof_refusal(e: &ApiError, given: &Params, allowed: &[&str]) {
    let _ = e.body().to_string();
    assert_eq!(e.status.as_u16(), 400, "{e}");
    match (e.code.as_str(), parameter(e)) {
        ("invalid_parameter", Some(name)) => {
            assert!(
                allowed.contains(&name),
                "a proof refusal names `{name}`: {e}"
            );
        }
        ("invalid_parameter", None) => assert!(e.message.contains("UTF-8"), "{e}"),
        ("unknown_parameter", _) => {
            assert!(given.iter().any(|(k, _)| !allowed.contains(&k.as_str())));
        }
        (other, _) => panic!("a proof request refused with `{other}`: {e}"),
    }
}

fn proofs(raw: &str, given: &Params, store: Option<&Store>) {
    let durable = store.map_or(0, Store::tree_size);
    for size in [durable, 0, u64::MAX] {
        match params::inclusion(Some(raw), size) {
            Ok((seq, tree_size)) => {
                assert!(seq < tree_size && tree_size <= size);
                assert_eq!(params::get(given, "seq").map(str::parse), Some(Ok(seq)));
                if size == durable
                    && let Some(store) = store
                    && let Err(e) = store.inclusion_proof(seq, tree_size)
                {
                    panic!("inclusion {seq} in {tree_size} passed the parser, not the store: {e}");
                }
            }
            Err(e) => check_proof_refusal(&e, given, &["seq", "tree_size"]),
        }
        match params::consistency(Some(raw), size) {
            Ok((from, to)) => {
                assert!(from <= to && to <= size);
                if size == durable
                    && let Some(store) = store
                    && let Err(e) = store.consistency_proof(from, to)
                {
                    panic!("consistency {from} to {to} passed the parser, not the store: {e}");
                }
            }
            Err(e) => check_proof_refusal(&e, given, &["from", "to"]),
        }
    }
}

/// The target body.
pub fn run(data: &[u8]) {
    if data.len() > crate::MAX_INPUT {
        return;
    }
    let raw = String::from_utf8_lossy(data);
    let given = pairs(&raw);
    let store = crate::query_cursor::store();
    listing(&raw, &given, QUERY_PARAMS, store);
    listing(&raw, &given, FILTERS, store);
    proofs(&raw, &given, store);
    // An endpoint that takes no parameter accepts only an empty query.
    if let Some(params) = split(&raw, &given, &[], &[]) {
        assert!(params.is_empty());
    }
    for (name, value) in &given {
        if let Ok(n) = params::number(name, value) {
            assert_eq!(value.parse::<u64>(), Ok(n));
            assert_eq!(params::number(name, &n.to_string()).ok(), Some(n));
        }
    }
}
