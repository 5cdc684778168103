//! What esigd checks of a Remote SCD service's onboarding answers (issue 12): the real `esigd`
//! binary and Identity BB, and a Remote SCD service that misbehaves on purpose (a stand-in
//! speaking RSCD API v1 over mutual TLS, as a compromised or broken service would). Nothing it
//! says makes esigd issue a certificate for a CSR that does not prove possession, carries another
//! challenge or another key type, or comes with a verification code not bound to the request;
//! and a signing answer made by another key than the registered certificate's is refused.
//!
//! The reference service and device app end to end are in `scd_onboarding.rs`.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use esigd_hsm::testing::TestToken;
use esigd_scd::api::{
    EndResult, OnboardingRequest, SessionCreated, SessionResult, SessionState, SessionStatus,
};
use esigd_scd::vc::Vc;
use esigd_testkit::api::{Reply, mtls, sha256_of_cert};
use esigd_testkit::idp::Idp;
use esigd_testkit::pki::Ca;
use esigd_testkit::{Daemon, config, esigd};
use esigd_web::net::{
    AllowList, EserviceTls, MtlsPem, Reloadable, ServeOptions, mtls_server_config, serve_eservice,
};
use serde_json::{Value, json};

const AUD: &str = "service-a";
const SECRET: &str = "service-a-secret";
const REDIRECT: &str = "http://127.0.0.1:9/cb";

/// How the stand-in answers, chosen by the `SCDRemoteId` the test sends.
#[derive(Default)]
struct Fake {
    /// sessionID → (behaviour, challenge as sent).
    sessions: HashMap<String, (String, String)>,
    /// Sessions esigd cancelled.
    cancelled: Vec<String>,
    /// Certificates delivered (key handles).
    delivered: Vec<String>,
    /// A key used for every `same-key-*` device.
    same_key: Option<p256::ecdsa::SigningKey>,
}

type Shared = Arc<Mutex<Fake>>;

fn csr(key: &p256::ecdsa::SigningKey, challenge: &str) -> Vec<u8> {
    use x509_cert::der::Encode;
    let subject = esigd_pki::identity::DnBuilder::new()
        .common_name("device")
        .unwrap()
        .build();
    esigd_pki::csr::build_csr_with_challenge::<_, p256::ecdsa::DerSignature>(
        key, subject, challenge,
    )
    .unwrap()
    .to_der()
    .unwrap()
}

async fn start(
    State(f): State<Shared>,
    Path((_ty, device)): Path<(String, String)>,
    Json(req): Json<OnboardingRequest>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if device == "unknown" {
        return (axum::http::StatusCode::NOT_FOUND, Json(json!({"status": 404, "code": "NOT_FOUND", "title": "Not Found", "detail": "not found"}))).into_response();
    }
    let id = format!("s{}", rand::random::<u32>());
    let challenge = B64.decode(&req.challenge).unwrap();
    let mut vc = Vc::issue(&id, &challenge, &mut rand::rngs::OsRng);
    if device == "wrong-vc" {
        // A code for another challenge: the page would show the citizen a code the device
        // would not show (or vice versa).
        vc = Vc::issue(&id, &[0u8; 32], &mut rand::rngs::OsRng);
    }
    f.lock()
        .unwrap()
        .sessions
        .insert(id.clone(), (device, req.challenge));
    Json(SessionCreated { session_id: id, vc }).into_response()
}

async fn status(State(f): State<Shared>, Path(id): Path<String>) -> Json<SessionStatus> {
    let (behaviour, challenge) = f.lock().unwrap().sessions.get(&id).cloned().unwrap();
    let mut st = SessionStatus::running();
    st.state = SessionState::Complete;
    let end = |r: EndResult| SessionResult {
        end_result: r,
        key_handle: Some(format!("handle-{id}")),
        details: None,
    };
    st.result = Some(end(EndResult::Ok));
    let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let der = match behaviour.as_str() {
        "sign-tampered" => {
            use p256::ecdsa::signature::hazmat::PrehashSigner;
            let digest = B64.decode(&challenge).unwrap();
            let other = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
            let sig: p256::ecdsa::Signature = other.sign_prehash(&digest).unwrap();
            st.signature = Some(esigd_scd::api::SignatureValue {
                value: B64.encode(sig.to_der().as_bytes()),
                signature_algorithm: esigd_scd::api::SignatureAlgorithm::Ecdsa,
                signature_algorithm_parameters: esigd_scd::api::AlgorithmParameters {
                    hash_algorithm: esigd_scd::api::HashAlgorithm::Sha256,
                },
            });
            st.signature_protocol = Some(esigd_scd::api::SignatureProtocol::RawDigestSignature);
            None
        }
        "refuse" => {
            st.result = Some(end(EndResult::UserRefused));
            None
        }
        "slow" => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            return Json(SessionStatus::running());
        }
        "wrong-challenge" => Some(csr(&key, &B64.encode([7u8; 32]))),
        "no-proof" => {
            // The signature does not verify under the CSR's key.
            let mut d = csr(&key, &challenge);
            let n = d.len();
            d[n - 3] ^= 0x01;
            Some(d)
        }
        "p384" => {
            let k = p384::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
            use x509_cert::der::Encode;
            let subject = esigd_pki::identity::DnBuilder::new()
                .common_name("device")
                .unwrap()
                .build();
            Some(
                esigd_pki::csr::build_csr_with_challenge::<_, p384::ecdsa::DerSignature>(
                    &k, subject, &challenge,
                )
                .unwrap()
                .to_der()
                .unwrap(),
            )
        }
        b if b.starts_with("same-key") => {
            let mut g = f.lock().unwrap();
            let k = g
                .same_key
                .get_or_insert_with(|| p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng))
                .clone();
            drop(g);
            Some(csr(&k, &challenge))
        }
        _ => Some(csr(&key, &challenge)),
    };
    st.csr = der.map(|d| B64.encode(d));
    Json(st)
}

/// A signing session: answered with a signature by a key that is not the registered one (a
/// tampered device app or service).
async fn start_signature(
    State(f): State<Shared>,
    Path(_handle): Path<String>,
    Json(req): Json<esigd_scd::api::SignatureRequest>,
) -> Json<SessionCreated> {
    let id = format!("s{}", rand::random::<u32>());
    let digest = B64
        .decode(&req.signature_protocol_parameters.digest)
        .unwrap();
    let vc = Vc::issue(&id, &digest, &mut rand::rngs::OsRng);
    // The display text picks the behaviour: "slow" never answers.
    let text = esigd_scd::interactions::decode(&req.interactions).unwrap()[0]
        .text()
        .to_owned();
    let behaviour = if text == "slow" {
        "slow"
    } else {
        "sign-tampered"
    };
    f.lock().unwrap().sessions.insert(
        id.clone(),
        (behaviour.into(), req.signature_protocol_parameters.digest),
    );
    Json(SessionCreated { session_id: id, vc })
}

async fn cancel(State(f): State<Shared>, Path(id): Path<String>) -> Json<Value> {
    f.lock().unwrap().cancelled.push(id);
    Json(json!({}))
}

async fn deliver(State(f): State<Shared>, Path(handle): Path<String>) -> axum::http::StatusCode {
    f.lock().unwrap().delivered.push(handle);
    axum::http::StatusCode::OK
}

struct Env {
    dir: tempfile::TempDir,
    _token: TestToken,
    idp: Idp,
    ca: PathBuf,
    client: (PathBuf, PathBuf),
    cfg: PathBuf,
    fake: Shared,
    _rt: tokio::runtime::Runtime,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let token = TestToken::create();
    let idp = Idp::start_with(&json!({
        "clients": [
            {"client_id": "esigd", "client_secret": "esigd-secret",
             "redirect_uris": ["http://127.0.0.1:9/esigd"], "introspect_any_token": true},
            {"client_id": AUD, "client_secret": SECRET, "redirect_uris": [REDIRECT]}
        ]
    }));
    let pki = Ca::new(dir.path(), "eservice-ca");
    let server = pki.issue("server", "/CN=esigd.test", "server_ext", None);
    let client = pki.issue("a", "/CN=service-a", "client_ext", None);
    let rscd = Ca::new(dir.path(), "rscd-ca");
    let rscd_server = rscd.issue("rscd", "/CN=localhost", "server_ext", None);
    let rp = rscd.issue("rp", "/CN=esigd", "client_ext", None);

    // The stand-in Remote SCD service, over mutual TLS.
    let fake: Shared = Arc::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let read = |p: &std::path::Path| std::fs::read(p).unwrap();
    let tls = mtls_server_config(&MtlsPem {
        cert_chain: &read(&rscd_server.0),
        key: &read(&rscd_server.1),
        client_ca: &read(&rscd.pem()),
        client_crl: None,
    })
    .unwrap();
    let app = Router::new()
        .route("/scd/v1/onboarding/device/{ty}/{device}", post(start))
        .route("/scd/v1/session/{id}", get(status))
        .route("/scd/v1/signature/key/{handle}", post(start_signature))
        .route("/scd/v1/session/{id}/cancel", post(cancel))
        .route("/scd/v1/keys/{handle}/certificate", post(deliver))
        .with_state(fake.clone());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(serve_eservice(
        listener,
        app,
        EserviceTls {
            config: Reloadable::from_arc(tls),
            allow: AllowList::new(vec!["127.0.0.0/8".parse().unwrap()]),
        },
        ServeOptions::default(),
        std::future::pending::<()>(),
    ));

    let toml = format!(
        r#"
[tls]
cert = {server:?}
key = {server_key:?}
client_ca = {ca:?}

[tsa]
allow_unsynchronized_clock = true

[identity]
issuer = {issuer:?}
client_id = "esigd"
client_secret = {{ env = "ESIGD_TEST_IDP_SECRET" }}
[identity.claims]
default_country = "EE"

[scd]
url = "https://localhost:{port}"
client_cert = {rp:?}
client_key = {rp_key:?}
server_ca = {rscd_ca:?}
relying_party_uuid = "00000000-0000-4000-8000-000000000001"
relying_party_name = "esigd test"
onboarding_timeout = "6s"
signing_timeout = "6s"

[[eservice]]
id = "svc-a"
name = "Land Registry"
client_cert_sha256 = {a_fp:?}
allowed_ips = ["127.0.0.1/32"]
id_token_audiences = ["{AUD}"]
"#,
        server = server.0,
        server_key = server.1,
        ca = pki.pem(),
        issuer = idp.issuer,
        rp = rp.0,
        rp_key = rp.1,
        rscd_ca = rscd.pem(),
        a_fp = sha256_of_cert(&client.0),
    );
    let cfg = config(dir.path(), &token, &toml);
    esigd_testkit::init(&cfg);
    Env {
        ca: pki.pem(),
        dir,
        _token: token,
        idp,
        client,
        cfg,
        fake,
        _rt: rt,
    }
}

fn create(d: &Daemon, env: &Env, token: &str, device: &str, slot: u32) -> Reply {
    let body = json!({"SCDRemoteId": device, "SCDKeyId": slot,
                      "requestTimestamp": humantime::format_rfc3339_seconds(SystemTime::now()).to_string()});
    let auth = format!("X-GovStack-AuthenticationToken: {token}");
    mtls(
        &d.eservice,
        &env.ca,
        Some(&env.client),
        "POST",
        "/v1/cert/create",
        &[
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body.to_string(),
        ],
    )
}

/// A signature by `pseudonym` over a digest of bytes `fill` showing `text` (the stand-in's
/// behaviour); the `GET /v1/sign/response` answer once it ended (long poll).
fn sign_by_pseudonym(d: &Daemon, env: &Env, pseudonym: &str, fill: u8, text: &str) -> Reply {
    let t = mtls(
        &d.eservice,
        &env.ca,
        Some(&env.client),
        "GET",
        &format!("/v1/token/pseodonym/{pseudonym}"),
        &[],
    );
    assert_eq!(t.status, 200, "{}", t.message());
    let h = format!("X-Pseodonym-Token: {}", t.json()["jwt"].as_str().unwrap());
    let body = json!({"format": "CAdES", "hash": B64.encode([fill; 32]), "hashType": "SHA2-256",
                      "dataToBeDisplayed": text})
    .to_string();
    let r = mtls(
        &d.eservice,
        &env.ca,
        Some(&env.client),
        "POST",
        "/v1/sign/pseudonym",
        &[
            "-H",
            &h,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
        ],
    );
    assert_eq!(r.status, 200, "{}", r.message());
    let id = r.json()["signatureId"].as_str().unwrap().to_owned();
    mtls(
        &d.eservice,
        &env.ca,
        Some(&env.client),
        "GET",
        &format!("/v1/sign/response/{id}?timeoutMs=20000"),
        &["--max-time", "30"],
    )
}

#[test]
fn a_misbehaving_remote_scd_service_gets_no_certificate() {
    let env = env();
    let mut cmd = esigd();
    cmd.arg("--config")
        .arg(&env.cfg)
        .args(esigd_testkit::SERVE)
        .env("ESIGD_TEST_IDP_SECRET", "esigd-secret");
    let d = Daemon::start_logged(cmd, env.dir.path().join("esigd.log"));
    let mari = env.idp.tokens(AUD, SECRET, REDIRECT, "mari");

    // A well-behaved answer: issued, delivered to the service under the session's key handle.
    let ok = create(&d, &env, &mari.access_token, "good", 0);
    assert_eq!(ok.status, 200, "{}", ok.message());
    assert_eq!(env.fake.lock().unwrap().delivered.len(), 1);

    for (device, status, says) in [
        ("wrong-challenge", 502, "challengePassword"),
        ("no-proof", 502, "CSR"),
        ("p384", 502, "not the ECDSA P-256 asked for"),
        ("wrong-vc", 502, "verification code"),
        ("refuse", 403, "refused"),
        ("unknown", 404, "SCDRemoteId"),
        ("slow", 504, "did not answer within 6 s"),
    ] {
        let r = create(&d, &env, &mari.access_token, device, 0);
        assert_eq!(r.status, status, "{device}: {}", r.message());
        assert!(r.message().contains(says), "{device}: {}", r.message());
    }
    // The same key twice (another slot): certified once only.
    let first = create(&d, &env, &mari.access_token, "same-key-a", 0);
    assert_eq!(first.status, 200, "{}", first.message());
    let again = create(&d, &env, &mari.access_token, "same-key-b", 0);
    assert_eq!(again.status, 502, "{}", again.message());
    assert!(
        again.message().contains("already has certificate"),
        "{}",
        again.message()
    );

    // The wrong code's and the slow session were cancelled at the service.
    let f = env.fake.lock().unwrap();
    let behaviour_of = |id: &String| f.sessions.get(id).map(|(b, _)| b.as_str());
    let cancelled: Vec<_> = f.cancelled.iter().filter_map(behaviour_of).collect();
    assert!(
        cancelled.contains(&"wrong-vc") && cancelled.contains(&"slow"),
        "{cancelled:?}"
    );
    // Only the two good answers were delivered.
    assert_eq!(f.delivered.len(), 2, "{:?}", f.delivered);
    drop(f);

    // A signature whose answer is made by another key than the registered one is refused
    // (and logged); no signature is stored.
    let pseudonym = ok.json()["pseudonym"].as_str().unwrap().to_owned();
    let r = sign_by_pseudonym(&d, &env, &pseudonym, 9, "Lease");
    assert_eq!(r.status, 502, "{}", r.message());
    assert!(r.message().starts_with("device_failed"), "{}", r.message());
    let log = std::fs::read_to_string(env.dir.path().join("esigd.log")).unwrap();
    assert!(
        log.contains("does not verify with the registered certificate"),
        "not logged"
    );

    // A device that never answers: the signature ends as a timeout after scd.signing_timeout
    // (6 s) and the session is cancelled at the service.
    let r = sign_by_pseudonym(&d, &env, &pseudonym, 8, "slow");
    assert_eq!(r.status, 504, "{}", r.message());
    assert!(r.message().starts_with("timeout"), "{}", r.message());
    {
        // The slow onboarding's and the slow signature's sessions were cancelled.
        let f = env.fake.lock().unwrap();
        let slow = f
            .cancelled
            .iter()
            .filter(|id| f.sessions.get(*id).is_some_and(|(b, _)| b == "slow"))
            .count();
        assert_eq!(slow, 2, "{:?}", f.cancelled);
    }

    // Only the two good certificates exist for the citizen.
    let auth = format!("X-GovStack-AuthenticationToken: {}", mari.access_token);
    let list = mtls(
        &d.eservice,
        &env.ca,
        Some(&env.client),
        "GET",
        "/v1/cert/list",
        &["-H", &auth],
    );
    assert_eq!(list.status, 200);
    assert_eq!(
        list.json().as_array().unwrap().len(),
        2,
        "{}",
        String::from_utf8_lossy(&list.body)
    );
    d.stop();
}
