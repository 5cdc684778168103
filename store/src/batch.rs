//! Column families and the set of operations committed atomically by one caller.

/// The column families of the appliance store. Opening the store creates missing ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cf {
    /// Signature records, keyed by signatureId.
    Signatures,
    /// Issued certificates, keyed by serial.
    Certificates,
    /// TSA serial block reservations and issued-token records.
    TsaSerials,
    /// Audit events, keyed by [`crate::AuditKey`] (big-endian time + sequence).
    Audit,
    /// Store metadata (schema version, counters).
    Meta,
    /// Citizens' SCD keys: certificate records with their owner, pseudonym and device indexes.
    Scd,
    /// The audit ledger's Merkle tree: leaves by index and the hashes of complete subtrees.
    Ledger,
    /// Notifications waiting for delivery (the durable outbox).
    Outbox,
}

impl Cf {
    /// Every column family, in a fixed order.
    pub const ALL: [Cf; 8] = [
        Cf::Signatures,
        Cf::Certificates,
        Cf::TsaSerials,
        Cf::Audit,
        Cf::Meta,
        Cf::Scd,
        Cf::Ledger,
        Cf::Outbox,
    ];

    /// The RocksDB column family name.
    pub fn name(self) -> &'static str {
        match self {
            Cf::Signatures => "signatures",
            Cf::Certificates => "certificates",
            Cf::TsaSerials => "tsa_serials",
            Cf::Audit => "audit",
            Cf::Meta => "meta",
            Cf::Scd => "scd",
            Cf::Ledger => "ledger",
            Cf::Outbox => "outbox",
        }
    }
}

/// One write operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Insert or overwrite `key` with `value`.
    Put {
        /// Column family.
        cf: Cf,
        /// Key bytes.
        key: Vec<u8>,
        /// Value bytes.
        value: Vec<u8>,
    },
    /// Remove `key` (no error if absent).
    Delete {
        /// Column family.
        cf: Cf,
        /// Key bytes.
        key: Vec<u8>,
    },
    /// Append an audit event to the ledger. The writer gives it the next leaf index when it builds the group
    /// commit and writes, in the same atomic write: the leaf, the subtree hashes it completes, the ledger size,
    /// `audit[audit_key] = index` for time-ordered listing and, with `transaction` / `subject`, the transaction
    /// and subject indexes.
    Leaf {
        /// The `audit` column family key ([`crate::AuditKey`] bytes).
        audit_key: Vec<u8>,
        /// The leaf bytes (the event as logged).
        leaf: Vec<u8>,
        /// The transaction (signatureId) the event belongs to, for its proof bundle.
        transaction: Option<Vec<u8>>,
        /// Whom the event is about (a pseudonymous user reference), for the citizen's own listing.
        subject: Option<Vec<u8>>,
    },
}

/// Operations of one caller, applied atomically (all or none) in the group-commit batch that carries them.
///
/// There is no read-modify-write: a caller that needs one (e.g. a serial counter) must serialise itself
/// (for instance behind a mutex) and read through [`crate::Store::get`] before committing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<Op>,
    bytes: usize,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put.
    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> &mut Self {
        let (key, value) = (key.into(), value.into());
        self.bytes += key.len() + value.len();
        self.ops.push(Op::Put { cf, key, value });
        self
    }

    /// Adds a delete.
    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) -> &mut Self {
        let key = key.into();
        self.bytes += key.len();
        self.ops.push(Op::Delete { cf, key });
        self
    }

    /// Adds an audit event to the ledger (see [`Op::Leaf`]).
    pub fn append_leaf(
        &mut self,
        audit_key: impl Into<Vec<u8>>,
        leaf: impl Into<Vec<u8>>,
        transaction: Option<&[u8]>,
        subject: Option<&[u8]>,
    ) -> &mut Self {
        let (audit_key, leaf) = (audit_key.into(), leaf.into());
        // The leaf is stored once, plus its key, one index row, about two subtree hashes and the subject's
        // index row.
        self.bytes +=
            audit_key.len() + leaf.len() + 2 * 41 + 16 + subject.map_or(0, |s| s.len() + 10);
        self.ops.push(Op::Leaf {
            audit_key,
            leaf,
            transaction: transaction.map(<[u8]>::to_vec),
            subject: subject.map(<[u8]>::to_vec),
        });
        self
    }

    /// Appends every operation of `other` (applied in the same atomic write).
    pub fn extend(&mut self, other: Batch) -> &mut Self {
        self.bytes += other.bytes;
        self.ops.extend(other.ops);
        self
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Key and value bytes carried (an estimate of the write size).
    pub fn payload_bytes(&self) -> usize {
        self.bytes
    }

    /// The operations, in insertion order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
}
