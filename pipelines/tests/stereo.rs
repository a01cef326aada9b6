//! Stereo width and mono bass: width 1 is a null, the crossover sums flat
//! within 0.1 dB, bass side content goes, width scales the side.

use lacquer_pipelines::dsp::stereo::StereoImage;
use lacquer_pipelines::dsp::{AudioBlock, Processor};
use lacquer_pipelines::manifest::Stereo;
use realfft::RealFftPlanner;

const RATE_HZ: u32 = 44_100;
const FLATNESS_DB: f64 = 0.1;

fn run(settings: &Stereo, left: &[f32], right: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut stereo = StereoImage::new(RATE_HZ, 2, 1024, settings);
    let (mut out_left, mut out_right) = (Vec::new(), Vec::new());
    for start in (0..left.len()).step_by(1024) {
        let end = (start + 1024).min(left.len());
        let mut block = AudioBlock::from_planar(vec![left[start..end].to_vec(), right[start..end].to_vec()]);
        stereo.process(&mut block);
        out_left.extend_from_slice(block.channel(0));
        out_right.extend_from_slice(block.channel(1));
    }
    (out_left, out_right)
}

fn magnitude_db(samples: &[f32]) -> Vec<f64> {
    let mut input: Vec<f64> = samples.iter().map(|&s| f64::from(s)).collect();
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(input.len());
    let mut out = fft.make_output_vec();
    fft.process(&mut input, &mut out).unwrap();
    out.iter().map(|c| 20.0 * c.norm().max(1e-30).log10()).collect()
}

fn noise(frames: usize, seed: u32) -> Vec<f32> {
    let mut state = seed;
    (0..frames)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) - 0.5
        })
        .collect()
}

#[test]
fn width_one_without_mono_bass_is_a_null() {
    let (left, right) = (noise(10_000, 1), noise(10_000, 2));
    let (out_left, out_right) = run(&Stereo { width: 1.0, mono_below_hz: 0.0 }, &left, &right);
    assert!(out_left == left && out_right == right, "bit-identical");
}

#[test]
fn the_crossover_sums_flat() {
    for mono_below_hz in [40.0, 120.0, 300.0] {
        let frames = 1 << 16;
        let mut impulse = vec![0f32; frames];
        impulse[0] = 1.0;
        let (out_left, _) = run(&Stereo { width: 1.0, mono_below_hz }, &impulse, &impulse);
        let response = magnitude_db(&out_left);
        let bin_hz = f64::from(RATE_HZ) / frames as f64;
        for (bin, db) in response.iter().enumerate().skip(1) {
            let freq = bin as f64 * bin_hz;
            if (20.0..=20_000.0).contains(&freq) {
                assert!(db.abs() <= FLATNESS_DB, "crossover at {mono_below_hz} Hz: {db:.3} dB at {freq:.0} Hz");
            }
        }
    }
}

#[test]
fn bass_goes_mono_and_width_scales_the_side() {
    let sine = |freq: f64| -> Vec<f32> {
        (0..RATE_HZ as usize)
            .map(|n| (0.5 * (std::f64::consts::TAU * freq * n as f64 / f64::from(RATE_HZ)).sin()) as f32)
            .collect()
    };
    let level_db = |samples: &[f32]| {
        let tail = &samples[samples.len() / 2..];
        10.0 * (tail.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / tail.len() as f64).log10()
    };
    // A side-only signal (left = -right).
    // Below the crossover the side keeps only LR4's high-pass share, a
    // squared Butterworth: |H| = r⁴ / (1 + r⁴) with r = f / fc.
    let lr4_high_db = |freq: f64, crossover: f64| {
        let r4 = (freq / crossover).powi(4);
        20.0 * (r4 / (1.0 + r4)).log10()
    };
    for (freq, width, want_side_gain_db) in [
        (40.0, 1.0, lr4_high_db(40.0, 120.0)),
        (60.0, 1.0, lr4_high_db(60.0, 120.0)),
        (2000.0, 1.5, 20.0 * 1.5f64.log10()),
        (2000.0, 0.0, f64::NEG_INFINITY),
        (2000.0, 0.5, 20.0 * 0.5f64.log10()),
    ] {
        let left = sine(freq);
        let right: Vec<f32> = left.iter().map(|s| -s).collect();
        let (out_left, out_right) = run(&Stereo { width, mono_below_hz: 120.0 }, &left, &right);
        let side: Vec<f32> = out_left.iter().zip(&out_right).map(|(l, r)| 0.5 * (l - r)).collect();
        let gain_db = level_db(&side) - level_db(&left);
        if want_side_gain_db.is_finite() {
            assert!(
                (gain_db - want_side_gain_db).abs() < 0.1,
                "{freq} Hz, width {width}: side {gain_db:.2} dB, designed {want_side_gain_db:.2}"
            );
        } else {
            assert!(gain_db < -40.0, "{freq} Hz, width {width}: side should vanish, {gain_db:.1} dB");
        }
    }
}
