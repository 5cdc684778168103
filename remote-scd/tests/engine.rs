//! The reference Remote SCD service's rules, driven by a simulated device (P-256 keys in memory)
//! and a relying party, with time as a parameter; and its journal across a restart.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use esigd_pki::certificate::{CertificateTemplate, build_certificate, random_serial};
use esigd_pki::identity::DnBuilder;
use esigd_remote_scd::engine::{Config, Engine, EngineError};
use esigd_remote_scd::journal::Journal;
use esigd_scd::api::*;
use esigd_scd::device::*;
use esigd_scd::interactions::{self, Interaction};
use esigd_scd::jws;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use rand_core::OsRng;
use sha2::{Digest, Sha256};

const RP: &str = "rp-cert-sha256";
const URL: &str = "https://rscd.test";

fn t(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
}

fn unix(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A device in memory: its authentication key, and the keys it creates at onboarding.
struct Device {
    id: String,
    auth: SigningKey,
    keys: Vec<SigningKey>,
}

impl Device {
    fn register(e: &mut Engine) -> Device {
        let auth = SigningKey::random(&mut OsRng);
        let reg = DeviceRegistration {
            device_auth_key: jws::jwk_of(auth.verifying_key()),
            agent_version: "test/1".into(),
            capabilities: Capabilities {
                interactions: vec!["displayTextAndPIN".into()],
                key_specs: vec![KeySpec::Ec { curve: Curve::P256 }],
                signature_algorithms: vec![SignatureAlgorithm::Ecdsa],
            },
        };
        let id = e.register_device(reg, &mut OsRng).unwrap().device_id;
        Device {
            id,
            auth,
            keys: Vec::new(),
        }
    }

    fn call(&self, method: &str, path: &str, at: SystemTime) -> (String, String) {
        let url = format!("{URL}{path}");
        let mut jti = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut OsRng, &mut jti);
        let token = jws::sign_call(
            &self.auth,
            &DeviceCallClaims {
                htm: method.into(),
                htu: url.clone(),
                iat: unix(at),
                jti: URL_SAFE_NO_PAD.encode(jti),
                device_id: self.id.clone(),
            },
        )
        .unwrap();
        (token, url)
    }

    fn auth(&self, e: &mut Engine, method: &str, path: &str, at: SystemTime) {
        let (token, url) = self.call(method, path, at);
        e.authenticate(&self.id, &token, method, &url, at).unwrap();
    }

    fn proof(&self, tx: &Transaction, bound: &[u8], outcome: Outcome, at: SystemTime) -> String {
        jws::sign_proof(
            &self.auth,
            &ProofClaims {
                transaction_id: tx.transaction_id.clone(),
                kind: tx.kind,
                bound_sha256: URL_SAFE_NO_PAD.encode(Sha256::digest(bound)),
                vc: tx.vc.value.clone(),
                interactions_sha256: URL_SAFE_NO_PAD.encode(interactions::digest(&tx.interactions)),
                outcome,
                iat: unix(at),
            },
        )
        .unwrap()
    }

    /// Answers an onboarding transaction with a new key's CSR carrying `challenge`.
    fn onboard_result(
        &mut self,
        tx: &Transaction,
        challenge: &str,
        at: SystemTime,
    ) -> TransactionResult {
        let key = SigningKey::random(&mut OsRng);
        let subject = DnBuilder::new().common_name("device key").unwrap().build();
        let csr =
            esigd_pki::csr::build_csr_with_challenge::<_, DerSignature>(&key, subject, challenge)
                .unwrap();
        self.keys.push(key);
        let bound = STANDARD
            .decode(&tx.onboard.as_ref().unwrap().challenge)
            .unwrap();
        TransactionResult {
            outcome: Outcome::Ok,
            interaction_type_used: Some("displayTextAndPIN".into()),
            details: None,
            signature: None,
            csr: Some(STANDARD.encode(der::Encode::to_der(&csr).unwrap())),
            proof: self.proof(tx, &bound, Outcome::Ok, at),
        }
    }
}

fn shown() -> String {
    interactions::encode(&[Interaction::DisplayTextAndPin {
        display_text60: "Sign the lease".into(),
    }])
    .unwrap()
}

fn onboarding(challenge: [u8; 32], nonce: Option<&str>) -> OnboardingRequest {
    OnboardingRequest {
        relying_party_uuid: "00000000-0000-4000-8000-000000000000".into(),
        relying_party_name: "esigd".into(),
        subject: Subject {
            sub: "citizen-1".into(),
            display_name: Some("Jane Doe".into()),
        },
        scd_key_id: 0,
        key_spec: KeySpec::Ec { curve: Curve::P256 },
        challenge: STANDARD.encode(challenge),
        interactions: shown(),
        nonce: nonce.map(Into::into),
    }
}

fn signing(digest: &[u8]) -> SignatureRequest {
    SignatureRequest {
        relying_party_uuid: "00000000-0000-4000-8000-000000000000".into(),
        relying_party_name: "esigd".into(),
        signature_protocol: SignatureProtocol::RawDigestSignature,
        signature_protocol_parameters: RawDigestParameters {
            digest: STANDARD.encode(digest),
            signature_algorithm: SignatureAlgorithm::Ecdsa,
            signature_algorithm_parameters: AlgorithmParameters {
                hash_algorithm: HashAlgorithm::Sha256,
            },
        },
        interactions: shown(),
        nonce: None,
    }
}

/// Runs onboarding to the end and returns the key handle (certificate delivered: key active).
fn onboard(e: &mut Engine, d: &mut Device, at: SystemTime) -> String {
    let challenge = [7u8; 32];
    let created = e
        .start_onboarding(
            RP,
            "REMOTE_SCD_REF",
            &d.id,
            &onboarding(challenge, None),
            at,
            &mut OsRng,
        )
        .unwrap();
    created.vc.check(&created.session_id, &challenge).unwrap();
    let list = e.pending(&d.id, at);
    assert_eq!(list.transactions.len(), 1);
    d.auth(e, "GET", "/device/v1/transactions/x", at);
    let tx = e.transaction(&d.id, &created.session_id, at).unwrap();
    // The device recomputes the code from what it was given.
    tx.vc.check(&tx.transaction_id, &challenge).unwrap();
    let result = d.onboard_result(&tx, &STANDARD.encode(challenge), at);
    e.submit_result(&d.id, &tx.transaction_id, result, at, &mut OsRng)
        .unwrap();
    let status = e.status(RP, &created.session_id, at).unwrap();
    assert_eq!(status.end_result(), Some(EndResult::Ok));
    let handle = status.result.unwrap().key_handle.unwrap();
    // The CSR came back; the RP's CA issues a certificate for its key.
    let csr_der = STANDARD.decode(status.csr.unwrap()).unwrap();
    let csr = esigd_pki::csr::parse_csr(&csr_der).unwrap();
    let ca = SigningKey::random(&mut OsRng);
    let name = DnBuilder::new().common_name("test CA").unwrap().build();
    let cert = build_certificate::<_, DerSignature>(
        &ca,
        CertificateTemplate {
            serial: random_serial(&mut OsRng).unwrap(),
            issuer: name.clone(),
            subject: DnBuilder::new().common_name("Jane Doe").unwrap().build(),
            public_key: csr.public_key().clone(),
            not_before: at,
            not_after: at + Duration::from_secs(86_400),
            extensions: vec![],
        },
    )
    .unwrap();
    let cert_b64 = STANDARD.encode(der::Encode::to_der(&cert).unwrap());
    assert_eq!(e.certificate(&handle).unwrap().state, "DOCUMENT_UNUSABLE");
    e.deliver_certificate(
        &handle,
        CertificateDelivery {
            certificate: cert_b64.clone(),
            chain: vec![],
        },
    )
    .unwrap();
    assert_eq!(
        e.certificate(&handle).unwrap().cert.unwrap().value,
        cert_b64
    );
    assert_eq!(
        e.device_certificate(&d.id, &handle).unwrap().value,
        cert_b64
    );
    handle
}

#[test]
fn onboarding_then_signing_end_to_end() {
    let mut e = Engine::new(Config::default(), t(0));
    let mut d = Device::register(&mut e);
    let handle = onboard(&mut e, &mut d, t(1));
    let digest: [u8; 32] = Sha256::digest(b"the lease").into();
    let created = e
        .start_signature(RP, &handle, &signing(&digest), t(10), &mut OsRng)
        .unwrap();
    created.vc.check(&created.session_id, &digest).unwrap();
    let tx = e.transaction(&d.id, &created.session_id, t(11)).unwrap();
    assert_eq!(tx.sign.as_ref().unwrap().digest, STANDARD.encode(digest));
    let key = &d.keys[0];
    let sig: p256::ecdsa::Signature =
        p256::ecdsa::signature::hazmat::PrehashSigner::sign_prehash(key, &digest).unwrap();
    let result = TransactionResult {
        outcome: Outcome::Ok,
        interaction_type_used: Some("displayTextAndPIN".into()),
        details: None,
        signature: Some(STANDARD.encode(sig.to_der().as_bytes())),
        csr: None,
        proof: d.proof(&tx, &digest, Outcome::Ok, t(12)),
    };
    e.submit_result(&d.id, &tx.transaction_id, result.clone(), t(12), &mut OsRng)
        .unwrap();
    // Accepted once.
    assert_eq!(
        e.submit_result(&d.id, &tx.transaction_id, result, t(13), &mut OsRng),
        Err(EngineError::AlreadyComplete)
    );
    let status = e.status(RP, &created.session_id, t(14)).unwrap();
    assert_eq!(status.end_result(), Some(EndResult::Ok));
    assert_eq!(
        status.signature_protocol,
        Some(SignatureProtocol::RawDigestSignature)
    );
    let value = STANDARD.decode(status.signature.unwrap().value).unwrap();
    let sig = p256::ecdsa::Signature::from_der(&value).unwrap();
    key.verifying_key().verify_prehash(&digest, &sig).unwrap();
    // Only the RP that started it can read it; after retention nobody can.
    assert_eq!(
        e.status("other-rp", &created.session_id, t(14)),
        Err(EngineError::NotFound)
    );
    assert_eq!(
        e.status(RP, &created.session_id, t(12 + 300)),
        Err(EngineError::NotFound)
    );
}

#[test]
fn onboarding_refuses_a_wrong_challenge_another_key_type_and_a_bad_proof() {
    let mut e = Engine::new(Config::default(), t(0));
    let mut d = Device::register(&mut e);
    let challenge = [1u8; 32];
    let created = e
        .start_onboarding(
            RP,
            "REMOTE_SCD_REF",
            &d.id,
            &onboarding(challenge, None),
            t(1),
            &mut OsRng,
        )
        .unwrap();
    let tx = e.transaction(&d.id, &created.session_id, t(2)).unwrap();
    let wrong = d.onboard_result(&tx, &STANDARD.encode([2u8; 32]), t(3));
    let err = e
        .submit_result(&d.id, &tx.transaction_id, wrong, t(3), &mut OsRng)
        .unwrap_err();
    assert!(err.to_string().contains("challengePassword"), "{err}");
    // A proof over another code.
    let mut bad = d.onboard_result(&tx, &STANDARD.encode(challenge), t(3));
    let mut other = tx.clone();
    other.vc.value = "0000".into();
    if tx.vc.value == "0000" {
        other.vc.value = "0001".into();
    }
    bad.proof = d.proof(&other, &challenge, Outcome::Ok, t(3));
    let err = e
        .submit_result(&d.id, &tx.transaction_id, bad, t(3), &mut OsRng)
        .unwrap_err();
    assert_eq!(err.status(), 400);
    assert!(err.to_string().contains("proof"), "{err}");
    // A proof signed by another key.
    let mut forged = d.onboard_result(&tx, &STANDARD.encode(challenge), t(3));
    let intruder = Device {
        id: d.id.clone(),
        auth: SigningKey::random(&mut OsRng),
        keys: vec![],
    };
    forged.proof = intruder.proof(&tx, &challenge, Outcome::Ok, t(3));
    assert_eq!(
        e.submit_result(&d.id, &tx.transaction_id, forged, t(3), &mut OsRng)
            .unwrap_err()
            .status(),
        400
    );
    // The session is still open: a right answer completes it.
    let good = d.onboard_result(&tx, &STANDARD.encode(challenge), t(4));
    e.submit_result(&d.id, &tx.transaction_id, good, t(4), &mut OsRng)
        .unwrap();
    assert_eq!(
        e.status(RP, &created.session_id, t(5))
            .unwrap()
            .end_result(),
        Some(EndResult::Ok)
    );
}

#[test]
fn a_refusal_carries_no_payload_and_late_results_are_gone() {
    let mut e = Engine::new(Config::default(), t(0));
    let mut d = Device::register(&mut e);
    let handle = onboard(&mut e, &mut d, t(1));
    let digest = [3u8; 32];
    let s1 = e
        .start_signature(RP, &handle, &signing(&digest), t(10), &mut OsRng)
        .unwrap();
    // One running session per key.
    let mut again = signing(&digest);
    again.nonce = Some("n2".into());
    assert_eq!(
        e.start_signature(RP, &handle, &again, t(11), &mut OsRng),
        Err(EngineError::SessionInProgress)
    );
    let tx = e.transaction(&d.id, &s1.session_id, t(12)).unwrap();
    let refused = TransactionResult {
        outcome: Outcome::UserRefusedInteraction,
        interaction_type_used: Some("displayTextAndPIN".into()),
        details: Some(ResultDetails {
            interaction: Some("displayTextAndPIN".into()),
            reason: None,
        }),
        signature: None,
        csr: None,
        proof: d.proof(&tx, &digest, Outcome::UserRefusedInteraction, t(13)),
    };
    e.submit_result(&d.id, &tx.transaction_id, refused, t(13), &mut OsRng)
        .unwrap();
    let st = e.status(RP, &s1.session_id, t(14)).unwrap();
    assert_eq!(st.end_result(), Some(EndResult::UserRefusedInteraction));
    assert!(st.signature.is_none());
    // A new session; the user never answers.
    let s2 = e
        .start_signature(RP, &handle, &again, t(20), &mut OsRng)
        .unwrap();
    let tx2 = e.transaction(&d.id, &s2.session_id, t(21)).unwrap();
    let late = TransactionResult {
        outcome: Outcome::UserRefused,
        interaction_type_used: None,
        details: None,
        signature: None,
        csr: None,
        proof: d.proof(&tx2, &digest, Outcome::UserRefused, t(20 + 121)),
    };
    assert_eq!(
        e.submit_result(&d.id, &tx2.transaction_id, late, t(20 + 121), &mut OsRng),
        Err(EngineError::Expired)
    );
    assert_eq!(
        e.status(RP, &s2.session_id, t(20 + 122))
            .unwrap()
            .end_result(),
        Some(EndResult::Timeout)
    );
}

#[test]
fn idempotency_cancel_rate_limit_and_key_status() {
    let cfg = Config {
        push_limit: 3,
        ..Config::default()
    };
    let mut e = Engine::new(cfg, t(0));
    let mut d = Device::register(&mut e);
    let handle = onboard(&mut e, &mut d, t(1)); // push 1
    let digest = [4u8; 32];
    let a = e
        .start_signature(RP, &handle, &signing(&digest), t(10), &mut OsRng)
        .unwrap(); // push 2
    let same = e
        .start_signature(RP, &handle, &signing(&digest), t(20), &mut OsRng)
        .unwrap();
    assert_eq!(
        a, same,
        "an identical request within 15 s is the same session"
    );
    e.cancel(RP, &a.session_id, t(21)).unwrap();
    assert_eq!(
        e.status(RP, &a.session_id, t(21)).unwrap().end_result(),
        Some(EndResult::RpCancelled)
    );
    assert_eq!(
        e.cancel(RP, &a.session_id, t(22)),
        Err(EngineError::AlreadyComplete)
    );
    let mut n = signing(&digest);
    n.nonce = Some("b".into());
    let b = e
        .start_signature(RP, &handle, &n, t(30), &mut OsRng)
        .unwrap(); // push 3
    e.cancel(RP, &b.session_id, t(31)).unwrap();
    n.nonce = Some("c".into());
    let err = e
        .start_signature(RP, &handle, &n, t(40), &mut OsRng)
        .unwrap_err();
    match err {
        EngineError::RateLimited { retry_after } => {
            assert_eq!(retry_after, Duration::from_secs(600 - 39));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.problem_status(&n, &handle), 429);
    // Suspended: the session ends at once, DOCUMENT_UNUSABLE / KEY_SUSPENDED, without a push.
    let later = t(1 + 600);
    e.set_key_status(
        &handle,
        &KeyStatusChange {
            status: KeyStatus::Suspended,
            reason: None,
        },
    )
    .unwrap();
    n.nonce = Some("d".into());
    let s = e
        .start_signature(RP, &handle, &n, later, &mut OsRng)
        .unwrap();
    let st = e.status(RP, &s.session_id, later).unwrap();
    assert_eq!(st.end_result(), Some(EndResult::DocumentUnusable));
    assert_eq!(
        st.result.unwrap().details.unwrap().reason.as_deref(),
        Some("KEY_SUSPENDED")
    );
    assert!(e.pending(&d.id, later).transactions.is_empty());
    // Revoked is final.
    e.set_key_status(
        &handle,
        &KeyStatusChange {
            status: KeyStatus::Revoked,
            reason: None,
        },
    )
    .unwrap();
    assert!(
        e.set_key_status(
            &handle,
            &KeyStatusChange {
                status: KeyStatus::Active,
                reason: None
            }
        )
        .is_err()
    );
    // Unknown keys and devices look the same.
    assert_eq!(
        e.start_signature(RP, "nope", &signing(&digest), later, &mut OsRng),
        Err(EngineError::NotFound)
    );
    assert_eq!(
        e.start_onboarding(
            RP,
            "REMOTE_SCD_REF",
            "k7m2-9xqa-h3dz",
            &onboarding([0; 32], None),
            later,
            &mut OsRng
        ),
        Err(EngineError::NotFound)
    );
}

trait ProblemStatus {
    fn problem_status(&mut self, req: &SignatureRequest, handle: &str) -> u16;
}

impl ProblemStatus for Engine {
    fn problem_status(&mut self, req: &SignatureRequest, handle: &str) -> u16 {
        let err = self
            .start_signature(RP, handle, req, t(40), &mut OsRng)
            .unwrap_err();
        let p = err.problem();
        assert_eq!(p.status, err.status());
        assert_eq!(p.code(), Some("RATE_LIMITED"));
        p.status
    }
}

#[test]
fn device_calls_are_signed_fresh_and_single_use() {
    let mut e = Engine::new(Config::default(), t(100));
    let d = Device::register(&mut e);
    let path = "/device/v1/devices/x/transactions";
    let (token, url) = d.call("GET", path, t(100));
    e.authenticate(&d.id, &token, "GET", &url, t(101)).unwrap();
    let replay = e
        .authenticate(&d.id, &token, "GET", &url, t(102))
        .unwrap_err();
    assert!(replay.to_string().contains("jti"), "{replay}");
    assert_eq!(replay.status(), 401);
    let (token, url) = d.call("GET", path, t(100));
    assert!(e.authenticate(&d.id, &token, "POST", &url, t(100)).is_err());
    let (token, _) = d.call("GET", path, t(100));
    assert!(
        e.authenticate(&d.id, &token, "GET", "https://rscd.test/other", t(100))
            .is_err()
    );
    // Made before the service (re)started: refused, since the jti set starts empty.
    let (token, url) = d.call("GET", path, t(99));
    assert!(
        e.authenticate(&d.id, &token, "GET", &url, t(100))
            .unwrap_err()
            .to_string()
            .contains("started")
    );
    // Another device's key.
    let other = Device::register(&mut e);
    let (token, url) = other.call("GET", path, t(100));
    assert!(e.authenticate(&d.id, &token, "GET", &url, t(100)).is_err());
    let spki = d.auth.verifying_key().to_public_key_der().unwrap();
    assert!(!spki.as_bytes().is_empty());
}

#[test]
fn the_journal_restores_devices_keys_and_sessions_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let (mut journal, events) = Journal::open(&path).unwrap();
    assert!(events.is_empty());
    let mut e = Engine::new(Config::default(), t(0));
    let mut d = Device::register(&mut e);
    let handle = onboard(&mut e, &mut d, t(1));
    let digest = [5u8; 32];
    let s = e
        .start_signature(RP, &handle, &signing(&digest), t(10), &mut OsRng)
        .unwrap();
    journal.append(&e.take_events()).unwrap();
    // A torn write at the end (a crash during the last append) is dropped.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"event\":\"sess"))
        .unwrap();
    drop(journal);

    let restart = |at: SystemTime| {
        let (journal, events) = Journal::open(&path).unwrap();
        let mut e = Engine::new(Config::default(), at);
        for ev in events {
            e.apply(ev);
        }
        e.replayed();
        (journal, e)
    };
    let (mut journal, mut e2) = restart(t(11));
    assert_eq!(
        e2.status(RP, &s.session_id, t(11)).unwrap().end_result(),
        None
    );
    assert_eq!(e2.certificate(&handle).unwrap().state, "OK");
    assert_eq!(e2.pending(&d.id, t(11)).transactions.len(), 1);
    assert!(e2.take_events().is_empty());
    // Compaction keeps the same state in fewer lines.
    let before = journal.lines();
    journal.compact(&e2.snapshot(t(12))).unwrap();
    assert!(journal.lines() <= before, "{} > {before}", journal.lines());
    drop(journal);
    let (_, mut e3) = restart(t(13));
    assert_eq!(e3.certificate(&handle).unwrap().state, "OK");
    assert_eq!(e3.key_slot(&handle), Some((d.id.clone(), 0)));
    assert_eq!(e3.pending(&d.id, t(13)).transactions.len(), 1);
    // A changed line in the middle is corruption, not a torn write.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("{\"event\"", "{\"evnt\"", 1)).unwrap();
    assert!(Journal::open(&path).is_err());
}
