//! Probing reads headers and proves a file decodes, and never panics on
//! bad bytes.

use std::io::Cursor;
use std::path::Path;

use lacquer_pipelines::decode::{DecodeError, probe};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/album-small").join(name)).unwrap()
}

fn probe_bytes(bytes: Vec<u8>, extension: &str) -> Result<lacquer_pipelines::decode::AudioInfo, DecodeError> {
    let length = bytes.len() as u64;
    probe(Cursor::new(bytes), length, Some(extension))
}

fn wav(spec: hound::WavSpec, frames: usize) -> Vec<u8> {
    let mut cursor = Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
    for frame in 0..frames {
        let phase = (frame as f64 * 1000.0 * std::f64::consts::TAU / f64::from(spec.sample_rate)).sin();
        for _ in 0..spec.channels {
            match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Float, _) => writer.write_sample(phase as f32 * 0.5).unwrap(),
                (_, 16) => writer.write_sample((phase * 16_000.0) as i16).unwrap(),
                (_, bits) => writer.write_sample((phase * f64::from(1 << (bits - 2))) as i32).unwrap(),
            }
        }
    }
    writer.finalize().unwrap();
    cursor.into_inner()
}

#[test]
fn the_fixture_flac_stems() {
    let info = probe_bytes(fixture("01-chorale-66/drums.flac"), "flac").unwrap();
    assert_eq!((info.container.as_str(), info.codec.as_str()), ("flac", "flac"));
    assert_eq!((info.channels, info.sample_rate_hz, info.bits_per_sample), (2, 44_100, Some(24)));
    assert_eq!(info.frames, Some(882_000));
    assert!((info.duration_s().unwrap() - 20.0).abs() < 1e-9);
    assert_eq!(probe_bytes(fixture("01-chorale-66/vox.flac"), "flac").unwrap().channels, 1);
}

#[test]
fn wav_integer_and_float() {
    let cases = [
        (16, hound::SampleFormat::Int),
        (24, hound::SampleFormat::Int),
        (32, hound::SampleFormat::Int),
        (32, hound::SampleFormat::Float),
    ];
    for (bits, format) in cases {
        let spec = hound::WavSpec { channels: 2, sample_rate: 96_000, bits_per_sample: bits, sample_format: format };
        let info = probe_bytes(wav(spec, 96_000), "wav").unwrap_or_else(|e| panic!("{bits}-bit {format:?}: {e}"));
        assert_eq!(info.container, "wav");
        assert_eq!(
            (info.channels, info.sample_rate_hz, info.frames),
            (2, 96_000, Some(96_000)),
            "{bits}-bit {format:?}"
        );
    }
    // The extension is a hint only: a WAV named .flac is still a WAV.
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 44_100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    assert_eq!(probe_bytes(wav(spec, 4410), "flac").unwrap().container, "wav");
}

#[test]
fn empty_text_and_truncated_files_are_named_errors() {
    assert_eq!(probe_bytes(Vec::new(), "wav").unwrap_err(), DecodeError::Empty);
    let text = b"not audio at all\n".repeat(100);
    assert!(matches!(probe_bytes(text, "wav").unwrap_err(), DecodeError::NotAudio(_)));
    let flac = fixture("02-maple-leaf/bass.flac");
    let cut = flac[..flac.len() / 2].to_vec();
    assert!(matches!(probe_bytes(cut, "flac").unwrap_err(), DecodeError::Damaged(_)));
}

/// Truncations of real files at many points and random bytes behind real
/// headers: every outcome is a value, never a panic.
#[test]
fn no_input_makes_the_probe_panic() {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    let originals = [(wav(spec, 48_000), "wav"), (fixture("02-maple-leaf/clarinet.flac"), "flac")];
    let mut state = 0x2545_F491_u32;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    for (original, extension) in &originals {
        for step in 1..=40 {
            let cut = original.len() * step / 41;
            let _ = probe_bytes(original[..cut].to_vec(), extension);
        }
        for _ in 0..40 {
            let mut damaged = original[..original.len().min(200_000)].to_vec();
            let keep_header = 64 + (random() as usize % 64);
            for byte in damaged.iter_mut().skip(keep_header) {
                *byte = random() as u8;
            }
            let _ = probe_bytes(damaged, extension);
        }
    }
}
