//! The privacy settings of the server: configured rules transform each
//! ingested event before it is stored, and a query with the clear value
//! finds it.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
#![allow(clippy::indexing_slicing, reason = "tests fail loudly")]

use sealog::privacy::PrivacyKey;
use sealog_server::Layer;
use sealog_testkit::server::{Setup, TestServer, all_records};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_rules_transform_ingested_events_and_queries() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("privacy.key");
    std::fs::write(&key_file, [3u8; 32]).unwrap();
    let toml = format!(
        "privacy = [\"actor.id=hash\", \"source.ip=mask\", \"metadata.phone=drop\"]\n\
         privacy_key = {:?}\n",
        key_file.display().to_string()
    );
    let layer: Layer = toml::from_str(&toml).unwrap();
    let ts = TestServer::start(Setup {
        layer,
        ..Setup::default()
    })
    .await;
    let mut c = ts.admin();
    let event = json!({
        "actor": {"type": "user", "id": "alice"},
        "action": "customer.update",
        "resource": {"type": "customer", "id": "4471"},
        "outcome": "success",
        "source": {"ip": "203.0.113.9"},
        "request_id": "priv-1",
        "metadata": {"phone": "+44-555-0199", "plan": "pro"}
    });
    let r = c.post_json("/v1/events", event.to_string()).await.unwrap();
    assert!(r.status == 200 || r.status == 201, "{}", r.text());

    for q in [
        "actor=user:alice",
        "actor=alice",
        "source_ip=203.0.113.9",
        "source_ip=203.0.113.0/24",
        "source_ip=203.0.113.200/29",
    ] {
        let r = c.get(&format!("/v1/events?{q}")).await.unwrap();
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        let page = r.json();
        let ids: Vec<&str> = page["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["request_id"].as_str())
            .collect();
        assert_eq!(ids, ["priv-1"], "{q}: {page}");
    }
    let r = c.get("/v1/events?actor=user:bob").await.unwrap();
    assert_eq!(r.json()["records"], json!([]));

    let dir = ts.stop().await;
    let stored: Vec<_> = all_records(&dir)
        .into_iter()
        .filter(|r| r.event.request_id.as_deref() == Some("priv-1"))
        .collect();
    assert_eq!(stored.len(), 1);
    let e = &stored[0].event;
    let key = PrivacyKey::from_bytes(&[3u8; 32]).unwrap();
    assert_eq!(e.actor.id, key.hash(b"alice"));
    assert_eq!(
        e.source.as_ref().unwrap().ip,
        Some("203.0.113.0".parse().unwrap())
    );
    let metadata = e.metadata.as_ref().unwrap();
    assert!(!metadata.contains_key("phone"), "{metadata:?}");
    assert_eq!(metadata["plan"], "pro");
}
