//! Full CRLs (RFC 5280 §5): version 2, authorityKeyIdentifier and cRLNumber extensions, reason codes and
//! invalidity dates as entry extensions, signed through the RustCrypto signer traits.

use std::time::SystemTime;

use const_oid::{AssociatedOid, ObjectIdentifier};
use der::{Encode, asn1::Uint};
use signature::Signer;
use spki::{
    DynSignatureAlgorithmIdentifier, SignatureBitStringEncoding, SubjectPublicKeyInfoOwned,
};
use x509_cert::{
    Certificate, Version,
    crl::{CertificateList, RevokedCert, TbsCertList},
    ext::{
        Extension,
        pkix::{CrlNumber, CrlReason},
    },
    serial_number::SerialNumber,
};

use crate::{
    X509Error,
    certificate::{generalized_time, sign_bytes, signer_algorithm, subject_key_id_of, x509_time},
    extensions::authority_key_identifier,
    keys::{KeyKind, verify_signature},
};

/// id-ce-invalidityDate (RFC 5280 §5.3.2).
pub const ID_CE_INVALIDITY_DATE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.24");
/// id-ce-cRLReasons (RFC 5280 §5.3.1).
pub const ID_CE_CRL_REASONS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.21");

/// One revoked (or held) certificate on a CRL.
#[derive(Clone, Debug)]
pub struct RevokedEntry {
    /// Serial number of the revoked certificate.
    pub serial: SerialNumber,
    /// When the CA processed the revocation (or hold).
    pub revocation_time: SystemTime,
    /// Reason code; `None` or `Unspecified` leaves the entry extension out (RFC 5280 §5.3.1: SHOULD be absent
    /// instead of unspecified).
    pub reason: Option<CrlReason>,
    /// When the key is known or suspected to have been compromised (invalidityDate entry extension).
    pub invalidity_date: Option<SystemTime>,
}

/// Parameters of one CRL issue.
#[derive(Clone, Debug)]
pub struct CrlParams {
    /// Monotonically increasing CRL number.
    pub crl_number: u64,
    /// thisUpdate.
    pub this_update: SystemTime,
    /// nextUpdate (RFC 5280 requires it).
    pub next_update: SystemTime,
}

/// Builds and signs a full CRL for the CA certificate `issuer` with its key in `signer`.
pub fn build_crl<S, Sig>(
    signer: &S,
    issuer: &Certificate,
    params: &CrlParams,
    entries: &[RevokedEntry],
) -> Result<CertificateList, X509Error>
where
    S: DynSignatureAlgorithmIdentifier + Signer<Sig>,
    Sig: SignatureBitStringEncoding,
{
    if params.next_update <= params.this_update {
        return Err(X509Error::invalid(
            "CRL",
            "nextUpdate must be after thisUpdate",
        ));
    }
    let mut revoked = Vec::with_capacity(entries.len());
    for e in entries {
        let mut exts = Vec::new();
        if let Some(reason) = e.reason.filter(|r| *r != CrlReason::Unspecified) {
            exts.push(Extension {
                extn_id: CrlReason::OID,
                critical: false,
                extn_value: der::asn1::OctetString::new(
                    reason.to_der().map_err(X509Error::encode("CRL reason"))?,
                )
                .map_err(X509Error::encode("CRL reason"))?,
            });
        }
        if let Some(t) = e.invalidity_date {
            let gt = generalized_time("invalidityDate", t)?;
            exts.push(Extension {
                extn_id: ID_CE_INVALIDITY_DATE,
                critical: false,
                extn_value: der::asn1::OctetString::new(
                    gt.to_der().map_err(X509Error::encode("invalidityDate"))?,
                )
                .map_err(X509Error::encode("invalidityDate"))?,
            });
        }
        revoked.push(RevokedCert {
            serial_number: e.serial.clone(),
            revocation_date: x509_time("revocationDate", e.revocation_time)?,
            crl_entry_extensions: if exts.is_empty() { None } else { Some(exts) },
        });
    }
    let number =
        Uint::new(&params.crl_number.to_be_bytes()).map_err(X509Error::encode("cRLNumber"))?;
    let crl_number = Extension {
        extn_id: CrlNumber::OID,
        critical: false,
        extn_value: der::asn1::OctetString::new(
            CrlNumber(number)
                .to_der()
                .map_err(X509Error::encode("cRLNumber"))?,
        )
        .map_err(X509Error::encode("cRLNumber"))?,
    };
    let tbs = TbsCertList {
        version: Version::V2,
        signature: signer_algorithm(signer)?,
        issuer: issuer.tbs_certificate.subject.clone(),
        this_update: x509_time("thisUpdate", params.this_update)?,
        next_update: Some(x509_time("nextUpdate", params.next_update)?),
        revoked_certificates: if revoked.is_empty() {
            None
        } else {
            Some(revoked)
        },
        crl_extensions: Some(vec![
            authority_key_identifier(&subject_key_id_of(issuer)?)?,
            crl_number,
        ]),
    };
    let der = tbs.to_der().map_err(X509Error::encode("TBSCertList"))?;
    let signature = sign_bytes(signer, &der)?;
    Ok(CertificateList {
        signature_algorithm: tbs.signature.clone(),
        tbs_cert_list: tbs,
        signature,
    })
}

/// Verifies a CRL's signature with the issuer's public key.
pub fn verify_crl_signature(
    crl: &CertificateList,
    issuer_key: &SubjectPublicKeyInfoOwned,
) -> Result<KeyKind, X509Error> {
    let tbs = crl
        .tbs_cert_list
        .to_der()
        .map_err(X509Error::encode("TBSCertList"))?;
    verify_signature(
        "CRL signature",
        issuer_key,
        &crl.signature_algorithm,
        &tbs,
        &crl.signature,
    )
}
