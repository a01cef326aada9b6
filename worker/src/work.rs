//! The worker process's loop: `concurrency` slots, each leasing a task,
//! running it while it heartbeats, and reporting the result.
//!
//! Shutdown: on the first SIGTERM the worker leases nothing more and lets
//! its running tasks finish; past the grace period (or on a second signal)
//! it hands the unfinished ones back, so another worker takes them at once
//! without losing an attempt. Either way it then exits cleanly.

use std::time::{Duration, Instant};

use lacquer_pipelines::manifest::ValidManifest;
use lacquer_pipelines::tasks::Stage;
use lacquer_proto::Bearer;
use lacquer_proto::v1 as pb;
use pb::workers_client::WorkersClient;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tracing::{Instrument, info, info_span, warn};

use crate::run::{Inputs, Progress, Runner, Task, TaskError};

pub type Client = WorkersClient<InterceptedService<Channel, Bearer>>;

/// Where the process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Working,
    /// Lease nothing more; finish what runs.
    Draining,
    /// Hand back what runs, now.
    HandingBack,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Names this worker in leases and logs.
    pub worker_id: String,
    /// Tasks run at once.
    pub concurrency: usize,
    /// How long to wait before asking again when nothing was ready.
    pub poll: Duration,
}

/// Runs `settings.concurrency` slots until `phase` leaves `Working` and
/// every slot has finished or handed back its task.
pub async fn work(client: Client, runner: Runner, settings: Settings, phase: watch::Receiver<Phase>) {
    let mut slots = tokio::task::JoinSet::new();
    for slot in 0..settings.concurrency.max(1) {
        let (client, runner, settings, phase) = (client.clone(), runner.clone(), settings.clone(), phase.clone());
        slots.spawn(async move { slot_loop(slot, client, runner, settings, phase).await });
    }
    while slots.join_next().await.is_some() {}
}

async fn slot_loop(
    slot: usize,
    mut client: Client,
    runner: Runner,
    settings: Settings,
    mut phase: watch::Receiver<Phase>,
) {
    // Slots start spread over the poll interval, so they do not ask in step.
    let mut wait = settings.poll.mul_f64(slot as f64 / settings.concurrency.max(1) as f64);
    loop {
        if !wait.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = phase.changed() => {}
            }
        }
        if *phase.borrow() != Phase::Working {
            return;
        }
        let request = pb::LeaseRequest { worker_id: settings.worker_id.clone() };
        match client.lease(request).await {
            Ok(reply) => match reply.into_inner().task {
                Some(assignment) => {
                    run_assignment(&mut client, &runner, assignment, &mut phase).await;
                    wait = Duration::ZERO;
                }
                None => wait = settings.poll,
            },
            Err(status) => {
                warn!(code = ?status.code(), message = status.message(), "cannot lease");
                metrics::counter!("lacquer_worker_coordinator_errors_total").increment(1);
                wait = (settings.poll * 4).min(Duration::from_secs(5));
            }
        }
    }
}

fn stage_name(stage: i32) -> &'static str {
    lacquer_proto::stage(stage).map_or("unknown", Stage::name)
}

/// The album, the earlier results and the task a lease carries.
pub fn parse_assignment(a: &pb::Assignment) -> Result<(ValidManifest, Inputs, Task), TaskError> {
    let album: ValidManifest = serde_json::from_str(&a.album_json)
        .map_err(|e| TaskError::fatal(format!("the album from the coordinator: {e}")))?;
    let inputs: Inputs =
        serde_json::from_str(&a.inputs_json).map_err(|e| TaskError::fatal(format!("the task's inputs: {e}")))?;
    let stage = lacquer_proto::stage(a.stage).ok_or_else(|| TaskError::fatal(format!("unknown stage {}", a.stage)))?;
    Ok((album, inputs, Task { stage, track: a.track.map(|t| t as usize) }))
}

/// What became of a task on this worker.
enum End {
    Finished(Result<Finished, TaskError>),
    /// The coordinator said stop (cancelled, failed) or stale (handed on).
    Dropped(&'static str),
    HandedBack,
}

/// A finished task as the coordinator is told of it: its result as JSON,
/// and what the run counted.
struct Finished {
    result_json: String,
    cached: bool,
    audio_seconds: f64,
    bytes_read: u64,
    bytes_written: u64,
}

impl Finished {
    fn new(done: crate::run::Done) -> Result<Self, TaskError> {
        Ok(Self {
            result_json: done.result.to_json()?,
            cached: done.cached,
            audio_seconds: done.audio_seconds,
            bytes_read: done.bytes_read,
            bytes_written: done.bytes_written,
        })
    }
}

async fn run_assignment(client: &mut Client, runner: &Runner, a: pb::Assignment, phase: &mut watch::Receiver<Phase>) {
    let stage = stage_name(a.stage);
    let span = info_span!("task", job = %a.job_id, stage, track = a.track, lease = a.lease, attempt = a.attempt);
    async {
        let task_ref = pb::TaskRef { job_id: a.job_id.clone(), stage: a.stage, track: a.track, lease: a.lease };
        let started = Instant::now();
        let parsed = parse_assignment(&a);
        info!("started");
        let end = match parsed {
            Err(error) => End::Finished(Err(error)),
            Ok((album, inputs, task)) => {
                let progress = Progress::default();
                let running = runner.run(&album, task, &inputs, &progress);
                tokio::pin!(running);
                let beat = heartbeat_interval(a.deadline_unix_ms);
                let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + beat, beat);
                let mut watching = true;
                loop {
                    tokio::select! {
                        done = &mut running => break End::Finished(done.and_then(Finished::new)),
                        _ = ticker.tick() => {
                            let request = pb::HeartbeatRequest { task: Some(task_ref.clone()), progress: progress.get(), waiting: progress.waiting() };
                            match client.heartbeat(request).await.map(|r| r.into_inner().action()) {
                                Ok(pb::heartbeat_reply::Action::Stop) => break End::Dropped("the job was cancelled or failed"),
                                Ok(pb::heartbeat_reply::Action::Stale) => break End::Dropped("the lease went to another worker"),
                                Ok(_) => {}
                                // The coordinator may be restarting: keep working.
                                Err(status) => warn!(code = ?status.code(), "heartbeat failed"),
                            }
                        }
                        changed = phase.changed(), if watching => {
                            if changed.is_err() {
                                watching = false;
                            } else if *phase.borrow() == Phase::HandingBack {
                                break End::HandedBack;
                            }
                        }
                    }
                }
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        match end {
            End::Finished(Ok(done)) => {
                metrics::histogram!("lacquer_worker_task_seconds", "stage" => stage).record(seconds);
                metrics::counter!("lacquer_worker_tasks_total", "stage" => stage, "outcome" => if done.cached { "cached" } else { "rendered" }).increment(1);
                metrics::counter!("lacquer_worker_bytes_read_total").increment(done.bytes_read);
                metrics::counter!("lacquer_worker_bytes_written_total").increment(done.bytes_written);
                if done.audio_seconds > 0.0 {
                    metrics::histogram!("lacquer_worker_task_realtime", "stage" => stage).record(done.audio_seconds / seconds.max(1e-9));
                }
                info!(cached = done.cached, seconds, audio_seconds = done.audio_seconds, "finished");
                let request = pb::CompleteRequest {
                    task: Some(task_ref.clone()),
                    result_json: done.result_json,
                    cached: done.cached,
                    audio_seconds: done.audio_seconds,
                    task_seconds: seconds,
                    bytes_read: done.bytes_read,
                    bytes_written: done.bytes_written,
                };
                report(|| {
                    let mut client = client.clone();
                    let request = request.clone();
                    async move { client.complete(request).await.map(|r| r.into_inner().accepted) }
                })
                .await;
            }
            End::Finished(Err(error)) => {
                metrics::counter!("lacquer_worker_tasks_total", "stage" => stage, "outcome" => "failed").increment(1);
                warn!(retryable = error.retryable, error = %error.message, "failed");
                let request = pb::FailRequest { task: Some(task_ref.clone()), reason: error.message, retryable: error.retryable, handed_back: false };
                report(|| {
                    let mut client = client.clone();
                    let request = request.clone();
                    async move { client.fail(request).await.map(|r| r.into_inner().accepted) }
                })
                .await;
            }
            End::Dropped(why) => {
                metrics::counter!("lacquer_worker_tasks_total", "stage" => stage, "outcome" => "dropped").increment(1);
                info!(why, "dropped");
            }
            End::HandedBack => {
                metrics::counter!("lacquer_worker_tasks_total", "stage" => stage, "outcome" => "handed_back").increment(1);
                info!("handed back");
                let request = pb::FailRequest {
                    task: Some(task_ref.clone()),
                    reason: "the worker shut down".into(),
                    retryable: true,
                    handed_back: true,
                };
                report(|| {
                    let mut client = client.clone();
                    let request = request.clone();
                    async move { client.fail(request).await.map(|r| r.into_inner().accepted) }
                })
                .await;
            }
        }
    }
    .instrument(span)
    .await
}

/// How often to heartbeat: a third of the time left on the lease, between
/// 100 ms and 10 s.
fn heartbeat_interval(deadline_unix_ms: u64) -> Duration {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    Duration::from_millis((deadline_unix_ms.saturating_sub(now_ms) / 3).clamp(100, 10_000))
}

/// Sends a result, retrying while the coordinator is unreachable (it may be
/// restarting) for up to two minutes: a result is worth keeping.
async fn report<F, Fut>(send: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<bool, tonic::Status>>,
{
    let give_up = Instant::now() + Duration::from_secs(120);
    let mut wait = Duration::from_millis(100);
    loop {
        match send().await {
            Ok(true) => return,
            Ok(false) => {
                info!("the coordinator no longer wanted this result (the lease was handed on)");
                return;
            }
            Err(status) if lacquer_proto::is_transient(&status) && Instant::now() < give_up => {
                warn!(code = ?status.code(), "cannot report yet; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(status) => {
                warn!(code = ?status.code(), message = status.message(), "cannot report the result; the lease will run out and the task will be done again");
                return;
            }
        }
    }
}

/// Registers every counter at zero, so a series exists before its first
/// event (a rate over a series that appears late reads nothing).
pub fn describe_metrics() {
    for stage in ["mix", "master", "finalize", "report"] {
        for outcome in ["rendered", "cached", "failed", "dropped", "handed_back"] {
            metrics::counter!("lacquer_worker_tasks_total", "stage" => stage, "outcome" => outcome).increment(0);
        }
    }
    for name in [
        "lacquer_worker_bytes_read_total",
        "lacquer_worker_bytes_written_total",
        "lacquer_worker_coordinator_errors_total",
        "lacquer_worker_storage_retries_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    metrics::gauge!("lacquer_worker_tasks_waiting_for_storage").set(0.0);
}
