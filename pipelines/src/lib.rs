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
pub mod codec;
pub mod decode;
pub mod disc;
pub mod dsp;
pub mod encode;
pub mod manifest;
pub mod meter;
pub mod report;
pub mod stages;
pub mod tasks;

/// Part of every task's cache key: outputs rendered by another version of
/// the sound engine are never reused. Raise the number whenever a change
/// alters any rendered sample or any byte of a delivered file.
pub const PIPELINE_VERSION: &str = concat!("lacquer-", env!("CARGO_PKG_VERSION"), "-pipeline-17");

/// Whether this CPU runs what the build assumes: on x86-64, fused
/// multiply-add (see `.cargo/config.toml`). Every binary checks at start.
pub fn check_cpu() -> Result<(), String> {
    #[cfg(target_arch = "x86_64")]
    if !std::arch::is_x86_feature_detected!("fma") {
        return Err("this CPU has no fused multiply-add (FMA), which lacquer's x86-64 build needs (any Intel CPU \
                    since Haswell, 2013, or AMD since Piledriver, 2012)"
            .to_owned());
    }
    Ok(())
}
