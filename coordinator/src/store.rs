//! The coordinator's durable state: every job, written in one redb
//! transaction after each event and before the event is answered. A
//! coordinator killed at any moment (SIGKILL included) and started again on
//! the same `--state-dir` has every job as its last answered event left it:
//! leases it had handed out run to their deadlines and are then handed out
//! again, and results are accepted only from a task's current lease, so
//! nothing is lost or applied twice.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Serialize, de::DeserializeOwned};

/// Job id → the job's record, as JSON.
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
/// Counters ("next_job").
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

#[derive(Debug, thiserror::Error)]
#[error("coordinator state at {location}: {detail}")]
pub struct StoreError {
    location: String,
    detail: String,
}

pub struct Store {
    db: Database,
    location: String,
}

impl Store {
    /// Opens (or creates) the state in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let location = dir.join("coordinator.redb").display().to_string();
        let fail = |detail: String| StoreError { location: location.clone(), detail };
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        let db = Database::create(dir.join("coordinator.redb")).map_err(|e| fail(e.to_string()))?;
        let store = Self { db, location };
        // Both tables exist from the start, so reads never miss them.
        store.write(|txn| {
            txn.open_table(JOBS)?;
            txn.open_table(META)?;
            Ok(())
        })?;
        Ok(store)
    }

    fn error(&self, detail: impl ToString) -> StoreError {
        StoreError { location: self.location.clone(), detail: detail.to_string() }
    }

    fn write(&self, f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        f(&txn).map_err(|e| self.error(e))?;
        txn.commit().map_err(|e| self.error(e))
    }

    /// Writes one job and the job counter, durably, in one transaction.
    pub fn save<T: Serialize>(&self, id: &str, record: &T, next_job: u64) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|e| self.error(e))?;
        self.write(|txn| {
            txn.open_table(JOBS)?.insert(id, bytes.as_slice())?;
            txn.open_table(META)?.insert("next_job", next_job)?;
            Ok(())
        })
    }

    /// Every job, and the job counter.
    pub fn load<T: DeserializeOwned>(&self) -> Result<(Vec<(String, T)>, u64), StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let jobs = txn.open_table(JOBS).map_err(|e| self.error(e))?;
        let mut loaded = Vec::new();
        for entry in jobs.iter().map_err(|e| self.error(e))? {
            let (id, bytes) = entry.map_err(|e| self.error(e))?;
            let record =
                serde_json::from_slice(bytes.value()).map_err(|e| self.error(format!("job {}: {e}", id.value())))?;
            loaded.push((id.value().to_owned(), record));
        }
        let meta = txn.open_table(META).map_err(|e| self.error(e))?;
        let next_job = meta.get("next_job").map_err(|e| self.error(e))?.map(|v| v.value()).unwrap_or(0);
        Ok((loaded, next_job))
    }
}
