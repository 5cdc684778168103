//! The `esigd-remote-scd` binary and the reference device app `esigd-device` as real processes over
//! real TLS: the relying party (this test, as esigd would) calls the RP API over mutual TLS with a
//! client certificate from `scripts/dev-rscd-pki.sh`; the device runs in `--cli` mode with its own
//! SoftHSM token and takes the citizen's decisions as JSON lines on stdin.
//!
//! `esigd-device` is the binary of another package: it is found next to this test's directory
//! (`target/<profile>/esigd-device`, built by `cargo build --workspace` or a whole-workspace
//! `cargo nextest run`), or at `$ESIGD_DEVICE_BIN`.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use esigd_pki::certificate::{CertificateTemplate, build_certificate, random_serial};
use esigd_pki::identity::DnBuilder;
use esigd_pki::keys::{DigestSignatureScheme, verify_digest_signature};
use esigd_scd::api::*;
use esigd_scd::interactions::{self, Interaction};
use esigd_testkit::free_port;
use esigd_testkit::rscd::{
    Device, PIN, Pki, Rscd, WRONG_PIN, start_device, start_rscd, wait_for_log,
};
use rand_core::{OsRng, RngCore};
use serde_json::Value;
use sha2::Digest;

/// esigd's side: an HTTP client of the RP API with esigd's client certificate.
/// esigd's client identity (certificate + key, PEM).
fn rp_identity(pki: &Pki) -> reqwest::Identity {
    let mut pem = std::fs::read(pki.path("esigd-rp.pem")).unwrap();
    pem.extend(std::fs::read(pki.path("esigd-rp.key")).unwrap());
    reqwest::Identity::from_pem(&pem).unwrap()
}

fn rp_ca(pki: &Pki) -> reqwest::Certificate {
    reqwest::Certificate::from_pem(&std::fs::read(pki.path("rscd-ca.pem")).unwrap()).unwrap()
}

fn rp_client(pki: &Pki) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(rp_ca(pki))
        .identity(rp_identity(pki))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn post(rp: &reqwest::Client, url: String, body: &impl serde::Serialize) -> (u16, Value) {
    let r = rp.post(url).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Polls the session until COMPLETE.
async fn complete(rp: &reqwest::Client, rscd: &Rscd, session: &str) -> Value {
    let start = Instant::now();
    loop {
        let v: Value = rp
            .get(rscd.rp_url(&format!("/scd/v1/session/{session}?timeoutMs=2000")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["state"] == "COMPLETE" {
            return v;
        }
        assert_eq!(v["state"], "RUNNING", "{v}");
        assert!(start.elapsed() < Duration::from_secs(90), "still {v}");
    }
}

fn shown_text(text: &str) -> String {
    interactions::encode(&[Interaction::DisplayTextAndPin {
        display_text60: text.into(),
    }])
    .unwrap()
}

fn signing(digest: &[u8]) -> SignatureRequest {
    let mut nonce = [0u8; 8];
    OsRng.fill_bytes(&mut nonce);
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
        interactions: shown_text("Sign the lease"),
        nonce: Some(STANDARD.encode(nonce)),
    }
}

/// Service, device, and an onboarded key with its certificate delivered.
struct World {
    tmp: tempfile::TempDir,
    pki: Pki,
    rscd: Rscd,
    device: Device,
    rp: reqwest::Client,
    key_handle: String,
    /// The registered key (from the CSR).
    spki: spki::SubjectPublicKeyInfoOwned,
}

impl World {
    async fn onboarded() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::new(tmp.path());
        let rscd = start_rscd(
            &pki,
            &tmp.path().join("rscd"),
            free_port(),
            free_port(),
            &tmp.path().join("rscd.log"),
        );
        let mut device = start_device(
            &pki,
            &rscd,
            &tmp.path().join("device"),
            &tmp.path().join("device.log"),
        );
        let rp = rp_client(&pki);

        // Onboarding: the device creates a key in its token behind the PIN the citizen chooses.
        let mut challenge = [0u8; 32];
        OsRng.fill_bytes(&mut challenge);
        let challenge = STANDARD.encode(challenge);
        let req = OnboardingRequest {
            relying_party_uuid: "00000000-0000-4000-8000-000000000000".into(),
            relying_party_name: "esigd".into(),
            subject: Subject {
                sub: "psut-1234".into(),
                display_name: Some("Jane Doe".into()),
            },
            scd_key_id: 0,
            key_spec: KeySpec::Ec { curve: Curve::P256 },
            challenge: challenge.clone(),
            interactions: shown_text("Create your signing key"),
            nonce: None,
        };
        let (status, created) = post(
            &rp,
            rscd.rp_url(&format!(
                "/scd/v1/onboarding/device/REMOTE_SCD/{}",
                device.id
            )),
            &req,
        )
        .await;
        assert_eq!(status, 200, "{created}");
        let session = created["sessionID"].as_str().unwrap().to_owned();
        let screen = device.shown(&session);
        assert_eq!(screen["type"], "ONBOARD", "{screen}");
        assert_eq!(screen["rpName"], "esigd");
        assert_eq!(
            screen["vc"], created["vc"]["value"],
            "the same code on both sides"
        );
        assert_eq!(screen["choosePin"], true, "{screen}");
        // Two different PINs are refused on the device; the request stays.
        let again = device.confirm(&session, PIN, Some("000000"));
        assert!(again["again"].is_string(), "{again}");
        let again = device.next();
        assert_eq!(again["transactionId"], session.as_str(), "{again}");
        let sent = device.confirm(&session, PIN, Some(PIN));
        assert_eq!(sent["sent"], "OK", "{sent}");

        let done = complete(&rp, &rscd, &session).await;
        assert_eq!(done["result"]["endResult"], "OK", "{done}");
        let key_handle = done["result"]["keyHandle"].as_str().unwrap().to_owned();
        let csr_der = STANDARD.decode(done["csr"].as_str().unwrap()).unwrap();
        let csr = esigd_pki::csr::parse_csr(&csr_der).unwrap();
        assert_eq!(
            csr.challenge_password().unwrap().as_deref(),
            Some(challenge.as_str()),
            "the CSR is bound to this onboarding"
        );
        let spki = csr.public_key().clone();
        let spki_der = der::Encode::to_der(&spki).unwrap();
        assert!(
            device.token_public_keys().contains(&spki_der),
            "the CSR's key is on the device's token"
        );

        // esigd's CA certifies the key; the certificate goes to the service (and the device).
        let ca = p256::ecdsa::SigningKey::random(&mut OsRng);
        let now = SystemTime::now();
        let cert = build_certificate::<_, p256::ecdsa::DerSignature>(
            &ca,
            CertificateTemplate {
                serial: random_serial(&mut OsRng).unwrap(),
                issuer: DnBuilder::new().common_name("CA").unwrap().build(),
                subject: DnBuilder::new().common_name("Jane Doe").unwrap().build(),
                public_key: spki.clone(),
                not_before: now,
                not_after: now + Duration::from_secs(3600),
                extensions: vec![],
            },
        )
        .unwrap();
        let delivery = CertificateDelivery {
            certificate: STANDARD.encode(der::Encode::to_der(&cert).unwrap()),
            chain: vec![],
        };
        let r = rp
            .post(rscd.rp_url(&format!("/scd/v1/keys/{key_handle}/certificate")))
            .json(&delivery)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
        World {
            tmp,
            pki,
            rscd,
            device,
            rp,
            key_handle,
            spki,
        }
    }

    /// Starts a signing session over `digest`; returns its ID after checking the device shows it
    /// with the same code.
    async fn start_signing(&mut self, digest: &[u8]) -> String {
        let (status, created) = post(
            &self.rp,
            self.rscd
                .rp_url(&format!("/scd/v1/signature/key/{}", self.key_handle)),
            &signing(digest),
        )
        .await;
        assert_eq!(status, 200, "{created}");
        let session = created["sessionID"].as_str().unwrap().to_owned();
        let screen = self.device.shown(&session);
        assert_eq!(screen["type"], "SIGN", "{screen}");
        assert_eq!(screen["text"], "Sign the lease", "{screen}");
        assert_eq!(screen["vc"], created["vc"]["value"], "{screen}");
        session
    }

    /// Signs `digest` with the right PIN and checks the signature with the registered key; returns
    /// the session's final state.
    async fn sign_ok(&mut self, digest: &[u8]) -> Value {
        let session = self.start_signing(digest).await;
        let sent = self.device.confirm(&session, PIN, None);
        assert_eq!(sent["sent"], "OK", "{sent}");
        let done = complete(&self.rp, &self.rscd, &session).await;
        assert_eq!(done["result"]["endResult"], "OK", "{done}");
        assert_eq!(done["signatureProtocol"], "RAW_DIGEST_SIGNATURE", "{done}");
        let sig = STANDARD
            .decode(done["signature"]["value"].as_str().unwrap())
            .unwrap();
        verify_digest_signature(
            "device signature",
            &self.spki,
            DigestSignatureScheme::Ecdsa,
            digest,
            &sig,
        )
        .unwrap();
        done
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for e in std::fs::read_dir(self.tmp.path()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "log") {
                all.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
        all
    }
}

fn digest(text: &str) -> [u8; 32] {
    sha2::Sha256::digest(text.as_bytes()).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_then_signing_verifies_with_the_csr_key() {
    let mut w = World::onboarded().await;
    w.sign_ok(&digest("lease 1")).await;
    w.sign_ok(&digest("lease 2")).await;
    // The device fetched its certificate into its token (at a poll after the delivery).
    wait_for_log(
        &w.device.log,
        "certificate stored on the token",
        Duration::from_secs(60),
    );
    assert_eq!(w.device.token_certificates().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_citizen_refuses() {
    let mut w = World::onboarded().await;
    let session = w.start_signing(&digest("not this one")).await;
    let sent = w.device.decide(serde_json::json!({
        "transactionId": session, "decision": "refuse"
    }));
    assert_eq!(sent["sent"], "USER_REFUSED_INTERACTION", "{sent}");
    let done = complete(&w.rp, &w.rscd, &session).await;
    // The citizen pressed Refuse on the PIN screen: Smart-ID's refusal on an interaction.
    assert_eq!(
        done["result"]["endResult"], "USER_REFUSED_INTERACTION",
        "{done}"
    );
    assert_eq!(
        done["result"]["details"]["interaction"], "displayTextAndPIN",
        "{done}"
    );
    assert!(done.get("signature").is_none_or(Value::is_null), "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_wrong_pins_lock_the_key() {
    let mut w = World::onboarded().await;
    let session = w.start_signing(&digest("guess")).await;
    for left in [2, 1] {
        let again = w.device.confirm(&session, WRONG_PIN, None);
        let msg = again["again"].as_str().unwrap_or_default().to_owned();
        assert!(msg.contains(&format!("{left} tries left")), "{again}");
        let screen = w.device.next();
        assert_eq!(screen["transactionId"], session.as_str(), "{screen}");
        assert!(screen["message"].is_string(), "{screen}");
    }
    let sent = w.device.confirm(&session, WRONG_PIN, None);
    assert_eq!(sent["sent"], "DOCUMENT_UNUSABLE", "{sent}");
    let done = complete(&w.rp, &w.rscd, &session).await;
    assert_eq!(done["result"]["endResult"], "DOCUMENT_UNUSABLE", "{done}");
    assert_eq!(done["result"]["details"]["reason"], "PIN_LOCKED", "{done}");

    // Locked: even the right PIN gets DOCUMENT_UNUSABLE now.
    let session = w.start_signing(&digest("after the lock")).await;
    let sent = w.device.confirm(&session, PIN, None);
    assert_eq!(sent["sent"], "DOCUMENT_UNUSABLE", "{sent}");
    let done = complete(&w.rp, &w.rscd, &session).await;
    assert_eq!(done["result"]["endResult"], "DOCUMENT_UNUSABLE", "{done}");
    assert_eq!(done["result"]["details"]["reason"], "PIN_LOCKED", "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_service_keeps_the_device_and_its_key() {
    let mut w = World::onboarded().await;
    let (rp_port, device_port) = (w.rscd.rp_port, w.rscd.device_port);

    // SIGTERM: a graceful stop, which does not wait for the device's open long poll.
    let stopping = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &w.rscd.proc.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = w.rscd.proc.0.wait().unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "graceful stop took {:?}",
        stopping.elapsed()
    );
    wait_for_log(&w.rscd.log, "stopped", Duration::from_secs(1));
    w.rscd = start_rscd(
        &w.pki,
        &w.tmp.path().join("rscd"),
        rp_port,
        device_port,
        &w.tmp.path().join("rscd-2.log"),
    );
    let replayed = wait_for_log(&w.rscd.log, "journal replayed", Duration::from_secs(5));
    assert!(!replayed.contains("events=0"), "{replayed}");
    // The device reconnects by itself and signs with the same key.
    w.sign_ok(&digest("after a graceful restart")).await;

    // SIGKILL: nothing is flushed at exit; the journal was fsynced before each answer.
    w.rscd.proc.0.kill().unwrap();
    w.rscd.proc.0.wait().unwrap();
    w.rscd = start_rscd(
        &w.pki,
        &w.tmp.path().join("rscd"),
        rp_port,
        device_port,
        &w.tmp.path().join("rscd-3.log"),
    );
    w.sign_ok(&digest("after a crash")).await;
    // The key's certificate survived too.
    let (status, cert) = post(
        &w.rp,
        w.rscd
            .rp_url(&format!("/scd/v1/signature/certificate/{}", w.key_handle)),
        &serde_json::json!({
            "relyingPartyUUID": "00000000-0000-4000-8000-000000000000",
            "relyingPartyName": "esigd"
        }),
    )
    .await;
    assert_eq!(status, 200, "{cert}");
    assert_eq!(cert["state"], "OK", "{cert}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relying_party_without_a_client_certificate_is_refused_at_the_handshake() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let rscd = start_rscd(
        &pki,
        &tmp.path().join("rscd"),
        free_port(),
        free_port(),
        &tmp.path().join("rscd.log"),
    );
    let anonymous = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(rp_ca(&pki))
        .build()
        .unwrap();
    let err = anonymous
        .get(rscd.rp_url("/scd/v1/session/x"))
        .send()
        .await
        .unwrap_err();
    assert!(err.status().is_none(), "no HTTP answer at all: {err:?}");
    wait_for_log(
        &rscd.log,
        "peer sent no certificates",
        Duration::from_secs(5),
    );
    // With esigd's certificate the same call gets an HTTP answer (404: no such session).
    let r = rp_client(&pki)
        .get(rscd.rp_url("/scd/v1/session/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // The device API asks for no certificate: it answers an anonymous client.
    let r = anonymous
        .post(format!("{}/device/v1/devices", rscd.device_url()))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pin_in_the_logs_of_either_process() {
    let mut w = World::onboarded().await;
    let session = w.start_signing(&digest("wrong then right")).await;
    let again = w.device.confirm(&session, WRONG_PIN, None);
    assert!(again["again"].is_string(), "{again}");
    let _ = w.device.next();
    let sent = w.device.confirm(&session, PIN, None);
    assert_eq!(sent["sent"], "OK", "{sent}");
    let done = complete(&w.rp, &w.rscd, &session).await;
    assert_eq!(done["result"]["endResult"], "OK", "{done}");
    let done = w.sign_ok(&digest("right at once")).await;
    let logs = w.logs();
    // Nor the signature or the device's proof (the device's call tokens are in no log line
    // either: they would show up as `DeviceJWS ey…`).
    for value in [&done["signature"]["value"], &done["deviceProof"]] {
        let value = value.as_str().unwrap();
        assert!(!logs.contains(value), "{value} in the logs:\n{logs}");
    }
    assert!(!logs.contains("DeviceJWS ey"), "a call token in the logs");
    // Both processes logged at debug level: the check reads real output.
    assert!(logs.contains("esigd-remote-scd serving"), "{logs}");
    assert!(logs.contains("answer sent"), "{logs}");
    for secret in [PIN, WRONG_PIN] {
        assert!(!logs.contains(secret), "a PIN in the logs:\n{logs}");
    }
}
