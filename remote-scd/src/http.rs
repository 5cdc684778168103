//! The HTTP side of the service: the relying-party API (`/scd/v1`, behind mutual TLS) and the
//! device API (`/device/v1`, every call signed), on top of [`Engine`] and [`Journal`].
//!
//! Each call that changes state runs on a blocking thread: it takes the engine lock, applies the
//! call, and appends the resulting events to the journal with `fsync` before answering. If the
//! journal cannot be written the service stops answering (503): state it could not make durable
//! must not be handed out.
//!
//! Long polls (`GET /scd/v1/session/{id}`, `GET /device/v1/devices/{id}/transactions`) wait on a
//! change counter that every commit bumps. A newer poll of the same session supersedes an older
//! one, which answers `RUNNING` at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use esigd_scd::api::{
    CertificateDelivery, CertificateRequest, KeyStatusChange, OnboardingRequest, SessionState,
    SessionStatus, SignatureRequest, poll_timeout,
};
use esigd_scd::device::{AUTH_SCHEME, DeviceRegistration, TransactionResult, WAIT_MAX};
use esigd_scd::problem::{CONTENT_TYPE, Problem};
use esigd_scd::{ScdError, jws};
use rand_core::OsRng;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::engine::{Config, Engine, EngineError};
use crate::journal::{Journal, JournalError};

/// The relying party calling the RP API, set by the listener from its client certificate (e.g. the
/// certificate's SHA-256). Sessions are visible only to the relying party that started them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelyingParty(pub String);

/// An error answer: status, RFC 9457 body, and `Retry-After` for 429.
#[derive(Debug)]
pub struct ApiError(EngineError);

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        ApiError(e)
    }
}

impl From<ScdError> for ApiError {
    fn from(e: ScdError) -> Self {
        ApiError(EngineError::Invalid(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.0.problem();
        let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut resp = (status, body).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let EngineError::RateLimited { retry_after } = self.0 {
            h.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
        }
        resp
    }
}

/// The service: engine, journal, and the change counter long polls wait on.
pub struct Service {
    engine: Mutex<Engine>,
    journal: Mutex<Journal>,
    changes: watch::Sender<u64>,
    polls: Mutex<HashMap<String, u64>>,
    poll_seq: AtomicU64,
    public_url: String,
    failed: AtomicBool,
    closing: AtomicBool,
    compact_after: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent data here (every change is applied whole).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Service {
    /// Opens the journal at `journal_path`, replays it and returns the service. `public_url` is the
    /// device API's external base URL (what devices put in `htu`).
    pub fn open(
        cfg: Config,
        journal_path: &std::path::Path,
        public_url: &str,
        now: SystemTime,
    ) -> Result<Arc<Service>, JournalError> {
        let (journal, events) = Journal::open(journal_path)?;
        let mut engine = Engine::new(cfg, now);
        let n = events.len();
        for e in events {
            engine.apply(e);
        }
        engine.replayed();
        engine.sweep(now);
        tracing::info!(events = n, path = %journal_path.display(), "journal replayed");
        let (changes, _) = watch::channel(0);
        Ok(Arc::new(Service {
            engine: Mutex::new(engine),
            journal: Mutex::new(journal),
            changes,
            polls: Mutex::new(HashMap::new()),
            poll_seq: AtomicU64::new(0),
            public_url: public_url.trim_end_matches('/').to_owned(),
            failed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            compact_after: 100_000,
        }))
    }

    /// Runs `f` on the engine on a blocking thread and makes its events durable before returning.
    async fn commit<T, F>(self: &Arc<Self>, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Engine, SystemTime) -> Result<T, EngineError> + Send + 'static,
    {
        let svc = self.clone();
        let res = tokio::task::spawn_blocking(move || svc.commit_now(f))
            .await
            .map_err(|_| EngineError::Full("internal error"))?;
        res.map_err(ApiError)
    }

    fn commit_now<T>(
        &self,
        f: impl FnOnce(&mut Engine, SystemTime) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(EngineError::Full(
                "the store failed; the service is stopped",
            ));
        }
        let now = SystemTime::now();
        let mut engine = lock(&self.engine);
        let out = f(&mut engine, now);
        let events = engine.take_events();
        if !events.is_empty() {
            let mut journal = lock(&self.journal);
            if let Err(e) = journal.append(&events) {
                self.failed.store(true, Ordering::Relaxed);
                tracing::error!(error = %e, "journal write failed; refusing every call from now on");
                return Err(EngineError::Full(
                    "the store failed; the service is stopped",
                ));
            }
            if journal.lines() > self.compact_after {
                let snapshot = engine.snapshot(now);
                if let Err(e) = journal.compact(&snapshot) {
                    tracing::warn!(error = %e, "journal compaction failed; the journal keeps growing");
                }
            }
            drop(journal);
            self.changes.send_modify(|n| *n += 1);
        }
        out
    }

    /// Ends every long poll now (an RP poll answers the session's current state, a device poll
    /// `204`), and the ones that start later at once: call it when the listeners stop, so that a
    /// graceful shutdown does not wait for them.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        self.changes.send_modify(|n| *n += 1);
    }

    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Forgets expired sessions and replay entries (call periodically).
    pub fn sweep(&self) {
        lock(&self.engine).sweep(SystemTime::now());
    }

    fn url(&self, uri: &Uri) -> String {
        format!("{}{}", self.public_url, uri.path())
    }

    /// Checks `Authorization: DeviceJWS …` and returns the calling device.
    async fn device(
        self: &Arc<Self>,
        headers: &HeaderMap,
        method: &Method,
        uri: &Uri,
    ) -> Result<String, ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix(AUTH_SCHEME))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                EngineError::Unauthenticated(format!(
                    "Authorization: expected `{AUTH_SCHEME} <token>`"
                ))
            })?
            .to_owned();
        let device_id =
            jws::claimed_device(&token).map_err(|e| EngineError::Unauthenticated(e.to_string()))?;
        let (method, url, id) = (method.to_string(), self.url(uri), device_id.clone());
        self.commit(move |e, now| {
            e.authenticate(&id, &token, &method, &url, now)
                .map_err(|err| match err {
                    EngineError::NotFound => {
                        EngineError::Unauthenticated("deviceId: unknown device".into())
                    }
                    other => other,
                })
        })
        .await?;
        Ok(device_id)
    }
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ScdError::invalid("body", format!("not a valid request: {e}")).into())
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// The relying-party API (`/scd/v1/…`). Requests must carry a [`RelyingParty`] extension.
pub fn rp_router(svc: Arc<Service>) -> Router {
    Router::new()
        .route(
            "/scd/v1/onboarding/device/{scd_type}/{device_id}",
            post(start_onboarding),
        )
        .route("/scd/v1/signature/key/{key_handle}", post(start_signature))
        .route("/scd/v1/session/{session_id}", get(session_status))
        .route("/scd/v1/session/{session_id}/cancel", post(cancel))
        .route(
            "/scd/v1/keys/{key_handle}/certificate",
            post(deliver_certificate),
        )
        .route(
            "/scd/v1/signature/certificate/{key_handle}",
            post(certificate),
        )
        .route("/scd/v1/keys/{key_handle}/status", post(key_status))
        .with_state(svc)
}

/// The device API (`/device/v1/…`).
pub fn device_router(svc: Arc<Service>) -> Router {
    Router::new()
        .route("/device/v1/devices", post(register))
        .route(
            "/device/v1/devices/{device_id}/transactions",
            get(transactions),
        )
        .route("/device/v1/transactions/{tx}", get(transaction))
        .route("/device/v1/transactions/{tx}/ack", post(ack))
        .route("/device/v1/transactions/{tx}/result", post(result))
        .route(
            "/device/v1/keys/{key_handle}/certificate",
            get(device_certificate),
        )
        .with_state(svc)
}

async fn start_onboarding(
    State(svc): State<Arc<Service>>,
    Extension(rp): Extension<RelyingParty>,
    Path((scd_type, device_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: OnboardingRequest = parse(&body)?;
    let created = svc
        .commit(move |e, now| {
            e.start_onboarding(&rp.0, &scd_type, &device_id, &req, now, &mut OsRng)
        })
        .await?;
    Ok(Json(created).into_response())
}

async fn start_signature(
    State(svc): State<Arc<Service>>,
    Extension(rp): Extension<RelyingParty>,
    Path(key_handle): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: SignatureRequest = parse(&body)?;
    let created = svc
        .commit(move |e, now| e.start_signature(&rp.0, &key_handle, &req, now, &mut OsRng))
        .await?;
    Ok(Json(created).into_response())
}

#[derive(Deserialize)]
struct PollQuery {
    #[serde(rename = "timeoutMs")]
    timeout_ms: Option<u64>,
}

async fn session_status(
    State(svc): State<Arc<Service>>,
    Extension(rp): Extension<RelyingParty>,
    Path(id): Path<String>,
    query: Result<Query<PollQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| {
        ScdError::invalid("timeoutMs", format!("not a number of milliseconds: {e}"))
    })?;
    let wait = poll_timeout(q.timeout_ms)?;
    let deadline = tokio::time::Instant::now() + wait;
    let generation = svc.poll_seq.fetch_add(1, Ordering::Relaxed) + 1;
    lock(&svc.polls).insert(id.clone(), generation);
    // Wake an older poll of this session so it answers RUNNING now.
    svc.changes.send_modify(|n| *n += 1);
    let mut rx = svc.changes.subscribe();
    let answer = loop {
        rx.borrow_and_update();
        let status: SessionStatus = {
            let mut e = lock(&svc.engine);
            e.status(&rp.0, &id, SystemTime::now())?
        };
        let superseded = lock(&svc.polls).get(&id) != Some(&generation);
        if status.state == SessionState::Complete || superseded || svc.is_closing() {
            break status;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break status;
        }
        // Wake on a change, or each second (a user window can end without any call).
        let nap = (deadline - now).min(Duration::from_secs(1));
        let _ = tokio::time::timeout(nap, rx.changed()).await;
    };
    {
        let mut polls = lock(&svc.polls);
        if polls.get(&id) == Some(&generation) {
            polls.remove(&id);
        }
    }
    Ok(Json(answer).into_response())
}

async fn cancel(
    State(svc): State<Arc<Service>>,
    Extension(rp): Extension<RelyingParty>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    svc.commit(move |e, now| e.cancel(&rp.0, &id, now)).await?;
    Ok(no_content())
}

async fn deliver_certificate(
    State(svc): State<Arc<Service>>,
    Path(key_handle): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let delivery: CertificateDelivery = parse(&body)?;
    svc.commit(move |e, _| e.deliver_certificate(&key_handle, delivery))
        .await?;
    Ok(no_content())
}

async fn certificate(
    State(svc): State<Arc<Service>>,
    Path(key_handle): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let _: CertificateRequest = parse(&body)?;
    let answer = lock(&svc.engine).certificate(&key_handle)?;
    Ok(Json(answer).into_response())
}

async fn key_status(
    State(svc): State<Arc<Service>>,
    Path(key_handle): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let change: KeyStatusChange = parse(&body)?;
    svc.commit(move |e, _| e.set_key_status(&key_handle, &change))
        .await?;
    Ok(no_content())
}

async fn register(State(svc): State<Arc<Service>>, body: Bytes) -> Result<Response, ApiError> {
    let reg: DeviceRegistration = parse(&body)?;
    let done = svc
        .commit(move |e, _| e.register_device(reg, &mut OsRng))
        .await?;
    tracing::info!(device = %done.device_id, "device registered");
    Ok((StatusCode::CREATED, Json(done)).into_response())
}

#[derive(Deserialize)]
struct WaitQuery {
    #[serde(rename = "waitMs")]
    wait_ms: Option<u64>,
}

async fn transactions(
    State(svc): State<Arc<Service>>,
    Path(device_id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<WaitQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let caller = svc.device(&headers, &method, &uri).await?;
    if caller != device_id {
        return Err(EngineError::NotFound.into());
    }
    let Query(q) = query
        .map_err(|e| ScdError::invalid("waitMs", format!("not a number of milliseconds: {e}")))?;
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(25_000)).min(WAIT_MAX);
    let deadline = tokio::time::Instant::now() + wait;
    let mut rx = svc.changes.subscribe();
    loop {
        rx.borrow_and_update();
        let list = lock(&svc.engine).pending(&device_id, SystemTime::now());
        if !list.transactions.is_empty() {
            return Ok(Json(list).into_response());
        }
        let now = tokio::time::Instant::now();
        if now >= deadline || svc.is_closing() {
            return Ok(no_content());
        }
        let _ = tokio::time::timeout(deadline - now, rx.changed()).await;
    }
}

async fn transaction(
    State(svc): State<Arc<Service>>,
    Path(tx): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let device = svc.device(&headers, &method, &uri).await?;
    let t = svc
        .commit(move |e, now| e.transaction(&device, &tx, now))
        .await?;
    Ok(Json(t).into_response())
}

async fn ack(
    State(svc): State<Arc<Service>>,
    Path(tx): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let device = svc.device(&headers, &method, &uri).await?;
    svc.commit(move |e, now| e.transaction(&device, &tx, now).map(|_| ()))
        .await?;
    Ok(no_content())
}

async fn result(
    State(svc): State<Arc<Service>>,
    Path(tx): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let device = svc.device(&headers, &method, &uri).await?;
    let res: TransactionResult = parse(&body)?;
    let outcome = res.outcome;
    let key_handle = svc
        .commit(move |e, now| e.submit_result(&device, &tx, res, now, &mut OsRng))
        .await?;
    tracing::info!(?outcome, "device result accepted");
    Ok(match key_handle {
        Some(h) => Json(serde_json::json!({ "keyHandle": h })).into_response(),
        None => no_content(),
    })
}

async fn device_certificate(
    State(svc): State<Arc<Service>>,
    Path(key_handle): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let device = svc.device(&headers, &method, &uri).await?;
    let cert = lock(&svc.engine).device_certificate(&device, &key_handle)?;
    Ok(Json(cert).into_response())
}

/// The problem document of an error (for listeners that refuse before routing).
pub fn problem_response(status: u16, code: &str, detail: &str) -> Response {
    let p = Problem::new(status, "Error", code, detail);
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        serde_json::to_vec(&p).unwrap_or_default(),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp
}
