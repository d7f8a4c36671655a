//! `sealog import`: NDJSON events, appended durably in batches.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sealog::Store;
use sealog::format::{Event, ValidationError, Validator};

use crate::common::{Global, Out, field_and_reason, rate, stderr_is_terminal, thousands};
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
lines go to a rejects file instead and the import continues.

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
    /// line is rejected; an existing file is replaced.
    ///
    /// Example: --rejects /tmp/rejected.ndjson
    #[arg(long, value_name = "PATH", requires = "skip_invalid")]
    rejects: Option<PathBuf>,
}

/// A line that could not be imported.
struct BadLine {
    field: String,
    reason: String,
}

impl From<ValidationError> for BadLine {
    fn from(e: ValidationError) -> Self {
        let (field, reason) = field_and_reason(&e);
        BadLine { field, reason }
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
            });
        }
    }
    validator.validate(&mut event)?;
    Ok(event)
}

/// Where rejected lines go.
struct Rejects {
    path: PathBuf,
    file: Option<io::BufWriter<File>>,
    count: u64,
}

impl Rejects {
    fn write(&mut self, line_no: u64, bad: &BadLine, text: &[u8]) -> Result<(), CliError> {
        let err = |source| CliError::Write {
            op: "write rejected lines to",
            path: self.path.clone(),
            source,
        };
        if self.file.is_none() {
            let file = File::create(&self.path).map_err(|source| CliError::Write {
                op: "create the rejects file",
                path: self.path.clone(),
                source,
            })?;
            self.file = Some(io::BufWriter::new(file));
        }
        let entry = serde_json::json!({
            "line": line_no,
            "field": bad.field,
            "reason": bad.reason,
            "input": String::from_utf8_lossy(text),
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

/// Progress and totals.
struct Progress {
    bar: Option<ProgressBar>,
    events: u64,
    batches: u64,
    /// The last line of the last batch written.
    last_written_line: u64,
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
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let store = global.open_for_writing()?;
    let validator = Validator::default();
    let mut rejects = Rejects {
        path: args
            .rejects
            .clone()
            .unwrap_or_else(|| default_rejects_path(&args.file)),
        file: None,
        count: 0,
    };
    let bar = stderr_is_terminal().then(|| progress_bar(total_bytes));
    let mut progress = Progress {
        bar,
        events: 0,
        batches: 0,
        last_written_line: 0,
    };
    let started = Instant::now();
    let batch_size = usize::try_from(args.batch).unwrap_or(usize::MAX);
    let mut batch: Vec<Event> = Vec::with_capacity(batch_size.min(100_000));
    let mut batch_lines: Vec<u64> = Vec::with_capacity(batch_size.min(100_000));
    let mut line = Vec::with_capacity(4096);
    let mut line_no = 0u64;
    let mut bytes_read = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|source| CliError::ReadInput {
                what: "import input",
                path: PathBuf::from(&name),
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
        match parse_line(text, &validator) {
            Ok(event) => {
                batch.push(event);
                batch_lines.push(line_no);
            }
            Err(bad) if args.skip_invalid => rejects.write(line_no, &bad, text)?,
            Err(bad) => {
                finish_bar(&progress);
                store
                    .close()
                    .map_err(|e| CliError::store("closing the store", &global.data_dir, e))?;
                return Err(stopped(&name, line_no, bad, &progress, &args.file));
            }
        }
        if batch.len() >= batch_size {
            write_batch(
                &store,
                global,
                &name,
                &mut batch,
                &mut batch_lines,
                &mut progress,
            )?;
            if let Some(bar) = &progress.bar {
                bar.set_position(bytes_read);
                bar.set_message(format!("{} events", thousands(progress.events)));
            }
        }
    }
    if !batch.is_empty() {
        write_batch(
            &store,
            global,
            &name,
            &mut batch,
            &mut batch_lines,
            &mut progress,
        )?;
    }
    rejects.finish()?;
    store
        .close()
        .map_err(|e| CliError::store("closing the store", &global.data_dir, e))?;
    finish_bar(&progress);
    let secs = started.elapsed().as_secs_f64();
    let mut out = Out::new();
    out.line(&format!(
        "imported {} events from {name} in {} batches, {secs:.2} s, {:.0} events/s",
        thousands(progress.events),
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

/// The error for a bad line when not skipping.
fn stopped(name: &str, line_no: u64, bad: BadLine, progress: &Progress, file: &str) -> CliError {
    let resume = progress.last_written_line + 1;
    let hint = if progress.events == 0 {
        "nothing was imported; fix the line and run the import again".to_owned()
    } else {
        let rest = if file == "-" {
            format!("the input from line {resume} on")
        } else {
            format!("the rest with: tail -n +{resume} {file} | sealog import -")
        };
        format!(
            "{} events (lines 1-{}) were imported in {} batches; nothing from line {resume} on \
             was written. Fix line {line_no}, then import {rest}; or use --skip-invalid",
            thousands(progress.events),
            progress.last_written_line,
            progress.batches,
        )
    };
    CliError::InvalidEvent {
        input: name.to_owned(),
        line: Some(line_no),
        field: bad.field,
        reason: bad.reason,
        hint,
    }
}

fn write_batch(
    store: &Store,
    global: &Global,
    name: &str,
    batch: &mut Vec<Event>,
    lines: &mut Vec<u64>,
    progress: &mut Progress,
) -> Result<(), CliError> {
    append_split(store, global, name, batch, lines)?;
    progress.events += batch.len() as u64;
    progress.batches += 1;
    progress.last_written_line = lines.last().copied().unwrap_or(progress.last_written_line);
    batch.clear();
    lines.clear();
    Ok(())
}

/// Appends `events`; a batch too large for one append is split in halves.
fn append_split(
    store: &Store,
    global: &Global,
    name: &str,
    events: &[Event],
    lines: &[u64],
) -> Result<(), CliError> {
    match store.append_batch(events) {
        Ok(_) => Ok(()),
        Err(sealog::Error::BatchTooLarge { .. }) if events.len() > 1 => {
            let mid = events.len() / 2;
            let (a, b) = events.split_at(mid);
            let (la, lb) = lines.split_at(mid);
            append_split(store, global, name, a, la)?;
            append_split(store, global, name, b, lb)
        }
        Err(sealog::Error::InvalidBatch(errors)) => {
            let first = errors.first();
            let line = first.and_then(|e| lines.get(e.index)).copied();
            Err(CliError::InvalidEvent {
                input: name.to_owned(),
                line,
                field: first
                    .map(|e| e.error.field().to_owned())
                    .unwrap_or_default(),
                reason: first.map(|e| e.error.reason()).unwrap_or_default(),
                hint: "nothing of this batch was written; fix the line and import again".into(),
            })
        }
        Err(e) => Err(CliError::store("append", &global.data_dir, e)),
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
