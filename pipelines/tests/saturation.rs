//! Saturation is oversampled well enough that a full-scale 6 kHz sine at
//! 44.1 kHz aliases below -90 dB relative to its fundamental.

use lacquer_pipelines::dsp::oversample::bessel_i0;
use lacquer_pipelines::dsp::saturation::Saturation;
use lacquer_pipelines::dsp::{AudioBlock, Processor};
use lacquer_pipelines::manifest::Saturation as Settings;
use realfft::RealFftPlanner;

const RATE_HZ: f64 = 44_100.0;
const ALIAS_LIMIT_DBC: f64 = -90.0;
const FRAMES: usize = 1 << 16;

fn saturate(settings: &Settings, input: &[f32]) -> Vec<f32> {
    let mut saturation = Saturation::new(RATE_HZ as u32, 1, 512, settings);
    let mut out = Vec::new();
    for chunk in input.chunks(512) {
        let mut block = AudioBlock::from_planar(vec![chunk.to_vec()]);
        saturation.process(&mut block);
        out.extend_from_slice(block.channel(0));
    }
    out
}

/// Spectrum in dB relative to the strongest bin.
fn spectrum_dbc(samples: &[f32]) -> Vec<f64> {
    let beta = 20.0;
    let mut input: Vec<f64> = samples
        .iter()
        .enumerate()
        .map(|(n, &s)| {
            let r = 2.0 * n as f64 / (samples.len() - 1) as f64 - 1.0;
            f64::from(s) * bessel_i0(beta * (1.0 - r * r).sqrt()) / bessel_i0(beta)
        })
        .collect();
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(input.len());
    let mut out = fft.make_output_vec();
    fft.process(&mut input, &mut out).unwrap();
    let peak = out.iter().map(|c| c.norm()).fold(0.0, f64::max);
    out.iter().map(|c| 20.0 * (c.norm() / peak).max(1e-20).log10()).collect()
}

#[test]
fn aliasing_stays_below_minus_90_dbc() {
    // A full-scale sine on an exact bin, so every harmonic lands on a bin too.
    let cycles = (6000.0 * FRAMES as f64 / RATE_HZ).round();
    let freq_hz = cycles * RATE_HZ / FRAMES as f64;
    let total = FRAMES + 4096;
    let input: Vec<f32> =
        (0..total).map(|n| (std::f64::consts::TAU * freq_hz * n as f64 / RATE_HZ).sin() as f32).collect();
    let bin_hz = RATE_HZ / FRAMES as f64;
    for drive_db in [2.0, 6.0, 12.0] {
        let output = saturate(&Settings { drive_db, mix: 1.0 }, &input);
        let spectrum = spectrum_dbc(&output[4096..]);
        // Legitimate components: the fundamental and its 3rd harmonic (18 kHz).
        let legitimate = [freq_hz, 3.0 * freq_hz];
        let mut worst = (f64::MIN, 0.0);
        for (bin, &db) in spectrum.iter().enumerate() {
            let f = bin as f64 * bin_hz;
            if legitimate.iter().any(|l| (f - l).abs() < 40.0 * bin_hz) || f < 20.0 {
                continue;
            }
            if db > worst.0 {
                worst = (db, f);
            }
        }
        assert!(worst.0 < ALIAS_LIMIT_DBC, "drive {drive_db} dB: {:.1} dBc at {:.0} Hz", worst.0, worst.1);
        let third = spectrum[(3.0 * freq_hz / bin_hz).round() as usize];
        assert!(third > -60.0, "drive {drive_db} dB makes a real 3rd harmonic ({third:.1} dBc)");
    }
}

#[test]
fn quiet_signals_pass_at_unity_and_mix_zero_is_clean() {
    let input: Vec<f32> = (0..20_000).map(|n| ((n as f64 * 0.05).sin() * 0.001) as f32).collect();
    let settings = Settings { drive_db: 6.0, mix: 1.0 };
    let latency = Saturation::new(RATE_HZ as u32, 1, 512, &settings).latency_frames();
    let output = saturate(&settings, &input);
    for n in 2000..19_000 {
        assert!((output[n + latency] - input[n]).abs() < 2e-6, "frame {n}");
    }
    let loud: Vec<f32> = (0..20_000).map(|n| ((n as f64 * 0.05).sin() * 0.9) as f32).collect();
    let clean = saturate(&Settings { drive_db: 12.0, mix: 0.0 }, &loud);
    for n in 2000..19_000 {
        assert!((clean[n + latency] - loud[n]).abs() < 1e-4, "mix 0 is transparent, frame {n}");
    }
}

/// The saturated share passes the 4× filters; the top end must stay where
/// it was: within 0.01 dB to 16 kHz and 0.05 dB to 20 kHz at 44.1 kHz, at
/// the album's light mix (0.3) and fully wet.
#[test]
fn the_oversampling_filters_keep_the_top_end() {
    for (mix, within_16k_db, within_20k_db) in [(0.3, 0.01, 0.05), (1.0, 0.01, 0.05)] {
        top_end(Settings { drive_db: 0.0, mix }, within_16k_db, within_20k_db);
    }
}

fn top_end(settings: Settings, within_16k_db: f64, within_20k_db: f64) {
    let frames = 1 << 14;
    // A small impulse: the curve is linear down there.
    let mut impulse = vec![0f32; frames];
    impulse[0] = 0.01;
    // The whole response: a pure delay does not change the magnitude.
    let response = saturate(&settings, &impulse);
    let mut input: Vec<f64> = response.iter().map(|&s| f64::from(s) * 100.0).collect();
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(frames);
    let mut out = fft.make_output_vec();
    fft.process(&mut input, &mut out).unwrap();
    let bin_hz = RATE_HZ / frames as f64;
    for (bin, c) in out.iter().enumerate() {
        let freq = bin as f64 * bin_hz;
        let db = 20.0 * c.norm().log10();
        if freq <= 16_000.0 {
            assert!(db.abs() < within_16k_db, "mix {}: {db:.3} dB at {freq:.0} Hz", settings.mix);
        } else if freq <= 20_000.0 {
            assert!(db.abs() < within_20k_db, "mix {}: {db:.3} dB at {freq:.0} Hz", settings.mix);
        }
    }
}
