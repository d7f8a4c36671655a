//! Who holds a store's lock, for the message that says the store is in
//! use.
//!
//! The engine takes an exclusive `flock` on the store's `LOCK` file.
//! Linux lists every file lock in `/proc/locks` with the process that took
//! it and the device and inode of the file; the process's command line is
//! in `/proc/PID/cmdline`. Elsewhere, or without permission to read them,
//! the holder is unknown.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

/// The process holding a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// Its process id.
    pub pid: u32,
    /// Its command line, cut to 200 bytes (`?` if unreadable).
    pub command: String,
}

/// The lock file of the store in `dir`, as the engine names it.
const LOCK_FILE: &str = "LOCK";

/// The process holding the lock of the store in `dir`, if it can be found.
pub fn holder(dir: &Path) -> Option<Holder> {
    let meta = std::fs::metadata(dir.join(LOCK_FILE)).ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid = holder_in(
        &locks,
        rustix::fs::major(meta.dev()),
        rustix::fs::minor(meta.dev()),
        meta.ino(),
    )?;
    let command = std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .map(|raw| {
            let text = raw
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(String::from_utf8_lossy)
                .collect::<Vec<_>>()
                .join(" ");
            crate::audit::clean(&text, 200)
        })
        .unwrap_or_else(|| "?".to_owned());
    Some(Holder { pid, command })
}

/// The pid of the lock on the file `major:minor:inode` in the text of
/// `/proc/locks` (`1: FLOCK  ADVISORY  WRITE 1909 08:02:1234 0 EOF`, device
/// numbers in hex; lines with `->` are waiters, and open-file-description
/// locks show pid -1).
fn holder_in(locks: &str, major: u32, minor: u32, inode: u64) -> Option<u32> {
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.contains(&"->") {
            return None;
        }
        let at = fields.iter().position(|f| f.matches(':').count() == 2)?;
        let mut id = fields.get(at)?.split(':');
        let maj = u32::from_str_radix(id.next()?, 16).ok()?;
        let min = u32::from_str_radix(id.next()?, 16).ok()?;
        let ino: u64 = id.next()?.parse().ok()?;
        if (maj, min, ino) != (major, minor, inode) {
            return None;
        }
        fields.get(at.checked_sub(1)?)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn the_holder_is_read_from_proc_locks() {
        let text = "1: POSIX  ADVISORY  WRITE 77 00:1a:99 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 1909 08:02:1234 0 EOF\n\
                    2: -> FLOCK  ADVISORY  WRITE 2000 08:02:1234 0 EOF\n\
                    3: OFDLCK ADVISORY  WRITE -1 08:02:555 0 EOF\n";
        assert_eq!(holder_in(text, 8, 2, 1234), Some(1909));
        assert_eq!(holder_in(text, 0x0, 0x1a, 99), Some(77));
        assert_eq!(holder_in(text, 8, 2, 555), None);
        assert_eq!(holder_in(text, 8, 3, 1234), None);
    }

    #[test]
    fn the_holder_of_a_store_opened_by_this_process_is_this_process() {
        let tmp = tempfile::tempdir().unwrap();
        let store = sealog::Store::open(tmp.path(), sealog::StoreOptions::default()).unwrap();
        let h = holder(tmp.path()).expect("the lock is listed in /proc/locks");
        assert_eq!(h.pid, std::process::id());
        assert!(!h.command.is_empty());
        drop(store);
    }
}
