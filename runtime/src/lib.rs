//! What the coordinator and the workers (and the `lacquer` CLI) share at
//! run time, so that neither server depends on the other:
//!
//! - [`stores::Stores`] maps manifest locations to storage backends and
//!   probes inputs: the CLI's `validate`, the coordinator's Submit and the
//!   workers' tasks all reach storage through it.
//! - [`telemetry`]: JSON or text logs and the Prometheus endpoint, and
//!   [`telemetry::run_process`], the life of a server process.
//! - [`share_one_heap`]: the allocator setting of the processes that run
//!   tasks.

pub mod stores;
pub mod telemetry;

/// Makes every thread of this process allocate from one heap. glibc's
/// allocator gives each new thread an arena of its own (up to eight per
/// core) and keeps what the thread freed there for its reuse; a task runs
/// its deliverables, analyzers and readers on short-lived threads, so each
/// finalize left its own arenas behind: 44 MB peak for the example album
/// against 32 MB with one heap, at the same speed (the processors allocate
/// nothing per block, so the one heap's lock is rarely taken). Called
/// first thing by `lacquer` and `lacquer-worker`, before any thread starts.
#[allow(unsafe_code)]
pub fn share_one_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of glibc's allocator; called
    // before this process starts any thread of its own.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
