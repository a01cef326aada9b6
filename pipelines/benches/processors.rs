//! Speed of every processor (nanoseconds per sample per channel) and of
//! the whole mastering chain (x-realtime on one core, 44.1 kHz stereo).
//!
//! `cargo bench -p lacquer-pipelines --bench processors`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lacquer_pipelines::analysis::Analyzer;
use lacquer_pipelines::dsp::biquad::FilterChain;
use lacquer_pipelines::dsp::compressor::Compressor;
use lacquer_pipelines::dsp::curve_eq::{CurveEq, CurveFir};
use lacquer_pipelines::dsp::delay::Delay;
use lacquer_pipelines::dsp::dither::Quantizer;
use lacquer_pipelines::dsp::limiter::{LimiterSettings, TruePeakLimiter};
use lacquer_pipelines::dsp::reverb::Reverb;
use lacquer_pipelines::dsp::saturation::Saturation;
use lacquer_pipelines::dsp::stereo::StereoImage;
use lacquer_pipelines::dsp::{AudioBlock, Processor};
use lacquer_pipelines::manifest::{self, Detector, Filter, FilterType};

const RATE_HZ: u32 = 44_100;
const BLOCK_FRAMES: usize = 4096;

/// One block of pink-ish program material, stereo, around -14 LUFS.
fn program_block() -> AudioBlock {
    let mut state = 0x1234_5678u32;
    let mut lowpassed = [0f32; 2];
    let channels = (0..2)
        .map(|c| {
            (0..BLOCK_FRAMES)
                .map(|n| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    let white = state as f32 / u32::MAX as f32 - 0.5;
                    lowpassed[c] = 0.97 * lowpassed[c] + 0.03 * white;
                    let tone = (n as f32 * 0.031).sin() * 0.25;
                    tone + lowpassed[c] * 4.0 + white * 0.05
                })
                .collect()
        })
        .collect();
    AudioBlock::from_planar(channels)
}

fn eq_settings() -> Vec<Filter> {
    vec![
        Filter { kind: FilterType::HighPass, freq_hz: 25.0, q: None, gain_db: None, slope_db_oct: None },
        Filter { kind: FilterType::LowShelf, freq_hz: 110.0, q: None, gain_db: Some(0.5), slope_db_oct: None },
        Filter { kind: FilterType::Peak, freq_hz: 3200.0, q: Some(1.2), gain_db: Some(-1.0), slope_db_oct: None },
        Filter { kind: FilterType::HighShelf, freq_hz: 9000.0, q: None, gain_db: Some(1.0), slope_db_oct: None },
    ]
}

fn compressor_settings() -> manifest::Compressor {
    manifest::Compressor {
        threshold_db: -20.0,
        ratio: 1.5,
        attack_ms: 30.0,
        release_ms: 250.0,
        knee_db: 6.0,
        makeup_db: 0.0,
        detector: Detector::Rms,
        stereo_link: true,
    }
}

fn limiter_settings() -> LimiterSettings {
    LimiterSettings { ceiling_dbtp: -1.0, release_ms: 60.0, lookahead_ms: 1.5 }
}

/// Runs a processor over a fresh copy of the block each iteration.
fn bench_processor(c: &mut Criterion, name: &str, mut processor: Box<dyn Processor>, channels: usize) {
    let block = program_block();
    let input = if channels == 1 { AudioBlock::from_planar(vec![block.channel(0).to_vec()]) } else { block };
    let mut work = input.clone();
    let mut group = c.benchmark_group("processor");
    group.throughput(Throughput::Elements((BLOCK_FRAMES * channels) as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            work.clone_from(&input);
            processor.process(black_box(&mut work));
        })
    });
    group.finish();
}

fn processors(c: &mut Criterion) {
    let one_band = vec![eq_settings()[2].clone()];
    bench_processor(c, "biquad (one section)", Box::new(FilterChain::new(RATE_HZ, 1, BLOCK_FRAMES, &one_band)), 1);
    bench_processor(c, "eq 4 bands", Box::new(FilterChain::new(RATE_HZ, 2, BLOCK_FRAMES, &eq_settings())), 2);
    bench_processor(
        c,
        "compressor rms linked",
        Box::new(Compressor::new(RATE_HZ, 2, BLOCK_FRAMES, &compressor_settings())),
        2,
    );
    let saturation = manifest::Saturation { drive_db: 2.0, mix: 0.3 };
    bench_processor(c, "saturation 4x", Box::new(Saturation::new(RATE_HZ, 2, BLOCK_FRAMES, &saturation)), 2);
    let stereo = manifest::Stereo { width: 1.05, mono_below_hz: 120.0 };
    bench_processor(c, "stereo width + mono bass", Box::new(StereoImage::new(RATE_HZ, 2, BLOCK_FRAMES, &stereo)), 2);
    bench_processor(
        c,
        "true-peak limiter",
        Box::new(TruePeakLimiter::new(RATE_HZ, 2, BLOCK_FRAMES, &limiter_settings())),
        2,
    );
    let reverb = manifest::Reverb { decay_s: 1.8, predelay_ms: 20.0, damping: 0.5, size: 0.7, width: 1.0 };
    bench_processor(c, "reverb", Box::new(Reverb::new(RATE_HZ, 2, BLOCK_FRAMES, &reverb)), 2);
    let delay = manifest::Delay { time_ms: 120.0, feedback: 0.25, high_cut_hz: 6000.0, ping_pong: true };
    bench_processor(c, "delay ping-pong", Box::new(Delay::new(RATE_HZ, 2, BLOCK_FRAMES, &delay)), 2);
    // The album pass's EQ: a broad curve (lows down, presence up, highs
    // down) as a minimum-phase FIR, 8192 taps at 44.1 kHz.
    let fir = CurveFir::design(RATE_HZ, |freq_hz| {
        let octave = (freq_hz.max(20.0) / 1000.0).log2();
        (-3.0 + 1.5 * (octave + 4.0)).min(2.0 - 0.8 * octave.abs()).clamp(-3.5, 3.5)
    });
    bench_processor(c, "album-pass curve EQ (FIR, 8192 taps)", Box::new(CurveEq::new(&fir)), 2);

    let block = program_block();
    let mut group = c.benchmark_group("processor");
    group.throughput(Throughput::Elements((BLOCK_FRAMES * 2) as u64));
    let mut quantizer = Quantizer::new(manifest::Dither::Tpdf, 16, 2, 7);
    let mut out = vec![0i32; BLOCK_FRAMES];
    group.bench_function("tpdf dither to 16 bits", |b| {
        b.iter(|| {
            for channel in 0..2 {
                quantizer.quantize_channel(channel, block.channel(channel), &mut out);
            }
            black_box(&out);
        })
    });
    group.bench_function("analysis (loudness, true peak, spectrum)", |b| {
        b.iter_batched(
            || Analyzer::new(RATE_HZ, 2).unwrap(),
            |mut analyzer| {
                for _ in 0..8 {
                    analyzer.add(&block).unwrap();
                }
                black_box(analyzer);
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// The mastering chain as the master stage runs it: EQ (4 bands) →
/// compressor → saturation → stereo → true-peak limiter.
fn master_chain(c: &mut Criterion) {
    let input = program_block();
    let mut chain: Vec<Box<dyn Processor>> = vec![
        Box::new(FilterChain::new(RATE_HZ, 2, BLOCK_FRAMES, &eq_settings())),
        Box::new(Compressor::new(RATE_HZ, 2, BLOCK_FRAMES, &compressor_settings())),
        Box::new(Saturation::new(RATE_HZ, 2, BLOCK_FRAMES, &manifest::Saturation { drive_db: 2.0, mix: 0.3 })),
        Box::new(StereoImage::new(RATE_HZ, 2, BLOCK_FRAMES, &manifest::Stereo { width: 1.05, mono_below_hz: 120.0 })),
        Box::new(TruePeakLimiter::new(RATE_HZ, 2, BLOCK_FRAMES, &limiter_settings())),
    ];
    let mut work = input.clone();
    let mut group = c.benchmark_group("master chain");
    // Throughput in frames: criterion's elements/s divided by 44 100 is x-realtime.
    group.throughput(Throughput::Elements(BLOCK_FRAMES as u64));
    group.bench_function("eq4+comp+sat+stereo+limiter, 44.1 kHz stereo frames", |b| {
        b.iter(|| {
            work.clone_from(&input);
            for processor in chain.iter_mut() {
                processor.process(black_box(&mut work));
            }
        })
    });
    group.finish();
}

/// Decoding a 20 s stereo 24-bit FLAC stem, and converting it 44.1 → 48 kHz.
fn decode_and_resample(c: &mut Criterion) {
    use lacquer_pipelines::decode::AudioReader;
    use lacquer_pipelines::dsp::resample::StreamResampler;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/album-small/01-chorale-66/drums.flac");
    let bytes = std::fs::read(path).unwrap();
    let decode = |bytes: &[u8]| -> Vec<Vec<f32>> {
        let mut reader =
            AudioReader::open(std::io::Cursor::new(bytes.to_vec()), bytes.len() as u64, Some("flac")).unwrap();
        let mut block = AudioBlock::new(2, BLOCK_FRAMES);
        let mut out = vec![Vec::new(), Vec::new()];
        while reader.read(&mut block, BLOCK_FRAMES).unwrap() > 0 {
            for (o, c) in out.iter_mut().zip(block.channels()) {
                o.extend_from_slice(c);
            }
        }
        out
    };
    let audio = decode(&bytes);
    let frames = audio[0].len() as u64;
    let mut group = c.benchmark_group("io");
    group.sample_size(10);
    // Throughput in frames: elements/s divided by 44 100 is x-realtime.
    group.throughput(Throughput::Elements(frames));
    group.bench_function("decode 20 s stereo 24-bit FLAC", |b| b.iter(|| black_box(decode(&bytes))));
    group.bench_function("resample 20 s stereo 44.1 -> 48 kHz", |b| {
        b.iter(|| {
            let mut resampler = StreamResampler::new(44_100, 48_000, 2).unwrap();
            let mut out = vec![Vec::new(), Vec::new()];
            for start in (0..audio[0].len()).step_by(BLOCK_FRAMES) {
                let end = (start + BLOCK_FRAMES).min(audio[0].len());
                let block = AudioBlock::from_planar(vec![audio[0][start..end].to_vec(), audio[1][start..end].to_vec()]);
                resampler.push(&block, &mut out).unwrap();
            }
            resampler.finish(&mut out).unwrap();
            black_box(out)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = processors, master_chain, decode_and_resample
}
criterion_main!(benches);
