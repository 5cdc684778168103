//! What the store keeps of a citizen's device, protected by keys that never leave the HSM: the
//! `SCDRemoteId` sealed (AES-256-GCM, the certificate serial as associated data, so a sealed
//! value cannot be moved to another record) and blind indexes (HMAC-SHA-256) of the device and
//! of the owner, so records can be found without the store holding either in the clear.

use esigd_hsm::{Hsm, HsmError, KeyRef, SecretKind};

/// Sealing and blind indexes with the `[scd]` keys. Every method blocks on PKCS#11.
#[derive(Clone)]
pub struct ScdVault {
    hsm: Hsm,
    seal: KeyRef,
    index: KeyRef,
}

impl std::fmt::Debug for ScdVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScdVault").finish_non_exhaustive()
    }
}

/// Domain separation of the blind indexes.
const OWNER: &[u8] = b"esigd/scd/owner\0";
const DEVICE: &[u8] = b"esigd/scd/device\0";

impl ScdVault {
    /// Uses the secret keys labelled `seal_label` (AES) and `index_label` (HMAC), creating them
    /// when they do not exist yet (first start). Blocking.
    pub fn open(hsm: Hsm, seal_label: &str, index_label: &str) -> Result<ScdVault, HsmError> {
        for (label, kind) in [
            (seal_label, SecretKind::Aes256),
            (index_label, SecretKind::HmacSha256),
        ] {
            match hsm.generate_secret_key(label, kind) {
                Ok(()) => tracing::info!(label, "created an SCD secret key in the HSM"),
                Err(HsmError::KeyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ScdVault {
            hsm,
            seal: KeyRef::label(seal_label),
            index: KeyRef::label(index_label),
        })
    }

    /// The blind index of an owner (the Identity BB's `iss` and `sub`).
    pub fn owner_index(&self, issuer: &str, sub: &str) -> Result<[u8; 32], HsmError> {
        self.index_of(OWNER, &[issuer.as_bytes(), sub.as_bytes()])
    }

    /// The blind index of a device (canonical `SCDRemoteId`; the `SCDType` names of one device
    /// may differ between requests).
    pub fn device_index(&self, remote_id: &str) -> Result<[u8; 32], HsmError> {
        self.index_of(DEVICE, &[remote_id.as_bytes()])
    }

    fn index_of(&self, domain: &[u8], parts: &[&[u8]]) -> Result<[u8; 32], HsmError> {
        // Length-prefixed parts: ("ab","c") and ("a","bc") index differently.
        let mut data = domain.to_vec();
        for p in parts {
            data.extend_from_slice(&(p.len() as u64).to_be_bytes());
            data.extend_from_slice(p);
        }
        let mac = self.hsm.blind_index(&self.index, "scd.index_key", &data)?;
        mac.try_into()
            .map_err(|_| HsmError::BadTokenData("HMAC-SHA-256 did not give 32 bytes".into()))
    }

    /// Seals `remote_id` for the record of certificate `serial`.
    pub fn seal_remote_id(&self, serial: &[u8], remote_id: &str) -> Result<Vec<u8>, HsmError> {
        self.hsm
            .seal(&self.seal, "scd.seal_key", serial, remote_id.as_bytes())
    }

    /// Opens a value from [`ScdVault::seal_remote_id`].
    pub fn open_remote_id(&self, serial: &[u8], sealed: &[u8]) -> Result<String, HsmError> {
        let plain = self
            .hsm
            .unseal(&self.seal, "scd.seal_key", serial, sealed)?;
        String::from_utf8(plain)
            .map_err(|_| HsmError::BadTokenData("sealed SCDRemoteId is not UTF-8".into()))
    }
}
