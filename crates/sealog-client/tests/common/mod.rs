//! `sealog serve` as a real process for the client's tests: a store made
//! with `sealog init`, a token made with `sealog token create`, a server
//! started and stopped (SIGTERM) on a chosen port, and the store counted
//! afterwards.
//!
//! The binary is `target/<profile>/sealog` of this workspace (`SEALOG_BIN`
//! names another). `cargo test --workspace` builds it before any test runs
//! (the command line's own tests need it); a run of this crate's tests alone
//! builds it here if it is missing.

#![allow(dead_code, reason = "each test file uses part of the helpers")]
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The `sealog` binary.
pub fn sealog_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("SEALOG_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/<test> → target/<profile>
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_owned();
        let bin = profile_dir.join("sealog");
        if !bin.exists() {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "-p", "sealog-cli", "--bin", "sealog"])
                .arg("--target-dir")
                .arg(profile_dir.parent().unwrap())
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().unwrap();
            assert!(status.success(), "building the sealog binary failed");
        }
        assert!(bin.exists(), "no sealog binary at {}", bin.display());
        bin
    })
    .clone()
}

/// A `sealog` command without the caller's `SEALOG_*` settings.
pub fn sealog(data: &Path) -> Command {
    let mut cmd = Command::new(sealog_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("SEALOG_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("NO_COLOR", "1")
        .arg("--data-dir")
        .arg(data)
        .arg("--segment-size")
        .arg("1MiB");
    cmd
}

/// A store with a token, and the server on it when running.
pub struct Log {
    _tmp: tempfile::TempDir,
    pub data: PathBuf,
    /// A token with the `ingest` scope.
    pub token: String,
    pub port: u16,
    pub server: Option<Served>,
}

impl Log {
    /// `sealog init` and `sealog token create`, on a free port; no server yet.
    pub fn new() -> Log {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let out = sealog(&data).arg("init").output().unwrap();
        assert!(
            out.status.success(),
            "init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = sealog(&data)
            .args(["token", "create", "--name", "app", "--scopes", "ingest"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_owned();
        Log {
            _tmp: tmp,
            data,
            token,
            port: free_port(),
            server: None,
        }
    }

    /// `http://127.0.0.1:PORT`, whether or not the server runs.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts `sealog serve` on the log's port.
    pub fn start(&mut self) -> &Served {
        self.start_with(&[])
    }

    /// Starts `sealog serve` with more arguments.
    pub fn start_with(&mut self, args: &[&str]) -> &Served {
        assert!(self.server.is_none(), "already running");
        let mut cmd = sealog(&self.data);
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(args);
        // The port was just freed by the previous server: retry the bind
        // for a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Served::start(&mut cmd) {
                Ok(s) => {
                    self.server = Some(s);
                    break;
                }
                Err(stderr) if Instant::now() < deadline && stderr.contains("listen") => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(stderr) => panic!("sealog serve did not start: {stderr}"),
            }
        }
        self.server.as_ref().unwrap()
    }

    /// Stops the server with SIGTERM and waits for it to exit 0.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.terminate();
        }
    }

    /// How many times each `request_id` is in the log (the server stopped).
    pub fn request_ids(&self) -> BTreeMap<String, usize> {
        assert!(self.server.is_none(), "stop the server first");
        let store = sealog::Store::open_read_only(&self.data).unwrap();
        let mut ids = BTreeMap::new();
        for record in store.scan(..) {
            let record = record.unwrap();
            if let Some(id) = record.event.request_id {
                *ids.entry(id).or_insert(0) += 1;
            }
        }
        ids
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port nobody listens on (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `sealog serve`.
pub struct Served {
    child: Child,
    pub url: String,
    stderr: Arc<Mutex<String>>,
}

impl Served {
    /// Spawns the command and waits for its `listening on` line; on failure
    /// the process's standard error.
    fn start(cmd: &mut Command) -> Result<Served, String> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sealog serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(buf.get(..n).unwrap_or_default()));
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next().and_then(Result::ok));
            for _ in lines {}
        });
        let first = rx.recv_timeout(Duration::from_secs(60)).ok().flatten();
        match first
            .as_deref()
            .and_then(|l| l.strip_prefix("listening on "))
        {
            Some(url) => Ok(Served {
                url: url.to_owned(),
                child,
                stderr,
            }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(50));
                let text = stderr.lock().unwrap().clone();
                Err(text)
            }
        }
    }

    /// SIGTERM, then waits for a clean exit.
    fn terminate(mut self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                assert!(
                    s.success(),
                    "sealog serve exited with {s}: {}",
                    self.stderr.lock().unwrap()
                );
                return;
            }
            assert!(Instant::now() < deadline, "sealog serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    /// A failing test must not leave a server running.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
