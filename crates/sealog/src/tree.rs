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
//! records cost no more than proofs about old ones.
//!
//! The files are derived data, written by the sealer and synced *before*
//! the segment's footer: on open they cover at least every sealed record
//! (anything beyond is cut, anything missing recomputed), and verification
//! recomputes them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use sealog_format::Hash;
use sealog_format::merkle::{self, NodeSource, ProofError};

use crate::error::{Error, Result};
use crate::fs::{OpenMode, Vfs, VfsFile};

/// Bytes per stored hash.
pub(crate) const LEAF_LEN: u64 = 32;
/// Levels stored: heights 0, 8, ..., 56.
pub(crate) const LEVELS: usize = 8;
/// Tree height between stored levels.
const STRIDE: u32 = 8;

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

    /// Reads entries `[first, first + count)`.
    pub(crate) fn read(&self, first: u64, count: usize) -> Result<Vec<Hash>> {
        let mut bytes = vec![0u8; count * LEAF_LEN as usize];
        self.file
            .read_exact_at(&mut bytes, first * LEAF_LEN)
            .map_err(|e| Error::io("read", &self.path, e))?;
        Ok(bytes
            .chunks_exact(LEAF_LEN as usize)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect())
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

    fn push(&mut self, leaf: Hash) {
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
            let hash = merkle::node_hash(&left, &right);
            let level = (h - 1) as usize;
            if self.nodes.len() <= level {
                self.nodes.resize_with(level + 1, Vec::new);
            }
            self.nodes
                .get_mut(level)
                .expect("the levels were just extended to hold this one")
                .push(hash);
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
    /// and recomputes the nodes over the rest.
    fn rebase(&mut self, new_start: u64) {
        if new_start <= self.start {
            return;
        }
        let keep = usize::try_from(new_start - self.start).unwrap_or(usize::MAX);
        // A new start beyond the cached leaves leaves none to keep.
        let rest: Vec<Hash> = self
            .leaves
            .get(keep..)
            .map(<[Hash]>::to_vec)
            .unwrap_or_default();
        *self = TailCache::new(new_start);
        for leaf in rest {
            self.push(leaf);
        }
    }
}

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
    pub(crate) fn reconcile(&self, sealed: u64) -> Result<u64> {
        let mut recomputed = 0;
        for k in 1..LEVELS {
            let want = entries_at(k, sealed);
            let level = self.level(k)?;
            if level.len() > want {
                level.truncate(want)?;
            }
            while level.len() < want {
                let b = level.len();
                let hash = self.block_hash(k, b)?;
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
    /// level `k - 1` under it.
    fn block_hash(&self, k: usize, b: u64) -> Result<Hash> {
        let below = self.level(k - 1)?;
        let entries = below.read(b << STRIDE, 1 << STRIDE)?;
        Ok(merkle::root(&entries))
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
                let hash = self.block_hash(k, b)?;
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

    /// Adds the next leaves (starting at the tail's end) to the tail cache.
    pub(crate) fn extend_tail(&self, tail: &mut TailCache, from: u64, leaves: &[Hash]) {
        let end = tail.end();
        if from > end {
            return;
        }
        let skip = usize::try_from(end - from).unwrap_or(usize::MAX);
        for leaf in leaves.iter().skip(skip) {
            tail.push(*leaf);
        }
    }

    /// A node source over the first `size` leaves, given the locked tail
    /// (which must hold every leaf up to `size`).
    pub(crate) fn source<'a>(&'a self, tail: &'a TailCache, size: u64) -> TreeSource<'a> {
        TreeSource {
            tree: self,
            tail,
            persisted: self.persisted().min(tail.start),
            size,
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
            let level = self.tree.level(k)?;
            let entries = level.read(index << rest, 1usize << rest)?;
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
        let mut tail = tree.tail.lock();
        tree.extend_tail(&mut tail, at as u64, &all[at..]);
        for size in [1u64, 255, 256, 257, 65_536, 69_000, 69_001, 70_000] {
            let src = tree.source(&tail, size);
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
    }
}
