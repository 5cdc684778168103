//! The device agent against the Remote SCD rules, in process: its keys in its own SoftHSM token
//! behind the PIN the citizen chose, onboarding, signing, wrong PINs and the lock, and requests it
//! must not answer (expired, replayed, wrong code).
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use esigd_device::agent::{Agent, AgentError};
use esigd_hsm::testing::softhsm_module;
use esigd_pki::certificate::{CertificateTemplate, build_certificate, random_serial};
use esigd_pki::identity::DnBuilder;
use esigd_remote_scd::engine::{Config, Engine};
use esigd_scd::api::*;
use esigd_scd::device::{Outcome, Transaction};
use esigd_scd::interactions::{self, Interaction};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::pkcs8::DecodePublicKey;
use rand_core::OsRng;
use secrecy::SecretString;
use sha2::Digest;

const RP: &str = "rp";

fn pin(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn shown(text: &str) -> String {
    interactions::encode(&[Interaction::DisplayTextAndPin {
        display_text60: text.into(),
    }])
    .unwrap()
}

fn sign_request(digest: &[u8], nonce: &str) -> SignatureRequest {
    SignatureRequest {
        relying_party_uuid: "rp-uuid".into(),
        relying_party_name: "esigd".into(),
        signature_protocol: SignatureProtocol::RawDigestSignature,
        signature_protocol_parameters: RawDigestParameters {
            digest: STANDARD.encode(digest),
            signature_algorithm: SignatureAlgorithm::Ecdsa,
            signature_algorithm_parameters: AlgorithmParameters {
                hash_algorithm: HashAlgorithm::Sha256,
            },
        },
        interactions: shown("Sign the lease"),
        nonce: Some(nonce.into()),
    }
}

fn fetch(e: &mut Engine, device: &str, session: &str, now: SystemTime) -> Transaction {
    e.transaction(device, session, now).unwrap()
}

#[test]
fn onboard_sign_wrong_pins_lock_and_refusals() {
    assert!(
        std::env::var_os("SOFTHSM2_CONF").is_some(),
        "run through cargo (scripts/test-runner)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::open(dir.path(), &softhsm_module()).unwrap();
    let now = SystemTime::now();
    let mut e = Engine::new(Config::default(), now - Duration::from_secs(1));
    let id = e
        .register_device(agent.registration("test/1"), &mut OsRng)
        .unwrap()
        .device_id;
    agent.set_device_id(&id).unwrap();
    // Signed calls from the agent pass the service's check.
    let url = format!("https://rscd.test/device/v1/devices/{id}/transactions");
    let token = agent.call_token("GET", &url, now, &mut OsRng).unwrap();
    e.authenticate(&id, &token, "GET", &url, now).unwrap();

    // Onboarding: the citizen chooses a PIN (twice) and the token makes the key.
    let challenge = [0x5au8; 32];
    let created = e
        .start_onboarding(
            RP,
            "REMOTE_SCD_REF",
            &id,
            &OnboardingRequest {
                relying_party_uuid: "rp-uuid".into(),
                relying_party_name: "esigd".into(),
                subject: Subject {
                    sub: "citizen".into(),
                    display_name: Some("Jane Doe".into()),
                },
                scd_key_id: 0,
                key_spec: KeySpec::Ec { curve: Curve::P256 },
                challenge: STANDARD.encode(challenge),
                interactions: shown("Create your signing key"),
                nonce: None,
            },
            now,
            &mut OsRng,
        )
        .unwrap();
    let tx = fetch(&mut e, &id, &created.session_id, now);
    let review = agent.review(&tx, now, &mut OsRng).unwrap();
    assert!(review.choose_pin && !review.locked);
    assert_eq!(review.vc, created.vc.value);
    assert!(matches!(
        agent.approve(&tx, &review, &pin("4826"), Some(&pin("4827")), now),
        Err(AgentError::PinRule(_))
    ));
    assert!(matches!(
        agent.approve(&tx, &review, &pin("12"), Some(&pin("12")), now),
        Err(AgentError::PinRule(_))
    ));
    let result = agent
        .approve(&tx, &review, &pin("4826"), Some(&pin("4826")), now)
        .unwrap();
    assert_eq!(result.outcome, Outcome::Ok);
    let handle = e
        .submit_result(&id, &tx.transaction_id, result, now, &mut OsRng)
        .unwrap()
        .unwrap();
    agent.set_key_handle(&tx.transaction_id, &handle).unwrap();
    // The CSR holds the token's key.
    let status = e.status(RP, &created.session_id, now).unwrap();
    let csr = esigd_pki::csr::parse_csr(&STANDARD.decode(status.csr.unwrap()).unwrap()).unwrap();
    let token_spki = agent.public_key(&handle).unwrap();
    assert_eq!(der::Encode::to_der(csr.public_key()).unwrap(), token_spki);
    // Answered once: the same request again is not shown.
    assert!(matches!(
        agent.review(&tx, now, &mut OsRng),
        Err(AgentError::Refused(r)) if r.contains("before")
    ));

    // The RP's CA certifies the key; the certificate goes onto the token.
    let ca = p256::ecdsa::SigningKey::random(&mut OsRng);
    let cert = build_certificate::<_, p256::ecdsa::DerSignature>(
        &ca,
        CertificateTemplate {
            serial: random_serial(&mut OsRng).unwrap(),
            issuer: DnBuilder::new().common_name("CA").unwrap().build(),
            subject: DnBuilder::new().common_name("Jane Doe").unwrap().build(),
            public_key: csr.public_key().clone(),
            not_before: now,
            not_after: now + Duration::from_secs(3600),
            extensions: vec![],
        },
    )
    .unwrap();
    let cert_der = der::Encode::to_der(&cert).unwrap();
    e.deliver_certificate(
        &handle,
        CertificateDelivery {
            certificate: STANDARD.encode(&cert_der),
            chain: vec![],
        },
    )
    .unwrap();
    assert_eq!(agent.keys_without_certificate(), vec![handle.clone()]);
    agent.store_certificate(&handle, &cert_der).unwrap();
    assert!(agent.keys_without_certificate().is_empty());

    // Signing: two wrong PINs, then the right one.
    let digest: [u8; 32] = sha2::Sha256::digest(b"lease").into();
    let s = e
        .start_signature(RP, &handle, &sign_request(&digest, "a"), now, &mut OsRng)
        .unwrap();
    let tx = fetch(&mut e, &id, &s.session_id, now);
    let review = agent.review(&tx, now, &mut OsRng).unwrap();
    assert!(!review.choose_pin);
    for left in [2, 1] {
        match agent.approve(&tx, &review, &pin("0000"), None, now) {
            Err(AgentError::WrongPin { tries_left }) => assert_eq!(tries_left, left),
            other => panic!("{other:?}"),
        }
    }
    let result = agent
        .approve(&tx, &review, &pin("4826"), None, now)
        .unwrap();
    assert_eq!(agent.wrong_pins(), 0, "a right PIN resets the count");
    e.submit_result(&id, &tx.transaction_id, result, now, &mut OsRng)
        .unwrap();
    let status = e.status(RP, &s.session_id, now).unwrap();
    let sig = STANDARD.decode(status.signature.unwrap().value).unwrap();
    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&token_spki).unwrap();
    vk.verify_prehash(&digest, &p256::ecdsa::Signature::from_der(&sig).unwrap())
        .unwrap();

    // Requests the device must not answer.
    let s2 = e
        .start_signature(RP, &handle, &sign_request(&digest, "b"), now, &mut OsRng)
        .unwrap();
    let tx2 = fetch(&mut e, &id, &s2.session_id, now);
    assert!(matches!(
        agent.review(&tx2, now + Duration::from_secs(121), &mut OsRng),
        Err(AgentError::Refused(r)) if r.contains("expired")
    ));
    let mut forged = tx2.clone();
    forged.vc.value = if tx2.vc.value == "0000" {
        "0001".into()
    } else {
        "0000".into()
    };
    assert!(matches!(
        agent.review(&forged, now, &mut OsRng),
        Err(AgentError::Refused(r)) if r.contains("verification code")
    ));

    // Three wrong PINs lock the keys: DOCUMENT_UNUSABLE / PIN_LOCKED.
    let review = agent.review(&tx2, now, &mut OsRng).unwrap();
    let _ = agent
        .approve(&tx2, &review, &pin("1111"), None, now)
        .unwrap_err();
    let _ = agent
        .approve(&tx2, &review, &pin("2222"), None, now)
        .unwrap_err();
    let locked = agent
        .approve(&tx2, &review, &pin("3333"), None, now)
        .unwrap();
    assert_eq!(locked.outcome, Outcome::DocumentUnusable);
    assert_eq!(
        locked.details.as_ref().unwrap().reason.as_deref(),
        Some("PIN_LOCKED")
    );
    e.submit_result(&id, &tx2.transaction_id, locked, now, &mut OsRng)
        .unwrap();
    let st = e.status(RP, &s2.session_id, now).unwrap();
    assert_eq!(st.end_result(), Some(EndResult::DocumentUnusable));

    // The lock survives a restart of the app, and even the right PIN no longer signs.
    drop(agent);
    let mut agent = Agent::open(dir.path(), &softhsm_module()).unwrap();
    assert_eq!(agent.device_id(), Some(id.as_str()));
    assert_eq!(agent.wrong_pins(), 3);
    let s3 = e
        .start_signature(RP, &handle, &sign_request(&digest, "c"), now, &mut OsRng)
        .unwrap();
    let tx3 = fetch(&mut e, &id, &s3.session_id, now);
    let review = agent.review(&tx3, now, &mut OsRng).unwrap();
    assert!(review.locked);
    let r = agent
        .approve(&tx3, &review, &pin("4826"), None, now)
        .unwrap();
    assert_eq!(r.outcome, Outcome::DocumentUnusable);
    assert!(r.signature.is_none());
    // The PIN is in no state file.
    let state = std::fs::read_to_string(dir.path().join("device.json")).unwrap();
    assert!(!state.contains("4826"));
}
