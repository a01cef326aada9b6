//! The coordinator: the album job state machine, its durable store, the
//! fair scheduler and the gRPC services for clients and workers.
//!
//! Invariant: the coordinator reads no audio beyond probing headers; it
//! sees manifests, probe results and analyses only. Its state machine is pure and tested
//! without a network.

pub mod auth;
pub mod cli;
pub mod error;
pub mod job;
pub mod results;
pub mod server;
pub mod service;
pub mod store;
