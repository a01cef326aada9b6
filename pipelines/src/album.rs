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
//! - **Tone**: `tone.strength` times the difference between the track's
//!   loudness-normalised 1/3-octave balance and the reference's (60 Hz to
//!   12.5 kHz), less what the warmth shelves already do, realised by
//!   half-octave peaking filters whose gains are fitted by regularised
//!   least squares (the curve's bend penalised, so it stays smooth). The
//!   album pass's EQ as a whole, warmth and tone together, stays within
//!   `max_correction_db` in every band. The fit models the
//!   loudness normalisation that follows: cutting a track's brightest bands
//!   lowers its K-weighted loudness, so after the gain every other band
//!   sits higher in its balance. It aims at the balance the listener will
//!   hear, not at the filter's raw response.
//! - **Limiter budget**: the limiting each gain will call for is estimated
//!   here; finalize measures it and delivers a track quieter rather than
//!   limit it past `max_limiter_gain_reduction_db`.

use serde::{Deserialize, Serialize};

use crate::analysis::{Analysis, BAND_CENTRES_HZ, album_loudness};
use crate::dsp::biquad::{Coefficients, FilterChain};
use crate::manifest::{Filter, FilterType, LoudnessMode, Matching};

/// Number of tone-matching filters: half-octave steps from 63 Hz to 11.3 kHz.
const TONE_FILTERS: usize = 16;
const LOWEST_TONE_FILTER_HZ: f64 = 63.0;
/// Half an octave wide: sqrt(2^½) / (2^½ - 1).
const TONE_FILTER_Q: f64 = 2.87;
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

pub fn plan_album(tracks: &[PlannedTrack], matching: &Matching, reference: Reference) -> AlbumPlan {
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
        .zip(&balances)
        .enumerate()
        .map(|(index, (track, balance))| {
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
                    warmth_filters: Vec::new(),
                    tone_filters: Vec::new(),
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
            let warmth_filters = warmth_shelves(
                matching.warmth.strength * (reference_warmth_db - track.analysis.warmth_db),
                matching.tone.max_correction_db,
            );
            let wanted: Vec<f64> =
                (0..BAND_CENTRES_HZ.len()).map(|band| matching.tone.strength * (reference_balance_db[band] - balance[band])).collect();
            let tone_filters = fit_tone(
                &loudness_shares(&track.analysis.band_levels_db),
                &response_db(&warmth_filters),
                &wanted,
                matching.tone.max_correction_db,
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
            Correction { gain_db, target_lufs, warmth_filters, tone_filters, expected_limiting_db, warnings }
        })
        .collect();
    AlbumPlan { reference_balance_db, reference_warmth_db, album_lufs_before, corrections }
}

/// A low shelf up and a high shelf down by half of `warmth_db` each (or the
/// reverse), which moves the warmth index by about `warmth_db`; neither
/// beyond `max_db`.
fn warmth_shelves(warmth_db: f64, max_db: f64) -> Vec<Filter> {
    let limit = MAX_WARMTH_SHELF_DB.min(max_db);
    let half = (warmth_db / 2.0).clamp(-limit, limit);
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
    let chain = FilterChain::new(DESIGN_RATE_HZ, 1, 1, filters);
    BAND_CENTRES_HZ.iter().map(|&f| chain.magnitude_db(f, DESIGN_RATE_HZ)).collect()
}

fn tone_filter_hz(index: usize) -> f64 {
    LOWEST_TONE_FILTER_HZ * 2f64.powf(index as f64 / 2.0)
}

fn peak(freq_hz: f64, gain_db: f64) -> Filter {
    Filter { kind: FilterType::Peak, freq_hz, q: Some(TONE_FILTER_Q), gain_db: Some(gain_db), slope_db_oct: None }
}

fn tone_filters(gains: &[f64]) -> Vec<Filter> {
    gains.iter().enumerate().map(|(i, &g)| peak(tone_filter_hz(i), g)).collect()
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

/// The balance change a response makes once the track is brought back to
/// its loudness: the response, less the loudness change it causes.
fn balance_change_db(shares: &[f64], response_db: &[f64]) -> Vec<f64> {
    let power: f64 = shares.iter().zip(response_db).map(|(p, r)| p * 10f64.powf(r / 10.0)).sum();
    let loudness_change_db = if power > 0.0 { 10.0 * power.log10() } else { 0.0 };
    response_db.iter().map(|r| r - loudness_change_db).collect()
}

/// Gains of the half-octave peaking filters that, with the warmth shelves
/// (`warmth_db`, their response per band), bring the balance change
/// closest to `wanted` over the tone bands once the loudness is matched
/// again: Gauss–Newton on the balance change, each step a regularised
/// least-squares solve. A band where the album pass's EQ (warmth and tone
/// together) would pass ±`max_db` is pulled back to it by a penalty, so the
/// cap holds per band (within a few tenths of a dB): a filter may lean
/// against the warmth shelves, but no band moves further than the cap.
fn fit_tone(shares: &[f64], warmth_db: &[f64], wanted: &[f64], max_db: f64) -> Vec<Filter> {
    /// Weight of the cap's penalty against the fit.
    const CAP_WEIGHT: f64 = 3.0;
    /// Weight of the curve's bend (second difference across bands), which
    /// keeps the correction a smooth curve rather than a comb.
    const SMOOTHNESS: f64 = 0.3;
    let bands: Vec<usize> = tone_bands().collect();
    // Response of each filter at 1 dB: close to linear in its gain.
    let unit: Vec<Vec<f64>> = (0..TONE_FILTERS).map(|i| response_db(&[peak(tone_filter_hz(i), 1.0)])).collect();
    let mut gains = [0f64; TONE_FILTERS];
    for _ in 0..4 {
        let tone = response_db(&tone_filters(&gains));
        let total: Vec<f64> = tone.iter().zip(warmth_db).map(|(t, w)| t + w).collect();
        let change = balance_change_db(shares, &total);
        // How a filter's gain moves each band's balance at this point: its
        // own response there, less its share in the loudness.
        let power: Vec<f64> = shares.iter().zip(&total).map(|(p, r)| p * 10f64.powf(r / 10.0)).collect();
        let power_sum = power.iter().sum::<f64>().max(f64::MIN_POSITIVE);
        let mut rows: Vec<(Vec<f64>, f64)> = bands
            .iter()
            .map(|&b| {
                let slope = unit
                    .iter()
                    .map(|a| a[b] - a.iter().zip(&power).map(|(a, p)| a * p).sum::<f64>() / power_sum)
                    .collect();
                (slope, wanted[b] - change[b])
            })
            .collect();
        for window in bands.windows(3) {
            let [before, at, after] = [window[0], window[1], window[2]];
            let bend = |r: &[f64]| r[before] - 2.0 * r[at] + r[after];
            rows.push((unit.iter().map(|a| SMOOTHNESS * bend(a)).collect(), -SMOOTHNESS * bend(&tone)));
        }
        for &b in &bands {
            if total[b].abs() > max_db {
                let over = total[b] - max_db.copysign(total[b]);
                rows.push((unit.iter().map(|a| CAP_WEIGHT * a[b]).collect(), -CAP_WEIGHT * over));
            }
        }
        let step = least_squares(&rows, TONE_FILTERS);
        for (g, s) in gains.iter_mut().zip(step) {
            *g = (*g + s).clamp(-2.0 * max_db, 2.0 * max_db);
        }
    }
    tone_filters(&gains.map(|g| (g * 100.0).round() / 100.0))
        .into_iter()
        .filter(|f| f.gain_db.is_some_and(|g| g.abs() >= 0.05))
        .collect()
}

/// Solves min Σ_rows (row·x - target)² + ρ|x|² + σ Σ (x_i - x_i+1)² by
/// the normal equations: a small ridge, and a small smoothness term that
/// keeps neighbouring filters from fighting each other.
fn least_squares(rows: &[(Vec<f64>, f64)], n: usize) -> Vec<f64> {
    const RIDGE: f64 = 0.01;
    const SMOOTHNESS: f64 = 0.05;
    let mut m = vec![vec![0f64; n + 1]; n];
    for (row, target) in rows {
        for i in 0..n {
            for j in 0..n {
                m[i][j] += row[i] * row[j];
            }
            m[i][n] += row[i] * target;
        }
    }
    for (i, values) in m.iter_mut().enumerate() {
        values[i] += RIDGE;
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
        let alone = plan_album(&planned(&[&warm, &cool]), &matching, Reference::Album);
        let with_quiet = plan_album(&planned(&[&warm, &hiss, &cool, &silence]), &matching, Reference::Album);
        assert_eq!(with_quiet.reference_warmth_db, 11.0, "the mean of the audible tracks only");
        assert_eq!(with_quiet.reference_balance_db, alone.reference_balance_db);
        assert_eq!(with_quiet.corrections[0], alone.corrections[0], "the audible tracks' moves do not change");
        assert_eq!(with_quiet.corrections[2], alone.corrections[1]);
        for (quiet, said) in
            [(&with_quiet.corrections[1], "near-silent (-56.0 LUFS"), (&with_quiet.corrections[3], "silent")]
        {
            assert_eq!((quiet.gain_db, quiet.filters().len(), quiet.expected_limiting_db), (0.0, 0, 0.0));
            assert!(quiet.warnings[0].contains(said) && quiet.warnings[0].contains("kept out"), "{:?}", quiet.warnings);
        }
        assert_eq!(with_quiet.corrections[1].target_lufs, -56.0, "delivered as mastered");
        // Album mode: the album's loudness is the audible tracks'.
        let mut album = matching.clone();
        album.loudness.mode = LoudnessMode::Album;
        let alone = plan_album(&planned(&[&warm, &cool]), &album, Reference::Album);
        let with_quiet = plan_album(&planned(&[&warm, &hiss, &cool, &silence]), &album, Reference::Album);
        assert_eq!(with_quiet.album_lufs_before, alone.album_lufs_before);
        // A near-silent tone reference gives way to the album.
        let plan = plan_album(&planned(&[&warm, &hiss, &cool]), &matching, Reference::Track(1));
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
            let change = balance_change_db(
                &loudness_shares(&track.analysis.band_levels_db),
                &response_db(&correction.filters()),
            );
            let after: Vec<f64> = before.iter().zip(&change).map(|(b, c)| b + c).collect();
            let eq = response_db(&correction.filters());
            let cap = Matching::default().tone.max_correction_db;
            assert!(tone_bands().all(|b| eq[b].abs() <= cap + 0.3), "the album pass's EQ within the cap: {eq:?}");
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
