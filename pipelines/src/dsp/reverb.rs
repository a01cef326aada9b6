//! An algorithmic stereo reverb: an 8-line feedback delay network (Jot) with
//! a Hadamard mixing matrix. Each line's loop gain is set from its length so
//! that every mode decays 60 dB in `decay_s`; a one-pole low-pass in each
//! loop (unity at DC) makes highs die sooner as `damping` grows. `size`
//! scales the line lengths, `predelay_ms` delays the onset and `width`
//! scales the side of the output. Deterministic: no random modulation.
//!
//! Once the input is silent and the tail has decayed below -200 dB, the
//! network is cleared and skipped, so long silences cost nothing and never
//! reach denormal numbers.

use super::units::ms_to_frames;
use super::{AudioBlock, Processor};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default = "default_decay_s")]
    pub decay_s: f64,
    #[serde(default = "default_predelay_ms")]
    pub predelay_ms: f64,
    #[serde(default = "default_half")]
    pub damping: f64,
    #[serde(default = "default_size")]
    pub size: f64,
    #[serde(default = "default_one")]
    pub width: f64,
}

fn default_decay_s() -> f64 {
    1.8
}

fn default_predelay_ms() -> f64 {
    20.0
}

fn default_half() -> f64 {
    0.5
}

fn default_size() -> f64 {
    0.7
}

fn default_one() -> f64 {
    1.0
}

const LINES: usize = 8;
/// Line lengths at size 0.5, in ms: mutually prime-ish, spread over an octave.
const BASE_LENGTHS_MS: [f64; LINES] = [31.3, 37.9, 41.7, 47.3, 53.1, 59.9, 67.3, 73.7];
/// A tail below this (linear) is silence.
const SILENT: f32 = 1e-10;

pub struct Reverb {
    lines: Vec<Vec<f32>>,
    positions: [usize; LINES],
    loop_gains: [f32; LINES],
    damping: f32,
    damping_state: [f32; LINES],
    predelay: [Vec<f32>; 2],
    predelay_position: usize,
    width: f32,
    idle: bool,
    /// Consecutive frames of silent input with every tap below `SILENT`.
    quiet_frames: usize,
    /// Frames it takes every stored sample to be read once.
    memory_frames: usize,
}

impl Reverb {
    pub fn new(rate_hz: u32, channels: usize, _max_block_frames: usize, settings: &Settings) -> Self {
        debug_assert_eq!(channels, 2, "a reverb return is stereo");
        let scale = 0.4 + 1.2 * settings.size;
        let mut lengths = [0usize; LINES];
        for (length, base_ms) in lengths.iter_mut().zip(BASE_LENGTHS_MS) {
            // Odd lengths keep the lines from sharing factors of two.
            *length = ms_to_frames(base_ms * scale, rate_hz).max(8) | 1;
        }
        let mut loop_gains = [0f32; LINES];
        for (gain, length) in loop_gains.iter_mut().zip(lengths) {
            // 60 dB in decay_s: per pass of `length` frames, -60 · length / (decay_s · rate).
            let db_per_pass = -60.0 * length as f64 / (settings.decay_s * f64::from(rate_hz));
            *gain = 10f64.powf(db_per_pass / 20.0) as f32;
        }
        let predelay_frames = ms_to_frames(settings.predelay_ms, rate_hz) + 1;
        let memory_frames = lengths.iter().max().copied().unwrap_or(0) + predelay_frames;
        Self {
            lines: lengths.iter().map(|&l| vec![0.0; l]).collect(),
            positions: [0; LINES],
            loop_gains,
            damping: (0.75 * settings.damping) as f32,
            damping_state: [0.0; LINES],
            predelay: [vec![0.0; predelay_frames], vec![0.0; predelay_frames]],
            predelay_position: 0,
            width: settings.width as f32,
            idle: true,
            quiet_frames: 0,
            memory_frames,
        }
    }

    /// True while the input is silent and the tail has died away.
    pub fn is_idle(&self) -> bool {
        self.idle
    }

    fn clear(&mut self) {
        for line in &mut self.lines {
            line.fill(0.0);
        }
        for line in &mut self.predelay {
            line.fill(0.0);
        }
        self.damping_state = [0.0; LINES];
    }
}

/// In-place 8-point fast Walsh–Hadamard transform, scaled to stay orthogonal.
#[inline]
fn hadamard(v: &mut [f32; LINES]) {
    let mut span = 1;
    while span < LINES {
        for start in (0..LINES).step_by(2 * span) {
            for i in start..start + span {
                let (a, b) = (v[i], v[i + span]);
                v[i] = a + b;
                v[i + span] = a - b;
            }
        }
        span *= 2;
    }
    let scale = 1.0 / (LINES as f32).sqrt();
    for x in v.iter_mut() {
        *x *= scale;
    }
}

impl Processor for Reverb {
    fn process(&mut self, block: &mut AudioBlock) {
        let stereo = block.channel_count() == 2;
        let input_silent = block.channels().all(|c| c.iter().all(|&s| s == 0.0));
        if self.idle && input_silent {
            return; // silence in, silence out
        }
        self.idle = false;
        let predelay_length = self.predelay[0].len();
        for n in 0..block.frames() {
            let in_left = block.channel(0)[n];
            let in_right = if stereo { block.channel(1)[n] } else { in_left };
            // Predelay.
            let read = (self.predelay_position + 1) % predelay_length;
            self.predelay[0][self.predelay_position] = in_left;
            self.predelay[1][self.predelay_position] = in_right;
            let (dry_left, dry_right) = (self.predelay[0][read], self.predelay[1][read]);
            self.predelay_position = read;

            let mut taps = [0f32; LINES];
            let mut tap_peak = 0f32;
            for (i, tap) in taps.iter_mut().enumerate() {
                *tap = self.lines[i][self.positions[i]];
                tap_peak = tap_peak.max(tap.abs());
            }
            if in_left == 0.0 && in_right == 0.0 && tap_peak < SILENT {
                self.quiet_frames += 1;
            } else {
                self.quiet_frames = 0;
            }
            // Output: even lines left, odd lines right, alternating signs.
            let mut out_left = 0f32;
            let mut out_right = 0f32;
            for i in 0..LINES / 2 {
                let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
                out_left += sign * taps[2 * i];
                out_right += sign * taps[2 * i + 1];
            }
            out_left *= 0.5;
            out_right *= 0.5;
            // Damping and absorption, then mixing.
            let mut feedback = taps;
            for ((value, state), gain) in feedback.iter_mut().zip(&mut self.damping_state).zip(&self.loop_gains) {
                *state = *value + self.damping * (*state - *value);
                *value = *state * gain;
            }
            hadamard(&mut feedback);
            for (i, ((line, position), value)) in
                self.lines.iter_mut().zip(&mut self.positions).zip(feedback).enumerate()
            {
                let input = if i % 2 == 0 { dry_left } else { dry_right };
                line[*position] = value + 0.5 * input;
                *position = (*position + 1) % line.len();
            }
            let mid = 0.5 * (out_left + out_right);
            let side = 0.5 * (out_left - out_right) * self.width;
            block.channel_mut(0)[n] = mid + side;
            if stereo {
                block.channel_mut(1)[n] = mid - side;
            } else {
                block.channel_mut(0)[n] = mid;
            }
        }
        if self.quiet_frames > self.memory_frames {
            self.clear();
            self.idle = true;
            self.quiet_frames = 0;
        }
    }

    fn reset(&mut self) {
        self.clear();
        self.positions = [0; LINES];
        self.predelay_position = 0;
        self.idle = true;
        self.quiet_frames = 0;
    }
}
