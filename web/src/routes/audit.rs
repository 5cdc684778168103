//! The audit ledger over the e-Service listener (mutual TLS): signed tree heads, consistency proofs, a
//! transaction's inclusion proofs, leaves for monitors, the audit public key.
//!
//! Tree heads, consistency proofs and the key are for every registered client; leaves for auditors; a
//! transaction's proof bundle for auditors and the e-Service that made the transaction.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::json;

use esigd_service::audit::AuditError;
use esigd_service::registry::Client;

use super::caller::Caller;
use crate::error::ApiError;
use crate::state::WebState;

/// The audit ledger routes (merged into the e-Service router).
pub fn router() -> Router<Arc<WebState>> {
    Router::new()
        .route("/v1/audit/sth", get(sth).post(publish))
        .route("/v1/audit/sth/consistency", get(consistency))
        .route("/v1/audit/proof/{signature_id}", get(proof))
        .route("/v1/audit/entries", get(entries))
        .route("/v1/audit/key", get(key))
}

/// Maps ledger errors to statuses: a refused tree head is 503 with the reason, bad parameters 400.
fn api_error(e: AuditError) -> ApiError {
    match &e {
        AuditError::Truncated { .. } | AuditError::Rewritten { .. } => {
            tracing::error!(error = %e, "audit tree head refused");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        AuditError::BadRequest(_) => ApiError::bad(e.to_string()),
        AuditError::UnknownTransaction(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
        AuditError::Store(s) if s.is_busy() => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store busy; retry later")
                .retry(Duration::from_secs(1))
        }
        AuditError::Hsm(_) => {
            tracing::error!(error = %e, "audit key");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the HSM cannot sign the tree head now; retry later",
            )
            .retry(Duration::from_secs(2))
        }
        AuditError::Store(_) | AuditError::Key(_) => {
            tracing::error!(error = %e, "audit ledger");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

fn query_error(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::bad(format!("query string: {}", e.body_text()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SizeQuery {
    tree_size: Option<u64>,
}

/// `GET /v1/audit/sth[?treeSize=N]`: the latest signed tree head, or the one published for N leaves.
async fn sth(
    State(st): State<Arc<WebState>>,
    _caller: Caller,
    q: Result<Query<SizeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let head = st.svc.audit.head(q.tree_size).await.map_err(api_error)?;
    Ok(axum::Json(head).into_response())
}

/// `POST /v1/audit/sth` (auditors): publish a tree head over every leaf written so far, now.
async fn publish(State(st): State<Arc<WebState>>, caller: Caller) -> Result<Response, ApiError> {
    let auditor = caller.auditor()?.clone();
    let head = st.svc.audit.publish().await.map_err(api_error)?;
    tracing::info!(auditor = %auditor.name, tree_size = head.tree_size, "tree head published on demand");
    Ok(axum::Json(head).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyQuery {
    first: Option<u64>,
    second: Option<u64>,
}

/// `GET /v1/audit/sth/consistency?first=M&second=N`: RFC 9162 consistency proof (second defaults to the
/// latest published head).
async fn consistency(
    State(st): State<Arc<WebState>>,
    _caller: Caller,
    q: Result<Query<ConsistencyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let first = q
        .first
        .ok_or_else(|| ApiError::bad("first: the older tree size is required"))?;
    let second = match q.second {
        Some(s) => s,
        None => st.svc.audit.latest().await.map_err(api_error)?.tree_size,
    };
    let audit = st.svc.audit.clone();
    let proof = tokio::task::spawn_blocking(move || audit.consistency(first, second))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?
        .map_err(api_error)?;
    Ok(axum::Json(proof).into_response())
}

/// `GET /v1/audit/proof/{signatureId}[?treeSize=N]`: the inclusion proof of every event of that
/// transaction under the latest (or the given published) tree head.
async fn proof(
    State(st): State<Arc<WebState>>,
    caller: Caller,
    Path(signature_id): Path<String>,
    q: Result<Query<SizeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    if signature_id.is_empty() || signature_id.len() > 128 {
        return Err(ApiError::bad("signatureId: 1 to 128 characters"));
    }
    let owner = match &caller.0 {
        Client::Auditor(_) => None,
        Client::Eservice(e) => Some(e.id.clone()),
    };
    let bundle = st
        .svc
        .audit
        .bundle(&signature_id, q.tree_size, owner.as_deref())
        .await
        .map_err(api_error)?;
    Ok(axum::Json(bundle).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntriesQuery {
    start: Option<u64>,
    end: Option<u64>,
}

/// `GET /v1/audit/entries?start=A&end=B` (auditors): leaves `[A, B)`, at most 1000, for monitors that
/// recompute the root.
async fn entries(
    State(st): State<Arc<WebState>>,
    caller: Caller,
    q: Result<Query<EntriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    caller.auditor()?;
    let Query(q) = q.map_err(query_error)?;
    let start = q.start.unwrap_or(0);
    let end = q
        .end
        .ok_or_else(|| ApiError::bad("end: the first leaf index not wanted is required"))?;
    let audit = st.svc.audit.clone();
    let leaves = tokio::task::spawn_blocking(move || audit.entries(start, end))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?
        .map_err(api_error)?;
    let items: Vec<_> = leaves
        .iter()
        .map(|l| json!({"leafIndex": l.index, "leaf": B64.encode(&l.leaf)}))
        .collect();
    Ok(axum::Json(json!({ "entries": items })).into_response())
}

/// `GET /v1/audit/key`: the audit public key (PEM) that verifies tree heads.
async fn key(State(st): State<Arc<WebState>>, _caller: Caller) -> Response {
    let mut resp = st.svc.audit.public_key_pem().to_owned().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-pem-file"),
    );
    resp
}
