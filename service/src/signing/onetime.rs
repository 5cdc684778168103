//! Workflow 9.1 — one-time signing, the part after the user is identified.
//!
//! The e-Service has hashed the document; the Identity BB has told us who the user is (an ID
//! token, verified before this point). Then, as in the sequence diagram:
//!
//! 1. wait for a signing slot (back-pressure: `limits.max_concurrent_signatures`, else 503);
//! 2. take a pre-generated one-time key from the HSM;
//! 3. make a CSR signed by that key;
//! 4. the CA issues the one-time certificate (validity `ca.one_time_validity`, subject from the
//!    identity claims; proof of possession and pre-issuance lint inside the CA);
//! 5. sign the given digests in the requested format (CAdES, PAdES, XAdES, ASiC-E, JWS; see
//!    [`esigd_formats`]): the format prepares what the key signs (for CAdES the signed
//!    attributes content-type id-data, message-digest = the given hash, signing-time,
//!    signing-certificate-v2); the one-time key signs in the HSM;
//! 6. destroy the key and keep the destruction receipt;
//! 7. the TSA time-stamps the signature value; the format embeds the token (B-T);
//! 8. store the signature, the TSA record and the audit event in one durable batch;
//! 9. return the signature ID (the caller answers only after step 8).
//!
//! Steps 2–7 block on PKCS#11 and run on the blocking pool, never on the async executor.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use esigd_hsm::HsmError;
use esigd_pki::X509Error;
use esigd_pki::identity::{DnBuilder, IdentityClaims};
use rand::RngCore;
use x509_cert::der::Encode;

use esigd_hsm::OneTimeKeys;
use esigd_store::persist::RocksImprintLog;
use esigd_store::signatures::{
    AuditEvent, KeyDestroyed, SignatureRecord, SignatureStore, SignatureType, rfc3339,
};

use super::seal::{self, SealError};
use super::{SignSpec, format_label, intermediates};
use crate::authorities::{CaAuthority, TsaService};
use crate::clock::SharedClock;
use crate::meter::{Meter, Op, Timer};
use crate::payment::{Payment, PaymentError, PaymentVerifier};

/// The parts workflow 9.1 uses, and nothing else.
pub struct OneTime {
    /// Pre-generated one-time keys in the HSM.
    pub(crate) keys: OneTimeKeys,
    /// The CA that issues the one-time certificate.
    pub(crate) ca: Arc<CaAuthority>,
    /// The TSA that stamps the signature value.
    pub(crate) tsa: Arc<TsaService>,
    /// The CA's CRL (the validation data of B-LT signatures).
    pub(crate) crls: Arc<crate::certs::Crls>,
    /// Where the signature and its audit event go.
    pub(crate) signatures: SignatureStore,
    /// Where the TSA's record of the token goes (same batch).
    pub(crate) imprints: RocksImprintLog,
    /// The Payment BB verifier, when configured.
    pub(crate) payments: Option<Arc<PaymentVerifier>>,
    /// Signing slots (`limits.max_concurrent_signatures`).
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
    /// The signing tasks in progress (they outlive a client that disconnects).
    pub(crate) tasks: tokio_util::task::TaskTracker,
    /// `limits.queue_timeout`.
    pub(crate) queue_timeout: Duration,
    /// `store.retention_unfetched`.
    pub(crate) retention_unfetched: Duration,
    /// The time.
    pub(crate) clock: SharedClock,
    /// Where events are counted.
    pub(crate) meter: Arc<dyn Meter>,
    /// Notifications (`[notifications]`), when configured.
    pub(crate) notifier: Option<Arc<crate::notify::Notifier>>,
    /// The citizens' references in audit events (`userRef`).
    pub(crate) users: crate::audit::UserRefs,
}

impl std::fmt::Debug for OneTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneTime").finish_non_exhaustive()
    }
}

/// What the e-Service asked for, with the user already identified.
#[derive(Debug, Clone)]
pub struct OneTimeRequest {
    /// The e-Service (owner of the signature).
    pub eservice: String,
    /// The user's identity for the certificate subject.
    pub identity: IdentityClaims,
    /// The format and the documents' digests.
    pub spec: SignSpec,
    /// Correlation ID (audit).
    pub request_id: String,
    /// The citizen's e-mail / phone from the Identity BB's claims, for notifications.
    pub contact: Option<crate::notify::Contact>,
    /// What the citizen was shown (`dataToBeDisplayed`), recorded in the `signature.created` event
    /// (their "My signatures" page lists it).
    pub display: Option<String>,
}

/// Why no signature was made. Messages never contain secrets or personal data.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// Every signing slot is taken and none freed within `limits.queue_timeout`.
    #[error("too many signatures in progress; retry shortly")]
    Busy,
    /// A dependency (HSM, one-time keys, TSA clock, store) cannot serve now.
    #[error("{0}")]
    Unavailable(String),
    /// The identity does not make a valid certificate subject.
    #[error("{0}")]
    Identity(String),
    /// The format cannot sign these documents (the message names the field).
    #[error("{0}")]
    Request(String),
    /// Anything else (a bug or a corrupt dependency); details are in the log.
    #[error("internal error while signing")]
    Internal,
}

fn internal(step: &'static str, e: impl std::fmt::Display) -> SignError {
    tracing::error!(step, error = %e, "one-time signature failed");
    SignError::Internal
}

/// The `esigd_errors_total` kind of a failure.
pub fn error_kind(e: &SignError) -> &'static str {
    match e {
        SignError::Busy => "signing_busy",
        SignError::Unavailable(_) => "signing_unavailable",
        SignError::Identity(_) => "identity_claims",
        SignError::Request(_) => "request_invalid",
        SignError::Internal => "internal",
    }
}

fn hsm_failure(step: &'static str, e: &HsmError) -> SignError {
    match e {
        HsmError::Busy(_) | HsmError::Unavailable(_) => {
            tracing::warn!(step, error = %e, "HSM cannot serve the one-time signature");
            SignError::Unavailable(format!("the HSM is busy or unavailable ({step})"))
        }
        other => internal(step, other),
    }
}

/// Everything steps 2–7 produce.
struct Made {
    signature: Vec<u8>,
    certificate_der: Vec<u8>,
    certificate_serial: String,
    token: esigd_tsa::IssuedToken,
    receipt: esigd_hsm::DestructionReceipt,
    created: SystemTime,
    /// The citizen's audit reference, from the certificate's subject.
    user_ref: Option<String>,
}

/// Why a signature that may need a payment was not made.
#[derive(Debug, thiserror::Error)]
pub enum PaidSignError {
    /// The payment could not be used up (used meanwhile, or cannot be checked): nothing signed.
    #[error(transparent)]
    Payment(#[from] PaymentError),
    /// Signing failed; the payment (if any) was given back.
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// The workflow with its payment, as both entry points run it: the payment (if any) is used up
/// right before signing and given back if no signature is made.
///
/// It runs on a task of its own: a browser or client that goes away drops its request future,
/// which must not stop this halfway (a payment used up and never given back, or a certificate
/// issued and its key destroyed with no stored signature and no audit event). Shutdown waits for
/// these tasks. If the task panics, the payment is not given back: whether a signature was
/// stored is unknown then, and a payment must never be spent twice.
pub async fn sign_with_payment(
    parts: &Arc<OneTime>,
    payment: Option<Payment>,
    req: OneTimeRequest,
) -> Result<SignatureRecord, PaidSignError> {
    sign_with_payment_as(parts, payment, req, None).await
}

/// [`sign_with_payment`] with the signatureId drawn beforehand (`id`): the browser flow draws it when the
/// session starts, so every audit event of the transaction is indexed under it ([`crate::audit`]).
pub async fn sign_with_payment_as(
    parts: &Arc<OneTime>,
    payment: Option<Payment>,
    req: OneTimeRequest,
    id: Option<[u8; 32]>,
) -> Result<SignatureRecord, PaidSignError> {
    use tracing::Instrument;
    let ot = parts.clone();
    let work = async move {
        let payments = ot.payments.as_deref();
        let consumed = crate::payment::consume(payments, payment.as_ref()).await;
        if let Some(p) = &payment {
            let mut e = AuditEvent::new("payment.used", ot.clock.now());
            e.request_id = Some(req.request_id.clone());
            e.eservice = Some(req.eservice.clone());
            e.signature_id = id.map(hex::encode);
            crate::audit::payment_used(&ot.signatures, e, p, &consumed).await;
        }
        consumed?;
        match sign_as(&ot, req, id).await {
            Ok(record) => Ok(record),
            Err(e) => {
                crate::payment::release(payments, payment.as_ref()).await;
                Err(e.into())
            }
        }
    };
    // The request's span (request ID) goes along to the task's log lines; shutdown waits for
    // the task (OneTime::tasks).
    parts
        .tasks
        .spawn(work.instrument(tracing::Span::current()))
        .await
        .map_err(|e| PaidSignError::Sign(internal("signing task", e)))?
}

/// Runs the workflow and returns the stored record (durable when this returns). A transaction
/// that fails once started (not one refused as busy or invalid) is notified (`[notifications]`);
/// a signature is notified with its record ([`crate::notify`]).
pub async fn sign(app: &Arc<OneTime>, req: OneTimeRequest) -> Result<SignatureRecord, SignError> {
    sign_as(app, req, None).await
}

/// [`sign`] under a signatureId drawn beforehand (else a random one).
async fn sign_as(
    app: &Arc<OneTime>,
    req: OneTimeRequest,
    id: Option<[u8; 32]>,
) -> Result<SignatureRecord, SignError> {
    let (eservice, contact) = (req.eservice.clone(), req.contact.clone());
    let (identity, request_id) = (req.identity.clone(), req.request_id.clone());
    let result = sign_steps(app, req, id).await;
    if let Err(e @ (SignError::Unavailable(_) | SignError::Identity(_) | SignError::Internal)) =
        &result
    {
        audit_failed(app, &eservice, &request_id, &identity, id, e).await;
        let event = crate::notify::Event::failed(
            &eservice,
            None,
            SignatureType::OneTime,
            "signing_failed",
            app.clock.now(),
        );
        crate::notify::enqueue(app.notifier.as_deref(), &event, contact.as_ref()).await;
    }
    result
}

/// The `signature.failed` event of a transaction that failed once started, with the citizen's reference
/// when the claims make one (their "My signatures" page does not list failures; an auditor sees them).
async fn audit_failed(
    app: &Arc<OneTime>,
    eservice: &str,
    request_id: &str,
    identity: &IdentityClaims,
    id: Option<[u8; 32]>,
    error: &SignError,
) {
    let (worker, identity) = (app.clone(), identity.clone());
    let user_ref = tokio::task::spawn_blocking(move || {
        worker
            .users
            .of_claims(&identity, &worker.ca.config().subject)
    })
    .await;
    let mut e = AuditEvent::new("signature.failed", app.clock.now());
    e.request_id = Some(request_id.to_owned());
    e.eservice = Some(eservice.to_owned());
    e.signature_id = id.map(hex::encode);
    e.signature_type = Some(SignatureType::OneTime);
    e.outcome = Some("failure".into());
    e.message = Some(format!("{}: {error}", error_kind(error)));
    e.user_ref = match user_ref {
        Ok(Ok(r)) => r,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "no audit user reference for the failed signature");
            None
        }
        Err(_) => None,
    };
    crate::audit::record_or_log(&app.signatures, &e).await;
}

async fn sign_steps(
    app: &Arc<OneTime>,
    req: OneTimeRequest,
    drawn: Option<[u8; 32]>,
) -> Result<SignatureRecord, SignError> {
    // 0. A request the format cannot sign costs no key and no certificate.
    req.spec
        .check()
        .map_err(|e| SignError::Request(e.to_string()))?;
    // 1. A signing slot, or 503 after the queue timeout.
    let _slot = tokio::time::timeout(app.queue_timeout, app.slots.clone().acquire_owned())
        .await
        .map_err(|_| SignError::Busy)
        .and_then(|r| r.map_err(|_| SignError::Busy))
        .inspect_err(|e| app.meter.error(error_kind(e)))?;

    // 2.–7. In the HSM.
    let worker = app.clone();
    let (identity, spec) = (req.identity.clone(), req.spec.clone());
    let made = tokio::task::spawn_blocking(move || make_signature(&worker, &identity, &spec))
        .await
        .map_err(|e| internal("signing task", e))??;

    // 8. One durable batch: the signature, the TSA's record of its token, the audit event.
    let id = drawn.unwrap_or_else(|| {
        let mut id = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut id);
        id
    });
    let record = SignatureRecord {
        id,
        owner: req.eservice.clone(),
        signature_type: SignatureType::OneTime,
        format: req.spec.format.name().into(),
        hash_type: req.spec.hash_type.name().into(),
        digest: req.spec.digest().to_vec(),
        signature: made.signature,
        certificate: made.certificate_der,
        timestamp: made.token.token_der.clone(),
        certificate_serial: made.certificate_serial,
        created: made.created,
        fetched: None,
    };
    let mut event = AuditEvent::new("signature.created", made.created);
    event.request_id = Some(req.request_id.clone());
    event.eservice = Some(req.eservice.clone());
    event.signature_id = Some(record.id_hex());
    event.signature_type = Some(SignatureType::OneTime);
    event.certificate_serial = Some(record.certificate_serial.clone());
    event.certificate_sha256 = Some(esigd_pki::pem::sha256_thumbprint(&record.certificate));
    event.key_destroyed = Some(KeyDestroyed {
        key_sha256: made.receipt.key_thumbprint.clone(),
        at: rfc3339(made.receipt.destroyed_at),
        signatures: made.receipt.signatures,
    });
    event.tsa_serial = Some(made.token.record.serial);
    event.hash_type = Some(record.hash_type.clone());
    event.digest = Some(hex::encode(&record.digest));
    event.format = Some(record.format.clone());
    event.display = req.display.clone();
    event.user_ref = made.user_ref.clone();
    let mut notices = crate::notify::rows(
        app.notifier.as_deref(),
        &crate::notify::Event::signed(&record),
        req.contact.as_ref(),
    );
    // Every certificate the CA issues is in the ledger (as in Certificate Transparency), in the batch of
    // the signature it was issued for.
    let mut issued = AuditEvent::new("certificate.issued", made.created);
    issued.request_id = Some(req.request_id.clone());
    issued.eservice = Some(req.eservice.clone());
    issued.signature_id = Some(record.id_hex());
    issued.signature_type = Some(SignatureType::OneTime);
    issued.certificate_serial = Some(record.certificate_serial.clone());
    issued.certificate_sha256 = event.certificate_sha256.clone();
    issued.outcome = Some("success".into());
    issued.user_ref = made.user_ref.clone();
    notices.extend(
        app.signatures
            .audit_batch(&issued, made.created)
            .map_err(|e| internal("encoding the audit event", e))?,
    );
    seal::store_with(
        &app.vault(),
        app.meter.as_ref(),
        &record,
        &made.token,
        &event,
        notices,
    )
    .await
    .map_err(|e| match e {
        SealError::Busy => SignError::Unavailable("the store is busy; retry shortly".into()),
        SealError::StoreUnavailable(_) => {
            SignError::Unavailable("the signature store cannot write now; retry shortly".into())
        }
        other => {
            tracing::error!(error = %other, "one-time signature not stored");
            SignError::Internal
        }
    })?;
    app.meter.signature_created(format_label(req.spec.format));
    if let Some(n) = &app.notifier {
        n.wake();
    }

    // 9. The signature ID.
    tracing::info!(
        signature_id = %record.id_hex(),
        certificate_serial = %record.certificate_serial,
        tsa_serial = made.token.record.serial,
        key = %made.receipt.key_thumbprint,
        "one-time signature created"
    );
    Ok(record)
}

/// Steps 2–7 (blocking).
fn make_signature(
    app: &OneTime,
    identity: &IdentityClaims,
    spec: &SignSpec,
) -> Result<Made, SignError> {
    let now = app.clock.now();

    // 2. A one-time key generated in advance in the HSM; dropping it on any error below destroys it.
    let mut key = app
        .keys
        .take()
        .map_err(|e| hsm_failure("one-time key", &e))?;

    // 3. A CSR signed by the one-time key (its proof of possession for the CA).
    let csr_subject = DnBuilder::new()
        .common_name("esigd one-time key")
        .map_err(|e| internal("CSR subject", e))?
        .build();
    let csr = esigd_pki::csr::build_csr::<_, esigd_hsm::HsmSignature>(&key, csr_subject)
        .map_err(|e| signer_failure("CSR", e))?;
    let csr_der = csr.to_der().map_err(|e| internal("CSR encoding", e))?;

    // 4. The CA issues the one-time certificate for the user's identity.
    let timer = Timer::start(app.meter.as_ref(), Op::CaIssue);
    let issued = app
        .ca
        .issue_one_time(&csr_der, identity, now)
        .map_err(|e| match e {
            esigd_ca::CaError::Pki(X509Error::Identity { .. }) => {
                SignError::Identity(format!("the identity cannot be put in a certificate: {e}"))
            }
            other => signer_failure_ca(other),
        })?;
    timer.finish();
    app.meter.ca_issued(esigd_ca::ProfileKind::OneTime);
    // The citizen's audit reference: of the personal identifier in the certificate's subject.
    let user_ref = crate::audit::personal_identifier(&issued.certificate.tbs_certificate.subject)
        .map(|id| app.users.of_identifier(&id))
        .transpose()
        .map_err(|e| hsm_failure("audit user reference", &e))?;

    // 5. The format, in the two phases every signature takes: what the key signs (for CAdES
    //    the signed attributes over the given digest), signed in the HSM by the one-time key
    //    with the hash the format asks for, verified with the certificate and assembled.
    let chain = intermediates(app.ca.chain());
    let prepared = spec
        .prepare(&issued.certificate, &chain, now)
        .map_err(|e| SignError::Request(e.to_string()))?;
    let hash = super::HashType::from_digest_algorithm(prepared.signature_digest_algorithm())
        .ok_or_else(|| internal("signature hash", "not SHA-2"))?;
    key.set_scheme(hash.ecdsa_scheme())
        .map_err(|e| internal("one-time key scheme", e))?;
    let signature: Vec<u8> = {
        use signature::Signer;
        let sig: esigd_hsm::HsmSignature = key
            .try_sign(prepared.to_be_signed())
            .map_err(|e| signer_failure("signature", X509Error::Signer(e)))?;
        sig.into()
    };
    let signed = prepared
        .finish(&signature)
        .map_err(|e| internal("signature", e))?;

    // 6. The key is destroyed; the receipt goes into the audit event.
    let receipt = key
        .destroy()
        .map_err(|e| hsm_failure("destroying the one-time key", &e))?;

    // 7. Signature time-stamp over the signature value (CAdES-B-T).
    let stamped = seal::timestamp(
        &app.tsa,
        app.meter.as_ref(),
        signed.as_ref(),
        app.clock.now(),
    )
    .map_err(|e| match e {
        SealError::TsaRefused(m) => {
            SignError::Unavailable(format!("the time-stamping authority cannot stamp now: {m}"))
        }
        other => internal("time-stamp", other),
    })?;
    let (mut signature, token) = (stamped.signature, stamped.token);
    if spec.level == super::Level::BLt {
        signature = seal::long_term(
            &app.crls,
            app.ca.chain(),
            app.tsa.certificate(),
            &signature,
            app.clock.now(),
        )
        .map_err(|e| match e {
            SealError::CrlUnavailable(m) => SignError::Unavailable(m),
            other => internal("validation data", other),
        })?;
    }

    Ok(Made {
        signature,
        certificate_der: issued.der,
        certificate_serial: issued.record.serial_hex(),
        token,
        receipt,
        created: now,
        user_ref,
    })
}

fn signer_failure(step: &'static str, e: X509Error) -> SignError {
    match &e {
        X509Error::Signer(s) => match esigd_hsm::hsm_error_of(s) {
            Some(h) => hsm_failure(step, h),
            None => internal(step, e),
        },
        _ => internal(step, e),
    }
}

fn signer_failure_ca(e: esigd_ca::CaError) -> SignError {
    match e {
        esigd_ca::CaError::Pki(x) => signer_failure("one-time certificate", x),
        esigd_ca::CaError::Store(s) => {
            tracing::warn!(error = %s, "certificate record not stored");
            SignError::Unavailable("the certificate store is unavailable; retry shortly".into())
        }
        other => internal("one-time certificate", other),
    }
}

/// How long a caller should wait before retrying after [`SignError::Busy`] or
/// [`SignError::Unavailable`].
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

impl OneTime {
    fn vault(&self) -> seal::Vault {
        seal::Vault {
            signatures: self.signatures.clone(),
            imprints: self.imprints.clone(),
            retention_unfetched: self.retention_unfetched,
        }
    }

    /// The signing tasks in progress: shutdown waits for them before the HSM and the store close.
    pub fn tasks(&self) -> &tokio_util::task::TaskTracker {
        &self.tasks
    }

    /// One-time keys generated and waiting.
    pub fn ready_keys(&self) -> usize {
        self.keys.ready()
    }
}
