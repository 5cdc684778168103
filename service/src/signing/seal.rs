//! The steps every signature takes once its signature value exists, whoever held the key
//! (a one-time key in the HSM, or the citizen's device), in every format:
//!
//! * [`timestamp`]: the TSA time-stamps what the format's time-stamp covers (the CMS signature
//!   value, the canonical XAdES `SignatureValue`, the JWS signature); the format embeds the
//!   token (level B-T);
//! * [`store`]: the signature, the TSA's record of the token and the audit event in one durable
//!   batch (the caller answers only after it).

use std::time::SystemTime;

use esigd_formats::Signed;
use esigd_store::persist::RocksImprintLog;
use esigd_store::signatures::{AuditEvent, SignatureRecord, SignatureStore};
use esigd_tsa::{DigestAlgorithm, IssuedToken};
use sha2::{Digest, Sha256};

use crate::authorities::TsaService;
use crate::certs::Crls;
use crate::meter::{Meter, Op, Timer};

/// Why a signature could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The TSA cannot stamp now (clock unsynchronised, …): a passing condition.
    #[error("the time-stamping authority cannot stamp now: {0}")]
    TsaRefused(String),
    /// The CA's CRL for a B-LT signature cannot be made now (the HSM is busy or failing).
    #[error("the CRL for a B-LT signature cannot be made now: {0}")]
    CrlUnavailable(String),
    /// The store is busy: retry shortly.
    #[error("the store is busy; retry shortly")]
    Busy,
    /// The store cannot write (disk full, I/O error): nothing was stored, a passing condition.
    #[error("the store cannot write now: {0}")]
    StoreUnavailable(String),
    /// Anything else; details are in the log.
    #[error("internal error while sealing the signature ({0})")]
    Internal(&'static str),
}

fn internal(step: &'static str, e: impl std::fmt::Display) -> SealError {
    tracing::error!(step, error = %e, "sealing a signature failed");
    SealError::Internal(step)
}

/// A signature at level B-T and the token in it.
#[derive(Debug)]
pub struct Stamped {
    /// The signed object with the signature time-stamp.
    pub signature: Vec<u8>,
    /// The TSA's token (its record goes into the store with the signature).
    pub token: IssuedToken,
}

/// Time-stamps what `signed` says its time-stamp covers (SHA-256 imprint) and embeds the token.
/// Blocking: the TSA signs in the HSM.
pub fn timestamp(
    tsa: &TsaService,
    meter: &dyn Meter,
    signed: &dyn Signed,
    now: SystemTime,
) -> Result<Stamped, SealError> {
    let imprint = Sha256::digest(signed.timestamp_input());
    let timer = Timer::start(meter, Op::TsaStamp);
    let token = tsa
        .stamp_imprint(DigestAlgorithm::Sha256, &imprint, now)
        .map_err(|r| {
            tracing::warn!(reason = %r, "the TSA refused the signature time-stamp");
            meter.tsa_rejected(&r);
            SealError::TsaRefused(r.to_string())
        })?;
    timer.finish();
    meter.tsa_granted();
    let signature = signed
        .add_timestamp(&token.token_der)
        .map_err(|e| internal("adding the time-stamp", e))?;
    Ok(Stamped { signature, token })
}

/// Makes a CAdES-B-T signature B-LT: the CA chain, the TSA's certificate and the CA's current
/// CRL go into the CMS (they cover the TSA certificate and every certificate the CA issued; a
/// one-time certificate needs none: `noRevAvail`). Blocking: the CRL may be re-signed in the HSM.
pub fn long_term(
    crls: &Crls,
    ca_chain: &[x509_cert::Certificate],
    tsa_certificate: &x509_cert::Certificate,
    cades: &[u8],
    now: SystemTime,
) -> Result<Vec<u8>, SealError> {
    let crl = crls.current(now).map_err(|e| {
        tracing::warn!(error = %e, "no CRL for a B-LT signature");
        SealError::CrlUnavailable(e.to_string())
    })?;
    let mut certs = ca_chain.to_vec();
    certs.push(tsa_certificate.clone());
    esigd_pki::cades::add_validation_data(cades, &certs, &[&crl])
        .map_err(|e| internal("adding the validation data", e))
}

/// Where [`store`] writes.
#[derive(Clone)]
pub struct Vault {
    /// Signature records and the audit trail.
    pub signatures: SignatureStore,
    /// The TSA's records of issued tokens.
    pub imprints: RocksImprintLog,
    /// `store.retention_unfetched`.
    pub retention_unfetched: std::time::Duration,
}

/// Stores `record`, the TSA record of `token` and `event` in one durable batch.
pub async fn store(
    vault: &Vault,
    meter: &dyn Meter,
    record: &SignatureRecord,
    token: &IssuedToken,
    event: &AuditEvent,
) -> Result<(), SealError> {
    store_with(
        vault,
        meter,
        record,
        token,
        event,
        esigd_store::Batch::new(),
    )
    .await
}

/// [`store`] with `extra` writes in the same atomic batch (the notification outbox rows of the
/// signature: they exist exactly when the signature does).
pub async fn store_with(
    vault: &Vault,
    meter: &dyn Meter,
    record: &SignatureRecord,
    token: &IssuedToken,
    event: &AuditEvent,
    extra: esigd_store::Batch,
) -> Result<(), SealError> {
    let mut batch = vault
        .signatures
        .create_batch(record, vault.retention_unfetched)
        .map_err(|e| internal("encoding the record", e))?;
    batch.extend(
        vault
            .imprints
            .batch_for_transaction(
                &token.record,
                &esigd_store::persist::TokenTransaction {
                    signature_id: &record.id_hex(),
                    eservice: &record.owner,
                    request_id: event.request_id.as_deref(),
                    token_sha256: &esigd_pki::pem::sha256_thumbprint(&token.token_der),
                },
            )
            .map_err(|e| internal("encoding the TSA record", e))?,
    );
    // The event names the signed object by its hash.
    let mut event = event.clone();
    event.signature_sha256 = Some(esigd_pki::pem::sha256_thumbprint(&record.signature));
    let event = &event;
    batch.extend(
        vault
            .signatures
            .audit_batch(event, record.created)
            .map_err(|e| internal("encoding the audit event", e))?,
    );
    batch.extend(extra);
    let timer = Timer::start(meter, Op::StoreWrite);
    vault.signatures.commit(batch).await.map_err(|e| {
        if e.is_busy() {
            SealError::Busy
        } else if matches!(
            e,
            esigd_store::persist::PersistError::Store(esigd_store::StoreError::Write(_))
        ) {
            tracing::error!(error = %e, "store write failed (disk full or I/O error?): the signature is not stored");
            SealError::StoreUnavailable(e.to_string())
        } else {
            internal("storing the signature", e)
        }
    })?;
    timer.finish();
    Ok(())
}
