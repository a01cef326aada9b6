//! The local filesystem backend: a folder is the root, keys are paths
//! below it, and writes go to a temporary file in the same folder that is
//! synced and then renamed (or hard-linked, for [`WriteMode::CreateNew`])
//! into place.

use std::io::SeekFrom;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::{ByteStream, ObjectMeta, Result, Storage, StorageError, WriteMode, check_key};

/// Temporary files start with this; listings never show them.
const TEMP_PREFIX: &str = ".lacquer-tmp-";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    /// A backend rooted at `root`. The folder is created on the first write.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

/// What a filesystem entry that is not a regular file is, for messages.
fn file_kind(file_type: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_dir() {
        "a folder"
    } else if file_type.is_fifo() {
        "a named pipe"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Removes a temporary file unless it was published.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[async_trait]
impl Storage for LocalStorage {
    fn location(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let path = self.path(key)?;
        let location = || self.location(key);
        let metadata = tokio::fs::metadata(&path).await.map_err(|e| StorageError::io(location(), e))?;
        if !metadata.is_file() {
            return Err(StorageError::NotAFile { location: location(), what: file_kind(&metadata.file_type()) });
        }
        // A symbolic link (of the file or a folder on the way) must not
        // lead out of the root, as `..` may not.
        let real = tokio::fs::canonicalize(&path).await.map_err(|e| StorageError::io(location(), e))?;
        let real_root = tokio::fs::canonicalize(&self.root).await.map_err(|e| StorageError::io(location(), e))?;
        if !real.starts_with(&real_root) {
            return Err(StorageError::OutsideRoot { location: location(), target: real.display().to_string() });
        }
        Ok(ObjectMeta { key: key.to_owned(), size_bytes: metadata.len() })
    }

    async fn read(&self, key: &str) -> Result<ByteStream> {
        self.head(key).await?;
        let file = tokio::fs::File::open(self.path(key)?).await.map_err(|e| StorageError::io(self.location(key), e))?;
        Ok(Box::pin(file))
    }

    async fn read_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let size_bytes = self.head(key).await?.size_bytes;
        let location = || self.location(key);
        if range.start >= range.end {
            return Ok(Bytes::new());
        }
        if range.start >= size_bytes {
            return Err(StorageError::InvalidRange { location: location(), start: range.start, size_bytes });
        }
        let end = range.end.min(size_bytes);
        let mut file = tokio::fs::File::open(self.path(key)?).await.map_err(|e| StorageError::io(location(), e))?;
        file.seek(SeekFrom::Start(range.start)).await.map_err(|e| StorageError::io(location(), e))?;
        let mut buffer = vec![0; (end - range.start) as usize];
        file.read_exact(&mut buffer).await.map_err(|e| StorageError::io(location(), e))?;
        Ok(Bytes::from(buffer))
    }

    async fn write(&self, key: &str, mut body: ByteStream, mode: WriteMode) -> Result<ObjectMeta> {
        let path = self.path(key)?;
        let location = || self.location(key);
        let parent = path.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&parent).await.map_err(|e| StorageError::io(parent.display().to_string(), e))?;
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let unique = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut temp = TempFile {
            path: parent.join(format!("{TEMP_PREFIX}{}-{unique}-{file_name}", std::process::id())),
            armed: true,
        };

        let mut file = tokio::fs::File::create(&temp.path).await.map_err(|e| StorageError::io(location(), e))?;
        let size_bytes = tokio::io::copy(&mut body, &mut file).await.map_err(|e| StorageError::io(location(), e))?;
        file.flush().await.map_err(|e| StorageError::io(location(), e))?;
        file.sync_all().await.map_err(|e| StorageError::io(location(), e))?;
        drop(file);

        match mode {
            WriteMode::Overwrite => {
                tokio::fs::rename(&temp.path, &path).await.map_err(|e| StorageError::io(location(), e))?;
                temp.armed = false;
            }
            WriteMode::CreateNew => match tokio::fs::hard_link(&temp.path, &path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(StorageError::AlreadyExists { location: location() });
                }
                Err(e) => return Err(StorageError::io(location(), e)),
            },
        }
        sync_dir(&parent).await;
        Ok(ObjectMeta { key: key.to_owned(), size_bytes })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        // Walk the deepest folder that the prefix fully names.
        let folder = match prefix.rfind('/') {
            Some(index) => &prefix[..index],
            None => "",
        };
        if !folder.is_empty() {
            check_key(folder)?;
        }
        let mut found = Vec::new();
        let mut pending = vec![(self.root.join(folder), folder.to_owned())];
        while let Some((dir, dir_key)) = pending.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StorageError::io(dir.display().to_string(), e)),
            };
            while let Some(entry) =
                entries.next_entry().await.map_err(|e| StorageError::io(dir.display().to_string(), e))?
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(TEMP_PREFIX) {
                    continue;
                }
                let key = if dir_key.is_empty() { name } else { format!("{dir_key}/{name}") };
                let file_type =
                    entry.file_type().await.map_err(|e| StorageError::io(entry.path().display().to_string(), e))?;
                if file_type.is_dir() {
                    if key.starts_with(prefix) || prefix.starts_with(&format!("{key}/")) {
                        pending.push((entry.path(), key));
                    }
                } else if key.starts_with(prefix) {
                    let metadata =
                        entry.metadata().await.map_err(|e| StorageError::io(entry.path().display().to_string(), e))?;
                    found.push(ObjectMeta { key, size_bytes: metadata.len() });
                }
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(self.location(key), e)),
        }
    }
}

/// Makes a rename durable across a crash (best effort: not every
/// filesystem lets a folder be synced).
async fn sync_dir(dir: &Path) {
    if let Ok(handle) = tokio::fs::File::open(dir).await {
        let _ = handle.sync_all().await;
    }
}
