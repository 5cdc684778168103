//! Listener exhaustion from one host (issue #11): per-address connection cap, whole-body deadline, idle
//! connections (HTTP/1 keep-alive and HTTP/2) closed; real sockets against `serve_public` with a small router
//! standing in for `/tsa` (reads its body), `/ocsp` and the signing page.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use esigd_testkit::flood::{connect_from, expect_408, require_open_files, trickle};
use esigd_web::net::{Limits, ListenerStats, ServeOptions, ShutdownReport, serve_public};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Server {
    addr: SocketAddr,
    stats: ListenerStats,
    /// `/tsa` handlers running now (waiting for their body).
    in_tsa: Arc<AtomicUsize>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<ShutdownReport>,
}

async fn start(limits: Limits) -> Server {
    let in_tsa = Arc::new(AtomicUsize::new(0));
    let counter = in_tsa.clone();
    let app = Router::new()
        .route(
            "/tsa",
            post(move |body: axum::body::Body| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let got = axum::body::to_bytes(body, 1 << 20).await;
                    counter.fetch_sub(1, Ordering::SeqCst);
                    match got {
                        Ok(b) => format!("stamped {} bytes", b.len()),
                        Err(e) => format!("body error: {e}"),
                    }
                }
            }),
        )
        .route(
            "/ocsp",
            post(|b: Bytes| async move { format!("ocsp {}", b.len()) }),
        )
        .route("/v1/sign/interactive", get(|| async { "signing page" }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = ListenerStats::default();
    let opts = ServeOptions {
        limits,
        stats: stats.clone(),
        ..ServeOptions::default()
    };
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        serve_public(listener, app, opts, async move {
            let _ = rx.await;
        })
        .await
        .unwrap()
    });
    Server {
        addr,
        stats,
        in_tsa,
        stop,
        task,
    }
}

/// curl (an HTTP client we did not write) from 127.0.0.1: (HTTP status, seconds taken).
async fn curl(addr: SocketAddr, args: &[&str]) -> (String, f64) {
    let mut all: Vec<String> = [
        "-sS",
        "-o",
        "/dev/null",
        "--max-time",
        "20",
        "-w",
        "%{http_code}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    all.extend(args.iter().map(|a| a.replace("{addr}", &addr.to_string())));
    let t = Instant::now();
    let out =
        tokio::task::spawn_blocking(move || Command::new("curl").args(&all).output().unwrap())
            .await
            .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        t.elapsed().as_secs_f64(),
    )
}

/// Reads until EOF or `limit`; returns what arrived and whether the peer closed.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (got, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The head of a `POST /tsa` announcing `len` body bytes.
fn tsa_head(len: usize) -> String {
    format!("POST /tsa HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n")
}

/// Production limits except a 1 s body deadline (so the test is quick).
fn limits() -> Limits {
    Limits {
        body_read_timeout: Duration::from_secs(1),
        ..Limits::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_with_idle_and_trickling_connections_cannot_starve_the_others() {
    require_open_files(3000);
    let server = start(limits()).await;
    // From 127.0.0.2: bodies trickled at one byte per 2 s (each byte well inside any per-read timeout) ...
    let mut trickles = Vec::new();
    for _ in 0..8 {
        let s = connect_from("127.0.0.2", server.addr).await.unwrap();
        let (r, w) = s.into_split();
        trickles.push((r, trickle(w, tsa_head(1000), 1000, Duration::from_secs(2))));
    }
    // ... and 1,024 connections that send nothing (as many as listen.max_connections).
    let mut idle = Vec::new();
    for _ in 0..1024 {
        if let Ok(s) = connect_from("127.0.0.2", server.addr).await {
            idle.push(s);
        }
    }
    // Meanwhile another host gets prompt answers on every route.
    for round in 0..3 {
        for (what, args) in [
            ("/tsa", vec!["--data-binary", "tsq", "http://{addr}/tsa"]),
            ("/ocsp", vec!["--data-binary", "req", "http://{addr}/ocsp"]),
            ("signing page", vec!["http://{addr}/v1/sign/interactive"]),
        ] {
            let (code, secs) = curl(server.addr, &args).await;
            assert_eq!(
                code, "200",
                "{what} (round {round}) refused while one host holds connections"
            );
            assert!(secs < 10.0, "{what} took {secs:.1} s");
        }
    }
    let c = server.stats.snapshot();
    assert!(
        c.active <= Limits::default().max_connections_per_ip as u64 + 1,
        "one host holds {} connections: {c:?}",
        c.active
    );
    assert!(c.rejected_limit >= 1024 - 64, "{c:?}");
    // The trickled bodies (accepted first) end with 408 (listen.body_read_timeout), not after the 2,000 s they
    // would take.
    expect_408(trickles).await;
    drop(idle);
    let _ = server.stop.send(());
    server.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_byte_by_byte_gets_408_and_frees_its_handler() {
    let server = start(limits()).await;
    let s = TcpStream::connect(server.addr).await.unwrap();
    let (mut r, w) = s.into_split();
    let started = Instant::now();
    // One byte every 300 ms: each read is quick, the whole body would take 5 minutes.
    let writer = trickle(w, tsa_head(1000), 1000, Duration::from_millis(300));
    let (got, _) = {
        let mut got = Vec::new();
        let mut b = [0u8; 1024];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut closed = false;
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, r.read(&mut b)).await {
            if n == 0 {
                closed = true;
                break;
            }
            got.extend_from_slice(&b[..n]);
        }
        (got, closed)
    };
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    assert!(text.to_lowercase().contains("connection: close"), "{text}");
    assert!(text.contains("listen.body_read_timeout"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(30));
    writer.abort();
    // The handler that was reading the body has returned.
    for _ in 0..500 {
        if server.in_tsa.load(Ordering::SeqCst) == 0 && server.stats.snapshot().active == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        server.in_tsa.load(Ordering::SeqCst),
        0,
        "handler still waiting for the body"
    );
    assert_eq!(server.stats.snapshot().active, 0, "connection still open");
    // A body sent at once is not affected.
    let (code, _) = curl(server.addr, &["--data-binary", "tsq", "http://{addr}/tsa"]).await;
    assert_eq!(code, "200");
    let _ = server.stop.send(());
    server.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_gets_goaway_after_the_idle_timeout() {
    let server = start(Limits {
        idle_timeout: Duration::from_secs(1),
        // Long enough that no PING is due during the test.
        h2_keep_alive: Duration::from_secs(120),
        ..Limits::default()
    })
    .await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    // h2c with prior knowledge: preface + empty SETTINGS; then no stream at all.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let started = Instant::now();
    let mut frames = Vec::new();
    let mut goaway_at = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut head = [0u8; 9];
        match tokio::time::timeout_at(deadline, s.read_exact(&mut head)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => break, // closed
            Err(_) => panic!("idle HTTP/2 connection still open after 30 s; frames: {frames:?}"),
        }
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.unwrap();
        frames.push(head[3]);
        match head[3] {
            // SETTINGS without ACK: acknowledge.
            0x4 if head[4] & 1 == 0 => s.write_all(&[0, 0, 0, 0x4, 0x1, 0, 0, 0, 0]).await.unwrap(),
            // PING without ACK (graceful shutdown sends one after its first GOAWAY): answer it.
            0x6 if head[4] & 1 == 0 => {
                let mut ack = vec![0, 0, 8, 0x6, 0x1, 0, 0, 0, 0];
                ack.extend_from_slice(&payload);
                s.write_all(&ack).await.unwrap();
            }
            0x7 => {
                goaway_at.get_or_insert(started.elapsed());
            }
            _ => {}
        }
    }
    let at = goaway_at.unwrap_or_else(|| panic!("closed without GOAWAY; frames: {frames:?}"));
    assert!(at >= Duration::from_millis(900), "GOAWAY too early: {at:?}");
    let _ = server.stop.send(());
    server.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http1_keep_alive_connection_is_closed() {
    // Verifies both bounds on HTTP/1 keep-alive idleness: hyper's header_read_timeout (idle_timeout long), and
    // idle_timeout (header_read_timeout long).
    for (what, limits) in [
        (
            "listen.header_read_timeout",
            Limits {
                header_read_timeout: Duration::from_secs(1),
                idle_timeout: Duration::from_secs(300),
                ..Limits::default()
            },
        ),
        (
            "listen.idle_timeout",
            Limits {
                header_read_timeout: Duration::from_secs(300),
                idle_timeout: Duration::from_secs(1),
                ..Limits::default()
            },
        ),
    ] {
        let server = start(limits).await;
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /v1/sign/interactive HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let (got, closed) = read_until_closed(&mut s, Duration::from_secs(30)).await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200"), "{what}: {text}");
        assert!(
            !text.to_lowercase().contains("connection: close"),
            "{what}: {text}"
        );
        assert!(
            closed,
            "{what}: idle keep-alive connection still open after 30 s"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{what}: closed too early"
        );
        let _ = server.stop.send(());
        server.task.await.unwrap();
    }
}
