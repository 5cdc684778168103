//! Workflow 9.2.1 — SCD onboarding: a citizen's own device gets a signing key and a certificate.
//!
//! The citizen is identified by the Identity BB before this point (the browser's OIDC login, or
//! the token the e-Service passes to `POST /v1/cert/create`). Then, as in the sequence diagram:
//!
//! 1. the `SCDRemoteId` (the device's pairing ID) and `SCDKeyId` are checked, and a key slot that
//!    already has a usable certificate is refused (revoke it first, or use another slot);
//! 2. a fresh 32-byte challenge; the Remote SCD service is asked to start onboarding on the
//!    device with it ([`esigd_scd::connector::RemoteScdConnector::start_onboarding`]);
//! 3. the verification code of the answer is recomputed here: the service cannot show the
//!    citizen a code that is not bound to this session and challenge;
//! 4. the citizen picks the code this page shows out of three on the device (or compares it, on a
//!    device that cannot offer the choice), accepts and chooses a PIN; we long-poll the
//!    session until it completes or `scd.onboarding_timeout` passes (then it is cancelled);
//! 5. the CSR from the device: proof of possession, `challengePassword` = our challenge, the
//!    key type asked for, and a key never certified before;
//! 6. the CA issues the SCD certificate with the subject from the Identity BB's claims (never
//!    from the CSR);
//! 7. the certificate goes to the Remote SCD service, which activates the key (if that fails the
//!    certificate is revoked at once: no certificate exists for a key the service will not use);
//! 8. a pseudonym for signing (60 random bits, readable) and the record (owner, device and the
//!    sealed `SCDRemoteId`) are stored with the audit event in one durable batch; the
//!    certificate is already published by the CA (`/pki/certs/{serial}`, OCSP good).
//!
//! With a CSR given by the e-Service (`POST /v1/cert/create` with `CSR`), steps 2–4 and 7 are
//! skipped: proof of possession and the key checks still apply, and the record has no key
//! handle at the Remote SCD service.
//!
//! Every step that ends the workflow writes an audit event: `scd.onboarding.started`,
//! `scd.onboarding.refused` (device answered no, timeout, wrong code, failure),
//! `scd.certificate.issued`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use esigd_ca::{ProfileKind, RevocationReason, Transition};
use esigd_hsm::HsmError;
use esigd_pki::X509Error;
use esigd_pki::identity::IdentityClaims;
use esigd_pki::keys::{KeyKind, classify_key};
use esigd_scd::api::{
    CHALLENGE_LEN, CertificateDelivery, Curve, EndResult, KeySpec, OnboardingRequest, POLL_MAX,
    POLL_MIN, SessionState, SessionStatus, Subject,
};
use esigd_scd::connector::{ConnectorError, RemoteScdConnector};
use esigd_scd::interactions::{self, Interaction};
use esigd_scd::pseudonym::Pseudonym;
use esigd_store::scd::{ScdKeyRecord, ScdKeyStore};
use esigd_store::signatures::{AuditEvent, SignatureStore};
use rand::RngCore;
use sha2::{Digest, Sha256};
use x509_cert::der::{Encode, EncodePem};

use crate::authorities::CaAuthority;
use crate::clock::SharedClock;
use crate::meter::{Meter, Op, Timer};
use crate::scd::ScdVault;

/// Largest `SCDKeyId` (key slots per device).
pub const MAX_SCD_KEY_ID: u32 = 15;

/// The parts workflow 9.2.1 uses, and nothing else.
pub struct Onboarding {
    /// The Remote SCD service of `scd_type`, when `[scd]` is configured.
    pub(crate) connector: Option<Arc<dyn RemoteScdConnector>>,
    /// `scd.scd_types`: the `SCDType` values served (the first is the page's).
    pub(crate) scd_types: Vec<String>,
    /// `scd.relying_party_uuid` and `scd.relying_party_name`.
    pub(crate) relying_party: (String, String),
    /// `scd.key`.
    pub(crate) key_spec: KeySpec,
    /// `scd.onboarding_timeout`.
    pub(crate) timeout: Duration,
    /// The CA that issues the SCD certificate.
    pub(crate) ca: Arc<CaAuthority>,
    /// The records of citizens' keys.
    pub(crate) keys: ScdKeyStore,
    /// Sealing and blind indexes in the HSM.
    pub(crate) vault: Option<ScdVault>,
    /// Where audit events go.
    pub(crate) audit: SignatureStore,
    /// The time.
    pub(crate) clock: SharedClock,
    /// Where events are counted.
    pub(crate) meter: Arc<dyn Meter>,
}

impl std::fmt::Debug for Onboarding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Onboarding")
            .field("scd_types", &self.scd_types)
            .finish_non_exhaustive()
    }
}

/// A citizen as the Identity BB described them.
#[derive(Debug, Clone)]
pub struct Citizen {
    /// The Identity BB's issuer.
    pub issuer: String,
    /// The Identity BB's `sub`.
    pub sub: String,
    /// The claims that make the certificate subject.
    pub identity: IdentityClaims,
}

impl Citizen {
    /// The name shown on the device.
    pub fn display_name(&self) -> Option<String> {
        self.identity.name.clone().or_else(|| {
            match (&self.identity.given_name, &self.identity.family_name) {
                (Some(g), Some(f)) => Some(format!("{g} {f}")),
                (Some(n), None) | (None, Some(n)) => Some(n.clone()),
                (None, None) => None,
            }
        })
    }
}

/// What is asked for.
#[derive(Debug, Clone)]
pub struct OnboardRequest {
    /// Whose key it becomes.
    pub citizen: Citizen,
    /// `SCDType` (`None`: the first configured one).
    pub scd_type: Option<String>,
    /// A pseudonym the citizen chose (`None`: one is made, the usual case).
    pub pseudonym: Option<String>,
    /// The device's pairing ID as typed.
    pub scd_remote_id: String,
    /// The key slot on the device.
    pub scd_key_id: u32,
    /// The e-Service asking (`None` for the browser onboarding page).
    pub eservice: Option<String>,
    /// Correlation ID.
    pub request_id: String,
}

/// A running onboarding session: what the page shows while the citizen answers on the device.
#[derive(Debug, Clone)]
pub struct Started {
    /// The Remote SCD service's session.
    pub session_id: String,
    /// The verification code to show (four digits).
    pub verification_code: String,
    /// The request, with the `SCDRemoteId` in canonical form.
    pub request: OnboardRequest,
    challenge_b64: String,
    device_index: [u8; 32],
    started: tokio::time::Instant,
}

/// The certificate made, and the pseudonym to sign with.
#[derive(Debug, Clone)]
pub struct Onboarded {
    /// The record as stored.
    pub record: ScdKeyRecord,
    /// The certificate, DER.
    pub certificate_der: Vec<u8>,
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// notAfter.
    pub not_after: SystemTime,
}

/// Why no certificate was made. Messages name the field at fault and never contain a PIN, a
/// token or the `SCDRemoteId`.
#[derive(Debug, thiserror::Error)]
pub enum OnboardError {
    /// A field is wrong (400).
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The appliance has no Remote SCD service for this `SCDType` (400, or 503 on the page).
    #[error("SCDType: {0}")]
    NotServed(String),
    /// No device with this `SCDRemoteId` at the Remote SCD service (404).
    #[error("SCDRemoteId: no device with this pairing ID")]
    UnknownDevice,
    /// The chosen pseudonym is taken (409).
    #[error("pseudonym: already taken; choose another or leave it out")]
    PseudonymTaken,
    /// The key slot already has a usable certificate (409).
    #[error(
        "SCDKeyId: key {scd_key_id} of this device already has certificate {serial}; revoke it first or use another SCDKeyId"
    )]
    AlreadyOnboarded {
        /// The slot.
        scd_key_id: u32,
        /// The certificate in the way.
        serial: String,
    },
    /// The device is busy with another request, or too many were sent to it (409 / 429).
    #[error("{message}")]
    DeviceBusy {
        /// Why.
        message: String,
        /// When to retry, if the service said.
        retry_after: Option<Duration>,
    },
    /// The citizen said no on the device (403).
    #[error("the citizen refused on the device")]
    Refused,
    /// The citizen picked a verification code other than the one shown (403).
    #[error("the citizen picked a verification code other than the one shown")]
    WrongVerificationCode,
    /// No answer from the device within `scd.onboarding_timeout` (504).
    #[error("the device did not answer within {} s", .0.as_secs())]
    Timeout(Duration),
    /// The device or the Remote SCD service failed or broke the protocol (502).
    #[error("{0}")]
    DeviceFailed(String),
    /// The CSR is not usable (400 for a CSR from the e-Service, 502 from a device).
    #[error("CSR: {0}")]
    BadCsr(String),
    /// The identity does not make a certificate subject (422).
    #[error("{0}")]
    Identity(String),
    /// A dependency cannot serve now (503).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or a corrupt dependency; details are in the log (500).
    #[error("internal error while onboarding")]
    Internal,
}

fn internal(step: &'static str, e: impl std::fmt::Display) -> OnboardError {
    tracing::error!(step, error = %e, "onboarding failed");
    OnboardError::Internal
}

fn hsm_failure(step: &'static str, e: HsmError) -> OnboardError {
    match e {
        HsmError::Busy(_) | HsmError::Unavailable(_) => {
            tracing::warn!(step, error = %e, "HSM cannot serve onboarding");
            OnboardError::Unavailable(format!("the HSM is busy or unavailable ({step})"))
        }
        other => internal(step, other),
    }
}

fn connector_failure(e: ConnectorError) -> OnboardError {
    if e.is_not_found() {
        return OnboardError::UnknownDevice;
    }
    match e {
        ConnectorError::Status {
            status: 409,
            retry_after,
            ..
        } => OnboardError::DeviceBusy {
            message: "the device is already answering another request; try again when it is done"
                .into(),
            retry_after,
        },
        ConnectorError::Status {
            status: 429,
            retry_after,
            ..
        } => OnboardError::DeviceBusy {
            message: "too many requests were sent to this device; try again later".into(),
            retry_after,
        },
        ConnectorError::Unsupported(what) => {
            OnboardError::NotServed(format!("this Remote SCD provider does not offer {what}"))
        }
        other => {
            tracing::warn!(error = %other, "Remote SCD service failed");
            OnboardError::Unavailable("the Remote SCD service cannot be reached or failed".into())
        }
    }
}

/// The `SCDRemoteId` in canonical form, or why not. A pairing ID of the reference service's
/// form (`k7m2-9xqa-h3dz`) is canonicalised with typing mistakes forgiven; other forms (a
/// push token, a UUID) are taken as given.
pub fn canonical_remote_id(input: &str) -> Result<String, OnboardError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(OnboardError::Invalid {
            field: "SCDRemoteId",
            message: "required".into(),
        });
    }
    if let Ok(p) = Pseudonym::parse(input) {
        return Ok(p.as_str().to_owned());
    }
    if input.len() > 128 || !input.chars().all(|c| c.is_ascii_graphic()) {
        return Err(OnboardError::Invalid {
            field: "SCDRemoteId",
            message: "must be 1 to 128 printable ASCII characters".into(),
        });
    }
    Ok(input.to_owned())
}

impl Onboarding {
    /// Whether a Remote SCD service is configured (the onboarding page says so when not).
    pub fn available(&self) -> bool {
        self.connector.is_some() && self.vault.is_some()
    }

    /// The `SCDType` the onboarding page uses.
    pub fn scd_type(&self) -> &str {
        self.scd_types
            .first()
            .map(String::as_str)
            .unwrap_or(crate::scd::REMOTE_SCD)
    }

    /// `scd.onboarding_timeout`.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn parts(&self) -> Result<(&Arc<dyn RemoteScdConnector>, &ScdVault), OnboardError> {
        match (&self.connector, &self.vault) {
            (Some(c), Some(v)) => Ok((c, v)),
            _ => Err(OnboardError::NotServed(
                "no Remote SCD service is configured on this appliance ([scd])".into(),
            )),
        }
    }

    /// The request's `SCDType` in capitals, if it is served.
    fn check_type(&self, scd_type: Option<&str>) -> Result<String, OnboardError> {
        let Some(t) = scd_type.map(str::trim) else {
            return Ok(self.scd_type().to_owned());
        };
        let upper = t.to_ascii_uppercase();
        if self.scd_types.contains(&upper) {
            Ok(upper)
        } else {
            Err(OnboardError::NotServed(format!(
                "{:?} is not served here; served: {}",
                t.chars().take(40).collect::<String>(),
                self.scd_types.join(", ")
            )))
        }
    }

    /// Checks a chosen pseudonym's form (3–64 characters: letters, digits, `-`, `_`, `.`);
    /// its canonical form.
    fn check_chosen(p: Option<&str>) -> Result<Option<String>, OnboardError> {
        let Some(p) = p.map(str::trim).filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        if let Ok(readable) = Pseudonym::parse(p) {
            return Ok(Some(readable.as_str().to_owned()));
        }
        if !(3..=64).contains(&p.len())
            || !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(OnboardError::Invalid {
                field: "pseudonym",
                message: "3 to 64 characters: letters, digits, '-', '_' or '.'".into(),
            });
        }
        Ok(Some(p.to_ascii_lowercase()))
    }

    /// Steps 1–3: checks the request and starts the session on the device.
    pub async fn start(&self, mut req: OnboardRequest) -> Result<Started, OnboardError> {
        let (connector, vault) = self.parts()?;
        let scd_type = self.check_type(req.scd_type.as_deref())?;
        req.scd_type = Some(scd_type.clone());
        req.pseudonym = Self::check_chosen(req.pseudonym.as_deref())?;
        if let Some(p) = req.pseudonym.clone() {
            let keys = self.keys.clone();
            let taken = tokio::task::spawn_blocking(move || keys.by_pseudonym(&p))
                .await
                .map_err(|e| internal("reading key records", e))?
                .map_err(|e| internal("reading key records", e))?;
            if taken.is_some() {
                return Err(OnboardError::PseudonymTaken);
            }
        }

        // 1. The device and the key slot.
        req.scd_remote_id = canonical_remote_id(&req.scd_remote_id)?;
        if req.scd_key_id > MAX_SCD_KEY_ID {
            return Err(OnboardError::Invalid {
                field: "SCDKeyId",
                message: format!("must be 0 to {MAX_SCD_KEY_ID}"),
            });
        }
        let device_index = self.device_index(vault, &req.scd_remote_id).await?;
        self.refuse_used_slot(device_index, req.scd_key_id).await?;

        // 2. The challenge, and the request to the device.
        let mut challenge = [0u8; CHALLENGE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut challenge);
        let challenge_b64 = STANDARD.encode(challenge);
        let name = req.citizen.display_name();
        let text = onboarding_text(&self.relying_party.1, name.as_deref());
        let onboarding = OnboardingRequest {
            relying_party_uuid: self.relying_party.0.clone(),
            relying_party_name: self.relying_party.1.clone(),
            subject: Subject {
                sub: req.citizen.sub.clone(),
                display_name: name,
            },
            scd_key_id: req.scd_key_id,
            key_spec: self.key_spec,
            challenge: challenge_b64.clone(),
            // The citizen picks the code shown on our page out of three on the device (a device
            // that cannot, shows the code to compare).
            interactions: interactions::encode(&[
                Interaction::ConfirmationMessageAndVerificationCodeChoice {
                    display_text200: text.clone(),
                },
                Interaction::ConfirmationMessage {
                    display_text200: text,
                },
            ])
            .map_err(|e| internal("onboarding interactions", e))?,
            nonce: None,
        };
        let created = connector
            .start_onboarding(&scd_type, &req.scd_remote_id, &onboarding)
            .await
            .map_err(connector_failure)?;

        // 3. The code must be the one for this session and challenge.
        if let Err(e) = created.vc.check(&created.session_id, &challenge) {
            tracing::warn!(error = %e, "Remote SCD service sent a verification code not bound to the session");
            let _ = connector.cancel(&created.session_id).await;
            return Err(OnboardError::DeviceFailed(
                "the Remote SCD service sent a verification code that does not belong to this request"
                    .into(),
            ));
        }
        self.audit(&req, "scd.onboarding.started", None, None)
            .await?;
        tracing::info!(request_id = %req.request_id, slot = req.scd_key_id, "onboarding started on the device");
        Ok(Started {
            session_id: created.session_id,
            verification_code: created.vc.value,
            request: req,
            challenge_b64,
            device_index,
            started: tokio::time::Instant::now(),
        })
    }

    /// Steps 4–8: waits for the device, checks its CSR, issues, activates and records.
    pub async fn finish(&self, s: Started) -> Result<Onboarded, OnboardError> {
        let (connector, vault) = self.parts()?;

        // 4. Long poll until the device answers or the time is up.
        let status = match self.wait(connector.as_ref(), &s).await {
            Ok(st) => st,
            Err(e) => {
                self.audit(
                    &s.request,
                    "scd.onboarding.refused",
                    None,
                    Some(e.to_string()),
                )
                .await?;
                return Err(e);
            }
        };
        let key_handle = status.result.as_ref().and_then(|r| r.key_handle.clone());

        // 5. The CSR.
        let csr_b64 = status
            .csr
            .as_deref()
            .ok_or_else(|| OnboardError::DeviceFailed("the device's answer has no CSR".into()))?;
        let csr_der = STANDARD
            .decode(csr_b64)
            .map_err(|_| OnboardError::DeviceFailed("the device's CSR is not base64".into()))?;
        let csr = match self.check_csr(&csr_der, Some(&s.challenge_b64)).await {
            Ok(c) => c,
            Err(OnboardError::BadCsr(m)) => {
                let e = OnboardError::DeviceFailed(format!("the device's CSR is not usable: {m}"));
                self.audit(
                    &s.request,
                    "scd.onboarding.refused",
                    None,
                    Some(e.to_string()),
                )
                .await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };

        // 6.–8.
        self.issue_and_record(s.request, s.device_index, csr, key_handle, vault)
            .await
    }

    /// The whole workflow for the API: start, wait, issue.
    pub async fn onboard(&self, req: OnboardRequest) -> Result<Onboarded, OnboardError> {
        let started = self.start(req).await?;
        self.finish(started).await
    }

    /// `POST /v1/cert/create` with a `CSR`: no device session; proof of possession and the key
    /// checks, then steps 6 and 8.
    pub async fn with_csr(
        &self,
        mut req: OnboardRequest,
        csr_der: &[u8],
    ) -> Result<Onboarded, OnboardError> {
        let vault = self.vault.as_ref().ok_or_else(|| {
            OnboardError::NotServed(
                "no Remote SCD service is configured on this appliance ([scd])".into(),
            )
        })?;
        req.scd_type = Some(self.check_type(req.scd_type.as_deref())?);
        req.pseudonym = Self::check_chosen(req.pseudonym.as_deref())?;
        req.scd_remote_id = canonical_remote_id(&req.scd_remote_id)?;
        if req.scd_key_id > MAX_SCD_KEY_ID {
            return Err(OnboardError::Invalid {
                field: "SCDKeyId",
                message: format!("must be 0 to {MAX_SCD_KEY_ID}"),
            });
        }
        let device_index = self.device_index(vault, &req.scd_remote_id).await?;
        self.refuse_used_slot(device_index, req.scd_key_id).await?;
        let csr = self.check_csr(csr_der, None).await?;
        self.issue_and_record(req, device_index, csr, None, vault)
            .await
    }

    /// Cancels a running session (the citizen left the page).
    pub async fn cancel(&self, s: &Started) {
        if let Some(c) = &self.connector
            && let Err(e) = c.cancel(&s.session_id).await
        {
            tracing::info!(error = %e, "cancelling the onboarding session failed");
        }
    }

    async fn wait(
        &self,
        connector: &dyn RemoteScdConnector,
        s: &Started,
    ) -> Result<SessionStatus, OnboardError> {
        let deadline = s.started + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left < POLL_MIN {
                let _ = connector.cancel(&s.session_id).await;
                self.meter
                    .scd_session_ended("onboarding", "TIMEOUT", s.started.elapsed());
                return Err(OnboardError::Timeout(self.timeout));
            }
            let st = connector
                .poll_session(&s.session_id, left.min(POLL_MAX))
                .await
                .map_err(connector_failure)?;
            if st.state == SessionState::Running {
                continue;
            }
            self.meter.scd_session_ended(
                "onboarding",
                crate::meter::end_label(st.end_result()),
                s.started.elapsed(),
            );
            return match st.end_result() {
                Some(EndResult::Ok) => Ok(st),
                Some(EndResult::UserRefused | EndResult::UserRefusedInteraction) => {
                    Err(OnboardError::Refused)
                }
                Some(EndResult::WrongVc) => Err(OnboardError::WrongVerificationCode),
                Some(EndResult::Timeout) => Err(OnboardError::Timeout(self.timeout)),
                Some(other) => Err(OnboardError::DeviceFailed(format!(
                    "the device could not create the key ({other:?}{})",
                    st.result
                        .as_ref()
                        .and_then(|r| r.details.as_ref())
                        .and_then(|d| d.reason.as_deref())
                        .map(|r| format!(": {}", r.chars().take(40).collect::<String>()))
                        .unwrap_or_default()
                ))),
                None => Err(OnboardError::DeviceFailed(
                    "the session completed without a result".into(),
                )),
            };
        }
    }

    async fn device_index(
        &self,
        vault: &ScdVault,
        remote_id: &str,
    ) -> Result<[u8; 32], OnboardError> {
        let (v, id) = (vault.clone(), remote_id.to_owned());
        tokio::task::spawn_blocking(move || v.device_index(&id))
            .await
            .map_err(|e| internal("device index", e))?
            .map_err(|e| hsm_failure("device index", e))
    }

    /// A slot with a certificate that is active or suspended (not revoked, not expired) is in
    /// use: a second onboarding of the same `SCDRemoteId` + `SCDKeyId` is refused.
    async fn refuse_used_slot(&self, device: [u8; 32], slot: u32) -> Result<(), OnboardError> {
        let (keys, ca, now) = (self.keys.clone(), self.ca.clone(), self.clock.now());
        let used = tokio::task::spawn_blocking(move || -> Result<Option<String>, OnboardError> {
            for r in keys
                .by_device_slot(&device, slot)
                .map_err(|e| internal("reading key records", e))?
            {
                let cert = ca
                    .certificate(&r.serial)
                    .map_err(|e| internal("reading the certificate", e))?;
                if let Some(c) = cert
                    && matches!(
                        c.state(now),
                        esigd_ca::CertState::Active | esigd_ca::CertState::Suspended
                    )
                {
                    return Ok(Some(c.serial_hex()));
                }
            }
            Ok(None)
        })
        .await
        .map_err(|e| internal("reading key records", e))??;
        match used {
            Some(serial) => Err(OnboardError::AlreadyOnboarded {
                scd_key_id: slot,
                serial,
            }),
            None => Ok(()),
        }
    }

    /// Step 5: proof of possession, the challenge, the key type, a key never certified.
    async fn check_csr(
        &self,
        der: &[u8],
        challenge: Option<&str>,
    ) -> Result<esigd_pki::csr::VerifiedCsr, OnboardError> {
        let csr =
            esigd_pki::csr::parse_csr(der).map_err(|e| OnboardError::BadCsr(e.to_string()))?;
        if let Some(want) = challenge {
            let got = csr
                .challenge_password()
                .map_err(|e| OnboardError::BadCsr(e.to_string()))?;
            if got.as_deref() != Some(want) {
                return Err(OnboardError::BadCsr(
                    "challengePassword is not this request's challenge".into(),
                ));
            }
        }
        let kind =
            classify_key(csr.public_key()).map_err(|e| OnboardError::BadCsr(e.to_string()))?;
        if challenge.is_some() && !matches_spec(kind, self.key_spec) {
            return Err(OnboardError::BadCsr(format!(
                "the key is {kind}, not the {} asked for",
                spec_name(self.key_spec)
            )));
        }
        let spki = spki_sha256(&csr)?;
        let keys = self.keys.clone();
        let seen = tokio::task::spawn_blocking(move || keys.serial_of_key(&spki))
            .await
            .map_err(|e| internal("reading key records", e))?
            .map_err(|e| internal("reading key records", e))?;
        if let Some(serial) = seen {
            return Err(OnboardError::BadCsr(format!(
                "this key already has certificate {}; a key is certified once",
                hex::encode(serial)
            )));
        }
        Ok(csr)
    }

    /// Steps 6–8.
    async fn issue_and_record(
        &self,
        req: OnboardRequest,
        device_index: [u8; 32],
        csr: esigd_pki::csr::VerifiedCsr,
        key_handle: Option<String>,
        vault: &ScdVault,
    ) -> Result<Onboarded, OnboardError> {
        let spki = spki_sha256(&csr)?;
        // 6. The CA issues for the identity from the Identity BB.
        let (ca, identity, now) = (
            self.ca.clone(),
            req.citizen.identity.clone(),
            self.clock.now(),
        );
        let timer = Timer::start(self.meter.as_ref(), Op::CaIssue);
        let public_key = csr.public_key().clone();
        let issued =
            tokio::task::spawn_blocking(move || ca.issue_scd_for_key(public_key, &identity, now))
                .await
                .map_err(|e| internal("SCD certificate", e))?
                .map_err(|e| match e {
                    esigd_ca::CaError::Pki(X509Error::Identity { .. }) => OnboardError::Identity(
                        format!("the identity cannot be put in a certificate: {e}"),
                    ),
                    esigd_ca::CaError::Store(s) => {
                        tracing::warn!(error = %s, "certificate record not stored");
                        OnboardError::Unavailable(
                            "the certificate store is unavailable; retry".into(),
                        )
                    }
                    other => internal("SCD certificate", other),
                })?;
        timer.finish();
        self.meter.ca_issued(ProfileKind::Scd);
        let serial = issued.record.serial.clone();
        let certificate_pem = issued
            .certificate
            .to_pem(x509_cert::der::pem::LineEnding::LF)
            .map_err(|e| internal("certificate PEM", e))?;

        // 7. The Remote SCD service activates the key with its certificate.
        if let (Some(handle), Some(connector)) = (&key_handle, &self.connector) {
            let delivery = CertificateDelivery {
                certificate: STANDARD.encode(&issued.der),
                chain: self
                    .ca
                    .chain()
                    .iter()
                    .filter_map(|c| c.to_der().ok())
                    .map(|d| STANDARD.encode(d))
                    .collect(),
            };
            if let Err(e) = connector.deliver_certificate(handle, &delivery).await {
                tracing::warn!(error = %e, serial = %issued.record.serial_hex(), "certificate not delivered; revoking it");
                self.withdraw(
                    &serial,
                    "the Remote SCD service did not accept the certificate",
                )
                .await;
                return Err(connector_failure(e));
            }
        }

        // 8. Pseudonym, record, audit event: one durable batch.
        let keys = self.keys.clone();
        let (v, owner) = (vault.clone(), req.citizen.clone());
        let remote_id = req.scd_remote_id.clone();
        let serial_for_seal = serial.clone();
        let chosen = req.pseudonym.clone();
        let made = tokio::task::spawn_blocking(move || {
            let owner_index = v
                .owner_index(&owner.issuer, &owner.sub)
                .map_err(|e| hsm_failure("owner index", e))?;
            let sealed = v
                .seal_remote_id(&serial_for_seal, &remote_id)
                .map_err(|e| hsm_failure("sealing the SCDRemoteId", e))?;
            let taken = |p: &str| -> Result<bool, OnboardError> {
                Ok(keys
                    .by_pseudonym(p)
                    .map_err(|e| internal("reading key records", e))?
                    .is_some())
            };
            let pseudonym = match chosen {
                Some(p) if taken(&p)? => return Err(OnboardError::PseudonymTaken),
                Some(p) => p,
                None => loop {
                    let p = Pseudonym::generate(&mut rand::rngs::OsRng)
                        .as_str()
                        .to_owned();
                    if !taken(&p)? {
                        break p;
                    }
                },
            };
            Ok::<_, OnboardError>((owner_index, sealed, pseudonym))
        })
        .await
        .map_err(|e| internal("record", e))?;
        let (owner_index, sealed, pseudonym) = match made {
            Ok(m) => m,
            Err(e) => {
                // The certificate exists but will not be recorded: withdraw it.
                self.withdraw(&serial, "the key record could not be made")
                    .await;
                return Err(e);
            }
        };
        let record = ScdKeyRecord {
            serial,
            pseudonym,
            owner_index,
            device_index,
            remote_id_sealed: sealed,
            scd_type: req
                .scd_type
                .clone()
                .unwrap_or_else(|| self.scd_type().to_owned()),
            scd_key_id: req.scd_key_id,
            key_handle,
            spki_sha256: spki,
            eservice: req.eservice.clone(),
            created: self.clock.now(),
        };
        let mut batch = self
            .keys
            .insert_batch(&record)
            .map_err(|e| internal("encoding the key record", e))?;
        let mut event = self.event(&req, "scd.certificate.issued");
        event.certificate_serial = Some(record.serial_hex());
        event.certificate_sha256 = Some(hex::encode(Sha256::digest(&issued.der)));
        batch.extend(
            self.audit
                .audit_batch(&event, record.created)
                .map_err(|e| internal("encoding the audit event", e))?,
        );
        self.audit.commit(batch).await.map_err(|e| {
            if e.is_busy() {
                OnboardError::Unavailable("the store is busy; retry shortly".into())
            } else {
                internal("storing the key record", e)
            }
        })?;
        tracing::info!(request_id = %req.request_id, serial = %record.serial_hex(), "SCD certificate issued");
        Ok(Onboarded {
            not_after: issued.record.not_after,
            record,
            certificate_der: issued.der,
            certificate_pem,
        })
    }

    /// Revokes a certificate that was issued but cannot be used (cessationOfOperation).
    async fn withdraw(&self, serial: &[u8], why: &'static str) {
        let (ca, serial, now) = (self.ca.clone(), serial.to_vec(), self.clock.now());
        let hex_serial = hex::encode(&serial);
        let revoked = tokio::task::spawn_blocking(move || {
            ca.set_status(
                &serial,
                Transition::Revoke(RevocationReason::CessationOfOperation),
                "esigd",
                why,
                now,
            )
        })
        .await;
        if !matches!(revoked, Ok(Ok(_))) {
            tracing::error!(serial = %hex_serial, "an unusable certificate could not be revoked");
        }
    }

    fn event(&self, req: &OnboardRequest, kind: &str) -> AuditEvent {
        let mut e = AuditEvent::new(kind, self.clock.now());
        e.request_id = Some(req.request_id.clone());
        e.eservice = req.eservice.clone();
        e
    }

    async fn audit(
        &self,
        req: &OnboardRequest,
        kind: &str,
        serial: Option<String>,
        message: Option<String>,
    ) -> Result<(), OnboardError> {
        let mut e = self.event(req, kind);
        e.certificate_serial = serial;
        e.message = message;
        let batch = self
            .audit
            .audit_batch(&e, self.clock.now())
            .map_err(|e| internal("encoding the audit event", e))?;
        self.audit
            .commit(batch)
            .await
            .map_err(|e| internal("storing the audit event", e))
    }
}

/// What the device shows (≤ 200 characters).
fn onboarding_text(rp: &str, name: Option<&str>) -> String {
    let mut t = match name {
        Some(n) => {
            format!("{rp}: create a signing key for {n}? Check the code, then choose a PIN.")
        }
        None => format!("{rp}: create a signing key? Check the code, then choose a PIN."),
    };
    if t.chars().count() > interactions::TEXT200 {
        t = t.chars().take(interactions::TEXT200).collect();
    }
    t
}

fn matches_spec(kind: KeyKind, spec: KeySpec) -> bool {
    match (kind, spec) {
        (KeyKind::EcdsaP256, KeySpec::Ec { curve: Curve::P256 }) => true,
        (KeyKind::EcdsaP384, KeySpec::Ec { curve: Curve::P384 }) => true,
        (KeyKind::Rsa { bits }, KeySpec::Rsa { size }) => bits == size as usize,
        _ => false,
    }
}

fn spec_name(spec: KeySpec) -> String {
    match spec {
        KeySpec::Ec { curve: Curve::P256 } => "ECDSA P-256".into(),
        KeySpec::Ec { curve: Curve::P384 } => "ECDSA P-384".into(),
        KeySpec::Rsa { size } => format!("RSA-{size}"),
    }
}

fn spki_sha256(csr: &esigd_pki::csr::VerifiedCsr) -> Result<[u8; 32], OnboardError> {
    let der = csr
        .public_key()
        .to_der()
        .map_err(|e| internal("SPKI encoding", e))?;
    Ok(Sha256::digest(der).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_ids_are_canonical_and_bad_ones_name_the_field() {
        assert_eq!(
            canonical_remote_id(" K7M2-9XQA-H3DZ ").unwrap(),
            "k7m2-9xqa-h3dz"
        );
        let e = canonical_remote_id("a b").unwrap_err();
        assert!(e.to_string().starts_with("SCDRemoteId:"), "{e}");
        assert!(canonical_remote_id("").is_err());
        assert_eq!(
            canonical_remote_id("654C4DB3-3F68-4969-8ED2-80EA16B46EB0").unwrap(),
            "654C4DB3-3F68-4969-8ED2-80EA16B46EB0"
        );
        assert_eq!(
            Onboarding::check_chosen(Some("JohnDoe5766")).unwrap(),
            Some("johndoe5766".into())
        );
        assert!(Onboarding::check_chosen(Some("a b")).is_err());
        assert_eq!(Onboarding::check_chosen(Some(" ")).unwrap(), None);
    }

    #[test]
    fn key_checks_follow_the_spec() {
        assert!(matches_spec(
            KeyKind::EcdsaP256,
            KeySpec::Ec { curve: Curve::P256 }
        ));
        assert!(!matches_spec(
            KeyKind::EcdsaP384,
            KeySpec::Ec { curve: Curve::P256 }
        ));
        assert!(matches_spec(
            KeyKind::Rsa { bits: 3072 },
            KeySpec::Rsa { size: 3072 }
        ));
        assert!(onboarding_text(&"x".repeat(300), None).chars().count() <= 200);
    }
}
