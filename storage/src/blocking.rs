//! A synchronous `Read + Seek` view of one stored object, for code that
//! needs a seekable file (decoders probing a header) while the object lives
//! behind an async backend. It fetches byte ranges on demand, one chunk at a
//! time, so probing a 500 MB file reads kilobytes, not the file.
//!
//! Call it from a blocking thread (`tokio::task::spawn_blocking`), never
//! from an async task.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;
use tokio::runtime::Handle;

use crate::{Result, Storage};

const CHUNK_BYTES: u64 = 256 * 1024;

pub struct BlockingReader {
    storage: Arc<dyn Storage>,
    key: String,
    runtime: Handle,
    size_bytes: u64,
    position: u64,
    chunk: Bytes,
    chunk_start: u64,
}

impl BlockingReader {
    /// Opens `key`; its size is read once, here.
    pub async fn open(storage: Arc<dyn Storage>, key: &str) -> Result<Self> {
        let size_bytes = storage.head(key).await?.size_bytes;
        Ok(Self {
            storage,
            key: key.to_owned(),
            runtime: Handle::current(),
            size_bytes,
            position: 0,
            chunk: Bytes::new(),
            chunk_start: 0,
        })
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
}

impl Read for BlockingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.position >= self.size_bytes {
            return Ok(0);
        }
        let chunk_end = self.chunk_start + self.chunk.len() as u64;
        if self.position < self.chunk_start || self.position >= chunk_end {
            let end = (self.position + CHUNK_BYTES.max(buf.len() as u64)).min(self.size_bytes);
            let fetched = self
                .runtime
                .block_on(self.storage.read_range(&self.key, self.position..end))
                .map_err(io::Error::other)?;
            if fetched.is_empty() {
                return Ok(0);
            }
            self.chunk = fetched;
            self.chunk_start = self.position;
        }
        let offset = (self.position - self.chunk_start) as usize;
        let available = &self.chunk[offset..];
        let count = available.len().min(buf.len());
        buf[..count].copy_from_slice(&available[..count]);
        self.position += count as u64;
        Ok(count)
    }
}

impl Seek for BlockingReader {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(offset) => i128::from(offset),
            SeekFrom::End(offset) => i128::from(self.size_bytes) + i128::from(offset),
            SeekFrom::Current(offset) => i128::from(self.position) + i128::from(offset),
        };
        if target < 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of the object"));
        }
        self.position = u64::try_from(target).unwrap_or(u64::MAX);
        Ok(self.position)
    }
}
