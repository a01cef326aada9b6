//! For tests across the workspace: a real S3-compatible server (`s3s-fs`)
//! holding the example album, and how to reach it from this process
//! ([`AlbumStore::stores`]) or from a child process ([`AlbumStore::env`]).

use std::path::PathBuf;
use std::sync::Arc;

use lacquer_storage::S3Credentials;
use lacquer_storage::testing::{ACCESS_KEY_ID, S3Server, SECRET_ACCESS_KEY};

use lacquer_runtime::stores::{S3Options, Stores};

/// The example album's folder (`examples/album-small`).
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/album-small")
}

/// An S3-compatible server on loopback, stopped when dropped.
pub struct AlbumStore {
    pub server: S3Server,
}

impl AlbumStore {
    /// Starts the server with `buckets`, each empty.
    pub fn start(buckets: &[&str]) -> std::io::Result<Self> {
        Ok(Self { server: S3Server::start(buckets)? })
    }

    /// Copies the example album (stems and manifest) to `location`
    /// (`s3://bucket/prefix/`, the bucket started).
    pub fn put_fixture(&self, location: &str) -> std::io::Result<()> {
        let rest = location.strip_prefix("s3://").ok_or_else(|| std::io::Error::other("not an s3:// location"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        self.server.copy_in(bucket, prefix.trim_end_matches('/'), &fixture_dir())
    }

    pub fn options(&self) -> S3Options {
        S3Options {
            s3_endpoint: Some(self.server.endpoint_url()),
            s3_region: Some("us-east-1".into()),
            s3_path_style: true,
            credentials: Some(S3Credentials {
                access_key_id: ACCESS_KEY_ID.into(),
                secret_access_key: SECRET_ACCESS_KEY.into(),
                session_token: None,
            }),
        }
    }

    pub fn stores(&self) -> Arc<Stores> {
        Arc::new(Stores::new(self.options()))
    }

    /// The environment a `lacquer`, `lacquer-coordinator` or
    /// `lacquer-worker` process needs to reach the server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LACQUER_S3_ENDPOINT", self.server.endpoint_url()),
            ("LACQUER_S3_REGION", "us-east-1".into()),
            ("LACQUER_S3_PATH_STYLE", "true".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

/// Runs a leased task for real, as a worker would (for tests that drive
/// the coordinator's `Workers` service by hand): the result to complete
/// it with.
pub async fn run_leased(
    runner: &crate::run::Runner,
    assignment: &lacquer_proto::v1::Assignment,
) -> Result<String, crate::run::TaskError> {
    let (album, inputs, task) = crate::work::parse_assignment(assignment)?;
    let progress = crate::run::Progress::default();
    runner.run(&album, task, &inputs, &progress).await?.result.to_json()
}
