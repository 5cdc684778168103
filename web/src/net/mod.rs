//! The two listeners of the appliance.
//!
//! * [`serve_public`]: plain HTTP (HTTP/1.1 + h2c) for the public routes; handlers see the peer address through
//!   `axum::extract::ConnectInfo<SocketAddr>`. Route-level IP allow-lists (e.g. `/metrics`) are the app's job.
//! * [`serve_eservice`]: mutual TLS 1.3 (rustls, ring) for the e-Service API. A connection from an IP outside the
//!   [`AllowList`] is closed before the handshake; the client certificate is required and verified against the
//!   configured client CAs; each request carries `Arc<PeerInfo>` (leaf DER, SHA-256 of the certificate and of
//!   its SPKI, subject) and `ConnectInfo<SocketAddr>`.
//!
//! Both are hand-written tokio accept loops with an overall and a per-address connection limit, timeouts for the
//! first byte, the request head, the whole request body and idle connections ([`Limits`], `[listen]` in the
//! configuration), counters ([`ListenerStats`]), rate-limited refusal logs and graceful shutdown (stop accepting,
//! drain in-flight requests up to a deadline).
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

mod allow;
mod body;
mod error;
pub mod forwarded;
mod io;
mod limits;
mod serve;
mod throttle;
mod tls;

pub use allow::{AllowList, address_bucket, canonical_ip};
pub use error::NetError;
pub use esigd_service::registry::PeerInfo;
pub use esigd_service::reload::Reloadable;
pub use limits::{
    DEFAULT_ESERVICE_MAX_CONNECTIONS_PER_IP, DEFAULT_MAX_CONNECTIONS_PER_IP, Limits,
    ListenerCounts, ListenerStats,
};
pub use serve::{EserviceTls, ServeOptions, ShutdownReport, serve_eservice, serve_public};
pub use tls::{MtlsPem, mtls_server_config, mtls_server_config_from_files, provider};
