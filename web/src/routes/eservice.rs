//! The e-Service API (mutual TLS listener): the e-Service side of the GovStack v1 contract.
//!
//! Every request is tied to a registered client through its verified certificate
//! ([`crate::registry`]) and re-checked against that client's own `allowed_ips`. Errors use the
//! contract's body `{"status":{"code":"ERROR","message":"…"}}`; messages name the field or header at
//! fault and never echo tokens.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Value, json};

use esigd_service::signing::onetime::{self, OneTimeRequest};
use esigd_store::AuditKey;
use esigd_store::signatures::{AuditEvent, SignatureRecord, rfc3339};

pub use crate::error::ApiError;
use crate::observe::RequestId;
pub use crate::sign_input::MAX_DISPLAY_CHARS;
use crate::sign_input::SignBody;
use crate::state::WebState;

pub use super::caller::{AUTH_TOKEN_HEADER, Caller, PAYMENT_TOKEN_HEADER};
/// Largest audit page.
pub const MAX_AUDIT_PAGE: usize = 1000;

/// The e-Service router.
pub fn router(state: Arc<WebState>) -> Router {
    let max_body = state.svc.settings.limits.max_body_bytes;
    Router::new()
        .route("/v1/sign/onetime", post(sign_onetime))
        .route("/v1/sign/response/{signature_id}", get(sign_response))
        .route("/v1/audit/log", get(audit_log))
        .route("/v1/cert/create", post(super::cert::create))
        .route("/v1/cert/list", get(super::cert::list))
        .route("/v1/cert/{certificate_id}", patch(super::cert::patch))
        .route("/v1/sign/pseudonym", post(super::scd_sign::sign))
        .route(
            "/v1/token/pseodonym/{pseudonym}",
            get(super::scd_sign::token),
        )
        .route(
            "/v1/token/pseudonym/{pseudonym}",
            get(super::scd_sign::token),
        )
        .merge(super::audit::router())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn request_id(id: &Option<Extension<RequestId>>) -> String {
    id.as_ref()
        .map(|Extension(r)| r.0.clone())
        .unwrap_or_default()
}

async fn sign_onetime(
    State(st): State<Arc<WebState>>,
    // Checked after the body is read: answering before the request body is consumed makes
    // hyper reset the HTTP/2 stream, which clients (curl) report as a transport error instead of
    // showing the 403.
    caller: Result<Caller, ApiError>,
    rid: Option<Extension<RequestId>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = caller?;
    let eservice = caller.eservice()?.clone();
    if !eservice.rate_ok() {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("rate limit of e-Service {} exceeded", eservice.id),
        )
        .retry(Duration::from_secs(1)));
    }
    let token = header_str(&headers, AUTH_TOKEN_HEADER).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "X-GovStack-AuthenticationToken header (the user's ID token) is required",
        )
    })?;
    let checked = esigd_service::payment::check(
        st.svc.payment.as_deref(),
        &eservice,
        header_str(&headers, PAYMENT_TOKEN_HEADER),
    )
    .await;
    if eservice.payment_required {
        // The signatureId is drawn later; the request ID ties this event to signature.created.
        let mut e = AuditEvent::new("payment.checked", SystemTime::now());
        e.request_id = Some(request_id(&rid));
        e.eservice = Some(eservice.id.clone());
        match &checked {
            Ok(p) => {
                e.outcome = Some("success".into());
                e.payment_sha256 = p.as_ref().map(esigd_service::payment::Payment::jti_sha256);
            }
            Err(err) => {
                e.outcome = Some("failure".into());
                e.message = Some(err.to_string());
            }
        }
        esigd_service::audit::record_or_log(&st.svc.signatures, &e).await;
    }
    let payment = checked.map_err(|e| ApiError::payment(&eservice, e))?;
    let input = SignBody::parse(&body)?.validate(st.svc.settings.limits.request_max_age)?;
    let provider = st.svc.identity.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no Identity BB is configured ([identity] section)",
        )
    })?;
    let verified = provider
        .verify_id_token(token, &eservice.id_token_audiences, None)
        .await
        .map_err(ApiError::identity)?;
    let identity = esigd_service::identity::map_claims(&provider.config().claims, &verified.claims);
    // The ID token is single-use: spent (durably) now that everything else is checked and a
    // signature is about to be made, so a replay of it is refused (401).
    let spent = provider
        .spend_id_token(token, &verified)
        .await
        .map_err(ApiError::identity)?;
    // The payment is used up right before signing and given back if no signature is made.
    let result = onetime::sign_with_payment(
        &st.svc.onetime,
        payment,
        OneTimeRequest {
            eservice: eservice.id.clone(),
            identity,
            spec: input.spec,
            request_id: request_id(&rid),
            contact: esigd_service::notify::Contact::from_claims(&verified.claims),
            display: input.display,
        },
    )
    .await;
    // The ID token is given back only when certainly no signature was made: the payment could not
    // be used, or signing failed before anything was stored (busy, a dependency unavailable,
    // claims unfit for a certificate). Not after an internal error (which includes a panicked
    // signing task, when whether a signature was stored is unknown), nor when this request is
    // dropped midway: a replay must never make a second signature.
    if let Err(
        onetime::PaidSignError::Payment(_)
        | onetime::PaidSignError::Sign(
            onetime::SignError::Busy
            | onetime::SignError::Unavailable(_)
            | onetime::SignError::Identity(_)
            | onetime::SignError::Request(_),
        ),
    ) = &result
    {
        provider.give_back(&spent).await;
    }
    let record = result.map_err(|e| match e {
        onetime::PaidSignError::Payment(e) => ApiError::payment(&eservice, e),
        onetime::PaidSignError::Sign(e) => e.into(),
    })?;
    Ok(axum::Json(signature_json(&record, true)).into_response())
}

/// The contract's signature response.
pub fn signature_json(r: &SignatureRecord, with_id: bool) -> Value {
    // The record holds DER we encoded; PEM-encoding it cannot fail short of a bug.
    let cert_pem = esigd_pki::pem::to_pem("CERTIFICATE", &r.certificate).unwrap_or_default();
    let mut v = json!({
        "signature": B64.encode(&r.signature),
        "certificate": cert_pem,
        "signatureTimestamp": B64.encode(&r.timestamp),
        "responseTimestamp": rfc3339(SystemTime::now()),
        "status": {"code": "OK", "message": "Signature generated successfully"},
        "format": r.format,
        "hashType": r.hash_type,
        "signatureType": r.signature_type,
        "certificateId": r.certificate_serial,
    });
    if with_id && let Value::Object(m) = &mut v {
        m.insert("signatureId".into(), Value::String(r.id_hex()));
    }
    v
}

/// Parses a signatureId (64 hex digits).
pub fn parse_signature_id(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    hex::decode(s).ok()?.try_into().ok()
}

async fn sign_response(
    State(st): State<Arc<WebState>>,
    caller: Caller,
    rid: Option<Extension<RequestId>>,
    Path(signature_id): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let eservice = caller.eservice()?.clone();
    let id = parse_signature_id(&signature_id.to_ascii_lowercase()).ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, "signatureId must be 64 hex digits")
    })?;
    let read = |st: Arc<WebState>| async move {
        let store = st.svc.signatures.clone();
        tokio::task::spawn_blocking(move || store.get(&id))
            .await
            .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?
            .map_err(|e| {
                tracing::error!(error = %e, "reading a signature");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            })
    };
    let mut found = read(st.clone()).await?;
    if found.is_none() {
        // A signature waiting for the citizen's device (workflow 9.2.2), or one that ended
        // without a signature.
        if let Some(answer) =
            super::scd_sign::pending_answer(&st, &id, &eservice.id, &query).await?
        {
            return Ok(answer);
        }
        found = read(st.clone()).await?;
    }
    // Unknown and someone else's look the same: no oracle for valid IDs.
    let record = match found {
        Some(r) if r.owner == eservice.id => r,
        other => {
            if other.is_some() {
                tracing::warn!(eservice = %eservice.id, "fetch of another e-Service's signature refused");
            }
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no signature with this signatureId",
            ));
        }
    };
    let record = if record.fetched.is_none() {
        let now = SystemTime::now();
        let mut event = AuditEvent::new("signature.fetched", now);
        event.request_id = Some(request_id(&rid));
        event.eservice = Some(eservice.id.clone());
        event.signature_id = Some(record.id_hex());
        event.signature_type = Some(record.signature_type);
        event.certificate_serial = Some(record.certificate_serial.clone());
        st.svc
            .signatures
            .mark_fetched(
                &record,
                st.svc.settings.store.retention_unfetched,
                st.svc.settings.store.retention_after_fetch,
                now,
                &event,
            )
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "recording the first fetch");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable")
                    .retry(Duration::from_secs(1))
            })?
    } else {
        record
    };
    Ok(axum::Json(signature_json(&record, true)).into_response())
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    start: Option<String>,
    end: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

fn parse_time(name: &str, s: &str) -> Result<SystemTime, ApiError> {
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
        .or_else(|_| humantime::parse_rfc3339(s))
        .map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "{name} is not an ISO 8601 / RFC 3339 UTC time (e.g. 2026-11-28T09:12:28Z)"
                ),
            )
        })
}

async fn audit_log(
    State(st): State<Arc<WebState>>,
    caller: Caller,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let auditor = caller.auditor()?.clone();
    let Query(q) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("query string: {e}")))?;
    let start = match &q.start {
        Some(s) => parse_time("start", s)?,
        None => SystemTime::UNIX_EPOCH,
    };
    let end = match &q.end {
        Some(s) => parse_time("end", s)?,
        None => SystemTime::now() + Duration::from_secs(1),
    };
    if end < start {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "end is before start",
        ));
    }
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_AUDIT_PAGE {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("limit must be 1..={MAX_AUDIT_PAGE}"),
        ));
    }
    let after = match &q.cursor {
        Some(c) => Some(
            hex::decode(c)
                .ok()
                .and_then(|b| AuditKey::from_bytes(&b))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "cursor is not one this API returned",
                    )
                })?,
        ),
        None => None,
    };
    let store = st.svc.signatures.clone();
    let (events, last) = tokio::task::spawn_blocking(move || {
        let (events, last) = store.audit_range(start, end, after, limit)?;
        // The contract's signature, certificate and signatureTimestamp, while the record is kept.
        let with_records = events
            .into_iter()
            .map(|e| {
                let record = match e.signature_id.as_deref().and_then(parse_signature_id) {
                    Some(id) if e.event == "signature.created" => store.get(&id)?,
                    _ => None,
                };
                Ok((e, record))
            })
            .collect::<Result<Vec<_>, esigd_store::persist::PersistError>>()?;
        Ok::<_, esigd_store::persist::PersistError>((with_records, last))
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?
    .map_err(|e| {
        tracing::error!(error = %e, "reading the audit log");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })?;
    tracing::info!(auditor = %auditor.name, n = events.len(), "audit log read");
    let items: Vec<Value> = events
        .iter()
        .map(|(e, record)| {
            let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                if let Some(i) = e.leaf_index {
                    m.insert("leafIndex".into(), json!(i));
                }
                if let Some(r) = record {
                    m.insert("signature".into(), Value::String(B64.encode(&r.signature)));
                    if let Ok(pem) = esigd_pki::pem::to_pem("CERTIFICATE", &r.certificate) {
                        m.insert("certificate".into(), Value::String(pem));
                    }
                    m.insert(
                        "signatureTimestamp".into(),
                        Value::String(B64.encode(&r.timestamp)),
                    );
                }
                // The contract's item fields, next to ours.
                m.insert("responseTimestamp".into(), Value::String(e.time.clone()));
                let (code, message) = match &e.message {
                    Some(msg) if e.event.ends_with(".refused") => ("ERROR", msg.clone()),
                    _ => ("OK", e.event.clone()),
                };
                m.insert("status".into(), json!({"code": code, "message": message}));
            }
            v
        })
        .collect();
    let mut resp = axum::Json(items).into_response();
    if events.len() == limit
        && let Some(k) = last
        && let Ok(v) = HeaderValue::from_str(&hex::encode(k.to_bytes()))
    {
        resp.headers_mut().insert("x-next-cursor", v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_ids_are_64_hex() {
        assert!(parse_signature_id(&"ab".repeat(32)).is_some());
        assert!(parse_signature_id("ab").is_none());
        assert!(parse_signature_id(&"zz".repeat(32)).is_none());
    }
}
