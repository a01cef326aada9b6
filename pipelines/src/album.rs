//! The album pass, planned: from every mastered track's analysis and the
//! manifest's `matching` settings to each track's correction. A pure
//! function: no audio, no I/O, milliseconds.
//!
//! - **Loudness**: `track` mode brings each track to the target plus its
//!   offset; `album` mode moves the whole album by one gain to the target,
//!   keeping the mastered relative levels.
//! - **Warmth**: the difference of the warmth index (150–600 Hz against
//!   2–8 kHz) from the reference, times `warmth.strength`, as a gentle pair
//!   of shelves (low up and high down, or the reverse).
//! - **Tone**: what remains of the difference between the track's
//!   loudness-normalised 1/3-octave balance and the reference's (60 Hz to
//!   12.5 kHz, smoothed), times `tone.strength`, capped at
//!   `max_correction_db`, realised by octave-spaced peaking filters whose
//!   gains are fitted by least squares.
//! - **Limiter budget**: the limiting each gain will call for is estimated
//!   here; finalize measures it and delivers a track quieter rather than
//!   limit it past `max_limiter_gain_reduction_db`.

use serde::{Deserialize, Serialize};

use crate::analysis::{Analysis, BAND_CENTRES_HZ, album_loudness};
use crate::dsp::biquad::FilterChain;
use crate::manifest::{Filter, FilterType, LoudnessMode, Matching};

/// Centres of the tone-matching filters.
const TONE_FILTER_HZ: [f64; 8] = [63.0, 125.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0];
/// About one octave wide.
const TONE_FILTER_Q: f64 = 1.41;
/// The bands tone matching looks at.
const TONE_RANGE_HZ: (f64, f64) = (60.0, 12_500.0);
const WARMTH_LOW_SHELF_HZ: f64 = 300.0;
const WARMTH_HIGH_SHELF_HZ: f64 = 3000.0;
const MAX_WARMTH_SHELF_DB: f64 = 6.0;
/// The rate the plan evaluates filter responses at (only shapes matter).
const DESIGN_RATE_HZ: u32 = 48_000;

/// What the album pass does to one track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Correction {
    /// Loudness gain (dB), before the final limiter.
    pub gain_db: f64,
    /// The integrated loudness the delivered track should measure (LUFS).
    pub target_lufs: f64,
    /// Warmth shelves.
    pub warmth_filters: Vec<Filter>,
    /// Tone-matching peaking filters.
    pub tone_filters: Vec<Filter>,
    /// Limiting the final limiter is expected to apply at the loudest peak
    /// (dB); finalize measures the real figure and holds the budget.
    pub expected_limiting_db: f64,
    pub warnings: Vec<String>,
}

impl Correction {
    /// All the filters, warmth first.
    pub fn filters(&self) -> Vec<Filter> {
        self.warmth_filters.iter().chain(&self.tone_filters).cloned().collect()
    }
}

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

pub fn plan_album(tracks: &[PlannedTrack], matching: &Matching, reference: Reference) -> AlbumPlan {
    let balances: Vec<Vec<f64>> = tracks.iter().map(|t| balance_db(t.analysis)).collect();
    let (reference_balance_db, reference_warmth_db) = match reference {
        Reference::Album => {
            let n = tracks.len().max(1) as f64;
            let mean =
                (0..BAND_CENTRES_HZ.len()).map(|band| balances.iter().map(|b| b[band]).sum::<f64>() / n).collect();
            (mean, tracks.iter().map(|t| t.analysis.warmth_db).sum::<f64>() / n)
        }
        Reference::Track(index) => (balances[index].clone(), tracks[index].analysis.warmth_db),
        Reference::File(analysis) => (balance_db(analysis), analysis.warmth_db),
    };
    let analyses: Vec<&Analysis> = tracks.iter().map(|t| t.analysis).collect();
    let album_lufs_before = album_loudness(&analyses).integrated_lufs;
    let album_gain_db = album_lufs_before.map(|lufs| matching.loudness.target_lufs - lufs).unwrap_or(0.0);

    let corrections = tracks
        .iter()
        .zip(&balances)
        .map(|(track, balance)| {
            let mut warnings = Vec::new();
            let measured = track.analysis.integrated_lufs;
            let (target_lufs, gain_db) = match (matching.loudness.mode, measured) {
                (_, None) => {
                    warnings.push("the master is silent; no loudness correction".to_owned());
                    (matching.loudness.target_lufs, 0.0)
                }
                (LoudnessMode::Track, Some(lufs)) => {
                    let target = matching.loudness.target_lufs + track.loudness_offset_lu;
                    (target, target - lufs)
                }
                (LoudnessMode::Album, Some(lufs)) => (lufs + album_gain_db, album_gain_db),
            };
            let warmth_filters = warmth_shelves(matching.warmth.strength * (reference_warmth_db - track.analysis.warmth_db));
            let unit_shelves = warmth_shelves(reference_warmth_db - track.analysis.warmth_db);
            let unit_response = response_db(&unit_shelves);
            // The shape of the difference: its mean over the tone bands is
            // level, which the loudness gain takes care of.
            let difference: Vec<f64> =
                (0..BAND_CENTRES_HZ.len()).map(|band| reference_balance_db[band] - balance[band] - unit_response[band]).collect();
            let level = tone_bands().map(|band| difference[band]).sum::<f64>() / tone_bands().count() as f64;
            let desired: Vec<f64> = smooth(&difference)
                .into_iter()
                .map(|d| (matching.tone.strength * (d - level)).clamp(-matching.tone.max_correction_db, matching.tone.max_correction_db))
                .collect();
            let tone_filters = fit_peaks(&desired, matching.tone.max_correction_db);

            // Limiting the gain will call for at the loudest peak; finalize
            // measures the real figure and holds the budget.
            let expected_limiting_db = (track.analysis.true_peak_dbtp + gain_db - matching.true_peak_dbtp).max(0.0);
            if expected_limiting_db > matching.max_limiter_gain_reduction_db {
                warnings.push(format!(
                    "its peaks would need about {expected_limiting_db:.1} dB of limiting to reach the target, more than the {:.1} dB allowed: expect it to be delivered quieter",
                    matching.max_limiter_gain_reduction_db
                ));
            }
            Correction { gain_db, target_lufs, warmth_filters, tone_filters, expected_limiting_db, warnings }
        })
        .collect();
    AlbumPlan { reference_balance_db, reference_warmth_db, album_lufs_before, corrections }
}

/// A low shelf up and a high shelf down by half of `warmth_db` each (or the
/// reverse), which moves the warmth index by about `warmth_db`.
fn warmth_shelves(warmth_db: f64) -> Vec<Filter> {
    let half = (warmth_db / 2.0).clamp(-MAX_WARMTH_SHELF_DB, MAX_WARMTH_SHELF_DB);
    if half.abs() < 0.01 {
        return Vec::new();
    }
    vec![
        Filter {
            kind: FilterType::LowShelf,
            freq_hz: WARMTH_LOW_SHELF_HZ,
            q: Some(0.5),
            gain_db: Some(half),
            slope_db_oct: None,
        },
        Filter {
            kind: FilterType::HighShelf,
            freq_hz: WARMTH_HIGH_SHELF_HZ,
            q: Some(0.5),
            gain_db: Some(-half),
            slope_db_oct: None,
        },
    ]
}

/// Response in dB of a filter list at every band centre.
fn response_db(filters: &[Filter]) -> Vec<f64> {
    let chain = FilterChain::new(DESIGN_RATE_HZ, 1, filters);
    BAND_CENTRES_HZ.iter().map(|&f| chain.magnitude_db(f, DESIGN_RATE_HZ)).collect()
}

/// A three-band moving average (the ends average what they have).
fn smooth(values: &[f64]) -> Vec<f64> {
    (0..values.len())
        .map(|i| {
            let window = &values[i.saturating_sub(1)..(i + 2).min(values.len())];
            window.iter().sum::<f64>() / window.len() as f64
        })
        .collect()
}

fn peak(freq_hz: f64, gain_db: f64) -> Filter {
    Filter { kind: FilterType::Peak, freq_hz, q: Some(TONE_FILTER_Q), gain_db: Some(gain_db), slope_db_oct: None }
}

/// Gains of the octave-spaced peaking filters whose summed response best
/// matches `desired` over the tone bands (least squares, twice, the second
/// pass correcting what the first got wrong), each within ±`max_db`.
fn fit_peaks(desired: &[f64], max_db: f64) -> Vec<Filter> {
    let bands: Vec<usize> = tone_bands().collect();
    // Response of each filter at 1 dB: close to linear in its gain.
    let unit: Vec<Vec<f64>> = TONE_FILTER_HZ.iter().map(|&f| response_db(&[peak(f, 1.0)])).collect();
    let mut gains = [0f64; TONE_FILTER_HZ.len()];
    for _ in 0..2 {
        let current = response_db(&TONE_FILTER_HZ.iter().zip(gains).map(|(&f, g)| peak(f, g)).collect::<Vec<_>>());
        let residual: Vec<f64> = (0..desired.len()).map(|band| desired[band] - current[band]).collect();
        let step = least_squares(&unit, &residual, &bands);
        for (g, s) in gains.iter_mut().zip(step) {
            *g = (*g + s).clamp(-max_db, max_db);
        }
    }
    TONE_FILTER_HZ
        .iter()
        .zip(gains)
        .filter(|(_, g)| g.abs() >= 0.05)
        .map(|(&f, g)| peak(f, (g * 100.0).round() / 100.0))
        .collect()
}

/// Solves min Σ_bands (Σ_i x_i·a_i[band] - b[band])² + ρ|x|² + σ Σ (x_i - x_i+1)²
/// by the normal equations: a small ridge, and a smoothness term that keeps
/// neighbouring filters from fighting each other (a smooth curve, not a
/// zig-zag).
fn least_squares(a: &[Vec<f64>], b: &[f64], bands: &[usize]) -> Vec<f64> {
    const RIDGE: f64 = 0.05;
    const SMOOTHNESS: f64 = 0.3;
    let n = a.len();
    let mut m = vec![vec![0f64; n + 1]; n];
    for i in 0..n {
        for j in 0..n {
            m[i][j] = bands.iter().map(|&k| a[i][k] * a[j][k]).sum::<f64>() + if i == j { RIDGE } else { 0.0 };
        }
        m[i][n] = bands.iter().map(|&k| a[i][k] * b[k]).sum();
    }
    for i in 0..n.saturating_sub(1) {
        m[i][i] += SMOOTHNESS;
        m[i + 1][i + 1] += SMOOTHNESS;
        m[i][i + 1] -= SMOOTHNESS;
        m[i + 1][i] -= SMOOTHNESS;
    }
    // Gaussian elimination with partial pivoting.
    for col in 0..n {
        let pivot = (col..n).max_by(|&x, &y| m[x][col].abs().total_cmp(&m[y][col].abs())).unwrap_or(col);
        m.swap(col, pivot);
        let lead = m[col][col];
        if lead.abs() < 1e-12 {
            continue;
        }
        let pivot_row = m[col].clone();
        for (row, values) in m.iter_mut().enumerate() {
            if row != col {
                let factor = values[col] / lead;
                for (value, pivot) in values.iter_mut().zip(&pivot_row).skip(col) {
                    *value -= factor * pivot;
                }
            }
        }
    }
    (0..n).map(|i| if m[i][i].abs() < 1e-12 { 0.0 } else { m[i][n] / m[i][i] }).collect()
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
        let plan = plan_album(&tracks, &matching, Reference::Album);
        let c = &plan.corrections;
        assert!((c[0].gain_db - 6.0).abs() < 1e-9 && c[0].target_lufs == -14.0);
        assert!((c[1].gain_db - 7.0).abs() < 1e-9 && c[1].target_lufs == -17.0, "offset -3 LU");
        // -1 dBTP + 4 dB of gain would need 4 dB of limiting to a -1 ceiling: at the budget exactly.
        assert!((c[2].expected_limiting_db - 4.0).abs() < 1e-9 && c[2].warnings.is_empty());
        let strict = Matching { max_limiter_gain_reduction_db: 1.0, ..Matching::default() };
        let plan = plan_album(&tracks, &strict, Reference::Album);
        let c = &plan.corrections[2];
        assert_eq!(c.target_lufs, -14.0, "the target stays; finalize holds the budget");
        assert!(c.warnings[0].contains("about 4.0 dB of limiting"), "{:?}", c.warnings);
    }

    #[test]
    fn tone_matching_closes_most_of_the_gap() {
        let dull = analysis(-18.0, -6.0, -2.0, 20.0);
        let bright = analysis(-18.0, -6.0, 1.0, 5.0);
        let tracks = [
            PlannedTrack { analysis: &dull, loudness_offset_lu: 0.0 },
            PlannedTrack { analysis: &bright, loudness_offset_lu: 0.0 },
        ];
        let plan = plan_album(&tracks, &Matching::default(), Reference::Album);
        for (track, correction) in tracks.iter().zip(&plan.corrections) {
            let before = balance_db(track.analysis);
            let response = response_db(&correction.filters());
            let after: Vec<f64> = before.iter().zip(&response).map(|(b, r)| b + r).collect();
            let (d_before, d_after) = (
                tonal_distance_db(&before, &plan.reference_balance_db),
                tonal_distance_db(&after, &plan.reference_balance_db),
            );
            assert!(d_after < 0.6 * d_before, "tonal distance {d_before:.2} → {d_after:.2} dB");
        }
        assert!(plan.corrections[0].warmth_filters[0].gain_db.unwrap() < 0.0, "the warmer track gets less low end");
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
        let plan = plan_album(&tracks, &matching, Reference::Album);
        assert_eq!(plan.corrections[0].gain_db, plan.corrections[1].gain_db, "one gain for the whole album");
    }
}
