//! Test peers started for real on loopback: the `moto` S3 server (in a
//! Python virtual environment, installed on first use) and a TCP proxy in
//! front of it that can delay bytes or refuse connections.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

fn venv() -> PathBuf {
    workspace().join("target/py-venv")
}

/// The `moto_server` executable: `SEALOG_MOTO_SERVER`, or the one in
/// `target/py-venv`, which is created (`python3 -m venv`, `pip install
/// 'moto[server]'`) if missing.
pub fn moto_server() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("SEALOG_MOTO_SERVER") {
            return PathBuf::from(p);
        }
        let bin = venv().join("bin/moto_server");
        if bin.exists() {
            return bin;
        }
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(venv())
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(venv().join("bin/pip"))
                .args(["install", "--quiet", "moto[server]"])
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            ok && bin.exists(),
            "could not install moto into {}: these tests need a real S3 API server; run \
             `python3 -m venv target/py-venv && target/py-venv/bin/pip install 'moto[server]'`, \
             or set SEALOG_MOTO_SERVER to a moto_server executable",
            venv().display()
        );
        bin
    })
    .clone()
}

/// The Python of the environment moto is in (it has boto3).
fn python() -> PathBuf {
    moto_server()
        .parent()
        .map(|d| d.join("python"))
        .unwrap_or_else(|| PathBuf::from("python3"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `moto_server` on a loopback port, stopped on drop.
pub struct Moto {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

pub const ACCESS_KEY: &str = "sealog-test";
pub const SECRET_KEY: &str = "sealog-test-secret";

impl Moto {
    /// Starts a server on a free port. The port is free when chosen but
    /// another test may take it before moto binds it, and a connect that
    /// succeeds may reach that other listener; so the server counts as up
    /// only once moto itself says it listens on the port, and a moto that
    /// exits (the port was taken) is started again on another port.
    pub fn start() -> Moto {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("moto.log");
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let out = std::fs::File::create(&log).expect("log file");
            let err = out.try_clone().expect("log file");
            let mut child = Command::new(moto_server())
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("start moto_server");
            let listening = format!("Running on http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.contains(&listening) {
                    wait_for_port(port, "moto_server");
                    return Moto {
                        child: Some(child),
                        port,
                        log,
                        _dir: dir,
                    };
                }
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!("moto_server exited ({status}) on port {port}: {text}");
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("moto_server did not start listening on {port} in 90 s: {text}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("moto_server could not start after 5 ports; last: {last}");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs a boto3 snippet against the server; `s3` is the client.
    pub fn boto3(&self, endpoint: &str, code: &str) -> String {
        let script = format!(
            "import boto3, sys\n\
             s3 = boto3.client('s3', endpoint_url='{endpoint}', region_name='us-east-1', \
             aws_access_key_id='{ACCESS_KEY}', aws_secret_access_key='{SECRET_KEY}')\n{code}\n"
        );
        let out = Command::new(python())
            .args(["-c", &script])
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "boto3 script failed: {}\n{}\nmoto's log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            script,
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates a bucket with Object Lock enabled and, if `days > 0`, a
    /// default COMPLIANCE retention of that many days.
    pub fn create_locked_bucket(&self, bucket: &str, days: u32) {
        let mut code =
            format!("s3.create_bucket(Bucket='{bucket}', ObjectLockEnabledForBucket=True)\n");
        if days > 0 {
            code.push_str(&format!(
                "s3.put_object_lock_configuration(Bucket='{bucket}', ObjectLockConfiguration={{\
                 'ObjectLockEnabled': 'Enabled', 'Rule': {{'DefaultRetention': \
                 {{'Mode': 'COMPLIANCE', 'Days': {days}}}}}}})\n"
            ));
        }
        self.boto3(&self.endpoint(), &code);
    }

    /// Builder configuration for sealog to reach this server (through
    /// `endpoint`, the server or a proxy in front of it).
    pub fn config(endpoint: &str) -> Vec<(String, String)> {
        vec![
            ("aws_endpoint".into(), endpoint.into()),
            ("aws_allow_http".into(), "true".into()),
            ("aws_access_key_id".into(), ACCESS_KEY.into()),
            ("aws_secret_access_key".into(), SECRET_KEY.into()),
            ("aws_region".into(), "us-east-1".into()),
        ]
    }

    /// The same as environment variables (for the `sealog` binary).
    pub fn env(endpoint: &str) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), endpoint.into()),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
            ("AWS_REGION".into(), "us-east-1".into()),
        ]
    }

    /// Stops the server (the object store goes down; its data is lost).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward bytes as they come.
    Pass,
    /// Forward in chunks of at most 4 KiB, waiting this long before each.
    Slow(Duration),
    /// Close every new connection at once, and cut open ones.
    Down,
}

/// A TCP proxy on loopback in front of `upstream`.
pub struct Proxy {
    pub port: u16,
    mode: Arc<Mutex<ProxyMode>>,
    stop: Arc<AtomicBool>,
    /// Connections accepted.
    pub connections: Arc<AtomicU64>,
    /// Generation: bumped when the mode changes to Down, so open
    /// connections are cut.
    generation: Arc<AtomicU64>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let mode = Arc::new(Mutex::new(ProxyMode::Pass));
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicU64::new(0));
        let generation = Arc::new(AtomicU64::new(0));
        {
            let (mode, stop, connections, generation) = (
                mode.clone(),
                stop.clone(),
                connections.clone(),
                generation.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (client, _) = match listener.accept() {
                        Ok(c) => c,
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                    };
                    connections.fetch_add(1, Ordering::Relaxed);
                    let now = *mode.lock().expect("mode");
                    if now == ProxyMode::Down {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    }
                    let _ = client.set_nonblocking(false);
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    let born = generation.load(Ordering::Relaxed);
                    for (from, to) in [
                        (client.try_clone(), server.try_clone()),
                        (server.try_clone(), client.try_clone()),
                    ] {
                        let (Ok(mut from), Ok(mut to)) = (from, to) else {
                            continue;
                        };
                        let (mode, stop, generation) =
                            (mode.clone(), stop.clone(), generation.clone());
                        std::thread::spawn(move || {
                            let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
                            let mut buf = vec![0u8; 64 * 1024];
                            loop {
                                if stop.load(Ordering::Relaxed)
                                    || generation.load(Ordering::Relaxed) != born
                                {
                                    break;
                                }
                                let n = match from.read(&mut buf) {
                                    Ok(0) => break,
                                    Ok(n) => n,
                                    Err(e)
                                        if matches!(
                                            e.kind(),
                                            std::io::ErrorKind::WouldBlock
                                                | std::io::ErrorKind::TimedOut
                                        ) =>
                                    {
                                        continue;
                                    }
                                    Err(_) => break,
                                };
                                let current = *mode.lock().expect("mode");
                                let ok = match current {
                                    ProxyMode::Slow(delay) => buf[..n].chunks(4096).all(|c| {
                                        std::thread::sleep(delay);
                                        to.write_all(c).is_ok()
                                    }),
                                    _ => to.write_all(&buf[..n]).is_ok(),
                                };
                                if !ok {
                                    break;
                                }
                            }
                            let _ = from.shutdown(Shutdown::Both);
                            let _ = to.shutdown(Shutdown::Both);
                        });
                    }
                }
            });
        }
        Proxy {
            port,
            mode,
            stop,
            connections,
            generation,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set(&self, mode: ProxyMode) {
        *self.mode.lock().expect("mode") = mode;
        if mode == ProxyMode::Down {
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
