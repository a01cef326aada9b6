//! A true-peak limiter with lookahead and a smooth release.
//!
//! Peaks are found between the samples as well as on them. For each stretch between two samples the gain that would keep it under
//! the ceiling is computed; a sliding minimum holds that gain for one
//! window beyond the lookahead, an exponential release lets it recover,
//! and a moving average over the window shapes the attack into a smooth
//! ramp. Every value in the average is at most the gain a peak needs while
//! that peak passes, so the average is too: the ceiling holds by
//! construction, with a small margin for the way the gain's own movement
//! reshapes the waveform between samples.
//!
//! Peaks are read by the meter's two readers and the larger reading
//! counts: the accurate one ([`FinePeaks`]: 4× through flat halfbands, 16×
//! near the ceiling) and the interpolator a BS.1770 meter such as `ebur128`
//! uses, whose ripple near Nyquist can read dense material a little
//! higher. The delivered file then measures under the ceiling on both.
//!
//! All channels share one gain, so the stereo image never moves.

use super::fine_peak::FinePeaks;
use super::oversample::{BlockInterpolator, bs1770_meter_delay_frames};
use super::units::{db_to_gain, gain_to_db, ms_to_frames, one_pole_coefficient};
use super::{AudioBlock, Processor};

/// How far under the ceiling the limiter aims, for inter-sample effects of
/// the gain changes themselves and for differences between true-peak
/// meters.
pub const SAFETY_MARGIN_DB: f64 = 0.1;

/// The most frames the true-peak readers take at once (see `process`).
const PEAK_PIECE_FRAMES: usize = 1024;

#[derive(Debug, Clone)]
pub struct LimiterSettings {
    pub ceiling_dbtp: f64,
    pub release_ms: f64,
    pub lookahead_ms: f64,
}

/// A fixed-capacity ring buffer of (index, value) pairs used as the
/// monotonic deque of a sliding-window minimum.
#[derive(Debug, Clone)]
struct SlidingMinimum {
    window: u64,
    indices: Vec<u64>,
    values: Vec<f64>,
    head: usize,
    len: usize,
}

impl SlidingMinimum {
    fn new(window: usize) -> Self {
        Self { window: window as u64, indices: vec![0; window + 1], values: vec![0.0; window + 1], head: 0, len: 0 }
    }

    #[inline]
    fn slot(&self, offset: usize) -> usize {
        // offset ≤ capacity: one conditional subtraction, not a division.
        let slot = self.head + offset;
        if slot >= self.indices.len() { slot - self.indices.len() } else { slot }
    }

    /// Adds `value` at `index` and returns the minimum of the last `window`.
    fn push(&mut self, index: u64, value: f64) -> f64 {
        while self.len > 0 && self.values[self.slot(self.len - 1)] >= value {
            self.len -= 1;
        }
        let slot = self.slot(self.len);
        self.indices[slot] = index;
        self.values[slot] = value;
        self.len += 1;
        while self.indices[self.head] + self.window <= index {
            self.head = self.slot(1);
            self.len -= 1;
        }
        self.values[self.head]
    }

    /// Whether every value held is 1 (or none is).
    fn is_unity(&self) -> bool {
        self.len == 0 || self.values[self.head] == 1.0
    }

    /// Holds `value` at `index` alone, as pushing a value no larger than
    /// all those held would.
    fn only(&mut self, index: u64, value: f64) {
        self.indices[self.head] = index;
        self.values[self.head] = value;
        self.len = 1;
    }

    fn reset(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

#[derive(Debug, Clone)]
pub struct TruePeakLimiter {
    ceiling: f64,
    /// The largest f32 not above `ceiling`: peaks that cannot pass it are not computed.
    ceiling_f32: f32,
    /// Computes every peak and every frame's recursion, without the
    /// shortcuts (for the tests that prove the shortcuts exact).
    exhaustive: bool,
    window: usize,
    release_coefficient: f64,
    fine_peaks: FinePeaks,
    meter_interpolator: BlockInterpolator,
    /// Per channel: the delayed audio, then the current block.
    delayed: Vec<Vec<f32>>,
    delay_frames: usize,
    /// Per frame of the current block: peak, then gain.
    peaks: Vec<f32>,
    /// Per frame of the block: the gain its peak needs (≤ 1).
    needed: Vec<f64>,
    minimum: SlidingMinimum,
    /// Gain after the release stage.
    held_gain: f64,
    /// Ring of the last `window` held gains and their sum.
    average_ring: Vec<f64>,
    average_sum: f64,
    average_position: usize,
    /// How many of the ring's gains are exactly 1.
    unity_in_ring: usize,
    frame_index: u64,
    smallest_gain: f64,
}

impl TruePeakLimiter {
    pub fn new(rate_hz: u32, channels: usize, max_block_frames: usize, settings: &LimiterSettings) -> Self {
        let window = ms_to_frames(settings.lookahead_ms, rate_hz).max(1);
        // Each reader sees a frame's surroundings some frames after it
        // arrives: the reading it gives for frame n concerns the frames
        // from n − latest back to n − earliest. The audio waits until the
        // farthest back a reading reaches has arrived; each minimum is held
        // from the first frame a reading concerns to the last.
        let (fine_latest, fine_earliest) = FinePeaks::LAG_FRAMES;
        let meter = bs1770_meter_delay_frames(rate_hz);
        let (latest, earliest) = (fine_latest.max(meter), fine_earliest.min(meter - 1));
        let delay = latest + window - 1;
        let hold = window + latest - earliest;
        let ceiling = db_to_gain(settings.ceiling_dbtp - SAFETY_MARGIN_DB);
        // The largest f32 not above the ceiling.
        let mut ceiling_f32 = ceiling as f32;
        if f64::from(ceiling_f32) > ceiling {
            ceiling_f32 = f32::from_bits(ceiling_f32.to_bits() - 1);
        }
        Self {
            ceiling,
            ceiling_f32,
            exhaustive: false,
            window,
            release_coefficient: one_pole_coefficient(settings.release_ms, rate_hz),
            fine_peaks: FinePeaks::new(channels, max_block_frames.min(PEAK_PIECE_FRAMES)),
            meter_interpolator: BlockInterpolator::bs1770_meter(
                channels,
                max_block_frames.min(PEAK_PIECE_FRAMES),
                rate_hz,
            ),
            delayed: vec![vec![0.0; delay + max_block_frames]; channels],
            delay_frames: delay,
            peaks: vec![0.0; max_block_frames],
            needed: vec![1.0; max_block_frames],
            minimum: SlidingMinimum::new(hold),
            held_gain: 1.0,
            average_ring: vec![1.0; window],
            average_sum: window as f64,
            average_position: 0,
            unity_in_ring: window,
            frame_index: 0,
            smallest_gain: 1.0,
        }
    }

    /// The most gain reduction applied since the start (or reset), in dB (≥ 0).
    pub fn max_gain_reduction_db(&self) -> f64 {
        -gain_to_db(self.smallest_gain)
    }

    /// The gain for the frame now leaving the delay line, after taking in
    /// the peak of the newest stretch between samples.
    /// At rest: no reduction held, released or being averaged, so frames
    /// whose peaks need none pass at the gain [`Self::idle_run`] gives.
    fn is_idle(&self) -> bool {
        self.held_gain == 1.0 && self.unity_in_ring == self.window && self.minimum.is_unity()
    }

    /// What [`Self::next_gain`] does, frame by frame, for a run of frames
    /// that need no reduction while the limiter is idle: the minimum holds
    /// only the newest 1, the ring stays all ones and its sum changes only
    /// where a pass through the ring makes it sum afresh. Writes the gains.
    fn idle_run(&mut self, gains: &mut [f64]) {
        let Some(last) = (gains.len() as u64).checked_sub(1) else { return };
        self.minimum.only(self.frame_index + last, 1.0);
        self.frame_index += last + 1;
        let mut gain = (self.average_sum / self.window as f64).min(1.0);
        for slot in gains.iter_mut() {
            *slot = gain;
            self.smallest_gain = self.smallest_gain.min(gain);
            self.average_position += 1;
            if self.average_position == self.window {
                self.average_position = 0;
                self.average_sum = self.window as f64;
                gain = 1.0;
            }
        }
    }

    /// The gain for the next frame, given the gain its peak needs.
    #[inline]
    fn next_gain(&mut self, needed: f64) -> f64 {
        let held = self.minimum.push(self.frame_index, needed);
        self.frame_index += 1;
        let mut released = self.release_coefficient * self.held_gain + (1.0 - self.release_coefficient);
        if released > 1.0 - 1e-9 {
            released = 1.0; // back to exact unity: untouched audio stays bit-identical
        }
        self.held_gain = held.min(released);
        let leaving = self.average_ring[self.average_position];
        self.average_sum += self.held_gain - leaving;
        self.unity_in_ring += usize::from(self.held_gain == 1.0);
        self.unity_in_ring -= usize::from(leaving == 1.0);
        self.average_ring[self.average_position] = self.held_gain;
        self.average_position += 1;
        if self.average_position == self.window {
            // Once per window, drop the running sum's rounding drift.
            self.average_position = 0;
            self.average_sum = self.average_ring.iter().sum();
        }
        (self.average_sum / self.window as f64).min(1.0)
    }
}

impl Processor for TruePeakLimiter {
    fn process(&mut self, block: &mut AudioBlock) {
        let frames = block.frames();
        let peaks = &mut self.peaks[..frames];
        for (peak, sample) in peaks.iter_mut().zip(block.channel(0)) {
            *peak = sample.abs();
        }
        for channel in 1..block.channel_count() {
            for (peak, sample) in peaks.iter_mut().zip(block.channel(channel)) {
                *peak = peak.max(sample.abs());
            }
        }
        // Only peaks above the ceiling matter: the interpolators skip the
        // stretches that cannot reach it. A piece of the block at a time,
        // so its 4× values stay in the nearest caches between the stages
        // that make and read them (the readers carry their state from one
        // piece to the next: the same peaks however the block is cut).
        let floor = if self.exhaustive { 0.0 } else { self.ceiling_f32 };
        for start in (0..frames).step_by(PEAK_PIECE_FRAMES) {
            let piece = start..(start + PEAK_PIECE_FRAMES).min(frames);
            for channel in 0..block.channel_count() {
                let samples = &block.channel(channel)[piece.clone()];
                self.fine_peaks.raise_peaks(channel, samples, &mut peaks[piece.clone()], floor);
                self.meter_interpolator.raise_peaks(channel, samples, &mut peaks[piece.clone()], floor);
            }
        }
        // Turn each frame's peak into the gain for the frame leaving the delay.
        // First the gain each frame's peak needs (independent divisions),
        // then the recursion over frames.
        let ceiling = self.ceiling;
        let mut needed = std::mem::take(&mut self.needed);
        for (needed, &peak) in needed.iter_mut().zip(&self.peaks[..frames]) {
            let peak = f64::from(peak);
            *needed = if peak > ceiling { ceiling / peak } else { 1.0 };
        }
        let mut n = 0;
        while n < frames {
            if needed[n] == 1.0 && !self.exhaustive && self.is_idle() {
                let run = needed[n..frames].iter().position(|&g| g != 1.0).unwrap_or(frames - n);
                self.idle_run(&mut needed[n..n + run]);
                n += run;
                continue;
            }
            let gain = self.next_gain(needed[n]);
            self.smallest_gain = self.smallest_gain.min(gain);
            needed[n] = gain;
            n += 1;
        }
        for (gain_out, &gain) in self.peaks[..frames].iter_mut().zip(&needed) {
            *gain_out = gain as f32;
        }
        self.needed = needed;
        let delay = self.delay_frames;
        for (channel, delayed) in self.delayed.iter_mut().enumerate() {
            delayed[delay..delay + frames].copy_from_slice(block.channel(channel));
            for ((out, late), gain) in
                block.channel_mut(channel).iter_mut().zip(&delayed[..frames]).zip(&self.peaks[..frames])
            {
                *out = late * gain;
            }
            delayed.copy_within(frames..frames + delay, 0);
        }
    }

    fn reset(&mut self) {
        self.fine_peaks.reset();
        self.meter_interpolator.reset();
        for line in &mut self.delayed {
            line.fill(0.0);
        }
        self.minimum.reset();
        self.held_gain = 1.0;
        self.average_ring.fill(1.0);
        self.average_sum = self.window as f64;
        self.average_position = 0;
        self.unity_in_ring = self.window;
        self.frame_index = 0;
        self.smallest_gain = 1.0;
    }

    fn latency_frames(&self) -> usize {
        self.delay_frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_minimum_matches_a_naive_one() {
        let values: Vec<f64> = (0..500).map(|n| ((n * 7919) % 101) as f64).collect();
        let mut minimum = SlidingMinimum::new(13);
        for (n, &v) in values.iter().enumerate() {
            let got = minimum.push(n as u64, v);
            let want = values[n.saturating_sub(12)..=n].iter().copied().fold(f64::INFINITY, f64::min);
            assert_eq!(got, want, "at {n}");
        }
    }

    #[test]
    fn latency_is_reported_and_exact() {
        let settings = LimiterSettings { ceiling_dbtp: -1.0, release_ms: 60.0, lookahead_ms: 1.5 };
        let mut limiter = TruePeakLimiter::new(48_000, 1, 256, &settings);
        let latency = limiter.latency_frames();
        assert_eq!(latency, 31 + 72 - 1, "the accurate reader (31) is slower than the meter's (6) at 48 kHz");
        let at_96k = TruePeakLimiter::new(96_000, 1, 256, &settings).latency_frames();
        assert_eq!(at_96k, 31 + 144 - 1, "and than its 2x interpolator (12) at 96 kHz");
        let mut block = AudioBlock::new(1, 256);
        block.channel_mut(0)[0] = 0.25;
        limiter.process(&mut block);
        let position = block.channel(0).iter().position(|&s| s != 0.0).unwrap();
        assert_eq!(position, latency);
        assert_eq!(block.channel(0)[latency], 0.25, "quiet material passes untouched");
    }

    #[test]
    fn shortcuts_change_no_bit() {
        // Quiet stretches, loud bursts (some into the ceiling), silence,
        // and bursts right at block edges.
        let mut state = 0x2545_f491u32;
        let input: Vec<f32> = (0..48_000)
            .map(|n| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let noise = state as f32 / u32::MAX as f32 - 0.5;
                let level = match (n / 1500) % 6 {
                    0 => 0.3,
                    1 => 2.2,
                    2 => 0.0,
                    3 => 0.85,
                    4 => 1.3,
                    // fs/4 at 45°: samples at 0.71, true peak 1 (over the
                    // ceiling between the samples only).
                    _ => return (std::f32::consts::FRAC_PI_2 * n as f32 + std::f32::consts::FRAC_PI_4).sin(),
                };
                level * (noise + 0.6 * (n as f32 * 0.07).sin())
            })
            .collect();
        let settings = LimiterSettings { ceiling_dbtp: -1.0, release_ms: 20.0, lookahead_ms: 1.5 };
        let run = |exhaustive: bool| {
            let mut limiter = TruePeakLimiter::new(44_100, 2, 1000, &settings);
            limiter.exhaustive = exhaustive;
            let mut out = Vec::new();
            for chunk in input.chunks(1000) {
                let mut block = AudioBlock::from_planar(vec![chunk.to_vec(), chunk.iter().map(|x| -0.5 * x).collect()]);
                limiter.process(&mut block);
                out.extend_from_slice(block.channel(0));
                out.extend_from_slice(block.channel(1));
            }
            (out, limiter.max_gain_reduction_db())
        };
        let (fast, fast_reduction_db) = run(false);
        let (exhaustive, exhaustive_reduction_db) = run(true);
        assert!(exhaustive_reduction_db > 3.0, "the bursts are limited");
        assert_eq!(fast_reduction_db, exhaustive_reduction_db);
        assert!(fast.iter().zip(&exhaustive).all(|(a, b)| a.to_bits() == b.to_bits()), "bit-identical");
    }
}
