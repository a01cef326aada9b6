//! Second-order IIR filters from the RBJ "Audio EQ Cookbook", and the EQ
//! chain of a manifest `eq` list.
//!
//! Coefficients are pure functions of the design ([`design`]), computed once
//! per filter; the state is `f64` in direct form I (the last two inputs and
//! outputs), which keeps low-frequency filters quiet and accurate in `f32`
//! audio and leaves one multiply and one subtraction on the recursion.

use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

use super::{AudioBlock, Processor};

/// The filter types of an `eq` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterType {
    HighPass,
    LowPass,
    LowShelf,
    HighShelf,
    Peak,
    Notch,
}

impl FilterType {
    pub fn name(self) -> &'static str {
        match self {
            FilterType::HighPass => "high_pass",
            FilterType::LowPass => "low_pass",
            FilterType::LowShelf => "low_shelf",
            FilterType::HighShelf => "high_shelf",
            FilterType::Peak => "peak",
            FilterType::Notch => "notch",
        }
    }

    /// Shelves and peaks need a gain; passes and notches have none.
    pub fn takes_gain(self) -> bool {
        matches!(self, FilterType::LowShelf | FilterType::HighShelf | FilterType::Peak)
    }

    /// Only passes can be 24 dB/oct.
    pub fn takes_slope(self) -> bool {
        matches!(self, FilterType::HighPass | FilterType::LowPass)
    }

    /// Q when none is given: Butterworth for passes and shelves, a musical
    /// bell for peaks, a narrow cut for notches.
    pub fn default_q(self) -> f64 {
        match self {
            FilterType::Peak => 1.0,
            FilterType::Notch => 8.0,
            _ => std::f64::consts::FRAC_1_SQRT_2,
        }
    }
}

/// One filter of an `eq` list. Which fields apply depends on `type`; the
/// validator rejects fields that mean nothing for the type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    #[serde(rename = "type")]
    pub kind: FilterType,
    /// 10 Hz .. 0.45 × the working sample rate.
    pub freq_hz: f64,
    /// 0.1..30; default from [`FilterType::default_q`].
    #[serde(default)]
    pub q: Option<f64>,
    /// -24..+24; required for shelves and peaks.
    #[serde(default)]
    pub gain_db: Option<f64>,
    /// 12 (default) or 24, passes only.
    #[serde(default)]
    pub slope_db_oct: Option<u32>,
}

impl Filter {
    pub fn q(&self) -> f64 {
        self.q.unwrap_or_else(|| self.kind.default_q())
    }
    pub fn gain_db(&self) -> f64 {
        self.gain_db.unwrap_or(0.0)
    }
    pub fn slope_db_oct(&self) -> u32 {
        self.slope_db_oct.unwrap_or(12)
    }
}

/// Normalised biquad coefficients (`a0` = 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coefficients {
    pub b0: f64,
    pub b1: f64,
    pub b2: f64,
    pub a1: f64,
    pub a2: f64,
}

impl Coefficients {
    /// The identity filter.
    pub const PASS: Coefficients = Coefficients { b0: 1.0, b1: 0.0, b2: 0.0, a1: 0.0, a2: 0.0 };

    /// The designed magnitude response at `freq_hz`, in dB.
    pub fn magnitude_db(&self, freq_hz: f64, rate_hz: u32) -> f64 {
        let w = 2.0 * PI * freq_hz / f64::from(rate_hz);
        let (cos1, sin1, cos2, sin2) = (w.cos(), w.sin(), (2.0 * w).cos(), (2.0 * w).sin());
        let num_re = self.b0 + self.b1 * cos1 + self.b2 * cos2;
        let num_im = -(self.b1 * sin1 + self.b2 * sin2);
        let den_re = 1.0 + self.a1 * cos1 + self.a2 * cos2;
        let den_im = -(self.a1 * sin1 + self.a2 * sin2);
        10.0 * ((num_re * num_re + num_im * num_im) / (den_re * den_re + den_im * den_im)).log10()
    }
}

/// One RBJ cookbook section: `kind` at `freq_hz` with quality `q`, and
/// `gain_db` for shelves and peaks (ignored otherwise).
pub fn design(kind: FilterType, freq_hz: f64, q: f64, gain_db: f64, rate_hz: u32) -> Coefficients {
    let w0 = 2.0 * PI * freq_hz / f64::from(rate_hz);
    let (cos_w0, sin_w0) = (w0.cos(), w0.sin());
    let alpha = sin_w0 / (2.0 * q);
    let a = 10f64.powf(gain_db / 40.0);
    let (b0, b1, b2, a0, a1, a2) = match kind {
        FilterType::LowPass => {
            let b1 = 1.0 - cos_w0;
            (b1 / 2.0, b1, b1 / 2.0, 1.0 + alpha, -2.0 * cos_w0, 1.0 - alpha)
        }
        FilterType::HighPass => {
            let b1 = -(1.0 + cos_w0);
            (-b1 / 2.0, b1, -b1 / 2.0, 1.0 + alpha, -2.0 * cos_w0, 1.0 - alpha)
        }
        FilterType::Peak => {
            (1.0 + alpha * a, -2.0 * cos_w0, 1.0 - alpha * a, 1.0 + alpha / a, -2.0 * cos_w0, 1.0 - alpha / a)
        }
        FilterType::Notch => (1.0, -2.0 * cos_w0, 1.0, 1.0 + alpha, -2.0 * cos_w0, 1.0 - alpha),
        FilterType::LowShelf => {
            let k = 2.0 * a.sqrt() * alpha;
            (
                a * ((a + 1.0) - (a - 1.0) * cos_w0 + k),
                2.0 * a * ((a - 1.0) - (a + 1.0) * cos_w0),
                a * ((a + 1.0) - (a - 1.0) * cos_w0 - k),
                (a + 1.0) + (a - 1.0) * cos_w0 + k,
                -2.0 * ((a - 1.0) + (a + 1.0) * cos_w0),
                (a + 1.0) + (a - 1.0) * cos_w0 - k,
            )
        }
        FilterType::HighShelf => {
            let k = 2.0 * a.sqrt() * alpha;
            (
                a * ((a + 1.0) + (a - 1.0) * cos_w0 + k),
                -2.0 * a * ((a - 1.0) + (a + 1.0) * cos_w0),
                a * ((a + 1.0) + (a - 1.0) * cos_w0 - k),
                (a + 1.0) - (a - 1.0) * cos_w0 + k,
                2.0 * ((a - 1.0) - (a + 1.0) * cos_w0),
                (a + 1.0) - (a - 1.0) * cos_w0 - k,
            )
        }
    };
    Coefficients { b0: b0 / a0, b1: b1 / a0, b2: b2 / a0, a1: a1 / a0, a2: a2 / a0 }
}

/// A 2nd-order all-pass (RBJ cookbook): unity magnitude, the phase of a
/// crossover at `freq_hz`. With Q = 1/√2 it is what a Linkwitz–Riley
/// 4th-order low and high band sum to.
pub fn allpass(freq_hz: f64, q: f64, rate_hz: u32) -> Coefficients {
    let w0 = 2.0 * PI * freq_hz / f64::from(rate_hz);
    let alpha = w0.sin() / (2.0 * q);
    let a0 = 1.0 + alpha;
    let b1 = -2.0 * w0.cos() / a0;
    Coefficients { b0: (1.0 - alpha) / a0, b1, b2: 1.0, a1: b1, a2: (1.0 - alpha) / a0 }
}

/// Q of the two sections of a 4th-order Butterworth filter.
const BUTTERWORTH_4_Q: [f64; 2] = [0.541_196_100_146_197, 1.306_562_964_876_376_4];

/// The sections a manifest filter needs: one, or two for a 24 dB/oct pass.
/// A 24 dB/oct pass with the default Q is a 4th-order Butterworth; a
/// different Q scales both sections' resonance alike.
pub fn sections(filter: &Filter, rate_hz: u32) -> Vec<Coefficients> {
    let q = filter.q();
    if filter.kind.takes_slope() && filter.slope_db_oct() == 24 {
        let scale = q / std::f64::consts::FRAC_1_SQRT_2;
        return BUTTERWORTH_4_Q
            .iter()
            .map(|bq| design(filter.kind, filter.freq_hz, bq * scale, 0.0, rate_hz))
            .collect();
    }
    vec![design(filter.kind, filter.freq_hz, q, filter.gain_db(), rate_hz)]
}

/// State below this is flushed to zero once per block, so long silent
/// tails never reach denormal numbers.
const FLUSH_BELOW: f64 = 1e-30;

/// A cascade of biquad sections applied to every channel.
#[derive(Debug, Clone)]
pub struct FilterChain {
    sections: Vec<Coefficients>,
    /// `[channel][section]`
    state: Vec<Vec<SectionState>>,
}

impl FilterChain {
    /// The chain of a manifest `eq` list.
    pub fn new(rate_hz: u32, channels: usize, _max_block_frames: usize, filters: &[Filter]) -> Self {
        Self::from_sections(channels, filters.iter().flat_map(|f| sections(f, rate_hz)).collect())
    }

    pub fn from_sections(channels: usize, sections: Vec<Coefficients>) -> Self {
        let state = vec![vec![SectionState::default(); sections.len()]; channels];
        Self { sections, state }
    }

    pub fn is_empty(&self) -> bool {
        self.sections.is_empty()
    }

    /// The chain's designed magnitude response at `freq_hz`, in dB.
    pub fn magnitude_db(&self, freq_hz: f64, rate_hz: u32) -> f64 {
        self.sections.iter().map(|s| s.magnitude_db(freq_hz, rate_hz)).sum()
    }

    /// Filters one channel's samples in place.
    pub fn process_channel(&mut self, channel: usize, samples: &mut [f32]) {
        for (c, state) in self.sections.iter().zip(self.state[channel].iter_mut()) {
            let mut s = *state;
            for sample in samples.iter_mut() {
                *sample = s.step(c, f64::from(*sample)) as f32;
            }
            s.flush_denormals();
            *state = s;
        }
    }

    /// Filters channels 0 and 1 together: two independent recursions side
    /// by side run nearly twice as fast as one after the other. Sections go
    /// two at a time, sample by sample, so the second's recursion overlaps
    /// the first's (and the sample between them stays in `f64`).
    pub fn process_pair(&mut self, left: &mut [f32], right: &mut [f32]) {
        let (first, second) = self.state.split_at_mut(1);
        let mut sections = self.sections.chunks(2).zip(first[0].chunks_mut(2).zip(second[0].chunks_mut(2)));
        for (c, (state_left, state_right)) in &mut sections {
            match (c, state_left, state_right) {
                ([c1, c2], [l1, l2], [r1, r2]) => {
                    let (mut sl1, mut sl2, mut sr1, mut sr2) = (*l1, *l2, *r1, *r2);
                    for (l, r) in left.iter_mut().zip(right.iter_mut()) {
                        *l = sl2.step(c2, sl1.step(c1, f64::from(*l))) as f32;
                        *r = sr2.step(c2, sr1.step(c1, f64::from(*r))) as f32;
                    }
                    for s in [&mut sl1, &mut sl2, &mut sr1, &mut sr2] {
                        s.flush_denormals();
                    }
                    (*l1, *l2, *r1, *r2) = (sl1, sl2, sr1, sr2);
                }
                ([c], [state_left], [state_right]) => {
                    let (mut s_left, mut s_right) = (*state_left, *state_right);
                    for (l, r) in left.iter_mut().zip(right.iter_mut()) {
                        *l = s_left.step(c, f64::from(*l)) as f32;
                        *r = s_right.step(c, f64::from(*r)) as f32;
                    }
                    s_left.flush_denormals();
                    s_right.flush_denormals();
                    (*state_left, *state_right) = (s_left, s_right);
                }
                _ => unreachable!("sections and states come in the same chunks"),
            }
        }
    }
}

/// One section's memory in direct form I: the last two inputs, the last
/// output, and the one before it already multiplied by its coefficient
/// (taken when it was fresh, off the recursion's path).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct SectionState {
    x1: f64,
    x2: f64,
    y1: f64,
    a2_y2: f64,
}

impl SectionState {
    /// Filters one sample. Everything but the newest output is summed
    /// first, so the recursion waits on one multiply and one subtraction.
    #[inline(always)]
    pub(crate) fn step(&mut self, c: &Coefficients, x: f64) -> f64 {
        let rest = c.b0 * x + c.b1 * self.x1 + c.b2 * self.x2 - self.a2_y2;
        let y = rest - c.a1 * self.y1;
        (self.x2, self.x1, self.a2_y2, self.y1) = (self.x1, x, c.a2 * self.y1, y);
        y
    }

    /// Zeroes a state that has decayed to nothing (once per block), so
    /// silent tails never reach denormal numbers.
    pub(crate) fn flush_denormals(&mut self) {
        if [self.x1, self.x2, self.y1, self.a2_y2].iter().all(|v| v.abs() < FLUSH_BELOW) {
            *self = Self::default();
        }
    }
}

impl Processor for FilterChain {
    fn process(&mut self, block: &mut AudioBlock) {
        if block.channel_count() == 2 && self.state.len() >= 2 {
            let (left, right) = block.stereo_mut();
            self.process_pair(left, right);
            return;
        }
        for (index, samples) in block.channels_mut().enumerate() {
            self.process_channel(index, samples);
        }
    }

    fn reset(&mut self) {
        for channel in &mut self.state {
            channel.fill(SectionState::default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE_HZ: u32 = 48_000;

    #[test]
    fn design_points() {
        let hp = design(FilterType::HighPass, 100.0, std::f64::consts::FRAC_1_SQRT_2, 0.0, RATE_HZ);
        assert!((hp.magnitude_db(100.0, RATE_HZ) + 3.0103).abs() < 1e-3, "-3 dB at the corner");
        assert!(hp.magnitude_db(10_000.0, RATE_HZ).abs() < 1e-3);
        let peak = design(FilterType::Peak, 3200.0, 1.2, 2.0, RATE_HZ);
        assert!((peak.magnitude_db(3200.0, RATE_HZ) - 2.0).abs() < 1e-9, "the peak's gain at its centre");
        let low_shelf = design(FilterType::LowShelf, 120.0, 0.707, 1.5, RATE_HZ);
        assert!((low_shelf.magnitude_db(10.0, RATE_HZ) - 1.5).abs() < 0.02);
        assert!((low_shelf.magnitude_db(120.0, RATE_HZ) - 0.75).abs() < 1e-9, "half the gain at the shelf's centre");
        let notch = design(FilterType::Notch, 60.0, 8.0, 0.0, RATE_HZ);
        assert!(notch.magnitude_db(60.0, RATE_HZ) < -100.0);
        let lp4 = Filter { kind: FilterType::LowPass, freq_hz: 1000.0, q: None, gain_db: None, slope_db_oct: Some(24) };
        let chain = FilterChain::from_sections(1, sections(&lp4, RATE_HZ));
        assert!((chain.magnitude_db(1000.0, RATE_HZ) + 3.0103).abs() < 1e-3, "Butterworth: -3 dB at the corner");
        assert!((chain.magnitude_db(4000.0, RATE_HZ) + 48.0).abs() < 1.5, "24 dB/oct: about -48 dB two octaves up");
    }

    #[test]
    fn linkwitz_riley_bands_sum_to_the_allpass() {
        let rate_hz = 44_100;
        let q = std::f64::consts::FRAC_1_SQRT_2;
        let low = FilterChain::from_sections(1, vec![design(FilterType::LowPass, 120.0, q, 0.0, rate_hz); 2]);
        let high = FilterChain::from_sections(1, vec![design(FilterType::HighPass, 120.0, q, 0.0, rate_hz); 2]);
        let all = FilterChain::from_sections(1, vec![allpass(120.0, q, rate_hz)]);
        let mut impulse = vec![0f32; 4096];
        impulse[0] = 1.0;
        let run = |mut chain: FilterChain| {
            let mut samples = impulse.clone();
            chain.process_channel(0, &mut samples);
            samples
        };
        let (low, high, all) = (run(low), run(high), run(all));
        for n in 0..4096 {
            assert!((low[n] + high[n] - all[n]).abs() < 1e-6, "sample {n}");
        }
        for freq_hz in [20.0, 120.0, 1000.0, 20_000.0] {
            assert!(allpass(120.0, q, rate_hz).magnitude_db(freq_hz, rate_hz).abs() < 1e-9);
        }
    }
}
