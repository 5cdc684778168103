//! RFC 3161 over HTTP, in one run and side by side: the release `esigd` TSA (keep-alive clients),
//! the raw HSM ECDSA P-256 sign rate of a SoftHSM token, and a baseline TSA that runs one
//! `openssl ts -reply` process per request behind a Python HTTP server (`benches/openssl_tsa_baseline/`).
//!
//! `cargo build --release --workspace --all-targets --all-features && cargo bench --bench tsa_http`
//! (env: `BENCH_SECS` per sample, default 2; `BENCH_ROUNDS` samples per figure, default 5;
//! `BENCH_CLIENTS` keep-alive connections to esigd, default 32;
//! `ESIGD_BIN` to use another `esigd` binary than the one next to this bench's target directory).
//! Figures are medians of samples; raw sign, esigd and openssl samples are interleaved so noise from
//! other processes hits all alike. The latency at half of the maximum throughput comes from paced
//! (open-loop) clients, measured from each request's scheduled send time, so a stalled server shows
//! as latency rather than as fewer requests. A sample of replies of both TSAs is checked with
//! `openssl ts -verify`.
//!
//! The load clients speak minimal HTTP/1.1 (one keep-alive connection each, `Content-Length`
//! bodies). The closed loop runs them as tasks on one current-thread tokio runtime, the open loop
//! as one blocking thread each (precise pacing); see `run_load`. The client CPU is what the server
//! loses on a machine it shares with its load generator, so it is kept small and reported.
//!
//! Then CPU per token (process CPU time, which other processes disturb far less than rates): the
//! bare signature and an in-process `Tsa::stamp` on 1 thread and on the HSM pool's thread count,
//! the esigd process and the load client during the closed loop.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    Settings, cpu_us_per_op, env_num, esigd_binary, median, process_cpu, process_cpu_of, quantile,
    start,
};
use der::asn1::{Int, OctetString};
use der::{Decode, Encode};
use esigd_hsm::testing::{TestToken, raw};
use esigd_hsm::{Hsm, KeyKind};
use esigd_pki::tsp::{MessageImprint, PkiStatus, TimeStampReq, TimeStampResp, TspVersion};
use sha2::Digest;

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    addr: String,
    path: &'static str,
    r: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: &str, path: &'static str) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).unwrap();
        Conn {
            addr: addr.to_string(),
            path,
            r: BufReader::new(s),
        }
    }

    fn post(&mut self, body: &[u8]) -> (u16, Vec<u8>) {
        let mut req = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/timestamp-query\r\nContent-Length: {}\r\n\r\n",
            self.path,
            self.addr,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        self.r.get_mut().write_all(&req).expect("send");
        let mut line = String::new();
        self.r.read_line(&mut line).expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("HTTP status");
        let mut len = 0;
        loop {
            line.clear();
            self.r.read_line(&mut line).expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().expect("Content-Length");
            }
        }
        let mut out = vec![0; len];
        self.r.read_exact(&mut out).expect("body");
        (status, out)
    }
}

/// A positive INTEGER in DER form (no leading zero octets unless the sign needs one).
fn positive_int(v: u64) -> Int {
    let mut b: Vec<u8> = v
        .to_be_bytes()
        .iter()
        .copied()
        .skip_while(|b| *b == 0)
        .collect();
    if b.first().is_none_or(|b| *b >= 0x80) {
        b.insert(0, 0);
    }
    Int::new(&b).unwrap()
}

/// SHA-256 requests with certReq and distinct nonces: (DER, digest).
fn requests(n: usize) -> Arc<Vec<(Vec<u8>, [u8; 32])>> {
    Arc::new(
        (0..n as u64)
            .map(|i| {
                let digest: [u8; 32] = sha2::Sha256::digest(format!("bench document {i}")).into();
                let req = TimeStampReq {
                    version: TspVersion::V1,
                    message_imprint: MessageImprint {
                        hash_algorithm: spki::AlgorithmIdentifier {
                            oid: const_oid::db::rfc5912::ID_SHA_256,
                            parameters: None,
                        },
                        hashed_message: OctetString::new(digest.to_vec()).unwrap(),
                    },
                    req_policy: None,
                    nonce: Some(positive_int(0x0100_0000_0000 + i)),
                    cert_req: true,
                    extensions: None,
                };
                (req.to_der().unwrap(), digest)
            })
            .collect(),
    )
}

/// What one load sample measured.
struct Sample {
    per_sec: f64,
    /// Sorted latencies, ms.
    lat_ms: Vec<f64>,
}

/// Replies kept for `openssl ts -verify`: (reply DER, digest).
type Kept = Arc<Mutex<Vec<(Vec<u8>, [u8; 32])>>>;

/// `clients` connections; closed loop (`rate` = None: each sends its next request when the reply is in)
/// or open loop at `rate` requests/s in total (client `c` sends request `i` at `(i * clients + c) / rate`,
/// latency counted from that time). Every reply must be HTTP 200 and granted-sized; the first reply of
/// each client is decoded and kept.
///
/// The closed loop runs the connections as tasks of one current-thread tokio runtime (epoll), which
/// costs about half the client CPU per request of one blocked OS thread per connection (14 vs 27 µs
/// measured): CPU the server shares with the load generator on this machine. The open loop keeps
/// one thread per connection, whose `sleep` is precise to microseconds (tokio timers tick in ms).
fn run_load(
    addr: &str,
    path: &'static str,
    clients: usize,
    dur: Duration,
    rate: Option<f64>,
    reqs: &Arc<Vec<(Vec<u8>, [u8; 32])>>,
    kept: &Kept,
) -> Sample {
    if rate.is_none() {
        return closed_loop_tokio(addr, path, clients, dur, reqs, kept);
    }
    let start = Instant::now() + Duration::from_millis(50);
    let hs: Vec<_> = (0..clients)
        .map(|c| {
            let (addr, reqs, kept) = (addr.to_string(), reqs.clone(), kept.clone());
            std::thread::spawn(move || {
                let mut conn = Conn::open(&addr, path);
                let mut lat = Vec::new();
                let mut i = 0usize;
                let end = start + dur;
                loop {
                    let scheduled = match rate {
                        Some(r) => start + Duration::from_secs_f64((i * clients + c) as f64 / r),
                        None => Instant::now().max(start),
                    };
                    if scheduled >= end {
                        break;
                    }
                    if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let (req, digest) = &reqs[(c * 7919 + i) % reqs.len()];
                    let (status, body) = conn.post(req);
                    lat.push(scheduled.elapsed().as_secs_f64() * 1e3);
                    // A rejection (e.g. timeNotAvailable) is < 100 bytes; a token with certificate is far more.
                    assert!(
                        status == 200 && body.len() > 300,
                        "HTTP {status}, {} bytes",
                        body.len()
                    );
                    if i == 0 {
                        let resp = TimeStampResp::from_der(&body).expect("TimeStampResp");
                        assert_eq!(resp.status.status, PkiStatus::Granted);
                        kept.lock().unwrap().push((body, *digest));
                    }
                    i += 1;
                }
                lat
            })
        })
        .collect();
    let mut lat_ms: Vec<f64> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
    lat_ms.sort_by(|a, b| a.total_cmp(b));
    Sample {
        per_sec: lat_ms.len() as f64 / dur.as_secs_f64(),
        lat_ms,
    }
}

/// The closed loop of [`run_load`] on one thread: `clients` keep-alive connections as tokio tasks.
fn closed_loop_tokio(
    addr: &str,
    path: &'static str,
    clients: usize,
    dur: Duration,
    reqs: &Arc<Vec<(Vec<u8>, [u8; 32])>>,
    kept: &Kept,
) -> Sample {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut lat_ms: Vec<f64> = rt.block_on(async {
        let start = tokio::time::Instant::now() + Duration::from_millis(50);
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let (addr, reqs, kept) = (addr.to_string(), reqs.clone(), kept.clone());
                tokio::spawn(async move {
                    let mut s = tokio::net::TcpStream::connect(&addr).await.expect("connect");
                    s.set_nodelay(true).unwrap();
                    tokio::time::sleep_until(start).await;
                    let (mut buf, mut lat) = (Vec::with_capacity(4096), Vec::new());
                    let mut i = 0usize;
                    while start.elapsed() < dur {
                        let (body, digest) = &reqs[(c * 7919 + i) % reqs.len()];
                        let mut req = format!(
                            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/timestamp-query\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        req.extend_from_slice(body);
                        let sent = Instant::now();
                        s.write_all(&req).await.expect("send");
                        buf.clear();
                        let mut chunk = [0u8; 4096];
                        let (status, body_at, total) = loop {
                            let k = s.read(&mut chunk).await.expect("read");
                            assert!(k > 0, "connection closed");
                            buf.extend_from_slice(&chunk[..k]);
                            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                let head = std::str::from_utf8(&buf[..end]).expect("header");
                                let status: u16 = head
                                    .split_whitespace()
                                    .nth(1)
                                    .and_then(|v| v.parse().ok())
                                    .expect("HTTP status");
                                let len: usize = head
                                    .lines()
                                    .find_map(|l| {
                                        let (k, v) = l.split_once(':')?;
                                        k.eq_ignore_ascii_case("content-length")
                                            .then(|| v.trim().parse().ok())?
                                    })
                                    .expect("Content-Length");
                                break (status, end + 4, end + 4 + len);
                            }
                        };
                        while buf.len() < total {
                            let k = s.read(&mut chunk).await.expect("read");
                            assert!(k > 0, "connection closed");
                            buf.extend_from_slice(&chunk[..k]);
                        }
                        lat.push(sent.elapsed().as_secs_f64() * 1e3);
                        assert_eq!(buf.len(), total, "no pipelining: nothing after the body");
                        let reply = &buf[body_at..total];
                        // A rejection (e.g. timeNotAvailable) is < 100 bytes; a token is far more.
                        assert!(
                            status == 200 && reply.len() > 300,
                            "HTTP {status}, {} bytes",
                            reply.len()
                        );
                        if i == 0 {
                            let resp = TimeStampResp::from_der(reply).expect("TimeStampResp");
                            assert_eq!(resp.status.status, PkiStatus::Granted);
                            kept.lock().unwrap().push((reply.to_vec(), *digest));
                        }
                        i += 1;
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("client task"));
        }
        all
    });
    lat_ms.sort_by(|a, b| a.total_cmp(b));
    Sample {
        per_sec: lat_ms.len() as f64 / dur.as_secs_f64(),
        lat_ms,
    }
}

fn verify_sample(kept: &Kept, ca: &Path, n: usize) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let kept = kept.lock().unwrap();
    for (reply, digest) in kept.iter().take(n) {
        std::fs::write(dir.path().join("r.tsr"), reply).unwrap();
        let o = Command::new("openssl")
            .args([
                "ts",
                "-verify",
                "-in",
                "r.tsr",
                "-digest",
                &hex::encode(digest),
                "-CAfile",
            ])
            .arg(ca)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let t = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && t.contains("Verification: OK"),
            "openssl ts -verify: {t}{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    kept.len().min(n)
}

fn main() {
    let Some(set) = Settings::from_env(2) else {
        return; // `cargo test --benches` probes bench binaries; nothing to list
    };
    let (dur, rounds, cores) = (set.dur, set.rounds, set.cores);
    println!("tsa_http: {}", set.describe());

    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("esigd-data");
    let mut cmd = Command::new(esigd_binary());
    cmd.env("RUST_LOG", "warn")
        .arg("--data-dir")
        .arg(&data)
        .args([
            "serve",
            "--public",
            "127.0.0.1:0",
            "--eservice",
            "127.0.0.1:0",
        ]);
    cmd.stderr(Stdio::null());
    let (esigd, esigd_addr, _) = start(cmd, |l| {
        l.strip_prefix("public listener    http://")
            .and_then(|r| r.split_whitespace().next())
            .map(str::to_string)
    });
    let baseline_dir = work.path().join("openssl-tsa");
    let mut cmd = Command::new("python3");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/openssl_tsa_baseline/http_tsa.py"
    ))
    .arg(&baseline_dir)
    .stderr(Stdio::null());
    let (_baseline, baseline_port, _) =
        start(cmd, |l| l.strip_prefix("listening ").map(str::to_string));
    let baseline_addr = format!("127.0.0.1:{baseline_port}");

    let token = TestToken::create();
    let hsm = Hsm::open(token.config()).unwrap();
    hsm.generate_key_pair("bench", KeyKind::EcP256).unwrap();
    drop(hsm);

    let reqs = requests(4096);
    let (esigd_kept, openssl_kept): (Kept, Kept) = Default::default();
    // Warm up both servers (connections, first serial block, page cache).
    run_load(
        &esigd_addr,
        "/tsa",
        16,
        Duration::from_millis(500),
        None,
        &reqs,
        &esigd_kept,
    );
    run_load(
        &baseline_addr,
        "/",
        2,
        Duration::from_millis(500),
        None,
        &reqs,
        &openssl_kept,
    );

    let esigd_clients = env_num("BENCH_CLIENTS", 32) as usize;
    let openssl_clients = 2 * cores;
    let (mut raw_s, mut esigd_s, mut openssl_s) = (Vec::new(), Vec::new(), Vec::new());
    let (mut p50_s, mut p99_s) = (Vec::new(), Vec::new());
    let (mut server_cpu_s, mut client_cpu_s) = (Vec::new(), Vec::new());
    let esigd_pid = esigd.0.id();
    for _ in 0..rounds {
        raw_s.push(raw::sign_loop(&token, "bench", cores, dur));
        let (server0, client0) = (process_cpu_of(esigd_pid), process_cpu());
        let s = run_load(
            &esigd_addr,
            "/tsa",
            esigd_clients,
            dur,
            None,
            &reqs,
            &esigd_kept,
        );
        let tokens = s.lat_ms.len() as f64;
        server_cpu_s.push((process_cpu_of(esigd_pid) - server0).as_secs_f64() * 1e6 / tokens);
        client_cpu_s.push((process_cpu() - client0).as_secs_f64() * 1e6 / tokens);
        esigd_s.push(s.per_sec);
        p50_s.push(quantile(&s.lat_ms, 0.50));
        p99_s.push(quantile(&s.lat_ms, 0.99));
        openssl_s.push(
            run_load(
                &baseline_addr,
                "/",
                openssl_clients,
                dur,
                None,
                &reqs,
                &openssl_kept,
            )
            .per_sec,
        );
    }
    let (raw_m, esigd_m, openssl_m) = (median(raw_s), median(esigd_s), median(openssl_s));
    let (p50, p99) = (median(p50_s), median(p99_s));

    // Open loop at half of the measured maximum.
    let half = esigd_m / 2.0;
    let (mut hp50_s, mut hp99_s, mut hrate_s) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let s = run_load(
            &esigd_addr,
            "/tsa",
            esigd_clients,
            dur,
            Some(half),
            &reqs,
            &esigd_kept,
        );
        hrate_s.push(s.per_sec);
        hp50_s.push(quantile(&s.lat_ms, 0.50));
        hp99_s.push(quantile(&s.lat_ms, 0.99));
    }
    let (hp50, hp99, hrate) = (median(hp50_s), median(hp99_s), median(hrate_s));

    let inp = in_process_cpu(&token, dur, rounds, &reqs);
    let (server_cpu, client_cpu) = (median(server_cpu_s), median(client_cpu_s));

    let verified_esigd = verify_sample(&esigd_kept, &data.join("pki/ca.pem"), 20);
    let verified_openssl = verify_sample(&openssl_kept, &baseline_dir.join("ca.pem"), 10);

    let ok = |b: bool| if b { "met" } else { "NOT met" };
    println!();
    println!("| figure | value | goal |");
    println!("|---|---|---|");
    println!("| raw HSM ECDSA P-256 sign/s ({cores} threads, own session each) | {raw_m:.0} | |");
    println!(
        "| esigd TSA over HTTP, tokens/s ({esigd_clients} keep-alive clients, closed loop) | {esigd_m:.0} | ≥ 50 % of raw: {:.0} % ({}) |",
        100.0 * esigd_m / raw_m,
        ok(esigd_m >= 0.5 * raw_m)
    );
    println!("| esigd latency at max, p50 / p99 (ms) | {p50:.2} / {p99:.2} | |");
    println!(
        "| esigd latency at half of max ({hrate:.0}/s paced, open loop), p50 / p99 (ms) | {hp50:.2} / {hp99:.2} | p99 < 25 ms ({}) |",
        ok(hp99 < 25.0)
    );
    println!(
        "| openssl ts -reply per request over HTTP, tokens/s ({openssl_clients} clients) | {openssl_m:.0} | esigd ≥ 60×: {:.0}× ({}) |",
        esigd_m / openssl_m,
        ok(esigd_m >= 60.0 * openssl_m)
    );
    println!();
    println!("CPU per token (process CPU time, medians; all on the same {cores} cores):");
    println!();
    println!("| where | CPU µs per token |");
    println!("|---|---|");
    println!("| raw HSM sign (C_Sign), 1 thread | {:.1} |", inp.raw_1);
    println!(
        "| raw HSM sign (C_Sign), {} threads (the esigd pool size) | {:.1} |",
        inp.threads, inp.raw_n
    );
    println!(
        "| in-process `Tsa::stamp` (request checks, TSTInfo, CMS, HSM sign), 1 thread | {:.1} |",
        inp.stamp_1
    );
    println!(
        "| in-process `Tsa::stamp`, {} threads | {:.1} |",
        inp.threads, inp.stamp_n
    );
    println!("| esigd process over HTTP (closed loop above) | {server_cpu:.1} |");
    println!("| load clients (this process, closed loop above) | {client_cpu:.1} |");
    println!();
    println!(
        "openssl ts -verify: {verified_esigd} esigd replies and {verified_openssl} baseline replies: Verification: OK"
    );
}

/// CPU µs of one raw HSM signature and of one in-process `Tsa::stamp` (same SoftHSM, ECDSA P-256,
/// a TSA certificate issued by a throw-away CA, in-memory serials, a synchronised fixed clock): the
/// floor of a token's CPU without HTTP, threads and the audit log.
fn in_process_cpu(
    token: &TestToken,
    dur: Duration,
    rounds: usize,
    reqs: &Arc<Vec<(Vec<u8>, [u8; 32])>>,
) -> InProcess {
    use esigd_ca::{Authority, CaConfig, MemoryStore, ceremony::create_root};
    use esigd_hsm::{HsmSignature, KeyRef};
    use esigd_pki::identity::DnBuilder;
    let hsm = Hsm::open(token.config()).unwrap();
    hsm.generate_key_pair("in-process-ca", KeyKind::EcP256)
        .unwrap();
    let ca_signer = hsm
        .signer(&KeyRef::label("in-process-ca"), "ca.key", None)
        .unwrap();
    let tsa_signer = hsm
        .signer(&KeyRef::label("bench"), "tsa.key", None)
        .unwrap();
    let now = std::time::SystemTime::now();
    let dn = |cn: &str| DnBuilder::new().common_name(cn).unwrap().build();
    let root = create_root::<_, HsmSignature>(
        &ca_signer,
        dn("bench CA"),
        Duration::from_secs(86_400),
        now - Duration::from_secs(60),
        &mut rand_core::OsRng,
    )
    .unwrap();
    let ca = Authority::<_, HsmSignature, _>::new(
        root,
        ca_signer,
        CaConfig::with_base_url("http://127.0.0.1"),
        MemoryStore::new(),
    )
    .unwrap();
    let tsa_cert = ca
        .issue_tsa(
            spki::SubjectPublicKeyInfoOwned::from_der(tsa_signer.public_key().spki_der()).unwrap(),
            dn("bench TSA"),
            Duration::from_secs(3600),
            now,
        )
        .unwrap()
        .certificate;
    let tsa = esigd_tsa::Tsa::<_, HsmSignature, _, _>::new(
        esigd_tsa::TsaConfig::new(const_oid::ObjectIdentifier::new_unwrap(
            "1.3.6.1.4.1.99999.1",
        )),
        tsa_cert,
        tsa_signer,
        esigd_tsa::InMemorySerials::starting_at(1),
        esigd_tsa::FixedClock::synchronized(Duration::from_millis(1)),
    )
    .unwrap();
    let tsa = Arc::new(tsa);
    let mut samples: [Vec<f64>; 4] = Default::default();
    let threads = 2 * std::thread::available_parallelism().map_or(1, |n| n.get());
    for _ in 0..rounds {
        for (k, n) in [(0, 1), (1, threads)] {
            let (c0, t0) = (process_cpu(), Instant::now());
            let rate = raw::sign_loop(token, "bench", n, dur);
            samples[k].push(
                (process_cpu() - c0).as_secs_f64() * 1e6 / (rate * t0.elapsed().as_secs_f64()),
            );
        }
        let mut i = 0;
        samples[2].push(cpu_us_per_op(dur, || {
            i = (i + 1) % reqs.len();
            let out = tsa.stamp(&reqs[i].0, std::time::SystemTime::now()).unwrap();
            assert!(out.rejection.is_none());
        }));
        let (tsa, reqs) = (tsa.clone(), reqs.clone());
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (c0, t0) = (process_cpu(), Instant::now());
        let rate = common::par(
            threads,
            dur,
            Arc::new(move || {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % reqs.len();
                let out = tsa.stamp(&reqs[i].0, std::time::SystemTime::now()).unwrap();
                assert!(out.rejection.is_none());
            }),
        );
        samples[3]
            .push((process_cpu() - c0).as_secs_f64() * 1e6 / (rate * t0.elapsed().as_secs_f64()));
    }
    let [a, b, c, d] = samples.map(median);
    InProcess {
        threads,
        raw_1: a,
        raw_n: b,
        stamp_1: c,
        stamp_n: d,
    }
}

/// CPU µs per operation, see [`in_process_cpu`].
struct InProcess {
    /// Threads of the `_n` figures (the esigd HSM pool size: 2 per core).
    threads: usize,
    raw_1: f64,
    raw_n: f64,
    stamp_1: f64,
    stamp_n: f64,
}
