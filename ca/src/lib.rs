//! Certificate authority policy for esigd (issue 3, library half): one-time and SCD certificate profiles,
//! key ceremony (self-signed root or subordinate CA), TSA and OCSP-responder certificates, random unique
//! serials, lifecycle (ACTIVE/SUSPENDED/REVOKED/EXPIRED), full CRLs, an RFC 6960 OCSP responder and a
//! pre-issuance lint.
//!
//! No HTTP, no database, no clock: time is a parameter, persistence goes through [`CertStore`] (the appliance
//! implements it on RocksDB; [`MemoryStore`] serves tests), signing goes through the RustCrypto signer traits
//! (the HSM signer implements them).

pub mod authority;
pub mod ceremony;
pub mod config;
pub mod error;
pub mod lifecycle;
pub mod lint;
pub mod record;
pub mod status;
pub mod store;

pub use authority::{Authority, IssuedCertificate};
pub use config::{CaConfig, OneTimeProfile, ScdProfile, SignatureCheck};
pub use error::CaError;
pub use lifecycle::Transition;
pub use record::{CertRecord, ProfileKind};
pub use status::{CertState, RevocationReason, StatusChange, StoredStatus};
pub use store::{CertStore, ListQuery, MemoryStore, StoreError};
