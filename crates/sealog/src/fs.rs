//! The filesystem, behind a small trait.
//!
//! Every byte the engine reads or writes goes through [`Vfs`] and
//! [`VfsFile`], so tests can substitute a filesystem that fails a chosen
//! write or sync, runs out of space, or tears a write in half
//! ([`crate::fault::FaultFs`], behind the `fault-injection` feature), and
//! check that the engine keeps its promises when the disk does not.
//!
//! [`StdFs`] is the real thing: positioned reads and writes on `std::fs`,
//! `fdatasync` for [`VfsFile::sync_data`], `fallocate` for preallocation and
//! `flock` for the store lock.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::mmap::Mapped;

/// How to open a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    ReadWrite,
    /// Read and write; the file must not exist yet.
    CreateNew,
}

/// A filesystem as the engine uses it.
pub trait Vfs: Send + Sync + fmt::Debug {
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries of a directory.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Opens a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>>;
    /// Renames a file, replacing the destination.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes a directory's entries (new files, renames) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// True if the path exists.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Takes an exclusive advisory lock on the file at `path` (creating it),
    /// held until the returned guard is dropped. Fails with
    /// `io::ErrorKind::WouldBlock` if another process holds it.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>>;
}

/// Holds a lock taken with [`Vfs::lock`] until dropped.
pub trait LockGuard: Send + Sync + fmt::Debug {}

/// An open file as the engine uses it: positioned I/O only, no cursor.
pub trait VfsFile: Send + Sync + fmt::Debug {
    /// Fills `buf` from `offset`; an early end of file is an error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// [`VfsFile::read_exact_at`] if every byte is in memory now: `true`
    /// when `buf` was filled without waiting for a disk, `false` when the
    /// read would have waited (nothing is then to be taken from `buf`), or
    /// when the file cannot tell (the default).
    fn read_exact_at_now(&self, _buf: &mut [u8], _offset: u64) -> io::Result<bool> {
        Ok(false)
    }
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Writes the buffers one after the other from `offset` (one system
    /// call where the platform allows).
    fn write_all_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        let mut at = offset;
        for buf in bufs {
            self.write_all_at(buf, at)?;
            at += buf.len() as u64;
        }
        Ok(())
    }
    /// Makes written data durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Makes written data and all metadata durable (`fsync`).
    fn sync_all(&self) -> io::Result<()>;
    /// The file's length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Allocates blocks for `[0, len)` without writing them.
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// Maps the whole file read-only. Only for files whose bytes are never
    /// written again (sealed segments; index snapshots, only appended to),
    /// or of which only bytes never written again are read (the committed
    /// frames of an open segment).
    fn map(&self) -> io::Result<Mapped>;
    /// Tells the kernel that bytes `offset..offset + len` will be read
    /// soon, so that it reads them now, with any others asked for, rather
    /// than at the read. Only advice: nothing fails, no byte changes.
    fn will_need(&self, _offset: u64, _len: u64) {}
    /// Frees the disk blocks of bytes `offset..offset + len`, which read as
    /// zeros afterwards; the file keeps its length. Not synced. Fails with
    /// `io::ErrorKind::Unsupported` where the platform or filesystem cannot
    /// (the bytes are then unchanged).
    fn punch_hole(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this filesystem cannot free a file's blocks in place",
        ))
    }
}

/// The real filesystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdFs;

#[derive(Debug)]
struct StdFile {
    file: File,
}

#[derive(Debug)]
struct StdLock {
    _file: File,
}

impl LockGuard for StdLock {}

impl Vfs for StdFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        let mut options = OpenOptions::new();
        match mode {
            OpenMode::Read => options.read(true),
            OpenMode::ReadWrite => options.read(true).write(true),
            OpenMode::CreateNew => options.read(true).write(true).create_new(true),
        };
        Ok(Arc::new(StdFile {
            file: options.open(path)?,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| {
                let err = io::Error::from(e);
                if err.kind() == io::ErrorKind::WouldBlock {
                    io::Error::new(io::ErrorKind::WouldBlock, "held by another process")
                } else {
                    err
                }
            },
        )?;
        Ok(Box::new(StdLock { _file: file }))
    }
}

impl VfsFile for StdFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    /// `preadv2` with `RWF_NOWAIT`: the kernel copies what the page cache
    /// holds and refuses (`EAGAIN`) or stops short rather than read the
    /// disk.
    #[cfg(target_os = "linux")]
    fn read_exact_at_now(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        let want = buf.len();
        let mut bufs = [io::IoSliceMut::new(buf)];
        match rustix::io::preadv2(
            &self.file,
            &mut bufs,
            offset,
            rustix::io::ReadWriteFlags::NOWAIT,
        ) {
            Ok(n) => Ok(n == want),
            // Would wait; or a kernel or filesystem without the flag (or
            // without the call).
            Err(
                rustix::io::Errno::AGAIN
                | rustix::io::Errno::OPNOTSUPP
                | rustix::io::Errno::NOSYS
                | rustix::io::Errno::INVAL,
            ) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    #[cfg(target_os = "linux")]
    #[allow(unsafe_code, reason = "posix_fadvise has no safe wrapper in std")]
    fn will_need(&self, offset: u64, len: u64) {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len))
        else {
            return;
        };
        // SAFETY: posix_fadvise only reads its integer arguments; the
        // descriptor is this file's, open for the call's duration.
        let _ = unsafe {
            libc::posix_fadvise(
                self.file.as_raw_fd(),
                offset,
                len,
                libc::POSIX_FADV_WILLNEED,
            )
        };
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn write_all_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        // pwritev may write less than asked: continue from where it stopped.
        let mut skip = 0usize;
        let mut at = offset;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        while skip < total {
            let mut slices = Vec::with_capacity(bufs.len());
            let mut seen = 0usize;
            for buf in bufs {
                let end = seen + buf.len();
                if end > skip {
                    let from = skip.saturating_sub(seen);
                    // A slice left out would shift every later byte.
                    let rest = buf
                        .get(from..)
                        .expect("this buffer ends after `skip`, so `from` lies inside it");
                    slices.push(io::IoSlice::new(rest));
                }
                seen = end;
                if slices.len() >= 1024 {
                    break; // IOV_MAX
                }
            }
            let n = rustix::io::pwritev(&self.file, &slices, at).map_err(io::Error::from)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "pwritev wrote nothing",
                ));
            }
            skip += n;
            at += n as u64;
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        rustix::fs::fallocate(&self.file, rustix::fs::FallocateFlags::empty(), 0, len)
            .map_err(io::Error::from)
    }

    #[cfg(target_os = "linux")]
    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        use rustix::fs::FallocateFlags;
        rustix::fs::fallocate(
            &self.file,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            offset,
            len,
        )
        .map_err(|e| {
            if e == rustix::io::Errno::OPNOTSUPP {
                io::Error::new(io::ErrorKind::Unsupported, e)
            } else {
                io::Error::from(e)
            }
        })
    }

    fn map(&self) -> io::Result<Mapped> {
        Mapped::map(&self.file)
    }
}

/// A file opened again, read-only, for each call, holding no descriptor in
/// between: what an open keeps of a sealed segment file once it is mapped.
/// Opening a store otherwise holds a descriptor per segment at once, and a
/// process at the soft limit of 1,024 descriptors many systems start with
/// cannot open a store of ~1,000 segments. After the mapping, the open
/// reads such a file once at most (the end marker of the last sealed
/// segment; a segment whose seal turns out unfinished gets a real handle
/// again). Writes are refused.
#[derive(Debug)]
pub(crate) struct Reopening {
    fs: Arc<dyn Vfs>,
    path: PathBuf,
}

impl Reopening {
    pub(crate) fn new(fs: Arc<dyn Vfs>, path: PathBuf) -> Reopening {
        Reopening { fs, path }
    }

    fn file(&self) -> io::Result<Arc<dyn VfsFile>> {
        self.fs.open(&self.path, OpenMode::Read)
    }
}

fn read_only(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{} is open for reading only", path.display()),
    )
}

impl VfsFile for Reopening {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file()?.read_exact_at(buf, offset)
    }

    fn read_exact_at_now(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        self.file()?.read_exact_at_now(buf, offset)
    }

    fn write_all_at(&self, _: &[u8], _: u64) -> io::Result<()> {
        Err(read_only(&self.path))
    }

    fn sync_data(&self) -> io::Result<()> {
        Err(read_only(&self.path))
    }

    fn sync_all(&self) -> io::Result<()> {
        Err(read_only(&self.path))
    }

    fn size(&self) -> io::Result<u64> {
        self.file()?.size()
    }

    fn set_len(&self, _: u64) -> io::Result<()> {
        Err(read_only(&self.path))
    }

    fn allocate(&self, _: u64) -> io::Result<()> {
        Err(read_only(&self.path))
    }

    fn map(&self) -> io::Result<Mapped> {
        self.file()?.map()
    }
}

/// Writes a small file atomically: a temporary file is written and synced,
/// renamed over `path`, and the directory synced. A failure names the step
/// that failed and the file it failed on (the temporary file for the
/// write and the sync), so "fsync of segments/….idx.tmp failed" is not
/// reported as a failed write of the final file. A temporary file that
/// could not be installed is removed.
pub fn write_atomic(fs: &dyn Vfs, path: &Path, bytes: &[u8]) -> crate::Result<()> {
    use crate::Error;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let Some(tmp) = tmp_path(path) else {
        return Err(Error::io(
            "write",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "not the path of a file"),
        ));
    };
    if fs.exists(&tmp).map_err(|e| Error::io("stat", &tmp, e))? {
        fs.remove_file(&tmp)
            .map_err(|e| Error::io("remove", &tmp, e))?;
    }
    let file = fs
        .open(&tmp, OpenMode::CreateNew)
        .map_err(|e| Error::io("create", &tmp, e))?;
    let installed = file
        .write_all_at(bytes, 0)
        .map_err(|e| Error::io("write", &tmp, e))
        .and_then(|()| file.sync_all().map_err(|e| Error::io("fsync", &tmp, e)))
        .and_then(|()| {
            drop(file);
            fs.rename(&tmp, path)
                .map_err(|e| Error::io("rename", &tmp, e))
        });
    if let Err(e) = installed {
        // Best effort: the failure matters more, and the next write (or
        // recovery, among the segments) removes a leftover anyway.
        let _ = fs.remove_file(&tmp);
        return Err(e);
    }
    fs.sync_dir(dir)
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Creates directories (and their missing parents) and makes their entries
/// durable: each directory a new one was created in is synced once, top
/// down. A new directory's name is metadata of its parent, which only a
/// sync of the parent makes durable: without it a power loss can take the
/// whole store, or its `segments/`, with it.
pub(crate) fn create_dirs(fs: &dyn Vfs, paths: &[&Path]) -> crate::Result<()> {
    use crate::Error;
    let mut parents: Vec<PathBuf> = Vec::new();
    for path in paths {
        let mut missing = Vec::new();
        let mut at: &Path = path;
        while !fs.exists(at).map_err(|e| Error::io("stat", at, e))? {
            missing.push(at.to_owned());
            match at.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => at = parent,
                _ => break,
            }
        }
        if missing.is_empty() {
            continue;
        }
        fs.create_dir_all(path)
            .map_err(|e| Error::io("create directory", path, e))?;
        for created in missing.iter().rev() {
            let parent = match created.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                _ => PathBuf::from("."),
            };
            if !parents.contains(&parent) {
                parents.push(parent);
            }
        }
    }
    // Shorter paths first: a parent before its children.
    parents.sort_by_key(|p| p.components().count());
    for parent in &parents {
        fs.sync_dir(parent)
            .map_err(|e| Error::io("fsync directory", parent, e))?;
    }
    Ok(())
}

/// Reads a whole (small) file.
pub fn read_all(fs: &dyn Vfs, path: &Path) -> io::Result<Vec<u8>> {
    let file = fs.open(path, OpenMode::Read)?;
    let len = usize::try_from(file.size()?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// The temporary name of `path` (`None` if it names no file).
fn tmp_path(path: &Path) -> Option<PathBuf> {
    let mut name = path.file_name()?.to_os_string();
    name.push(".tmp");
    Some(path.with_file_name(name))
}

/// Grows this process's table of file descriptors, at once, to hold
/// `count` more descriptors than the lowest one free now: an open's
/// threads open a store's segment files together (closing each sealed one
/// once it is mapped), and queries open a sidecar per segment they reach.
/// Linux grows
/// the table by doubling it, and while the process has more than one
/// thread each growth waits for an RCU grace period (15.7 ms measured on
/// a 2-core machine), in whichever thread opens the descriptor that does
/// not fit. One growth here, before those threads start, instead of one
/// at each power of two the store's segments cross. Best effort: without
/// a descriptor to copy, or past the process's limit, the table grows as
/// it would have.
pub(crate) fn reserve_descriptors(dir: &Path, count: usize) {
    use std::os::fd::AsRawFd;
    let Ok(probe) = File::open(dir) else {
        return;
    };
    let lowest = usize::try_from(probe.as_raw_fd()).unwrap_or(0);
    // Some room for the descriptors the process opens meanwhile.
    let Ok(highest) = i32::try_from(lowest.saturating_add(count).saturating_add(64)) else {
        return;
    };
    // The copy itself is closed at once; the table keeps its size.
    drop(rustix::io::fcntl_dupfd_cloexec(&probe, highest));
}

/// Asks the kernel to drop `file`'s pages from the page cache until
/// `dropped` says they are gone, a few times at most; whether they went.
/// The kernel may keep a page it is still busy with (seen on a loaded
/// machine running the suite), so a test that needs a cold file asks
/// again rather than once.
#[cfg(test)]
pub(crate) fn drop_from_page_cache(file: &File, mut dropped: impl FnMut() -> bool) -> bool {
    for _ in 0..20 {
        rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        if dropped() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn a_read_that_would_wait_for_the_disk_is_refused_not_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let file = StdFs.open(&path, OpenMode::Read).unwrap();
        file.sync_all().unwrap();
        let mut buf = [0u8; 4096];
        assert!(file.read_exact_at_now(&mut buf, 8192).unwrap());
        assert_eq!(buf[..], bytes[8192..8192 + 4096]);
        // Out of the page cache (written back above): the read would wait.
        let std_file = File::open(&path).unwrap();
        let refused = super::drop_from_page_cache(&std_file, || {
            !file.read_exact_at_now(&mut buf, 8192).unwrap()
        });
        assert!(refused, "a read of pages not in the page cache was made");
        // A read that waits brings it back.
        file.read_exact_at(&mut buf, 8192).unwrap();
        assert!(file.read_exact_at_now(&mut buf, 8192).unwrap());
        // Past the end: not filled.
        assert!(!file.read_exact_at_now(&mut buf, 63 * 1024).unwrap());
    }

    #[test]
    fn an_atomic_write_to_a_path_without_a_file_name_is_refused_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        StdFs.create_dir_all(&sub).unwrap();
        let err = write_atomic(&StdFs, &sub.join(".."), b"bytes").unwrap_err();
        assert!(err.to_string().contains("not the path of a file"), "{err}");
        assert_eq!(StdFs.read_dir(dir.path()).unwrap(), ["sub"]);
        assert!(StdFs.read_dir(&sub).unwrap().is_empty());
    }

    /// The kernel's table size, as `/proc/self/status` states it.
    #[cfg(target_os = "linux")]
    fn descriptor_table_size() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reserving_descriptors_grows_the_table_once_for_all_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let lowest = {
            use std::os::fd::AsRawFd;
            File::open(dir.path()).unwrap().as_raw_fd() as usize
        };
        // Beyond anything this test process has open.
        let count = descriptor_table_size().max(lowest) + 200;
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        if (lowest + count + 64) as u64 >= limit {
            eprintln!("skipped: a limit of {limit} descriptors leaves no room to reserve {count}");
            return;
        }
        super::reserve_descriptors(dir.path(), count);
        let size = descriptor_table_size();
        assert!(
            size >= lowest + count,
            "table of {size} after reserving {count} past {lowest}"
        );
        // Opening that many files now grows nothing.
        let files: Vec<File> = (0..count.min(900))
            .map(|_| File::open(dir.path()).unwrap())
            .collect();
        assert_eq!(descriptor_table_size(), size);
        drop(files);
    }
}
