//! The accurate true-peak reader the meter and the limiter share: 4×
//! through the two steep halfband stages of [`super::oversample`] (flat
//! within 0.001 dB to 0.4535 fs), and around every 4× local maximum that
//! could hide a higher value between the 4× samples, 16× by a short
//! interpolator on the 4× stream.
//!
//! A 4× grid misses at most cos(π · 0.4535 / 4) = −0.56 dB of a peak below
//! 0.4535 fs, so only local maxima within that of what matters (the
//! highest so far for a meter, the ceiling for a limiter) are refined.

use super::oversample::{self, BlockInterpolator, Highest, PeakSink, PerFrame};

/// A 4× value this far under what matters cannot hide a higher
/// inter-sample peak: −0.56 dB, rounded out.
const REFINE_MARGIN: f32 = 0.93;
/// Half the taps of the 16× refinement kernel, in 4× samples.
const HALF_TAPS: usize = 8;
/// The 4× values kept from one block to the next: a refinement window.
const HISTORY: usize = 2 * HALF_TAPS;

/// 4× values, refined to 16× near the peaks that matter, a block at a time.
#[derive(Debug, Clone)]
pub struct FinePeaks {
    stages: [BlockInterpolator; 2],
    /// Per channel: the last [`HISTORY`] 4× values, then the current block's.
    fine: Vec<Vec<f32>>,
    /// Per channel: the 4× values made so far.
    made: Vec<u64>,
    /// Three kernels (offsets ¼, ½, ¾ of a 4× step) of `2 · HALF_TAPS`
    /// taps: value at `i + d` = Σ_k kernel[k] · fine[i − HALF + 1 + k].
    kernels: [[f32; 2 * HALF_TAPS]; 3],
}

impl FinePeaks {
    /// How many frames before a block's frame slot `n` the readings
    /// [`Self::raise_peaks`] gives it lie: between input frames
    /// `n − LAG_FRAMES.0` and `n − LAG_FRAMES.1` (the 4× values of slot `n`
    /// sit 30¼ to 29½ frames back, their refinements ¼ frame either side).
    pub const LAG_FRAMES: (usize, usize) = (31, 29);

    pub fn new(channels: usize, max_block_frames: usize) -> Self {
        let kernels = std::array::from_fn(|j| {
            let d = (j + 1) as f64 / 4.0;
            std::array::from_fn(|k| {
                // Distance from the sought point to tap k, in 4× samples.
                let t = (k as f64 - (HALF_TAPS as f64 - 1.0)) - d;
                // Lowpass at a quarter of the 4× rate (the stream holds
                // nothing above 0.12 of it), Kaiser β = 8 over the span.
                let cutoff = 0.25;
                let sinc = if t.abs() < 1e-12 {
                    2.0 * cutoff
                } else {
                    (2.0 * std::f64::consts::PI * cutoff * t).sin() / (std::f64::consts::PI * t)
                };
                let ratio = t / HALF_TAPS as f64;
                let window =
                    oversample::bessel_i0(8.0 * (1.0 - ratio * ratio).max(0.0).sqrt()) / oversample::bessel_i0(8.0);
                (sinc * window) as f32
            })
        });
        Self {
            stages: oversample::halfband_interpolators(channels, max_block_frames),
            fine: vec![vec![0.0; HISTORY + 4 * max_block_frames]; channels],
            made: vec![0; channels],
            kernels,
        }
    }

    /// The highest reading of one channel's block, or `highest` if none
    /// is higher. Values that depend on samples before the stream's first
    /// are not read: a stream's start is not a step from silence (EBU Tech
    /// 3341 cases 15–19 switch their sines on abruptly and expect the
    /// steady tone's peak).
    pub fn peak(&mut self, channel: usize, samples: &[f32], highest: f32) -> f32 {
        let mut sink = Highest(highest);
        // `fine[HISTORY]` will be 4× value number `made`.
        let first_valid = (oversample::HALFBAND_WARMUP_4X + HISTORY) as u64;
        let from = (first_valid + HISTORY as u64).saturating_sub(self.made[channel]).max(HISTORY as u64) as usize;
        self.scan(channel, samples, from, &mut sink);
        sink.0
    }

    /// Raises `peaks[n]` to the largest reading of the block's frame slot
    /// `n` (see [`Self::LAG_FRAMES`]) wherever it could exceed `floor`;
    /// readings under it may be missing. The stream's start is read as a
    /// step from silence.
    pub fn raise_peaks(&mut self, channel: usize, samples: &[f32], peaks: &mut [f32], floor: f32) {
        self.scan(channel, samples, HISTORY, &mut PerFrame { peaks, floor });
    }

    /// Makes one channel's 4× values and hands `sink` those at `from` on
    /// (an index into the buffer, at least [`HISTORY`]) that could exceed
    /// its floor, refined around their local maxima.
    fn scan(&mut self, channel: usize, samples: &[f32], from: usize, sink: &mut impl PeakSink) {
        let frames = samples.len();
        let [first, second] = &mut self.stages;
        first.run(channel, samples);
        let [even, odd] = first.phase_outputs() else { unreachable!("a halfband stage has two phases") };
        second.run_interleaved(channel, &even[..frames], &odd[..frames]);
        let fine = &mut self.fine[channel];
        let [even, odd] = second.phase_outputs() else { unreachable!("a halfband stage has two phases") };
        super::interleave(even, odd, &mut fine[HISTORY..HISTORY + 4 * frames]);
        self.made[channel] += 4 * frames as u64;
        if from < HISTORY + 4 * frames {
            refine(&self.kernels, &fine[..HISTORY + 4 * frames], from, sink);
        }
        fine.copy_within(4 * frames..4 * frames + HISTORY, 0);
    }

    pub fn reset(&mut self) {
        for stage in &mut self.stages {
            stage.reset();
        }
        for buffer in &mut self.fine {
            buffer.fill(0.0);
        }
        self.made.fill(0);
    }
}

/// Hands `sink` the magnitudes among `fine[from - HALF ..]` (a 4× stream
/// whose last `HALF` values wait for their right-hand neighbours) that
/// could exceed its floor, each in its frame slot (4 values a slot,
/// counted from `HISTORY − HALF`), with the 16× values around every local
/// maximum within [`REFINE_MARGIN`] of the floor.
fn refine(kernels: &[[f32; 2 * HALF_TAPS]; 3], fine: &[f32], from: usize, sink: &mut impl PeakSink) {
    // Values i in [from - HALF, len - HALF) have HALF neighbours each side.
    let (first, last) = (from - HALF_TAPS, fine.len() - HALF_TAPS);
    let block_max = super::max_abs(&fine[first..last], 0.0);
    if block_max <= sink.floor() * REFINE_MARGIN {
        return;
    }
    for i in first..last {
        let v = fine[i].abs();
        if v <= sink.floor() * REFINE_MARGIN {
            continue;
        }
        let slot = (i - (HISTORY - HALF_TAPS)) / 4;
        sink.take(slot, &[v]);
        if v < fine[i - 1].abs() || v < fine[i + 1].abs() {
            continue;
        }
        // Between i - 1 and i, and between i and i + 1.
        for base in [i - 1, i] {
            let window = &fine[base + 1 - HALF_TAPS..base + 1 + HALF_TAPS];
            for kernel in kernels {
                let value: f32 = kernel.iter().zip(window).map(|(k, x)| k * x).sum();
                sink.take(slot, &[value]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refinement_kernels_interpolate_a_slow_sine() {
        let kernels = FinePeaks::new(1, 16).kernels;
        let x = |t: f64| (0.3 * t).sin() as f32;
        let fine: Vec<f32> = (0..64).map(|n| x(n as f64)).collect();
        for (j, kernel) in kernels.iter().enumerate() {
            let d = (j + 1) as f64 / 4.0;
            let i = 30;
            let window = &fine[i + 1 - HALF_TAPS..i + 1 + HALF_TAPS];
            let got: f32 = kernel.iter().zip(window).map(|(k, v)| k * v).sum();
            assert!((got - x(i as f64 + d)).abs() < 2e-4, "offset {d}: {got} vs {}", x(i as f64 + d));
        }
    }

    #[test]
    fn readings_land_in_their_frame_slots() {
        // One full-scale click at frame 100: its 4× values peak (1.0, the
        // sample itself) in slot 100 + 30 (30¼ frames back is the slot's
        // first value; the sample sits at its ¼).
        let mut peaks_reader = FinePeaks::new(1, 64);
        let mut input = vec![0f32; 256];
        input[100] = 1.0;
        let mut peaks = vec![0f32; 256];
        for (chunk, peaks) in input.chunks(64).zip(peaks.chunks_mut(64)) {
            peaks_reader.raise_peaks(0, chunk, peaks, 0.5);
        }
        let slot = peaks.iter().position(|&p| p >= 0.999).expect("the click is read");
        let (early, late) = FinePeaks::LAG_FRAMES;
        assert!((100 + late..=100 + early).contains(&slot), "slot {slot}");
        assert!(peaks.iter().all(|&p| p <= 1.0 + 1e-3), "a click's peak is the click");
    }
}
