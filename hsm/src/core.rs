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
//!
//! A lost *token* needs more: SoftHSM 2.6 keeps a token whose files disappeared (directory moved
//! away or unreadable, token deleted) invalid until the library is re-initialised, even after the
//! files are back, and it reads its token directory only at `C_Initialize`. When the token looks
//! lost (`C_GetTokenInfo` fails on its slot, the slot is gone, sessions or the login fail with a
//! token error) a background thread re-initialises the library, at most once per
//! [`REINIT_INTERVAL`], until the token is found again: it quiesces (new calls fail fast with
//! `Unavailable`, calls in flight are waited for, bounded), calls `C_Finalize` and `C_Initialize`,
//! finds the slot again by label, logs in, and bumps the library generation so that every session
//! (pooled or one-time) and every object handle cached on one is dropped and found again.
//! No thread may be inside the module during `C_Finalize` (SoftHSM frees state other threads
//! use: SoftHSMv2 issue #688), so every PKCS#11 call of this crate holds a read guard of one
//! process-wide gate and the re-initialisation holds the write guard. `C_Finalize` acts on the
//! whole process: every PKCS#11 user in the process must go through [`crate::Hsm`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, TryLockError, Weak};
use std::thread::JoinHandle;
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

/// PKCS#11 return values that say the token itself (not one session) is in trouble: removed,
/// unreadable (SoftHSM answers `CKR_GENERAL_ERROR` for a token whose files are gone), or its slot
/// no longer exists.
fn token_trouble(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::GeneralError
                | RvError::SlotIdInvalid,
            _
        )
    )
}

/// Every PKCS#11 call made through [`Inner`] holds a read guard; re-initialising the library takes
/// the write guard. Process-wide because `C_Finalize` is.
static GATE: RwLock<()> = RwLock::new(());
/// Set while a re-initialisation waits for the calls in flight: new calls fail fast meanwhile.
static QUIESCING: AtomicBool = AtomicBool::new(false);
/// Bumped each time the module is (re)initialised in this process. Sessions of an older
/// generation are dead, and their handle numbers may belong to new sessions: never use them.
static LIB_GEN: AtomicU64 = AtomicU64::new(0);

/// At most one library re-initialisation per interval while the token stays lost.
pub(crate) const REINIT_INTERVAL: Duration = Duration::from_secs(1);
/// How long a re-initialisation waits for the PKCS#11 calls in flight before giving up (it tries
/// again one interval later; the library is never finalised under a running call).
const REINIT_DRAIN: Duration = Duration::from_secs(5);

/// Proof that the caller may call into the PKCS#11 module: no re-initialisation runs until it is
/// dropped. Cheap (an uncontended read lock); may be nested.
pub(crate) struct CallGuard {
    _g: RwLockReadGuard<'static, ()>,
}

fn reinitialising() -> HsmError {
    HsmError::Unavailable("the PKCS#11 library is being re-initialised".into())
}

/// Enters the gate, or fails at once while a re-initialisation is pending or running.
pub(crate) fn enter() -> Result<CallGuard, HsmError> {
    if QUIESCING.load(Ordering::SeqCst) {
        return Err(reinitialising());
    }
    match GATE.try_read() {
        Ok(g) => Ok(CallGuard { _g: g }),
        // The guarded value is `()`: a panic elsewhere cannot leave it inconsistent.
        Err(TryLockError::Poisoned(p)) => Ok(CallGuard { _g: p.into_inner() }),
        Err(TryLockError::WouldBlock) => Err(reinitialising()),
    }
}

/// Enters the gate, waiting up to `wait` for a re-initialisation to finish (for clean-up calls
/// that should not be skipped, e.g. destroying a one-time key).
pub(crate) fn enter_within(wait: Duration) -> Result<CallGuard, HsmError> {
    let deadline = Instant::now() + wait;
    loop {
        match enter() {
            Ok(g) => return Ok(g),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Whether a re-initialisation is quiescing or running right now.
pub(crate) fn reinit_running() -> bool {
    QUIESCING.load(Ordering::SeqCst)
}

/// The current library generation (see [`LIB_GEN`]).
pub(crate) fn lib_generation() -> u64 {
    LIB_GEN.load(Ordering::SeqCst)
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
    /// Library generation the anchor (and so the login) belongs to.
    anchor_gen: u64,
    /// The last repair failed with a token error (see `token_trouble`).
    trouble: bool,
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

/// The token-loss state the re-initialisation thread works on.
#[derive(Default)]
struct HealState {
    /// Why the token is considered lost (None: it is not).
    lost: Option<String>,
    /// When the token was first found lost in this outage.
    since: Option<Instant>,
    /// Re-initialisations tried in this outage.
    attempts: u32,
    last_attempt: Option<Instant>,
    /// The result of the last attempt, for error messages.
    last_error: String,
    stop: bool,
}

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
    epoch: AtomicU64,
    /// The token is lost: calls fail fast until the library has been re-initialised.
    token_lost: AtomicBool,
    heal: Mutex<HealState>,
    heal_cond: Condvar,
    healer: Mutex<Option<JoinHandle<()>>>,
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
                anchor_gen: 0,
                trouble: false,
                anchor_suspect: false,
                pin_refused: None,
                next_attempt: None,
                backoff: MIN_BACKOFF,
                last_error: String::new(),
            }),
            epoch: AtomicU64::new(0),
            token_lost: AtomicBool::new(false),
            heal: Mutex::new(HealState::default()),
            heal_cond: Condvar::new(),
            healer: Mutex::new(None),
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
            // Another `Hsm` of this process may be re-initialising the library.
            let _call = enter_within(REINIT_DRAIN)?;
            let mut lib = lock(&inner.lib);
            inner.ensure_ready(&mut lib, true)?;
        }
        let weak = Arc::downgrade(&inner);
        let healer = std::thread::Builder::new()
            .name("esigd-hsm-heal".into())
            .spawn(move || heal_loop(weak))
            .map_err(|e| {
                HsmError::Unavailable(format!("cannot start the HSM recovery thread: {e}"))
            })?;
        *lock(&inner.healer) = Some(healer);
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
        if !first && self.token_lost.load(Ordering::SeqCst) {
            return Err(self.lost_error());
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
                // The token was there before and is not now: only a re-initialisation of the
                // library brings it back (SoftHSM rescans its token directory only then).
                if !first && (lib.trouble || matches!(e, HsmError::TokenNotFound { .. })) {
                    self.mark_token_lost(&e.to_string());
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
        lib.trouble = false;
        if lib.ctx.is_none() {
            let ctx = Pkcs11::new(&self.cfg.module).map_err(|e| HsmError::ModuleLoad {
                path: self.cfg.module.clone(),
                message: e.to_string(),
            })?;
            let init = self.timed(HsmOp::Initialize, || {
                ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            });
            match init {
                // A new library instance: every session of the process is gone.
                Ok(()) => {
                    LIB_GEN.fetch_add(1, Ordering::SeqCst);
                }
                // Another `Hsm` of this process initialised it (or nobody finalised it).
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
            self.epoch.fetch_add(1, Ordering::SeqCst);
        }
        if lib.anchor_gen != lib_generation() {
            // The library was (re-)initialised since the anchor was opened (e.g. by another `Hsm`
            // of this process): the anchor and the login died with it, and the slot may have a
            // new number.
            if let Some(a) = lib.anchor.take() {
                std::mem::forget(a);
                self.epoch.fetch_add(1, Ordering::SeqCst);
            }
            lib.slot = None;
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
            let anchor = match self.timed(HsmOp::OpenSession, || ctx.open_ro_session_no_drop(slot))
            {
                Ok(a) => a,
                Err(e) => {
                    lib.trouble = token_trouble(&e);
                    return Err(HsmError::Unavailable(format!(
                        "opening anchor session: {}",
                        ck_label(&e)
                    )));
                }
            };
            lib.anchor = Some(anchor);
            lib.anchor_gen = lib_generation();
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
                        lib.trouble = token_trouble(&e);
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

    /// The error callers get while the token is lost.
    pub(crate) fn lost_error(&self) -> HsmError {
        let h = lock(&self.heal);
        let why = h.lost.as_deref().unwrap_or("token lost");
        let next = h.last_attempt.map_or(Duration::ZERO, |t| {
            (t + REINIT_INTERVAL).saturating_duration_since(Instant::now())
        });
        let last = if h.last_error.is_empty() {
            String::new()
        } else {
            format!("; last attempt: {}", h.last_error)
        };
        HsmError::Unavailable(format!(
            "token {:?} lost ({why}); re-initialising the PKCS#11 library until it is back \
             (attempt {}, next in {next:?}{last})",
            self.cfg.token_label,
            h.attempts + 1,
        ))
    }

    /// Records that the token is lost: calls fail fast and the recovery thread re-initialises the
    /// library until the token is back.
    pub(crate) fn mark_token_lost(&self, why: &str) {
        let mut h = lock(&self.heal);
        if h.lost.is_none() {
            tracing::warn!(
                token = %self.cfg.token_label,
                reason = why,
                "HSM token lost; the PKCS#11 library will be re-initialised until it is back"
            );
            h.lost = Some(why.to_string());
            h.since = Some(Instant::now());
            h.attempts = 0;
            h.last_error.clear();
        }
        self.token_lost.store(true, Ordering::SeqCst);
        drop(h);
        self.heal_cond.notify_all();
        // Callers waiting for a pooled session give up now.
        let _pool = lock(&self.pool);
        self.pool_cond.notify_all();
    }

    /// Asks the module about the token (`C_GetTokenInfo` on its slot): an error there means the
    /// token is lost, and the library is re-initialised. `Unavailable` then.
    pub(crate) fn probe_token(&self, _call: &CallGuard) -> Result<(), HsmError> {
        if self.token_lost.load(Ordering::SeqCst) {
            return Err(self.lost_error());
        }
        let lib = lock(&self.lib);
        let (Some(ctx), Some(slot)) = (lib.ctx.clone(), lib.slot) else {
            // Being repaired; the repair reports its own errors.
            return Ok(());
        };
        drop(lib);
        match ctx.get_token_info(slot) {
            Ok(_) => Ok(()),
            Err(e) => {
                let label = ck_label(&e);
                if damage(&e) == Some(Damage::Library) {
                    self.note_damage(Damage::Library, &label);
                    return Err(HsmError::Unavailable(format!(
                        "C_GetTokenInfo: {label}; the library is re-initialised"
                    )));
                }
                self.mark_token_lost(&format!(
                    "C_GetTokenInfo: {label} (token removed or unreadable?)"
                ));
                Err(self.lost_error())
            }
        }
    }

    /// [`Inner::probe_token`] for callers that do not hold a [`CallGuard`] yet.
    pub(crate) fn check_token(&self) -> Result<(), HsmError> {
        self.probe_token(&enter()?)
    }

    /// One re-initialisation: quiesce, `C_Finalize`, `C_Initialize`, find the slot by label, log
    /// in. Every session of the process is invalid afterwards (new library generation).
    fn reinit(&self) -> Result<(), HsmError> {
        if let Some(rv) = &lock(&self.lib).pin_refused {
            // Logging in again would only try the refused PIN once more.
            return Err(HsmError::PinRefused { rv: rv.clone() });
        }
        QUIESCING.store(true, Ordering::SeqCst);
        {
            let _pool = lock(&self.pool);
            self.pool_cond.notify_all();
        }
        let deadline = Instant::now() + REINIT_DRAIN;
        let gate = loop {
            match GATE.try_write() {
                Ok(g) => break g,
                Err(TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(TryLockError::WouldBlock) => {
                    QUIESCING.store(false, Ordering::SeqCst);
                    return Err(HsmError::Unavailable(format!(
                        "PKCS#11 calls still running after {REINIT_DRAIN:?}; \
                         the library was not re-initialised"
                    )));
                }
            }
        };
        let mut lib = lock(&self.lib);
        // The anchor dies with C_Finalize: forget it without C_CloseSession.
        if let Some(a) = lib.anchor.take() {
            std::mem::forget(a);
        }
        lib.slot = None;
        if let Some(ctx) = lib.ctx.take() {
            match ctx.finalize() {
                Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiNotInitialized, _)) => {}
                Err(e) => tracing::warn!(error = %e, "C_Finalize failed; initialising anyway"),
            }
        }
        // Whatever happens next, every session opened so far is dead.
        LIB_GEN.fetch_add(1, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let r = self.repair(&mut lib);
        if r.is_ok() {
            lib.next_attempt = None;
            lib.backoff = MIN_BACKOFF;
            lib.last_error.clear();
        } else if let Err(HsmError::PinRefused { rv }) = &r {
            lib.pin_refused = Some(rv.clone());
        }
        drop(lib);
        drop(gate);
        QUIESCING.store(false, Ordering::SeqCst);
        r
    }

    /// Stops the recovery thread (shutdown) and waits for it.
    fn stop_healer(&self) {
        lock(&self.heal).stop = true;
        self.heal_cond.notify_all();
        if let Some(t) = lock(&self.healer).take()
            && t.thread().id() != std::thread::current().id()
        {
            let _ = t.join();
        }
    }

    /// Opens a new session (not yet counted anywhere).
    pub(crate) fn open_session(&self, _call: &CallGuard) -> Result<PooledSession, HsmError> {
        let mut lib = lock(&self.lib);
        self.ensure_ready(&mut lib, false)?;
        let (Some(ctx), Some(slot)) = (lib.ctx.clone(), lib.slot) else {
            return Err(HsmError::Unavailable("library not ready".into()));
        };
        match self.timed(HsmOp::OpenSession, || ctx.open_rw_session_no_drop(slot)) {
            Ok(session) => Ok(PooledSession {
                session,
                lib_gen: lib_generation(),
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
                if token_trouble(&e) {
                    self.mark_token_lost(&format!("opening a session: {label}"));
                }
                Err(HsmError::Unavailable(format!("opening session: {label}")))
            }
        }
    }

    /// Whether the token is lost (calls fail fast until the library is re-initialised).
    pub(crate) fn is_token_lost(&self) -> bool {
        self.token_lost.load(Ordering::SeqCst)
    }

    /// Whether a session belongs to the current library instance (its handle is still its own).
    pub(crate) fn same_library(&self, s: &PooledSession) -> bool {
        !s.dead && s.lib_gen == lib_generation()
    }

    /// Whether a session may still be used (same library instance and session epoch).
    pub(crate) fn is_current(&self, s: &PooledSession) -> bool {
        !s.dead && s.lib_gen == lib_generation() && s.epoch == self.epoch.load(Ordering::SeqCst)
    }

    /// Closes a session that leaves service. Sessions of an older library instance are only
    /// forgotten: their handle numbers may belong to new sessions by now. While the library is
    /// being re-initialised the session is forgotten too (`C_Finalize` ends it).
    pub(crate) fn close_session(&self, s: PooledSession) {
        let Ok(_call) = enter() else {
            std::mem::forget(s.session);
            return;
        };
        let same_lib = s.lib_gen == lib_generation();
        if s.dead || !same_lib {
            std::mem::forget(s.session);
        } else if let Err(e) = s.session.close() {
            tracing::debug!(error = %e, "closing stale session");
        }
    }

    /// Checks out a pooled session, waiting up to the configured timeout.
    pub(crate) fn checkout(self: &Arc<Self>, call: &CallGuard) -> Result<Lease, HsmError> {
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
                return match self.open_session(call) {
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
            // A re-initialisation waits for this call to leave: do not make it wait.
            if QUIESCING.load(Ordering::SeqCst) {
                return Err(reinitialising());
            }
            if self.token_lost.load(Ordering::SeqCst) {
                return Err(self.lost_error());
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
            // Declared before the lease: the session goes back to the pool inside the gate.
            let call = enter()?;
            if self.token_lost.load(Ordering::SeqCst) {
                return Err(self.lost_error());
            }
            let mut lease = self.checkout(&call)?;
            let t0 = Instant::now();
            let r = f(lease.session_mut());
            match r {
                Ok(v) => {
                    self.observer.operation(op, t0.elapsed(), None);
                    return Ok(v);
                }
                Err(OpError::Hsm(e @ HsmError::KeyNotFound { .. })) => {
                    // A key that is not there on a token that does not answer: the token is
                    // lost (its files gone), not misconfigured.
                    drop(lease);
                    self.probe_token(&call)?;
                    return Err(e);
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
        let _call = enter()?;
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
        // No re-initialisation from now on (it would finalise the library under the clean-up).
        self.stop_healer();
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
        let Ok(_call) = enter_within(REINIT_DRAIN) else {
            return;
        };
        let mut lib = lock(&self.lib);
        if let Some(a) = lib.anchor.take() {
            if lib.anchor_gen == lib_generation() {
                let _ = a.logout();
                let _ = a.close();
            } else {
                std::mem::forget(a);
            }
        }
    }
}

/// The recovery thread: re-initialises the library while the token is lost, at most once per
/// [`REINIT_INTERVAL`]. Holds only a weak reference, so it ends when the `Hsm` is dropped.
fn heal_loop(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        {
            let mut h = lock(&inner.heal);
            if h.stop {
                return;
            }
            let wait = match (&h.lost, h.last_attempt) {
                (None, _) => Some(REINIT_INTERVAL),
                (Some(_), Some(t)) if t.elapsed() < REINIT_INTERVAL => {
                    Some(REINIT_INTERVAL.saturating_sub(t.elapsed()))
                }
                (Some(_), _) => None,
            };
            if let Some(wait) = wait {
                // Wake up on a new loss, on stop, or to try again (the Arc is released after the
                // wait so that a dropped `Hsm` ends the thread).
                drop(
                    inner
                        .heal_cond
                        .wait_timeout(h, wait)
                        .unwrap_or_else(|p| p.into_inner()),
                );
                continue;
            }
            h.last_attempt = Some(Instant::now());
            h.attempts += 1;
        }
        if lock(&inner.pool).closing {
            return;
        }
        let t0 = Instant::now();
        let r = inner.reinit();
        let mut h = lock(&inner.heal);
        match r {
            Ok(()) => {
                let outage = h.since.map(|t| t.elapsed()).unwrap_or_default();
                tracing::info!(
                    token = %inner.cfg.token_label,
                    attempts = h.attempts,
                    outage_ms = outage.as_millis() as u64,
                    reinit_ms = t0.elapsed().as_millis() as u64,
                    "HSM token back: PKCS#11 library re-initialised, logged in again"
                );
                h.lost = None;
                h.since = None;
                h.attempts = 0;
                h.last_error.clear();
                inner.token_lost.store(false, Ordering::SeqCst);
            }
            Err(e) => {
                if h.attempts == 1 || h.attempts.is_multiple_of(60) {
                    tracing::warn!(
                        token = %inner.cfg.token_label,
                        attempts = h.attempts,
                        error = %e,
                        "HSM token still lost after re-initialising the PKCS#11 library; retrying"
                    );
                } else {
                    tracing::debug!(attempts = h.attempts, error = %e, "HSM token still lost");
                }
                h.last_error = e.to_string();
                if matches!(e, HsmError::PinRefused { .. }) {
                    // Never retried (a retry loop would lock the token): calls report it.
                    h.lost = None;
                    inner.token_lost.store(false, Ordering::SeqCst);
                }
            }
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
