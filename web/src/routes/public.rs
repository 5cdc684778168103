//! Public listener routes (no client certificate): CA publication, OCSP, the RFC 3161 TSA and
//! health. The URLs inside certificates point here (`ca.base_url`).

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use esigd_pki::pem::{
    MEDIA_TYPE_CERT_DER, MEDIA_TYPE_CRL_DER, MEDIA_TYPE_OCSP_REQUEST, MEDIA_TYPE_OCSP_RESPONSE,
    parse_serial_hex, serial_bytes,
};
use serde_json::json;

use crate::ratelimit::PublicRateLimit;
use crate::state::WebState;

/// Largest OCSP request accepted (a request for a handful of certificates is a few hundred bytes).
const MAX_OCSP_REQUEST: usize = 16 * 1024;
/// Largest time-stamp query accepted at the HTTP layer; the TSA's own limit answers with a
/// proper rejection below this.
const MAX_TSA_BODY: usize = 128 * 1024;

/// The public router. `/tsa` and `/ocsp` (each request may cost an HSM signature) are rate
/// limited per client (`limits.public_rate_per_ip`, see [`crate::ratelimit`]).
pub fn router(state: Arc<WebState>) -> Router {
    let limits = &state.svc.settings.limits;
    let costly = Router::new()
        .route(
            "/ocsp",
            post(ocsp_post).layer(DefaultBodyLimit::max(MAX_OCSP_REQUEST)),
        )
        .route("/ocsp/{*request}", get(ocsp_get))
        .route("/tsa", post(tsa).layer(DefaultBodyLimit::max(MAX_TSA_BODY)));
    let costly = match PublicRateLimit::new(
        limits.public_rate_per_ip,
        limits.public_burst(),
        &limits.public_rate_exempt,
        crate::ratelimit::TABLE_MAX,
    ) {
        Some(limit) => costly.route_layer(axum::middleware::from_fn_with_state(
            Arc::new(limit),
            crate::ratelimit::limit,
        )),
        None => costly,
    };
    Router::new()
        .merge(costly)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/pki/ca.pem", get(ca_pem))
        .route("/pki/ca.crt", get(ca_der))
        .route("/pki/chain.pem", get(chain_pem))
        .route("/pki/tsa.pem", get(tsa_pem))
        .route("/pki/tsa.crt", get(tsa_der))
        .route("/pki/crl", get(crl))
        .route("/pki/certs/{serial}", get(certificate))
        .route("/v1/openapi.yaml", get(openapi))
        .route("/v1/client/esig.js", get(esig_js))
        .route("/v1/notifications/jwks", get(notifications_jwks))
        .with_state(state)
}

/// `GET /v1/notifications/jwks`: the public key (JWKS, ES256) that signs the notification
/// webhooks' `X-Esigd-Signature`; 404 when `[notifications]` is not configured.
async fn notifications_jwks(State(st): State<Arc<WebState>>) -> Response {
    match &st.svc.notifier {
        Some(n) => (
            [
                (header::CONTENT_TYPE, "application/jwk-set+json"),
                (header::CACHE_CONTROL, "public, max-age=300"),
            ],
            n.jwks().to_string(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "notifications are not configured on this appliance ([notifications])"})),
        )
            .into_response(),
    }
}

fn bytes(content_type: &'static str, body: Vec<u8>) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

fn text_error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", message.into()),
    )
        .into_response()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| text_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
}

/// The OpenAPI document of what esigd implements.
pub const OPENAPI_YAML: &str = include_str!("../../assets/openapi.yaml");
/// The e-Service client library (ES module).
pub const ESIG_JS: &str = include_str!("../../assets/esig.js");

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/yaml; charset=utf-8")],
        OPENAPI_YAML,
    )
        .into_response()
}

/// The Subresource Integrity value of [`ESIG_JS`] (`sha384-<base64>`): an e-Service can pin the
/// library with it (`integrity` in an import map or a `<script>` tag). Served as the ETag.
pub fn esig_js_integrity() -> &'static str {
    static SRI: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SRI.get_or_init(|| {
        use base64::Engine;
        use sha2::Digest;
        let digest = sha2::Sha384::digest(ESIG_JS.as_bytes());
        format!(
            "sha384-{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    })
}

/// Served cross-origin: e-Service pages import it from here. The ETag is its integrity value, so
/// a browser revalidates with `If-None-Match` and gets 304 while the library is unchanged.
async fn esig_js(headers: HeaderMap) -> Response {
    let etag = format!("\"{}\"", esig_js_integrity());
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        // Weak comparison (RFC 9110 13.1.2): a proxy that compresses may send back W/"…".
        .any(|t| {
            let t = t.trim();
            t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag
        });
    let mut r = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ESIG_JS.into_response()
    };
    let h = r.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "public, max-age=300"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    r
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(st): State<Arc<WebState>>) -> Response {
    let checks = match blocking(move || st.svc.readiness()).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let ready = checks.iter().all(|(_, r)| r.is_ok());
    let body = json!({
        "ready": ready,
        "checks": checks
            .iter()
            .map(|(name, r)| (name.to_string(), match r { Ok(()) => json!("ok"), Err(e) => json!(e) }))
            .collect::<serde_json::Map<_, _>>(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn ca_pem(State(st): State<Arc<WebState>>) -> Response {
    bytes(
        "application/x-pem-file",
        st.svc.crls.published().ca_pem.clone(),
    )
}

async fn ca_der(State(st): State<Arc<WebState>>) -> Response {
    bytes(MEDIA_TYPE_CERT_DER, st.svc.crls.published().ca_der.clone())
}

async fn chain_pem(State(st): State<Arc<WebState>>) -> Response {
    bytes(
        "application/x-pem-file",
        st.svc.crls.published().chain_pem.clone(),
    )
}

async fn tsa_pem(State(st): State<Arc<WebState>>) -> Response {
    bytes(
        "application/x-pem-file",
        st.svc.crls.published().tsa_pem.clone(),
    )
}

async fn tsa_der(State(st): State<Arc<WebState>>) -> Response {
    bytes(MEDIA_TYPE_CERT_DER, st.svc.crls.published().tsa_der.clone())
}

async fn crl(State(st): State<Arc<WebState>>) -> Response {
    match blocking(move || st.svc.crls.current(st.svc.clock.now())).await {
        Ok(Ok(der)) => {
            let mut r = bytes(MEDIA_TYPE_CRL_DER, der.to_vec());
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=60"),
            );
            r
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "building the CRL");
            text_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "CRL temporarily unavailable",
            )
        }
        Err(r) => r,
    }
}

async fn certificate(
    State(st): State<Arc<WebState>>,
    Path(serial): Path<String>,
    headers: HeaderMap,
) -> Response {
    let serial = match parse_serial_hex(&serial) {
        Ok(s) => s,
        Err(e) => return text_error(StatusCode::BAD_REQUEST, format!("serial: {e}")),
    };
    let key = serial_bytes(&serial).to_vec();
    let record = match blocking(move || st.svc.ca.certificate(&key)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reading certificate");
            return text_error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable");
        }
        Err(r) => return r,
    };
    let Some(record) = record else {
        return text_error(StatusCode::NOT_FOUND, "no certificate with that serial");
    };
    let wants_der = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(MEDIA_TYPE_CERT_DER));
    if wants_der {
        bytes(MEDIA_TYPE_CERT_DER, record.der)
    } else {
        match esigd_pki::pem::to_pem("CERTIFICATE", &record.der) {
            Ok(pem) => bytes("application/x-pem-file", pem.into_bytes()),
            Err(_) => text_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode certificate",
            ),
        }
    }
}

/// Answers from the OCSP cache when it can (identical requests without a nonce; see
/// [`esigd_service::certs::Crls::ocsp`]), so a flood of one request is not an HSM signature each.
async fn answer_ocsp(st: Arc<WebState>, request: Vec<u8>) -> Response {
    match blocking(move || st.svc.crls.ocsp(&request, SystemTime::now())).await {
        Ok(der) => bytes(MEDIA_TYPE_OCSP_RESPONSE, der),
        Err(r) => r,
    }
}

async fn ocsp_post(State(st): State<Arc<WebState>>, headers: HeaderMap, body: Bytes) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with(MEDIA_TYPE_OCSP_REQUEST) {
        return text_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type must be {MEDIA_TYPE_OCSP_REQUEST}"),
        );
    }
    answer_ocsp(st, body.to_vec()).await
}

/// RFC 6960 Appendix A.1: GET {url}/{url-encoding of base-64 encoding of the DER OCSPRequest}.
async fn ocsp_get(State(st): State<Arc<WebState>>, Path(encoded): Path<String>) -> Response {
    // axum has already percent-decoded the path segment(s).
    match esigd_pki::ocsp::decode_get_request(&encoded) {
        Some(der) => answer_ocsp(st, der).await,
        // A malformed GET is still answered in OCSP terms.
        None => bytes(
            MEDIA_TYPE_OCSP_RESPONSE,
            esigd_pki::ocsp::malformed_request(),
        ),
    }
}

async fn tsa(
    State(st): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let allowed = &st.svc.settings.tsa.allowed_ips;
    let ip = crate::net::canonical_ip(peer.ip());
    if !allowed.is_empty() && !allowed.iter().any(|n| n.contains(&ip)) {
        tracing::info!(peer = %ip, "time-stamp request from an address outside tsa.allowed_ips");
        return text_error(
            StatusCode::FORBIDDEN,
            "this address may not use the TSA (tsa.allowed_ips)",
        );
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/timestamp-query") {
        return text_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/timestamp-query",
        );
    }
    // A granted token is sent only once its audit record is durable (systemFailure otherwise).
    let der = match st.svc.stamp_queue.stamp(body.to_vec()).await {
        Ok(der) => der,
        // Overload, not a failure of the TSA: no systemFailure token, the client retries.
        Err(busy) => {
            st.metrics.error("tsa_queue_full");
            tracing::debug!(error = %busy, "time-stamp request refused");
            let mut r = text_error(StatusCode::SERVICE_UNAVAILABLE, busy.to_string());
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
    };
    let mut r = bytes("application/timestamp-reply", der);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
