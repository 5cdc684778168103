//! RSCD API v1: what the appliance (the relying party) sends to a Remote SCD service and gets back.
//!
//! Base path `{base}/scd/v1`; HTTPS with mutual TLS and a pinned service key. Field names are the
//! Smart-ID RP API v3 ones (`relyingPartyUUID`, `sessionID`, `signatureProtocolParameters`, …);
//! clients ignore response fields they do not know, so no response type here denies unknown fields,
//! while request types do (a typo in a request is an error, not a silently ignored field).
//!
//! | method and path | request | response |
//! |---|---|---|
//! | `POST /onboarding/device/{scdType}/{scdRemoteId}` | [`OnboardingRequest`] | [`SessionCreated`] |
//! | `POST /signature/key/{keyHandle}` | [`SignatureRequest`] | [`SessionCreated`] |
//! | `GET /session/{sessionID}?timeoutMs=` | — | [`SessionStatus`] |
//! | `POST /session/{sessionID}/cancel` | — | 204 |
//! | `POST /keys/{keyHandle}/certificate` | [`CertificateDelivery`] | 204 |
//! | `POST /signature/certificate/{keyHandle}` | [`CertificateRequest`] | [`CertificateResponse`] |
//! | `POST /keys/{keyHandle}/status` | [`KeyStatusChange`] | 204 |

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::ScdError;
use crate::vc::Vc;

/// Path prefix of the API under the service's base URL.
pub const BASE_PATH: &str = "/scd/v1";

/// Default long-poll time of `GET /session/{id}` when `timeoutMs` is absent (Smart-ID: 60 s).
pub const POLL_DEFAULT: Duration = Duration::from_secs(60);
/// Shortest accepted `timeoutMs`.
pub const POLL_MIN: Duration = Duration::from_millis(1000);
/// Longest accepted `timeoutMs`.
pub const POLL_MAX: Duration = Duration::from_millis(120_000);
/// How long a completed session's result stays readable.
pub const RESULT_RETENTION: Duration = Duration::from_secs(300);
/// How long the user has to answer on the device before the session ends with `TIMEOUT`.
pub const USER_WINDOW: Duration = Duration::from_secs(120);
/// Length of the onboarding challenge, in bytes.
pub const CHALLENGE_LEN: usize = 32;

/// The `timeoutMs` query parameter of the long poll: default [`POLL_DEFAULT`], accepted from
/// [`POLL_MIN`] to [`POLL_MAX`].
pub fn poll_timeout(timeout_ms: Option<u64>) -> Result<Duration, ScdError> {
    let Some(ms) = timeout_ms else {
        return Ok(POLL_DEFAULT);
    };
    let d = Duration::from_millis(ms);
    if d < POLL_MIN || d > POLL_MAX {
        return Err(ScdError::invalid(
            "timeoutMs",
            format!(
                "must be from {} to {}, got {ms}",
                POLL_MIN.as_millis(),
                POLL_MAX.as_millis()
            ),
        ));
    }
    Ok(d)
}

/// The key a device is asked to create at onboarding (`keySpec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "algorithm", deny_unknown_fields)]
pub enum KeySpec {
    /// An elliptic-curve key.
    #[serde(rename = "EC")]
    Ec {
        /// The curve.
        curve: Curve,
    },
    /// An RSA key.
    #[serde(rename = "RSA")]
    Rsa {
        /// Modulus length in bits: 2048, 3072 or 4096.
        size: u32,
    },
}

/// Named curves a device key may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Curve {
    /// NIST P-256 (secp256r1).
    #[serde(rename = "P-256")]
    P256,
    /// NIST P-384 (secp384r1).
    #[serde(rename = "P-384")]
    P384,
}

impl KeySpec {
    /// Refuses RSA sizes other than 2048, 3072 and 4096.
    pub fn validate(&self) -> Result<(), ScdError> {
        match self {
            KeySpec::Ec { .. } => Ok(()),
            KeySpec::Rsa {
                size: 2048 | 3072 | 4096,
            } => Ok(()),
            KeySpec::Rsa { size } => Err(ScdError::invalid(
                "keySpec.size",
                format!("must be 2048, 3072 or 4096, got {size}"),
            )),
        }
    }
}

/// The subject the device is told about at onboarding (from the Identity BB, never from the device).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    /// The Identity BB's subject identifier (a pairwise pseudonymous `sub`).
    pub sub: String,
    /// A name the device may show ("Onboarding for Jane Doe").
    #[serde(
        rename = "displayName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub display_name: Option<String>,
}

/// `POST /onboarding/device/{scdType}/{scdRemoteId}`: ask a device to create a key and return a CSR
/// bound to `challenge` (PKCS#9 `challengePassword`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnboardingRequest {
    /// The relying party's UUID at the Remote SCD service.
    #[serde(rename = "relyingPartyUUID")]
    pub relying_party_uuid: String,
    /// The relying party name shown on the device.
    #[serde(rename = "relyingPartyName")]
    pub relying_party_name: String,
    /// Who the key is for.
    pub subject: Subject,
    /// Which key slot of the device (GovStack `SCDKeyId`).
    #[serde(rename = "scdKeyId")]
    pub scd_key_id: u32,
    /// The key to create.
    #[serde(rename = "keySpec")]
    pub key_spec: KeySpec,
    /// [`CHALLENGE_LEN`] random bytes, standard base64; single use.
    pub challenge: String,
    /// What the device shows (see [`crate::interactions`]).
    pub interactions: String,
    /// Forces a new session inside the idempotency window when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

impl OnboardingRequest {
    /// Checks every field a service must check before creating a session; returns the decoded
    /// challenge.
    pub fn validate(&self) -> Result<Vec<u8>, ScdError> {
        relying_party(&self.relying_party_uuid, &self.relying_party_name)?;
        if self.subject.sub.is_empty() {
            return Err(ScdError::Missing {
                field: "subject.sub",
            });
        }
        self.key_spec.validate()?;
        let challenge = b64_field("challenge", &self.challenge)?;
        if challenge.len() != CHALLENGE_LEN {
            return Err(ScdError::invalid(
                "challenge",
                format!("must be {CHALLENGE_LEN} bytes, got {}", challenge.len()),
            ));
        }
        crate::interactions::decode(&self.interactions)?;
        nonce(self.nonce.as_deref())?;
        Ok(challenge)
    }
}

/// The only signature protocol of signing sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignatureProtocol {
    /// The device signs the given digest as it is (Smart-ID v3 `RAW_DIGEST_SIGNATURE`).
    #[serde(rename = "RAW_DIGEST_SIGNATURE")]
    RawDigestSignature,
}

/// Hash algorithms of the digest to be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HashAlgorithm {
    /// SHA-256.
    #[serde(rename = "SHA-256")]
    Sha256,
    /// SHA-384.
    #[serde(rename = "SHA-384")]
    Sha384,
    /// SHA-512.
    #[serde(rename = "SHA-512")]
    Sha512,
    /// SHA3-256.
    #[serde(rename = "SHA3-256")]
    Sha3_256,
    /// SHA3-384.
    #[serde(rename = "SHA3-384")]
    Sha3_384,
    /// SHA3-512.
    #[serde(rename = "SHA3-512")]
    Sha3_512,
}

impl HashAlgorithm {
    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            HashAlgorithm::Sha256 | HashAlgorithm::Sha3_256 => 32,
            HashAlgorithm::Sha384 | HashAlgorithm::Sha3_384 => 48,
            HashAlgorithm::Sha512 | HashAlgorithm::Sha3_512 => 64,
        }
    }
}

/// Signature algorithms a device may be asked to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignatureAlgorithm {
    /// RSASSA-PSS, MGF1 with the same hash, salt length = hash length (Smart-ID's default).
    #[serde(rename = "rsassa-pss")]
    RsassaPss,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[serde(rename = "sha256WithRSAEncryption")]
    Sha256WithRsa,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    #[serde(rename = "sha384WithRSAEncryption")]
    Sha384WithRsa,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    #[serde(rename = "sha512WithRSAEncryption")]
    Sha512WithRsa,
    /// ECDSA over the digest; the signature value is a DER `Ecdsa-Sig-Value` (not raw r‖s).
    #[serde(rename = "ecdsa")]
    Ecdsa,
}

/// `signatureAlgorithmParameters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlgorithmParameters {
    /// The hash the digest was made with.
    #[serde(rename = "hashAlgorithm")]
    pub hash_algorithm: HashAlgorithm,
}

/// `signatureProtocolParameters` of `RAW_DIGEST_SIGNATURE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDigestParameters {
    /// The digest to sign, standard base64.
    pub digest: String,
    /// How to sign it.
    #[serde(rename = "signatureAlgorithm")]
    pub signature_algorithm: SignatureAlgorithm,
    /// The hash of the digest.
    #[serde(rename = "signatureAlgorithmParameters")]
    pub signature_algorithm_parameters: AlgorithmParameters,
}

/// `POST /signature/key/{keyHandle}`: ask the device holding the key to sign a digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureRequest {
    /// The relying party's UUID at the Remote SCD service.
    #[serde(rename = "relyingPartyUUID")]
    pub relying_party_uuid: String,
    /// The relying party name shown on the device.
    #[serde(rename = "relyingPartyName")]
    pub relying_party_name: String,
    /// Always `RAW_DIGEST_SIGNATURE`.
    #[serde(rename = "signatureProtocol")]
    pub signature_protocol: SignatureProtocol,
    /// The digest and algorithm.
    #[serde(rename = "signatureProtocolParameters")]
    pub signature_protocol_parameters: RawDigestParameters,
    /// What the device shows (see [`crate::interactions`]).
    pub interactions: String,
    /// Forces a new session inside the idempotency window when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

impl SignatureRequest {
    /// Checks every field; returns the decoded digest, whose length matches the hash algorithm.
    pub fn validate(&self) -> Result<Vec<u8>, ScdError> {
        relying_party(&self.relying_party_uuid, &self.relying_party_name)?;
        let p = &self.signature_protocol_parameters;
        let digest = b64_field("signatureProtocolParameters.digest", &p.digest)?;
        let hash = p.signature_algorithm_parameters.hash_algorithm;
        if digest.len() != hash.digest_len() {
            return Err(ScdError::invalid(
                "signatureProtocolParameters.digest",
                format!(
                    "{} bytes, but {hash:?} digests are {}",
                    digest.len(),
                    hash.digest_len()
                ),
            ));
        }
        let fixed = match p.signature_algorithm {
            SignatureAlgorithm::Sha256WithRsa => Some(HashAlgorithm::Sha256),
            SignatureAlgorithm::Sha384WithRsa => Some(HashAlgorithm::Sha384),
            SignatureAlgorithm::Sha512WithRsa => Some(HashAlgorithm::Sha512),
            _ => None,
        };
        if fixed.is_some_and(|h| h != hash) {
            return Err(ScdError::invalid(
                "signatureProtocolParameters.signatureAlgorithmParameters.hashAlgorithm",
                "does not match the hash named by signatureAlgorithm",
            ));
        }
        crate::interactions::decode(&self.interactions)?;
        nonce(self.nonce.as_deref())?;
        Ok(digest)
    }
}

/// `200` answer to both session-creating calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCreated {
    /// The session (UUID v4), for `GET /session/{sessionID}`.
    #[serde(rename = "sessionID")]
    pub session_id: String,
    /// The verification code to show on the appliance's page (after [`Vc::check`]).
    pub vc: Vc,
}

/// `state` of a session as seen from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SessionState {
    /// Waiting for the device or the user.
    Running,
    /// Ended; `result.endResult` says how.
    Complete,
}

/// How a session ended (Smart-ID v3 codes, plus `RP_CANCELLED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EndResult {
    /// Signed or onboarded.
    Ok,
    /// The user refused (outside the interaction screen).
    UserRefused,
    /// The user refused on an interaction screen (`details.interaction` says which).
    UserRefusedInteraction,
    /// The user did not answer within the user window.
    Timeout,
    /// The user picked the wrong code out of three.
    WrongVc,
    /// The key cannot be used (`details.reason`: `PIN_LOCKED`, `KEY_NOT_FOUND`, `KEY_SUSPENDED`).
    DocumentUnusable,
    /// The device app does not support any of the requested interactions.
    RequiredInteractionNotSupportedByApp,
    /// The device or service broke the protocol (e.g. a signature that does not verify).
    ProtocolFailure,
    /// The service failed.
    ServerError,
    /// The relying party cancelled the session.
    RpCancelled,
    /// A code this version does not know (a newer service); treated as a failure.
    #[serde(other)]
    Unknown,
}

/// `result.details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ResultDetails {
    /// For `USER_REFUSED_INTERACTION`: the interaction type refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interaction: Option<String>,
    /// For `DOCUMENT_UNUSABLE`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `result` of a completed session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionResult {
    /// How it ended.
    #[serde(rename = "endResult")]
    pub end_result: EndResult,
    /// The service's handle of the (device, key) pair (Smart-ID's `documentNumber`, also accepted).
    #[serde(
        rename = "keyHandle",
        alias = "documentNumber",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub key_handle: Option<String>,
    /// Details of a refusal or an unusable key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<ResultDetails>,
}

/// The signature of a completed signing session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureValue {
    /// Standard base64 of the signature (DER `Ecdsa-Sig-Value` for ECDSA).
    pub value: String,
    /// The algorithm used.
    #[serde(rename = "signatureAlgorithm")]
    pub signature_algorithm: SignatureAlgorithm,
    /// Its parameters.
    #[serde(rename = "signatureAlgorithmParameters")]
    pub signature_algorithm_parameters: AlgorithmParameters,
}

/// A certificate as carried in responses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertValue {
    /// Standard base64 of the DER certificate.
    pub value: String,
}

/// `GET /session/{sessionID}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStatus {
    /// `RUNNING` or `COMPLETE`.
    pub state: SessionState,
    /// The end result, when `COMPLETE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<SessionResult>,
    /// Of signing sessions: always `RAW_DIGEST_SIGNATURE`.
    #[serde(
        rename = "signatureProtocol",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub signature_protocol: Option<SignatureProtocol>,
    /// Of a signing session that ended `OK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureValue>,
    /// Of an onboarding session that ended `OK`: standard base64 of the DER PKCS#10 CSR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
    /// The certificate (Smart-ID; absent from the reference service's signing sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<CertValue>,
    /// The interaction the device used.
    #[serde(
        rename = "interactionTypeUsed",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub interaction_type_used: Option<String>,
    /// The device's signed proof (a compact JWS by its device-authentication key).
    #[serde(
        rename = "deviceProof",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub device_proof: Option<String>,
}

impl SessionStatus {
    /// A `RUNNING` answer.
    pub fn running() -> SessionStatus {
        SessionStatus {
            state: SessionState::Running,
            result: None,
            signature_protocol: None,
            signature: None,
            csr: None,
            cert: None,
            interaction_type_used: None,
            device_proof: None,
        }
    }

    /// The end result, or `None` while running. A `COMPLETE` answer without a result is a
    /// protocol failure.
    pub fn end_result(&self) -> Option<EndResult> {
        match self.state {
            SessionState::Running => None,
            SessionState::Complete => Some(
                self.result
                    .as_ref()
                    .map_or(EndResult::ProtocolFailure, |r| r.end_result),
            ),
        }
    }
}

/// `POST /keys/{keyHandle}/certificate`: the certificate the appliance's CA issued for the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateDelivery {
    /// Standard base64 of the DER certificate.
    pub certificate: String,
    /// Issuer chain, standard base64 DER each, leaf's issuer first.
    #[serde(default)]
    pub chain: Vec<String>,
}

/// `POST /signature/certificate/{keyHandle}` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateRequest {
    /// The relying party's UUID.
    #[serde(rename = "relyingPartyUUID")]
    pub relying_party_uuid: String,
    /// The relying party's name.
    #[serde(rename = "relyingPartyName")]
    pub relying_party_name: String,
}

/// `POST /signature/certificate/{keyHandle}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateResponse {
    /// `OK` or `DOCUMENT_UNUSABLE`.
    pub state: String,
    /// The certificate when `OK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<CertValue>,
}

/// Lifecycle of a key at the service (GovStack certificate statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KeyStatus {
    /// Usable for signing.
    Active,
    /// Temporarily not usable (signing sessions end `DOCUMENT_UNUSABLE`/`KEY_SUSPENDED`).
    Suspended,
    /// Permanently not usable.
    Revoked,
}

/// `POST /keys/{keyHandle}/status`, driven by GovStack `PATCH /cert/{certificateId}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyStatusChange {
    /// The new status.
    pub status: KeyStatus,
    /// Free text for the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn relying_party(uuid: &str, name: &str) -> Result<(), ScdError> {
    if uuid.is_empty() {
        return Err(ScdError::Missing {
            field: "relyingPartyUUID",
        });
    }
    if name.trim().is_empty() {
        return Err(ScdError::Missing {
            field: "relyingPartyName",
        });
    }
    if name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ScdError::invalid(
            "relyingPartyName",
            "at most 100 characters, no control characters",
        ));
    }
    Ok(())
}

fn nonce(n: Option<&str>) -> Result<(), ScdError> {
    match n {
        Some(n) if n.is_empty() || n.len() > 64 => Err(ScdError::invalid(
            "nonce",
            "from 1 to 64 characters when present",
        )),
        _ => Ok(()),
    }
}

/// Decodes a standard-base64 field, naming it on error.
pub(crate) fn b64_field(field: &'static str, v: &str) -> Result<Vec<u8>, ScdError> {
    if v.is_empty() {
        return Err(ScdError::Missing { field });
    }
    STANDARD
        .decode(v)
        .map_err(|_| ScdError::invalid(field, "not standard base64"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interactions::{Interaction, encode};

    fn interactions() -> String {
        encode(&[Interaction::DisplayTextAndPin {
            display_text60: "Sign the lease".into(),
        }])
        .unwrap()
    }

    fn sign_body(digest_len: usize, hash: &str, alg: &str) -> String {
        format!(
            r#"{{"relyingPartyUUID":"00000000-0000-4000-8000-000000000000","relyingPartyName":"DEMO",
            "signatureProtocol":"RAW_DIGEST_SIGNATURE",
            "signatureProtocolParameters":{{"digest":"{}","signatureAlgorithm":"{alg}",
              "signatureAlgorithmParameters":{{"hashAlgorithm":"{hash}"}}}},
            "interactions":"{}"}}"#,
            STANDARD.encode(vec![1u8; digest_len]),
            interactions()
        )
    }

    #[test]
    fn smart_id_shaped_signature_request_parses_and_validates() {
        let req: SignatureRequest =
            serde_json::from_str(&sign_body(32, "SHA-256", "rsassa-pss")).unwrap();
        assert_eq!(req.validate().unwrap(), vec![1u8; 32]);
        let req: SignatureRequest =
            serde_json::from_str(&sign_body(64, "SHA3-512", "ecdsa")).unwrap();
        req.validate().unwrap();
    }

    #[test]
    fn digest_length_and_hash_must_agree() {
        let req: SignatureRequest =
            serde_json::from_str(&sign_body(32, "SHA-512", "rsassa-pss")).unwrap();
        let err = req.validate().unwrap_err();
        assert_eq!(err.field(), Some("signatureProtocolParameters.digest"));
        let req: SignatureRequest =
            serde_json::from_str(&sign_body(48, "SHA-384", "sha256WithRSAEncryption")).unwrap();
        assert!(
            req.validate()
                .unwrap_err()
                .to_string()
                .contains("hashAlgorithm")
        );
    }

    #[test]
    fn unknown_request_fields_and_protocols_are_refused() {
        let body = sign_body(32, "SHA-256", "rsassa-pss").replace("\"nonce\"", "\"x\"");
        let extra = body.replacen('{', r#"{"certificateLevel":"QUALIFIED","#, 1);
        assert!(serde_json::from_str::<SignatureRequest>(&extra).is_err());
        let acsp = body.replace("RAW_DIGEST_SIGNATURE", "ACSP_V2");
        assert!(serde_json::from_str::<SignatureRequest>(&acsp).is_err());
    }

    #[test]
    fn session_status_reads_smart_id_answers() {
        let ok = r#"{"state":"COMPLETE","result":{"endResult":"OK","documentNumber":"PNOEE-1-Q"},
            "signatureProtocol":"RAW_DIGEST_SIGNATURE",
            "signature":{"value":"AAAA","flowType":"Notification","signatureAlgorithm":"rsassa-pss",
              "signatureAlgorithmParameters":{"hashAlgorithm":"SHA-256"}},
            "cert":{"value":"BBBB","certificateLevel":"QUALIFIED"},
            "interactionTypeUsed":"displayTextAndPIN","deviceIpAddress":"203.0.113.34"}"#;
        let s: SessionStatus = serde_json::from_str(ok).unwrap();
        assert_eq!(s.end_result(), Some(EndResult::Ok));
        assert_eq!(s.result.unwrap().key_handle.as_deref(), Some("PNOEE-1-Q"));
        let newer: SessionStatus = serde_json::from_str(
            r#"{"state":"COMPLETE","result":{"endResult":"ACCOUNT_UNUSABLE"}}"#,
        )
        .unwrap();
        assert_eq!(newer.end_result(), Some(EndResult::Unknown));
        let broken: SessionStatus = serde_json::from_str(r#"{"state":"COMPLETE"}"#).unwrap();
        assert_eq!(broken.end_result(), Some(EndResult::ProtocolFailure));
        let running: SessionStatus = serde_json::from_str(r#"{"state":"RUNNING"}"#).unwrap();
        assert_eq!(running.end_result(), None);
        assert_eq!(
            serde_json::to_string(&SessionStatus::running()).unwrap(),
            r#"{"state":"RUNNING"}"#
        );
    }

    #[test]
    fn onboarding_request_checks_challenge_and_key() {
        let mut req = OnboardingRequest {
            relying_party_uuid: "rp".into(),
            relying_party_name: "esigd".into(),
            subject: Subject {
                sub: "user-1".into(),
                display_name: None,
            },
            scd_key_id: 0,
            key_spec: KeySpec::Ec { curve: Curve::P256 },
            challenge: STANDARD.encode([9u8; 32]),
            interactions: interactions(),
            nonce: None,
        };
        assert_eq!(req.validate().unwrap(), vec![9u8; 32]);
        let json = serde_json::to_string(&req).unwrap();
        assert!(
            json.contains(r#""keySpec":{"algorithm":"EC","curve":"P-256"}"#),
            "{json}"
        );
        req.challenge = STANDARD.encode([9u8; 16]);
        assert_eq!(req.validate().unwrap_err().field(), Some("challenge"));
        req.challenge = STANDARD.encode([9u8; 32]);
        req.key_spec = KeySpec::Rsa { size: 1024 };
        assert_eq!(req.validate().unwrap_err().field(), Some("keySpec.size"));
        req.key_spec = KeySpec::Rsa { size: 3072 };
        req.relying_party_name = " ".into();
        assert_eq!(
            req.validate().unwrap_err().field(),
            Some("relyingPartyName")
        );
    }

    #[test]
    fn poll_timeout_bounds() {
        assert_eq!(poll_timeout(None).unwrap(), POLL_DEFAULT);
        assert_eq!(poll_timeout(Some(1000)).unwrap(), POLL_MIN);
        assert_eq!(poll_timeout(Some(120_000)).unwrap(), POLL_MAX);
        assert!(poll_timeout(Some(999)).is_err());
        assert_eq!(
            poll_timeout(Some(120_001)).unwrap_err().field(),
            Some("timeoutMs")
        );
    }
}

#[cfg(test)]
mod openapi_tests {
    use super::*;

    const DOC: &str = include_str!("../openapi/rscd-v1.yaml");

    #[test]
    fn the_openapi_document_lists_every_end_result_and_algorithm() {
        let ends = [
            EndResult::Ok,
            EndResult::UserRefused,
            EndResult::UserRefusedInteraction,
            EndResult::Timeout,
            EndResult::WrongVc,
            EndResult::DocumentUnusable,
            EndResult::RequiredInteractionNotSupportedByApp,
            EndResult::ProtocolFailure,
            EndResult::ServerError,
            EndResult::RpCancelled,
        ];
        let line = DOC
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("EndResult:"))
            .take(4)
            .collect::<String>();
        for e in ends {
            let name = serde_json::to_string(&e).unwrap();
            assert!(
                line.contains(name.trim_matches('"')),
                "{name} missing from EndResult"
            );
        }
        for a in [
            SignatureAlgorithm::RsassaPss,
            SignatureAlgorithm::Sha256WithRsa,
            SignatureAlgorithm::Sha384WithRsa,
            SignatureAlgorithm::Sha512WithRsa,
            SignatureAlgorithm::Ecdsa,
        ] {
            let name = serde_json::to_string(&a).unwrap();
            assert!(DOC.contains(name.trim_matches('"')), "{name}");
        }
    }
}
