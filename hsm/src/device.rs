//! A citizen's own token, as the reference device app uses it: the user PIN is not configured
//! anywhere, it is typed for each operation, and the token is logged in only for that operation
//! (`C_Login` → key generation or `C_Sign` → `C_Logout`).
//!
//! The appliance's [`crate::Hsm`] keeps a pool of logged-in sessions under a service PIN; a device
//! must not, so this is a separate, small type. It uses the same key templates (private keys are
//! `Sensitive`, not `Extractable`) and the same signature encodings as the rest of the crate.
//!
//! PIN tries: SoftHSM keeps no retry counter (a real secure element does), so the caller counts
//! wrong PINs and stops calling after its limit; [`HsmError::PinRefused`] carries
//! `CKR_PIN_INCORRECT` or `CKR_PIN_LOCKED` so both cases can be told apart.

use std::path::Path;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use secrecy::{ExposeSecret, SecretString};

use crate::core::OpError;
use crate::error::{HsmError, ck_label};
use crate::keyref::KeyRef;
use crate::keys;
use crate::mech::{KeyKind, SignatureScheme};
use crate::signer::PublicKey;

/// One token of a device app.
///
/// Not for a process that also has an [`crate::Hsm`]: that one re-initialises the module when its
/// token is lost, which ends this token's sessions too (and must not run under its calls).
pub struct DeviceToken {
    ctx: Pkcs11,
    slot: Slot,
    label: String,
}

impl std::fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceToken")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

fn ck(op: &'static str) -> impl Fn(CkError) -> HsmError {
    move |e| match &e {
        CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLocked | RvError::PinLenRange, _) => {
            HsmError::PinRefused { rv: ck_label(&e) }
        }
        _ => HsmError::Pkcs11 {
            op,
            rv: ck_label(&e),
        },
    }
}

fn op(e: OpError, what: &'static str) -> HsmError {
    match e {
        OpError::Hsm(h) => h,
        OpError::Ck(c) => ck(what)(c),
    }
}

impl DeviceToken {
    /// Opens the token labelled `label` in the PKCS#11 module at `module`. When no token has that
    /// label, the first uninitialised slot is initialised with it and `so_pin` (the device's
    /// administrator secret, kept by the app; the citizen's PIN is set later with
    /// [`DeviceToken::set_pin`]).
    pub fn open_or_init(
        module: &Path,
        label: &str,
        so_pin: &SecretString,
    ) -> Result<DeviceToken, HsmError> {
        let ctx = Pkcs11::new(module).map_err(|e| HsmError::ModuleLoad {
            path: module.to_owned(),
            message: e.to_string(),
        })?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(ck("initialize")(e)),
        }
        let slots = ctx.get_all_slots().map_err(ck("get slot list"))?;
        let mut free = None;
        for s in &slots {
            let Ok(info) = ctx.get_token_info(*s) else {
                continue;
            };
            if info.token_initialized() && info.label().trim_end() == label {
                return Ok(DeviceToken {
                    ctx,
                    slot: *s,
                    label: label.to_owned(),
                });
            }
            if !info.token_initialized() && free.is_none() {
                free = Some(*s);
            }
        }
        let slot = free.ok_or_else(|| HsmError::TokenNotFound {
            label: label.to_owned(),
            found: "no token with this label and no free slot to create it".into(),
        })?;
        ctx.init_token(
            slot,
            &AuthPin::from(so_pin.expose_secret().to_owned()),
            label,
        )
        .map_err(ck("init token"))?;
        // SoftHSM moves an initialised token to a new slot ID: look it up again by label.
        let slot = ctx
            .get_all_slots()
            .map_err(ck("get slot list"))?
            .into_iter()
            .find(|s| {
                ctx.get_token_info(*s)
                    .is_ok_and(|i| i.token_initialized() && i.label().trim_end() == label)
            })
            .ok_or_else(|| HsmError::TokenNotFound {
                label: label.to_owned(),
                found: "the token was initialised but is not listed".into(),
            })?;
        Ok(DeviceToken {
            ctx,
            slot,
            label: label.to_owned(),
        })
    }

    /// Whether the user PIN has been set.
    pub fn pin_set(&self) -> Result<bool, HsmError> {
        Ok(self
            .ctx
            .get_token_info(self.slot)
            .map_err(ck("get token info"))?
            .user_pin_initialized())
    }

    /// Sets the user PIN (as the security officer). Refused once a PIN is set: changing it needs
    /// the old PIN, which this app does not offer.
    pub fn set_pin(&self, so_pin: &SecretString, pin: &SecretString) -> Result<(), HsmError> {
        if self.pin_set()? {
            return Err(HsmError::Unsupported("the user PIN is already set".into()));
        }
        let s = self
            .ctx
            .open_rw_session(self.slot)
            .map_err(ck("open session"))?;
        s.login(
            UserType::So,
            Some(&AuthPin::from(so_pin.expose_secret().to_owned())),
        )
        .map_err(ck("SO login"))?;
        let r = s
            .init_pin(&AuthPin::from(pin.expose_secret().to_owned()))
            .map_err(ck("init PIN"));
        let _ = s.logout();
        r
    }

    /// Runs `f` on a read-write session logged in with the user `pin`, then logs out.
    fn with_login<T>(
        &self,
        pin: &SecretString,
        f: impl FnOnce(&Session) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        let s = self
            .ctx
            .open_rw_session(self.slot)
            .map_err(ck("open session"))?;
        match s.login(
            UserType::User,
            Some(&AuthPin::from(pin.expose_secret().to_owned())),
        ) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(ck("login")(e)),
        }
        let r = f(&s);
        let _ = s.logout();
        r
    }

    fn find(session: &Session, label: &str, class: ObjectClass) -> Result<ObjectHandle, HsmError> {
        keys::find_one(session, &KeyRef::label(label), class, "device key")
            .map_err(|e| op(e, "find key"))?
            .ok_or_else(|| HsmError::KeyNotFound {
                setting: "device key".into(),
                key: label.to_owned(),
                class: if class == ObjectClass::PRIVATE_KEY {
                    "private"
                } else {
                    "public"
                },
            })
    }

    /// Generates a persistent key pair labelled `label` (private key sensitive, not extractable)
    /// after logging in with `pin`. Refuses to replace an existing key.
    pub fn generate(
        &self,
        pin: &SecretString,
        label: &str,
        kind: KeyKind,
    ) -> Result<PublicKey, HsmError> {
        self.with_login(pin, |s| {
            let key = KeyRef::label(label);
            for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
                if keys::find_one(s, &key, class, "device key")
                    .map_err(|e| op(e, "find key"))?
                    .is_some()
                {
                    return Err(HsmError::KeyExists {
                        label: label.to_owned(),
                    });
                }
            }
            let (mech, public, private) = keys::gen_templates(kind, true, Some(label))?;
            let (pub_h, _) = s
                .generate_key_pair(&mech, &public, &private)
                .map_err(ck("generate key pair"))?;
            keys::public_key_of(s, pub_h).map_err(|e| op(e, "read public key"))
        })
    }

    /// The public key of the key pair labelled `label` (no PIN needed).
    pub fn public_key(&self, label: &str) -> Result<PublicKey, HsmError> {
        let s = self
            .ctx
            .open_ro_session(self.slot)
            .map_err(ck("open session"))?;
        let h = Self::find(&s, label, ObjectClass::PUBLIC_KEY)?;
        keys::public_key_of(&s, h).map_err(|e| op(e, "read public key"))
    }

    /// Signs `digest` (already hashed with `scheme`'s hash) with the key labelled `label`, after
    /// logging in with `pin`. ECDSA signatures come back DER-encoded (`Ecdsa-Sig-Value`).
    pub fn sign_digest(
        &self,
        pin: &SecretString,
        label: &str,
        scheme: SignatureScheme,
        digest: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        if digest.len() != scheme.hash().output_len() {
            return Err(HsmError::Unsupported(format!(
                "a {}-byte digest for {scheme:?}",
                digest.len()
            )));
        }
        self.with_login(pin, |s| {
            let h = Self::find(s, label, ObjectClass::PRIVATE_KEY)?;
            let kind = keys::kind_of(s, h).map_err(|e| op(e, "read key"))?;
            keys::sign_digest(s, h, kind, scheme, digest).map_err(|e| op(e, "sign"))
        })
    }

    /// Stores a certificate on the token next to the key labelled `label` (`CKO_CERTIFICATE`,
    /// same label, a public object: no PIN needed), replacing an earlier one. `subject` is the DER
    /// of the certificate's subject name (`CKA_SUBJECT`, required for X.509 certificate objects).
    pub fn store_certificate(
        &self,
        label: &str,
        der: &[u8],
        subject: &[u8],
    ) -> Result<(), HsmError> {
        let s = self
            .ctx
            .open_rw_session(self.slot)
            .map_err(ck("open session"))?;
        let old = s
            .find_objects(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .map_err(ck("find certificate"))?;
        for h in old {
            s.destroy_object(h).map_err(ck("destroy certificate"))?;
        }
        s.create_object(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(cryptoki::object::CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Subject(subject.to_vec()),
            Attribute::Value(der.to_vec()),
        ])
        .map_err(ck("create certificate"))?;
        Ok(())
    }
}
