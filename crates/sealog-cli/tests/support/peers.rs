//! Real peers for the export and forwarding tests, started on loopback:
//! DuckDB (the Python package, in `target/py-venv`) and rsyslogd.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// The test TLS material (a CA, and a leaf for localhost / 127.0.0.1).
pub fn tls_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// A Python with the `duckdb` package: `SEALOG_DUCKDB_PYTHON`, or the one
/// in `target/py-venv` (created, and duckdb installed into it, if missing,
/// as `.ci/run` does).
pub fn duckdb_python() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("SEALOG_DUCKDB_PYTHON") {
            return PathBuf::from(p);
        }
        let venv = workspace().join("target/py-venv");
        let python = venv.join("bin/python");
        let has = |p: &Path| {
            Command::new(p)
                .args(["-c", "import duckdb"])
                .status()
                .is_ok_and(|s| s.success())
        };
        if python.exists() && has(&python) {
            return python;
        }
        let ok = (python.exists()
            || Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .is_ok_and(|s| s.success()))
            // `python -m pip`, not `bin/pip`: a venv copied from elsewhere
            // keeps the old path in its scripts' `#!` lines.
            && Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "duckdb"])
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            ok && has(&python),
            "could not install duckdb into {}: this test runs the real DuckDB; run \
             `python3 -m venv target/py-venv && target/py-venv/bin/python -m pip install duckdb` (or \
             .ci/run), or set SEALOG_DUCKDB_PYTHON to a Python that has it",
            venv.display()
        );
        python
    })
    .clone()
}

/// Runs a Python script with DuckDB; returns its standard output.
pub fn duckdb(script: &str) -> String {
    let out = Command::new(duckdb_python())
        .args(["-c", script])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "DuckDB script failed: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const NO_RSYSLOGD: &str = "rsyslogd was not found: the forwarding tests run a real syslog \
     receiver. Run .ci/run (which installs it), or `apt-get install rsyslog rsyslog-gnutls`, or \
     set SEALOG_RSYSLOGD to an rsyslogd executable";

fn find_rsyslogd() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SEALOG_RSYSLOGD") {
        return Some(PathBuf::from(p));
    }
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join("rsyslogd"))
        .find(|p| p.exists())
}

/// The rsyslogd executable: `SEALOG_RSYSLOGD`, or rsyslogd on the PATH or
/// in /usr/sbin. Installs nothing.
pub fn rsyslogd() -> PathBuf {
    find_rsyslogd().expect(NO_RSYSLOGD)
}

/// Whether a test needing rsyslogd runs: true when there is one. Without
/// one the test is skipped, saying so loudly on standard error, unless
/// `SEALOG_REQUIRE_RSYSLOG` is set (`.ci/run` sets it): then it fails.
pub fn rsyslogd_or_skip(test: &str) -> bool {
    if find_rsyslogd().is_some() {
        return true;
    }
    assert!(
        std::env::var_os("SEALOG_REQUIRE_RSYSLOG").is_none(),
        "{NO_RSYSLOGD} (SEALOG_REQUIRE_RSYSLOG is set, so {test} may not be skipped)"
    );
    eprintln!("\n*** SKIPPED {test}: {NO_RSYSLOGD} ***\n");
    false
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
