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

/// One group of a count: `{"key", "count"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupJson {
    /// The field's value.
    pub key: String,
    /// Matching events with that value.
    pub count: u64,
}

/// Matching events counted by group: `sealog query --count-by FIELD
/// --format json` and `GET /v1/events?count_by=FIELD`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountsJson {
    /// The field the events were grouped by (`actor`, `source-ip`, ...).
    pub count_by: String,
    /// The largest groups, most events first, ties by key.
    pub groups: Vec<GroupJson>,
    /// Every matching event.
    pub total: u64,
    /// Groups left out of `groups`.
    pub other_groups: u64,
    /// Matching events in those groups.
    pub other_count: u64,
    /// Matching events without the field.
    pub missing: u64,
}

impl From<&sealog::aggregate::CountBy> for CountsJson {
    fn from(c: &sealog::aggregate::CountBy) -> Self {
        CountsJson {
            count_by: c.field.as_str().to_owned(),
            groups: c
                .groups
                .iter()
                .map(|g| GroupJson {
                    key: g.key.clone(),
                    count: g.count,
                })
                .collect(),
            total: c.total,
            other_groups: c.other_groups,
            other_count: c.other_count,
            missing: c.missing,
        }
    }
}

/// Lowercase hex of `bytes`, appended to `out` (the `hex` crate's
/// char-by-char iterator showed up at 5% of ingest CPU).
pub fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
}

/// The body of `POST /v1/events` ([`IngestResponse`]), written directly:
/// one buffer, no intermediate strings, the recorded time formatted once
/// per distinct value (a batch usually shares one).
pub fn ingest_response_json(receipts: &[Receipt]) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(32 + receipts.len() * 200);
    let _ = write!(out, "{{\"count\":{},\"receipts\":[", receipts.len());
    let mut last_time: Option<(sealog::Timestamp, String)> = None;
    for (i, r) in receipts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let time = match &last_time {
            Some((t, text)) if *t == r.recorded_at => text.clone(),
            _ => {
                let text = r.recorded_at.to_rfc3339();
                last_time = Some((r.recorded_at, text.clone()));
                text
            }
        };
        let _ = write!(
            out,
            "{{\"seq\":{},\"recorded_at\":\"{time}\",\"leaf_hash\":\"",
            r.seq
        );
        push_hex(&mut out, &r.leaf_hash);
        out.extend_from_slice(b"\",\"chain_hash\":\"");
        push_hex(&mut out, &r.chain_hash);
        out.extend_from_slice(b"\"}");
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn the_hand_written_response_is_the_serde_one() {
        let receipts: Vec<Receipt> = (0..3)
            .map(|i| Receipt {
                seq: i,
                recorded_at: sealog::Timestamp::from_nanos(
                    1_700_000_000_000_000_000 + (i as i64 / 2),
                ),
                leaf_hash: [i as u8; 32],
                chain_hash: [0xa5; 32],
            })
            .collect();
        let expected = serde_json::to_value(IngestResponse {
            count: 3,
            receipts: receipts.iter().map(ReceiptJson::from).collect(),
        })
        .unwrap();
        let got: serde_json::Value =
            serde_json::from_slice(&ingest_response_json(&receipts)).unwrap();
        assert_eq!(got, expected);
    }
}
