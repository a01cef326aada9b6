//! Runs one album task against storage: fetches its inputs (a local root is
//! read in place; object storage is streamed into a scratch folder while
//! its content hash is taken), skips the work when its key is already
//! recorded in the album's output, otherwise renders through
//! [`lacquer_pipelines::tasks`] on a blocking thread, publishes every
//! output, then the task's record. `lacquer master` and `lacquer-worker`
//! both run tasks through here.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use lacquer_pipelines::album::AlbumPlan;
use lacquer_pipelines::manifest::{InputRole, StorageRoot, ValidManifest};
use lacquer_pipelines::report::{AlbumReport, OutputFile};
use lacquer_pipelines::stages::mix::mix_track;
use lacquer_pipelines::stages::{AudioInput, StageError, cancellable};
use lacquer_pipelines::tasks::{
    AlbumTasks, FinalizeResult, MasterResult, MixFile, MixResult, Stage, TaskRecord, record_key, task_key,
};
use lacquer_storage::{Storage, StorageError, WriteMode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use lacquer_runtime::stores::Stores;

/// One task of an album.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Task {
    pub stage: Stage,
    /// The track's index; `None` for the report.
    pub track: Option<usize>,
}

/// What a task needs from the tasks before it: per stage, track `i`'s
/// result at index `i` (`None` where not done or not needed).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Inputs {
    #[serde(default)]
    pub mix: Vec<Option<MixResult>>,
    #[serde(default)]
    pub master: Vec<Option<MasterResult>>,
    #[serde(default)]
    pub finalize: Vec<Option<FinalizeResult>>,
    /// The album plan, made once at the barrier.
    #[serde(default)]
    pub plan: Option<AlbumPlan>,
}

/// A task's result, typed: `lacquer master` keeps it as it is; a worker
/// sends it to the coordinator as JSON ([`TaskResult::to_json`]: the
/// inner result, untagged).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TaskResult {
    Mix(MixResult),
    Master(MasterResult),
    Plan(AlbumPlan),
    Finalize(FinalizeResult),
    Report(Box<AlbumReport>),
}

impl TaskResult {
    pub fn to_json(&self) -> std::result::Result<String, TaskError> {
        serde_json::to_string(self).map_err(|e| TaskError::fatal(format!("cannot encode the result: {e}")))
    }
}

/// Each stage's result is a `TaskResult`.
macro_rules! task_result_from {
    ($($variant:ident($type:ty) => $wrap:expr),* $(,)?) => {
        $(impl From<$type> for TaskResult {
            fn from(result: $type) -> Self {
                TaskResult::$variant($wrap(result))
            }
        })*
    };
}

task_result_from! {
    Mix(MixResult) => std::convert::identity,
    Master(MasterResult) => std::convert::identity,
    Plan(AlbumPlan) => std::convert::identity,
    Finalize(FinalizeResult) => std::convert::identity,
    Report(AlbumReport) => Box::new,
}

/// A finished task.
#[derive(Debug, Clone)]
pub struct Done {
    /// The stage's result.
    pub result: TaskResult,
    /// Whether the key was already recorded, so nothing was rendered.
    pub cached: bool,
    /// Seconds of audio the task rendered (0 when cached).
    pub audio_seconds: f64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

/// Why a task did not finish.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    pub message: String,
    /// Whether another attempt may succeed (storage unreachable) or not (a
    /// corrupt input).
    pub retryable: bool,
    /// Object storage could not be reached: not the task's fault. The
    /// runner waits and tries again (within its outage budget) before
    /// such an error is reported.
    pub unreachable: bool,
}

impl TaskError {
    pub fn fatal(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: false, unreachable: false }
    }

    /// Local trouble (a scratch disk) that another attempt may not have.
    fn local(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: true, unreachable: false }
    }
}

impl From<StorageError> for TaskError {
    fn from(error: StorageError) -> Self {
        Self { retryable: error.is_retryable(), unreachable: error.is_unreachable(), message: error.to_string() }
    }
}

impl From<StageError> for TaskError {
    fn from(error: StageError) -> Self {
        // A stage fails on its inputs (which do not change between
        // attempts), except for local I/O such as a full scratch disk.
        let retryable = matches!(error, StageError::Io(_));
        Self { message: error.to_string(), retryable, unreachable: false }
    }
}

type Result<T, E = TaskError> = std::result::Result<T, E>;

/// How far a running task is, 0..1, for its heartbeats: inputs fetched
/// take it to 0.2, the render to 0.9, publishing to 1. While storage is
/// unreachable, what the task waits for.
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU32,
    waiting: std::sync::Mutex<Option<String>>,
}

impl Progress {
    pub fn get(&self) -> f32 {
        f32::from_bits(self.done.load(Ordering::Relaxed))
    }

    fn set(&self, done: f32) {
        self.done.store(done.to_bits(), Ordering::Relaxed);
    }

    /// What the task waits for (empty while it works).
    pub fn waiting(&self) -> String {
        self.waiting.lock().map(|w| w.clone().unwrap_or_default()).unwrap_or_default()
    }

    fn wait_for(&self, what: Option<String>) {
        if let Ok(mut waiting) = self.waiting.lock() {
            *waiting = what;
        }
    }
}

/// How long a task waits for unreachable object storage by default before
/// it fails (retryably).
pub const DEFAULT_OUTAGE_BUDGET: Duration = Duration::from_secs(600);

/// Runs tasks; holds the storage backends and the scratch folder.
#[derive(Debug, Clone)]
pub struct Runner {
    stores: Arc<Stores>,
    scratch: PathBuf,
    /// How long a task waits for unreachable storage, trying again with
    /// backoff, before it fails.
    outage_budget: Duration,
}

/// A file the task reads: where it is on this machine, and its hash.
struct Fetched {
    path: PathBuf,
    blake3: String,
}

/// What one run counts.
#[derive(Default)]
struct Counts {
    bytes_read: u64,
    bytes_written: u64,
    /// Files fetched into scratch so far (names them apart).
    fetched: usize,
}

impl Runner {
    /// A runner whose scratch files go under `scratch` (created if needed).
    pub fn new(stores: Arc<Stores>, scratch: PathBuf) -> Self {
        Self { stores, scratch, outage_budget: DEFAULT_OUTAGE_BUDGET }
    }

    /// How long a task waits for unreachable object storage before failing.
    pub fn with_outage_budget(mut self, budget: Duration) -> Self {
        self.outage_budget = budget;
        self
    }

    pub fn stores(&self) -> &Arc<Stores> {
        &self.stores
    }

    /// Runs `task` of `album`, telling `progress` how far it is. While
    /// object storage is unreachable the task waits and starts again, with
    /// backoff, for up to the outage budget: an outage is not the task's
    /// fault and spends none of its attempts.
    pub async fn run(&self, album: &ValidManifest, task: Task, inputs: &Inputs, progress: &Progress) -> Result<Done> {
        let mut outage: Option<std::time::Instant> = None;
        let mut wait = Duration::from_millis(500);
        loop {
            let error = match self.run_once(album, task, inputs, progress).await {
                Err(error) if error.unreachable => error,
                done => {
                    if outage.is_some() {
                        metrics::gauge!("lacquer_worker_tasks_waiting_for_storage").decrement(1.0);
                        tracing::info!("object storage is reachable again");
                    }
                    progress.wait_for(None);
                    return done;
                }
            };
            let since = match outage {
                Some(since) => since,
                None => {
                    metrics::gauge!("lacquer_worker_tasks_waiting_for_storage").increment(1.0);
                    *outage.insert(std::time::Instant::now())
                }
            };
            let waited = since.elapsed();
            if waited >= self.outage_budget {
                metrics::gauge!("lacquer_worker_tasks_waiting_for_storage").decrement(1.0);
                progress.wait_for(None);
                return Err(TaskError {
                    message: format!(
                        "object storage was unreachable for {} s, the outage budget: {}",
                        waited.as_secs(),
                        error.message
                    ),
                    ..error
                });
            }
            metrics::counter!("lacquer_worker_storage_retries_total").increment(1);
            tracing::warn!(error = %error.message, waited_s = waited.as_secs(), "object storage is unreachable; waiting");
            progress.wait_for(Some(format!(
                "object storage unreachable for {} s: {}",
                waited.as_secs(),
                error.message
            )));
            tokio::time::sleep(wait.min(self.outage_budget.saturating_sub(waited))).await;
            wait = (wait * 2).min(Duration::from_secs(10));
        }
    }

    async fn run_once(&self, album: &ValidManifest, task: Task, inputs: &Inputs, progress: &Progress) -> Result<Done> {
        std::fs::create_dir_all(&self.scratch)
            .map_err(|e| TaskError::local(format!("cannot create {}: {e}", self.scratch.display())))?;
        let scratch = tempfile::Builder::new()
            .prefix("task-")
            .tempdir_in(&self.scratch)
            .map_err(|e| TaskError::local(format!("cannot use {}: {e}", self.scratch.display())))?;
        // Dropping this future (the task was cancelled, handed on or handed
        // back) stops the stage's blocking thread at its next block.
        let cancel = RaiseOnDrop(Arc::new(AtomicBool::new(false)));
        let mut run = Run {
            cancel: cancel.0.clone(),
            runner: self,
            album,
            tasks: AlbumTasks::new(&album.manifest),
            output: self.stores.backend(&album.output).await,
            scratch: scratch.path().to_path_buf(),
            counts: Counts::default(),
            progress,
        };
        let track = |what: &str| {
            task.track
                .filter(|&t| t < album.manifest.tracks.len())
                .ok_or_else(|| TaskError::fatal(format!("a {what} task needs a track of the album")))
        };
        let (result, cached, audio_frames) = match task.stage {
            Stage::Mix => run.mix(track("mix")?).await?,
            Stage::Master => run.master(track("master")?, inputs).await?,
            Stage::Plan => run.plan(inputs).await?,
            Stage::Finalize => run.finalize(track("finalize")?, inputs).await?,
            Stage::Report => run.report(inputs).await?,
        };
        let rate_hz = f64::from(album.manifest.album.sample_rate);
        Ok(Done {
            result,
            cached,
            audio_seconds: if cached { 0.0 } else { audio_frames as f64 / rate_hz },
            bytes_read: run.counts.bytes_read,
            bytes_written: run.counts.bytes_written,
        })
    }
}

/// Raises its flag when dropped.
struct RaiseOnDrop(Arc<AtomicBool>);

impl Drop for RaiseOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One task's run.
struct Run<'a> {
    /// Raised when the run is dropped: stops its stage.
    cancel: Arc<AtomicBool>,
    runner: &'a Runner,
    album: &'a ValidManifest,
    tasks: AlbumTasks<'a>,
    output: Arc<dyn Storage>,
    scratch: PathBuf,
    counts: Counts,
    progress: &'a Progress,
}

/// A task's answer: its result, whether it was cached, and the frames of
/// audio it covers.
type Answer = (TaskResult, bool, u64);

fn all<T: Clone>(what: &str, items: &[Option<T>], tracks: &[String]) -> Result<Vec<T>> {
    (0..tracks.len())
        .map(|i| {
            items
                .get(i)
                .cloned()
                .flatten()
                .ok_or_else(|| TaskError::fatal(format!("the {what} of {} is not done", tracks[i])))
        })
        .collect()
}

impl Run<'_> {
    /// Runs blocking stage work off the async threads; it stops at its next
    /// block once this run is dropped.
    fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T>> + 'static {
        let cancel = self.cancel.clone();
        async move {
            tokio::task::spawn_blocking(move || cancellable(cancel, work))
                .await
                .map_err(|e| TaskError::local(format!("the stage stopped: {e}")))?
        }
    }

    fn track_ids(&self) -> Vec<String> {
        self.album.manifest.tracks.iter().map(|t| t.id.clone()).collect()
    }

    fn input_object(&self, role: InputRole) -> Result<(StorageRoot, String)> {
        let probed = self
            .album
            .input(&role)
            .ok_or_else(|| TaskError::fatal(format!("the manifest names no file for {role:?}")))?;
        Ok((probed.input.object.root.clone(), probed.input.object.key.clone()))
    }

    /// The record of `key`, if every output it lists is still there at its size.
    async fn cached<T: DeserializeOwned>(&self, key: &str) -> Result<Option<TaskRecord<T>>> {
        let bytes = match self.output.read_to_bytes(&record_key(key)).await {
            Ok(bytes) => bytes,
            Err(StorageError::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let Ok(record) = serde_json::from_slice::<TaskRecord<T>>(&bytes) else { return Ok(None) };
        if record.key != key {
            return Ok(None);
        }
        for file in &record.outputs {
            match self.output.head(&file.path).await {
                Ok(meta) if meta.size_bytes == file.size_bytes => {}
                Ok(_) | Err(StorageError::NotFound { .. }) => return Ok(None),
                Err(error) => return Err(error.into()),
            }
        }
        Ok(Some(record))
    }

    /// Records task `key` as done with `outputs` and `result`.
    async fn record<T: Serialize>(&mut self, key: &str, outputs: Vec<OutputFile>, result: &T) -> Result<()> {
        if let Some(path) = lacquer_pipelines::tasks::non_finite_figure(result) {
            return Err(TaskError::fatal(format!(
                "the task's figure `{path}` is not a number (NaN or infinite); nothing was recorded"
            )));
        }
        let record = TaskRecord { key: key.to_owned(), outputs, result };
        let bytes = serde_json::to_vec(&record).map_err(|e| TaskError::fatal(format!("cannot encode: {e}")))?;
        self.counts.bytes_written += bytes.len() as u64;
        self.output.write_bytes(&record_key(key), bytes.into(), WriteMode::Overwrite).await?;
        Ok(())
    }

    /// Makes `key` of `root` readable here: in place for a local root, else
    /// streamed into the scratch folder. Hashes it on the way.
    async fn fetch(&mut self, root: &StorageRoot, key: &str) -> Result<Fetched> {
        if let StorageRoot::Local { dir } = root {
            lacquer_storage::check_key(key)?;
            let path = dir.join(key);
            let hashed = path.clone();
            let blake3 = self.blocking(move || Ok(lacquer_pipelines::tasks::hash_file(&hashed)?)).await?;
            self.counts.bytes_read += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            return Ok(Fetched { path, blake3 });
        }
        let storage = self.runner.stores.backend(root).await;
        let mut stream = storage.read(key).await?;
        let name = key.replace('/', "_");
        self.counts.fetched += 1;
        let path = self.scratch.join(format!("in-{}-{name}", self.counts.fetched));
        let io_error = |e: std::io::Error| TaskError::local(format!("{}: {e}", path.display()));
        // A read that breaks off is storage going away mid-object.
        let read_error = |e: std::io::Error| TaskError {
            message: format!("{}: {e}", storage.location(key)),
            retryable: true,
            unreachable: true,
        };
        let mut file = tokio::fs::File::create(&path).await.map_err(io_error)?;
        let mut hasher = blake3::Hasher::new();
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let n = stream.read(&mut buffer).await.map_err(read_error)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            file.write_all(&buffer[..n]).await.map_err(io_error)?;
            self.counts.bytes_read += n as u64;
        }
        file.flush().await.map_err(io_error)?;
        Ok(Fetched { path, blake3: hasher.finalize().to_hex().to_string() })
    }

    /// A scratch path for an output to be published as `key`.
    fn scratch_for(&self, key: &str) -> PathBuf {
        self.scratch.join(format!("out-{}", key.replace('/', "_")))
    }

    /// Publishes scratch files as their keys under the output; returns them
    /// as the report lists them.
    async fn publish(&mut self, files: &[(String, PathBuf)]) -> Result<Vec<OutputFile>> {
        let mut published = Vec::with_capacity(files.len());
        for (key, path) in files {
            let (key_owned, hashed) = (key.clone(), path.clone());
            let file = self.blocking(move || Ok(lacquer_pipelines::tasks::output_file(&key_owned, &hashed)?)).await?;
            if let StorageRoot::Local { dir } = &self.album.output {
                // Same machine: move the finished file into place (atomic),
                // copying through storage only across filesystems.
                lacquer_storage::check_key(key)?;
                let target = dir.join(key);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| TaskError::local(format!("cannot create {}: {e}", parent.display())))?;
                }
                if std::fs::rename(path, &target).is_ok() {
                    self.counts.bytes_written += file.size_bytes;
                    published.push(file);
                    continue;
                }
            }
            let body =
                tokio::fs::File::open(path).await.map_err(|e| TaskError::local(format!("{}: {e}", path.display())))?;
            self.output.write(key, Box::pin(body), WriteMode::Overwrite).await?;
            self.counts.bytes_written += file.size_bytes;
            published.push(file);
        }
        Ok(published)
    }

    async fn mix(&mut self, track: usize) -> Result<Answer> {
        let manifest = &self.album.manifest;
        if manifest.tracks[track].mix_file.is_some() {
            let (root, source_key) = self.input_object(InputRole::MixFile { track })?;
            let fetched = self.fetch(&root, &source_key).await?;
            let key = self.tasks.measure_mix_task(track, &fetched.blake3);
            if let Some(record) = self.cached::<MixResult>(&key).await? {
                return Ok((record.result.into(), true, 0));
            }
            let (manifest, path) = (manifest.clone(), fetched.path.clone());
            let result = self
                .blocking(move || {
                    Ok(AlbumTasks::new(&manifest).measure_mix(track, &path, &source_key, &fetched.blake3)?)
                })
                .await?;
            self.record(&key, Vec::new(), &result).await?;
            let frames = result.frames;
            return Ok((result.into(), false, frames));
        }
        let stems = manifest.tracks[track].stems.as_deref().unwrap_or_default().len();
        let mut fetched = Vec::with_capacity(stems);
        for stem in 0..stems {
            let (root, key) = self.input_object(InputRole::Stem { track, stem })?;
            fetched.push(self.fetch(&root, &key).await?);
            self.progress.set(0.2 * (stem + 1) as f32 / stems as f32);
        }
        self.progress.set(0.2);
        let hashes: Vec<String> = fetched.iter().map(|f| f.blake3.clone()).collect();
        let spec = self.tasks.mix_spec(track, &hashes);
        let key = task_key("mix", &spec);
        if let Some(record) = self.cached::<MixResult>(&key).await? {
            return Ok((record.result.into(), true, 0));
        }
        let output_key = spec.output_key.clone();
        let scratch = self.scratch_for(&output_key);
        let target = scratch.clone();
        let paths: Vec<PathBuf> = fetched.into_iter().map(|f| f.path).collect();
        let report = self
            .blocking(move || {
                let stems = paths.iter().map(|p| AudioInput::open_file(p).map(Some)).collect::<Result<Vec<_>, _>>()?;
                Ok(mix_track(&spec, stems, &target)?)
            })
            .await?;
        self.progress.set(0.9);
        let files = self.publish(&[(output_key, scratch)]).await?;
        let frames = report.frames;
        let result = AlbumTasks::mixed(report, files[0].clone());
        self.record(&key, files, &result).await?;
        Ok((result.into(), false, frames))
    }

    async fn master(&mut self, track: usize, inputs: &Inputs) -> Result<Answer> {
        let drive_db = self.tasks.drive(track, &inputs.mix)?;
        let mix = inputs.mix.get(track).cloned().flatten().ok_or_else(|| TaskError::fatal("the mix is not done"))?;
        let key = self.tasks.master_task(track, &mix, drive_db);
        if let Some(record) = self.cached::<MasterResult>(&key).await? {
            return Ok((record.result.into(), true, 0));
        }
        let fetched = match &mix.file {
            MixFile::Rendered(file) => self.fetch(&self.album.output.clone(), &file.path).await?,
            MixFile::Given { key, .. } => {
                let (root, _) = self.input_object(InputRole::MixFile { track })?;
                self.fetch(&root, key).await?
            }
        };
        self.progress.set(0.2);
        if fetched.blake3 != mix.blake3() {
            return Err(TaskError::fatal(format!(
                "the mix of {} changed since it was made",
                self.album.manifest.tracks[track].id
            )));
        }
        let output_key = self.tasks.master_key(track);
        let scratch = self.scratch_for(&output_key);
        let (manifest, target, mix_result) = (self.album.manifest.clone(), scratch.clone(), mix.clone());
        let report = self
            .blocking(move || {
                Ok(AlbumTasks::new(&manifest).master(track, &mix_result, drive_db, &fetched.path, &target)?)
            })
            .await?;
        self.progress.set(0.9);
        let files = self.publish(&[(output_key, scratch)]).await?;
        let frames = report.analysis.frames;
        let result = MasterResult { report, file: files[0].clone() };
        self.record(&key, files, &result).await?;
        Ok((result.into(), false, frames))
    }

    /// The tone reference file's analysis, when the plan needs one.
    async fn reference(&mut self) -> Result<Option<lacquer_pipelines::analysis::Analysis>> {
        if !self.tasks.needs_reference_file() {
            return Ok(None);
        }
        let (root, key) = self.input_object(InputRole::ToneReference)?;
        let fetched = self.fetch(&root, &key).await?;
        let task = AlbumTasks::measure_reference_task(&fetched.blake3);
        if let Some(record) = self.cached(&task).await? {
            return Ok(Some(record.result));
        }
        let path = fetched.path;
        let analysis = self.blocking(move || Ok(lacquer_pipelines::stages::finalize::measure_file(&path)?)).await?;
        self.record(&task, Vec::new(), &analysis).await?;
        Ok(Some(analysis))
    }

    async fn plan(&mut self, inputs: &Inputs) -> Result<Answer> {
        let masters = all("master", &inputs.master, &self.track_ids())?;
        let reference = self.reference().await?;
        let key = self.tasks.plan_task(&masters, reference.as_ref());
        if let Some(record) = self.cached::<AlbumPlan>(&key).await? {
            return Ok((record.result.into(), true, 0));
        }
        let plan = self.tasks.plan(&masters, reference.as_ref())?;
        self.record(&key, Vec::new(), &plan).await?;
        Ok((plan.into(), false, 0))
    }

    /// The album plan the barrier made, as the inputs carry it, checked
    /// against the album. (A job submitted before the plan was a task of
    /// its own carries none: then it is made here, as it was then.)
    async fn planned(&mut self, inputs: &Inputs) -> Result<AlbumPlan> {
        let plan = match &inputs.plan {
            Some(plan) => plan.clone(),
            None => {
                let masters = all("master", &inputs.master, &self.track_ids())?;
                let reference = self.reference().await?;
                self.tasks.plan(&masters, reference.as_ref())?
            }
        };
        if plan.corrections.len() != self.album.manifest.tracks.len() {
            return Err(TaskError::fatal(format!(
                "the album plan has {} corrections for {} tracks",
                plan.corrections.len(),
                self.album.manifest.tracks.len()
            )));
        }
        Ok(plan)
    }

    async fn finalize(&mut self, track: usize, inputs: &Inputs) -> Result<Answer> {
        let masters = all("master", &inputs.master, &self.track_ids())?;
        let master = &masters[track];
        let correction = self.planned(inputs).await?.corrections[track].clone();
        let key = self.tasks.finalize_task(track, master, &correction);
        if let Some(record) = self.cached::<FinalizeResult>(&key).await? {
            return Ok((record.result.into(), true, 0));
        }
        let fetched = self.fetch(&self.album.output.clone(), &master.file.path).await?;
        self.progress.set(0.2);
        if fetched.blake3 != master.file.blake3 {
            return Err(TaskError::fatal(format!(
                "the master of {} changed since it was made",
                self.album.manifest.tracks[track].id
            )));
        }
        let files: Vec<(String, PathBuf)> =
            self.tasks.deliverable_keys(track).into_iter().map(|k| (k.clone(), self.scratch_for(&k))).collect();
        let targets: Vec<PathBuf> = files.iter().map(|(_, p)| p.clone()).collect();
        let manifest = self.album.manifest.clone();
        let master = master.clone();
        let report = self
            .blocking(move || {
                Ok(AlbumTasks::new(&manifest).finalize(track, &master, &correction, &fetched.path, &targets)?)
            })
            .await?;
        self.progress.set(0.9);
        let published = self.publish(&files).await?;
        let frames = report.render.frames;
        let result = FinalizeResult { report, files: published.clone() };
        self.record(&key, published, &result).await?;
        Ok((result.into(), false, frames))
    }

    async fn report(&mut self, inputs: &Inputs) -> Result<Answer> {
        let ids = self.track_ids();
        let mixes = all("mix", &inputs.mix, &ids)?;
        let masters = all("master", &inputs.master, &ids)?;
        let finals = all("finalize", &inputs.finalize, &ids)?;
        let plan = self.planned(inputs).await?;
        let key = self.tasks.report_task(&mixes, &masters, &plan, &finals);
        if let Some(record) = self.cached::<AlbumReport>(&key).await? {
            return Ok((record.result.into(), true, 0));
        }
        let mut report = self.tasks.report(&mixes, &masters, &plan, &finals)?;
        let mut outputs = Vec::new();
        // Each disc from every track's file of it, in album order.
        for deliverable in self.tasks.discs() {
            let mut sources = Vec::with_capacity(ids.len());
            for (track, finalized) in finals.iter().enumerate() {
                let key = self.album.manifest.deliverable_path(track, &deliverable);
                let expected = finalized.files.iter().find(|f| f.path == key).map(|f| f.blake3.clone());
                let fetched = self.fetch(&self.album.output.clone(), &key).await?;
                if expected.as_deref() != Some(fetched.blake3.as_str()) {
                    return Err(TaskError::fatal(format!("{key} is not the file its finalize made")));
                }
                sources.push(fetched.path);
            }
            let dir = self.scratch_for(&format!("disc-{}", deliverable.name));
            let (manifest, name) = (self.album.manifest.clone(), deliverable.name.clone());
            let (layout, files) = self
                .blocking(move || {
                    // A disc is written whole: nothing of an earlier try stays.
                    let _ = std::fs::remove_dir_all(&dir);
                    Ok(AlbumTasks::new(&manifest).disc(&deliverable, &sources, &dir)?)
                })
                .await?;
            report.discs.push(lacquer_pipelines::report::DiscReport { name, layout });
            let published = self.publish(&files).await?;
            report.outputs.extend(published.iter().cloned());
            outputs.extend(published);
        }
        let json = serde_json::to_vec_pretty(&report).map_err(|e| TaskError::fatal(format!("cannot encode: {e}")))?;
        let html = report.to_html().into_bytes();
        for (name, bytes) in [("report.json", json), ("report.html", html)] {
            let size_bytes = bytes.len() as u64;
            let blake3 = blake3::hash(&bytes).to_hex().to_string();
            self.output.write_bytes(name, bytes.into(), WriteMode::Overwrite).await?;
            self.counts.bytes_written += size_bytes;
            outputs.push(OutputFile { path: name.to_owned(), blake3, size_bytes });
        }
        self.record(&key, outputs, &report).await?;
        Ok((report.into(), false, 0))
    }
}

/// Where a runner's scratch files go by default: beside a local output
/// (so finished files are moved into place, not copied), else the system's
/// temporary folder.
pub fn default_scratch(output: &StorageRoot) -> PathBuf {
    match output {
        StorageRoot::Local { dir } => dir.join(".lacquer/scratch"),
        StorageRoot::S3 { .. } => std::env::temp_dir().join("lacquer-scratch"),
    }
}
