//! The example album with `matching.codec_check` on (AAC-LC 256 kb/s,
//! Opus 160 kb/s): every streaming deliverable, decoded from every codec,
//! reads at or below the codec ceiling by both true-peak readings, with no
//! clipped sample; the lowered ceiling holds on the files themselves; the
//! loudness stays on target wherever the limiter budget allows; the CD
//! (not streaming) is bit-identical to a run without the check; and
//! ffmpeg's own AAC decoder, given the AAC stream of a delivered file,
//! reads it under the ceiling too.

use std::path::{Path, PathBuf};
use std::process::Command;

use lacquer_pipelines::audio::AudioBlock;
use lacquer_pipelines::codec::RoundTrip;
use lacquer_pipelines::dsp::units::gain_to_db;
use lacquer_pipelines::manifest::{Codec, CodecSpec};
use lacquer_pipelines::meter::Meter;
use serde_json::Value;

const CODEC_CEILING_DBTP: f64 = -1.0;
const TARGET_LUFS: [f64; 3] = [-14.0, -14.0, -16.0];

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/album-small")
}

/// The example album, its CD marked not for streaming, with the codec
/// check on or off.
fn manifest(dir: &Path, codec_check: bool) -> PathBuf {
    let mut text = std::fs::read_to_string(fixture().join("album.yaml")).unwrap();
    text = text.replace("dither: tpdf }", "dither: tpdf, streaming: false }");
    assert!(text.contains("streaming: false"), "the example album's CD deliverable changed");
    if codec_check {
        text = text.replace(
            "  max_limiter_gain_reduction_db: 4.0\n",
            "  max_limiter_gain_reduction_db: 4.0\n  codec_check:\n    - { codec: aac, bitrate_kbps: 256 }\n    - { codec: opus, bitrate_kbps: 160 }\n  codec_ceiling_dbtp: -1.0\n",
        );
    }
    let text = text.replace("source: .", &format!("source: {}", fixture().display()));
    let path = dir.join(format!("album-{codec_check}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn master(manifest: &Path, output: &Path) -> Value {
    let result = Command::new(env!("CARGO_BIN_EXE_lacquer"))
        .args(["master", "--quiet", manifest.to_str().unwrap(), "--output", output.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    serde_json::from_slice(&std::fs::read(output.join("report.json")).unwrap()).unwrap()
}

fn f(value: &Value) -> f64 {
    value.as_f64().unwrap_or_else(|| panic!("not a number: {value}"))
}

/// A 24-bit WAV's samples, planar.
fn planar(path: &Path) -> (u32, Vec<Vec<f32>>) {
    let mut reader = hound::WavReader::open(path).unwrap();
    let spec = reader.spec();
    let scale = 1.0 / (1u32 << (spec.bits_per_sample - 1)) as f32;
    let samples: Vec<f32> = reader.samples::<i32>().map(|s| s.unwrap() as f32 * scale).collect();
    let (left, right) = samples.chunks_exact(2).map(|p| (p[0], p[1])).unzip();
    (spec.sample_rate, vec![left, right])
}

/// ffmpeg's AAC decoder's reading (accurate, BS.1770; dBTP) of the AAC
/// stream our round trip makes of `path`.
fn ffmpeg_aac_reading(path: &Path, dir: &Path) -> (f64, f64) {
    let (rate_hz, channels) = planar(path);
    let mut trip =
        RoundTrip::new(CodecSpec { codec: Codec::Aac, bitrate_kbps: Some(256) }, rate_hz).unwrap().keeping_stream();
    let frames = channels[0].len();
    for start in (0..frames).step_by(4096) {
        let end = (start + 4096).min(frames);
        trip.push(&AudioBlock::from_planar(channels.iter().map(|c| c[start..end].to_vec()).collect())).unwrap();
    }
    let (_, stream) = trip.finish_with_stream().unwrap();
    let adts = dir.join("stream.aac");
    std::fs::write(&adts, stream.unwrap()).unwrap();
    let output = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&adts)
        .args(["-f", "f32le", "-acodec", "pcm_f32le", "-"])
        .output()
        .unwrap_or_else(|e| panic!("ffmpeg did not run ({e}): run scripts/setup"));
    assert!(output.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&output.stderr));
    let decoded: Vec<f32> =
        output.stdout.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let (left, right): (Vec<f32>, Vec<f32>) = decoded.chunks_exact(2).map(|p| (p[0], p[1])).unzip();
    let mut meter = Meter::new(rate_hz, 2);
    meter.add(&AudioBlock::from_planar(vec![left, right]));
    let reading = meter.finish();
    (gain_to_db(reading.true_peak), gain_to_db(reading.true_peak_bs1770))
}

#[test]
fn streaming_masters_hold_the_codec_ceiling_once_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let checked = master(&manifest(dir.path(), true), &dir.path().join("checked"));
    let plain = master(&manifest(dir.path(), false), &dir.path().join("plain"));

    let mut lowered_any = false;
    for (i, track) in checked["tracks"].as_array().unwrap().iter().enumerate() {
        let id = track["id"].as_str().unwrap();
        let finalize = &track["finalize"];
        let check = &finalize["codec_check"];
        let rows = check["rows"].as_array().unwrap();
        // hires and lossless are for streaming, each through both codecs.
        assert_eq!(rows.len(), 4, "{id}: {check}");
        let lowered_db = f(&check["lowered_db"]);
        for row in rows {
            let after = &row["after"];
            for reading in ["true_peak_dbtp", "true_peak_bs1770_dbtp"] {
                assert!(
                    f(&after[reading]) <= CODEC_CEILING_DBTP,
                    "{id}: {} through {} reads {} {reading}, over the codec ceiling",
                    row["deliverable"],
                    row["codec"],
                    after[reading]
                );
            }
            assert_eq!(after["clipped_samples"], 0, "{id}: {row}");
            let before = f(&row["before"]["true_peak_dbtp"]).max(f(&row["before"]["true_peak_bs1770_dbtp"]));
            if before > CODEC_CEILING_DBTP {
                assert!(lowered_db > 0.0, "{id}: read {before} before, yet the ceiling was not lowered");
            }
        }
        lowered_any |= lowered_db > 0.0;
        let streaming_ceiling_dbtp = f(&check["streaming_ceiling_dbtp"]);
        assert!((streaming_ceiling_dbtp - (-1.0 - lowered_db)).abs() < 1e-9, "{id}: {check}");
        let held_back_db = f(&check["held_back_db"]);
        let warnings = track["warnings"].as_array().unwrap();
        if held_back_db > 0.05 {
            assert!(
                warnings.iter().any(|w| w.as_str().unwrap().contains("streaming deliverables were delivered")),
                "{id}: held back {held_back_db} dB without a warning"
            );
        }
        for delivered in finalize["delivered"].as_array().unwrap() {
            let name = delivered["name"].as_str().unwrap();
            let analysis = &delivered["analysis"];
            let lufs = f(&analysis["integrated_lufs"]);
            let peak = f(&analysis["true_peak_dbtp"]).max(f(&analysis["true_peak_bs1770_dbtp"]));
            if name == "cd" {
                assert!(delivered.get("codecs").is_none(), "{id}: the CD is not for streaming");
                assert!(peak <= -1.0, "{id}: cd at {peak} dBTP");
            } else {
                assert!(peak <= streaming_ceiling_dbtp, "{id}: {name} at {peak} dBTP, over {streaming_ceiling_dbtp}");
                assert!(
                    (lufs - (TARGET_LUFS[i] - held_back_db)).abs() <= 0.05,
                    "{id}: {name} at {lufs} LUFS; target {} held back {held_back_db}",
                    TARGET_LUFS[i]
                );
            }
        }
    }
    assert!(lowered_any, "the example album should need its streaming ceiling lowered somewhere (Opus)");

    // The CD is not for streaming: the same bytes as without the check.
    let hashes = |report: &Value, folder: &str| -> Vec<String> {
        report["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["path"].as_str().unwrap().starts_with(folder))
            .map(|o| o["blake3"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(hashes(&checked, "cd/"), hashes(&plain, "cd/"));
    assert_ne!(hashes(&checked, "hires/"), hashes(&plain, "hires/"));
    assert!(plain["tracks"][0]["finalize"].get("codec_check").is_none());

    // A second opinion on the decoding: ffmpeg's AAC decoder.
    for name in ["01-01-chorale-66", "02-02-maple-leaf", "03-03-tears-ballad"] {
        let (accurate, bs1770) = ffmpeg_aac_reading(&dir.path().join(format!("checked/hires/{name}.wav")), dir.path());
        assert!(
            accurate <= CODEC_CEILING_DBTP + 0.02 && bs1770 <= CODEC_CEILING_DBTP + 0.02,
            "{name}: ffmpeg decodes its AAC at {accurate:.3} / {bs1770:.3} dBTP"
        );
    }

    let html = std::fs::read_to_string(dir.path().join("checked/report.html")).unwrap();
    assert!(html.contains("Through the stores' codecs"));
    assert_eq!(html.matches("AAC-LC 256 kb/s").count(), 6, "one row per track and streaming deliverable");
    assert_eq!(html.matches("Opus 160 kb/s").count(), 6);
}
