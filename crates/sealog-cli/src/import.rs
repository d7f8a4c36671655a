//! `sealog import`: NDJSON events, appended durably in batches.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sealog::Store;
use sealog::format::validate::REDACTED;
use sealog::format::{Event, SecretGuard, ValidationError, Validator};

use crate::common::{
    Global, Out, PrivacyArgs, SecretsArg, field_and_reason, rate, stderr_is_terminal, thousands,
};
use crate::error::CliError;

const AFTER_HELP: &str = "\
Input: one JSON event per line (the shape `sealog append --json` takes).
Blank lines are skipped. Lines that are exported records, i.e. that carry
`seq` and `recorded_at` (the output of `sealog export` or
`sealog query --format ndjson`), are accepted: those two fields are dropped,
because the store assigns its own seq and recorded time; the event itself
is kept as it was, and so is its event time: an exported event without a
`time` (its event time was its recorded time, as for the server's own audit
events) gets its `recorded_at` as `time`.

Each batch is appended atomically and durably. A bad line stops the import
(exit 2) naming its line number and the field; nothing of the batch holding
that line is written, the batches before it are. With --skip-invalid, bad
lines go to a rejects file instead (mode 0600, secret values redacted) and
the import continues. A failed write (a full disk, an I/O error) stops the
import (exit 1) saying which lines are in the log, with their seqs, and how
to import the rest.

Examples:
  sealog import events.ndjson
  sealog export --data-dir old-store | sealog import --data-dir new-store -
  sealog import --batch 5000 --skip-invalid --rejects bad.ndjson events.ndjson";

/// Import events from an NDJSON file (or standard input), durably, in
/// batches.
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct ImportArgs {
    /// The NDJSON file to import; `-` reads standard input.
    ///
    /// Example: sealog import events.ndjson   or   cat events.ndjson | sealog import -
    #[arg(value_name = "FILE|-")]
    file: String,

    /// Events per batch: each batch is appended atomically and made durable
    /// with one sync.
    ///
    /// Example: --batch 5000
    #[arg(long, default_value_t = 1000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    batch: u64,

    /// Do not stop at a bad line: write it, with its line number and the
    /// reason, to the rejects file, and go on.
    ///
    /// Example: --skip-invalid
    #[arg(long)]
    skip_invalid: bool,

    /// Where --skip-invalid writes rejected lines (NDJSON: line, field,
    /// reason, input). Default: FILE.rejects.ndjson, or
    /// import.rejects.ndjson when reading standard input. Created only if a
    /// line is rejected, with mode 0600; an existing file is replaced.
    /// Values under secret-looking keys are written as "[REDACTED]".
    ///
    /// Example: --rejects /tmp/rejected.ndjson
    #[arg(long, value_name = "PATH", requires = "skip_invalid")]
    rejects: Option<PathBuf>,

    #[command(flatten)]
    secrets: SecretsArg,

    #[command(flatten)]
    privacy: PrivacyArgs,
}

/// A line that could not be imported.
struct BadLine {
    field: String,
    reason: String,
    /// Refused by the secret guard.
    secret: bool,
}

impl From<ValidationError> for BadLine {
    fn from(e: ValidationError) -> Self {
        let secret = matches!(
            e.kind(),
            sealog::format::validate::ValidationErrorKind::SecretKey { .. }
        );
        let (field, reason) = field_and_reason(&e);
        BadLine {
            field,
            reason,
            secret,
        }
    }
}

/// Parses one line into an event. Of an exported record, the `seq` and
/// `recorded_at` are dropped, and the recorded time becomes the event's
/// `time` if it had none (that was its event time).
fn parse_line(line: &[u8], validator: &Validator) -> Result<Event, BadLine> {
    // Parsed from the text (not through a `serde_json::Value`, which would
    // merge a repeated metadata key instead of refusing it).
    let (mut event, seq, recorded_at) = Event::from_record_json(line)?;
    match (seq, recorded_at) {
        (None, None) => {}
        (Some(_), Some(recorded_at)) => {
            event.time.get_or_insert(recorded_at);
        }
        (Some(_), None) | (None, Some(_)) => {
            let (given, missing) = if seq.is_some() {
                ("seq", "recorded_at")
            } else {
                ("recorded_at", "seq")
            };
            return Err(BadLine {
                field: given.into(),
                reason: format!(
                    "belongs to an exported record, which carries both `seq` and \
                     `recorded_at`; this line has no `{missing}`: remove `{given}`, or import \
                     the record as exported"
                ),
                secret: false,
            });
        }
    }
    validator.validate(&mut event)?;
    Ok(event)
}

/// Where rejected lines go.
///
/// The file holds what was refused, which may be exactly what the secret
/// guard keeps out of the log: it is made anew with mode 0600 (an existing
/// file is removed first, so neither its contents nor its permissions carry
/// over), and every value under a secret-looking key is replaced by
/// `"[REDACTED]"` before the line is written.
struct Rejects {
    path: PathBuf,
    file: Option<io::BufWriter<File>>,
    count: u64,
    validator: Validator,
}

impl Rejects {
    fn write(&mut self, line_no: u64, bad: &BadLine, text: &[u8]) -> Result<(), CliError> {
        let err = |source| CliError::Write {
            op: "write rejected lines to",
            path: self.path.clone(),
            source,
        };
        if self.file.is_none() {
            self.file = Some(io::BufWriter::new(create_private(&self.path)?));
        }
        let entry = serde_json::json!({
            "line": line_no,
            "field": bad.field,
            "reason": bad.reason,
            "input": redacted_input(text, &self.validator.secrets),
        });
        if let Some(file) = &mut self.file {
            serde_json::to_writer(&mut *file, &entry).map_err(|e| err(io::Error::other(e)))?;
            file.write_all(b"\n").map_err(err)?;
        }
        self.count += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), CliError> {
        if let Some(file) = &mut self.file {
            file.flush().map_err(|source| CliError::Write {
                op: "write rejected lines to",
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// Creates `path` anew, readable by its owner only: an existing file is
/// removed first, and the new one is created exclusively with mode 0600
/// (so a file or link put there meanwhile is an error, not written to).
fn create_private(path: &Path) -> Result<File, CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(CliError::Write {
                op: "replace the rejects file",
                path: path.to_path_buf(),
                source,
            });
        }
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| CliError::Write {
            op: "create the rejects file",
            path: path.to_path_buf(),
            source,
        })
}

/// A rejected line as the rejects file keeps it: if it is JSON, with the
/// value of every secret-looking key (at any depth, anywhere in the event)
/// replaced by `"[REDACTED]"`; if it is not JSON and mentions a guarded
/// word, withheld whole, since where its secret ends cannot be told.
fn redacted_input(text: &[u8], guard: &SecretGuard) -> String {
    match serde_json::from_slice::<serde_json::Value>(text) {
        Ok(mut value) => {
            if redact_value(&mut value, guard) {
                value.to_string()
            } else {
                String::from_utf8_lossy(text).into_owned()
            }
        }
        Err(_) => {
            let lossy = String::from_utf8_lossy(text);
            match guard.matches(&lossy) {
                Some(pattern) => format!(
                    "{REDACTED} (the line is not valid JSON and mentions `{pattern}`: it is \
                     withheld; see the input itself at this line number)"
                ),
                None => lossy.into_owned(),
            }
        }
    }
}

/// Replaces the value of every key the guard matches; true if one was.
fn redact_value(value: &mut serde_json::Value, guard: &SecretGuard) -> bool {
    match value {
        serde_json::Value::Object(map) => {
            let mut any = false;
            for (key, inner) in map.iter_mut() {
                if guard.matches(key).is_some() {
                    *inner = serde_json::Value::String(REDACTED.to_owned());
                    any = true;
                } else {
                    any |= redact_value(inner, guard);
                }
            }
            any
        }
        serde_json::Value::Array(items) => items
            .iter_mut()
            .fold(false, |any, item| redact_value(item, guard) | any),
        _ => false,
    }
}

/// Progress and totals.
struct Progress {
    bar: Option<ProgressBar>,
    events: u64,
    batches: u64,
    /// The last line of the last batch written.
    last_written_line: u64,
    /// The seqs the store gave the first and the last event written.
    seqs: Option<(u64, u64)>,
}

impl Progress {
    /// Counts an acknowledged append of the events of `lines`.
    fn written(&mut self, lines: &[u64], receipts: &[sealog::Receipt]) {
        self.events += receipts.len() as u64;
        self.last_written_line = lines.last().copied().unwrap_or(self.last_written_line);
        if let (Some(first), Some(last)) = (receipts.first(), receipts.last()) {
            self.seqs = Some((self.seqs.map_or(first.seq, |(a, _)| a), last.seq));
        }
    }
}

fn default_rejects_path(file: &str) -> PathBuf {
    if file == "-" {
        PathBuf::from("import.rejects.ndjson")
    } else {
        PathBuf::from(format!("{file}.rejects.ndjson"))
    }
}

pub fn run(global: &Global, args: ImportArgs) -> Result<(), CliError> {
    let (name, total_bytes, reader): (String, Option<u64>, Box<dyn Read>) = if args.file == "-" {
        ("stdin".into(), None, Box::new(io::stdin().lock()))
    } else {
        let path = Path::new(&args.file);
        let read_error = |source| CliError::ReadInput {
            what: "import file",
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(read_error)?;
        let len = file.metadata().map_err(read_error)?.len();
        (args.file.clone(), Some(len), Box::new(file))
    };
    let validator = args.secrets.validator();
    let privacy = args.privacy.policy()?;
    let store = global.open_for_writing(validator.clone(), privacy)?;
    let dir = &global.data_dir;
    let bar = stderr_is_terminal().then(|| progress_bar(total_bytes));
    let mut import = Import {
        store: &store,
        start_len: store.len(),
        dir,
        name,
        file: args.file.clone(),
        validator: validator.clone(),
        batch_size: usize::try_from(args.batch).unwrap_or(usize::MAX),
        skip_invalid: args.skip_invalid,
        rejects: Rejects {
            path: args
                .rejects
                .clone()
                .unwrap_or_else(|| default_rejects_path(&args.file)),
            file: None,
            count: 0,
            validator,
        },
        progress: Progress {
            bar,
            events: 0,
            batches: 0,
            last_written_line: 0,
            seqs: None,
        },
    };
    let started = Instant::now();
    let result = import.lines(reader);
    finish_bar(&import.progress);
    let finished = result.and_then(|()| import.rejects.finish());
    let Import {
        name,
        rejects,
        progress,
        ..
    } = import;
    // Close in every case: a writer with a signing key signs a checkpoint
    // of what it wrote as it closes. A failure to write already reported
    // its own error; the close then reports the same latched cause.
    let closed = store
        .close()
        .map_err(|e| CliError::store("closing the store", dir, e));
    finished?;
    closed?;
    let secs = started.elapsed().as_secs_f64();
    let mut out = Out::new();
    out.line(&format!(
        "imported {} events from {} in {} batches, {secs:.2} s, {:.0} events/s",
        thousands(progress.events),
        name,
        thousands(progress.batches),
        rate(progress.events as f64, secs)
    ))?;
    if rejects.count > 0 {
        out.line(&format!(
            "rejected {} lines, written with their line numbers and reasons to {}",
            thousands(rejects.count),
            rejects.path.display()
        ))?;
    }
    out.flush()
}

/// One import: the store, the input's name, what was written so far.
struct Import<'a> {
    store: &'a Store,
    /// The records the store held when this import began.
    start_len: u64,
    dir: &'a Path,
    /// The input as messages name it (`stdin` or the file name).
    name: String,
    /// The input as given (`-` for standard input).
    file: String,
    validator: Validator,
    batch_size: usize,
    skip_invalid: bool,
    rejects: Rejects,
    progress: Progress,
}

impl Import<'_> {
    /// Reads every line of `reader` and appends the events in batches.
    fn lines(&mut self, reader: impl Read) -> Result<(), CliError> {
        let mut reader = BufReader::with_capacity(1 << 20, reader);
        let capacity = self.batch_size.min(100_000);
        let mut batch: Vec<Event> = Vec::with_capacity(capacity);
        let mut batch_lines: Vec<u64> = Vec::with_capacity(capacity);
        let mut line = Vec::with_capacity(4096);
        let mut line_no = 0u64;
        let mut bytes_read = 0u64;
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|source| CliError::ReadInput {
                    what: "import input",
                    path: PathBuf::from(&self.name),
                    source,
                })?;
            if n == 0 {
                break;
            }
            bytes_read += n as u64;
            line_no += 1;
            let text = trim_line(&line);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match parse_line(text, &self.validator) {
                Ok(event) => {
                    batch.push(event);
                    batch_lines.push(line_no);
                }
                Err(bad) if self.skip_invalid => self.rejects.write(line_no, &bad, text)?,
                Err(bad) => return Err(self.stopped(line_no, bad)),
            }
            if batch.len() >= self.batch_size {
                self.write_batch(&mut batch, &mut batch_lines)?;
                if let Some(bar) = &self.progress.bar {
                    bar.set_position(bytes_read);
                    bar.set_message(format!("{} events", thousands(self.progress.events)));
                }
            }
        }
        if !batch.is_empty() {
            self.write_batch(&mut batch, &mut batch_lines)?;
        }
        Ok(())
    }

    /// How to import the input from line `from` on.
    fn resume_from(&self, from: u64) -> String {
        if self.file == "-" {
            format!("the input from line {from} on")
        } else {
            format!("tail -n +{from} {} | sealog import -", self.file)
        }
    }

    /// What is in the log: `lines 1-N (E events, seqs A-B)`.
    fn written_so_far(&self) -> String {
        let p = &self.progress;
        let seqs = p
            .seqs
            .map(|(a, b)| format!(", seqs {}-{}", thousands(a), thousands(b)))
            .unwrap_or_default();
        format!(
            "lines 1-{} are in the log ({} events{seqs})",
            thousands(p.last_written_line),
            thousands(p.events)
        )
    }

    /// The error for a bad line when not skipping.
    fn stopped(&self, line_no: u64, bad: BadLine) -> CliError {
        let p = &self.progress;
        let resume = p.last_written_line + 1;
        let secret = if bad.secret {
            " (to store such events with the value replaced by \"[REDACTED]\", pass --secrets \
             redact)"
        } else {
            ""
        };
        let hint = if p.events == 0 {
            format!("nothing was imported; fix the line{secret} and run the import again")
        } else {
            let rest = match self.file.as_str() {
                "-" => self.resume_from(resume),
                _ => format!("the rest with: {}", self.resume_from(resume)),
            };
            format!(
                "{} events (lines 1-{}) were imported in {} batches; nothing from line {resume} \
                 on was written. Fix line {line_no}{secret}, then import {rest}; or use \
                 --skip-invalid",
                thousands(p.events),
                p.last_written_line,
                p.batches,
            )
        };
        CliError::InvalidEvent {
            input: self.name.clone(),
            line: Some(line_no),
            field: bad.field,
            reason: bad.reason,
            hint,
        }
    }

    /// The error for a failed write (a full disk, an I/O error): what is in
    /// the log, what may be, and where to resume.
    fn write_failed(&self, lines: &[u64], error: sealog::Error) -> CliError {
        let first = lines
            .first()
            .copied()
            .unwrap_or(self.progress.last_written_line + 1);
        let last = lines.last().copied().unwrap_or(first);
        let done = if self.progress.events == 0 {
            "nothing from this input is in the log".to_owned()
        } else {
            self.written_so_far()
        };
        let full = error.io_kind() == Some(io::ErrorKind::StorageFull);
        let cause = if full {
            "Free space on the store's disk (or use a smaller --segment-size)"
        } else {
            "Fix the cause above"
        };
        let hint = if matches!(error, sealog::Error::Unacknowledged { .. }) {
            let without = self.start_len + self.progress.events;
            let with = without + lines.len() as u64;
            format!(
                "{done}. Lines {}-{}, the batch being written, were not acknowledged: they are \
                 in the log all or none; nothing after line {} was written. {cause}, then \
                 count the events (sealog query --count): {} means the batch is not in the \
                 log, resume with {}; {} means it is, resume with {}",
                thousands(first),
                thousands(last),
                thousands(last),
                thousands(without),
                self.resume_from(first),
                thousands(with),
                self.resume_from(last + 1),
            )
        } else {
            format!(
                "{done}; nothing from line {} on was written. {cause}, then import the rest: \
                 {}",
                thousands(first),
                self.resume_from(first)
            )
        };
        CliError::Interrupted {
            op: "append",
            input: self.name.clone(),
            line: first,
            dir: self.dir.to_path_buf(),
            source: Box::new(error),
            hint,
        }
    }

    fn write_batch(
        &mut self,
        batch: &mut Vec<Event>,
        lines: &mut Vec<u64>,
    ) -> Result<(), CliError> {
        self.append_split(batch, lines)?;
        self.progress.batches += 1;
        batch.clear();
        lines.clear();
        Ok(())
    }

    /// Appends `events`; a batch too large for one append is split in
    /// halves. Progress counts each append that was acknowledged.
    fn append_split(&mut self, events: &[Event], lines: &[u64]) -> Result<(), CliError> {
        match self.store.append_batch(events) {
            Ok(receipts) => {
                self.progress.written(lines, &receipts);
                Ok(())
            }
            Err(sealog::Error::BatchTooLarge { .. }) if events.len() > 1 => {
                let mid = events.len() / 2;
                let (a, b) = events.split_at(mid);
                let (la, lb) = lines.split_at(mid);
                self.append_split(a, la)?;
                self.append_split(b, lb)
            }
            Err(sealog::Error::InvalidBatch(errors)) => {
                let first = errors.first();
                let line = first.and_then(|e| lines.get(e.index)).copied();
                Err(CliError::InvalidEvent {
                    input: self.name.clone(),
                    line,
                    field: first
                        .map(|e| e.error.field().to_owned())
                        .unwrap_or_default(),
                    reason: first.map(|e| e.error.reason()).unwrap_or_default(),
                    hint: "nothing of this batch was written; fix the line and import again".into(),
                })
            }
            Err(e) if e.io_kind().is_some() || e.is_write_refusal() => {
                Err(self.write_failed(lines, e))
            }
            Err(e) => Err(CliError::store("append", self.dir, e)),
        }
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn progress_bar(total: Option<u64>) -> ProgressBar {
    let bar = match total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{spinner} importing [{bar:30}] {bytes}/{total_bytes} {msg} ({elapsed}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} importing {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn finish_bar(progress: &Progress) {
    if let Some(bar) = &progress.bar {
        bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_records_lose_seq_and_recorded_at() {
        let v = Validator::default();
        let line = br#"{"seq":7,"recorded_at":"2026-01-01T00:00:00Z","time":"2025-12-31T23:00:00Z","actor":{"type":"user","id":"a"},"action":"x.y","resource":{"type":"r"},"outcome":"success"}"#;
        let e = parse_line(line, &v).ok().map(|e| e.time);
        assert!(e.is_some_and(|t| t.is_some()));
        let only_seq = br#"{"seq":7,"actor":{"type":"user","id":"a"},"action":"x.y","resource":{"type":"r"},"outcome":"success"}"#;
        let err = parse_line(only_seq, &v).err().map(|b| b.reason);
        assert!(err.is_some_and(|r| r.contains("seq")));
    }

    #[test]
    fn an_exported_record_without_time_keeps_its_event_time() {
        let v = Validator::default();
        let line = br#"{"seq":7,"recorded_at":"2026-01-01T00:00:00Z","actor":{"type":"system","id":"sealog-server"},"action":"log.query","resource":{"type":"log"},"outcome":"success"}"#;
        let time = parse_line(line, &v).ok().and_then(|e| e.time);
        assert_eq!(
            time.map(sealog::Timestamp::to_rfc3339).as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
    }

    #[test]
    fn a_repeated_metadata_key_in_an_exported_record_is_refused() {
        let v = Validator::default();
        let line = br#"{"seq":7,"recorded_at":"2026-01-01T00:00:00Z","actor":{"type":"user","id":"a"},"action":"x.y","resource":{"type":"r"},"outcome":"success","metadata":{"role":"user","role":"admin"}}"#;
        let bad = parse_line(line, &v).err().map(|b| b.field);
        assert_eq!(bad.as_deref(), Some("metadata.role"));
    }

    #[test]
    fn bad_lines_name_the_field() {
        let v = Validator::default();
        let line = br#"{"actor":{"type":"user","id":""},"action":"x.y","resource":{"type":"r"},"outcome":"success"}"#;
        let bad = parse_line(line, &v).err().map(|b| b.field);
        assert_eq!(bad.as_deref(), Some("actor.id"));
    }
}

#[cfg(test)]
mod disk_full {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

    use std::sync::Arc;

    use sealog::fault::{Fault, FaultFs, Op};
    use sealog::{Preallocation, StoreOptions};

    use super::*;
    use crate::error::Report;

    fn line(i: u64) -> String {
        format!(
            r#"{{"actor":{{"type":"user","id":"u{i}"}},"action":"customer.read","resource":{{"type":"customer","id":"c{i}"}},"outcome":"success","request_id":"line-{i}","reason":"{}"}}"#,
            "r".repeat(200)
        )
    }

    fn import<'a>(store: &'a Store, dir: &'a Path) -> Import<'a> {
        Import {
            store,
            start_len: store.len(),
            dir,
            name: "events.ndjson".into(),
            file: "events.ndjson".into(),
            validator: Validator::default(),
            batch_size: 50,
            skip_invalid: false,
            rejects: Rejects {
                path: dir.join("rejects"),
                file: None,
                count: 0,
                validator: Validator::default(),
            },
            progress: Progress {
                bar: None,
                events: 0,
                batches: 0,
                last_written_line: 0,
                seqs: None,
            },
        }
    }

    #[test]
    fn a_full_disk_stops_the_import_saying_which_lines_are_in_the_log_and_how_to_resume() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let fs = Arc::new(FaultFs::new());
        let options = StoreOptions {
            fs: fs.clone(),
            segment_size: 64 << 10,
            preallocation: Preallocation::Allocate,
            ..StoreOptions::default()
        };
        let store = Store::open(&dir, options).unwrap();
        // One record from before: the import's seqs start at 1.
        store
            .append_batch([parse_line(line(0).as_bytes(), &Validator::default())
                .ok()
                .unwrap()])
            .unwrap();
        // The disk is full when the import needs its second segment.
        fs.fail_always(Op::Allocate, Some(".seg.tmp"), 0, Fault::NoSpace);
        let input: String = (1..=2000).map(|i| line(i) + "\n").collect();
        let mut run = import(&store, &dir);
        let err = run.lines(input.as_bytes()).unwrap_err();
        let (events, written) = (run.progress.events, run.progress.last_written_line);
        assert!(events > 0 && events < 2000, "{events}");
        assert_eq!(events, written, "one event per line");
        assert_eq!(err.exit_code(), crate::error::EXIT_FAILED);
        let report = Report(&err).to_string();
        let next = written + 1;
        for part in [
            format!("append failed at events.ndjson line {}", thousands(next)),
            "No space left on device".to_owned(),
            format!(
                "lines 1-{} are in the log ({} events, seqs 1-{})",
                thousands(written),
                thousands(events),
                thousands(events)
            ),
            format!(
                "Lines {}-{}, the batch being written",
                thousands(next),
                thousands(next + 49)
            ),
            "Free space on the store's disk (or use a smaller --segment-size)".to_owned(),
            format!(
                "{} means the batch is not in the log, resume with tail -n +{next} \
                 events.ndjson | sealog import -",
                thousands(1 + events)
            ),
            format!(
                "resume with tail -n +{} events.ndjson | sealog import -",
                next + 50
            ),
        ] {
            assert!(report.contains(&part), "`{part}` missing from:\n{report}");
        }
        drop(run);
        assert!(store.close().is_err(), "the store latched");

        // What the message says is what a healthy reopen finds: lines
        // 1..=written, in order, and not the failed batch.
        let reopened = Store::open(&dir, StoreOptions::default()).unwrap();
        assert_eq!(reopened.len(), 1 + events);
        for seq in 1..=events {
            let record = reopened.get(seq).unwrap().unwrap();
            assert_eq!(
                record.event.request_id.as_deref(),
                Some(format!("line-{seq}").as_str())
            );
        }
    }

    #[test]
    fn a_store_that_refuses_writes_says_nothing_from_the_line_on_was_written() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), StoreOptions::default()).unwrap();
        let mut run = import(&store, tmp.path());
        run.progress.written(
            &[1, 2, 3],
            &store
                .append_batch((1..=3).map(|i| {
                    parse_line(line(i).as_bytes(), &Validator::default())
                        .ok()
                        .unwrap()
                }))
                .unwrap(),
        );
        run.file = "-".into();
        let err = run.write_failed(
            &[4, 5],
            sealog::Error::WritesRefused {
                cause: "fdatasync failed".into(),
                kind: io::ErrorKind::Other,
            },
        );
        let report = Report(&err).to_string();
        assert!(
            report.contains(
                "lines 1-3 are in the log (3 events, seqs 0-2); nothing from line 4 on was \
                 written. Fix the cause above, then import the rest: the input from line 4 on"
            ),
            "{report}"
        );
    }
}
