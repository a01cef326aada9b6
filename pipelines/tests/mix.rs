//! The mix stage against sums worked out here: stems land at their offsets
//! after the trim, with their gains, polarity and pan law, sends feed their
//! returns, and a return's tail carries the track past its last stem. The
//! stems render side by side on threads of their own; the sum must not
//! depend on that.

use std::collections::BTreeMap;
use std::path::Path;

use lacquer_pipelines::decode::AudioReader;
use lacquer_pipelines::dsp::AudioBlock;
use lacquer_pipelines::encode::Tags;
use lacquer_pipelines::manifest::{MixSettings, Return, Stem};
use lacquer_pipelines::stages::AudioInput;
use lacquer_pipelines::stages::mix::{MixSpec, mix_track};

const RATE_HZ: u32 = 48_000;

/// A 32-bit float WAV of `channels` (planar in, interleaved out).
fn write_wav(path: &Path, channels: &[Vec<f32>]) {
    let spec = hound::WavSpec {
        channels: channels.len() as u16,
        sample_rate: RATE_HZ,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for n in 0..channels[0].len() {
        for channel in channels {
            writer.write_sample(channel[n]).unwrap();
        }
    }
    writer.finalize().unwrap();
}

fn read_wav(path: &Path) -> Vec<Vec<f32>> {
    let file = std::fs::File::open(path).unwrap();
    let length = file.metadata().unwrap().len();
    let mut reader = AudioReader::open(file, length, Some("wav")).unwrap();
    let mut block = AudioBlock::new(2, 4096);
    let mut channels = vec![Vec::new(), Vec::new()];
    while reader.read(&mut block, 4096).unwrap() > 0 {
        for (all, channel) in channels.iter_mut().zip(block.channels()) {
            all.extend_from_slice(channel);
        }
    }
    channels
}

fn stem(value: serde_json::Value) -> Stem {
    serde_json::from_value(value).unwrap()
}

fn spec(stems: Vec<Stem>, returns: BTreeMap<String, Return>, trim_start_s: f64) -> MixSpec {
    MixSpec {
        output_key: "mix/test.wav".to_owned(),
        rate_hz: RATE_HZ,
        mix: MixSettings { headroom_dbfs: -6.0, pan_law_db: -3.0 },
        track_id: "test".to_owned(),
        stem_hashes: vec![String::new(); stems.len()],
        stems,
        returns,
        trim_start_s,
        tags: Tags::default(),
    }
}

/// A 10,000-frame mono ramp, a stereo burst and a muted stem at their
/// offsets after a 0.005 s trim (240 frames): the mix is their sum, frame
/// for frame, scaled to the headroom, and as long as the latest stem.
#[test]
fn stems_land_at_their_offsets_after_the_trim() {
    let dir = tempfile::tempdir().unwrap();
    let ramp: Vec<f32> = (0..10_000).map(|n| (n as f32 / 10_000.0) - 0.5).collect();
    let burst: Vec<Vec<f32>> =
        (0..2).map(|c| (0..5_000).map(|n| ((n * (c + 3)) as f32 * 0.01).sin() * 0.25).collect()).collect();
    write_wav(&dir.path().join("ramp.wav"), std::slice::from_ref(&ramp));
    write_wav(&dir.path().join("burst.wav"), &burst);
    write_wav(&dir.path().join("muted.wav"), &[vec![0.9; 20_000]]);
    let stems = vec![
        // Starts 480 frames in: 240 after the trim.
        stem(serde_json::json!({ "name": "ramp", "file": "ramp.wav", "gain_db": -6.0, "offset_s": 0.01 })),
        // Starts at 0: its first 240 frames are trimmed away.
        stem(serde_json::json!({ "name": "burst", "file": "burst.wav", "polarity_invert": true, "pan": 0.5 })),
        stem(serde_json::json!({ "name": "muted", "file": "muted.wav", "mute": true })),
    ];
    let inputs = ["ramp.wav", "burst.wav", "muted.wav"]
        .iter()
        .map(|name| Some(AudioInput::open_file(&dir.path().join(name)).unwrap()))
        .collect();
    let output = dir.path().join("mix.wav");
    let report = mix_track(&spec(stems, BTreeMap::new(), 0.005), inputs, &output).unwrap();

    let (ramp_gain, ramp_pan) = (10f64.powf(-6.0 / 20.0) as f32, std::f32::consts::FRAC_1_SQRT_2);
    // Balance of a stereo stem at +0.5: the left side down, the right at full level.
    let (burst_left, burst_right) = lacquer_pipelines::dsp::envelope::balance_gains(0.5);
    let frames = 240 + 10_000;
    let mut expected = vec![vec![0f32; frames]; 2];
    for (n, x) in ramp.iter().enumerate() {
        for channel in &mut expected {
            channel[240 + n] += ramp_gain * x * ramp_pan;
        }
    }
    for n in 240..5_000 {
        expected[0][n - 240] += -burst[0][n] * burst_left;
        expected[1][n - 240] += -burst[1][n] * burst_right;
    }
    let peak = expected.iter().flatten().fold(0f32, |m, s| m.max(s.abs()));
    let gain = 10f32.powf(-6.0 / 20.0) / peak;
    let mix = read_wav(&output);
    assert_eq!(report.frames, frames as u64);
    assert_eq!(mix[0].len(), frames);
    for (channel, (got, want)) in mix.iter().zip(&expected).enumerate() {
        for (n, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w * gain).abs() < 1e-6, "channel {channel}, frame {n}: {g} against {}", w * gain);
        }
    }
}

/// A stem sent to a delay (one repeat, no feedback) and to a return that
/// does nothing: the repeat lands `time_ms` after the stem, carries the
/// track past the stem's end until it has died away, and the two runs of
/// the same mix are the same to the bit.
#[test]
fn a_return_tail_carries_the_track_past_its_stems() {
    let dir = tempfile::tempdir().unwrap();
    // Two clicks, the last at frame 9,000 of 9,600: the delay is silent
    // in the block (8,192–12,287) where the stem ends and its echo is
    // still to come.
    let mut clicks = vec![0f32; 9_600];
    for n in [0, 9_000] {
        clicks[n] = 0.5;
    }
    write_wav(&dir.path().join("clicks.wav"), &[clicks.clone(), clicks]);
    let returns: BTreeMap<String, Return> = serde_json::from_value(serde_json::json!({
        "slap": { "delay": { "time_ms": 100.0, "feedback": 0.0 } },
        "silent": { "reverb": { "decay_s": 1.0 } },
    }))
    .unwrap();
    let stems = vec![stem(serde_json::json!({ "name": "clicks", "file": "clicks.wav", "sends": { "slap": 0.0 } }))];
    let run = |name: &str| {
        let inputs = vec![Some(AudioInput::open_file(&dir.path().join("clicks.wav")).unwrap())];
        let output = dir.path().join(name);
        let report = mix_track(&spec(stems.clone(), returns.clone(), 0.0), inputs, &output).unwrap();
        (report, read_wav(&output))
    };
    let (report, mix) = run("a.wav");
    // 100 ms = 4,800 frames after the last click: past the stem's end.
    let echo = 9_000 + 4_800;
    assert!(report.frames as usize > echo, "{} frames", report.frames);
    let peak_after = |from: usize| mix[0][from..].iter().fold(0f32, |m, s| m.max(s.abs()));
    assert!(peak_after(echo - 10) > 0.01 && mix[0][echo - 10..echo + 10].iter().any(|s| s.abs() > 0.01));
    assert!(peak_after(echo + 2_400) < 1e-4, "the tail has died away before the end");
    let (again, mix_again) = run("b.wav");
    assert_eq!(report, again);
    assert!(mix == mix_again, "the same sum, whatever the threads did");
}
