//! Device API v1: what a device app and the Remote SCD service say to each other.
//!
//! | method and path | request | response |
//! |---|---|---|
//! | `POST /device/v1/devices` | [`DeviceRegistration`] | [`DeviceRegistered`] |
//! | `GET /device/v1/devices/{deviceId}/transactions?waitMs=` | — | [`TransactionList`] or 204 |
//! | `GET /device/v1/transactions/{transactionId}` | — | [`Transaction`] |
//! | `POST /device/v1/transactions/{transactionId}/ack` | — | 204 |
//! | `POST /device/v1/transactions/{transactionId}/result` | [`TransactionResult`] | 204 / 409 / 410 |
//! | `GET /device/v1/keys/{keyHandle}/certificate` | — | [`crate::api::CertValue`] |
//!
//! Every call after registration carries `Authorization: DeviceJWS <compact JWS>`, signed (ES256)
//! by the device-authentication key registered with the device (never the signing key), over
//! [`DeviceCallClaims`]: the method and URL of this call, a fresh `jti` and `iat`. The service
//! refuses a `jti` it has seen and an `iat` more than [`IAT_SKEW`] away from its clock, so a
//! captured call cannot be replayed. A result also carries [`ProofClaims`] signed the same way, which
//! the service forwards to the appliance as `deviceProof`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ScdError;
use crate::api::{AlgorithmParameters, KeySpec, SignatureAlgorithm};
use crate::vc::Vc;

/// Path prefix of the device API.
pub const BASE_PATH: &str = "/device/v1";
/// The `Authorization` scheme of device calls.
pub const AUTH_SCHEME: &str = "DeviceJWS";
/// The JWS `typ` of a device call token.
pub const CALL_TYP: &str = "device-call+jwt";
/// The JWS `typ` of a result proof.
pub const PROOF_TYP: &str = "device-proof+jwt";
/// Largest accepted difference between a call's `iat` and the service's clock.
pub const IAT_SKEW: Duration = Duration::from_secs(60);
/// Longest `waitMs` of the transaction long poll.
pub const WAIT_MAX: Duration = Duration::from_secs(30);

/// An EC P-256 public key as a JWK (RFC 7517), the device-authentication key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EcJwk {
    /// `EC`.
    pub kty: String,
    /// `P-256`.
    pub crv: String,
    /// base64url x coordinate.
    pub x: String,
    /// base64url y coordinate.
    pub y: String,
}

/// What a device app can do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Interaction types it can show (`displayTextAndPIN`, …).
    pub interactions: Vec<String>,
    /// Keys it can create.
    #[serde(rename = "keySpecs")]
    pub key_specs: Vec<KeySpec>,
    /// Signature algorithms it can use.
    #[serde(rename = "signatureAlgorithms")]
    pub signature_algorithms: Vec<SignatureAlgorithm>,
}

/// `POST /device/v1/devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRegistration {
    /// The device-authentication public key.
    #[serde(rename = "deviceAuthKey")]
    pub device_auth_key: EcJwk,
    /// The app's version string.
    #[serde(rename = "agentVersion")]
    pub agent_version: String,
    /// What it supports.
    pub capabilities: Capabilities,
}

impl DeviceRegistration {
    /// Checks the key type and that the capabilities are not empty.
    pub fn validate(&self) -> Result<(), ScdError> {
        let k = &self.device_auth_key;
        if k.kty != "EC" || k.crv != "P-256" {
            return Err(ScdError::invalid(
                "deviceAuthKey",
                "must be an EC P-256 JWK (kty EC, crv P-256)",
            ));
        }
        if self.capabilities.interactions.is_empty() {
            return Err(ScdError::Missing {
                field: "capabilities.interactions",
            });
        }
        if self.agent_version.is_empty() || self.agent_version.len() > 64 {
            return Err(ScdError::invalid("agentVersion", "from 1 to 64 characters"));
        }
        Ok(())
    }
}

/// `201` answer to a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRegistered {
    /// The device's ID: the `SCDRemoteId` the citizen enters on the onboarding page.
    #[serde(rename = "deviceId")]
    pub device_id: String,
}

/// Kind of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransactionType {
    /// Sign a digest.
    Sign,
    /// Create a key and return a CSR.
    Onboard,
}

/// A pointer to a pending transaction (notifications carry only pointers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionRef {
    /// Equal to the session's `sessionID`.
    #[serde(rename = "transactionId")]
    pub transaction_id: String,
    /// Its kind.
    #[serde(rename = "type")]
    pub kind: TransactionType,
}

/// `200` answer of the long poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionList {
    /// Pending transactions, oldest first.
    pub transactions: Vec<TransactionRef>,
}

/// `sign` part of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignDetails {
    /// Which key.
    #[serde(rename = "keyHandle")]
    pub key_handle: String,
    /// Standard base64 of the digest.
    pub digest: String,
    /// How to sign.
    #[serde(rename = "signatureAlgorithm")]
    pub signature_algorithm: SignatureAlgorithm,
    /// Its parameters.
    #[serde(rename = "signatureAlgorithmParameters")]
    pub signature_algorithm_parameters: AlgorithmParameters,
}

/// `onboard` part of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnboardDetails {
    /// Which key slot.
    #[serde(rename = "scdKeyId")]
    pub scd_key_id: u32,
    /// The key to create.
    #[serde(rename = "keySpec")]
    pub key_spec: KeySpec,
    /// Standard base64 of the challenge, to put in the CSR's `challengePassword`.
    pub challenge: String,
    /// Who the key is for, to show.
    #[serde(
        rename = "subjectHint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub subject_hint: Option<String>,
}

/// `GET /device/v1/transactions/{transactionId}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// Equal to the session's `sessionID`.
    #[serde(rename = "transactionId")]
    pub transaction_id: String,
    /// Its kind.
    #[serde(rename = "type")]
    pub kind: TransactionType,
    /// The relying party name to show.
    #[serde(rename = "rpName")]
    pub rp_name: String,
    /// The interactions, byte for byte as the relying party sent them.
    pub interactions: String,
    /// The verification code (the device recomputes it before showing it).
    pub vc: Vc,
    /// RFC 3339 end of the user window.
    #[serde(rename = "expiresAt")]
    pub expires_at: String,
    /// For `SIGN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign: Option<SignDetails>,
    /// For `ONBOARD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onboard: Option<OnboardDetails>,
}

/// What the user or the device decided (the end results a device may report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    /// Confirmed and signed (or key created).
    Ok,
    /// Refused outside the interaction screen.
    UserRefused,
    /// Refused on the interaction screen.
    UserRefusedInteraction,
    /// Picked the wrong code.
    WrongVc,
    /// The key cannot be used (e.g. PIN locked).
    DocumentUnusable,
    /// None of the interactions is supported.
    RequiredInteractionNotSupportedByApp,
}

impl From<Outcome> for crate::api::EndResult {
    fn from(o: Outcome) -> Self {
        use crate::api::EndResult as E;
        match o {
            Outcome::Ok => E::Ok,
            Outcome::UserRefused => E::UserRefused,
            Outcome::UserRefusedInteraction => E::UserRefusedInteraction,
            Outcome::WrongVc => E::WrongVc,
            Outcome::DocumentUnusable => E::DocumentUnusable,
            Outcome::RequiredInteractionNotSupportedByApp => {
                E::RequiredInteractionNotSupportedByApp
            }
        }
    }
}

/// `POST /device/v1/transactions/{transactionId}/result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionResult {
    /// The outcome.
    pub outcome: Outcome,
    /// The interaction shown.
    #[serde(
        rename = "interactionTypeUsed",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub interaction_type_used: Option<String>,
    /// Details of a refusal or an unusable key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<crate::api::ResultDetails>,
    /// `SIGN` + `OK`: standard base64 signature (DER `Ecdsa-Sig-Value` for ECDSA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// `ONBOARD` + `OK`: standard base64 DER CSR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
    /// Compact JWS over [`ProofClaims`] by the device-authentication key.
    pub proof: String,
}

impl TransactionResult {
    /// Checks that an `OK` carries what its transaction type needs, and nothing else does.
    pub fn validate(&self, kind: TransactionType) -> Result<(), ScdError> {
        let ok = self.outcome == Outcome::Ok;
        match (kind, ok) {
            (TransactionType::Sign, true) if self.signature.is_none() => {
                Err(ScdError::Missing { field: "signature" })
            }
            (TransactionType::Onboard, true) if self.csr.is_none() => {
                Err(ScdError::Missing { field: "csr" })
            }
            (_, true) if self.signature.is_some() && self.csr.is_some() => Err(ScdError::invalid(
                "csr",
                "a result carries a signature or a CSR, not both",
            )),
            (_, false) if self.signature.is_some() || self.csr.is_some() => Err(ScdError::invalid(
                "outcome",
                "only an OK result carries a signature or a CSR",
            )),
            _ if self.proof.is_empty() => Err(ScdError::Missing { field: "proof" }),
            _ => Ok(()),
        }
    }
}

/// Claims of a device call token (`Authorization: DeviceJWS …`), DPoP style (RFC 9449 §4.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceCallClaims {
    /// HTTP method of this call.
    pub htm: String,
    /// URL of this call, without query and fragment.
    pub htu: String,
    /// Seconds since the epoch.
    pub iat: i64,
    /// Unique per call (at least 16 characters).
    pub jti: String,
    /// The calling device.
    #[serde(rename = "deviceId")]
    pub device_id: String,
}

impl DeviceCallClaims {
    /// Checks method, URL, device and freshness (`now` in seconds since the epoch). The replay
    /// check of `jti` is the caller's (it needs a store).
    pub fn check(
        &self,
        method: &str,
        url: &str,
        device_id: &str,
        now: i64,
    ) -> Result<(), ScdError> {
        if !self.htm.eq_ignore_ascii_case(method) {
            return Err(ScdError::invalid("htm", "not the method of this call"));
        }
        if self.htu != url {
            return Err(ScdError::invalid("htu", "not the URL of this call"));
        }
        if self.device_id != device_id {
            return Err(ScdError::invalid("deviceId", "not the device of this call"));
        }
        if self.jti.len() < 16 || self.jti.len() > 128 {
            return Err(ScdError::invalid("jti", "from 16 to 128 characters"));
        }
        let skew = IAT_SKEW.as_secs() as i64;
        if (self.iat - now).abs() > skew {
            return Err(ScdError::invalid(
                "iat",
                format!("more than {skew} s away from the service's clock"),
            ));
        }
        Ok(())
    }
}

/// Claims of a device's result proof: binds the outcome to exactly what was shown and signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofClaims {
    /// The transaction (= `sessionID`).
    #[serde(rename = "transactionId")]
    pub transaction_id: String,
    /// Its kind.
    #[serde(rename = "type")]
    pub kind: TransactionType,
    /// base64url SHA-256 of the digest (`SIGN`) or of the challenge (`ONBOARD`).
    #[serde(rename = "boundSha256")]
    pub bound_sha256: String,
    /// The verification code shown.
    pub vc: String,
    /// base64url SHA-256 of the `interactions` string ([`crate::interactions::digest`]).
    #[serde(rename = "interactionsSha256")]
    pub interactions_sha256: String,
    /// The outcome reported.
    pub outcome: Outcome,
    /// Seconds since the epoch.
    pub iat: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> DeviceCallClaims {
        DeviceCallClaims {
            htm: "POST".into(),
            htu: "https://rscd.example/device/v1/transactions/t1/result".into(),
            iat: 1_000,
            jti: "0123456789abcdef".into(),
            device_id: "dev-1".into(),
        }
    }

    #[test]
    fn call_claims_bind_method_url_device_and_time() {
        let c = claims();
        let url = c.htu.clone();
        c.check("post", &url, "dev-1", 1_030).unwrap();
        assert_eq!(
            c.check("GET", &url, "dev-1", 1_000).unwrap_err().field(),
            Some("htm")
        );
        assert_eq!(
            c.check(
                "POST",
                "https://rscd.example/device/v1/transactions/t2/result",
                "dev-1",
                1_000
            )
            .unwrap_err()
            .field(),
            Some("htu")
        );
        assert_eq!(
            c.check("POST", &url, "dev-2", 1_000).unwrap_err().field(),
            Some("deviceId")
        );
        assert_eq!(
            c.check("POST", &url, "dev-1", 1_061).unwrap_err().field(),
            Some("iat")
        );
        assert_eq!(
            c.check("POST", &url, "dev-1", 939).unwrap_err().field(),
            Some("iat")
        );
        let mut short = claims();
        short.jti = "x".into();
        assert_eq!(
            short
                .check("POST", &url, "dev-1", 1_000)
                .unwrap_err()
                .field(),
            Some("jti")
        );
    }

    #[test]
    fn results_carry_what_their_type_needs() {
        let mut r = TransactionResult {
            outcome: Outcome::Ok,
            interaction_type_used: Some("displayTextAndPIN".into()),
            details: None,
            signature: Some("AAAA".into()),
            csr: None,
            proof: "a.b.c".into(),
        };
        r.validate(TransactionType::Sign).unwrap();
        assert_eq!(
            r.validate(TransactionType::Onboard).unwrap_err(),
            ScdError::Missing { field: "csr" }
        );
        r.outcome = Outcome::UserRefused;
        assert_eq!(
            r.validate(TransactionType::Sign).unwrap_err().field(),
            Some("outcome")
        );
        r.signature = None;
        r.validate(TransactionType::Sign).unwrap();
        r.proof.clear();
        assert_eq!(
            r.validate(TransactionType::Sign).unwrap_err(),
            ScdError::Missing { field: "proof" }
        );
    }

    #[test]
    fn registration_wants_a_p256_key() {
        let json = r#"{"deviceAuthKey":{"kty":"EC","crv":"P-256","x":"AA","y":"BB"},
            "agentVersion":"esigd-device/0.1",
            "capabilities":{"interactions":["displayTextAndPIN"],
              "keySpecs":[{"algorithm":"EC","curve":"P-256"}],"signatureAlgorithms":["ecdsa"]}}"#;
        let mut r: DeviceRegistration = serde_json::from_str(json).unwrap();
        r.validate().unwrap();
        r.device_auth_key.crv = "P-521".into();
        assert_eq!(r.validate().unwrap_err().field(), Some("deviceAuthKey"));
    }
}
