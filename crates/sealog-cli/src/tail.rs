//! `sealog tail`: the last matching records, and with `-f` the new ones as
//! they arrive.
//!
//! Following works on a store that another process (a server) has open
//! for writing, so the store is opened read-only. A read-only handle is a
//! snapshot of the store taken when it was opened: its
//! [`Store::wait_for_records`] never sees new records, because no committer
//! of its own publishes any. So the follower waits with
//! `wait_for_records` (which, on a snapshot, just waits for the poll
//! interval, and on a live handle would wake at once), then compares a cheap
//! signature of the segment files (names, lengths, modification times) with
//! the last one, and only when it changed opens a fresh snapshot and reads
//! the records past the last one it saw, keeping those that match the
//! filters. Idle, it costs a few `stat` calls per interval; under load, one
//! re-open per interval, which reads the unsealed segments (at most two).

use std::path::Path;
use std::time::{Duration, SystemTime};

use clap::{Args, ValueEnum};
use sealog::format::record;
use sealog::query::{Order, Query};
use sealog::{Record, Store};

use crate::common::{
    DamageArgs, DamageWarnings, Filters, Global, Out, PrivacyArgs, open_read_only, query_error,
};
use crate::error::CliError;
use crate::render::Table;
use sealog::privacy::PrivacyPolicy;

const AFTER_HELP: &str = "\
Prints the last N matching records, oldest first. With -f it keeps
following: new matching records are printed as they are appended, also
while a server has the store open for writing. Stop with Ctrl-C.

Following opens the store read-only, which gives a snapshot; sealog tail
looks for new records every --interval and re-opens the snapshot only when
the segment files changed. Records appear at most one interval after they
are written. A record is shown once it is written to the segment file; with
a server using group durability that is a moment before its sync completes.

Examples:
  sealog tail
  sealog tail -n 50 --outcome denied
  sealog tail -f --action 'auth.*' --tenant acme
  sealog tail -f --format ndjson | jq .actor.id";

/// Output formats of `tail`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TailFormat {
    /// Aligned columns for people.
    Table,
    /// One record per line, as JSON.
    Ndjson,
}

/// Show the last matching records; with -f, follow new ones.
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct TailArgs {
    /// Keep following: print new matching records as they are appended.
    ///
    /// Example: sealog tail -f
    #[arg(short = 'f', long)]
    follow: bool,

    /// How many of the last matching records to print first (0 to 10000).
    ///
    /// Example: -n 50
    #[arg(short = 'n', long = "lines", default_value_t = 10, value_name = "N",
          value_parser = clap::value_parser!(u64).range(0..=sealog::query::MAX_LIMIT as u64))]
    lines: u64,

    /// With -f, how often to look for new records, in milliseconds (50 to
    /// 60000).
    ///
    /// Example: --interval 200
    #[arg(long, default_value_t = 500, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(50..=60_000))]
    interval: u64,

    /// Output format. Default: table on a terminal, ndjson otherwise.
    ///
    /// Example: --format ndjson
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<TailFormat>,

    #[command(flatten)]
    filters: Filters,

    #[command(flatten)]
    damaged: DamageArgs,

    #[command(flatten)]
    privacy: PrivacyArgs,
}

/// Prints records in the chosen format.
struct Printer {
    out: Out,
    table: Option<Table>,
    warnings: DamageWarnings,
}

impl Printer {
    fn print(&mut self, records: &[Record]) -> Result<(), CliError> {
        for r in records {
            match &self.table {
                Some(t) => self.out.line(&t.row(r))?,
                None => self.out.json_line(r)?,
            }
        }
        self.out.flush()
    }
}

pub fn run(global: &Global, args: TailArgs) -> Result<(), CliError> {
    // Clear values as the privacy rules stored them.
    let privacy = args.privacy.policy()?;
    let filters = privacy.query(&args.filters.to_query().map_err(query_error)?);
    let dir = global.data_dir.clone();
    let store = global.open_read_only(&args.damaged)?;
    crate::common::warn_if_privacy_differs(&store, &privacy, &filters);
    let mut warnings = DamageWarnings::default();
    warnings.name_new(&dir, &store);
    let seen = store.len();
    let mut last = Vec::new();
    if args.lines > 0 {
        let query = Query {
            order: Order::NewestFirst,
            limit: usize::try_from(args.lines).unwrap_or(sealog::query::MAX_LIMIT),
            ..filters.clone()
        };
        query.validate().map_err(query_error)?;
        let page = store.query(&query);
        warnings.name_new(&dir, &store);
        last = page.map_err(|e| CliError::read("query", &dir, e))?.records;
        last.reverse();
    }
    let table = match args.format {
        Some(TailFormat::Table) => true,
        Some(TailFormat::Ndjson) => false,
        None => std::io::IsTerminal::is_terminal(&std::io::stdout()),
    };
    let mut printer = Printer {
        out: Out::new(),
        table: table.then(|| Table::for_follow(&last)),
        warnings,
    };
    if let Some(t) = &printer.table {
        let header = t.header();
        printer.out.line(&header)?;
    }
    printer.print(&last)?;
    if !args.follow {
        printer.warnings.finish();
        return Ok(());
    }
    follow(&dir, store, seen, &args, &privacy, &mut printer)
}

/// What identifies the state of the segment files.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
struct Signature(Vec<(String, u64, Option<SystemTime>)>);

/// Names, lengths and modification times of the segment files (cheap: one
/// directory listing and a `stat` per segment).
fn signature(dir: &Path) -> Signature {
    let mut entries = Vec::new();
    if let Ok(read) = std::fs::read_dir(dir.join("segments")) {
        for entry in read.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".seg") {
                continue;
            }
            let (len, modified) = entry
                .metadata()
                .map(|m| (m.len(), m.modified().ok()))
                .unwrap_or((0, None));
            entries.push((name, len, modified));
        }
    }
    entries.sort();
    Signature(entries)
}

/// Re-opens failing this many times in a row end the follow.
const MAX_REOPEN_FAILURES: u32 = 20;

fn follow(
    dir: &Path,
    mut store: Store,
    mut seen: u64,
    args: &TailArgs,
    privacy: &PrivacyPolicy,
    printer: &mut Printer,
) -> Result<(), CliError> {
    let (filters, damaged) = (&args.filters, &args.damaged);
    let interval = Duration::from_millis(args.interval);
    // `--since` ends the range at now, and now moves on: the query is
    // taken again for each read.
    let mut query = privacy.query(&filters.to_query().map_err(query_error)?);
    let mut last_signature = signature(dir);
    let mut failures = 0u32;
    loop {
        // On a live handle this wakes as soon as records are published; on
        // the read-only snapshot it waits for the interval.
        let visible = store.wait_for_records(seen, interval);
        if visible <= seen {
            let now = signature(dir);
            if now == last_signature {
                continue;
            }
            match open_read_only(dir, damaged) {
                Ok(fresh) => {
                    store = fresh;
                    last_signature = now;
                    failures = 0;
                    printer.warnings.name_new(dir, &store);
                }
                Err(e) => {
                    // A segment being sealed or created at this very moment
                    // can make one open fail; try again next interval.
                    failures += 1;
                    if failures >= MAX_REOPEN_FAILURES {
                        return Err(e);
                    }
                    continue;
                }
            }
        }
        let len = store.len();
        if len <= seen {
            continue;
        }
        if filters.ends_now() {
            query = privacy.query(&filters.to_query().map_err(query_error)?);
        }
        let records = read_new(&store, dir, seen, len, &query, damaged.allow_damaged);
        printer.warnings.name_new(dir, &store);
        let records = records?;
        seen = len;
        printer.print(&records)?;
    }
}

/// The records `from..to` that match the filters, oldest first. A record
/// that cannot be read fails the command, or (with `--allow-damaged`) is
/// left out; the store lists it among its damage.
fn read_new(
    store: &Store,
    dir: &Path,
    from: u64,
    to: u64,
    filters: &Query,
    allow_damaged: bool,
) -> Result<Vec<Record>, CliError> {
    let mut out = Vec::new();
    for seq in from..to {
        let bytes = match store.get_raw(seq) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                return Err(CliError::failed(
                    format!("record {seq} vanished from the store while it was read"),
                    "run `sealog verify` to check the store",
                ));
            }
            Err(e) if allow_damaged && e.corruption().is_some() => continue,
            Err(e) => return Err(CliError::read("read", dir, e)),
        };
        // The checksum held; a record that does not decode is read again
        // with `get`, whose error names its file and offset.
        let view = match record::decode(&bytes) {
            Ok(view) => view,
            Err(_) => match store.get(seq) {
                Err(e) if allow_damaged && e.corruption().is_some() => continue,
                Err(e) => return Err(CliError::read("read", dir, e)),
                Ok(_) => continue,
            },
        };
        if !filters.matches(&view) {
            continue;
        }
        match view.to_record() {
            Ok(record) => out.push(record),
            Err(_) => match store.get(seq) {
                Err(e) if allow_damaged && e.corruption().is_some() => continue,
                Err(e) => return Err(CliError::read("read", dir, e)),
                Ok(Some(record)) => out.push(record),
                Ok(None) => {}
            },
        }
    }
    Ok(out)
}
