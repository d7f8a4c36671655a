//! Golden lines of the SIEM formats (docs/siem.md is their spec): one
//! fully populated event, one minimal one, and the escaping rules.

#![allow(clippy::unwrap_used, reason = "tests")]

use sealog::format::event::Principal;
use sealog::format::merkle::leaf_hash;
use sealog::format::record;
use sealog::format::{Actor, Event, Outcome, Resource, Timestamp};
use sealog_export::syslog::SyslogOptions;
use sealog_export::{Entry, cef, ocsf, syslog};

const TIME: i64 = 1_795_454_700_123_456_789; // 2026-11-23T17:25:00.123456789Z
const RECORDED: i64 = 1_795_454_701_000_000_000; // 2026-11-23T17:25:01Z

fn entry(event: Event, seq: u64) -> Entry {
    let bytes = record::encode(&event, seq, Timestamp::from_nanos(RECORDED)).unwrap();
    let entry = Entry::from_bytes(&bytes).unwrap();
    assert_eq!(entry.leaf, leaf_hash(&bytes));
    entry
}

fn full() -> Entry {
    let mut metadata = sealog::format::Metadata::new();
    metadata.insert("plan".into(), "pro".into());
    let mut actor = Actor::new("user", "alice");
    actor.on_behalf_of = Some(Principal::new("user", "support-7"));
    actor.session_id = Some("s-1".into());
    let event = Event::new(
        actor,
        "customer.delete",
        Resource::new("customer", "4471"),
        Outcome::Denied,
    )
    .with_time(Timestamp::from_nanos(TIME))
    .with_tenant("acme")
    .with_source_ip("203.0.113.9".parse().unwrap())
    .with_user_agent("curl/8.5")
    .with_request_id("req-1")
    .with_reason("erasure | ticket=SEC-12\nsee \\ \"q\" ]")
    .with_metadata(metadata);
    entry(event, 42)
}

fn minimal() -> Entry {
    let event = Event::new(
        Actor::new("service", "billing"),
        "auth.login",
        Resource::kind("session"),
        Outcome::Success,
    );
    entry(event, 7)
}

fn options() -> SyslogOptions {
    SyslogOptions {
        facility: 13,
        hostname: "audit-1".into(),
        sd_id: syslog::DEFAULT_SD_ID.into(),
    }
}

#[test]
fn syslog_line_of_a_full_event_is_the_golden_line() {
    let e = full();
    let leaf = e.leaf_hex();
    let json = sealog_export::record_json(&e.record);
    assert_eq!(
        syslog::line(&e, &options()),
        format!(
            "<108>1 2026-11-23T17:25:00.123456Z audit-1 sealog - customer.delete \
             [sealog@32473 seq=\"42\" leaf=\"{leaf}\" outcome=\"denied\" actor=\"user:alice\" \
             tenant=\"acme\"] {json}"
        )
    );
    // The message is the record as exported, event time included.
    assert!(json.starts_with(r#"{"seq":42,"recorded_at":"2026-11-23T17:25:01Z","time":"2026-11-23T17:25:00.123456789Z""#), "{json}");
}

#[test]
fn syslog_line_of_an_event_without_time_uses_the_recorded_time() {
    let e = minimal();
    let line = syslog::line(&e, &options());
    // facility 13 × 8 + informational 6
    assert!(
        line.starts_with(&format!(
            "<110>1 2026-11-23T17:25:01.000000Z audit-1 sealog - auth.login [sealog@32473 seq=\"7\" leaf=\"{}\" outcome=\"success\" actor=\"service:billing\"] {{",
            e.leaf_hex()
        )),
        "{line}"
    );
}

#[test]
fn syslog_param_values_escape_quote_backslash_and_bracket() {
    let mut out = String::new();
    syslog::escape_param_value(r#"a"b]c\d"#, &mut out);
    assert_eq!(out, r#"a\"b\]c\\d"#);
    let mut e = full();
    e.record.event.tenant = Some(r#"x"]\"#.into());
    let line = syslog::line(&e, &options());
    assert!(line.contains(r#" tenant="x\"\]\\"]"#), "{line}");
}

#[test]
fn syslog_header_fields_keep_printable_ascii_within_their_limits() {
    let mut e = full();
    e.record.event.action = "a".repeat(40);
    let o = SyslogOptions {
        hostname: "bad host\u{e9}".into(),
        ..options()
    };
    let line = syslog::line(&e, &o);
    let fields: Vec<&str> = line.splitn(7, ' ').collect();
    assert_eq!(fields[2], "badhost");
    assert_eq!(fields[5], "a".repeat(32));
    let o = SyslogOptions {
        hostname: String::new(),
        ..options()
    };
    assert_eq!(syslog::line(&e, &o).split(' ').nth(2), Some("-"));
}

#[test]
fn syslog_severity_follows_the_outcome_and_facility_names_parse() {
    assert_eq!(syslog::severity(Outcome::Success), 6);
    assert_eq!(syslog::severity(Outcome::Failure), 5);
    assert_eq!(syslog::severity(Outcome::Denied), 4);
    assert_eq!(syslog::parse_facility("audit"), Ok(13));
    assert_eq!(syslog::parse_facility("authpriv"), Ok(10));
    assert_eq!(syslog::parse_facility("local7"), Ok(23));
    assert_eq!(syslog::parse_facility("4"), Ok(4));
    assert!(syslog::parse_facility("24").is_err());
    assert!(
        syslog::parse_facility("nope")
            .unwrap_err()
            .contains("local0")
    );
}

#[test]
fn octet_counting_frame_counts_bytes_not_characters() {
    let mut out = Vec::new();
    syslog::frame("<110>1 - - sealog - - - é\nx", &mut out);
    assert_eq!(out, "28 <110>1 - - sealog - - - é\nx".as_bytes());
}

#[test]
fn cef_line_of_a_full_event_is_the_golden_line() {
    let e = full();
    assert_eq!(
        cef::line(&e),
        format!(
            "CEF:0|sealog|sealog|{}|customer.delete|customer.delete|7|rt=1795454700123 \
             act=customer.delete outcome=denied suser=alice flexString1Label=actorType \
             flexString1=user flexString2Label=sessionId flexString2=s-1 cs1Label=tenant \
             cs1=acme cs2Label=resource cs2=customer:4471 cs3Label=leafHash cs3={} \
             cs4Label=requestId cs4=req-1 cs5Label=onBehalfOf cs5=user:support-7 \
             cs6Label=metadata cs6={{\"plan\":\"pro\"}} src=203.0.113.9 \
             requestClientApplication=curl/8.5 reason=erasure | ticket\\=SEC-12\\nsee \\\\ \"q\" ] \
             externalId=42 deviceCustomDate1Label=recordedAt deviceCustomDate1=1795454701000",
            env!("CARGO_PKG_VERSION"),
            e.leaf_hex()
        )
    );
}

#[test]
fn cef_escapes_pipe_and_backslash_in_the_header_and_equals_in_extensions() {
    assert_eq!(cef::escape_header(r"a|b\c"), r"a\|b\\c");
    assert_eq!(cef::escape_header("a\nb"), "a b");
    assert_eq!(cef::escape_extension("a=b\\c\nd\re|f"), r"a\=b\\c\nd\re|f");
    let mut e = minimal();
    e.record.event.source = Some(sealog::format::event::Source {
        ip: Some("2001:db8::1".parse().unwrap()),
        user_agent: None,
    });
    let line = cef::line(&e);
    assert!(line.contains(" c6a2=2001:db8::1 "), "{line}");
    assert!(line.contains("|auth.login|auth.login|3|"), "{line}");
}

#[test]
fn ocsf_authentication_event_for_auth_actions() {
    let e = minimal();
    let v = ocsf::event(&e);
    assert_eq!(v["class_uid"], 3002);
    assert_eq!(v["category_uid"], 3);
    assert_eq!(v["activity_id"], 1);
    assert_eq!(v["type_uid"], 300201);
    assert_eq!(v["status_id"], 1);
    assert_eq!(v["severity_id"], 1);
    assert_eq!(v["time"], 1_795_454_701_000i64);
    assert_eq!(v["metadata"]["uid"], "7");
    assert_eq!(v["metadata"]["version"], "1.1.0");
    assert_eq!(v["metadata"]["product"]["name"], "sealog");
    assert_eq!(v["user"]["uid"], "billing");
    assert_eq!(v["actor"]["user"]["type"], "service");
    assert_eq!(v["unmapped"]["leaf_hash"], e.leaf_hex());
}

#[test]
fn ocsf_api_activity_event_is_the_golden_object() {
    let e = full();
    let v = ocsf::event(&e);
    let expected = serde_json::json!({
        "class_uid": 6003,
        "class_name": "API Activity",
        "category_uid": 6,
        "category_name": "Application Activity",
        "activity_id": 4,
        "activity_name": "Delete",
        "type_uid": 600304,
        "type_name": "API Activity: Delete",
        "time": 1_795_454_700_123i64,
        "severity_id": 3,
        "severity": "Medium",
        "status_id": 2,
        "status": "Failure",
        "status_detail": "denied: erasure | ticket=SEC-12\nsee \\ \"q\" ]",
        "message": "customer.delete denied",
        "metadata": {
            "version": "1.1.0",
            "product": {"name": "sealog", "vendor_name": "sealog", "version": env!("CARGO_PKG_VERSION")},
            "uid": "42",
            "logged_time": 1_795_454_701_000i64,
            "correlation_uid": "req-1",
            "tenant_uid": "acme"
        },
        "actor": {
            "user": {"uid": "alice", "name": "alice", "type": "user"},
            "session": {"uid": "s-1"},
            "invoked_by": "user:support-7"
        },
        "api": {"operation": "customer.delete", "request": {"uid": "req-1"}},
        "resources": [{"type": "customer", "uid": "4471"}],
        "src_endpoint": {"ip": "203.0.113.9"},
        "http_request": {"user_agent": "curl/8.5"},
        "unmapped": {
            "leaf_hash": e.leaf_hex(),
            "action": "customer.delete",
            "outcome": "denied",
            "resource": {"type": "customer", "id": "4471"},
            "tenant": "acme",
            "on_behalf_of": {"type": "user", "id": "support-7"},
            "reason": "erasure | ticket=SEC-12\nsee \\ \"q\" ]",
            "metadata": {"plan": "pro"}
        }
    });
    assert_eq!(v, expected);
}

#[test]
fn ocsf_account_change_for_account_actions_and_resources() {
    use ocsf::Class;
    assert_eq!(Class::of("user.create", "user"), Class::AccountChange);
    assert_eq!(Class::of("role.attach", "role"), Class::AccountChange);
    assert_eq!(Class::of("team.update", "permission"), Class::AccountChange);
    assert_eq!(
        Class::of("auth.login_failed", "session"),
        Class::Authentication
    );
    assert_eq!(Class::of("invoice.export", "invoice"), Class::ApiActivity);
    assert_eq!(Class::AccountChange.activity("user.create"), (1, "Create"));
    assert_eq!(Class::AccountChange.activity("user.delete"), (6, "Delete"));
    assert_eq!(
        Class::AccountChange.activity("user.disable"),
        (5, "Disable")
    );
    assert_eq!(Class::AccountChange.activity("user.enable"), (2, "Enable"));
    assert_eq!(
        Class::AccountChange.activity("user.password_reset"),
        (4, "Password Reset")
    );
    assert_eq!(
        Class::AccountChange.activity("user.password_change"),
        (3, "Password Change")
    );
    assert_eq!(
        Class::AccountChange.activity("role.grant"),
        (7, "Attach Policy")
    );
    assert_eq!(
        Class::AccountChange.activity("role.revoke"),
        (8, "Detach Policy")
    );
    assert_eq!(Class::AccountChange.activity("user.lock"), (9, "Lock"));
    assert_eq!(Class::AccountChange.activity("user.unlock"), (2, "Enable"));
    assert_eq!(Class::Authentication.activity("auth.logout"), (2, "Logoff"));
    assert_eq!(
        Class::Authentication.activity("auth.login_failed"),
        (1, "Logon")
    );
    assert_eq!(
        Class::Authentication.activity("auth.token_refresh"),
        (99, "Other")
    );
    assert_eq!(Class::ApiActivity.activity("invoice.export"), (2, "Read"));
    assert_eq!(
        Class::ApiActivity.activity("invoice.frobnicate"),
        (99, "Other")
    );

    let mut e = full();
    e.record.event.action = "user.create".into();
    e.record.event.resource = Resource::new("user", "bob");
    let v = ocsf::event(&e);
    assert_eq!(v["class_uid"], 3001);
    assert_eq!(v["type_uid"], 300101);
    // The account changed is the resource; the actor is who changed it.
    assert_eq!(v["user"]["uid"], "bob");
    assert_eq!(v["actor"]["user"]["uid"], "alice");
}

#[test]
fn every_line_carries_the_seq_for_deduplication() {
    let e = full();
    assert!(sealog_export::record_json(&e.record).contains("\"seq\":42"));
    assert!(syslog::line(&e, &options()).contains("seq=\"42\""));
    assert!(cef::line(&e).contains(" externalId=42 "));
    assert_eq!(ocsf::event(&e)["metadata"]["uid"], "42");
}

#[test]
fn a_finished_parquet_file_has_its_footer_and_every_row() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use sealog_export::parquet::{ParquetOptions, ParquetWriter};

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("a.parquet");
    let options = ParquetOptions {
        row_group_rows: 1,
        store_id: Some("00112233445566778899aabbccddeeff".into()),
    };
    let mut writer = ParquetWriter::new(std::fs::File::create(&path).unwrap(), &options).unwrap();
    writer.push(&full()).unwrap();
    writer.push(&minimal()).unwrap();
    writer.finish().unwrap().sync_all().unwrap();
    let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let meta = reader.metadata();
    assert_eq!(meta.file_metadata().num_rows(), 2);
    assert_eq!(meta.num_row_groups(), 2, "one row per row group");
    let kv: Vec<(String, Option<String>)> = meta
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    assert!(
        kv.contains(&("sealog.parquet_schema".into(), Some("1".into()))),
        "{kv:?}"
    );
    assert!(
        kv.contains(&(
            "sealog.store_id".into(),
            Some("00112233445566778899aabbccddeeff".into())
        )),
        "{kv:?}"
    );
}
