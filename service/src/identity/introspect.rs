//! Access tokens on the e-Service API (GovStack eSignature 9.2.1 onboarding): the citizen's
//! `X-GovStack-AuthenticationToken` may be an access token the e-Service obtained at the Identity
//! BB instead of an ID token.
//!
//! An access token is checked at the provider's RFC 7662 token introspection endpoint (the
//! discovery document's `introspection_endpoint`, or `identity.introspection_url`), esigd
//! authenticating as its own OIDC client exactly as at the token endpoint ([`ClientAuth`]:
//! `client_secret_basic` or `private_key_jwt`). It must be `active`, unexpired (with
//! `identity.clock_skew`), not a refresh token, issued to the calling e-Service (`client_id`, or
//! else `aud`, among its accepted audiences), about a subject (`sub`), and from a login that
//! meets `identity.acr_values` and `identity.max_age` (from the introspection's `acr` and
//! `auth_time`). The claims are then read from userinfo with the token itself; userinfo's `sub`
//! must be the introspection's.
//!
//! Responses are read up to [`MAX_RESPONSE_BYTES`] with the provider's HTTP client (its timeouts,
//! no redirects). Tokens never appear in errors or logs.

use openidconnect::AdditionalProviderMetadata;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::oidc::ClientAuth;
use super::{IdentityError, IdentityProvider, VerifiedToken, chain, check_typ};

/// The most of an introspection or userinfo response that is read.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Longer tokens are refused before any request is made.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The discovery document members esigd reads beyond OpenID Connect Discovery.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct IntrospectionMetadata {
    /// RFC 8414 / RFC 7662 `introspection_endpoint` (kept as text: a bad value only fails
    /// introspection, not the discovery every ID token needs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
}

impl AdditionalProviderMetadata for IntrospectionMetadata {}

/// What kind of token a citizen's authentication token is
/// ([`IdentityProvider::verify_citizen_token`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// An OpenID Connect ID token (a JWS whose header `typ` is absent or `JWT`), verified
    /// locally against the provider's keys.
    IdToken,
    /// An OAuth access token (opaque, or a JWT of another `typ` such as `at+jwt`), checked at the
    /// provider's introspection endpoint.
    AccessToken,
}

impl TokenKind {
    /// Which path `token` takes: [`TokenKind::IdToken`] for a JWS whose header `typ` is absent
    /// or `JWT`, [`TokenKind::AccessToken`] for anything else. Nothing is verified here.
    pub fn of(token: &str) -> TokenKind {
        match jsonwebtoken::decode_header(token.trim()) {
            Ok(h) if check_typ(h.typ.as_deref()).is_ok() => TokenKind::IdToken,
            _ => TokenKind::AccessToken,
        }
    }
}

/// An `http`/`https` endpoint URL (`identity.introspection_url`, `introspection_endpoint`).
pub(crate) fn endpoint_url(s: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(s).map_err(|e| format!("{s:?}: {e}"))?;
    match u.scheme() {
        "http" | "https" if u.host().is_some() => Ok(u),
        _ => Err(format!("{s:?}: not an http(s) URL")),
    }
}

/// RFC 6749 2.3.1: client ID and secret are form-urlencoded before HTTP Basic.
fn form_urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A token esigd may put in a form or an `Authorization: Bearer` header: not empty, at most
/// [`MAX_TOKEN_BYTES`], RFC 6750 `b64token` characters only.
fn check_token_syntax(token: &str) -> Result<(), IdentityError> {
    if token.is_empty() {
        return Err(IdentityError::Malformed("the token is empty".into()));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(IdentityError::Malformed(format!(
            "the token is longer than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    let b64token = |c: char| c.is_ascii_alphanumeric() || "-._~+/".contains(c);
    let body = token.trim_end_matches('=');
    if body.is_empty() || !body.chars().all(b64token) {
        return Err(IdentityError::Malformed(
            "the token has characters an RFC 6750 bearer token cannot have".into(),
        ));
    }
    Ok(())
}

/// A response body, at most [`MAX_RESPONSE_BYTES`].
async fn read_bounded(
    mut resp: openidconnect::reqwest::Response,
    what: &str,
) -> Result<Vec<u8>, IdentityError> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return Err(IdentityError::Unavailable(format!(
            "{what}: the response is larger than {MAX_RESPONSE_BYTES} bytes"
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| IdentityError::Unavailable(format!("{what}: {}", chain(&e))))?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(IdentityError::Unavailable(format!(
                "{what}: the response is larger than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A JSON object from `body`, or `Unavailable` naming `what` (a provider that answers nonsense
/// is out of order; the token is not to blame).
fn json_object(body: &[u8], what: &str) -> Result<Map<String, Value>, IdentityError> {
    serde_json::from_slice(body)
        .map_err(|e| IdentityError::Unavailable(format!("{what}: not a JSON object: {e}")))
}

/// A NumericDate (RFC 7519): an integer or a non-negative number of seconds.
fn numeric_date(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f.floor() as u64))
}

/// The OAuth `error` code of an error response, when it is a plain code (never free text, which
/// could echo what was sent).
fn error_code(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let code = v.get("error")?.as_str()?;
    (!code.is_empty()
        && code.len() <= 64
        && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    .then(|| code.to_owned())
}

impl IdentityProvider {
    /// Verifies the citizen's authentication token of the e-Service API for an e-Service that
    /// accepts `audiences` (its `id_token_audiences`): a JWS whose header `typ` is absent or
    /// `JWT` as an ID token ([`IdentityProvider::verify_id_token`], no nonce), anything else
    /// (an opaque string, an `at+jwt`) as an access token
    /// ([`IdentityProvider::verify_access_token`]). Says which it was.
    pub async fn verify_citizen_token(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<(VerifiedToken, TokenKind), IdentityError> {
        match TokenKind::of(token) {
            TokenKind::IdToken => Ok((
                self.verify_id_token(token, audiences, None).await?,
                TokenKind::IdToken,
            )),
            TokenKind::AccessToken => Ok((
                self.verify_access_token(token, audiences).await?,
                TokenKind::AccessToken,
            )),
        }
    }

    /// Verifies an access token that the e-Service accepting `audiences` obtained for a citizen:
    /// RFC 7662 introspection as esigd's client ([`IdentityProvider::with_client_auth`]), which
    /// must say `active: true`, a future `exp` (with `identity.clock_skew`; required), `nbf` not
    /// in the future, `iss` the issuer (when given), a `token_type` that is not a refresh token
    /// (when given), a `client_id` among `audiences` (or, without `client_id`, an `aud` that
    /// contains one), a `sub`, and `acr` / `auth_time` meeting `identity.acr_values` /
    /// `identity.max_age`. Then userinfo, read with the token, gives the claims; its `sub` must
    /// be the introspection's. The claims are userinfo's plus the introspection's `exp`,
    /// `auth_time` and `acr`. With a store, a token already spent on a signature is refused
    /// ([`IdentityError::Reused`]), as ID tokens are.
    ///
    /// [`IdentityError::Rejected`] when the token is inactive, expired, foreign or refused by
    /// userinfo; [`IdentityError::Malformed`] when it cannot be a bearer token;
    /// [`IdentityError::Unavailable`] when the provider cannot be reached, answers with an
    /// error status or nonsense, or esigd has no introspection endpoint or client credentials.
    pub async fn verify_access_token(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<VerifiedToken, IdentityError> {
        let token = token.trim();
        check_token_syntax(token)?;
        if audiences.is_empty() {
            return Err(IdentityError::Rejected(
                "no accepted audience is configured".into(),
            ));
        }
        let intro = self.introspect(token).await?;
        let (subject, login) = self.check_introspection(&intro, audiences)?;
        let mut claims = self.userinfo_claims(token, &subject).await?;
        // The introspection is the authority on the token itself.
        claims.extend(login);
        let verified = VerifiedToken { subject, claims };
        if let Some(ledger) = &self.ledger {
            ledger.check(&ledger.token_use(token, &verified)?).await?;
        }
        Ok(verified)
    }

    /// The introspection endpoint: `identity.introspection_url`, else the discovery document's.
    pub async fn introspection_endpoint(&self) -> Result<url::Url, IdentityError> {
        if let Some(u) = &self.introspection_url {
            return Ok(u.clone());
        }
        let md = self.metadata().await?;
        let s = md
            .additional_metadata()
            .introspection_endpoint
            .as_deref()
            .ok_or_else(|| {
                IdentityError::Unavailable(
                    "the provider publishes no introspection_endpoint (set identity.introspection_url)"
                        .into(),
                )
            })?;
        endpoint_url(s)
            .map_err(|e| IdentityError::Unavailable(format!("introspection_endpoint: {e}")))
    }

    /// POSTs `token` to the introspection endpoint as esigd's client; the response object.
    async fn introspect(&self, token: &str) -> Result<Map<String, Value>, IdentityError> {
        let auth = self.client_auth.clone().ok_or_else(|| {
            IdentityError::Unavailable(
                "esigd's client credentials (identity.client_secret / identity.client_key) are not loaded for introspection"
                    .into(),
            )
        })?;
        let endpoint = self.introspection_endpoint().await?;
        let mut form: Vec<(&str, String)> = vec![
            ("token", token.to_owned()),
            ("token_type_hint", "access_token".to_owned()),
        ];
        let mut req = self
            .http
            .post(endpoint.as_str())
            .header("accept", "application/json");
        match auth.as_ref() {
            ClientAuth::Secret(secret) => {
                req = req.basic_auth(
                    form_urlencode(&self.cfg.client_id),
                    Some(form_urlencode(secret.expose_secret())),
                );
            }
            ClientAuth::PrivateKeyJwt(key, alg) => {
                let audience = self.assertion_audience(&endpoint).await?;
                let assertion = super::oidc::client_assertion(
                    self.clock.unix_now(),
                    &self.cfg.client_id,
                    &audience,
                    key,
                    *alg,
                )?;
                form.push(("client_id", self.cfg.client_id.clone()));
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
                ));
                form.push(("client_assertion", assertion));
            }
        }
        let resp = req.form(&form).send().await.map_err(|e| {
            IdentityError::Unavailable(format!("introspection at {endpoint}: {}", chain(&e)))
        })?;
        let status = resp.status();
        let body = read_bounded(resp, "introspection").await?;
        if !status.is_success() {
            // 401 invalid_client and the like are esigd's configuration, not the citizen's token.
            return Err(IdentityError::Unavailable(format!(
                "introspection at {endpoint} answered HTTP {status}{}",
                error_code(&body)
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            )));
        }
        json_object(&body, "introspection")
    }

    /// The `aud` of a client assertion: the token endpoint, as in the code flow (RFC 7523 names
    /// it as a value every authorization server accepts); the introspection endpoint without one.
    async fn assertion_audience(&self, endpoint: &url::Url) -> Result<String, IdentityError> {
        Ok(self
            .metadata()
            .await?
            .token_endpoint()
            .map(|u| u.url().to_string())
            .unwrap_or_else(|| endpoint.to_string()))
    }

    /// The checks of an introspection response; the subject and the claims it contributes
    /// (`exp`, `auth_time`, `acr`).
    fn check_introspection(
        &self,
        intro: &Map<String, Value>,
        audiences: &[String],
    ) -> Result<(String, Map<String, Value>), IdentityError> {
        let rejected = |why: &str| IdentityError::Rejected(format!("access token: {why}"));
        if intro.get("active") != Some(&Value::Bool(true)) {
            return Err(rejected(
                "not active at the Identity BB (unknown, revoked or expired)",
            ));
        }
        let now = self.clock.unix_now();
        let skew = self.cfg.clock_skew.as_secs();
        let exp = intro
            .get("exp")
            .and_then(numeric_date)
            .ok_or_else(|| rejected("the introspection gives no exp"))?;
        if exp.saturating_add(skew) < now {
            return Err(rejected("expired (exp is in the past)"));
        }
        if let Some(nbf) = intro.get("nbf").and_then(numeric_date)
            && nbf > now.saturating_add(skew)
        {
            return Err(rejected("not valid yet (nbf)"));
        }
        if let Some(iss) = intro.get("iss")
            && iss.as_str() != Some(self.cfg.issuer.as_str())
        {
            return Err(rejected(&format!("issuer: not {}", self.cfg.issuer)));
        }
        if let Some(t) = intro.get("token_type") {
            let t = t.as_str().unwrap_or_default();
            if t.to_ascii_lowercase().contains("refresh") {
                return Err(rejected("a refresh token is not an access token"));
            }
        }
        let trusted = |a: &str| audiences.iter().any(|t| t == a);
        match intro.get("client_id") {
            Some(Value::String(c)) if trusted(c) => {}
            Some(Value::String(c)) => {
                return Err(rejected(&format!(
                    "issued to client {:?}, not to this e-Service",
                    c.chars().take(64).collect::<String>()
                )));
            }
            Some(_) => return Err(rejected("client_id is not a string")),
            None => {
                let auds: Vec<&str> = match intro.get("aud") {
                    Some(Value::String(a)) => vec![a.as_str()],
                    Some(Value::Array(v)) => v.iter().filter_map(Value::as_str).collect(),
                    _ => Vec::new(),
                };
                if !auds.iter().any(|a| trusted(a)) {
                    return Err(rejected("neither client_id nor aud names this e-Service"));
                }
            }
        }
        let subject = intro
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| rejected("the introspection gives no sub"))?
            .to_owned();
        let mut login = Map::new();
        login.insert("exp".into(), exp.into());
        for name in ["auth_time", "acr"] {
            if let Some(v) = intro.get(name) {
                login.insert(name.into(), v.clone());
            }
        }
        self.check_login(&login).map_err(|e| match e {
            IdentityError::Rejected(m) => rejected(&m),
            other => other,
        })?;
        Ok((subject, login))
    }

    /// Userinfo read with the access token (plain JSON); its `sub` must be `subject`.
    async fn userinfo_claims(
        &self,
        token: &str,
        subject: &str,
    ) -> Result<Map<String, Value>, IdentityError> {
        let md = self.metadata().await?;
        let endpoint = md.userinfo_endpoint().ok_or_else(|| {
            IdentityError::Unavailable("the provider publishes no userinfo_endpoint".into())
        })?;
        let resp = self
            .http
            .get(endpoint.url().as_str())
            .bearer_auth(token)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| IdentityError::Unavailable(format!("userinfo: {}", chain(&e))))?;
        let status = resp.status();
        let is_jwt = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/jwt"));
        let body = read_bounded(resp, "userinfo").await?;
        if status.is_server_error() {
            return Err(IdentityError::Unavailable(format!(
                "userinfo answered HTTP {status}"
            )));
        }
        if !status.is_success() {
            return Err(IdentityError::Rejected(format!(
                "access token: refused by userinfo (HTTP {status}{})",
                error_code(&body)
                    .map(|c| format!(", {c}"))
                    .unwrap_or_default()
            )));
        }
        if is_jwt {
            return Err(IdentityError::Unavailable(
                "userinfo answered a signed JWT; access tokens need plain JSON userinfo (the e-Service's client at the Identity BB must not set userinfo_signed_response_alg)"
                    .into(),
            ));
        }
        let claims = json_object(&body, "userinfo")?;
        if claims.get("sub").and_then(Value::as_str) != Some(subject) {
            return Err(IdentityError::Rejected(
                "access token: userinfo is about another subject than the introspection".into(),
            ));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::config::IdentitySection;
    use crate::identity::tests::{Mode, provider_server_with};
    use std::sync::{Arc, Mutex};

    fn provider() -> IdentityProvider {
        IdentityProvider::new(&IdentitySection::new("https://id.example", "esigd"), None).unwrap()
    }

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    /// A live introspection response for `demo`, changed by `edit` (`null` removes a member).
    fn response(edit: Value) -> Map<String, Value> {
        let now = crate::clock::SystemClock.unix_now();
        let mut m = object(serde_json::json!({
            "active": true, "client_id": "demo", "sub": "user-1", "iss": "https://id.example",
            "exp": now + 600, "iat": now, "token_type": "Bearer", "scope": "openid profile",
            "auth_time": now, "acr": "loa-high",
        }));
        for (k, v) in object(edit) {
            if v.is_null() {
                m.remove(&k);
            } else {
                m.insert(k, v);
            }
        }
        m
    }

    #[test]
    fn introspection_responses_are_checked_member_by_member() {
        let p = provider();
        let demo = vec!["demo".to_string()];
        let (sub, login) = p
            .check_introspection(&response(serde_json::json!({})), &demo)
            .unwrap();
        assert_eq!(sub, "user-1");
        assert_eq!(login["acr"], "loa-high");
        assert!(login.contains_key("exp") && login.contains_key("auth_time"));
        // Without client_id, an aud naming the e-Service will do.
        p.check_introspection(
            &response(serde_json::json!({"client_id": null, "aud": ["rs", "demo"]})),
            &demo,
        )
        .unwrap();
        let now = crate::clock::SystemClock.unix_now();
        for (edit, says) in [
            (serde_json::json!({"active": false}), "not active"),
            (serde_json::json!({"active": "true"}), "not active"),
            (serde_json::json!({"exp": null}), "no exp"),
            (serde_json::json!({"exp": now - 3600}), "expired"),
            (serde_json::json!({"nbf": now + 3600}), "nbf"),
            (serde_json::json!({"iss": "https://evil.example"}), "issuer"),
            (
                serde_json::json!({"token_type": "refresh_token"}),
                "refresh",
            ),
            (
                serde_json::json!({"client_id": "other"}),
                "not to this e-Service",
            ),
            (serde_json::json!({"client_id": 7}), "client_id"),
            (
                serde_json::json!({"client_id": null}),
                "neither client_id nor aud",
            ),
            (
                serde_json::json!({"client_id": null, "aud": "rs"}),
                "neither client_id nor aud",
            ),
            (serde_json::json!({"sub": ""}), "no sub"),
            (serde_json::json!({"auth_time": now - 3600}), "auth_time"),
            (serde_json::json!({"auth_time": null}), "auth_time"),
        ] {
            match p.check_introspection(&response(edit.clone()), &demo) {
                Err(IdentityError::Rejected(m)) => {
                    assert!(
                        m.starts_with("access token: ") && m.contains(says),
                        "{edit}: {m}"
                    )
                }
                other => panic!("{edit}: expected Rejected({says}), got {other:?}"),
            }
        }
    }

    #[test]
    fn token_kinds_follow_the_jws_typ() {
        let jws = |header: Value| {
            format!(
                "{}.e30.c2ln",
                base64::Engine::encode(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                    header.to_string()
                )
            )
        };
        for (h, kind) in [
            (serde_json::json!({"alg": "ES256"}), TokenKind::IdToken),
            (
                serde_json::json!({"alg": "RS256", "typ": "JWT"}),
                TokenKind::IdToken,
            ),
            (
                serde_json::json!({"alg": "ES256", "typ": "at+jwt"}),
                TokenKind::AccessToken,
            ),
            (
                serde_json::json!({"alg": "ES256", "typ": "application/at+jwt"}),
                TokenKind::AccessToken,
            ),
        ] {
            assert_eq!(TokenKind::of(&jws(h.clone())), kind, "{h}");
        }
        assert_eq!(
            TokenKind::of("2YotnFZFEjr1zCsicMWpAA"),
            TokenKind::AccessToken
        );
        assert_eq!(TokenKind::of(""), TokenKind::AccessToken);
    }

    #[test]
    fn bearer_token_syntax() {
        assert!(check_token_syntax("2YotnFZFEjr1zCsicMWpAA").is_ok());
        assert!(check_token_syntax("a.b-c_d~e+f/g==").is_ok());
        for bad in ["", "==", "a b", "a\r\nb", "ä", "a=b"] {
            assert!(
                matches!(check_token_syntax(bad), Err(IdentityError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    /// An introspection endpoint that answers 500 (or is reachable but broken) makes the
    /// provider unavailable, not the token rejected.
    #[tokio::test]
    async fn a_failing_introspection_endpoint_is_unavailable() {
        let (issuer, _) = provider_server_with(
            Arc::new(Mutex::new(Mode::Up)),
            serde_json::json!({"keys": []}),
            serde_json::json!({"userinfo_endpoint": "http://127.0.0.1:9/me"}),
        )
        .await;
        let (failing, _) = provider_server_with(
            Arc::new(Mutex::new(Mode::Failing)),
            serde_json::json!({"keys": []}),
            serde_json::json!({}),
        )
        .await;
        let mut section = IdentitySection::new(issuer.clone(), "esigd");
        // Not published by this provider: the configured URL is used.
        assert!(matches!(
            IdentityProvider::new(&section, None)
                .unwrap()
                .introspection_endpoint()
                .await,
            Err(IdentityError::Unavailable(m)) if m.contains("identity.introspection_url")
        ));
        section.introspection_url = Some(format!("{failing}/token/introspection"));
        let p = IdentityProvider::new(&section, None)
            .unwrap()
            .with_client_auth(Arc::new(ClientAuth::Secret("s".into())));
        match p
            .verify_access_token("opaque-token-1", &["demo".into()])
            .await
        {
            Err(IdentityError::Unavailable(m)) => {
                assert!(m.contains("HTTP 500"), "{m}");
                assert!(!m.contains("opaque-token-1"));
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        // An endpoint that answers 200 with an object that does not say `active: true` (this
        // server answers its discovery document to every path).
        section.introspection_url = Some(format!("{issuer}/token/introspection"));
        let p = IdentityProvider::new(&section, None)
            .unwrap()
            .with_client_auth(Arc::new(ClientAuth::Secret("s".into())));
        assert!(matches!(
            p.verify_access_token("opaque-token-1", &["demo".into()]).await,
            Err(IdentityError::Rejected(m)) if m.contains("not active")
        ));
    }

    /// Bodies over [`MAX_RESPONSE_BYTES`] are not read.
    #[tokio::test]
    async fn oversized_responses_are_refused() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    // Chunked, no length: the limit is enforced while reading.
                    let _ = conn
                        .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")
                        .await;
                    let chunk = vec![b' '; 8192];
                    for _ in 0..16 {
                        let _ = conn
                            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                            .await;
                        let _ = conn.write_all(&chunk).await;
                        let _ = conn.write_all(b"\r\n").await;
                    }
                    let _ = conn.write_all(b"0\r\n\r\n").await;
                });
            }
        });
        let p = provider();
        let resp = p.http().get(&url).send().await.unwrap();
        match read_bounded(resp, "introspection").await {
            Err(IdentityError::Unavailable(m)) => assert!(m.contains("larger than"), "{m}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
}
