//! The service's state and rules, without HTTP: devices, keys, sessions, replay and rate limits.
//!
//! Every method takes the time (`now`) and, where it draws random values, an RNG, so the rules are
//! tested without a clock or a network. Each change is applied through an [`Event`]; the events a
//! call produced are taken with [`Engine::take_events`] and written to the journal
//! ([`crate::journal`]) before the call is answered, and replaying the journal rebuilds the same
//! state after a restart.
//!
//! Rules (RSCD API v1, `scd/openapi/rscd-v1.yaml`):
//! * a session is visible to the relying party that started it only (another one gets 404);
//! * one running session per key, and one running onboarding per device (409);
//! * at most `push_limit` sessions per device in `push_window` (429 with Retry-After), against
//!   notification spam, since signing by pseudonym needs no login;
//! * an identical request from the same relying party within `idempotency` returns the same session;
//! * a device result is accepted once, within the user window, with a valid proof signed by the
//!   device-authentication key over exactly what was shown and signed;
//! * device calls carry a fresh, single-use `jti` and an `iat` within ±60 s; after a restart, only
//!   tokens made after the start are accepted (the `jti` set is not persisted).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use esigd_pki::keys::KeyKind;
use esigd_scd::api::{
    CertValue, CertificateDelivery, CertificateResponse, Curve, EndResult, KeySpec, KeyStatus,
    KeyStatusChange, OnboardingRequest, ResultDetails, SessionCreated, SessionResult, SessionState,
    SessionStatus, SignatureAlgorithm, SignatureProtocol, SignatureRequest, SignatureValue,
};
use esigd_scd::device::{
    DeviceRegistered, DeviceRegistration, OnboardDetails, Outcome, ProofClaims, SignDetails,
    Transaction, TransactionList, TransactionRef, TransactionResult, TransactionType,
};
use esigd_scd::problem::{Problem, codes};
use esigd_scd::pseudonym::Pseudonym;
use esigd_scd::session::{Phase, Session, Visible};
use esigd_scd::vc::Vc;
use esigd_scd::{ScdError, interactions, jws};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Limits and windows of the service.
#[derive(Debug, Clone)]
pub struct Config {
    /// Time the user has to answer on the device.
    pub user_window: Duration,
    /// Sessions one device may receive within `push_window`.
    pub push_limit: usize,
    /// The window of `push_limit`.
    pub push_window: Duration,
    /// An identical request within this time returns the same session.
    pub idempotency: Duration,
    /// Most registered devices (registration is open; this bounds the state).
    pub max_devices: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            user_window: esigd_scd::api::USER_WINDOW,
            push_limit: 5,
            push_window: Duration::from_secs(600),
            idempotency: Duration::from_secs(15),
            max_devices: 100_000,
        }
    }
}

/// Why a call was refused; maps to an HTTP status and an RFC 9457 problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// A field is wrong (400).
    #[error(transparent)]
    Invalid(#[from] ScdError),
    /// Unknown device, key or session, or not the caller's (404, one uniform message).
    #[error("not found")]
    NotFound,
    /// The key (or the device, for onboarding) already has a running session (409).
    #[error("a session is already running for this key")]
    SessionInProgress,
    /// The session has already completed (409).
    #[error("the session has already completed")]
    AlreadyComplete,
    /// The session's user window has passed (410).
    #[error("the session has expired")]
    Expired,
    /// Too many sessions for one device (429).
    #[error("too many requests for this device; retry after {} s", .retry_after.as_secs())]
    RateLimited {
        /// When a new session would be accepted.
        retry_after: Duration,
    },
    /// A device call without a valid, fresh signature (401).
    #[error("device call not authenticated: {0}")]
    Unauthenticated(String),
    /// The service is full (503).
    #[error("{0}")]
    Full(&'static str),
}

impl EngineError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            EngineError::Invalid(_) => 400,
            EngineError::Unauthenticated(_) => 401,
            EngineError::NotFound => 404,
            EngineError::SessionInProgress | EngineError::AlreadyComplete => 409,
            EngineError::Expired => 410,
            EngineError::RateLimited { .. } => 429,
            EngineError::Full(_) => 503,
        }
    }

    /// The problem document.
    pub fn problem(&self) -> Problem {
        match self {
            EngineError::Invalid(e) => Problem::from(e),
            EngineError::NotFound => Problem::new(
                404,
                "Not Found",
                codes::NOT_FOUND,
                "no such device, key or session",
            ),
            EngineError::SessionInProgress => Problem::new(
                409,
                "Conflict",
                codes::SESSION_IN_PROGRESS,
                self.to_string(),
            ),
            EngineError::AlreadyComplete => {
                Problem::new(409, "Conflict", codes::ALREADY_COMPLETE, self.to_string())
            }
            EngineError::Expired => Problem::new(410, "Gone", codes::EXPIRED, self.to_string()),
            EngineError::RateLimited { .. } => Problem::new(
                429,
                "Too Many Requests",
                codes::RATE_LIMITED,
                self.to_string(),
            ),
            EngineError::Unauthenticated(_) => {
                Problem::new(401, "Unauthorized", codes::NOT_PERMITTED, self.to_string())
            }
            EngineError::Full(_) => Problem::new(
                503,
                "Service Unavailable",
                codes::RATE_LIMITED,
                self.to_string(),
            ),
        }
    }
}

/// A change of state, as written to the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A device registered.
    DeviceRegistered {
        /// Its ID.
        device_id: String,
        /// What it sent.
        registration: DeviceRegistration,
    },
    /// A session started.
    SessionStarted(Box<SessionRecord>),
    /// The device fetched the session.
    SessionDelivered {
        /// The session.
        id: String,
        /// When (ms since the epoch).
        at_ms: u64,
    },
    /// The session completed (not written for `TIMEOUT`, which follows from the time).
    SessionCompleted {
        /// The session.
        id: String,
        /// When (ms since the epoch).
        at_ms: u64,
        /// The result.
        completed: Completed,
        /// The key created by an onboarding that ended `OK`.
        new_key: Option<NewKey>,
    },
    /// The relying party delivered a key's certificate (the key becomes active).
    CertificateDelivered {
        /// The key.
        key_handle: String,
        /// The certificate and chain.
        delivery: CertificateDelivery,
    },
    /// A key as it stands (written by compaction, whose onboarding session is gone).
    KeyRestored {
        /// The key.
        key: NewKey,
        /// Its status.
        status: KeyStatus,
        /// `true` while it waits for its certificate (then `status` is ignored).
        pending_certificate: bool,
        /// Its certificate, once delivered.
        certificate: Option<CertificateDelivery>,
    },
    /// The relying party changed a key's status.
    KeyStatusChanged {
        /// The key.
        key_handle: String,
        /// The new status.
        status: KeyStatus,
    },
}

/// A key created by onboarding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewKey {
    /// Its handle.
    pub key_handle: String,
    /// The device holding it.
    pub device_id: String,
    /// The device's key slot.
    pub scd_key_id: u32,
    /// DER SubjectPublicKeyInfo, standard base64.
    pub spki: String,
    /// The key type.
    pub key_spec: KeySpec,
}

/// How a session completed, with what the relying party reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completed {
    /// The end result.
    pub end_result: EndResult,
    /// The key.
    pub key_handle: Option<String>,
    /// Details of a refusal.
    pub details: Option<ResultDetails>,
    /// The signature of a signing session.
    pub signature: Option<SignatureValue>,
    /// The CSR of an onboarding session.
    pub csr: Option<String>,
    /// The interaction the device used.
    pub interaction_type_used: Option<String>,
    /// The device's proof.
    pub device_proof: Option<String>,
}

impl Completed {
    fn bare(end_result: EndResult, details: Option<ResultDetails>) -> Completed {
        Completed {
            end_result,
            key_handle: None,
            details,
            signature: None,
            csr: None,
            interaction_type_used: None,
            device_proof: None,
        }
    }
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// `sessionID` = `transactionId`.
    pub id: String,
    /// Onboarding or signing.
    pub kind: TransactionType,
    /// The relying party that started it (its client certificate's SHA-256).
    pub rp: String,
    /// The relying party's name, shown on the device.
    pub rp_name: String,
    /// The device.
    pub device_id: String,
    /// The interactions, as sent.
    pub interactions: String,
    /// The verification code.
    pub vc: Vc,
    /// Digest (signing) or challenge (onboarding), standard base64.
    pub bound: String,
    /// Signing details.
    pub sign: Option<SignDetails>,
    /// Onboarding details.
    pub onboard: Option<OnboardDetails>,
    /// Created (ms since the epoch).
    pub created_ms: u64,
    /// User window (ms).
    pub window_ms: u64,
    /// Hash of the request, for idempotency.
    pub request_hash: String,
}

struct Device {
    registration: DeviceRegistration,
    pushes: VecDeque<SystemTime>,
}

struct Key {
    device_id: String,
    scd_key_id: u32,
    spki: Vec<u8>,
    key_spec: KeySpec,
    status: KeyState,
    certificate: Option<CertificateDelivery>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyState {
    PendingCert,
    Active,
    Suspended,
    Revoked,
}

impl From<KeyStatus> for KeyState {
    fn from(s: KeyStatus) -> Self {
        match s {
            KeyStatus::Active => KeyState::Active,
            KeyStatus::Suspended => KeyState::Suspended,
            KeyStatus::Revoked => KeyState::Revoked,
        }
    }
}

struct Live {
    record: SessionRecord,
    timing: Session,
    completed: Option<Completed>,
    completed_ms: u64,
}

/// The service's state.
pub struct Engine {
    cfg: Config,
    started: SystemTime,
    devices: HashMap<String, Device>,
    keys: HashMap<String, Key>,
    spkis: HashMap<Vec<u8>, String>,
    sessions: HashMap<String, Live>,
    idempotency: HashMap<String, (String, SystemTime)>,
    jtis: BTreeMap<String, SystemTime>,
    events: Vec<Event>,
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn from_ms(v: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(v)
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn sha256_b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(data))
}

fn uuid_v4(rng: &mut impl CryptoRngCore) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn key_matches(spec: KeySpec, kind: KeyKind) -> bool {
    match (spec, kind) {
        (KeySpec::Ec { curve: Curve::P256 }, KeyKind::EcdsaP256) => true,
        (KeySpec::Ec { curve: Curve::P384 }, KeyKind::EcdsaP384) => true,
        (KeySpec::Rsa { size }, KeyKind::Rsa { bits }) => size as usize == bits,
        _ => false,
    }
}

impl Engine {
    /// An empty service started at `now`.
    pub fn new(cfg: Config, now: SystemTime) -> Engine {
        Engine {
            cfg,
            started: now,
            devices: HashMap::new(),
            keys: HashMap::new(),
            spkis: HashMap::new(),
            sessions: HashMap::new(),
            idempotency: HashMap::new(),
            jtis: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    /// The events produced since the last call, to be made durable before answering.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Applies an event (from a call, or from the journal at start).
    pub fn apply(&mut self, event: Event) {
        match &event {
            Event::DeviceRegistered {
                device_id,
                registration,
            } => {
                self.devices.insert(
                    device_id.clone(),
                    Device {
                        registration: registration.clone(),
                        pushes: VecDeque::new(),
                    },
                );
            }
            Event::SessionStarted(rec) => {
                let timing = Session::with_window(
                    from_ms(rec.created_ms),
                    Duration::from_millis(rec.window_ms),
                );
                if let Some(d) = self.devices.get_mut(&rec.device_id) {
                    d.pushes.push_back(from_ms(rec.created_ms));
                }
                self.idempotency.insert(
                    rec.request_hash.clone(),
                    (rec.id.clone(), from_ms(rec.created_ms)),
                );
                self.sessions.insert(
                    rec.id.clone(),
                    Live {
                        record: (**rec).clone(),
                        timing,
                        completed: None,
                        completed_ms: 0,
                    },
                );
            }
            Event::SessionDelivered { id, at_ms } => {
                if let Some(s) = self.sessions.get_mut(id) {
                    s.timing.deliver(from_ms(*at_ms));
                }
            }
            Event::SessionCompleted {
                id,
                at_ms,
                completed,
                new_key,
            } => {
                if let Some(s) = self.sessions.get_mut(id)
                    && s.timing
                        .complete(from_ms(*at_ms), completed.end_result)
                        .is_ok()
                {
                    s.completed = Some(completed.clone());
                    s.completed_ms = *at_ms;
                }
                if let Some(k) = new_key
                    && let Ok(spki) = STANDARD.decode(&k.spki)
                {
                    self.spkis.insert(spki.clone(), k.key_handle.clone());
                    self.keys.insert(
                        k.key_handle.clone(),
                        Key {
                            device_id: k.device_id.clone(),
                            scd_key_id: k.scd_key_id,
                            spki,
                            key_spec: k.key_spec,
                            status: KeyState::PendingCert,
                            certificate: None,
                        },
                    );
                }
            }
            Event::CertificateDelivered {
                key_handle,
                delivery,
            } => {
                if let Some(k) = self.keys.get_mut(key_handle) {
                    k.certificate = Some(delivery.clone());
                    if k.status == KeyState::PendingCert {
                        k.status = KeyState::Active;
                    }
                }
            }
            Event::KeyRestored {
                key,
                status,
                pending_certificate,
                certificate,
            } => {
                if let Ok(spki) = STANDARD.decode(&key.spki) {
                    self.spkis.insert(spki.clone(), key.key_handle.clone());
                    self.keys.insert(
                        key.key_handle.clone(),
                        Key {
                            device_id: key.device_id.clone(),
                            scd_key_id: key.scd_key_id,
                            spki,
                            key_spec: key.key_spec,
                            status: if *pending_certificate {
                                KeyState::PendingCert
                            } else {
                                KeyState::from(*status)
                            },
                            certificate: certificate.clone(),
                        },
                    );
                }
            }
            Event::KeyStatusChanged { key_handle, status } => {
                if let Some(k) = self.keys.get_mut(key_handle) {
                    k.status = KeyState::from(*status);
                }
            }
        }
        self.events.push(event);
    }

    /// Events applied from the journal are not written again.
    pub fn replayed(&mut self) {
        self.events.clear();
    }

    /// The current state as events, for [`crate::journal::Journal::compact`]: devices, keys, and
    /// the sessions still readable at `now`.
    pub fn snapshot(&mut self, now: SystemTime) -> Vec<Event> {
        self.sweep(now);
        let mut out = Vec::new();
        let mut devices: Vec<_> = self.devices.iter().collect();
        devices.sort_by(|a, b| a.0.cmp(b.0));
        for (id, d) in devices {
            out.push(Event::DeviceRegistered {
                device_id: id.clone(),
                registration: d.registration.clone(),
            });
        }
        let mut keys: Vec<_> = self.keys.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        for (handle, k) in keys {
            out.push(Event::KeyRestored {
                key: NewKey {
                    key_handle: handle.clone(),
                    device_id: k.device_id.clone(),
                    scd_key_id: k.scd_key_id,
                    spki: STANDARD.encode(&k.spki),
                    key_spec: k.key_spec,
                },
                status: match k.status {
                    KeyState::Suspended => KeyStatus::Suspended,
                    KeyState::Revoked => KeyStatus::Revoked,
                    KeyState::Active | KeyState::PendingCert => KeyStatus::Active,
                },
                pending_certificate: k.status == KeyState::PendingCert,
                certificate: k.certificate.clone(),
            });
        }
        let mut sessions: Vec<_> = self.sessions.values_mut().collect();
        sessions.sort_by_key(|s| s.record.created_ms);
        for s in sessions {
            out.push(Event::SessionStarted(Box::new(s.record.clone())));
            match s.timing.phase(now) {
                Phase::Created => {}
                Phase::Delivered => out.push(Event::SessionDelivered {
                    id: s.record.id.clone(),
                    at_ms: s.record.created_ms,
                }),
                Phase::Complete(_) => {
                    if let Some(c) = &s.completed {
                        out.push(Event::SessionCompleted {
                            id: s.record.id.clone(),
                            at_ms: s.completed_ms,
                            completed: c.clone(),
                            new_key: None,
                        });
                    }
                }
            }
        }
        out
    }

    /// Forgets what nobody can read any more: sessions past retention, idempotency entries and
    /// `jti`s past their windows.
    pub fn sweep(&mut self, now: SystemTime) {
        self.sessions
            .retain(|_, s| s.timing.visible(now) != Visible::Gone);
        let idem = self.cfg.idempotency;
        self.idempotency.retain(|_, (_, at)| *at + idem > now);
        self.jtis.retain(|_, exp| *exp > now);
        let window = self.cfg.push_window;
        for d in self.devices.values_mut() {
            while d.pushes.front().is_some_and(|t| *t + window <= now) {
                d.pushes.pop_front();
            }
        }
    }

    // ---- device API ----

    /// `POST /device/v1/devices`.
    pub fn register_device(
        &mut self,
        registration: DeviceRegistration,
        rng: &mut impl CryptoRngCore,
    ) -> Result<DeviceRegistered, EngineError> {
        registration.validate()?;
        if self.devices.len() >= self.cfg.max_devices {
            return Err(EngineError::Full(
                "the service has as many devices as it may hold",
            ));
        }
        // The device ID is what a citizen types on the onboarding page: the same readable,
        // unguessable format as pseudonyms (60 random bits).
        let device_id = loop {
            let id = Pseudonym::generate(rng).to_string();
            if !self.devices.contains_key(&id) {
                break id;
            }
        };
        self.apply(Event::DeviceRegistered {
            device_id: device_id.clone(),
            registration,
        });
        Ok(DeviceRegistered { device_id })
    }

    /// Checks a device call's `Authorization: DeviceJWS` token for `method` and `url`.
    pub fn authenticate(
        &mut self,
        device_id: &str,
        token: &str,
        method: &str,
        url: &str,
        now: SystemTime,
    ) -> Result<(), EngineError> {
        let device = self.devices.get(device_id).ok_or(EngineError::NotFound)?;
        let claims = jws::verify_call(token, &device.registration.device_auth_key)
            .map_err(|e| EngineError::Unauthenticated(e.to_string()))?;
        claims
            .check(method, url, device_id, unix(now))
            .map_err(|e| EngineError::Unauthenticated(e.to_string()))?;
        if claims.iat < unix(self.started) {
            return Err(EngineError::Unauthenticated(
                "iat: made before the service started; sign the call again".into(),
            ));
        }
        if self.jtis.contains_key(&claims.jti) {
            return Err(EngineError::Unauthenticated("jti: already used".into()));
        }
        let skew = esigd_scd::device::IAT_SKEW;
        self.jtis.insert(claims.jti, now + skew + skew);
        Ok(())
    }

    /// The device's running transactions, oldest first.
    pub fn pending(&mut self, device_id: &str, now: SystemTime) -> TransactionList {
        let mut list: Vec<(u64, TransactionRef)> = Vec::new();
        for s in self.sessions.values_mut() {
            if s.record.device_id == device_id && s.timing.is_running(now) {
                list.push((
                    s.record.created_ms,
                    TransactionRef {
                        transaction_id: s.record.id.clone(),
                        kind: s.record.kind,
                    },
                ));
            }
        }
        list.sort_by_key(|(t, _)| *t);
        TransactionList {
            transactions: list.into_iter().map(|(_, r)| r).collect(),
        }
    }

    /// `GET /device/v1/transactions/{id}`: the details, and the session becomes DELIVERED.
    pub fn transaction(
        &mut self,
        device_id: &str,
        id: &str,
        now: SystemTime,
    ) -> Result<Transaction, EngineError> {
        let s = self
            .sessions
            .get_mut(id)
            .filter(|s| s.record.device_id == device_id)
            .ok_or(EngineError::NotFound)?;
        let first = s.timing.phase(now) == Phase::Created;
        if !s.timing.deliver(now) {
            return Err(EngineError::Expired);
        }
        let r = &s.record;
        let tx = Transaction {
            transaction_id: r.id.clone(),
            kind: r.kind,
            rp_name: r.rp_name.clone(),
            interactions: r.interactions.clone(),
            vc: r.vc.clone(),
            expires_at: humantime::format_rfc3339_seconds(s.timing.deadline()).to_string(),
            sign: r.sign.clone(),
            onboard: r.onboard.clone(),
        };
        if first {
            self.apply(Event::SessionDelivered {
                id: id.to_owned(),
                at_ms: ms(now),
            });
        }
        Ok(tx)
    }

    /// `POST /device/v1/transactions/{id}/result`. Returns the new key's handle when an
    /// onboarding ends `OK` (the device keeps it to recognise later signing requests).
    pub fn submit_result(
        &mut self,
        device_id: &str,
        id: &str,
        result: TransactionResult,
        now: SystemTime,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Option<String>, EngineError> {
        let device = self.devices.get(device_id).ok_or(EngineError::NotFound)?;
        let jwk = device.registration.device_auth_key.clone();
        let s = self
            .sessions
            .get_mut(id)
            .filter(|s| s.record.device_id == device_id)
            .ok_or(EngineError::NotFound)?;
        match s.timing.phase(now) {
            Phase::Complete(EndResult::Timeout) if s.completed.is_none() => {
                return Err(EngineError::Expired);
            }
            Phase::Complete(_) => return Err(EngineError::AlreadyComplete),
            _ => {}
        }
        let rec = s.record.clone();
        result.validate(rec.kind)?;
        let proof = jws::verify_proof(&result.proof, &jwk)?;
        let bound = STANDARD
            .decode(&rec.bound)
            .map_err(|_| ScdError::invalid("bound", "corrupt session"))?;
        let expected = ProofClaims {
            transaction_id: rec.id.clone(),
            kind: rec.kind,
            bound_sha256: sha256_b64url(&bound),
            vc: rec.vc.value.clone(),
            interactions_sha256: URL_SAFE_NO_PAD.encode(interactions::digest(&rec.interactions)),
            outcome: result.outcome,
            iat: proof.iat,
        };
        if proof != expected {
            return Err(ScdError::invalid(
                "proof",
                "does not cover this transaction, its code, interactions and outcome",
            )
            .into());
        }
        if let Some(used) = &result.interaction_type_used {
            let offered = interactions::decode(&rec.interactions)?;
            if !offered.iter().any(|i| i.kind() == used) {
                return Err(ScdError::invalid(
                    "interactionTypeUsed",
                    "not one of the interactions requested",
                )
                .into());
            }
        }
        let mut completed = Completed::bare(result.outcome.into(), result.details.clone());
        completed.interaction_type_used = result.interaction_type_used.clone();
        completed.device_proof = Some(result.proof.clone());
        let mut new_key = None;
        if result.outcome == Outcome::Ok {
            match rec.kind {
                TransactionType::Onboard => {
                    let (key, csr) = self.check_csr(&rec, &result, rng)?;
                    completed.key_handle = Some(key.key_handle.clone());
                    completed.csr = Some(csr);
                    new_key = Some(key);
                }
                TransactionType::Sign => {
                    let sign = rec
                        .sign
                        .as_ref()
                        .ok_or(ScdError::invalid("sign", "corrupt session"))?;
                    completed.key_handle = Some(sign.key_handle.clone());
                    completed.signature = Some(SignatureValue {
                        value: result.signature.clone().unwrap_or_default(),
                        signature_algorithm: sign.signature_algorithm,
                        signature_algorithm_parameters: sign.signature_algorithm_parameters,
                    });
                }
            }
        } else if rec.kind == TransactionType::Sign {
            completed.key_handle = rec.sign.as_ref().map(|s| s.key_handle.clone());
        }
        let handle = new_key.as_ref().map(|k| k.key_handle.clone());
        self.apply(Event::SessionCompleted {
            id: id.to_owned(),
            at_ms: ms(now),
            completed,
            new_key,
        });
        Ok(handle)
    }

    /// Onboarding result: the CSR must verify (proof of possession), carry the session's challenge,
    /// hold a key of the requested type, and a key not seen before.
    fn check_csr(
        &self,
        rec: &SessionRecord,
        result: &TransactionResult,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(NewKey, String), EngineError> {
        let onboard = rec
            .onboard
            .as_ref()
            .ok_or(ScdError::invalid("onboard", "corrupt session"))?;
        let b64 = result.csr.clone().unwrap_or_default();
        let der = STANDARD
            .decode(&b64)
            .map_err(|_| ScdError::invalid("csr", "not standard base64"))?;
        let csr =
            esigd_pki::csr::parse_csr(&der).map_err(|e| ScdError::invalid("csr", e.to_string()))?;
        let challenge = csr
            .challenge_password()
            .map_err(|e| ScdError::invalid("csr", e.to_string()))?;
        if challenge.as_deref() != Some(onboard.challenge.as_str()) {
            return Err(ScdError::invalid(
                "csr",
                "challengePassword is not this session's challenge",
            )
            .into());
        }
        if !key_matches(onboard.key_spec, csr.key) {
            return Err(ScdError::invalid(
                "csr",
                format!("holds a {} key, not the one requested", csr.key),
            )
            .into());
        }
        let spki = der::Encode::to_der(csr.public_key())
            .map_err(|e| ScdError::invalid("csr", e.to_string()))?;
        if self.spkis.contains_key(&spki) {
            return Err(ScdError::invalid("csr", "this key is already registered").into());
        }
        let mut h = [0u8; 16];
        rng.fill_bytes(&mut h);
        Ok((
            NewKey {
                key_handle: URL_SAFE_NO_PAD.encode(h),
                device_id: rec.device_id.clone(),
                scd_key_id: onboard.scd_key_id,
                spki: STANDARD.encode(&spki),
                key_spec: onboard.key_spec,
            },
            b64,
        ))
    }

    /// `GET /device/v1/keys/{keyHandle}/certificate`.
    pub fn device_certificate(
        &self,
        device_id: &str,
        key_handle: &str,
    ) -> Result<CertValue, EngineError> {
        self.keys
            .get(key_handle)
            .filter(|k| k.device_id == device_id)
            .and_then(|k| k.certificate.as_ref())
            .map(|c| CertValue {
                value: c.certificate.clone(),
            })
            .ok_or(EngineError::NotFound)
    }

    // ---- relying-party API ----

    fn throttle(&mut self, device_id: &str, now: SystemTime) -> Result<(), EngineError> {
        let window = self.cfg.push_window;
        let limit = self.cfg.push_limit;
        let d = self
            .devices
            .get_mut(device_id)
            .ok_or(EngineError::NotFound)?;
        while d.pushes.front().is_some_and(|t| *t + window <= now) {
            d.pushes.pop_front();
        }
        if d.pushes.len() >= limit {
            let oldest = d.pushes.front().copied().unwrap_or(now);
            let retry_after = (oldest + window)
                .duration_since(now)
                .unwrap_or(Duration::from_secs(1))
                .max(Duration::from_secs(1));
            return Err(EngineError::RateLimited { retry_after });
        }
        Ok(())
    }

    fn idempotent(&mut self, hash: &str, now: SystemTime) -> Option<SessionCreated> {
        let (id, at) = self.idempotency.get(hash)?;
        if *at + self.cfg.idempotency <= now {
            return None;
        }
        let s = self.sessions.get(id)?;
        Some(SessionCreated {
            session_id: s.record.id.clone(),
            vc: s.record.vc.clone(),
        })
    }

    fn request_hash(rp: &str, path: &str, body: &impl Serialize) -> String {
        let json = serde_json::to_vec(body).unwrap_or_default();
        let mut h = Sha256::new();
        h.update(rp.as_bytes());
        h.update([0]);
        h.update(path.as_bytes());
        h.update([0]);
        h.update(&json);
        URL_SAFE_NO_PAD.encode(h.finalize())
    }

    /// `POST /scd/v1/onboarding/device/{scdType}/{scdRemoteId}` from relying party `rp`.
    pub fn start_onboarding(
        &mut self,
        rp: &str,
        scd_type: &str,
        device_id: &str,
        req: &OnboardingRequest,
        now: SystemTime,
        rng: &mut impl CryptoRngCore,
    ) -> Result<SessionCreated, EngineError> {
        let challenge = req.validate()?;
        let hash = Self::request_hash(rp, &format!("onboarding/{scd_type}/{device_id}"), req);
        if let Some(same) = self.idempotent(&hash, now) {
            return Ok(same);
        }
        if !self.devices.contains_key(device_id) {
            return Err(EngineError::NotFound);
        }
        let busy = self.sessions.values_mut().any(|s| {
            s.record.device_id == device_id
                && s.record.kind == TransactionType::Onboard
                && s.timing.is_running(now)
        });
        if busy {
            return Err(EngineError::SessionInProgress);
        }
        self.throttle(device_id, now)?;
        let id = uuid_v4(rng);
        let vc = Vc::issue(&id, &challenge, rng);
        let record = SessionRecord {
            id: id.clone(),
            kind: TransactionType::Onboard,
            rp: rp.to_owned(),
            rp_name: req.relying_party_name.clone(),
            device_id: device_id.to_owned(),
            interactions: req.interactions.clone(),
            vc: vc.clone(),
            bound: req.challenge.clone(),
            sign: None,
            onboard: Some(OnboardDetails {
                scd_key_id: req.scd_key_id,
                key_spec: req.key_spec,
                challenge: req.challenge.clone(),
                subject_hint: req.subject.display_name.clone(),
            }),
            created_ms: ms(now),
            window_ms: self.cfg.user_window.as_millis() as u64,
            request_hash: hash,
        };
        self.apply(Event::SessionStarted(Box::new(record)));
        Ok(SessionCreated { session_id: id, vc })
    }

    /// `POST /scd/v1/signature/key/{keyHandle}` from relying party `rp`.
    pub fn start_signature(
        &mut self,
        rp: &str,
        key_handle: &str,
        req: &SignatureRequest,
        now: SystemTime,
        rng: &mut impl CryptoRngCore,
    ) -> Result<SessionCreated, EngineError> {
        let digest = req.validate()?;
        let hash = Self::request_hash(rp, &format!("signature/{key_handle}"), req);
        if let Some(same) = self.idempotent(&hash, now) {
            return Ok(same);
        }
        let key = self.keys.get(key_handle).ok_or(EngineError::NotFound)?;
        let alg = req.signature_protocol_parameters.signature_algorithm;
        let ec = matches!(key.key_spec, KeySpec::Ec { .. });
        if ec != (alg == SignatureAlgorithm::Ecdsa) {
            return Err(ScdError::invalid(
                "signatureProtocolParameters.signatureAlgorithm",
                "does not fit the key's type",
            )
            .into());
        }
        let unusable = match key.status {
            KeyState::Active => None,
            KeyState::Suspended => Some("KEY_SUSPENDED"),
            KeyState::Revoked | KeyState::PendingCert => Some("KEY_NOT_FOUND"),
        };
        let device_id = key.device_id.clone();
        let busy = self.sessions.values_mut().any(|s| {
            s.record
                .sign
                .as_ref()
                .is_some_and(|x| x.key_handle == key_handle)
                && s.timing.is_running(now)
        });
        if busy {
            return Err(EngineError::SessionInProgress);
        }
        self.throttle(&device_id, now)?;
        let id = uuid_v4(rng);
        let vc = Vc::issue(&id, &digest, rng);
        let p = &req.signature_protocol_parameters;
        let record = SessionRecord {
            id: id.clone(),
            kind: TransactionType::Sign,
            rp: rp.to_owned(),
            rp_name: req.relying_party_name.clone(),
            device_id,
            interactions: req.interactions.clone(),
            vc: vc.clone(),
            bound: p.digest.clone(),
            sign: Some(SignDetails {
                key_handle: key_handle.to_owned(),
                digest: p.digest.clone(),
                signature_algorithm: p.signature_algorithm,
                signature_algorithm_parameters: p.signature_algorithm_parameters,
            }),
            onboard: None,
            created_ms: ms(now),
            window_ms: self.cfg.user_window.as_millis() as u64,
            request_hash: hash,
        };
        self.apply(Event::SessionStarted(Box::new(record)));
        if let Some(reason) = unusable {
            // The key cannot sign: the session ends at once, as Smart-ID ends it for a suspended
            // document, without a push to the device.
            let mut done = Completed::bare(
                EndResult::DocumentUnusable,
                Some(ResultDetails {
                    interaction: None,
                    reason: Some(reason.into()),
                }),
            );
            done.key_handle = Some(key_handle.to_owned());
            self.apply(Event::SessionCompleted {
                id: id.clone(),
                at_ms: ms(now),
                completed: done,
                new_key: None,
            });
        }
        Ok(SessionCreated { session_id: id, vc })
    }

    /// `GET /scd/v1/session/{id}` (one read; the HTTP layer repeats it for the long poll).
    pub fn status(
        &mut self,
        rp: &str,
        id: &str,
        now: SystemTime,
    ) -> Result<SessionStatus, EngineError> {
        let s = self
            .sessions
            .get_mut(id)
            .filter(|s| s.record.rp == rp)
            .ok_or(EngineError::NotFound)?;
        match s.timing.visible(now) {
            Visible::Gone => Err(EngineError::NotFound),
            Visible::Running => Ok(SessionStatus::running()),
            Visible::Complete(end) => {
                let c = s
                    .completed
                    .clone()
                    .unwrap_or_else(|| Completed::bare(end, None));
                let signing = s.record.kind == TransactionType::Sign;
                Ok(SessionStatus {
                    state: SessionState::Complete,
                    result: Some(SessionResult {
                        end_result: end,
                        key_handle: c.key_handle,
                        details: c.details,
                    }),
                    signature_protocol: signing.then_some(SignatureProtocol::RawDigestSignature),
                    signature: c.signature,
                    csr: c.csr,
                    cert: None,
                    interaction_type_used: c.interaction_type_used,
                    device_proof: c.device_proof,
                })
            }
        }
    }

    /// `POST /scd/v1/session/{id}/cancel`.
    pub fn cancel(&mut self, rp: &str, id: &str, now: SystemTime) -> Result<(), EngineError> {
        let s = self
            .sessions
            .get_mut(id)
            .filter(|s| s.record.rp == rp)
            .ok_or(EngineError::NotFound)?;
        if !s.timing.is_running(now) {
            return Err(EngineError::AlreadyComplete);
        }
        self.apply(Event::SessionCompleted {
            id: id.to_owned(),
            at_ms: ms(now),
            completed: Completed::bare(EndResult::RpCancelled, None),
            new_key: None,
        });
        Ok(())
    }

    /// `POST /scd/v1/keys/{keyHandle}/certificate`: the certificate must certify the key's own
    /// public key.
    pub fn deliver_certificate(
        &mut self,
        key_handle: &str,
        delivery: CertificateDelivery,
    ) -> Result<(), EngineError> {
        let key = self.keys.get(key_handle).ok_or(EngineError::NotFound)?;
        if key.status == KeyState::Revoked {
            return Err(ScdError::invalid("certificate", "the key is revoked").into());
        }
        let der = STANDARD
            .decode(&delivery.certificate)
            .map_err(|_| ScdError::invalid("certificate", "not standard base64"))?;
        let cert = <x509_cert::Certificate as der::Decode>::from_der(&der)
            .map_err(|e| ScdError::invalid("certificate", format!("not a DER certificate: {e}")))?;
        let spki = der::Encode::to_der(&cert.tbs_certificate.subject_public_key_info)
            .map_err(|e| ScdError::invalid("certificate", e.to_string()))?;
        if spki != key.spki {
            return Err(ScdError::invalid(
                "certificate",
                "certifies another public key than this key's",
            )
            .into());
        }
        self.apply(Event::CertificateDelivered {
            key_handle: key_handle.to_owned(),
            delivery,
        });
        Ok(())
    }

    /// `POST /scd/v1/signature/certificate/{keyHandle}`.
    pub fn certificate(&self, key_handle: &str) -> Result<CertificateResponse, EngineError> {
        let key = self.keys.get(key_handle).ok_or(EngineError::NotFound)?;
        Ok(match (&key.certificate, key.status) {
            (Some(c), KeyState::Active) => CertificateResponse {
                state: "OK".into(),
                cert: Some(CertValue {
                    value: c.certificate.clone(),
                }),
            },
            _ => CertificateResponse {
                state: "DOCUMENT_UNUSABLE".into(),
                cert: None,
            },
        })
    }

    /// `POST /scd/v1/keys/{keyHandle}/status`: revoked is final; a key without a certificate
    /// cannot become active.
    pub fn set_key_status(
        &mut self,
        key_handle: &str,
        change: &KeyStatusChange,
    ) -> Result<(), EngineError> {
        let key = self.keys.get(key_handle).ok_or(EngineError::NotFound)?;
        match (key.status, change.status) {
            (KeyState::Revoked, KeyStatus::Active | KeyStatus::Suspended) => {
                return Err(ScdError::invalid("status", "the key is revoked for good").into());
            }
            (KeyState::PendingCert, KeyStatus::Active | KeyStatus::Suspended) => {
                return Err(ScdError::invalid("status", "the key has no certificate yet").into());
            }
            _ => {}
        }
        self.apply(Event::KeyStatusChanged {
            key_handle: key_handle.to_owned(),
            status: change.status,
        });
        Ok(())
    }

    /// The device slot of a key (for logs and tests).
    pub fn key_slot(&self, key_handle: &str) -> Option<(String, u32)> {
        self.keys
            .get(key_handle)
            .map(|k| (k.device_id.clone(), k.scd_key_id))
    }
}
