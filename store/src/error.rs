//! Errors of the RocksDB store.

use std::path::PathBuf;

/// Everything that can go wrong in [`crate::Store`].
///
/// Messages name the setting at fault (`data_dir`, `store.write_queue`, …) so that an operator can act on them.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The write queue is full: the caller should answer 503 with `Retry-After` instead of waiting.
    #[error(
        "store busy: the write queue (store.write_queue = {capacity} batches) is full; retry later"
    )]
    Busy {
        /// Configured queue capacity, in batches.
        capacity: usize,
    },
    /// The writer thread is gone (store closed or writer panicked); no write can be acknowledged.
    #[error("store closed: the RocksDB writer thread has stopped")]
    Closed,
    /// Opening (or creating) the database failed.
    #[error("cannot open the RocksDB store in data_dir {path}: {message}")]
    Open {
        /// Database directory.
        path: PathBuf,
        /// RocksDB's message.
        message: String,
    },
    /// The database was written by a newer esigd with an unknown schema.
    #[error(
        "the RocksDB store in data_dir {path} has schema version {found}, this esigd supports up to {supported}"
    )]
    Schema {
        /// Database directory.
        path: PathBuf,
        /// Version found in the `meta` column family.
        found: u32,
        /// Highest version this build understands.
        supported: u32,
    },
    /// A synced write failed; none of the operations of that batch can be assumed durable.
    #[error("RocksDB write (sync=true) failed: {0}")]
    Write(String),
    /// A read failed.
    #[error("RocksDB read from column family {cf} failed: {message}")]
    Read {
        /// Column family name.
        cf: &'static str,
        /// RocksDB's message.
        message: String,
    },
    /// An option given to [`crate::StoreOptions`] is out of range.
    #[error("invalid store option {setting}: {reason}")]
    InvalidOption {
        /// Setting name.
        setting: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}
