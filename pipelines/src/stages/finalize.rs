//! The finalize stage: a master, corrected by the album plan, through the
//! final true-peak limiter and the fades, to every deliverable (converted,
//! dithered, encoded), each measured as it was delivered.
//!
//! Loudness is closed-loop: the corrected render is measured, and when it
//! misses its target (the tone EQ and the limiter both move loudness) the
//! gain is corrected and the track rendered again. The final limiter's
//! measured gain reduction is held within the budget: a track that would
//! need more is delivered quieter, and says so.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{AudioInput, BLOCK_FRAMES, StageError, float_wav, stream_at_rate};
use crate::album::Correction;
use crate::analysis::{Analysis, Analyzer};
use crate::decode::AudioReader;
use crate::dsp::biquad::FilterChain;
use crate::dsp::envelope::Fades;
use crate::dsp::limiter::{LimiterSettings, TruePeakLimiter};
use crate::dsp::units::db_to_gain;
use crate::dsp::{AudioBlock, Processor};
use crate::encode::{DeliveredLoudness, EncodeSpec, Encoder, Tags, dither_seed};
use crate::manifest::{AudioFormat, Dither, Limiter};

/// Loudness within this of the target needs no further pass (LU).
const LOUDNESS_TOLERANCE_LU: f64 = 0.05;
/// Limiting this far over the budget counts as over it (dB).
const BUDGET_TOLERANCE_DB: f64 = 0.05;
/// Trimmed below the ceiling by this much more when conversion overshot (dB).
const CONVERSION_MARGIN_DB: f64 = 0.02;
/// The first render and up to three corrections.
const MAX_PASSES: u32 = 4;

/// One file to deliver.
#[derive(Debug, Clone)]
pub struct DeliverableTarget {
    pub name: String,
    pub format: AudioFormat,
    pub bit_depth: u32,
    pub rate_hz: u32,
    pub dither: Dither,
    pub path: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct FinalizeSettings<'a> {
    pub track_id: &'a str,
    pub rate_hz: u32,
    pub ceiling_dbtp: f64,
    pub limiter: Limiter,
    pub fade_in_s: f64,
    pub fade_out_s: f64,
    /// How much limiting is allowed at the peaks (dB).
    pub max_limiter_gain_reduction_db: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivered {
    pub name: String,
    pub analysis: Analysis,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalizeReport {
    /// The loudness gain finally applied (dB).
    pub gain_db: f64,
    /// The most gain the final limiter took away (dB).
    pub limiter_gain_reduction_db: f64,
    /// How much quieter than its target the track was delivered, to keep
    /// within the limiter budget (dB, ≥ 0).
    pub held_back_db: f64,
    /// Renders it took (the loudness is closed-loop).
    pub passes: u32,
    /// The corrected render at the working rate, before conversion.
    pub render: Analysis,
    pub delivered: Vec<Delivered>,
    pub warnings: Vec<String>,
}

/// The frames of a master, from its header.
fn master_frames(master: &Path) -> Result<u64, StageError> {
    let input = AudioInput::open_file(master)?;
    let location = input.location.clone();
    let info = crate::decode::probe(input.source, input.length_bytes, input.extension.as_deref())
        .map_err(|source| StageError::Decode { location: location.clone(), source })?;
    info.frames.ok_or_else(|| StageError::Invalid(format!("{location}: the master's length is not in its header")))
}

/// Renders master → correction → limiter → fades into `scratch` (32-bit
/// float WAV at the working rate), a block at a time, measuring as it goes.
/// Returns the limiter's largest gain reduction and the render's analysis.
fn render(
    master: &Path,
    correction: &Correction,
    gain_db: f64,
    settings: &FinalizeSettings,
    scratch: &Path,
) -> Result<(f64, Analysis), StageError> {
    let rate_hz = settings.rate_hz;
    let total_frames = master_frames(master)?;
    let rate = f64::from(rate_hz);
    let mut renderer = Renderer {
        eq: FilterChain::new(rate_hz, 2, BLOCK_FRAMES, &correction.filters()),
        gain: db_to_gain(gain_db) as f32,
        limiter: TruePeakLimiter::new(
            rate_hz,
            2,
            BLOCK_FRAMES,
            &LimiterSettings {
                ceiling_dbtp: settings.ceiling_dbtp,
                release_ms: settings.limiter.release_ms,
                lookahead_ms: settings.limiter.lookahead_ms,
            },
        ),
        fades: Fades {
            total_frames,
            in_frames: (settings.fade_in_s * rate).round() as u64,
            out_frames: (settings.fade_out_s * rate).round() as u64,
        },
        analyzer: Analyzer::new(rate_hz, 2).map_err(|e| StageError::Invalid(e.to_string()))?,
        encoder: Encoder::create(scratch, float_wav(rate_hz, 2), &Tags::default())?,
        work: AudioBlock::new(2, BLOCK_FRAMES),
        delivered: AudioBlock::new(2, BLOCK_FRAMES),
        to_skip: 0,
        position: 0,
    };
    renderer.to_skip = renderer.limiter.latency_frames();
    stream_at_rate(AudioInput::open_file(master)?, rate_hz, |block| {
        if block.channel_count() != 2 {
            return Err(StageError::Invalid(format!("{}: a master must be stereo", master.display())));
        }
        renderer.push(Some(block))
    })?;
    // The limiter's lookahead holds back its latency: push silence through.
    let mut remaining = renderer.limiter.latency_frames();
    while remaining > 0 {
        let frames = remaining.min(BLOCK_FRAMES);
        renderer.work.set_frames(frames);
        renderer.push(None)?;
        remaining -= frames;
    }
    let Renderer { limiter, analyzer, encoder, .. } = renderer;
    encoder.finish(&Tags::default(), None)?;
    let analysis = analyzer.finish().map_err(|e| StageError::Invalid(e.to_string()))?;
    Ok((limiter.max_gain_reduction_db(), analysis))
}

/// The render's state: its processors and two reusable blocks.
struct Renderer {
    eq: FilterChain,
    gain: f32,
    limiter: TruePeakLimiter,
    fades: Fades,
    analyzer: Analyzer,
    encoder: Encoder,
    /// The block being processed.
    work: AudioBlock,
    /// What leaves the limiter once its latency is skipped.
    delivered: AudioBlock,
    to_skip: usize,
    position: u64,
}

impl Renderer {
    /// Processes `input` (or, with `None`, the silence already in `work`).
    fn push(&mut self, input: Option<&AudioBlock>) -> Result<(), StageError> {
        if let Some(input) = input {
            self.work.set_frames(input.frames());
            for (work, input) in self.work.channels_mut().zip(input.channels()) {
                work.copy_from_slice(input);
            }
        } else {
            self.work.clear();
        }
        self.eq.process(&mut self.work);
        for channel in self.work.channels_mut() {
            for sample in channel.iter_mut() {
                *sample *= self.gain;
            }
        }
        self.limiter.process(&mut self.work);
        let skip = self.to_skip.min(self.work.frames());
        self.to_skip -= skip;
        let frames = self.work.frames() - skip;
        if frames == 0 {
            return Ok(());
        }
        self.delivered.set_frames(frames);
        for (out, work) in self.delivered.channels_mut().zip(self.work.channels()) {
            out.copy_from_slice(&work[skip..]);
            self.fades.apply(self.position, out);
        }
        self.position += frames as u64;
        self.analyzer.add(&self.delivered).map_err(|e| StageError::Invalid(e.to_string()))?;
        self.encoder.write(&self.delivered)?;
        Ok(())
    }
}

/// Finalizes one track into every deliverable.
pub fn finalize_track(
    master: &Path,
    correction: &Correction,
    settings: &FinalizeSettings,
    deliverables: &[DeliverableTarget],
    tags: &Tags,
) -> Result<FinalizeReport, StageError> {
    let mut warnings = Vec::new();
    let budget_db = settings.max_limiter_gain_reduction_db;
    let mut gain_db = correction.gain_db;
    // The render waits in a scratch file beside the first deliverable (the
    // same disk), removed however this ends: memory stays bounded by the
    // block size whatever the track's length.
    let scratch_dir =
        deliverables.first().and_then(|d| d.path.parent()).map_or_else(std::env::temp_dir, Path::to_path_buf);
    let scratch = tempfile::Builder::new()
        .prefix(".lacquer-render-")
        .suffix(".wav")
        .tempfile_in(&scratch_dir)
        .map_err(|e| StageError::Io(format!("cannot create a scratch file in {}: {e}", scratch_dir.display())))?;
    let (mut reduction_db, mut measured) = render(master, correction, gain_db, settings, scratch.path())?;
    let mut passes = 1;
    while passes < MAX_PASSES {
        let over_budget_db = reduction_db - budget_db;
        let step_db = if over_budget_db > BUDGET_TOLERANCE_DB {
            // Too much limiting: the peaks come down with the gain.
            -over_budget_db
        } else {
            match measured.integrated_lufs.map(|lufs| correction.target_lufs - lufs) {
                Some(miss) if miss > LOUDNESS_TOLERANCE_LU => miss.min(budget_db - reduction_db).max(0.0),
                Some(miss) if miss < -LOUDNESS_TOLERANCE_LU => miss,
                _ => 0.0,
            }
        };
        if step_db.abs() < 1e-3 {
            break;
        }
        gain_db += step_db;
        (reduction_db, measured) = render(master, correction, gain_db, settings, scratch.path())?;
        passes += 1;
    }
    let held_back_db = measured.integrated_lufs.map_or(0.0, |lufs| (correction.target_lufs - lufs).max(0.0));
    if held_back_db > LOUDNESS_TOLERANCE_LU {
        warnings.push(format!(
            "delivered {held_back_db:.1} dB under its loudness target ({:.1} LUFS): reaching it would take more than the {budget_db:.1} dB of limiting allowed (max_limiter_gain_reduction_db)",
            correction.target_lufs
        ));
    }
    let mut delivered = Vec::with_capacity(deliverables.len());
    for target in deliverables {
        let mut file = deliver(scratch.path(), settings, target, tags, &measured, 0.0)?;
        // Converting the rate rebuilds the waveform between the limiter's
        // samples: on dense material a new inter-sample peak can rise a few
        // hundredths of a dB over the ceiling. Such a file is delivered
        // again, trimmed by the excess (and a margin).
        let excess_db = file.analysis.highest_true_peak_dbtp() - settings.ceiling_dbtp;
        if excess_db > 0.0 {
            file = deliver(scratch.path(), settings, target, tags, &measured, -(excess_db + CONVERSION_MARGIN_DB))?;
        }
        delivered.push(file);
    }
    Ok(FinalizeReport {
        gain_db,
        limiter_gain_reduction_db: reduction_db,
        held_back_db,
        passes,
        render: measured,
        delivered,
        warnings,
    })
}

/// Converts, dithers, encodes and measures one deliverable.
fn deliver(
    scratch: &Path,
    settings: &FinalizeSettings,
    target: &DeliverableTarget,
    tags: &Tags,
    render: &Analysis,
    trim_db: f64,
) -> Result<Delivered, StageError> {
    let spec = EncodeSpec {
        format: target.format,
        bit_depth: target.bit_depth,
        rate_hz: target.rate_hz,
        channels: 2,
        dither: target.dither,
        dither_seed: dither_seed(settings.track_id, &target.name),
    };
    let mut encoder = Encoder::create(&target.path, spec, tags)?;
    // Measured as written: the samples the encoder quantized and dithered
    // are the file's, so it is never decoded to be measured again.
    let mut analyzer = Analyzer::new(target.rate_hz, 2).map_err(|e| StageError::Invalid(e.to_string()))?;
    // From the render at the working rate, converted when the deliverable
    // asks for another rate.
    let trim = db_to_gain(trim_db) as f32;
    let mut trimmed = AudioBlock::new(2, BLOCK_FRAMES);
    stream_at_rate(AudioInput::open_file(scratch)?, target.rate_hz, |block| {
        let written = if trim == 1.0 {
            encoder.write(block)?
        } else {
            trimmed.set_frames(block.frames());
            for (out, input) in trimmed.channels_mut().zip(block.channels()) {
                for (o, x) in out.iter_mut().zip(input) {
                    *o = x * trim;
                }
            }
            encoder.write(&trimmed)?
        };
        analyzer.add(written).map_err(|e| StageError::Invalid(e.to_string()))
    })?;
    // bext carries the render's loudness; the file's own is measured above.
    let loudness = DeliveredLoudness {
        integrated_lufs: render.integrated_lufs,
        loudness_range_lu: render.loudness_range_lu,
        true_peak_dbtp: render.highest_true_peak_dbtp(),
        max_short_term_lufs: render.max_short_term_lufs,
    };
    encoder.finish(tags, Some(&loudness))?;
    let analysis = analyzer.finish().map_err(|e| StageError::Invalid(e.to_string()))?;
    if target.format == AudioFormat::Flac {
        // Proved readable: decoded once, its MD5 checked.
        let input = AudioInput::open_file(&target.path)?;
        crate::decode::verify_flac(input.source, input.length_bytes)
            .map_err(|source| StageError::Decode { location: target.path.display().to_string(), source })?;
    }
    let size_bytes = std::fs::metadata(&target.path).map_err(|e| StageError::Io(e.to_string()))?.len();
    Ok(Delivered { name: target.name.clone(), analysis, size_bytes })
}

/// Decodes a delivered file and measures it: what the listener gets.
pub fn measure_file(path: &Path) -> Result<Analysis, StageError> {
    let input = AudioInput::open_file(path)?;
    let decode_error = |source| StageError::Decode { location: path.display().to_string(), source };
    let mut reader =
        AudioReader::open(input.source, input.length_bytes, input.extension.as_deref()).map_err(decode_error)?;
    let info = reader.info().clone();
    let mut analyzer =
        Analyzer::new(info.sample_rate_hz, info.channels).map_err(|e| StageError::Invalid(e.to_string()))?;
    let mut block = AudioBlock::new(info.channels, BLOCK_FRAMES);
    while reader.read(&mut block, BLOCK_FRAMES).map_err(decode_error)? > 0 {
        super::check_cancelled()?;
        analyzer.add(&block).map_err(|e| StageError::Invalid(e.to_string()))?;
    }
    analyzer.finish().map_err(|e| StageError::Invalid(e.to_string()))
}
