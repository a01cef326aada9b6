//! The label's side of a coordinator: `lacquer submit`, `watch`, `status`,
//! `list`, `cancel` and `report`, over gRPC with a bearer token.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args as ClapArgs;
use indicatif::{ProgressBar, ProgressStyle};
use lacquer_proto::Bearer;
use lacquer_proto::v1 as pb;
use pb::albums_client::AlbumsClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Where the coordinator is and who we are.
#[derive(Debug, ClapArgs)]
pub struct Connection {
    /// The coordinator's address, e.g. http://coordinator.lacquer:7700
    /// (https:// for TLS).
    #[arg(long, env = "LACQUER_COORDINATOR", default_value = "http://127.0.0.1:7700")]
    coordinator: String,
    /// PEM certificate(s) to trust for an https:// coordinator (default:
    /// the Mozilla roots).
    #[arg(long, env = "LACQUER_CA_CERT")]
    ca_cert: Option<std::path::PathBuf>,
    /// The tenant's bearer token.
    #[arg(long, env = "LACQUER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON for scripts instead of text.
    #[arg(long)]
    json: bool,
}

/// Sends an album manifest to a coordinator.
#[derive(Debug, ClapArgs)]
pub struct SubmitArgs {
    /// The album manifest (YAML).
    manifest: std::path::PathBuf,
    /// Where the manifest's relative paths resolve (s3://bucket/prefix/).
    #[arg(long)]
    source: Option<String>,
    /// Where the deliverables go (s3://bucket/prefix/).
    #[arg(long)]
    output: Option<String>,
    /// Follow the job until it ends; the exit status is the job's.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    connection: Connection,
}

/// Names one job.
#[derive(Debug, ClapArgs)]
pub struct JobArgs {
    /// The job's id, as `submit` printed it.
    job: String,
    #[command(flatten)]
    connection: Connection,
}

/// Lists the tenant's jobs.
#[derive(Debug, ClapArgs)]
pub struct ListArgs {
    #[command(flatten)]
    connection: Connection,
}

type Client = AlbumsClient<InterceptedService<Channel, Bearer>>;

impl Connection {
    async fn connect(&self) -> anyhow::Result<Client> {
        let channel = lacquer_proto::connect(&self.coordinator, self.ca_cert.as_deref()).await?;
        let bearer = Bearer::new(self.token.as_deref()).map_err(anyhow::Error::msg)?;
        Ok(AlbumsClient::with_interceptor(channel, bearer).max_decoding_message_size(lacquer_proto::MAX_MESSAGE_BYTES))
    }
}

/// A refusal from the coordinator, said plainly.
fn refused(status: tonic::Status) -> anyhow::Error {
    let what = match status.code() {
        tonic::Code::InvalidArgument => "the coordinator rejected the request",
        tonic::Code::Unauthenticated => "not signed in (check --token or LACQUER_TOKEN)",
        tonic::Code::PermissionDenied => "not allowed",
        tonic::Code::NotFound => "not found",
        tonic::Code::FailedPrecondition => "not ready",
        tonic::Code::Unavailable => "the coordinator is unavailable",
        _ => "the coordinator failed",
    };
    anyhow::anyhow!("{what}:\n{}", status.message())
}

fn state_name(job: &pb::Job) -> &'static str {
    match job.state() {
        pb::JobState::Running => "running",
        pb::JobState::Succeeded => "succeeded",
        pb::JobState::Failed => "failed",
        pb::JobState::Cancelled => "cancelled",
        pb::JobState::Unspecified => "unknown",
    }
}

fn job_json(job: &pb::Job) -> serde_json::Value {
    serde_json::json!({
        "id": job.id,
        "title": job.title,
        "state": state_name(job),
        "error": if job.error.is_empty() { None } else { Some(&job.error) },
        "tasks_done": job.tasks_done,
        "tasks_total": job.tasks_total,
        "tasks_cached": job.tasks_cached,
        "tasks": job.tasks.iter().map(|t| serde_json::json!({
            "stage": t.stage().as_str_name().trim_start_matches("STAGE_").to_lowercase(),
            "track": t.track_id,
            "state": t.state().as_str_name().trim_start_matches("TASK_STATE_").to_lowercase(),
            "attempts": t.attempts,
            "cached": t.cached,
            "progress": t.progress,
            "last_error": if t.last_error.is_empty() { None } else { Some(&t.last_error) },
            "waiting": if t.waiting.is_empty() { None } else { Some(&t.waiting) },
        })).collect::<Vec<_>>(),
    })
}

fn print_job(job: &pb::Job, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", job_json(job))?;
        return Ok(());
    }
    write!(out, "{}  {}  {}  {}/{} tasks", job.id, state_name(job), job.title, job.tasks_done, job.tasks_total)?;
    if job.tasks_cached > 0 {
        write!(out, " ({} already done before)", job.tasks_cached)?;
    }
    writeln!(out)?;
    if !job.error.is_empty() {
        writeln!(out, "  error: {}", job.error)?;
    }
    Ok(())
}

/// The exit status a finished job stands for.
/// 0 for a delivered album; 3, as `lacquer master` says it, for one that
/// was not finished (failed or cancelled).
fn exit_for(job: &pb::Job) -> ExitCode {
    if job.state() == pb::JobState::Succeeded { ExitCode::SUCCESS } else { ExitCode::from(3) }
}

/// How long `--wait` and `watch` keep reconnecting to a coordinator that
/// is gone before they give up.
const RECONNECT_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// Follows a job to its end with a progress bar (or JSON lines). A lost
/// connection (the coordinator restarting) is watched again, with backoff,
/// for up to [`RECONNECT_FOR`]: the job goes on meanwhile.
async fn follow(client: &mut Client, job_id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let bar = if json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0).with_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} tasks ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    };
    let mut last: Option<pb::Job> = None;
    let mut lost_since: Option<std::time::Instant> = None;
    let mut wait = std::time::Duration::from_millis(200);
    let job = loop {
        let outcome = async {
            let mut events = client.watch(pb::WatchRequest { job_id: job_id.to_owned() }).await?.into_inner();
            while let Some(event) = events.message().await? {
                let Some(job) = event.job else { continue };
                lost_since = None;
                if last.as_ref() == Some(&job) {
                    continue;
                }
                bar.set_length(u64::from(job.tasks_total));
                bar.set_position(u64::from(job.tasks_done));
                bar.set_message(format!("{} {}", job.id, state_name(&job)));
                if json {
                    let _ = writeln!(std::io::stdout().lock(), "{}", job_json(&job));
                }
                last = Some(job);
            }
            Ok::<(), tonic::Status>(())
        }
        .await;
        if let Some(job) = last.as_ref().filter(|job| job.state() != pb::JobState::Running) {
            break job.clone();
        }
        // The watch ended or broke before the job did: watch again.
        let reason = match outcome {
            Ok(()) => "the watch ended early".to_owned(),
            Err(status) if lacquer_proto::is_transient(&status) => status.message().to_owned(),
            Err(status) => return Err(refused(status)),
        };
        let since = *lost_since.get_or_insert_with(|| {
            bar.suspend(|| eprintln!("lost the coordinator ({reason}); reconnecting"));
            std::time::Instant::now()
        });
        if since.elapsed() > RECONNECT_FOR {
            anyhow::bail!(
                "the coordinator has been unreachable for {} s ({reason}); the job may still be running: \
                 `lacquer watch {job_id}` follows it again",
                since.elapsed().as_secs()
            );
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_secs(5));
        if lost_since.is_none() {
            wait = std::time::Duration::from_millis(200);
        }
    };
    bar.finish_and_clear();
    if !json {
        print_job(&job, false)?;
    }
    Ok(exit_for(&job))
}

pub async fn submit(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let manifest_yaml = match crate::validate::read_manifest(&args.manifest)? {
        Ok(text) => text,
        Err(error) => {
            eprintln!("{}: {error}", args.manifest.display());
            return Ok(ExitCode::from(1));
        }
    };
    let mut client = args.connection.connect().await?;
    let request = pb::SubmitRequest {
        manifest_yaml,
        source: args.source.unwrap_or_default(),
        output: args.output.unwrap_or_default(),
    };
    let job = match client.submit(request).await {
        Ok(reply) => reply.into_inner().job.context("the coordinator accepted the album but sent no job")?,
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            eprintln!("{}: {}", args.manifest.display(), status.message());
            return Ok(ExitCode::from(1));
        }
        Err(status) => return Err(refused(status)),
    };
    if !args.wait {
        print_job(&job, args.connection.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !args.connection.json {
        eprintln!("submitted {}", job.id);
    }
    follow(&mut client, &job.id, args.connection.json).await
}

pub async fn watch(args: JobArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.connection.connect().await?;
    follow(&mut client, &args.job, args.connection.json).await
}

pub async fn status(args: JobArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.connection.connect().await?;
    let job = client.get(pb::GetRequest { job_id: args.job }).await.map_err(refused)?.into_inner();
    print_job(&job, args.connection.json)?;
    if !args.connection.json {
        let mut out = std::io::stdout().lock();
        for task in &job.tasks {
            let stage = task.stage().as_str_name().trim_start_matches("STAGE_").to_lowercase();
            let state = task.state().as_str_name().trim_start_matches("TASK_STATE_").to_lowercase();
            write!(out, "  {stage:<9} {:<24} {state:<8} attempts {}", task.track_id, task.attempts)?;
            if task.state() == pb::TaskState::Leased {
                write!(out, "  {:.0} % done", task.progress * 100.0)?;
            }
            if task.cached {
                write!(out, "  (cached)")?;
            }
            if !task.waiting.is_empty() {
                write!(out, "  waiting: {}", task.waiting)?;
            }
            if !task.last_error.is_empty() {
                write!(out, "  last error: {}", task.last_error)?;
            }
            writeln!(out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.connection.connect().await?;
    let jobs = client.list(pb::ListRequest {}).await.map_err(refused)?.into_inner().jobs;
    if args.connection.json {
        let all: Vec<_> = jobs.iter().map(job_json).collect();
        writeln!(std::io::stdout().lock(), "{}", serde_json::Value::Array(all))?;
    } else {
        for job in &jobs {
            print_job(job, false)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn cancel(args: JobArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.connection.connect().await?;
    let job = client.cancel(pb::CancelRequest { job_id: args.job }).await.map_err(refused)?.into_inner();
    print_job(&job, args.connection.json)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn report(args: JobArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.connection.connect().await?;
    let report = client.report(pb::ReportRequest { job_id: args.job }).await.map_err(refused)?.into_inner();
    writeln!(std::io::stdout().lock(), "{}", report.report_json)?;
    Ok(ExitCode::SUCCESS)
}
