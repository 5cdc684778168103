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

use crate::{
    record::{CertRecord, ProfileKind},
    status::{CertState, RevocationReason, StatusChange, StoredStatus},
};

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
        uid: None,
        justification: justification.trim().to_owned(),
        at: now,
    })
}
