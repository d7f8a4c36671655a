//! `sealog`: the command line of the sealog audit log store.
//!
//! Append and import events, query, follow and export them, verify a store
//! and receipts, make signing keys, inspect a store and benchmark writes.
//! Exit codes: 0 success, 1 failure (or tampering found, or an invalid
//! receipt), 2 usage error. See `docs/cli.md`.

mod alerts;
mod append;
mod archive;
mod bench;
mod bench_http;
mod common;
mod compress;
mod count_by;
mod error;
mod export;
mod export_formats;
mod forward;
mod import;
mod init;
mod keys;
mod proof;
mod query;
mod render;
mod serve;
mod stats;
mod tail;
mod token;
mod verify;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::common::Global;
use crate::error::{CliError, EXIT_OK, Report};

/// The server's request path allocates and frees many small buffers per
/// request on many threads; mimalloc does that with less CPU than the
/// system allocator (docs/benchmarks.md, "The request path").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ABOUT: &str = "sealog: an append-only, tamper-evident audit log store";

const LONG_ABOUT: &str = "\
sealog: an append-only, tamper-evident audit log store.

Every command works on the store in --data-dir (or SEALOG_DATA_DIR, default
./sealog-data). `sealog init` creates one (so do append, import and
`serve --create`); the other commands need an existing store. Reading
commands (query, tail, export, stats, verify) open the store read-only, so
they work while a server has it open for writing.

Exit codes: 0 success; 1 the operation failed, tampering or corruption was
found (verify), or a receipt is invalid (verify-receipt); 2 usage error
(bad flags, bad JSON or an invalid event given as input, unreadable input,
no store at --data-dir).";

const AFTER_HELP: &str = "\
Examples:
  sealog init --data-dir /var/lib/sealog
  sealog append --actor user:alice --action customer.delete \\
      --resource customer:4471 --outcome success
  sealog import events.ndjson
  sealog query --actor user:alice --since 1h
  sealog tail -f --action 'auth.*'
  sealog verify --public-key log.pub
  sealog compress
  sealog keygen --name audit.example.com/prod --out log
  sealog checkpoint --signing-key log.key > checkpoint.txt
  sealog proof --seq 4471 > record-4471.tlog-proof
  sealog export --format csv > audit.csv
  sealog forward --to syslog+tls://siem.example.com:6514 --ca siem-ca.pem
  sealog serve --listen 127.0.0.1:7807 --signing-key log.key
  sealog token create --name billing-api --scopes ingest --tenant acme
  sealog archive --to s3://audit-archive/prod --follow
  sealog verify --archive s3://audit-archive/prod --public-key log.pub
  sealog restore --from s3://audit-archive/prod --data-dir /var/lib/sealog
  sealog alerts test --rules rules.toml --since 30d";

/// The command line.
#[derive(Parser, Debug)]
#[command(name = "sealog", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
#[command(propagate_version = true, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Init(init::InitArgs),
    Append(append::AppendArgs),
    Import(import::ImportArgs),
    Query(query::QueryArgs),
    Tail(tail::TailArgs),
    Verify(verify::VerifyArgs),
    Compress(compress::CompressArgs),
    Keygen(keys::KeygenArgs),
    VerifyReceipt(keys::VerifyReceiptArgs),
    Checkpoint(proof::CheckpointArgs),
    Proof(proof::ProofArgs),
    Stats(stats::StatsArgs),
    Export(export::ExportArgs),
    Forward(forward::ForwardArgs),
    Bench(bench::BenchArgs),
    Serve(Box<serve::ServeArgs>),
    Token(token::TokenArgs),
    Archive(archive::ArchiveArgs),
    Restore(archive::RestoreArgs),
    Alerts(alerts::AlertsArgs),
}

fn run(cli: Cli, data_dir_given: bool) -> Result<(), CliError> {
    let global = &cli.global;
    match cli.command {
        Command::Init(args) => init::run(global, args),
        Command::Append(args) => append::run(global, args),
        Command::Import(args) => import::run(global, args),
        Command::Query(args) => query::run(global, args),
        Command::Tail(args) => tail::run(global, args),
        Command::Verify(args) => verify::run(global, args),
        Command::Compress(args) => compress::run(global, args),
        Command::Keygen(args) => keys::keygen(args),
        Command::VerifyReceipt(args) => keys::verify_receipt(args),
        Command::Checkpoint(args) => proof::checkpoint(global, args),
        Command::Proof(args) => proof::proof(global, args),
        Command::Stats(args) => stats::run(global, args),
        Command::Export(args) => export::run(global, args),
        Command::Forward(args) => forward::run(global, args),
        Command::Bench(args) => bench::run(global, args),
        Command::Serve(args) => serve::run(global, *args, data_dir_given),
        Command::Token(args) => token::run(global, args),
        Command::Archive(args) => archive::archive(global, args),
        Command::Restore(args) => archive::restore(global, args),
        Command::Alerts(args) => alerts::run(global, args),
    }
}

/// Whether --data-dir (or SEALOG_DATA_DIR) was given, rather than taken
/// from its default: `serve` lets a config file set it otherwise.
fn data_dir_given(matches: &clap::ArgMatches) -> bool {
    let explicit = |m: &clap::ArgMatches| {
        m.value_source("data_dir")
            .is_some_and(|s| s != clap::parser::ValueSource::DefaultValue)
    };
    explicit(matches) || matches.subcommand().is_some_and(|(_, sub)| explicit(sub))
}

/// Sends the diagnostics of the engine and the server (`tracing` events:
/// write failures that latch the store, recoveries, index rebuilds, and
/// what `serve` does: start, reopens, shutdown) to standard error.
/// `SEALOG_LOG` sets the level: `error`, `warn`, `info`, `debug` or
/// `trace`; without it, warnings, and the server's account of what it does
/// (its `info` events).
fn init_logging() {
    use tracing::Level;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::Layer as _;
    let filter = match std::env::var("SEALOG_LOG")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "error" => Targets::new().with_default(Level::ERROR),
        "warn" => Targets::new().with_default(Level::WARN),
        "info" => Targets::new().with_default(Level::INFO),
        "debug" => Targets::new().with_default(Level::DEBUG),
        "trace" => Targets::new().with_default(Level::TRACE),
        _ => Targets::new()
            .with_default(Level::WARN)
            .with_target("sealog_server", Level::INFO),
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(Level::TRACE)
        .with_target(false)
        .finish();
    let _ = tracing::subscriber::set_global_default(filter.with_subscriber(subscriber));
}

fn main() -> ExitCode {
    init_logging();
    // An open closes each sealed segment's file once it is mapped, but a
    // query opens a sidecar per segment it reads (a few at a time) and
    // a store's unsealed segments stay open: every command takes what the
    // hard limit allows, as `serve` does (many systems start processes at
    // a soft limit of 1,024).
    sealog_server::raise_open_file_limit();
    let matches = Cli::command().get_matches();
    let given = data_dir_given(&matches);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli, given) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) if e.is_broken_pipe() => ExitCode::from(EXIT_OK),
        Err(e) => {
            eprintln!("{}", Report(&e));
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every flag of every subcommand explains itself with an example.
    #[test]
    fn every_flag_has_an_example() {
        let cli = Cli::command();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_hide_set() || matches!(id, "help" | "version") {
                    continue;
                }
                let long = arg
                    .get_long_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                assert!(
                    long.contains("Example"),
                    "`sealog {} --{id}` has no example in its help: {long:?}",
                    sub.get_name()
                );
            }
            assert!(
                sub.get_after_long_help()
                    .or(sub.get_after_help())
                    .is_some_and(|h| h.to_string().contains("Examples")),
                "`sealog {}` has no examples section",
                sub.get_name()
            );
        }
    }
}
