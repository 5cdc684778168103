//! placeholder
#![forbid(unsafe_code)]

/// CMS SignedData over external digests, CAdES attributes (owned by the CMS/TSA helper).
pub mod cms;
/// RFC 3161 time-stamp protocol messages (owned by the CMS/TSA helper).
pub mod tsp;

mod der_write;

/// Error type of the X.509 modules (CSR, certificate, CRL, OCSP, PEM, identity).
pub mod x509_error;
pub use x509_error::X509Error;
/// Certificate building (template → TBS → signed), signature checks, serials and X.509 time encoding.
pub mod certificate;
/// Full CRL building and verification (RFC 5280 §5).
pub mod crl;
/// PKCS#10 CSR parsing with proof of possession and key policy; CSR building.
pub mod csr;
/// Extensions of the esigd certificate profiles (incl. ETSI, RFC 9608 noRevAvail, QCStatements).
pub mod extensions;
/// Identity claims → subject DN (ETSI EN 319 412-1/-2) and a DN builder with RFC 5280 encodings.
pub mod identity;
/// Allowed key types (ECDSA P-256/P-384, RSA 2048–4096) and signature verification.
pub mod keys;
/// OCSP request parsing, CertID matching and response building (RFC 6960).
pub mod ocsp;
/// PEM/DER helpers, serial hex and thumbprints.
pub mod pem;
