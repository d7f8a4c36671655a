//! Alert rules over a sealog log.
//!
//! A rules file ([`RuleSet`]) declares rules of five kinds: `threshold`
//! (N matching events of one group within a window), `baseline` (a group's
//! count in a bucket above a factor of its own trailing average),
//! `schedule` (events outside allowed days and hours in the tenant's time
//! zone), `first_seen` (a value never seen before for a group: a source
//! address, or its label in a CIDR → label map) and `match` (any matching
//! event). The [`Evaluator`] takes records in seq order and returns
//! [`Alert`]s. Each alert is recorded in the log as an `alert.raised`
//! event naming the rule and the seqs that made it fire ([`Alert::to_event`]),
//! and delivered to webhooks by the [`Deliverer`]: signed with HMAC-SHA-256,
//! retried with backoff, written to a dead-letter file when every attempt
//! failed. [`runner`] replays history ([`runner::replay`]) and follows a live
//! store ([`runner::follow`]).
//!
//! The format of the rules file, the delivery and the signature are
//! specified in `docs/alerts.md`.

pub mod alert;
pub mod deliver;
pub mod error;
pub mod eval;
pub mod labels;
pub mod rules;
pub mod runner;

pub use alert::{ALERT_ACTION, Alert};
pub use deliver::{Deliverer, DeliveryOptions, Webhook};
pub use error::{Error, Result, RulesError};
pub use eval::Evaluator;
pub use labels::LabelMap;
pub use rules::{Rule, RuleSet, Severity};
