//! A feed-forward compressor: a level detector (peak, or RMS over a 10 ms
//! window), a soft-knee static curve in dB, and gain smoothing in the dB
//! domain by a smooth decoupled detector (Giannoulis, Massberg & Reiss,
//! "Digital Dynamic Range Compressor Design", JAES 2012): a release stage
//! that follows more gain reduction at once and lets go with the release
//! time constant, then an attack stage with the attack time constant. A
//! sine's peaks therefore hold the gain steady between them.
//!
//! The RMS detector reads a steady sine at its peak level (the mean square
//! is doubled), so a threshold means the same for both detectors on tonal
//! material. With `stereo_link` the louder channel drives one gain for all
//! channels, so the stereo image never shifts.

use super::units::{fast_exp2, fast_log2, one_pole_coefficient};
use super::{AudioBlock, Processor};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    Rms,
    Peak,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default = "default_threshold_db")]
    pub threshold_db: f64,
    #[serde(default = "default_ratio")]
    pub ratio: f64,
    #[serde(default = "default_attack_ms")]
    pub attack_ms: f64,
    #[serde(default = "default_release_ms")]
    pub release_ms: f64,
    #[serde(default = "default_knee_db")]
    pub knee_db: f64,
    #[serde(default)]
    pub makeup_db: f64,
    #[serde(default = "default_detector")]
    pub detector: Detector,
    #[serde(default = "default_true")]
    pub stereo_link: bool,
}

fn default_threshold_db() -> f64 {
    -18.0
}

fn default_ratio() -> f64 {
    2.0
}

fn default_attack_ms() -> f64 {
    10.0
}

fn default_release_ms() -> f64 {
    150.0
}

fn default_knee_db() -> f64 {
    6.0
}

fn default_detector() -> Detector {
    Detector::Rms
}

fn default_true() -> bool {
    true
}

/// Averaging time of the RMS detector.
pub const RMS_WINDOW_MS: f64 = 10.0;

/// The static curve: output level for an input level, both in dB.
pub fn static_curve_db(input_db: f64, threshold_db: f64, ratio: f64, knee_db: f64) -> f64 {
    let over_db = input_db - threshold_db;
    if knee_db > 0.0 && over_db.abs() <= knee_db / 2.0 {
        let into_knee_db = over_db + knee_db / 2.0;
        input_db + (1.0 / ratio - 1.0) * into_knee_db * into_knee_db / (2.0 * knee_db)
    } else if over_db > 0.0 {
        threshold_db + over_db / ratio
    } else {
        input_db
    }
}

#[derive(Debug, Clone)]
pub struct Compressor {
    /// The static curve, made once.
    curve: StaticCurve,
    makeup_db: f64,
    attack_coefficient: f64,
    release_coefficient: f64,
    rms_coefficient: f64,
    detector: Detector,
    stereo_link: bool,
    /// Per channel: smoothed mean square (RMS detector).
    mean_square: Vec<f64>,
    /// Per channel (or one, linked).
    ballistics: Vec<Ballistics>,
    /// Scratch for one chunk: detected levels, then gains.
    levels: Vec<f32>,
}

/// Frames per pass: a block is worked through in chunks, each in three
/// passes (detect and convert to dB, smooth, convert to gain and apply),
/// so the long but independent per-sample conversions overlap instead of
/// queueing behind the smoother's recursion.
const CHUNK_FRAMES: usize = 256;

/// The gain smoother's state.
#[derive(Debug, Clone, Copy, Default)]
struct Ballistics {
    /// The release stage's gain change in dB (≤ 0).
    release_stage_db: f64,
    /// The smoothed gain change in dB (≤ 0).
    gain_db: f64,
}

impl Compressor {
    pub fn new(rate_hz: u32, channels: usize, _max_block_frames: usize, settings: &Settings) -> Self {
        let gain_channels = if settings.stereo_link { 1 } else { channels };
        Self {
            curve: StaticCurve {
                threshold_db: settings.threshold_db as f32,
                half_knee_db: (settings.knee_db.max(0.0) / 2.0) as f32,
                knee_scale: if settings.knee_db > 0.0 { (1.0 / (2.0 * settings.knee_db)) as f32 } else { 0.0 },
                slope: (1.0 / settings.ratio - 1.0) as f32,
            },
            makeup_db: settings.makeup_db,
            attack_coefficient: one_pole_coefficient(settings.attack_ms, rate_hz),
            release_coefficient: one_pole_coefficient(settings.release_ms, rate_hz),
            rms_coefficient: one_pole_coefficient(RMS_WINDOW_MS, rate_hz),
            detector: settings.detector,
            stereo_link: settings.stereo_link,
            mean_square: vec![0.0; channels],
            ballistics: vec![Ballistics::default(); gain_channels],
            levels: vec![0.0; CHUNK_FRAMES],
        }
    }

    /// The level a detector reads for one channel's sample, squared.
    #[inline(always)]
    fn detect_squared(&self, mean_square: &mut f64, sample: f32) -> f64 {
        let x = f64::from(sample);
        match self.detector {
            Detector::Peak => x * x,
            Detector::Rms => {
                *mean_square = self.rms_coefficient * *mean_square + (1.0 - self.rms_coefficient) * x * x;
                2.0 * *mean_square
            }
        }
    }

    /// Turns a chunk's squared levels into linear gains (with makeup):
    /// to dB, through the static curve, the smoother, back to linear. All
    /// but the smoother's recursion run as vector passes.
    fn levels_to_gains(&self, state: &mut Ballistics, levels: &mut [f32]) {
        power_to_db(levels);
        gain_changes_db(levels, self.curve);
        let (attack, release) = (self.attack_coefficient, self.release_coefficient);
        let Ballistics { release_stage_db: mut held, mut gain_db } = *state;
        for level in levels.iter_mut() {
            let target_db = f64::from(*level);
            held = target_db.min(release * held + (1.0 - release) * target_db);
            gain_db = attack * gain_db + (1.0 - attack) * held;
            *level = (gain_db + self.makeup_db) as f32;
        }
        *state = Ballistics { release_stage_db: held, gain_db };
        db_to_amplitude(levels);
    }

    /// The current gain change in dB (linked, or of channel 0), for meters.
    pub fn gain_reduction_db(&self) -> f64 {
        self.ballistics[0].gain_db
    }
}

super::wide_fn! {
    /// Squared levels to dB, in place: 10·log10(x) = (10·log10 2)·log2(x);
    /// f32 is plenty for a level.
    fn power_to_db(levels: &mut [f32]) {
        const DB_PER_OCTAVE_OF_POWER: f32 = 3.010_3;
        for level in levels {
            *level = DB_PER_OCTAVE_OF_POWER * fast_log2(level.max(1e-20));
        }
    }
}

/// The static curve's parameters, in `f32` for the vector pass.
#[derive(Debug, Clone, Copy)]
struct StaticCurve {
    threshold_db: f32,
    half_knee_db: f32,
    /// 1 / (2 · knee), or 0 without a knee.
    knee_scale: f32,
    /// 1/ratio - 1: the gain change per dB over the threshold.
    slope: f32,
}

impl StaticCurve {
    /// The gain change (≤ 0 dB) for an input level, without branches: the
    /// knee's quadratic and the line above it are both clamped to where
    /// they apply and added. Equal to `static_curve_db(level_db, ..) -
    /// level_db`.
    #[inline(always)]
    fn gain_change_db(self, level_db: f32) -> f32 {
        let over_db = level_db - self.threshold_db;
        let into_knee_db = (over_db + self.half_knee_db).clamp(0.0, 2.0 * self.half_knee_db);
        let above_knee_db = (over_db - self.half_knee_db).max(0.0);
        self.slope * (into_knee_db * into_knee_db * self.knee_scale + above_knee_db)
    }
}

super::wide_fn! {
    /// Levels in dB to the static curve's gain changes, in place.
    fn gain_changes_db(levels: &mut [f32], curve: StaticCurve) {
        for level in levels {
            *level = curve.gain_change_db(*level);
        }
    }
}

super::wide_fn! {
    /// Gains in dB to linear amplitude, in place: 10^(dB/20) = 2^(dB·log2(10)/20).
    fn db_to_amplitude(gains: &mut [f32]) {
        const OCTAVES_PER_DB: f32 = 0.166_096_4;
        for gain in gains {
            *gain = fast_exp2(*gain * OCTAVES_PER_DB);
        }
    }
}

super::wide_fn! {
    fn apply_gains(samples: &mut [f32], gains: &[f32]) {
        for (sample, gain) in samples.iter_mut().zip(gains) {
            *sample *= gain;
        }
    }
}

impl Processor for Compressor {
    fn process(&mut self, block: &mut AudioBlock) {
        let frames = block.frames();
        let mut levels = std::mem::take(&mut self.levels);
        let channels = block.channel_count();
        for start in (0..frames).step_by(CHUNK_FRAMES) {
            let end = (start + CHUNK_FRAMES).min(frames);
            let levels = &mut levels[..end - start];
            if self.stereo_link {
                // The loudest channel drives one gain for all.
                if channels == 2 {
                    // Both detectors in one pass: their recursions overlap.
                    let (mut left_state, mut right_state) = (self.mean_square[0], self.mean_square[1]);
                    let (left, right) = (&block.channel(0)[start..end], &block.channel(1)[start..end]);
                    for ((level, &l), &r) in levels.iter_mut().zip(left).zip(right) {
                        let louder =
                            self.detect_squared(&mut left_state, l).max(self.detect_squared(&mut right_state, r));
                        *level = louder as f32;
                    }
                    (self.mean_square[0], self.mean_square[1]) = (left_state, right_state);
                } else {
                    levels.fill(0.0);
                    for channel in 0..channels {
                        let mut state = self.mean_square[channel];
                        for (level, &sample) in levels.iter_mut().zip(&block.channel(channel)[start..end]) {
                            *level = level.max(self.detect_squared(&mut state, sample) as f32);
                        }
                        self.mean_square[channel] = state;
                    }
                }
                let mut state = self.ballistics[0];
                self.levels_to_gains(&mut state, levels);
                self.ballistics[0] = state;
                for channel in 0..channels {
                    apply_gains(&mut block.channel_mut(channel)[start..end], levels);
                }
                continue;
            }
            for channel in 0..channels {
                let mut state = self.mean_square[channel];
                for (level, &sample) in levels.iter_mut().zip(&block.channel(channel)[start..end]) {
                    *level = self.detect_squared(&mut state, sample) as f32;
                }
                self.mean_square[channel] = state;
                let mut state = self.ballistics[channel];
                self.levels_to_gains(&mut state, levels);
                self.ballistics[channel] = state;
                apply_gains(&mut block.channel_mut(channel)[start..end], levels);
            }
        }
        self.levels = levels;
    }

    fn reset(&mut self) {
        self.mean_square.fill(0.0);
        self.ballistics.fill(Ballistics::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_curve_shape() {
        // Below the knee: unity. Above: 1/ratio. In the knee: continuous.
        assert_eq!(static_curve_db(-40.0, -20.0, 4.0, 6.0), -40.0);
        assert!((static_curve_db(0.0, -20.0, 4.0, 6.0) - -15.0).abs() < 1e-12);
        assert!((static_curve_db(-20.0, -20.0, 4.0, 6.0) - (-20.0 - 0.75 * 9.0 / 12.0)).abs() < 1e-12);
        for edge in [-23.0, -17.0] {
            let inside = static_curve_db(edge + 1e-9, -20.0, 4.0, 6.0);
            let outside = static_curve_db(edge - 1e-9, -20.0, 4.0, 6.0);
            assert!((inside - outside).abs() < 1e-6, "continuous at {edge}");
        }
        assert_eq!(static_curve_db(-10.0, -20.0, 1.0, 6.0), -10.0, "ratio 1 does nothing");
    }

    #[test]
    fn the_gain_computer_follows_the_static_curve() {
        for (ratio, knee_db) in [(4.0, 6.0), (1.5, 0.0), (20.0, 12.0), (1.0, 6.0)] {
            let settings = Settings {
                threshold_db: -20.0,
                ratio,
                attack_ms: 10.0,
                release_ms: 100.0,
                knee_db,
                makeup_db: 0.0,
                detector: Detector::Peak,
                stereo_link: true,
            };
            let compressor = Compressor::new(48_000, 2, 1024, &settings);
            for tenth_db in -600..=100 {
                let level_db = f64::from(tenth_db) / 10.0;
                let want = static_curve_db(level_db, -20.0, ratio, knee_db) - level_db;
                let got = f64::from(compressor.curve.gain_change_db(level_db as f32));
                assert!((got - want).abs() < 1e-4, "ratio {ratio}, knee {knee_db}: {level_db} dB");
            }
        }
    }
}
