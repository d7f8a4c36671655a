//! A server started in the test's own process on 127.0.0.1:0, with a
//! token file and store options of the test's choosing.

#![allow(clippy::unwrap_used, reason = "a harness fails loudly")]

use std::path::{Path, PathBuf};

use crate::client::Client;
use sealog::{Preallocation, Store, StoreOptions};
use sealog_server::tokens::{self, Scope};
use sealog_server::{Layer, Server};
use serde_json::Value;
use tokio::sync::oneshot;

/// A running server and its data directory.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The store directory.
    pub dir: PathBuf,
    /// The tokens file.
    pub tokens: PathBuf,
    /// The secret of each token created at start, by name (`root`: every
    /// scope, no tenant).
    pub secrets: std::collections::HashMap<String, String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), sealog_server::ServerError>>>,
    _tmp: Option<tempfile::TempDir>,
}

/// 64 KiB segments, space reserved with `fallocate`: a store that seals
/// segments after a few hundred events.
pub fn small_options() -> StoreOptions {
    StoreOptions {
        segment_size: 64 << 10,
        preallocation: Preallocation::Allocate,
        ..StoreOptions::default()
    }
}

/// [`small_options`] with a fixed signing key (`test.example/log`).
pub fn signing_options() -> StoreOptions {
    let key = sealog::format::note::SigningKey::from_seed("test.example/log", &[7u8; 32]).unwrap();
    StoreOptions {
        checkpoints: Some(sealog::CheckpointOptions::new(key)),
        ..small_options()
    }
}

/// What `start` configures.
pub struct Setup {
    /// The settings (`listen` and `data_dir` are the harness's).
    pub layer: Layer,
    /// The store options.
    pub options: StoreOptions,
    /// Create a tokens file with a `root` token (else: no authentication).
    pub with_tokens: bool,
    /// Tokens created before the server starts (the server reads a changed
    /// file within a second; creating them first avoids the wait).
    pub tokens: Vec<(&'static str, Vec<Scope>, Option<&'static str>)>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            layer: Layer::default(),
            options: signing_options(),
            with_tokens: true,
            tokens: Vec::new(),
        }
    }
}

impl TestServer {
    /// Starts a server on a new store in a temporary directory.
    pub async fn start(setup: Setup) -> TestServer {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir_all(&dir).unwrap();
        let tokens_path = dir.join("tokens.json");
        let mut secrets = std::collections::HashMap::new();
        if setup.with_tokens {
            let root = tokens::create(
                &tokens_path,
                "root",
                vec![Scope::Ingest, Scope::Query, Scope::Admin],
                None,
            )
            .unwrap()
            .1;
            secrets.insert("root".to_owned(), root);
            for (name, scopes, tenant) in &setup.tokens {
                let secret = tokens::create(
                    &tokens_path,
                    name,
                    scopes.clone(),
                    tenant.map(str::to_owned),
                )
                .unwrap()
                .1;
                secrets.insert((*name).to_owned(), secret);
            }
        }
        let mut ts = TestServer::start_in(&dir, setup).await;
        ts.secrets = secrets;
        ts._tmp = Some(tmp);
        ts
    }

    /// Starts a server on a store of 16 KiB segments and sends it 1,200
    /// events of `user:u` doing `action` (request ids `req-0` to
    /// `req-1199`, in batches of 100), then waits until the store has
    /// sealed at least three segments (seals happen in the background).
    pub async fn with_sealed_segments(action: &str) -> TestServer {
        let server = TestServer::start(Setup {
            options: StoreOptions {
                segment_size: 16 << 10,
                ..signing_options()
            },
            ..Setup::default()
        })
        .await;
        let mut c = server.admin();
        for b in 0..12u64 {
            let batch: String = (0..100)
                .map(|i| event("u", action, b * 100 + i).to_string() + "\n")
                .collect();
            let r = c.post_ndjson("/v1/events", batch).await.unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
        }
        let mut sealed = 0;
        for _ in 0..200 {
            let text = c.get("/metrics").await.unwrap().text();
            sealed = text
                .lines()
                .find_map(|l| l.strip_prefix("sealog_sealed_segments ")?.parse().ok())
                .unwrap_or(0);
            if sealed >= 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(sealed >= 3, "{sealed} sealed segments");
        server
    }

    /// Starts on an existing directory (for restarts).
    pub async fn start_in(dir: &Path, setup: Setup) -> TestServer {
        let tokens_path = dir.join("tokens.json");
        let layer = Layer {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(dir.to_path_buf()),
            ..setup.layer
        };
        let settings = layer.resolve().unwrap();
        let server = Server::bind(&settings, setup.options).await.unwrap();
        let url = server.url();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        TestServer {
            url,
            dir: dir.to_path_buf(),
            tokens: tokens_path,
            secrets: std::collections::HashMap::new(),
            stop: Some(tx),
            task: Some(task),
            _tmp: None,
        }
    }

    /// The secret of a token created at start.
    pub fn secret(&self, name: &str) -> String {
        self.secrets[name].clone()
    }

    /// A client with `token`.
    pub fn client(&self, token: Option<&str>) -> Client {
        let c = Client::new(&self.url).unwrap();
        match token {
            Some(t) => c.with_token(t),
            None => c,
        }
    }

    /// A client with the `root` token (every scope, no tenant).
    pub fn admin(&self) -> Client {
        match self.secrets.get("root") {
            Some(s) => self.client(Some(s)),
            None => self.client(None),
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) -> PathBuf {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        let dir = self.dir.clone();
        if let Some(tmp) = self._tmp.take() {
            // Keep the directory: the caller may reopen it.
            let _ = tmp.keep();
        }
        dir
    }
}

/// Every record of the store in `dir` (read-only open), oldest first.
pub fn all_records(dir: &Path) -> Vec<sealog::Record> {
    let store = Store::open_read_only(dir).unwrap();
    store.scan(..).map(|r| r.unwrap()).collect()
}

/// An event as JSON.
pub fn event(actor: &str, action: &str, i: u64) -> Value {
    serde_json::json!({
        "actor": {"type": "user", "id": actor},
        "action": action,
        "resource": {"type": "customer", "id": i.to_string()},
        "outcome": "success",
        "request_id": format!("req-{i}"),
    })
}
