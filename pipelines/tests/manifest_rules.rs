//! Every validation rule of manifest v1, each named by its field path.

use std::path::PathBuf;

use lacquer_pipelines::decode::AudioInfo;
use lacquer_pipelines::manifest::{self, Checked, InputRole, MasterChain, StorageRoot};

fn base() -> StorageRoot {
    StorageRoot::Local { dir: PathBuf::from("/albums/northern") }
}

fn stereo_44k() -> AudioInfo {
    AudioInfo {
        container: "wav".into(),
        codec: "pcm_s24le".into(),
        channels: 2,
        sample_rate_hz: 44_100,
        bits_per_sample: Some(24),
        frames: Some(441_000),
    }
}

fn check(text: &str) -> Checked {
    manifest::check(text, &base(), None).unwrap_or_else(|e| panic!("should parse: {e}"))
}

/// The paths of every problem, after probing finds every file fine.
fn problem_paths(text: &str) -> Vec<String> {
    let checked = check(text);
    let probes = checked.inputs.iter().map(|_| Ok(stereo_44k())).collect();
    match checked.finish(probes) {
        Ok(_) => Vec::new(),
        Err(error) => error.problems.into_iter().map(|p| p.path).collect(),
    }
}

const HEAD: &str = "version: 1\nalbum: { title: T, artist: A }\n";

#[test]
fn the_example_album_passes_every_static_check() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/album-small/album.yaml")).unwrap();
    let checked = check(&text);
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    assert_eq!(checked.inputs.len(), 13);
    assert_eq!(checked.inputs[0].field, "tracks[0].stems[0].file");
    assert_eq!(checked.inputs[0].object.to_string(), "/albums/northern/01-chorale-66/vox.flac");
    assert_eq!(checked.output, Some(StorageRoot::Local { dir: "/albums/northern/masters".into() }));
}

#[test]
fn track_sources() {
    let text = format!(
        "{HEAD}tracks:\n  - {{ id: a, title: A, mix_file: a.wav, stems: [{{ name: x, file: x.wav }}] }}\n  - {{ id: b, title: B }}\n  - {{ id: c, title: C, mix_file: c.wav, returns: {{ r: {{ delay: {{}} }} }} }}\n  - {{ id: d, title: D, stems: [] }}\n"
    );
    assert_eq!(problem_paths(&text), ["tracks[0].stems", "tracks[1].stems", "tracks[2].returns", "tracks[3].stems"]);
}

#[test]
fn returns_have_exactly_one_effect_and_sends_must_reach_one() {
    let text = format!(
        "{HEAD}tracks:\n  - id: a\n    title: A\n    stems:\n      - {{ name: x, file: x.wav, sends: {{ both: -6, none: -6, nowhere: -6, room: 20 }} }}\n    returns:\n      both: {{ reverb: {{}}, delay: {{}} }}\n      none: {{ gain_db: -3 }}\n      room: {{ reverb: {{ decay_s: 30, damping: 2 }} }}\n"
    );
    assert_eq!(
        problem_paths(&text),
        [
            "tracks[0].stems[0].sends.nowhere",
            "tracks[0].stems[0].sends.room",
            "tracks[0].returns.both",
            "tracks[0].returns.none",
            "tracks[0].returns.room.reverb.decay_s",
            "tracks[0].returns.room.reverb.damping",
        ]
    );
}

#[test]
fn filters_take_only_what_their_type_means() {
    let text = format!(
        "{HEAD}master:\n  eq:\n    - {{ type: high_pass, freq_hz: 30, gain_db: 3 }}\n    - {{ type: peak, freq_hz: 1000, slope_db_oct: 24, gain_db: 1 }}\n    - {{ type: low_shelf, freq_hz: 5 }}\n    - {{ type: low_pass, freq_hz: 18000, slope_db_oct: 18, q: 40 }}\n    - {{ type: notch, freq_hz: 60 }}\ntracks:\n  - {{ id: a, title: A, mix_file: a.wav }}\n"
    );
    assert_eq!(
        problem_paths(&text),
        [
            "master.eq[0].gain_db",
            "master.eq[1].slope_db_oct",
            "master.eq[2].gain_db", // missing: placed at its filter's `{`
            "master.eq[2].freq_hz",
            "master.eq[3].slope_db_oct",
            "master.eq[3].q",
        ]
    );
}

#[test]
fn filter_frequency_limit_follows_the_working_rate() {
    let at = |rate: u32| {
        format!(
            "version: 1\nalbum: {{ title: T, artist: A, sample_rate: {rate} }}\nmaster: {{ eq: [ {{ type: low_pass, freq_hz: 30000 }} ] }}\ntracks:\n  - {{ id: a, title: A, mix_file: a.wav }}\n"
        )
    };
    assert_eq!(problem_paths(&at(44_100)), ["master.eq[0].freq_hz"]);
    assert!(problem_paths(&at(96_000)).is_empty());
    assert_eq!(problem_paths(&at(22_050)), ["album.sample_rate", "master.eq[0].freq_hz"]);
}

#[test]
fn album_matching_and_deliverables() {
    let text = format!(
        "{HEAD}mix: {{ headroom_dbfs: 3, pan_law_db: -2 }}\nmatching:\n  loudness: {{ target_lufs: -3 }}\n  true_peak_dbtp: 0.5\n  tone: {{ reference: track:zz, strength: 1.5 }}\n  warmth: {{ strength: -1 }}\ndeliverables:\n  - {{ name: hires, format: flac, bit_depth: 32 }}\n  - {{ name: hires, bit_depth: 20 }}\n  - {{ name: Float, bit_depth: 32, dither: tpdf, sample_rate: 50000 }}\ntracks:\n  - {{ id: a, title: A, mix_file: a.wav }}\n"
    );
    assert_eq!(
        problem_paths(&text),
        [
            "mix.headroom_dbfs",
            "mix.pan_law_db",
            "matching.loudness.target_lufs",
            "matching.true_peak_dbtp",
            "matching.tone.reference",
            "matching.tone.strength",
            "matching.warmth.strength",
            "deliverables[0].bit_depth",
            "deliverables[1].name",
            "deliverables[1].bit_depth",
            "deliverables[2].name",
            "deliverables[2].dither",
            "deliverables[2].sample_rate",
        ]
    );
}

#[test]
fn a_disc_is_44_1_khz_16_bit_and_its_gaps_are_in_range() {
    let tracks: String = (0..3)
        .map(|i| format!("  - {{ id: t{i}, title: T, mix_file: t.wav, gap_s: {} }}\n", if i == 1 { 11.0 } else { 0.0 }))
        .collect();
    let text = format!(
        "version: 1\nalbum: {{ title: T, artist: A, sample_rate: 48000 }}\ndeliverables:\n  - {{ name: disc, format: ddp }}\n  - {{ name: cd, format: ddp, sample_rate: 44100, bit_depth: 16 }}\ntracks:\n{tracks}"
    );
    assert_eq!(problem_paths(&text), ["deliverables[0].sample_rate", "deliverables[0].bit_depth", "tracks[1].gap_s",]);
    let one = "version: 1\nalbum: { title: T, artist: A }\ndeliverables:\n  - { name: cd, format: ddp, sample_rate: 44100, bit_depth: 16 }\ntracks:\n  - { id: a, title: A, mix_file: a.wav, gap_s: 0 }\n";
    assert!(problem_paths(one).is_empty(), "{:?}", problem_paths(one));
}

#[test]
fn the_codec_check_names_codecs_at_bitrates_and_needs_a_streaming_deliverable() {
    let track = "tracks:\n  - { id: a, title: A, mix_file: a.wav }\n";
    let ok = format!(
        "{HEAD}matching:\n  codec_ceiling_dbtp: -1.5\n  codec_check:\n    - {{ codec: aac, bitrate_kbps: 256 }}\n    - {{ codec: opus }}\ndeliverables:\n  - {{ name: hires, bit_depth: 24 }}\n  - {{ name: cd, bit_depth: 16, streaming: false }}\n{track}"
    );
    assert!(problem_paths(&ok).is_empty(), "{:?}", problem_paths(&ok));
    let bad = format!(
        "{HEAD}matching:\n  codec_ceiling_dbtp: 0.5\n  codec_check:\n    - {{ codec: aac, bitrate_kbps: 32 }}\n    - {{ codec: opus, bitrate_kbps: 160 }}\n    - {{ codec: opus }}\ndeliverables:\n  - {{ name: cd, bit_depth: 16, streaming: false }}\n  - {{ name: disc, format: ddp, sample_rate: 44100, bit_depth: 16, streaming: true }}\n{track}"
    );
    assert_eq!(
        problem_paths(&bad),
        [
            "matching.codec_ceiling_dbtp",
            "matching.codec_check[0].bitrate_kbps",
            "matching.codec_check[2]",
            "deliverables[1].streaming",
        ]
    );
    let nothing_to_check = format!(
        "{HEAD}matching:\n  codec_check: [ {{ codec: aac }} ]\ndeliverables:\n  - {{ name: cd, bit_depth: 16, streaming: false }}\n{track}"
    );
    assert_eq!(problem_paths(&nothing_to_check), ["matching.codec_check"]);
    let unknown = format!("{HEAD}matching:\n  codec_check: [ {{ codec: mp3 }} ]\n{track}");
    let error = manifest::check(&unknown, &base(), None).unwrap_err().to_string();
    assert!(error.contains("matching.codec_check") && error.contains("mp3"), "{error}");
}

#[test]
fn ids_isrcs_and_album_codes() {
    let text = "version: 1\nalbum: { title: T, artist: ' ', upc: '12345' }\ntracks:\n  - { id: Intro, title: A, mix_file: a.wav, isrc: GBABC2600001 }\n  - { id: b, title: B, mix_file: b.wav, isrc: GBABC2600001 }\n  - { id: c, title: '', mix_file: c.wav, isrc: GB-ABC-26-00003 }\n";
    assert_eq!(
        problem_paths(text),
        ["album.artist", "album.upc", "tracks[0].id", "tracks[1].isrc", "tracks[2].title", "tracks[2].isrc"]
    );
}

#[test]
fn automation_points_are_in_range_and_in_order() {
    let text = format!(
        "{HEAD}tracks:\n  - id: a\n    title: A\n    stems:\n      - name: x\n        file: x.wav\n        automation:\n          gain_db: [[0, -60], [5, 0], [4, 0], [6, 30]]\n          pan: []\n"
    );
    assert_eq!(
        problem_paths(&text),
        [
            "tracks[0].stems[0].automation.gain_db[2]",
            "tracks[0].stems[0].automation.gain_db[3]",
            "tracks[0].stems[0].automation.pan",
        ]
    );
}

#[test]
fn probing_results_are_checked_per_role() {
    let text = format!(
        "{HEAD}source: s3://label-stems/northern/\nmatching: {{ tone: {{ reference: 'file:refs/ref.flac' }} }}\ntracks:\n  - {{ id: a, title: A, mix_file: mixes/a.wav }}\n  - {{ id: b, title: B, stems: [{{ name: x, file: s3://other-bucket/x.wav }}] }}\n"
    );
    let checked = check(&text);
    let locations: Vec<String> = checked.inputs.iter().map(|i| i.object.to_string()).collect();
    assert_eq!(
        locations,
        ["s3://label-stems/northern/mixes/a.wav", "s3://other-bucket/x.wav", "s3://label-stems/northern/refs/ref.flac"]
    );
    assert_eq!(checked.inputs[2].role, InputRole::ToneReference);
    let mono = AudioInfo { channels: 1, ..stereo_44k() };
    let error = checked.finish(vec![Ok(mono.clone()), Ok(mono), Err("the file does not exist".into())]).unwrap_err();
    let paths: Vec<&str> = error.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["matching.tone.reference", "tracks[0].mix_file"], "a mono stem is fine, a mono mix_file is not");
    assert!(error.problems[0].message.contains("s3://label-stems/northern/refs/ref.flac: the file does not exist"));
    assert_eq!(error.problems[0].line, Some(4));
}

#[test]
fn a_track_master_block_replaces_the_album_block_of_the_same_name() {
    let text = format!(
        "{HEAD}master:\n  eq: [ {{ type: high_pass, freq_hz: 25 }} ]\n  compressor: {{ ratio: 1.5 }}\ntracks:\n  - id: a\n    title: A\n    mix_file: a.wav\n    master: {{ compressor: {{ ratio: 3 }}, stereo: {{}} }}\n"
    );
    let checked = check(&text);
    let chain = MasterChain::for_track(&checked.manifest.master, checked.manifest.tracks[0].master.as_ref());
    assert_eq!(chain.eq.as_ref().unwrap()[0].freq_hz, 25.0, "kept from the album");
    let compressor = chain.compressor.unwrap();
    assert_eq!((compressor.ratio, compressor.threshold_db), (3.0, -18.0), "replaced whole, spec defaults inside");
    let stereo = chain.stereo.unwrap();
    assert_eq!((stereo.width, stereo.mono_below_hz), (1.1, 120.0));
    let limiter = chain.limiter.unwrap();
    assert_eq!((limiter.release_ms, limiter.lookahead_ms), (60.0, 1.5), "the limiter is always on");
    assert!(chain.saturation.is_none());
}

#[test]
fn the_cli_output_override_is_relative_to_the_working_directory() {
    let text = format!("{HEAD}output: s3://label-masters/x/\ntracks:\n  - {{ id: a, title: A, mix_file: a.wav }}\n");
    let checked = manifest::check(&text, &base(), Some("/tmp/out")).unwrap();
    assert_eq!(checked.output, Some(StorageRoot::Local { dir: "/tmp/out".into() }));
    let checked = manifest::check(&text, &base(), None).unwrap();
    assert_eq!(checked.output.unwrap().to_string(), "s3://label-masters/x/");
}

/// The problems (path and message), after probing finds every file fine
/// (10 s of stereo each).
fn problems(text: &str) -> Vec<(String, String)> {
    let checked = check(text);
    let probes = checked.inputs.iter().map(|_| Ok(stereo_44k())).collect();
    match checked.finish(probes) {
        Ok(_) => Vec::new(),
        Err(error) => error.problems.into_iter().map(|p| (p.path, p.message)).collect(),
    }
}

#[test]
fn every_output_path_of_an_album_is_its_own() {
    // Track `x` is first: its default `master` deliverable is
    // master/01-x.wav, which is where track `01-x`'s master would go.
    let text = format!(
        "{HEAD}tracks:\n  - {{ id: x, title: X, mix_file: x.wav }}\n  - {{ id: 01-x, title: Y, mix_file: y.wav }}\n"
    );
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "tracks[1].id");
    assert!(found[0].1.contains("master/01-x.wav") && found[0].1.contains("tracks[0]"), "{}", found[0].1);
    // The same ids are fine when no deliverable shares the masters' folder.
    let deliverables = "deliverables: [{ name: cd, format: wav, bit_depth: 16 }]\n";
    assert_eq!(problems(&format!("{text}{deliverables}")), []);
    // A deliverable named `mix` against a rendered mix.
    let text = format!(
        "{HEAD}deliverables: [{{ name: mix, format: wav, bit_depth: 24 }}]\ntracks:\n  - {{ id: a, title: A, stems: [{{ name: s, file: s.wav }}] }}\n  - {{ id: 01-a, title: B, stems: [{{ name: s, file: t.wav }}] }}\n"
    );
    let found = problems(&text);
    assert_eq!(found.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(), ["tracks[1].id"], "{found:?}");
    assert!(found[0].1.contains("mix/01-a.wav"), "{}", found[0].1);
}

#[test]
fn trims_and_fades_must_fit_the_track() {
    // Every probed file lasts 10 s.
    let text = format!(
        "{HEAD}tracks:\n  - {{ id: a, title: A, mix_file: a.wav, trim_start_s: 10 }}\n  - {{ id: b, title: B, mix_file: b.wav, fade_out_s: 10.5 }}\n  - {{ id: c, title: C, mix_file: c.wav, trim_start_s: 4, fade_in_s: 3, fade_out_s: 3.5 }}\n  - {{ id: d, title: D, stems: [{{ name: s, file: s.wav, offset_s: 5 }}], fade_out_s: 14.5 }}\n  - {{ id: e, title: E, mix_file: e.wav, trim_start_s: 9, fade_out_s: 1 }}\n"
    );
    let found = problems(&text);
    let paths: Vec<&str> = found.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(paths, ["tracks[0].trim_start_s", "tracks[1].fade_out_s", "tracks[2].fade_out_s"], "{found:?}");
    assert!(found[0].1.contains("nothing would be left"), "{}", found[0].1);
    assert!(found[1].1.contains("longer than the track (10.000 s)"), "{}", found[1].1);
    assert!(found[2].1.contains("(6.000 s after trim_start_s)"), "{}", found[2].1);
}

#[test]
fn limits_are_refused_at_once_before_any_file_is_opened() {
    let track = |n: usize| format!("  - {{ id: t{n}, title: T, mix_file: t{n}.wav }}\n");
    let hundred: String = (0..100).map(track).collect();
    let checked = check(&format!("{HEAD}tracks:\n{hundred}"));
    assert!(checked.inputs.is_empty(), "nothing is probed");
    assert_eq!(checked.problems.len(), 1);
    assert_eq!(checked.problems[0].path, "tracks");
    assert!(checked.problems[0].message.contains("100 tracks; at most 99"), "{}", checked.problems[0].message);
    let ninety_nine: String = (0..99).map(track).collect();
    assert_eq!(problems(&format!("{HEAD}tracks:\n{ninety_nine}")), []);

    let stems: String = (0..257).map(|n| format!("{{ name: s{n}, file: s.wav }},")).collect();
    let points: String = (0..10_001).map(|n| format!("[{n}, 0],")).collect();
    let filters: String = (0..33).map(|_| "{ type: high_pass, freq_hz: 20 },").collect();
    let long_title = "x".repeat(1025);
    let text = format!(
        "version: 1\nalbum: {{ title: {long_title}, artist: A }}\nmaster: {{ eq: [{filters}] }}\ntracks:\n  - {{ id: a, title: A, stems: [{stems}] }}\n  - {{ id: b, title: B, stems: [{{ name: s, file: s.wav, automation: {{ gain_db: [{points}] }} }}] }}\n"
    );
    let checked = check(&text);
    assert!(checked.inputs.is_empty());
    let mut paths: Vec<&str> = checked.problems.iter().map(|p| p.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["album.title", "master.eq", "tracks[0].stems", "tracks[1].stems[0].automation.gain_db"]);
    let title = checked.problems.iter().find(|p| p.path == "album.title").unwrap();
    assert_eq!((title.line, title.message.as_str()), (Some(2), "is 1025 bytes long; text is limited to 1024 bytes"));
}

#[test]
fn unreadable_manifests_say_where() {
    let big = format!("{HEAD}# {}\ntracks: []\n", "x".repeat(1 << 20));
    let error = manifest::parse(&big).unwrap_err();
    assert!(error.problems[0].message.contains("at most 1048576 (1 MiB)"), "{error}");

    let bomb = "version: 1\na: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nalbum: { title: T, artist: A }\ntracks: []\n";
    let problem = &manifest::parse(bomb).unwrap_err().problems[0];
    assert_eq!((problem.line, problem.column), (Some(3), Some(8)), "{problem}");
    assert!(problem.message.contains("aliases"), "{problem}");

    let problem = &manifest::parse("# a list\n- version: 1\n").unwrap_err().problems[0];
    assert_eq!((problem.line, problem.message.contains("found a list")), (Some(2), true), "{problem}");
    let problem = &manifest::parse("album: {}\nversion: 2\ntracks: []\n").unwrap_err().problems[0];
    assert_eq!((problem.path.as_str(), problem.line, problem.column), ("version", Some(2), Some(1)), "{problem}");

    let problem = &manifest::manifest_text(b"version: 1\nalbum: \xff\xfe\n").unwrap_err().problems[0];
    assert_eq!((problem.line, problem.column), (Some(2), Some(8)), "{problem}");
    assert!(problem.message.contains("0xff"), "{problem}");

    let unknown: String = (0..150).map(|n| format!("  field{n}: 1\n")).collect();
    let error = manifest::parse(&format!("{HEAD}tracks: []\nmix:\n{unknown}")).unwrap_err();
    assert_eq!(error.problems.len(), 101, "100 unknown fields, then a stop");
    assert!(error.problems[100].message.contains("more than 100 unknown fields"));
}
