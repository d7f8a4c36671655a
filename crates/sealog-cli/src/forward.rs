//! `sealog forward`: sends the store's records, as they are appended, to a
//! SIEM's syslog receiver or HTTP collector, without loss (see
//! `sealog_export::forward`).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::{Args, ValueEnum};
use sealog_export::forward::{self, Destination, ForwardOptions, Payload, Progress, Start};
use sealog_export::syslog::SyslogOptions;

use crate::common::{Filters, Global, PrivacyArgs, check_store_exists, query_error, thousands};
use crate::error::CliError;
use crate::export_formats::export_error;

const AFTER_HELP: &str = "\
Follows the store (also while a server has it open for writing) and sends
every record matching the filters to the receiver, oldest first:

  syslog+tls://HOST:PORT   RFC 5424 lines over TLS with RFC 5425
                           octet-counting frames (usually port 6514)
  syslog+tcp://HOST:PORT   the same over plain TCP
  https://HOST/PATH        NDJSON batches POSTed (http:// too)

Nothing is lost: a cursor (the next seq to send) is kept in the data
directory, --data-dir/forward/<destination>.cursor, and moved only after
the receiver acknowledged a batch (TCP and TLS: written and flushed; HTTP:
a 2xx answer). After a crash, kill -9 or a failed connection the forwarder
resends from the cursor. Over TCP and TLS the last --resend-window records
written on a connection that fails are sent again, since a receiver that
restarts may not have read them. Delivery is at-least-once: every line
carries the record's seq (syslog: seq=\"…\" in the structured data; JSON:
\"seq\"; OCSF: metadata.uid; CEF: externalId), by which receivers
deduplicate. Failed sends are retried with backoff (100 ms doubling to
30 s), forever. --start applies to a first run only; later runs resume
from the cursor. The Authorization header can come from the
SEALOG_FORWARD_AUTHORIZATION environment variable instead of --header, to
keep it out of the process list. docs/siem.md has the formats.

Examples:
  sealog forward --to syslog+tls://siem.example.com:6514 --ca siem-ca.pem
  sealog forward --to syslog+tcp://127.0.0.1:514 --format cef --outcome denied
  SEALOG_FORWARD_AUTHORIZATION='Bearer …' \\
      sealog forward --to https://collector.example.com/v1/ingest --format ocsf
  sealog forward --to syslog+tls://siem:6514 --start end --action 'auth.*'
  sealog forward --to https://lake.example.com/audit --until-caught-up";

/// Formats of forwarded lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ForwardFormat {
    /// The record's JSON, as `sealog export` writes it.
    Json,
    /// OCSF 1.1 JSON.
    Ocsf,
    /// CEF (syslog destinations only).
    Cef,
}

/// Send records to a SIEM (syslog over TLS or TCP, or HTTPS NDJSON),
/// following the store, without loss.
///
/// `--to` names the receiver here, so the end of the time range is
/// `--until` (the filters' `--to` under its other name).
#[derive(Args, Debug)]
#[command(
    after_help = AFTER_HELP,
    mut_arg("to", |a| a.long("until").visible_alias(None))
)]
pub struct ForwardArgs {
    /// The receiver: syslog+tls://HOST:PORT, syslog+tcp://HOST:PORT, or
    /// https://HOST[:PORT]/PATH.
    ///
    /// Example: --to syslog+tls://siem.example.com:6514
    #[arg(id = "destination", long = "to", value_name = "URL")]
    to: String,

    /// What each line carries: the record's JSON, OCSF, or CEF (syslog
    /// only). In syslog lines it is the MSG part.
    ///
    /// Example: --format ocsf
    #[arg(long, value_enum, default_value_t = ForwardFormat::Json, value_name = "FORMAT")]
    format: ForwardFormat,

    /// PEM file of the CA certificates that signed the receiver's
    /// certificate (default: the system's CAs).
    ///
    /// Example: --ca /etc/sealog/siem-ca.pem
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,

    /// PEM certificate chain to present to the receiver (mutual TLS).
    ///
    /// Example: --client-cert sealog.pem --client-key sealog.key
    #[arg(long, value_name = "FILE", requires = "client_key")]
    client_cert: Option<PathBuf>,

    /// PEM private key of --client-cert.
    ///
    /// Example: --client-key sealog.key
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,

    /// An HTTP header sent with every batch, `Name: value` (repeatable).
    ///
    /// Example: --header 'X-Source: audit-prod'
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,

    /// Names this forwarder's cursor: --data-dir/forward/NAME.cursor
    /// (default: made of the destination).
    ///
    /// Example: --name siem-prod
    #[arg(long, value_name = "NAME", conflicts_with = "cursor")]
    name: Option<String>,

    /// The cursor file, instead of one in --data-dir/forward/.
    ///
    /// Example: --cursor /var/lib/sealog-forward/siem.cursor
    #[arg(long, value_name = "FILE")]
    cursor: Option<PathBuf>,

    /// Where a first run starts: beginning (seq 0), end (only records
    /// appended from now on) or a seq. Ignored once a cursor exists.
    ///
    /// Example: --start end
    #[arg(long, default_value = "beginning", value_name = "beginning|end|SEQ")]
    start: String,

    /// Most lines per batch (1 to 100000).
    ///
    /// Example: --batch 500
    #[arg(long, default_value_t = 1000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch: u64,

    /// How often to look for new records when caught up, in milliseconds
    /// (50 to 60000).
    ///
    /// Example: --interval 200
    #[arg(long, default_value_t = 500, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(50..=60_000))]
    interval: u64,

    /// Over TCP and TLS, how many of the last records written on a
    /// connection are sent again when it fails (0 to send none again).
    ///
    /// Example: --resend-window 50000
    #[arg(long, default_value_t = forward::DEFAULT_RESEND_WINDOW, value_name = "N")]
    resend_window: u64,

    /// Connect, write and HTTP request timeout, in seconds (1 to 600).
    ///
    /// Example: --timeout 10
    #[arg(long, default_value_t = 30, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=600))]
    timeout: u64,

    /// Stop once every record present is sent, instead of following.
    ///
    /// Example: --until-caught-up
    #[arg(long)]
    until_caught_up: bool,

    /// The syslog facility: 0 to 23 or a name (auth, authpriv, audit,
    /// local0 … local7).
    ///
    /// Example: --facility local4
    #[arg(long, value_name = "FACILITY", default_value = "audit",
          value_parser = sealog_export::syslog::parse_facility)]
    facility: u8,

    /// The HOSTNAME of syslog lines (default: this machine's name).
    ///
    /// Example: --hostname audit-1.example.com
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,

    /// The SD-ID of the syslog structured data, `name@PEN`.
    ///
    /// Example: --sd-id sealog@12345
    #[arg(long, value_name = "ID", default_value = sealog_export::syslog::DEFAULT_SD_ID)]
    sd_id: String,

    #[command(flatten)]
    filters: Filters,

    #[command(flatten)]
    privacy: PrivacyArgs,
}

pub fn run(global: &Global, args: ForwardArgs) -> Result<(), CliError> {
    let dir = &global.data_dir;
    check_store_exists(dir)?;
    if args.filters.ends_now() {
        return Err(CliError::usage(
            "--since counts back from now, which moves while a forwarder follows the store",
            "give --from TIME (and --until TIME) instead",
        ));
    }
    let destination = Destination::parse(&args.to).map_err(|e| export_error(dir, e))?;
    let mut options = ForwardOptions::new(destination, dir);
    options.payload = match args.format {
        ForwardFormat::Json => Payload::Json,
        ForwardFormat::Ocsf => Payload::Ocsf,
        ForwardFormat::Cef => Payload::Cef,
    };
    options.syslog = SyslogOptions {
        facility: args.facility,
        hostname: args
            .hostname
            .unwrap_or_else(sealog_export::syslog::local_hostname),
        sd_id: args.sd_id,
    };
    options.tls.ca = args.ca;
    options.tls.client_cert = args.client_cert;
    options.tls.client_key = args.client_key;
    for header in &args.headers {
        let (name, value) = header.split_once(':').ok_or_else(|| {
            CliError::usage(
                format!("--header `{header}` has no `:`"),
                "give headers as 'Name: value', e.g. --header 'X-Source: audit-prod'",
            )
        })?;
        options
            .headers
            .push((name.trim().to_owned(), value.trim().to_owned()));
    }
    if let Ok(auth) = std::env::var("SEALOG_FORWARD_AUTHORIZATION")
        && !auth.is_empty()
    {
        options.headers.push(("Authorization".into(), auth));
    }
    // Clear values as the privacy rules stored them.
    let privacy = args.privacy.policy()?;
    options.filter = privacy.query(&args.filters.to_query().map_err(query_error)?);
    if let Ok(store) = sealog::Store::open_read_only(dir) {
        crate::common::warn_if_privacy_differs(&store, &privacy, &options.filter);
    }
    if let Some(name) = &args.name {
        options.cursor = forward::default_dir(dir).join(forward::file_name(name));
    }
    if let Some(cursor) = args.cursor {
        options.cursor = cursor;
    }
    options.start = Start::parse(&args.start).map_err(|e| export_error(dir, e))?;
    options.batch_lines = usize::try_from(args.batch).unwrap_or(1000);
    options.poll = Duration::from_millis(args.interval);
    options.resend_window = args.resend_window;
    options.timeout = Duration::from_secs(args.timeout);
    options.until_caught_up = args.until_caught_up;

    let stop = AtomicBool::new(false);
    let to = options.destination.to_string();
    let cursor = options.cursor.clone();
    let mut report = |p: &Progress| match p {
        Progress::Started { next, resumed } => eprintln!(
            "sealog forward: sending to {to} from seq {next} ({}; cursor {})",
            if *resumed { "resumed" } else { "first run" },
            cursor.display()
        ),
        Progress::Failed {
            message,
            retry_in,
            next,
        } => eprintln!(
            "sealog forward: {message}; retrying in {:.1} s from seq {next}",
            retry_in.as_secs_f64()
        ),
        Progress::StoreBusy { message } => {
            tracing::debug!("re-opening the store failed, retrying: {message}");
        }
        Progress::Sent { .. } => {}
    };
    let summary =
        forward::run(dir, &options, &stop, &mut report).map_err(|e| export_error(dir, e))?;
    eprintln!(
        "sealog forward: {} lines in {} batches acknowledged; cursor at seq {}",
        thousands(summary.lines),
        thousands(summary.batches),
        summary.next
    );
    Ok(())
}
