//! The Identity Building Block as seen by esigd: an OpenID Connect provider found through its
//! discovery document, whose ID tokens say who the signer is.
//!
//! Discovery and the JWKS come through the `openidconnect` crate; ID tokens are verified with
//! `jsonwebtoken` (ring: ES256 several times faster than the RustCrypto code, which mattered in
//! the signing benchmark) against those keys: signature, algorithm allow-list, `iss`, `aud`,
//! `exp`, `iat`, `nbf`, `typ`, `azp`, `nonce`, `acr`, `auth_time`. This module caches the
//! discovery document and JWKS (re-fetched when a token names an unknown key, at most every
//! [`JWKS_MIN_REFRESH`]) and maps claims to the certificate subject.
//!
//! While the Identity BB is down, one refresh at a time is attempted (the other requests keep
//! using the last good discovery document and JWKS, for up to [`DISCOVERY_MAX_STALE`] past
//! [`DISCOVERY_TTL`]), and a failed refresh is not retried before [`REFRESH_RETRY_MIN`].
//!
//! ID tokens presented on the e-Service API are single-use: [`ledger`] keeps a durable record of
//! each one spent on a signature until it expires.
//!
//! Access tokens (opaque, or `at+jwt`) presented there instead are checked at the provider's
//! RFC 7662 introspection endpoint and the claims read from userinfo: [`introspect`].
//!
//! Tokens are never logged; errors say which check failed, not the token.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use esigd_pki::identity::IdentityClaims;
use openidconnect::IssuerUrl;
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
    CoreSubjectIdentifierType,
};
use serde_json::{Map, Value};

use crate::clock::SharedClock;
use crate::config::{ClaimMapping, IdentitySection};

pub mod introspect;
pub mod ledger;
pub mod oidc;

pub use introspect::{IntrospectionMetadata, TokenKind};
use ledger::{IdTokenLedger, TokenUse};
use oidc::ClientAuth;

/// The provider's discovery document: OpenID Connect Discovery, plus the `introspection_endpoint`
/// (RFC 8414) that [`IdentityProvider::verify_access_token`] uses.
pub type ProviderMetadata = openidconnect::ProviderMetadata<
    IntrospectionMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// JWKS re-fetches triggered by unknown keys happen at most this often.
pub const JWKS_MIN_REFRESH: Duration = Duration::from_secs(10);
/// The discovery document and JWKS are re-read after this long in any case.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// How long past [`DISCOVERY_TTL`] the last good discovery document and JWKS stay in use while
/// the Identity BB cannot be reached: an outage of the Identity BB does not stop signing at once,
/// but keys it withdrew (say, after a compromise) do not stay trusted for long either.
pub const DISCOVERY_MAX_STALE: Duration = Duration::from_secs(3600);
/// Least time between two refresh attempts after one failed: requests arriving during an outage
/// do not each wait for a discovery timeout, and the Identity BB is not hammered when it returns.
pub const REFRESH_RETRY_MIN: Duration = Duration::from_secs(10);

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
    /// The token was already spent on a signature (ID tokens are single-use on the API).
    #[error("ID token already used")]
    Reused,
    /// The record of spent tokens (the store) cannot be read or written.
    #[error("ID token single-use record unavailable: {0}")]
    Store(String),
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
    metadata: ProviderMetadata,
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
    refresh: tokio::sync::Mutex<Refresh>,
    clock: SharedClock,
    ledger: Option<IdTokenLedger>,
    /// How esigd authenticates as `client_id` (introspection of access tokens).
    client_auth: Option<Arc<ClientAuth>>,
    /// `identity.introspection_url`, parsed.
    introspection_url: Option<url::Url>,
    /// [`DISCOVERY_TTL`] (tests shorten it).
    ttl: Duration,
    /// [`DISCOVERY_MAX_STALE`].
    max_stale: Duration,
    /// [`REFRESH_RETRY_MIN`].
    retry_min: Duration,
}

/// The last refresh attempt of the discovery document and JWKS.
#[derive(Default)]
struct Refresh {
    /// When it started.
    attempted: Option<Instant>,
    /// Why it failed, if it did.
    failed: Option<String>,
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
        let introspection_url = cfg
            .introspection_url
            .as_deref()
            .map(introspect::endpoint_url)
            .transpose()
            .map_err(|e| IdentityError::Unavailable(format!("identity.introspection_url: {e}")))?;
        Ok(IdentityProvider {
            cfg: cfg.clone(),
            issuer,
            http,
            cache: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(Refresh::default()),
            clock: crate::clock::system(),
            ledger: None,
            client_auth: None,
            introspection_url,
            ttl: DISCOVERY_TTL,
            max_stale: DISCOVERY_MAX_STALE,
            retry_min: REFRESH_RETRY_MIN,
        })
    }

    /// The same provider reading time from `clock` (tests set the time).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        if let Some(l) = &mut self.ledger {
            l.clock = clock.clone();
        }
        self.clock = clock;
        self
    }

    /// The same provider keeping its record of spent ID tokens in `store` (required for
    /// [`IdentityProvider::spend_id_token`]).
    pub fn with_store(mut self, store: esigd_store::Store) -> Self {
        self.ledger = Some(IdTokenLedger::new(
            store,
            self.clock.clone(),
            self.cfg.clock_skew,
        ));
        self
    }

    /// The same provider authenticating as `identity.client_id` with `auth` (read by
    /// [`ClientAuth::from_section`]) where it calls the provider as a client itself: the token
    /// introspection of [`IdentityProvider::verify_access_token`] (required there).
    pub fn with_client_auth(mut self, auth: Arc<ClientAuth>) -> Self {
        self.client_auth = Some(auth);
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

    /// The last good discovery, however old.
    fn last_good(&self) -> Option<Arc<Discovered>> {
        self.cache.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The last good discovery if younger than the TTL.
    fn fresh(d: Option<Arc<Discovered>>, ttl: Duration) -> Option<Arc<Discovered>> {
        d.filter(|d| d.fetched.elapsed() < ttl)
    }

    /// The last good discovery if still usable while refreshing fails.
    fn usable(&self, d: Option<Arc<Discovered>>) -> Option<Arc<Discovered>> {
        d.filter(|d| d.fetched.elapsed() < self.ttl.saturating_add(self.max_stale))
    }

    /// The discovery document (fetched and cached).
    pub async fn metadata(&self) -> Result<ProviderMetadata, IdentityError> {
        Ok(self.discovered(false).await?.metadata.clone())
    }

    /// The provider's signing keys (JWKS) as JSON, for verifying other JWTs it signs (userinfo).
    pub async fn jwks_json(&self) -> Result<Value, IdentityError> {
        let d = self.discovered(false).await?;
        serde_json::to_value(&d.jwks).map_err(|e| IdentityError::Malformed(e.to_string()))
    }

    /// The provider's keys that may verify a JWS with `header` ([`verification_keys`]).
    pub(crate) async fn verification_keys(
        &self,
        header: &jsonwebtoken::Header,
    ) -> Result<Vec<jsonwebtoken::DecodingKey>, IdentityError> {
        Ok(verification_keys(
            &self.discovered(false).await?.keys,
            header,
        ))
    }

    /// The configured algorithm names (`identity.allowed_algs`).
    pub fn allowed_algs(&self) -> &[String] {
        &self.cfg.allowed_algs
    }

    /// The discovery document and JWKS: the cached ones while younger than the TTL, else
    /// refreshed. `force` (a token named an unknown key) asks for a refresh, at most one per
    /// [`JWKS_MIN_REFRESH`]. One refresh runs at a time: while it runs, requests that have a usable
    /// (stale) copy go on with it, the others wait for its result. A failed refresh leaves the
    /// last good copy in use for up to [`DISCOVERY_MAX_STALE`] past the TTL and is not retried
    /// before [`REFRESH_RETRY_MIN`].
    async fn discovered(&self, force: bool) -> Result<Arc<Discovered>, IdentityError> {
        if !force && let Some(d) = Self::fresh(self.last_good(), self.ttl) {
            return Ok(d);
        }
        let mut state = match self.refresh.try_lock() {
            Ok(g) => g,
            Err(_) => {
                // A refresh is in flight: do not queue behind it while a usable copy exists.
                if !force && let Some(d) = self.usable(self.last_good()) {
                    return Ok(d);
                }
                self.refresh.lock().await
            }
        };
        let current = self.last_good();
        let recent = |min: Duration| state.attempted.is_some_and(|t| t.elapsed() < min);
        // Another task may have refreshed while we waited for the lock.
        if let Some(d) = Self::fresh(current.clone(), self.ttl)
            && (!force || recent(JWKS_MIN_REFRESH))
        {
            return Ok(d);
        }
        if state.failed.is_some() && recent(self.retry_min) {
            // The last attempt failed a moment ago: no new attempt yet.
            return self.usable(current).ok_or_else(|| {
                IdentityError::Unavailable(format!(
                    "{} (retrying in at most {:?})",
                    state.failed.as_deref().unwrap_or_default(),
                    self.retry_min
                ))
            });
        }
        state.attempted = Some(Instant::now());
        match self.fetch().await {
            Ok(d) => {
                *self.cache.write().unwrap_or_else(|p| p.into_inner()) = Some(d.clone());
                state.failed = None;
                Ok(d)
            }
            Err(e) => {
                state.failed = Some(e.to_string());
                match self.usable(current) {
                    Some(d) => {
                        tracing::warn!(
                            error = %e,
                            "identity provider refresh failed; the last good discovery document and JWKS stay in use"
                        );
                        Ok(d)
                    }
                    None => Err(e),
                }
            }
        }
    }

    async fn fetch(&self) -> Result<Arc<Discovered>, IdentityError> {
        let metadata = ProviderMetadata::discover_async(self.issuer.clone(), &self.http)
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
        Ok(Arc::new(Discovered {
            metadata,
            jwks,
            keys,
            fetched: Instant::now(),
        }))
    }

    /// Verifies an ID token: signature (JWKS, `identity.allowed_algs`), `iss`, `exp` and `iat`
    /// (with `identity.clock_skew`), an `aud` that contains one of `audiences` and nothing
    /// untrusted (OIDC Core 3.1.3.7), `azp` when there are several audiences, `nbf` if present,
    /// an `iat` not in the future, a header `typ` that is absent or `JWT` (not, say, an access
    /// token's `at+jwt`), `nonce` when given, `acr` against `identity.acr_values` and `auth_time`
    /// against `identity.max_age` (10 minutes by default). JWS checks are `jsonwebtoken`'s (ring).
    /// With a store ([`IdentityProvider::with_store`]), a token already spent on a signature is
    /// refused ([`IdentityError::Reused`]); verifying does not spend it.
    pub async fn verify_id_token(
        &self,
        token: &str,
        audiences: &[String],
        nonce: Option<&str>,
    ) -> Result<VerifiedToken, IdentityError> {
        let token = token.trim();
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| IdentityError::Malformed(e.to_string()))?;
        check_typ(header.typ.as_deref())?;
        let d = self.discovered(false).await?;
        let verified = match self.verify_with(token, &header, &d.keys, audiences, nonce) {
            Err(IdentityError::Rejected(m)) if m.starts_with(UNKNOWN_KEY) => {
                // The provider may have rotated its keys: re-read the JWKS once.
                let d = self.discovered(true).await?;
                self.verify_with(token, &header, &d.keys, audiences, nonce)
            }
            other => other,
        }?;
        if let Some(ledger) = &self.ledger {
            ledger.check(&ledger.token_use(token, &verified)?).await?;
        }
        Ok(verified)
    }

    /// Spends `token` (verified as `verified`) on a signature: durable when this returns `Ok`;
    /// [`IdentityError::Reused`] if it was spent before (also by a concurrent request). Call it
    /// right before signing; [`IdentityProvider::give_back`] if certainly no signature was made.
    /// Without a store this fails closed ([`IdentityError::Store`]).
    pub async fn spend_id_token(
        &self,
        token: &str,
        verified: &VerifiedToken,
    ) -> Result<TokenUse, IdentityError> {
        let ledger = self.ledger.as_ref().ok_or_else(|| {
            IdentityError::Store("no store is wired for the single-use record".into())
        })?;
        let u = ledger.token_use(token, verified)?;
        ledger.consume(&u).await?;
        Ok(u)
    }

    /// Gives a spent token back after a signature that certainly was not made.
    pub async fn give_back(&self, u: &TokenUse) {
        if let Some(ledger) = &self.ledger {
            ledger.release(u).await;
        }
    }

    /// Removes the records of spent tokens that expired (up to `limit`); how many. Blocking.
    pub fn sweep_spent_tokens_blocking(&self, limit: usize) -> Result<usize, IdentityError> {
        match &self.ledger {
            Some(l) => l.sweep_blocking(limit),
            None => Ok(0),
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
        let candidates = verification_keys(keys, header);
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
        // jsonwebtoken checks exp and nbf, not iat: a token "issued" in the future is forged or
        // from a provider with a broken clock.
        let now = self.clock.unix_now();
        match claims.get("iat").and_then(Value::as_f64) {
            Some(iat) if iat > now.saturating_add(self.cfg.clock_skew.as_secs()) as f64 => {
                return Err(IdentityError::Rejected(
                    "iat: issued in the future (beyond identity.clock_skew)".into(),
                ));
            }
            Some(_) => {}
            None => return Err(IdentityError::Rejected("claim iat missing".into())),
        }
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
        self.check_login(&claims)?;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| IdentityError::Rejected("claim sub missing".into()))?
            .to_owned();
        Ok(VerifiedToken { subject, claims })
    }

    /// The login behind a token: `acr` against `identity.acr_values` (when set) and `auth_time`
    /// against `identity.max_age` (when set; with `identity.clock_skew`).
    fn check_login(&self, claims: &Map<String, Value>) -> Result<(), IdentityError> {
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
        Ok(())
    }
}

const UNKNOWN_KEY: &str = "no matching key";

/// The keys of `set` that may verify a JWS with `header` (ID tokens, signed userinfo, payment
/// tokens): the header's `kid` when it names one, and of those only keys meant for it: a JWK
/// `use` other than `sig` or an `alg` other than the header's rules the key out (RFC 7517 4.2,
/// 4.4: a key published for encryption or for another algorithm must not verify signatures).
pub(crate) fn verification_keys(
    set: &jsonwebtoken::jwk::JwkSet,
    header: &jsonwebtoken::Header,
) -> Vec<jsonwebtoken::DecodingKey> {
    use jsonwebtoken::jwk::PublicKeyUse;
    let name = |v: serde_json::Result<Value>| v.ok().and_then(|v| v.as_str().map(str::to_owned));
    let header_alg = name(serde_json::to_value(header.alg));
    set.keys
        .iter()
        .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
        .filter(|k| {
            k.common
                .public_key_use
                .as_ref()
                .is_none_or(|u| *u == PublicKeyUse::Signature)
        })
        .filter(|k| {
            k.common
                .key_algorithm
                .as_ref()
                .is_none_or(|a| header_alg.is_some() && name(serde_json::to_value(a)) == header_alg)
        })
        .filter_map(|k| jsonwebtoken::DecodingKey::from_jwk(k).ok())
        .collect()
}

/// The JOSE header `typ` of an ID token: absent or `JWT` (OIDC Core does not define another).
/// Anything else (`at+jwt` access tokens, `logout+jwt`, ...) is a JWT meant for something else.
pub(crate) fn check_typ(typ: Option<&str>) -> Result<(), IdentityError> {
    match typ {
        None => Ok(()),
        Some(t) if t.eq_ignore_ascii_case("JWT") || t.eq_ignore_ascii_case("application/jwt") => {
            Ok(())
        }
        Some(t) => Err(IdentityError::Rejected(format!(
            "header typ {t:?} is not an ID token (only JWT or none)"
        ))),
    }
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
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// How the test Identity BB answers.
    #[derive(Clone, Copy, PartialEq)]
    pub(super) enum Mode {
        Up,
        /// HTTP 500 to everything.
        Failing,
        /// Accepts, reads the request, never answers.
        Hanging,
    }

    /// A discovery document and an (empty) JWKS on 127.0.0.1, with a raw tokio responder (this
    /// crate links no HTTP server); counts discovery requests.
    async fn provider_server(mode: Arc<std::sync::Mutex<Mode>>) -> (String, Arc<AtomicUsize>) {
        provider_server_with(mode, serde_json::json!({"keys": []}), serde_json::json!({})).await
    }

    /// [`provider_server`] publishing `jwks`, with `extra` added to the discovery document.
    pub(super) async fn provider_server_with(
        mode: Arc<std::sync::Mutex<Mode>>,
        jwks: Value,
        extra: Value,
    ) -> (String, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let discoveries = Arc::new(AtomicUsize::new(0));
        let counter = discoveries.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let mut doc = serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/auth"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        });
        if let (Some(d), Value::Object(e)) = (doc.as_object_mut(), extra) {
            d.extend(e);
        }
        let doc = doc.to_string();
        let jwks = jwks.to_string();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (mode, counter, doc, jwks) = (
                    *mode.lock().unwrap(),
                    counter.clone(),
                    doc.clone(),
                    jwks.clone(),
                );
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    if head.starts_with("GET /.well-known/openid-configuration") {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    let body = if head.starts_with("GET /jwks") {
                        jwks
                    } else {
                        doc
                    };
                    let reply = match mode {
                        Mode::Up => format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        ),
                        Mode::Failing => "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
                        Mode::Hanging => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                    };
                    let _ = conn.write_all(reply.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        (issuer, discoveries)
    }

    #[tokio::test]
    async fn an_identity_bb_outage_keeps_the_last_good_keys_with_one_refresh_at_a_time() {
        let mode = Arc::new(std::sync::Mutex::new(Mode::Up));
        let (issuer, discoveries) = provider_server(mode.clone()).await;
        let section = IdentitySection::new(issuer.clone(), "esigd");
        let hits = || discoveries.load(Ordering::SeqCst);

        // A good discovery, then the provider fails and the cache is past its TTL.
        let mut p = IdentityProvider::new(&section, None).unwrap();
        p.metadata().await.unwrap();
        assert_eq!(hits(), 1);
        *mode.lock().unwrap() = Mode::Failing;
        p.ttl = Duration::ZERO;
        p.retry_min = Duration::from_secs(60);
        // The failed refresh is attempted once; the last good document and keys keep serving,
        // and no new attempt is made before retry_min.
        for _ in 0..5 {
            p.metadata().await.unwrap();
            p.jwks_json().await.unwrap();
        }
        assert_eq!(hits(), 2);
        // Stale beyond DISCOVERY_MAX_STALE: unavailable.
        p.max_stale = Duration::ZERO;
        assert!(matches!(
            p.metadata().await,
            Err(IdentityError::Unavailable(_))
        ));
        assert_eq!(hits(), 2);

        // Never reached and the last attempt failed a moment ago: no new attempt either.
        let mut cold = IdentityProvider::new(&section, None).unwrap();
        cold.retry_min = Duration::from_secs(60);
        assert!(matches!(
            cold.metadata().await,
            Err(IdentityError::Unavailable(_))
        ));
        assert!(matches!(
            cold.metadata().await,
            Err(IdentityError::Unavailable(_))
        ));
        assert_eq!(hits(), 3);

        // The provider hangs: one refresh is in flight; the other requests do not queue behind
        // it (nor start their own) but go on with the last good copy.
        *mode.lock().unwrap() = Mode::Up;
        let mut warm = IdentityProvider::new(&section, None).unwrap();
        warm.metadata().await.unwrap();
        assert_eq!(hits(), 4);
        *mode.lock().unwrap() = Mode::Hanging;
        warm.ttl = Duration::ZERO;
        warm.retry_min = Duration::ZERO;
        let warm = Arc::new(warm);
        let first = {
            let p = warm.clone();
            tokio::spawn(async move { p.metadata().await })
        };
        // Let the first one start its refresh (and reach the hanging provider).
        for _ in 0..100 {
            if hits() == 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(hits(), 5);
        let others: Vec<_> = (0..20)
            .map(|_| {
                let p = warm.clone();
                tokio::spawn(async move { p.metadata().await })
            })
            .collect();
        for o in others {
            tokio::time::timeout(Duration::from_secs(2), o)
                .await
                .expect("a request waited for the hanging refresh")
                .unwrap()
                .unwrap();
        }
        assert_eq!(hits(), 5);
        first.abort();
    }

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
