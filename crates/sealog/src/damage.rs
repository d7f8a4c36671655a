//! Damage: records a store cannot return, and why.
//!
//! A store is opened only if what is cheap to check holds (segment
//! numbering, headers, footers, the links between segments, the leaf file
//! and the newest checkpoint: see [`crate::Store::open_read_only`]), and a
//! read that meets a bad frame or record fails with a
//! [`crate::Error::Corruption`] naming the file, byte offset and seq. No
//! read ever ends early or skips records without saying so.
//!
//! A read-only open with [`OnDamage::ReadAround`] is the one exception, and
//! an explicit one: it opens a damaged store for forensics, reads skip what
//! cannot be read, and every skipped range is listed by
//! [`crate::Store::damage`] as a [`Damage`] — the seqs concerned and the
//! [`Corruption`] that explains them. The list starts with what the open
//! found and grows as reads meet more.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use parking_lot::Mutex;

use crate::error::{Corruption, CorruptionKind, Error, Location};
use crate::pruned::PrunedSegment;

/// What a read-only open does with damage it finds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OnDamage {
    /// Refuse to open a damaged store, and fail any read that meets damage
    /// (the default, and the only choice for a store opened for writing).
    #[default]
    Refuse,
    /// Open a damaged store read-only and read around the damage: reads
    /// return every record that can be read and skip the rest, and
    /// [`crate::Store::damage`] lists what was skipped and why. For
    /// forensics and for saving what is left; a caller should show the
    /// list to whoever reads the results.
    ReadAround,
}

/// Records a store could not read, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// What is wrong, and where (file, byte offset, seq).
    pub corruption: Corruption,
    /// The first seq the damage makes unreadable.
    pub first_seq: u64,
    /// One past the last seq it makes unreadable, when known. `None` when
    /// damage at the end of the last segment hides how many records
    /// followed it. Equal to `first_seq` for damage that takes no record
    /// away (a leaf file or checkpoint that disagrees with the segments).
    pub end_seq: Option<u64>,
}

impl Damage {
    pub(crate) fn new(corruption: Corruption, first_seq: u64, end_seq: Option<u64>) -> Damage {
        Damage {
            corruption,
            first_seq,
            end_seq: end_seq.map(|e| e.max(first_seq)),
        }
    }

    /// The seqs that cannot be read, when their end is known.
    pub fn seqs(&self) -> Option<Range<u64>> {
        self.end_seq.map(|end| self.first_seq..end)
    }

    /// Number of records that cannot be read, when known.
    pub fn records(&self) -> Option<u64> {
        self.end_seq.map(|end| end - self.first_seq)
    }

    /// Whether `seq` is one of the records this damage makes unreadable.
    pub fn covers(&self, seq: u64) -> bool {
        seq >= self.first_seq && self.end_seq.is_none_or(|end| seq < end)
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.end_seq {
            Some(end) if end == self.first_seq => {
                write!(f, "no record skipped, but {}", self.corruption)
            }
            Some(end) if end == self.first_seq + 1 => {
                write!(
                    f,
                    "seq {} (1 record) unreadable: {}",
                    self.first_seq, self.corruption
                )
            }
            Some(end) => write!(
                f,
                "seqs {} to {} ({} records) unreadable: {}",
                self.first_seq,
                end - 1,
                end - self.first_seq,
                self.corruption
            ),
            None => write!(
                f,
                "seqs from {} on (how many is unknown) unreadable: {}",
                self.first_seq, self.corruption
            ),
        }
    }
}

/// The damage a store reading around it has found so far.
#[derive(Debug, Default)]
pub(crate) struct DamageLog {
    entries: Mutex<Vec<Damage>>,
}

impl DamageLog {
    pub(crate) fn new(entries: Vec<Damage>) -> DamageLog {
        DamageLog {
            entries: Mutex::new(entries),
        }
    }

    /// Adds damage found outside a read.
    pub(crate) fn push(&self, damage: Damage) {
        self.entries.lock().push(damage);
    }

    pub(crate) fn list(&self) -> Vec<Damage> {
        self.entries.lock().clone()
    }

    /// The entry that makes `seq` unreadable, if one does.
    pub(crate) fn covering(&self, seq: u64) -> Option<Damage> {
        self.entries.lock().iter().find(|d| d.covers(seq)).cloned()
    }

    /// Notes that a read of `seq` failed with `error`. Corruption is kept
    /// (a run of unreadable records of one file becomes one entry) and the
    /// read goes on; anything else (an I/O failure) is returned, since it
    /// says nothing about the records.
    pub(crate) fn met(&self, seq: u64, error: Error) -> Result<(), Error> {
        let Error::Corruption(corruption) = error else {
            return Err(error);
        };
        let mut entries = self.entries.lock();
        if entries.iter().any(|d| d.covers(seq)) {
            return Ok(());
        }
        if let Some(last) = entries.last_mut()
            && last.corruption.location.file == corruption.location.file
        {
            // A run read in either order (a query reads newest first).
            if last.end_seq == Some(seq) {
                last.end_seq = Some(seq + 1);
                return Ok(());
            }
            if last.end_seq.is_some() && last.first_seq == seq + 1 {
                last.first_seq = seq;
                return Ok(());
            }
        }
        tracing::info!(seq, %corruption, "skipping an unreadable record");
        entries.push(Damage::new(*corruption, seq, Some(seq + 1)));
        Ok(())
    }
}

/// Segments the store knows are not in its directory although they belong
/// to the log: segments removed by a retention policy after their copies
/// were archived and read back, listed in `pruned.log`
/// ([`crate::pruned`]). A gap in the segment numbering that this set
/// explains is "archived, not local", not "missing": the continuity check
/// does not report it as damage, and checks the chain across it with the
/// headers and footers the list keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KnownAbsent {
    segments: BTreeMap<u64, PrunedSegment>,
}

impl KnownAbsent {
    /// The segments recorded as pruned in the store at `dir`.
    pub(crate) fn load(
        fs: &dyn crate::fs::Vfs,
        dir: &std::path::Path,
    ) -> Result<KnownAbsent, Error> {
        Ok(KnownAbsent::of(crate::pruned::load(fs, dir)?))
    }

    pub(crate) fn of(list: Vec<PrunedSegment>) -> KnownAbsent {
        KnownAbsent {
            segments: list.into_iter().map(|p| (p.header.segment_no, p)).collect(),
        }
    }

    /// Whether every segment numbered in `segment_nos` is known to be
    /// absent (an empty range is not).
    pub(crate) fn covers(&self, segment_nos: Range<u64>) -> bool {
        !segment_nos.is_empty()
            && segment_nos
                .into_iter()
                .all(|n| self.segments.contains_key(&n))
    }

    /// The pruned segments numbered in `segment_nos`, in order.
    pub(crate) fn run(&self, segment_nos: Range<u64>) -> impl Iterator<Item = &PrunedSegment> {
        self.segments.range(segment_nos).map(|(_, p)| p)
    }

    /// Every pruned segment, in log order.
    pub(crate) fn all(&self) -> impl Iterator<Item = &PrunedSegment> {
        self.segments.values()
    }

    /// Checks that the pruned segments numbered `segment_nos` start at seq
    /// `seq` with chain value `chain` and follow each other; returns the
    /// seq and chain value after them. The first break is corruption
    /// naming `pruned.log` and the segment.
    pub(crate) fn link_run(
        &self,
        segment_nos: Range<u64>,
        mut seq: u64,
        mut chain: sealog_format::Hash,
    ) -> Result<(u64, sealog_format::Hash), Error> {
        for p in self.run(segment_nos) {
            let location = || Location::file(crate::pruned::PRUNED_FILE).seq(p.first_seq());
            if p.first_seq() != seq {
                return Err(Corruption::new(
                    location(),
                    CorruptionKind::Layout(format!(
                        "pruned segment {} starts at seq {} where seq {seq} was expected",
                        p.name(),
                        p.first_seq()
                    )),
                )
                .into());
            }
            if p.header.chain_in != chain {
                return Err(Corruption::new(
                    location(),
                    CorruptionKind::HashMismatch {
                        what: "chain value of a pruned segment's header (previous segment's \
                               chain head)",
                        stored: p.header.chain_in,
                        computed: chain,
                    },
                )
                .into());
            }
            seq = p.end_seq();
            chain = p.footer.chain_head;
        }
        Ok((seq, chain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corruption(file: &str, seq: u64) -> Error {
        Corruption::new(
            Location::file(file).at(128).seq(seq),
            CorruptionKind::ZeroedFrame { nonzero: 0 },
        )
        .into()
    }

    #[test]
    fn a_run_of_unreadable_records_of_one_file_is_one_entry() {
        let log = DamageLog::default();
        for seq in 10..20 {
            log.met(seq, corruption("segments/a.seg", 10)).unwrap();
        }
        log.met(20, corruption("segments/b.seg", 20)).unwrap();
        log.met(15, corruption("segments/a.seg", 15)).unwrap();
        let list = log.list();
        assert_eq!(list.len(), 2, "{list:?}");
        assert_eq!(list[0].seqs(), Some(10..20));
        assert_eq!(list[1].seqs(), Some(20..21));
        assert!(
            list[0]
                .to_string()
                .starts_with("seqs 10 to 19 (10 records) unreadable: ")
        );
    }

    #[test]
    fn an_io_failure_is_not_damage() {
        let log = DamageLog::default();
        let io = Error::io("read", "segments/a.seg", std::io::Error::other("EIO"));
        assert!(log.met(3, io).is_err());
        assert!(log.list().is_empty());
    }
}
