//! Speed of the meter (loudness, LRA, sample peak, both true peaks) beside
//! the `ebur128` crate doing the same (integrated, short-term, LRA, true
//! peak), on 20 s of the example album at 44.1 kHz stereo, mastered loud
//! (peaks at -1 dBFS, where the true-peak readers can skip nothing).
//! Criterion's elements/s divided by 44 100 is x-realtime on one core.
//!
//! `cargo bench -p lacquer-pipelines --bench meter`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lacquer_pipelines::decode::AudioReader;
use lacquer_pipelines::dsp::AudioBlock;
use lacquer_pipelines::meter::Meter;

const BLOCK_FRAMES: usize = 4096;

fn loud_music() -> (u32, Vec<AudioBlock>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/album-small/01-chorale-66/drums.flac");
    let file = std::fs::File::open(path).unwrap();
    let length = file.metadata().unwrap().len();
    let mut reader = AudioReader::open(file, length, Some("flac")).unwrap();
    let rate_hz = reader.info().sample_rate_hz;
    let mut blocks = Vec::new();
    let mut block = AudioBlock::new(2, BLOCK_FRAMES);
    while reader.read(&mut block, BLOCK_FRAMES).unwrap() > 0 {
        blocks.push(block.clone());
    }
    // Soft-clipped 12 dB hotter, peaks at -1 dBFS: a loud master.
    let peak = blocks
        .iter()
        .flat_map(|b| b.channels().flatten().copied().collect::<Vec<_>>())
        .fold(0f32, |m, x| m.max(x.abs()));
    let drive = 4.0 / peak;
    for block in &mut blocks {
        for channel in block.channels_mut() {
            for x in channel.iter_mut() {
                *x = (*x * drive).tanh() * 0.89;
            }
        }
    }
    (rate_hz, blocks)
}

fn meter(c: &mut Criterion) {
    let (rate_hz, blocks) = loud_music();
    let frames: usize = blocks.iter().map(AudioBlock::frames).sum();
    let mut group = c.benchmark_group("meter");
    group.sample_size(20);
    group.throughput(Throughput::Elements(frames as u64));
    group.bench_function(format!("lacquer meter, {rate_hz} Hz stereo frames"), |b| {
        b.iter(|| {
            let mut meter = Meter::new(rate_hz, 2);
            for block in &blocks {
                meter.add(black_box(block));
            }
            black_box(meter.finish())
        })
    });
    group.bench_function(format!("ebur128 crate I+S+LRA+true peak, {rate_hz} Hz stereo frames"), |b| {
        use ebur128::{EbuR128, Mode};
        b.iter(|| {
            let mut meter = EbuR128::new(2, rate_hz, Mode::I | Mode::S | Mode::LRA | Mode::TRUE_PEAK).unwrap();
            for block in &blocks {
                meter.add_frames_planar_f32(&[block.channel(0), block.channel(1)]).unwrap();
            }
            black_box((meter.loudness_global().unwrap(), meter.loudness_range().unwrap(), meter.true_peak(0).unwrap()))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = meter
}
criterion_main!(benches);
