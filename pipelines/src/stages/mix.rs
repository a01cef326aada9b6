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
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{AudioInput, StageError, stream_at_rate, write_float_wav};
use crate::dsp::biquad::FilterChain;
use crate::dsp::compressor::Compressor;
use crate::dsp::delay::Delay;
use crate::dsp::envelope::{Lane, balance_gains, pan_gains};
use crate::dsp::reverb::Reverb;
use crate::dsp::units::{db_to_gain, gain_to_db};
use crate::dsp::{AudioBlock, Processor};
use crate::encode::Tags;
use crate::manifest::{Manifest, Return, Stem};

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

/// Mixes track `track_index` of `manifest` from its stems (`stems[i]` is
/// `tracks[track_index].stems[i]`'s file; muted stems may be `None`) and
/// writes the 32-bit float mix to `output`.
pub fn mix_track(
    manifest: &Manifest,
    track_index: usize,
    stems: Vec<Option<AudioInput>>,
    output: &Path,
) -> Result<MixReport, StageError> {
    let track = &manifest.tracks[track_index];
    let rate_hz = manifest.album.sample_rate;
    let stem_settings = track.stems.as_deref().unwrap_or_default();
    if stems.len() != stem_settings.len() {
        return Err(StageError::Invalid(format!(
            "track {}: {} stem files for {} stems",
            track.id,
            stems.len(),
            stem_settings.len()
        )));
    }
    let empty_returns = BTreeMap::new();
    let returns = track.returns.as_ref().unwrap_or(&empty_returns);
    let mut sum = Stereo::default();
    let mut buses: BTreeMap<&str, Stereo> = returns.keys().map(|name| (name.as_str(), Stereo::default())).collect();
    let mut warnings = Vec::new();

    for (stem, input) in stem_settings.iter().zip(stems) {
        if stem.mute {
            continue;
        }
        let Some(input) = input else {
            return Err(StageError::Invalid(format!("track {}: stem {} has no file", track.id, stem.name)));
        };
        let clipped = render_stem(manifest, track_index, stem, input, &mut sum, &mut buses)?;
        if clipped > 0 {
            warnings.push(format!("stem `{}` clips on input: {clipped} samples at or above full scale", stem.name));
        }
    }
    for (name, settings) in returns {
        if let Some(bus) = buses.remove(name.as_str()) {
            render_return(rate_hz, settings, bus, &mut sum);
        }
    }

    let frames = sum.left.len() as u64;
    let peak = sum.left.iter().chain(&sum.right).fold(0f32, |m, s| m.max(s.abs()));
    let peak_before_dbfs = gain_to_db(f64::from(peak));
    let headroom_gain_db = if peak > 0.0 {
        manifest.mix.headroom_dbfs - peak_before_dbfs
    } else {
        warnings.push("the mix is silent".to_owned());
        0.0
    };
    let gain = db_to_gain(headroom_gain_db) as f32;
    for sample in sum.left.iter_mut().chain(sum.right.iter_mut()) {
        *sample *= gain;
    }
    let tags = Tags {
        title: track.title.clone(),
        artist: manifest.album.artist.clone(),
        album: manifest.album.title.clone(),
        ..Tags::default()
    };
    let mut analyzer = crate::analysis::Analyzer::new(rate_hz, 2).map_err(|e| StageError::Invalid(e.to_string()))?;
    for start in (0..sum.left.len()).step_by(super::BLOCK_FRAMES) {
        let end = (start + super::BLOCK_FRAMES).min(sum.left.len());
        analyzer
            .add(&AudioBlock::from_planar(vec![sum.left[start..end].to_vec(), sum.right[start..end].to_vec()]))
            .map_err(|e| StageError::Invalid(e.to_string()))?;
    }
    let integrated_lufs = analyzer.finish().map_err(|e| StageError::Invalid(e.to_string()))?.integrated_lufs;
    write_float_wav(output, rate_hz, &[std::mem::take(&mut sum.left), std::mem::take(&mut sum.right)], &tags)?;
    Ok(MixReport { frames, peak_before_dbfs, headroom_gain_db, integrated_lufs, warnings })
}

/// A growable stereo buffer on the track's timeline.
#[derive(Default)]
struct Stereo {
    left: Vec<f32>,
    right: Vec<f32>,
}

impl Stereo {
    fn add(&mut self, at: usize, left: &[f32], right: &[f32], gain: f32) {
        let end = at + left.len();
        if self.left.len() < end {
            self.left.resize(end, 0.0);
            self.right.resize(end, 0.0);
        }
        for (out, x) in self.left[at..end].iter_mut().zip(left) {
            *out += gain * x;
        }
        for (out, x) in self.right[at..end].iter_mut().zip(right) {
            *out += gain * x;
        }
    }
}

/// Renders one stem into the sum and its sends; returns how many input
/// samples were at or above full scale.
fn render_stem(
    manifest: &Manifest,
    track_index: usize,
    stem: &Stem,
    input: AudioInput,
    sum: &mut Stereo,
    buses: &mut BTreeMap<&str, Stereo>,
) -> Result<usize, StageError> {
    let track = &manifest.tracks[track_index];
    let rate_hz = manifest.album.sample_rate;
    let rate = f64::from(rate_hz);
    // Position of the stem's first frame on the trimmed timeline (may be negative).
    let start_frame = ((stem.offset_s - track.trim_start_s) * rate).round() as i64;
    let polarity = if stem.polarity_invert { -1.0 } else { 1.0 };
    let static_gain = (polarity * db_to_gain(stem.gain_db)) as f32;
    let mut gain_lane = stem.automation.gain_db.as_ref().map(|points| Lane::new(points, rate_hz, track.trim_start_s));
    let mut pan_lane = stem.automation.pan.as_ref().map(|points| Lane::new(points, rate_hz, track.trim_start_s));
    let sends: Vec<(String, f32)> =
        stem.sends.iter().map(|(name, db)| (name.clone(), db_to_gain(*db) as f32)).collect();

    let mut eq: Option<FilterChain> = None;
    let mut compressor: Option<Compressor> = None;
    let mut position: i64 = start_frame;
    let mut clipped = 0usize;
    let mut gains = Vec::new();
    let mut pans = Vec::new();
    let (mut left, mut right) = (Vec::new(), Vec::new());

    stream_at_rate(input, rate_hz, |block| {
        let channels = block.channel_count();
        let frames = block.frames();
        clipped += block.channels().flatten().filter(|s| s.abs() >= 1.0).count();
        let mut work = block.clone();
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
            eq.get_or_insert_with(|| FilterChain::new(rate_hz, channels, &stem.eq)).process(&mut work);
        }
        if let Some(settings) = &stem.compressor {
            compressor.get_or_insert_with(|| Compressor::new(rate_hz, channels, settings)).process(&mut work);
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
                    bus.add(at, &left[skip..], &right[skip..], *send_gain);
                }
            }
            match pan_lane.as_mut() {
                None => {
                    let (gain_left, gain_right) = if channels == 1 {
                        pan_gains(stem.pan, manifest.mix.pan_law_db)
                    } else {
                        balance_gains(stem.pan)
                    };
                    for (l, r) in left.iter_mut().zip(right.iter_mut()) {
                        *l *= gain_left;
                        *r *= gain_right;
                    }
                }
                Some(lane) => {
                    pans.resize(frames, 0.0);
                    lane.fill_values(position, &mut pans);
                    for ((l, r), pan) in left.iter_mut().zip(right.iter_mut()).zip(&pans) {
                        let (gain_left, gain_right) = if channels == 1 {
                            pan_gains(f64::from(*pan), manifest.mix.pan_law_db)
                        } else {
                            balance_gains(f64::from(*pan))
                        };
                        *l *= gain_left;
                        *r *= gain_right;
                    }
                }
            }
            sum.add(at, &left[skip..], &right[skip..], 1.0);
        }
        position += frames as i64;
        Ok(())
    })?;
    Ok(clipped)
}

/// Runs a return bus through its effect, EQ and gain, and adds it to the sum.
fn render_return(rate_hz: u32, settings: &Return, bus: Stereo, sum: &mut Stereo) {
    let mut effect: Box<dyn Processor> = match (&settings.reverb, &settings.delay) {
        (Some(reverb), _) => Box::new(Reverb::new(rate_hz, reverb)),
        (None, Some(delay)) => Box::new(Delay::new(rate_hz, delay)),
        (None, None) => return,
    };
    let mut eq = (!settings.eq.is_empty()).then(|| FilterChain::new(rate_hz, 2, &settings.eq));
    let gain = db_to_gain(settings.gain_db) as f32;
    let floor = db_to_gain(TAIL_FLOOR_DBFS) as f32;
    let max_frames = bus.left.len() + (MAX_TAIL_S * f64::from(rate_hz)) as usize;
    let mut position = 0;
    loop {
        let in_bus = position < bus.left.len();
        let frames = super::BLOCK_FRAMES;
        let mut block = AudioBlock::new(2, frames);
        if in_bus {
            let end = (position + frames).min(bus.left.len());
            block.channel_mut(0)[..end - position].copy_from_slice(&bus.left[position..end]);
            block.channel_mut(1)[..end - position].copy_from_slice(&bus.right[position..end]);
        }
        effect.process(&mut block);
        if let Some(eq) = eq.as_mut() {
            eq.process(&mut block);
        }
        let peak = block.channels().flatten().fold(0f32, |m, s| m.max(s.abs()));
        if !in_bus && peak < floor {
            break; // the tail has died away
        }
        sum.add(position, block.channel(0), block.channel(1), gain);
        position += frames;
        if position >= max_frames {
            break;
        }
    }
}
