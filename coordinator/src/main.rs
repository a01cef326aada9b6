//! `lacquer-coordinator`: serves the Albums and Workers gRPC services.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use lacquer_coordinator::auth::Auth;
use lacquer_coordinator::job::RetryPolicy;
use lacquer_coordinator::server::{Tls, serve_with_tls};
use lacquer_coordinator::service::Coordinator;
use lacquer_coordinator::store::Store;

/// The lacquer coordinator: accepts album manifests from clients and hands
/// their tasks to workers.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// How long a lease lasts without a heartbeat, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    lease_ms: u64,
    /// Folder of the durable state (created if missing). Without it, jobs
    /// live in memory only and a restart forgets them.
    #[arg(long)]
    state_dir: Option<std::path::PathBuf>,
    /// Tokens of tenants and workers (YAML; see the `auth` module). Without
    /// it every client is one local tenant: for a single machine only.
    #[arg(long)]
    tokens: Option<std::path::PathBuf>,
    /// TLS certificate chain (PEM); with `--tls-key`, the coordinator speaks
    /// TLS only.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Attempts per task before its job fails.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    // A closed stderr must not stop the service: what is said there is
    // for people, and losing it is no reason to exit.
    let say = |text: std::fmt::Arguments| {
        let _ = writeln!(std::io::stderr(), "{text}");
    };
    say(format_args!("lacquer-coordinator listening on {}", listener.local_addr()?));
    let policy = RetryPolicy { max_attempts: args.max_attempts, lease_ms: args.lease_ms, ..RetryPolicy::default() };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let auth = match &args.tokens {
        Some(path) => Auth::from_file(path).map_err(anyhow::Error::msg)?,
        None => {
            say(format_args!(
                "lacquer-coordinator: no --tokens: every client is the local tenant (single machine only)"
            ));
            Auth::open()
        }
    };
    let coordinator = match &args.state_dir {
        Some(dir) => Coordinator::open(policy, auth, Store::open(dir)?)?,
        None => Coordinator::new(policy, auth),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Tls {
            certificate_pem: std::fs::read(cert).with_context(|| format!("cannot read {}", cert.display()))?,
            key_pem: std::fs::read(key).with_context(|| format!("cannot read {}", key.display()))?,
        }),
        _ => None,
    };
    serve_with_tls(listener, coordinator, tls, shutdown).await?;
    Ok(())
}
