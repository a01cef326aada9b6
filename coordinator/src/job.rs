//! One album job as a pure, event-driven state machine: no clock, no
//! network, no storage. The caller feeds it events (a worker asks for work,
//! heartbeats, completes, fails; time passes; a tenant cancels) with the
//! current time in milliseconds, and persists it after each event; the
//! machine answers what to do. Everything it holds is serializable, so a
//! coordinator restarted from its store continues exactly where it was.
//!
//! The tasks and their order come from the album's [`TaskGraph`] (defined
//! once, in `lacquer_pipelines::tasks`, for this machine and for
//! `lacquer master`, which drives this machine in-process).
//!
//! Exactly once: a task's result is accepted only from its current lease;
//! a worker whose lease expired (and whose task was leased again) is told
//! its completion is stale and the result is dropped — results are
//! content-addressed and deterministic, so nothing differs either way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use lacquer_pipelines::tasks::{Stage, TaskGraph, TaskId};

/// How retries are paced and bounded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    pub first_backoff_ms: u64,
    /// How long a lease lasts without a heartbeat.
    pub lease_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 3, first_backoff_ms: 1_000, lease_ms: 30_000 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum TaskState {
    /// Waiting for the tasks it depends on.
    Blocked,
    /// May be leased from `not_before_ms` on.
    Ready {
        not_before_ms: u64,
    },
    Leased {
        worker: String,
        lease: u64,
        deadline_ms: u64,
        /// 0..1 of the task done, as the worker's last heartbeat said.
        #[serde(default)]
        progress: f32,
        /// What the task waits for, as the worker's last heartbeat said
        /// (object storage being unreachable); `None` while it works.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        waiting: Option<String>,
    },
    Done,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Task {
    state: TaskState,
    /// Attempts started so far.
    attempts: u32,
    last_error: Option<String>,
}

/// Where the job is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobState {
    Running,
    Succeeded,
    Failed { task: TaskId, reason: String },
    Cancelled,
}

/// A task handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub task: TaskId,
    /// Names this lease: heartbeats and results must quote it.
    pub lease: u64,
    pub attempt: u32,
    pub deadline_ms: u64,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatReply {
    /// Keep going; the lease now runs to this time.
    Continue { deadline_ms: u64 },
    /// Stop: the job was cancelled or failed.
    Stop,
    /// This lease is no longer the task's (it expired and was handed on).
    Stale,
}

/// What became of a completion or a failure report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// Not the task's current lease: ignored.
    Stale,
}

/// Where a task is, as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Blocked,
    Ready,
    Leased,
    Done,
}

/// One task, as clients see it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    pub id: TaskId,
    pub status: TaskStatus,
    /// 0..1: 1 when done, the worker's last word while leased.
    pub progress: f32,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// What a leased task waits for (storage unreachable), if anything.
    pub waiting: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    #[serde(with = "as_pairs")]
    tasks: BTreeMap<TaskId, Task>,
    #[serde(flatten)]
    graph: TaskGraph,
    state: JobState,
    policy: RetryPolicy,
    next_lease: u64,
}

impl Job {
    /// A job running the tasks of `graph`.
    pub fn new(graph: TaskGraph, policy: RetryPolicy) -> Self {
        let tasks = graph
            .tasks()
            .into_iter()
            .map(|id| {
                let state =
                    if graph.needs(id).is_empty() { TaskState::Ready { not_before_ms: 0 } } else { TaskState::Blocked };
                (id, Task { state, attempts: 0, last_error: None })
            })
            .collect();
        Self { tasks, graph, state: JobState::Running, policy, next_lease: 1 }
    }

    pub fn state(&self) -> &JobState {
        &self.state
    }

    /// Every task in graph order.
    pub fn tasks(&self) -> impl Iterator<Item = TaskView> + '_ {
        self.tasks.iter().map(|(&id, task)| TaskView {
            id,
            status: match task.state {
                TaskState::Blocked => TaskStatus::Blocked,
                TaskState::Ready { .. } => TaskStatus::Ready,
                TaskState::Leased { .. } => TaskStatus::Leased,
                TaskState::Done => TaskStatus::Done,
            },
            progress: match task.state {
                TaskState::Done => 1.0,
                TaskState::Leased { progress, .. } => progress,
                _ => 0.0,
            },
            attempts: task.attempts,
            last_error: task.last_error.clone(),
            waiting: match &task.state {
                TaskState::Leased { waiting, .. } => waiting.clone(),
                _ => None,
            },
        })
    }

    /// Tasks finished and in all.
    pub fn progress(&self) -> (usize, usize) {
        (self.tasks.values().filter(|t| t.state == TaskState::Done).count(), self.tasks.len())
    }

    /// Tasks a worker could lease at `now_ms` (for schedulers and metrics).
    pub fn ready_count(&self, now_ms: u64) -> usize {
        self.tasks
            .values()
            .filter(|t| matches!(t.state, TaskState::Ready { not_before_ms } if not_before_ms <= now_ms))
            .count()
    }

    /// Whether a lease at `now_ms` would hand out a task: one is ready, or
    /// a lease has run out and its task would be taken back.
    pub fn has_work(&self, now_ms: u64) -> bool {
        self.state == JobState::Running
            && self.tasks.values().any(|t| match t.state {
                TaskState::Ready { not_before_ms } => not_before_ms <= now_ms,
                TaskState::Leased { deadline_ms, .. } => deadline_ms < now_ms,
                _ => false,
            })
    }

    /// Whether the album barrier has been reached: every master is done,
    /// so the album plan can be made and the finalize tasks released.
    pub fn masters_done(&self) -> bool {
        self.all_done(Stage::Master)
    }

    fn all_done(&self, stage: Stage) -> bool {
        (0..self.graph.tracks).all(|track| self.is_done(TaskId { stage, track: Some(track) }))
    }

    fn is_done(&self, id: TaskId) -> bool {
        self.tasks.get(&id).is_some_and(|t| t.state == TaskState::Done)
    }

    /// Hands the next ready task (in graph order: mixes and masters before
    /// finalize, lowest track first) to `worker`, leased until
    /// `now_ms + lease_ms`.
    pub fn lease(&mut self, worker: &str, now_ms: u64) -> Option<Lease> {
        if self.state != JobState::Running {
            return None;
        }
        self.expire(now_ms);
        let (&task, entry) = self
            .tasks
            .iter_mut()
            .find(|(_, t)| matches!(t.state, TaskState::Ready { not_before_ms } if not_before_ms <= now_ms))?;
        entry.attempts += 1;
        let lease = self.next_lease;
        self.next_lease += 1;
        let deadline_ms = now_ms + self.policy.lease_ms;
        entry.state = TaskState::Leased { worker: worker.to_owned(), lease, deadline_ms, progress: 0.0, waiting: None };
        Some(Lease { task, lease, attempt: entry.attempts, deadline_ms })
    }

    /// A worker says it is still at work on `lease`, `progress` (0..1)
    /// done, or waiting for what `waiting` says (empty: not waiting).
    pub fn heartbeat(&mut self, task: TaskId, lease: u64, progress: f32, waiting: &str, now_ms: u64) -> HeartbeatReply {
        if self.state != JobState::Running {
            return HeartbeatReply::Stop;
        }
        let lease_ms = self.policy.lease_ms;
        match self.tasks.get_mut(&task).map(|t| &mut t.state) {
            Some(TaskState::Leased { lease: current, deadline_ms, progress: done, waiting: note, .. })
                if *current == lease && *deadline_ms >= now_ms =>
            {
                *deadline_ms = now_ms + lease_ms;
                *note = if waiting.is_empty() { None } else { Some(waiting.chars().take(500).collect()) };
                *done = if progress.is_finite() { progress.clamp(0.0, 1.0) } else { 0.0 };
                HeartbeatReply::Continue { deadline_ms: *deadline_ms }
            }
            _ => HeartbeatReply::Stale,
        }
    }

    /// A worker finished `task` under `lease`. Releases what depended on it.
    pub fn complete(&mut self, task: TaskId, lease: u64) -> Outcome {
        if self.state != JobState::Running || !self.holds(task, lease) {
            return Outcome::Stale;
        }
        if let Some(entry) = self.tasks.get_mut(&task) {
            entry.state = TaskState::Done;
        }
        self.release_dependents();
        if self.is_done(TaskId { stage: Stage::Report, track: None }) {
            self.state = JobState::Succeeded;
        }
        Outcome::Accepted
    }

    /// A worker gave up on `task`. A retryable failure is tried again after
    /// a backoff while attempts remain; otherwise the job fails with the
    /// task's error.
    pub fn fail(&mut self, task: TaskId, lease: u64, reason: &str, retryable: bool, now_ms: u64) -> Outcome {
        if self.state != JobState::Running || !self.holds(task, lease) {
            return Outcome::Stale;
        }
        self.retry_or_fail(task, reason.to_owned(), retryable, now_ms);
        Outcome::Accepted
    }

    /// A worker that is shutting down gives `task` back unfinished: it is
    /// ready again at once, and the attempt does not count.
    pub fn hand_back(&mut self, task: TaskId, lease: u64) -> Outcome {
        if self.state != JobState::Running || !self.holds(task, lease) {
            return Outcome::Stale;
        }
        if let Some(entry) = self.tasks.get_mut(&task) {
            entry.state = TaskState::Ready { not_before_ms: 0 };
            entry.attempts = entry.attempts.saturating_sub(1);
        }
        Outcome::Accepted
    }

    /// Time passes: leases past their deadline are taken back (their worker
    /// is presumed lost) and count as a retryable failure.
    /// Returns the tasks taken back.
    pub fn expire(&mut self, now_ms: u64) -> Vec<TaskId> {
        if self.state != JobState::Running {
            return Vec::new();
        }
        let expired: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, t)| matches!(t.state, TaskState::Leased { deadline_ms, .. } if deadline_ms < now_ms))
            .map(|(id, _)| *id)
            .collect();
        for &task in &expired {
            if self.state == JobState::Running {
                self.retry_or_fail(task, "the worker's lease expired".to_owned(), true, now_ms);
            }
        }
        expired
    }

    /// The coordinator restarted: heartbeats are not stored, so every lease
    /// gets a full lease from now to reach its worker again. A live worker
    /// heartbeats and goes on; a dead one's lease runs out as usual.
    pub fn restarted(&mut self, now_ms: u64) {
        // A job stored by an older build may lack tasks its graph now has
        // (the album plan): they are added, and run when their needs are.
        for id in self.graph.tasks() {
            self.tasks.entry(id).or_insert(Task { state: TaskState::Blocked, attempts: 0, last_error: None });
        }
        self.release_dependents();
        let renewed = now_ms + self.policy.lease_ms;
        for task in self.tasks.values_mut() {
            if let TaskState::Leased { deadline_ms, .. } = &mut task.state {
                *deadline_ms = (*deadline_ms).max(renewed);
            }
        }
    }

    /// The tenant cancels: nothing more is leased, running workers are told
    /// to stop at their next heartbeat.
    pub fn cancel(&mut self) {
        if self.state == JobState::Running {
            self.state = JobState::Cancelled;
        }
    }

    /// Whether `lease` is `task`'s current lease.
    pub fn holds(&self, task: TaskId, lease: u64) -> bool {
        matches!(self.tasks.get(&task).map(|t| &t.state), Some(TaskState::Leased { lease: current, .. }) if *current == lease)
    }

    fn retry_or_fail(&mut self, task: TaskId, reason: String, retryable: bool, now_ms: u64) {
        let policy = self.policy;
        let Some(entry) = self.tasks.get_mut(&task) else { return };
        if retryable && entry.attempts < policy.max_attempts {
            let backoff_ms = policy.first_backoff_ms << (entry.attempts - 1).min(16);
            entry.state = TaskState::Ready { not_before_ms: now_ms + backoff_ms };
            entry.last_error = Some(reason);
        } else {
            let reason = if retryable { format!("{reason} (after {} attempts)", entry.attempts) } else { reason };
            entry.last_error = Some(reason.clone());
            self.state = JobState::Failed { task, reason };
        }
    }

    /// Makes ready every blocked task whose needs are now all done.
    fn release_dependents(&mut self) {
        let ready: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(id, task)| {
                task.state == TaskState::Blocked && self.graph.needs(**id).iter().all(|need| self.is_done(*need))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ready {
            if let Some(entry) = self.tasks.get_mut(&id) {
                entry.state = TaskState::Ready { not_before_ms: 0 };
            }
        }
    }
}

/// The task map as a list of pairs: formats such as JSON only key maps by
/// strings.
pub(crate) mod as_pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, K: Serialize, V: Serialize>(
        map: &BTreeMap<K, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>, K: Deserialize<'de> + Ord, V: Deserialize<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<K, V>, D::Error> {
        Ok(Vec::<(K, V)>::deserialize(deserializer)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy { max_attempts: 3, first_backoff_ms: 100, lease_ms: 1_000 };

    /// Runs every task to completion with one worker; returns the order.
    fn drain(job: &mut Job, now_ms: u64) -> Vec<TaskId> {
        let mut order = Vec::new();
        while let Some(lease) = job.lease("w1", now_ms) {
            assert_eq!(job.complete(lease.task, lease.lease), Outcome::Accepted);
            order.push(lease.task);
        }
        order
    }

    #[test]
    fn the_graph_runs_in_order_to_success() {
        let mut job = Job::new(TaskGraph { tracks: 3, masters_need_every_mix: false }, POLICY);
        assert_eq!(job.progress(), (0, 11), "3 mixes, 3 masters, the plan, 3 finalize, 1 report");
        let order = drain(&mut job, 0);
        assert_eq!(order.len(), 11);
        assert_eq!(*job.state(), JobState::Succeeded);
        let position = |stage, track| order.iter().position(|t| *t == TaskId { stage, track }).unwrap();
        for track in 0..3 {
            assert!(position(Stage::Mix, Some(track)) < position(Stage::Master, Some(track)));
        }
        let last_master = (0..3).map(|t| position(Stage::Master, Some(t))).max().unwrap();
        let first_finalize = (0..3).map(|t| position(Stage::Finalize, Some(t))).min().unwrap();
        let plan = position(Stage::Plan, None);
        assert!(last_master < plan && plan < first_finalize, "the album barrier, then the plan once");
        assert_eq!(order.last(), Some(&TaskId { stage: Stage::Report, track: None }));
    }

    #[test]
    fn a_lost_worker_s_task_is_leased_again_and_its_late_result_is_dropped() {
        let mut job = Job::new(TaskGraph { tracks: 1, masters_need_every_mix: false }, POLICY);
        let first = job.lease("lost", 0).unwrap();
        assert_eq!(job.lease("w2", 10), None, "nothing else is ready");
        // The lost worker stops heartbeating; its lease runs out.
        job.expire(1_001);
        assert_eq!(job.lease("w2", 1_050), None, "backing off");
        let second = job.lease("w2", 1_101).unwrap();
        assert_eq!((second.task, second.attempt), (first.task, 2));
        assert_eq!(job.heartbeat(first.task, first.lease, 0.5, "", 1_200), HeartbeatReply::Stale);
        assert_eq!(job.complete(first.task, first.lease), Outcome::Stale, "applied once, from the current lease");
        assert_eq!(job.complete(second.task, second.lease), Outcome::Accepted);
        assert_eq!(job.complete(second.task, second.lease), Outcome::Stale, "never twice");
        assert_eq!(job.progress().0, 1);
    }

    #[test]
    fn heartbeats_keep_a_lease_alive() {
        let mut job = Job::new(TaskGraph { tracks: 1, masters_need_every_mix: false }, POLICY);
        let lease = job.lease("w1", 0).unwrap();
        for now_ms in (500..5_000).step_by(500) {
            assert_eq!(
                job.heartbeat(lease.task, lease.lease, now_ms as f32 / 5_000.0, "", now_ms),
                HeartbeatReply::Continue { deadline_ms: now_ms + 1_000 }
            );
            job.expire(now_ms);
        }
        let view = job.tasks().find(|t| t.id == lease.task).unwrap();
        assert_eq!((view.status, view.progress), (TaskStatus::Leased, 0.9), "the last heartbeat's progress");
        assert_eq!(job.complete(lease.task, lease.lease), Outcome::Accepted);
    }

    #[test]
    fn retryable_failures_back_off_then_fail_the_job_with_the_task_s_error() {
        let mut job = Job::new(TaskGraph { tracks: 2, masters_need_every_mix: false }, POLICY);
        let mut now_ms = 0;
        let mut waits = Vec::new();
        let task = TaskId { stage: Stage::Master, track: Some(0) };
        for attempt in 1..=3 {
            let lease = loop {
                match job.lease("w1", now_ms) {
                    Some(lease) if lease.task == task => break lease,
                    Some(other) => assert_eq!(job.complete(other.task, other.lease), Outcome::Accepted),
                    None => now_ms += 10,
                }
            };
            assert_eq!(lease.attempt, attempt);
            waits.push(now_ms);
            assert_eq!(job.fail(task, lease.lease, "storage unreachable", true, now_ms), Outcome::Accepted);
        }
        assert!(waits[1] - waits[0] >= 100 && waits[2] - waits[1] >= 200, "doubling backoff: {waits:?}");
        assert_eq!(*job.state(), JobState::Failed { task, reason: "storage unreachable (after 3 attempts)".into() });
        assert_eq!(job.lease("w1", now_ms + 10_000), None);
    }

    #[test]
    fn a_permanent_failure_fails_at_once() {
        let mut job = Job::new(TaskGraph { tracks: 1, masters_need_every_mix: false }, POLICY);
        let lease = job.lease("w1", 0).unwrap();
        job.fail(lease.task, lease.lease, "stem is not audio", false, 0);
        assert_eq!(*job.state(), JobState::Failed { task: lease.task, reason: "stem is not audio".into() });
    }

    #[test]
    fn cancel_stops_leasing_and_reaches_running_workers() {
        let mut job = Job::new(TaskGraph { tracks: 2, masters_need_every_mix: false }, POLICY);
        let running = job.lease("w1", 0).unwrap();
        job.cancel();
        assert_eq!(job.heartbeat(running.task, running.lease, 0.1, "", 10), HeartbeatReply::Stop);
        assert_eq!(job.lease("w2", 10), None);
        assert_eq!(job.complete(running.task, running.lease), Outcome::Stale);
        assert_eq!(*job.state(), JobState::Cancelled);
    }

    #[test]
    fn a_restart_from_the_store_continues_the_job() {
        let mut job = Job::new(TaskGraph { tracks: 2, masters_need_every_mix: false }, POLICY);
        let done = job.lease("w1", 0).unwrap();
        job.complete(done.task, done.lease);
        let running = job.lease("w1", 0).unwrap();
        // The coordinator dies; its store holds the last state written.
        let stored = serde_json::to_string(&job).unwrap();
        let mut restarted: Job = serde_json::from_str(&stored).unwrap();
        assert_eq!(restarted, job);
        // Its heartbeats were not stored: it gets a full lease from the restart.
        restarted.restarted(60_000);
        assert_eq!(
            restarted.heartbeat(running.task, running.lease, 0.5, "", 60_999),
            HeartbeatReply::Continue { deadline_ms: 61_999 }
        );
        // The running worker's lease survives the restart and its result counts.
        assert_eq!(restarted.complete(running.task, running.lease), Outcome::Accepted);
        let rest = drain(&mut restarted, 0);
        assert!(!rest.contains(&done.task) && !rest.contains(&running.task), "nothing runs twice");
        assert_eq!(*restarted.state(), JobState::Succeeded);
        // And a new lease number never repeats one handed out before.
        assert!(restarted.next_lease > running.lease);
    }

    #[test]
    fn in_album_loudness_mode_masters_wait_for_every_mix() {
        let mut job = Job::new(TaskGraph { tracks: 2, masters_need_every_mix: true }, POLICY);
        let mix0 = job.lease("w1", 0).unwrap();
        assert_eq!(job.complete(mix0.task, mix0.lease), Outcome::Accepted);
        let next = job.lease("w1", 0).unwrap();
        assert_eq!(next.task, TaskId { stage: Stage::Mix, track: Some(1) }, "not master 0: its drive needs mix 1");
        assert_eq!(job.lease("w2", 0), None);
        assert_eq!(job.complete(next.task, next.lease), Outcome::Accepted);
        assert_eq!(job.ready_count(0), 2, "both masters at once");

        let mut per_track = Job::new(TaskGraph { tracks: 2, masters_need_every_mix: false }, POLICY);
        let mix0 = per_track.lease("w1", 0).unwrap();
        per_track.complete(mix0.task, mix0.lease);
        let leased: Vec<TaskId> = std::iter::from_fn(|| per_track.lease("w1", 0)).map(|l| l.task).collect();
        assert!(leased.contains(&TaskId { stage: Stage::Master, track: Some(0) }), "track mode: {leased:?}");
    }

    #[test]
    fn a_task_handed_back_is_leased_again_at_once_without_losing_an_attempt() {
        let mut job =
            Job::new(TaskGraph { tracks: 1, masters_need_every_mix: false }, RetryPolicy { max_attempts: 1, ..POLICY });
        let first = job.lease("leaving", 0).unwrap();
        assert_eq!(job.hand_back(first.task, first.lease), Outcome::Accepted);
        assert_eq!(job.hand_back(first.task, first.lease), Outcome::Stale, "once");
        let second = job.lease("w2", 0).expect("no backoff");
        assert_eq!((second.task, second.attempt), (first.task, 1), "the attempt did not count");
        assert_eq!(job.complete(first.task, first.lease), Outcome::Stale);
        assert_eq!(job.complete(second.task, second.lease), Outcome::Accepted);
        assert_eq!(*job.state(), JobState::Running);
    }
}
