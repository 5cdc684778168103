//! Where the user PIN comes from: a file, an environment variable or a systemd credential.
//! Never from the configuration file itself.

use std::path::PathBuf;

use secrecy::SecretString;

use crate::error::HsmError;

/// The source of the token's user PIN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinSource {
    /// A file holding the PIN (trailing newline ignored). Should be mode 0600.
    File(PathBuf),
    /// An environment variable holding the PIN.
    Env(String),
    /// A systemd credential name, read from `$CREDENTIALS_DIRECTORY/<name>` (`LoadCredential=`).
    Credential(String),
}

impl PinSource {
    /// Reads the PIN. Errors say where it was looked for, never what was found.
    pub fn read(&self) -> Result<SecretString, HsmError> {
        let raw = match self {
            PinSource::File(path) => std::fs::read_to_string(path).map_err(|e| {
                HsmError::PinSource(format!("cannot read PIN file {}: {e}", path.display()))
            })?,
            PinSource::Env(var) => std::env::var(var).map_err(|_| {
                HsmError::PinSource(format!(
                    "environment variable {var} is not set or not UTF-8"
                ))
            })?,
            PinSource::Credential(name) => {
                if name.contains('/') || name.is_empty() {
                    return Err(HsmError::PinSource(format!(
                        "credential name {name:?} is not a plain file name"
                    )));
                }
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                    HsmError::PinSource(format!(
                        "credential {name:?}: $CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the unit)"
                    ))
                })?;
                let path = PathBuf::from(dir).join(name);
                std::fs::read_to_string(&path).map_err(|e| {
                    HsmError::PinSource(format!("cannot read credential {}: {e}", path.display()))
                })?
            }
        };
        let pin = raw.trim_end_matches(['\n', '\r']);
        if pin.is_empty() {
            return Err(HsmError::PinSource(format!(
                "{} holds an empty PIN",
                self.describe()
            )));
        }
        Ok(SecretString::from(pin.to_string()))
    }

    /// Where the PIN is read from, for messages.
    pub fn describe(&self) -> String {
        match self {
            PinSource::File(p) => format!("file {}", p.display()),
            PinSource::Env(v) => format!("environment variable {v}"),
            PinSource::Credential(c) => format!("systemd credential {c}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn reads_file_and_trims_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pin");
        std::fs::write(&p, "4321\n").unwrap();
        assert_eq!(
            PinSource::File(p.clone()).read().unwrap().expose_secret(),
            "4321"
        );
        std::fs::write(&p, "\n").unwrap();
        assert!(PinSource::File(p).read().is_err());
        let e = PinSource::File(dir.path().join("missing"))
            .read()
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("hsm.pin:"), "{e}");
        assert!(
            PinSource::Env("ESIGD_SURELY_UNSET_VARIABLE".into())
                .read()
                .is_err()
        );
        assert!(PinSource::Credential("../x".into()).read().is_err());
    }
}
