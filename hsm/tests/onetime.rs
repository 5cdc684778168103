//! One-time keys: pre-generated, budgeted, destroyed, never accumulated.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

mod common;

use std::time::Duration;

use esigd_hsm::testing::{TestToken, session_private_keys};
use esigd_hsm::{Hsm, HsmError, KeyKind, OneTimeConfig, OneTimeKeys, SignatureScheme};
use signature::{Keypair, Signer};
use spki::EncodePublicKey;

fn keys(hsm: &Hsm, ready: usize, kind: KeyKind) -> OneTimeKeys {
    let cfg = OneTimeConfig {
        ready,
        kind,
        max_signatures: 3,
        take_timeout: Duration::from_secs(10),
        refill_threads: 2,
    };
    let keys = OneTimeKeys::start(hsm, cfg).unwrap();
    assert_eq!(keys.wait_ready(ready, Duration::from_secs(10)), ready);
    keys
}

#[test]
fn sign_within_budget_then_destroy() {
    let token = TestToken::create();
    let hsm = Hsm::open(token.config()).unwrap();
    let set = keys(&hsm, 2, KeyKind::EcP256);
    // The ready keys are real session objects on the token.
    assert_eq!(session_private_keys(&hsm).unwrap(), 2);

    let key = set.take().unwrap();
    let pk = key.public_key().unwrap().clone();
    assert_eq!(
        key.verifying_key().to_public_key_der().unwrap().as_bytes(),
        pk.spki_der()
    );
    for i in 0..3 {
        let msg = format!("part {i}");
        let sig = key.try_sign(msg.as_bytes()).unwrap();
        pk.verify(SignatureScheme::EcdsaSha256, msg.as_bytes(), sig.as_bytes())
            .unwrap();
    }
    let err = key.sign_message(b"one too many").unwrap_err();
    assert!(matches!(err, HsmError::KeyExhausted(3)), "{err:?}");
    let receipt = key.destroy().unwrap();
    assert_eq!(receipt.signatures, 3);
    assert_eq!(receipt.key_thumbprint, pk.thumbprint());

    // Refilled, and no more objects than ready keys.
    assert_eq!(set.wait_ready(2, Duration::from_secs(10)), 2);
    assert_eq!(session_private_keys(&hsm).unwrap(), 2);
}

#[test]
fn keys_do_not_accumulate_and_drop_destroys() {
    let token = TestToken::create();
    let hsm = Hsm::open(token.config()).unwrap();
    let set = keys(&hsm, 3, KeyKind::EcP384);
    let mut seen = std::collections::HashSet::new();
    for i in 0..200 {
        let key = set.take().unwrap();
        let pk = key.public_key().unwrap().clone();
        assert!(
            seen.insert(pk.thumbprint()),
            "a one-time key was handed out twice"
        );
        let sig = key.sign_message(b"digest").unwrap();
        pk.verify(SignatureScheme::EcdsaSha384, b"digest", sig.as_bytes())
            .unwrap();
        if i % 2 == 0 {
            key.destroy().unwrap();
        } else {
            drop(key); // destroyed by Drop
        }
    }
    assert_eq!(set.wait_ready(3, Duration::from_secs(10)), 3);
    assert_eq!(session_private_keys(&hsm).unwrap(), 3);
    drop(set);
    assert_eq!(
        session_private_keys(&hsm).unwrap(),
        0,
        "stopping the set destroys the ready keys"
    );
    let stats = hsm.stats();
    assert_eq!(stats.dedicated, 0, "{stats:?}");
    assert_eq!(
        common::open_sessions(common::slot_id(&token), 100_000),
        stats.open + 1,
        "{stats:?}"
    );
}

#[test]
fn lost_sessions_are_replaced() {
    let token = TestToken::create();
    let hsm = Hsm::open(token.config()).unwrap();
    let set = keys(&hsm, 2, KeyKind::EcP256);
    common::close_all_sessions(common::slot_id(&token));
    // Keys generated on the lost sessions are gone; the set notices, refills, and keys work again.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let key = set.take().unwrap();
        match key.sign_message(b"x") {
            Ok(sig) => {
                key.public_key()
                    .unwrap()
                    .verify(SignatureScheme::EcdsaSha256, b"x", sig.as_bytes())
                    .unwrap();
                key.destroy().unwrap();
                break;
            }
            Err(HsmError::Unavailable(_)) if std::time::Instant::now() < deadline => {
                drop(key);
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}
