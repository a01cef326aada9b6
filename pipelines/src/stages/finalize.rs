//! The finalize stage: a master, corrected by the album plan, through the
//! final true-peak limiter and the fades, to every deliverable (converted,
//! dithered, encoded), each measured as it was delivered.
//!
//! Loudness is closed-loop: the tone EQ and the limiter both move loudness,
//! so the gain is found by probes over the corrected master (gain, limiter
//! and fades only, measured for loudness), then every deliverable is
//! written from one render that lands where the last probe did. The final limiter's
//! measured gain reduction is held within the budget: a track that would
//! need more is delivered quieter, and says so.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{AudioInput, BLOCK_FRAMES, StageError, float_wav, stream_at_rate};
use crate::album::{Correction, equal_loudness_response_db, equaliser, is_flat, realised_correction_db};
use crate::analysis::{Analysis, Analyzer, AnalyzerThread, BAND_CENTRES_HZ, integrated_lufs, loudness_range_lu};
use crate::codec::{CodecReading, RoundTrip};
use crate::decode::AudioReader;
use crate::dsp::aligned::{Aligned, push_silence};
use crate::dsp::curve_eq::CurveEq;
use crate::dsp::envelope::Fades;
use crate::dsp::limiter::{LimiterSettings, SAFETY_MARGIN_DB, TruePeakLimiter};
use crate::dsp::resample::StreamResampler;
use crate::dsp::units::db_to_gain;
use crate::dsp::{AudioBlock, Processor};
use crate::encode::{DeliveredLoudness, EncodeSpec, Encoder, Tags, dither_seed};
use crate::manifest::{AudioFormat, Codec, CodecSpec, Dither, Limiter};
use crate::meter::Meter;

/// Loudness within this of the target needs no further pass (LU).
const LOUDNESS_TOLERANCE_LU: f64 = 0.05;
/// Limiting this far over the budget counts as over it (dB).
const BUDGET_TOLERANCE_DB: f64 = 0.05;
/// The streaming ceiling is lowered in steps of this (dB), aiming this
/// far under the codec ceiling: a step absorbs the last hundredths a
/// codec's floating point could differ by between machines.
const CODEC_STEP_DB: f64 = 0.05;
/// Renders at a lowered ceiling at most.
const MAX_CODEC_PASSES: u32 = 3;
/// Trimmed below the ceiling by this much more when conversion overshot (dB).
const CONVERSION_MARGIN_DB: f64 = 0.02;
/// Loudness probes at most: the first and up to five corrections.
const MAX_PROBES: u32 = 6;
/// At most this much expected limiting (dB), the first render is
/// delivered as it is made (see `finalize_track`).
const DELIVER_FIRST_LIMITING_DB: f64 = 0.5;
/// The album pass moves no track's loudness range by more than this (LU);
/// the correction is scaled down to hold it, aiming this far inside.
const MAX_LRA_CHANGE_LU: f64 = 1.0;
const LRA_MARGIN_LU: f64 = 0.1;
/// A converted deliverable this far off the render's loudness is made up
/// (LU).
const CONVERSION_LOUDNESS_TOLERANCE_LU: f64 = 0.02;
/// How far under the ceiling the limiter after a rate conversion aims (dB).
const RELIMIT_MARGIN_DB: f64 = 0.02;
/// What the final limiter may add to the realised correction (dB): it
/// works hardest on the loudest, bass-heavy peaks.
const LIMITER_SHARE_DB: f64 = 0.2;
/// Passes of the correction EQ that look for the largest share of the
/// curve that keeps the loudness range (bisection).
const LRA_SEARCH_PASSES: u32 = 5;

/// One file to deliver.
#[derive(Debug, Clone)]
pub struct DeliverableTarget {
    pub name: String,
    pub format: AudioFormat,
    pub bit_depth: u32,
    pub rate_hz: u32,
    pub dither: Dither,
    pub path: PathBuf,
    /// Round-tripped through the settings' `codec_check` as it is written.
    pub codec_checked: bool,
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
    /// The stores' codecs the streaming deliverables are checked through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codec_check: Option<CodecCheck>,
}

/// The stores' codecs, and the most their decoded audio may read.
#[derive(Debug, Clone, Serialize)]
pub struct CodecCheck {
    pub codecs: Vec<CodecSpec>,
    pub ceiling_dbtp: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivered {
    pub name: String,
    pub analysis: Analysis,
    pub size_bytes: u64,
    /// What the file reads decoded from each codec of the check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codecs: Vec<CodecResult>,
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
    /// Renders that wrote files: 1; one more when a deliverable was made
    /// again (a conversion's lost loudness made up, or a peak that dither
    /// lifted trimmed), and one more when the limiter's share took the
    /// realised correction past the cap.
    pub passes: u32,
    /// Loudness probes (gain, limiter and fades only, nothing written)
    /// that found the gain: the loudness is closed-loop.
    #[serde(default)]
    pub probes: u32,
    /// The share of the planned EQ curve applied: 1, or less where the
    /// full curve would have moved the loudness range by more than 1 LU.
    pub correction_scale: f64,
    /// The loudness range (LU) of the master through the applied EQ,
    /// before gain and limiting.
    pub corrected_lra_lu: f64,
    /// The corrected render at the working rate, before conversion.
    pub render: Analysis,
    pub delivered: Vec<Delivered>,
    /// Where the final limiter's own share took the delivered balance past
    /// the cap: the correction as applied, pulled in only where it had to
    /// be (the plan's otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redesigned: Option<Box<Correction>>,
    /// With `codec_check`: the streaming deliverables through the codecs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec_check: Option<Box<CodecCheckReport>>,
    pub warnings: Vec<String>,
}

/// How the streaming deliverables read through the stores' codecs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodecCheckReport {
    /// The most a decoded file may read (dBTP).
    pub codec_ceiling_dbtp: f64,
    /// How far the streaming deliverables' ceiling was lowered below the
    /// album's to hold it (dB, ≥ 0; in steps of 0.05 dB).
    pub lowered_db: f64,
    /// The streaming deliverables' ceiling (dBTP).
    pub streaming_ceiling_dbtp: f64,
    /// Their loudness gain (dB) and the limiting it took (dB).
    pub gain_db: f64,
    pub limiter_gain_reduction_db: f64,
    /// How much quieter than the target they were delivered to stay
    /// within the limiter budget (dB, ≥ 0).
    pub held_back_db: f64,
    /// Per streaming deliverable and codec: read at the album's ceiling,
    /// and as delivered.
    pub rows: Vec<CodecRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodecRow {
    pub deliverable: String,
    pub codec: Codec,
    pub bitrate_kbps: u32,
    pub before: CodecReading,
    pub after: CodecReading,
}

/// One codec's reading of a delivered file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CodecResult {
    pub codec: Codec,
    pub bitrate_kbps: u32,
    #[serde(flatten)]
    pub reading: CodecReading,
}

/// The frames of a master, from its header.
fn master_frames(master: &Path) -> Result<u64, StageError> {
    let input = AudioInput::open_file(master)?;
    let location = input.location.clone();
    let info = crate::decode::probe(input.source, input.length_bytes, input.extension.as_deref())
        .map_err(|source| StageError::Decode { location: location.clone(), source })?;
    info.frames.ok_or_else(|| StageError::Invalid(format!("{location}: the master's length is not in its header")))
}

/// Runs the master through the EQ following `curve_db` into
/// `corrected` (32-bit float WAV at the working rate): the part of the
/// render that does not depend on the gain. Returns the corrected audio's
/// loudness, from which the first probe starts (the EQ moves loudness
/// too), and its loudness range.
fn correct(master: &Path, curve_db: &[f64], rate_hz: u32, corrected: &Path) -> Result<(Option<f64>, f64), StageError> {
    // A flat curve (a silent track, a one-track album) is no EQ at all.
    let mut eq = (!is_flat(curve_db)).then(|| CurveEq::new(&equaliser(curve_db, rate_hz)));
    let latency_frames = eq.as_ref().map_or(0, Processor::latency_frames);
    let mut aligned = Aligned::new(latency_frames, 2, BLOCK_FRAMES);
    let mut meter = Meter::loudness_only(rate_hz, 2);
    let mut encoder = Encoder::create(corrected, float_wav(rate_hz, 2), &Tags::default())?;
    let mut work = AudioBlock::new(2, BLOCK_FRAMES);
    let mut push = |work: &mut AudioBlock| -> Result<(), StageError> {
        if let Some(eq) = eq.as_mut() {
            eq.process(work);
        }
        if let Some(out) = aligned.take(work) {
            meter.add(out);
            encoder.write(out)?;
        }
        Ok(())
    };
    stream_at_rate(AudioInput::open_file(master)?, rate_hz, |block| {
        if block.channel_count() != 2 {
            return Err(StageError::Invalid(format!("{}: a master must be stereo", master.display())));
        }
        work.set_frames(block.frames());
        for (w, input) in work.channels_mut().zip(block.channels()) {
            w.copy_from_slice(input);
        }
        push(&mut work)
    })?;
    push_silence(latency_frames, BLOCK_FRAMES, &mut work, &mut push)?;
    encoder.finish_scratch()?;
    let segments = meter.finish().segment_energies;
    Ok((integrated_lufs(&segments), loudness_range_lu(&segments)))
}

/// Corrects the master with as much of the planned curve as keeps its
/// loudness range within [`MAX_LRA_CHANGE_LU`]: the whole curve when it
/// does (one pass), else the largest share found by bisection. An EQ
/// that lifts one instrument's band lifts the passages it plays in; the
/// album pass matches balance, it does not rearrange the song. Returns
/// the share, the corrected loudness and loudness range.
fn correct_keeping_dynamics(
    master: &Path,
    correction: &Correction,
    max_share: f64,
    rate_hz: u32,
    corrected: &Path,
) -> Result<(f64, Option<f64>, f64), StageError> {
    let limit = MAX_LRA_CHANGE_LU - LRA_MARGIN_LU;
    let keeps = |lra: f64| (lra - correction.master_lra_lu).abs() <= limit;
    let (lufs, lra) = correct(master, &correction.curve_scaled(max_share), rate_hz, corrected)?;
    if keeps(lra) || correction.is_flat() {
        return Ok((max_share, lufs, lra));
    }
    // No EQ keeps the master's range by definition; look between.
    let (mut kept, mut moved) = (0.0, max_share);
    let mut last: Option<(Option<f64>, f64)> = None;
    for _ in 0..LRA_SEARCH_PASSES {
        let share = 0.5 * (kept + moved);
        let (lufs, lra) = correct(master, &correction.curve_scaled(share), rate_hz, corrected)?;
        if keeps(lra) {
            kept = share;
            last = Some((lufs, lra));
        } else {
            moved = share;
            last = None;
        }
    }
    // The scratch holds the last pass: when that one moved the range, the
    // share that kept it is run again.
    let (lufs, lra) = match last {
        Some(found) => found,
        None => correct(master, &correction.curve_scaled(kept), rate_hz, corrected)?,
    };
    Ok((kept, lufs, lra))
}

/// Gain → final limiter → fades, a block at a time, over the corrected
/// master: the one render path, for the loudness probes and for delivery
/// alike, so a probe's reading is the delivered render's to the bit.
struct Renderer {
    gain: f32,
    limiter: TruePeakLimiter,
    aligned: Aligned,
    fades: Fades,
    /// The block being processed.
    work: AudioBlock,
    position: u64,
}

/// The final limiter at `rate_hz`, held to `ceiling_dbtp` (less its
/// safety margin).
fn limiter_at(rate_hz: u32, settings: &FinalizeSettings, ceiling_dbtp: f64) -> TruePeakLimiter {
    TruePeakLimiter::new(
        rate_hz,
        2,
        BLOCK_FRAMES,
        &LimiterSettings {
            ceiling_dbtp,
            release_ms: settings.limiter.release_ms,
            lookahead_ms: settings.limiter.lookahead_ms,
        },
    )
}

impl Renderer {
    fn new(gain_db: f64, settings: &FinalizeSettings, total_frames: u64) -> Self {
        let rate = f64::from(settings.rate_hz);
        let limiter = limiter_at(settings.rate_hz, settings, settings.ceiling_dbtp);
        Self {
            gain: db_to_gain(gain_db) as f32,
            aligned: Aligned::new(limiter.latency_frames(), 2, BLOCK_FRAMES),
            limiter,
            fades: Fades {
                total_frames,
                in_frames: (settings.fade_in_s * rate).round() as u64,
                out_frames: (settings.fade_out_s * rate).round() as u64,
            },
            work: AudioBlock::new(2, BLOCK_FRAMES),
            position: 0,
        }
    }

    /// Renders the whole corrected master, handing each rendered block to
    /// `each`. Returns the limiter's largest gain reduction (dB).
    fn run(
        mut self,
        corrected: &Path,
        rate_hz: u32,
        mut each: impl FnMut(&AudioBlock) -> Result<(), StageError>,
    ) -> Result<f64, StageError> {
        let mut work = std::mem::replace(&mut self.work, AudioBlock::new(0, 0));
        stream_at_rate(AudioInput::open_file(corrected)?, rate_hz, |block| {
            work.set_frames(block.frames());
            for (work, input) in work.channels_mut().zip(block.channels()) {
                work.copy_from_slice(input);
            }
            self.push(&mut work, &mut each)
        })?;
        // The limiter's lookahead holds back its latency: push silence through.
        push_silence(self.aligned.latency_frames(), BLOCK_FRAMES, &mut work, |work| self.push(work, &mut each))?;
        Ok(self.limiter.max_gain_reduction_db())
    }

    /// Processes one block of the corrected master.
    fn push(
        &mut self,
        work: &mut AudioBlock,
        each: &mut impl FnMut(&AudioBlock) -> Result<(), StageError>,
    ) -> Result<(), StageError> {
        for channel in work.channels_mut() {
            for sample in channel.iter_mut() {
                *sample *= self.gain;
            }
        }
        self.limiter.process(work);
        let Some(rendered) = self.aligned.take(work) else { return Ok(()) };
        for channel in rendered.channels_mut() {
            self.fades.apply(self.position, channel);
        }
        self.position += rendered.frames() as u64;
        each(rendered)
    }
}

/// One deliverable being written from the render as it is made: converted
/// to its rate and limited again there, trimmed if asked, encoded, and
/// measured as written.
struct Delivery<'a> {
    target: &'a DeliverableTarget,
    encoder: Encoder,
    analyzer: Analyzer,
    resampler: Option<StreamResampler>,
    /// After a rate conversion: the final limiter again, at the
    /// deliverable's rate. Conversion rebuilds the waveform between the
    /// render's samples and can raise an inter-sample peak a few hundredths
    /// of a dB over the ceiling; limiting those few peaks leaves the
    /// loudness where it was, where trimming the whole file would not.
    relimit: Option<(TruePeakLimiter, Aligned)>,
    converted: Vec<Vec<f32>>,
    block: AudioBlock,
    /// Before the limiter after a conversion: makes up loudness the
    /// conversion lost.
    makeup: f32,
    /// Last, before encoding: brings a peak over the ceiling under it.
    trim: f32,
    /// The written samples through the stores' codecs.
    codecs: Vec<(CodecSpec, RoundTrip)>,
}

/// How a deliverable made again differs from the first render's (dB).
#[derive(Debug, Clone, Copy, Default)]
struct Adjust {
    makeup_db: f64,
    trim_db: f64,
}

impl<'a> Delivery<'a> {
    fn new(
        target: &'a DeliverableTarget,
        settings: &FinalizeSettings,
        tags: &Tags,
        adjust: Adjust,
    ) -> Result<Self, StageError> {
        let spec = EncodeSpec {
            format: target.format,
            bit_depth: target.bit_depth,
            rate_hz: target.rate_hz,
            channels: 2,
            dither: target.dither,
            dither_seed: dither_seed(settings.track_id, &target.name),
        };
        let resampler = (target.rate_hz != settings.rate_hz)
            .then(|| StreamResampler::new(settings.rate_hz, target.rate_hz, 2))
            .transpose()
            .map_err(|e| StageError::Invalid(e.to_string()))?;
        let relimit = resampler.as_ref().map(|_| {
            // The render already sits the limiter's safety margin under the
            // ceiling: this one takes only what the conversion pushed past
            // most of that margin, or it would shave every dense peak and
            // the loudness with them.
            let ceiling_dbtp = settings.ceiling_dbtp + SAFETY_MARGIN_DB - RELIMIT_MARGIN_DB;
            let limiter = limiter_at(target.rate_hz, settings, ceiling_dbtp);
            let aligned = Aligned::new(limiter.latency_frames(), 2, BLOCK_FRAMES);
            (limiter, aligned)
        });
        let codecs = match &settings.codec_check {
            Some(check) if target.codec_checked => check
                .codecs
                .iter()
                .map(|&codec| Ok((codec, RoundTrip::new(codec, target.rate_hz).map_err(codec_error)?)))
                .collect::<Result<Vec<_>, StageError>>()?,
            _ => Vec::new(),
        };
        Ok(Self {
            codecs,
            target,
            encoder: Encoder::create(&target.path, spec, tags)?,
            analyzer: Analyzer::new(target.rate_hz, 2).map_err(|e| StageError::Invalid(e.to_string()))?,
            resampler,
            relimit,
            converted: vec![Vec::new(), Vec::new()],
            block: AudioBlock::new(2, BLOCK_FRAMES),
            makeup: db_to_gain(adjust.makeup_db) as f32,
            trim: db_to_gain(adjust.trim_db) as f32,
        })
    }

    /// Takes a rendered block at the working rate.
    fn push(&mut self, rendered: &AudioBlock) -> Result<(), StageError> {
        match &mut self.resampler {
            None => self.write_all(Some(rendered)),
            Some(resampler) => {
                resampler.push(rendered, &mut self.converted).map_err(|e| StageError::Invalid(e.to_string()))?;
                if self.converted[0].len() >= BLOCK_FRAMES { self.write_all(None) } else { Ok(()) }
            }
        }
    }

    /// Writes `rendered`, or (with `None`) what the resampler has made.
    fn write_all(&mut self, rendered: Option<&AudioBlock>) -> Result<(), StageError> {
        let frames = rendered.map_or(self.converted[0].len(), AudioBlock::frames);
        let mut block = std::mem::replace(&mut self.block, AudioBlock::new(0, 0));
        for start in (0..frames).step_by(BLOCK_FRAMES) {
            let end = (start + BLOCK_FRAMES).min(frames);
            block.set_frames(end - start);
            for (channel, out) in block.channels_mut().enumerate() {
                let input = match rendered {
                    Some(rendered) => &rendered.channel(channel)[start..end],
                    None => &self.converted[channel][start..end],
                };
                for (o, x) in out.iter_mut().zip(input) {
                    *o = x * self.makeup;
                }
            }
            self.encode(&mut block)?;
        }
        self.block = block;
        if rendered.is_none() {
            for c in &mut self.converted {
                c.clear();
            }
        }
        Ok(())
    }

    /// Limits (after a conversion), trims, encodes and measures one block.
    fn encode(&mut self, block: &mut AudioBlock) -> Result<(), StageError> {
        let block = match &mut self.relimit {
            None => block,
            Some((limiter, aligned)) => {
                limiter.process(block);
                match aligned.take(block) {
                    Some(block) => block,
                    None => return Ok(()),
                }
            }
        };
        if self.trim != 1.0 {
            for channel in block.channels_mut() {
                for sample in channel {
                    *sample *= self.trim;
                }
            }
        }
        let written = self.encoder.write(block)?;
        for (_, trip) in &mut self.codecs {
            trip.push(written).map_err(codec_error)?;
        }
        self.analyzer.add(written).map_err(|e| StageError::Invalid(e.to_string()))
    }

    /// Completes the file and returns what it holds.
    fn finish(mut self, tags: &Tags, render: &Analysis) -> Result<Delivered, StageError> {
        if let Some(resampler) = &mut self.resampler {
            resampler.finish(&mut self.converted).map_err(|e| StageError::Invalid(e.to_string()))?;
            self.write_all(None)?;
        }
        if let Some((_, aligned)) = &self.relimit {
            let latency = aligned.latency_frames();
            let mut block = std::mem::replace(&mut self.block, AudioBlock::new(0, 0));
            push_silence(latency, BLOCK_FRAMES, &mut block, |block| self.encode(block))?;
        }
        // bext carries the render's loudness; the file's own is measured.
        let loudness = DeliveredLoudness {
            integrated_lufs: render.integrated_lufs,
            loudness_range_lu: render.loudness_range_lu,
            true_peak_dbtp: render.highest_true_peak_dbtp(),
            max_short_term_lufs: render.max_short_term_lufs,
        };
        // A FLAC is proved readable as it is finished (every frame decoded
        // as written, its STREAMINFO's MD5 checked).
        self.encoder.finish(tags, Some(&loudness))?;
        let analysis = self.analyzer.finish().map_err(|e| StageError::Invalid(e.to_string()))?;
        let path = &self.target.path;
        let size_bytes = std::fs::metadata(path).map_err(|e| StageError::Io(e.to_string()))?.len();
        let codecs = self
            .codecs
            .into_iter()
            .map(|(spec, trip)| {
                Ok(CodecResult {
                    codec: spec.codec,
                    bitrate_kbps: spec.bitrate_kbps(),
                    reading: trip.finish().map_err(codec_error)?,
                })
            })
            .collect::<Result<_, StageError>>()?;
        Ok(Delivered { name: self.target.name.clone(), analysis, size_bytes, codecs })
    }
}

fn codec_error(e: crate::codec::CodecError) -> StageError {
    StageError::Invalid(format!("the codec check: {e}"))
}

/// Renders the corrected master at `gain_db` into every target at once
/// (each with its adjustments), measuring the render as it goes. Returns the
/// limiter's largest gain reduction, the render's analysis and the files.
fn deliver(
    corrected: &Path,
    gain_db: f64,
    settings: &FinalizeSettings,
    total_frames: u64,
    targets: &[(&DeliverableTarget, Adjust)],
    tags: &Tags,
) -> Result<(f64, Analysis, Vec<Delivered>), StageError> {
    let deliveries = targets
        .iter()
        .map(|(target, adjust)| Delivery::new(target, settings, tags, *adjust))
        .collect::<Result<Vec<_>, _>>()?;
    let invalid = |e: crate::analysis::AnalysisError| StageError::Invalid(e.to_string());
    let mut analyzer =
        AnalyzerThread::spawn(Analyzer::new(settings.rate_hz, 2).map_err(invalid)?, BLOCK_FRAMES).map_err(invalid)?;
    // Each deliverable converts, encodes and measures on a thread of its
    // own, taking the rendered blocks in order from a short queue: the
    // bytes do not depend on the threads, and a lone track's finalize uses
    // every core.
    std::thread::scope(|scope| {
        let mut queues = Vec::with_capacity(deliveries.len());
        let mut workers = Vec::with_capacity(deliveries.len());
        for mut delivery in deliveries {
            let (queue, blocks) = std::sync::mpsc::sync_channel::<std::sync::Arc<AudioBlock>>(4);
            queues.push(queue);
            workers.push(scope.spawn(move || -> Result<Delivery, StageError> {
                for block in blocks {
                    delivery.push(&block)?;
                }
                Ok(delivery)
            }));
        }
        // The rendered blocks go round: a block every deliverable has let
        // go of is filled again, so a render allocates only while the
        // queues first fill.
        let mut pool: Vec<std::sync::Arc<AudioBlock>> = Vec::new();
        let rendered = Renderer::new(gain_db, settings, total_frames).run(corrected, settings.rate_hz, |rendered| {
            let index = pool.iter_mut().position(|block| {
                std::sync::Arc::get_mut(block).is_some_and(|b| b.capacity_frames() >= rendered.frames())
            });
            let index = index.unwrap_or_else(|| {
                let frames = rendered.frames().max(BLOCK_FRAMES);
                pool.push(std::sync::Arc::new(AudioBlock::new(rendered.channel_count(), frames)));
                pool.len() - 1
            });
            let block = std::sync::Arc::get_mut(&mut pool[index]).expect("no deliverable holds it");
            block.set_frames(rendered.frames());
            for (to, from) in block.channels_mut().zip(rendered.channels()) {
                to.copy_from_slice(from);
            }
            let shared = pool[index].clone();
            for queue in &queues {
                // A closed queue means its deliverable failed: stop, and
                // report its error below.
                queue.send(shared.clone()).map_err(|_| StageError::Cancelled)?;
            }
            analyzer.add(rendered).map_err(|e| StageError::Invalid(e.to_string()))
        });
        drop(queues);
        let finished: Vec<Result<Delivery, StageError>> = workers
            .into_iter()
            .map(|worker| {
                worker.join().unwrap_or_else(|_| Err(StageError::Invalid("a deliverable's thread panicked".into())))
            })
            .collect();
        let deliveries = finished.into_iter().collect::<Result<Vec<_>, _>>()?;
        let reduction_db = rendered?;
        let render = analyzer.finish().map_err(|e| StageError::Invalid(e.to_string()))?;
        let delivered = std::thread::scope(|scope| {
            let finishing: Vec<_> = deliveries.into_iter().map(|d| scope.spawn(|| d.finish(tags, &render))).collect();
            finishing
                .into_iter()
                .map(|f| {
                    f.join().unwrap_or_else(|_| Err(StageError::Invalid("a deliverable's thread panicked".into())))
                })
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok((reduction_db, render, delivered))
    })
}

/// A loudness probe: the render at `gain_db`, measured for loudness and
/// balance (no true peaks, nothing written). Returns its analysis and the
/// limiter's largest gain reduction.
fn probe(
    corrected: &Path,
    gain_db: f64,
    settings: &FinalizeSettings,
    total_frames: u64,
) -> Result<(Analysis, f64), StageError> {
    let invalid = |e: crate::analysis::AnalysisError| StageError::Invalid(e.to_string());
    let mut analyzer =
        AnalyzerThread::spawn(Analyzer::without_true_peaks(settings.rate_hz, 2).map_err(invalid)?, BLOCK_FRAMES)
            .map_err(invalid)?;
    let reduction_db = Renderer::new(gain_db, settings, total_frames)
        .run(corrected, settings.rate_hz, |rendered| analyzer.add(rendered).map_err(invalid))?;
    Ok((analyzer.finish().map_err(invalid)?, reduction_db))
}

/// The loudness gain, found by probes over the corrected audio starting
/// from `start_gain_db` (whose render `first_probe` may already hold):
/// the gain, the loudness it gives, the probes run
/// and the last probe's analysis (the render's balance, as delivered).
///
/// Where a probe's balance already `needs_room` (the curve is to be
/// redesigned before anything is delivered) and the gain has only a small
/// step up left to go, the probes stop there: more gain means more
/// limiting, so the redesign is needed all the same, and the probe reads
/// the limiter's share within that step of the final gain. The gain
/// returned is then the one the next probe would have tried, from which
/// the next round starts.
fn find_gain(
    corrected: &Path,
    start_gain_db: f64,
    first_probe: Option<(Analysis, f64)>,
    correction: &Correction,
    settings: &FinalizeSettings,
    total_frames: u64,
    needs_room: impl Fn(&Analysis) -> bool,
) -> Result<(f64, Option<f64>, u32, Analysis), StageError> {
    let budget_db = settings.max_limiter_gain_reduction_db;
    let mut gain_db = start_gain_db;
    let (mut analysis, mut reduction_db) = match first_probe {
        Some(probed) => probed,
        None => probe(corrected, gain_db, settings, total_frames)?,
    };
    let mut lufs = analysis.integrated_lufs;
    let mut probes = 1;
    // How loudness follows gain: 1 dB per dB until the limiter bends it.
    let mut slope = 1.0;
    while probes < MAX_PROBES {
        let over_budget_db = reduction_db - budget_db;
        let step_db = if over_budget_db > BUDGET_TOLERANCE_DB {
            // Too much limiting: the peaks come down with the gain.
            -over_budget_db
        } else {
            match lufs.map(|lufs| correction.target_lufs - lufs) {
                Some(miss) if miss > LOUDNESS_TOLERANCE_LU => (miss / slope).min(budget_db - reduction_db).max(0.0),
                Some(miss) if miss < -LOUDNESS_TOLERANCE_LU => miss / slope,
                _ => 0.0,
            }
        };
        if step_db.abs() < 1e-3 {
            break;
        }
        if (0.0..=ROOM_FIRST_STEP_DB).contains(&step_db) && needs_room(&analysis) {
            return Ok((gain_db + step_db, lufs, probes, analysis));
        }
        let (next, next_reduction_db) = probe(corrected, gain_db + step_db, settings, total_frames)?;
        if let (Some(before), Some(after)) = (lufs, next.integrated_lufs) {
            slope = ((after - before) / step_db).clamp(0.2, 1.0);
        }
        (gain_db, lufs, reduction_db) = (gain_db + step_db, next.integrated_lufs, next_reduction_db);
        analysis = next;
        probes += 1;
    }
    Ok((gain_db, lufs, probes, analysis))
}

/// The final limiter's own share of the realised correction, per band:
/// the balance of the render or of any deliverable against the master's
/// (the furthest reading of all the files), less the EQ's part at
/// `share` (its response at equal loudness). `None` where the master has
/// too little to read.
fn limiter_share_db(
    correction: &Correction,
    share: f64,
    render: &Analysis,
    delivered: &[Delivered],
    rate_hz: u32,
) -> (Vec<Option<f64>>, Vec<f64>) {
    let mut realised = realised_correction_db(&correction.master_balance_db, render);
    for file in delivered {
        for (furthest, r) in
            realised.iter_mut().zip(realised_correction_db(&correction.master_balance_db, &file.analysis))
        {
            if let (Some(f), Some(r)) = (furthest.as_mut(), r)
                && r.abs() > f.abs()
            {
                *f = r;
            }
        }
    }
    let eq = equal_loudness_response_db(
        &correction.curve_scaled(share),
        &correction.master_balance_db,
        &BAND_CENTRES_HZ,
        rate_hz,
    );
    (realised.iter().zip(&eq).map(|(r, e)| r.map(|r| r - e)).collect(), eq)
}

/// `current` (the planned correction, or one already redesigned from it)
/// at `share` redesigned with room for the final limiter's own share as
/// `render` and `delivered` measure it (room only where the limiter needs
/// it; see [`Correction::making_room`]). The warning says how far the
/// curve now is from the plan's, replacing an earlier round's.
fn make_room(
    planned: &Correction,
    current: &Correction,
    share: f64,
    measured: (&Analysis, &[Delivered]),
    rate_hz: u32,
    warnings: &mut Vec<String>,
) -> Correction {
    let (limiter_db, _) = limiter_share_db(current, share, measured.0, measured.1, rate_hz);
    let (room, _) = current.making_room(share, &limiter_db, LIMITER_SHARE_DB, rate_hz);
    let pulled_in_db =
        room.curve_db.iter().zip(planned.curve_scaled(share)).fold(0f64, |m, (r, p)| m.max((r - p).abs()));
    warnings.retain(|w| !w.starts_with(PULLED_IN));
    warnings.push(format!(
        "{PULLED_IN} by up to {pulled_in_db:.1} dB where the final limiter's own share took the delivered balance past ±{:.1} dB; elsewhere the curve is as planned",
        planned.max_correction_db
    ));
    room
}

const PULLED_IN: &str = "the album pass's EQ was pulled in";

/// The largest step up of the gain still to go at which a probe that
/// needs room has the curve redesigned at once (dB; see [`find_gain`]).
const ROOM_FIRST_STEP_DB: f64 = 0.25;

/// How many times the curve may be redesigned from the probes: each
/// round reads the limiter's share with the curve as last redesigned.
const ROOM_ROUNDS: usize = 3;

/// When the realised correction passes the cap by more than the
/// limiter's allowance somewhere, the share of the curve that keeps it
/// within: the EQ's part scales with the share, the limiter's is taken
/// as it was measured.
fn share_within_cap(
    correction: &Correction,
    share: f64,
    render: &Analysis,
    delivered: &[Delivered],
    rate_hz: u32,
) -> Option<f64> {
    let (limiter_db, eq) = limiter_share_db(correction, share, render, delivered, rate_hz);
    let allowed = correction.max_correction_db + LIMITER_SHARE_DB;
    let fits = |s: f64, margin: f64| {
        limiter_db.iter().zip(&eq).all(|(l, e)| l.is_none_or(|l| (s / share * e + l).abs() <= allowed - margin))
    };
    if fits(share, 0.0) || share <= 0.0 {
        return None;
    }
    let mut smaller = share;
    while smaller > 0.0 && !fits(smaller, 0.05) {
        smaller = (smaller - 0.05).max(0.0);
    }
    Some(smaller)
}

/// A deliverable at another rate is limited again at its rate, so its
/// peaks hold; but a conversion down also drops what lay above the new
/// Nyquist, and with it some loudness (a 44.1 kHz file of a 48 kHz render
/// loses its 20–24 kHz). Such a file is made again with the loss made up
/// before its limiter. A file that still measures over the ceiling by
/// either reading (the limiter holds both, but dither and quantisation add
/// their own peaks) is made again trimmed by its excess. At most two more
/// renders; returns how many there were.
#[allow(clippy::too_many_arguments)]
fn make_again(
    corrected: &Path,
    gain_db: f64,
    settings: &FinalizeSettings,
    total_frames: u64,
    render: &Analysis,
    deliverables: &[DeliverableTarget],
    delivered: &mut [Delivered],
    tags: &Tags,
) -> Result<u32, StageError> {
    let mut adjusts = vec![Adjust::default(); deliverables.len()];
    let mut made_up = vec![false; deliverables.len()];
    let mut passes = 0;
    for _ in 0..2 {
        let again: Vec<usize> = (0..deliverables.len())
            .filter(|&i| {
                let file = &delivered[i].analysis;
                let excess_db = file.highest_true_peak_dbtp() - settings.ceiling_dbtp;
                let lost_lu = match (render.integrated_lufs, file.integrated_lufs) {
                    (Some(render), Some(file)) => render - file,
                    _ => 0.0,
                };
                if deliverables[i].rate_hz != settings.rate_hz
                    && !made_up[i]
                    && lost_lu.abs() > CONVERSION_LOUDNESS_TOLERANCE_LU
                {
                    made_up[i] = true;
                    adjusts[i].makeup_db += lost_lu;
                    true
                } else if excess_db > 0.0 {
                    adjusts[i].trim_db -= excess_db + CONVERSION_MARGIN_DB;
                    true
                } else {
                    false
                }
            })
            .collect();
        if again.is_empty() {
            break;
        }
        let targets: Vec<(&DeliverableTarget, Adjust)> =
            again.iter().map(|&i| (&deliverables[i], adjusts[i])).collect();
        let (_, _, files) = deliver(corrected, gain_db, settings, total_frames, &targets, tags)?;
        for (&i, file) in again.iter().zip(files) {
            delivered[i] = file;
        }
        passes += 1;
    }
    Ok(passes)
}

/// What every render of one track's finalize shares.
struct Run<'a> {
    corrected: &'a Path,
    correction: &'a Correction,
    settings: &'a FinalizeSettings<'a>,
    total_frames: u64,
    tags: &'a Tags,
}

/// Holds the streaming deliverables' decoded peaks at the codec ceiling:
/// where a codec's decoded audio reads over it, they are rendered again
/// with the final limiter's ceiling lowered by the excess (in steps of
/// [`CODEC_STEP_DB`]) and the loudness found again at that ceiling, within
/// the limiter budget; at most [`MAX_CODEC_PASSES`] times. Returns the
/// report and the renders it took.
fn hold_codec_ceiling(
    run: &Run,
    check: &CodecCheck,
    (gain_db, lufs, reduction_db): (f64, Option<f64>, f64),
    deliverables: &[DeliverableTarget],
    delivered: &mut [Delivered],
    warnings: &mut Vec<String>,
) -> Result<(CodecCheckReport, u32), StageError> {
    let streaming: Vec<usize> = (0..deliverables.len()).filter(|&i| deliverables[i].codec_checked).collect();
    let before: Vec<Vec<CodecResult>> = streaming.iter().map(|&i| delivered[i].codecs.clone()).collect();
    let excess_db = |delivered: &[Delivered]| {
        streaming
            .iter()
            .flat_map(|&i| &delivered[i].codecs)
            .map(|c| c.reading.highest_true_peak_dbtp() - check.ceiling_dbtp)
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let settings = run.settings;
    let mut lowered_db = 0.0;
    let (mut streaming_gain_db, mut lufs, mut reduction_db) = (gain_db, lufs, reduction_db);
    let mut renders = 0;
    while renders < MAX_CODEC_PASSES && excess_db(delivered) > 0.0 {
        // A whole number of steps (divided last, so 0.3 reads 0.3).
        let steps = ((lowered_db + excess_db(delivered) + CODEC_STEP_DB) / CODEC_STEP_DB).ceil();
        lowered_db = steps * (CODEC_STEP_DB * 100.0).round() / 100.0;
        let lowered = FinalizeSettings { ceiling_dbtp: settings.ceiling_dbtp - lowered_db, ..settings.clone() };
        let (gain_db, found_lufs, _, _) =
            find_gain(run.corrected, streaming_gain_db, None, run.correction, &lowered, run.total_frames, |_| false)?;
        let subset: Vec<DeliverableTarget> = streaming.iter().map(|&i| deliverables[i].clone()).collect();
        let targets: Vec<(&DeliverableTarget, Adjust)> = subset.iter().map(|d| (d, Adjust::default())).collect();
        let (reduction, render, mut files) =
            deliver(run.corrected, gain_db, &lowered, run.total_frames, &targets, run.tags)?;
        renders +=
            1 + make_again(run.corrected, gain_db, &lowered, run.total_frames, &render, &subset, &mut files, run.tags)?;
        for (&i, file) in streaming.iter().zip(files) {
            delivered[i] = file;
        }
        (streaming_gain_db, lufs, reduction_db) = (gain_db, found_lufs, reduction);
    }
    let held_back_db = lufs.map_or(0.0, |lufs| (run.correction.target_lufs - lufs).max(0.0));
    if lowered_db > 0.0 {
        warnings.push(format!(
            "its streaming deliverables' ceiling was lowered {lowered_db:.2} dB to {:.2} dBTP: through the stores' codecs they read over the codec ceiling of {:.1} dBTP",
            settings.ceiling_dbtp - lowered_db,
            check.ceiling_dbtp
        ));
    }
    if lowered_db > 0.0 && held_back_db > LOUDNESS_TOLERANCE_LU {
        warnings.push(format!(
            "its streaming deliverables were delivered {held_back_db:.1} dB under the loudness target: holding their codec peaks under {:.1} dBTP would take more than the {:.1} dB of limiting allowed",
            check.ceiling_dbtp, settings.max_limiter_gain_reduction_db
        ));
    }
    let still_db = excess_db(delivered);
    if still_db > 0.0 {
        warnings.push(format!(
            "through the stores' codecs its streaming deliverables still read {still_db:.2} dB over the codec ceiling after {MAX_CODEC_PASSES} lowered renders"
        ));
    }
    let rows = streaming
        .iter()
        .zip(before)
        .flat_map(|(&i, before)| {
            let name = &deliverables[i].name;
            before.into_iter().zip(delivered[i].codecs.clone()).map(move |(before, after)| CodecRow {
                deliverable: name.clone(),
                codec: before.codec,
                bitrate_kbps: before.bitrate_kbps,
                before: before.reading,
                after: after.reading,
            })
        })
        .collect();
    let report = CodecCheckReport {
        codec_ceiling_dbtp: check.ceiling_dbtp,
        lowered_db,
        streaming_ceiling_dbtp: settings.ceiling_dbtp - lowered_db,
        gain_db: streaming_gain_db,
        limiter_gain_reduction_db: reduction_db,
        held_back_db,
        rows,
    };
    Ok((report, renders))
}

/// Finalizes one track into every deliverable.
///
/// The master is corrected (EQ) once; the loudness gain is then found by
/// probes that run only gain, limiter and fades over the corrected audio
/// and read the loudness — the same path the delivery renders, so the
/// render lands where the last probe did — and every deliverable is
/// written from one render. A second render happens only when converting
/// a deliverable's rate raised a peak over the ceiling.
pub fn finalize_track(
    master: &Path,
    correction: &Correction,
    settings: &FinalizeSettings,
    deliverables: &[DeliverableTarget],
    tags: &Tags,
) -> Result<FinalizeReport, StageError> {
    let planned = correction;
    let mut warnings = Vec::new();
    // The corrected master waits in a scratch file beside the first
    // deliverable (the same disk), removed however this ends: memory stays
    // bounded by the block size whatever the track's length.
    let scratch_dir =
        deliverables.first().and_then(|d| d.path.parent()).map_or_else(std::env::temp_dir, Path::to_path_buf);
    let scratch = tempfile::Builder::new()
        .prefix(".lacquer-corrected-")
        .suffix(".wav")
        .tempfile_in(&scratch_dir)
        .map_err(|e| StageError::Io(format!("cannot create a scratch file in {}: {e}", scratch_dir.display())))?;
    let total_frames = master_frames(master)?;
    // Corrected, probed and rendered with as much of the planned curve as
    // keeps the dynamics; then, once more at a smaller share, if the final
    // limiter's own spectral share (it works hardest on the bass-heavy
    // peaks) pushed the realised correction past the cap.
    let mut max_share = 1.0;
    let mut redesigned: Option<Correction> = None;
    let mut room_rounds = 0;
    let mut corrected: &Path;
    let mut renders = 0;
    // The smallest share that kept the loudness range, where one had to.
    let mut kept_dynamics: Option<(f64, f64)> = None;
    // What a round's probes found: the gain and the corrected loudness it
    // was found over. A later round (the curve redesigned by a little)
    // starts from there, the limiter's take on loudness already in it.
    let mut learned: Option<(f64, f64)> = None;
    let (correction_scale, corrected_lra_lu, gain_db, lufs, probes, reduction_db, render, mut delivered) = loop {
        let correction = redesigned.as_ref().unwrap_or(planned);
        // A flat curve leaves the master as it is: it is rendered from as
        // it stands, its loudness the one the plan measured on it (the
        // plan's gain brings that to the target).
        corrected = if correction.is_flat() { master } else { scratch.path() };
        let (share, corrected_lufs, corrected_lra_lu) = if correction.is_flat() {
            (max_share, Some(correction.target_lufs - correction.gain_db), correction.master_lra_lu)
        } else {
            correct_keeping_dynamics(master, correction, max_share, settings.rate_hz, corrected)?
        };
        if share < max_share {
            kept_dynamics = Some((share, corrected_lra_lu));
        }
        // The gain to the target from the corrected audio's loudness (the
        // EQ moved it); the limiter's share is what the probes find.
        let start_gain_db = match (learned, corrected_lufs) {
            (Some((gain_db, found_over_lufs)), Some(lufs)) => gain_db + found_over_lufs - lufs,
            _ => corrected_lufs.map_or(correction.gain_db, |lufs| correction.target_lufs - lufs),
        };
        let untrimmed: Vec<(&DeliverableTarget, Adjust)> =
            deliverables.iter().map(|d| (d, Adjust::default())).collect();
        // Where the final limiter will barely work, the start gain lands on
        // the target: the first render is delivered as it is made, and is
        // the first probe too; so too where an earlier round's probes
        // found the gain. Where the limiter will work harder (it takes
        // loudness as it limits), probes come first.
        let mut first_delivery = None;
        if correction.expected_limiting_db <= DELIVER_FIRST_LIMITING_DB || learned.is_some() {
            let delivery = deliver(corrected, start_gain_db, settings, total_frames, &untrimmed, tags)?;
            renders += 1;
            first_delivery = Some(delivery);
        }
        let first_probe = first_delivery.as_ref().map(|(reduction_db, render, _)| (render.clone(), *reduction_db));
        let (gain_db, lufs, probes, probed) =
            find_gain(corrected, start_gain_db, first_probe, correction, settings, total_frames, |probed| {
                room_rounds < ROOM_ROUNDS
                    && share_within_cap(correction, share, probed, &[], settings.rate_hz).is_some()
            })?;
        learned = corrected_lufs.map(|corrected_lufs| (gain_db, corrected_lufs));
        let (reduction_db, render, delivered) = match first_delivery.filter(|_| probes == 1) {
            Some(delivery) => delivery,
            None => {
                // The last probe is the render to the bit, balance and all:
                // where the final limiter's share already takes it past the
                // cap, room is made before anything is written.
                if room_rounds < ROOM_ROUNDS
                    && share_within_cap(correction, share, &probed, &[], settings.rate_hz).is_some()
                {
                    room_rounds += 1;
                    redesigned =
                        Some(make_room(planned, correction, share, (&probed, &[]), settings.rate_hz, &mut warnings));
                    continue;
                }
                renders += 1;
                deliver(corrected, gain_db, settings, total_frames, &untrimmed, tags)?
            }
        };
        match share_within_cap(correction, share, &render, &delivered, settings.rate_hz) {
            Some(_) if room_rounds < ROOM_ROUNDS => {
                room_rounds += 1;
                redesigned =
                    Some(make_room(planned, correction, share, (&render, &delivered), settings.rate_hz, &mut warnings));
            }
            Some(smaller) if max_share == 1.0 && smaller < share - 0.01 => {
                warnings.push(format!(
                    "the album pass's EQ was applied at {:.0}% of the planned curve: with the final limiter's own share ({reduction_db:.1} dB of limiting) the full curve went past ±{:.1} dB",
                    100.0 * smaller,
                    correction.max_correction_db
                ));
                max_share = smaller;
            }
            _ => break (share, corrected_lra_lu, gain_db, lufs, probes, reduction_db, render, delivered),
        }
    };
    let correction = redesigned.as_ref().unwrap_or(planned);
    if let Some((share, lra_lu)) = kept_dynamics {
        warnings.push(format!(
            "the album pass's EQ was applied at {:.0}% of the planned curve: in full it would have moved the loudness range by more than {MAX_LRA_CHANGE_LU} LU from the master's {:.1} LU (it lifts or cuts bands that some passages lean on more than others); at this share it is {lra_lu:.1} LU",
            100.0 * share,
            correction.master_lra_lu
        ));
    }
    let budget_db = settings.max_limiter_gain_reduction_db;
    let held_back_db = lufs.map_or(0.0, |lufs| (correction.target_lufs - lufs).max(0.0));
    if held_back_db > LOUDNESS_TOLERANCE_LU {
        warnings.push(format!(
            "delivered {held_back_db:.1} dB under its loudness target ({:.1} LUFS): reaching it would take more than the {budget_db:.1} dB of limiting allowed (max_limiter_gain_reduction_db)",
            correction.target_lufs
        ));
    }

    let mut passes = renders;
    passes += make_again(corrected, gain_db, settings, total_frames, &render, deliverables, &mut delivered, tags)?;
    let codec_check = match &settings.codec_check {
        Some(check) => {
            let run = Run { corrected, correction, settings, total_frames, tags };
            let (report, renders) = hold_codec_ceiling(
                &run,
                check,
                (gain_db, lufs, reduction_db),
                deliverables,
                &mut delivered,
                &mut warnings,
            )?;
            passes += renders;
            Some(report)
        }
        None => None,
    };
    let delivered_lra_lu = delivered.first().map_or(render.loudness_range_lu, |d| d.analysis.loudness_range_lu);
    if (delivered_lra_lu - correction.master_lra_lu).abs() > MAX_LRA_CHANGE_LU {
        warnings.push(format!(
            "its loudness range moved from {:.1} LU (master) to {delivered_lra_lu:.1} LU: the EQ kept it at {corrected_lra_lu:.1} LU, the final limiter took up to {reduction_db:.1} dB off the loudest peaks",
            correction.master_lra_lu
        ));
    }
    Ok(FinalizeReport {
        gain_db,
        limiter_gain_reduction_db: reduction_db,
        held_back_db,
        passes,
        probes,
        correction_scale,
        corrected_lra_lu,
        render,
        delivered,
        codec_check: codec_check.map(Box::new),
        redesigned: redesigned.map(Box::new),
        warnings,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::EncodeSpec;

    /// Four seconds of stereo noise at 48 kHz, as a corrected master is
    /// kept (32-bit float WAV).
    fn write_noise(path: &Path) {
        let spec = EncodeSpec {
            format: AudioFormat::Wav,
            bit_depth: 32,
            rate_hz: 48_000,
            channels: 2,
            dither: Dither::None,
            dither_seed: 0,
        };
        let mut encoder = Encoder::create(path, spec, &Tags::default()).unwrap();
        let mut seed = 7u32;
        let mut noise = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((seed >> 8) as f32 / (1 << 24) as f32 - 0.5) * 0.8
        };
        for _ in 0..4 {
            let channels = (0..2).map(|_| (0..48_000).map(|_| noise()).collect()).collect();
            encoder.write(&AudioBlock::from_planar(channels)).unwrap();
        }
        encoder.finish(&Tags::default(), None).unwrap();
    }

    #[test]
    fn probes_stop_for_room_only_a_small_step_up_from_the_gain() {
        let dir = tempfile::tempdir().unwrap();
        let corrected = dir.path().join("corrected.wav");
        write_noise(&corrected);
        let settings = FinalizeSettings {
            track_id: "t",
            rate_hz: 48_000,
            ceiling_dbtp: -1.0,
            limiter: Limiter { release_ms: 60.0, lookahead_ms: 1.5 },
            fade_in_s: 0.0,
            fade_out_s: 0.0,
            max_limiter_gain_reduction_db: 6.0,
            codec_check: None,
        };
        // 20 dB down the limiter never works: loudness follows the gain.
        let measured = crate::stages::finalize::measure_file(&corrected).unwrap().integrated_lufs.unwrap();
        let correction: Correction = serde_json::from_value(serde_json::json!({
            "gain_db": -20.0, "target_lufs": measured - 20.0, "curve_db": [], "max_correction_db": 4.0,
            "master_balance_db": [], "master_lra_lu": 5.0, "expected_limiting_db": 0.0, "warnings": []
        }))
        .unwrap();
        let find = |start_gain_db: f64, needs_room: bool| {
            find_gain(&corrected, start_gain_db, None, &correction, &settings, 4 * 48_000, |_| needs_room).unwrap()
        };
        // 0.1 dB short and the curve needs room: one probe, and the gain a
        // second would have tried.
        let (gain_db, _, probes, _) = find(-20.1, true);
        assert_eq!(probes, 1);
        assert!((gain_db + 20.0).abs() < 1e-3, "{gain_db}");
        // Not when room is not needed, nor for a step too large to read the
        // limiter's share from, nor for a step down (less limiting to come).
        for (start_gain_db, needs_room) in [(-20.1, false), (-21.0, true), (-19.8, true)] {
            let (gain_db, _, probes, _) = find(start_gain_db, needs_room);
            assert_eq!(probes, 2, "from {start_gain_db} dB, room {needs_room}");
            assert!((gain_db + 20.0).abs() < 1e-3, "from {start_gain_db} dB: {gain_db}");
        }
    }
}
