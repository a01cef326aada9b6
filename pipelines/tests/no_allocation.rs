//! The processor contract, checked: once built, `process` and `reset`
//! allocate nothing, for every processor the stages use, whatever the
//! block size up to the one it was built for. An allocator that counts
//! the allocations of the thread under test stands in for the system's.

// A global allocator is an `unsafe` trait; it only forwards to the
// system's and counts.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use lacquer_pipelines::dsp::biquad::FilterChain;
use lacquer_pipelines::dsp::compressor::Compressor;
use lacquer_pipelines::dsp::curve_eq::{CurveEq, CurveFir};
use lacquer_pipelines::dsp::delay::Delay;
use lacquer_pipelines::dsp::limiter::{LimiterSettings, TruePeakLimiter};
use lacquer_pipelines::dsp::reverb::Reverb;
use lacquer_pipelines::dsp::saturation::Saturation;
use lacquer_pipelines::dsp::stereo::StereoImage;
use lacquer_pipelines::dsp::{AudioBlock, Processor};

struct Counting;

// Both the switch and the tally are per thread: tests run side by side,
// and another test's allocations must not count against this one's.
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations `work` makes on this thread.
fn allocations_in(work: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    work();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get) - before
}

const RATE_HZ: u32 = 48_000;
const MAX_BLOCK_FRAMES: usize = 4096;

fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_norway::from_str(text).unwrap()
}

/// Every processor the stages build, stereo, with settings that exercise
/// all of its paths.
fn processors() -> Vec<(&'static str, Box<dyn Processor>)> {
    let filters: Vec<lacquer_pipelines::manifest::Filter> = yaml(
        "[{ type: high_pass, freq_hz: 30, slope_db_oct: 24 }, { type: low_shelf, freq_hz: 120, gain_db: 2 },
          { type: peak, freq_hz: 2500, gain_db: -3, q: 2 }, { type: high_shelf, freq_hz: 9000, gain_db: 1.5 },
          { type: low_pass, freq_hz: 18000 }]",
    );
    vec![
        ("eq", Box::new(FilterChain::new(RATE_HZ, 2, MAX_BLOCK_FRAMES, &filters))),
        (
            "compressor",
            Box::new(Compressor::new(
                RATE_HZ,
                2,
                MAX_BLOCK_FRAMES,
                &yaml("{ threshold_db: -30, ratio: 4, attack_ms: 5, release_ms: 100, knee_db: 6, makeup_db: 3 }"),
            )),
        ),
        (
            "delay",
            Box::new(Delay::new(
                RATE_HZ,
                2,
                MAX_BLOCK_FRAMES,
                &yaml("{ time_ms: 350, feedback: 0.5, high_cut_hz: 6000, ping_pong: true }"),
            )),
        ),
        (
            "reverb",
            Box::new(Reverb::new(
                RATE_HZ,
                2,
                MAX_BLOCK_FRAMES,
                &yaml("{ decay_s: 2.5, predelay_ms: 20, damping: 0.5, size: 0.8, width: 1.0 }"),
            )),
        ),
        ("saturation", Box::new(Saturation::new(RATE_HZ, 2, MAX_BLOCK_FRAMES, &yaml("{ drive_db: 9, mix: 0.7 }")))),
        (
            "stereo",
            Box::new(StereoImage::new(RATE_HZ, 2, MAX_BLOCK_FRAMES, &yaml("{ width: 1.3, mono_below_hz: 120 }"))),
        ),
        (
            "album-pass curve eq",
            Box::new(CurveEq::new(&CurveFir::design(RATE_HZ, |freq_hz| {
                2.0 * (freq_hz.max(20.0) / 1000.0).log2().clamp(-1.5, 1.5)
            }))),
        ),
        (
            "limiter",
            Box::new(TruePeakLimiter::new(
                RATE_HZ,
                2,
                MAX_BLOCK_FRAMES,
                &LimiterSettings { ceiling_dbtp: -1.0, release_ms: 60.0, lookahead_ms: 1.5 },
            )),
        ),
    ]
}

#[test]
fn process_and_reset_allocate_nothing() {
    // Loud, varied programme: a chord, clicks and a rising level, so
    // every processor's gain paths and delay lines are used.
    let mut phase = 0u64;
    let mut fill = |block: &mut AudioBlock| {
        for frame in 0..block.frames() {
            let t = (phase + frame as u64) as f64 / f64::from(RATE_HZ);
            let level = 0.2 + 0.8 * (t * 0.7).fract();
            let click = if (phase + frame as u64).is_multiple_of(9_600) { 0.9 } else { 0.0 };
            let left = level
                * ((t * 220.0 * std::f64::consts::TAU).sin() * 0.5 + (t * 3_300.0 * std::f64::consts::TAU).sin() * 0.3)
                + click;
            block.channel_mut(0)[frame] = left as f32;
            block.channel_mut(1)[frame] = (left * 0.8 + (t * 97.0 * std::f64::consts::TAU).cos() * 0.2) as f32;
        }
        phase += block.frames() as u64;
    };
    for (name, mut processor) in processors() {
        let mut block = AudioBlock::new(2, MAX_BLOCK_FRAMES);
        let allocations = allocations_in(|| {
            for frames in [MAX_BLOCK_FRAMES, 1, 333, MAX_BLOCK_FRAMES, 64, 4000].iter().cycle().take(60) {
                block.set_frames(*frames);
                fill(&mut block);
                processor.process(&mut block);
            }
            processor.reset();
            block.set_frames(MAX_BLOCK_FRAMES);
            processor.process(&mut block);
        });
        assert_eq!(allocations, 0, "{name} allocated while processing");
        assert!(block.channels().all(|c| c.iter().all(|s| s.is_finite())), "{name}");
    }
}

#[test]
fn the_counter_counts() {
    let allocations = allocations_in(|| drop(std::hint::black_box(vec![0u8; 100])));
    assert_eq!(allocations, 1);
}

/// Allocations while `measure` takes sixty blocks of awkward sizes (up
/// to the largest) of a loud sine, filled in place.
fn allocations_measuring(mut measure: impl FnMut(&AudioBlock)) -> usize {
    let mut block = AudioBlock::new(2, MAX_BLOCK_FRAMES);
    allocations_in(|| {
        for (i, frames) in [MAX_BLOCK_FRAMES, 1, 333, 64, 4000].iter().cycle().take(60).enumerate() {
            block.set_frames(*frames);
            for (c, channel) in block.channels_mut().enumerate() {
                for (n, s) in channel.iter_mut().enumerate() {
                    *s = ((n + i * 7 + c) as f32 * 0.013).sin() * 0.9;
                }
            }
            measure(&block);
        }
    })
}

#[test]
fn the_meter_allocates_nothing_per_block() {
    // Its 100 ms list is reserved for five minutes; this is less.
    let mut meter = lacquer_pipelines::meter::Meter::new(RATE_HZ, 2);
    assert_eq!(allocations_measuring(|block| meter.add(block)), 0, "the meter allocated while measuring");
}

#[test]
fn the_analyzer_allocates_nothing_per_block() {
    // Loudness, peaks and the spectrum's FFT windows (a window every
    // 4,096 frames at 48 kHz: some twenty of them here).
    let mut analyzer = lacquer_pipelines::analysis::Analyzer::new(RATE_HZ, 2).unwrap();
    let allocations = allocations_measuring(|block| analyzer.add(block).unwrap());
    assert_eq!(allocations, 0, "the analyzer allocated while measuring");
}
