//! Self-healing: sessions closed and the library finalised behind the pool's back.
//!
//! The sabotage happens *during* a multi-threaded signing loop, but never while one of the
//! workers is inside a PKCS#11 call: SoftHSM 2.6 frees a session that C_CloseAllSessions closes
//! even while another thread is inside C_SignInit on it, and crashes (use after free; SoftHSMv2
//! issue #688). Real HSMs answer CKR_SESSION_CLOSED / CKR_SESSION_HANDLE_INVALID instead. So a
//! gate lets the saboteur in between two calls: every pooled and idle session, the anchor and the
//! login are still gone behind the pool's back, which is what the pool must survive.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use esigd_hsm::testing::TestToken;
use esigd_hsm::{Hsm, HsmError, HsmObserver, HsmOp, HsmSigner, KeyKind, KeyRef, SignatureScheme};

/// Records what the pool went through, to prove the sabotage really hit it.
#[derive(Default)]
struct Seen {
    errors: std::sync::Mutex<Vec<String>>,
    initializations: AtomicUsize,
    logins: AtomicUsize,
}

impl HsmObserver for Seen {
    fn operation(&self, op: HsmOp, _elapsed: Duration, error: Option<&str>) {
        if let Some(e) = error {
            self.errors
                .lock()
                .unwrap()
                .push(format!("{}:{e}", op.as_str()));
        } else if op == HsmOp::Initialize {
            self.initializations.fetch_add(1, Ordering::SeqCst);
        } else if op == HsmOp::Login {
            self.logins.fetch_add(1, Ordering::SeqCst);
        }
    }
}
use signature::Signer;

/// Signs from `threads` threads while `sabotage` runs `rounds` times; returns (ok, unavailable).
fn chaos(
    signer: &Arc<HsmSigner>,
    threads: usize,
    rounds: usize,
    sabotage: impl Fn(),
) -> (usize, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let gate = Arc::new(RwLock::new(()));
    let ok = Arc::new(AtomicUsize::new(0));
    let unavailable = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (signer, stop, ok, unavailable, gate) = (
                signer.clone(),
                stop.clone(),
                ok.clone(),
                unavailable.clone(),
                gate.clone(),
            );
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let msg = format!("{t}/{i}");
                    i += 1;
                    let result = {
                        let _in_call = gate.read().unwrap();
                        signer.sign_message(msg.as_bytes())
                    };
                    match result {
                        Ok(sig) => {
                            signer
                                .public_key()
                                .verify(
                                    SignatureScheme::EcdsaSha256,
                                    msg.as_bytes(),
                                    sig.as_bytes(),
                                )
                                .unwrap();
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        // The only acceptable failures while the pool heals.
                        Err(HsmError::Unavailable(_) | HsmError::Busy(_)) => {
                            unavailable.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err(other) => panic!("unexpected error during recovery: {other:?}"),
                    }
                }
            })
        })
        .collect();
    for _ in 0..rounds {
        std::thread::sleep(Duration::from_millis(30));
        let _between_calls = gate.write().unwrap();
        sabotage();
    }
    std::thread::sleep(Duration::from_millis(30));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker panicked");
    }
    (
        ok.load(Ordering::Relaxed),
        unavailable.load(Ordering::Relaxed),
    )
}

/// After the sabotage stops, the pool must sign again by itself within a bounded time.
fn signs_again(signer: &HsmSigner) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match signer.try_sign(b"after the storm") {
            Ok(sig) => {
                signer
                    .public_key()
                    .verify(
                        SignatureScheme::EcdsaSha256,
                        b"after the storm",
                        sig.as_bytes(),
                    )
                    .unwrap();
                return;
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("still recovering: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("pool did not recover: {e}"),
        }
    }
}

/// A pool of `pool_size` sessions on `token` (short back-off) with its observer, and a signer for
/// the new ECDSA P-256 key `k`.
fn observed_pool(token: &TestToken, pool_size: usize) -> (Hsm, Arc<Seen>, Arc<HsmSigner>) {
    let mut cfg = token.config();
    cfg.pool_size = pool_size;
    cfg.max_backoff = Duration::from_millis(200);
    let seen = Arc::new(Seen::default());
    let hsm = Hsm::open_with_observer(cfg, seen.clone()).unwrap();
    hsm.generate_key_pair("k", KeyKind::EcP256).unwrap();
    let signer = Arc::new(hsm.signer(&KeyRef::label("k"), "test.key", None).unwrap());
    (hsm, seen, signer)
}

#[test]
fn recovers_from_close_all_sessions_during_signing() {
    let token = TestToken::create();
    let (hsm, seen, signer) = observed_pool(&token, 4);
    let slot = common::slot_id(&token);
    let (ok, unavailable) = chaos(&signer, 4, 10, || common::close_all_sessions(slot));
    eprintln!("signed {ok}, unavailable {unavailable}");
    assert!(ok > 0);
    signs_again(&signer);
    // The sessions really died under the pool, and it logged in again each time.
    let errors = seen.errors.lock().unwrap().clone();
    assert!(
        errors
            .iter()
            .any(|e| e.ends_with("CKR_SESSION_HANDLE_INVALID")),
        "{errors:?}"
    );
    assert!(
        seen.logins.load(Ordering::SeqCst) >= 10,
        "one login per sabotage round at least"
    );
    // Nothing leaked: pooled sessions + the anchor.
    let stats = hsm.stats();
    assert_eq!(
        common::open_sessions(common::slot_id(&token), 1_000_000),
        stats.open + 1,
        "{stats:?}"
    );
}

#[test]
fn recovers_from_library_finalize() {
    let token = TestToken::create();
    let (_hsm, seen, signer) = observed_pool(&token, 3);
    // C_Finalize from a second handle: the library forgets every session and the login, and
    // every call answers CKR_CRYPTOKI_NOT_INITIALIZED until someone initialises it again.
    let (ok, _) = chaos(&signer, 3, 3, || {
        let _ = common::second_handle().finalize();
    });
    assert!(ok > 0);
    signs_again(&signer);
    let errors = seen.errors.lock().unwrap().clone();
    assert!(
        errors
            .iter()
            .any(|e| e.ends_with("CKR_CRYPTOKI_NOT_INITIALIZED")),
        "{errors:?}"
    );
    assert!(
        seen.initializations.load(Ordering::SeqCst) >= 4,
        "initialised again after each finalize"
    );
}

#[test]
fn unavailable_while_token_is_gone_then_back() {
    // Closing sessions between calls (no concurrent load): the next call must still succeed,
    // because the first failure is retried once on a fresh session after re-login.
    let token = TestToken::create();
    let hsm = Hsm::open(token.config()).unwrap();
    hsm.generate_key_pair("k", KeyKind::EcP256).unwrap();
    let signer = hsm.signer(&KeyRef::label("k"), "test.key", None).unwrap();
    signer.try_sign(b"warm").unwrap();
    let slot = common::slot_id(&token);
    for _ in 0..5 {
        common::close_all_sessions(slot);
        signs_again(&signer);
    }
}
