//! Strict parsing of query strings into the engine's [`Query`].
//!
//! Unknown parameters are refused by name (a typo such as `actr=alice`
//! must not silently widen a query during an incident), as are repeated
//! parameters other than `action`, values that are not valid UTF-8 after
//! percent-decoding, and anything the engine's [`Query::validate`] refuses.

use sealog::aggregate::{CountField, DEFAULT_TOP, MAX_TOP};
use sealog::query::{
    ActionPattern, ActorFilter, IpFilter, MAX_LIMIT, Order, Query, ResourceFilter, TimeBound,
};
use sealog::{Outcome, Timestamp};

use crate::error::ApiError;

/// The filter parameters of `GET /v1/events`, `/v1/tail` and the export.
pub const FILTERS: &[&str] = &[
    "actor",
    "action",
    "resource",
    "resource_type",
    "outcome",
    "tenant",
    "source_ip",
    "request_id",
    "from",
    "to",
    "since",
];

/// The parameters of `GET /v1/events`: the filters, then the order, the
/// page, `count` (only the number of matches), and `count_by` and `top`
/// (the matches counted by group).
pub const QUERY_PARAMS: &[&str] = &[
    "actor",
    "action",
    "resource",
    "resource_type",
    "outcome",
    "tenant",
    "source_ip",
    "request_id",
    "from",
    "to",
    "since",
    "order",
    "limit",
    "cursor",
    "count",
    "count_by",
    "top",
];

/// Parameters as given, in order.
pub type Params = Vec<(String, String)>;

/// Splits a query string, refusing parameters not in `allowed` and
/// repeats of those not in `repeatable`.
pub fn parse(raw: Option<&str>, allowed: &[&str], repeatable: &[&str]) -> Result<Params, ApiError> {
    let raw = raw.unwrap_or("");
    let mut out: Params = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        if k.contains('\u{fffd}') || v.contains('\u{fffd}') {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!(
                    "query parameter `{}` is not valid UTF-8 after percent-decoding",
                    crate::audit::clean(&k, 64)
                ),
            ));
        }
        if !allowed.contains(&k.as_ref()) {
            unknown.push(crate::audit::clean(&k, 64));
            continue;
        }
        if !repeatable.contains(&k.as_ref()) && out.iter().any(|(seen, _)| *seen == *k) {
            return Err(ApiError::bad_param(
                &k,
                "is given more than once; only `action` may be repeated (the actions are ORed)",
            ));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    if !unknown.is_empty() {
        let mut known: Vec<&str> = allowed.to_vec();
        known.sort_unstable();
        return Err(ApiError::bad_request(
            "unknown_parameter",
            format!(
                "unknown query parameter(s): {}; this endpoint takes: {}",
                unknown
                    .iter()
                    .map(|u| format!("`{u}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                known.join(", ")
            ),
        )
        .with("unknown", unknown));
    }
    Ok(out)
}

/// The value of a parameter given once.
pub fn get<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Whether `count=true` asks for the number of matches instead of a page
/// (`true` or `false`; absent is `false`).
pub fn count(params: &Params) -> Result<bool, ApiError> {
    match get(params, "count") {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_param(
            "count",
            format!(
                "`{}` is not `true` or `false`",
                crate::audit::clean(other, 64)
            ),
        )),
    }
}

/// `count_by=FIELD` and `top=N`: the field to count the matches by and
/// how many groups to list, or `None` for a listing (`top` alone is
/// refused).
pub fn count_by(params: &Params) -> Result<Option<(CountField, usize)>, ApiError> {
    let Some(field) = get(params, "count_by") else {
        if get(params, "top").is_some() {
            return Err(ApiError::bad_param(
                "top",
                "says how many groups `count_by` lists: give `count_by` too",
            ));
        }
        return Ok(None);
    };
    if get(params, "count") == Some("true") {
        return Err(ApiError::bad_param(
            "count",
            "counts every match; `count_by` counts them by group: give one of the two",
        ));
    }
    let field = CountField::parse(field).map_err(|e| match e {
        sealog::Error::InvalidQuery { reason, .. } => ApiError::bad_param("count_by", reason),
        other => ApiError::bad_param("count_by", other.to_string()),
    })?;
    let top = match get(params, "top") {
        None => DEFAULT_TOP,
        Some(text) => usize::try_from(number("top", text)?)
            .ok()
            .filter(|n| (1..=MAX_TOP).contains(n))
            .ok_or_else(|| {
                ApiError::bad_param("top", format!("`{text}` is outside 1..={MAX_TOP}"))
            })?,
    };
    Ok(Some((field, top)))
}

/// Parses a non-negative integer parameter.
pub fn number(name: &str, text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_param(name, format!("`{text}` is not a non-negative integer")))
}

fn required<'a>(params: &'a Params, name: &str, example: &str) -> Result<&'a str, ApiError> {
    get(params, name).ok_or_else(|| ApiError::bad_param(name, format!("is required: {example}")))
}

/// The record and tree size of `GET /v1/proof/inclusion?seq=S[&tree_size=N]`,
/// checked against the `durable` size of the log (the default tree size),
/// so that the store is asked only for a proof it can give and every
/// refusal names the parameter to change.
pub fn inclusion(raw: Option<&str>, durable: u64) -> Result<(u64, u64), ApiError> {
    let params = parse(raw, &["seq", "tree_size"], &[])?;
    let seq = number(
        "seq",
        required(&params, "seq", "the record's seq, e.g. ?seq=42")?,
    )?;
    let tree_size = match get(&params, "tree_size") {
        Some(t) => number("tree_size", t)?,
        None => durable,
    };
    if tree_size > durable {
        return Err(ApiError::bad_param(
            "tree_size",
            format!("{tree_size} is larger than the durable log ({durable} records)"),
        ));
    }
    if seq >= tree_size {
        return Err(ApiError::bad_param(
            "seq",
            format!("record {seq} is not in a tree of {tree_size} records"),
        ));
    }
    Ok((seq, tree_size))
}

/// The two tree sizes of `GET /v1/proof/consistency?from=M&to=N`, checked
/// against the `durable` size of the log like [`inclusion`].
pub fn consistency(raw: Option<&str>, durable: u64) -> Result<(u64, u64), ApiError> {
    let params = parse(raw, &["from", "to"], &[])?;
    let example = "the smaller and the larger tree size, e.g. ?from=100&to=200";
    let from = number("from", required(&params, "from", example)?)?;
    let to = number("to", required(&params, "to", example)?)?;
    if from > to {
        return Err(ApiError::bad_param(
            "from",
            format!("{from} is larger than to = {to}"),
        ));
    }
    if to > durable {
        return Err(ApiError::bad_param(
            "to",
            format!("{to} is larger than the durable log ({durable} records)"),
        ));
    }
    Ok((from, to))
}

fn store_err(e: sealog::Error) -> ApiError {
    ApiError::from_store(&e)
}

/// A time of the range: RFC 3339, or a date alone (the start of that UTC
/// day for `from`, its end for `to`).
fn time(name: &'static str, text: &str, bound: TimeBound) -> Result<Timestamp, ApiError> {
    sealog::query::parse_time(name, text, bound).map_err(store_err)
}

/// The query the filters, order, limit and cursor describe, `since`
/// counted back from now.
pub fn query(params: &Params) -> Result<Query, ApiError> {
    query_at(params, Timestamp::now())
}

/// [`query`] at the instant `now`: `since=D` is the event-time range
/// `[now - D, now]` (the end replaced by `to` if given), and refuses `from`
/// beside it.
pub fn query_at(params: &Params, now: Timestamp) -> Result<Query, ApiError> {
    let mut q = Query::default();
    if let Some(text) = get(params, "since") {
        if get(params, "from").is_some() {
            return Err(ApiError::bad_param(
                "since",
                "is given with `from`: give one start of the time range, `since` (a duration \
                 back from now) or `from` (a time or a date)",
            ));
        }
        let duration = sealog::query::parse_duration("since", text).map_err(store_err)?;
        let (from, to) = sealog::query::since(duration, now);
        q.from = Some(from);
        q.to = Some(to);
    }
    for (k, v) in params {
        match k.as_str() {
            "actor" => q.actor = Some(ActorFilter::parse(v)),
            "action" => q
                .actions
                .push(ActionPattern::new(v.as_str()).map_err(store_err)?),
            "resource" => q.resource = Some(ResourceFilter::parse(v)),
            "resource_type" => q.resource_type = Some(v.clone()),
            "outcome" => {
                q.outcome = Some(
                    v.parse::<Outcome>()
                        .map_err(|reason| ApiError::bad_param("outcome", reason))?,
                );
            }
            "tenant" => q.tenant = Some(v.clone()),
            "source_ip" => q.source_ip = Some(IpFilter::parse(v).map_err(store_err)?),
            "request_id" => q.request_id = Some(v.clone()),
            "from" => q.from = Some(time("from", v, TimeBound::Start)?),
            "to" => q.to = Some(time("to", v, TimeBound::End)?),
            "order" => {
                q.order = match v.as_str() {
                    "newest" => Order::NewestFirst,
                    "oldest" => Order::OldestFirst,
                    "time" | "time_newest" => Order::LatestTimeFirst,
                    "time_oldest" => Order::EarliestTimeFirst,
                    other => {
                        return Err(ApiError::bad_param(
                            "order",
                            format!(
                                "`{}` is not `newest` or `oldest` (by seq), or `time` (also \
                                 `time_newest`) or `time_oldest` (by event time)",
                                crate::audit::clean(other, 64)
                            ),
                        ));
                    }
                };
            }
            "limit" => {
                let n = number("limit", v)?;
                if n == 0 || n > MAX_LIMIT as u64 {
                    return Err(ApiError::bad_param(
                        "limit",
                        format!("{n} is outside 1..={MAX_LIMIT}"),
                    ));
                }
                q.limit = usize::try_from(n).unwrap_or(MAX_LIMIT);
            }
            "cursor" => q.cursor = Some(v.clone()),
            _ => {}
        }
    }
    q.validate().map_err(|e| match e {
        // The start of the range came from `since`: name what was given.
        sealog::Error::InvalidQuery {
            field: "from",
            reason,
        } if get(params, "since").is_some() => ApiError::bad_param("since", reason),
        other => store_err(other),
    })?;
    Ok(q)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    const ALL: &[&str] = QUERY_PARAMS;

    #[test]
    fn the_listing_takes_every_filter_then_its_order_and_page() {
        assert_eq!(QUERY_PARAMS.get(..FILTERS.len()), Some(FILTERS));
        assert_eq!(
            QUERY_PARAMS.get(FILTERS.len()..),
            Some(&["order", "limit", "cursor", "count", "count_by", "top"][..])
        );
    }

    #[test]
    fn since_dates_and_time_order_parse_like_the_command_line() {
        let now = Timestamp::parse_rfc3339("2026-11-27T12:00:00Z").unwrap();
        let t = |s: &str| Some(Timestamp::parse_rfc3339(s).unwrap());
        let q = query_at(&parse(Some("since=1h"), ALL, &[]).unwrap(), now).unwrap();
        assert_eq!(q.from, t("2026-11-27T11:00:00Z"));
        assert_eq!(q.to.map(|t| t.as_nanos()), Some(now.as_nanos() + 1));
        let q = query_at(
            &parse(Some("since=2d&to=2026-11-26"), ALL, &[]).unwrap(),
            now,
        )
        .unwrap();
        assert_eq!(q.from, t("2026-11-25T12:00:00Z"));
        assert_eq!(q.to, t("2026-11-27T00:00:00Z"));
        let q = query_at(
            &parse(Some("from=2026-11-27&to=2026-11-27&order=time"), ALL, &[]).unwrap(),
            now,
        )
        .unwrap();
        assert_eq!(q.from, t("2026-11-27T00:00:00Z"));
        assert_eq!(q.to, t("2026-11-28T00:00:00Z"));
        assert_eq!(q.order, Order::LatestTimeFirst);
        let q = query(&parse(Some("order=time_oldest"), ALL, &[]).unwrap()).unwrap();
        assert_eq!(q.order, Order::EarliestTimeFirst);
        for (bad, parameter) in [
            ("since=1y", "since"),
            ("since=1h&from=2026-11-27", "since"),
            ("from=2026-11-31", "from"),
            ("to=2026-13-01", "to"),
            ("order=timely", "order"),
        ] {
            let e = query_at(&parse(Some(bad), ALL, &[]).unwrap(), now).unwrap_err();
            assert_eq!(e.details["parameter"], parameter, "{bad}: {}", e.message);
        }
        assert!(count(&parse(Some("count=true"), ALL, &[]).unwrap()).unwrap());
        assert!(!count(&parse(Some("count=false"), ALL, &[]).unwrap()).unwrap());
        assert!(!count(&parse(None, ALL, &[]).unwrap()).unwrap());
        let e = count(&parse(Some("count=yes"), ALL, &[]).unwrap()).unwrap_err();
        assert_eq!(e.details["parameter"], "count");
    }

    #[test]
    fn every_predicate_parses() {
        let p = parse(
            Some("actor=user%3Aalice&action=customer.*&action=auth.login&resource=customer:&outcome=denied&source_ip=10.0.0.0/8&from=2026-01-01T00:00:00Z&order=oldest&limit=5"),
            ALL,
            &["action"],
        )
        .unwrap();
        let q = query(&p).unwrap();
        assert_eq!(q.actor.unwrap().id, "alice");
        assert_eq!(q.actions.len(), 2);
        assert_eq!(q.order, Order::OldestFirst);
        assert_eq!(q.limit, 5);
    }

    #[test]
    fn mistakes_are_named() {
        let e = parse(Some("actr=alice&limit=1"), ALL, &["action"]).unwrap_err();
        assert_eq!(e.code, "unknown_parameter");
        assert!(e.message.contains("`actr`"), "{}", e.message);
        let e = parse(Some("limit=1&limit=2"), ALL, &["action"]).unwrap_err();
        assert!(e.message.contains("more than once"));
        for bad in [
            "limit=0",
            "limit=abc",
            "from=yesterday",
            "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
            "order=up",
            "outcome=maybe",
            "source_ip=300.0.0.1",
            "action=Bad%20Action",
            "actor=",
        ] {
            let p = parse(Some(bad), ALL, &["action"]).unwrap();
            let e = query(&p).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{bad}");
        }
        let e = parse(Some("actor=%FF"), ALL, &["action"]).unwrap_err();
        assert!(e.message.contains("UTF-8"));
    }

    #[test]
    fn a_proof_beyond_the_durable_log_names_the_parameter_that_asks_for_it() {
        let e = consistency(Some("from=1&to=99999"), 10).unwrap_err();
        assert_eq!(e.details["parameter"], "to", "{}", e.message);
        let e = inclusion(Some("seq=1&tree_size=99999"), 10).unwrap_err();
        assert_eq!(e.details["parameter"], "tree_size", "{}", e.message);
        let e = inclusion(Some("seq=10"), 10).unwrap_err();
        assert_eq!(e.details["parameter"], "seq", "{}", e.message);
        assert_eq!(inclusion(Some("seq=3"), 10).unwrap(), (3, 10));
        assert_eq!(consistency(Some("from=0&to=10"), 10).unwrap(), (0, 10));
    }

    #[test]
    fn proof_sizes_are_required_and_ordered() {
        for (raw, parameter) in [(None, "seq"), (Some("tree_size=5"), "seq")] {
            let e = inclusion(raw, 10).unwrap_err();
            assert_eq!(e.details["parameter"], parameter);
        }
        for (raw, parameter) in [
            (Some("to=5"), "from"),
            (Some("from=5"), "to"),
            (Some("from=6&to=5"), "from"),
            (Some("from=x&to=5"), "from"),
        ] {
            let e = consistency(raw, 10).unwrap_err();
            assert_eq!(e.details["parameter"], parameter, "{raw:?}");
        }
    }
}
