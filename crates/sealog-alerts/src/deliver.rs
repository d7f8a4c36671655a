//! Webhook delivery: each alert is POSTed as JSON to every webhook whose
//! minimum severity it reaches, signed, retried with exponential backoff,
//! and written to a dead-letter file when every attempt failed.
//!
//! The signature: `X-Sealog-Timestamp` carries the Unix time of the attempt
//! in seconds, and `X-Sealog-Signature` is `sha256=` followed by the hex
//! HMAC-SHA-256, keyed with the webhook's secret, of the timestamp, a `.`
//! and the body's bytes. A receiver recomputes it, compares in constant
//! time and refuses timestamps too far from its clock (a replayed request
//! carries an old one). `X-Sealog-Alert-Id` carries the alert's id, the
//! same on every attempt and after a restart, so a receiver can drop
//! duplicates.
//!
//! A 2xx answer delivers. A connection error, a timeout, 408, 429 or a 5xx
//! is retried; any other answer is final (the receiver refused the alert,
//! and sending it again would not change that). The [`Deliverer`] is a
//! tokio task fed through a channel; [`Deliverer::deliver`] resolves when
//! every webhook of the alert delivered or its alert went to the dead-letter
//! file, so the caller can advance its cursor only then.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot};

use crate::alert::Alert;
use crate::error::{Error, Result};
use crate::rules::Severity;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-sealog-signature";
/// The header carrying the signing time (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-sealog-timestamp";
/// The header carrying the alert's id.
pub const ALERT_ID_HEADER: &str = "x-sealog-alert-id";
/// The header carrying the attempt number, 1 first.
pub const ATTEMPT_HEADER: &str = "x-sealog-attempt";

/// Secrets shorter than this are refused.
pub const MIN_SECRET_LEN: usize = 16;

/// A webhook: where to send, the key to sign with, which alerts.
#[derive(Clone)]
pub struct Webhook {
    /// The URL, `http://` or `https://`.
    pub url: String,
    /// The HMAC key.
    pub secret: Vec<u8>,
    /// Alerts below this severity are not sent to it.
    pub min_severity: Severity,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("min_severity", &self.min_severity)
            .finish()
    }
}

impl Webhook {
    /// A webhook, its URL and secret checked.
    pub fn new(url: &str, secret: Vec<u8>, min_severity: Severity) -> Result<Webhook> {
        let bad = |message: String| Error::Webhook {
            url: url.to_owned(),
            message,
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(bad("not an http:// or https:// URL with a host".into()));
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(bad(format!(
                "the secret is {} bytes; at least {MIN_SECRET_LEN} are needed",
                secret.len()
            )));
        }
        Ok(Webhook {
            url: url.to_owned(),
            secret,
            min_severity,
        })
    }

    /// Reads a secret file: its bytes, without a trailing newline.
    pub fn read_secret(path: &Path) -> Result<Vec<u8>> {
        let mut bytes = std::fs::read(path).map_err(|source| Error::Io {
            op: "read the webhook secret",
            path: path.to_path_buf(),
            source,
        })?;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        Ok(bytes)
    }
}

/// The signature header's value for a body signed at `timestamp` (Unix
/// seconds): `sha256=<hex>` (see the module docs).
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `signature` is the signature of `body` at `timestamp`, compared
/// in constant time.
pub fn verify(secret: &[u8], timestamp: u64, body: &[u8], signature: &str) -> bool {
    let Some(hex_sig) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// How deliveries are attempted.
#[derive(Clone, Debug)]
pub struct DeliveryOptions {
    /// Attempts per webhook, the first included (at least 1).
    pub attempts: u32,
    /// The wait before the second attempt; it doubles after each.
    pub initial_backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// The dead-letter file: one JSON line per alert a webhook never took.
    pub dead_letter: PathBuf,
}

impl DeliveryOptions {
    /// The defaults (6 attempts, 1 s doubling up to 60 s, 10 s per
    /// attempt) with the given dead-letter file.
    pub fn new(dead_letter: PathBuf) -> DeliveryOptions {
        DeliveryOptions {
            attempts: 6,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            dead_letter,
        }
    }

    /// The wait after failed attempt `n` (1 first).
    fn backoff(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// What became of one alert at one webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The webhook answered 2xx, at this attempt.
    Delivered {
        /// The webhook's URL.
        url: String,
        /// The attempt that succeeded, 1 first.
        attempt: u32,
    },
    /// Every attempt failed, or the webhook refused it; the alert is in
    /// the dead-letter file.
    DeadLettered {
        /// The webhook's URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        error: String,
    },
}

/// A line of the dead-letter file.
#[derive(Serialize)]
struct DeadLetter<'a> {
    /// When it was written, RFC 3339.
    at: String,
    url: &'a str,
    attempts: u32,
    error: &'a str,
    alert: &'a Alert,
}

struct Job {
    alert: Alert,
    done: oneshot::Sender<Vec<Delivery>>,
}

/// The delivery task's handle (see the module docs). Cloning it gives
/// another sender to the same task.
#[derive(Clone)]
pub struct Deliverer {
    tx: mpsc::Sender<Job>,
}

struct Shared {
    client: reqwest::Client,
    webhooks: Vec<Webhook>,
    options: DeliveryOptions,
    dead_letter: std::sync::Mutex<()>,
}

impl Deliverer {
    /// Starts the delivery task on the current tokio runtime. It ends when
    /// every [`Deliverer`] is dropped, after the deliveries in flight.
    pub fn start(
        webhooks: Vec<Webhook>,
        options: DeliveryOptions,
    ) -> Result<(Deliverer, tokio::task::JoinHandle<()>)> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .user_agent(concat!("sealog-alerts/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Webhook {
                url: String::new(),
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        let shared = Arc::new(Shared {
            client,
            webhooks,
            options: DeliveryOptions {
                attempts: options.attempts.max(1),
                ..options
            },
            dead_letter: std::sync::Mutex::new(()),
        });
        let (tx, mut rx) = mpsc::channel::<Job>(1024);
        let task = tokio::spawn(async move {
            let mut running = tokio::task::JoinSet::new();
            while let Some(job) = rx.recv().await {
                let shared = shared.clone();
                running.spawn(async move {
                    let result = shared.deliver_all(&job.alert).await;
                    let _ = job.done.send(result);
                });
                // Reap finished deliveries so the set stays small.
                while running.try_join_next().is_some() {}
            }
            while running.join_next().await.is_some() {}
        });
        Ok((Deliverer { tx }, task))
    }

    /// Queues an alert; the receiver resolves when every webhook took it or
    /// it went to the dead-letter file.
    pub async fn submit(&self, alert: Alert) -> oneshot::Receiver<Vec<Delivery>> {
        let (done, rx) = oneshot::channel();
        // The task outlives every sender, so the send only fails if it
        // panicked; the receiver then resolves with an error.
        let _ = self.tx.send(Job { alert, done }).await;
        rx
    }

    /// Delivers an alert and waits for the outcome at each webhook.
    pub async fn deliver(&self, alert: Alert) -> Vec<Delivery> {
        self.submit(alert).await.await.unwrap_or_default()
    }
}

impl Shared {
    async fn deliver_all(&self, alert: &Alert) -> Vec<Delivery> {
        let body = match serde_json::to_vec(alert) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(alert = %alert.id, "cannot encode the alert: {e}");
                return Vec::new();
            }
        };
        let sends = self
            .webhooks
            .iter()
            .filter(|w| alert.severity >= w.min_severity)
            .map(|w| self.deliver_one(w, alert, &body));
        futures_join_all(sends).await
    }

    async fn deliver_one(&self, hook: &Webhook, alert: &Alert, body: &[u8]) -> Delivery {
        let mut attempt = 0;
        let error = loop {
            attempt += 1;
            let (error, retryable) = match self.attempt(hook, alert, body, attempt).await {
                Ok(()) => {
                    return Delivery::Delivered {
                        url: hook.url.clone(),
                        attempt,
                    };
                }
                Err(failure) => failure,
            };
            tracing::warn!(url = %hook.url, alert = %alert.id, attempt, "webhook delivery failed: {error}");
            if !retryable || attempt >= self.options.attempts {
                break error;
            }
            tokio::time::sleep(self.options.backoff(attempt)).await;
        };
        if let Err(e) = self.write_dead_letter(hook, alert, attempt, &error) {
            tracing::error!(alert = %alert.id, "{e}; fix: {}", e.fix());
        }
        Delivery::DeadLettered {
            url: hook.url.clone(),
            attempts: attempt,
            error,
        }
    }

    /// One POST; on failure, what went wrong and whether to try again.
    async fn attempt(
        &self,
        hook: &Webhook,
        alert: &Alert,
        body: &[u8],
        attempt: u32,
    ) -> std::result::Result<(), (String, bool)> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let response = self
            .client
            .post(&hook.url)
            .header("content-type", "application/json")
            .header(TIMESTAMP_HEADER, now.to_string())
            .header(SIGNATURE_HEADER, sign(&hook.secret, now, body))
            .header(ALERT_ID_HEADER, &alert.id)
            .header(ATTEMPT_HEADER, attempt.to_string())
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| (format!("request failed: {e}"), true))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retryable = status.is_server_error() || matches!(status.as_u16(), 408 | 429);
        Err((format!("answered {status}"), retryable))
    }

    fn write_dead_letter(
        &self,
        hook: &Webhook,
        alert: &Alert,
        attempts: u32,
        error: &str,
    ) -> Result<()> {
        let path = &self.options.dead_letter;
        let io = |op: &'static str| {
            move |source| Error::Io {
                op,
                path: path.clone(),
                source,
            }
        };
        let mut line = serde_json::to_vec(&DeadLetter {
            at: sealog::Timestamp::now().to_rfc3339(),
            url: &hook.url,
            attempts,
            error,
            alert,
        })
        .map_err(|e| io("encode a dead letter for")(std::io::Error::other(e)))?;
        line.push(b'\n');
        let _guard = self
            .dead_letter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io("create the directory of"))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io("open the dead-letter file"))?;
        file.write_all(&line)
            .map_err(io("append to the dead-letter file"))?;
        file.sync_data().map_err(io("sync the dead-letter file"))?;
        Ok(())
    }
}

/// Awaits futures concurrently, keeping their order.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let futures: Vec<_> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut pending: Vec<_> = futures.into_iter().enumerate().collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|(i, f)| match f.as_mut().poll(cx) {
            std::task::Poll::Ready(out) => {
                if let Some(slot) = outputs.get_mut(*i) {
                    *slot = Some(out);
                }
                false
            }
            std::task::Poll::Pending => true,
        });
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_with_its_secret_time_and_body() {
        let secret = b"0123456789abcdef-secret";
        let sig = sign(secret, 1_700_000_000, b"{\"a\":1}");
        assert!(sig.starts_with("sha256="));
        assert!(verify(secret, 1_700_000_000, b"{\"a\":1}", &sig));
        assert!(!verify(secret, 1_700_000_001, b"{\"a\":1}", &sig));
        assert!(!verify(secret, 1_700_000_000, b"{\"a\":2}", &sig));
        assert!(!verify(
            b"another-secret-of-16",
            1_700_000_000,
            b"{\"a\":1}",
            &sig
        ));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let o = DeliveryOptions {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            ..DeliveryOptions::new(PathBuf::from("dl"))
        };
        let waits: Vec<u128> = (1..=5).map(|n| o.backoff(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
    }

    #[test]
    fn a_webhook_needs_an_http_url_and_a_long_secret() {
        assert!(Webhook::new("http://127.0.0.1:9/x", vec![7; 16], Severity::Info).is_ok());
        assert!(Webhook::new("ftp://host/x", vec![7; 16], Severity::Info).is_err());
        assert!(Webhook::new("http://127.0.0.1:9/x", vec![7; 15], Severity::Info).is_err());
    }
}
