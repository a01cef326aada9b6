//! The stages of an album as plain functions over readers and files: the
//! same code runs in `lacquer master` and on distributed workers.
//!
//! - [`mix::mix_track`]: stems → stereo mix with headroom (`mix/<id>.wav`).
//! - [`master::master_track`]: mix → mastering chain (`master/<id>.wav`)
//!   and the track's [`crate::analysis::Analysis`].
//! - [`crate::album::plan_album`]: analyses → each track's correction.
//! - [`finalize::finalize_track`]: master → correction, limiter, fades →
//!   every deliverable, measured as delivered.

use std::io::{Read, Seek};

use crate::audio::AudioBlock;
use crate::decode::{AudioReader, DecodeError};
use crate::dsp::resample::StreamResampler;
use crate::encode::EncodeError;

pub mod finalize;
pub mod master;
pub mod mix;

/// Frames per processing block in every stage.
pub const BLOCK_FRAMES: usize = 4096;

/// Anything a stage can read audio from.
pub trait MediaSource: Read + Seek + Send + Sync + 'static {}
impl<T: Read + Seek + Send + Sync + 'static> MediaSource for T {}

/// An encoded audio file to read: its bytes, length and a format hint.
pub struct AudioInput {
    pub source: Box<dyn MediaSource>,
    pub length_bytes: u64,
    pub extension: Option<String>,
    /// Where it lives, for messages.
    pub location: String,
}

impl AudioInput {
    /// A local file.
    pub fn open_file(path: &std::path::Path) -> Result<Self, StageError> {
        let file =
            std::fs::File::open(path).map_err(|e| StageError::Io(format!("cannot open {}: {e}", path.display())))?;
        let length_bytes = file.metadata().map_err(|e| StageError::Io(format!("{}: {e}", path.display())))?.len();
        Ok(Self {
            source: Box::new(file),
            length_bytes,
            extension: path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()),
            location: path.display().to_string(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{location}: {source}")]
    Decode {
        location: String,
        #[source]
        source: DecodeError,
    },
    #[error("{0}")]
    Encode(#[from] EncodeError),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Invalid(String),
    /// The caller stopped the stage (see [`cancellable`]).
    #[error("cancelled")]
    Cancelled,
}

thread_local! {
    /// The flag that stops the stage running on this thread, if any.
    static CANCEL: std::cell::RefCell<Option<std::sync::Arc<std::sync::atomic::AtomicBool>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `work` (a stage, on this thread) so that once `cancel` is raised
/// it stops at its next input block with [`StageError::Cancelled`]. The
/// stages stay plain functions; a worker that drops a task raises the flag.
pub fn cancellable<T>(cancel: std::sync::Arc<std::sync::atomic::AtomicBool>, work: impl FnOnce() -> T) -> T {
    let previous = CANCEL.with(|c| c.replace(Some(cancel)));
    let result = work();
    CANCEL.with(|c| *c.borrow_mut() = previous);
    result
}

/// The flag that stops this thread's stage, for threads it starts to carry
/// (see [`cancellable`]).
pub(crate) fn cancel_flag() -> Option<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    CANCEL.with(|c| c.borrow().clone())
}

/// Fails with [`StageError::Cancelled`] when this thread's stage was stopped.
pub(crate) fn check_cancelled() -> Result<(), StageError> {
    let cancelled =
        CANCEL.with(|c| c.borrow().as_ref().is_some_and(|flag| flag.load(std::sync::atomic::Ordering::Relaxed)));
    if cancelled { Err(StageError::Cancelled) } else { Ok(()) }
}

/// Reads a whole input as planar blocks at `rate_hz` (resampling if its own
/// rate differs) and hands each block to `each`. Returns the input's own
/// channel count.
pub fn stream_at_rate(
    input: AudioInput,
    rate_hz: u32,
    mut each: impl FnMut(&AudioBlock) -> Result<(), StageError>,
) -> Result<usize, StageError> {
    let location = input.location.clone();
    let decode_error = |source| StageError::Decode { location: location.clone(), source };
    let mut reader =
        AudioReader::open(input.source, input.length_bytes, input.extension.as_deref()).map_err(decode_error)?;
    let channels = reader.info().channels;
    let source_rate_hz = reader.info().sample_rate_hz;
    let mut block = AudioBlock::new(channels, BLOCK_FRAMES);
    if source_rate_hz == rate_hz {
        while reader.read(&mut block, BLOCK_FRAMES).map_err(decode_error)? > 0 {
            check_cancelled()?;
            each(&block)?;
        }
        return Ok(channels);
    }
    let mut resampler = StreamResampler::new(source_rate_hz, rate_hz, channels)
        .map_err(|e| StageError::Invalid(format!("{location}: {e}")))?;
    let mut converted: Vec<Vec<f32>> = vec![Vec::new(); channels];
    // Converted audio leaves in blocks of at most BLOCK_FRAMES, through one
    // reused block.
    let mut out = AudioBlock::new(channels, BLOCK_FRAMES);
    let mut emit = |converted: &mut Vec<Vec<f32>>, each: &mut dyn FnMut(&AudioBlock) -> Result<(), StageError>| {
        let frames = converted[0].len();
        for start in (0..frames).step_by(BLOCK_FRAMES) {
            let end = (start + BLOCK_FRAMES).min(frames);
            out.set_frames(end - start);
            for (o, c) in out.channels_mut().zip(converted.iter()) {
                o.copy_from_slice(&c[start..end]);
            }
            each(&out)?;
        }
        for c in converted.iter_mut() {
            c.clear();
        }
        Ok::<(), StageError>(())
    };
    while reader.read(&mut block, BLOCK_FRAMES).map_err(decode_error)? > 0 {
        check_cancelled()?;
        resampler.push(&block, &mut converted).map_err(|e| StageError::Invalid(format!("{location}: {e}")))?;
        if converted[0].len() >= BLOCK_FRAMES {
            emit(&mut converted, &mut each)?;
        }
    }
    resampler.finish(&mut converted).map_err(|e| StageError::Invalid(format!("{location}: {e}")))?;
    emit(&mut converted, &mut each)?;
    Ok(channels)
}

/// A 32-bit float WAV at `rate_hz`: how mixes, masters and renders are kept.
pub(crate) fn float_wav(rate_hz: u32, channels: usize) -> crate::encode::EncodeSpec {
    crate::encode::EncodeSpec {
        format: crate::manifest::AudioFormat::Wav,
        bit_depth: 32,
        rate_hz,
        channels,
        dither: crate::manifest::Dither::None,
        dither_seed: 0,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A stage run under [`cancellable`] stops at its next block once the
    /// flag is raised, and runs to its end while it is not.
    #[test]
    fn a_raised_flag_stops_the_stage_at_its_next_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tone.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(&path, spec).unwrap();
        for n in 0..48_000 {
            writer.write_sample(((n as f32 * 0.05).sin() * 8_000.0) as i16).unwrap();
        }
        writer.finalize().unwrap();

        let flag = Arc::new(AtomicBool::new(false));
        let mut blocks = 0;
        let whole = cancellable(flag.clone(), || {
            stream_at_rate(AudioInput::open_file(&path).unwrap(), 48_000, |_| {
                blocks += 1;
                Ok(())
            })
        });
        assert!(whole.is_ok() && blocks == 48_000usize.div_ceil(BLOCK_FRAMES), "{blocks} blocks");

        let mut seen = 0;
        let stopped = cancellable(flag.clone(), || {
            stream_at_rate(AudioInput::open_file(&path).unwrap(), 48_000, |_| {
                seen += 1;
                if seen == 3 {
                    flag.store(true, Ordering::Relaxed);
                }
                Ok(())
            })
        });
        assert!(matches!(stopped, Err(StageError::Cancelled)), "{stopped:?}");
        assert_eq!(seen, 3, "no block after the flag");
        // Outside `cancellable` the flag no longer applies.
        assert!(stream_at_rate(AudioInput::open_file(&path).unwrap(), 48_000, |_| Ok(())).is_ok());
    }
}
