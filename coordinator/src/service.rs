//! The coordinator's two gRPC services over the album jobs: `Albums` for
//! clients (submit, get, watch, list, cancel, report) and `Workers` for
//! workers (lease, heartbeat, complete, fail). All state sits behind one
//! lock and every change wakes the watchers; the job logic itself is the
//! pure [`Job`] machine.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lacquer_pipelines::manifest::{self, StorageRoot, ValidManifest};
use lacquer_proto::v1 as pb;
use lacquer_runtime::stores::{ProbeError, Stores};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use serde::{Deserialize, Serialize};

use crate::auth::{Auth, Tenant};
use crate::error::ServiceError;
use crate::job::{HeartbeatReply, Job, JobState, Outcome, RetryPolicy, Stage, TaskGraph, TaskId, TaskStatus};
use crate::results::{self, ResultError};
use crate::store::{Store, StoreError};

/// Limits and periods of a coordinator.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long a finished job keeps its full record (manifest, results,
    /// report); after it, only its summary.
    pub retention: Duration,
    /// The largest manifest Submit accepts, in bytes.
    pub max_manifest_bytes: usize,
    /// The largest album (as probed, JSON) a lease may carry, in bytes:
    /// below the workers' message limit with room for the earlier tasks'
    /// results.
    pub max_album_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 24 * 3600),
            max_manifest_bytes: lacquer_pipelines::manifest::MAX_MANIFEST_BYTES,
            max_album_bytes: MAX_ALBUM_BYTES,
        }
    }
}

/// What a lease may carry of the album; workers accept messages of
/// [`lacquer_proto::MAX_MESSAGE_BYTES`], which leaves room for the earlier
/// tasks' results (at most 99 tracks' analyses).
pub const MAX_ALBUM_BYTES: usize = 8 << 20;

/// The coordinator's state, shared by both services.
#[derive(Clone)]
pub struct Coordinator {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Bumped on every change, so watchers wake.
    changes: watch::Sender<u64>,
    policy: RetryPolicy,
    /// Where every change is made durable before it is answered (none: in
    /// memory only).
    store: Option<Store>,
    auth: Auth,
    /// Where submitted albums' inputs are probed.
    stores: Arc<Stores>,
    settings: Settings,
    /// Whether the store takes writes (health says NOT_SERVING otherwise).
    healthy: watch::Sender<bool>,
    /// Raised when the process drains (health NOT_SERVING from then on).
    draining: watch::Sender<bool>,
    /// Bumped to end every open watch stream (its client watches again).
    watch_epoch: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    /// Running jobs, whole.
    jobs: BTreeMap<String, Record>,
    /// Finished jobs, when there is no store (which otherwise keeps them:
    /// nothing of a finished job is held in memory then).
    finished: BTreeMap<String, Finished>,
    /// Finished jobs by state (for metrics), either way.
    finished_counts: BTreeMap<&'static str, u64>,
    next_job: u64,
    /// The tenant served last, and per tenant the album served last: the
    /// next lease looks after them, so tenants take turns, and within a
    /// tenant its albums do.
    last_tenant: Option<String>,
    last_job: BTreeMap<String, String>,
}

/// A finished job as the coordinator keeps it in memory: its last view,
/// and (without a store, which otherwise keeps it) the report. The view is
/// kept encoded, in one allocation: a thousand finished jobs' views as
/// structs were some twelve thousand small allocations scattered over the
/// heap, which kept its pages resident after the records around them were
/// freed.
#[derive(Clone)]
struct Finished {
    tenant: String,
    finished_ms: u64,
    state: pb::JobState,
    /// The view (protobuf).
    view: Box<[u8]>,
    /// The report of a succeeded job, when there is no store to read it from.
    report_json: Option<String>,
    /// Whether the full record (and so the report) is still kept.
    kept: bool,
}

impl Finished {
    fn new(view: &pb::Job, finished_ms: u64, report_json: Option<String>) -> Self {
        Self {
            tenant: view.tenant.clone(),
            finished_ms,
            state: view.state(),
            view: view.encode_to_vec().into_boxed_slice(),
            report_json,
            kept: true,
        }
    }

    fn view(&self) -> pb::Job {
        pb::Job::decode(&self.view[..]).unwrap_or_default()
    }

    /// The summary as stored: the finish time, then the view (protobuf).
    fn encode(&self) -> Vec<u8> {
        let mut bytes = self.finished_ms.to_le_bytes().to_vec();
        bytes.extend_from_slice(&self.view);
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let finished_ms = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let view = pb::Job::decode(&bytes[8..]).ok()?;
        Some(Self::new(&view, finished_ms, None))
    }
}

/// One submitted album.
#[derive(Clone, Serialize, Deserialize)]
struct Record {
    tenant: String,
    title: String,
    /// The album as checked and probed at submit: what workers run.
    album: ValidManifest,
    track_ids: Vec<String>,
    job: Job,
    /// Each finished task's result, as its worker reported it.
    #[serde(with = "crate::job::as_pairs")]
    results: BTreeMap<TaskId, String>,
    /// Finished tasks whose key was already done: nothing was rendered.
    cached: BTreeSet<TaskId>,
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Coordinator {
    /// A coordinator whose state lives in memory only; inputs are probed
    /// through `stores`.
    pub fn new(policy: RetryPolicy, auth: Auth, stores: Arc<Stores>) -> Self {
        Self::build(policy, auth, stores, None, State::default(), Settings::default())
    }

    /// A coordinator whose state lives in `store`, continuing every job
    /// found there.
    pub fn open(policy: RetryPolicy, auth: Auth, stores: Arc<Stores>, store: Store) -> Result<Self, StoreError> {
        Self::open_with(policy, auth, stores, store, Settings::default())
    }

    /// As [`Coordinator::open`], with `settings`.
    pub fn open_with(
        policy: RetryPolicy,
        auth: Auth,
        stores: Arc<Stores>,
        store: Store,
        settings: Settings,
    ) -> Result<Self, StoreError> {
        let loaded = store.load::<Record>()?;
        let now = now_ms();
        let jobs = loaded
            .running
            .into_iter()
            .map(|(id, mut record)| {
                record.job.restarted(now);
                (id, record)
            })
            .collect();
        let mut finished_counts = BTreeMap::new();
        store.summaries(|_, bytes| {
            if let Some(finished) = Finished::decode(bytes) {
                *finished_counts.entry(state_name(finished.state)).or_default() += 1;
            }
        })?;
        let state = State { jobs, finished_counts, next_job: loaded.next_job, ..State::default() };
        Ok(Self::build(policy, auth, stores, Some(store), state, settings))
    }

    /// A memory-only coordinator with `settings`.
    pub fn with_settings(policy: RetryPolicy, auth: Auth, stores: Arc<Stores>, settings: Settings) -> Self {
        Self::build(policy, auth, stores, None, State::default(), settings)
    }

    fn build(
        policy: RetryPolicy,
        auth: Auth,
        stores: Arc<Stores>,
        store: Option<Store>,
        state: State,
        settings: Settings,
    ) -> Self {
        let (changes, _) = watch::channel(0);
        let (healthy, _) = watch::channel(true);
        let (draining, _) = watch::channel(false);
        let (watch_epoch, _) = watch::channel(0);
        let inner = Inner {
            state: Mutex::new(state),
            changes,
            policy,
            store,
            auth,
            stores,
            settings,
            healthy,
            draining,
            watch_epoch,
        };
        Self { inner: Arc::new(inner) }
    }

    fn tenant<T>(&self, request: &Request<T>) -> Result<Tenant, Status> {
        self.inner.auth.tenant(request.metadata())
    }

    fn worker<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.inner.auth.worker(request.metadata())
    }

    /// Whether the store takes writes; changes whenever that changes.
    pub fn health(&self) -> watch::Receiver<bool> {
        self.inner.healthy.subscribe()
    }

    /// The process is draining: every watch stream ends (its client
    /// watches again, on this coordinator's successor), and health says
    /// NOT_SERVING.
    pub fn drain(&self) {
        self.inner.draining.send_replace(true);
        self.inner.healthy.send_replace(false);
        self.end_watches();
    }

    /// Ends every open watch stream with UNAVAILABLE: its client watches
    /// again (a server being stopped closes its connections only once its
    /// streams have ended).
    pub fn end_watches(&self) {
        self.inner.watch_epoch.send_modify(|epoch| *epoch += 1);
    }

    /// Tries to reopen a store that failed a write; true when it is
    /// writable (again). Called every second by the process.
    pub fn recover_store(&self) -> bool {
        let Some(store) = &self.inner.store else { return true };
        if *self.inner.healthy.borrow() || *self.inner.draining.borrow() {
            return true;
        }
        match store.recover() {
            Ok(()) => {
                tracing::info!("the coordinator's state is writable again");
                metrics::gauge!("lacquer_store_writable").set(1.0);
                self.inner.healthy.send_replace(true);
                true
            }
            Err(error) => {
                tracing::warn!(%error, "the coordinator's state is still not writable");
                false
            }
        }
    }

    /// Applies `event` to running job `id` of `tenant` (any tenant when
    /// `None`): on a copy, made durable, then put in place, so what the
    /// store holds and what was answered never differ. A job the event
    /// finishes leaves memory but for its summary.
    fn update<R>(&self, id: &str, tenant: Option<&str>, event: impl FnOnce(&mut Record) -> R) -> Result<R, Status> {
        let result = {
            let mut state = self.state();
            let next_job = state.next_job;
            let record = match state.jobs.get_mut(id) {
                Some(record) if tenant.is_none_or(|t| t == record.tenant) => record,
                _ => return Err(ServiceError::no_job(id)),
            };
            let mut updated = record.clone();
            let result = event(&mut updated);
            if *updated.job.state() == JobState::Running {
                self.persist(id, &updated, None, next_job)?;
                *record = updated;
            } else {
                let finished = self.finished(id, &updated);
                self.persist(id, &updated, Some(&finished.encode()), next_job)?;
                state.jobs.remove(id);
                *state.finished_counts.entry(state_name(finished.state)).or_default() += 1;
                if self.inner.store.is_none() {
                    state.finished.insert(id.to_owned(), finished);
                }
            }
            result
        };
        self.changed();
        Ok(result)
    }

    fn finished(&self, id: &str, record: &Record) -> Finished {
        let report_json = match (&self.inner.store, record.job.state()) {
            (None, JobState::Succeeded) => record.results.get(&REPORT).cloned(),
            _ => None,
        };
        Finished::new(&to_proto(id, record), now_ms(), report_json)
    }

    fn persist(&self, id: &str, record: &Record, summary: Option<&[u8]>, next_job: u64) -> Result<(), Status> {
        let Some(store) = &self.inner.store else { return Ok(()) };
        match store.save(id, record, summary, next_job) {
            Ok(()) => {
                if !*self.inner.healthy.borrow() && !*self.inner.draining.borrow() {
                    self.inner.healthy.send_replace(true);
                    metrics::gauge!("lacquer_store_writable").set(1.0);
                }
                Ok(())
            }
            Err(error) => {
                if self.inner.healthy.send_replace(false) {
                    tracing::error!(%error, "the coordinator's state cannot be written: NOT_SERVING until it can");
                }
                metrics::gauge!("lacquer_store_writable").set(0.0);
                Err(ServiceError::unavailable(format!("nothing was changed: {error}")))
            }
        }
    }

    /// How many jobs are running (queued or under way).
    pub fn running_jobs(&self) -> usize {
        self.state().jobs.len()
    }

    /// Drops the full records of jobs finished longer ago than the
    /// retention period (their summaries stay); returns how many.
    pub fn sweep(&self) -> usize {
        let cutoff = now_ms().saturating_sub(self.inner.settings.retention.as_millis() as u64);
        let Some(store) = &self.inner.store else {
            let mut state = self.state();
            let mut dropped = 0;
            for finished in state.finished.values_mut().filter(|f| f.kept && f.finished_ms <= cutoff) {
                finished.report_json = None;
                finished.kept = false;
                dropped += 1;
            }
            return dropped;
        };
        let expired = match store.finished_before(cutoff) {
            Ok(expired) => expired,
            Err(error) => {
                tracing::warn!(%error, "cannot look for expired jobs; trying again later");
                return 0;
            }
        };
        if expired.is_empty() {
            return 0;
        }
        if let Err(error) = store.forget(&expired) {
            tracing::warn!(%error, "cannot drop expired jobs' records; trying again later");
            return 0;
        }
        expired.len()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a job half-changed
        // (each event is one call on the machine), so a poisoned lock is
        // still consistent.
        self.inner.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn changed(&self) {
        self.inner.changes.send_modify(|generation| *generation += 1);
    }

    /// Sets the queue gauges: jobs per state and tasks per state over the
    /// running jobs. Called on a timer (not on every change: it walks
    /// every task).
    pub fn sample_metrics(&self) {
        let now = now_ms();
        let (mut jobs, mut tasks) = (BTreeMap::<&str, u64>::new(), BTreeMap::<&str, u64>::new());
        {
            let state = self.state();
            jobs.insert("running", state.jobs.len() as u64);
            jobs.extend(state.finished_counts.iter().map(|(name, count)| (*name, *count)));
            for record in state.jobs.values() {
                for task in record.job.tasks() {
                    let name = match task.status {
                        TaskStatus::Blocked => "blocked",
                        TaskStatus::Ready => "ready",
                        TaskStatus::Leased => "leased",
                        TaskStatus::Done => "done",
                    };
                    *tasks.entry(name).or_default() += 1;
                    if task.waiting.is_some() {
                        *tasks.entry("waiting_for_storage").or_default() += 1;
                    }
                }
                *tasks.entry("leasable").or_default() += record.job.ready_count(now) as u64;
            }
        }
        for name in ["running", "succeeded", "failed", "cancelled"] {
            metrics::gauge!("lacquer_jobs", "state" => name).set(jobs.get(name).copied().unwrap_or(0) as f64);
        }
        for name in ["blocked", "ready", "leased", "done", "leasable", "waiting_for_storage"] {
            metrics::gauge!("lacquer_tasks", "state" => name).set(tasks.get(name).copied().unwrap_or(0) as f64);
        }
        metrics::gauge!("lacquer_store_writable").set(if *self.inner.healthy.borrow() { 1.0 } else { 0.0 });
    }

    /// The job as clients see it, or NOT_FOUND (also for another tenant's
    /// job: its existence is not revealed).
    fn view(&self, job_id: &str, tenant: &str) -> Result<pb::Job, Status> {
        if let Some(record) = self.state().jobs.get(job_id) {
            return match record.tenant == tenant {
                true => Ok(to_proto(job_id, record)),
                false => Err(ServiceError::no_job(job_id)),
            };
        }
        match self.finished_job(job_id)? {
            Some(finished) if finished.tenant == tenant => Ok(finished.view()),
            _ => Err(ServiceError::no_job(job_id)),
        }
    }

    /// A finished job, from the store or (without one) from memory.
    fn finished_job(&self, job_id: &str) -> Result<Option<Finished>, Status> {
        match &self.inner.store {
            None => Ok(self.state().finished.get(job_id).cloned()),
            Some(store) => match store.summary(job_id) {
                Ok(summary) => Ok(summary.and_then(|bytes| Finished::decode(&bytes))),
                Err(error) => Err(ServiceError::unavailable(format!("cannot read job {job_id}: {error}"))),
            },
        }
    }

    /// A tenant's finished jobs.
    fn finished_jobs(&self, tenant: &str) -> Result<Vec<(String, Finished)>, Status> {
        let Some(store) = &self.inner.store else {
            let state = self.state();
            return Ok(state
                .finished
                .iter()
                .filter(|(_, f)| f.tenant == tenant)
                .map(|(id, f)| (id.clone(), f.clone()))
                .collect());
        };
        let mut found = Vec::new();
        store
            .summaries(|id, bytes| {
                if let Some(finished) = Finished::decode(bytes).filter(|f| f.tenant == tenant) {
                    found.push((id.to_owned(), finished));
                }
            })
            .map_err(|error| ServiceError::unavailable(format!("cannot list finished jobs: {error}")))?;
        Ok(found)
    }

    /// Whether `job_id` has finished (a worker's word about it is stale).
    fn is_finished(&self, job_id: &str) -> bool {
        !self.state().jobs.contains_key(job_id) && self.finished_job(job_id).is_ok_and(|f| f.is_some())
    }
}

/// A finished state's name in metrics.
fn state_name(state: pb::JobState) -> &'static str {
    match state {
        pb::JobState::Succeeded => "succeeded",
        pb::JobState::Failed => "failed",
        _ => "cancelled",
    }
}

/// Registers every counter at zero, so a series exists before its first
/// event (lease expiries included).
pub fn describe_metrics() {
    for stage in [Stage::Mix, Stage::Master, Stage::Plan, Stage::Finalize, Stage::Report].map(Stage::name) {
        for kind in ["retryable", "permanent", "handed_back", "lease_expired"] {
            metrics::counter!("lacquer_task_failures_total", "stage" => stage, "kind" => kind).increment(0);
        }
        for outcome in ["rendered", "cached"] {
            metrics::counter!("lacquer_tasks_completed_total", "stage" => stage, "outcome" => outcome).increment(0);
        }
        metrics::counter!("lacquer_results_refused_total", "stage" => stage).increment(0);
    }
    for name in [
        "lacquer_leases_total",
        "lacquer_leases_expired_total",
        "lacquer_task_retries_total",
        "lacquer_bytes_read_total",
        "lacquer_bytes_written_total",
        "lacquer_store_errors_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    metrics::counter!("lacquer_storage_unreachable_total", "during" => "submit").increment(0);
    metrics::gauge!("lacquer_store_writable").set(1.0);
}

/// The album's report task.
const REPORT: TaskId = TaskId { stage: Stage::Report, track: None };

fn stage_from_proto(stage: i32) -> Result<Stage, Status> {
    lacquer_proto::stage(stage).ok_or_else(|| ServiceError::invalid(format!("unknown stage {stage}")))
}

fn to_proto(id: &str, record: &Record) -> pb::Job {
    let (state, error) = match record.job.state() {
        JobState::Running => (pb::JobState::Running, String::new()),
        JobState::Succeeded => (pb::JobState::Succeeded, String::new()),
        JobState::Failed { task, reason } => {
            (pb::JobState::Failed, format!("{}: {reason}", task_name(*task, &record.track_ids)))
        }
        JobState::Cancelled => (pb::JobState::Cancelled, String::new()),
    };
    let (done, total) = record.job.progress();
    pb::Job {
        id: id.to_owned(),
        tenant: record.tenant.clone(),
        title: record.title.clone(),
        state: state.into(),
        error,
        tasks: record
            .job
            .tasks()
            .map(|task| pb::Task {
                stage: pb::Stage::from(task.id.stage).into(),
                track_id: task.id.track.and_then(|t| record.track_ids.get(t)).cloned().unwrap_or_default(),
                state: match task.status {
                    TaskStatus::Blocked => pb::TaskState::Blocked,
                    TaskStatus::Ready => pb::TaskState::Ready,
                    TaskStatus::Leased => pb::TaskState::Leased,
                    TaskStatus::Done => pb::TaskState::Done,
                }
                .into(),
                attempts: task.attempts,
                last_error: task.last_error.unwrap_or_default(),
                cached: record.cached.contains(&task.id),
                progress: task.progress,
                waiting: task.waiting.unwrap_or_default(),
            })
            .collect(),
        tasks_done: done as u32,
        tasks_total: total as u32,
        tasks_cached: record.cached.len() as u32,
    }
}

fn task_name(task: TaskId, track_ids: &[String]) -> String {
    let stage = task.stage.name();
    match task.track.and_then(|t| track_ids.get(t)) {
        Some(track) => format!("{stage} of {track}"),
        None => stage.to_owned(),
    }
}

fn is_terminal(job: &pb::Job) -> bool {
    job.state != i32::from(pb::JobState::Running)
}

/// Parses an s3:// or local root named in a request.
fn root(field: &str, text: &str) -> Result<Option<StorageRoot>, Status> {
    if text.is_empty() {
        return Ok(None);
    }
    let cwd = StorageRoot::Local { dir: std::path::PathBuf::from("/") };
    StorageRoot::resolve(text, &cwd).map(Some).map_err(|e| ServiceError::invalid(format!("{field}: {e}")))
}

#[tonic::async_trait]
impl pb::albums_server::Albums for Coordinator {
    async fn submit(&self, request: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitReply>, Status> {
        let caller = self.tenant(&request)?;
        let tenant = caller.name.clone();
        let request = request.into_inner();
        let limit = self.inner.settings.max_manifest_bytes;
        if request.manifest_yaml.len() > limit {
            return Err(ServiceError::invalid(format!(
                "manifest_yaml: {} bytes, more than the {limit} a manifest may have",
                request.manifest_yaml.len()
            )));
        }
        let source = root("source", &request.source)?;
        let base = source.clone().unwrap_or(StorageRoot::Local { dir: std::path::PathBuf::from(".") });
        let output = if request.output.is_empty() { None } else { Some(request.output.as_str()) };
        let checked =
            manifest::check(&request.manifest_yaml, &base, output).map_err(|e| ServiceError::invalid(e.to_string()))?;
        if !checked.problems.is_empty() {
            let error = manifest::ManifestError { problems: checked.problems };
            return Err(ServiceError::invalid(error.to_string()));
        }
        // Every location the manifest names must be the tenant's to use.
        let mut refused = Vec::new();
        for (field, root) in [("source", &checked.source), ("output", &checked.output)] {
            if let Some(root) = root
                && !caller.may_use(&root.to_string())
            {
                refused.push(format!("{field}: {root}"));
            }
        }
        for input in &checked.inputs {
            let location = input.object.to_string();
            if !caller.may_use(&location) {
                refused.push(format!("{}: {location}", input.field));
            }
        }
        if !refused.is_empty() {
            return Err(ServiceError::not_allowed(format!(
                "tenant {} may not use: {}",
                caller.name,
                refused.join("; ")
            )));
        }
        // Every input must exist and decode before the album is accepted;
        // storage that cannot be reached says nothing about the album.
        let mut probes = Vec::with_capacity(checked.inputs.len());
        for (input, probe) in checked.inputs.iter().zip(self.inner.stores.probe_all(&checked.inputs).await) {
            probes.push(match probe {
                Ok(info) => Ok(info),
                Err(ProbeError::Unreachable(detail)) => {
                    metrics::counter!("lacquer_storage_unreachable_total", "during" => "submit").increment(1);
                    return Err(ServiceError::unavailable(format!(
                        "object storage was unreachable while checking {} ({}): {detail}; nothing was submitted, try again",
                        input.field, input.object
                    )));
                }
                Err(ProbeError::Bad(reason)) => Err(reason),
            });
        }
        let album = checked.finish(probes).map_err(|error| ServiceError::invalid(error.to_string()))?;
        let album_bytes = serde_json::to_vec(&album).map(|b| b.len()).unwrap_or(usize::MAX);
        if album_bytes > self.inner.settings.max_album_bytes {
            return Err(ServiceError::invalid(format!(
                "the album is {album_bytes} bytes as workers receive it, more than {}; shorten its texts or split it",
                self.inner.settings.max_album_bytes
            )));
        }
        let manifest = &album.manifest;
        let record = Record {
            tenant,
            title: manifest.album.title.clone(),
            track_ids: manifest.tracks.iter().map(|t| t.id.clone()).collect(),
            job: Job::new(TaskGraph::new(manifest), self.inner.policy),
            album,
            results: BTreeMap::new(),
            cached: BTreeSet::new(),
        };
        let job = {
            let mut state = self.state();
            let next_job = state.next_job + 1;
            let id = format!("job-{next_job:06}");
            self.persist(&id, &record, None, next_job)?;
            state.next_job = next_job;
            let job = to_proto(&id, &record);
            state.jobs.insert(id, record);
            job
        };
        self.changed();
        Ok(Response::new(pb::SubmitReply { job: Some(job) }))
    }

    async fn get(&self, request: Request<pb::GetRequest>) -> Result<Response<pb::Job>, Status> {
        let tenant = self.tenant(&request)?.name;
        self.view(&request.get_ref().job_id, &tenant).map(Response::new)
    }

    type WatchStream = ReceiverStream<Result<pb::JobEvent, Status>>;

    async fn watch(&self, request: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let tenant = self.tenant(&request)?.name;
        let job_id = request.into_inner().job_id;
        let first = self.view(&job_id, &tenant)?;
        let (sender, receiver) = mpsc::channel(16);
        let coordinator = self.clone();
        let mut changes = self.inner.changes.subscribe();
        let mut epoch = self.inner.watch_epoch.subscribe();
        tokio::spawn(async move {
            let mut last = first;
            if sender.send(Ok(pb::JobEvent { job: Some(last.clone()) })).await.is_err() {
                return;
            }
            while !is_terminal(&last) {
                // A client that hung up ends the watch at once, not at the
                // job's next change.
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    () = sender.closed() => return,
                    _ = epoch.changed() => {
                        let _ = sender.send(Err(ServiceError::unavailable("the coordinator is shutting down; watch again"))).await;
                        return;
                    }
                }
                let Ok(now) = coordinator.view(&job_id, &tenant) else { return };
                if now != last {
                    last = now;
                    if sender.send(Ok(pb::JobEvent { job: Some(last.clone()) })).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn list(&self, request: Request<pb::ListRequest>) -> Result<Response<pb::ListReply>, Status> {
        let tenant = self.tenant(&request)?.name;
        let finished = self.finished_jobs(&tenant)?;
        let mut sorted: BTreeMap<String, pb::Job> = finished.into_iter().map(|(id, f)| (id, f.view())).collect();
        let state = self.state();
        sorted
            .extend(state.jobs.iter().filter(|(_, r)| r.tenant == tenant).map(|(id, r)| (id.clone(), to_proto(id, r))));
        Ok(Response::new(pb::ListReply { jobs: sorted.into_values().collect() }))
    }

    async fn cancel(&self, request: Request<pb::CancelRequest>) -> Result<Response<pb::Job>, Status> {
        let tenant = self.tenant(&request)?.name;
        let job_id = request.into_inner().job_id;
        if !self.is_finished(&job_id) {
            self.update(&job_id, Some(&tenant), |record| record.job.cancel())?;
        }
        self.view(&job_id, &tenant).map(Response::new)
    }

    async fn report(&self, request: Request<pb::ReportRequest>) -> Result<Response<pb::ReportReply>, Status> {
        let tenant = self.tenant(&request)?.name;
        let job_id = request.into_inner().job_id;
        let not_yet = || ServiceError::not_now(format!("job {job_id} has not succeeded yet"));
        if let Some(record) = self.state().jobs.get(&job_id) {
            return Err(if record.tenant == tenant { not_yet() } else { ServiceError::no_job(&job_id) });
        }
        let kept = match self.finished_job(&job_id)? {
            Some(finished) if finished.tenant == tenant => {
                if finished.state != pb::JobState::Succeeded {
                    return Err(not_yet());
                }
                if let Some(report_json) = finished.report_json {
                    return Ok(Response::new(pb::ReportReply { report_json }));
                }
                finished.kept
            }
            _ => return Err(ServiceError::no_job(&job_id)),
        };
        let gone = || {
            ServiceError::not_now(format!(
                "job {job_id}'s report is no longer kept here (finished jobs keep only a summary after the \
                 retention period); report.json is in its output"
            ))
        };
        let Some(store) = self.inner.store.as_ref().filter(|_| kept) else { return Err(gone()) };
        let record: Option<Record> = store.job(&job_id).map_err(|e| ServiceError::unavailable(e.to_string()))?;
        let report = record.and_then(|mut r| r.results.remove(&REPORT)).ok_or_else(gone)?;
        Ok(Response::new(pb::ReportReply { report_json: report }))
    }
}

impl Coordinator {
    /// What a task needs from the tasks before it, per stage a list with
    /// track i's result at index i (the worker's `Inputs`): the mixes for a
    /// master, the masters for a finalize (the album plan), all for the
    /// report.
    fn inputs_json(record: &Record, task: TaskId) -> String {
        let mut inputs = serde_json::Map::new();
        let result = |id: TaskId| {
            record.results.get(&id).and_then(|r| serde_json::from_str(r).ok()).unwrap_or(serde_json::Value::Null)
        };
        for &stage in TaskGraph::reads(task.stage) {
            if stage == Stage::Plan {
                inputs.insert(stage.name().to_owned(), result(TaskId { stage, track: None }));
                continue;
            }
            let results: Vec<serde_json::Value> =
                (0..record.track_ids.len()).map(|track| result(TaskId { stage, track: Some(track) })).collect();
            inputs.insert(stage.name().to_owned(), serde_json::Value::Array(results));
        }
        serde_json::Value::Object(inputs).to_string()
    }

    fn task_ref(task: Option<pb::TaskRef>) -> Result<(String, TaskId, u64), Status> {
        let task = task.ok_or_else(|| ServiceError::invalid("task: missing"))?;
        let id = TaskId { stage: stage_from_proto(task.stage)?, track: task.track.map(|t| t as usize) };
        Ok((task.job_id, id, task.lease))
    }
}

#[tonic::async_trait]
impl pb::workers_server::Workers for Coordinator {
    async fn lease(&self, request: Request<pb::LeaseRequest>) -> Result<Response<pb::LeaseReply>, Status> {
        self.worker(&request)?;
        let worker = request.into_inner().worker_id;
        if worker.is_empty() {
            return Err(ServiceError::invalid("worker_id: empty"));
        }
        let now = now_ms();
        // Fair shares: tenants take turns, and within a tenant its albums do.
        let candidates: Vec<(String, String)> = {
            let state = self.state();
            let mut by_tenant: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (id, record) in &state.jobs {
                if record.job.has_work(now) {
                    by_tenant.entry(&record.tenant).or_default().push(id);
                }
            }
            let tenants: Vec<&str> = by_tenant.keys().copied().collect();
            let first = state.last_tenant.as_deref().map_or(0, |last| tenants.partition_point(|t| *t <= last));
            let mut order = Vec::new();
            for tenant in tenants.iter().cycle().skip(first).take(tenants.len()) {
                let ids = &by_tenant[tenant];
                let after =
                    state.last_job.get(*tenant).map_or(0, |last| ids.partition_point(|id| *id <= last.as_str()));
                order.extend(
                    ids.iter().cycle().skip(after).take(ids.len()).map(|id| (tenant.to_string(), id.to_string())),
                );
            }
            order
        };
        let mut assignment = None;
        for (tenant, id) in &candidates {
            let leased = self.update(id, None, |record| {
                for task in record.job.expire(now) {
                    metrics::counter!("lacquer_leases_expired_total").increment(1);
                    metrics::counter!("lacquer_task_failures_total", "stage" => task.stage.name(), "kind" => "lease_expired")
                        .increment(1);
                    if *record.job.state() == JobState::Running {
                        metrics::counter!("lacquer_task_retries_total").increment(1);
                    }
                }
                record.job.lease(&worker, now).map(|lease| pb::Assignment {
                    job_id: id.clone(),
                    stage: pb::Stage::from(lease.task.stage).into(),
                    track: lease.task.track.map(|t| t as u32),
                    lease: lease.lease,
                    attempt: lease.attempt,
                    deadline_unix_ms: lease.deadline_ms,
                    inputs_json: Self::inputs_json(record, lease.task),
                    album_json: serde_json::to_string(&record.album).unwrap_or_default(),
                })
            })?;
            if let Some(leased) = leased {
                metrics::counter!("lacquer_leases_total").increment(1);
                let mut state = self.state();
                state.last_tenant = Some(tenant.clone());
                state.last_job.insert(tenant.clone(), id.clone());
                assignment = Some(leased);
                break;
            }
        }
        Ok(Response::new(pb::LeaseReply { task: assignment }))
    }

    async fn heartbeat(&self, request: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatReply>, Status> {
        self.worker(&request)?;
        let request = request.into_inner();
        let (job_id, task, lease) = Self::task_ref(request.task)?;
        // A heartbeat only moves a deadline: it is not written to the store
        // (a restarted coordinator gives every lease a full lease instead).
        let reply = {
            let mut state = self.state();
            match state.jobs.get_mut(&job_id) {
                Some(record) => Some(record.job.heartbeat(task, lease, request.progress, &request.waiting, now_ms())),
                None => None,
            }
        };
        let reply = match reply {
            Some(reply) => reply,
            None if self.is_finished(&job_id) => HeartbeatReply::Stop,
            None => return Err(ServiceError::no_job(&job_id)),
        };
        let (action, deadline_unix_ms) = match reply {
            HeartbeatReply::Continue { deadline_ms } => (pb::heartbeat_reply::Action::Continue, deadline_ms),
            HeartbeatReply::Stop => (pb::heartbeat_reply::Action::Stop, 0),
            HeartbeatReply::Stale => (pb::heartbeat_reply::Action::Stale, 0),
        };
        Ok(Response::new(pb::HeartbeatReply { action: action.into(), deadline_unix_ms }))
    }

    async fn complete(&self, request: Request<pb::CompleteRequest>) -> Result<Response<pb::CompleteReply>, Status> {
        self.worker(&request)?;
        let request = request.into_inner();
        let (job_id, task, lease) = Self::task_ref(request.task)?;
        if self.is_finished(&job_id) {
            return Ok(Response::new(pb::CompleteReply { accepted: false }));
        }
        // The result is checked against the task before it counts: read
        // what the lease is for (no change yet), then look in storage.
        let (album, name) = {
            let state = self.state();
            let record = state.jobs.get(&job_id).ok_or_else(|| ServiceError::no_job(&job_id))?;
            if !record.job.holds(task, lease) {
                return Ok(Response::new(pb::CompleteReply { accepted: false }));
            }
            (record.album.clone(), task_name(task, &record.track_ids))
        };
        let output = self.inner.stores.backend(&album.output).await;
        match results::check(&album, task, &name, &request.result_json, output.as_ref()).await {
            Ok(()) => {}
            Err(ResultError::Storage { source, .. }) => {
                return Err(ServiceError::unavailable(format!("cannot check the result of {name} yet: {source}")));
            }
            Err(refused @ ResultError::Refused { .. }) => {
                let reason = refused.to_string();
                tracing::warn!(job = %job_id, task = %name, %reason, "a result was refused");
                metrics::counter!("lacquer_results_refused_total", "stage" => task.stage.name()).increment(1);
                self.update(&job_id, None, |record| record.job.fail(task, lease, &reason, true, now_ms()))?;
                return Err(ServiceError::invalid(reason));
            }
        }
        let outcome = self.update(&job_id, None, |record| {
            let outcome = record.job.complete(task, lease);
            if outcome == Outcome::Accepted {
                record.results.insert(task, request.result_json);
                if request.cached {
                    record.cached.insert(task);
                }
            }
            outcome
        })?;
        if outcome == Outcome::Accepted {
            let stage = task.stage.name();
            let rendered = if request.cached { "cached" } else { "rendered" };
            metrics::counter!("lacquer_tasks_completed_total", "stage" => stage, "outcome" => rendered).increment(1);
            metrics::histogram!("lacquer_task_seconds", "stage" => stage).record(request.task_seconds);
            if request.audio_seconds > 0.0 && request.task_seconds > 0.0 {
                metrics::histogram!("lacquer_task_realtime", "stage" => stage)
                    .record(request.audio_seconds / request.task_seconds);
            }
            metrics::counter!("lacquer_bytes_read_total").increment(request.bytes_read);
            metrics::counter!("lacquer_bytes_written_total").increment(request.bytes_written);
        }
        Ok(Response::new(pb::CompleteReply { accepted: outcome == Outcome::Accepted }))
    }

    async fn fail(&self, request: Request<pb::FailRequest>) -> Result<Response<pb::FailReply>, Status> {
        self.worker(&request)?;
        let request = request.into_inner();
        let (job_id, task, lease) = Self::task_ref(request.task)?;
        if self.is_finished(&job_id) {
            return Ok(Response::new(pb::FailReply { accepted: false }));
        }
        let outcome = self.update(&job_id, None, |record| {
            if request.handed_back {
                return record.job.hand_back(task, lease);
            }
            let outcome = record.job.fail(task, lease, &request.reason, request.retryable, now_ms());
            if outcome == Outcome::Accepted && *record.job.state() == JobState::Running {
                metrics::counter!("lacquer_task_retries_total").increment(1);
            }
            outcome
        })?;
        let kind = if request.handed_back {
            "handed_back"
        } else if request.retryable {
            "retryable"
        } else {
            "permanent"
        };
        metrics::counter!("lacquer_task_failures_total", "stage" => task.stage.name(), "kind" => kind).increment(1);
        Ok(Response::new(pb::FailReply { accepted: outcome == Outcome::Accepted }))
    }
}
