//! Tests of the Merkle tree hashing and proofs.

use super::*;
use proptest::prelude::*;
use std::cell::Cell;

fn h(hex_str: &str) -> Hash {
    let bytes = hex::decode(hex_str).unwrap();
    bytes.try_into().unwrap()
}

// The reference tree of RFC 6962 test vectors, as published in
// certificate-transparency (C++/Go) and transparency-dev/merkle
// (`proof/verify_test.go`: `leaves`, `roots`, `inclusionProofs`,
// `consistencyProofs`). Leaf inputs are hex-encoded raw leaf data.
const LEAF_INPUTS: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

// ROOTS[i] is the root of the tree holding the first i + 1 leaves.
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

// (0-based leaf index, tree size, proof). The published vectors number
// leaves from 1.
const INCLUSION: [(u64, u64, &[&str]); 5] = [
    (0, 1, &[]),
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

// (old size, new size, proof).
const CONSISTENCY: [(u64, u64, &[&str]); 5] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn reference_leaves() -> Vec<Hash> {
    LEAF_INPUTS
        .iter()
        .map(|input| leaf_hash(&hex::decode(input).unwrap()))
        .collect()
}

fn hashes(list: &[&str]) -> Vec<Hash> {
    list.iter().map(|s| h(s)).collect()
}

fn flip(hash: &Hash, bit: usize) -> Hash {
    let mut out = *hash;
    out[bit / 8 % 32] ^= 1 << (bit % 8);
    out
}

/// PATH(m, D[n]) written directly from RFC 9162 §2.1.3.1, over slices.
fn rfc_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = largest_power_of_two_below_usize(n);
    let (left, right) = leaves.split_at(k);
    if m < k {
        let mut p = rfc_path(m, left);
        p.push(root(right));
        p
    } else {
        let mut p = rfc_path(m - k, right);
        p.push(root(left));
        p
    }
}

/// SUBPROOF(m, D[n], b) written directly from RFC 9162 §2.1.4.1.
fn rfc_subproof(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if complete {
            Vec::new()
        } else {
            vec![root(leaves)]
        };
    }
    let k = largest_power_of_two_below_usize(n);
    let (left, right) = leaves.split_at(k);
    if m <= k {
        let mut p = rfc_subproof(m, left, complete);
        p.push(root(right));
        p
    } else {
        let mut p = rfc_subproof(m - k, right, false);
        p.push(root(left));
        p
    }
}

fn distinct_leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

/// A source holding every stored node, as a storage engine would:
/// `levels[h][i]` is the perfect subtree of height `h` and index `i`.
struct StoredTree {
    levels: Vec<Vec<Hash>>,
}

impl StoredTree {
    fn new(leaves: &[Hash]) -> Self {
        let mut levels = vec![leaves.to_vec()];
        while let Some(last) = levels.last() {
            if last.len() < 2 {
                break;
            }
            let next = last
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
            levels.push(next);
        }
        Self { levels }
    }

    fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// The root of the first `n` leaves, in O(log n).
    fn root_of(&self, n: u64) -> Hash {
        range_hash(self, 0, n).unwrap()
    }
}

impl NodeSource for StoredTree {
    type Error = ProofError;
    fn subtree(&self, height: u8, index: u64) -> Result<Hash, ProofError> {
        self.levels
            .get(usize::from(height))
            .and_then(|level| level.get(index as usize))
            .copied()
            .ok_or(ProofError::NodeUnavailable { height, index })
    }
}

struct Counting<'a> {
    leaves: &'a [Hash],
    calls: Cell<usize>,
}

impl NodeSource for Counting<'_> {
    type Error = ProofError;
    fn subtree(&self, height: u8, index: u64) -> Result<Hash, ProofError> {
        self.calls.set(self.calls.get() + 1);
        self.leaves.subtree(height, index)
    }
}

#[test]
fn hashing_primitives() {
    assert_eq!(
        empty_root(),
        h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    assert_eq!(root(&[]), empty_root());
    // The leaf hash of the empty input is the published root of size 1.
    assert_eq!(leaf_hash(b""), h(ROOTS[0]));
    let l = reference_leaves();
    assert_eq!(node_hash(&l[0], &l[1]), h(ROOTS[1]));
    assert!(ct_eq(&l[0], &l[0]));
    assert!(!ct_eq(&l[0], &l[1]));
    assert!(!ct_eq(&l[0], &flip(&l[0], 255)));
}

#[test]
fn reference_roots() {
    let leaves = reference_leaves();
    let mut frontier = Frontier::new();
    assert_eq!(frontier.root(), empty_root());
    for (i, expected) in ROOTS.iter().enumerate() {
        assert_eq!(root(&leaves[..=i]), h(expected), "root of size {}", i + 1);
        assert_eq!(frontier.push(leaves[i]).unwrap(), i as u64);
        assert_eq!(frontier.root(), h(expected), "frontier of size {}", i + 1);
        assert_eq!(
            range_hash(leaves.as_slice(), 0, i as u64 + 1).unwrap(),
            h(expected)
        );
    }
}

#[test]
fn reference_inclusion_proofs() {
    let leaves = reference_leaves();
    for (index, size, proof) in INCLUSION {
        let proof = hashes(proof);
        let root = h(ROOTS[size as usize - 1]);
        let leaf = leaves[index as usize];
        let src = &leaves[..size as usize];
        assert_eq!(inclusion_proof(src, index, size).unwrap(), proof);
        assert_eq!(
            root_from_inclusion_proof(&leaf, index, size, &proof).unwrap(),
            root
        );
        verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
        reject_corrupted_inclusion(&leaf, index, size, &proof, &root);
    }
}

/// The probes of the published reference tests: none of them may verify.
fn reject_corrupted_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) {
    let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    let mut probes: Vec<(u64, u64, Hash, Vec<Hash>, Hash)> = vec![
        (index.wrapping_sub(1), size, *leaf, proof.to_vec(), *root),
        (index + 1, size, *leaf, proof.to_vec(), *root),
        (index ^ 2, size, *leaf, proof.to_vec(), *root),
        (index, size * 2, *leaf, proof.to_vec(), *root),
        (index, size / 2, *leaf, proof.to_vec(), *root),
        (index, size, leaf_hash(b"WrongLeaf"), proof.to_vec(), *root),
        (index, size, *leaf, proof.to_vec(), empty_root()),
        (index, size, *leaf, proof.to_vec(), some),
        (index, size, *leaf, [proof, &[*root]].concat(), *root),
        (index, size, *leaf, [&[*root], proof].concat(), *root),
    ];
    for i in 0..proof.len() {
        let mut p = proof.to_vec();
        p[i][0] ^= 8;
        probes.push((index, size, *leaf, p, *root));
    }
    if let Some((_, rest)) = proof.split_last() {
        probes.push((index, size, *leaf, rest.to_vec(), *root));
    }
    if proof.len() > 1 {
        let mut p = vec![proof[0], some];
        p.extend_from_slice(&proof[1..]);
        probes.push((index, size, *leaf, p, *root));
    }
    for (i, (index, size, leaf, proof, root)) in probes.into_iter().enumerate() {
        assert!(
            verify_inclusion(&leaf, index, size, &proof, &root).is_err(),
            "probe {i} verified"
        );
    }
}

#[test]
fn reference_consistency_proofs() {
    let leaves = reference_leaves();
    for (old, new, proof) in CONSISTENCY {
        let proof = hashes(proof);
        let old_root = h(ROOTS[old as usize - 1]);
        let new_root = h(ROOTS[new as usize - 1]);
        let src = &leaves[..new as usize];
        assert_eq!(consistency_proof(src, old, new).unwrap(), proof);
        verify_consistency(old, new, &old_root, &new_root, &proof).unwrap();
        if proof.is_empty() {
            continue;
        }
        let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
        let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            (old - 1, new, old_root, new_root, proof.clone()),
            (old + 1, new, old_root, new_root, proof.clone()),
            (old ^ 2, new, old_root, new_root, proof.clone()),
            (old, new * 2, old_root, new_root, proof.clone()),
            (old, new / 2, old_root, new_root, proof.clone()),
            (old, new, some, new_root, proof.clone()),
            (old, new, old_root, some, proof.clone()),
            (old, new, new_root, old_root, proof.clone()),
            (old, new, old_root, new_root, Vec::new()),
            (
                old,
                new,
                old_root,
                new_root,
                [&proof[..], &[old_root]].concat(),
            ),
            (
                old,
                new,
                old_root,
                new_root,
                [&proof[..], &[new_root]].concat(),
            ),
            (
                old,
                new,
                old_root,
                new_root,
                [&[old_root], &proof[..]].concat(),
            ),
            (
                old,
                new,
                old_root,
                new_root,
                [&[new_root], &proof[..]].concat(),
            ),
            (
                old,
                new,
                old_root,
                new_root,
                [&[proof[0]], &proof[..]].concat(),
            ),
            (
                old,
                new,
                old_root,
                new_root,
                proof[..proof.len() - 1].to_vec(),
            ),
        ];
        for i in 0..proof.len() {
            let mut p = proof.clone();
            p[i][0] ^= 16;
            probes.push((old, new, old_root, new_root, p));
        }
        for (i, (o, n, or, nr, p)) in probes.into_iter().enumerate() {
            assert!(
                verify_consistency(o, n, &or, &nr, &p).is_err(),
                "probe {i} of {old}->{new} verified"
            );
        }
    }
}

#[test]
fn consistency_edge_cases() {
    let empty = empty_root();
    let r1 = h(ROOTS[0]);
    let r2 = h(ROOTS[1]);
    // From the empty tree: always consistent, with an empty proof.
    verify_consistency(0, 0, &empty, &empty, &[]).unwrap();
    verify_consistency(0, 5, &empty, &r2, &[]).unwrap();
    assert_eq!(
        verify_consistency(0, 5, &r1, &r2, &[]),
        Err(ProofError::OldRootMismatch)
    );
    assert_eq!(
        verify_consistency(0, 5, &empty, &r2, &[empty]),
        Err(ProofError::MalformedProof {
            expected: 0,
            actual: 1
        })
    );
    // Equal sizes: equal roots, empty proof.
    verify_consistency(1, 1, &r1, &r1, &[]).unwrap();
    assert_eq!(
        verify_consistency(1, 1, &r1, &r2, &[]),
        Err(ProofError::RootMismatch)
    );
    assert!(verify_consistency(1, 1, &r1, &r1, &[empty]).is_err());
    // Time travel.
    assert_eq!(
        verify_consistency(2, 1, &r2, &r1, &[]),
        Err(ProofError::InvalidSizes {
            old_size: 2,
            new_size: 1
        })
    );
    // A non-trivial proof must not be empty.
    assert_eq!(
        verify_consistency(1, 2, &r1, &r2, &[]),
        Err(ProofError::MalformedProof {
            expected: 1,
            actual: 0
        })
    );
    let leaves = reference_leaves();
    assert_eq!(
        consistency_proof(leaves.as_slice(), 3, 2),
        Err(ProofError::InvalidSizes {
            old_size: 3,
            new_size: 2
        })
    );
    assert_eq!(
        consistency_proof(leaves.as_slice(), 0, 8).unwrap(),
        Vec::<Hash>::new()
    );
    assert_eq!(
        consistency_proof(leaves.as_slice(), 8, 8).unwrap(),
        Vec::<Hash>::new()
    );
    // A source that does not hold the new tree reports it.
    assert!(matches!(
        consistency_proof(&leaves[..4], 3, 8),
        Err(ProofError::NodeUnavailable { .. })
    ));
}

#[test]
fn inclusion_edge_cases() {
    let leaves = reference_leaves();
    let leaf = leaves[0];
    assert_eq!(
        inclusion_proof(leaves.as_slice(), 0, 0),
        Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
    );
    assert_eq!(
        inclusion_proof(leaves.as_slice(), 8, 8),
        Err(ProofError::IndexOutOfRange { index: 8, size: 8 })
    );
    assert_eq!(
        verify_inclusion(&leaf, 0, 0, &[], &empty_root()),
        Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
    );
    assert_eq!(
        verify_inclusion(&leaf, u64::MAX, u64::MAX, &[], &leaf),
        Err(ProofError::IndexOutOfRange {
            index: u64::MAX,
            size: u64::MAX
        })
    );
    // A single-leaf tree: the root is the leaf hash and the proof is empty.
    verify_inclusion(&leaf, 0, 1, &[], &leaf).unwrap();
    assert_eq!(
        verify_inclusion(&leaf, 0, 1, &[], &leaves[1]),
        Err(ProofError::RootMismatch)
    );
    assert_eq!(
        verify_inclusion(&leaf, 0, 1, &[leaf], &leaf),
        Err(ProofError::MalformedProof {
            expected: 0,
            actual: 1
        })
    );
    // Huge trees are handled without overflow: the last leaf of a tree of
    // u64::MAX leaves needs 63 hashes, the first needs 64.
    let proof = vec![leaf; 64];
    assert_eq!(
        root_from_inclusion_proof(&leaf, u64::MAX - 1, u64::MAX, &proof),
        Err(ProofError::MalformedProof {
            expected: 63,
            actual: 64
        })
    );
    root_from_inclusion_proof(&leaf, 0, u64::MAX, &proof).unwrap();
    root_from_inclusion_proof(&leaf, u64::MAX - 1, u64::MAX, &proof[..63]).unwrap();
}

/// The root alone does not commit to the tree size: a proof for leaf 0 of
/// a 3-leaf tree also "verifies" leaf 0 of a 4-leaf tree whose root is
/// that same hash. Verifiers must take the size and the root from the same
/// authenticated checkpoint, as sealog's receipts do.
#[test]
fn size_is_authenticated_by_the_checkpoint_not_the_root() {
    let leaves = reference_leaves();
    let proof = inclusion_proof(leaves.as_slice(), 0, 3).unwrap();
    let root3 = h(ROOTS[2]);
    verify_inclusion(&leaves[0], 0, 3, &proof, &root3).unwrap();
    verify_inclusion(&leaves[0], 0, 4, &proof, &root3).unwrap();
    // Against the real 4-leaf root it is rejected.
    assert_eq!(
        verify_inclusion(&leaves[0], 0, 4, &proof, &h(ROOTS[3])),
        Err(ProofError::RootMismatch)
    );
}

#[test]
fn range_hash_checks_its_precondition() {
    let leaves = distinct_leaves(16);
    let src = leaves.as_slice();
    assert_eq!(range_hash(src, 3, 3).unwrap(), empty_root());
    assert_eq!(range_hash(src, 3, 4).unwrap(), leaves[3]);
    assert_eq!(range_hash(src, 8, 13).unwrap(), root(&leaves[8..13]));
    assert_eq!(range_hash(src, 4, 7).unwrap(), root(&leaves[4..7]));
    assert_eq!(
        range_hash(src, 5, 3),
        Err(ProofError::InvalidRange { start: 5, end: 3 })
    );
    assert_eq!(
        range_hash(src, 2, 6),
        Err(ProofError::UnalignedRange { start: 2, end: 6 })
    );
    assert_eq!(
        range_hash(src, 6, 11),
        Err(ProofError::UnalignedRange { start: 6, end: 11 })
    );
    assert_eq!(
        range_hash(src, 16, 18),
        Err(ProofError::NodeUnavailable {
            height: 1,
            index: 8
        })
    );
}

#[test]
fn slice_source_rejects_out_of_range_nodes() {
    let leaves = distinct_leaves(5);
    let src = leaves.as_slice();
    assert_eq!(src.subtree(2, 0).unwrap(), root(&leaves[..4]));
    assert_eq!(src.subtree(0, 4).unwrap(), leaves[4]);
    for (height, index) in [(2, 1), (0, 5), (3, 0), (64, 0), (255, 0), (1, u64::MAX)] {
        assert_eq!(
            src.subtree(height, index),
            Err(ProofError::NodeUnavailable { height, index })
        );
    }
}

#[test]
fn frontier_persistence() {
    let leaves = distinct_leaves(13);
    let mut frontier = Frontier::new();
    for leaf in &leaves {
        frontier.push(*leaf).unwrap();
    }
    assert_eq!(frontier.size(), 13);
    assert_eq!(frontier.subtrees().len(), 3);
    assert_eq!(frontier.subtrees()[0], root(&leaves[..8]));
    assert_eq!(frontier.subtrees()[1], root(&leaves[8..12]));
    assert_eq!(frontier.subtrees()[2], leaves[12]);
    let restored = Frontier::from_parts(13, frontier.subtrees().to_vec()).unwrap();
    assert_eq!(restored, frontier);
    assert_eq!(
        Frontier::from_source(leaves.as_slice(), 13).unwrap(),
        frontier
    );
    assert_eq!(
        Frontier::from_parts(13, frontier.subtrees()[..2].to_vec()),
        Err(ProofError::InvalidFrontier {
            size: 13,
            expected: 3,
            actual: 2
        })
    );
    assert_eq!(
        Frontier::from_source(&leaves[..12], 13),
        Err(ProofError::NodeUnavailable {
            height: 0,
            index: 12
        })
    );
    let mut full = Frontier::from_parts(u64::MAX, vec![leaves[0]; 64]).unwrap();
    assert_eq!(full.push(leaves[1]), Err(ProofError::TreeFull));
    assert_eq!(full.size(), u64::MAX);
    let mut nearly = Frontier::from_parts(u64::MAX - 1, vec![leaves[0]; 63]).unwrap();
    assert_eq!(nearly.push(leaves[1]).unwrap(), u64::MAX - 1);
    assert_eq!(nearly.subtrees().len(), 64);
}

/// Exhaustive agreement with the RFC's recursive definitions on small trees.
#[test]
fn generation_matches_rfc_definitions() {
    let leaves = distinct_leaves(40);
    for n in 1..=leaves.len() {
        let tree = &leaves[..n];
        let size = n as u64;
        let tree_root = root(tree);
        for m in 0..n {
            let proof = inclusion_proof(tree, m as u64, size).unwrap();
            assert_eq!(proof, rfc_path(m, tree), "PATH({m}, {n})");
            verify_inclusion(&tree[m], m as u64, size, &proof, &tree_root).unwrap();
        }
        for m in 1..=n {
            let proof = consistency_proof(tree, m as u64, size).unwrap();
            let expected = if m == n {
                Vec::new()
            } else {
                rfc_subproof(m, tree, true)
            };
            assert_eq!(proof, expected, "PROOF({m}, {n})");
            verify_consistency(m as u64, size, &root(&tree[..m]), &tree_root, &proof).unwrap();
        }
    }
}

#[test]
fn generation_uses_logarithmic_node_reads() {
    let leaves = distinct_leaves(1500);
    for size in [
        1u64, 2, 3, 255, 256, 257, 1000, 1023, 1024, 1025, 1499, 1500,
    ] {
        let bound = 2 * (64 - size.leading_zeros() as usize) + 1;
        for index in [0, size / 3, size / 2, size - 1] {
            let src = Counting {
                leaves: &leaves,
                calls: Cell::new(0),
            };
            inclusion_proof(&src, index, size).unwrap();
            assert!(src.calls.get() <= bound, "inclusion {index}/{size}");
            let src = Counting {
                leaves: &leaves,
                calls: Cell::new(0),
            };
            consistency_proof(&src, index + 1, size).unwrap();
            assert!(src.calls.get() <= bound, "consistency {}/{size}", index + 1);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn inclusion_proofs_verify_and_resist_tampering(
        size in 1u64..2000,
        index_seed in any::<u64>(),
        bit in 0usize..256,
    ) {
        // One extra leaf so that the tree of size + 1 is available too.
        let mut leaves = distinct_leaves(size + 1);
        let tree = StoredTree::new(&leaves);
        leaves.pop();
        let index = index_seed % size;
        let leaf = leaves[index as usize];
        let tree_root = tree.root_of(size);
        let proof = inclusion_proof(&tree, index, size).unwrap();
        prop_assert_eq!(proof.len(), inclusion_proof_len(index, size));
        prop_assert_eq!(
            root_from_inclusion_proof(&leaf, index, size, &proof).unwrap(),
            tree_root
        );
        verify_inclusion(&leaf, index, size, &proof, &tree_root).unwrap();

        for i in 0..proof.len() {
            let mut tampered = proof.clone();
            tampered[i] = flip(&tampered[i], bit);
            prop_assert!(verify_inclusion(&leaf, index, size, &tampered, &tree_root).is_err());
        }
        prop_assert!(verify_inclusion(&flip(&leaf, bit), index, size, &proof, &tree_root).is_err());
        prop_assert!(verify_inclusion(&leaf, index, size, &proof, &flip(&tree_root, bit)).is_err());
        for other in [index.wrapping_sub(1), index + 1] {
            prop_assert!(verify_inclusion(&leaf, other, size, &proof, &tree_root).is_err());
        }
        // Another tree size, with that tree's root: the proof must not
        // carry over (unless it happens to be that tree's proof too).
        for other in [size - 1, size + 1] {
            if index < other {
                let other_root = tree.root_of(other);
                if inclusion_proof(&tree, index, other).unwrap() != proof {
                    prop_assert!(
                        verify_inclusion(&leaf, index, other, &proof, &other_root).is_err()
                    );
                }
            }
        }
    }

    #[test]
    fn consistency_proofs_verify_and_resist_tampering(
        new_size in 1u64..2000,
        old_seed in any::<u64>(),
        bit in 0usize..256,
    ) {
        let tree = StoredTree::new(&distinct_leaves(new_size + 1));
        let old_size = old_seed % (new_size + 1);
        let old_root = tree.root_of(old_size);
        let new_root = tree.root_of(new_size);
        let proof = consistency_proof(&tree, old_size, new_size).unwrap();
        verify_consistency(old_size, new_size, &old_root, &new_root, &proof).unwrap();

        for i in 0..proof.len() {
            let mut tampered = proof.clone();
            tampered[i] = flip(&tampered[i], bit);
            prop_assert!(
                verify_consistency(old_size, new_size, &old_root, &new_root, &tampered).is_err()
            );
        }
        prop_assert!(
            verify_consistency(old_size, new_size, &flip(&old_root, bit), &new_root, &proof)
                .is_err()
        );
        if old_size > 0 {
            // (From the empty tree any new root is consistent.)
            prop_assert!(
                verify_consistency(old_size, new_size, &old_root, &flip(&new_root, bit), &proof)
                    .is_err()
            );
        }
        // Other sizes, with the true roots of those trees: the proof must
        // not carry over unless it is also the proof for those sizes.
        let candidates = [
            (old_size.wrapping_sub(1), new_size),
            (old_size + 1, new_size),
            (old_size, new_size - 1),
            (old_size, new_size + 1),
        ];
        for (o, n) in candidates {
            if o > n || n > tree.size() {
                prop_assert!(verify_consistency(o, n, &old_root, &new_root, &proof).is_err());
                continue;
            }
            if consistency_proof(&tree, o, n).unwrap() != proof {
                prop_assert!(
                    verify_consistency(o, n, &tree.root_of(o), &tree.root_of(n), &proof)
                        .is_err()
                );
            }
        }
    }

    #[test]
    fn frontier_and_ranges_match_root(size in 0u64..2000, len_seed in any::<u64>(), pos_seed in any::<u64>()) {
        let leaves = distinct_leaves(size);
        let tree = StoredTree::new(&leaves);
        let mut frontier = Frontier::new();
        for (i, leaf) in leaves.iter().enumerate() {
            prop_assert_eq!(frontier.push(*leaf).unwrap(), i as u64);
            prop_assert_eq!(frontier.subtrees().len(), (i as u64 + 1).count_ones() as usize);
        }
        prop_assert_eq!(frontier.size(), size);
        prop_assert_eq!(frontier.root(), root(&leaves));
        prop_assert_eq!(Frontier::from_source(&tree, size).unwrap(), frontier.clone());
        prop_assert_eq!(range_hash(&tree, 0, size).unwrap(), frontier.root());
        if size > 0 {
            // A random aligned sub-range.
            let len = 1 + len_seed % size;
            let align = 1u64 << len.ilog2();
            let slots = (size - len) / align + 1;
            let start = (pos_seed % slots) * align;
            let end = start + len;
            prop_assert_eq!(
                range_hash(&tree, start, end).unwrap(),
                root(&leaves[start as usize..end as usize])
            );
            // Any prefix root, through a restored frontier.
            let prefix = pos_seed % (size + 1);
            let restored = Frontier::from_source(&tree, prefix).unwrap();
            prop_assert_eq!(restored.root(), root(&leaves[..prefix as usize]));
        }
    }

    #[test]
    fn verification_never_panics(
        leaf in any::<[u8; 32]>(),
        index in any::<u64>(),
        size in any::<u64>(),
        old in any::<u64>(),
        proof in proptest::collection::vec(any::<[u8; 32]>(), 0..70),
    ) {
        let _ = root_from_inclusion_proof(&leaf, index, size, &proof);
        let _ = verify_inclusion(&leaf, index, size, &proof, &leaf);
        let _ = verify_consistency(old, size, &leaf, &leaf, &proof);
        let _ = verify_consistency(old % (size | 1), size, &leaf, &leaf, &proof);
    }
}

proptest! {
    /// Hashing many leaves at once gives each one's [`leaf_hash`], for
    /// every length around the block and padding edges and batch sizes
    /// around the SIMD widths.
    #[test]
    fn leaf_hashes_are_each_leafs_hash(
        lens in proptest::collection::vec(0usize..700, 0..40),
        seed in any::<u8>(),
    ) {
        let data: Vec<Vec<u8>> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (i * 31 + j) as u8 ^ seed).collect())
            .collect();
        let slices: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let mut out = vec![[0u8; 32]; slices.len()];
        leaf_hashes(&slices, &mut out);
        for (d, got) in data.iter().zip(&out) {
            prop_assert_eq!(*got, leaf_hash(d));
        }
    }

    /// Appending leaves in batches of any sizes gives the frontier (and the
    /// root) that appending them one at a time does, and reports every
    /// completed node with its height and index, each once.
    #[test]
    fn a_frontier_extended_in_batches_is_the_one_pushed_leaf_by_leaf(
        batches in proptest::collection::vec(0usize..300, 0..8),
    ) {
        let total: usize = batches.iter().sum();
        let leaves: Vec<Hash> = (0..total).map(|i| leaf_hash(&(i as u64).to_le_bytes())).collect();
        let mut one = Frontier::new();
        for leaf in &leaves {
            one.push(*leaf).unwrap();
        }
        let mut many = Frontier::new();
        let mut completed = Vec::new();
        let mut at = 0;
        for &n in &batches {
            many.extend_with(&leaves[at..at + n], |height, index, hash| {
                completed.push((height, index, *hash));
                Ok::<(), ProofError>(())
            })
            .unwrap();
            at += n;
            prop_assert_eq!(many.size(), at as u64);
            prop_assert_eq!(many.root(), root(&leaves[..at]));
        }
        prop_assert_eq!(&many, &one);
        // Every perfect subtree of height ≥ 1 inside the leaves, once.
        let mut expected = Vec::new();
        for height in 1..16u32 {
            for index in 0..(total as u64 >> height) {
                let (s, e) = ((index << height) as usize, ((index + 1) << height) as usize);
                expected.push((height, index, root(&leaves[s..e])));
            }
        }
        completed.sort();
        expected.sort();
        prop_assert_eq!(completed, expected);
    }
}

#[test]
fn extending_by_nothing_changes_nothing_and_a_full_tree_refuses_more() {
    let mut f = Frontier::new();
    f.extend(&[]).unwrap();
    assert_eq!(f, Frontier::new());
    let mut full = Frontier::from_parts(u64::MAX, vec![[7u8; 32]; 64]).unwrap();
    assert_eq!(full.extend(&[[1u8; 32]]), Err(ProofError::TreeFull));
    assert_eq!(full.size(), u64::MAX);
}
