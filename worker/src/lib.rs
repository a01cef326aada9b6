//! Running album tasks against storage.
//!
//! - [`run::Runner`] runs one task of an album (mix, master, finalize,
//!   report) through [`lacquer_pipelines::tasks`]: inputs fetched from
//!   storage, outputs published to it, finished keys recorded so no worker
//!   runs them again. `lacquer master` runs every task through it in one
//!   process.
//! - [`work::work`] is the worker process's loop: lease from the
//!   coordinator, heartbeat, run, report; on SIGTERM finish (or, past the
//!   grace period, hand back) and stop.
//! - Storage backends and telemetry come from `lacquer-runtime`, shared
//!   with the coordinator.
//!
//! Invariant: a worker keeps no state of its own between tasks; any number
//! of them can run anywhere.

pub mod cli;
pub mod run;
#[cfg(feature = "testing")]
pub mod testing;
pub mod work;
