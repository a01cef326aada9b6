//! The worker: leases tasks from the coordinator, runs the `pipelines`
//! stage they name against object storage, and reports the result.
//!
//! Invariant: a worker keeps no state of its own between tasks; any number
//! of them can run anywhere.
