//! The one-time signing workflow in process (real SoftHSM token, RocksDB, CA and TSA): a caller
//! that goes away mid-signature must not leave the work half done.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use esigd::config::{Config, PaymentSection};
use esigd_hsm::Hsm;
use esigd_hsm::testing::TestToken;
use esigd_pki::identity::IdentityClaims;
use esigd_service::Service;
use esigd_service::clock::Clock;
use esigd_service::signing::onetime::{OneTimeRequest, sign_with_payment};
use esigd_service::signing::{HashType, SignSpec};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

fn app(dir: &std::path::Path, token: &TestToken, payment_pub: &std::path::Path) -> Arc<Service> {
    let hsm = Hsm::open(token.config()).unwrap();
    let mut cfg = Config::dev_defaults(dir);
    let tls = esigd::devsetup::ensure_dev_tls(&cfg).unwrap();
    esigd::devsetup::apply_dev_registrations(&mut cfg, &tls).unwrap();
    cfg.payment = Some(PaymentSection {
        audience: "esigd".into(),
        issuer: None,
        key_file: Some(payment_pub.to_path_buf()),
        jwks_url: None,
        algorithms: vec!["ES256".into()],
        eservice_claim: None,
    });
    Arc::new(
        esigd::wiring::build_service(
            &cfg,
            hsm,
            Arc::new(esigd_service::meter::NoMeter),
            esigd_service::clock::system(),
            esigd::wiring::kernel_discipline(),
        )
        .unwrap(),
    )
}

/// The request future is dropped right after it started (a browser closed, a client timed out):
/// the signature is still made, stored with its audit event, and the payment stays used (not
/// half spent, not lost with no signature); shutdown's wait for the signing tasks covers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_request_still_finishes_the_signature_and_its_audit_event() {
    let dir = tempfile::tempdir().unwrap();
    let token = TestToken::create();
    let key = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let payment_pub = dir.path().join("payment.pem");
    std::fs::write(
        &payment_pub,
        key.public_key().to_public_key_pem(LineEnding::LF).unwrap(),
    )
    .unwrap();
    // Building the state blocks (HSM, store): not on an async worker.
    let app = tokio::task::block_in_place(|| app(dir.path(), &token, &payment_pub));
    let jwt = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &serde_json::json!({
            "aud": "esigd", "jti": "dropped-1",
            "exp": esigd_service::clock::SystemClock.unix_now() + 300,
        }),
        &EncodingKey::from_ec_pem(key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes()).unwrap(),
    )
    .unwrap();
    let verifier = app.payment.as_ref().unwrap();
    let payment = verifier.verify(&jwt, "demo").await.unwrap();
    let started = SystemTime::now();
    let request = OneTimeRequest {
        eservice: "demo".into(),
        identity: IdentityClaims {
            name: Some("Mari Maasikas".into()),
            personal_identifier: Some("49005170001".into()),
            country: Some("EE".into()),
            ..Default::default()
        },
        spec: SignSpec::single(
            esigd_formats::Format::Cades,
            HashType::Sha256,
            vec![7u8; 32],
        ),
        request_id: "dropped-request".into(),
        contact: None,
        display: None,
    };
    // Polled for a moment, then dropped long before a signature can be ready.
    let dropped = tokio::time::timeout(
        Duration::from_micros(50),
        sign_with_payment(&app.onetime, Some(payment), request),
    )
    .await;
    assert!(dropped.is_err(), "the signature was not expected this fast");

    // Shutdown's wait: the signing task is tracked, so once it is done the signature is stored.
    app.onetime.tasks().close();
    tokio::time::timeout(Duration::from_secs(30), app.onetime.tasks().wait())
        .await
        .expect("the signing task finishes");
    let (events, _) = app
        .signatures
        .audit_range(
            started,
            SystemTime::now() + Duration::from_secs(1),
            None,
            10,
        )
        .unwrap();
    let created = events.into_iter().find(|e| {
        e.request_id.as_deref() == Some("dropped-request") && e.event == "signature.created"
    });
    let created =
        created.expect("no audit event for the dropped request: the signature was cut off");
    assert_eq!(created.event, "signature.created");
    let id: [u8; 32] = hex::decode(created.signature_id.as_deref().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let record = app.signatures.get(&id).unwrap().expect("stored signature");
    assert!(!record.timestamp.is_empty() && !record.signature.is_empty());
    assert!(matches!(
        verifier.verify(&jwt, "demo").await,
        Err(esigd_service::payment::PaymentError::Reused)
    ));
}
