//! The two-phase step every CAdES signature takes, whoever holds the key: [`prepare`] the
//! signed attributes over the e-Service's digest for a certificate, have them signed (a one-time
//! key in the HSM signs [`ToBeSigned::signed_attributes`]; the citizen's device signs
//! [`ToBeSigned::digest`]), then [`ToBeSigned::finish`] verifies the signature with the
//! certificate's key and assembles the CMS. The time-stamp and the durable batch follow in
//! [`super::seal`]. Other formats plug in here (a prepare that makes their to-be-signed data and
//! a finish that embeds the signature).

use std::time::SystemTime;

use esigd_pki::cms::{CmsError, ContentType, Prepared, SignParams, SignerContext};
use x509_cert::Certificate;

use super::HashType;

/// Signed attributes waiting for their signature.
#[derive(Debug, Clone)]
pub struct ToBeSigned {
    ctx: SignerContext,
    prepared: Prepared,
}

/// Prepares a detached CAdES signature over `digest` (of `hash`) by the key of `cert`: signed
/// attributes content-type id-data, message-digest, signing-time (`now`) and
/// signing-certificate-v2; `cert` and `chain` go into the certificates.
pub fn prepare(
    cert: &Certificate,
    hash: HashType,
    digest: &[u8],
    now: SystemTime,
    chain: &[Certificate],
) -> Result<ToBeSigned, CmsError> {
    let ctx = SignerContext::for_certificate(cert, hash.digest_algorithm())?;
    let prepared = ctx.prepare(
        &SignParams {
            content_type: ContentType::Data,
            digest_algorithm: hash.digest_algorithm(),
            digest,
            signing_time: Some(now),
            extra_certs: chain,
            include_signer_cert: true,
        },
        None,
    )?;
    Ok(ToBeSigned { ctx, prepared })
}

impl ToBeSigned {
    /// What a key that signs messages signs (DER of the signed attributes).
    pub fn signed_attributes(&self) -> &[u8] {
        self.prepared.signed_attributes()
    }

    /// What a device that signs a ready digest signs (`RAW_DIGEST_SIGNATURE`).
    pub fn digest(&self) -> Vec<u8> {
        self.prepared.digest()
    }

    /// Verifies `signature` (DER `ECDSA-Sig-Value`, or the RSA block) with the certificate's
    /// key over the signed attributes and returns the CMS `ContentInfo(SignedData)`, DER.
    pub fn finish(&self, signature: &[u8]) -> Result<Vec<u8>, CmsError> {
        self.ctx.finish(&self.prepared, signature)
    }
}
