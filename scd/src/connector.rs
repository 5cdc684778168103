//! The connector trait: how the appliance drives one kind of Remote SCD provider.
//!
//! The appliance's onboarding and SCD-signing workflows speak only this trait. The reference
//! implementation speaks RSCD API v1 over mutual TLS; a Smart-ID v3 adapter
//! (`REMOTE_SCD_SMARTID`) maps `start_signature` onto `POST /v3/signature/notification/document/
//! {documentNumber}` and `poll_session` onto `GET /v3/session/{id}`, and reports onboarding as
//! unsupported (Smart-ID issues its own certificates).
//!
//! Methods return boxed futures so the trait can be used as `Arc<dyn RemoteScdConnector>`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::api::{
    CertificateDelivery, KeyStatusChange, OnboardingRequest, SessionCreated, SessionStatus,
    SignatureRequest,
};
use crate::problem::Problem;

/// A `Send` future borrowed from the connector.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a call to the Remote SCD service failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// No answer: connection, TLS (including a server key that is not the pinned one) or timeout.
    #[error("Remote SCD service unreachable: {0}")]
    Transport(String),
    /// The service answered with an error status (and a problem document when it sent one).
    #[error("Remote SCD service answered {status}{}", .problem.as_ref().and_then(|p| p.detail.as_deref()).map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        /// The HTTP status.
        status: u16,
        /// The RFC 9457 body, if it was one (boxed: keeps the error small).
        problem: Option<Box<Problem>>,
        /// `Retry-After`, for 429 and 503.
        retry_after: Option<Duration>,
    },
    /// The service's answer broke the protocol (unparsable body, wrong verification code, …).
    #[error("Remote SCD service broke the protocol: {0}")]
    Protocol(String),
    /// This provider does not offer the operation (e.g. onboarding at Smart-ID).
    #[error("not supported by this Remote SCD provider: {0}")]
    Unsupported(&'static str),
}

impl ConnectorError {
    /// True for 404: unknown device, key or session (shown to people as one uniform message).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ConnectorError::Status { status: 404, .. })
    }

    /// True for 409 `SESSION_IN_PROGRESS`: the key already has a running session.
    pub fn is_session_in_progress(&self) -> bool {
        matches!(self, ConnectorError::Status { status: 409, .. })
    }
}

/// One Remote SCD provider, as the appliance uses it.
pub trait RemoteScdConnector: Send + Sync {
    /// Starts onboarding on the device `scd_remote_id` of type `scd_type`.
    fn start_onboarding<'a>(
        &'a self,
        scd_type: &'a str,
        scd_remote_id: &'a str,
        req: &'a OnboardingRequest,
    ) -> BoxFuture<'a, Result<SessionCreated, ConnectorError>>;

    /// Starts a signing session for the key `key_handle`.
    fn start_signature<'a>(
        &'a self,
        key_handle: &'a str,
        req: &'a SignatureRequest,
    ) -> BoxFuture<'a, Result<SessionCreated, ConnectorError>>;

    /// Long-polls a session for up to `wait` (the service answers `RUNNING` at the end of it).
    fn poll_session<'a>(
        &'a self,
        session_id: &'a str,
        wait: Duration,
    ) -> BoxFuture<'a, Result<SessionStatus, ConnectorError>>;

    /// Cancels a running session (`RP_CANCELLED`).
    fn cancel<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<(), ConnectorError>>;

    /// Hands the certificate issued for a key to the service (the key becomes active).
    fn deliver_certificate<'a>(
        &'a self,
        key_handle: &'a str,
        delivery: &'a CertificateDelivery,
    ) -> BoxFuture<'a, Result<(), ConnectorError>>;

    /// Tells the service a key's new status (suspended, revoked, active again).
    fn set_key_status<'a>(
        &'a self,
        key_handle: &'a str,
        change: &'a KeyStatusChange,
    ) -> BoxFuture<'a, Result<(), ConnectorError>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::codes;

    #[test]
    fn status_errors_say_what_the_service_said() {
        let e = ConnectorError::Status {
            status: 409,
            problem: Some(Box::new(Problem::new(
                409,
                "Conflict",
                codes::SESSION_IN_PROGRESS,
                "a session is running for this key",
            ))),
            retry_after: None,
        };
        assert!(e.is_session_in_progress());
        assert_eq!(
            e.to_string(),
            "Remote SCD service answered 409: a session is running for this key"
        );
        let bare = ConnectorError::Status {
            status: 404,
            problem: None,
            retry_after: None,
        };
        assert!(bare.is_not_found());
        assert_eq!(bare.to_string(), "Remote SCD service answered 404");
    }
}
