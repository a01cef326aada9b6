//! The `lacquer-worker` command (the binary lives in the `lacquer` package
//! with the others): leases album tasks from a coordinator and runs them
//! against object storage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::run::Runner;
use crate::work::{Phase, Settings, work};
use anyhow::Context;
use clap::Parser;
use lacquer_proto::v1::workers_client::WorkersClient;
use lacquer_proto::{Bearer, ConnectError};
use lacquer_runtime::stores::{S3Options, Stores};
use lacquer_runtime::telemetry;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{error, info, warn};

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
    /// Seconds a task waits for unreachable object storage (trying again
    /// with backoff, keeping its lease and its attempts) before it fails.
    #[arg(long, env = "LACQUER_STORAGE_OUTAGE_BUDGET_S", default_value_t = 600)]
    storage_outage_budget_s: u64,
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
    let bearer = Bearer::new(args.token.as_deref()).map_err(anyhow::Error::msg)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let settings = Settings {
        worker_id: args.worker_id.clone().unwrap_or_else(default_worker_id),
        concurrency: args.concurrency.unwrap_or(cores).max(1),
        poll: Duration::from_millis(args.poll_ms.max(10)),
    };
    let (phase_sender, mut phase) = watch::channel(Phase::Working);
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
    let scratch_root = args.scratch_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("lacquer-worker"));
    let scratch = Scratch::claim(&scratch_root, &settings.worker_id)?;
    // A coordinator that is not up yet (or restarting) is waited for.
    let mut wait = Duration::from_millis(250);
    let channel = loop {
        match lacquer_proto::connect(&args.coordinator, args.ca_cert.as_deref()).await {
            Ok(channel) => break channel,
            Err(ConnectError::Unreachable { url, reason }) => {
                warn!(coordinator = %url, %reason, retry_in_ms = wait.as_millis() as u64, "cannot reach the coordinator yet");
                metrics::counter!("lacquer_worker_coordinator_errors_total").increment(1);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = phase.changed() => {
                        info!("lacquer-worker stopped before reaching the coordinator");
                        return Ok(());
                    }
                }
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            Err(other) => return Err(other.into()),
        }
    };
    let client = WorkersClient::with_interceptor(channel, bearer)
        .max_decoding_message_size(lacquer_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(lacquer_proto::MAX_MESSAGE_BYTES);
    let runner = Runner::new(Arc::new(Stores::new(args.s3.clone())), scratch.dir.clone())
        .with_outage_budget(Duration::from_secs(args.storage_outage_budget_s));
    crate::work::describe_metrics();
    info!(
        worker = %settings.worker_id,
        coordinator = %args.coordinator,
        concurrency = settings.concurrency,
        scratch = %scratch.dir.display(),
        "lacquer-worker started"
    );
    work(client, runner, settings, phase).await;
    drop(scratch);
    info!("lacquer-worker stopped");
    Ok(())
}

/// This worker's scratch folder, `<root>/<worker-id>/`, held by a lock on
/// `<root>/<worker-id>.lock` for the life of the process. On start, the
/// folders of workers that died without cleaning up (their lock is free)
/// are removed; a live worker's folder is left alone.
struct Scratch {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: std::fs::File,
}

impl Scratch {
    fn claim(root: &Path, worker_id: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
        let mut freed = 0u64;
        for entry in std::fs::read_dir(root).with_context(|| format!("cannot read {}", root.display()))? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "lock") {
                continue;
            }
            let Ok(file) = std::fs::File::options().write(true).open(&path) else { continue };
            if file.try_lock().is_ok() {
                let dir = path.with_extension("");
                freed += folder_bytes(&dir);
                let _ = std::fs::remove_dir_all(&dir);
                let _ = std::fs::remove_file(&path);
            }
        }
        // Scratch left by workers of older versions (no lock at all).
        for entry in std::fs::read_dir(root)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if name.starts_with("task-") && path.is_dir() {
                freed += folder_bytes(&path);
                let _ = std::fs::remove_dir_all(&path);
            }
        }
        if freed > 0 {
            info!(freed_bytes = freed, root = %root.display(), "removed scratch files of workers that are gone");
        }
        let name: String = worker_id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .collect();
        let lock_path = root.join(format!("{name}.lock"));
        let lock =
            std::fs::File::create(&lock_path).with_context(|| format!("cannot create {}", lock_path.display()))?;
        lock.try_lock().map_err(|_| {
            anyhow::anyhow!(
                "{} is held by another worker named {worker_id}: give each worker its own --worker-id",
                lock_path.display()
            )
        })?;
        let dir = root.join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self { dir, lock_path, _lock: lock })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

fn folder_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => folder_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "worker".into());
    format!("{host}-{}", std::process::id())
}
