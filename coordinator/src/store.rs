//! The coordinator's durable state: every job, written in one redb
//! transaction after each event and before the event is answered. A
//! coordinator killed at any moment (SIGKILL included) and started again on
//! the same `--state-dir` has every job as its last answered event left it:
//! leases it had handed out run to their deadlines and are then handed out
//! again, and results are accepted only from a task's current lease, so
//! nothing is lost or applied twice.
//!
//! A finished job also gets a small summary (what `lacquer status` shows);
//! only running jobs are loaded whole at start, and past the retention
//! period a finished job's full record is deleted and its summary stays.
//!
//! A failed write leaves redb refusing every later one ("Previous I/O error
//! occurred") until the database is opened again, so the store reopens it
//! (at once, and again on [`Store::recover`]) and reports whether it is
//! writable; the caller answers UNAVAILABLE meanwhile and never acknowledges
//! a change that was not written.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Serialize, de::DeserializeOwned};

/// Job id → the job's record, as JSON.
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
/// Job id → the finished job's summary (caller-encoded bytes).
const SUMMARIES: TableDefinition<&str, &[u8]> = TableDefinition::new("summaries");
/// Counters ("next_job").
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

#[derive(Debug, thiserror::Error)]
#[error("coordinator state at {location}: {detail}")]
pub struct StoreError {
    location: String,
    detail: String,
}

/// redb's page cache: its default (1 GiB) would hold every record the
/// coordinator ever wrote or read, finished jobs included. 4 MiB schedules
/// as fast as 16 (570 tasks/s, scheduling benchmark).
const CACHE_BYTES: usize = 4 << 20;

fn open_database(path: &Path) -> Result<Database, redb::DatabaseError> {
    redb::Builder::new().set_cache_size(CACHE_BYTES).create(path)
}

pub struct Store {
    /// `None` while the database is closed after a failed write.
    db: Mutex<Option<Database>>,
    path: PathBuf,
    location: String,
}

/// What is loaded at start: running jobs whole (finished ones stay in the
/// store: see [`Store::summary`]).
pub struct Loaded<T> {
    pub running: Vec<(String, T)>,
    pub next_job: u64,
}

impl Store {
    /// Opens (or creates) the state in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("coordinator.redb");
        let location = path.display().to_string();
        let fail = |detail: String| StoreError { location: location.clone(), detail };
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        let db = open_database(&path).map_err(|e| fail(e.to_string()))?;
        let store = Self { db: Mutex::new(Some(db)), path, location };
        store.create_tables()?;
        Ok(store)
    }

    fn create_tables(&self) -> Result<(), StoreError> {
        // Every table exists from the start, so reads never miss them.
        self.write(|txn| {
            txn.open_table(JOBS)?;
            txn.open_table(SUMMARIES)?;
            txn.open_table(META)?;
            Ok(())
        })
    }

    fn error(&self, detail: impl ToString) -> StoreError {
        StoreError { location: self.location.clone(), detail: detail.to_string() }
    }

    fn db(&self) -> MutexGuard<'_, Option<Database>> {
        // The slot is only ever replaced whole: a poisoned lock is consistent.
        self.db.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Closes the database and opens it again (redb recovers its file on
    /// open). Errors if it cannot be opened or written.
    pub fn recover(&self) -> Result<(), StoreError> {
        {
            let mut slot = self.db();
            slot.take(); // closed first: redb refuses a second open of one file
            *slot = Some(open_database(&self.path).map_err(|e| self.error(e))?);
        }
        self.create_tables()
    }

    fn write_once(
        &self,
        f: &mut dyn FnMut(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        let slot = self.db();
        let db = slot.as_ref().ok_or_else(|| self.error("closed after an earlier write error"))?;
        let txn = db.begin_write().map_err(|e| self.error(e))?;
        f(&txn).map_err(|e| self.error(e))?;
        txn.commit().map_err(|e| self.error(e))
    }

    /// One transaction; after a failure the database is reopened and the
    /// transaction tried once more, so a passing fault costs one error.
    fn write(&self, mut f: impl FnMut(&redb::WriteTransaction) -> Result<(), redb::Error>) -> Result<(), StoreError> {
        match self.write_once(&mut f) {
            Ok(()) => Ok(()),
            Err(first) => {
                tracing::error!(error = %first, "the coordinator's state could not be written; reopening it");
                metrics::counter!("lacquer_store_errors_total").increment(1);
                self.db().take();
                if let Ok(db) = open_database(&self.path) {
                    *self.db() = Some(db);
                    if self.write_once(&mut f).is_ok() {
                        return Ok(());
                    }
                    self.db().take();
                }
                Err(first)
            }
        }
    }

    /// Writes one job and the job counter, durably, in one transaction; a
    /// finished job's `summary` in the same one.
    pub fn save<T: Serialize>(
        &self,
        id: &str,
        record: &T,
        summary: Option<&[u8]>,
        next_job: u64,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|e| self.error(e))?;
        self.write(|txn| {
            txn.open_table(JOBS)?.insert(id, bytes.as_slice())?;
            if let Some(summary) = summary {
                txn.open_table(SUMMARIES)?.insert(id, summary)?;
            }
            txn.open_table(META)?.insert("next_job", next_job)?;
            Ok(())
        })
    }

    /// Deletes finished jobs' full records; their summaries stay.
    pub fn forget(&self, ids: &[String]) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut jobs = txn.open_table(JOBS)?;
            for id in ids {
                jobs.remove(id.as_str())?;
            }
            Ok(())
        })
    }

    /// One job's full record, if it is still kept.
    pub fn job<T: DeserializeOwned>(&self, id: &str) -> Result<Option<T>, StoreError> {
        let bytes = self.read(|txn| Ok(txn.open_table(JOBS)?.get(id)?.map(|bytes| bytes.value().to_vec())))?;
        bytes.map(|bytes| serde_json::from_slice(&bytes).map_err(|e| self.error(format!("job {id}: {e}")))).transpose()
    }

    /// Runs `read` on a read transaction.
    fn read<R>(&self, read: impl FnOnce(&redb::ReadTransaction) -> Result<R, redb::Error>) -> Result<R, StoreError> {
        let slot = self.db();
        let db = slot.as_ref().ok_or_else(|| self.error("closed after an earlier write error"))?;
        let txn = db.begin_read().map_err(|e| self.error(e))?;
        read(&txn).map_err(|e| self.error(e))
    }

    /// A finished job's summary.
    pub fn summary(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|txn| Ok(txn.open_table(SUMMARIES)?.get(id)?.map(|bytes| bytes.value().to_vec())))
    }

    /// Hands every finished job's summary to `each`, in id order.
    pub fn summaries(&self, mut each: impl FnMut(&str, &[u8])) -> Result<(), StoreError> {
        self.read(|txn| {
            for entry in txn.open_table(SUMMARIES)?.iter()? {
                let (id, bytes) = entry?;
                each(id.value(), bytes.value());
            }
            Ok(())
        })
    }

    /// Finished jobs whose full record is still kept, and whose summary's
    /// first 8 bytes (the finish time, little-endian ms) are at or
    /// before `cutoff_ms`.
    pub fn finished_before(&self, cutoff_ms: u64) -> Result<Vec<String>, StoreError> {
        self.read(|txn| {
            let jobs = txn.open_table(JOBS)?;
            let mut expired = Vec::new();
            for entry in txn.open_table(SUMMARIES)?.iter()? {
                let (id, bytes) = entry?;
                let finished_ms = bytes.value().get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
                if finished_ms.is_some_and(|ms| ms <= cutoff_ms) && jobs.get(id.value())?.is_some() {
                    expired.push(id.value().to_owned());
                }
            }
            Ok(expired)
        })
    }

    /// Running jobs whole, and the job counter.
    pub fn load<T: DeserializeOwned>(&self) -> Result<Loaded<T>, StoreError> {
        let records: Vec<(String, Vec<u8>)> = self.read(|txn| {
            let summaries = txn.open_table(SUMMARIES)?;
            let mut records = Vec::new();
            for entry in txn.open_table(JOBS)?.iter()? {
                let (id, bytes) = entry?;
                if summaries.get(id.value())?.is_none() {
                    records.push((id.value().to_owned(), bytes.value().to_vec()));
                }
            }
            Ok(records)
        })?;
        let running = records
            .into_iter()
            .map(|(id, bytes)| {
                let record = serde_json::from_slice(&bytes).map_err(|e| self.error(format!("job {id}: {e}")))?;
                Ok((id, record))
            })
            .collect::<Result<_, StoreError>>()?;
        let next_job = self.read(|txn| Ok(txn.open_table(META)?.get("next_job")?.map(|v| v.value())))?.unwrap_or(0);
        Ok(Loaded { running, next_job })
    }
}
