//! `sealog query`: one page of matching records.

use clap::Args;
use sealog_server::wire::PageRef;

use crate::common::{
    DamageArgs, DamageWarnings, Filters, Global, ListFormat, OrderBy, Out, PrivacyArgs,
    query_error, with_order,
};
use crate::error::CliError;
use crate::render::Table;

const AFTER_HELP: &str = "\
Filters combine with AND; repeated --action flags combine with OR. Results
come newest first (highest seq first) unless --oldest-first; with --order
time they come by event time (the time the event happened, which clients
give and which can differ from the order the store recorded events in),
latest first unless --oldest-first, ties by seq. When more
records match than --limit, the next page's cursor is printed (on standard
error for the table and NDJSON, in the document for JSON): pass it with
--cursor and the same filters to continue.

JSON and NDJSON carry each record exactly as stored (the event as ingested
plus `seq` and `recorded_at`), so the output can be re-imported with
`sealog import`.

Examples:
  sealog query --actor user:alice --since 1h
  sealog query --tenant acme --from 2026-11-27 --until 2026-11-27 --order time
  sealog query --action 'customer.*' --action 'invoice.export' --outcome denied
  sealog query --resource customer:4471 --oldest-first --format json
  sealog query --source-ip 10.0.0.0/8 --from 2026-11-23T00:00:00Z --to 2026-11-24T00:00:00Z
  sealog query --tenant acme --count
  sealog query --outcome denied --since 7d --count-by actor --top 10";

/// Find events: the query model as flags.
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct QueryArgs {
    /// Records per page (1 to 10000).
    ///
    /// Example: --limit 20
    #[arg(long, default_value_t = 100, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=sealog::query::MAX_LIMIT as u64))]
    limit: u64,

    /// What to order by: seq (the order the store recorded events in) or
    /// time (when the events happened, ties by seq).
    ///
    /// Example: --order time
    #[arg(long, value_enum, default_value_t = OrderBy::Seq, value_name = "seq|time")]
    order: OrderBy,

    /// Oldest first (ascending seq, or earliest event time with --order
    /// time) instead of newest first.
    ///
    /// Example: --oldest-first
    #[arg(long)]
    oldest_first: bool,

    /// Continue after the previous page: its `next_cursor`. The filters and
    /// order must be the same as for that page.
    ///
    /// Example: --cursor v1.n.4471.9f3c1a2b7d6e5f40
    #[arg(long, value_name = "CURSOR")]
    cursor: Option<String>,

    /// Print only how many records match (ignores --limit and --cursor).
    ///
    /// Example: --count
    #[arg(long)]
    count: bool,

    /// Output format: table (for people), json (one document) or ndjson
    /// (one record per line). Default: table on a terminal, ndjson
    /// otherwise.
    ///
    /// Example: --format json
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<ListFormat>,

    #[command(flatten)]
    filters: Filters,

    #[command(flatten)]
    damaged: DamageArgs,

    #[command(flatten)]
    count_by: crate::count_by::CountByArgs,

    #[command(flatten)]
    privacy: PrivacyArgs,
}

pub fn run(global: &Global, args: QueryArgs) -> Result<(), CliError> {
    let mut query = with_order(
        args.filters.to_query().map_err(query_error)?,
        args.order,
        args.oldest_first,
    );
    // Clear values as the privacy rules stored them.
    let privacy = args.privacy.policy()?;
    query = privacy.query(&query);
    query.limit = usize::try_from(args.limit).unwrap_or(sealog::query::MAX_LIMIT);
    query.cursor.clone_from(&args.cursor);
    query.validate().map_err(query_error)?;
    let store = global.open_read_only(&args.damaged)?;
    let dir = &global.data_dir;
    let mut warnings = DamageWarnings::default();
    warnings.name_new(dir, &store);
    // The privacy check looks into every segment's index when the log has
    // no policy record: on another thread, while the query runs (both
    // share the indexes they open). Its warning follows the answer.
    let result = std::thread::scope(|scope| {
        let check = scope.spawn(|| crate::common::privacy_warning(&store, &privacy, &query));
        let result = answer(&store, dir, &query, &args);
        if let Ok(Some(warning)) = check.join() {
            eprintln!("{warning}");
        }
        result
    });
    warnings.name_new(dir, &store);
    warnings.finish();
    // The process ends next, and a read-only store holds nothing but
    // mappings and file handles, which the exit releases at once: closing
    // them one by one (a segment and a sidecar per sealed segment) was a
    // fifth of a query's time on a store of 1,500 segments.
    std::mem::forget(store);
    result
}

fn answer(
    store: &sealog::Store,
    dir: &std::path::Path,
    query: &sealog::query::Query,
    args: &QueryArgs,
) -> Result<(), CliError> {
    if let Some(field) = args.count_by.count_by {
        let counted = store
            .count_by(query, field, args.count_by.top())
            .map_err(|e| CliError::read("count", dir, e))?;
        return crate::count_by::print(&counted, args.format);
    }
    let mut out = Out::new();
    if args.count {
        let n = store
            .count(query)
            .map_err(|e| CliError::read("count", dir, e))?;
        out.line(&n.to_string())?;
        return out.flush();
    }
    let page = store
        .query(query)
        .map_err(|e| CliError::read("query", dir, e))?;
    match ListFormat::resolve(args.format) {
        ListFormat::Json => out.json_pretty(&PageRef {
            records: &page.records,
            next_cursor: page.next_cursor.as_deref(),
        })?,
        ListFormat::Ndjson => {
            for r in &page.records {
                out.json_line(r)?;
            }
        }
        ListFormat::Table => {
            if page.records.is_empty() {
                out.flush()?;
                eprintln!("no matching records");
                return Ok(());
            }
            let table = Table::fit(&page.records);
            out.line(&table.header())?;
            for r in &page.records {
                out.line(&table.row(r))?;
            }
        }
    }
    out.flush()?;
    if args.format != Some(ListFormat::Json)
        && let Some(cursor) = &page.next_cursor
    {
        eprintln!(
            "{} records shown; more match: add --cursor {cursor} for the next page",
            page.records.len()
        );
    }
    Ok(())
}
