//! Segments removed from the store after their archived copies were read
//! back and compared (retention of local copies), and where their records
//! can still be read.
//!
//! `pruned.log` in the store directory lists them, one line per segment
//! (byte layout in `docs/format.md`). The line is written and synced
//! before the segment's files are removed, so a segment missing from the
//! directory is either listed here (archived, not local) or damage. Each
//! line carries the segment's header and footer, so the open checks the
//! chain across the pruned run, queries skip a pruned segment by its
//! footer's times, and a fetched copy is checked against its SHA-256
//! before any record of it is read.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use sealog_format::segment::{FOOTER_LEN, HEADER_LEN, SegmentFooter, SegmentHeader};
use sha2::{Digest, Sha256};

use crate::error::{Corruption, CorruptionKind, Error, Location, Result};
use crate::fs::Vfs;

/// The file, relative to the store directory.
pub const PRUNED_FILE: &str = "pruned.log";

const TAG: &str = "pruned-v1";

/// A sealed segment removed from the store after its archived copy was
/// read back and found identical.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrunedSegment {
    /// The segment's header, as in its file.
    pub header: SegmentHeader,
    /// The segment's footer, as in its file.
    pub footer: SegmentFooter,
    /// SHA-256 of the whole segment file.
    pub segment_sha256: [u8; 32],
    /// SHA-256 of its index sidecar file.
    pub sidecar_sha256: [u8; 32],
    /// The archive holding the copy (`s3://bucket/prefix`, `file:///…`).
    pub url: String,
    /// The archive manifest that lists the copy (`manifests/<round>.json`).
    pub manifest: String,
}

impl PrunedSegment {
    /// The segment's name in the store (`segments/<first seq>.seg`).
    pub fn name(&self) -> String {
        crate::layout::segment_name(self.header.first_seq)
    }

    /// Its first seq.
    pub fn first_seq(&self) -> u64 {
        self.header.first_seq
    }

    /// One past its last seq.
    pub fn end_seq(&self) -> u64 {
        self.footer.end_seq()
    }

    /// The line of `pruned.log` for this segment, line feed included.
    pub fn to_line(&self) -> Result<String> {
        for (what, text) in [
            ("archive URL", &self.url),
            ("manifest name", &self.manifest),
        ] {
            if text.is_empty() || text.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
                return Err(Error::Config(format!(
                    "the {what} `{text}` of a pruned segment must be printable ASCII without \
                     spaces"
                )));
            }
        }
        let body = format!(
            "{TAG} {} {} {} {} {} {} {} {} {}",
            self.header.segment_no,
            self.header.first_seq,
            self.footer.record_count,
            hex(&self.segment_sha256),
            hex(&self.sidecar_sha256),
            hex(&self.header.encode()),
            hex(&self.footer.encode()),
            self.manifest,
            self.url,
        );
        let crc = crc32fast::hash(body.as_bytes());
        Ok(format!("{body} {crc:08x}\n"))
    }

    /// Parses one line (without its line feed); `line_no` counts from 1.
    fn parse(line: &str, line_no: usize) -> Result<PrunedSegment> {
        let bad = |reason: String| -> Error {
            Corruption::new(
                Location::file(format!("{PRUNED_FILE}:{line_no}")),
                CorruptionKind::Layout(reason),
            )
            .into()
        };
        let (body, crc) = line
            .rsplit_once(' ')
            .ok_or_else(|| bad("the line has no checksum field".into()))?;
        let stored = u32::from_str_radix(crc, 16)
            .ok()
            .filter(|_| crc.len() == 8)
            .ok_or_else(|| bad(format!("the checksum `{crc}` is not 8 hex digits")))?;
        let computed = crc32fast::hash(body.as_bytes());
        if stored != computed {
            return Err(bad(format!(
                "CRC-32 {stored:08x} stored, {computed:08x} computed over the line"
            )));
        }
        let fields: Vec<&str> = body.split(' ').collect();
        let [
            tag,
            no,
            first,
            count,
            seg,
            idx,
            header,
            footer,
            manifest,
            url,
        ] = fields[..]
        else {
            return Err(bad(format!("{} fields where 11 belong", fields.len() + 1)));
        };
        if tag != TAG {
            return Err(bad(format!("starts with `{tag}`, not `{TAG}`")));
        }
        let number = |what: &str, text: &str| -> Result<u64> {
            text.parse()
                .map_err(|_| bad(format!("the {what} `{text}` is not a number")))
        };
        let hash = |what: &str, text: &str| -> Result<[u8; 32]> {
            unhex(text)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| bad(format!("the {what} is not 64 hex digits")))
        };
        let (no, first, count) = (
            number("segment number", no)?,
            number("first seq", first)?,
            number("record count", count)?,
        );
        let header_bytes = unhex(header)
            .filter(|b| b.len() == HEADER_LEN)
            .ok_or_else(|| bad(format!("the header is not {} hex digits", 2 * HEADER_LEN)))?;
        let footer_bytes = unhex(footer)
            .filter(|b| b.len() == FOOTER_LEN)
            .ok_or_else(|| bad(format!("the footer is not {} hex digits", 2 * FOOTER_LEN)))?;
        let header = SegmentHeader::decode(&header_bytes)
            .map_err(|e| bad(format!("the header does not decode: {e}")))?;
        let footer = SegmentFooter::decode(&footer_bytes)
            .map_err(|e| bad(format!("the footer does not decode: {e}")))?;
        if header.segment_no != no
            || header.first_seq != first
            || footer.first_seq != first
            || footer.record_count != count
            || footer.segment_no != no
        {
            return Err(bad(
                "segment number, first seq or record count differ from the header and footer"
                    .into(),
            ));
        }
        Ok(PrunedSegment {
            header,
            footer,
            segment_sha256: hash("segment SHA-256", seg)?,
            sidecar_sha256: hash("sidecar SHA-256", idx)?,
            url: url.to_owned(),
            manifest: manifest.to_owned(),
        })
    }
}

/// Reads `pruned.log` of the store in `dir` (none: no segment was
/// pruned). A last line without its line feed was cut by a crash while it
/// was written: it is ignored, since its segments were removed only after
/// it was synced whole.
pub(crate) fn load(fs: &dyn Vfs, dir: &Path) -> Result<Vec<PrunedSegment>> {
    let path = dir.join(PRUNED_FILE);
    if !fs.exists(&path).map_err(|e| Error::io("stat", &path, e))? {
        return Ok(Vec::new());
    }
    let bytes = crate::fs::read_all(fs, &path).map_err(|e| Error::io("read", &path, e))?;
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(last) => bytes.get(..last).unwrap_or_default(),
        None => &[],
    };
    if complete.is_empty() {
        return Ok(Vec::new());
    }
    let text = std::str::from_utf8(complete).map_err(|e| {
        Error::from(Corruption::new(
            Location::file(PRUNED_FILE).at(e.valid_up_to() as u64),
            CorruptionKind::Layout("not ASCII text".into()),
        ))
    })?;
    let mut out: Vec<PrunedSegment> = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let p = PrunedSegment::parse(line, i + 1)?;
        if out
            .last()
            .is_some_and(|prev| prev.header.segment_no >= p.header.segment_no)
        {
            return Err(Corruption::new(
                Location::file(format!("{PRUNED_FILE}:{}", i + 1)),
                CorruptionKind::Layout(format!(
                    "segment {} is listed after a segment numbered as high or higher",
                    p.header.segment_no
                )),
            )
            .into());
        }
        out.push(p);
    }
    Ok(out)
}

/// Writes `all` (the segments already listed, then the new ones) as the
/// new `pruned.log`, durably (a temporary file, synced, renamed, the
/// directory synced).
pub(crate) fn store(fs: &dyn Vfs, dir: &Path, all: &[PrunedSegment]) -> Result<()> {
    let mut text = String::new();
    for p in all {
        text.push_str(&p.to_line()?);
    }
    crate::fs::write_atomic(fs, &dir.join(PRUNED_FILE), text.as_bytes())
}

/// SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Where the records of pruned segments are read from: an archive,
/// usually through a bounded local cache (`sealog_archive::ArchiveCache`).
pub trait ArchiveSource: Send + Sync + fmt::Debug {
    /// The bytes of the segment file `pruned` names, as archived. The
    /// store checks them against `pruned.segment_sha256` before use. An
    /// error should name the segment, the URL, and why it cannot be had.
    fn fetch_segment(&self, pruned: &PrunedSegment) -> Result<Arc<Vec<u8>>>;
}

/// The error of a read that needs a pruned segment the store cannot get.
pub(crate) fn unavailable(pruned: &PrunedSegment, reason: &str) -> Error {
    Error::Archived {
        segment: pruned.name().into(),
        first_seq: pruned.first_seq(),
        end_seq: pruned.end_seq(),
        url: pruned.url.as_str().into(),
        reason: reason.into(),
    }
}

/// One prune at a time per process (the record is rewritten whole); a
/// segment's file is replaced by its compressed form under it too, so that
/// a file pruned meanwhile is never written again.
pub(crate) static PRUNING: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

impl crate::Store {
    /// The segments archived and removed from this store, oldest first
    /// (as of when it was opened, plus those it pruned since).
    pub fn pruned_segments(&self) -> Vec<PrunedSegment> {
        self.view()
            .sealed
            .iter()
            .filter_map(|s| s.pruned_record().cloned())
            .collect()
    }

    /// Removes local sealed segments whose archived copies the caller has
    /// read back and compared: for each, the segment file's SHA-256 must
    /// be `segment_sha256` (and its sidecar's, if the file is there,
    /// `sidecar_sha256`), and the header and footer must be the store's.
    /// The newest sealed segment is never removed (the next segment's link
    /// across the gap is what the open checks).
    ///
    /// In order, each step durable before the next: the segments are added
    /// to `pruned.log`; an `archive.pruned` event per segment is appended
    /// (actor `system:sealog`); the segments are replaced in the view by
    /// their pruned form (reads fetch them through
    /// [`crate::StoreOptions::archive`]); their files are removed. A crash
    /// between the steps leaves a segment listed and still on disk, which
    /// is read from disk; pruning it again removes it. Nothing is changed
    /// if a check fails.
    pub fn prune_archived(&self, segments: &[PrunedSegment]) -> Result<()> {
        let config = self.inner.config();
        if config.read_only {
            return Err(Error::ReadOnly);
        }
        if segments.is_empty() {
            return Ok(());
        }
        let _one = PRUNING.lock();
        let fs = &*config.fs;
        let view = self.view();
        let mut local = Vec::new();
        for p in segments {
            let position = view
                .sealed
                .iter()
                .position(|s| s.header.first_seq == p.first_seq() && s.pruned_record().is_none());
            let Some(position) = position else {
                return Err(Error::Config(format!(
                    "{} is not a local sealed segment of this store",
                    p.name()
                )));
            };
            if position + 1 == view.sealed.len() {
                return Err(Error::Config(format!(
                    "{} is the newest sealed segment, which is always kept",
                    p.name()
                )));
            }
            let Some(s) = view.sealed.get(position) else {
                continue;
            };
            if s.header != p.header || s.footer != p.footer {
                return Err(Error::Config(format!(
                    "the header or footer given for {} are not the store's",
                    p.name()
                )));
            }
            let path = config.dir.join(p.name());
            let bytes = crate::fs::read_all(fs, &path).map_err(|e| Error::io("read", &path, e))?;
            let image = crate::compressed::image_of(&p.name(), &bytes)?;
            let mut sha = sha256(&bytes);
            if sha != p.segment_sha256 && crate::compressed::is_compressed(&bytes) {
                // Compressed after it was archived: the archived copy is
                // its image.
                sha = sha256(&image);
            }
            if sha != p.segment_sha256 {
                return Err(Error::Config(format!(
                    "{} has SHA-256 {} on disk, not {} as archived: it is not removed",
                    p.name(),
                    hex(&sha),
                    hex(&p.segment_sha256)
                )));
            }
            let sidecar = config.dir.join(crate::sidecar::sidecar_name(p.first_seq()));
            if fs
                .exists(&sidecar)
                .map_err(|e| Error::io("stat", &sidecar, e))?
            {
                let bytes = crate::fs::read_all(fs, &sidecar)
                    .map_err(|e| Error::io("read", &sidecar, e))?;
                let sha = sha256(&bytes);
                if sha != p.sidecar_sha256 {
                    return Err(Error::Config(format!(
                        "{} has SHA-256 {} on disk, not {} as archived: the segment is not \
                         removed",
                        sidecar.display(),
                        hex(&sha),
                        hex(&p.sidecar_sha256)
                    )));
                }
            }
            store_leaves(&self.inner, p, &image)?;
            local.push((p.clone(), path, sidecar));
        }
        if let Some(tree) = self.inner.tree() {
            tree.leaves().sync()?;
        }
        // 1. The record, durably.
        let mut all = load(fs, &config.dir)?;
        for (p, _, _) in &local {
            if !all
                .iter()
                .any(|q| q.header.segment_no == p.header.segment_no)
            {
                all.push(p.clone());
            }
        }
        all.sort_by_key(|p| p.header.segment_no);
        store(fs, &config.dir, &all)?;
        // 2. The audit event, durably.
        let events: Vec<sealog_format::Event> = local.iter().map(|(p, _, _)| event(p)).collect();
        self.append_batch_with(events, crate::Durability::Group)?;
        // 3. Readers see the pruned form.
        let source = config.options.archive.clone();
        let env = self.inner.index_env().clone();
        self.inner.readers().replace_sealed(
            local
                .iter()
                .map(|(p, _, _)| {
                    Arc::new(crate::segment::SealedSegment::pruned(
                        p,
                        source.clone(),
                        env.clone(),
                    ))
                })
                .collect(),
        );
        // 4. The files.
        for (_, path, sidecar) in &local {
            fs.remove_file(path)
                .map_err(|e| Error::io("remove", path, e))?;
            if fs
                .exists(sidecar)
                .map_err(|e| Error::io("stat", sidecar, e))?
            {
                fs.remove_file(sidecar)
                    .map_err(|e| Error::io("remove", sidecar, e))?;
            }
        }
        let segments_dir = config.dir.join(crate::layout::SEGMENTS);
        fs.sync_dir(&segments_dir)
            .map_err(|e| Error::io("fsync directory", &segments_dir, e))?;
        Ok(())
    }
}

/// Writes back the leaf hashes of a segment about to be pruned that
/// `tree/leaves` does not store (freed when it was stored compressed),
/// from its records (`image`, checked against the archived copy): once the
/// file is gone, its leaves are what the chain across it, its root and the
/// proofs of its records are checked with. Not synced.
fn store_leaves(inner: &crate::store::Inner, p: &PrunedSegment, image: &[u8]) -> Result<()> {
    let Some(tree) = inner.tree() else {
        return Ok(());
    };
    let count = usize::try_from(p.footer.record_count).unwrap_or(usize::MAX);
    let stored = tree.leaves().read(p.first_seq(), count)?;
    if !stored.iter().any(crate::tree::not_stored) {
        return Ok(());
    }
    let leaves =
        crate::segment::FrameWalker::new(image, p.first_seq(), None).leaves(p.footer.record_count);
    if leaves.len() != count {
        return Err(Error::Config(format!(
            "{}: {} records read of {count}; its leaf hashes cannot be stored, so it is not \
             removed",
            p.name(),
            leaves.len()
        )));
    }
    tree.leaves().write(p.first_seq(), &leaves)
}

/// The `archive.pruned` event of one segment.
fn event(p: &PrunedSegment) -> sealog_format::Event {
    use sealog_format::{Actor, Event, Metadata, Outcome, Resource};
    let mut metadata = Metadata::new();
    metadata.insert("first_seq".into(), p.first_seq().into());
    metadata.insert("records".into(), p.footer.record_count.into());
    metadata.insert("sha256".into(), hex(&p.segment_sha256).into());
    metadata.insert("archive".into(), p.url.clone().into());
    metadata.insert("manifest".into(), p.manifest.clone().into());
    Event::new(
        Actor::new("system", "sealog"),
        "archive.pruned",
        Resource::new("segment", p.name()),
        Outcome::Success,
    )
    .with_reason(format!(
        "removed the local copy of seqs {} to {} after its archived copy at {} ({}) was read \
         back and found identical",
        p.first_seq(),
        p.end_seq().saturating_sub(1),
        p.url,
        p.manifest
    ))
    .with_metadata(metadata)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .filter(|d| {
                    d.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                })
                .and_then(|d| u8::from_str_radix(d, 16).ok())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealog_format::Timestamp;

    fn sample(no: u64, first: u64) -> PrunedSegment {
        let header = SegmentHeader {
            store_id: [7; 16],
            segment_no: no,
            first_seq: first,
            created_at: Timestamp::from_nanos(5),
            chain_in: [1; 32],
        };
        let footer = SegmentFooter {
            first_seq: first,
            record_count: 10,
            segment_no: no,
            store_id: [7; 16],
            frames_end: 4000,
            chain_head: [2; 32],
            merkle_root: [3; 32],
            min_event_time: Timestamp::from_nanos(1),
            max_event_time: Timestamp::from_nanos(2),
            min_recorded_at: Timestamp::from_nanos(3),
            max_recorded_at: Timestamp::from_nanos(4),
            sealed_at: Timestamp::from_nanos(6),
        };
        PrunedSegment {
            header,
            footer,
            segment_sha256: [4; 32],
            sidecar_sha256: [5; 32],
            url: "s3://bucket/prefix".into(),
            manifest: "manifests/00000000000000000001.json".into(),
        }
    }

    #[test]
    fn a_pruned_log_round_trips_and_ignores_a_torn_last_line() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fs = crate::fs::StdFs;
        let all = vec![sample(0, 0), sample(1, 10)];
        store(&fs, tmp.path(), &all).expect("store");
        assert_eq!(load(&fs, tmp.path()).expect("load"), all);
        let path = tmp.path().join(PRUNED_FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        let torn = sample(2, 20).to_line().expect("line");
        bytes.extend_from_slice(&torn.as_bytes()[..torn.len() - 9]);
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(load(&fs, tmp.path()).expect("torn line ignored"), all);
    }

    #[test]
    fn a_changed_byte_in_the_pruned_log_is_refused_naming_the_line() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fs = crate::fs::StdFs;
        store(&fs, tmp.path(), &[sample(0, 0), sample(1, 10)]).expect("store");
        let path = tmp.path().join(PRUNED_FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        let second = bytes.iter().position(|&b| b == b'\n').expect("newline") + 14;
        bytes[second] = if bytes[second] == b'9' { b'8' } else { b'9' };
        std::fs::write(&path, &bytes).expect("write");
        let e = load(&fs, tmp.path()).expect_err("refused");
        assert!(e.to_string().contains("pruned.log:2"), "{e}");
    }

    /// An archive kept in memory: the segment files saved before pruning.
    #[derive(Debug)]
    struct Saved {
        files: std::collections::HashMap<u64, Vec<u8>>,
        tamper: bool,
    }

    impl ArchiveSource for Saved {
        fn fetch_segment(&self, pruned: &PrunedSegment) -> Result<Arc<Vec<u8>>> {
            let mut bytes = self
                .files
                .get(&pruned.first_seq())
                .cloned()
                .ok_or_else(|| unavailable(pruned, "not in this archive"))?;
            if self.tamper
                && let Some(b) = bytes.get_mut(300)
            {
                *b ^= 1;
            }
            Ok(Arc::new(bytes))
        }
    }

    fn store_with_segments(dir: &Path) -> crate::Store {
        use sealog_format::{Actor, Event, Outcome, Resource};
        let options = crate::StoreOptions {
            segment_size: 8192,
            preallocation: crate::Preallocation::Allocate,
            ..crate::StoreOptions::default()
        };
        let store = crate::Store::open(dir, options).expect("open");
        for i in 0..600 {
            store
                .append(Event::new(
                    Actor::new("user", format!("u{}", i % 3)),
                    "doc.read",
                    Resource::new("doc", i.to_string()),
                    Outcome::Success,
                ))
                .expect("append");
        }
        store.roll().expect("roll");
        store.wait_sealed().expect("sealed");
        store
    }

    fn record_of(dir: &Path, s: &crate::image::SealedSegmentInfo) -> (PrunedSegment, Vec<u8>) {
        let bytes = std::fs::read(&s.path).expect("segment");
        let idx = std::fs::read(dir.join(crate::image::sidecar_file_name(s.header.first_seq)))
            .expect("sidecar");
        let p = PrunedSegment {
            header: s.header,
            footer: s.footer,
            segment_sha256: sha256(&bytes),
            sidecar_sha256: sha256(&idx),
            url: "file:///archive".into(),
            manifest: "manifests/00000000000000000001.json".into(),
        };
        (p, bytes)
    }

    #[test]
    fn pruned_segments_verify_by_their_leaves_and_are_read_from_the_archive_checked() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = store_with_segments(tmp.path());
        let segments = crate::image::sealed_segments(&store);
        assert!(segments.len() >= 4, "{}", segments.len());
        let mut saved = std::collections::HashMap::new();
        let mut pruned = Vec::new();
        for s in &segments[..2] {
            let (p, bytes) = record_of(tmp.path(), s);
            saved.insert(p.first_seq(), bytes);
            pruned.push(p);
        }
        let newest = record_of(tmp.path(), segments.last().expect("a segment")).0;
        assert!(
            store.prune_archived(&[newest]).is_err(),
            "the newest sealed segment is kept"
        );
        let mut wrong = pruned[1].clone();
        wrong.segment_sha256[0] ^= 1;
        let e = store
            .prune_archived(&[wrong])
            .expect_err("a different copy");
        assert!(e.to_string().contains("not removed"), "{e}");
        assert!(tmp.path().join(pruned[1].name()).exists());

        store.prune_archived(&pruned).expect("prune");
        for p in &pruned {
            assert!(!tmp.path().join(p.name()).exists());
        }
        let in_pruned = pruned[1].first_seq() + 1;
        let e = store.get(in_pruned).expect_err("no archive given");
        assert!(
            matches!(&e, Error::Archived { segment, .. } if **segment == *pruned[1].name()),
            "{e}"
        );
        assert!(e.to_string().contains("file:///archive"), "{e}");
        let action = |name: &str| crate::query::Query {
            actions: vec![crate::query::ActionPattern::new(name).expect("action")],
            order: crate::query::Order::OldestFirst,
            ..crate::query::Query::default()
        };
        let e = store
            .query(&action("doc.read"))
            .expect_err("a query that needs pruned records fails, never answers short");
        assert!(matches!(e, Error::Archived { .. }), "{e}");
        // The key filters, written while the segments were local, tell
        // that the pruned ones hold no such action: answered without them.
        let page = store
            .query(&action("archive.pruned"))
            .expect("answered from the local segments");
        assert_eq!(page.records.len(), 2);
        let last = store.len();
        for (seq, p) in (last - 2..last).zip(&pruned) {
            let event = store.get(seq).expect("read").expect("present");
            assert_eq!(event.event.action, "archive.pruned");
            assert_eq!(event.event.resource.id, Some(p.name()));
        }
        store.close().expect("close");

        let report = crate::verify_dir(tmp.path()).expect("verify");
        assert_eq!(
            report.archived_not_local,
            pruned.iter().map(PrunedSegment::name).collect::<Vec<_>>()
        );

        let open = |tamper: bool| {
            crate::Store::open_read_only_with(
                tmp.path(),
                crate::StoreOptions {
                    archive: Some(Arc::new(Saved {
                        files: saved.clone(),
                        tamper,
                    })),
                    ..crate::StoreOptions::default()
                },
            )
            .expect("read-only open")
        };
        let reader = open(false);
        assert_eq!(reader.pruned_segments(), pruned);
        let record = reader.get(in_pruned).expect("fetched").expect("present");
        assert_eq!(record.seq, in_pruned);
        let all = reader
            .query(&crate::query::Query {
                actor: Some(crate::query::ActorFilter::parse("user:u1")),
                limit: 1000,
                ..crate::query::Query::default()
            })
            .expect("query across pruned segments");
        assert_eq!(all.records.len(), 200);
        reader
            .inclusion_proof(1, reader.tree_size())
            .expect("a proof of a pruned seq");
        let tampered = open(true);
        let e = tampered
            .get(in_pruned)
            .expect_err("a changed copy is refused");
        assert!(e.to_string().contains("SHA-256"), "{e}");
        drop(tampered);

        // Pruned segments survive a writable open, and the next prune.
        let store = crate::Store::open(tmp.path(), crate::StoreOptions::default()).expect("reopen");
        assert_eq!(store.pruned_segments(), pruned);
        let third = record_of(tmp.path(), &crate::image::sealed_segments(&store)[2]).0;
        store
            .prune_archived(std::slice::from_ref(&third))
            .expect("prune more");
        assert_eq!(store.pruned_segments().len(), 3);
        store.close().expect("close");
        crate::verify_dir(tmp.path()).expect("verify after the second prune");
    }
}
