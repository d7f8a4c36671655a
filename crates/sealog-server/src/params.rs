//! Strict parsing of query strings.
//!
//! Unknown parameters are refused by name (a typo such as `actr=alice`
//! must not silently widen a query during an incident), as are repeated
//! parameters other than `action`, values that are not valid UTF-8 after
//! percent-decoding, and anything the engine's [`Query::validate`] refuses.
//!
//! The filters are the engine's [`Filters`] (the same struct as the command
//! line's filter flags), deserialized from the query string with
//! `serde_html_form`; the listing adds its order and page ([`Page`]).

use sealog::Timestamp;
use sealog::aggregate::{CountField, DEFAULT_TOP, MAX_TOP};
use sealog::query::{Filters, MAX_LIMIT, Order, Query};
use serde::Deserialize;

use crate::error::ApiError;

/// The filter parameters of `GET /v1/events`, `/v1/tail` and the export:
/// the fields of [`Filters`].
pub const FILTERS: &[&str] = Filters::FIELDS;

/// The parameters of a listing beyond its filters: the order, the page,
/// `count` (only the number of matches), and `count_by` and `top` (the
/// matches counted by group). The fields of [`Page`].
pub const PAGE: &[&str] = &["order", "limit", "cursor", "count", "count_by", "top"];

/// The parameters of `GET /v1/events`: the filters, then the order, the
/// page, `count`, `count_by` and `top`.
pub const QUERY_PARAMS: &[&str] = &concat::<{ FILTERS.len() + PAGE.len() }>(FILTERS, PAGE);

/// The parameters of `GET /v1/events/{seq}`.
pub const RECORD_PARAMS: &[&str] = &["proof"];

/// The parameters of `GET /v1/alerts`.
pub const ALERTS_PARAMS: &[&str] = &["tenant"];

/// The parameters of `GET /v1/checkpoint`.
pub const CHECKPOINT_PARAMS: &[&str] = &["fresh"];

/// The parameters of `POST /v1/verify`.
pub const VERIFY_PARAMS: &[&str] = &["log_only"];

/// The parameters of `GET /v1/proof/inclusion`.
pub const INCLUSION_PARAMS: &[&str] = &["seq", "tree_size"];

/// The parameters of `GET /v1/proof/consistency`.
pub const CONSISTENCY_PARAMS: &[&str] = &["from", "to"];

/// The parameters that may be given more than once (the actions, ORed).
pub const REPEATABLE: &[&str] = &["action"];

/// `a` then `b`, as one array (for the lists above, at compile time).
const fn concat<const N: usize>(a: &[&'static str], b: &[&'static str]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < a.len() {
        out[i] = a[i];
        i += 1;
    }
    while i < N {
        out[i] = b[i - a.len()];
        i += 1;
    }
    out
}

/// The order and page of `GET /v1/events`, as given (the values are
/// checked by [`query_at`] and [`count`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Page {
    /// `newest` (the default) or `oldest` by seq, `time` (also
    /// `time_newest`) or `time_oldest` by event time.
    pub order: Option<String>,
    /// Records per page, 1 to [`MAX_LIMIT`].
    pub limit: Option<String>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// `true`: the number of matches instead of a page.
    pub count: Option<String>,
    /// A field to count the matches by instead of a page.
    pub count_by: Option<String>,
    /// How many groups `count_by` lists.
    pub top: Option<String>,
}

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
                "unknown query parameter(s): {}; this endpoint takes {}",
                unknown
                    .iter()
                    .map(|u| format!("`{u}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        )
        .with("unknown", unknown)
        .with("allowed", known));
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
    match page(params)?.count.as_deref() {
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
    let page = page(params)?;
    let Some(field) = page.count_by.as_deref() else {
        if page.top.is_some() {
            return Err(ApiError::bad_param(
                "top",
                "says how many groups `count_by` lists: give `count_by` too",
            ));
        }
        return Ok(None);
    };
    if page.count.as_deref() == Some("true") {
        return Err(ApiError::bad_param(
            "count",
            "counts every match; `count_by` counts them by group: give one of the two",
        ));
    }
    let field = CountField::parse(field).map_err(|e| match e {
        sealog::Error::InvalidQuery { reason, .. } => ApiError::bad_param("count_by", reason),
        other => ApiError::bad_param("count_by", other.to_string()),
    })?;
    let top = match page.top.as_deref() {
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

/// The parameters of `params` named in `names`, deserialized into `T` from
/// their query string (so that repeated `action` parameters become a list).
fn deserialize<T: serde::de::DeserializeOwned>(
    params: &Params,
    names: &[&str],
) -> Result<T, ApiError> {
    let given: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, _)| names.contains(&k.as_str()))
        .collect();
    // An empty value would deserialize as an absent one (`tenant=` as no
    // tenant filter): a query that silently widens. Refuse it by name.
    if let Some((name, _)) = given.iter().find(|(_, v)| v.is_empty()) {
        return Err(ApiError::bad_param(
            name,
            "is empty: give a value, or leave the parameter out",
        ));
    }
    let raw = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(given)
        .finish();
    // `parse` refused unknown and repeated parameters by name already.
    serde_html_form::from_str(&raw).map_err(|e| {
        ApiError::bad_request(
            "invalid_parameter",
            format!("the query parameters do not parse: {e}"),
        )
    })
}

/// The filters given in `params`.
pub fn filters(params: &Params) -> Result<Filters, ApiError> {
    deserialize(params, FILTERS)
}

/// The order and page given in `params`.
pub fn page(params: &Params) -> Result<Page, ApiError> {
    deserialize(params, PAGE)
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
    let params = parse(raw, INCLUSION_PARAMS, &[])?;
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
    let params = parse(raw, CONSISTENCY_PARAMS, &[])?;
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

/// The query the filters, order, limit and cursor describe, `since`
/// counted back from now.
pub fn query(params: &Params) -> Result<Query, ApiError> {
    query_at(params, Timestamp::now())
}

/// [`query`] at the instant `now`: the filters by
/// [`Filters::to_query_at`] (`since=D` is the event-time range
/// `[now - D, now]`, the end replaced by `to` if given, and is refused
/// beside `from`), then the order and the page.
pub fn query_at(params: &Params, now: Timestamp) -> Result<Query, ApiError> {
    let given_since = get(params, "since").is_some();
    let refused = |e: sealog::Error| match e {
        // The start of the range came from `since`: name what was given.
        sealog::Error::InvalidQuery {
            field: "from",
            reason,
        } if given_since => ApiError::bad_param("since", reason),
        other => store_err(other),
    };
    let mut q = filters(params)?.to_query_at(now).map_err(refused)?;
    let page = page(params)?;
    if let Some(order) = &page.order {
        q.order = match order.as_str() {
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
    if let Some(limit) = &page.limit {
        let n = number("limit", limit)?;
        if n == 0 || n > MAX_LIMIT as u64 {
            return Err(ApiError::bad_param(
                "limit",
                format!("{n} is outside 1..={MAX_LIMIT}"),
            ));
        }
        q.limit = usize::try_from(n).unwrap_or(MAX_LIMIT);
    }
    q.cursor = page.cursor;
    q.validate().map_err(refused)?;
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
        // Each name is a field of its struct, and the structs refuse any
        // other name: the lists and the structs cannot drift apart.
        for name in QUERY_PARAMS {
            let raw = format!("{name}=x");
            let is_filter = FILTERS.contains(name);
            assert_eq!(
                serde_html_form::from_str::<Filters>(&raw).is_ok(),
                is_filter,
                "`{name}`"
            );
            assert_eq!(
                serde_html_form::from_str::<Page>(&raw).is_ok(),
                !is_filter,
                "`{name}`"
            );
        }
        assert!(serde_html_form::from_str::<Filters>("actr=x").is_err());
        let both = "actor=a&action=b.c&action=d.*&limit=5&order=oldest";
        let params = parse(Some(both), QUERY_PARAMS, &["action"]).unwrap();
        assert_eq!(filters(&params).unwrap().action, ["b.c", "d.*"]);
        assert_eq!(page(&params).unwrap().limit.as_deref(), Some("5"));
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
    fn an_empty_parameter_is_refused_naming_it_not_read_as_absent() {
        // `tenant=` must not become "any tenant": a query that silently
        // widens is worse than a refusal.
        for name in QUERY_PARAMS {
            let raw = format!("{name}=");
            let p = parse(Some(&raw), ALL, &["action"]).unwrap();
            let e = if *name == "count" {
                count(&p).unwrap_err()
            } else if matches!(*name, "count_by" | "top") {
                count_by(&p).unwrap_err()
            } else {
                query(&p).unwrap_err()
            };
            assert_eq!(
                (e.status.as_u16(), e.code),
                (400, crate::error::ErrorCode::InvalidParameter),
                "{raw}"
            );
            assert_eq!(
                e.details.get("parameter").and_then(|v| v.as_str()),
                Some(*name),
                "{raw}: {e}"
            );
        }
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
