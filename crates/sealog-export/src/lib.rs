//! sealog's data in the formats other tools read, and a forwarder that
//! sends it to them without loss.
//!
//! - [`parquet`]: one row per event, every field typed, for SQL engines
//!   (DuckDB, DataFusion, Trino, Spark, Athena); Hive-style date
//!   partitions when writing a directory. Schema: docs/format.md.
//! - [`ocsf`], [`cef`], [`syslog`]: one line per event for SIEMs (OCSF 1.1
//!   JSON, ArcSight CEF, RFC 5424). Mappings: docs/siem.md.
//! - [`forward`]: follows a store and sends its records to a syslog
//!   receiver (TCP or TLS, RFC 5425 framing) or an HTTP collector (NDJSON
//!   POSTs), with a durable cursor advanced only after the receiver
//!   acknowledged.
//!
//! Every row and line carries the record's seq and its Merkle leaf hash, so
//! it can be tied to a receipt (`sealog proof --seq`).

pub mod cef;
pub mod entry;
pub mod error;
pub mod forward;
pub mod ocsf;
pub mod parquet;
pub mod syslog;

pub use entry::{Entry, leaf_of, read_entry};
pub use error::ExportError;

/// The JSON of a record as `sealog export` writes it: the event with its
/// event time in `time`, plus `seq` and `recorded_at`.
pub fn record_json(record: &sealog::Record) -> String {
    serde_json::to_string(&record.clone().with_event_time()).unwrap_or_else(|_| "{}".into())
}
