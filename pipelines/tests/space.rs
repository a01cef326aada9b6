//! Reverb and delay against numbers: RT60 of the reverb's impulse response
//! within 15 % of `decay_s` from 0.3 to 8 s, damping shortening the highs,
//! silence costing nothing; echoes exact to the sample, darker each time,
//! bouncing in ping-pong.

use lacquer_pipelines::dsp::biquad::{FilterChain, design};
use lacquer_pipelines::dsp::delay::Delay;
use lacquer_pipelines::dsp::reverb::Reverb;
use lacquer_pipelines::dsp::{AudioBlock, Processor};
use lacquer_pipelines::manifest::{Delay as DelaySettings, FilterType, Reverb as ReverbSettings};

const RATE_HZ: u32 = 44_100;
const RT60_TOLERANCE: f64 = 0.15;

fn impulse_response(processor: &mut dyn Processor, frames: usize) -> [Vec<f32>; 2] {
    let mut out = [Vec::with_capacity(frames), Vec::with_capacity(frames)];
    let mut first = true;
    let mut done = 0;
    while done < frames {
        let size = 1024.min(frames - done);
        let mut block = AudioBlock::new(2, size);
        if first {
            block.channel_mut(0)[0] = 1.0;
            first = false;
        }
        processor.process(&mut block);
        out[0].extend_from_slice(block.channel(0));
        out[1].extend_from_slice(block.channel(1));
        done += size;
    }
    out
}

/// RT60 from Schroeder's backward integration, fitted from -5 to -35 dB (T30).
fn rt60_s(energy: &[f64]) -> f64 {
    let mut remaining: f64 = energy.iter().sum();
    let total = remaining;
    let (mut t5, mut t35) = (None, None);
    for (n, e) in energy.iter().enumerate() {
        let db = 10.0 * (remaining / total).log10();
        if t5.is_none() && db <= -5.0 {
            t5 = Some(n);
        }
        if t35.is_none() && db <= -35.0 {
            t35 = Some(n);
            break;
        }
        remaining -= e;
    }
    2.0 * (t35.expect("decays 35 dB") - t5.unwrap()) as f64 / f64::from(RATE_HZ)
}

fn energy(ir: &[Vec<f32>; 2], band: Option<(f64, f64)>) -> Vec<f64> {
    let mut channels = ir.clone();
    if let Some((low, high)) = band {
        let sections = vec![
            design(FilterType::HighPass, low, 0.707, 0.0, RATE_HZ),
            design(FilterType::HighPass, low, 0.707, 0.0, RATE_HZ),
            design(FilterType::LowPass, high, 0.707, 0.0, RATE_HZ),
            design(FilterType::LowPass, high, 0.707, 0.0, RATE_HZ),
        ];
        let mut filter = FilterChain::from_sections(2, sections);
        for (index, channel) in channels.iter_mut().enumerate() {
            filter.process_channel(index, channel);
        }
    }
    channels[0].iter().zip(&channels[1]).map(|(l, r)| f64::from(*l).powi(2) + f64::from(*r).powi(2)).collect()
}

fn reverb(decay_s: f64, damping: f64) -> ReverbSettings {
    ReverbSettings { decay_s, predelay_ms: 0.0, damping, size: 0.7, width: 1.0 }
}

#[test]
fn rt60_matches_decay_from_a_third_of_a_second_to_eight() {
    for decay_s in [0.3, 0.8, 1.8, 4.0, 8.0] {
        let mut processor = Reverb::new(RATE_HZ, 2, 65_536, &reverb(decay_s, 0.0));
        let ir = impulse_response(&mut processor, (f64::from(RATE_HZ) * decay_s * 1.2) as usize + RATE_HZ as usize / 2);
        let measured = rt60_s(&energy(&ir, None));
        assert!((measured / decay_s - 1.0).abs() <= RT60_TOLERANCE, "decay {decay_s} s: RT60 measured {measured:.3} s");
    }
}

#[test]
fn damping_keeps_the_mids_and_shortens_the_highs() {
    let decay_s = 2.0;
    let mut processor = Reverb::new(RATE_HZ, 2, 65_536, &reverb(decay_s, 0.6));
    let ir = impulse_response(&mut processor, RATE_HZ as usize * 3);
    let mids = rt60_s(&energy(&ir, Some((250.0, 1000.0))));
    let highs = rt60_s(&energy(&ir, Some((6000.0, 12_000.0))));
    assert!((mids / decay_s - 1.0).abs() <= RT60_TOLERANCE, "damped: mids RT60 {mids:.3} s");
    assert!(highs < 0.6 * mids, "damped highs decay faster: {highs:.3} s vs {mids:.3} s");
}

#[test]
fn reverb_is_deterministic_stereo_and_idles_in_silence() {
    let settings = ReverbSettings { decay_s: 1.0, predelay_ms: 20.0, damping: 0.5, size: 0.6, width: 1.0 };
    let a = impulse_response(&mut Reverb::new(RATE_HZ, 2, 65_536, &settings), RATE_HZ as usize);
    let b = impulse_response(&mut Reverb::new(RATE_HZ, 2, 65_536, &settings), RATE_HZ as usize);
    assert!(a == b);
    let onset = a[0].iter().position(|s| *s != 0.0).unwrap();
    assert!(onset >= 882, "nothing before the 20 ms predelay ({onset} frames)");
    let correlation: f64 = a[0].iter().zip(&a[1]).map(|(l, r)| f64::from(*l) * f64::from(*r)).sum::<f64>()
        / (energy(&[a[0].clone(), vec![0.0; a[0].len()]], None).iter().sum::<f64>()
            * energy(&[a[1].clone(), vec![0.0; a[1].len()]], None).iter().sum::<f64>())
        .sqrt();
    assert!(correlation.abs() < 0.3, "left and right are decorrelated ({correlation:.2})");

    // After the tail dies, it stops working and outputs exact zeros.
    let mut processor = Reverb::new(RATE_HZ, 2, 65_536, &settings);
    impulse_response(&mut processor, RATE_HZ as usize * 6);
    assert!(processor.is_idle(), "idle after the tail");
    let mut silence = AudioBlock::new(2, 1024);
    processor.process(&mut silence);
    assert!(silence.channels().all(|c| c.iter().all(|&s| s == 0.0)));
    // Mono width: identical channels.
    let narrow =
        impulse_response(&mut Reverb::new(RATE_HZ, 2, 65_536, &ReverbSettings { width: 0.0, ..settings }), 20_000);
    assert!(narrow[0] == narrow[1]);
}

#[test]
fn delay_echoes_are_exact_darker_and_bounce() {
    let settings = DelaySettings { time_ms: 120.0, feedback: 0.5, high_cut_hz: 5000.0, ping_pong: false };
    let mut delay = Delay::new(RATE_HZ, 2, 65_536, &settings);
    assert_eq!(delay.delay_frames(), 5292, "120 ms at 44.1 kHz");
    let ir = impulse_response(&mut delay, 5292 * 4);
    assert_eq!(ir[0][5292], 1.0, "the first echo is the input, exactly 5292 frames late");
    assert!(ir[0][..5292].iter().all(|s| *s == 0.0) && ir[0][5293..10_584].iter().all(|s| *s == 0.0));
    let second: f64 = ir[0][10_584..15_876].iter().map(|s| f64::from(*s)).sum();
    assert!((second - 0.5).abs() < 1e-3, "the second echo carries the feedback at DC ({second:.4})");
    let second_peak = ir[0][10_584..15_876].iter().fold(0f32, |m, s| m.max(s.abs()));
    assert!(second_peak < 0.45, "and is darker: smeared by the high cut ({second_peak:.3})");

    let mut ping_pong = Delay::new(RATE_HZ, 2, 65_536, &DelaySettings { ping_pong: true, ..settings });
    let ir = impulse_response(&mut ping_pong, 5292 * 4);
    let energy_in = |c: &Vec<f32>, echo: usize| -> f64 {
        c[echo * 5292..(echo + 1) * 5292].iter().map(|s| f64::from(*s).powi(2)).sum()
    };
    assert!(energy_in(&ir[0], 1) > 0.0 && energy_in(&ir[1], 1) == 0.0, "first echo on the left");
    assert!(energy_in(&ir[1], 2) > 0.0 && energy_in(&ir[0], 2) == 0.0, "second on the right");
    assert!(energy_in(&ir[0], 3) > 0.0 && energy_in(&ir[1], 3) == 0.0, "third on the left");
}
