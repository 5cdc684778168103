//! Online backup of the store and the high-water marks that must never go backwards.
//!
//! * [`Store::checkpoint`]: a consistent RocksDB checkpoint of the open store (SST files hard-linked when
//!   the target is on the same file system, copied otherwise; memtables flushed first, so every write that
//!   was acknowledged before the call is in it), taken while writes continue, and the [`StoreFacts`] of that
//!   checkpoint: record counts per column family and the [`Marks`].
//! * [`Marks`]: the TSA serial reservation mark (`tsa_serials/m/reserved`), the last CRL number
//!   (`meta/ca/crl_number`) and the audit ledger's size (`meta/ledger_size`), each a big-endian u64,
//!   absent = 0. Time-stamp serials and CRL numbers are published: after a restore they must continue
//!   above everything issued before, also what was issued after the backup was taken.
//! * [`MarkSink`]: told the store's marks each time the TSA reserves a serial block or the CA numbers a
//!   CRL (the appliance records them in the HSM, which survives the loss of the data directory).
//! * [`Store::raise_marks_blocking`]: lifts the TSA mark and the CRL number to at least given values
//!   (restore, and the start-up check against the HSM's marks).
//! * [`inspect`]: the facts of a store directory that is not open (a checkpoint), read-only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{DB, Options};
use serde::{Deserialize, Serialize};

use crate::{Batch, Cf, SCHEMA_KEY, Store, StoreError};

/// `tsa_serials` key of the TSA serial reservation mark (see `persist::tsa`).
const TSA_MARK: &[u8] = b"m/reserved";
/// `meta` key of the last CRL number handed out (see `persist::certs`).
const CRL_NUMBER: &[u8] = b"ca/crl_number";
/// `meta` key of the audit ledger's size (number of leaves).
const LEDGER_SIZE: &[u8] = b"ledger_size";

/// The high-water marks of what the appliance has published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marks {
    /// The TSA serial reservation mark: every serial handed out is below it.
    pub tsa_serial_mark: u64,
    /// The last CRL number handed out.
    pub crl_number: u64,
    /// The audit ledger's size (leaves).
    pub ledger_size: u64,
}

impl Marks {
    /// Each mark the larger of the two.
    pub fn max(self, other: Marks) -> Marks {
        Marks {
            tsa_serial_mark: self.tsa_serial_mark.max(other.tsa_serial_mark),
            crl_number: self.crl_number.max(other.crl_number),
            ledger_size: self.ledger_size.max(other.ledger_size),
        }
    }

    /// The marks where `self` is below `other`: (name, self's value, other's value).
    pub fn behind(&self, other: &Marks) -> Vec<(&'static str, u64, u64)> {
        self.named()
            .into_iter()
            .zip(other.named())
            .filter(|((_, mine), (_, theirs))| mine < theirs)
            .map(|((name, mine), (_, theirs))| (name, mine, theirs))
            .collect()
    }

    /// True when no mark of `self` is below `other`'s.
    pub fn covers(&self, other: &Marks) -> bool {
        self.behind(other).is_empty()
    }

    fn named(&self) -> [(&'static str, u64); 3] {
        [
            ("tsa_serial_mark", self.tsa_serial_mark),
            ("crl_number", self.crl_number),
            ("ledger_size", self.ledger_size),
        ]
    }
}

impl std::fmt::Display for Marks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tsa_serial_mark {}, crl_number {}, ledger_size {}",
            self.tsa_serial_mark, self.crl_number, self.ledger_size
        )
    }
}

/// What a store (or a checkpoint of it) holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreFacts {
    /// `meta/schema_version` (0 if absent).
    pub schema_version: u32,
    /// Number of keys per column family (every column family of the database, `default` included).
    pub column_families: BTreeMap<String, u64>,
    /// The high-water marks.
    pub marks: Marks,
}

/// Receives the store's [`Marks`] right after the TSA durably reserved a serial block or the CA durably
/// numbered a CRL, before the new serials or the CRL are used: an error makes that reservation or CRL fail
/// (nothing is handed out that the sink has not recorded).
///
/// Called on the blocking threads that reserve and number (never on an async executor).
pub trait MarkSink: Send + Sync {
    /// Records `marks` (the store's marks now); must be durable when it returns `Ok`.
    fn record(&self, marks: &Marks) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// A shared [`MarkSink`].
pub type SharedMarkSink = Arc<dyn MarkSink>;

/// Failures of [`Store::checkpoint`] and [`inspect`].
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The checkpoint directory exists already (RocksDB makes it itself).
    #[error("backup: {0} exists already; give a new directory")]
    Exists(PathBuf),
    /// RocksDB could not make the checkpoint.
    #[error("backup: RocksDB checkpoint into {path} failed: {message}")]
    Checkpoint {
        /// Target directory.
        path: PathBuf,
        /// RocksDB's message.
        message: String,
    },
    /// The checkpoint (or another store directory) cannot be read.
    #[error("backup: cannot read the store in {path}: {message}")]
    Inspect {
        /// Store directory.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// Reading the open store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Makes a consistent checkpoint of the open store in `dir` (which must not exist; its parent must) while
    /// writes continue, and returns the facts read back from the checkpoint. Blocking (flushes memtables,
    /// links or copies files, then counts every key of the checkpoint): call it from a blocking thread.
    pub fn checkpoint(&self, dir: &Path) -> Result<StoreFacts, BackupError> {
        if dir.exists() {
            return Err(BackupError::Exists(dir.to_path_buf()));
        }
        let fail = |e: rocksdb::Error| BackupError::Checkpoint {
            path: dir.to_path_buf(),
            message: e.into_string(),
        };
        // The handle is held for the whole checkpoint: a reopen after a write failure waits for it.
        let db = self.db(Cf::Meta)?;
        let cp = rocksdb::checkpoint::Checkpoint::new(db.as_ref()).map_err(fail)?;
        cp.create_checkpoint(dir).map_err(fail)?;
        drop(cp);
        drop(db);
        tracing::info!(path = %dir.display(), "store checkpoint created");
        inspect(dir)
    }

    /// The marks of the open store now.
    pub fn marks(&self) -> Result<Marks, StoreError> {
        Ok(Marks {
            tsa_serial_mark: self.u64_at(Cf::TsaSerials, TSA_MARK)?,
            crl_number: self.u64_at(Cf::Meta, CRL_NUMBER)?,
            ledger_size: self.u64_at(Cf::Meta, LEDGER_SIZE)?,
        })
    }

    /// Raises the TSA serial mark and the CRL number to at least `floor`'s (the ledger size cannot be raised:
    /// lost leaves cannot be made up). Durable on return; returns the marks before. Nothing else may reserve
    /// serials or number CRLs meanwhile (call it before the TSA and the CA start, or offline).
    pub fn raise_marks_blocking(&self, floor: &Marks) -> Result<Marks, StoreError> {
        let before = self.marks()?;
        let mut batch = Batch::new();
        if floor.tsa_serial_mark > before.tsa_serial_mark {
            batch.put(
                Cf::TsaSerials,
                TSA_MARK,
                floor.tsa_serial_mark.to_be_bytes(),
            );
        }
        if floor.crl_number > before.crl_number {
            batch.put(Cf::Meta, CRL_NUMBER, floor.crl_number.to_be_bytes());
        }
        self.commit_blocking(batch)?;
        Ok(before)
    }

    fn u64_at(&self, cf: Cf, key: &[u8]) -> Result<u64, StoreError> {
        match self.get(cf, key)? {
            Some(v) => decode_u64(&v).ok_or_else(|| StoreError::Read {
                cf: cf.name(),
                message: format!("{}: not an 8-byte big-endian number", hex::encode(key)),
            }),
            None => Ok(0),
        }
    }
}

fn decode_u64(v: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(v).ok().map(u64::from_be_bytes)
}

/// True when `dir` holds a RocksDB database (its `CURRENT` file).
pub fn is_store(dir: &Path) -> bool {
    dir.join("CURRENT").is_file()
}

/// The facts of the (closed) store in `dir`: opened read-only, every key counted. Blocking.
pub fn inspect(dir: &Path) -> Result<StoreFacts, BackupError> {
    let fail = |message: String| BackupError::Inspect {
        path: dir.to_path_buf(),
        message,
    };
    if !is_store(dir) {
        return Err(fail("no RocksDB database here (no CURRENT file)".into()));
    }
    let opts = Options::default();
    let names = DB::list_cf(&opts, dir).map_err(|e| fail(e.into_string()))?;
    let db =
        DB::open_cf_for_read_only(&opts, dir, &names, false).map_err(|e| fail(e.into_string()))?;
    let mut column_families = BTreeMap::new();
    for name in &names {
        let cf = db
            .cf_handle(name)
            .ok_or_else(|| fail(format!("column family {name} is not open")))?;
        let mut it = db.raw_iterator_cf(cf);
        it.seek_to_first();
        let mut n = 0u64;
        while it.valid() {
            n += 1;
            it.next();
        }
        it.status()
            .map_err(|e| fail(format!("counting {name}: {}", e.into_string())))?;
        column_families.insert(name.clone(), n);
    }
    let read = |cf: Cf, key: &[u8]| -> Result<Option<Vec<u8>>, BackupError> {
        match db.cf_handle(cf.name()) {
            Some(h) => db
                .get_cf(h, key)
                .map_err(|e| fail(format!("reading {}: {}", cf.name(), e.into_string()))),
            None => Ok(None),
        }
    };
    let number = |cf: Cf, key: &[u8]| -> Result<u64, BackupError> {
        match read(cf, key)? {
            Some(v) => decode_u64(&v).ok_or_else(|| {
                fail(format!(
                    "{}/{}: not an 8-byte big-endian number",
                    cf.name(),
                    String::from_utf8_lossy(key)
                ))
            }),
            None => Ok(0),
        }
    };
    let schema_version = match read(Cf::Meta, SCHEMA_KEY)? {
        Some(v) => <[u8; 4]>::try_from(v.as_slice())
            .map(u32::from_be_bytes)
            .map_err(|_| fail("meta/schema_version: not a 4-byte number".into()))?,
        None => 0,
    };
    Ok(StoreFacts {
        schema_version,
        column_families,
        marks: Marks {
            tsa_serial_mark: number(Cf::TsaSerials, TSA_MARK)?,
            crl_number: number(Cf::Meta, CRL_NUMBER)?,
            ledger_size: number(Cf::Meta, LEDGER_SIZE)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;
    use crate::persist::{RocksCertStore, RocksSerialStore};
    use esigd_ca::CertStore;
    use esigd_tsa::SerialStore;

    #[test]
    fn checkpoint_while_writing_has_every_acknowledged_write_and_the_marks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db"), StoreOptions::default()).unwrap();
        // The marks are the keys the persistence adapters write.
        RocksSerialStore::new(store.clone())
            .store_reserved(4097)
            .unwrap();
        let certs = RocksCertStore::new(store.clone());
        assert_eq!(certs.next_crl_number().unwrap(), 1);
        assert_eq!(certs.next_crl_number().unwrap(), 2);
        // (The ledger size is written by the ledger with its leaves: 0 here.)
        let marks = store.marks().unwrap();
        assert_eq!(
            marks,
            Marks {
                tsa_serial_mark: 4097,
                crl_number: 2,
                ledger_size: 0
            }
        );

        // A writer keeps going while the checkpoint is taken.
        let acknowledged = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (store, acknowledged, stop) = (store.clone(), acknowledged.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let mut b = Batch::new();
                    b.put(Cf::Signatures, i.to_be_bytes(), b"x".to_vec());
                    store.commit_blocking(b).unwrap();
                    i += 1;
                    acknowledged.store(i, std::sync::atomic::Ordering::SeqCst);
                }
                i
            })
        };
        while acknowledged.load(std::sync::atomic::Ordering::SeqCst) < 50 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let before = acknowledged.load(std::sync::atomic::Ordering::SeqCst);
        let cp = dir.path().join("backup");
        let facts = store.checkpoint(&cp).unwrap();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let total = writer.join().unwrap();
        let in_cp = facts.column_families["signatures"];
        assert!(
            in_cp >= before && in_cp <= total,
            "checkpoint has {in_cp} records; {before} acknowledged before, {total} in all"
        );
        assert_eq!(facts.marks, marks);
        assert_eq!(facts.schema_version, crate::SCHEMA_VERSION);
        assert!(facts.column_families["meta"] >= 2);
        assert!(matches!(store.checkpoint(&cp), Err(BackupError::Exists(_))));
        // The checkpoint opens as a store of its own, with the same records.
        assert_eq!(inspect(&cp).unwrap(), facts);
        let copy = Store::open(&cp, StoreOptions::default()).unwrap();
        for i in 0..before {
            assert!(
                copy.get(Cf::Signatures, &i.to_be_bytes())
                    .unwrap()
                    .is_some()
            );
        }
        // Raising lifts the TSA mark and the CRL number, never lowers them.
        let floor = Marks {
            tsa_serial_mark: 10_000,
            crl_number: 1,
            ledger_size: 50,
        };
        assert_eq!(copy.raise_marks_blocking(&floor).unwrap(), marks);
        let raised = copy.marks().unwrap();
        assert_eq!(
            raised,
            Marks {
                tsa_serial_mark: 10_000,
                crl_number: 2,
                ledger_size: 0
            }
        );
        assert_eq!(
            raised.behind(&floor),
            vec![("ledger_size", 0, 50)],
            "only the ledger stays behind"
        );
        assert_eq!(
            RocksSerialStore::new(copy.clone()).load_reserved().unwrap(),
            10_000
        );
        assert_eq!(RocksCertStore::new(copy).next_crl_number().unwrap(), 3);
        assert!(inspect(dir.path()).is_err());
    }

    #[test]
    fn marks_compare_field_by_field() {
        let a = Marks {
            tsa_serial_mark: 5,
            crl_number: 2,
            ledger_size: 0,
        };
        let b = Marks {
            tsa_serial_mark: 4,
            crl_number: 3,
            ledger_size: 0,
        };
        assert_eq!(a.behind(&b), vec![("crl_number", 2, 3)]);
        assert_eq!(b.behind(&a), vec![("tsa_serial_mark", 4, 5)]);
        assert!(a.max(b).covers(&a) && a.max(b).covers(&b));
        assert!(a.covers(&a));
    }
}
