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
}
