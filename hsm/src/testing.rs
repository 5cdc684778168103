//! Throw-away SoftHSM2 tokens for tests and benchmarks (feature `test-support`).
//!
//! The process must already have `SOFTHSM2_CONF` pointing at a private token directory: the cargo
//! target runner `scripts/test-runner` sets it before the test binary starts (SoftHSM reads it at
//! `C_Initialize`, and changing the environment of a running multi-threaded test is unsound).
//! Each [`TestToken`] is a new token with a unique label in that directory, so tests in one
//! process run in parallel without sharing state.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::{HsmConfig, PinSource, SOFTHSM_MODULE};

/// A freshly initialised SoftHSM2 token with a known user PIN (in a file, as in production).
#[derive(Debug)]
pub struct TestToken {
    /// The token label (unique per process).
    pub label: String,
    /// The user PIN.
    pub pin: String,
    /// The security-officer PIN.
    pub so_pin: String,
    /// A file holding the user PIN.
    pub pin_file: PathBuf,
    dir: tempfile::TempDir,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The SoftHSM2 module path (`ESIGD_SOFTHSM_MODULE` overrides the Debian default).
pub fn softhsm_module() -> PathBuf {
    std::env::var_os("ESIGD_SOFTHSM_MODULE")
        .map_or_else(|| PathBuf::from(SOFTHSM_MODULE), PathBuf::from)
}

static INIT_LOCK: Mutex<()> = Mutex::new(());

/// Initialises a token on SoftHSM's free slot from inside this process. A token made by
/// `softhsm2-util` in another process would stay invisible here: SoftHSM reads its token
/// directory only at `C_Initialize`. After each `C_InitToken`, SoftHSM offers a new free slot.
fn init_token_in_process(label: &str, so_pin: &str, pin: &str) {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;

    let _guard = INIT_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let ctx =
        Pkcs11::new(softhsm_module()).expect("load SoftHSM module (apt-get install softhsm2)");
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = ctx
        .get_all_slots()
        .expect("C_GetSlotList")
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .map(|i| !i.token_initialized())
                .unwrap_or(false)
        })
        .expect("SoftHSM offers no free slot");
    ctx.init_token(slot, &AuthPin::from(so_pin.to_string()), label)
        .expect("C_InitToken");
    let session = ctx.open_rw_session(slot).expect("C_OpenSession");
    session
        .login(UserType::So, Some(&AuthPin::from(so_pin.to_string())))
        .expect("SO login");
    session
        .init_pin(&AuthPin::from(pin.to_string()))
        .expect("C_InitPIN");
    let _ = session.logout();
}

impl TestToken {
    /// Creates a new token. Panics with instructions when the harness did not set up SoftHSM.
    pub fn create() -> TestToken {
        let conf = std::env::var_os("SOFTHSM2_CONF").unwrap_or_else(|| {
            panic!("SOFTHSM2_CONF is not set: run tests through cargo (scripts/test-runner is the target runner)")
        });
        assert!(
            std::path::Path::new(&conf).is_file(),
            "SOFTHSM2_CONF={conf:?} does not exist (scripts/test-runner creates it)"
        );
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let label = format!("t{}-{n}", std::process::id());
        let pin = format!("{:06}", 100_000 + n);
        let so_pin = "so-secret-1".to_string();
        init_token_in_process(&label, &so_pin, &pin);
        let dir = tempfile::tempdir().expect("temp dir");
        let pin_file = dir.path().join("pin");
        std::fs::write(&pin_file, format!("{pin}\n")).expect("write PIN file");
        // Group and others may not read a PIN file (PinSource refuses it).
        std::fs::set_permissions(
            &pin_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod 600 the PIN file");
        TestToken {
            label,
            pin,
            so_pin,
            pin_file,
            dir,
        }
    }

    /// An [`HsmConfig`] for this token with the PIN read from [`TestToken::pin_file`].
    pub fn config(&self) -> HsmConfig {
        HsmConfig::new(
            softhsm_module(),
            self.label.clone(),
            PinSource::File(self.pin_file.clone()),
        )
    }

    /// A scratch directory that lives as long as the token.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// Counts the session (non-token) private keys visible to this process: the one-time keys that
/// exist right now. Used to show that one-time keys do not accumulate.
pub fn session_private_keys(hsm: &crate::Hsm) -> Result<usize, crate::HsmError> {
    use cryptoki::object::{Attribute, ObjectClass};
    hsm.inner.run(crate::HsmOp::FindKey, true, |s| {
        Ok(s.session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Token(false),
            ])?
            .len())
    })
}

/// Baselines for benchmarks: the same work as the pool does, with bare cryptoki calls and no
/// pooling, so the pool's overhead can be measured as a ratio in the same run.
pub mod raw {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::{Attribute, ObjectClass};
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;

    use super::{TestToken, softhsm_module};
    use crate::mech::KeyKind;

    fn context() -> Pkcs11 {
        let ctx = Pkcs11::new(softhsm_module()).expect("load module");
        let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
        ctx
    }

    fn slot(ctx: &Pkcs11, label: &str) -> cryptoki::slot::Slot {
        ctx.get_slots_with_initialized_token()
            .expect("slots")
            .into_iter()
            .find(|s| {
                ctx.get_token_info(*s)
                    .map(|i| i.label().trim_end() == label)
                    .unwrap_or(false)
            })
            .expect("token")
    }

    /// Runs `threads` threads, each with its own session, for `dur`; returns operations/second.
    fn run_threads(
        token: &TestToken,
        threads: usize,
        dur: Duration,
        work: impl Fn(&cryptoki::session::Session) + Send + Sync + 'static,
    ) -> f64 {
        let ctx = context();
        let slot = slot(&ctx, &token.label);
        let anchor = ctx.open_ro_session(slot).expect("session");
        let _ = anchor.login(UserType::User, Some(&AuthPin::from(token.pin.clone())));
        let work = Arc::new(work);
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (ctx, work, stop, count) =
                    (ctx.clone(), work.clone(), stop.clone(), count.clone());
                std::thread::spawn(move || {
                    let session = ctx.open_rw_session(slot).expect("session");
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        work(&session);
                        n += 1;
                    }
                    count.fetch_add(n, Ordering::Relaxed);
                })
            })
            .collect();
        let t0 = Instant::now();
        std::thread::sleep(dur);
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().expect("worker");
        }
        count.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64()
    }

    /// Bare `C_Sign` (CKM_ECDSA over a 32-byte digest) with the token key labelled `label`.
    pub fn sign_loop(token: &TestToken, label: &str, threads: usize, dur: Duration) -> f64 {
        let label = label.to_string();
        run_threads(token, threads, dur, move |s| {
            thread_local! { static KEY: std::cell::Cell<Option<cryptoki::object::ObjectHandle>> = const { std::cell::Cell::new(None) }; }
            let key = KEY.with(|k| {
                k.get().unwrap_or_else(|| {
                    let h = s
                        .find_objects(&[
                            Attribute::Class(ObjectClass::PRIVATE_KEY),
                            Attribute::Label(label.as_bytes().to_vec()),
                        ])
                        .expect("find")[0];
                    k.set(Some(h));
                    h
                })
            });
            s.sign(&Mechanism::Ecdsa, key, &[0x5a; 32]).expect("sign");
        })
    }

    /// Bare one-time sequence: generate a session EC P-256 key pair, read its point, sign
    /// `signs` digests, destroy both objects.
    pub fn keygen_sign_destroy_loop(
        token: &TestToken,
        signs: usize,
        threads: usize,
        dur: Duration,
    ) -> f64 {
        let params = KeyKind::EcP256.ec_params().expect("params");
        run_threads(token, threads, dur, move |s| {
            let public = [
                Attribute::Token(false),
                Attribute::Verify(true),
                Attribute::EcParams(params.clone()),
            ];
            let private = [
                Attribute::Token(false),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
            ];
            let (pubh, privh) = s
                .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
                .expect("keygen");
            let _ = s
                .get_attributes(pubh, &[cryptoki::object::AttributeType::EcPoint])
                .expect("point");
            for _ in 0..signs {
                s.sign(&Mechanism::Ecdsa, privh, &[0x5a; 32]).expect("sign");
            }
            s.destroy_object(privh).expect("destroy");
            s.destroy_object(pubh).expect("destroy");
        })
    }
}
