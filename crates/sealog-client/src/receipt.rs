//! [`Receipt`]: what the server returns for each durable event.

use sealog_format::{Hash, Timestamp};
use serde::{Deserialize, Deserializer};

/// The server's acknowledgement of one event: its place in the log and the
/// hashes that commit to it (`docs/api.md`, "Receipts").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The event's sequence number.
    pub seq: u64,
    /// When the server recorded it.
    pub recorded_at: Timestamp,
    /// `SHA-256(0x00 ‖ record bytes)`: the event's RFC 9162 Merkle leaf.
    #[serde(deserialize_with = "hex_hash")]
    pub leaf_hash: Hash,
    /// The BLAKE3 chain value after the event.
    #[serde(deserialize_with = "hex_hash")]
    pub chain_hash: Hash,
}

fn hex_hash<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Hash, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text.as_bytes(), &mut hash)
        .map_err(|e| serde::de::Error::custom(format!("not a 64-digit hex hash: {e}")))?;
    Ok(hash)
}

/// The body of a `200` answer to `POST /v1/events`.
#[derive(Debug, Deserialize)]
pub(crate) struct IngestAnswer {
    pub count: usize,
    pub receipts: Vec<Receipt>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_parses_the_servers_json() {
        let json = br#"{"count": 1, "receipts": [{"seq": 7, "recorded_at": "2026-12-02T05:57:13.576631343Z",
            "leaf_hash": "34f70000000000000000000000000000000000000000000000000000000001ff",
            "chain_hash": "6eed000000000000000000000000000000000000000000000000000000004465"}]}"#;
        let answer: IngestAnswer = serde_json::from_slice(json).expect("parses");
        assert_eq!(answer.count, 1);
        let r = answer.receipts.first().expect("one receipt");
        assert_eq!(r.seq, 7);
        assert_eq!(r.leaf_hash[0], 0x34);
        assert_eq!(r.leaf_hash[31], 0xff);
        assert_eq!(r.recorded_at.to_rfc3339(), "2026-12-02T05:57:13.576631343Z");
    }

    #[test]
    fn receipt_with_a_short_hash_is_refused() {
        let json = br#"{"seq": 7, "recorded_at": "2026-12-02T05:57:13Z", "leaf_hash": "34f7", "chain_hash": "6eed"}"#;
        let err = serde_json::from_slice::<Receipt>(json).expect_err("refused");
        assert!(err.to_string().contains("hex hash"), "{err}");
    }
}
