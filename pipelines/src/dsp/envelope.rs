//! Automation, fades and pan laws.
//!
//! Automation lanes are breakpoints `[time_s, value]`: linear between
//! points, held before the first and after the last. Gain lanes move
//! linearly in dB, which is an exact geometric step per sample, so a
//! ramp is as smooth as the signal it shapes. A jump (two points at the
//! same time) becomes a 5 ms ramp instead of a click.

use std::f64::consts::FRAC_PI_2;

use super::units::db_to_gain;

/// The shortest ramp a jump in automation becomes.
pub const MIN_RAMP_MS: f64 = 5.0;

/// A breakpoint lane on the frame timeline.
#[derive(Debug, Clone)]
pub struct Lane {
    /// (frame, value), strictly increasing in frame.
    points: Vec<(f64, f64)>,
    /// Index of the segment the last query fell in.
    segment: usize,
}

impl Lane {
    /// From manifest breakpoints (`[time_s, value]`, in time order), with
    /// `offset_s` subtracted from every time (a trimmed start).
    pub fn new(breakpoints: &[[f64; 2]], rate_hz: u32, offset_s: f64) -> Self {
        let rate = f64::from(rate_hz);
        let min_ramp = MIN_RAMP_MS * 1e-3 * rate;
        let mut points: Vec<(f64, f64)> = Vec::with_capacity(breakpoints.len());
        for &[time_s, value] in breakpoints {
            let mut frame = (time_s - offset_s) * rate;
            if let Some(&(previous, _)) = points.last()
                && frame < previous + min_ramp
            {
                frame = previous + min_ramp;
            }
            points.push((frame, value));
        }
        Self { points, segment: 0 }
    }

    /// The value at `frame` (fractional frames allowed).
    pub fn value_at(&mut self, frame: f64) -> f64 {
        let points = &self.points;
        let Some(&(first_frame, first_value)) = points.first() else { return 0.0 };
        if frame <= first_frame {
            return first_value;
        }
        let &(last_frame, last_value) = points.last().unwrap_or(&(first_frame, first_value));
        if frame >= last_frame {
            return last_value;
        }
        if points[self.segment].0 > frame {
            self.segment = 0;
        }
        while points[self.segment + 1].0 <= frame {
            self.segment += 1;
        }
        let (f0, v0) = points[self.segment];
        let (f1, v1) = points[self.segment + 1];
        v0 + (v1 - v0) * (frame - f0) / (f1 - f0)
    }

    /// The frame of the lane's first point after `frame` (infinity past
    /// the last): where it next turns.
    pub fn next_point_after(&self, frame: f64) -> f64 {
        self.points.iter().map(|p| p.0).find(|&f| f > frame).unwrap_or(f64::INFINITY)
    }

    /// Linear gains of a dB lane for frames `start..start + out.len()`
    /// (frames before 0 hold the first value).
    pub fn fill_gains(&mut self, start: i64, out: &mut [f32]) {
        let mut n = 0;
        while n < out.len() {
            let frame = (start + n as i64) as f64;
            // Up to the next breakpoint the dB value moves linearly, so the
            // gain moves by a constant ratio per frame.
            let next_break = self.next_point_after(frame);
            let run = ((next_break - frame).ceil().max(1.0) as usize).min(out.len() - n);
            let db_now = self.value_at(frame);
            let db_step = if run > 1 { (self.value_at(frame + 1.0) - db_now).clamp(-1e3, 1e3) } else { 0.0 };
            let mut gain = db_to_gain(db_now);
            let ratio = db_to_gain(db_step);
            for slot in &mut out[n..n + run] {
                *slot = gain as f32;
                gain *= ratio;
            }
            n += run;
        }
    }
}

/// Left and right gains of a mono source at `pan` (-1 left .. +1 right)
/// under a pan law (the centre's attenuation: 0, -3, -4.5 or -6 dB).
/// Hard left is (1, 0) under every law.
pub fn pan_gains(pan: f64, law_db: f64) -> (f32, f32) {
    let angle = (pan.clamp(-1.0, 1.0) + 1.0) * FRAC_PI_2 / 2.0;
    let (left, right) = (angle.cos(), angle.sin());
    if law_db == 0.0 {
        // Full level at the centre, the far side fading out.
        let boost = std::f64::consts::SQRT_2;
        return ((left * boost).min(1.0) as f32, (right * boost).min(1.0) as f32);
    }
    // The nominal laws are cos^k: -3 dB is constant power (k = 1, the
    // centre at -3.01 dB), -6 dB is linear (k = 2, -6.02 dB), -4.5 between.
    let k = law_db / -3.0;
    (left.powf(k) as f32, right.powf(k) as f32)
}

/// Frames between the pan law's exact gains under pan automation.
pub const PAN_CONTROL_FRAMES: usize = 32;

/// Pans `left` and `right` (the block from frame `position`) by `lane`:
/// a mono source by the pan law `law_db`, a stereo one (`None`) by its
/// balance. The law's gains are exact every [`PAN_CONTROL_FRAMES`] and
/// straight lines between: the lane is straight between its points, and
/// the gains bend too gently over so few frames to tell (no zipper, and
/// within 1e-6 of the law everywhere; see `tests/automation.rs`).
pub fn apply_pan_lane(lane: &mut Lane, position: i64, law_db: Option<f64>, left: &mut [f32], right: &mut [f32]) {
    let gains_at = |lane: &mut Lane, frame: usize| {
        let pan = lane.value_at((position + frame as i64) as f64);
        law_db.map_or_else(|| balance_gains(pan), |law_db| pan_gains(pan, law_db))
    };
    let mut start = 0;
    while start < left.len() {
        // A stretch ends where the lane turns: no line cuts a corner.
        let frame = (position + start as i64) as f64;
        let to_turn = (lane.next_point_after(frame) - frame).ceil().max(1.0);
        let frames = PAN_CONTROL_FRAMES.min(left.len() - start).min(to_turn as usize);
        let (from, to) = (gains_at(lane, start), gains_at(lane, start + frames));
        let step = 1.0 / frames as f32;
        let stretch = left[start..start + frames].iter_mut().zip(right[start..start + frames].iter_mut());
        for (i, (l, r)) in stretch.enumerate() {
            let t = i as f32 * step;
            *l *= from.0 + (to.0 - from.0) * t;
            *r *= from.1 + (to.1 - from.1) * t;
        }
        start += frames;
    }
}

/// Gains of a stereo source's balance (-1 .. +1): the centre is unity and
/// the far side fades out.
pub fn balance_gains(balance: f64) -> (f32, f32) {
    pan_gains(balance, 0.0)
}

/// A raised-cosine fade gain at `position` of `length` frames (0 → 1).
#[inline]
pub fn fade_in_gain(position: u64, length: u64) -> f32 {
    if position >= length {
        return 1.0;
    }
    let x = position as f64 / length as f64;
    (0.5 - 0.5 * (std::f64::consts::PI * x).cos()) as f32
}

/// Fades of a whole track: in over its first frames, out over its last.
#[derive(Debug, Clone, Copy)]
pub struct Fades {
    pub total_frames: u64,
    pub in_frames: u64,
    pub out_frames: u64,
}

impl Fades {
    /// Applies the fades to one channel's samples starting at `start`.
    pub fn apply(&self, start: u64, samples: &mut [f32]) {
        let out_start = self.total_frames.saturating_sub(self.out_frames);
        for (n, sample) in samples.iter_mut().enumerate() {
            let frame = start + n as u64;
            let mut gain = 1.0;
            if frame < self.in_frames {
                gain *= fade_in_gain(frame, self.in_frames);
            }
            if self.out_frames > 0 && frame >= out_start {
                gain *= fade_in_gain(self.total_frames.saturating_sub(frame + 1), self.out_frames);
            }
            *sample *= gain;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pan_laws() {
        for (law, centre_db) in [(0.0, 0.0), (-3.0, -3.0103), (-4.5, -4.5154), (-6.0, -6.0206)] {
            let (l, r) = pan_gains(0.0, law);
            assert!((20.0 * f64::from(l).log10() - centre_db).abs() < 0.01, "law {law}: centre {l}");
            assert_eq!(l, r);
            let (hard_l, hard_r) = pan_gains(-1.0, law);
            assert!((hard_l - 1.0).abs() < 1e-6 && hard_r.abs() < 1e-6, "law {law}: hard left is ({hard_l}, {hard_r})");
            let (right_l, right_r) = pan_gains(1.0, law);
            assert!(right_l.abs() < 1e-6 && (right_r - 1.0).abs() < 1e-6);
        }
        let (l, r) = pan_gains(-0.45, -3.0);
        assert!((l * l + r * r - 1.0).abs() < 1e-6, "-3 dB law keeps power constant");
    }

    #[test]
    fn lanes_interpolate_hold_and_soften_jumps() {
        let mut lane = Lane::new(&[[1.0, -0.5], [3.0, 0.5]], 100, 0.0);
        assert_eq!(lane.value_at(0.0), -0.5, "held before the first point");
        assert!((lane.value_at(200.0) - 0.0).abs() < 1e-12);
        assert_eq!(lane.value_at(1000.0), 0.5, "held after the last");
        let mut jump = Lane::new(&[[1.0, 0.0], [1.0, -60.0]], 48_000, 0.0);
        assert_eq!(jump.value_at(48_000.0 + 120.0), -30.0, "a jump becomes a 5 ms ramp");
        let mut trimmed = Lane::new(&[[2.0, 0.0], [4.0, 10.0]], 10, 1.0);
        assert_eq!(trimmed.value_at(20.0), 5.0, "times count from the trimmed start");
    }

    #[test]
    fn gain_fill_matches_the_db_line() {
        let mut lane = Lane::new(&[[0.0, -40.0], [1.0, 0.0], [1.5, -6.0]], 1000, 0.0);
        let mut gains = vec![0f32; 2000];
        for (start, chunk) in (0i64..).step_by(333).zip(gains.chunks_mut(333)) {
            lane.fill_gains(start, chunk);
        }
        for (n, g) in gains.iter().enumerate() {
            let want = db_to_gain(Lane::new(&[[0.0, -40.0], [1.0, 0.0], [1.5, -6.0]], 1000, 0.0).value_at(n as f64));
            assert!((f64::from(*g) / want - 1.0).abs() < 1e-5, "frame {n}: {g} vs {want}");
        }
    }

    #[test]
    fn fades_reach_silence_and_unity() {
        let fades = Fades { total_frames: 1000, in_frames: 100, out_frames: 200 };
        let mut samples = vec![1.0f32; 1000];
        fades.apply(0, &mut samples[..500]);
        fades.apply(500, &mut samples[500..]);
        assert_eq!(samples[0], 0.0);
        assert!((samples[50] - 0.5).abs() < 1e-6);
        assert_eq!(samples[100], 1.0);
        assert_eq!(samples[799], 1.0);
        assert_eq!(samples[999], 0.0, "the last frame is silent");
        assert!(samples[800..].windows(2).all(|w| w[1] <= w[0]), "monotonic fade-out");
    }
}
