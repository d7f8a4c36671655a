//! How records are shown: the table for people, and the flattened columns
//! of CSV.

use std::io::IsTerminal;

use sealog::{Outcome, Record, Timestamp};

/// `2026-11-23 17:25:00.123` (UTC, milliseconds).
pub fn short_time(t: Timestamp) -> String {
    let text = t.to_rfc3339();
    let Some(body) = text.strip_suffix('Z') else {
        return text;
    };
    let (whole, fraction) = body.split_once('.').unwrap_or((body, ""));
    let mut millis: String = fraction.chars().take(3).collect();
    while millis.len() < 3 {
        millis.push('0');
    }
    format!("{}.{millis}", whole.replacen('T', " ", 1))
}

/// `type:id`, or `type` alone.
fn typed(kind: &str, id: Option<&str>) -> String {
    match id {
        Some(id) => format!("{kind}:{id}"),
        None => kind.to_owned(),
    }
}

/// The actor, with the real principal when acting on behalf of someone.
pub fn actor_cell(r: &Record) -> String {
    let a = &r.event.actor;
    let mut out = typed(&a.kind, Some(&a.id));
    if let Some(p) = &a.on_behalf_of {
        out.push_str(&format!(" (for {}:{})", p.kind, p.id));
    }
    out
}

const HEADERS: [&str; 8] = [
    "SEQ",
    "TIME (UTC)",
    "ACTOR",
    "ACTION",
    "RESOURCE",
    "OUTCOME",
    "TENANT",
    "SOURCE IP",
];

/// Widest a column may grow before its cells are cut.
const CAPS: [usize; 8] = [20, 23, 36, 36, 40, 7, 24, 39];

/// Narrowest a column is when following a log whose rows are not known
/// yet.
const FOLLOW_MINIMUMS: [usize; 8] = [8, 23, 20, 24, 24, 7, 10, 15];

fn cells(r: &Record) -> [String; 8] {
    [
        r.seq.to_string(),
        short_time(r.event_time()),
        actor_cell(r),
        r.event.action.clone(),
        typed(&r.event.resource.kind, r.event.resource.id.as_deref()),
        r.event.outcome.as_str().to_owned(),
        r.event.tenant.clone().unwrap_or_else(|| "-".into()),
        r.event
            .source
            .as_ref()
            .and_then(|s| s.ip)
            .map_or_else(|| "-".into(), |ip| ip.to_string()),
    ]
}

/// A table layout: column widths and whether to colour.
pub struct Table {
    widths: [usize; 8],
    color: bool,
}

impl Table {
    /// A layout fitting `records` (for a page of results).
    pub fn fit(records: &[Record]) -> Table {
        Table::with_minimums(records, HEADERS.map(str::len))
    }

    /// A layout for following a log: wide enough for typical rows, so later
    /// rows line up with the first ones.
    pub fn for_follow(records: &[Record]) -> Table {
        Table::with_minimums(records, FOLLOW_MINIMUMS)
    }

    fn with_minimums(records: &[Record], minimums: [usize; 8]) -> Table {
        let mut widths = minimums;
        for (w, h) in widths.iter_mut().zip(HEADERS) {
            *w = (*w).max(h.len());
        }
        for r in records {
            for ((w, cell), cap) in widths.iter_mut().zip(cells(r)).zip(CAPS) {
                *w = (*w).max(cell.chars().count().min(cap));
            }
        }
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Table { widths, color }
    }

    /// The header line.
    pub fn header(&self) -> String {
        let line = self.join(HEADERS.map(str::to_owned), None);
        if self.color {
            format!("\x1b[1m{line}\x1b[0m")
        } else {
            line
        }
    }

    /// One record's line.
    pub fn row(&self, r: &Record) -> String {
        self.join(cells(r), Some(r.event.outcome))
    }

    fn join(&self, cells: [String; 8], outcome: Option<Outcome>) -> String {
        let last = cells.len() - 1;
        let mut line = String::new();
        for (i, (cell, &width)) in cells.iter().zip(&self.widths).enumerate() {
            let mut text = fit(cell, width);
            if i == 0 {
                text = format!("{text:>width$}");
            } else if i < last {
                text = format!("{text:<width$}");
            }
            if i == 5 && self.color {
                text = match outcome {
                    Some(Outcome::Denied) => format!("\x1b[1;31m{text}\x1b[0m"),
                    Some(Outcome::Failure) => format!("\x1b[33m{text}\x1b[0m"),
                    _ => text,
                };
            }
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(&text);
        }
        line.trim_end().to_owned()
    }
}

/// Cuts `text` to `width` characters, marking the cut with `…`.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The CSV columns of a record: every field, nested ones flattened with
/// dots, metadata as a JSON string.
pub const CSV_COLUMNS: [&str; 18] = [
    "seq",
    "recorded_at",
    "time",
    "actor.type",
    "actor.id",
    "actor.on_behalf_of.type",
    "actor.on_behalf_of.id",
    "actor.session_id",
    "action",
    "resource.type",
    "resource.id",
    "outcome",
    "tenant",
    "source.ip",
    "source.user_agent",
    "request_id",
    "reason",
    "metadata",
];

/// The event's columns (all of [`CSV_COLUMNS`] but `seq` and
/// `recorded_at`).
pub fn event_csv_fields(e: &sealog::Event) -> [String; 16] {
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    let behalf = e.actor.on_behalf_of.as_ref();
    let source = e.source.as_ref();
    [
        e.time.map(|t| t.to_rfc3339()).unwrap_or_default(),
        e.actor.kind.clone(),
        e.actor.id.clone(),
        behalf.map(|p| p.kind.clone()).unwrap_or_default(),
        behalf.map(|p| p.id.clone()).unwrap_or_default(),
        opt(&e.actor.session_id),
        e.action.clone(),
        e.resource.kind.clone(),
        opt(&e.resource.id),
        e.outcome.as_str().to_owned(),
        opt(&e.tenant),
        source
            .and_then(|s| s.ip)
            .map(|ip| ip.to_string())
            .unwrap_or_default(),
        source
            .and_then(|s| s.user_agent.clone())
            .unwrap_or_default(),
        opt(&e.request_id),
        opt(&e.reason),
        e.metadata
            .as_ref()
            .map(|m| serde_json::Value::Object(m.clone()).to_string())
            .unwrap_or_default(),
    ]
}

/// A record's CSV row, in the order of [`CSV_COLUMNS`].
pub fn record_csv_fields(r: &Record) -> Vec<String> {
    let mut row = Vec::with_capacity(CSV_COLUMNS.len());
    row.push(r.seq.to_string());
    row.push(r.recorded_at.to_rfc3339());
    row.extend(event_csv_fields(&r.event));
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_short_and_aligned() {
        assert_eq!(
            short_time(Timestamp::from_nanos(1_700_000_000_120_000_000)),
            "2023-11-14 22:13:20.120"
        );
        assert_eq!(
            short_time(Timestamp::from_nanos(1_700_000_000_000_000_000)),
            "2023-11-14 22:13:20.000"
        );
    }

    #[test]
    fn long_cells_are_cut_visibly() {
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abc", 4), "abc");
    }
}
