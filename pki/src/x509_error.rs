//! The error type shared by the X.509 modules of this crate (CSR, certificate, CRL, OCSP, PEM, identity).

/// Everything that can go wrong while parsing, checking or building X.509 objects.
///
/// Each message names the object or field at fault. A signer failure keeps the original
/// [`signature::Error`] as its [`std::error::Error::source`], so callers can tell an unavailable HSM
/// apart from bad input (see [`X509Error::is_signer_failure`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum X509Error {
    /// The input is larger than this crate accepts for the given kind of object.
    #[error("{what} is too large: {len} bytes (at most {max} accepted)")]
    TooLarge {
        /// The object that was being read.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The maximum accepted.
        max: usize,
    },
    /// The input is empty.
    #[error("{what} is empty")]
    Empty {
        /// The object that was being read.
        what: &'static str,
    },
    /// The input is not valid DER (or not the expected ASN.1 structure).
    #[error("{what} is not valid DER: {source}")]
    Decode {
        /// The object that was being read.
        what: &'static str,
        /// The DER decoder's error.
        #[source]
        source: der::Error,
    },
    /// The input is not valid PEM or has an unexpected PEM label.
    #[error("{what} is not valid PEM: {reason}")]
    Pem {
        /// The object that was being read.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An X.509 certificate was given where a certification request (CSR) was expected.
    #[error("the input is an X.509 certificate, not a certification request (PKCS#10 CSR)")]
    CertificateInsteadOfCsr,
    /// The public key type or size is not allowed.
    #[error(
        "unsupported public key: {0}; allowed are ECDSA P-256, ECDSA P-384 and RSA 2048-4096 bits"
    )]
    UnsupportedKey(String),
    /// The signature algorithm is not supported or does not fit the key.
    #[error("unsupported signature algorithm: {0}")]
    UnsupportedSignatureAlgorithm(String),
    /// A signature does not verify.
    #[error("{what}: signature does not verify with {key}")]
    BadSignature {
        /// What was checked (e.g. "CSR proof of possession").
        what: &'static str,
        /// Which key it was checked against.
        key: &'static str,
    },
    /// An identity claim is missing or has an unusable value.
    #[error("identity claim `{claim}`: {reason}")]
    Identity {
        /// The claim at fault.
        claim: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A time value cannot be represented in X.509 (before 1950 or after 9999, or arithmetic overflow).
    #[error("time value for {what} cannot be encoded: {reason}")]
    Time {
        /// The field at fault.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Encoding an object failed (should not happen with well-formed inputs).
    #[error("could not encode {what}: {source}")]
    Encode {
        /// The object that was being encoded.
        what: &'static str,
        /// The DER encoder's error.
        #[source]
        source: der::Error,
    },
    /// The signer's public key or algorithm identifier could not be obtained or encoded.
    #[error("signer key or algorithm identifier unusable: {0}")]
    SignerKey(#[source] spki::Error),
    /// The signer (HSM or in-memory key) failed to sign.
    #[error("signer failed: {0}")]
    Signer(#[source] signature::Error),
    /// A structural problem in an otherwise decodable object (e.g. a missing extension).
    #[error("{what}: {reason}")]
    Invalid {
        /// The object at fault.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl X509Error {
    /// True when the error came from the signer (e.g. the HSM is unavailable), not from the input.
    pub fn is_signer_failure(&self) -> bool {
        matches!(self, X509Error::Signer(_))
    }

    pub(crate) fn decode(what: &'static str) -> impl FnOnce(der::Error) -> X509Error {
        move |source| X509Error::Decode { what, source }
    }

    pub(crate) fn encode(what: &'static str) -> impl FnOnce(der::Error) -> X509Error {
        move |source| X509Error::Encode { what, source }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> X509Error {
        X509Error::Invalid {
            what,
            reason: reason.into(),
        }
    }
}
