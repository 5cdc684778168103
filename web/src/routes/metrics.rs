//! `GET /metrics`: the Prometheus text exposition of [`Metrics`], behind its own IP allow-list
//! (`metrics.allowed_ips`). An empty list lets everyone scrape; otherwise a peer outside it gets
//! 403. A request without a known peer address is refused when a list is configured.
//!
//! Nothing request-specific is logged here except, for a refused scrape, the peer IP (already
//! canonical); never the query string, headers or body.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ipnet::IpNet;

use crate::metrics::{Metrics, TEXT_CONTENT_TYPE};
use crate::net::AllowList;

/// The route served by [`router`].
pub const METRICS_PATH: &str = "/metrics";

struct Scrape {
    metrics: Arc<Metrics>,
    /// `None`: everyone may scrape.
    allow: Option<AllowList>,
}

/// A router serving `GET /metrics` from `metrics`. `allowed` is `metrics.allowed_ips`: empty
/// means everyone may scrape; otherwise only peers (from `ConnectInfo<SocketAddr>`, IPv4-mapped
/// IPv6 addresses compared as IPv4) inside one of the networks. Merge it into the public router.
pub fn router(metrics: Arc<Metrics>, allowed: Vec<IpNet>) -> Router {
    let allow = if allowed.is_empty() {
        None
    } else {
        Some(AllowList::new(allowed))
    };
    Router::new()
        .route(METRICS_PATH, get(scrape))
        .with_state(Arc::new(Scrape { metrics, allow }))
}

fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "this address may not read the metrics (metrics.allowed_ips)\n",
    )
        .into_response()
}

async fn scrape(State(st): State<Arc<Scrape>>, req: Request) -> Response {
    if let Some(allow) = &st.allow {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_canonical());
        match peer {
            Some(ip) if allow.allows(ip) => {}
            Some(ip) => {
                tracing::info!(peer = %ip, "metrics scrape from an address outside metrics.allowed_ips");
                return forbidden();
            }
            None => {
                tracing::warn!(
                    "metrics scrape without a peer address refused (metrics.allowed_ips is set)"
                );
                return forbidden();
            }
        }
    }
    drop(req);
    // Probes are caller-supplied and may block (HSM pool lock, adjtimex): keep them off the
    // async workers.
    let metrics = st.metrics.clone();
    match tokio::task::spawn_blocking(move || metrics.render()).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(TEXT_CONTENT_TYPE),
            )],
            text,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "metrics rendering failed\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    fn request(peer: Option<[u8; 4]>) -> axum::http::Request<Body> {
        let mut req = axum::http::Request::builder()
            .uri("/metrics")
            .body(Body::empty())
            .unwrap();
        if let Some(ip) = peer {
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::from((ip, 40000))));
        }
        req
    }

    async fn body(r: Response) -> String {
        let b = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(b.to_vec()).unwrap()
    }

    fn metrics() -> Arc<Metrics> {
        let m = Arc::new(Metrics::new().unwrap());
        m.error("store");
        m
    }

    #[tokio::test]
    async fn empty_list_lets_everyone_scrape() {
        let app = router(metrics(), Vec::new());
        for peer in [Some([203, 0, 113, 9]), None] {
            let r = app.clone().oneshot(request(peer)).await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.headers()[header::CONTENT_TYPE], TEXT_CONTENT_TYPE);
            assert!(
                body(r)
                    .await
                    .contains("esigd_errors_total{kind=\"store\"} 1")
            );
        }
    }

    #[tokio::test]
    async fn inside_the_list_is_served() {
        let app = router(metrics(), vec!["10.1.2.0/24".parse().unwrap()]);
        let r = app.oneshot(request(Some([10, 1, 2, 3]))).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(body(r).await.contains("# TYPE esigd_errors_total counter"));
    }

    #[tokio::test]
    async fn ipv4_mapped_peer_matches_the_ipv4_network() {
        let app = router(metrics(), vec!["10.1.2.0/24".parse().unwrap()]);
        let mut req = request(None);
        let mapped: std::net::Ipv6Addr = "::ffff:10.1.2.3".parse().unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((mapped, 40000))));
        let r = app.oneshot(req).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn outside_the_list_is_forbidden() {
        let app = router(metrics(), vec!["10.1.2.0/24".parse().unwrap()]);
        for peer in [Some([10, 1, 3, 1]), None] {
            let r = app.clone().oneshot(request(peer)).await.unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN);
            let text = body(r).await;
            assert!(text.contains("metrics.allowed_ips"), "{text}");
            assert!(!text.contains("esigd_"), "{text}");
        }
    }
}
