//! The key filters (`key-filters`, see docs/format.md "Key filters"): a
//! Bloom filter of each sealed segment's exact-match keys, all in one file.
//!
//! A lookup of one value (a request id, an actor, an action) opens every
//! sealed segment's sidecar to learn that most of them lack it: a few tens
//! of microseconds each (open, map, page faults, a block's check), which
//! grows with the store. With the filters it reads one 4 KiB page per
//! segment from one file, and opens only the sidecars of the segments that
//! may hold the value (those that do, and about 1% that do not).
//!
//! The file is derived data, like a sidecar. The writer appends an entry
//! for each segment it seals (on the sealer thread, from the sidecar it has
//! just encoded) and, after an open, for each sealed segment that has none (a
//! store written before the filters existed, an append a crash cut short);
//! each append is synced. A reader takes entries in file order up to the
//! first that does not read whole and check (the writer's next append
//! overwrites from there), uses an entry only for the segment whose
//! identity it names, and only for the fields it covers, and checks the CRC
//! of every page it reads: whatever damage the file has, a lookup falls
//! back to the sidecar, as it would without it, so the filter can only
//! spare work, never hide a record. (An entry forged with valid checksums
//! can, as a forged sidecar can: `verify` compares each entry with the one
//! the segment's records give.)

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Mutex, RwLock};
use sealog_format::index::{IndexField, SegmentIdentity};
use sealog_format::keyfilter::{self, EntryHead, FILE_HEADER_LEN, KeyFilterError};

use crate::error::{Error, Result};
use crate::fs::{OpenMode, Vfs, VfsFile};

/// The file's name, in the store directory.
pub(crate) const FILE: &str = "key-filters";

/// The terms a query names in one predicate, each as its field and its
/// FNV-1a 64 hash: a segment may hold a match only if its filter may hold
/// one of them.
pub(crate) type KeyGroup = Vec<(IndexField, u64)>;

/// Bytes read at once when looking for an entry's head: the heads of
/// segments of up to ~190,000 distinct keys fit (a longer one is read
/// again whole).
const HEAD_READ: usize = 1024;

/// A store's key filters: the entries found in the file (read on first
/// use), and, for a writer, where the next one goes.
#[derive(Debug)]
pub(crate) struct KeyFilters {
    fs: Arc<dyn Vfs>,
    path: PathBuf,
    store_id: [u8; 16],
    writable: bool,
    state: RwLock<Option<Arc<Catalog>>>,
    /// Serialises appends.
    append: Mutex<()>,
    /// Whether a damaged page was logged already (once per store).
    warned: AtomicBool,
    /// Keys whose pages [`KeyFilters::advise_probes`] asked for, at most
    /// [`KEYS_ADVISED`].
    advised: Mutex<Vec<u64>>,
}

/// The entries of the file, as read.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    file: Option<Arc<dyn VfsFile>>,
    /// By the first seq of the segment each describes (a later entry for
    /// the same segment replaces an earlier one).
    entries: HashMap<u64, Entry>,
    /// Where entries stop reading whole: the next append goes here (0: the
    /// file is missing or its header unusable, and is written anew).
    end: u64,
    /// Why reading stopped before the end of the file, and where.
    pub problem: Option<(u64, String)>,
    /// Whether it stopped at an entry that ends past the end of the file:
    /// an append in progress, or one a crash cut short.
    cut: bool,
}

#[derive(Debug, Clone)]
struct Entry {
    offset: u64,
    head: Arc<EntryHead>,
}

impl Catalog {
    /// The entry for the segment `identity`, if it names that segment.
    fn entry(&self, identity: &SegmentIdentity) -> Option<&Entry> {
        self.entries
            .get(&identity.first_seq)
            .filter(|e| e.head.identity == *identity)
    }

    /// Whether segment `identity` has an entry of its own.
    pub(crate) fn has(&self, identity: &SegmentIdentity) -> bool {
        self.entry(identity).is_some()
    }

    /// Whether an entry names the segment starting at `first_seq`.
    pub(crate) fn holds(&self, first_seq: u64) -> bool {
        self.entries.contains_key(&first_seq)
    }

    /// Whether reading stopped at an entry that ends past the end of the
    /// file (an append in progress, or cut short by a crash).
    pub(crate) fn cut_short(&self) -> bool {
        self.cut
    }

    /// For a reader that does not write (verify): drops the entry read
    /// last if one of its pages does not check, as a writer's open does,
    /// taking it for an append a crash cut short (its head reached the
    /// disk, not all its pages) rather than for damage. Readers check each
    /// page they read, so such an entry hides nothing; the writer's next
    /// append overwrites it.
    pub(crate) fn drop_torn_last(&mut self) {
        let (Some(file), Some((&first_seq, entry))) = (
            self.file.as_ref(),
            self.entries.iter().max_by_key(|(_, e)| e.offset),
        ) else {
            return;
        };
        // Reading stopped earlier: the entry read last is not the file's
        // last append.
        if self.problem.is_some() {
            return;
        }
        if let Err(problem) = check_pages(&**file, entry) {
            let offset = entry.offset;
            self.entries.remove(&first_seq);
            self.end = offset;
            self.problem = Some((offset, problem));
            self.cut = true;
        }
    }

    /// The whole entry for the segment starting at `first_seq` as stored,
    /// with its offset.
    pub(crate) fn read_entry(&self, first_seq: u64) -> Option<Result<(u64, Vec<u8>)>> {
        let entry = self.entries.get(&first_seq)?;
        let file = self.file.as_ref()?;
        let mut bytes = vec![0u8; usize::try_from(entry.head.len()).unwrap_or(usize::MAX)];
        Some(
            file.read_exact_at(&mut bytes, entry.offset)
                .map(|()| (entry.offset, bytes))
                .map_err(|e| Error::io("read", Path::new(FILE), e)),
        )
    }
}

impl KeyFilters {
    pub(crate) fn new(fs: Arc<dyn Vfs>, dir: &Path, store_id: [u8; 16], writable: bool) -> Self {
        KeyFilters {
            fs,
            path: dir.join(FILE),
            store_id,
            writable,
            state: RwLock::new(None),
            append: Mutex::new(()),
            warned: AtomicBool::new(false),
            advised: Mutex::default(),
        }
    }

    /// The entries, read from the file on first use.
    pub(crate) fn catalog(&self) -> Arc<Catalog> {
        if let Some(c) = self.state.read().clone() {
            return c;
        }
        let mut state = self.state.write();
        if let Some(c) = state.clone() {
            return c;
        }
        let catalog = Arc::new(read_catalog(
            &*self.fs,
            &self.path,
            &self.store_id,
            self.writable,
        ));
        match &catalog.problem {
            // An append in progress in another process, or cut short.
            Some((at, problem)) if catalog.cut => {
                tracing::debug!(file = FILE, offset = at, problem = %problem, "key filters read up to an entry not written whole");
            }
            Some((at, problem)) => {
                tracing::warn!(file = FILE, offset = at, problem = %problem, "key filters read up to a damaged entry; segments past it are searched through their indexes");
            }
            None => {}
        }
        *state = Some(catalog.clone());
        catalog
    }

    /// Whether segment `identity` may hold a record that has, for every
    /// group, one of the group's keys. `true` whenever the filter cannot
    /// tell: no entry for the segment, a field the entry does not cover,
    /// a page that cannot be read or fails its check.
    pub(crate) fn may_hold(&self, identity: &SegmentIdentity, groups: &[KeyGroup]) -> bool {
        self.ask(identity, groups, false).unwrap_or(true)
    }

    /// [`KeyFilters::may_hold`] from memory alone, for a search that must
    /// not wait for a disk: `None` when the answer needs a read that would
    /// wait (the file not read yet, a page not in the page cache).
    pub(crate) fn may_hold_now(
        &self,
        identity: &SegmentIdentity,
        groups: &[KeyGroup],
    ) -> Option<bool> {
        self.ask(identity, groups, true)
    }

    /// The answer of [`KeyFilters::may_hold`]; with `now`, `None` rather
    /// than wait for a disk.
    fn ask(&self, identity: &SegmentIdentity, groups: &[KeyGroup], now: bool) -> Option<bool> {
        if groups.is_empty() {
            return Some(true);
        }
        let catalog = if now {
            self.state.read().clone()?
        } else {
            self.catalog()
        };
        let (Some(entry), Some(file)) = (catalog.entry(identity), catalog.file.as_ref()) else {
            return Some(true);
        };
        for group in groups {
            if !group.iter().all(|(f, _)| entry.head.covers(*f)) {
                continue;
            }
            let mut held = false;
            for &(field, key) in group {
                if self.probe(&**file, entry, keyfilter::filter_key(field, key), now)? {
                    held = true;
                    break;
                }
            }
            if !held {
                return Some(false);
            }
        }
        Some(true)
    }

    /// Asks the kernel for the page of every entry that a question about
    /// `groups` reads, without waiting: the questions that follow, one per
    /// segment, then find them in memory. Only advice.
    pub(crate) fn advise_probes(&self, groups: &[KeyGroup]) {
        // Each key once (a search plans, and asks, more than once), and
        // only the first few keys a store is asked about: what a command
        // asks when the file is likely not in memory. A long-running
        // process keeps the pages it reads, and keeps no set of every key.
        let keys: Vec<(IndexField, u64)> = {
            let mut advised = self.advised.lock();
            let mut keys = Vec::new();
            for &(field, key) in groups.iter().flatten() {
                let k = keyfilter::filter_key(field, key);
                if advised.len() < KEYS_ADVISED && !advised.contains(&k) {
                    advised.push(k);
                    keys.push((field, key));
                }
            }
            keys
        };
        if keys.is_empty() {
            return;
        }
        let catalog = self.catalog();
        let Some(file) = catalog.file.as_ref() else {
            return;
        };
        let mut pages: Vec<(u64, u64)> = Vec::new();
        for entry in catalog.entries.values() {
            for &(field, key) in &keys {
                if entry.head.covers(field) {
                    let probe = entry.head.probe(keyfilter::filter_key(field, key));
                    pages.push((entry.offset + probe.offset, probe.len as u64));
                }
            }
        }
        pages.sort_unstable();
        pages.dedup();
        for (offset, len) in pages {
            file.will_need(offset, len);
        }
    }

    /// Whether the entry may hold `key` (`true` if its page cannot be
    /// read or fails its CRC); with `now`, `None` if its page is not in
    /// memory.
    fn probe(&self, file: &dyn VfsFile, entry: &Entry, key: u64, now: bool) -> Option<bool> {
        let probe = entry.head.probe(key);
        let mut page = [0u8; keyfilter::BLOCK_LEN * keyfilter::BLOCKS_PER_PAGE as usize];
        let Some(page) = page.get_mut(..probe.len) else {
            return Some(true);
        };
        let at = entry.offset + probe.offset;
        let read = if now {
            match file.read_exact_at_now(page, at) {
                Ok(false) => return None,
                Ok(true) => Ok(()),
                Err(e) => Err(e),
            }
        } else {
            file.read_exact_at(page, at)
        };
        let checked = read.map_err(|e| e.to_string()).and_then(|()| {
            entry
                .head
                .check_page(probe.page, page)
                .map_err(|e| e.to_string())
        });
        Some(match checked {
            Ok(()) => EntryHead::page_may_hold(&probe, page, key),
            Err(problem) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(file = FILE, offset = at, segment = entry.head.identity.first_seq, problem = %problem, "a key filter page is damaged; searching through the segment's index");
                }
                true
            }
        })
    }

    /// At a writer's open: cuts the file after the last entry that reads
    /// whole and checks (what follows is an append a crash cut short, or
    /// damage), and syncs it, so that the file holds only what readers use
    /// and `verify` finds nothing to report. The entries cut are written
    /// again by the sealer's catch-up, as any missing entry is. A file
    /// whose header is unusable (damaged, another store's) is written anew,
    /// header only, as the next append would.
    pub(crate) fn cut_torn_tail(&self) -> Result<()> {
        if !self.writable {
            return Ok(());
        }
        let _appending = self.append.lock();
        let catalog = self.catalog();
        let (Some(file), Some((at, problem))) = (&catalog.file, &catalog.problem) else {
            return Ok(());
        };
        if catalog.end < FILE_HEADER_LEN as u64 {
            tracing::warn!(
                file = FILE,
                %problem,
                "writing the key filters anew; the sealer writes every segment's entry again"
            );
            let file = self.write_header_only()?;
            *self.state.write() = Some(Arc::new(Catalog {
                file: Some(file),
                end: FILE_HEADER_LEN as u64,
                ..Catalog::default()
            }));
            return Ok(());
        }
        tracing::warn!(
            file = FILE,
            offset = at,
            %problem,
            "cutting the key filters after the last entry that reads whole; the sealer writes the missing entries again"
        );
        file.set_len(catalog.end)
            .map_err(|e| Error::io("truncate", &self.path, e))?;
        file.sync_data()
            .map_err(|e| Error::io("fdatasync", &self.path, e))?;
        *self.state.write() = Some(Arc::new(Catalog {
            file: Some(file.clone()),
            entries: catalog.entries.clone(),
            end: catalog.end,
            problem: None,
            cut: false,
        }));
        Ok(())
    }

    /// Replaces the file by one holding only its header (written under a
    /// temporary name, synced, renamed), opened for writing.
    fn write_header_only(&self) -> Result<Arc<dyn VfsFile>> {
        let header = keyfilter::encode_file_header(&self.store_id);
        crate::fs::write_atomic(&*self.fs, &self.path, &header)?;
        self.fs
            .open(&self.path, OpenMode::ReadWrite)
            .map_err(|e| Error::io("open", &self.path, e))
    }

    /// Appends `bytes`, a segment's entry, after the last entry that reads
    /// whole (cutting off what follows it), and syncs it.
    /// A missing or unusable file is written anew, header first.
    pub(crate) fn append(&self, bytes: &[u8]) -> Result<()> {
        debug_assert!(self.writable);
        let head = match EntryHead::parse(bytes) {
            Ok(head) => head,
            Err(e) => {
                // Not reached: the bytes come from `KeyFilterBuilder::encode`.
                tracing::error!(error = %e, "not appending a key filter entry that does not read back");
                return Ok(());
            }
        };
        let _appending = self.append.lock();
        let catalog = self.catalog();
        let (file, at) = match (&catalog.file, catalog.end) {
            (Some(file), end) if end >= FILE_HEADER_LEN as u64 => (file.clone(), end),
            _ => (self.write_header_only()?, FILE_HEADER_LEN as u64),
        };
        let end = at + bytes.len() as u64;
        file.write_all_at(bytes, at)
            .map_err(|e| Error::io("write", &self.path, e))?;
        let size = file.size().map_err(|e| Error::io("stat", &self.path, e))?;
        if size > end {
            file.set_len(end)
                .map_err(|e| Error::io("truncate", &self.path, e))?;
        }
        file.sync_data()
            .map_err(|e| Error::io("fdatasync", &self.path, e))?;
        let mut entries = if catalog.end >= FILE_HEADER_LEN as u64 {
            catalog.entries.clone()
        } else {
            HashMap::new()
        };
        entries.insert(
            head.identity.first_seq,
            Entry {
                offset: at,
                head: Arc::new(head),
            },
        );
        *self.state.write() = Some(Arc::new(Catalog {
            file: Some(file),
            entries,
            end,
            problem: None,
            cut: false,
        }));
        Ok(())
    }
}

/// Reads the file's entries in order, up to the first that does not read
/// whole and check. Never fails: what cannot be read is not used.
pub(crate) fn read_catalog(
    fs: &dyn Vfs,
    path: &Path,
    store_id: &[u8; 16],
    writable: bool,
) -> Catalog {
    let mode = if writable {
        OpenMode::ReadWrite
    } else {
        OpenMode::Read
    };
    let file = match fs.open(path, mode) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Catalog::default(),
        Err(e) => {
            return Catalog {
                problem: Some((0, format!("cannot open it: {e}"))),
                ..Catalog::default()
            };
        }
    };
    let stop = |file: Arc<dyn VfsFile>, entries, end: u64, at: u64, problem: String| Catalog {
        file: Some(file),
        entries,
        end,
        problem: Some((at, problem)),
        cut: false,
    };
    let size = match file.size() {
        Ok(size) => size,
        Err(e) => return stop(file, HashMap::new(), 0, 0, e.to_string()),
    };
    let mut header = [0u8; FILE_HEADER_LEN];
    let header_read = if size < FILE_HEADER_LEN as u64 {
        Err(KeyFilterError::Short {
            needed: FILE_HEADER_LEN as u64,
            found: size,
        }
        .to_string())
    } else {
        file.read_exact_at(&mut header, 0)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                keyfilter::check_file_header(&header, store_id).map_err(|e| e.to_string())
            })
    };
    if let Err(problem) = header_read {
        return stop(file, HashMap::new(), 0, 0, format!("header: {problem}"));
    }
    let mut entries = HashMap::new();
    let mut at = FILE_HEADER_LEN as u64;
    let mut buf = vec![0u8; HEAD_READ];
    let mut last = None;
    let mut ahead = HeadsAhead::default();
    while at < size {
        let left = size - at;
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(HEAD_READ);
        let head = match read_head(&*file, at, left, &mut buf[..want]) {
            Ok(head) if head.len() <= left => head,
            Ok(head) => {
                let problem = format!(
                    "the entry is {} bytes; the file ends {left} bytes past its start",
                    head.len()
                );
                return Catalog {
                    cut: true,
                    ..stop(file, entries, at, at, problem)
                };
            }
            Err(Ok(needed)) => {
                let problem = format!(
                    "the entry needs {needed} bytes; the file ends {left} bytes past its start"
                );
                return Catalog {
                    cut: true,
                    ..stop(file, entries, at, at, problem)
                };
            }
            // Zeros from here to the end: an append whose length reached
            // the disk before its bytes did (a power loss), as cut short.
            Err(Err(problem)) => {
                let cut = zeros_to_end(&*file, at, size);
                return Catalog {
                    cut,
                    ..stop(file, entries, at, at, problem)
                };
            }
        };
        let len = head.len();
        ahead.after(&*file, at, len, size);
        last = Some((at, head.identity.first_seq));
        entries.insert(
            head.identity.first_seq,
            Entry {
                offset: at,
                head: Arc::new(head),
            },
        );
        at += len;
    }
    // A crash may have cut the last append short after its head reached
    // the disk: a writer checks that entry's pages, and writes it again if
    // one fails (readers check each page they read anyway).
    if writable
        && let Some((offset, first_seq)) = last
        && let Some(entry) = entries.get(&first_seq)
        && let Err(problem) = check_pages(&*file, entry)
    {
        entries.remove(&first_seq);
        return stop(file, entries, offset, offset, problem);
    }
    Catalog {
        file: Some(file),
        entries,
        end: at,
        problem: None,
        cut: false,
    }
}

/// Keys of a store's first questions whose pages are asked for ahead.
const KEYS_ADVISED: usize = 16;

/// Entries ahead whose heads are asked for before they are read.
const HEADS_AHEAD: u64 = 16;

/// Slack asked for on each side of a predicted head, per entry of
/// distance from the head it is predicted from.
const HEAD_SLACK: u64 = 512;

/// Reading the heads is a chain (each entry's length says where the next
/// one starts), one wait for the disk each when the file is not in
/// memory. The entries of a store's segments are about the same length
/// (their filters are sized by key count), so the next heads are
/// predicted from the last one's length and asked for ahead, with some
/// slack; a wrong guess costs a read of a few KiB, and the chain reads
/// what it needs either way.
#[derive(Default)]
struct HeadsAhead {
    /// Entries asked for so far, counted from the first.
    asked: u64,
    /// Entries read so far.
    read: u64,
}

impl HeadsAhead {
    /// After the head of the entry at `at`, `len` bytes long, was read.
    fn after(&mut self, file: &dyn VfsFile, at: u64, len: u64, size: u64) {
        self.read += 1;
        while self.asked < self.read + HEADS_AHEAD {
            self.asked += 1;
            let k = self.asked - self.read + 1;
            let Some(predicted) = len.checked_mul(k).and_then(|d| at.checked_add(d)) else {
                return;
            };
            let slack = HEAD_SLACK * k;
            let start = predicted.saturating_sub(slack);
            if start >= size {
                return;
            }
            let end = predicted.saturating_add(HEAD_READ as u64 + slack).min(size);
            file.will_need(start, end - start);
        }
    }
}

/// Whether the file's bytes from `at` to `size` are all zeros (false if
/// they cannot be read).
fn zeros_to_end(file: &dyn VfsFile, at: u64, size: u64) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = at;
    while pos < size {
        let n = usize::try_from(size - pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let Some(chunk) = buf.get_mut(..n) else {
            return false;
        };
        if file.read_exact_at(chunk, pos).is_err() || !crate::segment::all_zero(chunk) {
            return false;
        }
        pos += n as u64;
    }
    true
}

/// Reads `entry` whole and checks every page.
fn check_pages(file: &dyn VfsFile, entry: &Entry) -> std::result::Result<(), String> {
    let head = &entry.head;
    let mut bytes = vec![0u8; usize::try_from(head.len()).unwrap_or(usize::MAX)];
    file.read_exact_at(&mut bytes, entry.offset)
        .map_err(|e| e.to_string())?;
    let pages = bytes.get(usize::try_from(head.head_len()).unwrap_or(usize::MAX)..);
    let page_len = keyfilter::BLOCK_LEN * keyfilter::BLOCKS_PER_PAGE as usize;
    for (i, page) in pages.unwrap_or_default().chunks(page_len).enumerate() {
        head.check_page(u32::try_from(i).unwrap_or(u32::MAX), page)
            .map_err(|e| format!("entry: {e}"))?;
    }
    Ok(())
}

/// The head of the entry at `at` (`left` bytes to the end of the file),
/// read into `buf` first and, if it is longer, read again whole. An entry
/// whose head would end past the end of the file gives `Err(Ok(bytes it
/// needs))`; any other problem `Err(Err(what))`.
fn read_head(
    file: &dyn VfsFile,
    at: u64,
    left: u64,
    buf: &mut [u8],
) -> std::result::Result<EntryHead, std::result::Result<u64, String>> {
    let failed = |e: std::io::Error| Err(e.to_string());
    file.read_exact_at(buf, at).map_err(failed)?;
    let parsed = match EntryHead::parse(buf) {
        Err(KeyFilterError::Short { needed, .. }) if needed > left => return Err(Ok(needed)),
        Err(KeyFilterError::Short { needed, .. }) if needed > buf.len() as u64 => {
            let mut head = vec![0u8; usize::try_from(needed).unwrap_or(usize::MAX)];
            file.read_exact_at(&mut head, at).map_err(failed)?;
            EntryHead::parse(&head)
        }
        other => other,
    };
    parsed.map_err(|e| Err(format!("entry: {e}")))
}
