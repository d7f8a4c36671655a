//! Running rules over a store: [`replay`] evaluates history, reading only
//! the records some rule can select (through the store's indexes), and
//! [`follow`] evaluates new records as they are appended, records each
//! alert as an `alert.raised` event, delivers it, and keeps a cursor so a
//! restart neither misses records nor raises an alert twice.
//!
//! The cursor file holds the next seq to evaluate. It advances only after
//! the alerts of the records before it are durable in the log and every
//! webhook took them or they went to the dead-letter file. After a restart
//! the runner rebuilds the rules' state by replaying the records of the
//! last [`FollowOptions::history`] before the cursor without raising
//! anything, then evaluates from the cursor. An alert whose event is
//! already in the log (found by its `request_id`, `alert-<id>`) is not
//! appended again, but is delivered again: delivery is at least once, and
//! receivers drop duplicates by `X-Sealog-Alert-Id`.

use std::collections::HashSet;
use std::future::Future;
use std::iter::Peekable;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sealog::query::{Order, Query};
use sealog::{Record, Store, Timestamp};
use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::deliver::{Deliverer, Delivery};
use crate::error::{Error, Result};
use crate::eval::Evaluator;
use crate::rules::RuleSet;

/// The queries whose union holds every record some rule can select, from
/// event time `from` on. A rule without a selector needs every record.
pub fn candidate_queries(set: &RuleSet, from: Option<Timestamp>) -> Vec<Query> {
    let all = Query {
        order: Order::OldestFirst,
        from,
        ..Query::default()
    };
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for rule in &set.rules {
        if rule.select.queries.is_empty() {
            return vec![all];
        }
        for q in &rule.select.queries {
            let q = Query {
                order: Order::OldestFirst,
                from,
                ..q.clone()
            };
            if seen.insert(q.clone()) {
                out.push(q);
            }
        }
    }
    out
}

/// What a replay went through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Records read (candidates of some rule).
    pub read: u64,
    /// Alerts raised.
    pub alerts: u64,
}

/// Evaluates the records with seqs in `start..end` and event time from
/// `from` on, in seq order, reading only the candidates of the rules (see
/// [`candidate_queries`]); calls `on_alert` for each alert.
pub fn replay(
    store: &Store,
    set: &RuleSet,
    eval: &mut Evaluator,
    from: Option<Timestamp>,
    start: u64,
    end: u64,
    on_alert: &mut dyn FnMut(Alert) -> Result<()>,
) -> Result<ReplayStats> {
    let mut streams: Vec<Peekable<sealog::Matches>> = Vec::new();
    for q in candidate_queries(set, from) {
        let m = store.matches(&q).map_err(|source| Error::Store {
            op: "query the candidate records",
            source,
        })?;
        streams.push(m.peekable());
    }
    let mut stats = ReplayStats::default();
    loop {
        // The lowest next seq over every stream; an error is returned as
        // soon as a stream yields it.
        let mut lowest: Option<u64> = None;
        for s in &mut streams {
            match s.peek() {
                None => {}
                Some(Ok(r)) => lowest = Some(lowest.map_or(r.seq, |l| l.min(r.seq))),
                Some(Err(_)) => {
                    if let Some(Err(source)) = s.next() {
                        return Err(Error::Store {
                            op: "read a candidate record",
                            source,
                        });
                    }
                }
            }
        }
        let Some(seq) = lowest else { break };
        if seq >= end {
            break;
        }
        let mut record: Option<Record> = None;
        for s in &mut streams {
            if s.peek()
                .is_some_and(|r| r.as_ref().is_ok_and(|r| r.seq == seq))
                && let Some(Ok(r)) = s.next()
            {
                record = Some(r);
            }
        }
        let Some(record) = record else { continue };
        if seq < start {
            continue;
        }
        stats.read += 1;
        for alert in eval.evaluate(&record) {
            stats.alerts += 1;
            on_alert(alert)?;
        }
    }
    Ok(stats)
}

/// The cursor of a follower (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The next seq to evaluate.
    pub next_seq: u64,
    /// The store the cursor belongs to (hex of its id).
    pub store_id: String,
}

impl Cursor {
    /// Reads a cursor file; `None` when there is none yet.
    pub fn load(path: &Path) -> Result<Option<Cursor>> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::Io {
                    op: "read the alert cursor",
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| Error::State {
                file: path.to_path_buf(),
                message: format!("not a cursor: {e}"),
                fix: "remove the file to start from the end of the log (alerts about records \
                  appended while the runner was stopped are then not raised)"
                    .into(),
            })
    }

    /// Writes the cursor durably: a temporary file, synced, renamed over
    /// the old one, and the directory synced.
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |op: &'static str| {
            move |source| Error::Io {
                op,
                path: path.to_path_buf(),
                source,
            }
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io("create the directory of"))?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let text = serde_json::to_vec(self).map_err(|e| io("encode")(std::io::Error::other(e)))?;
        {
            let mut f =
                std::fs::File::create(&tmp).map_err(io("create the temporary cursor for"))?;
            std::io::Write::write_all(&mut f, &text).map_err(io("write the cursor"))?;
            f.sync_all().map_err(io("sync the cursor"))?;
        }
        std::fs::rename(&tmp, path).map_err(io("replace the cursor"))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync the directory of"))?;
        Ok(())
    }
}

/// How [`follow`] runs.
#[derive(Clone, Debug)]
pub struct FollowOptions {
    /// The cursor file.
    pub cursor_file: PathBuf,
    /// How long to wait for new records before looking for shutdown.
    pub interval: Duration,
    /// How far back from the cursor (in event time) the rules' state is
    /// rebuilt at start.
    pub history: Duration,
}

/// One alert raised while following: the alert, the seq of its event in
/// the log (`None` when the event was already there) and its deliveries.
#[derive(Clone, Debug)]
pub struct Raised {
    /// The alert.
    pub alert: Alert,
    /// The seq of the `alert.raised` event appended for it, or `None` when
    /// an earlier run had appended it.
    pub event_seq: Option<u64>,
    /// What became of it at each webhook.
    pub deliveries: Vec<Delivery>,
}

fn blocking_failed(e: tokio::task::JoinError) -> Error {
    Error::Io {
        op: "run the store task for",
        path: PathBuf::from("the store"),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Follows a store opened for writing (see the module docs) until
/// `shutdown` resolves; calls `on_raised` for every alert once it is
/// recorded and delivered. Runs on a tokio runtime; store work runs on its
/// blocking threads.
pub async fn follow(
    store: Arc<Store>,
    set: RuleSet,
    deliverer: Deliverer,
    options: FollowOptions,
    shutdown: impl Future<Output = ()>,
    mut on_raised: impl FnMut(&Raised),
) -> Result<()> {
    let store_id = hex::encode(store.store_id());
    let cursor = Cursor::load(&options.cursor_file)?;
    if let Some(c) = &cursor
        && c.store_id != store_id
    {
        return Err(Error::State {
            file: options.cursor_file.clone(),
            message: format!(
                "the cursor belongs to store {}, not to this store ({store_id})",
                c.store_id
            ),
            fix: "give each store its own cursor file, or remove this one to start from the \
                  end of this store's log"
                .into(),
        });
    }
    let set = Arc::new(set);
    let eval = Arc::new(Mutex::new(Evaluator::new(&set)));
    // Rebuild the state from recent history, raising nothing.
    let next = {
        let (store, set, eval) = (store.clone(), set.clone(), eval.clone());
        let history = options.history;
        let start_next = cursor.as_ref().map(|c| c.next_seq);
        tokio::task::spawn_blocking(move || -> Result<u64> {
            let len = store.len();
            let next = start_next.unwrap_or(len).min(len);
            let from = match next.checked_sub(1) {
                None => None,
                Some(last) => store
                    .get(last)
                    .map_err(|source| Error::Store {
                        op: "read the record before the cursor",
                        source,
                    })?
                    .map(|r| {
                        let nanos = i64::try_from(history.as_nanos()).unwrap_or(i64::MAX);
                        Timestamp::from_nanos(r.event_time().as_nanos().saturating_sub(nanos))
                    }),
            };
            let mut eval = eval
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            replay(&store, &set, &mut eval, from, 0, next, &mut |_| Ok(()))?;
            Ok(next)
        })
        .await
        .map_err(blocking_failed)??
    };
    if cursor.is_none() {
        Cursor {
            next_seq: next,
            store_id: store_id.clone(),
        }
        .save(&options.cursor_file)?;
    }
    let mut next = next;
    tokio::pin!(shutdown);
    loop {
        let step = {
            let (store, eval) = (store.clone(), eval.clone());
            let interval = options.interval;
            tokio::task::spawn_blocking(move || step(&store, &eval, next, interval))
        };
        let (end, raised) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            done = step => done.map_err(blocking_failed)??,
        };
        let mut waiting = Vec::with_capacity(raised.len());
        for (alert, event_seq) in raised {
            let rx = deliverer.submit(alert.clone()).await;
            waiting.push((alert, event_seq, rx));
        }
        for (alert, event_seq, rx) in waiting {
            let deliveries = rx.await.unwrap_or_default();
            on_raised(&Raised {
                alert,
                event_seq,
                deliveries,
            });
        }
        if end > next {
            next = end;
            Cursor {
                next_seq: next,
                store_id: store_id.clone(),
            }
            .save(&options.cursor_file)?;
        }
    }
}

/// Waits up to `interval` for records past `next`, evaluates them, and
/// appends (and syncs) the events of the alerts they raise. Returns the
/// seq to continue from and the alerts with their events' seqs.
#[allow(clippy::type_complexity)]
fn step(
    store: &Store,
    eval: &Mutex<Evaluator>,
    next: u64,
    interval: Duration,
) -> Result<(u64, Vec<(Alert, Option<u64>)>)> {
    let end = store.wait_for_records(next, interval);
    if end <= next {
        return Ok((next, Vec::new()));
    }
    let mut eval = eval
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut alerts = Vec::new();
    for record in store.scan(next..end) {
        let record = record.map_err(|source| Error::Store {
            op: "read a new record",
            source,
        })?;
        alerts.extend(eval.evaluate(&record));
    }
    let mut raised = Vec::with_capacity(alerts.len());
    for alert in alerts {
        let exists = store
            .count(&Query {
                request_id: Some(alert.request_id()),
                ..Query::default()
            })
            .map_err(|source| Error::Store {
                op: "look for the alert's event",
                source,
            })?;
        let seq = if exists > 0 {
            None
        } else {
            let receipt = store
                .append(alert.to_event())
                .map_err(|source| Error::Store {
                    op: "append the alert.raised event",
                    source,
                })?;
            Some(receipt.seq)
        };
        raised.push((alert, seq));
    }
    if raised.iter().any(|(_, seq)| seq.is_some()) {
        store.sync().map_err(|source| Error::Store {
            op: "sync the alert.raised events",
            source,
        })?;
    }
    Ok((end, raised))
}
