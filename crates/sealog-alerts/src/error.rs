//! The crate's errors. Each says what went wrong, where (the rules file,
//! the rule and the key; the label file and its line; the state file) and
//! carries a fix specific to that error.

use std::io;
use std::path::PathBuf;

/// Everything the alerting crate can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The rules file is wrong: the message names the rule and the key.
    #[error("{0}")]
    Rules(#[from] Box<RulesError>),
    /// A label file (CIDR → label CSV) is wrong.
    #[error("label file `{}`{}: {message}", file.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Labels {
        /// The CSV file.
        file: PathBuf,
        /// The 1-based line, when one is to blame.
        line: Option<u64>,
        /// What is wrong.
        message: String,
    },
    /// The state file cannot be used.
    #[error("alert state file `{}`: {message}", file.display())]
    State {
        /// The state file.
        file: PathBuf,
        /// What is wrong.
        message: String,
        /// How to fix it.
        fix: String,
    },
    /// A file could not be read or written.
    #[error("cannot {op} `{}`: {source}", path.display())]
    Io {
        /// What was being done (`read`, `write`, `sync`, ...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The store failed.
    #[error("{op}: {source}")]
    Store {
        /// What was being done.
        op: &'static str,
        /// The engine's error.
        #[source]
        source: sealog::Error,
    },
    /// Webhook configuration is wrong (a URL, a secret file).
    #[error("webhook `{url}`: {message}")]
    Webhook {
        /// The webhook URL as given.
        url: String,
        /// What is wrong.
        message: String,
    },
}

impl Error {
    /// What to do about this error.
    pub fn fix(&self) -> String {
        match self {
            Error::Rules(e) => e.fix.clone(),
            Error::Labels { .. } => "each line of a label file is `network,label` (a CIDR such as \
                 203.0.113.0/24 or 2001:db8::/32, and a label such as a country code or \
                 AS number), after a header line `network,label`"
                .into(),
            Error::State { fix, .. } => fix.clone(),
            Error::Io { .. } => "check that the path exists and that this user may read and \
                 write it"
                .into(),
            Error::Store { .. } => "run `sealog verify` on the store for the full picture".into(),
            Error::Webhook { .. } => "give an http:// or https:// URL and a secret file \
                 holding at least 16 bytes"
                .into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A mistake in a rules file, naming the rule and the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rules file `{}`{}{}: {}{message}", file.display(), describe_line(.line), describe_rule(.rule), describe_key(.key))]
pub struct RulesError {
    /// The rules file.
    pub file: PathBuf,
    /// The 1-based line of the key (or of the rule, when the key is
    /// missing), when the file's text locates it.
    pub line: Option<usize>,
    /// The rule, as `name` (or `#index` when it has no usable name).
    pub rule: Option<String>,
    /// The key (a dotted path inside the rule, such as `select.action`, or
    /// a top-level key).
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

fn describe_line(line: &Option<usize>) -> String {
    match line {
        Some(line) => format!(" line {line}"),
        None => String::new(),
    }
}

fn describe_rule(rule: &Option<String>) -> String {
    match rule {
        Some(rule) => format!(", rule {rule}"),
        None => String::new(),
    }
}

fn describe_key(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("key `{key}`: ")
    }
}
