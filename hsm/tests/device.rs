//! A device app's own token: the PIN is set once by the security officer, typed for each key
//! generation and signature, and a wrong PIN is told apart from other failures.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use esigd_hsm::testing::softhsm_module;
use esigd_hsm::{DeviceToken, HsmError, KeyKind, SignatureScheme};
use secrecy::SecretString;
use sha2::Digest;

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

#[test]
fn a_device_token_is_initialised_once_and_signs_only_with_the_pin() {
    assert!(
        std::env::var_os("SOFTHSM2_CONF").is_some(),
        "SOFTHSM2_CONF is not set: run tests through cargo (scripts/test-runner)"
    );
    let label = format!("device-{}", std::process::id());
    let so = secret("so-secret-1");
    let token = DeviceToken::open_or_init(&softhsm_module(), &label, &so).unwrap();
    assert!(!token.pin_set().unwrap());
    token.set_pin(&so, &secret("4826")).unwrap();
    assert!(token.pin_set().unwrap());
    assert!(
        token.set_pin(&so, &secret("0000")).is_err(),
        "a PIN is set once"
    );

    // Key generation needs the PIN; a wrong one is a PIN refusal, not another error.
    let err = token
        .generate(&secret("1111"), "scd-0", KeyKind::EcP256)
        .unwrap_err();
    assert!(
        matches!(&err, HsmError::PinRefused { rv } if rv == "CKR_PIN_INCORRECT"),
        "{err}"
    );
    let pk = token
        .generate(&secret("4826"), "scd-0", KeyKind::EcP256)
        .unwrap();
    assert!(matches!(
        token.generate(&secret("4826"), "scd-0", KeyKind::EcP256),
        Err(HsmError::KeyExists { .. })
    ));
    assert_eq!(token.public_key("scd-0").unwrap().spki_der(), pk.spki_der());

    let msg = b"the lease";
    let digest = sha2::Sha256::digest(msg);
    let err = token
        .sign_digest(
            &secret("9999"),
            "scd-0",
            SignatureScheme::EcdsaSha256,
            &digest,
        )
        .unwrap_err();
    assert!(matches!(err, HsmError::PinRefused { .. }), "{err}");
    let sig = token
        .sign_digest(
            &secret("4826"),
            "scd-0",
            SignatureScheme::EcdsaSha256,
            &digest,
        )
        .unwrap();
    pk.verify(SignatureScheme::EcdsaSha256, msg, &sig).unwrap();
    assert!(
        token
            .sign_digest(
                &secret("4826"),
                "scd-0",
                SignatureScheme::EcdsaSha256,
                &digest[..20]
            )
            .is_err()
    );
    assert!(matches!(
        token.sign_digest(
            &secret("4826"),
            "nope",
            SignatureScheme::EcdsaSha256,
            &digest
        ),
        Err(HsmError::KeyNotFound { .. })
    ));
    token
        .store_certificate("scd-0", b"not parsed here", &[0x30, 0x00])
        .unwrap();
    // Opening again finds the same token and key (no second initialisation).
    drop(token);
    let again = DeviceToken::open_or_init(&softhsm_module(), &label, &secret("other")).unwrap();
    assert!(again.pin_set().unwrap());
    assert_eq!(again.public_key("scd-0").unwrap().spki_der(), pk.spki_der());
}
