//! Whole-manifest checks after a successful parse: ranges, ids, references
//! and paths. Every problem is collected, none stops the check.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::location::{ObjectRef, StorageRoot};
use super::model::*;
use super::problem::{ManifestError, Problem};
use crate::decode::AudioInfo;

/// Sample rates accepted for the working rate and for deliverables.
pub const SAMPLE_RATES_HZ: [u32; 7] = [32_000, 44_100, 48_000, 88_200, 96_000, 176_400, 192_000];

/// What a referenced input file is for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum InputRole {
    /// `tracks[track].stems[stem].file`
    Stem { track: usize, stem: usize },
    /// `tracks[track].mix_file`
    MixFile { track: usize },
    /// `matching.tone.reference: file:<path>`
    ToneReference,
}

impl InputRole {
    /// How many channels the file may have.
    pub fn allowed_channels(&self) -> &'static [usize] {
        match self {
            InputRole::MixFile { .. } => &[2],
            InputRole::Stem { .. } | InputRole::ToneReference => &[1, 2],
        }
    }
}

/// One file the manifest refers to, resolved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputFile {
    /// The manifest field that names it, e.g. `tracks[0].stems[2].file`.
    pub field: String,
    pub object: ObjectRef,
    pub role: InputRole,
}

/// A manifest that parsed, after the static checks: the resolved roots,
/// every input file that could be resolved, and every problem found so far.
/// The caller probes [`Checked::inputs`] through storage and hands the
/// results to [`Checked::finish`].
#[derive(Debug, Clone)]
pub struct Checked {
    pub manifest: Manifest,
    pub source: Option<StorageRoot>,
    pub output: Option<StorageRoot>,
    pub inputs: Vec<InputFile>,
    pub problems: Vec<Problem>,
    /// Where each field is written, to place problems found later.
    pub(crate) locator: Option<std::sync::Arc<super::locate::Locator>>,
}

/// Checks a parsed manifest as a whole and resolves its paths against
/// `base` (the manifest's folder); `output_override` replaces `output` and
/// is relative to the working directory. Never stops at the first problem.
pub fn validate(manifest: Manifest, base: &StorageRoot, output_override: Option<&str>) -> Checked {
    let beyond_limits = super::limits::problems(&manifest);
    if !beyond_limits.is_empty() {
        // Nothing more is looked at, no file is opened.
        return Checked {
            manifest,
            source: None,
            output: None,
            inputs: Vec::new(),
            problems: beyond_limits,
            locator: None,
        };
    }
    let mut check = Checker { problems: Vec::new(), nyquist_limit_hz: 0.45 * f64::from(manifest.album.sample_rate) };
    check.album(&manifest.album);
    check.mix(&manifest.mix);
    check.master_chain("master", &manifest.master);
    check.matching(&manifest);
    check.deliverables(&manifest);
    check.output_paths(&manifest);

    let source = resolve_root(&mut check, "source", manifest.source.as_deref().unwrap_or("."), base);
    let output = match output_override {
        Some(text) => resolve_root(&mut check, "output", text, &StorageRoot::Local { dir: ".".into() }),
        None => resolve_root(&mut check, "output", manifest.output.as_deref().unwrap_or("masters/"), base),
    };
    let mut inputs = Vec::new();
    check.tracks(&manifest, source.as_ref(), &mut inputs);
    if let (Some(reference), Some(source)) = (manifest.matching.tone.reference.strip_prefix("file:"), &source)
        && !reference.is_empty()
    {
        let field = "matching.tone.reference";
        match source.object(reference) {
            Ok(object) => inputs.push(InputFile { field: field.to_owned(), object, role: InputRole::ToneReference }),
            Err(reason) => check.problem(field, reason),
        }
    }
    Checked { manifest, source, output, inputs, problems: check.problems, locator: None }
}

impl Checked {
    /// Adds what probing each input found (`probes[i]` belongs to
    /// `inputs[i]`) and returns the valid manifest or every problem.
    pub fn finish(mut self, probes: Vec<Result<AudioInfo, String>>) -> Result<ValidManifest, ManifestError> {
        debug_assert_eq!(probes.len(), self.inputs.len());
        let mut probed = Vec::with_capacity(self.inputs.len());
        for (input, probe) in self.inputs.into_iter().zip(probes) {
            match probe {
                Err(reason) => {
                    self.problems.push(Problem::new(&input.field, format!("cannot use {}: {reason}", input.object)))
                }
                Ok(info) if !input.role.allowed_channels().contains(&info.channels) => {
                    let wanted = match input.role {
                        InputRole::MixFile { .. } => "a stereo file",
                        _ => "mono or stereo",
                    };
                    self.problems.push(Problem::new(
                        &input.field,
                        format!("{} has {} channels; it must be {wanted}", input.object, info.channels),
                    ));
                }
                Ok(info) => probed.push(ProbedInput { input, info }),
            }
        }
        self.problems.extend(length_problems(&self.manifest, &probed));
        if let Some(locator) = &self.locator {
            self.problems = self.problems.into_iter().map(|p| super::parse::locate(locator, p)).collect();
        }
        // Document order; problems without a place last, in the order found.
        self.problems.sort_by_key(|p| (p.line.is_none(), p.line, p.column));
        match (self.source, self.output) {
            (Some(source), Some(output)) if self.problems.is_empty() => {
                Ok(ValidManifest { manifest: self.manifest, source, output, inputs: probed })
            }
            _ => Err(ManifestError { problems: self.problems }),
        }
    }
}

/// Trims and fades that do not fit the track, once the inputs' lengths
/// are known (a track lasts to the latest end of its stems, after
/// `trim_start_s`; the tails of its returns are not counted).
fn length_problems(manifest: &Manifest, probed: &[ProbedInput]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (index, track) in manifest.tracks.iter().enumerate() {
        let ends: Option<Vec<f64>> = probed
            .iter()
            .filter_map(|p| match p.input.role {
                InputRole::MixFile { track: t } if t == index => Some(p.info.duration_s()),
                InputRole::Stem { track: t, stem } if t == index => {
                    let offset_s = track.stems.as_ref().map_or(0.0, |stems| stems[stem].offset_s);
                    Some(p.info.duration_s().map(|d| offset_s + d))
                }
                _ => None,
            })
            .collect();
        // Unknown when an input's header gives no length (or none probed).
        let Some(end_s) = ends.and_then(|ends| ends.into_iter().reduce(f64::max)) else { continue };
        let path = format!("tracks[{index}]");
        if track.trim_start_s >= end_s {
            problems.push(Problem::new(
                format!("{path}.trim_start_s"),
                format!("cuts {} s from a track that lasts {end_s:.3} s: nothing would be left", track.trim_start_s),
            ));
            continue;
        }
        let length_s = end_s - track.trim_start_s;
        if track.fade_in_s + track.fade_out_s > length_s {
            let field = if track.fade_out_s > 0.0 { "fade_out_s" } else { "fade_in_s" };
            problems.push(Problem::new(
                format!("{path}.{field}"),
                format!(
                    "fades of {} s in and {} s out are longer than the track ({length_s:.3} s{})",
                    track.fade_in_s,
                    track.fade_out_s,
                    if track.trim_start_s > 0.0 { " after trim_start_s" } else { "" }
                ),
            ));
        }
    }
    problems
}

/// An input file with what its header says.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProbedInput {
    pub input: InputFile,
    pub info: AudioInfo,
}

/// A manifest that parsed, passed every check, and whose every input file
/// exists and decodes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ValidManifest {
    pub manifest: Manifest,
    pub source: StorageRoot,
    pub output: StorageRoot,
    /// Every input, in manifest order.
    pub inputs: Vec<ProbedInput>,
}

impl ValidManifest {
    /// The probed input named by `role`.
    pub fn input(&self, role: &InputRole) -> Option<&ProbedInput> {
        self.inputs.iter().find(|probed| &probed.input.role == role)
    }
}

fn resolve_root(check: &mut Checker, field: &str, text: &str, base: &StorageRoot) -> Option<StorageRoot> {
    match StorageRoot::resolve(text, base) {
        Ok(root) => Some(root),
        Err(reason) => {
            check.problem(field, reason);
            None
        }
    }
}

/// `^[a-z0-9][a-z0-9-]{0,62}$`
pub fn is_valid_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// ISRC: `CC-XXX-YY-NNNNN` without dashes (country, registrant, year, designation).
pub fn isrc_problem(isrc: &str) -> Option<String> {
    let b = isrc.as_bytes();
    let well_formed = b.len() == 12
        && b[0..2].iter().all(u8::is_ascii_uppercase)
        && b[2..5].iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && b[5..12].iter().all(u8::is_ascii_digit);
    if well_formed {
        return None;
    }
    let hint = if isrc.contains('-') { " (write it without dashes)" } else { "" };
    Some(format!(
        "`{isrc}` is not an ISRC: expected 12 characters, 2 letters + 3 letters or digits + 7 digits, e.g. GBABC2600001{hint}"
    ))
}

/// UPC-A (12 digits) or EAN-13 (13 digits) with its GS1 check digit.
pub fn upc_problem(upc: &str) -> Option<String> {
    if !(upc.len() == 12 || upc.len() == 13) || !upc.bytes().all(|b| b.is_ascii_digit()) {
        return Some(format!("`{upc}` is not a UPC/EAN: expected 12 or 13 digits"));
    }
    let digits: Vec<u32> = upc.bytes().map(|b| u32::from(b - b'0')).collect();
    let (body, check) = digits.split_at(digits.len() - 1);
    // Weights 3, 1, 3, ... from the digit next to the check digit leftwards.
    let sum: u32 = body.iter().rev().enumerate().map(|(i, d)| if i % 2 == 0 { d * 3 } else { *d }).sum();
    let expected = (10 - sum % 10) % 10;
    (expected != check[0]).then(|| format!("`{upc}` has check digit {}, but its digits give {expected}", check[0]))
}

struct Checker {
    problems: Vec<Problem>,
    nyquist_limit_hz: f64,
}

impl Checker {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    /// `value` must lie in `low..=high`; the message gives the range and unit.
    fn range(&mut self, path: &str, value: f64, low: f64, high: f64, unit: &str) {
        if !(low..=high).contains(&value) {
            self.problem(path, format!("{value} is out of range {}{unit}", span(low, high)));
        }
    }

    fn one_of(&mut self, path: &str, value: f64, allowed: &[f64], unit: &str) {
        if !allowed.contains(&value) {
            let list: Vec<String> = allowed.iter().map(|v| format!("{v}")).collect();
            self.problem(path, format!("{value} is not allowed: use one of {}{unit}", list.join(", ")));
        }
    }

    fn non_empty(&mut self, path: &str, text: &str) {
        if text.trim().is_empty() {
            self.problem(path, "must not be empty");
        }
    }

    fn sample_rate(&mut self, path: &str, rate_hz: u32) {
        if !SAMPLE_RATES_HZ.contains(&rate_hz) {
            let list: Vec<String> = SAMPLE_RATES_HZ.iter().map(u32::to_string).collect();
            self.problem(path, format!("{rate_hz} Hz is not supported: use one of {} Hz", list.join(", ")));
        }
    }

    fn album(&mut self, album: &Album) {
        self.non_empty("album.title", &album.title);
        self.non_empty("album.artist", &album.artist);
        if let Some(upc) = &album.upc
            && let Some(message) = upc_problem(upc)
        {
            self.problem("album.upc", message);
        }
        self.sample_rate("album.sample_rate", album.sample_rate);
    }

    fn mix(&mut self, mix: &MixSettings) {
        self.range("mix.headroom_dbfs", mix.headroom_dbfs, -24.0, 0.0, " dBFS");
        self.one_of("mix.pan_law_db", mix.pan_law_db, &[0.0, -3.0, -4.5, -6.0], " dB");
    }

    fn filters(&mut self, path: &str, filters: &[Filter]) {
        for (index, filter) in filters.iter().enumerate() {
            let path = format!("{path}[{index}]");
            let kind = filter.kind.name();
            self.range(
                &format!("{path}.freq_hz"),
                filter.freq_hz,
                10.0,
                self.nyquist_limit_hz,
                " Hz (up to 0.45 × the working sample rate)",
            );
            if let Some(q) = filter.q {
                self.range(&format!("{path}.q"), q, 0.1, 30.0, "");
            }
            match (filter.kind.takes_gain(), filter.gain_db) {
                (true, Some(gain_db)) => self.range(&format!("{path}.gain_db"), gain_db, -24.0, 24.0, " dB"),
                (true, None) => {
                    self.problem(format!("{path}.gain_db"), format!("a {kind} filter needs `gain_db` (-24 to 24 dB)"))
                }
                (false, Some(_)) => {
                    self.problem(format!("{path}.gain_db"), format!("a {kind} filter has no gain; remove `gain_db`"))
                }
                (false, None) => {}
            }
            if let Some(slope) = filter.slope_db_oct {
                if !filter.kind.takes_slope() {
                    self.problem(
                        format!("{path}.slope_db_oct"),
                        format!("only high_pass and low_pass take a slope, not {kind}"),
                    );
                } else if slope != 12 && slope != 24 {
                    self.problem(
                        format!("{path}.slope_db_oct"),
                        format!("{slope} is not allowed: use 12 or 24 (dB/oct)"),
                    );
                }
            }
        }
    }

    fn compressor(&mut self, path: &str, c: &Compressor) {
        self.range(&format!("{path}.threshold_db"), c.threshold_db, -60.0, 0.0, " dB");
        self.range(&format!("{path}.ratio"), c.ratio, 1.0, 20.0, "");
        self.range(&format!("{path}.attack_ms"), c.attack_ms, 0.1, 500.0, " ms");
        self.range(&format!("{path}.release_ms"), c.release_ms, 5.0, 5000.0, " ms");
        self.range(&format!("{path}.knee_db"), c.knee_db, 0.0, 24.0, " dB");
        self.range(&format!("{path}.makeup_db"), c.makeup_db, -12.0, 24.0, " dB");
    }

    fn master_chain(&mut self, path: &str, chain: &MasterChain) {
        if let Some(eq) = &chain.eq {
            self.filters(&format!("{path}.eq"), eq);
        }
        if let Some(compressor) = &chain.compressor {
            self.compressor(&format!("{path}.compressor"), compressor);
        }
        if let Some(s) = &chain.saturation {
            self.range(&format!("{path}.saturation.drive_db"), s.drive_db, 0.0, 24.0, " dB");
            self.range(&format!("{path}.saturation.mix"), s.mix, 0.0, 1.0, "");
        }
        if let Some(s) = &chain.stereo {
            self.range(&format!("{path}.stereo.width"), s.width, 0.0, 2.0, "");
            if s.mono_below_hz != 0.0 {
                self.range(&format!("{path}.stereo.mono_below_hz"), s.mono_below_hz, 20.0, 500.0, " Hz, or 0 for off");
            }
        }
        if let Some(l) = &chain.limiter {
            self.range(&format!("{path}.limiter.release_ms"), l.release_ms, 1.0, 1000.0, " ms");
            self.range(&format!("{path}.limiter.lookahead_ms"), l.lookahead_ms, 0.1, 10.0, " ms");
        }
    }

    fn matching(&mut self, manifest: &Manifest) {
        let m = &manifest.matching;
        self.range("matching.loudness.target_lufs", m.loudness.target_lufs, -30.0, -5.0, " LUFS");
        self.range("matching.true_peak_dbtp", m.true_peak_dbtp, -9.0, 0.0, " dBTP");
        self.range("matching.tone.strength", m.tone.strength, 0.0, 1.0, "");
        self.range("matching.tone.max_correction_db", m.tone.max_correction_db, 0.0, 12.0, " dB");
        self.range("matching.warmth.strength", m.warmth.strength, 0.0, 1.0, "");
        self.range("matching.max_limiter_gain_reduction_db", m.max_limiter_gain_reduction_db, 0.0, 20.0, " dB");
        if let Some(ceiling_dbtp) = m.codec_ceiling_dbtp {
            self.range("matching.codec_ceiling_dbtp", ceiling_dbtp, -9.0, 0.0, " dBTP");
        }
        let mut codecs = BTreeSet::new();
        for (index, spec) in m.codec_check.iter().enumerate() {
            let path = format!("matching.codec_check[{index}]");
            let (low, high) = match spec.codec {
                Codec::Aac => (64, 320),
                Codec::Opus => (48, 510),
            };
            let bitrate_kbps = spec.bitrate_kbps();
            if !(low..=high).contains(&bitrate_kbps) {
                self.problem(
                    format!("{path}.bitrate_kbps"),
                    format!("{bitrate_kbps} kb/s is outside {low}..{high} for {}", spec.codec.name()),
                );
            } else if !codecs.insert((spec.codec.name(), bitrate_kbps)) {
                self.problem(path, format!("{} at {bitrate_kbps} kb/s is listed twice", spec.codec.name()));
            }
        }
        if !m.codec_check.is_empty() && !manifest.effective_deliverables().iter().any(Deliverable::streaming) {
            self.problem(
                "matching.codec_check",
                "no deliverable is for streaming (`streaming: false` on every one, or only `ddp`): nothing to check",
            );
        }
        match ToneReference::parse(&m.tone.reference) {
            Err(message) => self.problem("matching.tone.reference", message),
            Ok(ToneReference::Track(id)) if !manifest.tracks.iter().any(|t| t.id == id) => {
                let ids: Vec<&str> = manifest.tracks.iter().map(|t| t.id.as_str()).collect();
                self.problem(
                    "matching.tone.reference",
                    format!("refers to track `{id}`, which is not in this album (tracks: {})", ids.join(", ")),
                );
            }
            Ok(_) => {}
        }
    }

    fn deliverables(&mut self, manifest: &Manifest) {
        let Some(list) = &manifest.deliverables else {
            return;
        };
        if list.is_empty() {
            self.problem("deliverables", "lists nothing; remove it for the default 24-bit WAV, or name at least one");
        }
        let mut seen = BTreeSet::new();
        for (index, d) in list.iter().enumerate() {
            let path = format!("deliverables[{index}]");
            if !is_valid_id(&d.name) {
                self.problem(
                    format!("{path}.name"),
                    format!("`{}` must match ^[a-z0-9][a-z0-9-]{{0,62}}$ (it names a folder)", d.name),
                );
            } else if !seen.insert(d.name.as_str()) {
                self.problem(
                    format!("{path}.name"),
                    format!("`{}` is used by an earlier deliverable; names must be unique", d.name),
                );
            }
            if let Some(rate_hz) = d.sample_rate {
                self.sample_rate(&format!("{path}.sample_rate"), rate_hz);
            }
            match (d.format, d.bit_depth) {
                (_, 16 | 24) | (AudioFormat::Wav, 32) => {}
                (AudioFormat::Flac, 32) => {
                    self.problem(format!("{path}.bit_depth"), "32-bit float is WAV only; FLAC takes 16 or 24")
                }
                (_, other) => {
                    self.problem(format!("{path}.bit_depth"), format!("{other} is not allowed: use 16, 24 or 32"))
                }
            }
            if d.format == AudioFormat::Ddp {
                if d.sample_rate.is_some_and(|rate| rate != crate::disc::RATE_HZ)
                    || d.sample_rate.is_none() && manifest.album.sample_rate != crate::disc::RATE_HZ
                {
                    self.problem(format!("{path}.sample_rate"), "a CD (`ddp`) is 44100 Hz: write `sample_rate: 44100`");
                }
                if d.bit_depth != 16 {
                    self.problem(format!("{path}.bit_depth"), "a CD (`ddp`) is 16-bit: write `bit_depth: 16`");
                }
            }
            if d.format == AudioFormat::Ddp && d.streaming == Some(true) {
                self.problem(format!("{path}.streaming"), "a CD (`ddp`) goes to the pressing plant, not the stores");
            }
            if d.bit_depth == 32 && matches!(d.dither, Some(Dither::Tpdf | Dither::Shaped)) {
                self.problem(format!("{path}.dither"), "32-bit float needs no dither; use `none` or leave it out");
            }
        }
    }

    /// Every file an album writes has its own path: a track id such as
    /// `01-x` must not name another track's deliverable (`master/01-x.wav`
    /// is track `x`'s first in the default `master` deliverable).
    fn output_paths(&mut self, manifest: &Manifest) {
        let deliverables = manifest.effective_deliverables();
        let mut owners: HashMap<String, String> = HashMap::new();
        let mut ids = BTreeSet::new();
        for (index, track) in manifest.tracks.iter().enumerate() {
            // A repeated id is a problem of its own, said once.
            if !is_valid_id(&track.id) || !ids.insert(track.id.as_str()) {
                continue;
            }
            let mut paths = Vec::new();
            if track.mix_file.is_none() {
                paths.push((manifest.mix_path(index), "mix".to_owned()));
            }
            paths.push((manifest.master_path(index), "master".to_owned()));
            for d in &deliverables {
                paths.push((manifest.deliverable_path(index, d), format!("`{}` deliverable", d.name)));
            }
            for (path, what) in paths {
                let owner = format!("tracks[{index}]'s (`{}`) {what}", track.id);
                match owners.get(&path) {
                    Some(first) => self.problem(
                        format!("tracks[{index}].id"),
                        format!("{owner} would be written to {path}, which is already {first}: rename a track id"),
                    ),
                    None => {
                        owners.insert(path, owner);
                    }
                }
            }
        }
    }

    fn tracks(&mut self, manifest: &Manifest, source: Option<&StorageRoot>, inputs: &mut Vec<InputFile>) {
        if manifest.tracks.is_empty() {
            self.problem("tracks", "an album needs at least one track");
        }
        let mut ids: HashMap<&str, usize> = HashMap::new();
        let mut isrcs: HashMap<&str, usize> = HashMap::new();
        for (index, track) in manifest.tracks.iter().enumerate() {
            let path = format!("tracks[{index}]");
            if !is_valid_id(&track.id) {
                self.problem(
                    format!("{path}.id"),
                    format!("`{}` must match ^[a-z0-9][a-z0-9-]{{0,62}}$ (it names output files)", track.id),
                );
            } else if let Some(first) = ids.insert(&track.id, index) {
                ids.insert(&track.id, first);
                self.problem(
                    format!("{path}.id"),
                    format!("`{}` is already the id of tracks[{first}]; ids must be unique", track.id),
                );
            }
            self.non_empty(&format!("{path}.title"), &track.title);
            if let Some(isrc) = &track.isrc {
                if let Some(message) = isrc_problem(isrc) {
                    self.problem(format!("{path}.isrc"), message);
                } else if let Some(first) = isrcs.insert(isrc, index) {
                    isrcs.insert(isrc, first);
                    self.problem(
                        format!("{path}.isrc"),
                        format!("`{isrc}` is already the ISRC of tracks[{first}]; every recording has its own"),
                    );
                }
            }
            self.range(&format!("{path}.loudness_offset_lu"), track.loudness_offset_lu, -12.0, 3.0, " LU");
            if let Some(gap_s) = track.gap_s {
                self.range(&format!("{path}.gap_s"), gap_s, 0.0, 10.0, " s");
            }
            self.range(&format!("{path}.fade_in_s"), track.fade_in_s, 0.0, 600.0, " s");
            self.range(&format!("{path}.fade_out_s"), track.fade_out_s, 0.0, 600.0, " s");
            self.range(&format!("{path}.trim_start_s"), track.trim_start_s, 0.0, 3600.0, " s");
            if let Some(chain) = &track.master {
                self.master_chain(&format!("{path}.master"), chain);
            }
            self.track_sources(&path, track, index, source, inputs);
        }
    }

    fn track_sources(
        &mut self,
        path: &str,
        track: &Track,
        index: usize,
        source: Option<&StorageRoot>,
        inputs: &mut Vec<InputFile>,
    ) {
        let mut add_input = |check: &mut Checker, field: String, file: &str, role: InputRole| {
            let Some(source) = source else { return };
            match source.object(file) {
                Ok(object) => inputs.push(InputFile { field, object, role }),
                Err(reason) => check.problem(field, reason),
            }
        };
        if let Some(mix_file) = &track.mix_file {
            if track.stems.is_some() {
                self.problem(
                    format!("{path}.stems"),
                    "a track with `mix_file` is already mixed: remove `stems` (or `mix_file`)",
                );
            }
            if track.returns.is_some() {
                self.problem(
                    format!("{path}.returns"),
                    "a track with `mix_file` is already mixed: remove `returns` (or `mix_file`)",
                );
            }
            add_input(self, format!("{path}.mix_file"), mix_file, InputRole::MixFile { track: index });
            return;
        }
        let empty_returns = BTreeMap::new();
        let returns = track.returns.as_ref().unwrap_or(&empty_returns);
        for (name, ret) in returns {
            self.track_return(&format!("{path}.returns.{name}"), name, ret);
        }
        let stems = match &track.stems {
            Some(stems) if !stems.is_empty() => stems,
            _ => {
                self.problem(format!("{path}.stems"), "a track needs at least one stem, or a `mix_file`");
                return;
            }
        };
        let mut names = BTreeSet::new();
        for (stem_index, stem) in stems.iter().enumerate() {
            let stem_path = format!("{path}.stems[{stem_index}]");
            if stem.name.trim().is_empty() {
                self.problem(format!("{stem_path}.name"), "must not be empty");
            } else if !names.insert(stem.name.as_str()) {
                self.problem(
                    format!("{stem_path}.name"),
                    format!("`{}` is already a stem of this track; names must be unique within a track", stem.name),
                );
            }
            self.stem(&stem_path, stem, returns, &track.id);
            add_input(
                self,
                format!("{stem_path}.file"),
                &stem.file,
                InputRole::Stem { track: index, stem: stem_index },
            );
        }
    }

    fn track_return(&mut self, path: &str, name: &str, ret: &Return) {
        if name.trim().is_empty() {
            self.problem(path, "a return needs a name");
        }
        match (&ret.reverb, &ret.delay) {
            (Some(r), None) => {
                self.range(&format!("{path}.reverb.decay_s"), r.decay_s, 0.1, 20.0, " s");
                self.range(&format!("{path}.reverb.predelay_ms"), r.predelay_ms, 0.0, 500.0, " ms");
                self.range(&format!("{path}.reverb.damping"), r.damping, 0.0, 1.0, "");
                self.range(&format!("{path}.reverb.size"), r.size, 0.0, 1.0, "");
                self.range(&format!("{path}.reverb.width"), r.width, 0.0, 1.0, "");
            }
            (None, Some(d)) => {
                self.range(&format!("{path}.delay.time_ms"), d.time_ms, 1.0, 5000.0, " ms");
                self.range(&format!("{path}.delay.feedback"), d.feedback, 0.0, 0.95, "");
                self.range(
                    &format!("{path}.delay.high_cut_hz"),
                    d.high_cut_hz,
                    10.0,
                    self.nyquist_limit_hz,
                    " Hz (up to 0.45 × the working sample rate)",
                );
            }
            (Some(_), Some(_)) => self.problem(path, "a return has exactly one of `reverb` or `delay`, not both"),
            (None, None) => self.problem(path, "a return needs one of `reverb` or `delay`"),
        }
        self.filters(&format!("{path}.eq"), &ret.eq);
        self.range(&format!("{path}.gain_db"), ret.gain_db, -60.0, 24.0, " dB");
    }

    fn stem(&mut self, path: &str, stem: &Stem, returns: &BTreeMap<String, Return>, track_id: &str) {
        self.range(&format!("{path}.gain_db"), stem.gain_db, -60.0, 24.0, " dB");
        self.range(&format!("{path}.pan"), stem.pan, -1.0, 1.0, "");
        self.range(&format!("{path}.offset_s"), stem.offset_s, 0.0, 3600.0, " s");
        self.filters(&format!("{path}.eq"), &stem.eq);
        if let Some(compressor) = &stem.compressor {
            self.compressor(&format!("{path}.compressor"), compressor);
        }
        for (name, level_db) in &stem.sends {
            let send_path = format!("{path}.sends.{name}");
            if !returns.contains_key(name) {
                let known: Vec<&str> = returns.keys().map(String::as_str).collect();
                let known =
                    if known.is_empty() { "it has none".to_owned() } else { format!("it has: {}", known.join(", ")) };
                self.problem(
                    &send_path,
                    format!("sends to return `{name}`, but track `{track_id}` has no such return ({known})"),
                );
            }
            self.range(&send_path, *level_db, -60.0, 12.0, " dB");
        }
        if let Some(points) = &stem.automation.gain_db {
            self.automation(&format!("{path}.automation.gain_db"), points, -60.0, 24.0, " dB");
        }
        if let Some(points) = &stem.automation.pan {
            self.automation(&format!("{path}.automation.pan"), points, -1.0, 1.0, "");
        }
    }

    fn automation(&mut self, path: &str, points: &[[f64; 2]], low: f64, high: f64, unit: &str) {
        if points.is_empty() {
            self.problem(path, "an automation lane needs at least one [time_s, value] point");
        }
        let mut previous_time_s = 0.0_f64;
        for (index, [time_s, value]) in points.iter().enumerate() {
            let point = format!("{path}[{index}]");
            if !(0.0..=36_000.0).contains(time_s) {
                self.problem(&point, format!("time {time_s} s is out of range (0 to 36000 s)"));
            } else if *time_s < previous_time_s {
                self.problem(&point, format!("time {time_s} s comes before the previous point's {previous_time_s} s; points must be in time order"));
            } else {
                previous_time_s = *time_s;
            }
            if !(low..=high).contains(value) {
                self.problem(
                    &point,
                    format!("value {value} is out of range {} ({low} to {high}{unit})", span(low, high)),
                );
            }
        }
    }
}

fn span(low: f64, high: f64) -> String {
    let signed = |v: f64| {
        if v > 0.0 && low < 0.0 { format!("+{v}") } else { format!("{v}") }
    };
    format!("{}..{}", signed(low), signed(high))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(is_valid_id("01-aurora"));
        assert!(is_valid_id("a"));
        assert!(!is_valid_id("-a"));
        assert!(!is_valid_id("Aurora"));
        assert!(!is_valid_id("a_b"));
        assert!(!is_valid_id(""));
        assert!(is_valid_id(&"a".repeat(63)));
        assert!(!is_valid_id(&"a".repeat(64)));
    }

    #[test]
    fn isrc() {
        assert_eq!(isrc_problem("GBABC2600001"), None);
        assert!(isrc_problem("GB-ABC-26-00001").unwrap().contains("without dashes"));
        assert!(isrc_problem("GBABC260000").is_some());
        assert!(isrc_problem("gbabc2600001").is_some());
    }

    #[test]
    fn upc_check_digit() {
        assert_eq!(upc_problem("012345678905"), None);
        assert_eq!(upc_problem("4006381333931"), None); // a well-known EAN-13
        assert!(upc_problem("012345678904").unwrap().contains("check digit 4"));
        assert!(upc_problem("12345").is_some());
    }
}
