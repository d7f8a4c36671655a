//! Parquet copies of archived segments, for SQL engines that read object
//! storage (DuckDB, Trino, Athena, Spark, DataFusion).
//!
//! With Parquet on, each archived segment also gets one Parquet file per
//! event date (UTC) of its records, `parquet/date=<YYYY-MM-DD>/<first
//! seq>.parquet`, in the export's schema (`sealog_export::parquet`), rows
//! in seq order. They are derived data: listed by the manifest with their
//! SHA-256 like every object, and checked by `verify --archive` value for
//! value against the segment's records, so a row found in the lake can be
//! trusted as far as the segment it came from (and proven with a receipt:
//! each row carries its seq and leaf hash).

use std::collections::BTreeMap;

use bytes::Bytes;
use sealog::image::SealedImage;
use sealog_export::Entry;
use sealog_export::parquet::{ParquetOptions, utc_date};

use crate::error::{ArchiveError, Result};
use crate::layout;
use crate::manifest::sha256_hex;

/// A Parquet object of a segment, ready to upload.
pub(crate) struct ParquetObject {
    /// Its object name.
    pub name: String,
    /// Its bytes.
    pub bytes: Bytes,
    /// SHA-256 of the bytes (hex).
    pub sha256: String,
}

/// The records of a checked segment image, grouped by event date (UTC).
/// Each record's leaf is the one the check computed from the same bytes.
pub(crate) fn entries_by_date(
    name: &str,
    bytes: &[u8],
    image: &SealedImage,
) -> Result<BTreeMap<String, Vec<Entry>>> {
    const DAY: i64 = 86_400 * 1_000_000_000;
    // A segment stored compressed is read through its image.
    let bytes = &*sealog::image::uncompressed(name, bytes)
        .map_err(|e| ArchiveError::tampered(name, e.to_string()))?;
    // By day number, the date's text made once per day.
    let mut by_day: BTreeMap<i64, Vec<Entry>> = BTreeMap::new();
    for ((ordinal, &offset), &leaf) in image.offsets.iter().enumerate().zip(&image.leaves) {
        let seq = image.header.first_seq + ordinal as u64;
        let bad = |why: String| {
            ArchiveError::tampered(name, format!("record {seq} at offset {offset}: {why}"))
        };
        let rest = bytes
            .get(offset as usize..)
            .ok_or_else(|| bad("lies past the end of the segment".into()))?;
        let body = match sealog_format::frame::read_frame(rest) {
            Ok(sealog_format::frame::FrameRead::Frame(f)) => f.body,
            _ => return Err(bad("its frame does not read back".into())),
        };
        let record = sealog_format::record::decode_record(body).map_err(|e| bad(e.to_string()))?;
        by_day
            .entry(record.event_time().as_nanos().div_euclid(DAY))
            .or_default()
            .push(Entry { record, leaf });
    }
    Ok(by_day
        .into_iter()
        .map(|(day, entries)| (utc_date(day.saturating_mul(DAY)), entries))
        .collect())
}

/// The Parquet objects of a checked segment.
pub(crate) fn encode_segment(
    name: &str,
    bytes: &[u8],
    image: &SealedImage,
) -> Result<Vec<ParquetObject>> {
    let options = ParquetOptions {
        store_id: Some(hex::encode(image.header.store_id)),
        ..ParquetOptions::default()
    };
    let first = image.header.first_seq;
    entries_by_date(name, bytes, image)?
        .into_iter()
        .map(|(date, entries)| {
            let object = layout::parquet(&date, first);
            let file = sealog_export::parquet::encode(&entries, &options).map_err(|e| {
                ArchiveError::store(
                    format!("encoding {object}"),
                    sealog::Error::Config(e.to_string()),
                )
            })?;
            Ok(ParquetObject {
                name: object,
                sha256: sha256_hex(&file),
                bytes: Bytes::from(file),
            })
        })
        .collect()
}

/// Checks that `existing`, found under the Parquet object name `object`,
/// holds exactly the segment's records of that name's date.
pub(crate) fn check_existing(
    name: &str,
    bytes: &[u8],
    image: &SealedImage,
    object: &str,
    existing: &Bytes,
) -> Result<()> {
    let Some(layout::ObjectKind::Parquet(_, date)) = layout::parse(object) else {
        return Err(ArchiveError::tampered(
            object,
            "is not a Parquet object name",
        ));
    };
    let day = layout::date_text(date);
    let entries = entries_by_date(name, bytes, image)?
        .remove(&day)
        .unwrap_or_default();
    sealog_export::parquet::check(existing.clone(), &entries)
        .map_err(|problem| ArchiveError::tampered(object, problem))
}

/// Checks the Parquet objects listed for a segment against its records:
/// one per event date of its records, none for another date, each holding
/// exactly that date's records. `files` are (object name, date number,
/// bytes already checked against the manifest).
pub(crate) fn check_segment(
    name: &str,
    bytes: &[u8],
    image: &SealedImage,
    manifest: &str,
    files: Vec<(String, u32, Bytes)>,
) -> Result<()> {
    let mut by_date = entries_by_date(name, bytes, image)?;
    for (object, date, data) in files {
        let day = layout::date_text(date);
        let Some(entries) = by_date.remove(&day) else {
            return Err(ArchiveError::tampered(
                object,
                format!("is a Parquet file for {day}, but {name} has no record of that date"),
            ));
        };
        sealog_export::parquet::check(data, &entries)
            .map_err(|problem| ArchiveError::tampered(&object, problem))?;
    }
    if let Some((day, entries)) = by_date.into_iter().next() {
        return Err(ArchiveError::tampered(
            manifest,
            format!(
                "lists Parquet files for {name}, but none for {day}, the date of {} of its \
                 records (`{}` is missing)",
                entries.len(),
                layout::parquet(&day, image.header.first_seq)
            ),
        ));
    }
    Ok(())
}
