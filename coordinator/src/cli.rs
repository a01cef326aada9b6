//! The `lacquer-coordinator` command (the binary lives in the `lacquer`
//! package with the others): serves the Albums and Workers gRPC services.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Auth;
use crate::job::RetryPolicy;
use crate::server::{Tls, serve_with_tls};
use crate::service::{Coordinator, Settings, describe_metrics};
use crate::store::Store;
use anyhow::Context;
use clap::Parser;
use lacquer_runtime::stores::{S3Options, Stores};
use lacquer_runtime::telemetry;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

/// SIGXFSZ on Linux.
const XFSZ: i32 = 25;

/// Returns the heap's free pages to the system. glibc's allocator keeps
/// what was freed (per thread arena) for reuse; after a burst of finished
/// jobs that would hold the coordinator at its high-water mark.
#[allow(unsafe_code)]
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The lacquer coordinator: accepts album manifests from clients, probes
/// their inputs, and hands their tasks to workers.
#[derive(Parser)]
#[command(name = "lacquer-coordinator", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "LACQUER_LISTEN", default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// How long a lease lasts without a heartbeat, in milliseconds.
    #[arg(long, env = "LACQUER_LEASE_MS", default_value_t = 30_000)]
    lease_ms: u64,
    /// Folder of the durable state (created if missing). Without it, jobs
    /// live in memory only and a restart forgets them.
    #[arg(long, env = "LACQUER_STATE_DIR")]
    state_dir: Option<std::path::PathBuf>,
    /// Tokens of tenants and workers (YAML; see the `auth` module). Without
    /// it every client is one local tenant: for a single machine only.
    #[arg(long, env = "LACQUER_TOKENS")]
    tokens: Option<std::path::PathBuf>,
    /// TLS certificate chain (PEM); with `--tls-key`, the coordinator speaks
    /// TLS only.
    #[arg(long, env = "LACQUER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "LACQUER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Attempts per task before its job fails.
    #[arg(long, env = "LACQUER_MAX_ATTEMPTS", default_value_t = 3)]
    max_attempts: u32,
    /// Days a finished job keeps its full record (manifest, results,
    /// report); after them only its summary is kept.
    #[arg(long, env = "LACQUER_RETENTION_DAYS", default_value_t = 7.0)]
    retention_days: f64,
    /// The largest manifest Submit accepts, in bytes (at most 1 MiB, the
    /// limit of every manifest).
    #[arg(long, env = "LACQUER_MAX_MANIFEST_BYTES", default_value_t = 1 << 20)]
    max_manifest_bytes: usize,
    /// Seconds SIGTERM gives clients and workers to finish their calls
    /// before the process exits anyway.
    #[arg(long, env = "LACQUER_SHUTDOWN_GRACE_S", default_value_t = 10)]
    shutdown_grace_s: u64,
    #[command(flatten)]
    telemetry: telemetry::Options,
    #[command(flatten)]
    s3: S3Options,
}

/// Parses the command line and serves until SIGTERM or Ctrl-C.
pub fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let telemetry = args.telemetry.clone();
    telemetry::run_process(&telemetry, || run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let policy = RetryPolicy { max_attempts: args.max_attempts, lease_ms: args.lease_ms, ..RetryPolicy::default() };
    let auth = match &args.tokens {
        Some(path) => Auth::from_file(path).map_err(anyhow::Error::msg)?,
        None => {
            warn!("no --tokens: every client is the local tenant (single machine only)");
            Auth::open()
        }
    };
    let stores = Arc::new(Stores::new(args.s3.clone()));
    if !(args.retention_days.is_finite() && args.retention_days >= 0.0) {
        anyhow::bail!("--retention-days: {} is not a number of days", args.retention_days);
    }
    let settings = Settings {
        retention: Duration::from_secs_f64(args.retention_days * 86_400.0),
        max_manifest_bytes: args.max_manifest_bytes.min(lacquer_pipelines::manifest::MAX_MANIFEST_BYTES),
        ..Settings::default()
    };
    // A file-size limit (RLIMIT_FSIZE) makes a write fail with EFBIG, like
    // a full disk; without a handler SIGXFSZ would kill the process first.
    let _file_size_signal = signal(SignalKind::from_raw(XFSZ)).ok();
    let coordinator = match &args.state_dir {
        Some(dir) => Coordinator::open_with(policy, auth, stores, Store::open(dir)?, settings)?,
        None => Coordinator::with_settings(policy, auth, stores, settings),
    };
    describe_metrics();
    let housekeeping = coordinator.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        let mut ticks = 0u64;
        let (mut running, mut since_finished) = (0, u64::MAX);
        loop {
            every.tick().await;
            housekeeping.recover_store();
            housekeeping.sample_metrics();
            // Finished jobs leave only a summary: what their records held
            // goes back to the system, so memory follows the running jobs.
            // Once more when the idle blocking threads have ended (tokio
            // keeps them 10 s), as their heap arenas stay.
            let now_running = housekeeping.running_jobs();
            since_finished = if now_running < running { 0 } else { since_finished.saturating_add(1) };
            if since_finished == 0 || since_finished == 12 {
                release_freed_memory();
            }
            running = now_running;
            if ticks.is_multiple_of(60) {
                let dropped = housekeeping.sweep();
                if dropped > 0 {
                    info!(jobs = dropped, "finished jobs past retention now keep only their summary");
                }
            }
            ticks += 1;
        }
    });
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Tls {
            certificate_pem: std::fs::read(cert).with_context(|| format!("cannot read {}", cert.display()))?,
            key_pem: std::fs::read(key).with_context(|| format!("cannot read {}", key.display()))?,
        }),
        _ => None,
    };
    let mut term = signal(SignalKind::terminate())?;
    let (stopping, mut stopped) = tokio::sync::watch::channel(false);
    let draining = coordinator.clone();
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        info!("shutting down: ending watch streams, finishing calls");
        // Watchers are told to come back (to this coordinator's successor).
        draining.drain();
        stopping.send_replace(true);
    };
    info!(listen = %listener.local_addr()?, tls = tls.is_some(), state_dir = ?args.state_dir, "lacquer-coordinator listening");
    let grace = Duration::from_secs(args.shutdown_grace_s);
    let serving = serve_with_tls(listener, coordinator, tls, shutdown);
    tokio::pin!(serving);
    tokio::select! {
        served = &mut serving => served?,
        () = async {
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => warn!(grace_s = grace.as_secs(), "calls still open after the grace period; exiting anyway"),
    }
    info!("lacquer-coordinator stopped");
    Ok(())
}
