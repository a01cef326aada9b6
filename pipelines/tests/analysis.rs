//! Analysis against the standards and against numbers: EBU Tech 3341 cases
//! 1–5 and 15–19, EBU Tech 3342 cases 1–4 (synthesized here), album
//! merging, the spectrum, warmth, tilt and width.

mod support;
use support::Noise;

use lacquer_pipelines::analysis::{Analysis, Analyzer, AnalyzerThread, BAND_CENTRES_HZ, album_loudness};
use lacquer_pipelines::dsp::AudioBlock;

const RATE_HZ: u32 = 48_000;

/// A stereo 1 kHz sine in segments of (dBFS per channel, seconds).
fn sine_segments(segments: &[(f64, f64)]) -> Vec<Vec<f32>> {
    let mut samples = Vec::new();
    let mut n = 0u64;
    for &(level_db, seconds) in segments {
        let amplitude = 10f64.powf(level_db / 20.0);
        for _ in 0..(seconds * f64::from(RATE_HZ)).round() as u64 {
            samples.push((amplitude * (std::f64::consts::TAU * 1000.0 * n as f64 / f64::from(RATE_HZ)).sin()) as f32);
            n += 1;
        }
    }
    vec![samples.clone(), samples]
}

fn analyse(channels: &[Vec<f32>], rate_hz: u32) -> Analysis {
    let mut analyzer = Analyzer::new(rate_hz, channels.len()).unwrap();
    for start in (0..channels[0].len()).step_by(4096) {
        let end = (start + 4096).min(channels[0].len());
        analyzer.add(&AudioBlock::from_planar(channels.iter().map(|c| c[start..end].to_vec()).collect())).unwrap();
    }
    analyzer.finish().unwrap()
}

#[test]
fn tech_3341_integrated_loudness_cases_1_to_5() {
    let cases: [(&str, Vec<(f64, f64)>); 5] = [
        ("case 1", vec![(-23.0, 20.0)]),
        ("case 2", vec![(-33.0, 20.0)]),
        ("case 3", vec![(-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0)]),
        ("case 4", vec![(-72.0, 10.0), (-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0), (-72.0, 10.0)]),
        ("case 5", vec![(-26.0, 20.0), (-20.0, 20.1), (-26.0, 20.0)]),
    ];
    let expected = [-23.0, -33.0, -23.0, -23.0, -23.0];
    for ((name, segments), want) in cases.iter().zip(expected) {
        let analysis = analyse(&sine_segments(segments), RATE_HZ);
        let got = analysis.integrated_lufs.unwrap();
        assert!((got - want).abs() <= 0.1, "Tech 3341 {name}: {got:.2} LUFS, expected {want} ± 0.1");
        // The mergeable form gives the same figure.
        let merged = album_loudness(&[&analysis]).integrated_lufs.unwrap();
        assert!((merged - got).abs() < 0.01, "{name}: merged {merged:.3} vs {got:.3}");
    }
}

#[test]
fn tech_3341_true_peak_cases_15_to_19() {
    use std::f64::consts::PI;
    // (frequency as a fraction of fs, phase, amplitude dBFS, expected dBTP)
    let cases = [
        ("case 15", 0.25, 0.0, -6.0, -6.0),
        ("case 16", 0.25, PI / 4.0, -6.0, -6.0),
        ("case 17", 1.0 / 6.0, PI / 3.0, -6.0, -6.0),
        ("case 18", 0.125, 3.0 * PI / 8.0, -6.0, -6.0),
        ("case 19", 0.25, PI / 4.0, 3.0103, 3.0),
    ];
    for (name, fraction, phase, amplitude_db, want) in cases {
        let amplitude = 10f64.powf(amplitude_db / 20.0);
        let frames = RATE_HZ as usize * 2;
        let fade = RATE_HZ as usize / 50;
        let faded = |n: usize| {
            let edge = n.min(frames - 1 - n);
            if edge >= fade { 1.0 } else { 0.5 - 0.5 * (PI * edge as f64 / fade as f64).cos() }
        };
        // Switched on and off abruptly, as the EBU's files are, and with
        // 20 ms raised-cosine fades.
        for (shape, envelope) in [("abrupt", &(|_| 1.0) as &dyn Fn(usize) -> f64), ("faded", &faded)] {
            let samples: Vec<f32> = (0..frames)
                .map(|n| (envelope(n) * amplitude * (2.0 * PI * fraction * n as f64 + phase).sin()) as f32)
                .collect();
            let analysis = analyse(&[samples.clone(), samples], RATE_HZ);
            let got = analysis.true_peak_dbtp;
            assert!(
                got - want <= 0.2 && want - got <= 0.4,
                "Tech 3341 {name}, {shape}: {got:.2} dBTP, expected {want} +0.2/-0.4"
            );
            if shape == "faded" {
                // The BS.1770 reading passes where no step is measured.
                let got = analysis.true_peak_bs1770_dbtp;
                assert!(got - want <= 0.2 && want - got <= 0.4, "Tech 3341 {name}, BS.1770: {got:.2} dBTP");
            }
        }
    }
}

#[test]
fn tech_3342_loudness_range_cases_1_to_4() {
    type Case = (&'static str, Vec<(f64, f64)>, f64);
    let cases: [Case; 4] = [
        ("case 1", vec![(-20.0, 20.0), (-30.0, 20.0)], 10.0),
        ("case 2", vec![(-20.0, 20.0), (-15.0, 20.0)], 5.0),
        ("case 3", vec![(-40.0, 20.0), (-20.0, 20.0)], 20.0),
        ("case 4", vec![(-50.0, 20.0), (-35.0, 20.0), (-20.0, 20.0), (-35.0, 20.0), (-50.0, 20.0)], 15.0),
    ];
    for (name, segments, want) in cases {
        let analysis = analyse(&sine_segments(&segments), RATE_HZ);
        assert!(
            (analysis.loudness_range_lu - want).abs() <= 1.0,
            "Tech 3342 {name}: {:.2} LU, expected {want} ± 1",
            analysis.loudness_range_lu
        );
        let merged = album_loudness(&[&analysis]).loudness_range_lu;
        assert!((merged - want).abs() <= 1.0, "Tech 3342 {name}, merged: {merged:.2} LU");
    }
}

#[test]
fn album_loudness_of_several_tracks_matches_one_meter_over_all() {
    let tracks =
        [sine_segments(&[(-20.0, 12.0)]), sine_segments(&[(-30.0, 8.0), (-24.0, 5.0)]), sine_segments(&[(-16.0, 6.0)])];
    let analyses: Vec<Analysis> = tracks.iter().map(|t| analyse(t, RATE_HZ)).collect();
    let merged = album_loudness(&analyses.iter().collect::<Vec<_>>());
    let mut meters: Vec<ebur128::EbuR128> = Vec::new();
    for track in &tracks {
        let mut meter = ebur128::EbuR128::new(2, RATE_HZ, ebur128::Mode::I | ebur128::Mode::LRA).unwrap();
        meter.add_frames_planar_f32(&[&track[0], &track[1]]).unwrap();
        meters.push(meter);
    }
    let reference = ebur128::EbuR128::loudness_global_multiple(meters.iter()).unwrap();
    let got = merged.integrated_lufs.unwrap();
    assert!((got - reference).abs() < 0.02, "merged {got:.3} LUFS vs ebur128 over all {reference:.3}");
    let reference_lra = ebur128::EbuR128::loudness_range_multiple(meters.iter()).unwrap();
    assert!(
        (merged.loudness_range_lu - reference_lra).abs() < 0.5,
        "LRA {:.2} vs {reference_lra:.2}",
        merged.loudness_range_lu
    );
}

#[test]
fn spectrum_warmth_tilt_and_width() {
    // A full-scale sine: -3.01 dB mean square, all in its own band.
    let sine = sine_segments(&[(0.0, 5.0)]);
    let analysis = analyse(&sine, RATE_HZ);
    let band = BAND_CENTRES_HZ.iter().position(|&f| f == 1000.0).unwrap();
    assert!((analysis.band_levels_db[band] + 3.0103).abs() < 0.05, "{:.3}", analysis.band_levels_db[band]);
    assert!(analysis.band_levels_db[band - 3] < -60.0 && analysis.band_levels_db[band + 3] < -60.0);
    assert!(analysis.width_db < -140.0, "identical channels have no side");

    // White noise: +3 dB per octave, and warmth is the bandwidth ratio.
    let mut noise = Noise(7);
    let left: Vec<f32> = (0..RATE_HZ as usize * 20).map(|_| noise.next() * 0.5).collect();
    let right: Vec<f32> = (0..RATE_HZ as usize * 20).map(|_| noise.next() * 0.5).collect();
    let analysis = analyse(&[left.clone(), right], RATE_HZ);
    assert!((analysis.tilt_db_per_octave - 3.01).abs() < 0.1, "white noise tilt {:.3}", analysis.tilt_db_per_octave);
    let want_warmth = 10.0 * (450.0f64 / 6000.0).log10();
    assert!(
        (analysis.warmth_db - want_warmth).abs() < 0.1,
        "white noise warmth {:.3} vs {want_warmth:.3}",
        analysis.warmth_db
    );
    assert!(analysis.width_db.abs() < 0.1, "uncorrelated channels: side = mid, {:.3}", analysis.width_db);
    // The bands span 17.8 Hz to 22.4 kHz of the 24 kHz of white noise.
    let total: f64 = analysis.band_levels_db.iter().map(|db| 10f64.powf(db / 10.0)).sum();
    let covered = (20_000.0 * 2f64.powf(1.0 / 6.0) - 20.0 * 2f64.powf(-1.0 / 6.0)) / 24_000.0;
    let want_db = 10.0 * (0.25 / 3.0 * covered).log10();
    assert!(
        (10.0 * total.log10() - want_db).abs() < 0.1,
        "bands add up to the mean square: {:.3} vs {want_db:.3}",
        10.0 * total.log10()
    );

    // Left only: mid and side are equal.
    let analysis = analyse(&[left, vec![0.0; RATE_HZ as usize * 20]], RATE_HZ);
    assert!(analysis.width_db.abs() < 1e-6);
}

#[test]
fn analysis_survives_serialization_and_silence() {
    let analysis = analyse(&sine_segments(&[(-20.0, 4.0)]), 44_100);
    let json = serde_json::to_string(&analysis).unwrap();
    let back: Analysis = serde_json::from_str(&json).unwrap();
    assert_eq!(back, analysis);
    let silence = analyse(&[vec![0.0; 44_100], vec![0.0; 44_100]], 44_100);
    assert_eq!(silence.integrated_lufs, None);
    assert!(serde_json::to_string(&silence).is_ok(), "no infinities in JSON");
    let short = analyse(&[vec![0.1; 100], vec![0.1; 100]], 44_100);
    assert_eq!(short.frames, 100);
}

/// The analyzer on its own thread measures what it measures in place, to
/// the bit, over blocks of any size (some larger than its buffers).
#[test]
fn an_analyzer_on_its_thread_measures_the_same() {
    let mut noise = Noise(9);
    let blocks: Vec<AudioBlock> = [4096usize, 17, 4096, 9000, 1, 4000]
        .iter()
        .cycle()
        .take(60)
        .map(|&frames| {
            let left = (0..frames).map(|_| noise.next() * 0.5).collect();
            let right = (0..frames).map(|_| noise.next() * 0.25).collect();
            AudioBlock::from_planar(vec![left, right])
        })
        .collect();
    let mut here = Analyzer::new(48_000, 2).unwrap();
    let mut there = AnalyzerThread::spawn(Analyzer::new(48_000, 2).unwrap(), 4096).unwrap();
    for block in &blocks {
        here.add(block).unwrap();
        there.add(block).unwrap();
    }
    let (here, there) = (here.finish().unwrap(), there.finish().unwrap());
    assert!(here.integrated_lufs.is_some() && here.true_peak_dbtp > -20.0);
    assert_eq!(here, there);
}

/// The width, the spectrum and the peaks are the same to the bit whatever
/// the blocks the audio arrives in (blocks of odd sizes against one large
/// block); the loudness sums may differ in their last bit (the meter sums
/// a block's 100 ms segments in chunks from the block's start).
#[test]
fn the_analysis_does_not_depend_on_the_blocks() {
    let mut noise = Noise(3);
    let frames = 100_000;
    let left: Vec<f32> = (0..frames).map(|_| noise.next() * 0.5).collect();
    let right: Vec<f32> = (0..frames).map(|_| noise.next() * 0.3).collect();
    let mut whole = Analyzer::new(44_100, 2).unwrap();
    whole.add(&AudioBlock::from_planar(vec![left.clone(), right.clone()])).unwrap();
    let mut pieces = Analyzer::new(44_100, 2).unwrap();
    let mut at = 0;
    for size in [1usize, 3, 7, 4093, 17, 5000, 2].iter().cycle() {
        if at == frames {
            break;
        }
        let end = (at + size).min(frames);
        pieces.add(&AudioBlock::from_planar(vec![left[at..end].to_vec(), right[at..end].to_vec()])).unwrap();
        at = end;
    }
    let (whole, pieces) = (whole.finish().unwrap(), pieces.finish().unwrap());
    assert_eq!(whole.width_db.to_bits(), pieces.width_db.to_bits());
    assert_eq!(whole.band_levels_db, pieces.band_levels_db);
    assert_eq!(
        (whole.true_peak_dbtp, whole.true_peak_bs1770_dbtp),
        (pieces.true_peak_dbtp, pieces.true_peak_bs1770_dbtp)
    );
    assert!((whole.integrated_lufs.unwrap() - pieces.integrated_lufs.unwrap()).abs() < 1e-12);
}
