//! Where the user PIN comes from: a file, an environment variable or a systemd credential.
//! Never from the configuration file itself.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::error::HsmError;

/// The source of the token's user PIN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinSource {
    /// A file holding the PIN (trailing newline ignored). Refused when group or others may read
    /// or write it (mode 0600 or 0400).
    File(PathBuf),
    /// An environment variable holding the PIN.
    Env(String),
    /// A systemd credential name, read from `$CREDENTIALS_DIRECTORY/<name>` (`LoadCredential=`).
    Credential(String),
}

impl PinSource {
    /// Reads the PIN. Errors say where it was looked for, never what was found. The text read is
    /// wiped from memory once the PIN has been taken out of it.
    pub fn read(&self) -> Result<SecretString, HsmError> {
        let raw: Zeroizing<String> = Zeroizing::new(match self {
            PinSource::File(path) => {
                private_file(path)?;
                std::fs::read_to_string(path).map_err(|e| {
                    HsmError::PinSource(format!("cannot read PIN file {}: {e}", path.display()))
                })?
            }
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
        });
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

/// Refuses a PIN file that group or others may read or write: a PIN readable by another
/// account is a PIN that other account knows.
fn private_file(path: &Path) -> Result<(), HsmError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        HsmError::PinSource(format!("cannot read PIN file {}: {e}", path.display()))
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(HsmError::PinSource(format!(
            "PIN file {} has mode {mode:04o}: group and others must have no access (chmod 600 {})",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn write_private(p: &Path, text: &str) {
        std::fs::write(p, text).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    #[test]
    fn a_pin_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pin");
        write_private(&p, "4321\n");
        assert!(PinSource::File(p.clone()).read().is_ok());
        for mode in [0o640, 0o604, 0o644, 0o602] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = PinSource::File(p.clone()).read().unwrap_err().to_string();
            assert!(
                e.contains("chmod 600") && !e.contains("4321"),
                "{mode:o}: {e}"
            );
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(PinSource::File(p).read().is_ok());
    }

    #[test]
    fn reads_file_and_trims_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pin");
        write_private(&p, "4321\n");
        assert_eq!(
            PinSource::File(p.clone()).read().unwrap().expose_secret(),
            "4321"
        );
        write_private(&p, "\n");
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
