//! Errors of the CA policy layer.

use esigd_pki::X509Error;

use crate::store::StoreError;

/// Everything the authority can refuse or fail with. Messages name the field, rule or serial at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// Parsing, building or signing failed (bad CSR, bad claims, signer failure...).
    #[error(transparent)]
    Pki(#[from] X509Error),
    /// The certificate store failed or refused.
    #[error("certificate store: {0}")]
    Store(#[from] StoreError),
    /// The pre-issuance lint found problems; nothing was signed.
    #[error("pre-issuance lint failed ({profile}): {}", .problems.join("; "))]
    Lint {
        /// Profile that was being issued.
        profile: &'static str,
        /// Every rule that failed.
        problems: Vec<String>,
    },
    /// A status change that the lifecycle does not allow.
    #[error("certificate {serial}: {reason}")]
    Transition {
        /// Serial (hex) of the certificate.
        serial: String,
        /// Why the change is refused.
        reason: String,
    },
    /// No certificate with this serial was issued by this CA.
    #[error("certificate {0} not found")]
    NotFound(String),
    /// A configuration value is unusable.
    #[error("CA configuration `{field}`: {reason}")]
    Config {
        /// The setting at fault.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The CA certificate (or a certificate offered as one) is unusable.
    #[error("CA certificate: {0}")]
    CaCertificate(String),
    /// No unused serial number could be drawn (should never happen with 159 random bits).
    #[error("could not draw an unused serial number after {0} attempts")]
    SerialExhausted(usize),
}

impl CaError {
    /// True when the signer (HSM) failed, as opposed to bad input or policy refusal: the caller may retry
    /// later or report the service as unavailable.
    pub fn is_signer_failure(&self) -> bool {
        matches!(self, CaError::Pki(e) if e.is_signer_failure())
    }

    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        CaError::Config {
            field,
            reason: reason.into(),
        }
    }
}
