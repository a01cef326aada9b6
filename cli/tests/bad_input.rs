//! Bad input end to end, through the real binary: every refusal names its
//! place, a failed `lacquer master` says what became of each track and
//! leaves no report that reads as the album, complete.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lacquer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lacquer")).args(args).output().expect("run lacquer")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// A 32-bit float WAV of `seconds` of a quiet sine; `bad` replaces one
/// sample (right channel) at `bad_at_s`.
fn float_wav(path: &Path, channels: u16, seconds: f64, bad: Option<(f64, f32)>) {
    let rate = 44_100;
    let spec =
        hound::WavSpec { channels, sample_rate: rate, bits_per_sample: 32, sample_format: hound::SampleFormat::Float };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    let frames = (seconds * f64::from(rate)) as usize;
    let bad_frame = bad.map(|(at_s, _)| (at_s * f64::from(rate)) as usize);
    for n in 0..frames {
        let value = (0.2 * (n as f64 * 440.0 * std::f64::consts::TAU / f64::from(rate)).sin()) as f32;
        for channel in 0..channels {
            let value = match bad {
                Some((_, bad)) if Some(n) == bad_frame && channel + 1 == channels => bad,
                _ => value,
            };
            writer.write_sample(value).unwrap();
        }
    }
    writer.finalize().unwrap();
}

/// An album of two tracks in a fresh folder: `a` from a mix file, `b`
/// from one stem, `stem.wav`, written by `stem`.
fn album(stem: impl FnOnce(&Path)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    float_wav(&dir.path().join("a.wav"), 2, 3.0, None);
    stem(&dir.path().join("stem.wav"));
    let manifest = dir.path().join("album.yaml");
    std::fs::write(
        &manifest,
        "version: 1\nalbum: { title: Bad Input, artist: Tester }\ntracks:\n  - { id: a, title: A, mix_file: a.wav }\n  - { id: b, title: B, stems: [{ name: lead, file: stem.wav }] }\n",
    )
    .unwrap();
    (dir, manifest)
}

/// Every file under `dir`, relative.
fn files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path).into_iter().map(|f| format!("{}/{f}", entry.file_name().to_string_lossy())));
        } else {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

#[test]
fn a_stem_holding_nan_fails_its_track_by_name_and_time_and_nothing_of_it_is_kept() {
    let (dir, manifest) = album(|path| float_wav(path, 1, 3.0, Some((1.5, f32::NAN))));
    // A report of an earlier run of this album.
    let output_dir = dir.path().join("masters");
    std::fs::create_dir_all(&output_dir).unwrap();
    std::fs::write(output_dir.join("report.json"), "{}").unwrap();

    let output = lacquer(&["master", manifest.to_str().unwrap()]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(3), "{said}");
    let stem = dir.path().join("stem.wav").display().to_string();
    assert!(said.contains(&stem) && said.contains("at 1.500 s") && said.contains("not a number"), "{said}");
    assert!(said.contains("1 of 2 tracks failed"), "{said}");
    assert!(
        said.contains("a  ") && said.contains("not delivered: the album pass needs every track's master"),
        "{said}"
    );
    assert!(said.contains("b  ") && said.contains("NOT delivered: its mix failed"), "{said}");
    let written = files(&output_dir);
    assert!(!written.iter().any(|f| f.starts_with("report.")), "no report reads as complete: {written:?}");
    assert!(!written.contains(&"mix/b.wav".to_owned()), "{written:?}");
    // Track a's mix and master were made and recorded (a rerun reuses
    // them); nothing of track b was.
    assert!(written.contains(&"master/a.wav".to_owned()), "{written:?}");
    let records = written.iter().filter(|f| f.starts_with(".lacquer/tasks/")).count();
    assert_eq!(records, 2, "{written:?}");

    let output = lacquer(&["master", "--json", manifest.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["tracks"][0]["state"], "waiting");
    assert_eq!(json["tracks"][1]["state"], "failed");
}

#[test]
fn a_damaged_flac_stem_is_refused_not_shifted() {
    let (dir, manifest) = album(|_| {});
    let flac = dir.path().join("stem.flac");
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/tests/data/reference-24bit.flac");
    let mut bytes = std::fs::read(reference).unwrap();
    let at = bytes.len() * 7 / 10;
    for b in &mut bytes[at..at + 40] {
        *b ^= 0x5a;
    }
    std::fs::write(&flac, bytes).unwrap();
    let text_before = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text_before.replace("stem.wav", "stem.flac")).unwrap();
    let output = lacquer(&["master", manifest.to_str().unwrap()]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(3), "{said}");
    assert!(said.contains("stem.flac") && said.contains("of audio are missing at 0.27"), "{said}");
}

#[test]
fn stems_that_are_not_files_or_lead_outside_are_named_for_what_they_are() {
    let outside = tempfile::tempdir().unwrap();
    float_wav(&outside.path().join("elsewhere.wav"), 1, 1.0, None);
    let (dir, manifest) = album(|path| std::fs::create_dir(path).unwrap());
    let output = lacquer(&["validate", manifest.to_str().unwrap()]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("tracks[1].stems[0].file") && said.contains("stem.wav is a folder, not a file"), "{said}");

    std::fs::remove_dir(dir.path().join("stem.wav")).unwrap();
    assert!(Command::new("mkfifo").arg(dir.path().join("stem.wav")).status().unwrap().success());
    let said = text(&lacquer(&["validate", manifest.to_str().unwrap()]));
    assert!(said.contains("stem.wav is a named pipe, not a file"), "{said}");

    std::fs::remove_file(dir.path().join("stem.wav")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("elsewhere.wav"), dir.path().join("stem.wav")).unwrap();
    let output = lacquer(&["validate", manifest.to_str().unwrap()]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("leads outside its folder") && said.contains("elsewhere.wav"), "{said}");
}

#[test]
fn manifests_that_are_not_text_or_too_large_are_problems_with_a_place() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.yaml");
    std::fs::write(&garbage, [b"version: 1\n".as_slice(), &[0xff, 0x00, 0x13]].concat()).unwrap();
    let output = lacquer(&["validate", garbage.to_str().unwrap()]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("line 2, column 1") && said.contains("not UTF-8"), "{said}");

    let big = dir.path().join("big.yaml");
    std::fs::write(&big, "#".repeat(2 << 20)).unwrap();
    let output = lacquer(&["validate", big.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).contains("at most 1048576"), "{}", text(&output));

    let folder = lacquer(&["validate", dir.path().to_str().unwrap()]);
    assert_eq!(folder.status.code(), Some(2));
    assert!(text(&folder).contains("it is a folder"), "{}", text(&folder));
}

#[test]
fn a_silent_track_is_delivered_as_it_is_and_kept_out_of_the_album_match() {
    let (dir, manifest) = album(|path| {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 44_100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(path, spec).unwrap();
        for _ in 0..3 * 44_100 {
            writer.write_sample(0i16).unwrap();
        }
        writer.finalize().unwrap();
    });
    let output = lacquer(&["master", "--json", manifest.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("masters/report.json")).unwrap()).unwrap();
    let silent = &report["tracks"][1];
    let warnings = silent["warnings"].to_string();
    assert!(warnings.contains("silent") && warnings.contains("kept out"), "{warnings}");
    assert_eq!(silent["correction"]["gain_db"], 0.0);
    assert!(silent["correction"]["curve_db"].as_array().unwrap().iter().all(|c| c.as_f64() == Some(0.0)));
    // The album's spreads are those of the one audible track.
    assert_eq!(report["album"]["warmth_spread_after_db"], 0.0, "{}", report["album"]);
    // The audible track is matched to the target, the silent one stays silent.
    let delivered = |t: &serde_json::Value| t["finalize"]["delivered"][0]["analysis"].clone();
    let lufs = delivered(&report["tracks"][0])["integrated_lufs"].as_f64().unwrap();
    assert!((lufs + 14.0).abs() < 0.1, "{lufs}");
    assert!(delivered(silent)["integrated_lufs"].is_null());
}
