//! The finalize stage: a master, corrected by the album plan, through the
//! final true-peak limiter and the fades, to every deliverable (converted,
//! dithered, encoded), each measured as it was delivered.
//!
//! Loudness is closed-loop: the corrected render is measured, and when it
//! misses its target (the tone EQ and the limiter both move loudness) the
//! gain is corrected and the track rendered again. The final limiter's
//! measured gain reduction is held within the budget: a track that would
//! need more is delivered quieter, and says so.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{AudioInput, BLOCK_FRAMES, StageError, stream_at_rate};
use crate::album::Correction;
use crate::analysis::{Analysis, Analyzer};
use crate::decode::AudioReader;
use crate::dsp::biquad::FilterChain;
use crate::dsp::envelope::Fades;
use crate::dsp::limiter::{LimiterSettings, TruePeakLimiter};
use crate::dsp::resample::StreamResampler;
use crate::dsp::units::db_to_gain;
use crate::dsp::{AudioBlock, Processor};
use crate::encode::{DeliveredLoudness, EncodeSpec, Encoder, Tags, dither_seed};
use crate::manifest::{AudioFormat, Dither, Limiter};

/// Loudness within this of the target needs no further pass (LU).
const LOUDNESS_TOLERANCE_LU: f64 = 0.05;
/// Limiting this far over the budget counts as over it (dB).
const BUDGET_TOLERANCE_DB: f64 = 0.05;
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

#[derive(Debug, Clone)]
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

/// Renders master → correction → limiter → fades, in memory.
fn render(
    master: &Path,
    correction: &Correction,
    gain_db: f64,
    settings: &FinalizeSettings,
) -> Result<(Vec<Vec<f32>>, f64, Analysis), StageError> {
    let rate_hz = settings.rate_hz;
    let mut eq = FilterChain::new(rate_hz, 2, &correction.filters());
    let mut limiter = TruePeakLimiter::new(
        rate_hz,
        2,
        BLOCK_FRAMES,
        &LimiterSettings {
            ceiling_dbtp: settings.ceiling_dbtp,
            release_ms: settings.limiter.release_ms,
            lookahead_ms: settings.limiter.lookahead_ms,
        },
    );
    let latency = limiter.latency_frames();
    let gain = db_to_gain(gain_db) as f32;
    let mut out: Vec<Vec<f32>> = vec![Vec::new(), Vec::new()];
    let mut run = |block: &mut AudioBlock, out: &mut Vec<Vec<f32>>| {
        eq.process(block);
        for channel in block.channels_mut() {
            for sample in channel.iter_mut() {
                *sample *= gain;
            }
        }
        limiter.process(block);
        for (o, c) in out.iter_mut().zip(block.channels()) {
            o.extend_from_slice(c);
        }
    };
    stream_at_rate(AudioInput::open_file(master)?, rate_hz, |block| {
        let mut work = block.clone();
        if work.channel_count() != 2 {
            return Err(StageError::Invalid(format!("{}: a master must be stereo", master.display())));
        }
        run(&mut work, &mut out);
        Ok(())
    })?;
    let mut remaining = latency;
    while remaining > 0 {
        let frames = remaining.min(BLOCK_FRAMES);
        run(&mut AudioBlock::new(2, frames), &mut out);
        remaining -= frames;
    }
    for channel in &mut out {
        channel.drain(..latency.min(channel.len()));
    }
    let frames = out[0].len() as u64;
    let rate = f64::from(rate_hz);
    let fades = Fades {
        total_frames: frames,
        in_frames: (settings.fade_in_s * rate).round() as u64,
        out_frames: (settings.fade_out_s * rate).round() as u64,
    };
    let mut analyzer = Analyzer::new(rate_hz, 2).map_err(|e| StageError::Invalid(e.to_string()))?;
    for channel in &mut out {
        fades.apply(0, channel);
    }
    for start in (0..out[0].len()).step_by(BLOCK_FRAMES) {
        let end = (start + BLOCK_FRAMES).min(out[0].len());
        analyzer
            .add(&AudioBlock::from_planar(out.iter().map(|c| c[start..end].to_vec()).collect()))
            .map_err(|e| StageError::Invalid(e.to_string()))?;
    }
    let analysis = analyzer.finish().map_err(|e| StageError::Invalid(e.to_string()))?;
    Ok((out, limiter.max_gain_reduction_db(), analysis))
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
    let (mut audio, mut reduction_db, mut measured) = render(master, correction, gain_db, settings)?;
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
        (audio, reduction_db, measured) = render(master, correction, gain_db, settings)?;
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
        delivered.push(deliver(&audio, settings, target, tags, &measured)?);
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
    audio: &[Vec<f32>],
    settings: &FinalizeSettings,
    target: &DeliverableTarget,
    tags: &Tags,
    render: &Analysis,
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
    let frames = audio[0].len();
    let write = |left: &[f32], right: &[f32], encoder: &mut Encoder| -> Result<(), StageError> {
        for start in (0..left.len()).step_by(BLOCK_FRAMES) {
            let end = (start + BLOCK_FRAMES).min(left.len());
            encoder.write(&AudioBlock::from_planar(vec![left[start..end].to_vec(), right[start..end].to_vec()]))?;
        }
        Ok(())
    };
    if target.rate_hz == settings.rate_hz {
        write(&audio[0], &audio[1], &mut encoder)?;
    } else {
        let error = |e: crate::dsp::resample::ResampleError| StageError::Invalid(e.to_string());
        let mut resampler = StreamResampler::new(settings.rate_hz, target.rate_hz, 2).map_err(error)?;
        let mut converted = vec![Vec::new(), Vec::new()];
        for start in (0..frames).step_by(BLOCK_FRAMES) {
            let end = (start + BLOCK_FRAMES).min(frames);
            let block = AudioBlock::from_planar(vec![audio[0][start..end].to_vec(), audio[1][start..end].to_vec()]);
            resampler.push(&block, &mut converted).map_err(error)?;
            write(&converted[0], &converted[1], &mut encoder)?;
            converted[0].clear();
            converted[1].clear();
        }
        resampler.finish(&mut converted).map_err(error)?;
        write(&converted[0], &converted[1], &mut encoder)?;
    }
    // bext carries the render's loudness; the file is measured below.
    let loudness = DeliveredLoudness {
        integrated_lufs: render.integrated_lufs,
        loudness_range_lu: render.loudness_range_lu,
        true_peak_dbtp: render.true_peak_dbtp,
        max_short_term_lufs: render.max_short_term_lufs,
    };
    encoder.finish(tags, Some(&loudness))?;
    let analysis = measure_file(&target.path)?;
    let size_bytes = std::fs::metadata(&target.path).map_err(|e| StageError::Io(e.to_string()))?.len();
    Ok(Delivered { name: target.name.clone(), analysis, size_bytes })
}

/// Decodes a delivered file and measures it: what the listener gets.
pub fn measure_file(path: &Path) -> Result<Analysis, StageError> {
    let bytes = std::fs::read(path).map_err(|e| StageError::Io(format!("{}: {e}", path.display())))?;
    let length = bytes.len() as u64;
    let extension = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
    let decode_error = |source| StageError::Decode { location: path.display().to_string(), source };
    let mut reader = AudioReader::open(Cursor::new(bytes), length, extension.as_deref()).map_err(decode_error)?;
    let info = reader.info().clone();
    let mut analyzer =
        Analyzer::new(info.sample_rate_hz, info.channels).map_err(|e| StageError::Invalid(e.to_string()))?;
    let mut block = AudioBlock::new(info.channels, BLOCK_FRAMES);
    while reader.read(&mut block, BLOCK_FRAMES).map_err(decode_error)? > 0 {
        analyzer.add(&block).map_err(|e| StageError::Invalid(e.to_string()))?;
    }
    analyzer.finish().map_err(|e| StageError::Invalid(e.to_string()))
}
