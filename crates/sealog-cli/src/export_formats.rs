//! `sealog export --format parquet|ocsf|cef|syslog`: the formats other
//! tools read (SQL engines, SIEMs). The mappings are specified in
//! docs/format.md (Parquet) and docs/siem.md (OCSF, CEF, RFC 5424).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use sealog::query::Query;
use sealog_export::parquet::{ParquetOptions, ParquetWriter, PartitionedWriter};
use sealog_export::syslog::SyslogOptions;
use sealog_export::{Entry, ExportError};

use crate::common::{DamageArgs, DamageWarnings, Global, stderr_is_terminal, thousands};
use crate::error::CliError;

/// The formats this module writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiemFormat {
    /// Apache Parquet.
    Parquet,
    /// OCSF 1.1 JSON, one object per line.
    Ocsf,
    /// ArcSight CEF lines.
    Cef,
    /// RFC 5424 syslog lines.
    Syslog,
}

/// The flags of the SIEM and Parquet formats.
#[derive(Args, Debug, Clone)]
pub struct SiemArgs {
    /// Write to this path instead of standard output. With --format
    /// parquet, an existing directory (or a path ending in `/`) receives
    /// Hive-style date partitions, `date=YYYY-MM-DD/part-<first seq>.parquet`
    /// by the event's UTC date; any other path is one file. Existing files
    /// are never replaced. For parquet, ocsf, cef and syslog.
    ///
    /// Example: --out audit.parquet   or   --out lake/audit/
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,

    /// Rows per Parquet row group (1 to 1048576).
    ///
    /// Example: --row-group-rows 65536
    #[arg(long, value_name = "N", default_value_t = sealog_export::parquet::DEFAULT_ROW_GROUP_ROWS as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub row_group_rows: u64,

    /// The syslog facility of --format syslog lines: 0 to 23 or a name
    /// (auth, authpriv, audit, local0 … local7).
    ///
    /// Example: --facility local4
    #[arg(long, value_name = "FACILITY", default_value = "audit",
          value_parser = sealog_export::syslog::parse_facility)]
    pub facility: u8,

    /// The HOSTNAME field of syslog lines (default: this machine's name).
    ///
    /// Example: --hostname audit-1.example.com
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// The SD-ID of the syslog structured data, `name@PEN` with your
    /// organisation's IANA Private Enterprise Number (default
    /// sealog@32473, the number reserved for documentation).
    ///
    /// Example: --sd-id sealog@12345
    #[arg(long, value_name = "ID", default_value = sealog_export::syslog::DEFAULT_SD_ID)]
    pub sd_id: String,
}

impl SiemArgs {
    /// The syslog options these flags give.
    pub fn syslog(&self) -> SyslogOptions {
        SyslogOptions {
            facility: self.facility,
            hostname: self
                .hostname
                .clone()
                .unwrap_or_else(sealog_export::syslog::local_hostname),
            sd_id: self.sd_id.clone(),
        }
    }
}

/// An error of the export crate, as the command line reports it.
pub fn export_error(dir: &Path, e: ExportError) -> CliError {
    let fix = e.fix();
    match e {
        ExportError::Read { source, .. } => CliError::read("export", dir, source),
        ExportError::Output(io) => CliError::stdout(io),
        ExportError::Config { message, fix } => CliError::usage(message, fix),
        other => CliError::failed(other.to_string(), fix),
    }
}

/// Where the rows go.
enum Sink {
    Lines(Box<dyn Write>),
    ParquetFile(ParquetWriter<Box<dyn Write + Send>>, Option<PathBuf>),
    ParquetDir(PartitionedWriter),
}

fn create_new(path: &Path) -> Result<std::fs::File, CliError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| {
            let fix = if e.kind() == std::io::ErrorKind::AlreadyExists {
                "give --out a new file name (an export never replaces a file)"
            } else {
                "check that the directory exists and is writable"
            };
            CliError::failed(format!("cannot create `{}`: {e}", path.display()), fix)
        })
}

/// Runs the export in `format`: `query` gives the records and their order
/// (`time_order_if_partitioned`: a partitioned Parquet export is read in
/// event-time order, so each date gets one file), with the privacy policy
/// its values were transformed by.
pub fn run(
    global: &Global,
    format: SiemFormat,
    (mut query, privacy): (Query, &sealog::privacy::PrivacyPolicy),
    args: &SiemArgs,
    damaged: &DamageArgs,
    time_order_if_partitioned: bool,
) -> Result<(), CliError> {
    let dir = &global.data_dir;
    let store = global.open_read_only(damaged)?;
    crate::common::warn_if_privacy_differs(&store, privacy, &query);
    let mut warnings = DamageWarnings::default();
    warnings.name_new(dir, &store);
    let partitioned = format == SiemFormat::Parquet
        && args
            .out
            .as_ref()
            .is_some_and(|p| p.is_dir() || p.as_os_str().to_string_lossy().ends_with('/'));
    if partitioned && time_order_if_partitioned {
        query.order = sealog::query::Order::EarliestTimeFirst;
    }
    let options = ParquetOptions {
        row_group_rows: usize::try_from(args.row_group_rows)
            .unwrap_or(sealog_export::parquet::DEFAULT_ROW_GROUP_ROWS),
        store_id: Some(hex::encode(store.store_id())),
    };
    let mut sink = match (&args.out, format) {
        (Some(out), SiemFormat::Parquet) if partitioned => Sink::ParquetDir(
            PartitionedWriter::new(out, options).map_err(|e| export_error(dir, e))?,
        ),
        (Some(out), SiemFormat::Parquet) => {
            let file = create_new(out)?;
            let w: Box<dyn Write + Send> =
                Box::new(std::io::BufWriter::with_capacity(1 << 20, file));
            Sink::ParquetFile(
                ParquetWriter::new(w, &options).map_err(|e| export_error(dir, e))?,
                Some(out.clone()),
            )
        }
        (None, SiemFormat::Parquet) => {
            if std::io::stdout().is_terminal() {
                return Err(CliError::usage(
                    "Parquet is binary and standard output is a terminal",
                    "redirect it to a file (> audit.parquet) or give --out FILE or --out DIR/",
                ));
            }
            let w: Box<dyn Write + Send> = Box::new(std::io::BufWriter::with_capacity(
                1 << 20,
                std::io::stdout(),
            ));
            Sink::ParquetFile(
                ParquetWriter::new(w, &options).map_err(|e| export_error(dir, e))?,
                None,
            )
        }
        (Some(out), _) => Sink::Lines(Box::new(std::io::BufWriter::with_capacity(
            1 << 16,
            create_new(out)?,
        ))),
        (None, _) => Sink::Lines(Box::new(std::io::BufWriter::with_capacity(
            1 << 16,
            std::io::stdout().lock(),
        ))),
    };
    let syslog = args.syslog();
    let matches = store
        .matches(&query)
        .map_err(|e| CliError::read("export", dir, e))?;
    let mut count = 0u64;
    let mut failed = None;
    for record in matches {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                failed = Some(CliError::read("export", dir, e));
                break;
            }
        };
        let leaf = match sealog_export::leaf_of(&store, record.seq) {
            Ok(leaf) => leaf,
            Err(e) => {
                failed = Some(export_error(dir, e));
                break;
            }
        };
        let entry = Entry { record, leaf };
        let written = match &mut sink {
            Sink::ParquetFile(w, _) => w.push(&entry).map_err(|e| export_error(dir, e)),
            Sink::ParquetDir(w) => w.push(&entry).map_err(|e| export_error(dir, e)),
            Sink::Lines(w) => {
                let line = match format {
                    SiemFormat::Ocsf => sealog_export::ocsf::line(&entry),
                    SiemFormat::Cef => sealog_export::cef::line(&entry),
                    _ => sealog_export::syslog::line(&entry, &syslog),
                };
                w.write_all(line.as_bytes())
                    .and_then(|()| w.write_all(b"\n"))
                    .map_err(CliError::stdout)
            }
        };
        if let Err(e) = written {
            failed = Some(e);
            break;
        }
        count += 1;
    }
    // What was written before a failure is completed and flushed (a
    // Parquet file gets its footer), and the status says it is incomplete.
    let finished = match sink {
        Sink::Lines(mut w) => w.flush().map_err(CliError::stdout),
        Sink::ParquetFile(w, path) => w
            .finish()
            .map_err(|e| export_error(dir, e))
            .and_then(|mut out| out.flush().map_err(CliError::stdout))
            .and_then(|()| match &path {
                Some(p) => std::fs::File::open(p)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| {
                        CliError::failed(
                            format!("cannot sync `{}`: {e}", p.display()),
                            "check the disk",
                        )
                    }),
                None => Ok(()),
            }),
        Sink::ParquetDir(w) => w
            .finish()
            .map(|files| {
                if stderr_is_terminal() {
                    eprintln!("wrote {} files", files.len());
                }
            })
            .map_err(|e| export_error(dir, e)),
    };
    warnings.name_new(dir, &store);
    warnings.finish();
    if let Some(e) = failed.or(finished.err()) {
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
