//! The signature formats of esigd behind one two-phase trait, whoever holds the key.
//!
//! 1. [`prepare`] (or [`SignatureFormat::prepare`]) builds, from the documents' digests, the
//!    signer's certificate, its chain and the claimed signing time, what the key signs:
//!    [`Prepared::to_be_signed`] for a key that signs messages (a one-time key in the HSM), or
//!    [`Prepared::digest`] for a device that signs a ready digest (`RAW_DIGEST_SIGNATURE`).
//! 2. [`Prepared::finish`] verifies the signature value with the certificate's key (never a key
//!    from elsewhere) and writes the signed object at level B-B.
//! 3. [`Signed::timestamp_input`] is what the time-stamp covers (its SHA-256 is the imprint; it
//!    differs per format), and [`Signed::add_timestamp`] embeds the token: level B-T.
//!
//! Everything a later phase needs is kept in the prepared state: nothing is recomputed, and the
//! signed bytes are exactly the bytes that were prepared.
//!
//! | format | module | signed object | time-stamp imprint over |
//! |---|---|---|---|
//! | CAdES (EN 319 122-1) | [`cades`] | detached CMS `.p7s` | the SignerInfo signature value |
//! | PAdES (EN 319 142-1) | [`cades`] | detached CMS for the PDF's `/Contents` | the SignerInfo signature value |
//! | XAdES (EN 319 132-1) | [`xades`] | detached `ds:Signature` XML | exc-C14N of `ds:SignatureValue` |
//! | ASiC-E (EN 319 162-1) | [`xades`] | `META-INF/signatures0.xml` | exc-C14N of `ds:SignatureValue` |
//! | JWS / JAdES (TS 119 182-1) | [`jws`] | detached JWS, JSON serialization | ASCII base64url of the signature |

pub mod cades;
pub mod jws;
mod sigvalue;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod xades;

use std::fmt;
use std::time::SystemTime;

pub use esigd_pki::cms::DigestAlgorithm;
use x509_cert::Certificate;

/// A signature format of the GovStack contract (`format`: `XAdES | CAdES | ASIC | JWS | PAdES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// CAdES-B-T, detached CMS over one digest.
    Cades,
    /// PAdES-B-T: the CMS for a PDF signature dictionary, over the ByteRange digest.
    Pades,
    /// XAdES-B-T, detached, over one or more documents.
    Xades,
    /// ASiC-E with XAdES: the `META-INF/signatures0.xml` of a container the client builds.
    Asice,
    /// JWS / JAdES-B-T, detached (`sigD` by URI hash), JSON serialization.
    Jws,
}

/// Every format, in the contract's order.
pub const ALL: [Format; 5] = [
    Format::Xades,
    Format::Cades,
    Format::Asice,
    Format::Jws,
    Format::Pades,
];

impl Format {
    /// Parses a contract `format` (case-insensitive; `ASiC-E` and `JAdES` are accepted too).
    pub fn parse(s: &str) -> Result<Format, FormatError> {
        match s.to_ascii_uppercase().as_str() {
            "CADES" => Ok(Format::Cades),
            "PADES" => Ok(Format::Pades),
            "XADES" => Ok(Format::Xades),
            "ASIC" | "ASIC-E" | "ASICE" => Ok(Format::Asice),
            "JWS" | "JADES" => Ok(Format::Jws),
            _ => Err(FormatError::UnknownFormat(s.to_owned())),
        }
    }

    /// The contract's name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Cades => "CAdES",
            Format::Pades => "PAdES",
            Format::Xades => "XAdES",
            Format::Asice => "ASIC",
            Format::Jws => "JWS",
        }
    }

    /// The media type of the signed object [`Signed::add_timestamp`] returns.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Cades | Format::Pades => "application/pkcs7-signature",
            Format::Xades | Format::Asice => "application/xml",
            Format::Jws => "application/jose+json",
        }
    }

    /// Whether the signed object is text (XML, JSON) rather than DER.
    pub fn is_text(self) -> bool {
        matches!(self, Format::Xades | Format::Asice | Format::Jws)
    }

    /// Whether the format signs several documents (CAdES and PAdES sign one digest).
    pub fn signs_several_documents(self) -> bool {
        matches!(self, Format::Xades | Format::Asice | Format::Jws)
    }

    /// The format's implementation.
    pub fn implementation(self) -> &'static dyn SignatureFormat {
        match self {
            Format::Cades => &cades::CADES,
            Format::Pades => &cades::PADES,
            Format::Xades => &xades::XADES,
            Format::Asice => &xades::ASICE,
            Format::Jws => &jws::JWS,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One document to sign, known by its digest only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Its name: a relative URI in XAdES, a path in an ASiC-E container, a `sigD` `pars` entry in
    /// JAdES. Not used by CAdES and PAdES.
    pub name: String,
    /// Its media type (XAdES DataObjectFormat, ASiC-E manifest, JAdES `ctys`).
    pub media_type: String,
    /// Its digest with [`SignRequest::digest_algorithm`] (for PAdES: of the ByteRange).
    pub digest: Vec<u8>,
}

/// What [`SignatureFormat::prepare`] builds a signature from.
#[derive(Debug, Clone, Copy)]
pub struct SignRequest<'a> {
    /// The algorithm of every [`Document::digest`]; the signature hashes with it too, except in
    /// JWS, whose `alg` follows the key (ES256 for P-256, ES384 for P-384, RS256 for RSA).
    pub digest_algorithm: DigestAlgorithm,
    /// The documents, at least one; CAdES and PAdES take exactly one.
    pub documents: &'a [Document],
    /// The signer's certificate (its key signs; it goes into the signature).
    pub signer: &'a Certificate,
    /// Certificates between the signer's issuer and a root, included for verifiers.
    pub chain: &'a [Certificate],
    /// The claimed signing time (signing-time, SigningTime, `iat`; PAdES puts it in the PDF's
    /// `/M`, which the client writes).
    pub time: SystemTime,
}

/// A signature format: the first phase.
pub trait SignatureFormat: Sync {
    /// Which format this is.
    fn format(&self) -> Format;

    /// Builds what the signer's key signs. Checks the request (document count, digest lengths,
    /// names, the certificate's key) and refuses with a [`FormatError`] naming the field at fault.
    fn prepare(&self, request: &SignRequest<'_>) -> Result<Box<dyn Prepared>, FormatError>;

    /// The checks of [`SignatureFormat::prepare`] that need no certificate: run them before a key
    /// is used, so that a request that cannot be signed costs nothing.
    fn check(
        &self,
        digest_algorithm: DigestAlgorithm,
        documents: &[Document],
    ) -> Result<(), FormatError> {
        check_digests(
            digest_algorithm,
            documents,
            self.format().signs_several_documents(),
        )
    }
}

/// A signature waiting for its signature value (second phase).
pub trait Prepared: Send + Sync + fmt::Debug {
    /// The format.
    fn format(&self) -> Format;

    /// The bytes a key that signs messages signs (hashing them with
    /// [`Prepared::signature_digest_algorithm`]): CMS signed attributes, canonical `ds:SignedInfo`,
    /// the JWS signing input.
    fn to_be_signed(&self) -> &[u8];

    /// The hash the signature algorithm uses.
    fn signature_digest_algorithm(&self) -> DigestAlgorithm;

    /// What a device that signs a ready digest signs: the digest of [`Prepared::to_be_signed`].
    fn digest(&self) -> Vec<u8> {
        self.signature_digest_algorithm()
            .digest(self.to_be_signed())
    }

    /// Verifies `signature` with the certificate's key over [`Prepared::to_be_signed`] and writes
    /// the signed object. `signature` is as CMS carries it: a DER `ECDSA-Sig-Value` for ECDSA
    /// (formats that want raw `r‖s` convert it), the signature block for RSA.
    fn finish(&self, signature: &[u8]) -> Result<Box<dyn Signed>, FormatError>;
}

/// A signed object at level B-B (third phase: the time-stamp).
pub trait Signed: Send + Sync + fmt::Debug {
    /// The format.
    fn format(&self) -> Format;

    /// The B-B signed object.
    fn bytes(&self) -> &[u8];

    /// What the signature time-stamp covers: its SHA-256 is the token's message imprint.
    fn timestamp_input(&self) -> Vec<u8>;

    /// Embeds an RFC 3161 `TimeStampToken` (DER) over [`Signed::timestamp_input`] and returns the
    /// B-T signed object. A token over anything else is refused.
    fn add_timestamp(&self, token_der: &[u8]) -> Result<Vec<u8>, FormatError>;
}

/// Prepares a signature in `format` ([`Format::implementation`]).
pub fn prepare(
    format: Format,
    request: &SignRequest<'_>,
) -> Result<Box<dyn Prepared>, FormatError> {
    format.implementation().prepare(request)
}

/// Why a signature could not be prepared, finished or time-stamped.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// `format` names no format we make.
    #[error("format {0:?} is unknown; supported: XAdES, CAdES, ASIC, JWS, PAdES")]
    UnknownFormat(String),
    /// A field of the request is wrong; the message names it.
    #[error("{field}: {problem}")]
    Request {
        /// The request field at fault (`documents`, `documents[1].name`, `hash`, …).
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The certificate's key cannot sign in this format.
    #[error("the signer's key cannot sign {format}: {problem}")]
    UnsupportedKey {
        /// The format.
        format: Format,
        /// Why.
        problem: String,
    },
    /// The signature value does not verify with the certificate's key over the prepared data.
    #[error("the signature does not verify with the certificate's key: {0}")]
    Verify(String),
    /// The time-stamp token is not a token over [`Signed::timestamp_input`].
    #[error("the time-stamp token does not fit: {0}")]
    Timestamp(String),
    /// Building the object failed (an encoding error; a bug, not bad input).
    #[error("building the {format} signature failed: {problem}")]
    Internal {
        /// The format.
        format: Format,
        /// What failed.
        problem: String,
    },
}

impl FormatError {
    /// A request error on `field`.
    pub fn request(field: impl Into<String>, problem: impl Into<String>) -> Self {
        FormatError::Request {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Checks the parts of a request every format shares: at least one document (exactly one when
/// `several` is false), each digest of the request's length, names present and distinct when
/// several are allowed.
pub(crate) fn check_documents(request: &SignRequest<'_>, several: bool) -> Result<(), FormatError> {
    check_digests(request.digest_algorithm, request.documents, several)
}

fn check_digests(
    digest_algorithm: DigestAlgorithm,
    docs: &[Document],
    several: bool,
) -> Result<(), FormatError> {
    if docs.is_empty() {
        return Err(FormatError::request(
            "documents",
            "at least one document is needed",
        ));
    }
    if !several && docs.len() > 1 {
        return Err(FormatError::request(
            "documents",
            format!(
                "this format signs one digest, {} were given (XAdES, ASIC and JWS sign several)",
                docs.len()
            ),
        ));
    }
    let len = digest_algorithm.output_len();
    for (i, d) in docs.iter().enumerate() {
        if d.digest.len() != len {
            return Err(FormatError::request(
                format!("documents[{i}].hash"),
                format!(
                    "{} bytes, but a {:?} digest has {len}",
                    d.digest.len(),
                    digest_algorithm
                ),
            ));
        }
        if several {
            if d.name.is_empty() {
                return Err(FormatError::request(
                    format!("documents[{i}].name"),
                    "empty",
                ));
            }
            if docs[..i].iter().any(|o| o.name == d.name) {
                return Err(FormatError::request(
                    format!("documents[{i}].name"),
                    format!("{:?} appears twice", d.name),
                ));
            }
            if d.media_type.is_empty() {
                return Err(FormatError::request(
                    format!("documents[{i}].mediaType"),
                    "empty",
                ));
            }
        }
    }
    Ok(())
}
