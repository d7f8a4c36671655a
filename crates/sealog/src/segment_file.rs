//! Making segment files: a new segment (header written and synced, renamed
//! into place, directory synced) and the zero-filled spare that becomes
//! the next one.
//!
//! A file is made under a temporary name and only renamed into place once
//! complete, so a crash or a failure leaves at worst a leftover that the
//! next open removes; a failure removes it at once, so that a disk too full
//! for a segment is not also left holding the part that fitted.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sealog_format::Timestamp;
use sealog_format::segment::SegmentHeader;

use crate::error::{Error, Result};
use crate::fs::{OpenMode, Vfs, VfsFile};
use crate::layout;
use crate::options::{Preallocation, StoreOptions};
use crate::segment::{OpenData, OpenSegment};

/// Creates a segment file from `spare` (a zero-filled file) or from scratch,
/// preallocating it as configured (`zero_fill` writes zeros now instead of
/// reserving blocks), writes and syncs the header, renames it into place and
/// syncs the directory.
///
/// Space that cannot be reserved is reported as [`Error::SegmentSpace`],
/// with the file and the size asked for.
pub(crate) fn new_segment_file(
    fs: &dyn Vfs,
    dir: &Path,
    options: &StoreOptions,
    header: &SegmentHeader,
    spare: Option<PathBuf>,
    zero_fill: bool,
) -> Result<Arc<OpenSegment>> {
    let name = layout::segment_name(header.first_seq);
    let path = dir.join(&name);
    let segments = dir.join(layout::SEGMENTS);
    let (from, file, made_here) = match spare {
        Some(spare) => {
            let file = fs
                .open(&spare, OpenMode::ReadWrite)
                .map_err(|e| Error::io("open", &spare, e))?;
            (spare, file, false)
        }
        None => {
            let tmp = segments.join(format!("{:020}.seg.tmp", header.first_seq));
            let file = create_reserved(fs, &tmp, options, zero_fill)?;
            (tmp, file, true)
        }
    };
    let installed = file
        .write_all_at(&header.encode(), 0)
        .map_err(|e| Error::io("write", &from, e))
        .and_then(|()| file.sync_all().map_err(|e| Error::io("fsync", &from, e)))
        .and_then(|()| {
            fs.rename(&from, &path)
                .map_err(|e| Error::io("rename", &from, e))
        });
    if let Err(e) = installed {
        if made_here {
            drop(file);
            remove_partial(fs, &from);
        }
        return Err(e);
    }
    fs.sync_dir(&segments)
        .map_err(|e| Error::io("fsync directory", &segments, e))?;
    Ok(Arc::new(OpenSegment::new(
        *header,
        name,
        path,
        file,
        OpenData::new(header.chain_in),
    )))
}

/// Creates `tmp` (replacing a leftover of that name) with its space
/// reserved as `options` say; removes it again if that fails.
fn create_reserved(
    fs: &dyn Vfs,
    tmp: &Path,
    options: &StoreOptions,
    zero_fill: bool,
) -> Result<Arc<dyn VfsFile>> {
    if fs.exists(tmp).map_err(|e| Error::io("stat", tmp, e))? {
        fs.remove_file(tmp)
            .map_err(|e| Error::io("remove", tmp, e))?;
    }
    let file = fs
        .open(tmp, OpenMode::CreateNew)
        .map_err(|e| Error::io("create", tmp, e))?;
    let size = options.segment_size;
    let reserved = match options.preallocation {
        Preallocation::ZeroFill if zero_fill => {
            ("write", write_zeros(&*file, size, || false).map(drop))
        }
        Preallocation::ZeroFill | Preallocation::Allocate => ("fallocate", file.allocate(size)),
        Preallocation::None => ("", Ok(())),
    };
    if let (op, Err(source)) = reserved {
        drop(file);
        remove_partial(fs, tmp);
        return Err(space_error(op, tmp.to_owned(), size, source));
    }
    Ok(file)
}

/// Makes a zero-filled spare segment file of `size` bytes in `segments`,
/// synced, under a name of its own (`spare-<ns>-<n>`: a roll may be
/// renaming the previous spare into place meanwhile, and the two must never
/// be confused). Returns `None`, leaving nothing behind, if `stop` says so
/// before it is complete.
pub(crate) fn make_spare(
    fs: &dyn Vfs,
    segments: &Path,
    size: u64,
    stop: impl Fn() -> bool,
) -> Result<Option<PathBuf>> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let unique = format!(
        "{}-{}-{}",
        layout::SPARE,
        Timestamp::now().as_nanos(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let tmp = segments.join(format!("{unique}.tmp"));
    let path = segments.join(&unique);
    if fs.exists(&tmp).map_err(|e| Error::io("stat", &tmp, e))? {
        fs.remove_file(&tmp)
            .map_err(|e| Error::io("remove", &tmp, e))?;
    }
    let file = fs
        .open(&tmp, OpenMode::CreateNew)
        .map_err(|e| Error::io("create", &tmp, e))?;
    let complete = match write_zeros(&*file, size, stop) {
        Ok(complete) => complete,
        Err(source) => {
            drop(file);
            remove_partial(fs, &tmp);
            return Err(space_error("write", tmp, size, source));
        }
    };
    if !complete {
        drop(file);
        remove_partial(fs, &tmp);
        return Ok(None);
    }
    // Synced before a roll can take it, so that the roll's sync of the new
    // segment's header has none of these zeros left to write.
    let installed = file
        .sync_all()
        .map_err(|e| Error::io("fsync", &tmp, e))
        .and_then(|()| {
            drop(file);
            fs.rename(&tmp, &path)
                .map_err(|e| Error::io("rename", &tmp, e))
        });
    if let Err(e) = installed {
        remove_partial(fs, &tmp);
        return Err(e);
    }
    // The directory is not synced: the roll that takes the spare renames it
    // into place and syncs the directory then. A spare whose name a power
    // loss undoes before that is only a leftover (removed on open) and is
    // made again.
    Ok(Some(path))
}

/// The error of a failure to reserve a new segment file's space: a full
/// disk says so, with the size asked for; anything else is the I/O error.
fn space_error(op: &'static str, path: PathBuf, size: u64, source: io::Error) -> Error {
    if source.kind() == io::ErrorKind::StorageFull {
        Error::SegmentSpace {
            op,
            path,
            size,
            source,
        }
    } else {
        Error::io(op, path, source)
    }
}

/// Removes a file that a failed creation left under its temporary name.
/// Best effort: the failure being reported matters more, and recovery
/// removes `.tmp` files on the next open anyway.
fn remove_partial(fs: &dyn Vfs, tmp: &Path) {
    if let Err(e) = fs.remove_file(tmp) {
        tracing::warn!(file = %tmp.display(), error = %e, "could not remove a partly made file");
    }
}

/// Writes `size` zero bytes from offset 0 in 1 MiB pieces; stops early (and
/// returns `Ok(false)`) when `stop` says so.
fn write_zeros(file: &dyn VfsFile, size: u64, stop: impl Fn() -> bool) -> io::Result<bool> {
    const PIECE: u64 = 1 << 20;
    let zeros = vec![0u8; PIECE as usize];
    let mut at = 0u64;
    while at < size {
        if stop() {
            return Ok(false);
        }
        let piece = zeros
            .get(..(size - at).min(PIECE) as usize)
            .expect("a piece is at most PIECE bytes, the buffer's length");
        file.write_all_at(piece, at)?;
        at += piece.len() as u64;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_are_written_to_the_exact_size_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let fs = crate::fs::StdFs;
        let path = dir.path().join("z");
        let file = fs.open(&path, OpenMode::CreateNew).unwrap();
        file.write_all_at(&[0xff; 16], (3 << 20) + 100).unwrap();
        let size = (2 << 20) + 777;
        assert!(write_zeros(&*file, size, || false).unwrap());
        let mut head = vec![1u8; size as usize];
        file.read_exact_at(&mut head, 0).unwrap();
        assert!(head.iter().all(|&b| b == 0));
        let mut beyond = [0u8; 16];
        file.read_exact_at(&mut beyond, (3 << 20) + 100).unwrap();
        assert_eq!(beyond, [0xff; 16], "nothing is written past the size");
    }

    #[test]
    fn a_spare_stopped_before_it_is_complete_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let fs = crate::fs::StdFs;
        assert_eq!(make_spare(&fs, dir.path(), 4 << 20, || true).unwrap(), None);
        assert!(fs.read_dir(dir.path()).unwrap().is_empty());
        let spare = make_spare(&fs, dir.path(), 8192, || false)
            .unwrap()
            .unwrap();
        assert_eq!(
            fs.open(&spare, OpenMode::Read).unwrap().size().unwrap(),
            8192
        );
        assert_eq!(fs.read_dir(dir.path()).unwrap().len(), 1);
    }
}
