//! The Merkle tree over the whole log (RFC 9162), stored so that any root,
//! inclusion proof or consistency proof costs O(log n) small reads.
//!
//! Level `k` (file `tree/leaves` for `k = 0`, `tree/level-k` otherwise)
//! holds, 32 bytes each, the hash of every *complete* perfect subtree of
//! height `8k` among the sealed records: level 0 the leaf hashes, level 1
//! one hash per 256 leaves, level 2 one per 65,536, and so on (the heights
//! of the C2SP tlog-tiles layout). The hash of any other perfect subtree is
//! computed from at most 128 entries of the level below it.
//!
//! The records of unsealed segments are not in these files. Their leaves,
//! and every complete node above them, are kept in memory by
//! [`TailCache`], brought up to date on demand, so proofs about the newest
//! records cost no more than proofs about old ones. Bringing it up to date
//! copies leaves out of an open segment a bounded chunk at a time and hashes
//! them after that segment's lock is released (the committer takes it to
//! publish every group); a tree the files cover is served from them alone.
//!
//! The files are derived data, written by the sealer and synced *before*
//! the segment's footer: on open they cover at least every sealed record
//! (anything beyond is cut, anything missing recomputed), and verification
//! recomputes them.
//!
//! A leaf entry of 32 zero bytes is *not stored* (no SHA-256 output is
//! zero): once a segment is stored compressed, the leaves of the level-1
//! blocks that lie wholly inside it are freed ([`Tree::free_leaves`], a
//! hole punched in the file), 32 of the ~150 bytes an event takes on disk.
//! A read that meets one computes the block's leaves from the records
//! (a [`LeafFetch`]); levels 1 and up are always stored, so any proof
//! needs at most the 256 records of one block hashed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use sealog_format::Hash;
use sealog_format::merkle::{self, NodeSource, ProofError};

use crate::error::{Error, Result};
use crate::fs::{OpenMode, Vfs, VfsFile};

/// Bytes per stored hash.
pub(crate) const LEAF_LEN: u64 = 32;
/// Leaves under one entry of level 1 (a full tile of level 0).
pub(crate) const BLOCK: usize = 1 << STRIDE;
/// Levels stored: heights 0, 8, ..., 56.
pub(crate) const LEVELS: usize = 8;
/// Tree height between stored levels.
const STRIDE: u32 = 8;

/// Computes the leaf hashes of records `[first, first + count)` from the
/// records, for leaves [`LevelFile`] level 0 does not store.
pub(crate) type LeafFetch<'a> = &'a (dyn Fn(u64, usize) -> Result<Vec<Hash>> + 'a);

/// True for a level-0 entry that is not stored (freed, or never written).
pub(crate) fn not_stored(entry: impl AsRef<[u8]>) -> bool {
    entry.as_ref().iter().all(|&b| b == 0)
}

/// The file name of level `k` inside `tree/`.
pub(crate) fn level_file_name(k: usize) -> String {
    if k == 0 {
        crate::layout::LEAVES.to_owned()
    } else {
        format!("level-{k}")
    }
}

/// One level file: fixed-size hashes, entry `i` at offset `32 × i`.
#[derive(Debug)]
pub(crate) struct LevelFile {
    path: PathBuf,
    file: Arc<dyn VfsFile>,
    len: Mutex<u64>,
}

impl LevelFile {
    /// Opens (creating if needed) a level file. Read-only, a missing file
    /// is `None`.
    pub(crate) fn open(fs: &dyn Vfs, path: &Path, read_only: bool) -> Result<Option<LevelFile>> {
        let exists = fs.exists(path).map_err(|e| Error::io("stat", path, e))?;
        let file = if exists {
            let mode = if read_only {
                OpenMode::Read
            } else {
                OpenMode::ReadWrite
            };
            fs.open(path, mode)
                .map_err(|e| Error::io("open", path, e))?
        } else if read_only {
            return Ok(None);
        } else {
            let f = fs
                .open(path, OpenMode::CreateNew)
                .map_err(|e| Error::io("create", path, e))?;
            if let Some(dir) = path.parent() {
                fs.sync_dir(dir)
                    .map_err(|e| Error::io("fsync directory", dir, e))?;
            }
            f
        };
        let bytes = file.size().map_err(|e| Error::io("stat", path, e))?;
        Ok(Some(LevelFile {
            path: path.to_owned(),
            file,
            len: Mutex::new(bytes / LEAF_LEN),
        }))
    }

    pub(crate) fn len(&self) -> u64 {
        *self.len.lock()
    }

    /// Cuts the file to `count` entries.
    ///
    /// Not synced: the entries cut are beyond the sealed records, which
    /// every open cuts again if a power loss brings them back, and the next
    /// write to the file is synced with the cut (a sync covers every change
    /// made to the file before it).
    pub(crate) fn truncate(&self, count: u64) -> Result<()> {
        let mut len = self.len.lock();
        self.file
            .set_len(count * LEAF_LEN)
            .map_err(|e| Error::io("truncate", &self.path, e))?;
        *len = count;
        Ok(())
    }

    /// Writes `hashes` starting at entry `first` (not synced).
    pub(crate) fn write(&self, first: u64, hashes: &[Hash]) -> Result<()> {
        let mut len = self.len.lock();
        let bytes = hashes.concat();
        self.file
            .write_all_at(&bytes, first * LEAF_LEN)
            .map_err(|e| Error::io("write", &self.path, e))?;
        *len = (*len).max(first + hashes.len() as u64);
        Ok(())
    }

    pub(crate) fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("fdatasync", &self.path, e))
    }

    /// Frees the disk blocks of entries `[first, first + count)`, which
    /// then read as zeros (not synced). `Ok(false)` where the filesystem
    /// cannot: the entries stay as they were.
    pub(crate) fn punch(&self, first: u64, count: u64) -> Result<bool> {
        match self.file.punch_hole(first * LEAF_LEN, count * LEAF_LEN) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => Ok(false),
            Err(e) => Err(Error::io("free blocks of", &self.path, e)),
        }
    }

    /// Reads entries `[first, first + count)`.
    pub(crate) fn read(&self, first: u64, count: usize) -> Result<Vec<Hash>> {
        let mut bytes = Vec::new();
        self.read_bytes(first, count, &mut bytes)?;
        Ok(bytes
            .chunks_exact(LEAF_LEN as usize)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect())
    }

    /// The `count` hashes from `first` on as stored bytes, read into `buf`
    /// (resized to fit): one buffer reused for a run of reads costs the
    /// kernel no fresh pages to zero and the caller no copy per hash.
    pub(crate) fn read_bytes(&self, first: u64, count: usize, buf: &mut Vec<u8>) -> Result<()> {
        buf.resize(count * LEAF_LEN as usize, 0);
        self.file
            .read_exact_at(buf, first * LEAF_LEN)
            .map_err(|e| Error::io("read", &self.path, e))
    }
}

/// The complete nodes over the leaves that are not in the level files yet.
///
/// Holds the leaves `[start, start + leaves.len())` and, for every height
/// `h ≥ 1`, the hashes of the nodes lying entirely inside that range, in
/// index order from the first such node.
#[derive(Debug, Default)]
pub(crate) struct TailCache {
    start: u64,
    leaves: Vec<Hash>,
    nodes: Vec<Vec<Hash>>,
}

/// The index of the first node of height `h` lying entirely at or after
/// leaf `start`.
fn first_node(start: u64, h: u32) -> u64 {
    if h >= 64 {
        return u64::from(start > 0);
    }
    start.div_ceil(1u64 << h)
}

impl TailCache {
    fn new(start: u64) -> TailCache {
        TailCache {
            start,
            leaves: Vec::new(),
            nodes: Vec::new(),
        }
    }

    /// One past the last leaf held.
    pub(crate) fn end(&self) -> u64 {
        self.start + self.leaves.len() as u64
    }

    #[cfg(test)]
    fn push(&mut self, leaf: Hash) {
        self.extend(std::slice::from_ref(&leaf));
    }

    /// The cache's first algorithm, kept to check [`TailCache::extend`]
    /// against: after each leaf, hash the nodes it completes, bottom up.
    #[cfg(test)]
    fn push_one_by_one(&mut self, leaf: Hash) {
        self.leaves.push(leaf);
        let g = self.end() - 1;
        let mut h = 1u32;
        while h < 64 && (g + 1).is_multiple_of(1u64 << h) {
            let i = ((g + 1) >> h) - 1;
            if i < first_node(self.start, h) {
                break;
            }
            let (Some(left), Some(right)) = (self.node(h - 1, 2 * i), self.node(h - 1, 2 * i + 1))
            else {
                break;
            };
            let level = (h - 1) as usize;
            if self.nodes.len() <= level {
                self.nodes.resize_with(level + 1, Vec::new);
            }
            if let Some(nodes) = self.nodes.get_mut(level) {
                nodes.push(merkle::node_hash(&left, &right));
            }
            h += 1;
        }
    }

    /// Appends `leaves` and hashes every inner node they complete, height
    /// by height. A height with many new nodes (a read-only open hashing a
    /// whole open segment's tail for the checkpoint check) is hashed in
    /// two halves, one on another thread.
    #[cfg(test)]
    fn extend(&mut self, leaves: &[Hash]) {
        self.leaves.extend_from_slice(leaves);
        self.hash_new_nodes();
    }

    /// [`TailCache::extend`] with leaves the caller no longer needs: an
    /// empty cache takes them without a copy.
    fn extend_owned(&mut self, leaves: Vec<Hash>) {
        if self.leaves.is_empty() {
            self.leaves = leaves;
        } else {
            self.leaves.extend_from_slice(&leaves);
        }
        self.hash_new_nodes();
    }

    /// Hashes the inner nodes that the leaves held complete and the levels
    /// lack, height by height.
    fn hash_new_nodes(&mut self) {
        let end = self.end();
        let mut h = 1u32;
        while h < 64 {
            let first = first_node(self.start, h);
            let complete = end >> h;
            if complete <= first {
                // No node of this height lies inside, so none above does.
                break;
            }
            let level = (h - 1) as usize;
            if self.nodes.len() <= level {
                self.nodes.resize_with(level + 1, Vec::new);
            }
            let (below, at) = self.nodes.split_at_mut(level);
            let at = at
                .first_mut()
                .expect("the levels were just extended to hold this one");
            let have = first + at.len() as u64;
            if have < complete {
                // The children of nodes [have, complete) are the nodes
                // [2 have, 2 complete) of the height below: contiguous.
                let (children, children_first) = match below.last() {
                    None => (self.leaves.as_slice(), self.start),
                    Some(nodes) => (nodes.as_slice(), first_node(self.start, h - 1)),
                };
                let from = usize::try_from(2 * have - children_first).unwrap_or(usize::MAX);
                let to = usize::try_from(2 * complete - children_first).unwrap_or(usize::MAX);
                let children = children
                    .get(from..to)
                    .expect("every child of a node inside the cache is inside it");
                hash_pairs(children, at);
            }
            h += 1;
        }
    }

    /// The hash of node `(h, i)` if it lies entirely inside the cache.
    fn node(&self, h: u32, i: u64) -> Option<Hash> {
        if h == 0 {
            let at = i.checked_sub(self.start)?;
            return self.leaves.get(usize::try_from(at).ok()?).copied();
        }
        let first = first_node(self.start, h);
        let at = i.checked_sub(first)?;
        self.nodes
            .get((h - 1) as usize)?
            .get(usize::try_from(at).ok()?)
            .copied()
    }

    /// Drops the leaves before `new_start` (now stored in the level files)
    /// and the nodes that do not lie entirely at or after it. The nodes
    /// kept are the same as those of a cache built from `new_start`: a
    /// node inside the new range was inside the old one, and each level
    /// stays contiguous from its first node. Nothing is hashed again, so
    /// the sealer holds the tail's lock for a copy, not for a rebuild.
    fn rebase(&mut self, new_start: u64) {
        if new_start <= self.start {
            return;
        }
        if new_start >= self.end() {
            // No leaf left to keep.
            *self = TailCache::new(new_start);
            return;
        }
        let keep_from = usize::try_from(new_start - self.start).unwrap_or(usize::MAX);
        self.leaves.drain(..keep_from);
        for (level, nodes) in self.nodes.iter_mut().enumerate() {
            let h = level as u32 + 1;
            let gone = first_node(new_start, h) - first_node(self.start, h);
            let gone = usize::try_from(gone).unwrap_or(usize::MAX).min(nodes.len());
            nodes.drain(..gone);
        }
        self.start = new_start;
    }
}

/// New nodes of one height from which [`TailCache::extend`] hashes on two
/// threads (~1 ms of hashing; a thread costs tens of microseconds).
const PARALLEL_NODES: usize = 8_192;

/// Appends the parent of each pair of `children` to `out`.
fn hash_pairs(children: &[Hash], out: &mut Vec<Hash>) {
    let parents = children.len() / 2;
    let hash = |pairs: &[Hash], out: &mut Vec<Hash>| {
        out.extend(
            pairs
                .chunks_exact(2)
                .map(|pair| merkle::node_hash(&pair[0], &pair[1])),
        );
    };
    if parents < PARALLEL_NODES || crate::spread::cores() < 2 {
        hash(children, out);
        return;
    }
    let (left, right) = children.split_at(parents / 2 * 2);
    let mut right_parents = Vec::with_capacity(right.len() / 2);
    std::thread::scope(|scope| {
        scope.spawn(|| hash(right, &mut right_parents));
        out.reserve(parents);
        hash(left, out);
    });
    out.append(&mut right_parents);
}

/// Leaves copied out of an open segment per hold of its data lock, which
/// the committer takes to publish every group: copying 4,096 hashes takes
/// microseconds, hashing the nodes above them is done after the lock is
/// released.
pub(crate) const TAIL_CHUNK: usize = 4096;

/// The most leaves [`Tree::fill_tail`] reserves room for at once (32 MiB of
/// hashes); more grow the buffer as they come.
const MAX_TAIL_RESERVE: usize = 1 << 20;

/// The tail cache of a size the level files cover: never read (every node
/// of such a tree is read from the files).
static NO_TAIL: TailCache = TailCache {
    start: 0,
    leaves: Vec::new(),
    nodes: Vec::new(),
};

/// The log's Merkle tree: the level files and the in-memory tail.
#[derive(Debug)]
pub(crate) struct Tree {
    levels: Vec<LevelFile>,
    /// Leaves stored in the level files (= records of sealed segments).
    persisted: Mutex<u64>,
    pub(crate) tail: Mutex<TailCache>,
}

impl Tree {
    /// Opens the level files under `dir` (creating them unless read-only).
    /// Read-only, a store without level files has a tree with nothing
    /// persisted.
    pub(crate) fn open(fs: &dyn Vfs, dir: &Path, read_only: bool) -> Result<Option<Tree>> {
        let mut levels = Vec::with_capacity(LEVELS);
        for k in 0..LEVELS {
            match LevelFile::open(fs, &dir.join(level_file_name(k)), read_only)? {
                Some(level) => levels.push(level),
                None => return Ok(None),
            }
        }
        Ok(Some(Tree {
            levels,
            persisted: Mutex::new(0),
            tail: Mutex::new(TailCache::new(0)),
        }))
    }

    /// The leaf hash file (level 0).
    pub(crate) fn leaves(&self) -> &LevelFile {
        // `open` always creates every level.
        &self.levels[0]
    }

    pub(crate) fn persisted(&self) -> u64 {
        *self.persisted.lock()
    }

    /// For a read-only store: uses the level files as they are if they
    /// cover the first `sealed` leaves (else nothing is taken as stored, and
    /// proofs over sealed records are unavailable).
    pub(crate) fn assume_persisted(&self, sealed: u64) -> bool {
        let covered = (0..LEVELS).all(|k| {
            self.levels
                .get(k)
                .is_some_and(|l| l.len() >= entries_at(k, sealed))
        });
        let persisted = if covered { sealed } else { 0 };
        *self.persisted.lock() = persisted;
        *self.tail.lock() = TailCache::new(persisted);
        covered
    }

    /// Makes the level files cover exactly the first `sealed` leaves, whose
    /// level 0 is already correct; derived levels beyond are cut, missing
    /// ones recomputed. Returns the number of level entries recomputed.
    pub(crate) fn reconcile(&self, sealed: u64, fetch: LeafFetch<'_>) -> Result<u64> {
        let mut recomputed = 0;
        for k in 1..LEVELS {
            let want = entries_at(k, sealed);
            let level = self.level(k)?;
            if level.len() > want {
                level.truncate(want)?;
            }
            while level.len() < want {
                let b = level.len();
                let hash = self.block_hash(k, b, Some(fetch))?;
                level.write(b, &[hash])?;
                recomputed += 1;
            }
            if recomputed > 0 {
                level.sync()?;
            }
        }
        *self.persisted.lock() = sealed;
        self.tail.lock().rebase(sealed);
        Ok(recomputed)
    }

    fn level(&self, k: usize) -> Result<&LevelFile> {
        self.levels
            .get(k)
            .ok_or_else(|| Error::Config(format!("tree level {k} does not exist")))
    }

    /// The hash of block `b` of level `k`: the root of the 256 entries of
    /// level `k - 1` under it (leaves not stored taken from `fetch`).
    fn block_hash(&self, k: usize, b: u64, fetch: Option<LeafFetch<'_>>) -> Result<Hash> {
        let entries = if k == 1 {
            self.read_leaves(b << STRIDE, 1 << STRIDE, fetch)?
        } else {
            self.level(k - 1)?.read(b << STRIDE, 1 << STRIDE)?
        };
        Ok(merkle::root(&entries))
    }

    /// Leaves `[first, first + count)` from level 0, those not stored
    /// computed by `fetch` (an error without one).
    pub(crate) fn read_leaves(
        &self,
        first: u64,
        count: usize,
        fetch: Option<LeafFetch<'_>>,
    ) -> Result<Vec<Hash>> {
        let mut leaves = self.leaves().read(first, count)?;
        if !leaves.iter().any(not_stored) {
            return Ok(leaves);
        }
        let end = first + count as u64;
        let Some(fetch) = fetch else {
            return Err(Error::Config(format!(
                "tree/leaves does not store the leaf hashes of seqs {first}..{end} (their \
                 segment is stored compressed), and they cannot be computed here"
            )));
        };
        let computed = fetch(first, count)?;
        if computed.len() != count {
            return Err(Error::Config(format!(
                "the records of seqs {first}..{end} gave {} leaf hashes, not {count}",
                computed.len()
            )));
        }
        for (leaf, c) in leaves.iter_mut().zip(computed) {
            if not_stored(*leaf) {
                *leaf = c;
            }
        }
        Ok(leaves)
    }

    /// Frees the leaves of the level-1 blocks lying wholly inside the
    /// records `[first, end)` (a segment just stored compressed): level 1
    /// keeps their root, and a proof computes them from the records when it
    /// needs them. The blocks at the edges, shared with the neighbouring
    /// segments, stay (so that sealing the next segment never needs a
    /// record to hash). Returns the number of leaves freed (0 where the
    /// filesystem cannot); not synced (a power loss may bring the entries
    /// back, which are then simply stored).
    pub(crate) fn free_leaves(&self, first: u64, end: u64) -> Result<u64> {
        let block = 1u64 << STRIDE;
        let from = first.div_ceil(block) * block;
        let to = (end.min(self.persisted()) / block) * block;
        if to <= from {
            return Ok(0);
        }
        Ok(if self.leaves().punch(from, to - from)? {
            to - from
        } else {
            0
        })
    }

    /// Stores the leaves of a newly sealed segment, which start at the
    /// current persisted count, and every level entry they complete; syncs.
    pub(crate) fn append_sealed(&self, first: u64, leaves: &[Hash]) -> Result<()> {
        let leaf_file = self.leaves();
        leaf_file.write(first, leaves)?;
        let total = first + leaves.len() as u64;
        for k in 1..LEVELS {
            let level = self.level(k)?;
            let want = entries_at(k, total);
            while level.len() < want {
                let b = level.len();
                // The block at this segment's start is shared with the
                // segment before, whose leaves there are never freed.
                let hash = self.block_hash(k, b, None)?;
                level.write(b, &[hash])?;
            }
        }
        for level in &self.levels {
            level.sync()?;
        }
        *self.persisted.lock() = total;
        self.tail.lock().rebase(total);
        Ok(())
    }

    /// A node source over the first `size` leaves if the level files hold
    /// them all: it reads only the files, so it needs neither the tail's
    /// lock nor any open segment's.
    pub(crate) fn stored_source<'a>(
        &'a self,
        size: u64,
        fetch: LeafFetch<'a>,
    ) -> Option<TreeSource<'a>> {
        let persisted = self.persisted();
        (size <= persisted).then_some(TreeSource {
            tree: self,
            tail: &NO_TAIL,
            persisted,
            size,
            fetch,
        })
    }

    /// Brings the locked tail up to at least `size` leaves: drops what the
    /// level files hold now (a seal may not have rebased it yet), then adds
    /// the missing leaves, taken from `fetch(from, max)` (a copy of at most
    /// `max` leaves from leaf `from` on; empty if it has none) in chunks of
    /// [`TAIL_CHUNK`]. The nodes above them are hashed here, with no lock
    /// but the tail's held. Stops early if `fetch` has no more leaves.
    pub(crate) fn fill_tail(
        &self,
        tail: &mut TailCache,
        size: u64,
        mut fetch: impl FnMut(u64, usize) -> Vec<Hash>,
    ) {
        tail.rebase(self.persisted());
        // Copied in chunks, hashed at once (a height's nodes can then be
        // hashed on two threads), into one buffer sized for them all: a
        // read-only open copies a whole open segment's leaves here, and a
        // buffer grown by doubling touched (and had the kernel zero) twice
        // their size.
        let mut end = tail.end();
        let expected = usize::try_from(size.saturating_sub(end))
            .unwrap_or(usize::MAX)
            .min(MAX_TAIL_RESERVE);
        let mut missing = Vec::with_capacity(expected);
        while end < size {
            let want = usize::try_from(size - end)
                .unwrap_or(usize::MAX)
                .min(TAIL_CHUNK);
            let chunk = fetch(end, want);
            if chunk.is_empty() {
                break;
            }
            let taken = chunk.get(..want).unwrap_or(&chunk);
            missing.extend_from_slice(taken);
            end += taken.len() as u64;
        }
        tail.extend_owned(missing);
    }

    /// A node source over the first `size` leaves, given the locked tail
    /// (which must hold every leaf up to `size`).
    pub(crate) fn source<'a>(
        &'a self,
        tail: &'a TailCache,
        size: u64,
        fetch: LeafFetch<'a>,
    ) -> TreeSource<'a> {
        TreeSource {
            tree: self,
            tail,
            persisted: self.persisted().min(tail.start),
            size,
            fetch,
        }
    }
}

/// How many entries level `k` has when `leaves` leaves are stored.
fn entries_at(k: usize, leaves: u64) -> u64 {
    let shift = STRIDE * k as u32;
    if shift >= 64 { 0 } else { leaves >> shift }
}

/// Subtree hashes of the tree of `size` leaves, from the level files and
/// the tail cache.
pub(crate) struct TreeSource<'a> {
    tree: &'a Tree,
    tail: &'a TailCache,
    persisted: u64,
    size: u64,
    /// Leaves the level files do not store, from the records.
    fetch: LeafFetch<'a>,
}

impl NodeSource for TreeSource<'_> {
    type Error = Error;

    fn subtree(&self, height: u8, index: u64) -> Result<Hash> {
        let h = u32::from(height);
        let unavailable = || Error::Proof(ProofError::NodeUnavailable { height, index });
        if h >= 64 {
            return Err(unavailable());
        }
        let start = index.checked_mul(1u64 << h).ok_or_else(unavailable)?;
        let end = start.checked_add(1u64 << h).ok_or_else(unavailable)?;
        if end > self.size {
            return Err(unavailable());
        }
        if end <= self.persisted {
            // From the level files: level k, then up the remaining heights.
            let k = ((h / STRIDE) as usize).min(LEVELS - 1);
            let rest = h - STRIDE * k as u32;
            let entries = if k == 0 {
                self.tree
                    .read_leaves(index << rest, 1usize << rest, Some(self.fetch))?
            } else {
                self.tree.level(k)?.read(index << rest, 1usize << rest)?
            };
            return Ok(merkle::root(&entries));
        }
        if let Some(hash) = self.tail.node(h, index) {
            return Ok(hash);
        }
        if h == 0 {
            return Err(unavailable());
        }
        // Straddles the stored part and the tail: split.
        let left = self.subtree(height - 1, 2 * index)?;
        let right = self.subtree(height - 1, 2 * index + 1)?;
        Ok(merkle::node_hash(&left, &right))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| merkle::leaf_hash(&i.to_le_bytes()))
            .collect()
    }

    #[test]
    fn the_tail_cache_holds_every_complete_inner_node() {
        for start in [0u64, 1, 5, 256, 300] {
            let all = leaves(start + 700);
            let mut tail = TailCache::new(start);
            for leaf in &all[start as usize..] {
                tail.push(*leaf);
            }
            for h in 0..10u32 {
                for i in 0..(start + 700) >> h {
                    let lo = i << h;
                    let hi = (i + 1) << h;
                    let inside = lo >= start && hi <= start + 700;
                    let expected = inside.then(|| merkle::root(&all[lo as usize..hi as usize]));
                    assert_eq!(tail.node(h, i), expected, "start {start} h {h} i {i}");
                }
            }
        }
    }

    #[test]
    fn extending_at_once_builds_the_same_cache_as_pushing_each_leaf() {
        // Pieces small and large: the large ones hash their lower heights
        // on two threads.
        let pieces = [1usize, 255, 3, 40_000, 0, 517, 2 * PARALLEL_NODES + 3, 9];
        let total: usize = pieces.iter().sum();
        for start in [0u64, 7, 256, 9_890_000] {
            let all = leaves(total as u64);
            let mut pushed = TailCache::new(start);
            let mut extended = TailCache::new(start);
            let mut at = 0;
            for piece in pieces {
                let next = all.get(at..at + piece).expect("pieces within the leaves");
                for leaf in next {
                    pushed.push_one_by_one(*leaf);
                }
                extended.extend(next);
                at += piece;
                assert_eq!(extended.leaves, pushed.leaves);
                assert_eq!(extended.nodes, pushed.nodes, "start {start}, {at} leaves");
            }
        }
    }

    /// Every node (and leaf) of heights below 12 over the first `n` leaves,
    /// as `cache` holds it.
    fn held(cache: &TailCache, n: u64) -> Vec<Option<Hash>> {
        (0..12u32)
            .flat_map(|h| (0..n >> h).map(move |i| (h, i)))
            .map(|(h, i)| cache.node(h, i))
            .collect()
    }

    #[test]
    fn a_rebased_tail_cache_holds_the_nodes_of_one_built_from_its_new_start() {
        let all = leaves(3_000);
        for start in [0u64, 1, 7, 256, 300] {
            for new_start in [
                start,
                start + 1,
                255,
                256,
                257,
                511,
                1_024,
                1_500,
                2_000,
                2_500,
            ] {
                if new_start < start {
                    continue;
                }
                let mut rebased = TailCache::new(start);
                for leaf in &all[start as usize..2_000] {
                    rebased.push(*leaf);
                }
                rebased.rebase(new_start);
                let mut built = TailCache::new(new_start);
                for leaf in all.get(new_start as usize..2_000).unwrap_or_default() {
                    built.push(*leaf);
                }
                assert_eq!(rebased.start, built.start, "{start} -> {new_start}");
                assert_eq!(rebased.end(), built.end(), "{start} -> {new_start}");
                assert_eq!(
                    held(&rebased, 3_000),
                    held(&built, 3_000),
                    "{start} -> {new_start}"
                );
                // And both go on the same way.
                for leaf in &all[rebased.end() as usize..] {
                    rebased.push(*leaf);
                    built.push(*leaf);
                }
                assert_eq!(
                    held(&rebased, 3_000),
                    held(&built, 3_000),
                    "{start} -> {new_start}"
                );
                assert!(
                    held(&rebased, 3_000).iter().any(Option::is_some),
                    "the cache holds nodes"
                );
            }
        }
    }

    #[test]
    fn a_tail_filled_before_a_seal_serves_the_same_proofs_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let fs = crate::fs::StdFs;
        let tree = Tree::open(&fs, dir.path(), false).unwrap().unwrap();
        let all = leaves(70_000);
        let fetches = std::cell::Cell::new(0usize);
        let fetch = |from: u64, max: usize| {
            fetches.set(fetches.get() + 1);
            assert!(max <= TAIL_CHUNK, "a copy is bounded");
            let from = from as usize;
            all[from..all.len().min(from + max)].to_vec()
        };
        tree.append_sealed(0, &all[..1_000]).unwrap();
        // The tail runs ahead of the level files by 68,500 leaves, copied
        // in bounded chunks.
        tree.fill_tail(&mut tree.tail.lock(), 69_500, fetch);
        assert_eq!(fetches.get(), 68_500usize.div_ceil(TAIL_CHUNK));
        assert_eq!(tree.tail.lock().end(), 69_500);
        // A seal moves the tail's start past 65,000 leaves it held.
        tree.append_sealed(1_000, &all[1_000..66_000]).unwrap();
        assert_eq!(tree.tail.lock().start, 66_000);
        fetches.set(0);
        tree.fill_tail(&mut tree.tail.lock(), 69_000, fetch);
        assert_eq!(fetches.get(), 0, "the tail already holds these leaves");
        tree.fill_tail(&mut tree.tail.lock(), 70_000, fetch);
        assert_eq!(fetches.get(), 1);
        let tail = tree.tail.lock();
        let no_fetch = |_: u64, _: usize| -> Result<Vec<Hash>> { panic!("every leaf is stored") };
        for size in [1u64, 255, 256, 65_536, 66_000, 66_001, 69_500, 70_000] {
            let stored = tree.stored_source(size, &no_fetch);
            assert_eq!(stored.is_some(), size <= 66_000, "{size}");
            let from_tail = tree.source(&tail, size, &no_fetch);
            let reference = &all[..size as usize];
            let mut sources = vec![&from_tail];
            sources.extend(stored.as_ref());
            for src in sources {
                assert_eq!(
                    merkle::range_hash(src, 0, size).unwrap(),
                    merkle::root(reference),
                    "root at {size}"
                );
                for index in [0, size / 3, size - 1] {
                    assert_eq!(
                        merkle::inclusion_proof(src, index, size).unwrap(),
                        merkle::inclusion_proof(reference, index, size).unwrap(),
                        "proof of {index} in {size}"
                    );
                }
                for old in [1u64, size / 2, size] {
                    if old == 0 {
                        continue;
                    }
                    assert_eq!(
                        merkle::consistency_proof(src, old, size).unwrap(),
                        merkle::consistency_proof(reference, old, size).unwrap()
                    );
                }
            }
        }
    }

    #[test]
    fn proofs_from_files_and_tail_equal_proofs_from_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let fs = crate::fs::StdFs;
        let tree = Tree::open(&fs, dir.path(), false).unwrap().unwrap();
        let all = leaves(70_000);
        // Seal in uneven pieces, keep a tail.
        let mut at = 0usize;
        for piece in [1_000usize, 65_000, 3_000] {
            tree.append_sealed(at as u64, &all[at..at + piece]).unwrap();
            at += piece;
        }
        // The second piece's segment stored compressed: its inner blocks'
        // leaves are freed, and computed when a proof needs them.
        // Blocks 4 to 256 (leaves 1,024 to 65,792) lie inside it.
        assert_eq!(tree.free_leaves(1_000, 66_000).unwrap(), 65_792 - 1_024);
        let stored = tree.leaves().read(0, 69_000).unwrap();
        assert!(stored[..1_024].iter().all(|l| !not_stored(l)));
        assert!(stored[1_024..65_792].iter().all(not_stored));
        assert!(stored[65_792..].iter().all(|l| !not_stored(l)));
        let fetched = std::cell::Cell::new(0usize);
        let fetch = |first: u64, count: usize| -> Result<Vec<Hash>> {
            fetched.set(fetched.get() + count);
            Ok(all[first as usize..first as usize + count].to_vec())
        };
        assert!(
            tree.read_leaves(1_024, 256, None).is_err(),
            "a freed leaf without records to compute it from is an error, not zeros"
        );
        let mut tail = tree.tail.lock();
        tree.fill_tail(&mut tail, all.len() as u64, |from, max| {
            let from = from as usize;
            all[from..all.len().min(from + max)].to_vec()
        });
        for size in [1u64, 255, 256, 257, 65_536, 69_000, 69_001, 70_000] {
            let src = tree.source(&tail, size, &fetch);
            let reference = &all[..size as usize];
            assert_eq!(
                merkle::range_hash(&src, 0, size).unwrap(),
                merkle::root(reference),
                "root at {size}"
            );
            for index in [0, size / 3, size - 1] {
                assert_eq!(
                    merkle::inclusion_proof(&src, index, size).unwrap(),
                    merkle::inclusion_proof(reference, index, size).unwrap(),
                    "proof of {index} in {size}"
                );
            }
            for old in [1u64, size / 2, size] {
                if old == 0 || old > size {
                    continue;
                }
                assert_eq!(
                    merkle::consistency_proof(&src, old, size).unwrap(),
                    merkle::consistency_proof(reference, old, size).unwrap()
                );
            }
        }
        assert_eq!(tree.level(1).unwrap().len(), 69_000 / 256);
        assert_eq!(tree.level(2).unwrap().len(), 1);
        assert!(fetched.get() > 0, "the proofs read freed leaves");
    }
}
