//! The forwarder's cursor: the next seq to send, persisted in the data
//! directory after the receiver acknowledged everything before it.
//!
//! The file is small text, replaced atomically (a temporary file, fsync,
//! rename, fsync of the directory), so a crash leaves either the old or the
//! new cursor, never a torn one:
//!
//! ```text
//! sealog-forward-cursor 1
//! store 0123456789abcdef0123456789abcdef
//! destination syslog+tls://siem.example.com:6514
//! next_seq 120000
//! ```
//!
//! A lock file beside it (`<cursor>.lock`, an `flock`) keeps two
//! forwarders from sharing one cursor.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::ExportError;

const MAGIC: &str = "sealog-forward-cursor 1";

/// A persisted cursor, locked for this process.
#[derive(Debug)]
pub struct Cursor {
    path: PathBuf,
    store: String,
    destination: String,
    next: u64,
    _lock: File,
}

/// The directory of the default cursors: `<data dir>/forward`.
pub fn default_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("forward")
}

/// A file name made of a destination's host and port (or a given name):
/// letters, digits, `-`, `_` and `.` kept, anything else `_`.
pub fn file_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{cleaned}.cursor")
}

impl Cursor {
    /// Opens (and locks) the cursor at `path`; `None` inside when no cursor
    /// was written yet. `store` is the store id (hex): a cursor written for
    /// another store is refused.
    pub fn open(
        path: &Path,
        store: &str,
        destination: &str,
    ) -> Result<(Cursor, Option<u64>), ExportError> {
        let io = |what: &'static str, p: &Path| {
            let p = p.to_owned();
            move |source| ExportError::Io {
                what,
                path: p,
                source,
            }
        };
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(io("cannot create the directory", parent))?;
        }
        let lock_path = PathBuf::from(format!("{}.lock", path.display()));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("cannot open the lock file", &lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |_| ExportError::CursorLocked {
                path: path.to_owned(),
            },
        )?;
        let saved = match std::fs::read_to_string(path) {
            Ok(text) => Some(parse(path, &text, store)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("cannot read the cursor", path)(e)),
        };
        Ok((
            Cursor {
                path: path.to_owned(),
                store: store.to_owned(),
                destination: destination.to_owned(),
                next: saved.unwrap_or(0),
                _lock: lock,
            },
            saved,
        ))
    }

    /// The next seq to send, as last persisted.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Persists `next` durably (atomic replace). Moving back is allowed:
    /// after a lost connection the forwarder resends.
    pub fn save(&mut self, next: u64) -> Result<(), ExportError> {
        if next == self.next && self.path.exists() {
            return Ok(());
        }
        let text = format!(
            "{MAGIC}\nstore {}\ndestination {}\nnext_seq {next}\n",
            self.store, self.destination
        );
        let temp = PathBuf::from(format!("{}.tmp", self.path.display()));
        let io = |what: &'static str, p: &Path| {
            let p = p.to_owned();
            move |source| ExportError::Io {
                what,
                path: p,
                source,
            }
        };
        let mut file = File::create(&temp).map_err(io("cannot create", &temp))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io("cannot write", &temp))?;
        drop(file);
        std::fs::rename(&temp, &self.path).map_err(io("cannot rename into", &self.path))?;
        if let Some(parent) = self.path.parent() {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(io("cannot sync the directory", parent))?;
        }
        self.next = next;
        Ok(())
    }
}

fn parse(path: &Path, text: &str, store: &str) -> Result<u64, ExportError> {
    let bad = |reason: String| ExportError::BadCursor {
        path: path.to_owned(),
        reason,
    };
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        return Err(bad(format!("the first line is not `{MAGIC}`")));
    }
    let mut next = None;
    for (n, line) in lines.enumerate() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "store" if value != store => {
                return Err(bad(format!(
                    "it was written for store {value}, and this store is {store}"
                )));
            }
            "next_seq" => {
                next = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| bad(format!("line {}: `{value}` is not a seq", n + 2)))?,
                );
            }
            _ => {}
        }
    }
    next.ok_or_else(|| bad("it has no `next_seq` line".into()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn a_saved_cursor_is_read_back_and_locked_against_a_second_opener() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("forward/siem.cursor");
        let (mut cursor, saved) = Cursor::open(&path, "aa", "syslog+tcp://h:1").unwrap();
        assert_eq!(saved, None);
        cursor.save(4471).unwrap();
        assert!(matches!(
            Cursor::open(&path, "aa", "syslog+tcp://h:1"),
            Err(ExportError::CursorLocked { .. })
        ));
        drop(cursor);
        let (cursor, saved) = Cursor::open(&path, "aa", "syslog+tcp://h:1").unwrap();
        assert_eq!(saved, Some(4471));
        assert_eq!(cursor.next(), 4471);
        assert!(!tmp.path().join("forward/siem.cursor.tmp").exists());
    }

    #[test]
    fn a_cursor_of_another_store_or_garbage_is_refused_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("c.cursor");
        let (mut cursor, _) = Cursor::open(&path, "aa", "d").unwrap();
        cursor.save(5).unwrap();
        drop(cursor);
        let e = Cursor::open(&path, "bb", "d").unwrap_err();
        assert!(e.to_string().contains("c.cursor"), "{e}");
        assert!(e.to_string().contains("store aa"), "{e}");
        std::fs::write(&path, "sealog-forward-cursor 1\nnext_seq x\n").unwrap();
        let e = Cursor::open(&path, "aa", "d").unwrap_err();
        assert!(e.to_string().contains("`x` is not a seq"), "{e}");
        std::fs::write(&path, "hello\n").unwrap();
        assert!(matches!(
            Cursor::open(&path, "aa", "d"),
            Err(ExportError::BadCursor { .. })
        ));
    }
}
