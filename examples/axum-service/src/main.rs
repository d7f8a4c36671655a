//! `axum-service`: an example service that records an audit event per
//! request, into an embedded sealog store (`--data-dir`) or a sealog server
//! (`--server`, token in `SEALOG_TOKEN`).
//!
//! ```text
//! axum-service --listen 127.0.0.1:8080 --data-dir ./audit
//! SEALOG_TOKEN=… axum-service --server http://127.0.0.1:7807
//! curl -X DELETE -H 'authorization: Bearer alice-token' http://127.0.0.1:8080/customers/4471
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sealog_example_axum::{app, audit_layer, serve};
use sealog_tower::StoreSink;

/// An axum service whose requests are recorded in a sealog audit log.
#[derive(Debug, Parser)]
#[command(name = "axum-service")]
struct Args {
    /// The address to serve on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Record into an embedded store in this directory (created if absent).
    #[arg(long, conflicts_with = "server", required_unless_present = "server")]
    data_dir: Option<PathBuf>,
    /// Record into the sealog server at this URL.
    #[arg(long)]
    server: Option<String>,
    /// The server's bearer token (a token with the `ingest` scope).
    #[arg(
        long,
        env = "SEALOG_TOKEN",
        hide_env_values = true,
        requires = "server"
    )]
    token: Option<String>,
    /// A reverse proxy whose X-Forwarded-For is believed (an address or a
    /// CIDR network; repeatable).
    #[arg(long = "trusted-proxy")]
    trusted_proxies: Vec<String>,
}

enum Sink {
    Store(StoreSink),
    Server(sealog_client::Batcher),
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let sink = match (&args.data_dir, &args.server) {
        (Some(dir), _) => {
            let store = sealog::Store::open(dir, sealog::StoreOptions::default())
                .map_err(|e| format!("cannot open the audit store `{}`: {e}", dir.display()))?;
            Sink::Store(StoreSink::new(store)?)
        }
        (None, Some(url)) => {
            let mut client = sealog_client::Client::builder(url.as_str());
            if let Some(token) = &args.token {
                client = client.bearer_token(token.as_str());
            }
            let batcher = client
                .build()?
                .batcher(sealog_client::BatchOptions::default())?;
            Sink::Server(batcher)
        }
        (None, None) => return Err("give --data-dir or --server".into()),
    };
    let layer = match &sink {
        Sink::Store(s) => audit_layer(s.clone(), &args.trusted_proxies)?,
        Sink::Server(b) => audit_layer(b.clone(), &args.trusted_proxies)?,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    println!("listening on http://{}", listener.local_addr()?);
    serve(listener, app(layer), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    // Events still queued are written before the process exits.
    match sink {
        Sink::Store(s) => s.close().await,
        Sink::Server(b) => b.close().await,
    }
    Ok(())
}
