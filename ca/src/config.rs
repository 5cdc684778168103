//! CA configuration: profiles, URLs, validity periods. The appliance fills this from its TOML file.

use std::time::Duration;

use const_oid::ObjectIdentifier;
use esigd_pki::{extensions::QcStatementsOptions, identity::SubjectMapping};

use crate::error::CaError;

/// Placeholder policy OID of the one-time profile (a private arc; replace with the operator's CP OID).
pub const DEFAULT_ONE_TIME_POLICY: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1.2");
/// Placeholder policy OID of the SCD profile (a private arc; replace with the operator's CP OID).
pub const DEFAULT_SCD_POLICY: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1.3");

/// Largest backdating of notBefore that the lint accepts, whatever the configuration says.
pub const MAX_BACKDATE: Duration = Duration::from_secs(300);

/// One-time (short-term) signing certificate profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OneTimeProfile {
    /// Validity after `now` (default 60 s).
    pub validity: Duration,
    /// notBefore = now − backdate, to tolerate relying parties whose clocks are slightly behind (default 5 s).
    pub backdate: Duration,
    /// certificatePolicies OIDs (at least one).
    pub policies: Vec<ObjectIdentifier>,
    /// Add digitalSignature to keyUsage next to nonRepudiation (ETSI EN 319 412-2 allows both).
    pub digital_signature: bool,
    /// caIssuers URLs (AIA without OCSP); empty leaves AIA out. No CRL or OCSP pointers, ever.
    pub ca_issuers_urls: Vec<String>,
    /// ETSI QCStatements to include (none by default).
    pub qc_statements: QcStatementsOptions,
}

impl Default for OneTimeProfile {
    fn default() -> Self {
        OneTimeProfile {
            validity: Duration::from_secs(60),
            backdate: Duration::from_secs(5),
            policies: vec![DEFAULT_ONE_TIME_POLICY],
            digital_signature: false,
            ca_issuers_urls: Vec::new(),
            qc_statements: QcStatementsOptions::default(),
        }
    }
}

/// SCD (long-lived signing key) certificate profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScdProfile {
    /// Validity after `now` (default 2 years = 730 days).
    pub validity: Duration,
    /// notBefore = now − backdate (default 5 s).
    pub backdate: Duration,
    /// certificatePolicies OIDs (at least one).
    pub policies: Vec<ObjectIdentifier>,
    /// Add digitalSignature to keyUsage next to nonRepudiation.
    pub digital_signature: bool,
    /// CRL distribution point URLs (at least one).
    pub crl_urls: Vec<String>,
    /// OCSP responder URLs (at least one).
    pub ocsp_urls: Vec<String>,
    /// caIssuers URLs.
    pub ca_issuers_urls: Vec<String>,
    /// ETSI QCStatements to include (none by default).
    pub qc_statements: QcStatementsOptions,
}

impl Default for ScdProfile {
    fn default() -> Self {
        ScdProfile {
            validity: Duration::from_secs(730 * 86_400),
            backdate: Duration::from_secs(5),
            policies: vec![DEFAULT_SCD_POLICY],
            digital_signature: false,
            crl_urls: Vec::new(),
            ocsp_urls: Vec::new(),
            ca_issuers_urls: Vec::new(),
            qc_statements: QcStatementsOptions::default(),
        }
    }
}

/// When the CA checks, with the CA public key, the signature the signer (HSM) returned for a
/// certificate, before the certificate is stored or returned.
///
/// # Why ECDSA signatures are sampled and RSA signatures are not
///
/// The check exists against a signer that misbehaves. What that can cost depends on the algorithm:
///
/// * **RSA:** one faulty RSA-CRT signature leaks the private key (Boneh, DeMillo and Lipton 1997,
///   with Lenstra's gcd: the faulty signature's error shares a prime factor with the modulus). A faulty signature
///   must never leave the CA, so every RSA signature is verified before release, always.
/// * **ECDSA:** no fault in a single randomised ECDSA signature is known to disclose the key. The
///   single-fault attacks on ECDSA need the *same message* signed twice with a deterministic nonce
///   (RFC 6979 / EdDSA-style; Poddebniak et al. 2018) — every TBSCertificate this CA signs carries a
///   fresh 159-bit random serial, so no message is ever signed twice. Nonce-bias faults produce
///   signatures that *verify*, so a post-signature check cannot see them anyway; defending against
///   them is the HSM's job (FIPS 140-3 / EN 419 221-5 fault countermeasures, which the module runs
///   inside its boundary). What is left for the check is a signer that returns a signature that does
///   not verify: the wrong key (label confusion, a swapped token), a wrong mechanism, truncated or
///   mis-encoded output. Such a certificate is no risk to relying parties (every one of them rejects
///   it); it is an availability fault, and such faults are systematic, not one-off.
///
/// So, with [`SignatureCheck::Sampled`] (the default): every ECDSA signature's *form* is checked
/// (DER `ECDSA-Sig-Value`, r and s in range: catches truncation and encoding bugs for free); the
/// full verification runs on the first certificate after start and then on one in `ecdsa_one_in`;
/// after any failed check the CA verifies *every* certificate until restart (and refuses the
/// certificate that failed). The full check costs one ECDSA verification, as much CPU as a SoftHSM
/// signature (≈ 56 µs vs ≈ 59 µs on the development machine): with it on every certificate a
/// software-HSM CA spends more time checking than signing. Go's `x509.CreateCertificate` verifies
/// every signature because it cannot know what a generic `crypto.Signer` does; here the algorithm is
/// known. [`SignatureCheck::Every`] restores the check on every certificate (e.g. with a network
/// HSM, where the signature, not the CPU, is the bottleneck).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureCheck {
    /// Verify every certificate's signature, whatever the algorithm.
    Every,
    /// RSA: verify every signature. ECDSA: check every signature's form; verify the first one and
    /// then one in `ecdsa_one_in` (1 = every one); after a failure, verify every one.
    Sampled {
        /// Sampling period of the full verification for ECDSA CA keys.
        ecdsa_one_in: std::num::NonZeroU32,
    },
}

impl Default for SignatureCheck {
    fn default() -> Self {
        SignatureCheck::Sampled {
            ecdsa_one_in: std::num::NonZeroU32::new(64).unwrap_or(std::num::NonZeroU32::MIN),
        }
    }
}

/// Everything the [`crate::Authority`] needs besides keys and storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaConfig {
    /// Identity claims → subject DN.
    pub subject: SubjectMapping,
    /// One-time profile.
    pub one_time: OneTimeProfile,
    /// SCD profile.
    pub scd: ScdProfile,
    /// CRL nextUpdate − thisUpdate (default 24 h).
    pub crl_validity: Duration,
    /// OCSP nextUpdate − thisUpdate (default 1 h).
    pub ocsp_validity: Duration,
    /// When signatures returned by the signer are verified (default: RSA always, ECDSA sampled).
    pub signature_check: SignatureCheck,
}

impl Default for CaConfig {
    fn default() -> Self {
        CaConfig {
            subject: SubjectMapping::default(),
            one_time: OneTimeProfile::default(),
            scd: ScdProfile::default(),
            crl_validity: Duration::from_secs(86_400),
            ocsp_validity: Duration::from_secs(3_600),
            signature_check: SignatureCheck::default(),
        }
    }
}

impl CaConfig {
    /// Defaults with the published URLs derived from the public base URL (`https://esig.example.gov`):
    /// CRL `{base}/pki/crl`, OCSP `{base}/ocsp`, caIssuers `{base}/pki/ca.crt`.
    pub fn with_base_url(base_url: &str) -> Self {
        let base = base_url.trim_end_matches('/');
        let mut cfg = CaConfig::default();
        cfg.scd.crl_urls = vec![format!("{base}/pki/crl")];
        cfg.scd.ocsp_urls = vec![format!("{base}/ocsp")];
        cfg.scd.ca_issuers_urls = vec![format!("{base}/pki/ca.crt")];
        cfg.one_time.ca_issuers_urls = vec![format!("{base}/pki/ca.crt")];
        cfg
    }

    /// Checks the settings that would otherwise only fail at issuance time.
    pub fn validate(&self) -> Result<(), CaError> {
        if self.one_time.validity.is_zero() {
            return Err(CaError::config("one_time.validity", "must be positive"));
        }
        if self.one_time.validity > Duration::from_secs(86_400) {
            return Err(CaError::config(
                "one_time.validity",
                "a one-time (short-term) certificate may live at most 24 h",
            ));
        }
        if self.scd.validity.is_zero() {
            return Err(CaError::config("scd.validity", "must be positive"));
        }
        for (field, b) in [
            ("one_time.backdate", self.one_time.backdate),
            ("scd.backdate", self.scd.backdate),
        ] {
            if b > MAX_BACKDATE {
                return Err(CaError::config(
                    field,
                    format!("at most {} s", MAX_BACKDATE.as_secs()),
                ));
            }
        }
        if self.one_time.policies.is_empty() {
            return Err(CaError::config(
                "one_time.policies",
                "at least one certificate policy OID",
            ));
        }
        if self.scd.policies.is_empty() {
            return Err(CaError::config(
                "scd.policies",
                "at least one certificate policy OID",
            ));
        }
        if self.scd.crl_urls.is_empty() {
            return Err(CaError::config("scd.crl_urls", "at least one CRL URL"));
        }
        if self.scd.ocsp_urls.is_empty() {
            return Err(CaError::config("scd.ocsp_urls", "at least one OCSP URL"));
        }
        for url in self
            .scd
            .crl_urls
            .iter()
            .chain(&self.scd.ocsp_urls)
            .chain(&self.scd.ca_issuers_urls)
            .chain(&self.one_time.ca_issuers_urls)
        {
            if !(url.starts_with("http://") || url.starts_with("https://")) || !url.is_ascii() {
                return Err(CaError::config(
                    "urls",
                    format!("`{url}` is not an ASCII http(s) URL"),
                ));
            }
        }
        if self.crl_validity < Duration::from_secs(60) {
            return Err(CaError::config("crl_validity", "at least 60 s"));
        }
        if self.ocsp_validity < Duration::from_secs(60) {
            return Err(CaError::config("ocsp_validity", "at least 60 s"));
        }
        Ok(())
    }
}
