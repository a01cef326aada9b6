//! The master stage: a stereo mix through the mastering chain, in the
//! manifest's fixed order — EQ → compressor → saturation → stereo →
//! true-peak limiter (always on, its ceiling the album's true-peak ceiling)
//! — to a 32-bit float master, measured as it is written.
//!
//! The mix arrives with headroom (its peak near -6 dBFS); an input gain
//! brings it to program level first, so that the chain's thresholds mean
//! what a mastering engineer means by them. The limiter's gain reduction
//! is held within the album's budget: if the drive would need more, the
//! drive comes down and the track is rendered again.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{AudioInput, BLOCK_FRAMES, StageError, stream_at_rate};
use crate::analysis::{Analysis, Analyzer, AnalyzerThread};
use crate::dsp::aligned::{Aligned, push_silence};
use crate::dsp::biquad::FilterChain;
use crate::dsp::compressor::Compressor;
use crate::dsp::limiter::{LimiterSettings, TruePeakLimiter};
use crate::dsp::saturation::Saturation;
use crate::dsp::stereo::StereoImage;
use crate::dsp::{AudioBlock, Processor};
use crate::encode::{EncodeSpec, Encoder, Tags};
use crate::manifest::{AudioFormat, Dither, MasterChain};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MasterReport {
    pub analysis: Analysis,
    /// The gain into the chain (dB).
    pub input_gain_db: f64,
    /// The most gain the mastering limiter took away (dB).
    pub limiter_gain_reduction_db: f64,
}

/// How the master stage drives the chain.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Drive {
    /// Gain into the chain (dB).
    pub input_gain_db: f64,
    /// The most the limiter may take away before the drive comes down (dB).
    pub max_limiter_gain_reduction_db: f64,
}

/// Renders at most this many times to keep the limiter within budget.
const MAX_PASSES: u32 = 3;

/// Builds the chain for one track (`chain` as [`MasterChain::for_track`]
/// gives it, limiter present).
pub fn build_chain(chain: &MasterChain, ceiling_dbtp: f64, rate_hz: u32) -> (Vec<Box<dyn Processor>>, TruePeakLimiter) {
    let mut processors: Vec<Box<dyn Processor>> = Vec::new();
    if let Some(eq) = chain.eq.as_ref().filter(|eq| !eq.is_empty()) {
        processors.push(Box::new(FilterChain::new(rate_hz, 2, BLOCK_FRAMES, eq)));
    }
    if let Some(compressor) = &chain.compressor {
        processors.push(Box::new(Compressor::new(rate_hz, 2, BLOCK_FRAMES, compressor)));
    }
    if let Some(saturation) = &chain.saturation {
        processors.push(Box::new(Saturation::new(rate_hz, 2, BLOCK_FRAMES, saturation)));
    }
    if let Some(stereo) = &chain.stereo {
        processors.push(Box::new(StereoImage::new(rate_hz, 2, BLOCK_FRAMES, stereo)));
    }
    let limiter = chain.limiter.clone().unwrap_or_default();
    let limiter = TruePeakLimiter::new(
        rate_hz,
        2,
        BLOCK_FRAMES,
        &LimiterSettings { ceiling_dbtp, release_ms: limiter.release_ms, lookahead_ms: limiter.lookahead_ms },
    );
    (processors, limiter)
}

/// One track's mastering settings.
#[derive(Debug, Clone)]
pub struct MasterJob<'a> {
    /// As [`MasterChain::for_track`] gives it, limiter present.
    pub chain: &'a MasterChain,
    pub ceiling_dbtp: f64,
    pub rate_hz: u32,
    /// Frames cut from the start of the mix (a `mix_file`'s `trim_start_s`).
    pub trim_frames: u64,
    pub drive: Drive,
}

/// Masters the mix at `mix_path` (stereo) into `output`.
pub fn master_track(job: &MasterJob, mix_path: &Path, output: &Path, tags: &Tags) -> Result<MasterReport, StageError> {
    let MasterJob { chain, ceiling_dbtp, rate_hz, trim_frames, drive } = *job;
    let mut input_gain_db = drive.input_gain_db;
    let mut passes = 1;
    loop {
        let mix = AudioInput::open_file(mix_path)?;
        let report = render_master(chain, ceiling_dbtp, rate_hz, trim_frames, input_gain_db, mix, output, tags)?;
        let over_db = report.limiter_gain_reduction_db - drive.max_limiter_gain_reduction_db;
        if over_db <= 0.05 || passes == MAX_PASSES {
            return Ok(report);
        }
        input_gain_db -= over_db;
        passes += 1;
    }
}

#[allow(clippy::too_many_arguments)]
fn render_master(
    chain: &MasterChain,
    ceiling_dbtp: f64,
    rate_hz: u32,
    trim_frames: u64,
    input_gain_db: f64,
    mix: AudioInput,
    output: &Path,
    tags: &Tags,
) -> Result<MasterReport, StageError> {
    let input_gain = crate::dsp::units::db_to_gain(input_gain_db) as f32;
    let (mut processors, mut limiter) = build_chain(chain, ceiling_dbtp, rate_hz);
    let latency = processors.iter().map(|p| p.latency_frames()).sum::<usize>() + limiter.latency_frames();
    let spec = EncodeSpec {
        format: AudioFormat::Wav,
        bit_depth: 32,
        rate_hz,
        channels: 2,
        dither: Dither::None,
        dither_seed: 0,
    };
    let mut encoder = Encoder::create(output, spec, tags)?;
    // Measured beside the chain, on a thread of its own.
    let invalid = |e: crate::analysis::AnalysisError| StageError::Invalid(e.to_string());
    let mut analyzer =
        AnalyzerThread::spawn(Analyzer::new(rate_hz, 2).map_err(invalid)?, BLOCK_FRAMES).map_err(invalid)?;
    let mut aligned = Aligned::new(latency, 2, BLOCK_FRAMES);
    let mut to_trim = trim_frames;
    let location = mix.location.clone();

    // The stereo work block, made once.
    let mut stereo = AudioBlock::new(2, BLOCK_FRAMES);
    let mut run = |block: &mut AudioBlock| -> Result<(), StageError> {
        for processor in processors.iter_mut() {
            processor.process(block);
        }
        limiter.process(block);
        let Some(out) = aligned.take(block) else { return Ok(()) };
        encoder.write(out)?;
        analyzer.add(out).map_err(|e| StageError::Invalid(e.to_string()))
    };
    let mut frames_in = 0u64;
    let channels = stream_at_rate(mix, rate_hz, |block| {
        let skip = to_trim.min(block.frames() as u64) as usize;
        to_trim -= skip as u64;
        if skip == block.frames() {
            return Ok(());
        }
        stereo.set_frames(block.frames() - skip);
        // A mono mix feeds both channels.
        let sources = [0, if block.channel_count() == 2 { 1 } else { 0 }];
        for (work, source) in stereo.channels_mut().zip(sources) {
            for (sample, input) in work.iter_mut().zip(&block.channel(source)[skip..]) {
                *sample = input * input_gain;
            }
        }
        frames_in += stereo.frames() as u64;
        run(&mut stereo)
    })?;
    if channels != 2 {
        return Err(StageError::Invalid(format!("{location}: a mix must be stereo, it has {channels} channel(s)")));
    }
    // Flush the chain's latency with silence, so the master is exactly as
    // long as the mix and aligned with it.
    push_silence(latency, BLOCK_FRAMES, &mut stereo, &mut run)?;
    let limiter_gain_reduction_db = limiter.max_gain_reduction_db();
    let analysis = analyzer.finish().map_err(|e| StageError::Invalid(e.to_string()))?;
    encoder.finish(tags, None)?;
    debug_assert_eq!(analysis.frames, frames_in);
    Ok(MasterReport { analysis, input_gain_db, limiter_gain_reduction_db })
}
