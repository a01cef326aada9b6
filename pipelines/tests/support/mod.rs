//! Helpers shared by the integration tests.
// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use lacquer_pipelines::encode::EncodeSpec;
use lacquer_pipelines::manifest::{AudioFormat, Dither};

/// A stereo 24-bit FLAC at `rate_hz`, undithered: a lossless master.
pub fn flac_24_bit(rate_hz: u32) -> EncodeSpec {
    EncodeSpec { format: AudioFormat::Flac, bit_depth: 24, rate_hz, channels: 2, dither: Dither::None, dither_seed: 0 }
}

/// A deterministic white-noise source (xorshift64), uniform in [-1, 1).
pub struct Noise(pub u64);

impl Noise {
    pub fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Deterministic pink noise: white [`Noise`] through Paul Kellet's filter
/// (within 0.05 dB of -3 dB/octave above 10 Hz at 44.1 kHz). Its level is
/// about -11 dBFS RMS; callers scale it.
pub struct Pink {
    white: Noise,
    b: [f32; 7],
}

impl Pink {
    pub fn new(seed: u64) -> Self {
        Self { white: Noise(seed), b: [0.0; 7] }
    }

    pub fn next(&mut self) -> f32 {
        let (w, b) = (self.white.next(), &mut self.b);
        b[0] = 0.99886 * b[0] + w * 0.0555179;
        b[1] = 0.99332 * b[1] + w * 0.0750759;
        b[2] = 0.96900 * b[2] + w * 0.153_852;
        b[3] = 0.86650 * b[3] + w * 0.3104856;
        b[4] = 0.55000 * b[4] + w * 0.5329522;
        b[5] = -0.7616 * b[5] - w * 0.0168980;
        let out = b.iter().sum::<f32>() + w * 0.5362;
        b[6] = w * 0.115926;
        out
    }
}
