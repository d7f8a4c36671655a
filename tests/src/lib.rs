//! Helpers shared by sealog's integration tests: event generators and
//! small-segment store options.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use sealog::format::{Actor, Event, Metadata, Outcome, Principal, Resource, Timestamp};
use sealog::{Preallocation, Store, StoreOptions, Vfs};

/// Options for tests: small segments so tests cross segment boundaries,
/// no zero-filling (fast to create).
pub fn small_options(segment_size: u64) -> StoreOptions {
    StoreOptions {
        segment_size,
        preallocation: Preallocation::Allocate,
        ..StoreOptions::default()
    }
}

/// [`small_options`] on a given filesystem.
pub fn options_on(fs: Arc<dyn Vfs>, segment_size: u64) -> StoreOptions {
    StoreOptions {
        fs,
        ..small_options(segment_size)
    }
}

/// Opens (creating) a store in `dir` with [`small_options`].
pub fn open(dir: &Path, segment_size: u64) -> Store {
    Store::open(dir, small_options(segment_size)).expect("open store")
}

/// A deterministic, varied event: `i` picks actor, action, resource,
/// outcome, tenant, source and metadata.
pub fn event(i: u64) -> Event {
    const ACTIONS: [&str; 6] = [
        "customer.read",
        "customer.delete",
        "auth.login",
        "auth.login_failed",
        "invoice.export",
        "report.export_csv",
    ];
    let outcome = match i % 7 {
        0 => Outcome::Denied,
        1 | 2 => Outcome::Failure,
        _ => Outcome::Success,
    };
    let mut e = Event::new(
        Actor::new(
            if i.is_multiple_of(5) {
                "service"
            } else {
                "user"
            },
            format!("actor-{}", i % 13),
        ),
        ACTIONS[(i % ACTIONS.len() as u64) as usize],
        Resource::new("customer", format!("{}", i % 101)),
        outcome,
    );
    if i.is_multiple_of(2) {
        e = e.with_tenant(format!("tenant-{}", i % 3));
    }
    if i.is_multiple_of(3) {
        e = e
            .with_source_ip(IpAddr::V4(Ipv4Addr::new(
                10,
                0,
                (i % 7) as u8,
                (i % 250) as u8,
            )))
            .with_user_agent("sealog-tests/1");
    }
    if i.is_multiple_of(4) {
        e = e.with_request_id(format!("req-{i}"));
    }
    if i.is_multiple_of(11) {
        e = e
            .on_behalf_of(Principal::new("user", "support-1"))
            .with_session_id(format!("s-{}", i % 17))
            .with_reason("ticket SEC-42");
    }
    if i.is_multiple_of(6) {
        let mut m = Metadata::new();
        m.insert("i".into(), i.into());
        m.insert("note".into(), format!("event number {i}").into());
        e = e.with_metadata(m);
    }
    if i.is_multiple_of(9) {
        e = e.with_time(Timestamp::from_nanos(
            1_700_000_000_000_000_000 + i as i64 * 1_000_000,
        ));
    }
    e
}

/// Events `from..to` from [`event`].
pub fn events(from: u64, to: u64) -> Vec<Event> {
    (from..to).map(event).collect()
}

/// Reads every record and checks they equal `expected`, in order.
pub fn assert_contents(store: &Store, expected: &[Event]) {
    assert_eq!(store.len(), expected.len() as u64, "record count");
    for (i, (record, want)) in store.scan(..).zip(expected).enumerate() {
        let record = record.unwrap_or_else(|e| panic!("record {i}: {e}"));
        assert_eq!(record.seq, i as u64);
        assert_eq!(&record.event, want, "record {i}");
    }
}

/// The segment files of the store in `dir`, in log order.
pub fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    files_ending(dir, "seg")
}

/// The index sidecars of the store in `dir`, in log order.
pub fn index_files(dir: &Path) -> Vec<std::path::PathBuf> {
    files_ending(dir, "idx")
}

/// The files of `dir/segments` with extension `ext`, sorted.
fn files_ending(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("segments"))
        .expect("list segments")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

/// The first seq a segment file (or its sidecar or snapshot) is named by.
pub fn first_seq_of(path: &Path) -> u64 {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{} is not named by a first seq", path.display()))
}

/// Cuts the power of `fs` and writes the disk a restarted machine could
/// find — the tree under `root` — into a fresh temporary directory.
/// Returns the directory (keep it alive) and the path of `root`'s image
/// inside it, with what was lost.
pub fn power_cut(
    fs: &sealog::fault::FaultFs,
    root: &Path,
    unsynced: sealog::fault::Unsynced,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    sealog::fault::PowerLoss,
) {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("image");
    let lost = fs
        .power_loss(root, &image, unsynced)
        .unwrap_or_else(|e| panic!("power loss ({unsynced:?}): {e}"));
    (tmp, image, lost)
}

/// Prints `what` if the thread panics while this is alive: the seed and
/// the power loss behind a failure, without printing them on success.
pub struct OnPanic(pub String);

impl Drop for OnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.0);
        }
    }
}

/// Copies the store in `from` into `to` (created), without its lock file.
pub fn copy_store(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_store(&path, &dest);
        } else if path.file_name().unwrap() != "LOCK" {
            std::fs::copy(&path, &dest).unwrap();
        }
    }
}

/// (offset, length) of every whole frame of a segment file's bytes, in
/// order, from its header to the first byte that is not a frame.
pub fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    use sealog::format::frame::{self, FrameRead};
    let mut out = Vec::new();
    let mut pos = sealog::format::segment::HEADER_LEN;
    while let Ok(FrameRead::Frame(f)) = frame::read_frame(&bytes[pos..]) {
        out.push((pos, f.len));
        pos += f.len;
    }
    out
}
