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
//!
//! The stems render side by side, each on a thread of its own, and the sum
//! is made a block of the timeline at a time from what they hand over: the
//! stems in the manifest's order, then the returns, so every sample is the
//! same sum in the same order whatever the threads do. Only the finished
//! sum goes to a scratch file (to set its peak before it is written), so
//! memory stays bounded by the block size whatever the track's length.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::mpsc::sync_channel;

use serde::{Deserialize, Serialize};

use super::{AudioInput, BLOCK_FRAMES, StageError, check_cancelled, float_wav, stream_at_rate};
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
    // The scratch file sits beside the output (the same disk).
    let scratch_dir = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut sum = Stereo::new(scratch_dir)?;
    let mut warnings = Vec::new();
    let mut playing = Vec::new();
    for (stem, input) in stem_settings.iter().zip(stems) {
        if stem.mute {
            continue;
        }
        let Some(input) = input else {
            return Err(StageError::Invalid(format!("track {}: stem {} has no file", spec.track_id, stem.name)));
        };
        playing.push((stem, input));
    }
    let cancel = super::cancel_flag();
    let (frames, peak) = std::thread::scope(|scope| -> Result<(usize, f32), StageError> {
        let mut strips = Vec::with_capacity(playing.len());
        for (stem, input) in playing {
            let (handed, chunks) = sync_channel::<StemChunk>(QUEUED_CHUNKS);
            let (give_back, spare) = sync_channel::<StemChunk>(SPARE_CHUNKS);
            for _ in 0..SPARE_CHUNKS {
                give_back.send(StemChunk::default()).expect("room for every buffer");
            }
            let cancel = cancel.clone();
            let worker = scope.spawn(move || {
                let render = || render_stem(spec, stem, input, &handed, &spare);
                match cancel {
                    Some(flag) => super::cancellable(flag, render),
                    None => render(),
                }
            });
            let sends = stem
                .sends
                .iter()
                .filter_map(|(name, db)| {
                    returns.keys().position(|bus| bus == name).map(|bus| (bus, db_to_gain(*db) as f32))
                })
                .collect();
            strips.push(Strip {
                name: &stem.name,
                chunks,
                give_back,
                worker: Some(worker),
                held: VecDeque::new(),
                sends,
                clipped: 0,
            });
        }
        let mut returns: Vec<ReturnChain> =
            returns.values().map(|settings| ReturnChain::new(rate_hz, settings)).collect();
        let mut window = [vec![0f32; BLOCK_FRAMES], vec![0f32; BLOCK_FRAMES]];
        let mut block = AudioBlock::new(2, BLOCK_FRAMES);
        let (mut frames, mut peak) = (0usize, 0f32);
        for start in (0..).step_by(BLOCK_FRAMES) {
            check_cancelled()?;
            let end = start + BLOCK_FRAMES;
            window.iter_mut().for_each(|channel| channel.fill(0.0));
            for chain in &mut returns {
                chain.bus.iter_mut().for_each(|channel| channel.fill(0.0));
            }
            for strip in &mut strips {
                strip.pull_until(end)?;
                strip.mix_into(start, &mut window, &mut returns, &mut frames);
            }
            for (index, chain) in returns.iter_mut().enumerate() {
                let fed = strips.iter().any(|strip| strip.feeds(index));
                if chain.render(start, fed, &mut block) {
                    add(&mut window, 0, block.channel(0), block.channel(1), chain.gain);
                    frames = frames.max(end);
                }
            }
            peak = window.iter().flatten().fold(peak, |m, s| m.max(s.abs()));
            sum.append(&window[0], &window[1])?;
            if strips.iter().all(Strip::is_done) && returns.iter().all(|chain| chain.done) {
                break;
            }
        }
        for strip in &strips {
            if strip.clipped > 0 {
                warnings.push(format!(
                    "stem `{}` clips on input: {} samples at or above full scale",
                    strip.name, strip.clipped
                ));
            }
        }
        Ok((frames, peak))
    })?;

    let mut block = AudioBlock::new(2, BLOCK_FRAMES);
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

/// The finished sum, kept in a scratch file (interleaved f32 frames) so
/// that memory stays bounded by the block size whatever the track's length.
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

    /// Appends the two channels' frames.
    fn append(&mut self, left: &[f32], right: &[f32]) -> Result<(), StageError> {
        self.bytes.clear();
        for (l, r) in left.iter().zip(right) {
            self.bytes.extend_from_slice(&l.to_le_bytes());
            self.bytes.extend_from_slice(&r.to_le_bytes());
        }
        self.seek(self.frames)?;
        self.file.write_all(&self.bytes).map_err(scratch_error)?;
        self.frames += left.len();
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

/// Renders one stem's strip and hands it over a block at a time, in
/// buffers taken from `spare`; returns how many input samples were at or
/// above full scale.
fn render_stem(
    spec: &MixSpec,
    stem: &Stem,
    input: AudioInput,
    handed: &std::sync::mpsc::SyncSender<StemChunk>,
    spare: &std::sync::mpsc::Receiver<StemChunk>,
) -> Result<usize, StageError> {
    let rate_hz = spec.rate_hz;
    let rate = f64::from(rate_hz);
    // Position of the stem's first frame on the trimmed timeline (may be negative).
    let start_frame = ((stem.offset_s - spec.trim_start_s) * rate).round() as i64;
    let polarity = if stem.polarity_invert { -1.0 } else { 1.0 };
    let static_gain = (polarity * db_to_gain(stem.gain_db)) as f32;
    let mut gain_lane = stem.automation.gain_db.as_ref().map(|points| Lane::new(points, rate_hz, spec.trim_start_s));
    let mut pan_lane = stem.automation.pan.as_ref().map(|points| Lane::new(points, rate_hz, spec.trim_start_s));
    let sends = spec.returns.keys().any(|bus| stem.sends.contains_key(bus));

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
            // The mix has gone (it failed or was stopped) when no buffer comes back.
            let mut chunk = spare.recv().map_err(|_| StageError::Cancelled)?;
            chunk.at = at;
            if sends {
                for (send, channel) in chunk.send.iter_mut().zip([&left, &right]) {
                    send.clear();
                    send.extend_from_slice(&channel[skip..]);
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
            for (mix, channel) in chunk.mix.iter_mut().zip([&left, &right]) {
                mix.clear();
                mix.extend_from_slice(&channel[skip..]);
            }
            handed.send(chunk).map_err(|_| StageError::Cancelled)?;
        }
        position += frames as i64;
        Ok(())
    })?;
    Ok(clipped)
}

/// A return being rendered a block of the timeline at a time: its bus (the
/// sends of this block), effect, EQ and gain, until its tail dies away.
struct ReturnChain {
    bus: [Vec<f32>; 2],
    /// Frames the sends have reached so far.
    bus_frames: usize,
    effect: Option<Box<dyn Processor>>,
    eq: Option<FilterChain>,
    gain: f32,
    floor: f32,
    max_tail_frames: usize,
    done: bool,
}

impl ReturnChain {
    fn new(rate_hz: u32, settings: &Return) -> Self {
        let effect: Option<Box<dyn Processor>> = match (&settings.reverb, &settings.delay) {
            (Some(reverb), _) => Some(Box::new(Reverb::new(rate_hz, 2, BLOCK_FRAMES, reverb))),
            (None, Some(delay)) => Some(Box::new(Delay::new(rate_hz, 2, BLOCK_FRAMES, delay))),
            (None, None) => None,
        };
        Self {
            bus: [vec![0.0; BLOCK_FRAMES], vec![0.0; BLOCK_FRAMES]],
            bus_frames: 0,
            done: effect.is_none(),
            effect,
            eq: (!settings.eq.is_empty()).then(|| FilterChain::new(rate_hz, 2, BLOCK_FRAMES, &settings.eq)),
            gain: db_to_gain(settings.gain_db) as f32,
            floor: db_to_gain(TAIL_FLOOR_DBFS) as f32,
            max_tail_frames: (MAX_TAIL_S * f64::from(rate_hz)) as usize,
        }
    }

    /// Renders the block of the timeline from `start` into `block`; false
    /// when the return has nothing more to add. `fed`: a stem that sends
    /// to it is still playing (so its sends reach past `start`).
    fn render(&mut self, start: usize, fed: bool, block: &mut AudioBlock) -> bool {
        let Some(effect) = self.effect.as_mut().filter(|_| !self.done) else { return false };
        let in_bus = fed || start < self.bus_frames;
        block.set_frames(BLOCK_FRAMES);
        for (to, from) in block.channels_mut().zip(&self.bus) {
            to.copy_from_slice(from);
        }
        effect.process(block);
        if let Some(eq) = self.eq.as_mut() {
            eq.process(block);
        }
        let peak = block.channels().flatten().fold(0f32, |m, s| m.max(s.abs()));
        if !in_bus && peak < self.floor {
            self.done = true; // the tail has died away
            return false;
        }
        if !fed && start + BLOCK_FRAMES >= self.bus_frames + self.max_tail_frames {
            self.done = true;
        }
        true
    }
}

/// `out += gain ×` the two channels, from frame `at` of `out`.
fn add(out: &mut [Vec<f32>; 2], at: usize, left: &[f32], right: &[f32], gain: f32) {
    for (out, input) in out.iter_mut().zip([left, right]) {
        for (sum, x) in out[at..at + input.len()].iter_mut().zip(input) {
            *sum += gain * x;
        }
    }
}

/// Blocks a stem's thread may have handed over and not yet had back.
const QUEUED_CHUNKS: usize = 2;
/// Buffers a stem's thread fills in turn: those queued, those the mix
/// holds (at most two, across a block boundary) and the one being filled.
const SPARE_CHUNKS: usize = QUEUED_CHUNKS + 3;

/// A block of a stem's strip on the trimmed timeline, from frame `at`.
#[derive(Default)]
struct StemChunk {
    at: usize,
    /// After pan: what the sum takes.
    mix: [Vec<f32>; 2],
    /// Before pan: what the sends take.
    send: [Vec<f32>; 2],
}

impl StemChunk {
    fn end(&self) -> usize {
        self.at + self.mix[0].len()
    }
}

/// The mix's side of a stem rendering on its own thread.
struct Strip<'s, 'scope> {
    name: &'s str,
    chunks: std::sync::mpsc::Receiver<StemChunk>,
    give_back: std::sync::mpsc::SyncSender<StemChunk>,
    worker: Option<std::thread::ScopedJoinHandle<'scope, Result<usize, StageError>>>,
    /// Chunks handed over and not yet all mixed, in timeline order.
    held: VecDeque<StemChunk>,
    /// The returns it sends to, with each send's gain.
    sends: Vec<(usize, f32)>,
    /// Input samples at or above full scale, known once it has finished.
    clipped: usize,
}

impl Strip<'_, '_> {
    /// Takes chunks until they reach `end` or the stem has finished.
    fn pull_until(&mut self, end: usize) -> Result<(), StageError> {
        while self.worker.is_some() && self.held.back().is_none_or(|chunk| chunk.end() < end) {
            match self.chunks.recv() {
                Ok(chunk) => self.held.push_back(chunk),
                Err(_) => {
                    let worker = self.worker.take().expect("a stem still playing");
                    self.clipped = worker.join().unwrap_or_else(|_| {
                        Err(StageError::Invalid(format!("stem `{}`: its thread panicked", self.name)))
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Adds what it has for the block from `start` into the sum and the
    /// returns' buses, and gives back the chunks used up.
    fn mix_into(&mut self, start: usize, sum: &mut [Vec<f32>; 2], returns: &mut [ReturnChain], frames: &mut usize) {
        let end = start + BLOCK_FRAMES;
        for chunk in &self.held {
            let (from, to) = (chunk.at.max(start), chunk.end().min(end));
            if from >= to {
                continue;
            }
            let part = from - chunk.at..to - chunk.at;
            for &(bus, gain) in &self.sends {
                let chain = &mut returns[bus];
                add(&mut chain.bus, from - start, &chunk.send[0][part.clone()], &chunk.send[1][part.clone()], gain);
                chain.bus_frames = chain.bus_frames.max(to);
            }
            add(sum, from - start, &chunk.mix[0][part.clone()], &chunk.mix[1][part], 1.0);
            *frames = (*frames).max(to);
        }
        while self.held.front().is_some_and(|chunk| chunk.end() <= end) {
            let chunk = self.held.pop_front().expect("a chunk");
            // A stem that has finished takes no more buffers.
            let _ = self.give_back.send(chunk);
        }
    }

    /// Whether its sends reach the return `bus` past what has been mixed.
    fn feeds(&self, bus: usize) -> bool {
        !self.is_done() && self.sends.iter().any(|(b, _)| *b == bus)
    }

    fn is_done(&self) -> bool {
        self.worker.is_none() && self.held.is_empty()
    }
}
