//! Certificate lifecycle rules (SCD and other long-lived certificates):
//!
//! ```text
//! ACTIVE ──suspend──▶ SUSPENDED ──resume──▶ ACTIVE
//!    │                    │
//!    └──revoke──▶ REVOKED ◀──revoke──┘
//! ```
//! EXPIRED is derived from notAfter; an expired or revoked certificate no longer changes. One-time
//! certificates are never suspended or revoked (RFC 9608 noRevAvail: the CA publishes no revocation
//! information for them).

use std::time::SystemTime;

use x509_cert::ext::pkix::CrlReason;

use crate::store::{CertRecord, CertState, ProfileKind, StatusChange, StoredStatus};

/// RFC 5280 §5.3.1 reasons accepted for a revocation of an end-entity certificate. certificateHold is a
/// suspension ([`Transition::Suspend`]); removeFromCRL is a resumption; cACompromise/aACompromise do not apply
/// to end-entity certificates.
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

/// A requested status change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// ACTIVE → SUSPENDED.
    Suspend,
    /// SUSPENDED → ACTIVE.
    Resume,
    /// ACTIVE or SUSPENDED → REVOKED.
    Revoke(RevocationReason),
}

/// Computes the status change for `transition`, or the reason it is refused.
pub fn plan_transition(
    record: &CertRecord,
    transition: Transition,
    actor: &str,
    justification: &str,
    now: SystemTime,
) -> Result<StatusChange, String> {
    if record.profile == ProfileKind::OneTime {
        return Err("one-time certificates are never suspended or revoked (noRevAvail, validity assured short-term certificate)".into());
    }
    if actor.trim().is_empty() {
        return Err("the actor (who asks for the change) must be given".into());
    }
    let state = record.state(now);
    let to = match (state, transition) {
        (CertState::Expired, _) => {
            return Err("certificate has expired; its status can no longer change".into());
        }
        (CertState::Revoked, _) => return Err("certificate is revoked; revocation is final".into()),
        (CertState::Active, Transition::Suspend) => StoredStatus::Suspended { since: now },
        (CertState::Suspended, Transition::Resume) => StoredStatus::Active,
        (CertState::Active | CertState::Suspended, Transition::Revoke(reason)) => {
            StoredStatus::Revoked { since: now, reason }
        }
        (CertState::Suspended, Transition::Suspend) => {
            return Err("certificate is already suspended".into());
        }
        (CertState::Active, Transition::Resume) => {
            return Err("certificate is active, not suspended; nothing to resume".into());
        }
    };
    Ok(StatusChange {
        from: record.status,
        to,
        actor: actor.trim().to_owned(),
        justification: justification.trim().to_owned(),
        at: now,
    })
}
