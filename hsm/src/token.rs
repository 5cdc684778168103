//! [`Hsm`]: the one handle the rest of esigd uses to reach the token.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use cryptoki::object::ObjectClass;

use crate::config::HsmConfig;
use crate::core::{Inner, OpError};
use crate::error::HsmError;
use crate::keyref::KeyRef;
use crate::keys;
use crate::mech::{KeyKind, SignatureScheme};
use crate::observer::{HsmObserver, HsmOp, NoopObserver};
use crate::signer::{HsmSigner, PublicKey};

/// The HSM: a logged-in PKCS#11 token with a self-healing session pool. Cheap to clone.
///
/// Every method blocks on PKCS#11 calls: call them from blocking threads
/// (`tokio::task::spawn_blocking` or dedicated workers), never on an async executor thread.
#[derive(Clone)]
pub struct Hsm {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hsm")
            .field("module", &self.inner.cfg.module)
            .field("token", &self.inner.cfg.token_label)
            .finish()
    }
}

/// A snapshot of the pool for health checks and statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HsmStats {
    /// Configured pool size.
    pub pool_size: usize,
    /// Pooled sessions open now.
    pub open: usize,
    /// Pooled sessions checked out now.
    pub in_use: usize,
    /// Sessions held outside the pool by the one-time key set.
    pub dedicated: usize,
}

impl Hsm {
    /// Loads the module, finds the token by label, reads the PIN and logs in.
    /// Fails with a message naming the setting at fault (module, token, PIN).
    pub fn open(cfg: HsmConfig) -> Result<Hsm, HsmError> {
        Self::open_with_observer(cfg, Arc::new(NoopObserver))
    }

    /// Like [`Hsm::open`], reporting events to `observer` (metrics).
    pub fn open_with_observer(
        cfg: HsmConfig,
        observer: Arc<dyn HsmObserver>,
    ) -> Result<Hsm, HsmError> {
        Ok(Hsm {
            inner: Inner::open(cfg, observer)?,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &HsmConfig {
        &self.inner.cfg
    }

    /// Checks that a session can be obtained and used and that the token answers
    /// `C_GetTokenInfo` (for `/readyz` and `esigd check`). A token that does not answer is lost: the
    /// check fails while the library is re-initialised until the token is back. After a signing
    /// key vanished from the token, the check fails until the key is found again.
    pub fn health_check(&self) -> Result<(), HsmError> {
        // First: sessions of a token whose files are gone still work; the token itself does not.
        self.inner.check_token()?;
        let missing = self
            .inner
            .missing_key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        self.inner.run(HsmOp::OpenSession, true, |s| {
            s.session.get_session_info()?;
            if let Some(key) = &missing {
                keys::find_one(&s.session, key, ObjectClass::PRIVATE_KEY, "hsm")?.ok_or_else(
                    || {
                        HsmError::Unavailable(format!(
                            "{key} is missing from the token (token removed or unreadable?)"
                        ))
                    },
                )?;
            }
            Ok(())
        })?;
        if missing.is_some() {
            tracing::info!("HSM: the missing key is back on the token");
            *self
                .inner
                .missing_key
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        }
        Ok(())
    }

    /// Pool statistics.
    pub fn stats(&self) -> HsmStats {
        let (open, in_use) = self.inner.pool_counts();
        HsmStats {
            pool_size: self.inner.cfg.pool_size,
            open,
            in_use,
            dedicated: self.inner.dedicated_open.load(Ordering::Relaxed) as usize,
        }
    }

    /// The number of sessions the token reports open for this process (pool + anchor +
    /// one-time key sessions), if the module reports it. Used to check for session leaks.
    pub fn token_session_count(&self) -> Result<Option<u64>, HsmError> {
        self.inner.token_session_count()
    }

    fn check_token(&self, key: &KeyRef, setting: &str) -> Result<(), HsmError> {
        match key.token() {
            Some(t) if t != self.inner.cfg.token_label => Err(HsmError::Config {
                setting: setting.to_string(),
                message: format!(
                    "{key} names token {t:?} but hsm.token is {:?}",
                    self.inner.cfg.token_label
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Generates a persistent key pair on the token (`esigd init`). Refuses to replace a key.
    pub fn generate_key_pair(&self, label: &str, kind: KeyKind) -> Result<PublicKey, HsmError> {
        self.inner.run(HsmOp::GenerateKeyPair, false, |s| {
            keys::generate_persistent(s, label, kind)
        })
    }

    /// The public key of a key pair on the token.
    pub fn public_key(&self, key: &KeyRef, setting: &str) -> Result<PublicKey, HsmError> {
        self.check_token(key, setting)?;
        self.inner
            .run(HsmOp::FindKey, true, |s| keys::public_key(s, key, setting))
    }

    /// Whether a private key matching `key` exists.
    pub fn has_private_key(&self, key: &KeyRef, setting: &str) -> Result<bool, HsmError> {
        self.check_token(key, setting)?;
        match self.inner.run(HsmOp::FindKey, true, |s| {
            keys::private_key(s, key, setting).map(|_| ())
        }) {
            Ok(()) => Ok(true),
            Err(HsmError::KeyNotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A signer for the persistent key `key`; `setting` names the configuration key (e.g.
    /// `ca.key`) for error messages. `scheme` defaults to the key's natural scheme (ECDSA with
    /// the curve's hash, RSA PKCS#1 v1.5 with SHA-256).
    pub fn signer(
        &self,
        key: &KeyRef,
        setting: &str,
        scheme: Option<SignatureScheme>,
    ) -> Result<HsmSigner, HsmError> {
        self.check_token(key, setting)?;
        let (kind, public) = self.inner.run(HsmOp::FindKey, true, |s| {
            let k = keys::private_key(s, key, setting)?;
            let public = keys::public_key(s, key, setting)?;
            Ok((k.kind, public))
        })?;
        if public.kind() != kind {
            return Err(HsmError::Config {
                setting: setting.to_string(),
                message: format!(
                    "private key is {kind:?} but the public key object is {:?}",
                    public.kind()
                ),
            });
        }
        let scheme = scheme.unwrap_or(kind.default_scheme());
        if !scheme.fits(kind) {
            return Err(HsmError::Config {
                setting: setting.to_string(),
                message: format!("{scheme:?} cannot be used with a {kind:?} key"),
            });
        }
        Ok(HsmSigner::new(
            self.clone(),
            key.clone(),
            setting.to_string(),
            public,
            scheme,
        ))
    }

    /// Signs a digest with a persistent key (used by [`HsmSigner`]).
    pub(crate) fn sign_digest_with(
        &self,
        key: &KeyRef,
        setting: &str,
        scheme: SignatureScheme,
        digest: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let r = self.inner.run(HsmOp::Sign, true, |s| {
            let k = keys::private_key(s, key, setting)?;
            keys::sign_digest(&s.session, k.handle, k.kind, scheme, digest)
        });
        match r {
            // The signer found this key when it was made: a key gone now means the token's
            // objects are gone (token directory moved or unreadable, token deleted), a passing
            // condition for the caller (503), not a configuration error.
            Err(HsmError::KeyNotFound { .. }) => {
                tracing::warn!(key = %key, "HSM: a signing key is missing from the token");
                *self
                    .inner
                    .missing_key
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(key.clone());
                Err(HsmError::Unavailable(format!(
                    "{setting}: {key} is missing from the token (token removed or unreadable?)"
                )))
            }
            r => r,
        }
    }

    /// Generates an ephemeral key pair on a pooled session, signs `digests` with it and destroys
    /// it, all on that one session: the plain sequence without pre-generation (benchmark
    /// baseline, and a fallback). Returns the public key and the signatures.
    pub fn ephemeral_sign_once(
        &self,
        kind: KeyKind,
        digests: &[&[u8]],
    ) -> Result<(PublicKey, Vec<Vec<u8>>), HsmError> {
        self.inner.run(HsmOp::GenerateEphemeral, false, |s| {
            let (h, pk) = keys::generate_ephemeral(&s.session, kind)?;
            let scheme = kind.default_scheme();
            let mut out = Vec::with_capacity(digests.len());
            let mut result: Result<(), OpError> = Ok(());
            for d in digests {
                match keys::sign_digest(&s.session, h, kind, scheme, d) {
                    Ok(sig) => out.push(sig),
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            let destroyed = s.session.destroy_object(h);
            result?;
            destroyed?;
            Ok((pk, out))
        })
    }

    /// Runs `f` on a pooled session (see `Inner::run`), for the operation modules of this crate.
    pub(crate) fn run_op<T>(
        &self,
        op: HsmOp,
        retry: bool,
        f: impl FnMut(&mut crate::core::PooledSession) -> Result<T, crate::core::OpError>,
    ) -> Result<T, HsmError> {
        self.inner.run(op, retry, f)
    }

    /// Shutdown: refuses new operations (`Unavailable`), waits up to 10 s for those in flight, then logs
    /// out and closes the pooled sessions. Every clone is unusable afterwards.
    pub fn close(&self) {
        self.inner.shutdown();
    }
}
