//! Read-only memory maps of sealed segment files (and of the open
//! segments' index snapshots and committed frames) — the engine's only
//! `unsafe` code.
//!
//! Sealed segments are mapped: sealog never writes to a file after its
//! footer is durable, so the mapped bytes do not change under the reader.
//! An open segment's index snapshot (`segments/<seq>.oidx`) is only ever
//! appended to and removed: the bytes of the length mapped do not change
//! either. An open segment itself is mapped only to check the frames its
//! snapshot covers, and only those bytes are read: they are committed and
//! synced, and neither appends, nor the seal (which cuts the file after
//! its last frame), nor recovery (which only cuts or zeroes what follows
//! the last complete batch) changes them.
//! Another process truncating or rewriting a mapped file is outside that
//! contract (it would be tampering); the reader then sees different bytes,
//! which every reader checks (frame CRCs, bounds on each offset), or the
//! process receives `SIGBUS` if the file shrank. Verification re-reads and
//! recomputes everything and never trusts what a map returned earlier.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::ops::Deref;

/// The bytes of a whole file, mapped or (for an empty file or a test
/// filesystem) owned.
#[derive(Debug)]
pub struct Mapped(Inner);

#[derive(Debug)]
enum Inner {
    Map(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Mapped {
    /// Maps `file` read-only.
    pub fn map(file: &File) -> io::Result<Mapped> {
        let len = file.metadata()?.len();
        if len == 0 {
            return Ok(Mapped(Inner::Owned(Vec::new())));
        }
        // The length is given, so the map asks the kernel for it once (a
        // query maps a sidecar per sealed segment it reaches).
        let len = usize::try_from(len).map_err(|_| {
            io::Error::new(
                io::ErrorKind::FileTooLarge,
                "the file is larger than the address space",
            )
        })?;
        // SAFETY: the map is read-only and only ever made of sealed segment
        // files, which sealog never modifies after sealing, of index
        // snapshots, which it only appends to, and of open segments whose
        // committed frames alone are read (module docs). A
        // concurrent external modification cannot cause reads outside the
        // mapping: every access goes through the `&[u8]` of the mapping's
        // length, and each reader bounds-checks offsets read from the bytes.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(file)? };
        Ok(Mapped(Inner::Map(map)))
    }

    /// Tells the kernel that bytes `offset..offset + len` (clamped to the
    /// map) will be read soon, so that it starts reading the pages not in
    /// the page cache now, together, instead of one fault at a time. Only
    /// advice: it changes no byte, and a failure is ignored (the reads
    /// fault the pages in as they would without it). Owned bytes need none.
    pub fn will_need(&self, offset: usize, len: usize) {
        if let Inner::Map(map) = &self.0 {
            let end = offset.saturating_add(len).min(map.len());
            if offset < end {
                let _ = map.advise_range(memmap2::Advice::WillNeed, offset, end - offset);
            }
        }
    }

    /// Whether every page of bytes `offset..offset + len` (clamped to the
    /// map) is in memory now, so that reading them waits for no disk;
    /// `false` when the kernel does not say. Owned bytes are in memory.
    pub fn resident(&self, offset: u64, len: u64) -> bool {
        let map = match &self.0 {
            Inner::Map(map) => map,
            Inner::Owned(_) => return true,
        };
        let (Ok(offset), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else {
            return false;
        };
        let end = offset.saturating_add(len).min(map.len());
        if offset >= end {
            return true;
        }
        resident(map, offset, end)
    }

    /// Whether every page of the whole map is in memory now (asked of the
    /// kernel a thousand pages at a time; `false` when it does not say).
    /// Owned bytes are in memory.
    pub fn resident_whole(&self) -> bool {
        match &self.0 {
            Inner::Map(map) => resident_all(map, 0, map.len()),
            Inner::Owned(_) => true,
        }
    }

    /// Whether `samples` pages spread evenly over bytes `offset..offset +
    /// len` (its first and last among them) are all in memory: a cheap
    /// guess at [`Mapped::resident`] for a range too large to ask about
    /// page by page.
    pub fn resident_sampled(&self, offset: u64, len: u64, samples: u64) -> bool {
        if len == 0 || samples == 0 {
            return true;
        }
        let last = len - 1;
        (0..samples).all(|i| {
            let at = offset + last * i / samples.saturating_sub(1).max(1);
            self.resident(at, 1)
        })
    }

    /// Drops the map's pages from this process's page tables and then
    /// `file`'s pages from the page cache, so that the map reads as a cold
    /// one, and makes a read fault in only the page it touches (for tests
    /// of read-ahead: a page a reader touched stays in the cache while it
    /// is mapped, and the kernel's read-around of a fault would bring a
    /// small file back whole).
    #[cfg(test)]
    pub(crate) fn evict(&self, file: &File) {
        if let Inner::Map(map) = &self.0 {
            // SAFETY: a shared read-only map of a file: dropping its page
            // table entries makes the next read fault the page in again,
            // with the same bytes.
            unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) }.unwrap();
            map.advise(memmap2::Advice::Random).unwrap();
        }
        rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    }

    /// Owned bytes presented like a map (used by test filesystems).
    pub fn from_vec(bytes: Vec<u8>) -> Mapped {
        Mapped(Inner::Owned(bytes))
    }
}

impl Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Inner::Map(m) => m,
            Inner::Owned(v) => v,
        }
    }
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// The system's page size, 0 if it cannot be had.
#[cfg(target_os = "linux")]
fn page_size() -> usize {
    // SAFETY: `sysconf` reads a constant of the system.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(0)
}

/// `mincore(2)` over the pages of `map[start..end]`, at most 64 of them
/// (a section larger than this is not looked at: it is asked for); `false`
/// if it fails or they are more.
#[cfg(target_os = "linux")]
fn resident(map: &memmap2::Mmap, start: usize, end: usize) -> bool {
    const MAX_PAGES: usize = 64;
    let page = page_size();
    if page == 0 {
        return false;
    }
    let base = map.as_ptr() as usize;
    let pages = (base + end).div_ceil(page) - (base + start) / page;
    pages <= MAX_PAGES && resident_all(map, start, end)
}

/// `mincore(2)` over every page of `map[start..end]`, a thousand pages a
/// call; `false` if one fails or a page is not in memory.
#[cfg(target_os = "linux")]
fn resident_all(map: &memmap2::Mmap, start: usize, end: usize) -> bool {
    const CHUNK: usize = 1024;
    let page = page_size();
    if page == 0 {
        return false;
    }
    // A map starts on a page boundary.
    let base = map.as_ptr() as usize;
    let mut first = (base + start) / page * page;
    let last = (base + end).div_ceil(page) * page;
    let mut vec = [0u8; CHUNK];
    while first < last {
        let pages = ((last - first) / page).min(CHUNK);
        // SAFETY: `first..first + pages * page` lies within the mapping (its
        // pages hold bytes of `start..end`, `end` clamped to its length by
        // the callers), and `vec` has room for one byte per page.
        let rc = unsafe {
            libc::mincore(
                first as *mut libc::c_void,
                pages * page,
                vec.as_mut_ptr().cast(),
            )
        };
        if rc != 0 || !vec[..pages].iter().all(|b| b & 1 == 1) {
            return false;
        }
        first += pages * page;
    }
    true
}

#[cfg(not(target_os = "linux"))]
fn resident(_: &memmap2::Mmap, _: usize, _: usize) -> bool {
    false
}

#[cfg(not(target_os = "linux"))]
fn resident_all(_: &memmap2::Mmap, _: usize, _: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_just_written_and_read_are_resident() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 3 * 4096 + 100]).unwrap();
        let map = Mapped::map(&File::open(&path).unwrap()).unwrap();
        let sum: u64 = map.iter().map(|&b| u64::from(b)).sum();
        assert_eq!(sum, 7 * (3 * 4096 + 100));
        assert_eq!(map.resident(0, 10), cfg!(target_os = "linux"));
        assert_eq!(map.resident(4000, 8000), cfg!(target_os = "linux"));
        // Clamped to the map; an empty range is at hand.
        assert_eq!(map.resident(3 * 4096, 1 << 40), cfg!(target_os = "linux"));
        assert!(map.resident(1 << 40, 5));
        // More pages than are looked at: not said to be.
        std::fs::write(&path, vec![1u8; 80 * 4096]).unwrap();
        let map = Mapped::map(&File::open(&path).unwrap()).unwrap();
        assert_eq!(map.iter().filter(|&&b| b == 1).count(), 80 * 4096);
        assert!(!map.resident(0, 80 * 4096));
        assert!(Mapped::from_vec(Vec::new()).resident(0, 100));
        // Sampled: every page of this map is in memory.
        assert_eq!(
            map.resident_sampled(0, 80 * 4096, 8),
            cfg!(target_os = "linux")
        );
        assert!(map.resident_sampled(0, 0, 8));
        // Whole: every page, however many.
        assert_eq!(map.resident_whole(), cfg!(target_os = "linux"));
        assert!(Mapped::from_vec(vec![1]).resident_whole());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_map_with_a_page_evicted_is_not_resident_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        // More pages than one call asks about.
        std::fs::write(&path, vec![3u8; 1500 * 4096]).unwrap();
        let file = File::open(&path).unwrap();
        let map = Mapped::map(&file).unwrap();
        assert_eq!(map.iter().filter(|&&b| b == 3).count(), 1500 * 4096);
        assert!(map.resident_whole());
        // Written back first: dirty pages stay in the cache.
        file.sync_all().unwrap();
        map.evict(&file);
        assert!(!map.resident_whole());
        // One page read back (read-around is off after `evict`): the rest
        // is still out.
        assert_eq!(map[1400 * 4096], 3);
        assert!(map.resident(1400 * 4096, 1));
        assert!(!map.resident_whole());
    }
}
