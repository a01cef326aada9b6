//! Gentle harmonic saturation, 4× oversampled.
//!
//! The curve is `tanh(d·x) / d` (see [`fast_tanh`]) with `d` the drive: unity gain for quiet
//! signals, rounding off the peaks progressively (odd harmonics, no DC).
//! It runs at four times the rate between steep linear-phase filters, so
//! the harmonics above Nyquist are removed instead of folding back. Only
//! the saturated share passes those filters: the clean share (`1 - mix`)
//! takes a plain delay of the same length, so the two stay phase-aligned
//! and a light mix leaves the top octave as it was.

use super::oversample::BlockOversampler;
use super::units::db_to_gain;
use super::{AudioBlock, Processor};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// 0..24
    #[serde(default = "default_drive_db")]
    pub drive_db: f64,
    /// 0..1, the wet share.
    #[serde(default = "default_saturation_mix")]
    pub mix: f64,
}

fn default_drive_db() -> f64 {
    2.0
}

fn default_saturation_mix() -> f64 {
    0.3
}

pub struct Saturation {
    drive: f32,
    wet: f32,
    oversampler: BlockOversampler,
    /// Per channel: the clean signal's delay, then the current block.
    delayed: Vec<Vec<f32>>,
    latency: usize,
}

/// tanh by its (7, 6) Padé approximant, clamped where the approximant
/// reaches ±1 (|x| = 4.97): within 10⁻⁴ of tanh everywhere (the largest
/// gap is just below the clamp), monotonic, bounded and branch-free.
#[inline]
pub fn fast_tanh(x: f32) -> f32 {
    let x = x.clamp(-4.97, 4.97);
    let x2 = x * x;
    let numerator = x * (135_135.0 + x2 * (17_325.0 + x2 * (378.0 + x2)));
    let denominator = 135_135.0 + x2 * (62_370.0 + x2 * (3_150.0 + 28.0 * x2));
    (numerator / denominator).clamp(-1.0, 1.0)
}

super::wide_fn! {
    /// `x ← tanh(drive·x) / drive` over a run of samples.
    fn shape(samples: &mut [f32], drive: f32) {
        for x in samples {
            *x = fast_tanh(drive * *x) / drive;
        }
    }
}

impl Saturation {
    pub fn new(_rate_hz: u32, channels: usize, max_block_frames: usize, settings: &Settings) -> Self {
        let latency = BlockOversampler::latency_frames();
        Self {
            drive: db_to_gain(settings.drive_db) as f32,
            wet: settings.mix as f32,
            oversampler: BlockOversampler::new(channels, max_block_frames),
            delayed: vec![vec![0.0; latency + max_block_frames]; channels],
            latency,
        }
    }
}

impl Processor for Saturation {
    fn process(&mut self, block: &mut AudioBlock) {
        let (drive, wet, latency) = (self.drive, self.wet, self.latency);
        let frames = block.frames();
        for channel in 0..block.channel_count() {
            let delayed = &mut self.delayed[channel];
            delayed[latency..latency + frames].copy_from_slice(block.channel(channel));
            let samples = block.channel_mut(channel);
            self.oversampler
                .process(channel, &delayed[latency..latency + frames], samples, |phase| shape(phase, drive));
            for (out, clean) in samples.iter_mut().zip(&delayed[..frames]) {
                *out = clean + wet * (*out - clean);
            }
            delayed.copy_within(frames..frames + latency, 0);
        }
    }

    fn reset(&mut self) {
        self.oversampler.reset();
        for line in &mut self.delayed {
            line.fill(0.0);
        }
    }

    fn latency_frames(&self) -> usize {
        self.latency
    }
}

#[cfg(test)]
mod tests {
    use super::fast_tanh;

    #[test]
    fn fast_tanh_is_tanh() {
        let mut previous = -1.0f32;
        for i in -8000..=8000 {
            let x = i as f32 / 1000.0;
            assert!((fast_tanh(x) - x.tanh()).abs() < 1e-4, "at {x}: {} vs {}", fast_tanh(x), x.tanh());
            assert!(fast_tanh(x) >= previous, "monotonic at {x}");
            previous = fast_tanh(x);
        }
        assert!((fast_tanh(0.5) - 0.5f32.tanh()).abs() < 1e-6, "exact where program material lives");
    }
}
