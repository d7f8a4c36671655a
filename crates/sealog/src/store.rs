//! [`Store`]: the public face of the engine.
//!
//! ## How an append becomes durable
//!
//! 1. The caller's thread validates and encodes each event, and feeds the
//!    record bytes to its frame checksum and leaf hash — everything except
//!    the last 16 bytes of each record (seq and recorded time), which are
//!    not yet known. No lock is held.
//! 2. Under the log lock (the *sequencer*) the batch gets its seqs and
//!    recorded time, the hashes are finished with those 16 bytes, the chain
//!    is extended, and the frames are queued for the committer. A batch that
//!    does not fit in the active segment starts a new one here.
//! 3. The committer thread ([`crate::writer`]) takes everything queued,
//!    writes it with one positioned write per segment and, if any append in
//!    the group asked for [`Durability::Group`], one `fdatasync`. It then
//!    publishes the records to readers and wakes the waiting appenders.
//! 4. The caller returns its receipts once its last seq is durable (or
//!    written, for [`Durability::Buffered`]).
//!
//! If a write or sync fails, the failure is latched: waiting and later
//! appends fail with [`Error::WritesRefused`] until the store is reopened,
//! whose recovery decides from the disk what survived.

use std::borrow::Borrow;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sealog_format::segment::Manifest;
use sealog_format::{Event, Hash, Record, Timestamp};

use crate::batch::EncodedBatch;
use crate::checkpoint::CheckpointLog;
use crate::damage::DamageLog;
use crate::error::{Error, Result};
use crate::fs::{LockGuard, Vfs};
use crate::options::{Durability, StoreOptions};
use crate::progress::{Failure, Progress};
use crate::readers::Readers;
pub(crate) use crate::readers::View;
use crate::recovery::RecoveryReport;
use crate::scan::{Scan, decode_checked};
use crate::sealer::Sealing;
use crate::sequencer::Sequencer;
use crate::sidecar::IndexEnv;
use crate::stats::Counters;
use crate::tree::Tree;
use crate::writer::Workers;

/// What the store returns for each appended event: its place in the log and
/// the hashes that commit to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Receipt {
    /// The event's sequence number.
    pub seq: u64,
    /// When the store recorded it.
    pub recorded_at: Timestamp,
    /// `SHA-256(0x00 ‖ record bytes)`: the event's Merkle leaf.
    pub leaf_hash: Hash,
    /// The chain value after the event.
    pub chain_hash: Hash,
}

/// The state of the log at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Number of records visible to readers (the next seq).
    pub size: u64,
    /// The chain value after the last visible record (the genesis value for
    /// an empty store).
    pub chain_head: Hash,
}

/// A durable, append-only, tamper-evident audit log.
///
/// `Store` is a cheap handle: clone it to share the store between threads.
/// The store closes (finishing and syncing queued appends) when the last
/// handle is dropped, or explicitly with [`Store::close`].
///
/// ```no_run
/// use sealog::{Store, StoreOptions};
/// use sealog_format::{Actor, Event, Outcome, Resource};
///
/// let store = Store::open("./audit", StoreOptions::default())?;
/// let receipt = store.append(Event::new(
///     Actor::new("user", "alice"),
///     "customer.delete",
///     Resource::new("customer", "4471"),
///     Outcome::Success,
/// ))?;
/// let record = store.get(receipt.seq)?.expect("just appended");
/// assert_eq!(record.event.actor.id, "alice");
/// # Ok::<(), sealog::Error>(())
/// ```
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
    workers: Arc<Workers>,
}

/// What a queued batch waits for: its end seq, reached under its
/// durability by the commit of its generation.
#[derive(Clone, Copy, Debug)]
struct CommitWait {
    target: u64,
    durability: Durability,
    generation: u64,
}

/// Once a batch is queued, a failure may have written some or all of it,
/// so it is reported as unacknowledged, not refused.
fn unacknowledged(e: Error) -> Error {
    match e {
        Error::WritesRefused { cause, kind } => Error::Unacknowledged { cause, kind },
        other => other,
    }
}

/// An append in flight ([`Store::append_batch_async_with`]): resolves to
/// the batch's receipts once it is committed with its durability, or to
/// the error that refused it or left it unacknowledged.
#[must_use = "the batch is queued either way; the future tells whether it was acknowledged"]
pub struct Appending {
    inner: Arc<Inner>,
    state: AppendingState,
}

enum AppendingState {
    Waiting(Vec<Receipt>, CommitWait),
    Done(Result<Vec<Receipt>>),
    Taken,
}

impl std::fmt::Debug for Appending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            AppendingState::Waiting(_, wait) => format!("waiting for {wait:?}"),
            AppendingState::Done(r) => format!("done: {}", if r.is_ok() { "ok" } else { "error" }),
            AppendingState::Taken => "finished".into(),
        };
        f.debug_struct("Appending").field("state", &state).finish()
    }
}

impl Appending {
    /// The receipts the batch will be acknowledged with, known once it is
    /// queued: its seqs, leaf hashes and chain values are fixed then.
    /// `None` if it was refused, or once the future has resolved.
    ///
    /// They are **not** an acknowledgement: the records are durable only
    /// when the future resolves to `Ok` (and they are lost if the store
    /// fails or the machine stops first). A caller may use them to make
    /// state of its own about the batch durable while the batch's commit
    /// group is synced (the server's idempotency journal does), as long as
    /// it checks that state against the log when it loads it again: a
    /// record named there may not be in the log.
    pub fn queued_receipts(&self) -> Option<&[Receipt]> {
        match &self.state {
            AppendingState::Waiting(receipts, _) => Some(receipts),
            AppendingState::Done(_) | AppendingState::Taken => None,
        }
    }
}

impl Future for Appending {
    type Output = Result<Vec<Receipt>>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = &mut *self;
        if let AppendingState::Waiting(_, wait) = &this.state {
            match this.inner.progress.poll_reached(
                wait.target,
                wait.durability,
                wait.generation,
                cx.waker(),
            ) {
                std::task::Poll::Pending => return std::task::Poll::Pending,
                std::task::Poll::Ready(Err(e)) => {
                    this.state = AppendingState::Done(Err(unacknowledged(e)));
                }
                std::task::Poll::Ready(Ok(())) => {
                    if let AppendingState::Waiting(receipts, _) =
                        std::mem::replace(&mut this.state, AppendingState::Taken)
                    {
                        this.inner.count_append(receipts.len());
                        this.state = AppendingState::Done(Ok(receipts));
                    }
                }
            }
        }
        match std::mem::replace(&mut this.state, AppendingState::Taken) {
            AppendingState::Done(result) => std::task::Poll::Ready(result),
            // Polled after it finished: nothing more to give.
            _ => std::task::Poll::Ready(Err(Error::Closed)),
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.config.dir)
            .field("read_only", &self.inner.config.read_only)
            .finish_non_exhaustive()
    }
}

/// What the store was opened with; fixed until it is closed.
pub(crate) struct Config {
    pub dir: PathBuf,
    pub fs: Arc<dyn Vfs>,
    pub options: StoreOptions,
    /// The largest batch accepted, in encoded bytes.
    pub max_batch: u64,
    pub manifest: Manifest,
    pub read_only: bool,
}

/// State shared by handles and the background threads: the configuration,
/// and the types that own the moving parts — each with its own lock and
/// invariants (see their modules).
pub(crate) struct Inner {
    config: Config,
    /// The log lock: seqs, chain, placement in segments, the commit queue,
    /// the latch.
    sequencer: Sequencer,
    /// What the committer has written and synced; the appenders waiting.
    progress: Progress,
    /// The sealer's queue and backlog, and the spare segment file.
    sealing: Sealing,
    /// What readers see.
    readers: Readers,
    /// The Merkle tree's level files (`None` for a read-only store without
    /// them).
    tree: Option<Tree>,
    /// Every checkpoint issued.
    checkpoints: CheckpointLog,
    /// Where sealed segments' index sidecars live.
    index_env: Arc<IndexEnv>,
    recovery: RecoveryReport,
    /// Read-only opens reading around damage ([`crate::OnDamage::ReadAround`]):
    /// what could not be read. `None` otherwise: damage is an error.
    pub(crate) damage: Option<DamageLog>,
    counters: Counters,
    _lock: Option<Box<dyn LockGuard>>,
}

/// The parts an open puts together (see [`crate::recovery`]).
pub(crate) struct Parts {
    pub config: Config,
    pub sequencer: Sequencer,
    /// Records durable (and visible) when the store opens.
    pub durable: u64,
    pub sealing: Sealing,
    pub view: View,
    pub tree: Option<Tree>,
    pub checkpoints: CheckpointLog,
    pub index_env: Arc<IndexEnv>,
    pub recovery: RecoveryReport,
    pub damage: Option<DamageLog>,
    pub lock: Option<Box<dyn LockGuard>>,
}

/// How many times [`Store::open_read_only_with`] tries an open whose
/// failures keep changing (a writer changing the files meanwhile).
pub const READ_ONLY_OPEN_TRIES: u32 = 5;

impl Store {
    /// Opens the store in `dir`, creating it if it does not exist, and
    /// recovers from an unclean shutdown (see [`Store::recovery_report`]).
    pub fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let (inner, workers) = crate::recovery::open(dir.as_ref(), options, false)?;
        let store = Store { inner, workers };
        store.record_recovery()?;
        store.record_privacy_policy()?;
        Ok(store)
    }

    /// Opens an existing store without writing anything: no recovery, no
    /// lock, so it works while another process has the store open for
    /// writing (the handle is a snapshot), and on a copy.
    ///
    /// The open checks what is cheap to check, as [`Store::open`] does:
    /// segment numbering without gaps; each header (store id, segment
    /// number, first seq matching the file name) and footer; each segment
    /// starting where the one before ended, with its chain value; the
    /// unsealed segments frame by frame; `tree/leaves` covering exactly the
    /// sealed records; the newest checkpoint in `checkpoints.log` covering
    /// no more than the log holds, with the root the tree gives at its
    /// size. Sealed segments' frames are not read (that is
    /// [`Store::verify`]'s work), so the open takes the same time however
    /// large the store is. Damage is refused with
    /// [`Error::Corruption`] naming the file, byte offset and seq; a read
    /// that later meets a bad frame or record fails the same way.
    ///
    /// To read what is left of a damaged store, use
    /// [`Store::open_read_only_with`] and [`OnDamage::ReadAround`](crate::OnDamage).
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Store> {
        Self::open_read_only_with(dir, StoreOptions::default())
    }

    /// [`Store::open_read_only`] with options: a test filesystem, or
    /// [`StoreOptions::on_damage`] set to
    /// [`OnDamage::ReadAround`](crate::OnDamage) to open a damaged store
    /// and read around the damage (see [`Store::damage`]).
    ///
    /// A live writer changes the files while this reads them: it seals a
    /// segment (cutting the file to its sealed length) or starts the next
    /// one. An open that fails is therefore tried again, on the files as
    /// they are now, while each try fails differently from the one before
    /// (up to [`READ_ONLY_OPEN_TRIES`] tries); a failure met twice in a row
    /// is the store's state, not a race, and is returned.
    pub fn open_read_only_with(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let mut tries = 1;
        let mut previous: Option<String> = None;
        loop {
            match crate::recovery::open(dir.as_ref(), options.clone(), true) {
                Ok((inner, workers)) => return Ok(Store { inner, workers }),
                Err(e) => {
                    let said = e.to_string();
                    if tries >= READ_ONLY_OPEN_TRIES || previous.as_deref() == Some(said.as_str()) {
                        return Err(e);
                    }
                    tracing::debug!(error = %said, "opening read-only met a change; trying again");
                    previous = Some(said);
                    std::thread::sleep(std::time::Duration::from_millis(5 << tries));
                    tries += 1;
                }
            }
        }
    }

    /// What a store opened with [`OnDamage::ReadAround`](crate::OnDamage)
    /// could not read: the damage its open found, then what reads met
    /// since, each with the seqs it makes unreadable. Reads skip those
    /// records; show this list to whoever reads the results. Empty for any
    /// other store (damage is an error there).
    pub fn damage(&self) -> Vec<crate::Damage> {
        // No damage log: not reading around damage, so nothing was skipped.
        self.inner
            .damage
            .as_ref()
            .map(crate::damage::DamageLog::list)
            .unwrap_or_default()
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.inner.config.dir
    }

    /// The store's random identifier (it seeds the hash chain).
    pub fn store_id(&self) -> [u8; 16] {
        self.inner.config.manifest.store_id
    }

    /// What recovery found and did when the store was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    /// Appends one event with the store's default durability.
    pub fn append(&self, event: impl Borrow<Event>) -> Result<Receipt> {
        let mut receipts = self
            .append_batch_with([event], self.inner.config.options.durability)
            .map_err(|e| match e {
                Error::InvalidBatch(mut errors) if errors.len() == 1 => {
                    Error::InvalidEvent(errors.remove(0).error)
                }
                other => other,
            })?;
        receipts.pop().ok_or(Error::Closed)
    }

    /// Appends a batch atomically with the store's default durability:
    /// after a crash either every event of the batch is present or none is.
    /// If any event is invalid, nothing is written and the error lists every
    /// invalid event.
    ///
    /// Events can be passed by value or by reference (`Vec<Event>`,
    /// `&[Event]`, an iterator of either).
    pub fn append_batch<E: Borrow<Event>>(
        &self,
        events: impl IntoIterator<Item = E>,
    ) -> Result<Vec<Receipt>> {
        self.append_batch_with(events, self.inner.config.options.durability)
    }

    /// Appends a batch atomically with the given durability.
    pub fn append_batch_with<E: Borrow<Event>>(
        &self,
        events: impl IntoIterator<Item = E>,
        durability: Durability,
    ) -> Result<Vec<Receipt>> {
        let Some((receipts, wait)) = self.queue(events, durability)? else {
            return Ok(Vec::new());
        };
        self.inner
            .progress
            .wait(wait.target, wait.durability, wait.generation)
            .map_err(unacknowledged)?;
        self.inner.count_append(receipts.len());
        Ok(receipts)
    }

    /// Appends one event like [`Store::append`] — same validation, same
    /// durability contract — without blocking the caller: the event is
    /// validated, encoded and queued now (so appends keep the order of the
    /// calls), and the returned future resolves to its receipt once the
    /// committer has made it durable (under the store's default
    /// durability). No thread waits for it: the committer wakes the task
    /// when the event's commit group is synced, or when the store fails.
    ///
    /// Dropping the future does not withdraw the event, which is queued;
    /// only its acknowledgement is lost. The future needs no particular
    /// runtime.
    pub fn append_async(
        &self,
        event: impl Borrow<Event>,
    ) -> impl Future<Output = Result<Receipt>> + Send + 'static {
        let appending = self.append_batch_async_with([event], self.inner.config.options.durability);
        async move {
            let mut receipts = appending.await.map_err(|e| match e {
                Error::InvalidBatch(mut errors) if errors.len() == 1 => {
                    Error::InvalidEvent(errors.remove(0).error)
                }
                other => other,
            })?;
            receipts.pop().ok_or(Error::Closed)
        }
    }

    /// Appends a batch atomically like [`Store::append_batch_with`], without
    /// blocking: see [`Store::append_async`].
    pub fn append_batch_async_with<E: Borrow<Event>>(
        &self,
        events: impl IntoIterator<Item = E>,
        durability: Durability,
    ) -> Appending {
        let state = match self.queue(events, durability) {
            Ok(Some((receipts, wait))) => AppendingState::Waiting(receipts, wait),
            Ok(None) => AppendingState::Done(Ok(Vec::new())),
            Err(e) => AppendingState::Done(Err(e)),
        };
        Appending {
            inner: self.inner.clone(),
            state,
        }
    }

    /// Appends a batch atomically with the store's default durability,
    /// without blocking: see [`Store::append_async`].
    pub fn append_batch_async<E: Borrow<Event>>(
        &self,
        events: impl IntoIterator<Item = E>,
    ) -> Appending {
        self.append_batch_async_with(events, self.inner.config.options.durability)
    }

    /// Validates, encodes and queues a batch; `None` for an empty one.
    fn queue<E: Borrow<Event>>(
        &self,
        events: impl IntoIterator<Item = E>,
        durability: Durability,
    ) -> Result<Option<(Vec<Receipt>, CommitWait)>> {
        let config = &self.inner.config;
        if config.read_only {
            return Err(Error::ReadOnly);
        }
        let batch = EncodedBatch::encode(
            events,
            &config.options.validator,
            &config.options.privacy,
            config.max_batch,
        )?;
        if batch.is_empty() {
            return Ok(None);
        }
        let (receipts, ticket) = self.inner.sequencer.append(batch, durability)?;
        Ok(Some((
            receipts,
            CommitWait {
                target: ticket.end_seq,
                durability,
                generation: ticket.generation,
            },
        )))
    }

    /// Makes every append so far durable, whatever its durability, and
    /// waits until the committer has handled everything queued before the
    /// call (a pending roll included).
    pub fn sync(&self) -> Result<()> {
        if self.inner.config.read_only {
            return Ok(());
        }
        match self.inner.sequencer.request_sync(&self.inner.progress)? {
            Some(generation) => self.inner.progress.wait_generation(generation),
            None => Ok(()),
        }
    }

    /// Seals the active segment now (if it holds any record) and starts a
    /// new one. Returns once the new segment is in place; the seal itself
    /// completes in the background (see [`Store::wait_sealed`]).
    pub fn roll(&self) -> Result<()> {
        if self.inner.config.read_only {
            return Err(Error::ReadOnly);
        }
        match self.inner.sequencer.request_roll()? {
            Some(generation) => self.inner.progress.wait_generation(generation),
            None => Ok(()),
        }
    }

    /// Waits until every segment that has been rolled is sealed.
    pub fn wait_sealed(&self) -> Result<()> {
        self.sync()?;
        self.workers.wait_idle(&self.inner)
    }

    /// What the store has done since it was opened: appends, commit groups,
    /// syncs and their latency, segments.
    pub fn stats(&self) -> crate::stats::Stats {
        let view = self.view();
        let mut stats = self.inner.counters.snapshot();
        stats.records = view.len();
        stats.index_rebuilds = self
            .inner
            .index_env
            .rebuilds
            .load(std::sync::atomic::Ordering::Relaxed);
        stats.sealed_segments = view.sealed.len() as u64;
        stats.segments = stats.sealed_segments + view.open.len() as u64;
        stats.index_lag = view
            .open
            .iter()
            .map(|s| {
                let indexed = s.index.read().indexed;
                s.data.read().len().saturating_sub(indexed)
            })
            .sum();
        stats.spare_ready = self.inner.sealing.spare_ready();
        stats
    }

    /// Blocks until more than `after` records are visible, or `timeout`
    /// passes; returns the number visible. The basis of following the log
    /// (`tail -f`): read up to the returned count, then wait again.
    pub fn wait_for_records(&self, after: u64, timeout: std::time::Duration) -> u64 {
        self.inner.readers.wait_for_records(after, timeout)
    }

    /// Number of visible records; also the next seq.
    pub fn len(&self) -> u64 {
        self.view().len()
    }

    /// True if the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The size and chain head of the visible log.
    pub fn head(&self) -> Head {
        let view = self.view();
        if let Some(last) = view.open.last() {
            let data = last.data.read();
            return Head {
                size: last.header.first_seq + data.len(),
                chain_head: data.chain_head,
            };
        }
        match view.sealed.last() {
            Some(s) => Head {
                size: s.footer.end_seq(),
                chain_head: s.footer.chain_head,
            },
            None => Head {
                size: 0,
                chain_head: self.inner.config.manifest.genesis(),
            },
        }
    }

    /// The record with sequence number `seq`, if it exists (`Ok(None)`
    /// only beyond the end of the log). A record that cannot be read is an
    /// error naming the file, byte offset and seq, also on a store reading
    /// around damage.
    pub fn get(&self, seq: u64) -> Result<Option<Record>> {
        let view = self.view();
        let Some(bytes) = self.inner.record_bytes(&view, seq)? else {
            return Ok(None);
        };
        decode_checked(&view, seq, &bytes)
            .map(Some)
            .inspect_err(|e| self.inner.noticed(seq, e))
    }

    /// One page of the records matching `query`, in its order, with the
    /// cursor of the next page.
    ///
    /// ```no_run
    /// # let store = sealog::Store::open("./audit", sealog::StoreOptions::default())?;
    /// use sealog::query::{ActorFilter, Query};
    /// let mut query = Query { actor: Some(ActorFilter::parse("user:alice")), ..Query::default() };
    /// loop {
    ///     let page = store.query(&query)?;
    ///     for record in &page.records { println!("{} {}", record.seq, record.event.action); }
    ///     match page.next_cursor { Some(c) => query.cursor = Some(c), None => break }
    /// }
    /// # Ok::<(), sealog::Error>(())
    /// ```
    ///
    /// The query's values are transformed by the store's privacy policy
    /// first ([`Store::private_query`]): a clear value finds the records it
    /// was hashed or masked into.
    pub fn query(&self, query: &crate::query::Query) -> Result<crate::query::Page> {
        let query = self.private_query(query);
        crate::search::page(&self.view(), &query, self.inner.clone(), &mut |view| {
            view.to_record()
        })
    }

    /// [`Store::query`], with each matching record given to `make` as the
    /// checked view of its stored bytes, and the page holding what `make`
    /// returns: a caller that only writes the records out (as JSON, with
    /// [`RecordView::write_json`]) makes no owned [`Record`] of them. The
    /// records, their order, the checks and the cursor are those of
    /// [`Store::query`].
    ///
    /// ```no_run
    /// # let store = sealog::Store::open("./audit", sealog::StoreOptions::default())?;
    /// use sealog::query::{ActorFilter, Query};
    /// let query = Query { actor: Some(ActorFilter::parse("user:alice")), ..Query::default() };
    /// let page = store.query_with(&query, |view| {
    ///     let mut json = Vec::new();
    ///     view.write_json(&mut json);
    ///     json
    /// })?;
    /// for json in &page.records {
    ///     println!("{}", String::from_utf8_lossy(json));
    /// }
    /// # Ok::<(), sealog::Error>(())
    /// ```
    ///
    /// [`RecordView::write_json`]: sealog_format::record::RecordView::write_json
    /// [`Record`]: sealog_format::Record
    pub fn query_with<T>(
        &self,
        query: &crate::query::Query,
        mut make: impl FnMut(&sealog_format::record::RecordView<'_>) -> T,
    ) -> Result<crate::query::Page<T>> {
        let query = self.private_query(query);
        crate::search::page(&self.view(), &query, self.inner.clone(), &mut |view| {
            Ok(make(view))
        })
    }

    /// The page [`Store::query`] returns, when the open segments alone
    /// hold it whole (a newest-first page whose matches, and the match
    /// after them that decides the cursor, were all written since the last
    /// seal); `None` when it needs a sealed segment or another order, and
    /// then [`Store::query`] answers it.
    ///
    /// It reads no sealed segment's file (no map, no index section to
    /// check, no archive to fetch from): only the open segments' in-memory
    /// index and their recent records, which the writer just wrote. A
    /// server answers the common "newest events of this actor" page this
    /// way on its request thread, without handing it to a blocking thread.
    pub fn query_from_open(
        &self,
        query: &crate::query::Query,
    ) -> Result<Option<crate::query::Page>> {
        self.page_within(query, crate::search::Reach::Open, &mut |view| {
            view.to_record()
        })
    }

    /// [`Store::query_from_open`], with each record made into `make` of
    /// its checked view, as [`Store::query_with`] does.
    pub fn query_from_open_with<T>(
        &self,
        query: &crate::query::Query,
        mut make: impl FnMut(&sealog_format::record::RecordView<'_>) -> T,
    ) -> Result<Option<crate::query::Page<T>>> {
        self.page_within(query, crate::search::Reach::Open, &mut |view| {
            Ok(make(view))
        })
    }

    /// The page [`Store::query_with`] returns, when what is in memory
    /// holds it whole: the open segments, and sealed segments (up to 32 of
    /// them) whose files and indexes are wholly in the page cache, as the
    /// segments sealed lately are. `None` when the page needs a segment
    /// that is not (its pages, or its index, not read yet; a segment
    /// archived and removed), or an event-time order; then
    /// [`Store::query_with`] answers it.
    ///
    /// It neither waits for a disk nor asks the kernel for pages: a server
    /// answers the common "newest events of this actor" page this way on
    /// its request thread, without handing it to a blocking thread. Whether
    /// a segment is in memory is asked of the kernel (`mincore`) at most
    /// every quarter of a second per segment, so a page evicted in between
    /// is read back by the fault that touches it, a rare wait this bounds
    /// rather than forbids.
    pub fn query_in_memory_with<T>(
        &self,
        query: &crate::query::Query,
        mut make: impl FnMut(&sealog_format::record::RecordView<'_>) -> T,
    ) -> Result<Option<crate::query::Page<T>>> {
        self.page_within(query, crate::search::Reach::Memory, &mut |view| {
            Ok(make(view))
        })
    }

    /// [`Store::count`], when what is in memory is all the count reads:
    /// the open segments and at most 32 sealed segments it does not skip
    /// by their footers (event times, seqs), each local,
    /// with its index open and wholly in the page cache (as for
    /// [`Store::query_in_memory_with`]), and, for a value the index keeps
    /// hashed (a request id, a resource id), at most 1,024 candidate
    /// records to read and check. `None` otherwise; then [`Store::count`]
    /// answers it. A count over the last hour of a busy store, say, reads
    /// only the segments of that hour.
    pub fn count_in_memory(&self, query: &crate::query::Query) -> Result<Option<u64>> {
        let query = self.private_query(query);
        crate::search::count_in_memory(&self.view(), &query, &self.inner)
    }

    /// The page of `query` (its values made private) if the segments of
    /// `reach` hold it whole.
    fn page_within<T>(
        &self,
        query: &crate::query::Query,
        reach: crate::search::Reach,
        make: &mut crate::search::MakeFn<'_, T>,
    ) -> Result<Option<crate::query::Page<T>>> {
        let query = self.private_query(query);
        crate::search::page_within(&self.view(), &query, self.inner.clone(), reach, make)
    }

    /// Every record matching `query`, in its order, read lazily (the
    /// `limit` is ignored; a `cursor` is honoured). The values are
    /// transformed as by [`Store::query`].
    pub fn matches(&self, query: &crate::query::Query) -> Result<crate::search::Matches> {
        let query = self.private_query(query);
        crate::search::Matches::new(&self.view(), &query, self.inner.clone())
    }

    /// How many records match `query` (order, limit and cursor ignored),
    /// from the indexes, without reading the records. The values are
    /// transformed as by [`Store::query`].
    pub fn count(&self, query: &crate::query::Query) -> Result<u64> {
        let query = self.private_query(query);
        crate::search::count(&self.view(), &query, &self.inner)
    }

    /// `query` with its values transformed by the store's privacy policy
    /// ([`crate::privacy::PrivacyPolicy::query`]), for a caller that
    /// matches records itself ([`crate::query::Query::matches`], as a
    /// follower of new records does). [`Store::query`], [`Store::matches`]
    /// and [`Store::count`] apply it themselves; applying it twice changes
    /// nothing.
    pub fn private_query(&self, query: &crate::query::Query) -> crate::query::Query {
        self.inner.config.options.privacy.query(query)
    }

    /// The privacy policy the store was opened with.
    pub fn privacy(&self) -> &crate::privacy::PrivacyPolicy {
        &self.inner.config.options.privacy
    }

    /// Counts the records matching `query` (ignoring order and limit; a
    /// cursor is refused) grouped by `field`, and lists the `top` largest
    /// groups (1 to [`crate::aggregate::MAX_TOP`]), most records first,
    /// ties by key. Answered from the indexes wherever they can; see
    /// [`crate::aggregate`].
    pub fn count_by(
        &self,
        query: &crate::query::Query,
        field: crate::aggregate::CountField,
        top: usize,
    ) -> Result<crate::aggregate::CountBy> {
        let query = self.private_query(query);
        crate::aggregate::count_by(&self.view(), &query, field, top, &self.inner)
    }

    /// The number of records proofs and checkpoints can cover now: the
    /// durable prefix of the log.
    pub fn tree_size(&self) -> u64 {
        self.inner.tree_size()
    }

    /// The RFC 9162 root of the first `size` records.
    pub fn root(&self, size: u64) -> Result<Hash> {
        self.inner.root(size)
    }

    /// The RFC 9162 inclusion proof of record `seq` in the tree of
    /// `tree_size` records.
    pub fn inclusion_proof(&self, seq: u64, tree_size: u64) -> Result<Vec<Hash>> {
        self.inner.check_size(tree_size)?;
        self.inner.with_tree(tree_size, |src| {
            sealog_format::merkle::inclusion_proof(src, seq, tree_size)
        })
    }

    /// The RFC 9162 consistency proof between the trees of `old_size` and
    /// `new_size` records.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>> {
        self.inner.check_size(new_size)?;
        self.inner.with_tree(new_size, |src| {
            sealog_format::merkle::consistency_proof(src, old_size, new_size)
        })
    }

    /// Signs a checkpoint of the durable log now, appends it to the
    /// history and returns it. If the newest checkpoint already covers the
    /// same size, that one is returned.
    pub fn checkpoint(&self) -> Result<crate::checkpoint::SignedCheckpoint> {
        self.inner.checkpoint()
    }

    /// The newest checkpoint issued, if any.
    pub fn latest_checkpoint(&self) -> Result<Option<crate::checkpoint::SignedCheckpoint>> {
        self.inner.latest_checkpoint()
    }

    /// Every checkpoint issued, oldest first.
    pub fn checkpoints(&self) -> Result<Vec<crate::checkpoint::SignedCheckpoint>> {
        self.inner
            .checkpoints
            .entries()
            .iter()
            .map(|t| parse_signed(t))
            .collect()
    }

    /// An offline-verifiable receipt for record `seq` in the C2SP
    /// `tlog-proof@v1` format: the record's exact bytes, its inclusion
    /// proof, and the newest checkpoint that covers it (one is signed now
    /// if none does). Verify it with only the public key:
    /// `sealog_format::receipt::Receipt::verify_extra_as_entry`.
    pub fn receipt(&self, seq: u64) -> Result<String> {
        let Some(bytes) = self.get_raw(seq)? else {
            return Err(Error::InvalidQuery {
                field: "seq",
                reason: format!(
                    "record {seq} does not exist (the log has {} records)",
                    self.len()
                ),
            });
        };
        let checkpoint = match self.latest_checkpoint()? {
            Some(c) if c.size > seq => c,
            _ => self.checkpoint()?,
        };
        if checkpoint.size <= seq {
            return Err(Error::InvalidQuery {
                field: "seq",
                reason: format!("record {seq} is not durable yet"),
            });
        }
        let proof = self.inclusion_proof(seq, checkpoint.size)?;
        Ok(sealog_format::receipt::Receipt {
            extra: Some(bytes),
            index: seq,
            proof,
            checkpoint: checkpoint.text,
        }
        .to_text())
    }

    /// The exact stored bytes of record `seq` (what its leaf hash covers);
    /// `Ok(None)` only beyond the end of the log. The frame's checksum is
    /// checked, not the record's structure.
    pub fn get_raw(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        self.inner.record_bytes(&self.view(), seq)
    }

    /// Iterates over records in seq order, oldest first. A record that
    /// cannot be read is an `Err` naming the file, byte offset and seq, and
    /// ends the iteration; on a store reading around damage
    /// ([`OnDamage::ReadAround`](crate::OnDamage)) it is skipped instead,
    /// and listed by [`Store::damage`].
    pub fn scan(&self, range: impl RangeBounds<u64>) -> Scan {
        Scan::new(self.view(), self.inner.clone(), range)
    }

    /// Checks the whole log: every frame checksum, every record, the chain,
    /// every segment's Merkle root and footer, seq continuity across
    /// segments and the stored leaf hashes. Sealed segments are checked in
    /// parallel. Returns a summary, or the first problem in log order.
    pub fn verify(&self) -> Result<crate::verify::VerifyReport> {
        self.verify_checking(false)
    }

    /// [`Store::verify`] of the log only: everything that makes it
    /// tamper-evident, not the index sidecars and key filters derived from
    /// it (see [`crate::VerifyOptions::log_only`]).
    pub fn verify_log_only(&self) -> Result<crate::verify::VerifyReport> {
        self.verify_checking(true)
    }

    fn verify_checking(&self, log_only: bool) -> Result<crate::verify::VerifyReport> {
        // Checkpoints first: every one issued so far covers at most the view
        // taken next, so one that covers more means records were lost.
        let checkpoints = self.inner.checkpoints.entries().len();
        let view = self.view();
        let limit = crate::verify::Limit {
            checkpoints,
            seq: view.len(),
            open_ends: view
                .open
                .iter()
                .map(|s| (s.header.first_seq, s.data.read().frames_end))
                .collect(),
        };
        let options = crate::verify::VerifyOptions {
            public_key: self
                .inner
                .config
                .options
                .checkpoints
                .as_ref()
                .map(|c| c.key.verifier()),
            checkpoints: Vec::new(),
            log_only,
        };
        crate::verify::run(
            &self.inner.config.dir,
            &*self.inner.config.fs,
            Some(limit),
            &options,
        )
    }

    /// Checks, cheaply, that the sealed segment files this store reads are
    /// still on disk as they were sealed: each is present, and its header
    /// and footer (with the file length they imply) are the ones the store
    /// holds. A sealed segment is read through a memory map, which keeps
    /// serving a file deleted after the store was opened; this finds such a
    /// deletion (or a file cut, replaced or rewritten at either end) before
    /// the next open refuses the store. The frames are not read: that is
    /// [`Store::verify`]'s work. Segments a store reading around damage took
    /// from damaged files are not compared.
    pub fn check_segment_files(&self) -> Result<()> {
        let view = self.view();
        let config = &self.inner.config;
        let fs = &*config.fs;
        for s in view.sealed.iter().filter(|s| s.pruned_record().is_none()) {
            let file_name = s.name.rsplit('/').next().unwrap_or(&s.name);
            let missing = || -> Error {
                crate::error::Corruption::new(
                    crate::error::Location::file(&s.name),
                    crate::error::CorruptionKind::MissingSegment {
                        expected_segment_no: s.header.segment_no,
                        expected_first_seq: s.header.first_seq,
                        next_segment_no: s.header.segment_no + 1,
                        next_first_seq: s.footer.end_seq(),
                    },
                )
                .into()
            };
            let path = config.dir.join(&s.name);
            if !fs.exists(&path).map_err(|e| Error::io("stat", &path, e))? {
                return Err(missing());
            }
            let found = crate::recovery::read_found(
                fs,
                &config.dir,
                file_name,
                s.header.first_seq,
                &config.manifest,
                true,
            )?;
            if found.header == s.header && found.footer == Some(s.footer) {
                continue;
            }
            if self.inner.damage.is_some() && found.footer.is_none() {
                continue; // taken from a damaged file, and listed as damage
            }
            return Err(crate::error::Corruption::new(
                crate::error::Location::file(&s.name).at(found
                    .len
                    .saturating_sub(sealog_format::segment::FOOTER_LEN as u64)),
                crate::error::CorruptionKind::Layout(
                    "the segment's header or footer changed after it was sealed (the file was \
                     cut, replaced or rewritten)"
                        .into(),
                ),
            )
            .into());
        }
        Ok(())
    }

    /// Closes the store: finishes and syncs queued appends, waits for
    /// pending seals, and stops the background threads. With a signing key
    /// ([`StoreOptions::checkpoints`](crate::StoreOptions::checkpoints)), it
    /// then signs a checkpoint of the durable log if the log grew since the
    /// last one, so that every record is covered by a checkpoint once the
    /// writer is gone. Errors that happened in the background, or in signing
    /// that checkpoint, are returned. Dropping the last handle does the
    /// same, without returning errors.
    pub fn close(self) -> Result<()> {
        let result = self.workers.shutdown(&self.inner);
        let failed = self.inner.progress.failure();
        result?;
        match failed {
            Some(f) => Err(f.to_error()),
            None => Ok(()),
        }
    }

    pub(crate) fn view(&self) -> Arc<View> {
        self.inner.readers.snapshot()
    }

    /// Appends the `store.recovered` event if recovery dropped bytes.
    /// The privacy policy the log says its writer applies now: the newest
    /// `store.privacy_policy` record and its seq (`None`: never recorded,
    /// so no privacy rules were ever applied by a writer that records
    /// them).
    pub fn recorded_privacy_policy(
        &self,
    ) -> Result<Option<(u64, crate::privacy::PolicyDescription)>> {
        use crate::policy_note;
        let view = self.view();
        let config = &self.inner.config;
        let sealed_end = view.sealed_end();
        // The note spares looking into every sealed segment's index: only
        // those sealed since the seq it covers, and the open ones.
        if let Some(note) = policy_note::read(&*config.fs, &config.dir, &config.manifest.store_id)
            .filter(|n| n.covered <= sealed_end)
        {
            if let Some(found) = policy_note::newest_in(&view, note.covered..u64::MAX, &self.inner)?
            {
                return Ok(Some(found));
            }
            let Some(seq) = note.newest else {
                return Ok(None);
            };
            if let Some(record) = self.get(seq)?
                && let Some(description) =
                    crate::privacy::PolicyDescription::from_event(&record.event)
            {
                return Ok(Some((seq, description)));
            }
            tracing::warn!(
                seq,
                file = %policy_note::path(&config.dir).display(),
                "the privacy-policy note names a record that is not a privacy policy: searching the whole log"
            );
        }
        policy_note::newest_in(&view, 0..u64::MAX, &self.inner)
    }

    /// Records the privacy policy this writer applies when it has rules and
    /// they (or their key) differ from the newest recorded ones, so that
    /// readers (and auditors) can tell which records were written under
    /// which rules and key. A writer without rules records nothing and
    /// reads nothing here: opening a store that uses no privacy rules costs
    /// no lookup.
    fn record_privacy_policy(&self) -> Result<()> {
        let now = self.inner.config.options.privacy.describe();
        if now.is_empty() {
            return Ok(());
        }
        let recorded = self.recorded_privacy_policy()?;
        if recorded.as_ref().is_none_or(|(_, before)| *before != now) {
            self.append_batch_with([now.event()], Durability::Group)?;
        }
        Ok(())
    }

    fn record_recovery(&self) -> Result<()> {
        let events = self.inner.recovery.events();
        if !events.is_empty() {
            self.append_batch_with(events, Durability::Group)?;
        }
        Ok(())
    }
}

impl Inner {
    /// Counts an acknowledged append of `events` events.
    fn count_append(&self, events: usize) {
        crate::stats::Counters::add(&self.counters.appends, 1);
        crate::stats::Counters::add(&self.counters.appended_events, events as u64);
    }

    pub(crate) fn new(parts: Parts) -> Arc<Inner> {
        let inner = Arc::new(Inner {
            config: parts.config,
            sequencer: parts.sequencer,
            progress: Progress::new(parts.durable),
            sealing: parts.sealing,
            readers: Readers::new(parts.view, parts.durable),
            tree: parts.tree,
            checkpoints: parts.checkpoints,
            index_env: parts.index_env,
            recovery: parts.recovery,
            damage: parts.damage,
            counters: Counters::default(),
            _lock: parts.lock,
        });
        // Set once, here: the environment belongs to this store.
        let linked = inner.index_env.store.set(Arc::downgrade(&inner));
        debug_assert!(linked.is_ok(), "an index environment serves one store");
        inner
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn sequencer(&self) -> &Sequencer {
        &self.sequencer
    }

    pub(crate) fn progress(&self) -> &Progress {
        &self.progress
    }

    pub(crate) fn sealing(&self) -> &Sealing {
        &self.sealing
    }

    pub(crate) fn readers(&self) -> &Readers {
        &self.readers
    }

    pub(crate) fn tree(&self) -> Option<&Tree> {
        self.tree.as_ref()
    }

    pub(crate) fn index_env(&self) -> &Arc<IndexEnv> {
        &self.index_env
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    pub(crate) fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Latches a write failure: the sequencer refuses new appends, and
    /// every waiter (appenders, `wait_sealed`) wakes with the error. The
    /// first failure is the one reported.
    pub(crate) fn latch(&self, failure: Failure) {
        tracing::error!(store = %self.config.dir.display(), cause = %failure.cause, "write failure; refusing writes until reopened");
        self.sequencer.latch(&failure);
        self.progress.fail(failure);
        self.sealing.wake();
    }

    /// The bytes of record `seq` in `view`; `None` beyond its end. A seq
    /// below the end that no segment holds (a gap a store reading around
    /// damage skips) is an error naming the damage.
    pub(crate) fn record_bytes(&self, view: &View, seq: u64) -> Result<Option<Vec<u8>>> {
        match view.record_bytes(seq) {
            Ok(Some(bytes)) => Ok(Some(bytes)),
            Ok(None) if seq < view.len() => Err(self.gap_error(seq)),
            Ok(None) => Ok(None),
            Err(e) => {
                self.noticed(seq, &e);
                Err(e)
            }
        }
    }

    /// The error for a seq below the end of the view that no segment holds.
    pub(crate) fn gap_error(&self, seq: u64) -> Error {
        let known = self.damage.as_ref().and_then(|log| log.covering(seq));
        match known {
            Some(damage) => damage.corruption.into(),
            None => crate::error::Corruption::new(
                crate::error::Location::default().seq(seq),
                crate::error::CorruptionKind::Layout(format!(
                    "no segment holds record {seq}, below the end of the log"
                )),
            )
            .into(),
        }
    }

    /// Notes, on a store reading around damage, that record `seq` could
    /// not be read (see [`Store::damage`]).
    pub(crate) fn noticed(&self, seq: u64, e: &Error) {
        if let (Some(log), Error::Corruption(c)) = (&self.damage, e) {
            // `met` refuses only what is not corruption: this never fails.
            let _ = log.met(seq, Error::Corruption(c.clone()));
        }
    }

    /// On a store reading around damage, notes a read's corruption and
    /// returns `Ok` so that the read goes on; otherwise returns the error.
    pub(crate) fn read_around(&self, seq: u64, e: Error) -> Result<()> {
        match &self.damage {
            Some(log) => log.met(seq, e),
            None => Err(e),
        }
    }

    /// The number of records proofs and checkpoints can cover now: the
    /// durable prefix of the log.
    pub fn tree_size(&self) -> u64 {
        self.progress.durable().min(self.readers.snapshot().len())
    }

    /// Runs `f` with a node source over the first `size` records.
    pub(crate) fn with_tree<T>(
        &self,
        size: u64,
        f: impl FnOnce(&crate::tree::TreeSource<'_>) -> Result<T>,
    ) -> Result<T> {
        let Some(tree) = &self.tree else {
            return Err(Error::Config(
                "this store has no Merkle tree files (open it for writing once to build them)"
                    .into(),
            ));
        };
        let view = self.readers.snapshot();
        if size > view.len() {
            return Err(Error::Proof(
                sealog_format::merkle::ProofError::InvalidSizes {
                    old_size: size,
                    new_size: view.len(),
                },
            ));
        }
        // A size the level files cover (every size an archive round
        // uploads, and every older checkpoint) is served from them alone,
        // without the tail's lock or any open segment's.
        let fetch = |first: u64, count: usize| view.leaves_from_records(first, count);
        if let Some(source) = tree.stored_source(size, &fetch) {
            return f(&source);
        }
        let mut tail = tree.tail.lock();
        // The leaves the tail lacks up to `size` are copied out of their
        // open segment in bounded chunks, each under a short hold of the
        // segment's data lock, and hashed after it is released: the
        // committer takes that lock to publish every group, and hashing a
        // whole segment's leaves under it stalled ingest for tens of
        // milliseconds at each checkpoint and archive round.
        tree.fill_tail(&mut tail, size, |from, max| view.open_leaves(from, max));
        let source = tree.source(&tail, size, &fetch);
        f(&source)
    }

    /// The RFC 9162 root of the first `size` records.
    pub fn root(&self, size: u64) -> Result<Hash> {
        if size == 0 {
            return Ok(sealog_format::merkle::empty_root());
        }
        self.with_tree(size, |src| sealog_format::merkle::range_hash(src, 0, size))
    }

    /// The whole log's Merkle frontier at `size` records, for an index
    /// snapshot's chunk (`crate::open_index`), if this store signs
    /// checkpoints or has signed ones (a writer without the key on a store
    /// a signing writer wrote): a read-only open checks the newest
    /// checkpoint from it instead of hashing the open segments' leaves. It
    /// brings the tree's tail up to `size`, as the next checkpoint would.
    /// `None` for a store without checkpoints, or if the tree cannot give
    /// it.
    pub(crate) fn snapshot_frontier(&self, size: u64) -> Option<sealog_format::merkle::Frontier> {
        if self.config.options.checkpoints.is_none() && self.checkpoints.latest().is_none() {
            return None;
        }
        self.with_tree(size, |src| {
            sealog_format::merkle::Frontier::from_source(src, size)
        })
        .ok()
    }

    pub(crate) fn check_size(&self, size: u64) -> Result<()> {
        let durable = self.tree_size();
        if size > durable {
            return Err(Error::InvalidQuery {
                field: "tree_size",
                reason: format!("{size} is larger than the durable log ({durable} records)"),
            });
        }
        Ok(())
    }

    /// The chain value after the first `size` records (for a size that ends
    /// in an open segment or at a segment boundary).
    pub(crate) fn chain_at(&self, size: u64) -> Result<Hash> {
        if size == 0 {
            return Ok(self.config.manifest.genesis());
        }
        let view = self.readers.snapshot();
        let last = size - 1;
        for open in &view.open {
            let data = open.data.read();
            if let Some(i) = last.checked_sub(open.header.first_seq)
                && let Some(c) = usize::try_from(i).ok().and_then(|i| data.chains.get(i))
            {
                return Ok(*c);
            }
        }
        for s in view.sealed.iter().rev() {
            if s.footer.end_seq() == size {
                return Ok(s.footer.chain_head);
            }
        }
        Err(Error::Config(format!(
            "the chain value after {size} records is not at hand (it is kept for open segments              and segment ends)"
        )))
    }

    /// Signs a checkpoint of the durable log now, appends it to the
    /// history and returns it. If the newest checkpoint already covers the
    /// same size, that one is returned.
    pub fn checkpoint(&self) -> Result<crate::checkpoint::SignedCheckpoint> {
        let Some(options) = &self.config.options.checkpoints else {
            return Err(Error::Config(
                "no signing key is configured (StoreOptions::checkpoints)".into(),
            ));
        };
        if self.config.read_only {
            return Err(Error::ReadOnly);
        }
        if let Some(failure) = self.progress.failure() {
            return Err(failure.to_error());
        }
        let _signing = self.checkpoints.signing();
        let size = self.tree_size();
        if let Some(latest) = self.latest_checkpoint()?
            && latest.size == size
        {
            return Ok(latest);
        }
        let root = self.root(size)?;
        let chain_head = self.chain_at(size)?;
        let signed = crate::checkpoint::sign(&options.key, size, root, chain_head)?;
        if let Err(e) = self.checkpoints.append(&signed.text) {
            // A failed write or sync of the history is latched like any
            // other: retrying it could report success for bytes the kernel
            // dropped, and the checkpoint log is evidence.
            if e.io_kind().is_some() {
                self.latch(Failure::of("writing a checkpoint", &e));
            }
            return Err(e);
        }
        Ok(signed)
    }

    /// The newest checkpoint issued, if any.
    pub(crate) fn latest_checkpoint(&self) -> Result<Option<crate::checkpoint::SignedCheckpoint>> {
        self.checkpoints
            .latest()
            .map(|text| parse_signed(&text))
            .transpose()
    }
}

/// Reads size, root and chain value from a signed checkpoint's text (the
/// store's own: the signature was checked when it was made).
pub(crate) fn parse_signed(text: &str) -> Result<crate::checkpoint::SignedCheckpoint> {
    let note = sealog_format::note::Note::parse(text)
        .map_err(|e| Error::Config(format!("a stored checkpoint does not parse: {e}")))?;
    let body = sealog_format::checkpoint::Checkpoint::parse(note.text())
        .map_err(|e| Error::Config(format!("a stored checkpoint does not parse: {e}")))?;
    let Some(chain_head) = crate::checkpoint::chain_head_of(&body) else {
        return Err(Error::Config(format!(
            "a stored checkpoint (size {}) has no `{}` line with its chain value",
            body.size,
            crate::checkpoint::CHAIN_EXTENSION
        )));
    };
    Ok(crate::checkpoint::SignedCheckpoint {
        size: body.size,
        root: body.root,
        chain_head,
        text: text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use sealog_format::checkpoint::Checkpoint;
    use sealog_format::note::SigningKey;
    use sealog_format::{Actor, Outcome, Resource};

    use super::*;

    /// Queries read an open segment's index under a shared lock: one run
    /// while another reader holds it (the sealer encoding a full segment's
    /// sidecar holds it for hundreds of ms) is not held up.
    #[test]
    fn a_query_reads_an_open_segment_while_another_reader_holds_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            preallocation: crate::Preallocation::None,
            ..StoreOptions::default()
        };
        let store = Store::open(dir.path(), options).unwrap();
        for i in 0..20 {
            let actor = if i % 2 == 0 { "alice" } else { "bob" };
            store
                .append(Event::new(
                    Actor::new("user", actor),
                    "doc.read",
                    Resource::new("doc", i.to_string()),
                    Outcome::Success,
                ))
                .unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while store.stats().index_lag > 0 {
            assert!(std::time::Instant::now() < deadline, "not indexed in 30 s");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let view = store.inner.readers().snapshot();
        let segment = view.open.last().unwrap().clone();
        let held = segment.index.read();
        let (tx, rx) = std::sync::mpsc::channel();
        let querier = store.clone();
        std::thread::spawn(move || {
            let query = crate::query::Query {
                actor: Some(crate::query::ActorFilter::parse("user:alice")),
                limit: 3,
                ..crate::query::Query::default()
            };
            drop(tx.send(querier.query(&query).map(|p| p.records.len())));
        });
        let answered = rx.recv_timeout(std::time::Duration::from_secs(20));
        drop(held);
        assert_eq!(
            answered
                .expect("the query waited for the held index")
                .unwrap(),
            3
        );
    }

    #[test]
    fn a_stored_checkpoint_without_its_chain_value_is_refused_not_read_as_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_seed("audit.example.com/chain", &[4u8; 32]).unwrap();
        let options = StoreOptions {
            checkpoints: Some(crate::CheckpointOptions::new(key.clone())),
            preallocation: crate::Preallocation::None,
            ..StoreOptions::default()
        };
        let store = Store::open(dir.path(), options.clone()).unwrap();
        store
            .append(Event::new(
                Actor::new("user", "alice"),
                "doc.read",
                Resource::new("doc", "1"),
                Outcome::Success,
            ))
            .unwrap();
        // A checkpoint of the log, signed with the store's key, but without
        // the chain value every checkpoint of a store carries.
        let size = store.tree_size();
        let body = Checkpoint {
            origin: key.name().to_owned(),
            size,
            root: store.root(size).unwrap(),
            extensions: Vec::new(),
        };
        let text = sealog_format::checkpoint::sign(&body, &key).unwrap();
        store.inner.checkpoints.append(&text).unwrap();
        match store.latest_checkpoint() {
            Err(Error::Config(reason)) => assert!(reason.contains("sealog-chain"), "{reason}"),
            other => panic!("expected the checkpoint refused, got {other:?}"),
        }
        drop(store);
        match Store::open(dir.path(), options) {
            Err(Error::Corruption(c)) => {
                assert!(c.location.file.starts_with("checkpoints.log"), "{c}");
            }
            other => panic!("expected the history refused, got {:?}", other.map(drop)),
        }
    }
}
