//! Certificate status: the stored status and its history ([`StoredStatus`], [`StatusChange`]), the
//! status as seen at a given time ([`CertState`]) and the accepted revocation reasons
//! ([`RevocationReason`]).
//!
//! Plain data shared by the lifecycle rules (`lifecycle`), the certificate record (`record`) and the
//! persistence trait (`store`). It uses none of them, so they need not use each other.

use std::time::SystemTime;

use x509_cert::ext::pkix::CrlReason;

/// RFC 5280 §5.3.1 reasons accepted for a revocation of an end-entity certificate. certificateHold is a
/// suspension (the lifecycle's `Transition::Suspend`); removeFromCRL is a resumption;
/// cACompromise/aACompromise do not apply to end-entity certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RevocationReason {
    /// unspecified (0): left out of CRL entries and OCSP answers, as RFC 5280 recommends.
    Unspecified,
    /// keyCompromise (1).
    KeyCompromise,
    /// affiliationChanged (3).
    AffiliationChanged,
    /// superseded (4).
    Superseded,
    /// cessationOfOperation (5).
    CessationOfOperation,
    /// privilegeWithdrawn (9).
    PrivilegeWithdrawn,
}

impl RevocationReason {
    /// The RFC 5280 reason code.
    pub fn code(self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
            RevocationReason::PrivilegeWithdrawn => 9,
        }
    }

    /// From an RFC 5280 reason code; the message says why a code is refused.
    pub fn from_code(code: u8) -> Result<Self, String> {
        Ok(match code {
            0 => RevocationReason::Unspecified,
            1 => RevocationReason::KeyCompromise,
            3 => RevocationReason::AffiliationChanged,
            4 => RevocationReason::Superseded,
            5 => RevocationReason::CessationOfOperation,
            9 => RevocationReason::PrivilegeWithdrawn,
            2 | 10 => {
                return Err(format!(
                    "reason code {code} (cACompromise/aACompromise) does not apply to end-entity certificates"
                ));
            }
            6 => {
                return Err(
                    "reason code 6 (certificateHold) is a suspension: use the suspend transition"
                        .into(),
                );
            }
            8 => {
                return Err(
                    "reason code 8 (removeFromCRL) is not a revocation: use the resume transition"
                        .into(),
                );
            }
            other => return Err(format!("reason code {other} is not defined by RFC 5280")),
        })
    }

    /// The x509-cert CRL reason (None for unspecified, which is omitted from CRL/OCSP).
    pub fn crl_reason(self) -> Option<CrlReason> {
        match self {
            RevocationReason::Unspecified => None,
            RevocationReason::KeyCompromise => Some(CrlReason::KeyCompromise),
            RevocationReason::AffiliationChanged => Some(CrlReason::AffiliationChanged),
            RevocationReason::Superseded => Some(CrlReason::Superseded),
            RevocationReason::CessationOfOperation => Some(CrlReason::CessationOfOperation),
            RevocationReason::PrivilegeWithdrawn => Some(CrlReason::PrivilegeWithdrawn),
        }
    }
}

/// The stored (time-independent) status. EXPIRED is derived from the certificate's notAfter (see
/// `CertRecord::state`, which gives the [`CertState`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredStatus {
    /// Usable.
    Active,
    /// Suspended (CRL/OCSP: revoked with reason certificateHold) since the given time.
    Suspended {
        /// When the suspension took effect.
        since: SystemTime,
    },
    /// Revoked for good.
    Revoked {
        /// When the revocation took effect.
        since: SystemTime,
        /// RFC 5280 reason.
        reason: RevocationReason,
    },
}

/// One recorded status change: who, when, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusChange {
    /// Status before.
    pub from: StoredStatus,
    /// Status after.
    pub to: StoredStatus,
    /// Who asked (user, e-Service or operator identifier), as the requester declared it.
    pub actor: String,
    /// The operating-system user (uid) of the process that asked, as the kernel reported it for
    /// the admin socket connection (`SO_PEERCRED`); `None` when the change did not come through
    /// the socket, or was recorded before uids were.
    pub uid: Option<u32>,
    /// Free-text justification.
    pub justification: String,
    /// When.
    pub at: SystemTime,
}

/// Status as seen at a given time: the stored status plus EXPIRED.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertState {
    /// Active and within its validity period.
    Active,
    /// Suspended (and not expired).
    Suspended,
    /// Revoked (revocation is final and shown even after expiry).
    Revoked,
    /// Past notAfter (and not revoked).
    Expired,
}
