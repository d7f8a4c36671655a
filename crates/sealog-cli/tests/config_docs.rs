//! The server's configuration keys are one struct (`sealog_server::Layer`:
//! the config file's keys, the `serve` flags and their environment
//! variables), and docs/api.md lists them in two tables (the settings and
//! the limits). This test ties the tables to the struct: every key is
//! documented, every documented key exists, each flag and variable is the
//! key's, and the documented defaults are the ones the server resolves.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::collections::BTreeSet;

use clap::{Args, Command};
use sealog::StoreOptions;
use sealog_server::{Layer, Settings};

const API_MD: &str = include_str!("../../../docs/api.md");

/// A row of a configuration table: `| `--flag` / `key` | default | what |`,
/// or, for a key of the config file only, `| `[[key]]` / `key` | ... |`.
struct Row {
    flag: Option<String>,
    key: String,
    default: String,
}

fn rows() -> Vec<Row> {
    API_MD
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (flag, key) = cells.get(1)?.split_once(" / ")?;
            let key = key.strip_prefix('`')?.strip_suffix('`')?;
            let flag = match flag.strip_prefix("`--") {
                Some(flag) => Some(flag.strip_suffix('`')?.to_owned()),
                None if flag == format!("`[[{key}]]`") => None,
                None => return None,
            };
            Some(Row {
                flag,
                key: key.to_owned(),
                default: (*cells.get(2)?).to_owned(),
            })
        })
        .collect()
}

/// What a configuration amounts to: every resolved setting, the store's
/// as the server applies them over the default options.
fn effective(settings: &Settings) -> String {
    let options = settings.store_options(StoreOptions::default());
    format!(
        "{} {:?} {:?} {:?} {:?} {} {:?} {:?} {:?} {:?} {:?}",
        settings.listen,
        settings.data_dir,
        settings.tokens,
        settings.tls,
        settings.signing_key,
        options.segment_size,
        options.compression,
        options.validator.secrets.policy(),
        settings.alerts_rules,
        settings.limits,
        settings.archive
    )
}

/// The archive keys apply only with `archive` set (alone they are
/// refused), and the lock mode only with a retention, so their defaults
/// are resolved beside both.
const WITH_ARCHIVE: &str = "archive = \"file:///srv/audit-archive\"\narchive_retain = \"400d\"\n";

fn resolved(toml: &str) -> String {
    let archive_key = toml.starts_with("archive_");
    let toml = if archive_key {
        format!("{WITH_ARCHIVE}{toml}")
    } else {
        toml.to_owned()
    };
    let toml = toml.as_str();
    let layer: Layer = toml::from_str(toml).unwrap_or_else(|e| panic!("{toml}: {e}"));
    effective(&layer.resolve().unwrap_or_else(|e| panic!("{toml}: {e}")))
}

#[test]
fn every_configuration_key_is_documented_with_its_flag_and_default() {
    let rows = rows();
    let documented: BTreeSet<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    let keys: BTreeSet<&str> = Layer::KEYS.iter().copied().collect();
    assert_eq!(
        documented, keys,
        "docs/api.md's configuration tables and the keys of `Layer` differ"
    );
    assert_eq!(rows.len(), keys.len(), "a key is documented twice");
    let defaults = resolved("");
    let archive_defaults = resolved(WITH_ARCHIVE);
    for row in &rows {
        let defaults = if row.key.starts_with("archive_") {
            &archive_defaults
        } else {
            &defaults
        };
        if let Some(flag) = &row.flag {
            assert_eq!(*flag, row.key.replace('_', "-"), "{}", row.key);
        }
        let number = row.default.replace(',', "");
        let value = if number.bytes().all(|b| b.is_ascii_digit()) {
            number
        } else if let Some(text) = row
            .default
            .strip_prefix('`')
            .and_then(|d| d.strip_suffix('`'))
        {
            if text == "true" || text == "false" {
                text.to_owned()
            } else {
                format!("{text:?}")
            }
        } else {
            // "none", or a default that depends on the store directory:
            // nothing to set it to.
            continue;
        };
        assert_eq!(
            &resolved(&format!("{} = {value}", row.key)),
            defaults,
            "`{}` is documented with the default {}, which is not the server's",
            row.key,
            row.default
        );
        if let Ok(n) = value.parse::<u64>() {
            assert_ne!(
                &resolved(&format!("{} = {}", row.key, n + 1)),
                defaults,
                "`{}` changes nothing",
                row.key
            );
        }
        if let Ok(b) = value.parse::<bool>() {
            assert_ne!(
                &resolved(&format!("{} = {}", row.key, !b)),
                defaults,
                "`{}` changes nothing",
                row.key
            );
        }
    }
}

#[test]
fn every_serve_flag_is_its_key_with_its_variable_and_documented_default() {
    let rows = rows();
    let command = Layer::augment_args(Command::new("serve"));
    let mut flags = 0;
    for arg in command.get_arguments() {
        let key = arg.get_id().as_str();
        assert!(Layer::KEYS.contains(&key), "`{key}` is not a config key");
        assert_eq!(arg.get_long(), Some(key.replace('_', "-").as_str()));
        let env = format!("SEALOG_{}", key.to_ascii_uppercase());
        assert_eq!(
            arg.get_env().and_then(|e| e.to_str()),
            Some(env.as_str()),
            "{key}"
        );
        let help = arg.get_long_help().or(arg.get_help()).unwrap().to_string();
        assert!(help.contains("Example: --"), "{key}: {help}");
        // "(default 16777216)", "(default 127.0.0.1:7807; port 0 ...)",
        // "(default <data-dir>/tokens.json, if it exists)": the default is
        // the text up to the first `)`, `;` or `,`. The docs give it in
        // backticks, or as a number with thousands separators.
        if let Some((_, rest)) = help.split_once("(default ") {
            let given = rest.split([')', ';', ',']).next().unwrap().trim();
            let row = rows.iter().find(|r| r.key == key).unwrap();
            let documented = match row.default.strip_prefix('`') {
                Some(quoted) => quoted.split('`').next().unwrap().to_owned(),
                None => row.default.replace(',', ""),
            };
            assert_eq!(
                given, documented,
                "`--{key}`'s help and docs/api.md give different defaults"
            );
        }
        flags += 1;
    }
    // The store's settings are the global flags (--data-dir,
    // --signing-key, --segment-size, --compress; and --secrets, --privacy,
    // --privacy-key), the tables (`[[forward]]`) are the config file's only;
    // every other key is a flag of `serve`.
    let file_only = rows.iter().filter(|r| r.flag.is_none()).count();
    assert_eq!(flags, Layer::KEYS.len() - 7 - file_only);
}
