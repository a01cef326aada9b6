//! The codec check's round trips, held to numbers: a clean tone comes
//! back at its level through each codec; a hot, bright signal comes back
//! over full scale and the check says so; and the decoded peak of our AAC
//! round trip is what ffmpeg's own AAC decoder reads from the same stream.

use std::process::Command;

use lacquer_pipelines::audio::AudioBlock;
use lacquer_pipelines::codec::{CodecReading, RoundTrip};
use lacquer_pipelines::dsp::units::gain_to_db;
use lacquer_pipelines::manifest::{Codec, CodecSpec};
use lacquer_pipelines::meter::Meter;

const AAC: CodecSpec = CodecSpec { codec: Codec::Aac, bitrate_kbps: Some(256) };
const OPUS: CodecSpec = CodecSpec { codec: Codec::Opus, bitrate_kbps: Some(160) };

/// `seconds` of stereo audio at `rate_hz`, sample `i` of each channel from `f`.
fn signal(rate_hz: u32, seconds: f64, f: impl Fn(f64) -> f32) -> Vec<f32> {
    (0..(seconds * f64::from(rate_hz)) as usize).map(|i| f(i as f64 / f64::from(rate_hz))).collect()
}

/// The round trip of `samples` (both channels) in blocks of 1000 frames.
fn round_trip(round_trip: RoundTrip, samples: &[f32]) -> (CodecReading, Option<Vec<u8>>) {
    let mut trip = round_trip;
    for chunk in samples.chunks(1000) {
        let block = AudioBlock::from_planar(vec![chunk.to_vec(), chunk.to_vec()]);
        trip.push(&block).unwrap();
    }
    trip.finish_with_stream().unwrap()
}

fn sine(freq_hz: f64, level_db: f64) -> impl Fn(f64) -> f32 {
    let amplitude = 10f64.powf(level_db / 20.0);
    move |t| (amplitude * (std::f64::consts::TAU * freq_hz * t).sin()) as f32
}

/// A naive square wave (every sample ±level): full of energy up to
/// Nyquist, which a codec's band limit turns into overshoot.
fn square(freq_hz: f64, level_db: f64) -> impl Fn(f64) -> f32 {
    let amplitude = 10f64.powf(level_db / 20.0) as f32;
    move |t| if (t * freq_hz).fract() < 0.5 { amplitude } else { -amplitude }
}

#[test]
fn a_clean_tone_comes_back_at_its_level_through_each_codec() {
    for (spec, rate_hz) in
        [(AAC, 44_100), (AAC, 48_000), (AAC, 96_000), (AAC, 192_000), (OPUS, 44_100), (OPUS, 48_000), (OPUS, 96_000)]
    {
        // Faded in and out over 50 ms: an abrupt start or stop is a
        // transient the codec smears into a louder pre-echo.
        let tone = sine(997.0, -6.0);
        let samples = signal(rate_hz, 3.0, |t| tone(t) * (t / 0.05).min((3.0 - t) / 0.05).min(1.0) as f32);
        let (reading, _) = round_trip(RoundTrip::new(spec, rate_hz).unwrap(), &samples);
        for (name, db) in [("accurate", reading.true_peak_dbtp), ("BS.1770", reading.true_peak_bs1770_dbtp)] {
            assert!(
                (db - -6.0).abs() < 0.25,
                "{spec:?} at {rate_hz} Hz: a -6 dBFS tone decoded at {db:.3} dBTP ({name})"
            );
        }
        assert_eq!(reading.clipped_samples, 0, "{spec:?} at {rate_hz} Hz");
    }
}

#[test]
fn a_hot_bright_signal_decodes_over_full_scale_and_is_counted() {
    // Every sample at -0.5 dBFS: band-limited by the codec, the square's
    // edges ring well past full scale.
    for (spec, rate_hz) in [(AAC, 44_100), (OPUS, 44_100)] {
        let samples = signal(rate_hz, 2.0, square(441.0, -0.5));
        let (reading, _) = round_trip(RoundTrip::new(spec, rate_hz).unwrap(), &samples);
        assert!(reading.true_peak_dbtp > 0.3 && reading.true_peak_bs1770_dbtp > 0.3, "{spec:?}: decoded {reading:?}");
        assert!(reading.clipped_samples > 1000, "{spec:?}: decoded {reading:?}");
    }
}

#[test]
fn our_aac_decoding_reads_as_ffmpegs_does() {
    // A dense, bright signal near the ceiling: a chord of harmonics.
    let rate_hz = 44_100;
    let samples = signal(rate_hz, 4.0, |t| {
        let mut v = 0.0;
        for k in [1.0, 3.0, 5.0, 7.0, 11.0, 13.0, 17.0] {
            v += (std::f64::consts::TAU * 220.0 * k * t + k).sin() / k;
        }
        (0.55 * v) as f32
    });
    let (reading, stream) = round_trip(RoundTrip::new(AAC, rate_hz).unwrap().keeping_stream(), &samples);
    let dir = tempfile::tempdir().unwrap();
    let adts = dir.path().join("check.aac");
    std::fs::write(&adts, stream.unwrap()).unwrap();
    let output = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&adts)
        .args(["-f", "f32le", "-acodec", "pcm_f32le", "-"])
        .output()
        .unwrap_or_else(|e| panic!("ffmpeg, the second opinion, did not run ({e}): run scripts/setup"));
    assert!(output.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&output.stderr));
    let decoded: Vec<f32> =
        output.stdout.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let (left, right): (Vec<f32>, Vec<f32>) = decoded.chunks_exact(2).map(|p| (p[0], p[1])).unzip();
    assert!(left.len() as f64 > 3.9 * f64::from(rate_hz), "ffmpeg decoded {} frames", left.len());
    let mut meter = Meter::new(rate_hz, 2);
    meter.add(&AudioBlock::from_planar(vec![left, right]));
    let theirs = meter.finish();
    for (name, ours, theirs) in [
        ("accurate", reading.true_peak_dbtp, gain_to_db(theirs.true_peak)),
        ("BS.1770", reading.true_peak_bs1770_dbtp, gain_to_db(theirs.true_peak_bs1770)),
    ] {
        assert!(
            (ours - theirs).abs() < 0.05,
            "{name}: our AAC round trip reads {ours:.3} dBTP, ffmpeg's decoding of the same stream {theirs:.3}"
        );
    }
}
