//! The continuity checks of an open: each segment starts where the one
//! before ended (number, seq, chain value). [`Links`] walks the segments in
//! log order; [`Findings`] decides what a problem does (refuse, or note it
//! and read around it).

use sealog_format::Hash;
use sealog_format::segment::{Manifest, SegmentFooter};

use super::corruption;
use super::files::Found;
use super::scan::ScanResult;
use crate::damage::{Damage, KnownAbsent};
use crate::error::{CorruptionKind, Error, Location, Result};
use crate::layout;

/// What the checks of an open found, and what to do about it: a store
/// opened for writing, or read-only without [`crate::OnDamage::ReadAround`],
/// refuses at the first problem; one reading around damage notes it and
/// goes on.
pub(super) struct Findings {
    pub(super) read_around: bool,
    pub(super) damage: Vec<Damage>,
}

impl Findings {
    /// Handles a problem that makes `first_seq..end_seq` unreadable.
    pub(super) fn found(&mut self, e: Error, first_seq: u64, end_seq: Option<u64>) -> Result<()> {
        match e {
            Error::Corruption(c) if self.read_around => {
                tracing::info!(corruption = %c, "reading around damage");
                self.damage.push(Damage::new(*c, first_seq, end_seq));
                Ok(())
            }
            other => Err(other),
        }
    }
}

/// Where the segment checked next must start: the continuity check's
/// state as it walks the segments in log order.
pub(super) struct Links {
    /// The number, first seq and chain value the next segment must have;
    /// `None` after damage, when the next segment present starts a new run
    /// (its link to what came before cannot be checked).
    pub(super) expect: Option<(u64, u64, Hash)>,
    /// Every seq below this is either in a segment taken or reported as
    /// damage.
    pub(super) covered: u64,
    /// The segment number after the last segment taken or skipped.
    pub(super) next_no: u64,
    pub(super) last_recorded: Option<i64>,
}

impl Links {
    pub(super) fn new(genesis: Hash) -> Links {
        Links {
            expect: Some((0, 0, genesis)),
            covered: 0,
            next_no: 0,
            last_recorded: None,
        }
    }

    /// Checks that `f` follows what came before. Returns false if `f` must
    /// be skipped (reading around damage only; otherwise the problem is
    /// returned). A gap before `f` is reported, and `f` is taken.
    pub(super) fn accept(
        &mut self,
        f: &Found,
        next_first_seq: Option<u64>,
        absent: &KnownAbsent,
        findings: &mut Findings,
    ) -> Result<bool> {
        let h = &f.header;
        let own_end = f.footer.map(|footer| footer.end_seq()).or(next_first_seq);
        match self.expect {
            Some((no, seq, chain)) => match check_link(f, no, seq, &chain) {
                Ok(()) => Ok(true),
                Err(Error::Corruption(c))
                    if matches!(c.kind, CorruptionKind::MissingSegment { .. }) =>
                {
                    if !absent.covers(no..h.segment_no) {
                        // Reported: the log goes on at `f`, whose link to
                        // the records before the gap cannot be checked.
                        findings.found(Error::Corruption(c), seq, Some(h.first_seq))?;
                        return Ok(true);
                    }
                    // Archived, then pruned: `pruned.log` keeps their
                    // headers and footers, so the chain is checked across
                    // them, up to `f`.
                    let linked = absent
                        .link_run(no..h.segment_no, seq, chain)
                        .and_then(|(seq, chain)| check_link(f, h.segment_no, seq, &chain));
                    if let Err(e) = linked {
                        findings.found(e, h.first_seq.max(self.covered), own_end)?;
                        self.skipped(f, own_end);
                        return Ok(false);
                    }
                    Ok(true)
                }
                Err(e) => {
                    findings.found(e, h.first_seq.max(self.covered), own_end)?;
                    self.skipped(f, own_end);
                    Ok(false)
                }
            },
            None => {
                if h.first_seq < self.covered || h.segment_no < self.next_no {
                    let e = corruption(
                        Location::file(&f.name).at(0),
                        CorruptionKind::Layout(format!(
                            "segment number {} starting at seq {} overlaps what comes before \
                             it (segments up to {} and seqs up to {})",
                            h.segment_no,
                            h.first_seq,
                            self.next_no.saturating_sub(1),
                            self.covered.saturating_sub(1)
                        )),
                    );
                    findings.found(e, h.first_seq.max(self.covered), own_end)?;
                    self.skipped(f, own_end);
                    return Ok(false);
                }
                if h.first_seq > self.covered && !absent.covers(self.next_no..h.segment_no) {
                    let e = corruption(
                        Location::file(layout::segment_name(self.covered)),
                        CorruptionKind::MissingSegment {
                            expected_segment_no: self.next_no,
                            expected_first_seq: self.covered,
                            next_segment_no: h.segment_no,
                            next_first_seq: h.first_seq,
                        },
                    );
                    findings.found(e, self.covered, Some(h.first_seq))?;
                }
                Ok(true)
            }
        }
    }

    pub(super) fn skipped(&mut self, f: &Found, end: Option<u64>) {
        self.expect = None;
        self.covered = self.covered.max(end.unwrap_or(f.header.first_seq));
        self.next_no = self.next_no.max(f.header.segment_no + 1);
    }

    /// `f` was taken whole, ending with `footer`.
    pub(super) fn sealed(&mut self, f: &Found, footer: &SegmentFooter) {
        self.expect = Some((f.header.segment_no + 1, footer.end_seq(), footer.chain_head));
        self.covered = footer.end_seq();
        self.next_no = f.header.segment_no + 1;
        self.last_recorded = Some(footer.max_recorded_at.as_nanos());
    }

    /// The unsealed segment `scan` was taken: its committed records.
    pub(super) fn scanned(&mut self, scan: &ScanResult) {
        let h = &scan.found.header;
        let end = h.first_seq + scan.committed_total();
        let chain = match scan.last_committed() {
            Some((recorded, chain)) => {
                self.last_recorded = Some(recorded);
                chain
            }
            None => h.chain_in,
        };
        self.expect = Some((h.segment_no + 1, end, chain));
        self.covered = end;
        self.next_no = h.segment_no + 1;
    }

    /// Damage ends the records of a segment at `readable_end`; what follows
    /// up to `end` was reported.
    pub(super) fn cut(
        &mut self,
        f: &Found,
        readable_end: u64,
        end: Option<u64>,
        last_recorded: Option<i64>,
    ) {
        self.expect = None;
        self.covered = end.unwrap_or(readable_end).max(readable_end);
        self.next_no = f.header.segment_no + 1;
        if last_recorded.is_some() {
            self.last_recorded = last_recorded;
        }
    }

    /// The seq after the last record taken, or reported: where the log
    /// ends.
    pub(super) fn end(&self) -> u64 {
        self.expect.map_or(self.covered, |(_, seq, _)| seq)
    }

    /// The number, first seq and chain value of the segment that would
    /// follow. After damage at the end of the log (reading around it) the
    /// chain value there is unknown: the genesis value stands in, and only
    /// a read-only store, which starts no segment, can be in that state.
    pub(super) fn next_segment(&self, manifest: &Manifest) -> (u64, u64, Hash) {
        self.expect
            .unwrap_or((self.next_no, self.covered, manifest.genesis()))
    }
}

/// Checks that `f` is the segment expected next.
pub(crate) fn check_link(
    f: &Found,
    expected_no: u64,
    expected_seq: u64,
    chain: &Hash,
) -> Result<()> {
    let h = &f.header;
    if h.segment_no != expected_no || h.first_seq != expected_seq {
        if h.segment_no > expected_no && h.first_seq > expected_seq {
            // Named after the first missing file, which is what to restore.
            return Err(corruption(
                Location::file(layout::segment_name(expected_seq)),
                CorruptionKind::MissingSegment {
                    expected_segment_no: expected_no,
                    expected_first_seq: expected_seq,
                    next_segment_no: h.segment_no,
                    next_first_seq: h.first_seq,
                },
            ));
        }
        let kind = {
            CorruptionKind::Layout(format!(
                "segment number {} starting at seq {} where segment {expected_no} starting at \
                 seq {expected_seq} was expected",
                h.segment_no, h.first_seq
            ))
        };
        return Err(corruption(Location::file(&f.name).at(0), kind));
    }
    if &h.chain_in != chain {
        return Err(corruption(
            Location::file(&f.name).at(0),
            CorruptionKind::HashMismatch {
                what: "chain value in header (previous segment's chain head)",
                stored: h.chain_in,
                computed: *chain,
            },
        ));
    }
    Ok(())
}
