//! Payment BB tokens: e-Services with `payment_required` must present a JWT signed by the
//! configured Payment BB key (PEM file or JWKS URL), with `aud` = `payment.audience`, `iss` =
//! `payment.issuer` when that is set (then `iss` is required), not expired, with a `jti`, naming
//! the e-Service in `payment.eservice_claim` (`sub` by default), and used once. JWT checks are
//! done by the `jsonwebtoken` crate; single use is a durable record of the token's `jti` hash in
//! the store (`meta` column family, `pay/` prefix), with an expiry index beside it (`payexp/`,
//! the layout of [`crate::identity::ledger`]) from which [`PaymentVerifier::sweep_blocking`]
//! removes the records of tokens that expired.
//!
//! Tokens are never logged.

use std::str::FromStr;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use esigd_store::{Batch, Cf, Store};

use crate::clock::SharedClock;
use crate::config::{PaymentSection, SettingError, data_path};
use crate::identity::ledger::{expiring_key, sweep_expired_blocking};
use crate::registry::Eservice;

/// Lookup key of a spent payment: `pay/` + SHA-256 of its `jti` (one payment, one `jti`, whatever
/// `exp` a token carrying it has).
const USED: &[u8] = b"pay/";
/// Expiry index of the spent payments: `payexp/` + the second from which the record may go +
/// SHA-256 of the `jti` ([`expiring_key`]).
const EXPIRES: &[u8] = b"payexp/";
const JWKS_TTL: Duration = Duration::from_secs(600);
/// Longest a fetched JWKS is used while refreshing it fails; then payments are unavailable.
const JWKS_MAX_STALE: Duration = Duration::from_secs(24 * 3600);
/// Least time between two JWKS fetches, whatever triggers them (expiry, an unknown `kid`, a
/// failed attempt): tokens with made-up key IDs cannot make us hammer the Payment BB.
const JWKS_MIN_INTERVAL: Duration = Duration::from_secs(10);

/// Why a payment token was refused.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// No token was presented.
    #[error("a payment token is required for this e-Service")]
    Missing,
    /// Payment is required but no Payment BB is configured.
    #[error("payment is required but no Payment BB is configured ([payment] section)")]
    NotConfigured,
    /// The token failed a check.
    #[error("payment token rejected: {0}")]
    Invalid(String),
    /// The token was used before.
    #[error("payment token already used")]
    Reused,
    /// The Payment BB's keys cannot be read, or the store failed.
    #[error("payment verification unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, Deserialize)]
struct PaymentClaims {
    jti: String,
    exp: u64,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

/// Clock leeway for `exp`, seconds.
const LEEWAY: u64 = 30;

/// The Payment BB's key set as last fetched.
#[derive(Default)]
struct JwksCache {
    /// The last set fetched, and when.
    set: Option<(Instant, JwkSet)>,
    /// The last fetch attempt, successful or not.
    attempted: Option<Instant>,
}

enum Keys {
    Pem(Vec<DecodingKey>),
    Jwks {
        url: String,
        cache: tokio::sync::Mutex<JwksCache>,
    },
}

/// Verifies Payment BB tokens.
pub struct PaymentVerifier {
    section: PaymentSection,
    algorithms: Vec<Algorithm>,
    keys: Keys,
    http: openidconnect::reqwest::Client,
    store: Store,
    lock: tokio::sync::Mutex<()>,
    clock: SharedClock,
    /// How long a fetched JWKS is used before it is fetched again ([`JWKS_TTL`]).
    jwks_ttl: Duration,
    /// [`JWKS_MIN_INTERVAL`].
    jwks_min_interval: Duration,
    /// [`JWKS_MAX_STALE`].
    jwks_max_stale: Duration,
}

impl std::fmt::Debug for PaymentVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentVerifier")
            .field("audience", &self.section.audience)
            .finish()
    }
}

impl PaymentVerifier {
    /// Builds the verifier from `[payment]` (reads the PEM key file now).
    /// `data_dir` resolves a relative `key_file`; `clock` measures token expiry.
    pub fn new(
        section: &PaymentSection,
        data_dir: &std::path::Path,
        store: Store,
        clock: SharedClock,
    ) -> Result<Self, crate::config::SettingError> {
        let algorithms = section
            .algorithms
            .iter()
            .map(|a| Algorithm::from_str(a))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SettingError::new("payment.algorithms", e.to_string()))?;
        let keys = match (&section.key_file, &section.jwks_url) {
            (Some(f), _) => {
                let path = data_path(data_dir, f);
                let pem = std::fs::read(&path).map_err(|e| {
                    SettingError::new("payment.key_file", format!("{}: {e}", path.display()))
                })?;
                let mut keys = Vec::new();
                if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
                    keys.push(k);
                }
                if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
                    keys.push(k);
                }
                if let Ok(k) = DecodingKey::from_ed_pem(&pem) {
                    keys.push(k);
                }
                if keys.is_empty() {
                    return Err(SettingError::new(
                        "payment.key_file",
                        format!(
                            "{}: not an EC, RSA or Ed25519 public key in PEM",
                            path.display()
                        ),
                    ));
                }
                Keys::Pem(keys)
            }
            (None, Some(url)) => Keys::Jwks {
                url: url.clone(),
                cache: tokio::sync::Mutex::new(JwksCache::default()),
            },
            (None, None) => {
                return Err(SettingError::new("payment", "give key_file or jwks_url"));
            }
        };
        let http = openidconnect::reqwest::Client::builder()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| SettingError::new("payment", format!("HTTP client: {e}")))?;
        Ok(PaymentVerifier {
            clock,
            section: section.clone(),
            algorithms,
            keys,
            http,
            store,
            lock: tokio::sync::Mutex::new(()),
            jwks_ttl: JWKS_TTL,
            jwks_min_interval: JWKS_MIN_INTERVAL,
            jwks_max_stale: JWKS_MAX_STALE,
        })
    }

    async fn candidate_keys(
        &self,
        header: &jsonwebtoken::Header,
    ) -> Result<Vec<DecodingKey>, PaymentError> {
        let kid = header.kid.as_deref();
        match &self.keys {
            Keys::Pem(k) => Ok(k.clone()),
            Keys::Jwks { url, cache } => {
                let mut c = cache.lock().await;
                let stale = c
                    .set
                    .as_ref()
                    .is_none_or(|(t, _)| t.elapsed() > self.jwks_ttl);
                let unknown_kid = kid
                    .is_some_and(|k| c.set.as_ref().is_some_and(|(_, set)| set.find(k).is_none()));
                let may_fetch = c
                    .attempted
                    .is_none_or(|t| t.elapsed() >= self.jwks_min_interval);
                let mut refreshed = false;
                if (stale || unknown_kid) && may_fetch {
                    c.attempted = Some(Instant::now());
                    match self.fetch_jwks(url).await {
                        Ok(set) => {
                            c.set = Some((Instant::now(), set));
                            refreshed = true;
                        }
                        // Keep verifying with the keys already known: a Payment BB outage must
                        // not stop signing (for up to JWKS_MAX_STALE).
                        Err(e) if c.set.is_some() => tracing::warn!(
                            error = %e,
                            "payment JWKS refresh failed; the cached keys stay in use"
                        ),
                        Err(e) => return Err(e),
                    }
                }
                let Some((fetched, set)) = c.set.as_ref() else {
                    return Err(PaymentError::Unavailable(
                        "payment.jwks_url: the key set could not be fetched yet".into(),
                    ));
                };
                // A key the Payment BB withdrew (say, after a compromise) must not stay valid
                // for as long as its JWKS cannot be read.
                if fetched.elapsed() > self.jwks_max_stale {
                    return Err(PaymentError::Unavailable(
                        "payment.jwks_url: the key set could not be refreshed for too long".into(),
                    ));
                }
                // A kid the set lacks, and the set was not just fetched fresh (too soon to look
                // again, or the fetch failed): perhaps a key that just rotated in, so "retry
                // shortly" (503), not "invalid" (402).
                if let Some(k) = kid
                    && set.find(k).is_none()
                    && !refreshed
                {
                    return Err(PaymentError::Unavailable(format!(
                        "payment.jwks_url: key {k:?} is not in the key set fetched; retry shortly"
                    )));
                }
                // The kid, and only keys published for signatures with this algorithm.
                Ok(crate::identity::verification_keys(set, header))
            }
        }
    }

    async fn fetch_jwks(&self, url: &str) -> Result<JwkSet, PaymentError> {
        let unavailable =
            |e: &dyn std::fmt::Display| PaymentError::Unavailable(format!("payment.jwks_url: {e}"));
        let body = self
            .http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| unavailable(&e))?
            .bytes()
            .await
            .map_err(|e| unavailable(&e))?;
        serde_json::from_slice(&body).map_err(|e| unavailable(&e))
    }

    /// Verifies `token` presented for e-Service `eservice` (signature, `aud`, `iss`, `exp`, `jti`,
    /// and `payment.eservice_claim`, `sub` by default) and that it was not used yet; does not use
    /// it up: see [`PaymentVerifier::consume`].
    pub async fn verify(&self, token: &str, eservice: &str) -> Result<Payment, PaymentError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| PaymentError::Invalid(format!("not a JWT: {e}")))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(PaymentError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[self.section.audience.as_str()]);
        // jsonwebtoken checks `iss` only when the token has one: with an issuer configured, a
        // token without `iss` must not pass.
        if let Some(iss) = &self.section.issuer {
            validation.set_issuer(&[iss.as_str()]);
            validation.set_required_spec_claims(&["exp", "aud", "jti", "iss"]);
        } else {
            validation.set_required_spec_claims(&["exp", "aud", "jti"]);
        }
        validation.leeway = LEEWAY;
        let keys = self.candidate_keys(&header).await?;
        let mut last = PaymentError::Invalid("no key of the Payment BB matches".into());
        let mut claims = None;
        for key in &keys {
            match jsonwebtoken::decode::<PaymentClaims>(token, key, &validation) {
                Ok(d) => {
                    claims = Some(d.claims);
                    break;
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    last = PaymentError::Invalid(match e.kind() {
                        K::MissingRequiredClaim(c) if c == "iss" => {
                            "claim iss missing (payment.issuer is set)".into()
                        }
                        K::MissingRequiredClaim(c) => format!("claim {c} missing"),
                        K::InvalidIssuer => "iss is not payment.issuer".into(),
                        _ => e.to_string(),
                    });
                }
            }
        }
        let claims = claims.ok_or(last)?;
        if claims.jti.is_empty() {
            return Err(PaymentError::Invalid("jti is empty".into()));
        }
        if let Some(claim) = &self.section.eservice_claim
            && claims.other.get(claim).and_then(|v| v.as_str()) != Some(eservice)
        {
            return Err(PaymentError::Invalid(format!(
                "claim {claim:?} does not name this e-Service (payment.eservice_claim)"
            )));
        }
        let payment = Payment {
            id: Sha256::digest(claims.jti.as_bytes()).into(),
            exp: claims.exp,
        };
        if self.is_used(&payment).await? {
            return Err(PaymentError::Reused);
        }
        Ok(payment)
    }

    async fn is_used(&self, p: &Payment) -> Result<bool, PaymentError> {
        let store = self.store.clone();
        let key = p.key();
        Ok(
            tokio::task::spawn_blocking(move || store.get(Cf::Meta, &key))
                .await
                .map_err(|e| PaymentError::Unavailable(e.to_string()))?
                .map_err(|e| PaymentError::Unavailable(e.to_string()))?
                .is_some(),
        )
    }

    /// Uses the payment up (durable when this returns `Ok`); `Reused` if another request used it
    /// meanwhile. Called right before the signature is made.
    pub async fn consume(&self, p: &Payment) -> Result<(), PaymentError> {
        // Checked when the page opened; the login may have taken minutes since.
        if self.clock.unix_now() > p.exp.saturating_add(LEEWAY) {
            return Err(PaymentError::Invalid(
                "the payment token expired before the signature was made".into(),
            ));
        }
        // Check and record under one lock, so two requests cannot both use one token.
        let _g = self.lock.lock().await;
        if self.is_used(p).await? {
            return Err(PaymentError::Reused);
        }
        let mut b = Batch::new();
        b.put(Cf::Meta, p.key(), p.exp.to_be_bytes().to_vec());
        b.put(Cf::Meta, p.expiry_key(), Vec::new());
        self.store
            .commit(b)
            .await
            .map_err(|e| PaymentError::Unavailable(e.to_string()))
    }

    /// Gives a consumed payment back when no signature could be made with it.
    pub async fn release(&self, p: &Payment) {
        let _g = self.lock.lock().await;
        let mut b = Batch::new();
        b.delete(Cf::Meta, p.key());
        b.delete(Cf::Meta, p.expiry_key());
        if let Err(e) = self.store.commit(b).await {
            tracing::warn!(error = %e, "a payment could not be given back after a failed signature");
        }
    }

    /// Removes up to `limit` records of spent payments whose token expired (by the verifier's
    /// clock, past `exp` and the leeway: such a token can no longer pass [`Self::verify`] nor
    /// [`Self::consume`]); returns how many. Blocking: call from `spawn_blocking`.
    pub fn sweep_blocking(&self, limit: usize) -> Result<usize, PaymentError> {
        sweep_expired_blocking(&self.store, EXPIRES, self.clock.unix_now(), limit, |id| {
            Some([USED, id].concat())
        })
        .map_err(|e| PaymentError::Unavailable(e.to_string()))
    }
}

/// A verified, not yet used payment token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// SHA-256 of the `jti`.
    id: [u8; 32],
    exp: u64,
}

impl Payment {
    /// SHA-256 (hex) of the token's `jti`: how audit events name the payment (never the token).
    pub fn jti_sha256(&self) -> String {
        hex::encode(self.id)
    }

    /// The single-use record's lookup key.
    fn key(&self) -> Vec<u8> {
        [USED, self.id.as_slice()].concat()
    }

    /// The record's key in the expiry index: due once the token can no longer pass (`exp` +
    /// [`LEEWAY`]).
    fn expiry_key(&self) -> Vec<u8> {
        expiring_key(
            EXPIRES,
            self.exp.saturating_add(LEEWAY).saturating_add(1),
            &self.id,
        )
    }
}

/// The check itself (shared by the API and the interactive pages): verifies without using up.
pub async fn check(
    verifier: Option<&PaymentVerifier>,
    eservice: &Eservice,
    token: Option<&str>,
) -> Result<Option<Payment>, PaymentError> {
    if !eservice.payment_required {
        return Ok(None);
    }
    let verifier = verifier.ok_or(PaymentError::NotConfigured)?;
    let token = token
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(PaymentError::Missing)?;
    verifier.verify(token, &eservice.id).await.map(Some)
}

/// Uses up `payment` (if any) right before signing.
pub async fn consume(
    verifier: Option<&PaymentVerifier>,
    payment: Option<&Payment>,
) -> Result<(), PaymentError> {
    match (payment, verifier) {
        (Some(p), Some(v)) => v.consume(p).await,
        (Some(_), None) => Err(PaymentError::NotConfigured),
        (None, _) => Ok(()),
    }
}

/// Gives `payment` (if any) back after a failed signature.
pub async fn release(verifier: Option<&PaymentVerifier>, payment: Option<&Payment>) {
    if let (Some(p), Some(v)) = (payment, verifier) {
        v.release(p).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use esigd_store::StoreOptions;
    use jsonwebtoken::{EncodingKey, Header};
    use p256::pkcs8::EncodePrivateKey;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A P-256 key: its JWT signing key and its public JWK with `kid`.
    fn key(kid: &str) -> (EncodingKey, serde_json::Value) {
        let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let pem = secret
            .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
            .expect("pkcs8");
        let point = secret.public_key().to_sec1_bytes();
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
        });
        (EncodingKey::from_ec_pem(pem.as_bytes()).expect("pem"), jwk)
    }

    fn token(key: &EncodingKey, kid: &str, aud: &str, jti: &str) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        let claims = serde_json::json!({ "aud": aud, "exp": crate::clock::SystemClock.unix_now() + 300, "jti": jti });
        jsonwebtoken::encode(&header, &claims, key).expect("sign")
    }

    /// What the test Payment BB publishes: a key set, or `None` for HTTP 500.
    type Published = Arc<std::sync::Mutex<Option<serde_json::Value>>>;

    /// Serves `published` at `/jwks.json` on 127.0.0.1 and counts the fetches.
    async fn jwks_server(published: Published) -> (String, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A minimal HTTP/1.1 responder (one request per connection): this crate links no HTTP
        // server.
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let published = published.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let body = published.lock().unwrap().as_ref().map(|v| v.to_string());
                    let reply = match body {
                        Some(b) => format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}",
                            b.len()
                        ),
                        None => "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
                    };
                    let _ = conn.write_all(reply.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        (format!("http://{addr}/jwks.json"), hits)
    }

    fn publish(keys: &[&serde_json::Value]) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "keys": keys }))
    }

    fn verifier(jwks_url: &str, store: Store) -> PaymentVerifier {
        let dir = std::env::temp_dir();
        let section = PaymentSection {
            audience: "esigd".into(),
            issuer: None,
            key_file: None,
            jwks_url: Some(jwks_url.into()),
            algorithms: vec!["ES256".into()],
            eservice_claim: None,
        };
        PaymentVerifier::new(&section, &dir, store, crate::clock::system()).unwrap()
    }

    #[tokio::test]
    async fn jwks_url_keys_are_fetched_cached_and_matched_by_kid() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let (k1, jwk1) = key("k1");
        let (k2, jwk2) = key("k2");
        let (foreign, _) = key("k1");
        let published = Arc::new(std::sync::Mutex::new(publish(&[&jwk1, &jwk2])));
        let (url, hits) = jwks_server(published).await;
        let v = verifier(&url, store.clone());

        // Both published keys verify; the set is fetched once and then cached.
        let p1 = v
            .verify(&token(&k1, "k1", "esigd", "a"), "shop")
            .await
            .unwrap();
        v.verify(&token(&k2, "k2", "esigd", "b"), "shop")
            .await
            .unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 1);

        // A token claiming k1 but signed by another key, and one for another audience, are
        // refused.
        for (bad, why) in [
            (token(&foreign, "k1", "esigd", "c"), "InvalidSignature"),
            (token(&k1, "k1", "other", "d"), "InvalidAudience"),
        ] {
            match v.verify(&bad, "shop").await {
                Err(PaymentError::Invalid(m)) => assert!(m.contains(why), "{m}"),
                other => panic!("expected Invalid({why}), got {other:?}"),
            }
        }
        // A kid the set lacks, within 10 s of the last fetch: no refetch, and "retry shortly"
        // (it may be a key that just rotated in), not "invalid".
        match v.verify(&token(&k1, "k9", "esigd", "e"), "shop").await {
            Err(PaymentError::Unavailable(m)) => assert!(m.contains("\"k9\""), "{m}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1);

        // Single use holds for JWKS-verified tokens too.
        v.consume(&p1).await.unwrap();
        assert!(matches!(
            v.verify(&token(&k1, "k1", "esigd", "a"), "shop").await,
            Err(PaymentError::Reused)
        ));
    }

    #[tokio::test]
    async fn new_keys_are_picked_up_and_an_outage_keeps_the_known_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let (k1, jwk1) = key("k1");
        let (k2, jwk2) = key("k2");
        let published = Arc::new(std::sync::Mutex::new(publish(&[&jwk1])));
        let (url, hits) = jwks_server(published.clone()).await;
        let mut v = verifier(&url, store);
        v.jwks_min_interval = Duration::ZERO;
        v.verify(&token(&k1, "k1", "esigd", "a"), "shop")
            .await
            .unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 1);

        // A kid still unknown after a fresh fetch: invalid, not "retry".
        match v.verify(&token(&k1, "k9", "esigd", "x"), "shop").await {
            Err(PaymentError::Invalid(m)) => assert!(m.contains("no key"), "{m}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
        assert_eq!(hits.load(Ordering::SeqCst), 2);

        // The Payment BB rotates in k2: a token naming it makes us fetch the set again.
        *published.lock().unwrap() = publish(&[&jwk1, &jwk2]);
        v.verify(&token(&k2, "k2", "esigd", "b"), "shop")
            .await
            .unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 3);

        // The set expires while the Payment BB is down: the refresh fails and the known keys
        // keep working.
        v.jwks_ttl = Duration::ZERO;
        *published.lock().unwrap() = None;
        v.verify(&token(&k1, "k1", "esigd", "c"), "shop")
            .await
            .unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 4);
        // An unknown kid while the set cannot be refreshed: "retry shortly", not "invalid".
        match v.verify(&token(&k1, "k9", "esigd", "d"), "shop").await {
            Err(PaymentError::Unavailable(m)) => assert!(m.contains("retry shortly"), "{m}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        // Refreshing has failed for longer than the stale limit: the known keys stop counting.
        v.jwks_max_stale = Duration::ZERO;
        match v.verify(&token(&k1, "k1", "esigd", "e"), "shop").await {
            Err(PaymentError::Unavailable(m)) => assert!(m.contains("too long"), "{m}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn eservice_binding_and_expiry_at_signing_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let (k1, jwk1) = key("k1");
        let published = Arc::new(std::sync::Mutex::new(publish(&[&jwk1])));
        let (url, _) = jwks_server(published).await;
        let mut v = verifier(&url, store);
        v.section.eservice_claim = Some("sub".into());
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        let signed =
            |claims: serde_json::Value| jsonwebtoken::encode(&header, &claims, &k1).unwrap();
        let exp = crate::clock::SystemClock.unix_now() + 300;
        let for_shop =
            signed(serde_json::json!({"aud": "esigd", "exp": exp, "jti": "1", "sub": "shop"}));
        let unbound = signed(serde_json::json!({"aud": "esigd", "exp": exp, "jti": "2"}));
        v.verify(&for_shop, "shop").await.unwrap();
        for (token, eservice) in [(&for_shop, "other-shop"), (&unbound, "shop")] {
            match v.verify(token, eservice).await {
                Err(PaymentError::Invalid(m)) => {
                    assert!(m.contains("payment.eservice_claim"), "{m}")
                }
                other => panic!("expected Invalid, got {other:?}"),
            }
        }
        // Valid when the page opened, expired by the time the user has logged in: not used.
        let stale = Payment {
            id: [7; 32],
            exp: crate::clock::SystemClock.unix_now() - LEEWAY - 5,
        };
        match v.consume(&stale).await {
            Err(PaymentError::Invalid(m)) => assert!(m.contains("expired"), "{m}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
        assert!(!v.is_used(&stale).await.unwrap());
    }

    #[tokio::test]
    async fn an_unreachable_jwks_url_is_unavailable_not_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let v = verifier(&format!("http://127.0.0.1:{port}/jwks.json"), store);
        let (k1, _) = key("k1");
        match v.verify(&token(&k1, "k1", "esigd", "a"), "shop").await {
            Err(PaymentError::Unavailable(m)) => assert!(m.contains("payment.jwks_url"), "{m}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    /// `[payment]` as the configuration file gives it (serde defaults apply).
    fn section_from(extra: serde_json::Value, jwks_url: &str) -> PaymentSection {
        let mut v =
            serde_json::json!({"audience": "esigd", "jwks_url": jwks_url, "algorithms": ["ES256"]});
        if let (Some(m), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
            m.extend(e);
        }
        serde_json::from_value(v).unwrap()
    }

    #[tokio::test]
    async fn with_an_issuer_configured_a_token_without_iss_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let (k1, jwk1) = key("k1");
        let (url, _) = jwks_server(Arc::new(std::sync::Mutex::new(publish(&[&jwk1])))).await;
        let section = section_from(
            serde_json::json!({"issuer": "https://pay.example.test"}),
            &url,
        );
        let v = PaymentVerifier::new(&section, dir.path(), store, crate::clock::system()).unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        let exp = crate::clock::SystemClock.unix_now() + 300;
        let signed =
            |claims: serde_json::Value| jsonwebtoken::encode(&header, &claims, &k1).unwrap();
        let no_iss =
            signed(serde_json::json!({"aud": "esigd", "exp": exp, "jti": "1", "sub": "shop"}));
        match v.verify(&no_iss, "shop").await {
            Err(PaymentError::Invalid(m)) => {
                assert!(m.contains("iss") && m.contains("payment.issuer"), "{m}")
            }
            other => panic!("expected Invalid naming iss, got {other:?}"),
        }
        let wrong = signed(
            serde_json::json!({"aud": "esigd", "exp": exp, "jti": "2", "sub": "shop", "iss": "https://evil.test"}),
        );
        match v.verify(&wrong, "shop").await {
            Err(PaymentError::Invalid(m)) => assert!(m.contains("payment.issuer"), "{m}"),
            other => panic!("expected Invalid naming payment.issuer, got {other:?}"),
        }
        let good = signed(
            serde_json::json!({"aud": "esigd", "exp": exp, "jti": "3", "sub": "shop", "iss": "https://pay.example.test"}),
        );
        v.verify(&good, "shop").await.unwrap();
    }

    #[tokio::test]
    async fn a_payment_for_one_eservice_is_refused_at_another_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let (k1, jwk1) = key("k1");
        let (url, _) = jwks_server(Arc::new(std::sync::Mutex::new(publish(&[&jwk1])))).await;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        let exp = crate::clock::SystemClock.unix_now() + 300;
        let signed =
            |claims: serde_json::Value| jsonwebtoken::encode(&header, &claims, &k1).unwrap();
        let for_a =
            signed(serde_json::json!({"aud": "esigd", "exp": exp, "jti": "a", "sub": "service-a"}));
        let unbound = signed(serde_json::json!({"aud": "esigd", "exp": exp, "jti": "u"}));

        // Nothing said about eservice_claim: the token must name the e-Service in `sub`.
        let section = section_from(serde_json::json!({}), &url);
        assert_eq!(section.eservice_claim.as_deref(), Some("sub"));
        let v = PaymentVerifier::new(&section, dir.path(), store.clone(), crate::clock::system())
            .unwrap();
        v.verify(&for_a, "service-a").await.unwrap();
        for (token, at) in [(&for_a, "service-b"), (&unbound, "service-b")] {
            match v.verify(token, at).await {
                Err(PaymentError::Invalid(m)) => {
                    assert!(m.contains("payment.eservice_claim"), "{m}")
                }
                other => panic!("expected Invalid, got {other:?}"),
            }
        }
        // Another claim named: that one must name the e-Service.
        let section = section_from(serde_json::json!({"eservice_claim": "eservice"}), &url);
        let v = PaymentVerifier::new(&section, dir.path(), store, crate::clock::system()).unwrap();
        assert!(v.verify(&for_a, "service-a").await.is_err());
    }

    #[derive(Debug)]
    struct FixedClock(std::sync::atomic::AtomicU64);
    impl Clock for FixedClock {
        fn now(&self) -> std::time::SystemTime {
            std::time::UNIX_EPOCH + Duration::from_secs(self.0.load(Ordering::SeqCst))
        }
    }

    #[tokio::test]
    async fn spent_payments_are_swept_after_their_exp_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let clock = Arc::new(FixedClock(std::sync::atomic::AtomicU64::new(1_000)));
        let section = section_from(serde_json::json!({}), "http://127.0.0.1:9/jwks.json");
        let v = Arc::new(
            PaymentVerifier::new(&section, dir.path(), store.clone(), clock.clone()).unwrap(),
        );
        let soon = Payment {
            id: [1; 32],
            exp: 1_100,
        };
        let later = Payment {
            id: [2; 32],
            exp: 5_000,
        };
        v.consume(&soon).await.unwrap();
        v.consume(&later).await.unwrap();
        // Another kind of record in the same column family is never touched.
        let mut other = Batch::new();
        other.put(Cf::Meta, b"idt/x".to_vec(), Vec::new());
        store.commit(other).await.unwrap();
        let sweep = |limit| {
            let v = v.clone();
            async move {
                tokio::task::spawn_blocking(move || v.sweep_blocking(limit))
                    .await
                    .unwrap()
                    .unwrap()
            }
        };

        // Within exp + leeway the record must stay: the token could still pass.
        clock.0.store(1_100 + LEEWAY, Ordering::SeqCst);
        assert_eq!(sweep(100).await, 0);
        assert!(v.is_used(&soon).await.unwrap());
        // Past it: the expired record (lookup key and index) goes, the live one stays.
        clock.0.store(1_100 + LEEWAY + 2, Ordering::SeqCst);
        assert_eq!(sweep(100).await, 1);
        assert!(!v.is_used(&soon).await.unwrap());
        assert!(store.get(Cf::Meta, &soon.expiry_key()).unwrap().is_none());
        assert!(v.is_used(&later).await.unwrap());
        assert!(store.get(Cf::Meta, &later.expiry_key()).unwrap().is_some());
        assert_eq!(sweep(100).await, 0);
        clock.0.store(u64::MAX / 2, Ordering::SeqCst);
        assert_eq!(sweep(100).await, 1);
        assert!(!v.is_used(&later).await.unwrap());
        assert!(store.get(Cf::Meta, b"idt/x").unwrap().is_some());
    }
}
