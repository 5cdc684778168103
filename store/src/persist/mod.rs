//! Persistence of the CA and TSA policy crates on the appliance's RocksDB [`Store`](crate::Store).
//!
//! * [`RocksCertStore`] implements [`esigd_ca::CertStore`] (issued certificates, status history, CRL numbers).
//! * [`RocksSerialStore`] implements [`esigd_tsa::SerialStore`] (the durable TSA serial reservation mark).
//! * [`RocksImprintLog`] implements [`esigd_tsa::ImprintLog`] (audit record of every issued time-stamp token)
//!   and reads the records back by serial and by time; [`RocksImprintLog::deliver`] turns a stamp outcome into
//!   the reply once the record is durable.
//! * [`StampQueue`]: `POST /tsa` on a few signing threads that batch requests and their audit commits.
//!
//! All three are cheap `Clone` handles around a shared [`Store`](crate::Store). Their trait methods are
//! synchronous and block until the write is durable ([`Store::commit_blocking`](crate::Store::commit_blocking)):
//! call them from plain threads or `tokio::task::spawn_blocking`, never directly on an async task.
//! [`RocksImprintLog::append_async`] is the async form for request handlers.
//!
//! # Key layout
//!
//! `certificates` column family (serials are the minimal big-endian bytes, compared bytewise like `Vec<u8>`):
//!
//! | key                                  | value                                        |
//! |--------------------------------------|----------------------------------------------|
//! | `c/` serial                          | certificate record (format below)            |
//! | `r/` serial                          | empty: index of SUSPENDED or REVOKED records |
//! | `p/` profile name `/` serial         | empty: index by profile (`one-time/`, `scd/`, ...) |
//!
//! The record, the revocation index and the profile index are always written in the same atomic batch.
//! [`CertStore::revoked`](esigd_ca::CertStore::revoked) scans only `r/`, and a profile-filtered listing scans only
//! that profile's index, so CRL generation and SCD listings do not grow with the number of one-time certificates.
//!
//! `meta` column family: `ca/crl_number` → u64 big-endian, the last CRL number handed out.
//!
//! `tsa_serials` column family:
//!
//! | key                                       | value                                    |
//! |-------------------------------------------|------------------------------------------|
//! | `m/reserved`                              | u64 big-endian reservation mark          |
//! | `s/` serial (u64 BE)                      | imprint record (format below)            |
//! | `t/` genTime (u64 BE Unix ns) serial (u64 BE) | empty: index by time                 |
//!
//! # Value format
//!
//! `[version = 1][u32 BE length n][n bytes JSON metadata][binary tail]` (see `codec`). Certificate records carry
//! the certificate DER as the raw tail; times are `{"secs": i64, "nanos": u32}` since the Unix epoch, statuses
//! `{"state": "active" | "suspended" | "revoked", "since": .., "reason": RFC 5280 code}`, profiles their
//! [`ProfileKind::as_str`](esigd_ca::ProfileKind::as_str) names, OIDs dotted strings, byte strings lowercase hex.
//! A reader refuses any other version byte ([`PersistError::Corrupt`]) instead of guessing.
//!
//! # Errors
//!
//! Trait methods wrap a [`PersistError`] in the crates' backend error (`esigd_ca::StoreError::Backend`,
//! `esigd_tsa::SerialError::Store`, the boxed error of `ImprintLog`). Callers that need to tell a full write queue
//! (answer 503) from a failure can downcast the source to [`PersistError`] and check [`PersistError::is_busy`].

mod certs;
pub(crate) mod codec;
mod tsa;

pub use certs::RocksCertStore;
pub use tsa::{
    RocksImprintLog, RocksSerialStore, StampError, StampFn, StampQueue, TokenTransaction,
};

use crate::StoreError;

/// Failures of the persistence adapters.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// The underlying store failed (or is busy: see [`PersistError::is_busy`]).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored value cannot be decoded.
    #[error("corrupt value in column family {cf} at key {key}: {reason}")]
    Corrupt {
        /// Column family name.
        cf: &'static str,
        /// The key, lowercase hex.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A value cannot be encoded.
    #[error("cannot encode a record: {0}")]
    Encode(String),
    /// The TSA reservation mark would go backwards (the stored mark is larger).
    #[error(
        "TSA serial reservation mark must not go backwards: stored {stored}, asked to store {requested}"
    )]
    MarkBackwards {
        /// Mark on disk.
        stored: u64,
        /// Mark the caller asked to store.
        requested: u64,
    },
    /// The CRL number space is exhausted.
    #[error("CRL number space exhausted")]
    CrlNumberExhausted,
    /// The [`MarkSink`](crate::backup::MarkSink) could not record the new high-water marks (in the HSM):
    /// the serial block or CRL number is not used.
    #[error("recording the high-water marks (TSA serial mark, CRL number) in the HSM failed: {0}")]
    MarkSink(String),
    /// A ledger request outside what the ledger holds (a tree size above its size, a leaf index outside
    /// the tree); the message names the value at fault.
    #[error("{0}")]
    OutOfRange(String),
}

impl PersistError {
    /// True when the store's write queue was full (`store.write_queue`): retry later / answer 503.
    pub fn is_busy(&self) -> bool {
        matches!(self, PersistError::Store(StoreError::Busy { .. }))
    }

    pub(crate) fn corrupt(cf: crate::Cf, key: &[u8], reason: impl Into<String>) -> Self {
        PersistError::Corrupt {
            cf: cf.name(),
            key: hex::encode(key),
            reason: reason.into(),
        }
    }
}
