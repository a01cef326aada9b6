//! The album manifest, version 1, as typed Rust.
//!
//! Field names, defaults and meanings follow `spec/manifest.md` exactly; every
//! struct denies unknown fields so that a typo is an error, never ignored.
//! Ranges and cross-references are checked afterwards by
//! [`super::validate`], which reports every problem in one run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The blocks that configure one processor are that processor's own
/// settings types, defined (with their defaults) beside it in [`crate::dsp`].
pub use crate::dsp::{
    biquad::Filter, biquad::FilterType, compressor::Detector, compressor::Settings as Compressor,
    delay::Settings as Delay, dither::Dither, reverb::Settings as Reverb, saturation::Settings as Saturation,
    stereo::Settings as Stereo,
};

/// One album: where its stems are, how each song is mixed and mastered, how
/// the album is matched and what is delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always 1 for this version of the contract.
    pub version: u32,
    pub album: Album,
    /// Where stem paths start: a folder relative to the manifest, or
    /// `s3://bucket/prefix/`. Default: the manifest's folder.
    #[serde(default)]
    pub source: Option<String>,
    /// Where everything is written: a folder relative to the manifest or
    /// `s3://bucket/prefix/`. Default: `masters/` beside the manifest.
    #[serde(default)]
    pub output: Option<String>,
    #[serde(default)]
    pub mix: MixSettings,
    #[serde(default)]
    pub master: MasterChain,
    #[serde(default)]
    pub matching: Matching,
    /// Default: one 24-bit WAV at `album.sample_rate` named `master`
    /// (see [`Manifest::effective_deliverables`]).
    #[serde(default)]
    pub deliverables: Option<Vec<Deliverable>>,
    pub tracks: Vec<Track>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Album {
    pub title: String,
    pub artist: String,
    #[serde(default)]
    pub label: Option<String>,
    /// 12 (UPC-A) or 13 (EAN-13) digits with a verified check digit.
    #[serde(default)]
    pub upc: Option<String>,
    /// Working rate of the mix and master stages.
    #[serde(default = "default_sample_rate")]
    pub sample_rate: u32,
}

fn default_sample_rate() -> u32 {
    44_100
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixSettings {
    /// The mix's sample peak is set to this level by gain alone (-24..0).
    #[serde(default = "default_headroom_dbfs")]
    pub headroom_dbfs: f64,
    /// Centre attenuation of mono stems: 0, -3, -4.5 or -6.
    #[serde(default = "default_pan_law_db")]
    pub pan_law_db: f64,
}

fn default_headroom_dbfs() -> f64 {
    -6.0
}
fn default_pan_law_db() -> f64 {
    -3.0
}

impl Default for MixSettings {
    fn default() -> Self {
        Self { headroom_dbfs: default_headroom_dbfs(), pan_law_db: default_pan_law_db() }
    }
}

/// One song of the album.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Track {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub isrc: Option<String>,
    /// The silence before this track on a disc (`ddp` deliverables), in
    /// seconds (0–10, default 2; 0 joins it to the previous track without
    /// a gap). The first track's is the disc's 2-second pregap whatever
    /// this says.
    #[serde(default)]
    pub gap_s: Option<f64>,
    /// Loudness relative to the album target (-12..+3).
    #[serde(default)]
    pub loudness_offset_lu: f64,
    #[serde(default)]
    pub fade_in_s: f64,
    #[serde(default)]
    pub fade_out_s: f64,
    /// Silence or count-in cut before mixing.
    #[serde(default)]
    pub trim_start_s: f64,
    /// An already mixed stereo file: the mix stage is skipped.
    #[serde(default)]
    pub mix_file: Option<String>,
    /// Required unless `mix_file` is given (then it must be absent).
    #[serde(default)]
    pub stems: Option<Vec<Stem>>,
    /// Shared effect buses that stems send to, by name.
    #[serde(default)]
    pub returns: Option<BTreeMap<String, Return>>,
    /// Per-block overrides of the album-wide `master` chain.
    #[serde(default)]
    pub master: Option<MasterChain>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stem {
    pub name: String,
    pub file: String,
    /// -60..+24
    #[serde(default)]
    pub gain_db: f64,
    /// -1 (left) .. +1 (right); balance on a stereo stem.
    #[serde(default)]
    pub pan: f64,
    #[serde(default)]
    pub mute: bool,
    #[serde(default)]
    pub polarity_invert: bool,
    /// Start of the stem on the song's timeline.
    #[serde(default)]
    pub offset_s: f64,
    #[serde(default)]
    pub eq: Vec<Filter>,
    #[serde(default)]
    pub compressor: Option<Compressor>,
    /// Send level in dB to a return of this track, after gain and
    /// automation, before pan.
    #[serde(default)]
    pub sends: BTreeMap<String, f64>,
    #[serde(default)]
    pub automation: Automation,
}

/// Breakpoints `[time_s, value]` on the song's timeline, linear between
/// points and held outside them. An automated parameter ignores its static
/// value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Automation {
    #[serde(default)]
    pub gain_db: Option<Vec<[f64; 2]>>,
    #[serde(default)]
    pub pan: Option<Vec<[f64; 2]>>,
}

/// A shared effect bus: exactly one of `reverb` or `delay`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Return {
    #[serde(default)]
    pub reverb: Option<Reverb>,
    #[serde(default)]
    pub delay: Option<Delay>,
    #[serde(default)]
    pub eq: Vec<Filter>,
    #[serde(default)]
    pub gain_db: f64,
}

/// The per-track mastering chain: `eq` → `compressor` → `saturation` →
/// `stereo` → `limiter`. Blocks are off unless present, except the limiter.
/// A track's block replaces the album-wide block of the same name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterChain {
    #[serde(default)]
    pub eq: Option<Vec<Filter>>,
    #[serde(default)]
    pub compressor: Option<Compressor>,
    #[serde(default)]
    pub saturation: Option<Saturation>,
    #[serde(default)]
    pub stereo: Option<Stereo>,
    #[serde(default)]
    pub limiter: Option<Limiter>,
}

impl MasterChain {
    /// The chain a track is mastered with: its own blocks where it has them,
    /// the album-wide ones elsewhere, and the limiter always present.
    pub fn for_track(album: &MasterChain, track: Option<&MasterChain>) -> MasterChain {
        let own = track.cloned().unwrap_or_default();
        MasterChain {
            eq: own.eq.or_else(|| album.eq.clone()),
            compressor: own.compressor.or_else(|| album.compressor.clone()),
            saturation: own.saturation.or_else(|| album.saturation.clone()),
            stereo: own.stereo.or_else(|| album.stereo.clone()),
            limiter: Some(own.limiter.or_else(|| album.limiter.clone()).unwrap_or_default()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limiter {
    /// 1..1000
    #[serde(default = "default_limiter_release_ms")]
    pub release_ms: f64,
    /// 0.1..10
    #[serde(default = "default_lookahead_ms")]
    pub lookahead_ms: f64,
}

fn default_limiter_release_ms() -> f64 {
    60.0
}
fn default_lookahead_ms() -> f64 {
    1.5
}

impl Default for Limiter {
    fn default() -> Self {
        Self { release_ms: default_limiter_release_ms(), lookahead_ms: default_lookahead_ms() }
    }
}

/// The album pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matching {
    #[serde(default)]
    pub loudness: LoudnessMatching,
    /// The ceiling of every deliverable (-9..0), measured 4× oversampled.
    #[serde(default = "default_true_peak_dbtp")]
    pub true_peak_dbtp: f64,
    #[serde(default)]
    pub tone: ToneMatching,
    #[serde(default)]
    pub warmth: WarmthMatching,
    /// A track needing more limiting than this is delivered quieter (0..12).
    #[serde(default = "default_max_limiter_gain_reduction_db")]
    pub max_limiter_gain_reduction_db: f64,
    /// Lossy codecs every streaming deliverable is encoded and decoded
    /// through, its decoded true peak held at `codec_ceiling_dbtp` (new in
    /// 1.x; empty: no check).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codec_check: Vec<CodecSpec>,
    /// The most a streaming deliverable may read once decoded from any
    /// codec of `codec_check` (-9..0). Default: -1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec_ceiling_dbtp: Option<f64>,
}

impl Matching {
    pub fn codec_ceiling_dbtp(&self) -> f64 {
        self.codec_ceiling_dbtp.unwrap_or(-1.0)
    }
}

/// A lossy codec the stores encode with, at a bitrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodecSpec {
    pub codec: Codec,
    /// Default: 256 for AAC, 160 for Opus.
    #[serde(default)]
    pub bitrate_kbps: Option<u32>,
}

impl CodecSpec {
    pub fn bitrate_kbps(&self) -> u32 {
        self.bitrate_kbps.unwrap_or(match self.codec {
            Codec::Aac => 256,
            Codec::Opus => 160,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Codec {
    /// AAC-LC (Apple Music, YouTube Music, Tidal's lossy tiers).
    Aac,
    /// Opus at 48 kHz (Spotify, YouTube).
    Opus,
}

impl Codec {
    pub fn name(self) -> &'static str {
        match self {
            Codec::Aac => "AAC-LC",
            Codec::Opus => "Opus",
        }
    }
}

fn default_true_peak_dbtp() -> f64 {
    -1.0
}
fn default_max_limiter_gain_reduction_db() -> f64 {
    4.0
}

impl Default for Matching {
    fn default() -> Self {
        Self {
            loudness: LoudnessMatching::default(),
            true_peak_dbtp: default_true_peak_dbtp(),
            tone: ToneMatching::default(),
            warmth: WarmthMatching::default(),
            max_limiter_gain_reduction_db: default_max_limiter_gain_reduction_db(),
            codec_check: Vec::new(),
            codec_ceiling_dbtp: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoudnessMode {
    /// Every track to the target plus its offset.
    Track,
    /// The whole album to the target; tracks keep their relative levels.
    Album,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoudnessMatching {
    /// Integrated loudness per BS.1770 (-30..-5).
    #[serde(default = "default_target_lufs")]
    pub target_lufs: f64,
    #[serde(default = "default_loudness_mode")]
    pub mode: LoudnessMode,
}

fn default_target_lufs() -> f64 {
    -14.0
}
fn default_loudness_mode() -> LoudnessMode {
    LoudnessMode::Track
}

impl Default for LoudnessMatching {
    fn default() -> Self {
        Self { target_lufs: default_target_lufs(), mode: default_loudness_mode() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToneMatching {
    /// `album`, `track:<id>` or `file:<path>`; see [`ToneReference`].
    #[serde(default = "default_tone_reference")]
    pub reference: String,
    /// 0..1 share of the measured difference corrected.
    #[serde(default = "default_strength")]
    pub strength: f64,
    /// Per band, 0..12.
    #[serde(default = "default_max_correction_db")]
    pub max_correction_db: f64,
}

fn default_tone_reference() -> String {
    "album".to_owned()
}
fn default_strength() -> f64 {
    0.7
}
fn default_max_correction_db() -> f64 {
    4.0
}

impl Default for ToneMatching {
    fn default() -> Self {
        Self {
            reference: default_tone_reference(),
            strength: default_strength(),
            max_correction_db: default_max_correction_db(),
        }
    }
}

/// What the album's tone is matched toward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum ToneReference {
    /// The album's average balance.
    Album,
    /// One track of the album, by id.
    Track(String),
    /// An external reference recording, relative to `source`.
    File(String),
}

impl ToneReference {
    /// Parses the manifest's `tone.reference` string.
    pub fn parse(text: &str) -> Result<ToneReference, String> {
        if text == "album" {
            return Ok(ToneReference::Album);
        }
        if let Some(id) = text.strip_prefix("track:") {
            return Ok(ToneReference::Track(id.to_owned()));
        }
        if let Some(path) = text.strip_prefix("file:") {
            if path.is_empty() {
                return Err("`file:` needs a path, e.g. file:refs/reference.wav".to_owned());
            }
            return Ok(ToneReference::File(path.to_owned()));
        }
        Err(format!("expected `album`, `track:<id>` or `file:<path>`, found `{text}`"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmthMatching {
    /// 0..1
    #[serde(default = "default_strength")]
    pub strength: f64,
}

impl Default for WarmthMatching {
    fn default() -> Self {
        Self { strength: default_strength() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioFormat {
    Wav,
    Flac,
    /// The album as one CD for the pressing plant: a DDP 2.0 fileset, and
    /// a CUE sheet beside one WAV of the same samples (44.1 kHz, 16-bit).
    /// Each track is also kept as a 16-bit WAV under `tracks/`.
    Ddp,
}

impl AudioFormat {
    pub fn extension(self) -> &'static str {
        match self {
            AudioFormat::Wav | AudioFormat::Ddp => "wav",
            AudioFormat::Flac => "flac",
        }
    }
}

/// One set of delivered files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deliverable {
    /// Unique; names the output folder.
    pub name: String,
    #[serde(default = "default_format")]
    pub format: AudioFormat,
    /// Default: `album.sample_rate`.
    #[serde(default)]
    pub sample_rate: Option<u32>,
    /// 16, 24 or 32 (32 = float, WAV only).
    #[serde(default = "default_bit_depth")]
    pub bit_depth: u32,
    /// Default: `tpdf` below 24 bits, `none` otherwise.
    #[serde(default)]
    pub dither: Option<Dither>,
    /// Sent to the streaming stores, so checked through
    /// `matching.codec_check`. Default: true, except for `ddp`.
    #[serde(default)]
    pub streaming: Option<bool>,
}

fn default_format() -> AudioFormat {
    AudioFormat::Wav
}
fn default_bit_depth() -> u32 {
    24
}

impl Deliverable {
    pub fn streaming(&self) -> bool {
        self.streaming.unwrap_or(self.format != AudioFormat::Ddp)
    }
    pub fn sample_rate(&self, album: &Album) -> u32 {
        self.sample_rate.unwrap_or(album.sample_rate)
    }
    pub fn dither(&self) -> Dither {
        self.dither.unwrap_or(if self.bit_depth < 24 { Dither::Tpdf } else { Dither::None })
    }
}

impl Manifest {
    /// The deliverables as written, or the default single 24-bit WAV at the
    /// album's rate named `master`.
    /// Where track `track`'s rendered mix goes, under the output.
    pub fn mix_path(&self, track: usize) -> String {
        format!("mix/{}.wav", self.tracks[track].id)
    }

    /// Where track `track`'s master goes, under the output.
    pub fn master_path(&self, track: usize) -> String {
        format!("master/{}.wav", self.tracks[track].id)
    }

    /// Where track `track`'s file of `deliverable` goes, under the output.
    pub fn deliverable_path(&self, track: usize, deliverable: &Deliverable) -> String {
        let folder = match deliverable.format {
            AudioFormat::Ddp => format!("{}/tracks", deliverable.name),
            AudioFormat::Wav | AudioFormat::Flac => deliverable.name.clone(),
        };
        format!("{folder}/{:02}-{}.{}", track + 1, self.tracks[track].id, deliverable.format.extension())
    }

    pub fn effective_deliverables(&self) -> Vec<Deliverable> {
        match &self.deliverables {
            Some(list) => list.clone(),
            None => vec![Deliverable {
                name: "master".to_owned(),
                format: AudioFormat::Wav,
                sample_rate: Some(self.album.sample_rate),
                bit_depth: 24,
                dither: None,
                streaming: None,
            }],
        }
    }

    /// The tone reference, parsed (validation guarantees it parses).
    pub fn tone_reference(&self) -> ToneReference {
        ToneReference::parse(&self.matching.tone.reference).unwrap_or(ToneReference::Album)
    }
}
