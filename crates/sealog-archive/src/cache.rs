//! A bounded local cache of archived segments, for reads of segments
//! removed from the store (`pruned.log`): the store asks it for a pruned
//! segment's bytes ([`sealog::pruned::ArchiveSource`]); it serves them from
//! its directory, or downloads `segments/<seq>.seg` from the archive the
//! store recorded, checks the SHA-256 the store recorded, and keeps it,
//! evicting the least recently used files beyond its size limit.
//!
//! The cache directory holds one file per segment,
//! `<store id hex>-<first seq, 20 digits>.seg`, written under a `.tmp`
//! name and renamed; a file's modification time is its last use. Nothing
//! in it is trusted: every file is checked against the store's record
//! before use, and one that differs is removed and downloaded again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sealog::pruned::{ArchiveSource, PrunedSegment};

use crate::manifest::sha256_hex;
use crate::target::{Target, TargetOptions};

/// Default size limit of the cache: 1 GiB.
pub const DEFAULT_CACHE_BYTES: u64 = 1 << 30;

/// A bounded cache of archived segments in a local directory.
pub struct ArchiveCache {
    dir: PathBuf,
    max_bytes: u64,
    target_options: TargetOptions,
    /// An archive to read from instead of the one each segment records.
    url: Option<String>,
    /// Archives opened so far, by URL (a store names its archive for each
    /// pruned segment; usually one).
    targets: Mutex<HashMap<String, Arc<Target>>>,
    /// One download or eviction at a time.
    busy: Mutex<()>,
    runtime: std::sync::OnceLock<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for ArchiveCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveCache")
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl ArchiveCache {
    /// A cache in `dir` (made if missing) of at most `max_bytes` bytes,
    /// reaching archives with `target_options`. A segment larger than the
    /// whole limit is still served, and dropped at the next download.
    pub fn new(
        dir: impl Into<PathBuf>,
        max_bytes: u64,
        target_options: TargetOptions,
    ) -> crate::Result<ArchiveCache> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| crate::ArchiveError::Io {
            op: "create the archive cache directory",
            path: dir.clone(),
            source,
        })?;
        Ok(ArchiveCache {
            dir,
            max_bytes,
            target_options,
            url: None,
            targets: Mutex::new(HashMap::new()),
            busy: Mutex::new(()),
            runtime: std::sync::OnceLock::new(),
        })
    }

    /// Reads every pruned segment from the archive at `url` (a copy or a
    /// new location of the archive) instead of the URL the store recorded
    /// when it removed the segment; `None` keeps the recorded ones.
    pub fn with_url(mut self, url: Option<String>) -> ArchiveCache {
        self.url = url;
        self
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes held now.
    pub fn used_bytes(&self) -> u64 {
        entries(&self.dir).iter().map(|e| e.1).sum()
    }

    fn file(&self, p: &PrunedSegment) -> PathBuf {
        let id: String = p
            .header
            .store_id
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.dir.join(format!("{id}-{:020}.seg", p.first_seq()))
    }

    fn target(&self, url: &str) -> Result<Arc<Target>, String> {
        let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = targets.get(url) {
            return Ok(t.clone());
        }
        let t =
            Arc::new(Target::open(url, self.target_options.clone()).map_err(|e| e.to_string())?);
        targets.insert(url.to_owned(), t.clone());
        Ok(t)
    }

    fn download(&self, p: &PrunedSegment) -> Result<Vec<u8>, String> {
        let target = self.target(self.url.as_deref().unwrap_or(&p.url))?;
        let rt = crate::upload::runtime(&self.runtime).map_err(|e| e.to_string())?;
        let name = crate::layout::segment(p.first_seq());
        // On a thread of its own: the caller may be inside another runtime
        // (a server's), where blocking on this one is not allowed.
        let got = std::thread::scope(|scope| {
            scope
                .spawn(|| rt.block_on(target.get(&name)))
                .join()
                .unwrap_or_else(|_| {
                    Err(crate::ArchiveError::config(
                        "the download thread panicked",
                        "report this",
                    ))
                })
        });
        match got {
            Ok(Some(bytes)) => Ok(bytes.to_vec()),
            Ok(None) => Err(format!("the archive has no object {name}")),
            Err(e) => Err(format!("downloading {name} failed: {e}")),
        }
    }

    /// Removes the least recently used files until the cache holds at most
    /// its limit, never `keep`.
    fn evict(&self, keep: &Path) {
        let mut all = entries(&self.dir);
        let mut total: u64 = all.iter().map(|e| e.1).sum();
        all.sort_by_key(|e| e.2);
        for (path, size, _) in all {
            if total <= self.max_bytes {
                break;
            }
            if path == keep {
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(size);
            }
        }
    }
}

/// The cache's segment files: path, size, last use.
fn entries(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    read.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((e.path(), meta.len(), meta.modified().ok()?))
        })
        .collect()
}

impl ArchiveSource for ArchiveCache {
    fn fetch_segment(&self, p: &PrunedSegment) -> sealog::Result<Arc<Vec<u8>>> {
        let fail = |reason: String| sealog::Error::Archived {
            segment: p.name().into(),
            first_seq: p.first_seq(),
            end_seq: p.end_seq(),
            url: self.url.clone().unwrap_or_else(|| p.url.clone()).into(),
            reason: reason.into(),
        };
        let expected: String = p
            .segment_sha256
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let _busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.file(p);
        if let Ok(bytes) = std::fs::read(&path) {
            if sha256_hex(&bytes) == expected {
                // Its last use, for eviction.
                if let Ok(f) = std::fs::File::options().append(true).open(&path) {
                    let _ = f.set_modified(std::time::SystemTime::now());
                }
                return Ok(Arc::new(bytes));
            }
            tracing::warn!(file = %path.display(), "a cached segment differs from its record; downloading it again");
            let _ = std::fs::remove_file(&path);
        }
        let bytes = self.download(p).map_err(fail)?;
        let got = sha256_hex(&bytes);
        if got != expected {
            return Err(fail(format!(
                "the archived copy has SHA-256 {got}, not {expected} as recorded in pruned.log \
                 when it was removed: the archive no longer holds what was removed (keep it as \
                 evidence; `sealog verify --archive {}` names what changed)",
                p.url
            )));
        }
        let tmp = path.with_extension("seg.tmp");
        let written = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, &path));
        match written {
            // The copy is served even if it cannot be kept (a full disk).
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "could not keep a fetched segment in the cache");
                let _ = std::fs::remove_file(&tmp);
            }
            Ok(()) => self.evict(&path),
        }
        Ok(Arc::new(bytes))
    }
}
