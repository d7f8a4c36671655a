//! The engine's error type.
//!
//! Corruption (bytes on disk that are not what sealog wrote) is kept apart
//! from I/O failures and always says where: which file, which byte offset,
//! which record. A failed write or sync latches the store into refusing
//! writes ([`Error::WritesRefused`]) until it is reopened, because retrying
//! a failed `fsync` can silently lose data.

use std::fmt;
use std::io;
use std::path::PathBuf;

use sealog_format::Hash;
use sealog_format::frame::FrameError;
use sealog_format::record::RecordError;
use sealog_format::segment::StructureError;
use sealog_format::validate::ValidationError;

/// The result type of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed.
    #[error("{op} `{}` failed: {source}", path.display())]
    Io {
        /// What the engine was doing ("write", "fdatasync", "open", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The space of a new segment file could not be reserved: the disk is
    /// full, or too small for a segment of this size. The partly made file
    /// was removed, so it does not keep the space it got.
    #[error(
        "cannot reserve {} for the new segment file `{}`: {op} failed: {source}; the partly \
         made file was removed. Free space on that disk, or use a smaller segment size (a \
         writer needs room for two segments: the one being written and the next, prepared \
         ahead)",
        human_size(*size),
        path.display()
    )]
    SegmentSpace {
        /// How the space was being reserved (`fallocate`, or `write` of
        /// zeros).
        op: &'static str,
        /// The file being made (a `.tmp` name: it never became a segment).
        path: PathBuf,
        /// The segment size asked for, in bytes.
        size: u64,
        /// The operating system's error (`ENOSPC` for a full disk).
        #[source]
        source: io::Error,
    },
    /// Bytes on disk are not what sealog wrote.
    #[error(transparent)]
    Corruption(#[from] Box<Corruption>),
    /// An event broke a validation rule.
    #[error(transparent)]
    InvalidEvent(ValidationError),
    /// Events of a batch broke validation rules; nothing of the batch was
    /// written.
    #[error("{}", describe_batch(.0))]
    InvalidBatch(Vec<BatchError>),
    /// A batch is larger than a segment can hold.
    #[error("a batch of {bytes} encoded bytes exceeds the limit of {max} bytes; split it")]
    BatchTooLarge {
        /// Encoded size of the batch.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// An earlier write or sync failed; the store refuses writes until it is
    /// reopened. Events acknowledged before the failure are safe.
    #[error(
        "the store refuses writes since an earlier failure ({cause}); events acknowledged \
         before it are safe; fix the cause and reopen the store"
    )]
    WritesRefused {
        /// The original failure.
        cause: String,
        /// Its kind (e.g. `StorageFull` for a full disk).
        kind: io::ErrorKind,
    },
    /// Writing or syncing this append's own batch failed (or the store
    /// latched while the batch waited to be committed). The batch was **not
    /// acknowledged**, and whether any of it is in the log is only known
    /// after the store is reopened: recovery keeps it if it reached the disk
    /// whole, and removes it otherwise (batches stay atomic). The store now
    /// refuses writes, as for [`Error::WritesRefused`].
    #[error(
        "this batch was not acknowledged: {cause}. It may or may not be in the log once the \
         store is reopened (all of it or none); events acknowledged before are safe; fix the \
         cause and reopen the store"
    )]
    Unacknowledged {
        /// The failure.
        cause: String,
        /// Its kind (e.g. `StorageFull` for a full disk).
        kind: io::ErrorKind,
    },
    /// A read needs records of a segment that was archived and removed
    /// from the store (`pruned.log`), and its archived copy cannot be had:
    /// no archive was given, the archive cannot be reached, or the copy
    /// fetched is not the one recorded. Nothing was returned for the
    /// records the read needed: an answer is never silently shorter.
    #[error(
        "seqs {first_seq} to {} are in segment `{segment}`, archived to {url} and removed \
         from this store, and cannot be read: {reason}",
        end_seq.saturating_sub(1)
    )]
    Archived {
        /// The segment's name in the store (`segments/<first seq>.seg`).
        segment: Box<str>,
        /// Its first seq.
        first_seq: u64,
        /// One past its last seq.
        end_seq: u64,
        /// The archive it was pruned to.
        url: Box<str>,
        /// Why it cannot be read.
        reason: Box<str>,
    },
    /// The store was opened read-only.
    #[error("the store is open read-only")]
    ReadOnly,
    /// Another process has the store open.
    #[error(
        "the store at `{}` is in use by another process (lock held on its LOCK file)",
        path.display()
    )]
    Locked {
        /// The store directory.
        path: PathBuf,
    },
    /// The store has been closed.
    #[error("the store is closed")]
    Closed,
    /// An option is out of range.
    #[error("invalid option: {0}")]
    Config(String),
    /// A Merkle proof was asked for sizes or indices it cannot cover, or a
    /// tree node could not be found.
    #[error("proof: {0}")]
    Proof(#[from] sealog_format::merkle::ProofError),
    /// A segment's index sidecar is damaged; it is rebuilt from the records.
    #[error("the index file `{file}` is damaged ({reason}); it will be rebuilt from the records")]
    IndexDamaged {
        /// The sidecar.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A query is malformed or inconsistent.
    #[error("invalid query: `{field}`: {reason}")]
    InvalidQuery {
        /// The offending query field (`limit`, `cursor`, `source_ip`, ...).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The I/O error kind behind this error, if it is (or was latched by) an
    /// I/O failure: lets a caller tell a full disk (`StorageFull`) from other
    /// trouble.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } | Error::SegmentSpace { source, .. } => Some(source.kind()),
            Error::WritesRefused { kind, .. } | Error::Unacknowledged { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Whether the store refuses writes until it is reopened (after a failed
    /// write or sync): [`Error::WritesRefused`] or [`Error::Unacknowledged`].
    pub fn is_write_refusal(&self) -> bool {
        matches!(
            self,
            Error::WritesRefused { .. } | Error::Unacknowledged { .. }
        )
    }

    /// The corruption report, if this is one.
    pub fn corruption(&self) -> Option<&Corruption> {
        match self {
            Error::Corruption(c) => Some(c),
            _ => None,
        }
    }
}

/// `67108864` as `67108864 bytes (64 MiB)`: the exact figure, and one a
/// person reads at a glance.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [(&str, u32); 3] = [("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (unit, shift) in UNITS {
        if bytes >= 1 << shift {
            let value = bytes as f64 / (1u64 << shift) as f64;
            let text = if bytes.is_multiple_of(1 << shift) {
                format!("{}", bytes >> shift)
            } else {
                format!("{value:.1}")
            };
            return format!("{bytes} bytes ({text} {unit})");
        }
    }
    format!("{bytes} bytes")
}

/// One invalid event of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchError {
    /// Position of the event in the batch, from 0.
    pub index: usize,
    /// What was wrong with it.
    pub error: ValidationError,
}

fn describe_batch(errors: &[BatchError]) -> String {
    let mut out = format!(
        "{} invalid event(s) in the batch; nothing was written:",
        errors.len()
    );
    for e in errors.iter().take(10) {
        out.push_str(&format!(" [event {}] {};", e.index, e.error));
    }
    if errors.len() > 10 {
        out.push_str(&format!(" and {} more", errors.len() - 10));
    }
    out
}

/// Where a problem was found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    /// The file, relative to the store directory (`segments/….seg`).
    pub file: String,
    /// Byte offset within the file.
    pub offset: Option<u64>,
    /// The record concerned.
    pub seq: Option<u64>,
}

impl Location {
    pub(crate) fn file(file: impl Into<String>) -> Location {
        Location {
            file: file.into(),
            ..Location::default()
        }
    }

    pub(crate) fn at(mut self, offset: u64) -> Location {
        self.offset = Some(offset);
        self
    }

    pub(crate) fn seq(mut self, seq: u64) -> Location {
        self.seq = Some(seq);
        self
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(offset) = self.offset {
            write!(f, " at byte {offset}")?;
        }
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq})")?;
        }
        Ok(())
    }
}

/// Bytes on disk that are not what sealog wrote, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("corruption in {location}: {kind}")]
pub struct Corruption {
    /// Where.
    pub location: Location,
    /// What.
    pub kind: CorruptionKind,
}

impl Corruption {
    pub(crate) fn new(location: Location, kind: CorruptionKind) -> Corruption {
        Corruption { location, kind }
    }
}

impl From<Corruption> for Error {
    fn from(c: Corruption) -> Error {
        Error::Corruption(Box::new(c))
    }
}

/// What kind of corruption was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptionKind {
    /// A frame is damaged (checksum, length, flags).
    #[error(transparent)]
    Frame(FrameError),
    /// A frame's checksum holds but its record is malformed.
    #[error("malformed record: {0}")]
    Record(RecordError),
    /// A header, footer or manifest is damaged.
    #[error(transparent)]
    Structure(StructureError),
    /// A record's seq is not the next one.
    #[error("expected seq {expected}, found {found}")]
    SeqMismatch {
        /// The seq that should be here.
        expected: u64,
        /// The seq found.
        found: u64,
    },
    /// Recorded times went backwards.
    #[error("recorded_at went backwards: {found} after {previous}")]
    RecordedAtDecreased {
        /// The previous record's recorded time (ns).
        previous: i64,
        /// This record's (ns).
        found: i64,
    },
    /// A hash stored in a footer or header differs from the recomputed one.
    #[error("{what} mismatch: stored {}, computed {}", hex(.stored), hex(.computed))]
    HashMismatch {
        /// Which hash ("Merkle root in footer", "chain head in footer",
        /// "chain value in header").
        what: &'static str,
        /// The stored value.
        stored: Hash,
        /// The recomputed value.
        computed: Hash,
    },
    /// A footer or header field disagrees with what the records say.
    #[error("{field} is {stored} but the records give {computed}")]
    FieldMismatch {
        /// Which field.
        field: &'static str,
        /// Stored value.
        stored: String,
        /// Value computed from the records.
        computed: String,
    },
    /// The file belongs to another store.
    #[error("belongs to another store (store id {found}, expected {expected})")]
    ForeignFile {
        /// The store id found.
        found: String,
        /// This store's id.
        expected: String,
    },
    /// Segments are missing from the sequence: the location names the
    /// first missing file.
    #[error(
        "{} holding seqs {expected_first_seq} to {} {} missing (the next segment present, \
         number {next_segment_no}, starts at seq {next_first_seq})",
        missing_segments(*.expected_segment_no, *.next_segment_no),
        .next_first_seq.saturating_sub(1),
        if .next_segment_no.saturating_sub(*.expected_segment_no) > 1 { "are" } else { "is" }
    )]
    MissingSegment {
        /// The segment number that should come next.
        expected_segment_no: u64,
        /// Its first seq.
        expected_first_seq: u64,
        /// The number of the next segment present: segments
        /// `expected_segment_no..next_segment_no` are missing.
        next_segment_no: u64,
        /// Its first seq: the records `expected_first_seq..next_first_seq`
        /// are missing.
        next_first_seq: u64,
    },
    /// The leaf file holds the leaf hashes of more sealed records than the
    /// segments hold: segment files were removed or cut at the end of the
    /// log (leaves are written and synced before a segment's footer).
    #[error(
        "tree/leaves holds the leaf hashes of {sealed} sealed records but the segments hold only \
         {have}: records {have} to {} are missing (segment files removed or cut)",
        .sealed.saturating_sub(1)
    )]
    RecordsMissing {
        /// Records the segments hold (sealed, and in the segment being
        /// sealed).
        have: u64,
        /// Sealed records the leaf file covers.
        sealed: u64,
    },
    /// The leaf file covers fewer records than the sealed segments hold.
    #[error(
        "holds the leaf hashes of {have} records but the sealed segments hold {sealed}: the leaf \
         file was cut or damaged, so proofs over the sealed records cannot be given"
    )]
    LeavesShort {
        /// Leaf hashes in the file.
        have: u64,
        /// Records in sealed segments.
        sealed: u64,
    },
    /// The privacy-policy note names another record as the newest
    /// privacy policy below the seq it covers than the records do, or
    /// covers more records than the log holds. Derived data: removing the
    /// file makes readers search every segment, and the writer writes it
    /// again at its next seal.
    #[error(
        "names {} as the newest privacy-policy record below seq {covered}, but the records \
         (the log holds {records}) give {} (derived data: remove the file; the writer writes it \
         again when it next seals a segment)",
        policy_seq(*.stored),
        if *.covered > *.records { "no answer: it covers more records than the log holds".to_owned() } else { policy_seq(*.computed) }
    )]
    PolicyNote {
        /// The seq below which the note says it searched.
        covered: u64,
        /// Records in the log.
        records: u64,
        /// The newest policy record the note names.
        stored: Option<u64>,
        /// The newest the records give.
        computed: Option<u64>,
    },
    /// A segment without a footer is followed by sealed segments.
    #[error("has no valid footer but later segments are sealed (truncated or damaged)")]
    UnsealedInMiddle,
    /// A frame length of zero followed by data: records were zeroed.
    #[error("zero frame length followed by {nonzero} non-zero bytes in the same sector")]
    ZeroedFrame {
        /// Non-zero bytes after the zero length.
        nonzero: u64,
    },
    /// Bytes after the footer position, or a file name that does not match.
    #[error("{0}")]
    Layout(String),
    /// The store manifest is missing while segments exist.
    #[error("the store manifest is missing but segments exist")]
    MissingManifest,
    /// A derived hash file disagrees with records that match their footer:
    /// the derived file is damaged, not the records.
    #[error("stored leaf hash {index} differs from the recomputed one")]
    LeafMismatch {
        /// The leaf index (= seq).
        index: u64,
    },
    /// A stored subtree hash (`tree/level-k`) differs from the recomputed
    /// one.
    #[error("stored subtree hash {index} of level {level} differs from the recomputed one")]
    LevelMismatch {
        /// The level (height 8 × level).
        level: u64,
        /// The entry.
        index: u64,
    },
    /// A checkpoint is malformed, or its signature does not verify.
    #[error("checkpoint rejected: {0}")]
    Checkpoint(String),
    /// The log does not match a signed checkpoint.
    #[error(
        "the log does not match the signed checkpoint of {size} records: a record at seq {} \
         or later (before {}) was altered, removed or reordered after the checkpoint was \
         signed",
        first_divergent.0,
        first_divergent.1
    )]
    CheckpointMismatch {
        /// The checkpoint's size.
        size: u64,
        /// The divergence lies in `[first_divergent.0, first_divergent.1)`:
        /// the log matches the checkpoint just before.
        first_divergent: (u64, u64),
    },
    /// The log is shorter than a signed checkpoint.
    #[error(
        "the log holds {have} records but a signed checkpoint covers {signed}: records \
         {have}..{signed} are missing (the log was truncated)"
    )]
    Truncated {
        /// Records present.
        have: u64,
        /// Records the checkpoint covers.
        signed: u64,
    },
    /// A sealed segment's index sidecar is not the index its records give
    /// (the records themselves verified). Queries would trust it, so it is
    /// reported; it is derived data, rebuilt from the records when it is
    /// removed.
    #[error(
        "the index of {segment} {problem}. The records are intact: remove the index file and \
         the next query rebuilds it from them"
    )]
    Sidecar {
        /// The segment the sidecar indexes.
        segment: String,
        /// Where and how it differs.
        problem: String,
    },
    /// The key filters (`key-filters`) disagree with the records (which
    /// verified) or do not read whole. Searches check what they read and
    /// fall back to the indexes, so no answer depends on it; it is derived
    /// data, which the writer writes again.
    #[error(
        "{problem}. The records are intact: remove the file and the next writable open writes \
         it again from the indexes"
    )]
    KeyFilters {
        /// Where and how it differs.
        problem: String,
    },
    /// A compressed sealed segment does not decode: its container (head,
    /// block table, dictionary) is damaged, or a block's stored bytes fail
    /// their checksum or decompress to the wrong length. The records in the
    /// blocks named cannot be read from this copy.
    #[error(
        "the compressed segment does not decode: {problem}. Its records cannot be read from \
         this file: restore the segment from an archived copy"
    )]
    Compressed {
        /// Which part, and how.
        problem: String,
    },
    /// A record's bytes changed after its segment was sealed: its hash no
    /// longer matches the leaf hash stored at seal time, and the segment's
    /// footer no longer matches its records.
    #[error(
        "the record was altered after sealing: its leaf hash is {}, the leaf stored at seal \
         time is {}",
        hex(.computed),
        hex(.stored)
    )]
    RecordChanged {
        /// The leaf hash stored when the segment was sealed.
        stored: Hash,
        /// The leaf hash of the record as it is now.
        computed: Hash,
    },
    /// One or more of `count` records from seq `first` changed after their
    /// segment was sealed: their level-1 hash (the root of their 256 leaf
    /// hashes) no longer matches the one stored at seal time. Said of a
    /// segment stored compressed, whose leaf hashes there are not stored
    /// (they would name the record).
    #[error(
        "a record among seqs {first} to {} was altered after sealing: the root of their leaf \
         hashes is {}, the one stored at seal time (tree/level-1) is {} (the segment is stored \
         compressed, so the leaf hashes that would name the record are not stored)",
        .first.saturating_add(.count.saturating_sub(1)),
        hex(.computed),
        hex(.stored)
    )]
    RecordsChanged {
        /// The first seq of the records.
        first: u64,
        /// How many (256: a level-1 block).
        count: u64,
        /// Their level-1 hash stored when the segment was sealed.
        stored: Hash,
        /// Their level-1 hash as the records give it now.
        computed: Hash,
    },
}

/// "segment 3" or "segments 3 to 5", for `[first, next)`.
fn missing_segments(first: u64, next: u64) -> String {
    if next > first + 1 {
        format!("segments {first} to {}", next - 1)
    } else {
        format!("segment {first}")
    }
}

/// "seq N", or "none", for messages about the privacy-policy note.
fn policy_seq(seq: Option<u64>) -> String {
    seq.map_or_else(|| "none".to_owned(), |s| format!("seq {s}"))
}

/// Lowercase hex of a hash, for messages.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
