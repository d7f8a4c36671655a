//! The authentication and authorization matrix: every refusal is a 401 or
//! 403 (404 for another tenant's record) with a clear message, and every
//! refusal is itself in the log afterwards.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
#![allow(clippy::indexing_slicing, reason = "tests fail loudly")]

use std::time::Duration;

use axum::http::Method;
use sealog_server::Layer;
use sealog_server::tokens::{self, Scope};
use sealog_testkit::client::Client;
use serde_json::json;

use sealog_testkit::server::{Setup, TestServer, event};

struct Expect {
    status: u16,
    code: &'static str,
    message: &'static str,
    /// The audit event: action, actor id, reason fragment.
    action: &'static str,
    actor: &'static str,
    reason: &'static str,
}

/// Sends one refused request; returns what its answer got wrong (every
/// case runs, and the failures are reported together).
async fn check(
    c: &mut Client,
    method: Method,
    path: &str,
    body: String,
    e: &Expect,
) -> Vec<String> {
    let r = c
        .request(
            method.clone(),
            path,
            &[("content-type", "application/json")],
            body,
        )
        .await
        .unwrap();
    let mut wrong = Vec::new();
    let text = r.text();
    if r.status != e.status {
        wrong.push(format!(
            "{method} {path}: status {} instead of {}: {text}",
            r.status, e.status
        ));
    }
    if r.error_code() != e.code {
        wrong.push(format!(
            "{method} {path}: code `{}` instead of `{}`: {text}",
            r.error_code(),
            e.code
        ));
    }
    let message = r.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if !message.contains(e.message) {
        wrong.push(format!(
            "{method} {path}: `{message}` should say `{}`",
            e.message
        ));
    }
    if e.status == 401 && r.header("www-authenticate").is_none() {
        wrong.push(format!("{method} {path}: a 401 without WWW-Authenticate"));
    }
    wrong
}

/// A server with tokens of every scope, two of them bound to tenant
/// `acme`, holding one `globex` event and one `acme` event: returns it and
/// the two events' seqs.
async fn server_with_two_tenants() -> (TestServer, u64, u64) {
    let server = TestServer::start(Setup {
        layer: Layer {
            refusals_per_window: Some(1000),
            ..Layer::default()
        },
        tokens: vec![
            ("writer", vec![Scope::Ingest], None),
            ("reader", vec![Scope::Query], None),
            ("auditor", vec![Scope::Admin], None),
            ("acme-writer", vec![Scope::Ingest], Some("acme")),
            ("acme-reader", vec![Scope::Query], Some("acme")),
            ("leaver", vec![Scope::Ingest, Scope::Query], None),
        ],
        ..Setup::default()
    })
    .await;
    let mut admin = server.admin();
    let mut acme_writer = server.client(Some(&server.secret("acme-writer")));
    // Seed: one globex event, one acme event (tenant filled in).
    let mut globex = event("g", "x.create", 0);
    globex["tenant"] = "globex".into();
    let r = admin
        .post_json("/v1/events", globex.to_string())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let globex_seq = r.json()["receipts"][0]["seq"].as_u64().unwrap();
    let r = acme_writer
        .post_json("/v1/events", event("a", "x.create", 1).to_string())
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let acme_seq = r.json()["receipts"][0]["seq"].as_u64().unwrap();
    (server, globex_seq, acme_seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_bound_reader_sees_only_its_tenants_records() {
    let (server, globex_seq, acme_seq) = server_with_two_tenants().await;
    let mut acme_reader = server.client(Some(&server.secret("acme-reader")));
    let r = acme_reader.get("/v1/events").await.unwrap();
    assert_eq!(r.status, 200);
    let seqs: Vec<u64> = r.json()["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![acme_seq]);
    let r = acme_reader
        .get(&format!("/v1/events/{acme_seq}"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["tenant"], "acme");
    let r = acme_reader
        .get(&format!("/v1/events/{globex_seq}"))
        .await
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_clear_and_recorded_in_the_log() {
    let (server, globex_seq, _) = server_with_two_tenants().await;

    // The leaver's token works, then is revoked while the server runs.
    let mut leaver = server.client(Some(&server.secret("leaver")));
    assert_eq!(leaver.get("/v1/events").await.unwrap().status, 200);
    tokens::revoke(&server.tokens, "leaver").unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let e401 = |code, message, actor, reason| Expect {
        status: 401,
        code,
        message,
        action: "auth.failed",
        actor,
        reason,
    };
    let e403 = |code, message, actor, reason| Expect {
        status: 403,
        code,
        message,
        action: "auth.denied",
        actor,
        reason,
    };
    let ev = event("z", "x.y", 9).to_string();
    let mut malformed = server.client(None);
    let mut cases: Vec<(&str, Method, String, String, Expect)> = Vec::new();
    cases.push((
        "none",
        Method::POST,
        "/v1/events".into(),
        ev.clone(),
        e401(
            "missing_token",
            "needs a bearer token",
            "anonymous",
            "no Authorization header",
        ),
    ));
    cases.push((
        "wrong",
        Method::GET,
        "/v1/events".into(),
        String::new(),
        e401("invalid_token", "not valid", "anonymous", "unknown token"),
    ));
    cases.push((
        "leaver",
        Method::GET,
        "/v1/events".into(),
        String::new(),
        e401("revoked_token", "was revoked", "leaver", "revoked"),
    ));
    cases.push((
        "reader",
        Method::POST,
        "/v1/events".into(),
        ev.clone(),
        e403(
            "insufficient_scope",
            "needs `ingest`",
            "reader",
            "lacks the `ingest` scope",
        ),
    ));
    cases.push((
        "writer",
        Method::GET,
        "/v1/events".into(),
        String::new(),
        e403(
            "insufficient_scope",
            "needs `query`",
            "writer",
            "lacks the `query` scope",
        ),
    ));
    cases.push((
        "writer",
        Method::GET,
        "/v1/tail".into(),
        String::new(),
        e403(
            "insufficient_scope",
            "needs `query`",
            "writer",
            "lacks the `query` scope",
        ),
    ));
    cases.push((
        "writer",
        Method::GET,
        "/v1/checkpoint".into(),
        String::new(),
        e403(
            "insufficient_scope",
            "needs `query`",
            "writer",
            "lacks the `query` scope",
        ),
    ));
    cases.push((
        "writer",
        Method::GET,
        "/v1/proof/inclusion?seq=0".into(),
        String::new(),
        e403(
            "insufficient_scope",
            "needs `query`",
            "writer",
            "lacks the `query` scope",
        ),
    ));
    cases.push((
        "reader",
        Method::POST,
        "/v1/verify".into(),
        String::new(),
        e403(
            "insufficient_scope",
            "needs `admin`",
            "reader",
            "lacks the `admin` scope",
        ),
    ));
    cases.push((
        "auditor",
        Method::POST,
        "/v1/events".into(),
        ev.clone(),
        e403(
            "insufficient_scope",
            "needs `ingest`",
            "auditor",
            "lacks the `ingest` scope",
        ),
    ));
    cases.push((
        "writer",
        Method::GET,
        "/v1/stats".into(),
        String::new(),
        e403(
            "insufficient_scope",
            "needs `query` or `admin`",
            "writer",
            "lacks the `query` or `admin` scope",
        ),
    ));
    cases.push((
        "acme-reader",
        Method::GET,
        "/v1/events?tenant=globex".into(),
        String::new(),
        e403(
            "tenant_forbidden",
            "bound to tenant `acme`",
            "acme-reader",
            "asked for tenant `globex`",
        ),
    ));
    cases.push((
        "acme-reader",
        Method::GET,
        "/v1/tail?tenant=globex".into(),
        String::new(),
        e403(
            "tenant_forbidden",
            "bound to tenant `acme`",
            "acme-reader",
            "asked for tenant `globex`",
        ),
    ));
    cases.push((
        "acme-reader",
        Method::GET,
        "/v1/stats".into(),
        String::new(),
        e403(
            "tenant_forbidden",
            "bound to a tenant",
            "acme-reader",
            "statistics",
        ),
    ));
    cases.push((
        "acme-reader",
        Method::GET,
        format!("/v1/events/{globex_seq}"),
        String::new(),
        Expect {
            status: 404,
            code: "not_found",
            message: "no record",
            action: "auth.denied",
            actor: "acme-reader",
            reason: "of another tenant",
        },
    ));
    cases.push((
        "acme-reader",
        Method::GET,
        format!("/v1/events/{globex_seq}?proof=true"),
        String::new(),
        Expect {
            status: 404,
            code: "not_found",
            message: "no record",
            action: "auth.denied",
            actor: "acme-reader",
            reason: "of another tenant",
        },
    ));
    let mut cross = event("a", "x.create", 2);
    cross["tenant"] = "globex".into();
    let batch = json!([event("a", "x.create", 3), cross]).to_string();
    cases.push((
        "acme-writer",
        Method::POST,
        "/v1/events".into(),
        batch,
        e403(
            "tenant_forbidden",
            "cannot write events of tenant `globex`",
            "acme-writer",
            "tried to write events of tenant `globex`",
        ),
    ));

    let mut expected = Vec::new();
    let mut wrong = Vec::new();
    for (who, method, path, body, e) in cases {
        let mut client = match who {
            "none" => server.client(None),
            "wrong" => server.client(Some("slg_not_a_real_token_at_all")),
            name => server.client(Some(&server.secret(name))),
        };
        wrong.extend(check(&mut client, method, &path, body, &e).await);
        expected.push(e);
    }
    assert!(
        wrong.is_empty(),
        "{} problems:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    // A malformed Authorization header.
    let r = malformed
        .request(
            Method::GET,
            "/v1/events",
            &[("authorization", "Basic dXNlcjpwYXNz")],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.error_code(), "malformed_token");
    expected.push(e401(
        "malformed_token",
        "",
        "anonymous",
        "not a bearer token",
    ));

    let dir = server.stop().await;
    let records = sealog_testkit::server::all_records(&dir);
    // Nothing of the refused writes reached the log.
    let user_events: Vec<_> = records
        .iter()
        .filter(|r| r.event.actor.kind == "user")
        .collect();
    assert_eq!(user_events.len(), 2, "{user_events:?}");
    let refusals: Vec<_> = records
        .iter()
        .filter(|r| r.event.action.starts_with("auth."))
        .collect();
    assert_eq!(refusals.len(), expected.len(), "{refusals:#?}");
    for (r, e) in refusals.iter().zip(&expected) {
        assert_eq!(r.event.action, e.action);
        assert_eq!(r.event.actor.id, e.actor, "{r:?}");
        let reason = r.event.reason.as_deref().unwrap_or_default();
        assert!(
            reason.contains(e.reason),
            "`{reason}` should contain `{}`",
            e.reason
        );
        let meta = r.event.metadata.as_ref().unwrap();
        assert_eq!(meta["status"], e.status);
        assert_eq!(
            r.event.source.as_ref().unwrap().ip,
            Some("127.0.0.1".parse().unwrap())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_failed_authentications_is_summarized_not_written_one_by_one() {
    let server = TestServer::start(Setup {
        layer: Layer {
            refusals_per_window: Some(5),
            ..Layer::default()
        },
        ..Setup::default()
    })
    .await;
    let mut bad = server.client(Some("slg_guess"));
    for _ in 0..60 {
        let r = bad.get("/v1/events").await.unwrap();
        assert_eq!(r.status, 401);
    }
    let dir = server.stop().await;
    let records = sealog_testkit::server::all_records(&dir);
    let failed = records
        .iter()
        .filter(|r| r.event.action == "auth.failed")
        .count();
    assert_eq!(failed, 5);
    let summaries: Vec<_> = records
        .iter()
        .filter(|r| r.event.action == "auth.refusals_summarized")
        .collect();
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0].event.metadata.as_ref().unwrap()["count"], 55);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insider_cannot_hide_cross_tenant_attempts_behind_anonymous_refusals() {
    // Default limits: 20 refusals one by one per subject and window.
    let server = TestServer::start(Setup {
        tokens: vec![
            ("acme-reader", vec![Scope::Query], Some("acme")),
            ("globex-reader", vec![Scope::Query], Some("globex")),
        ],
        ..Setup::default()
    })
    .await;
    let mut admin = server.admin();
    let mut globex = event("g", "x.create", 0);
    globex["tenant"] = "globex".into();
    let r = admin
        .post_json("/v1/events", globex.to_string())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let globex_seq = r.json()["receipts"][0]["seq"].as_u64().unwrap();

    // Twenty anonymous 401s from the insider's address spend its
    // anonymous allowance...
    let mut anonymous = server.client(Some("slg_not_a_token"));
    for _ in 0..20 {
        assert_eq!(anonymous.get("/v1/events").await.unwrap().status, 401);
    }
    // ...then six cross-tenant attempts with the tenant-bound token, from
    // the same address, and a second token behind the same address...
    let mut insider = server.client(Some(&server.secret("acme-reader")));
    let mut other = server.client(Some(&server.secret("globex-reader")));
    for i in 0..6 {
        let r = if i % 2 == 0 {
            insider.get("/v1/events?tenant=globex").await.unwrap()
        } else {
            insider
                .get(&format!("/v1/events/{globex_seq}"))
                .await
                .unwrap()
        };
        assert!(r.status == 403 || r.status == 404, "{}", r.text());
        let r = other.get("/v1/events?tenant=acme").await.unwrap();
        assert_eq!(r.status, 403);
    }
    // ...and more anonymous ones afterwards, so the last refused actor of
    // the address is anonymous again.
    for _ in 0..10 {
        assert_eq!(anonymous.get("/v1/events").await.unwrap().status, 401);
    }
    let dir = server.stop().await;
    let records = sealog_testkit::server::all_records(&dir);
    let named = |who: &str| {
        records
            .iter()
            .filter(|r| r.event.action == "auth.denied" && r.event.actor.id == who)
            .map(|r| {
                r.event.metadata.as_ref().unwrap()["status"]
                    .as_u64()
                    .unwrap()
            })
            .collect::<Vec<_>>()
    };
    let insider_events = named("acme-reader");
    assert_eq!(
        insider_events.len(),
        6,
        "every attempt of the insider is in the log under its token's name"
    );
    assert_eq!(insider_events.iter().filter(|&&s| s == 404).count(), 3);
    assert_eq!(named("globex-reader").len(), 6);
    // The anonymous flood has its own summary, which names nobody else.
    let summaries: Vec<_> = records
        .iter()
        .filter(|r| r.event.action == "auth.refusals_summarized")
        .collect();
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0].event.actor.kind, "anonymous");
    let meta = summaries[0].event.metadata.as_ref().unwrap();
    assert_eq!(meta["count"], 10);
    assert_eq!(
        meta["by_reason"],
        json!([{"reason": "invalid_token", "count": 10}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokens_refusals_beyond_its_allowance_are_summarized_under_its_name() {
    let server = TestServer::start(Setup {
        layer: Layer {
            refusals_per_window: Some(2),
            ..Layer::default()
        },
        tokens: vec![("acme-reader", vec![Scope::Query], Some("acme"))],
        ..Setup::default()
    })
    .await;
    let mut anonymous = server.client(None);
    let mut insider = server.client(Some(&server.secret("acme-reader")));
    for _ in 0..7 {
        let r = insider.get("/v1/events?tenant=globex").await.unwrap();
        assert_eq!(r.status, 403);
        assert_eq!(anonymous.get("/v1/events").await.unwrap().status, 401);
    }
    let dir = server.stop().await;
    let records = sealog_testkit::server::all_records(&dir);
    let summaries: Vec<_> = records
        .iter()
        .filter(|r| r.event.action == "auth.refusals_summarized")
        .collect();
    assert_eq!(summaries.len(), 2, "one per principal");
    let insider = summaries
        .iter()
        .find(|r| r.event.actor.kind == "token")
        .unwrap();
    assert_eq!(insider.event.actor.id, "acme-reader");
    let meta = insider.event.metadata.as_ref().unwrap();
    assert_eq!(meta["count"], 5);
    assert_eq!(meta["recorded"], 2);
    assert_eq!(
        meta["by_reason"],
        json!([{"reason": "tenant_forbidden", "count": 5}])
    );
    assert_eq!(meta["addresses"], json!(["127.0.0.1"]));
    let reason = insider.event.reason.as_deref().unwrap();
    assert!(reason.contains("token `acme-reader`"), "{reason}");
}
