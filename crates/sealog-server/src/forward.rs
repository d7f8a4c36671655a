//! The server's forwarders: each `[[forward]]` table of the config file
//! runs `sealog_export::forward` on a thread of its own, following the
//! store the server writes, until the server stops.
//!
//! A forwarder that fails (the store cannot be read, say) reports the error
//! on standard error and starts again 10 s later from its durable cursor:
//! forwarding never stops the server, and the server never stops because of
//! a receiver.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sealog::privacy::PrivacyPolicy;
use sealog_export::forward::{self, ForwardOptions, Progress};

pub use sealog_export::forward::ForwardConfig;

use crate::config::ConfigError;

/// The running forwarders; dropping this asks them to stop.
#[derive(Debug, Default)]
pub struct Forwarders {
    stop: Arc<AtomicBool>,
}

impl Forwarders {
    /// Checks every `[[forward]]` table and starts one thread each. Their
    /// filters' values are transformed by `privacy`, the store's rules, so
    /// that a clear value (`actor = "user:alice"`) finds its records.
    pub fn start(
        data_dir: &Path,
        configs: &[ForwardConfig],
        privacy: &PrivacyPolicy,
    ) -> Result<Forwarders, ConfigError> {
        let mut all: Vec<ForwardOptions> = Vec::new();
        for config in configs {
            let mut options = config
                .to_options(data_dir)
                .map_err(|e| ConfigError::new(e.to_string(), e.fix()))?;
            options.filter = privacy.query(&options.filter);
            if all.iter().any(|o| o.cursor == options.cursor) {
                return Err(ConfigError::new(
                    format!(
                        "two [[forward]] tables share the cursor `{}`",
                        options.cursor.display()
                    ),
                    "give each a distinct `name`",
                ));
            }
            all.push(options);
        }
        let stop = Arc::new(AtomicBool::new(false));
        for options in all {
            let stop = stop.clone();
            let dir = data_dir.to_owned();
            let spawned = std::thread::Builder::new()
                .name("sealog-forward".into())
                .spawn(move || run(&dir, &options, &stop));
            if let Err(e) = spawned {
                return Err(ConfigError::new(
                    format!("cannot start a forwarder thread: {e}"),
                    "check the system's limits on threads",
                ));
            }
        }
        Ok(Forwarders { stop })
    }
}

impl Drop for Forwarders {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn run(dir: &Path, options: &ForwardOptions, stop: &AtomicBool) {
    let to = options.destination.to_string();
    let mut report = |p: &Progress| match p {
        Progress::Started { next, resumed } => tracing::info!(
            "forwarding to {to} from seq {next} ({}; cursor {})",
            if *resumed { "resumed" } else { "first run" },
            options.cursor.display()
        ),
        Progress::Failed {
            message,
            retry_in,
            next,
        } => tracing::warn!(
            "forwarding to {to}: {message}; retrying in {:.1} s from seq {next}",
            retry_in.as_secs_f64()
        ),
        // A segment being sealed while the snapshot re-opens: the next
        // poll tries again.
        Progress::StoreBusy { .. } | Progress::Sent { .. } => {}
    };
    while !stop.load(Ordering::Relaxed) {
        match forward::run(dir, options, stop, &mut report) {
            Ok(_) => return,
            Err(e) => {
                tracing::error!(
                    "forwarding to {to} stopped: {e}; fix: {}; starting again in 10 s",
                    e.fix()
                );
                for _ in 0..100 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}
