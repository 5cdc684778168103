//! Public-key policy and signature verification: which subject keys are accepted (ECDSA P-256/P-384,
//! RSA 2048–4096) and checking signatures made with them (CSR proof of possession, certificates, CRLs).

use const_oid::ObjectIdentifier;
use der::{Decode, asn1::BitString};
use sha2::Digest;
use signature::hazmat::PrehashVerifier;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

use crate::X509Error;

/// id-ecPublicKey (RFC 5480).
pub const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp256r1 / P-256.
pub const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// secp384r1 / P-384.
pub const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// rsaEncryption (RFC 8017).
pub const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// id-dsa (rejected, named in the error).
pub const ID_DSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10040.4.1");
/// ecdsa-with-SHA256.
pub const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// ecdsa-with-SHA384.
pub const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
/// ecdsa-with-SHA512.
pub const ECDSA_WITH_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
/// sha256WithRSAEncryption.
pub const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
/// sha384WithRSAEncryption.
pub const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
/// sha512WithRSAEncryption.
pub const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
/// RSASSA-PSS (not supported; named in the error).
pub const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");

/// Smallest accepted RSA modulus in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest accepted RSA modulus in bits.
pub const MAX_RSA_BITS: usize = 4096;

/// An accepted public key type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// ECDSA on NIST P-256.
    EcdsaP256,
    /// ECDSA on NIST P-384.
    EcdsaP384,
    /// RSA with the given modulus size in bits (2048..=4096).
    Rsa {
        /// Modulus length in bits.
        bits: usize,
    },
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyKind::EcdsaP256 => f.write_str("ECDSA P-256"),
            KeyKind::EcdsaP384 => f.write_str("ECDSA P-384"),
            KeyKind::Rsa { bits } => write!(f, "RSA-{bits}"),
        }
    }
}

fn oid_name(oid: &ObjectIdentifier) -> String {
    match const_oid::db::DB.by_oid(oid) {
        Some(name) => format!("{name} ({oid})"),
        None => oid.to_string(),
    }
}

/// Classifies a SubjectPublicKeyInfo and rejects anything that is not ECDSA P-256/P-384 or RSA 2048–4096,
/// with a reason (e.g. "DSA (1.2.840.10040.4.1)", "RSA-1024 is below 2048 bits").
pub fn classify_key(spki: &SubjectPublicKeyInfoOwned) -> Result<KeyKind, X509Error> {
    let alg = spki.algorithm.oid;
    if alg == ID_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
            .ok_or_else(|| {
                X509Error::UnsupportedKey("EC key without a named-curve OID parameter".into())
            })?;
        let point = spki.subject_public_key.as_bytes().ok_or_else(|| {
            X509Error::UnsupportedKey("EC public key bit string has unused bits".into())
        })?;
        if curve == SECP256R1 {
            p256::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|_| {
                X509Error::UnsupportedKey("P-256 public key is not a valid curve point".into())
            })?;
            Ok(KeyKind::EcdsaP256)
        } else if curve == SECP384R1 {
            p384::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|_| {
                X509Error::UnsupportedKey("P-384 public key is not a valid curve point".into())
            })?;
            Ok(KeyKind::EcdsaP384)
        } else {
            Err(X509Error::UnsupportedKey(format!(
                "EC curve {} is not allowed",
                oid_name(&curve)
            )))
        }
    } else if alg == RSA_ENCRYPTION {
        let bits = rsa_public_key(spki)?.1;
        Ok(KeyKind::Rsa { bits })
    } else if alg == ID_DSA {
        Err(X509Error::UnsupportedKey(format!("DSA ({alg})")))
    } else {
        Err(X509Error::UnsupportedKey(format!(
            "key algorithm {}",
            oid_name(&alg)
        )))
    }
}

fn rsa_public_key(
    spki: &SubjectPublicKeyInfoOwned,
) -> Result<(rsa::RsaPublicKey, usize), X509Error> {
    let raw = spki.subject_public_key.as_bytes().ok_or_else(|| {
        X509Error::UnsupportedKey("RSA public key bit string has unused bits".into())
    })?;
    let parsed = rsa::pkcs1::RsaPublicKey::from_der(raw).map_err(|e| {
        X509Error::UnsupportedKey(format!("RSA public key is not valid PKCS#1: {e}"))
    })?;
    let n = parsed.modulus.as_bytes();
    let bits = match n.first() {
        Some(first) => n.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    };
    if bits < MIN_RSA_BITS {
        return Err(X509Error::UnsupportedKey(format!(
            "RSA-{bits} is below {MIN_RSA_BITS} bits"
        )));
    }
    if bits > MAX_RSA_BITS {
        return Err(X509Error::UnsupportedKey(format!(
            "RSA-{bits} is above {MAX_RSA_BITS} bits"
        )));
    }
    let key = rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(n),
        rsa::BigUint::from_bytes_be(parsed.public_exponent.as_bytes()),
    )
    .map_err(|e| X509Error::UnsupportedKey(format!("RSA public key rejected: {e}")))?;
    Ok((key, bits))
}

#[derive(Clone, Copy)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

fn signature_hash(alg: &AlgorithmIdentifierOwned, key: KeyKind) -> Result<Hash, X509Error> {
    let oid = alg.oid;
    let ec = matches!(key, KeyKind::EcdsaP256 | KeyKind::EcdsaP384);
    let hash = match oid {
        o if o == ECDSA_WITH_SHA256 && ec => Hash::Sha256,
        o if o == ECDSA_WITH_SHA384 && ec => Hash::Sha384,
        o if o == ECDSA_WITH_SHA512 && ec => Hash::Sha512,
        o if o == SHA256_WITH_RSA && !ec => Hash::Sha256,
        o if o == SHA384_WITH_RSA && !ec => Hash::Sha384,
        o if o == SHA512_WITH_RSA && !ec => Hash::Sha512,
        o if o == RSASSA_PSS => {
            return Err(X509Error::UnsupportedSignatureAlgorithm(
                "RSASSA-PSS (1.2.840.113549.1.1.10) is not supported; use PKCS#1 v1.5 with SHA-256/384/512".into(),
            ));
        }
        o => {
            return Err(X509Error::UnsupportedSignatureAlgorithm(format!(
                "{} with a {key} key",
                oid_name(&o)
            )));
        }
    };
    Ok(hash)
}

/// Verifies `signature` over `message` with the key in `spki`, using the algorithm `alg`.
///
/// `what` names the check in the error (e.g. "CSR proof of possession"). Returns the classified key.
pub fn verify_signature(
    what: &'static str,
    spki: &SubjectPublicKeyInfoOwned,
    alg: &AlgorithmIdentifierOwned,
    message: &[u8],
    signature: &BitString,
) -> Result<KeyKind, X509Error> {
    let key = classify_key(spki)?;
    let hash = signature_hash(alg, key)?;
    let sig = signature
        .as_bytes()
        .ok_or_else(|| X509Error::invalid(what, "signature bit string has unused bits"))?;
    let bad = || X509Error::BadSignature {
        what,
        key: "the public key",
    };
    // ring's assembly-optimised verifiers are several times faster than the portable ones, and
    // verification sits on the issuance path twice (CSR proof of possession, and the check of
    // every certificate after the HSM signed it). Combinations ring lacks fall back below.
    let point = spki.subject_public_key.raw_bytes();
    let ring_alg: Option<&'static dyn ring::signature::VerificationAlgorithm> = match (key, hash) {
        (KeyKind::EcdsaP256, Hash::Sha256) => Some(&ring::signature::ECDSA_P256_SHA256_ASN1),
        (KeyKind::EcdsaP256, Hash::Sha384) => Some(&ring::signature::ECDSA_P256_SHA384_ASN1),
        (KeyKind::EcdsaP384, Hash::Sha256) => Some(&ring::signature::ECDSA_P384_SHA256_ASN1),
        (KeyKind::EcdsaP384, Hash::Sha384) => Some(&ring::signature::ECDSA_P384_SHA384_ASN1),
        (KeyKind::Rsa { .. }, Hash::Sha256) => Some(&ring::signature::RSA_PKCS1_2048_8192_SHA256),
        (KeyKind::Rsa { .. }, Hash::Sha384) => Some(&ring::signature::RSA_PKCS1_2048_8192_SHA384),
        (KeyKind::Rsa { .. }, Hash::Sha512) => Some(&ring::signature::RSA_PKCS1_2048_8192_SHA512),
        _ => None,
    };
    if let Some(alg) = ring_alg {
        ring::signature::UnparsedPublicKey::new(alg, point)
            .verify(message, sig)
            .map_err(|_| bad())?;
        return Ok(key);
    }
    let digest: Vec<u8> = match hash {
        Hash::Sha256 => sha2::Sha256::digest(message).to_vec(),
        Hash::Sha384 => sha2::Sha384::digest(message).to_vec(),
        Hash::Sha512 => sha2::Sha512::digest(message).to_vec(),
    };
    match key {
        KeyKind::EcdsaP256 => {
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|_| bad())?;
            let sig = p256::ecdsa::Signature::from_der(sig).map_err(|_| bad())?;
            vk.verify_prehash(&digest, &sig).map_err(|_| bad())?;
        }
        KeyKind::EcdsaP384 => {
            let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|_| bad())?;
            let sig = p384::ecdsa::Signature::from_der(sig).map_err(|_| bad())?;
            vk.verify_prehash(&digest, &sig).map_err(|_| bad())?;
        }
        KeyKind::Rsa { .. } => {
            // Every hash RSA is used with here has a ring verifier above.
            return Err(X509Error::invalid(what, "unsupported RSA signature hash"));
        }
    }
    Ok(key)
}

/// How a signature over a ready digest was made (a remote device's `RAW_DIGEST_SIGNATURE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestSignatureScheme {
    /// ECDSA; the signature is a DER `ECDSA-Sig-Value`.
    Ecdsa,
    /// RSASSA-PKCS1-v1_5 (DigestInfo of the digest's SHA-2 hash).
    RsaPkcs1v15,
    /// RSASSA-PSS, MGF1 with the same hash, salt length = hash length.
    RsaPss,
}

/// Verifies `signature` over an already computed SHA-2 `digest` (32, 48 or 64 bytes: SHA-256,
/// SHA-384, SHA-512) with the key in `spki`. This is how a signature made elsewhere (a citizen's
/// device) is checked against the digest *we* computed and the key *we* registered, before it is
/// used. `what` names the check in the error. Returns the classified key.
pub fn verify_digest_signature(
    what: &'static str,
    spki: &SubjectPublicKeyInfoOwned,
    scheme: DigestSignatureScheme,
    digest: &[u8],
    signature: &[u8],
) -> Result<KeyKind, X509Error> {
    let key = classify_key(spki)?;
    let bad = || X509Error::BadSignature {
        what,
        key: "the registered public key",
    };
    let hash = match digest.len() {
        32 => Hash::Sha256,
        48 => Hash::Sha384,
        64 => Hash::Sha512,
        n => {
            return Err(X509Error::invalid(
                what,
                format!("a {n}-byte digest is not SHA-256, SHA-384 or SHA-512"),
            ));
        }
    };
    let point = spki.subject_public_key.raw_bytes();
    match (key, scheme) {
        (KeyKind::EcdsaP256, DigestSignatureScheme::Ecdsa) => {
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|_| bad())?;
            let sig = p256::ecdsa::Signature::from_der(signature).map_err(|_| bad())?;
            vk.verify_prehash(digest, &sig).map_err(|_| bad())?;
        }
        (KeyKind::EcdsaP384, DigestSignatureScheme::Ecdsa) => {
            let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|_| bad())?;
            let sig = p384::ecdsa::Signature::from_der(signature).map_err(|_| bad())?;
            vk.verify_prehash(digest, &sig).map_err(|_| bad())?;
        }
        (KeyKind::Rsa { .. }, DigestSignatureScheme::RsaPkcs1v15) => {
            let (pk, _) = rsa_public_key(spki)?;
            let sig = rsa::pkcs1v15::Signature::try_from(signature).map_err(|_| bad())?;
            match hash {
                Hash::Sha256 => rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(pk)
                    .verify_prehash(digest, &sig),
                Hash::Sha384 => rsa::pkcs1v15::VerifyingKey::<sha2::Sha384>::new(pk)
                    .verify_prehash(digest, &sig),
                Hash::Sha512 => rsa::pkcs1v15::VerifyingKey::<sha2::Sha512>::new(pk)
                    .verify_prehash(digest, &sig),
            }
            .map_err(|_| bad())?;
        }
        (KeyKind::Rsa { .. }, DigestSignatureScheme::RsaPss) => {
            let (pk, _) = rsa_public_key(spki)?;
            let sig = rsa::pss::Signature::try_from(signature).map_err(|_| bad())?;
            match hash {
                Hash::Sha256 => {
                    rsa::pss::VerifyingKey::<sha2::Sha256>::new(pk).verify_prehash(digest, &sig)
                }
                Hash::Sha384 => {
                    rsa::pss::VerifyingKey::<sha2::Sha384>::new(pk).verify_prehash(digest, &sig)
                }
                Hash::Sha512 => {
                    rsa::pss::VerifyingKey::<sha2::Sha512>::new(pk).verify_prehash(digest, &sig)
                }
            }
            .map_err(|_| bad())?;
        }
        (k, s) => {
            return Err(X509Error::UnsupportedSignatureAlgorithm(format!(
                "{s:?} with a {k} key"
            )));
        }
    }
    Ok(key)
}

/// Checks the form of an ECDSA signature made with a key of `kind`: one DER `ECDSA-Sig-Value` whose
/// r and s are in 1..n−1. No curve arithmetic (microseconds cheaper than [`verify_signature`]): it
/// catches a truncated, garbled or wrongly encoded signature, not a wrong key. Other kinds: error.
pub fn check_ecdsa_signature_form(kind: KeyKind, signature: &[u8]) -> Result<(), X509Error> {
    let bad = || X509Error::BadSignature {
        what: "signature encoding",
        key: "the signer (not a DER ECDSA-Sig-Value with r and s in range)",
    };
    match kind {
        KeyKind::EcdsaP256 => p256::ecdsa::Signature::from_der(signature)
            .map(|_| ())
            .map_err(|_| bad()),
        KeyKind::EcdsaP384 => p384::ecdsa::Signature::from_der(signature)
            .map(|_| ())
            .map_err(|_| bad()),
        KeyKind::Rsa { .. } => Err(X509Error::invalid("signature encoding", "not an ECDSA key")),
    }
}

/// The SHA-1 key identifier of a public key (RFC 5280 §4.2.1.2 method 1: SHA-1 over the subjectPublicKey bits).
pub fn key_identifier(spki: &SubjectPublicKeyInfoOwned) -> Vec<u8> {
    use sha1::Digest as _;
    sha1::Sha1::digest(spki.subject_public_key.raw_bytes()).to_vec()
}
