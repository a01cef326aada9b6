//! The gRPC contract between the coordinator, its workers and its clients
//! (`lacquer.v1`). The `.proto` files and the code generated from them live
//! here and nowhere else; other crates convert to domain types at the edge.
//!
//! The services themselves arrive with the distributed coordinator; this
//! crate holds the package's version so every process can report it.

/// The protobuf package the services are published under.
pub const PACKAGE: &str = "lacquer.v1";
