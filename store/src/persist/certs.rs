//! [`esigd_ca::CertStore`] on RocksDB.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use esigd_ca::{
    CertRecord, CertStore, ListQuery, ProfileKind, RevocationReason, StatusChange, StoreError,
    StoredStatus,
};
use serde::{Deserialize, Serialize};

use super::PersistError;
use super::codec::{UnixTime, concat, decode_u64, frame, prefix_end, unframe};
use crate::backup::SharedMarkSink;
use crate::{Batch, Cf, Order, Store};

const RECORD: &[u8] = b"c/";
const REVOKED: &[u8] = b"r/";
const PROFILE: &[u8] = b"p/";
const CRL_NUMBER: &[u8] = b"ca/crl_number";
const DEFAULT_LIMIT: usize = 100;
/// Lock stripes: writes to the same serial serialise, writes to different serials (almost always different
/// stripes) run concurrently and share the store's group commits.
const STRIPES: usize = 64;

/// [`CertStore`] on the appliance store (see the [module docs](super) for keys and format).
///
/// `insert_new` and `update_status` are read-check-write sequences; the store's writer has no transactions, so
/// each runs under the lock stripe of its serial until its batch is durable. Every write to a certificate key
/// goes through these two methods, hence the check and the write are atomic with respect to each other. (Two
/// `RocksCertStore`s over the same store would not share the stripes: clone one handle instead.)
///
/// With [`RocksCertStore::with_mark_sink`], each new CRL number is handed to the sink (the HSM) before
/// `next_crl_number` returns it.
#[derive(Clone)]
pub struct RocksCertStore {
    inner: Arc<Inner>,
    marks: Option<SharedMarkSink>,
}

struct Inner {
    store: Store,
    stripes: Vec<Mutex<()>>,
    crl: Mutex<()>,
}

impl std::fmt::Debug for RocksCertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksCertStore")
            .field("path", &self.inner.store.path())
            .finish()
    }
}

impl RocksCertStore {
    /// A certificate store over `store` (no I/O).
    pub fn new(store: Store) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
                crl: Mutex::new(()),
            }),
            marks: None,
        }
    }

    /// Hands the store's marks to `sink` after each durable CRL number, before it is used: a sink error
    /// fails the CRL (that number is never published).
    pub fn with_mark_sink(mut self, sink: SharedMarkSink) -> Self {
        self.marks = Some(sink);
        self
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    fn stripe(&self, serial: &[u8]) -> MutexGuard<'_, ()> {
        let mut h = DefaultHasher::new();
        serial.hash(&mut h);
        let i = usize::try_from(h.finish() % STRIPES as u64).unwrap_or(0);
        // The guarded data is `()`: a panic elsewhere cannot leave it inconsistent.
        self.inner.stripes[i]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self, serial: &[u8]) -> Result<Option<CertRecord>, PersistError> {
        let key = concat(RECORD, serial);
        match self.inner.store.get(Cf::Certificates, &key)? {
            Some(v) => decode_record(&key, &v).map(Some),
            None => Ok(None),
        }
    }

    fn do_insert(&self, record: &CertRecord) -> Result<(), StoreError> {
        let _guard = self.stripe(&record.serial);
        let key = concat(RECORD, &record.serial);
        if self
            .inner
            .store
            .get(Cf::Certificates, &key)
            .map_err(backend)?
            .is_some()
        {
            return Err(StoreError::SerialExists(record.serial_hex()));
        }
        let mut batch = Batch::new();
        batch.put(
            Cf::Certificates,
            key,
            encode_record(record).map_err(backend)?,
        );
        batch.put(
            Cf::Certificates,
            profile_key(record.profile, &record.serial),
            Vec::new(),
        );
        if !matches!(record.status, StoredStatus::Active) {
            batch.put(
                Cf::Certificates,
                concat(REVOKED, &record.serial),
                Vec::new(),
            );
        }
        self.inner.store.commit_blocking(batch).map_err(backend)
    }

    fn do_update(&self, serial: &[u8], change: &StatusChange) -> Result<(), StoreError> {
        let _guard = self.stripe(serial);
        let mut record = self
            .read(serial)
            .map_err(backend)?
            .ok_or_else(|| StoreError::NotFound(hex::encode(serial)))?;
        if record.status != change.from {
            return Err(StoreError::Conflict(hex::encode(serial)));
        }
        record.status = change.to;
        record.history.push(change.clone());
        let mut batch = Batch::new();
        batch.put(
            Cf::Certificates,
            concat(RECORD, serial),
            encode_record(&record).map_err(backend)?,
        );
        let revoked_key = concat(REVOKED, serial);
        match change.to {
            StoredStatus::Active => batch.delete(Cf::Certificates, revoked_key),
            _ => batch.put(Cf::Certificates, revoked_key, Vec::new()),
        };
        self.inner.store.commit_blocking(batch).map_err(backend)
    }

    /// Records for the serials found under `index` (keys `index || serial`), after `after`, up to `limit`.
    fn via_index(
        &self,
        index: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<CertRecord>, PersistError> {
        let start = match after {
            // The smallest key strictly after `index || after` is `index || after || 0x00`.
            Some(a) => concat(&concat(index, a), &[0]),
            None => index.to_vec(),
        };
        let end = prefix_end(index);
        let page = self.inner.store.scan_range(
            Cf::Certificates,
            &start,
            Some(&end),
            Order::Ascending,
            limit,
        )?;
        page.iter()
            .map(|(k, _)| -> Result<CertRecord, PersistError> {
                let serial = &k[index.len()..];
                // Records are never deleted and are written in the same batch as their index entries, so a
                // dangling entry means damage; fail rather than silently omit a certificate (e.g. from a CRL).
                self.read(serial)?.ok_or_else(|| {
                    PersistError::corrupt(Cf::Certificates, k, "index entry without a record")
                })
            })
            .collect()
    }

    fn do_list(&self, query: &ListQuery) -> Result<Vec<CertRecord>, PersistError> {
        let limit = if query.limit == 0 {
            DEFAULT_LIMIT
        } else {
            query.limit
        };
        if let Some(profile) = query.profile {
            return self.via_index(
                &profile_prefix(profile),
                query.after_serial.as_deref(),
                limit,
            );
        }
        let start = match &query.after_serial {
            Some(a) => concat(&concat(RECORD, a), &[0]),
            None => RECORD.to_vec(),
        };
        let end = prefix_end(RECORD);
        self.inner
            .store
            .scan_range(
                Cf::Certificates,
                &start,
                Some(&end),
                Order::Ascending,
                limit,
            )?
            .iter()
            .map(|(k, v)| decode_record(k, v))
            .collect()
    }

    fn do_revoked(&self) -> Result<Vec<CertRecord>, PersistError> {
        let mut out = self.via_index(REVOKED, None, usize::MAX)?;
        // The index and the record are written atomically, but a resume may land between our index scan and the
        // record read: the record's own status decides.
        out.retain(|r| !matches!(r.status, StoredStatus::Active));
        Ok(out)
    }

    fn do_next_crl_number(&self) -> Result<u64, PersistError> {
        let _guard = self.inner.crl.lock().unwrap_or_else(|p| p.into_inner());
        // Read the durable value every time (no cache): if a previous commit reported an error but did reach the
        // disk, the number it carried is still never handed out again.
        let last = match self.inner.store.get(Cf::Meta, CRL_NUMBER)? {
            Some(v) => {
                decode_u64(&v).map_err(|r| PersistError::corrupt(Cf::Meta, CRL_NUMBER, r))?
            }
            None => 0,
        };
        let next = last
            .checked_add(1)
            .ok_or(PersistError::CrlNumberExhausted)?;
        let mut batch = Batch::new();
        batch.put(Cf::Meta, CRL_NUMBER, next.to_be_bytes());
        self.inner.store.commit_blocking(batch)?;
        if let Some(sink) = &self.marks {
            sink.record(&self.inner.store.marks()?)
                .map_err(|e| PersistError::MarkSink(e.to_string()))?;
        }
        Ok(next)
    }
}

impl CertStore for RocksCertStore {
    fn insert_new(&self, record: &CertRecord) -> Result<(), StoreError> {
        self.do_insert(record)
    }

    fn contains(&self, serial: &[u8]) -> Result<bool, StoreError> {
        Ok(self
            .inner
            .store
            .get(Cf::Certificates, &concat(RECORD, serial))
            .map_err(backend)?
            .is_some())
    }

    fn get(&self, serial: &[u8]) -> Result<Option<CertRecord>, StoreError> {
        self.read(serial).map_err(backend)
    }

    fn update_status(&self, serial: &[u8], change: &StatusChange) -> Result<(), StoreError> {
        self.do_update(serial, change)
    }

    fn list(&self, query: &ListQuery) -> Result<Vec<CertRecord>, StoreError> {
        self.do_list(query).map_err(backend)
    }

    fn revoked(&self) -> Result<Vec<CertRecord>, StoreError> {
        self.do_revoked().map_err(backend)
    }

    fn next_crl_number(&self) -> Result<u64, StoreError> {
        self.do_next_crl_number().map_err(backend)
    }
}

fn backend(e: impl Into<PersistError>) -> StoreError {
    StoreError::Backend(Box::new(e.into()))
}

fn profile_prefix(profile: ProfileKind) -> Vec<u8> {
    let mut k = PROFILE.to_vec();
    k.extend_from_slice(profile.as_str().as_bytes());
    k.push(b'/');
    k
}

fn profile_key(profile: ProfileKind, serial: &[u8]) -> Vec<u8> {
    concat(&profile_prefix(profile), serial)
}

/// JSON metadata of a certificate record, format version 1.
#[derive(Serialize, Deserialize)]
struct CertMetaV1 {
    profile: String,
    subject: String,
    not_before: UnixTime,
    not_after: UnixTime,
    status: StatusV1,
    history: Vec<ChangeV1>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
enum StatusV1 {
    Active,
    Suspended { since: UnixTime },
    Revoked { since: UnixTime, reason: u8 },
}

#[derive(Serialize, Deserialize)]
struct ChangeV1 {
    from: StatusV1,
    to: StatusV1,
    actor: String,
    /// The requester's uid (admin socket `SO_PEERCRED`); absent in records written before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    justification: String,
    at: UnixTime,
}

impl From<StoredStatus> for StatusV1 {
    fn from(s: StoredStatus) -> Self {
        match s {
            StoredStatus::Active => StatusV1::Active,
            StoredStatus::Suspended { since } => StatusV1::Suspended {
                since: UnixTime::from_system(since),
            },
            StoredStatus::Revoked { since, reason } => StatusV1::Revoked {
                since: UnixTime::from_system(since),
                reason: reason.code(),
            },
        }
    }
}

impl StatusV1 {
    fn to_status(&self) -> Result<StoredStatus, String> {
        Ok(match self {
            StatusV1::Active => StoredStatus::Active,
            StatusV1::Suspended { since } => StoredStatus::Suspended {
                since: since.to_system()?,
            },
            StatusV1::Revoked { since, reason } => StoredStatus::Revoked {
                since: since.to_system()?,
                reason: RevocationReason::from_code(*reason)?,
            },
        })
    }
}

fn encode_record(r: &CertRecord) -> Result<Vec<u8>, PersistError> {
    let meta = CertMetaV1 {
        profile: r.profile.as_str().to_owned(),
        subject: r.subject.clone(),
        not_before: UnixTime::from_system(r.not_before),
        not_after: UnixTime::from_system(r.not_after),
        status: r.status.into(),
        history: r
            .history
            .iter()
            .map(|c| ChangeV1 {
                from: c.from.into(),
                to: c.to.into(),
                actor: c.actor.clone(),
                uid: c.uid,
                justification: c.justification.clone(),
                at: UnixTime::from_system(c.at),
            })
            .collect(),
    };
    frame(&meta, &r.der)
}

/// Decodes the value stored under `key` (`c/` serial).
fn decode_record(key: &[u8], value: &[u8]) -> Result<CertRecord, PersistError> {
    let corrupt = |reason: String| PersistError::corrupt(Cf::Certificates, key, reason);
    let serial = key
        .strip_prefix(RECORD)
        .ok_or_else(|| corrupt("not a certificate record key".into()))?;
    let (meta, der): (CertMetaV1, &[u8]) = unframe(value).map_err(|r| corrupt(r.into()))?;
    let profile = ProfileKind::parse(&meta.profile)
        .ok_or_else(|| corrupt(format!("unknown profile {:?}", meta.profile)))?;
    let history = meta
        .history
        .iter()
        .map(|c| -> Result<StatusChange, String> {
            Ok(StatusChange {
                from: c.from.to_status()?,
                to: c.to.to_status()?,
                actor: c.actor.clone(),
                uid: c.uid,
                justification: c.justification.clone(),
                at: c.at.to_system()?,
            })
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(corrupt)?;
    Ok(CertRecord {
        serial: serial.to_vec(),
        profile,
        subject: meta.subject,
        not_before: meta.not_before.to_system().map_err(|r| corrupt(r.into()))?,
        not_after: meta.not_after.to_system().map_err(|r| corrupt(r.into()))?,
        status: meta.status.to_status().map_err(corrupt)?,
        history,
        der: der.to_vec(),
    })
}
