//! CMS SignedData (RFC 5652) over an externally computed digest, with the signed attributes every
//! esigd signature carries (content-type, message-digest, signing-time, RFC 5035 ESS
//! signing-certificate-v2), and a small parser / verifier used by tests and by the signing pipeline.
//!
//! This module knows nothing of time-stamp tokens beyond the OID of the CAdES signature-time-stamp
//! attribute (the verifier returns such attributes as opaque DER): attaching a token, which needs the
//! TSP parser, is in the `cades` module, and the TSP code builds on this one (the dependency points
//! one way only).
//!
//! Signing goes through the RustCrypto signer traits so the key can live in the HSM. The
//! `ContentInfo(SignedData)` is written directly by [`SignerContext`] around parts encoded once per
//! signer (not through `cms::builder`: its `SignedDataBuilder::add_signer_info` replaces the signer's
//! error with a generic ASN.1 error, and the caller must be able to tell "HSM unavailable" apart; and
//! re-encoding the signer certificate for every signature was a large part of a time-stamp token's
//! cost). The tests check the output byte for byte against `cms::builder::SignerInfoBuilder`.
//!
//! A key esigd does not hold (a citizen's remote signing device, which signs a ready digest) signs
//! in two phases instead: [`SignerContext::for_certificate`], [`SignerContext::prepare`] (the
//! signed attributes and their digest), the device's signature, and [`SignerContext::finish`],
//! which verifies that signature with the certificate's key before it writes the same
//! `ContentInfo(SignedData)`.

use cms::builder::Error as CmsBuilderError;
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use const_oid::ObjectIdentifier;
use der::asn1::{Any, GeneralizedTime, OctetString, SetOfVec, UtcTime};
use der::{Decode, Encode, Sequence, Tag, Tagged};
use sha2::Digest;
use signature::{Keypair, Signer};
use spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, EncodePublicKey,
    SignatureBitStringEncoding,
};
use std::time::SystemTime;
use x509_cert::Certificate;
use x509_cert::attr::{Attribute, AttributeValue};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::serial_number::SerialNumber;

/// Object identifiers used by the CMS / CAdES / TSP code.
pub mod oids {
    use const_oid::ObjectIdentifier as Oid;

    /// id-data (RFC 5652).
    pub const ID_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.1");
    /// id-signedData (RFC 5652).
    pub const ID_SIGNED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.2");
    /// id-ct-TSTInfo (RFC 3161).
    pub const ID_CT_TST_INFO: Oid = Oid::new_unwrap("1.2.840.113549.1.9.16.1.4");
    /// id-contentType signed attribute.
    pub const ID_CONTENT_TYPE: Oid = Oid::new_unwrap("1.2.840.113549.1.9.3");
    /// id-messageDigest signed attribute.
    pub const ID_MESSAGE_DIGEST: Oid = Oid::new_unwrap("1.2.840.113549.1.9.4");
    /// id-signingTime signed attribute.
    pub const ID_SIGNING_TIME: Oid = Oid::new_unwrap("1.2.840.113549.1.9.5");
    /// id-aa-signingCertificateV2 (RFC 5035).
    pub const ID_AA_SIGNING_CERTIFICATE_V2: Oid = Oid::new_unwrap("1.2.840.113549.1.9.16.2.47");
    /// id-aa-signatureTimeStampToken (RFC 3161 appendix A, CAdES-T).
    pub const ID_AA_SIGNATURE_TIME_STAMP_TOKEN: Oid = Oid::new_unwrap("1.2.840.113549.1.9.16.2.14");

    /// id-sha256.
    pub const ID_SHA256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
    /// id-sha384.
    pub const ID_SHA384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
    /// id-sha512.
    pub const ID_SHA512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.3");
    /// id-sha3-256.
    pub const ID_SHA3_256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.8");
    /// id-sha3-384.
    pub const ID_SHA3_384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.9");
    /// id-sha3-512.
    pub const ID_SHA3_512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.10");

    /// ecdsa-with-SHA256.
    pub const ECDSA_WITH_SHA256: Oid = Oid::new_unwrap("1.2.840.10045.4.3.2");
    /// ecdsa-with-SHA384.
    pub const ECDSA_WITH_SHA384: Oid = Oid::new_unwrap("1.2.840.10045.4.3.3");
    /// ecdsa-with-SHA512.
    pub const ECDSA_WITH_SHA512: Oid = Oid::new_unwrap("1.2.840.10045.4.3.4");
    /// id-ecdsa-with-sha3-256.
    pub const ECDSA_WITH_SHA3_256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.3.10");
    /// id-ecdsa-with-sha3-384.
    pub const ECDSA_WITH_SHA3_384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.3.11");
    /// id-ecdsa-with-sha3-512.
    pub const ECDSA_WITH_SHA3_512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.3.12");
    /// sha256WithRSAEncryption.
    pub const SHA256_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.11");
    /// sha384WithRSAEncryption.
    pub const SHA384_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.12");
    /// sha512WithRSAEncryption.
    pub const SHA512_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.13");
    /// id-rsassa-pkcs1-v1_5-with-sha3-256.
    pub const SHA3_256_WITH_RSA: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.3.14");
    /// id-rsassa-pkcs1-v1_5-with-sha3-384.
    pub const SHA3_384_WITH_RSA: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.3.15");
    /// id-rsassa-pkcs1-v1_5-with-sha3-512.
    pub const SHA3_512_WITH_RSA: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.3.16");

    /// id-ecPublicKey.
    pub const ID_EC_PUBLIC_KEY: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
    /// rsaEncryption.
    pub const RSA_ENCRYPTION: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
    /// secp256r1 / P-256.
    pub const SECP256R1: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
    /// secp384r1 / P-384.
    pub const SECP384R1: Oid = Oid::new_unwrap("1.3.132.0.34");
}

/// Errors of the CMS module.
#[derive(Debug, thiserror::Error)]
pub enum CmsError {
    /// The signer (e.g. the HSM) failed; the source is kept so callers can tell "HSM unavailable" apart.
    #[error("signer failed")]
    Signer(#[source] signature::Error),
    /// The signer's public key or algorithm identifier could not be encoded.
    #[error("signer public key / algorithm identifier: {0}")]
    PublicKey(#[from] spki::Error),
    /// DER encoding or decoding failed.
    #[error("ASN.1 DER: {0}")]
    Asn1(#[from] der::Error),
    /// Any other error reported by the `cms` builder (its error type is not a std error).
    #[error("CMS builder: {0}")]
    Builder(String),
    /// The digest length does not match the digest algorithm.
    #[error("digest length {actual} does not match {algorithm:?} ({expected} bytes)")]
    DigestLength {
        /// Digest algorithm asked for.
        algorithm: DigestAlgorithm,
        /// Expected length.
        expected: usize,
        /// Given length.
        actual: usize,
    },
    /// The signer signs with a different hash than the requested digest algorithm, or with an
    /// algorithm this module does not know.
    #[error("signer's signature algorithm {signature_algorithm} does not use digest {requested:?}")]
    SignerDigestMismatch {
        /// Signature algorithm OID of the signer.
        signature_algorithm: ObjectIdentifier,
        /// Digest algorithm asked for.
        requested: DigestAlgorithm,
    },
    /// The certificate's key, or its combination with the digest algorithm, cannot sign here
    /// ([`SignerContext::for_certificate`]: ECDSA P-256/P-384 or RSA 2048–4096 with SHA-256/384/512).
    #[error("signer certificate key not supported: {0}")]
    UnsupportedKey(String),
    /// The CMS structure is not what this module produces / accepts.
    #[error("invalid CMS structure: {0}")]
    Invalid(&'static str),
    /// Verification failed.
    #[error("verification failed: {0}")]
    Verify(&'static str),
}

impl From<CmsBuilderError> for CmsError {
    fn from(e: CmsBuilderError) -> Self {
        match e {
            CmsBuilderError::Asn1(e) => CmsError::Asn1(e),
            CmsBuilderError::PublicKey(e) => CmsError::PublicKey(e),
            CmsBuilderError::Signature(e) => CmsError::Signer(e),
            other => CmsError::Builder(other.to_string()),
        }
    }
}

impl From<x509_cert::builder::Error> for CmsError {
    fn from(e: x509_cert::builder::Error) -> Self {
        match e {
            x509_cert::builder::Error::Asn1(e) => CmsError::Asn1(e),
            x509_cert::builder::Error::PublicKey(e) => CmsError::PublicKey(e),
            x509_cert::builder::Error::Signature(e) => CmsError::Signer(e),
            other => CmsError::Builder(other.to_string()),
        }
    }
}

/// Digest algorithms accepted for message digests and time-stamp imprints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
    /// SHA3-256.
    Sha3_256,
    /// SHA3-384.
    Sha3_384,
    /// SHA3-512.
    Sha3_512,
}

impl DigestAlgorithm {
    /// All supported algorithms.
    pub const ALL: [DigestAlgorithm; 6] = [
        Self::Sha256,
        Self::Sha384,
        Self::Sha512,
        Self::Sha3_256,
        Self::Sha3_384,
        Self::Sha3_512,
    ];

    /// The algorithm's OID.
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Sha256 => oids::ID_SHA256,
            Self::Sha384 => oids::ID_SHA384,
            Self::Sha512 => oids::ID_SHA512,
            Self::Sha3_256 => oids::ID_SHA3_256,
            Self::Sha3_384 => oids::ID_SHA3_384,
            Self::Sha3_512 => oids::ID_SHA3_512,
        }
    }

    /// Looks an algorithm up by OID.
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.oid() == *oid)
    }

    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha256 | Self::Sha3_256 => 32,
            Self::Sha384 | Self::Sha3_384 => 48,
            Self::Sha512 | Self::Sha3_512 => 64,
        }
    }

    /// Hashes `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Self::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Self::Sha512 => sha2::Sha512::digest(data).to_vec(),
            Self::Sha3_256 => sha3::Sha3_256::digest(data).to_vec(),
            Self::Sha3_384 => sha3::Sha3_384::digest(data).to_vec(),
            Self::Sha3_512 => sha3::Sha3_512::digest(data).to_vec(),
        }
    }

    /// AlgorithmIdentifier with absent parameters (RFC 5754 / RFC 8702).
    pub fn algorithm_identifier(self) -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned {
            oid: self.oid(),
            parameters: None,
        }
    }

    /// Checks that `digest` has this algorithm's length.
    pub fn check_len(self, digest: &[u8]) -> Result<(), CmsError> {
        if digest.len() == self.output_len() {
            Ok(())
        } else {
            Err(CmsError::DigestLength {
                algorithm: self,
                expected: self.output_len(),
                actual: digest.len(),
            })
        }
    }

    /// The digest a signature algorithm uses (None for unknown algorithms, e.g. RSASSA-PSS).
    pub fn of_signature_algorithm(sig_alg: &ObjectIdentifier) -> Option<Self> {
        use oids::*;
        Some(match *sig_alg {
            ECDSA_WITH_SHA256 | SHA256_WITH_RSA => Self::Sha256,
            ECDSA_WITH_SHA384 | SHA384_WITH_RSA => Self::Sha384,
            ECDSA_WITH_SHA512 | SHA512_WITH_RSA => Self::Sha512,
            ECDSA_WITH_SHA3_256 | SHA3_256_WITH_RSA => Self::Sha3_256,
            ECDSA_WITH_SHA3_384 | SHA3_384_WITH_RSA => Self::Sha3_384,
            ECDSA_WITH_SHA3_512 | SHA3_512_WITH_RSA => Self::Sha3_512,
            _ => return None,
        })
    }
}

/// RFC 5035 `ESSCertIDv2`.
///
/// ```text
/// ESSCertIDv2 ::= SEQUENCE {
///     hashAlgorithm  AlgorithmIdentifier DEFAULT {algorithm id-sha256},
///     certHash       Hash,
///     issuerSerial   IssuerSerial OPTIONAL }
/// ```
/// DER forbids encoding the default, so SHA-256 is represented by `hash_algorithm: None`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct EssCertIdV2 {
    /// Hash algorithm; `None` means the default SHA-256.
    #[asn1(optional = "true")]
    pub hash_algorithm: Option<AlgorithmIdentifierOwned>,
    /// Hash of the whole DER certificate.
    pub cert_hash: OctetString,
    /// Issuer and serial number of the certificate.
    #[asn1(optional = "true")]
    pub issuer_serial: Option<IssuerSerial>,
}

/// RFC 5035 `IssuerSerial ::= SEQUENCE { issuer GeneralNames, serialNumber CertificateSerialNumber }`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct IssuerSerial {
    /// Issuer as GeneralNames (one directoryName).
    pub issuer: Vec<GeneralName>,
    /// Certificate serial number.
    pub serial_number: SerialNumber,
}

/// RFC 5035 `SigningCertificateV2 ::= SEQUENCE { certs SEQUENCE OF ESSCertIDv2, policies ... OPTIONAL }`
/// (policies are never produced and ignored when parsing).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SigningCertificateV2 {
    /// Certificate identifiers; the first identifies the signer.
    pub certs: Vec<EssCertIdV2>,
    /// Policies (kept opaque).
    #[asn1(optional = "true")]
    pub policies: Option<Any>,
}

impl SigningCertificateV2 {
    /// ESSCertIDv2 (SHA-256 certHash + issuerSerial) for `cert`.
    pub fn for_certificate(cert: &Certificate) -> Result<Self, CmsError> {
        let cert_der = cert.to_der()?;
        Ok(Self {
            certs: vec![EssCertIdV2 {
                hash_algorithm: None,
                cert_hash: OctetString::new(sha2::Sha256::digest(&cert_der).to_vec())?,
                issuer_serial: Some(IssuerSerial {
                    issuer: vec![GeneralName::DirectoryName(
                        cert.tbs_certificate.issuer.clone(),
                    )],
                    serial_number: cert.tbs_certificate.serial_number.clone(),
                }),
            }],
            policies: None,
        })
    }

    /// Whether the first ESSCertIDv2 identifies `cert` (hash, and issuerSerial when present).
    pub fn matches(&self, cert: &Certificate) -> Result<bool, CmsError> {
        let Some(first) = self.certs.first() else {
            return Ok(false);
        };
        let alg = match &first.hash_algorithm {
            None => DigestAlgorithm::Sha256,
            Some(a) => DigestAlgorithm::from_oid(&a.oid)
                .ok_or(CmsError::Invalid("unsupported ESSCertIDv2 hash algorithm"))?,
        };
        if alg.digest(&cert.to_der()?) != first.cert_hash.as_bytes() {
            return Ok(false);
        }
        if let Some(is) = &first.issuer_serial {
            let issuer_ok = is.issuer.iter().any(|gn| {
                matches!(gn, GeneralName::DirectoryName(n) if *n == cert.tbs_certificate.issuer)
            });
            if !issuer_ok || is.serial_number != cert.tbs_certificate.serial_number {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The signed attribute carrying this value.
    pub fn to_attribute(&self) -> Result<Attribute, CmsError> {
        single_value_attribute(oids::ID_AA_SIGNING_CERTIFICATE_V2, &self.to_der()?)
    }
}

/// An attribute with one value (`value_der`, any DER TLV).
pub(crate) fn single_value_attribute(
    oid: ObjectIdentifier,
    value_der: &[u8],
) -> Result<Attribute, CmsError> {
    let mut values = SetOfVec::new();
    values.insert(AttributeValue::from_der(value_der)?)?;
    Ok(Attribute { oid, values })
}

/// signing-time attribute: UTCTime for 1950..=2049, GeneralizedTime otherwise (RFC 5652 §11.3).
pub fn signing_time_attribute(time: SystemTime) -> Result<Attribute, CmsError> {
    let dt = der::DateTime::from_system_time(time)?;
    let value = if (1950..=2049).contains(&dt.year()) {
        UtcTime::from_date_time(dt)?.to_der()?
    } else {
        GeneralizedTime::from_date_time(dt).to_der()?
    };
    single_value_attribute(oids::ID_SIGNING_TIME, &value)
}

/// The eContentType a signature is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// id-data: a document (detached signature).
    Data,
    /// id-ct-TSTInfo: an RFC 3161 time-stamp token.
    TstInfo,
}

impl ContentType {
    /// The OID.
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Data => oids::ID_DATA,
            Self::TstInfo => oids::ID_CT_TST_INFO,
        }
    }
}

/// What to sign and how.
#[derive(Debug, Clone)]
pub struct SignParams<'a> {
    /// eContentType (and content-type signed attribute).
    pub content_type: ContentType,
    /// Algorithm of `digest`; must be the hash the signer's signature algorithm uses.
    pub digest_algorithm: DigestAlgorithm,
    /// Message digest of the (external) content.
    pub digest: &'a [u8],
    /// signing-time attribute value; omitted when `None`.
    pub signing_time: Option<SystemTime>,
    /// Certificates placed in `certificates` after the signer certificate (chain, ...).
    pub extra_certs: &'a [Certificate],
    /// Whether the signer certificate is placed in `certificates`.
    pub include_signer_cert: bool,
}

/// The digest algorithm the signer's signature algorithm uses.
pub fn signer_digest_algorithm<S>(signer: &S) -> Result<DigestAlgorithm, CmsError>
where
    S: DynSignatureAlgorithmIdentifier,
{
    let alg = signer.signature_algorithm_identifier()?;
    DigestAlgorithm::of_signature_algorithm(&alg.oid).ok_or(CmsError::SignerDigestMismatch {
        signature_algorithm: alg.oid,
        requested: DigestAlgorithm::Sha256,
    })
}

/// Builds a detached CMS `ContentInfo(SignedData)` over an externally computed digest and returns its DER.
///
/// Signed attributes: content-type, message-digest, signing-time (if given), signing-certificate-v2.
/// The digest algorithm must match the signer's (OpenSSL and most verifiers hash the signed attributes
/// with `SignerInfo.digestAlgorithm`).
pub fn sign_detached_digest<S, Sig>(
    signer: &S,
    signer_cert: &Certificate,
    params: &SignParams<'_>,
) -> Result<Vec<u8>, CmsError>
where
    S: Keypair + DynSignatureAlgorithmIdentifier + Signer<Sig>,
    S::VerifyingKey: EncodePublicKey,
    Sig: SignatureBitStringEncoding,
{
    sign_inner::<S, Sig>(signer, signer_cert, params, None)
}

/// Builds a CMS `ContentInfo(SignedData)` with the content encapsulated (e.g. a TSTInfo) and returns its DER.
pub fn sign_encapsulated<S, Sig>(
    signer: &S,
    signer_cert: &Certificate,
    content_type: ContentType,
    content: &[u8],
    signing_time: Option<SystemTime>,
    include_signer_cert: bool,
    extra_certs: &[Certificate],
) -> Result<Vec<u8>, CmsError>
where
    S: Keypair + DynSignatureAlgorithmIdentifier + Signer<Sig>,
    S::VerifyingKey: EncodePublicKey,
    Sig: SignatureBitStringEncoding,
{
    let digest_algorithm = signer_digest_algorithm(signer)?;
    let digest = digest_algorithm.digest(content);
    let params = SignParams {
        content_type,
        digest_algorithm,
        digest: &digest,
        signing_time,
        extra_certs,
        include_signer_cert,
    };
    sign_inner::<S, Sig>(signer, signer_cert, &params, Some(content))
}

fn sign_inner<S, Sig>(
    signer: &S,
    signer_cert: &Certificate,
    params: &SignParams<'_>,
    content: Option<&[u8]>,
) -> Result<Vec<u8>, CmsError>
where
    S: Keypair + DynSignatureAlgorithmIdentifier + Signer<Sig>,
    S::VerifyingKey: EncodePublicKey,
    Sig: SignatureBitStringEncoding,
{
    params.digest_algorithm.check_len(params.digest)?;
    let sig_alg = signer.signature_algorithm_identifier()?;
    if DigestAlgorithm::of_signature_algorithm(&sig_alg.oid) != Some(params.digest_algorithm) {
        return Err(CmsError::SignerDigestMismatch {
            signature_algorithm: sig_alg.oid,
            requested: params.digest_algorithm,
        });
    }
    SignerContext::new(signer, signer_cert)?.sign::<S, Sig>(signer, params, content)
}

/// The parts of a CMS signature that depend only on the signer and its certificate, encoded once:
/// the certificate, its `IssuerAndSerialNumber`, the ESS signing-certificate-v2 attribute (which
/// hashes the whole certificate) and the algorithm identifiers.
///
/// A time-stamping unit signs every token with the same key and certificate; building those parts
/// again for each token (through the `cms` builders: clone, encode, re-parse, encode again) was
/// about a fifth of a token's CPU. [`SignerContext::sign`] writes the `ContentInfo(SignedData)`
/// directly around them. The output is byte for byte what [`sign_detached_digest`] and
/// [`sign_encapsulated`] produced through the `cms` crate's `SignerInfoBuilder` (checked by a test
/// against that builder); those two functions now go through a one-off context.
///
/// # Two-phase signing
///
/// A key esigd does not hold (a citizen's remote signing device that signs a raw digest) signs in
/// two steps: [`SignerContext::for_certificate`] makes a context from the certificate alone,
/// [`SignerContext::prepare`] builds the signed attributes ([`Prepared::digest`] is what the
/// device signs), and [`SignerContext::finish`] verifies the device's signature against the
/// certificate's key and writes the same `ContentInfo(SignedData)` [`SignerContext::sign`] writes.
#[derive(Clone, Debug)]
pub struct SignerContext {
    digest_algorithm: DigestAlgorithm,
    digest_algorithm_der: Vec<u8>,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature_algorithm_der: Vec<u8>,
    /// The certificate's key: [`SignerContext::finish`] verifies every signature with it, and
    /// [`SignerContext::sign`] the signatures of RSA signers.
    spki: spki::SubjectPublicKeyInfoOwned,
    spki_der: Vec<u8>,
    /// Whether the key is RSA (see [`SignerContext::sign`] for why RSA signatures are always
    /// verified).
    rsa: bool,
    sid_der: Vec<u8>,
    ess_attribute_der: Vec<u8>,
    cert_der: Vec<u8>,
}

/// The signed attributes of a signature being made in two phases ([`SignerContext::prepare`]),
/// with everything [`SignerContext::finish`] needs to write the `ContentInfo(SignedData)` once the
/// signature value is known: content type, certificates to include, encapsulated content.
///
/// It belongs to the context that made it: [`SignerContext::finish`] refuses one made by a context
/// for another certificate or digest algorithm.
#[derive(Clone, Debug)]
pub struct Prepared {
    digest_algorithm: DigestAlgorithm,
    signature_algorithm: ObjectIdentifier,
    /// The context's signing-certificate-v2 attribute (it hashes the certificate): identifies the
    /// context the signed attributes were made for.
    ess_attribute_der: Vec<u8>,
    content_type: ContentType,
    signed_attrs: Vec<u8>,
    include_signer_cert: bool,
    extra_certs_der: Vec<Vec<u8>>,
    content: Option<Vec<u8>>,
}

impl Prepared {
    /// The DER `SET OF Attribute` that is signed (in the `SignerInfo` it appears with the tag
    /// `[0] IMPLICIT`; the signature covers this `SET OF` encoding, RFC 5652 §5.4).
    pub fn signed_attributes(&self) -> &[u8] {
        &self.signed_attrs
    }

    /// The digest algorithm of the signature ([`SignerContext::digest_algorithm`]).
    pub fn digest_algorithm(&self) -> DigestAlgorithm {
        self.digest_algorithm
    }

    /// [`Prepared::digest_algorithm`] over [`Prepared::signed_attributes`]: what a device that
    /// signs a ready digest (`RAW_DIGEST_SIGNATURE`) signs.
    pub fn digest(&self) -> Vec<u8> {
        self.digest_algorithm.digest(&self.signed_attrs)
    }
}

impl SignerContext {
    /// Checks that `signer_cert` carries the signer's public key and that the signer's algorithm
    /// has a known digest, and encodes the per-signer parts.
    pub fn new<S>(signer: &S, signer_cert: &Certificate) -> Result<Self, CmsError>
    where
        S: Keypair + DynSignatureAlgorithmIdentifier,
        S::VerifyingKey: EncodePublicKey,
    {
        let sig_alg = signer.signature_algorithm_identifier()?;
        let digest_algorithm = DigestAlgorithm::of_signature_algorithm(&sig_alg.oid).ok_or(
            CmsError::SignerDigestMismatch {
                signature_algorithm: sig_alg.oid,
                requested: DigestAlgorithm::Sha256,
            },
        )?;
        // The signer must own the certificate's key, or the result would never verify.
        let spki_der = signer
            .verifying_key()
            .to_public_key_der()?
            .as_bytes()
            .to_vec();
        if spki_der
            != signer_cert
                .tbs_certificate
                .subject_public_key_info
                .to_der()?
        {
            return Err(CmsError::Invalid(
                "signer certificate public key does not match the signer",
            ));
        }
        Self::with_algorithms(signer_cert, digest_algorithm, sig_alg)
    }

    /// A context for the key in `cert`, held elsewhere (no signer needed): for
    /// [`SignerContext::prepare`] and [`SignerContext::finish`].
    ///
    /// The signature algorithm follows from the certificate's key and `digest_algorithm`: an ECDSA
    /// P-256 or P-384 key signs with ecdsa-with-SHA256/384/512, an RSA key (2048 to 4096 bits) with
    /// sha256/384/512WithRSAEncryption (PKCS#1 v1.5). Other keys (other curves, RSASSA-PSS keys,
    /// EdDSA, DSA, ...) and the SHA-3 digests are refused with [`CmsError::UnsupportedKey`].
    pub fn for_certificate(
        cert: &Certificate,
        digest_algorithm: DigestAlgorithm,
    ) -> Result<Self, CmsError> {
        use crate::keys::{KeyKind, classify_key};
        let kind = classify_key(&cert.tbs_certificate.subject_public_key_info)
            .map_err(|e| CmsError::UnsupportedKey(e.to_string()))?;
        let ec = matches!(kind, KeyKind::EcdsaP256 | KeyKind::EcdsaP384);
        let oid = match (ec, digest_algorithm) {
            (true, DigestAlgorithm::Sha256) => oids::ECDSA_WITH_SHA256,
            (true, DigestAlgorithm::Sha384) => oids::ECDSA_WITH_SHA384,
            (true, DigestAlgorithm::Sha512) => oids::ECDSA_WITH_SHA512,
            (false, DigestAlgorithm::Sha256) => oids::SHA256_WITH_RSA,
            (false, DigestAlgorithm::Sha384) => oids::SHA384_WITH_RSA,
            (false, DigestAlgorithm::Sha512) => oids::SHA512_WITH_RSA,
            (_, d) => {
                return Err(CmsError::UnsupportedKey(format!(
                    "{kind} with {d:?}: only SHA-256, SHA-384 and SHA-512 are supported"
                )));
            }
        };
        // As the RustCrypto signers write them: ECDSA without parameters (RFC 5758 §3.2), RSA
        // PKCS#1 v1.5 with NULL parameters (RFC 4055 §5).
        let signature_algorithm = AlgorithmIdentifierOwned {
            oid,
            parameters: (!ec).then(Any::null),
        };
        Self::with_algorithms(cert, digest_algorithm, signature_algorithm)
    }

    fn with_algorithms(
        signer_cert: &Certificate,
        digest_algorithm: DigestAlgorithm,
        signature_algorithm: AlgorithmIdentifierOwned,
    ) -> Result<Self, CmsError> {
        let sid = IssuerAndSerialNumber {
            issuer: signer_cert.tbs_certificate.issuer.clone(),
            serial_number: signer_cert.tbs_certificate.serial_number.clone(),
        };
        let spki = signer_cert.tbs_certificate.subject_public_key_info.clone();
        Ok(Self {
            digest_algorithm,
            digest_algorithm_der: digest_algorithm.algorithm_identifier().to_der()?,
            signature_algorithm_der: signature_algorithm.to_der()?,
            signature_algorithm,
            spki_der: spki.to_der()?,
            rsa: spki.algorithm.oid == oids::RSA_ENCRYPTION,
            spki,
            sid_der: sid.to_der()?,
            ess_attribute_der: SigningCertificateV2::for_certificate(signer_cert)?
                .to_attribute()?
                .to_der()?,
            cert_der: signer_cert.to_der()?,
        })
    }

    /// The digest algorithm of the signer's signature algorithm (the only one [`SignerContext::sign`]
    /// accepts).
    pub fn digest_algorithm(&self) -> DigestAlgorithm {
        self.digest_algorithm
    }

    /// Encapsulates `content` (e.g. a DER TSTInfo) and signs it: the DER `ContentInfo(SignedData)`.
    /// `signer` must be the signer the context was made for (checked).
    pub fn sign_encapsulated<S, Sig>(
        &self,
        signer: &S,
        content_type: ContentType,
        content: &[u8],
        signing_time: Option<SystemTime>,
        include_signer_cert: bool,
    ) -> Result<Vec<u8>, CmsError>
    where
        S: Keypair + DynSignatureAlgorithmIdentifier + Signer<Sig>,
        S::VerifyingKey: EncodePublicKey,
        Sig: SignatureBitStringEncoding,
    {
        let digest = self.digest_algorithm.digest(content);
        let params = SignParams {
            content_type,
            digest_algorithm: self.digest_algorithm,
            digest: &digest,
            signing_time,
            extra_certs: &[],
            include_signer_cert,
        };
        self.sign::<S, Sig>(signer, &params, Some(content))
    }

    /// Signs `params.digest` (of `content` when it is encapsulated, of external content when
    /// `content` is `None`): the DER `ContentInfo(SignedData)` with signed attributes content-type,
    /// message-digest, signing-time (if given) and signing-certificate-v2. `signer` must be the
    /// signer the context was made for (checked: algorithm and public key).
    ///
    /// The same as [`SignerContext::prepare`], the signer's signature over
    /// [`Prepared::signed_attributes`] and [`SignerContext::finish`], with one difference:
    /// `finish` verifies every signature (it comes from a device esigd does not control), `sign`
    /// only RSA signatures. A single faulty RSA-CRT signature discloses the private key, so none
    /// leaves unverified; an ECDSA signature from a signer esigd runs (its HSM) is not verified
    /// here, as a verification costs about as much as the signature and no single fault in a
    /// randomised ECDSA signature is known to disclose the key (the reasoning is with
    /// `esigd_ca::SignatureCheck`).
    pub fn sign<S, Sig>(
        &self,
        signer: &S,
        params: &SignParams<'_>,
        content: Option<&[u8]>,
    ) -> Result<Vec<u8>, CmsError>
    where
        S: Keypair + DynSignatureAlgorithmIdentifier + Signer<Sig>,
        S::VerifyingKey: EncodePublicKey,
        Sig: SignatureBitStringEncoding,
    {
        self.check_params(params)?;
        if signer.signature_algorithm_identifier()?.oid != self.signature_algorithm.oid
            || signer.verifying_key().to_public_key_der()?.as_bytes() != self.spki_der
        {
            return Err(CmsError::Invalid(
                "signer differs from the one the signer context was made for",
            ));
        }
        let extra = encode_certificates(params.extra_certs)?;
        let certs = self.certificate_set(params.include_signer_cert, &extra)?;
        let signed_attrs = self.signed_attributes(params)?;
        let signature = signer
            .try_sign(&signed_attrs)
            .map_err(CmsError::Signer)?
            .to_bitstring()?;
        if self.rsa {
            self.verify(&signed_attrs, &signature).map_err(|_| {
                CmsError::Verify("the signer returned an RSA signature that does not verify")
            })?;
        }
        Ok(self.write(
            params.content_type,
            &signed_attrs,
            &certs,
            content,
            signature.raw_bytes(),
        ))
    }

    /// First phase of a two-phase signature: the same checks as [`SignerContext::sign`] (digest
    /// length, digest algorithm = the context's, no certificate twice), and, when `content` is
    /// encapsulated, that `params.digest` is its digest; then the signed attributes. Sign
    /// [`Prepared::signed_attributes`] (or, with a device that signs a ready digest,
    /// [`Prepared::digest`]) with the certificate's key and pass the signature to
    /// [`SignerContext::finish`].
    ///
    /// The output is deterministic: the same context and parameters (with a fixed signing time)
    /// give the same signed attributes.
    pub fn prepare(
        &self,
        params: &SignParams<'_>,
        content: Option<&[u8]>,
    ) -> Result<Prepared, CmsError> {
        self.check_params(params)?;
        if let Some(c) = content
            && self.digest_algorithm.digest(c) != params.digest
        {
            return Err(CmsError::Invalid(
                "the message digest is not the digest of the encapsulated content",
            ));
        }
        let extra_certs_der = encode_certificates(params.extra_certs)?;
        self.certificate_set(params.include_signer_cert, &extra_certs_der)?;
        Ok(Prepared {
            digest_algorithm: self.digest_algorithm,
            signature_algorithm: self.signature_algorithm.oid,
            ess_attribute_der: self.ess_attribute_der.clone(),
            content_type: params.content_type,
            signed_attrs: self.signed_attributes(params)?,
            include_signer_cert: params.include_signer_cert,
            extra_certs_der,
            content: content.map(<[u8]>::to_vec),
        })
    }

    /// Second phase of a two-phase signature: `signature` is the signature value as it goes into
    /// `SignerInfo.signature` (a DER `ECDSA-Sig-Value` for ECDSA, the RSA signature block for RSA)
    /// over [`Prepared::signed_attributes`]. It is verified with the certificate's public key first
    /// (the device that made it is not trusted): a signature that does not verify, by another
    /// key, over other data or not a signature at all, is refused with [`CmsError::Verify`].
    /// Then the DER `ContentInfo(SignedData)`, exactly as [`SignerContext::sign`] writes it.
    ///
    /// `prepared` must come from [`SignerContext::prepare`] of a context for the same certificate
    /// and digest algorithm ([`CmsError::Invalid`] otherwise). The verification knows the
    /// algorithms of [`SignerContext::for_certificate`]; a context [`SignerContext::new`] made for
    /// a signer with a SHA-3 algorithm cannot finish (it signs with [`SignerContext::sign`]).
    pub fn finish(&self, prepared: &Prepared, signature: &[u8]) -> Result<Vec<u8>, CmsError> {
        if prepared.digest_algorithm != self.digest_algorithm
            || prepared.signature_algorithm != self.signature_algorithm.oid
            || prepared.ess_attribute_der != self.ess_attribute_der
        {
            return Err(CmsError::Invalid(
                "the signed attributes were prepared by a signer context for another certificate or algorithm",
            ));
        }
        let bits = der::asn1::BitString::from_bytes(signature)
            .map_err(|_| CmsError::Verify("the signature is not a bit string"))?;
        self.verify(&prepared.signed_attrs, &bits).map_err(|_| {
            CmsError::Verify(
                "the signature does not verify with the certificate's key over the signed attributes",
            )
        })?;
        let certs =
            self.certificate_set(prepared.include_signer_cert, &prepared.extra_certs_der)?;
        Ok(self.write(
            prepared.content_type,
            &prepared.signed_attrs,
            &certs,
            prepared.content.as_deref(),
            signature,
        ))
    }

    /// The checks of [`SignerContext::sign`] and [`SignerContext::prepare`] on `params`.
    fn check_params(&self, params: &SignParams<'_>) -> Result<(), CmsError> {
        params.digest_algorithm.check_len(params.digest)?;
        if params.digest_algorithm != self.digest_algorithm {
            return Err(CmsError::SignerDigestMismatch {
                signature_algorithm: self.signature_algorithm.oid,
                requested: params.digest_algorithm,
            });
        }
        Ok(())
    }

    /// Verifies `signature` over `signed_attrs` with the certificate's key.
    fn verify(
        &self,
        signed_attrs: &[u8],
        signature: &der::asn1::BitString,
    ) -> Result<(), crate::X509Error> {
        crate::keys::verify_signature(
            "CMS signature",
            &self.spki,
            &self.signature_algorithm,
            signed_attrs,
            signature,
        )
        .map(|_| ())
    }

    /// The signed attributes, a DER SET OF Attribute (sorted encodings): content-type,
    /// message-digest, signing-time (if given), signing-certificate-v2.
    fn signed_attributes(&self, params: &SignParams<'_>) -> Result<Vec<u8>, CmsError> {
        use crate::der_write::{put_header, put_tlv, sort_set_of, tlv_len};
        let attr = |oid: ObjectIdentifier, value_tag: u8, value: &[u8]| -> Vec<u8> {
            let set_len = tlv_len(value.len());
            let seq_len = tlv_len(oid.as_bytes().len()) + tlv_len(set_len);
            let mut out = Vec::with_capacity(tlv_len(seq_len));
            put_header(&mut out, 0x30, seq_len);
            put_tlv(&mut out, 0x06, oid.as_bytes());
            put_header(&mut out, 0x31, set_len);
            put_tlv(&mut out, value_tag, value);
            out
        };
        let content_type_attr = attr(
            oids::ID_CONTENT_TYPE,
            0x06,
            params.content_type.oid().as_bytes(),
        );
        let digest_attr = attr(oids::ID_MESSAGE_DIGEST, 0x04, params.digest);
        let time_attr = match params.signing_time {
            Some(t) => Some(signing_time_attribute(t)?.to_der()?),
            None => None,
        };
        let mut attrs: Vec<&[u8]> = vec![&content_type_attr, &digest_attr, &self.ess_attribute_der];
        if let Some(t) = &time_attr {
            attrs.push(t);
        }
        sort_set_of(&mut attrs)?;
        let attrs_len: usize = attrs.iter().map(|a| a.len()).sum();
        let mut signed_attrs = Vec::with_capacity(tlv_len(attrs_len));
        put_header(&mut signed_attrs, 0x31, attrs_len);
        for a in &attrs {
            signed_attrs.extend_from_slice(a);
        }
        Ok(signed_attrs)
    }

    /// The certificates of the `certificates` field: a DER SET OF (sorted encodings, no
    /// duplicates).
    fn certificate_set<'a>(
        &'a self,
        include_signer_cert: bool,
        extra_certs_der: &'a [Vec<u8>],
    ) -> Result<Vec<&'a [u8]>, CmsError> {
        let mut certs: Vec<&[u8]> = Vec::with_capacity(extra_certs_der.len() + 1);
        if include_signer_cert {
            certs.push(&self.cert_der);
        }
        certs.extend(extra_certs_der.iter().map(Vec::as_slice));
        crate::der_write::sort_set_of(&mut certs)?;
        Ok(certs)
    }

    /// Writes the `ContentInfo(SignedData)` around the signed attributes (the DER SET OF), the
    /// certificates (from [`SignerContext::certificate_set`]) and the signature value.
    fn write(
        &self,
        content_type: ContentType,
        signed_attrs: &[u8],
        certs: &[&[u8]],
        content: Option<&[u8]>,
        signature: &[u8],
    ) -> Vec<u8> {
        use crate::der_write::{header_len, put_header, put_tlv, tlv_len};
        let content_type_oid = content_type.oid();
        let certs_len: usize = certs.iter().map(|c| c.len()).sum();

        // Lengths, innermost first.
        const VERSION_LEN: usize = 3; // INTEGER of one octet
        let signer_info_len = VERSION_LEN
            + self.sid_der.len()
            + self.digest_algorithm_der.len()
            + signed_attrs.len() // [0] IMPLICIT: same length as the SET
            + self.signature_algorithm_der.len()
            + tlv_len(signature.len());
        let econtent_len = content.map_or(0, |c| tlv_len(tlv_len(c.len())));
        let eci_len = tlv_len(content_type_oid.as_bytes().len()) + econtent_len;
        let signed_data_len = VERSION_LEN
            + tlv_len(self.digest_algorithm_der.len())
            + tlv_len(eci_len)
            + if certs.is_empty() {
                0
            } else {
                tlv_len(certs_len)
            }
            + tlv_len(tlv_len(signer_info_len));
        let content_info_len =
            tlv_len(oids::ID_SIGNED_DATA.as_bytes().len()) + tlv_len(tlv_len(signed_data_len));

        let mut out = Vec::with_capacity(tlv_len(content_info_len));
        put_header(&mut out, 0x30, content_info_len); // ContentInfo
        put_tlv(&mut out, 0x06, oids::ID_SIGNED_DATA.as_bytes());
        put_header(&mut out, 0xa0, tlv_len(signed_data_len)); // [0] EXPLICIT
        put_header(&mut out, 0x30, signed_data_len); // SignedData
        // RFC 5652 §5.1: v3 when eContentType is not id-data, v1 otherwise (issuerAndSerialNumber
        // sid, plain certificates only).
        let version = if content_type == ContentType::Data {
            1
        } else {
            3
        };
        out.extend_from_slice(&[0x02, 0x01, version]);
        put_header(&mut out, 0x31, self.digest_algorithm_der.len());
        out.extend_from_slice(&self.digest_algorithm_der);
        put_header(&mut out, 0x30, eci_len); // EncapsulatedContentInfo
        put_tlv(&mut out, 0x06, content_type_oid.as_bytes());
        if let Some(c) = content {
            put_header(&mut out, 0xa0, tlv_len(c.len())); // [0] EXPLICIT OCTET STRING
            put_tlv(&mut out, 0x04, c);
        }
        if !certs.is_empty() {
            put_header(&mut out, 0xa0, certs_len); // [0] IMPLICIT CertificateSet
            for c in certs {
                out.extend_from_slice(c);
            }
        }
        put_header(&mut out, 0x31, tlv_len(signer_info_len)); // SignerInfos
        put_header(&mut out, 0x30, signer_info_len); // SignerInfo
        out.extend_from_slice(&[0x02, 0x01, 0x01]); // v1: issuerAndSerialNumber
        out.extend_from_slice(&self.sid_der);
        out.extend_from_slice(&self.digest_algorithm_der);
        out.push(0xa0); // signedAttrs [0] IMPLICIT SET OF
        out.extend_from_slice(&signed_attrs[1..]);
        out.extend_from_slice(&self.signature_algorithm_der);
        put_tlv(&mut out, 0x04, signature);
        debug_assert_eq!(out.len(), header_len(content_info_len) + content_info_len);
        out
    }
}

/// The DER encodings of `certs`.
fn encode_certificates(certs: &[Certificate]) -> Result<Vec<Vec<u8>>, CmsError> {
    Ok(certs.iter().map(|c| c.to_der()).collect::<Result<_, _>>()?)
}

/// Decodes `ContentInfo(SignedData)` DER.
pub fn decode_signed_data(content_info_der: &[u8]) -> Result<SignedData, CmsError> {
    let ci = ContentInfo::from_der(content_info_der)?;
    if ci.content_type != oids::ID_SIGNED_DATA {
        return Err(CmsError::Invalid("ContentInfo is not signedData"));
    }
    Ok(ci.content.decode_as::<SignedData>()?)
}

/// Encodes `sd` as `ContentInfo(SignedData)` DER.
pub(crate) fn encode_signed_data(sd: &SignedData) -> Result<Vec<u8>, CmsError> {
    Ok(ContentInfo {
        content_type: oids::ID_SIGNED_DATA,
        content: Any::from_der(&sd.to_der()?)?,
    }
    .to_der()?)
}

/// The only SignerInfo of `sd` (esigd signatures and tokens have exactly one).
pub(crate) fn single_signer_info(sd: &SignedData) -> Result<&SignerInfo, CmsError> {
    let mut it = sd.signer_infos.0.iter();
    match (it.next(), it.next()) {
        (Some(si), None) => Ok(si),
        _ => Err(CmsError::Invalid("expected exactly one SignerInfo")),
    }
}

/// The `SignerInfo.signature` octets of the (single) signer: the data a CAdES signature-time-stamp
/// covers (its imprint is the hash of these bytes; the token is attached by the `cades` module).
pub fn signature_value(content_info_der: &[u8]) -> Result<Vec<u8>, CmsError> {
    let sd = decode_signed_data(content_info_der)?;
    Ok(single_signer_info(&sd)?.signature.as_bytes().to_vec())
}

/// Result of [`verify_detached_digest`].
#[derive(Debug, Clone)]
pub struct VerifiedSignature {
    /// The signer certificate (found in `certificates` by issuer + serial).
    pub signer_cert: Certificate,
    /// Digest algorithm of the SignerInfo.
    pub digest_algorithm: DigestAlgorithm,
    /// eContentType.
    pub content_type: ObjectIdentifier,
    /// signing-time attribute, if present.
    pub signing_time: Option<SystemTime>,
    /// The signature value octets.
    pub signature: Vec<u8>,
    /// Values of id-aa-signatureTimeStampToken unsigned attributes (TimeStampToken DER).
    pub timestamp_tokens: Vec<Vec<u8>>,
}

/// A small verifier for tests and sanity checks (not a full path validator: no chain, no revocation).
///
/// Checks: one SignerInfo; signer cert present; content-type attribute = eContentType; message-digest =
/// `expected_digest` (for encapsulated content, the digest of eContent is also checked); ESS
/// signing-certificate-v2 present and matching; the signature over the DER signed attributes with the
/// certificate's key (ECDSA P-256/P-384, RSA PKCS#1 v1.5).
pub fn verify_detached_digest(
    content_info_der: &[u8],
    expected_digest: Option<&[u8]>,
) -> Result<VerifiedSignature, CmsError> {
    let sd = decode_signed_data(content_info_der)?;
    let si = single_signer_info(&sd)?;
    let digest_algorithm = DigestAlgorithm::from_oid(&si.digest_alg.oid)
        .ok_or(CmsError::Invalid("unsupported digest algorithm"))?;
    let SignerIdentifier::IssuerAndSerialNumber(ias) = &si.sid else {
        return Err(CmsError::Invalid(
            "signer identified by subjectKeyIdentifier",
        ));
    };
    let signer_cert = sd
        .certificates
        .as_ref()
        .and_then(|cs| {
            cs.0.iter().find_map(|c| match c {
                CertificateChoices::Certificate(c)
                    if c.tbs_certificate.issuer == ias.issuer
                        && c.tbs_certificate.serial_number == ias.serial_number =>
                {
                    Some(c.clone())
                }
                _ => None,
            })
        })
        .ok_or(CmsError::Invalid("signer certificate not included"))?;
    let attrs = si
        .signed_attrs
        .as_ref()
        .ok_or(CmsError::Invalid("no signed attributes"))?;
    let one = |oid: ObjectIdentifier| -> Result<Option<&AttributeValue>, CmsError> {
        let mut found = attrs.iter().filter(|a| a.oid == oid);
        match (found.next(), found.next()) {
            (None, _) => Ok(None),
            (Some(a), None) if a.values.len() == 1 => Ok(a.values.iter().next()),
            _ => Err(CmsError::Invalid("signed attribute present more than once")),
        }
    };
    let ct = one(oids::ID_CONTENT_TYPE)?
        .ok_or(CmsError::Invalid("content-type attribute missing"))?
        .decode_as::<ObjectIdentifier>()?;
    if ct != sd.encap_content_info.econtent_type {
        return Err(CmsError::Verify(
            "content-type attribute differs from eContentType",
        ));
    }
    let md = one(oids::ID_MESSAGE_DIGEST)?
        .ok_or(CmsError::Invalid("message-digest attribute missing"))?
        .decode_as::<OctetString>()?;
    if let Some(econtent) = &sd.encap_content_info.econtent {
        let inner = econtent.decode_as::<OctetString>()?;
        if digest_algorithm.digest(inner.as_bytes()) != md.as_bytes() {
            return Err(CmsError::Verify("message digest does not match eContent"));
        }
    }
    if let Some(expected) = expected_digest
        && expected != md.as_bytes()
    {
        return Err(CmsError::Verify("message digest does not match"));
    }
    let scv2 = one(oids::ID_AA_SIGNING_CERTIFICATE_V2)?
        .ok_or(CmsError::Invalid(
            "signing-certificate-v2 attribute missing",
        ))?
        .decode_as::<SigningCertificateV2>()?;
    if !scv2.matches(&signer_cert)? {
        return Err(CmsError::Verify(
            "signing-certificate-v2 does not match the signer certificate",
        ));
    }
    let signing_time = match one(oids::ID_SIGNING_TIME)? {
        None => None,
        Some(v) => Some(match v.tag() {
            Tag::UtcTime => v.decode_as::<UtcTime>()?.to_system_time(),
            Tag::GeneralizedTime => v.decode_as::<GeneralizedTime>()?.to_system_time(),
            _ => return Err(CmsError::Invalid("signing-time has a wrong type")),
        }),
    };
    if DigestAlgorithm::of_signature_algorithm(&si.signature_algorithm.oid)
        != Some(digest_algorithm)
    {
        return Err(CmsError::Invalid(
            "signature algorithm does not use the SignerInfo digest algorithm",
        ));
    }
    verify_signature(
        &signer_cert,
        &si.signature_algorithm.oid,
        &attrs.to_der()?,
        si.signature.as_bytes(),
    )?;
    let timestamp_tokens = si
        .unsigned_attrs
        .iter()
        .flat_map(|ua| ua.iter())
        .filter(|a| a.oid == oids::ID_AA_SIGNATURE_TIME_STAMP_TOKEN)
        .flat_map(|a| a.values.iter())
        .map(|v| v.to_der())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(VerifiedSignature {
        signer_cert,
        digest_algorithm,
        content_type: sd.encap_content_info.econtent_type,
        signing_time,
        signature: si.signature.as_bytes().to_vec(),
        timestamp_tokens,
    })
}

/// Verifies `signature` over `message` with the certificate's public key.
pub fn verify_signature(
    cert: &Certificate,
    signature_algorithm: &ObjectIdentifier,
    message: &[u8],
    signature: &[u8],
) -> Result<(), CmsError> {
    use signature::Verifier;
    use signature::hazmat::PrehashVerifier;
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let spki_der = spki.to_der()?;
    let digest = DigestAlgorithm::of_signature_algorithm(signature_algorithm)
        .ok_or(CmsError::Invalid("unsupported signature algorithm"))?;
    let bad = |_| CmsError::Verify("signature does not verify");
    if spki.algorithm.oid == oids::ID_EC_PUBLIC_KEY {
        if !matches!(
            *signature_algorithm,
            oids::ECDSA_WITH_SHA256
                | oids::ECDSA_WITH_SHA384
                | oids::ECDSA_WITH_SHA512
                | oids::ECDSA_WITH_SHA3_256
                | oids::ECDSA_WITH_SHA3_384
                | oids::ECDSA_WITH_SHA3_512
        ) {
            return Err(CmsError::Invalid(
                "EC key with a non-ECDSA signature algorithm",
            ));
        }
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .ok_or(CmsError::Invalid("EC key without curve"))?
            .decode_as::<ObjectIdentifier>()?;
        let prehash = digest.digest(message);
        use spki::DecodePublicKey;
        match curve {
            oids::SECP256R1 => {
                let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&spki_der)?;
                let sig = p256::ecdsa::DerSignature::from_bytes(signature).map_err(bad)?;
                let sig = p256::ecdsa::Signature::try_from(sig).map_err(bad)?;
                vk.verify_prehash(&prehash, &sig).map_err(bad)
            }
            oids::SECP384R1 => {
                let vk = p384::ecdsa::VerifyingKey::from_public_key_der(&spki_der)?;
                let sig = p384::ecdsa::DerSignature::from_bytes(signature).map_err(bad)?;
                let sig = p384::ecdsa::Signature::try_from(sig).map_err(bad)?;
                vk.verify_prehash(&prehash, &sig).map_err(bad)
            }
            _ => Err(CmsError::Invalid("unsupported EC curve")),
        }
    } else if spki.algorithm.oid == oids::RSA_ENCRYPTION {
        use spki::DecodePublicKey;
        let pk = rsa::RsaPublicKey::from_public_key_der(&spki_der)?;
        let sig = rsa::pkcs1v15::Signature::try_from(signature).map_err(bad)?;
        match digest {
            DigestAlgorithm::Sha256 => rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(pk)
                .verify(message, &sig)
                .map_err(bad),
            DigestAlgorithm::Sha384 => rsa::pkcs1v15::VerifyingKey::<sha2::Sha384>::new(pk)
                .verify(message, &sig)
                .map_err(bad),
            DigestAlgorithm::Sha512 => rsa::pkcs1v15::VerifyingKey::<sha2::Sha512>::new(pk)
                .verify(message, &sig)
                .map_err(bad),
            _ => Err(CmsError::Invalid("unsupported RSA digest")),
        }
    } else {
        Err(CmsError::Invalid("unsupported public key algorithm"))
    }
}

/// Unit tests; `p256_signer` and `params` also serve the `cades` tests.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cms::builder::SignerInfoBuilder;
    use cms::content_info::CmsVersion;
    use cms::signed_data::{CertificateSet, EncapsulatedContentInfo, SignerInfos};
    use std::str::FromStr;
    use std::time::{Duration, UNIX_EPOCH};
    use x509_cert::builder::Builder;
    use x509_cert::builder::{CertificateBuilder, Profile};
    use x509_cert::name::Name;
    use x509_cert::spki::SubjectPublicKeyInfoOwned;
    use x509_cert::time::Validity;

    fn cert_for<S, Sig>(signer: &S, subject_spki: SubjectPublicKeyInfoOwned) -> Certificate
    where
        S: Keypair + DynSignatureAlgorithmIdentifier + Signer<Sig>,
        S::VerifyingKey: EncodePublicKey,
        Sig: SignatureBitStringEncoding,
    {
        CertificateBuilder::new(
            Profile::Leaf {
                issuer: Name::from_str("CN=Unit CA").unwrap(),
                enable_key_agreement: false,
                enable_key_encipherment: false,
            },
            SerialNumber::from(42u32),
            Validity::from_now(Duration::from_secs(3600)).unwrap(),
            Name::from_str("CN=Unit Signer").unwrap(),
            subject_spki,
            signer,
        )
        .unwrap()
        .build::<Sig>()
        .unwrap()
    }

    /// A P-256 signer (fixed key) and its certificate.
    pub(crate) fn p256_signer() -> (p256::ecdsa::SigningKey, Certificate) {
        let k = p256::ecdsa::SigningKey::from_slice(&[3; 32]).unwrap();
        let ca = p256::ecdsa::SigningKey::from_slice(&[4; 32]).unwrap();
        let spki = SubjectPublicKeyInfoOwned::from_key(*k.verifying_key()).unwrap();
        let cert = cert_for::<_, p256::ecdsa::DerSignature>(&ca, spki);
        (k, cert)
    }

    /// Detached-signature parameters over `digest` with a fixed signing time.
    pub(crate) fn params(digest: &[u8], alg: DigestAlgorithm) -> SignParams<'_> {
        SignParams {
            content_type: ContentType::Data,
            digest_algorithm: alg,
            digest,
            signing_time: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            extra_certs: &[],
            include_signer_cert: true,
        }
    }

    #[test]
    fn detached_sign_and_verify() {
        let (k, cert) = p256_signer();
        let digest = DigestAlgorithm::Sha256.digest(b"document");
        let der = sign_detached_digest::<_, p256::ecdsa::DerSignature>(
            &k,
            &cert,
            &params(&digest, DigestAlgorithm::Sha256),
        )
        .unwrap();
        let v = verify_detached_digest(&der, Some(&digest)).unwrap();
        assert_eq!(v.signer_cert, cert);
        assert_eq!(v.content_type, oids::ID_DATA);
        assert_eq!(
            v.signing_time,
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert!(v.timestamp_tokens.is_empty());
        let sd = decode_signed_data(&der).unwrap();
        assert!(sd.encap_content_info.econtent.is_none(), "must be detached");
        assert_eq!(sd.version, CmsVersion::V1);
        // Other digest: rejected.
        let other = DigestAlgorithm::Sha256.digest(b"tampered");
        assert!(matches!(
            verify_detached_digest(&der, Some(&other)),
            Err(CmsError::Verify(_))
        ));
        // Flipped signature bit: rejected.
        let sig = signature_value(&der).unwrap();
        let mut bad = der.clone();
        let pos = bad
            .windows(sig.len())
            .position(|w| w == sig.as_slice())
            .unwrap();
        bad[pos + sig.len() - 1] ^= 1;
        assert!(verify_detached_digest(&bad, Some(&digest)).is_err());
    }

    #[test]
    fn digest_must_fit_signer_and_length() {
        let (k, cert) = p256_signer();
        let d384 = DigestAlgorithm::Sha384.digest(b"x");
        assert!(matches!(
            sign_detached_digest::<_, p256::ecdsa::DerSignature>(
                &k,
                &cert,
                &params(&d384, DigestAlgorithm::Sha384)
            ),
            Err(CmsError::SignerDigestMismatch { .. })
        ));
        assert!(matches!(
            sign_detached_digest::<_, p256::ecdsa::DerSignature>(
                &k,
                &cert,
                &params(&d384[..32], DigestAlgorithm::Sha384)
            ),
            Err(CmsError::DigestLength { .. })
        ));
        // Wrong certificate for the key.
        let (_, other_cert) = {
            let k2 = p256::ecdsa::SigningKey::from_slice(&[5; 32]).unwrap();
            let spki = SubjectPublicKeyInfoOwned::from_key(*k2.verifying_key()).unwrap();
            (k2, cert_for::<_, p256::ecdsa::DerSignature>(&k, spki))
        };
        let d = DigestAlgorithm::Sha256.digest(b"x");
        assert!(matches!(
            sign_detached_digest::<_, p256::ecdsa::DerSignature>(
                &k,
                &other_cert,
                &params(&d, DigestAlgorithm::Sha256)
            ),
            Err(CmsError::Invalid(_))
        ));
    }

    #[test]
    fn p384_signer_with_sha384() {
        let k = p384::ecdsa::SigningKey::from_slice(&[6; 48]).unwrap();
        let spki = SubjectPublicKeyInfoOwned::from_key(*k.verifying_key()).unwrap();
        let cert = cert_for::<_, p384::ecdsa::DerSignature>(&k, spki);
        let d = DigestAlgorithm::Sha384.digest(b"doc");
        let der = sign_detached_digest::<_, p384::ecdsa::DerSignature>(
            &k,
            &cert,
            &params(&d, DigestAlgorithm::Sha384),
        )
        .unwrap();
        let v = verify_detached_digest(&der, Some(&d)).unwrap();
        assert_eq!(v.digest_algorithm, DigestAlgorithm::Sha384);
    }

    #[test]
    fn ess_signing_certificate_v2_encoding() {
        let (_, cert) = p256_signer();
        let scv2 = SigningCertificateV2::for_certificate(&cert).unwrap();
        let der = scv2.to_der().unwrap();
        // SEQUENCE { SEQUENCE OF { ESSCertIDv2 { OCTET STRING (no default hashAlgorithm) ...
        assert_eq!(der[0], 0x30);
        let inner = SigningCertificateV2::from_der(&der).unwrap();
        assert!(inner.certs[0].hash_algorithm.is_none());
        assert_eq!(inner.certs[0].cert_hash.as_bytes().len(), 32);
        assert!(inner.matches(&cert).unwrap());
        let (_, mut other) = p256_signer();
        other.tbs_certificate.serial_number = SerialNumber::from(43u32);
        assert!(!inner.matches(&other).unwrap());
    }

    /// The signing code as it was before [`SignerContext`]: `cms::builder::SignerInfoBuilder` and
    /// the `cms` types. The reference the direct DER writer must match byte for byte.
    fn reference_sign<S, Sig>(
        signer: &S,
        signer_cert: &Certificate,
        params: &SignParams<'_>,
        content: Option<&[u8]>,
    ) -> Vec<u8>
    where
        S: Keypair + DynSignatureAlgorithmIdentifier + Signer<Sig>,
        S::VerifyingKey: EncodePublicKey,
        Sig: SignatureBitStringEncoding,
    {
        let detached_eci = EncapsulatedContentInfo {
            econtent_type: params.content_type.oid(),
            econtent: None,
        };
        let sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: signer_cert.tbs_certificate.issuer.clone(),
            serial_number: signer_cert.tbs_certificate.serial_number.clone(),
        });
        let mut sib = SignerInfoBuilder::new(
            signer,
            sid,
            params.digest_algorithm.algorithm_identifier(),
            &detached_eci,
            Some(params.digest),
        )
        .unwrap();
        if let Some(t) = params.signing_time {
            sib.add_signed_attribute(signing_time_attribute(t).unwrap())
                .unwrap();
        }
        sib.add_signed_attribute(
            SigningCertificateV2::for_certificate(signer_cert)
                .unwrap()
                .to_attribute()
                .unwrap(),
        )
        .unwrap();
        let signer_info: SignerInfo = sib.build::<Sig>().unwrap();
        let econtent = content
            .map(|c| Any::from_der(&OctetString::new(c).unwrap().to_der().unwrap()).unwrap());
        let mut certs = Vec::new();
        if params.include_signer_cert {
            certs.push(CertificateChoices::Certificate(signer_cert.clone()));
        }
        certs.extend(
            params
                .extra_certs
                .iter()
                .cloned()
                .map(CertificateChoices::Certificate),
        );
        let mut digest_algorithms = SetOfVec::new();
        digest_algorithms
            .insert(params.digest_algorithm.algorithm_identifier())
            .unwrap();
        let signed_data = SignedData {
            version: if params.content_type == ContentType::Data {
                CmsVersion::V1
            } else {
                CmsVersion::V3
            },
            digest_algorithms,
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: params.content_type.oid(),
                econtent,
            },
            certificates: if certs.is_empty() {
                None
            } else {
                Some(CertificateSet(SetOfVec::try_from(certs).unwrap()))
            },
            crls: None,
            signer_infos: SignerInfos(SetOfVec::try_from(vec![signer_info]).unwrap()),
        };
        ContentInfo {
            content_type: oids::ID_SIGNED_DATA,
            content: Any::from_der(&signed_data.to_der().unwrap()).unwrap(),
        }
        .to_der()
        .unwrap()
    }

    /// The DER with the certificates taken out, and the certificate encodings sorted. The `cms`
    /// crate orders a `CertificateSet` by comparing each certificate's DER re-encoded as a SEQUENCE
    /// OF INTEGER (its `ValueOrd for CertificateChoices`), which is not X.690's order of the
    /// encodings; the direct writer uses X.690's. Only the order of several certificates differs.
    fn split_certs(der: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut sd = decode_signed_data(der).unwrap();
        let mut certs: Vec<Vec<u8>> = sd
            .certificates
            .take()
            .iter()
            .flat_map(|c| c.0.iter())
            .map(|c| c.to_der().unwrap())
            .collect();
        certs.sort();
        (encode_signed_data(&sd).unwrap(), certs)
    }

    #[test]
    fn direct_der_matches_the_cms_builder() {
        // RFC 6979 signatures are deterministic, so both paths must give the same bytes (up to the
        // order of several certificates, see `split_certs`).
        let (k, cert) = p256_signer();
        let (ca_key, _) = (p256::ecdsa::SigningKey::from_slice(&[4; 32]).unwrap(), ());
        let ca_spki = SubjectPublicKeyInfoOwned::from_key(*ca_key.verifying_key()).unwrap();
        let extra = cert_for::<_, p256::ecdsa::DerSignature>(&ca_key, ca_spki);
        let ctx = SignerContext::new(&k, &cert).unwrap();
        let tst = b"\x30\x03\x02\x01\x01 pretend TSTInfo".to_vec();
        for content_type in [ContentType::Data, ContentType::TstInfo] {
            for time in [
                None,
                Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
                Some(UNIX_EPOCH + Duration::from_secs(2_600_000_000)),
            ] {
                for include in [false, true] {
                    for extra_certs in [&[][..], std::slice::from_ref(&extra)] {
                        for content in [None, Some(tst.as_slice())] {
                            let digest =
                                DigestAlgorithm::Sha256.digest(content.unwrap_or(b"external"));
                            let params = SignParams {
                                content_type,
                                digest_algorithm: DigestAlgorithm::Sha256,
                                digest: &digest,
                                signing_time: time,
                                extra_certs,
                                include_signer_cert: include,
                            };
                            let ours = ctx
                                .sign::<_, p256::ecdsa::DerSignature>(&k, &params, content)
                                .unwrap();
                            let reference = reference_sign::<_, p256::ecdsa::DerSignature>(
                                &k, &cert, &params, content,
                            );
                            assert_eq!(
                                split_certs(&ours),
                                split_certs(&reference),
                                "{content_type:?} time {time:?} cert {include} extra {} content {}",
                                extra_certs.len(),
                                content.is_some()
                            );
                            // On the wire, certificates in X.690 §11.6 order (encodings
                            // ascending). (Decoding re-sorts a SET OF, so look at the bytes.)
                            let (_, mut ders) = split_certs(&ours);
                            ders.sort_by_key(|d| {
                                ours.windows(d.len()).position(|w| w == d.as_slice())
                            });
                            assert!(ders.windows(2).all(|w| w[0] < w[1]));
                            if ders.len() < 2 {
                                assert_eq!(ours, reference);
                            }
                        }
                    }
                }
            }
        }
        // The same certificate twice is refused, as SetOfVec refuses it.
        let d = DigestAlgorithm::Sha256.digest(b"x");
        let mut p = params(&d, DigestAlgorithm::Sha256);
        let twice = [cert.clone()];
        p.extra_certs = &twice;
        assert!(
            ctx.sign::<_, p256::ecdsa::DerSignature>(&k, &p, None)
                .is_err()
        );
        // Another signer than the context's is refused.
        let other = p256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap();
        assert!(matches!(
            ctx.sign::<_, p256::ecdsa::DerSignature>(
                &other,
                &params(&d, DigestAlgorithm::Sha256),
                None
            ),
            Err(CmsError::Invalid(_))
        ));
    }

    /// An RSA signer that can be told to return a corrupted signature (a faulty module).
    struct RsaSigner {
        key: rsa::pkcs1v15::SigningKey<sha2::Sha256>,
        corrupt: bool,
    }

    impl Keypair for RsaSigner {
        type VerifyingKey = rsa::pkcs1v15::VerifyingKey<sha2::Sha256>;
        fn verifying_key(&self) -> Self::VerifyingKey {
            self.key.verifying_key()
        }
    }

    impl DynSignatureAlgorithmIdentifier for RsaSigner {
        fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
            self.key.signature_algorithm_identifier()
        }
    }

    impl Signer<rsa::pkcs1v15::Signature> for RsaSigner {
        fn try_sign(&self, msg: &[u8]) -> Result<rsa::pkcs1v15::Signature, signature::Error> {
            use signature::SignatureEncoding;
            let sig = self.key.try_sign(msg)?;
            if !self.corrupt {
                return Ok(sig);
            }
            let mut bytes = sig.to_vec();
            bytes[10] ^= 0x40;
            rsa::pkcs1v15::Signature::try_from(bytes.as_slice())
        }
    }

    #[test]
    fn rsa_signatures_are_verified_before_they_leave() {
        let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
        let mut signer = RsaSigner {
            key: rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key),
            corrupt: false,
        };
        let spki = SubjectPublicKeyInfoOwned::from_key(signer.verifying_key()).unwrap();
        let ca = p256::ecdsa::SigningKey::from_slice(&[4; 32]).unwrap();
        let cert = cert_for::<_, p256::ecdsa::DerSignature>(&ca, spki);
        let ctx = SignerContext::new(&signer, &cert).unwrap();
        let d = DigestAlgorithm::Sha256.digest(b"document");
        let good = ctx
            .sign::<_, rsa::pkcs1v15::Signature>(
                &signer,
                &params(&d, DigestAlgorithm::Sha256),
                None,
            )
            .unwrap();
        verify_detached_digest(&good, Some(&d)).unwrap();
        signer.corrupt = true;
        assert!(matches!(
            ctx.sign::<_, rsa::pkcs1v15::Signature>(
                &signer,
                &params(&d, DigestAlgorithm::Sha256),
                None
            ),
            Err(CmsError::Verify(_))
        ));
    }
}
