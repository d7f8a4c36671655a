//! Signed checkpoints: the store's commitments that leave the host.
//!
//! A checkpoint is a C2SP `tlog-checkpoint` signed with the store's Ed25519
//! key: the origin (the key's name), the tree size, the RFC 9162 root of
//! the log at that size, and one extension line `sealog-chain <base64>`
//! with the BLAKE3 chain value after the last record it covers. Anyone with
//! the public key can check, offline, that a later copy of the log still
//! contains exactly what the checkpoint committed to.
//!
//! Every checkpoint issued is appended to `checkpoints.log` (synced before
//! it is returned), so later states can be proven consistent with every
//! earlier one. The file is a sequence of entries: `u32` length, `u32`
//! CRC-32 of the text, then the signed note's UTF-8 text.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use parking_lot::Mutex;
use sealog_format::Hash;
use sealog_format::checkpoint::{self as cp, Checkpoint};
use sealog_format::note::SigningKey;

use crate::error::{Corruption, CorruptionKind, Error, Location, Result};
use crate::fs::{OpenMode, Vfs, VfsFile};

/// The extension line's keyword.
pub const CHAIN_EXTENSION: &str = "sealog-chain";

/// How and when the store signs checkpoints. Besides `on_seal` and
/// `every`, a store opened for writing signs one when it closes if the log
/// grew since the last one, and [`crate::Store::checkpoint`] signs one on
/// demand.
#[derive(Clone)]
pub struct CheckpointOptions {
    /// The signing key; its name is the log's origin (e.g.
    /// `audit.example.com/sealog`). Keep it off the store's disk: whoever
    /// holds it can sign a rewritten history.
    pub key: Arc<SigningKey>,
    /// Sign a checkpoint when a segment is sealed (default true).
    pub on_seal: bool,
    /// Sign a checkpoint this often if the log grew (default 60 s).
    pub every: Option<std::time::Duration>,
}

impl CheckpointOptions {
    /// Checkpoints signed with `key` on every seal and every minute.
    pub fn new(key: SigningKey) -> CheckpointOptions {
        CheckpointOptions {
            key: Arc::new(key),
            on_seal: true,
            every: Some(std::time::Duration::from_secs(60)),
        }
    }
}

impl std::fmt::Debug for CheckpointOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointOptions")
            .field("origin", &self.key.name())
            .field("on_seal", &self.on_seal)
            .field("every", &self.every)
            .finish()
    }
}

/// A checkpoint as issued: its contents and its signed text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The number of records it covers.
    pub size: u64,
    /// The RFC 9162 root of the first `size` records.
    pub root: Hash,
    /// The chain value after record `size - 1` (the genesis value for 0).
    pub chain_head: Hash,
    /// The signed note, as published.
    pub text: String,
}

/// The checkpoint's extension line for a chain value.
pub(crate) fn chain_extension(chain_head: &Hash) -> String {
    format!(
        "{CHAIN_EXTENSION} {}",
        base64::engine::general_purpose::STANDARD.encode(chain_head)
    )
}

/// The chain value in a checkpoint's extension lines, if present.
pub fn chain_head_of(checkpoint: &Checkpoint) -> Option<Hash> {
    checkpoint.extensions.iter().find_map(|line| {
        let b64 = line.strip_prefix(CHAIN_EXTENSION)?.strip_prefix(' ')?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        bytes.try_into().ok()
    })
}

/// Signs a checkpoint.
pub(crate) fn sign(
    key: &SigningKey,
    size: u64,
    root: Hash,
    chain_head: Hash,
) -> Result<SignedCheckpoint> {
    let body = Checkpoint {
        origin: key.name().to_owned(),
        size,
        root,
        extensions: vec![chain_extension(&chain_head)],
    };
    let text =
        cp::sign(&body, key).map_err(|e| Error::Config(format!("signing a checkpoint: {e}")))?;
    Ok(SignedCheckpoint {
        size,
        root,
        chain_head,
        text,
    })
}

/// The append-only history `checkpoints.log`.
#[derive(Debug)]
pub(crate) struct CheckpointLog {
    path: PathBuf,
    file: Option<Arc<dyn VfsFile>>,
    state: Mutex<LogState>,
    /// Held while a checkpoint is signed and appended, so that checkpoints
    /// enter the history in the order of their sizes.
    signing: Mutex<()>,
}

#[derive(Debug, Default)]
struct LogState {
    /// The signed texts, oldest first.
    entries: Vec<String>,
    end: u64,
}

/// Bytes before each entry's text.
const ENTRY_HEADER: usize = 8;

/// The text of the whole entry at `pos`: its length and CRC in place, the
/// text non-empty, present and matching the CRC.
fn entry_at(bytes: &[u8], pos: usize) -> Option<&[u8]> {
    let header = bytes.get(pos..pos.checked_add(ENTRY_HEADER)?)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let stored = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let start = pos + ENTRY_HEADER;
    let text = bytes.get(start..start.checked_add(len)?)?;
    (!text.is_empty() && crc32fast::hash(text) == stored).then_some(text)
}

impl CheckpointLog {
    /// Reads the history. A torn last entry (an append that did not finish)
    /// is cut unless read-only; damage before the end is corruption.
    pub(crate) fn open(fs: &dyn Vfs, path: &Path, read_only: bool) -> Result<CheckpointLog> {
        let exists = fs.exists(path).map_err(|e| Error::io("stat", path, e))?;
        if !exists {
            let file = if read_only {
                None
            } else {
                let f = fs
                    .open(path, OpenMode::CreateNew)
                    .map_err(|e| Error::io("create", path, e))?;
                if let Some(dir) = path.parent() {
                    fs.sync_dir(dir)
                        .map_err(|e| Error::io("fsync directory", dir, e))?;
                }
                Some(f)
            };
            return Ok(CheckpointLog {
                path: path.to_owned(),
                file,
                state: Mutex::new(LogState::default()),
                signing: Mutex::new(()),
            });
        }
        let mode = if read_only {
            OpenMode::Read
        } else {
            OpenMode::ReadWrite
        };
        let file = fs
            .open(path, mode)
            .map_err(|e| Error::io("open", path, e))?;
        let bytes = crate::fs::read_all(fs, path).map_err(|e| Error::io("read", path, e))?;
        let name = crate::layout::CHECKPOINTS;
        let mut entries = Vec::new();
        let mut pos = 0usize;
        while pos < bytes.len() {
            if let Some(text) = entry_at(&bytes, pos) {
                let text = String::from_utf8(text.to_vec()).map_err(|_| {
                    Corruption::new(
                        Location::file(name).at(pos as u64),
                        CorruptionKind::Layout("a checkpoint is not UTF-8".into()),
                    )
                })?;
                pos += ENTRY_HEADER + text.len();
                entries.push(text);
                continue;
            }
            // Appends are serialised and each is synced before the next, so
            // only the last one can be unfinished, and nothing whole follows
            // it: whatever a power loss kept of its sectors (zeros where a
            // sector never reached the disk, the size without the bytes) is
            // cut. A whole entry after the damage means the damage is not an
            // unfinished append.
            if let Some(next) = (pos + 1..bytes.len()).find(|&at| entry_at(&bytes, at).is_some()) {
                return Err(Corruption::new(
                    Location::file(name).at(pos as u64),
                    CorruptionKind::Layout(format!(
                        "a checkpoint entry is damaged (a whole entry follows at byte {next})"
                    )),
                )
                .into());
            }
            break;
        }
        if pos < bytes.len() && !read_only {
            tracing::warn!(
                at = pos,
                dropped = bytes.len() - pos,
                "cutting an unfinished checkpoint append"
            );
            // Not synced: if a power loss undoes the cut, the next open
            // cuts the same bytes again (nothing whole follows them), and
            // the next append's sync covers the cut with it.
            file.set_len(pos as u64)
                .map_err(|e| Error::io("truncate", path, e))?;
        }
        Ok(CheckpointLog {
            path: path.to_owned(),
            file: Some(file),
            state: Mutex::new(LogState {
                entries,
                end: pos as u64,
            }),
            signing: Mutex::new(()),
        })
    }

    /// Serializes signing: hold it from choosing a checkpoint's size until
    /// it is appended.
    pub(crate) fn signing(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.signing.lock()
    }

    /// Appends and syncs a signed checkpoint.
    pub(crate) fn append(&self, text: &str) -> Result<()> {
        let Some(file) = &self.file else {
            return Err(Error::ReadOnly);
        };
        let mut state = self.state.lock();
        let len = u32::try_from(text.len())
            .map_err(|_| Error::Config("a checkpoint over 4 GiB".into()))?;
        let mut entry = Vec::with_capacity(ENTRY_HEADER + text.len());
        entry.extend_from_slice(&len.to_le_bytes());
        entry.extend_from_slice(&crc32fast::hash(text.as_bytes()).to_le_bytes());
        entry.extend_from_slice(text.as_bytes());
        file.write_all_at(&entry, state.end)
            .map_err(|e| Error::io("write", &self.path, e))?;
        file.sync_data()
            .map_err(|e| Error::io("fdatasync", &self.path, e))?;
        state.end += entry.len() as u64;
        state.entries.push(text.to_owned());
        Ok(())
    }

    /// Every checkpoint issued, oldest first.
    pub(crate) fn entries(&self) -> Vec<String> {
        self.state.lock().entries.clone()
    }

    /// The newest checkpoint issued.
    pub(crate) fn latest(&self) -> Option<String> {
        self.state.lock().entries.last().cloned()
    }
}
