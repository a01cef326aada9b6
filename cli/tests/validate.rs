//! `lacquer validate` end to end: the real binary, real files, and a real
//! S3-compatible server.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lacquer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lacquer")).args(args).output().expect("run lacquer")
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/album-small")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn the_example_album_is_valid() {
    let manifest = fixture().join("album.yaml");
    let output = lacquer(&["validate", manifest.to_str().unwrap()]);
    let shown = text(&output);
    assert!(output.status.success(), "{shown}");
    for expected in [
        "3 tracks, 13 stems",
        "01-chorale-66",
        "02-maple-leaf",
        "03-tears-ballad",
        "clarinet",
        "flac mono 44100 Hz 24-bit  0:20.0",
    ] {
        assert!(shown.contains(expected), "missing {expected:?} in:\n{shown}");
    }

    let output = lacquer(&["validate", "--json", manifest.to_str().unwrap()]);
    assert!(output.status.success());
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["valid"], true);
    let tracks = json["album"]["tracks"].as_array().unwrap();
    assert_eq!(tracks.len(), 3);
    assert_eq!(tracks[0]["stems"].as_array().unwrap().len(), 5);
    assert_eq!(tracks[0]["stems"][4]["channels"], 2);
    assert_eq!(tracks[0]["stems"][4]["codec"], "flac");
    assert_eq!(tracks[2]["loudness_offset_lu"], -2.0);
    assert!((tracks[1]["duration_s"].as_f64().unwrap() - 20.0).abs() < 0.01);
    assert_eq!(json["album"]["deliverables"][0]["sample_rate_hz"], 48000);
}

#[test]
fn the_example_release_is_valid() {
    // The example album as a label releases it: codec-checked streaming
    // master, CD WAV, and the DDP disc.
    let manifest = fixture().join("release.yaml");
    let output = lacquer(&["validate", "--json", manifest.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["valid"], true);
    let names: Vec<&str> =
        json["album"]["deliverables"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["streaming", "cd", "disc"]);
    let text = std::fs::read_to_string(&manifest).unwrap();
    let release = lacquer_pipelines::manifest::parse(&text).unwrap().0;
    assert_eq!(release.matching.codec_check.len(), 2);
    let album =
        lacquer_pipelines::manifest::parse(&std::fs::read_to_string(fixture().join("album.yaml")).unwrap()).unwrap().0;
    assert_eq!(
        release.tracks,
        album
            .tracks
            .iter()
            .cloned()
            .map(|mut t| {
                if t.id == "02-maple-leaf" {
                    t.gap_s = Some(1.5);
                }
                t
            })
            .collect::<Vec<_>>(),
        "the release masters the same album"
    );
}

/// The six problems of the foundation issue, in one manifest, in one run.
#[test]
fn every_problem_is_reported_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("album.yaml");
    let source = fixture();
    std::fs::write(
        &manifest,
        format!(
            r#"version: 1
album: {{ title: Bad, artist: Someone }}
source: {source}
tracks:
  - id: one
    title: One
    stems:
      - name: vox
        file: 01-chorale-66/vox.flac
        gian_db: 3
        sends: {{ plate: -10 }}
      - {{ name: bass, file: 01-chorale-66/bass.flac, gain_db: 40 }}
  - id: one
    title: Two
    stems:
      - {{ name: piano, file: 02-maple-leaf/missing.flac }}
      - {{ name: drums, file: ../../etc/drums.flac }}
"#,
            source = source.display()
        ),
    )
    .unwrap();
    let output = lacquer(&["validate", manifest.to_str().unwrap()]);
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(shown.contains("tracks[0].stems[0].gian_db (line 10, column 9): unknown field `gian_db`"), "{shown}");
    for path in [
        "tracks[0].stems[1].gain_db",
        "tracks[1].id",
        "tracks[1].stems[0].file",
        "tracks[0].stems[0].sends.plate",
        "tracks[1].stems[1].file",
    ] {
        assert!(shown.contains(path), "{path} is not named in:\n{shown}");
    }
    assert!(shown.contains("-60..+24"), "a range error gives the range: {shown}");
    assert!(
        shown.contains(&format!("{}/02-maple-leaf/missing.flac", source.canonicalize().unwrap().display()))
            || shown.contains("02-maple-leaf/missing.flac: the file does not exist"),
        "{shown}"
    );
    assert!(shown.contains("escapes"), "{shown}");

    let output = lacquer(&["validate", "--json", manifest.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["valid"], false);
    let problems = json["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 6, "{problems:#?}");
    assert!(problems.iter().all(|p| p["line"].is_u64() && p["path"].is_string() && p["message"].is_string()));
    let lines: Vec<u64> = problems.iter().map(|p| p["line"].as_u64().unwrap()).collect();
    assert!(lines.is_sorted(), "problems come in document order: {lines:?}");
}

fn write_wav(path: &Path, channels: u16, rate_hz: u32, frames: usize) {
    let spec =
        hound::WavSpec { channels, sample_rate: rate_hz, bits_per_sample: 24, sample_format: hound::SampleFormat::Int };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for frame in 0..frames {
        let value = ((frame as f64 * 440.0 * std::f64::consts::TAU / f64::from(rate_hz)).sin() * 4_000_000.0) as i32;
        for _ in 0..channels {
            writer.write_sample(value).unwrap();
        }
    }
    writer.finalize().unwrap();
}

#[test]
fn unreadable_files_are_named_with_their_locations() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("empty.wav"), b"").unwrap();
    std::fs::write(root.join("notes.wav"), "these are session notes, not audio\n".repeat(50)).unwrap();
    write_wav(&root.join("good.wav"), 1, 48_000, 48_000 * 3);
    write_wav(&root.join("cut.wav"), 2, 44_100, 44_100 * 3);
    let full = std::fs::read(root.join("cut.wav")).unwrap();
    std::fs::write(root.join("cut.wav"), &full[..full.len() / 2]).unwrap();
    let flac = std::fs::read(fixture().join("01-chorale-66/bass.flac")).unwrap();
    std::fs::write(root.join("cut.flac"), &flac[..flac.len() / 3]).unwrap();
    write_wav(&root.join("mono-mix.wav"), 1, 44_100, 44_100);
    write_wav(&root.join("surround.wav"), 6, 44_100, 44_100);
    std::fs::write(
        root.join("album.yaml"),
        r#"version: 1
album: { title: Bad Files, artist: Someone }
tracks:
  - id: one
    title: One
    stems:
      - { name: a, file: empty.wav }
      - { name: b, file: notes.wav }
      - { name: c, file: good.wav }
      - { name: d, file: cut.wav }
      - { name: e, file: cut.flac }
      - { name: f, file: surround.wav }
  - id: two
    title: Two
    mix_file: mono-mix.wav
"#,
    )
    .unwrap();
    let output = lacquer(&["validate", root.join("album.yaml").to_str().unwrap()]);
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(1), "a clear failure, not a crash: {shown}");
    let location = |name: &str| root.join(name).display().to_string();
    let expectations = [
        ("tracks[0].stems[0].file", location("empty.wav"), "empty"),
        ("tracks[0].stems[1].file", location("notes.wav"), "not a readable audio file"),
        ("tracks[0].stems[3].file", location("cut.wav"), "cut short"),
        ("tracks[0].stems[4].file", location("cut.flac"), "cut short"),
        ("tracks[0].stems[5].file", location("surround.wav"), "6 channels"),
        ("tracks[1].mix_file", location("mono-mix.wav"), "stereo"),
    ];
    for (path, location, reason) in expectations {
        let line = shown.lines().find(|l| l.contains(path)).unwrap_or_else(|| panic!("{path} not reported:\n{shown}"));
        assert!(
            line.contains(&location) && line.contains(reason),
            "{path}: wanted {location} and {reason:?} in {line:?}"
        );
    }
    assert!(!shown.contains("stems[2]"), "the good file is fine: {shown}");
}

#[test]
fn a_manifest_that_cannot_be_read_is_a_clear_error() {
    let output = lacquer(&["validate", "/nonexistent/album.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).contains("cannot read the manifest /nonexistent/album.yaml"), "{}", text(&output));
}

#[test]
fn help_says_what_each_command_does() {
    let output = lacquer(&["--help"]);
    assert!(output.status.success());
    assert!(text(&output).contains("validate"));
    assert!(text(&output).contains("Exit status: 0 done") && text(&output).contains("3 the album was not finished"));
    let output = lacquer(&["validate", "--help"]);
    assert!(text(&output).contains("--json"), "{}", text(&output));
}

/// Stems in S3, credentials from the standard AWS chain (environment).
#[test]
fn stems_in_s3_are_probed_through_the_store() {
    use lacquer_storage::testing::{ACCESS_KEY_ID, S3Server, SECRET_ACCESS_KEY};
    use lacquer_storage::{S3Storage, Storage, WriteMode};

    let server = S3Server::start(&["label-stems"]).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = S3Storage::connect(server.config("label-stems", "corpus/")).await;
        for name in ["01-chorale-66/vox.flac", "01-chorale-66/drums.flac"] {
            let bytes = std::fs::read(fixture().join(name)).unwrap();
            store.write_bytes(name, bytes::Bytes::from(bytes), WriteMode::Overwrite).await.unwrap();
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("album.yaml");
    std::fs::write(
        &manifest,
        r#"version: 1
album: { title: Remote, artist: Someone }
source: s3://label-stems/corpus/
output: s3://label-masters/corpus/
tracks:
  - id: one
    title: One
    stems:
      - { name: vox, file: 01-chorale-66/vox.flac }
      - { name: drums, file: 01-chorale-66/drums.flac }
      - { name: gone, file: 01-chorale-66/gone.flac }
"#,
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_lacquer"))
        .args(["validate", "--json", manifest.to_str().unwrap()])
        .args(["--s3-endpoint", &server.endpoint_url(), "--s3-path-style", "--s3-region", "us-east-1"])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let problems = json["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "only the missing stem: {problems:#?}");
    assert_eq!(problems[0]["path"], "tracks[0].stems[2].file");
    let message = problems[0]["message"].as_str().unwrap();
    assert!(message.contains("s3://label-stems/corpus/01-chorale-66/gone.flac"), "{message}");
}

#[test]
fn analyze_measures_files_and_names_failures() {
    let drums = fixture().join("01-chorale-66/drums.flac");
    let vox = fixture().join("01-chorale-66/vox.flac");
    let output = lacquer(&["analyze", "--json", drums.to_str().unwrap(), vox.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let files = json["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    let lufs = files[0]["integrated_lufs"].as_f64().unwrap();
    assert!((-40.0..-5.0).contains(&lufs), "{lufs}");
    assert_eq!(files[0]["channels"], 2);
    assert_eq!(files[0]["band_levels_db"].as_array().unwrap().len(), 31);
    assert!(files[0]["true_peak_dbtp"].as_f64().unwrap() >= files[0]["sample_peak_dbfs"].as_f64().unwrap());
    assert_eq!(files[1]["channels"], 1);

    let output = lacquer(&["analyze", drums.to_str().unwrap(), "/nonexistent/take.wav"]);
    assert_eq!(output.status.code(), Some(1));
    let shown = text(&output);
    assert!(shown.contains("drums.flac") && shown.contains("LUFS"), "{shown}");
    assert!(shown.contains("/nonexistent/take.wav: not found"), "{shown}");
}
