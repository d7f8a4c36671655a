//! The files of a store as an open finds them: the segment files in log
//! order (leftovers of interrupted creations removed), their headers and
//! footers, the manifest, the spare segment file and the leaf count.
//! Nothing here decides whether the segments link up: see
//! [`super::continuity`].

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sealog_format::Timestamp;
use sealog_format::segment::{
    END_MARKER_LEN, FOOTER_LEN, HEADER_LEN, Manifest, SegmentFooter, SegmentHeader,
};

use super::corruption;
use crate::error::{CorruptionKind, Error, Location, Result, hex};
use crate::fs::{self, OpenMode, Vfs, VfsFile};
use crate::layout;
use crate::mmap::Mapped;
use crate::options::StoreOptions;

/// A segment file as found on disk.
pub(crate) struct Found {
    pub name: String,
    pub path: PathBuf,
    pub file: Arc<dyn VfsFile>,
    pub len: u64,
    pub header: SegmentHeader,
    pub footer: Option<SegmentFooter>,
    /// The whole file, mapped while the segments were read (read-only
    /// opens map sealed segments then, on every core); `None` otherwise.
    pub map: Option<Mapped>,
    /// For a compressed sealed segment (`footer` is then its container's,
    /// and offsets in it are not image offsets): where its blocks start,
    /// after the container head, block table and dictionary.
    pub compressed: Option<u64>,
}

impl Found {
    /// The segment's image: the mapped file, or a compressed file decoded
    /// (told by its bytes: a read-only open's handle opens the path again,
    /// which a writer may have compressed since it was first read).
    pub(crate) fn image(&self) -> Result<Mapped> {
        let map = self
            .file
            .map()
            .map_err(|e| Error::io("map", &self.path, e))?;
        match crate::compressed::image_of(&self.name, &map)? {
            std::borrow::Cow::Owned(image) => Ok(Mapped::from_vec(image)),
            std::borrow::Cow::Borrowed(_) => Ok(map),
        }
    }
}

/// The number of leaf hashes in `tree/leaves`, if the file exists.
pub(crate) fn leaf_count(fs: &dyn Vfs, tree_dir: &Path) -> Result<Option<u64>> {
    let path = tree_dir.join(layout::LEAVES);
    if !fs.exists(&path).map_err(|e| Error::io("stat", &path, e))? {
        return Ok(None);
    }
    let file = fs
        .open(&path, OpenMode::Read)
        .map_err(|e| Error::io("open", &path, e))?;
    let len = file.size().map_err(|e| Error::io("stat", &path, e))?;
    Ok(Some(len / crate::tree::LEAF_LEN))
}

/// Segment files in log order (first seq, file name).
pub(crate) fn list_segment_names(fs: &dyn Vfs, segments_dir: &Path) -> Result<Vec<(u64, String)>> {
    if !fs
        .exists(segments_dir)
        .map_err(|e| Error::io("stat", segments_dir, e))?
    {
        return Ok(Vec::new());
    }
    let names = fs
        .read_dir(segments_dir)
        .map_err(|e| Error::io("list", segments_dir, e))?;
    let mut segments: Vec<(u64, String)> = names
        .into_iter()
        .filter_map(|name| layout::parse_segment_file(&name).map(|seq| (seq, name)))
        .collect();
    segments.sort();
    Ok(segments)
}

/// Segment files in log order; removes leftovers of interrupted creations.
pub(super) fn list_segments(
    fs: &dyn Vfs,
    segments_dir: &Path,
    options: &StoreOptions,
    read_only: bool,
) -> Result<Vec<(u64, String)>> {
    if !fs
        .exists(segments_dir)
        .map_err(|e| Error::io("stat", segments_dir, e))?
    {
        return Ok(Vec::new());
    }
    let names = fs
        .read_dir(segments_dir)
        .map_err(|e| Error::io("list", segments_dir, e))?;
    let mut kept_spare = false;
    for name in names {
        if layout::parse_segment_file(&name).is_some() {
            continue;
        }
        let path = segments_dir.join(&name);
        if name.ends_with(&format!(".{}", crate::open_index::EXT)) {
            // Index snapshots of open segments: derived, written without
            // syncs, and only read by read-only opens. A writer starts
            // them again (its indexer writes the active segment's anew).
            if !read_only
                && let Err(e) = fs.remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(file = %path.display(), error = %e, "could not remove an index snapshot");
            }
            continue;
        }
        let leftover = name.ends_with(".tmp");
        let is_spare = !leftover && is_spare_name(&name);
        // Keep one complete spare; a spare of the wrong size (the segment
        // size changed) or a second one is removed.
        let stale_spare = is_spare
            && (kept_spare
                || fs
                    .open(&path, OpenMode::Read)
                    .and_then(|f| f.size())
                    .map_or(true, |len| len != options.segment_size));
        if is_spare && !stale_spare {
            kept_spare = true;
        }
        if (leftover || stale_spare) && !read_only {
            fs.remove_file(&path)
                .map_err(|e| Error::io("remove", &path, e))?;
        } else if !is_spare && !leftover && !name.ends_with(".idx") {
            tracing::warn!(file = %path.display(), "ignoring an unknown file among the segments");
        }
    }
    list_segment_names(fs, segments_dir)
}

pub(super) fn is_spare_name(name: &str) -> bool {
    name == layout::SPARE || name.starts_with(&format!("{}-", layout::SPARE))
}

/// The spare segment file left by a previous run, if any.
pub(super) fn find_spare(fs: &dyn Vfs, segments_dir: &Path) -> Result<Option<PathBuf>> {
    if !fs
        .exists(segments_dir)
        .map_err(|e| Error::io("stat", segments_dir, e))?
    {
        return Ok(None);
    }
    let names = fs
        .read_dir(segments_dir)
        .map_err(|e| Error::io("list", segments_dir, e))?;
    Ok(names
        .into_iter()
        .find(|n| is_spare_name(n))
        .map(|n| segments_dir.join(n)))
}

/// Reads the manifest of an existing store.
pub(crate) fn read_manifest(fs: &dyn Vfs, dir: &Path) -> Result<Manifest> {
    let has_segments = !list_segment_names(fs, &dir.join(layout::SEGMENTS))?.is_empty();
    load_manifest(fs, dir, has_segments, true)
}

pub(super) fn load_manifest(
    fs: &dyn Vfs,
    dir: &Path,
    has_segments: bool,
    read_only: bool,
) -> Result<Manifest> {
    let path = dir.join(layout::MANIFEST);
    match fs::read_all(fs, &path) {
        Ok(bytes) => Manifest::decode(&bytes).map_err(|e| {
            corruption(
                Location::file(layout::MANIFEST).at(0),
                CorruptionKind::Structure(e),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if has_segments {
                return Err(corruption(
                    Location::file(layout::MANIFEST),
                    CorruptionKind::MissingManifest,
                ));
            }
            if read_only {
                return Err(Error::io("open", &path, e));
            }
            let mut store_id = [0u8; 16];
            getrandom::fill(&mut store_id).map_err(|e| {
                Error::io("generate store id", &path, io::Error::other(e.to_string()))
            })?;
            let manifest = Manifest {
                store_id,
                created_at: Timestamp::now(),
            };
            fs::write_atomic(fs, &path, &manifest.encode())?;
            Ok(manifest)
        }
        Err(e) => Err(Error::io("read", &path, e)),
    }
}

pub(crate) fn read_found(
    fs: &dyn Vfs,
    dir: &Path,
    file_name: &str,
    first_seq: u64,
    manifest: &Manifest,
    read_only: bool,
) -> Result<Found> {
    let name = format!("{}/{file_name}", layout::SEGMENTS);
    let path = dir.join(&name);
    let mode = if read_only {
        OpenMode::Read
    } else {
        OpenMode::ReadWrite
    };
    let file = fs
        .open(&path, mode)
        .map_err(|e| Error::io("open", &path, e))?;
    let len = file.size().map_err(|e| Error::io("stat", &path, e))?;
    // One read for either form: the header of a segment, or the container
    // head, header and footer of a compressed one.
    let start_len = sealog_format::compressed::TABLE_OFFSET;
    let mut head = vec![0u8; start_len.min(usize::try_from(len).unwrap_or(start_len))];
    file.read_exact_at(&mut head, 0)
        .map_err(|e| Error::io("read", &path, e))?;
    if crate::compressed::is_compressed(&head) {
        return read_compressed(file, name, path, len, head, first_seq, manifest);
    }
    let header = SegmentHeader::decode(head.get(..HEADER_LEN).unwrap_or(&head))
        .map_err(|e| corruption(Location::file(&name).at(0), CorruptionKind::Structure(e)))?;
    check_header(&name, &header, first_seq, manifest)?;
    // A writer sealing this segment meanwhile cuts the file to its sealed
    // length (and a seal that wrote the footer is complete): a footer read
    // past the new end reads the length again.
    let mut len = len;
    let mut tries = 0;
    let footer = loop {
        match read_footer(&*file, &path, &name, len, &header) {
            Err(e) if tries < 3 && e.io_kind() == Some(io::ErrorKind::UnexpectedEof) => {
                tries += 1;
                len = file.size().map_err(|e| Error::io("stat", &path, e))?;
            }
            read => break read?,
        }
    };
    Ok(Found {
        name,
        path,
        file,
        len,
        header,
        footer,
        map: None,
        compressed: None,
    })
}

/// A segment file's header belongs to this store and to the file's name.
fn check_header(
    name: &str,
    header: &SegmentHeader,
    first_seq: u64,
    manifest: &Manifest,
) -> Result<()> {
    if header.store_id != manifest.store_id {
        return Err(corruption(
            Location::file(name).at(0),
            CorruptionKind::ForeignFile {
                found: hex(&header.store_id),
                expected: hex(&manifest.store_id),
            },
        ));
    }
    if header.first_seq != first_seq {
        return Err(corruption(
            Location::file(name).at(0),
            CorruptionKind::Layout(format!(
                "the file is named for seq {first_seq} but its header says {}",
                header.first_seq
            )),
        ));
    }
    Ok(())
}

/// A segment stored compressed: always sealed (it is written whole under a
/// temporary name and renamed into place), its header and footer read from
/// the container's first bytes, with the head and the file's length
/// checked; its block table and dictionary are checked when a read first
/// needs them, its blocks when read. `start`: the file's first bytes as
/// read (the container head, header and footer, unless the file is
/// shorter).
fn read_compressed(
    file: Arc<dyn VfsFile>,
    name: String,
    path: PathBuf,
    len: u64,
    mut start: Vec<u8>,
    first_seq: u64,
    manifest: &Manifest,
) -> Result<Found> {
    if start.len() < sealog_format::compressed::TABLE_OFFSET {
        start.clear();
    }
    let (header, footer) = sealog_format::compressed::parse_head(&start, len)
        .map_err(|e| crate::compressed::corruption(&name, &e))?;
    check_header(&name, &header, first_seq, manifest)?;
    if footer.record_count == 0 {
        return Err(corruption(
            Location::file(&name),
            CorruptionKind::FieldMismatch {
                field: "record count in footer",
                stored: "0".into(),
                computed: "at least 1".into(),
            },
        ));
    }
    Ok(Found {
        name,
        path,
        file,
        len,
        header,
        footer: Some(footer),
        map: None,
        // The head was checked by `parse_head`.
        compressed: Some(sealog_format::compressed::blocks_offset(&start).unwrap_or_default()),
    })
}

/// The footer at the end of the file, if the file ends in one.
pub(super) fn read_footer(
    file: &dyn VfsFile,
    path: &Path,
    name: &str,
    len: u64,
    header: &SegmentHeader,
) -> Result<Option<SegmentFooter>> {
    let min = (HEADER_LEN + END_MARKER_LEN + FOOTER_LEN) as u64;
    if len < min {
        return Ok(None);
    }
    let mut tail = vec![0u8; FOOTER_LEN];
    file.read_exact_at(&mut tail, len - FOOTER_LEN as u64)
        .map_err(|e| Error::io("read", path, e))?;
    let Ok(footer) = SegmentFooter::decode(&tail) else {
        return Ok(None);
    };
    let location = || Location::file(name).at(len - FOOTER_LEN as u64);
    let mismatch = |field: &'static str, stored: String, computed: String| {
        Err(corruption(
            location(),
            CorruptionKind::FieldMismatch {
                field,
                stored,
                computed,
            },
        ))
    };
    if footer.file_len() != len {
        return mismatch(
            "file length implied by the footer",
            footer.file_len().to_string(),
            len.to_string(),
        );
    }
    if footer.first_seq != header.first_seq {
        return mismatch(
            "first seq in footer",
            footer.first_seq.to_string(),
            header.first_seq.to_string(),
        );
    }
    if footer.segment_no != header.segment_no {
        return mismatch(
            "segment number in footer",
            footer.segment_no.to_string(),
            header.segment_no.to_string(),
        );
    }
    if footer.store_id != header.store_id {
        return mismatch(
            "store id in footer",
            hex(&footer.store_id),
            hex(&header.store_id),
        );
    }
    if footer.record_count == 0 {
        return mismatch("record count in footer", "0".into(), "at least 1".into());
    }
    Ok(Some(footer))
}

/// Counts the last sealed segment as an unfinished seal when its end marker
/// is not intact although its footer is, and a segment follows it.
///
/// The sealer writes the end marker and the footer in one write and syncs
/// the file after; a power loss before that sync can keep the sector of
/// the footer and lose the sector of the marker. Only the last sealed
/// segment can be caught so (seals run one after the other, each synced
/// before the next starts), and its records are whole (they were synced
/// before the next segment was created), so the open seals it again.
pub(crate) fn demote_unfinished_seal(found: &mut [Found]) -> Result<()> {
    let Some(pos) = found.iter().rposition(|f| f.footer.is_some()) else {
        return Ok(());
    };
    if pos + 1 == found.len() {
        return Ok(());
    }
    let Some(last) = found.get_mut(pos) else {
        return Ok(());
    };
    let Some(footer) = last.footer else {
        return Ok(());
    };
    if last.compressed.is_some() {
        // Written whole and renamed into place: never an unfinished seal.
        return Ok(());
    }
    let mut marker = [0u8; END_MARKER_LEN];
    // Through the map when there is one: a read-only open has replaced the
    // handle by one that opens the path again, and a writer may have
    // replaced the file by its compressed form since.
    let at = usize::try_from(footer.frames_end).unwrap_or(usize::MAX);
    match last
        .map
        .as_ref()
        .and_then(|m| m.get(at..at.saturating_add(END_MARKER_LEN)))
    {
        Some(bytes) => marker.copy_from_slice(bytes),
        None => last
            .file
            .read_exact_at(&mut marker, footer.frames_end)
            .map_err(|e| Error::io("read", &last.path, e))?,
    }
    if !sealog_format::frame::is_end_marker(&marker) {
        tracing::warn!(segment = %last.name, "the end marker of the last seal is incomplete; sealing it again");
        last.footer = None;
    }
    Ok(())
}
