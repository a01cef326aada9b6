//! The album's tasks as both executors run them — `lacquer master` on one
//! machine and the workers behind a coordinator: what each task reads and
//! writes, its cache key, how it runs, and its result. The executors only
//! move files (a local folder, or object storage through a scratch folder)
//! and keep the cache records; everything that decides a rendered byte is
//! here, so both give the same bytes.
//!
//! A task's key is a BLAKE3 hash of [`PIPELINE_VERSION`], the task's kind,
//! its settings and the content hashes of its inputs. A finished task is
//! recorded as a [`TaskRecord`] under [`record_key`] in the album's output;
//! a later run with the same key (another job, another worker) reuses it.
//!
//! The graph: `mix` per track (stems → `mix/<id>.wav`, or a given
//! `mix_file` measured in place) → `master` per track (its drive needs
//! every mix's loudness in `album` loudness mode) → the album plan (pure,
//! from every master's analysis) → `finalize` per track (every
//! deliverable) → the `report`.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::PIPELINE_VERSION;
use crate::album::{AlbumPlan, Correction, PlannedTrack, Reference, plan_album};
use crate::analysis::{Analysis, BAND_CENTRES_HZ};
use crate::encode::Tags;
use crate::manifest::{AudioFormat, LoudnessMode, Manifest, MasterChain, ToneReference};
use crate::report::{AlbumFigures, AlbumReport, OutputFile, TrackReport, distance_to};
use crate::stages::StageError;
use crate::stages::finalize::{CodecCheck, DeliverableTarget, FinalizeReport, FinalizeSettings, finalize_track};
use crate::stages::master::{Drive, MasterJob, MasterReport, master_track};
use crate::stages::mix::MixReport;
pub use crate::stages::mix::MixSpec;

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Stage {
    /// Stems → a stereo mix; or a given mix file, measured.
    Mix,
    Master,
    /// The album plan, once, at the barrier: every track's correction from
    /// every master's analysis.
    Plan,
    /// The album pass and every deliverable of one track.
    Finalize,
    Report,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Mix => "mix",
            Stage::Master => "master",
            Stage::Plan => "plan",
            Stage::Finalize => "finalize",
            Stage::Report => "report",
        }
    }
}

/// A task of an album: a stage, and the track it is for (`None` for the
/// report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskId {
    pub stage: Stage,
    pub track: Option<usize>,
}

/// The task graph of an album, defined once: the coordinator's job
/// machine and `lacquer master` both schedule from it, and a task's inputs
/// are the results of the stages it [`reads`](TaskGraph::reads).
///
/// Per track, `mix` (stems → mix, or a given mix file measured), then
/// `master`: after its own mix in `track` loudness mode, after every mix
/// in `album` mode (one drive for the whole album). When every master is
/// done, the album barrier: the `plan`, once (every track's correction
/// from every master's analysis), then `finalize` per track with its
/// correction. Then the `report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskGraph {
    pub tracks: usize,
    /// Masters wait for every mix (`album` loudness mode), not just their own.
    pub masters_need_every_mix: bool,
}

impl TaskGraph {
    pub fn new(manifest: &Manifest) -> Self {
        Self {
            tracks: manifest.tracks.len(),
            masters_need_every_mix: AlbumTasks::new(manifest).masters_need_every_mix(),
        }
    }

    /// Every task, in an order that respects the graph (stage by stage,
    /// lowest track first).
    pub fn tasks(&self) -> Vec<TaskId> {
        let per_track = |stage| (0..self.tracks).map(move |track| TaskId { stage, track: Some(track) });
        per_track(Stage::Mix)
            .chain(per_track(Stage::Master))
            .chain([TaskId { stage: Stage::Plan, track: None }])
            .chain(per_track(Stage::Finalize))
            .chain([TaskId { stage: Stage::Report, track: None }])
            .collect()
    }

    /// The tasks `task` waits for.
    pub fn needs(&self, task: TaskId) -> Vec<TaskId> {
        let every = |stage| (0..self.tracks).map(move |track| TaskId { stage, track: Some(track) }).collect();
        match task.stage {
            Stage::Mix => Vec::new(),
            Stage::Master if self.masters_need_every_mix => every(Stage::Mix),
            Stage::Master => vec![TaskId { stage: Stage::Mix, track: task.track }],
            Stage::Plan => every(Stage::Master),
            Stage::Finalize => vec![TaskId { stage: Stage::Plan, track: None }],
            Stage::Report => every(Stage::Finalize),
        }
    }

    /// The stages whose results a task of `stage` reads: its inputs, per
    /// stage a list with track `i`'s result at index `i`.
    pub fn reads(stage: Stage) -> &'static [Stage] {
        match stage {
            Stage::Mix => &[],
            Stage::Master => &[Stage::Mix],
            Stage::Plan => &[Stage::Master],
            Stage::Finalize => &[Stage::Master, Stage::Plan],
            Stage::Report => &[Stage::Mix, Stage::Master, Stage::Plan, Stage::Finalize],
        }
    }
}

/// Where finished tasks are recorded, under the album's output.
pub const RECORDS_DIR: &str = ".lacquer/tasks";

/// The record of task `key`, relative to the album's output.
pub fn record_key(key: &str) -> String {
    format!("{RECORDS_DIR}/{key}.json")
}

/// A finished task: its key, the files it published (relative to the
/// output) and its result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord<T> {
    pub key: String,
    pub outputs: Vec<OutputFile>,
    pub result: T,
}

/// A track's mix: rendered from stems, or the manifest's `mix_file`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixResult {
    /// The mix stage's report (`None` for a given mix file).
    pub report: Option<MixReport>,
    pub file: MixFile,
    pub integrated_lufs: Option<f64>,
    pub frames: u64,
    /// Frames the master cuts from the start (a mix file's `trim_start_s`).
    pub trim_frames: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MixFile {
    /// Published under the output.
    Rendered(OutputFile),
    /// The manifest's `mix_file`: a key under the source, and its content hash.
    Given { key: String, blake3: String },
}

impl MixResult {
    pub fn blake3(&self) -> &str {
        match &self.file {
            MixFile::Rendered(file) => &file.blake3,
            MixFile::Given { blake3, .. } => blake3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MasterResult {
    pub report: MasterReport,
    pub file: OutputFile,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalizeResult {
    pub report: FinalizeReport,
    pub files: Vec<OutputFile>,
}

/// Everything the master stage reads for one track, and where it writes.
/// A task's key is its spec, hashed ([`task_key`]), and the stage runs
/// from the spec: no setting reaches the stage without reaching its key.
#[derive(Debug, Clone, Serialize)]
pub struct MasterSpec {
    pub output_key: String,
    /// As [`MasterChain::for_track`] gives it.
    pub chain: MasterChain,
    pub ceiling_dbtp: f64,
    pub rate_hz: u32,
    pub trim_frames: u64,
    pub mix_blake3: String,
    pub drive: Drive,
    /// Written into `master/<id>.wav`.
    pub tags: Tags,
}

/// Everything the finalize stage reads for one track, and where it writes
/// (see [`MasterSpec`]).
#[derive(Debug, Clone, Serialize)]
pub struct FinalizeSpec<'a> {
    pub master_blake3: &'a str,
    pub correction: &'a Correction,
    pub settings: FinalizeSettings<'a>,
    pub deliverables: Vec<DeliverableSpec>,
    /// Written into every deliverable.
    pub tags: Tags,
}

/// One deliverable of one track, resolved.
#[derive(Debug, Clone, Serialize)]
pub struct DeliverableSpec {
    pub output_key: String,
    pub name: String,
    pub format: crate::manifest::AudioFormat,
    pub bit_depth: u32,
    pub rate_hz: u32,
    pub dither: crate::manifest::Dither,
    /// Round-tripped through `matching.codec_check` (a streaming
    /// deliverable, with the check on).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub codec_checked: bool,
}

/// The tasks of one album.
#[derive(Debug, Clone, Copy)]
pub struct AlbumTasks<'a> {
    pub manifest: &'a Manifest,
}

impl<'a> AlbumTasks<'a> {
    pub fn new(manifest: &'a Manifest) -> Self {
        Self { manifest }
    }

    /// Where track `track`'s rendered mix goes, under the output.
    pub fn mix_key(&self, track: usize) -> String {
        self.manifest.mix_path(track)
    }

    /// Where track `track`'s master goes, under the output.
    pub fn master_key(&self, track: usize) -> String {
        self.manifest.master_path(track)
    }

    /// Where track `track`'s deliverables go, under the output, in the
    /// manifest's order.
    pub fn deliverable_keys(&self, track: usize) -> Vec<String> {
        self.manifest.effective_deliverables().iter().map(|d| self.manifest.deliverable_path(track, d)).collect()
    }

    /// The deliverables that are a disc (`ddp`): assembled by the report
    /// task from every track's file of them.
    pub fn discs(&self) -> Vec<crate::manifest::Deliverable> {
        self.manifest.effective_deliverables().into_iter().filter(|d| d.format == AudioFormat::Ddp).collect()
    }

    /// Writes the disc of `deliverable` into `dir` from each track's file
    /// of it (`sources`, in album order); returns its layout and the files
    /// written, as keys under the output.
    pub fn disc(
        &self,
        deliverable: &crate::manifest::Deliverable,
        sources: &[PathBuf],
        dir: &Path,
    ) -> Result<(crate::disc::Layout, Vec<(String, PathBuf)>), StageError> {
        let album = &self.manifest.album;
        let info = crate::disc::DiscInfo {
            title: album.title.clone(),
            performer: album.artist.clone(),
            upc: album.upc.clone(),
        };
        let tracks: Vec<crate::disc::DiscTrack> = self
            .manifest
            .tracks
            .iter()
            .map(|t| crate::disc::DiscTrack {
                title: t.title.clone(),
                isrc: t.isrc.clone(),
                gap_s: t.gap_s.unwrap_or(2.0),
            })
            .collect();
        let (layout, names) = crate::disc::write_disc(dir, &info, &tracks, sources)
            .map_err(|e| StageError::Invalid(format!("deliverable `{}` (a CD): {e}", deliverable.name)))?;
        let files = names.into_iter().map(|name| (format!("{}/{name}", deliverable.name), dir.join(name))).collect();
        Ok((layout, files))
    }

    /// Key of measuring a given mix file with content hash `blake3`.
    pub fn measure_mix_task(&self, track: usize, blake3: &str) -> String {
        let trim_frames = self.trim_frames(track);
        task_key("measure-mix", &(blake3, trim_frames))
    }

    fn trim_frames(&self, track: usize) -> u64 {
        let rate_hz = f64::from(self.manifest.album.sample_rate);
        (self.manifest.tracks[track].trim_start_s * rate_hz).round() as u64
    }

    /// Measures a given mix file (at `path`, known under the source as
    /// `source_key` with content hash `blake3`).
    pub fn measure_mix(
        &self,
        track: usize,
        path: &Path,
        source_key: &str,
        blake3: &str,
    ) -> Result<MixResult, StageError> {
        let analysis = crate::stages::finalize::measure_file(path)?;
        Ok(MixResult {
            report: None,
            file: MixFile::Given { key: source_key.to_owned(), blake3: blake3.to_owned() },
            integrated_lufs: analysis.integrated_lufs,
            frames: analysis.frames,
            trim_frames: self.trim_frames(track),
        })
    }

    /// Everything mixing track `track` from stems with these content
    /// hashes (`stem_hashes[i]` is `stems[i]`'s) reads, and where it writes.
    pub fn mix_spec(&self, track: usize, stem_hashes: &[String]) -> MixSpec {
        let manifest = self.manifest;
        let t = &manifest.tracks[track];
        MixSpec {
            output_key: self.mix_key(track),
            rate_hz: manifest.album.sample_rate,
            mix: manifest.mix.clone(),
            track_id: t.id.clone(),
            stems: t.stems.clone().unwrap_or_default(),
            returns: t.returns.clone().unwrap_or_default(),
            trim_start_s: t.trim_start_s,
            stem_hashes: stem_hashes.to_vec(),
            tags: Tags {
                title: t.title.clone(),
                artist: manifest.album.artist.clone(),
                album: manifest.album.title.clone(),
                ..Tags::default()
            },
        }
    }

    /// Key of mixing track `track` from stems with these content hashes.
    pub fn mix_task(&self, track: usize, stem_hashes: &[String]) -> String {
        task_key("mix", &self.mix_spec(track, stem_hashes))
    }

    /// The result of a rendered mix once published as `file`.
    pub fn mixed(report: MixReport, file: OutputFile) -> MixResult {
        MixResult {
            integrated_lufs: report.integrated_lufs,
            frames: report.frames,
            report: Some(report),
            file: MixFile::Rendered(file),
            trim_frames: 0,
        }
    }

    /// The gain into each track's mastering chain: to its loudness target
    /// (`track` mode), or one gain bringing the album there (`album` mode:
    /// the energy mean of the mixes' loudness, weighted by length).
    fn drives(&self, mixes: &[MixResult]) -> Vec<f64> {
        let manifest = self.manifest;
        let target = manifest.matching.loudness.target_lufs;
        match manifest.matching.loudness.mode {
            LoudnessMode::Track => mixes
                .iter()
                .zip(&manifest.tracks)
                .map(|(mix, track)| mix.integrated_lufs.map_or(0.0, |lufs| target + track.loudness_offset_lu - lufs))
                .collect(),
            LoudnessMode::Album => {
                let weights: Vec<(f64, f64)> = mixes
                    .iter()
                    .filter_map(|m| m.integrated_lufs.map(|l| (10f64.powf(l / 10.0), m.frames as f64)))
                    .collect();
                let total: f64 = weights.iter().map(|w| w.1).sum();
                let album = if total > 0.0 {
                    10.0 * (weights.iter().map(|(e, w)| e * w).sum::<f64>() / total).log10()
                } else {
                    target
                };
                vec![target - album; mixes.len()]
            }
        }
    }

    /// The gain into track `track`'s chain, from the mixes known so far
    /// (`mixes[i]` is track `i`'s): its own in `track` mode, every one in
    /// `album` mode.
    pub fn drive(&self, track: usize, mixes: &[Option<MixResult>]) -> Result<f64, StageError> {
        let missing = |i: usize| StageError::Invalid(format!("the mix of {} is not done", self.manifest.tracks[i].id));
        if self.masters_need_every_mix() {
            let all: Vec<MixResult> = (0..self.manifest.tracks.len())
                .map(|i| mixes.get(i).cloned().flatten().ok_or_else(|| missing(i)))
                .collect::<Result<_, _>>()?;
            Ok(self.drives(&all)[track])
        } else {
            let mix = mixes.get(track).and_then(Option::as_ref).ok_or_else(|| missing(track))?;
            let target = self.manifest.matching.loudness.target_lufs + self.manifest.tracks[track].loudness_offset_lu;
            Ok(mix.integrated_lufs.map_or(0.0, |lufs| target - lufs))
        }
    }

    /// Whether a master's drive depends on every mix (`album` loudness
    /// mode) rather than its own track's.
    pub fn masters_need_every_mix(&self) -> bool {
        self.manifest.matching.loudness.mode == LoudnessMode::Album
    }

    /// Everything mastering track `track` from `mix` with `input_gain_db`
    /// reads, and where it writes.
    pub fn master_spec(&self, track: usize, mix: &MixResult, input_gain_db: f64) -> MasterSpec {
        let manifest = self.manifest;
        MasterSpec {
            output_key: self.master_key(track),
            chain: MasterChain::for_track(&manifest.master, manifest.tracks[track].master.as_ref()),
            ceiling_dbtp: manifest.matching.true_peak_dbtp,
            rate_hz: manifest.album.sample_rate,
            trim_frames: mix.trim_frames,
            mix_blake3: mix.blake3().to_owned(),
            drive: Drive {
                input_gain_db,
                max_limiter_gain_reduction_db: manifest.matching.max_limiter_gain_reduction_db,
            },
            tags: self.tags(track),
        }
    }

    /// Key of mastering track `track` from `mix` with `input_gain_db`.
    pub fn master_task(&self, track: usize, mix: &MixResult, input_gain_db: f64) -> String {
        task_key("master", &self.master_spec(track, mix, input_gain_db))
    }

    /// Masters track `track` from the mix at `mix_path` into `output`.
    pub fn master(
        &self,
        track: usize,
        mix: &MixResult,
        input_gain_db: f64,
        mix_path: &Path,
        output: &Path,
    ) -> Result<MasterReport, StageError> {
        let spec = self.master_spec(track, mix, input_gain_db);
        let job = MasterJob {
            chain: &spec.chain,
            ceiling_dbtp: spec.ceiling_dbtp,
            rate_hz: spec.rate_hz,
            trim_frames: spec.trim_frames,
            drive: spec.drive,
        };
        master_track(&job, mix_path, output, &spec.tags)
    }

    fn tags(&self, track: usize) -> Tags {
        let manifest = self.manifest;
        let t = &manifest.tracks[track];
        Tags {
            title: t.title.clone(),
            artist: manifest.album.artist.clone(),
            album: manifest.album.title.clone(),
            isrc: t.isrc.clone(),
            label: manifest.album.label.clone(),
            track_number: Some(track as u32 + 1),
            track_total: Some(manifest.tracks.len() as u32),
        }
    }

    /// Whether the plan needs the tone reference file measured (and so
    /// `plan` its analysis).
    pub fn needs_reference_file(&self) -> bool {
        matches!(self.manifest.tone_reference(), ToneReference::File(_))
    }

    /// Key of measuring the tone reference file with content hash `blake3`.
    pub fn measure_reference_task(blake3: &str) -> String {
        task_key("measure-reference", &(blake3,))
    }

    /// Key of the album plan over these masters (and the reference file's
    /// analysis): what the plan reads is the masters' analyses, the
    /// tracks' loudness offsets and `matching`.
    pub fn plan_task(&self, masters: &[MasterResult], reference_file: Option<&Analysis>) -> String {
        let analyses: Vec<&Analysis> = masters.iter().map(|m| &m.report.analysis).collect();
        let tracks: Vec<(&str, f64)> =
            self.manifest.tracks.iter().map(|t| (t.id.as_str(), t.loudness_offset_lu)).collect();
        task_key("plan", &(analyses, tracks, &self.manifest.matching, reference_file))
    }

    /// The album plan: every track's correction, from every master's
    /// analysis (and the reference file's, when the tone reference is one).
    pub fn plan(&self, masters: &[MasterResult], reference_file: Option<&Analysis>) -> Result<AlbumPlan, StageError> {
        let manifest = self.manifest;
        let reference = match manifest.tone_reference() {
            ToneReference::Album => Reference::Album,
            ToneReference::Track(id) => Reference::Track(manifest.tracks.iter().position(|t| t.id == id).unwrap_or(0)),
            ToneReference::File(_) => Reference::File(
                reference_file.ok_or_else(|| StageError::Invalid("the tone reference file was not measured".into()))?,
            ),
        };
        if masters.len() != manifest.tracks.len() {
            return Err(StageError::Invalid(format!(
                "the album plan needs all {} masters, {} given",
                manifest.tracks.len(),
                masters.len()
            )));
        }
        let planned: Vec<PlannedTrack> = masters
            .iter()
            .zip(&manifest.tracks)
            .map(|(m, t)| PlannedTrack { analysis: &m.report.analysis, loudness_offset_lu: t.loudness_offset_lu })
            .collect();
        Ok(plan_album(&planned, &manifest.matching, reference, manifest.album.sample_rate))
    }

    /// Everything finalizing track `track` from `master` with `correction`
    /// reads, and where it writes.
    pub fn finalize_spec<'s>(
        &'s self,
        track: usize,
        master: &'s MasterResult,
        correction: &'s Correction,
    ) -> FinalizeSpec<'s> {
        let manifest = self.manifest;
        let t = &manifest.tracks[track];
        let chain = MasterChain::for_track(&manifest.master, t.master.as_ref());
        let deliverables = manifest
            .effective_deliverables()
            .iter()
            .map(|d| DeliverableSpec {
                output_key: manifest.deliverable_path(track, d),
                name: d.name.clone(),
                format: d.format,
                bit_depth: d.bit_depth,
                rate_hz: d.sample_rate(&manifest.album),
                dither: d.dither(),
                codec_checked: d.streaming() && !manifest.matching.codec_check.is_empty(),
            })
            .collect();
        let codec_check = (!manifest.matching.codec_check.is_empty()).then(|| CodecCheck {
            codecs: manifest.matching.codec_check.clone(),
            ceiling_dbtp: manifest.matching.codec_ceiling_dbtp(),
        });
        FinalizeSpec {
            master_blake3: &master.file.blake3,
            correction,
            settings: FinalizeSettings {
                track_id: &t.id,
                rate_hz: manifest.album.sample_rate,
                ceiling_dbtp: manifest.matching.true_peak_dbtp,
                limiter: chain.limiter.clone().unwrap_or_default(),
                fade_in_s: t.fade_in_s,
                fade_out_s: t.fade_out_s,
                max_limiter_gain_reduction_db: manifest.matching.max_limiter_gain_reduction_db,
                codec_check,
            },
            deliverables,
            tags: self.tags(track),
        }
    }

    /// Key of finalizing track `track` from `master` with `correction`.
    pub fn finalize_task(&self, track: usize, master: &MasterResult, correction: &Correction) -> String {
        task_key("finalize", &self.finalize_spec(track, master, correction))
    }

    /// Finalizes track `track` from the master at `master_path`, writing
    /// deliverable `i` to `outputs[i]` (in [`Self::deliverable_keys`] order).
    pub fn finalize(
        &self,
        track: usize,
        master: &MasterResult,
        correction: &Correction,
        master_path: &Path,
        outputs: &[PathBuf],
    ) -> Result<FinalizeReport, StageError> {
        let spec = self.finalize_spec(track, master, correction);
        if outputs.len() != spec.deliverables.len() {
            return Err(StageError::Invalid(format!(
                "{} deliverables, {} output paths",
                spec.deliverables.len(),
                outputs.len()
            )));
        }
        let targets: Vec<DeliverableTarget> = spec
            .deliverables
            .iter()
            .zip(outputs)
            .map(|(d, path)| DeliverableTarget {
                name: d.name.clone(),
                format: d.format,
                bit_depth: d.bit_depth,
                rate_hz: d.rate_hz,
                dither: d.dither,
                path: path.clone(),
                codec_checked: d.codec_checked,
            })
            .collect();
        finalize_track(master_path, correction, &spec.settings, &targets, &spec.tags)
    }

    /// Key of the report over these results.
    pub fn report_task(
        &self,
        mixes: &[MixResult],
        masters: &[MasterResult],
        plan: &AlbumPlan,
        finals: &[FinalizeResult],
    ) -> String {
        // The report also says the album's and tracks' names and settings.
        task_key("report", &(mixes, masters, plan, finals, self.manifest))
    }

    /// The album report, from every task's result.
    pub fn report(
        &self,
        mixes: &[MixResult],
        masters: &[MasterResult],
        plan: &AlbumPlan,
        finals: &[FinalizeResult],
    ) -> Result<AlbumReport, StageError> {
        let manifest = self.manifest;
        let tracks = manifest.tracks.len();
        if mixes.len() != tracks || masters.len() != tracks || finals.len() != tracks {
            return Err(StageError::Invalid(format!(
                "the report needs every track's results: {tracks} tracks, {} mixes, {} masters, {} finalized",
                mixes.len(),
                masters.len(),
                finals.len()
            )));
        }
        let track_reports: Vec<TrackReport> = manifest
            .tracks
            .iter()
            .enumerate()
            .map(|(i, track)| {
                let finalize = &finals[i].report;
                let master = &masters[i].report;
                let mix = mixes[i].report.clone();
                let delivered = finalize.delivered.first().map(|d| &d.analysis).unwrap_or(&finalize.render);
                let mut warnings: Vec<String> = mix.iter().flat_map(|m| m.warnings.clone()).collect();
                warnings.extend(plan.corrections[i].warnings.iter().cloned());
                warnings.extend(finalize.warnings.iter().cloned());
                let lra_change = delivered.loudness_range_lu - master.analysis.loudness_range_lu;
                if lra_change < -1.0 {
                    warnings.push(format!(
                        "loudness range narrowed by {:.1} LU in the album pass (limiting {:.1} dB)",
                        -lra_change, finalize.limiter_gain_reduction_db
                    ));
                }
                TrackReport {
                    position: i + 1,
                    id: track.id.clone(),
                    title: track.title.clone(),
                    loudness_offset_lu: track.loudness_offset_lu,
                    mix,
                    master: master.analysis.clone(),
                    master_limiter_gain_reduction_db: master.limiter_gain_reduction_db,
                    correction: finalize.redesigned.as_deref().unwrap_or(&plan.corrections[i]).clone(),
                    finalize: finalize.clone(),
                    tonal_distance_before_db: distance_to(&plan.reference_balance_db, &master.analysis),
                    tonal_distance_after_db: distance_to(&plan.reference_balance_db, delivered),
                    warnings,
                }
            })
            .collect();
        let mut outputs: Vec<OutputFile> = mixes
            .iter()
            .filter_map(|m| match &m.file {
                MixFile::Rendered(file) => Some(file.clone()),
                MixFile::Given { .. } => None,
            })
            .collect();
        outputs.extend(masters.iter().map(|m| m.file.clone()));
        outputs.extend(finals.iter().flat_map(|f| f.files.iter().cloned()));
        Ok(AlbumReport {
            title: manifest.album.title.clone(),
            artist: manifest.album.artist.clone(),
            pipeline_version: PIPELINE_VERSION.to_owned(),
            target_lufs: manifest.matching.loudness.target_lufs,
            true_peak_ceiling_dbtp: manifest.matching.true_peak_dbtp,
            reference: manifest.matching.tone.reference.clone(),
            reference_balance_db: plan.reference_balance_db.clone(),
            band_centres_hz: BAND_CENTRES_HZ.to_vec(),
            album: AlbumFigures::from_tracks(&track_reports),
            tracks: track_reports,
            outputs,
            discs: Vec::new(),
        })
    }
}

/// A task key: BLAKE3 of the pipeline version, the task kind and its inputs.
pub fn task_key(kind: &str, inputs: &impl Serialize) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(PIPELINE_VERSION.as_bytes());
    hasher.update(kind.as_bytes());
    // Serializing plain data into a Vec cannot fail.
    hasher.update(&serde_json::to_vec(inputs).unwrap_or_default());
    hasher.finalize().to_hex()[..32].to_owned()
}

/// The BLAKE3 content hash of everything `reader` yields, streamed through
/// a buffer so memory stays flat whatever the size.
pub fn content_hash(reader: impl Read) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(reader)?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// The content hash of a local file.
pub fn hash_file(path: &Path) -> Result<String, StageError> {
    let file = std::fs::File::open(path).map_err(|e| StageError::Io(format!("cannot open {}: {e}", path.display())))?;
    content_hash(file).map_err(|e| StageError::Io(format!("cannot read {}: {e}", path.display())))
}

/// A published file as the report lists it.
pub fn output_file(key: &str, path: &Path) -> Result<OutputFile, StageError> {
    let size_bytes = std::fs::metadata(path).map_err(|e| StageError::Io(format!("{}: {e}", path.display())))?.len();
    Ok(OutputFile { path: key.to_owned(), blake3: hash_file(path)?, size_bytes })
}

/// The path of the first figure in `result` that is not a finite number
/// (NaN or an infinity), if any. JSON has no such numbers (`serde_json`
/// writes them as `null`), and no figure of a task is meaningful as one:
/// such a result is refused, never recorded.
pub fn non_finite_figure(result: &impl Serialize) -> Option<String> {
    fn walk(value: &serde_norway::Value, path: &mut String) -> bool {
        use serde_norway::Value;
        match value {
            Value::Number(n) => n.as_f64().is_some_and(|v| !v.is_finite()),
            Value::Sequence(items) => items.iter().enumerate().any(|(index, item)| {
                let length = path.len();
                path.push_str(&format!("[{index}]"));
                let found = walk(item, path);
                if !found {
                    path.truncate(length);
                }
                found
            }),
            Value::Mapping(map) => map.iter().any(|(key, item)| {
                let length = path.len();
                path.push('.');
                path.push_str(key.as_str().unwrap_or("?"));
                let found = walk(item, path);
                if !found {
                    path.truncate(length);
                }
                found
            }),
            Value::Tagged(tagged) => walk(&tagged.value, path),
            _ => false,
        }
    }
    let value = serde_norway::to_value(result).ok()?;
    let mut path = String::new();
    walk(&value, &mut path).then(|| path.trim_start_matches('.').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_figures_are_found_by_path() {
        #[derive(Serialize)]
        struct Figures {
            gain_db: f64,
            peaks: Vec<f32>,
            name: &'static str,
        }
        let fine = Figures { gain_db: -1.5, peaks: vec![0.5, 0.25], name: "nan" };
        assert_eq!(non_finite_figure(&fine), None);
        let nan = Figures { gain_db: f64::NAN, ..fine };
        assert_eq!(non_finite_figure(&nan).as_deref(), Some("gain_db"));
        let inf = Figures { gain_db: 0.0, peaks: vec![0.5, f32::NEG_INFINITY], name: "x" };
        assert_eq!(non_finite_figure(&inf).as_deref(), Some("peaks[1]"));
    }
}
