//! The two listeners of the appliance, on the accept loops of [`esigd_net`].
//!
//! * [`serve_public`]: plain HTTP (HTTP/1.1 + h2c) for the public routes; handlers see the peer address through
//!   `axum::extract::ConnectInfo<SocketAddr>`. Route-level IP allow-lists (e.g. `/metrics`) are the app's job.
//! * [`serve_eservice`]: mutual TLS 1.3 (rustls, ring) for the e-Service API. A connection from an IP outside the
//!   [`AllowList`] is closed before the handshake; the client certificate is required and verified against the
//!   configured client CAs; each request carries `Arc<PeerInfo>` (leaf DER, SHA-256 of the certificate and of
//!   its SPKI, subject) and `ConnectInfo<SocketAddr>`.
//!
//! What esigd adds to the generic loops: the e-Service identity ([`PeerInfo`]) and the API's error document for
//! a request body that missed `listen.body_read_timeout` (408).
//!
//! ```no_run
//! # async fn demo(app: axum::Router, pem: esigd_web::net::MtlsPem<'_>) -> anyhow::Result<()> {
//! use esigd_web::net::*;
//! let allow = AllowList::new(vec!["10.1.2.0/24".parse()?]);
//! let tls = EserviceTls { config: Reloadable::from_arc(mtls_server_config(&pem)?), allow: allow.clone() };
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(serve_eservice(listener, app, tls, ServeOptions::default(), async move {
//!     let _ = stop_rx.await;
//! }));
//! // on SIGHUP: allow.replace(new_nets); tls_handle.store_arc(new_config);
//! let _ = stop_tx.send(());
//! let report = server.await??;
//! # let _ = report; Ok(()) }
//! ```

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use tokio::net::TcpListener;

pub use esigd_net::forwarded;
pub use esigd_net::{
    AllowList, DEFAULT_ESERVICE_MAX_CONNECTIONS_PER_IP, DEFAULT_MAX_CONNECTIONS_PER_IP, Limits,
    ListenerCounts, ListenerStats, MtlsPem, NetError, Reloadable, ServeOptions, ShutdownReport,
    TimeoutAnswer, address_bucket, canonical_ip, mtls_server_config, mtls_server_config_from_files,
    provider,
};
pub use esigd_service::registry::PeerInfo;

use crate::error::ApiError;

/// TLS side of the e-Service listener (the generic [`esigd_net::TlsListener`]): both fields are reloadable
/// handles; keep clones and replace their contents on SIGHUP.
pub use esigd_net::TlsListener as EserviceTls;

/// The API's error document for a request body not complete within `listen.body_read_timeout`, unless the
/// caller chose another answer.
fn with_api_timeout(mut opts: ServeOptions) -> ServeOptions {
    if opts.body_timeout_answer.is_none() {
        opts.body_timeout_answer = Some(TimeoutAnswer::new(|| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request body not complete within listen.body_read_timeout",
            )
            .into_response()
        }));
    }
    opts
}

/// Serves `app` over plain HTTP until `shutdown` resolves ([`esigd_net::serve_public`], with the API's 408
/// document).
pub async fn serve_public<F>(
    listener: TcpListener,
    app: Router,
    opts: ServeOptions,
    shutdown: F,
) -> Result<ShutdownReport, NetError>
where
    F: Future<Output = ()> + Send,
{
    esigd_net::serve_public(listener, app, with_api_timeout(opts), shutdown).await
}

/// Serves `app` over mutual TLS until `shutdown` resolves ([`esigd_net::serve_tls`]): every request carries
/// `ConnectInfo<SocketAddr>` and `Arc<PeerInfo>` built from the verified client chain; a connection whose leaf
/// does not parse is closed.
pub async fn serve_eservice<F>(
    listener: TcpListener,
    app: Router,
    tls: EserviceTls,
    opts: ServeOptions,
    shutdown: F,
) -> Result<ShutdownReport, NetError>
where
    F: Future<Output = ()> + Send,
{
    let identify = |addr, chain: &[rustls::pki_types::CertificateDer<'static>]| {
        let peer = PeerInfo::from_chain(addr, chain)?;
        tracing::debug!(peer = %addr, cert_sha256 = %peer.cert_sha256_hex(), "e-Service connection");
        Some(Arc::new(peer))
    };
    esigd_net::serve_tls(
        listener,
        app,
        tls,
        with_api_timeout(opts),
        shutdown,
        identify,
    )
    .await
}
