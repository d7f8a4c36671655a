//! Object names of an archive, relative to its prefix.
//!
//! ```text
//! segments/<first seq>.seg           a sealed segment, byte for byte
//! segments/<first seq>.idx           its index sidecar
//! tree/leaves/<first seq>            the leaf hashes of that segment's records
//! tree/level-<k>/<first index>       the level-k tree entries it completes (k = 1…7)
//! checkpoints/<tree size>            a signed checkpoint (C2SP note text)
//! parquet/date=<YYYY-MM-DD>/<first seq>.parquet
//!                                    with Parquet on: the segment's records
//!                                    of that event date, as Parquet rows
//! manifests/<round>.json             one manifest per upload round
//! ```
//!
//! Every number is 20 zero-padded decimal digits, so lexical order is log
//! order, and every name is determined by what it holds (a segment by its
//! first seq, a tree piece by its first entry, a checkpoint by its size, a
//! manifest by its round): a name is never used for two different contents
//! of an intact log, which is what lets an upload be write-once and
//! resumable.

/// Prefix of manifests.
pub const MANIFESTS: &str = "manifests/";
/// Prefix of segments and sidecars.
pub const SEGMENTS: &str = "segments/";
/// Prefix of checkpoints.
pub const CHECKPOINTS: &str = "checkpoints/";
/// Prefix of tree pieces.
pub const TREE: &str = "tree/";
/// Prefix of the Parquet copies of segments (Hive-style date partitions).
pub const PARQUET: &str = "parquet/";

/// Stored tree levels (level 0 is the leaves).
pub const LEVELS: usize = sealog::image::TREE_LEVELS;

/// The manifest of upload round `round` (1, 2, …).
pub fn manifest(round: u64) -> String {
    format!("{MANIFESTS}{round:020}.json")
}

/// The segment whose first record is `first_seq`.
pub fn segment(first_seq: u64) -> String {
    format!("{SEGMENTS}{first_seq:020}.seg")
}

/// The index sidecar of that segment.
pub fn sidecar(first_seq: u64) -> String {
    format!("{SEGMENTS}{first_seq:020}.idx")
}

/// The directory, inside `tree/`, of level `k`.
pub fn level_dir(k: usize) -> String {
    sealog::image::tree_level_file_name(k)
}

/// A piece of tree level `k` starting at entry `first`.
pub fn tree_piece(k: usize, first: u64) -> String {
    format!("{TREE}{}/{first:020}", level_dir(k))
}

/// The checkpoint of `size` records.
pub fn checkpoint(size: u64) -> String {
    format!("{CHECKPOINTS}{size:020}")
}

/// The Parquet rows of the segment starting at `first_seq` whose event
/// date (UTC) is `date` (`YYYY-MM-DD`).
pub fn parquet(date: &str, first_seq: u64) -> String {
    format!("{PARQUET}date={date}/{first_seq:020}.parquet")
}

/// What an object name denotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// `manifests/<round>.json`
    Manifest(u64),
    /// `segments/<seq>.seg`
    Segment(u64),
    /// `segments/<seq>.idx`
    Sidecar(u64),
    /// `tree/<level>/<first>`
    TreePiece(usize, u64),
    /// `checkpoints/<size>`
    Checkpoint(u64),
    /// `parquet/date=<YYYY-MM-DD>/<seq>.parquet`: the segment's first seq
    /// and the date as the number YYYYMMDD.
    Parquet(u64, u32),
}

fn number(digits: &str) -> Option<u64> {
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `YYYY-MM-DD` as the number YYYYMMDD (a plausible calendar date only).
fn date_number(text: &str) -> Option<u32> {
    let b = text.as_bytes();
    if b.len() != 10 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (y, m, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(y * 10_000 + m * 100 + d)
}

/// The `YYYY-MM-DD` of a date number from [`ObjectKind::Parquet`].
pub fn date_text(date: u32) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date / 10_000,
        date / 100 % 100,
        date % 100
    )
}

/// Parses an object name relative to the archive's prefix.
pub fn parse(name: &str) -> Option<ObjectKind> {
    if let Some(rest) = name.strip_prefix(MANIFESTS) {
        return number(rest.strip_suffix(".json")?).map(ObjectKind::Manifest);
    }
    if let Some(rest) = name.strip_prefix(SEGMENTS) {
        if let Some(d) = rest.strip_suffix(".seg") {
            return number(d).map(ObjectKind::Segment);
        }
        return number(rest.strip_suffix(".idx")?).map(ObjectKind::Sidecar);
    }
    if let Some(rest) = name.strip_prefix(CHECKPOINTS) {
        return number(rest).map(ObjectKind::Checkpoint);
    }
    if let Some(rest) = name.strip_prefix(PARQUET) {
        let (partition, file) = rest.split_once('/')?;
        let date = date_number(partition.strip_prefix("date=")?)?;
        return number(file.strip_suffix(".parquet")?).map(|s| ObjectKind::Parquet(s, date));
    }
    let rest = name.strip_prefix(TREE)?;
    let (dir, first) = rest.split_once('/')?;
    let k = (0..LEVELS).find(|&k| level_dir(k) == dir)?;
    number(first).map(|f| ObjectKind::TreePiece(k, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_in_log_order_and_parse_back() {
        assert!(segment(9) < segment(10));
        assert!(sidecar(9) < segment(10));
        assert!(manifest(9) < manifest(10));
        assert_eq!(
            segment(35812),
            "segments/00000000000000035812.seg".to_owned()
        );
        assert_eq!(tree_piece(0, 7), "tree/leaves/00000000000000000007");
        assert_eq!(tree_piece(2, 1), "tree/level-2/00000000000000000001");
        for (name, kind) in [
            (manifest(3), ObjectKind::Manifest(3)),
            (segment(5), ObjectKind::Segment(5)),
            (sidecar(5), ObjectKind::Sidecar(5)),
            (tree_piece(0, 5), ObjectKind::TreePiece(0, 5)),
            (tree_piece(7, 1), ObjectKind::TreePiece(7, 1)),
            (checkpoint(12), ObjectKind::Checkpoint(12)),
            (parquet("2026-01-31", 5), ObjectKind::Parquet(5, 20_260_131)),
        ] {
            assert_eq!(parse(&name), Some(kind), "{name}");
        }
        for bad in [
            "manifests/1.json",
            "segments/0000000000000000000x.seg",
            "tree/level-9/00000000000000000000",
            "notes.txt",
            "segments/00000000000000000000.seg.tmp",
            "parquet/date=2026-13-01/00000000000000000000.parquet",
            "parquet/date=2026-1-01/00000000000000000000.parquet",
            "parquet/2026-01-01/00000000000000000000.parquet",
            "parquet/date=2026-01-01/0.parquet",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(date_text(20_260_131), "2026-01-31");
        assert_eq!(
            parquet("2026-01-31", 5),
            "parquet/date=2026-01-31/00000000000000000005.parquet"
        );
    }
}
