//! The album report: every figure before and after the album pass, the
//! corrections applied, warnings, and a content hash of every output —
//! as JSON for scripts and as one self-contained HTML page (inline SVG, no
//! network) for a mastering engineer.

use serde::{Deserialize, Serialize};

use crate::album::{Correction, balance_db, is_near_silent, tonal_distance_db};
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

/// Tonal distance of an analysis to the reference balance.
pub fn distance_to(reference_balance_db: &[f64], analysis: &Analysis) -> f64 {
    tonal_distance_db(&balance_db(analysis), reference_balance_db)
}

impl AlbumReport {
    pub fn to_html(&self) -> String {
        let mut html = String::new();
        let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
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
        html.push_str("</table><h2>Corrections</h2><table><tr><th>track</th><th>filters</th></tr>");
        for t in &self.tracks {
            let filters: Vec<String> = t
                .correction
                .filters
                .iter()
                .map(|f| format!("{} {:.0} Hz {:+.2} dB", f.kind.name(), f.freq_hz, f.gain_db.unwrap_or(0.0)))
                .collect();
            html.push_str(&format!("<tr><td>{}</td><td>{}</td></tr>", esc(&t.title), esc(&filters.join(", "))));
        }
        html.push_str("</table><h2>Warnings</h2>");
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

const PALETTE: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:900px;color:#222}h1{margin-bottom:0}.sub{color:#666}table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}.hash{font-family:monospace;font-size:11px}.grid{stroke:#eee}.tick{font-size:10px;fill:#888;text-anchor:middle}.label{font-size:12px}.before{fill:#bbb}.after{fill:#1f77b4}.target{stroke:#d62728;stroke-width:2}.reference{fill:none;stroke:#999;stroke-width:5;opacity:.6}.track-before{fill:none;stroke-width:1.2;stroke-dasharray:4 3;opacity:.7}.track-after{fill:none;stroke-width:1.8}.key{display:inline-block;width:12px;height:10px;margin:0 4px 0 12px}.key.target{background:#d62728}.key.before{background:#bbb}.key.after{background:#1f77b4}";
