//! Reading audio files with symphonia: [`probe`] reads a header without
//! decoding the file (a quick look at the first and last packets proves it
//! decodable and not cut short); [`AudioReader`] decodes it as a stream of
//! planar `f32` blocks, never holding the whole file; `FlacFrameCheck`
//! decodes the frames of a FLAC being written, to prove it readable.
//!
//! WAV (16/24/32-bit integer, 32-bit float), FLAC, AIFF, MP3, OGG Vorbis and
//! ALAC; mono or stereo.

use std::io::{Read, Seek};

use serde::{Deserialize, Serialize};
use symphonia::core::audio::{AudioBufferRef, SampleBuffer};
use symphonia::core::codecs::{CODEC_TYPE_NULL, CODEC_TYPE_PCM_F32LE, CodecType, Decoder, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader, SeekMode, SeekTo};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::audio::AudioBlock;

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
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
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
    #[error("the file has {0} channels; lacquer takes mono or stereo files")]
    TooManyChannels(usize),
    #[error(
        "{missing_s:.3} s of audio are missing at {at_s:.3} s (a damaged frame or page): refused rather than let \
         everything after it run early"
    )]
    Gap { at_s: f64, missing_s: f64 },
    #[error("a sample at {at_s:.3} s is not a number (NaN or infinite): the file is damaged or was written wrongly")]
    NotFinite { at_s: f64 },
    #[error("the sample rate is {0} Hz; lacquer reads audio at 8,000 to 384,000 Hz")]
    SampleRate(u32),
}

/// The sample rates an input may have.
pub const INPUT_RATES_HZ: std::ops::RangeInclusive<u32> = 8_000..=384_000;

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

/// Probes `reader` (of `length_bytes` bytes): reads the header, decodes
/// the first packet and one in the last half second. `extension` is a hint
/// only. Files with more than two channels probe fine (their channel count
/// is reported); [`AudioReader::open`] refuses them.
pub fn probe<R>(reader: R, length_bytes: u64, extension: Option<&str>) -> Result<AudioInfo, DecodeError>
where
    R: Read + Seek + Send + Sync + 'static,
{
    let mut opened = Opened::new(reader, length_bytes, extension)?;
    opened.look_at_both_ends()?;
    Ok(opened.info)
}

/// A finished FLAC file read back as [`probe`] reads any file, and the MD5
/// its STREAMINFO carries.
pub(crate) fn probe_flac(path: &std::path::Path) -> Result<(AudioInfo, Option<[u8; 16]>), DecodeError> {
    let file = std::fs::File::open(path).map_err(|e| DecodeError::Io(e.to_string()))?;
    let length_bytes = file.metadata().map_err(|e| DecodeError::Io(e.to_string()))?.len();
    let mut opened = Opened::new(file, length_bytes, Some("flac"))?;
    opened.look_at_both_ends()?;
    let md5 = match opened.decoder.codec_params().verification_check {
        Some(symphonia::core::codecs::VerificationCheck::Md5(md5)) => Some(md5),
        _ => None,
    };
    Ok((opened.info, md5))
}

/// A file opened for decoding: its format reader, decoder and header.
struct Opened {
    format: Box<dyn FormatReader>,
    decoder: Box<dyn Decoder>,
    track_id: u32,
    codec: CodecType,
    /// Seconds per packet timestamp unit.
    time_base_s: f64,
    info: AudioInfo,
}

impl Opened {
    /// Decodes the first packet and one in the last half second: a file
    /// cut short still has its full length in the header.
    fn look_at_both_ends(&mut self) -> Result<(), DecodeError> {
        decode_one_packet(self.format.as_mut(), self.decoder.as_mut(), self.track_id, "its first")?;
        if let Some(frames) = self.info.frames {
            let tail_start = frames.saturating_sub(u64::from(self.info.sample_rate_hz / 2));
            if tail_start > 0 {
                self.format
                    .seek(SeekMode::Accurate, SeekTo::TimeStamp { ts: tail_start, track_id: self.track_id })
                    .map_err(|error| DecodeError::Damaged(format!("cannot reach its last half second ({error})")))?;
                self.decoder.reset();
                decode_one_packet(
                    self.format.as_mut(),
                    self.decoder.as_mut(),
                    self.track_id,
                    "its last half second of",
                )?;
            }
        }
        Ok(())
    }

    fn new<R>(reader: R, length_bytes: u64, extension: Option<&str>) -> Result<Self, DecodeError>
    where
        R: Read + Seek + Send + Sync + 'static,
    {
        Self::with_options(reader, length_bytes, extension, &DecoderOptions::default())
    }

    fn with_options<R>(
        mut reader: R,
        length_bytes: u64,
        extension: Option<&str>,
        options: &DecoderOptions,
    ) -> Result<Self, DecodeError>
    where
        R: Read + Seek + Send + Sync + 'static,
    {
        if length_bytes == 0 {
            return Err(DecodeError::Empty);
        }
        let mut magic = [0u8; 12];
        let magic_len = read_up_to(&mut reader, &mut magic).map_err(|e| DecodeError::Io(e.to_string()))?;
        let container = container_name(&magic[..magic_len]);
        reader.seek(std::io::SeekFrom::Start(0)).map_err(|e| DecodeError::Io(e.to_string()))?;
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
                    DecodeError::NotAudio("no known audio format found (file too short)".to_owned())
                }
                SymphoniaError::IoError(e) => DecodeError::Io(e.to_string()),
                // A known container whose data is wrong (a CRC mismatch).
                SymphoniaError::DecodeError(detail) => DecodeError::Damaged(detail.to_owned()),
                SymphoniaError::Unsupported(_) => DecodeError::NotAudio(
                    "no known audio format found (WAV, FLAC, AIFF, MP3, OGG Vorbis, ALAC)".to_owned(),
                ),
                other => DecodeError::NotAudio(other.to_string()),
            })?;
        let format = probed.format;
        let track = format
            .tracks()
            .iter()
            .find(|track| track.codec_params.codec != CODEC_TYPE_NULL)
            .ok_or(DecodeError::NoAudioTrack)?
            .clone();
        let params = &track.codec_params;
        let codec = codec_name(params.codec);
        let sample_rate_hz =
            params.sample_rate.ok_or_else(|| DecodeError::Damaged("the header gives no sample rate".to_owned()))?;
        if !INPUT_RATES_HZ.contains(&sample_rate_hz) {
            return Err(DecodeError::SampleRate(sample_rate_hz));
        }
        let time_base_s = params
            .time_base
            .filter(|base| base.numer > 0 && base.denom > 0)
            .map_or(1.0 / f64::from(sample_rate_hz), |base| f64::from(base.numer) / f64::from(base.denom));
        let mut format = format;
        let mut decoder = symphonia::default::get_codecs()
            .make(params, options)
            .map_err(|error| DecodeError::UnsupportedCodec { codec: codec.clone(), detail: error.to_string() })?;
        let decoded_params = decoder.codec_params().clone();
        let mut channels = params.channels.or(decoded_params.channels).map(|c| c.count()).unwrap_or(0);
        if channels == 0 {
            // Some codecs (ALAC in MP4) keep the layout in their own setup
            // data: decode one packet to learn it, then start again.
            channels = first_packet_channels(format.as_mut(), decoder.as_mut(), track.id)?;
            format
                .seek(SeekMode::Accurate, SeekTo::TimeStamp { ts: 0, track_id: track.id })
                .map_err(|error| DecodeError::Damaged(format!("cannot return to the start ({error})")))?;
            decoder.reset();
        }
        let info = AudioInfo {
            container: container.to_owned(),
            codec,
            channels,
            sample_rate_hz,
            bits_per_sample: params.bits_per_sample.or(decoded_params.bits_per_sample),
            frames: params.n_frames,
        };
        Ok(Self { format, decoder, track_id: track.id, codec: params.codec, time_base_s, info })
    }
}

/// A FLAC frame as written, and the interleaved samples it was made from.
#[derive(Default, Clone)]
struct WrittenFrame {
    bytes: Vec<u8>,
    samples: Vec<i32>,
}

/// What the frames checked so far decode to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CheckedFlac {
    /// The MD5 of the decoded samples, as STREAMINFO sums them.
    pub md5: [u8; 16],
    pub frames: u64,
}

/// Frames queued ahead of the checker.
const QUEUED_FRAMES: usize = 4;

/// Proves each FLAC frame readable as the encoder writes it, on a thread of
/// its own: the frame's CRC-16 checked, its header (CRC-8 included) and
/// subframes decoded by symphonia's FLAC decoder, the samples compared bit
/// for bit with those the frame was made from, and their MD5 taken as
/// STREAMINFO takes it, for the finished file's to be compared with. The
/// frames and their samples go round in a few buffers (symphonia's
/// packet still copies each frame, as its demuxer would), and the encoder
/// never waits for the file to be read back whole.
pub(crate) struct FlacFrameCheck {
    frames: Option<std::sync::mpsc::SyncSender<WrittenFrame>>,
    spare: std::sync::mpsc::Receiver<WrittenFrame>,
    worker: Option<std::thread::JoinHandle<Result<CheckedFlac, String>>>,
}

impl FlacFrameCheck {
    /// Starts a checker for a stream whose STREAMINFO body (34 bytes; its
    /// MD5 and length may still be unknown) is `stream_info`.
    pub(crate) fn spawn(stream_info: &[u8], channels: usize, bits: u32) -> Result<Self, DecodeError> {
        use symphonia::core::codecs::{CODEC_TYPE_FLAC, CodecParameters};
        let params = CodecParameters::new().for_codec(CODEC_TYPE_FLAC).with_extra_data(stream_info.into()).clone();
        let mut decoder = symphonia::default::get_codecs()
            .make(&params, &DecoderOptions::default())
            .map_err(|e| DecodeError::UnsupportedCodec { codec: "flac".to_owned(), detail: e.to_string() })?;
        let (frames, queued) = std::sync::mpsc::sync_channel::<WrittenFrame>(QUEUED_FRAMES);
        let (give_back, spare) = std::sync::mpsc::sync_channel::<WrittenFrame>(QUEUED_FRAMES + 1);
        for _ in 0..=QUEUED_FRAMES {
            give_back.send(WrittenFrame::default()).expect("room for every buffer");
        }
        let worker = std::thread::Builder::new()
            .name("flac-check".to_owned())
            .spawn(move || {
                let mut checked =
                    Checker { md5: <md5::Md5 as md5::Digest>::new(), frames: 0, channels, bits, bytes: Vec::new() };
                let mut failed = None;
                for (number, frame) in queued.into_iter().enumerate() {
                    if failed.is_none()
                        && let Err(e) = checked.frame(decoder.as_mut(), &frame)
                    {
                        failed = Some(format!("frame {number} (from sample {}): {e}", checked.frames));
                    }
                    // The encoder may have stopped taking buffers back.
                    let _ = give_back.send(frame);
                }
                match failed {
                    Some(e) => Err(e),
                    None => Ok(CheckedFlac { md5: md5::Digest::finalize(checked.md5).into(), frames: checked.frames }),
                }
            })
            .map_err(|e| DecodeError::Io(e.to_string()))?;
        Ok(Self { frames: Some(frames), spare, worker: Some(worker) })
    }

    /// Hands over one frame as written and the samples it was made from.
    pub(crate) fn push(&mut self, bytes: &[u8], samples: &[i32]) {
        let (Some(frames), Ok(mut frame)) = (&self.frames, self.spare.recv()) else { return };
        frame.bytes.clear();
        frame.bytes.extend_from_slice(bytes);
        frame.samples.clear();
        frame.samples.extend_from_slice(samples);
        // A checker gone has its reason waiting in `finish`.
        let _ = frames.send(frame);
    }

    /// What every frame decoded to, or why one did not read back.
    pub(crate) fn finish(mut self) -> Result<CheckedFlac, String> {
        drop(self.frames.take());
        match self.worker.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            _ => Err("the FLAC checker stopped".to_owned()),
        }
    }
}

struct Checker {
    md5: md5::Md5,
    frames: u64,
    channels: usize,
    bits: u32,
    /// One frame's decoded samples as MD5 bytes.
    bytes: Vec<u8>,
}

impl Checker {
    fn frame(&mut self, decoder: &mut dyn Decoder, frame: &WrittenFrame) -> Result<(), String> {
        use symphonia::core::audio::Signal;
        use symphonia::core::checksum::Crc16Ansi;
        use symphonia::core::io::Monitor;
        let Some((body, crc)) = frame.bytes.split_last_chunk::<2>() else {
            return Err("shorter than a frame".to_owned());
        };
        let mut crc16 = Crc16Ansi::new(0);
        crc16.process_buf_bytes(body);
        if crc16.crc() != u16::from_be_bytes(*crc) {
            return Err("its CRC-16 does not match its bytes".to_owned());
        }
        let packet = symphonia::core::formats::Packet::new_from_slice(0, self.frames, 0, &frame.bytes);
        let decoded = decoder.decode(&packet).map_err(|e| format!("cannot be decoded: {e}"))?;
        let AudioBufferRef::S32(decoded) = decoded else { return Err("decodes to no integer samples".to_owned()) };
        let frames = decoded.frames();
        if decoded.spec().channels.count() != self.channels || frames * self.channels != frame.samples.len() {
            return Err(format!(
                "decodes to {frames} frames of {} channels, not the {} samples it was made from",
                decoded.spec().channels.count(),
                frame.samples.len()
            ));
        }
        // Symphonia lifts every sample to 32 bits.
        let shift = 32 - self.bits;
        let width = self.bits as usize / 8;
        self.bytes.resize(frame.samples.len() * width, 0);
        for channel in 0..self.channels {
            let samples = frame.samples[channel..].iter().step_by(self.channels);
            let bytes = self.bytes.chunks_exact_mut(width).skip(channel).step_by(self.channels);
            for (n, ((value, made), bytes)) in decoded.chan(channel).iter().zip(samples).zip(bytes).enumerate() {
                let value = value >> shift;
                if value != *made {
                    return Err(format!("sample {n} of channel {channel} decodes to {value}, not {made}"));
                }
                bytes.copy_from_slice(&value.to_le_bytes()[..width]);
            }
        }
        md5::Digest::update(&mut self.md5, &self.bytes);
        self.frames += frames as u64;
        Ok(())
    }
}

/// Decodes a file as a stream of planar `f32` blocks.
///
/// Little-endian 32-bit float PCM (what every stage writes between
/// stages) is unpacked here straight from the demuxer's packets, one pass
/// from bytes to planar samples: symphonia's PCM decoder would convert it
/// sample by sample into its own buffer, to be copied out again.
pub struct AudioReader {
    opened: Opened,
    /// The last packet's samples, planar (channel after channel), when
    /// the decoder made them.
    decoded: Option<SampleBuffer<f32>>,
    /// The same, unpacked here from float PCM.
    unpacked: Vec<f32>,
    decoded_frames: usize,
    /// Frames of the last packet already handed out.
    consumed_frames: usize,
    frames_read: u64,
    /// Frames of all packets decoded so far.
    frames_decoded: u64,
    /// Where the next packet should start (packet timestamp units): a
    /// later start means the demuxer skipped damaged data.
    next_ts: Option<u64>,
    finished: bool,
}

impl AudioReader {
    /// Opens `reader` (of `length_bytes` bytes) for decoding.
    pub fn open<R>(reader: R, length_bytes: u64, extension: Option<&str>) -> Result<Self, DecodeError>
    where
        R: Read + Seek + Send + Sync + 'static,
    {
        let opened = Opened::new(reader, length_bytes, extension)?;
        if opened.info.channels > 2 {
            return Err(DecodeError::TooManyChannels(opened.info.channels));
        }
        Ok(Self {
            opened,
            decoded: None,
            unpacked: Vec::new(),
            decoded_frames: 0,
            consumed_frames: 0,
            frames_read: 0,
            frames_decoded: 0,
            next_ts: None,
            finished: false,
        })
    }

    pub fn info(&self) -> &AudioInfo {
        &self.opened.info
    }

    /// Frames handed out so far.
    pub fn frames_read(&self) -> u64 {
        self.frames_read
    }

    /// Fills `block` with up to `max_frames` of the next frames (the block
    /// must have room for them) and returns how many; 0 at the end.
    pub fn read(&mut self, block: &mut AudioBlock, max_frames: usize) -> Result<usize, DecodeError> {
        debug_assert_eq!(block.channel_count(), self.opened.info.channels);
        block.set_frames(max_frames);
        let mut filled = 0;
        while filled < max_frames {
            if self.consumed_frames == self.decoded_frames && !self.next_packet()? {
                break;
            }
            let take = (self.decoded_frames - self.consumed_frames).min(max_frames - filled);
            let samples = self.packet_samples();
            for channel in 0..block.channel_count() {
                let start = channel * self.decoded_frames + self.consumed_frames;
                block.channel_mut(channel)[filled..filled + take].copy_from_slice(&samples[start..start + take]);
            }
            self.consumed_frames += take;
            filled += take;
        }
        block.set_frames(filled);
        self.frames_read += filled as u64;
        Ok(filled)
    }

    /// The last packet's samples, planar.
    fn packet_samples(&self) -> &[f32] {
        match &self.decoded {
            Some(decoded) if self.opened.codec != CODEC_TYPE_PCM_F32LE => decoded.samples(),
            _ => &self.unpacked,
        }
    }

    /// Decodes the next packet of our track; false at the end of the stream.
    fn next_packet(&mut self) -> Result<bool, DecodeError> {
        if self.finished {
            return Ok(false);
        }
        loop {
            let packet = match self.opened.format.next_packet() {
                Ok(packet) => packet,
                Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    self.finished = true;
                    return Ok(false);
                }
                Err(error) => {
                    return Err(DecodeError::Damaged(format!(
                        "cannot read past {:.3} s: {error}",
                        self.frames_decoded as f64 / f64::from(self.opened.info.sample_rate_hz)
                    )));
                }
            };
            if packet.track_id() != self.opened.track_id {
                continue;
            }
            if let Some(expected) = self.next_ts
                && packet.ts() > expected
            {
                let base = self.opened.time_base_s;
                return Err(DecodeError::Gap {
                    at_s: expected as f64 * base,
                    missing_s: (packet.ts() - expected) as f64 * base,
                });
            }
            self.next_ts = Some(packet.ts() + packet.dur());
            let channels = self.opened.info.channels;
            let at_s = |frame: u64| frame as f64 / f64::from(self.opened.info.sample_rate_hz);
            let mut float = true;
            let frames = if self.opened.codec == CODEC_TYPE_PCM_F32LE {
                unpack_f32le(packet.buf(), channels, &mut self.unpacked)
            } else {
                let decoded = self.opened.decoder.decode(&packet).map_err(|error| {
                    DecodeError::Damaged(format!(
                        "cannot decode the audio at {:.3} s: {error}",
                        at_s(self.frames_decoded)
                    ))
                })?;
                float = matches!(decoded, AudioBufferRef::F32(_) | AudioBufferRef::F64(_));
                let frames = decoded.frames();
                let needs_room = self.decoded.as_ref().is_none_or(|b| b.capacity() < frames * channels);
                if needs_room {
                    self.decoded = Some(SampleBuffer::new(decoded.capacity() as u64, *decoded.spec()));
                }
                if let Some(buffer) = &mut self.decoded {
                    buffer.copy_planar_ref(decoded);
                }
                frames
            };
            if frames == 0 {
                continue;
            }
            // Float files can hold NaN or infinities (integer ones cannot);
            // nothing downstream may see them (filters would spread them,
            // caches keep them).
            let samples = self.packet_samples();
            if float && let Some(index) = samples[..frames * channels].iter().position(|s| !s.is_finite()) {
                return Err(DecodeError::NotFinite { at_s: at_s(self.frames_decoded + (index % frames) as u64) });
            }
            self.decoded_frames = frames;
            self.consumed_frames = 0;
            self.frames_decoded += frames as u64;
            return Ok(true);
        }
    }
}

/// Unpacks interleaved little-endian `f32` frames into `planar` (channel
/// after channel) and returns how many whole frames there were.
fn unpack_f32le(bytes: &[u8], channels: usize, planar: &mut Vec<f32>) -> usize {
    let frames = bytes.len() / (4 * channels);
    planar.resize(frames * channels, 0.0);
    let sample = |b: &[u8]| f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    match channels {
        2 => {
            let (left, right) = planar.split_at_mut(frames);
            for ((frame, l), r) in bytes.chunks_exact(8).zip(left).zip(right) {
                *l = sample(&frame[..4]);
                *r = sample(&frame[4..]);
            }
        }
        _ => {
            for (frame, bytes) in bytes.chunks_exact(4 * channels).enumerate() {
                for (channel, b) in bytes.chunks_exact(4).enumerate() {
                    planar[channel * frames + frame] = sample(b);
                }
            }
        }
    }
    frames
}

fn first_packet_channels(
    format: &mut dyn FormatReader,
    decoder: &mut dyn Decoder,
    track_id: u32,
) -> Result<usize, DecodeError> {
    loop {
        let packet = format.next_packet().map_err(|error| DecodeError::Damaged(format!("no audio packet: {error}")))?;
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = decoder
            .decode(&packet)
            .map_err(|error| DecodeError::Damaged(format!("cannot decode its first audio: {error}")))?;
        return match decoded.spec().channels.count() {
            0 => Err(DecodeError::Damaged("the audio has no channels".to_owned())),
            count => Ok(count),
        };
    }
}

fn decode_one_packet(
    format: &mut dyn FormatReader,
    decoder: &mut dyn Decoder,
    track_id: u32,
    what: &str,
) -> Result<(), DecodeError> {
    loop {
        let packet = format.next_packet().map_err(|error| match error {
            SymphoniaError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                DecodeError::Damaged(format!("{what} audio is missing (the file ends early)"))
            }
            other => DecodeError::Damaged(format!("cannot read {what} audio: {other}")),
        })?;
        if packet.track_id() != track_id {
            continue;
        }
        return match decoder.decode(&packet) {
            Ok(_) => Ok(()),
            Err(error) => Err(DecodeError::Damaged(format!("cannot decode {what} audio: {error}"))),
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

#[cfg(test)]
mod tests {
    use super::*;
    use flacenc::component::{BitRepr, StreamInfo};
    use flacenc::error::Verify;
    use flacenc::source::{Fill, FrameBuf};

    const BLOCK: usize = 1024;

    /// A STREAMINFO body and three frames of a 16-bit stereo stream as
    /// flacenc writes them, each with the samples it was made from.
    fn stream() -> (Vec<u8>, Vec<WrittenFrame>) {
        let config = flacenc::config::Encoder::default().into_verified().unwrap();
        let mut info = StreamInfo::new(44_100, 2, 16).unwrap();
        let frames = (0..3)
            .map(|number| {
                let samples: Vec<i32> = (0..2 * BLOCK)
                    .map(|i| {
                        let t = (number * BLOCK + i / 2) as f64;
                        (12_000.0 * (t * 0.031 + (i % 2) as f64).sin()) as i32
                    })
                    .collect();
                let mut buffer = FrameBuf::with_size(2, BLOCK).unwrap();
                buffer.fill_interleaved(&samples).unwrap();
                let frame = flacenc::encode_fixed_size_frame(&config, &buffer, number, &info).unwrap();
                let mut sink = flacenc::bitsink::ByteSink::new();
                frame.write(&mut sink).unwrap();
                WrittenFrame { bytes: sink.as_slice().to_vec(), samples }
            })
            .collect();
        info.set_block_sizes(BLOCK, BLOCK).unwrap();
        let mut sink = flacenc::bitsink::ByteSink::new();
        info.write(&mut sink).unwrap();
        (sink.as_slice().to_vec(), frames)
    }

    fn check(stream_info: &[u8], frames: &[WrittenFrame]) -> Result<CheckedFlac, String> {
        let mut check = FlacFrameCheck::spawn(stream_info, 2, 16).unwrap();
        for frame in frames {
            check.push(&frame.bytes, &frame.samples);
        }
        check.finish()
    }

    #[test]
    fn frames_that_decode_to_their_samples_pass_with_their_md5() {
        use md5::Digest;
        let (stream_info, frames) = stream();
        let checked = check(&stream_info, &frames).unwrap();
        let bytes: Vec<u8> =
            frames.iter().flat_map(|frame| frame.samples.iter().flat_map(|s| (*s as i16).to_le_bytes())).collect();
        assert_eq!(checked, CheckedFlac { md5: md5::Md5::digest(&bytes).into(), frames: 3 * BLOCK as u64 });
    }

    #[test]
    fn a_damaged_frame_or_other_samples_are_caught_with_the_frame() {
        let (stream_info, frames) = stream();
        let mut damaged = frames.clone();
        let middle = damaged[1].bytes.len() / 2;
        damaged[1].bytes[middle] ^= 0x10;
        let error = check(&stream_info, &damaged).unwrap_err();
        assert!(error.contains("frame 1 (from sample 1024)") && error.contains("CRC-16"), "{error}");
        let mut other = frames.clone();
        other[2].samples[7] += 1;
        let error = check(&stream_info, &other).unwrap_err();
        assert!(error.contains("frame 2") && error.contains("sample 3 of channel 1 decodes to"), "{error}");
        let error = check(
            &stream_info,
            &frames[..1]
                .iter()
                .cloned()
                .chain([WrittenFrame { bytes: vec![0xff], samples: vec![] }])
                .collect::<Vec<_>>(),
        )
        .unwrap_err();
        assert!(error.contains("frame 1") && error.contains("shorter than a frame"), "{error}");
    }
}
