//! The device's decisions, without HTTP or UI: what it shows for a transaction, and the signed
//! result it sends once the citizen confirms (with their PIN) or refuses.
//!
//! * Keys live in the device's own PKCS#11 token ([`esigd_hsm::DeviceToken`]); the PIN the
//!   citizen chooses at the first onboarding is the token's user PIN, and is typed again for every
//!   signature. It is never stored, logged or sent: it goes to `C_Login` and is dropped
//!   (`SecretString` zeroizes it).
//! * Three wrong PINs in a row lock the keys: the next answer is `DOCUMENT_UNUSABLE` with reason
//!   `PIN_LOCKED` (SoftHSM has no retry counter of its own, so the agent keeps it, persisted).
//! * A transaction is refused without an answer when it has expired, was answered before (the
//!   processed IDs are persisted), or its verification code does not match what it carries.
//! * Every result carries a proof signed by the device-authentication key over exactly what was
//!   shown and signed; signatures are verified with the key's public key before they leave.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use esigd_hsm::{DeviceToken, HsmError, KeyKind, SignatureScheme};
use esigd_scd::api::{HashAlgorithm, ResultDetails, SignatureAlgorithm};
use esigd_scd::device::{
    Capabilities, DeviceCallClaims, DeviceRegistration, Outcome, ProofClaims, Transaction,
    TransactionResult, TransactionType,
};
use esigd_scd::interactions::{self, Interaction};
use esigd_scd::jws;
use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand_core::{CryptoRngCore, OsRng, RngCore};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::error::AgentError;

/// Wrong PINs in a row that lock the keys.
pub const MAX_PIN_TRIES: u32 = 3;
/// Transaction IDs remembered against replay.
const PROCESSED_MAX: usize = 10_000;
/// Interactions this app can show.
pub const SUPPORTED: [&str; 3] = [
    "displayTextAndPIN",
    "confirmationMessage",
    "confirmationMessageAndVerificationCodeChoice",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyRecord {
    scd_key_id: u32,
    label: String,
    key_handle: Option<String>,
    certificate: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    token_label: String,
    so_pin: String,
    auth_key: String,
    device_id: Option<String>,
    keys: Vec<KeyRecord>,
    processed: VecDeque<String>,
    wrong_pins: u32,
}

/// What the device shows for a transaction before the citizen decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// Onboarding or signing.
    pub kind: TransactionType,
    /// The relying party's name.
    pub rp_name: String,
    /// The interaction used (the first supported one).
    pub interaction: Interaction,
    /// The verification code, recomputed here.
    pub vc: String,
    /// Three codes to choose from, for `confirmationMessageAndVerificationCodeChoice`.
    pub choices: Option<[String; 3]>,
    /// Onboarding when no PIN is set yet: the citizen chooses one (typed twice).
    pub choose_pin: bool,
    /// The keys are locked (three wrong PINs): the only answer is `DOCUMENT_UNUSABLE`.
    pub locked: bool,
}

/// The device agent: state directory, token and device-authentication key.
pub struct Agent {
    path: PathBuf,
    state: State,
    token: DeviceToken,
    auth: SigningKey,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("device_id", &self.state.device_id)
            .finish_non_exhaustive()
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn scheme_for(alg: SignatureAlgorithm, hash: HashAlgorithm) -> Option<SignatureScheme> {
    match (alg, hash) {
        (SignatureAlgorithm::Ecdsa, HashAlgorithm::Sha256) => Some(SignatureScheme::EcdsaSha256),
        (SignatureAlgorithm::Ecdsa, HashAlgorithm::Sha384) => Some(SignatureScheme::EcdsaSha384),
        (SignatureAlgorithm::Ecdsa, HashAlgorithm::Sha512) => Some(SignatureScheme::EcdsaSha512),
        _ => None,
    }
}

/// PIN rules: 4 to 12 digits.
pub fn check_pin(pin: &SecretString) -> Result<(), AgentError> {
    let p = pin.expose_secret();
    if !(4..=12).contains(&p.len()) || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AgentError::PinRule("use 4 to 12 digits"));
    }
    Ok(())
}

impl Agent {
    /// Opens the agent whose state is in `dir` (created on first use: a new device-authentication
    /// key, a random token administrator secret, and a new token in the PKCS#11 module).
    pub fn open(dir: &Path, module: &Path) -> Result<Agent, AgentError> {
        let path = dir.join("device.json");
        let state = if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| AgentError::State {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            serde_json::from_str(&text).map_err(|e| AgentError::State {
                path: path.clone(),
                reason: format!("not a device state file: {e}"),
            })?
        } else {
            let mut so = [0u8; 16];
            OsRng.fill_bytes(&mut so);
            let mut tag = [0u8; 4];
            OsRng.fill_bytes(&mut tag);
            let auth = SigningKey::random(&mut OsRng);
            let der = auth
                .to_pkcs8_der()
                .map_err(|e| AgentError::Crypto(e.to_string()))?;
            State {
                token_label: format!("esigd-device-{}", hex(&tag)),
                so_pin: hex(&so),
                auth_key: STANDARD.encode(der.as_bytes()),
                device_id: None,
                keys: Vec::new(),
                processed: VecDeque::new(),
                wrong_pins: 0,
            }
        };
        let der = STANDARD
            .decode(&state.auth_key)
            .map_err(|e| AgentError::Crypto(format!("auth_key: {e}")))?;
        let auth = SigningKey::from_pkcs8_der(&der)
            .map_err(|e| AgentError::Crypto(format!("auth_key: {e}")))?;
        let token = DeviceToken::open_or_init(
            module,
            &state.token_label,
            &SecretString::from(state.so_pin.clone()),
        )?;
        let agent = Agent {
            path,
            state,
            token,
            auth,
        };
        agent.save()?;
        Ok(agent)
    }

    /// Writes the state (temporary file, `fsync`, rename; mode 0600: it holds the device's
    /// authentication key).
    fn save(&self) -> Result<(), AgentError> {
        let err = |e: std::io::Error| AgentError::State {
            path: self.path.clone(),
            reason: e.to_string(),
        };
        let tmp = self.path.with_extension("tmp");
        let json =
            serde_json::to_vec_pretty(&self.state).map_err(|e| err(std::io::Error::other(e)))?;
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(err)?;
            f.write_all(&json).map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(err)
    }

    /// The registration body for `POST /device/v1/devices`.
    pub fn registration(&self, agent_version: &str) -> DeviceRegistration {
        DeviceRegistration {
            device_auth_key: jws::jwk_of(self.auth.verifying_key()),
            agent_version: agent_version.to_owned(),
            capabilities: Capabilities {
                interactions: SUPPORTED.iter().map(|s| (*s).to_owned()).collect(),
                key_specs: vec![esigd_scd::api::KeySpec::Ec {
                    curve: esigd_scd::api::Curve::P256,
                }],
                signature_algorithms: vec![SignatureAlgorithm::Ecdsa],
            },
        }
    }

    /// The device ID the service gave at registration.
    pub fn device_id(&self) -> Option<&str> {
        self.state.device_id.as_deref()
    }

    /// Records the device ID.
    pub fn set_device_id(&mut self, id: &str) -> Result<(), AgentError> {
        self.state.device_id = Some(id.to_owned());
        self.save()
    }

    /// A signed call token for `method` and `url` (`Authorization: DeviceJWS <token>`).
    pub fn call_token(
        &self,
        method: &str,
        url: &str,
        now: SystemTime,
        rng: &mut impl CryptoRngCore,
    ) -> Result<String, AgentError> {
        let device_id = self
            .state
            .device_id
            .clone()
            .ok_or_else(|| AgentError::Refused("the device is not registered".into()))?;
        let mut jti = [0u8; 16];
        rng.fill_bytes(&mut jti);
        jws::sign_call(
            &self.auth,
            &DeviceCallClaims {
                htm: method.to_owned(),
                htu: url.to_owned(),
                iat: unix(now),
                jti: URL_SAFE_NO_PAD.encode(jti),
                device_id,
            },
        )
        .map_err(|e| AgentError::Crypto(e.to_string()))
    }

    fn bound(tx: &Transaction) -> Result<Vec<u8>, AgentError> {
        let b64 = match (tx.kind, &tx.sign, &tx.onboard) {
            (TransactionType::Sign, Some(s), _) => &s.digest,
            (TransactionType::Onboard, _, Some(o)) => &o.challenge,
            _ => return Err(AgentError::Refused("the request is incomplete".into())),
        };
        STANDARD.decode(b64).map_err(|_| {
            AgentError::Refused("the request's digest or challenge is not base64".into())
        })
    }

    fn key_for_handle(&self, handle: &str) -> Option<&KeyRecord> {
        self.state
            .keys
            .iter()
            .find(|k| k.key_handle.as_deref() == Some(handle))
    }

    /// Checks a transaction and says what to show. `Err(Refused)` means: do not show it and do
    /// not answer (expired, answered before, wrong verification code, unknown key).
    pub fn review(
        &self,
        tx: &Transaction,
        now: SystemTime,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Review, AgentError> {
        let expires = humantime::parse_rfc3339(&tx.expires_at)
            .map_err(|_| AgentError::Refused("expiresAt is not an RFC 3339 time".into()))?;
        if expires <= now {
            return Err(AgentError::Refused("the request has expired".into()));
        }
        if self.state.processed.contains(&tx.transaction_id) {
            return Err(AgentError::Refused(
                "the request was answered before".into(),
            ));
        }
        let bound = Self::bound(tx)?;
        tx.vc.check(&tx.transaction_id, &bound).map_err(|_| {
            AgentError::Refused("the verification code does not match the request".into())
        })?;
        let list = interactions::decode(&tx.interactions)
            .map_err(|e| AgentError::Refused(e.to_string()))?;
        let interaction = list
            .into_iter()
            .find(|i| SUPPORTED.contains(&i.kind()))
            .ok_or_else(|| AgentError::Refused("no interaction this app can show".into()))?;
        if let Some(sign) = &tx.sign {
            if self.key_for_handle(&sign.key_handle).is_none() {
                return Err(AgentError::Refused(
                    "the request is for a key this device does not hold".into(),
                ));
            }
            let hash = sign.signature_algorithm_parameters.hash_algorithm;
            if scheme_for(sign.signature_algorithm, hash).is_none()
                || bound.len() != hash.digest_len()
            {
                return Err(AgentError::Refused(
                    "unsupported signature algorithm or digest".into(),
                ));
            }
        }
        let choices = matches!(
            interaction,
            Interaction::ConfirmationMessageAndVerificationCodeChoice { .. }
        )
        .then(|| tx.vc.choices(rng));
        Ok(Review {
            kind: tx.kind,
            rp_name: tx.rp_name.clone(),
            interaction,
            vc: tx.vc.value.clone(),
            choices,
            choose_pin: tx.kind == TransactionType::Onboard && !self.token.pin_set()?,
            locked: self.state.wrong_pins >= MAX_PIN_TRIES,
        })
    }

    fn finish(
        &mut self,
        tx: &Transaction,
        outcome: Outcome,
        interaction: Option<&Interaction>,
        details: Option<ResultDetails>,
        payload: (Option<String>, Option<String>),
        now: SystemTime,
    ) -> Result<TransactionResult, AgentError> {
        let bound = Self::bound(tx)?;
        let proof = jws::sign_proof(
            &self.auth,
            &ProofClaims {
                transaction_id: tx.transaction_id.clone(),
                kind: tx.kind,
                bound_sha256: URL_SAFE_NO_PAD.encode(Sha256::digest(&bound)),
                vc: tx.vc.value.clone(),
                interactions_sha256: URL_SAFE_NO_PAD.encode(interactions::digest(&tx.interactions)),
                outcome,
                iat: unix(now),
            },
        )
        .map_err(|e| AgentError::Crypto(e.to_string()))?;
        self.state.processed.push_back(tx.transaction_id.clone());
        while self.state.processed.len() > PROCESSED_MAX {
            self.state.processed.pop_front();
        }
        self.save()?;
        Ok(TransactionResult {
            outcome,
            interaction_type_used: interaction.map(|i| i.kind().to_owned()),
            details,
            signature: payload.0,
            csr: payload.1,
            proof,
        })
    }

    /// The citizen refused on the interaction screen.
    pub fn refuse(
        &mut self,
        tx: &Transaction,
        review: &Review,
        now: SystemTime,
    ) -> Result<TransactionResult, AgentError> {
        let details = ResultDetails {
            interaction: Some(review.interaction.kind().to_owned()),
            reason: None,
        };
        self.finish(
            tx,
            Outcome::UserRefusedInteraction,
            Some(&review.interaction),
            Some(details),
            (None, None),
            now,
        )
    }

    /// The citizen picked the wrong code out of three.
    pub fn wrong_code(
        &mut self,
        tx: &Transaction,
        review: &Review,
        now: SystemTime,
    ) -> Result<TransactionResult, AgentError> {
        self.finish(
            tx,
            Outcome::WrongVc,
            Some(&review.interaction),
            None,
            (None, None),
            now,
        )
    }

    fn locked_result(
        &mut self,
        tx: &Transaction,
        review: &Review,
        now: SystemTime,
    ) -> Result<TransactionResult, AgentError> {
        let details = ResultDetails {
            interaction: None,
            reason: Some("PIN_LOCKED".into()),
        };
        self.finish(
            tx,
            Outcome::DocumentUnusable,
            Some(&review.interaction),
            Some(details),
            (None, None),
            now,
        )
    }

    /// Counts a wrong PIN; at the limit the answer is `DOCUMENT_UNUSABLE` / `PIN_LOCKED`.
    fn wrong_pin(
        &mut self,
        tx: &Transaction,
        review: &Review,
        now: SystemTime,
    ) -> Result<TransactionResult, AgentError> {
        self.state.wrong_pins += 1;
        self.save()?;
        tracing::info!(tries = self.state.wrong_pins, "wrong PIN");
        if self.state.wrong_pins >= MAX_PIN_TRIES {
            return self.locked_result(tx, review, now);
        }
        Err(AgentError::WrongPin {
            tries_left: MAX_PIN_TRIES - self.state.wrong_pins,
        })
    }

    /// The citizen confirmed with `pin` (and, when choosing a PIN at onboarding, typed it again as
    /// `pin_again`). Returns the result to send; [`AgentError::WrongPin`] lets them try again.
    pub fn approve(
        &mut self,
        tx: &Transaction,
        review: &Review,
        pin: &SecretString,
        pin_again: Option<&SecretString>,
        now: SystemTime,
    ) -> Result<TransactionResult, AgentError> {
        if self.state.wrong_pins >= MAX_PIN_TRIES {
            return self.locked_result(tx, review, now);
        }
        match tx.kind {
            TransactionType::Onboard => self.approve_onboarding(tx, review, pin, pin_again, now),
            TransactionType::Sign => self.approve_signing(tx, review, pin, now),
        }
    }

    fn approve_onboarding(
        &mut self,
        tx: &Transaction,
        review: &Review,
        pin: &SecretString,
        pin_again: Option<&SecretString>,
        now: SystemTime,
    ) -> Result<TransactionResult, AgentError> {
        let onboard = tx
            .onboard
            .as_ref()
            .ok_or_else(|| AgentError::Refused("the request is incomplete".into()))?;
        if !self.token.pin_set()? {
            check_pin(pin)?;
            match pin_again {
                Some(again) if again.expose_secret() == pin.expose_secret() => {}
                _ => return Err(AgentError::PinRule("the two PINs differ")),
            }
            self.token
                .set_pin(&SecretString::from(self.state.so_pin.clone()), pin)?;
        }
        let label = format!(
            "scd-{}-{}",
            onboard.scd_key_id,
            &tx.transaction_id[..8.min(tx.transaction_id.len())]
        );
        let public = match self.token.generate(pin, &label, KeyKind::EcP256) {
            Ok(pk) => pk,
            Err(HsmError::PinRefused { .. }) => return self.wrong_pin(tx, review, now),
            Err(e) => return Err(e.into()),
        };
        self.state.wrong_pins = 0;
        let signer = crate::csr::TokenSigner::new(&self.token, pin, &label, &public)?;
        let cn = onboard
            .subject_hint
            .clone()
            .unwrap_or_else(|| "esigd device key".into());
        let subject = esigd_pki::identity::DnBuilder::new()
            .common_name(&cn)
            .map_err(|e| AgentError::Crypto(e.to_string()))?
            .build();
        let csr = esigd_pki::csr::build_csr_with_challenge::<_, p256::ecdsa::DerSignature>(
            &signer,
            subject,
            &onboard.challenge,
        )
        .map_err(|e| AgentError::Crypto(format!("CSR: {e}")))?;
        let der = der::Encode::to_der(&csr).map_err(|e| AgentError::Crypto(e.to_string()))?;
        // Check our own work before it leaves: proof of possession and the challenge.
        let parsed =
            esigd_pki::csr::parse_csr(&der).map_err(|e| AgentError::Crypto(format!("CSR: {e}")))?;
        if parsed.challenge_password().ok().flatten().as_deref() != Some(onboard.challenge.as_str())
        {
            return Err(AgentError::Crypto("CSR: challenge not carried".into()));
        }
        self.state.keys.push(KeyRecord {
            scd_key_id: onboard.scd_key_id,
            label,
            key_handle: None,
            certificate: None,
        });
        self.finish(
            tx,
            Outcome::Ok,
            Some(&review.interaction),
            None,
            (None, Some(STANDARD.encode(der))),
            now,
        )
    }

    fn approve_signing(
        &mut self,
        tx: &Transaction,
        review: &Review,
        pin: &SecretString,
        now: SystemTime,
    ) -> Result<TransactionResult, AgentError> {
        let sign = tx
            .sign
            .as_ref()
            .ok_or_else(|| AgentError::Refused("the request is incomplete".into()))?;
        let label = self
            .key_for_handle(&sign.key_handle)
            .map(|k| k.label.clone())
            .ok_or_else(|| AgentError::Refused("unknown key".into()))?;
        let hash = sign.signature_algorithm_parameters.hash_algorithm;
        let scheme = scheme_for(sign.signature_algorithm, hash)
            .ok_or_else(|| AgentError::Refused("unsupported signature algorithm".into()))?;
        let digest = Self::bound(tx)?;
        let sig = match self.token.sign_digest(pin, &label, scheme, &digest) {
            Ok(s) => s,
            Err(HsmError::PinRefused { .. }) => return self.wrong_pin(tx, review, now),
            Err(e) => return Err(e.into()),
        };
        self.state.wrong_pins = 0;
        crate::csr::verify_digest(&self.token.public_key(&label)?, &digest, &sig)?;
        self.finish(
            tx,
            Outcome::Ok,
            Some(&review.interaction),
            None,
            (Some(STANDARD.encode(sig)), None),
            now,
        )
    }

    /// Records the key handle the service gave the key made for transaction `tx` (answer to an
    /// onboarding result).
    pub fn set_key_handle(&mut self, tx: &str, key_handle: &str) -> Result<(), AgentError> {
        let suffix = &tx[..8.min(tx.len())];
        if let Some(k) = self
            .state
            .keys
            .iter_mut()
            .find(|k| k.key_handle.is_none() && k.label.ends_with(suffix))
        {
            k.key_handle = Some(key_handle.to_owned());
        }
        self.save()
    }

    /// Key handles still waiting for their certificate.
    pub fn keys_without_certificate(&self) -> Vec<String> {
        self.state
            .keys
            .iter()
            .filter(|k| k.certificate.is_none())
            .filter_map(|k| k.key_handle.clone())
            .collect()
    }

    /// Stores the certificate issued for `key_handle` on the token and in the state, after
    /// checking it certifies that key.
    pub fn store_certificate(
        &mut self,
        key_handle: &str,
        cert_der: &[u8],
    ) -> Result<(), AgentError> {
        let label = self
            .key_for_handle(key_handle)
            .map(|k| k.label.clone())
            .ok_or_else(|| AgentError::Refused("unknown key".into()))?;
        let cert = <x509_cert::Certificate as der::Decode>::from_der(cert_der)
            .map_err(|e| AgentError::Crypto(format!("certificate: {e}")))?;
        let spki = der::Encode::to_der(&cert.tbs_certificate.subject_public_key_info)
            .map_err(|e| AgentError::Crypto(e.to_string()))?;
        if spki != self.token.public_key(&label)?.spki_der() {
            return Err(AgentError::Crypto(
                "certificate: it certifies another key".into(),
            ));
        }
        let subject = der::Encode::to_der(&cert.tbs_certificate.subject)
            .map_err(|e| AgentError::Crypto(e.to_string()))?;
        self.token.store_certificate(&label, cert_der, &subject)?;
        if let Some(k) = self
            .state
            .keys
            .iter_mut()
            .find(|k| k.key_handle.as_deref() == Some(key_handle))
        {
            k.certificate = Some(STANDARD.encode(cert_der));
        }
        self.save()
    }

    /// The DER SubjectPublicKeyInfo of the key `key_handle` names, read from the token.
    pub fn public_key(&self, key_handle: &str) -> Result<Vec<u8>, AgentError> {
        let label = self
            .key_for_handle(key_handle)
            .map(|k| k.label.clone())
            .ok_or_else(|| AgentError::Refused("unknown key".into()))?;
        Ok(self.token.public_key(&label)?.spki_der().to_vec())
    }

    /// Wrong PINs in a row so far.
    pub fn wrong_pins(&self) -> u32 {
        self.state.wrong_pins
    }
}
