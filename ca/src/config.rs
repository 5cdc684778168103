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
}

impl Default for CaConfig {
    fn default() -> Self {
        CaConfig {
            subject: SubjectMapping::default(),
            one_time: OneTimeProfile::default(),
            scd: ScdProfile::default(),
            crl_validity: Duration::from_secs(86_400),
            ocsp_validity: Duration::from_secs(3_600),
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
