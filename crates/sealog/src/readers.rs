//! What readers see: the published [`View`] of the segments, and the count
//! of visible records that followers of the log wait on.
//!
//! Only the committer and the sealer change what readers see, and only
//! through [`Readers`]: the committer adds a new open segment at a roll and
//! makes committed records visible ([`Readers::publish`]); the sealer
//! replaces an open segment with its sealed form ([`Readers::seal`]). A
//! view is an immutable snapshot (`Arc<View>`): a query keeps the one it
//! started with however the log moves on.
//!
//! Invariant: the view lists the sealed segments in seq order, then the
//! open ones in seq order; a record is in at most one of them; the visible
//! count never decreases and never exceeds what the committer published.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::error::Result;
use crate::segment::{OpenSegment, SealedSegment};

/// The segments readers see: sealed ones, then the open ones (at most a
/// few: the active segment and any waiting to be sealed).
#[derive(Debug, Default)]
pub(crate) struct View {
    pub sealed: Vec<Arc<SealedSegment>>,
    pub open: Vec<Arc<OpenSegment>>,
}

/// A record's segment and ordinal, found in a view.
pub(crate) enum Located<'a> {
    Sealed(&'a SealedSegment, u64),
    Open(&'a OpenSegment, u64),
}

impl View {
    /// Number of visible records.
    pub(crate) fn len(&self) -> u64 {
        if let Some(last) = self.open.last() {
            return last.header.first_seq + last.data.read().len();
        }
        self.sealed.last().map_or(0, |s| s.footer.end_seq())
    }

    /// The seq after the last sealed record (0 if none is sealed).
    pub(crate) fn sealed_end(&self) -> u64 {
        self.sealed.last().map_or(0, |s| s.footer.end_seq())
    }

    /// Finds the segment holding `seq`.
    pub(crate) fn locate(&self, seq: u64) -> Option<Located<'_>> {
        for open in self.open.iter().rev() {
            if seq >= open.header.first_seq {
                let ordinal = seq - open.header.first_seq;
                return (ordinal < open.data.read().len()).then_some(Located::Open(open, ordinal));
            }
        }
        let idx = self.sealed.partition_point(|s| s.header.first_seq <= seq);
        let segment = self.sealed.get(idx.checked_sub(1)?)?;
        let ordinal = seq - segment.header.first_seq;
        (ordinal < segment.footer.record_count).then_some(Located::Sealed(segment, ordinal))
    }

    /// A copy of at most `max` leaf hashes of the open segments, from leaf
    /// `from` on, all from the open segment holding `from` (empty if none
    /// does): taken under a short hold of that segment's data lock.
    pub(crate) fn open_leaves(&self, from: u64, max: usize) -> Vec<sealog_format::Hash> {
        let Some(open) = self
            .open
            .iter()
            .filter(|o| o.header.first_seq <= from)
            .max_by_key(|o| o.header.first_seq)
        else {
            return Vec::new();
        };
        let at = usize::try_from(from - open.header.first_seq).unwrap_or(usize::MAX);
        let data = open.data.read();
        let end = data.leaves.len().min(at.saturating_add(max));
        data.leaves
            .range(at, end)
            .map(|hashes| hashes.copied().collect())
            .unwrap_or_default()
    }

    /// The first seq of the first segment that starts after `seq`.
    pub(crate) fn next_start(&self, seq: u64) -> Option<u64> {
        let sealed = self
            .sealed
            .iter()
            .map(|s| s.header.first_seq)
            .find(|&first| first > seq);
        let open = self
            .open
            .iter()
            .map(|s| s.header.first_seq)
            .find(|&first| first > seq);
        match (sealed, open) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The leaf hashes of records `[first, first + count)`, hashed from
    /// the records (for leaves `tree/leaves` does not store).
    pub(crate) fn leaves_from_records(
        &self,
        first: u64,
        count: usize,
    ) -> Result<Vec<sealog_format::Hash>> {
        let mut leaves = Vec::with_capacity(count);
        for seq in first..first + count as u64 {
            let Some(record) = self.record_bytes(seq)? else {
                return Err(crate::Error::Config(format!(
                    "record {seq} cannot be read to compute its leaf hash, which \
                     tree/leaves does not store"
                )));
            };
            let leaf = sealog_format::merkle::leaf_hash(&record);
            leaves.push(leaf);
        }
        Ok(leaves)
    }

    /// The exact bytes of record `seq`, if visible.
    pub(crate) fn record_bytes(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        match self.locate(seq) {
            None => Ok(None),
            Some(Located::Sealed(s, ordinal)) => {
                Ok(s.read_record(ordinal)?.map(std::borrow::Cow::into_owned))
            }
            Some(Located::Open(s, ordinal)) => s.read_record(ordinal),
        }
    }
}

/// The published view and the visible-record count.
pub(crate) struct Readers {
    view: RwLock<Arc<View>>,
    /// Number of records visible to readers, for followers of the log.
    visible: Mutex<u64>,
    /// Signalled when `visible` grows (and when the indexer is stopped).
    grew: Condvar,
}

impl Readers {
    /// Readers of `view`, whose `visible` first records are visible.
    pub(crate) fn new(view: View, visible: u64) -> Readers {
        Readers {
            view: RwLock::new(Arc::new(view)),
            visible: Mutex::new(visible),
            grew: Condvar::new(),
        }
    }

    /// The current view.
    pub(crate) fn snapshot(&self) -> Arc<View> {
        self.view.read().clone()
    }

    /// Adds a new open segment (the committer, at a roll) after the others.
    pub(crate) fn add_open(&self, segment: Arc<OpenSegment>) {
        let mut view = self.view.write();
        let mut open = view.open.clone();
        open.push(segment);
        *view = Arc::new(View {
            sealed: view.sealed.clone(),
            open,
        });
    }

    /// Replaces the open segment `open` with its sealed form (the sealer).
    pub(crate) fn seal(&self, open: &Arc<OpenSegment>, sealed: SealedSegment) {
        let mut view = self.view.write();
        let mut next = View {
            sealed: view.sealed.clone(),
            open: view
                .open
                .iter()
                .filter(|s| !Arc::ptr_eq(s, open))
                .cloned()
                .collect(),
        };
        next.sealed.push(Arc::new(sealed));
        *view = Arc::new(next);
    }

    /// Replaces sealed segments with the segments of the same first seq in
    /// `replacements` (local segments removed after they were archived,
    /// replaced by their pruned form).
    pub(crate) fn replace_sealed(&self, replacements: Vec<Arc<SealedSegment>>) {
        let mut view = self.view.write();
        let sealed = view
            .sealed
            .iter()
            .map(|s| {
                replacements
                    .iter()
                    .find(|r| r.header.first_seq == s.header.first_seq)
                    .unwrap_or(s)
                    .clone()
            })
            .collect();
        *view = Arc::new(View {
            sealed,
            open: view.open.clone(),
        });
    }

    /// Records that every record before `end_seq` is visible, and wakes the
    /// followers if that is more than before.
    pub(crate) fn publish(&self, end_seq: u64) {
        let mut visible = self.visible.lock();
        if end_seq <= *visible {
            return;
        }
        *visible = end_seq;
        drop(visible);
        self.grew.notify_all();
    }

    /// Blocks until more than `after` records are visible, or `timeout`
    /// passes; returns the number visible.
    pub(crate) fn wait_for_records(&self, after: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut visible = self.visible.lock();
        while *visible <= after {
            if self.grew.wait_until(&mut visible, deadline).timed_out() {
                break;
            }
        }
        *visible
    }

    /// Blocks until more than `seen` records are visible or `stop` is set
    /// (looking at least once a second); returns the number visible, or
    /// `None` once stopped. Set `stop`, then call [`Readers::wake_all`].
    pub(crate) fn wait_beyond(&self, seen: u64, stop: &AtomicBool) -> Option<u64> {
        let mut visible = self.visible.lock();
        while *visible <= seen && !stop.load(Ordering::Acquire) {
            self.grew.wait_for(&mut visible, Duration::from_secs(1));
        }
        (!stop.load(Ordering::Acquire)).then_some(*visible)
    }

    /// Wakes every waiter, under the lock they wait with (so that a flag
    /// set before the call is seen: no lost wake-up).
    pub(crate) fn wake_all(&self) {
        let _visible = self.visible.lock();
        self.grew.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_visible_count_only_grows_and_wakes_followers() {
        let readers = Arc::new(Readers::new(View::default(), 5));
        assert_eq!(readers.wait_for_records(5, Duration::from_millis(1)), 5);
        readers.publish(3);
        assert_eq!(readers.wait_for_records(0, Duration::ZERO), 5);
        let follower = {
            let readers = readers.clone();
            std::thread::spawn(move || readers.wait_for_records(5, Duration::from_secs(30)))
        };
        std::thread::sleep(Duration::from_millis(20));
        readers.publish(9);
        assert_eq!(follower.join().unwrap(), 9);
    }

    #[test]
    fn a_stopped_wait_returns_none() {
        let readers = Arc::new(Readers::new(View::default(), 0));
        let stop = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (readers, stop) = (readers.clone(), stop.clone());
            std::thread::spawn(move || readers.wait_beyond(0, &stop))
        };
        std::thread::sleep(Duration::from_millis(20));
        stop.store(true, Ordering::Release);
        readers.wake_all();
        assert_eq!(waiter.join().unwrap(), None);
        assert_eq!(Readers::new(View::default(), 4).wait_beyond(3, &stop), None);
        let go = AtomicBool::new(false);
        assert_eq!(
            Readers::new(View::default(), 4).wait_beyond(3, &go),
            Some(4)
        );
    }
}
