//! Monitoring during an abuse run: the server's memory from
//! `/proc/<pid>/status`, and the open connections per phase, counted here
//! and read from the server's `/v1/stats`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sealog_testkit::client::Client;
use tokio::time::timeout;

use super::shared::Shared;

/// `VmRSS`, `VmHWM` and `RssAnon` of a process, in KiB. `VmRSS` counts
/// the pages of memory-mapped segments too (file-backed, reclaimable);
/// `RssAnon` is the heap and stacks.
fn memory_kib(pid: u32) -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?, field("RssAnon:")?))
}

#[derive(Default)]
pub(super) struct Monitor {
    pub(super) rss_first_kib: Option<u64>,
    pub(super) rss_peak_kib: [u64; 4],
    pub(super) anon_peak_kib: [u64; 4],
    pub(super) rss_last_kib: u64,
    pub(super) anon_last_kib: u64,
    pub(super) hwm_kib: u64,
    pub(super) client_open_peak: [i64; 4],
    pub(super) server_open_peak: [Option<u64>; 4],
}

pub(super) async fn monitor(
    shared: Arc<Shared>,
    mut stats: Client,
    pid: Option<u32>,
    stop: Arc<AtomicBool>,
) -> Monitor {
    let mut m = Monitor::default();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        k += 1;
        let phase = usize::from(shared.phase().min(3));
        if let Some((rss, hwm, anon)) = pid.and_then(memory_kib) {
            m.rss_first_kib.get_or_insert(rss);
            m.rss_last_kib = rss;
            m.anon_last_kib = anon;
            m.hwm_kib = hwm;
            if let Some(p) = m.rss_peak_kib.get_mut(phase) {
                *p = (*p).max(rss);
            }
            if let Some(p) = m.anon_peak_kib.get_mut(phase) {
                *p = (*p).max(anon);
            }
        }
        let open = shared.open.load(Ordering::Relaxed);
        if let Some(p) = m.client_open_peak.get_mut(phase) {
            *p = (*p).max(open);
        }
        if k.is_multiple_of(2)
            && let Ok(Ok(r)) = timeout(Duration::from_secs(2), stats.get("/v1/stats")).await
            && let Some(c) = r.json()["server"]["connections"].as_u64()
            && let Some(p) = m.server_open_peak.get_mut(phase)
        {
            *p = Some(p.unwrap_or(0).max(c));
        }
    }
    m
}
