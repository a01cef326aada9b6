//! Stereo width and mono bass for the mastering chain.
//!
//! Below `mono_below_hz` a 4th-order Linkwitz–Riley crossover (two
//! Butterworth sections per side, low and high) splits the signal; the low
//! band is summed to mono and the high band gets the mid/side width. LR4's
//! two bands add up to an all-pass, so the sum stays flat. Width 1 with no
//! mono crossover touches nothing.

use std::f64::consts::FRAC_1_SQRT_2;

use super::biquad::{FilterChain, design};
use super::{AudioBlock, Processor};
use crate::manifest::{FilterType, Stereo as Settings};

pub struct StereoImage {
    width: f32,
    crossover: Option<Crossover>,
}

struct Crossover {
    low: FilterChain,
    high: FilterChain,
    /// The low band of each channel, per block.
    low_band: [Vec<f32>; 2],
}

impl StereoImage {
    pub fn new(rate_hz: u32, max_block_frames: usize, settings: &Settings) -> Self {
        let crossover = (settings.mono_below_hz > 0.0).then(|| {
            let section = |kind| design(kind, settings.mono_below_hz, FRAC_1_SQRT_2, 0.0, rate_hz);
            Crossover {
                low: FilterChain::from_sections(2, vec![section(FilterType::LowPass); 2]),
                high: FilterChain::from_sections(2, vec![section(FilterType::HighPass); 2]),
                low_band: [vec![0.0; max_block_frames], vec![0.0; max_block_frames]],
            }
        });
        Self { width: settings.width as f32, crossover }
    }

    /// Nothing to do: width 1 and no mono bass.
    pub fn is_bypass(&self) -> bool {
        self.width == 1.0 && self.crossover.is_none()
    }
}

impl Processor for StereoImage {
    fn process(&mut self, block: &mut AudioBlock) {
        if self.is_bypass() || block.channel_count() != 2 {
            return;
        }
        let frames = block.frames();
        let width = self.width;
        if let Some(crossover) = &mut self.crossover {
            let [low_left, low_right] = &mut crossover.low_band;
            let (low_left, low_right) = (&mut low_left[..frames], &mut low_right[..frames]);
            low_left.copy_from_slice(block.channel(0));
            low_right.copy_from_slice(block.channel(1));
            crossover.low.process_pair(low_left, low_right);
            let (left, right) = block.stereo_mut();
            crossover.high.process_pair(left, right);
        }
        let (left, right) = block.stereo_mut();
        for n in 0..frames {
            let mid = 0.5 * (left[n] + right[n]);
            let side = 0.5 * (left[n] - right[n]) * width;
            left[n] = mid + side;
            right[n] = mid - side;
        }
        if let Some(crossover) = &self.crossover {
            let [low_left, low_right] = &crossover.low_band;
            for n in 0..frames {
                let mono = 0.5 * (low_left[n] + low_right[n]);
                left[n] += mono;
                right[n] += mono;
            }
        }
    }

    fn reset(&mut self) {
        if let Some(crossover) = &mut self.crossover {
            crossover.low.reset();
            crossover.high.reset();
        }
    }
}
