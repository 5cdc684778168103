//! The accept loops: plain HTTP (public listener) and mTLS (e-Service listener), both serving an axum `Router`
//! through hyper-util's auto builder (HTTP/1.1 + h2).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::allow::AllowList;
use super::error::NetError;
use super::io::FirstRead;
use super::limits::{Limits, ListenerStats};
use esigd_service::registry::PeerInfo;
use esigd_service::reload::Reloadable;

/// Settings shared by both listeners.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Limits and timeouts.
    pub limits: Limits,
    /// Counters (keep a clone to export them).
    pub stats: ListenerStats,
}

/// TLS side of the e-Service listener. Both fields are reloadable handles: keep clones and replace their
/// contents on SIGHUP; connections accepted afterwards use the new values.
#[derive(Debug, Clone)]
pub struct EserviceTls {
    /// Server configuration from [`super::mtls_server_config`].
    pub config: Reloadable<ServerConfig>,
    /// Networks allowed to connect at all (checked before the handshake).
    pub allow: AllowList,
}

/// How a listener ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShutdownReport {
    /// Connections still open when `shutdown_grace` ran out, aborted.
    pub aborted: usize,
}

/// Serves `app` over plain HTTP until `shutdown` resolves, then stops accepting, lets open connections finish
/// (up to `limits.shutdown_grace`) and returns.
///
/// Handlers get the peer address as `axum::extract::ConnectInfo<SocketAddr>` (IP canonical: IPv4-mapped IPv6
/// shown as IPv4).
pub async fn serve_public<F>(
    listener: TcpListener,
    app: Router,
    opts: ServeOptions,
    shutdown: F,
) -> Result<ShutdownReport, NetError>
where
    F: Future<Output = ()> + Send,
{
    let builder = http_builder(&opts.limits);
    let limits = opts.limits;
    accept_loop(
        listener,
        opts,
        shutdown,
        |_| true,
        move |stream, addr, stop| {
            let (app, builder) = (app.clone(), builder.clone());
            async move { serve_http(stream, addr, None, app, builder, limits, stop).await }
        },
    )
    .await
}

/// Serves `app` over mutual TLS until `shutdown` resolves (same shutdown behaviour as [`serve_public`]).
///
/// Per connection: source IP not in `tls.allow` → closed before the handshake; TLS 1.3 handshake with a
/// verified client certificate within `limits.handshake_timeout`, or closed; then every request carries
/// `ConnectInfo<SocketAddr>` and `Arc<PeerInfo>` as extensions.
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
    let builder = http_builder(&opts.limits);
    let (limits, stats) = (opts.limits, opts.stats.clone());
    let allow = tls.allow.clone();
    let admit = move |addr: SocketAddr| allow.allows(addr.ip());
    accept_loop(listener, opts, shutdown, admit, move |stream, addr, mut stop| {
        let (app, builder, stats) = (app.clone(), builder.clone(), stats.clone());
        let acceptor = TlsAcceptor::from(tls.config.load());
        async move {
            let handshake = timeout(limits.handshake_timeout, acceptor.accept(stream));
            let tls_stream = tokio::select! {
                res = handshake => match res {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        stats.handshake_failed();
                        tracing::info!(peer = %addr, error = %e, "e-Service TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        stats.handshake_failed();
                        tracing::info!(peer = %addr, "e-Service TLS handshake timed out");
                        return;
                    }
                },
                _ = stop.changed() => return,
            };
            let peer = tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| PeerInfo::from_chain(addr, chain));
            let Some(peer) = peer else {
                stats.handshake_failed();
                tracing::warn!(peer = %addr, "e-Service connection without a parsable client certificate");
                return;
            };
            tracing::debug!(peer = %addr, cert_sha256 = %peer.cert_sha256_hex(), "e-Service connection");
            serve_http(tls_stream, addr, Some(Arc::new(peer)), app, builder, limits, stop).await;
        }
    })
    .await
}

fn http_builder(limits: &Limits) -> Arc<Builder<TokioExecutor>> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.h2_keep_alive)
        .keep_alive_timeout(limits.h2_keep_alive);
    Arc::new(b)
}

/// Accepts until `shutdown`, admitting connections through `admit` (IP) and the connection limit, and runs
/// `conn` for each on its own task; then drains (see [`serve_public`]).
async fn accept_loop<F, A, C, Fut>(
    listener: TcpListener,
    opts: ServeOptions,
    shutdown: F,
    admit: A,
    conn: C,
) -> Result<ShutdownReport, NetError>
where
    F: Future<Output = ()> + Send,
    A: Fn(SocketAddr) -> bool,
    C: Fn(TcpStream, SocketAddr, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    opts.limits.validate()?;
    let ServeOptions { limits, stats } = opts;
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            res = listener.accept() => {
                let (stream, addr) = match res {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE/ENFILE/ECONNABORTED: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if !admit(addr) {
                    stats.rejected_ip();
                    tracing::info!(peer = %addr, "connection refused: source IP not allowed");
                    continue; // dropping `stream` closes it; no TLS byte was read
                }
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    stats.rejected_limit();
                    tracing::warn!(peer = %addr, max = limits.max_connections, "connection refused: listen.max_connections reached");
                    continue;
                };
                stats.accepted();
                let _ = stream.set_nodelay(true);
                let fut = conn(stream, addr, stop_rx.clone());
                let active = stats.open_guard();
                tasks.spawn(async move {
                    // Both drop when the task ends or is aborted: the slot and the gauge are always returned.
                    let _slot = (permit, active);
                    fut.await;
                });
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    tracing::info!(
        open = tasks.len(),
        "listener stopped accepting; draining connections"
    );
    let deadline = sleep(limits.shutdown_grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { return Ok(ShutdownReport::default()) },
            _ = &mut deadline => {
                tasks.abort_all();
                let mut aborted = 0;
                while let Some(res) = tasks.join_next().await {
                    if res.is_err_and(|e| e.is_cancelled()) {
                        aborted += 1;
                    }
                }
                tracing::warn!(aborted, "listen.shutdown_grace elapsed; connections aborted");
                return Ok(ShutdownReport { aborted });
            }
        }
    }
}

/// Serves HTTP on one connection until the peer closes, the connection ages out, or the listener stops.
async fn serve_http<I>(
    io: I,
    addr: SocketAddr,
    peer: Option<Arc<PeerInfo>>,
    app: Router,
    builder: Arc<Builder<TokioExecutor>>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(addr));
        if let Some(peer) = &peer {
            req.extensions_mut().insert(peer.clone());
        }
        app.clone().oneshot(req)
    });
    let (io, seen) = FirstRead::new(io);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let first_byte = sleep(limits.header_read_timeout);
    let age = sleep(limits.max_connection_age);
    let hard_close = sleep(
        limits
            .max_connection_age
            .saturating_add(limits.shutdown_grace),
    );
    tokio::pin!(first_byte, age, hard_close);
    let (mut closing, mut first_checked) = (false, false);
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = &mut first_byte, if !first_checked => {
                first_checked = true;
                if !seen.load(Ordering::Relaxed) {
                    tracing::info!(peer = %addr, "connection closed: nothing received within listen.header_read_timeout");
                    return;
                }
            }
            _ = stop.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = &mut age, if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
                hard_close.as_mut().reset(Instant::now() + limits.shutdown_grace);
            }
            _ = &mut hard_close => {
                tracing::info!(peer = %addr, "connection closed: listen.max_connection_age + listen.shutdown_grace elapsed");
                return;
            }
        }
    }
}
