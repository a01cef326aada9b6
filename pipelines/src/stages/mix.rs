//! The mix stage: a track's stems to a stereo mix with headroom.
//!
//! Each stem is decoded, converted to the working rate, placed at its
//! offset after the trimmed start, and run through its strip: gain and
//! polarity → EQ → compressor → gain automation → sends (after automation,
//! before pan) → pan (the manifest's pan law for mono stems, balance for
//! stereo ones) → the stereo sum. Returns (reverb or delay → EQ → gain) are
//! rendered until their tails fall below -96 dBFS. The sum is never
//! compressed or limited: its sample peak is set to `mix.headroom_dbfs` by
//! one gain. Every processor here has zero latency, so stems and returns
//! stay sample-aligned.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{AudioInput, BLOCK_FRAMES, StageError, float_wav, stream_at_rate};
use crate::dsp::biquad::FilterChain;
use crate::dsp::compressor::Compressor;
use crate::dsp::delay::Delay;
use crate::dsp::envelope::{Lane, apply_pan_lane, balance_gains, pan_gains};
use crate::dsp::reverb::Reverb;
use crate::dsp::units::{db_to_gain, gain_to_db};
use crate::dsp::{AudioBlock, Processor};
use crate::encode::{Encoder, Tags};
use crate::manifest::{MixSettings, Return, Stem};

/// Where return tails end.
const TAIL_FLOOR_DBFS: f64 = -96.0;
/// Returns ring out for at most this long.
const MAX_TAIL_S: f64 = 30.0;

/// What the mix stage did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixReport {
    pub frames: u64,
    /// The sum's sample peak before the headroom gain (dBFS).
    pub peak_before_dbfs: f64,
    /// The gain that set the peak to the headroom (dB).
    pub headroom_gain_db: f64,
    /// Integrated loudness of the mix as written (LUFS).
    pub integrated_lufs: Option<f64>,
    pub warnings: Vec<String>,
}

/// Everything the mix stage reads for one track, and where it writes: its
/// task's key is this, hashed (see `tasks::MasterSpec`).
#[derive(Debug, Clone, Serialize)]
pub struct MixSpec {
    pub output_key: String,
    pub rate_hz: u32,
    pub mix: MixSettings,
    pub track_id: String,
    pub stems: Vec<Stem>,
    pub returns: BTreeMap<String, Return>,
    pub trim_start_s: f64,
    /// The content hash of each stem's file, in `stems` order.
    pub stem_hashes: Vec<String>,
    /// Written into `mix/<id>.wav`.
    pub tags: Tags,
}

/// Mixes a track as `spec` says from its stems (`stems[i]` is
/// `spec.stems[i]`'s file; muted stems may be `None`) and writes the
/// 32-bit float mix to `output`.
pub fn mix_track(spec: &MixSpec, stems: Vec<Option<AudioInput>>, output: &Path) -> Result<MixReport, StageError> {
    let rate_hz = spec.rate_hz;
    let stem_settings = &spec.stems;
    if stems.len() != stem_settings.len() {
        return Err(StageError::Invalid(format!(
            "track {}: {} stem files for {} stems",
            spec.track_id,
            stems.len(),
            stem_settings.len()
        )));
    }
    let returns = &spec.returns;
    // Scratch files sit beside the output (the same disk).
    let scratch_dir = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut sum = Stereo::new(scratch_dir)?;
    let mut buses = BTreeMap::new();
    for name in returns.keys() {
        buses.insert(name.as_str(), Stereo::new(scratch_dir)?);
    }
    let mut warnings = Vec::new();

    for (stem, input) in stem_settings.iter().zip(stems) {
        if stem.mute {
            continue;
        }
        let Some(input) = input else {
            return Err(StageError::Invalid(format!("track {}: stem {} has no file", spec.track_id, stem.name)));
        };
        let clipped = render_stem(spec, stem, input, &mut sum, &mut buses)?;
        if clipped > 0 {
            warnings.push(format!("stem `{}` clips on input: {clipped} samples at or above full scale", stem.name));
        }
    }
    for (name, settings) in returns {
        if let Some(bus) = buses.remove(name.as_str()) {
            render_return(rate_hz, settings, bus, &mut sum)?;
        }
    }

    let frames = sum.len();
    let mut block = AudioBlock::new(2, BLOCK_FRAMES);
    let mut peak = 0f32;
    for start in (0..frames).step_by(BLOCK_FRAMES) {
        block.set_frames((frames - start).min(BLOCK_FRAMES));
        sum.read(start, &mut block)?;
        peak = block.channels().flatten().fold(peak, |m, s| m.max(s.abs()));
    }
    let peak_before_dbfs = gain_to_db(f64::from(peak));
    let headroom_gain_db = if peak > 0.0 {
        spec.mix.headroom_dbfs - peak_before_dbfs
    } else {
        warnings.push("the mix is silent".to_owned());
        0.0
    };
    let gain = db_to_gain(headroom_gain_db) as f32;
    let tags = &spec.tags;
    // Only the mix's loudness is wanted (it sets the master's input gain).
    let mut meter = crate::meter::Meter::loudness_only(rate_hz, 2);
    let mut encoder = Encoder::create(output, float_wav(rate_hz, 2), tags)?;
    for start in (0..frames).step_by(BLOCK_FRAMES) {
        block.set_frames((frames - start).min(BLOCK_FRAMES));
        sum.read(start, &mut block)?;
        for sample in block.channels_mut().flatten() {
            *sample *= gain;
        }
        meter.add(&block);
        encoder.write(&block)?;
    }
    encoder.finish(tags, None)?;
    let integrated_lufs = crate::analysis::integrated_lufs(&meter.finish().segment_energies);
    let frames = frames as u64;
    Ok(MixReport { frames, peak_before_dbfs, headroom_gain_db, integrated_lufs, warnings })
}

/// A stereo sum that grows as stems land on it, kept in a scratch file
/// (interleaved f32 frames) so that memory stays bounded by the block size
/// whatever the track's length.
struct Stereo {
    file: std::fs::File,
    frames: usize,
    bytes: Vec<u8>,
}

const FRAME_BYTES: usize = 8;

impl Stereo {
    fn new(scratch_dir: &Path) -> Result<Self, StageError> {
        let file = tempfile::tempfile_in(scratch_dir)
            .map_err(|e| StageError::Io(format!("cannot create a scratch file in {}: {e}", scratch_dir.display())))?;
        Ok(Self { file, frames: 0, bytes: Vec::with_capacity(BLOCK_FRAMES * FRAME_BYTES) })
    }

    fn len(&self) -> usize {
        self.frames
    }

    /// Adds `gain ×` the two channels at frame `at`.
    fn add(&mut self, at: usize, left: &[f32], right: &[f32], gain: f32) -> Result<(), StageError> {
        for start in (0..left.len()).step_by(BLOCK_FRAMES) {
            let frames = (left.len() - start).min(BLOCK_FRAMES);
            let position = at + start;
            self.load(position, frames)?;
            for (i, frame) in self.bytes.chunks_exact_mut(FRAME_BYTES).enumerate() {
                for (half, x) in frame.chunks_exact_mut(4).zip([left[start + i], right[start + i]]) {
                    let sum = f32::from_le_bytes(half.try_into().expect("4 bytes")) + gain * x;
                    half.copy_from_slice(&sum.to_le_bytes());
                }
            }
            self.seek(position)?;
            // Past the end, the file grows (any gap reads as zeros).
            self.file.write_all(&self.bytes).map_err(scratch_error)?;
            self.frames = self.frames.max(position + frames);
        }
        Ok(())
    }

    /// Reads `block.frames()` frames from frame `at` (silence past the end).
    fn read(&mut self, at: usize, block: &mut AudioBlock) -> Result<(), StageError> {
        self.load(at, block.frames())?;
        let (left, right) = block.stereo_mut();
        for ((frame, l), r) in self.bytes.chunks_exact(FRAME_BYTES).zip(left.iter_mut()).zip(right.iter_mut()) {
            *l = f32::from_le_bytes(frame[..4].try_into().expect("4 bytes"));
            *r = f32::from_le_bytes(frame[4..].try_into().expect("4 bytes"));
        }
        Ok(())
    }

    /// Fills `bytes` with `frames` frames from `position`, zeros past the end.
    fn load(&mut self, position: usize, frames: usize) -> Result<(), StageError> {
        self.bytes.clear();
        self.bytes.resize(frames * FRAME_BYTES, 0);
        let stored = self.frames.saturating_sub(position).min(frames);
        if stored > 0 {
            self.seek(position)?;
            self.file.read_exact(&mut self.bytes[..stored * FRAME_BYTES]).map_err(scratch_error)?;
        }
        Ok(())
    }

    fn seek(&mut self, frame: usize) -> Result<(), StageError> {
        self.file.seek(SeekFrom::Start((frame * FRAME_BYTES) as u64)).map_err(scratch_error)?;
        Ok(())
    }
}

fn scratch_error(e: std::io::Error) -> StageError {
    StageError::Io(format!("the mix's scratch file: {e}"))
}

/// Renders one stem into the sum and its sends; returns how many input
/// samples were at or above full scale.
fn render_stem(
    spec: &MixSpec,
    stem: &Stem,
    input: AudioInput,
    sum: &mut Stereo,
    buses: &mut BTreeMap<&str, Stereo>,
) -> Result<usize, StageError> {
    let rate_hz = spec.rate_hz;
    let rate = f64::from(rate_hz);
    // Position of the stem's first frame on the trimmed timeline (may be negative).
    let start_frame = ((stem.offset_s - spec.trim_start_s) * rate).round() as i64;
    let polarity = if stem.polarity_invert { -1.0 } else { 1.0 };
    let static_gain = (polarity * db_to_gain(stem.gain_db)) as f32;
    let mut gain_lane = stem.automation.gain_db.as_ref().map(|points| Lane::new(points, rate_hz, spec.trim_start_s));
    let mut pan_lane = stem.automation.pan.as_ref().map(|points| Lane::new(points, rate_hz, spec.trim_start_s));
    let sends: Vec<(String, f32)> =
        stem.sends.iter().map(|(name, db)| (name.clone(), db_to_gain(*db) as f32)).collect();

    let mut eq: Option<FilterChain> = None;
    let mut compressor: Option<Compressor> = None;
    let mut position: i64 = start_frame;
    let mut clipped = 0usize;
    let mut gains = Vec::new();
    let (mut left, mut right) = (Vec::new(), Vec::new());
    let mut work: Option<AudioBlock> = None;

    stream_at_rate(input, rate_hz, |block| {
        let channels = block.channel_count();
        let frames = block.frames();
        clipped += block.channels().flatten().filter(|s| s.abs() >= 1.0).count();
        let work = work.get_or_insert_with(|| AudioBlock::new(channels, BLOCK_FRAMES));
        work.set_frames(frames);
        for (work, input) in work.channels_mut().zip(block.channels()) {
            work.copy_from_slice(input);
        }
        // Gain and polarity; automation replaces the static gain, keeping polarity.
        if let Some(lane) = gain_lane.as_mut() {
            gains.resize(frames, 0.0);
            lane.fill_gains(position, &mut gains);
        }
        for channel in work.channels_mut() {
            for sample in channel.iter_mut() {
                *sample *= if gain_lane.is_some() { polarity as f32 } else { static_gain };
            }
        }
        if !stem.eq.is_empty() {
            eq.get_or_insert_with(|| FilterChain::new(rate_hz, channels, BLOCK_FRAMES, &stem.eq)).process(work);
        }
        if let Some(settings) = &stem.compressor {
            compressor.get_or_insert_with(|| Compressor::new(rate_hz, channels, BLOCK_FRAMES, settings)).process(work);
        }
        if gain_lane.is_some() {
            for channel in work.channels_mut() {
                for (sample, gain) in channel.iter_mut().zip(&gains) {
                    *sample *= gain;
                }
            }
        }
        // Stereo view of the strip's output, before pan: what sends take.
        left.clear();
        right.clear();
        left.extend_from_slice(work.channel(0));
        right.extend_from_slice(work.channel(if channels == 2 { 1 } else { 0 }));
        // The part of this block that falls on the trimmed timeline.
        let skip = (-position).clamp(0, frames as i64) as usize;
        let at = (position + skip as i64) as usize;
        if skip < frames {
            for (name, send_gain) in &sends {
                if let Some(bus) = buses.get_mut(name.as_str()) {
                    bus.add(at, &left[skip..], &right[skip..], *send_gain)?;
                }
            }
            match pan_lane.as_mut() {
                None => {
                    let (gain_left, gain_right) =
                        if channels == 1 { pan_gains(stem.pan, spec.mix.pan_law_db) } else { balance_gains(stem.pan) };
                    for (l, r) in left.iter_mut().zip(right.iter_mut()) {
                        *l *= gain_left;
                        *r *= gain_right;
                    }
                }
                Some(lane) => {
                    let law_db = (channels == 1).then_some(spec.mix.pan_law_db);
                    apply_pan_lane(lane, position, law_db, &mut left, &mut right);
                }
            }
            sum.add(at, &left[skip..], &right[skip..], 1.0)?;
        }
        position += frames as i64;
        Ok(())
    })?;
    Ok(clipped)
}

/// Runs a return bus through its effect, EQ and gain, and adds it to the sum.
fn render_return(rate_hz: u32, settings: &Return, mut bus: Stereo, sum: &mut Stereo) -> Result<(), StageError> {
    let mut effect: Box<dyn Processor> = match (&settings.reverb, &settings.delay) {
        (Some(reverb), _) => Box::new(Reverb::new(rate_hz, 2, BLOCK_FRAMES, reverb)),
        (None, Some(delay)) => Box::new(Delay::new(rate_hz, 2, BLOCK_FRAMES, delay)),
        (None, None) => return Ok(()),
    };
    let mut eq = (!settings.eq.is_empty()).then(|| FilterChain::new(rate_hz, 2, BLOCK_FRAMES, &settings.eq));
    let gain = db_to_gain(settings.gain_db) as f32;
    let floor = db_to_gain(TAIL_FLOOR_DBFS) as f32;
    let max_frames = bus.len() + (MAX_TAIL_S * f64::from(rate_hz)) as usize;
    let mut position = 0;
    let frames = BLOCK_FRAMES;
    let mut block = AudioBlock::new(2, frames);
    loop {
        let in_bus = position < bus.len();
        bus.read(position, &mut block)?;
        effect.process(&mut block);
        if let Some(eq) = eq.as_mut() {
            eq.process(&mut block);
        }
        let peak = block.channels().flatten().fold(0f32, |m, s| m.max(s.abs()));
        if !in_bus && peak < floor {
            break; // the tail has died away
        }
        sum.add(position, block.channel(0), block.channel(1), gain)?;
        position += frames;
        if position >= max_frames {
            break;
        }
    }
    Ok(())
}
