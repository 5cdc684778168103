//! Signature values between their encodings, and their verification with the certificate's key
//! over the prepared digest (for the formats that do not go through CMS).

use esigd_pki::cms::DigestAlgorithm;
use esigd_pki::keys::{KeyKind, classify_key, verify_signature};
use x509_cert::Certificate;

use crate::{Format, FormatError};

/// The signer's key kind, or an error naming the format.
pub(crate) fn key_kind(format: Format, cert: &Certificate) -> Result<KeyKind, FormatError> {
    classify_key(&cert.tbs_certificate.subject_public_key_info).map_err(|e| {
        FormatError::UnsupportedKey {
            format,
            problem: e.to_string(),
        }
    })
}

/// Verifies `signature` (DER `ECDSA-Sig-Value`, or an RSA PKCS#1 v1.5 block) over `message`
/// hashed with `hash`, with the certificate's key (ring's verifiers where they exist: several
/// times faster than hashing here and verifying the digest).
pub(crate) fn verify(
    cert: &Certificate,
    message: &[u8],
    hash: DigestAlgorithm,
    signature: &[u8],
) -> Result<(), FormatError> {
    use esigd_pki::cms::oids;
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let ec = match classify_key(spki).map_err(|e| FormatError::Verify(e.to_string()))? {
        KeyKind::EcdsaP256 | KeyKind::EcdsaP384 => true,
        KeyKind::Rsa { .. } => false,
    };
    let oid = match (ec, hash) {
        (true, DigestAlgorithm::Sha256) => oids::ECDSA_WITH_SHA256,
        (true, DigestAlgorithm::Sha384) => oids::ECDSA_WITH_SHA384,
        (true, DigestAlgorithm::Sha512) => oids::ECDSA_WITH_SHA512,
        (false, DigestAlgorithm::Sha256) => oids::SHA256_WITH_RSA,
        (false, DigestAlgorithm::Sha384) => oids::SHA384_WITH_RSA,
        (false, DigestAlgorithm::Sha512) => oids::SHA512_WITH_RSA,
        (_, other) => {
            return Err(FormatError::Verify(format!(
                "no signature algorithm with {}",
                digest_name(other)
            )));
        }
    };
    let alg = spki::AlgorithmIdentifierOwned {
        oid,
        parameters: None,
    };
    let bits = der::asn1::BitString::from_bytes(signature)
        .map_err(|e| FormatError::Verify(format!("not a signature value ({e})")))?;
    verify_signature("signature value", spki, &alg, message, &bits)
        .map(|_| ())
        .map_err(|e| FormatError::Verify(e.to_string()))
}

/// The signature value as XML-DSig (RFC 4050/6931) and JWS (RFC 7518) carry it: raw `r‖s` of
/// fixed width for ECDSA, unchanged for RSA.
pub(crate) fn to_raw(kind: KeyKind, signature: &[u8]) -> Result<Vec<u8>, FormatError> {
    let bad =
        |e: p256::ecdsa::Error| FormatError::Verify(format!("not a DER ECDSA-Sig-Value ({e})"));
    Ok(match kind {
        KeyKind::EcdsaP256 => p256::ecdsa::Signature::from_der(signature)
            .map_err(bad)?
            .to_bytes()
            .to_vec(),
        KeyKind::EcdsaP384 => p384::ecdsa::Signature::from_der(signature)
            .map_err(bad)?
            .to_bytes()
            .to_vec(),
        KeyKind::Rsa { .. } => signature.to_vec(),
    })
}

/// The contract name of a digest algorithm, for messages.
pub(crate) fn digest_name(alg: DigestAlgorithm) -> &'static str {
    match alg {
        DigestAlgorithm::Sha256 => "SHA-256",
        DigestAlgorithm::Sha384 => "SHA-384",
        DigestAlgorithm::Sha512 => "SHA-512",
        DigestAlgorithm::Sha3_256 => "SHA3-256",
        DigestAlgorithm::Sha3_384 => "SHA3-384",
        DigestAlgorithm::Sha3_512 => "SHA3-512",
    }
}
