//! The PKCS#11 context, login, the session pool and self-healing.
//!
//! One context per process. Login state belongs to the application, not to a session, and closing
//! the last session logs the token out, so an *anchor* session stays open for the life of the
//! context. Pooled sessions are handed to one caller at a time (a `Session` is `Send` but not
//! `Sync`; sharing one session serialises everything).
//!
//! Self-healing: when an operation fails because its session, the login, the token or the library
//! went away, the session is discarded and the shared state is repaired on the next checkout:
//! re-open the anchor and log in again, find the token's slot again, or re-initialise the library.
//! Attempts are spaced by an exponential backoff; meanwhile callers get
//! [`HsmError::Unavailable`](crate::HsmError::Unavailable).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::ObjectHandle;
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use secrecy::SecretString;

use crate::config::HsmConfig;
use crate::error::{HsmError, ck_label, rv_name};
use crate::keyref::KeyRef;
use crate::mech::KeyKind;
use crate::observer::{HsmObserver, HsmOp};

/// A key handle cached on the session that found it (handles may be session-specific).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CachedKey {
    pub(crate) handle: ObjectHandle,
    pub(crate) kind: KeyKind,
}

/// A session owned by the pool (or by the one-time key set).
pub(crate) struct PooledSession {
    pub(crate) session: Session,
    /// Library instance the session belongs to.
    lib_gen: u64,
    /// Session-loss epoch at open time; older sessions are not reused.
    epoch: u64,
    pub(crate) keys: HashMap<KeyRef, CachedKey>,
    /// Known dead (its handle is invalid): do not call C_CloseSession on it.
    pub(crate) dead: bool,
}

/// What went wrong inside an operation run on a session.
pub(crate) enum OpError {
    Ck(CkError),
    Hsm(HsmError),
}

impl From<CkError> for OpError {
    fn from(e: CkError) -> Self {
        OpError::Ck(e)
    }
}

impl From<HsmError> for OpError {
    fn from(e: HsmError) -> Self {
        OpError::Hsm(e)
    }
}

/// What a PKCS#11 failure says about the shared state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Damage {
    /// Sessions were closed (this one at least): re-check the anchor and login.
    Sessions,
    /// The login is gone.
    Login,
    /// The token or device went away: find the slot again.
    Token,
    /// The library is no longer initialised: initialise it again.
    Library,
}

/// Classifies a cryptoki error: `Some` when the session must be discarded and state repaired.
pub(crate) fn damage(e: &CkError) -> Option<Damage> {
    match e {
        CkError::Pkcs11(rv, _) => match rv {
            RvError::SessionHandleInvalid | RvError::SessionClosed => Some(Damage::Sessions),
            // A cached key handle went stale: SoftHSM invalidates its objects when the token's
            // files disappear (token directory moved or unreadable) and gives them new handles
            // when they are back. Fresh sessions drop the cache and find the keys again.
            RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid => Some(Damage::Sessions),
            RvError::UserNotLoggedIn => Some(Damage::Login),
            RvError::DeviceRemoved | RvError::TokenNotPresent | RvError::DeviceError => {
                Some(Damage::Token)
            }
            RvError::CryptokiNotInitialized => Some(Damage::Library),
            _ => None,
        },
        _ => None,
    }
}

struct LibState {
    ctx: Option<Pkcs11>,
    slot: Option<Slot>,
    anchor: Option<Session>,
    /// The anchor may be dead: probe it before trusting the login.
    anchor_suspect: bool,
    /// The token refused the PIN once; never try it again (a retry loop would lock the token).
    pin_refused: Option<String>,
    next_attempt: Option<Instant>,
    backoff: Duration,
    last_error: String,
}

/// How long `shutdown` waits for operations in flight.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

struct PoolState {
    idle: Vec<PooledSession>,
    /// Pooled sessions open (idle + in use).
    open: usize,
    in_use: usize,
    /// Callers blocked in `checkout`; a returned session wakes one only if there is one
    /// (a futex wake per operation is measurable at 30k signatures/s).
    waiters: usize,
    /// Set by `shutdown`: no new checkout, so no PKCS#11 call is in flight when the process exits
    /// (SoftHSM crashes when a thread is inside it while the library is torn down).
    closing: bool,
}

/// Shared state behind [`crate::Hsm`].
pub(crate) struct Inner {
    pub(crate) cfg: HsmConfig,
    pin: SecretString,
    lib: Mutex<LibState>,
    lib_gen: AtomicU64,
    epoch: AtomicU64,
    pool: Mutex<PoolState>,
    pool_cond: Condvar,
    pub(crate) observer: Arc<dyn HsmObserver>,
    /// Sessions opened outside the pool (one-time keys), for statistics.
    pub(crate) dedicated_open: AtomicU64,
    /// A persistent key a signer used and that the token no longer shows (token files gone):
    /// the health check looks for it until it is back.
    pub(crate) missing_key: Mutex<Option<crate::KeyRef>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data (every update is a single
    // assignment), so poisoning is not a reason to stop serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

const MIN_BACKOFF: Duration = Duration::from_millis(50);

impl Inner {
    /// Loads the module, initialises it, finds the token, logs in and opens the anchor session.
    /// Configuration problems (bad module, unknown token, refused PIN) are reported here, once.
    pub(crate) fn open(
        cfg: HsmConfig,
        observer: Arc<dyn HsmObserver>,
    ) -> Result<Arc<Inner>, HsmError> {
        if cfg.pool_size == 0 {
            return Err(HsmError::Config {
                setting: "hsm.sessions".into(),
                message: "must be at least 1".into(),
            });
        }
        if cfg.token_label.is_empty() {
            return Err(HsmError::Config {
                setting: "hsm.token".into(),
                message: "token label is empty".into(),
            });
        }
        if !cfg.module.is_file() {
            return Err(HsmError::ModuleLoad {
                path: cfg.module.clone(),
                message: "no such file".into(),
            });
        }
        let pin = cfg.pin.read()?;
        let inner = Arc::new(Inner {
            cfg,
            pin,
            lib: Mutex::new(LibState {
                ctx: None,
                slot: None,
                anchor: None,
                anchor_suspect: false,
                pin_refused: None,
                next_attempt: None,
                backoff: MIN_BACKOFF,
                last_error: String::new(),
            }),
            lib_gen: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            pool: Mutex::new(PoolState {
                closing: false,
                idle: Vec::new(),
                open: 0,
                in_use: 0,
                waiters: 0,
            }),
            pool_cond: Condvar::new(),
            observer,
            dedicated_open: AtomicU64::new(0),
            missing_key: Mutex::new(None),
        });
        {
            let mut lib = lock(&inner.lib);
            inner.ensure_ready(&mut lib, true)?;
        }
        Ok(inner)
    }

    fn timed<T>(&self, op: HsmOp, f: impl FnOnce() -> Result<T, CkError>) -> Result<T, CkError> {
        let t0 = Instant::now();
        let r = f();
        let err = r.as_ref().err().map(ck_label);
        self.observer.operation(op, t0.elapsed(), err.as_deref());
        r
    }

    /// Brings the library, slot, anchor session and login into a usable state.
    /// `first` = called from `open`: configuration errors are returned as such, not as "unavailable".
    fn ensure_ready(&self, lib: &mut LibState, first: bool) -> Result<(), HsmError> {
        if let Some(rv) = &lib.pin_refused {
            return Err(HsmError::PinRefused { rv: rv.clone() });
        }
        if let Some(t) = lib.next_attempt.filter(|t| !first && Instant::now() < *t) {
            return Err(HsmError::Unavailable(format!(
                "reconnecting after: {} (next attempt in {:?})",
                lib.last_error,
                t.saturating_duration_since(Instant::now())
            )));
        }
        match self.repair(lib) {
            Ok(()) => {
                lib.next_attempt = None;
                lib.backoff = MIN_BACKOFF;
                Ok(())
            }
            Err(e) => {
                if let HsmError::PinRefused { rv } = &e {
                    lib.pin_refused = Some(rv.clone());
                }
                lib.last_error = e.to_string();
                lib.next_attempt = Some(Instant::now() + lib.backoff);
                lib.backoff = (lib.backoff * 2).min(self.cfg.max_backoff.max(MIN_BACKOFF));
                tracing::warn!(error = %e, "HSM not ready");
                if first || matches!(e, HsmError::PinRefused { .. }) {
                    Err(e)
                } else {
                    Err(HsmError::Unavailable(e.to_string()))
                }
            }
        }
    }

    fn repair(&self, lib: &mut LibState) -> Result<(), HsmError> {
        if lib.ctx.is_none() {
            let ctx = Pkcs11::new(&self.cfg.module).map_err(|e| HsmError::ModuleLoad {
                path: self.cfg.module.clone(),
                message: e.to_string(),
            })?;
            let init = self.timed(HsmOp::Initialize, || {
                ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            });
            match init {
                Ok(()) => {}
                Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
                Err(e) => {
                    return Err(HsmError::ModuleLoad {
                        path: self.cfg.module.clone(),
                        message: format!("C_Initialize: {e}"),
                    });
                }
            }
            lib.ctx = Some(ctx);
            lib.slot = None;
            lib.anchor = None;
            self.lib_gen.fetch_add(1, Ordering::SeqCst);
            self.epoch.fetch_add(1, Ordering::SeqCst);
        }
        let Some(ctx) = lib.ctx.clone() else {
            return Err(HsmError::Unavailable("library not loaded".into()));
        };
        if lib.slot.is_none() {
            lib.slot = Some(find_slot(&ctx, &self.cfg.token_label)?);
            lib.anchor = None;
        }
        let Some(slot) = lib.slot else {
            return Err(HsmError::Unavailable("no slot".into()));
        };
        let anchor_dead = lib.anchor_suspect
            && lib
                .anchor
                .as_ref()
                .is_some_and(|a| a.get_session_info().is_err());
        if anchor_dead {
            // Dead handle: forget it without C_CloseSession.
            if let Some(a) = lib.anchor.take() {
                std::mem::forget(a);
            }
        }
        if lib.anchor.is_none() {
            let anchor = self
                .timed(HsmOp::OpenSession, || ctx.open_ro_session_no_drop(slot))
                .map_err(|e| {
                    HsmError::Unavailable(format!("opening anchor session: {}", ck_label(&e)))
                })?;
            lib.anchor = Some(anchor);
            lib.anchor_suspect = true; // log in below
        }
        if lib.anchor_suspect {
            if let Some(anchor) = &lib.anchor {
                match self.timed(HsmOp::Login, || {
                    anchor.login(UserType::User, Some(&self.pin))
                }) {
                    Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                    Err(CkError::Pkcs11(
                        rv @ (RvError::PinIncorrect
                        | RvError::PinLocked
                        | RvError::PinExpired
                        | RvError::PinInvalid
                        | RvError::PinLenRange),
                        _,
                    )) => return Err(HsmError::PinRefused { rv: rv_name(rv) }),
                    Err(e) => {
                        return Err(HsmError::Unavailable(format!("login: {}", ck_label(&e))));
                    }
                }
            }
            lib.anchor_suspect = false;
        }
        Ok(())
    }

    /// Records damage seen by an operation so that the next checkout repairs it.
    pub(crate) fn note_damage(&self, d: Damage, what: &str) {
        let mut lib = lock(&self.lib);
        tracing::warn!(damage = ?d, error = what, "HSM session lost; will repair");
        lib.last_error = what.to_string();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        match d {
            Damage::Sessions | Damage::Login => lib.anchor_suspect = true,
            Damage::Token => {
                if let Some(a) = lib.anchor.take() {
                    std::mem::forget(a);
                }
                lib.slot = None;
            }
            Damage::Library => {
                if let Some(a) = lib.anchor.take() {
                    std::mem::forget(a);
                }
                lib.slot = None;
                lib.ctx = None;
            }
        }
    }

    /// Opens a new session (not yet counted anywhere).
    pub(crate) fn open_session(&self) -> Result<PooledSession, HsmError> {
        let mut lib = lock(&self.lib);
        self.ensure_ready(&mut lib, false)?;
        let (Some(ctx), Some(slot)) = (lib.ctx.clone(), lib.slot) else {
            return Err(HsmError::Unavailable("library not ready".into()));
        };
        match self.timed(HsmOp::OpenSession, || ctx.open_rw_session_no_drop(slot)) {
            Ok(session) => Ok(PooledSession {
                session,
                lib_gen: self.lib_gen.load(Ordering::SeqCst),
                epoch: self.epoch.load(Ordering::SeqCst),
                keys: HashMap::new(),
                dead: false,
            }),
            Err(e) => {
                let label = ck_label(&e);
                drop(lib);
                if let Some(d) = damage(&e) {
                    self.note_damage(d, &label);
                }
                Err(HsmError::Unavailable(format!("opening session: {label}")))
            }
        }
    }

    /// Whether a session may still be used (same library instance and session epoch).
    pub(crate) fn is_current(&self, s: &PooledSession) -> bool {
        !s.dead
            && s.lib_gen == self.lib_gen.load(Ordering::SeqCst)
            && s.epoch == self.epoch.load(Ordering::SeqCst)
    }

    /// Closes a session that leaves service. Sessions of an older library instance are only
    /// forgotten: their handle numbers may belong to new sessions by now.
    pub(crate) fn close_session(&self, s: PooledSession) {
        let same_lib = s.lib_gen == self.lib_gen.load(Ordering::SeqCst);
        if s.dead || !same_lib {
            std::mem::forget(s.session);
        } else if let Err(e) = s.session.close() {
            tracing::debug!(error = %e, "closing stale session");
        }
    }

    /// Checks out a pooled session, waiting up to the configured timeout.
    pub(crate) fn checkout(self: &Arc<Self>) -> Result<Lease, HsmError> {
        let t0 = Instant::now();
        let deadline = t0 + self.cfg.checkout_timeout;
        let mut pool = lock(&self.pool);
        loop {
            if pool.closing {
                return Err(HsmError::Unavailable(
                    "the HSM connection is closing: esigd is shutting down".into(),
                ));
            }
            while let Some(s) = pool.idle.pop() {
                if self.is_current(&s) {
                    pool.in_use += 1;
                    self.observer.sessions(pool.in_use, pool.idle.len());
                    drop(pool);
                    self.observer.checkout_wait(t0.elapsed());
                    return Ok(Lease {
                        inner: self.clone(),
                        s: Some(s),
                        discard: false,
                    });
                }
                pool.open -= 1;
                self.close_session(s);
            }
            if pool.open < self.cfg.pool_size {
                pool.open += 1;
                pool.in_use += 1;
                drop(pool);
                return match self.open_session() {
                    Ok(s) => {
                        self.observer.checkout_wait(t0.elapsed());
                        Ok(Lease {
                            inner: self.clone(),
                            s: Some(s),
                            discard: false,
                        })
                    }
                    Err(e) => {
                        let mut pool = lock(&self.pool);
                        pool.open -= 1;
                        pool.in_use -= 1;
                        if pool.waiters > 0 {
                            self.pool_cond.notify_one();
                        }
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(HsmError::Busy(self.cfg.checkout_timeout));
            }
            pool.waiters += 1;
            pool = self
                .pool_cond
                .wait_timeout(pool, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            pool.waiters -= 1;
        }
    }

    fn give_back(&self, s: PooledSession, discard: bool) {
        let mut pool = lock(&self.pool);
        pool.in_use -= 1;
        let wake = pool.waiters > 0;
        if discard || !self.is_current(&s) {
            pool.open -= 1;
            self.observer.sessions(pool.in_use, pool.idle.len());
            drop(pool);
            self.close_session(s);
        } else {
            pool.idle.push(s);
            self.observer.sessions(pool.in_use, pool.idle.len());
            drop(pool);
        }
        if wake {
            self.pool_cond.notify_one();
        }
    }

    /// Runs `f` on a pooled session. A failure that shows lost state discards the session,
    /// schedules the repair and retries once on a fresh session when `retry` is set (use it only
    /// for idempotent operations).
    pub(crate) fn run<T>(
        self: &Arc<Self>,
        op: HsmOp,
        retry: bool,
        mut f: impl FnMut(&mut PooledSession) -> Result<T, OpError>,
    ) -> Result<T, HsmError> {
        let attempts = if retry { 2 } else { 1 };
        let mut last = String::new();
        for _ in 0..attempts {
            let mut lease = self.checkout()?;
            let t0 = Instant::now();
            let r = f(lease.session_mut());
            match r {
                Ok(v) => {
                    self.observer.operation(op, t0.elapsed(), None);
                    return Ok(v);
                }
                Err(OpError::Hsm(e)) => return Err(e),
                Err(OpError::Ck(e)) => {
                    let label = ck_label(&e);
                    self.observer.operation(op, t0.elapsed(), Some(&label));
                    match damage(&e) {
                        Some(d) => {
                            lease.mark_dead(d);
                            drop(lease);
                            self.note_damage(d, &label);
                            last = label;
                        }
                        None => {
                            return Err(HsmError::Pkcs11 {
                                op: op.as_str(),
                                rv: label,
                            });
                        }
                    }
                }
            }
        }
        Err(HsmError::Unavailable(format!(
            "{} failed: {last}; the session pool is recovering",
            op.as_str()
        )))
    }

    /// Sessions in the pool: (open, in use), and the dedicated ones.
    pub(crate) fn pool_counts(&self) -> (usize, usize) {
        let p = lock(&self.pool);
        (p.open, p.in_use)
    }

    /// `ulSessionCount` of the token as the module reports it (this application's sessions).
    pub(crate) fn token_session_count(&self) -> Result<Option<u64>, HsmError> {
        let lib = lock(&self.lib);
        let (Some(ctx), Some(slot)) = (lib.ctx.clone(), lib.slot) else {
            return Err(HsmError::Unavailable("library not ready".into()));
        };
        drop(lib);
        let info = ctx
            .get_token_info(slot)
            .map_err(|e| HsmError::Unavailable(format!("C_GetTokenInfo: {}", ck_label(&e))))?;
        Ok(info.session_count())
    }

    /// Closes idle sessions and logs out (used on shutdown).
    pub(crate) fn shutdown(&self) {
        // No new operation; wait (bounded) for those in flight to hand their sessions back.
        let deadline = Instant::now() + SHUTDOWN_DRAIN;
        let mut pool = lock(&self.pool);
        pool.closing = true;
        while pool.in_use > 0 {
            let now = Instant::now();
            if now >= deadline {
                tracing::error!(
                    in_use = pool.in_use,
                    "HSM operations still running at shutdown; closing the sessions anyway"
                );
                break;
            }
            pool.waiters += 1;
            pool = self
                .pool_cond
                .wait_timeout(pool, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            pool.waiters -= 1;
        }
        drop(pool);
        let idle: Vec<PooledSession> = std::mem::take(&mut lock(&self.pool).idle);
        {
            let mut p = lock(&self.pool);
            p.open -= idle.len();
        }
        for s in idle {
            self.close_session(s);
        }
        let mut lib = lock(&self.lib);
        if let Some(a) = lib.anchor.take() {
            let _ = a.logout();
            let _ = a.close();
        }
    }
}

/// A checked-out pooled session; goes back to the pool when dropped.
pub(crate) struct Lease {
    inner: Arc<Inner>,
    s: Option<PooledSession>,
    discard: bool,
}

impl Lease {
    pub(crate) fn session_mut(&mut self) -> &mut PooledSession {
        // `s` is only None after Drop has taken it.
        self.s
            .as_mut()
            .unwrap_or_else(|| unreachable!("lease used after release"))
    }

    fn mark_dead(&mut self, d: Damage) {
        self.discard = true;
        if let Some(s) = self.s.as_mut() {
            // After a session error the handle is invalid; after a lost login or token it may be
            // valid but useless: close it only in the latter case.
            s.dead = matches!(d, Damage::Sessions | Damage::Library);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(s) = self.s.take() {
            self.inner.give_back(s, self.discard);
        }
    }
}

/// Finds the slot whose initialised token carries `label`.
fn find_slot(ctx: &Pkcs11, label: &str) -> Result<Slot, HsmError> {
    let slots = ctx
        .get_slots_with_initialized_token()
        .map_err(|e| HsmError::Unavailable(format!("listing slots: {}", ck_label(&e))))?;
    let mut found = Vec::new();
    for slot in slots {
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        let l = info.label().trim_end().to_string();
        if l == label {
            return Ok(slot);
        }
        found.push(l);
    }
    Err(HsmError::TokenNotFound {
        label: label.to_string(),
        found: if found.is_empty() {
            "none".into()
        } else {
            found.join(", ")
        },
    })
}
