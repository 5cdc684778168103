//! Per-request observability for both listeners: a tower layer ([`layer`]) that gives every
//! request a correlation ID ([`RequestId`]), runs the handler inside a `request` tracing span
//! carrying that ID, method and route template, echoes the ID in `x-request-id`, logs one line
//! per completed request and records `esigd_http_requests_total` and
//! `esigd_http_request_duration_seconds`.
//!
//! What is logged: method, route template (never the raw path), status, latency and peer IP
//! (the client behind a trusted proxy, with the proxy's IP as `proxy`).
//! What is never logged or used as a label: the query string, the raw path, headers (other than
//! a validated `X-Request-ID`/`traceparent` trace-id), and bodies; they carry ID tokens,
//! payment tokens and document hashes.
//!
//! # Placement
//!
//! Apply it with [`axum::Router::layer`], as the last call on the fully built router (after every
//! `route`, `merge`, `nest`, `fallback` and `with_state`):
//!
//! ```no_run
//! # fn demo(app: axum::Router, metrics: std::sync::Arc<esigd::metrics::Metrics>) {
//! let app = app.layer(esigd::observe::layer(metrics, "public"));
//! # }
//! ```
//!
//! `Router::layer` wraps every route *and* the fallback, and axum inserts `MatchedPath` before
//! calling the matched route, so matched requests are labelled with their template and requests
//! that reach the fallback (404) are observed as `route="unmatched"`. `Router::route_layer` would
//! skip the fallback, so 404s would be neither logged nor counted. Routes added *after* the call
//! are not wrapped. Wrapping the whole router from outside (e.g. a `ServiceBuilder` around it)
//! would run before routing and never see `MatchedPath`.
//!
//! The latency is measured until the response head is ready (bodies here are small and
//! buffered); the request ID of a request is available to handlers as
//! `axum::Extension<RequestId>`.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::metrics::Metrics;

/// The header that carries the correlation ID in both directions.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The W3C Trace Context header whose trace-id is used when no `X-Request-ID` is given.
pub const TRACEPARENT_HEADER: HeaderName = HeaderName::from_static("traceparent");

/// Route label of requests that matched no route (404 from the fallback).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The correlation ID of one request: the client's `X-Request-ID` when it is 1–128 characters
/// of `[A-Za-z0-9._:-]`, else the trace-id of a valid W3C `traceparent`, else 32 random hex
/// digits. Inserted into the request extensions by [`layer`] (read it with
/// `axum::Extension<RequestId>`), echoed in the `x-request-id` response header and recorded as
/// `request_id` on the `request` span, so every log line of the request carries it. Pass it on
/// to workflows that log outside the span (blocking threads, queued work).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(pub String);

impl RequestId {
    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `id` is acceptable as a client-supplied request ID: 1–128 characters of
/// `[A-Za-z0-9._:-]`, so it is safe to echo in a header and to write into logs.
pub fn valid_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn lower_hex(b: &[u8]) -> bool {
    b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// The trace-id of a W3C Trace Context `traceparent` value
/// (`{version:2}-{trace-id:32}-{parent-id:16}-{flags:2}`, lowercase hex), or `None` when the
/// value is invalid: version `ff`, an all-zero trace-id or parent-id, wrong lengths, or (for
/// version `00`) anything after the flags. Later versions may append `-`-separated fields.
pub fn traceparent_trace_id(value: &str) -> Option<&str> {
    let b = value.as_bytes();
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let (version, trace, parent, flags) = (&b[0..2], &b[3..35], &b[36..52], &b[53..55]);
    if !lower_hex(version) || version == b"ff" {
        return None;
    }
    if b.len() > 55 && (version == b"00" || b[55] != b'-') {
        return None;
    }
    if !lower_hex(trace) || !lower_hex(parent) || !lower_hex(flags) {
        return None;
    }
    if trace.iter().all(|&c| c == b'0') || parent.iter().all(|&c| c == b'0') {
        return None;
    }
    // All bytes checked so far are ASCII, so 3..35 is a char boundary.
    value.get(3..35)
}

/// The correlation ID for a request with these headers (see [`RequestId`]).
pub fn request_id_from(headers: &HeaderMap) -> String {
    if let Some(id) = headers
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| valid_request_id(id))
    {
        return id.to_owned();
    }
    if let Some(trace) = headers
        .get(&TRACEPARENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| traceparent_trace_id(v.trim()))
    {
        return trace.to_owned();
    }
    hex::encode(rand::random::<[u8; 16]>())
}

/// The request-observing layer for listener `listener` (`"public"`, `"eservice"`): apply it with
/// `Router::layer` as described in the [module documentation](self).
pub fn layer(metrics: Arc<Metrics>, listener: &'static str) -> ObserveLayer {
    ObserveLayer { metrics, listener }
}

/// The layer returned by [`layer`].
#[derive(Clone, Debug)]
pub struct ObserveLayer {
    metrics: Arc<Metrics>,
    listener: &'static str,
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            metrics: self.metrics.clone(),
            listener: self.listener,
        }
    }
}

/// The service produced by [`ObserveLayer`] around one route.
#[derive(Clone, Debug)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
    listener: &'static str,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let start = Instant::now();
        // The clone that was polled ready serves this request; the fresh clone stays behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);

        let id = request_id_from(req.headers());
        req.extensions_mut().insert(RequestId(id.clone()));
        let method = req.method().clone();
        let route: Arc<str> = match req.extensions().get::<MatchedPath>() {
            Some(m) => Arc::from(m.as_str()),
            None => Arc::from(UNMATCHED_ROUTE),
        };
        let peer: Option<IpAddr> = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_canonical());
        // Set by `net::forwarded::real_client` when `peer` is the client behind a trusted proxy.
        let proxy: Option<IpAddr> = req
            .extensions()
            .get::<crate::net::forwarded::ProxiedBy>()
            .map(|p| p.0.ip().to_canonical());
        let span = tracing::info_span!(
            "request",
            request_id = %id,
            method = %method,
            route = %route,
        );
        let future = span.in_scope(|| inner.call(req));
        let metrics = self.metrics.clone();
        let listener = self.listener;
        Box::pin(async move {
            let mut response = match future.instrument(span.clone()).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let elapsed = start.elapsed();
            let status = response.status();
            metrics.http_request(listener, &route, status, elapsed);
            if let Ok(v) = HeaderValue::from_str(&id) {
                response.headers_mut().insert(REQUEST_ID_HEADER, v);
            }
            let latency_ms = elapsed.as_micros() as f64 / 1000.0;
            span.in_scope(|| {
                tracing::info!(
                    status = status.as_u16(),
                    latency_ms,
                    peer = peer.map(tracing::field::display),
                    proxy = proxy.map(tracing::field::display),
                    "request completed"
                );
            });
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Extension;
    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use std::io::Write;
    use std::sync::Mutex;
    use tower::ServiceExt;

    #[test]
    fn request_id_acceptance() {
        assert!(valid_request_id("a"));
        assert!(valid_request_id("req-1.2_3:4"));
        assert!(valid_request_id(&"x".repeat(128)));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id(&"x".repeat(129)));
        assert!(!valid_request_id("with space"));
        assert!(!valid_request_id("a/b"));
        assert!(!valid_request_id("a\"b"));
        assert!(!valid_request_id("é"));
        assert!(!valid_request_id("a\nb"));
    }

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn traceparent_parsing() {
        let ok = format!("00-{TRACE}-00f067aa0ba902b7-01");
        assert_eq!(traceparent_trace_id(&ok), Some(TRACE));
        // A future version may append fields.
        let future = format!("01-{TRACE}-00f067aa0ba902b7-01-extra");
        assert_eq!(traceparent_trace_id(&future), Some(TRACE));
        for bad in [
            format!("00-{TRACE}-00f067aa0ba902b7-01-extra"),
            format!("ff-{TRACE}-00f067aa0ba902b7-01"),
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            format!("00-{TRACE}-0000000000000000-01"),
            format!("00-{}-00f067aa0ba902b7-01", TRACE.to_uppercase()),
            format!("00-{TRACE}-00f067aa0ba902b7-0"),
            format!("00-{TRACE}-00f067aa0ba902b7_01"),
            format!("01-{TRACE}-00f067aa0ba902b7-01x"),
            format!("0g-{TRACE}-00f067aa0ba902b7-01"),
            format!("00-{TRACE}é-00f067aa0ba902b7-01"),
            String::new(),
            "garbage".to_string(),
        ] {
            assert_eq!(traceparent_trace_id(&bad), None, "{bad}");
        }
    }

    #[test]
    fn request_id_precedence() {
        let mut h = HeaderMap::new();
        let tp = format!("00-{TRACE}-00f067aa0ba902b7-01");
        h.insert(TRACEPARENT_HEADER, HeaderValue::from_str(&tp).unwrap());
        assert_eq!(request_id_from(&h), TRACE);
        h.insert(REQUEST_ID_HEADER, HeaderValue::from_static("client-id-7"));
        assert_eq!(request_id_from(&h), "client-id-7");
        // An invalid X-Request-ID falls back to the traceparent.
        h.insert(REQUEST_ID_HEADER, HeaderValue::from_static("bad id"));
        assert_eq!(request_id_from(&h), TRACE);
        h.remove(TRACEPARENT_HEADER);
        let generated = request_id_from(&h);
        assert_eq!(generated.len(), 32);
        assert!(lower_hex(generated.as_bytes()));
        assert_ne!(generated, request_id_from(&h));
    }

    fn app(metrics: Arc<Metrics>) -> Router {
        Router::new()
            .route(
                "/items/{id}",
                get(|Extension(id): Extension<RequestId>| async move {
                    tracing::info!("inside the handler");
                    id.0
                }),
            )
            .route("/fail", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
            .layer(layer(metrics, "public"))
    }

    fn get_req(uri: &str) -> axum::http::request::Builder {
        axum::http::Request::builder().uri(uri)
    }

    async fn body_text(r: Response) -> String {
        let b = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn client_id_is_echoed_and_visible_to_the_handler() {
        let m = Arc::new(Metrics::new().unwrap());
        let r = app(m)
            .oneshot(
                get_req("/items/1")
                    .header("x-request-id", "abc-123")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["x-request-id"], "abc-123");
        assert_eq!(body_text(r).await, "abc-123");
    }

    #[tokio::test]
    async fn invalid_client_id_is_replaced() {
        let m = Arc::new(Metrics::new().unwrap());
        let r = app(m)
            .oneshot(
                get_req("/items/1")
                    .header("x-request-id", "has space")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let echoed = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(echoed.len(), 32);
        assert_ne!(echoed, "has space");
        assert_eq!(body_text(r).await, echoed);
    }

    #[tokio::test]
    async fn metrics_use_templates_and_count_404_as_unmatched() {
        let m = Arc::new(Metrics::new().unwrap());
        let app = app(m.clone());
        for uri in [
            "/items/raw-value-1?token=s3cret",
            "/items/raw-value-2",
            "/fail",
            "/nowhere/x",
        ] {
            let r = app
                .clone()
                .oneshot(get_req(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert!(r.headers().contains_key("x-request-id"), "{uri}");
        }
        // 405: the path matched, the method did not.
        let r = app
            .clone()
            .oneshot(
                get_req("/items/3")
                    .method("POST")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        let text = m.render();
        assert!(text.contains(
            "esigd_http_requests_total{listener=\"public\",route=\"/items/{id}\",status=\"200\"} 2"
        ), "{text}");
        assert!(text.contains(
            "esigd_http_requests_total{listener=\"public\",route=\"/items/{id}\",status=\"405\"} 1"
        ), "{text}");
        assert!(
            text.contains(
                "esigd_http_requests_total{listener=\"public\",route=\"/fail\",status=\"503\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains(
            "esigd_http_requests_total{listener=\"public\",route=\"unmatched\",status=\"404\"} 1"
        ), "{text}");
        assert!(text.contains(
            "esigd_http_request_duration_seconds_count{listener=\"public\",route=\"/items/{id}\"} 3"
        ), "{text}");
        assert!(!text.contains("raw-value"), "{text}");
        assert!(!text.contains("nowhere"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn logs_carry_the_id_and_never_the_query_or_headers() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let m = Arc::new(Metrics::new().unwrap());
        let mut req = get_req("/items/raw-value-9?id_token=s3cret-token")
            .header("x-request-id", "log-id-1")
            .header("authorization", "Bearer s3cret-bearer")
            .body(Body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 7], 5555))));
        let r = app(m).oneshot(req).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let _ = body_text(r).await;

        let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = logs.lines().collect();
        let handler = lines
            .iter()
            .find(|l| l.contains("inside the handler"))
            .expect("handler line");
        assert!(handler.contains("request_id=log-id-1"), "{logs}");
        let done = lines
            .iter()
            .find(|l| l.contains("request completed"))
            .expect("completion line");
        for part in [
            "request_id=log-id-1",
            "method=GET",
            "route=/items/{id}",
            "status=200",
            "latency_ms=",
            "peer=192.0.2.7",
        ] {
            assert!(done.contains(part), "{part} missing: {done}");
        }
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.contains("request completed"))
                .count(),
            1
        );
        for secret in ["s3cret", "raw-value", "id_token", "Bearer", "authorization"] {
            assert!(!logs.contains(secret), "{secret} logged: {logs}");
        }
    }
}
