//! `sealog query --count-by FIELD [--top N]`: matching events counted by
//! group.

use clap::Args;
use sealog::aggregate::{CountBy, CountField, DEFAULT_TOP, MAX_TOP};
use sealog_server::wire::CountsJson;

use crate::common::{ListFormat, Out};
use crate::error::CliError;

/// Counting by group, instead of listing records.
#[derive(Args, Debug)]
pub struct CountByArgs {
    /// Count the matching events by this field and print the largest
    /// groups instead of the records: actor, action, resource,
    /// resource-type, outcome, tenant, source-ip, hour or day (hours and
    /// days of the event time, in UTC, as --since/--from/--to filter).
    ///
    /// Example: --count-by actor
    #[arg(long, value_name = "FIELD", value_parser = parse_field,
          conflicts_with_all = ["count", "cursor"])]
    pub count_by: Option<CountField>,

    /// How many groups --count-by prints, largest first, ties by key
    /// (1 to 10000); the rest are summed on one line.
    ///
    /// Example: --top 5
    #[arg(long, value_name = "N", default_value_t = DEFAULT_TOP as u64, requires = "count_by",
          value_parser = clap::value_parser!(u64).range(1..=MAX_TOP as u64))]
    pub top: u64,
}

fn parse_field(text: &str) -> Result<CountField, String> {
    CountField::parse(text).map_err(|e| match e {
        sealog::Error::InvalidQuery { reason, .. } => reason,
        other => other.to_string(),
    })
}

impl CountByArgs {
    /// The number of groups to list.
    pub fn top(&self) -> usize {
        usize::try_from(self.top).unwrap_or(MAX_TOP)
    }
}

/// Prints a count: a table, or [`CountsJson`] (indented for `json`, one
/// line for `ndjson`).
pub fn print(counted: &CountBy, format: Option<ListFormat>) -> Result<(), CliError> {
    let mut out = Out::new();
    match ListFormat::resolve(format) {
        ListFormat::Json => out.json_pretty(&CountsJson::from(counted))?,
        ListFormat::Ndjson => out.json_line(&CountsJson::from(counted))?,
        ListFormat::Table => {
            for line in table(counted) {
                out.line(&line)?;
            }
        }
    }
    out.flush()
}

/// The table: a count and a key per line, then the other groups, the
/// events without the field and the total.
fn table(c: &CountBy) -> Vec<String> {
    let width = c.total.to_string().len().max("COUNT".len());
    let row = |n: &dyn std::fmt::Display, key: &str| format!("{n:>width$}  {key}");
    let mut lines = vec![row(&"COUNT", &c.field.as_str().to_uppercase())];
    for g in &c.groups {
        lines.push(row(&g.count, &g.key));
    }
    if c.other_groups > 0 {
        let s = if c.other_groups == 1 { "" } else { "s" };
        lines.push(row(
            &c.other_count,
            &format!("({} other group{s})", c.other_groups),
        ));
    }
    if c.missing > 0 {
        lines.push(row(&c.missing, &format!("(no {})", c.field)));
    }
    lines.push(row(&c.total, "total"));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealog::aggregate::Group;

    #[test]
    fn the_table_lists_the_groups_then_the_rest_and_the_total() {
        let counted = CountBy {
            field: CountField::Tenant,
            groups: vec![
                Group {
                    key: "acme".into(),
                    count: 1200,
                },
                Group {
                    key: "globex".into(),
                    count: 7,
                },
            ],
            total: 1215,
            other_groups: 3,
            other_count: 5,
            missing: 3,
        };
        assert_eq!(
            table(&counted),
            [
                "COUNT  TENANT",
                " 1200  acme",
                "    7  globex",
                "    5  (3 other groups)",
                "    3  (no tenant)",
                " 1215  total",
            ]
        );
    }
}
