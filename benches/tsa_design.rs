//! EXPERIMENT (not a goal benchmark): three ways for the `POST /tsa` handler to wait, in one esigd
//! server process built from the real `AppState`, router, accept loop and RocksDB audit log,
//! compared side by side (interleaved samples; server CPU per token from `/proc/<pid>/stat`):
//! * `/tsa`: the real route, `esigd_store::persist::StampQueue`: a fixed set of signing threads drains
//!   a queue in batches (no wake-up per request while the queue is not empty) and commits each
//!   batch's audit records at once;
//! * `/tsa-async`: `spawn_blocking(tsa.stamp)`, then `imprints.deliver(..).await` on the task;
//! * `/tsa-blocking`: the route before the queue: `spawn_blocking` of `tsa.stamp` +
//!   `imprints.deliver_blocking`, which parks the blocking thread until the audit group commit is
//!   acknowledged.
//!
//! `cargo bench --bench tsa_design` (env `BENCH_SECS`, `BENCH_ROUNDS`, `BENCH_CLIENTS`).
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::{Settings, env_num, median, process_cpu_of};
use der::Encode;
use der::asn1::{Int, OctetString};
use esigd_hsm::Hsm;
use esigd_hsm::testing::TestToken;
use esigd_pki::tsp::{MessageImprint, TimeStampReq, TspVersion};
use esigd_web::WebState;
use sha2::Digest;

async fn tsa_blocking(State(st): State<Arc<WebState>>, body: Bytes) -> Response {
    let state = st.clone();
    reply(
        tokio::task::spawn_blocking(move || {
            state
                .svc
                .imprints
                .deliver_blocking(state.svc.tsa.stamp(&body, SystemTime::now()))
        })
        .await
        .unwrap(),
    )
}

fn reply(der: Vec<u8>) -> Response {
    let mut r = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/timestamp-reply"),
        )],
        der,
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn tsa_async(State(st): State<Arc<WebState>>, body: Bytes) -> Response {
    let state = st.clone();
    let stamped =
        tokio::task::spawn_blocking(move || state.svc.tsa.stamp(&body, SystemTime::now()))
            .await
            .unwrap();
    reply(st.svc.imprints.deliver(stamped).await)
}

fn server() {
    let token = TestToken::create();
    let hsm = Hsm::open(token.config()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = esigd::config::Config::dev_defaults(dir.path());
    let tls = esigd::devsetup::ensure_dev_tls(&cfg).unwrap();
    esigd::devsetup::apply_dev_registrations(&mut cfg, &tls).unwrap();
    let metrics = Arc::new(esigd_web::metrics::Metrics::new().unwrap());
    let state = esigd::wiring::build(&cfg, hsm, metrics.clone()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening {}", listener.local_addr().unwrap());
        let app = esigd_web::routes::public::router(state.clone())
            .merge(
                Router::new()
                    .route("/tsa-async", post(tsa_async))
                    .layer(DefaultBodyLimit::max(128 * 1024))
                    .with_state(state.clone()),
            )
            .merge(
                Router::new()
                    .route("/tsa-blocking", post(tsa_blocking))
                    .layer(DefaultBodyLimit::max(128 * 1024))
                    .with_state(state.clone()),
            )
            .layer(esigd_web::observe::layer(metrics, "public"));
        esigd_web::net::serve_public(
            listener,
            app,
            esigd_web::net::ServeOptions::default(),
            std::future::pending(),
        )
        .await
        .unwrap();
    });
}

fn send(r: &mut BufReader<TcpStream>, path: &str, body: &[u8]) -> usize {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/timestamp-query\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    r.get_mut().write_all(&req).unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.contains(" 200 "), "{line}");
    let mut len = 0;
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap();
        }
    }
    let mut out = vec![0; len];
    r.read_exact(&mut out).unwrap();
    assert!(out.len() > 300, "granted token expected");
    out.len()
}

fn load(
    addr: &str,
    path: &'static str,
    clients: usize,
    dur: Duration,
    reqs: &Arc<Vec<Vec<u8>>>,
) -> f64 {
    let start = Instant::now() + Duration::from_millis(50);
    let hs: Vec<_> = (0..clients)
        .map(|c| {
            let (addr, reqs) = (addr.to_string(), reqs.clone());
            std::thread::spawn(move || {
                let s = TcpStream::connect(&addr).unwrap();
                s.set_nodelay(true).unwrap();
                let mut r = BufReader::new(s);
                if let Some(w) = start.checked_duration_since(Instant::now()) {
                    std::thread::sleep(w);
                }
                let mut n = 0usize;
                while start.elapsed() < dur {
                    send(&mut r, path, &reqs[(c * 7919 + n) % reqs.len()]);
                    n += 1;
                }
                n
            })
        })
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).sum::<usize>() as f64
}

/// The same closed loop as [`load`] on one thread: `clients` tokio tasks on a current-thread
/// runtime (epoll instead of one blocked OS thread per connection).
fn load_tokio(
    addr: &str,
    path: &'static str,
    clients: usize,
    dur: Duration,
    reqs: &Arc<Vec<Vec<u8>>>,
) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let start = tokio::time::Instant::now() + Duration::from_millis(50);
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let (addr, reqs) = (addr.to_string(), reqs.clone());
                tokio::spawn(async move {
                    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
                    s.set_nodelay(true).unwrap();
                    tokio::time::sleep_until(start).await;
                    let mut buf = Vec::with_capacity(4096);
                    let mut n = 0usize;
                    while start.elapsed() < dur {
                        let body = &reqs[(c * 7919 + n) % reqs.len()];
                        let mut req = format!(
                            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/timestamp-query\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        req.extend_from_slice(body);
                        s.write_all(&req).await.unwrap();
                        buf.clear();
                        let total = loop {
                            let mut chunk = [0u8; 4096];
                            let k = s.read(&mut chunk).await.unwrap();
                            assert!(k > 0, "connection closed");
                            buf.extend_from_slice(&chunk[..k]);
                            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                let head = std::str::from_utf8(&buf[..end]).unwrap();
                                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                                let len: usize = head
                                    .lines()
                                    .find_map(|l| {
                                        let (k, v) = l.split_once(':')?;
                                        k.eq_ignore_ascii_case("content-length")
                                            .then(|| v.trim().parse().ok())?
                                    })
                                    .unwrap();
                                break end + 4 + len;
                            }
                        };
                        while buf.len() < total {
                            let mut chunk = [0u8; 4096];
                            let k = s.read(&mut chunk).await.unwrap();
                            assert!(k > 0, "connection closed");
                            buf.extend_from_slice(&chunk[..k]);
                        }
                        assert!(total - buf.len() == 0 && buf.len() > 300);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total as f64
    })
}

fn main() {
    if std::env::var_os("TSA_DESIGN_SERVER").is_some() {
        return server();
    }
    let Some(set) = Settings::from_env(2) else {
        return;
    };
    println!("tsa_design: {}", set.describe());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("TSA_DESIGN_SERVER", "1")
        .env("RUST_LOG", "warn")
        .arg("--bench")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening ").unwrap().to_string();
    let pid = child.id();
    let reqs: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..4096u64)
            .map(|i| {
                let digest: [u8; 32] = sha2::Sha256::digest(format!("doc {i}")).into();
                TimeStampReq {
                    version: TspVersion::V1,
                    message_imprint: MessageImprint {
                        hash_algorithm: spki::AlgorithmIdentifier {
                            oid: const_oid::db::rfc5912::ID_SHA_256,
                            parameters: None,
                        },
                        hashed_message: OctetString::new(digest.to_vec()).unwrap(),
                    },
                    req_policy: None,
                    nonce: Some(Int::new(&(0x0100_0000_0000u64 + i).to_be_bytes()[2..]).unwrap()),
                    cert_req: true,
                    extensions: None,
                }
                .to_der()
                .unwrap()
            })
            .collect(),
    );
    let clients = env_num("BENCH_CLIENTS", 32) as usize;
    let all = ["/tsa", "/tsa-async", "/tsa-blocking"];
    let only = std::env::var("TSA_DESIGN_PATHS").unwrap_or_default();
    let paths: Vec<&str> = all
        .into_iter()
        .filter(|p| only.is_empty() || only.split(',').any(|o| o == *p))
        .collect();
    for p in &paths {
        load(&addr, p, 16, Duration::from_millis(500), &reqs);
    }
    let n = paths.len() * 2;
    let mut rate: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut client: Vec<Vec<f64>> = vec![Vec::new(); n];
    for _ in 0..set.rounds {
        for (k, p) in paths.iter().enumerate() {
            for (j, tokio_client) in [false, true].into_iter().enumerate() {
                let i = 2 * k + j;
                let (c0, me0) = (process_cpu_of(pid), common::process_cpu());
                let n = if tokio_client {
                    load_tokio(&addr, p, clients, set.dur, &reqs)
                } else {
                    load(&addr, p, clients, set.dur, &reqs)
                };
                cpu[i].push((process_cpu_of(pid) - c0).as_secs_f64() * 1e6 / n);
                client[i].push((common::process_cpu() - me0).as_secs_f64() * 1e6 / n);
                rate[i].push(n / set.dur.as_secs_f64());
            }
        }
    }
    println!();
    println!(
        "| handler ({clients} clients) | client | tokens/s | esigd CPU µs per token | client CPU µs per token |"
    );
    println!("|---|---|---|---|---|");
    for (k, p) in paths.iter().enumerate() {
        for (j, name) in ["threads", "tokio"].into_iter().enumerate() {
            let i = 2 * k + j;
            println!(
                "| {p} | {name} | {:.0} | {:.1} | {:.1} |",
                median(rate[i].clone()),
                median(cpu[i].clone()),
                median(client[i].clone())
            );
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
