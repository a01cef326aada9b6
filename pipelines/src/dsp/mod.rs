//! The DSP processors every stage is built from.
//!
//! One contract for all of them: `new(rate_hz, channels, max_block_frames,
//! settings)` — the same four arguments for every processor, though not
//! each needs all (a filter keeps no block buffer; a return's reverb is
//! stereo) — allocates and precomputes; [`Processor::process`] and
//! [`Processor::reset`] never allocate; [`Processor::latency_frames`] says
//! how late the output is, so chains can be aligned before they are summed.
//! Audio is planar `f32` in an [`AudioBlock`]; filter state is `f64` where
//! precision needs it. Units live in names.
//!
//! Each processor's module owns its settings type (`Settings`, or
//! `Filter` for the EQ), with its defaults; the manifest composes these
//! types into the YAML contract, so `dsp` never reaches up into it.

/// Defines a function whose body is compiled twice: as written, and for
/// AVX2 (eight `f32` lanes instead of four), the latter run when the CPU
/// has it. Only the vector width changes: every lane does the same IEEE
/// operations in the same order (the compiler never reassociates floats or
/// fuses a multiply and an add unasked), so both give the same bits, which
/// `every_instruction_set_gives_the_same_bits` checks.
macro_rules! wide_fn {
    ($(#[$meta:meta])* $vis:vis fn $name:ident$(<$($generic:ident: $bound:path),*>)?($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name$(<$($generic: $bound),*>)?($($arg: $ty),*) {
            #[inline(always)]
            fn portable$(<$($generic: $bound),*>)?($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            fn avx2$(<$($generic: $bound),*>)?($($arg: $ty),*) {
                portable($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if $crate::dsp::wide_lanes() {
                // SAFETY: `wide_lanes` has found AVX2 on this CPU.
                #[allow(unsafe_code)]
                return unsafe { avx2($($arg),*) };
            }
            portable($($arg),*)
        }
    };
}
pub(crate) use wide_fn;

/// Whether [`wide_fn`]s take their AVX2 form (cached by the standard
/// library after the first call).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn wide_lanes() -> bool {
    #[cfg(test)]
    if tests::NARROW_ONLY.get() {
        return false;
    }
    std::arch::is_x86_feature_detected!("avx2")
}

/// The largest magnitude among `samples`, or `floor` if none is larger
/// (NaN is passed over, as `f32::max` does). Eight running maxima side by
/// side, so the scan runs a vector at a time: the meters do this for
/// every value they make.
#[inline]
pub(crate) fn max_abs(samples: &[f32], floor: f32) -> f32 {
    #[inline(always)]
    fn larger(m: f32, x: f32) -> f32 {
        let x = x.abs();
        if x > m { x } else { m }
    }
    let mut lanes = [floor; 8];
    let mut chunks = samples.chunks_exact(8);
    for chunk in &mut chunks {
        for (m, &x) in lanes.iter_mut().zip(chunk) {
            *m = larger(*m, x);
        }
    }
    let rest = chunks.remainder().iter().fold(floor, |m, &x| larger(m, x));
    lanes.into_iter().fold(rest, larger)
}

wide_fn! {
    /// Interleaves two phases of a stream: `out[2n] = even[n]` and
    /// `out[2n + 1] = odd[n]` for every `n < out.len() / 2`. Eight pairs at
    /// a time, which the compiler turns into vector shuffles.
    pub(crate) fn interleave(even: &[f32], odd: &[f32], out: &mut [f32]) {
        let pairs = out.len() / 2;
        let (even, odd) = (&even[..pairs], &odd[..pairs]);
        let mut outs = out.chunks_exact_mut(16);
        for ((o, e), d) in (&mut outs).zip(even.chunks_exact(8)).zip(odd.chunks_exact(8)) {
            let o: &mut [f32; 16] = o.try_into().expect("sixteen");
            let (e, d): (&[f32; 8], &[f32; 8]) = (e.try_into().expect("eight"), d.try_into().expect("eight"));
            for k in 0..8 {
                o[2 * k] = e[k];
                o[2 * k + 1] = d[k];
            }
        }
        let done = pairs - pairs % 8;
        for (o, (e, d)) in outs.into_remainder().chunks_exact_mut(2).zip(even[done..].iter().zip(&odd[done..])) {
            o[0] = *e;
            o[1] = *d;
        }
    }
}

pub mod aligned;
pub mod biquad;
pub mod compressor;
pub mod curve_eq;
pub mod delay;
pub mod dither;
pub mod envelope;
pub mod fine_peak;
mod halfbands;
pub mod limiter;
pub mod oversample;
pub mod resample;
pub mod reverb;
pub mod saturation;
pub mod stereo;
pub mod units;

pub use units::{db_to_gain, gain_to_db};

pub use crate::audio::AudioBlock;

/// A block processor. See the module documentation for the contract.
pub trait Processor: Send {
    /// Processes `block` in place. Never allocates.
    fn process(&mut self, block: &mut AudioBlock);

    /// Forgets all state (delay lines, envelopes) as if newly built.
    fn reset(&mut self);

    /// How many frames the output lags the input.
    fn latency_frames(&self) -> usize {
        0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::Cell;

    use super::biquad::FilterChain;
    use super::compressor::Compressor;
    use super::delay::Delay;
    use super::limiter::{LimiterSettings, TruePeakLimiter};
    use super::reverb::Reverb;
    use super::saturation::Saturation;
    use super::stereo::StereoImage;
    use super::{AudioBlock, Processor};
    use super::{biquad, compressor, delay, reverb, saturation, stereo};

    #[test]
    fn max_abs_reads_as_a_plain_fold() {
        let samples: Vec<f32> = (0..37).map(|n| ((n as f32) * 1.3).sin() * (1.0 + n as f32 / 10.0)).collect();
        for length in [0, 1, 7, 8, 9, 16, 36, 37] {
            for floor in [0.0, 0.5, 10.0] {
                let plain = samples[..length].iter().fold(floor, |m: f32, x| m.max(x.abs()));
                assert_eq!(super::max_abs(&samples[..length], floor), plain, "{length} samples, floor {floor}");
            }
        }
        // The loudest one last, past the vector lanes; NaN passed over.
        assert_eq!(super::max_abs(&[0.1, f32::NAN, 0.2, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1, -0.9], 0.0), 0.9);
    }

    #[test]
    fn interleave_puts_even_and_odd_in_turn() {
        for pairs in [0, 1, 7, 8, 9, 16, 37] {
            let even: Vec<f32> = (0..pairs).map(|n| n as f32).collect();
            let odd: Vec<f32> = (0..pairs).map(|n| -(n as f32) - 0.5).collect();
            let mut out = vec![f32::NAN; 2 * pairs];
            super::interleave(&even, &odd, &mut out);
            let plain: Vec<f32> = even.iter().zip(&odd).flat_map(|(e, o)| [*e, *o]).collect();
            assert_eq!(out, plain, "{pairs} pairs");
        }
    }

    thread_local! {
        /// Set by a test to run every [`wide_fn`] in its portable form.
        pub(crate) static NARROW_ONLY: Cell<bool> = const { Cell::new(false) };
    }

    /// Every processor, hot enough that each of its paths runs.
    fn every_processor() -> Vec<Box<dyn Processor>> {
        let rate_hz = 44_100;
        let filters: Vec<biquad::Filter> = serde_norway::from_str(
            "[{type: high_pass, freq_hz: 30}, {type: low_shelf, freq_hz: 120, gain_db: 2}, \
              {type: peak, freq_hz: 3000, q: 1.5, gain_db: -2}, {type: high_shelf, freq_hz: 9000, gain_db: 1.5}]",
        )
        .expect("filters");
        let compressor: compressor::Settings =
            serde_norway::from_str("{threshold_db: -24, ratio: 3, attack_ms: 5, release_ms: 80}").expect("compressor");
        let saturation: saturation::Settings = serde_norway::from_str("{drive_db: 6, mix: 0.5}").expect("saturation");
        let stereo: stereo::Settings = serde_norway::from_str("{width: 1.3, mono_below_hz: 150}").expect("stereo");
        let reverb: reverb::Settings = serde_norway::from_str("{decay_s: 1.5, predelay_ms: 12}").expect("reverb");
        let delay: delay::Settings =
            serde_norway::from_str("{time_ms: 120, feedback: 0.4, ping_pong: true}").expect("delay");
        vec![
            Box::new(FilterChain::new(rate_hz, 2, 1024, &filters)),
            Box::new(Compressor::new(rate_hz, 2, 1024, &compressor)),
            Box::new(Saturation::new(rate_hz, 2, 1024, &saturation)),
            Box::new(StereoImage::new(rate_hz, 2, 1024, &stereo)),
            Box::new(Reverb::new(rate_hz, 2, 1024, &reverb)),
            Box::new(Delay::new(rate_hz, 2, 1024, &delay)),
            Box::new(TruePeakLimiter::new(
                rate_hz,
                2,
                1024,
                &LimiterSettings { ceiling_dbtp: -1.0, release_ms: 50.0, lookahead_ms: 1.5 },
            )),
        ]
    }

    fn run_every_processor() -> Vec<Vec<u32>> {
        let mut state = 0x9E37_79B9u32;
        let mut processors = every_processor();
        let mut out = vec![Vec::new(), Vec::new()];
        for b in 0..24 {
            let loud = if b % 6 < 3 { 2.5 } else { 0.05 };
            let channels = (0..2)
                .map(|c| {
                    (0..1024)
                        .map(|n| {
                            state ^= state << 13;
                            state ^= state >> 17;
                            state ^= state << 5;
                            let noise = state as f32 / u32::MAX as f32 - 0.5;
                            let t = (b * 1024 + n) as f32;
                            loud * ((t * 0.0371 + c as f32).sin() * 0.5 + noise * 0.3)
                        })
                        .collect()
                })
                .collect();
            let mut block = AudioBlock::from_planar(channels);
            for processor in processors.iter_mut() {
                processor.process(&mut block);
            }
            for (o, c) in out.iter_mut().zip(block.channels()) {
                o.extend(c.iter().map(|x| x.to_bits()));
            }
        }
        out
    }

    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        let wide = run_every_processor();
        NARROW_ONLY.set(true);
        let narrow = run_every_processor();
        NARROW_ONLY.set(false);
        assert!(wide[0].iter().any(|&x| x != 0), "the chain made sound");
        assert_eq!(wide, narrow, "the AVX2 and the portable forms differ");
    }
}
