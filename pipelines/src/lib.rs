//! Everything about sound and albums, with no network and no async runtime:
//! the album manifest (model, parsing and validation), probing and decoding
//! audio, the DSP processors, the mix / master / finalize stages as plain
//! functions over readers and writers, analysis, and the album-matching math.
//!
//! Invariant: this crate does no network I/O and knows nothing of tokio or
//! tonic. Whatever storage a caller uses, it hands this crate readers.

pub mod album;
pub mod analysis;
pub mod audio;
pub mod decode;
pub mod dsp;
pub mod encode;
pub mod manifest;
pub mod meter;
pub mod report;
pub mod stages;
pub mod tasks;

/// Part of every task's cache key: outputs rendered by another version of
/// the sound engine are never reused. Raise the number whenever a change
/// alters any rendered sample.
pub const PIPELINE_VERSION: &str = concat!("lacquer-", env!("CARGO_PKG_VERSION"), "-pipeline-6");
