//! `lacquer master`: the whole album on this machine — validate, mix and
//! master every track, plan the album pass, finalize every deliverable and
//! write the report — on all cores, with content-keyed caching.
//!
//! Every task's key is a BLAKE3 hash of the pipeline version, the task's
//! settings and the content hashes of its inputs. A finished task records
//! its outputs (and their hashes) under `<output>/.lacquer/tasks/<key>.json`;
//! a later run with the same key reuses them instead of rendering, so
//! changing one stem re-renders only what depends on it. Outputs are
//! written to a temporary file and renamed into place: nobody ever sees a
//! partial file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use lacquer_pipelines::PIPELINE_VERSION;
use lacquer_pipelines::album::{AlbumPlan, PlannedTrack, Reference, plan_album};
use lacquer_pipelines::encode::Tags;
use lacquer_pipelines::manifest::{InputRole, LoudnessMode, MasterChain, StorageRoot, ToneReference, ValidManifest};
use lacquer_pipelines::report::{AlbumFigures, AlbumReport, OutputFile, TrackReport, distance_to};
use lacquer_pipelines::stages::AudioInput;
use lacquer_pipelines::stages::finalize::{
    DeliverableTarget, FinalizeReport, FinalizeSettings, finalize_track, measure_file,
};
use lacquer_pipelines::stages::master::{Drive, MasterJob, MasterReport, master_track};
use lacquer_pipelines::stages::mix::{MixReport, mix_track};
use rayon::prelude::*;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::stores::S3Options;
use crate::validate::{check_manifest, print_problems};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The album manifest (YAML, version 1)
    manifest: PathBuf,
    /// Where to write everything (overrides the manifest's `output`)
    #[arg(long, short)]
    output: Option<String>,
    /// How many tasks run at once (default: one per core)
    #[arg(long, short)]
    jobs: Option<usize>,
    /// Print nothing but errors
    #[arg(long)]
    quiet: bool,
    /// Print a JSON summary (and no progress bars)
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args, s3: S3Options) -> anyhow::Result<ExitCode> {
    let valid = match check_manifest(&args.manifest, args.output.as_deref(), s3).await? {
        Ok(valid) => valid,
        Err(error) => {
            print_problems(&args.manifest, &error, args.json)?;
            return Ok(ExitCode::FAILURE);
        }
    };
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let quiet = args.quiet;
    let json = args.json;
    let summary = tokio::task::spawn_blocking(move || {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(jobs)
            .build()
            .map_err(|e| anyhow!("cannot start {jobs} workers: {e}"))?;
        pool.install(|| Album::new(valid, quiet || json)?.run())
    })
    .await??;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &summary)?;
        writeln!(out)?;
    } else if !quiet {
        summary.print(&mut out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What a run did, for people and scripts.
#[derive(Debug, Serialize)]
struct Summary {
    output: String,
    report: String,
    tasks: usize,
    rendered: usize,
    cached: usize,
    seconds: f64,
    audio_seconds: f64,
    /// The process's peak resident memory, where the OS tells it (Linux).
    peak_memory_mb: Option<f64>,
    tracks: Vec<TrackSummary>,
    warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
struct TrackSummary {
    id: String,
    integrated_lufs: Option<f64>,
    target_lufs: f64,
    true_peak_dbtp: f64,
    loudness_range_lu: f64,
}

impl Summary {
    fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        if self.rendered == 0 {
            writeln!(
                out,
                "nothing to render: all {} tasks were already done for these inputs and settings",
                self.tasks
            )?;
        } else {
            writeln!(
                out,
                "rendered {} of {} tasks ({} cached) in {:.1} s: {:.1} s of audio, {:.1}x realtime{}",
                self.rendered,
                self.tasks,
                self.cached,
                self.seconds,
                self.audio_seconds,
                self.audio_seconds / self.seconds.max(1e-9),
                self.peak_memory_mb.map(|mb| format!(", peak memory {mb:.0} MB")).unwrap_or_default()
            )?;
        }
        for t in &self.tracks {
            let lufs = t.integrated_lufs.map(|l| format!("{l:.2}")).unwrap_or_else(|| "-inf".into());
            writeln!(
                out,
                "  {:<24} {lufs:>7} LUFS (target {:.1})  {:>6.2} dBTP  LRA {:.1} LU",
                t.id, t.target_lufs, t.true_peak_dbtp, t.loudness_range_lu
            )?;
        }
        for w in &self.warnings {
            writeln!(out, "warning: {w}")?;
        }
        writeln!(out, "report: {}", self.report)?;
        writeln!(out, "output: {}", self.output)
    }
}

/// A task's recorded result.
#[derive(Debug, Serialize, Deserialize)]
struct TaskRecord<T> {
    key: String,
    outputs: Vec<OutputFile>,
    result: T,
}

struct Album {
    valid: ValidManifest,
    source: PathBuf,
    out: PathBuf,
    progress: MultiProgress,
    rendered: AtomicUsize,
    cached: AtomicUsize,
}

/// A track's mix, rendered or given.
struct Mixed {
    report: Option<MixReport>,
    path: PathBuf,
    hash: String,
    integrated_lufs: Option<f64>,
    trim_frames: u64,
}

/// Everything the front half (mix, master) produced for one track.
struct FrontResult {
    mix: Option<MixReport>,
    master: MasterReport,
    master_hash: String,
}

impl Album {
    fn new(valid: ValidManifest, quiet: bool) -> anyhow::Result<Self> {
        let StorageRoot::Local { dir: source } = valid.source.clone() else {
            bail!(
                "`lacquer master` reads stems from a local folder; `source` is {} (submit the album to a coordinator for S3)",
                valid.source
            );
        };
        let StorageRoot::Local { dir: out } = valid.output.clone() else {
            bail!("`lacquer master` writes to a local folder; `output` is {} (use --output DIR)", valid.output);
        };
        std::fs::create_dir_all(out.join(".lacquer/tasks"))
            .with_context(|| format!("cannot create {}", out.display()))?;
        let progress = MultiProgress::with_draw_target(if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        Ok(Self { valid, source, out, progress, rendered: AtomicUsize::new(0), cached: AtomicUsize::new(0) })
    }

    fn bar(&self, stage: &str, length: usize) -> ProgressBar {
        let bar = self.progress.add(ProgressBar::new(length as u64));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} {msg}").unwrap().progress_chars("=> "),
        );
        bar.set_prefix(stage.to_owned());
        bar
    }

    fn run(self) -> anyhow::Result<Summary> {
        let started = Instant::now();
        let manifest = &self.valid.manifest;
        let tracks = manifest.tracks.len();
        let deliverables = manifest.effective_deliverables();
        for dir in ["mix", "master"].iter().copied().chain(deliverables.iter().map(|d| d.name.as_str())) {
            std::fs::create_dir_all(self.out.join(dir))?;
        }
        let input_hashes: BTreeMap<String, String> = self
            .valid
            .inputs
            .par_iter()
            .map(|probed| Ok((probed.input.field.clone(), hash_file(&self.local(&probed.input.object.key))?)))
            .collect::<anyhow::Result<_>>()?;

        let mix_bar = self.bar("mix", manifest.tracks.iter().filter(|t| t.mix_file.is_none()).count());
        let mixes: Vec<Mixed> = (0..tracks)
            .into_par_iter()
            .map(|index| self.mix(index, &input_hashes, &mix_bar))
            .collect::<anyhow::Result<_>>()?;
        mix_bar.finish_with_message("done");
        let drives = self.drives(&mixes);
        let master_bar = self.bar("master", tracks);
        let front: Vec<FrontResult> = (0..tracks)
            .into_par_iter()
            .map(|index| self.master(index, &mixes[index], drives[index], &master_bar))
            .collect::<anyhow::Result<_>>()?;
        master_bar.finish_with_message("done");

        let plan = self.plan(&front)?;
        let finalize_bar = self.bar("finalize", tracks);
        let finals: Vec<(FinalizeReport, Vec<OutputFile>)> = (0..tracks)
            .into_par_iter()
            .map(|index| self.finalize(index, &front[index], &plan, &finalize_bar))
            .collect::<anyhow::Result<_>>()?;
        finalize_bar.finish_with_message("done");

        let report = self.report(&front, &plan, &finals)?;
        let rendered = self.rendered.load(Ordering::Relaxed);
        let cached = self.cached.load(Ordering::Relaxed);
        let audio_seconds =
            front.iter().map(|f| f.master.analysis.frames as f64 / f64::from(manifest.album.sample_rate)).sum();
        Ok(Summary {
            output: self.out.display().to_string(),
            report: self.out.join("report.html").display().to_string(),
            tasks: rendered + cached,
            rendered,
            cached,
            seconds: started.elapsed().as_secs_f64(),
            audio_seconds,
            peak_memory_mb: peak_memory_mb(),
            tracks: report
                .tracks
                .iter()
                .map(|t| {
                    let delivered = t.finalize.delivered.first().map(|d| &d.analysis).unwrap_or(&t.finalize.render);
                    TrackSummary {
                        id: t.id.clone(),
                        integrated_lufs: delivered.integrated_lufs,
                        target_lufs: t.correction.target_lufs,
                        true_peak_dbtp: delivered.true_peak_dbtp,
                        loudness_range_lu: delivered.loudness_range_lu,
                    }
                })
                .collect(),
            warnings: report
                .tracks
                .iter()
                .flat_map(|t| t.warnings.iter().map(move |w| format!("{}: {w}", t.id)))
                .collect(),
        })
    }

    fn local(&self, key: &str) -> PathBuf {
        self.source.join(key)
    }

    /// Runs a task unless its key is already done; returns its result and outputs.
    fn task<T: Serialize + DeserializeOwned>(
        &self,
        key: &str,
        outputs: &[PathBuf],
        render: impl FnOnce(&[PathBuf]) -> anyhow::Result<T>,
    ) -> anyhow::Result<(T, Vec<OutputFile>)> {
        let record_path = self.out.join(".lacquer/tasks").join(format!("{key}.json"));
        if let Ok(text) = std::fs::read_to_string(&record_path)
            && let Ok(record) = serde_json::from_str::<TaskRecord<T>>(&text)
            && record.key == key
            && record.outputs.iter().all(|o| hash_file(&self.out.join(&o.path)).is_ok_and(|h| h == o.blake3))
        {
            self.cached.fetch_add(1, Ordering::Relaxed);
            return Ok((record.result, record.outputs));
        }
        // Render into temporary names beside the outputs, then publish.
        let temporaries: Vec<PathBuf> = outputs.iter().map(|p| temporary_beside(p)).collect();
        let result = render(&temporaries);
        let result = match result {
            Ok(result) => result,
            Err(error) => {
                for t in &temporaries {
                    let _ = std::fs::remove_file(t);
                }
                return Err(error);
            }
        };
        let mut files = Vec::with_capacity(outputs.len());
        for (temporary, output) in temporaries.iter().zip(outputs) {
            std::fs::rename(temporary, output).with_context(|| format!("cannot publish {}", output.display()))?;
            files.push(OutputFile {
                path: output.strip_prefix(&self.out).unwrap_or(output).display().to_string(),
                blake3: hash_file(output)?,
                size_bytes: std::fs::metadata(output)?.len(),
            });
        }
        let record = TaskRecord { key: key.to_owned(), outputs: files, result };
        let temporary = temporary_beside(&record_path);
        std::fs::write(&temporary, serde_json::to_vec(&record)?)?;
        std::fs::rename(&temporary, &record_path)?;
        self.rendered.fetch_add(1, Ordering::Relaxed);
        Ok((record.result, record.outputs))
    }

    /// Mixes one track, or finds its `mix_file`: the mix's path, content
    /// hash, loudness, and how much of its start to trim.
    fn mix(&self, index: usize, input_hashes: &BTreeMap<String, String>, bar: &ProgressBar) -> anyhow::Result<Mixed> {
        let manifest = &self.valid.manifest;
        let track = &manifest.tracks[index];
        let rate_hz = manifest.album.sample_rate;
        if track.mix_file.is_some() {
            let probed = self
                .valid
                .input(&InputRole::MixFile { track: index })
                .ok_or_else(|| anyhow!("no mix file for {}", track.id))?;
            let path = self.local(&probed.input.object.key);
            let hash = input_hashes[&probed.input.field].clone();
            let key = task_key("measure-mix", &(&hash,))?;
            let (lufs, _) = self.task(&key, &[], |_| Ok(measure_file(&path)?.integrated_lufs))?;
            let trim_frames = (track.trim_start_s * f64::from(rate_hz)).round() as u64;
            return Ok(Mixed { report: None, path, hash, integrated_lufs: lufs, trim_frames });
        }
        let stems = track.stems.as_deref().unwrap_or_default();
        let stem_hashes: Vec<&String> =
            (0..stems.len()).map(|s| &input_hashes[&format!("tracks[{index}].stems[{s}].file")]).collect();
        let key = task_key(
            "mix",
            &(
                track.id.as_str(),
                &track.stems,
                &track.returns,
                track.trim_start_s,
                &manifest.mix,
                rate_hz,
                stem_hashes,
                &manifest.album.title,
                &manifest.album.artist,
                &track.title,
            ),
        )?;
        let path = self.out.join("mix").join(format!("{}.wav", track.id));
        let (report, outputs) = self.task(&key, std::slice::from_ref(&path), |temporary| {
            let inputs = (0..stems.len())
                .map(|s| {
                    let probed = self
                        .valid
                        .input(&InputRole::Stem { track: index, stem: s })
                        .ok_or_else(|| anyhow!("stem {s} of {} has no file", track.id))?;
                    Ok(Some(AudioInput::open_file(&self.local(&probed.input.object.key))?))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(mix_track(manifest, index, inputs, &temporary[0])?)
        })?;
        bar.inc(1);
        Ok(Mixed {
            integrated_lufs: report.integrated_lufs,
            report: Some(report),
            path,
            hash: outputs[0].blake3.clone(),
            trim_frames: 0,
        })
    }

    /// The gain into each track's mastering chain: to its loudness target
    /// (`track` mode), or one gain bringing the album there (`album` mode).
    fn drives(&self, mixes: &[Mixed]) -> Vec<f64> {
        let manifest = &self.valid.manifest;
        let target = manifest.matching.loudness.target_lufs;
        match manifest.matching.loudness.mode {
            LoudnessMode::Track => mixes
                .iter()
                .zip(&manifest.tracks)
                .map(|(mix, track)| mix.integrated_lufs.map_or(0.0, |lufs| target + track.loudness_offset_lu - lufs))
                .collect(),
            LoudnessMode::Album => {
                // Energy mean of the mixes' loudness, weighted by length.
                let weights: Vec<(f64, f64)> = mixes
                    .iter()
                    .filter_map(|m| {
                        m.integrated_lufs
                            .map(|l| (10f64.powf(l / 10.0), m.report.as_ref().map_or(1.0, |r| r.frames as f64)))
                    })
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

    /// Masters one track.
    fn master(&self, index: usize, mix: &Mixed, input_gain_db: f64, bar: &ProgressBar) -> anyhow::Result<FrontResult> {
        let manifest = &self.valid.manifest;
        let track = &manifest.tracks[index];
        let rate_hz = manifest.album.sample_rate;
        let chain = MasterChain::for_track(&manifest.master, track.master.as_ref());
        let ceiling = manifest.matching.true_peak_dbtp;
        let drive =
            Drive { input_gain_db, max_limiter_gain_reduction_db: manifest.matching.max_limiter_gain_reduction_db };
        let key = task_key(
            "master",
            &(
                &chain,
                ceiling,
                rate_hz,
                mix.trim_frames,
                &mix.hash,
                input_gain_db,
                drive.max_limiter_gain_reduction_db,
                &track.title,
            ),
        )?;
        let path = self.out.join("master").join(format!("{}.wav", track.id));
        let tags = self.tags(index);
        let (master, outputs) = self.task(&key, std::slice::from_ref(&path), |temporary| {
            let job = MasterJob { chain: &chain, ceiling_dbtp: ceiling, rate_hz, trim_frames: mix.trim_frames, drive };
            Ok(master_track(&job, &mix.path, &temporary[0], &tags)?)
        })?;
        bar.inc(1);
        Ok(FrontResult { mix: mix.report.clone(), master, master_hash: outputs[0].blake3.clone() })
    }

    fn tags(&self, index: usize) -> Tags {
        let manifest = &self.valid.manifest;
        let track = &manifest.tracks[index];
        Tags {
            title: track.title.clone(),
            artist: manifest.album.artist.clone(),
            album: manifest.album.title.clone(),
            isrc: track.isrc.clone(),
            label: manifest.album.label.clone(),
            track_number: Some(index as u32 + 1),
            track_total: Some(manifest.tracks.len() as u32),
        }
    }

    fn plan(&self, front: &[FrontResult]) -> anyhow::Result<AlbumPlan> {
        let manifest = &self.valid.manifest;
        let reference_file = match manifest.tone_reference() {
            ToneReference::File(_) => {
                let probed = self
                    .valid
                    .input(&InputRole::ToneReference)
                    .ok_or_else(|| anyhow!("the tone reference file is missing"))?;
                Some(measure_file(&self.local(&probed.input.object.key))?)
            }
            _ => None,
        };
        let reference = match manifest.tone_reference() {
            ToneReference::Album => Reference::Album,
            ToneReference::Track(id) => Reference::Track(manifest.tracks.iter().position(|t| t.id == id).unwrap_or(0)),
            ToneReference::File(_) => Reference::File(reference_file.as_ref().expect("measured above")),
        };
        let planned: Vec<PlannedTrack> = front
            .iter()
            .zip(&manifest.tracks)
            .map(|(f, t)| PlannedTrack { analysis: &f.master.analysis, loudness_offset_lu: t.loudness_offset_lu })
            .collect();
        Ok(plan_album(&planned, &manifest.matching, reference))
    }

    fn finalize(
        &self,
        index: usize,
        front: &FrontResult,
        plan: &AlbumPlan,
        bar: &ProgressBar,
    ) -> anyhow::Result<(FinalizeReport, Vec<OutputFile>)> {
        let manifest = &self.valid.manifest;
        let track = &manifest.tracks[index];
        let correction = &plan.corrections[index];
        let chain = MasterChain::for_track(&manifest.master, track.master.as_ref());
        let settings = FinalizeSettings {
            track_id: &track.id,
            rate_hz: manifest.album.sample_rate,
            ceiling_dbtp: manifest.matching.true_peak_dbtp,
            limiter: chain.limiter.clone().unwrap_or_default(),
            fade_in_s: track.fade_in_s,
            fade_out_s: track.fade_out_s,
            max_limiter_gain_reduction_db: manifest.matching.max_limiter_gain_reduction_db,
        };
        let deliverables: Vec<DeliverableTarget> = manifest
            .effective_deliverables()
            .iter()
            .map(|d| DeliverableTarget {
                name: d.name.clone(),
                format: d.format,
                bit_depth: d.bit_depth,
                rate_hz: d.sample_rate(&manifest.album),
                dither: d.dither(),
                path: self.out.join(&d.name).join(format!("{:02}-{}.{}", index + 1, track.id, d.format.extension())),
            })
            .collect();
        let tags = self.tags(index);
        let key = task_key(
            "finalize",
            &(
                &front.master_hash,
                correction,
                &settings.limiter,
                settings.ceiling_dbtp,
                settings.fade_in_s,
                settings.fade_out_s,
                settings.max_limiter_gain_reduction_db,
                settings.track_id,
                settings.rate_hz,
                &manifest.effective_deliverables(),
                index,
                &track.title,
                &track.isrc,
                &manifest.album,
            ),
        )?;
        let paths: Vec<PathBuf> = deliverables.iter().map(|d| d.path.clone()).collect();
        let result = self.task(&key, &paths, |temporary| {
            let targets: Vec<DeliverableTarget> = deliverables
                .iter()
                .zip(temporary)
                .map(|(d, t)| DeliverableTarget { path: t.clone(), ..d.clone() })
                .collect();
            Ok(finalize_track(
                &self.out.join("master").join(format!("{}.wav", track.id)),
                correction,
                &settings,
                &targets,
                &tags,
            )?)
        })?;
        bar.inc(1);
        Ok(result)
    }

    fn report(
        &self,
        front: &[FrontResult],
        plan: &AlbumPlan,
        finals: &[(FinalizeReport, Vec<OutputFile>)],
    ) -> anyhow::Result<AlbumReport> {
        let manifest = &self.valid.manifest;
        let tracks: Vec<TrackReport> = manifest
            .tracks
            .iter()
            .enumerate()
            .map(|(i, track)| {
                let (finalize, _) = &finals[i];
                let delivered = finalize.delivered.first().map(|d| &d.analysis).unwrap_or(&finalize.render);
                let mut warnings: Vec<String> = front[i].mix.iter().flat_map(|m| m.warnings.clone()).collect();
                warnings.extend(plan.corrections[i].warnings.iter().cloned());
                warnings.extend(finalize.warnings.iter().cloned());
                let lra_change = delivered.loudness_range_lu - front[i].master.analysis.loudness_range_lu;
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
                    mix: front[i].mix.clone(),
                    master: front[i].master.analysis.clone(),
                    master_limiter_gain_reduction_db: front[i].master.limiter_gain_reduction_db,
                    correction: plan.corrections[i].clone(),
                    finalize: finalize.clone(),
                    tonal_distance_before_db: distance_to(&plan.reference_balance_db, &front[i].master.analysis),
                    tonal_distance_after_db: distance_to(&plan.reference_balance_db, delivered),
                    warnings,
                }
            })
            .collect();
        let mut outputs = Vec::new();
        for dir in ["mix", "master"] {
            for track in &manifest.tracks {
                let path = self.out.join(dir).join(format!("{}.wav", track.id));
                if path.is_file() {
                    outputs.push(OutputFile {
                        path: format!("{dir}/{}.wav", track.id),
                        blake3: hash_file(&path)?,
                        size_bytes: std::fs::metadata(&path)?.len(),
                    });
                }
            }
        }
        outputs.extend(finals.iter().flat_map(|(_, files)| files.iter().cloned()));
        let report = AlbumReport {
            title: manifest.album.title.clone(),
            artist: manifest.album.artist.clone(),
            pipeline_version: PIPELINE_VERSION.to_owned(),
            target_lufs: manifest.matching.loudness.target_lufs,
            true_peak_ceiling_dbtp: manifest.matching.true_peak_dbtp,
            reference: manifest.matching.tone.reference.clone(),
            reference_balance_db: plan.reference_balance_db.clone(),
            band_centres_hz: lacquer_pipelines::analysis::BAND_CENTRES_HZ.to_vec(),
            album: AlbumFigures::from_tracks(&tracks),
            tracks,
            outputs,
        };
        publish(&self.out.join("report.json"), &serde_json::to_vec_pretty(&report)?)?;
        publish(&self.out.join("report.html"), report.to_html().as_bytes())?;
        Ok(report)
    }
}

/// A task key: BLAKE3 of the pipeline version, the task kind and its inputs.
fn task_key(kind: &str, inputs: &impl Serialize) -> anyhow::Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(PIPELINE_VERSION.as_bytes());
    hasher.update(kind.as_bytes());
    hasher.update(&serde_json::to_vec(inputs)?);
    Ok(hasher.finalize().to_hex()[..32].to_owned())
}

fn hash_file(path: &Path) -> anyhow::Result<String> {
    let mut hasher = blake3::Hasher::new();
    // Streamed through a buffer (not mapped): memory stays flat whatever the file's size.
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    hasher.update_reader(file).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hasher.finalize().to_hex().to_string())
}

fn temporary_beside(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".lacquer-tmp-{}-{name}", std::process::id()))
}

/// Writes a whole file atomically.
fn publish(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let temporary = temporary_beside(path);
    std::fs::write(&temporary, bytes).with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot publish {}", path.display()))?;
    Ok(())
}

/// Peak resident set size of this process (`VmHWM`), on Linux.
fn peak_memory_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}
