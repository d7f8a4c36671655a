//! Disaster recovery: rebuild a local store from its archive.
//!
//! The archive is verified as it is read (the same checks as
//! `verify --archive`), every verified object is written into a staging
//! directory beside the target, the store manifest (`STORE`) is made from
//! the segments' store id, `checkpoints.log` from the manifests'
//! checkpoints that the restored records cover, and the result is checked
//! with the engine's own verification before it is renamed into place.
//! Nothing is left behind on failure.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sealog_format::segment::{Manifest as StoreManifest, SegmentHeader};

use crate::error::{ArchiveError, Result};
use crate::layout::{self, ObjectKind};
use crate::target::Target;
use crate::verify::{ArchiveReport, Sink, VerifyOptions};

/// What a restore did.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    /// The archive's verification.
    pub archive: ArchiveReport,
    /// Records restored.
    pub records: u64,
    /// Checkpoints written to `checkpoints.log`.
    pub checkpoints: u64,
    /// The newest archived checkpoint's size, if it covers more records
    /// than were archived: records `records .. newest` existed, were signed,
    /// and are lost with the original store.
    pub unarchived_signed: Option<u64>,
}

struct StoreWriter {
    dir: PathBuf,
    levels: Vec<std::fs::File>,
    checkpoints: Vec<(u64, String)>,
    first_header: Option<SegmentHeader>,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ArchiveError + 'a {
    move |source| ArchiveError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(io("create", path))?;
    f.write_all(bytes).map_err(io("write", path))?;
    f.sync_all().map_err(io("fsync", path))
}

fn sync_dir(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io("fsync directory", path))
}

impl Sink for StoreWriter {
    fn object(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        match layout::parse(name) {
            Some(ObjectKind::Segment(_)) => {
                if self.first_header.is_none() {
                    // A compressed copy keeps the header after its head.
                    self.first_header = if sealog_format::compressed::is_compressed(bytes) {
                        sealog_format::compressed::parse_head(bytes, bytes.len() as u64)
                            .ok()
                            .map(|(header, _)| header)
                    } else {
                        SegmentHeader::decode(
                            bytes
                                .get(..sealog_format::segment::HEADER_LEN)
                                .unwrap_or_default(),
                        )
                        .ok()
                    };
                }
                write_synced(&self.dir.join(name), bytes)
            }
            Some(ObjectKind::Sidecar(_)) => write_synced(&self.dir.join(name), bytes),
            Some(ObjectKind::TreePiece(k, _)) => {
                let path = self
                    .dir
                    .join("tree")
                    .join(sealog::image::tree_level_file_name(k));
                let file = self.levels.get_mut(k).ok_or_else(|| {
                    ArchiveError::config(format!("no tree level {k}"), "report this")
                })?;
                // Pieces arrive in order, each starting where the level
                // ends (the verifier checked).
                file.write_all(bytes).map_err(io("write", &path))
            }
            _ => Ok(()),
        }
    }

    fn checkpoint(&mut self, size: u64, text: &str) -> Result<()> {
        if self
            .checkpoints
            .last()
            .is_none_or(|(s, t)| *s != size || t != text)
        {
            self.checkpoints.push((size, text.to_owned()));
        }
        Ok(())
    }
}

/// Restores the archive at `target` into `dir`, which must not exist or be
/// an empty directory.
pub async fn restore(
    target: &Target,
    dir: &Path,
    options: &VerifyOptions,
) -> Result<RestoreReport> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(io("read directory", dir))?;
        if entries.next().is_some() {
            return Err(ArchiveError::config(
                format!("`{}` is not empty", dir.display()),
                "restore into a new or empty directory; a restore never mixes with existing files",
            ));
        }
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io("create directory", parent))?;
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".into());
    let staging = parent.join(format!(".{base}.restoring-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io("remove", &staging))?;
    }
    let result = restore_into(target, &staging, options).await;
    match result {
        Ok(report) => {
            if dir.exists() {
                std::fs::remove_dir(dir).map_err(io("replace the empty directory", dir))?;
            }
            std::fs::rename(&staging, dir).map_err(io("rename the restored store to", dir))?;
            sync_dir(parent)?;
            Ok(report)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

async fn restore_into(
    target: &Target,
    dir: &Path,
    options: &VerifyOptions,
) -> Result<RestoreReport> {
    std::fs::create_dir_all(dir.join("segments")).map_err(io("create directory", dir))?;
    std::fs::create_dir_all(dir.join("tree")).map_err(io("create directory", dir))?;
    let mut levels = Vec::with_capacity(layout::LEVELS);
    for k in 0..layout::LEVELS {
        let path = dir
            .join("tree")
            .join(sealog::image::tree_level_file_name(k));
        levels.push(std::fs::File::create(&path).map_err(io("create", &path))?);
    }
    let mut writer = StoreWriter {
        dir: dir.to_owned(),
        levels,
        checkpoints: Vec::new(),
        first_header: None,
    };
    let archive = crate::verify::verify(target, options, Some(&mut writer)).await?;
    for (k, f) in writer.levels.iter().enumerate() {
        let path = dir
            .join("tree")
            .join(sealog::image::tree_level_file_name(k));
        f.sync_all().map_err(io("fsync", &path))?;
    }
    let Some(header) = writer.first_header else {
        return Err(ArchiveError::config(
            format!("the archive at {} holds no segment", target.url()),
            "check the URL (the prefix must be the one `sealog archive --to` was given)",
        ));
    };
    let manifest = StoreManifest {
        store_id: header.store_id,
        created_at: header.created_at,
    };
    write_synced(&dir.join("STORE"), &manifest.encode())?;
    // The history: checkpoints the restored records cover, oldest first.
    let mut log = Vec::new();
    let mut written = 0u64;
    let mut newest = None;
    for (size, text) in &writer.checkpoints {
        newest = Some(*size);
        if *size > archive.records {
            continue;
        }
        let len = u32::try_from(text.len())
            .map_err(|_| ArchiveError::config("a checkpoint over 4 GiB", "report this"))?;
        log.extend_from_slice(&len.to_le_bytes());
        log.extend_from_slice(&crc32fast::hash(text.as_bytes()).to_le_bytes());
        log.extend_from_slice(text.as_bytes());
        written += 1;
    }
    write_synced(&dir.join("checkpoints.log"), &log)?;
    sync_dir(&dir.join("segments"))?;
    sync_dir(&dir.join("tree"))?;
    sync_dir(dir)?;
    // The engine's own verdict on the result.
    let verify = sealog::VerifyOptions {
        public_key: options.public_key.clone(),
        ..sealog::VerifyOptions::default()
    };
    let local = sealog::verify_dir_with(dir, &verify)
        .map_err(|e| ArchiveError::store("verifying the restored store", e))?;
    if local.records != archive.records || local.root != archive.root {
        return Err(ArchiveError::config(
            format!(
                "the restored store holds {} records with root {}, the archive {} with root {}",
                local.records,
                hex::encode(local.root),
                archive.records,
                hex::encode(archive.root)
            ),
            "report this",
        ));
    }
    Ok(RestoreReport {
        records: archive.records,
        checkpoints: written,
        unarchived_signed: newest.filter(|n| *n > archive.records),
        archive,
    })
}
