//! The one error type of the library.

use std::path::{Path, PathBuf};

/// Why a digest, a prepare or an embed failed. The message names the problem and, where there is
/// one, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The hash name is not one esigd accepts.
    #[error("hash {0:?} is not supported; use SHA2-256, SHA2-384 or SHA2-512")]
    UnknownHash(String),
    /// The input does not start with a `%PDF-` header.
    #[error("not a PDF: no %PDF- header in the first 1024 bytes")]
    NotPdf,
    /// The PDF parser refused the file.
    #[error("the PDF cannot be read: {0}")]
    Parse(String),
    /// The PDF is encrypted (with or without a user password).
    #[error(
        "the PDF is encrypted; esig signs unencrypted PDFs only (remove the encryption, e.g. \
         `qpdf --decrypt in.pdf out.pdf`, before the first signature)"
    )]
    Encrypted,
    /// The cross-reference data had to be rebuilt to read the file: an incremental update on top
    /// of it would not be reliable.
    #[error(
        "the PDF's cross-reference data is damaged ({0}); repair the file first (e.g. \
         `qpdf in.pdf repaired.pdf`) and sign the repaired file"
    )]
    Damaged(String),
    /// The PDF carries a certification signature that allows no changes (DocMDP `/P 1`): any
    /// further signature would break it.
    #[error(
        "the PDF is certified with \"no changes allowed\" (DocMDP /P 1): another signature \
         would invalidate the certification"
    )]
    Certified,
    /// The PDF has no page to put the signature widget on.
    #[error("the PDF has no page to attach the signature field to")]
    NoPage,
    /// A PDF object the update has to change is not what the PDF specification says it is.
    #[error("the PDF's {what} is malformed: {problem}")]
    Structure {
        /// Which object (`/Root`, `/AcroForm`, the first page's `/Annots`, …).
        what: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The requested field name is unusable or taken.
    #[error("signature field name {name:?}: {problem}")]
    FieldName {
        /// The name.
        name: String,
        /// Why it cannot be used.
        problem: &'static str,
    },
    /// The PDF already has a prepared signature whose `/Contents` was never filled.
    #[error(
        "signature field {0:?} was prepared but never signed (its /Contents is empty); sign the \
         original file, or embed the signature into this one first"
    )]
    UnfilledSignature(String),
    /// The `/Contents` reserve asked for is out of range.
    #[error("the /Contents reserve must be between {min} and {max} bytes, {asked} were asked")]
    Reserve {
        /// The smallest reserve.
        min: usize,
        /// The largest reserve.
        max: usize,
        /// What was asked.
        asked: usize,
    },
    /// Writing the incremental update failed, or it came out in a shape that cannot be signed
    /// (a bug in esig or lopdf, not bad input).
    #[error("writing the incremental update failed: {0}")]
    Write(String),
    /// The file to embed into has no unfilled signature placeholder.
    #[error("no signature placeholder to fill: {0} (was the file made by `esig pdf prepare`?)")]
    NoPlaceholder(String),
    /// The placeholder is already filled: the file is signed.
    #[error("the last signature's /Contents is already filled: the file is already signed")]
    AlreadySigned,
    /// The `/ByteRange` written in the file does not describe the `/Contents` placeholder.
    #[error("the /ByteRange in the file does not match the /Contents placeholder: {0}")]
    ByteRangeMismatch(String),
    /// The signature is not one DER-encoded CMS `ContentInfo`.
    #[error("the signature is not a DER CMS (PKCS #7) object: {0}")]
    NotCms(String),
    /// The CMS is larger than the space reserved for it.
    #[error(
        "the CMS has {cms} bytes but the /Contents placeholder holds {reserve}; prepare the PDF \
         again with a larger reserve (`esig pdf prepare --reserve`) and sign the new digest"
    )]
    CmsTooBig {
        /// The CMS size in bytes.
        cms: usize,
        /// The reserve in bytes.
        reserve: usize,
    },
    /// The CMS's message digest is not the digest of this file's `/ByteRange`.
    #[error(
        "the CMS does not sign this file: its message digest is not the digest of the /ByteRange \
         (was it made for another prepared file, or was the prepared file changed?)"
    )]
    WrongDigest,
    /// An ASiC-E container is malformed or breaks a byte rule of EN 319 162-1.
    #[error("ASiC-E container: {0}")]
    Container(String),
    /// The data files do not match what the signature references (names or digests).
    #[error("the data files do not match the signature: {0}")]
    FilesMismatch(String),
    /// A signature object (XAdES XML, JWS JSON, CMS, ASiCManifest) cannot be read.
    #[error("the signature cannot be read: {0}")]
    SignatureFile(String),
    /// A sign request cannot be built from the arguments.
    #[error("cannot build the sign request: {0}")]
    Request(String),
    /// The signing service answered with an error or something that is not a signature.
    #[error("the signing service's answer: {0}")]
    Response(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}
