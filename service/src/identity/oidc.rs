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

/// RFC 7523 client assertion for `private_key_jwt`.
fn client_assertion(
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
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(provider.jwks_json().await?)
        .map_err(|e| IdentityError::Malformed(format!("provider JWKS: {e}")))?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[provider.config().client_id.as_str()]);
    validation.set_issuer(&[provider.config().issuer.as_str()]);
    validation.set_required_spec_claims(&["sub"]);
    validation.leeway = provider.config().clock_skew.as_secs();
    let mut last = IdentityError::Rejected("userinfo JWT: no key of the provider matches".into());
    for jwk in set
        .keys
        .iter()
        .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
    {
        let Ok(key) = jsonwebtoken::DecodingKey::from_jwk(jwk) else {
            continue;
        };
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation) {
            Ok(d) => return Ok(d.claims),
            Err(e) => last = IdentityError::Rejected(format!("userinfo JWT: {e}")),
        }
    }
    Err(last)
}
