//! Workflow 9.2.2 in the user's browser (public listener), from the choice page of a signing
//! visit ([`super::interactive`]):
//!
//! 1. `GET /v1/sign/interactive/scd?t=`: the pseudonym form;
//! 2. `POST /v1/sign/interactive/scd`: the signature is asked of the device
//!    ([`esigd_service::signing::scd`]); the page shows the verification code;
//! 3. `GET /v1/sign/interactive/scd/wait?t=`: waits (long poll, then a refresh meta: the pages
//!    have no script) until the device has answered, then sends the browser to
//!    `callbackUrl?signatureId&state&nonce`, or back with `error=access_denied|timeout|
//!    key_unusable|device_failed|signing_failed` and no signature.
//!
//! A pseudonym that names no key behaves like one that does (a code, then a timeout). A payment
//! is used up when the device is asked and given back if no signature is made.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use minijinja::context;
use serde::Deserialize;

use esigd_service::signing::scd::{Failure, ScdSignError, ScdSignRequest, Status};

use super::interactive::{callback_url, fail_back, rid, session_for};
use crate::observe::RequestId;
use crate::pages::{CSP_FORMS, CSP_WAIT, ScdStep, SignVisit, Visit, redirect};
use crate::state::WebState;

/// How long one wait request holds before the page refreshes.
const WAIT: Duration = Duration::from_secs(20);

/// The routes.
pub fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .route("/v1/sign/interactive/scd", get(form).post(submit))
        .route("/v1/sign/interactive/scd/wait", get(wait))
        .route("/v1/sign/interactive/scd/status", get(status))
        .route("/v1/ui/wait.js", get(wait_js))
        .with_state(state)
}

fn forms(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP_FORMS),
    );
    r
}

fn form_page(
    st: &WebState,
    status: StatusCode,
    v: &SignVisit,
    csrf: &str,
    error: Option<&str>,
) -> Response {
    forms(st.pages.render(
        status,
        "scd.html",
        context! {
            eservice_name => v.eservice_name.clone(),
            csrf => csrf,
            available => st.svc.scd_signing.available(),
            error => error,
        },
    ))
}

/// `GET /v1/sign/interactive/scd?t=`.
async fn form(
    State(st): State<Arc<WebState>>,
    r: Option<Extension<RequestId>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match session_for(&st, &headers, &q) {
        Ok((s, v)) if v.scd.is_some() => {
            redirect(&format!("/v1/sign/interactive/scd/wait?t={}", s.csrf))
        }
        Ok((s, v)) => {
            // The citizen chose their own device (from the choice page or the pseudonym entry).
            let mut method = super::interactive::visit_event("session.method", &v, &rid(&r));
            method.signature_type = Some(esigd_store::signatures::SignatureType::Scd);
            method.outcome = Some("success".into());
            esigd_service::audit::record_or_log(&st.svc.signatures, &method).await;
            form_page(&st, StatusCode::OK, &v, &s.csrf, None)
        }
        Err(m) => st.pages.error_page(StatusCode::BAD_REQUEST, m, &rid(&r)),
    }
}

/// The form's fields.
#[derive(Debug, Deserialize)]
struct PseudonymForm {
    t: String,
    pseudonym: String,
}

fn wait_page(st: &WebState, v: &SignVisit, csrf: &str, code: &str) -> Response {
    let mut r = st.pages.render(
        StatusCode::OK,
        "scd_wait.html",
        context! {
            eservice_name => v.eservice_name.clone(),
            csrf => csrf,
            code => code,
            timeout => st.svc.scd_signing.timeout().as_secs(),
        },
    );
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP_WAIT),
    );
    r
}

/// The wait page's script.
const WAIT_JS: &str = include_str!("../../templates/wait.js");

async fn wait_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        WAIT_JS,
    )
        .into_response()
}

/// `GET /v1/sign/interactive/scd/status?t=`: `{"pending": true}` while the device has not
/// answered (a long poll of up to [`WAIT`]), else `{"pending": false}` (the wait page then goes
/// on to `/v1/sign/interactive/scd/wait`, which shows the outcome).
async fn status(
    State(st): State<Arc<WebState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (code, pending) = match session_for(&st, &headers, &q) {
        Ok((_, v)) => match v.scd {
            Some(step) => (
                StatusCode::OK,
                matches!(
                    st.svc
                        .scd_signing
                        .status(&step.signature_id, &v.eservice, WAIT)
                        .await,
                    Some(Status::Pending { .. })
                ),
            ),
            None => (StatusCode::OK, false),
        },
        // No (or an expired) session: the script moves on and the wait page says so.
        Err(_) => (StatusCode::BAD_REQUEST, false),
    };
    let mut r = (code, axum::Json(serde_json::json!({ "pending": pending }))).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `POST /v1/sign/interactive/scd`: asks the device.
async fn submit(
    State(st): State<Arc<WebState>>,
    r: Option<Extension<RequestId>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<PseudonymForm>,
) -> Response {
    let rid = rid(&r);
    let q = HashMap::from([("t".to_owned(), f.t.clone())]);
    let (s, v) = match session_for(&st, &headers, &q) {
        Ok(x) => x,
        Err(m) => return st.pages.error_page(StatusCode::BAD_REQUEST, m, &rid),
    };
    if let Err(limited) = st.pages.scd_submits.check(peer.ip()) {
        tracing::info!(peer = %peer.ip(), "pseudonym submissions over the per-address limit");
        let mut resp = form_page(
            &st,
            StatusCode::TOO_MANY_REQUESTS,
            &v,
            &s.csrf,
            Some("Too many requests from your network. Wait a minute and try again."),
        );
        if let Ok(h) = HeaderValue::from_str(&limited.retry_after_secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, h);
        }
        return resp;
    }
    if v.scd.is_some() {
        return redirect(&format!("/v1/sign/interactive/scd/wait?t={}", s.csrf));
    }
    let payments = st.svc.payment.clone();
    let consumed = esigd_service::payment::consume(payments.as_deref(), v.payment.as_ref()).await;
    if let Some(p) = &v.payment {
        let e = super::interactive::visit_event("payment.used", &v, &rid);
        esigd_service::audit::payment_used(&st.svc.signatures, e, p, &consumed).await;
    }
    if let Err(e) = consumed {
        tracing::info!(reason = %e, "payment not usable at signing time");
        st.pages.remove(&s.csrf);
        return fail_back(
            &st,
            &v,
            "payment_required",
            "The payment token was used already or cannot be checked.",
            &rid,
        )
        .await;
    }
    let requested = st
        .svc
        .scd_signing
        .request(ScdSignRequest {
            eservice: v.eservice.clone(),
            eservice_name: v.eservice_name.clone(),
            pseudonym: f.pseudonym.chars().take(64).collect(),
            spec: v.input.spec.clone(),
            display: v.input.display.clone(),
            request_id: rid.clone(),
            transaction: Some(v.transaction),
        })
        .await;
    let requested = match requested {
        Ok(x) => x,
        Err(e) => {
            esigd_service::payment::release(payments.as_deref(), v.payment.as_ref()).await;
            let (status, message) = match &e {
                ScdSignError::Invalid { .. } => (
                    StatusCode::BAD_REQUEST,
                    "That is not a pseudonym: it looks like k7m2-9xqa-h3dz.".to_owned(),
                ),
                ScdSignError::NotActive(state) => (
                    StatusCode::CONFLICT,
                    format!("The certificate behind this pseudonym is {state}: it cannot sign."),
                ),
                ScdSignError::RateLimited(_) => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many requests were made for this pseudonym. Wait a few minutes and try again."
                        .to_owned(),
                ),
                ScdSignError::Busy(_) => (
                    StatusCode::CONFLICT,
                    "Your device is already answering another request. Try again when it is done."
                        .to_owned(),
                ),
                _ => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The signing device service cannot be reached now. Please try again shortly."
                        .to_owned(),
                ),
            };
            return form_page(&st, status, &v, &s.csrf, Some(&message));
        }
    };
    let step = ScdStep {
        signature_id: requested.signature_id,
        code: requested.verification_code.clone(),
    };
    st.pages.update(&s.csrf, &s.browser, |s| {
        if let Visit::Sign(v) = &mut s.visit {
            v.scd = Some(step.clone());
        }
    });
    wait_page(&st, &v, &s.csrf, &requested.verification_code)
}

/// `GET /v1/sign/interactive/scd/wait?t=`.
async fn wait(
    State(st): State<Arc<WebState>>,
    r: Option<Extension<RequestId>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let rid = rid(&r);
    let (s, v) = match session_for(&st, &headers, &q) {
        Ok(x) => x,
        Err(m) => return st.pages.error_page(StatusCode::BAD_REQUEST, m, &rid),
    };
    let Some(step) = v.scd.clone() else {
        return redirect(&format!("/v1/sign/interactive/scd?t={}", s.csrf));
    };
    match st
        .svc
        .scd_signing
        .status(&step.signature_id, &v.eservice, WAIT)
        .await
    {
        Some(Status::Pending { .. }) => wait_page(&st, &v, &s.csrf, &step.code),
        Some(Status::Signed) => {
            st.pages.remove(&s.csrf);
            st.metrics.signing_session_ended("signed");
            let id = hex::encode(step.signature_id);
            super::interactive::callback_sent(&st, &v, "signed", &rid).await;
            let to = callback_url(&v, &[("signatureId", &id)]);
            st.pages.render(
                StatusCode::OK,
                "result.html",
                context! {
                    eservice_name => v.eservice_name.clone(),
                    signature_id => id,
                    continue_url => to,
                    scd => true,
                },
            )
        }
        Some(Status::Failed(f)) => {
            st.pages.remove(&s.csrf);
            esigd_service::payment::release(st.svc.payment.as_deref(), v.payment.as_ref()).await;
            let description = match f {
                Failure::Refused => "The user refused on the signing device.",
                Failure::Timeout => "The signing device did not answer in time.",
                Failure::KeyUnusable(_) => "The key on the signing device is locked or unusable.",
                Failure::BadSignature | Failure::DeviceFailed(_) => {
                    "The signing device's answer could not be used."
                }
                Failure::Internal(_) => "The signature could not be made.",
            };
            fail_back(&st, &v, f.code(), description, &rid).await
        }
        None => {
            st.pages.remove(&s.csrf);
            fail_back(
                &st,
                &v,
                "signing_failed",
                "The signature could not be made.",
                &rid,
            )
            .await
        }
    }
}
