//! `lacquer analyze`: loudness, peaks, range, tone, warmth and width of any
//! audio file.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use lacquer_pipelines::analysis::{Analysis, Analyzer};
use lacquer_pipelines::decode::AudioReader;
use lacquer_pipelines::dsp::AudioBlock;
use lacquer_pipelines::manifest::StorageRoot;
use lacquer_storage::{BlockingReader, Storage};
use serde::Serialize;

use lacquer_runtime::stores::{S3Options, Stores};

const BLOCK_FRAMES: usize = 8192;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Audio files: local paths or s3://bucket/key URLs (WAV, FLAC, AIFF,
    /// MP3, OGG Vorbis, ALAC; mono or stereo)
    #[arg(required = true)]
    files: Vec<String>,
    /// Print JSON, including the 1/3-octave spectrum and the short-term
    /// loudness series
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Measured {
    file: String,
    #[serde(flatten)]
    analysis: Analysis,
}

#[derive(Debug, Serialize)]
struct Failed {
    file: String,
    error: String,
}

pub async fn run(args: Args, s3: S3Options) -> anyhow::Result<ExitCode> {
    let stores = Stores::new(s3);
    let mut measured = Vec::new();
    let mut failed = Vec::new();
    for file in &args.files {
        match analyze_one(&stores, file).await {
            Ok(analysis) => measured.push(Measured { file: file.clone(), analysis }),
            Err(error) => failed.push(Failed { file: file.clone(), error }),
        }
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &serde_json::json!({ "files": measured, "errors": failed }))?;
        writeln!(out)?;
    } else {
        print_table(&mut out, &measured)?;
        for failure in &failed {
            eprintln!("{}: {}", failure.file, failure.error);
        }
    }
    Ok(if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Splits a path or URL into the root it lives under and its key.
fn locate(file: &str) -> Result<(StorageRoot, String), String> {
    if file.starts_with("s3://") {
        let object = StorageRoot::Local { dir: ".".into() }.object(file)?;
        return Ok((object.root, object.key));
    }
    let path = std::path::absolute(file).map_err(|e| format!("cannot resolve the path: {e}"))?;
    let name = path.file_name().ok_or("not a file name")?.to_string_lossy().into_owned();
    let dir = path.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    Ok((StorageRoot::Local { dir }, name))
}

async fn analyze_one(stores: &Stores, file: &str) -> Result<Analysis, String> {
    let (root, key) = locate(file)?;
    let storage: Arc<dyn Storage> = stores.backend(&root).await;
    let reader = BlockingReader::open(storage, &key).await.map_err(|e| e.to_string())?;
    let extension = key.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase());
    tokio::task::spawn_blocking(move || {
        let length = reader.size_bytes();
        let mut audio = AudioReader::open(reader, length, extension.as_deref()).map_err(|e| e.to_string())?;
        let info = audio.info().clone();
        let mut analyzer = Analyzer::new(info.sample_rate_hz, info.channels).map_err(|e| e.to_string())?;
        let mut block = AudioBlock::new(info.channels, BLOCK_FRAMES);
        while audio.read(&mut block, BLOCK_FRAMES).map_err(|e| e.to_string())? > 0 {
            analyzer.add(&block).map_err(|e| e.to_string())?;
        }
        analyzer.finish().map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("analysis stopped: {e}"))?
}

fn print_table(out: &mut impl Write, measured: &[Measured]) -> std::io::Result<()> {
    if measured.is_empty() {
        return Ok(());
    }
    let width = measured.iter().map(|m| m.file.len()).max().unwrap_or(4).max(4);
    writeln!(
        out,
        "{:<width$}  {:>7}  {:>9}  {:>7}  {:>7}  {:>6}  {:>9}  {:>6}  {:>8}  {:>9}  {:>7}",
        "file", "length", "rate/ch", "LUFS", "LRA LU", "dBTP", "dBTP 1770", "PLR dB", "warmth", "tilt/oct", "width"
    )?;
    for m in measured {
        let a = &m.analysis;
        let seconds = a.frames as f64 / f64::from(a.sample_rate_hz);
        let optional = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-inf".to_owned());
        let width_db = if a.channels == 1 { "mono".to_owned() } else { format!("{:.1}", a.width_db) };
        writeln!(
            out,
            "{:<width$}  {:>6.1}s  {:>6}/{:<2}  {:>7}  {:>7.1}  {:>6.2}  {:>9.2}  {:>6}  {:>8.1}  {:>9.2}  {:>7}",
            m.file,
            seconds,
            a.sample_rate_hz,
            a.channels,
            optional(a.integrated_lufs),
            a.loudness_range_lu,
            a.true_peak_dbtp,
            a.true_peak_bs1770_dbtp,
            optional(a.plr_db),
            a.warmth_db,
            a.tilt_db_per_octave,
            width_db
        )?;
    }
    Ok(())
}
