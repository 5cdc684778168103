//! A citizen's own SCD certificates (GovStack `GET /v1/cert/list` and `PATCH /v1/cert/{id}`, and
//! the "My certificates" page): listed and changed only by their owner, as the Identity BB
//! identifies them. Someone else's certificate and an unknown one get the same answer.
//!
//! A status change goes through the CA's lifecycle rules (suspend ↔ activate, revoke is final,
//! nothing changes after expiry); the CRL and OCSP answers follow at once, the Remote SCD service
//! is told (its key stops or resumes signing) and the change is an audit event.

use std::sync::Arc;

use esigd_ca::{CaError, CertRecord, CertState, RevocationReason, Transition};
use esigd_scd::api::{KeyStatus, KeyStatusChange};
use esigd_scd::connector::RemoteScdConnector;
use esigd_store::scd::{ScdKeyRecord, ScdKeyStore};
use esigd_store::signatures::{AuditEvent, SignatureStore};

use crate::authorities::CaAuthority;
use crate::certs::Crls;
use crate::clock::SharedClock;
use crate::scd::ScdVault;

/// Longest `message` kept with a status change.
pub const MAX_MESSAGE: usize = 200;

/// Which certificates to list (`filter`; the spec's spellings and the obvious variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Every certificate.
    All,
    /// Active and valid.
    Active,
    /// Past notAfter (and not revoked).
    Expired,
    /// Revoked.
    Revoked,
    /// Suspended.
    Suspended,
}

impl Filter {
    /// Parses `ALL|ACTIVATED|EXPIRED|REVOKED|SUSPENDED` (also `ACTIVE`, `SUSPEND`, any case).
    pub fn parse(s: &str) -> Result<Filter, String> {
        Ok(match s.trim().to_ascii_uppercase().as_str() {
            "ALL" => Filter::All,
            "ACTIVATED" | "ACTIVE" => Filter::Active,
            "EXPIRED" => Filter::Expired,
            "REVOKED" => Filter::Revoked,
            "SUSPENDED" | "SUSPEND" => Filter::Suspended,
            _ => {
                return Err(format!(
                    "filter: {:?} is not one of ALL, ACTIVATED, EXPIRED, REVOKED, SUSPENDED",
                    s.chars().take(32).collect::<String>()
                ));
            }
        })
    }

    fn admits(self, state: CertState) -> bool {
        match self {
            Filter::All => true,
            Filter::Active => state == CertState::Active,
            Filter::Expired => state == CertState::Expired,
            Filter::Revoked => state == CertState::Revoked,
            Filter::Suspended => state == CertState::Suspended,
        }
    }
}

/// What a citizen may do to their certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Resume a suspended certificate.
    Activate,
    /// Suspend (certificateHold).
    Suspend,
    /// Revoke (final).
    Revoke,
}

impl Action {
    /// Parses `ACTIVATE|SUSPEND|REVOKE` (also `ACTIVATED`, `ACTIVE`, `SUSPENDED`, `REVOKED`, any
    /// case).
    pub fn parse(s: &str) -> Result<Action, String> {
        Ok(match s.trim().to_ascii_uppercase().as_str() {
            "ACTIVATE" | "ACTIVATED" | "ACTIVE" => Action::Activate,
            "SUSPEND" | "SUSPENDED" => Action::Suspend,
            "REVOKE" | "REVOKED" => Action::Revoke,
            _ => {
                return Err(format!(
                    "status: {:?} is not one of ACTIVATE, SUSPEND, REVOKE",
                    s.chars().take(32).collect::<String>()
                ));
            }
        })
    }
}

/// The GovStack name of a certificate state in lists (`ACTIVE|EXPIRED|SUSPENDED|REVOKED`).
pub fn state_name(state: CertState) -> &'static str {
    match state {
        CertState::Active => "ACTIVE",
        CertState::Suspended => "SUSPENDED",
        CertState::Revoked => "REVOKED",
        CertState::Expired => "EXPIRED",
    }
}

/// The GovStack name of a certificate state after a change (`ACTIVATED|SUSPENDED|REVOKED|
/// EXPIRED`).
pub fn changed_state_name(state: CertState) -> &'static str {
    match state {
        CertState::Active => "ACTIVATED",
        CertState::Suspended => "SUSPENDED",
        CertState::Revoked => "REVOKED",
        CertState::Expired => "EXPIRED",
    }
}

/// One of the citizen's certificates.
#[derive(Debug, Clone)]
pub struct CitizenCert {
    /// Whose it is and where its key lives.
    pub key: ScdKeyRecord,
    /// The CA's record (status, validity, DER).
    pub cert: CertRecord,
    /// The status now.
    pub state: CertState,
}

/// Why a list or a change failed.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A field is wrong (400).
    #[error("{0}")]
    Invalid(String),
    /// No such certificate, or not the caller's (404; one message for both).
    #[error("certificateId: no such certificate")]
    NotFound,
    /// The lifecycle does not allow it (409).
    #[error("{0}")]
    Transition(String),
    /// No SCD certificates here ([scd] is not configured) (503).
    #[error("no Remote SCD service is configured on this appliance ([scd])")]
    NotServed,
    /// A dependency cannot serve now (503).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or corrupt data; details are in the log (500).
    #[error("internal error")]
    Internal,
}

fn internal(step: &'static str, e: impl std::fmt::Display) -> CertError {
    tracing::error!(step, error = %e, "citizen certificate operation failed");
    CertError::Internal
}

/// The parts the citizen's certificate operations use.
pub struct CitizenCerts {
    pub(crate) keys: ScdKeyStore,
    pub(crate) ca: Arc<CaAuthority>,
    pub(crate) crls: Arc<Crls>,
    pub(crate) vault: Option<crate::scd::ScdVault>,
    pub(crate) connector: Option<Arc<dyn RemoteScdConnector>>,
    pub(crate) audit: SignatureStore,
    pub(crate) clock: SharedClock,
    /// Notifications (`[notifications]`), when configured.
    pub(crate) notifier: Option<Arc<crate::notify::Notifier>>,
}

impl std::fmt::Debug for CitizenCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CitizenCerts").finish_non_exhaustive()
    }
}

impl CitizenCerts {
    fn vault(&self) -> Result<ScdVault, CertError> {
        self.vault.clone().ok_or(CertError::NotServed)
    }

    async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> Result<T, CertError> + Send + 'static,
    ) -> Result<T, CertError> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| internal("blocking task", e))?
    }

    /// The citizen's certificates that pass `filter`, oldest serial first.
    pub async fn list(
        &self,
        issuer: &str,
        sub: &str,
        filter: Filter,
    ) -> Result<Vec<CitizenCert>, CertError> {
        let vault = self.vault()?;
        let (keys, ca, now) = (self.keys.clone(), self.ca.clone(), self.clock.now());
        let (issuer, sub) = (issuer.to_owned(), sub.to_owned());
        Self::blocking(move || {
            let owner = vault
                .owner_index(&issuer, &sub)
                .map_err(|e| CertError::Unavailable(format!("HSM: {e}")))?;
            let mut out = Vec::new();
            for key in keys
                .by_owner(&owner)
                .map_err(|e| internal("reading key records", e))?
            {
                let Some(cert) = ca
                    .certificate(&key.serial)
                    .map_err(|e| internal("reading certificates", e))?
                else {
                    return Err(internal(
                        "reading certificates",
                        format!("no CA record for {}", key.serial_hex()),
                    ));
                };
                let state = cert.state(now);
                if filter.admits(state) {
                    out.push(CitizenCert { key, cert, state });
                }
            }
            Ok(out)
        })
        .await
    }

    /// Changes the status of the citizen's certificate `certificate_id` (hex serial).
    pub async fn change(
        &self,
        issuer: &str,
        sub: &str,
        certificate_id: &str,
        action: Action,
        message: Option<&str>,
        request_id: &str,
    ) -> Result<CitizenCert, CertError> {
        self.change_notifying(
            issuer,
            sub,
            certificate_id,
            action,
            message,
            request_id,
            None,
        )
        .await
    }

    /// [`CitizenCerts::change`], and the change notified (`[notifications]`) to the e-Service
    /// that onboarded the certificate and to the citizen's `contact` (from their login's claims).
    #[allow(clippy::too_many_arguments)]
    pub async fn change_notifying(
        &self,
        issuer: &str,
        sub: &str,
        certificate_id: &str,
        action: Action,
        message: Option<&str>,
        request_id: &str,
        contact: Option<&crate::notify::Contact>,
    ) -> Result<CitizenCert, CertError> {
        let vault = self.vault()?;
        let serial = esigd_pki::pem::parse_serial_hex(certificate_id)
            .map(|s| esigd_pki::pem::serial_bytes(&s).to_vec())
            .map_err(|_| CertError::Invalid("certificateId: not a hexadecimal serial".into()))?;
        let message = message.map(str::trim).unwrap_or_default();
        if message.chars().count() > MAX_MESSAGE || message.chars().any(char::is_control) {
            return Err(CertError::Invalid(format!(
                "message: at most {MAX_MESSAGE} characters, no control characters"
            )));
        }
        let transition = match action {
            Action::Activate => Transition::Resume,
            Action::Suspend => Transition::Suspend,
            Action::Revoke => Transition::Revoke(RevocationReason::Unspecified),
        };
        let (keys, ca, now) = (self.keys.clone(), self.ca.clone(), self.clock.now());
        let (issuer, sub, msg) = (issuer.to_owned(), sub.to_owned(), message.to_owned());
        let changed = Self::blocking(move || {
            let key = keys
                .get(&serial)
                .map_err(|e| internal("reading key records", e))?
                .ok_or(CertError::NotFound)?;
            let owner = vault
                .owner_index(&issuer, &sub)
                .map_err(|e| CertError::Unavailable(format!("HSM: {e}")))?;
            if owner != key.owner_index {
                return Err(CertError::NotFound);
            }
            let cert = ca
                .set_status(&serial, transition, "citizen", &msg, now)
                .map_err(|e| match e {
                    CaError::Transition { reason, .. } => {
                        CertError::Transition(format!("status: {reason}"))
                    }
                    CaError::NotFound(_) => CertError::NotFound,
                    other => internal("status change", other),
                })?;
            let state = cert.state(now);
            Ok(CitizenCert { key, cert, state })
        })
        .await?;
        // The next CRL and OCSP answers show the change.
        self.crls.invalidate();

        let mut event = AuditEvent::new("scd.certificate.status_changed", now);
        event.request_id = Some(request_id.to_owned());
        event.certificate_serial = Some(changed.cert.serial_hex());
        event.message = Some(format!(
            "{} by the owner{}",
            changed_state_name(changed.state),
            if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            }
        ));
        match self.audit.audit_batch(&event, now) {
            Ok(b) => {
                if let Err(e) = self.audit.commit(b).await {
                    tracing::error!(error = %e, "audit event of a status change not stored");
                }
            }
            Err(e) => tracing::error!(error = %e, "audit event of a status change not encoded"),
        }
        let notice = crate::notify::Event::status_changed(
            changed.key.eservice.as_deref(),
            &changed.cert.serial_hex(),
            changed_state_name(changed.state),
            now,
        );
        crate::notify::enqueue(self.notifier.as_deref(), &notice, contact).await;

        // The Remote SCD service stops (or resumes) signing with the key.
        if let (Some(handle), Some(c)) = (&changed.key.key_handle, &self.connector) {
            let status = match changed.state {
                CertState::Active => KeyStatus::Active,
                CertState::Suspended => KeyStatus::Suspended,
                CertState::Revoked | CertState::Expired => KeyStatus::Revoked,
            };
            let change = KeyStatusChange {
                status,
                reason: (!message.is_empty()).then(|| message.to_owned()),
            };
            if let Err(e) = c.set_key_status(handle, &change).await {
                // The certificate's status is what relying parties check; the service's copy
                // is a second line (signing also checks the certificate status first).
                tracing::warn!(error = %e, serial = %changed.cert.serial_hex(), "Remote SCD service not told of the status change");
            }
        }
        tracing::info!(request_id, serial = %changed.cert.serial_hex(), state = state_name(changed.state), "certificate status changed by its owner");
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_spellings_are_accepted() {
        assert_eq!(Filter::parse("ACTIVATED"), Ok(Filter::Active));
        assert_eq!(Filter::parse("active"), Ok(Filter::Active));
        assert_eq!(Filter::parse("SUSPEND"), Ok(Filter::Suspended));
        assert!(Filter::parse("GONE").unwrap_err().starts_with("filter:"));
        assert_eq!(Action::parse("SUSPENDED"), Ok(Action::Suspend));
        assert_eq!(Action::parse("ACTIVATE"), Ok(Action::Activate));
        assert_eq!(Action::parse("revoke"), Ok(Action::Revoke));
        assert!(Action::parse("DELETE").unwrap_err().starts_with("status:"));
        assert_eq!(state_name(CertState::Active), "ACTIVE");
        assert_eq!(changed_state_name(CertState::Active), "ACTIVATED");
    }
}
