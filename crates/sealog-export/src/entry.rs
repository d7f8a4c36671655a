//! A record together with its Merkle leaf hash: what every export format
//! and the forwarder carry, so a line or row can be tied to a receipt.

use sealog::format::merkle::{Hash, leaf_hash};
use sealog::format::record;
use sealog::{Record, Store};

use crate::error::ExportError;

/// A stored record and the leaf hash of its exact bytes,
/// `SHA-256(0x00 ‖ record bytes)` (RFC 9162).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The record.
    pub record: Record,
    /// Its Merkle leaf hash.
    pub leaf: Hash,
}

impl Entry {
    /// An entry from the exact record bytes as stored.
    pub fn from_bytes(bytes: &[u8]) -> Result<Entry, sealog::format::record::RecordError> {
        let record = record::decode_record(bytes)?;
        Ok(Entry {
            record,
            leaf: leaf_hash(bytes),
        })
    }

    /// The leaf hash as lowercase hex.
    pub fn leaf_hex(&self) -> String {
        hex::encode(self.leaf)
    }
}

/// Reads record `seq` with its leaf hash. `Ok(None)` beyond the end of the
/// log; a record that cannot be read is an error naming the seq (the
/// engine's error names file and offset).
pub fn read_entry(store: &Store, seq: u64) -> Result<Option<Entry>, ExportError> {
    let Some(bytes) = store
        .get_raw(seq)
        .map_err(|source| ExportError::Read { seq, source })?
    else {
        return Ok(None);
    };
    match Entry::from_bytes(&bytes) {
        Ok(entry) => Ok(Some(entry)),
        // The frame checksum held but the record does not decode: `get`
        // names the file and offset of the damage.
        Err(_) => match store.get(seq) {
            Err(source) => Err(ExportError::Read { seq, source }),
            Ok(_) => Err(ExportError::Undecodable { seq }),
        },
    }
}

/// The leaf hash of record `seq`, read from the store (for exports that get
/// their records from a query).
pub fn leaf_of(store: &Store, seq: u64) -> Result<Hash, ExportError> {
    match store.get_raw(seq) {
        Ok(Some(bytes)) => Ok(leaf_hash(&bytes)),
        Ok(None) => Err(ExportError::Vanished { seq }),
        Err(source) => Err(ExportError::Read { seq, source }),
    }
}
