//! Alert rules on the live log (`alerts_rules`): the task that evaluates
//! them.
//!
//! The task is `sealog_alerts::runner::follow`, the runner of `sealog
//! alerts run`, over the server's store: it follows the committed records
//! (off the ingest path: a batch is acknowledged when it is durable,
//! whatever the rules make of it), appends each alert to the log as an
//! `alert.raised` event, delivers it to the rules file's webhooks, and
//! keeps its cursor in `<data-dir>/alerts/NAME.cursor` (`NAME`: the rules
//! file's name without `.toml`, the same file as `alerts run`'s), so a
//! restart neither loses nor repeats an alert. `GET /v1/alerts` streams
//! the alerts from their events in the log ([`crate::tail`]).
//!
//! The store comes through the [`StoreHandle`] at each step: while the
//! store is being reopened after a failed write the task waits, and an
//! append it could not make is reported so that the reopen starts; the
//! work is then done again from where it was, without evaluating a record
//! twice.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sealog::Store;
use sealog_alerts::runner::{self, FollowOptions, Raised, StoreSource};
use sealog_alerts::{Deliverer, DeliveryOptions, RuleSet};
use tokio::sync::watch;

use crate::ServerError;
use crate::handle::StoreHandle;

/// How long the task waits for new records before it looks for shutdown,
/// and its first wait after an error.
const INTERVAL: Duration = Duration::from_millis(500);

/// How far back, in event time, the rules' state is rebuilt at start (the
/// default of `sealog alerts run --history`).
const HISTORY: Duration = Duration::from_secs(8 * 24 * 3600);

/// A rules file, loaded and checked at start.
#[derive(Debug)]
pub(crate) struct Alerting {
    set: RuleSet,
    cursor_file: PathBuf,
    dead_letter: PathBuf,
}

impl Alerting {
    /// Loads the rules file, and checks that its cursor (if any) belongs
    /// to `store`.
    pub(crate) fn load(
        rules: &Path,
        data_dir: &Path,
        store: &Store,
    ) -> Result<Alerting, ServerError> {
        let set = RuleSet::load(rules).map_err(ServerError::Alerts)?;
        let name = rules
            .file_stem()
            .map_or_else(|| "rules".into(), |s| s.to_string_lossy().into_owned());
        let state_dir = data_dir.join("alerts");
        let cursor_file = state_dir.join(format!("{name}.cursor"));
        runner::check_cursor(&cursor_file, store).map_err(ServerError::Alerts)?;
        Ok(Alerting {
            set,
            cursor_file,
            dead_letter: state_dir.join(format!("{name}.dead-letter.ndjson")),
        })
    }

    /// Starts the task on the current runtime; it ends when `stopping`
    /// becomes true.
    pub(crate) fn start(
        self,
        handle: Arc<StoreHandle>,
        mut stopping: watch::Receiver<bool>,
    ) -> Result<tokio::task::JoinHandle<()>, ServerError> {
        let (deliverer, delivering) = Deliverer::start(
            self.set.webhooks.clone(),
            DeliveryOptions::new(self.dead_letter),
        )
        .map_err(ServerError::Alerts)?;
        let options = FollowOptions {
            cursor_file: self.cursor_file,
            interval: INTERVAL,
            history: HISTORY,
        };
        tracing::info!(
            rules = self.set.rules.len(),
            webhooks = self.set.webhooks.len(),
            cursor = %options.cursor_file.display(),
            "evaluating alert rules on the live log"
        );
        let shutdown = async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        Ok(tokio::spawn(async move {
            let followed = runner::follow(
                Source(handle),
                self.set,
                deliverer,
                options,
                shutdown,
                log_raised,
            )
            .await;
            if let Err(e) = followed {
                tracing::error!(
                    error = %e,
                    fix = %e.fix(),
                    "alert rules are no longer evaluated"
                );
            }
            let _ = delivering.await;
        }))
    }
}

/// The server's store, as the runner takes it.
struct Source(Arc<StoreHandle>);

impl StoreSource for Source {
    fn current(&self) -> Option<Store> {
        self.0.get().ok()
    }

    fn failed(&self, error: &sealog_alerts::Error) -> bool {
        match error {
            sealog_alerts::Error::Store { source, .. } => {
                self.0.report(source);
                tracing::warn!(error = %error, "alert evaluation waits for the store");
                true
            }
            sealog_alerts::Error::Io { .. } => {
                tracing::warn!(error = %error, fix = %error.fix(), "alert evaluation is retrying");
                true
            }
            _ => false,
        }
    }
}

fn log_raised(raised: &Raised) {
    let a = &raised.alert;
    for d in &raised.deliveries {
        if let sealog_alerts::deliver::Delivery::DeadLettered {
            url,
            attempts,
            error,
        } = d
        {
            tracing::warn!(
                alert = %a.id,
                rule = %a.rule,
                url = %url,
                attempts,
                error = %error,
                "an alert was not delivered and went to the dead-letter file"
            );
        }
    }
    tracing::info!(
        alert = %a.id,
        rule = %a.rule,
        severity = %a.severity,
        group = %a.group,
        event_seq = raised.event_seq,
        "alert raised"
    );
}
