use thiserror::Error;

/// What went wrong talking to storage, naming the full location.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("not found: {location}")]
    NotFound { location: String },

    #[error("{location} is {what}, not a file")]
    NotAFile { location: String, what: &'static str },

    #[error("{location} leads outside its folder (to {target}): files are read only from inside it")]
    OutsideRoot { location: String, target: String },

    #[error("already exists: {location} (a finished write published it first)")]
    AlreadyExists { location: String },

    #[error("bucket `{bucket}` does not exist (at {endpoint})")]
    BucketNotFound { bucket: String, endpoint: String },

    #[error("access denied to {location}: {detail}")]
    AccessDenied { location: String, detail: String },

    #[error("the storage credentials were refused for {location}: {detail}")]
    BadCredentials { location: String, detail: String },

    #[error("cannot reach object storage at {endpoint}: {detail}")]
    Unreachable { endpoint: String, detail: String },

    #[error("invalid key `{key}`: it {reason}")]
    InvalidKey { key: String, reason: &'static str },

    #[error("range {start}.. is past the end of {location} ({size_bytes} bytes)")]
    InvalidRange { location: String, start: u64, size_bytes: u64 },

    #[error("i/o error at {location}: {source}")]
    Io {
        location: String,
        #[source]
        source: std::io::Error,
    },

    #[error("storage error at {location}: {detail}")]
    Backend { location: String, detail: String },
}

impl StorageError {
    /// Whether trying the same operation again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StorageError::Unreachable { .. } | StorageError::Backend { .. } | StorageError::Io { .. })
    }

    /// Whether storage itself could not be reached (as opposed to
    /// answering): nothing is known about the object; an outage.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StorageError::Unreachable { .. })
    }

    pub(crate) fn io(location: String, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            StorageError::NotFound { location }
        } else {
            StorageError::Io { location, source }
        }
    }
}
