//! The true-peak limiter on hostile signals: the output's true peak,
//! measured by `ebur128` (the BS.1770 interpolator QC tools run) and by the
//! meter's accurate reading (16× near the peak), never exceeds the
//! ceiling, and material already under the ceiling passes unchanged.

mod support;
use support::{Noise, Pink};

use ebur128::{EbuR128, Mode};
use lacquer_pipelines::dsp::limiter::{LimiterSettings, TruePeakLimiter};
use lacquer_pipelines::dsp::{AudioBlock, Processor};

fn true_peak_dbtp(channels: &[Vec<f32>], rate_hz: u32) -> f64 {
    let mut meter = EbuR128::new(channels.len() as u32, rate_hz, Mode::TRUE_PEAK).unwrap();
    let planar: Vec<&[f32]> = channels.iter().map(Vec::as_slice).collect();
    meter.add_frames_planar_f32(&planar).unwrap();
    let peak = (0..channels.len() as u32).map(|c| meter.true_peak(c).unwrap()).fold(0.0, f64::max);
    20.0 * peak.log10()
}

/// The meter's accurate true peak (4× through flat halfbands, 16× near the peak).
fn accurate_true_peak_dbtp(channels: &[Vec<f32>], rate_hz: u32) -> f64 {
    let mut meter = lacquer_pipelines::meter::Meter::new(rate_hz, channels.len());
    meter.add(&AudioBlock::from_planar(channels.to_vec()));
    20.0 * meter.finish().true_peak.log10()
}

/// Runs the limiter in blocks, flushes its latency, and returns the
/// output aligned with the input.
fn limit(input: &[Vec<f32>], rate_hz: u32, settings: &LimiterSettings) -> Vec<Vec<f32>> {
    let mut limiter = TruePeakLimiter::new(rate_hz, input.len(), 1024, settings);
    let latency = limiter.latency_frames();
    let frames = input[0].len();
    let mut output = vec![Vec::with_capacity(frames + latency); input.len()];
    let padded: Vec<Vec<f32>> =
        input.iter().map(|c| c.iter().copied().chain(std::iter::repeat_n(0.0, latency)).collect()).collect();
    for start in (0..frames + latency).step_by(1024) {
        let end = (start + 1024).min(frames + latency);
        let mut block = AudioBlock::from_planar(padded.iter().map(|c| c[start..end].to_vec()).collect());
        limiter.process(&mut block);
        for (o, c) in output.iter_mut().zip(block.channels()) {
            o.extend_from_slice(c);
        }
    }
    output.into_iter().map(|c| c[latency..].to_vec()).collect()
}

fn gain(samples: Vec<f32>, db: f64) -> Vec<f32> {
    let g = 10f64.powf(db / 20.0) as f32;
    samples.into_iter().map(|s| s * g).collect()
}

/// The example album's drum stem (a real kit), converted to `rate_hz`.
fn fixture_drums(rate_hz: u32, frames: usize) -> Vec<Vec<f32>> {
    use lacquer_pipelines::stages::{AudioInput, stream_at_rate};
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/album-small/01-chorale-66/drums.flac");
    let mut channels = vec![Vec::new(), Vec::new()];
    stream_at_rate(AudioInput::open_file(&path).unwrap(), rate_hz, |block| {
        for (out, channel) in channels.iter_mut().zip(block.channels()) {
            out.extend_from_slice(channel);
        }
        Ok(())
    })
    .unwrap();
    for channel in &mut channels {
        channel.truncate(frames);
    }
    channels
}

fn hostile_signals(rate_hz: u32) -> Vec<(&'static str, Vec<Vec<f32>>)> {
    let frames = rate_hz as usize * 2;
    let rate = f64::from(rate_hz);
    let square = |freq_hz: f64| -> Vec<f32> {
        (0..frames).map(|n| if (n as f64 * freq_hz / rate).fract() < 0.5 { 1.0 } else { -1.0 }).collect()
    };
    // EBU Tech 3341 case 19: a sine at fs/4, 45° phase, whose samples are
    // at 0 dBFS and whose true peak is +3 dBTP.
    let case_19: Vec<f32> = (0..frames)
        .map(|n| {
            (std::f64::consts::SQRT_2 * (std::f64::consts::FRAC_PI_2 * n as f64 + std::f64::consts::FRAC_PI_4).sin())
                as f32
        })
        .collect();
    // Pink noise, pushed +20 dB.
    let mut pink = Pink::new(0x9E37_79B9_7F4A_7C15);
    let pink: Vec<f32> = (0..frames).map(|_| pink.next() * 0.11).collect();
    // A drum-like loop: kicks (falling sine sweeps) and snares (noise bursts),
    // pushed +12 dB.
    let mut noise = Noise(42);
    let beat = rate_hz as usize / 2;
    let drums: Vec<f32> = (0..frames)
        .map(|n| {
            let t = (n % beat) as f64 / rate;
            let kick = (std::f64::consts::TAU * (50.0 * t + 400.0 * (1.0 - (-t * 30.0).exp()) / 30.0)).sin()
                * (-t * 12.0).exp();
            let snare = if (n / beat) % 2 == 1 { f64::from(noise.next()) * (-t * 25.0).exp() * 0.7 } else { 0.0 };
            ((kick * 0.6 + snare) * 0.8) as f32
        })
        .collect();
    let left_right = |a: Vec<f32>, b: Vec<f32>| vec![a, b];
    let real_drums = fixture_drums(rate_hz, frames);
    vec![
        ("full-scale 1 kHz square", left_right(square(1000.0), square(1000.0))),
        ("full-scale 5.5 kHz square, one channel", left_right(square(5500.0), vec![0.0; frames])),
        ("Tech 3341 case 19 sine, +3 dBTP", left_right(case_19.clone(), case_19)),
        ("pink noise +20 dB", left_right(gain(pink.clone(), 20.0), gain(pink.iter().rev().copied().collect(), 20.0))),
        ("drum loop +12 dB", left_right(gain(drums.clone(), 12.0), gain(drums, 12.0))),
        (
            "the fixture's real drum stem +12 dB",
            left_right(gain(real_drums[0].clone(), 12.0), gain(real_drums[1].clone(), 12.0)),
        ),
    ]
}

#[test]
fn the_ceiling_holds_on_hostile_signals() {
    for rate_hz in [44_100, 48_000, 96_000] {
        for ceiling_dbtp in [-1.0, -0.3] {
            let settings = LimiterSettings { ceiling_dbtp, release_ms: 60.0, lookahead_ms: 1.5 };
            for (name, input) in hostile_signals(rate_hz) {
                let before = true_peak_dbtp(&input, rate_hz);
                assert!(before > ceiling_dbtp + 1.0, "{name} is meant to be hot ({before:.2} dBTP)");
                let output = limit(&input, rate_hz, &settings);
                let after = true_peak_dbtp(&output, rate_hz);
                assert!(
                    after <= ceiling_dbtp,
                    "{name} at {rate_hz} Hz: {after:.3} dBTP over the {ceiling_dbtp} ceiling"
                );
                let accurate = accurate_true_peak_dbtp(&output, rate_hz);
                assert!(
                    accurate <= ceiling_dbtp,
                    "{name} at {rate_hz} Hz: {accurate:.3} dBTP (accurate) over the {ceiling_dbtp} ceiling"
                );
                assert!(after > ceiling_dbtp - 1.5, "{name} at {rate_hz} Hz: limited too hard ({after:.3} dBTP)");
            }
        }
    }
}

#[test]
fn material_under_the_ceiling_passes_unchanged() {
    let rate_hz = 48_000;
    let settings = LimiterSettings { ceiling_dbtp: -1.0, release_ms: 60.0, lookahead_ms: 1.5 };
    for (name, input) in hostile_signals(rate_hz) {
        let peak = true_peak_dbtp(&input, rate_hz);
        let quiet: Vec<Vec<f32>> = input.into_iter().map(|c| gain(c, -2.0 - peak)).collect();
        assert!((true_peak_dbtp(&quiet, rate_hz) + 2.0).abs() < 1e-3);
        let output = limit(&quiet, rate_hz, &settings);
        assert!(output == quiet, "{name}, 1 dB under the ceiling, must pass bit-identical");
    }
}

#[test]
fn limiting_is_deterministic_and_block_size_free() {
    let rate_hz = 44_100;
    let settings = LimiterSettings { ceiling_dbtp: -1.0, release_ms: 60.0, lookahead_ms: 1.5 };
    let (_, input) = hostile_signals(rate_hz).swap_remove(3);
    let a = limit(&input, rate_hz, &settings);
    let b = limit(&input, rate_hz, &settings);
    assert!(a == b);
    let mut limiter = TruePeakLimiter::new(rate_hz, 2, 5000, &settings);
    let mut block = AudioBlock::from_planar(input.iter().map(|c| c[..5000].to_vec()).collect());
    limiter.process(&mut block);
    assert!(limiter.max_gain_reduction_db() > 10.0, "pink noise +20 dB needs heavy limiting");
    // The same samples however the stream is cut (one block of 5,000
    // frames, read a piece at a time inside, against blocks of 700).
    let mut cut = TruePeakLimiter::new(rate_hz, 2, 700, &settings);
    for start in (0..5000).step_by(700) {
        let end = (start + 700).min(5000);
        let mut piece = AudioBlock::from_planar(input.iter().map(|c| c[start..end].to_vec()).collect());
        cut.process(&mut piece);
        for (whole, piece) in block.channels().zip(piece.channels()) {
            assert!(whole[start..end].iter().zip(piece).all(|(a, b)| a.to_bits() == b.to_bits()), "frames {start}..");
        }
    }
}
