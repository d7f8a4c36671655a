//! A small HTTP/1.1 client for the server's API: one keep-alive connection
//! per [`Client`], optional TLS (rustls with ring, trusting a given CA).
//!
//! Used by the load generator (`sealog-benches`, one client per simulated
//! client) and by the end-to-end tests; it is hyper's own connection API
//! over the server's own dependencies.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
pub use hyper::Method;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{HeaderMap, Request, header, header::HeaderValue};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

/// A client error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(pub String);

/// A buffered response.
#[derive(Debug, Clone)]
pub struct ClientResponse {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl ClientResponse {
    /// The body as JSON (`null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The error code of an error response.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
}

/// One connection to a server.
pub struct Client {
    host: String,
    port: u16,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    token: Option<String>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of `http://HOST:PORT` or `https://HOST:PORT` (for https,
    /// give the CA with [`Client::trust`]).
    pub fn new(url: &str) -> Result<Client, ClientError> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(ClientError(format!(
                "`{url}` is not an http:// or https:// URL"
            )));
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']').to_owned(),
                p.parse()
                    .map_err(|_| ClientError(format!("`{p}` is not a port")))?,
            ),
            _ => (authority.to_owned(), if tls { 443 } else { 80 }),
        };
        let mut client = Client {
            host,
            port,
            tls: None,
            token: None,
            sender: None,
        };
        if tls {
            client = client.trust(None)?;
        }
        Ok(client)
    }

    /// Trusts the CA certificates in `ca_pem` (none: no CA, so only a
    /// later call with one makes TLS work).
    pub fn trust(mut self, ca_pem: Option<&Path>) -> Result<Client, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(path) = ca_pem {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| ClientError(format!("cannot read `{}`: {e}", path.display())))?;
            for cert in certs {
                let cert = cert.map_err(|e| ClientError(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| ClientError(format!("bad CA certificate: {e}")))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(self.host.clone())
            .map_err(|e| ClientError(format!("`{}`: {e}", self.host)))?;
        self.tls = Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name));
        self.sender = None;
        Ok(self)
    }

    /// Sends `Authorization: Bearer TOKEN` with every request.
    pub fn with_token(mut self, token: impl Into<String>) -> Client {
        self.token = Some(token.into());
        self
    }

    /// Forgets the connection (the next request opens a new one).
    pub fn disconnect(&mut self) {
        self.sender = None;
    }

    async fn connect(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, ClientError> {
        if let Some(s) = self.sender.as_mut()
            && !s.is_closed()
            && s.ready().await.is_ok()
        {
            return self
                .sender
                .as_mut()
                .ok_or_else(|| ClientError("no connection".into()));
        }
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| ClientError(format!("connect to {}:{}: {e}", self.host, self.port)))?;
        let _ = tcp.set_nodelay(true);
        let sender = match &self.tls {
            None => {
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                    .await
                    .map_err(|e| ClientError(format!("HTTP handshake: {e}")))?;
                tokio::spawn(conn);
                sender
            }
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| ClientError(format!("TLS handshake: {e}")))?;
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| ClientError(format!("HTTP handshake: {e}")))?;
                tokio::spawn(conn);
                sender
            }
        };
        self.sender = Some(sender);
        self.sender
            .as_mut()
            .ok_or_else(|| ClientError("no connection".into()))
    }

    fn build(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, format!("{}:{}", self.host, self.port));
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in headers {
            let value = HeaderValue::from_bytes(v.as_bytes())
                .map_err(|e| ClientError(format!("header {k}: {e}")))?;
            req = req.header(*k, value);
        }
        req.body(Full::new(body))
            .map_err(|e| ClientError(format!("building the request: {e}")))
    }

    /// Sends a request and returns the response with its body unread.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<hyper::Response<Incoming>, ClientError> {
        let body = body.into();
        let req = self.build(method.clone(), path, headers, body.clone())?;
        let sender = self.connect().await?;
        match sender.send_request(req).await {
            Ok(r) => Ok(r),
            // The server closed the idle connection before the request
            // went out: nothing was sent, so a new connection is safe.
            Err(e) if e.is_canceled() => {
                self.sender = None;
                let req = self.build(method, path, headers, body)?;
                let sender = self.connect().await?;
                sender.send_request(req).await.map_err(|e| {
                    self.sender = None;
                    ClientError(format!("request failed: {e}"))
                })
            }
            Err(e) => {
                self.sender = None;
                Err(ClientError(format!("request failed: {e}")))
            }
        }
    }

    /// Sends a request and reads the whole response.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<ClientResponse, ClientError> {
        let response = self.send(method, path, headers, body).await?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| {
                self.sender = None;
                ClientError(format!("reading the response: {e}"))
            })?
            .to_bytes();
        Ok(ClientResponse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Result<ClientResponse, ClientError> {
        self.request(Method::GET, path, &[], Bytes::new()).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(
        &mut self,
        path: &str,
        body: impl Into<Bytes>,
    ) -> Result<ClientResponse, ClientError> {
        self.request(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            body,
        )
        .await
    }

    /// `POST path` with an NDJSON body.
    pub async fn post_ndjson(
        &mut self,
        path: &str,
        body: impl Into<Bytes>,
    ) -> Result<ClientResponse, ClientError> {
        self.request(
            Method::POST,
            path,
            &[("content-type", "application/x-ndjson")],
            body,
        )
        .await
    }
}
