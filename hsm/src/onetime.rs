//! One-time keys, generated ahead of the request path.
//!
//! A background thread keeps `ready` ephemeral key pairs waiting, each on its own dedicated
//! session (session objects die with the session that created them, and some HSMs only let that
//! session use them, so a key is generated, used and destroyed on one session). A caller
//! [`take`](OneTimeKeys::take)s a key, makes the few signatures one one-time signature needs
//! (the budget is enforced), and [`destroy`](OneTimeKey::destroy)s it, which returns a
//! [`DestructionReceipt`] for the audit log. The freed session goes back to the thread, which
//! generates the next key on it. Destroying explicitly keeps long-lived sessions from
//! accumulating objects; a key dropped without `destroy` is destroyed in `Drop` (and logged).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use cryptoki::object::ObjectHandle;
use signature::Keypair;
use spki::{AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier};

use crate::Hsm;
use crate::config::OneTimeConfig;
use crate::core::{
    Inner, OpError, PooledSession, REINIT_INTERVAL, damage, enter, enter_within, lib_generation,
    reinit_running,
};
use crate::error::{HsmError, ck_label};
use crate::keys;
use crate::mech::SignatureScheme;
use crate::observer::HsmOp;
use crate::signer::{HsmSignature, PublicKey, to_sig_error};

struct ReadyKey {
    session: PooledSession,
    handle: ObjectHandle,
    public: PublicKey,
}

struct State {
    ready: VecDeque<ReadyKey>,
    /// Dedicated sessions without a key (`None` = not opened yet / discarded).
    free: Vec<Option<PooledSession>>,
}

struct Shared {
    inner: Arc<Inner>,
    cfg: OneTimeConfig,
    state: Mutex<State>,
    ready_cond: Condvar,
    free_cond: Condvar,
    stop: AtomicBool,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn publish_ready(&self, st: &State) {
        self.inner.observer.one_time_keys_ready(st.ready.len());
    }

    /// A session leaves the set (dead or stale): count it and leave an empty place to refill.
    fn retire(&self, s: PooledSession) {
        self.inner.dedicated_open.fetch_sub(1, Ordering::Relaxed);
        self.inner.close_session(s);
    }

    fn return_session(&self, s: Option<PooledSession>) {
        let mut st = lock(&self.state);
        st.free.push(s);
        drop(st);
        self.free_cond.notify_one();
    }

    /// Sleeps `backoff` (then doubles it, up to 2 s), or until the library has been
    /// re-initialised and the token is usable again (then the backoff starts over), or the set
    /// stops.
    fn pause(&self, backoff: &mut Duration) {
        let generation = lib_generation();
        let until = Instant::now() + *backoff;
        let recovered =
            || lib_generation() != generation && !reinit_running() && !self.inner.is_token_lost();
        while Instant::now() < until && !self.stop.load(Ordering::SeqCst) {
            if recovered() {
                *backoff = Duration::from_millis(20);
                return;
            }
            std::thread::sleep(
                until
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(50)),
            );
        }
        *backoff = (*backoff * 2).min(Duration::from_secs(2));
    }

    fn refill_loop(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(20);
        loop {
            let slot = {
                let mut st = lock(&self.state);
                while st.free.is_empty() && !self.stop.load(Ordering::SeqCst) {
                    st = self.free_cond.wait(st).unwrap_or_else(|p| p.into_inner());
                }
                if self.stop.load(Ordering::SeqCst) {
                    return;
                }
                st.free.pop().flatten()
            };
            // Every call below runs inside the gate (no re-initialisation under it); while the
            // token is lost or the library is being re-initialised, wait.
            let call = match enter() {
                Ok(c) if !self.inner.is_token_lost() => c,
                _ => {
                    self.return_session(slot);
                    self.pause(&mut backoff);
                    continue;
                }
            };
            let session = match slot {
                Some(s) if self.inner.is_current(&s) => s,
                other => {
                    if let Some(stale) = other {
                        self.retire(stale);
                    }
                    match self.inner.open_session(&call) {
                        Ok(s) => {
                            self.inner.dedicated_open.fetch_add(1, Ordering::Relaxed);
                            s
                        }
                        Err(e) => {
                            drop(call);
                            tracing::warn!(error = %e, "one-time keys: cannot open a session");
                            self.return_session(None);
                            self.pause(&mut backoff);
                            continue;
                        }
                    }
                }
            };
            let t0 = Instant::now();
            match keys::generate_ephemeral(&session.session, self.cfg.kind) {
                Ok((handle, public)) => {
                    self.inner
                        .observer
                        .operation(HsmOp::GenerateEphemeral, t0.elapsed(), None);
                    backoff = Duration::from_millis(20);
                    let mut st = lock(&self.state);
                    st.ready.push_back(ReadyKey {
                        session,
                        handle,
                        public,
                    });
                    self.publish_ready(&st);
                    drop(st);
                    self.ready_cond.notify_one();
                }
                Err(OpError::Ck(e)) => {
                    let label = ck_label(&e);
                    self.inner.observer.operation(
                        HsmOp::GenerateEphemeral,
                        t0.elapsed(),
                        Some(&label),
                    );
                    let mut session = session;
                    if let Some(d) = damage(&e) {
                        session.dead = true;
                        self.inner.note_damage(d, &label);
                        self.retire(session);
                        self.return_session(None);
                    } else {
                        tracing::error!(error = %label, "one-time key generation failed");
                        self.return_session(Some(session));
                    }
                    drop(call);
                    self.pause(&mut backoff);
                }
                Err(OpError::Hsm(e)) => {
                    tracing::error!(error = %e, "one-time key generation failed");
                    self.return_session(Some(session));
                    drop(call);
                    self.pause(&mut backoff);
                }
            }
        }
    }
}

/// The set of pre-generated one-time keys and the thread that refills it.
pub struct OneTimeKeys {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for OneTimeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneTimeKeys")
            .field("cfg", &self.shared.cfg)
            .field("ready", &self.ready())
            .finish()
    }
}

impl OneTimeKeys {
    /// Starts the refill thread; `cfg.ready` dedicated sessions are opened outside the pool.
    pub fn start(hsm: &Hsm, cfg: OneTimeConfig) -> Result<OneTimeKeys, HsmError> {
        if cfg.ready == 0 {
            return Err(HsmError::Config {
                setting: "onetime.ready".into(),
                message: "must be at least 1".into(),
            });
        }
        if cfg.max_signatures == 0 {
            return Err(HsmError::Config {
                setting: "onetime.max_signatures".into(),
                message: "must be at least 1".into(),
            });
        }
        let shared = Arc::new(Shared {
            inner: hsm.inner.clone(),
            state: Mutex::new(State {
                ready: VecDeque::new(),
                free: (0..cfg.ready).map(|_| None).collect(),
            }),
            cfg,
            ready_cond: Condvar::new(),
            free_cond: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let n = shared.cfg.refill_threads.clamp(1, shared.cfg.ready);
        let mut keys = OneTimeKeys {
            shared,
            threads: Vec::with_capacity(n),
        };
        for i in 0..n {
            let s2 = keys.shared.clone();
            // On failure, dropping `keys` stops and joins the threads already started.
            let thread = std::thread::Builder::new()
                .name(format!("esigd-onetime-{i}"))
                .spawn(move || s2.refill_loop())
                .map_err(|e| {
                    HsmError::Unavailable(format!("cannot start one-time key thread: {e}"))
                })?;
            keys.threads.push(thread);
        }
        Ok(keys)
    }

    /// Keys ready right now.
    pub fn ready(&self) -> usize {
        lock(&self.shared.state).ready.len()
    }

    /// Waits until `n` keys are ready or `timeout` passes; returns the number ready.
    pub fn wait_ready(&self, n: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.shared.state);
        while st.ready.len() < n {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self
                .shared
                .ready_cond
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        st.ready.len()
    }

    /// Takes a ready key, waiting up to the configured `take_timeout`.
    pub fn take(&self) -> Result<OneTimeKey, HsmError> {
        let deadline = Instant::now() + self.shared.cfg.take_timeout;
        let mut st = lock(&self.shared.state);
        loop {
            // No key will come while the token is lost: fail fast rather than wait the timeout.
            if self.shared.inner.is_token_lost() {
                return Err(self.shared.inner.lost_error());
            }
            while let Some(k) = st.ready.pop_front() {
                if self.shared.inner.is_current(&k.session) {
                    self.shared.publish_ready(&st);
                    drop(st);
                    // Wake another taker if keys remain: notify_one may have hit this thread only.
                    self.shared.ready_cond.notify_one();
                    return Ok(OneTimeKey {
                        shared: self.shared.clone(),
                        key: Some(k),
                        uses: AtomicU32::new(0),
                        scheme: self.shared.cfg.kind.default_scheme(),
                    });
                }
                // The session was lost (or the library re-initialised) while the key waited:
                // its session object is gone with it.
                self.shared.retire(k.session);
                st.free.push(None);
                self.shared.free_cond.notify_one();
            }
            self.shared.publish_ready(&st);
            let now = Instant::now();
            if now >= deadline {
                return Err(HsmError::Busy(self.shared.cfg.take_timeout));
            }
            // In slices, to notice a token lost meanwhile (nothing signals it on this condvar).
            st = self
                .shared
                .ready_cond
                .wait_timeout(st, (deadline - now).min(Duration::from_millis(100)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for OneTimeKeys {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.free_cond.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let mut st = lock(&self.shared.state);
        let ready: Vec<ReadyKey> = st.ready.drain(..).collect();
        let free: Vec<PooledSession> = st.free.drain(..).flatten().collect();
        drop(st);
        for k in ready {
            // Sessions of an older library generation died with their keys.
            if let Ok(_call) = enter_within(REINIT_INTERVAL)
                && self.shared.inner.is_current(&k.session)
            {
                let _ = k.session.session.destroy_object(k.handle);
            }
            self.shared.retire(k.session);
        }
        for s in free {
            self.shared.retire(s);
        }
    }
}

/// Proof that a one-time key was destroyed, for the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestructionReceipt {
    /// SHA-256 thumbprint (hex) of the destroyed key's SPKI.
    pub key_thumbprint: String,
    /// When `C_DestroyObject` returned.
    pub destroyed_at: SystemTime,
    /// How many signatures the key made.
    pub signatures: u32,
}

/// One ephemeral key pair in the HSM, usable for a bounded number of signatures, then destroyed.
///
/// Implements the RustCrypto signer traits so the CSR and CMS builders can use it directly.
pub struct OneTimeKey {
    shared: Arc<Shared>,
    key: Option<ReadyKey>,
    uses: AtomicU32,
    scheme: SignatureScheme,
}

impl std::fmt::Debug for OneTimeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneTimeKey")
            .field("public", &self.key.as_ref().map(|k| k.public.thumbprint()))
            .field("uses", &self.uses.load(Ordering::Relaxed))
            .finish()
    }
}

impl OneTimeKey {
    fn ready(&self) -> Result<&ReadyKey, HsmError> {
        self.key
            .as_ref()
            .ok_or_else(|| HsmError::Unavailable("one-time key already released".into()))
    }

    /// The public key.
    pub fn public_key(&self) -> Result<&PublicKey, HsmError> {
        Ok(&self.ready()?.public)
    }

    /// The signature scheme (ECDSA with the curve's hash).
    pub fn scheme(&self) -> SignatureScheme {
        self.scheme
    }

    /// Uses `scheme` for the following signatures, e.g. ecdsa-with-SHA512 on a P-256 key when the
    /// document digest is SHA-512 (CMS hashes the signed attributes with the digest algorithm of
    /// the SignerInfo, which verifiers expect to match the signature algorithm).
    pub fn set_scheme(&mut self, scheme: SignatureScheme) -> Result<(), HsmError> {
        let kind = self.ready()?.public.kind();
        if !scheme.fits(kind) {
            return Err(HsmError::Unsupported(format!(
                "signature scheme {scheme:?} does not fit a {kind:?} one-time key"
            )));
        }
        self.scheme = scheme;
        Ok(())
    }

    /// Signs `msg` (hashed in software). Counts against the key's budget.
    pub fn sign_message(&self, msg: &[u8]) -> Result<HsmSignature, HsmError> {
        self.sign_digest(&self.scheme.hash().digest(msg))
    }

    /// Signs a precomputed digest. Counts against the key's budget.
    pub fn sign_digest(&self, digest: &[u8]) -> Result<HsmSignature, HsmError> {
        let k = self.ready()?;
        let _call = enter()?;
        if self.shared.inner.is_token_lost() {
            return Err(self.shared.inner.lost_error());
        }
        if !self.shared.inner.same_library(&k.session) {
            // C_Finalize ended its session, and the key with it; the handle numbers may belong
            // to new sessions and objects by now.
            return Err(HsmError::Unavailable(
                "one-time key lost: the PKCS#11 library was re-initialised".into(),
            ));
        }
        let n = self.uses.fetch_add(1, Ordering::SeqCst);
        if n >= self.shared.cfg.max_signatures {
            self.uses.fetch_sub(1, Ordering::SeqCst);
            return Err(HsmError::KeyExhausted(n));
        }
        let t0 = Instant::now();
        match keys::sign_digest(
            &k.session.session,
            k.handle,
            k.public.kind(),
            self.scheme,
            digest,
        ) {
            Ok(sig) => {
                self.shared
                    .inner
                    .observer
                    .operation(HsmOp::SignOneTime, t0.elapsed(), None);
                Ok(HsmSignature::try_from(sig.as_slice())
                    .map_err(|_| HsmError::BadTokenData("signature".into()))?)
            }
            Err(OpError::Hsm(e)) => Err(e),
            Err(OpError::Ck(e)) => {
                let label = ck_label(&e);
                self.shared.inner.observer.operation(
                    HsmOp::SignOneTime,
                    t0.elapsed(),
                    Some(&label),
                );
                if let Some(d) = damage(&e) {
                    self.shared.inner.note_damage(d, &label);
                    Err(HsmError::Unavailable(format!(
                        "one-time key lost with its session: {label}"
                    )))
                } else {
                    Err(HsmError::Pkcs11 {
                        op: HsmOp::SignOneTime.as_str(),
                        rv: label,
                    })
                }
            }
        }
    }

    /// Destroys the private key (`C_DestroyObject`) and returns its session to the set.
    pub fn destroy(mut self) -> Result<DestructionReceipt, HsmError> {
        let Some(k) = self.key.take() else {
            return Err(HsmError::Unavailable(
                "one-time key already released".into(),
            ));
        };
        let signatures = self.uses.load(Ordering::SeqCst);
        self.release(k, signatures)
    }

    fn release(&self, k: ReadyKey, signatures: u32) -> Result<DestructionReceipt, HsmError> {
        let thumbprint = k.public.thumbprint();
        // Destruction must not be skipped for a re-initialisation in progress: wait for it.
        let call = match enter_within(REINIT_INTERVAL * 3) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(key = %thumbprint, error = %e, "one-time key not destroyed: the PKCS#11 library is being re-initialised (C_Finalize will end its session)");
                self.shared.retire(k.session);
                self.shared.return_session(None);
                return Err(e);
            }
        };
        if !self.shared.inner.same_library(&k.session) {
            // C_Finalize ended the key's session, and session objects die with their session:
            // the key no longer exists, which is what destruction means.
            drop(call);
            self.shared.retire(k.session);
            self.shared.return_session(None);
            return Ok(DestructionReceipt {
                key_thumbprint: thumbprint,
                destroyed_at: SystemTime::now(),
                signatures,
            });
        }
        let t0 = Instant::now();
        let r = k.session.session.destroy_object(k.handle);
        match r {
            Ok(()) => {
                self.shared
                    .inner
                    .observer
                    .operation(HsmOp::Destroy, t0.elapsed(), None);
                self.shared.return_session(Some(k.session));
                Ok(DestructionReceipt {
                    key_thumbprint: thumbprint,
                    destroyed_at: SystemTime::now(),
                    signatures,
                })
            }
            Err(e) => {
                let label = ck_label(&e);
                self.shared
                    .inner
                    .observer
                    .operation(HsmOp::Destroy, t0.elapsed(), Some(&label));
                let mut session = k.session;
                if let Some(d) = damage(&e) {
                    // The session is gone, and its session objects with it: the key no longer
                    // exists, which is what destruction means. Report it as destroyed.
                    session.dead = true;
                    self.shared.inner.note_damage(d, &label);
                    self.shared.retire(session);
                    self.shared.return_session(None);
                    Ok(DestructionReceipt {
                        key_thumbprint: thumbprint,
                        destroyed_at: SystemTime::now(),
                        signatures,
                    })
                } else {
                    // The key may still exist: close the session, which destroys its objects.
                    self.shared.retire(session);
                    self.shared.return_session(None);
                    Err(HsmError::Pkcs11 {
                        op: HsmOp::Destroy.as_str(),
                        rv: label,
                    })
                }
            }
        }
    }
}

impl Drop for OneTimeKey {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            tracing::warn!(key = %k.public.thumbprint(), "one-time key dropped without destroy(); destroying");
            let n = self.uses.load(Ordering::SeqCst);
            if let Err(e) = self.release(k, n) {
                tracing::error!(error = %e, "destroying dropped one-time key");
            }
        }
    }
}

impl Keypair for OneTimeKey {
    type VerifyingKey = PublicKey;
    fn verifying_key(&self) -> PublicKey {
        // `key` is Some for the whole life of a usable OneTimeKey; after release there is no
        // public key to report, and signing fails anyway.
        self.key
            .as_ref()
            .map(|k| k.public.clone())
            .unwrap_or_else(|| PublicKey::new(self.shared.cfg.kind, Vec::new()))
    }
}

impl DynSignatureAlgorithmIdentifier for OneTimeKey {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        self.scheme
            .algorithm_identifier()
            .map_err(|_| spki::Error::KeyMalformed)
    }
}

impl signature::Signer<HsmSignature> for OneTimeKey {
    fn try_sign(&self, msg: &[u8]) -> Result<HsmSignature, signature::Error> {
        self.sign_message(msg).map_err(to_sig_error)
    }
}
