//! Records as Parquet: one row per event, every field typed, for SQL
//! engines (DuckDB, DataFusion, Trino, Spark, Athena).
//!
//! The schema ([`schema`]) is part of the public format and is specified in
//! docs/format.md ("Parquet export"). A file is written by
//! [`ParquetWriter`] to any `Write` (standard output included: nothing is
//! sought back to); a directory is written by [`PartitionedWriter`] with
//! Hive-style date partitions, `date=YYYY-MM-DD/part-<first seq>.parquet`,
//! by the event's UTC date. Partition files are written under a temporary
//! name, synced, renamed into place and their directory synced, and an
//! existing file is never replaced.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::builder::{
    FixedSizeBinaryBuilder, StringBuilder, StringDictionaryBuilder, TimestampNanosecondBuilder,
    UInt64Builder,
};
use arrow_array::types::Int8Type;
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::entry::Entry;
use crate::error::ExportError;

/// The version of the Parquet schema, stored in each file's key-value
/// metadata as `sealog.parquet_schema`.
pub const SCHEMA_VERSION: &str = "1";

/// Rows per row group by default: about 40 MB of ~300-byte events before
/// compression, large enough for good compression and column statistics,
/// small enough to keep the writer's memory bounded.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 128 * 1024;

/// Rows buffered in Arrow arrays before they are handed to the encoder.
const BATCH_ROWS: usize = 8 * 1024;

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// The Arrow schema of an exported file (docs/format.md).
pub fn schema() -> SchemaRef {
    let utf8 = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        Field::new("seq", DataType::UInt64, false),
        Field::new("recorded_at", timestamp_type(), false),
        Field::new("time", timestamp_type(), false),
        utf8("actor_type", false),
        utf8("actor_id", false),
        utf8("actor_on_behalf_of_type", true),
        utf8("actor_on_behalf_of_id", true),
        utf8("actor_session_id", true),
        utf8("action", false),
        utf8("resource_type", false),
        utf8("resource_id", true),
        Field::new(
            "outcome",
            DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8)),
            false,
        ),
        utf8("tenant", true),
        utf8("source_ip", true),
        utf8("source_user_agent", true),
        utf8("request_id", true),
        utf8("reason", true),
        utf8("metadata", true),
        Field::new("leaf_hash", DataType::FixedSizeBinary(32), false),
    ]))
}

/// How files are written.
#[derive(Clone, Debug)]
pub struct ParquetOptions {
    /// Rows per row group.
    pub row_group_rows: usize,
    /// The store's id (hex), written to each file's key-value metadata as
    /// `sealog.store_id`.
    pub store_id: Option<String>,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            row_group_rows: DEFAULT_ROW_GROUP_ROWS,
            store_id: None,
        }
    }
}

fn parquet_error(e: impl std::fmt::Display) -> ExportError {
    ExportError::Parquet(e.to_string())
}

/// The column builders of one batch.
struct Columns {
    seq: UInt64Builder,
    recorded_at: TimestampNanosecondBuilder,
    time: TimestampNanosecondBuilder,
    actor_type: StringBuilder,
    actor_id: StringBuilder,
    obo_type: StringBuilder,
    obo_id: StringBuilder,
    session: StringBuilder,
    action: StringBuilder,
    resource_type: StringBuilder,
    resource_id: StringBuilder,
    outcome: StringDictionaryBuilder<Int8Type>,
    tenant: StringBuilder,
    source_ip: StringBuilder,
    user_agent: StringBuilder,
    request_id: StringBuilder,
    reason: StringBuilder,
    metadata: StringBuilder,
    leaf: FixedSizeBinaryBuilder,
    rows: usize,
}

impl Columns {
    fn new() -> Columns {
        let ts = || TimestampNanosecondBuilder::with_capacity(BATCH_ROWS).with_timezone("UTC");
        let s = || StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 16);
        Columns {
            seq: UInt64Builder::with_capacity(BATCH_ROWS),
            recorded_at: ts(),
            time: ts(),
            actor_type: s(),
            actor_id: s(),
            obo_type: s(),
            obo_id: s(),
            session: s(),
            action: s(),
            resource_type: s(),
            resource_id: s(),
            outcome: StringDictionaryBuilder::new(),
            tenant: s(),
            source_ip: s(),
            user_agent: s(),
            request_id: s(),
            reason: s(),
            metadata: StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 128),
            leaf: FixedSizeBinaryBuilder::with_capacity(BATCH_ROWS, 32),
            rows: 0,
        }
    }

    fn push(&mut self, entry: &Entry) -> Result<(), ExportError> {
        let r = &entry.record;
        let e = &r.event;
        self.seq.append_value(r.seq);
        self.recorded_at.append_value(r.recorded_at.as_nanos());
        self.time.append_value(r.event_time().as_nanos());
        self.actor_type.append_value(&e.actor.kind);
        self.actor_id.append_value(&e.actor.id);
        let obo = e.actor.on_behalf_of.as_ref();
        self.obo_type.append_option(obo.map(|p| &p.kind));
        self.obo_id.append_option(obo.map(|p| &p.id));
        self.session.append_option(e.actor.session_id.as_ref());
        self.action.append_value(&e.action);
        self.resource_type.append_value(&e.resource.kind);
        self.resource_id.append_option(e.resource.id.as_ref());
        self.outcome
            .append(e.outcome.as_str())
            .map_err(parquet_error)?;
        self.tenant.append_option(e.tenant.as_ref());
        let source = e.source.as_ref();
        self.source_ip.append_option(
            source
                .and_then(|s| s.ip)
                .map(|ip| sealog::query::canonical(ip).to_string()),
        );
        self.user_agent
            .append_option(source.and_then(|s| s.user_agent.as_ref()));
        self.request_id.append_option(e.request_id.as_ref());
        self.reason.append_option(e.reason.as_ref());
        self.metadata.append_option(
            e.metadata
                .as_ref()
                .map(|m| serde_json::to_string(m).unwrap_or_else(|_| "{}".into())),
        );
        self.leaf.append_value(entry.leaf).map_err(parquet_error)?;
        self.rows += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<RecordBatch, ExportError> {
        self.rows = 0;
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(self.seq.finish()),
                Arc::new(self.recorded_at.finish()),
                Arc::new(self.time.finish()),
                Arc::new(self.actor_type.finish()),
                Arc::new(self.actor_id.finish()),
                Arc::new(self.obo_type.finish()),
                Arc::new(self.obo_id.finish()),
                Arc::new(self.session.finish()),
                Arc::new(self.action.finish()),
                Arc::new(self.resource_type.finish()),
                Arc::new(self.resource_id.finish()),
                Arc::new(self.outcome.finish()),
                Arc::new(self.tenant.finish()),
                Arc::new(self.source_ip.finish()),
                Arc::new(self.user_agent.finish()),
                Arc::new(self.request_id.finish()),
                Arc::new(self.reason.finish()),
                Arc::new(self.metadata.finish()),
                Arc::new(self.leaf.finish()),
            ],
        )
        .map_err(parquet_error)
    }
}

/// Writes one Parquet file of entries to `W`.
pub struct ParquetWriter<W: Write + Send> {
    writer: ArrowWriter<W>,
    columns: Columns,
    rows: u64,
}

impl<W: Write + Send> ParquetWriter<W> {
    /// A writer of one file into `out`.
    pub fn new(out: W, options: &ParquetOptions) -> Result<ParquetWriter<W>, ExportError> {
        let mut metadata = vec![KeyValue::new(
            "sealog.parquet_schema".into(),
            SCHEMA_VERSION.to_owned(),
        )];
        if let Some(id) = &options.store_id {
            metadata.push(KeyValue::new("sealog.store_id".into(), id.clone()));
        }
        let level = ZstdLevel::try_new(3).map_err(parquet_error)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(options.row_group_rows.max(1)))
            .set_created_by(format!("sealog {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(metadata))
            .build();
        let writer = ArrowWriter::try_new(out, schema(), Some(props)).map_err(parquet_error)?;
        Ok(ParquetWriter {
            writer,
            columns: Columns::new(),
            rows: 0,
        })
    }

    /// Adds one row.
    pub fn push(&mut self, entry: &Entry) -> Result<(), ExportError> {
        self.columns.push(entry)?;
        self.rows += 1;
        if self.columns.rows >= BATCH_ROWS {
            self.write_batch()?;
        }
        Ok(())
    }

    /// Rows added so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    fn write_batch(&mut self) -> Result<(), ExportError> {
        if self.columns.rows == 0 {
            return Ok(());
        }
        let batch = self.columns.finish()?;
        self.writer.write(&batch).map_err(write_error)
    }

    /// Writes the last rows and the footer; returns the output.
    pub fn finish(mut self) -> Result<W, ExportError> {
        self.write_batch()?;
        // `into_inner` writes the footer itself; a `finish` before it would
        // make it fail as "already finished".
        self.writer.into_inner().map_err(write_error)
    }
}

/// One Parquet file of `entries`, in memory (for an object store): the
/// bytes [`ParquetWriter`] writes for them.
pub fn encode(entries: &[Entry], options: &ParquetOptions) -> Result<Vec<u8>, ExportError> {
    let mut writer = ParquetWriter::new(Vec::new(), options)?;
    for entry in entries {
        writer.push(entry)?;
    }
    writer.finish()
}

/// Checks that a Parquet file holds exactly `entries`, row for row and
/// column for column, in this crate's schema (any encoder, compression or
/// row grouping will do: values are compared, not bytes). The error says
/// what differs: the first column and row, or the schema.
pub fn check(file: bytes::Bytes, entries: &[Entry]) -> Result<(), String> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("is not a readable Parquet file: {e}"))?;
    let version = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == "sealog.parquet_schema"))
        .and_then(|k| k.value.clone());
    if version.as_deref() != Some(SCHEMA_VERSION) {
        return Err(format!(
            "has sealog Parquet schema version {}; this reader checks version {SCHEMA_VERSION}",
            version.as_deref().unwrap_or("(none)")
        ));
    }
    let want = schema();
    let got = builder.schema().clone();
    if got.fields().len() != want.fields().len()
        || got
            .fields()
            .iter()
            .zip(want.fields())
            .any(|(g, w)| g.name() != w.name() || g.data_type() != w.data_type())
    {
        return Err("does not have the columns of the sealog Parquet schema".into());
    }
    let rows = builder.metadata().file_metadata().num_rows();
    if u64::try_from(rows).ok() != Some(entries.len() as u64) {
        return Err(format!(
            "holds {rows} rows where {} records were due",
            entries.len()
        ));
    }
    let reader = builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| format!("cannot be read: {e}"))?;
    let mut expected = entries.chunks(BATCH_ROWS);
    let mut first_row = 0usize;
    let mut pending: Option<RecordBatch> = None;
    for batch in reader {
        let batch = batch.map_err(|e| format!("cannot be read: {e}"))?;
        let mut offset = 0;
        while offset < batch.num_rows() {
            let want = match pending.take() {
                Some(b) if b.num_rows() > 0 => b,
                _ => {
                    let chunk = expected
                        .next()
                        .ok_or_else(|| "holds more rows than records were due".to_owned())?;
                    let mut columns = Columns::new();
                    for entry in chunk {
                        columns.push(entry).map_err(|e| e.to_string())?;
                    }
                    columns.finish().map_err(|e| e.to_string())?
                }
            };
            let n = want.num_rows().min(batch.num_rows() - offset);
            let got = batch.slice(offset, n);
            for (i, field) in want.schema().fields().iter().enumerate() {
                let (Some(g), Some(w)) = (got.columns().get(i), want.columns().get(i)) else {
                    return Err("is missing a column".into());
                };
                if g.as_ref() != w.slice(0, n).as_ref() {
                    let row = (0..n)
                        .find(|&r| g.slice(r, 1).as_ref() != w.slice(r, 1).as_ref())
                        .unwrap_or(0);
                    return Err(format!(
                        "row {} (seq {}) differs from its record in column `{}`",
                        first_row + row,
                        entries.get(first_row + row).map_or(0, |e| e.record.seq),
                        field.name()
                    ));
                }
            }
            pending = Some(want.slice(n, want.num_rows() - n));
            offset += n;
            first_row += n;
        }
    }
    if first_row != entries.len() {
        return Err(format!(
            "holds {first_row} rows where {} records were due",
            entries.len()
        ));
    }
    Ok(())
}

/// An I/O failure inside the encoder is an output error; anything else an
/// encoding error.
fn write_error(e: parquet::errors::ParquetError) -> ExportError {
    match e {
        parquet::errors::ParquetError::External(inner) => {
            match inner.downcast::<std::io::Error>() {
                Ok(io) => ExportError::Output(*io),
                Err(other) => ExportError::Parquet(other.to_string()),
            }
        }
        other => ExportError::Parquet(other.to_string()),
    }
}

/// The UTC date (`YYYY-MM-DD`) of an instant, for partitioning.
pub fn utc_date(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
        Err(_) => "1970-01-01".into(),
    }
}

/// A file written by [`PartitionedWriter`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenFile {
    /// Its path.
    pub path: PathBuf,
    /// Its rows.
    pub rows: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

struct OpenPart {
    date: String,
    temp: PathBuf,
    path: PathBuf,
    writer: ParquetWriter<std::io::BufWriter<File>>,
}

/// Writes entries into Hive-style date partitions under a directory:
/// `DIR/date=YYYY-MM-DD/part-<first seq>.parquet`, one file per run of
/// consecutive entries with the same event date. Give it entries in event
/// time order and each date gets one file.
pub struct PartitionedWriter {
    dir: PathBuf,
    options: ParquetOptions,
    open: Option<OpenPart>,
    written: Vec<WrittenFile>,
}

impl PartitionedWriter {
    /// A writer into `dir` (created if missing).
    pub fn new(dir: &Path, options: ParquetOptions) -> Result<PartitionedWriter, ExportError> {
        std::fs::create_dir_all(dir).map_err(|source| ExportError::Io {
            what: "cannot create the directory",
            path: dir.to_owned(),
            source,
        })?;
        Ok(PartitionedWriter {
            dir: dir.to_owned(),
            options,
            open: None,
            written: Vec::new(),
        })
    }

    /// Adds one row.
    pub fn push(&mut self, entry: &Entry) -> Result<(), ExportError> {
        let date = utc_date(entry.record.event_time().as_nanos());
        if self.open.as_ref().is_some_and(|p| p.date != date) {
            self.close_part()?;
        }
        if self.open.is_none() {
            self.open = Some(self.open_part(date, entry.record.seq)?);
        }
        match &mut self.open {
            Some(part) => part.writer.push(entry),
            None => Ok(()),
        }
    }

    fn open_part(&self, date: String, first_seq: u64) -> Result<OpenPart, ExportError> {
        let partition = self.dir.join(format!("date={date}"));
        std::fs::create_dir_all(&partition).map_err(|source| ExportError::Io {
            what: "cannot create the partition directory",
            path: partition.clone(),
            source,
        })?;
        let name = format!("part-{first_seq}.parquet");
        let path = partition.join(&name);
        if path.exists() {
            return Err(ExportError::Exists { path });
        }
        let temp = partition.join(format!(".{name}.tmp"));
        let file = File::create(&temp).map_err(|source| ExportError::Io {
            what: "cannot create",
            path: temp.clone(),
            source,
        })?;
        let writer = ParquetWriter::new(
            std::io::BufWriter::with_capacity(1 << 20, file),
            &self.options,
        )?;
        Ok(OpenPart {
            date,
            temp,
            path,
            writer,
        })
    }

    fn close_part(&mut self) -> Result<(), ExportError> {
        let Some(part) = self.open.take() else {
            return Ok(());
        };
        let rows = part.writer.rows();
        let io = |what: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| ExportError::Io { what, path, source }
        };
        let out = part.writer.finish()?;
        let file = out
            .into_inner()
            .map_err(|e| io("cannot write", &part.temp)(e.into_error()))?;
        file.sync_all().map_err(io("cannot sync", &part.temp))?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        drop(file);
        // A file that appeared meanwhile is not replaced.
        if part.path.exists() {
            let _ = std::fs::remove_file(&part.temp);
            return Err(ExportError::Exists { path: part.path });
        }
        std::fs::rename(&part.temp, &part.path).map_err(io("cannot rename into", &part.path))?;
        if let Some(parent) = part.path.parent() {
            File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(io("cannot sync the directory", parent))?;
        }
        self.written.push(WrittenFile {
            path: part.path,
            rows,
            bytes,
        });
        Ok(())
    }

    /// Closes the last file; returns every file written.
    pub fn finish(mut self) -> Result<Vec<WrittenFile>, ExportError> {
        self.close_part()?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(std::mem::take(&mut self.written))
    }
}

impl Drop for PartitionedWriter {
    fn drop(&mut self) {
        // An export that failed leaves no temporary file behind.
        if let Some(part) = self.open.take() {
            let _ = std::fs::remove_file(&part.temp);
        }
    }
}
