//! `sealog export`: every matching record, streamed.

use clap::{Args, ValueEnum};

use crate::common::{
    DamageArgs, DamageWarnings, Filters, Global, OrderBy, Out, PrivacyArgs, query_error,
    stderr_is_terminal, thousands, with_order,
};
use crate::error::CliError;
use crate::export_formats::{self, SiemArgs, SiemFormat};
use crate::render::{CSV_COLUMNS, record_csv_fields};

const AFTER_HELP: &str = "\
Streams every matching record, oldest first (by seq, or by event time
with --order time), without loading them all in memory. NDJSON lines are records as stored (the event plus `seq` and
`recorded_at`), with the event time always in `time`: an event stored
without one (its event time is its recorded time, as for the server's own
audit events) is written with `time` equal to `recorded_at`. So the lines
can be re-imported with `sealog import` (which drops `seq` and
`recorded_at`) and keep their event times. CSV has a header and one column
per field, `time` being the event time as well, nested
fields flattened with dots (actor.type, actor.id, actor.on_behalf_of.type,
..., source.ip, source.user_agent), metadata as a JSON string; fields are
quoted when they hold commas, quotes or line breaks (RFC 4180).

Columns: seq, recorded_at, time, actor.type, actor.id,
actor.on_behalf_of.type, actor.on_behalf_of.id, actor.session_id, action,
resource.type, resource.id, outcome, tenant, source.ip, source.user_agent,
request_id, reason, metadata.

A record that cannot be read (a damaged store) stops the export with exit
status 1 and the error on standard error, after the records before it were
written: the output is then incomplete, and the status says so. With
--allow-damaged the export goes on past it and names, on standard error,
each range it left out.

Parquet (schema in docs/format.md): one row per event with typed columns
(timestamps as timestamp[ns, UTC], outcome as a dictionary, metadata as
JSON text) plus seq, recorded_at and leaf_hash, so a row can be proven
with `sealog proof --seq`. With --out DIR/ the files are partitioned by
event date, date=YYYY-MM-DD/part-<first seq>.parquet, read in event-time
order. OCSF, CEF and syslog lines: see docs/siem.md for every field.

Examples:
  sealog export > audit.ndjson
  sealog export --tenant acme --since 30d --format csv > acme.csv
  sealog export --action 'auth.*' --newest-first | head
  sealog export --from 2026-11-27 --until 2026-11-27 --order time > day.ndjson
  sealog export --format parquet --out lake/audit/
  sealog export --format ocsf --action 'auth.*' > auth.ocsf.ndjson
  sealog export --format cef --since 1d > day.cef";

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One record per line, as JSON.
    Ndjson,
    /// Comma-separated values with a header line.
    Csv,
    /// Apache Parquet, one typed row per event (docs/format.md).
    Parquet,
    /// OCSF 1.1 JSON, one object per line (docs/siem.md).
    Ocsf,
    /// ArcSight CEF, one line per event (docs/siem.md).
    Cef,
    /// RFC 5424 syslog, one line per event (docs/siem.md).
    Syslog,
}

/// Stream every matching record as NDJSON or CSV.
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct ExportArgs {
    /// Output format.
    ///
    /// Example: --format csv
    #[arg(long, value_enum, default_value_t = ExportFormat::Ndjson, value_name = "FORMAT")]
    format: ExportFormat,

    /// What to order by: seq (the order the store recorded events in) or
    /// time (when the events happened, ties by seq).
    ///
    /// Example: --order time
    #[arg(long, value_enum, default_value_t = OrderBy::Seq, value_name = "seq|time")]
    order: OrderBy,

    /// Newest first (highest seq, or latest event time with --order time)
    /// instead of oldest first.
    ///
    /// Example: --newest-first
    #[arg(long)]
    newest_first: bool,

    #[command(flatten)]
    filters: Filters,

    #[command(flatten)]
    damaged: DamageArgs,

    #[command(flatten)]
    siem: SiemArgs,

    #[command(flatten)]
    privacy: PrivacyArgs,
}

impl ExportFormat {
    fn siem(self) -> Option<SiemFormat> {
        match self {
            ExportFormat::Ndjson | ExportFormat::Csv => None,
            ExportFormat::Parquet => Some(SiemFormat::Parquet),
            ExportFormat::Ocsf => Some(SiemFormat::Ocsf),
            ExportFormat::Cef => Some(SiemFormat::Cef),
            ExportFormat::Syslog => Some(SiemFormat::Syslog),
        }
    }
}

pub fn run(global: &Global, args: ExportArgs) -> Result<(), CliError> {
    let query = with_order(
        args.filters.to_query().map_err(query_error)?,
        args.order,
        !args.newest_first,
    );
    // Clear values as the privacy rules stored them.
    let privacy = args.privacy.policy()?;
    let query = privacy.query(&query);
    if let Some(format) = args.format.siem() {
        let time_order = args.order == OrderBy::Seq && !args.newest_first;
        return export_formats::run(
            global,
            format,
            (query, &privacy),
            &args.siem,
            &args.damaged,
            time_order,
        );
    }
    if args.siem.out.is_some() {
        return Err(CliError::usage(
            "--out is for --format parquet, ocsf, cef and syslog",
            "redirect standard output instead: sealog export > audit.ndjson",
        ));
    }
    let store = global.open_read_only(&args.damaged)?;
    crate::common::warn_if_privacy_differs(&store, &privacy, &query);
    let dir = &global.data_dir;
    let mut warnings = DamageWarnings::default();
    warnings.name_new(dir, &store);
    let mut matches = store
        .matches(&query)
        .map_err(|e| CliError::read("export", dir, e))?;
    let mut out = Out::new();
    let mut count = 0u64;
    // A record that cannot be read ends the export: what was written before
    // it is flushed, then the error is returned (exit 1).
    let mut failed = None;
    match args.format {
        ExportFormat::Ndjson => {
            // Each line written from the record's checked stored bytes
            // (the JSON of the record with its event time in `time`).
            let mut line = Vec::with_capacity(1024);
            while let Some(item) = matches.next_with(|view| {
                line.clear();
                view.write_json_with_event_time(&mut line);
                line.push(b'\n');
            }) {
                if let Err(e) = item {
                    failed = Some(CliError::read("export", dir, e));
                    break;
                }
                out.bytes(&line)?;
                count += 1;
            }
        }
        ExportFormat::Parquet | ExportFormat::Ocsf | ExportFormat::Cef | ExportFormat::Syslog => {}
        ExportFormat::Csv => {
            let mut csv = csv::WriterBuilder::new()
                .flexible(false)
                .from_writer(out.writer());
            let csv_error = |e: csv::Error| match e.into_kind() {
                csv::ErrorKind::Io(io) => CliError::stdout(io),
                other => CliError::stdout(std::io::Error::other(format!("{other:?}"))),
            };
            csv.write_record(CSV_COLUMNS).map_err(csv_error)?;
            for record in matches {
                match record {
                    Ok(record) => csv
                        .write_record(record_csv_fields(&record.with_event_time()))
                        .map_err(csv_error)?,
                    Err(e) => {
                        failed = Some(CliError::read("export", dir, e));
                        break;
                    }
                }
                count += 1;
            }
            csv.flush().map_err(CliError::stdout)?;
        }
    }
    out.flush()?;
    warnings.name_new(dir, &store);
    warnings.finish();
    if let Some(e) = failed {
        eprintln!(
            "sealog export: stopped after {} records: the output is incomplete",
            thousands(count)
        );
        return Err(e);
    }
    if stderr_is_terminal() {
        eprintln!("exported {} records", thousands(count));
    }
    Ok(())
}
