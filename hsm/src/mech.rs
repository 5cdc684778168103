//! Key types, signature schemes, and the conversions between PKCS#11 and X.509/CMS encodings.
//!
//! Hashing is always done in software and the HSM signs the digest (`CKM_ECDSA`, `CKM_RSA_PKCS`
//! over a DigestInfo, `CKM_RSA_PKCS_PSS`). SoftHSM 2.6 has no `CKM_ECDSA_SHA256`, every HSM has
//! the raw mechanisms, and the same path signs external digests.

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use der::asn1::{AnyRef, ObjectIdentifier};
use der::{Decode, Encode};
use sha2::Digest;
use spki::AlgorithmIdentifierOwned;

use crate::error::HsmError;

/// The kind of key pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// ECDSA on NIST P-256.
    EcP256,
    /// ECDSA on NIST P-384.
    EcP384,
    /// RSA with the given modulus size in bits.
    Rsa(u32),
}

impl KeyKind {
    /// The scheme used when the caller does not choose one.
    pub fn default_scheme(self) -> SignatureScheme {
        match self {
            KeyKind::EcP256 => SignatureScheme::EcdsaSha256,
            KeyKind::EcP384 => SignatureScheme::EcdsaSha384,
            KeyKind::Rsa(_) => SignatureScheme::RsaPkcs1Sha256,
        }
    }

    /// DER of the named-curve parameters (`CKA_EC_PARAMS`), for EC kinds.
    pub(crate) fn ec_params(self) -> Option<Vec<u8>> {
        let oid = match self {
            KeyKind::EcP256 => ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7"),
            KeyKind::EcP384 => ObjectIdentifier::new_unwrap("1.3.132.0.34"),
            KeyKind::Rsa(_) => return None,
        };
        oid.to_der().ok()
    }
}

/// Hash functions for signing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HashAlg {
    /// Hashes `msg`.
    pub fn digest(self, msg: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha256 => sha2::Sha256::digest(msg).to_vec(),
            HashAlg::Sha384 => sha2::Sha384::digest(msg).to_vec(),
            HashAlg::Sha512 => sha2::Sha512::digest(msg).to_vec(),
        }
    }

    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    fn oid(self) -> ObjectIdentifier {
        match self {
            HashAlg::Sha256 => ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1"),
            HashAlg::Sha384 => ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2"),
            HashAlg::Sha512 => ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3"),
        }
    }

    fn mechanism(self) -> MechanismType {
        match self {
            HashAlg::Sha256 => MechanismType::SHA256,
            HashAlg::Sha384 => MechanismType::SHA384,
            HashAlg::Sha512 => MechanismType::SHA512,
        }
    }

    fn mgf(self) -> PkcsMgfType {
        match self {
            HashAlg::Sha256 => PkcsMgfType::MGF1_SHA256,
            HashAlg::Sha384 => PkcsMgfType::MGF1_SHA384,
            HashAlg::Sha512 => PkcsMgfType::MGF1_SHA512,
        }
    }
}

/// A signature scheme: key algorithm, padding and hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureScheme {
    /// ecdsa-with-SHA256.
    EcdsaSha256,
    /// ecdsa-with-SHA384.
    EcdsaSha384,
    /// ecdsa-with-SHA512.
    EcdsaSha512,
    /// sha256WithRSAEncryption (PKCS#1 v1.5).
    RsaPkcs1Sha256,
    /// sha384WithRSAEncryption (PKCS#1 v1.5).
    RsaPkcs1Sha384,
    /// sha512WithRSAEncryption (PKCS#1 v1.5).
    RsaPkcs1Sha512,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, salt 32.
    RsaPssSha256,
    /// RSASSA-PSS with SHA-384, MGF1-SHA-384, salt 48.
    RsaPssSha384,
    /// RSASSA-PSS with SHA-512, MGF1-SHA-512, salt 64.
    RsaPssSha512,
}

impl SignatureScheme {
    /// The hash this scheme applies to the message.
    pub fn hash(self) -> HashAlg {
        use SignatureScheme::*;
        match self {
            EcdsaSha256 | RsaPkcs1Sha256 | RsaPssSha256 => HashAlg::Sha256,
            EcdsaSha384 | RsaPkcs1Sha384 | RsaPssSha384 => HashAlg::Sha384,
            EcdsaSha512 | RsaPkcs1Sha512 | RsaPssSha512 => HashAlg::Sha512,
        }
    }

    /// True for the ECDSA schemes.
    pub fn is_ecdsa(self) -> bool {
        matches!(
            self,
            Self::EcdsaSha256 | Self::EcdsaSha384 | Self::EcdsaSha512
        )
    }

    /// Whether this scheme can be used with a key of `kind`.
    pub fn fits(self, kind: KeyKind) -> bool {
        match kind {
            KeyKind::EcP256 | KeyKind::EcP384 => self.is_ecdsa(),
            KeyKind::Rsa(_) => !self.is_ecdsa(),
        }
    }

    /// The X.509/CMS signature AlgorithmIdentifier of this scheme.
    pub fn algorithm_identifier(self) -> Result<AlgorithmIdentifierOwned, HsmError> {
        use SignatureScheme::*;
        let plain = |oid: &str, null: bool| -> Result<AlgorithmIdentifierOwned, HsmError> {
            Ok(AlgorithmIdentifierOwned {
                oid: ObjectIdentifier::new_unwrap(oid),
                parameters: if null {
                    Some(AnyRef::NULL.into())
                } else {
                    None
                },
            })
        };
        match self {
            EcdsaSha256 => plain("1.2.840.10045.4.3.2", false),
            EcdsaSha384 => plain("1.2.840.10045.4.3.3", false),
            EcdsaSha512 => plain("1.2.840.10045.4.3.4", false),
            RsaPkcs1Sha256 => plain("1.2.840.113549.1.1.11", true),
            RsaPkcs1Sha384 => plain("1.2.840.113549.1.1.12", true),
            RsaPkcs1Sha512 => plain("1.2.840.113549.1.1.13", true),
            RsaPssSha256 => pss_algorithm_identifier::<sha2::Sha256>(),
            RsaPssSha384 => pss_algorithm_identifier::<sha2::Sha384>(),
            RsaPssSha512 => pss_algorithm_identifier::<sha2::Sha512>(),
        }
    }

    /// The PKCS#11 mechanism that signs the (already hashed) input of this scheme.
    pub(crate) fn mechanism(self) -> Mechanism<'static> {
        use SignatureScheme::*;
        match self {
            EcdsaSha256 | EcdsaSha384 | EcdsaSha512 => Mechanism::Ecdsa,
            RsaPkcs1Sha256 | RsaPkcs1Sha384 | RsaPkcs1Sha512 => Mechanism::RsaPkcs,
            RsaPssSha256 | RsaPssSha384 | RsaPssSha512 => {
                let h = self.hash();
                Mechanism::RsaPkcsPss(PkcsPssParams {
                    hash_alg: h.mechanism(),
                    mgf: h.mgf(),
                    s_len: (h.output_len() as u64).into(),
                })
            }
        }
    }

    /// What the HSM must sign for this scheme given the message digest.
    pub(crate) fn hsm_input(self, digest: &[u8]) -> Result<Vec<u8>, HsmError> {
        let h = self.hash();
        if digest.len() != h.output_len() {
            return Err(HsmError::Unsupported(format!(
                "digest is {} bytes, {h:?} needs {}",
                digest.len(),
                h.output_len()
            )));
        }
        use SignatureScheme::*;
        match self {
            RsaPkcs1Sha256 | RsaPkcs1Sha384 | RsaPkcs1Sha512 => digest_info(h, digest),
            _ => Ok(digest.to_vec()),
        }
    }

    /// Converts what the HSM returned into the encoding X.509/CMS carry:
    /// ECDSA raw `r||s` becomes a DER `ECDSA-Sig-Value`; RSA is used as is.
    pub(crate) fn encode_signature(self, kind: KeyKind, raw: Vec<u8>) -> Result<Vec<u8>, HsmError> {
        let bad = |e: ecdsa::Error| {
            HsmError::BadTokenData(format!("ECDSA signature of {} bytes: {e}", raw.len()))
        };
        match kind {
            KeyKind::EcP256 => Ok(p256::ecdsa::Signature::from_slice(&raw)
                .map_err(bad)?
                .to_der()
                .as_bytes()
                .to_vec()),
            KeyKind::EcP384 => Ok(p384::ecdsa::Signature::from_slice(&raw)
                .map_err(bad)?
                .to_der()
                .as_bytes()
                .to_vec()),
            KeyKind::Rsa(_) => Ok(raw),
        }
    }
}

fn pss_algorithm_identifier<D>() -> Result<AlgorithmIdentifierOwned, HsmError>
where
    D: Digest + der::oid::AssociatedOid,
{
    let id = rsa::pss::get_default_pss_signature_algo_id::<D>()
        .map_err(|e| HsmError::Unsupported(format!("RSASSA-PSS parameters: {e}")))?;
    // Re-encode through DER so the type is the crate-wide AlgorithmIdentifierOwned.
    let der = id
        .to_der()
        .map_err(|e| HsmError::Unsupported(format!("RSASSA-PSS parameters: {e}")))?;
    AlgorithmIdentifierOwned::from_der(&der)
        .map_err(|e| HsmError::Unsupported(format!("RSASSA-PSS parameters: {e}")))
}

/// DER DigestInfo { AlgorithmIdentifier(hash, NULL), OCTET STRING digest } for PKCS#1 v1.5.
fn digest_info(h: HashAlg, digest: &[u8]) -> Result<Vec<u8>, HsmError> {
    #[derive(der::Sequence)]
    struct DigestInfo<'a> {
        alg: spki::AlgorithmIdentifierRef<'a>,
        digest: der::asn1::OctetStringRef<'a>,
    }
    let info = DigestInfo {
        alg: spki::AlgorithmIdentifierRef {
            oid: h.oid(),
            parameters: Some(AnyRef::NULL),
        },
        digest: der::asn1::OctetStringRef::new(digest)
            .map_err(|e| HsmError::Unsupported(e.to_string()))?,
    };
    info.to_der()
        .map_err(|e| HsmError::Unsupported(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_info_matches_rfc8017_prefix() {
        // RFC 8017 §9.2 note 1: SHA-256 DigestInfo prefix.
        let prefix = hex::decode("3031300d060960864801650304020105000420").unwrap();
        let di = digest_info(HashAlg::Sha256, &[7u8; 32]).unwrap();
        assert_eq!(&di[..prefix.len()], &prefix[..]);
        assert_eq!(di.len(), prefix.len() + 32);
    }

    #[test]
    fn refuses_wrong_digest_length() {
        assert!(SignatureScheme::EcdsaSha256.hsm_input(&[0; 48]).is_err());
        assert!(SignatureScheme::RsaPssSha384.hsm_input(&[0; 48]).is_ok());
    }

    #[test]
    fn pss_identifier_has_parameters() {
        let id = SignatureScheme::RsaPssSha256
            .algorithm_identifier()
            .unwrap();
        assert_eq!(id.oid.to_string(), "1.2.840.113549.1.1.10");
        assert!(id.parameters.is_some());
    }
}
