//! The S3 backend, through `aws-sdk-s3`: AWS itself or any S3-compatible
//! store (MinIO, Ceph, Garage, ...) with a custom endpoint and path-style
//! addressing. Credentials come from the standard AWS chain (environment,
//! profile, web identity / IRSA, container and instance metadata) unless
//! given explicitly. Retries with exponential backoff are the SDK's standard
//! retry mode. Objects above a size threshold are uploaded in parts; an
//! object appears only when its upload completes, so readers never see a
//! partial object.

use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as AwsByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::{ByteStream, ObjectMeta, Result, Storage, StorageError, WriteMode, check_key};

/// S3 requires every part but the last to be at least 5 MiB.
const MIN_PART_SIZE_BYTES: usize = 5 * 1024 * 1024;

/// Explicit credentials; without them the standard AWS chain is used.
#[derive(Clone)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

/// Where and how to reach one bucket prefix.
#[derive(Debug, Clone)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix under which this backend's keys live (`""` or ending in `/`).
    pub prefix: String,
    /// A custom endpoint such as `http://127.0.0.1:9000`; default: AWS, or
    /// `AWS_ENDPOINT_URL(_S3)` from the environment.
    pub endpoint_url: Option<String>,
    /// Default: the standard chain's region, else `us-east-1`.
    pub region: Option<String>,
    /// `http://host/bucket/key` instead of `http://bucket.host/key`; most
    /// S3-compatible stores need it.
    pub force_path_style: bool,
    pub credentials: Option<S3Credentials>,
    /// Objects of this size or more are uploaded in parts.
    pub multipart_threshold_bytes: usize,
    /// Size of each uploaded part (at least 5 MiB).
    pub part_size_bytes: usize,
    /// Attempts per request, including the first, with exponential backoff.
    pub max_attempts: u32,
}

impl S3Config {
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: prefix.into(),
            endpoint_url: None,
            region: None,
            force_path_style: false,
            credentials: None,
            multipart_threshold_bytes: 16 * 1024 * 1024,
            part_size_bytes: 8 * 1024 * 1024,
            max_attempts: 5,
        }
    }
}

#[derive(Debug, Clone)]
pub struct S3Storage {
    client: Client,
    bucket: String,
    prefix: String,
    endpoint: String,
    multipart_threshold_bytes: usize,
    part_size_bytes: usize,
}

impl S3Storage {
    /// Builds a client from the configuration and the standard AWS chain.
    /// Does not contact the store.
    pub async fn connect(config: S3Config) -> Self {
        let retry = RetryConfig::standard()
            .with_max_attempts(config.max_attempts.max(1))
            .with_initial_backoff(Duration::from_millis(100))
            .with_max_backoff(Duration::from_secs(10));
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(retry).timeout_config(timeouts);
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &config.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(credentials) = &config.credentials {
            loader = loader.credentials_provider(Credentials::new(
                &credentials.access_key_id,
                &credentials.secret_access_key,
                credentials.session_token.clone(),
                None,
                "lacquer-config",
            ));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.force_path_style)
            // Many S3-compatible stores reject the newer default checksums.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if shared.region().is_none() {
            builder = builder.region(Region::new("us-east-1"));
        }
        let endpoint = shared.endpoint_url().map(str::to_owned).unwrap_or_else(|| "AWS S3".to_owned());
        let prefix = match config.prefix.trim_matches('/') {
            "" => String::new(),
            trimmed => format!("{trimmed}/"),
        };
        Self {
            client: Client::from_conf(builder.build()),
            bucket: config.bucket,
            prefix,
            endpoint,
            multipart_threshold_bytes: config.multipart_threshold_bytes.max(1),
            part_size_bytes: config.part_size_bytes.max(MIN_PART_SIZE_BYTES),
        }
    }

    /// Creates the bucket (for tests and first-time setup); an existing
    /// bucket that we own is fine.
    pub async fn create_bucket(&self) -> Result<()> {
        match self.client.create_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(error) if matches!(error.code(), Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")) => Ok(()),
            Err(error) => Err(self.error("", error)),
        }
    }

    fn full_key(&self, key: &str) -> Result<String> {
        check_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    /// Maps an SDK error to one that says what and where.
    fn error<E>(&self, key: &str, error: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let location = self.location(key);
        let status = error.raw_response().map(|response| response.status().as_u16());
        let detail = match error.message() {
            Some(message) => format!("{} ({message})", error.code().unwrap_or("error")),
            None => DisplayErrorContext(&error).to_string(),
        };
        match (&error, error.code(), status) {
            (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _, _) => {
                StorageError::Unreachable { endpoint: self.endpoint.clone(), detail }
            }
            (_, Some("NoSuchBucket"), _) => {
                StorageError::BucketNotFound { bucket: self.bucket.clone(), endpoint: self.endpoint.clone() }
            }
            (_, Some("NoSuchKey" | "NotFound"), _) | (_, None, Some(404)) => StorageError::NotFound { location },
            (_, Some("PreconditionFailed" | "ConditionalRequestConflict"), _) | (_, None, Some(412)) => {
                StorageError::AlreadyExists { location }
            }
            (
                _,
                Some(
                    "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "ExpiredToken"
                    | "InvalidToken"
                    | "TokenRefreshRequired"
                    | "AuthorizationHeaderMalformed"
                    | "NotSignedUp"
                    | "InvalidClientTokenId",
                ),
                _,
            ) => StorageError::BadCredentials { location, detail },
            (_, Some("AccessDenied" | "AllAccessDisabled"), _) | (_, None, Some(403)) => {
                StorageError::AccessDenied { location, detail }
            }
            (_, Some("InvalidRange"), _) => StorageError::Backend { location, detail },
            _ => StorageError::Backend { location, detail },
        }
    }

    /// A 404 without a body (HEAD) cannot tell a missing object from a
    /// missing bucket: ask the bucket.
    async fn not_found_or_no_bucket(&self, error: StorageError) -> StorageError {
        if !matches!(error, StorageError::NotFound { .. }) {
            return error;
        }
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Err(bucket_error) if bucket_error.raw_response().map(|r| r.status().as_u16()) == Some(404) => {
                StorageError::BucketNotFound { bucket: self.bucket.clone(), endpoint: self.endpoint.clone() }
            }
            _ => error,
        }
    }

    async fn put_single(&self, key: &str, full_key: &str, bytes: Vec<u8>, mode: WriteMode) -> Result<()> {
        let mut request = self.client.put_object().bucket(&self.bucket).key(full_key).body(AwsByteStream::from(bytes));
        if mode == WriteMode::CreateNew {
            request = request.if_none_match("*");
        }
        request.send().await.map_err(|e| self.error(key, e))?;
        Ok(())
    }

    async fn put_multipart(
        &self,
        key: &str,
        full_key: &str,
        first: Vec<u8>,
        body: &mut ByteStream,
        mode: WriteMode,
    ) -> Result<u64> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(full_key)
            .send()
            .await
            .map_err(|e| self.error(key, e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| StorageError::Backend {
                location: self.location(key),
                detail: "no upload id returned".into(),
            })?
            .to_owned();
        let result = self.upload_parts(key, full_key, &upload_id, first, body, mode).await;
        if result.is_err() {
            // Leave no orphaned parts behind; the original error matters more.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(full_key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    async fn upload_parts(
        &self,
        key: &str,
        full_key: &str,
        upload_id: &str,
        mut pending: Vec<u8>,
        body: &mut ByteStream,
        mode: WriteMode,
    ) -> Result<u64> {
        let mut parts = Vec::new();
        let mut total_bytes = 0u64;
        for part_number in 1.. {
            // Top up to a whole part; only the last part may be shorter.
            if pending.len() < self.part_size_bytes {
                let missing = self.part_size_bytes - pending.len();
                let more = read_up_to(body, missing).await.map_err(|e| StorageError::io(self.location(key), e))?;
                pending.extend_from_slice(&more);
            }
            if pending.is_empty() {
                break;
            }
            let rest =
                if pending.len() > self.part_size_bytes { pending.split_off(self.part_size_bytes) } else { Vec::new() };
            let part = std::mem::replace(&mut pending, rest);
            total_bytes += part.len() as u64;
            let uploaded = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(full_key)
                .upload_id(upload_id)
                .part_number(part_number)
                .body(AwsByteStream::from(part))
                .send()
                .await
                .map_err(|e| self.error(key, e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(part_number)
                    .set_e_tag(uploaded.e_tag().map(str::to_owned))
                    .build(),
            );
        }
        let mut request = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full_key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build());
        if mode == WriteMode::CreateNew {
            request = request.if_none_match("*");
        }
        request.send().await.map_err(|e| self.error(key, e))?;
        Ok(total_bytes)
    }
}

/// Reads until `limit` bytes or the end of the stream.
async fn read_up_to(body: &mut (impl AsyncRead + Unpin + ?Sized), limit: usize) -> std::io::Result<Vec<u8>> {
    let mut buffer = Vec::with_capacity(limit.min(MIN_PART_SIZE_BYTES * 4));
    (&mut *body).take(limit as u64).read_to_end(&mut buffer).await?;
    Ok(buffer)
}

#[async_trait]
impl Storage for S3Storage {
    fn location(&self, key: &str) -> String {
        format!("s3://{}/{}{key}", self.bucket, self.prefix)
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let full_key = self.full_key(key)?;
        match self.client.head_object().bucket(&self.bucket).key(&full_key).send().await {
            Ok(output) => {
                Ok(ObjectMeta { key: key.to_owned(), size_bytes: output.content_length().unwrap_or(0).max(0) as u64 })
            }
            Err(error) => Err(self.not_found_or_no_bucket(self.error(key, error)).await),
        }
    }

    async fn read(&self, key: &str) -> Result<ByteStream> {
        let full_key = self.full_key(key)?;
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full_key)
            .send()
            .await
            .map_err(|e| self.error(key, e))?;
        Ok(Box::pin(output.body.into_async_read()))
    }

    async fn read_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let full_key = self.full_key(key)?;
        if range.start >= range.end {
            return Ok(Bytes::new());
        }
        let request = self.client.get_object().bucket(&self.bucket).key(&full_key).range(format!(
            "bytes={}-{}",
            range.start,
            range.end - 1
        ));
        match request.send().await {
            Ok(output) => {
                let data = output.body.collect().await.map_err(|e| StorageError::Backend {
                    location: self.location(key),
                    detail: DisplayErrorContext(&e).to_string(),
                })?;
                Ok(data.into_bytes())
            }
            Err(error) if error.code() == Some("InvalidRange") => {
                let size_bytes = self.head(key).await?.size_bytes;
                Err(StorageError::InvalidRange { location: self.location(key), start: range.start, size_bytes })
            }
            Err(error) => Err(self.error(key, error)),
        }
    }

    async fn write(&self, key: &str, mut body: ByteStream, mode: WriteMode) -> Result<ObjectMeta> {
        let full_key = self.full_key(key)?;
        let first = read_up_to(&mut body, self.multipart_threshold_bytes)
            .await
            .map_err(|e| StorageError::io(self.location(key), e))?;
        let size_bytes = if first.len() < self.multipart_threshold_bytes {
            let size = first.len() as u64;
            self.put_single(key, &full_key, first, mode).await?;
            size
        } else {
            self.put_multipart(key, &full_key, first, &mut body, mode).await?
        };
        Ok(ObjectMeta { key: key.to_owned(), size_bytes })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut found = Vec::new();
        let mut continuation: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(format!("{}{prefix}", self.prefix))
                .set_continuation_token(continuation.take())
                .send()
                .await
                .map_err(|e| self.error(prefix, e))?;
            for object in page.contents() {
                if let Some(key) = object.key().and_then(|k| k.strip_prefix(&self.prefix)) {
                    found
                        .push(ObjectMeta { key: key.to_owned(), size_bytes: object.size().unwrap_or(0).max(0) as u64 });
                }
            }
            match page.next_continuation_token() {
                Some(token) if page.is_truncated() == Some(true) => continuation = Some(token.to_owned()),
                _ => break,
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let full_key = self.full_key(key)?;
        match self.client.delete_object().bucket(&self.bucket).key(&full_key).send().await {
            Ok(_) => Ok(()),
            Err(error) => match self.error(key, error) {
                StorageError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }
}
