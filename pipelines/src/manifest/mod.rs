//! The album manifest, version 1: the contract between a label and the
//! pipeline (`spec/manifest.md`).
//!
//! [`load`] is the one entry point: it parses (failing on the first syntax
//! or structure error, with its line and column), then checks the manifest
//! as a whole and reports every problem at once, each with its field path.
//! Whether the referenced files exist and decode is checked by the caller,
//! which owns storage, through [`crate::probe`].

mod location;
mod model;
mod parse;
mod problem;
mod validate;

pub use location::{ObjectRef, StorageRoot};
pub use model::*;
pub use parse::{MANIFEST_VERSION, parse};
pub use problem::{ManifestError, Problem};
pub use validate::{InputFile, InputRole, Resolved, SAMPLE_RATES_HZ, is_valid_id, validate};

/// A manifest that parsed and passed every static check, with its paths
/// resolved.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ValidManifest {
    pub manifest: Manifest,
    pub resolved: Resolved,
}

/// Parses and validates manifest text. `base` is the manifest's own folder
/// (relative `source` and `output` start there); `output_override` replaces
/// `output` (the CLI's `--output`, relative to the working directory).
pub fn load(
    text: &str,
    base: &StorageRoot,
    output_override: Option<&str>,
) -> Result<ValidManifest, ManifestError> {
    let manifest = parse(text)?;
    match validate(&manifest, base, output_override) {
        Ok(resolved) => Ok(ValidManifest { manifest, resolved }),
        Err(problems) => Err(ManifestError { problems }),
    }
}
