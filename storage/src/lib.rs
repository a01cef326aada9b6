//! Object storage for lacquer: one [`Storage`] trait and two real backends,
//! the local filesystem ([`LocalStorage`], the embedded default) and
//! S3-compatible object storage ([`S3Storage`]).
//!
//! Every backend publishes writes atomically: a reader sees either no object
//! or the whole object, never a partial one. [`WriteMode::CreateNew`] makes
//! the publish conditional, so a retried task cannot replace what a finished
//! one published.
//!
//! Keys are `/`-separated paths relative to the backend's root; they never
//! start with `/` and have no empty, `.` or `..` segments.

use std::fmt;
use std::ops::Range;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

mod blocking;
mod error;
mod local;
mod s3;
#[cfg(feature = "testing")]
pub mod testing;

pub use blocking::BlockingReader;
pub use error::StorageError;
pub use local::LocalStorage;
pub use s3::{S3Config, S3Credentials, S3Storage};

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A stream of an object's bytes.
pub type ByteStream = Pin<Box<dyn AsyncRead + Send>>;

/// What a listing or a write reports about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The key relative to the backend's root.
    pub key: String,
    pub size_bytes: u64,
}

/// How a write publishes its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Replace whatever is there.
    Overwrite,
    /// Publish only if no object exists at the key yet; otherwise fail with
    /// [`StorageError::AlreadyExists`] and leave the existing object alone.
    CreateNew,
}

/// A tree of objects under one root.
#[async_trait]
pub trait Storage: Send + Sync + fmt::Debug {
    /// The full location of a key, for messages: a path or an `s3://` URL.
    fn location(&self, key: &str) -> String;

    /// Size of the object; [`StorageError::NotFound`] when there is none.
    async fn head(&self, key: &str) -> Result<ObjectMeta>;

    /// The object's bytes as a stream.
    async fn read(&self, key: &str) -> Result<ByteStream>;

    /// Bytes `range.start..range.end` of the object; the end is clamped to
    /// the object's size, and a start past the end is an error.
    async fn read_range(&self, key: &str, range: Range<u64>) -> Result<Bytes>;

    /// Writes the whole stream and publishes it atomically under `key`.
    async fn write(&self, key: &str, body: ByteStream, mode: WriteMode) -> Result<ObjectMeta>;

    /// Every object whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// Removes the object; removing a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<()>;

    /// The whole object in memory; for small objects such as manifests and
    /// reports.
    async fn read_to_bytes(&self, key: &str) -> Result<Bytes> {
        let mut stream = self.read(key).await?;
        let mut buffer = Vec::new();
        stream
            .read_to_end(&mut buffer)
            .await
            .map_err(|source| StorageError::Io { location: self.location(key), source })?;
        Ok(Bytes::from(buffer))
    }

    /// Writes bytes already in memory.
    async fn write_bytes(&self, key: &str, bytes: Bytes, mode: WriteMode) -> Result<ObjectMeta> {
        self.write(key, Box::pin(std::io::Cursor::new(bytes)), mode).await
    }
}

/// Checks that a key is a clean relative path.
pub fn check_key(key: &str) -> Result<()> {
    let reason = if key.is_empty() {
        Some("is empty")
    } else if key.starts_with('/') {
        Some("starts with `/`")
    } else if key.contains('\\') || key.contains('\0') {
        Some("contains `\\` or a NUL byte")
    } else if key.split('/').any(|segment| segment.is_empty() || segment == "." || segment == "..") {
        Some("has an empty, `.` or `..` segment")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StorageError::InvalidKey { key: key.to_owned(), reason }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::check_key;

    #[test]
    fn keys_must_be_clean_relative_paths() {
        assert!(check_key("mix/01-a.wav").is_ok());
        for bad in ["", "/abs", "a//b", "a/./b", "../x", "a/..", "a\\b"] {
            assert!(check_key(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
