//! Decoding as a stream of blocks: lossless formats are sample-exact, lossy
//! ones decode to the right length and level, and bad channel counts are
//! refused clearly.

use std::io::Cursor;
use std::path::Path;

use lacquer_pipelines::decode::{AudioReader, DecodeError};
use lacquer_pipelines::dsp::AudioBlock;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)).unwrap()
}

/// Decodes everything, in blocks of `block_frames`.
fn decode_all(bytes: Vec<u8>, extension: &str, block_frames: usize) -> (Vec<Vec<f32>>, u32) {
    let length = bytes.len() as u64;
    let mut reader = AudioReader::open(Cursor::new(bytes), length, Some(extension)).unwrap();
    let channels = reader.info().channels;
    let rate = reader.info().sample_rate_hz;
    let mut block = AudioBlock::new(channels, block_frames);
    let mut out = vec![Vec::new(); channels];
    while reader.read(&mut block, block_frames).unwrap() > 0 {
        for (o, c) in out.iter_mut().zip(block.channels()) {
            o.extend_from_slice(c);
        }
    }
    assert_eq!(reader.frames_read() as usize, out[0].len());
    (out, rate)
}

fn rms(samples: &[f32]) -> f64 {
    (samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / samples.len() as f64).sqrt()
}

#[test]
fn flac_from_the_flac_tool_is_sample_exact_against_its_wav() {
    let (wav, wav_rate) = decode_all(data("reference-24bit.wav"), "wav", 4096);
    let (flac, flac_rate) = decode_all(data("reference-24bit.flac"), "flac", 1000);
    assert_eq!((wav_rate, flac_rate), (44_100, 44_100));
    assert_eq!(wav[0].len(), 22_050);
    assert!(wav == flac, "every sample of the FLAC equals the WAV's");
    // And the WAV decode is the exact 24-bit values.
    let mut reader = hound::WavReader::new(Cursor::new(data("reference-24bit.wav"))).unwrap();
    let ints: Vec<i32> = reader.samples::<i32>().map(Result::unwrap).collect();
    for (n, pair) in ints.chunks(2).enumerate() {
        assert_eq!(wav[0][n], pair[0] as f32 / 8_388_608.0, "frame {n}");
        assert_eq!(wav[1][n], pair[1] as f32 / 8_388_608.0, "frame {n}");
    }
}

#[test]
fn alac_and_aiff_are_lossless_too() {
    let (wav, _) = decode_all(data("reference-24bit.wav"), "wav", 4096);
    let (alac, _) = decode_all(data("stereo-alac.m4a"), "m4a", 4096);
    assert!(wav == alac, "ALAC is lossless");
    let (mono_wav, rate) = decode_all(data("mono-16bit.wav"), "wav", 4096);
    let (mono_aiff, _) = decode_all(data("mono-16bit.aiff"), "aiff", 333);
    assert_eq!((rate, mono_wav.len(), mono_wav[0].len()), (48_000, 1, 19_200));
    assert!(mono_wav == mono_aiff, "AIFF is lossless");
}

#[test]
fn lossy_formats_decode_to_the_right_length_and_level() {
    let (wav, _) = decode_all(data("reference-24bit.wav"), "wav", 4096);
    for (name, extension) in [("stereo.mp3", "mp3"), ("stereo.ogg", "ogg")] {
        let (decoded, rate) = decode_all(data(name), extension, 4096);
        assert_eq!((rate, decoded.len()), (44_100, 2), "{name}");
        let frames = decoded[0].len();
        assert!(frames.abs_diff(22_050) <= 1152, "{name}: {frames} frames, gapless within one MP3 frame");
        let level_db = 20.0 * (rms(&decoded[0][2000..20_000]) / rms(&wav[0][2000..20_000])).log10();
        assert!(level_db.abs() < 0.5, "{name}: level off by {level_db:.2} dB");
    }
}

#[test]
fn wav_bit_depths_decode_exactly() {
    let cases = [
        (16u16, hound::SampleFormat::Int, 32_768.0f32),
        (24, hound::SampleFormat::Int, 8_388_608.0),
        (32, hound::SampleFormat::Int, 2_147_483_648.0),
        (32, hound::SampleFormat::Float, 1.0),
    ];
    for (bits, format, scale) in cases {
        let spec = hound::WavSpec { channels: 1, sample_rate: 44_100, bits_per_sample: bits, sample_format: format };
        let mut cursor = Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        let values: Vec<f64> = (0..5000).map(|n| ((n as f64) * 0.01).sin() * 0.9).collect();
        let mut expected = Vec::new();
        for v in &values {
            match format {
                hound::SampleFormat::Float => {
                    writer.write_sample(*v as f32).unwrap();
                    expected.push(*v as f32);
                }
                hound::SampleFormat::Int => {
                    let i = (v * f64::from(scale)).round() as i64;
                    match bits {
                        16 => writer.write_sample(i as i16).unwrap(),
                        _ => writer.write_sample(i as i32).unwrap(),
                    }
                    expected.push((i as f64 / f64::from(scale)) as f32);
                }
            }
        }
        writer.finalize().unwrap();
        let (decoded, _) = decode_all(cursor.into_inner(), "wav", 777);
        assert_eq!(decoded[0], expected, "{bits}-bit {format:?}");
    }
}

/// Float WAV, what the stages write to each other, is unpacked by lacquer
/// itself: every bit of every sample comes back, left and right apart,
/// over full scale and under the normal range, whatever the blocks.
#[test]
fn stereo_float_wav_reads_back_every_bit() {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 96_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let frames = 3 * 1152 + 17;
    let left: Vec<f32> = (0..frames).map(|n| ((n as f32) * 0.013).sin() * 3.5).collect();
    let mut right: Vec<f32> = (0..frames).map(|n| ((n as f32) * 0.029).cos() * 1e-3).collect();
    right[5] = -0.0;
    right[6] = f32::MIN_POSITIVE / 8.0;
    right[7] = f32::MAX;
    let mut cursor = Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
    for (l, r) in left.iter().zip(&right) {
        writer.write_sample(*l).unwrap();
        writer.write_sample(*r).unwrap();
    }
    writer.finalize().unwrap();
    for block_frames in [1000, 4096] {
        let (decoded, rate) = decode_all(cursor.get_ref().clone(), "wav", block_frames);
        assert_eq!(rate, 96_000);
        let bits = |samples: &[f32]| samples.iter().map(|s| s.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&decoded[0]), bits(&left), "left, blocks of {block_frames}");
        assert_eq!(bits(&decoded[1]), bits(&right), "right, blocks of {block_frames}");
    }
}

#[test]
fn block_size_does_not_change_the_audio() {
    let (a, _) = decode_all(data("reference-24bit.flac"), "flac", 64);
    let (b, _) = decode_all(data("reference-24bit.flac"), "flac", 65_536);
    assert!(a == b);
}

#[test]
fn more_than_two_channels_is_refused_clearly() {
    let spec = hound::WavSpec {
        channels: 6,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cursor = Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
    for _ in 0..6000 {
        writer.write_sample(0i16).unwrap();
    }
    writer.finalize().unwrap();
    let bytes = cursor.into_inner();
    let length = bytes.len() as u64;
    let error = AudioReader::open(Cursor::new(bytes), length, Some("wav")).err().unwrap();
    assert_eq!(error, DecodeError::TooManyChannels(6));
    assert!(error.to_string().contains("6 channels"));
}

/// Decodes to the end or the first error.
fn decode_until_error(bytes: Vec<u8>, extension: &str) -> Result<u64, DecodeError> {
    let length = bytes.len() as u64;
    let mut reader = AudioReader::open(Cursor::new(bytes), length, Some(extension))?;
    let mut block = AudioBlock::new(reader.info().channels, 4096);
    while reader.read(&mut block, 4096)? > 0 {}
    Ok(reader.frames_read())
}

/// `bytes` with 40 bytes flipped from `at`.
fn damaged(mut bytes: Vec<u8>, at: usize) -> Vec<u8> {
    for b in &mut bytes[at..at + 40] {
        *b ^= 0x5a;
    }
    bytes
}

#[test]
fn a_skipped_damaged_frame_or_page_is_refused_with_its_time() {
    // symphonia's FLAC reader resyncs past a frame whose CRC fails, and its
    // Ogg reader past a broken page: the audio after it would run early.
    let flac = data("reference-24bit.flac");
    let at = flac.len() * 7 / 10;
    match decode_until_error(damaged(flac, at), "flac") {
        Err(DecodeError::Gap { at_s, missing_s }) => {
            assert!((0.2..0.4).contains(&at_s) && (0.05..0.2).contains(&missing_s), "{at_s} s, {missing_s} s");
        }
        other => panic!("a damaged FLAC frame must be refused, got {other:?}"),
    }
    // sines-4s.ogg: pages start at bytes 3961, 7181, 10307, 13456.
    let ogg = data("sines-4s.ogg");
    assert_eq!(decode_until_error(ogg.clone(), "ogg").unwrap(), 176_400, "undamaged, every frame");
    let error = decode_until_error(damaged(ogg, 7_500), "ogg").unwrap_err();
    let DecodeError::Gap { at_s, missing_s } = error else { panic!("{error:?}") };
    assert!((0.9..1.2).contains(&at_s) && (0.9..1.1).contains(&missing_s), "{at_s} s, {missing_s} s");
    let message = error.to_string();
    assert!(message.contains("missing at 1.01") && message.contains("damaged"), "{message}");
}

#[test]
fn non_finite_samples_are_refused_at_their_time() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 48_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut cursor = Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for n in 0..96_000 {
            writer.write_sample(0.1f32).unwrap();
            writer.write_sample(if n == 60_000 { bad } else { 0.1 }).unwrap();
        }
        writer.finalize().unwrap();
        let error = decode_until_error(cursor.into_inner(), "wav").unwrap_err();
        assert_eq!(error, DecodeError::NotFinite { at_s: 1.25 }, "{bad}");
        assert!(error.to_string().contains("at 1.250 s"), "{error}");
        // 64-bit float goes through symphonia's decoder (32-bit float is
        // unpacked by lacquer): the same check there.
        let error = decode_until_error(f64_wav(96_000, 60_000, f64::from(bad)), "wav").unwrap_err();
        assert_eq!(error, DecodeError::NotFinite { at_s: 1.25 }, "64-bit {bad}");
    }
}

/// A stereo 64-bit float WAV at 48 kHz of `frames` frames of 0.1, the
/// right channel's frame `at` being `bad` (hound writes no 64-bit float).
fn f64_wav(frames: u32, at: u32, bad: f64) -> Vec<u8> {
    let data_bytes = frames * 16;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data_bytes).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    // IEEE float, 2 channels, 48 kHz, bytes a second, block align, bits.
    bytes.extend_from_slice(&3u16.to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&48_000u32.to_le_bytes());
    bytes.extend_from_slice(&(48_000u32 * 16).to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(&64u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_bytes.to_le_bytes());
    for n in 0..frames {
        bytes.extend_from_slice(&0.1f64.to_le_bytes());
        bytes.extend_from_slice(&(if n == at { bad } else { 0.1 }).to_le_bytes());
    }
    bytes
}

#[test]
fn sample_rates_outside_8_to_384_khz_are_refused() {
    for (rate, accepted) in [(1, false), (7_999, false), (8_000, true), (384_000, true), (384_001, false)] {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut cursor = Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for _ in 0..16_000 {
            writer.write_sample(0i16).unwrap();
        }
        writer.finalize().unwrap();
        let bytes = cursor.into_inner();
        let length = bytes.len() as u64;
        let probed = lacquer_pipelines::decode::probe(Cursor::new(bytes.clone()), length, Some("wav"));
        let opened = AudioReader::open(Cursor::new(bytes), length, Some("wav")).map(|_| ());
        if accepted {
            assert!(probed.is_ok() && opened.is_ok(), "{rate} Hz");
        } else {
            assert_eq!(probed.unwrap_err(), DecodeError::SampleRate(rate));
            assert_eq!(opened.unwrap_err(), DecodeError::SampleRate(rate));
        }
    }
}
