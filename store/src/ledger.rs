//! The audit ledger's rows (`ledger` column family) and its read side.
//!
//! Layout:
//! * `l` ‖ index (u64 BE) → the leaf bytes (the audit event as logged);
//! * `n` ‖ level (u8) ‖ index (u64 BE) → the hash of a complete subtree (level 0: the leaf hash);
//! * `t` ‖ len (u8) ‖ transaction ‖ index (u64 BE) → empty: the leaves of one transaction;
//! * `u` ‖ len (u8) ‖ subject ‖ index (u64 BE) → empty: the leaves about one citizen (their pseudonymous
//!   user reference, never a name), for the citizen's own listing without a scan;
//! * `s` ‖ tree size (u64 BE) → JSON: every published signed tree head;
//! * `meta/ledger_size` (u64 BE): leaves written; `meta/ledger_sth` (JSON): the last published tree head.
//!
//! Only the writer thread appends ([`crate::Op::Leaf`]), so leaf indices follow the order of durable writes
//! and every append rides the group commit of the record it describes. Rows of a committed size never change,
//! so readers need no lock: they read below [`LedgerStore::size`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use esigd_ledger::{
    ConsistencyProof, Frontier, Hash, NodeSource, ProofError, SignedTreeHead, consistency_proof,
    inclusion_proof, leaf_hash, subtree_hash,
};
use rocksdb::{DB, WriteBatch};

use crate::{Cf, Order, Store, StoreError, persist::PersistError};

/// `meta` key of the ledger size.
pub const SIZE_KEY: &[u8] = b"ledger_size";
/// `meta` key of the last published signed tree head (JSON).
pub const STH_KEY: &[u8] = b"ledger_sth";

/// Key of leaf `index`.
pub fn leaf_key(index: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(b'l');
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// Key of the complete subtree `(level, index)`.
pub fn node_key(level: u8, index: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(10);
    k.push(b'n');
    k.push(level);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn head_key(size: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(b's');
    k.extend_from_slice(&size.to_be_bytes());
    k
}

fn transaction_prefix(transaction: &[u8]) -> Vec<u8> {
    index_prefix(b't', transaction)
}

fn subject_prefix(subject: &[u8]) -> Vec<u8> {
    index_prefix(b'u', subject)
}

/// `tag` ‖ len (u8) ‖ value (at most 255 bytes).
fn index_prefix(tag: u8, value: &[u8]) -> Vec<u8> {
    let len = value.len().min(255);
    let mut k = Vec::with_capacity(2 + len + 8);
    k.push(tag);
    k.push(len as u8);
    k.extend_from_slice(&value[..len]);
    k
}

/// Nodes read straight from RocksDB.
pub(crate) struct DbNodes<'a>(pub(crate) &'a DB);

impl NodeSource for DbNodes<'_> {
    type Error = StoreError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        let cf = self
            .0
            .cf_handle(Cf::Ledger.name())
            .ok_or(StoreError::Read {
                cf: Cf::Ledger.name(),
                message: "column family not open".into(),
            })?;
        let v = self
            .0
            .get_cf(cf, node_key(level, index))
            .map_err(|e| StoreError::Read {
                cf: Cf::Ledger.name(),
                message: e.into_string(),
            })?
            .ok_or_else(|| StoreError::Read {
                cf: Cf::Ledger.name(),
                message: format!("subtree ({level}, {index}) is missing: the ledger is damaged"),
            })?;
        v.try_into().map_err(|_| StoreError::Read {
            cf: Cf::Ledger.name(),
            message: format!("subtree ({level}, {index}) is not 32 bytes: the ledger is damaged"),
        })
    }
}

/// Reads the stored size (0 when the ledger was never written).
pub(crate) fn stored_size(db: &DB) -> Result<u64, StoreError> {
    let meta = db.cf_handle(Cf::Meta.name()).ok_or(StoreError::Read {
        cf: Cf::Meta.name(),
        message: "column family not open".into(),
    })?;
    match db.get_cf(meta, SIZE_KEY).map_err(|e| StoreError::Read {
        cf: Cf::Meta.name(),
        message: e.into_string(),
    })? {
        None => Ok(0),
        Some(v) => v
            .as_slice()
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::Read {
                cf: Cf::Meta.name(),
                message: "ledger_size is not 8 bytes".into(),
            }),
    }
}

/// The ledger's size and right edge as stored: `size.count_ones()` reads, whatever the number of leaves.
/// At open, and again when the database is reopened after a write failure.
pub(crate) fn load_edge(db: &DB) -> Result<(u64, Frontier), StoreError> {
    let size = stored_size(db)?;
    Ok((size, Frontier::load(size, &DbNodes(db))?))
}

/// The writer thread's ledger state: the right edge of the tree and the size readers may use.
pub(crate) struct LedgerWriter {
    pub(crate) frontier: Frontier,
    pub(crate) committed: Arc<AtomicU64>,
}

impl LedgerWriter {
    /// Adds the rows of one leaf to `wb` and advances the in-memory frontier (the caller restores a copy if
    /// the write fails).
    pub(crate) fn append(
        &mut self,
        db: &DB,
        wb: &mut WriteBatch,
        audit_key: &[u8],
        leaf: &[u8],
        transaction: Option<&[u8]>,
        subject: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let index = self.frontier.size();
        let ledger = handle(db, Cf::Ledger)?;
        wb.put_cf(ledger, leaf_key(index), leaf);
        for (level, i, hash) in self.frontier.append(leaf_hash(leaf)) {
            wb.put_cf(ledger, node_key(level, i), hash);
        }
        if let Some(t) = transaction {
            let mut k = transaction_prefix(t);
            k.extend_from_slice(&index.to_be_bytes());
            wb.put_cf(ledger, k, []);
        }
        if let Some(s) = subject {
            let mut k = subject_prefix(s);
            k.extend_from_slice(&index.to_be_bytes());
            wb.put_cf(ledger, k, []);
        }
        wb.put_cf(handle(db, Cf::Audit)?, audit_key, index.to_be_bytes());
        Ok(())
    }

    /// Adds the new size to `wb` (once per group commit that appended).
    pub(crate) fn finish(&self, db: &DB, wb: &mut WriteBatch) -> Result<(), StoreError> {
        wb.put_cf(
            handle(db, Cf::Meta)?,
            SIZE_KEY,
            self.frontier.size().to_be_bytes(),
        );
        Ok(())
    }

    /// After a durable write: readers may now use the new size.
    pub(crate) fn publish(&self) {
        self.committed
            .store(self.frontier.size(), Ordering::Release);
    }
}

fn handle(db: &DB, cf: Cf) -> Result<&rocksdb::ColumnFamily, StoreError> {
    db.cf_handle(cf.name())
        .ok_or_else(|| StoreError::Write(format!("column family {} is not open", cf.name())))
}

/// One leaf as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafEntry {
    /// Its index.
    pub index: u64,
    /// The leaf bytes.
    pub leaf: Vec<u8>,
}

/// Read access to the ledger: sizes, roots, proofs, leaves, the published tree head.
#[derive(Clone)]
pub struct LedgerStore {
    store: Store,
}

impl std::fmt::Debug for LedgerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerStore")
            .field("size", &self.size())
            .finish()
    }
}

fn proof_err(e: ProofError<StoreError>) -> PersistError {
    match e {
        ProofError::Read(e) => PersistError::Store(e),
        other => PersistError::OutOfRange(other.to_string()),
    }
}

impl LedgerStore {
    /// Over `store` (no I/O).
    pub fn new(store: Store) -> Self {
        LedgerStore { store }
    }

    /// Leaves durably written so far.
    pub fn size(&self) -> u64 {
        self.store.inner.ledger_committed.load(Ordering::Acquire)
    }

    /// The root of the tree of the first `size` leaves (`size <= self.size()`), in O(log n) reads.
    pub fn root(&self, size: u64) -> Result<Hash, PersistError> {
        if size > self.size() {
            return Err(PersistError::OutOfRange(format!(
                "tree size {size} is above the ledger's {} leaves",
                self.size()
            )));
        }
        if size == 0 {
            return Ok(esigd_ledger::EMPTY_ROOT);
        }
        let db = self.store.db(Cf::Ledger)?;
        Ok(subtree_hash(&DbNodes(&db), 0, size)?)
    }

    /// The audit path of leaf `index` in the tree of `size` leaves.
    pub fn inclusion(&self, index: u64, size: u64) -> Result<Vec<Hash>, PersistError> {
        self.check_size(size)?;
        let db = self.store.db(Cf::Ledger)?;
        inclusion_proof(&DbNodes(&db), index, size).map_err(proof_err)
    }

    /// The consistency proof between two tree sizes.
    pub fn consistency(&self, first: u64, second: u64) -> Result<ConsistencyProof, PersistError> {
        self.check_size(second)?;
        let db = self.store.db(Cf::Ledger)?;
        let proof = consistency_proof(&DbNodes(&db), first, second).map_err(proof_err)?;
        Ok(ConsistencyProof {
            first,
            second,
            proof,
        })
    }

    fn check_size(&self, size: u64) -> Result<(), PersistError> {
        if size > self.size() {
            return Err(PersistError::OutOfRange(format!(
                "tree size {size} is above the ledger's {} leaves",
                self.size()
            )));
        }
        Ok(())
    }

    /// One leaf.
    pub fn leaf(&self, index: u64) -> Result<Option<Vec<u8>>, PersistError> {
        if index >= self.size() {
            return Ok(None);
        }
        Ok(self.store.get(Cf::Ledger, &leaf_key(index))?)
    }

    /// Leaves `[start, end)` (clipped to the size), at most `limit`.
    pub fn leaves(
        &self,
        start: u64,
        end: u64,
        limit: usize,
    ) -> Result<Vec<LeafEntry>, PersistError> {
        let end = end.min(self.size());
        if start >= end {
            return Ok(Vec::new());
        }
        let rows = self.store.scan_range(
            Cf::Ledger,
            &leaf_key(start),
            Some(&leaf_key(end)),
            Order::Ascending,
            limit,
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|(k, v)| {
                let index = u64::from_be_bytes(k.get(1..9)?.try_into().ok()?);
                Some(LeafEntry { index, leaf: v })
            })
            .collect())
    }

    /// Leaf indices of one transaction's events below `size`, in ledger order.
    pub fn transaction(&self, transaction: &[u8], size: u64) -> Result<Vec<u64>, PersistError> {
        let prefix = transaction_prefix(transaction);
        let rows = self.store.scan_prefix(Cf::Ledger, &prefix, 10_000)?;
        Ok(rows
            .into_iter()
            .filter_map(|(k, _)| {
                let tail = k.get(prefix.len()..)?;
                Some(u64::from_be_bytes(tail.try_into().ok()?))
            })
            .filter(|&i| i < size)
            .collect())
    }

    /// Leaf indices of the events about `subject` (a user reference), newest first: at most `limit`, all
    /// below `before` (a leaf index, for the next page) and below the committed size. Reads only the
    /// subject's index rows.
    pub fn by_subject(
        &self,
        subject: &[u8],
        limit: usize,
        before: Option<u64>,
    ) -> Result<Vec<u64>, PersistError> {
        let prefix = subject_prefix(subject);
        let below = before.map_or(self.size(), |b| b.min(self.size()));
        let mut end = prefix.clone();
        end.extend_from_slice(&below.to_be_bytes());
        let rows =
            self.store
                .scan_range(Cf::Ledger, &prefix, Some(&end), Order::Descending, limit)?;
        Ok(rows
            .into_iter()
            .filter_map(|(k, _)| {
                let tail = k.get(prefix.len()..)?;
                Some(u64::from_be_bytes(tail.try_into().ok()?))
            })
            .collect())
    }

    /// The last published tree head, if any.
    pub fn published(&self) -> Result<Option<SignedTreeHead>, PersistError> {
        match self.store.get(Cf::Meta, STH_KEY)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| PersistError::corrupt(Cf::Meta, STH_KEY, e.to_string())),
        }
    }

    /// Records `sth` as published, as the latest and in the history by size (durable on return). Call
    /// before serving it.
    pub async fn publish(&self, sth: &SignedTreeHead) -> Result<(), PersistError> {
        let json = serde_json::to_vec(sth).map_err(|e| PersistError::Encode(e.to_string()))?;
        let mut b = crate::Batch::new();
        b.put(Cf::Meta, STH_KEY, json.clone());
        b.put(Cf::Ledger, head_key(sth.tree_size), json);
        Ok(self.store.commit(b).await?)
    }

    /// The last tree head published for `size` leaves, if one was.
    pub fn head(&self, size: u64) -> Result<Option<SignedTreeHead>, PersistError> {
        let key = head_key(size);
        match self.store.get(Cf::Ledger, &key)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| PersistError::corrupt(Cf::Ledger, &key, e.to_string())),
        }
    }
}
