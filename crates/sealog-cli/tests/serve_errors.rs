//! Every error `sealog serve` can stop with at startup says what is wrong
//! and a fix of its own: a damaged store, a port in use, a store locked by
//! another sealog, TLS files, the tokens file, the config file and flags,
//! the signing key.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
#![allow(clippy::indexing_slicing, reason = "tests fail loudly")]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

fn sealog() -> Command {
    sealog_testkit::process::command(env!("CARGO_BIN_EXE_sealog"))
}

/// Runs `sealog --data-dir DIR ARGS...`, which must fail; returns its
/// standard error. `serve` gets `--create`, so that a missing store is not
/// the error met first.
fn fails(dir: &Path, args: &[&str]) -> String {
    let mut args = args.to_vec();
    if let Some(at) = args.iter().position(|a| *a == "serve") {
        args.insert(at + 1, "--create");
    }
    let out = sealog()
        .arg("--data-dir")
        .arg(dir)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?} printed an address");
    stderr
}

/// The `fix:` line of a report.
fn fix_of(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("fix:"))
        .unwrap_or_else(|| panic!("no fix line in: {stderr}"))
        .trim()
        .to_owned()
}

fn create_store(dir: &Path) {
    let out = sealog()
        .arg("--data-dir")
        .arg(dir)
        .args([
            "append",
            "--json",
            r#"{"actor":{"type":"user","id":"a"},"action":"x.y","resource":{"type":"r"},"outcome":"success"}"#,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn serve_on_a_corrupt_store_says_where_and_to_restore_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    create_store(&dir);
    let manifest = dir.join("STORE");
    let mut bytes = std::fs::read(&manifest).unwrap();
    bytes[20] ^= 0xff;
    std::fs::write(&manifest, bytes).unwrap();
    let stderr = fails(&dir, &["serve", "--listen", "127.0.0.1:0"]);
    assert!(
        stderr.starts_with("error: TAMPERING OR CORRUPTION DETECTED"),
        "{stderr}"
    );
    assert!(stderr.contains("where: file "), "{stderr}");
    assert!(stderr.contains("STORE, byte offset"), "{stderr}");
    let fix = fix_of(&stderr);
    assert!(
        fix.contains("keep a copy of the directory as evidence, restore the damaged file"),
        "{fix}"
    );
}

#[test]
fn serve_on_a_port_in_use_says_another_process_listens_there() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let stderr = fails(
        &tmp.path().join("data"),
        &["serve", "--listen", &addr.to_string()],
    );
    assert!(
        stderr.starts_with(&format!("error: cannot listen on {addr}: ")),
        "{stderr}"
    );
    let fix = fix_of(&stderr);
    assert!(
        fix.starts_with(&format!("another process already listens on {addr}")),
        "{fix}"
    );
    assert!(fix.contains("--listen 127.0.0.1:PORT"), "{fix}");
}

#[test]
fn serve_on_a_locked_store_names_the_sealog_that_holds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut first = sealog()
        .arg("--data-dir")
        .arg(&dir)
        .args(["serve", "--create", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(first.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on"), "{line}");
    let stderr = fails(&dir, &["serve", "--listen", "127.0.0.1:0"]);
    let _ = first.kill();
    let _ = first.wait();
    let shown = dir.display().to_string();
    assert!(
        stderr.starts_with(&format!(
            "error: the store at `{shown}` is in use by another process"
        )),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("the store at").count(),
        1,
        "said once: {stderr}"
    );
    let fix = fix_of(&stderr);
    let pid = first.id();
    assert!(
        fix.starts_with(&format!(
            "another sealog is running on this store: process {pid} (`"
        )),
        "{fix}"
    );
    assert!(fix.contains("serve --create --listen 127.0.0.1:0"), "{fix}");
    assert!(fix.contains(&format!("`kill {pid}`")), "{fix}");
}

#[test]
fn every_other_startup_error_has_a_fix_of_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let file = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let bad_toml = file("bad.toml", "lisen = \"127.0.0.1:1\"\n");
    let bad_type = file("type.toml", "max_body_bytes = \"big\"\n");
    let bad_tokens = file("tokens.json", "{\"version\": 1,");
    let not_pem = file("cert.pem", "not a certificate\n");
    let missing = tmp.path().join("missing.pem").display().to_string();
    let good_tokens = tmp.path().join("good.json").display().to_string();
    let out = sealog()
        .args(["token", "create", "--tokens", &good_tokens, "--name", "t"])
        .args(["--scopes", "ingest"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["serve", "--config", &bad_toml],
            "remove or rename the key named above",
        ),
        (
            vec!["serve", "--config", &bad_type],
            "give the key a value of its type",
        ),
        (
            vec!["serve", "--listen", "localhost:7807"],
            "give --listen (or SEALOG_LISTEN, or `listen` in the config file) as an IP address",
        ),
        (
            vec!["serve", "--max-batch-events", "0"],
            "set --max-batch-events (or SEALOG_MAX_BATCH_EVENTS",
        ),
        (
            vec!["serve", "--tls-cert", &missing],
            "pass both --tls-cert and --tls-key",
        ),
        (
            vec![
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                &missing,
                "--tls-key",
                &missing,
            ],
            "check the path given with --tls-cert",
        ),
        (
            vec![
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                &not_pem,
                "--tls-key",
                &not_pem,
            ],
            "give --tls-cert the file with the `-----BEGIN CERTIFICATE-----` blocks",
        ),
        (
            vec!["serve", "--listen", "127.0.0.1:0", "--tokens", &bad_tokens],
            "is written by `sealog token`: restore it from a backup",
        ),
        (
            vec!["serve", "--tokens", &missing],
            "create it with a first token: `sealog token create --tokens",
        ),
        (
            vec!["serve", "--listen", "0.0.0.0:0"],
            "create a token with `sealog token create --data-dir",
        ),
        (
            vec![
                "--signing-key",
                &missing,
                "serve",
                "--listen",
                "127.0.0.1:0",
            ],
            "create a key pair with `sealog keygen --name ORIGIN --out PREFIX`",
        ),
        (
            // Every archive round ships a checkpoint signed by the log's
            // key: without one the server would fail every round.
            vec![
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--archive",
                "file:///nonexistent/sealog-archive",
            ],
            "give --signing-key FILE (or signing_key in the configuration",
        ),
        (
            // A documentation address (RFC 5737): on no host.
            vec![
                "serve",
                "--listen",
                "192.0.2.1:7807",
                "--tokens",
                &good_tokens,
            ],
            "192.0.2.1 is not an address of this host",
        ),
    ];
    let mut fixes = std::collections::BTreeSet::new();
    for (args, want) in &cases {
        let stderr = fails(&dir, args);
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        let fix = fix_of(&stderr);
        assert!(
            fix.contains(want),
            "{args:?}: fix `{fix}` should say `{want}`"
        );
        assert!(!fix.contains("the setting named above"), "{args:?}: {fix}");
        fixes.insert(fix);
    }
    assert_eq!(fixes.len(), cases.len(), "one fix per error: {fixes:#?}");
}
