//! Deliverables are measured as they are written (the encoder's quantized,
//! dithered samples), never decoded again: those readings must be the
//! file's own, which decoding each file and measuring it proves here. A
//! FLAC deliverable carries its samples' MD5. Every deliverable, at every rate, lands on the loudness target
//! under the ceiling.

mod support;
use support::Pink;

use lacquer_pipelines::album::Correction;
use lacquer_pipelines::analysis::BAND_CENTRES_HZ;
use lacquer_pipelines::decode::AudioReader;
use lacquer_pipelines::dsp::AudioBlock;
use lacquer_pipelines::encode::{EncodeSpec, Encoder, Tags};
use lacquer_pipelines::manifest::{AudioFormat, Dither, Limiter};
use lacquer_pipelines::stages::finalize::{
    CodecCheck, DeliverableTarget, FinalizeSettings, finalize_track, measure_file,
};

const RATE_HZ: u32 = 48_000;

/// A 32-bit float stereo WAV at [`RATE_HZ`], as the master stage writes.
/// Every channel of a file, decoded.
fn decode_all(path: &std::path::Path) -> Vec<Vec<f32>> {
    let file = std::fs::File::open(path).unwrap();
    let length = file.metadata().unwrap().len();
    let mut reader = AudioReader::open(file, length, Some("flac")).unwrap();
    let mut block = AudioBlock::new(reader.info().channels, 4096);
    let mut channels = vec![Vec::new(); reader.info().channels];
    while reader.read(&mut block, 4096).unwrap() > 0 {
        for (all, channel) in channels.iter_mut().zip(block.channels()) {
            all.extend_from_slice(channel);
        }
    }
    channels
}

fn float_master(path: &std::path::Path) -> Encoder {
    let spec = EncodeSpec {
        format: AudioFormat::Wav,
        bit_depth: 32,
        rate_hz: RATE_HZ,
        channels: 2,
        dither: Dither::None,
        dither_seed: 0,
    };
    Encoder::create(path, spec, &Tags::default()).unwrap()
}

fn write_master(path: &std::path::Path) {
    let mut encoder = float_master(path);
    let (mut left, mut right) = (Pink::new(1), Pink::new(2));
    for second in 0..8 {
        let level = 0.6 + 0.1 * (second % 3) as f32;
        let channels = vec![
            (0..RATE_HZ as usize).map(|_| left.next() * level).collect(),
            (0..RATE_HZ as usize).map(|_| right.next() * level).collect(),
        ];
        encoder.write(&AudioBlock::from_planar(channels)).unwrap();
    }
    encoder.finish(&Tags::default(), None).unwrap();
}

/// Finalize at the test rate to -1 dBTP (60 ms release, 1.5 ms lookahead).
fn settings(
    fade_out_s: f64,
    max_limiter_gain_reduction_db: f64,
    codec_check: Option<CodecCheck>,
) -> FinalizeSettings<'static> {
    FinalizeSettings {
        track_id: "t",
        rate_hz: RATE_HZ,
        ceiling_dbtp: -1.0,
        limiter: Limiter { release_ms: 60.0, lookahead_ms: 1.5 },
        fade_in_s: 0.0,
        fade_out_s,
        max_limiter_gain_reduction_db,
        codec_check,
    }
}

/// A deliverable named `name` in `folder`, its extension from its format.
fn deliverable(
    folder: &std::path::Path,
    name: &str,
    (format, bit_depth, rate_hz, dither): (AudioFormat, u32, u32, Dither),
    codec_checked: bool,
) -> DeliverableTarget {
    let extension = if format == AudioFormat::Flac { "flac" } else { "wav" };
    DeliverableTarget {
        name: name.to_owned(),
        format,
        bit_depth,
        rate_hz,
        dither,
        path: folder.join(format!("{name}.{extension}")),
        codec_checked,
    }
}

#[test]
fn what_is_reported_is_what_the_files_hold() {
    let dir = tempfile::tempdir().unwrap();
    let master = dir.path().join("master.wav");
    write_master(&master);
    // As the plan makes it: the gain from the master's measured loudness.
    let gain_db = -14.0 - measure_file(&master).unwrap().integrated_lufs.unwrap();
    let correction: Correction = serde_json::from_value(serde_json::json!({
        "gain_db": gain_db, "target_lufs": -14.0, "curve_db": [], "max_correction_db": 4.0,
        "master_balance_db": [], "master_lra_lu": 5.0, "expected_limiting_db": 1.0, "warnings": []
    }))
    .unwrap();
    let settings = settings(0.5, 6.0, None);
    let target = |name: &str, format, bit_depth, rate_hz, dither| {
        deliverable(dir.path(), name, (format, bit_depth, rate_hz, dither), false)
    };
    let targets = [
        target("cd", AudioFormat::Wav, 16, 44_100, Dither::Shaped),
        target("hires", AudioFormat::Flac, 24, 96_000, Dither::Tpdf),
        target("float", AudioFormat::Wav, 32, 48_000, Dither::None),
    ];
    let report = finalize_track(&master, &correction, &settings, &targets, &Tags::default()).unwrap();
    // The probes found the gain: one render delivers on target, and one
    // more makes up what the CD file's conversion down to 44.1 kHz lost
    // with the pink noise's 20–24 kHz.
    assert_eq!(report.passes, 2, "renders");
    assert!(report.probes >= 1);
    let rendered = report.render.integrated_lufs.unwrap();
    assert!((rendered + 14.0).abs() <= 0.05, "the render: {rendered:.3} LUFS, target -14");
    for (delivered, target) in report.delivered.iter().zip(&targets) {
        let as_written = &delivered.analysis;
        let decoded = measure_file(&target.path).unwrap();
        let name = &target.name;
        assert_eq!(as_written.frames, decoded.frames, "{name}");
        let (a, b) = (as_written.integrated_lufs.unwrap(), decoded.integrated_lufs.unwrap());
        assert!((a - b).abs() < 1e-9, "{name}: {a} vs {b} LUFS");
        assert_eq!(as_written.true_peak_dbtp, decoded.true_peak_dbtp, "{name}");
        assert_eq!(as_written.true_peak_bs1770_dbtp, decoded.true_peak_bs1770_dbtp, "{name}");
        assert_eq!(as_written.sample_peak_dbfs, decoded.sample_peak_dbfs, "{name}");
        // On target at every rate: a conversion's new inter-sample peaks
        // are limited at the deliverable's rate, not trimmed by gain.
        let lufs = as_written.integrated_lufs.unwrap();
        assert!((lufs + 14.0).abs() <= 0.05, "{name}: {lufs:.3} LUFS at {} Hz, target -14", target.rate_hz);
        assert!(
            as_written.highest_true_peak_dbtp() <= -1.0 + 1e-9,
            "{name}: {:.3} dBTP",
            as_written.highest_true_peak_dbtp()
        );
    }
    // The FLAC carries its samples' MD5 (the encoder proved it as it wrote
    // the file; `decode.rs` tests that a damaged frame is caught there).
    let flac = std::fs::read(&targets[1].path).unwrap();
    let decoded = decode_all(&targets[1].path);
    let mut bytes = Vec::new();
    for n in 0..decoded[0].len() {
        for channel in &decoded {
            let sample = (channel[n] * 8_388_608.0) as i32;
            bytes.extend_from_slice(&sample.to_le_bytes()[..3]);
        }
    }
    use md5::Digest;
    assert_eq!(
        &flac[26..42],
        md5::Md5::digest(&bytes).as_slice(),
        "STREAMINFO's MD5 (after fLaC and its block header)"
    );
}

/// A song whose quiet passages are bass alone: the full correction (a
/// 4 dB low shelf) would lift those passages 4 dB against the loud,
/// broadband ones and pull the loudness range in by more than 1 LU. The
/// album pass applies as much of it as keeps the range within 1 LU, and
/// says so.
#[test]
fn the_correction_gives_way_to_the_songs_dynamics() {
    let dir = tempfile::tempdir().unwrap();
    let master = dir.path().join("master.wav");
    let mut encoder = float_master(&master);
    let mut noise = Pink::new(7);
    let mut phase = 0f32;
    for section in 0..6 {
        let frames = 6 * RATE_HZ as usize;
        let samples: Vec<f32> = if section % 2 == 0 {
            (0..frames).map(|_| noise.next() * 0.5).collect()
        } else {
            (0..frames)
                .map(|_| {
                    phase += std::f32::consts::TAU * 60.0 / RATE_HZ as f32;
                    0.12 * phase.sin()
                })
                .collect()
        };
        encoder.write(&AudioBlock::from_planar(vec![samples.clone(), samples])).unwrap();
    }
    encoder.finish(&Tags::default(), None).unwrap();
    let measured = measure_file(&master).unwrap();
    // A low shelf's curve: +4 dB up to 80 Hz, down 3 dB per octave above.
    let shelf: Vec<f64> = BAND_CENTRES_HZ.iter().map(|f| (4.0 - 3.0 * (f / 80.0).log2().max(0.0)).max(0.0)).collect();
    let correction: Correction = serde_json::from_value(serde_json::json!({
        "gain_db": 0.0, "target_lufs": -14.0, "curve_db": shelf,
        "max_correction_db": 4.0, "master_balance_db": [],
        "master_lra_lu": measured.loudness_range_lu, "expected_limiting_db": 0.0, "warnings": []
    }))
    .unwrap();
    let settings = settings(0.0, 6.0, None);
    let target = deliverable(dir.path(), "float", (AudioFormat::Wav, 32, RATE_HZ, Dither::None), false);
    let report = finalize_track(&master, &correction, &settings, &[target], &Tags::default()).unwrap();
    let (before, after) = (measured.loudness_range_lu, report.delivered[0].analysis.loudness_range_lu);
    assert!(report.correction_scale < 0.9 && report.correction_scale > 0.0, "share {}", report.correction_scale);
    assert!((after - before).abs() <= 1.0, "LRA {before:.2} → {after:.2} LU");
    assert!(
        report.warnings.iter().any(|w| w.contains("loudness range") && w.contains("% of the planned curve")),
        "{:?}",
        report.warnings
    );
}

/// Dense material limited at 48 kHz and converted to 44.1, 96 and 32 kHz:
/// the conversions rebuild peaks past the render's margin, and the ones
/// down lose what lay above their Nyquist. Each converted deliverable is
/// limited again at its own rate, its loss made up, and lands within
/// 0.03 LU of the render and 0.05 LU of the target, under the ceiling by
/// both readings.
#[test]
fn conversions_are_limited_again_not_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let master = dir.path().join("master.wav");
    let mut encoder = float_master(&master);
    let (mut left, mut right) = (Pink::new(5), Pink::new(6));
    for _ in 0..6 {
        let channels = vec![
            (0..RATE_HZ as usize).map(|_| left.next() * 0.7).collect(),
            (0..RATE_HZ as usize).map(|_| right.next() * 0.7).collect(),
        ];
        encoder.write(&AudioBlock::from_planar(channels)).unwrap();
    }
    encoder.finish(&Tags::default(), None).unwrap();
    let correction: Correction = serde_json::from_str(
        r#"{"gain_db":0.0,"target_lufs":-11.0,"curve_db":[],"max_correction_db":4.0,"master_balance_db":[],"master_lra_lu":0.0,"expected_limiting_db":3.0,"warnings":[]}"#,
    )
    .unwrap();
    let settings = settings(0.0, 8.0, None);
    let targets: Vec<DeliverableTarget> = [("cd", 44_100), ("hires", 96_000), ("low", 32_000)]
        .into_iter()
        .map(|(name, rate_hz)| deliverable(dir.path(), name, (AudioFormat::Wav, 24, rate_hz, Dither::None), false))
        .collect();
    let report = finalize_track(&master, &correction, &settings, &targets, &Tags::default()).unwrap();
    let render = report.render.integrated_lufs.unwrap();
    assert!(report.limiter_gain_reduction_db > 0.5, "limited hard: {:.2} dB", report.limiter_gain_reduction_db);
    for (file, target) in report.delivered.iter().zip(&targets) {
        let lufs = file.analysis.integrated_lufs.unwrap();
        let peak = file.analysis.highest_true_peak_dbtp();
        let name = &target.name;
        assert!(peak <= -1.0, "{name}: {peak:.3} dBTP");
        assert!((lufs - render).abs() <= 0.03, "{name}: {lufs:.3} LUFS, the render {render:.3}");
        assert!((lufs + 11.0).abs() <= 0.05, "{name}: {lufs:.3} LUFS, target -11");
    }
}

#[test]
fn the_codec_check_lowers_only_the_streaming_files_ceiling_and_only_when_a_codec_needs_it() {
    use lacquer_pipelines::manifest::{Codec, CodecSpec};
    let dir = tempfile::tempdir().unwrap();
    let master = dir.path().join("master.wav");
    write_master(&master);
    let check = CodecCheck {
        codecs: vec![
            CodecSpec { codec: Codec::Aac, bitrate_kbps: Some(256) },
            CodecSpec { codec: Codec::Opus, bitrate_kbps: Some(160) },
        ],
        ceiling_dbtp: -1.0,
    };
    let targets = |folder: &str| -> Vec<DeliverableTarget> {
        std::fs::create_dir_all(dir.path().join(folder)).unwrap();
        [("streaming", 48_000, true), ("cd", 44_100, false)]
            .into_iter()
            .map(|(name, rate_hz, codec_checked)| {
                deliverable(
                    &dir.path().join(folder),
                    name,
                    (AudioFormat::Wav, 24, rate_hz, Dither::None),
                    codec_checked,
                )
            })
            .collect()
    };
    for target_lufs in [-20.0, -10.0] {
        let correction: Correction = serde_json::from_str(&format!(
            r#"{{"gain_db":0.0,"target_lufs":{target_lufs},"curve_db":[],"max_correction_db":4.0,"master_balance_db":[],"master_lra_lu":5.0,"expected_limiting_db":1.0,"warnings":[]}}"#,
        ))
        .unwrap();
        let settings = |codec_check| settings(0.0, 8.0, codec_check);
        let (on, off) = (targets(&format!("on{target_lufs}")), targets(&format!("off{target_lufs}")));
        let checked =
            finalize_track(&master, &correction, &settings(Some(check.clone())), &on, &Tags::default()).unwrap();
        let plain = finalize_track(&master, &correction, &settings(None), &off, &Tags::default()).unwrap();
        // What a worker reports survives its trip through JSON.
        let json = serde_json::to_string(&checked).unwrap();
        assert_eq!(
            serde_json::from_str::<lacquer_pipelines::stages::finalize::FinalizeReport>(&json).unwrap(),
            checked
        );
        let report = checked.codec_check.as_ref().expect("the check ran");
        assert_eq!(report.rows.len(), 2, "the streaming file through both codecs, the CD through none");
        assert!(checked.delivered[1].codecs.is_empty() && plain.delivered[0].codecs.is_empty());
        for row in &report.rows {
            assert!(row.after.highest_true_peak_dbtp() <= -1.0 && row.after.clipped_samples == 0, "{row:?}");
        }
        let bytes = |path: &std::path::Path| std::fs::read(path).unwrap();
        // The CD is never touched by the check.
        assert_eq!(bytes(&on[1].path), bytes(&off[1].path));
        let streaming = &checked.delivered[0].analysis;
        if target_lufs == -20.0 {
            // Quiet and gentle: every codec reads under the ceiling, nothing is redone.
            assert_eq!(report.lowered_db, 0.0, "{report:?}");
            assert_eq!(checked.passes, plain.passes);
            assert_eq!(bytes(&on[0].path), bytes(&off[0].path));
        } else {
            // Loud: dense peaks at the ceiling come out of the codecs over it.
            assert!(report.lowered_db > 0.0, "{report:?}");
            assert!(report.rows.iter().any(|r| r.before.highest_true_peak_dbtp() > -1.0), "{report:?}");
            assert!(streaming.highest_true_peak_dbtp() <= report.streaming_ceiling_dbtp);
            assert!(checked.warnings.iter().any(|w| w.contains("ceiling was lowered")), "{:?}", checked.warnings);
        }
        assert!(
            (streaming.integrated_lufs.unwrap() - (target_lufs - report.held_back_db)).abs() <= 0.05,
            "{target_lufs}: {:?} held back {}",
            streaming.integrated_lufs,
            report.held_back_db
        );
    }
}

/// Where little limiting is expected, the first render is delivered as it
/// is made. When it lands (the start gain right), it is the delivery: one
/// render, one probe. When it misses (here the start gain 4 dB short),
/// it is only a probe: the files are made again at the gain the probes
/// find and land on the target.
#[test]
fn a_first_delivery_is_kept_only_where_it_lands() {
    let dir = tempfile::tempdir().unwrap();
    let master = dir.path().join("master.wav");
    write_master(&master);
    let measured = measure_file(&master).unwrap().integrated_lufs.unwrap();
    // Quiet enough that the limiter barely works.
    let target_lufs = measured - 20.0;
    for (start_gain_db, renders) in [(-20.0, 1), (-24.0, 2)] {
        let correction: Correction = serde_json::from_value(serde_json::json!({
            "gain_db": start_gain_db, "target_lufs": target_lufs, "curve_db": [], "max_correction_db": 4.0,
            "master_balance_db": [], "master_lra_lu": 5.0, "expected_limiting_db": 0.0, "warnings": []
        }))
        .unwrap();
        let folder = dir.path().join(format!("start{start_gain_db}"));
        std::fs::create_dir_all(&folder).unwrap();
        let target = deliverable(&folder, "file", (AudioFormat::Wav, 24, RATE_HZ, Dither::None), false);
        let report = finalize_track(
            &master,
            &correction,
            &settings(0.0, 6.0, None),
            std::slice::from_ref(&target),
            &Tags::default(),
        )
        .unwrap();
        assert_eq!(
            report.passes, renders,
            "start {start_gain_db} dB: probes {} gain {} lufs {:?} {:?}",
            report.probes, report.gain_db, report.render.integrated_lufs, report.warnings
        );
        assert_eq!(report.probes > 1, renders > 1, "start {start_gain_db} dB: {} probes", report.probes);
        let lufs = measure_file(&target.path).unwrap().integrated_lufs.unwrap();
        assert!(
            (lufs - target_lufs).abs() <= 0.05,
            "start {start_gain_db} dB: {lufs:.3} LUFS, target {target_lufs:.3}"
        );
    }
}
