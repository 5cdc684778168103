//! Getting writes back after a failure of the disk under the store (issue #16).
//!
//! Once a synced write fails with an I/O error (ENOSPC, EIO…), RocksDB keeps a "background error" and
//! refuses every later write. It clears a "no space" error by itself only when the file system has as much
//! free space as the largest memtable, checked every 5 s (its `SstFileManager`), and rust-rocksdb 0.25 does
//! not bind `DB::Resume()`. So the writer thread, once the store is degraded:
//!
//! 1. refuses every write at once with the cause (the caller answers 503 + `Retry-After`; `/readyz`, whose
//!    probe is a write, names the store);
//! 2. every [`CHECK_INTERVAL`] writes a probe row: if RocksDB cleared the error by itself, writes resume;
//! 3. otherwise, when the file system has [`MIN_FREE`] bytes free, closes the database (it takes the shared
//!    handle away and waits, bounded, until no reader holds it: RocksDB's LOCK file forbids a second open in
//!    the same process), opens it again with the same options and column families, reloads the ledger's
//!    right edge (the only state the writer keeps; a failed group had given its leaf indices back) and
//!    accepts writes again. A failed reopen leaves a read-only handle for the readers and is retried after
//!    1, 2, 4… up to 30 s.
//!
//! Nothing acknowledged can be lost: a failed group was not acknowledged, and reopening replays the WAL as a
//! restart would.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use rocksdb::{DB, WriteOptions};

use crate::ledger::{self, LedgerWriter};
use crate::{Cf, Shared, StoreError, StoreOptions, open_db, open_db_read_only};

/// How often a degraded store checks whether it can write again.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Free space below which a reopen is not tried (it would fail, or fail again at the next write).
pub(crate) const MIN_FREE: u64 = 1 << 20;
/// Longest wait between two failed reopens.
const MAX_REOPEN_BACKOFF: Duration = Duration::from_secs(30);
/// Longest wait for readers to give the old handle up before a reopen is postponed.
const RELEASE_WAIT: Duration = Duration::from_secs(5);
/// `meta` key written by the probe.
const PROBE_KEY: &[u8] = b"store_probe";

/// What the writer needs to reopen the database.
pub(crate) struct Reopen {
    pub(crate) shared: Arc<Shared>,
    pub(crate) path: PathBuf,
    pub(crate) options: StoreOptions,
}

/// The writer's state while the store is degraded.
pub(crate) struct Degraded {
    reason: String,
    since: Instant,
    next_check: Instant,
    next_reopen: Instant,
    backoff: Duration,
    attempts: u32,
    /// The "too little free space" line was logged (once per episode).
    told_low_space: bool,
}

impl Degraded {
    /// Time left until the next check.
    pub(crate) fn until_next_check(&self) -> Duration {
        self.next_check.saturating_duration_since(Instant::now())
    }

    /// The error every refused write gets.
    pub(crate) fn error(&self) -> StoreError {
        StoreError::Write(format!(
            "{} (the store refuses writes since {} ms ago and reopens the database once the file system \
             has room)",
            self.reason,
            self.since.elapsed().as_millis()
        ))
    }
}

impl Reopen {
    /// The current handle (`None` after a failed reopen without even a read-only one).
    pub(crate) fn db(&self) -> Option<Arc<DB>> {
        self.shared.db()
    }

    /// Marks the store degraded after a write failed with `reason`.
    pub(crate) fn degrade(&self, reason: String) -> Degraded {
        tracing::error!(
            path = %self.path.display(),
            error = %reason,
            "store degraded: writes are refused until the database is writable again (checked every {} s)",
            CHECK_INTERVAL.as_secs()
        );
        self.shared.set_degraded(Some(reason.clone()));
        let now = Instant::now();
        Degraded {
            reason,
            since: now,
            next_check: now + CHECK_INTERVAL,
            next_reopen: now,
            backoff: CHECK_INTERVAL,
            attempts: 0,
            told_low_space: false,
        }
    }

    /// One check (see the module documentation). True when the store accepts writes again.
    pub(crate) fn try_recover(
        &self,
        state: &mut Degraded,
        ledger: &mut LedgerWriter,
        reopens: &AtomicU64,
    ) -> bool {
        let now = Instant::now();
        state.next_check = now + CHECK_INTERVAL;
        // RocksDB may have cleared the error by itself; then no reopen is needed.
        if let Some(db) = self.db()
            && probe(&db)
        {
            self.recovered(state, "RocksDB cleared the error itself");
            return true;
        }
        if now < state.next_reopen {
            return false;
        }
        match free_space(&self.path) {
            Some(free) if free < MIN_FREE => {
                if !state.told_low_space {
                    state.told_low_space = true;
                    tracing::warn!(
                        path = %self.path.display(),
                        free_bytes = free,
                        "store still degraded: waiting for at least {} MiB free before reopening the database",
                        MIN_FREE >> 20
                    );
                }
                return false;
            }
            _ => {}
        }
        state.attempts += 1;
        match self.reopen(ledger) {
            Ok(()) => {
                reopens.fetch_add(1, Ordering::Relaxed);
                self.recovered(state, "database reopened");
                true
            }
            Err(e) => {
                state.backoff = (state.backoff * 2).min(MAX_REOPEN_BACKOFF);
                state.next_reopen = Instant::now() + state.backoff;
                tracing::warn!(
                    error = %e,
                    attempt = state.attempts,
                    retry_in_s = state.backoff.as_secs(),
                    "store still degraded: reopening the database failed"
                );
                false
            }
        }
    }

    fn recovered(&self, state: &Degraded, how: &str) {
        self.shared.set_degraded(None);
        tracing::info!(
            path = %self.path.display(),
            degraded_ms = state.since.elapsed().as_millis() as u64,
            how,
            "store writable again: writes accepted"
        );
    }

    /// Closes the database and opens it again; reloads the ledger's right edge into `ledger`.
    fn reopen(&self, ledger: &mut LedgerWriter) -> Result<(), StoreError> {
        // Readers wait on this lock while the database is closed and opened (milliseconds).
        let mut slot = self
            .shared
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(mut old) = slot.take() {
            let deadline = Instant::now() + RELEASE_WAIT;
            // Readers clone the handle for one operation: wait until the last one is done.
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        // Closes RocksDB and releases its LOCK file.
                        drop(db);
                        break;
                    }
                    Err(still) if Instant::now() < deadline => {
                        old = still;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(still) => {
                        *slot = Some(still);
                        return Err(StoreError::Write(format!(
                            "the database handle is still in use after {} s; reopen postponed",
                            RELEASE_WAIT.as_secs()
                        )));
                    }
                }
            }
        }
        let db = match open_db(&self.path, &self.options) {
            Ok(db) => db,
            Err(e) => {
                // Keep the readers going (a read-only open writes nothing).
                match open_db_read_only(&self.path, &self.options) {
                    Ok(ro) => *slot = Some(Arc::new(ro)),
                    Err(ro) => {
                        tracing::error!(error = %ro, "store: not even a read-only reopen succeeded; reads fail until the next attempt")
                    }
                }
                return Err(e);
            }
        };
        let (size, frontier) = match ledger::load_edge(&db) {
            Ok(edge) => edge,
            Err(e) => {
                // Readable but the ledger's edge is not: stay degraded (the next attempt reopens again).
                *slot = Some(Arc::new(db));
                return Err(e);
            }
        };
        if size != ledger.frontier.size() {
            // Cannot happen when failed groups gave their leaves back; the disk is the truth.
            tracing::warn!(
                stored = size,
                in_memory = ledger.frontier.size(),
                "store reopen: the ledger size on disk differs from the writer's; using the stored one"
            );
        }
        ledger.frontier = frontier;
        ledger.committed.store(size, Ordering::Release);
        *slot = Some(Arc::new(db));
        Ok(())
    }
}

/// A small synced write: true once RocksDB accepts writes again.
fn probe(db: &DB) -> bool {
    let Some(meta) = db.cf_handle(Cf::Meta.name()) else {
        return false;
    };
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    db.put_cf_opt(meta, PROBE_KEY, now.to_be_bytes(), &sync)
        .is_ok()
}

/// Bytes available to this process on the file system of `path` (`None`: unknown).
// `fsblkcnt_t` and `c_ulong` are u32 on some targets.
#[allow(clippy::useless_conversion)]
fn free_space(path: &std::path::Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    Some(u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size())))
}
