//! The Merkle hash tree of RFC 9162 §2.1, with SHA-256.
//!
//! sealog commits to its log with the Merkle Tree Hash (MTH) defined in
//! RFC 9162 §2.1.1 (identical to RFC 6962 §2.1):
//!
//! * the hash of an empty tree is `SHA-256("")`;
//! * the hash of a leaf holding the bytes `d` is `SHA-256(0x00 ‖ d)`;
//! * the hash of a tree of `n > 1` leaves is `SHA-256(0x01 ‖ MTH(left) ‖ MTH(right))`,
//!   where `left` holds the first `k` leaves and `k` is the largest power of two
//!   strictly smaller than `n`.
//!
//! This module offers:
//!
//! * hashing ([`leaf_hash`], [`node_hash`], [`empty_root`], [`root`]);
//! * [`Frontier`], the O(log n) state needed to append leaves and compute the root;
//! * proof generation from stored subtree hashes through [`NodeSource`]
//!   ([`inclusion_proof`], [`consistency_proof`], [`range_hash`]);
//! * proof verification following the algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2
//!   ([`verify_inclusion`], [`root_from_inclusion_proof`], [`verify_consistency`]).
//!
//! Every function validates its arguments and reports problems as [`ProofError`];
//! nothing here panics on untrusted input.

use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// The length in bytes of a [`Hash`](type@Hash).
pub const HASH_SIZE: usize = 32;

/// The byte prepended to a leaf's data before hashing it (RFC 9162 §2.1.1).
pub const LEAF_PREFIX: u8 = 0x00;

/// The byte prepended to two child hashes before hashing them (RFC 9162 §2.1.1).
pub const NODE_PREFIX: u8 = 0x01;

/// Why a Merkle computation, proof generation or proof verification failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not smaller than the tree size (this includes every
    /// index into an empty tree).
    #[error("leaf index {index} is out of range for a tree of size {size}")]
    IndexOutOfRange {
        /// The requested leaf index.
        index: u64,
        /// The tree size the index was checked against.
        size: u64,
    },
    /// The old tree size of a consistency proof is larger than the new tree size.
    #[error(
        "old tree size {old_size} is larger than new tree size {new_size}; a log can only grow"
    )]
    InvalidSizes {
        /// The size of the older tree.
        old_size: u64,
        /// The size of the newer tree.
        new_size: u64,
    },
    /// The proof does not hold the number of hashes that the index and tree
    /// size(s) require.
    #[error("proof holds {actual} hashes but {expected} are required for these tree sizes")]
    MalformedProof {
        /// The number of hashes the proof must hold.
        expected: usize,
        /// The number of hashes the proof holds.
        actual: usize,
    },
    /// The root hash recomputed from the proof (for a consistency proof: the
    /// new tree's root) differs from the expected root; or, for a consistency
    /// check between two trees of equal size, the two roots differ.
    #[error("the root hash recomputed from the proof does not match the expected root hash")]
    RootMismatch,
    /// The old tree's root recomputed from a consistency proof differs from the
    /// expected old root (for an old tree of size 0: the old root is not the
    /// empty-tree hash).
    #[error(
        "the old root hash recomputed from the consistency proof does not match the expected old root hash"
    )]
    OldRootMismatch,
    /// A leaf range ends before it starts.
    #[error("leaf range [{start}, {end}) ends before it starts")]
    InvalidRange {
        /// The first leaf of the range.
        start: u64,
        /// One past the last leaf of the range.
        end: u64,
    },
    /// A leaf range does not start on a multiple of the largest power of two
    /// not exceeding its length, so it is not a node of any RFC 9162 tree and
    /// cannot be composed from stored perfect subtrees.
    #[error(
        "leaf range [{start}, {end}) is not aligned: its start must be a multiple of the largest power of two not exceeding its length"
    )]
    UnalignedRange {
        /// The first leaf of the range.
        start: u64,
        /// One past the last leaf of the range.
        end: u64,
    },
    /// A [`NodeSource`] was asked for a subtree it does not hold.
    #[error(
        "the subtree of height {height} at index {index} is not available (it lies beyond the stored leaves)"
    )]
    NodeUnavailable {
        /// The height of the requested subtree (0 = a leaf).
        height: u8,
        /// The index of the requested subtree among the subtrees of that height.
        index: u64,
    },
    /// A persisted [`Frontier`] does not hold one subtree hash per set bit of
    /// its tree size.
    #[error(
        "a frontier of tree size {size} needs {expected} subtree hashes but {actual} were given"
    )]
    InvalidFrontier {
        /// The persisted tree size.
        size: u64,
        /// The number of subtree hashes that size requires (its popcount).
        expected: usize,
        /// The number of subtree hashes given.
        actual: usize,
    },
    /// The tree already holds `u64::MAX` leaves and cannot grow.
    #[error("the tree already holds the maximum number of leaves ({max})", max = u64::MAX)]
    TreeFull,
}

/// Returns `SHA-256(0x00 ‖ data)`, the hash of a leaf holding `data`.
#[must_use]
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(data);
    hasher.finalize().into()
}

/// Returns `SHA-256(0x01 ‖ left ‖ right)`, the hash of an interior node.
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([NODE_PREFIX]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// Computes the leaf hash of each of `data` into `out` (`out[i]` =
/// [`leaf_hash`]`(data[i])`), several messages at once on the CPU's SIMD
/// lanes or SHA extensions: for hashing many records, such as every record
/// of a segment.
///
/// # Panics
///
/// If `data` and `out` differ in length.
pub fn leaf_hashes(data: &[&[u8]], out: &mut [Hash]) {
    assert_eq!(data.len(), out.len(), "one leaf hash per leaf");
    tape_sha256::hash_many_prefixed(&[LEAF_PREFIX], data, out);
}

/// Computes `out[i]` = [`node_hash`] of the pair `pairs[i]` (left, right),
/// several at once (see [`leaf_hashes`]): one level of a tree from the
/// level below it.
///
/// # Panics
///
/// If `pairs` and `out` differ in length.
pub fn node_hashes(pairs: &[[Hash; 2]], out: &mut [Hash]) {
    assert_eq!(pairs.len(), out.len(), "one node hash per pair");
    // A run at a time: the slices of a whole level would be megabytes.
    const RUN: usize = 256;
    let mut bodies: Vec<&[u8]> = Vec::with_capacity(RUN.min(pairs.len()));
    for (pairs, out) in pairs.chunks(RUN).zip(out.chunks_mut(RUN)) {
        bodies.clear();
        bodies.extend(pairs.iter().map(|pair| pair.as_flattened()));
        tape_sha256::hash_many_prefixed(&[NODE_PREFIX], &bodies, out);
    }
}

/// Returns `SHA-256("")`, the root of the empty tree.
#[must_use]
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Compares two hashes in constant time (no early exit on the first
/// differing byte).
#[must_use]
pub fn ct_eq(a: &Hash, b: &Hash) -> bool {
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    core::hint::black_box(diff) == 0
}

/// Returns the Merkle Tree Hash of the given leaf hashes, splitting exactly
/// as RFC 9162 §2.1.1 does (at the largest power of two strictly smaller than
/// the number of leaves).
///
/// `root(&[])` is [`empty_root`] and `root(&[h])` is `h`. This rehashes the
/// whole tree; use [`Frontier`] for incremental computation.
#[must_use]
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [single] => *single,
        _ => {
            let k = largest_power_of_two_below_usize(leaves.len());
            match leaves.split_at_checked(k) {
                Some((left, right)) => node_hash(&root(left), &root(right)),
                // `k < leaves.len()` always holds, so this arm is never taken.
                None => empty_root(),
            }
        }
    }
}

/// The largest power of two strictly smaller than `n`, for `n >= 2`
/// (returns 1 for smaller `n`).
fn largest_power_of_two_below(n: u64) -> u64 {
    match n.checked_sub(1).and_then(u64::checked_ilog2) {
        Some(log) => 1u64 << log,
        None => 1,
    }
}

/// [`largest_power_of_two_below`] for `usize`.
fn largest_power_of_two_below_usize(n: usize) -> usize {
    match n.checked_sub(1).and_then(usize::checked_ilog2) {
        Some(log) => 1usize << log,
        None => 1,
    }
}

/// The height of the perfect subtree holding `width` leaves (`width` must be
/// a power of two).
fn height_of(width: u64) -> u8 {
    // `trailing_zeros` of a non-zero u64 is at most 63, which fits a u8.
    u8::try_from(width.trailing_zeros()).unwrap_or(u8::MAX)
}

/// The incremental state of an append-only Merkle tree: the roots of the
/// perfect subtrees making up the binary decomposition of the tree size.
///
/// For a tree of `n` leaves the frontier holds `popcount(n)` hashes, ordered
/// from the leftmost (largest) subtree to the rightmost (smallest). Appending
/// a leaf costs one node hash on average (amortised), and the root is the
/// right-to-left fold of the subtrees with [`node_hash`].
///
/// The state can be persisted with [`Frontier::size`] and
/// [`Frontier::subtrees`], and restored with [`Frontier::from_parts`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    subtrees: Vec<Hash>,
}

impl Frontier {
    /// Creates the frontier of the empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores a frontier from a persisted tree size and subtree hashes
    /// (largest subtree first), as returned by [`Frontier::size`] and
    /// [`Frontier::subtrees`].
    ///
    /// # Errors
    ///
    /// [`ProofError::InvalidFrontier`] if the number of hashes is not the
    /// number of set bits of `size`.
    pub fn from_parts(size: u64, subtrees: Vec<Hash>) -> Result<Self, ProofError> {
        let expected = popcount(size);
        if subtrees.len() != expected {
            return Err(ProofError::InvalidFrontier {
                size,
                expected,
                actual: subtrees.len(),
            });
        }
        Ok(Self { size, subtrees })
    }

    /// Rebuilds the frontier of the tree of `size` leaves from stored subtree
    /// hashes, with one [`NodeSource::subtree`] call per set bit of `size`.
    ///
    /// # Errors
    ///
    /// Whatever `src` reports for a subtree it cannot provide.
    pub fn from_source<S: NodeSource + ?Sized>(src: &S, size: u64) -> Result<Self, S::Error> {
        let mut subtrees = Vec::with_capacity(popcount(size));
        let mut offset = 0u64;
        for height in (0..64u8).rev() {
            let width = 1u64 << height;
            if size & width != 0 {
                subtrees.push(src.subtree(height, offset >> height)?);
                offset |= width;
            }
        }
        Ok(Self { size, subtrees })
    }

    /// Appends a leaf hash and returns the index the leaf was given.
    ///
    /// # Errors
    ///
    /// [`ProofError::TreeFull`] if the tree already holds `u64::MAX` leaves.
    pub fn push(&mut self, leaf: Hash) -> Result<u64, ProofError> {
        let index = self.size;
        let new_size = index.checked_add(1).ok_or(ProofError::TreeFull)?;
        // The new leaf completes one perfect subtree per trailing one bit of
        // the old size: merge that many rightmost subtrees into it.
        let merges = usize::try_from(index.trailing_ones()).unwrap_or(usize::MAX);
        let keep = self
            .subtrees
            .len()
            .checked_sub(merges)
            .ok_or(ProofError::InvalidFrontier {
                size: self.size,
                expected: popcount(self.size),
                actual: self.subtrees.len(),
            })?;
        let merged = self.subtrees.split_off(keep);
        let node = merged
            .iter()
            .rev()
            .fold(leaf, |right, left| node_hash(left, &right));
        self.subtrees.push(node);
        self.size = new_size;
        Ok(index)
    }

    /// Appends `leaves` (as [`Frontier::push`] does each in turn), hashing
    /// the tree a level at a time, many nodes at once ([`node_hashes`]).
    ///
    /// # Errors
    ///
    /// [`ProofError::TreeFull`] if the leaves do not fit.
    pub fn extend(&mut self, leaves: &[Hash]) -> Result<(), ProofError> {
        self.extend_with(leaves, |_, _, _| Ok(()))
    }

    /// [`Frontier::extend`], calling `completed(height, index, hash)` for
    /// every interior node the leaves complete (the perfect subtree of
    /// height `height ≥ 1` and index `index`, see [`NodeSource`]), level by
    /// level from the lowest; the first error it returns stops the append
    /// and is returned (the frontier is then unchanged).
    ///
    /// # Errors
    ///
    /// [`ProofError::TreeFull`] (converted into `E`) if the leaves do not
    /// fit, or what `completed` returns.
    pub fn extend_with<E: From<ProofError>>(
        &mut self,
        leaves: &[Hash],
        mut completed: impl FnMut(u32, u64, &Hash) -> Result<(), E>,
    ) -> Result<(), E> {
        let added = u64::try_from(leaves.len()).map_err(|_| ProofError::TreeFull)?;
        let new_size = self.size.checked_add(added).ok_or(ProofError::TreeFull)?;
        if self.subtrees.len() != popcount(self.size) {
            return Err(ProofError::InvalidFrontier {
                size: self.size,
                expected: popcount(self.size),
                actual: self.subtrees.len(),
            }
            .into());
        }
        let mut pending = self.subtrees.clone();
        // Nodes of the current level whose right sibling is not there yet,
        // lowest level first: the new smallest subtrees.
        let mut carries = Vec::new();
        // The nodes of the level above the leaves, then of the next, ...
        let mut level: Vec<Hash> = Vec::new();
        let mut next: Vec<Hash> = Vec::with_capacity(leaves.len() / 2 + 1);
        // Index of the level's first node among the nodes of its height.
        let mut start = self.size;
        let mut height = 0u32;
        loop {
            let nodes = if height == 0 { leaves } else { &level };
            if nodes.is_empty() {
                break;
            }
            next.clear();
            let mut rest = nodes;
            // An odd first index: its left sibling is the smallest subtree.
            if start & 1 == 1
                && let Some((first, after)) = rest.split_first()
            {
                let left = pending.pop().ok_or(ProofError::InvalidFrontier {
                    size: self.size,
                    expected: popcount(self.size),
                    actual: self.subtrees.len(),
                })?;
                next.push(node_hash(&left, first));
                rest = after;
            }
            let (pairs, last) = rest.as_chunks::<2>();
            let at = next.len();
            next.resize(at + pairs.len(), [0; HASH_SIZE]);
            if let Some(out) = next.get_mut(at..) {
                node_hashes(pairs, out);
            }
            if let Some(last) = last.first() {
                carries.push(*last);
            }
            start >>= 1;
            height += 1;
            for (i, node) in next.iter().enumerate() {
                completed(height, start + i as u64, node)?;
            }
            std::mem::swap(&mut level, &mut next);
        }
        pending.extend(carries.into_iter().rev());
        self.subtrees = pending;
        self.size = new_size;
        Ok(())
    }

    /// The number of leaves in the tree.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The roots of the perfect subtrees making up the tree, largest
    /// (leftmost) first.
    #[must_use]
    pub fn subtrees(&self) -> &[Hash] {
        &self.subtrees
    }

    /// The Merkle Tree Hash of the tree ([`empty_root`] when it is empty).
    #[must_use]
    pub fn root(&self) -> Hash {
        fold_right(&self.subtrees)
    }
}

/// The number of set bits of `n`, as a `usize`.
fn popcount(n: u64) -> usize {
    // At most 64, which fits any usize.
    usize::try_from(n.count_ones()).unwrap_or(usize::MAX)
}

/// Folds subtree roots (largest first) from right to left into one root.
fn fold_right(subtrees: &[Hash]) -> Hash {
    match subtrees.split_last() {
        None => empty_root(),
        Some((last, rest)) => rest
            .iter()
            .rev()
            .fold(*last, |right, left| node_hash(left, &right)),
    }
}

/// Access to the stored hashes of a tree's perfect subtrees, from which
/// proofs are generated without rehashing the tree.
///
/// Leaves are numbered from 0. The perfect subtree of height `h` and index
/// `i` covers the leaves `[i << h, (i + 1) << h)`; height 0 is the leaf hash
/// itself.
pub trait NodeSource {
    /// The error the source reports; proof generation also reports its own
    /// argument errors through it.
    type Error: From<ProofError>;

    /// Returns the hash of the perfect subtree of height `height` and index
    /// `index`.
    ///
    /// # Errors
    ///
    /// Implementation-defined, for example when the subtree lies beyond the
    /// stored leaves.
    fn subtree(&self, height: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// A slice of leaf hashes is a [`NodeSource`] that computes every subtree by
/// hashing its leaves: suitable for tests and small trees.
impl NodeSource for [Hash] {
    type Error = ProofError;

    fn subtree(&self, height: u8, index: u64) -> Result<Hash, ProofError> {
        let unavailable = ProofError::NodeUnavailable { height, index };
        let width = 1u64
            .checked_shl(u32::from(height))
            .ok_or(unavailable.clone())?;
        let start = index.checked_mul(width).ok_or(unavailable.clone())?;
        let end = start.checked_add(width).ok_or(unavailable.clone())?;
        let start = usize::try_from(start).map_err(|_| unavailable.clone())?;
        let end = usize::try_from(end).map_err(|_| unavailable.clone())?;
        let leaves = self.get(start..end).ok_or(unavailable)?;
        Ok(root(leaves))
    }
}

/// Fetches the perfect subtree of `width` leaves (a power of two) starting at
/// leaf `start` (a multiple of `width`).
fn perfect<S: NodeSource + ?Sized>(src: &S, start: u64, width: u64) -> Result<Hash, S::Error> {
    let height = height_of(width);
    src.subtree(height, start >> height)
}

/// Returns the Merkle Tree Hash of the leaves `[start, end)`, composed from
/// at most 64 stored perfect subtrees.
///
/// The range is split into the perfect subtrees of the binary decomposition
/// of its length, largest first, which are folded right to left exactly as
/// RFC 9162 §2.1.1 splits a tree. This requires the precondition that holds
/// for every subtree appearing in an RFC 9162 proof: `start` is a multiple of
/// the largest power of two not exceeding `end - start`. An empty range
/// (`start == end`) hashes to [`empty_root`].
///
/// # Errors
///
/// [`ProofError::InvalidRange`] if `end < start`,
/// [`ProofError::UnalignedRange`] if the precondition does not hold, and
/// whatever `src` reports for a subtree it cannot provide.
pub fn range_hash<S: NodeSource + ?Sized>(src: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    let len = end
        .checked_sub(start)
        .ok_or(ProofError::InvalidRange { start, end })?;
    let Some(top) = len.checked_ilog2() else {
        return Ok(empty_root());
    };
    let top_width = 1u64 << top;
    if !start.is_multiple_of(top_width) {
        return Err(ProofError::UnalignedRange { start, end }.into());
    }
    let mut pieces = Vec::with_capacity(popcount(len));
    let mut offset = start;
    for height in (0..=top).rev() {
        let width = 1u64 << height;
        if len & width != 0 {
            pieces.push(src.subtree(height_of(width), offset >> height)?);
            // `offset + width <= end`, so this cannot overflow.
            offset = offset.saturating_add(width);
        }
    }
    Ok(fold_right(&pieces))
}

/// Generates the RFC 9162 §2.1.3.1 inclusion proof (audit path) of leaf
/// `index` in the tree of `size` leaves, ordered from the leaf's sibling up
/// to the root's child.
///
/// Uses O(log size) [`NodeSource::subtree`] calls.
///
/// # Errors
///
/// [`ProofError::IndexOutOfRange`] if `index >= size`, and whatever `src`
/// reports for a subtree it cannot provide.
pub fn inclusion_proof<S: NodeSource + ?Sized>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, S::Error> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size }.into());
    }
    // Walk down from the root, recording the sibling of each subtree on the
    // path to the leaf; the proof lists them bottom-up.
    let mut path = Vec::with_capacity(inclusion_proof_len(index, size));
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = largest_power_of_two_below(hi - lo);
        let mid = lo + k;
        if index < mid {
            path.push(range_hash(src, mid, hi)?);
            hi = mid;
        } else {
            path.push(perfect(src, lo, k)?);
            lo = mid;
        }
    }
    path.reverse();
    Ok(path)
}

/// Generates the RFC 9162 §2.1.4.1 consistency proof between the tree of
/// `old_size` leaves and the tree of `new_size` leaves.
///
/// The proof is empty when `old_size` is 0 or equal to `new_size`. Uses
/// O(log new_size) [`NodeSource::subtree`] calls.
///
/// # Errors
///
/// [`ProofError::InvalidSizes`] if `old_size > new_size`, and whatever `src`
/// reports for a subtree it cannot provide.
pub fn consistency_proof<S: NodeSource + ?Sized>(
    src: &S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, S::Error> {
    if old_size > new_size {
        return Err(ProofError::InvalidSizes { old_size, new_size }.into());
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[lo:hi], complete) of RFC 9162 §2.1.4.1, unrolled.
    let mut path = Vec::with_capacity(consistency_proof_len(old_size, new_size));
    let (mut lo, mut hi) = (0u64, new_size);
    let mut m = old_size;
    let mut complete = true;
    loop {
        let n = hi - lo;
        if m == n {
            if !complete {
                path.push(range_hash(src, lo, hi)?);
            }
            break;
        }
        let k = largest_power_of_two_below(n);
        if m <= k {
            path.push(range_hash(src, lo + k, hi)?);
            hi = lo + k;
        } else {
            path.push(perfect(src, lo, k)?);
            lo += k;
            m -= k;
            complete = false;
        }
    }
    path.reverse();
    Ok(path)
}

/// The number of hashes in the inclusion proof of leaf `index` in a tree of
/// `size` leaves (`index < size`): the siblings inside the largest perfect
/// subtree holding the leaf, plus one hash per subtree to its left or right
/// on the tree's right border.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let last = size.saturating_sub(1);
    let inner = 64 - (index ^ last).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    usize::try_from(inner + border).unwrap_or(usize::MAX)
}

/// The number of hashes in the consistency proof between trees of
/// `old_size` and `new_size` leaves (`0 < old_size < new_size`).
fn consistency_proof_len(old_size: u64, new_size: u64) -> usize {
    let last_old = old_size.saturating_sub(1);
    let last_new = new_size.saturating_sub(1);
    let inner = 64 - (last_old ^ last_new).leading_zeros();
    let border = last_old.checked_shr(inner).unwrap_or(0).count_ones();
    // The lowest `shift` levels lie inside a perfect subtree of the old tree
    // whose root is a single proof hash (or the old root itself when the old
    // size is a power of two).
    let shift = old_size.trailing_zeros();
    let seed = u32::from(!old_size.is_power_of_two());
    let total = inner.saturating_sub(shift) + border + seed;
    usize::try_from(total).unwrap_or(usize::MAX)
}

/// Recomputes the tree root from leaf hash `leaf` at `index`, the tree size
/// and an inclusion proof, following RFC 9162 §2.1.3.2.
///
/// # Errors
///
/// [`ProofError::IndexOutOfRange`] if `index >= size` and
/// [`ProofError::MalformedProof`] if the proof does not hold exactly the
/// number of hashes that `index` and `size` require.
pub fn root_from_inclusion_proof(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_len(index, size);
    let malformed = ProofError::MalformedProof {
        expected,
        actual: proof.len(),
    };
    if proof.len() != expected {
        return Err(malformed);
    }
    let mut f = index;
    let mut s = size - 1;
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(malformed);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(malformed);
    }
    Ok(r)
}

/// Verifies that `leaf` is the leaf hash at `index` in the tree of `size`
/// leaves whose root is `root`, following RFC 9162 §2.1.3.2. The roots are
/// compared in constant time.
///
/// A root hash does not commit to the tree size on its own (a proof for a
/// tree of 3 leaves can also fit a claimed size of 4 with the same root), so
/// `size` and `root` must come from the same authenticated checkpoint.
///
/// # Errors
///
/// The errors of [`root_from_inclusion_proof`], and
/// [`ProofError::RootMismatch`] if the recomputed root differs from `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let computed = root_from_inclusion_proof(leaf, index, size, proof)?;
    if ct_eq(&computed, root) {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Verifies that the tree of `old_size` leaves with root `old_root` is a
/// prefix of the tree of `new_size` leaves with root `new_root`, following
/// RFC 9162 §2.1.4.2. Roots are compared in constant time.
///
/// The cases RFC 9162 leaves outside its algorithm are decided as follows:
/// when `old_size == new_size` the proof must be empty and the roots equal;
/// when `old_size == 0` the proof must be empty and `old_root` must be
/// [`empty_root`] (every tree extends the empty tree).
///
/// # Errors
///
/// [`ProofError::InvalidSizes`] if `old_size > new_size`,
/// [`ProofError::MalformedProof`] if the proof does not hold exactly the
/// number of hashes the sizes require, [`ProofError::OldRootMismatch`] if the
/// old root recomputed from the proof differs from `old_root`, and
/// [`ProofError::RootMismatch`] if the new root recomputed from the proof
/// differs from `new_root` (or, for equal sizes, if the roots differ).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::InvalidSizes { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::MalformedProof {
                expected: 0,
                actual: proof.len(),
            });
        }
        if old_size == 0 && !ct_eq(old_root, &empty_root()) {
            return Err(ProofError::OldRootMismatch);
        }
        if old_size == new_size && !ct_eq(old_root, new_root) {
            return Err(ProofError::RootMismatch);
        }
        return Ok(());
    }
    let expected = consistency_proof_len(old_size, new_size);
    let malformed = ProofError::MalformedProof {
        expected,
        actual: proof.len(),
    };
    if proof.len() != expected {
        return Err(malformed);
    }
    // Step 2: when the old tree is a perfect tree its root is the first
    // element of the path.
    let seed: Option<&Hash> = old_size.is_power_of_two().then_some(old_root);
    let mut path = seed.into_iter().chain(proof.iter());
    // Steps 3 and 4.
    let mut f = old_size - 1;
    let mut s = new_size - 1;
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    // Step 5.
    let first = path.next().ok_or(malformed.clone())?;
    let mut fr = *first;
    let mut sr = *first;
    // Step 6.
    for c in path {
        if s == 0 {
            return Err(malformed);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    // Step 7.
    if s != 0 {
        return Err(malformed);
    }
    if !ct_eq(&fr, old_root) {
        return Err(ProofError::OldRootMismatch);
    }
    if !ct_eq(&sr, new_root) {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
