//! Certificate building and inspection: to-be-signed certificates from a template, signing through the
//! RustCrypto signer traits (HSM or in-memory key), signature checks, random serials and X.509 time encoding.
//!
//! The split between [`tbs_certificate`] and [`sign_tbs_certificate`] lets a CA lint the exact
//! to-be-signed bytes before the signer is called.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use const_oid::ObjectIdentifier;
use der::{
    Decode, Encode,
    asn1::{GeneralizedTime, OctetString, UtcTime},
};
use rand_core::CryptoRngCore;
use signature::{Keypair, Signer};
use spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, EncodePublicKey,
    SignatureBitStringEncoding, SubjectPublicKeyInfoOwned,
};
use x509_cert::{
    Certificate, TbsCertificate, Version,
    ext::{Extension, pkix::SubjectKeyIdentifier},
    name::Name,
    serial_number::SerialNumber,
    time::{Time, Validity},
};

use crate::{
    X509Error,
    extensions::ID_CE_SUBJECT_KEY_IDENTIFIER,
    keys::{KeyKind, key_identifier, verify_signature},
};

/// Everything that goes into a certificate except the issuer's signature algorithm (taken from the signer).
#[derive(Clone, Debug)]
pub struct CertificateTemplate {
    /// Serial number (see [`random_serial`]).
    pub serial: SerialNumber,
    /// Issuer name (the CA certificate's subject; the subject itself for a self-signed certificate).
    pub issuer: Name,
    /// Subject name.
    pub subject: Name,
    /// Subject public key.
    pub public_key: SubjectPublicKeyInfoOwned,
    /// notBefore (sub-second parts are truncated).
    pub not_before: SystemTime,
    /// notAfter (sub-second parts are truncated); inclusive per RFC 5280.
    pub not_after: SystemTime,
    /// Extensions in the order they are encoded.
    pub extensions: Vec<Extension>,
}

/// Truncates a time to whole seconds (X.509 times carry no fractions here).
pub fn truncate_to_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}

/// Encodes a time as RFC 5280 §4.1.2.5 requires: UTCTime through 2049, GeneralizedTime from 2050.
pub fn x509_time(what: &'static str, t: SystemTime) -> Result<Time, X509Error> {
    let t = truncate_to_seconds(t);
    let err = |e: der::Error| X509Error::Time {
        what,
        reason: e.to_string(),
    };
    let gt = GeneralizedTime::from_system_time(t).map_err(err)?;
    if gt.to_date_time().year() < 2050 {
        Ok(Time::UtcTime(UtcTime::from_system_time(t).map_err(err)?))
    } else {
        Ok(Time::GeneralTime(gt))
    }
}

/// GeneralizedTime for a time (OCSP and other places that only allow GeneralizedTime).
pub fn generalized_time(what: &'static str, t: SystemTime) -> Result<GeneralizedTime, X509Error> {
    GeneralizedTime::from_system_time(truncate_to_seconds(t)).map_err(|e| X509Error::Time {
        what,
        reason: e.to_string(),
    })
}

/// Generates a serial number of 20 bytes (159 random bits): the first bit is cleared so the INTEGER is
/// positive without a leading 0x00, and the first byte is never zero so the encoding is always 20 bytes
/// (RFC 5280 §4.1.2.2 maximum; CA/B Forum requires at least 64 random bits).
pub fn random_serial(rng: &mut impl CryptoRngCore) -> Result<SerialNumber, X509Error> {
    let mut bytes = [0u8; 20];
    rng.fill_bytes(&mut bytes);
    bytes[0] &= 0x7f;
    if bytes[0] == 0 {
        bytes[0] = 0x01;
    }
    SerialNumber::new(&bytes).map_err(X509Error::encode("serial number"))
}

/// The signer's public key as SubjectPublicKeyInfo.
pub fn signer_public_key<S>(signer: &S) -> Result<SubjectPublicKeyInfoOwned, X509Error>
where
    S: Keypair,
    S::VerifyingKey: EncodePublicKey,
{
    SubjectPublicKeyInfoOwned::from_key(signer.verifying_key()).map_err(X509Error::SignerKey)
}

/// The signer's signature algorithm identifier.
pub fn signer_algorithm<S: DynSignatureAlgorithmIdentifier>(
    signer: &S,
) -> Result<AlgorithmIdentifierOwned, X509Error> {
    signer
        .signature_algorithm_identifier()
        .map_err(X509Error::SignerKey)
}

/// Signs `message` with the signer and returns the DER signature bits. Signer failures stay
/// [`X509Error::Signer`] with the original [`signature::Error`] as source.
pub fn sign_bytes<S, Sig>(signer: &S, message: &[u8]) -> Result<der::asn1::BitString, X509Error>
where
    S: Signer<Sig>,
    Sig: SignatureBitStringEncoding,
{
    let sig = signer.try_sign(message).map_err(X509Error::Signer)?;
    sig.to_bitstring().map_err(X509Error::encode("signature"))
}

/// Assembles the to-be-signed certificate from a template, with the signer's algorithm identifier.
pub fn tbs_certificate<S: DynSignatureAlgorithmIdentifier>(
    signer: &S,
    template: CertificateTemplate,
) -> Result<TbsCertificate, X509Error> {
    let validity = Validity {
        not_before: x509_time("notBefore", template.not_before)?,
        not_after: x509_time("notAfter", template.not_after)?,
    };
    Ok(TbsCertificate {
        version: Version::V3,
        serial_number: template.serial,
        signature: signer_algorithm(signer)?,
        issuer: template.issuer,
        validity,
        subject: template.subject,
        subject_public_key_info: template.public_key,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: if template.extensions.is_empty() {
            None
        } else {
            Some(template.extensions)
        },
    })
}

/// Signs a to-be-signed certificate. The signer must be the one whose algorithm is in `tbs.signature`.
pub fn sign_tbs_certificate<S, Sig>(
    signer: &S,
    tbs: TbsCertificate,
) -> Result<Certificate, X509Error>
where
    S: Signer<Sig>,
    Sig: SignatureBitStringEncoding,
{
    let der = tbs.to_der().map_err(X509Error::encode("TBSCertificate"))?;
    let signature = sign_bytes(signer, &der)?;
    Ok(Certificate {
        signature_algorithm: tbs.signature.clone(),
        tbs_certificate: tbs,
        signature,
    })
}

/// A certificate from [`sign_certificate_der`]: the structure, its DER, and where the
/// to-be-signed part (the signed bytes) sits in it.
#[derive(Clone, Debug)]
pub struct SignedCertificate {
    /// The certificate.
    pub certificate: Certificate,
    /// Its DER encoding.
    pub der: Vec<u8>,
    tbs: std::ops::Range<usize>,
}

impl SignedCertificate {
    /// The DER TBSCertificate: exactly the bytes the signer signed.
    pub fn tbs_der(&self) -> &[u8] {
        &self.der[self.tbs.clone()]
    }
}

/// [`sign_tbs_certificate`] that also returns the certificate's DER, assembled around the TBS
/// encoding that was signed instead of encoding the whole certificate (and so the TBS) again.
/// Equal to `certificate_to_der` of the same certificate (tested).
pub fn sign_certificate_der<S, Sig>(
    signer: &S,
    tbs: TbsCertificate,
) -> Result<SignedCertificate, X509Error>
where
    S: Signer<Sig>,
    Sig: SignatureBitStringEncoding,
{
    use crate::der_write::{header_len, put_header};
    let tbs_der = tbs.to_der().map_err(X509Error::encode("TBSCertificate"))?;
    let signature = sign_bytes(signer, &tbs_der)?;
    let alg_der = tbs
        .signature
        .to_der()
        .map_err(X509Error::encode("signatureAlgorithm"))?;
    let sig_der = signature
        .to_der()
        .map_err(X509Error::encode("signatureValue"))?;
    let len = tbs_der.len() + alg_der.len() + sig_der.len();
    let mut der = Vec::with_capacity(header_len(len) + len);
    put_header(&mut der, 0x30, len);
    let start = der.len();
    der.extend_from_slice(&tbs_der);
    let tbs_range = start..der.len();
    der.extend_from_slice(&alg_der);
    der.extend_from_slice(&sig_der);
    Ok(SignedCertificate {
        certificate: Certificate {
            signature_algorithm: tbs.signature.clone(),
            tbs_certificate: tbs,
            signature,
        },
        der,
        tbs: tbs_range,
    })
}

/// Builds and signs a certificate in one step (no lint; a CA should use the two-step API).
pub fn build_certificate<S, Sig>(
    signer: &S,
    template: CertificateTemplate,
) -> Result<Certificate, X509Error>
where
    S: DynSignatureAlgorithmIdentifier + Signer<Sig>,
    Sig: SignatureBitStringEncoding,
{
    let tbs = tbs_certificate(signer, template)?;
    sign_tbs_certificate(signer, tbs)
}

/// Verifies a certificate's signature with the issuer's public key.
pub fn verify_certificate_signature(
    cert: &Certificate,
    issuer_key: &SubjectPublicKeyInfoOwned,
) -> Result<KeyKind, X509Error> {
    if cert.signature_algorithm != cert.tbs_certificate.signature {
        return Err(X509Error::invalid(
            "certificate",
            "signatureAlgorithm differs from the TBSCertificate signature field",
        ));
    }
    let tbs = cert
        .tbs_certificate
        .to_der()
        .map_err(X509Error::encode("TBSCertificate"))?;
    verify_signature(
        "certificate signature",
        issuer_key,
        &cert.signature_algorithm,
        &tbs,
        &cert.signature,
    )
}

/// Finds an extension by OID; errors when it appears more than once (RFC 5280 §4.2).
pub fn find_extension(
    tbs: &TbsCertificate,
    oid: ObjectIdentifier,
) -> Result<Option<&Extension>, X509Error> {
    let mut found = None;
    for ext in tbs.extensions.iter().flatten() {
        if ext.extn_id == oid {
            if found.is_some() {
                return Err(X509Error::invalid(
                    "certificate",
                    format!("extension {oid} appears more than once"),
                ));
            }
            found = Some(ext);
        }
    }
    Ok(found)
}

/// Decodes an extension's value by OID: `Ok(Some((critical, value)))` when present.
pub fn decode_extension<'a, T: Decode<'a>>(
    tbs: &'a TbsCertificate,
    oid: ObjectIdentifier,
) -> Result<Option<(bool, T)>, X509Error> {
    match find_extension(tbs, oid)? {
        Some(ext) => {
            let value = T::from_der(ext.extn_value.as_bytes())
                .map_err(X509Error::decode("certificate extension"))?;
            Ok(Some((ext.critical, value)))
        }
        None => Ok(None),
    }
}

/// The subjectKeyIdentifier of a certificate, or the RFC 5280 method-1 key identifier of its key when the
/// extension is absent. Use this as the `keyIdentifier` of the authorityKeyIdentifier of issued objects.
pub fn subject_key_id_of(cert: &Certificate) -> Result<Vec<u8>, X509Error> {
    match decode_extension::<SubjectKeyIdentifier>(
        &cert.tbs_certificate,
        ID_CE_SUBJECT_KEY_IDENTIFIER,
    )? {
        Some((_, ski)) => Ok(ski.0.as_bytes().to_vec()),
        None => Ok(key_identifier(
            &cert.tbs_certificate.subject_public_key_info,
        )),
    }
}

/// `OctetString` helper for callers building raw extensions.
pub fn octet_string(bytes: Vec<u8>) -> Result<OctetString, X509Error> {
    OctetString::new(bytes).map_err(X509Error::encode("OCTET STRING"))
}
