//! What the coordinator and the workers (and the `lacquer` CLI) share at
//! run time, so that neither server depends on the other:
//!
//! - [`stores::Stores`] maps manifest locations to storage backends and
//!   probes inputs: the CLI's `validate`, the coordinator's Submit and the
//!   workers' tasks all reach storage through it.
//! - [`telemetry`]: JSON or text logs and the Prometheus endpoint, and
//!   [`telemetry::run_process`], the life of a server process.

pub mod stores;
pub mod telemetry;
