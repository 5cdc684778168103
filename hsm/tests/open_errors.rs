//! Configuration faults are reported once, with the setting named and without the PIN.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use esigd_hsm::testing::TestToken;
use esigd_hsm::{Hsm, HsmError, KeyKind, KeyRef, PinSource};

#[test]
fn wrong_pin_is_named_and_not_echoed() {
    let token = TestToken::create();
    let pin_file = token.dir().join("wrong-pin");
    std::fs::write(&pin_file, "999999-wrong\n").unwrap();
    std::fs::set_permissions(
        &pin_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let mut cfg = token.config();
    cfg.pin = PinSource::File(pin_file);
    let err = Hsm::open(cfg).unwrap_err();
    assert!(matches!(err, HsmError::PinRefused { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with("hsm.pin:"), "{msg}");
    assert!(msg.contains("CKR_PIN_INCORRECT"), "{msg}");
    assert!(
        !msg.contains("999999") && !msg.contains(&token.pin),
        "{msg}"
    );
}

#[test]
fn missing_module_token_and_key_are_named() {
    let token = TestToken::create();
    let mut cfg = token.config();
    cfg.module = "/nonexistent/libpkcs11.so".into();
    let msg = Hsm::open(cfg).unwrap_err().to_string();
    assert!(
        msg.starts_with("hsm.module:") && msg.contains("/nonexistent/libpkcs11.so"),
        "{msg}"
    );

    let mut cfg = token.config();
    cfg.token_label = "no-such-token".into();
    let msg = Hsm::open(cfg).unwrap_err().to_string();
    assert!(
        msg.starts_with("hsm.token:") && msg.contains("no-such-token"),
        "{msg}"
    );
    assert!(msg.contains(&token.label), "lists the tokens found: {msg}");

    let mut cfg = token.config();
    cfg.pin = PinSource::Env("ESIGD_TEST_UNSET_PIN_VARIABLE".into());
    let msg = Hsm::open(cfg).unwrap_err().to_string();
    assert!(
        msg.starts_with("hsm.pin:") && msg.contains("ESIGD_TEST_UNSET_PIN_VARIABLE"),
        "{msg}"
    );

    let hsm = Hsm::open(token.config()).unwrap();
    let key = KeyRef::parse("ca.key", "pkcs11:object=missing-key").unwrap();
    let msg = hsm.signer(&key, "ca.key", None).unwrap_err().to_string();
    assert!(
        msg.starts_with("ca.key:") && msg.contains("missing-key"),
        "{msg}"
    );

    let other = KeyRef::parse("tsa.key", "pkcs11:token=elsewhere;object=k").unwrap();
    let msg = hsm.signer(&other, "tsa.key", None).unwrap_err().to_string();
    assert!(
        msg.starts_with("tsa.key:") && msg.contains("elsewhere"),
        "{msg}"
    );

    hsm.generate_key_pair("dup", KeyKind::EcP256).unwrap();
    let err = hsm.generate_key_pair("dup", KeyKind::EcP256).unwrap_err();
    assert!(matches!(err, HsmError::KeyExists { .. }), "{err:?}");
}
