//! Data objects on the token: created, read, replaced, read-modify-written, destroyed, and kept
//! across a reopen of the token.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

mod common;

use esigd_hsm::Hsm;
use esigd_hsm::testing::TestToken;

#[test]
fn data_objects_are_created_read_updated_and_survive_a_reopen() {
    let token = TestToken::create();
    let hsm = Hsm::open(token.config()).unwrap();
    assert_eq!(hsm.read_data("esigd-test").unwrap(), None);
    hsm.write_data("esigd-test", b"one").unwrap();
    assert_eq!(
        hsm.read_data("esigd-test").unwrap().as_deref(),
        Some(&b"one"[..])
    );
    hsm.write_data("esigd-test", b"two, longer").unwrap();
    assert_eq!(
        hsm.read_data("esigd-test").unwrap().as_deref(),
        Some(&b"two, longer"[..])
    );
    // Read-modify-write: sees the current value; `None` leaves it.
    let got = hsm
        .update_data("esigd-test", |v| {
            assert_eq!(v, Some(&b"two, longer"[..]));
            None
        })
        .unwrap();
    assert_eq!(got, None);
    hsm.update_data("esigd-test", |v| {
        let mut v = v.unwrap_or_default().to_vec();
        v.push(b'!');
        Some(v)
    })
    .unwrap();
    // Another label is another object.
    assert_eq!(hsm.read_data("esigd-other").unwrap(), None);
    hsm.close();
    drop(hsm);
    let hsm = Hsm::open(token.config()).unwrap();
    assert_eq!(
        hsm.read_data("esigd-test").unwrap().as_deref(),
        Some(&b"two, longer!"[..])
    );
    assert!(hsm.write_data("esigd-test", &[0; 5000]).is_err());
    assert!(hsm.read_data("").is_err());
    assert!(hsm.delete_data("esigd-test").unwrap());
    assert_eq!(hsm.read_data("esigd-test").unwrap(), None);
    assert!(!hsm.delete_data("esigd-test").unwrap());
}

/// A crash between creating a new generation and destroying the old one leaves two objects: readers
/// take the newest, and the next write leaves exactly one.
#[test]
fn a_leftover_older_generation_is_ignored_and_cleaned_up() {
    use cryptoki::object::{Attribute, ObjectClass};
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;

    let token = TestToken::create();
    let hsm = Hsm::open(token.config()).unwrap();
    hsm.write_data("esigd-gen", b"old").unwrap();
    // What a crash mid-write leaves: a newer generation (7) next to the current one (1).
    let ctx = common::second_handle();
    let slot = ctx
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == token.label)
        .unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    let _ = session.login(UserType::User, Some(&AuthPin::from(token.pin.clone())));
    let template = |value: &[u8]| {
        let mut stored = 7u64.to_be_bytes().to_vec();
        stored.extend_from_slice(value);
        vec![
            Attribute::Class(ObjectClass::DATA),
            Attribute::Label(b"esigd-gen".to_vec()),
            Attribute::Application(b"esigd".to_vec()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Value(stored),
        ]
    };
    session.create_object(&template(b"newer")).unwrap();
    let count = || {
        session
            .find_objects(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Label(b"esigd-gen".to_vec()),
            ])
            .unwrap()
            .len()
    };
    assert_eq!(count(), 2);
    assert_eq!(
        hsm.read_data("esigd-gen").unwrap().as_deref(),
        Some(&b"newer"[..])
    );
    hsm.update_data("esigd-gen", |v| {
        assert_eq!(v, Some(&b"newer"[..]));
        Some(b"newest".to_vec())
    })
    .unwrap();
    assert_eq!(count(), 1);
    assert_eq!(
        hsm.read_data("esigd-gen").unwrap().as_deref(),
        Some(&b"newest"[..])
    );
}
