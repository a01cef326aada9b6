//! Deliverables are measured as they are written (the encoder's quantized,
//! dithered samples), never decoded again: those readings must be the
//! file's own, which decoding each file and measuring it proves here. A
//! FLAC deliverable is proved readable by its MD5, and a damaged one is
//! caught.

mod support;
use support::Pink;

use lacquer_pipelines::album::Correction;
use lacquer_pipelines::decode::verify_flac;
use lacquer_pipelines::dsp::AudioBlock;
use lacquer_pipelines::encode::{EncodeSpec, Encoder, Tags};
use lacquer_pipelines::manifest::{AudioFormat, Dither, Limiter};
use lacquer_pipelines::stages::finalize::{DeliverableTarget, FinalizeSettings, finalize_track, measure_file};

const RATE_HZ: u32 = 48_000;

fn write_master(path: &std::path::Path) {
    let spec = EncodeSpec {
        format: AudioFormat::Wav,
        bit_depth: 32,
        rate_hz: RATE_HZ,
        channels: 2,
        dither: Dither::None,
        dither_seed: 0,
    };
    let mut encoder = Encoder::create(path, spec, &Tags::default()).unwrap();
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

#[test]
fn what_is_reported_is_what_the_files_hold() {
    let dir = tempfile::tempdir().unwrap();
    let master = dir.path().join("master.wav");
    write_master(&master);
    let correction: Correction = serde_json::from_str(
        r#"{"gain_db":3.0,"target_lufs":-14.0,"curve_db":[],"filters":[],"max_correction_db":4.0,"master_balance_db":[],"master_lra_lu":5.0,"expected_limiting_db":1.0,"warnings":[]}"#,
    )
    .unwrap();
    let settings = FinalizeSettings {
        track_id: "t",
        rate_hz: RATE_HZ,
        ceiling_dbtp: -1.0,
        limiter: Limiter { release_ms: 60.0, lookahead_ms: 1.5 },
        fade_in_s: 0.0,
        fade_out_s: 0.5,
        max_limiter_gain_reduction_db: 6.0,
    };
    let target = |name: &str, format, bit_depth, rate_hz, dither| DeliverableTarget {
        name: name.to_owned(),
        format,
        bit_depth,
        rate_hz,
        dither,
        path: dir.path().join(format!("{name}.{}", if format == AudioFormat::Flac { "flac" } else { "wav" })),
    };
    let targets = [
        target("cd", AudioFormat::Wav, 16, 44_100, Dither::Shaped),
        target("hires", AudioFormat::Flac, 24, 96_000, Dither::Tpdf),
        target("float", AudioFormat::Wav, 32, 48_000, Dither::None),
    ];
    let report = finalize_track(&master, &correction, &settings, &targets, &Tags::default()).unwrap();
    // The probes found the gain: one render delivers on target.
    assert_eq!(report.passes, 1, "renders");
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
        assert!(
            as_written.highest_true_peak_dbtp() <= -1.0 + 1e-9,
            "{name}: {:.3} dBTP",
            as_written.highest_true_peak_dbtp()
        );
    }
    // The FLAC is proved by its MD5; one flipped byte in its audio is caught.
    let flac = &targets[1].path;
    let open = |path: &std::path::Path| {
        let file = std::fs::File::open(path).unwrap();
        let length = file.metadata().unwrap().len();
        (file, length)
    };
    let (file, length) = open(flac);
    verify_flac(file, length).unwrap();
    let mut bytes = std::fs::read(flac).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    let damaged = dir.path().join("damaged.flac");
    std::fs::write(&damaged, bytes).unwrap();
    let (file, length) = open(&damaged);
    assert!(verify_flac(file, length).is_err(), "a damaged FLAC passed its check");
}
