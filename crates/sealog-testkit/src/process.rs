//! The `sealog` binary as tests run it: a command without the caller's
//! `SEALOG_*` environment, `sealog serve` as a child process up to its
//! `listening on` line (killed if the test fails), and the store and token
//! a served test starts from.
//!
//! The binary is passed in (`env!("CARGO_BIN_EXE_sealog")` in the command
//! line's own tests).

#![allow(clippy::unwrap_used, reason = "a harness fails loudly")]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The segment size of the stores tests make: 64 KiB, so that a few hundred
/// events seal segments.
pub const SEGMENT_SIZE: &str = "65536";

/// `bin` with no `SEALOG_*` variable of the caller's environment (a
/// developer's `SEALOG_DATA_DIR` must not redirect a test) and no colours.
pub fn command(bin: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("SEALOG_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

/// `sealog serve` on `dir` with 64 KiB segments, on a free loopback port,
/// with `extra` flags.
pub fn serve_command(bin: impl AsRef<OsStr>, dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = command(bin);
    cmd.arg("--data-dir")
        .arg(dir)
        .arg("--segment-size")
        .arg(SEGMENT_SIZE)
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .args(extra);
    cmd
}

/// `sealog init` on `dir` with 64 KiB segments (left as it is if it holds
/// a store already).
pub fn init(bin: impl AsRef<OsStr>, dir: &Path) {
    let out = command(bin)
        .arg("--data-dir")
        .arg(dir)
        .arg("--segment-size")
        .arg(SEGMENT_SIZE)
        .arg("init")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `sealog token create` in the store in `dir` (made first with `init` if
/// need be); the secret, which is the last line.
pub fn create_token(bin: impl AsRef<OsStr>, dir: &Path, name: &str, scopes: &str) -> String {
    init(&bin, dir);
    let out = command(bin)
        .arg("--data-dir")
        .arg(dir)
        .args(["token", "create", "--name", name, "--scopes", scopes])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let last = text.lines().last().unwrap().to_owned();
    assert!(last.starts_with("slg_"), "{text}");
    last
}

/// A running `sealog serve`, killed if the test fails.
pub struct Served {
    child: Child,
    /// The address from its first line, `http://IP:PORT`.
    pub url: String,
    stderr: Arc<Mutex<String>>,
}

impl Served {
    /// Spawns `cmd` (a `sealog serve`) and waits (at most 30 s) for its
    /// first line, `listening on URL`; standard error is collected.
    pub fn start(mut cmd: Command) -> Served {
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
                let text = String::from_utf8_lossy(buf.get(..n).unwrap_or_default());
                sink.lock().unwrap().push_str(&text);
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {}
        });
        let Ok(first) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!("no address line; stderr: {}", stderr.lock().unwrap());
        };
        let url = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line `{first}`"))
            .to_owned();
        Served { child, url, stderr }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Standard error once it contains `text` (or after 5 s).
    pub fn stderr_with(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = self.stderr();
            if s.contains(text) || Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit status (at most 30 s later) and standard
    /// error.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let status = wait_for(&mut self.child, Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(50));
        (status, self.stderr())
    }

    /// SIGKILL.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
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

/// The exit status of `child`, killing it and failing if it takes longer
/// than `limit`.
pub fn wait_for(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
