//! Workflow 9.2.2 — signing with the citizen's own device, named by a pseudonym (no login: the
//! PIN on the device proves the citizen's will). As in the sequence diagram:
//!
//! 1. the pseudonym names a key: its record and the CA's record of its certificate, which must
//!    be ACTIVE (suspended, revoked or expired are refused before the device is contacted);
//! 2. esigd prepares what the key signs in the requested format (for CAdES the signed
//!    attributes over the e-Service's digest: content-type, message-digest, signing-time,
//!    signing-certificate-v2 naming the SCD certificate; see [`esigd_formats`]) and asks the
//!    Remote SCD service to sign **its digest** (`RAW_DIGEST_SIGNATURE`);
//! 3. the verification code of the answer is recomputed here (bound to the session and to that
//!    digest); the caller answers at once with the signatureId (and the page shows the code);
//! 4. the citizen checks the code and the text on the device and types the PIN; we long-poll
//!    the session up to `scd.signing_timeout`;
//! 5. the returned signature is verified over our digest **with the public key of the
//!    registered certificate** (never a key from the answer) and the signature is assembled;
//! 6. the TSA time-stamps the signature value (B-T); signature, TSA record and audit event
//!    are stored in one durable batch ([`super::seal`]).
//!
//! Steps 4–6 run in a task of their own; [`ScdSigning::status`] reports where a signature
//! stands (`GET /v1/sign/response/{id}` answers 202 until then). Pending signatures are capped
//! (`scd.max_pending`) and end with the device's answer or the timeout; their outcome is kept for
//! [`RESULT_RETENTION`] after that.
//!
//! A pseudonym that names no key gets the same outward behaviour as one that does (a signatureId,
//! a verification code, then a timeout), so the API and the page do not tell which pseudonyms
//! exist, as Smart-ID requires of relying parties.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use esigd_ca::CertState;
use esigd_scd::api::{
    AlgorithmParameters, EndResult, HashAlgorithm, POLL_MAX, POLL_MIN, RawDigestParameters,
    SessionState, SignatureAlgorithm, SignatureProtocol, SignatureRequest,
};
use esigd_scd::connector::{ConnectorError, RemoteScdConnector};
use esigd_scd::interactions::{self, Interaction};
use esigd_scd::pseudonym::Pseudonym;
use esigd_store::scd::ScdKeyStore;
use esigd_store::signatures::{AuditEvent, SignatureRecord, SignatureType};
use rand::RngCore;
use tokio::sync::watch;
use x509_cert::Certificate;
use x509_cert::der::Decode;

use super::seal::{self, SealError};
use super::{HashType, SignSpec, format_label};
use crate::authorities::{CaAuthority, TsaService};
use crate::clock::SharedClock;
use crate::meter::Meter;

/// How long the outcome of a finished signature stays readable from [`ScdSigning::status`]
/// (a successful one is in the store for `store.retention_*` anyway).
pub const RESULT_RETENTION: Duration = Duration::from_secs(300);

/// Signature requests one pseudonym may make: bursts of [`PER_PSEUDONYM`], then one per
/// [`PER_PSEUDONYM_PERIOD`] (a pseudonym alone makes a phone ring; the Remote SCD service has its
/// own per-device limit too). Unknown pseudonyms are limited alike.
pub const PER_PSEUDONYM: u32 = 5;
/// See [`PER_PSEUDONYM`].
pub const PER_PSEUDONYM_PERIOD: Duration = Duration::from_secs(120);
/// Most pseudonyms whose budgets are kept at once.
const PSEUDONYMS_TRACKED: usize = 100_000;

/// The per-pseudonym budgets.
pub(crate) type PseudonymLimiter = governor::DefaultKeyedRateLimiter<String>;

/// A new per-pseudonym limiter.
pub(crate) fn pseudonym_limiter() -> PseudonymLimiter {
    let quota = governor::Quota::with_period(PER_PSEUDONYM_PERIOD)
        .unwrap_or_else(|| governor::Quota::per_minute(std::num::NonZeroU32::MIN))
        .allow_burst(std::num::NonZeroU32::new(PER_PSEUDONYM).unwrap_or(std::num::NonZeroU32::MIN));
    governor::RateLimiter::keyed(quota)
}

/// The parts workflow 9.2.2 uses.
pub struct ScdSigning {
    pub(crate) connector: Option<Arc<dyn RemoteScdConnector>>,
    pub(crate) keys: ScdKeyStore,
    pub(crate) ca: Arc<CaAuthority>,
    pub(crate) tsa: Arc<TsaService>,
    /// The CA's CRL (the validation data of B-LT signatures).
    pub(crate) crls: Arc<crate::certs::Crls>,
    pub(crate) vault: seal::Vault,
    /// `scd.relying_party_uuid` and `scd.relying_party_name`.
    pub(crate) relying_party: (String, String),
    /// `scd.signing_timeout`.
    pub(crate) timeout: Duration,
    /// `scd.max_pending`.
    pub(crate) max_pending: usize,
    pub(crate) pending: Mutex<HashMap<[u8; 32], Entry>>,
    pub(crate) per_pseudonym: PseudonymLimiter,
    pub(crate) tasks: tokio_util::task::TaskTracker,
    pub(crate) clock: SharedClock,
    pub(crate) meter: Arc<dyn Meter>,
    /// Notifications (`[notifications]`), when configured: the e-Service's webhook (no citizen
    /// contact data is known without a login).
    pub(crate) notifier: Option<Arc<crate::notify::Notifier>>,
    /// The citizens' references in audit events (`userRef`): the key's certificate names its owner.
    pub(crate) users: crate::audit::UserRefs,
}

impl std::fmt::Debug for ScdSigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScdSigning").finish_non_exhaustive()
    }
}

/// What the e-Service asked for.
#[derive(Debug, Clone)]
pub struct ScdSignRequest {
    /// The e-Service (owner of the signature).
    pub eservice: String,
    /// Its name (the device shows it when there is no display text).
    pub eservice_name: String,
    /// The pseudonym as typed.
    pub pseudonym: String,
    /// The format and the documents' digests.
    pub spec: SignSpec,
    /// What the device shows (≤ 200 characters; 60 are shown with the PIN).
    pub display: Option<String>,
    /// Correlation ID.
    pub request_id: String,
    /// The signatureId drawn beforehand (the browser flow's transaction, so its audit events share it);
    /// a fresh one when `None` or when that ID is already in use.
    pub transaction: Option<[u8; 32]>,
}

/// A signature on its way: its ID and the code the citizen compares.
#[derive(Debug, Clone)]
pub struct Requested {
    /// The signatureId.
    pub signature_id: [u8; 32],
    /// The verification code (four digits).
    pub verification_code: String,
}

/// Where a signature stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Waiting for the citizen on the device.
    Pending {
        /// The verification code.
        verification_code: String,
    },
    /// Signed and stored (read it from the signature store).
    Signed,
    /// Ended without a signature.
    Failed(Failure),
}

/// How a signature ended without one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The citizen refused on the device.
    #[error("the citizen refused on the device")]
    Refused,
    /// No answer within the time.
    #[error("the device did not answer in time")]
    Timeout,
    /// The key is locked (three wrong PINs) or otherwise unusable on the device.
    #[error("the key cannot be used on the device ({0})")]
    KeyUnusable(String),
    /// The device's answer does not verify with the registered certificate's key.
    #[error("the device's signature does not verify with the registered certificate")]
    BadSignature,
    /// The device or the service failed.
    #[error("{0}")]
    DeviceFailed(String),
    /// esigd could not finish (TSA, store, …).
    #[error("{0}")]
    Internal(String),
}

impl Failure {
    /// The code an e-Service sees (`error` on the callback, the API's message prefix).
    pub fn code(&self) -> &'static str {
        match self {
            Failure::Refused => "access_denied",
            Failure::Timeout => "timeout",
            Failure::KeyUnusable(_) => "key_unusable",
            Failure::BadSignature | Failure::DeviceFailed(_) => "device_failed",
            Failure::Internal(_) => "signing_failed",
        }
    }
}

/// Why a signature could not even start.
#[derive(Debug, thiserror::Error)]
pub enum ScdSignError {
    /// A field is wrong (400).
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The certificate behind the pseudonym is not active (the device is not contacted).
    #[error("the certificate behind this pseudonym is {0}")]
    NotActive(&'static str),
    /// No Remote SCD service is configured, or the key has no handle there.
    #[error("{0}")]
    NotServed(String),
    /// A signature is already running on this key, or too many are pending (409 / 503).
    #[error("{0}")]
    Busy(String),
    /// Too many requests for this pseudonym ([`PER_PSEUDONYM`]); retry after the duration.
    #[error("too many signature requests for this pseudonym; retry in {} s", .0.as_secs().max(1))]
    RateLimited(Duration),
    /// A dependency cannot serve now (503).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or corrupt data (500).
    #[error("internal error")]
    Internal,
}

fn internal(step: &'static str, e: impl std::fmt::Display) -> ScdSignError {
    tracing::error!(step, error = %e, "SCD signature failed");
    ScdSignError::Internal
}

/// One pending or finished signature.
pub(crate) struct Entry {
    eservice: String,
    status: watch::Sender<Status>,
    /// When the outcome stops being readable (set when it ends).
    until: Option<tokio::time::Instant>,
}

/// Canonical form of a typed pseudonym: a readable one with typing mistakes forgiven, or a
/// chosen one in lower case.
pub fn canonical_pseudonym(input: &str) -> Result<String, ScdSignError> {
    let t = input.trim();
    if let Ok(p) = Pseudonym::parse(t) {
        return Ok(p.as_str().to_owned());
    }
    if (3..=64).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Ok(t.to_ascii_lowercase());
    }
    Err(ScdSignError::Invalid {
        field: "pseudonym",
        message: "is not a pseudonym (like k7m2-9xqa-h3dz)".into(),
    })
}

fn hash_algorithm(h: HashType) -> HashAlgorithm {
    match h {
        HashType::Sha256 => HashAlgorithm::Sha256,
        HashType::Sha384 => HashAlgorithm::Sha384,
        HashType::Sha512 => HashAlgorithm::Sha512,
    }
}

/// The device's algorithm for the certificate's key (ECDSA, or RSA PKCS#1 v1.5 with `h`).
fn signature_algorithm(
    cert: &Certificate,
    h: HashType,
) -> Result<SignatureAlgorithm, ScdSignError> {
    match esigd_pki::keys::classify_key(&cert.tbs_certificate.subject_public_key_info) {
        Ok(esigd_pki::keys::KeyKind::EcdsaP256 | esigd_pki::keys::KeyKind::EcdsaP384) => {
            Ok(SignatureAlgorithm::Ecdsa)
        }
        Ok(esigd_pki::keys::KeyKind::Rsa { .. }) => Ok(match h {
            HashType::Sha256 => SignatureAlgorithm::Sha256WithRsa,
            HashType::Sha384 => SignatureAlgorithm::Sha384WithRsa,
            HashType::Sha512 => SignatureAlgorithm::Sha512WithRsa,
        }),
        Err(e) => Err(internal("certificate key", e)),
    }
}

/// What the device shows: the display text, or a default naming the e-Service.
fn device_text(display: Option<&str>, eservice_name: &str) -> Result<String, ScdSignError> {
    let default = format!("{eservice_name}: sign a document");
    let text = display.unwrap_or(&default).trim();
    let text: String = text.chars().take(interactions::TEXT200).collect();
    interactions::encode(&[
        Interaction::ConfirmationMessage {
            display_text200: text.clone(),
        },
        Interaction::DisplayTextAndPin {
            display_text60: text.chars().take(interactions::TEXT60).collect(),
        },
    ])
    .map_err(|e| ScdSignError::Invalid {
        field: "dataToBeDisplayed",
        message: e.to_string(),
    })
}

impl ScdSigning {
    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a Remote SCD service is configured.
    pub fn available(&self) -> bool {
        self.connector.is_some()
    }

    /// `scd.signing_timeout`.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The signing tasks in progress (shutdown waits for them).
    pub fn tasks(&self) -> &tokio_util::task::TaskTracker {
        &self.tasks
    }

    /// Signatures waiting for a device now.
    pub fn pending(&self) -> usize {
        self.lock()
            .values()
            .filter(|e| matches!(*e.status.borrow(), Status::Pending { .. }))
            .count()
    }

    /// Registers a new entry (or refuses when `scd.max_pending` are pending); its ID.
    fn register(
        &self,
        eservice: &str,
        verification_code: &str,
        wanted: Option<[u8; 32]>,
    ) -> Result<[u8; 32], ScdSignError> {
        let mut all = self.lock();
        let now = tokio::time::Instant::now();
        all.retain(|_, e| e.until.is_none_or(|u| u > now));
        let pending = all
            .values()
            .filter(|e| matches!(*e.status.borrow(), Status::Pending { .. }))
            .count();
        if pending >= self.max_pending {
            return Err(ScdSignError::Busy(
                "too many signatures are waiting for devices (scd.max_pending); retry later".into(),
            ));
        }
        let id = match wanted {
            Some(id) if !all.contains_key(&id) => id,
            _ => {
                let mut id = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut id);
                id
            }
        };
        let (status, _) = watch::channel(Status::Pending {
            verification_code: verification_code.to_owned(),
        });
        all.insert(
            id,
            Entry {
                eservice: eservice.to_owned(),
                status,
                until: None,
            },
        );
        Ok(id)
    }

    fn end(&self, id: &[u8; 32], status: Status) {
        let mut all = self.lock();
        if let Some(e) = all.get_mut(id) {
            e.until = Some(tokio::time::Instant::now() + RESULT_RETENTION);
            e.status.send_replace(status);
        }
    }

    /// Where signature `id` of `eservice` stands, waiting up to `wait` while it is pending;
    /// `None` if it is unknown here (or another e-Service's).
    pub async fn status(&self, id: &[u8; 32], eservice: &str, wait: Duration) -> Option<Status> {
        let mut rx = {
            let all = self.lock();
            let e = all.get(id).filter(|e| e.eservice == eservice)?;
            e.status.subscribe()
        };
        if matches!(*rx.borrow(), Status::Pending { .. }) && !wait.is_zero() {
            let _ = tokio::time::timeout(wait, rx.changed()).await;
        }
        let s = rx.borrow().clone();
        Some(s)
    }

    /// Steps 1–3: the key, the signed attributes, the request to the device. Answers with the
    /// signatureId and the code; steps 4–6 continue in their own task.
    pub async fn request(self: &Arc<Self>, req: ScdSignRequest) -> Result<Requested, ScdSignError> {
        let connector = self.connector.clone().ok_or_else(|| {
            ScdSignError::NotServed(
                "no Remote SCD service is configured on this appliance ([scd])".into(),
            )
        })?;
        let pseudonym = canonical_pseudonym(&req.pseudonym)?;
        req.spec.check().map_err(|e| ScdSignError::Invalid {
            field: "documents",
            message: e.to_string(),
        })?;
        let text = device_text(req.display.as_deref(), &req.eservice_name)?;
        if self.per_pseudonym.len() >= PSEUDONYMS_TRACKED {
            self.per_pseudonym.retain_recent();
        }
        if let Err(not_until) = self.per_pseudonym.check_key(&pseudonym) {
            use governor::clock::Clock;
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            tracing::info!(request_id = %req.request_id, "signature requests for one pseudonym over the limit");
            return Err(ScdSignError::RateLimited(wait));
        }

        // 1. The key and its certificate.
        let (keys, ca, now) = (self.keys.clone(), self.ca.clone(), self.clock.now());
        let users = self.users.clone();
        let found = tokio::task::spawn_blocking(move || -> Result<_, ScdSignError> {
            let Some(key) = keys
                .by_pseudonym(&pseudonym)
                .map_err(|e| internal("reading key records", e))?
            else {
                return Ok(None);
            };
            let cert = ca
                .certificate(&key.serial)
                .map_err(|e| internal("reading the certificate", e))?
                .ok_or_else(|| internal("reading the certificate", "no CA record"))?;
            // The owner's audit reference, of the personal identifier in the certificate's subject.
            let user_ref = users.of_certificate(&cert.der).map_err(|e| match e {
                esigd_hsm::HsmError::Busy(_) | esigd_hsm::HsmError::Unavailable(_) => {
                    ScdSignError::Unavailable("the HSM is busy or unavailable".into())
                }
                other => internal("audit user reference", other),
            })?;
            Ok(Some((key, cert, user_ref)))
        })
        .await
        .map_err(|e| internal("reading key records", e))??;
        let Some((key, record, user_ref)) = found else {
            return self.decoy(&req);
        };
        match record.state(now) {
            CertState::Active => {}
            CertState::Suspended => return Err(ScdSignError::NotActive("suspended")),
            CertState::Revoked => return Err(ScdSignError::NotActive("revoked")),
            CertState::Expired => return Err(ScdSignError::NotActive("expired")),
        }
        let handle = key.key_handle.clone().ok_or_else(|| {
            ScdSignError::NotServed(
                "the key behind this pseudonym is not held through the Remote SCD service".into(),
            )
        })?;
        let cert = Certificate::from_der(&record.der).map_err(|e| internal("certificate", e))?;

        // 2. What the key signs in this format, and the device asked to sign its digest.
        let chain = super::intermediates(self.ca.chain());
        let tbs = req
            .spec
            .prepare(&cert, &chain, self.clock.now())
            .map_err(|e| ScdSignError::Invalid {
                field: "documents",
                message: e.to_string(),
            })?;
        let to_sign = tbs.digest();
        let hash = HashType::from_digest_algorithm(tbs.signature_digest_algorithm())
            .ok_or_else(|| internal("signature hash", "not SHA-2"))?;
        let request = SignatureRequest {
            relying_party_uuid: self.relying_party.0.clone(),
            relying_party_name: self.relying_party.1.clone(),
            signature_protocol: SignatureProtocol::RawDigestSignature,
            signature_protocol_parameters: RawDigestParameters {
                digest: STANDARD.encode(&to_sign),
                signature_algorithm: signature_algorithm(&cert, hash)?,
                signature_algorithm_parameters: AlgorithmParameters {
                    hash_algorithm: hash_algorithm(hash),
                },
            },
            interactions: text,
            // Two requests for the same document within one second have the same signed
            // data (signing times have whole seconds), so the same digest: without a nonce
            // the service's idempotency window would hand the second the first one's session
            // (and its answer).
            nonce: Some(STANDARD.encode({
                let mut n = [0u8; 12];
                rand::rngs::OsRng.fill_bytes(&mut n);
                n
            })),
        };
        let created = connector
            .start_signature(&handle, &request)
            .await
            .map_err(connector_failure)?;

        // 3. The code must be bound to this session and digest.
        if let Err(e) = created.vc.check(&created.session_id, &to_sign) {
            tracing::warn!(error = %e, "Remote SCD service sent a verification code not bound to the request");
            let _ = connector.cancel(&created.session_id).await;
            return Err(ScdSignError::Unavailable(
                "the Remote SCD service answered with a verification code for another request"
                    .into(),
            ));
        }
        let id = self.register(&req.eservice, &created.vc.value, req.transaction)?;
        let user_ref = user_ref.as_deref();
        self.audit(
            &req,
            &id,
            "scd.signature.requested",
            Some(&record.serial_hex()),
            None,
            user_ref,
        )
        .await;
        // The caller shows the code (the page) or hands it on (the API) right after this.
        self.audit(
            &req,
            &id,
            "scd.verification_code.shown",
            Some(&record.serial_hex()),
            None,
            user_ref,
        )
        .await;
        tracing::info!(request_id = %req.request_id, signature_id = %hex::encode(id), "SCD signature requested; waiting for the device");

        // 4.–6. In their own task.
        let me = self.clone();
        let session = created.session_id.clone();
        let digest = req.spec.digest().to_vec();
        let serial = record.serial_hex();
        let cert_der = record.der.clone();
        let user_ref = user_ref.map(str::to_owned);
        let work = async move {
            let outcome = me
                .finish(
                    &req,
                    &session,
                    tbs.as_ref(),
                    &digest,
                    &cert_der,
                    &serial,
                    id,
                    user_ref.as_deref(),
                )
                .await;
            match outcome {
                Ok(()) => me.end(&id, Status::Signed),
                Err(f) => {
                    me.audit(
                        &req,
                        &id,
                        "scd.signature.failed",
                        Some(&serial),
                        Some(format!("{}: {f}", f.code())),
                        user_ref.as_deref(),
                    )
                    .await;
                    me.notify_failed(&req.eservice, &id, f.code()).await;
                    me.end(&id, Status::Failed(f));
                }
            }
        };
        use tracing::Instrument;
        self.tasks.spawn(work.instrument(tracing::Span::current()));
        Ok(Requested {
            signature_id: id,
            verification_code: created.vc.value,
        })
    }

    /// An unknown pseudonym: an ID and a code like any other, then a timeout.
    fn decoy(self: &Arc<Self>, req: &ScdSignRequest) -> Result<Requested, ScdSignError> {
        let code = format!("{:04}", rand::rngs::OsRng.next_u32() % 10_000);
        let id = self.register(&req.eservice, &code, req.transaction)?;
        tracing::info!(request_id = %req.request_id, "SCD signature for a pseudonym that names no key");
        let me = self.clone();
        let timeout = self.timeout;
        let eservice = req.eservice.clone();
        self.tasks.spawn(async move {
            tokio::time::sleep(timeout).await;
            // Notified like a real timeout, so the webhook does not tell which pseudonyms exist.
            me.notify_failed(&eservice, &id, Failure::Timeout.code())
                .await;
            me.end(&id, Status::Failed(Failure::Timeout));
        });
        Ok(Requested {
            signature_id: id,
            verification_code: code,
        })
    }

    /// Steps 4–6.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        req: &ScdSignRequest,
        session: &str,
        tbs: &dyn esigd_formats::Prepared,
        digest: &[u8],
        cert_der: &[u8],
        serial: &str,
        id: [u8; 32],
        user_ref: Option<&str>,
    ) -> Result<(), Failure> {
        let connector = self
            .connector
            .clone()
            .ok_or_else(|| Failure::Internal("no connector".into()))?;
        // 4. Long poll until the device answers or the time is up.
        let asked = tokio::time::Instant::now();
        let deadline = asked + self.timeout;
        let status = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left < POLL_MIN {
                let _ = connector.cancel(session).await;
                self.meter
                    .scd_session_ended("signing", "TIMEOUT", asked.elapsed());
                return Err(Failure::Timeout);
            }
            match connector.poll_session(session, left.min(POLL_MAX)).await {
                Ok(st) if st.state == SessionState::Running => continue,
                Ok(st) => break st,
                Err(e) => {
                    tracing::warn!(error = %e, "polling the signing session failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let end = status.end_result();
        self.meter
            .scd_session_ended("signing", crate::meter::end_label(end), asked.elapsed());
        self.audit(
            req,
            &id,
            "scd.device.answered",
            Some(serial),
            Some(format!("{end:?}")),
            user_ref,
        )
        .await;
        match end {
            Some(EndResult::Ok) => {}
            Some(EndResult::UserRefused | EndResult::UserRefusedInteraction) => {
                return Err(Failure::Refused);
            }
            Some(EndResult::Timeout) => return Err(Failure::Timeout),
            Some(EndResult::DocumentUnusable) => {
                let why = status
                    .result
                    .as_ref()
                    .and_then(|r| r.details.as_ref())
                    .and_then(|d| d.reason.clone())
                    .unwrap_or_else(|| "DOCUMENT_UNUSABLE".into());
                return Err(Failure::KeyUnusable(why.chars().take(40).collect()));
            }
            other => {
                return Err(Failure::DeviceFailed(format!(
                    "the device could not sign ({other:?})"
                )));
            }
        }
        let value = status
            .signature
            .as_ref()
            .and_then(|s| STANDARD.decode(&s.value).ok())
            .ok_or_else(|| Failure::DeviceFailed("the answer has no signature".into()))?;

        // 5. Verified with the registered certificate's key, then assembled.
        let signed = tbs.finish(&value).map_err(|e| {
            tracing::warn!(serial, error = %e, "a device answer that does not verify with the registered certificate was refused");
            Failure::BadSignature
        })?;

        // 6. Time-stamp, then one durable batch.
        let (tsa, meter, now) = (self.tsa.clone(), self.meter.clone(), self.clock.now());
        let (ca, crls, level) = (self.ca.clone(), self.crls.clone(), req.spec.level);
        let stamped = tokio::task::spawn_blocking(move || {
            let mut stamped = seal::timestamp(&tsa, meter.as_ref(), signed.as_ref(), now)?;
            if level == super::Level::BLt {
                stamped.signature = seal::long_term(
                    &crls,
                    ca.chain(),
                    tsa.certificate(),
                    &stamped.signature,
                    now,
                )?;
            }
            Ok::<_, SealError>(stamped)
        })
        .await
        .map_err(|e| Failure::Internal(format!("time-stamp task: {e}")))?
        .map_err(|e| Failure::Internal(e.to_string()))?;
        let record = SignatureRecord {
            id,
            owner: req.eservice.clone(),
            signature_type: SignatureType::Scd,
            format: req.spec.format.name().into(),
            hash_type: req.spec.hash_type.name().into(),
            digest: digest.to_vec(),
            signature: stamped.signature,
            certificate: cert_der.to_vec(),
            timestamp: stamped.token.token_der.clone(),
            certificate_serial: serial.to_owned(),
            created: now,
            fetched: None,
        };
        let mut event = AuditEvent::new("signature.created", now);
        event.request_id = Some(req.request_id.clone());
        event.eservice = Some(req.eservice.clone());
        event.signature_id = Some(record.id_hex());
        event.signature_type = Some(SignatureType::Scd);
        event.certificate_serial = Some(serial.to_owned());
        event.certificate_sha256 = Some(esigd_pki::pem::sha256_thumbprint(cert_der));
        event.tsa_serial = Some(stamped.token.record.serial);
        event.hash_type = Some(record.hash_type.clone());
        event.digest = Some(hex::encode(digest));
        event.format = Some(record.format.clone());
        event.display = req.display.clone();
        event.user_ref = user_ref.map(str::to_owned);
        let notices = crate::notify::rows(
            self.notifier.as_deref(),
            &crate::notify::Event::signed(&record),
            None,
        );
        seal::store_with(
            &self.vault,
            self.meter.as_ref(),
            &record,
            &stamped.token,
            &event,
            notices,
        )
        .await
        .map_err(|e| match e {
            SealError::Busy => Failure::Internal("the store is busy".into()),
            other => Failure::Internal(other.to_string()),
        })?;
        self.meter.signature_created(format_label(req.spec.format));
        if let Some(n) = &self.notifier {
            n.wake();
        }
        tracing::info!(signature_id = %record.id_hex(), serial, "SCD signature created");
        Ok(())
    }

    /// Tells the e-Service (`[notifications]`) that signature `id` ended without a signature.
    async fn notify_failed(&self, eservice: &str, id: &[u8; 32], code: &str) {
        let event = crate::notify::Event::failed(
            eservice,
            Some(hex::encode(id)),
            SignatureType::Scd,
            code,
            self.clock.now(),
        );
        crate::notify::enqueue(self.notifier.as_deref(), &event, None).await;
    }

    async fn audit(
        &self,
        req: &ScdSignRequest,
        id: &[u8; 32],
        kind: &str,
        serial: Option<&str>,
        message: Option<String>,
        user_ref: Option<&str>,
    ) {
        let now = self.clock.now();
        let mut e = AuditEvent::new(kind, now);
        e.user_ref = user_ref.map(str::to_owned);
        e.request_id = Some(req.request_id.clone());
        e.eservice = Some(req.eservice.clone());
        e.signature_id = Some(hex::encode(id));
        e.signature_type = Some(SignatureType::Scd);
        e.certificate_serial = serial.map(str::to_owned);
        e.message = message;
        match self.vault.signatures.audit_batch(&e, now) {
            Ok(b) => {
                if let Err(err) = self.vault.signatures.commit(b).await {
                    tracing::error!(error = %err, kind, "audit event not stored");
                }
            }
            Err(err) => tracing::error!(error = %err, kind, "audit event not encoded"),
        }
    }
}

fn connector_failure(e: ConnectorError) -> ScdSignError {
    match e {
        ConnectorError::Status { status: 409, .. } => ScdSignError::Busy(
            "a signature is already waiting on this key's device; try again when it is done".into(),
        ),
        ConnectorError::Status { status: 429, .. } => {
            ScdSignError::Busy("too many requests were sent to this device; try later".into())
        }
        ConnectorError::Status { status: 404, .. } => {
            ScdSignError::NotActive("unknown to the Remote SCD service")
        }
        other => {
            tracing::warn!(error = %other, "Remote SCD service failed");
            ScdSignError::Unavailable("the Remote SCD service cannot be reached or failed".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_canonical() {
        assert_eq!(
            canonical_pseudonym(" K7M2-9XQA-H3DZ").unwrap(),
            "k7m2-9xqa-h3dz"
        );
        assert_eq!(canonical_pseudonym("JohnDoe5766").unwrap(), "johndoe5766");
        assert!(canonical_pseudonym("a b").is_err());
        assert_eq!(Failure::Refused.code(), "access_denied");
    }
}
