//! `receipt_proof`: `tlog-proof@v1` receipts and Merkle proof verification.
//!
//! The first byte chooses what the rest is:
//!
//! - even: a receipt's text, parsed and verified against the fixed fuzz
//!   key (with its extra data as the entry, and with the input as the
//!   entry); a receipt that parses prints to a text that parses the same;
//! - odd: [`arbitrary`] values for proof verification — sizes, indices,
//!   hashes and proofs of any length, including size 0, index ≥ size and
//!   sizes near `u64::MAX` — plus a real tree of up to 64 leaves whose
//!   proofs, asked for any index and sizes, either fail cleanly or verify.

use arbitrary::{Arbitrary, Unstructured};
use sealog_format::Hash;
use sealog_format::merkle;
use sealog_format::receipt::Receipt;

/// The target body.
pub fn run(data: &[u8]) {
    if data.len() > crate::MAX_INPUT {
        return;
    }
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        receipt(rest);
    } else {
        let _ = proofs(&mut Unstructured::new(rest));
    }
}

fn receipt(data: &[u8]) {
    let Ok(parsed) = Receipt::from_bytes(data) else {
        return;
    };
    let again = Receipt::parse(&parsed.to_text());
    assert_eq!(
        again.ok().as_ref(),
        Some(&parsed),
        "a receipt changes when printed"
    );
    let verifier = crate::fuzz_key().verifier();
    if let Ok((checkpoint, entry)) = parsed.verify_extra_as_entry(&verifier) {
        assert!(
            parsed.index < checkpoint.size,
            "a receipt verifies outside its tree"
        );
        assert_eq!(Some(entry), parsed.extra);
    }
    let _ = parsed.verify_entry(data, &verifier);
}

/// A size or index: mostly small, sometimes at the edges.
fn number(u: &mut Unstructured<'_>) -> arbitrary::Result<u64> {
    Ok(match u8::arbitrary(u)? % 4 {
        0 => u64::from(u8::arbitrary(u)?),
        1 => u64::MAX - u64::from(u8::arbitrary(u)?),
        2 => 1u64 << (u8::arbitrary(u)? % 64),
        _ => u64::arbitrary(u)?,
    })
}

fn hashes(u: &mut Unstructured<'_>, max: usize) -> arbitrary::Result<Vec<Hash>> {
    let n = usize::from(u8::arbitrary(u)?) % (max + 1);
    (0..n).map(|_| <Hash>::arbitrary(u)).collect()
}

fn proofs(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    // Arbitrary claims.
    let (index, size, old, new) = (number(u)?, number(u)?, number(u)?, number(u)?);
    let leaf = <Hash>::arbitrary(u)?;
    let root = <Hash>::arbitrary(u)?;
    let other = <Hash>::arbitrary(u)?;
    let proof = hashes(u, 70)?;
    let _ = merkle::root_from_inclusion_proof(&leaf, index, size, &proof);
    let _ = merkle::verify_inclusion(&leaf, index, size, &proof, &root);
    let _ = merkle::verify_consistency(old, new, &root, &other, &proof);

    // A real tree: proofs computed for any index and sizes either fail or
    // verify, and never verify for the wrong leaf.
    let n = usize::from(u8::arbitrary(u)?) % 65;
    let leaves: Vec<Hash> = (0..n as u64)
        .map(|i| merkle::leaf_hash(&i.to_le_bytes()))
        .collect();
    // A tree of `size` leaves needs all of them (a proof alone may not:
    // the proof of the last leaf of 3 never reads that leaf).
    let size = u64::from(u8::arbitrary(u)?) % (n as u64 + 1);
    let index = u64::from(u8::arbitrary(u)?) % 70;
    let old = u64::from(u8::arbitrary(u)?) % 70;
    if let Ok(p) = merkle::inclusion_proof(leaves.as_slice(), index, size) {
        let sized = leaves.get(..size as usize).unwrap_or_default();
        let root = merkle::root(sized);
        let leaf = leaves.get(index as usize).copied().unwrap_or_default();
        assert!(
            merkle::verify_inclusion(&leaf, index, size, &p, &root).is_ok(),
            "an inclusion proof of {index} in {size} does not verify"
        );
        let wrong = merkle::leaf_hash(b"not a leaf of this tree");
        assert!(merkle::verify_inclusion(&wrong, index, size, &p, &root).is_err());
    }
    if let Ok(p) = merkle::consistency_proof(leaves.as_slice(), old, size) {
        let old_root = merkle::root(leaves.get(..old as usize).unwrap_or_default());
        let new_root = merkle::root(leaves.get(..size as usize).unwrap_or_default());
        assert!(
            merkle::verify_consistency(old, size, &old_root, &new_root, &p).is_ok(),
            "a consistency proof from {old} to {size} does not verify"
        );
    }
    let mut frontier = merkle::Frontier::new();
    for leaf in &leaves {
        if frontier.push(*leaf).is_err() {
            panic!("a small frontier overflowed");
        }
    }
    assert_eq!(
        frontier.root(),
        merkle::root(&leaves),
        "frontier and root differ"
    );
    let subtrees = hashes(u, 70)?;
    let _ = merkle::Frontier::from_parts(number(u)?, subtrees).map(|f| f.root());
    Ok(())
}
