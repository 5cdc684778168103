//! Errors of the `hsm` crate.

use std::path::PathBuf;

use cryptoki::error::{Error as CkError, RvError};

/// Everything that can go wrong talking to the HSM.
///
/// Messages name the configuration setting at fault where there is one, and never contain a PIN.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    /// A configuration value is missing or malformed.
    #[error("{setting}: {message}")]
    Config {
        /// The setting at fault, e.g. `hsm.module`.
        setting: String,
        /// What is wrong with it.
        message: String,
    },
    /// The PKCS#11 module could not be loaded.
    #[error("hsm.module: cannot load PKCS#11 module {path}: {message}")]
    ModuleLoad {
        /// The module path from the configuration.
        path: PathBuf,
        /// The loader's message.
        message: String,
    },
    /// No initialised token carries the configured label.
    #[error("hsm.token: no initialised token with label {label:?} (tokens found: {found})")]
    TokenNotFound {
        /// The configured label.
        label: String,
        /// Labels of the tokens that were found, for the operator.
        found: String,
    },
    /// The PIN could not be read from its source.
    #[error("hsm.pin: {0}")]
    PinSource(String),
    /// The token refused the PIN.
    #[error("hsm.pin: the token refused the PIN ({rv})")]
    PinRefused {
        /// The PKCS#11 return value, e.g. `CKR_PIN_INCORRECT`.
        rv: String,
    },
    /// No key (private key, or public key where one is needed) matches the reference.
    #[error("{setting}: no {class} key matches {key}")]
    KeyNotFound {
        /// The setting that named the key, e.g. `ca.key`.
        setting: String,
        /// The key reference as written in the configuration.
        key: String,
        /// `private` or `public`.
        class: &'static str,
    },
    /// A key with that label already exists (refused so a key is never silently replaced).
    #[error("a key labelled {label:?} already exists on the token")]
    KeyExists {
        /// The label.
        label: String,
    },
    /// The key exists but cannot do what was asked (type, size or mechanism).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The HSM cannot be reached right now (sessions lost, token removed, library re-initialising).
    /// The pool heals itself; retry later.
    #[error("HSM unavailable: {0}")]
    Unavailable(String),
    /// No session became free before the checkout timeout.
    #[error("HSM busy: no session free within {0:?}")]
    Busy(std::time::Duration),
    /// A one-time key was asked to sign more than its budget allows.
    #[error("one-time key already used {0} times; it signs only what one signature needs")]
    KeyExhausted(u32),
    /// A PKCS#11 call failed for a reason that is not a lost session.
    #[error("PKCS#11 {op} failed: {rv}")]
    Pkcs11 {
        /// The operation, e.g. `sign`.
        op: &'static str,
        /// The PKCS#11 return value name.
        rv: String,
    },
    /// The token returned data we could not interpret (e.g. a malformed EC point).
    #[error("bad data from token: {0}")]
    BadTokenData(String),
}

impl HsmError {
    /// True when the error is transient and the same call may succeed later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, HsmError::Unavailable(_) | HsmError::Busy(_))
    }
}

/// The PKCS#11 name of a return value, e.g. `CKR_SESSION_HANDLE_INVALID`.
pub fn rv_name(rv: RvError) -> String {
    let camel = format!("{rv:?}");
    let mut out = String::from("CKR_");
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

/// A short label for a cryptoki error, used in messages and metrics.
pub(crate) fn ck_label(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, _) => rv_name(*rv),
        other => format!("{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rv_names_follow_pkcs11_spelling() {
        assert_eq!(
            rv_name(RvError::SessionHandleInvalid),
            "CKR_SESSION_HANDLE_INVALID"
        );
        assert_eq!(rv_name(RvError::PinIncorrect), "CKR_PIN_INCORRECT");
    }
}
