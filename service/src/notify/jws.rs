//! The webhook signature: a detached compact JWS (RFC 7515 appendix F) over the body, ES256,
//! made in the HSM with the key `notifications.key`, and the JWKS that publishes its public key.
//!
//! The header `X-Esigd-Signature` carries `<protected>..<signature>`: the JWS of the body with
//! its payload part left out. A receiver puts `BASE64URL(body)` back between the dots and
//! verifies that compact JWS with any JOSE library and the key from
//! `GET /v1/notifications/jwks` whose `kid` the protected header names. The protected header is
//! `{"alg":"ES256","kid":<RFC 7638 thumbprint of the key>,"typ":"esigd-notification+json"}`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use esigd_hsm::{Hsm, HsmError, HsmSigner, KeyKind, KeyRef};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The `typ` of the protected header.
pub const TYP: &str = "esigd-notification+json";

/// The ES256 signer of webhook bodies.
pub struct JwsSigner {
    signer: HsmSigner,
    kid: String,
    jwks: Value,
}

impl std::fmt::Debug for JwsSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwsSigner").field("kid", &self.kid).finish()
    }
}

/// Why the signing key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwsError {
    /// The HSM refused or failed (the message names `notifications.key`).
    #[error("notifications.key: {0}")]
    Hsm(#[from] HsmError),
    /// The key is not an EC P-256 key, or its public key cannot be read.
    #[error("notifications.key: {0}")]
    Key(String),
}

impl JwsSigner {
    /// The signer of the EC P-256 key labelled `label`, created when the token has none yet
    /// (first start). Blocking (PKCS#11).
    pub fn open(hsm: &Hsm, label: &str) -> Result<JwsSigner, JwsError> {
        let key = KeyRef::label(label);
        if !hsm.has_private_key(&key, "notifications.key")? {
            match hsm.generate_key_pair(label, KeyKind::EcP256) {
                Ok(_) => tracing::info!(label, "created the notification signing key in the HSM"),
                Err(HsmError::KeyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let signer = hsm.signer(&key, "notifications.key", None)?;
        if signer.public_key().kind() != KeyKind::EcP256 {
            return Err(JwsError::Key(format!(
                "the key labelled {label:?} is {:?}; webhooks are signed with ES256 (EC P-256)",
                signer.public_key().kind()
            )));
        }
        let (x, y) = ec_coordinates(signer.public_key().spki_der())?;
        // RFC 7638: the thumbprint of the required members in lexicographic order.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = B64URL.encode(Sha256::digest(canonical.as_bytes()));
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "x": x, "y": y,
            "kid": kid, "alg": "ES256", "use": "sig"
        }]});
        Ok(JwsSigner { signer, kid, jwks })
    }

    /// The key id (RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWKS with the public key.
    pub fn jwks(&self) -> &Value {
        &self.jwks
    }

    /// The detached compact JWS of `body`: `<protected>..<signature>`. Blocking (PKCS#11).
    pub fn sign_detached(&self, body: &[u8]) -> Result<String, JwsError> {
        let header = json!({"alg": "ES256", "kid": self.kid, "typ": TYP});
        let protected = B64URL.encode(header.to_string());
        let input = format!("{protected}.{}", B64URL.encode(body));
        let der = self.signer.sign_message(input.as_bytes())?;
        let raw = p256::ecdsa::Signature::from_der(der.as_bytes())
            .map_err(|e| JwsError::Key(format!("the HSM's signature is not ECDSA DER: {e}")))?
            .to_bytes();
        Ok(format!("{protected}..{}", B64URL.encode(raw)))
    }
}

/// The base64url `x` and `y` of an EC P-256 SubjectPublicKeyInfo.
fn ec_coordinates(spki: &[u8]) -> Result<(String, String), JwsError> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::DecodePublicKey;
    let pk = p256::PublicKey::from_public_key_der(spki)
        .map_err(|e| JwsError::Key(format!("public key: {e}")))?;
    let point = pk.to_encoded_point(false);
    match (point.x(), point.y()) {
        (Some(x), Some(y)) => Ok((B64URL.encode(x), B64URL.encode(y))),
        _ => Err(JwsError::Key(
            "public key: not an uncompressed point".into(),
        )),
    }
}
