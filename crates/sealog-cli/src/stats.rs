//! `sealog stats`: what a store holds and what it costs on disk.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use clap::Args;
use sealog::format::frame::FRAME_HEADER_LEN;
use sealog::format::record;
use sealog::format::segment::{FOOTER_LEN, HEADER_LEN, SegmentFooter};
use sealog::{Store, Timestamp};

use crate::common::{DamageArgs, DamageWarnings, Global, Out, bytes, thousands};
use crate::error::CliError;

const AFTER_HELP: &str = "\
Reports the segments (sealed and open), the number of events, the bytes on
disk by kind of file (segments, the spare segment, the leaf file, index
files, the rest), the bytes per event, the range of event times and recorded
times, and what the engine reports about the store.

Bytes per event are over what holds data: the records (their frames), and
everything stored (records, segment headers and footers, tree and index
files, checkpoints; of the leaf file, only its allocated blocks: the leaf
hashes of compressed segments are freed from it, leaving holes). Space
reserved ahead of use is reported apart, in
bytes, never per event: an open segment is preallocated to its full size
and a writer zero-fills the next segment (the spare) in advance, so a new
store takes two segments of disk for its first events.

Sealed segments are summarised from their footers; only the unsealed
segments are read record by record, so this is quick on large stores.

Examples:
  sealog stats
  sealog stats --json | jq .bytes_per_event";

/// Show what a store holds: segments, events, bytes on disk, time range.
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct StatsArgs {
    /// Print one JSON object instead of text.
    ///
    /// Example: --json
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    damaged: DamageArgs,
}

/// Bytes of one kind of file.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
struct Usage {
    files: u64,
    /// Sum of file lengths.
    bytes: u64,
    /// Sum of blocks allocated on disk.
    allocated: u64,
}

impl Usage {
    fn add(&mut self, meta: &std::fs::Metadata) {
        self.files += 1;
        self.bytes += meta.len();
        self.allocated += meta.blocks() * 512;
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Range {
    min: Option<Timestamp>,
    max: Option<Timestamp>,
}

impl Range {
    fn add(&mut self, lo: Timestamp, hi: Timestamp) {
        self.min = Some(self.min.map_or(lo, |m| m.min(lo)));
        self.max = Some(self.max.map_or(hi, |m| m.max(hi)));
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "earliest": self.min.map(|t| t.to_rfc3339()),
            "latest": self.max.map(|t| t.to_rfc3339()),
        })
    }

    fn text(&self) -> String {
        match (self.min, self.max) {
            (Some(a), Some(b)) => format!("{a} .. {b}"),
            _ => "-".into(),
        }
    }
}

/// Everything measured.
#[derive(Default)]
struct Measured {
    segments: Usage,
    sealed: u64,
    open: u64,
    /// Bytes of segment files holding data: sealed files, plus the header
    /// and frames of open ones.
    segments_in_use: u64,
    /// Bytes of record frames (frame headers and records), in every
    /// segment.
    records: u64,
    /// Sealed segments stored compressed: how many, their file bytes, and
    /// the bytes of record frames they hold.
    compressed: u64,
    compressed_bytes: u64,
    compressed_records: u64,
    /// The zero-filled file waiting to become the next segment
    /// (`segments/spare-…`, also while it is being made).
    spare: Usage,
    leaves: Usage,
    indexes: Usage,
    lost_found: Usage,
    other: Usage,
    event_time: Range,
    recorded_at: Range,
    /// First seq of the first unsealed segment.
    first_open_seq: Option<u64>,
}

fn walk(dir: &Path, rel: &Path, m: &mut Measured) -> Result<(), CliError> {
    let read = std::fs::read_dir(dir.join(rel)).map_err(|source| CliError::ReadInput {
        what: "store directory",
        path: dir.join(rel),
        source,
    })?;
    for entry in read.flatten() {
        let path = rel.join(entry.file_name());
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            walk(dir, &path, m)?;
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let top = path
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        match (top.as_str(), name.as_str()) {
            ("segments", n) if n.ends_with(".seg") => {
                m.segments.add(&meta);
                match read_footer(&dir.join(&path), meta.len()) {
                    Some((footer, compressed)) => {
                        m.sealed += 1;
                        m.segments_in_use += meta.len();
                        let frames = footer.frames_end.saturating_sub(HEADER_LEN as u64);
                        m.records += frames;
                        if compressed {
                            m.compressed += 1;
                            m.compressed_bytes += meta.len();
                            m.compressed_records += frames;
                        }
                        m.event_time
                            .add(footer.min_event_time, footer.max_event_time);
                        m.recorded_at
                            .add(footer.min_recorded_at, footer.max_recorded_at);
                    }
                    None => {
                        m.open += 1;
                        m.segments_in_use += HEADER_LEN as u64;
                        let first = n.trim_end_matches(".seg").parse::<u64>().ok();
                        m.first_open_seq = match (m.first_open_seq, first) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                    }
                }
            }
            ("segments", n) if n.starts_with("spare") => m.spare.add(&meta),
            ("tree", _) => m.leaves.add(&meta),
            ("lost+found", _) => m.lost_found.add(&meta),
            (_, n) if n.ends_with(".idx") || top.starts_with("index") => m.indexes.add(&meta),
            _ => m.other.add(&meta),
        }
    }
    Ok(())
}

/// The footer of a sealed segment, if the file has a valid one, and
/// whether the segment is stored compressed.
fn read_footer(path: &Path, len: u64) -> Option<(SegmentFooter, bool)> {
    let footer_len = FOOTER_LEN as u64;
    if len < footer_len {
        return None;
    }
    let mut file = File::open(path).ok()?;
    // A segment stored compressed keeps its footer near the start, after
    // the container's head and the segment header (docs/format.md): read
    // as an open reads it.
    let mut head = [0u8; sealog::format::compressed::TABLE_OFFSET];
    if file.read_exact(&mut head).is_ok() && sealog::format::compressed::is_compressed(&head) {
        return sealog::format::compressed::parse_head(&head, len)
            .ok()
            .map(|(_, f)| (f, true));
    }
    file.seek(SeekFrom::Start(len - footer_len)).ok()?;
    let mut buf = [0u8; FOOTER_LEN];
    file.read_exact(&mut buf).ok()?;
    let footer = SegmentFooter::decode(&buf).ok()?;
    (footer.file_len() == len).then_some((footer, false))
}

/// Reads the records of the unsealed segments: their frame bytes and times.
fn scan_open(
    store: &Store,
    dir: &Path,
    m: &mut Measured,
    allow_damaged: bool,
) -> Result<(), CliError> {
    let Some(first) = m.first_open_seq else {
        return Ok(());
    };
    let reading_around = allow_damaged;
    for seq in first..store.len() {
        // A record that cannot be read fails the command, or (reading
        // around damage) is left out and named.
        let raw = match store.get_raw(seq) {
            Ok(Some(raw)) => raw,
            // Only beyond the end of the log, which `len` bounds.
            Ok(None) => break,
            Err(e) if reading_around && e.corruption().is_some() => continue,
            Err(e) => return Err(CliError::read("read", dir, e)),
        };
        let view = match record::decode(&raw) {
            Ok(view) => view,
            // `get` names the file and offset of the record.
            Err(_) => match store.get(seq) {
                Err(e) if reading_around && e.corruption().is_some() => continue,
                Err(e) => return Err(CliError::read("read", dir, e)),
                Ok(_) => continue,
            },
        };
        let frame = (FRAME_HEADER_LEN + raw.len()) as u64;
        m.segments_in_use += frame;
        m.records += frame;
        let t = view.event_time();
        m.event_time.add(t, t);
        m.recorded_at.add(view.recorded_at, view.recorded_at);
    }
    Ok(())
}

pub fn run(global: &Global, args: StatsArgs) -> Result<(), CliError> {
    let dir = &global.data_dir;
    let store = global.open_read_only(&args.damaged)?;
    let mut warnings = DamageWarnings::default();
    warnings.name_new(dir, &store);
    let engine = store.stats();
    let mut m = Measured::default();
    walk(dir, Path::new(""), &mut m)?;
    scan_open(&store, dir, &mut m, args.damaged.allow_damaged)?;
    warnings.name_new(dir, &store);
    let damage = store.damage();
    let unreadable: u64 = damage.iter().filter_map(sealog::Damage::records).sum();
    let events = engine.records;
    let total = [
        m.segments,
        m.spare,
        m.leaves,
        m.indexes,
        m.lost_found,
        m.other,
    ]
    .iter()
    .fold(Usage::default(), |a, u| Usage {
        files: a.files + u.files,
        bytes: a.bytes + u.bytes,
        allocated: a.allocated + u.allocated,
    });
    let per_event = |b: u64| (events > 0).then(|| b as f64 / events as f64);
    // What open segments reserve beyond their data, and everything that
    // holds data: the file bytes of all but the reservations.
    let preallocated = m.segments.bytes.saturating_sub(m.segments_in_use);
    // The leaf hashes of compressed segments are freed from the leaf file
    // (holes that keep its length): only its allocated blocks hold data.
    let leaf_holes = m.leaves.bytes.saturating_sub(m.leaves.allocated);
    let stored = total
        .bytes
        .saturating_sub(preallocated)
        .saturating_sub(m.spare.bytes)
        .saturating_sub(leaf_holes);
    let archive = archive_status(&store, args.damaged.archive.url.as_deref())?;
    let mut out = Out::new();
    if args.json {
        out.json_pretty(&serde_json::json!({
            "archive": archive.json(),
            "data_dir": dir,
            "segments": {"total": m.sealed + m.open, "sealed": m.sealed, "open": m.open},
            "events": events,
            "bytes": {
                "segments": m.segments,
                "segments_in_use": m.segments_in_use,
                "records": m.records,
                "compressed": {
                    "segments": m.compressed,
                    "bytes": m.compressed_bytes,
                    "records": m.compressed_records,
                },
                "preallocated": preallocated,
                "stored": stored,
                "spare": m.spare,
                "leaf_file": m.leaves,
                "indexes": m.indexes,
                "lost_found": m.lost_found,
                "other": m.other,
                "total": total,
            },
            "bytes_per_event": per_event(m.records),
            "bytes_per_event_stored": per_event(stored),
            "event_time": m.event_time.json(),
            "recorded_at": m.recorded_at.json(),
            "damage": damage.iter().map(|d| serde_json::json!({
                "first_seq": d.first_seq,
                "end_seq": d.end_seq,
                "file": dir.join(&d.corruption.location.file),
                "offset": d.corruption.location.offset,
                "seq": d.corruption.location.seq,
                "problem": d.corruption.kind.to_string(),
            })).collect::<Vec<_>>(),
            "unreadable_events": unreadable,
            "engine": {
                "records": engine.records,
                "segments": engine.segments,
                "sealed_segments": engine.sealed_segments,
                "appends": engine.appends,
                "appended_events": engine.appended_events,
                "written_bytes": engine.written_bytes,
                "commit_groups": engine.commit_groups,
                "segment_rolls": engine.segment_rolls,
                "syncs": engine.sync_latency_us.count(),
            },
        }))?;
        out.flush()?;
        warnings.finish();
        return Ok(());
    }
    let row = |label: &str, u: &Usage| {
        format!(
            "  {label:<16}{:>12}  ({} files, {} allocated)",
            bytes(u.bytes),
            u.files,
            bytes(u.allocated)
        )
    };
    out.line(&format!("store            {}", dir.display()))?;
    out.line(&format!(
        "segments         {} ({} sealed, {} open)",
        m.sealed + m.open,
        m.sealed,
        m.open
    ))?;
    out.line(&format!("events           {}", thousands(events)))?;
    if !damage.is_empty() {
        out.line(&format!(
            "  unreadable     {} in {} damaged range(s) (--allow-damaged; named on standard \
             error)",
            thousands(unreadable),
            damage.len()
        ))?;
    }
    out.line("bytes on disk")?;
    out.line(&row("segments", &m.segments))?;
    out.line(&format!(
        "  {:<16}{:>12}  (record frames)",
        "  records",
        bytes(m.records)
    ))?;
    if m.compressed > 0 {
        out.line(&format!(
            "  {:<16}{:>12}  ({} of the record frames, in {} sealed segments stored \
             compressed: {:.1}× smaller)",
            "  compressed",
            bytes(m.compressed_bytes),
            bytes(m.compressed_records),
            m.compressed,
            m.compressed_records as f64 / m.compressed_bytes.max(1) as f64
        ))?;
    }
    out.line(&format!(
        "  {:<16}{:>12}  (segment headers, end markers and footers)",
        "  structure",
        bytes(
            m.segments_in_use
                .saturating_sub(m.compressed_bytes)
                .saturating_sub(m.records.saturating_sub(m.compressed_records))
        )
    ))?;
    out.line(&format!(
        "  {:<16}{:>12}  (preallocated in open segments, not used yet)",
        "  reserved",
        bytes(preallocated)
    ))?;
    out.line(&format!(
        "{}; the next segment, zero-filled ahead)",
        row("spare segment", &m.spare).trim_end_matches(')')
    ))?;
    if leaf_holes > 0 {
        out.line(&format!(
            "{}; the leaf hashes of compressed segments freed)",
            row("leaf file", &m.leaves).trim_end_matches(')')
        ))?;
    } else {
        out.line(&row("leaf file", &m.leaves))?;
    }
    if m.indexes.files > 0 {
        out.line(&row("index files", &m.indexes))?;
    } else {
        out.line(&format!(
            "  {:<16}{:>12}  (none on disk: indexes are kept in memory)",
            "index files", "0 B"
        ))?;
    }
    if m.lost_found.files > 0 {
        out.line(&row("lost+found", &m.lost_found))?;
    }
    out.line(&row("other", &m.other))?;
    out.line(&row("total", &total))?;
    out.line(&format!(
        "  {:<16}{:>12}  (preallocated and spare: space for events to come)",
        "  reserved",
        bytes(preallocated + m.spare.bytes)
    ))?;
    match (per_event(m.records), per_event(stored)) {
        (Some(records), Some(stored)) => out.line(&format!(
            "bytes per event  {records:.1} of records, {stored:.1} of everything stored \
             (reserved space not counted)"
        ))?,
        _ => out.line("bytes per event  - (no events)")?,
    }
    out.line(&format!("event time       {}", m.event_time.text()))?;
    out.line(&format!("recorded at      {}", m.recorded_at.text()))?;
    out.line(&format!(
        "engine           {} records in {} segments ({} sealed)",
        thousands(engine.records),
        engine.segments,
        engine.sealed_segments
    ))?;
    for line in archive.lines() {
        out.line(&line)?;
    }
    out.flush()?;
    warnings.finish();
    Ok(())
}

/// The store's archive: segments removed after archiving, and (with
/// `--archive URL`) how far the archive is behind the sealed segments.
#[derive(Debug, Default)]
struct ArchiveStatus {
    pruned_segments: u64,
    pruned_records: u64,
    url: Option<String>,
    archived_records: Option<u64>,
    lag_records: u64,
    lag_segments: u64,
    last_round: Option<(u64, String, Option<f64>)>,
}

fn archive_status(store: &Store, url: Option<&str>) -> Result<ArchiveStatus, CliError> {
    let pruned = store.pruned_segments();
    let mut status = ArchiveStatus {
        pruned_segments: pruned.len() as u64,
        pruned_records: pruned.iter().map(|p| p.footer.record_count).sum(),
        url: url.map(str::to_owned),
        ..ArchiveStatus::default()
    };
    let Some(url) = url else {
        return Ok(status);
    };
    let head = sealog_archive::blocking::head(url, sealog_archive::TargetOptions::default())
        .map_err(|e| crate::archive::archive_error(url, e))?;
    let sealed = sealog::image::sealed_segments(store);
    let sealed_end = sealed.last().map_or(0, |s| s.footer.end_seq());
    let archived = head.as_ref().map_or(0, |h| h.manifest.tree_size);
    status.archived_records = Some(archived);
    status.lag_records = sealed_end.saturating_sub(archived);
    status.lag_segments = sealed
        .iter()
        .filter(|s| s.header.first_seq >= archived)
        .count() as u64;
    status.last_round = head.map(|h| {
        let age = sealog::query::parse_time(
            "written_at",
            &h.manifest.written_at,
            sealog::query::TimeBound::Start,
        )
        .ok()
        .map(|t| (Timestamp::now().as_nanos() - t.as_nanos()) as f64 / 1e9);
        (h.manifest.round, h.manifest.written_at, age)
    });
    Ok(status)
}

impl ArchiveStatus {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "pruned_segments": self.pruned_segments,
            "pruned_records": self.pruned_records,
            "url": self.url,
            "archived_records": self.archived_records,
            "lag_records": self.url.as_ref().map(|_| self.lag_records),
            "lag_segments": self.url.as_ref().map(|_| self.lag_segments),
            "last_round": self.last_round.as_ref().map(|(round, at, age)| serde_json::json!({
                "round": round, "written_at": at, "seconds_ago": age,
            })),
        })
    }

    fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.pruned_segments > 0 {
            out.push(format!(
                "archived         {} segment(s), {} records, removed locally after archiving \
                 (read from the archive when needed)",
                self.pruned_segments,
                thousands(self.pruned_records)
            ));
        }
        if let (Some(url), Some(archived)) = (&self.url, self.archived_records) {
            out.push(format!(
                "archive          {url}: holds records 0..{}; {} sealed record(s) in {} \
                 segment(s) not archived yet",
                thousands(archived),
                thousands(self.lag_records),
                self.lag_segments
            ));
            match &self.last_round {
                Some((round, at, Some(age))) => out.push(format!(
                    "  last round     {round}, written {at} ({age:.0} s ago)"
                )),
                Some((round, at, None)) => {
                    out.push(format!("  last round     {round}, written {at}"));
                }
                None => out.push("  last round     none: nothing archived yet".into()),
            }
        }
        out
    }
}
