//! Raw HTTP/1.1 over TCP for the abusive clients: opening a connection
//! (from a chosen loopback source address), sending a hand-written request
//! and reading how the server answered (a status and error code, a close,
//! a reset or nothing).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

use super::shared::{OpenGuard, Shared};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub(super) const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// How a raw exchange ended.
#[derive(Debug)]
pub(super) enum Answer {
    Response {
        status: u16,
        code: String,
        close: bool,
    },
    /// The server closed the connection without answering.
    Closed,
    /// The connection was reset.
    Reset,
    /// Nothing within [`ANSWER_TIMEOUT`].
    TimedOut,
    /// The connection could not be opened.
    ConnectFailed(String),
}

impl Answer {
    pub(super) fn label(&self) -> String {
        match self {
            Answer::Response { status, code, .. } if code.is_empty() => status.to_string(),
            Answer::Response { status, code, .. } => format!("{status} {code}"),
            Answer::Closed => "closed without an answer".into(),
            Answer::Reset => "reset".into(),
            Answer::TimedOut => format!("no answer within {} s", ANSWER_TIMEOUT.as_secs()),
            Answer::ConnectFailed(e) => format!("connect failed: {e}"),
        }
    }

    /// Whether the connection can carry another request.
    pub(super) fn reusable(&self) -> bool {
        matches!(self, Answer::Response { close: false, .. })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response (head and a Content-Length body).
pub(super) async fn read_answer(r: &mut (impl AsyncRead + Unpin), within: Duration) -> Answer {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let mut chunk = [0u8; 8192];
    let mut head: Option<(usize, u16, usize, bool)> = None;
    loop {
        if head.is_none()
            && let Some(end) = find(&buf, b"\r\n\r\n")
        {
            let text = String::from_utf8_lossy(buf.get(..end).unwrap_or_default()).into_owned();
            let mut lines = text.split("\r\n");
            let status = lines
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let mut length = 0usize;
            let mut close = false;
            for line in lines {
                let Some((k, v)) = line.split_once(':') else {
                    continue;
                };
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                if k == "content-length" {
                    length = v.parse().unwrap_or(0);
                } else if k == "connection" && v.eq_ignore_ascii_case("close") {
                    close = true;
                }
            }
            head = Some((end + 4, status, length.min(1 << 20), close));
        }
        if let Some((start, status, length, close)) = head
            && buf.len() >= start + length
        {
            let body = buf.get(start..start + length).unwrap_or_default();
            let code = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                .unwrap_or_default();
            return Answer::Response {
                status,
                code,
                close,
            };
        }
        if buf.len() > 1 << 20 {
            return Answer::Closed;
        }
        match tokio::time::timeout_at(deadline, r.read(&mut chunk)).await {
            Err(_) => return Answer::TimedOut,
            Ok(Ok(0)) => return Answer::Closed,
            Ok(Ok(n)) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => return Answer::Reset,
            Ok(Err(_)) => return Answer::Closed,
        }
    }
}

/// The `j`-th flood source address: 127.1.0.0 and up.
pub(super) fn source_ip(j: u64) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 1, 0, 0)).wrapping_add(j as u32))
}

pub(super) async fn connect(shared: &Shared, from: Option<Ipv4Addr>) -> Result<TcpStream, String> {
    let _permit = shared
        .connecting
        .acquire()
        .await
        .map_err(|e| e.to_string())?;
    let socket = match shared.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| e.to_string())?;
    if let (Some(ip), SocketAddr::V4(_)) = (from, shared.addr) {
        socket
            .bind(SocketAddr::new(ip.into(), 0))
            .map_err(|e| format!("bind {ip}: {e}"))?;
    }
    match timeout(CONNECT_TIMEOUT, socket.connect(shared.addr)).await {
        Err(_) => Err(format!(
            "no connection within {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(e.kind().to_string()),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

/// A request body for [`exchange`].
pub(super) enum Body {
    None,
    Bytes(Bytes),
    /// Chunked transfer encoding, `chunk` repeated until `total` bytes.
    Chunked {
        chunk: Bytes,
        total: usize,
    },
}

/// Opens a connection, sends `head` and `body` while reading the answer
/// (a server may answer before the body is sent), and closes.
pub(super) async fn exchange(shared: &Shared, head: String, body: Body) -> Answer {
    let mut s = match connect(shared, None).await {
        Ok(s) => s,
        Err(e) => return Answer::ConnectFailed(e),
    };
    let _open = OpenGuard::new(&shared.open);
    let (mut rd, mut wr) = s.split();
    // A small body goes out with its head, as clients send it, so that
    // the server reads both at once.
    let (head, body) = match body {
        Body::Bytes(b) if b.len() <= 64 << 10 => {
            let mut whole = head.into_bytes();
            whole.extend_from_slice(&b);
            (whole, Body::None)
        }
        other => (head.into_bytes(), other),
    };
    let send = async {
        if wr.write_all(&head).await.is_ok() {
            match body {
                Body::None => {}
                Body::Bytes(b) => {
                    let _ = wr.write_all(&b).await;
                }
                Body::Chunked { chunk, total } => {
                    let mut sent = 0;
                    let size = format!("{:x}\r\n", chunk.len());
                    while sent < total {
                        if wr.write_all(size.as_bytes()).await.is_err()
                            || wr.write_all(&chunk).await.is_err()
                            || wr.write_all(b"\r\n").await.is_err()
                        {
                            break;
                        }
                        sent += chunk.len();
                    }
                    let _ = wr.write_all(b"0\r\n\r\n").await;
                }
            }
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        a = read_answer(&mut rd, ANSWER_TIMEOUT) => a,
        () = send => Answer::Closed,
    }
}
