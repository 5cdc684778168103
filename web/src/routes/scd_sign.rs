//! Workflow 9.2.2 on the e-Service API (mutual TLS): `GET /v1/token/pseodonym/{pseudonym}`
//! (also `/v1/token/pseudonym/…`), `POST /v1/sign/pseudonym` with `X-Pseodonym-Token` (also
//! `X-Pseudonym-Token`), and the pending answers of `GET /v1/sign/response/{signatureId}`
//! ([`pending_answer`]).
//!
//! `POST /v1/sign/pseudonym` answers at once with `{signatureId, nonce, state}` (the citizen
//! answers on their device later); `GET /v1/sign/response/{signatureId}` then says 202 with
//! `Retry-After` while the device has not answered (with `?timeoutMs=` it waits up to that long
//! for the answer first), and the signature or the reason there is none after that.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use esigd_service::scd::TokenError;
use esigd_service::signing::scd::{
    Failure, ScdSignError, ScdSignRequest, Status, canonical_pseudonym,
};
use esigd_store::signatures::rfc3339;

use super::caller::Caller;
use crate::error::ApiError;
use crate::observe::RequestId;
use crate::sign_input::SignBody;
use crate::state::WebState;

/// The contract's header (its spelling) and the correct one.
const TOKEN_HEADERS: [&str; 2] = ["x-pseodonym-token", "x-pseudonym-token"];
/// Longest `nonce` / `state` echoed back.
const MAX_ECHO: usize = 512;
/// Longest wait of `GET /v1/sign/response/{id}?timeoutMs=`.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

fn rid(id: &Option<Extension<RequestId>>) -> String {
    id.as_ref()
        .map(|Extension(r)| r.0.clone())
        .unwrap_or_default()
}

impl From<ScdSignError> for ApiError {
    fn from(e: ScdSignError) -> Self {
        let msg = e.to_string();
        match e {
            ScdSignError::Invalid { .. } => ApiError::bad(msg),
            ScdSignError::NotActive(_) => ApiError::new(StatusCode::CONFLICT, msg),
            ScdSignError::NotServed(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, msg),
            ScdSignError::Busy(m) if m.contains("scd.max_pending") => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m).retry(Duration::from_secs(5))
            }
            ScdSignError::Busy(m) => ApiError::new(StatusCode::CONFLICT, m),
            ScdSignError::RateLimited(wait) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, msg).retry(wait)
            }
            ScdSignError::Unavailable(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m).retry(Duration::from_secs(5))
            }
            ScdSignError::Internal => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, msg),
        }
    }
}

fn token_error(e: TokenError) -> ApiError {
    match e {
        TokenError::Full | TokenError::Hsm => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                .retry(Duration::from_secs(1))
        }
        other => ApiError::new(StatusCode::UNAUTHORIZED, other.to_string()),
    }
}

/// `GET /v1/token/pseodonym/{pseudonym}`: `{"jwt": …}`, valid 120 s, once, for this e-Service.
/// A pseudonym that names no key gets a token too (which pseudonyms exist is not told).
pub(crate) async fn token(
    State(st): State<Arc<WebState>>,
    caller: Caller,
    Path(pseudonym): Path<String>,
) -> Result<Response, ApiError> {
    let eservice = caller.eservice()?.clone();
    let tokens = st.svc.pseudonym_tokens.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no Remote SCD service is configured on this appliance ([scd])",
        )
    })?;
    let p = canonical_pseudonym(&pseudonym)?;
    let id = eservice.id.clone();
    let jwt = tokio::task::spawn_blocking(move || tokens.issue(&p, &id))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?
        .map_err(token_error)?;
    Ok(axum::Json(json!({ "jwt": jwt })).into_response())
}

/// `POST /v1/sign/pseudonym` body: the signing fields plus `nonce` and `state`.
#[derive(Debug, Deserialize)]
struct PseudonymBody {
    #[serde(flatten)]
    sign: SignBody,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    state: Option<String>,
    /// Where the pseudonym page sends the browser back (esigd addition: the contract's 302
    /// carries it, its body does not).
    #[serde(rename = "callbackUrl", default)]
    callback_url: Option<String>,
}

/// `302` to `/v1/sign/interactivePseudonym` with the request's fields.
fn redirect_to_page(
    b: &SignBody,
    nonce: Option<String>,
    state: Option<String>,
    callback: Option<String>,
) -> Response {
    use base64::Engine;
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("format", b.format.clone()),
        ("hash", b.hash.clone()),
        ("hashType", b.hash_type.clone()),
        (
            "dataToBeDisplayed",
            b.data_to_be_displayed
                .as_ref()
                .map(|d| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_bytes())),
        ),
        ("requestTimestamp", b.request_timestamp.clone()),
        ("nonce", nonce),
        ("state", state),
        ("callbackUrl", callback),
    ] {
        if let Some(v) = v {
            q.append_pair(k, &v);
        }
    }
    for d in b.documents.iter().flatten() {
        q.append_pair("doc", &crate::sign_input::redirect_document_value(d));
    }
    let location = format!("/v1/sign/interactivePseudonym?{}", q.finish());
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn echo(name: &str, v: Option<String>) -> Result<Option<String>, ApiError> {
    match v {
        Some(v) if v.len() > MAX_ECHO || v.chars().any(char::is_control) => Err(ApiError::bad(
            format!("{name}: at most {MAX_ECHO} bytes, no control characters"),
        )),
        other => Ok(other),
    }
}

/// `POST /v1/sign/pseudonym`.
pub(crate) async fn sign(
    State(st): State<Arc<WebState>>,
    caller: Result<Caller, ApiError>,
    r: Option<Extension<RequestId>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let eservice = caller?.eservice()?.clone();
    if !eservice.rate_ok() {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("rate limit of e-Service {} exceeded", eservice.id),
        )
        .retry(Duration::from_secs(1)));
    }
    let b: PseudonymBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad(format!(
            "request body is not the expected JSON object: line {} column {}",
            e.line(),
            e.column()
        ))
    })?;
    let input = b.sign.validate(st.svc.settings.limits.request_max_age)?;
    let nonce = echo("nonce", b.nonce)?;
    let state = echo("state", b.state)?;
    let Some(token) = TOKEN_HEADERS
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
    else {
        // As the contract says: to the interactive pseudonym page with the request's fields
        // (the e-Service sends the browser there; `callbackUrl` from the body, if given); the
        // documents go as `doc` parameters. The page makes B-T signatures.
        if b.sign
            .signature_level
            .as_deref()
            .is_some_and(|l| !l.eq_ignore_ascii_case("B-T"))
        {
            return Err(ApiError::bad(
                "signatureLevel B-LT needs the X-Pseodonym-Token header: the pseudonym page makes B-T signatures",
            ));
        }
        return Ok(redirect_to_page(&b.sign, nonce, state, b.callback_url));
    };
    let tokens = st.svc.pseudonym_tokens.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no Remote SCD service is configured on this appliance ([scd])",
        )
    })?;
    let (token, id) = (token.to_owned(), eservice.id.clone());
    let pseudonym = tokio::task::spawn_blocking(move || tokens.redeem(&token, &id))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?
        .map_err(token_error)?;
    let requested = st
        .svc
        .scd_signing
        .request(ScdSignRequest {
            eservice: eservice.id.clone(),
            eservice_name: eservice.name.clone(),
            pseudonym,
            spec: input.spec,
            display: input.display,
            request_id: rid(&r),
            transaction: None,
        })
        .await?;
    Ok(axum::Json(json!({
        "signatureId": hex::encode(requested.signature_id),
        // esigd addition: the code the e-Service shows the citizen next to the device's.
        "verificationCode": requested.verification_code,
        "nonce": nonce,
        "state": state,
        "responseTimestamp": rfc3339(SystemTime::now()),
        "status": {"code": "OK", "message": "Signature requested; the citizen answers on their device"},
    }))
    .into_response())
}

/// `GET /v1/sign/response/{id}` for a signature that is not in the store: 202 while the device
/// has not answered (waiting up to `timeoutMs` first), the reason when it ended without a
/// signature, `None` when this workflow does not know the ID (or it is signed now: read the
/// store again).
pub(crate) async fn pending_answer(
    st: &WebState,
    id: &[u8; 32],
    eservice: &str,
    query: &HashMap<String, String>,
) -> Result<Option<Response>, ApiError> {
    let wait = match query.get("timeoutMs") {
        Some(ms) => Duration::from_millis(
            ms.parse::<u64>()
                .map_err(|_| ApiError::bad("timeoutMs: must be a whole number of milliseconds"))?,
        )
        .min(MAX_WAIT),
        None => Duration::ZERO,
    };
    match st.svc.scd_signing.status(id, eservice, wait).await {
        None | Some(Status::Signed) => Ok(None),
        Some(Status::Pending { .. }) => {
            let mut r = (
                StatusCode::ACCEPTED,
                axum::Json(json!({
                    "signatureId": hex::encode(id),
                    "status": {"code": "PENDING", "message": "waiting for the citizen's device"},
                })),
            )
                .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Ok(Some(r))
        }
        Some(Status::Failed(f)) => {
            let status = match f {
                Failure::Refused => StatusCode::FORBIDDEN,
                Failure::Timeout => StatusCode::GATEWAY_TIMEOUT,
                Failure::KeyUnusable(_) => StatusCode::CONFLICT,
                Failure::BadSignature | Failure::DeviceFailed(_) => StatusCode::BAD_GATEWAY,
                Failure::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            Err(ApiError::new(status, format!("{}: {f}", f.code())))
        }
    }
}
