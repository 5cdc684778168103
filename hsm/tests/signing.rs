//! Persistent keys on SoftHSM: generate, sign through the pool, verify outside the HSM.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

mod common;

use std::sync::Arc;

use esigd_hsm::testing::TestToken;
use esigd_hsm::{Hsm, KeyKind, KeyRef, SignatureScheme};
use signature::{Keypair, Signer};
use spki::{DynSignatureAlgorithmIdentifier, EncodePublicKey};

#[test]
fn every_key_kind_and_scheme_signs_and_verifies() {
    let token = TestToken::create();
    let hsm = Hsm::open(token.config()).unwrap();
    let cases = [
        ("ec256", KeyKind::EcP256, SignatureScheme::EcdsaSha256),
        ("ec384", KeyKind::EcP384, SignatureScheme::EcdsaSha384),
        ("rsa", KeyKind::Rsa(2048), SignatureScheme::RsaPkcs1Sha256),
    ];
    for (label, kind, scheme) in cases {
        let pk = hsm.generate_key_pair(label, kind).unwrap();
        assert_eq!(pk.kind(), kind);
        let signer = hsm.signer(&KeyRef::label(label), "test.key", None).unwrap();
        assert_eq!(signer.scheme(), scheme);
        assert_eq!(
            signer
                .verifying_key()
                .to_public_key_der()
                .unwrap()
                .as_bytes(),
            pk.spki_der()
        );
        let msg = format!("message for {label}");
        let sig = signer.try_sign(msg.as_bytes()).unwrap();
        pk.verify(scheme, msg.as_bytes(), sig.as_bytes()).unwrap();
        assert!(
            pk.verify(scheme, b"another message", sig.as_bytes())
                .is_err()
        );
        let alg = signer.signature_algorithm_identifier().unwrap();
        assert_eq!(alg, scheme.algorithm_identifier().unwrap());
    }
    // RSA-PSS on the same key.
    let pss = hsm
        .signer(
            &KeyRef::label("rsa"),
            "test.key",
            Some(SignatureScheme::RsaPssSha256),
        )
        .unwrap();
    let sig = pss.try_sign(b"pss").unwrap();
    pss.public_key()
        .verify(SignatureScheme::RsaPssSha256, b"pss", sig.as_bytes())
        .unwrap();
    // A scheme that does not fit the key is refused, naming the setting.
    let msg = hsm
        .signer(
            &KeyRef::label("ec256"),
            "tsa.key",
            Some(SignatureScheme::RsaPkcs1Sha256),
        )
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("tsa.key:"), "{msg}");
}

#[test]
fn eight_threads_thousand_signatures_each_no_session_leak() {
    let token = TestToken::create();
    let mut cfg = token.config();
    cfg.pool_size = 4;
    let hsm = Hsm::open(cfg).unwrap();
    let pk = hsm.generate_key_pair("k", KeyKind::EcP256).unwrap();
    let signer = Arc::new(hsm.signer(&KeyRef::label("k"), "test.key", None).unwrap());
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let signer = signer.clone();
            std::thread::spawn(move || {
                (0..1000)
                    .map(|i| {
                        let msg = format!("thread {t} message {i}").into_bytes();
                        let sig = signer.try_sign(&msg).unwrap();
                        (msg, sig)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut n = 0;
    for h in handles {
        for (msg, sig) in h.join().unwrap() {
            pk.verify(SignatureScheme::EcdsaSha256, &msg, sig.as_bytes())
                .unwrap();
            n += 1;
        }
    }
    assert_eq!(n, 8000);
    let stats = hsm.stats();
    assert_eq!(stats.in_use, 0);
    assert!(stats.open <= 4, "{stats:?}");
    // The module's own view: the pooled sessions plus the anchor, nothing leaked.
    assert_eq!(
        common::open_sessions(common::slot_id(&token), 100_000),
        stats.open + 1,
        "{stats:?}"
    );
}
