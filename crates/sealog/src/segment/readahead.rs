//! Read-ahead of a sealed segment: asking the kernel, without waiting,
//! for the index blocks, index sections and frames (or compressed blocks)
//! a search is about to read, so that the disk reads them together.

use super::SealedSegment;

/// Bytes asked for from each frame's offset when frames are read ahead:
/// a ~300-byte record and the rest of its page, or the next page when it
/// straddles one (a larger frame faults its remaining pages in when read).
const PREFETCH_FRAME_BYTES: usize = 1024;

/// Frames closer than this share one read-ahead request (the pages
/// between them come along: cheaper than a system call each).
const PREFETCH_GAP: usize = 16 * 1024;

impl SealedSegment {
    /// Asks the kernel to read the index columns this segment's records
    /// are found through (when its index is loaded and they are not
    /// checked yet), without waiting: see [`crate::sidecar::Sidecar::advise_columns`].
    pub(crate) fn advise_columns(&self) {
        if self.remote.is_some() {
            return;
        }
        if let Some(index) = self.index.read().clone() {
            index.advise_columns();
        }
    }

    /// Asks the kernel to read the index blocks that hold the frame
    /// offsets of `ordinals` (when the index is loaded and they are not
    /// checked yet), without waiting: see [`crate::sidecar::Sidecar::advise_offsets`].
    pub(crate) fn advise_offsets(&self, ordinals: &[u32]) {
        if self.remote.is_some() || ordinals.is_empty() {
            return;
        }
        if let Some(index) = self.index.read().clone() {
            index.advise_offsets(ordinals);
        }
        // A compressed file's block table and dictionary, read when its
        // records are (`will_need` comes next, for every segment).
        if let Some(cell) = &self.packed
            && cell.get().is_none()
        {
            crate::compressed::advise_table(&self.map, self.blocks_at);
        }
    }

    /// Asks the kernel to read the index sections `sections` of this
    /// segment that are not checked yet, without waiting: see
    /// [`crate::sidecar::Sidecar::advise_sections`]. Maps the sidecar if it is not mapped
    /// yet (never rebuilds it: planning does that, and says so).
    pub(crate) fn advise_sections(&self, sections: &[crate::search::SectionUse]) {
        if self.remote.is_some() {
            return;
        }
        let loaded = self.index.read().clone();
        let index = match loaded {
            Some(index) => index,
            None => match self.map_sidecar(&mut self.index.write()) {
                Ok(index) => index,
                Err(_) => return,
            },
        };
        index.advise_sections(sections);
    }

    /// [`crate::sidecar::Sidecar::advise_lookups`] for this segment's
    /// sidecar, if it is mapped (by [`SealedSegment::advise_sections`]).
    pub(crate) fn advise_lookups(&self, sections: &[crate::search::SectionUse]) {
        if self.remote.is_some() {
            return;
        }
        let loaded = self.index.read().clone();
        if let Some(index) = loaded {
            index.advise_lookups(sections);
        }
    }

    /// Whether [`SealedSegment::advise_columns`] has nothing left to do
    /// (its columns were advised, or cannot be: no index loaded, remote).
    pub(crate) fn columns_advised(&self) -> bool {
        self.remote.is_some()
            || self
                .index
                .read()
                .as_ref()
                .is_none_or(|index| index.columns_advised())
    }

    /// Asks the kernel to read the frames of records `ordinals` into the
    /// page cache now, all at once, so that reading them one after the
    /// other does not wait for the disk once per record (a cold record is a
    /// random read). Frames are found through the loaded index (or the
    /// offsets already walked); nearby frames share one request. Only
    /// advice: nothing is read or checked here, and nothing fails.
    pub(crate) fn will_need(&self, ordinals: &[u32]) {
        if self.remote.is_some() || ordinals.is_empty() {
            return;
        }
        let loaded = self.index.read().clone();
        let mut offsets = match loaded {
            Some(index) => index.offsets(ordinals).unwrap_or_default(),
            None => match self.offsets.get() {
                Some(walked) => ordinals
                    .iter()
                    .filter_map(|&o| walked.offsets.get(o as usize).copied())
                    .collect(),
                None => return,
            },
        };
        offsets.sort_unstable();
        if let Some(packed) = self.packed() {
            if let Ok(packed) = packed {
                packed.will_need(&self.map, &offsets);
            }
            return;
        }
        let mut span: Option<(usize, usize)> = None;
        for offset in offsets {
            let (start, end) = (offset as usize, offset as usize + PREFETCH_FRAME_BYTES);
            span = match span {
                Some((s, e)) if start <= e + PREFETCH_GAP => Some((s, end.max(e))),
                Some((s, e)) => {
                    self.map.will_need(s, e - s);
                    Some((start, end))
                }
                None => Some((start, end)),
            };
        }
        if let Some((s, e)) = span {
            self.map.will_need(s, e - s);
        }
    }
}
