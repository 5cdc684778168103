//! [`esigd_tsa::SerialStore`] and [`esigd_tsa::ImprintLog`] on RocksDB.
//!
//! # Why nothing is lost or duplicated after `kill -9`
//!
//! * Serials: [`BlockSerials`](esigd_tsa::BlockSerials) stores the reservation mark through
//!   [`RocksSerialStore::store_reserved`], which returns only after the synced group commit carrying it; only
//!   then are serials below the new mark handed out. After a crash the mark on disk is above every serial that
//!   may have been used, so a restart never repeats a serial (it skips the rest of the block instead).
//! * Imprint records: [`RocksImprintLog::append`] (and [`RocksImprintLog::append_async`],
//!   [`RocksImprintLog::append_all_async`]) return only after the synced group commit that carries the record.
//!   The appliance sends a token to its client only after the append returned `Ok` ([`RocksImprintLog::deliver`],
//!   [`StampQueue`]); on error it answers systemFailure and drops the token. So after `kill -9`:
//!   every token a client received has its record on disk; a token whose record commit had not finished was
//!   never delivered (its serial is simply a gap). A record is keyed by its serial, which is unique, so a
//!   record is never stored twice (a retried append overwrites the same key with the same content).
//!
//! We wait for the commit before answering (rather than answering first and logging in the background) because
//! ETSI EN 319 421 requires a record of every issued token: a background log would lose the tail of delivered
//! tokens on a crash. The cost is one fsync *per group*, not per token: the store's single writer drains every
//! commit queued while the previous fsync ran into the next one, so N concurrent callers share one sync and no
//! lock is held across the wait here (appends of different serials never serialise on this type).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::oid::ObjectIdentifier;
use esigd_tsa::{
    DigestAlgorithm, ImprintLog, ImprintRecord, SerialError, SerialStore, StampOutcome, TsaError,
};
use serde::{Deserialize, Serialize};

use super::PersistError;
use super::codec::{UnixTime, concat, decode_u64, frame, prefix_end, unframe};
use crate::backup::SharedMarkSink;
use crate::{Batch, Cf, Order, Store};

const MARK: &[u8] = b"m/reserved";
const BY_SERIAL: &[u8] = b"s/";
const BY_TIME: &[u8] = b"t/";

/// [`SerialStore`] keeping the TSA reservation mark under `tsa_serials/m/reserved`.
///
/// `store_reserved` refuses a mark below the stored one ([`PersistError::MarkBackwards`]) and is durable on
/// return. With [`RocksSerialStore::with_mark_sink`], each new mark is also handed to the sink (the HSM)
/// before `store_reserved` returns.
#[derive(Clone)]
pub struct RocksSerialStore {
    store: Store,
    // Serialises read-check-write of the mark (BlockSerials already does, but the handle may be shared).
    lock: Arc<Mutex<()>>,
    marks: Option<SharedMarkSink>,
}

impl std::fmt::Debug for RocksSerialStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksSerialStore")
            .field("path", &self.store.path())
            .finish()
    }
}

impl RocksSerialStore {
    /// A serial store over `store` (no I/O).
    pub fn new(store: Store) -> Self {
        Self {
            store,
            lock: Arc::new(Mutex::new(())),
            marks: None,
        }
    }

    /// Hands the store's marks to `sink` after each durable reservation, before it is used: a sink error
    /// fails the reservation (the serials of that block are not handed out).
    pub fn with_mark_sink(mut self, sink: SharedMarkSink) -> Self {
        self.marks = Some(sink);
        self
    }

    fn load(&self) -> Result<u64, PersistError> {
        match self.store.get(Cf::TsaSerials, MARK)? {
            Some(v) => decode_u64(&v).map_err(|r| PersistError::corrupt(Cf::TsaSerials, MARK, r)),
            None => Ok(0),
        }
    }

    fn save(&self, mark: u64) -> Result<(), PersistError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let stored = self.load()?;
        if mark < stored {
            return Err(PersistError::MarkBackwards {
                stored,
                requested: mark,
            });
        }
        let mut batch = Batch::new();
        batch.put(Cf::TsaSerials, MARK, mark.to_be_bytes());
        self.store.commit_blocking(batch)?;
        if let Some(sink) = &self.marks {
            sink.record(&self.store.marks()?)
                .map_err(|e| PersistError::MarkSink(e.to_string()))?;
        }
        Ok(())
    }
}

impl SerialStore for RocksSerialStore {
    fn load_reserved(&self) -> Result<u64, SerialError> {
        self.load().map_err(|e| SerialError::Store(Box::new(e)))
    }

    fn store_reserved(&self, mark: u64) -> Result<(), SerialError> {
        self.save(mark).map_err(|e| SerialError::Store(Box::new(e)))
    }
}

/// [`ImprintLog`] writing each issued token's record to `tsa_serials` (by serial and by genTime), and reading
/// them back for audit. See the module docs for the durability argument.
#[derive(Clone)]
pub struct RocksImprintLog {
    store: Store,
}

impl std::fmt::Debug for RocksImprintLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksImprintLog")
            .field("path", &self.store.path())
            .finish()
    }
}

impl RocksImprintLog {
    /// An imprint log over `store` (no I/O).
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Async form of [`ImprintLog::append`] for request handlers: resolves once the record is durable.
    /// The record is queued when this is called; dropping the future does not cancel the write.
    pub fn append_async(
        &self,
        record: &ImprintRecord,
    ) -> impl Future<Output = Result<(), PersistError>> + Send + use<'_> {
        let commit = record_batch(&self.store, record, None).map(|b| self.store.commit(b));
        async move {
            commit?.await?;
            Ok::<(), PersistError>(())
        }
    }

    /// The writes that record `record`, for a caller that commits them together with its own (the
    /// signing pipeline stores a signature and its time-stamp record in one durable batch).
    pub fn batch_for(&self, record: &ImprintRecord) -> Result<Batch, PersistError> {
        record_batch(&self.store, record, None)
    }

    /// [`RocksImprintLog::batch_for`] for a token of a signing transaction: its `timestamp.issued` leaf
    /// is indexed under the transaction's signatureId (hex) and names its e-Service, with the SHA-256 of
    /// the token.
    pub fn batch_for_transaction(
        &self,
        record: &ImprintRecord,
        transaction: &TokenTransaction<'_>,
    ) -> Result<Batch, PersistError> {
        record_batch(&self.store, record, Some(transaction))
    }

    /// The reply to a time-stamp request, given what [`esigd_tsa::Tsa::stamp`] returned: a granted
    /// token only once its audit record is durable; if the record cannot be stored, or the
    /// response could not be encoded, a systemFailure rejection instead (the token is withheld and
    /// its serial stays a gap). Rejections are logged (info), store failures too (error).
    ///
    /// Async: the request's task waits for the group commit without holding a thread. Sign on a
    /// blocking thread (`spawn_blocking(|| tsa.stamp(..))`), then `deliver(..).await` on the task.
    pub async fn deliver(&self, stamped: Result<StampOutcome, TsaError>) -> Vec<u8> {
        let outcome = match granted_or_reply(stamped) {
            Ok(o) => o,
            Err(reply) => return reply,
        };
        let Some(record) = &outcome.record else {
            return outcome.response_der;
        };
        match self.append_async(record).await {
            Ok(()) => outcome.response_der,
            Err(e) => withheld(record.serial, &e),
        }
    }

    /// [`RocksImprintLog::deliver`] for a blocking thread (waits for the group commit parked).
    pub fn deliver_blocking(&self, stamped: Result<StampOutcome, TsaError>) -> Vec<u8> {
        let outcome = match granted_or_reply(stamped) {
            Ok(o) => o,
            Err(reply) => return reply,
        };
        let Some(record) = &outcome.record else {
            return outcome.response_der;
        };
        match self.append_blocking(record) {
            Ok(()) => outcome.response_der,
            Err(e) => withheld(record.serial, &e),
        }
    }

    /// Async append of several records as one durable commit: one write-queue entry and one
    /// acknowledgement for all of them (a TSA that signs tokens in batches waits once per batch).
    /// The records are queued when this is called; dropping the future does not cancel the write.
    pub fn append_all_async(
        &self,
        records: &[&ImprintRecord],
    ) -> impl Future<Output = Result<(), PersistError>> + Send + use<> {
        let mut batch = Batch::new();
        let built = records.iter().try_for_each(|r| {
            batch.extend(record_batch(&self.store, r, None)?);
            Ok::<(), PersistError>(())
        });
        let commit = built.map(|()| self.store.commit(batch));
        async move {
            commit?.await?;
            Ok::<(), PersistError>(())
        }
    }

    /// Blocking append (same as [`ImprintLog::append`], with the typed error).
    pub fn append_blocking(&self, record: &ImprintRecord) -> Result<(), PersistError> {
        Ok(self
            .store
            .commit_blocking(record_batch(&self.store, record, None)?)?)
    }

    /// The record of the token with this serial.
    pub fn get(&self, serial: u64) -> Result<Option<ImprintRecord>, PersistError> {
        let key = serial_key(serial);
        match self.store.get(Cf::TsaSerials, &key)? {
            Some(v) => decode(&key, &v).map(Some),
            None => Ok(None),
        }
    }

    /// Up to `limit` records in serial order, starting after serial `after` (`None`: from the first).
    pub fn list_by_serial(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ImprintRecord>, PersistError> {
        let start = match after {
            Some(u64::MAX) => return Ok(Vec::new()),
            Some(s) => serial_key(s + 1),
            None => BY_SERIAL.to_vec(),
        };
        let end = prefix_end(BY_SERIAL);
        self.store
            .scan_range(Cf::TsaSerials, &start, Some(&end), Order::Ascending, limit)?
            .iter()
            .map(|(k, v)| decode(k, v))
            .collect()
    }

    /// Up to `limit` records with `from <= genTime < to`, oldest first (ties in serial order). To page, call
    /// again with `from` = the last record's genTime and skip the serials already seen, or use a narrower range.
    pub fn list_by_time(
        &self,
        from: SystemTime,
        to: SystemTime,
        limit: usize,
    ) -> Result<Vec<ImprintRecord>, PersistError> {
        let start = concat(BY_TIME, &unix_nanos(from).to_be_bytes());
        let end = concat(BY_TIME, &unix_nanos(to).to_be_bytes());
        if start >= end {
            return Ok(Vec::new());
        }
        self.store
            .scan_range(Cf::TsaSerials, &start, Some(&end), Order::Ascending, limit)?
            .iter()
            .map(|(k, _)| -> Result<ImprintRecord, PersistError> {
                let serial = k
                    .get(BY_TIME.len() + 8..)
                    .and_then(|s| s.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| {
                        PersistError::corrupt(Cf::TsaSerials, k, "bad time index key")
                    })?;
                self.get(serial)?.ok_or_else(|| {
                    PersistError::corrupt(Cf::TsaSerials, k, "time index entry without a record")
                })
            })
            .collect()
    }
}

impl RocksImprintLog {
    /// Removes up to `limit` records with genTime before `cutoff` (oldest first), each with its
    /// time-index entry, in one durable commit; returns how many were removed. The retention
    /// sweep of `tsa.journal_retention` ([`StampQueue::sweep_journal`]) calls it until it
    /// returns less than `limit`.
    pub fn sweep_before(&self, cutoff: SystemTime, limit: usize) -> Result<usize, PersistError> {
        let end = concat(BY_TIME, &unix_nanos(cutoff).to_be_bytes());
        let due =
            self.store
                .scan_range(Cf::TsaSerials, BY_TIME, Some(&end), Order::Ascending, limit)?;
        if due.is_empty() {
            return Ok(0);
        }
        let mut batch = Batch::new();
        for (k, _) in &due {
            if let Some(serial) = k
                .get(BY_TIME.len() + 8..)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
            {
                batch.delete(Cf::TsaSerials, serial_key(u64::from_be_bytes(serial)));
            }
            batch.delete(Cf::TsaSerials, k.clone());
        }
        self.store.commit_blocking(batch)?;
        Ok(due.len())
    }
}

impl ImprintLog for RocksImprintLog {
    fn append(
        &self,
        record: &ImprintRecord,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.append_blocking(record)?)
    }
}

/// `Ok` with the outcome when there is a granted token or a rejection to send; `Err` with the
/// reply when not even a rejection could be encoded (then a bare systemFailure).
fn granted_or_reply(stamped: Result<StampOutcome, TsaError>) -> Result<StampOutcome, Vec<u8>> {
    match stamped {
        Ok(o) => {
            if let Some(rejection) = &o.rejection {
                tracing::info!(reason = %rejection, kind = rejection.kind(), "time-stamp request rejected");
            }
            Ok(o)
        }
        Err(e) => {
            tracing::error!(error = %e, "time-stamp response could not be encoded");
            Err(system_failure(None))
        }
    }
}

/// The systemFailure reply sent instead of a token whose audit record was not stored.
fn withheld(serial: u64, e: &PersistError) -> Vec<u8> {
    tracing::error!(error = %e, serial, "time-stamp audit record not stored; token withheld");
    system_failure(Some("audit store unavailable"))
}

/// A systemFailure TimeStampResp (empty if even that cannot be encoded).
fn system_failure(text: Option<&str>) -> Vec<u8> {
    esigd_pki::tsp::TimeStampResp::rejection_der(esigd_pki::tsp::FailureInfo::SYSTEM_FAILURE, text)
        .unwrap_or_default()
}

fn serial_key(serial: u64) -> Vec<u8> {
    concat(BY_SERIAL, &serial.to_be_bytes())
}

/// Nanoseconds since the Unix epoch, clamped to the u64 range (genTime is never before 1970).
fn unix_nanos(t: SystemTime) -> u64 {
    let nanos = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos();
    u64::try_from(nanos).unwrap_or(u64::MAX)
}

/// The signing transaction a time-stamp token belongs to (its `timestamp.issued` audit event).
#[derive(Debug, Clone, Copy)]
pub struct TokenTransaction<'a> {
    /// The signatureId (hex).
    pub signature_id: &'a str,
    /// The e-Service of the signature.
    pub eservice: &'a str,
    /// The request's correlation ID, when known.
    pub request_id: Option<&'a str>,
    /// SHA-256 (hex) of the DER TimeStampToken.
    pub token_sha256: &'a str,
}

/// The record, its time-index entry and its `timestamp.issued` audit ledger leaf (serial, genTime, the
/// imprint; for a signing transaction `(signatureId, SHA-256 of the token)` too), one atomic batch: a token
/// is never answered without its leaf.
fn record_batch(
    store: &Store,
    r: &ImprintRecord,
    transaction: Option<&TokenTransaction<'_>>,
) -> Result<Batch, PersistError> {
    let meta = ImprintV1 {
        serial: r.serial,
        gen_time: UnixTime::from_system(r.gen_time),
        hash_algorithm: r.hash_algorithm.oid().to_string(),
        imprint: hex::encode(&r.imprint),
        policy: r.policy.to_string(),
        nonce: r.nonce.as_ref().map(hex::encode),
    };
    let mut time_key = concat(BY_TIME, &unix_nanos(r.gen_time).to_be_bytes());
    time_key.extend_from_slice(&r.serial.to_be_bytes());
    let mut batch = Batch::new();
    batch.put(Cf::TsaSerials, serial_key(r.serial), frame(&meta, &[])?);
    batch.put(Cf::TsaSerials, time_key, Vec::new());
    let mut event = crate::signatures::AuditEvent::new("timestamp.issued", r.gen_time);
    event.outcome = Some("success".into());
    event.tsa_serial = Some(r.serial);
    event.gen_time = Some(humantime::format_rfc3339_millis(r.gen_time).to_string());
    event.hash_type = Some(r.hash_algorithm.oid().to_string());
    event.digest = Some(hex::encode(&r.imprint));
    if let Some(t) = transaction {
        event.signature_id = Some(t.signature_id.into());
        event.eservice = Some(t.eservice.into());
        event.request_id = t.request_id.map(str::to_owned);
        event.token_sha256 = Some(t.token_sha256.into());
    }
    batch.extend(
        crate::signatures::SignatureStore::new(store.clone()).audit_batch(&event, r.gen_time)?,
    );
    Ok(batch)
}

/// JSON metadata of an imprint record, format version 1.
#[derive(Serialize, Deserialize)]
struct ImprintV1 {
    serial: u64,
    gen_time: UnixTime,
    /// Dotted OID.
    hash_algorithm: String,
    /// Lowercase hex.
    imprint: String,
    /// Dotted OID.
    policy: String,
    /// Lowercase hex nonce content octets.
    nonce: Option<String>,
}

fn decode(key: &[u8], value: &[u8]) -> Result<ImprintRecord, PersistError> {
    let corrupt = |reason: &str| PersistError::corrupt(Cf::TsaSerials, key, reason);
    let (m, _tail): (ImprintV1, &[u8]) = unframe(value).map_err(corrupt)?;
    if key != serial_key(m.serial).as_slice() {
        return Err(corrupt("serial in the value differs from the key"));
    }
    let hash_oid =
        ObjectIdentifier::new(&m.hash_algorithm).map_err(|_| corrupt("bad hash algorithm OID"))?;
    Ok(ImprintRecord {
        serial: m.serial,
        gen_time: m.gen_time.to_system().map_err(corrupt)?,
        hash_algorithm: DigestAlgorithm::from_oid(&hash_oid)
            .ok_or_else(|| corrupt("unknown hash algorithm"))?,
        imprint: hex::decode(&m.imprint).map_err(|_| corrupt("imprint is not hex"))?,
        policy: ObjectIdentifier::new(&m.policy).map_err(|_| corrupt("bad policy OID"))?,
        nonce: m
            .nonce
            .map(hex::decode)
            .transpose()
            .map_err(|_| corrupt("nonce is not hex"))?,
    })
}

/// Most requests one signing thread takes from the queue at a time (and commits together): a
/// batch's first reply waits for the whole batch to be signed (16 × ≈ 70 µs with SoftHSM).
const STAMP_BATCH: usize = 16;

/// What a [`StampQueue`] signs with: `Tsa::stamp` of the appliance's TSA (request DER, genTime).
pub type StampFn = dyn Fn(&[u8], SystemTime) -> Result<StampOutcome, TsaError> + Send + Sync;

/// Why [`StampQueue::stamp`] did not take a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StampError {
    /// `tsa.queue_max` requests are already waiting: answer 503 with `Retry-After`.
    #[error(
        "the time-stamp queue is full (tsa.queue_max = {capacity} requests waiting); retry later"
    )]
    Busy {
        /// The configured capacity (`tsa.queue_max`).
        capacity: usize,
    },
}

struct StampJob {
    request: Vec<u8>,
    reply: tokio::sync::oneshot::Sender<Vec<u8>>,
    runtime: tokio::runtime::Handle,
}

/// `POST /tsa` without a thread hand-off per request: a fixed set of signing threads takes the
/// waiting requests from one queue in batches, signs them one after the other, writes the batch's
/// audit records as one durable commit, and releases each reply when that commit is acknowledged.
///
/// Same replies and the same guarantee as [`RocksImprintLog::deliver`] (a token is sent only
/// after its record is durable; otherwise systemFailure and a serial gap), for less CPU: with
/// `spawn_blocking` every request wakes an idle blocking thread, and every audit append is a
/// write-queue entry of its own whose acknowledgement wakes its waiter. Here a signing thread
/// sleeps only when the queue is empty, and one commit and one task serve a whole batch. Measured
/// on the development machine (SoftHSM, 32 keep-alive clients, `benches/tsa_design.rs`): ≈ 145 µs
/// of esigd CPU per token against ≈ 230 µs for `spawn_blocking` + a parked wait.
///
/// The queue is bounded (`tsa.queue_max`): when that many requests wait, [`StampQueue::stamp`]
/// answers [`StampError::Busy`] at once instead of queueing more (memory and latency stay bounded
/// under a flood; the caller answers 503).
///
/// genTime is taken when a signing thread starts on the request. `threads` should be the HSM
/// session pool size: more threads only wait for sessions.
///
/// The signing threads (and the journal sweep, [`StampQueue::sweep_journal`]) hold the audit log
/// (and so the RocksDB handle): [`StampQueue::close`], or dropping the queue, waits for them, so
/// the database is never torn down under a running thread.
pub struct StampQueue {
    tx: Mutex<Option<std::sync::mpsc::SyncSender<StampJob>>>,
    capacity: usize,
    log: RocksImprintLog,
    /// Dropping it stops the journal sweep.
    stop_sweep: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for StampQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StampQueue")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl StampQueue {
    /// Starts `threads` (at least one) signing threads named `esigd-tsa-sign`, taking from a
    /// queue of at most `capacity` (at least one) waiting requests (`tsa.queue_max`).
    pub fn start(
        stamp: Arc<StampFn>,
        log: RocksImprintLog,
        threads: usize,
        capacity: usize,
    ) -> std::io::Result<StampQueue> {
        let capacity = capacity.max(1);
        let (tx, rx) = std::sync::mpsc::sync_channel::<StampJob>(capacity);
        let rx = Arc::new(Mutex::new(rx));
        let queue = StampQueue {
            tx: Mutex::new(Some(tx)),
            capacity,
            log: log.clone(),
            stop_sweep: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
        };
        for _ in 0..threads.max(1) {
            let (rx, stamp, log) = (rx.clone(), stamp.clone(), log.clone());
            let thread = std::thread::Builder::new()
                .name("esigd-tsa-sign".into())
                // On error `queue` is dropped, which stops and joins the threads already started.
                .spawn(move || sign_batches(&rx, &*stamp, &log))?;
            queue.lock_threads().push(thread);
        }
        Ok(queue)
    }

    /// Starts the retention sweep of the token records (`tsa.journal_retention`): every `every`,
    /// records whose genTime is older than `retention` are removed (in commits of 1,000), on a
    /// thread named `esigd-tsa-sweep` that [`StampQueue::close`] stops. Call it once.
    pub fn sweep_journal(&self, retention: Duration, every: Duration) -> std::io::Result<()> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let log = self.log.clone();
        let thread = std::thread::Builder::new()
            .name("esigd-tsa-sweep".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    let Some(cutoff) = SystemTime::now().checked_sub(retention) else {
                        continue;
                    };
                    sweep_journal_once(&log, cutoff);
                }
            })?;
        *self.stop_sweep.lock().unwrap_or_else(|p| p.into_inner()) = Some(stop);
        self.lock_threads().push(thread);
        Ok(())
    }

    /// The DER TimeStampResp for a DER TimeStampReq, once a granted token's audit record is
    /// durable (see [`RocksImprintLog::deliver`] for the replies), or [`StampError::Busy`] at
    /// once when `tsa.queue_max` requests are waiting. Call it on a tokio task.
    pub async fn stamp(&self, request: Vec<u8>) -> Result<Vec<u8>, StampError> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("StampQueue::stamp called outside a tokio runtime");
            return Ok(system_failure(None));
        };
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job = StampJob {
            request,
            reply,
            runtime,
        };
        let sent = match self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|tx| tx.try_send(job))
        {
            Some(Ok(())) => true,
            Some(Err(std::sync::mpsc::TrySendError::Full(_))) => {
                return Err(StampError::Busy {
                    capacity: self.capacity,
                });
            }
            Some(Err(std::sync::mpsc::TrySendError::Disconnected(_))) | None => false,
        };
        match (sent, rx.await) {
            (true, Ok(der)) => Ok(der),
            _ => {
                tracing::error!("time-stamp signing threads are gone");
                Ok(system_failure(None))
            }
        }
    }

    /// Stops taking requests and waits until the signing threads have finished the queued ones
    /// and exited, and the journal sweep has stopped (blocking: at shutdown, or from a blocking
    /// thread). Later calls to [`StampQueue::stamp`] answer systemFailure.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.stop_sweep
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let threads = std::mem::take(&mut *self.lock_threads());
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("a time-stamp signing thread panicked");
            }
        }
    }

    fn lock_threads(&self) -> std::sync::MutexGuard<'_, Vec<std::thread::JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for StampQueue {
    fn drop(&mut self) {
        self.close();
    }
}

/// One pass of the journal sweep: every record older than `cutoff`, 1,000 per commit.
fn sweep_journal_once(log: &RocksImprintLog, cutoff: SystemTime) {
    const CHUNK: usize = 1000;
    let mut removed = 0;
    loop {
        match log.sweep_before(cutoff, CHUNK) {
            Ok(n) => {
                removed += n;
                if n < CHUNK {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "time-stamp journal sweep failed (tsa.journal_retention)");
                break;
            }
        }
    }
    if removed > 0 {
        tracing::info!(
            removed,
            "time-stamp records older than tsa.journal_retention removed"
        );
    }
}

/// One signing thread: batches from the queue until it is closed.
fn sign_batches(
    rx: &Mutex<std::sync::mpsc::Receiver<StampJob>>,
    stamp: &StampFn,
    log: &RocksImprintLog,
) {
    loop {
        let jobs = {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            let Ok(first) = rx.recv() else { return };
            let mut jobs = vec![first];
            while jobs.len() < STAMP_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            jobs
        };
        let mut granted = Vec::with_capacity(jobs.len());
        for job in jobs {
            let request = &job.request;
            let Ok(stamped) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                stamp(request, SystemTime::now())
            })) else {
                tracing::error!("time-stamp signing panicked");
                let _ = job.reply.send(system_failure(None));
                continue;
            };
            match granted_or_reply(stamped) {
                Ok(outcome) if outcome.record.is_some() => granted.push((outcome, job)),
                Ok(outcome) => {
                    let _ = job.reply.send(outcome.response_der);
                }
                Err(reply) => {
                    let _ = job.reply.send(reply);
                }
            }
        }
        let Some(runtime) = granted.first().map(|(_, job)| job.runtime.clone()) else {
            continue;
        };
        let records: Vec<&ImprintRecord> = granted
            .iter()
            .filter_map(|(o, _)| o.record.as_ref())
            .collect();
        let commit = log.append_all_async(&records);
        drop(records);
        runtime.spawn(async move {
            let stored = commit.await;
            for (outcome, job) in granted {
                let der = match (&stored, &outcome.record) {
                    (Err(e), Some(record)) => withheld(record.serial, e),
                    _ => outcome.response_der,
                };
                let _ = job.reply.send(der);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;
    use esigd_tsa::Rejection;

    const POLICY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1.2");

    /// A stand-in for `Tsa::stamp`: an 8-byte request is serial number `n`, granted with the
    /// reply `token-n`; anything else is rejected.
    fn fake_stamp(request: &[u8], now: SystemTime) -> Result<StampOutcome, TsaError> {
        let Ok(bytes) = <[u8; 8]>::try_from(request) else {
            return Ok(StampOutcome {
                response_der: b"rejected".to_vec(),
                record: None,
                rejection: Some(Rejection::UnacceptedExtension),
            });
        };
        let serial = u64::from_be_bytes(bytes);
        Ok(StampOutcome {
            response_der: format!("token-{serial}").into_bytes(),
            record: Some(ImprintRecord {
                serial,
                gen_time: now,
                hash_algorithm: DigestAlgorithm::Sha256,
                imprint: DigestAlgorithm::Sha256.digest(request),
                policy: POLICY,
                nonce: None,
            }),
            rejection: None,
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stamp_queue_replies_only_after_the_record_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let log = RocksImprintLog::new(store);
        let queue =
            Arc::new(StampQueue::start(Arc::new(fake_stamp), log.clone(), 3, 1024).unwrap());
        let tasks: Vec<_> = (1..=300u64)
            .map(|serial| {
                let (queue, log) = (queue.clone(), log.clone());
                tokio::spawn(async move {
                    let reply = queue.stamp(serial.to_be_bytes().to_vec()).await.unwrap();
                    assert_eq!(reply, format!("token-{serial}").into_bytes());
                    // The reply is out: the record must already be readable (and durable).
                    let record = log.get(serial).unwrap().expect("record before reply");
                    assert_eq!(record.serial, serial);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // Rejections pass through without a record.
        assert_eq!(
            queue.stamp(b"bad".to_vec()).await.unwrap(),
            b"rejected".to_vec()
        );
        assert_eq!(log.list_by_serial(None, 1000).unwrap().len(), 300);
        // A closed queue answers systemFailure instead of hanging.
        queue.close();
        let reply = queue.stamp(7u64.to_be_bytes().to_vec()).await.unwrap();
        let resp = <esigd_pki::tsp::TimeStampResp as der::Decode>::from_der(&reply).unwrap();
        assert_eq!(resp.status.status, esigd_pki::tsp::PkiStatus::Rejection);
        assert_eq!(
            resp.failure_info().unwrap(),
            Some(esigd_pki::tsp::FailureInfo::SYSTEM_FAILURE)
        );
    }

    /// A full queue (`tsa.queue_max`) answers Busy at once instead of growing; the requests
    /// already queued are still signed, and the queue takes requests again once it drains.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_stamp_queue_answers_busy_at_once_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let log = RocksImprintLog::new(Store::open(dir.path(), StoreOptions::default()).unwrap());
        // The signing thread reports each request it starts and then waits for a release.
        let (started_tx, started) = std::sync::mpsc::channel::<()>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (started_tx, released) = (Mutex::new(started_tx), Mutex::new(released));
        let blocking_stamp = move |request: &[u8], now: SystemTime| {
            let _ = started_tx.lock().unwrap().send(());
            let _ = released.lock().unwrap().recv();
            fake_stamp(request, now)
        };
        let queue = Arc::new(StampQueue::start(Arc::new(blocking_stamp), log, 1, 2).unwrap());
        // The one signing thread takes request 1 and blocks in the (fake) HSM.
        let q = queue.clone();
        let first = tokio::spawn(async move { q.stamp(1u64.to_be_bytes().to_vec()).await });
        let started = tokio::task::spawn_blocking(move || {
            started.recv_timeout(Duration::from_secs(60)).unwrap();
            started
        })
        .await
        .unwrap();
        // Two more fill the queue (capacity 2): polled once, each is queued and waits.
        let mut second = Box::pin(queue.stamp(2u64.to_be_bytes().to_vec()));
        let mut third = Box::pin(queue.stamp(3u64.to_be_bytes().to_vec()));
        for waiting in [&mut second, &mut third] {
            assert!(
                tokio::time::timeout(Duration::ZERO, waiting).await.is_err(),
                "answered before the signing thread was released"
            );
        }
        // The next one is refused at once, naming the setting (an unbounded queue would keep
        // it waiting for the blocked signing thread).
        let e = tokio::time::timeout(
            Duration::from_secs(30),
            queue.stamp(4u64.to_be_bytes().to_vec()),
        )
        .await
        .expect("not answered at once: queued beyond tsa.queue_max = 2")
        .expect_err("a request was queued beyond tsa.queue_max = 2");
        assert_eq!(e, StampError::Busy { capacity: 2 });
        assert!(e.to_string().contains("tsa.queue_max"), "{e}");
        // Released: every queued request is signed.
        for _ in 0..4 {
            release.send(()).unwrap();
        }
        assert_eq!(first.await.unwrap().unwrap(), b"token-1".to_vec());
        assert_eq!(second.await.unwrap(), b"token-2".to_vec());
        assert_eq!(third.await.unwrap(), b"token-3".to_vec());
        // Drained: requests are taken again.
        assert_eq!(
            queue.stamp(5u64.to_be_bytes().to_vec()).await.unwrap(),
            b"token-5".to_vec()
        );
        drop(started);
    }

    /// The journal sweep removes the records older than the retention (record and time index),
    /// and keeps the newer ones readable by serial and by time.
    #[test]
    fn the_journal_sweep_removes_only_records_older_than_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let log = RocksImprintLog::new(Store::open(dir.path(), StoreOptions::default()).unwrap());
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let day = Duration::from_secs(86_400);
        for serial in 1..=10u64 {
            let mut outcome = fake_stamp(&serial.to_be_bytes(), t0 + day * serial as u32).unwrap();
            log.append_blocking(outcome.record.as_mut().unwrap())
                .unwrap();
        }
        // Retention ends at day 4.5: serials 1..=4 go, 5..=10 stay; two passes of 3.
        let cutoff = t0 + day * 4 + day / 2;
        assert_eq!(log.sweep_before(cutoff, 3).unwrap(), 3);
        assert_eq!(log.sweep_before(cutoff, 3).unwrap(), 1);
        assert_eq!(log.sweep_before(cutoff, 3).unwrap(), 0);
        for serial in 1..=4 {
            assert!(log.get(serial).unwrap().is_none(), "{serial} kept");
        }
        let left: Vec<u64> = log
            .list_by_serial(None, 100)
            .unwrap()
            .iter()
            .map(|r| r.serial)
            .collect();
        assert_eq!(left, (5..=10).collect::<Vec<_>>());
        let by_time = log.list_by_time(UNIX_EPOCH, t0 + day * 100, 100).unwrap();
        assert_eq!(
            by_time.len(),
            6,
            "the time index lost its entries with the records"
        );
        // The periodic pass does the same with the wall clock: a record from 1970 + 1 s is
        // older than any retention that has passed.
        let mut old =
            fake_stamp(&99u64.to_be_bytes(), UNIX_EPOCH + Duration::from_secs(1)).unwrap();
        log.append_blocking(old.record.as_mut().unwrap()).unwrap();
        sweep_journal_once(
            &log,
            SystemTime::now() - Duration::from_secs(10 * 365 * 86_400),
        );
        assert!(log.get(99).unwrap().is_none());
        assert_eq!(log.list_by_serial(None, 100).unwrap().len(), 6);
    }
}
