//! The workflows of the GovStack eSignature specification, one file each, each reading top to
//! bottom like its sequence diagram.
//!
//! * [`onetime`] — 9.1 one-time signing: one-time key, one-time certificate, CAdES, time-stamp.
//! * [`scd`] — 9.2.2 signing with the citizen's own device named by a pseudonym.
//! * [`SignSpec`] — what both sign: a format of [`esigd_formats`] over one or more document
//!   digests, in the two phases every format takes (prepare what the key signs; finish: verify
//!   with the certificate, assemble).
//! * [`seal`] — what every signature shares once its value exists: the time-stamp and the
//!   durable batch.

pub mod onetime;
pub mod scd;
pub mod seal;

use std::time::SystemTime;

use esigd_formats::{Document, Format, FormatError, Prepared, SignRequest};
use esigd_hsm::SignatureScheme;
use esigd_pki::cms::DigestAlgorithm;
use x509_cert::Certificate;

/// The name a document gets when the request carries a single `hash` (the contract's form).
pub const SINGLE_DOCUMENT_NAME: &str = "document";
/// The media type of a document given by a single `hash`.
pub const SINGLE_DOCUMENT_MEDIA_TYPE: &str = "application/octet-stream";

/// The level of a signature (ETSI baseline levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Level {
    /// B-T: the signature with the TSA's signature time-stamp (every format).
    #[default]
    BT,
    /// B-LT: B-T plus the values to validate it later without asking anyone: the CA chain, the
    /// TSA certificate and the CA's current CRL (CAdES; a PDF gets them from the client, `esig pdf
    /// lt`).
    BLt,
}

impl Level {
    /// Parses `B-T` or `B-LT` (case-insensitive).
    pub fn parse(s: &str) -> Result<Level, String> {
        match s.to_ascii_uppercase().as_str() {
            "B-T" => Ok(Level::BT),
            "B-LT" => Ok(Level::BLt),
            _ => Err(format!(
                "signatureLevel {:?} is unknown; supported: B-T, B-LT",
                s.chars().take(32).collect::<String>()
            )),
        }
    }
}

/// What an e-Service asks to have signed, whoever holds the key: a format over the digests of
/// one or more documents (CAdES and PAdES: exactly one), at a level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignSpec {
    /// The signature format.
    pub format: Format,
    /// The hash type of every document digest.
    pub hash_type: HashType,
    /// The documents, at least one.
    pub documents: Vec<Document>,
    /// B-T (default) or B-LT.
    pub level: Level,
}

impl SignSpec {
    /// The contract's form: one `hash`, a document named [`SINGLE_DOCUMENT_NAME`].
    pub fn single(format: Format, hash_type: HashType, digest: Vec<u8>) -> SignSpec {
        SignSpec {
            format,
            hash_type,
            documents: vec![Document {
                name: SINGLE_DOCUMENT_NAME.into(),
                media_type: SINGLE_DOCUMENT_MEDIA_TYPE.into(),
                digest,
            }],
            level: Level::BT,
        }
    }

    /// The first document's digest: the one the record, the audit event and the page's
    /// fingerprint name (the only one for CAdES and PAdES).
    pub fn digest(&self) -> &[u8] {
        self.documents.first().map_or(&[], |d| d.digest.as_slice())
    }

    /// The format's checks that need no certificate (document count, digest lengths, names):
    /// run before a key is taken.
    pub fn check(&self) -> Result<(), FormatError> {
        if self.level == Level::BLt && self.format != Format::Cades {
            return Err(FormatError::request(
                "signatureLevel",
                "B-LT is made by esigd for CAdES only; a PDF gets its validation data from the client (esig pdf lt)",
            ));
        }
        self.format
            .implementation()
            .check(self.hash_type.digest_algorithm(), &self.documents)
    }

    /// First phase: what the key of `cert` signs, at `now`, with `chain` included.
    pub fn prepare(
        &self,
        cert: &Certificate,
        chain: &[Certificate],
        now: SystemTime,
    ) -> Result<Box<dyn Prepared>, FormatError> {
        esigd_formats::prepare(
            self.format,
            &SignRequest {
                digest_algorithm: self.hash_type.digest_algorithm(),
                documents: &self.documents,
                signer: cert,
                chain,
                time: now,
            },
        )
    }
}

/// The metric label of a format (`esigd_signatures_created_total{format}`).
pub fn format_label(format: Format) -> &'static str {
    match format {
        Format::Cades => "cades",
        Format::Pades => "pades",
        Format::Xades => "xades",
        Format::Asice => "asice",
        Format::Jws => "jws",
    }
}

/// Certificates between the signer's issuer and a root: the CA chain without self-signed roots
/// (verifiers bring their own trust anchors).
pub(crate) fn intermediates(chain: &[Certificate]) -> Vec<Certificate> {
    chain
        .iter()
        .filter(|c| c.tbs_certificate.subject != c.tbs_certificate.issuer)
        .cloned()
        .collect()
}

/// A `hashType` we can sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashType {
    /// `SHA2-256`.
    Sha256,
    /// `SHA2-384`.
    Sha384,
    /// `SHA2-512`.
    Sha512,
}

/// The `hashType` values we sign, as the contract names them.
pub const SUPPORTED_HASH_TYPES: &str = "SHA2-256, SHA2-384, SHA2-512";

impl HashType {
    /// Parses a contract `hashType` (`SHA2-256`; `SHA-256` and `SHA256` are accepted too).
    /// SHA-3 and BLAKE2B are named by the contract but not signable here: the one-time key signs
    /// with ECDSA and the HSM path has no SHA-3 signature algorithms, so they get a message saying
    /// what is supported.
    pub fn parse(s: &str) -> Result<HashType, String> {
        match s.to_ascii_uppercase().as_str() {
            "SHA2-256" | "SHA-256" | "SHA256" => Ok(HashType::Sha256),
            "SHA2-384" | "SHA-384" | "SHA384" => Ok(HashType::Sha384),
            "SHA2-512" | "SHA-512" | "SHA512" => Ok(HashType::Sha512),
            "SHA3-256" | "SHA3-384" | "SHA3-512" | "BLAKE2B" => Err(format!(
                "hashType {s} is not supported for signing; supported: {SUPPORTED_HASH_TYPES}"
            )),
            _ => Err(format!(
                "hashType {s:?} is unknown; supported: {SUPPORTED_HASH_TYPES}"
            )),
        }
    }

    /// The contract name.
    pub fn name(self) -> &'static str {
        match self {
            HashType::Sha256 => "SHA2-256",
            HashType::Sha384 => "SHA2-384",
            HashType::Sha512 => "SHA2-512",
        }
    }

    /// Digest length in bytes.
    pub fn len(self) -> usize {
        self.digest_algorithm().output_len()
    }

    /// Always false (a digest is never empty); present because `len` is.
    pub fn is_empty(self) -> bool {
        false
    }

    /// The CMS digest algorithm.
    pub fn digest_algorithm(self) -> DigestAlgorithm {
        match self {
            HashType::Sha256 => DigestAlgorithm::Sha256,
            HashType::Sha384 => DigestAlgorithm::Sha384,
            HashType::Sha512 => DigestAlgorithm::Sha512,
        }
    }

    /// The hash type of a digest algorithm (SHA-2 only).
    pub fn from_digest_algorithm(alg: DigestAlgorithm) -> Option<HashType> {
        match alg {
            DigestAlgorithm::Sha256 => Some(HashType::Sha256),
            DigestAlgorithm::Sha384 => Some(HashType::Sha384),
            DigestAlgorithm::Sha512 => Some(HashType::Sha512),
            _ => None,
        }
    }

    /// The ECDSA signature scheme whose hash matches (CMS verifiers hash the signed attributes
    /// with the SignerInfo's digest algorithm).
    pub fn ecdsa_scheme(self) -> SignatureScheme {
        match self {
            HashType::Sha256 => SignatureScheme::EcdsaSha256,
            HashType::Sha384 => SignatureScheme::EcdsaSha384,
            HashType::Sha512 => SignatureScheme::EcdsaSha512,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_types_follow_the_contract() {
        assert_eq!(HashType::parse("SHA2-256"), Ok(HashType::Sha256));
        assert_eq!(HashType::parse("sha-512"), Ok(HashType::Sha512));
        assert!(
            HashType::parse("SHA3-256")
                .unwrap_err()
                .contains("SHA2-256")
        );
        assert!(HashType::parse("MD5").unwrap_err().contains("unknown"));
        assert_eq!(HashType::Sha384.len(), 48);
    }
}
