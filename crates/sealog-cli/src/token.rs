//! `sealog token`: create, list and revoke the server's bearer tokens.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use sealog_server::tokens::{self, Scope, TokensFile};

use crate::common::{Global, Out, check_store_exists};
use crate::error::CliError;

const AFTER_HELP: &str = "\
The tokens file (default <data-dir>/tokens.json, in an existing store;
--tokens or SEALOG_TOKENS to use another, in an existing directory) holds each token's name, the SHA-256 of its secret (never
the secret), its scopes, its tenant binding and when it was created and
revoked. It is written atomically with mode 0600. A running `sealog serve`
picks up changes within a second: a revoked token stops working at once.

Scopes: ingest (POST /v1/events), query (reads, tail, checkpoints, proofs,
stats and metrics), admin (POST /v1/verify; also stats and metrics). A
tenant-bound token writes only events of its tenant (a missing tenant is
filled in) and reads only its tenant's events.

Examples:
  sealog token create --name billing-api --scopes ingest --tenant acme
  sealog token create --name auditor --scopes query,admin
  sealog token list
  sealog token revoke billing-api";

/// Manage the server's bearer tokens.
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct TokenArgs {
    /// The tokens file (default <data-dir>/tokens.json).
    ///
    /// Example: --tokens /etc/sealog/tokens.json
    #[arg(long, env = "SEALOG_TOKENS", value_name = "FILE", global = true)]
    tokens: Option<PathBuf>,

    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    Create(CreateArgs),
    List(ListArgs),
    Revoke(RevokeArgs),
}

const CREATE_AFTER_HELP: &str = "\
Prints what was created, then the secret token on the LAST line of standard
output. It is shown only this once: the file keeps only its hash.

Examples:
  sealog token create --name billing-api --scopes ingest --tenant acme
  TOKEN=$(sealog token create --name ci --scopes ingest,query | tail -n 1)";

/// Create a token and print its secret (once).
#[derive(Args, Debug)]
#[command(after_help = CREATE_AFTER_HELP)]
struct CreateArgs {
    /// A unique name: the principal recorded in the server's own audit
    /// events (letters, digits, `-`, `_`, `.`, `@`).
    ///
    /// Example: --name billing-api
    #[arg(long, value_name = "NAME")]
    name: String,

    /// Comma-separated scopes: ingest, query, admin.
    ///
    /// Example: --scopes ingest,query
    #[arg(long, value_name = "LIST")]
    scopes: String,

    /// Bind the token to one tenant.
    ///
    /// Example: --tenant acme
    #[arg(long, value_name = "TENANT")]
    tenant: Option<String>,
}

const LIST_AFTER_HELP: &str = "\
Examples:
  sealog token list
  sealog token list --json";

/// List tokens (names, scopes, tenants, dates; never secrets).
#[derive(Args, Debug)]
#[command(after_help = LIST_AFTER_HELP)]
struct ListArgs {
    /// One JSON document instead of a table.
    ///
    /// Example: --json
    #[arg(long)]
    json: bool,
}

const REVOKE_AFTER_HELP: &str = "\
The token stops working within a second on a running server. Its entry
stays in the file (marked revoked), so its name is never reused and a
request with it is recorded as a revoked token's.

Examples:
  sealog token revoke billing-api";

/// Revoke a token.
#[derive(Args, Debug)]
#[command(after_help = REVOKE_AFTER_HELP)]
struct RevokeArgs {
    /// The token's name.
    ///
    /// Example: sealog token revoke billing-api
    #[arg(value_name = "NAME")]
    name: String,
}

fn token_error(e: tokens::TokenError) -> CliError {
    match e {
        tokens::TokenError::Invalid(message) => {
            CliError::usage(message, "see `sealog token --help`")
        }
        other => CliError::failed(
            other.to_string(),
            "check the path and permissions of the tokens file",
        ),
    }
}

pub fn run(global: &Global, args: TokenArgs) -> Result<(), CliError> {
    let path = match &args.tokens {
        Some(path) => {
            check_tokens_directory(path)?;
            path.clone()
        }
        None => {
            // The default file lives in the store: there must be one, or
            // a mistyped --data-dir would start a new directory.
            check_store_exists(&global.data_dir)?;
            global.data_dir.join(tokens::DEFAULT_FILE_NAME)
        }
    };
    let mut out = Out::new();
    match args.command {
        TokenCommand::Create(c) => {
            let scopes = Scope::parse_list(&c.scopes).map_err(token_error)?;
            let (entry, secret) =
                tokens::create(&path, &c.name, scopes, c.tenant).map_err(token_error)?;
            out.line(&format!(
                "created token `{}` with scopes [{}]{} in {}",
                entry.name,
                scope_list(&entry.scopes),
                entry
                    .tenant
                    .as_deref()
                    .map(|t| format!(", bound to tenant `{t}`"))
                    .unwrap_or_default(),
                path.display()
            ))?;
            out.line("the secret follows; it is shown only now (the file keeps its SHA-256):")?;
            out.line(&secret)?;
        }
        TokenCommand::List(l) => {
            let file = TokensFile::load_or_empty(&path).map_err(token_error)?;
            if l.json {
                let list: Vec<serde_json::Value> = file
                    .tokens
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "name": t.name,
                            "scopes": t.scopes,
                            "tenant": t.tenant,
                            "created_at": t.created_at,
                            "revoked_at": t.revoked_at,
                        })
                    })
                    .collect();
                out.json_pretty(&serde_json::json!({ "tokens": list }))?;
            } else if file.tokens.is_empty() {
                out.flush()?;
                eprintln!("no tokens in {}", path.display());
                return Ok(());
            } else {
                let width = file
                    .tokens
                    .iter()
                    .map(|t| t.name.len())
                    .max()
                    .unwrap_or(4)
                    .max(4);
                out.line(&format!(
                    "{:<width$}  {:<18}  {:<16}  {:<30}  STATUS",
                    "NAME", "SCOPES", "TENANT", "CREATED"
                ))?;
                for t in &file.tokens {
                    out.line(&format!(
                        "{:<width$}  {:<18}  {:<16}  {:<30}  {}",
                        t.name,
                        scope_list(&t.scopes),
                        t.tenant.as_deref().unwrap_or("-"),
                        t.created_at,
                        t.revoked_at
                            .as_deref()
                            .map_or_else(|| "active".to_owned(), |r| format!("revoked {r}"))
                    ))?;
                }
            }
        }
        TokenCommand::Revoke(r) => {
            let entry = tokens::revoke(&path, &r.name).map_err(token_error)?;
            out.line(&format!(
                "revoked token `{}` (at {}) in {}",
                entry.name,
                entry.revoked_at.unwrap_or_default(),
                path.display()
            ))?;
        }
    }
    out.flush()
}

/// The directory of a tokens file given with --tokens must exist: it is not
/// created, so that a mistyped path is an error.
fn check_tokens_directory(path: &Path) -> Result<(), CliError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if dir.is_dir() {
        return Ok(());
    }
    Err(CliError::usage(
        format!(
            "the directory `{}` of the tokens file does not exist",
            dir.display()
        ),
        format!(
            "check the --tokens path; to keep the tokens there, create the directory first \
             (mkdir -p {})",
            dir.display()
        ),
    ))
}

fn scope_list(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}
