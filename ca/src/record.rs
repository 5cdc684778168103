//! The CA's record of an issued certificate ([`CertRecord`]) and the profile it was issued under
//! ([`ProfileKind`]): what the `store` module's `CertStore` persists and the `lifecycle` rules decide
//! on. Uses only [`crate::status`].

use std::time::SystemTime;

use crate::status::{CertState, StatusChange, StoredStatus};

/// Which profile a certificate was issued under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProfileKind {
    /// One-time (short-term) signing certificate: never revoked or suspended.
    OneTime,
    /// Certificate of a long-lived signature creation data (SCD) key: full lifecycle.
    Scd,
    /// Time-stamping unit certificate.
    Tsa,
    /// Delegated OCSP responder certificate.
    OcspResponder,
}

impl ProfileKind {
    /// Stable lowercase name (for storage keys, metrics labels, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileKind::OneTime => "one-time",
            ProfileKind::Scd => "scd",
            ProfileKind::Tsa => "tsa",
            ProfileKind::OcspResponder => "ocsp-responder",
        }
    }

    /// Inverse of [`ProfileKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "one-time" => Some(ProfileKind::OneTime),
            "scd" => Some(ProfileKind::Scd),
            "tsa" => Some(ProfileKind::Tsa),
            "ocsp-responder" => Some(ProfileKind::OcspResponder),
            _ => None,
        }
    }
}

/// An issued certificate as recorded by the CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertRecord {
    /// Serial number: minimal big-endian bytes (see `esigd_pki::pem::serial_bytes`).
    pub serial: Vec<u8>,
    /// Profile it was issued under.
    pub profile: ProfileKind,
    /// Subject DN in RFC 4514 text form.
    pub subject: String,
    /// notBefore.
    pub not_before: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
    /// Current stored status.
    pub status: StoredStatus,
    /// All status changes, oldest first.
    pub history: Vec<StatusChange>,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

impl CertRecord {
    /// Lowercase hex serial (the certificateId).
    pub fn serial_hex(&self) -> String {
        hex::encode(&self.serial)
    }

    /// The status at `now`.
    pub fn state(&self, now: SystemTime) -> CertState {
        match self.status {
            StoredStatus::Revoked { .. } => CertState::Revoked,
            _ if now > self.not_after => CertState::Expired,
            StoredStatus::Suspended { .. } => CertState::Suspended,
            StoredStatus::Active => CertState::Active,
        }
    }
}
