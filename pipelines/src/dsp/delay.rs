//! A feedback delay for return buses: echoes exactly `time_ms` apart
//! (rounded to the sample), each repeat darker through a low-pass in the
//! feedback path, optionally bouncing between left and right. The output is
//! wet only: it is a return.

use super::biquad::FilterType;
use super::biquad::{Coefficients, FilterChain, design};
use super::units::ms_to_frames;
use super::{AudioBlock, Processor};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default = "default_delay_time_ms")]
    pub time_ms: f64,
    #[serde(default = "default_feedback")]
    pub feedback: f64,
    #[serde(default = "default_high_cut_hz")]
    pub high_cut_hz: f64,
    #[serde(default)]
    pub ping_pong: bool,
}

fn default_delay_time_ms() -> f64 {
    120.0
}

fn default_feedback() -> f64 {
    0.25
}

fn default_high_cut_hz() -> f64 {
    6000.0
}

pub struct Delay {
    lines: [Vec<f32>; 2],
    position: usize,
    feedback: f32,
    ping_pong: bool,
    high_cut: FilterChain,
    /// The two channels' delayed samples of the current frame.
    taps: [f32; 2],
}

impl Delay {
    pub fn new(rate_hz: u32, channels: usize, _max_block_frames: usize, settings: &Settings) -> Self {
        debug_assert_eq!(channels, 2, "a delay return is stereo");
        let frames = ms_to_frames(settings.time_ms, rate_hz).max(1);
        let section: Coefficients =
            design(FilterType::LowPass, settings.high_cut_hz, std::f64::consts::FRAC_1_SQRT_2, 0.0, rate_hz);
        Self {
            lines: [vec![0.0; frames], vec![0.0; frames]],
            position: 0,
            feedback: settings.feedback as f32,
            ping_pong: settings.ping_pong,
            high_cut: FilterChain::from_sections(2, vec![section]),
            taps: [0.0; 2],
        }
    }

    /// The delay in frames.
    pub fn delay_frames(&self) -> usize {
        self.lines[0].len()
    }
}

impl Processor for Delay {
    /// Stereo in, stereo echoes out (a mono block is treated as both sides).
    fn process(&mut self, block: &mut AudioBlock) {
        let length = self.lines[0].len();
        let stereo = block.channel_count() == 2;
        for n in 0..block.frames() {
            let input_left = block.channel(0)[n];
            let input_right = if stereo { block.channel(1)[n] } else { input_left };
            for (tap, line) in self.taps.iter_mut().zip(&self.lines) {
                *tap = line[self.position];
            }
            // Filter the feedback, one sample per channel.
            let mut fed_back = self.taps;
            for (channel, sample) in fed_back.iter_mut().enumerate() {
                self.high_cut.process_channel(channel, std::slice::from_mut(sample));
            }
            if self.ping_pong {
                // Both sides start on the left and bounce: L, R, L, ...
                let mono = 0.5 * (input_left + input_right);
                self.lines[0][self.position] = mono + self.feedback * fed_back[1];
                self.lines[1][self.position] = self.feedback * fed_back[0];
            } else {
                self.lines[0][self.position] = input_left + self.feedback * fed_back[0];
                self.lines[1][self.position] = input_right + self.feedback * fed_back[1];
            }
            block.channel_mut(0)[n] = self.taps[0];
            if stereo {
                block.channel_mut(1)[n] = self.taps[1];
            }
            self.position = (self.position + 1) % length;
        }
    }

    fn reset(&mut self) {
        for line in &mut self.lines {
            line.fill(0.0);
        }
        self.high_cut.reset();
        self.position = 0;
    }
}
