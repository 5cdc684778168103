//! Public (plain HTTP) listener: peer address to handlers, HTTP/1.1 and h2c, silent connections closed.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use esigd_web::net::{Limits, ListenerStats, ServeOptions, ShutdownReport, serve_public};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

async fn start(
    limits: Limits,
) -> (
    SocketAddr,
    ListenerStats,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<ShutdownReport>,
) {
    let app = Router::new().route(
        "/ip",
        get(|ConnectInfo(addr): ConnectInfo<SocketAddr>| async move { addr.ip().to_string() }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = ListenerStats::default();
    let opts = ServeOptions {
        limits,
        stats: stats.clone(),
        ..ServeOptions::default()
    };
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        serve_public(listener, app, opts, async move {
            let _ = rx.await;
        })
        .await
        .unwrap()
    });
    (addr, stats, tx, task)
}

async fn curl(args: Vec<String>) -> (bool, String) {
    let out =
        tokio::task::spawn_blocking(move || Command::new("curl").args(&args).output().unwrap())
            .await
            .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_see_the_peer_ip_over_http1_and_h2c() {
    let (addr, stats, stop, task) = start(Limits::default()).await;
    let url = format!("http://127.0.0.1:{}/ip", addr.port());
    for (flag, version) in [("--http1.1", "1.1"), ("--http2-prior-knowledge", "2")] {
        let args = [
            "-sS",
            "--max-time",
            "20",
            flag,
            "-w",
            " %{http_code} %{http_version}",
            &url,
        ];
        let (ok, out) = curl(args.iter().map(|s| s.to_string()).collect()).await;
        assert!(ok, "curl {flag} failed");
        assert_eq!(out, format!("127.0.0.1 200 {version}"));
    }
    // Another loopback source address is reported as such (no allow-list on this listener).
    let args = ["-sS", "--max-time", "20", "--interface", "127.0.0.2", &url];
    let (ok, out) = curl(args.iter().map(|s| s.to_string()).collect()).await;
    assert!(ok);
    assert_eq!(out, "127.0.0.2");
    assert_eq!(stats.snapshot().accepted, 3);
    let _ = stop.send(());
    assert_eq!(task.await.unwrap(), ShutdownReport { aborted: 0 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let (addr, stats, stop, task) = start(limits).await;
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut buf))
        .await
        .expect("silent connection was never closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    for _ in 0..500 {
        if stats.snapshot().active == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stats.snapshot().active, 0);
    let _ = stop.send(());
    task.await.unwrap();
}

#[tokio::test]
async fn zero_connection_limit_is_rejected_with_the_setting_name() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let opts = ServeOptions {
        limits: Limits {
            max_connections: 0,
            ..Limits::default()
        },
        ..ServeOptions::default()
    };
    let err = serve_public(listener, Router::new(), opts, async {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("listen.max_connections"), "{err}");
}
