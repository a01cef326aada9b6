//! From manifest locations to storage backends, and probing inputs through
//! them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lacquer_pipelines::decode::{self, AudioInfo};
use lacquer_pipelines::manifest::{InputFile, StorageRoot};
use lacquer_storage::{BlockingReader, LocalStorage, S3Config, S3Credentials, S3Storage, Storage, StorageError};
use tokio::sync::Semaphore;

/// How to reach S3-compatible storage; credentials come from the standard
/// AWS chain (environment, profile, web identity, instance metadata).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct S3Options {
    /// Endpoint of an S3-compatible store, e.g. http://127.0.0.1:9000
    /// (default: AWS, or AWS_ENDPOINT_URL)
    #[arg(long, env = "LACQUER_S3_ENDPOINT", global = true)]
    pub s3_endpoint: Option<String>,
    /// Region (default: the AWS chain's, else us-east-1)
    #[arg(long, env = "LACQUER_S3_REGION", global = true)]
    pub s3_region: Option<String>,
    /// Path-style addressing (http://host/bucket/key), which most
    /// S3-compatible stores need
    #[arg(long, env = "LACQUER_S3_PATH_STYLE", global = true)]
    pub s3_path_style: bool,
    /// Fixed credentials instead of the AWS chain (tests; never a flag).
    #[arg(skip)]
    pub credentials: Option<S3Credentials>,
}

/// Backends opened so far, one per root; shared by every task.
#[derive(Debug)]
pub struct Stores {
    s3: S3Options,
    open: Mutex<HashMap<StorageRoot, Arc<dyn Storage>>>,
}

impl Stores {
    pub fn new(s3: S3Options) -> Self {
        Self { s3, open: Mutex::new(HashMap::new()) }
    }

    fn opened(&self) -> std::sync::MutexGuard<'_, HashMap<StorageRoot, Arc<dyn Storage>>> {
        // The map is only ever inserted into whole: a poisoned lock is consistent.
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The backend of `root`, opened on first use.
    pub async fn backend(&self, root: &StorageRoot) -> Arc<dyn Storage> {
        if let Some(storage) = self.opened().get(root) {
            return storage.clone();
        }
        let storage: Arc<dyn Storage> = match root {
            StorageRoot::Local { dir } => Arc::new(LocalStorage::new(dir.clone())),
            StorageRoot::S3 { bucket, prefix } => {
                let mut config = S3Config::new(bucket.clone(), prefix.clone());
                config.endpoint_url = self.s3.s3_endpoint.clone();
                config.region = self.s3.s3_region.clone();
                config.force_path_style = self.s3.s3_path_style;
                config.credentials = self.s3.credentials.clone();
                Arc::new(S3Storage::connect(config).await)
            }
        };
        self.opened().entry(root.clone()).or_insert(storage).clone()
    }

    /// Probes every input, several at a time; `result[i]` is `inputs[i]`'s.
    pub async fn probe_all(&self, inputs: &[InputFile]) -> Vec<Result<AudioInfo, ProbeError>> {
        const AT_ONCE: usize = 8;
        let limit = Arc::new(Semaphore::new(AT_ONCE));
        let mut tasks = Vec::with_capacity(inputs.len());
        for input in inputs {
            let storage = self.backend(&input.object.root).await;
            let key = input.object.key.clone();
            let extension = input.object.extension();
            let limit = limit.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = limit.acquire_owned().await.map_err(|e| ProbeError::Bad(e.to_string()))?;
                probe_object(storage, key, extension).await
            }));
        }
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            results.push(task.await.unwrap_or_else(|e| Err(ProbeError::Bad(format!("probing stopped: {e}")))));
        }
        results
    }
}

/// Why an input could not be probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    /// The file is missing, not audio, or damaged: the album's problem.
    Bad(String),
    /// Storage could not be reached: says nothing about the file; try again.
    Unreachable(String),
}

impl ProbeError {
    /// The message of either kind, for a caller that reports both alike.
    pub fn into_message(self) -> String {
        match self {
            ProbeError::Bad(message) => message,
            ProbeError::Unreachable(detail) => format!("object storage was unreachable: {detail}"),
        }
    }
}

fn storage_problem(error: StorageError) -> ProbeError {
    match error {
        StorageError::NotFound { .. } => ProbeError::Bad("the file does not exist".to_owned()),
        error if error.is_unreachable() => ProbeError::Unreachable(error.to_string()),
        other => ProbeError::Bad(other.to_string()),
    }
}

async fn probe_object(
    storage: Arc<dyn Storage>,
    key: String,
    extension: Option<String>,
) -> Result<AudioInfo, ProbeError> {
    let reader = BlockingReader::open(storage.clone(), &key).await.map_err(storage_problem)?;
    let size_bytes = reader.size_bytes();
    let probed = tokio::task::spawn_blocking(move || decode::probe(reader, size_bytes, extension.as_deref()))
        .await
        .map_err(|e| ProbeError::Bad(format!("probing stopped: {e}")))?;
    match probed {
        Ok(info) => Ok(info),
        Err(error) => {
            // A read that failed half-way looks like a damaged file to the
            // decoder: ask storage again before blaming the file.
            match storage.head(&key).await {
                Err(unreachable) if unreachable.is_unreachable() => Err(storage_problem(unreachable)),
                _ => Err(ProbeError::Bad(error.to_string())),
            }
        }
    }
}
