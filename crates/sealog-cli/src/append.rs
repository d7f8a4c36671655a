//! `sealog append`: one event, durable before the receipt is printed.

use std::io::Read;
use std::net::IpAddr;

use clap::Args;
use sealog::Outcome;
use sealog::format::{Actor, Event, Metadata, Principal, Resource, ValidationError};
use sealog_server::wire::ReceiptJson;

use crate::common::{
    Global, Out, OutcomeArg, PrivacyArgs, SecretsArg, field_and_reason, parse_time,
};
use crate::error::CliError;

const AFTER_HELP: &str = "\
Examples:
  sealog append --actor user:alice --action customer.delete \\
      --resource customer:4471 --outcome success
  sealog append --actor service:billing --action invoice.export \\
      --resource invoice --outcome denied --tenant acme --source-ip 203.0.113.9 \\
      --reason 'quota exceeded' --metadata '{\"rows\": 1200}'
  sealog append --json '{\"actor\":{\"type\":\"user\",\"id\":\"alice\"},
      \"action\":\"customer.delete\",\"resource\":{\"type\":\"customer\",\"id\":\"4471\"},
      \"outcome\":\"success\"}'
  echo \"$EVENT_JSON\" | sealog append --json -

Prints the receipt as one line of JSON:
  {\"seq\":0,\"recorded_at\":\"2026-11-23T17:25:00.123456789Z\",
   \"leaf_hash\":\"<64 hex digits>\",\"chain_hash\":\"<64 hex digits>\"}";

/// Append one event and print its receipt.
///
/// The event is given either field by field (--actor, --action,
/// --resource, --outcome and optional fields) or as one JSON document with
/// --json, in the event's JSON shape. The command returns once the event
/// is durable (fdatasync'ed) and prints its receipt: the seq, the time the
/// store recorded it, its Merkle leaf hash and the hash chain value after
/// it. An invalid event is refused (exit 2) with the name of the field.
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct AppendArgs {
    /// Who performed the action, as TYPE:ID.
    ///
    /// Example: --actor user:alice   or   --actor service:billing
    #[arg(
        long,
        value_name = "TYPE:ID",
        required_unless_present = "json",
        conflicts_with = "json"
    )]
    actor: Option<String>,

    /// What was done: a lowercase, dotted action name.
    ///
    /// Example: --action customer.delete
    #[arg(
        long,
        value_name = "ACTION",
        required_unless_present = "json",
        conflicts_with = "json"
    )]
    action: Option<String>,

    /// What it was done to: TYPE:ID, or TYPE alone when the action concerns
    /// no single resource (a listing, say).
    ///
    /// Example: --resource customer:4471   or   --resource invoice
    #[arg(
        long,
        value_name = "TYPE[:ID]",
        required_unless_present = "json",
        conflicts_with = "json"
    )]
    resource: Option<String>,

    /// How it ended.
    ///
    /// Example: --outcome denied
    #[arg(
        long,
        value_enum,
        required_unless_present = "json",
        conflicts_with = "json"
    )]
    outcome: Option<OutcomeArg>,

    /// The tenant (customer, organisation, workspace) the event belongs to.
    ///
    /// Example: --tenant acme
    #[arg(long, value_name = "TENANT", conflicts_with = "json")]
    tenant: Option<String>,

    /// The client's IP address (IPv4 or IPv6).
    ///
    /// Example: --source-ip 203.0.113.9
    #[arg(long, value_name = "IP", conflicts_with = "json")]
    source_ip: Option<String>,

    /// The client's user agent.
    ///
    /// Example: --user-agent 'curl/8.5.0'
    #[arg(long, value_name = "UA", conflicts_with = "json")]
    user_agent: Option<String>,

    /// The request that carried the action, to correlate with other logs.
    ///
    /// Example: --request-id req-7f3a
    #[arg(long, value_name = "ID", conflicts_with = "json")]
    request_id: Option<String>,

    /// Why the action was taken (a justification, a ticket reference).
    ///
    /// Example: --reason 'erasure request, ticket SEC-12'
    #[arg(long, value_name = "TEXT", conflicts_with = "json")]
    reason: Option<String>,

    /// Small structured details: a JSON object. Keys that look like secrets
    /// (password, token, api_key, ...) are refused, or redacted with
    /// --secrets redact.
    ///
    /// Example: --metadata '{"plan": "pro", "rows": 1200}'
    #[arg(long, value_name = "JSON", conflicts_with = "json")]
    metadata: Option<String>,

    /// When the action happened (RFC 3339); default: when the store
    /// records it.
    ///
    /// Example: --time 2026-11-23T17:25:00Z
    #[arg(long, value_name = "RFC3339", conflicts_with = "json")]
    time: Option<String>,

    /// The real principal when the actor acts on behalf of someone else
    /// (impersonation, support access), as TYPE:ID.
    ///
    /// Example: --on-behalf-of user:support-7
    #[arg(long, value_name = "TYPE:ID", conflicts_with = "json")]
    on_behalf_of: Option<String>,

    /// The session the action happened in.
    ///
    /// Example: --session-id s-81b2
    #[arg(long, value_name = "ID", conflicts_with = "json")]
    session_id: Option<String>,

    /// The whole event as JSON (the shape of `sealog query --format json`
    /// records, without seq and recorded_at); `-` reads it from standard
    /// input.
    ///
    /// Example: --json '{"actor":{"type":"user","id":"alice"},"action":"auth.login",
    /// "resource":{"type":"session"},"outcome":"denied"}'
    #[arg(long, value_name = "JSON")]
    json: Option<String>,

    #[command(flatten)]
    secrets: SecretsArg,

    #[command(flatten)]
    privacy: PrivacyArgs,
}

pub fn run(global: &Global, args: AppendArgs) -> Result<(), CliError> {
    let (mut event, input) = match &args.json {
        Some(json) => (event_from_json(json)?, "--json"),
        None => (event_from_flags(&args)?, "flags"),
    };
    // Check before opening the store, so that a bad event is a usage error
    // naming the flag, whatever state the store is in.
    let validator = args.secrets.validator();
    validator
        .validate(&mut event)
        .map_err(|e| invalid(input, &e))?;
    let privacy = args.privacy.policy()?;
    let store = global.open_for_writing(validator, privacy)?;
    let receipt = store
        .append(&event)
        .map_err(|e| CliError::store("append", &global.data_dir, e))?;
    store
        .close()
        .map_err(|e| CliError::store("closing the store", &global.data_dir, e))?;
    let mut out = Out::new();
    out.json_line(&ReceiptJson::from(&receipt))?;
    out.flush()
}

/// The flag that sets an event field.
fn flag_of(field: &str) -> &'static str {
    let top = field.split('.').next().unwrap_or_default();
    match (top, field) {
        (_, f) if f.starts_with("actor.on_behalf_of") => "--on-behalf-of",
        (_, "actor.session_id") => "--session-id",
        ("actor", _) => "--actor",
        ("action", _) => "--action",
        ("resource", _) => "--resource",
        ("outcome", _) => "--outcome",
        ("tenant", _) => "--tenant",
        (_, "source.ip") => "--source-ip",
        ("source", _) => "--user-agent",
        ("request_id", _) => "--request-id",
        ("reason", _) => "--reason",
        ("metadata", _) => "--metadata",
        ("time", _) => "--time",
        _ => "the flags",
    }
}

fn invalid(input: &str, e: &ValidationError) -> CliError {
    let input = if input == "flags" {
        flag_of(e.field()).to_owned()
    } else {
        input.to_owned()
    };
    let (field, reason) = field_and_reason(e);
    let hint = if matches!(
        e.kind(),
        sealog::format::validate::ValidationErrorKind::SecretKey { .. }
    ) {
        "remove the secret from the event and run the command again, or pass --secrets redact \
         to store the event with the value replaced by \"[REDACTED]\"; nothing was written"
    } else {
        "fix the field and run the command again; nothing was written"
    };
    CliError::InvalidEvent {
        input,
        line: None,
        field,
        reason,
        hint: hint.into(),
    }
}

fn event_from_json(json: &str) -> Result<Event, CliError> {
    let text = if json == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|source| CliError::ReadInput {
                what: "event JSON",
                path: "stdin".into(),
                source,
            })?;
        buf
    } else {
        json.as_bytes().to_vec()
    };
    Event::from_json(&text).map_err(|e| invalid("--json", &e))
}

/// Splits `TYPE:ID` (both non-empty).
fn type_and_id(flag: &str, text: &str) -> Result<(String, String), CliError> {
    match text.split_once(':') {
        Some((kind, id)) if !kind.is_empty() && !id.is_empty() => {
            Ok((kind.to_owned(), id.to_owned()))
        }
        _ => Err(CliError::usage(
            format!("{flag} `{text}` is not TYPE:ID"),
            format!("give a type and an id separated by a colon, e.g. {flag} user:alice"),
        )),
    }
}

fn event_from_flags(args: &AppendArgs) -> Result<Event, CliError> {
    let missing = |flag: &str| {
        CliError::usage(
            format!("{flag} is required"),
            "give --actor, --action, --resource and --outcome, or the whole event with --json",
        )
    };
    let (kind, id) = type_and_id(
        "--actor",
        args.actor.as_deref().ok_or_else(|| missing("--actor"))?,
    )?;
    let action = args.action.clone().ok_or_else(|| missing("--action"))?;
    let resource_text = args
        .resource
        .as_deref()
        .ok_or_else(|| missing("--resource"))?;
    let resource = match resource_text.split_once(':') {
        Some((kind, id)) if !id.is_empty() => Resource::new(kind, id),
        Some((kind, _)) => Resource::kind(kind),
        None => Resource::kind(resource_text),
    };
    let outcome: Outcome = args.outcome.ok_or_else(|| missing("--outcome"))?.into();
    let mut event = Event::new(Actor::new(kind, id), action, resource, outcome);
    if let Some(t) = &args.tenant {
        event = event.with_tenant(t);
    }
    if let Some(ip) = &args.source_ip {
        let ip: IpAddr = ip.parse().map_err(|_| CliError::InvalidEvent {
            input: "--source-ip".into(),
            line: None,
            field: "source.ip".into(),
            reason: format!("`{ip}` is not an IPv4 or IPv6 address"),
            hint: "give an address such as 203.0.113.9 or 2001:db8::1".into(),
        })?;
        event = event.with_source_ip(ip);
    }
    if let Some(ua) = &args.user_agent {
        event = event.with_user_agent(ua);
    }
    if let Some(r) = &args.request_id {
        event = event.with_request_id(r);
    }
    if let Some(r) = &args.reason {
        event = event.with_reason(r);
    }
    if let Some(m) = &args.metadata {
        event = event.with_metadata(parse_metadata(m)?);
    }
    if let Some(t) = &args.time {
        event = event.with_time(parse_time("--time", t)?);
    }
    if let Some(p) = &args.on_behalf_of {
        let (kind, id) = type_and_id("--on-behalf-of", p)?;
        event = event.on_behalf_of(Principal::new(kind, id));
    }
    if let Some(s) = &args.session_id {
        event = event.with_session_id(s);
    }
    Ok(event)
}

fn parse_metadata(text: &str) -> Result<Metadata, CliError> {
    sealog::format::event::metadata_from_json(text.as_bytes()).map_err(|e| {
        let (field, reason) = field_and_reason(&e);
        CliError::InvalidEvent {
            input: "--metadata".into(),
            line: None,
            field: if field.is_empty() {
                "metadata".into()
            } else {
                field
            },
            reason,
            hint: r#"give a JSON object with each key once, e.g. --metadata '{"plan": "pro"}'"#
                .into(),
        }
    })
}
