//! The device agent's error.

use std::path::PathBuf;

use esigd_hsm::HsmError;

/// Why the agent could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The transaction is not answered at all (expired, answered before, wrong code, unknown key).
    #[error("request refused: {0}")]
    Refused(String),
    /// The PIN was wrong; the citizen may try again.
    #[error("wrong PIN: {tries_left} tries left before the keys lock")]
    WrongPin {
        /// Tries left.
        tries_left: u32,
    },
    /// The PIN does not meet the rules, or the two entries differ (onboarding).
    #[error("PIN: {0}")]
    PinRule(&'static str),
    /// The token failed.
    #[error("token: {0}")]
    Token(#[from] HsmError),
    /// The state directory could not be read or written.
    #[error("{path}: {reason}")]
    State {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Building the CSR, signature check or proof failed.
    #[error("{0}")]
    Crypto(String),
}
