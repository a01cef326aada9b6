//! The compressor against numbers: its static curve with steady sines,
//! its attack and release time constants, and linked stereo.

use lacquer_pipelines::dsp::compressor::{Compressor, static_curve_db};
use lacquer_pipelines::dsp::{AudioBlock, Processor};
use lacquer_pipelines::manifest::{Compressor as Settings, Detector};

const RATE_HZ: u32 = 48_000;
const CURVE_TOLERANCE_DB: f64 = 0.25;
const TIME_CONSTANT_TOLERANCE: f64 = 0.10;

fn settings(detector: Detector) -> Settings {
    Settings {
        threshold_db: -20.0,
        ratio: 4.0,
        attack_ms: 5.0,
        release_ms: 200.0,
        knee_db: 6.0,
        makeup_db: 2.0,
        detector,
        stereo_link: true,
    }
}

fn run(compressor: &mut Compressor, channels: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    let frames = channels[0].len();
    let mut out = vec![Vec::with_capacity(frames); channels.len()];
    for start in (0..frames).step_by(512) {
        let end = (start + 512).min(frames);
        let mut block = AudioBlock::from_planar(channels.iter().map(|c| c[start..end].to_vec()).collect());
        compressor.process(&mut block);
        for (o, c) in out.iter_mut().zip(block.channels()) {
            o.extend_from_slice(c);
        }
    }
    out
}

fn sine(level_db: f64, freq_hz: f64, seconds: f64) -> Vec<f32> {
    let amplitude = 10f64.powf(level_db / 20.0);
    (0..(seconds * f64::from(RATE_HZ)) as usize)
        .map(|n| (amplitude * (std::f64::consts::TAU * freq_hz * n as f64 / f64::from(RATE_HZ)).sin()) as f32)
        .collect()
}

fn peak_db(samples: &[f32]) -> f64 {
    20.0 * f64::from(samples.iter().fold(0f32, |m, s| m.max(s.abs()))).log10()
}

#[test]
fn static_curve_with_steady_sines() {
    for detector in [Detector::Peak, Detector::Rms] {
        let s = settings(detector);
        for input_db in [-40.0, -30.0, -23.0, -21.0, -20.0, -18.0, -15.0, -10.0, -5.0, 0.0] {
            let mut compressor = Compressor::new(RATE_HZ, 2, 65_536, &s);
            let signal = sine(input_db, 1000.0, 3.0);
            let out = run(&mut compressor, vec![signal.clone(), signal]);
            let settled = &out[0][out[0].len() - RATE_HZ as usize / 2..];
            let measured_db = peak_db(settled);
            let designed_db = static_curve_db(input_db, s.threshold_db, s.ratio, s.knee_db) + s.makeup_db;
            assert!(
                (measured_db - designed_db).abs() <= CURVE_TOLERANCE_DB,
                "{detector:?} at {input_db} dB in: measured {measured_db:.3} dB out, designed {designed_db:.3}"
            );
        }
    }
}

/// The gain change in dB that the compressor applies to a DC input.
fn gain_trace_db(compressor: &mut Compressor, input: &[f32]) -> Vec<f64> {
    let out = run(compressor, vec![input.to_vec()]);
    out[0].iter().zip(input).map(|(o, i)| 20.0 * f64::from(o / i).log10()).collect()
}

/// Frames until the gain has covered 1 - 1/e of its way from `from` to `to`.
fn time_constant_ms(trace: &[f64], from: f64, to: f64) -> f64 {
    let mark = from + (to - from) * (1.0 - (-1.0f64).exp());
    let frames = trace.iter().position(|&g| if to < from { g <= mark } else { g >= mark }).expect("reaches the mark");
    frames as f64 * 1000.0 / f64::from(RATE_HZ)
}

#[test]
fn attack_and_release_time_constants() {
    for (attack_ms, release_ms) in [(1.0, 50.0), (10.0, 150.0), (30.0, 1000.0)] {
        let s = Settings {
            knee_db: 0.0,
            makeup_db: 0.0,
            detector: Detector::Peak,
            attack_ms,
            release_ms,
            ..settings(Detector::Peak)
        };
        let mut compressor = Compressor::new(RATE_HZ, 1, 65_536, &s);
        // Settle quiet, then step up to 0 dBFS (20 dB over: -15 dB of gain).
        let quiet = 10f32.powf(-40.0 / 20.0);
        let settle = vec![quiet; RATE_HZ as usize];
        gain_trace_db(&mut compressor, &settle);
        let loud = vec![1.0f32; (f64::from(RATE_HZ) * (attack_ms * 10.0) / 1000.0) as usize + 1000];
        let attack = gain_trace_db(&mut compressor, &loud);
        let target_db = -15.0;
        assert!((attack.last().unwrap() - target_db).abs() < 0.01, "settles at the static curve");
        let measured = time_constant_ms(&attack, 0.0, target_db);
        assert!(
            (measured / attack_ms - 1.0).abs() <= TIME_CONSTANT_TOLERANCE,
            "attack: measured {measured:.3} ms, set {attack_ms} ms"
        );
        let back = vec![quiet; (f64::from(RATE_HZ) * release_ms * 8.0 / 1000.0) as usize];
        let release = gain_trace_db(&mut compressor, &back);
        // Measured end to end: release runs through the attack stage too.
        let measured = time_constant_ms(&release, target_db, 0.0);
        assert!(
            (measured / release_ms - 1.0).abs() <= TIME_CONSTANT_TOLERANCE,
            "release: measured {measured:.3} ms, set {release_ms} ms"
        );
    }
}

#[test]
fn linked_stereo_moves_both_channels_identically() {
    let mut compressor = Compressor::new(RATE_HZ, 2, 65_536, &settings(Detector::Rms));
    let loud = sine(-3.0, 440.0, 1.0);
    let quiet = sine(-30.0, 3000.0, 1.0);
    let out = run(&mut compressor, vec![loud.clone(), quiet.clone()]);
    let mut checked = 0;
    for n in 0..loud.len() {
        if loud[n].abs() > 1e-3 && quiet[n].abs() > 1e-4 {
            let gain_left = out[0][n] / loud[n];
            let gain_right = out[1][n] / quiet[n];
            assert!((gain_left - gain_right).abs() <= 1e-6 * gain_left.abs(), "frame {n}: {gain_left} vs {gain_right}");
            checked += 1;
        }
    }
    assert!(checked > 10_000);
    // Unlinked, the quiet channel is left alone (below the threshold).
    let mut unlinked = Compressor::new(RATE_HZ, 2, 65_536, &Settings { stereo_link: false, ..settings(Detector::Rms) });
    let out = run(&mut unlinked, vec![loud, quiet.clone()]);
    let right_gain_db = peak_db(&out[1][RATE_HZ as usize / 2..]) - peak_db(&quiet[RATE_HZ as usize / 2..]);
    assert!((right_gain_db - 2.0).abs() < 0.05, "only makeup on the quiet channel: {right_gain_db:.3} dB");
}
