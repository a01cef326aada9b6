//! What a worker reports is checked against the task it answers before it
//! counts: the result must have the stage's shape, name exactly the output
//! files that task owns (and only under the album's output), and those
//! files must be in storage at the sizes the result states. A worker token
//! is a credential for every tenant's work, so a made-up result is refused
//! here rather than failing a later task on a missing field.

use lacquer_pipelines::album::AlbumPlan;
use lacquer_pipelines::manifest::{InputRole, ValidManifest};
use lacquer_pipelines::report::{AlbumReport, OutputFile};
use lacquer_pipelines::tasks::{AlbumTasks, FinalizeResult, MasterResult, MixFile, MixResult, Stage};
use lacquer_storage::{Storage, StorageError};
use serde::de::DeserializeOwned;

use crate::job::TaskId;

/// Why a result was refused.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    /// The result is not what the task makes: the worker (or whoever holds
    /// its token) is wrong, and another attempt by a sound worker may do.
    #[error("the result of {task} was refused: {reason}")]
    Refused { task: String, reason: String },
    /// Storage could not be asked: nothing is known about the result yet.
    #[error("cannot check the result of {task}: {source}")]
    Storage {
        task: String,
        #[source]
        source: StorageError,
    },
}

/// What a result says was written: files the task owns (to be found in
/// storage at their sizes), and for the report the JSON it published.
#[derive(Debug)]
pub struct Claimed {
    pub files: Vec<OutputFile>,
    /// The report, which `report.json` under the output must hold.
    pub report: Option<AlbumReport>,
}

fn parse<T: DeserializeOwned>(json: &str) -> Result<T, String> {
    serde_json::from_str(json).map_err(|e| format!("not a result of this stage ({e})"))
}

fn expect_path(file: &OutputFile, expected: &str) -> Result<(), String> {
    if file.path != expected {
        return Err(format!("names `{}`, but this task writes `{expected}`", file.path));
    }
    if file.blake3.len() != 64 || !file.blake3.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("`{}` has no content hash", file.path));
    }
    Ok(())
}

/// Checks the shape of `json` as the result of `task` of `album`, and
/// returns the files it claims.
pub fn shape(album: &ValidManifest, task: TaskId, json: &str) -> Result<Claimed, String> {
    let tasks = AlbumTasks::new(&album.manifest);
    let tracks = album.manifest.tracks.len();
    let track = || task.track.filter(|&t| t < tracks).ok_or_else(|| "the task names no track of the album".to_owned());
    let mut report = None;
    let files = match task.stage {
        Stage::Mix => {
            let track = track()?;
            let result: MixResult = parse(json)?;
            if result.frames == 0 {
                return Err("a mix of no frames".into());
            }
            match (&result.file, album.input(&InputRole::MixFile { track })) {
                (MixFile::Rendered(file), None) => {
                    if result.report.is_none() {
                        return Err("a rendered mix without its report".into());
                    }
                    expect_path(file, &tasks.mix_key(track))?;
                    vec![file.clone()]
                }
                (MixFile::Given { key, .. }, Some(given)) => {
                    if *key != given.input.object.key {
                        return Err(format!("names `{key}`, but the track's mix file is `{}`", given.input.object));
                    }
                    Vec::new()
                }
                (MixFile::Rendered(_), Some(_)) => return Err("the track has a mix file; nothing is rendered".into()),
                (MixFile::Given { .. }, None) => return Err("the track is mixed from stems".into()),
            }
        }
        Stage::Master => {
            let track = track()?;
            let result: MasterResult = parse(json)?;
            expect_path(&result.file, &tasks.master_key(track))?;
            vec![result.file]
        }
        Stage::Finalize => {
            let track = track()?;
            let result: FinalizeResult = parse(json)?;
            let expected = tasks.deliverable_keys(track);
            if result.files.len() != expected.len() {
                return Err(format!("names {} files, but this task writes {}", result.files.len(), expected.len()));
            }
            for (file, key) in result.files.iter().zip(&expected) {
                expect_path(file, key)?;
            }
            result.files
        }
        Stage::Plan => {
            if task.track.is_some() {
                return Err("the plan is the album's, not a track's".into());
            }
            let plan: AlbumPlan = parse(json)?;
            if plan.corrections.len() != tracks {
                return Err(format!("plans {} tracks of {tracks}", plan.corrections.len()));
            }
            Vec::new()
        }
        Stage::Report => {
            if task.track.is_some() {
                return Err("the report is the album's, not a track's".into());
            }
            let parsed: AlbumReport = parse(json)?;
            if parsed.tracks.len() != tracks {
                return Err(format!("reports {} tracks of {tracks}", parsed.tracks.len()));
            }
            report = Some(parsed);
            Vec::new()
        }
    };
    Ok(Claimed { files, report })
}

/// Checks `json` as the result of `task`: its shape, then each file it
/// claims against `output` (the album's output storage).
pub async fn check(
    album: &ValidManifest,
    task: TaskId,
    task_name: &str,
    json: &str,
    output: &dyn Storage,
) -> Result<(), ResultError> {
    let refused = |reason: String| ResultError::Refused { task: task_name.to_owned(), reason };
    let storage = |source| ResultError::Storage { task: task_name.to_owned(), source };
    let claimed = shape(album, task, json).map_err(refused)?;
    for file in &claimed.files {
        match output.head(&file.path).await {
            Ok(meta) if meta.size_bytes == file.size_bytes => {}
            Ok(meta) => {
                return Err(refused(format!(
                    "`{}` is {} bytes in storage, not the {} the result states",
                    file.path, meta.size_bytes, file.size_bytes
                )));
            }
            Err(StorageError::NotFound { .. }) => {
                return Err(refused(format!("`{}` is not in storage", output.location(&file.path))));
            }
            Err(error) => return Err(storage(error)),
        }
    }
    if let Some(report) = claimed.report {
        let published = match output.read_to_bytes("report.json").await {
            Ok(bytes) => bytes,
            Err(StorageError::NotFound { .. }) => return Err(refused("report.json is not in storage".into())),
            Err(error) => return Err(storage(error)),
        };
        // Compared as reports, not as JSON text or values: the result went
        // through a JSON value on its way (f32 figures widened to f64).
        let published: AlbumReport =
            serde_json::from_slice(&published).map_err(|e| refused(format!("report.json does not parse: {e}")))?;
        if published != report {
            return Err(refused("it differs from the report.json in storage".into()));
        }
    }
    Ok(())
}
