//! `lacquer master` on the example album, end to end.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/album-small")
}

fn master(manifest: &Path, output: &Path, extra: &[&str]) -> serde_json::Value {
    let result = Command::new(env!("CARGO_BIN_EXE_lacquer"))
        .args(["master", "--json", manifest.to_str().unwrap(), "--output", output.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    serde_json::from_slice(&result.stdout).unwrap()
}

fn report(output: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(output.join("report.json")).unwrap()).unwrap()
}

/// Integrated loudness and true peak (dBTP) of a file as ffmpeg's
/// `ebur128` filter reads them: a meter that shares no code with ours.
/// `scripts/setup` installs ffmpeg.
fn ffmpeg_readings(path: &Path) -> (f64, f64) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let filter = format!("ebur128=metadata=1:peak=true,ametadata=mode=print:file={}", log.path().display());
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-i"])
        .arg(path)
        .args(["-af", &filter, "-f", "null", "-"])
        .status()
        .unwrap_or_else(|e| panic!("ffmpeg, the independent loudness meter, did not run ({e}): run scripts/setup"));
    assert!(status.success(), "ffmpeg could not measure {}", path.display());
    let text = std::fs::read_to_string(log.path()).unwrap();
    let last = text.lines().rev().find_map(|l| l.strip_prefix("lavfi.r128.I=")).expect("ffmpeg printed a loudness");
    let peak = text
        .lines()
        .filter_map(|l| l.strip_prefix("lavfi.r128.true_peak="))
        .map(|p| p.trim().parse::<f64>().unwrap())
        .fold(0.0, f64::max);
    (last.trim().parse().unwrap(), 20.0 * peak.log10())
}

/// The realised album-pass correction of one file: its balance (band
/// level less integrated loudness) against the master's, per band where
/// the master is within 45 dB of its loudest band.
fn realised_correction(master: &serde_json::Value, file: &serde_json::Value) -> Vec<Option<f64>> {
    let balance = |a: &serde_json::Value| -> Vec<f64> {
        let lufs = f(&a["integrated_lufs"]);
        a["band_levels_db"].as_array().unwrap().iter().map(|l| f(l) - lufs).collect()
    };
    let (master, file) = (balance(master), balance(file));
    let loudest = master.iter().copied().fold(f64::MIN, f64::max);
    master.iter().zip(file).map(|(m, d)| (*m > loudest - 45.0).then_some(d - m)).collect()
}

fn f(value: &serde_json::Value) -> f64 {
    value.as_f64().unwrap_or_else(|| panic!("not a number: {value}"))
}

#[test]
fn the_example_album_is_mastered_matched_and_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("masters");
    let summary = master(&fixture().join("album.yaml"), &out, &[]);
    assert_eq!(summary["tasks"], 11, "3 mixes, 3 masters, the plan, 3 finalizes, the report");
    let report = report(&out);
    let ceiling = f(&report["true_peak_ceiling_dbtp"]);
    let mut delivered_levels = Vec::new();
    let mut distance_shrink = Vec::new();
    let mut redesigned = 0;
    for track in report["tracks"].as_array().unwrap() {
        let id = track["id"].as_str().unwrap();
        let target = f(&track["correction"]["target_lufs"]);
        let held_back = f(&track["finalize"]["held_back_db"]);
        let deliverables = track["finalize"]["delivered"].as_array().unwrap();
        assert_eq!(deliverables.len(), 3, "{id}: hires, cd, lossless");
        // The closed loop lands in one render: probes find the gain (and
        // any room the limiter needs) before anything is written.
        assert_eq!(track["finalize"]["passes"], 1, "{id}: {}", track["finalize"]["passes"]);
        // A round after a redesign starts from the gain the last one found:
        // its first render lands and is delivered, no probe before it.
        if !track["finalize"]["redesigned"].is_null() {
            redesigned += 1;
            assert_eq!(track["finalize"]["probes"], 1, "{id}: redesigned, {} probes", track["finalize"]["probes"]);
        }
        let cap = f(&track["correction"]["max_correction_db"]);
        let centres: Vec<f64> = report["band_centres_hz"].as_array().unwrap().iter().map(f).collect();
        let outputs = report["outputs"].as_array().unwrap();
        for d in deliverables {
            let name = d["name"].as_str().unwrap();
            let lufs = f(&d["analysis"]["integrated_lufs"]);
            // Measured as written (the file's samples), at every rate and depth.
            for reading in ["true_peak_dbtp", "true_peak_bs1770_dbtp"] {
                let peak = f(&d["analysis"][reading]);
                assert!(peak <= ceiling, "{id}/{name}: {reading} {peak:.3} over the {ceiling} ceiling");
            }
            assert!(
                (lufs - (target - held_back)).abs() <= 0.05,
                "{id}/{name}: {lufs:.3} LUFS vs {target} - {held_back:.3}"
            );
            if held_back > 0.05 {
                let warned = track["warnings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|w| w.as_str().unwrap().contains("under its loudness target"));
                assert!(warned, "{id}: held back {held_back:.2} dB without saying why");
            }
            // An independent meter agrees on every delivered file.
            let path = outputs
                .iter()
                .map(|o| o["path"].as_str().unwrap())
                .find(|p| p.starts_with(&format!("{name}/")) && p.contains(id))
                .unwrap_or_else(|| panic!("{id}: no {name} file among {outputs:?}"));
            let (their_lufs, their_peak) = ffmpeg_readings(&out.join(path));
            assert!((lufs - their_lufs).abs() <= 0.1, "{id}/{name}: {lufs:.3} LUFS, ffmpeg reads {their_lufs:.3}");
            assert!(their_peak <= ceiling, "{id}/{name}: ffmpeg reads {their_peak:.3} dBTP over {ceiling}");
            // The cap, on the audio: the delivered balance against the
            // master's, within ±cap (+0.25 dB for the final limiter's share).
            let realised = realised_correction(&track["master"], &d["analysis"]);
            for (hz, r) in centres.iter().zip(&realised) {
                if let Some(r) = r {
                    assert!(r.abs() <= cap + 0.25, "{id}/{name}: {r:+.2} dB at {hz} Hz, cap {cap}");
                }
            }
            // Broad: 3 dB/octave on the designed response (the plan's test);
            // on audio, averaged over an octave and read over 2/3 octave,
            // within 0.5 dB/octave of it (a third-octave band's reading
            // follows where its notes sit within it).
            let smoothed: Vec<Option<f64>> =
                realised.windows(3).map(|w| w.iter().copied().sum::<Option<f64>>().map(|sum| sum / 3.0)).collect();
            for (i, pair) in smoothed.windows(3).enumerate() {
                if let [Some(a), _, Some(b)] = pair {
                    let slope = (b - a).abs() / (centres[i + 3] / centres[i + 1]).log2();
                    assert!(slope <= 3.5, "{id}/{name}: {slope:.2} dB/octave at {} Hz", centres[i + 2]);
                }
            }
        }
        delivered_levels.push((id.to_owned(), f(&deliverables[0]["analysis"]["integrated_lufs"]), held_back));
        // Tone: each track moves toward the album's balance, by broad moves.
        let (before, after) = (f(&track["tonal_distance_before_db"]), f(&track["tonal_distance_after_db"]));
        assert!(after <= 0.85 * before, "{id}: tonal distance {before:.2} → {after:.2} dB");
        distance_shrink.push(1.0 - after / before);
        // Not squashed: the album pass keeps the loudness range within 1 LU, or says why.
        let lra_master = f(&track["master"]["loudness_range_lu"]);
        let lra_after = f(&deliverables[0]["analysis"]["loudness_range_lu"]);
        let explained =
            track["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("loudness range"));
        assert!((lra_after - lra_master).abs() <= 1.0 || explained, "{id}: LRA {lra_master:.1} → {lra_after:.1}");
        // The mix's peak sits at the headroom.
        let mix = track["mix"].clone();
        let peak = f(&mix["peak_before_dbfs"]) + f(&mix["headroom_gain_db"]);
        assert!((peak + 6.0).abs() <= 0.05, "{id}: mix peak {peak:.3} dBFS");
    }
    // The example's louder songs make the final limiter work hard enough
    // to need room: the check above is not empty.
    assert!(redesigned >= 1, "no track's correction was redesigned");
    let mean_shrink = distance_shrink.iter().sum::<f64>() / distance_shrink.len() as f64;
    assert!(mean_shrink >= 0.3, "tonal distance shrinks {:.0}% on average", 100.0 * mean_shrink);
    // The ballad (offset -2 LU) sits 2 LU under a track that reached its target.
    let (_, maple, maple_held) = delivered_levels[1].clone();
    let (_, ballad, ballad_held) = delivered_levels[2].clone();
    assert!(maple_held < 0.1 && ballad_held < 0.1);
    assert!((maple - ballad - 2.0).abs() <= 0.3, "ballad {ballad:.2} vs {maple:.2}");
    // The mix as written really peaks at the headroom.
    let mix_bytes = std::fs::read(out.join("mix/02-maple-leaf.wav")).unwrap();
    let mut reader = hound::WavReader::new(std::io::Cursor::new(mix_bytes)).unwrap();
    let peak = reader.samples::<f32>().map(Result::unwrap).fold(0f32, |m, s| m.max(s.abs()));
    assert!((20.0 * f64::from(peak).log10() + 6.0).abs() <= 0.05);
    // The warmth spread shrinks; the loudness spread, less what the
    // limiter budget held back, is under 0.1 LU.
    let album = &report["album"];
    let held: Vec<f64> = delivered_levels.iter().map(|(_, lufs, held)| lufs + held).collect();
    let offsets = [0.0, 0.0, -2.0];
    let matched: Vec<f64> = held.iter().zip(offsets).map(|(l, o)| l - o).collect();
    let spread = matched.iter().copied().fold(f64::MIN, f64::max) - matched.iter().copied().fold(f64::MAX, f64::min);
    assert!(spread < 0.1, "{matched:?}");
    assert!(f(&album["warmth_spread_after_db"]) < 0.6 * f(&album["warmth_spread_before_db"]), "{album}");
    assert!(out.join("report.html").is_file());
    // The report draws, per track, the correction with its cap, the
    // balance against the reference and the loudness over time.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for chart in ["the album pass's correction", "balance against the reference", "short-term loudness"] {
        assert_eq!(html.matches(&format!("aria-label=\"{chart}\"")).count(), 3, "{chart}");
    }
}

#[test]
fn runs_are_deterministic_cached_and_incremental() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    master(&fixture().join("album.yaml"), &one, &["--jobs", "1"]);
    master(&fixture().join("album.yaml"), &two, &["--jobs", "4"]);
    let outputs = |dir: &Path| report(dir)["outputs"].clone();
    assert_eq!(outputs(&one), outputs(&two), "--jobs 1 and --jobs 4 give bit-identical files");

    let again = master(&fixture().join("album.yaml"), &one, &[]);
    assert_eq!(again["rendered"], 0, "a second run renders nothing: {again}");
    assert_eq!(again["cached"], 11);

    // One stem's gain changes: only that track's mix and master render
    // again, the plan, whatever finalize tasks it moved, and the report.
    let changed = dir.path().join("changed.yaml");
    let text = std::fs::read_to_string(fixture().join("album.yaml")).unwrap();
    let text = text.replace(
        "- { name: rhodes, file: 01-chorale-66/rhodes.flac, gain_db: -2.0, pan: 0.30 }",
        "- { name: rhodes, file: 01-chorale-66/rhodes.flac, gain_db: -4.0, pan: 0.30 }",
    );
    let text = text.replace("source: .", &format!("source: {}", fixture().display()));
    std::fs::write(&changed, text).unwrap();
    let summary = master(&changed, &one, &[]);
    let rendered = summary["rendered"].as_u64().unwrap();
    assert!((4..=7).contains(&rendered), "mix + master of one track, the plan, finalizes, the report: {summary}");
}

/// One real recording (the example album's stereo piano) mastered three
/// ways — dark, as it is, bright — and matched: against the album average,
/// then against the neutral file as a `file:` reference (as it is, and
/// converted to 96 kHz), then against the neutral track. Where the tonal
/// gaps are within `max_correction_db`, strength 0.7 closes most of them.
#[test]
fn tone_is_matched_to_the_album_or_a_reference_file() {
    let dir = tempfile::tempdir().unwrap();
    // The recording, and the same at 96 kHz (a reference at another rate).
    let source = dir.path().join("source");
    std::fs::create_dir(&source).unwrap();
    std::fs::copy(fixture().join("02-maple-leaf/piano.flac"), source.join("piano.flac")).unwrap();
    let converted = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-i"])
        .arg(source.join("piano.flac"))
        .args(["-ar", "96000", "-c:a", "pcm_s24le"])
        .arg(source.join("piano-96k.wav"))
        .status()
        .expect("ffmpeg runs: run scripts/setup");
    assert!(converted.success());
    let manifest = |reference: &str| {
        format!(
            r#"version: 1
album: {{ title: Three Pianos, artist: Test, sample_rate: 44100 }}
source: {source}
matching:
  loudness: {{ target_lufs: -16.0, mode: track }}
  true_peak_dbtp: -1.0
  tone: {{ reference: "{reference}", strength: 0.7, max_correction_db: 4.0 }}
  warmth: {{ strength: 0.7 }}
deliverables:
  - {{ name: cd, format: wav, sample_rate: 44100, bit_depth: 16, dither: tpdf }}
tracks:
  - id: dark
    title: Dark
    loudness_offset_lu: -3.0
    mix_file: piano.flac
    master:
      eq: [ {{ type: low_shelf, freq_hz: 200, gain_db: 3.0 }}, {{ type: high_shelf, freq_hz: 3000, gain_db: -4.0 }} ]
  - {{ id: neutral, title: Neutral, mix_file: piano.flac }}
  - id: bright
    title: Bright
    mix_file: piano.flac
    master:
      eq: [ {{ type: low_shelf, freq_hz: 200, gain_db: -3.0 }}, {{ type: high_shelf, freq_hz: 3000, gain_db: 4.0 }} ]
"#,
            source = source.display()
        )
    };
    for reference in ["album", "file:piano.flac", "file:piano-96k.wav", "track:neutral"] {
        let yaml = dir.path().join("three.yaml");
        std::fs::write(&yaml, manifest(reference)).unwrap();
        let out = dir.path().join(reference.replace(':', "-"));
        master(&yaml, &out, &[]);
        let report = report(&out);
        let mut delivered = Vec::new();
        for track in report["tracks"].as_array().unwrap() {
            let id = track["id"].as_str().unwrap();
            let (before, after) = (f(&track["tonal_distance_before_db"]), f(&track["tonal_distance_after_db"]));
            // The neutral track is the file reference itself: nothing to close.
            if before > 0.5 {
                assert!(after <= 0.6 * before, "{reference}, {id}: tonal distance {before:.2} → {after:.2} dB");
            }
            let lufs = f(&track["finalize"]["delivered"][0]["analysis"]["integrated_lufs"]);
            delivered.push(lufs);
            assert!((lufs - f(&track["correction"]["target_lufs"])).abs() <= 0.1, "{reference}, {id}: {lufs:.2} LUFS");
        }
        // The track with offset -3 LU sits 3 LU under the others.
        for other in &delivered[1..] {
            assert!((other - delivered[0] - 3.0).abs() <= 0.3, "{reference}: {delivered:?}");
        }
        let warmth = &report["album"];
        assert!(f(&warmth["warmth_spread_after_db"]) <= 0.6 * f(&warmth["warmth_spread_before_db"]), "{warmth}");
        // The report draws the reference's balance, and names it.
        let html = std::fs::read_to_string(out.join("report.html")).unwrap();
        assert!(html.contains(&format!("tone reference: {reference}")), "{reference}");
        assert_eq!(html.matches("class=\"reference\"").count(), 4, "the album chart and one per track");
    }
}
