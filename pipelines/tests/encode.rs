//! Encoding round trips: every deliverable format decodes back bit-exact to
//! what was quantized, and carries its metadata.

mod support;

use std::io::Cursor;
use std::path::Path;

use lacquer_pipelines::decode::AudioReader;
use lacquer_pipelines::dsp::AudioBlock;
use lacquer_pipelines::dsp::dither::Quantizer;
use lacquer_pipelines::encode::{DeliveredLoudness, EncodeSpec, Encoder, Tags, dither_seed};
use lacquer_pipelines::manifest::{AudioFormat, Dither};
use support::flac_24_bit;

fn tags() -> Tags {
    Tags {
        title: "Aurora".into(),
        artist: "The Examples".into(),
        album: "Northern Lights".into(),
        isrc: Some("GBABC2600001".into()),
        label: Some("Example Records".into()),
        track_number: Some(1),
        track_total: Some(9),
    }
}

/// A stereo test signal with content down to the last bits and beyond full scale.
fn signal(frames: usize) -> Vec<Vec<f32>> {
    let left = (0..frames).map(|n| ((n as f64 * 0.013).sin() * 0.9 + (n as f64 * 0.7).sin() * 1e-5) as f32).collect();
    let right = (0..frames).map(|n| if n == 1000 { 1.2 } else { ((n as f64 * 0.021).cos() * 0.5) as f32 }).collect();
    vec![left, right]
}

fn encode(path: &Path, spec: &EncodeSpec, audio: &[Vec<f32>], loudness: Option<&DeliveredLoudness>) {
    let mut encoder = Encoder::create(path, spec.clone(), &tags()).unwrap();
    // Odd block sizes, as the finalize stage would produce them.
    let mut start = 0;
    for size in [1000usize, 4096, 333, 7000].iter().cycle() {
        if start >= audio[0].len() {
            break;
        }
        let end = (start + size).min(audio[0].len());
        encoder.write(&AudioBlock::from_planar(audio.iter().map(|c| c[start..end].to_vec()).collect())).unwrap();
        start = end;
    }
    encoder.finish(&tags(), loudness).unwrap();
}

fn decode(path: &Path) -> (Vec<Vec<f32>>, u32) {
    let bytes = std::fs::read(path).unwrap();
    let length = bytes.len() as u64;
    let extension = path.extension().unwrap().to_str().unwrap().to_owned();
    let mut reader = AudioReader::open(Cursor::new(bytes), length, Some(&extension)).unwrap();
    let mut block = AudioBlock::new(reader.info().channels, 4096);
    let mut out = vec![Vec::new(); reader.info().channels];
    while reader.read(&mut block, 4096).unwrap() > 0 {
        for (o, c) in out.iter_mut().zip(block.channels()) {
            o.extend_from_slice(c);
        }
    }
    (out, reader.info().sample_rate_hz)
}

#[test]
fn every_format_round_trips_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let audio = signal(20_011);
    let cases = [
        (AudioFormat::Wav, 16, Dither::Tpdf),
        (AudioFormat::Wav, 16, Dither::Shaped),
        (AudioFormat::Wav, 24, Dither::None),
        (AudioFormat::Wav, 32, Dither::None),
        (AudioFormat::Flac, 16, Dither::Tpdf),
        (AudioFormat::Flac, 24, Dither::None),
    ];
    for (format, bits, dither) in cases {
        let spec = EncodeSpec {
            format,
            bit_depth: bits,
            rate_hz: 48_000,
            channels: 2,
            dither,
            dither_seed: dither_seed("01-aurora", "cd"),
        };
        let path = dir.path().join(format!("out-{bits}-{dither:?}.{}", format.extension()));
        encode(&path, &spec, &audio, None);
        let (decoded, rate) = decode(&path);
        assert_eq!(rate, 48_000);
        let expected: Vec<Vec<f32>> = if bits == 32 {
            audio.clone()
        } else {
            let mut quantizer = Quantizer::new(dither, bits, 2, spec.dither_seed);
            let scale = (1u32 << (bits - 1)) as f32;
            let mut expected = vec![Vec::new(), Vec::new()];
            for (left, right) in audio[0].iter().zip(&audio[1]) {
                expected[0].push(quantizer.quantize(0, *left) as f32 / scale);
                expected[1].push(quantizer.quantize(1, *right) as f32 / scale);
            }
            expected
        };
        assert!(
            decoded == expected,
            "{bits}-bit {format:?} with {dither:?}: the decode differs from what was quantized"
        );
        // The same input and seed give the same bytes.
        let again = dir.path().join(format!("again.{}", format.extension()));
        encode(&again, &spec, &audio, None);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&again).unwrap(),
            "{bits}-bit {format:?} is deterministic"
        );
    }
}

/// The chunks of a RIFF file: (id, body).
fn riff_chunks(bytes: &[u8]) -> Vec<([u8; 4], Vec<u8>)> {
    assert_eq!(&bytes[0..4], b"RIFF");
    assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize, bytes.len() - 8, "RIFF size");
    let mut chunks = Vec::new();
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id: [u8; 4] = bytes[at..at + 4].try_into().unwrap();
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        chunks.push((id, bytes[at + 8..at + 8 + size].to_vec()));
        at += 8 + size + size % 2;
    }
    assert_eq!(at, bytes.len(), "chunks fill the file exactly");
    chunks
}

#[test]
fn wav_carries_info_and_bext() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("01-aurora.wav");
    let spec = EncodeSpec {
        format: AudioFormat::Wav,
        bit_depth: 24,
        rate_hz: 44_100,
        channels: 2,
        dither: Dither::None,
        dither_seed: 0,
    };
    let loudness = DeliveredLoudness {
        integrated_lufs: Some(-14.02),
        loudness_range_lu: 6.5,
        true_peak_dbtp: -1.04,
        max_short_term_lufs: Some(-11.3),
    };
    encode(&path, &spec, &signal(5000), Some(&loudness));
    let bytes = std::fs::read(&path).unwrap();
    let chunks = riff_chunks(&bytes);
    let ids: Vec<&[u8; 4]> = chunks.iter().map(|(id, _)| id).collect();
    assert!(
        ids.contains(&b"fmt ") && ids.contains(&b"data") && ids.contains(&b"LIST") && ids.contains(&b"bext"),
        "{ids:?}"
    );
    let list = &chunks.iter().find(|(id, _)| id == b"LIST").unwrap().1;
    assert_eq!(&list[0..4], b"INFO");
    let text = String::from_utf8_lossy(list);
    for expected in ["INAM", "Aurora", "IART", "The Examples", "IPRD", "Northern Lights", "ISRC", "GBABC2600001"] {
        assert!(text.contains(expected), "INFO lacks {expected}");
    }
    let bext = &chunks.iter().find(|(id, _)| id == b"bext").unwrap().1;
    assert!(bext.starts_with(b"ISRC:GBABC2600001"), "EBU Tech 3352 ISRC in the description");
    assert_eq!(u16::from_le_bytes(bext[346..348].try_into().unwrap()), 2, "BWF version 2");
    let field = |offset: usize| i16::from_le_bytes(bext[offset..offset + 2].try_into().unwrap());
    assert_eq!((field(412), field(414), field(416), field(420)), (-1402, 650, -104, -1130), "loudness in hundredths");
    assert_eq!(field(418), 0x7fff, "momentary max not given");
    assert!(String::from_utf8_lossy(&bext[602..]).starts_with("A=PCM,F=44100,W=24,M=stereo"));
}

#[test]
fn flac_carries_vorbis_comments_and_a_valid_md5() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("01-aurora.flac");
    let spec = flac_24_bit(96_000);
    encode(&path, &spec, &signal(50_000), None);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[0..4], b"fLaC");
    let text = String::from_utf8_lossy(&bytes[..2000]);
    for expected in
        ["TITLE=Aurora", "ARTIST=The Examples", "ALBUM=Northern Lights", "ISRC=GBABC2600001", "TRACKNUMBER=1"]
    {
        assert!(text.contains(expected), "Vorbis comments lack {expected}");
    }
    // Total samples in STREAMINFO (36 bits after rate/channels/bits).
    let info = &bytes[8..42];
    let total = (u64::from(info[13] & 0x0f) << 32) | u64::from(u32::from_be_bytes(info[14..18].try_into().unwrap()));
    assert_eq!(total, 50_000);
    assert_ne!(&info[18..34], &[0u8; 16], "the MD5 is filled in");
    // The reference decoder checks the MD5 and every frame's CRC, when installed.
    if let Ok(status) = std::process::Command::new("flac").args(["--test", "--silent"]).arg(&path).status() {
        assert!(status.success(), "flac --test rejects the file");
    }
}

/// Loud 24-bit noise cannot be predicted: the FLAC frames must then fall
/// back to verbatim samples, never grow beyond PCM (a Rice parameter capped
/// at 14 would spend hundreds of bits per sample), and still round-trip.
#[test]
fn incompressible_flac_stays_under_pcm_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noise.flac");
    let frames = 44_100 * 3;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut noise = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 1.9
    };
    // White noise, and noise with a falling spectrum that prediction only
    // partly removes (the residual is still far beyond 14-bit Rice codes).
    let white: Vec<f32> = (0..frames).map(|_| noise()).collect();
    let mut lowpassed = 0f32;
    let coloured: Vec<f32> = (0..frames)
        .map(|_| {
            lowpassed = 0.9 * lowpassed + 0.1 * noise();
            lowpassed * 3.0 + noise() * 0.05
        })
        .collect();
    let audio = vec![white, coloured];
    let spec = flac_24_bit(44_100);
    encode(&path, &spec, &audio, None);
    let size = std::fs::metadata(&path).unwrap().len();
    let pcm = (frames * 2 * 3) as u64;
    assert!(size <= pcm + pcm / 100, "{size} bytes of FLAC for {pcm} bytes of PCM");
    let (decoded, _) = decode(&path);
    let mut quantizer = Quantizer::new(Dither::None, 24, 2, 0);
    for (c, channel) in audio.iter().enumerate() {
        for (n, &sample) in channel.iter().enumerate() {
            let expected = quantizer.quantize(c, sample) as f32 / 8_388_608.0;
            assert_eq!(decoded[c][n], expected, "frame {n} channel {c}");
        }
    }
}

/// FLAC is searched with linear prediction to order 8 and no fixed
/// predictors, and each stereo block predicts only the pair of channels
/// (left/right, left/side, right/side, mid/side) an estimate picks
/// (faster than flacenc's defaults: see the album benchmark). On music
/// (two of the example's stems, as a 24-bit master would hold them: apart,
/// mixed into a correlated pair, and nearly mono) that costs at most 2% in
/// size against the defaults, which predict all four channels and keep
/// the best pair, and the file still decodes bit-exact.
#[test]
fn flac_of_music_costs_no_more_than_flacencs_defaults() {
    use flacenc::component::BitRepr;
    use flacenc::error::Verify;
    let stem = |name: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/album-small/02-maple-leaf").join(name);
        let (channels, _) = decode(&path);
        // Below full scale, so the 24-bit samples use their low bits as a master's do.
        channels[0][..44_100 * 6].iter().map(|s| s * 0.7).collect::<Vec<f32>>()
    };
    let (piano, clarinet) = (stem("piano.flac"), stem("clarinet.flac"));
    let mix = |a: f32, b: f32| piano.iter().zip(&clarinet).map(|(p, c)| a * p + b * c).collect::<Vec<f32>>();
    let pairs = [
        ("apart", vec![piano.clone(), clarinet.clone()]),
        ("mixed", vec![mix(0.7, 0.3), mix(0.5, 0.5)]),
        ("nearly mono", vec![mix(0.6, 0.4), mix(0.6, 0.39)]),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (what, audio) in pairs {
        let spec = flac_24_bit(44_100);
        let path = dir.path().join("music.flac");
        encode(&path, &spec, &audio, None);
        let (decoded, _) = decode(&path);
        let mut quantizer = Quantizer::new(Dither::None, 24, 2, 0);
        let mut interleaved = vec![0; 2 * audio[0].len()];
        quantizer.quantize_frames(&audio[0], Some(&audio[1]), &mut interleaved);
        for (c, channel) in decoded.iter().enumerate() {
            assert!(
                channel.iter().zip(interleaved[c..].iter().step_by(2)).all(|(d, q)| *d == *q as f32 / (1 << 23) as f32),
                "{what}: channel {c} decodes bit-exact"
            );
        }
        let ours = std::fs::metadata(&path).unwrap().len();
        let mut config = flacenc::config::Encoder::default();
        config.block_size = 4096;
        let config = config.into_verified().unwrap();
        let source = flacenc::source::MemSource::from_samples(&interleaved, 2, 24, 44_100);
        let stream = flacenc::encode_with_fixed_block_size(&config, source, 4096).unwrap();
        let mut sink = flacenc::bitsink::ByteSink::new();
        stream.write(&mut sink).unwrap();
        let defaults = sink.as_slice().len() as u64;
        eprintln!("{what}: lacquer's FLAC {ours} bytes, flacenc's defaults {defaults} bytes");
        assert!(ours * 100 <= defaults * 102, "{what}: {ours} bytes against {defaults} with flacenc's defaults");
    }
}

#[test]
fn a_scratch_file_is_the_file_finish_writes() {
    let dir = tempfile::tempdir().unwrap();
    let audio = signal(9_001);
    for (format, bits, extension) in [(AudioFormat::Wav, 32, "wav"), (AudioFormat::Flac, 24, "flac")] {
        let spec =
            EncodeSpec { format, bit_depth: bits, rate_hz: 48_000, channels: 2, dither: Dither::None, dither_seed: 1 };
        let (finished, scratch) =
            (dir.path().join(format!("finished.{extension}")), dir.path().join(format!("scratch.{extension}")));
        let mut encoder = Encoder::create(&finished, spec.clone(), &Tags::default()).unwrap();
        encoder.write(&AudioBlock::from_planar(audio.clone())).unwrap();
        encoder.finish(&Tags::default(), None).unwrap();
        let mut encoder = Encoder::create(&scratch, spec, &Tags::default()).unwrap();
        encoder.write(&AudioBlock::from_planar(audio.clone())).unwrap();
        encoder.finish_scratch().unwrap();
        assert_eq!(std::fs::read(&finished).unwrap(), std::fs::read(&scratch).unwrap(), "{format:?}");
        assert_eq!(decode(&scratch).0, decode(&finished).0);
    }
}
