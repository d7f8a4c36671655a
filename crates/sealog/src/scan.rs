//! [`Scan`]: the records of a range of seqs, oldest first, from a snapshot
//! of the store ([`crate::Store::scan`]).

use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use sealog_format::{Record, record};

use crate::error::Result;
use crate::readers::{Located, View};
use crate::store::Inner;

pub(crate) fn decode_checked(view: &View, seq: u64, bytes: &[u8]) -> Result<Record> {
    let location = || match view.locate(seq) {
        Some(Located::Sealed(s, _)) => crate::error::Location::file(&s.name).seq(seq),
        Some(Located::Open(s, _)) => crate::error::Location::file(&s.name).seq(seq),
        None => crate::error::Location::default().seq(seq),
    };
    let record = record::decode_record(bytes).map_err(|e| {
        crate::error::Corruption::new(location(), crate::error::CorruptionKind::Record(e))
    })?;
    if record.seq != seq {
        return Err(crate::error::Corruption::new(
            location(),
            crate::error::CorruptionKind::SeqMismatch {
                expected: seq,
                found: record.seq,
            },
        )
        .into());
    }
    Ok(record)
}

/// An iterator over records, oldest first, from a snapshot of the store.
///
/// A record that cannot be read is an `Err` item (naming the file, byte
/// offset and seq) and the last item: the iteration never just stops
/// early. On a store reading around damage such records are skipped and
/// listed by [`Store::damage`](crate::Store::damage).
pub struct Scan {
    view: Arc<View>,
    inner: Arc<Inner>,
    next: u64,
    end: u64,
}

impl Scan {
    /// The records of `range` (cut at the snapshot's end) in `view`.
    pub(crate) fn new(view: Arc<View>, inner: Arc<Inner>, range: impl RangeBounds<u64>) -> Scan {
        let len = view.len();
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => len,
        }
        .min(len);
        Scan {
            view,
            inner,
            next: start,
            end,
        }
    }
}

impl Iterator for Scan {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.next < self.end {
            let seq = self.next;
            self.next += 1;
            let read = match self.view.record_bytes(seq) {
                Ok(Some(bytes)) => decode_checked(&self.view, seq, &bytes),
                Ok(None) => {
                    // A gap (below the end: `end` is at most the view's
                    // length); reading around damage, go on after it.
                    if self.inner.damage.is_some() {
                        // A gap error is corruption, which reading around
                        // damage notes and never refuses.
                        let _ = self.inner.read_around(seq, self.inner.gap_error(seq));
                        self.next = self.view.next_start(seq).unwrap_or(self.end);
                        continue;
                    }
                    Err(self.inner.gap_error(seq))
                }
                Err(e) => Err(e),
            };
            match read {
                Ok(record) => return Some(Ok(record)),
                Err(e) => match self.inner.read_around(seq, e) {
                    Ok(()) => continue,
                    Err(e) => {
                        self.next = self.end;
                        return Some(Err(e));
                    }
                },
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.end.saturating_sub(self.next)).unwrap_or(usize::MAX);
        (0, Some(n))
    }
}
