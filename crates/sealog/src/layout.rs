//! Names of the files in a store directory.
//!
//! ```text
//! STORE                         manifest: store id, creation time
//! LOCK                          held (flock) by the process that has the store open
//! segments/<first seq>.seg      segments, 20-digit zero-padded first seq:
//!                               lexical order is log order
//! segments/spare-<ns>-<n>       a zero-filled file waiting to become the next segment
//!                               (made as `….tmp`; named by time and a counter)
//! segments/<first seq>.oidx     a snapshot of an open segment's index (derived,
//!                               unsynced; see `crate::open_index`)
//! tree/leaves                   the Merkle leaf hash of every record in sealed segments
//! tree/level-1 … level-7        hashes of complete subtrees of height 8, 16, … 56
//! checkpoints.log               every signed checkpoint issued, oldest first
//! privacy-policy.note           where the sealed log's newest privacy-policy
//!                               record is (derived; see `crate::policy_note`)
//! key-filters                   a Bloom filter of each sealed segment's exact-match
//!                               keys (derived; see `crate::key_filter`)
//! lost+found/                   bytes recovery removed from a torn tail, kept for forensics
//! ```

pub(crate) const MANIFEST: &str = "STORE";
pub(crate) const LOCK: &str = "LOCK";
pub(crate) const SEGMENTS: &str = "segments";
pub(crate) const SPARE: &str = "spare";
pub(crate) const TREE: &str = "tree";
pub(crate) const LEAVES: &str = "leaves";
pub(crate) const LOST_FOUND: &str = "lost+found";
pub(crate) const CHECKPOINTS: &str = "checkpoints.log";
pub(crate) const SEGMENT_EXT: &str = ".seg";

/// `segments/<20 digits>.seg`, relative to the store directory.
pub(crate) fn segment_name(first_seq: u64) -> String {
    format!("{SEGMENTS}/{first_seq:020}{SEGMENT_EXT}")
}

/// The first seq encoded in a segment file name, if it is one.
pub(crate) fn parse_segment_file(file_name: &str) -> Option<u64> {
    let digits = file_name.strip_suffix(SEGMENT_EXT)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_sort_in_log_order() {
        let a = segment_name(9);
        let b = segment_name(10);
        let c = segment_name(u64::MAX);
        assert!(a < b && b < c);
        assert_eq!(
            parse_segment_file(a.trim_start_matches("segments/")),
            Some(9)
        );
        assert_eq!(parse_segment_file("123.seg"), None);
        assert_eq!(parse_segment_file("0000000000000000000x.seg"), None);
    }
}
