//! Reading an audio file's header without decoding it: container, codec,
//! channels, rate, length. A quick look at the first and last packets proves
//! the file is decodable and not cut short.

use std::io::{Read, Seek};

use serde::{Deserialize, Serialize};
use symphonia::core::codecs::{CODEC_TYPE_NULL, CodecType, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader, SeekMode, SeekTo};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// What the header of an audio file says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioInfo {
    /// Container, e.g. `flac`, `wav`, `ogg`.
    pub container: String,
    /// Codec, e.g. `flac`, `pcm_s24le`, `vorbis`.
    pub codec: String,
    pub channels: usize,
    pub sample_rate_hz: u32,
    /// Bits per sample of the stored samples, for PCM-like codecs.
    pub bits_per_sample: Option<u32>,
    /// Length in frames, when the header says.
    pub frames: Option<u64>,
}

impl AudioInfo {
    pub fn duration_s(&self) -> Option<f64> {
        self.frames.map(|frames| frames as f64 / f64::from(self.sample_rate_hz))
    }
}

/// Why a file is not usable audio.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("the file is empty (0 bytes)")]
    Empty,
    #[error("not a readable audio file: {0}")]
    NotAudio(String),
    #[error("the file has no audio track")]
    NoAudioTrack,
    #[error("{codec} audio cannot be decoded: {detail}")]
    UnsupportedCodec { codec: String, detail: String },
    #[error("the file is damaged or cut short: {0}")]
    Damaged(String),
    #[error("cannot read the file: {0}")]
    Io(String),
}

/// A seekable byte source of known length that symphonia can read.
struct Source<R> {
    inner: R,
    length_bytes: u64,
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl<R: Seek> Seek for Source<R> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

impl<R: Read + Seek + Send + Sync> MediaSource for Source<R> {
    fn is_seekable(&self) -> bool {
        true
    }
    fn byte_len(&self) -> Option<u64> {
        Some(self.length_bytes)
    }
}

/// Probes `reader` (of `length_bytes` bytes). `extension` is a hint only.
pub fn probe<R>(mut reader: R, length_bytes: u64, extension: Option<&str>) -> Result<AudioInfo, ProbeError>
where
    R: Read + Seek + Send + Sync + 'static,
{
    if length_bytes == 0 {
        return Err(ProbeError::Empty);
    }
    let mut magic = [0u8; 12];
    let magic_len = read_up_to(&mut reader, &mut magic).map_err(|e| ProbeError::Io(e.to_string()))?;
    let container = container_name(&magic[..magic_len]);
    reader.seek(std::io::SeekFrom::Start(0)).map_err(|e| ProbeError::Io(e.to_string()))?;
    let stream = MediaSourceStream::new(Box::new(Source { inner: reader, length_bytes }), Default::default());
    let mut hint = Hint::new();
    if let Some(extension) = extension {
        hint.with_extension(extension);
    }
    let format_options = FormatOptions { enable_gapless: true, ..Default::default() };
    let probed = symphonia::default::get_probe()
        .format(&hint, stream, &format_options, &MetadataOptions::default())
        .map_err(|error| match error {
            SymphoniaError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                ProbeError::NotAudio("no known audio format found (file too short)".to_owned())
            }
            SymphoniaError::IoError(e) => ProbeError::Io(e.to_string()),
            SymphoniaError::Unsupported(_) => {
                ProbeError::NotAudio("no known audio format found (WAV, FLAC, AIFF, MP3, OGG Vorbis, ALAC)".to_owned())
            }
            other => ProbeError::NotAudio(other.to_string()),
        })?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|track| track.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or(ProbeError::NoAudioTrack)?
        .clone();
    let params = &track.codec_params;
    let codec = codec_name(params.codec);
    let sample_rate_hz =
        params.sample_rate.ok_or_else(|| ProbeError::Damaged("the header gives no sample rate".to_owned()))?;
    let channels = params.channels.map(|c| c.count()).unwrap_or(0);
    let info = AudioInfo {
        container: container.to_owned(),
        codec: codec.clone(),
        channels,
        sample_rate_hz,
        bits_per_sample: params.bits_per_sample,
        frames: params.n_frames,
    };

    let mut decoder = symphonia::default::get_codecs()
        .make(params, &DecoderOptions::default())
        .map_err(|error| ProbeError::UnsupportedCodec { codec: codec.clone(), detail: error.to_string() })?;
    decode_one_packet(format.as_mut(), decoder.as_mut(), track.id, "its first audio")?;

    // A file cut short still has its full length in the header: look at the
    // last half second to prove the data is all there.
    if let Some(frames) = info.frames {
        let tail_start = frames.saturating_sub(u64::from(sample_rate_hz / 2));
        if tail_start > 0 {
            format
                .seek(SeekMode::Accurate, SeekTo::TimeStamp { ts: tail_start, track_id: track.id })
                .map_err(|error| ProbeError::Damaged(format!("cannot reach its last half second ({error})")))?;
            decoder.reset();
            decode_one_packet(format.as_mut(), decoder.as_mut(), track.id, "its last half second of")?;
        }
    }
    if info.channels == 0 {
        return Err(ProbeError::Damaged("the header gives no channel count".to_owned()));
    }
    Ok(info)
}

fn decode_one_packet(
    format: &mut dyn FormatReader,
    decoder: &mut dyn symphonia::core::codecs::Decoder,
    track_id: u32,
    what: &str,
) -> Result<(), ProbeError> {
    loop {
        let packet = format.next_packet().map_err(|error| match error {
            SymphoniaError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                ProbeError::Damaged(format!("{what} audio is missing (the file ends early)"))
            }
            other => ProbeError::Damaged(format!("cannot read {what} audio: {other}")),
        })?;
        if packet.track_id() != track_id {
            continue;
        }
        return match decoder.decode(&packet) {
            Ok(_) => Ok(()),
            Err(error) => Err(ProbeError::Damaged(format!("cannot decode {what} audio: {error}"))),
        };
    }
}

fn codec_name(codec: CodecType) -> String {
    symphonia::default::get_codecs()
        .get_codec(codec)
        .map(|descriptor| descriptor.short_name.to_owned())
        .unwrap_or_else(|| format!("codec {codec}"))
}

/// The container named by a file's first bytes.
fn container_name(magic: &[u8]) -> &'static str {
    match magic {
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'A', b'V', b'E', ..] | [b'R', b'F', b'6', b'4', ..] => "wav",
        [b'F', b'O', b'R', b'M', _, _, _, _, b'A', b'I', b'F', b'C', ..] => "aifc",
        [b'F', b'O', b'R', b'M', ..] => "aiff",
        [b'f', b'L', b'a', b'C', ..] => "flac",
        [b'O', b'g', b'g', b'S', ..] => "ogg",
        [_, _, _, _, b'f', b't', b'y', b'p', ..] => "mp4",
        [b'I', b'D', b'3', ..] => "mp3",
        [0xFF, second, ..] if second & 0xE0 == 0xE0 => "mp3",
        _ => "unknown",
    }
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
