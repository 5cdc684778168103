//! The appliance's Remote SCD connector against the reference service's RP API, over real mutual
//! TLS (the e-Service listener's accept loop serves the reference router; PKI made by openssl).
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use esigd_remote_scd::engine::Config;
use esigd_remote_scd::http::{RelyingParty, Service, rp_router};
use esigd_scd::api::*;
use esigd_scd::connector::{ConnectorError, RemoteScdConnector};
use esigd_scd::interactions::{self, Interaction};
use esigd_service::scd::{RscdConnector, RscdSettings};
use esigd_testkit::pki::Ca;
use esigd_web::net::{
    AllowList, EserviceTls, MtlsPem, PeerInfo, Reloadable, ServeOptions, mtls_server_config,
    serve_eservice,
};
use tokio::net::TcpListener;

struct Setup {
    _tmp: tempfile::TempDir,
    url: String,
    ca_pem: Vec<u8>,
    identity: Vec<u8>,
    foreign_identity: Vec<u8>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "rscd-test-ca");
    let other = Ca::new(tmp.path(), "other-ca");
    let (server, server_key) = ca.issue("server", "/CN=rscd.test", "server_ext", None);
    let (client, client_key) = ca.issue("client", "/CN=esigd", "client_ext", None);
    let (foreign, foreign_key) = other.issue("foreign", "/CN=esigd", "client_ext", None);
    let read = |p: &std::path::Path| std::fs::read(p).unwrap();
    let ca_pem = read(&ca.pem());
    let tls = mtls_server_config(&MtlsPem {
        cert_chain: &read(&server),
        key: &read(&server_key),
        client_ca: &ca_pem,
        client_crl: None,
    })
    .unwrap();
    let svc = Service::open(
        Config::default(),
        &tmp.path().join("journal"),
        "https://rscd.test",
        SystemTime::now(),
    )
    .unwrap();
    // The relying party is the client certificate, as the reference binary names it.
    let app = rp_router(svc).layer(axum::middleware::from_fn(
        |mut req: axum::extract::Request, next: axum::middleware::Next| async move {
            if let Some(p) = req.extensions().get::<Arc<PeerInfo>>().cloned() {
                req.extensions_mut()
                    .insert(RelyingParty(p.cert_sha256_hex()));
            }
            next.run(req).await
        },
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_eservice(
        listener,
        app,
        EserviceTls {
            config: Reloadable::from_arc(tls),
            allow: AllowList::new(vec!["127.0.0.0/8".parse().unwrap()]),
        },
        ServeOptions::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut identity = read(&client);
    identity.extend(read(&client_key));
    let mut foreign_identity = read(&foreign);
    foreign_identity.extend(read(&foreign_key));
    Setup {
        url: format!("https://localhost:{}", addr.port()),
        ca_pem,
        identity,
        foreign_identity,
        _tmp: tmp,
        _stop: stop,
    }
}

fn connector(s: &Setup, identity: &[u8], ca: &[u8]) -> RscdConnector {
    RscdConnector::new(&RscdSettings {
        base_url: s.url.clone(),
        client_identity_pem: identity.to_vec(),
        server_ca_pem: ca.to_vec(),
        request_timeout: Duration::from_secs(10),
    })
    .unwrap()
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
        interactions: interactions::encode(&[Interaction::DisplayTextAndPin {
            display_text60: "Sign".into(),
        }])
        .unwrap(),
        nonce: None,
    }
}

#[tokio::test]
async fn connector_speaks_rscd_over_mutual_tls() {
    let s = setup().await;
    let c = connector(&s, &s.identity, &s.ca_pem);
    // Unknown device and key: 404 problems, read as such.
    let onboarding = OnboardingRequest {
        relying_party_uuid: "00000000-0000-4000-8000-000000000000".into(),
        relying_party_name: "esigd".into(),
        subject: Subject {
            sub: "citizen".into(),
            display_name: None,
        },
        scd_key_id: 0,
        key_spec: KeySpec::Ec { curve: Curve::P256 },
        challenge: STANDARD.encode([1u8; 32]),
        interactions: interactions::encode(&[Interaction::DisplayTextAndPin {
            display_text60: "Create your key".into(),
        }])
        .unwrap(),
        nonce: None,
    };
    let err = c
        .start_onboarding("REMOTE_SCD_REF", "k7m2-9xqa-h3dz", &onboarding)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = c
        .start_signature("no-such-key", &signing(&[2u8; 32]))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    // A bad request comes back as a 400 naming the field.
    let mut bad = signing(&[2u8; 20]);
    bad.signature_protocol_parameters.digest = STANDARD.encode([2u8; 20]);
    match c.start_signature("k", &bad).await.unwrap_err() {
        ConnectorError::Status {
            status: 400,
            problem: Some(p),
            ..
        } => assert_eq!(
            p.errors[0].pointer.as_deref(),
            Some("/signatureProtocolParameters/digest")
        ),
        other => panic!("{other}"),
    }
    // Sessions of nobody: 404 on poll and cancel; the long poll rounds up to 1 s.
    let err = c
        .poll_session(
            "00000000-0000-4000-8000-000000000000",
            Duration::from_millis(10),
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(c.cancel("nope").await.unwrap_err().is_not_found());
    assert!(
        c.set_key_status(
            "nope",
            &KeyStatusChange {
                status: KeyStatus::Suspended,
                reason: None
            }
        )
        .await
        .unwrap_err()
        .is_not_found()
    );
}

#[tokio::test]
async fn the_service_must_chain_to_the_pinned_ca_and_accept_our_certificate() {
    let s = setup().await;
    // A service certificate from another CA: refused before any request.
    let tmp = tempfile::tempdir().unwrap();
    let other = Ca::new(tmp.path(), "not-the-rscd-ca");
    let other_pem = std::fs::read(other.pem()).unwrap();
    let err = connector(&s, &s.identity, &other_pem)
        .start_signature("k", &signing(&[1u8; 32]))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectorError::Transport(_)), "{err}");
    // Our certificate from a CA the service does not accept: the handshake fails.
    let err = connector(&s, &s.foreign_identity, &s.ca_pem)
        .start_signature("k", &signing(&[1u8; 32]))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectorError::Transport(_)), "{err}");
}
