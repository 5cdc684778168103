//! The browser half of logging in at the Identity BB: OpenID Connect authorization code flow
//! with PKCE (S256), `state` and `nonce`, client authentication `client_secret_basic` or
//! `private_key_jwt` (RFC 7523 client assertion, as MOSIP eSignet requires), ID token validation
//! (JWKS signature, iss, aud, exp, nonce) and the userinfo response (plain JSON or a signed JWT).
//!
//! The protocol work is the `openidconnect` crate's; the client assertion JWT is signed with
//! `jsonwebtoken`.

use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient};
use openidconnect::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use rand::RngCore;
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use std::path::Path;

use crate::config::{IdentitySection, SettingError, data_path};
use crate::identity::{IdentityError, IdentityProvider, chain};

/// What must be remembered between the redirect to the provider and its callback. Single use.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The OAuth `state` we sent.
    pub state: String,
    /// The OIDC `nonce` we sent.
    pub nonce: String,
    /// The PKCE code verifier.
    pub pkce_verifier: String,
}

/// How the client authenticates at the token endpoint (secrets read once at start).
pub enum ClientAuth {
    /// `client_secret_basic`.
    Secret(secrecy::SecretString),
    /// `private_key_jwt`: key and JWS algorithm of the client assertion.
    PrivateKeyJwt(EncodingKey, jsonwebtoken::Algorithm),
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientAuth::Secret(_) => "ClientAuth::Secret",
            ClientAuth::PrivateKeyJwt(..) => "ClientAuth::PrivateKeyJwt",
        })
    }
}

impl ClientAuth {
    /// Reads the secret or key named by `[identity]` (files relative to `data_dir`).
    pub fn from_section(id: &IdentitySection, data_dir: &Path) -> Result<ClientAuth, SettingError> {
        match id.client_auth.as_str() {
            "private_key_jwt" => {
                let path = id
                    .client_key
                    .as_ref()
                    .map(|p| data_path(data_dir, p))
                    .ok_or_else(|| SettingError::new("identity.client_key", "is required"))?;
                let pem = std::fs::read(&path).map_err(|e| {
                    SettingError::new("identity.client_key", format!("{}: {e}", path.display()))
                })?;
                if let Ok(k) = EncodingKey::from_ec_pem(&pem) {
                    return Ok(ClientAuth::PrivateKeyJwt(k, jsonwebtoken::Algorithm::ES256));
                }
                let k = EncodingKey::from_rsa_pem(&pem).map_err(|_| {
                    SettingError::new(
                        "identity.client_key",
                        format!(
                            "{}: not an EC P-256 or RSA private key in PEM",
                            path.display()
                        ),
                    )
                })?;
                Ok(ClientAuth::PrivateKeyJwt(k, jsonwebtoken::Algorithm::RS256))
            }
            _ => {
                let spec = id
                    .client_secret
                    .as_ref()
                    .ok_or_else(|| SettingError::new("identity.client_secret", "is required"))?;
                Ok(ClientAuth::Secret(
                    spec.read(data_dir, "identity.client_secret")?,
                ))
            }
        }
    }
}

fn unavailable(what: &str, e: &dyn std::error::Error) -> IdentityError {
    IdentityError::Unavailable(format!("{what}: {}", chain(e)))
}

/// Builds the typed `openidconnect` client from the discovered metadata (a macro because the
/// client's type, with its endpoint type-states, cannot be named briefly).
macro_rules! make_client {
    ($provider:expr, $auth:expr, $redirect:expr) => {{
        let metadata = $provider.metadata().await?;
        let id = ClientId::new($provider.config().client_id.clone());
        let secret = match $auth {
            ClientAuth::Secret(s) => Some(ClientSecret::new(s.expose_secret().to_owned())),
            ClientAuth::PrivateKeyJwt(..) => None,
        };
        let redirect = RedirectUrl::new($redirect.to_owned())
            .map_err(|e| IdentityError::Unavailable(format!("identity.redirect_url: {e}")))?;
        let c = CoreClient::from_provider_metadata(metadata, id, secret).set_redirect_uri(redirect);
        match $auth {
            ClientAuth::Secret(_) => c.set_auth_type(AuthType::BasicAuth),
            ClientAuth::PrivateKeyJwt(..) => c.set_auth_type(AuthType::RequestBody),
        }
    }};
}

/// The URL to send the browser to, and what to remember for the callback.
pub async fn authorization_url(
    provider: &IdentityProvider,
    auth: &ClientAuth,
    redirect: &str,
) -> Result<(url::Url, Pending), IdentityError> {
    let c = make_client!(provider, auth, redirect);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = c.authorize_url(
        CoreAuthenticationFlow::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    let cfg = provider.config();
    for s in cfg.scopes.iter().filter(|s| *s != "openid") {
        req = req.add_scope(Scope::new(s.clone()));
    }
    if !cfg.acr_values.is_empty() {
        req = req.add_extra_param("acr_values", cfg.acr_values.join(" "));
    }
    if let Some(max_age) = cfg.max_age {
        req = req.add_extra_param("max_age", max_age.as_secs().to_string());
    }
    let (url, state, nonce) = req.set_pkce_challenge(challenge).url();
    Ok((
        url,
        Pending {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        },
    ))
}

/// RFC 7523 client assertion for `private_key_jwt` (`iss` = `sub` = our client ID, `aud`, one
/// minute of validity, a random `jti`); the token endpoint and introspection use it.
pub(crate) fn client_assertion(
    now: u64,
    client_id: &str,
    audience: &str,
    key: &EncodingKey,
    alg: jsonwebtoken::Algorithm,
) -> Result<String, IdentityError> {
    let mut jti = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut jti);
    let claims = serde_json::json!({
        "iss": client_id, "sub": client_id, "aud": audience,
        "iat": now, "exp": now + 60, "jti": hex::encode(jti),
    });
    jsonwebtoken::encode(&Header::new(alg), &claims, key)
        .map_err(|e| IdentityError::Unavailable(format!("signing the client assertion: {e}")))
}

/// Exchanges the code, validates the ID token (with `pending.nonce`), reads userinfo, and
/// returns all claims (userinfo over ID token for the same name).
pub async fn complete(
    provider: &IdentityProvider,
    auth: &ClientAuth,
    redirect: &str,
    pending: &Pending,
    code: &str,
) -> Result<Map<String, Value>, IdentityError> {
    let c = make_client!(provider, auth, redirect);
    let mut req = c
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .map_err(|e| unavailable("token endpoint", &e))?
        .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()));
    if let ClientAuth::PrivateKeyJwt(key, alg) = auth {
        let token_url = provider
            .metadata()
            .await?
            .token_endpoint()
            .map(|u| u.url().to_string())
            .ok_or_else(|| {
                IdentityError::Unavailable("the provider has no token endpoint".into())
            })?;
        let assertion = client_assertion(
            provider.clock().unix_now(),
            &provider.config().client_id,
            &token_url,
            key,
            *alg,
        )?;
        req = req
            .add_extra_param(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .add_extra_param("client_assertion", assertion);
    }
    let tokens = req.request_async(provider.http()).await.map_err(|e| {
        // A refused code (replayed, expired) is the user's problem, not an outage.
        IdentityError::Rejected(format!("code exchange: {}", chain(&e)))
    })?;
    let id_token = tokens
        .id_token()
        .ok_or_else(|| IdentityError::Rejected("the token response has no ID token".into()))?
        .to_string();
    let verified = provider
        .verify_id_token(
            &id_token,
            std::slice::from_ref(&provider.config().client_id),
            Some(&pending.nonce),
        )
        .await?;
    let mut claims = verified.claims;
    match userinfo(provider, tokens.access_token().secret(), &verified.subject).await {
        Ok(extra) => claims.extend(extra),
        Err(e) => tracing::warn!(error = %e, "userinfo not read; using the ID token's claims"),
    }
    Ok(claims)
}

/// Reads the userinfo endpoint: plain JSON, or a JWT signed with the provider's keys (checked
/// here with `jsonwebtoken`, because `openidconnect` 4.0 accepts only RS256 for signed userinfo).
/// `sub` must be the ID token's subject (OIDC Core 5.3.2).
async fn userinfo(
    provider: &IdentityProvider,
    access_token: &str,
    subject: &str,
) -> Result<Map<String, Value>, IdentityError> {
    let md = provider.metadata().await?;
    let Some(endpoint) = md.userinfo_endpoint() else {
        return Ok(Map::new());
    };
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        provider
            .http()
            .get(endpoint.url().as_str())
            .bearer_auth(access_token)
            .header("accept", "application/json, application/jwt")
            .send(),
    )
    .await
    .map_err(|_| IdentityError::Unavailable("userinfo timed out".into()))?
    .map_err(|e| unavailable("userinfo", &e))?;
    if !resp.status().is_success() {
        return Err(IdentityError::Rejected(format!(
            "userinfo answered HTTP {}",
            resp.status()
        )));
    }
    let is_jwt = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/jwt"));
    let body = resp
        .bytes()
        .await
        .map_err(|e| unavailable("userinfo body", &e))?;
    let claims: Map<String, Value> = if is_jwt {
        verify_userinfo_jwt(provider, &body).await?
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| IdentityError::Malformed(format!("userinfo JSON: {e}")))?
    };
    if claims.get("sub").and_then(Value::as_str) != Some(subject) {
        return Err(IdentityError::Rejected(
            "userinfo is about another subject than the ID token".into(),
        ));
    }
    Ok(claims)
}

/// A signed (JWT) userinfo response, checked with `jsonwebtoken` against the provider's keys:
/// the algorithm in `identity.allowed_algs` (and among the provider's
/// `userinfo_signing_alg_values_supported` when it lists them), a key meant for it
/// ([`crate::identity::verification_keys`]: `kid`, `use` = `sig`, `alg`), `iss` = the issuer and
/// `aud` containing our client ID (both required: OIDC Core 5.3.2 says a signed response should
/// carry them, and without them a userinfo JWT the provider signed for another client, or another
/// JWT it signed, would pass), `exp` and `nbf` when present (with `identity.clock_skew`).
async fn verify_userinfo_jwt(
    provider: &IdentityProvider,
    body: &[u8],
) -> Result<Map<String, Value>, IdentityError> {
    let token = std::str::from_utf8(body)
        .map_err(|_| IdentityError::Malformed("userinfo JWT is not text".into()))?
        .trim();
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| IdentityError::Malformed(format!("userinfo JWT: {e}")))?;
    let alg_name = serde_json::to_value(header.alg)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    if !provider.allowed_algs().contains(&alg_name) {
        return Err(IdentityError::Rejected(format!(
            "userinfo JWT algorithm {alg_name} is not in identity.allowed_algs"
        )));
    }
    if let Some(algs) = provider
        .metadata()
        .await?
        .userinfo_signing_alg_values_supported()
        && !algs.iter().any(|a| {
            serde_json::to_value(a)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .as_deref()
                == Some(alg_name.as_str())
        })
    {
        return Err(IdentityError::Rejected(format!(
            "userinfo JWT algorithm {alg_name} is not among the provider's userinfo_signing_alg_values_supported"
        )));
    }
    let cfg = provider.config();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[cfg.client_id.as_str()]);
    validation.set_issuer(&[cfg.issuer.as_str()]);
    validation.set_required_spec_claims(&["sub", "iss", "aud"]);
    validation.validate_nbf = true;
    validation.leeway = cfg.clock_skew.as_secs();
    let keys = provider.verification_keys(&header).await?;
    let mut last = IdentityError::Rejected(
        "userinfo JWT: no key of the provider's JWKS matches (kid, use, alg)".into(),
    );
    for key in &keys {
        match jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation) {
            Ok(d) => return Ok(d.claims),
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind as K;
                let why = match e.kind() {
                    K::InvalidSignature => "signature: invalid".to_owned(),
                    K::MissingRequiredClaim(c) => format!("claim {c} missing"),
                    K::InvalidIssuer => format!("iss: not {}", cfg.issuer),
                    K::InvalidAudience => "aud: does not contain identity.client_id".to_owned(),
                    K::ExpiredSignature => "exp: expired".to_owned(),
                    K::ImmatureSignature => "nbf: not valid yet".to_owned(),
                    _ => e.to_string(),
                };
                last = IdentityError::Rejected(format!("userinfo JWT: {why}"));
                // Only a bad signature may mean "another key of the set".
                if !matches!(e.kind(), K::InvalidSignature | K::InvalidAlgorithm) {
                    return Err(last);
                }
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::identity::tests::{Mode, provider_server_with};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use jsonwebtoken::{Algorithm, Header};
    use p256::pkcs8::EncodePrivateKey;
    use std::sync::Arc;

    /// A P-256 signing key and its public JWK with `kid` and the JWK members in `extra`.
    fn key(kid: &str, extra: serde_json::Value) -> (EncodingKey, Value) {
        let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let pem = secret.to_pkcs8_pem(p256::pkcs8::LineEnding::LF).unwrap();
        let point = secret.public_key().to_sec1_bytes();
        let mut jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": kid,
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
        });
        if let (Some(j), Value::Object(e)) = (jwk.as_object_mut(), extra) {
            j.extend(e);
        }
        (EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(), jwk)
    }

    /// A signed userinfo response (or anything signed with the provider's keys) is only taken with
    /// `iss` = the issuer, `aud` containing our client ID, a live `exp` when it has one, from a
    /// key published for signatures with that algorithm.
    #[tokio::test]
    async fn signed_userinfo_needs_iss_aud_a_live_exp_and_a_signing_key() {
        let (sig, sig_jwk) = key("sig", serde_json::json!({"use": "sig", "alg": "ES256"}));
        let (bare, bare_jwk) = key("bare", serde_json::json!({}));
        let (enc, enc_jwk) = key("enc", serde_json::json!({"use": "enc"}));
        let (other_alg, other_alg_jwk) = key("es384", serde_json::json!({"alg": "ES384"}));
        let (issuer, _) = provider_server_with(
            Arc::new(std::sync::Mutex::new(Mode::Up)),
            serde_json::json!({"keys": [sig_jwk, bare_jwk, enc_jwk, other_alg_jwk]}),
            serde_json::json!({"userinfo_endpoint": "http://127.0.0.1:9/me",
                               "userinfo_signing_alg_values_supported": ["ES256"]}),
        )
        .await;
        let provider =
            IdentityProvider::new(&IdentitySection::new(issuer.clone(), "esigd"), None).unwrap();
        let now = crate::clock::SystemClock.unix_now();
        let sign = |k: &EncodingKey, kid: &str, claims: Value| {
            let mut h = Header::new(Algorithm::ES256);
            h.kid = Some(kid.into());
            jsonwebtoken::encode(&h, &claims, k).unwrap()
        };
        let verify = |jwt: String| {
            let p = &provider;
            async move { verify_userinfo_jwt(p, jwt.as_bytes()).await }
        };
        let good = serde_json::json!({"sub": "s1", "iss": issuer, "aud": "esigd", "exp": now + 60, "name": "Mari"});
        let claims = verify(sign(&sig, "sig", good.clone())).await.unwrap();
        assert_eq!(claims["name"], "Mari");
        // A key without use/alg is fine; aud as an array with our client ID; exp only when present.
        let mut no_exp = good.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        no_exp["aud"] = serde_json::json!(["esigd", "other"]);
        verify(sign(&bare, "bare", no_exp)).await.unwrap();

        let with = |k: &str, v: Value| {
            let mut c = good.clone();
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v;
            }
            c
        };
        for (claims, says) in [
            (with("iss", Value::Null), "claim iss missing"),
            (with("iss", "https://evil.test".into()), "iss: not"),
            (with("aud", Value::Null), "claim aud missing"),
            (
                with("aud", "another-client".into()),
                "aud: does not contain",
            ),
            (with("exp", (now - 3600).into()), "exp: expired"),
        ] {
            match verify(sign(&sig, "sig", claims.clone())).await {
                Err(IdentityError::Rejected(m)) => assert!(m.contains(says), "{claims}: {m}"),
                other => panic!("{claims}: expected Rejected({says}), got {other:?}"),
            }
        }
        // Keys published for encryption or for another algorithm: not used.
        for (k, kid) in [(&enc, "enc"), (&other_alg, "es384")] {
            match verify(sign(k, kid, good.clone())).await {
                Err(IdentityError::Rejected(m)) => assert!(m.contains("no key"), "{kid}: {m}"),
                other => panic!("{kid}: expected Rejected, got {other:?}"),
            }
        }
    }
}
