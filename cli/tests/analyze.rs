//! `lacquer analyze` against EBU Tech 3341 (cases 1–5, integrated loudness;
//! 15–19, true peak) and Tech 3342 (cases 1–4, loudness range): the test
//! signals are written as 24-bit stereo WAV files, as the EBU's are (the
//! true-peak sines switched on and off abruptly), and read back through
//! the command a user runs.

use std::f64::consts::PI;
use std::path::Path;
use std::process::Command;

const RATE_HZ: u32 = 48_000;

/// A test case: its name, (dBFS, seconds) segments, the expected figure.
type Case = (&'static str, Vec<(f64, f64)>, f64);

fn write_wav(path: &Path, samples: &[f64]) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE_HZ,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for s in samples {
        let value = (s * 8_388_608.0).round().clamp(-8_388_608.0, 8_388_607.0) as i32;
        writer.write_sample(value).unwrap();
        writer.write_sample(value).unwrap();
    }
    writer.finalize().unwrap();
}

/// A 1 kHz sine in segments of (dBFS, seconds).
fn sine_segments(segments: &[(f64, f64)]) -> Vec<f64> {
    let mut samples = Vec::new();
    for &(level_db, seconds) in segments {
        let amplitude = 10f64.powf(level_db / 20.0);
        for _ in 0..(seconds * f64::from(RATE_HZ)).round() as u64 {
            let n = samples.len() as f64;
            samples.push(amplitude * (2.0 * PI * 1000.0 * n / f64::from(RATE_HZ)).sin());
        }
    }
    samples
}

fn analyze(files: &[std::path::PathBuf]) -> Vec<serde_json::Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_lacquer"))
        .arg("analyze")
        .arg("--json")
        .args(files)
        .output()
        .expect("lacquer runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    json["files"].as_array().unwrap().clone()
}

#[test]
fn lacquer_analyze_passes_the_ebu_cases() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut checks: Vec<(&str, &str, f64, f64, f64)> = Vec::new(); // name, field, expected, -tol, +tol

    let loudness: [(&str, Vec<(f64, f64)>); 5] = [
        ("3341-1", vec![(-23.0, 20.0)]),
        ("3341-2", vec![(-33.0, 20.0)]),
        ("3341-3", vec![(-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0)]),
        ("3341-4", vec![(-72.0, 10.0), (-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0), (-72.0, 10.0)]),
        ("3341-5", vec![(-26.0, 20.0), (-20.0, 20.1), (-26.0, 20.0)]),
    ];
    // Stereo at these levels: each channel's sine, summed over two channels.
    for ((name, segments), want) in loudness.iter().zip([-23.0, -33.0, -23.0, -23.0, -23.0]) {
        let path = dir.path().join(format!("{name}.wav"));
        write_wav(&path, &sine_segments(segments));
        files.push(path);
        checks.push((name, "integrated_lufs", want, 0.1, 0.1));
    }
    let ranges: [Case; 4] = [
        ("3342-1", vec![(-20.0, 20.0), (-30.0, 20.0)], 10.0),
        ("3342-2", vec![(-20.0, 20.0), (-15.0, 20.0)], 5.0),
        ("3342-3", vec![(-40.0, 20.0), (-20.0, 20.0)], 20.0),
        ("3342-4", vec![(-50.0, 20.0), (-35.0, 20.0), (-20.0, 20.0), (-35.0, 20.0), (-50.0, 20.0)], 15.0),
    ];
    for (name, segments, want) in &ranges {
        let path = dir.path().join(format!("{name}.wav"));
        write_wav(&path, &sine_segments(segments));
        files.push(path);
        checks.push((name, "loudness_range_lu", *want, 1.0, 1.0));
    }
    // (fraction of fs, phase, amplitude dBFS, expected dBTP), switched on
    // and off abruptly.
    let peaks = [
        ("3341-15", 0.25, 0.0, -6.0, -6.0),
        ("3341-16", 0.25, PI / 4.0, -6.0, -6.0),
        ("3341-17", 1.0 / 6.0, PI / 3.0, -6.0, -6.0),
        ("3341-18", 0.125, 3.0 * PI / 8.0, -6.0, -6.0),
        ("3341-19", 0.25, PI / 4.0, 3.0103, 3.0),
    ];
    for (name, fraction, phase, amplitude_db, want) in peaks {
        let amplitude = 10f64.powf(amplitude_db / 20.0);
        let samples: Vec<f64> =
            (0..RATE_HZ as usize * 2).map(|n| amplitude * (2.0 * PI * fraction * n as f64 + phase).sin()).collect();
        let path = dir.path().join(format!("{name}.wav"));
        // Case 19 peaks at +3 dBTP: beyond 24-bit full scale, so it is
        // written as 32-bit float, as the EBU's file is.
        if amplitude > 1.0 {
            let spec = hound::WavSpec {
                channels: 2,
                sample_rate: RATE_HZ,
                bits_per_sample: 32,
                sample_format: hound::SampleFormat::Float,
            };
            let mut writer = hound::WavWriter::create(&path, spec).unwrap();
            for s in &samples {
                writer.write_sample(*s as f32).unwrap();
                writer.write_sample(*s as f32).unwrap();
            }
            writer.finalize().unwrap();
        } else {
            write_wav(&path, &samples);
        }
        files.push(path);
        checks.push((name, "true_peak_dbtp", want, 0.4, 0.2));
    }

    let measured = analyze(&files);
    assert_eq!(measured.len(), checks.len());
    for (file, (name, field, want, below, above)) in measured.iter().zip(&checks) {
        let got = file[*field].as_f64().unwrap_or_else(|| panic!("{name}: no {field} in {file}"));
        assert!(
            got >= want - below && got <= want + above,
            "EBU Tech {name}: {field} {got:.2}, expected {want} (-{below}/+{above})"
        );
    }
}
