//! Writing deliverables: WAV (16/24-bit integer, 32-bit float) through
//! `hound` with LIST/INFO tags and a BWF `bext` chunk, and FLAC (16/24-bit)
//! through the pure-Rust `flacenc` with Vorbis comments. Integer formats
//! are quantized with the chosen dither. Both stream: memory does not grow
//! with the length of the track.
//!
//! WAV metadata chunks follow the data chunk (RIFF allows any order; hound
//! writes the header), which lets the `bext` chunk carry the loudness
//! measured on the delivered audio (BWF version 2 fields).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use flacenc::bitsink::ByteSink;
use flacenc::component::{BitRepr, ChannelAssignment, Frame, FrameHeader, FrameOffset, StreamInfo};
use flacenc::config;
use flacenc::error::Verify;
use flacenc::source::{Context, Fill, FrameBuf};

use crate::audio::AudioBlock;
use crate::decode::FlacFrameCheck;
use crate::dsp::dither::{NoiseSource, Quantizer};
use crate::manifest::{AudioFormat, Dither};

/// What a delivered file says about itself.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Tags {
    pub title: String,
    pub artist: String,
    pub album: String,
    pub isrc: Option<String>,
    pub label: Option<String>,
    pub track_number: Option<u32>,
    pub track_total: Option<u32>,
}

/// Loudness of the delivered audio, for the BWF `bext` chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DeliveredLoudness {
    pub integrated_lufs: Option<f64>,
    pub loudness_range_lu: f64,
    pub true_peak_dbtp: f64,
    pub max_short_term_lufs: Option<f64>,
}

/// The shape of an encoded file.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodeSpec {
    pub format: AudioFormat,
    /// 16, 24, or 32 (float, WAV only).
    pub bit_depth: u32,
    pub rate_hz: u32,
    pub channels: usize,
    pub dither: Dither,
    /// Seeds the dither noise (derive it from the track id).
    pub dither_seed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("cannot encode {0}")]
    Unsupported(String),
    #[error("cannot write the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("the WAV writer failed: {0}")]
    Wav(#[from] hound::Error),
    #[error("the FLAC encoder failed: {0}")]
    Flac(String),
    #[error("{path}: the FLAC written does not read back: {detail}")]
    NotReadable { path: String, detail: String },
}

/// FLAC frames are this many samples long (the reference encoder's default).
const FLAC_BLOCK_FRAMES: usize = 4096;
/// The highest linear-prediction order a FLAC subframe is searched to.
const FLAC_LPC_ORDER: usize = 8;
/// A FLAC frame's header, subframe headers and CRC, generously.
const FLAC_FRAME_OVERHEAD_BYTES: usize = 32;
const SOFTWARE: &str = concat!("lacquer ", env!("CARGO_PKG_VERSION"));

enum Writer {
    Wav(WavData),
    Flac(Box<FlacState>),
}

/// A WAV file whose header hound wrote (for zero samples, its `data`
/// chunk last); the samples are appended as bytes a block at a time, and
/// the sizes fixed at the end.
struct WavData {
    out: BufWriter<File>,
    /// Where the `data` chunk's size field is.
    data_size_offset: u64,
    data_bytes: u64,
    /// One block's samples as bytes, reused.
    bytes: Vec<u8>,
}

struct FlacState {
    out: BufWriter<File>,
    config: flacenc::error::Verified<config::Encoder>,
    /// Verbatim subframes only, for frames prediction cannot shrink.
    verbatim: flacenc::error::Verified<config::Encoder>,
    bits: usize,
    stream_info: StreamInfo,
    frame_buffer: FrameBuf,
    context: Context,
    /// Interleaved samples waiting to fill a FLAC block.
    pending: Vec<i32>,
    /// The same samples packed as the MD5 in STREAMINFO sums them.
    packed: Vec<u8>,
    /// Stereo: the block's left, right, mid and side channels.
    lrms: [Vec<i32>; 4],
    /// Stereo: the two channels chosen, each in a buffer of its own, and
    /// the stream each is encoded as (the side channel has a bit more).
    mono: [FrameBuf; 2],
    mono_info: [StreamInfo; 2],
    frame_number: usize,
    sink: ByteSink,
    /// Where the STREAMINFO body sits in the file, to rewrite at the end.
    stream_info_offset: u64,
    /// Every frame decoded as written.
    check: FlacFrameCheck,
    path: std::path::PathBuf,
}

/// Streams audio into one encoded file.
pub struct Encoder {
    writer: Writer,
    spec: EncodeSpec,
    quantizer: Option<Quantizer>,
    interleaved: Vec<i32>,
    /// The last block as the file holds it (quantized, dithered), as a
    /// decoder would read it back.
    written: AudioBlock,
}

impl Encoder {
    /// Creates (or truncates) the file at `path`.
    pub fn create(path: &Path, spec: EncodeSpec, tags: &Tags) -> Result<Self, EncodeError> {
        let integer = match (spec.format, spec.bit_depth) {
            (AudioFormat::Wav, 32) => false,
            (_, 16 | 24) => true,
            (format, bits) => return Err(EncodeError::Unsupported(format!("{bits}-bit {format:?}"))),
        };
        if !(1..=2).contains(&spec.channels) {
            return Err(EncodeError::Unsupported(format!("{} channels", spec.channels)));
        }
        let quantizer = integer.then(|| Quantizer::new(spec.dither, spec.bit_depth, spec.channels, spec.dither_seed));
        let out = BufWriter::with_capacity(1 << 16, File::create(path)?);
        let writer = match spec.format {
            AudioFormat::Wav | AudioFormat::Ddp => {
                let wav_spec = hound::WavSpec {
                    channels: spec.channels as u16,
                    sample_rate: spec.rate_hz,
                    bits_per_sample: spec.bit_depth as u16,
                    sample_format: if integer { hound::SampleFormat::Int } else { hound::SampleFormat::Float },
                };
                hound::WavWriter::new(out, wav_spec)?.finalize()?;
                let mut file = OpenOptions::new().write(true).open(path)?;
                let header_bytes = file.seek(SeekFrom::End(0))?;
                Writer::Wav(WavData {
                    out: BufWriter::with_capacity(1 << 16, file),
                    data_size_offset: header_bytes - 4,
                    data_bytes: 0,
                    bytes: Vec::new(),
                })
            }
            AudioFormat::Flac => Writer::Flac(Box::new(FlacState::start(out, path, &spec, tags)?)),
        };
        let written = AudioBlock::new(spec.channels, 0);
        Ok(Self { writer, spec, quantizer, interleaved: Vec::new(), written })
    }

    /// Appends a block (planar, `spec.channels` channels) and returns its
    /// samples exactly as the file now holds them — quantized and dithered
    /// for integer formats, scaled as decoders read them back — so the
    /// delivered stream can be measured without decoding it again.
    pub fn write(&mut self, block: &AudioBlock) -> Result<&AudioBlock, EncodeError> {
        let channels = self.spec.channels;
        debug_assert_eq!(block.channel_count(), channels);
        let frames = block.frames();
        if self.written.channels().next().is_none_or(|c| c.len() < frames) {
            // Grown once, to the largest block: no allocation per block.
            self.written = AudioBlock::new(channels, frames);
        }
        self.written.set_frames(frames);
        match &mut self.quantizer {
            None => {
                for (out, input) in self.written.channels_mut().zip(block.channels()) {
                    out.copy_from_slice(input);
                }
            }
            Some(quantizer) => {
                let scale = 1.0 / (1u32 << (self.spec.bit_depth - 1)) as f32;
                // Frame by frame, channel by channel: the dither's noise
                // is drawn in that order.
                self.interleaved.resize(frames * channels, 0);
                let right = (channels == 2).then(|| block.channel(1));
                quantizer.quantize_frames(block.channel(0), right, &mut self.interleaved);
                let interleaved = &self.interleaved;
                if channels == 2 {
                    // In pairs, which the compiler turns into vector shuffles.
                    let (left, right) = self.written.stereo_mut();
                    for ((l, r), pair) in left.iter_mut().zip(right.iter_mut()).zip(interleaved.chunks_exact(2)) {
                        (*l, *r) = (pair[0] as f32 * scale, pair[1] as f32 * scale);
                    }
                } else {
                    for (o, q) in self.written.channel_mut(0).iter_mut().zip(interleaved) {
                        *o = *q as f32 * scale;
                    }
                }
            }
        }
        match &mut self.writer {
            Writer::Wav(wav) => {
                // Sized once per block and filled in place: no growth checks
                // per sample.
                let width = self.spec.bit_depth as usize / 8;
                wav.bytes.resize(frames * channels * width, 0);
                match self.spec.bit_depth {
                    16 => {
                        for (out, s) in wav.bytes.chunks_exact_mut(2).zip(&self.interleaved) {
                            out.copy_from_slice(&(*s as i16).to_le_bytes());
                        }
                    }
                    24 => {
                        for (out, s) in wav.bytes.chunks_exact_mut(3).zip(&self.interleaved) {
                            out.copy_from_slice(&s.to_le_bytes()[..3]);
                        }
                    }
                    _ => {
                        for (channel, samples) in block.channels().enumerate() {
                            let frames_bytes = wav.bytes.chunks_exact_mut(4 * channels);
                            for (out, s) in frames_bytes.zip(samples) {
                                out[4 * channel..4 * channel + 4].copy_from_slice(&s.to_le_bytes());
                            }
                        }
                    }
                }
                wav.out.write_all(&wav.bytes)?;
                wav.data_bytes += wav.bytes.len() as u64;
            }
            Writer::Flac(state) => state.push(&self.interleaved, channels)?,
        }
        Ok(&self.written)
    }

    /// Completes the file: headers, metadata, and (for WAV) the `bext`
    /// loudness fields. The file is synced to disk.
    pub fn finish(self, tags: &Tags, loudness: Option<&DeliveredLoudness>) -> Result<(), EncodeError> {
        self.complete(tags, loudness, true)
    }

    /// Completes a scratch file, one this process reads back and removes:
    /// as [`Self::finish`] with no tags, but not synced to disk (waiting
    /// for the disk would keep nothing a crash could need: a rerun makes
    /// the file again).
    pub fn finish_scratch(self) -> Result<(), EncodeError> {
        self.complete(&Tags::default(), None, false)
    }

    fn complete(self, tags: &Tags, loudness: Option<&DeliveredLoudness>, sync: bool) -> Result<(), EncodeError> {
        match self.writer {
            Writer::Wav(wav) => {
                let mut file = wav.out.into_inner().map_err(|e| e.into_error())?;
                let data_bytes = u32::try_from(wav.data_bytes)
                    .map_err(|_| EncodeError::Unsupported("a WAV file over 4 GiB".to_owned()))?;
                file.seek(SeekFrom::Start(wav.data_size_offset))?;
                file.write_all(&data_bytes.to_le_bytes())?;
                append_wav_metadata(&mut file, &self.spec, tags, loudness)?;
                if sync {
                    file.sync_all()?;
                }
            }
            Writer::Flac(state) => state.finish(self.spec.channels, sync)?,
        }
        Ok(())
    }
}

impl FlacState {
    fn start(mut out: BufWriter<File>, path: &Path, spec: &EncodeSpec, tags: &Tags) -> Result<Self, EncodeError> {
        let flac_error = |e: &dyn std::fmt::Debug| EncodeError::Flac(format!("{e:?}"));
        let mut encoder_config = config::Encoder::default();
        encoder_config.block_size = FLAC_BLOCK_FRAMES;
        encoder_config.multithread = false;
        // Linear prediction up to order 8, as the reference encoder's
        // default level, and no fixed predictors besides: flacenc's choice
        // between the two estimates, and on mastered music it often picks
        // a fixed one the LPC would beat. 1.3x faster than flacenc's
        // defaults; the files 1–8% smaller on the example album's masters,
        // within 1% on its stems (`tests/encode.rs`).
        encoder_config.subframe_coding.qlpc.lpc_order = FLAC_LPC_ORDER;
        encoder_config.subframe_coding.use_fixed = false;
        let mut verbatim = encoder_config.clone();
        verbatim.subframe_coding.use_lpc = false;
        verbatim.stereo_coding.use_leftside = false;
        verbatim.stereo_coding.use_rightside = false;
        verbatim.stereo_coding.use_midside = false;
        let config = encoder_config.into_verified().map_err(|e| flac_error(&e))?;
        let verbatim = verbatim.into_verified().map_err(|e| flac_error(&e))?;
        let bits = spec.bit_depth as usize;
        let stream_info = StreamInfo::new(spec.rate_hz as usize, spec.channels, bits).map_err(|e| flac_error(&e))?;
        let frame_buffer = FrameBuf::with_size(spec.channels, FLAC_BLOCK_FRAMES).map_err(|e| flac_error(&e))?;
        let mono_buffer = || FrameBuf::with_size(1, FLAC_BLOCK_FRAMES).map_err(|e| flac_error(&e));
        let mono_info = |bits| StreamInfo::new(spec.rate_hz as usize, 1, bits).map_err(|e| flac_error(&e));

        out.write_all(b"fLaC")?;
        // STREAMINFO (type 0), 34 bytes, rewritten when the totals are known.
        out.write_all(&[0x00, 0x00, 0x00, 34])?;
        let stream_info_offset = out.stream_position()?;
        out.write_all(&[0u8; 34])?;
        // VORBIS_COMMENT (type 4), the last metadata block.
        let comments = vorbis_comment(tags);
        let length = comments.len() as u32;
        out.write_all(&[0x80 | 4, (length >> 16) as u8, (length >> 8) as u8, length as u8])?;
        out.write_all(&comments)?;
        // The checker's decoder reads the stream's shape from a STREAMINFO
        // whose length and MD5 are not known yet.
        let mut shape = stream_info.clone();
        shape.set_block_sizes(FLAC_BLOCK_FRAMES, FLAC_BLOCK_FRAMES).map_err(|e| flac_error(&e))?;
        let mut shape_bytes = ByteSink::new();
        shape.write(&mut shape_bytes).map_err(|e| flac_error(&e))?;
        let check =
            FlacFrameCheck::spawn(shape_bytes.as_slice(), spec.channels, bits as u32).map_err(|e| flac_error(&e))?;
        Ok(Self {
            check,
            path: path.to_owned(),
            out,
            config,
            verbatim,
            bits,
            stream_info,
            frame_buffer,
            context: Context::new(bits, spec.channels),
            pending: Vec::with_capacity(FLAC_BLOCK_FRAMES * spec.channels),
            packed: Vec::with_capacity(FLAC_BLOCK_FRAMES * spec.channels * bits / 8),
            lrms: std::array::from_fn(|_| Vec::with_capacity(FLAC_BLOCK_FRAMES)),
            mono: [mono_buffer()?, mono_buffer()?],
            mono_info: [mono_info(bits)?, mono_info(bits + 1)?],
            frame_number: 0,
            sink: ByteSink::new(),
            stream_info_offset,
        })
    }

    fn push(&mut self, interleaved: &[i32], channels: usize) -> Result<(), EncodeError> {
        let block_samples = FLAC_BLOCK_FRAMES * channels;
        let mut offset = 0;
        while offset < interleaved.len() {
            let take = (block_samples - self.pending.len()).min(interleaved.len() - offset);
            self.pending.extend_from_slice(&interleaved[offset..offset + take]);
            offset += take;
            if self.pending.len() == block_samples {
                self.encode_pending(channels)?;
            }
        }
        Ok(())
    }

    fn encode_pending(&mut self, channels: usize) -> Result<(), EncodeError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let frames = self.pending.len() / channels;
        let flac_error = |e: &dyn std::fmt::Debug| EncodeError::Flac(format!("{e:?}"));
        if frames < FLAC_BLOCK_FRAMES {
            // The last, short block gets frame buffers of its own size.
            self.frame_buffer = FrameBuf::with_size(channels, frames).map_err(|e| flac_error(&e))?;
            for mono in &mut self.mono {
                *mono = FrameBuf::with_size(1, frames).map_err(|e| flac_error(&e))?;
            }
        }
        // The MD5 sums the samples as little-endian bytes of their width:
        // packed here and summed at once (flacenc's own `Fill` would feed
        // the hasher three bytes at a time).
        let bytes_per_sample = self.bits / 8;
        self.packed.resize(self.pending.len() * bytes_per_sample, 0);
        match bytes_per_sample {
            2 => pack_le::<2>(&self.pending, &mut self.packed),
            3 => pack_le::<3>(&self.pending, &mut self.packed),
            _ => pack_le::<4>(&self.pending, &mut self.packed),
        }
        self.context.fill_le_bytes(&self.packed, bytes_per_sample).map_err(|e| flac_error(&e))?;
        let mut frame = if channels == 2 {
            self.encode_stereo(frames)?
        } else {
            self.frame_buffer.fill_interleaved(&self.pending).map_err(|e| flac_error(&e))?;
            flacenc::encode_fixed_size_frame(&self.config, &self.frame_buffer, self.frame_number, &self.stream_info)
                .map_err(|e| flac_error(&e))?
        };
        // flacenc's Rice parameters stop at 14 (no escape codes): on loud,
        // noise-like 24-bit material a predicted frame can come out many
        // times larger than the samples themselves (hundreds of megabytes
        // for one block). Its size is counted before anything is written,
        // and such a frame is stored verbatim instead, as the reference
        // encoder would.
        let verbatim_bytes = frames * channels * self.bits / 8 + FLAC_FRAME_OVERHEAD_BYTES;
        if frame.count_bits() / 8 > verbatim_bytes {
            self.frame_buffer.fill_interleaved(&self.pending).map_err(|e| flac_error(&e))?;
            frame = flacenc::encode_fixed_size_frame(
                &self.verbatim,
                &self.frame_buffer,
                self.frame_number,
                &self.stream_info,
            )
            .map_err(|e| flac_error(&e))?;
        }
        self.sink.clear();
        frame.write(&mut self.sink).map_err(|e| EncodeError::Flac(format!("{e:?}")))?;
        self.stream_info.update_frame_info(&frame);
        self.out.write_all(self.sink.as_slice())?;
        self.check.push(self.sink.as_slice(), &self.pending);
        self.frame_number += 1;
        self.pending.clear();
        Ok(())
    }

    /// Encodes a stereo block as the pair of channels (left/right,
    /// left/side, right/side or mid/side) that costs least by estimate,
    /// predicting only those two: the reference encoder's exhaustive search
    /// predicts all four and keeps the best pair, which doubles the work
    /// for files 0.1–0.4% smaller (the example album's masters, and the
    /// music of `tests/encode.rs`).
    ///
    /// The estimate is each channel's second-order fixed residual: a Rice
    /// code spends about log2 of a residual's mean magnitude on each
    /// sample, so the pair with the smallest product of residual sums is
    /// the pair with the fewest bits.
    fn encode_stereo(&mut self, frames: usize) -> Result<Frame, EncodeError> {
        let flac_error = |e: &dyn std::fmt::Debug| EncodeError::Flac(format!("{e:?}"));
        let [left, right, mid, side] = &mut self.lrms;
        for channel in [&mut *left, &mut *right, &mut *mid, &mut *side] {
            channel.resize(frames, 0);
        }
        for (n, pair) in self.pending.chunks_exact(2).enumerate() {
            let (l, r) = (pair[0], pair[1]);
            left[n] = l;
            right[n] = r;
            mid[n] = (l + r) >> 1;
            side[n] = l - r;
        }
        let cost = |x: &[i32]| -> f64 {
            // Samples of at most 25 bits: the second difference fits in 32.
            let residual: u64 =
                x[2..].iter().zip(&x[1..]).zip(x).map(|((a, b), c)| u64::from((a - 2 * b + c).unsigned_abs())).sum();
            // One per sample keeps silence from counting as free.
            ((residual + x.len() as u64) as f64).ln()
        };
        let [l, r, m, s] = [cost(left), cost(right), cost(mid), cost(side)];
        let (assignment, first, second) = [
            (ChannelAssignment::Independent(2), l + r, 0, 1),
            (ChannelAssignment::LeftSide, l + s, 0, 3),
            (ChannelAssignment::RightSide, r + s, 3, 1),
            (ChannelAssignment::MidSide, m + s, 2, 3),
        ]
        .into_iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(assignment, _, first, second)| (assignment, first, second))
        .expect("four pairs");
        let mut subframes = Vec::with_capacity(2);
        for (slot, channel) in [first, second].into_iter().enumerate() {
            // The side channel is coded with one bit more.
            let info = &self.mono_info[usize::from(channel == 3)];
            self.mono[slot].fill_interleaved(&self.lrms[channel]).map_err(|e| flac_error(&e))?;
            let frame = flacenc::encode_fixed_size_frame(&self.config, &self.mono[slot], self.frame_number, info)
                .map_err(|e| flac_error(&e))?;
            subframes.extend(frame.into_parts().1);
        }
        let header = FrameHeader::new(
            frames,
            assignment,
            self.bits,
            self.stream_info.sample_rate(),
            FrameOffset::Frame(self.frame_number as u32),
        )
        .map_err(|e| flac_error(&e))?;
        Frame::new(header, subframes.into_iter()).map_err(|e| flac_error(&e))
    }

    fn finish(mut self, channels: usize, sync: bool) -> Result<(), EncodeError> {
        self.encode_pending(channels)?;
        self.stream_info.set_md5_digest(&self.context.md5_digest());
        self.stream_info.set_total_samples(self.context.total_samples());
        // A fixed-blocksize stream: the minimum excludes the short last
        // block (as the reference encoder writes it); counting it would
        // announce a variable-blocksize stream that decoders then reject.
        self.stream_info
            .set_block_sizes(FLAC_BLOCK_FRAMES, FLAC_BLOCK_FRAMES)
            .map_err(|e| EncodeError::Flac(format!("{e:?}")))?;
        let mut sink = ByteSink::new();
        self.stream_info.write(&mut sink).map_err(|e| EncodeError::Flac(format!("{e:?}")))?;
        let mut file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(self.stream_info_offset))?;
        file.write_all(sink.as_slice())?;
        if sync {
            file.sync_all()?;
        }
        drop(file);
        // Proved readable: every frame decoded as written (above, beside
        // the encoder), and the finished file read back by the decoder's
        // own demuxer, its STREAMINFO carrying the decoded samples' MD5.
        let path = self.path.display().to_string();
        let not_readable = |detail: String| EncodeError::NotReadable { path: path.clone(), detail };
        let decoded = self.check.finish().map_err(not_readable)?;
        let (info, md5) = crate::decode::probe_flac(&self.path).map_err(|e| not_readable(e.to_string()))?;
        if md5 != Some(decoded.md5) {
            return Err(not_readable("its STREAMINFO does not carry its decoded samples' MD5".to_owned()));
        }
        if info.frames != Some(decoded.frames) {
            return Err(not_readable(format!(
                "its STREAMINFO gives {:?} frames where its audio holds {}",
                info.frames, decoded.frames
            )));
        }
        Ok(())
    }
}

/// Each sample's `BYTES` low bytes, little-endian, one after another.
fn pack_le<const BYTES: usize>(samples: &[i32], packed: &mut [u8]) {
    for (bytes, sample) in packed.chunks_exact_mut(BYTES).zip(samples) {
        bytes.copy_from_slice(&sample.to_le_bytes()[..BYTES]);
    }
}

/// The body of a FLAC VORBIS_COMMENT block.
fn vorbis_comment(tags: &Tags) -> Vec<u8> {
    let mut fields =
        vec![format!("TITLE={}", tags.title), format!("ARTIST={}", tags.artist), format!("ALBUM={}", tags.album)];
    if let Some(isrc) = &tags.isrc {
        fields.push(format!("ISRC={isrc}"));
    }
    if let Some(label) = &tags.label {
        fields.push(format!("ORGANIZATION={label}"));
    }
    if let Some(n) = tags.track_number {
        fields.push(format!("TRACKNUMBER={n}"));
    }
    if let Some(n) = tags.track_total {
        fields.push(format!("TRACKTOTAL={n}"));
    }
    let mut body = Vec::new();
    body.extend_from_slice(&(SOFTWARE.len() as u32).to_le_bytes());
    body.extend_from_slice(SOFTWARE.as_bytes());
    body.extend_from_slice(&(fields.len() as u32).to_le_bytes());
    for field in fields {
        body.extend_from_slice(&(field.len() as u32).to_le_bytes());
        body.extend_from_slice(field.as_bytes());
    }
    body
}

/// Appends LIST/INFO and `bext` after the data chunk and fixes the RIFF size.
fn append_wav_metadata(
    out: &mut File,
    spec: &EncodeSpec,
    tags: &Tags,
    loudness: Option<&DeliveredLoudness>,
) -> Result<(), EncodeError> {
    let end = out.seek(SeekFrom::End(0))?;
    let mut chunks = Vec::new();
    if end % 2 == 1 {
        chunks.push(0); // RIFF chunks start on even offsets
    }
    chunks.extend_from_slice(&riff_chunk(b"LIST", &info_list(tags)));
    chunks.extend_from_slice(&riff_chunk(b"bext", &bext(spec, tags, loudness)));
    out.write_all(&chunks)?;
    let riff_size = u32::try_from(end + chunks.len() as u64 - 8)
        .map_err(|_| EncodeError::Unsupported("a WAV file over 4 GiB".to_owned()))?;
    out.seek(SeekFrom::Start(4))?;
    out.write_all(&riff_size.to_le_bytes())?;
    out.seek(SeekFrom::End(0))?;
    out.flush()?;
    Ok(())
}

fn riff_chunk(id: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut chunk = Vec::with_capacity(body.len() + 9);
    chunk.extend_from_slice(id);
    chunk.extend_from_slice(&(body.len() as u32).to_le_bytes());
    chunk.extend_from_slice(body);
    if body.len() % 2 == 1 {
        chunk.push(0);
    }
    chunk
}

fn info_list(tags: &Tags) -> Vec<u8> {
    let mut body = b"INFO".to_vec();
    let mut field = |id: &[u8; 4], value: &str| {
        let mut text = value.as_bytes().to_vec();
        text.push(0);
        body.extend_from_slice(&riff_chunk(id, &text));
    };
    field(b"INAM", &tags.title);
    field(b"IART", &tags.artist);
    field(b"IPRD", &tags.album);
    if let Some(isrc) = &tags.isrc {
        field(b"ISRC", isrc);
    }
    if let Some(label) = &tags.label {
        field(b"ICOP", label);
    }
    if let Some(n) = tags.track_number {
        field(b"ITRK", &n.to_string());
    }
    field(b"ISFT", SOFTWARE);
    body
}

/// A BWF version 2 `bext` chunk body (EBU Tech 3285).
fn bext(spec: &EncodeSpec, tags: &Tags, loudness: Option<&DeliveredLoudness>) -> Vec<u8> {
    fn fixed(text: &str, length: usize) -> Vec<u8> {
        let mut bytes: Vec<u8> = text.bytes().take(length).collect();
        bytes.resize(length, 0);
        bytes
    }
    // EBU Tech 3352: the ISRC in the description, as "ISRC:" + code.
    let description = match &tags.isrc {
        Some(isrc) => format!("ISRC:{isrc}"),
        None => format!("{} - {}", tags.artist, tags.title),
    };
    let mut body = Vec::with_capacity(700);
    body.extend(fixed(&description, 256));
    body.extend(fixed("lacquer", 32));
    body.extend(fixed(&tags.title, 32));
    body.extend(fixed("", 10)); // origination date: none, so files stay reproducible
    body.extend(fixed("", 8)); // origination time
    body.extend_from_slice(&0u64.to_le_bytes()); // time reference
    body.extend_from_slice(&2u16.to_le_bytes()); // version
    body.extend(fixed("", 64)); // UMID
    // Loudness fields are in hundredths; 0x7fff means "not given".
    let hundredths = |value: Option<f64>| match value {
        Some(v) if v.is_finite() => ((v * 100.0).round() as i64).clamp(-32_767, 32_766) as i16,
        _ => 0x7fff,
    };
    let l = loudness.copied();
    for value in [
        l.and_then(|l| l.integrated_lufs),
        l.map(|l| l.loudness_range_lu),
        l.map(|l| l.true_peak_dbtp),
        None, // max momentary loudness: not measured
        l.and_then(|l| l.max_short_term_lufs),
    ] {
        body.extend_from_slice(&hundredths(value).to_le_bytes());
    }
    body.extend(fixed("", 180));
    let mode = if spec.channels == 1 { "mono" } else { "stereo" };
    let word = match spec.bit_depth {
        32 => "32F".to_owned(),
        bits => bits.to_string(),
    };
    body.extend_from_slice(format!("A=PCM,F={},W={word},M={mode},T={SOFTWARE}\r\n", spec.rate_hz).as_bytes());
    body
}

/// A dither seed for one track of one deliverable.
pub fn dither_seed(track_id: &str, deliverable: &str) -> u64 {
    NoiseSource::seed_from(&format!("{track_id}/{deliverable}"))
}
