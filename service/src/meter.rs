//! What the domain tells the metrics, without knowing how they are kept.
//!
//! The domain emits events through [`Meter`]; the Prometheus registry that implements it lives in
//! the web crate (`esigd_web::metrics::Metrics`), so the domain does not link prometheus.

use std::time::{Duration, Instant};

use esigd_ca::ProfileKind;
use esigd_hsm::HsmOp;
use esigd_tsa::Rejection;

/// A timed operation (`esigd_operation_duration_seconds{op}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `C_Sign` in the HSM, persistent or one-time key. Fed by the HSM observer; do not time it by hand.
    HsmSign,
    /// `C_GenerateKeyPair` in the HSM, persistent or ephemeral key. Fed by the HSM observer.
    HsmKeygen,
    /// Issuing one certificate (CSR check, lint, signing, storing).
    CaIssue,
    /// Answering one time-stamp request (clock gate, serial, signing).
    TsaStamp,
    /// One durable store write (a group-committed batch, as seen by one waiter).
    StoreWrite,
}

impl Op {
    /// Every operation, in label order.
    pub const ALL: [Op; 5] = [
        Op::HsmSign,
        Op::HsmKeygen,
        Op::CaIssue,
        Op::TsaStamp,
        Op::StoreWrite,
    ];

    /// The `op` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::HsmSign => "hsm_sign",
            Op::HsmKeygen => "hsm_keygen",
            Op::CaIssue => "ca_issue",
            Op::TsaStamp => "tsa_stamp",
            Op::StoreWrite => "store_write",
        }
    }

    /// The timed operation an HSM event belongs to, if it is one of the timed kinds.
    pub fn of_hsm(op: HsmOp) -> Option<Op> {
        match op {
            HsmOp::Sign | HsmOp::SignOneTime => Some(Op::HsmSign),
            HsmOp::GenerateKeyPair | HsmOp::GenerateEphemeral => Some(Op::HsmKeygen),
            HsmOp::Initialize
            | HsmOp::Login
            | HsmOp::OpenSession
            | HsmOp::FindKey
            | HsmOp::Destroy
            | HsmOp::GenerateSecretKey
            | HsmOp::Seal
            | HsmOp::Unseal
            | HsmOp::BlindIndex
            | HsmOp::DataObject => None,
        }
    }
}

/// The events the domain reports. Every method is cheap and callable from any thread.
pub trait Meter: Send + Sync {
    /// Records the duration of one operation.
    fn observe(&self, op: Op, d: Duration);
    /// Counts an error under a fixed kind (e.g. `"hsm_unavailable"`, `"store"`, `"bad_request"`).
    fn error(&self, kind: &'static str);
    /// Counts a created signature; `format` is a fixed name such as `"cades"`.
    fn signature_created(&self, format: &'static str);
    /// Counts an issued certificate.
    fn ca_issued(&self, profile: ProfileKind);
    /// Counts a granted time-stamp token.
    fn tsa_granted(&self);
    /// Counts a rejected time-stamp request under its kind.
    fn tsa_rejected(&self, rejection: &Rejection);
    /// Counts a time-stamp request that failed after the TSA granted it (e.g. `"audit_store"`).
    fn tsa_failed(&self, reason: &'static str);
    /// Counts a browser signing session that went back to the e-Service with `outcome`.
    fn signing_session_ended(&self, outcome: &str);
    /// A Remote SCD session (`kind`: `onboarding` or `signing`) ended with `end` (the
    /// `endResult` code, or `TIMEOUT`/`ERROR` when it did not end at the device) after `d`.
    fn scd_session_ended(&self, kind: &'static str, end: &'static str, d: Duration);
    /// A notification delivery attempt on `channel` (`webhook`, `email`, `sms`) ended; `ok`
    /// false counts a failure too (`esigd_notify_attempts_total`, `esigd_notify_failures_total`).
    fn notify_attempt(&self, _channel: &'static str, _ok: bool) {}
    /// Notifications waiting in the outbox now (`esigd_notify_outbox_depth`).
    fn notify_outbox_depth(&self, _depth: usize) {}
}

/// The `endResult` label of a Remote SCD session's ending.
pub fn end_label(end: Option<esigd_scd::api::EndResult>) -> &'static str {
    use esigd_scd::api::EndResult as E;
    match end {
        Some(E::Ok) => "OK",
        Some(E::UserRefused) => "USER_REFUSED",
        Some(E::UserRefusedInteraction) => "USER_REFUSED_INTERACTION",
        Some(E::Timeout) => "TIMEOUT",
        Some(E::WrongVc) => "WRONG_VC",
        Some(E::DocumentUnusable) => "DOCUMENT_UNUSABLE",
        Some(E::RequiredInteractionNotSupportedByApp) => {
            "REQUIRED_INTERACTION_NOT_SUPPORTED_BY_APP"
        }
        Some(E::ProtocolFailure) => "PROTOCOL_FAILURE",
        Some(E::ServerError) => "SERVER_ERROR",
        Some(E::RpCancelled) => "RP_CANCELLED",
        Some(E::Unknown) | None => "ERROR",
    }
}

/// A [`Meter`] that keeps nothing (tools and tests that do not look at metrics).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMeter;

impl Meter for NoMeter {
    fn observe(&self, _: Op, _: Duration) {}
    fn error(&self, _: &'static str) {}
    fn signature_created(&self, _: &'static str) {}
    fn ca_issued(&self, _: ProfileKind) {}
    fn tsa_granted(&self) {}
    fn tsa_rejected(&self, _: &Rejection) {}
    fn tsa_failed(&self, _: &'static str) {}
    fn signing_session_ended(&self, _: &str) {}
    fn scd_session_ended(&self, _: &'static str, _: &'static str, _: Duration) {}
}

/// Times one [`Op`]: the duration is recorded by [`Timer::finish`] or, if the timer is simply
/// dropped (early return, `?`), on drop. [`Timer::discard`] records nothing.
#[must_use = "a Timer records when finished or dropped; binding it to `_` records immediately"]
pub struct Timer<'a> {
    meter: &'a dyn Meter,
    op: Op,
    start: Instant,
    armed: bool,
}

impl std::fmt::Debug for Timer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer")
            .field("op", &self.op)
            .field("elapsed", &self.start.elapsed())
            .field("armed", &self.armed)
            .finish()
    }
}

impl<'a> Timer<'a> {
    /// Starts timing `op` on `meter`.
    pub fn start(meter: &'a dyn Meter, op: Op) -> Self {
        Timer {
            meter,
            op,
            start: Instant::now(),
            armed: true,
        }
    }

    /// Records the elapsed time now and returns it.
    pub fn finish(mut self) -> Duration {
        let d = self.start.elapsed();
        self.meter.observe(self.op, d);
        self.armed = false;
        d
    }

    /// Stops the timer without recording anything.
    pub fn discard(mut self) {
        self.armed = false;
    }
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.meter.observe(self.op, self.start.elapsed());
        }
    }
}
