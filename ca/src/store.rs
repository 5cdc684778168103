//! Persistence of issued certificates through a narrow, synchronous trait that the appliance implements on
//! RocksDB, plus [`MemoryStore`] for tests and tools.

use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard},
};

use crate::{
    record::{CertRecord, ProfileKind},
    status::{StatusChange, StoredStatus},
};

/// Store failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// `insert_new` found the serial already present.
    #[error("serial {0} already exists")]
    SerialExists(String),
    /// No record for this serial.
    #[error("serial {0} not found")]
    NotFound(String),
    /// `update_status` found another status than expected (a concurrent change won).
    #[error("serial {0}: status changed concurrently, retry")]
    Conflict(String),
    /// The backend failed (I/O, corruption...).
    #[error("backend failure: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Listing filter and page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only this profile.
    pub profile: Option<ProfileKind>,
    /// Only records whose serial sorts after this one (pagination cursor).
    pub after_serial: Option<Vec<u8>>,
    /// Page size; 0 means the store's default of 100.
    pub limit: usize,
}

/// Persistence for the CA. Implementations must make `insert_new` and `update_status` atomic
/// (compare-and-set) and durable before returning.
pub trait CertStore: Send + Sync {
    /// Inserts a record whose serial is unused; [`StoreError::SerialExists`] otherwise.
    fn insert_new(&self, record: &CertRecord) -> Result<(), StoreError>;
    /// True when the serial is used.
    fn contains(&self, serial: &[u8]) -> Result<bool, StoreError>;
    /// The record for a serial.
    fn get(&self, serial: &[u8]) -> Result<Option<CertRecord>, StoreError>;
    /// Sets the status to `change.to` and appends `change` to the history, only if the current status equals
    /// `change.from` ([`StoreError::Conflict`] otherwise).
    fn update_status(&self, serial: &[u8], change: &StatusChange) -> Result<(), StoreError>;
    /// Records in serial order, filtered and paged.
    fn list(&self, query: &ListQuery) -> Result<Vec<CertRecord>, StoreError>;
    /// Every record whose stored status is Suspended or Revoked (CRL content).
    fn revoked(&self) -> Result<Vec<CertRecord>, StoreError>;
    /// Returns the next CRL number (1, 2, 3, ...), persisted so that numbers never repeat.
    fn next_crl_number(&self) -> Result<u64, StoreError>;
}

/// In-memory [`CertStore`] for tests and tools. Not durable.
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<BTreeMap<Vec<u8>, CertRecord>>,
    crl_number: Mutex<u64>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Vec<u8>, CertRecord>> {
        // A panic while holding the lock cannot leave a record half-written (all updates are single
        // assignments), so a poisoned lock is still consistent.
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl CertStore for MemoryStore {
    fn insert_new(&self, record: &CertRecord) -> Result<(), StoreError> {
        let mut map = self.lock();
        if map.contains_key(&record.serial) {
            return Err(StoreError::SerialExists(record.serial_hex()));
        }
        map.insert(record.serial.clone(), record.clone());
        Ok(())
    }

    fn contains(&self, serial: &[u8]) -> Result<bool, StoreError> {
        Ok(self.lock().contains_key(serial))
    }

    fn get(&self, serial: &[u8]) -> Result<Option<CertRecord>, StoreError> {
        Ok(self.lock().get(serial).cloned())
    }

    fn update_status(&self, serial: &[u8], change: &StatusChange) -> Result<(), StoreError> {
        let mut map = self.lock();
        let rec = map
            .get_mut(serial)
            .ok_or_else(|| StoreError::NotFound(hex::encode(serial)))?;
        if rec.status != change.from {
            return Err(StoreError::Conflict(hex::encode(serial)));
        }
        rec.status = change.to;
        rec.history.push(change.clone());
        Ok(())
    }

    fn list(&self, query: &ListQuery) -> Result<Vec<CertRecord>, StoreError> {
        let limit = if query.limit == 0 { 100 } else { query.limit };
        let map = self.lock();
        Ok(map
            .values()
            .filter(|r| query.after_serial.as_ref().is_none_or(|a| r.serial > *a))
            .filter(|r| query.profile.is_none_or(|p| r.profile == p))
            .take(limit)
            .cloned()
            .collect())
    }

    fn revoked(&self) -> Result<Vec<CertRecord>, StoreError> {
        Ok(self
            .lock()
            .values()
            .filter(|r| !matches!(r.status, StoredStatus::Active))
            .cloned()
            .collect())
    }

    fn next_crl_number(&self) -> Result<u64, StoreError> {
        let mut n = self.crl_number.lock().unwrap_or_else(|p| p.into_inner());
        *n += 1;
        Ok(*n)
    }
}
