//! The single writer thread: group commit with `sync=true`.
//!
//! Callers put a [`Job`] on a bounded channel. The writer blocks for the first job, then drains whatever else is
//! already waiting (up to `max_batch_ops` operations) into ONE RocksDB `WriteBatch`, writes it with `sync=true`
//! (WAL fsync) and only then acknowledges every job of that batch. While one sync runs, new jobs pile up in the
//! channel and ride the next sync together, so the number of fsyncs grows slower than the number of commits.
//!
//! When a write fails with an I/O error (disk full…), the store is degraded: jobs are refused at once and,
//! between jobs, the writer tries to recover (see [`crate::recovery`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rocksdb::{DB, WriteBatch, WriteOptions};
use tokio::sync::oneshot;

use super::batch::{Batch, Op};
use super::error::StoreError;
use super::ledger::LedgerWriter;
use super::recovery::{Degraded, Reopen};

/// One caller's batch and the channel on which its outcome is reported.
pub(crate) struct Job {
    pub(crate) batch: Batch,
    pub(crate) ack: oneshot::Sender<Result<(), StoreError>>,
}

/// What one group commit wrote; passed to [`StoreObserver::batch_written`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchStats {
    /// Number of caller commits (jobs) in the group.
    pub commits: usize,
    /// Number of put/delete operations in the group.
    pub ops: usize,
    /// Key + value bytes in the group.
    pub payload_bytes: usize,
    /// Time spent in the synced RocksDB write.
    pub duration: Duration,
    /// False when the write failed (every caller of the group got an error).
    pub ok: bool,
}

/// Observes group commits, e.g. to feed `esigd_store_batch_size` and `esigd_store_write_duration_seconds`.
///
/// Called on the writer thread after each synced write and before the callers are acknowledged: keep it cheap
/// (update a histogram, never block).
pub trait StoreObserver: Send + Sync + 'static {
    /// One group commit finished.
    fn batch_written(&self, stats: &BatchStats);
}

/// Running totals since the store was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Synced RocksDB writes (group commits).
    pub batches: u64,
    /// Caller commits acknowledged (successfully or not).
    pub commits: u64,
    /// Operations written.
    pub ops: u64,
    /// Group commits that failed.
    pub failed_batches: u64,
    /// Caller commits refused without a write because the store was degraded (see [`crate::Store::degraded`]).
    pub refused: u64,
    /// Times the database was opened again after a write failure.
    pub reopens: u64,
}

/// Lock-free counters behind [`StoreStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    batches: AtomicU64,
    commits: AtomicU64,
    ops: AtomicU64,
    failed_batches: AtomicU64,
    refused: AtomicU64,
    pub(crate) reopens: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> StoreStats {
        StoreStats {
            batches: self.batches.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            ops: self.ops.load(Ordering::Relaxed),
            failed_batches: self.failed_batches.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            reopens: self.reopens.load(Ordering::Relaxed),
        }
    }
}

/// Settings of the writer loop.
pub(crate) struct WriterConfig {
    pub(crate) max_batch_ops: usize,
    pub(crate) observer: Option<Arc<dyn StoreObserver>>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) ledger: LedgerWriter,
}

/// Runs until every sender of `rx` is dropped (the store is closed).
///
/// The writer takes the database handle from `reopen.shared` per group commit and holds no reference
/// between writes, so that a reopen can close the database.
pub(crate) fn run(rx: Receiver<Job>, mut cfg: WriterConfig, reopen: Reopen) {
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    let mut degraded: Option<Degraded> = None;
    loop {
        if let Some(state) = degraded.as_mut() {
            match rx.recv_timeout(state.until_next_check()) {
                Ok(job) => refuse(job, &rx, state, &cfg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // Checked on time also under a steady stream of refused jobs.
            if state.until_next_check().is_zero()
                && reopen.try_recover(state, &mut cfg.ledger, &cfg.counters.reopens)
            {
                degraded = None;
            }
            continue;
        }
        let Ok(first) = rx.recv() else { break };
        let mut ops = first.batch.len();
        let mut jobs = vec![first];
        while ops < cfg.max_batch_ops {
            match rx.try_recv() {
                Ok(job) => {
                    ops += job.batch.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        if let Some(reason) = write_group(reopen.db().as_deref(), &sync, jobs, ops, &mut cfg) {
            degraded = Some(reopen.degrade(reason));
        }
    }
    tracing::debug!("store writer: all handles dropped, stopping");
}

/// Answers `first` and every job already queued with the degraded store's error, without touching the disk.
fn refuse(first: Job, rx: &Receiver<Job>, state: &Degraded, cfg: &WriterConfig) {
    let err = state.error();
    let mut n = 0u64;
    for job in std::iter::once(first).chain(rx.try_iter()) {
        let _ = job.ack.send(Err(err.clone()));
        n += 1;
    }
    cfg.counters.refused.fetch_add(n, Ordering::Relaxed);
    cfg.counters.commits.fetch_add(n, Ordering::Relaxed);
}

/// Writes one group and acknowledges its jobs. Returns the cause when the failure means RocksDB refuses
/// writes from now on (an I/O error: disk full, EIO…), so that the store is degraded.
fn write_group(
    db: Option<&DB>,
    sync: &WriteOptions,
    jobs: Vec<Job>,
    ops: usize,
    cfg: &mut WriterConfig,
) -> Option<String> {
    let mut payload_bytes = 0;
    let started = Instant::now();
    // Leaf indices are handed out while building; a failed write must give them back.
    let before = cfg.ledger.frontier.clone();
    let mut degrade = None;
    let result = match db {
        // Only after a failed reopen (no read-write handle): the writer is degraded then and never gets here.
        None => {
            let message = "the database is not open (a reopen failed)".to_string();
            degrade = Some(message.clone());
            Err(StoreError::Write(message))
        }
        Some(db) => build(db, &jobs, &mut payload_bytes, &mut cfg.ledger).and_then(|wb| {
            db.write_opt(wb, sync).map_err(|e| {
                if matches!(
                    e.kind(),
                    rocksdb::ErrorKind::IOError | rocksdb::ErrorKind::Corruption
                ) {
                    degrade = Some(e.clone().into_string());
                }
                StoreError::Write(e.into_string())
            })
        }),
    };
    match &result {
        Ok(()) => cfg.ledger.publish(),
        Err(_) => cfg.ledger.frontier = before,
    }
    let stats = BatchStats {
        commits: jobs.len(),
        ops,
        payload_bytes,
        duration: started.elapsed(),
        ok: result.is_ok(),
    };
    if let Err(e) = &result {
        tracing::error!(error = %e, commits = stats.commits, "store group commit failed");
        cfg.counters.failed_batches.fetch_add(1, Ordering::Relaxed);
    }
    cfg.counters.batches.fetch_add(1, Ordering::Relaxed);
    cfg.counters
        .commits
        .fetch_add(jobs.len() as u64, Ordering::Relaxed);
    cfg.counters.ops.fetch_add(ops as u64, Ordering::Relaxed);
    if let Some(observer) = &cfg.observer {
        observer.batch_written(&stats);
    }
    for job in jobs {
        // A caller that gave up (dropped its future) no longer listens; its write is durable anyway.
        let _ = job.ack.send(result.clone());
    }
    degrade
}

fn build(
    db: &DB,
    jobs: &[Job],
    payload_bytes: &mut usize,
    ledger: &mut LedgerWriter,
) -> Result<WriteBatch, StoreError> {
    let mut wb = WriteBatch::default();
    let mut appended = false;
    for job in jobs {
        *payload_bytes += job.batch.payload_bytes();
        for op in job.batch.ops() {
            match op {
                Op::Put { cf, key, value } => wb.put_cf(handle(db, cf.name())?, key, value),
                Op::Delete { cf, key } => wb.delete_cf(handle(db, cf.name())?, key),
                Op::Leaf {
                    audit_key,
                    leaf,
                    transaction,
                    subject,
                } => {
                    ledger.append(
                        db,
                        &mut wb,
                        audit_key,
                        leaf,
                        transaction.as_deref(),
                        subject.as_deref(),
                    )?;
                    appended = true;
                }
            }
        }
    }
    if appended {
        ledger.finish(db, &mut wb)?;
    }
    Ok(wb)
}

fn handle<'a>(db: &'a DB, name: &'static str) -> Result<&'a rocksdb::ColumnFamily, StoreError> {
    // Open creates every column family, so this only fails if the store was opened wrongly.
    db.cf_handle(name)
        .ok_or_else(|| StoreError::Write(format!("column family {name} is not open")))
}
