//! The album pass, planned: from every mastered track's analysis and the
//! manifest's `matching` settings to each track's correction. A pure
//! function: no audio, no I/O, milliseconds.
//!
//! - **Loudness**: `track` mode brings each track to the target plus its
//!   offset; `album` mode moves the whole album by one gain to the target,
//!   keeping the mastered relative levels.
//! - **Tone and warmth, one curve**: each balance (1/3-octave band level
//!   less integrated loudness) is smoothed over one octave in dB, so a
//!   song's notes (its key's fundamentals, one loud instrument) do not read
//!   as tone; `tone.strength` times the difference between the reference's
//!   smoothed balance and the track's is the tone part. Warmth is part of
//!   the same curve: a broad step (low-mids up and highs down, crossing
//!   between 600 Hz and 2 kHz) is added in the amount that makes the
//!   curve's predicted change of the warmth index `warmth.strength` times
//!   the track's distance to the reference's. The sum is centred at equal
//!   loudness and held to ±`max_correction_db` and 3 dB per octave.
//!   Held means the nearest curve (least squares over the bands) that
//!   keeps both: the wanted curve is projected, not clipped and then
//!   flattened.
//! - **Realised as designed**: a minimum-phase FIR follows the curve
//!   (`dsp::curve_eq`) within 0.01 dB from 20 Hz to 20 kHz; its own
//!   response (what finalize applies) is checked on a 1/12-octave grid and
//!   the curve scaled back should it not hold the cap and the slope. An
//!   FIR rather than a set of shelves and bells: thirteen broad biquads
//!   fitted to the same curves missed them by 0.2–0.3 dB RMS, always on
//!   the side of doing less, which cost a quarter of the tone match; the
//!   FIR's minimum phase keeps the phase an analogue EQ of that response
//!   would have (no pre-ringing, no latency to speak of).
//! - **Dynamics kept**: finalize measures the loudness range of the
//!   corrected audio and scales the curve down where it would move the
//!   master's by more than 1 LU.
//! - **Limiter budget**: the limiting each gain will call for is estimated
//!   here; finalize measures it and delivers a track quieter rather than
//!   limit it past `max_limiter_gain_reduction_db`.

use serde::{Deserialize, Serialize};

use crate::analysis::{Analysis, BAND_CENTRES_HZ, WARMTH_HIGH_HZ, WARMTH_LOW_HZ, album_loudness};
use crate::dsp::biquad::Coefficients;
use crate::dsp::curve_eq::CurveFir;
use crate::manifest::{LoudnessMode, Matching};

/// The bands tone matching looks at.
const TONE_RANGE_HZ: (f64, f64) = (60.0, 12_500.0);
/// Balances are smoothed over this many 1/3-octave bands either side (one
/// octave in all).
const SMOOTHING_BANDS: usize = 1;
/// The steepest the album pass's EQ may be anywhere (dB per octave).
pub const MAX_SLOPE_DB_PER_OCTAVE: f64 = 3.0;
/// The curve is designed this far inside the cap and the slope, so that
/// the FIR realising it holds both.
const DESIGN_MARGIN_DB: f64 = 0.05;
const DESIGN_SLOPE_DB_PER_OCTAVE: f64 = 2.9;
/// The warmth step crosses over between these.
const WARMTH_STEP_HZ: (f64, f64) = (600.0, 2000.0);
/// Curve values under this (dB) are no correction at all; the curve is
/// kept to hundredths of a dB.
const NEGLIGIBLE_GAIN_DB: f64 = 0.005;

/// What the album pass does to one track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Correction {
    /// Loudness gain (dB), before the final limiter.
    pub gain_db: f64,
    /// The integrated loudness the delivered track should measure (LUFS).
    pub target_lufs: f64,
    /// The album pass's EQ, tone and warmth in one curve (dB at each of
    /// [`BAND_CENTRES_HZ`], linear in log frequency between them and held
    /// beyond, centred at equal loudness), as finalize applies it (see
    /// [`equaliser`]).
    pub curve_db: Vec<f64>,
    /// The cap the curve is held to (dB, `tone.max_correction_db`).
    pub max_correction_db: f64,
    /// The master's balance ([`balance_db`]): the realised correction is
    /// the delivered balance against it.
    pub master_balance_db: Vec<f64>,
    /// The master's loudness range (LU): finalize keeps the corrected
    /// track's within 1 LU of it.
    pub master_lra_lu: f64,
    /// Limiting the final limiter is expected to apply at the loudest peak
    /// (dB); finalize measures the real figure and holds the budget.
    pub expected_limiting_db: f64,
    pub warnings: Vec<String>,
}

impl Correction {
    /// The curve times `scale` (0 to 1): the same shape, shallower.
    pub fn curve_scaled(&self, scale: f64) -> Vec<f64> {
        self.curve_db.iter().map(|c| c * scale).collect()
    }

    /// Whether the curve moves nothing.
    pub fn is_flat(&self) -> bool {
        is_flat(&self.curve_db)
    }
}

impl Correction {
    /// This correction at `share`, redesigned to leave room, band by band,
    /// for the final limiter's own share of the delivered balance
    /// (`limiter_share_db`, per band; see finalize), so that the two
    /// together stay within ±(cap + `allowance_db`): the curve is pulled
    /// in only where the limiter pushes the same way, by as much as it
    /// pushes, rather than the whole curve made shallower. Returns the
    /// redesigned correction and the most it pulled the curve in (dB).
    pub fn making_room(
        &self,
        share: f64,
        limiter_share_db: &[Option<f64>],
        allowance_db: f64,
        rate_hz: u32,
    ) -> (Correction, f64) {
        let cap = self.max_correction_db;
        let allowed = cap + allowance_db - ROOM_MARGIN_DB;
        let mut bounds = Bounds::cap(cap);
        for ((low, high), limiter) in bounds.low_db.iter_mut().zip(&mut bounds.high_db).zip(limiter_share_db) {
            if let Some(limiter) = limiter {
                *low = low.max((-allowed - limiter).min(0.0));
                *high = high.min((allowed - limiter).max(0.0));
            }
        }
        let shares = loudness_shares(&self.master_balance_db);
        let wanted: Vec<f64> = self.curve_db.iter().map(|c| c * share).collect();
        let curve_db = realise(held_within(wanted.clone(), &shares, &bounds), &shares, &bounds, rate_hz);
        let pulled_in_db = curve_db.iter().zip(&wanted).fold(0f64, |m, (c, w)| m.max((c - w).abs()));
        (Correction { curve_db, ..self.clone() }, pulled_in_db)
    }
}

/// How far inside the cap plus the limiter's allowance a redesign aims (dB).
const ROOM_MARGIN_DB: f64 = 0.3;

/// The plan for a whole album.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlbumPlan {
    /// The reference balance: band level minus integrated loudness (dB),
    /// per band of [`BAND_CENTRES_HZ`].
    pub reference_balance_db: Vec<f64>,
    pub reference_warmth_db: f64,
    /// Album loudness before the album pass (LUFS).
    pub album_lufs_before: Option<f64>,
    pub corrections: Vec<Correction>,
}

/// What tone is matched toward, already measured.
#[derive(Debug, Clone, Copy)]
pub enum Reference<'a> {
    Album,
    Track(usize),
    File(&'a Analysis),
}

/// One track as the plan sees it.
#[derive(Debug, Clone, Copy)]
pub struct PlannedTrack<'a> {
    pub analysis: &'a Analysis,
    pub loudness_offset_lu: f64,
}

/// A track's balance: band levels relative to its integrated loudness.
pub fn balance_db(analysis: &Analysis) -> Vec<f64> {
    let loudness = analysis.integrated_lufs.unwrap_or(-70.0);
    analysis.band_levels_db.iter().map(|level| level - loudness).collect()
}

/// Indices of the bands tone matching looks at.
fn tone_bands() -> impl Iterator<Item = usize> + Clone {
    BAND_CENTRES_HZ.iter().enumerate().filter(|(_, f)| (TONE_RANGE_HZ.0..=TONE_RANGE_HZ.1).contains(*f)).map(|(i, _)| i)
}

/// RMS difference (dB) between two balances over the tone-matching bands.
pub fn tonal_distance_db(a: &[f64], b: &[f64]) -> f64 {
    let bands: Vec<usize> = tone_bands().collect();
    (bands.iter().map(|&i| (a[i] - b[i]).powi(2)).sum::<f64>() / bands.len() as f64).sqrt()
}

/// Below this integrated loudness a master is near-silent (a hidden track,
/// a pause, a noise floor): no music is quieter. Such a track is delivered
/// as mastered, with no tone or warmth moves, and is kept out of the tone
/// reference, the album's loudness and the album's spreads: its spectrum
/// is noise, and matching toward it (or it toward the album) would be
/// 40 dB of gain on hiss.
pub const NEAR_SILENT_LUFS: f64 = -50.0;

/// Whether a master is near-silent ([`NEAR_SILENT_LUFS`]).
pub fn is_near_silent(analysis: &Analysis) -> bool {
    analysis.integrated_lufs.is_none_or(|lufs| lufs < NEAR_SILENT_LUFS)
}

/// Plans the album pass for `tracks`, whose masters are at `rate_hz` (the
/// rate the correction filters are designed for).
pub fn plan_album(tracks: &[PlannedTrack], matching: &Matching, reference: Reference, rate_hz: u32) -> AlbumPlan {
    let balances: Vec<Vec<f64>> = tracks.iter().map(|t| balance_db(t.analysis)).collect();
    let audible: Vec<usize> = (0..tracks.len()).filter(|&i| !is_near_silent(tracks[i].analysis)).collect();
    let album_mean = || {
        let n = audible.len().max(1) as f64;
        let mean = (0..BAND_CENTRES_HZ.len())
            .map(|band| audible.iter().map(|&i| balances[i][band]).sum::<f64>() / n)
            .collect();
        (mean, audible.iter().map(|&i| tracks[i].analysis.warmth_db).sum::<f64>() / n)
    };
    let mut reference_warning = None;
    let (reference_balance_db, reference_warmth_db) = match reference {
        Reference::Album => album_mean(),
        Reference::Track(index) if !audible.contains(&index) => {
            reference_warning = Some((
                index,
                "it is the tone reference but near-silent: the album's other tracks are the reference instead"
                    .to_owned(),
            ));
            album_mean()
        }
        Reference::Track(index) => (balances[index].clone(), tracks[index].analysis.warmth_db),
        Reference::File(analysis) => (balance_db(analysis), analysis.warmth_db),
    };
    let analyses: Vec<&Analysis> = audible.iter().map(|&i| tracks[i].analysis).collect();
    let album_lufs_before = album_loudness(&analyses).integrated_lufs;
    let album_gain_db = album_lufs_before.map(|lufs| matching.loudness.target_lufs - lufs).unwrap_or(0.0);

    let corrections = tracks
        .iter()
        .enumerate()
        .map(|(index, track)| {
            let mut warnings = Vec::new();
            if let Some((_, warning)) = reference_warning.as_ref().filter(|(i, _)| *i == index) {
                warnings.push(warning.clone());
            }
            if is_near_silent(track.analysis) {
                let measured = track.analysis.integrated_lufs;
                warnings.push(match measured {
                    Some(lufs) => format!(
                        "the master is near-silent ({lufs:.1} LUFS, below {NEAR_SILENT_LUFS} LUFS): delivered as mastered, kept out of the album's tone reference and loudness"
                    ),
                    None => "the master is silent: delivered as mastered, kept out of the album's tone reference and loudness".to_owned(),
                });
                return Correction {
                    gain_db: 0.0,
                    target_lufs: measured.unwrap_or(matching.loudness.target_lufs),
                    curve_db: vec![0.0; BAND_CENTRES_HZ.len()],
                    max_correction_db: matching.tone.max_correction_db,
                    master_balance_db: balance_db(track.analysis),
                    master_lra_lu: track.analysis.loudness_range_lu,
                    expected_limiting_db: 0.0,
                    warnings,
                };
            }
            let measured = track.analysis.integrated_lufs;
            // Audible: measured (near-silent tracks returned above).
            let lufs = measured.unwrap_or(matching.loudness.target_lufs);
            let (target_lufs, gain_db) = match matching.loudness.mode {
                LoudnessMode::Track => {
                    let target = matching.loudness.target_lufs + track.loudness_offset_lu;
                    (target, target - lufs)
                }
                LoudnessMode::Album => (lufs + album_gain_db, album_gain_db),
            };
            let curve_db = realise(
                design_curve(track.analysis, &smooth_octave(&reference_balance_db), reference_warmth_db, matching),
                &loudness_shares(&track.analysis.band_levels_db),
                &Bounds::cap(matching.tone.max_correction_db),
                rate_hz,
            );

            // Limiting the gain will call for at the loudest peak; finalize
            // measures the real figure and holds the budget.
            let expected_limiting_db = (track.analysis.highest_true_peak_dbtp() + gain_db - matching.true_peak_dbtp).max(0.0);
            if expected_limiting_db > matching.max_limiter_gain_reduction_db {
                warnings.push(format!(
                    "its peaks would need about {expected_limiting_db:.1} dB of limiting to reach the target, more than the {:.1} dB allowed: expect it to be delivered quieter",
                    matching.max_limiter_gain_reduction_db
                ));
            }
            Correction {
                gain_db,
                target_lufs,
                curve_db,
                max_correction_db: matching.tone.max_correction_db,
                master_balance_db: balance_db(track.analysis),
                master_lra_lu: track.analysis.loudness_range_lu,
                expected_limiting_db,
                warnings,
            }
        })
        .collect();
    AlbumPlan { reference_balance_db, reference_warmth_db, album_lufs_before, corrections }
}

/// A balance smoothed over one octave (the mean in dB of each band and
/// its neighbours): broad balance, not the notes of one song.
pub fn smooth_octave(balance_db: &[f64]) -> Vec<f64> {
    (0..balance_db.len())
        .map(|band| {
            let around =
                &balance_db[band.saturating_sub(SMOOTHING_BANDS)..(band + SMOOTHING_BANDS + 1).min(balance_db.len())];
            around.iter().sum::<f64>() / around.len() as f64
        })
        .collect()
}

/// The warmth step at `freq_hz`: +½ dB below the crossover, −½ dB above,
/// a raised-cosine in log frequency between.
fn warmth_step_db(freq_hz: f64) -> f64 {
    let (low, high) = WARMTH_STEP_HZ;
    let position = ((freq_hz / low).log2() / (high / low).log2()).clamp(0.0, 1.0);
    0.5 * (std::f64::consts::PI * position).cos()
}

/// How much `curve_db` (per band) moves the warmth index of a track whose
/// band levels are `levels_db`: the change of its 150–600 Hz energy less
/// the change of its 2–8 kHz energy (dB).
fn warmth_change_db(levels_db: &[f64], curve_db: &[f64]) -> f64 {
    let change = |(low, high): (f64, f64)| {
        let (mut before, mut after) = (0.0, 0.0);
        for ((&f, level), curve) in BAND_CENTRES_HZ.iter().zip(levels_db).zip(curve_db) {
            if (low..=high).contains(&f) {
                let power = 10f64.powf(level / 10.0);
                before += power;
                after += power * 10f64.powf(curve / 10.0);
            }
        }
        if before > 0.0 { 10.0 * (after / before).log10() } else { 0.0 }
    };
    change(WARMTH_LOW_HZ) - change(WARMTH_HIGH_HZ)
}

/// The album pass's EQ curve for one track (dB per band): the tone part,
/// the warmth step in the amount that completes the warmth move, centred
/// at equal loudness and held within the cap and the slope.
fn design_curve(
    analysis: &Analysis,
    reference_smoothed_db: &[f64],
    reference_warmth_db: f64,
    matching: &Matching,
) -> Vec<f64> {
    let balance = smooth_octave(&balance_db(analysis));
    let bands: Vec<usize> = tone_bands().collect();
    let (first, last) = (bands[0], bands[bands.len() - 1]);
    // Outside the tone range the curve holds its edge value, as a shelf does.
    let tone: Vec<f64> = (0..BAND_CENTRES_HZ.len())
        .map(|band| {
            let band = band.clamp(first, last);
            matching.tone.strength * (reference_smoothed_db[band] - balance[band])
        })
        .collect();
    let step: Vec<f64> = BAND_CENTRES_HZ.iter().map(|&f| warmth_step_db(f)).collect();
    let wanted_warmth_db = matching.warmth.strength * (reference_warmth_db - analysis.warmth_db);
    let cap = matching.tone.max_correction_db;
    // The step's amount, by bisection: the warmth change grows with it.
    let with_step = |amount: f64| -> Vec<f64> { tone.iter().zip(&step).map(|(t, s)| t + amount * s).collect() };
    let (mut low, mut high) = (-4.0 * cap - 1.0, 4.0 * cap + 1.0);
    for _ in 0..40 {
        let mid = 0.5 * (low + high);
        if warmth_change_db(&analysis.band_levels_db, &with_step(mid)) < wanted_warmth_db {
            low = mid;
        } else {
            high = mid;
        }
    }
    let curve = with_step(0.5 * (low + high));
    held_within(curve, &loudness_shares(&analysis.band_levels_db), &Bounds::cap(cap))
}

/// `curve_db` centred at equal loudness and held within `bounds` (less
/// the design margin) and the slope limit.
fn held_within(mut curve_db: Vec<f64>, shares: &[f64], bounds: &Bounds) -> Vec<f64> {
    let limits = bounds.narrowed(DESIGN_MARGIN_DB);
    for _ in 0..4 {
        let centre = equal_loudness_offset_db(shares, &curve_db);
        curve_db.iter_mut().for_each(|c| *c -= centre);
        hold_bounds_and_slope(&mut curve_db, &limits, DESIGN_SLOPE_DB_PER_OCTAVE);
    }
    curve_db
}

/// How far the album pass's EQ may go, per band of [`BAND_CENTRES_HZ`]
/// (dB at equal loudness): ±the cap everywhere, or less where the final
/// limiter is known to push the delivered balance further the same way.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    pub low_db: Vec<f64>,
    pub high_db: Vec<f64>,
}

impl Bounds {
    pub fn cap(cap_db: f64) -> Self {
        Self { low_db: vec![-cap_db; BAND_CENTRES_HZ.len()], high_db: vec![cap_db; BAND_CENTRES_HZ.len()] }
    }

    /// The bounds drawn in by `by_db` (≥ 0) on both sides.
    fn narrowed(&self, by_db: f64) -> Self {
        Self {
            low_db: self.low_db.iter().map(|l| (l + by_db).min(0.0)).collect(),
            high_db: self.high_db.iter().map(|h| (h - by_db).max(0.0)).collect(),
        }
    }

    /// The bounds at `freq_hz` (linear in log frequency between bands).
    fn at(&self, freq_hz: f64) -> (f64, f64) {
        (curve_at(&self.low_db, freq_hz), curve_at(&self.high_db, freq_hz))
    }
}

/// The gain that brings a track EQ'd by `curve_db` back to its loudness
/// is minus this (dB): the curve's K-weighted energy mean.
fn equal_loudness_offset_db(shares: &[f64], curve_db: &[f64]) -> f64 {
    let power: f64 = shares.iter().zip(curve_db).map(|(p, c)| p * 10f64.powf(c / 10.0)).sum();
    if power > 0.0 { 10.0 * power.log10() } else { 0.0 }
}

/// Brings a curve over [`BAND_CENTRES_HZ`] within `bounds` and no steeper
/// than `slope_db_per_octave`, moving it as little as it can (least
/// squares over the bands): Dykstra's alternating projections onto the
/// bounds and onto the slope limit between even and between odd pairs of
/// neighbours (each convex, each projected onto exactly, and the flat
/// curve meets all three), which converge to the nearest curve that holds
/// them all; plain alternating projections finish on a curve that holds
/// both exactly.
fn hold_bounds_and_slope(curve_db: &mut [f64], bounds: &Bounds, slope_db_per_octave: f64) {
    let n = curve_db.len();
    let limit = |band: usize| slope_db_per_octave * (BAND_CENTRES_HZ[band + 1] / BAND_CENTRES_HZ[band]).log2();
    let slope_pairs = |curve: &mut [f64], first: usize| {
        for band in (first..n - 1).step_by(2) {
            let step = curve[band + 1] - curve[band];
            let excess = step.abs() - limit(band);
            if excess > 0.0 {
                let half = 0.5 * excess * step.signum();
                curve[band] += half;
                curve[band + 1] -= half;
            }
        }
    };
    let within_bounds = |curve: &mut [f64]| {
        for ((c, low), high) in curve.iter_mut().zip(&bounds.low_db).zip(&bounds.high_db) {
            *c = c.clamp(*low, *high);
        }
    };
    let mut increments = vec![vec![0f64; n]; 3];
    let mut projected = vec![0f64; n];
    for _ in 0..2000 {
        let mut moved = 0f64;
        for (set, increment) in increments.iter_mut().enumerate() {
            for ((p, c), i) in projected.iter_mut().zip(curve_db.iter()).zip(increment.iter()) {
                *p = c + i;
            }
            match set {
                0 => within_bounds(&mut projected),
                first => slope_pairs(&mut projected, first - 1),
            }
            for ((c, i), p) in curve_db.iter_mut().zip(increment.iter_mut()).zip(&projected) {
                *i += *c - p;
                moved = moved.max((p - *c).abs());
                *c = *p;
            }
        }
        if moved < 1e-9 {
            break;
        }
    }
    for _ in 0..500 {
        let before = curve_db.to_vec();
        slope_pairs(curve_db, 0);
        slope_pairs(curve_db, 1);
        within_bounds(curve_db);
        if curve_db.iter().zip(&before).all(|(c, b)| (c - b).abs() < 1e-9) {
            break;
        }
    }
}

/// Bands this far under a master's loudest band carry too little of it to
/// read a correction from (dB).
const REALISED_RANGE_DB: f64 = 45.0;

/// The correction a delivered track realised: its balance against the
/// master's, per band (dB at equal loudness, the overall gain removed);
/// `None` where the master has next to nothing to measure.
pub fn realised_correction_db(master_balance_db: &[f64], delivered: &Analysis) -> Vec<Option<f64>> {
    let loudest = master_balance_db.iter().copied().fold(f64::MIN, f64::max);
    master_balance_db
        .iter()
        .zip(balance_db(delivered))
        .map(|(master, delivered)| (*master > loudest - REALISED_RANGE_DB).then_some(delivered - master))
        .collect()
}

/// The response of the EQ following `curve_db` at each of `freqs_hz` at
/// equal loudness, on a track whose balance is `balance_db`: the
/// response less the loudness change it makes.
pub fn equal_loudness_response_db(curve_db: &[f64], balance_db: &[f64], freqs_hz: &[f64], rate_hz: u32) -> Vec<f64> {
    if is_flat(curve_db) {
        return vec![0.0; freqs_hz.len()];
    }
    let fir = equaliser(curve_db, rate_hz);
    let at_bands = fir.magnitude_db(&BAND_CENTRES_HZ);
    let offset = equal_loudness_offset_db(&loudness_shares(balance_db), &at_bands);
    // Read at the band centres themselves (finalize's room checks), the
    // response is the one just computed.
    let response = if freqs_hz == BAND_CENTRES_HZ { at_bands } else { fir.magnitude_db(freqs_hz) };
    response.iter().map(|r| r - offset).collect()
}

/// What finalize runs to apply `curve_db` at `rate_hz`.
pub fn equaliser(curve_db: &[f64], rate_hz: u32) -> CurveFir {
    CurveFir::design(rate_hz, |freq_hz| curve_at(curve_db, freq_hz))
}

/// Whether `curve_db` moves nothing.
pub fn is_flat(curve_db: &[f64]) -> bool {
    curve_db.iter().all(|c| c.abs() < NEGLIGIBLE_GAIN_DB)
}

/// The frequencies the album pass's EQ is checked at: 1/12 octave from
/// 20 Hz to 20 kHz.
pub fn check_grid_hz() -> Vec<f64> {
    let steps = (12.0 * (20_000f64 / 20.0).log2()).floor() as i32;
    let mut grid: Vec<f64> = (0..=steps).map(|k| 20.0 * 2f64.powf(f64::from(k) / 12.0)).collect();
    grid.push(20_000.0);
    grid
}

/// The response (dB) of the EQ following `curve_db` at `rate_hz`, at each
/// of `freqs_hz`.
pub fn response_db(curve_db: &[f64], freqs_hz: &[f64], rate_hz: u32) -> Vec<f64> {
    if is_flat(curve_db) {
        return vec![0.0; freqs_hz.len()];
    }
    equaliser(curve_db, rate_hz).magnitude_db(freqs_hz)
}

/// The largest magnitude (dB) and the steepest slope (dB per octave) of
/// a response over [`check_grid_hz`].
pub fn largest_and_steepest(response_db: &[f64], grid_hz: &[f64]) -> (f64, f64) {
    let largest = response_db.iter().fold(0f64, |m, r| m.max(r.abs()));
    let steepest = response_db
        .windows(2)
        .zip(grid_hz.windows(2))
        .map(|(r, f)| (r[1] - r[0]).abs() / (f[1] / f[0]).log2())
        .fold(0f64, f64::max);
    (largest, steepest)
}

/// A curve over [`BAND_CENTRES_HZ`] at `freq_hz`: linear in log frequency
/// between band centres, held beyond the ends.
fn curve_at(curve_db: &[f64], freq_hz: f64) -> f64 {
    if curve_db.len() != BAND_CENTRES_HZ.len() {
        // No curve (a correction that moves nothing) is flat.
        return 0.0;
    }
    let last = BAND_CENTRES_HZ.len() - 1;
    if freq_hz <= BAND_CENTRES_HZ[0] {
        return curve_db[0];
    }
    if freq_hz >= BAND_CENTRES_HZ[last] {
        return curve_db[last];
    }
    let upper = BAND_CENTRES_HZ.iter().position(|&f| f >= freq_hz).unwrap_or(last);
    let (f0, f1) = (BAND_CENTRES_HZ[upper - 1], BAND_CENTRES_HZ[upper]);
    let t = (freq_hz / f0).log2() / (f1 / f0).log2();
    curve_db[upper - 1] + t * (curve_db[upper] - curve_db[upper - 1])
}

/// `curve_db` (already held within `bounds` and the slope) as finalize
/// will apply it: to hundredths of a dB, and scaled back, should the
/// FIR's own response at `rate_hz` not hold the bounds (less half the
/// design margin) and the slope limit on the check grid, at equal
/// loudness too (how the delivered track compares with its master).
fn realise(curve_db: Vec<f64>, shares: &[f64], bounds: &Bounds, rate_hz: u32) -> Vec<f64> {
    let curve_db: Vec<f64> = curve_db.iter().map(|c| (c * 100.0).round() / 100.0).collect();
    if is_flat(&curve_db) {
        return vec![0.0; curve_db.len()];
    }
    let grid = check_grid_hz();
    let limits: Vec<(f64, f64)> = {
        let narrowed = bounds.narrowed(DESIGN_MARGIN_DB / 2.0);
        grid.iter().map(|&f| narrowed.at(f)).collect()
    };
    let holds = |curve: &[f64]| {
        let fir = equaliser(curve, rate_hz);
        let response = fir.magnitude_db(&grid);
        let (_, steepest) = largest_and_steepest(&response, &grid);
        let offset = equal_loudness_offset_db(shares, &fir.magnitude_db(&BAND_CENTRES_HZ));
        let within = response
            .iter()
            .zip(&limits)
            .all(|(r, (low, high))| (*low..=*high).contains(r) && (*low..=*high).contains(&(r - offset)));
        within && steepest <= MAX_SLOPE_DB_PER_OCTAVE
    };
    let scaled = |scale: f64| -> Vec<f64> { curve_db.iter().map(|c| (c * scale * 100.0).trunc() / 100.0).collect() };
    if holds(&curve_db) {
        return curve_db;
    }
    let (mut ok, mut over) = (0.0, 1.0);
    for _ in 0..12 {
        let mid = 0.5 * (ok + over);
        if holds(&scaled(mid)) { ok = mid } else { over = mid }
    }
    scaled(ok)
}

/// BS.1770's K-weighting (pre-filter and RLB high-pass, its published
/// 48 kHz coefficients) at `freq_hz`, in dB.
pub fn k_weighting_db(freq_hz: f64) -> f64 {
    const PRE_FILTER: Coefficients = Coefficients {
        b0: 1.535_124_859_586_97,
        b1: -2.691_696_189_406_38,
        b2: 1.198_392_810_852_85,
        a1: -1.690_659_293_182_41,
        a2: 0.732_480_774_215_85,
    };
    const RLB: Coefficients =
        Coefficients { b0: 1.0, b1: -2.0, b2: 1.0, a1: -1.990_047_454_833_98, a2: 0.990_072_250_366_21 };
    PRE_FILTER.magnitude_db(freq_hz, 48_000) + RLB.magnitude_db(freq_hz, 48_000)
}

/// Each band's share of a track's K-weighted energy: how much a change in
/// that band moves the integrated loudness.
pub fn loudness_shares(band_levels_db: &[f64]) -> Vec<f64> {
    let weighted: Vec<f64> = band_levels_db
        .iter()
        .zip(BAND_CENTRES_HZ)
        .map(|(level_db, f)| 10f64.powf((level_db + k_weighting_db(f)) / 10.0))
        .collect();
    let total = weighted.iter().sum::<f64>();
    if total > 0.0 { weighted.iter().map(|w| w / total).collect() } else { vec![0.0; weighted.len()] }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analysis(lufs: f64, true_peak: f64, tilt_db_per_octave: f64, warmth_db: f64) -> Analysis {
        let bands = BAND_CENTRES_HZ.iter().map(|f| lufs - 10.0 + tilt_db_per_octave * (f / 1000.0).log2()).collect();
        Analysis {
            sample_rate_hz: 44_100,
            channels: 2,
            frames: 44_100 * 60,
            integrated_lufs: Some(lufs),
            loudness_range_lu: 6.0,
            true_peak_dbtp: true_peak,
            true_peak_bs1770_dbtp: true_peak,
            sample_peak_dbfs: true_peak,
            plr_db: Some(true_peak - lufs),
            max_short_term_lufs: Some(lufs + 2.0),
            short_term_lufs: Vec::new(),
            block_energies: Vec::new(),
            band_levels_db: bands,
            warmth_db,
            tilt_db_per_octave,
            width_db: -10.0,
        }
    }

    #[test]
    fn silent_and_near_silent_tracks_are_left_alone_and_kept_out_of_the_references() {
        let warm = analysis(-16.0, -2.0, -1.0, 14.0);
        let cool = analysis(-15.0, -2.0, 0.0, 8.0);
        // Hiss: bright, thin and far off the others.
        let hiss = analysis(-56.0, -40.0, 3.0, -20.0);
        let mut silence = analysis(-70.0, -120.0, 0.0, -30.0);
        silence.integrated_lufs = None;
        fn planned<'a>(analyses: &[&'a Analysis]) -> Vec<PlannedTrack<'a>> {
            analyses.iter().map(|a| PlannedTrack { analysis: a, loudness_offset_lu: 0.0 }).collect()
        }
        let matching = Matching::default();
        let alone = plan_album(&planned(&[&warm, &cool]), &matching, Reference::Album, 44_100);
        let with_quiet = plan_album(&planned(&[&warm, &hiss, &cool, &silence]), &matching, Reference::Album, 44_100);
        assert_eq!(with_quiet.reference_warmth_db, 11.0, "the mean of the audible tracks only");
        assert_eq!(with_quiet.reference_balance_db, alone.reference_balance_db);
        assert_eq!(with_quiet.corrections[0], alone.corrections[0], "the audible tracks' moves do not change");
        assert_eq!(with_quiet.corrections[2], alone.corrections[1]);
        for (quiet, said) in
            [(&with_quiet.corrections[1], "near-silent (-56.0 LUFS"), (&with_quiet.corrections[3], "silent")]
        {
            assert_eq!((quiet.gain_db, quiet.is_flat(), quiet.expected_limiting_db), (0.0, true, 0.0));
            assert!(quiet.warnings[0].contains(said) && quiet.warnings[0].contains("kept out"), "{:?}", quiet.warnings);
        }
        assert_eq!(with_quiet.corrections[1].target_lufs, -56.0, "delivered as mastered");
        // Album mode: the album's loudness is the audible tracks'.
        let mut album = matching.clone();
        album.loudness.mode = LoudnessMode::Album;
        let alone = plan_album(&planned(&[&warm, &cool]), &album, Reference::Album, 44_100);
        let with_quiet = plan_album(&planned(&[&warm, &hiss, &cool, &silence]), &album, Reference::Album, 44_100);
        assert_eq!(with_quiet.album_lufs_before, alone.album_lufs_before);
        // A near-silent tone reference gives way to the album.
        let plan = plan_album(&planned(&[&warm, &hiss, &cool]), &matching, Reference::Track(1), 44_100);
        assert_eq!(plan.reference_warmth_db, 11.0);
        assert!(plan.corrections[1].warnings[0].contains("tone reference but near-silent"));
    }

    #[test]
    fn loudness_gains_offsets_and_the_limiter_budget() {
        let bright = analysis(-20.0, -8.0, 0.0, 10.0);
        let ballad = analysis(-24.0, -10.0, 0.0, 10.0);
        let squashy = analysis(-18.0, -1.0, 0.0, 10.0);
        let tracks = [
            PlannedTrack { analysis: &bright, loudness_offset_lu: 0.0 },
            PlannedTrack { analysis: &ballad, loudness_offset_lu: -3.0 },
            PlannedTrack { analysis: &squashy, loudness_offset_lu: 0.0 },
        ];
        let matching = Matching::default();
        let plan = plan_album(&tracks, &matching, Reference::Album, 44_100);
        let c = &plan.corrections;
        assert!((c[0].gain_db - 6.0).abs() < 1e-9 && c[0].target_lufs == -14.0);
        assert!((c[1].gain_db - 7.0).abs() < 1e-9 && c[1].target_lufs == -17.0, "offset -3 LU");
        // -1 dBTP + 4 dB of gain would need 4 dB of limiting to a -1 ceiling: at the budget exactly.
        assert!((c[2].expected_limiting_db - 4.0).abs() < 1e-9 && c[2].warnings.is_empty());
        let strict = Matching { max_limiter_gain_reduction_db: 1.0, ..Matching::default() };
        let plan = plan_album(&tracks, &strict, Reference::Album, 44_100);
        let c = &plan.corrections[2];
        assert_eq!(c.target_lufs, -14.0, "the target stays; finalize holds the budget");
        assert!(c.warnings[0].contains("about 4.0 dB of limiting"), "{:?}", c.warnings);
    }

    /// The balance change a response makes once the track is brought back to
    /// its loudness: the response, less the loudness change it causes.
    fn balance_change_db(shares: &[f64], response_db: &[f64]) -> Vec<f64> {
        let power: f64 = shares.iter().zip(response_db).map(|(p, r)| p * 10f64.powf(r / 10.0)).sum();
        let loudness_change_db = if power > 0.0 { 10.0 * power.log10() } else { 0.0 };
        response_db.iter().map(|r| r - loudness_change_db).collect()
    }

    /// The balance a track has after its correction, at equal loudness.
    fn balance_after(analysis: &Analysis, correction: &Correction, rate_hz: u32) -> Vec<f64> {
        let shares = loudness_shares(&analysis.band_levels_db);
        let eq = response_db(&correction.curve_db, &BAND_CENTRES_HZ, rate_hz);
        balance_db(analysis).iter().zip(balance_change_db(&shares, &eq)).map(|(b, c)| b + c).collect()
    }

    #[test]
    fn tone_and_warmth_move_toward_the_reference_in_one_smooth_curve() {
        let consistent = |tilt: f64| {
            let mut a = analysis(-18.0, -6.0, tilt, 0.0);
            a.warmth_db = warmth_index(&a.band_levels_db);
            a
        };
        let (dull, bright) = (consistent(-1.0), consistent(0.0));
        let tracks = [
            PlannedTrack { analysis: &dull, loudness_offset_lu: 0.0 },
            PlannedTrack { analysis: &bright, loudness_offset_lu: 0.0 },
        ];
        let plan = plan_album(&tracks, &Matching::default(), Reference::Album, 44_100);
        let reference = smooth_octave(&plan.reference_balance_db);
        for (track, correction) in tracks.iter().zip(&plan.corrections) {
            let after = balance_after(track.analysis, correction, 44_100);
            let before = smooth_octave(&balance_db(track.analysis));
            let (d_before, d_after) =
                (tonal_distance_db(&before, &reference), tonal_distance_db(&smooth_octave(&after), &reference));
            // Strength 0.7 of a 0.5 dB/octave tilt from the reference (±1.9 dB
            // over the tone range, within the cap): 70 % of the way, less
            // what the octave smoothing leaves at the range's ends.
            assert!(d_after < 0.45 * d_before, "tonal distance {d_before:.2} → {d_after:.2} dB");
            // The EQ follows the designed curve.
            let grid = check_grid_hz();
            let realised = response_db(&correction.curve_db, &grid, 44_100);
            let miss = grid
                .iter()
                .zip(&realised)
                .filter(|(f, _)| (40.0..=16_000.0).contains(*f))
                .map(|(&f, r)| (r - curve_at(&correction.curve_db, f)).abs())
                .fold(0f64, f64::max);
            assert!(miss < 0.01, "the EQ misses the curve by {miss:.3} dB");
        }
        // Warmth is in the same curve: the warmer track's low-mids come down against its highs.
        let c = &plan.corrections[0].curve_db;
        let at = |hz: f64| c[BAND_CENTRES_HZ.iter().position(|&f| f == hz).unwrap()];
        assert!(at(250.0) < at(4000.0) - 0.5, "{c:?}");
    }

    /// Balances no engineer would match literally — a comb of ±9 dB notes,
    /// a 6 dB/octave tilt, one 15 dB spike — at several rates and caps: the
    /// designed response of the filters stays within the cap and no steeper
    /// than 3 dB per octave from 20 Hz to 20 kHz, and the curve follows the
    /// octave-smoothed difference, not the notes.
    #[test]
    fn the_cap_and_the_slope_hold_on_the_designed_response() {
        let comb: Vec<f64> = (0..BAND_CENTRES_HZ.len()).map(|b| if b % 2 == 0 { -21.0 } else { -30.0 }).collect();
        let tilted: Vec<f64> = BAND_CENTRES_HZ.iter().map(|f| -24.0 - 6.0 * (f / 1000.0).log2()).collect();
        let mut spike = vec![-26.0; BAND_CENTRES_HZ.len()];
        spike[8] = -11.0;
        let grid = check_grid_hz();
        for levels in [comb, tilted, spike] {
            let mut odd = analysis(-14.0, -1.0, 0.0, 10.0);
            odd.warmth_db = warmth_index(&levels);
            odd.band_levels_db = levels;
            let plain = analysis(-14.0, -1.0, -1.0, 12.0);
            for rate_hz in [44_100, 48_000, 96_000] {
                for cap in [1.0, 4.0, 12.0] {
                    let mut matching = Matching::default();
                    matching.tone.max_correction_db = cap;
                    matching.tone.strength = 1.0;
                    matching.warmth.strength = 1.0;
                    let tracks = [
                        PlannedTrack { analysis: &odd, loudness_offset_lu: 0.0 },
                        PlannedTrack { analysis: &plain, loudness_offset_lu: 0.0 },
                    ];
                    let plan = plan_album(&tracks, &matching, Reference::Track(1), rate_hz);
                    let response = response_db(&plan.corrections[0].curve_db, &grid, rate_hz);
                    let (largest, steepest) = largest_and_steepest(&response, &grid);
                    assert!(largest <= cap, "{rate_hz} Hz, cap {cap}: {largest:.2} dB");
                    assert!(steepest <= MAX_SLOPE_DB_PER_OCTAVE, "{rate_hz} Hz, cap {cap}: {steepest:.2} dB/octave");
                    assert!(largest > 0.5 * cap.min(3.0), "it still corrects: {largest:.2} dB");
                }
            }
        }
    }

    /// The held curve is the nearest one that holds the bounds and the
    /// slope: on rough curves (a deterministic pseudo-random walk, ±8 dB)
    /// it holds both, and it is no further from the wanted curve than the
    /// curve plain alternating projections (clip, flatten, repeat) reach,
    /// and on some strictly nearer.
    #[test]
    fn the_curve_is_held_by_the_least_move() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let bounds = Bounds::cap(3.9);
        let distance = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt();
        let mut nearer = 0;
        for _ in 0..50 {
            let mut level = 0.0;
            let wanted: Vec<f64> = (0..BAND_CENTRES_HZ.len())
                .map(|_| {
                    level = (level + 4.0 * next()).clamp(-8.0, 8.0);
                    level
                })
                .collect();
            let mut held = wanted.clone();
            hold_bounds_and_slope(&mut held, &bounds, 2.9);
            for (band, c) in held.iter().enumerate() {
                assert!(c.abs() <= 3.9 + 1e-9, "{c}");
                if band + 1 < held.len() {
                    let octaves = (BAND_CENTRES_HZ[band + 1] / BAND_CENTRES_HZ[band]).log2();
                    assert!((held[band + 1] - c).abs() <= 2.9 * octaves + 1e-6);
                }
            }
            // Plain alternating projections.
            let mut plain = wanted.clone();
            for _ in 0..500 {
                for band in 0..plain.len() - 1 {
                    let octaves = (BAND_CENTRES_HZ[band + 1] / BAND_CENTRES_HZ[band]).log2();
                    let step = plain[band + 1] - plain[band];
                    let excess = step.abs() - 2.9 * octaves;
                    if excess > 0.0 {
                        plain[band] += 0.5 * excess * step.signum();
                        plain[band + 1] -= 0.5 * excess * step.signum();
                    }
                }
                plain.iter_mut().for_each(|c| *c = c.clamp(-3.9, 3.9));
            }
            let (least, alternating) = (distance(&held, &wanted), distance(&plain, &wanted));
            assert!(least <= alternating + 1e-6, "{least:.4} vs {alternating:.4}");
            if least < alternating - 0.01 {
                nearer += 1;
            }
        }
        assert!(nearer >= 10, "strictly nearer on {nearer} of 50");
    }

    #[test]
    fn room_for_the_limiter_is_made_only_where_it_pushes() {
        // A bass-light track against a bass-heavy reference: the curve
        // lifts the lows to the cap. The final limiter, working on the
        // lifted bass, takes 0.8 dB back below 200 Hz and adds 0.1 dB up top.
        let light: Vec<f64> = BAND_CENTRES_HZ.iter().map(|f| -24.0 + 8.0 * (f / 1000.0).log2().min(0.0)).collect();
        let heavy: Vec<f64> = BAND_CENTRES_HZ.iter().map(|f| -24.0 - 8.0 * (f / 1000.0).log2().min(0.0)).collect();
        let mut track = analysis(-14.0, -1.0, 0.0, 10.0);
        track.warmth_db = warmth_index(&light);
        track.band_levels_db = light;
        let mut reference = analysis(-14.0, -1.0, 0.0, 10.0);
        reference.warmth_db = warmth_index(&heavy);
        reference.band_levels_db = heavy;
        let matching = Matching::default();
        let tracks = [
            PlannedTrack { analysis: &track, loudness_offset_lu: 0.0 },
            PlannedTrack { analysis: &reference, loudness_offset_lu: 0.0 },
        ];
        let rate_hz = 48_000;
        let planned = plan_album(&tracks, &matching, Reference::Track(1), rate_hz).corrections[0].clone();
        let cap = planned.max_correction_db;
        let limiter: Vec<Option<f64>> =
            BAND_CENTRES_HZ.iter().map(|&f| Some(if f < 200.0 { 0.8 } else { 0.1 })).collect();
        let eq =
            |c: &Correction| equal_loudness_response_db(&c.curve_db, &c.master_balance_db, &BAND_CENTRES_HZ, rate_hz);
        let before = eq(&planned);
        assert!(
            before.iter().zip(&limiter).any(|(e, l)| e + l.unwrap() > cap + 0.2),
            "the planned curve and the limiter's share together pass the cap: {before:?}"
        );
        let (room, pulled_in_db) = planned.making_room(1.0, &limiter, 0.2, rate_hz);
        let after = eq(&room);
        for ((f, a), l) in BAND_CENTRES_HZ.iter().zip(&after).zip(&limiter) {
            assert!((a + l.unwrap()).abs() <= cap + 0.2, "{f} Hz: {a:.2} dB + the limiter's {l:?}");
            assert!(a.abs() <= cap, "{f} Hz: {a:.2} dB");
        }
        assert!((0.5..=1.5).contains(&pulled_in_db), "pulled in {pulled_in_db:.2} dB");
        // Where the limiter did not push it past, the curve is kept: the
        // mids (where it moves least) within 0.5 dB of the plan.
        for ((f, a), b) in BAND_CENTRES_HZ.iter().zip(&after).zip(&before) {
            if (500.0..=4000.0).contains(f) {
                assert!((a - b).abs() <= 0.5, "{f} Hz: {b:.2} → {a:.2} dB");
            }
        }
        // Scaling the whole curve to fit would have given up far more of it.
        let lows: f64 = after.iter().zip(&BAND_CENTRES_HZ).filter(|(_, f)| **f < 200.0).map(|(a, _)| a).sum();
        assert!(lows > 0.0, "the lows are still lifted: {after:?}");
    }

    /// A warmth index of band levels, as [`Analysis::warmth_db`] reads it.
    fn warmth_index(levels_db: &[f64]) -> f64 {
        let energy = |(low, high): (f64, f64)| -> f64 {
            BAND_CENTRES_HZ
                .iter()
                .zip(levels_db)
                .filter(|(f, _)| (low..=high).contains(*f))
                .map(|(_, l)| 10f64.powf(l / 10.0))
                .sum()
        };
        10.0 * (energy(WARMTH_LOW_HZ) / energy(WARMTH_HIGH_HZ)).log10()
    }

    #[test]
    fn album_mode_keeps_relative_levels() {
        let a = analysis(-20.0, -8.0, 0.0, 10.0);
        let mut b = analysis(-23.0, -9.0, 0.0, 10.0);
        b.block_energies = vec![10f64.powf((-23.0 + 0.691) / 10.0); 100];
        let mut a = a;
        a.block_energies = vec![10f64.powf((-20.0 + 0.691) / 10.0); 100];
        let tracks = [
            PlannedTrack { analysis: &a, loudness_offset_lu: 0.0 },
            PlannedTrack { analysis: &b, loudness_offset_lu: -2.0 },
        ];
        let matching = Matching {
            loudness: crate::manifest::LoudnessMatching { target_lufs: -14.0, mode: LoudnessMode::Album },
            ..Matching::default()
        };
        let plan = plan_album(&tracks, &matching, Reference::Album, 44_100);
        assert_eq!(plan.corrections[0].gain_db, plan.corrections[1].gain_db, "one gain for the whole album");
    }
}
