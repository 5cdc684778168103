//! The accept loops: plain HTTP ([`serve_public`]) and TLS ([`serve_tls`], usually with a required client
//! certificate), both serving an axum `Router` through hyper-util's auto builder (HTTP/1.1 + h2).

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use ipnet::IpNet;
use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::allow::AllowList;
use crate::body::{DeadlineBody, InFlight, KeepUnread, Tracked, Unread, drain};
use crate::error::NetError;
use crate::io::FirstRead;
use crate::limits::{Limits, Listener, ListenerStats, PerIp};
use crate::throttle::RefusalLogs;
use esigd_reload::Reloadable;

/// The answer to a request whose body was not complete within `limits.body_read_timeout`. The loop sets the
/// status to 408 and, over HTTP/1, `Connection: close`; the function gives the headers and body (e.g. the
/// application's own error document).
#[derive(Clone)]
pub struct TimeoutAnswer(Arc<dyn Fn() -> Response + Send + Sync>);

impl TimeoutAnswer {
    /// An answer made by `f` for each late request.
    pub fn new(f: impl Fn() -> Response + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    fn response(&self) -> Response {
        (self.0)()
    }
}

impl fmt::Debug for TimeoutAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TimeoutAnswer(..)")
    }
}

/// The body of the 408 when [`ServeOptions::body_timeout_answer`] is not set.
pub const BODY_TIMEOUT_TEXT: &str =
    "request body not complete within the time allowed (body_read_timeout)\n";

/// Settings of one listener.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Limits and timeouts.
    pub limits: Limits,
    /// Counters (keep a clone to export them).
    pub stats: ListenerStats,
    /// Peers not subject to `limits.max_connections_per_ip`: the trusted reverse proxies
    /// (`listen.trusted_proxies`), whose connections carry many clients.
    pub per_ip_exempt: Vec<IpNet>,
    /// The 408 answer to a request body that missed `limits.body_read_timeout`; `None`: plain text
    /// ([`BODY_TIMEOUT_TEXT`]).
    pub body_timeout_answer: Option<TimeoutAnswer>,
    /// The listener's name in log lines (`listener = …`); `None`: `public` for [`serve_public`],
    /// `eservice` for [`serve_tls`].
    pub name: Option<&'static str>,
}

/// TLS side of a TLS listener. Both fields are reloadable handles: keep clones and replace their contents on
/// SIGHUP; connections accepted afterwards use the new values.
#[derive(Debug, Clone)]
pub struct TlsListener {
    /// Server configuration, e.g. from [`crate::mtls_server_config`] (client certificate required) or
    /// [`crate::server_config`] (none asked for).
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
    let answer = opts.body_timeout_answer.clone();
    let logs = Arc::new(RefusalLogs::default());
    let conn_logs = logs.clone();
    accept_loop(
        Listener::Public,
        listener,
        opts,
        logs,
        shutdown,
        |_| true,
        move |stream, addr, stop| {
            let (app, builder, logs) = (app.clone(), builder.clone(), conn_logs.clone());
            let answer = answer.clone();
            async move {
                serve_http(
                    stream, addr, None::<()>, app, builder, limits, answer, logs, stop,
                )
                .await
            }
        },
    )
    .await
}

/// Serves `app` over TLS until `shutdown` resolves (same shutdown behaviour as [`serve_public`]).
///
/// Per connection: source IP not in `tls.allow` → closed before the handshake; TLS handshake within
/// `limits.handshake_timeout` (with the client certificate the configuration requires, if any), or closed;
/// then `identify(peer address, verified client chain, leaf first; empty when none was asked for)` gives the
/// connection's identity, or `None` to close it. Every request carries `ConnectInfo<SocketAddr>` and a clone
/// of that identity as extensions.
pub async fn serve_tls<F, P, E>(
    listener: TcpListener,
    app: Router,
    tls: TlsListener,
    opts: ServeOptions,
    shutdown: F,
    identify: P,
) -> Result<ShutdownReport, NetError>
where
    F: Future<Output = ()> + Send,
    P: Fn(SocketAddr, &[CertificateDer<'static>]) -> Option<E> + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    let builder = http_builder(&opts.limits);
    let (limits, stats) = (opts.limits, opts.stats.clone());
    let answer = opts.body_timeout_answer.clone();
    let name = opts.name.unwrap_or(Listener::Eservice.name());
    let allow = tls.allow.clone();
    let admit = move |addr: SocketAddr| allow.allows(addr.ip());
    let logs = Arc::new(RefusalLogs::default());
    let conn_logs = logs.clone();
    let identify = Arc::new(identify);
    let conn = move |stream: TcpStream, addr: SocketAddr, mut stop: watch::Receiver<bool>| {
        let (app, builder, stats) = (app.clone(), builder.clone(), stats.clone());
        let (logs, answer, identify) = (conn_logs.clone(), answer.clone(), identify.clone());
        let acceptor = TlsAcceptor::from(tls.config.load());
        async move {
            let handshake = timeout(limits.handshake_timeout, acceptor.accept(stream));
            let tls_stream = tokio::select! {
                res = handshake => match res {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        stats.handshake_failed();
                        if let Some(suppressed) = logs.handshake.permit(std::time::Instant::now()) {
                            tracing::info!(listener = name, peer = %addr, error = %e, suppressed, "TLS handshake failed");
                        }
                        return;
                    }
                    Err(_) => {
                        stats.handshake_failed();
                        if let Some(suppressed) = logs.handshake.permit(std::time::Instant::now()) {
                            tracing::info!(listener = name, peer = %addr, suppressed, "TLS handshake timed out (listen.handshake_timeout)");
                        }
                        return;
                    }
                },
                _ = stop.changed() => return,
            };
            let chain = tls_stream.get_ref().1.peer_certificates().unwrap_or(&[]);
            let Some(identity) = identify(addr, chain) else {
                stats.handshake_failed();
                if let Some(suppressed) = logs.handshake.permit(std::time::Instant::now()) {
                    tracing::warn!(listener = name, peer = %addr, suppressed, "TLS connection closed: client certificate not accepted");
                }
                return;
            };
            serve_http(
                tls_stream,
                addr,
                Some(identity),
                app,
                builder,
                limits,
                answer,
                logs,
                stop,
            )
            .await;
        }
    };
    accept_loop(
        Listener::Eservice,
        listener,
        opts,
        logs,
        shutdown,
        admit,
        conn,
    )
    .await
}

fn http_builder(limits: &Limits) -> Arc<Builder<TokioExecutor>> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .keep_alive_interval(limits.h2_keep_alive)
        .keep_alive_timeout(limits.h2_keep_alive);
    Arc::new(b)
}

/// Accepts until `shutdown`, admitting connections through `admit` (IP), the per-address and the overall
/// connection limit, and runs `conn` for each on its own task; then drains (see [`serve_public`]).
/// Refusals are logged at most once a second per reason ([`RefusalLogs`]).
async fn accept_loop<F, A, C, Fut>(
    kind: Listener,
    listener: TcpListener,
    opts: ServeOptions,
    logs: Arc<RefusalLogs>,
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
    opts.limits.validate_for(kind)?;
    let ServeOptions {
        limits,
        stats,
        per_ip_exempt,
        body_timeout_answer: _,
        name,
    } = opts;
    let name = name.unwrap_or(kind.name());
    let exempt = AllowList::new(per_ip_exempt);
    let per_ip = PerIp::new(limits.max_connections_per_ip);
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
                let now = std::time::Instant::now();
                if !admit(addr) {
                    stats.rejected_ip();
                    if let Some(suppressed) = logs.ip_not_allowed.permit(now) {
                        tracing::info!(listener = name, peer = %addr, suppressed, "connection refused: source IP not allowed");
                    }
                    continue; // dropping `stream` closes it; no TLS byte was read
                }
                let per_ip_slot = if exempt.allows(addr.ip()) {
                    None
                } else {
                    match per_ip.try_acquire(addr.ip()) {
                        Some(slot) => Some(slot),
                        None => {
                            stats.rejected_limit();
                            if let Some(suppressed) = logs.per_ip.permit(now) {
                                tracing::warn!(
                                    listener = name,
                                    peer = %addr,
                                    max = limits.max_connections_per_ip,
                                    suppressed,
                                    "connection refused: {} reached for this address",
                                    kind.per_ip_setting()
                                );
                            }
                            continue;
                        }
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    stats.rejected_limit();
                    if let Some(suppressed) = logs.max_connections.permit(now) {
                        tracing::warn!(listener = name, peer = %addr, max = limits.max_connections, suppressed, "connection refused: listen.max_connections reached");
                    }
                    continue;
                };
                stats.accepted();
                let _ = stream.set_nodelay(true);
                let fut = conn(stream, addr, stop_rx.clone());
                let active = stats.open_guard();
                tasks.spawn(async move {
                    // All drop when the task ends or is aborted: the slots and the gauge are always returned.
                    let _slot = (permit, per_ip_slot, active);
                    fut.await;
                });
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    tracing::info!(
        listener = name,
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
                tracing::warn!(listener = name, aborted, "listen.shutdown_grace elapsed; connections aborted");
                return Ok(ShutdownReport { aborted });
            }
        }
    }
}

/// Serves HTTP on one connection until the peer closes, the connection ages out or stays idle, or the listener
/// stops. Every request body must be complete within `limits.body_read_timeout` (else 408).
#[allow(clippy::too_many_arguments)]
async fn serve_http<I, E>(
    io: I,
    addr: SocketAddr,
    identity: Option<E>,
    app: Router,
    builder: Arc<Builder<TokioExecutor>>,
    limits: Limits,
    answer: Option<TimeoutAnswer>,
    logs: Arc<RefusalLogs>,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    E: Clone + Send + Sync + 'static,
{
    let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
    let (in_flight, mut busy) = InFlight::new();
    let body_logs = logs.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let guard = in_flight.begin();
        let version = req.version();
        let expired = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + limits.body_read_timeout;
        let unread: Unread<DeadlineBody<Incoming>> = Arc::default();
        let mut req = req.map(|b| {
            Body::new(KeepUnread::new(
                DeadlineBody::new(b, deadline, expired.clone()),
                unread.clone(),
            ))
        });
        req.extensions_mut().insert(ConnectInfo(addr));
        if let Some(identity) = &identity {
            req.extensions_mut().insert(identity.clone());
        }
        let (app, logs, answer) = (app.clone(), body_logs.clone(), answer.clone());
        async move {
            let res = app.oneshot(req).await;
            // Taken before the drain: a body the handler did not want cannot turn its answer into a 408.
            let expired_in_handler = expired.load(Ordering::Relaxed);
            let rest = unread.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(rest) = rest {
                drain(rest).await;
            }
            res.map(|resp| {
                let resp = if expired_in_handler {
                    if let Some(suppressed) = logs.body.permit(std::time::Instant::now()) {
                        tracing::info!(peer = %addr, suppressed, "request refused: body not complete within listen.body_read_timeout");
                    }
                    body_timeout_response(version, answer.as_ref())
                } else {
                    resp
                };
                resp.map(|b| Body::new(Tracked::new(b, guard)))
            })
        }
    });
    let (io, seen) = FirstRead::new(io);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let first_byte = sleep(limits.header_read_timeout);
    let idle = sleep(limits.idle_timeout);
    let age = sleep(limits.max_connection_age);
    let hard_close = sleep(
        limits
            .max_connection_age
            .saturating_add(limits.shutdown_grace),
    );
    tokio::pin!(first_byte, idle, age, hard_close);
    let (mut closing, mut first_checked, mut busy_open) = (false, false, true);
    loop {
        let is_idle = *busy.borrow() == 0;
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
                    if let Some(suppressed) = logs.silent.permit(std::time::Instant::now()) {
                        tracing::info!(peer = %addr, suppressed, "connection closed: nothing received within listen.header_read_timeout");
                    }
                    return;
                }
            }
            changed = busy.changed(), if busy_open => {
                if changed.is_err() {
                    busy_open = false;
                } else if *busy.borrow_and_update() == 0 {
                    idle.as_mut().reset(Instant::now() + limits.idle_timeout);
                }
            }
            _ = &mut idle, if is_idle && !closing => {
                tracing::debug!(peer = %addr, "connection idle for listen.idle_timeout; closing");
                closing = true;
                conn.as_mut().graceful_shutdown();
                hard_close.as_mut().reset(Instant::now() + limits.shutdown_grace);
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
                tracing::info!(peer = %addr, "connection closed: still open listen.shutdown_grace after closing started (listen.max_connection_age or listen.idle_timeout)");
                return;
            }
        }
    }
}

/// 408 for a request whose body did not arrive within `listen.body_read_timeout`; over HTTP/1 the
/// connection is closed after it (the rest of the body is never read).
fn body_timeout_response(version: Version, answer: Option<&TimeoutAnswer>) -> Response {
    let mut r = match answer {
        Some(a) => a.response(),
        None => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            BODY_TIMEOUT_TEXT,
        )
            .into_response(),
    };
    *r.status_mut() = StatusCode::REQUEST_TIMEOUT;
    if version < Version::HTTP_2 {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}
