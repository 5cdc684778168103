//! Access tokens on the e-Service API, checked against the real development Identity BB
//! (`tests/e2e/idp.mjs`, npm `oidc-provider` with introspection and revocation on): RFC 7662
//! introspection as esigd's client (`client_secret_basic` and `private_key_jwt`), then userinfo.
//!
//! Needs `node` and `tests/e2e/node_modules` (`scripts/install-deps.sh --with-test-tools`).
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use esigd_service::clock::{Clock, SharedClock};
use esigd_service::config::IdentitySection;
use esigd_service::identity::oidc::ClientAuth;
use esigd_service::identity::{IdentityError, IdentityProvider, TokenKind};
use serde_json::json;

use esigd_testkit::idp::{Idp, Tokens};

const ESIGD_SECRET: &str = "esigd-dev-secret";
const ESIGD_REDIRECT: &str = "http://127.0.0.1:8080/v1/oidc/callback";
const DEMO: &str = "demo-eservice";
const DEMO_SECRET: &str = "demo-eservice-secret";
const DEMO_REDIRECT: &str = "http://127.0.0.1:8090/login/callback";

/// esigd's view of `idp`: client `esigd` with its secret (client_secret_basic).
fn provider(idp: &Idp) -> IdentityProvider {
    provider_with(idp, |_| {})
}

/// As [`provider`], with the section changed by `edit`.
fn provider_with(idp: &Idp, edit: impl FnOnce(&mut IdentitySection)) -> IdentityProvider {
    let mut section = IdentitySection::new(idp.issuer.clone(), "esigd");
    edit(&mut section);
    IdentityProvider::new(&section, None)
        .unwrap()
        .with_client_auth(Arc::new(ClientAuth::Secret(ESIGD_SECRET.into())))
}

fn demo() -> Vec<String> {
    vec![DEMO.to_string()]
}

/// `mari`'s ID token and access token from one login at the demo e-Service.
fn mari_at_demo(idp: &Idp) -> Tokens {
    idp.tokens(DEMO, DEMO_SECRET, DEMO_REDIRECT, "mari")
}

/// How many introspection requests the IdP served, once it logged `expected` of them (its log
/// line is written as the response finishes, so it may trail the response a little) or 2 s
/// passed.
fn introspections(idp: &Idp, expected: usize) -> usize {
    let count = || {
        idp.log()
            .lines()
            .filter(|l| l.starts_with("POST /token/introspection "))
            .count()
    };
    for _ in 0..100 {
        if count() >= expected {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    count()
}

/// Asserts `Rejected` with a message containing `says` and never the token.
#[track_caller]
fn assert_rejected<T: std::fmt::Debug>(r: Result<T, IdentityError>, says: &str, token: &str) {
    match r {
        Err(IdentityError::Rejected(m)) => {
            assert!(m.contains(says), "expected {says:?} in {m:?}");
            assert!(!m.contains(token), "the token is in the message");
        }
        other => panic!("expected Rejected({says}), got {other:?}"),
    }
}

/// A clock `ahead` of the system clock.
#[derive(Debug)]
struct Ahead(Duration);

impl Clock for Ahead {
    fn now(&self) -> SystemTime {
        SystemTime::now() + self.0
    }
}

#[tokio::test]
async fn a_valid_access_token_gives_the_userinfo_claims_and_the_login() {
    let idp = Idp::start();
    let t = mari_at_demo(&idp);
    assert!(!t.access_token.contains('.'), "an opaque access token");
    let p = provider(&idp);

    let v = p
        .verify_access_token(&t.access_token, &demo())
        .await
        .unwrap();
    assert_eq!(v.subject, "user-mari");
    assert_eq!(v.claims["sub"], "user-mari");
    assert_eq!(v.claims["name"], "Mari Maasikas");
    assert_eq!(v.claims["individual_id"], "49005170001");
    assert_eq!(v.claims["country"], "EE");
    // From the introspection: the login (auth_time, acr) and the token's expiry.
    assert_eq!(v.claims["acr"], "http://eidas.europa.eu/LoA/high");
    let now = esigd_service::clock::SystemClock.unix_now();
    let auth_time = v.claims["auth_time"].as_u64().unwrap();
    assert!(
        auth_time <= now && auth_time + 60 > now,
        "auth_time {auth_time}"
    );
    let exp = v.claims["exp"].as_u64().unwrap();
    assert!(exp > now + 500 && exp <= now + 600, "exp {exp}");
    let subject = esigd_service::identity::map_claims(&p.config().claims, &v.claims);
    assert_eq!(subject.personal_identifier.as_deref(), Some("49005170001"));

    // The same token through the e-Service API's entry point, any number of times (no store).
    let (again, kind) = p
        .verify_citizen_token(&t.access_token, &demo())
        .await
        .unwrap();
    assert_eq!(kind, TokenKind::AccessToken);
    assert_eq!(again.subject, "user-mari");
    assert_eq!(introspections(&idp, 2), 2);
    assert!(!idp.log().contains(&t.access_token));
}

#[tokio::test]
async fn an_access_token_issued_to_another_client_is_rejected() {
    let idp = Idp::start();
    let p = provider(&idp);
    // Issued to esigd's own client, presented for the demo e-Service.
    let esigd = idp.tokens("esigd", ESIGD_SECRET, ESIGD_REDIRECT, "mari");
    assert_rejected(
        p.verify_access_token(&esigd.access_token, &demo()).await,
        "issued to client \"esigd\"",
        &esigd.access_token,
    );
    // Issued to the demo e-Service, presented for another one.
    let t = mari_at_demo(&idp);
    assert_rejected(
        p.verify_access_token(&t.access_token, &["another-eservice".to_string()])
            .await,
        "not to this e-Service",
        &t.access_token,
    );
    assert_rejected(
        p.verify_access_token(&t.access_token, &[]).await,
        "no accepted audience",
        &t.access_token,
    );
}

#[tokio::test]
async fn a_revoked_unknown_or_garbage_access_token_is_rejected_as_inactive() {
    let idp = Idp::start();
    let p = provider(&idp);
    let t = mari_at_demo(&idp);
    p.verify_access_token(&t.access_token, &demo())
        .await
        .unwrap();

    // The demo e-Service withdraws it (RFC 7009).
    let meta: serde_json::Value =
        reqwest::get(format!("{}/.well-known/openid-configuration", idp.issuer))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let revoked = reqwest::Client::new()
        .post(meta["revocation_endpoint"].as_str().unwrap())
        .basic_auth(DEMO, Some(DEMO_SECRET))
        .form(&[
            ("token", t.access_token.as_str()),
            ("token_type_hint", "access_token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_rejected(
        p.verify_access_token(&t.access_token, &demo()).await,
        "not active",
        &t.access_token,
    );

    for garbage in ["not-a-token", "x.y.z", "eyJhbGciOiJub25lIn0.e30."] {
        assert_rejected(
            p.verify_citizen_token(garbage, &demo()).await,
            "not active",
            garbage,
        );
    }
    // What cannot be a bearer token is not even sent.
    let before = introspections(&idp, 5);
    assert_eq!(before, 5);
    for bad in ["", "two words", "new\nline", &"a".repeat(20_000)] {
        assert!(
            matches!(
                p.verify_access_token(bad, &demo()).await,
                Err(IdentityError::Malformed(_))
            ),
            "a bad token of {} bytes",
            bad.len()
        );
    }
    assert_eq!(introspections(&idp, before + 1), before);
}

#[tokio::test]
async fn an_expired_access_token_is_rejected() {
    let idp = Idp::start_with(&json!({"clients": [{
        "client_id": "short-at",
        "client_secret": "short-secret",
        "redirect_uris": ["http://127.0.0.1:9/short/cb"],
        "access_token_ttl": 2,
    }]}));
    let p = provider_with(&idp, |s| s.clock_skew = Duration::ZERO);
    let short = idp.tokens(
        "short-at",
        "short-secret",
        "http://127.0.0.1:9/short/cb",
        "juri",
    );
    let aud = vec!["short-at".to_string()];
    p.verify_access_token(&short.access_token, &aud)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(3100)).await;
    // The Identity BB itself says it is no longer active.
    assert_rejected(
        p.verify_access_token(&short.access_token, &aud).await,
        "not active",
        &short.access_token,
    );

    // Live at the Identity BB, but past exp (+ clock_skew) by esigd's clock.
    let t = mari_at_demo(&idp);
    let clock: SharedClock = Arc::new(Ahead(Duration::from_secs(700)));
    let late = provider(&idp).with_clock(clock);
    assert_rejected(
        late.verify_access_token(&t.access_token, &demo()).await,
        "expired",
        &t.access_token,
    );
}

#[tokio::test]
async fn the_login_behind_an_access_token_must_meet_acr_values_and_max_age() {
    let idp = Idp::start();
    let high = provider_with(&idp, |s| {
        s.acr_values = vec!["http://eidas.europa.eu/LoA/high".into()];
    });
    let mari = mari_at_demo(&idp);
    let juri = idp.tokens(DEMO, DEMO_SECRET, DEMO_REDIRECT, "juri");
    high.verify_access_token(&mari.access_token, &demo())
        .await
        .unwrap();
    assert_rejected(
        high.verify_access_token(&juri.access_token, &demo()).await,
        "acr",
        &juri.access_token,
    );
    // A login older than identity.max_age (10 minutes by default), the token still live.
    let clock: SharedClock = Arc::new(Ahead(Duration::from_secs(300)));
    let strict =
        provider_with(&idp, |s| s.max_age = Some(Duration::from_secs(60))).with_clock(clock);
    assert_rejected(
        strict
            .verify_access_token(&mari.access_token, &demo())
            .await,
        "auth_time",
        &mari.access_token,
    );
}

#[tokio::test]
async fn an_id_token_still_takes_the_id_token_path() {
    let idp = Idp::start();
    let p = provider(&idp);
    let t = mari_at_demo(&idp);
    let (v, kind) = p.verify_citizen_token(&t.id_token, &demo()).await.unwrap();
    assert_eq!(kind, TokenKind::IdToken);
    assert_eq!(v.subject, "user-mari");
    assert_eq!(v.claims["aud"], DEMO);
    assert_eq!(TokenKind::of(&t.id_token), TokenKind::IdToken);
    assert_eq!(TokenKind::of(&t.access_token), TokenKind::AccessToken);

    // A JWT access token (RFC 9068 typ at+jwt) goes to introspection, where this forged one is
    // unknown; an ID token of another e-Service stays on the ID-token path and fails there.
    let now = esigd_service::clock::SystemClock.unix_now();
    let at_jwt = idp.forge(
        &json!({"alg": "ES256", "typ": "at+jwt"}),
        &json!({"iss": idp.issuer, "sub": "user-mari", "aud": DEMO, "client_id": DEMO,
                "iat": now, "exp": now + 600, "jti": "j1"}),
    );
    assert_eq!(TokenKind::of(&at_jwt), TokenKind::AccessToken);
    assert_rejected(
        p.verify_citizen_token(&at_jwt, &demo()).await,
        "not active",
        &at_jwt,
    );
    // One introspection in all: the at+jwt's, none for the ID token.
    assert_eq!(
        introspections(&idp, 2),
        1,
        "an ID token is not introspected"
    );
    assert_rejected(
        p.verify_citizen_token(&t.id_token, &["another-eservice".to_string()])
            .await,
        "audience",
        &t.id_token,
    );
}

#[tokio::test]
async fn an_unreachable_introspection_endpoint_is_unavailable() {
    let idp = Idp::start();
    let t = mari_at_demo(&idp);
    // Nothing listens there any more.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let down = provider_with(&idp, |s| {
        s.introspection_url = Some(format!("http://{closed}/token/introspection"));
    });
    match down.verify_access_token(&t.access_token, &demo()).await {
        Err(IdentityError::Unavailable(m)) => {
            assert!(m.contains("introspection"), "{m}");
            assert!(!m.contains(&t.access_token));
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // A wrong client secret (the IdP answers 401 invalid_client) is esigd's fault, not the token's.
    let mut section = IdentitySection::new(idp.issuer.clone(), "esigd");
    let wrong = IdentityProvider::new(&section, None)
        .unwrap()
        .with_client_auth(Arc::new(ClientAuth::Secret("nope".into())));
    match wrong.verify_access_token(&t.access_token, &demo()).await {
        Err(IdentityError::Unavailable(m)) => assert!(m.contains("invalid_client"), "{m}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // No client credentials loaded.
    let bare = IdentityProvider::new(&section, None).unwrap();
    assert!(matches!(
        bare.verify_access_token(&t.access_token, &demo()).await,
        Err(IdentityError::Unavailable(_))
    ));
    // A bad identity.introspection_url is refused at start.
    section.introspection_url = Some("ftp://x/".into());
    assert!(matches!(
        IdentityProvider::new(&section, None),
        Err(IdentityError::Unavailable(m)) if m.contains("identity.introspection_url")
    ));
    // The Identity BB gone altogether.
    let fresh = provider(&idp);
    drop(idp);
    assert!(matches!(
        fresh.verify_access_token(&t.access_token, &demo()).await,
        Err(IdentityError::Unavailable(_))
    ));
}

#[tokio::test]
async fn esigd_can_introspect_with_private_key_jwt() {
    use p256::pkcs8::EncodePrivateKey;
    let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let pem = secret.to_pkcs8_pem(p256::pkcs8::LineEnding::LF).unwrap();
    let point = secret.public_key().to_sec1_bytes();
    let b64 = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    let idp = Idp::start_with(&json!({"clients": [{
        "client_id": "esigd",
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "ES256",
        "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "k1",
                           "x": b64(&point[1..33]), "y": b64(&point[33..65])}]},
        "redirect_uris": [ESIGD_REDIRECT],
        "introspect_any_token": true,
    }]}));
    let t = mari_at_demo(&idp);
    let mut section = IdentitySection::new(idp.issuer.clone(), "esigd");
    section.client_auth = "private_key_jwt".into();
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    let p = IdentityProvider::new(&section, None)
        .unwrap()
        .with_client_auth(Arc::new(ClientAuth::PrivateKeyJwt(
            key,
            jsonwebtoken::Algorithm::ES256,
        )));
    let v = p
        .verify_access_token(&t.access_token, &demo())
        .await
        .unwrap();
    assert_eq!(v.subject, "user-mari");
    // A secret is no use for this client.
    let with_secret = provider(&idp);
    assert!(matches!(
        with_secret.verify_access_token(&t.access_token, &demo()).await,
        Err(IdentityError::Unavailable(m)) if m.contains("invalid_client")
    ));
}

#[tokio::test]
async fn a_spent_access_token_is_refused_like_an_id_token() {
    let idp = Idp::start();
    let dir = tempfile::tempdir().unwrap();
    let store = esigd_store::Store::open(dir.path(), esigd_store::StoreOptions::default()).unwrap();
    let p = provider(&idp).with_store(store);
    let t = mari_at_demo(&idp);
    let v = p
        .verify_access_token(&t.access_token, &demo())
        .await
        .unwrap();
    p.spend_id_token(&t.access_token, &v).await.unwrap();
    assert!(matches!(
        p.verify_citizen_token(&t.access_token, &demo()).await,
        Err(IdentityError::Reused)
    ));
}
