//! Conversions between units, in one place.

/// Level below which a gain is treated as silence.
pub const MINUS_INFINITY_DB: f64 = -200.0;

/// Decibels to a linear amplitude factor.
#[inline]
pub fn db_to_gain(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}

/// A linear amplitude factor to decibels; silence is [`MINUS_INFINITY_DB`].
#[inline]
pub fn gain_to_db(gain: f64) -> f64 {
    if gain <= 0.0 { MINUS_INFINITY_DB } else { (20.0 * gain.log10()).max(MINUS_INFINITY_DB) }
}

/// Milliseconds to a whole number of frames at `rate_hz`, rounded.
#[inline]
pub fn ms_to_frames(ms: f64, rate_hz: u32) -> usize {
    (ms * 1e-3 * f64::from(rate_hz)).round().max(0.0) as usize
}

/// The per-sample coefficient of a one-pole smoother whose step response
/// reaches 1 - 1/e (63.2 %) after `time_ms`.
#[inline]
pub fn one_pole_coefficient(time_ms: f64, rate_hz: u32) -> f64 {
    let frames = time_ms * 1e-3 * f64::from(rate_hz);
    if frames <= 0.0 { 0.0 } else { (-1.0 / frames).exp() }
}

/// `log2(x)` for a positive normal `x`, within 2e-7 of the exact value
/// (the mantissa centred on 1, then the atanh series), in plain arithmetic
/// so every machine gets the same bits. For level detectors, where a libm
/// call per sample would be most of the work.
#[inline]
pub fn fast_log2(x: f32) -> f32 {
    // The exponent that puts the mantissa in [√½, √2), without a branch:
    // count it from √½'s bit pattern.
    const SQRT_HALF_BITS: i32 = 0x3f35_04f3;
    let bits = x.to_bits() as i32;
    let exponent = (bits - SQRT_HALF_BITS) >> 23;
    let mantissa = f32::from_bits((bits - (exponent << 23)) as u32);
    let t = (mantissa - 1.0) / (mantissa + 1.0);
    let t2 = t * t;
    // 2/ln 2 · (t + t³/3 + t⁵/5 + t⁷/7), |t| ≤ 0.172.
    exponent as f32 + t * (2.885_39 + t2 * (0.961_796_7 + t2 * (0.577_078 + t2 * 0.412_198_6)))
}

/// `2^x` for `x` in ±126 (clamped), within 2e-7 relative: the nearest
/// whole power of two from the exponent bits, times a polynomial for the
/// rest (|f| ≤ 0.5). Plain arithmetic, the same bits everywhere.
#[inline]
pub fn fast_exp2(x: f32) -> f32 {
    let x = x.clamp(-126.0, 126.0);
    let whole = (x + 126.5) as i32 - 126;
    let f = x - whole as f32;
    let fraction = 1.0
        + f * (std::f32::consts::LN_2
            + f * (0.240_226_5
                + f * (0.055_504_11 + f * (0.009_618_129 + f * (0.001_333_355_8 + f * 0.000_154_035_3)))));
    fraction * f32::from_bits(((whole + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for db in [-120.0, -6.0, 0.0, 3.0, 24.0] {
            assert!((gain_to_db(db_to_gain(db)) - db).abs() < 1e-12);
        }
        assert!((db_to_gain(-6.020_599_913_279_624) - 0.5).abs() < 1e-15);
        assert_eq!(gain_to_db(0.0), MINUS_INFINITY_DB);
        assert_eq!(ms_to_frames(1.5, 48_000), 72);
        let c = one_pole_coefficient(10.0, 48_000);
        assert!((c.powf(480.0) - (-1.0f64).exp()).abs() < 1e-12);
    }

    #[test]
    fn fast_log2_and_exp2_are_exact_enough() {
        let mut x = 1e-30f32;
        while x < 1e30 {
            let exact = f64::from(x).log2();
            assert!((f64::from(fast_log2(x)) - exact).abs() < 4e-7 * exact.abs().max(1.0), "log2 {x}");
            x *= 1.013;
        }
        for i in -126_000..=126_000 {
            let x = i as f32 / 1000.0;
            let exact = 2f64.powf(f64::from(x));
            assert!((f64::from(fast_exp2(x)) / exact - 1.0).abs() < 4e-7, "exp2 {x}");
        }
        assert_eq!(fast_exp2(0.0), 1.0);
        assert_eq!(fast_log2(1.0), 0.0);
    }
}
