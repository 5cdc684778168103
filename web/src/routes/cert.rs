//! The citizen's certificates on the e-Service API (mutual TLS): `POST /v1/cert/create`
//! (workflow 9.2.1, [`esigd_service::onboarding`]), `GET /v1/cert/list` and
//! `PATCH /v1/cert/{certificateId}` ([`esigd_service::citizen_certs`]).
//!
//! The e-Service passes the citizen's token from the Identity BB in
//! `X-GovStack-AuthenticationToken`: an ID token (verified locally, as for signing) or an access
//! token (RFC 7662 introspection at the Identity BB, then userinfo). Either must have been issued
//! to the calling e-Service. The token identifies the owner; it is not spent (unlike a signature,
//! a certificate operation is not a one-shot use of a login).
//!
//! `POST /v1/cert/create` without `CSR` waits for the citizen's device: it answers when the
//! citizen has accepted on the device and the certificate is issued, or after
//! `scd.onboarding_timeout` (default 130 s) with 504. An e-Service's HTTP client must allow that
//! long. The work continues if the e-Service disconnects (the certificate is then listed by
//! `GET /v1/cert/list`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Value, json};

use esigd_ca::{CertState, StoredStatus};
use esigd_service::citizen_certs::{
    Action, CertError, CitizenCert, Filter, changed_state_name, state_name,
};
use esigd_service::onboarding::{Citizen, OnboardError, OnboardRequest};
use esigd_service::registry::Eservice;
use esigd_store::signatures::rfc3339;

use super::caller::{AUTH_TOKEN_HEADER, Caller, PAYMENT_TOKEN_HEADER};
use crate::error::ApiError;
use crate::observe::RequestId;
use crate::sign_input::check_request_timestamp;
use crate::state::WebState;

/// Largest CSR accepted (an RSA-4096 CSR in PEM is about 2 KiB).
pub const MAX_CSR_BYTES: usize = 16 * 1024;

/// `POST /v1/cert/create` body. Field names as in the contract; `pseodonym` (the contract's
/// spelling) and `pseudonym` are both accepted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[serde(rename = "CSR", default)]
    csr: Option<String>,
    #[serde(rename = "SCDType", default)]
    scd_type: Option<String>,
    #[serde(rename = "SCDRemoteId", default)]
    scd_remote_id: Option<String>,
    #[serde(rename = "SCDKeyId", default)]
    scd_key_id: Option<Value>,
    #[serde(default)]
    pseodonym: Option<String>,
    #[serde(default)]
    pseudonym: Option<String>,
    #[serde(rename = "requestTimestamp", default)]
    request_timestamp: Option<String>,
}

/// `PATCH /v1/cert/{certificateId}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    #[serde(rename = "requestTimestamp", default)]
    request_timestamp: Option<String>,
    status: Option<PatchStatus>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchStatus {
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

fn rid(id: &Option<Extension<RequestId>>) -> String {
    id.as_ref()
        .map(|Extension(r)| r.0.clone())
        .unwrap_or_default()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn json_error(e: serde_json::Error) -> ApiError {
    // serde's message names the field; line and column only, never the input.
    let what = match e.classify() {
        serde_json::error::Category::Data => {
            let m = e.to_string();
            m.split(" at line")
                .next()
                .unwrap_or("")
                .chars()
                .take(120)
                .collect()
        }
        _ => format!("not valid JSON (line {}, column {})", e.line(), e.column()),
    };
    ApiError::bad(format!("body: {what}"))
}

/// The citizen behind the request's token, for `eservice`.
async fn citizen(
    st: &WebState,
    eservice: &Eservice,
    headers: &HeaderMap,
) -> Result<Citizen, ApiError> {
    Ok(citizen_with_contact(st, eservice, headers).await?.0)
}

/// [`citizen`] and their e-mail / phone from the same claims (for notifications).
async fn citizen_with_contact(
    st: &WebState,
    eservice: &Eservice,
    headers: &HeaderMap,
) -> Result<(Citizen, Option<esigd_service::notify::Contact>), ApiError> {
    let token = header(headers, AUTH_TOKEN_HEADER).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "X-GovStack-AuthenticationToken header (the citizen's ID token or access token) is required",
        )
    })?;
    let provider = st.svc.identity.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no Identity BB is configured ([identity] section)",
        )
    })?;
    let (verified, _kind) = provider
        .verify_citizen_token(token, &eservice.id_token_audiences)
        .await
        .map_err(ApiError::identity)?;
    let contact = esigd_service::notify::Contact::from_claims(&verified.claims);
    Ok((
        Citizen {
            issuer: provider.config().issuer.clone(),
            identity: esigd_service::identity::map_claims(
                &provider.config().claims,
                &verified.claims,
            ),
            sub: verified.subject,
        },
        contact,
    ))
}

fn rate(eservice: &Eservice) -> Result<(), ApiError> {
    if eservice.rate_ok() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("rate limit of e-Service {} exceeded", eservice.id),
        )
        .retry(Duration::from_secs(1)))
    }
}

/// A CSR given as PEM or as base64 of the DER (the contract says base64 and shows PEM).
fn csr_der(text: &str) -> Result<Vec<u8>, ApiError> {
    let text = text.trim();
    if text.len() > MAX_CSR_BYTES {
        return Err(ApiError::bad(format!(
            "CSR: longer than {MAX_CSR_BYTES} bytes"
        )));
    }
    if text.starts_with("-----BEGIN") {
        return Ok(text.as_bytes().to_vec());
    }
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    B64.decode(compact.as_bytes())
        .map_err(|_| ApiError::bad("CSR: neither PEM nor base64 of a DER PKCS#10 request"))
}

fn key_id(v: Option<&Value>) -> Result<u32, ApiError> {
    let v =
        v.ok_or_else(|| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "SCDKeyId is required"))?;
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    n.and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| ApiError::bad("SCDKeyId: must be a non-negative whole number"))
}

/// The HTTP status of an onboarding failure (the API's, and the onboarding page's).
pub(crate) fn onboard_status(e: &OnboardError) -> StatusCode {
    match e {
        OnboardError::Invalid { .. } | OnboardError::NotServed(_) | OnboardError::BadCsr(_) => {
            StatusCode::BAD_REQUEST
        }
        OnboardError::UnknownDevice => StatusCode::NOT_FOUND,
        OnboardError::AlreadyOnboarded { .. } | OnboardError::PseudonymTaken => {
            StatusCode::CONFLICT
        }
        OnboardError::DeviceBusy { message, .. } if message.contains("too many") => {
            StatusCode::TOO_MANY_REQUESTS
        }
        OnboardError::DeviceBusy { .. } => StatusCode::CONFLICT,
        OnboardError::Refused | OnboardError::WrongVerificationCode => StatusCode::FORBIDDEN,
        OnboardError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        OnboardError::DeviceFailed(_) => StatusCode::BAD_GATEWAY,
        OnboardError::Identity(_) => StatusCode::UNPROCESSABLE_ENTITY,
        OnboardError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        OnboardError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<OnboardError> for ApiError {
    fn from(e: OnboardError) -> Self {
        let status = onboard_status(&e);
        let retry = match &e {
            OnboardError::DeviceBusy { retry_after, .. } => *retry_after,
            OnboardError::Unavailable(_) => Some(Duration::from_secs(5)),
            _ => None,
        };
        let err = ApiError::new(status, e.to_string());
        match retry {
            Some(d) => err.retry(d),
            None => err,
        }
    }
}

impl From<CertError> for ApiError {
    fn from(e: CertError) -> Self {
        let msg = e.to_string();
        match e {
            CertError::Invalid(_) => ApiError::bad(msg),
            CertError::NotFound => ApiError::new(StatusCode::NOT_FOUND, msg),
            CertError::Transition(_) => ApiError::new(StatusCode::CONFLICT, msg),
            CertError::NotServed | CertError::Unavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, msg)
            }
            CertError::Internal => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, msg),
        }
    }
}

enum CreateFailure {
    Payment(esigd_service::payment::PaymentError),
    Onboard(OnboardError),
}

/// `POST /v1/cert/create`.
pub(crate) async fn create(
    State(st): State<Arc<WebState>>,
    caller: Result<Caller, ApiError>,
    r: Option<Extension<RequestId>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let eservice = caller?.eservice()?.clone();
    rate(&eservice)?;
    let citizen = citizen(&st, &eservice, &headers).await?;
    let payment = esigd_service::payment::check(
        st.svc.payment.as_deref(),
        &eservice,
        header(&headers, PAYMENT_TOKEN_HEADER),
    )
    .await
    .map_err(|e| ApiError::payment(&eservice, e))?;
    let b: CreateBody = serde_json::from_slice(&body).map_err(json_error)?;
    check_request_timestamp(
        b.request_timestamp.as_deref(),
        st.svc.settings.limits.request_max_age,
    )?;
    let remote_id = b.scd_remote_id.ok_or_else(|| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "SCDRemoteId is required")
    })?;
    let req = OnboardRequest {
        citizen,
        scd_type: b.scd_type,
        pseudonym: b.pseudonym.or(b.pseodonym),
        scd_remote_id: remote_id,
        scd_key_id: key_id(b.scd_key_id.as_ref())?,
        eservice: Some(eservice.id.clone()),
        request_id: rid(&r),
    };
    let csr = b.csr.as_deref().map(csr_der).transpose()?;

    // The payment is used up before the work and given back if no certificate is made. The work
    // runs in its own task: a disconnecting e-Service does not cut it between issuing and
    // recording.
    let payments = st.svc.payment.clone();
    let flow = st.svc.onboarding.clone();
    let task = tokio::spawn(async move {
        esigd_service::payment::consume(payments.as_deref(), payment.as_ref())
            .await
            .map_err(CreateFailure::Payment)?;
        let result = match csr {
            Some(der) => flow.with_csr(req, &der).await,
            None => flow.onboard(req).await,
        };
        if result.is_err() {
            esigd_service::payment::release(payments.as_deref(), payment.as_ref()).await;
        }
        result.map_err(CreateFailure::Onboard)
    });
    let done = task
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "onboarding task failed"))?
        .map_err(|e| match e {
            CreateFailure::Onboard(e) => ApiError::from(e),
            CreateFailure::Payment(e) => ApiError::payment(&eservice, e),
        })?;
    Ok(axum::Json(json!({
        "certificateId": done.record.serial_hex(),
        "pseudonym": done.record.pseudonym,
        "certificate": done.certificate_pem,
        "responseTimestamp": rfc3339(SystemTime::now()),
        "status": {"code": "OK", "message": "Certificate generated successfully"},
    }))
    .into_response())
}

/// The contract's status message for a certificate.
pub fn status_message(c: &CitizenCert) -> String {
    match (c.state, c.cert.status) {
        (CertState::Revoked, StoredStatus::Revoked { since, .. }) => {
            format!("Certificate revoked on {}", rfc3339(since))
        }
        (CertState::Suspended, StoredStatus::Suspended { since }) => {
            format!("Certificate suspended on {}", rfc3339(since))
        }
        (CertState::Expired, _) => {
            format!("Certificate expired on {}", rfc3339(c.cert.not_after))
        }
        _ => format!("Certificate active until {}", rfc3339(c.cert.not_after)),
    }
}

/// One list entry.
pub fn cert_json(c: &CitizenCert) -> Value {
    // DER the CA made and stored; PEM encoding cannot fail short of a bug.
    let pem = esigd_pki::pem::to_pem("CERTIFICATE", &c.cert.der).unwrap_or_default();
    json!({
        "certificateId": c.cert.serial_hex(),
        "certificate": pem,
        "pseudonym": c.key.pseudonym,
        "SCDType": c.key.scd_type,
        "SCDKeyId": c.key.scd_key_id,
        "notBefore": rfc3339(c.cert.not_before),
        "notAfter": rfc3339(c.cert.not_after),
        "status": {"code": state_name(c.state), "message": status_message(c)},
    })
}

/// `GET /v1/cert/list?filter=`.
pub(crate) async fn list(
    State(st): State<Arc<WebState>>,
    caller: Result<Caller, ApiError>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let eservice = caller?.eservice()?.clone();
    rate(&eservice)?;
    let filter = match q.get("filter") {
        Some(f) => Filter::parse(f).map_err(ApiError::bad)?,
        None => Filter::All,
    };
    if let Some(other) = q.keys().find(|k| k.as_str() != "filter") {
        return Err(ApiError::bad(format!(
            "{}: unknown query parameter (only filter)",
            other.chars().take(32).collect::<String>()
        )));
    }
    let citizen = citizen(&st, &eservice, &headers).await?;
    let certs = st
        .svc
        .citizen_certs
        .list(&citizen.issuer, &citizen.sub, filter)
        .await?;
    Ok(axum::Json(Value::Array(certs.iter().map(cert_json).collect())).into_response())
}

/// `PATCH /v1/cert/{certificateId}`.
pub(crate) async fn patch(
    State(st): State<Arc<WebState>>,
    caller: Result<Caller, ApiError>,
    r: Option<Extension<RequestId>>,
    headers: HeaderMap,
    Path(certificate_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let eservice = caller?.eservice()?.clone();
    rate(&eservice)?;
    let (citizen, contact) = citizen_with_contact(&st, &eservice, &headers).await?;
    let b: PatchBody = serde_json::from_slice(&body).map_err(json_error)?;
    check_request_timestamp(
        b.request_timestamp.as_deref(),
        st.svc.settings.limits.request_max_age,
    )?;
    let status = b
        .status
        .ok_or_else(|| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "status is required"))?;
    let code = status.code.ok_or_else(|| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "status.code is required")
    })?;
    let action = Action::parse(&code).map_err(|m| ApiError::bad(format!("status.code: {m}")))?;
    let changed = st
        .svc
        .citizen_certs
        .change_notifying(
            &citizen.issuer,
            &citizen.sub,
            &certificate_id,
            action,
            status.message.as_deref(),
            &rid(&r),
            contact.as_ref(),
        )
        .await?;
    Ok(axum::Json(json!({
        "responseTimestamp": rfc3339(SystemTime::now()),
        "status": {
            "code": changed_state_name(changed.state),
            "message": status_message(&changed),
        },
    }))
    .into_response())
}
