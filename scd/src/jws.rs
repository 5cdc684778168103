//! Signed device calls and result proofs: compact JWS (ES256) by the device-authentication key,
//! made and checked with `jsonwebtoken`.
//!
//! * A call token (`typ: device-call+jwt`, claims [`DeviceCallClaims`]) goes in
//!   `Authorization: DeviceJWS <token>` on every device call after registration.
//! * A proof (`typ: device-proof+jwt`, claims [`ProofClaims`]) goes with a transaction result and
//!   is forwarded to the relying party, which can check it against the device key it was told about.
//!
//! Only ES256 is accepted; `none`, HMAC and other algorithms are refused before any key is used,
//! and the `typ` must be the expected one, so a proof cannot pass as a call token or vice versa.

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::EncodePrivateKey;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ScdError;
use crate::device::{CALL_TYP, DeviceCallClaims, EcJwk, PROOF_TYP, ProofClaims};

/// The public JWK of a device-authentication key.
pub fn jwk_of(key: &VerifyingKey) -> EcJwk {
    let point = key.to_encoded_point(false);
    // An uncompressed point always has both coordinates.
    let (x, y) = (
        point
            .x()
            .map(|x| URL_SAFE_NO_PAD.encode(x))
            .unwrap_or_default(),
        point
            .y()
            .map(|y| URL_SAFE_NO_PAD.encode(y))
            .unwrap_or_default(),
    );
    EcJwk {
        kty: "EC".into(),
        crv: "P-256".into(),
        x,
        y,
    }
}

fn sign<T: Serialize>(key: &SigningKey, typ: &str, claims: &T) -> Result<String, ScdError> {
    let der = key
        .to_pkcs8_der()
        .map_err(|e| ScdError::invalid("deviceAuthKey", e.to_string()))?;
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some(typ.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(der.as_bytes()))
        .map_err(|e| ScdError::invalid("jws", e.to_string()))
}

fn verify<T: DeserializeOwned>(
    field: &'static str,
    token: &str,
    typ: &str,
    jwk: &EcJwk,
) -> Result<T, ScdError> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| ScdError::invalid(field, format!("not a compact JWS: {e}")))?;
    if header.alg != Algorithm::ES256 {
        return Err(ScdError::invalid(field, "alg must be ES256"));
    }
    if header.typ.as_deref() != Some(typ) {
        return Err(ScdError::invalid(field, format!("typ must be {typ}")));
    }
    if jwk.kty != "EC" || jwk.crv != "P-256" {
        return Err(ScdError::invalid(
            "deviceAuthKey",
            "must be an EC P-256 key",
        ));
    }
    let key = DecodingKey::from_ec_components(&jwk.x, &jwk.y)
        .map_err(|e| ScdError::invalid("deviceAuthKey", e.to_string()))?;
    let mut v = Validation::new(Algorithm::ES256);
    // These tokens carry iat only; freshness is checked by the caller against its own clock.
    v.required_spec_claims = HashSet::new();
    v.validate_exp = false;
    v.validate_aud = false;
    jsonwebtoken::decode::<T>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| ScdError::invalid(field, format!("signature or claims refused: {e}")))
}

/// Signs a call token.
pub fn sign_call(key: &SigningKey, claims: &DeviceCallClaims) -> Result<String, ScdError> {
    sign(key, CALL_TYP, claims)
}

/// Verifies a call token's signature and `typ` with the device's registered key and returns its
/// claims (then check them with [`DeviceCallClaims::check`] and the `jti` store).
pub fn verify_call(token: &str, jwk: &EcJwk) -> Result<DeviceCallClaims, ScdError> {
    verify("Authorization", token, CALL_TYP, jwk)
}

/// The `deviceId` a call token claims, read without checking the signature: only to find the
/// key that [`verify_call`] then checks it with.
pub fn claimed_device(token: &str) -> Result<String, ScdError> {
    let field = "Authorization";
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| ScdError::invalid(field, "not a compact JWS"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| ScdError::invalid(field, "payload is not base64url"))?;
    let claims: DeviceCallClaims = serde_json::from_slice(&bytes)
        .map_err(|e| ScdError::invalid(field, format!("payload: {e}")))?;
    Ok(claims.device_id)
}

/// Signs a result proof.
pub fn sign_proof(key: &SigningKey, claims: &ProofClaims) -> Result<String, ScdError> {
    sign(key, PROOF_TYP, claims)
}

/// Verifies a result proof and returns its claims.
pub fn verify_proof(token: &str, jwk: &EcJwk) -> Result<ProofClaims, ScdError> {
    verify("proof", token, PROOF_TYP, jwk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Outcome, TransactionType};
    use rand_core::OsRng;

    fn call() -> DeviceCallClaims {
        DeviceCallClaims {
            htm: "GET".into(),
            htu: "https://rscd.example/device/v1/transactions/t".into(),
            iat: 1_800_000_000,
            jti: "abcdefghijklmnop".into(),
            device_id: "d".into(),
        }
    }

    #[test]
    fn call_tokens_verify_with_the_registered_key_only() {
        let key = SigningKey::random(&mut OsRng);
        let jwk = jwk_of(key.verifying_key());
        let token = sign_call(&key, &call()).unwrap();
        assert_eq!(verify_call(&token, &jwk).unwrap(), call());
        assert_eq!(claimed_device(&token).unwrap(), "d");
        assert!(claimed_device("a.b").is_err());
        let other = jwk_of(SigningKey::random(&mut OsRng).verifying_key());
        assert!(verify_call(&token, &other).is_err());
        // A proof is not a call token.
        let proof = sign_proof(
            &key,
            &ProofClaims {
                transaction_id: "t".into(),
                kind: TransactionType::Sign,
                bound_sha256: "x".into(),
                vc: "1234".into(),
                interactions_sha256: "y".into(),
                outcome: Outcome::Ok,
                iat: 1,
            },
        )
        .unwrap();
        assert!(
            verify_call(&proof, &jwk)
                .unwrap_err()
                .to_string()
                .contains("typ")
        );
        assert_eq!(verify_proof(&proof, &jwk).unwrap().vc, "1234");
    }

    #[test]
    fn alg_none_and_hmac_are_refused() {
        let key = SigningKey::random(&mut OsRng);
        let jwk = jwk_of(key.verifying_key());
        let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&call()).unwrap());
        let none = format!(
            "{}.{claims}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"device-call+jwt"}"#)
        );
        assert!(verify_call(&none, &jwk).is_err());
        let mut h = Header::new(Algorithm::HS256);
        h.typ = Some(CALL_TYP.into());
        let hs =
            jsonwebtoken::encode(&h, &call(), &EncodingKey::from_secret(jwk.x.as_bytes())).unwrap();
        assert!(
            verify_call(&hs, &jwk)
                .unwrap_err()
                .to_string()
                .contains("ES256")
        );
        // A changed claim breaks the signature.
        let token = sign_call(&key, &call()).unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        let mut changed = call();
        changed.htm = "POST".into();
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&changed).unwrap());
        parts[1] = &body;
        assert!(verify_call(&parts.join("."), &jwk).is_err());
    }
}
