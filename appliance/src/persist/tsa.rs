//! [`esigd_tsa::SerialStore`] and [`esigd_tsa::ImprintLog`] on RocksDB.
//!
//! # Why nothing is lost or duplicated after `kill -9`
//!
//! * Serials: [`BlockSerials`](esigd_tsa::BlockSerials) stores the reservation mark through
//!   [`RocksSerialStore::store_reserved`], which returns only after the synced group commit carrying it; only
//!   then are serials below the new mark handed out. After a crash the mark on disk is above every serial that
//!   may have been used, so a restart never repeats a serial (it skips the rest of the block instead).
//! * Imprint records: [`RocksImprintLog::append`] (and [`RocksImprintLog::append_async`]) return only after
//!   the synced group commit that carries the record. The appliance sends a token to its client only after
//!   `append` returned `Ok`; on error it answers systemFailure and drops the token. So after `kill -9`:
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
use crate::store::{Batch, Cf, Order, Store};

const MARK: &[u8] = b"m/reserved";
const BY_SERIAL: &[u8] = b"s/";
const BY_TIME: &[u8] = b"t/";

/// [`SerialStore`] keeping the TSA reservation mark under `tsa_serials/m/reserved`.
///
/// `store_reserved` refuses a mark below the stored one ([`PersistError::MarkBackwards`]) and is durable on
/// return.
#[derive(Clone)]
pub struct RocksSerialStore {
    store: Store,
    // Serialises read-check-write of the mark (BlockSerials already does, but the handle may be shared).
    lock: Arc<Mutex<()>>,
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
        }
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
        Ok(self.store.commit_blocking(batch)?)
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
        let commit = record_batch(record).map(|b| self.store.commit(b));
        async move {
            commit?.await?;
            Ok::<(), PersistError>(())
        }
    }

    /// The writes that record `record`, for a caller that commits them together with its own (the
    /// signing pipeline stores a signature and its time-stamp record in one durable batch).
    pub fn batch_for(&self, record: &ImprintRecord) -> Result<Batch, PersistError> {
        record_batch(record)
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

    /// Blocking append (same as [`ImprintLog::append`], with the typed error).
    pub fn append_blocking(&self, record: &ImprintRecord) -> Result<(), PersistError> {
        Ok(self.store.commit_blocking(record_batch(record)?)?)
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
            Err(esigd_pki::tsp::TimeStampResp::rejection_der(
                esigd_pki::tsp::FailureInfo::SYSTEM_FAILURE,
                None,
            )
            .unwrap_or_default())
        }
    }
}

/// The systemFailure reply sent instead of a token whose audit record was not stored.
fn withheld(serial: u64, e: &PersistError) -> Vec<u8> {
    tracing::error!(error = %e, serial, "time-stamp audit record not stored; token withheld");
    esigd_pki::tsp::TimeStampResp::rejection_der(
        esigd_pki::tsp::FailureInfo::SYSTEM_FAILURE,
        Some("audit store unavailable"),
    )
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

/// The record and its time-index entry, one atomic batch.
fn record_batch(r: &ImprintRecord) -> Result<Batch, PersistError> {
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
