//! `lacquer master`: the whole album on this machine — validate, mix and
//! master every track, plan the album pass, finalize every deliverable and
//! write the report — on all cores, with content-keyed caching.
//!
//! The tasks are scheduled by the coordinator's own job machine
//! (`lacquer_coordinator::job::Job`, over the album's `TaskGraph`), in this
//! process, and every task runs through the workers' own [`Runner`], so
//! the order and the bytes are those a cluster would give. Each task's key is a BLAKE3 hash of the
//! pipeline version, its settings and the content hashes of its inputs; a
//! finished task is recorded under `<output>/.lacquer/tasks/<key>.json`,
//! and a later run (or a worker) with the same key reuses it instead of
//! rendering, so changing one stem re-renders only what depends on it.
//! Outputs are published whole: nobody ever sees a partial file.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::anyhow;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use lacquer_coordinator::job::{Job, JobState, RetryPolicy};
use lacquer_pipelines::album::AlbumPlan;
use lacquer_pipelines::manifest::ValidManifest;
use lacquer_pipelines::report::AlbumReport;
use lacquer_pipelines::tasks::{FinalizeResult, MasterResult, MixResult, Stage, TaskGraph, TaskId};
use lacquer_runtime::stores::{S3Options, Stores};
use lacquer_worker::run::{Done, Inputs, Progress, Runner, Task, TaskResult, default_scratch};
use serde::Serialize;

use crate::validate::{check_manifest, print_problems};
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The album manifest (YAML, version 1)
    manifest: PathBuf,
    /// Where to write everything (overrides the manifest's `output`)
    #[arg(long, short)]
    output: Option<String>,
    /// How many tasks run at once (default: one more than the cores)
    #[arg(long, short)]
    jobs: Option<usize>,
    /// Print nothing but errors
    #[arg(long)]
    quiet: bool,
    /// Print a JSON summary (and no progress bars)
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args, s3: S3Options) -> anyhow::Result<ExitCode> {
    let valid = match check_manifest(&args.manifest, args.output.as_deref(), s3.clone()).await? {
        Ok(valid) => valid,
        Err(error) => {
            print_problems(&args.manifest, &error, args.json)?;
            return Ok(ExitCode::FAILURE);
        }
    };
    // One more task than cores: a task's threads wait on one another (a
    // render hands its blocks to each deliverable's encoder and meter, a
    // probe to its analyzer), and the spare task's work fills those waits
    // (the example album on 2 cores: 1.22 -> 1.12 s, 6 runs each side by
    // side; the same files, whatever `--jobs`).
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()) + 1).max(1);
    let runner = Runner::new(Arc::new(Stores::new(s3)), default_scratch(&valid.output));
    let summary = match Album::new(valid, runner, jobs, args.quiet || args.json).run().await? {
        Ok(summary) => summary,
        Err(failed) => {
            failed.print(args.json)?;
            return Ok(ExitCode::from(3));
        }
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &summary)?;
        writeln!(out)?;
    } else if !args.quiet {
        summary.print(&mut out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What a run did, for people and scripts.
#[derive(Debug, Serialize)]
struct Summary {
    output: String,
    report: String,
    tasks: usize,
    rendered: usize,
    cached: usize,
    seconds: f64,
    audio_seconds: f64,
    /// The process's peak resident memory, where the OS tells it (Linux).
    peak_memory_mb: Option<f64>,
    tracks: Vec<TrackSummary>,
    warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
struct TrackSummary {
    id: String,
    integrated_lufs: Option<f64>,
    target_lufs: f64,
    true_peak_dbtp: f64,
    loudness_range_lu: f64,
}

impl Summary {
    fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        if self.rendered == 0 {
            writeln!(
                out,
                "nothing to render: all {} tasks were already done for these inputs and settings",
                self.tasks
            )?;
        } else {
            writeln!(
                out,
                "rendered {} of {} tasks ({} cached) in {:.1} s: {:.1} s of audio, {:.1}x realtime{}",
                self.rendered,
                self.tasks,
                self.cached,
                self.seconds,
                self.audio_seconds,
                self.audio_seconds / self.seconds.max(1e-9),
                self.peak_memory_mb.map(|mb| format!(", peak memory {mb:.0} MB")).unwrap_or_default()
            )?;
        }
        for t in &self.tracks {
            let lufs = t.integrated_lufs.map(|l| format!("{l:.2}")).unwrap_or_else(|| "-inf".into());
            writeln!(
                out,
                "  {:<24} {lufs:>7} LUFS (target {:.1})  {:>6.2} dBTP  LRA {:.1} LU",
                t.id, t.target_lufs, t.true_peak_dbtp, t.loudness_range_lu
            )?;
        }
        for w in &self.warnings {
            writeln!(out, "warning: {w}")?;
        }
        writeln!(out, "report: {}", self.report)?;
        writeln!(out, "output: {}", self.output)
    }
}

struct Album {
    valid: Arc<ValidManifest>,
    runner: Runner,
    /// Tasks at once.
    jobs: usize,
    progress: MultiProgress,
    rendered: usize,
    cached: usize,
}

/// The results of the album's tasks as they finish, typed: per stage,
/// track `i`'s at index `i`.
struct Results {
    mix: Vec<Option<MixResult>>,
    master: Vec<Option<MasterResult>>,
    finalize: Vec<Option<FinalizeResult>>,
    plan: Option<AlbumPlan>,
    report: Option<AlbumReport>,
}

impl Results {
    fn new(tracks: usize) -> Self {
        Self {
            mix: vec![None; tracks],
            master: vec![None; tracks],
            finalize: vec![None; tracks],
            plan: None,
            report: None,
        }
    }

    /// What a task of `stage` reads, as the graph says.
    fn inputs(&self, stage: Stage) -> Inputs {
        let mut inputs = Inputs::default();
        for read in TaskGraph::reads(stage) {
            match read {
                Stage::Mix => inputs.mix = self.mix.clone(),
                Stage::Master => inputs.master = self.master.clone(),
                Stage::Plan => inputs.plan = self.plan.clone(),
                Stage::Finalize => inputs.finalize = self.finalize.clone(),
                Stage::Report => {}
            }
        }
        inputs
    }
}

impl Album {
    fn new(valid: ValidManifest, runner: Runner, jobs: usize, quiet: bool) -> Self {
        let progress = MultiProgress::with_draw_target(if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        Self { valid: Arc::new(valid), runner, jobs, progress, rendered: 0, cached: 0 }
    }

    fn bar(&self, stage: &str, length: usize) -> ProgressBar {
        let bar = self.progress.add(ProgressBar::new(length as u64));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} {msg}").unwrap().progress_chars("=> "),
        );
        bar.set_prefix(stage.to_owned());
        bar
    }

    /// Keeps a finished task's result, as typed as the Runner gave it.
    fn take(&mut self, task: TaskId, done: Done, results: &mut Results, failed: &mut Failed) -> anyhow::Result<()> {
        if done.cached {
            self.cached += 1;
        } else {
            self.rendered += 1;
        }
        let track = task.track.unwrap_or(0);
        match done.result {
            TaskResult::Mix(result) => results.mix[track] = Some(result),
            TaskResult::Master(result) => results.master[track] = Some(result),
            TaskResult::Plan(plan) => results.plan = Some(plan),
            TaskResult::Finalize(result) => {
                failed.delivered(track, result.files.iter().map(|f| f.path.clone()).collect());
                results.finalize[track] = Some(result);
            }
            TaskResult::Report(report) => results.report = Some(*report),
        }
        Ok(())
    }

    /// The whole album, driven by the coordinator's own job machine in
    /// this process: a task is run as soon as the graph allows, `--jobs`
    /// at once. A failed task is left leased, so what needs it stays
    /// blocked while every other task still runs (and is recorded: a
    /// rerun goes on from there). Then the summary; or, when a task
    /// failed, what became of each track.
    async fn run(mut self) -> anyhow::Result<Result<Summary, Failed>> {
        let started = Instant::now();
        let graph = TaskGraph::new(&self.valid.manifest);
        // One attempt (a local failure is not transient); leases that never
        // run out (no other worker could take a task over).
        let policy = RetryPolicy { max_attempts: 1, first_backoff_ms: 0, lease_ms: u64::MAX / 2 };
        let mut job = Job::new(graph, policy);
        let mut results = Results::new(graph.tracks);
        let mut failed = Failed::new(&self.valid);
        let bars: Vec<(Stage, ProgressBar)> = [Stage::Mix, Stage::Master, Stage::Plan, Stage::Finalize, Stage::Report]
            .into_iter()
            .map(|stage| {
                let album_level = matches!(stage, Stage::Plan | Stage::Report);
                (stage, self.bar(stage.name(), if album_level { 1 } else { graph.tracks }))
            })
            .collect();
        let mut running = tokio::task::JoinSet::new();
        loop {
            while running.len() < self.jobs {
                let Some(lease) = job.lease("lacquer-master", 0) else { break };
                let inputs = results.inputs(lease.task.stage);
                let (runner, valid) = (self.runner.clone(), self.valid.clone());
                let task = Task { stage: lease.task.stage, track: lease.task.track };
                running.spawn(async move {
                    let done = runner.run(&valid, task, &inputs, &Progress::default()).await;
                    (lease, done)
                });
            }
            let Some(joined) = running.join_next().await else { break };
            let (lease, done) = joined?;
            let task = lease.task;
            if let Some((_, bar)) = bars.iter().find(|(stage, _)| *stage == task.stage) {
                bar.inc(1);
            }
            match done {
                Ok(done) => {
                    self.take(task, done, &mut results, &mut failed)?;
                    job.complete(task, lease.lease);
                }
                Err(error) => failed.failed(task, error.to_string()),
            }
        }
        for (_, bar) in &bars {
            bar.finish_with_message(if *job.state() == JobState::Succeeded { "done" } else { "stopped" });
        }
        let (Some(report), Some(masters)) =
            (results.report.take(), results.master.iter().cloned().collect::<Option<Vec<MasterResult>>>())
        else {
            let waiting = if job.masters_done() { "" } else { "the album pass needs every track's master" };
            return self.fail(failed, waiting).await;
        };

        let manifest = &self.valid.manifest;
        let audio_seconds =
            masters.iter().map(|m| m.report.analysis.frames as f64 / f64::from(manifest.album.sample_rate)).sum();
        let output = self.valid.output.to_string();
        let report_location = match &self.valid.output {
            lacquer_pipelines::manifest::StorageRoot::Local { dir } => dir.join("report.html").display().to_string(),
            remote => format!("{remote}report.html"),
        };
        Ok(Ok(Summary {
            output,
            report: report_location,
            tasks: self.rendered + self.cached,
            rendered: self.rendered,
            cached: self.cached,
            seconds: started.elapsed().as_secs_f64(),
            audio_seconds,
            peak_memory_mb: peak_memory_mb(),
            tracks: report
                .tracks
                .iter()
                .map(|t| {
                    let delivered = t.finalize.delivered.first().map(|d| &d.analysis).unwrap_or(&t.finalize.render);
                    TrackSummary {
                        id: t.id.clone(),
                        integrated_lufs: delivered.integrated_lufs,
                        target_lufs: t.correction.target_lufs,
                        true_peak_dbtp: delivered.true_peak_dbtp,
                        loudness_range_lu: delivered.loudness_range_lu,
                    }
                })
                .collect(),
            warnings: report
                .tracks
                .iter()
                .flat_map(|t| t.warnings.iter().map(move |w| format!("{}: {w}", t.id)))
                .collect(),
        }))
    }

    /// Ends a run that could not finish: the files of every track that
    /// was delivered stay; the report of an earlier run is removed, so no
    /// report at the output reads as this album, complete.
    async fn fail(self, mut failed: Failed, waiting: &str) -> anyhow::Result<Result<Summary, Failed>> {
        for track in &mut failed.tracks {
            if track.outcome.is_none() {
                track.outcome = Some(Outcome::Waiting(waiting.to_owned()));
            }
        }
        let storage = self.runner.stores().backend(&self.valid.output).await;
        for name in ["report.json", "report.html"] {
            storage.delete(name).await.map_err(|e| anyhow!("cannot remove the earlier {name}: {e}"))?;
        }
        Ok(Err(failed))
    }
}

/// What became of each track of an album that could not be finished.
#[derive(Debug, Serialize)]
struct Failed {
    output: String,
    tracks: Vec<TrackOutcome>,
    /// Why the report failed, when every track was delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    report_error: Option<String>,
}

#[derive(Debug, Serialize)]
struct TrackOutcome {
    id: String,
    #[serde(flatten)]
    outcome: Option<Outcome>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
enum Outcome {
    /// Every deliverable written: its files, under the output.
    Delivered(Vec<String>),
    /// A task of this track failed: why.
    Failed(String),
    /// Not delivered because another track failed (what it waits for).
    Waiting(String),
}

impl Failed {
    fn new(valid: &ValidManifest) -> Self {
        let tracks = valid.manifest.tracks.iter().map(|t| TrackOutcome { id: t.id.clone(), outcome: None }).collect();
        Self { output: valid.output.to_string(), tracks, report_error: None }
    }

    /// Track `track` was delivered as `files`.
    fn delivered(&mut self, track: usize, files: Vec<String>) {
        self.tracks[track].outcome = Some(Outcome::Delivered(files));
    }

    /// `task` failed with `error`.
    fn failed(&mut self, task: TaskId, error: String) {
        match task.track {
            Some(track) => {
                self.tracks[track].outcome = Some(Outcome::Failed(format!("its {} failed: {error}", task.stage.name())))
            }
            None => self.report_error = Some(error),
        }
    }

    fn print(&self, json: bool) -> anyhow::Result<()> {
        if json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, self)?;
            writeln!(out)?;
            return Ok(());
        }
        let mut err = std::io::stderr().lock();
        match &self.report_error {
            Some(error) => writeln!(err, "error: the album was not finished: its report failed: {error}")?,
            None => {
                let failed = self.tracks.iter().filter(|t| matches!(t.outcome, Some(Outcome::Failed(_)))).count();
                let total = self.tracks.len();
                writeln!(err, "error: the album was not finished: {failed} of {total} tracks failed")?;
            }
        }
        for track in &self.tracks {
            let said = match &track.outcome {
                Some(Outcome::Delivered(files)) => format!("delivered: {}", files.join(", ")),
                Some(Outcome::Failed(error)) => format!("NOT delivered: {error}"),
                Some(Outcome::Waiting(why)) if !why.is_empty() => format!("not delivered: {why}"),
                _ => "not delivered".to_owned(),
            };
            writeln!(err, "  {:<24} {said}", track.id)?;
        }
        writeln!(err, "no report was written to {}: the album is not complete", self.output)?;
        writeln!(err, "what finished is kept; the same command goes on from there")?;
        Ok(())
    }
}

/// Peak resident set size of this process (`VmHWM`), on Linux.
fn peak_memory_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}
