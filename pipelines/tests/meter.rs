//! The meter against the reference it replaced: the `ebur128` crate reads
//! the same 20+ signals (sines, pink noise with gaps, the example album's
//! stems and a mix of them, 44.1/48/96 kHz, mono and stereo, silence, a
//! sample over full scale). Integrated and every short-term loudness must
//! agree within 0.01 LU, the loudness range within 0.05 LU, and the
//! BS.1770 true-peak reading within 0.01 dB. The accurate true-peak reading
//! is held to a 16× long-filter reference.

mod support;
use support::{Noise, Pink};

use std::f64::consts::PI;

use lacquer_pipelines::analysis::{Analysis, Analyzer};
use lacquer_pipelines::decode::AudioReader;
use lacquer_pipelines::dsp::AudioBlock;

struct Signal {
    name: String,
    rate_hz: u32,
    channels: Vec<Vec<f32>>,
}

fn sine(rate_hz: u32, freq_hz: f64, level_dbfs: f64, seconds: f64, phase: f64) -> Vec<f32> {
    let amplitude = 10f64.powf(level_dbfs / 20.0);
    (0..(seconds * f64::from(rate_hz)) as usize)
        .map(|n| (amplitude * (2.0 * PI * freq_hz * n as f64 / f64::from(rate_hz) + phase).sin()) as f32)
        .collect()
}

fn pink_with_gaps(rate_hz: u32, seed: u64, seconds: f64) -> Vec<f32> {
    let mut pink = Pink::new(seed);
    let frames = (seconds * f64::from(rate_hz)) as usize;
    // Two seconds of noise, then one of silence, with the level rising.
    (0..frames)
        .map(|n| {
            let second = n / rate_hz as usize;
            let level = 0.3 + 0.15 * (second % 5) as f32;
            let v = pink.next() * level;
            if second % 3 == 2 { 0.0 } else { v }
        })
        .collect()
}

fn decode(path: &str) -> (u32, Vec<Vec<f32>>) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    let file = std::fs::File::open(&path).unwrap();
    let length = file.metadata().unwrap().len();
    let mut reader = AudioReader::open(Box::new(file), length, Some("flac")).unwrap();
    let info = reader.info().clone();
    let mut channels = vec![Vec::new(); info.channels];
    let mut block = AudioBlock::new(info.channels, 4096);
    while reader.read(&mut block, 4096).unwrap() > 0 {
        for (all, part) in channels.iter_mut().zip(block.channels()) {
            all.extend_from_slice(part);
        }
    }
    (info.sample_rate_hz, channels)
}

fn signals() -> Vec<Signal> {
    let mut signals = Vec::new();
    let mut add = |name: &str, rate_hz: u32, channels: Vec<Vec<f32>>| {
        signals.push(Signal { name: name.to_owned(), rate_hz, channels });
    };
    for rate_hz in [44_100, 48_000, 96_000] {
        let tone = sine(rate_hz, 997.0, -18.0, 12.0, 0.3);
        add(&format!("997 Hz at {rate_hz}"), rate_hz, vec![tone.clone(), tone]);
        let high = sine(rate_hz, 15_000.0, -9.0, 8.0, 1.1);
        add(&format!("15 kHz at {rate_hz}"), rate_hz, vec![high.clone(), sine(rate_hz, 15_000.0, -9.0, 8.0, 0.2)]);
        add(
            &format!("pink noise with gaps at {rate_hz}"),
            rate_hz,
            vec![pink_with_gaps(rate_hz, 7, 14.0), pink_with_gaps(rate_hz, 8, 14.0)],
        );
    }
    add("mono 100 Hz", 48_000, vec![sine(48_000, 100.0, -12.0, 6.0, 0.0)]);
    add("mono pink noise", 44_100, vec![pink_with_gaps(44_100, 3, 9.0)]);
    add("stereo, one side silent", 48_000, vec![sine(48_000, 440.0, -20.0, 6.0, 0.0), vec![0.0; 288_000]]);
    add("silence", 48_000, vec![vec![0.0; 240_000], vec![0.0; 240_000]]);
    let mut over = sine(48_000, 1_000.0, -6.0, 5.0, 0.0);
    over[100_000] = 1.5;
    add("one sample over full scale", 48_000, vec![over.clone(), over]);
    let mut white = Noise(11);
    let noise: Vec<f32> = (0..48_000 * 6).map(|_| white.next() * 0.9).collect();
    add("white noise near full scale", 48_000, vec![noise.clone(), noise.iter().rev().copied().collect()]);
    let levels: Vec<f32> = (0..48_000 * 20)
        .map(|n| {
            let t = n as f64 / 48_000.0;
            let level = 10f64.powf((-40.0 + 30.0 * (t / 20.0)) / 20.0);
            (level * (2.0 * PI * 300.0 * t).sin()) as f32
        })
        .collect();
    add("a 30 dB ramp", 48_000, vec![levels.clone(), levels]);
    // The example album's stems, and a mix of one song's.
    let stems = [
        "examples/album-small/01-chorale-66/drums.flac",
        "examples/album-small/01-chorale-66/bass.flac",
        "examples/album-small/02-maple-leaf/piano.flac",
        "examples/album-small/03-tears-ballad/vox.flac",
        "examples/album-small/03-tears-ballad/strings.flac",
    ];
    for stem in stems {
        let (rate_hz, channels) = decode(stem);
        add(stem, rate_hz, channels);
    }
    let mut mix: Option<(u32, Vec<Vec<f32>>)> = None;
    for stem in ["cello", "piano", "strings", "vox"] {
        let (rate_hz, channels) = decode(&format!("examples/album-small/03-tears-ballad/{stem}.flac"));
        let stereo = if channels.len() == 1 { vec![channels[0].clone(), channels[0].clone()] } else { channels };
        match &mut mix {
            None => mix = Some((rate_hz, stereo)),
            Some((_, sum)) => {
                for (s, c) in sum.iter_mut().zip(&stereo) {
                    for (a, b) in s.iter_mut().zip(c) {
                        *a += b;
                    }
                }
            }
        }
    }
    let (rate_hz, channels) = mix.unwrap();
    add("03-tears-ballad mixed", rate_hz, channels);
    signals
}

fn analyse(signal: &Signal) -> Analysis {
    let mut analyzer = Analyzer::new(signal.rate_hz, signal.channels.len()).unwrap();
    let frames = signal.channels[0].len();
    // Uneven blocks: the readings must not depend on how a stream is cut.
    let mut start = 0;
    for size in [1000, 4096, 37, 8192, 3000].iter().cycle() {
        if start >= frames {
            break;
        }
        let end = (start + size).min(frames);
        analyzer
            .add(&AudioBlock::from_planar(signal.channels.iter().map(|c| c[start..end].to_vec()).collect()))
            .unwrap();
        start = end;
    }
    analyzer.finish().unwrap()
}

fn db(linear: f64) -> f64 {
    20.0 * linear.log10()
}

#[test]
fn the_meter_reads_as_ebur128_does() {
    let signals = signals();
    assert!(signals.len() >= 20, "{} signals", signals.len());
    for signal in &signals {
        let ours = analyse(signal);
        let channels = signal.channels.len() as u32;
        let mode = ebur128::Mode::I | ebur128::Mode::S | ebur128::Mode::LRA | ebur128::Mode::TRUE_PEAK;
        let mut reference = ebur128::EbuR128::new(channels, signal.rate_hz, mode).unwrap();
        // Fed 100 ms at a time, its short-term loudness is read where ours is.
        let segment = (signal.rate_hz as usize + 5) / 10;
        let mut short_term = Vec::new();
        let frames = signal.channels[0].len();
        for (index, start) in (0..frames).step_by(segment).enumerate() {
            let end = (start + segment).min(frames);
            let parts: Vec<&[f32]> = signal.channels.iter().map(|c| &c[start..end]).collect();
            reference.add_frames_planar_f32(&parts).unwrap();
            if index >= 29 && end - start == segment {
                short_term.push(reference.loudness_shortterm().unwrap());
            }
        }
        let name = &signal.name;
        let integrated = reference.loudness_global().unwrap();
        match ours.integrated_lufs {
            Some(got) => assert!((got - integrated).abs() <= 0.01, "{name}: integrated {got:.4} vs {integrated:.4}"),
            None => assert!(integrated.is_infinite(), "{name}: silent for us, {integrated} for ebur128"),
        }
        assert_eq!(ours.short_term_lufs.len(), short_term.len(), "{name}: short-term count");
        for (i, (got, want)) in ours.short_term_lufs.iter().zip(&short_term).enumerate() {
            if *want > -70.0 {
                assert!((f64::from(*got) - want).abs() <= 0.01, "{name}: short-term {i}: {got:.4} vs {want:.4}");
            }
        }
        let range = reference.loudness_range().unwrap();
        assert!(
            (ours.loudness_range_lu - range).abs() <= 0.05,
            "{name}: LRA {:.3} vs {range:.3}",
            ours.loudness_range_lu
        );
        let peak = (0..channels).map(|c| reference.true_peak(c).unwrap()).fold(0.0, f64::max);
        if peak > 0.0 {
            let want = db(peak);
            let got = ours.true_peak_bs1770_dbtp;
            assert!((got - want).abs() <= 0.01, "{name}: BS.1770 true peak {got:.4} vs {want:.4} dBTP");
            assert!(ours.true_peak_dbtp >= ours.sample_peak_dbfs, "{name}: true peak under the sample peak");
        }
    }
}

/// The true peak of `x` upsampled 16× by a long Kaiser-windowed sinc
/// (64 taps a phase, β = 10: flat to 0.0005 dB up to 0.45 fs).
fn reference_true_peak_16x(x: &[f32]) -> f64 {
    const FACTOR: usize = 16;
    const HALF: isize = 32;
    let beta = 10.0;
    let i0 = |v: f64| {
        let (mut sum, mut term) = (1.0, 1.0);
        for k in 1..80 {
            term *= v / 2.0 / k as f64;
            sum += term * term;
        }
        sum
    };
    let mut peak = 0f64;
    for phase in 0..FACTOR {
        let d = phase as f64 / FACTOR as f64;
        let kernel: Vec<f64> = (-HALF + 1..=HALF)
            .map(|k| {
                let t = k as f64 - d;
                let sinc = if t.abs() < 1e-12 { 1.0 } else { (PI * t).sin() / (PI * t) };
                let r = t / HALF as f64;
                sinc * i0(beta * (1.0 - r * r).max(0.0).sqrt()) / i0(beta)
            })
            .collect();
        for n in HALF as usize..x.len() - HALF as usize {
            let v: f64 = kernel.iter().enumerate().map(|(j, k)| k * f64::from(x[n + j + 1 - HALF as usize])).sum();
            peak = peak.max(v.abs());
        }
    }
    peak
}

#[test]
fn the_accurate_true_peak_agrees_with_a_16x_reference_on_music() {
    // Loud, limited-like material: the example mix pushed into soft clipping.
    let (rate_hz, channels) = decode("examples/album-small/02-maple-leaf/piano.flac");
    for drive in [2.0f32, 6.0] {
        let loud: Vec<Vec<f32>> = channels
            .iter()
            .map(|c| c[..rate_hz as usize * 4].iter().map(|x| (x * drive).tanh() * 0.9).collect())
            .collect();
        let ours = analyse(&Signal { name: String::new(), rate_hz, channels: loud.clone() });
        let want = db(loud.iter().map(|c| reference_true_peak_16x(c)).fold(0.0, f64::max));
        assert!(
            (ours.true_peak_dbtp - want).abs() <= 0.05,
            "drive {drive}: {:.3} dBTP vs the 16× reference's {want:.3}",
            ours.true_peak_dbtp
        );
    }
}

#[test]
fn the_accurate_true_peak_finds_peaks_between_the_4x_points() {
    // Tones whose every peak falls halfway between two 4× points (fs/4 and
    // fs/6, phased so; a 4× grid alone reads them 0.17 and 0.08 dB low),
    // and high tones, faded in and out so that the steady tone holds the
    // peak.
    let rate_hz = 44_100;
    let quarter = f64::from(rate_hz) / 4.0;
    let sixth = f64::from(rate_hz) / 6.0;
    for (freq_hz, phase) in [
        (quarter, PI / 2.0 - PI / 16.0),
        (sixth, PI / 2.0 - PI / 24.0),
        (5_000.0, 0.1),
        (15_000.0, 0.3),
        (19_000.0, 1.3),
    ] {
        let frames = rate_hz as usize / 2;
        let fade = rate_hz as usize / 50;
        let tone: Vec<f32> = sine(rate_hz, freq_hz, -3.0, 0.5, phase)
            .iter()
            .enumerate()
            .map(|(n, x)| {
                let edge = n.min(frames - 1 - n).min(fade) as f64 / fade as f64;
                x * (0.5 - 0.5 * (PI * edge).cos()) as f32
            })
            .collect();
        let ours = analyse(&Signal { name: String::new(), rate_hz, channels: vec![tone.clone()] });
        let want = db(reference_true_peak_16x(&tone));
        assert!(
            (ours.true_peak_dbtp - want).abs() <= 0.05,
            "{freq_hz} Hz: {:.3} dBTP vs the 16× reference's {want:.3}",
            ours.true_peak_dbtp
        );
    }
}
