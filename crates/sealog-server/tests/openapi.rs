//! The OpenAPI document against the server, property-based: schemathesis
//! (from PyPI, in `target/py-venv`, installed on first use like the archive
//! tests' moto) reads `GET /v1/openapi.json` from a real server on
//! loopback, generates requests from it (valid and invalid ones) and checks
//! every answer: no 5xx, a status the document lists for the operation, the
//! content type it lists, and a body its schema accepts.
//!
//! The two Server-Sent Events streams (`/v1/tail`, `/v1/alerts`) are left
//! out: they never end, so a generated request could only time out. The
//! unit tests in `src/routes/openapi.rs` cover their parameters, methods
//! and scopes.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::path::{Path, PathBuf};
use std::process::Command;

use sealog_testkit::server::{Setup, TestServer, event};

/// The versions `.ci/run` installs.
const SCHEMATHESIS: &str = "schemathesis>=4.3,<5";

/// Test cases per operation and phase: bounded so that the run takes a
/// few minutes at most on two busy cores.
const MAX_EXAMPLES: &str = "40";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// The `schemathesis` executable: `SEALOG_SCHEMATHESIS`, or the one in
/// `target/py-venv`, installed there if missing.
fn schemathesis() -> PathBuf {
    if let Some(p) = std::env::var_os("SEALOG_SCHEMATHESIS") {
        return PathBuf::from(p);
    }
    let venv = workspace().join("target/py-venv");
    let bin = venv.join("bin/schemathesis");
    if bin.exists() {
        return bin;
    }
    let ok = (venv.join("bin/pip").exists()
        || Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success()))
        && Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", SCHEMATHESIS])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        ok && bin.exists(),
        "could not install schemathesis into {}: this test needs it; run `python3 -m venv \
         target/py-venv && target/py-venv/bin/pip install '{SCHEMATHESIS}'`, or set \
         SEALOG_SCHEMATHESIS to a schemathesis executable",
        venv.display()
    );
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_disagreement_with_the_document() {
    let bin = tokio::task::spawn_blocking(schemathesis).await.unwrap();
    let server = TestServer::start(Setup::default()).await;
    // Records to read, prove and count.
    let mut c = server.admin();
    let batch: Vec<String> = (0..20)
        .map(|i| event("alice", "customer.delete", i).to_string())
        .collect();
    let r = c.post_ndjson("/v1/events", batch.join("\n")).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    let work = tempfile::tempdir().unwrap();
    let url = format!("{}/v1/openapi.json", server.url);
    let auth = format!("Authorization: Bearer {}", server.secret("root"));
    let cmd = {
        let mut cmd = Command::new(&bin);
        cmd.current_dir(work.path())
            .args(["run", &url, "--header", &auth])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_schema_conformance,response_headers_conformance",
            ])
            .args(["--max-examples", MAX_EXAMPLES])
            // One worker: with two, Hypothesis (Python 3.11) sometimes
            // fails inside its own code ("AST constructor recursion depth
            // mismatch") while generating, a tool error and not the server's.
            .args(["--workers", "1"])
            .args(["--request-timeout", "60"])
            .args(["--exclude-path", "/v1/tail", "--exclude-path", "/v1/alerts"])
            .args(["--generation-database", "none"])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--no-color", "--output-truncate", "false"]);
        cmd
    };
    let printed = format!("{cmd:?}");
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = cmd;
        cmd.output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{printed}\n{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "schemathesis reported failures ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // It did test the operations (a document it could not load, or one
    // with no operation, would pass vacuously): all but the two streams
    // and the document itself, which schemathesis leaves out.
    let doc = c.get("/v1/openapi.json").await.unwrap().json();
    let operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    let tested: usize = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tested: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        operations > 3 && tested == operations - 3,
        "schemathesis tested {tested} of the {operations} operations, not all but the two \
         streams and the document:\n{stdout}"
    );
    server.stop().await;
}
