//! Secret keys in the HSM: sealed values open only with the same key and record, blind indexes
//! are stable per key, and neither key can be read out.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use esigd_hsm::testing::TestToken;
use esigd_hsm::{Hsm, HsmError, KeyRef, SecretKind};

#[test]
fn seal_open_and_blind_index() {
    let token = TestToken::create();
    let hsm = Hsm::open(token.config()).unwrap();
    hsm.generate_secret_key("records", SecretKind::Aes256)
        .unwrap();
    hsm.generate_secret_key("index", SecretKind::HmacSha256)
        .unwrap();
    hsm.generate_secret_key("other", SecretKind::Aes256)
        .unwrap();
    assert!(matches!(
        hsm.generate_secret_key("records", SecretKind::Aes256),
        Err(HsmError::KeyExists { .. })
    ));
    let (records, other, index) = (
        KeyRef::label("records"),
        KeyRef::label("other"),
        KeyRef::label("index"),
    );
    let secret = b"k7m2-9xqa-h3dz";
    let a = hsm
        .seal(&records, "scd.seal_key", b"cert-1", secret)
        .unwrap();
    let b = hsm
        .seal(&records, "scd.seal_key", b"cert-1", secret)
        .unwrap();
    assert_ne!(a, b, "a fresh IV per value");
    assert_eq!(a.len(), 1 + 12 + secret.len() + 16);
    assert!(!a.windows(secret.len()).any(|w| w == secret));
    assert_eq!(
        hsm.unseal(&records, "scd.seal_key", b"cert-1", &a).unwrap(),
        secret
    );
    // Another record, another key, a changed byte: refused.
    let refused = |r: Result<Vec<u8>, HsmError>| matches!(r, Err(HsmError::BadTokenData(_)));
    let r = hsm.unseal(&records, "scd.seal_key", b"cert-2", &a);
    let shown = format!("{r:?}");
    assert!(refused(r), "{shown}");
    assert!(refused(hsm.unseal(&other, "scd.seal_key", b"cert-1", &a)));
    let mut changed = a.clone();
    let last = changed.len() - 1;
    changed[last] ^= 1;
    assert!(refused(hsm.unseal(
        &records,
        "scd.seal_key",
        b"cert-1",
        &changed
    )));
    assert!(refused(hsm.unseal(
        &records,
        "scd.seal_key",
        b"cert-1",
        &a[..10]
    )));
    // Blind index: deterministic per key, different per input.
    let i1 = hsm.blind_index(&index, "scd.index_key", secret).unwrap();
    assert_eq!(i1.len(), 32);
    assert_eq!(
        i1,
        hsm.blind_index(&index, "scd.index_key", secret).unwrap()
    );
    assert_ne!(
        i1,
        hsm.blind_index(&index, "scd.index_key", b"other").unwrap()
    );
    // A missing key names the setting.
    let err = hsm
        .seal(&KeyRef::label("nope"), "scd.seal_key", b"", b"x")
        .unwrap_err();
    assert!(err.to_string().contains("scd.seal_key"), "{err}");
}
