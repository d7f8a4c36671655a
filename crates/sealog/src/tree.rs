//! The leaf-hash file `tree/leaves`: the Merkle leaf hash of every record in
//! a sealed segment, 32 bytes each, at offset `seq × 32`.
//!
//! It lets proofs be produced without rehashing records. It is derived data:
//! the sealer appends a segment's leaves and syncs them *before* it writes
//! the segment's footer, so on open the file covers at least every sealed
//! record; anything beyond is cut, anything missing is recomputed from the
//! records. Verification recomputes every leaf and compares.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use sealog_format::Hash;

use crate::error::{Error, Result};
use crate::fs::{OpenMode, Vfs, VfsFile};

/// Bytes per stored leaf hash.
pub(crate) const LEAF_LEN: u64 = 32;

#[derive(Debug)]
pub(crate) struct LeafFile {
    path: PathBuf,
    file: Arc<dyn VfsFile>,
    /// Number of leaves stored (and synced, for the sealed prefix).
    len: Mutex<u64>,
}

impl LeafFile {
    /// Opens (creating if needed) the leaf file. Read-only, a missing file
    /// is `None`.
    pub(crate) fn open(fs: &dyn Vfs, path: &Path, read_only: bool) -> Result<Option<LeafFile>> {
        let exists = fs.exists(path).map_err(|e| Error::io("stat", path, e))?;
        let file = if exists {
            let mode = if read_only {
                OpenMode::Read
            } else {
                OpenMode::ReadWrite
            };
            fs.open(path, mode)
                .map_err(|e| Error::io("open", path, e))?
        } else if read_only {
            return Ok(None);
        } else {
            let f = fs
                .open(path, OpenMode::CreateNew)
                .map_err(|e| Error::io("create", path, e))?;
            if let Some(dir) = path.parent() {
                fs.sync_dir(dir)
                    .map_err(|e| Error::io("fsync directory", dir, e))?;
            }
            f
        };
        let bytes = file.size().map_err(|e| Error::io("stat", path, e))?;
        Ok(Some(LeafFile {
            path: path.to_owned(),
            file,
            len: Mutex::new(bytes / LEAF_LEN),
        }))
    }

    pub(crate) fn len(&self) -> u64 {
        *self.len.lock()
    }

    /// Cuts the file to `count` leaves.
    pub(crate) fn truncate(&self, count: u64) -> Result<()> {
        let mut len = self.len.lock();
        self.file
            .set_len(count * LEAF_LEN)
            .map_err(|e| Error::io("truncate", &self.path, e))?;
        self.file
            .sync_all()
            .map_err(|e| Error::io("fsync", &self.path, e))?;
        *len = count;
        Ok(())
    }

    /// Writes `leaves` starting at leaf `first` and syncs them.
    pub(crate) fn write(&self, first: u64, leaves: &[Hash]) -> Result<()> {
        let mut len = self.len.lock();
        let mut bytes = Vec::with_capacity(leaves.len() * LEAF_LEN as usize);
        for leaf in leaves {
            bytes.extend_from_slice(leaf);
        }
        self.file
            .write_all_at(&bytes, first * LEAF_LEN)
            .map_err(|e| Error::io("write", &self.path, e))?;
        self.file
            .sync_data()
            .map_err(|e| Error::io("fdatasync", &self.path, e))?;
        *len = (*len).max(first + leaves.len() as u64);
        Ok(())
    }

    /// Reads leaves `[first, first + count)`.
    pub(crate) fn read(&self, first: u64, count: usize) -> Result<Vec<Hash>> {
        let mut bytes = vec![0u8; count * LEAF_LEN as usize];
        self.file
            .read_exact_at(&mut bytes, first * LEAF_LEN)
            .map_err(|e| Error::io("read", &self.path, e))?;
        Ok(bytes
            .chunks_exact(LEAF_LEN as usize)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect())
    }
}
