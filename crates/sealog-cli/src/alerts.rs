//! `sealog alerts`: alert rules over the log.
//!
//! `alerts test` replays history through a rules file and prints what would
//! have fired, changing nothing; `alerts run` follows the store, records
//! each alert as an `alert.raised` event and delivers it to the rules
//! file's webhooks. The rules, the delivery and the signature are
//! specified in `docs/alerts.md`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use sealog::Timestamp;
use sealog_alerts::deliver::Delivery;
use sealog_alerts::runner::{self, FollowOptions, Raised};
use sealog_alerts::{Alert, Deliverer, DeliveryOptions, Evaluator, RuleSet};

use crate::common::{DamageArgs, Global, Out, parse_duration};
use crate::error::CliError;

const AFTER_HELP: &str = "\
Rules watch the log for failed-login bursts, bulk access, actions out of
hours, new source addresses or countries, and sensitive actions. See
docs/alerts.md for the rules file.

Examples:
  sealog alerts test --rules rules.toml --since 30d
  sealog alerts run --rules rules.toml";

/// Alert rules: test them on history, or run them on the live log.
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct AlertsArgs {
    #[command(subcommand)]
    command: AlertsCommand,
}

#[derive(Subcommand, Debug)]
enum AlertsCommand {
    Test(TestArgs),
    Run(RunArgs),
}

const TEST_AFTER_HELP: &str = "\
Replays the records of the last --since (by event time) through the rules,
reading only the records some rule selects (through the store's indexes),
and prints one line per alert that would have fired. Nothing is appended
and nothing is delivered; the store is opened read-only, so this works
while a server has it open.

Examples:
  sealog alerts test --rules rules.toml --since 30d
  sealog alerts test --rules rules.toml --since 7d --json | jq .rule";

/// Replay history through a rules file and print what would have fired.
#[derive(Args, Debug)]
#[command(after_help = TEST_AFTER_HELP)]
pub struct TestArgs {
    /// The rules file (TOML; see docs/alerts.md).
    ///
    /// Example: --rules /etc/sealog/rules.toml
    #[arg(long, value_name = "FILE")]
    rules: PathBuf,

    /// How far back to replay, by event time: s, m, h, d or w. Without it,
    /// the whole log.
    ///
    /// Example: --since 30d
    #[arg(long, value_name = "DURATION")]
    since: Option<String>,

    /// Print each alert as a JSON line (the webhook body) instead of text.
    ///
    /// Example: --json
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    damaged: DamageArgs,
}

const RUN_AFTER_HELP: &str = "\
Follows the store like `tail --follow`: each new record is evaluated, each
alert is appended to the log as an `alert.raised` event (actor
service:sealog-alerts, naming the rule and the triggering seqs) and POSTed
to the rules file's webhooks, signed, with retries; an alert no webhook
took is written to the dead-letter file. The cursor is kept in
DATA_DIR/alerts/NAME.cursor (NAME: the rules file's name without .toml):
after a restart the runner goes on from it, without raising an alert
twice. On its first start it begins at the end of the log. The store is
opened for writing, so it cannot run while a server holds the store.
Stop with Ctrl-C.

Examples:
  sealog alerts run --rules rules.toml
  sealog alerts run --rules rules.toml --dead-letter /var/lib/sealog/dead.ndjson";

/// Follow the store: raise, record and deliver alerts.
#[derive(Args, Debug)]
#[command(after_help = RUN_AFTER_HELP)]
pub struct RunArgs {
    /// The rules file (TOML; see docs/alerts.md).
    ///
    /// Example: --rules /etc/sealog/rules.toml
    #[arg(long, value_name = "FILE")]
    rules: PathBuf,

    /// Where alerts that no attempt delivered are written, one JSON line
    /// each. Default: DATA_DIR/alerts/NAME.dead-letter.ndjson.
    ///
    /// Example: --dead-letter /var/lib/sealog/alerts-dead.ndjson
    #[arg(long, value_name = "FILE")]
    dead_letter: Option<PathBuf>,

    /// Delivery attempts per webhook, the first included (1 to 100).
    ///
    /// Example: --attempts 8
    #[arg(long, default_value_t = 6, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100))]
    attempts: u32,

    /// The wait before the second attempt, in milliseconds; it doubles
    /// after each failed attempt, up to 60 s.
    ///
    /// Example: --backoff 500
    #[arg(long, default_value_t = 1000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    backoff: u64,

    /// How long the rules' state is rebuilt from at start: the records of
    /// this much event time before the cursor are replayed, raising
    /// nothing. Give at least the longest window, baseline or learning
    /// period of the rules.
    ///
    /// Example: --history 14d
    #[arg(long, default_value = "8d", value_name = "DURATION")]
    history: String,

    /// How often to look for shutdown while the log is idle, in
    /// milliseconds (new records are evaluated at once).
    ///
    /// Example: --interval 200
    #[arg(long, default_value_t = 500, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(50..=60_000))]
    interval: u64,
}

pub fn run(global: &Global, args: AlertsArgs) -> Result<(), CliError> {
    match args.command {
        AlertsCommand::Test(args) => test(global, args),
        AlertsCommand::Run(args) => follow(global, args),
    }
}

/// An error of the alerting crate, classified: a wrong rules file is a
/// usage error.
fn alerts_error(global: &Global, e: sealog_alerts::Error) -> CliError {
    let fix = e.fix();
    match e {
        sealog_alerts::Error::Rules(_) | sealog_alerts::Error::Labels { .. } => {
            CliError::usage(e.to_string(), fix)
        }
        sealog_alerts::Error::Store { op, source } => CliError::read(op, &global.data_dir, source),
        other => CliError::failed(other.to_string(), fix),
    }
}

fn load_rules(global: &Global, path: &std::path::Path) -> Result<RuleSet, CliError> {
    RuleSet::load(path).map_err(|e| alerts_error(global, e))
}

/// One alert as a line of text.
fn describe(alert: &Alert) -> String {
    let seqs: Vec<String> = alert.seqs.iter().map(u64::to_string).collect();
    let more = if alert.seqs_total > alert.seqs.len() as u64 {
        format!(" (of {})", alert.seqs_total)
    } else {
        String::new()
    };
    let group = if alert.group.is_empty() {
        String::new()
    } else {
        format!(" {}={}", alert.group_by, alert.group)
    };
    format!(
        "{} {:<8} {}{group} count={} seqs={}{more} id={}",
        alert.window_end.to_rfc3339(),
        alert.severity,
        alert.rule,
        alert.count,
        seqs.join(","),
        alert.id,
    )
}

fn test(global: &Global, args: TestArgs) -> Result<(), CliError> {
    let set = load_rules(global, &args.rules)?;
    let from = match &args.since {
        None => None,
        Some(text) => {
            let d = parse_duration("--since", text)?;
            let nanos = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
            Some(Timestamp::from_nanos(
                Timestamp::now().as_nanos().saturating_sub(nanos),
            ))
        }
    };
    let store = global.open_read_only(&args.damaged)?;
    let mut eval = Evaluator::new(&set);
    let mut out = Out::new();
    let mut failed: Option<CliError> = None;
    let end = store.len();
    let stats = runner::replay(&store, &set, &mut eval, from, 0, end, &mut |alert| {
        let written = if args.json {
            out.json_line(&alert)
        } else {
            out.line(&describe(&alert))
        };
        if let Err(e) = written {
            failed = Some(e);
            return Err(sealog_alerts::Error::Io {
                op: "write to",
                path: PathBuf::from("stdout"),
                source: std::io::Error::other("standard output failed"),
            });
        }
        Ok(())
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let stats = stats.map_err(|e| alerts_error(global, e))?;
    out.flush()?;
    eprintln!(
        "{} alert(s) from {} rule(s); {} candidate record(s) read of {} in the log",
        stats.alerts,
        set.rules.len(),
        stats.read,
        end
    );
    if eval.forgotten() > 0 {
        eprintln!(
            "warning: {} group(s) or value(s) were forgotten to stay within the rules file's \
             [limits]; raise max_groups or max_values for exact results",
            eval.forgotten()
        );
    }
    Ok(())
}

fn follow(global: &Global, args: RunArgs) -> Result<(), CliError> {
    let set = load_rules(global, &args.rules)?;
    let name = args
        .rules
        .file_stem()
        .map_or_else(|| "rules".into(), |s| s.to_string_lossy().into_owned());
    let state_dir = global.data_dir.join("alerts");
    let history = parse_duration("--history", &args.history).map_err(|_| {
        CliError::usage(
            format!("--history `{}` is not a duration", args.history),
            "give a whole number and a unit: s, m, h, d or w, e.g. --history 14d",
        )
    })?;
    crate::common::check_store_exists(&global.data_dir)?;
    let store = Arc::new(global.open_for_writing(
        crate::common::validator_for(None),
        sealog::privacy::PrivacyPolicy::default(),
    )?);
    let delivery = DeliveryOptions {
        attempts: args.attempts,
        initial_backoff: Duration::from_millis(args.backoff),
        ..DeliveryOptions::new(
            args.dead_letter
                .clone()
                .unwrap_or_else(|| state_dir.join(format!("{name}.dead-letter.ndjson"))),
        )
    };
    let options = FollowOptions {
        cursor_file: state_dir.join(format!("{name}.cursor")),
        interval: Duration::from_millis(args.interval),
        history,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            CliError::failed(
                format!("cannot start the runtime: {e}"),
                "check the process limits",
            )
        })?;
    eprintln!(
        "following {} with {} rule(s) and {} webhook(s); stop with Ctrl-C",
        global.data_dir.display(),
        set.rules.len(),
        set.webhooks.len()
    );
    let result = runtime.block_on(async move {
        let (deliverer, task) = Deliverer::start(set.webhooks.clone(), delivery)?;
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let result = runner::follow(
            store.clone(),
            set,
            deliverer,
            options,
            shutdown,
            print_raised,
        )
        .await;
        let _ = task.await;
        result.map(|()| store)
    });
    let store = result.map_err(|e| alerts_error(global, e))?;
    match Arc::try_unwrap(store) {
        Ok(store) => store
            .close()
            .map_err(|e| CliError::store("closing the store", &global.data_dir, e)),
        Err(_) => Ok(()),
    }
}

fn print_raised(raised: &Raised) {
    let event = match raised.event_seq {
        Some(seq) => format!("event seq {seq}"),
        None => "event already in the log".into(),
    };
    let deliveries: Vec<String> = raised
        .deliveries
        .iter()
        .map(|d| match d {
            Delivery::Delivered { url, attempt } => format!("{url}: delivered (attempt {attempt})"),
            Delivery::DeadLettered {
                url,
                attempts,
                error,
            } => {
                format!("{url}: DEAD-LETTERED after {attempts} attempt(s): {error}")
            }
        })
        .collect();
    if deliveries.is_empty() {
        println!("{} [{event}]", describe(&raised.alert));
    } else {
        println!(
            "{} [{event}] {}",
            describe(&raised.alert),
            deliveries.join("; ")
        );
    }
}
