//! The service over HTTP (axum routers driven in process): status codes, problem documents,
//! Retry-After, device-call authentication and the long polls.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use esigd_remote_scd::engine::Config;
use esigd_remote_scd::http::{RelyingParty, Service, device_router, rp_router};
use esigd_scd::api::*;
use esigd_scd::device::*;
use esigd_scd::interactions::{self, Interaction};
use esigd_scd::jws;
use p256::ecdsa::SigningKey;
use rand_core::OsRng;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

const PUBLIC: &str = "https://rscd.test";

struct World {
    _dir: tempfile::TempDir,
    rp: Router,
    other_rp: Router,
    device: Router,
}

fn world(cfg: Config) -> World {
    let dir = tempfile::tempdir().unwrap();
    let svc: Arc<Service> =
        Service::open(cfg, &dir.path().join("journal"), PUBLIC, SystemTime::now()).unwrap();
    World {
        rp: rp_router(svc.clone()).layer(axum::Extension(RelyingParty("rp-1".into()))),
        other_rp: rp_router(svc.clone()).layer(axum::Extension(RelyingParty("rp-2".into()))),
        device: device_router(svc),
        _dir: dir,
    }
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, headers, body)
}

fn post(path: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

struct Dev {
    id: String,
    auth: SigningKey,
}

impl Dev {
    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Request<Body> {
        let mut jti = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut OsRng, &mut jti);
        let url = format!("{PUBLIC}{}", path.split('?').next().unwrap());
        let token = jws::sign_call(
            &self.auth,
            &DeviceCallClaims {
                htm: method.into(),
                htu: url,
                iat: SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_secs() as i64,
                jti: URL_SAFE_NO_PAD.encode(jti),
                device_id: self.id.clone(),
            },
        )
        .unwrap();
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("DeviceJWS {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
            .unwrap()
    }
}

async fn register(w: &World) -> Dev {
    let auth = SigningKey::random(&mut OsRng);
    let reg = json!({
        "deviceAuthKey": jws::jwk_of(auth.verifying_key()),
        "agentVersion": "test/1",
        "capabilities": {"interactions": ["displayTextAndPIN"],
            "keySpecs": [{"algorithm": "EC", "curve": "P-256"}], "signatureAlgorithms": ["ecdsa"]}
    });
    let (status, _, body) = send(&w.device, post("/device/v1/devices", &reg)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    Dev {
        id: body["deviceId"].as_str().unwrap().to_owned(),
        auth,
    }
}

fn onboarding_body(challenge: &[u8]) -> Value {
    json!({
        "relyingPartyUUID": "00000000-0000-4000-8000-000000000000",
        "relyingPartyName": "esigd",
        "subject": {"sub": "citizen-1"},
        "scdKeyId": 0,
        "keySpec": {"algorithm": "EC", "curve": "P-256"},
        "challenge": STANDARD.encode(challenge),
        "interactions": interactions::encode(&[Interaction::DisplayTextAndPin {
            display_text60: "Create your signing key".into(),
        }]).unwrap(),
    })
}

#[tokio::test]
async fn onboarding_over_http_with_long_polls() {
    let w = world(Config::default());
    let dev = register(&w).await;
    let challenge = [9u8; 32];
    let path = format!("/scd/v1/onboarding/device/REMOTE_SCD_REF/{}", dev.id);
    let (status, _, created) = send(&w.rp, post(&path, &onboarding_body(&challenge))).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let created: SessionCreated = serde_json::from_value(created).unwrap();
    created.vc.check(&created.session_id, &challenge).unwrap();
    let session = format!("/scd/v1/session/{}", created.session_id);

    // The RP's long poll answers RUNNING at its timeout.
    let start = Instant::now();
    let (status, _, body) = send(
        &w.rp,
        Request::get(format!("{session}?timeoutMs=1000"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (StatusCode::OK, Some("RUNNING"))
    );
    assert!(start.elapsed() >= Duration::from_millis(900));
    // Another RP does not see it.
    let (status, _, body) = send(
        &w.other_rp,
        Request::get(&session).body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["errors"][0]["code"], "NOT_FOUND");

    // The device's long poll lists it.
    let list_path = format!("/device/v1/devices/{}/transactions?waitMs=1000", dev.id);
    let (status, _, list) = send(&w.device, dev.request("GET", &list_path, None)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["transactions"][0]["transactionId"], created.session_id);
    let tx_path = format!("/device/v1/transactions/{}", created.session_id);
    let (status, _, tx) = send(&w.device, dev.request("GET", &tx_path, None)).await;
    assert_eq!(status, StatusCode::OK, "{tx}");
    let tx: Transaction = serde_json::from_value(tx).unwrap();
    tx.vc.check(&tx.transaction_id, &challenge).unwrap();

    // The RP waits while the device answers; the poll returns as soon as the result is in.
    let rp = w.rp.clone();
    let waiting = tokio::spawn(async move {
        let t0 = Instant::now();
        let r = send(
            &rp,
            Request::get(format!("{session}?timeoutMs=30000"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        (r, t0.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let key = SigningKey::random(&mut OsRng);
    let subject = esigd_pki::identity::DnBuilder::new()
        .common_name("k")
        .unwrap()
        .build();
    let csr = esigd_pki::csr::build_csr_with_challenge::<_, p256::ecdsa::DerSignature>(
        &key,
        subject,
        &STANDARD.encode(challenge),
    )
    .unwrap();
    let proof = jws::sign_proof(
        &dev.auth,
        &ProofClaims {
            transaction_id: tx.transaction_id.clone(),
            kind: TransactionType::Onboard,
            bound_sha256: URL_SAFE_NO_PAD.encode(Sha256::digest(challenge)),
            vc: tx.vc.value.clone(),
            interactions_sha256: URL_SAFE_NO_PAD.encode(interactions::digest(&tx.interactions)),
            outcome: Outcome::Ok,
            iat: 0,
        },
    )
    .unwrap();
    let result = json!({
        "outcome": "OK",
        "interactionTypeUsed": "displayTextAndPIN",
        "csr": STANDARD.encode(der::Encode::to_der(&csr).unwrap()),
        "proof": proof,
    });
    let req = dev.request("POST", &format!("{tx_path}/result"), Some(&result));
    let replay = Request::builder()
        .method("POST")
        .uri(format!("{tx_path}/result"))
        .header(
            header::AUTHORIZATION,
            req.headers()[header::AUTHORIZATION].clone(),
        )
        .body(Body::from(result.to_string()))
        .unwrap();
    let (status, _, body) = send(&w.device, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let device_handle = body["keyHandle"].as_str().unwrap().to_owned();
    let ((status, _, body), waited) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["state"], "COMPLETE");
    assert_eq!(body["result"]["endResult"], "OK");
    assert_eq!(body["result"]["keyHandle"], device_handle.as_str());
    assert!(body["csr"].is_string());
    assert!(waited < Duration::from_secs(20), "{waited:?}");

    // The same signed call again: refused (jti), as problem+json.
    let (status, headers, body) = send(&w.device, replay).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    assert!(body["detail"].as_str().unwrap().contains("jti"), "{body}");
}

#[tokio::test]
async fn errors_are_problems_with_the_field_and_retry_after() {
    let w = world(Config {
        push_limit: 1,
        ..Config::default()
    });
    let dev = register(&w).await;
    let path = format!("/scd/v1/onboarding/device/REMOTE_SCD_REF/{}", dev.id);
    // A short challenge: 400 naming the field.
    let (status, _, body) = send(&w.rp, post(&path, &onboarding_body(&[1u8; 8]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errors"][0]["pointer"], "/challenge");
    // Not JSON at all.
    let (status, _, body) = send(&w.rp, Request::post(&path).body(Body::from("{")).unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // The first session is accepted, the second for the same device is refused (one running
    // onboarding per device), and after it ends, the push limit answers 429 with Retry-After.
    let (status, _, created) = send(&w.rp, post(&path, &onboarding_body(&[1u8; 32]))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = send(&w.rp, post(&path, &onboarding_body(&[2u8; 32]))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["errors"][0]["code"], "SESSION_IN_PROGRESS");
    let cancel = format!(
        "/scd/v1/session/{}/cancel",
        created["sessionID"].as_str().unwrap()
    );
    let (status, _, _) = send(&w.rp, Request::post(&cancel).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, headers, body) = send(&w.rp, post(&path, &onboarding_body(&[3u8; 32]))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let retry: u64 = headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=600).contains(&retry), "{retry}");
    // timeoutMs out of range.
    let (status, _, body) = send(
        &w.rp,
        Request::get("/scd/v1/session/x?timeoutMs=5")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errors"][0]["paramName"], "timeoutMs");
    // Device calls without or with a wrong Authorization.
    let list = format!("/device/v1/devices/{}/transactions?waitMs=0", dev.id);
    let (status, _, _) = send(&w.device, Request::get(&list).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let wrong_url = dev.request("GET", "/device/v1/devices/other/transactions", None);
    let forged = Request::get(&list)
        .header(
            header::AUTHORIZATION,
            wrong_url.headers()[header::AUTHORIZATION].clone(),
        )
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&w.device, forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("htu"), "{body}");
}
