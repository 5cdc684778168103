//! Metrics hooks. The registry lives in the appliance; the `hsm` crate only reports events.

use std::time::Duration;

/// The kinds of HSM operation that are timed and counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HsmOp {
    /// `C_Initialize` (first start or re-initialisation).
    Initialize,
    /// `C_Login`.
    Login,
    /// `C_OpenSession`.
    OpenSession,
    /// Finding a key by label/ID and reading its public part.
    FindKey,
    /// `C_Sign` with a persistent key.
    Sign,
    /// `C_Sign` with a one-time key.
    SignOneTime,
    /// `C_GenerateKeyPair` of a persistent (token) key.
    GenerateKeyPair,
    /// `C_GenerateKeyPair` of an ephemeral session key.
    GenerateEphemeral,
    /// `C_DestroyObject` of an ephemeral key.
    Destroy,
    /// `C_GenerateKey` of a persistent secret key.
    GenerateSecretKey,
    /// `C_Encrypt` with AES-GCM.
    Seal,
    /// `C_Decrypt` with AES-GCM.
    Unseal,
    /// `C_Sign` with HMAC-SHA-256.
    BlindIndex,
    /// Finding, reading, creating or updating a data object (`CKO_DATA`).
    DataObject,
}

impl HsmOp {
    /// A stable label for metrics (`esigd_hsm_operation_duration_seconds{op}`).
    pub fn as_str(self) -> &'static str {
        match self {
            HsmOp::Initialize => "initialize",
            HsmOp::Login => "login",
            HsmOp::OpenSession => "open_session",
            HsmOp::FindKey => "find_key",
            HsmOp::Sign => "sign",
            HsmOp::SignOneTime => "sign_one_time",
            HsmOp::GenerateKeyPair => "generate_key_pair",
            HsmOp::GenerateEphemeral => "generate_ephemeral",
            HsmOp::Destroy => "destroy",
            HsmOp::GenerateSecretKey => "generate_secret_key",
            HsmOp::Seal => "seal",
            HsmOp::Unseal => "unseal",
            HsmOp::BlindIndex => "blind_index",
            HsmOp::DataObject => "data_object",
        }
    }
}

/// Receives HSM events. All methods have empty defaults; implementations must be cheap and must
/// not call back into the HSM.
pub trait HsmObserver: Send + Sync + 'static {
    /// An operation finished; `error` is the PKCS#11 return value name on failure.
    fn operation(&self, op: HsmOp, elapsed: Duration, error: Option<&str>) {
        let _ = (op, elapsed, error);
    }
    /// A caller waited `wait` for a pooled session.
    fn checkout_wait(&self, wait: Duration) {
        let _ = wait;
    }
    /// Pool occupancy changed.
    fn sessions(&self, in_use: usize, idle: usize) {
        let _ = (in_use, idle);
    }
    /// The number of pre-generated one-time keys ready to use changed.
    fn one_time_keys_ready(&self, ready: usize) {
        let _ = ready;
    }
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl HsmObserver for NoopObserver {}
