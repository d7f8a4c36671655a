//! Where batches go: a syslog receiver over TCP or TLS (RFC 5425 octet
//! counting), or an HTTP(S) collector taking NDJSON POSTs.
//!
//! A transport's `send` returns only once the receiver acknowledged the
//! batch as far as the protocol can tell: for a stream, the bytes were
//! written and flushed to the socket (TCP has no application-level
//! acknowledgement; the forwarder's resend window covers what a receiver
//! that restarts had not yet read); for HTTP, a 2xx answer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::error::ExportError;

/// The receiver's URL, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// `syslog+tcp://host:port` (or `syslog://`): plain TCP.
    SyslogTcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// `syslog+tls://host:port`: TLS (RFC 5425).
    SyslogTls {
        /// Host name or address (also the name the certificate must carry).
        host: String,
        /// Port.
        port: u16,
    },
    /// `https://…` or `http://…`: NDJSON POSTs.
    Http {
        /// The URL, as given.
        url: String,
    },
}

impl Destination {
    /// Parses `syslog+tls://host:port`, `syslog+tcp://host:port`,
    /// `syslog://host:port`, `https://…` or `http://…`.
    pub fn parse(text: &str) -> Result<Destination, ExportError> {
        let fix = "give syslog+tls://HOST:PORT (RFC 5425, usually port 6514), \
                   syslog+tcp://HOST:PORT, or https://HOST[:PORT]/PATH";
        let bad =
            |why: &str| ExportError::config(format!("`{text}` is not a destination: {why}"), fix);
        if text.starts_with("https://") || text.starts_with("http://") {
            let url = reqwest::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
            if url.host_str().is_none() {
                return Err(bad("it has no host"));
            }
            return Ok(Destination::Http {
                url: text.to_owned(),
            });
        }
        let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| bad("it has no port (syslog+tls://HOST:6514)"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(bad("it has no host"));
        }
        let port: u16 = port.parse().map_err(|_| bad("the port is not a number"))?;
        match scheme {
            "syslog+tls" => Ok(Destination::SyslogTls { host, port }),
            "syslog+tcp" | "syslog" => Ok(Destination::SyslogTcp { host, port }),
            _ => Err(bad(&format!("the scheme `{scheme}` is not supported"))),
        }
    }

    /// True for the syslog destinations (framed lines over a stream).
    pub fn is_syslog(&self) -> bool {
        !matches!(self, Destination::Http { .. })
    }

    /// A short name for file names and messages: host and port, or the
    /// URL's host and path.
    pub fn name(&self) -> String {
        match self {
            Destination::SyslogTcp { host, port } => format!("syslog-tcp-{host}-{port}"),
            Destination::SyslogTls { host, port } => format!("syslog-tls-{host}-{port}"),
            Destination::Http { url } => {
                let trimmed = url
                    .trim_start_matches("https://")
                    .trim_start_matches("http://");
                format!("http-{trimmed}")
            }
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::SyslogTcp { host, port } => write!(f, "syslog+tcp://{host}:{port}"),
            Destination::SyslogTls { host, port } => write!(f, "syslog+tls://{host}:{port}"),
            Destination::Http { url } => f.write_str(url),
        }
    }
}

/// TLS settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the CA certificates to trust instead of the system's.
    pub ca: Option<PathBuf>,
    /// PEM certificate chain presented to the receiver (mutual TLS).
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
}

/// A rustls client configuration (ring) trusting `ca` or the system's
/// roots, with a client certificate when one is given.
pub fn client_config(options: &TlsOptions) -> Result<rustls::ClientConfig, ExportError> {
    let mut roots = rustls::RootCertStore::empty();
    match &options.ca {
        Some(ca) => {
            let certs = CertificateDer::pem_file_iter(ca)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    ExportError::config(
                        format!("cannot read the CA file `{}`: {e}", ca.display()),
                        "give --ca a PEM file of CA certificates",
                    )
                })?;
            if certs.is_empty() {
                return Err(ExportError::config(
                    format!("the CA file `{}` holds no certificate", ca.display()),
                    "give --ca a PEM file with at least one CERTIFICATE block",
                ));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    ExportError::config(
                        format!("a certificate in `{}` is invalid: {e}", ca.display()),
                        "give --ca a PEM file of valid CA certificates",
                    )
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(ExportError::config(
                    "no CA certificate was found on this system to check the receiver's \
                     certificate with",
                    "give --ca a PEM file of the CA that signed the receiver's certificate, \
                     or install the system's CA certificates (ca-certificates)",
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ExportError::config(format!("TLS setup failed: {e}"), "report this"))?
        .with_root_certificates(roots);
    match (&options.client_cert, &options.client_key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    ExportError::config(
                        format!(
                            "cannot read the client certificate `{}`: {e}",
                            cert.display()
                        ),
                        "give --client-cert a PEM certificate chain, leaf first",
                    )
                })?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                ExportError::config(
                    format!("cannot read the client key `{}`: {e}", key.display()),
                    "give --client-key the PEM private key (PKCS#8, PKCS#1 or SEC1) of \
                     --client-cert",
                )
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                ExportError::config(
                    format!("the client certificate and key do not go together: {e}"),
                    "give the key that belongs to --client-cert",
                )
            })
        }
        _ => Err(ExportError::config(
            "a client certificate needs its key, and a key its certificate",
            "give both --client-cert and --client-key, or neither",
        )),
    }
}

/// A failed send: the batch was not acknowledged and will be sent again.
#[derive(Debug)]
pub struct SendError {
    /// What happened, for the log.
    pub message: String,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Sends batches.
pub trait Transport: Send {
    /// Sends one batch (already framed or joined for this transport) and
    /// returns once the receiver acknowledged it.
    fn send(&mut self, batch: &[u8], lines: usize) -> Result<(), SendError>;

    /// True when a new connection was made since the last call (the
    /// forwarder forgets what it sent on the old one).
    fn take_reconnected(&mut self) -> bool {
        false
    }

    /// Drops the connection (after an error).
    fn disconnect(&mut self) {}
}

enum Stream {
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn socket(&self) -> &TcpStream {
        match self {
            Stream::Tcp(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }

    fn write_all_flush(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(bytes).and_then(|()| s.flush()),
            Stream::Tls(s) => s.write_all(bytes).and_then(|()| s.flush()),
        }
    }

    /// Whether the receiver closed the connection (a syslog receiver never
    /// sends anything, so end-of-stream or an error while reading means it
    /// is gone). Checked before each batch, so that a receiver that was
    /// restarted is noticed before bytes are written into a dead socket.
    fn closed_by_peer(&mut self) -> bool {
        if self.socket().set_nonblocking(true).is_err() {
            return true;
        }
        let mut buf = [0u8; 512];
        let result = match self {
            Stream::Tcp(s) => s.read(&mut buf),
            Stream::Tls(s) => s.read(&mut buf),
        };
        let closed = match result {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        };
        closed || self.socket().set_nonblocking(false).is_err()
    }
}

/// Syslog over TCP or TLS with octet-counting frames.
pub struct SyslogTransport {
    host: String,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    stream: Option<Stream>,
    reconnected: bool,
    timeout: Duration,
}

impl SyslogTransport {
    /// A transport to `destination` (a syslog one).
    pub fn new(
        destination: &Destination,
        tls: &TlsOptions,
        timeout: Duration,
    ) -> Result<SyslogTransport, ExportError> {
        let (host, port, tls) = match destination {
            Destination::SyslogTcp { host, port } => (host.clone(), *port, None),
            Destination::SyslogTls { host, port } => {
                (host.clone(), *port, Some(Arc::new(client_config(tls)?)))
            }
            Destination::Http { .. } => {
                return Err(ExportError::config(
                    "an HTTP destination is not a syslog one",
                    "report this",
                ));
            }
        };
        if tls.is_some() {
            ServerName::try_from(host.clone()).map_err(|_| {
                ExportError::config(
                    format!("`{host}` is not a host name or address TLS can check"),
                    "give the host name the receiver's certificate carries",
                )
            })?;
        }
        Ok(SyslogTransport {
            host,
            port,
            tls,
            stream: None,
            reconnected: false,
            timeout,
        })
    }

    fn connect(&mut self) -> Result<(), SendError> {
        let err = |what: &str, e: &dyn std::fmt::Display| SendError {
            message: format!("{what} {}:{}: {e}", self.host, self.port),
        };
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| err("cannot resolve", &e))?
            .collect();
        let mut last = None;
        let mut socket = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(s) => {
                    socket = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let socket = socket.ok_or_else(|| match last {
            Some(e) => err("cannot connect to", &e),
            None => err("no address for", &"the name resolved to nothing"),
        })?;
        let _ = socket.set_nodelay(true);
        let _ = socket.set_write_timeout(Some(self.timeout));
        let _ = socket.set_read_timeout(Some(self.timeout));
        let stream = match &self.tls {
            None => Stream::Tcp(socket),
            Some(config) => {
                let name = ServerName::try_from(self.host.clone())
                    .map_err(|e| err("bad server name", &e))?;
                let conn = rustls::ClientConnection::new(config.clone(), name)
                    .map_err(|e| err("TLS setup failed for", &e))?;
                let mut tls = rustls::StreamOwned::new(conn, socket);
                // Complete the handshake now, so a certificate problem is
                // reported as such rather than as a failed write.
                while tls.conn.is_handshaking() {
                    tls.conn
                        .complete_io(&mut tls.sock)
                        .map_err(|e| err("TLS handshake failed with", &e))?;
                }
                Stream::Tls(Box::new(tls))
            }
        };
        self.stream = Some(stream);
        self.reconnected = true;
        Ok(())
    }
}

impl Transport for SyslogTransport {
    fn send(&mut self, batch: &[u8], _lines: usize) -> Result<(), SendError> {
        if self.stream.as_mut().is_some_and(Stream::closed_by_peer) {
            self.stream = None;
            return Err(SendError {
                message: format!("{}:{} closed the connection", self.host, self.port),
            });
        }
        if self.stream.is_none() {
            self.connect()?;
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(SendError {
                message: "not connected".into(),
            });
        };
        stream.write_all_flush(batch).map_err(|e| {
            self.stream = None;
            SendError {
                message: format!("cannot write to {}:{}: {e}", self.host, self.port),
            }
        })
    }

    fn take_reconnected(&mut self) -> bool {
        std::mem::take(&mut self.reconnected)
    }

    fn disconnect(&mut self) {
        self.stream = None;
    }
}

/// NDJSON batches POSTed to an HTTP(S) collector.
pub struct HttpTransport {
    url: String,
    client: reqwest::blocking::Client,
    headers: reqwest::header::HeaderMap,
}

impl HttpTransport {
    /// A transport to `url` with extra `headers` (`Authorization`, …).
    pub fn new(
        url: &str,
        headers: &[(String, String)],
        tls: &TlsOptions,
        timeout: Duration,
    ) -> Result<HttpTransport, ExportError> {
        let mut builder = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("sealog/", env!("CARGO_PKG_VERSION")));
        if url.starts_with("https://") {
            builder = builder.tls_backend_preconfigured(client_config(tls)?);
        }
        let client = builder.build().map_err(|e| {
            ExportError::config(format!("cannot set up the HTTP client: {e}"), "report this")
        })?;
        let mut map = reqwest::header::HeaderMap::new();
        for (name, value) in headers {
            let n = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ExportError::config(
                    format!("`{name}` is not an HTTP header name"),
                    "give headers as `Name: value`, e.g. --header 'Authorization: Bearer …'",
                )
            })?;
            let mut v = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
                ExportError::config(
                    format!("the value of header `{name}` is not valid in HTTP"),
                    "use printable ASCII in header values",
                )
            })?;
            v.set_sensitive(n == reqwest::header::AUTHORIZATION);
            map.append(n, v);
        }
        Ok(HttpTransport {
            url: url.to_owned(),
            client,
            headers: map,
        })
    }
}

impl Transport for HttpTransport {
    fn send(&mut self, batch: &[u8], _lines: usize) -> Result<(), SendError> {
        let response = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(batch.to_vec())
            .send()
            .map_err(|e| SendError {
                message: format!("POST {} failed: {e}", self.url),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().unwrap_or_default();
        let snippet: String = body.chars().take(200).collect();
        Err(SendError {
            message: format!("POST {} answered {status}: {snippet}", self.url),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn destinations_parse_and_bad_ones_say_what_is_wrong() {
        assert_eq!(
            Destination::parse("syslog+tls://siem.example.com:6514").unwrap(),
            Destination::SyslogTls {
                host: "siem.example.com".into(),
                port: 6514
            }
        );
        assert_eq!(
            Destination::parse("syslog://[::1]:514").unwrap(),
            Destination::SyslogTcp {
                host: "::1".into(),
                port: 514
            }
        );
        assert!(
            Destination::parse("https://c.example.com/ingest")
                .unwrap()
                .to_string()
                == "https://c.example.com/ingest"
        );
        for (bad, says) in [
            ("syslog+tls://host", "no port"),
            ("syslog+tls://host:x", "not a number"),
            ("udp://host:514", "not supported"),
            ("host:514", "no scheme"),
            ("https://", "https://"),
        ] {
            let e = Destination::parse(bad).unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
            assert!(e.fix().contains("syslog+tls://"), "{bad}");
        }
    }
}
