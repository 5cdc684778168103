//! The Identity Building Block as seen by esigd: an OpenID Connect provider found through its
//! discovery document, whose ID tokens say who the signer is.
//!
//! All JOSE and OIDC work is done by the `openidconnect` crate (signature against the provider's
//! JWKS, `iss`, `aud`, `exp`, `nonce`, algorithm allow-list); this module adds caching of the
//! discovery document and JWKS (re-fetched when a token names an unknown key, at most every
//! [`JWKS_MIN_REFRESH`]), and the mapping of claims to the certificate subject.
//!
//! Tokens are never logged; errors say which check failed, not the token.

use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use esigd_pki::identity::IdentityClaims;
use openidconnect::core::{
    CoreGenderClaim, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata,
};
use openidconnect::{
    AdditionalClaims, Audience, ClaimsVerificationError, ClientId, IdToken, IdTokenVerifier,
    IssuerUrl, Nonce, SignatureVerificationError,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::{ClaimMapping, IdentitySection};

/// JWKS re-fetches triggered by unknown keys happen at most this often.
pub const JWKS_MIN_REFRESH: Duration = Duration::from_secs(10);
/// The discovery document and JWKS are re-read after this long in any case.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(3600);

/// Why an identity could not be established.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The provider (discovery document or JWKS) could not be reached or read.
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
    /// The token is not a well-formed signed JWT.
    #[error("malformed ID token: {0}")]
    Malformed(String),
    /// The token failed a check (signature, issuer, audience, expiry, nonce).
    #[error("ID token rejected: {0}")]
    Rejected(String),
    /// The token is valid but lacks what the certificate subject needs.
    #[error("identity claims insufficient: {0}")]
    Claims(String),
}

/// Every claim of a token, kept as JSON so the subject mapping can name any claim.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RawClaims {
    /// The claims by name.
    #[serde(flatten)]
    pub all: Map<String, Value>,
}

impl AdditionalClaims for RawClaims {}

type Token =
    IdToken<RawClaims, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;

/// A JWS algorithm name from the configuration (`ES256`, `RS256`, ...); `None` for unknown
/// names, `none` and the HMAC algorithms (a shared secret cannot identify a citizen to us).
pub fn parse_alg(name: &str) -> Option<CoreJwsSigningAlgorithm> {
    let alg: CoreJwsSigningAlgorithm =
        serde_json::from_value(Value::String(name.to_owned())).ok()?;
    match alg {
        CoreJwsSigningAlgorithm::HmacSha256
        | CoreJwsSigningAlgorithm::HmacSha384
        | CoreJwsSigningAlgorithm::HmacSha512
        | CoreJwsSigningAlgorithm::None => None,
        other => Some(other),
    }
}

/// A verified ID token: its claims (standard and additional) as JSON.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// `sub`.
    pub subject: String,
    /// All claims.
    pub claims: Map<String, Value>,
}

struct Discovered {
    metadata: CoreProviderMetadata,
    jwks: CoreJsonWebKeySet,
    fetched: Instant,
}

/// The configured Identity BB.
pub struct IdentityProvider {
    cfg: IdentitySection,
    issuer: IssuerUrl,
    algs: Vec<CoreJwsSigningAlgorithm>,
    http: openidconnect::reqwest::Client,
    cache: RwLock<Option<Arc<Discovered>>>,
    refresh: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for IdentityProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityProvider")
            .field("issuer", &self.cfg.issuer)
            .finish()
    }
}

impl IdentityProvider {
    /// Prepares the provider (no network I/O: discovery happens on first use, so esigd starts
    /// even while the Identity BB is down). `ca_pem` is extra trust for an `https` issuer.
    pub fn new(cfg: &IdentitySection, ca_pem: Option<&[u8]>) -> Result<Self, IdentityError> {
        let issuer = IssuerUrl::new(cfg.issuer.clone())
            .map_err(|e| IdentityError::Unavailable(format!("identity.issuer: {e}")))?;
        let mut builder = openidconnect::reqwest::Client::builder()
            // Following redirects from the provider's endpoints invites SSRF; discovery and token
            // endpoints never need them.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5));
        if let Some(pem) = ca_pem {
            for cert in openidconnect::reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| IdentityError::Unavailable(format!("identity.ca_file: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| IdentityError::Unavailable(format!("HTTP client: {e}")))?;
        Ok(IdentityProvider {
            algs: cfg
                .allowed_algs
                .iter()
                .filter_map(|a| parse_alg(a))
                .collect(),
            cfg: cfg.clone(),
            issuer,
            http,
            cache: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(None),
        })
    }

    /// The configuration section.
    pub fn config(&self) -> &IdentitySection {
        &self.cfg
    }

    /// The HTTP client used towards the provider (redirects off).
    pub fn http(&self) -> &openidconnect::reqwest::Client {
        &self.http
    }

    fn cached(&self) -> Option<Arc<Discovered>> {
        self.cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|d| d.fetched.elapsed() < DISCOVERY_TTL)
    }

    /// The discovery document (fetched and cached).
    pub async fn metadata(&self) -> Result<CoreProviderMetadata, IdentityError> {
        Ok(self.discovered(false).await?.metadata.clone())
    }

    /// The provider's signing keys (JWKS) as JSON, for verifying other JWTs it signs (userinfo).
    pub async fn jwks_json(&self) -> Result<Value, IdentityError> {
        let d = self.discovered(false).await?;
        serde_json::to_value(&d.jwks).map_err(|e| IdentityError::Malformed(e.to_string()))
    }

    /// The configured algorithm names (`identity.allowed_algs`).
    pub fn allowed_algs(&self) -> &[String] {
        &self.cfg.allowed_algs
    }

    async fn discovered(&self, force: bool) -> Result<Arc<Discovered>, IdentityError> {
        if !force && let Some(d) = self.cached() {
            return Ok(d);
        }
        let mut last = self.refresh.lock().await;
        // Another task may have refreshed while we waited for the lock.
        if let Some(d) = self.cached() {
            let fresh = last.is_some_and(|t| t.elapsed() < JWKS_MIN_REFRESH);
            if !force || fresh {
                return Ok(d);
            }
        }
        let metadata = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| {
                IdentityError::Unavailable(format!(
                    "discovery at {}: {}",
                    self.cfg.issuer,
                    chain(&e)
                ))
            })?;
        // discover_async already fetched the JWKS once; keep it.
        let jwks = metadata.jwks().clone();
        let d = Arc::new(Discovered {
            metadata,
            jwks,
            fetched: Instant::now(),
        });
        *self.cache.write().unwrap_or_else(|p| p.into_inner()) = Some(d.clone());
        *last = Some(Instant::now());
        Ok(d)
    }

    /// Verifies an ID token: signature (JWKS), `iss`, `exp` (with `identity.clock_skew`), and an
    /// `aud` that contains one of `audiences` and nothing untrusted; `nonce` must match when given.
    pub async fn verify_id_token(
        &self,
        token: &str,
        audiences: &[String],
        nonce: Option<&str>,
    ) -> Result<VerifiedToken, IdentityError> {
        let parsed =
            Token::from_str(token.trim()).map_err(|e| IdentityError::Malformed(e.to_string()))?;
        let d = self.discovered(false).await?;
        match self.verify_with(&parsed, &d.jwks, audiences, nonce) {
            Err(IdentityError::Rejected(m)) if m.starts_with(UNKNOWN_KEY) => {
                // The provider may have rotated its keys: re-read the JWKS once.
                let d = self.discovered(true).await?;
                self.verify_with(&parsed, &d.jwks, audiences, nonce)
            }
            other => other,
        }
    }

    fn verify_with(
        &self,
        token: &Token,
        jwks: &CoreJsonWebKeySet,
        audiences: &[String],
        nonce: Option<&str>,
    ) -> Result<VerifiedToken, IdentityError> {
        if audiences.is_empty() {
            return Err(IdentityError::Rejected(
                "no accepted audience is configured".into(),
            ));
        }
        let skew = chrono_skew(self.cfg.clock_skew);
        let mut last = None;
        for aud in audiences {
            let trusted: Vec<String> = audiences.to_vec();
            let verifier: IdTokenVerifier<'_, openidconnect::core::CoreJsonWebKey> =
                IdTokenVerifier::new_public_client(
                    ClientId::new(aud.clone()),
                    self.issuer.clone(),
                    jwks.clone(),
                )
                .set_allowed_algs(self.algs.clone())
                .set_other_audience_verifier_fn(move |a: &Audience| trusted.contains(a))
                // `exp` is compared with "now - skew": a token may be used up to `skew` late.
                .set_time_fn(move || chrono::Utc::now() - skew);
            let expected = nonce.map(|n| Nonce::new(n.to_owned()));
            let check_nonce = |got: Option<&Nonce>| -> Result<(), String> {
                match (&expected, got) {
                    (None, _) => Ok(()),
                    (Some(e), Some(g)) if e.secret() == g.secret() => Ok(()),
                    (Some(_), Some(_)) => Err("nonce does not match".into()),
                    (Some(_), None) => Err("nonce missing".into()),
                }
            };
            match token.claims(&verifier, check_nonce) {
                Ok(claims) => {
                    let value = serde_json::to_value(claims)
                        .map_err(|e| IdentityError::Malformed(e.to_string()))?;
                    let Value::Object(map) = value else {
                        return Err(IdentityError::Malformed("claims are not an object".into()));
                    };
                    return Ok(VerifiedToken {
                        subject: claims.subject().as_str().to_owned(),
                        claims: map,
                    });
                }
                Err(ClaimsVerificationError::InvalidAudience(m)) => {
                    last = Some(IdentityError::Rejected(format!("audience: {m}")));
                }
                Err(e) => return Err(rejection(e)),
            }
        }
        Err(last.unwrap_or_else(|| IdentityError::Rejected("audience".into())))
    }
}

const UNKNOWN_KEY: &str = "no matching key";

fn rejection(e: ClaimsVerificationError) -> IdentityError {
    match e {
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        ) => IdentityError::Rejected(format!("{UNKNOWN_KEY} in the provider's JWKS")),
        ClaimsVerificationError::SignatureVerification(s) => {
            IdentityError::Rejected(format!("signature: {s}"))
        }
        ClaimsVerificationError::Expired(m) => IdentityError::Rejected(format!("expired: {m}")),
        ClaimsVerificationError::InvalidIssuer(m) => {
            IdentityError::Rejected(format!("issuer: {m}"))
        }
        ClaimsVerificationError::InvalidNonce(m) => IdentityError::Rejected(format!("nonce: {m}")),
        other => IdentityError::Rejected(other.to_string()),
    }
}

fn chrono_skew(d: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::zero())
}

/// An error and its sources, one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Picks the subject claims out of a token's (or userinfo's) claims with the configured names.
/// Numbers are accepted for identifiers; anything else that is not a string is ignored.
pub fn map_claims(m: &ClaimMapping, claims: &Map<String, Value>) -> IdentityClaims {
    let get = |name: &str| -> Option<String> {
        match claims.get(name)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    IdentityClaims {
        name: get(&m.name),
        given_name: get(&m.given_name),
        family_name: get(&m.family_name),
        personal_identifier: get(&m.personal_identifier),
        country: get(&m.country).or_else(|| m.default_country.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms_exclude_hmac_and_none() {
        assert!(parse_alg("ES256").is_some());
        assert!(parse_alg("PS512").is_some());
        assert!(parse_alg("HS256").is_none());
        assert!(parse_alg("none").is_none());
        assert!(parse_alg("XX1").is_none());
    }

    #[test]
    fn claims_are_mapped_by_name() {
        let m = ClaimMapping {
            default_country: Some("EE".into()),
            ..ClaimMapping::default()
        };
        let claims = serde_json::json!({
            "name": "Mari Maasikas", "given_name": "Mari", "family_name": "Maasikas",
            "individual_id": 49005170001u64
        });
        let Value::Object(map) = claims else {
            unreachable!()
        };
        let c = map_claims(&m, &map);
        assert_eq!(c.name.as_deref(), Some("Mari Maasikas"));
        assert_eq!(c.personal_identifier.as_deref(), Some("49005170001"));
        assert_eq!(c.country.as_deref(), Some("EE"));
    }
}
