//! The Identity Building Block as seen by esigd: an OpenID Connect provider found through its
//! discovery document, whose ID tokens say who the signer is.
//!
//! Discovery and the JWKS come through the `openidconnect` crate; ID tokens are verified with
//! `jsonwebtoken` (ring: ES256 several times faster than the RustCrypto code, which mattered in
//! the signing benchmark) against those keys: signature, algorithm allow-list, `iss`, `aud`,
//! `exp`, `iat`, `azp`, `nonce`. This module caches the discovery document and JWKS (re-fetched
//! when a token names an unknown key, at most every [`JWKS_MIN_REFRESH`]) and maps claims to the
//! certificate subject.
//!
//! Tokens are never logged; errors say which check failed, not the token.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use esigd_pki::identity::IdentityClaims;
use openidconnect::IssuerUrl;
use openidconnect::core::{CoreJsonWebKeySet, CoreJwsSigningAlgorithm, CoreProviderMetadata};
use serde_json::{Map, Value};

use crate::clock::SharedClock;
use crate::config::{ClaimMapping, IdentitySection};

pub mod oidc;

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

/// A JWS algorithm name from the configuration (`ES256`, `RS256`, ...); `None` for unknown
/// names, `none` and the HMAC algorithms (a shared secret cannot identify a citizen to us).
pub fn parse_alg(name: &str) -> Option<CoreJwsSigningAlgorithm> {
    let alg: CoreJwsSigningAlgorithm =
        serde_json::from_value(Value::String(name.to_owned())).ok()?;
    match alg {
        CoreJwsSigningAlgorithm::HmacSha256
        | CoreJwsSigningAlgorithm::HmacSha384
        | CoreJwsSigningAlgorithm::HmacSha512
        // ES512 (P-521) has no verifier in the JOSE crate we use.
        | CoreJwsSigningAlgorithm::EcdsaP521Sha512
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
    /// The same keys for `jsonwebtoken` (ring verifies ES256 several times faster than the
    /// RustCrypto code `openidconnect` uses).
    keys: jsonwebtoken::jwk::JwkSet,
    fetched: Instant,
}

/// The configured Identity BB.
pub struct IdentityProvider {
    cfg: IdentitySection,
    issuer: IssuerUrl,
    http: openidconnect::reqwest::Client,
    cache: RwLock<Option<Arc<Discovered>>>,
    refresh: tokio::sync::Mutex<Option<Instant>>,
    clock: SharedClock,
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
            cfg: cfg.clone(),
            issuer,
            http,
            cache: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(None),
            clock: crate::clock::system(),
        })
    }

    /// The same provider reading time from `clock` (tests set the time).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The clock `auth_time` and client assertions are measured against.
    pub fn clock(&self) -> &dyn crate::clock::Clock {
        self.clock.as_ref()
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
        let keys = serde_json::to_value(&jwks)
            .and_then(serde_json::from_value)
            .map_err(|e| IdentityError::Unavailable(format!("the provider's JWKS: {e}")))?;
        let d = Arc::new(Discovered {
            metadata,
            jwks,
            keys,
            fetched: Instant::now(),
        });
        *self.cache.write().unwrap_or_else(|p| p.into_inner()) = Some(d.clone());
        *last = Some(Instant::now());
        Ok(d)
    }

    /// Verifies an ID token: signature (JWKS, `identity.allowed_algs`), `iss`, `exp` and `iat`
    /// (with `identity.clock_skew`), an `aud` that contains one of `audiences` and nothing
    /// untrusted (OIDC Core 3.1.3.7), `azp` when there are several audiences, `nbf` if present,
    /// `nonce` when given, `acr` against `identity.acr_values` and `auth_time` against
    /// `identity.max_age` when those are set. JWS checks are `jsonwebtoken`'s (ring).
    pub async fn verify_id_token(
        &self,
        token: &str,
        audiences: &[String],
        nonce: Option<&str>,
    ) -> Result<VerifiedToken, IdentityError> {
        let token = token.trim();
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| IdentityError::Malformed(e.to_string()))?;
        let d = self.discovered(false).await?;
        match self.verify_with(token, &header, &d.keys, audiences, nonce) {
            Err(IdentityError::Rejected(m)) if m.starts_with(UNKNOWN_KEY) => {
                // The provider may have rotated its keys: re-read the JWKS once.
                let d = self.discovered(true).await?;
                self.verify_with(token, &header, &d.keys, audiences, nonce)
            }
            other => other,
        }
    }

    fn verify_with(
        &self,
        token: &str,
        header: &jsonwebtoken::Header,
        keys: &jsonwebtoken::jwk::JwkSet,
        audiences: &[String],
        nonce: Option<&str>,
    ) -> Result<VerifiedToken, IdentityError> {
        if audiences.is_empty() {
            return Err(IdentityError::Rejected(
                "no accepted audience is configured".into(),
            ));
        }
        let alg_name = serde_json::to_value(header.alg)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        if !self.cfg.allowed_algs.contains(&alg_name) {
            return Err(IdentityError::Rejected(format!(
                "algorithm {alg_name} is not in identity.allowed_algs"
            )));
        }
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.set_issuer(&[self.cfg.issuer.as_str()]);
        validation.set_audience(audiences);
        validation.set_required_spec_claims(&["iss", "sub", "aud", "exp", "iat"]);
        validation.leeway = self.cfg.clock_skew.as_secs();
        validation.validate_nbf = true;
        let candidates: Vec<_> = keys
            .keys
            .iter()
            .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
            .filter_map(|k| jsonwebtoken::DecodingKey::from_jwk(k).ok())
            .collect();
        if candidates.is_empty() {
            return Err(IdentityError::Rejected(format!(
                "{UNKNOWN_KEY} in the provider's JWKS"
            )));
        }
        let mut last = IdentityError::Rejected(format!("{UNKNOWN_KEY} in the provider's JWKS"));
        for key in &candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation) {
                Ok(data) => return self.check_claims(data.claims, audiences, nonce),
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    last = match e.kind() {
                        K::InvalidSignature => IdentityError::Rejected("signature: invalid".into()),
                        K::ExpiredSignature => {
                            IdentityError::Rejected("expired: exp is in the past".into())
                        }
                        K::ImmatureSignature => {
                            IdentityError::Rejected("not valid yet (nbf)".into())
                        }
                        K::InvalidIssuer => {
                            IdentityError::Rejected(format!("issuer: not {}", self.cfg.issuer))
                        }
                        K::InvalidAudience => IdentityError::Rejected(
                            "audience: none of the accepted audiences".into(),
                        ),
                        K::MissingRequiredClaim(c) => {
                            IdentityError::Rejected(format!("claim {c} missing"))
                        }
                        K::InvalidToken | K::Base64(_) | K::Json(_) | K::Utf8(_) => {
                            IdentityError::Malformed(e.to_string())
                        }
                        _ => IdentityError::Rejected(e.to_string()),
                    };
                    // Only a bad signature may mean "another key of the set"; anything else is
                    // the token's fault.
                    if !matches!(e.kind(), K::InvalidSignature | K::InvalidAlgorithm) {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    fn check_claims(
        &self,
        claims: Map<String, Value>,
        audiences: &[String],
        nonce: Option<&str>,
    ) -> Result<VerifiedToken, IdentityError> {
        let auds: Vec<&str> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(v)) => v.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if let Some(untrusted) = auds.iter().find(|a| !audiences.iter().any(|t| t == *a)) {
            return Err(IdentityError::Rejected(format!(
                "audience: {untrusted:?} is not trusted"
            )));
        }
        if auds.len() > 1 {
            match claims.get("azp").and_then(Value::as_str) {
                Some(azp) if audiences.iter().any(|t| t == azp) => {}
                _ => {
                    return Err(IdentityError::Rejected(
                        "audience: several audiences without a trusted azp".into(),
                    ));
                }
            }
        }
        if let Some(expected) = nonce {
            match claims.get("nonce").and_then(Value::as_str) {
                Some(n) if n == expected => {}
                Some(_) => return Err(IdentityError::Rejected("nonce: does not match".into())),
                None => return Err(IdentityError::Rejected("nonce: missing".into())),
            }
        }
        if !self.cfg.acr_values.is_empty() {
            match claims.get("acr").and_then(Value::as_str) {
                Some(acr) if self.cfg.acr_values.iter().any(|a| a == acr) => {}
                Some(acr) => {
                    return Err(IdentityError::Rejected(format!(
                        "acr: {acr:?} is not in identity.acr_values"
                    )));
                }
                None => {
                    return Err(IdentityError::Rejected(
                        "acr: missing (identity.acr_values is set)".into(),
                    ));
                }
            }
        }
        if let Some(max_age) = self.cfg.max_age {
            let auth_time = claims
                .get("auth_time")
                .and_then(Value::as_u64)
                .ok_or_else(|| {
                    IdentityError::Rejected("auth_time: missing (identity.max_age is set)".into())
                })?;
            let oldest = self
                .clock
                .unix_now()
                .saturating_sub(max_age.as_secs() + self.cfg.clock_skew.as_secs());
            if auth_time < oldest {
                return Err(IdentityError::Rejected(
                    "auth_time: the login is older than identity.max_age".into(),
                ));
            }
        }
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| IdentityError::Rejected("claim sub missing".into()))?
            .to_owned();
        Ok(VerifiedToken { subject, claims })
    }
}

const UNKNOWN_KEY: &str = "no matching key";

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
