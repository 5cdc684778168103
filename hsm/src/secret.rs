//! Secret keys that never leave the HSM: AES-256-GCM to seal small records at rest (e.g. a
//! citizen's `SCDRemoteId`), and HMAC-SHA-256 for blind indexes (to find a sealed record by its
//! plaintext without storing the plaintext).
//!
//! A sealed value is `0x01 ‖ IV (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`. The IV is random
//! (drawn in software: 96 random bits per record, far from the 2^32 records per key where random
//! GCM IVs start to matter). The additional data binds a sealed value to its record, so one
//! record's ciphertext cannot be moved into another.

use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use rand_core::{OsRng, RngCore};

use crate::core::OpError;
use crate::error::HsmError;
use crate::keyref::KeyRef;
use crate::keys::find_one;
use crate::observer::HsmOp;
use crate::token::Hsm;

/// Kinds of secret key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretKind {
    /// AES-256 for [`Hsm::seal`] / [`Hsm::unseal`].
    Aes256,
    /// A 256-bit HMAC-SHA-256 key for [`Hsm::blind_index`].
    HmacSha256,
}

const VERSION: u8 = 1;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;

fn secret_key(s: &Session, key: &KeyRef, setting: &str) -> Result<ObjectHandle, OpError> {
    find_one(s, key, ObjectClass::SECRET_KEY, setting)?.ok_or_else(|| {
        HsmError::KeyNotFound {
            setting: setting.to_string(),
            key: key.to_string(),
            class: "secret",
        }
        .into()
    })
}

impl Hsm {
    /// Generates a persistent secret key labelled `label` (sensitive, not extractable). Refuses to
    /// replace a key.
    pub fn generate_secret_key(&self, label: &str, kind: SecretKind) -> Result<(), HsmError> {
        self.run_op(HsmOp::GenerateSecretKey, false, |s| {
            let key = KeyRef::label(label);
            if find_one(&s.session, &key, ObjectClass::SECRET_KEY, "secret key")?.is_some() {
                return Err(HsmError::KeyExists {
                    label: label.to_string(),
                }
                .into());
            }
            let mut t = vec![
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::ValueLen(32.into()),
            ];
            let mech = match kind {
                SecretKind::Aes256 => {
                    t.extend([
                        Attribute::KeyType(KeyType::AES),
                        Attribute::Encrypt(true),
                        Attribute::Decrypt(true),
                    ]);
                    Mechanism::AesKeyGen
                }
                SecretKind::HmacSha256 => {
                    t.extend([
                        Attribute::KeyType(KeyType::GENERIC_SECRET),
                        Attribute::Sign(true),
                        Attribute::Verify(true),
                    ]);
                    Mechanism::GenericSecretKeyGen
                }
            };
            s.session.generate_key(&mech, &t)?;
            Ok(())
        })
    }

    /// Encrypts `plaintext` with the AES key `key` (AES-256-GCM, random IV), binding `aad`.
    /// `setting` names the configuration key for errors.
    pub fn seal(
        &self,
        key: &KeyRef,
        setting: &str,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let mut iv = [0u8; IV_LEN];
        OsRng.fill_bytes(&mut iv);
        let ct = self.run_op(HsmOp::Seal, true, |s| {
            let h = secret_key(&s.session, key, setting)?;
            let mut iv = iv;
            let params = GcmParams::new(&mut iv, aad, (TAG_LEN as u64 * 8).into())?;
            Ok(s.session
                .encrypt(&Mechanism::AesGcm(params), h, plaintext)?)
        })?;
        let mut out = Vec::with_capacity(1 + IV_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts a value from [`Hsm::seal`] made with the same key and `aad`. A changed value, a
    /// different `aad` or another key fail with [`HsmError::BadTokenData`].
    pub fn unseal(
        &self,
        key: &KeyRef,
        setting: &str,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        if sealed.len() < 1 + IV_LEN + TAG_LEN || sealed[0] != VERSION {
            return Err(HsmError::BadTokenData(
                "sealed value: too short or unknown version".into(),
            ));
        }
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&sealed[1..1 + IV_LEN]);
        let ct = &sealed[1 + IV_LEN..];
        let res = self.run_op(HsmOp::Unseal, true, |s| {
            let h = secret_key(&s.session, key, setting)?;
            let mut iv = iv;
            let params = GcmParams::new(&mut iv, aad, (TAG_LEN as u64 * 8).into())?;
            Ok(s.session.decrypt(&Mechanism::AesGcm(params), h, ct)?)
        });
        match res {
            Ok(p) => Ok(p),
            // A tag that does not verify: CKR_ENCRYPTED_DATA_INVALID per PKCS#11; SoftHSM 2.6
            // answers CKR_GENERAL_ERROR. The key was found, so either means "does not open".
            Err(HsmError::Pkcs11 { rv, .. })
                if rv.contains("ENCRYPTED_DATA")
                    || rv.contains("DATA_INVALID")
                    || rv == "CKR_GENERAL_ERROR" =>
            {
                Err(HsmError::BadTokenData(format!(
                    "sealed value does not open with this key and record ({rv})"
                )))
            }
            Err(e) => Err(e),
        }
    }

    /// HMAC-SHA-256 of `data` with the secret key `key`: a stable index of a sealed value.
    pub fn blind_index(
        &self,
        key: &KeyRef,
        setting: &str,
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        self.run_op(HsmOp::BlindIndex, true, |s| {
            let h = secret_key(&s.session, key, setting)?;
            Ok(s.session.sign(&Mechanism::Sha256Hmac, h, data)?)
        })
    }
}
