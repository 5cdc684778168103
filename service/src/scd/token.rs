//! Pseudonym tokens (GovStack `GET /v1/token/pseodonym/{pseudonym}`, then the header
//! `X-Pseodonym-Token` of `POST /v1/sign/pseudonym`): a short-lived JWT bound to one pseudonym
//! and one e-Service, used once.
//!
//! The JWT is HS256 with an HMAC-SHA-256 key that never leaves the HSM (`scd.token_key`). Only
//! esigd makes and reads these tokens, so a MAC is the right primitive: no public key to publish,
//! and the JOSE libraries cannot sign with a key they cannot read, hence the few lines of compact
//! serialization here (header and claims are fixed JSON; the MAC is compared in constant time).
//! Spent token IDs are kept in memory until the token expires (at most [`TOKEN_TTL`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use esigd_hsm::{Hsm, HsmError, KeyRef, SecretKind};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::clock::SharedClock;

/// Lifetime of a token.
pub const TOKEN_TTL: Duration = Duration::from_secs(120);
/// Longest token accepted.
const MAX_TOKEN: usize = 1024;
/// Most spent token IDs remembered (each expires within [`TOKEN_TTL`]); more tokens than this
/// in two minutes are refused until some expire.
const MAX_SPENT: usize = 100_000;
/// The only header these tokens have.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Why a token is refused (all 401 on the API; the messages never contain the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token this appliance made, or altered.
    #[error("X-Pseodonym-Token: not a valid pseudonym token")]
    Invalid,
    /// Past its lifetime.
    #[error("X-Pseodonym-Token: expired (tokens live {} s)", TOKEN_TTL.as_secs())]
    Expired,
    /// Issued to another e-Service.
    #[error("X-Pseodonym-Token: issued to another e-Service")]
    Foreign,
    /// Used before.
    #[error("X-Pseodonym-Token: already used (a token makes one signature request)")]
    Reused,
    /// Too many live tokens to remember.
    #[error("too many pseudonym tokens in use; retry shortly")]
    Full,
    /// The HSM failed.
    #[error("the HSM cannot check pseudonym tokens now")]
    Hsm,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    iat: u64,
    exp: u64,
    jti: String,
}

/// Issues and redeems pseudonym tokens. Every method blocks on PKCS#11.
pub struct PseudonymTokens {
    hsm: Hsm,
    key: KeyRef,
    clock: SharedClock,
    spent: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for PseudonymTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PseudonymTokens").finish_non_exhaustive()
    }
}

impl PseudonymTokens {
    /// Uses the HMAC key labelled `label`, creating it on first start. Blocking.
    pub fn open(hsm: Hsm, label: &str, clock: SharedClock) -> Result<Self, HsmError> {
        match hsm.generate_secret_key(label, SecretKind::HmacSha256) {
            Ok(()) => tracing::info!(label, "created the pseudonym-token key in the HSM"),
            Err(HsmError::KeyExists { .. }) => {}
            Err(e) => return Err(e),
        }
        Ok(PseudonymTokens {
            hsm,
            key: KeyRef::label(label),
            clock,
            spent: Mutex::new(HashMap::new()),
        })
    }

    fn mac(&self, input: &[u8]) -> Result<Vec<u8>, TokenError> {
        self.hsm
            .blind_index(&self.key, "scd.token_key", input)
            .map_err(|e| {
                tracing::error!(error = %e, "pseudonym token MAC failed");
                TokenError::Hsm
            })
    }

    /// A token for `pseudonym` (canonical form), usable once by `eservice` within
    /// [`TOKEN_TTL`].
    pub fn issue(&self, pseudonym: &str, eservice: &str) -> Result<String, TokenError> {
        let now = self.clock.unix_now();
        let mut jti = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut jti);
        let claims = Claims {
            iss: "esigd".into(),
            sub: pseudonym.into(),
            aud: eservice.into(),
            iat: now,
            exp: now + TOKEN_TTL.as_secs(),
            jti: hex::encode(jti),
        };
        let body = serde_json::to_vec(&claims).map_err(|_| TokenError::Invalid)?;
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(HEADER),
            URL_SAFE_NO_PAD.encode(body)
        );
        let mac = self.mac(input.as_bytes())?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac)))
    }

    /// Checks `token` for `eservice` and spends it; the pseudonym it names.
    pub fn redeem(&self, token: &str, eservice: &str) -> Result<String, TokenError> {
        let token = token.trim();
        if token.len() > MAX_TOKEN {
            return Err(TokenError::Invalid);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(b), Some(m), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Invalid);
        };
        if h != URL_SAFE_NO_PAD.encode(HEADER) {
            return Err(TokenError::Invalid);
        }
        let given = URL_SAFE_NO_PAD.decode(m).map_err(|_| TokenError::Invalid)?;
        let mac = self.mac(format!("{h}.{b}").as_bytes())?;
        use subtle::ConstantTimeEq;
        if !bool::from(mac.ct_eq(&given)) {
            return Err(TokenError::Invalid);
        }
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(b)
            .ok()
            .and_then(|j| serde_json::from_slice(&j).ok())
            .ok_or(TokenError::Invalid)?;
        let now = self.clock.unix_now();
        if claims.iss != "esigd" || claims.exp.saturating_sub(claims.iat) > TOKEN_TTL.as_secs() {
            return Err(TokenError::Invalid);
        }
        if now >= claims.exp {
            return Err(TokenError::Expired);
        }
        if claims.aud != eservice {
            return Err(TokenError::Foreign);
        }
        let mut spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        spent.retain(|_, exp| *exp > now);
        if spent.contains_key(&claims.jti) {
            return Err(TokenError::Reused);
        }
        if spent.len() >= MAX_SPENT {
            return Err(TokenError::Full);
        }
        spent.insert(claims.jti, claims.exp);
        Ok(claims.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Debug)]
    struct Clock(AtomicU64);
    impl crate::clock::Clock for Clock {
        fn now(&self) -> std::time::SystemTime {
            std::time::UNIX_EPOCH + Duration::from_secs(self.0.load(Ordering::SeqCst))
        }
    }

    #[test]
    fn tokens_are_bound_short_lived_and_single_use() {
        let token = esigd_hsm::testing::TestToken::create();
        let hsm = Hsm::open(token.config()).unwrap();
        let clock = Arc::new(Clock(AtomicU64::new(1_800_000_000)));
        let tokens = PseudonymTokens::open(hsm.clone(), "pseudonym-token", clock.clone()).unwrap();
        // The key is made once and found again.
        let again = PseudonymTokens::open(hsm, "pseudonym-token", clock.clone()).unwrap();

        let t = tokens.issue("k7m2-9xqa-h3dz", "svc-a").unwrap();
        assert_eq!(again.redeem(&t, "svc-b"), Err(TokenError::Foreign));
        assert_eq!(again.redeem(&t, "svc-a").unwrap(), "k7m2-9xqa-h3dz");
        assert_eq!(again.redeem(&t, "svc-a"), Err(TokenError::Reused));

        // 120 s of life, to the second.
        let t = tokens.issue("k7m2-9xqa-h3dz", "svc-a").unwrap();
        clock.0.fetch_add(TOKEN_TTL.as_secs(), Ordering::SeqCst);
        assert_eq!(tokens.redeem(&t, "svc-a"), Err(TokenError::Expired));
        clock.0.fetch_sub(1, Ordering::SeqCst);
        assert!(tokens.redeem(&t, "svc-a").is_ok());

        // Another pseudonym's claims under this MAC, another header, garbage: not tokens.
        let t = tokens.issue("aaaa-bbbb-cccc", "svc-a").unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        let other = tokens.issue("zzzz-zzzz-zzzz", "svc-a").unwrap();
        let swapped = format!(
            "{}.{}.{}",
            parts[0],
            other.split('.').nth(1).unwrap(),
            parts[2]
        );
        assert_eq!(tokens.redeem(&swapped, "svc-a"), Err(TokenError::Invalid));
        let none_alg = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        );
        assert_eq!(tokens.redeem(&none_alg, "svc-a"), Err(TokenError::Invalid));
        assert_eq!(tokens.redeem("x.y", "svc-a"), Err(TokenError::Invalid));
        assert_eq!(
            tokens.redeem(&"a".repeat(5000), "svc-a"),
            Err(TokenError::Invalid)
        );
    }
}
