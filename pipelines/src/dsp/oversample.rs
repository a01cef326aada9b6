//! 4× oversampling with linear-phase FIR filters designed by the
//! Kaiser window method: an interpolator (for true-peak detection and for
//! running nonlinearities at 4× the rate) and a decimator (back down).

use super::halfbands;
use std::f64::consts::PI;

/// The oversampling factor.
pub const FACTOR: usize = 4;

/// Modified Bessel function of the first kind, order 0 (power series):
/// the heart of the Kaiser window.
pub fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let half_x = x / 2.0;
    for k in 1..64 {
        term *= half_x / k as f64;
        sum += term * term;
        if term * term < sum * 1e-18 {
            break;
        }
    }
    sum
}

/// A windowed-sinc lowpass: `taps` coefficients (odd, for an integer
/// delay), cutoff in cycles per sample (0..0.5), Kaiser `beta`, scaled by
/// `gain`. Not renormalised: with the cutoff at 1/(2·factor) every
/// factor-th tap from the centre stays exactly zero (a Nyquist filter).
pub fn kaiser_lowpass(taps: usize, cutoff: f64, beta: f64, gain: f64) -> Vec<f64> {
    assert!(taps % 2 == 1, "an odd number of taps keeps the delay whole");
    let centre = (taps / 2) as f64;
    (0..taps)
        .map(|n| {
            let t = n as f64 - centre;
            let sinc = if t == 0.0 { 2.0 * cutoff } else { (2.0 * PI * cutoff * t).sin() / (PI * t) };
            let ratio = t / centre;
            gain * sinc * bessel_i0(beta * (1.0 - ratio * ratio).max(0.0).sqrt()) / bessel_i0(beta)
        })
        .collect()
}

/// A filter design for 4× oversampling. An odd number of taps per phase
/// makes every delay a whole number of base-rate frames.
#[derive(Debug, Clone, Copy)]
pub struct Design {
    /// Taps per polyphase branch.
    pub taps_per_phase: usize,
    /// Cutoff as a fraction of the base rate's Nyquist frequency.
    pub cutoff_of_nyquist: f64,
    pub kaiser_beta: f64,
}

impl Design {
    /// For finding inter-sample peaks: cutoff at the base Nyquist frequency,
    /// so the original samples are kept (a Nyquist filter).
    pub const TRUE_PEAK: Design = Design { taps_per_phase: 17, cutoff_of_nyquist: 1.0, kaiser_beta: 7.0 };

    fn coefficients(&self) -> Vec<f64> {
        let taps = self.taps_per_phase * FACTOR - (FACTOR - 1);
        kaiser_lowpass(taps, 0.5 * self.cutoff_of_nyquist / FACTOR as f64, self.kaiser_beta, FACTOR as f64)
    }

    /// Delay of one filter pass, in frames at the oversampled rate.
    fn delay_oversampled(&self) -> usize {
        (self.taps_per_phase * FACTOR - FACTOR) / 2
    }
}

/// Makes `factor` (at most 4) samples out of each input sample, a block at
/// a time. The input and its history sit in one buffer; each phase is a
/// short FIR computed tap by tap over the whole block, so the inner loop
/// runs over contiguous frames and vectorizes.
#[derive(Debug, Clone)]
pub struct BlockInterpolator {
    /// Per phase p: the coefficient of each (nonzero) k-th most recent input.
    phases: Vec<Taps>,
    /// Per channel: history, then the block.
    input: Vec<Vec<f32>>,
    /// Per phase: the outputs of the current block.
    outputs: Vec<Vec<f32>>,
    history: usize,
    /// Per phase, Σ|h| with room for f32 rounding: none of the phase's
    /// outputs exceeds the largest input magnitude times this.
    gain_bounds: Vec<f32>,
    /// The largest of them.
    gain_bound: f32,
}

impl BlockInterpolator {
    pub fn new(channels: usize, max_block_frames: usize, design: Design) -> Self {
        Self::from_coefficients(channels, max_block_frames, FACTOR, &design.coefficients())
    }

    /// The interpolator of a BS.1770 true-peak meter such as `ebur128`: a
    /// 48-tap Hann-windowed sinc, 4× below 96 kHz, 2× below 192 kHz, none
    /// above. Its delay is 24 / factor frames.
    pub fn bs1770_meter(channels: usize, max_block_frames: usize, rate_hz: u32) -> Self {
        const TAPS: usize = 48;
        let factor = bs1770_meter_factor(rate_hz);
        let h: Vec<f64> = (0..TAPS)
            .map(|j| {
                let window = 0.5 * (1.0 - (2.0 * PI * j as f64 / TAPS as f64).cos());
                let m = j as isize - TAPS as isize / 2;
                let x = m as f64 * PI / factor as f64;
                // The sinc's zero crossings are zeros (f64's sin(kπ) is
                // ~1e-16, a tap that changes no output but costs as much as
                // any): phase 0 is then the input itself, one tap.
                if m == 0 {
                    window
                } else if m % factor as isize == 0 {
                    0.0
                } else {
                    window * x.sin() / x
                }
            })
            .collect();
        Self::from_coefficients(channels, max_block_frames, factor, &h)
    }

    /// An interpolator by `factor` (at most 4) from the prototype `h`.
    pub(crate) fn from_coefficients(channels: usize, max_block_frames: usize, factor: usize, h: &[f64]) -> Self {
        assert!((1..=FACTOR).contains(&factor));
        let taps_per_phase = h.len().div_ceil(factor);
        let phases = (0..factor)
            .map(|p| {
                let dense: Vec<f32> =
                    (0..taps_per_phase).map(|k| h.get(p + factor * k).copied().unwrap_or(0.0) as f32).collect();
                Taps::from_dense(&dense)
            })
            .collect();
        let history = taps_per_phase - 1;
        let gain_bounds: Vec<f32> = (0..factor)
            .map(|p| (h.iter().skip(p).step_by(factor).map(|c| c.abs()).sum::<f64>() * (1.0 + 1e-5)) as f32)
            .collect();
        Self {
            gain_bound: gain_bounds.iter().copied().fold(0.0, f32::max),
            gain_bounds,
            phases,
            input: vec![vec![0.0; history + max_block_frames]; channels],
            outputs: vec![vec![0.0; max_block_frames]; factor],
            history,
        }
    }

    /// How many samples each input makes.
    pub fn factor(&self) -> usize {
        self.outputs.len()
    }

    /// Delay in base-rate frames of a [`Design`]: the phase-0 output made
    /// for input `n` is input `n - delay` itself (odd taps per phase).
    pub fn delay_frames(design: Design) -> usize {
        debug_assert!(design.taps_per_phase % 2 == 1);
        design.delay_oversampled() / FACTOR
    }

    /// Computes every phase's outputs for one channel's block (read them
    /// with [`Self::phase_outputs`]).
    pub(crate) fn run(&mut self, channel: usize, samples: &[f32]) {
        let frames = samples.len();
        self.input[channel][self.history..self.history + frames].copy_from_slice(samples);
        self.filter_input(channel, frames);
    }

    /// [`Self::run`] on a stream given as its even and odd samples (a 2×
    /// stage's phase outputs), interleaved straight into the input.
    pub(crate) fn run_interleaved(&mut self, channel: usize, even: &[f32], odd: &[f32]) {
        let frames = 2 * even.len();
        super::interleave(even, odd, &mut self.input[channel][self.history..self.history + frames]);
        self.filter_input(channel, frames);
    }

    /// Every phase's outputs for the block of `frames` in the input.
    fn filter_input(&mut self, channel: usize, frames: usize) {
        let input = &mut self.input[channel];
        for (phase, outputs) in self.phases.iter().zip(self.outputs.iter_mut()) {
            let outputs = &mut outputs[..frames];
            fir_filter(phase, input, self.history, outputs);
        }
        input.copy_within(frames..frames + self.history, 0);
    }

    /// Upsamples one channel's block into `out` (`factor` × its length).
    pub fn upsample(&mut self, channel: usize, samples: &[f32], out: &mut [f32]) {
        self.run(channel, samples);
        let frames = samples.len();
        if let [even, odd] = &self.outputs[..] {
            super::interleave(even, odd, &mut out[..2 * frames]);
            return;
        }
        let factor = self.factor();
        for (p, outputs) in self.outputs.iter().enumerate() {
            for (n, value) in outputs[..frames].iter().enumerate() {
                out[factor * n + p] = *value;
            }
        }
    }

    /// Raises `peaks[n]` to the largest magnitude among frame `n`'s
    /// outputs, wherever that could exceed `floor`: a group of frames whose
    /// inputs are too small for any output to pass `floor` (their largest
    /// magnitude times the filter's gain bound, Σ|h|) is not computed,
    /// since the caller only cares about peaks above `floor`. With
    /// `floor = 0` every output is computed except those of silence.
    pub fn raise_peaks(&mut self, channel: usize, samples: &[f32], peaks: &mut [f32], floor: f32) {
        self.scan(channel, samples, &mut PerFrame { peaks, floor });
    }

    /// Per phase, the outputs [`Self::run`] made for the last block.
    pub(crate) fn phase_outputs(&self) -> &[Vec<f32>] {
        &self.outputs
    }

    /// The largest output magnitude of one channel's block, wherever it
    /// could exceed `floor` (groups that cannot are skipped, as in
    /// [`Self::raise_peaks`], against the highest so far); `floor` if none.
    pub fn peak(&mut self, channel: usize, samples: &[f32], floor: f32) -> f32 {
        let mut highest = Highest(floor);
        self.scan(channel, samples, &mut highest);
        highest.0
    }

    /// Computes one channel's outputs a group of frames at a time, only
    /// where they could exceed `sink.floor()`, and hands them to `sink`.
    fn scan(&mut self, channel: usize, samples: &[f32], sink: &mut impl PeakSink) {
        const GROUP: usize = 64;
        let (frames, history) = (samples.len(), self.history);
        let input = &mut self.input[channel];
        input[history..history + frames].copy_from_slice(samples);
        for start in (0..frames).step_by(GROUP) {
            let end = (start + GROUP).min(frames);
            // Outputs start..end read inputs start - history ..= end - 1.
            let reach = super::max_abs(&input[start..history + end], 0.0);
            if reach * self.gain_bound <= sink.floor() {
                continue;
            }
            for ((phase, outputs), bound) in self.phases.iter().zip(self.outputs.iter_mut()).zip(&self.gain_bounds) {
                // A phase can be quieter than the others: a BS.1770
                // meter's phase 0 is the input itself, which a floor
                // holding the sample peak already covers.
                if reach * bound <= sink.floor() {
                    continue;
                }
                let outputs = &mut outputs[start..end];
                fir_filter(phase, input, history + start, outputs);
                sink.take(start, outputs);
            }
        }
        input.copy_within(frames..frames + history, 0);
    }

    pub fn reset(&mut self) {
        for buffer in &mut self.input {
            buffer.fill(0.0);
        }
    }
}

/// Where [`BlockInterpolator::scan`] (and [`super::fine_peak::FinePeaks`])
/// put the outputs they compute.
pub(super) trait PeakSink {
    /// Outputs that cannot exceed this are not wanted.
    fn floor(&self) -> f32;
    /// One phase's outputs for the frames from `start` on.
    fn take(&mut self, start: usize, outputs: &[f32]);
}

/// The largest magnitude of each frame's outputs, above a fixed floor.
pub(super) struct PerFrame<'a> {
    pub(super) peaks: &'a mut [f32],
    pub(super) floor: f32,
}

impl PeakSink for PerFrame<'_> {
    fn floor(&self) -> f32 {
        self.floor
    }
    fn take(&mut self, start: usize, outputs: &[f32]) {
        for (peak, value) in self.peaks[start..].iter_mut().zip(outputs) {
            *peak = peak.max(value.abs());
        }
    }
}

/// The largest magnitude of all outputs: itself the floor.
pub(super) struct Highest(pub(super) f32);

impl PeakSink for Highest {
    fn floor(&self) -> f32 {
        self.0
    }
    fn take(&mut self, _start: usize, outputs: &[f32]) {
        self.0 = super::max_abs(outputs, self.0);
    }
}

/// The nonzero taps of a FIR filter (`k`-th most recent input, coefficient):
/// a halfband's zeros, half of its taps, cost nothing and need no test in
/// the inner loop.
#[derive(Debug, Clone, Default)]
struct Taps {
    back: Vec<usize>,
    values: Vec<f32>,
}

impl Taps {
    fn from_dense(dense: &[f32]) -> Self {
        let (back, values) = dense.iter().enumerate().filter(|(_, c)| **c != 0.0).map(|(k, c)| (k, *c)).unzip();
        Self { back, values }
    }
}

/// `out[n] += Σ_k taps[k] · input[history + n - k]` (the input's first
/// `history` samples are the previous block's tail). Outputs are computed
/// in groups whose partial sums stay in registers while the taps go by
/// (one unaligned vector load and fused multiply-add per tap and register).
/// Each output sums its taps in the same order whatever the block size or
/// group width, so results do not depend on how a stream is cut.
///
/// On x86-64 with AVX2 the same code runs eight lanes wide instead of four,
/// in wider groups: each lane does the same fused multiply-adds (exactly
/// rounded, and one instruction wherever lacquer runs: x86-64 builds
/// enable FMA, aarch64 always has it) in the same order, so the output is
/// bit-identical on every machine. This call is made only after the
/// check.
#[allow(unsafe_code)]
fn fir_accumulate(taps: &Taps, input: &[f32], history: usize, out: &mut [f32]) {
    fir_dispatch::<true>(taps, input, history, out)
}

/// `out[n] = Σ_k taps[k] · input[history + n - k]`: [`fir_accumulate`]
/// into zeros (the same bits, `0 + Σ`), without filling them first.
fn fir_filter(taps: &Taps, input: &[f32], history: usize, out: &mut [f32]) {
    fir_dispatch::<false>(taps, input, history, out)
}

#[allow(unsafe_code)]
fn fir_dispatch<const ACCUMULATE: bool>(taps: &Taps, input: &[f32], history: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::wide_lanes() && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: both features have been found on this CPU.
        return unsafe { fir_avx2::<ACCUMULATE>(taps, input, history, out) };
    }
    fir_portable::<32, ACCUMULATE>(taps, input, history, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fir_avx2<const ACCUMULATE: bool>(taps: &Taps, input: &[f32], history: usize, out: &mut [f32]) {
    // Eight accumulators of eight lanes: enough independent adds in flight
    // to hide the adder's latency.
    fir_portable::<64, ACCUMULATE>(taps, input, history, out)
}

#[inline(always)]
fn fir_portable<const GROUP: usize, const ACCUMULATE: bool>(
    taps: &Taps,
    input: &[f32],
    history: usize,
    out: &mut [f32],
) {
    #[inline(always)]
    fn put<const ACCUMULATE: bool>(o: &mut f32, sum: f32) {
        *o = if ACCUMULATE { *o + sum } else { 0.0 + sum };
    }
    let frames = out.len();
    let grouped = frames - frames % GROUP;
    for (g, chunk) in out[..grouped].chunks_exact_mut(GROUP).enumerate() {
        let first = history + g * GROUP;
        let mut sums = [0f32; GROUP];
        for (&back, &coefficient) in taps.back.iter().zip(&taps.values) {
            let x: &[f32; GROUP] = input[first - back..first - back + GROUP].try_into().expect("a whole group");
            for (sum, x) in sums.iter_mut().zip(x) {
                *sum = coefficient.mul_add(*x, *sum);
            }
        }
        for (o, &sum) in chunk.iter_mut().zip(&sums) {
            put::<ACCUMULATE>(o, sum);
        }
    }
    for (n, o) in out.iter_mut().enumerate().skip(grouped) {
        let mut sum = 0f32;
        for (&back, &coefficient) in taps.back.iter().zip(&taps.values) {
            sum = coefficient.mul_add(input[history + n - back], sum);
        }
        put::<ACCUMULATE>(o, sum);
    }
}

/// The oversampling factor a BS.1770 meter uses at `rate_hz`.
pub fn bs1770_meter_factor(rate_hz: u32) -> usize {
    if rate_hz < 96_000 {
        4
    } else if rate_hz < 192_000 {
        2
    } else {
        1
    }
}

/// The delay of [`BlockInterpolator::bs1770_meter`] at `rate_hz`, in frames.
pub fn bs1770_meter_delay_frames(rate_hz: u32) -> usize {
    24 / bs1770_meter_factor(rate_hz)
}

/// The base-rate ↔ 2× stage ([`halfbands::FIRST`]): steep, flat within
/// 0.001 dB to 20 kHz at 44.1 kHz, its mirror image from 24.1 kHz on at
/// -82 dB: what the curve makes up there is already far below the
/// fundamental, so aliases of it land under -120 dBc. The 2× ↔ 4× stage
/// ([`halfbands::SECOND`]): everything above the base rate's band is
/// already gone, so its transition runs from 24.1 to 64.1 kHz (-94 dB from
/// there on) and a short filter does. Both are equiripple, which needs
/// about 10 % fewer taps than a Kaiser window for the same specification.
const FIRST_STAGE_TAPS: usize = halfbands::FIRST.len();
const SECOND_STAGE_TAPS: usize = halfbands::SECOND.len();

/// Keeps every `factor`-th sample of a lowpassed stream, a block at a time:
/// `y[n] = Σ h[j]·w[factor·n + offset - j]`, computed as one short FIR per
/// phase of the input so the inner loop runs over contiguous frames. Zero
/// taps (half of a halfband) cost nothing.
#[derive(Debug, Clone)]
struct Decimator {
    factor: usize,
    /// Per phase q: the (nonzero) taps for the phase-`q` inputs `b` frames back.
    phases: Vec<Taps>,
    /// Per channel and phase: history, then the block's samples of that phase.
    streams: Vec<Vec<Vec<f32>>>,
    history: usize,
}

impl Decimator {
    fn new(channels: usize, max_output_frames: usize, factor: usize, h: &[f64], offset: usize) -> Self {
        let mut phases = vec![Vec::new(); factor];
        for (j, &c) in h.iter().enumerate() {
            // Input index factor·n + offset - j = factor·(n - back) + q.
            let t = offset as isize - j as isize;
            let q = t.rem_euclid(factor as isize) as usize;
            let back = (-t.div_euclid(factor as isize)) as usize;
            let phase: &mut Vec<f32> = &mut phases[q];
            if phase.len() <= back {
                phase.resize(back + 1, 0.0);
            }
            phase[back] = c as f32;
        }
        let history = phases.iter().map(Vec::len).max().unwrap_or(1).saturating_sub(1);
        let phases = phases.iter().map(|dense| Taps::from_dense(dense)).collect();
        Self { factor, phases, streams: vec![vec![vec![0.0; history + max_output_frames]; factor]; channels], history }
    }

    /// Decimates one channel's `factor × out.len()` samples into `out`.
    fn down(&mut self, channel: usize, input: &[f32], out: &mut [f32]) {
        let frames = out.len();
        debug_assert_eq!(input.len(), self.factor * frames);
        let history = self.history;
        let streams = &mut self.streams[channel];
        if let [even, odd] = &mut streams[..] {
            for (pair, (e, o)) in
                input.chunks_exact(2).zip(even[history..history + frames].iter_mut().zip(&mut odd[history..]))
            {
                *e = pair[0];
                *o = pair[1];
            }
        } else {
            for (q, stream) in streams.iter_mut().enumerate() {
                for (slot, value) in
                    stream[history..history + frames].iter_mut().zip(input[q..].iter().step_by(self.factor))
                {
                    *slot = *value;
                }
            }
        }
        self.filter(channel, out);
    }

    /// Decimates a stream given as its phases (`phases[q][n]` is input
    /// `factor·n + q`), as an interpolator makes them.
    fn down_phases(&mut self, channel: usize, phases: &[Vec<f32>], out: &mut [f32]) {
        let (frames, history) = (out.len(), self.history);
        for (stream, phase) in self.streams[channel].iter_mut().zip(phases) {
            stream[history..history + frames].copy_from_slice(&phase[..frames]);
        }
        self.filter(channel, out);
    }

    fn filter(&mut self, channel: usize, out: &mut [f32]) {
        let (frames, history) = (out.len(), self.history);
        let streams = &mut self.streams[channel];
        out.fill(0.0);
        for (stream, phase) in streams.iter().zip(&self.phases) {
            fir_accumulate(phase, stream, history, out);
        }
        for stream in streams.iter_mut() {
            stream.copy_within(frames..frames + history, 0);
        }
    }

    fn reset(&mut self) {
        for stream in self.streams.iter_mut().flatten() {
            stream.fill(0.0);
        }
    }
}

/// 4× oversampling of whole blocks for nonlinear processing, as two
/// halfband stages each way (base → 2× → 4×, work, 4× → 2× → base): the
/// steep filter runs at 2× and half its taps are zero, the 4× stage is
/// short. Linear phase throughout, with a whole-frame round-trip latency.
#[derive(Debug, Clone)]
pub struct BlockOversampler {
    up_first: BlockInterpolator,
    up_second: BlockInterpolator,
    down_second: Decimator,
    down_first: Decimator,
    /// The current block at 2×.
    doubled: Vec<f32>,
}

/// The two halfband interpolators (base → 2×, 2× → 4×) of
/// [`BlockOversampler`], for blocks of up to `max_block_frames` base-rate
/// frames.
pub(crate) fn halfband_interpolators(channels: usize, max_block_frames: usize) -> [BlockInterpolator; 2] {
    let doubled = |h: &[f64]| h.iter().map(|c| c * 2.0).collect::<Vec<f64>>();
    [
        BlockInterpolator::from_coefficients(channels, max_block_frames, 2, &doubled(&halfbands::FIRST)),
        BlockInterpolator::from_coefficients(channels, 2 * max_block_frames, 2, &doubled(&halfbands::SECOND)),
    ]
}

/// Base-rate frames at the start of a stream whose 4× values, through
/// [`halfband_interpolators`], still depend on samples before it: 51
/// frames of history for the first stage, 11 samples at 2× for the second.
pub(crate) const HALFBAND_WARMUP_4X: usize = 2 * (2 * ((FIRST_STAGE_TAPS - 1) / 2) + (SECOND_STAGE_TAPS - 1) / 2);

impl BlockOversampler {
    pub fn new(channels: usize, max_block_frames: usize) -> Self {
        let [up_first, up_second] = halfband_interpolators(channels, max_block_frames);
        Self {
            up_first,
            up_second,
            down_second: Decimator::new(channels, 2 * max_block_frames, 2, &halfbands::SECOND, 0),
            // The round trip's delay at 2× is odd (see `latency_frames`):
            // keeping the odd 2× samples lands on whole base-rate frames.
            down_first: Decimator::new(channels, max_block_frames, 2, &halfbands::FIRST, 1),
            doubled: vec![0.0; 2 * max_block_frames],
        }
    }

    /// Base-rate latency of going up and back down.
    pub fn latency_frames() -> usize {
        // At 2×: (N1 - 1)/2 up, (N2 - 1)/2 for the 4× stage's round trip,
        // (N1 - 1)/2 down; odd in total, the odd phase is kept.
        let doubled = (FIRST_STAGE_TAPS - 1) + (SECOND_STAGE_TAPS - 1) / 2;
        (doubled - 1) / 2
    }

    /// Runs one channel's block through `shape` at 4× the rate: up, the
    /// shaping function over the oversampled samples, back down into
    /// `out`. The 4× stream is never put in order: the 4× stage's two
    /// phases go from interpolator to decimator as they are, so `shape`
    /// must work on each sample alone (it is given a phase at a time).
    pub fn process(&mut self, channel: usize, input: &[f32], out: &mut [f32], mut shape: impl FnMut(&mut [f32])) {
        let frames = input.len();
        debug_assert_eq!(out.len(), frames);
        let doubled = &mut self.doubled[..2 * frames];
        self.up_first.run(channel, input);
        let [even, odd] = self.up_first.phase_outputs() else { unreachable!("a halfband stage has two phases") };
        self.up_second.run_interleaved(channel, &even[..frames], &odd[..frames]);
        for phase in &mut self.up_second.outputs {
            shape(&mut phase[..2 * frames]);
        }
        self.down_second.down_phases(channel, &self.up_second.outputs, doubled);
        self.down_first.down(channel, doubled, out);
    }

    pub fn reset(&mut self) {
        self.up_first.reset();
        self.up_second.reset();
        self.down_second.reset();
        self.down_first.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn true_peak_design_keeps_the_original_samples() {
        let mut up = BlockInterpolator::new(1, 64, Design::TRUE_PEAK);
        let delay = BlockInterpolator::delay_frames(Design::TRUE_PEAK);
        assert_eq!(delay, 8);
        let input: Vec<f32> = (0..192).map(|n| ((n as f32) * 0.3).sin() * 0.8).collect();
        let mut phase0: Vec<f32> = Vec::new();
        let mut out = vec![0f32; 4 * 64];
        for block in input.chunks(64) {
            up.upsample(0, block, &mut out[..4 * block.len()]);
            phase0.extend(out[..4 * block.len()].iter().step_by(4));
        }
        for n in 0..150 {
            assert!((phase0[n + delay] - input[n]).abs() < 1e-6, "frame {n}: {} vs {}", phase0[n + delay], input[n]);
        }
    }

    #[test]
    fn bs1770_phase_zero_is_the_input_itself() {
        let input: Vec<f32> = (0..300).map(|n| ((n as f32) * 0.7).sin() * 0.9 + 1e-3).collect();
        for rate_hz in [44_100, 96_000] {
            let delay = bs1770_meter_delay_frames(rate_hz);
            let mut meter = BlockInterpolator::bs1770_meter(1, 300, rate_hz);
            assert_eq!(meter.phases[0].values, [1.0], "one tap at {rate_hz} Hz");
            meter.run(0, &input);
            let phase0 = &meter.phase_outputs()[0];
            assert!((delay..300).all(|n| phase0[n] == input[n - delay]), "at {rate_hz} Hz");
        }
    }

    #[test]
    fn round_trip_is_transparent_in_the_passband() {
        let mut oversampler = BlockOversampler::new(1, 512);
        let latency = BlockOversampler::latency_frames();
        let input: Vec<f32> = (0..4096).map(|n| ((n as f32) * 0.2).sin() * 0.5).collect();
        let mut output = Vec::new();
        for block in input.chunks(500) {
            let mut out = vec![0f32; block.len()];
            oversampler.process(0, block, &mut out, |_| ());
            output.extend(out);
        }
        for n in 500..3000 {
            assert!(
                (output[n + latency] - input[n]).abs() < 1e-4,
                "frame {n}: {} vs {}",
                output[n + latency],
                input[n]
            );
        }
    }

    /// |H(f)| in dB of a FIR filter, `f` in cycles per sample.
    fn response_db(h: &[f64], f: f64) -> f64 {
        let (re, im) = h.iter().enumerate().fold((0.0, 0.0), |(re, im), (n, c)| {
            let w = 2.0 * PI * f * n as f64;
            (re + c * w.cos(), im - c * w.sin())
        });
        10.0 * (re * re + im * im).log10()
    }

    #[test]
    fn halfband_stages_meet_their_design() {
        // At 44.1 kHz: the first stage runs at 88.2 kHz, the second at 176.4.
        let (first, second) = (&halfbands::FIRST[..], &halfbands::SECOND[..]);
        for h in [first, second] {
            let centre = h.len() / 2;
            assert_eq!(h.len() % 4, 3, "a halfband has 4m - 1 taps");
            assert!((0..h.len()).all(|k| h[k] == h[h.len() - 1 - k]), "symmetric: linear phase");
            assert!((2..=centre).step_by(2).all(|d| h[centre + d] == 0.0), "every second tap is zero");
            assert_eq!(h[centre], 0.5);
        }
        for k in 0..=200 {
            let pass_hz = 20_000.0 * f64::from(k) / 200.0;
            assert!(response_db(first, pass_hz / 88_200.0).abs() < 0.001, "first stage at {pass_hz} Hz");
            let pass_hz = 24_100.0 * f64::from(k) / 200.0;
            assert!(response_db(second, pass_hz / 176_400.0).abs() < 0.0002, "second stage at {pass_hz} Hz");
            let stop_hz = 24_100.0 + (44_100.0 - 24_100.0) * f64::from(k) / 200.0;
            assert!(response_db(first, stop_hz / 88_200.0) < -82.0, "first stage at {stop_hz} Hz");
            let stop_hz = 64_100.0 + (88_200.0 - 64_100.0) * f64::from(k) / 200.0;
            assert!(response_db(second, stop_hz / 176_400.0) < -94.0, "second stage at {stop_hz} Hz");
        }
    }

    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        let taps: Vec<f32> = (0..71).map(|k| if k % 2 == 0 { (k as f32 * 0.37).sin() * 0.1 } else { 0.0 }).collect();
        let input: Vec<f32> = (0..70 + 1000).map(|n| (n as f32 * 0.011).sin() + (n as f32 * 1.7).cos() * 0.3).collect();
        let mut portable = vec![0.25f32; 1000];
        let mut dispatched = portable.clone();
        let sparse = Taps::from_dense(&taps);
        fir_portable::<32, true>(&sparse, &input, 70, &mut portable);
        fir_accumulate(&sparse, &input, 70, &mut dispatched);
        assert!(portable.iter().zip(&dispatched).all(|(a, b)| a.to_bits() == b.to_bits()));
        // Filtering into a buffer is accumulating into zeros, to the bit.
        let (mut zeros, mut filtered) = (vec![0f32; 1000], vec![f32::NAN; 1000]);
        fir_accumulate(&sparse, &input, 70, &mut zeros);
        fir_filter(&sparse, &input, 70, &mut filtered);
        assert!(zeros.iter().zip(&filtered).all(|(a, b)| a.to_bits() == b.to_bits()));
        // And the grouped sums are the plain convolution.
        for n in [0, 31, 32, 999] {
            let plain: f32 = 0.25 + (0..71).map(|k| taps[k] * input[70 + n - k]).sum::<f32>();
            assert!((portable[n] - plain).abs() < 1e-5, "output {n}");
        }
    }
}
