//! The stores' lossy codecs, run as a check: a deliverable's samples are
//! encoded as a store would encode them, decoded again without clamping,
//! and the decoded audio is measured — its two true-peak readings and the
//! samples past full scale, which a fixed-point player clips.
//!
//! - **AAC-LC** through the Fraunhofer FDK AAC library (the `fdk-aac`
//!   crate, which builds it from its bundled sources): constant bitrate,
//!   at the deliverable's rate, 16-bit input (what the library takes). The
//!   ADTS frames are decoded by symphonia's AAC decoder, which gives
//!   floating point (the FDK decoder's output is clamped 16-bit).
//! - **Opus** through libopus (the `opus` crate; its `-sys` crate builds
//!   the bundled sources): the store's usual setting (application audio,
//!   variable bitrate, complexity 10, 20 ms frames) at 48 kHz, the only
//!   rate Opus codes at full band, so other rates are converted first as a
//!   store's transcoder does (so are AAC's above 96 kHz, to a quarter of
//!   their rate). Decoded with `opus_decode_float`, unclamped.
//!
//! A round trip works a block at a time in buffers sized at construction;
//! the encoders' delay is flushed with silence at the end, so every input
//! sample is decoded and measured.

use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder as AacEncoder, EncoderParams, Transport};
use serde::{Deserialize, Serialize};
use symphonia::core::audio::{AudioBufferRef, Signal};
use symphonia::core::codecs::{CODEC_TYPE_AAC, CodecParameters, Decoder as _, DecoderOptions};
use symphonia::core::formats::Packet;
use symphonia_codec_aac::AacDecoder;

use crate::audio::AudioBlock;
use crate::dsp::resample::StreamResampler;
use crate::dsp::units::gain_to_db;
use crate::manifest::{Codec, CodecSpec};
use crate::meter::Meter;

/// Opus codes at 48 kHz.
const OPUS_RATE_HZ: u32 = 48_000;
/// 20 ms at 48 kHz: the frame the stores use.
const OPUS_FRAME: usize = 960;
/// The largest Opus packet (bytes).
const OPUS_MAX_PACKET: usize = 1276 * 3;
/// Samples per channel of an AAC-LC frame.
const AAC_FRAME: usize = 1024;
/// Room for one ADTS frame of 2 channels (6144 bits each) and its header.
const AAC_MAX_FRAME: usize = 2 * 768 + 64;
/// Silence pushed after the audio so the encoder's delay (AAC: 2048
/// samples, Opus: 312 at 48 kHz) reaches the decoder.
const FLUSH_FRAMES: usize = 3 * AAC_FRAME;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("{codec} at {bitrate_kbps} kb/s and {rate_hz} Hz: {detail}")]
    Setup { codec: &'static str, bitrate_kbps: u32, rate_hz: u32, detail: String },
    #[error("{codec}: {detail}")]
    Run { codec: &'static str, detail: String },
}

/// What a codec's decoded audio measures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CodecReading {
    /// The accurate true peak of the decoded audio (dBTP).
    pub true_peak_dbtp: f64,
    /// BS.1770's interpolator's reading of it (dBTP).
    pub true_peak_bs1770_dbtp: f64,
    /// Decoded samples past full scale (a fixed-point player clips them).
    pub clipped_samples: u64,
}

impl CodecReading {
    /// The higher of the two true-peak readings (dBTP).
    pub fn highest_true_peak_dbtp(&self) -> f64 {
        self.true_peak_dbtp.max(self.true_peak_bs1770_dbtp)
    }
}

enum Engine {
    Aac {
        encoder: AacEncoder,
        decoder: Box<AacDecoder>,
        /// Interleaved 16-bit input not yet taken by the encoder.
        input: Vec<i16>,
        frame: Vec<u8>,
    },
    Opus {
        encoder: opus::Encoder,
        decoder: opus::Decoder,
        /// Interleaved input not yet a whole frame.
        input: Vec<f32>,
        packet: Vec<u8>,
        decoded: Vec<f32>,
    },
}

/// One deliverable through one codec and back, measured.
pub struct RoundTrip {
    codec: Codec,
    /// To the rate the codec codes at, where that is not the input's.
    resampler: Option<StreamResampler>,
    converted: Vec<Vec<f32>>,
    meter: Meter,
    clipped_samples: u64,
    engine: Engine,
    /// Decoded audio, planar, for the meter.
    decoded: AudioBlock,
    /// Where the encoded stream goes as well (ADTS for AAC, raw packets
    /// for Opus), when asked: for the tests' second opinion.
    stream: Option<Vec<u8>>,
}

impl RoundTrip {
    /// A round trip of stereo audio at `rate_hz` through `spec`.
    pub fn new(spec: CodecSpec, rate_hz: u32) -> Result<Self, CodecError> {
        let bitrate_kbps = spec.bitrate_kbps();
        let setup = |detail: String| CodecError::Setup { codec: spec.codec.name(), bitrate_kbps, rate_hz, detail };
        // AAC-LC codes up to 96 kHz: a 176.4 or 192 kHz master reaches
        // the store's encoder at a quarter of its rate. Opus codes at 48 kHz.
        let coded_rate_hz = match spec.codec {
            Codec::Aac if rate_hz > 96_000 => rate_hz / 4,
            Codec::Aac => rate_hz,
            Codec::Opus => OPUS_RATE_HZ,
        };
        let resampler = (coded_rate_hz != rate_hz)
            .then(|| StreamResampler::new(rate_hz, coded_rate_hz, 2))
            .transpose()
            .map_err(|e| setup(e.to_string()))?;
        let rate_hz = coded_rate_hz;
        let engine = match spec.codec {
            Codec::Aac => {
                let encoder = AacEncoder::new(EncoderParams {
                    bit_rate: BitRate::Cbr(bitrate_kbps * 1000),
                    sample_rate: rate_hz,
                    transport: Transport::Adts,
                    channels: ChannelMode::Stereo,
                    audio_object_type: AudioObjectType::Mpeg4LowComplexity,
                })
                .map_err(|e| setup(e.to_string()))?;
                let info = encoder.info().map_err(|e| setup(e.to_string()))?;
                let config = info.confBuf[..(info.confSize as usize).min(info.confBuf.len())].to_vec();
                let mut params = CodecParameters::new();
                params.for_codec(CODEC_TYPE_AAC).with_sample_rate(rate_hz).with_extra_data(config.into_boxed_slice());
                let decoder =
                    AacDecoder::try_new(&params, &DecoderOptions::default()).map_err(|e| setup(e.to_string()))?;
                Engine::Aac {
                    encoder,
                    decoder: Box::new(decoder),
                    input: Vec::with_capacity(4 * AAC_FRAME * 2),
                    frame: vec![0; AAC_MAX_FRAME],
                }
            }
            Codec::Opus => {
                let opus_error = |e: opus::Error| setup(e.to_string());
                let mut encoder = opus::Encoder::new(OPUS_RATE_HZ, opus::Channels::Stereo, opus::Application::Audio)
                    .map_err(opus_error)?;
                encoder.set_bitrate(opus::Bitrate::Bits(bitrate_kbps as i32 * 1000)).map_err(opus_error)?;
                encoder.set_vbr(true).map_err(opus_error)?;
                encoder.set_complexity(10).map_err(opus_error)?;
                let decoder = opus::Decoder::new(OPUS_RATE_HZ, opus::Channels::Stereo).map_err(opus_error)?;
                Engine::Opus {
                    encoder,
                    decoder,
                    input: Vec::with_capacity(8 * OPUS_FRAME * 2),
                    packet: vec![0; OPUS_MAX_PACKET],
                    decoded: vec![0.0; OPUS_FRAME * 2],
                }
            }
        };
        Ok(Self {
            codec: spec.codec,
            resampler,
            converted: vec![Vec::new(), Vec::new()],
            meter: Meter::new(rate_hz, 2),
            clipped_samples: 0,
            engine,
            decoded: AudioBlock::new(2, 2 * AAC_FRAME.max(OPUS_FRAME)),
            stream: None,
        })
    }

    /// Keeps the encoded stream too (see [`Self::finish_with_stream`]).
    pub fn keeping_stream(mut self) -> Self {
        self.stream = Some(Vec::new());
        self
    }

    /// Encodes, decodes and measures one block of stereo audio.
    pub fn push(&mut self, block: &AudioBlock) -> Result<(), CodecError> {
        match &mut self.resampler {
            Some(resampler) => {
                resampler
                    .push(block, &mut self.converted)
                    .map_err(|e| CodecError::Run { codec: self.codec.name(), detail: e.to_string() })?;
                self.engine.take(&self.converted[0], &self.converted[1]);
                self.converted.iter_mut().for_each(Vec::clear);
            }
            None => self.engine.take(block.channel(0), block.channel(1)),
        }
        self.code(false)
    }

    /// Flushes the codec and returns what its decoded audio measures.
    pub fn finish(self) -> Result<CodecReading, CodecError> {
        self.finish_with_stream().map(|(reading, _)| reading)
    }

    /// As [`Self::finish`], with the encoded stream if it was kept.
    pub fn finish_with_stream(mut self) -> Result<(CodecReading, Option<Vec<u8>>), CodecError> {
        if let Some(resampler) = &mut self.resampler {
            resampler
                .finish(&mut self.converted)
                .map_err(|e| CodecError::Run { codec: self.codec.name(), detail: e.to_string() })?;
            self.engine.take(&self.converted[0], &self.converted[1]);
        }
        match &mut self.engine {
            Engine::Aac { input, .. } => input.resize(input.len() + 2 * FLUSH_FRAMES, 0),
            Engine::Opus { input, .. } => {
                // The last partial frame and the encoder's lookahead.
                let frames = (input.len() / 2).div_ceil(OPUS_FRAME) * OPUS_FRAME + OPUS_FRAME;
                input.resize(2 * frames, 0.0);
            }
        }
        self.code(true)?;
        let reading = self.meter.finish();
        let reading = CodecReading {
            true_peak_dbtp: gain_to_db(reading.true_peak),
            true_peak_bs1770_dbtp: gain_to_db(reading.true_peak_bs1770),
            clipped_samples: self.clipped_samples,
        };
        Ok((reading, self.stream))
    }

    /// Codes every whole frame of pending input (with `last`, the rest too).
    fn code(&mut self, last: bool) -> Result<(), CodecError> {
        let codec = self.codec.name();
        let run = |detail: String| CodecError::Run { codec, detail };
        let decoded = &mut self.decoded;
        let meter = &mut self.meter;
        let clipped = &mut self.clipped_samples;
        let stream = &mut self.stream;
        match &mut self.engine {
            Engine::Aac { encoder, decoder, input, frame } => {
                let mut taken = 0;
                while input.len() - taken >= 2 * AAC_FRAME || (last && taken < input.len()) {
                    let end = (taken + 2 * AAC_FRAME).min(input.len());
                    let info = encoder.encode(&input[taken..end], frame).map_err(|e| run(e.to_string()))?;
                    taken += info.input_consumed;
                    if info.output_size > 0 {
                        let adts = &frame[..info.output_size];
                        if let Some(stream) = stream {
                            stream.extend_from_slice(adts);
                        }
                        decode_adts(decoder, adts, decoded, meter, clipped).map_err(run)?;
                    } else if info.input_consumed == 0 {
                        break;
                    }
                }
                input.drain(..taken);
            }
            Engine::Opus { encoder, decoder, input, packet, decoded: interleaved, .. } => {
                let mut taken = 0;
                while input.len() - taken >= 2 * OPUS_FRAME {
                    let bytes = encoder
                        .encode_float(&input[taken..taken + 2 * OPUS_FRAME], packet)
                        .map_err(|e| run(e.to_string()))?;
                    taken += 2 * OPUS_FRAME;
                    if let Some(stream) = stream {
                        stream.extend_from_slice(&(bytes as u16).to_le_bytes());
                        stream.extend_from_slice(&packet[..bytes]);
                    }
                    let frames =
                        decoder.decode_float(&packet[..bytes], interleaved, false).map_err(|e| run(e.to_string()))?;
                    decoded.set_frames(frames);
                    let (left, right) = decoded.stereo_mut();
                    for ((l, r), pair) in left.iter_mut().zip(right.iter_mut()).zip(interleaved.chunks_exact(2)) {
                        (*l, *r) = (pair[0], pair[1]);
                    }
                    measure(decoded, meter, clipped);
                }
                input.drain(..taken);
            }
        }
        Ok(())
    }
}

/// Decodes one ADTS frame (header and raw data block) and measures it.
fn decode_adts(
    decoder: &mut AacDecoder,
    adts: &[u8],
    decoded: &mut AudioBlock,
    meter: &mut Meter,
    clipped: &mut u64,
) -> Result<(), String> {
    if adts.len() < 7 || adts[0] != 0xFF || adts[1] & 0xF0 != 0xF0 {
        return Err("the encoder wrote a frame without an ADTS header".into());
    }
    // protection_absent set: a 7-byte header; else 9 (with the CRC).
    let header = if adts[1] & 1 == 1 { 7 } else { 9 };
    let packet = Packet::new_from_slice(0, 0, AAC_FRAME as u64, &adts[header..]);
    let buffer = decoder.decode(&packet).map_err(|e| e.to_string())?;
    let AudioBufferRef::F32(buffer) = buffer else {
        return Err("the AAC decoder gave other than 32-bit float".into());
    };
    if buffer.spec().channels.count() != 2 {
        return Err(format!("decoded {} channels, not 2", buffer.spec().channels.count()));
    }
    decoded.set_frames(buffer.frames());
    for (channel, out) in decoded.channels_mut().enumerate() {
        out.copy_from_slice(buffer.chan(channel));
    }
    measure(decoded, meter, clipped);
    Ok(())
}

fn measure(decoded: &AudioBlock, meter: &mut Meter, clipped: &mut u64) {
    meter.add(decoded);
    *clipped += decoded.channels().flatten().filter(|s| s.abs() > 1.0).count() as u64;
}

impl Engine {
    /// Appends stereo audio to the encoder's pending input, interleaved.
    fn take(&mut self, left: &[f32], right: &[f32]) {
        match self {
            Engine::Aac { input, .. } => {
                for (l, r) in left.iter().zip(right) {
                    input.push(to_i16(*l));
                    input.push(to_i16(*r));
                }
            }
            Engine::Opus { input, .. } => {
                for (l, r) in left.iter().zip(right) {
                    input.push(*l);
                    input.push(*r);
                }
            }
        }
    }
}

/// A sample as the 16-bit input the FDK encoder takes (rounded, held in
/// range).
fn to_i16(sample: f32) -> i16 {
    (sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}
