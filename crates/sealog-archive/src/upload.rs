//! Upload rounds: ship what the archive lacks, then the manifest.
//!
//! A round reads the archive's newest manifest (the cursor: its
//! `tree_size`), checks that it describes the local log (same store, same
//! root at that size), takes the sealed segments after it, and uploads for
//! each its bytes, its sidecar and its tree pieces, then the checkpoint,
//! then the manifest, last. Every upload is write-once; an object already
//! there with the same bytes is what a round interrupted by a crash left,
//! and is taken as uploaded. Until the manifest is written the round did
//! not happen: the next round starts from the same cursor and finds the
//! same names.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot_free::Mutex;
use sealog::Store;
use sealog::image::SealedSegmentInfo;
use sealog_format::Hash;
use sealog_format::checkpoint::Checkpoint;
use sealog_format::note::SigningKey;

use crate::error::{ArchiveError, Result};
use crate::layout;
use crate::manifest::{
    CheckpointRef, FORMAT, LockRecord, Manifest, ObjectEntry, ObjectRef, VERSION, hash_hex,
    parse_hash, sha256_hex,
};
use crate::target::{PutOutcome, Target, TargetOptions};

mod parking_lot_free {
    //! A poison-free mutex over std's (a panic while holding it loses
    //! nothing: the state is plain counters).
    pub struct Mutex<T>(std::sync::Mutex<T>);
    impl<T> Mutex<T> {
        pub fn new(v: T) -> Self {
            Mutex(std::sync::Mutex::new(v))
        }
        pub fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|p| p.into_inner())
        }
    }
}

/// How an [`Archiver`] works.
#[derive(Clone, Debug, Default)]
pub struct ArchiverOptions {
    /// The target's lock and retry settings.
    pub target: TargetOptions,
    /// A signing key, used only when no checkpoint of the store covers the
    /// records to archive: the archiver then signs one at exactly the
    /// archived size (the store's own key; it is not written to the
    /// store's `checkpoints.log`, the archive keeps it).
    pub signing_key: Option<Arc<SigningKey>>,
    /// At most this many segment bytes per round (0: no limit). Smaller
    /// rounds write more manifests and lose less work to an interruption.
    pub max_round_bytes: u64,
    /// Also upload, beside each segment, its records as Parquet: one file
    /// per event date, `parquet/date=<YYYY-MM-DD>/<first seq>.parquet`
    /// (for SQL engines over the bucket). Segments archived while it was
    /// off get none.
    pub parquet: bool,
}

/// What the archiver has done and how far behind it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Records in the archive (its newest manifest's `tree_size`), once
    /// known.
    pub archived_tree_size: Option<u64>,
    /// Records in the local store's sealed segments at the last look.
    pub sealed_tree_size: u64,
    /// Sealed records not archived yet.
    pub lag_records: u64,
    /// Bytes of sealed segments not archived yet.
    pub lag_bytes: u64,
    /// Rounds completed (manifests written) by this archiver.
    pub rounds: u64,
    /// Objects written by this archiver.
    pub objects_written: u64,
    /// Bytes written by this archiver.
    pub bytes_written: u64,
    /// Rounds that failed.
    pub failures: u64,
    /// Failures since the last successful round.
    pub consecutive_failures: u64,
    /// The last failure's message (cleared by a successful round).
    pub last_error: Option<String>,
    /// Object-store requests retried after a transient failure.
    pub retries: u64,
}

/// What one round did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoundReport {
    /// The manifest written, if the round had anything to ship.
    pub manifest: Option<String>,
    /// The round number (of the manifest written, or the newest one).
    pub round: u64,
    /// Archived records before the round.
    pub from_size: u64,
    /// Archived records after it.
    pub tree_size: u64,
    /// Segments shipped.
    pub segments: u64,
    /// Objects written (manifest included).
    pub objects_written: u64,
    /// Objects found already uploaded (resuming an interrupted round).
    pub objects_already_there: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// The checkpoint the manifest relies on.
    pub checkpoint_size: Option<u64>,
    /// Whether the archiver signed that checkpoint itself.
    pub signed_checkpoint: bool,
    /// Wall time.
    pub elapsed: Duration,
}

/// Uploads a store's sealed segments to an archive, round by round.
///
/// Drive it with [`Archiver::round`] (blocking, its own runtime) or
/// [`Archiver::round_async`]; [`Archiver::progress`] reports lag and
/// failures for metrics.
pub struct Archiver {
    target: Target,
    options: ArchiverOptions,
    progress: Mutex<Progress>,
    pub(crate) runtime: std::sync::OnceLock<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Archiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archiver")
            .field("url", &self.target.url())
            .finish_non_exhaustive()
    }
}

/// The newest manifest of an archive, with its name and digest.
#[derive(Clone, Debug)]
pub struct Head {
    /// Its object name.
    pub name: String,
    /// SHA-256 of its bytes.
    pub sha256: String,
    /// The manifest.
    pub manifest: Manifest,
}

/// A runtime for the blocking facades.
pub(crate) fn runtime(
    cell: &std::sync::OnceLock<tokio::runtime::Runtime>,
) -> Result<&tokio::runtime::Runtime> {
    if let Some(rt) = cell.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| ArchiveError::Io {
            op: "start the archive's runtime",
            path: std::path::PathBuf::from("tokio"),
            source,
        })?;
    Ok(cell.get_or_init(|| rt))
}

/// Reads the newest manifest (by round number) of the archive, if any.
pub async fn read_head(target: &Target) -> Result<Option<Head>> {
    let names = target.list(layout::MANIFESTS).await?;
    let Some((name, _)) = names
        .iter()
        .rev()
        .find(|(n, _)| matches!(layout::parse(n), Some(layout::ObjectKind::Manifest(_))))
    else {
        return Ok(None);
    };
    let bytes = target
        .get(name)
        .await?
        .ok_or_else(|| ArchiveError::tampered(name.clone(), "was listed but cannot be read"))?;
    let manifest =
        Manifest::parse(&bytes).map_err(|e| ArchiveError::tampered(name.clone(), e.to_string()))?;
    Ok(Some(Head {
        name: name.clone(),
        sha256: sha256_hex(&bytes),
        manifest,
    }))
}

struct Chosen {
    size: u64,
    root: Hash,
    text: String,
    origin: String,
    signed_here: bool,
}

impl Archiver {
    /// An archiver for the archive at `url`.
    pub fn new(url: &str, options: ArchiverOptions) -> Result<Archiver> {
        let target = Target::open(url, options.target.clone())?;
        Ok(Archiver {
            target,
            options,
            progress: Mutex::new(Progress::default()),
            runtime: std::sync::OnceLock::new(),
        })
    }

    /// The archive's location.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Progress so far.
    pub fn progress(&self) -> Progress {
        let mut p = self.progress.lock().clone();
        p.retries = self.target.retries();
        p
    }

    /// One upload round against `store` (open it read-only: the archiver
    /// takes no lock and works beside a running server). Blocking.
    pub fn round(&self, store: &Store) -> Result<RoundReport> {
        runtime(&self.runtime)?.block_on(self.round_async(store))
    }

    /// One upload round, async.
    pub async fn round_async(&self, store: &Store) -> Result<RoundReport> {
        let result = self.round_inner(store).await;
        let mut p = self.progress.lock();
        match &result {
            Ok(r) => {
                p.archived_tree_size = Some(r.tree_size);
                p.lag_records = p.sealed_tree_size.saturating_sub(r.tree_size);
                if r.manifest.is_some() {
                    p.rounds += 1;
                }
                p.objects_written += r.objects_written;
                p.bytes_written += r.bytes_written;
                p.consecutive_failures = 0;
                p.last_error = None;
            }
            Err(e) => {
                p.failures += 1;
                p.consecutive_failures += 1;
                p.last_error = Some(e.to_string());
            }
        }
        result
    }

    /// The verified bytes of the archived segment starting at `first_seq`
    /// (for a read path that fetches archived segments into a cache): the
    /// object is compared with its manifest's SHA-256 and checked as a
    /// sealed segment.
    pub async fn fetch_segment(&self, first_seq: u64) -> Result<Bytes> {
        let name = layout::segment(first_seq);
        let mut manifests = self.target.list(layout::MANIFESTS).await?;
        manifests.reverse();
        for (m, _) in manifests {
            let Some(bytes) = self.target.get(&m).await? else {
                continue;
            };
            let Ok(manifest) = Manifest::parse(&bytes) else {
                continue;
            };
            if manifest.from_size > first_seq {
                continue;
            }
            let Some(entry) = manifest.objects.iter().find(|o| o.name == name) else {
                break;
            };
            let data = self.target.get(&name).await?.ok_or_else(|| {
                ArchiveError::tampered(&name, format!("is listed by {m} but missing"))
            })?;
            if sha256_hex(&data) != entry.sha256 {
                return Err(ArchiveError::tampered(
                    &name,
                    format!("does not match the SHA-256 recorded in {m}"),
                ));
            }
            sealog::image::check_sealed(&name, &data)
                .map_err(|e| ArchiveError::tampered(&name, e.to_string()))?;
            return Ok(data);
        }
        Err(ArchiveError::config(
            format!("no archived segment starts at seq {first_seq}"),
            "ask for the first seq of a segment the archive holds",
        ))
    }

    async fn round_inner(&self, store: &Store) -> Result<RoundReport> {
        let started = Instant::now();
        let sealed = sealog::image::sealed_segments(store);
        let sealed_end = sealed.last().map_or(0, |s| s.footer.end_seq());
        {
            // Lag as far as known, before the archive is reached (it may
            // not answer).
            let mut p = self.progress.lock();
            let archived = p.archived_tree_size.unwrap_or(0);
            p.sealed_tree_size = sealed_end;
            p.lag_records = sealed_end.saturating_sub(archived);
            p.lag_bytes = sealed
                .iter()
                .filter(|s| s.header.first_seq >= archived)
                .map(|s| s.footer.file_len())
                .sum();
        }
        let head = read_head(&self.target).await?;
        let store_id = hex::encode(store.store_id());
        let (round, from_size, previous) = match &head {
            None => (1, 0, None),
            Some(h) => {
                self.check_head(store, &store_id, h)?;
                (h.manifest.round + 1, h.manifest.tree_size, Some(h))
            }
        };
        let pending: Vec<&SealedSegmentInfo> = sealed
            .iter()
            .filter(|s| s.header.first_seq >= from_size)
            .collect();
        {
            let mut p = self.progress.lock();
            p.archived_tree_size = Some(from_size);
            p.lag_records = sealed_end.saturating_sub(from_size);
            p.lag_bytes = pending.iter().map(|s| s.footer.file_len()).sum();
        }
        let mut report = RoundReport {
            manifest: None,
            round: round - 1,
            from_size,
            tree_size: from_size,
            segments: 0,
            objects_written: 0,
            objects_already_there: 0,
            bytes_written: 0,
            checkpoint_size: previous.map(|h| h.manifest.checkpoint.size),
            signed_checkpoint: false,
            elapsed: Duration::ZERO,
        };
        let Some(first) = pending.first() else {
            report.elapsed = started.elapsed();
            return Ok(report);
        };
        if first.header.first_seq != from_size {
            return Err(ArchiveError::config(
                format!(
                    "the archive holds records 0..{from_size}, but the local store's next sealed \
                     segment starts at seq {}",
                    first.header.first_seq
                ),
                "the archive and the store disagree on segment boundaries: archive this store \
                 to a new prefix",
            ));
        }
        // The round's segments, bounded in bytes.
        let mut batch = Vec::new();
        let mut bytes_in_round = 0u64;
        for s in pending {
            if self.options.max_round_bytes > 0
                && !batch.is_empty()
                && bytes_in_round + s.footer.file_len() > self.options.max_round_bytes
            {
                break;
            }
            bytes_in_round += s.footer.file_len();
            batch.push(s);
        }
        let tree_size = batch.last().map_or(from_size, |s| s.footer.end_seq());
        let chosen = self.choose_checkpoint(store, previous, tree_size)?;
        let previous_cp = previous.map(|h| {
            (
                h.manifest.checkpoint.size,
                h.manifest.checkpoint.name.clone(),
            )
        });
        if let Some(h) = previous
            && h.manifest.origin != chosen.origin
        {
            return Err(ArchiveError::config(
                format!(
                    "the archive's checkpoints are signed by `{}`, this store's by `{}`",
                    h.manifest.origin, chosen.origin
                ),
                "archive each log to its own prefix; a log keeps its signing key",
            ));
        }
        let root = store.root(tree_size).map_err(|e| {
            ArchiveError::store(format!("computing the root of {tree_size} records"), e)
        })?;
        let checkpoint_proof = store
            .consistency_proof(tree_size, chosen.size)
            .map_err(|e| ArchiveError::store("computing a consistency proof", e))?;
        sealog_format::merkle::verify_consistency(
            tree_size,
            chosen.size,
            &root,
            &chosen.root,
            &checkpoint_proof,
        )
        .map_err(|e| {
            ArchiveError::store(
                "checking the local tree against the checkpoint",
                sealog::Error::Proof(e),
            )
        })?;
        let previous_checkpoint_proof = match previous_cp {
            Some((size, _)) => store
                .consistency_proof(size, chosen.size)
                .map_err(|e| ArchiveError::store("computing a consistency proof", e))?,
            None => Vec::new(),
        };
        // The log must extend the archive's last checkpoint: a local log
        // rewritten since (or another log) is refused before any upload.
        if let Some(h) = previous {
            let prev = parse_checkpoint(&h.manifest.checkpoint.text).ok_or_else(|| {
                ArchiveError::tampered(&h.name, "carries a checkpoint that does not parse")
            })?;
            sealog_format::merkle::verify_consistency(
                prev.size,
                chosen.size,
                &prev.root,
                &chosen.root,
                &previous_checkpoint_proof,
            )
            .map_err(|e| {
                ArchiveError::store(
                    format!(
                        "checking the local log against the archive's checkpoint of {} records                          (in {})",
                        prev.size, h.name
                    ),
                    sealog::Error::Proof(e),
                )
            })?;
        }

        let uploader = self.target.uploader()?;
        let mut objects = Vec::new();
        // `sha256`: the object's hash when the thread that prepared it
        // computed it already.
        let mut put = async |name: String,
                             bytes: Bytes,
                             sha256: Option<String>,
                             report: &mut RoundReport|
               -> Result<()> {
            let entry = ObjectEntry {
                name: name.clone(),
                size: bytes.len() as u64,
                sha256: sha256.unwrap_or_else(|| sha256_hex(&bytes)),
            };
            let len = bytes.len() as u64;
            match uploader.put_once(&name, bytes).await? {
                PutOutcome::Written => {
                    report.objects_written += 1;
                    report.bytes_written += len;
                }
                PutOutcome::AlreadyThere => report.objects_already_there += 1,
            }
            objects.push(entry);
            Ok(())
        };

        let mut chain = match previous {
            Some(h) => parse_hash(&h.manifest.chain_head)
                .ok_or_else(|| ArchiveError::tampered(&h.name, "has a malformed chain_head"))?,
            None => sealog_format::chain::genesis(&store.store_id()),
        };
        let mut lower = LevelCursor::new(store, from_size)?;
        // Reading, checking and encoding a segment's sidecar is CPU work:
        // it runs on a thread of its own at a lower priority,
        // `PREPARE_AHEAD` segments ahead of the upload, which takes them in
        // order (the chain and the tree pieces are checked and cut in
        // order).
        let ahead = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(PREPARE_AHEAD);
        let jobs: Vec<(String, std::path::PathBuf)> = batch
            .iter()
            .map(|s| (s.name.clone(), s.path.clone()))
            .collect();
        let parquet = self.options.parquet;
        let mut prepared =
            futures_util::stream::iter(jobs.into_iter().map(|(name, path)| async move {
                let file = path.clone();
                let failed = |source: std::io::Error| ArchiveError::Io {
                    op: "check before upload (the worker thread failed)",
                    path: file.clone(),
                    source,
                };
                let (tx, rx) = tokio::sync::oneshot::channel();
                std::thread::Builder::new()
                    .name("sealog-archive".into())
                    .spawn(move || {
                        sealog::background::idle_thread_priority();
                        let _ = tx.send(prepare_segment(&name, &path, parquet));
                    })
                    .map_err(failed)?;
                rx.await.unwrap_or_else(|_| {
                    Err(failed(std::io::Error::other("it ended without an answer")))
                })
            }))
            .buffered(ahead);
        while let Some(next) = prepared.next().await {
            let Prepared {
                name,
                bytes,
                bytes_sha256,
                image,
                sidecar,
                sidecar_sha256,
                parquet,
            } = next?;
            if image.header.chain_in != chain || image.header.store_id != store.store_id() {
                return Err(ArchiveError::store(
                    format!("checking {name} before upload"),
                    sealog::Error::Config(format!(
                        "{name} does not link to the segment before it (chain value or store id)"
                    )),
                ));
            }
            chain = image.footer.chain_head;
            let first = image.header.first_seq;
            let pieces = lower.extend(store, &image.leaves)?;
            match put(
                layout::segment(first),
                bytes.clone(),
                Some(bytes_sha256),
                &mut report,
            )
            .await
            {
                // The object written by a round interrupted before its
                // manifest, in the other form (the store compressed the
                // segment since): kept, and listed as it is, when it
                // holds the same segment.
                Err(ArchiveError::Conflict { object, detail }) => {
                    let kept = match self.target.get(&layout::segment(first)).await? {
                        Some(existing) if sealog::image::same_segment(&existing, &bytes) => {
                            Some(existing)
                        }
                        _ => None,
                    };
                    let Some(existing) = kept else {
                        return Err(ArchiveError::Conflict { object, detail });
                    };
                    put(layout::segment(first), existing, None, &mut report).await?;
                }
                other => other?,
            }
            put(
                layout::sidecar(first),
                Bytes::from(sidecar),
                Some(sidecar_sha256),
                &mut report,
            )
            .await?;
            for p in parquet {
                match put(p.name.clone(), p.bytes, Some(p.sha256), &mut report).await {
                    // A Parquet file of this name written before (a round
                    // interrupted, then resumed by another sealog version
                    // whose encoder writes other bytes) is kept, and listed
                    // as it is, when it holds exactly these records.
                    Err(ArchiveError::Conflict { object, detail }) => {
                        let kept = match self.target.get(&p.name).await? {
                            Some(existing) => crate::parquet::check_existing(
                                &name, &bytes, &image, &p.name, &existing,
                            )
                            .map(|()| existing)
                            .ok(),
                            None => None,
                        };
                        let Some(existing) = kept else {
                            return Err(ArchiveError::Conflict { object, detail });
                        };
                        put(p.name, existing, None, &mut report).await?;
                    }
                    other => other?,
                }
            }
            for (k, first_index, hashes) in pieces {
                let mut buf = Vec::with_capacity(hashes.len() * 32);
                for h in &hashes {
                    buf.extend_from_slice(h);
                }
                put(
                    layout::tree_piece(k, first_index),
                    Bytes::from(buf),
                    None,
                    &mut report,
                )
                .await?;
            }
            report.segments += 1;
        }
        let cp_name = layout::checkpoint(chosen.size);
        let cp_bytes = Bytes::from(chosen.text.clone().into_bytes());
        let cp_sha = sha256_hex(&cp_bytes);
        if previous.is_none_or(|h| h.manifest.checkpoint.name != cp_name) {
            put(cp_name.clone(), cp_bytes, Some(cp_sha.clone()), &mut report).await?;
        } else if previous.is_some_and(|h| h.manifest.checkpoint.sha256 != cp_sha) {
            return Err(ArchiveError::Conflict {
                object: cp_name,
                detail: "the previous manifest recorded another checkpoint of this size".into(),
            });
        }
        let manifest = Manifest {
            format: FORMAT.into(),
            version: VERSION,
            round,
            store_id,
            origin: chosen.origin.clone(),
            previous: previous.map(|h| ObjectRef {
                name: h.name.clone(),
                sha256: h.sha256.clone(),
            }),
            from_size,
            tree_size,
            root: hash_hex(&root),
            chain_head: hash_hex(&chain),
            objects,
            checkpoint: CheckpointRef {
                name: cp_name,
                sha256: cp_sha,
                size: chosen.size,
                text: chosen.text.clone(),
            },
            checkpoint_proof: checkpoint_proof.iter().map(hash_hex).collect(),
            previous_checkpoint_proof: previous_checkpoint_proof.iter().map(hash_hex).collect(),
            written_at: now_rfc3339(),
            lock: uploader.retain_until().map(|(mode, until)| LockRecord {
                mode: mode.as_str().into(),
                retain_until: until.clone(),
            }),
        };
        let name = layout::manifest(round);
        let bytes = Bytes::from(manifest.to_bytes());
        let len = bytes.len() as u64;
        match uploader.put_once(&name, bytes).await {
            Ok(_) => {
                report.objects_written += 1;
                report.bytes_written += len;
            }
            // Another archiver finished this round first with another
            // manifest (or someone planted one): refuse to go on.
            Err(e) => return Err(e),
        }
        report.manifest = Some(name);
        report.round = round;
        report.tree_size = tree_size;
        report.checkpoint_size = Some(chosen.size);
        report.signed_checkpoint = chosen.signed_here;
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// The newest manifest must describe this store's log.
    fn check_head(&self, store: &Store, store_id: &str, head: &Head) -> Result<()> {
        let m = &head.manifest;
        if m.store_id != store_id {
            return Err(ArchiveError::config(
                format!(
                    "the archive at {} belongs to store {}, not to this store ({store_id})",
                    self.target.url(),
                    m.store_id
                ),
                "archive each store to its own prefix",
            ));
        }
        let local = store.tree_size();
        if m.tree_size > local {
            return Err(ArchiveError::config(
                format!(
                    "the archive holds {} records, more than the local store ({local})",
                    m.tree_size
                ),
                "the local store lost records or is an older copy: run `sealog verify`, and \
                 `sealog verify --archive` on the archive; restore with `sealog restore` if needed",
            ));
        }
        let root = store
            .root(m.tree_size)
            .map_err(|e| ArchiveError::store("computing a root", e))?;
        if parse_hash(&m.root) != Some(root) {
            return Err(ArchiveError::tampered(
                &head.name,
                format!(
                    "records a root for {} records that differs from the local log's: the \
                     archive or the local store was altered",
                    m.tree_size
                ),
            ));
        }
        Ok(())
    }

    /// The newest checkpoint covering `tree_size` that the local tree can
    /// prove consistent; or one signed now with the configured key.
    fn choose_checkpoint(
        &self,
        store: &Store,
        previous: Option<&Head>,
        tree_size: u64,
    ) -> Result<Chosen> {
        let local = store.tree_size();
        let mut candidates: Vec<(String, Checkpoint)> = Vec::new();
        let checkpoints = store
            .checkpoints()
            .map_err(|e| ArchiveError::store("reading checkpoints.log", e))?;
        for c in checkpoints {
            if let Some(body) = parse_checkpoint(&c.text) {
                candidates.push((c.text, body));
            }
        }
        if let Some(h) = previous
            && let Some(body) = parse_checkpoint(&h.manifest.checkpoint.text)
        {
            candidates.push((h.manifest.checkpoint.text.clone(), body));
        }
        let best = candidates
            .into_iter()
            .filter(|(_, b)| b.size >= tree_size && b.size <= local)
            .max_by_key(|(_, b)| b.size);
        if let Some((text, body)) = best {
            if let Some(key) = &self.options.signing_key {
                sealog_format::checkpoint::open(&text, &key.verifier()).map_err(|e| {
                    ArchiveError::config(
                        format!(
                            "the store's checkpoint of {} records does not verify with the \
                             given signing key: {e}",
                            body.size
                        ),
                        "pass the key this store signs with (or none)",
                    )
                })?;
            }
            let root = store
                .root(body.size)
                .map_err(|e| ArchiveError::store("computing a root", e))?;
            if root != body.root {
                return Err(ArchiveError::store(
                    "checking the store's checkpoint",
                    sealog::Error::Config(format!(
                        "the local log's root at {} records differs from its signed \
                         checkpoint: run `sealog verify`",
                        body.size
                    )),
                ));
            }
            return Ok(Chosen {
                size: body.size,
                root: body.root,
                text,
                origin: body.origin,
                signed_here: false,
            });
        }
        let Some(key) = &self.options.signing_key else {
            return Err(ArchiveError::config(
                format!(
                    "no signed checkpoint of this store covers the {tree_size} records to archive, \
                     and no signing key was given"
                ),
                "give the log's signing key (--signing-key FILE or SEALOG_SIGNING_KEY), or run \
                 the server with its signing key so that it signs a checkpoint at every seal; an \
                 archive without a signature proves nothing against whoever can write to it",
            ));
        };
        let root = store
            .root(tree_size)
            .map_err(|e| ArchiveError::store("computing a root", e))?;
        let chain = sealog::image::sealed_segments(store)
            .iter()
            .find(|s| s.footer.end_seq() == tree_size)
            .map(|s| s.footer.chain_head)
            .ok_or_else(|| {
                ArchiveError::config("no segment ends at the archived size", "report this")
            })?;
        let body = Checkpoint {
            origin: key.name().to_owned(),
            size: tree_size,
            root,
            extensions: vec![format!(
                "{} {}",
                sealog::checkpoint::CHAIN_EXTENSION,
                base64_encode(&chain)
            )],
        };
        let text = sealog_format::checkpoint::sign(&body, key).map_err(|e| {
            ArchiveError::config(
                format!("signing a checkpoint: {e}"),
                "check the signing key",
            )
        })?;
        Ok(Chosen {
            size: tree_size,
            root,
            text,
            origin: body.origin,
            signed_here: true,
        })
    }
}

fn parse_checkpoint(text: &str) -> Option<Checkpoint> {
    let note = sealog_format::note::Note::parse(text).ok()?;
    Checkpoint::parse(note.text()).ok()
}

pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(crate) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Computes the tree pieces each segment completes, from its leaves and
/// the fewer than 256 entries per level that precede the round (read from
/// the store's level files).
struct LevelCursor {
    /// Per level `k`, the entries of the current incomplete group of 256
    /// (those a level-`k+1` entry will be computed from).
    pending: Vec<Vec<Hash>>,
    /// Per level, the index of the next entry.
    next: Vec<u64>,
}

impl LevelCursor {
    fn new(store: &Store, size: u64) -> Result<LevelCursor> {
        let mut pending = Vec::with_capacity(layout::LEVELS);
        let mut next = Vec::with_capacity(layout::LEVELS);
        for k in 0..layout::LEVELS {
            let count = size >> (8 * k);
            let start = count - count % 256;
            let entries = if count > start {
                sealog::image::tree_entries(store, k, start, count - start)
                    .map_err(|e| ArchiveError::store("reading the local tree files", e))?
            } else {
                Vec::new()
            };
            pending.push(entries);
            next.push(count);
        }
        Ok(LevelCursor { pending, next })
    }

    /// Adds a segment's leaves; returns `(level, first index, entries)` of
    /// every level it completes entries of (level 0 always).
    fn extend(&mut self, _store: &Store, leaves: &[Hash]) -> Result<Vec<(usize, u64, Vec<Hash>)>> {
        let mut out: Vec<(usize, u64, Vec<Hash>)> = Vec::new();
        let mut new_entries: Vec<Hash> = leaves.to_vec();
        for k in 0..layout::LEVELS {
            if new_entries.is_empty() {
                break;
            }
            let first = self.next.get(k).copied().unwrap_or(0);
            out.push((k, first, new_entries.clone()));
            if let Some(n) = self.next.get_mut(k) {
                *n += new_entries.len() as u64;
            }
            let mut above = Vec::new();
            if let Some(group) = self.pending.get_mut(k) {
                for h in new_entries {
                    group.push(h);
                    if group.len() == 256 {
                        above.push(sealog_format::merkle::root(group));
                        group.clear();
                    }
                }
            }
            new_entries = above;
        }
        Ok(out)
    }
}

/// How many segments are read, checked and encoded ahead of the upload
/// (at most; fewer on fewer cores). Each holds a segment in memory.
const PREPARE_AHEAD: usize = 2;

/// A sealed segment read and checked, with its sidecar encoded.
struct Prepared {
    name: String,
    bytes: Bytes,
    bytes_sha256: String,
    image: sealog::image::SealedImage,
    sidecar: Vec<u8>,
    sidecar_sha256: String,
    parquet: Vec<crate::parquet::ParquetObject>,
}

fn prepare_segment(name: &str, path: &std::path::Path, parquet: bool) -> Result<Prepared> {
    // Mapped, not read: a segment is up to a GiB, and reading it into a
    // fresh buffer cost the archiver a quarter of its CPU in copying and in
    // the kernel zeroing the buffer's pages. A sealed segment is never
    // written again (`sealog::mmap`); removing it after archiving unlinks
    // it, which leaves a mapping valid; every byte is checked below before
    // anything is uploaded.
    let io = |source| ArchiveError::Io {
        op: "map",
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let bytes = Bytes::from_owner(sealog::mmap::Mapped::map(&file).map_err(io)?);
    // A segment stored compressed is uploaded as it is, and checked, its
    // sidecar and Parquet copies made, from its image, decoded once.
    let plain = sealog::image::uncompressed(name, &bytes)
        .map_err(|e| ArchiveError::store(format!("checking {name} before upload"), e))?;
    let image = sealog::image::check_sealed(name, &plain)
        .map_err(|e| ArchiveError::store(format!("checking {name} before upload"), e))?;
    // In the layout of the store's own sidecar (which may predate column
    // block checksums), so that the archived copy is the local file's
    // bytes and retention can compare the two.
    let local_sidecar = std::fs::File::open(path.with_extension("idx"))
        .ok()
        .and_then(|file| sealog::mmap::Mapped::map(&file).ok());
    let sidecar = sealog::image::sidecar_like(name, &plain, &image, local_sidecar.as_deref())
        .map_err(|e| ArchiveError::store(format!("encoding the sidecar of {name}"), e))?;
    let parquet = if parquet {
        crate::parquet::encode_segment(name, &plain, &image)?
    } else {
        Vec::new()
    };
    drop(plain);
    Ok(Prepared {
        parquet,
        name: name.to_owned(),
        bytes_sha256: sha256_hex(&bytes),
        bytes,
        image,
        sidecar_sha256: sha256_hex(&sidecar),
        sidecar,
    })
}
