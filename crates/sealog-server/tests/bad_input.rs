//! The bad-input matrix: each mistake gets a 4xx whose body names the
//! problem; afterwards the log holds exactly the valid events.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
#![allow(clippy::indexing_slicing, reason = "tests fail loudly")]

use axum::http::Method;
use bytes::Bytes;
use sealog_server::Layer;
use serde_json::{Value, json};

use sealog_testkit::server::{Setup, TestServer, event};

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    extra: Vec<(&'static str, &'static str)>,
    status: u16,
    code: &'static str,
    /// Text the message or details must contain.
    says: Vec<&'static str>,
}

fn post(
    name: &'static str,
    content_type: &'static str,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &'static str,
    says: Vec<&'static str>,
) -> Case {
    Case {
        name,
        method: Method::POST,
        path: "/v1/events".into(),
        content_type: Some(content_type),
        body: body.into(),
        extra: Vec::new(),
        status,
        code,
        says,
    }
}

fn get(
    name: &'static str,
    path: &str,
    status: u16,
    code: &'static str,
    says: Vec<&'static str>,
) -> Case {
    Case {
        name,
        method: Method::GET,
        path: path.into(),
        content_type: None,
        body: Vec::new(),
        extra: Vec::new(),
        status,
        code,
        says,
    }
}

const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_named_and_nothing_of_it_is_written() {
    let server = TestServer::start(Setup {
        layer: Layer {
            max_body_bytes: Some(200_000),
            max_event_bytes: Some(40_000),
            max_batch_events: Some(50),
            ..Layer::default()
        },
        ..Setup::default()
    })
    .await;
    let good = |i| event("alice", "customer.delete", i);
    let mut wrong_type = good(100);
    wrong_type["actor"]["id"] = 5.into();
    let mut missing = good(101);
    missing.as_object_mut().unwrap().remove("outcome");
    let mut bad_outcome = good(102);
    bad_outcome["outcome"] = "maybe".into();
    let mut bad_ip = good(103);
    bad_ip["source"] = json!({"ip": "300.1.2.3"});
    let mut bad_action = good(104);
    bad_action["action"] = "Customer Delete".into();
    let mut unknown_field = good(105);
    unknown_field["actr"] = "x".into();
    let mut secret = good(106);
    secret["metadata"] = json!({"password": "hunter2"});
    let repeated_key = {
        let text = good(113).to_string();
        let open = text.strip_suffix('}').unwrap();
        format!(r#"{open},"metadata":{{"user":{{"role":"user","role":"admin"}}}}}}"#)
    };
    let mut bidi_actor = good(114);
    bidi_actor["actor"]["id"] = "\u{202E}nimda".into();
    let mut forged_alert = good(115);
    forged_alert["actor"] = json!({"type": "service", "id": "sealog-alerts"});
    forged_alert["action"] = "alert.raised".into();
    let mut big_meta = good(107);
    big_meta["metadata"] = json!({"blob": "x".repeat(20_000)});
    let mut huge_event = good(108);
    huge_event["reason"] = "y".repeat(45_000).into();
    let mut bad_time = good(109);
    bad_time["time"] = "yesterday".into();
    let mut utf8 = good(110).to_string().into_bytes();
    let at = utf8.windows(5).position(|w| w == b"alice").unwrap();
    utf8[at + 1] = 0xff;
    let mixed = format!(
        "{}\n{}\n{}\n{}\n",
        good(111),
        wrong_type,
        good(112),
        bad_action
    );
    let too_many: String = (0..51).map(|i| format!("{}\n", good(200 + i))).collect();
    let mut padded = good(300);
    padded["reason"] = "z".repeat(5000).into();
    let too_big = format!("[{}]", vec![padded.to_string(); 45].join(","));
    assert!(too_big.len() > 200_000);

    let mut cases = vec![
        post(
            "malformed JSON",
            JSON,
            r#"{"actor": {"type": "user", "#,
            400,
            "malformed_json",
            vec!["line", "column"],
        ),
        post(
            "malformed array",
            JSON,
            "[\n{\"a\": 1},\n{oops}\n]",
            400,
            "malformed_json",
            vec!["line 3"],
        ),
        post(
            "malformed NDJSON line",
            NDJSON,
            format!("{}\n{{not json\n", good(1)),
            400,
            "invalid_events",
            vec!["\"line\":2", "not a JSON event"],
        ),
        post(
            "wrong type",
            JSON,
            wrong_type.to_string(),
            400,
            "invalid_events",
            vec!["actor.id", "invalid type"],
        ),
        post(
            "missing field",
            JSON,
            missing.to_string(),
            400,
            "invalid_events",
            vec!["missing field `outcome`"],
        ),
        post(
            "bad outcome",
            JSON,
            bad_outcome.to_string(),
            400,
            "invalid_events",
            vec!["outcome", "maybe"],
        ),
        post(
            "bad ip",
            JSON,
            bad_ip.to_string(),
            400,
            "invalid_events",
            vec!["source.ip", "300.1.2.3"],
        ),
        post(
            "bad action",
            JSON,
            bad_action.to_string(),
            400,
            "invalid_events",
            vec!["\"field\":\"action\""],
        ),
        post(
            "an event in sealog's own name (a forged alert)",
            JSON,
            forged_alert.to_string(),
            400,
            "invalid_events",
            vec![
                "\"field\":\"actor\"",
                "service:sealog-alerts",
                "only sealog itself",
            ],
        ),
        post(
            "unknown field",
            JSON,
            unknown_field.to_string(),
            400,
            "invalid_events",
            vec!["unknown field `actr`"],
        ),
        post(
            "repeated metadata key",
            JSON,
            repeated_key,
            400,
            "invalid_events",
            vec!["\"field\":\"metadata.user.role\"", "more than once"],
        ),
        post(
            "bidirectional control in an identifier",
            NDJSON,
            format!("{}\n{bidi_actor}\n", good(115)),
            400,
            "invalid_events",
            vec!["\"line\":2", "\"field\":\"actor.id\"", "U+202E"],
        ),
        post(
            "secret in metadata",
            JSON,
            secret.to_string(),
            400,
            "invalid_events",
            vec!["metadata.password", "secret"],
        ),
        post(
            "oversized metadata",
            JSON,
            big_meta.to_string(),
            400,
            "invalid_events",
            vec!["\"field\":\"metadata\"", "limit is 16384"],
        ),
        post(
            "oversized event",
            JSON,
            huge_event.to_string(),
            413,
            "event_too_large",
            vec!["limit of 40000 bytes"],
        ),
        post(
            "oversized event in a batch",
            NDJSON,
            format!("{}\n{huge_event}\n", good(2)),
            400,
            "invalid_events",
            vec!["\"index\":1", "limit of 40000"],
        ),
        post(
            "bad time",
            JSON,
            bad_time.to_string(),
            400,
            "invalid_events",
            vec!["\"field\":\"time\"", "RFC 3339"],
        ),
        post(
            "invalid UTF-8",
            JSON,
            utf8,
            400,
            "invalid_utf8",
            vec!["UTF-8", "offset"],
        ),
        post(
            "mixed batch",
            NDJSON,
            mixed,
            400,
            "invalid_events",
            vec!["2 invalid event(s)", "\"line\":2", "\"line\":4"],
        ),
        post(
            "too many events",
            NDJSON,
            too_many,
            413,
            "too_many_events",
            vec!["limit of 50"],
        ),
        post(
            "oversized body",
            JSON,
            too_big,
            413,
            "body_too_large",
            vec!["200000 bytes"],
        ),
        post("empty body", JSON, "", 400, "empty_body", vec!["empty"]),
        post(
            "not an object",
            JSON,
            "42",
            400,
            "malformed_json",
            vec!["neither a JSON object nor a JSON array"],
        ),
        post(
            "empty array",
            JSON,
            "[]",
            400,
            "empty_batch",
            vec!["no event"],
        ),
        post(
            "wrong content type",
            "text/plain",
            good(3).to_string(),
            415,
            "unsupported_media_type",
            vec!["application/x-ndjson"],
        ),
        get(
            "bad cursor",
            "/v1/events?cursor=v1.n.garbage",
            400,
            "invalid_parameter",
            vec!["cursor"],
        ),
        get(
            "empty time range",
            "/v1/events?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
            400,
            "invalid_parameter",
            vec!["time range is empty"],
        ),
        get(
            "bad time",
            "/v1/events?from=yesterday",
            400,
            "invalid_parameter",
            vec!["`from`", "RFC 3339"],
        ),
        get(
            "unknown parameter",
            "/v1/events?actr=alice&colour=red",
            400,
            "unknown_parameter",
            vec!["`actr`", "`colour`"],
        ),
        get(
            "repeated parameter",
            "/v1/events?actor=a&actor=b",
            400,
            "invalid_parameter",
            vec!["more than once"],
        ),
        get(
            "bad limit",
            "/v1/events?limit=0",
            400,
            "invalid_parameter",
            vec!["limit"],
        ),
        get(
            "huge limit",
            "/v1/events?limit=100000",
            400,
            "invalid_parameter",
            vec!["1..=10000"],
        ),
        get(
            "bad order",
            "/v1/events?order=sideways",
            400,
            "invalid_parameter",
            vec!["newest"],
        ),
        get(
            "bad outcome",
            "/v1/events?outcome=maybe",
            400,
            "invalid_parameter",
            vec!["outcome"],
        ),
        get(
            "bad cidr",
            "/v1/events?source_ip=10.0.0.0/99",
            400,
            "invalid_parameter",
            vec!["prefix"],
        ),
        get(
            "bad action pattern",
            "/v1/events?action=Bad%20One",
            400,
            "invalid_parameter",
            vec!["action pattern"],
        ),
        get("bad seq", "/v1/events/abc", 400, "invalid_seq", vec!["abc"]),
        get(
            "unknown parameter on a record",
            "/v1/events/0?prof=true",
            400,
            "unknown_parameter",
            vec!["`prof`"],
        ),
        get(
            "bad proof flag",
            "/v1/events/0?proof=yes",
            400,
            "invalid_parameter",
            vec!["`true` or `false`"],
        ),
        get(
            "missing proof parameter",
            "/v1/proof/inclusion",
            400,
            "invalid_parameter",
            vec!["seq"],
        ),
        get(
            "proof beyond the log",
            "/v1/proof/consistency?from=1&to=99999",
            400,
            "invalid_parameter",
            vec!["`to`", "durable"],
        ),
        get(
            "bad last event id",
            "/v1/tail",
            400,
            "invalid_last_event_id",
            vec!["Last-Event-ID"],
        ),
        get(
            "no such endpoint",
            "/v2/events",
            404,
            "not_found",
            vec!["/v2/events"],
        ),
        Case {
            method: Method::DELETE,
            ..get(
                "no deleting",
                "/v1/events",
                405,
                "method_not_allowed",
                vec!["DELETE"],
            )
        },
        Case {
            extra: vec![("idempotency-key", "has space")],
            ..post(
                "bad idempotency key",
                JSON,
                good(4).to_string(),
                400,
                "invalid_idempotency_key",
                vec!["Idempotency-Key"],
            )
        },
        Case {
            extra: vec![("accept", "application/x-ndjson")],
            ..get(
                "export with a limit",
                "/v1/events?limit=5",
                400,
                "invalid_parameter",
                vec!["stream"],
            )
        },
    ];
    // The bad Last-Event-ID case needs its header.
    for c in &mut cases {
        if c.name == "bad last event id" {
            c.extra = vec![("last-event-id", "seven")];
        }
    }
    let mut admin = server.admin();
    let mut valid = Vec::new();
    // Every case runs; what each got wrong is reported together at the end.
    let mut wrong = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let mut headers: Vec<(&str, &str)> = case.extra.clone();
        if let Some(ct) = case.content_type {
            headers.push(("content-type", ct));
        }
        let r = admin
            .request(
                case.method.clone(),
                &case.path,
                &headers,
                Bytes::from(case.body.clone()),
            )
            .await
            .unwrap();
        wrong.extend(case_problems(case, &r));
        // A valid event between the bad ones.
        let v = event("valid", "valid.event", i as u64);
        let r = admin.post_json("/v1/events", v.to_string()).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        valid.push(v);
    }

    let dir = server.stop().await;
    let records = sealog_testkit::server::all_records(&dir);
    let got: Vec<Value> = records
        .iter()
        .map(|r| serde_json::to_value(&r.event).unwrap())
        .collect();
    if got != valid {
        wrong.push(format!(
            "the log should hold exactly the {} valid events, it holds {got:?}",
            valid.len()
        ));
    }
    assert!(
        wrong.is_empty(),
        "{} problems:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// What an answer to a bad-input case got wrong: status, error code, a
/// message that explains, the words it must contain.
fn case_problems(case: &Case, r: &sealog_testkit::client::ClientResponse) -> Vec<String> {
    let text = r.text();
    let mut wrong = Vec::new();
    if r.status != case.status {
        wrong.push(format!(
            "{}: status {} instead of {}: {text}",
            case.name, r.status, case.status
        ));
    }
    if r.error_code() != case.code {
        wrong.push(format!(
            "{}: code `{}` instead of `{}`: {text}",
            case.name,
            r.error_code(),
            case.code
        ));
    }
    let explained = r.json()["error"]["message"]
        .as_str()
        .is_some_and(|m| m.len() > 20);
    if !explained {
        wrong.push(format!("{}: no message that explains: {text}", case.name));
    }
    for s in &case.says {
        if !text.contains(s) {
            wrong.push(format!("{}: `{text}` should contain `{s}`", case.name));
        }
    }
    wrong
}
