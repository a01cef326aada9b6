//! The generated lacquer.v1 types and service stubs. They stay in this
//! crate: the coordinator, the worker and the CLI convert them to and from
//! their domain types by hand.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("lacquer.v1");

    /// The encoded file descriptors, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("lacquer_v1_descriptor");
}
