//! Gain and pan automation have no zipper noise: a ramp on a sine adds no
//! component above -100 dB outside the sine's neighbourhood. A gain
//! stepped once per block, the classic zipper, fails the same check. Pan
//! automation's gains (exact at control rate, straight between) stay
//! within 1e-6 of the pan law at every frame.

use lacquer_pipelines::dsp::envelope::{Lane, apply_pan_lane, pan_gains};
use lacquer_pipelines::dsp::oversample::bessel_i0;
use realfft::RealFftPlanner;

const RATE_HZ: u32 = 48_000;
const FRAMES: usize = 1 << 17;
const LIMIT_DBFS: f64 = -100.0;
const NEIGHBOURHOOD_HZ: f64 = 250.0;

fn spectrum_dbfs(samples: &[f32]) -> Vec<f64> {
    let beta = 20.0;
    let window: Vec<f64> = (0..samples.len())
        .map(|n| {
            let r = 2.0 * n as f64 / (samples.len() - 1) as f64 - 1.0;
            bessel_i0(beta * (1.0 - r * r).sqrt()) / bessel_i0(beta)
        })
        .collect();
    let gain: f64 = window.iter().sum::<f64>() / 2.0;
    let mut input: Vec<f64> = samples.iter().zip(&window).map(|(s, w)| f64::from(*s) * w).collect();
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(samples.len());
    let mut out = fft.make_output_vec();
    fft.process(&mut input, &mut out).unwrap();
    out.iter().map(|c| 20.0 * (c.norm() / gain).max(1e-20).log10()).collect()
}

/// The loudest component further than the neighbourhood from 1 kHz.
fn worst_outside(samples: &[f32]) -> (f64, f64) {
    let spectrum = spectrum_dbfs(samples);
    let bin_hz = f64::from(RATE_HZ) / FRAMES as f64;
    spectrum
        .iter()
        .enumerate()
        .map(|(bin, &db)| (db, bin as f64 * bin_hz))
        .filter(|(_, f)| (f - 1000.0).abs() > NEIGHBOURHOOD_HZ)
        .fold((f64::MIN, 0.0), |worst, x| if x.0 > worst.0 { x } else { worst })
}

fn sine() -> Vec<f32> {
    (0..FRAMES).map(|n| (0.5 * (std::f64::consts::TAU * 1000.0 * n as f64 / f64::from(RATE_HZ)).sin()) as f32).collect()
}

#[test]
fn a_gain_ramp_adds_no_zipper_noise() {
    // -30 dB up to 0 dB and back down to -12 dB, within the window.
    let mut lane = Lane::new(&[[0.5, -30.0], [1.2, 0.0], [2.0, -12.0]], RATE_HZ, 0.0);
    let mut gains = vec![0f32; FRAMES];
    for (start, chunk) in (0i64..).step_by(512).zip(gains.chunks_mut(512)) {
        lane.fill_gains(start, chunk);
    }
    let shaped: Vec<f32> = sine().iter().zip(&gains).map(|(s, g)| s * g).collect();
    let (db, freq) = worst_outside(&shaped);
    assert!(db < LIMIT_DBFS, "automation adds {db:.1} dBFS at {freq:.0} Hz");

    // The same ramp applied once per 512-frame block: audible zipper.
    let stepped: Vec<f32> = sine().iter().enumerate().map(|(n, s)| s * gains[n / 512 * 512]).collect();
    let (db, _) = worst_outside(&stepped);
    assert!(db > LIMIT_DBFS + 20.0, "a block-stepped gain is caught ({db:.1} dBFS)");
}

#[test]
fn a_pan_sweep_follows_the_law_with_no_zipper_noise() {
    // Hard left to hard right and back part way, under the -3 dB law,
    // applied in blocks of awkward sizes.
    let law_db = -3.0;
    let breakpoints = [[0.3, -1.0], [1.5, 1.0], [2.5, 0.2]];
    let mut lane = Lane::new(&breakpoints, RATE_HZ, 0.0);
    let (mut left, mut right) = (sine(), sine());
    let mut start = 0;
    for size in [1000usize, 37, 4096, 511].iter().cycle() {
        if start >= FRAMES {
            break;
        }
        let end = (start + size).min(FRAMES);
        apply_pan_lane(&mut lane, start as i64, Some(law_db), &mut left[start..end], &mut right[start..end]);
        start = end;
    }
    let mut exact_lane = Lane::new(&breakpoints, RATE_HZ, 0.0);
    let mut worst = 0f64;
    for (n, (s, (l, r))) in sine().iter().zip(left.iter().zip(&right)).enumerate() {
        let (gain_left, gain_right) = pan_gains(exact_lane.value_at(n as f64), law_db);
        worst = worst.max(f64::from((l - s * gain_left).abs())).max(f64::from((r - s * gain_right).abs()));
    }
    assert!(worst < 1e-6, "{worst:e} off the pan law");
    for channel in [&left, &right] {
        let (db, freq) = worst_outside(channel);
        assert!(db < LIMIT_DBFS, "the pan sweep adds {db:.1} dBFS at {freq:.0} Hz");
    }
}
