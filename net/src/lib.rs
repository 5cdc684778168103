//! esigd-net: the hardened HTTP listeners of esigd, shared with the reference Remote SCD service.
//!
//! * [`serve_public`]: plain HTTP (HTTP/1.1 + h2c); handlers see the peer address through
//!   `axum::extract::ConnectInfo<SocketAddr>`. Route-level IP allow-lists (e.g. `/metrics`) are the app's job.
//! * [`serve_tls`]: TLS (rustls, ring). A connection from an IP outside the [`AllowList`] is closed before the
//!   handshake; with [`mtls_server_config`] the client certificate is required and verified against the
//!   configured client CAs, and a caller-supplied function turns the verified chain into the connection's
//!   identity (esigd: its `PeerInfo`; the Remote SCD service: the relying party), which every request carries
//!   as an extension next to `ConnectInfo<SocketAddr>`. With [`server_config`] no client certificate is asked
//!   for.
//!
//! Both are hand-written tokio accept loops with an overall and a per-address connection limit, timeouts for the
//! first byte, the request head, the whole request body and idle connections ([`Limits`]), counters
//! ([`ListenerStats`]), rate-limited refusal logs and graceful shutdown (stop accepting, drain in-flight requests
//! up to a deadline).
//!
//! The crate knows nothing of esigd's domain: it never links the store (RocksDB), the CA or the service.
//!
//! ```no_run
//! # async fn demo(app: axum::Router, pem: esigd_net::MtlsPem<'_>) -> Result<(), Box<dyn std::error::Error>> {
//! use esigd_net::*;
//! let allow = AllowList::new(vec!["10.1.2.0/24".parse()?]);
//! let tls = TlsListener { config: Reloadable::from_arc(mtls_server_config(&pem)?), allow: allow.clone() };
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
//! // The identity of a connection: here the leaf certificate's DER.
//! let identify = |_addr, chain: &[rustls::pki_types::CertificateDer<'static>]| {
//!     chain.first().map(|leaf| std::sync::Arc::new(leaf.to_vec()))
//! };
//! let server = tokio::spawn(serve_tls(listener, app, tls, ServeOptions::default(), async move {
//!     let _ = stop_rx.await;
//! }, identify));
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
pub use esigd_reload::Reloadable;
pub use limits::{
    DEFAULT_ESERVICE_MAX_CONNECTIONS_PER_IP, DEFAULT_MAX_CONNECTIONS_PER_IP, Limits,
    ListenerCounts, ListenerStats,
};
pub use serve::{
    BODY_TIMEOUT_TEXT, ServeOptions, ShutdownReport, TimeoutAnswer, TlsListener, serve_public,
    serve_tls,
};
pub use tls::{
    MtlsPem, mtls_server_config, mtls_server_config_from_files, provider, server_config,
    server_config_from_files,
};
