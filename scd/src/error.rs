//! The error of this crate: a message that names the field at fault.

/// A protocol message that cannot be accepted. Each variant names the JSON field (as it is spelled
/// on the wire) so that an HTTP layer can answer 400 with a useful `detail` and `pointer`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScdError {
    /// A field is missing or empty.
    #[error("{field}: required")]
    Missing {
        /// The field, as spelled in JSON (e.g. `signatureProtocolParameters.digest`).
        field: &'static str,
    },
    /// A field has a value outside what the protocol allows.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field, as spelled in JSON.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A verification code given by the other side is not the one computed here.
    #[error("vc.value: the verification code does not match the session, digest and salt")]
    VcMismatch,
    /// A state transition that the session state machine does not allow.
    #[error("session: {0}")]
    State(&'static str),
}

impl ScdError {
    /// Shorthand for [`ScdError::Invalid`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ScdError::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// The JSON field at fault, when there is one (for an RFC 9457 `pointer`).
    pub fn field(&self) -> Option<&'static str> {
        match self {
            ScdError::Missing { field } | ScdError::Invalid { field, .. } => Some(field),
            ScdError::VcMismatch => Some("vc.value"),
            ScdError::State(_) => None,
        }
    }
}
