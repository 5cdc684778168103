//! The one API error of the HTTP surfaces (e-Service API and admin socket), and the one mapping
//! from the domain's errors to status codes.
//!
//! The body is the GovStack contract's `{"status":{"code":"ERROR","message":"…"}}`; messages name
//! the field or header at fault and never echo tokens.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use esigd_ca::{CaError, StoreError};
use esigd_service::identity::IdentityError;
use esigd_service::payment::PaymentError;
use esigd_service::registry::Eservice;
use esigd_service::signing::onetime::{self, SignError};
use serde_json::json;

/// An API error: status, message and, for passing conditions, `Retry-After`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<Duration>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A 400 with `message`.
    pub fn bad(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Adds `Retry-After` (whole seconds, at least 1).
    pub fn retry(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// A refused payment: 503 when it cannot be checked now, else 402.
    pub fn payment(eservice: &Eservice, e: PaymentError) -> Self {
        match e {
            PaymentError::Unavailable(m) => {
                tracing::warn!(error = %m, "payment verification unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "payment verification is unavailable; retry shortly",
                )
            }
            other => {
                tracing::info!(reason = %other, eservice = %eservice.id, "payment token refused");
                ApiError::new(StatusCode::PAYMENT_REQUIRED, other.to_string())
            }
        }
    }

    /// A refused ID token (the contract's status codes): 401, 422 for claims that make no
    /// certificate subject, or 503 when the Identity BB cannot be reached.
    pub fn identity(e: IdentityError) -> Self {
        match e {
            IdentityError::Unavailable(m) => {
                tracing::warn!(error = %m, "identity provider unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the Identity BB cannot be reached; retry shortly",
                )
                .retry(Duration::from_secs(5))
            }
            IdentityError::Claims(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m),
            IdentityError::Reused => {
                tracing::info!("ID token refused: already used");
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "X-GovStack-AuthenticationToken: ID token already used (an ID token makes one signature; log the user in again)",
                )
            }
            IdentityError::Store(m) => {
                tracing::error!(error = %m, "the single-use record of ID tokens is unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ID tokens cannot be checked for reuse now; retry shortly",
                )
                .retry(Duration::from_secs(5))
            }
            other => {
                tracing::info!(reason = %other, "ID token refused");
                ApiError::new(StatusCode::UNAUTHORIZED, other.to_string())
            }
        }
    }

    /// A CA failure; `field` names the request part the input-related failures are about.
    pub fn ca(field: &str, e: CaError) -> Self {
        let msg = e.to_string();
        match e {
            e if e.is_signer_failure() => {
                tracing::error!(error = %e, "the CA signer failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the CA key (HSM) is unavailable",
                )
            }
            CaError::Pki(esigd_pki::X509Error::Identity { .. }) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("claims: {msg}"))
            }
            CaError::Pki(_) => ApiError::bad(format!("{field}: {msg}")),
            CaError::Lint { .. } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, msg),
            CaError::Transition { .. } => ApiError::new(StatusCode::CONFLICT, msg),
            CaError::NotFound(_) | CaError::Store(StoreError::NotFound(_)) => {
                ApiError::new(StatusCode::NOT_FOUND, msg)
            }
            CaError::Store(StoreError::Conflict(_)) => ApiError::new(StatusCode::CONFLICT, msg),
            CaError::Store(_) => {
                tracing::error!(error = %msg, "certificate store failure");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, msg)
            }
            _ => {
                tracing::error!(error = %msg, "CA failure");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, msg)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            axum::Json(json!({"status": {"code": "ERROR", "message": self.message}})),
        )
            .into_response();
        if let Some(after) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

impl From<SignError> for ApiError {
    fn from(e: SignError) -> Self {
        match e {
            SignError::Busy | SignError::Unavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                    .retry(onetime::RETRY_AFTER)
            }
            SignError::Identity(m) | SignError::Request(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m)
            }
            SignError::Internal => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}
