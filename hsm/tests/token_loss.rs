//! A lost token comes back without a new `Hsm` (issue #16, "Faults: HSM").
//!
//! SoftHSM 2.6 keeps a token whose files disappeared invalid until the library is re-initialised,
//! even once the files are back. The pool must notice (operations and the health check fail fast
//! with `Unavailable`), re-initialise the library in the background (quiescing the calls in
//! flight: a signing thread keeps calling throughout, and the one-time key set keeps refilling)
//! and serve again, with the same `Hsm`, signer and one-time key set, within a few seconds of the
//! token's return. Two ways to lose the token:
//!
//! * its directory moved out of SoftHSM's token directory and back (what an unreadable directory
//!   is to SoftHSM; the tests run as root, where `chmod 000` stops nothing);
//! * `softhsm2-util --delete-token` (another process), then its files restored from a copy.
//!
//! Copies and moved directories stay outside the token directory: SoftHSM aborts the process at
//! `C_Initialize` when two token directories carry the same token.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use esigd_hsm::testing::TestToken;
use esigd_hsm::{
    Hsm, HsmError, HsmObserver, HsmOp, HsmSigner, KeyKind, KeyRef, OneTimeConfig, OneTimeKeys,
    SignatureScheme,
};

/// Counts `C_Initialize` calls and records errors.
#[derive(Default)]
struct Seen {
    initializations: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

impl HsmObserver for Seen {
    fn operation(&self, op: HsmOp, _elapsed: Duration, error: Option<&str>) {
        match error {
            Some(e) => self
                .errors
                .lock()
                .unwrap()
                .push(format!("{}:{e}", op.as_str())),
            None if op == HsmOp::Initialize => {
                self.initializations.fetch_add(1, Ordering::SeqCst);
            }
            None => {}
        }
    }
}

/// The directory holding `token` (its `token.object` carries the label).
fn token_dir(token: &TestToken) -> PathBuf {
    let tokens = softhsm_dir().join("tokens");
    for e in std::fs::read_dir(&tokens).unwrap() {
        let p = e.unwrap().path();
        let obj = std::fs::read(p.join("token.object")).unwrap_or_default();
        if obj
            .windows(token.label.len())
            .any(|w| w == token.label.as_bytes())
        {
            return p;
        }
    }
    panic!(
        "no directory for token {} in {}",
        token.label,
        tokens.display()
    );
}

/// The SoftHSM directory of this test process (scripts/test-runner).
fn softhsm_dir() -> PathBuf {
    PathBuf::from(
        std::env::var_os("ESIGD_TEST_SOFTHSM_DIR")
            .expect("ESIGD_TEST_SOFTHSM_DIR is not set: run tests through cargo"),
    )
}

fn sh(cmd: &mut Command) {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Everything the tests use on one token, all made once before the fault.
struct Rig {
    token: TestToken,
    hsm: Hsm,
    seen: Arc<Seen>,
    signer: Arc<HsmSigner>,
    onetime: OneTimeKeys,
}

fn rig() -> Rig {
    let token = TestToken::create();
    let mut cfg = token.config();
    cfg.pool_size = 3;
    cfg.max_backoff = Duration::from_millis(200);
    cfg.checkout_timeout = Duration::from_secs(2);
    let seen = Arc::new(Seen::default());
    let hsm = Hsm::open_with_observer(cfg, seen.clone()).unwrap();
    hsm.generate_key_pair("k", KeyKind::EcP256).unwrap();
    hsm.write_data("high-water", b"42").unwrap();
    let signer = Arc::new(hsm.signer(&KeyRef::label("k"), "test.key", None).unwrap());
    let onetime = OneTimeKeys::start(
        &hsm,
        OneTimeConfig {
            ready: 2,
            kind: KeyKind::EcP256,
            max_signatures: 3,
            // Long: taking a key must still fail fast while the token is lost.
            take_timeout: Duration::from_secs(5),
            refill_threads: 1,
        },
    )
    .unwrap();
    assert_eq!(onetime.wait_ready(2, Duration::from_secs(10)), 2);
    Rig {
        token,
        hsm,
        seen,
        signer,
        onetime,
    }
}

/// One persistent-key signature, verified.
fn sign(signer: &HsmSigner, msg: &[u8]) -> Result<(), HsmError> {
    let sig = signer.sign_message(msg)?;
    signer
        .public_key()
        .verify(SignatureScheme::EcdsaSha256, msg, sig.as_bytes())
        .unwrap();
    Ok(())
}

/// One one-time signature (take, sign, verify, destroy).
fn sign_once(keys: &OneTimeKeys) -> Result<(), HsmError> {
    let key = keys.take()?;
    let sig = key.sign_message(b"one-time")?;
    key.public_key()?
        .verify(SignatureScheme::EcdsaSha256, b"one-time", sig.as_bytes())
        .unwrap();
    key.destroy()?;
    Ok(())
}

/// The errors allowed while the token is gone: fast `Unavailable` (or `Busy` from the one-time
/// set while it has no key).
fn assert_fast_unavailable(what: &str, r: Result<(), HsmError>, took: Duration) {
    match r {
        Err(HsmError::Unavailable(_) | HsmError::Busy(_)) => {}
        other => panic!("{what} while the token is gone: {other:?} (want Unavailable)"),
    }
    assert!(
        took < Duration::from_secs(1),
        "{what} took {took:?} while the token is gone (must fail fast)"
    );
}

/// Signs from a thread until stopped: the re-initialisation must quiesce it (SoftHSM crashes
/// when C_Finalize runs while another thread is inside the module). Returns (ok, unavailable).
fn background_signer(
    signer: Arc<HsmSigner>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, usize)> {
    std::thread::spawn(move || {
        let (mut ok, mut unavailable) = (0, 0);
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            match sign(&signer, format!("load {i}").as_bytes()) {
                Ok(()) => ok += 1,
                Err(HsmError::Unavailable(_) | HsmError::Busy(_)) => {
                    unavailable += 1;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("background signing: unexpected {e:?}"),
            }
        }
        (ok, unavailable)
    })
}

/// Applies `fault`, checks the outage, applies `repair`, and checks that everything works again
/// on the same objects. Returns the time from repair to the first persistent-key signature.
fn lose_and_recover(name: &str, rig: &Rig, fault: impl FnOnce(), repair: impl FnOnce()) {
    sign(&rig.signer, b"before").unwrap();
    sign_once(&rig.onetime).unwrap();
    rig.hsm.health_check().unwrap();
    let high_water = rig.hsm.read_data("high-water").unwrap().unwrap();
    let inits_before = rig.seen.initializations.load(Ordering::SeqCst);

    let stop = Arc::new(AtomicBool::new(false));
    let load = background_signer(rig.signer.clone(), stop.clone());

    fault();
    let t_fault = Instant::now();
    // The outage shows within a few operations.
    loop {
        let t = Instant::now();
        match sign(&rig.signer, b"during") {
            Ok(()) => {
                assert!(
                    t_fault.elapsed() < Duration::from_secs(5),
                    "{name}: still signing 5 s after the fault"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            r => {
                assert_fast_unavailable("signing", r, t.elapsed());
                break;
            }
        }
    }
    let detected = t_fault.elapsed();
    // While it lasts (long enough for several re-initialisation attempts), everything fails
    // fast and says why.
    while t_fault.elapsed() < Duration::from_millis(2500) {
        let t = Instant::now();
        assert_fast_unavailable("signing", sign(&rig.signer, b"during"), t.elapsed());
        let t = Instant::now();
        assert_fast_unavailable("one-time signing", sign_once(&rig.onetime), t.elapsed());
        let t = Instant::now();
        assert_fast_unavailable(
            "reading a data object",
            rig.hsm.read_data("high-water").map(|_| ()),
            t.elapsed(),
        );
        let t = Instant::now();
        let health = rig.hsm.health_check();
        assert_fast_unavailable("the health check", health, t.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    let health = rig.hsm.health_check().unwrap_err().to_string();
    assert!(
        health.contains("lost") || health.contains("re-initialised"),
        "{name}: health check says {health}"
    );

    repair();
    let t_back = Instant::now();
    // Same Hsm, signer and one-time key set: no new pool object.
    let first_sign = loop {
        match sign(&rig.signer, b"after") {
            Ok(()) => break t_back.elapsed(),
            Err(e) if t_back.elapsed() < Duration::from_secs(10) => {
                assert!(e.is_unavailable(), "{name}: after repair: {e:?}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!(
                "{name}: no signature 10 s after the token came back: {e}; errors seen: {:?}",
                rig.seen.errors.lock().unwrap()
            ),
        }
    };
    let first_onetime = loop {
        match sign_once(&rig.onetime) {
            Ok(()) => break t_back.elapsed(),
            Err(e) if t_back.elapsed() < Duration::from_secs(10) => {
                assert!(e.is_unavailable(), "{name}: one-time after repair: {e:?}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{name}: no one-time signature 10 s after the token came back: {e}"),
        }
    };
    rig.hsm.health_check().unwrap();
    let healthy = t_back.elapsed();
    // The data object is found again (its handle changed with the library instance).
    assert_eq!(
        rig.hsm.read_data("high-water").unwrap().as_ref(),
        Some(&high_water)
    );
    rig.hsm
        .update_data("high-water", |v| {
            assert_eq!(v, Some(high_water.as_slice()));
            Some([high_water.as_slice(), b"+"].concat())
        })
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let (ok, unavailable) = load.join().expect("background signer panicked");
    // The library really was re-initialised (SoftHSM needs it to see the token again).
    let inits = rig.seen.initializations.load(Ordering::SeqCst) - inits_before;
    assert!(inits >= 1, "{name}: no C_Initialize after the fault");
    eprintln!(
        "{name}: outage detected after {detected:?}; C_Initialize {inits} times; token back → \
         first signature {first_sign:?}, first one-time signature {first_onetime:?}, health check \
         ok {healthy:?}; background signer: {ok} ok, {unavailable} unavailable"
    );
    assert!(
        first_sign < Duration::from_secs(5),
        "{name}: recovery took {first_sign:?}"
    );
    // And keeps working.
    for i in 0..20 {
        sign(&rig.signer, format!("steady {i}").as_bytes()).unwrap();
    }
    sign_once(&rig.onetime).unwrap();
}

fn rename(from: &Path, to: &Path) {
    std::fs::rename(from, to).unwrap();
}

#[test]
fn token_directory_moved_away_and_back() {
    let rig = rig();
    let dir = token_dir(&rig.token);
    let away = softhsm_dir().join(format!("away-{}", rig.token.label));
    lose_and_recover(
        "token directory moved away",
        &rig,
        || rename(&dir, &away),
        || rename(&away, &dir),
    );
    // A second outage on the same objects recovers the same way.
    lose_and_recover(
        "token directory moved away again",
        &rig,
        || rename(&dir, &away),
        || rename(&away, &dir),
    );
}

#[test]
fn token_deleted_then_restored_from_a_copy() {
    let rig = rig();
    let dir = token_dir(&rig.token);
    let backup = softhsm_dir().join(format!("backup-{}", rig.token.label));
    lose_and_recover(
        "token deleted and restored",
        &rig,
        || {
            sh(Command::new("cp").arg("-a").arg(&dir).arg(&backup));
            let o = Command::new("softhsm2-util")
                .args(["--delete-token", "--token"])
                .arg(&rig.token.label)
                .output()
                .unwrap();
            if !o.status.success() && dir.exists() {
                // The signing thread makes SoftHSM (re)create `.lock` files in the directory
                // while softhsm2-util empties it, and its final rmdir then fails: finish the
                // deletion it started.
                eprintln!(
                    "softhsm2-util --delete-token: {}; removing the rest",
                    String::from_utf8_lossy(&o.stdout).trim()
                );
                std::fs::remove_dir_all(&dir).unwrap();
            }
            assert!(!dir.exists(), "softhsm2-util left {}", dir.display());
        },
        || sh(Command::new("cp").arg("-a").arg(&backup).arg(&dir)),
    );
}
