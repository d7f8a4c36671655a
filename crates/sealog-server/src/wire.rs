//! JSON shapes shared by the server and the command line.
//!
//! Records are [`sealog::Record`]'s own serialization (the event as
//! ingested plus `seq` and `recorded_at`), exactly what `sealog query
//! --format json` prints and `sealog import` reads back. A receipt is what
//! `sealog append` prints.

use sealog::{Receipt, Record};
use serde::{Deserialize, Serialize};

/// A receipt as printed by `sealog append` and returned by `POST
/// /v1/events`: `{"seq", "recorded_at", "leaf_hash", "chain_hash"}`, hashes
/// in lowercase hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptJson {
    /// The event's sequence number.
    pub seq: u64,
    /// When the store recorded it (RFC 3339, UTC).
    pub recorded_at: String,
    /// Its RFC 9162 leaf hash.
    pub leaf_hash: String,
    /// The BLAKE3 chain value after it.
    pub chain_hash: String,
}

impl From<&Receipt> for ReceiptJson {
    fn from(r: &Receipt) -> Self {
        ReceiptJson {
            seq: r.seq,
            recorded_at: r.recorded_at.to_rfc3339(),
            leaf_hash: hex::encode(r.leaf_hash),
            chain_hash: hex::encode(r.chain_hash),
        }
    }
}

/// The response of `POST /v1/events`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestResponse {
    /// Number of events written.
    pub count: usize,
    /// One receipt per event, in the order of the batch.
    pub receipts: Vec<ReceiptJson>,
}

/// One page of records: `sealog query --format json` and `GET
/// /v1/events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PageJson {
    /// The records, in the query's order.
    pub records: Vec<Record>,
    /// The cursor of the next page, `null` at the end.
    pub next_cursor: Option<String>,
}

/// Borrowed form of [`PageJson`] for serializing without copying.
#[derive(Serialize)]
pub struct PageRef<'a> {
    /// The records.
    pub records: &'a [Record],
    /// The cursor.
    pub next_cursor: Option<&'a str>,
}
