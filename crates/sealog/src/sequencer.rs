//! The sequencer: the log lock and what it guards.
//!
//! Appenders come here with a batch encoded outside any lock
//! ([`EncodedBatch`]); under the lock the batch gets its seqs and recorded
//! time, its hashes are finished, the chain is extended and its frames are
//! queued for the committer, placed in the active segment (a batch that
//! does not fit starts a new segment: a *roll*). The committer takes
//! everything queued at once as one commit *generation*
//! ([`Sequencer::next_group`]).
//!
//! Invariants, all kept under the one lock:
//! - seqs are dense and assigned once, in queue order; the chain value is
//!   the link of every queued record, in seq order;
//! - recorded times never decrease;
//! - the queue lists frames in seq order, each placed right after the one
//!   before in its segment, and no batch is split across segments;
//! - once a failure is latched or the store is closing, nothing more is
//!   queued.

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use sealog_format::segment::{HEADER_LEN, SegmentHeader};
use sealog_format::{Hash, Timestamp};

use crate::batch::EncodedBatch;
use crate::error::{Error, Result};
use crate::options::Durability;
use crate::progress::{Failure, Progress};
use crate::store::Receipt;

/// What the sequencer needs to know of the store; fixed at open.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Written into the header of every new segment.
    pub store_id: [u8; 16],
    /// One past the last byte frames may use in a segment.
    pub segment_end: u64,
    /// Roll a segment holding records once it is this old.
    pub max_age: Option<Duration>,
}

/// Where the log ends when the store is opened.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Start {
    pub next_seq: u64,
    pub last_recorded_at: Timestamp,
    pub chain: Hash,
    /// The active segment: its number, the end of its frames, its records.
    pub segment_no: u64,
    pub write_pos: u64,
    pub records: u64,
}

/// The log lock and the state it guards.
pub(crate) struct Sequencer {
    limits: Limits,
    state: Mutex<LogState>,
    /// Signals the committer that work is queued (or that it should stop).
    work_ready: Condvar,
}

struct LogState {
    next_seq: u64,
    last_recorded_at: Timestamp,
    chain: Hash,
    active: ActiveSegment,
    pending: Group,
    failed: Option<Failure>,
    closing: bool,
    /// The commit generation new appends join (see [`crate::progress`]).
    generation: u64,
}

/// Where the sequencer places the next frames.
struct ActiveSegment {
    segment_no: u64,
    write_pos: u64,
    records: u64,
    started: Instant,
}

/// What an appender waits for once its batch is queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket {
    /// One past the batch's last seq.
    pub end_seq: u64,
    /// The commit generation the batch joined.
    pub generation: u64,
}

/// Frames queued for the committer: one commit generation once taken.
#[derive(Default)]
pub(crate) struct Group {
    /// The commit generation these frames form.
    pub generation: u64,
    /// In queue order.
    pub chunks: Vec<Chunk>,
    /// Some append in the group wants a sync.
    pub sync: bool,
    /// One past the last queued seq.
    pub end_seq: u64,
}

/// Contiguous bytes for one segment (one buffer per batch, written with one
/// vectored write), or the start of a new segment.
pub(crate) struct Chunk {
    pub segment_no: u64,
    /// Set when this chunk starts a new segment.
    pub new_segment: Option<SegmentHeader>,
    pub offset: u64,
    /// Total bytes of `buffers`.
    pub len: u64,
    pub buffers: Vec<Vec<u8>>,
    pub records: Vec<QueuedRecord>,
}

/// What readers need to know about a queued record once it commits.
pub(crate) struct QueuedRecord {
    pub offset: u32,
    pub frame_len: u32,
    pub event_time: i64,
    pub recorded_at: Timestamp,
    pub leaf: Hash,
    pub chain: Hash,
}

impl Group {
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Whether the group holds records (and not only a roll or a sync).
    pub(crate) fn has_records(&self) -> bool {
        self.chunks.iter().any(|c| !c.records.is_empty())
    }
}

impl LogState {
    /// Starts a new segment at the next seq.
    fn roll(&mut self, store_id: [u8; 16]) {
        let segment_no = self.active.segment_no + 1;
        let header = SegmentHeader {
            store_id,
            segment_no,
            first_seq: self.next_seq,
            chain_in: self.chain,
            created_at: Timestamp::now(),
        };
        self.active = ActiveSegment {
            segment_no,
            write_pos: HEADER_LEN as u64,
            records: 0,
            started: Instant::now(),
        };
        self.pending.chunks.push(Chunk {
            segment_no,
            new_segment: Some(header),
            offset: HEADER_LEN as u64,
            len: 0,
            buffers: Vec::new(),
            records: Vec::new(),
        });
        self.pending.end_seq = self.next_seq;
    }

    /// Refuses new work once a failure is latched or the store is closing.
    fn check_open(&self) -> Result<()> {
        if let Some(failure) = &self.failed {
            return Err(failure.to_error());
        }
        if self.closing {
            return Err(Error::Closed);
        }
        Ok(())
    }
}

impl Sequencer {
    pub(crate) fn new(limits: Limits, start: Start) -> Sequencer {
        Sequencer {
            limits,
            state: Mutex::new(LogState {
                next_seq: start.next_seq,
                last_recorded_at: start.last_recorded_at,
                chain: start.chain,
                active: ActiveSegment {
                    segment_no: start.segment_no,
                    write_pos: start.write_pos,
                    records: start.records,
                    started: Instant::now(),
                },
                pending: Group::default(),
                failed: None,
                closing: false,
                generation: 0,
            }),
            work_ready: Condvar::new(),
        }
    }

    /// Sequences a batch: gives it its seqs and recorded time, finishes its
    /// hashes, extends the chain and queues its frames. Returns the
    /// receipts and what to wait for.
    pub(crate) fn append(
        &self,
        batch: EncodedBatch,
        durability: Durability,
    ) -> Result<(Vec<Receipt>, Ticket)> {
        let count = batch.len();
        let len = batch.byte_len();
        let mut log = self.state.lock();
        log.check_open()?;
        let roll = log.active.records > 0 && log.active.write_pos + len > self.limits.segment_end;
        let base = if roll {
            HEADER_LEN as u64
        } else {
            log.active.write_pos
        };
        let recorded_at = Timestamp::now().max(log.last_recorded_at);
        let first_seq = log.next_seq;
        // Nothing of `log` changes until the batch is finished: a batch
        // that broke its invariant (and panicked) leaves the log as it was.
        let mut chain = log.chain;
        let mut receipts = Vec::with_capacity(count);
        let mut records = Vec::with_capacity(count);
        let bytes = batch.finish(first_seq, recorded_at, |r| {
            chain = sealog_format::chain::link(&chain, &r.leaf);
            records.push(QueuedRecord {
                offset: u32::try_from(base + r.frame_at as u64)
                    .expect("a frame lies inside its segment, which is at most 1 GiB"),
                frame_len: u32::try_from(r.frame_len)
                    .expect("a frame is no longer than its segment, which is at most 1 GiB"),
                event_time: r.time.unwrap_or(recorded_at.as_nanos()),
                recorded_at,
                leaf: r.leaf,
                chain,
            });
            receipts.push(Receipt {
                seq: first_seq + receipts.len() as u64,
                recorded_at,
                leaf_hash: r.leaf,
                chain_hash: chain,
            });
        });
        if roll {
            log.roll(self.limits.store_id);
        }
        log.last_recorded_at = recorded_at;
        log.chain = chain;
        log.next_seq += count as u64;
        log.active.write_pos += len;
        log.active.records += count as u64;
        let segment_no = log.active.segment_no;
        let end_seq = log.next_seq;
        let queue = &mut log.pending;
        match queue.chunks.last_mut() {
            Some(last) if last.segment_no == segment_no && last.offset + last.len == base => {
                last.len += len;
                last.buffers.push(bytes);
                last.records.extend(records);
            }
            _ => queue.chunks.push(Chunk {
                segment_no,
                new_segment: None,
                offset: base,
                len,
                buffers: vec![bytes],
                records,
            }),
        }
        queue.sync |= durability == Durability::Group;
        queue.end_seq = end_seq;
        let generation = log.generation;
        drop(log);
        self.work_ready.notify_one();
        Ok((
            receipts,
            Ticket {
                end_seq,
                generation,
            },
        ))
    }

    /// Asks the committer to sync everything written so far. Returns the
    /// generation to wait for, or `None` if everything sequenced is durable
    /// already (per `progress`) and nothing is queued.
    pub(crate) fn request_sync(&self, progress: &Progress) -> Result<Option<u64>> {
        let mut log = self.state.lock();
        if let Some(failure) = &log.failed {
            return Err(failure.to_error());
        }
        if log.pending.is_empty() && progress.durable() >= log.next_seq {
            return Ok(None);
        }
        // An empty chunk that asks for a sync of what is written.
        let target = log.next_seq;
        let segment_no = log.active.segment_no;
        let offset = log.active.write_pos;
        log.pending.sync = true;
        log.pending.end_seq = target;
        log.pending.chunks.push(Chunk {
            segment_no,
            new_segment: None,
            offset,
            len: 0,
            buffers: Vec::new(),
            records: Vec::new(),
        });
        let generation = log.generation;
        drop(log);
        self.work_ready.notify_one();
        Ok(Some(generation))
    }

    /// Starts a new segment now if the active one holds records. Returns
    /// the generation that carries the roll, or `None` if there is nothing
    /// to roll.
    pub(crate) fn request_roll(&self) -> Result<Option<u64>> {
        let mut log = self.state.lock();
        if let Some(failure) = &log.failed {
            return Err(failure.to_error());
        }
        if log.active.records == 0 {
            return Ok(None);
        }
        log.roll(self.limits.store_id);
        let generation = log.generation;
        drop(log);
        self.work_ready.notify_one();
        Ok(Some(generation))
    }

    /// The committer's next generation: everything queued, taken at once.
    /// Waits for work, rolling a segment that reached its maximum age.
    /// `None` once a failure is latched, or the store is closing and
    /// nothing is queued.
    pub(crate) fn next_group(&self) -> Option<Group> {
        let mut log = self.state.lock();
        loop {
            if log.failed.is_some() {
                return None;
            }
            if !log.pending.is_empty() {
                let mut group = std::mem::take(&mut log.pending);
                group.generation = log.generation;
                log.generation += 1;
                return Some(group);
            }
            if log.closing {
                return None;
            }
            self.wait_for_work(&mut log);
        }
    }

    fn wait_for_work(&self, log: &mut MutexGuard<'_, LogState>) {
        match self.limits.max_age {
            Some(max_age) if log.active.records > 0 => {
                let age = log.active.started.elapsed();
                if age >= max_age {
                    log.roll(self.limits.store_id);
                    return;
                }
                self.work_ready.wait_for(log, max_age - age);
            }
            Some(max_age) => {
                self.work_ready
                    .wait_for(log, max_age.min(Duration::from_secs(1)));
            }
            None => self.work_ready.wait(log),
        }
    }

    /// The generation new appends would join: every earlier one was taken.
    pub(crate) fn open_generation(&self) -> u64 {
        self.state.lock().generation
    }

    /// Latches `failure` (the first one stays) and wakes the committer:
    /// nothing more is queued.
    pub(crate) fn latch(&self, failure: &Failure) {
        {
            let mut log = self.state.lock();
            if log.failed.is_none() {
                log.failed = Some(failure.clone());
            }
        }
        self.work_ready.notify_all();
    }

    /// Whether a failure is latched.
    pub(crate) fn has_failed(&self) -> bool {
        self.state.lock().failed.is_some()
    }

    /// Refuses new appends from now on and wakes the committer, which
    /// drains the queue and stops.
    pub(crate) fn close(&self) {
        self.state.lock().closing = true;
        self.work_ready.notify_all();
    }

    /// Whether the store is closing.
    pub(crate) fn is_closing(&self) -> bool {
        self.state.lock().closing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::PrivacyPolicy;
    use sealog_format::validate::Validator;
    use sealog_format::{Actor, Event, Outcome, Resource};

    const SEGMENT_END: u64 = 4096;

    fn sequencer() -> Sequencer {
        Sequencer::new(
            Limits {
                store_id: [7; 16],
                segment_end: SEGMENT_END,
                max_age: None,
            },
            Start {
                next_seq: 10,
                last_recorded_at: Timestamp::from_nanos(0),
                chain: [1; 32],
                segment_no: 3,
                write_pos: HEADER_LEN as u64,
                records: 0,
            },
        )
    }

    fn batch(n: usize) -> EncodedBatch {
        let events: Vec<Event> = (0..n)
            .map(|i| {
                Event::new(
                    Actor::new("user", format!("u{i}")),
                    "doc.read",
                    Resource::new("doc", "1"),
                    Outcome::Success,
                )
            })
            .collect();
        EncodedBatch::encode(
            &events,
            &Validator::default(),
            &PrivacyPolicy::default(),
            1 << 20,
        )
        .unwrap()
    }

    #[test]
    fn seqs_are_dense_and_the_chain_links_every_queued_record() {
        let s = sequencer();
        let (a, ta) = s.append(batch(3), Durability::Buffered).unwrap();
        let (b, tb) = s.append(batch(2), Durability::Group).unwrap();
        let seqs: Vec<u64> = a.iter().chain(&b).map(|r| r.seq).collect();
        assert_eq!(seqs, [10, 11, 12, 13, 14]);
        assert_eq!((ta.end_seq, tb.end_seq), (13, 15));
        assert_eq!((ta.generation, tb.generation), (0, 0));
        let mut chain = [1; 32];
        for r in a.iter().chain(&b) {
            chain = sealog_format::chain::link(&chain, &r.leaf_hash);
            assert_eq!(r.chain_hash, chain);
        }
        let times: Vec<_> = a.iter().chain(&b).map(|r| r.recorded_at).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));

        let group = s.next_group().unwrap();
        assert_eq!((group.generation, group.end_seq, group.sync), (0, 15, true));
        // Both batches are placed one after the other: one chunk, two buffers.
        assert_eq!(group.chunks.len(), 1);
        let chunk = &group.chunks[0];
        assert_eq!(chunk.offset, HEADER_LEN as u64);
        assert_eq!(chunk.buffers.len(), 2);
        let total: usize = chunk.buffers.iter().map(Vec::len).sum();
        assert_eq!(chunk.len, total as u64);
        let mut at = HEADER_LEN as u64;
        for r in &chunk.records {
            assert_eq!(u64::from(r.offset), at);
            at += u64::from(r.frame_len);
        }
        assert_eq!(at, chunk.offset + chunk.len);
        let (_, next) = s.append(batch(1), Durability::Buffered).unwrap();
        assert_eq!(
            next.generation, 1,
            "appends after a take join the next generation"
        );
    }

    #[test]
    fn a_batch_that_does_not_fit_starts_a_new_segment_with_the_chain_so_far() {
        let s = sequencer();
        let mut receipts = Vec::new();
        while receipts.len() < 200 {
            receipts.extend(s.append(batch(4), Durability::Buffered).unwrap().0);
        }
        let group = s.next_group().unwrap();
        let roll = group
            .chunks
            .iter()
            .position(|c| c.new_segment.is_some())
            .expect("the segment was full");
        let header = group.chunks[roll].new_segment.unwrap();
        let before: u64 = group.chunks[..roll]
            .iter()
            .map(|c| c.records.len() as u64)
            .sum();
        assert_eq!(header.segment_no, 4);
        assert_eq!(header.store_id, [7; 16]);
        assert_eq!(header.first_seq, 10 + before);
        assert_eq!(before % 4, 0, "a batch is never split across segments");
        let last_before = &receipts[before as usize - 1];
        assert_eq!(header.chain_in, last_before.chain_hash);
        for chunk in &group.chunks[..roll] {
            assert!(chunk.offset + chunk.len <= SEGMENT_END);
        }
        // The next batch goes right after the new segment's header.
        let after = &group.chunks[roll];
        assert_eq!(after.offset, HEADER_LEN as u64);
        assert_eq!(
            after.records.first().map(|r| u64::from(r.offset)),
            Some(HEADER_LEN as u64)
        );
    }

    #[test]
    fn a_latched_failure_refuses_appends_and_stops_the_committer() {
        let s = sequencer();
        s.append(batch(1), Durability::Group).unwrap();
        s.latch(&Failure::new(
            "fdatasync failed".into(),
            std::io::ErrorKind::Other,
        ));
        s.latch(&Failure::new(
            "a later one".into(),
            std::io::ErrorKind::Other,
        ));
        assert!(s.has_failed());
        match s.append(batch(1), Durability::Group) {
            Err(Error::WritesRefused { cause, .. }) => assert_eq!(cause, "fdatasync failed"),
            other => panic!("expected WritesRefused, got {:?}", other.map(|r| r.1)),
        }
        assert!(s.request_roll().is_err());
        assert!(
            s.next_group().is_none(),
            "queued work is not committed after a failure"
        );
    }

    #[test]
    fn closing_refuses_appends_after_the_queue_is_drained() {
        let s = sequencer();
        s.append(batch(2), Durability::Buffered).unwrap();
        s.close();
        assert!(s.is_closing());
        assert!(matches!(
            s.append(batch(1), Durability::Buffered),
            Err(Error::Closed)
        ));
        assert_eq!(s.next_group().map(|g| g.end_seq), Some(12));
        assert!(s.next_group().is_none());
        assert_eq!(s.open_generation(), 1);
    }

    #[test]
    fn a_roll_is_queued_only_when_the_active_segment_holds_records() {
        let s = sequencer();
        assert_eq!(s.request_roll().unwrap(), None);
        s.append(batch(1), Durability::Buffered).unwrap();
        assert_eq!(s.request_roll().unwrap(), Some(0));
        let group = s.next_group().unwrap();
        let header = group.chunks.last().unwrap().new_segment.unwrap();
        assert_eq!((header.segment_no, header.first_seq), (4, 11));
        assert_eq!(s.request_roll().unwrap(), None);
    }
}
