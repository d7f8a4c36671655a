//! The BLAKE3 hash chain: `chain_i = BLAKE3(chain_{i-1} ‖ leaf_i)`.
//!
//! The chain gives every record a link to everything before it and lets a
//! verifier stream through the log once. It is seeded by a value unique to
//! the store, so chains of two stores never share a prefix:
//! `genesis = BLAKE3("sealog/chain/genesis/v1" ‖ store_id)`.

use crate::Hash;

/// Domain-separation prefix of the genesis value.
pub const GENESIS_DOMAIN: &[u8] = b"sealog/chain/genesis/v1";

/// The chain value before a store's first record.
pub fn genesis(store_id: &[u8; 16]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(GENESIS_DOMAIN);
    h.update(store_id);
    *h.finalize().as_bytes()
}

/// The chain value after a record whose Merkle leaf hash is `leaf`.
pub fn link(previous: &Hash, leaf: &Hash) -> Hash {
    let mut input = [0u8; 64];
    let (a, b) = input.split_at_mut(32);
    a.copy_from_slice(previous);
    b.copy_from_slice(leaf);
    *blake3::hash(&input).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_depends_on_the_store() {
        assert_ne!(genesis(&[0; 16]), genesis(&[1; 16]));
    }

    #[test]
    fn link_is_blake3_of_the_concatenation() {
        let mut input = Vec::new();
        input.extend_from_slice(&[1u8; 32]);
        input.extend_from_slice(&[2u8; 32]);
        assert_eq!(link(&[1; 32], &[2; 32]), *blake3::hash(&input).as_bytes());
    }
}
