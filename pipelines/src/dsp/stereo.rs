//! Stereo width and mono bass for the mastering chain.
//!
//! Below `mono_below_hz` a 4th-order Linkwitz–Riley crossover (two
//! Butterworth sections per band, low and high) splits the signal; the low
//! band is summed to mono and the high band gets the mid/side width. LR4's
//! two bands add up to an all-pass, so the sum stays flat. Width 1 with no
//! mono crossover touches nothing.

use serde::{Deserialize, Serialize};
use std::f64::consts::FRAC_1_SQRT_2;

use super::biquad::FilterType;
use super::biquad::{Coefficients, SectionState, allpass, design};
use super::{AudioBlock, Processor};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Side gain: 0 (mono) .. 2.
    #[serde(default = "default_width")]
    pub width: f64,
    /// Below this crossover the signal is made mono; 0 turns it off.
    #[serde(default = "default_mono_below_hz")]
    pub mono_below_hz: f64,
}

fn default_width() -> f64 {
    1.1
}

fn default_mono_below_hz() -> f64 {
    120.0
}

pub struct StereoImage {
    width: f64,
    crossover: Option<Crossover>,
}

/// The crossover in mid/side form. The low band is mono, so only the mid
/// has one: the mid's low and high bands add back up to LR4's all-pass
/// (a 2nd-order all-pass at the crossover, Q = 1/√2), and the side keeps
/// only LR4's high-pass (two Butterworth sections). Three sections
/// instead of eight, with the same result.
struct Crossover {
    mid_allpass: Coefficients,
    side_high: [Coefficients; 2],
    /// The mid's all-pass and the side's two sections.
    state: [SectionState; 3],
}

impl StereoImage {
    pub fn new(rate_hz: u32, channels: usize, _max_block_frames: usize, settings: &Settings) -> Self {
        debug_assert_eq!(channels, 2, "stereo width works on stereo");
        let crossover = (settings.mono_below_hz > 0.0).then(|| {
            let high = design(FilterType::HighPass, settings.mono_below_hz, FRAC_1_SQRT_2, 0.0, rate_hz);
            Crossover {
                mid_allpass: allpass(settings.mono_below_hz, FRAC_1_SQRT_2, rate_hz),
                side_high: [high; 2],
                state: [SectionState::default(); 3],
            }
        });
        Self { width: settings.width, crossover }
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
        let width = self.width;
        let (left, right) = block.stereo_mut();
        let Some(crossover) = &mut self.crossover else {
            let width = width as f32;
            for (l, r) in left.iter_mut().zip(right.iter_mut()) {
                let mid = 0.5 * (*l + *r);
                let side = 0.5 * (*l - *r) * width;
                (*l, *r) = (mid + side, mid - side);
            }
            return;
        };
        let [mid_state, side_state_1, side_state_2] = &mut crossover.state;
        let (mid_allpass, [side_high_1, side_high_2]) = (&crossover.mid_allpass, &crossover.side_high);
        for (l, r) in left.iter_mut().zip(right.iter_mut()) {
            let (x_left, x_right) = (f64::from(*l), f64::from(*r));
            let mid = mid_state.step(mid_allpass, 0.5 * (x_left + x_right));
            let side = side_state_1.step(side_high_1, 0.5 * (x_left - x_right));
            let side = width * side_state_2.step(side_high_2, side);
            (*l, *r) = ((mid + side) as f32, (mid - side) as f32);
        }
        for section in &mut crossover.state {
            section.flush_denormals();
        }
    }

    fn reset(&mut self) {
        if let Some(crossover) = &mut self.crossover {
            crossover.state = [SectionState::default(); 3];
        }
    }
}
