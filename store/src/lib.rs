//! esigd-store: the only crate that links RocksDB.
//!
//! It holds the appliance's durable state: the store engine (this module), the persistence of the CA and TSA
//! policy crates ([`persist`]: `ca::CertStore`, `tsa::SerialStore`/`ImprintLog`, the time-stamp queue) and the
//! signature and audit records ([`signatures`]). Everything above (service, web, the binary) reaches RocksDB
//! only through these types.
//!
//! # The store engine
//!
//!
//! * Column families [`Cf`]: `signatures`, `certificates`, `tsa_serials`, `audit`, `meta`; opening creates the
//!   missing ones. Opening never scans records (only the last audit key is read, with one seek), and table files
//!   are opened lazily (`max_open_files` is bounded), so start-up time does not grow with the data.
//! * Writes: one writer thread owns them. It takes the first waiting [`Batch`], drains whatever else is queued
//!   into the same RocksDB `WriteBatch`, writes it with `sync=true` (WAL fsync) and then acknowledges every
//!   caller of that group. [`Store::commit`] (async) and [`Store::commit_blocking`] (for blocking threads)
//!   return only after that. The queue is bounded: when full, callers get [`StoreError::Busy`] at once (map it
//!   to 503 + `Retry-After`). An empty batch is acknowledged at once without touching the disk.
//! * Reads go straight to RocksDB: [`Store::get`], [`Store::scan_prefix`], [`Store::scan_range`].
//! * Write failures (disk full, I/O error): RocksDB then refuses every later write until `Resume()`, which
//!   rust-rocksdb does not bind. The writer marks the store degraded ([`Store::degraded`]): every write fails
//!   at once with [`StoreError::Write`] naming the cause (503 + `Retry-After` above), reads go on. Once a
//!   second it checks the file system; when there is room it closes the database (readers take the handle
//!   per operation, so the last reference goes away), opens it again with the same options, reloads the
//!   ledger's right edge and accepts writes again, in the same `Store` (see `recovery`). A failed
//!   reopen leaves a read-only handle for the readers and is retried with a growing interval (up to 30 s).
//! * Memory: memtables share one budget ([`StoreOptions::memtable_budget`]) and table blocks one LRU cache
//!   ([`StoreOptions::block_cache`]), whatever the number of column families.
//!
//! `Store` is a cheap `Clone` handle; the writer stops and the database closes when the last handle is dropped.

pub mod backup;
mod batch;
mod error;
mod keys;
pub mod ledger;
pub mod outbox;
pub mod persist;
mod recovery;
pub mod scd;
pub mod signatures;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::SystemTime;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, DBCompressionType, Direction,
    IteratorMode, Options, ReadOptions, WriteOptions,
};
use tokio::sync::oneshot;

pub use batch::{Batch, Cf, Op};
pub use error::StoreError;
pub use keys::AuditKey;
pub use writer::{BatchStats, StoreObserver, StoreStats};

use writer::{Counters, Job, WriterConfig};

/// Schema version written into `meta/schema_version` by this build.
pub const SCHEMA_VERSION: u32 = 1;
const SCHEMA_KEY: &[u8] = b"schema_version";

/// Tuning of the store. `Default` gives production values.
#[derive(Clone)]
pub struct StoreOptions {
    /// Capacity of the write queue, in caller batches (`store.write_queue`). A full queue answers `Busy`.
    pub write_queue: usize,
    /// Upper bound of operations drained into one group commit (`store.max_batch_ops`). A single caller batch
    /// larger than this is still written whole.
    pub max_batch_ops: usize,
    /// Upper bound of table files kept open (`store.max_open_files`); bounded so that open does not pre-load
    /// every file.
    pub max_open_files: i32,
    /// Memory all memtables together may use, in bytes (`store.memtable_budget_mib`; at least 4 MiB): when
    /// reached, the largest is flushed. Each column family's memtable is a quarter of it (at least 1 MiB),
    /// which is also the free space RocksDB wants before it clears a "no space" error by itself.
    pub memtable_budget: usize,
    /// Size of the LRU cache of table blocks (data, index and filter) shared by every column family, in bytes
    /// (`store.block_cache_mib`).
    pub block_cache: usize,
    /// Receives per-group-commit statistics (metrics).
    pub observer: Option<Arc<dyn StoreObserver>>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            write_queue: 4096,
            max_batch_ops: 8192,
            max_open_files: 512,
            memtable_budget: 32 << 20,
            block_cache: 16 << 20,
            observer: None,
        }
    }
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("write_queue", &self.write_queue)
            .field("max_batch_ops", &self.max_batch_ops)
            .field("max_open_files", &self.max_open_files)
            .field("memtable_budget", &self.memtable_budget)
            .field("block_cache", &self.block_cache)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

/// Scan direction for [`Store::scan_range`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Ascending keys (oldest first for time-ordered keys).
    Ascending,
    /// Descending keys (newest first).
    Descending,
}

/// A key/value pair returned by scans.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Handle to the open store. Clone it freely.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    path: PathBuf,
    capacity: usize,
    tx: Mutex<Option<SyncSender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
    audit_seq: AtomicU64,
    /// Ledger leaves durably written (the writer raises it after each synced write).
    ledger_committed: Arc<AtomicU64>,
}

/// What the readers and the writer thread share: the database handle and the degraded state.
pub(crate) struct Shared {
    /// The open database. Readers clone the `Arc` for one operation and drop it, so that the writer can close
    /// the database and open it again after a write failure: RocksDB refuses a second open of the same
    /// directory in one process (its LOCK file) while any reference lives. `None` only when neither a
    /// read-write nor a read-only reopen succeeded.
    db: RwLock<Option<Arc<DB>>>,
    /// Why writes are refused; `None` when the store accepts writes.
    degraded: Mutex<Option<String>>,
}

impl Shared {
    /// The current database handle, for one operation.
    pub(crate) fn db(&self) -> Option<Arc<DB>> {
        self.db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Why writes are refused, if they are.
    pub(crate) fn degraded(&self) -> Option<String> {
        self.degraded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets (`Some`) or clears (`None`) the degraded state.
    pub(crate) fn set_degraded(&self, reason: Option<String>) {
        *self.degraded.lock().unwrap_or_else(PoisonError::into_inner) = reason;
    }
}

impl Store {
    /// Opens (or creates) the store in `path` and starts the writer thread.
    pub fn open(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if options.write_queue == 0 {
            return Err(StoreError::InvalidOption {
                setting: "store.write_queue",
                reason: "must be at least 1",
            });
        }
        if options.max_batch_ops == 0 {
            return Err(StoreError::InvalidOption {
                setting: "store.max_batch_ops",
                reason: "must be at least 1",
            });
        }
        if options.memtable_budget < 4 << 20 {
            return Err(StoreError::InvalidOption {
                setting: "store.memtable_budget_mib",
                reason: "must be at least 4 MiB",
            });
        }
        if options.block_cache == 0 {
            return Err(StoreError::InvalidOption {
                setting: "store.block_cache_mib",
                reason: "must be at least 1 MiB",
            });
        }
        let db = Arc::new(open_db(&path, &options)?);
        check_schema(&db, &path)?;
        let next_seq = last_audit_seq(&db)?.map_or(0, |s| s.saturating_add(1));
        let (ledger_size, frontier) = ledger::load_edge(&db)?;
        let ledger_committed = Arc::new(AtomicU64::new(ledger_size));
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(db.clone())),
            degraded: Mutex::new(None),
        });

        let counters = Arc::new(Counters::default());
        let (tx, rx) = sync_channel(options.write_queue);
        let cfg = WriterConfig {
            max_batch_ops: options.max_batch_ops,
            observer: options.observer.clone(),
            counters: counters.clone(),
            ledger: ledger::LedgerWriter {
                frontier,
                committed: ledger_committed.clone(),
            },
        };
        let reopen = recovery::Reopen {
            shared: shared.clone(),
            path: path.clone(),
            options: options.clone(),
        };
        let writer = std::thread::Builder::new()
            .name("esigd-store-writer".into())
            .spawn(move || writer::run(rx, cfg, reopen))
            .map_err(|e| StoreError::Open {
                path: path.clone(),
                message: format!("cannot start the writer thread: {e}"),
            })?;
        tracing::info!(path = %path.display(), "store opened");
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                path,
                capacity: options.write_queue,
                tx: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(writer)),
                counters,
                audit_seq: AtomicU64::new(next_seq),
                ledger_committed,
            }),
        })
    }

    /// Queues `batch` now (when called, not when first polled) and returns a future that resolves once the
    /// batch is durable (its group commit was written with `sync=true`).
    ///
    /// When the write queue is full the future resolves at once to [`StoreError::Busy`]. Dropping the future does
    /// not cancel the write. The future borrows nothing (`use<>`): it may outlive the `Store` handle.
    pub fn commit(
        &self,
        batch: Batch,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + use<> {
        let submitted = self.submit(batch);
        async move {
            match submitted? {
                Some(rx) => rx.await.map_err(|_| StoreError::Closed)?,
                None => Ok(()),
            }
        }
    }

    /// Blocking form of [`Store::commit`], for synchronous callers (CA/TSA persistence traits).
    ///
    /// Call it from a plain thread or `tokio::task::spawn_blocking`, never from an async task (tokio panics if a
    /// runtime worker blocks here).
    pub fn commit_blocking(&self, batch: Batch) -> Result<(), StoreError> {
        match self.submit(batch)? {
            Some(rx) => rx.blocking_recv().map_err(|_| StoreError::Closed)?,
            None => Ok(()),
        }
    }

    fn submit(
        &self,
        batch: Batch,
    ) -> Result<Option<oneshot::Receiver<Result<(), StoreError>>>, StoreError> {
        if batch.is_empty() {
            return Ok(None);
        }
        let (ack, rx) = oneshot::channel();
        let tx = self
            .inner
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(StoreError::Closed)?;
        match tx.try_send(Job { batch, ack }) {
            Ok(()) => Ok(Some(rx)),
            Err(TrySendError::Full(_)) => Err(StoreError::Busy {
                capacity: self.inner.capacity,
            }),
            Err(TrySendError::Disconnected(_)) => Err(StoreError::Closed),
        }
    }

    /// Reads one value.
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let db = self.db(cf)?;
        db.get_cf(cf_handle(&db, cf)?, key)
            .map_err(|e| read_err(cf, e))
    }

    /// Up to `limit` entries whose key starts with `prefix`, in ascending key order.
    pub fn scan_prefix(
        &self,
        cf: Cf,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let end = keys::prefix_successor(prefix);
        self.scan_range(cf, prefix, end.as_deref(), Order::Ascending, limit)
    }

    /// Up to `limit` entries with `start <= key < end` (`end = None`: no upper bound), in the given order.
    ///
    /// For time-ordered keys ([`AuditKey`]) use `AuditKey::lower_bound(t).to_bytes()` as bounds; page by calling
    /// again with the last key returned (+1 / as new `end` for descending order).
    pub fn scan_range(
        &self,
        cf: Cf,
        start: &[u8],
        end: Option<&[u8]>,
        order: Order,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let db = self.db(cf)?;
        let handle = cf_handle(&db, cf)?;
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(start.to_vec());
        if let Some(end) = end {
            ro.set_iterate_upper_bound(end.to_vec());
        }
        let mode = match order {
            Order::Ascending => IteratorMode::From(start, Direction::Forward),
            // With an upper bound set, End seeks to the last key below it.
            Order::Descending => IteratorMode::End,
        };
        let mut out = Vec::new();
        for item in db.iterator_cf_opt(handle, ro, mode).take(limit) {
            let (k, v) = item.map_err(|e| read_err(cf, e))?;
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    /// A fresh, unique, time-ordered key for the `audit` column family.
    pub fn audit_key(&self, at: SystemTime) -> AuditKey {
        AuditKey::new(at, self.inner.audit_seq.fetch_add(1, Ordering::Relaxed))
    }

    /// Totals since open (batches vs. commits shows how much group commit saves).
    pub fn stats(&self) -> StoreStats {
        self.inner.counters.snapshot()
    }

    /// Database directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Why writes are refused now (a write failed: disk full, I/O error), or `None` when the store accepts
    /// writes. While degraded, every commit fails at once with that reason; the store reopens the database by
    /// itself once the cause is gone.
    pub fn degraded(&self) -> Option<String> {
        self.inner.shared.degraded()
    }

    /// The database handle for one operation (hold it no longer: a reopen waits for it).
    pub(crate) fn db(&self, cf: Cf) -> Result<Arc<DB>, StoreError> {
        self.inner.shared.db().ok_or(StoreError::Read {
            cf: cf.name(),
            message: "the database is closed: it could not be opened again after a write failure"
                .into(),
        })
    }
}

fn cf_handle(db: &DB, cf: Cf) -> Result<&rocksdb::ColumnFamily, StoreError> {
    db.cf_handle(cf.name()).ok_or(StoreError::Read {
        cf: cf.name(),
        message: "column family is not open".into(),
    })
}

/// Opens the database in `path` read-write with every column family (existing ones and ours).
pub(crate) fn open_db(path: &Path, options: &StoreOptions) -> Result<DB, StoreError> {
    let db_opts = db_options(options);
    let cache = Cache::new_lru_cache(options.block_cache);
    let descriptors = cf_names(&db_opts, path)
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, cf_options(options, &cache)));
    DB::open_cf_descriptors(&db_opts, path, descriptors).map_err(|e| StoreError::Open {
        path: path.to_path_buf(),
        message: e.into_string(),
    })
}

/// Opens the database in `path` read-only (writes nothing: works on a full disk), for the readers while a
/// read-write reopen fails.
pub(crate) fn open_db_read_only(path: &Path, options: &StoreOptions) -> Result<DB, StoreError> {
    let db_opts = db_options(options);
    let cache = Cache::new_lru_cache(options.block_cache);
    let descriptors = cf_names(&db_opts, path)
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, cf_options(options, &cache)));
    DB::open_cf_descriptors_read_only(&db_opts, path, descriptors, false).map_err(|e| {
        StoreError::Open {
            path: path.to_path_buf(),
            message: e.into_string(),
        }
    })
}

/// RocksDB must open every existing column family: ours added to whatever is already there.
fn cf_names(db_opts: &Options, path: &Path) -> Vec<String> {
    let mut names: Vec<String> = DB::list_cf(db_opts, path).unwrap_or_default();
    for cf in Cf::ALL {
        if !names.iter().any(|n| n == cf.name()) {
            names.push(cf.name().to_owned());
        }
    }
    names
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish what is queued and exit; join it so the RocksDB lock is
        // released when the last handle goes away (a reopen in the same process then works).
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(writer) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take()
            && writer.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
    }
}

fn db_options(options: &StoreOptions) -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    o.set_max_open_files(options.max_open_files);
    // Do not read every table file's properties at open: keeps start-up independent of data size.
    o.set_skip_stats_update_on_db_open(true);
    o.set_keep_log_file_num(10);
    o.set_max_total_wal_size(256 << 20);
    // One memtable budget for all column families (RocksDB's default is 64 MiB per column family and no
    // total): when reached, the largest memtable is flushed.
    o.set_db_write_buffer_size(options.memtable_budget);
    o
}

/// Each column family's memtable: a quarter of the budget, at least 1 MiB. RocksDB also wants this much free
/// space before it clears a "no space" error by itself.
fn memtable_size(options: &StoreOptions) -> usize {
    (options.memtable_budget / 4).max(1 << 20)
}

/// `cache`: one block cache for every column family of the database being opened.
fn cf_options(options: &StoreOptions, cache: &Cache) -> Options {
    let mut o = Options::default();
    o.set_compression_type(DBCompressionType::Lz4);
    o.set_bottommost_compression_type(DBCompressionType::Zstd);
    o.set_write_buffer_size(memtable_size(options));
    // Every column family's blocks, index and filter blocks included, in one cache of fixed size (RocksDB's
    // default: a cache per column family, index and filter blocks outside any cache).
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    o.set_block_based_table_factory(&table);
    o
}

fn check_schema(db: &DB, path: &Path) -> Result<(), StoreError> {
    let meta = db.cf_handle(Cf::Meta.name()).ok_or(StoreError::Read {
        cf: "meta",
        message: "column family is not open".into(),
    })?;
    match db
        .get_cf(meta, SCHEMA_KEY)
        .map_err(|e| read_err(Cf::Meta, e))?
    {
        Some(v) => {
            let found = v
                .as_slice()
                .try_into()
                .map(u32::from_be_bytes)
                .unwrap_or(u32::MAX);
            if found > SCHEMA_VERSION {
                return Err(StoreError::Schema {
                    path: path.to_path_buf(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            Ok(())
        }
        None => {
            let mut sync = WriteOptions::default();
            sync.set_sync(true);
            db.put_cf_opt(meta, SCHEMA_KEY, SCHEMA_VERSION.to_be_bytes(), &sync)
                .map_err(|e| StoreError::Write(e.into_string()))
        }
    }
}

/// Sequence of the newest audit key (one seek, no scan).
fn last_audit_seq(db: &DB) -> Result<Option<u64>, StoreError> {
    let Some(audit) = db.cf_handle(Cf::Audit.name()) else {
        return Ok(None);
    };
    let mut it = db.raw_iterator_cf(audit);
    it.seek_to_last();
    it.status().map_err(|e| read_err(Cf::Audit, e))?;
    Ok(it.key().and_then(AuditKey::from_bytes).map(|k| k.seq))
}

fn read_err(cf: Cf, e: rocksdb::Error) -> StoreError {
    StoreError::Read {
        cf: cf.name(),
        message: e.into_string(),
    }
}
