//! Operator admin API on a Unix socket (`data_dir/admin.sock`, mode 0600): customer-care issuance of
//! SCD certificates and their lifecycle (suspend, resume, revoke), certificate lookup and listing.
//!
//! Access control is the file system: only the service user (and root) can open the socket. The API
//! is never exposed on a TCP listener. Requests and answers are JSON; every error is
//! `{"status":{"code":"ERROR","message":"…"}}` with a message that names the field at fault.
//!
//! The `actor` of a status change is what the caller says; next to it the history records the
//! caller's uid as the kernel reports it for the connection (`SO_PEERCRED`, [`AdminPeer`]), and
//! the log lines of changes and issuance carry it.
//!
//! | method | path | body / query | answer |
//! |---|---|---|---|
//! | POST | `/admin/cert/issue` | `{"profile":"scd","csr":PEM or base64 DER,"claims":{…}}` | `{"certificateId","certificate"}` |
//! | POST | `/admin/cert/{serial}/status` | `{"action","reason","actor","justification"}` | the updated record |
//! | GET | `/admin/cert/{serial}` | | the record |
//! | GET | `/admin/cert` | `?profile=&after=&limit=` | `{"certificates":[…],"next":serial or null}` |
//!
//! The CLI side (`esigd admin cert …`) is in the binary.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use esigd_ca::{
    CertRecord, CertState, ListQuery, ProfileKind, RevocationReason, StatusChange, StoredStatus,
    Transition,
};
use esigd_pki::identity::IdentityClaims;
use esigd_pki::pem::{parse_serial_hex, serial_bytes};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::WebState;

/// File name of the admin socket inside the data directory.
pub const SOCKET_NAME: &str = "admin.sock";

/// Largest request body on `/admin/cert/issue`. A CSR is at most 256 KiB (the parser's limit),
/// but an oversized one must still reach the parser to be refused with its message (400) rather
/// than cut off by the HTTP layer: 2 MiB covers 1 MiB of DER in base64 plus the JSON around it.
pub const MAX_ISSUE_BODY: usize = 2 * 1024 * 1024;
/// Largest body on the other routes.
const MAX_BODY: usize = 16 * 1024;
/// Largest page of a listing.
const MAX_LIMIT: usize = 1000;

/// Path of the admin socket in a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

/// `e` with what was being done in front of it.
fn context(what: String) -> impl FnOnce(std::io::Error) -> std::io::Error {
    move |e| std::io::Error::new(e.kind(), format!("admin socket: {what}: {e}"))
}

/// Binds the admin socket at `path` with mode 0600, replacing a stale socket from an earlier run.
///
/// The socket is bound inside a fresh private directory (mode 0700), restricted to 0600 there and
/// only then renamed into place, so there is no moment at which another user could connect.
pub fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    let dir = path.parent().unwrap_or(Path::new("."));
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => {
            return Err(std::io::Error::other(format!(
                "admin socket: {} is a directory",
                path.display()
            )));
        }
        Ok(_) => std::fs::remove_file(path)
            .map_err(context(format!("removing the stale {}", path.display())))?,
        Err(_) => {}
    }
    // A private staging directory (0700) named after this process; a leftover from a crashed
    // run with the same pid is removed first.
    let private = dir.join(format!(".admin-sock-{}", std::process::id()));
    if private.exists() {
        std::fs::remove_dir_all(&private)
            .map_err(context(format!("removing the stale {}", private.display())))?;
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(context(format!("creating {}", private.display())))?;
    let staged = private.join(SOCKET_NAME);
    let bound = bind_staged(&staged, path);
    let _ = std::fs::remove_dir_all(&private);
    bound
}

/// Binds at `staged` (in the private directory), restricts the socket to 0600, moves it to `path`.
fn bind_staged(staged: &Path, path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    let listener = tokio::net::UnixListener::bind(staged)
        .map_err(context(format!("cannot listen on {}", staged.display())))?;
    std::fs::set_permissions(staged, std::fs::Permissions::from_mode(0o600))
        .map_err(context(format!("chmod 0600 {}", staged.display())))?;
    std::fs::rename(staged, path).map_err(context(format!("moving it to {}", path.display())))?;
    Ok(listener)
}

/// The process on the other end of an admin socket connection, as the kernel reports it
/// (`SO_PEERCRED`, read once when the connection is accepted); every request of the connection
/// gets it as `ConnectInfo<AdminPeer>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminPeer {
    /// The caller's user ID; `None` if the kernel did not say (then nothing is changed).
    pub uid: Option<u32>,
    /// The caller's process ID, when known (for the log).
    pub pid: Option<i32>,
}

impl Connected<axum::serve::IncomingStream<'_, tokio::net::UnixListener>> for AdminPeer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::UnixListener>) -> Self {
        match stream.io().peer_cred() {
            Ok(cred) => AdminPeer {
                uid: Some(cred.uid()),
                pid: cred.pid(),
            },
            Err(e) => {
                tracing::warn!(error = %e, "admin socket: the caller's credentials could not be read");
                AdminPeer {
                    uid: None,
                    pid: None,
                }
            }
        }
    }
}

impl AdminPeer {
    /// The caller's uid, required before anything is changed (the audit history records it).
    fn required_uid(&self) -> Result<u32, ApiError> {
        self.uid.ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the caller's uid could not be read from the admin socket (SO_PEERCRED)",
            )
        })
    }
}

/// Serves the admin API on `listener` until `shutdown` resolves (in-flight requests finish).
pub async fn serve(
    listener: tokio::net::UnixListener,
    state: Arc<WebState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<AdminPeer>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// The admin router. Its handlers read the caller's [`AdminPeer`]: serve it with
/// `into_make_service_with_connect_info::<AdminPeer>()`, as [`serve`] does.
pub fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .route(
            "/admin/cert/issue",
            post(issue).layer(DefaultBodyLimit::max(MAX_ISSUE_BODY)),
        )
        .route(
            "/admin/cert/{serial}/status",
            post(set_status).layer(DefaultBodyLimit::max(MAX_BODY)),
        )
        .route("/admin/cert/{serial}", get(show))
        .route("/admin/cert", get(list))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        .with_state(state)
}

/// Runs blocking CA/HSM/store work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "admin: blocking task failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })?
}

fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("request body: {e}")))
}

fn parse_serial(text: &str) -> Result<Vec<u8>, ApiError> {
    let serial = parse_serial_hex(text).map_err(|e| ApiError::bad(format!("serial: {e}")))?;
    Ok(serial_bytes(&serial).to_vec())
}

/// Identity claims as the admin API takes them (the OIDC claim names).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Claims {
    name: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    personal_identifier: Option<String>,
    country: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueRequest {
    profile: String,
    csr: String,
    claims: Claims,
}

/// The CSR field: PEM text, or base64 (standard alphabet, whitespace ignored) of the DER.
fn csr_bytes(csr: &str) -> Result<Vec<u8>, ApiError> {
    let trimmed = csr.trim();
    if trimmed.starts_with("-----BEGIN") {
        return Ok(trimmed.as_bytes().to_vec());
    }
    let compact: String = trimmed
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| ApiError::bad(format!("csr: neither PEM nor base64-encoded DER ({e})")))
}

/// An `admin.*` audit event of the caller `uid`: `Ok` with the certificate's serial (and SHA-256), or the
/// refusal. Logged and continued when the audit write fails ([`esigd_service::audit`]).
async fn admin_audit(
    st: &WebState,
    kind: &str,
    uid: u32,
    result: Result<(String, Option<String>), &ApiError>,
) {
    let mut e = esigd_store::signatures::AuditEvent::new(kind, SystemTime::now());
    e.caller_uid = Some(uid);
    match result {
        Ok((serial, sha256)) => {
            e.outcome = Some("success".into());
            e.certificate_serial = Some(serial);
            e.certificate_sha256 = sha256;
        }
        Err(err) => {
            e.outcome = Some("failure".into());
            // The status and the field at fault only: a message may quote the claims given.
            let field = err.message().split(':').next().unwrap_or_default();
            e.message = Some(format!("{} ({field})", err.status().as_u16()));
        }
    }
    esigd_service::audit::record_or_log(&st.svc.signatures, &e).await;
}

async fn issue(
    State(st): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<AdminPeer>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let uid = peer.required_uid()?;
    let result = issue_cert(st.clone(), &peer, uid, body).await;
    if let Err(e) = &result {
        admin_audit(&st, "admin.certificate.issued", uid, Err(e)).await;
    }
    result
}

async fn issue_cert(
    st: Arc<WebState>,
    peer: &AdminPeer,
    uid: u32,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: IssueRequest = parse_json(&body)?;
    match req.profile.as_str() {
        "scd" => {}
        "one_time" | "one-time" => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "profile: one-time certificates are issued only by the signing pipeline",
            ));
        }
        other => {
            return Err(ApiError::bad(format!(
                "profile: unknown profile `{other}` (the admin API issues `scd`)"
            )));
        }
    }
    let csr = csr_bytes(&req.csr)?;
    let c = req.claims;
    let claims = IdentityClaims {
        name: c.name,
        given_name: c.given_name,
        family_name: c.family_name,
        personal_identifier: c.personal_identifier,
        country: c.country,
    };
    let state = st.clone();
    let issued = blocking(move || {
        let st = state;
        // Parsed here (not inside issue_scd) so that CSR faults are reported against `csr`.
        let verified =
            esigd_pki::csr::parse_csr(&csr).map_err(|e| ApiError::bad(format!("csr: {e}")))?;
        st.svc
            .ca
            .issue_scd_for_key(verified.public_key().clone(), &claims, SystemTime::now())
            .map_err(|e| ApiError::ca("claims", e))
    })
    .await?;
    let pem = esigd_pki::pem::to_pem("CERTIFICATE", &issued.der).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("certificate: {e}"),
        )
    })?;
    tracing::info!(serial = %issued.serial_hex(), profile = "scd", uid, pid = ?peer.pid, "admin: certificate issued");
    admin_audit(
        &st,
        "admin.certificate.issued",
        uid,
        Ok((
            issued.serial_hex(),
            Some(esigd_pki::pem::sha256_thumbprint(&issued.der)),
        )),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"certificateId": issued.serial_hex(), "certificate": pem})),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusRequest {
    action: String,
    reason: Option<String>,
    actor: Option<String>,
    justification: Option<String>,
}

/// RFC 5280 reason names (as in `openssl crl -text` / OCSP) to their codes.
const REASON_NAMES: &[(&str, u8)] = &[
    ("unspecified", 0),
    ("keyCompromise", 1),
    ("cACompromise", 2),
    ("affiliationChanged", 3),
    ("superseded", 4),
    ("cessationOfOperation", 5),
    ("certificateHold", 6),
    ("removeFromCRL", 8),
    ("privilegeWithdrawn", 9),
    ("aACompromise", 10),
];

/// Parses a revocation reason given by its RFC 5280 name (case-insensitive) or code.
pub fn parse_reason(text: &str) -> Result<RevocationReason, String> {
    let t = text.trim();
    let code = match t.parse::<u8>() {
        Ok(c) => c,
        Err(_) => REASON_NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(t))
            .map(|(_, c)| *c)
            .ok_or_else(|| {
                let names: Vec<_> = REASON_NAMES.iter().map(|(n, _)| *n).collect();
                format!("`{t}` is not an RFC 5280 reason ({})", names.join(", "))
            })?,
    };
    RevocationReason::from_code(code)
}

/// The RFC 5280 name of a reason.
pub fn reason_name(reason: RevocationReason) -> &'static str {
    REASON_NAMES
        .iter()
        .find(|(_, c)| *c == reason.code())
        .map_or("unspecified", |(n, _)| n)
}

async fn set_status(
    State(st): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<AdminPeer>,
    UrlPath(serial): UrlPath<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let uid = peer.required_uid()?;
    let result = change_status(st.clone(), &peer, uid, serial, body).await;
    if let Err(e) = &result {
        admin_audit(&st, "admin.certificate.status_changed", uid, Err(e)).await;
    }
    result
}

async fn change_status(
    st: Arc<WebState>,
    peer: &AdminPeer,
    uid: u32,
    serial: String,
    body: Bytes,
) -> Result<Response, ApiError> {
    let serial = parse_serial(&serial)?;
    let req: StatusRequest = parse_json(&body)?;
    let transition = match (req.action.as_str(), req.reason.as_deref()) {
        ("revoke", Some(r)) => {
            Transition::Revoke(parse_reason(r).map_err(|e| ApiError::bad(format!("reason: {e}")))?)
        }
        ("revoke", None) => return Err(ApiError::bad("reason: required for action `revoke`")),
        ("suspend" | "resume", Some(_)) => {
            return Err(ApiError::bad(
                "reason: only for action `revoke` (a suspension is always certificateHold)",
            ));
        }
        ("suspend", None) => Transition::Suspend,
        ("resume", None) => Transition::Resume,
        (other, _) => {
            return Err(ApiError::bad(format!(
                "action: `{other}` is not one of suspend, resume, revoke"
            )));
        }
    };
    let actor = req.actor.unwrap_or_default();
    if actor.trim().is_empty() {
        return Err(ApiError::bad(
            "actor: who asks for the change must be given",
        ));
    }
    let justification = req.justification.unwrap_or_default();
    let state = st.clone();
    let record = blocking(move || {
        state
            .svc
            .ca
            .set_status_as(
                &serial,
                transition,
                &actor,
                Some(uid),
                &justification,
                SystemTime::now(),
            )
            .map_err(|e| ApiError::ca("serial", e))
    })
    .await?;
    // The next /pki/crl request signs a CRL with this change.
    st.svc.crls.invalidate();
    tracing::info!(serial = %record.serial_hex(), action = %req.action, uid, pid = ?peer.pid, "admin: certificate status changed");
    admin_audit(
        &st,
        "admin.certificate.status_changed",
        uid,
        Ok((record.serial_hex(), None)),
    )
    .await;
    Ok(axum::Json(record_json(&record, SystemTime::now())).into_response())
}

async fn show(
    State(st): State<Arc<WebState>>,
    UrlPath(serial): UrlPath<String>,
) -> Result<Response, ApiError> {
    let serial = parse_serial(&serial)?;
    let hex_serial = hex::encode(&serial);
    let record = blocking(move || {
        st.svc
            .ca
            .certificate(&serial)
            .map_err(|e| ApiError::ca("serial", e))
    })
    .await?
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("serial: no certificate {hex_serial} issued by this CA"),
        )
    })?;
    Ok(axum::Json(record_json(&record, SystemTime::now())).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    profile: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

async fn list(
    State(st): State<Arc<WebState>>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::bad(format!("query: {}", e.body_text())))?;
    let profile = match p.profile.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some("one_time") => Some(ProfileKind::OneTime),
        Some(name) => Some(ProfileKind::parse(name).ok_or_else(|| {
            ApiError::bad(format!(
                "profile: unknown profile `{name}` (one-time, scd, tsa, ocsp-responder)"
            ))
        })?),
    };
    let after_serial = match p.after.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            parse_serial_hex(s)
                .map(|s| serial_bytes(&s).to_vec())
                .map_err(|e| ApiError::bad(format!("after: {e}")))?,
        ),
    };
    let limit = match p.limit {
        None | Some(0) => 100,
        Some(n) if n > MAX_LIMIT => {
            return Err(ApiError::bad(format!("limit: at most {MAX_LIMIT}")));
        }
        Some(n) => n,
    };
    let query = ListQuery {
        profile,
        after_serial,
        limit,
    };
    let records =
        blocking(move || st.svc.ca.list(&query).map_err(|e| ApiError::ca("query", e))).await?;
    let now = SystemTime::now();
    let next = (records.len() == limit)
        .then(|| records.last().map(CertRecord::serial_hex))
        .flatten();
    let certificates: Vec<Value> = records.iter().map(|r| record_json(r, now)).collect();
    Ok(axum::Json(json!({"certificates": certificates, "next": next})).into_response())
}

fn time_json(t: SystemTime) -> Value {
    json!(humantime::format_rfc3339_seconds(t).to_string())
}

fn status_json(s: &StoredStatus) -> Value {
    match s {
        StoredStatus::Active => json!({"state": "active"}),
        StoredStatus::Suspended { since } => {
            json!({"state": "suspended", "since": time_json(*since)})
        }
        StoredStatus::Revoked { since, reason } => json!({
            "state": "revoked",
            "since": time_json(*since),
            "reason": reason_name(*reason),
        }),
    }
}

fn change_json(c: &StatusChange) -> Value {
    json!({
        "from": status_json(&c.from),
        "to": status_json(&c.to),
        "actor": c.actor,
        "uid": c.uid,
        "justification": c.justification,
        "at": time_json(c.at),
    })
}

/// A certificate record as JSON (the certificate as PEM).
fn record_json(r: &CertRecord, now: SystemTime) -> Value {
    let state = match r.state(now) {
        CertState::Active => "ACTIVE",
        CertState::Suspended => "SUSPENDED",
        CertState::Revoked => "REVOKED",
        CertState::Expired => "EXPIRED",
    };
    json!({
        "certificateId": r.serial_hex(),
        "profile": r.profile.as_str(),
        "subject": r.subject,
        "notBefore": time_json(r.not_before),
        "notAfter": time_json(r.not_after),
        "state": state,
        "status": status_json(&r.status),
        "history": r.history.iter().map(change_json).collect::<Vec<_>>(),
        "certificate": esigd_pki::pem::to_pem("CERTIFICATE", &r.der).ok(),
    })
}
