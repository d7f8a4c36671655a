//! What a verification computes from the records' hashes (each
//! segment's chain and tree, the tree over the whole log) and how it
//! compares them with the stored tree files.

use sealog_format::Hash;
use sealog_format::merkle::Frontier;

use super::CheckpointCheck;
use crate::error::{Corruption, CorruptionKind, Error, Location, Result};
use crate::layout;
use crate::recovery::Found;
use crate::tree::LevelFile;

/// The Merkle tree over the whole log, built in log order; it checks the
/// stored level files and the checkpoints as it grows.
pub(super) struct StreamTree {
    pub(super) tree: Frontier,
    pub(super) levels: Vec<Option<LevelFile>>,
    /// Leaves stored in the level files (sealed records).
    pub(super) sealed: u64,
}

impl StreamTree {
    pub(super) fn size(&self) -> u64 {
        self.tree.size()
    }

    /// Appends `leaves`, comparing each completed node of height `8k` with
    /// level file `k`.
    pub(super) fn extend(&mut self, leaves: &[Hash]) -> Result<()> {
        let StreamTree {
            tree,
            levels,
            sealed,
        } = self;
        tree.extend_with(leaves, |height, index, hash| {
            if height.is_multiple_of(8) {
                check_level(levels, *sealed, height, index, hash)
            } else {
                Ok(())
            }
        })
    }

    /// How many of `more` leaves to append before the next checkpoint in
    /// `next_check` is reached (all of them if none is).
    pub(super) fn until_next(&self, next_check: Option<&&CheckpointCheck>, more: usize) -> usize {
        match next_check {
            Some(c) if c.size > self.size() => {
                usize::try_from(c.size - self.size()).map_or(more, |n| n.min(more))
            }
            _ => more,
        }
    }

    pub(super) fn root(&self) -> Hash {
        self.tree.root()
    }
}

/// Compares the node of height `height = 8k` and index `index` of the
/// whole log's tree with level file `k`; a node above records not sealed
/// yet is not stored, and not compared.
fn check_level(
    levels: &[Option<LevelFile>],
    sealed: u64,
    height: u32,
    index: u64,
    hash: &Hash,
) -> Result<()> {
    let k = (height / 8) as usize;
    let end = (index + 1) << height;
    if end > sealed {
        return Ok(()); // not stored yet: above unsealed records
    }
    let name = format!("{}/{}", layout::TREE, crate::tree::level_file_name(k));
    let wrong = || -> Error {
        Corruption::new(
            Location::file(name.clone()).at(index * crate::tree::LEAF_LEN),
            CorruptionKind::LevelMismatch {
                level: k as u64,
                index,
            },
        )
        .into()
    };
    match levels.get(k).and_then(Option::as_ref) {
        Some(level) if index < level.len() => {
            let stored = level.read(index, 1)?;
            if stored.first() != Some(hash) {
                return Err(wrong());
            }
            Ok(())
        }
        _ => Err(wrong()),
    }
}

/// Vectors handed back once a segment is done with them, for the segments
/// after it: a segment's leaves (and the columns its sidecar's check
/// inverts) are megabytes, and a fresh vector costs the kernel a zeroed
/// page per 4 KiB.
pub(super) struct VecPool<T>(parking_lot::Mutex<Vec<Vec<T>>>);

/// Leaf vectors, handed back once the tree over the log has taken a
/// segment's leaves.
pub(super) type LeafPool = VecPool<Hash>;

impl<T> Default for VecPool<T> {
    fn default() -> Self {
        VecPool(parking_lot::Mutex::new(Vec::new()))
    }
}

impl<T> VecPool<T> {
    /// Vectors kept (the segments in flight at once are a few).
    const KEPT: usize = 4;

    /// An empty vector with room for `capacity` values.
    pub(super) fn take(&self, capacity: usize) -> Vec<T> {
        let mut values = self.0.lock().pop().unwrap_or_default();
        values.clear();
        values.reserve(capacity);
        values
    }

    /// Hands `values` back for another segment.
    pub(super) fn give(&self, mut values: Vec<T>) {
        values.clear();
        let mut kept = self.0.lock();
        if kept.len() < Self::KEPT {
            kept.push(values);
        }
    }
}

/// Records hashed between two updates of a segment's chain: enough to
/// keep the hashing lanes full, few enough that the records are still in
/// the cache.
const HASH_BATCH: usize = 64;

/// What a segment's records give in order, once hashed: their leaf hashes,
/// the hash chain through them, the chain at the checkpoint sizes that fall
/// in the segment, and where its last complete batch (COMMIT flag) ends.
/// Records are added as they are walked and hashed [`HASH_BATCH`] at a time.
pub(super) struct Chained<'a> {
    first_seq: u64,
    pub(super) leaves: Vec<Hash>,
    pub(super) chain: Hash,
    /// Checkpoint sizes still to reach, in increasing order.
    wanted: std::iter::Peekable<std::vec::IntoIter<u64>>,
    pub(super) chains_at: Vec<(u64, Hash)>,
    /// (records, chain head, frame end) at the last COMMIT flag, and the
    /// recorded time of that record.
    pub(super) committed: ((u64, Hash, u64), Option<i64>),
    /// Bodies not hashed yet, with (frame end, recorded time) for those
    /// that end a batch.
    bodies: Vec<&'a [u8]>,
    commits: Vec<Option<(u64, i64)>>,
}

impl<'a> Chained<'a> {
    /// `leaves` (empty) receives the segment's leaf hashes.
    pub(super) fn new(first_seq: u64, chain_in: Hash, wanted: Vec<u64>, leaves: Vec<Hash>) -> Self {
        Chained {
            first_seq,
            leaves,
            chain: chain_in,
            wanted: wanted.into_iter().peekable(),
            chains_at: Vec::new(),
            committed: ((0, chain_in, 0), None),
            bodies: Vec::with_capacity(HASH_BATCH),
            commits: Vec::with_capacity(HASH_BATCH),
        }
    }

    /// The next record's body; `commit` when it ends a batch: its frame's
    /// end and its recorded time.
    pub(super) fn add(&mut self, body: &'a [u8], commit: Option<(u64, i64)>) {
        self.bodies.push(body);
        self.commits.push(commit);
        if self.bodies.len() == HASH_BATCH {
            self.settle();
        }
    }

    fn settle(&mut self) {
        let from = self.leaves.len();
        self.leaves
            .resize(from + self.bodies.len(), Hash::default());
        sealog_format::merkle::leaf_hashes(&self.bodies, &mut self.leaves[from..]);
        for (i, commit) in self.commits.iter().enumerate() {
            let Some(leaf) = self.leaves.get(from + i) else {
                break;
            };
            self.chain = sealog_format::chain::link(&self.chain, leaf);
            let count = (from + i + 1) as u64;
            while let Some(size) = self.wanted.next_if(|&s| s == self.first_seq + count) {
                self.chains_at.push((size, self.chain));
            }
            if let Some((end, recorded)) = *commit {
                self.committed = ((count, self.chain, end), Some(recorded));
            }
        }
        self.bodies.clear();
        self.commits.clear();
    }

    pub(super) fn finish(mut self) -> Self {
        self.settle();
        self
    }
}

/// The leaf file's hash of record `index` is what was damaged (the record
/// still matches its segment's footer).
pub(super) fn leaf_file_corruption(index: u64) -> Error {
    Corruption::new(
        Location::file(format!("{}/{}", layout::TREE, layout::LEAVES))
            .at(index * crate::tree::LEAF_LEN)
            .seq(index),
        CorruptionKind::LeafMismatch { index },
    )
    .into()
}

/// The first level-1 block (256 records) wholly inside segment `f` whose
/// stored level-1 hash differs from the root of the leaves `computed` of
/// its records, if any: its first seq, the stored hash and the root (a
/// stored level that is short names nothing: the footer then names the
/// segment).
pub(super) fn first_block_difference(
    stored: Option<&LevelFile>,
    f: &Found,
    computed: &[Hash],
) -> Result<Option<(u64, Hash, Hash)>> {
    let Some(stored) = stored else {
        return Ok(None);
    };
    let block = crate::tree::BLOCK as u64;
    let first = f.header.first_seq;
    let end = first + computed.len() as u64;
    let mut k = first.div_ceil(block);
    while (k + 1) * block <= end && k < stored.len() {
        let from = (k * block - first) as usize;
        let Some(leaves) = computed.get(from..from + crate::tree::BLOCK) else {
            break;
        };
        let root = sealog_format::merkle::root(leaves);
        match stored.read(k, 1)?.first() {
            Some(hash) if *hash == root => {}
            found => return Ok(Some((k * block, found.copied().unwrap_or_default(), root))),
        }
        k += 1;
    }
    Ok(None)
}

/// The first seq of a sealed segment whose stored leaf hash differs from the
/// recomputed one (or is missing).
pub(super) fn first_leaf_difference(
    stored: Option<&LevelFile>,
    f: &Found,
    computed: &[Hash],
) -> Result<Option<u64>> {
    let first = f.header.first_seq;
    let Some(stored) = stored else {
        return Ok(Some(first));
    };
    let available = stored
        .len()
        .saturating_sub(first)
        .min(computed.len() as u64) as usize;
    // Read a run at a time into one buffer: a segment's leaves are
    // megabytes, which a buffer of their size would have the kernel zero
    // and copy again.
    const RUN: usize = 4096;
    let mut bytes = Vec::new();
    for (run, computed) in computed[..available].chunks(RUN).enumerate() {
        let from = (run * RUN) as u64;
        stored.read_bytes(first + from, computed.len(), &mut bytes)?;
        // A leaf not stored (freed when its segment was stored compressed)
        // is computed by readers; level 1, compared as well, covers its
        // block.
        if let Some(i) = bytes
            .chunks_exact(crate::tree::LEAF_LEN as usize)
            .zip(computed)
            .position(|(s, c)| s != c && !crate::tree::not_stored(s))
        {
            return Ok(Some(first + from + i as u64));
        }
    }
    Ok((available < computed.len()).then_some(first + available as u64))
}
