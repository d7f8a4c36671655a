//! Reading an ingest body within the in-flight byte budget, decoding
//! `Content-Encoding: gzip` and `zstd` on the way.
//!
//! The budget (`ingest_inflight_bytes`) is a semaphore of bytes shared by
//! every ingest request. A request holds an [`Allowance`]: its share,
//! taken as memory is actually allocated for it (the body buffer as it
//! grows, a decoder's state, then its parsed events; see
//! [`crate::ingest::parse_within`]) and kept until its batch is written.
//! A request that alone needs more than the whole budget holds all of it
//! and goes on, so it runs alone.
//!
//! A compressed body is decoded as it arrives, a little at a time, and the
//! limits apply to the decoded bytes: `max_body_bytes` (413 as soon as the
//! decoded size passes it, so a decompression bomb costs at most that much
//! memory and time) and the budget. zstd frames that need a window larger
//! than [`ZSTD_WINDOW_LOG_MAX`] (8 MiB) are refused rather than given the
//! memory. A body that is not what its label says is a 400
//! `invalid_encoding` naming the compressed byte offset.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use bytes::Bytes;
use http_body_util::BodyExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::audit;
use crate::error::{ApiError, ErrorCode};

/// The encodings accepted, for `Accept-Encoding` on a 415.
pub const ACCEPTED_ENCODINGS: &str = "gzip, zstd";

/// The largest zstd window accepted, as a power of two: 8 MiB, what the
/// `zstd` tool uses up to level 19 without `--long`.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// Decoded bytes produced per step, between two checks of the limits.
const STEP: usize = 64 << 10;

/// Compressed bytes given to the gzip decoder per step: deflate expands a
/// byte to at most about 1,032, so a step decodes at most about 1 MiB.
const GZIP_INPUT_STEP: usize = 1 << 10;

/// The memory of a gzip decoder, held against the budget: the 32 KiB
/// window and tables of the inflater, and its 32 KiB output buffer.
const GZIP_STATE_BYTES: usize = 96 << 10;

/// The smallest allocation of the body buffer (it grows by doubling, up to
/// the declared length): a slow sender holds little more than it sent.
const MIN_GROWTH: usize = 4 << 10;

/// How a body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// As it is (no header, or `identity`).
    Identity,
    /// `gzip` (or `x-gzip`): RFC 1952, one member or several.
    Gzip,
    /// `zstd`: RFC 8878, one frame or several.
    Zstd,
}

impl Encoding {
    /// The encoding named by the request's `Content-Encoding`, or the 415
    /// for one that is not accepted.
    pub fn of(headers: &HeaderMap) -> Result<Encoding, ApiError> {
        let mut values = headers.get_all(header::CONTENT_ENCODING).iter();
        let Some(first) = values.next() else {
            return Ok(Encoding::Identity);
        };
        let text = String::from_utf8_lossy(first.as_bytes()).to_ascii_lowercase();
        let listed: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "identity")
            .collect();
        if values.next().is_some() || listed.len() > 1 {
            return Err(unsupported(
                "several encodings were applied (`Content-Encoding` lists more than one); \
                 compress the body once, with gzip or zstd",
            ));
        }
        match listed.first().copied() {
            None => Ok(Encoding::Identity),
            Some("gzip" | "x-gzip") => Ok(Encoding::Gzip),
            Some("zstd") => Ok(Encoding::Zstd),
            Some(other) => Err(unsupported(&format!(
                "`Content-Encoding: {}` is not accepted: send the body uncompressed, or \
                 compressed with gzip or zstd",
                audit::clean(other, 64)
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Zstd => "zstd",
        }
    }
}

fn unsupported(message: &str) -> ApiError {
    ApiError::new(
        ErrorCode::UnsupportedEncoding,
        format!("{message}; nothing was written"),
    )
    .with("accepted", vec!["gzip", "zstd", "identity"])
    .header(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static(ACCEPTED_ENCODINGS),
    )
}

/// A request's share of the in-flight byte budget.
#[derive(Debug)]
pub struct Allowance {
    semaphore: Arc<Semaphore>,
    budget: usize,
    permit: Option<OwnedSemaphorePermit>,
    held: usize,
    wait: Duration,
}

/// The budget stayed used up for the whole wait.
#[derive(Debug)]
pub struct Saturated;

impl Allowance {
    /// An empty share of `semaphore`, whose size is `budget`; each growth
    /// waits at most `wait`.
    pub fn new(semaphore: Arc<Semaphore>, budget: usize, wait: Duration) -> Allowance {
        Allowance {
            semaphore,
            budget,
            permit: None,
            held: 0,
            wait,
        }
    }

    /// The bytes held.
    pub fn held(&self) -> usize {
        self.held
    }

    /// The size of the whole budget.
    pub fn budget(&self) -> usize {
        self.budget
    }

    fn missing(&self, total: usize) -> usize {
        total.min(self.budget).saturating_sub(self.held)
    }

    fn add(&mut self, permit: OwnedSemaphorePermit, n: usize) {
        self.held += n;
        match self.permit.as_mut() {
            Some(p) => p.merge(permit),
            None => self.permit = Some(permit),
        }
    }

    /// Holds at least `total` bytes (the whole budget if `total` is more),
    /// waiting at most the allowance's wait for the rest.
    pub async fn hold(&mut self, total: usize) -> Result<(), Saturated> {
        loop {
            let want = self.missing(total);
            if want == 0 {
                return Ok(());
            }
            let n = u32::try_from(want).unwrap_or(u32::MAX);
            let sem = self.semaphore.clone();
            let permit = match sem.clone().try_acquire_many_owned(n) {
                Ok(p) => p,
                Err(_) => tokio::time::timeout(self.wait, sem.acquire_many_owned(n))
                    .await
                    .map_err(|_| Saturated)?
                    .map_err(|_| Saturated)?,
            };
            self.add(permit, n as usize);
        }
    }

    /// Holds at least `total` bytes if the budget has them free now,
    /// without waiting: `false` (and nothing more held) if it would wait.
    pub fn try_hold(&mut self, total: usize) -> bool {
        let want = self.missing(total);
        if want == 0 {
            return true;
        }
        let Ok(n) = u32::try_from(want) else {
            return false;
        };
        match self.semaphore.clone().try_acquire_many_owned(n) {
            Ok(p) => {
                self.add(p, want);
                true
            }
            Err(_) => false,
        }
    }

    /// [`Allowance::hold`] from a blocking thread (parsing), through the
    /// runtime `handle`.
    pub fn hold_blocking(
        &mut self,
        handle: &tokio::runtime::Handle,
        total: usize,
    ) -> Result<(), Saturated> {
        if self.try_hold(total) {
            return Ok(());
        }
        handle.block_on(self.hold(total))
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// It is larger than `max_body_bytes` (`decoded`: once decoded).
    TooLarge {
        /// The limit was passed by the decoded bytes of a compressed body.
        decoded: Option<Encoding>,
    },
    /// The byte budget stayed used up for `ingest_wait`.
    Saturated,
    /// The body is not what its `Content-Encoding` says.
    Encoding(ApiError),
    /// The connection failed.
    Read(axum::Error),
}

/// A streaming decoder of one body.
enum Decoder {
    Gzip(Box<flate2::write::MultiGzDecoder<Vec<u8>>>),
    Zstd {
        context: zstd::zstd_safe::DCtx<'static>,
        /// The last step ended a frame (and nothing followed yet).
        at_frame_end: bool,
        /// Decoded bytes of the current step.
        out: Vec<u8>,
    },
}

impl Decoder {
    fn new(encoding: Encoding) -> Result<Option<Decoder>, String> {
        match encoding {
            Encoding::Identity => Ok(None),
            Encoding::Gzip => Ok(Some(Decoder::Gzip(Box::new(
                flate2::write::MultiGzDecoder::new(Vec::with_capacity(STEP)),
            )))),
            Encoding::Zstd => {
                let mut context = zstd::zstd_safe::DCtx::try_create()
                    .ok_or_else(|| "cannot create a zstd decoder".to_owned())?;
                context
                    .set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(
                        ZSTD_WINDOW_LOG_MAX,
                    ))
                    .map_err(|code| zstd::zstd_safe::get_error_name(code).to_owned())?;
                Ok(Some(Decoder::Zstd {
                    context,
                    at_frame_end: false,
                    out: Vec::with_capacity(STEP),
                }))
            }
        }
    }

    /// The decoder's own memory, held against the budget.
    fn state_bytes(&self) -> usize {
        match self {
            Decoder::Gzip(_) => GZIP_STATE_BYTES,
            Decoder::Zstd { context, out, .. } => context.sizeof() + out.capacity(),
        }
    }

    /// Decodes a step of `input`: returns the compressed bytes consumed
    /// and the decoded bytes (at most about [`STEP`]).
    fn step(&mut self, input: &[u8]) -> Result<(usize, &[u8]), String> {
        match self {
            Decoder::Gzip(d) => {
                d.get_mut().clear();
                let piece = input.get(..GZIP_INPUT_STEP).unwrap_or(input);
                let n = d.write(piece).map_err(|e| gzip_problem(&e))?;
                if n == 0 && d.get_ref().is_empty() {
                    return Err("the gzip stream does not advance".into());
                }
                Ok((n, d.get_ref().as_slice()))
            }
            Decoder::Zstd {
                context,
                at_frame_end,
                out,
            } => {
                out.clear();
                let mut inb = zstd::zstd_safe::InBuffer::around(input);
                let mut outb = zstd::zstd_safe::OutBuffer::around(out);
                let hint = context
                    .decompress_stream(&mut outb, &mut inb)
                    .map_err(zstd_problem)?;
                let consumed = inb.pos();
                *at_frame_end = hint == 0;
                if consumed == 0 && out.is_empty() {
                    return Err("the zstd stream does not advance".into());
                }
                Ok((consumed, out.as_slice()))
            }
        }
    }

    /// Checks that the stream ended where the body did, and returns the
    /// last decoded bytes (a step's worth at most each call; empty when
    /// done).
    fn finish(&mut self) -> Result<&[u8], String> {
        match self {
            Decoder::Gzip(d) => {
                d.get_mut().clear();
                d.try_finish().map_err(|e| match gzip_problem(&e) {
                    p if p == "corrupt gzip stream does not have a matching checksum" => {
                        "the gzip stream is truncated or its checksum does not match".into()
                    }
                    p => p,
                })?;
                Ok(d.get_ref().as_slice())
            }
            Decoder::Zstd {
                context,
                at_frame_end,
                out,
            } => {
                // Data still buffered in the decoder is flushed by steps
                // with no input.
                out.clear();
                let mut inb = zstd::zstd_safe::InBuffer::around(&[]);
                let mut outb = zstd::zstd_safe::OutBuffer::around(out);
                let hint = context
                    .decompress_stream(&mut outb, &mut inb)
                    .map_err(zstd_problem)?;
                if !out.is_empty() {
                    *at_frame_end = hint == 0;
                    return Ok(out.as_slice());
                }
                if !*at_frame_end {
                    return Err(
                        "the zstd stream is truncated (its last frame is not complete)".into(),
                    );
                }
                Ok(&[])
            }
        }
    }
}

fn gzip_problem(e: &std::io::Error) -> String {
    e.to_string()
}

fn zstd_problem(code: usize) -> String {
    let name = zstd::zstd_safe::get_error_name(code);
    if name.contains("too much memory") {
        format!(
            "{name}: the zstd frame needs a window larger than {} MiB; compress without \
             `--long` (and at level 19 or below)",
            (1u64 << ZSTD_WINDOW_LOG_MAX) >> 20
        )
    } else {
        name.to_owned()
    }
}

/// The body being assembled, its buffer growing within the allowance.
struct Assembly {
    buf: Vec<u8>,
    max_body: usize,
    /// The declared `Content-Length` of an unencoded body: the buffer
    /// never grows past it.
    exact: Option<usize>,
    decoded: Option<Encoding>,
}

impl Assembly {
    /// Appends `data`, growing the buffer (and the allowance first, by the
    /// growth) when it is full.
    async fn push(
        &mut self,
        data: &[u8],
        allowance: &mut Allowance,
        other: usize,
    ) -> Result<(), BodyError> {
        let len = self.buf.len().saturating_add(data.len());
        if len > self.max_body {
            return Err(BodyError::TooLarge {
                decoded: self.decoded,
            });
        }
        let mut cap = self.buf.capacity();
        if len > cap {
            cap = cap
                .saturating_mul(2)
                .max(MIN_GROWTH)
                .max(len)
                .min(self.max_body);
            if let Some(exact) = self.exact
                && len <= exact
            {
                cap = cap.min(exact);
            }
        }
        // The decoder's state may have grown too (a zstd window is
        // allocated at the first frame's header).
        allowance
            .hold(cap.saturating_add(other))
            .await
            .map_err(|_| BodyError::Saturated)?;
        if cap > self.buf.capacity() {
            self.buf.reserve_exact(cap - self.buf.len());
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }
}

/// Reads a request body: decodes it if `encoding` says so, and takes its
/// share of the budget as its buffer grows, so the budget counts what is
/// in memory and a slow sender holds only (at most twice) what it has
/// sent. `declared` is the `Content-Length`.
pub async fn read(
    body: Body,
    encoding: Encoding,
    declared: Option<u64>,
    max_body: u64,
    mut allowance: Allowance,
) -> Result<(Bytes, Allowance), BodyError> {
    let max_body = usize::try_from(max_body).unwrap_or(usize::MAX);
    let mut decoder = Decoder::new(encoding).map_err(|reason| {
        BodyError::Encoding(ApiError::new(
            ErrorCode::Internal,
            format!("{reason}; nothing was written"),
        ))
    })?;
    let mut assembly = Assembly {
        buf: Vec::new(),
        max_body,
        exact: match (&decoder, declared) {
            (None, Some(n)) => usize::try_from(n).ok(),
            _ => None,
        },
        decoded: decoder.is_some().then_some(encoding),
    };
    let mut consumed = 0u64;
    let bad = |offset: u64, reason: String| {
        BodyError::Encoding(
            ApiError::new(
                ErrorCode::InvalidEncoding,
                format!(
                    "the body is labelled `Content-Encoding: {}` but is not valid {} data \
                     ({reason}, at compressed byte {offset}); send it uncompressed without the \
                     header, or compressed whole with that encoding. Nothing was written",
                    encoding.name(),
                    encoding.name()
                ),
            )
            .with("encoding", encoding.name())
            .with("offset", offset),
        )
    };
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(BodyError::Read)?.into_data() else {
            continue;
        };
        let Some(d) = decoder.as_mut() else {
            assembly.push(&data, &mut allowance, 0).await?;
            continue;
        };
        let mut input = &data[..];
        let mut since_yield = 0usize;
        while !input.is_empty() {
            let (n, out) = d.step(input).map_err(|r| bad(consumed, r))?;
            consumed += n as u64;
            input = input.get(n..).unwrap_or_default();
            let out_len = out.len();
            // The decoded bytes live in the decoder until pushed; copy
            // them out (the decoder's buffer is reused).
            let piece = out.to_vec();
            let state = d.state_bytes();
            assembly.push(&piece, &mut allowance, state).await?;
            // Decoding is CPU work on the runtime's threads: let other
            // tasks run every megabyte or so.
            since_yield += out_len + n;
            if since_yield >= 1 << 20 {
                since_yield = 0;
                tokio::task::yield_now().await;
            }
        }
    }
    if let Some(d) = decoder.as_mut() {
        loop {
            let out = d.finish().map_err(|r| bad(consumed, r))?.to_vec();
            if out.is_empty() {
                break;
            }
            let state = d.state_bytes();
            assembly.push(&out, &mut allowance, state).await?;
        }
    }
    drop(decoder);
    Ok((Bytes::from(assembly.buf), allowance))
}

/// The 413 of a body over `max_body_bytes`.
pub fn too_large(max_body: u64, decoded: Option<Encoding>) -> ApiError {
    let what = match decoded {
        Some(e) => format!("the body decodes ({}) to more than", e.name()),
        None => "the body is larger than".to_owned(),
    };
    ApiError::new(
        ErrorCode::BodyTooLarge,
        format!(
            "{what} the limit of {max_body} bytes per request; split the batch, nothing was \
             written"
        ),
    )
    .with("max_body_bytes", max_body)
}
