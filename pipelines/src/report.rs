//! The album report: every figure before and after the album pass, the
//! corrections applied, warnings, and a content hash of every output —
//! as JSON for scripts and as one self-contained HTML page (inline SVG, no
//! network) for a mastering engineer.

use serde::{Deserialize, Serialize};

use crate::album::{
    Correction, balance_db, check_grid_hz, equal_loudness_response_db, is_near_silent, realised_correction_db,
    tonal_distance_db,
};
use crate::analysis::{Analysis, BAND_CENTRES_HZ};
use crate::stages::finalize::FinalizeReport;
use crate::stages::mix::MixReport;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlbumReport {
    pub title: String,
    pub artist: String,
    pub pipeline_version: String,
    pub target_lufs: f64,
    pub true_peak_ceiling_dbtp: f64,
    pub reference: String,
    pub reference_balance_db: Vec<f64>,
    pub band_centres_hz: Vec<f64>,
    pub tracks: Vec<TrackReport>,
    pub album: AlbumFigures,
    pub outputs: Vec<OutputFile>,
    /// Each disc (`ddp` deliverable): its running order.
    #[serde(default)]
    pub discs: Vec<DiscReport>,
}

/// A disc's running order, as its PQ data and CUE sheet give it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscReport {
    /// The deliverable's name.
    pub name: String,
    pub layout: crate::disc::Layout,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackReport {
    pub position: usize,
    pub id: String,
    pub title: String,
    pub loudness_offset_lu: f64,
    pub mix: Option<MixReport>,
    /// The mastered track, before the album pass.
    pub master: Analysis,
    pub master_limiter_gain_reduction_db: f64,
    pub correction: Correction,
    pub finalize: FinalizeReport,
    /// RMS dB over 1/3-octave bands 60 Hz–12.5 kHz against the reference,
    /// both normalised to equal loudness: before and after the album pass.
    pub tonal_distance_before_db: f64,
    pub tonal_distance_after_db: f64,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlbumFigures {
    /// Spread (max − min) of integrated loudness after removing the
    /// intended offsets (LU).
    pub loudness_spread_before_lu: f64,
    pub loudness_spread_after_lu: f64,
    /// Spread of the warmth index (dB).
    pub warmth_spread_before_db: f64,
    pub warmth_spread_after_db: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Relative to the output folder.
    pub path: String,
    pub blake3: String,
    pub size_bytes: u64,
}

fn spread(values: impl Iterator<Item = f64>) -> f64 {
    let values: Vec<f64> = values.collect();
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    let min = values.iter().copied().fold(f64::MAX, f64::min);
    if values.is_empty() { 0.0 } else { max - min }
}

impl AlbumFigures {
    /// Spreads before (masters) and after (the first deliverable, as delivered).
    pub fn from_tracks(tracks: &[TrackReport]) -> Self {
        fn delivered(t: &TrackReport) -> &Analysis {
            t.finalize.delivered.first().map(|d| &d.analysis).unwrap_or(&t.finalize.render)
        }
        // Near-silent tracks are not matched, so not counted.
        let audible = || tracks.iter().filter(|t| !is_near_silent(&t.master));
        AlbumFigures {
            loudness_spread_before_lu: spread(
                audible().filter_map(|t| t.master.integrated_lufs.map(|l| l - t.loudness_offset_lu)),
            ),
            loudness_spread_after_lu: spread(
                audible().filter_map(|t| delivered(t).integrated_lufs.map(|l| l - t.loudness_offset_lu)),
            ),
            warmth_spread_before_db: spread(audible().map(|t| t.master.warmth_db)),
            warmth_spread_after_db: spread(audible().map(|t| delivered(t).warmth_db)),
        }
    }
}

/// Text made safe inside HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Tonal distance of an analysis to the reference balance.
pub fn distance_to(reference_balance_db: &[f64], analysis: &Analysis) -> f64 {
    tonal_distance_db(&balance_db(analysis), reference_balance_db)
}

impl AlbumReport {
    pub fn to_html(&self) -> String {
        let mut html = String::new();
        html.push_str(&format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} — mastering report</title><style>{STYLE}</style></head><body>",
            esc(&self.title)
        ));
        html.push_str(&format!(
            "<h1>{}</h1><p class=\"sub\">{} · target {:.1} LUFS · ceiling {:.1} dBTP · tone reference: {} · lacquer {}</p>",
            esc(&self.title),
            esc(&self.artist),
            self.target_lufs,
            self.true_peak_ceiling_dbtp,
            esc(&self.reference),
            esc(&self.pipeline_version)
        ));
        let a = &self.album;
        html.push_str(&format!(
            "<p>Loudness spread (offsets removed): <b>{:.2} LU</b> → <b>{:.2} LU</b>. Warmth spread: <b>{:.2} dB</b> → <b>{:.2} dB</b>.</p>",
            a.loudness_spread_before_lu, a.loudness_spread_after_lu, a.warmth_spread_before_db, a.warmth_spread_after_db
        ));
        html.push_str("<h2>Loudness per track</h2>");
        html.push_str(&self.loudness_chart());
        html.push_str("<h2>Tonal balance against the reference</h2><p class=\"sub\">Band level relative to integrated loudness; the reference is the thick grey line. Dashed: before the album pass; solid: delivered.</p>");
        html.push_str(&self.balance_chart());
        html.push_str("<h2>Figures</h2><table><tr><th>#</th><th>track</th><th>master LUFS</th><th>delivered LUFS</th><th>target</th><th>true peak dBTP (BS.1770)</th><th>LRA before → after</th><th>PLR dB</th><th>gain dB</th><th>limiter GR dB</th><th>tone distance dB</th><th>warmth dB</th></tr>");
        for t in &self.tracks {
            let d = t.finalize.delivered.first().map(|d| &d.analysis).unwrap_or(&t.finalize.render);
            let f = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into());
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.2} ({:.2})</td><td>{:.1} → {:.1}</td><td>{}</td><td>{:+.2}</td><td>{:.2}</td><td>{:.2} → {:.2}</td><td>{:.1} → {:.1}</td></tr>",
                t.position,
                esc(&t.title),
                f(t.master.integrated_lufs),
                f(d.integrated_lufs),
                t.correction.target_lufs,
                d.true_peak_dbtp,
                d.true_peak_bs1770_dbtp,
                t.master.loudness_range_lu,
                d.loudness_range_lu,
                f(d.plr_db),
                t.finalize.gain_db,
                t.finalize.limiter_gain_reduction_db,
                t.tonal_distance_before_db,
                t.tonal_distance_after_db,
                t.master.warmth_db,
                d.warmth_db
            ));
        }
        html.push_str("</table><h2>Each track</h2>");
        for (i, t) in self.tracks.iter().enumerate() {
            html.push_str(&self.track_section(i, t));
        }
        for disc in &self.discs {
            html.push_str(&format!(
                "<h2>Disc <code>{}</code>: running order</h2><p class=\"sub\">CD frames of 1/75 s; INDEX 00 starts a track's gap, INDEX 01 its audio. Total {}.</p><table><tr><th>#</th><th>track</th><th>gap before</th><th>INDEX 00</th><th>INDEX 01</th><th>length</th></tr>",
                esc(&disc.name),
                crate::disc::timecode(disc.layout.lead_out_frame, ':')
            ));
            for (placement, t) in disc.layout.tracks.iter().zip(&self.tracks) {
                let gap_s =
                    (placement.start_frame - placement.gap_frame) as f64 / crate::disc::FRAMES_PER_SECOND as f64;
                html.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2} s</td></tr>",
                    placement.number,
                    esc(&t.title),
                    if placement.gap_frame < placement.start_frame {
                        format!("{gap_s:.2} s")
                    } else {
                        "none (joined)".to_owned()
                    },
                    crate::disc::timecode(placement.gap_frame, ':'),
                    crate::disc::timecode(placement.start_frame, ':'),
                    placement.samples as f64 / f64::from(crate::disc::RATE_HZ)
                ));
            }
            html.push_str("</table>");
        }
        self.codec_table(&mut html);
        html.push_str("<h2>Warnings</h2>");
        let warnings: Vec<String> =
            self.tracks.iter().flat_map(|t| t.warnings.iter().map(move |w| format!("{}: {w}", t.title))).collect();
        if warnings.is_empty() {
            html.push_str("<p>None.</p>");
        } else {
            html.push_str("<ul>");
            for w in warnings {
                html.push_str(&format!("<li>{}</li>", esc(&w)));
            }
            html.push_str("</ul>");
        }
        html.push_str("<h2>Outputs</h2><table><tr><th>file</th><th>bytes</th><th>BLAKE3</th></tr>");
        for o in &self.outputs {
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td class=\"hash\">{}</td></tr>",
                esc(&o.path),
                o.size_bytes,
                o.blake3
            ));
        }
        html.push_str("</table></body></html>\n");
        html
    }

    /// One track: what the album pass did to it and what it measured.
    /// With `matching.codec_check`: each streaming file decoded from each
    /// codec, read at the album's ceiling and as delivered.
    fn codec_table(&self, html: &mut String) {
        let Some(ceiling_dbtp) =
            self.tracks.iter().find_map(|t| t.finalize.codec_check.as_ref()).map(|c| c.codec_ceiling_dbtp)
        else {
            return;
        };
        html.push_str(&format!(
            "<h2>Through the stores' codecs</h2><p class=\"sub\">Each streaming deliverable encoded and decoded again (no clamping); true peak of the decoded audio, accurate / BS.1770, against the codec ceiling of {ceiling_dbtp:.1} dBTP. Where a codec read over it, the file's ceiling was lowered and the file made again. Clipped: decoded samples past full scale.</p><table><tr><th>#</th><th>track</th><th>deliverable</th><th>codec</th><th>at the album ceiling: dBTP</th><th>clipped</th><th>ceiling lowered</th><th>delivered: dBTP</th><th>clipped</th></tr>"
        ));
        for t in &self.tracks {
            let Some(check) = &t.finalize.codec_check else { continue };
            for row in &check.rows {
                let over = |db: f64| if db > check.codec_ceiling_dbtp { " class=\"over\"" } else { "" };
                html.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} {} kb/s</td><td{}>{:.2} / {:.2}</td><td>{}</td><td>{}</td><td{}>{:.2} / {:.2}</td><td>{}</td></tr>",
                    t.position,
                    esc(&t.title),
                    esc(&row.deliverable),
                    row.codec.name(),
                    row.bitrate_kbps,
                    over(row.before.highest_true_peak_dbtp()),
                    row.before.true_peak_dbtp,
                    row.before.true_peak_bs1770_dbtp,
                    row.before.clipped_samples,
                    if check.lowered_db > 0.0 {
                        format!("{:.2} dB → {:.2} dBTP", check.lowered_db, check.streaming_ceiling_dbtp)
                    } else {
                        "no".to_owned()
                    },
                    over(row.after.highest_true_peak_dbtp()),
                    row.after.true_peak_dbtp,
                    row.after.true_peak_bs1770_dbtp,
                    row.after.clipped_samples,
                ));
            }
        }
        html.push_str("</table>");
    }

    fn track_section(&self, index: usize, t: &TrackReport) -> String {
        let d = delivered(t);
        let f = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into());
        let mut html = format!(
            "<section class=\"track\"><h3>{}. {}</h3><p>LRA <b>{:.1} → {:.1} LU</b> · PLR <b>{} → {} dB</b> · gain {:+.2} dB · final limiter {:.2} dB GR · EQ applied at {:.0}% of the planned curve · tone distance {:.2} → {:.2} dB</p>",
            t.position,
            esc(&t.title),
            t.master.loudness_range_lu,
            d.loudness_range_lu,
            f(t.master.plr_db),
            f(d.plr_db),
            t.finalize.gain_db,
            t.finalize.limiter_gain_reduction_db,
            100.0 * t.finalize.correction_scale,
            t.tonal_distance_before_db,
            t.tonal_distance_after_db,
        );
        html.push_str("<div class=\"charts\">");
        html.push_str(&correction_chart(t));
        html.push_str(&self.track_balance_chart(index, t));
        html.push_str("</div>");
        html.push_str(&short_term_chart(t));
        html.push_str(&format!("<p class=\"sub\">EQ: {}</p>", esc(&eq_summary(t))));
        if !t.warnings.is_empty() {
            html.push_str("<ul class=\"warnings\">");
            for w in &t.warnings {
                html.push_str(&format!("<li>{}</li>", esc(w)));
            }
            html.push_str("</ul>");
        }
        html.push_str("</section>");
        html
    }

    /// A track's balance before and after against the reference (1/3
    /// octave, relative to loudness).
    fn track_balance_chart(&self, index: usize, t: &TrackReport) -> String {
        let colour = PALETTE[index % PALETTE.len()];
        let chart = LogChart::new(360.0, 220.0, 12.0);
        let reference: Vec<f64> = self.reference_balance_db.clone();
        let centre = mean_over_tone(&reference);
        let shift = |v: Vec<f64>| -> Vec<f64> { v.into_iter().map(|x| x - centre).collect() };
        let mut svg = chart.open("balance against the reference");
        svg.push_str(&chart.polyline(&BAND_CENTRES_HZ, &shift(reference), "reference", ""));
        svg.push_str(&chart.polyline(&BAND_CENTRES_HZ, &shift(balance_db(&t.master)), "track-before", colour));
        svg.push_str(&chart.polyline(&BAND_CENTRES_HZ, &shift(balance_db(delivered(t))), "track-after", colour));
        svg.push_str("</svg>");
        format!(
            "<figure>{svg}<figcaption>Balance (dB, 1/3 octave, at equal loudness): reference <span class=\"key reference-key\"></span> {}, master dashed, delivered solid</figcaption></figure>",
            self.reference.replace('<', "&lt;")
        )
    }

    fn loudness_chart(&self) -> String {
        let (width, row) = (760.0, 34.0);
        let height = row * self.tracks.len() as f64 + 40.0;
        let (low, high) = (-36.0, -6.0);
        let x = |lufs: f64| 200.0 + (lufs.clamp(low, high) - low) / (high - low) * (width - 220.0);
        let mut svg = format!("<svg viewBox=\"0 0 {width} {height}\" width=\"{width}\" role=\"img\">");
        for tick in (low as i32..=high as i32).step_by(6) {
            let tx = x(f64::from(tick));
            svg.push_str(&format!("<line x1=\"{tx}\" y1=\"10\" x2=\"{tx}\" y2=\"{}\" class=\"grid\"/><text x=\"{tx}\" y=\"{}\" class=\"tick\">{tick}</text>", height - 25.0, height - 10.0));
        }
        for (i, t) in self.tracks.iter().enumerate() {
            let y = 20.0 + row * i as f64;
            let before = t.master.integrated_lufs.unwrap_or(low);
            let after = t.finalize.delivered.first().and_then(|d| d.analysis.integrated_lufs).unwrap_or(low);
            svg.push_str(&format!(
                "<text x=\"0\" y=\"{}\" class=\"label\">{}</text>",
                y + 12.0,
                t.title.replace('<', "&lt;").chars().take(28).collect::<String>()
            ));
            svg.push_str(&format!(
                "<rect x=\"200\" y=\"{y}\" width=\"{}\" height=\"8\" class=\"before\"/>",
                x(before) - 200.0
            ));
            svg.push_str(&format!(
                "<rect x=\"200\" y=\"{}\" width=\"{}\" height=\"8\" class=\"after\"/>",
                y + 10.0,
                x(after) - 200.0
            ));
            svg.push_str(&format!(
                "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" class=\"target\"/>",
                x(t.correction.target_lufs),
                y - 2.0,
                y + 20.0
            ));
        }
        svg.push_str("</svg><p class=\"sub\"><span class=\"key before\"></span> master <span class=\"key after\"></span> delivered <span class=\"key target\"></span> target (LUFS)</p>");
        svg
    }

    fn balance_chart(&self) -> String {
        let (width, height) = (760.0, 320.0);
        let bands: Vec<usize> =
            (0..BAND_CENTRES_HZ.len()).filter(|&i| (50.0..=16_000.0).contains(&BAND_CENTRES_HZ[i])).collect();
        let x = |i: usize| 40.0 + (BAND_CENTRES_HZ[i] / 50.0).log2() / (16_000.0f64 / 50.0).log2() * (width - 60.0);
        let all: Vec<f64> = bands.iter().map(|&i| self.reference_balance_db[i]).collect();
        let centre = all.iter().sum::<f64>() / all.len().max(1) as f64;
        let y = |db: f64| height / 2.0 - (db - centre).clamp(-30.0, 30.0) * (height / 2.0 - 20.0) / 30.0;
        let path = |values: &[f64]| -> String {
            bands.iter().map(|&i| format!("{:.1},{:.1}", x(i), y(values[i]))).collect::<Vec<_>>().join(" ")
        };
        let mut svg = format!("<svg viewBox=\"0 0 {width} {height}\" width=\"{width}\" role=\"img\">");
        for f in [100.0, 1000.0, 10_000.0] {
            let fx = 40.0 + (f / 50.0f64).log2() / (16_000.0f64 / 50.0).log2() * (width - 60.0);
            svg.push_str(&format!("<line x1=\"{fx}\" y1=\"0\" x2=\"{fx}\" y2=\"{height}\" class=\"grid\"/><text x=\"{fx}\" y=\"{}\" class=\"tick\">{} Hz</text>", height - 4.0, f));
        }
        svg.push_str(&format!("<polyline points=\"{}\" class=\"reference\"/>", path(&self.reference_balance_db)));
        for (i, t) in self.tracks.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let delivered = t.finalize.delivered.first().map(|d| &d.analysis).unwrap_or(&t.finalize.render);
            svg.push_str(&format!(
                "<polyline points=\"{}\" class=\"track-before\" stroke=\"{colour}\"/>",
                path(&balance_db(&t.master))
            ));
            svg.push_str(&format!(
                "<polyline points=\"{}\" class=\"track-after\" stroke=\"{colour}\"/>",
                path(&balance_db(delivered))
            ));
        }
        svg.push_str("</svg><p class=\"sub\">");
        for (i, t) in self.tracks.iter().enumerate() {
            svg.push_str(&format!(
                "<span style=\"color:{}\">■</span> {} ",
                PALETTE[i % PALETTE.len()],
                t.title.replace('<', "&lt;")
            ));
        }
        svg.push_str("</p>");
        svg
    }
}

/// The file a track's "after" figures are read from: its first
/// deliverable as delivered (the render when there is none).
fn delivered(t: &TrackReport) -> &Analysis {
    t.finalize.delivered.first().map(|d| &d.analysis).unwrap_or(&t.finalize.render)
}

fn mean_over_tone(balance_db: &[f64]) -> f64 {
    let values: Vec<f64> = BAND_CENTRES_HZ
        .iter()
        .zip(balance_db)
        .filter(|(f, _)| (63.0..=10_000.0).contains(*f))
        .map(|(_, b)| *b)
        .collect();
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// An SVG chart over log frequency, 20 Hz to 20 kHz, ±`range_db`.
struct LogChart {
    width: f64,
    height: f64,
    range_db: f64,
}

impl LogChart {
    const LEFT: f64 = 34.0;
    const BOTTOM: f64 = 18.0;

    fn new(width: f64, height: f64, range_db: f64) -> Self {
        Self { width, height, range_db }
    }

    fn x(&self, freq_hz: f64) -> f64 {
        Self::LEFT + (freq_hz / 20.0).log2() / 1000f64.log2() * (self.width - Self::LEFT - 6.0)
    }

    fn y(&self, db: f64) -> f64 {
        let plot = self.height - Self::BOTTOM - 6.0;
        6.0 + (self.range_db - db.clamp(-self.range_db, self.range_db)) / (2.0 * self.range_db) * plot
    }

    /// The opening tag and the grid.
    fn open(&self, label: &str) -> String {
        let mut svg = format!(
            "<svg viewBox=\"0 0 {} {}\" width=\"{}\" role=\"img\" aria-label=\"{label}\">",
            self.width, self.height, self.width
        );
        for f in [100.0, 1000.0, 10_000.0] {
            let x = self.x(f);
            svg.push_str(&format!(
                "<line x1=\"{x:.1}\" y1=\"6\" x2=\"{x:.1}\" y2=\"{:.1}\" class=\"grid\"/><text x=\"{x:.1}\" y=\"{:.1}\" class=\"tick\">{}</text>",
                self.height - Self::BOTTOM,
                self.height - 5.0,
                if f >= 1000.0 { format!("{}k", f / 1000.0) } else { format!("{f}") }
            ));
        }
        let step = if self.range_db > 8.0 { 6.0 } else { 2.0 };
        let mut db = -self.range_db;
        while db <= self.range_db + 1e-9 {
            let y = self.y(db);
            svg.push_str(&format!(
                "<line x1=\"{}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" class=\"{}\"/><text x=\"{}\" y=\"{:.1}\" class=\"tick\">{db:+.0}</text>",
                Self::LEFT,
                self.width - 6.0,
                if db == 0.0 { "zero" } else { "grid" },
                Self::LEFT - 14.0,
                y + 3.0
            ));
            db += step;
        }
        svg
    }

    fn polyline(&self, freqs_hz: &[f64], values_db: &[f64], class: &str, colour: &str) -> String {
        let points: Vec<String> = freqs_hz
            .iter()
            .zip(values_db)
            .filter(|(f, _)| (20.0..=20_000.0).contains(*f))
            .map(|(f, v)| format!("{:.1},{:.1}", self.x(*f), self.y(*v)))
            .collect();
        let stroke = if colour.is_empty() { String::new() } else { format!(" stroke=\"{colour}\"") };
        format!("<polyline points=\"{}\" class=\"{class}\"{stroke}/>", points.join(" "))
    }
}

/// One line on the EQ applied to a track: the curve at the octave
/// centres, as applied.
fn eq_summary(t: &TrackReport) -> String {
    let curve = t.correction.curve_scaled(t.finalize.correction_scale);
    if curve.iter().all(|c| c.abs() < 0.005) {
        return "none".to_owned();
    }
    let points: Vec<String> = BAND_CENTRES_HZ
        .iter()
        .zip(&curve)
        .skip(2)
        .step_by(3)
        .map(|(f, c)| {
            let at = if *f >= 1000.0 { format!("{} kHz", f / 1000.0) } else { format!("{f} Hz") };
            format!("{at} {c:+.1}")
        })
        .collect();
    format!("a minimum-phase FIR following the curve (dB): {}", points.join(", "))
}

/// The album pass's EQ on one track: the applied EQ's response at
/// equal loudness, the correction measured on the delivered audio, and
/// the ±cap band.
fn correction_chart(t: &TrackReport) -> String {
    let cap = t.correction.max_correction_db;
    let chart = LogChart::new(360.0, 220.0, (cap + 2.0).max(4.0));
    let rate_hz = t.master.sample_rate_hz;
    let curve = t.correction.curve_scaled(t.finalize.correction_scale);
    let grid = check_grid_hz();
    let applied = equal_loudness_response_db(&curve, &t.correction.master_balance_db, &grid, rate_hz);
    let mut svg = chart.open("the album pass's correction");
    let (top, bottom) = (chart.y(cap), chart.y(-cap));
    svg.push_str(&format!(
        "<rect x=\"{}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" class=\"cap\"/>",
        LogChart::LEFT,
        chart.width - LogChart::LEFT - 6.0,
        bottom - top
    ));
    svg.push_str(&chart.polyline(&grid, &applied, "applied", ""));
    let realised = realised_correction_db(&t.correction.master_balance_db, delivered(t));
    for (f, r) in BAND_CENTRES_HZ.iter().zip(&realised) {
        if let Some(r) = r {
            svg.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" class=\"realised\"/>",
                chart.x(*f),
                chart.y(*r)
            ));
        }
    }
    svg.push_str("</svg>");
    format!(
        "<figure>{svg}<figcaption>Correction (dB at equal loudness): applied EQ <span class=\"key applied-key\"></span>, measured on the delivered file <span class=\"key realised-key\"></span>, ±{cap:.1} dB cap shaded</figcaption></figure>"
    )
}

/// Short-term loudness over time, master and delivered.
fn short_term_chart(t: &TrackReport) -> String {
    let (width, height) = (740.0, 160.0);
    let d = delivered(t);
    let series = [(&t.master.short_term_lufs, "before"), (&d.short_term_lufs, "after")];
    let longest = series.iter().map(|(s, _)| s.len()).max().unwrap_or(0).max(2);
    let (low, high) = (-40.0f64, -4.0f64);
    let x = |i: usize| 40.0 + i as f64 / (longest - 1) as f64 * (width - 50.0);
    let y = |lufs: f64| 6.0 + (high - lufs.clamp(low, high)) / (high - low) * (height - 30.0);
    let mut svg = format!(
        "<svg viewBox=\"0 0 {width} {height}\" width=\"{width}\" role=\"img\" aria-label=\"short-term loudness\">"
    );
    for lufs in [-36.0, -24.0, -12.0] {
        svg.push_str(&format!(
            "<line x1=\"40\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" class=\"grid\"/><text x=\"20\" y=\"{2:.1}\" class=\"tick\">{lufs}</text>",
            y(lufs),
            width - 10.0,
            y(lufs) + 3.0
        ));
    }
    let seconds = longest as f64 / 10.0;
    for s in (0..=seconds as usize).step_by(if seconds > 120.0 { 60 } else { 10 }) {
        let xs = x(s * 10);
        svg.push_str(&format!("<text x=\"{xs:.1}\" y=\"{}\" class=\"tick\">{s} s</text>", height - 6.0));
    }
    for (values, class) in series {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .filter(|(_, v)| f64::from(**v) > low - 20.0)
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(f64::from(*v))))
            .collect();
        svg.push_str(&format!("<polyline points=\"{}\" class=\"st-{class}\"/>", points.join(" ")));
    }
    svg.push_str("</svg>");
    format!(
        "<figure>{svg}<figcaption>Short-term loudness (LUFS, 3 s) over time: master <span class=\"key before\"></span>, delivered <span class=\"key after\"></span></figcaption></figure>"
    )
}

const PALETTE: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:900px;color:#222}h1{margin-bottom:0}.sub{color:#666}table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}.hash{font-family:monospace;font-size:11px}.grid{stroke:#eee}.tick{font-size:10px;fill:#888;text-anchor:middle}.label{font-size:12px}.before{fill:#bbb}.after{fill:#1f77b4}.target{stroke:#d62728;stroke-width:2}.reference{fill:none;stroke:#999;stroke-width:5;opacity:.6}.track-before{fill:none;stroke-width:1.2;stroke-dasharray:4 3;opacity:.7}.track-after{fill:none;stroke-width:1.8}.key{display:inline-block;width:12px;height:10px;margin:0 4px 0 12px}.key.target{background:#d62728}.key.before{background:#bbb}.key.after{background:#1f77b4}.track{border-top:1px solid #ddd;margin-top:1.5em}.charts{display:flex;gap:12px;flex-wrap:wrap}figure{margin:0.5em 0}figcaption{font-size:12px;color:#666;max-width:360px}.zero{stroke:#bbb}.cap{fill:#2ca02c;opacity:.12}.applied{fill:none;stroke:#2ca02c;stroke-width:2}.realised{fill:#d62728}.key.applied-key{background:#2ca02c}.key.realised-key{background:#d62728;border-radius:50%}.key.reference-key{background:#999}.st-before{fill:none;stroke:#bbb;stroke-width:1.5}.st-after{fill:none;stroke:#1f77b4;stroke-width:1.5}.warnings{color:#a33}td.over{color:#d62728;font-weight:600}";
