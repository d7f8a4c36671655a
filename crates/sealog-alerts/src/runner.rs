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
//!
//! [`follow`] takes its store from a [`StoreSource`]: a store the caller
//! opened (`sealog alerts run`), or the server's, which is reopened after
//! a failed write (`sealog serve` with `alerts_rules`). Errors the source
//! recovers from are waited out and the same work is done again: records
//! already evaluated are not evaluated twice (their alerts wait to be
//! recorded), and the cursor does not move until they are.

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

/// Runs `f` on a thread of its own at background priority
/// ([`sealog::background`]): evaluating rules takes the CPU that ingest
/// leaves, so it cannot slow ingest on a saturated machine (it falls
/// behind, and catches up when ingest eases).
fn in_background<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<tokio::sync::oneshot::Receiver<T>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("sealog-alerts".into())
        .spawn(move || {
            sealog::background::lower_thread_priority();
            let _ = tx.send(f());
        })
        .map_err(|source| Error::Io {
            op: "start the thread that evaluates rules on",
            path: PathBuf::from("the store"),
            source,
        })?;
    Ok(rx)
}

fn background_failed() -> Error {
    Error::Io {
        op: "evaluate rules on",
        path: PathBuf::from("the store"),
        source: std::io::Error::other("the evaluating thread ended without an answer"),
    }
}

fn blocking_failed(e: tokio::task::JoinError) -> Error {
    Error::Io {
        op: "run the store task for",
        path: PathBuf::from("the store"),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Where [`follow`] gets its store. A store opened by the caller is one
/// (`Arc<Store>`, `Store`); a server that reopens its store after a failed
/// write gives the current one each time, and hears of the errors the
/// runner meets so it can start that reopen.
pub trait StoreSource: Send + Sync + 'static {
    /// The store now, or `None` while there is none (being reopened): the
    /// runner then waits and asks again. The runner holds what it gets
    /// only for one step (at most [`FollowOptions::interval`] of waiting
    /// for records, then the work on them).
    fn current(&self) -> Option<Store>;

    /// Called with each error the runner meets. `true`: the source is
    /// recovering from it (a reopen), and the runner waits and tries the
    /// same work again without losing or repeating anything; `false` (the
    /// default): [`follow`] returns the error.
    fn failed(&self, error: &Error) -> bool {
        let _ = error;
        false
    }
}

impl StoreSource for Store {
    fn current(&self) -> Option<Store> {
        Some(self.clone())
    }
}

impl StoreSource for Arc<Store> {
    fn current(&self) -> Option<Store> {
        Some(Store::clone(self))
    }
}

/// Sleeps `d`, or less if `shutdown` resolves first; `true` when it did.
async fn pause<F: Future<Output = ()>>(d: Duration, shutdown: &mut std::pin::Pin<&mut F>) -> bool {
    tokio::select! {
        () = shutdown.as_mut() => true,
        () = tokio::time::sleep(d) => false,
    }
}

/// Follows a store opened for writing (see the module docs) until
/// `shutdown` resolves; calls `on_raised` for every alert once it is
/// recorded and delivered. Runs on a tokio runtime; store work runs on its
/// blocking threads. Errors the `source` recovers from
/// ([`StoreSource::failed`]) are waited out; any other is returned.
pub async fn follow(
    source: impl StoreSource,
    set: RuleSet,
    deliverer: Deliverer,
    options: FollowOptions,
    shutdown: impl Future<Output = ()>,
    mut on_raised: impl FnMut(&Raised),
) -> Result<()> {
    let source = Arc::new(source);
    let set = Arc::new(set);
    let eval = Arc::new(Mutex::new(Evaluator::new(&set)));
    tokio::pin!(shutdown);
    // The wait after an error the source recovers from; it doubles up to
    // ten times the interval while the errors go on.
    let mut backoff = options.interval;
    let retry = |e: Error, backoff: &mut Duration| -> Result<Duration> {
        if !source.failed(&e) {
            return Err(e);
        }
        let wait = *backoff;
        *backoff = (*backoff * 2).min(options.interval * 10);
        Ok(wait)
    };
    // Rebuild the state from recent history, raising nothing.
    let (store_id, next) = loop {
        let Some(store) = source.current() else {
            if pause(options.interval, &mut shutdown).await {
                return Ok(());
            }
            continue;
        };
        match start(store, &set, &eval, &options).await {
            Ok(started) => break started,
            Err(e) => {
                let wait = retry(e, &mut backoff)?;
                if pause(wait, &mut shutdown).await {
                    return Ok(());
                }
            }
        }
    };
    backoff = options.interval;
    let mut next = next;
    // Alerts of records up to the seq evaluated, not yet recorded: after
    // an error, recording them is tried again before any new record is
    // evaluated, so the evaluator sees each record once.
    let mut pending: Option<(u64, Vec<Alert>)> = None;
    loop {
        let Some(store) = source.current() else {
            if pause(options.interval, &mut shutdown).await {
                return Ok(());
            }
            continue;
        };
        let (end, alerts) = match pending.take() {
            Some(p) => p,
            None => {
                let mut evaluated = {
                    let (store, eval) = (store.clone(), eval.clone());
                    let interval = options.interval;
                    in_background(move || evaluate(&store, &eval, next, interval))?
                };
                let (end, alerts, error) = tokio::select! {
                    () = shutdown.as_mut() => {
                        // The step holds the store until its wait ends (at
                        // most the interval): once this returns, nothing
                        // of the runner holds it, and it can be closed and
                        // opened again at once.
                        drop(store);
                        let _ = evaluated.await;
                        return Ok(());
                    }
                    done = &mut evaluated => done.map_err(|_| background_failed())?,
                };
                if let Some(e) = error {
                    // The records before `end` were evaluated: their
                    // alerts are recorded once the source recovers.
                    pending = Some((end, alerts));
                    drop(store);
                    let wait = retry(e, &mut backoff)?;
                    if pause(wait, &mut shutdown).await {
                        return Ok(());
                    }
                    continue;
                }
                (end, alerts)
            }
        };
        if end <= next && alerts.is_empty() {
            continue;
        }
        let recorded = {
            let (store, alerts) = (store.clone(), alerts.clone());
            tokio::task::spawn_blocking(move || record(&store, alerts))
                .await
                .map_err(blocking_failed)?
        };
        drop(store);
        let raised = match recorded {
            Ok(raised) => raised,
            Err(e) => {
                pending = Some((end, alerts));
                let wait = retry(e, &mut backoff)?;
                if pause(wait, &mut shutdown).await {
                    return Ok(());
                }
                continue;
            }
        };
        backoff = options.interval;
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
            let saved = Cursor {
                next_seq: next,
                store_id: store_id.clone(),
            }
            .save(&options.cursor_file);
            if let Err(e) = saved {
                // The alerts are recorded and delivered: the next save
                // covers them. Until then a restart raises them again
                // (their events are not appended twice).
                retry(e, &mut backoff)?;
            }
        }
    }
}

/// Reads the cursor file (`None` when there is none yet) and checks that it
/// belongs to `store`.
pub fn check_cursor(path: &Path, store: &Store) -> Result<Option<Cursor>> {
    let store_id = hex::encode(store.store_id());
    let cursor = Cursor::load(path)?;
    if let Some(c) = &cursor
        && c.store_id != store_id
    {
        return Err(Error::State {
            file: path.to_path_buf(),
            message: format!(
                "the cursor belongs to store {}, not to this store ({store_id})",
                c.store_id
            ),
            fix: "give each store its own cursor file, or remove this one to start from the \
                  end of this store's log"
                .into(),
        });
    }
    Ok(cursor)
}

/// Checks the cursor against the store, rebuilds the rules' state from the
/// history before it, and saves a first cursor. Returns the store's id and
/// the seq to go on from.
async fn start(
    store: Store,
    set: &Arc<RuleSet>,
    eval: &Arc<Mutex<Evaluator>>,
    options: &FollowOptions,
) -> Result<(String, u64)> {
    let store_id = hex::encode(store.store_id());
    let cursor = check_cursor(&options.cursor_file, &store)?;
    let next = {
        let (set, eval) = (set.clone(), eval.clone());
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
            // A failed attempt may have fed some records already.
            *eval = Evaluator::new(&set);
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
    Ok((store_id, next))
}

/// Waits up to `interval` for records past `next` and evaluates them.
/// Returns the seq after the last record evaluated, their alerts, and the
/// error that stopped the reading early, if one did.
fn evaluate(
    store: &Store,
    eval: &Mutex<Evaluator>,
    next: u64,
    interval: Duration,
) -> (u64, Vec<Alert>, Option<Error>) {
    let end = store.wait_for_records(next, interval);
    let mut alerts = Vec::new();
    if end <= next {
        return (next, alerts, None);
    }
    let mut eval = eval
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut reached = next;
    for record in store.scan(next..end) {
        match record {
            Ok(record) => {
                alerts.extend(eval.evaluate(&record));
                reached = record.seq + 1;
            }
            Err(source) => {
                let e = Error::Store {
                    op: "read a new record",
                    source,
                };
                return (reached, alerts, Some(e));
            }
        }
    }
    (end, alerts, None)
}

/// Appends (and syncs) the events of the alerts not in the log yet.
/// Returns the alerts with their events' seqs (`None`: already there).
fn record(store: &Store, alerts: Vec<Alert>) -> Result<Vec<(Alert, Option<u64>)>> {
    let mut raised = Vec::with_capacity(alerts.len());
    // Only the alert runner's own events count: an event of anyone else
    // with the same request_id must not stand for (and so suppress) the
    // alert. (The server refuses client events in the runner's name.)
    let action =
        sealog::query::ActionPattern::new(crate::ALERT_ACTION).map_err(|source| Error::Store {
            op: "look for the alert's event",
            source,
        })?;
    for alert in alerts {
        let exists = store
            .count(&Query {
                request_id: Some(alert.request_id()),
                actor: Some(sealog::query::ActorFilter {
                    kind: Some(crate::alert::ALERT_ACTOR_TYPE.to_owned()),
                    id: crate::alert::ALERT_ACTOR_ID.to_owned(),
                }),
                actions: vec![action.clone()],
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
    Ok(raised)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;
    use crate::alert::tests::alert;
    use sealog::format::{Actor, Event, Outcome, Resource};

    #[test]
    fn an_event_of_another_actor_with_the_alerts_request_id_does_not_suppress_it() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), sealog::StoreOptions::default()).unwrap();
        let a = alert();
        // Someone who knows the rules and the seqs predicts the alert's id
        // and writes an event carrying it first, as themselves and even
        // with the alert's action.
        let decoy = Event::new(
            Actor::new("user", "mallory"),
            crate::ALERT_ACTION,
            Resource::new("rule", "brute-force"),
            Outcome::Success,
        )
        .with_request_id(a.request_id());
        store.append(decoy).unwrap();
        let raised = record(&store, vec![a.clone()]).unwrap();
        assert!(
            raised[0].1.is_some(),
            "the alert was taken as already there"
        );
        // Its own event, once there, does stand for it.
        let again = record(&store, vec![a]).unwrap();
        assert_eq!(again[0].1, None);
        assert_eq!(store.stats().records, 2);
    }
}
