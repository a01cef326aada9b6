//! Gentle harmonic saturation, 4× oversampled.
//!
//! The curve is `tanh(d·x) / d` with `d` the drive: unity gain for quiet
//! signals, rounding off the peaks progressively (odd harmonics, no DC).
//! It runs at four times the rate between steep linear-phase filters, so
//! the harmonics above Nyquist are removed instead of folding back. `mix`
//! blends it with the clean signal inside the oversampled domain, so both
//! share one latency and stay phase-aligned.

use super::oversample::{Decimator, Design, FACTOR, Interpolator, round_trip_latency_frames};
use super::units::db_to_gain;
use super::{AudioBlock, Processor};
use crate::manifest::Saturation as Settings;

pub struct Saturation {
    drive: f32,
    wet: f32,
    up: Interpolator,
    down: Decimator,
}

impl Saturation {
    pub fn new(channels: usize, settings: &Settings) -> Self {
        Self {
            drive: db_to_gain(settings.drive_db) as f32,
            wet: settings.mix as f32,
            up: Interpolator::new(channels, Design::ANTI_ALIAS),
            down: Decimator::new(channels, Design::ANTI_ALIAS),
        }
    }

    /// The static curve, blended.
    #[inline]
    fn shape(&self, x: f32) -> f32 {
        let saturated = (self.drive * x).tanh() / self.drive;
        x + self.wet * (saturated - x)
    }
}

impl Processor for Saturation {
    fn process(&mut self, block: &mut AudioBlock) {
        let mut oversampled = [0f32; FACTOR];
        for channel in 0..block.channel_count() {
            for n in 0..block.frames() {
                let x = block.channel(channel)[n];
                self.up.push(channel, x, &mut oversampled);
                for value in &mut oversampled {
                    *value = self.shape(*value);
                }
                block.channel_mut(channel)[n] = self.down.push(channel, &oversampled);
            }
        }
    }

    fn reset(&mut self) {
        self.up.reset();
        self.down.reset();
    }

    fn latency_frames(&self) -> usize {
        round_trip_latency_frames(Design::ANTI_ALIAS)
    }
}
