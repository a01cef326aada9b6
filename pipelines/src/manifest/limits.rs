//! What one manifest may ask for. Beyond these a manifest is refused at
//! once, before any file is opened: work and memory stay bounded whatever
//! a manifest says (`docs/manifest.md`, "Limits").

use super::model::{Filter, Manifest};
use super::problem::Problem;

/// The largest manifest read, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;
/// Tracks per album: what a CD holds.
pub const MAX_TRACKS: usize = 99;
/// Stems per track.
pub const MAX_STEMS: usize = 256;
/// Returns per track.
pub const MAX_RETURNS: usize = 16;
/// Filters per EQ.
pub const MAX_FILTERS: usize = 32;
/// Deliverables per album.
pub const MAX_DELIVERABLES: usize = 16;
/// Points per automation lane.
pub const MAX_AUTOMATION_POINTS: usize = 10_000;
/// Bytes of any text: titles, names, paths (an S3 key's own limit).
pub const MAX_TEXT_BYTES: usize = 1024;
/// Unknown fields reported before the manifest is refused outright.
pub const MAX_UNKNOWN_FIELDS: usize = 100;

/// Every limit `manifest` exceeds.
pub fn problems(manifest: &Manifest) -> Vec<Problem> {
    let mut found = Vec::new();
    let mut count = |path: String, what: &str, n: usize, max: usize| {
        if n > max {
            found.push(Problem::new(path, format!("{n} {what}; at most {max} are allowed")));
        }
    };
    count("tracks".into(), "tracks", manifest.tracks.len(), MAX_TRACKS);
    if let Some(list) = &manifest.deliverables {
        count("deliverables".into(), "deliverables", list.len(), MAX_DELIVERABLES);
    }
    let mut eqs: Vec<(String, &[Filter])> = Vec::new();
    if let Some(eq) = &manifest.master.eq {
        eqs.push(("master.eq".into(), eq));
    }
    for (t, track) in manifest.tracks.iter().enumerate() {
        let path = format!("tracks[{t}]");
        if let Some(stems) = &track.stems {
            count(format!("{path}.stems"), "stems", stems.len(), MAX_STEMS);
            for (s, stem) in stems.iter().take(MAX_STEMS).enumerate() {
                let stem_path = format!("{path}.stems[{s}]");
                eqs.push((format!("{stem_path}.eq"), &stem.eq));
                for (lane, points) in [("gain_db", &stem.automation.gain_db), ("pan", &stem.automation.pan)] {
                    if let Some(points) = points {
                        count(
                            format!("{stem_path}.automation.{lane}"),
                            "automation points",
                            points.len(),
                            MAX_AUTOMATION_POINTS,
                        );
                    }
                }
            }
        }
        if let Some(returns) = &track.returns {
            count(format!("{path}.returns"), "returns", returns.len(), MAX_RETURNS);
            for (name, ret) in returns.iter().take(MAX_RETURNS) {
                eqs.push((format!("{path}.returns.{name}.eq"), &ret.eq));
            }
        }
        if let Some(eq) = track.master.as_ref().and_then(|m| m.eq.as_ref()) {
            eqs.push((format!("{path}.master.eq"), eq));
        }
    }
    for (path, eq) in eqs {
        count(path, "filters", eq.len(), MAX_FILTERS);
    }
    for (path, text) in texts(manifest) {
        if text.len() > MAX_TEXT_BYTES {
            found.push(Problem::new(
                path,
                format!("is {} bytes long; text is limited to {MAX_TEXT_BYTES} bytes", text.len()),
            ));
        }
    }
    found
}

/// Every text of a manifest, by field path (up to the count limits).
fn texts(manifest: &Manifest) -> Vec<(String, &str)> {
    let mut texts: Vec<(String, &str)> = vec![
        ("album.title".into(), &manifest.album.title),
        ("album.artist".into(), &manifest.album.artist),
        ("matching.tone.reference".into(), &manifest.matching.tone.reference),
    ];
    let optional = [
        ("album.label", &manifest.album.label),
        ("album.upc", &manifest.album.upc),
        ("source", &manifest.source),
        ("output", &manifest.output),
    ];
    texts.extend(optional.into_iter().filter_map(|(path, text)| Some((path.to_owned(), text.as_deref()?))));
    for (index, d) in manifest.deliverables.iter().flatten().take(MAX_DELIVERABLES).enumerate() {
        texts.push((format!("deliverables[{index}].name"), &d.name));
    }
    for (t, track) in manifest.tracks.iter().take(MAX_TRACKS).enumerate() {
        let path = format!("tracks[{t}]");
        texts.push((format!("{path}.id"), &track.id));
        texts.push((format!("{path}.title"), &track.title));
        if let Some(isrc) = &track.isrc {
            texts.push((format!("{path}.isrc"), isrc));
        }
        if let Some(file) = &track.mix_file {
            texts.push((format!("{path}.mix_file"), file));
        }
        for (name, _) in track.returns.iter().flatten().take(MAX_RETURNS) {
            texts.push((format!("{path}.returns"), name));
        }
        for (s, stem) in track.stems.iter().flatten().take(MAX_STEMS).enumerate() {
            texts.push((format!("{path}.stems[{s}].name"), &stem.name));
            texts.push((format!("{path}.stems[{s}].file"), &stem.file));
            for name in stem.sends.keys() {
                texts.push((format!("{path}.stems[{s}].sends"), name));
            }
        }
    }
    texts
}
