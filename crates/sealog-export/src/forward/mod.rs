//! Forwarding: every new record matching the filters, sent off-host to a
//! syslog receiver or an HTTP collector, without loss.
//!
//! The forwarder follows the store the way `sealog tail -f` does (a
//! read-only snapshot, re-opened when the segment files change), so it runs
//! beside a server that has the store open for writing. It reads from its
//! cursor, formats up to a batch of records, sends them, and only when the
//! receiver acknowledged the batch (TCP/TLS: written and flushed; HTTP: a
//! 2xx answer) persists the cursor past it. A crash or `kill -9` therefore
//! loses nothing: the restarted forwarder resends from the cursor, at most
//! the batch in flight twice.
//!
//! TCP cannot tell what a receiver read: bytes flushed into a connection
//! whose receiver then restarts may never be processed. So the forwarder
//! remembers the last `resend_window` records it wrote on the current
//! connection, and when the connection fails it moves the cursor back to
//! the first of them and sends them again. Delivery is at-least-once; every
//! line carries its seq so receivers can deduplicate. docs/siem.md states
//! the window.

mod config;
mod cursor;
mod transport;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use sealog::Store;
use sealog::format::merkle::leaf_hash;
use sealog::format::record;
use sealog::query::Query;

pub use config::ForwardConfig;
pub use cursor::{Cursor, default_dir, file_name};
pub use transport::{
    Destination, HttpTransport, SendError, SyslogTransport, TlsOptions, Transport, client_config,
};

use crate::entry::Entry;
use crate::error::ExportError;
use crate::syslog::SyslogOptions;

/// What each forwarded line carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Payload {
    /// The record's JSON (as `sealog export` writes it).
    #[default]
    Json,
    /// The OCSF 1.1 object.
    Ocsf,
    /// The CEF line (syslog destinations only).
    Cef,
}

impl Payload {
    /// Parses `json`, `ocsf` or `cef`.
    pub fn parse(text: &str) -> Result<Payload, ExportError> {
        match text {
            "json" => Ok(Payload::Json),
            "ocsf" => Ok(Payload::Ocsf),
            "cef" => Ok(Payload::Cef),
            _ => Err(ExportError::config(
                format!("`{text}` is not a forwarding format"),
                "give json, ocsf or cef",
            )),
        }
    }
}

/// Where a first run starts (a cursor, once written, always wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Start {
    /// At seq 0: everything in the store.
    #[default]
    Beginning,
    /// At the end of the log when the forwarder starts: new records only.
    End,
    /// At this seq.
    Seq(u64),
}

impl Start {
    /// Parses `beginning`, `end` or a seq.
    pub fn parse(text: &str) -> Result<Start, ExportError> {
        match text {
            "beginning" => Ok(Start::Beginning),
            "end" => Ok(Start::End),
            _ => text.parse().map(Start::Seq).map_err(|_| {
                ExportError::config(
                    format!("`{text}` is not a start: give beginning, end or a seq"),
                    "e.g. --start end to forward only new records, --start 4471 to begin at \
                     that seq",
                )
            }),
        }
    }
}

/// Everything a forwarder needs.
#[derive(Clone, Debug)]
pub struct ForwardOptions {
    /// The receiver.
    pub destination: Destination,
    /// What each line carries.
    pub payload: Payload,
    /// The syslog header fields.
    pub syslog: SyslogOptions,
    /// TLS settings.
    pub tls: TlsOptions,
    /// Extra HTTP headers.
    pub headers: Vec<(String, String)>,
    /// The records to forward (order, limit and cursor are ignored). A
    /// record that does not match is skipped, and the cursor moves past it.
    pub filter: Query,
    /// The cursor file.
    pub cursor: PathBuf,
    /// Where a first run starts.
    pub start: Start,
    /// Most lines per batch.
    pub batch_lines: usize,
    /// Most bytes per batch (a single larger line still goes alone).
    pub batch_bytes: usize,
    /// How often to look for new records when caught up.
    pub poll: Duration,
    /// Records written on a stream connection that are sent again when it
    /// fails (see the module docs).
    pub resend_window: u64,
    /// Connect, write and HTTP timeouts.
    pub timeout: Duration,
    /// Stop once every record present is forwarded (instead of following).
    pub until_caught_up: bool,
}

impl ForwardOptions {
    /// Options for `destination` with the defaults, the cursor in
    /// `<data_dir>/forward/`.
    pub fn new(destination: Destination, data_dir: &Path) -> ForwardOptions {
        let cursor = default_dir(data_dir).join(file_name(&destination.name()));
        ForwardOptions {
            destination,
            payload: Payload::Json,
            syslog: SyslogOptions::default(),
            tls: TlsOptions::default(),
            headers: Vec::new(),
            filter: Query::default(),
            cursor,
            start: Start::Beginning,
            batch_lines: 1000,
            batch_bytes: 4 << 20,
            poll: Duration::from_millis(500),
            resend_window: DEFAULT_RESEND_WINDOW,
            timeout: Duration::from_secs(30),
            until_caught_up: false,
        }
    }

    /// Checks that the options go together.
    pub fn validate(&self) -> Result<(), ExportError> {
        if self.payload == Payload::Cef && !self.destination.is_syslog() {
            return Err(ExportError::config(
                "CEF lines go to syslog receivers, not to an HTTP collector",
                "use --format json or ocsf with an https:// destination, or a syslog+tls:// one \
                 for CEF",
            ));
        }
        if self.batch_lines == 0 {
            return Err(ExportError::config(
                "the batch size is 0",
                "give --batch 1 or more",
            ));
        }
        Ok(())
    }
}

/// The default resend window: what a receiver's and the sender's socket
/// buffers hold at most of ~1 KiB lines, with room to spare.
pub const DEFAULT_RESEND_WINDOW: u64 = 10_000;

/// What the forwarder reports as it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Where it starts.
    Started {
        /// The first seq it sends.
        next: u64,
        /// Whether a saved cursor decided it.
        resumed: bool,
    },
    /// A batch was acknowledged.
    Sent {
        /// Lines in it.
        lines: u64,
        /// The cursor now.
        next: u64,
    },
    /// A send failed; it retries after `retry_in`.
    Failed {
        /// What happened.
        message: String,
        /// The wait before the next try.
        retry_in: Duration,
        /// The cursor it resends from.
        next: u64,
    },
    /// Reading the store failed for a moment (a segment being sealed);
    /// it tries again.
    StoreBusy {
        /// What happened.
        message: String,
    },
}

/// Totals of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Lines acknowledged by the receiver (resends included).
    pub lines: u64,
    /// Batches acknowledged.
    pub batches: u64,
    /// Failed sends.
    pub failures: u64,
    /// The cursor at the end.
    pub next: u64,
}

/// The JSON of a record as forwarded and exported.
fn payload_line(entry: &Entry, payload: Payload) -> String {
    match payload {
        Payload::Json => crate::record_json(&entry.record),
        Payload::Ocsf => crate::ocsf::line(entry),
        Payload::Cef => crate::cef::line(entry),
    }
}

/// Follows a store read-only (see `sealog tail`): a snapshot re-opened when
/// the segment files change.
struct Follower {
    dir: PathBuf,
    store: Store,
    signature: Vec<(String, u64, Option<SystemTime>)>,
}

fn signature(dir: &Path) -> Vec<(String, u64, Option<SystemTime>)> {
    let mut entries = Vec::new();
    if let Ok(read) = std::fs::read_dir(dir.join("segments")) {
        for entry in read.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".seg") {
                continue;
            }
            let (len, modified) = entry
                .metadata()
                .map(|m| (m.len(), m.modified().ok()))
                .unwrap_or((0, None));
            entries.push((name, len, modified));
        }
    }
    entries.sort();
    entries
}

impl Follower {
    fn open(dir: &Path) -> Result<Follower, sealog::Error> {
        let signature = signature(dir);
        let store = Store::open_read_only(dir)?;
        Ok(Follower {
            dir: dir.to_owned(),
            store,
            signature,
        })
    }

    /// Waits up to `poll` for records past `after`; returns the count
    /// visible. A failed re-open keeps the old snapshot (a segment being
    /// sealed at that moment); its error is returned for the log.
    fn wait(&mut self, after: u64, poll: Duration) -> (u64, Option<sealog::Error>) {
        let visible = self.store.wait_for_records(after, poll);
        if visible > after {
            return (visible, None);
        }
        let now = signature(&self.dir);
        if now == self.signature {
            return (visible, None);
        }
        match Store::open_read_only(&self.dir) {
            Ok(store) => {
                self.store = store;
                self.signature = now;
                (self.store.len(), None)
            }
            Err(e) => (visible, Some(e)),
        }
    }
}

/// A batch being built.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    lines: usize,
    /// The seq after the last record looked at (matching or not).
    end: u64,
}

/// Sends what it has as it goes, until `stop` is set (or, with
/// `until_caught_up`, the log's end is reached). Store errors end the run;
/// send failures are retried with backoff (100 ms doubling to 30 s) for as
/// long as it takes.
pub fn run(
    data_dir: &Path,
    options: &ForwardOptions,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Summary, ExportError> {
    options.validate()?;
    let mut transport: Box<dyn Transport> = match &options.destination {
        Destination::Http { url } => Box::new(HttpTransport::new(
            url,
            &options.headers,
            &options.tls,
            options.timeout,
        )?),
        other => Box::new(SyslogTransport::new(other, &options.tls, options.timeout)?),
    };
    run_with(data_dir, options, transport.as_mut(), stop, progress)
}

/// [`run`] over a given transport.
pub fn run_with(
    data_dir: &Path,
    options: &ForwardOptions,
    transport: &mut dyn Transport,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Summary, ExportError> {
    let mut follower =
        Follower::open(data_dir).map_err(|source| ExportError::Read { seq: 0, source })?;
    let store_id = hex::encode(follower.store.store_id());
    let (mut cursor, saved) =
        Cursor::open(&options.cursor, &store_id, &options.destination.to_string())?;
    let len = follower.store.len();
    let mut next = match (saved, options.start) {
        (Some(next), _) => next,
        (None, Start::Beginning) => 0,
        (None, Start::End) => len,
        (None, Start::Seq(seq)) => seq.min(len),
    };
    if next > len {
        return Err(ExportError::CursorAhead {
            path: options.cursor.clone(),
            cursor: next,
            len,
        });
    }
    cursor.save(next)?;
    progress(&Progress::Started {
        next,
        resumed: saved.is_some(),
    });
    let mut summary = Summary {
        next,
        ..Summary::default()
    };
    // (first seq, end seq, lines) of the batches written on this
    // connection, newest last, at most `resend_window` lines in all.
    let mut unconfirmed: VecDeque<(u64, u64, u64)> = VecDeque::new();
    let mut unconfirmed_lines = 0u64;
    let mut backoff = Duration::from_millis(100);
    let mut visible = len;
    while !stop.load(Ordering::Relaxed) {
        if next >= visible {
            if options.until_caught_up {
                break;
            }
            let (now, error) = follower.wait(next, options.poll);
            if let Some(e) = error {
                progress(&Progress::StoreBusy {
                    message: e.to_string(),
                });
            }
            visible = now;
            continue;
        }
        let batch = build_batch(&follower.store, options, next, visible)?;
        if batch.lines == 0 {
            next = batch.end;
            cursor.save(next)?;
            summary.next = next;
            continue;
        }
        match transport.send(&batch.bytes, batch.lines) {
            Ok(()) => {
                if transport.take_reconnected() {
                    unconfirmed.clear();
                    unconfirmed_lines = 0;
                }
                if options.destination.is_syslog() && options.resend_window > 0 {
                    unconfirmed.push_back((next, batch.end, batch.lines as u64));
                    unconfirmed_lines += batch.lines as u64;
                    while unconfirmed_lines > options.resend_window {
                        match unconfirmed.pop_front() {
                            Some((_, _, lines)) => unconfirmed_lines -= lines,
                            None => break,
                        }
                    }
                }
                next = batch.end;
                cursor.save(next)?;
                summary.lines += batch.lines as u64;
                summary.batches += 1;
                summary.next = next;
                backoff = Duration::from_millis(100);
                progress(&Progress::Sent {
                    lines: batch.lines as u64,
                    next,
                });
            }
            Err(e) => {
                transport.disconnect();
                summary.failures += 1;
                // What was written on the lost connection may not have been
                // read: send it again.
                if let Some(&(first, _, _)) = unconfirmed.front() {
                    next = next.min(first);
                }
                unconfirmed.clear();
                unconfirmed_lines = 0;
                cursor.save(next)?;
                summary.next = next;
                progress(&Progress::Failed {
                    message: e.message,
                    retry_in: backoff,
                    next,
                });
                sleep_unless_stopped(backoff, stop);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    Ok(summary)
}

fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let until = Instant::now() + total;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= until {
            break;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

/// Formats the records from `from` (before `to`) that match the filter,
/// up to a batch.
fn build_batch(
    store: &Store,
    options: &ForwardOptions,
    from: u64,
    to: u64,
) -> Result<Batch, ExportError> {
    let mut batch = Batch {
        end: from,
        ..Batch::default()
    };
    // Records looked at per batch, matching or not, so a filter that
    // matches little still moves the cursor in bounded steps.
    let scan_limit = options.batch_lines.saturating_mul(16).max(1024) as u64;
    let mut seq = from;
    while seq < to && seq - from < scan_limit {
        let bytes = match store.get_raw(seq) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(ExportError::Vanished { seq }),
            Err(source) => return Err(ExportError::Read { seq, source }),
        };
        let view = match record::decode(&bytes) {
            Ok(view) => view,
            Err(_) => {
                return Err(match store.get(seq) {
                    Err(source) => ExportError::Read { seq, source },
                    Ok(_) => ExportError::Undecodable { seq },
                });
            }
        };
        if options.filter.matches(&view) {
            let record = view
                .to_record()
                .map_err(|_| ExportError::Undecodable { seq })?;
            let entry = Entry {
                record,
                leaf: leaf_hash(&bytes),
            };
            let line = match options.destination {
                Destination::Http { .. } => payload_line(&entry, options.payload),
                _ => crate::syslog::line_with_message(
                    &entry,
                    &options.syslog,
                    &payload_line(&entry, options.payload),
                ),
            };
            if batch.lines > 0 && batch.bytes.len() + line.len() > options.batch_bytes {
                break;
            }
            if options.destination.is_syslog() {
                crate::syslog::frame(&line, &mut batch.bytes);
            } else {
                batch.bytes.extend_from_slice(line.as_bytes());
                batch.bytes.push(b'\n');
            }
            batch.lines += 1;
        }
        seq += 1;
        batch.end = seq;
        if batch.lines >= options.batch_lines {
            break;
        }
    }
    Ok(batch)
}
