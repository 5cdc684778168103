//! Errors of the listeners and their TLS set-up.

use std::path::PathBuf;

/// Everything that can go wrong while building or running a listener.
///
/// Messages name the setting at fault (`tls.cert`, `tls.client_ca`, …).
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {setting} from {path}: {message}")]
    Pem {
        /// Setting that names the file.
        setting: &'static str,
        /// File path.
        path: PathBuf,
        /// Reason.
        message: String,
    },
    /// A PEM input is malformed.
    #[error("{setting}: malformed PEM: {message}")]
    MalformedPem {
        /// Setting at fault.
        setting: &'static str,
        /// Reason.
        message: String,
    },
    /// A PEM input holds no usable item.
    #[error("{setting} holds no {what}")]
    Empty {
        /// Setting at fault.
        setting: &'static str,
        /// What was expected ("certificate", "private key").
        what: &'static str,
    },
    /// rustls rejected a client CA certificate or could not build the client verifier.
    #[error("invalid client CA certificate(s) in {setting}: {message}")]
    ClientCa {
        /// Setting at fault.
        setting: &'static str,
        /// Reason.
        message: String,
    },
    /// rustls rejected a client CA's certificate revocation list.
    #[error("invalid certificate revocation list(s) in {setting}: {message}")]
    ClientCrl {
        /// Setting at fault.
        setting: &'static str,
        /// Reason.
        message: String,
    },
    /// rustls rejected the server certificate chain / key pair or the protocol set-up.
    #[error("invalid TLS server certificate or key (tls.cert / tls.key): {0}")]
    ServerCert(String),
    /// A listener limit is out of range.
    #[error("invalid listener setting {setting}: {reason}")]
    Limit {
        /// Setting at fault.
        setting: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}
