//! The album manifest, version 1: the contract between a label and the
//! pipeline (`spec/manifest.md`).
//!
//! [`check`] is the entry point: it parses (failing on the first syntax or
//! structure error, with its line and column), then checks the manifest as
//! a whole and collects every problem, each with its field path. Whether the
//! referenced files exist and decode is checked by the caller, which owns
//! storage, with [`crate::decode::probe`]; [`Checked::finish`] folds those
//! results in, so one run reports everything.

mod limits;
mod locate;
mod location;
mod model;
mod parse;
mod problem;
mod validate;

pub use limits::{
    MAX_AUTOMATION_POINTS, MAX_DELIVERABLES, MAX_FILTERS, MAX_MANIFEST_BYTES, MAX_RETURNS, MAX_STEMS, MAX_TEXT_BYTES,
    MAX_TRACKS,
};
pub use location::{ObjectRef, StorageRoot};
pub use model::*;
pub use parse::{MANIFEST_VERSION, check_size, manifest_text, parse};
pub use problem::{ManifestError, Problem};
pub use validate::{Checked, InputFile, InputRole, ProbedInput, SAMPLE_RATES_HZ, ValidManifest, is_valid_id, validate};

/// Parses manifest text and checks it as a whole. `base` is the manifest's
/// own folder (relative `source` and `output` start there);
/// `output_override` replaces `output` (the CLI's `--output`, relative to the
/// working directory). A syntax or structure error fails at once; otherwise
/// every problem found is in [`Checked::problems`], and the inputs still need
/// probing before [`Checked::finish`].
pub fn check(text: &str, base: &StorageRoot, output_override: Option<&str>) -> Result<Checked, ManifestError> {
    let (manifest, unknown_fields) = parse(text)?;
    let mut checked = validate(manifest, base, output_override);
    let locator = locate::Locator::new(text);
    let found = std::mem::take(&mut checked.problems);
    checked.problems = unknown_fields.into_iter().chain(found).map(|p| parse::locate(&locator, p)).collect();
    checked.locator = Some(std::sync::Arc::new(locator));
    Ok(checked)
}
