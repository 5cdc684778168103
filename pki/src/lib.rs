//! esigd's PKI data layer: building, parsing and checking the ASN.1 structures of the trust service
//! (X.509 certificates, PKCS#10 CSRs, CRLs, OCSP, CMS signatures, CAdES time-stamped signatures and
//! RFC 3161 time-stamp tokens), on the RustCrypto `der` 0.7 crate family (`x509-cert`, `cms`,
//! `x509-tsp`, `x509-ocsp`, `spki`, `const-oid`).
//!
//! Everything that signs takes the key as a RustCrypto signer (`signature::Signer` +
//! `signature::Keypair` + `spki::DynSignatureAlgorithmIdentifier`), so an HSM key (the `esigd-hsm`
//! signer) and an in-memory test key plug in the same way. Policy (which profile a certificate gets,
//! which status a serial has, when a TSA refuses) lives in the `esigd-ca` and `esigd-tsa` crates.
//!
//! # No I/O, no clock
//!
//! Nothing in this crate does I/O (files, network, HSM sessions, environment) or reads the clock or
//! the system random source: the current time, validity periods and signing times are parameters,
//! randomness (serial numbers) comes in as an `rand_core::CryptoRngCore`, and inputs and outputs
//! are byte slices and values. That keeps every function deterministic for a given input and
//! testable without a token or a fixed date. (Unit tests may use the clock and `OsRng`.)
//!
//! # Modules
//!
//! | module | contents |
//! |---|---|
//! | [`certificate`] | certificate templates, TBS building and signing, signature checks, serials, X.509 time |
//! | [`extensions`] | extensions of the esigd profiles (incl. ETSI, RFC 9608 noRevAvail, QCStatements) |
//! | [`identity`] | identity claims → subject DN (ETSI EN 319 412-1/-2), DN builder |
//! | [`keys`] | accepted key types and signature verification |
//! | [`csr`] | PKCS#10 CSR parsing (proof of possession, key policy) and building |
//! | [`crl`] | full CRLs (RFC 5280 §5) |
//! | [`ocsp`] | OCSP requests, CertID matching, responses (RFC 6960) |
//! | [`pem`] | PEM/DER helpers, serial hex, thumbprints |
//! | [`x509_error`] | [`X509Error`], the error of the X.509 modules above |
//! | [`cms`] | CMS SignedData over external digests with signed attributes, parser and verifier |
//! | [`tsp`] | RFC 3161 / RFC 5816 time-stamp requests, TSTInfo, tokens and responses |
//! | [`cades`] | CAdES: the signature-time-stamp attribute (CAdES-B-B → CAdES-B-T) |
//!
//! Module dependencies point one way: `cades` → `tsp` → `cms` (`cms` uses neither), and `crl`,
//! `ocsp` and `csr` build on `certificate`, `extensions`, `keys` and `pem`, never the reverse.

// Each module's documentation is the `//!` comment at the top of its file. (A `///` comment here would
// be joined to it, and rustdoc would then resolve the file's intra-doc links from the crate root.)
pub mod cades;
pub mod cms;
pub mod tsp;

mod der_write;

pub mod x509_error;
pub use x509_error::X509Error;
pub mod certificate;
pub mod crl;
pub mod csr;
pub mod extensions;
pub mod identity;
pub mod keys;
pub mod ocsp;
pub mod pem;
