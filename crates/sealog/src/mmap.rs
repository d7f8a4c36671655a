//! Read-only memory maps of sealed segment files (and of the open
//! segments' index snapshots) — the engine's only `unsafe` code.
//!
//! Only sealed segments are mapped: sealog never writes to a file after its
//! footer is durable, so the mapped bytes do not change under the reader.
//! The one other kind of file mapped, an open segment's index snapshot
//! (`segments/<seq>.oidx`), is only ever appended to and removed: the bytes
//! of the length mapped do not change either.
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
        // files, which sealog never modifies after sealing, and of index
        // snapshots, which it only appends to (module docs). A
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
