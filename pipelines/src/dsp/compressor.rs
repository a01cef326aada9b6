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

use super::units::{MINUS_INFINITY_DB, one_pole_coefficient};
use super::{AudioBlock, Processor};
use crate::manifest::{Compressor as Settings, Detector};

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
    threshold_db: f64,
    ratio: f64,
    knee_db: f64,
    makeup_db: f64,
    attack_coefficient: f64,
    release_coefficient: f64,
    rms_coefficient: f64,
    detector: Detector,
    stereo_link: bool,
    /// Per channel: smoothed mean square (RMS detector).
    mean_square: Vec<f64>,
    /// Per channel (or one, linked): the release stage's gain change in dB (≤ 0).
    release_stage_db: Vec<f64>,
    /// Per channel (or one, linked): smoothed gain change in dB (≤ 0).
    gain_db: Vec<f64>,
}

impl Compressor {
    pub fn new(rate_hz: u32, channels: usize, settings: &Settings) -> Self {
        let gain_channels = if settings.stereo_link { 1 } else { channels };
        Self {
            threshold_db: settings.threshold_db,
            ratio: settings.ratio,
            knee_db: settings.knee_db,
            makeup_db: settings.makeup_db,
            attack_coefficient: one_pole_coefficient(settings.attack_ms, rate_hz),
            release_coefficient: one_pole_coefficient(settings.release_ms, rate_hz),
            rms_coefficient: one_pole_coefficient(RMS_WINDOW_MS, rate_hz),
            detector: settings.detector,
            stereo_link: settings.stereo_link,
            mean_square: vec![0.0; channels],
            release_stage_db: vec![0.0; gain_channels],
            gain_db: vec![0.0; gain_channels],
        }
    }

    /// The level a detector reads for one channel's sample, squared.
    #[inline]
    fn detect_squared(&mut self, channel: usize, sample: f32) -> f64 {
        let x = f64::from(sample);
        match self.detector {
            Detector::Peak => x * x,
            Detector::Rms => {
                let state = &mut self.mean_square[channel];
                *state = self.rms_coefficient * *state + (1.0 - self.rms_coefficient) * x * x;
                2.0 * *state
            }
        }
    }

    /// Smooths towards the static curve's gain change for a squared level;
    /// returns the linear gain to apply (with makeup).
    #[inline]
    fn gain_for(&mut self, index: usize, level_squared: f64) -> f32 {
        // 10·log10(x) = (10·log10 2)·log2(x); f32 log2 is plenty for a level.
        const DB_PER_OCTAVE_OF_POWER: f64 = 3.010_299_956_639_812;
        let level_db = if level_squared > 1e-20 {
            DB_PER_OCTAVE_OF_POWER * f64::from((level_squared as f32).log2())
        } else {
            MINUS_INFINITY_DB
        };
        let target_db = static_curve_db(level_db, self.threshold_db, self.ratio, self.knee_db) - level_db;
        let held = &mut self.release_stage_db[index];
        *held = target_db.min(self.release_coefficient * *held + (1.0 - self.release_coefficient) * target_db);
        let gain_db = &mut self.gain_db[index];
        *gain_db = self.attack_coefficient * *gain_db + (1.0 - self.attack_coefficient) * *held;
        // 10^(dB/20) = 2^(dB·log2(10)/20).
        const OCTAVES_PER_DB: f32 = 0.166_096_4;
        ((*gain_db + self.makeup_db) as f32 * OCTAVES_PER_DB).exp2()
    }

    /// The current gain change in dB (linked, or of channel 0), for meters.
    pub fn gain_reduction_db(&self) -> f64 {
        self.gain_db[0]
    }
}

impl Processor for Compressor {
    fn process(&mut self, block: &mut AudioBlock) {
        let channels = block.channel_count();
        if self.stereo_link && channels == 2 {
            let (left, right) = block.stereo_mut();
            for (l, r) in left.iter_mut().zip(right.iter_mut()) {
                let level = self.detect_squared(0, *l).max(self.detect_squared(1, *r));
                let gain = self.gain_for(0, level);
                *l *= gain;
                *r *= gain;
            }
            return;
        }
        for channel in 0..channels {
            let gain_index = if self.stereo_link { 0 } else { channel };
            let samples = block.channel_mut(channel);
            for sample in samples.iter_mut() {
                let level = self.detect_squared(channel, *sample);
                *sample *= self.gain_for(gain_index, level);
            }
        }
    }

    fn reset(&mut self) {
        self.mean_square.fill(0.0);
        self.release_stage_db.fill(0.0);
        self.gain_db.fill(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::static_curve_db;

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
}
