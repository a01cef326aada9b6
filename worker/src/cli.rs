//! The `lacquer-worker` command (the binary lives in the `lacquer` package
//! with the others): leases album tasks from a coordinator and runs them
//! against object storage.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::run::Runner;
use crate::stores::{S3Options, Stores};
use crate::telemetry;
use crate::work::{Phase, Settings, work};
use clap::Parser;
use lacquer_proto::Bearer;
use lacquer_proto::v1::workers_client::WorkersClient;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{error, info};

/// Lease album tasks (mix, master, finalize, report) from a coordinator and
/// run them against object storage. Stateless: run as many as you like.
#[derive(Debug, Parser)]
#[command(name = "lacquer-worker", version, about)]
struct Args {
    /// The coordinator's address (https:// for TLS).
    #[arg(long, env = "LACQUER_COORDINATOR", default_value = "http://127.0.0.1:7700")]
    coordinator: String,
    /// The workers' bearer token.
    #[arg(long, env = "LACQUER_WORKER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM certificate(s) to trust for an https:// coordinator (default: the Mozilla roots).
    #[arg(long, env = "LACQUER_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// This worker's name in leases and logs (default: host name and process id).
    #[arg(long, env = "LACQUER_WORKER_ID")]
    worker_id: Option<String>,
    /// Tasks run at once (default: one per core).
    #[arg(long, env = "LACQUER_CONCURRENCY")]
    concurrency: Option<usize>,
    /// Where inputs and renders are kept while a task runs (default: the system's temporary folder).
    #[arg(long, env = "LACQUER_SCRATCH_DIR")]
    scratch_dir: Option<PathBuf>,
    /// Milliseconds between asks when no task is ready.
    #[arg(long, env = "LACQUER_POLL_MS", default_value_t = 500)]
    poll_ms: u64,
    /// Seconds a SIGTERM lets running tasks finish before they are handed back.
    #[arg(long, env = "LACQUER_SHUTDOWN_GRACE_S", default_value_t = 300)]
    shutdown_grace_s: u64,
    #[command(flatten)]
    telemetry: telemetry::Options,
    #[command(flatten)]
    s3: S3Options,
}

/// Parses the command line and works until SIGTERM.
pub fn main() -> ExitCode {
    let args = Args::parse();
    let telemetry = args.telemetry.clone();
    telemetry::run_process(&telemetry, || run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let channel = lacquer_proto::connect(&args.coordinator, args.ca_cert.as_deref()).await?;
    let bearer = Bearer::new(args.token.as_deref()).map_err(anyhow::Error::msg)?;
    let client = WorkersClient::with_interceptor(channel, bearer);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let settings = Settings {
        worker_id: args.worker_id.clone().unwrap_or_else(default_worker_id),
        concurrency: args.concurrency.unwrap_or(cores).max(1),
        poll: Duration::from_millis(args.poll_ms.max(10)),
    };
    let scratch = args.scratch_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("lacquer-worker"));
    let runner = Runner::new(Arc::new(Stores::new(args.s3.clone())), scratch);
    let (phase_sender, phase) = watch::channel(Phase::Working);
    let grace = Duration::from_secs(args.shutdown_grace_s);
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            error!("cannot listen for signals");
            return;
        };
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        info!(grace_s = grace.as_secs(), "shutting down: finishing running tasks, leasing no more");
        let _ = phase_sender.send(Phase::Draining);
        tokio::select! {
            () = tokio::time::sleep(grace) => info!("grace period over: handing back unfinished tasks"),
            _ = term.recv() => info!("second signal: handing back unfinished tasks"),
            _ = int.recv() => info!("second signal: handing back unfinished tasks"),
        }
        let _ = phase_sender.send(Phase::HandingBack);
    });
    info!(
        worker = %settings.worker_id,
        coordinator = %args.coordinator,
        concurrency = settings.concurrency,
        "lacquer-worker started"
    );
    work(client, runner, settings, phase).await;
    info!("lacquer-worker stopped");
    Ok(())
}

fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "worker".into());
    format!("{host}-{}", std::process::id())
}
