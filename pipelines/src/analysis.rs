//! Measuring a track in one pass: loudness, loudness range, sample peak and
//! two true-peak readings (the [`crate::meter`]), a long-term average
//! spectrum in 1/3-octave bands, warmth, spectral tilt and stereo width.
//!
//! An [`Analysis`] is small, serializable and mergeable: it keeps the
//! energies of the 400 ms gating blocks and the 3 s short-term levels, so
//! the loudness and range of a whole album can be computed from the tracks'
//! analyses alone ([`album_loudness`]) on a machine that never saw the audio.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use realfft::{RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};

use crate::audio::AudioBlock;
use crate::meter::Meter;

/// 1/3-octave band centres (ISO 266 nominal), 20 Hz to 20 kHz.
pub const BAND_CENTRES_HZ: [f64; 31] = [
    20.0, 25.0, 31.5, 40.0, 50.0, 63.0, 80.0, 100.0, 125.0, 160.0, 200.0, 250.0, 315.0, 400.0, 500.0, 630.0, 800.0,
    1000.0, 1250.0, 1600.0, 2000.0, 2500.0, 3150.0, 4000.0, 5000.0, 6300.0, 8000.0, 10_000.0, 12_500.0, 16_000.0,
    20_000.0,
];
/// The warmth index compares these two regions.
pub const WARMTH_LOW_HZ: (f64, f64) = (150.0, 600.0);
pub const WARMTH_HIGH_HZ: (f64, f64) = (2000.0, 8000.0);
/// The tilt is fitted over this range.
pub const TILT_RANGE_HZ: (f64, f64) = (100.0, 10_000.0);
/// Levels below this are reported as this (silence, or a mono file's side).
pub const FLOOR_DB: f64 = -150.0;

/// The spectrum's window at rates up to 48 kHz; twice as long at each
/// doubling of the rate above, so every rate reads the spectrum with bins
/// of about 5–6 Hz (a 96 kHz file and a 48 kHz one of the same music read
/// the same balance, down to the lowest bands).
const FFT_FRAMES_48K: usize = 8192;

/// The spectrum's window (frames) at `rate_hz`.
fn fft_frames(rate_hz: u32) -> usize {
    let mut frames = FFT_FRAMES_48K;
    while rate_hz as usize > 48_000 * (frames / FFT_FRAMES_48K) {
        frames *= 2;
    }
    frames
}
/// BS.1770 gating.
const ABSOLUTE_GATE_LUFS: f64 = -70.0;
const RELATIVE_GATE_LU: f64 = -10.0;
/// EBU Tech 3342 loudness range.
const LRA_RELATIVE_GATE_LU: f64 = -20.0;

/// Everything measured on one track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub sample_rate_hz: u32,
    pub channels: usize,
    pub frames: u64,
    /// Integrated loudness (LUFS); `None` for silence.
    pub integrated_lufs: Option<f64>,
    /// Loudness range (LU), EBU Tech 3342.
    pub loudness_range_lu: f64,
    /// True peak over all channels (dBTP), read accurately: 4× through
    /// flat halfband filters, refined to 16× near the peak.
    pub true_peak_dbtp: f64,
    /// True peak as BS.1770 meters and QC tools read it (dBTP): libebur128's
    /// 48-tap interpolator, 4× (2× at 96 kHz and up).
    pub true_peak_bs1770_dbtp: f64,
    pub sample_peak_dbfs: f64,
    /// Peak-to-loudness ratio: true peak minus integrated loudness (dB).
    pub plr_db: Option<f64>,
    /// Highest short-term (3 s) loudness (LUFS).
    pub max_short_term_lufs: Option<f64>,
    /// Short-term loudness every 100 ms (LUFS, `FLOOR_DB` for silence).
    pub short_term_lufs: Vec<f32>,
    /// Energies (linear, K-weighted mean square summed over channels) of the
    /// 400 ms gating blocks, every 100 ms.
    pub block_energies: Vec<f64>,
    /// Long-term average spectrum: mean-square level per band of
    /// [`BAND_CENTRES_HZ`], averaged over channels (dB; 0 dB is a
    /// full-scale square wave's total).
    pub band_levels_db: Vec<f64>,
    /// Energy 150–600 Hz relative to 2–8 kHz (dB).
    pub warmth_db: f64,
    /// Slope of the band levels against frequency, 100 Hz–10 kHz (dB/octave).
    pub tilt_db_per_octave: f64,
    /// Side energy relative to mid energy (dB); `FLOOR_DB` for mono.
    pub width_db: f64,
}

impl Analysis {
    /// The higher of the two true-peak readings (dBTP): what a ceiling
    /// must hold, whichever meter a QC check uses.
    pub fn highest_true_peak_dbtp(&self) -> f64 {
        self.true_peak_dbtp.max(self.true_peak_bs1770_dbtp)
    }
}

/// Loudness of several tracks taken together.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlbumLoudness {
    pub integrated_lufs: Option<f64>,
    pub loudness_range_lu: f64,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot measure {channels}-channel audio at {rate_hz} Hz: {detail}")]
pub struct AnalysisError {
    pub rate_hz: u32,
    pub channels: usize,
    pub detail: String,
}

/// An [`Analyzer`] on a thread of its own: the stage that makes the audio
/// hands it each block and goes on making the next. Blocks are copied
/// into a few buffers that go round between the two threads, so nothing
/// is allocated per block; the analyzer sees the same blocks in the same
/// order, so what it measures is the same to the bit.
pub struct AnalyzerThread {
    rate_hz: u32,
    channels: usize,
    blocks: Option<SyncSender<AudioBlock>>,
    spare: Receiver<AudioBlock>,
    worker: Option<JoinHandle<Result<Analysis, AnalysisError>>>,
}

/// Blocks queued ahead of the analyzer.
const QUEUED_BLOCKS: usize = 4;

impl AnalyzerThread {
    /// Starts `analyzer` on its thread, with buffers of `max_block_frames`.
    pub fn spawn(analyzer: Analyzer, max_block_frames: usize) -> Result<Self, AnalysisError> {
        let (rate_hz, channels) = (analyzer.rate_hz, analyzer.channels);
        let (blocks, queued) = sync_channel::<AudioBlock>(QUEUED_BLOCKS);
        let (give_back, spare) = sync_channel::<AudioBlock>(QUEUED_BLOCKS + 1);
        for _ in 0..=QUEUED_BLOCKS {
            give_back.send(AudioBlock::new(channels, max_block_frames)).expect("room for every buffer");
        }
        let worker = std::thread::Builder::new()
            .name("analyzer".to_owned())
            .spawn(move || {
                let mut analyzer = analyzer;
                let mut failed = None;
                for block in queued {
                    if failed.is_none()
                        && let Err(e) = analyzer.add(&block)
                    {
                        failed = Some(e);
                    }
                    // The other side may have stopped taking buffers back.
                    let _ = give_back.send(block);
                }
                match failed {
                    Some(e) => Err(e),
                    None => analyzer.finish(),
                }
            })
            .map_err(|e| AnalysisError { rate_hz, channels, detail: format!("cannot start a thread: {e}") })?;
        Ok(Self { rate_hz, channels, blocks: Some(blocks), spare, worker: Some(worker) })
    }

    fn lost(&self) -> AnalysisError {
        AnalysisError { rate_hz: self.rate_hz, channels: self.channels, detail: "the analyzer's thread stopped".into() }
    }

    /// Hands a block to the analyzer (waits while every buffer is queued).
    pub fn add(&mut self, block: &AudioBlock) -> Result<(), AnalysisError> {
        let mut buffer = self.spare.recv().map_err(|_| self.lost())?;
        if buffer.channel_count() != block.channel_count() || buffer.capacity_frames() < block.frames() {
            buffer = AudioBlock::new(block.channel_count(), block.frames());
        }
        buffer.set_frames(block.frames());
        for (to, from) in buffer.channels_mut().zip(block.channels()) {
            to.copy_from_slice(from);
        }
        let blocks = self.blocks.as_ref().ok_or_else(|| self.lost())?;
        blocks.send(buffer).map_err(|_| self.lost())
    }

    /// Waits for the analyzer to take the last block; its analysis.
    pub fn finish(mut self) -> Result<Analysis, AnalysisError> {
        self.blocks = None;
        let worker = self.worker.take().ok_or_else(|| self.lost())?;
        worker.join().map_err(|_| self.lost())?
    }
}

impl Drop for AnalyzerThread {
    fn drop(&mut self) {
        // Dropped unfinished (the stage failed): close the queue and wait
        // for the thread, so none outlives its stage.
        self.blocks = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Measures a stream of blocks.
pub struct Analyzer {
    rate_hz: u32,
    channels: usize,
    meter: Meter,
    frames: u64,
    // Spectrum (Welch): a window of the latest frames per channel,
    // transformed in single precision (its rounding lies some 140 dB
    // under the window's loudest bin, below anything a band reads) and
    // averaged in double.
    fft: Arc<dyn RealToComplex<f32>>,
    hann: Vec<f32>,
    window_fill: usize,
    windows: Vec<Vec<f32>>,
    fft_input: Vec<f32>,
    fft_output: Vec<realfft::num_complex::Complex<f32>>,
    fft_scratch: Vec<realfft::num_complex::Complex<f32>>,
    bin_power: Vec<f64>,
    spectra_count: u64,
    /// Mid and side energies, each summed in four lanes by the frame's
    /// index modulo four (so the sums run as vectors, and are the same
    /// whatever the blocks the audio came in).
    mid_energy: [f64; 4],
    side_energy: [f64; 4],
}

impl Analyzer {
    /// A meter for mono or stereo audio.
    pub fn new(rate_hz: u32, channels: usize) -> Result<Self, AnalysisError> {
        Self::with_meter(rate_hz, channels, Meter::new)
    }

    /// Loudness and balance only: the true peaks read as the sample peak
    /// (finalize's loudness probes, which also read the balance).
    pub fn without_true_peaks(rate_hz: u32, channels: usize) -> Result<Self, AnalysisError> {
        Self::with_meter(rate_hz, channels, Meter::loudness_only)
    }

    fn with_meter(
        rate_hz: u32,
        channels: usize,
        meter: impl FnOnce(u32, usize) -> Meter,
    ) -> Result<Self, AnalysisError> {
        let error = |detail: String| AnalysisError { rate_hz, channels, detail };
        if !(1..=2).contains(&channels) {
            return Err(error("only mono and stereo are measured".to_owned()));
        }
        if !(1_000..=768_000).contains(&rate_hz) {
            return Err(error("the rate is outside 1–768 kHz".to_owned()));
        }
        let meter = meter(rate_hz, channels);
        let fft_frames = fft_frames(rate_hz);
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(fft_frames);
        let hann = (0..fft_frames)
            .map(|n| (0.5 - 0.5 * (std::f64::consts::TAU * n as f64 / fft_frames as f64).cos()) as f32)
            .collect();
        Ok(Self {
            rate_hz,
            channels,
            meter,
            frames: 0,
            fft_input: fft.make_input_vec(),
            fft_output: fft.make_output_vec(),
            fft_scratch: fft.make_scratch_vec(),
            fft,
            hann,
            window_fill: 0,
            windows: vec![vec![0.0; fft_frames]; channels],
            bin_power: vec![0.0; fft_frames / 2 + 1],
            spectra_count: 0,
            mid_energy: [0.0; 4],
            side_energy: [0.0; 4],
        })
    }

    /// Adds a block of audio.
    pub fn add(&mut self, block: &AudioBlock) -> Result<(), AnalysisError> {
        debug_assert_eq!(block.channel_count(), self.channels);
        if self.channels == 2 {
            self.add_mid_side(block.channel(0), block.channel(1));
        }
        self.frames += block.frames() as u64;
        self.meter.add(block);
        let mut offset = 0;
        while offset < block.frames() {
            let fft_frames = self.hann.len();
            let take = (fft_frames - self.window_fill).min(block.frames() - offset);
            for (window, channel) in self.windows.iter_mut().zip(block.channels()) {
                window[self.window_fill..self.window_fill + take].copy_from_slice(&channel[offset..offset + take]);
            }
            self.window_fill += take;
            offset += take;
            if self.window_fill == fft_frames {
                self.accumulate_spectrum();
            }
        }
        Ok(())
    }

    /// Adds a stereo block's mid and side energies, lane by frame index.
    fn add_mid_side(&mut self, left: &[f32], right: &[f32]) {
        let mut lane = (self.frames % 4) as usize;
        let add = |lane: usize, l: f32, r: f32, mid: &mut [f64; 4], side: &mut [f64; 4]| {
            let (mid_value, side_value) = ((f64::from(l) + f64::from(r)) / 2.0, (f64::from(l) - f64::from(r)) / 2.0);
            mid[lane] += mid_value * mid_value;
            side[lane] += side_value * side_value;
        };
        // Up to the next frame whose index is a multiple of four, then four
        // at a time, then what is left.
        let head = ((4 - lane) % 4).min(left.len());
        for (l, r) in left[..head].iter().zip(&right[..head]) {
            add(lane, *l, *r, &mut self.mid_energy, &mut self.side_energy);
            lane = (lane + 1) % 4;
        }
        let (left, right) = (&left[head..], &right[head..]);
        let whole = left.len() / 4 * 4;
        for (l, r) in left[..whole].chunks_exact(4).zip(right[..whole].chunks_exact(4)) {
            for lane in 0..4 {
                add(lane, l[lane], r[lane], &mut self.mid_energy, &mut self.side_energy);
            }
        }
        for (lane, (l, r)) in left[whole..].iter().zip(&right[whole..]).enumerate() {
            add(lane, *l, *r, &mut self.mid_energy, &mut self.side_energy);
        }
    }

    fn accumulate_spectrum(&mut self) {
        for window in &mut self.windows {
            for ((input, sample), w) in self.fft_input.iter_mut().zip(window.iter()).zip(&self.hann) {
                *input = sample * w;
            }
            if self.fft.process_with_scratch(&mut self.fft_input, &mut self.fft_output, &mut self.fft_scratch).is_ok() {
                for (power, bin) in self.bin_power.iter_mut().zip(&self.fft_output) {
                    *power += f64::from(bin.norm_sqr());
                }
            }
            window.copy_within(self.hann.len() / 2.., 0);
        }
        self.spectra_count += self.channels as u64;
        self.window_fill = self.hann.len() / 2;
    }

    /// The measurements of everything added.
    pub fn finish(mut self) -> Result<Analysis, AnalysisError> {
        if self.window_fill > 0 && self.spectra_count == 0 {
            // Shorter than one window: analyse what there is, zero-padded.
            for window in &mut self.windows {
                window[self.window_fill..].fill(0.0);
            }
            self.accumulate_spectrum();
        }
        let reading = self.meter.finish();
        let segments = &reading.segment_energies;
        let block_energies = windowed_means(segments, 4);
        let short_term_energies = windowed_means(segments, 30);
        let integrated_lufs = gated_mean(block_energies.iter().copied(), RELATIVE_GATE_LU).map(energy_to_lufs);
        let short_term_lufs: Vec<f32> =
            short_term_energies.iter().map(|&e| power_db_lufs(e).max(FLOOR_DB) as f32).collect();
        let loudness_range_lu = loudness_range_lu(segments);
        let true_peak_dbtp = power_db(reading.true_peak * reading.true_peak);
        let true_peak_bs1770_dbtp = power_db(reading.true_peak_bs1770 * reading.true_peak_bs1770);
        let sample_peak = reading.sample_peak;
        let band_levels_db = self.band_levels_db();
        let bin_hz = f64::from(self.rate_hz) / self.hann.len() as f64;
        let region = |(low, high): (f64, f64)| -> f64 {
            let first = (low / bin_hz).ceil() as usize;
            let last = ((high / bin_hz).floor() as usize).min(self.bin_power.len() - 1);
            self.bin_power[first..=last].iter().sum()
        };
        let warmth_db = power_db(region(WARMTH_LOW_HZ)) - power_db(region(WARMTH_HIGH_HZ));
        let max_short_term = short_term_lufs.iter().copied().fold(f32::MIN, f32::max);
        Ok(Analysis {
            sample_rate_hz: self.rate_hz,
            channels: self.channels,
            frames: self.frames,
            integrated_lufs,
            loudness_range_lu,
            true_peak_dbtp,
            true_peak_bs1770_dbtp,
            sample_peak_dbfs: power_db(sample_peak * sample_peak),
            plr_db: integrated_lufs.map(|lufs| true_peak_dbtp - lufs),
            max_short_term_lufs: (max_short_term > FLOOR_DB as f32).then_some(f64::from(max_short_term)),
            short_term_lufs,
            block_energies,
            tilt_db_per_octave: tilt_db_per_octave(&band_levels_db),
            band_levels_db,
            warmth_db,
            width_db: if self.channels == 2 {
                let total = |lanes: [f64; 4]| (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
                power_db(total(self.side_energy)) - power_db(total(self.mid_energy))
            } else {
                FLOOR_DB
            },
        })
    }

    /// Mean-square level per 1/3-octave band, from the averaged periodogram.
    /// Each bin stands for the stretch of frequency around it, one bin
    /// wide, and counts toward a band by the share of that stretch inside
    /// the band: no band is empty at any rate, and a band's level does not
    /// jump with where the bins of a given rate fall (a 48 kHz file and a
    /// 44.1 kHz one of the same music read the same balance).
    fn band_levels_db(&self) -> Vec<f64> {
        let bin_hz = f64::from(self.rate_hz) / self.hann.len() as f64;
        // Parseval with the window: over the one-sided spectrum,
        // Σ|X|² ≈ N · Σw² · mean square / 2.
        let window_power: f64 = self.hann.iter().map(|&w| f64::from(w) * f64::from(w)).sum();
        let scale = 2.0 / (self.hann.len() as f64 * window_power * self.spectra_count.max(1) as f64);
        BAND_CENTRES_HZ
            .iter()
            .map(|&centre| {
                let (low, high) = (centre * 2f64.powf(-1.0 / 6.0), centre * 2f64.powf(1.0 / 6.0));
                let first = ((low / bin_hz - 0.5).floor().max(0.0)) as usize;
                let last = ((high / bin_hz + 0.5).ceil() as usize).min(self.bin_power.len() - 1);
                let power: f64 = (first..=last)
                    .map(|bin| {
                        let (from, to) = ((bin as f64 - 0.5) * bin_hz, (bin as f64 + 0.5) * bin_hz);
                        let inside = (to.min(high) - from.max(low)).max(0.0) / bin_hz;
                        inside * self.bin_power[bin]
                    })
                    .sum();
                power_db(power * scale)
            })
            .collect()
    }
}

/// Least-squares slope of band level against log2 frequency over
/// [`TILT_RANGE_HZ`], ignoring silent bands.
pub fn tilt_db_per_octave(band_levels_db: &[f64]) -> f64 {
    let points: Vec<(f64, f64)> = BAND_CENTRES_HZ
        .iter()
        .zip(band_levels_db)
        .filter(|(f, level)| (TILT_RANGE_HZ.0..=TILT_RANGE_HZ.1).contains(*f) && **level > FLOOR_DB + 1.0)
        .map(|(f, level)| (f.log2(), *level))
        .collect();
    if points.len() < 2 {
        return 0.0;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let covariance: f64 = points.iter().map(|(x, y)| (x - mean_x) * (y - mean_y)).sum();
    let variance: f64 = points.iter().map(|(x, _)| (x - mean_x) * (x - mean_x)).sum();
    covariance / variance
}

fn power_db(power: f64) -> f64 {
    if power > 0.0 { (10.0 * power.log10()).max(FLOOR_DB) } else { FLOOR_DB }
}

fn lufs_to_energy(lufs: f64) -> f64 {
    if lufs.is_finite() { 10f64.powf((lufs + 0.691) / 10.0) } else { 0.0 }
}

fn energy_to_lufs(energy: f64) -> f64 {
    -0.691 + 10.0 * energy.log10()
}

/// Means of every `window` consecutive 100 ms energies: the 400 ms gating
/// blocks (4) or the 3 s short-term windows (30), every 100 ms.
fn windowed_means(segments: &[f64], window: usize) -> Vec<f64> {
    segments.windows(window).map(|w| w.iter().sum::<f64>() / window as f64).collect()
}

/// Integrated loudness (BS.1770 gating) from a [`crate::meter::Reading`]'s
/// 100 ms energies; `None` for silence.
pub fn integrated_lufs(segment_energies: &[f64]) -> Option<f64> {
    gated_mean(windowed_means(segment_energies, 4).into_iter(), RELATIVE_GATE_LU).map(energy_to_lufs)
}

/// Loudness range (EBU Tech 3342, LU) from a [`crate::meter::Reading`]'s
/// 100 ms energies.
pub fn loudness_range_lu(segment_energies: &[f64]) -> f64 {
    loudness_range(&lra_energies(&windowed_means(segment_energies, 30)))
}

/// Loudness of an energy, `FLOOR_DB` for none.
fn power_db_lufs(energy: f64) -> f64 {
    if energy > 0.0 { energy_to_lufs(energy) } else { FLOOR_DB }
}

/// The short-term energies the loudness range is read from: one a second
/// (windows of 3 s overlapping by 2 s, as EBU Tech 3342 and libebur128
/// take them) out of the every-100 ms list.
fn lra_energies(short_term_energies: &[f64]) -> Vec<f64> {
    short_term_energies.iter().step_by(10).copied().collect()
}

/// Integrated loudness (BS.1770 gating) and loudness range (EBU Tech 3342)
/// of several analyses taken together, as if their audio were one stream.
pub fn album_loudness(analyses: &[&Analysis]) -> AlbumLoudness {
    let blocks = analyses.iter().flat_map(|a| a.block_energies.iter().copied());
    let integrated_lufs = gated_mean(blocks, RELATIVE_GATE_LU).map(energy_to_lufs);
    let short_term: Vec<f64> = analyses
        .iter()
        .flat_map(|a| {
            lra_energies(&a.short_term_lufs.iter().map(|&l| lufs_to_energy(f64::from(l))).collect::<Vec<_>>())
        })
        .collect();
    AlbumLoudness { integrated_lufs, loudness_range_lu: loudness_range(&short_term) }
}

/// Mean of the energies above the absolute gate and above the relative
/// gate (in LU below the ungated mean).
fn gated_mean(energies: impl Iterator<Item = f64> + Clone, relative_gate_lu: f64) -> Option<f64> {
    let absolute = lufs_to_energy(ABSOLUTE_GATE_LUFS);
    let above: Vec<f64> = energies.filter(|&e| e > absolute).collect();
    if above.is_empty() {
        return None;
    }
    let ungated = above.iter().sum::<f64>() / above.len() as f64;
    let relative = ungated * 10f64.powf(relative_gate_lu / 10.0);
    let gated: Vec<f64> = above.into_iter().filter(|&e| e >= relative).collect();
    (!gated.is_empty()).then(|| gated.iter().sum::<f64>() / gated.len() as f64)
}

/// EBU Tech 3342: the spread between the 10th and 95th percentiles of the
/// gated short-term levels.
fn loudness_range(short_term_energies: &[f64]) -> f64 {
    let absolute = lufs_to_energy(ABSOLUTE_GATE_LUFS);
    let above: Vec<f64> = short_term_energies.iter().copied().filter(|&e| e > absolute).collect();
    if above.is_empty() {
        return 0.0;
    }
    let mean = above.iter().sum::<f64>() / above.len() as f64;
    let gate = mean * 10f64.powf(LRA_RELATIVE_GATE_LU / 10.0);
    let mut levels: Vec<f64> = above.into_iter().filter(|&e| e >= gate).map(energy_to_lufs).collect();
    if levels.is_empty() {
        return 0.0;
    }
    levels.sort_by(f64::total_cmp);
    let percentile = |p: f64| levels[((levels.len() - 1) as f64 * p).round() as usize];
    percentile(0.95) - percentile(0.10)
}
