//! `lacquer validate`: the manifest and every file it names, checked.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use lacquer_pipelines::manifest::{self, InputRole, ManifestError, Problem, StorageRoot, ValidManifest};
use serde::Serialize;

use lacquer_runtime::stores::{ProbeError, S3Options, Stores};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The album manifest (YAML, version 1)
    manifest: PathBuf,
    /// Where outputs would be written (overrides the manifest's `output`)
    #[arg(long, short)]
    output: Option<String>,
    /// Print the summary or the problems as JSON, for scripts
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args, s3: S3Options) -> anyhow::Result<ExitCode> {
    let outcome = check_manifest(&args.manifest, args.output.as_deref(), s3).await?;
    let mut stdout = std::io::stdout().lock();
    match outcome {
        Ok(valid) => {
            let summary = AlbumSummary::new(&valid);
            if args.json {
                serde_json::to_writer_pretty(
                    &mut stdout,
                    &Verdict { valid: true, album: Some(&summary), problems: &[] },
                )?;
                writeln!(stdout)?;
            } else {
                summary.print(&mut stdout)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            drop(stdout);
            print_problems(&args.manifest, &error, args.json)?;
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Every problem of a manifest: as JSON on stdout, or one per line on stderr.
pub fn print_problems(manifest: &Path, error: &ManifestError, json: bool) -> anyhow::Result<()> {
    if json {
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut stdout, &Verdict { valid: false, album: None, problems: &error.problems })?;
        writeln!(stdout)?;
    } else {
        let count = error.problems.len();
        eprintln!("{}: {count} problem{}", manifest.display(), if count == 1 { "" } else { "s" });
        for problem in &error.problems {
            eprintln!("  {problem}");
        }
    }
    Ok(())
}

/// Reads a manifest file: a regular file (a named pipe would block) of at
/// most [`manifest::MAX_MANIFEST_BYTES`], in UTF-8. The outer error is for
/// a file that cannot be read at all; the inner one is a problem with the
/// manifest, said like the others.
pub fn read_manifest(path: &Path) -> anyhow::Result<Result<String, ManifestError>> {
    let cannot_read = || format!("cannot read the manifest {}", path.display());
    let metadata = std::fs::metadata(path).with_context(cannot_read)?;
    if !metadata.is_file() {
        let what = if metadata.is_dir() { "a folder" } else { "not a regular file" };
        anyhow::bail!("cannot read the manifest {}: it is {what}", path.display());
    }
    if let Err(error) = manifest::check_size(usize::try_from(metadata.len()).unwrap_or(usize::MAX)) {
        return Ok(Err(error));
    }
    let bytes = std::fs::read(path).with_context(cannot_read)?;
    Ok(manifest::manifest_text(&bytes).map(str::to_owned))
}

/// Parses, checks and probes a local manifest. The outer error is for a
/// manifest that cannot be read at all.
pub async fn check_manifest(
    path: &Path,
    output_override: Option<&str>,
    s3: S3Options,
) -> anyhow::Result<Result<ValidManifest, ManifestError>> {
    let text = match read_manifest(path)? {
        Ok(text) => text,
        Err(error) => return Ok(Err(error)),
    };
    let absolute = std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    let base = StorageRoot::Local { dir: absolute.parent().map(Path::to_path_buf).unwrap_or_default() };
    let checked = match manifest::check(&text, &base, output_override) {
        Ok(checked) => checked,
        Err(error) => return Ok(Err(error)),
    };
    let mut probes = Vec::with_capacity(checked.inputs.len());
    for (input, probe) in checked.inputs.iter().zip(Stores::new(s3).probe_all(&checked.inputs).await) {
        probes.push(match probe {
            Ok(info) => Ok(info),
            // Storage that cannot be reached says nothing about the album.
            Err(ProbeError::Unreachable(detail)) => {
                anyhow::bail!(
                    "cannot check {} ({}): object storage is unreachable: {detail}",
                    input.field,
                    input.object
                )
            }
            Err(ProbeError::Bad(reason)) => Err(reason),
        });
    }
    Ok(checked.finish(probes))
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
struct Verdict<'a> {
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    album: Option<&'a AlbumSummary>,
    problems: &'a [Problem],
}

#[derive(Debug, Serialize)]
struct AlbumSummary {
    title: String,
    artist: String,
    label: Option<String>,
    upc: Option<String>,
    sample_rate_hz: u32,
    source: String,
    output: String,
    tracks: Vec<TrackSummary>,
    deliverables: Vec<DeliverableSummary>,
}

#[derive(Debug, Serialize)]
struct TrackSummary {
    position: usize,
    id: String,
    title: String,
    isrc: Option<String>,
    /// From 0 to the latest stem end, after trimming; return tails excluded.
    duration_s: Option<f64>,
    loudness_offset_lu: f64,
    mix_file: Option<FileSummary>,
    stems: Vec<StemSummary>,
}

#[derive(Debug, Serialize)]
struct StemSummary {
    name: String,
    #[serde(flatten)]
    file: FileSummary,
    gain_db: f64,
    mute: bool,
    sends: Vec<String>,
}

#[derive(Debug, Serialize)]
struct FileSummary {
    file: String,
    location: String,
    container: String,
    codec: String,
    channels: usize,
    sample_rate_hz: u32,
    bits_per_sample: Option<u32>,
    duration_s: Option<f64>,
    /// Converted to the album's working rate before mixing.
    resampled: bool,
}

#[derive(Debug, Serialize)]
struct DeliverableSummary {
    name: String,
    format: String,
    sample_rate_hz: u32,
    bit_depth: u32,
    dither: String,
}

impl AlbumSummary {
    fn new(valid: &ValidManifest) -> Self {
        let m = &valid.manifest;
        let working_rate_hz = m.album.sample_rate;
        let file_summary = |role: InputRole| {
            valid.input(&role).map(|probed| FileSummary {
                file: probed.input.object.key.clone(),
                location: probed.input.object.to_string(),
                container: probed.info.container.clone(),
                codec: probed.info.codec.clone(),
                channels: probed.info.channels,
                sample_rate_hz: probed.info.sample_rate_hz,
                bits_per_sample: probed.info.bits_per_sample,
                duration_s: probed.info.duration_s(),
                resampled: probed.info.sample_rate_hz != working_rate_hz,
            })
        };
        let tracks = m
            .tracks
            .iter()
            .enumerate()
            .map(|(track_index, track)| {
                let stems: Vec<StemSummary> = track
                    .stems
                    .iter()
                    .flatten()
                    .enumerate()
                    .filter_map(|(stem_index, stem)| {
                        Some(StemSummary {
                            name: stem.name.clone(),
                            file: file_summary(InputRole::Stem { track: track_index, stem: stem_index })?,
                            gain_db: stem.gain_db,
                            mute: stem.mute,
                            sends: stem.sends.keys().cloned().collect(),
                        })
                    })
                    .collect();
                let mix_file = file_summary(InputRole::MixFile { track: track_index });
                let stem_ends = track.stems.iter().flatten().zip(&stems).map(|(stem, summary)| {
                    summary.file.duration_s.map(|duration_s| stem.offset_s + duration_s - track.trim_start_s)
                });
                let duration_s = match &mix_file {
                    Some(file) => file.duration_s.map(|d| d - track.trim_start_s),
                    None => stem_ends.collect::<Option<Vec<f64>>>().map(|ends| ends.into_iter().fold(0.0, f64::max)),
                };
                TrackSummary {
                    position: track_index + 1,
                    id: track.id.clone(),
                    title: track.title.clone(),
                    isrc: track.isrc.clone(),
                    duration_s: duration_s.map(|d| d.max(0.0)),
                    loudness_offset_lu: track.loudness_offset_lu,
                    mix_file,
                    stems,
                }
            })
            .collect();
        let deliverables = m
            .effective_deliverables()
            .iter()
            .map(|d| DeliverableSummary {
                name: d.name.clone(),
                format: d.format.extension().to_owned(),
                sample_rate_hz: d.sample_rate(&m.album),
                bit_depth: d.bit_depth,
                dither: format!("{:?}", d.dither()).to_lowercase(),
            })
            .collect();
        AlbumSummary {
            title: m.album.title.clone(),
            artist: m.album.artist.clone(),
            label: m.album.label.clone(),
            upc: m.album.upc.clone(),
            sample_rate_hz: working_rate_hz,
            source: valid.source.to_string(),
            output: valid.output.to_string(),
            tracks,
            deliverables,
        }
    }

    fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        let stem_count: usize = self.tracks.iter().map(|t| t.stems.len()).sum();
        let total_s: f64 = self.tracks.iter().filter_map(|t| t.duration_s).sum();
        writeln!(out, "{} — {}", self.title, self.artist)?;
        if let Some(label) = &self.label {
            writeln!(out, "label   {label}{}", self.upc.as_ref().map(|u| format!("  (UPC {u})")).unwrap_or_default())?;
        }
        writeln!(out, "source  {}", self.source)?;
        writeln!(out, "output  {}", self.output)?;
        writeln!(
            out,
            "{} track{}, {stem_count} stem{}, {} of audio, mixed and mastered at {} Hz",
            self.tracks.len(),
            plural(self.tracks.len()),
            plural(stem_count),
            clock(total_s),
            self.sample_rate_hz
        )?;
        for track in &self.tracks {
            writeln!(out)?;
            let duration = track.duration_s.map(clock).unwrap_or_else(|| "?".to_owned());
            let isrc = track.isrc.as_ref().map(|i| format!("  ISRC {i}")).unwrap_or_default();
            let offset = if track.loudness_offset_lu != 0.0 {
                format!("  loudness {:+} LU", track.loudness_offset_lu)
            } else {
                String::new()
            };
            writeln!(out, "{:>2}. {}  \"{}\"  {duration}{isrc}{offset}", track.position, track.id, track.title)?;
            if let Some(file) = &track.mix_file {
                writeln!(out, "    mix file  {}", file.describe())?;
            }
            let width = track.stems.iter().map(|s| s.name.len()).max().unwrap_or(0);
            for stem in &track.stems {
                let mut notes = format!("{:+.1} dB", stem.gain_db);
                if stem.mute {
                    notes.push_str(", muted");
                }
                if !stem.sends.is_empty() {
                    notes.push_str(&format!(", sends to {}", stem.sends.join(", ")));
                }
                writeln!(out, "    {:<width$}  {}  ({notes})", stem.name, stem.file.describe())?;
            }
        }
        writeln!(out)?;
        let resampled: Vec<&FileSummary> = self
            .tracks
            .iter()
            .flat_map(|t| t.stems.iter().map(|s| &s.file).chain(t.mix_file.as_ref()))
            .filter(|f| f.resampled)
            .collect();
        if resampled.is_empty() {
            writeln!(out, "resampling: none, every file is at {} Hz", self.sample_rate_hz)?;
        } else {
            writeln!(out, "resampling to {} Hz:", self.sample_rate_hz)?;
            for file in resampled {
                writeln!(out, "    {} ({} Hz)", file.file, file.sample_rate_hz)?;
            }
        }
        writeln!(out, "deliverables:")?;
        for d in &self.deliverables {
            let conversion = if d.sample_rate_hz != self.sample_rate_hz {
                format!(", converted from {} Hz", self.sample_rate_hz)
            } else {
                String::new()
            };
            writeln!(
                out,
                "    {:<10} {} {}-bit {} Hz, dither {}{conversion}",
                d.name, d.format, d.bit_depth, d.sample_rate_hz, d.dither
            )?;
        }
        writeln!(out, "valid")
    }
}

impl FileSummary {
    fn describe(&self) -> String {
        let channels = match self.channels {
            1 => "mono".to_owned(),
            2 => "stereo".to_owned(),
            n => format!("{n} ch"),
        };
        let bits = self.bits_per_sample.map(|b| format!(" {b}-bit")).unwrap_or_default();
        let duration = self.duration_s.map(clock).unwrap_or_else(|| "length unknown".to_owned());
        let resample = if self.resampled { ", resampled" } else { "" };
        format!("{}  {} {channels} {} Hz{bits}  {duration}{resample}", self.file, self.codec, self.sample_rate_hz)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `m:ss.s`
fn clock(seconds: f64) -> String {
    let minutes = (seconds / 60.0).floor();
    format!("{}:{:04.1}", minutes as u64, seconds - minutes * 60.0)
}
