//! Retention of local copies: removing local sealed segments once their
//! archived copies were read back from the object store and found
//! identical (`sealog archive --retain-local`, the server's
//! `archive_retain_local`).
//!
//! A segment is removed only when all of these hold: it is sealed and not
//! the newest sealed segment; the archive's manifests cover it (its last
//! record is below the newest manifest's `tree_size`); its newest record
//! was recorded longer ago than the retention; and the archived segment and
//! sidecar, downloaded now, have the SHA-256 their manifest records, which
//! is also the SHA-256 of the local files. The store then records the
//! removal durably (`pruned.log`), appends an `archive.pruned` event, and
//! removes the files ([`sealog::Store::prune_archived`]). Anything that
//! fails keeps the segment, with the reason in the report.

use std::collections::HashMap;
use std::time::Duration;

use sealog::Store;
use sealog::pruned::PrunedSegment;

use crate::error::{ArchiveError, Result};
use crate::layout;
use crate::manifest::{Manifest, parse_hash, sha256_hex};
use crate::upload::{Archiver, read_head, runtime};

/// What a pruning pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Segments removed from the store by this pass.
    pub pruned: Vec<String>,
    /// Records in them.
    pub records: u64,
    /// Bytes of segment and sidecar files removed.
    pub bytes: u64,
    /// Segments old enough and archived, but kept, with the reason.
    pub kept: Vec<(String, String)>,
}

/// An archived object's name, size and SHA-256, and the manifest listing it.
struct Listed {
    sha256: [u8; 32],
    manifest: String,
}

impl Archiver {
    /// [`Archiver::prune_local_async`], blocking.
    pub fn prune_local(&self, store: &Store, retain_local: Duration) -> Result<PruneReport> {
        runtime(&self.runtime)?.block_on(self.prune_local_async(store, retain_local))
    }

    /// Removes from `store` (opened for writing) the sealed segments whose
    /// newest record is older than `retain_local` and whose archived copies
    /// read back identical to the local files (module documentation).
    pub async fn prune_local_async(
        &self,
        store: &Store,
        retain_local: Duration,
    ) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        let Some(head) = read_head(self.target()).await? else {
            return Ok(report);
        };
        let archived = head.manifest.tree_size;
        let now = sealog::Timestamp::now().as_nanos();
        let cutoff = now.saturating_sub(i64::try_from(retain_local.as_nanos()).unwrap_or(i64::MAX));
        let sealed = sealog::image::sealed_segments(store);
        let already: std::collections::HashSet<u64> = store
            .pruned_segments()
            .iter()
            .map(PrunedSegment::first_seq)
            .collect();
        let newest = sealed.last().map(|s| s.header.first_seq);
        let candidates: Vec<_> = sealed
            .iter()
            .filter(|s| {
                !already.contains(&s.header.first_seq)
                    && Some(s.header.first_seq) != newest
                    && s.footer.end_seq() <= archived
                    && s.footer.max_recorded_at.as_nanos() < cutoff
            })
            .collect();
        if candidates.is_empty() {
            return Ok(report);
        }
        let listed = self.listed_objects().await?;
        let mut to_prune = Vec::new();
        let mut sizes = 0u64;
        for s in candidates {
            match self.read_back(s, &listed).await {
                Ok((pruned, bytes)) => {
                    to_prune.push(pruned);
                    sizes += bytes;
                }
                Err(reason) => {
                    tracing::warn!(segment = %s.name, %reason, "keeping a local segment");
                    report.kept.push((s.name.clone(), reason));
                }
            }
        }
        if to_prune.is_empty() {
            return Ok(report);
        }
        store
            .prune_archived(&to_prune)
            .map_err(|e| ArchiveError::store("removing archived segments from the store", e))?;
        report.records = to_prune.iter().map(|p| p.footer.record_count).sum();
        report.pruned = to_prune.iter().map(PrunedSegment::name).collect();
        report.bytes = sizes;
        Ok(report)
    }

    /// Every object the manifests list, with its SHA-256 and manifest.
    async fn listed_objects(&self) -> Result<HashMap<String, Listed>> {
        let mut out = HashMap::new();
        for (name, _) in self.target().list(layout::MANIFESTS).await? {
            if !matches!(layout::parse(&name), Some(layout::ObjectKind::Manifest(_))) {
                continue;
            }
            let bytes = self.target().get(&name).await?.ok_or_else(|| {
                ArchiveError::tampered(name.clone(), "was listed but cannot be read")
            })?;
            let manifest = Manifest::parse(&bytes)
                .map_err(|e| ArchiveError::tampered(name.clone(), e.to_string()))?;
            for o in manifest.objects {
                let sha256 = parse_hash(&o.sha256).ok_or_else(|| {
                    ArchiveError::tampered(
                        name.clone(),
                        format!("lists {} without a SHA-256", o.name),
                    )
                })?;
                out.insert(
                    o.name,
                    Listed {
                        sha256,
                        manifest: name.clone(),
                    },
                );
            }
        }
        Ok(out)
    }

    /// Reads back the archived copy of segment `s` and its sidecar and
    /// compares them with their manifest and with the local files. Returns
    /// the pruned-segment record and the local bytes it frees, or why the
    /// segment must stay.
    async fn read_back(
        &self,
        s: &sealog::image::SealedSegmentInfo,
        listed: &HashMap<String, Listed>,
    ) -> std::result::Result<(PrunedSegment, u64), String> {
        let first = s.header.first_seq;
        let seg_name = layout::segment(first);
        let idx_name = layout::sidecar(first);
        let url = self.target().url();
        let mut hashes = [[0u8; 32]; 2];
        let mut freed = 0u64;
        let mut manifest = String::new();
        let local_dir = s.path.parent().map(std::path::Path::to_path_buf);
        for (i, name) in [&seg_name, &idx_name].into_iter().enumerate() {
            let entry = listed
                .get(name)
                .ok_or_else(|| format!("{name} is listed by no manifest of {url}"))?;
            let archived = match self.target().get(name).await {
                Ok(Some(bytes)) => bytes,
                Ok(None) => return Err(format!("{name} is missing from {url}")),
                Err(e) => return Err(format!("reading {name} back from {url} failed: {e}")),
            };
            let archived_sha = sha256_hex(&archived);
            if parse_hash(&archived_sha) != Some(entry.sha256) {
                return Err(format!(
                    "{name} read back from {url} has SHA-256 {archived_sha}, not the one {} \
                     records",
                    entry.manifest
                ));
            }
            let local_path = match (i, &local_dir) {
                (0, _) => s.path.clone(),
                (_, Some(dir)) => dir.join(format!("{first:020}.idx")),
                (_, None) => return Err("the store's segment directory is unknown".into()),
            };
            match std::fs::read(&local_path) {
                Ok(local) => {
                    let local_sha = sha256_hex(&local);
                    // A store that compresses its segments may have
                    // rewritten this one after it was archived: the same
                    // segment if the images agree.
                    if local_sha != archived_sha
                        && !(i == 0 && sealog::image::same_segment(&local, &archived))
                    {
                        return Err(format!(
                            "{} has SHA-256 {local_sha} locally but {archived_sha} in {url}",
                            local_path.display()
                        ));
                    }
                    freed += local.len() as u64;
                }
                // A sidecar is derived data: a missing one is rebuilt from
                // the segment, and the archived one was compared above.
                Err(e) if i == 1 && e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("reading {} failed: {e}", local_path.display())),
            }
            if let Some(h) = hashes.get_mut(i) {
                *h = entry.sha256;
            }
            if i == 0 {
                manifest.clone_from(&entry.manifest);
            }
        }
        let [segment_sha256, sidecar_sha256] = hashes;
        Ok((
            PrunedSegment {
                header: s.header,
                footer: s.footer,
                segment_sha256,
                sidecar_sha256,
                url: url.to_owned(),
                manifest,
            },
            freed,
        ))
    }
}
