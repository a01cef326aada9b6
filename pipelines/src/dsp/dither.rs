//! Requantization to 16 or 24 bits with dither: TPDF (triangular, ±1 LSB,
//! which removes truncation distortion and noise modulation), or TPDF with
//! error-feedback noise shaping that moves the noise where the ear is least
//! sensitive.
//!
//! The noise generator is SplitMix64, written out here rather than taken
//! from a crate so that its sequence can never change under us: the same
//! seed (derived from the track id) gives bit-identical files forever.

use serde::{Deserialize, Serialize};

/// How a deliverable is requantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dither {
    None,
    Tpdf,
    Shaped,
}

/// Error-feedback filter of the shaped dither: Lipshitz, Vanderkooy and
/// Wannamaker's 5-tap E-weighted design for 44.1 kHz.
const SHAPING: [f64; 5] = [2.033, -2.165, 1.959, -1.590, 0.6149];
/// The shaped error is kept within this many LSB so that clipped input
/// cannot make the feedback run away.
const MAX_SHAPED_ERROR_LSB: f64 = 8.0;

/// A deterministic 64-bit generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct NoiseSource(u64);

impl NoiseSource {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A seed from text (a track id, a deliverable name): FNV-1a.
    pub fn seed_from(text: &str) -> u64 {
        text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-0.5, 0.5).
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }

    /// Triangular in (-1, 1): the sum of two uniforms.
    #[inline]
    pub fn triangular(&mut self) -> f64 {
        self.uniform() + self.uniform()
    }
}

/// Turns `f32` samples into integers of `bits` bits.
#[derive(Debug, Clone)]
pub struct Quantizer {
    kind: Dither,
    scale: f64,
    max: f64,
    min: f64,
    noise: NoiseSource,
    /// Per channel: the last shaped errors, newest first.
    errors: Vec<[f64; 5]>,
}

impl Quantizer {
    /// `bits` is 16 or 24; `seed` makes the dither reproducible.
    pub fn new(kind: Dither, bits: u32, channels: usize, seed: u64) -> Self {
        let scale = f64::from(1u32 << (bits - 1));
        Self {
            kind,
            scale,
            max: scale - 1.0,
            min: -scale,
            noise: NoiseSource::new(seed),
            errors: vec![[0.0; 5]; channels],
        }
    }

    /// One sample of one channel, as an integer in the target range.
    #[inline]
    pub fn quantize(&mut self, channel: usize, sample: f32) -> i32 {
        match self.kind {
            Dither::None => self.quantize_as::<NONE>(channel, sample),
            Dither::Tpdf => self.quantize_as::<TPDF>(channel, sample),
            Dither::Shaped => self.quantize_as::<SHAPED>(channel, sample),
        }
    }

    /// Quantizes a block of one channel into `out`.
    pub fn quantize_channel(&mut self, channel: usize, samples: &[f32], out: &mut [i32]) {
        for (o, &s) in out.iter_mut().zip(samples) {
            *o = self.quantize(channel, s);
        }
    }

    /// Quantizes mono or stereo samples frame by frame into `interleaved`
    /// (the dither is drawn in that order): what [`Self::quantize`] gives
    /// sample by sample, with the kind of dither chosen once per block.
    pub fn quantize_frames(&mut self, left: &[f32], right: Option<&[f32]>, interleaved: &mut [i32]) {
        match self.kind {
            Dither::None => self.frames_as::<NONE>(left, right, interleaved),
            Dither::Tpdf => self.frames_as::<TPDF>(left, right, interleaved),
            Dither::Shaped => self.frames_as::<SHAPED>(left, right, interleaved),
        }
    }

    #[inline(always)]
    fn frames_as<const KIND: u8>(&mut self, left: &[f32], right: Option<&[f32]>, interleaved: &mut [i32]) {
        match right {
            Some(right) => {
                for (out, (l, r)) in interleaved.chunks_exact_mut(2).zip(left.iter().zip(right)) {
                    out[0] = self.quantize_as::<KIND>(0, *l);
                    out[1] = self.quantize_as::<KIND>(1, *r);
                }
            }
            None => {
                for (out, sample) in interleaved.iter_mut().zip(left) {
                    *out = self.quantize_as::<KIND>(0, *sample);
                }
            }
        }
    }

    #[inline(always)]
    fn quantize_as<const KIND: u8>(&mut self, channel: usize, sample: f32) -> i32 {
        let x = f64::from(sample) * self.scale;
        let value = match KIND {
            NONE => x.round(),
            TPDF => (x + self.noise.triangular()).round(),
            _ => {
                let errors = &mut self.errors[channel];
                let wanted = x - SHAPING.iter().zip(errors.iter()).map(|(c, e)| c * e).sum::<f64>();
                let value = (wanted + self.noise.triangular()).round().clamp(self.min, self.max);
                errors.rotate_right(1);
                errors[0] = (value - wanted).clamp(-MAX_SHAPED_ERROR_LSB, MAX_SHAPED_ERROR_LSB);
                value
            }
        };
        value.clamp(self.min, self.max) as i32
    }
}

/// [`Dither`] as a const parameter of the quantizer's inner loops.
const NONE: u8 = 0;
const TPDF: u8 = 1;
const SHAPED: u8 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_deterministic_and_triangular() {
        let mut a = NoiseSource::new(NoiseSource::seed_from("01-aurora"));
        let mut b = NoiseSource::new(NoiseSource::seed_from("01-aurora"));
        let mut c = NoiseSource::new(NoiseSource::seed_from("02-borealis"));
        let first: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        assert_eq!(first, (0..4).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(first, (0..4).map(|_| c.next_u64()).collect::<Vec<_>>());
        let values: Vec<f64> = (0..200_000).map(|_| a.triangular()).collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let variance = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / values.len() as f64;
        assert!(mean.abs() < 0.01 && (variance - 1.0 / 6.0).abs() < 0.005, "TPDF: mean {mean}, variance {variance}");
        assert!(values.iter().all(|v| v.abs() < 1.0));
    }

    #[test]
    fn a_block_quantizes_as_sample_by_sample_does() {
        let left: Vec<f32> = (0..1000).map(|n| (n as f32 * 0.013).sin() * 0.9).collect();
        let right: Vec<f32> = (0..1000).map(|n| (n as f32 * 0.029).cos() * 1.2).collect();
        for kind in [Dither::None, Dither::Tpdf, Dither::Shaped] {
            let mut by_sample = Quantizer::new(kind, 16, 2, 7);
            let mut by_block = by_sample.clone();
            let expected: Vec<i32> = left
                .iter()
                .zip(&right)
                .flat_map(|(l, r)| [by_sample.quantize(0, *l), by_sample.quantize(1, *r)])
                .collect();
            let mut got = vec![0; 2 * left.len()];
            by_block.quantize_frames(&left, Some(&right), &mut got);
            assert_eq!(got, expected, "{kind:?}, stereo");
            let mut mono = Quantizer::new(kind, 24, 1, 7);
            let expected: Vec<i32> = left.iter().map(|x| mono.quantize(0, *x)).collect();
            let mut got = vec![0; left.len()];
            Quantizer::new(kind, 24, 1, 7).quantize_frames(&left, None, &mut got);
            assert_eq!(got, expected, "{kind:?}, mono");
        }
    }

    #[test]
    fn full_scale_and_beyond_clamps() {
        let mut q = Quantizer::new(Dither::Tpdf, 16, 1, 1);
        assert_eq!(q.quantize(0, 2.0), 32_767);
        assert_eq!(q.quantize(0, -2.0), -32_768);
        let mut q = Quantizer::new(Dither::Shaped, 24, 1, 1);
        for _ in 0..1000 {
            assert!((-8_388_608..=8_388_607).contains(&q.quantize(0, 1.5)));
        }
        let mut none = Quantizer::new(Dither::None, 24, 1, 1);
        assert_eq!(none.quantize(0, 0.5), 4_194_304);
    }
}
