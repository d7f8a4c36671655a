//! [`ClientBuilder`]: where the server is, how to authenticate and trust
//! it, and how long to keep trying.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use sealog_format::Validator;

use crate::error::Error;
use crate::transport::Client;

/// How requests are retried after a transient failure (a connection error,
/// `408`, `429`, `503`, `507` or another `5xx`). Every retry of a request
/// sends the same body with the same `Idempotency-Key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay before the first retry (default 100 ms); it doubles with
    /// each retry, with jitter: a retry waits between half of the delay
    /// and all of it.
    pub initial_backoff: Duration,
    /// The longest delay between two attempts (default 10 s).
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured (default 60 s): a server asking
    /// for more is retried after this long.
    pub max_retry_after: Duration,
    /// How long to keep retrying one request before giving up with
    /// [`Error::GaveUp`] (default 5 minutes; `None`: never give up, for a
    /// producer that prefers waiting behind backpressure to losing events).
    pub give_up_after: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
            give_up_after: Some(Duration::from_secs(300)),
        }
    }
}

/// Builds a [`Client`].
///
/// ```no_run
/// # fn run() -> Result<(), sealog_client::Error> {
/// let client = sealog_client::Client::builder("https://audit.internal:7807")
///     .bearer_token("…")
///     .ca_certificate_file("/etc/sealog/ca.pem")
///     .build()?;
/// # let _ = client; Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientBuilder {
    pub(crate) url: String,
    pub(crate) token: Option<String>,
    pub(crate) ca: Option<CaSource>,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) allow_plain_http: bool,
    pub(crate) validator: Option<Validator>,
    pub(crate) user_agent: String,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("ClientBuilder")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
pub(crate) enum CaSource {
    Pem(Vec<u8>),
    File(PathBuf),
}

impl ClientBuilder {
    pub(crate) fn new(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            token: None,
            ca: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            allow_plain_http: false,
            validator: Some(Validator::default()),
            user_agent: concat!("sealog-client/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }

    /// The bearer token (`sealog token create --scopes ingest`). Sent as
    /// `Authorization: Bearer …`, marked sensitive, never logged.
    pub fn bearer_token(mut self, token: impl Into<String>) -> ClientBuilder {
        let token = token.into();
        self.token = (!token.is_empty()).then_some(token);
        self
    }

    /// Trusts only the CA certificate(s) in this PEM text for the server's
    /// certificate (a private CA), instead of the system's roots.
    pub fn ca_certificate_pem(mut self, pem: impl AsRef<[u8]>) -> ClientBuilder {
        self.ca = Some(CaSource::Pem(pem.as_ref().to_vec()));
        self
    }

    /// Like [`ClientBuilder::ca_certificate_pem`], read from a file when the
    /// client is built.
    pub fn ca_certificate_file(mut self, path: impl AsRef<Path>) -> ClientBuilder {
        self.ca = Some(CaSource::File(path.as_ref().to_owned()));
        self
    }

    /// How long to wait for a TCP connection and TLS handshake (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// How long one attempt may take, answer included (default 30 s, the
    /// server's own request timeout). A timed-out attempt is retried with the
    /// same idempotency key.
    pub fn request_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.request_timeout = timeout;
        self
    }

    /// The retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> ClientBuilder {
        self.retry = retry;
        self
    }

    /// Allows a bearer token over plain `http://` to a host that is not the
    /// loopback address (default: refused, because anyone on the path could
    /// read the token and write events in its name).
    pub fn allow_plain_http(mut self, allow: bool) -> ClientBuilder {
        self.allow_plain_http = allow;
        self
    }

    /// The rules events are checked against before they are sent (default:
    /// the engine's defaults, which are the server's). An invalid event is
    /// refused at once, naming the field, instead of failing a whole batch
    /// on the server. `None` sends events unchecked (the server still checks
    /// them). Give the server's rules if they differ, e.g. a secret guard
    /// that redacts.
    pub fn validator(mut self, validator: Option<Validator>) -> ClientBuilder {
        self.validator = validator;
        self
    }

    /// The `User-Agent` of the requests (default `sealog-client/VERSION`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> ClientBuilder {
        self.user_agent = user_agent.into();
        self
    }

    /// Builds the client: checks the URL, loads the CA certificates, builds
    /// the TLS configuration. Makes no connection.
    pub fn build(self) -> Result<Client, Error> {
        let mut base = reqwest::Url::parse(&self.url)
            .map_err(|e| Error::Config(format!("the server URL `{}`: {e}", self.url)))?;
        match base.scheme() {
            "https" => {}
            "http" => {
                if self.token.is_some() && !self.allow_plain_http && !is_loopback(&base) {
                    return Err(Error::Config(format!(
                        "refusing to send a bearer token over plain http to `{}`: anyone on the \
                         path could read it; use https (with `ca_certificate_file` for a private \
                         CA), or call `allow_plain_http(true)` if the network is trusted",
                        base.host_str().unwrap_or_default()
                    )));
                }
            }
            other => {
                return Err(Error::Config(format!(
                    "the server URL `{}` has scheme `{other}`; use http:// or https://",
                    self.url
                )));
            }
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(Error::Config(format!(
                "the server URL `{}` has a query or fragment; give the server's base URL",
                self.url
            )));
        }
        // A base path (a server behind a reverse proxy at `/audit`) keeps its
        // last segment when joined.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let events_url = base
            .join("v1/events")
            .map_err(|e| Error::Config(format!("the server URL `{}`: {e}", self.url)))?;
        let roots = match &self.ca {
            None => None,
            Some(CaSource::Pem(pem)) => Some(parse_ca(pem, "the CA certificate PEM")?),
            Some(CaSource::File(path)) => {
                let pem = std::fs::read(path).map_err(|e| {
                    Error::Config(format!(
                        "cannot read the CA certificate file `{}`: {e}",
                        path.display()
                    ))
                })?;
                Some(parse_ca(&pem, &format!("`{}`", path.display()))?)
            }
        };
        let tls = tls_config(roots)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .http1_only()
            .user_agent(self.user_agent.clone())
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Client::from_parts(http, events_url, self)
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn parse_ca(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("{what} is not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "{what} holds no certificate (expected `-----BEGIN CERTIFICATE-----` blocks)"
        )));
    }
    Ok(certs)
}

fn tls_config(roots: Option<Vec<CertificateDer<'static>>>) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?;
    let mut config = match roots {
        Some(certs) => {
            let mut store = rustls::RootCertStore::empty();
            for cert in certs {
                store.add(cert).map_err(|e| {
                    Error::Config(format!("TLS: a CA certificate is unusable: {e}"))
                })?;
            }
            builder.with_root_certificates(store).with_no_client_auth()
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt as _;
            builder
                .with_platform_verifier()
                .map_err(|e| Error::Config(format!("TLS: the system's roots: {e}")))?
                .with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_over_plain_http_to_a_remote_host_is_refused() {
        let err = ClientBuilder::new("http://audit.example.com:7807")
            .bearer_token("s3cr3t")
            .build()
            .expect_err("refused");
        let message = err.to_string();
        assert!(message.contains("plain http"), "{message}");
        assert!(!message.contains("s3cr3t"), "{message}");
        ClientBuilder::new("http://127.0.0.1:7807")
            .bearer_token("s3cr3t")
            .build()
            .expect("loopback is fine");
        ClientBuilder::new("http://audit.example.com:7807")
            .bearer_token("s3cr3t")
            .allow_plain_http(true)
            .build()
            .expect("allowed explicitly");
    }

    #[test]
    fn base_path_is_kept_in_the_events_url() {
        let client = ClientBuilder::new("http://127.0.0.1:9/audit")
            .build()
            .expect("builds");
        assert_eq!(client.events_url(), "http://127.0.0.1:9/audit/v1/events");
        let client = ClientBuilder::new("http://127.0.0.1:9")
            .build()
            .expect("builds");
        assert_eq!(client.events_url(), "http://127.0.0.1:9/v1/events");
    }

    #[test]
    fn a_file_without_certificates_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").expect("write");
        let err = ClientBuilder::new("https://127.0.0.1:9")
            .ca_certificate_file(&path)
            .build()
            .expect_err("refused");
        assert!(err.to_string().contains("ca.pem"), "{err}");
    }

    #[test]
    fn debug_output_hides_the_token() {
        let builder = ClientBuilder::new("https://x").bearer_token("s3cr3t");
        assert!(!format!("{builder:?}").contains("s3cr3t"));
    }
}
