//! One-time signatures end to end: `POST /v1/sign/onetime` on the release `esigd` over mutual TLS
//! (HTTP/1.1 keep-alive, one connection per client), next to the bare PKCS#11 sequence at the core
//! of a one-time signature (`C_GenerateKeyPair` + 3 × `C_Sign` + `C_DestroyObject`, SoftHSM,
//! ECDSA P-256) measured in the same run.
//!
//! `cargo build --release --workspace --all-targets --all-features && cargo bench --bench onetime_api`
//! (env: `BENCH_SECS` per sample, default 3; `BENCH_ROUNDS` samples per figure, default 5;
//! `BENCH_LEVELS` closed-loop client counts, default `1,2,4,8,16`; `BENCH_VERIFY` signatures checked
//! with openssl, default 3; `BENCH_KEYS_READY`, `BENCH_SESSIONS`, `BENCH_MAX_CONCURRENT` set
//! `hsm.onetime_keys_ready`, `hsm.sessions`, `limits.max_concurrent_signatures` (unset: esigd's
//! defaults); `ESIGD_BIN` to use another `esigd` than the one next to this bench's target directory;
//! `BENCH_TRACE=DIR` writes there the open-loop requests (send time, latency; ms) and the CPU of
//! other processes per 100 ms as CSV, the esigd and RocksDB logs and the final `/metrics`).
//!
//! Set-up as in `appliance/tests/onetime_api.rs`: an openssl test PKI for the e-Service listener
//! (client CA, server certificate for 127.0.0.1, a client certificate registered by its SHA-256),
//! the development Identity BB (`tests/e2e/idp.mjs`, npm `oidc-provider`) and one real ID token of
//! its test user, `esigd init`, then `esigd serve` with its default log (text, info, to a file) and
//! durable store (WAL synced per group commit).
//!
//! Each round runs the bare sequence at 1, 2 (and `cores`) threads, the API in closed loop at each
//! client count, then the API in open loop at half of the best closed-loop rate (the best level's
//! median over the rounds so far): each client sends at its share of the rate and latency counts from the scheduled
//! send time, so a stalled server shows as latency rather than as fewer requests. Figures are
//! medians over rounds, so noise from other processes hits all alike; the CPU those other
//! processes used during each sample is shown next to it. The esigd RSS (`VmRSS`) is sampled every
//! 50 ms under load (peak) and read when idle; per-stage server times come from `/metrics`
//! (`esigd_operation_duration_seconds` and friends). Every client signs the SHA-256 of one of a few
//! small files; a sample of the responses is checked with `openssl cms -verify -cades` against the
//! file itself and `openssl ts -verify` for the signature time-stamp.
//!
//! The client is rustls 0.23 (ring provider, TLS 1.3) over blocking `std::net::TcpStream`, one
//! thread and one keep-alive connection per client: the least client CPU on a machine the server
//! shares.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

#[path = "common/mod.rs"]
mod common;

use esigd_testkit::{api, pki};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::load::{
    Kept, OthersCpu, Requests, RssSampler, Sample, login, mint_id_tokens, rss_kib, run_load,
    start_idp, tls_config,
};
use common::{
    Settings, env_num, esigd_binary, median, process_cpu, process_cpu_of, quantile, start,
};
use esigd_hsm::testing::{TestToken, raw, softhsm_module};

/// The development IdP's client for this bench (ID tokens valid for an hour).
const CLIENT_ID: &str = "bench-eservice";
const CLIENT_SECRET: &str = "bench-eservice-secret";
const REDIRECT: &str = "http://127.0.0.1:9/cb";
/// Small files whose SHA-256 the clients have signed (request `i` of client `c` signs `(c + i) % DOCS`).
const DOCS: usize = 8;

/// `GET http://<addr>/metrics` (connection closed after the response).
fn scrape(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the public listener");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP head");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "/metrics: {head}");
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().trim(), 16)
                .unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + n]);
            rest = &rest[nl + 4 + n..];
        }
        body = out;
    }
    String::from_utf8(body).unwrap()
}

/// Sum of the samples `name{…}` whose labels contain `labels` (all of them if empty).
fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, l) = series.split_once('{').unwrap_or((series, ""));
            (n == name && l.contains(labels)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Server-side stages over an interval: (label, per signature, mean ms), from two scrapes.
fn stages(before: &str, after: &str, signatures: f64) -> Vec<(String, f64, f64)> {
    let d = |name: &str, labels: &str| metric(after, name, labels) - metric(before, name, labels);
    let mut out = Vec::new();
    let mut add = |label: String, name: &str, labels: &str| {
        let (n, sum) = (
            d(&format!("{name}_count"), labels),
            d(&format!("{name}_sum"), labels),
        );
        if n > 0.0 {
            out.push((label, n / signatures, 1e3 * sum / n));
        }
    };
    add(
        "HTTP request, `POST /v1/sign/onetime` (receipt to response head)".into(),
        "esigd_http_request_duration_seconds",
        "route=\"/v1/sign/onetime\"",
    );
    for op in [
        "hsm_keygen",
        "hsm_sign",
        "ca_issue",
        "tsa_stamp",
        "store_write",
    ] {
        add(
            format!("`{op}`"),
            "esigd_operation_duration_seconds",
            &format!("op=\"{op}\""),
        );
    }
    add(
        "HSM session checkout wait".into(),
        "esigd_hsm_checkout_wait_seconds",
        "",
    );
    out
}

/// Checks `n` kept responses with openssl against the signed files, as of when they were received
/// (one-time certificates expire after 60 s); returns how many.
fn verify_sample(kept: &Kept, data: &Path, docs: &[PathBuf], work: &Path, n: usize) -> usize {
    let kept = kept.lock().unwrap();
    assert!(kept.len() >= n.min(1), "no responses kept");
    for (k, (body, doc, at)) in kept.iter().take(n).enumerate() {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["status"]["code"], "OK", "{v}");
        let p7s = B64.decode(v["signature"].as_str().unwrap()).unwrap();
        let dir = work.join(format!("verify-{k}"));
        api::verify_with_openssl(
            &data.join("pki/ca.pem"),
            &data.join("pki/tsa.pem"),
            &p7s,
            &docs[*doc],
            &dir,
            Some(*at),
        );
        api::check_one_time_certificate(v["certificate"].as_str().unwrap(), &dir);
    }
    kept.len().min(n)
}

/// `BENCH_LEVELS` (comma-separated client counts), default 1,2,4,8,16.
fn levels() -> Vec<usize> {
    std::env::var("BENCH_LEVELS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![1, 2, 4, 8, 16])
}

/// Config for the `BENCH_*` overrides of esigd settings: (`[hsm]` lines, `[limits]` section,
/// description).
fn overrides() -> (String, String, String) {
    let get = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    let (keys, sessions, slots) = (
        get("BENCH_KEYS_READY"),
        get("BENCH_SESSIONS"),
        get("BENCH_MAX_CONCURRENT"),
    );
    let mut hsm = String::new();
    if let Some(k) = keys {
        hsm += &format!("onetime_keys_ready = {k}\n");
    }
    if let Some(s) = sessions {
        hsm += &format!("sessions = {s}\n");
    }
    let limits = slots.map_or(String::new(), |m| {
        format!("[limits]\nmax_concurrent_signatures = {m}\n")
    });
    let show = |o: Option<usize>, default: &str| {
        o.map_or(format!("{default} (default)"), |v| v.to_string())
    };
    let desc = format!(
        "hsm.onetime_keys_ready {}, hsm.sessions {}, limits.max_concurrent_signatures {}",
        show(keys, "8"),
        show(sessions, "2 x cores"),
        show(slots, "64")
    );
    (hsm, limits, desc)
}

fn main() {
    let Some(set) = Settings::from_env(3) else {
        return; // `cargo test --benches` probes bench binaries; nothing to list
    };
    let (dur, rounds, cores) = (set.dur, set.rounds, set.cores);
    let levels = levels();
    let (hsm_extra, limits_extra, settings_desc) = overrides();
    let bin = esigd_binary();
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_default();
    println!("onetime_api: {}", set.describe());
    println!("esigd: {} (built {built}); {settings_desc}", bin.display());

    // Set-up: test PKI, tokens, IdP, ID token, configuration, init, serve.
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let token = TestToken::create();
    let bare_token = TestToken::create();
    let ca = pki::Ca::new(w, "eservice-ca");
    let server = ca.issue("server", "/CN=esigd.test", "server_ext", None);
    let client = ca.issue("bench", "/CN=bench/O=Bench Office", "client_ext", None);
    let clients = serde_json::json!({"clients": [{
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "client_secret_basic", "id_token_ttl": 3600
    }]});
    let (_idp, issuer) = start_idp(w, &clients);
    // A real ID token of the IdP's test user `mari` for the bench's client.
    let (id_token, _) = login(&issuer, CLIENT_ID, CLIENT_SECRET, REDIRECT, "mari");
    // One token per request: enough for 2,500 signatures per second through every sample.
    let samples = (levels.len() + 1) * rounds + 2;
    let tokens = mint_id_tokens(
        &id_token,
        &w.join("idp-keys.json"),
        2_500 * samples * dur.as_secs().max(1) as usize,
    );
    let docs: Vec<PathBuf> = (0..DOCS)
        .map(|k| {
            let p = w.join(format!("doc-{k}.txt"));
            std::fs::write(&p, format!("bench document {k}\n").repeat(50 + k)).unwrap();
            p
        })
        .collect();
    let data = w.join("data");
    let cfg = w.join("esigd.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"data_dir = {data:?}
[hsm]
module = {module:?}
token = {label:?}
pin = {{ file = {pin:?} }}
{hsm_extra}
[tls]
cert = {server:?}
key = {server_key:?}
client_ca = {client_ca:?}

[tsa]
allow_unsynchronized_clock = true

[identity]
issuer = {issuer:?}
client_id = "esigd"
# The minted tokens carry the set-up time as auth_time; a long run must not outlast the login.
max_age = "2h"
client_secret = {{ env = "ESIGD_BENCH_UNUSED_SECRET" }}
[identity.claims]
default_country = "EE"

[[eservice]]
id = "bench"
name = "Bench Office"
client_cert_sha256 = {fp:?}
allowed_ips = ["127.0.0.1/32"]
id_token_audiences = ["{CLIENT_ID}"]

{limits_extra}"#,
            module = softhsm_module(),
            label = token.label,
            pin = token.pin_file,
            server = server.0,
            server_key = server.1,
            client_ca = ca.pem(),
            fp = api::sha256_of_cert(&client.0),
        ),
    )
    .unwrap();
    let o = Command::new(&bin)
        .env("ESIGD_BENCH_UNUSED_SECRET", "x")
        .arg("--config")
        .arg(&cfg)
        .arg("init")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "esigd init: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let mut cmd = Command::new(&bin);
    cmd.env("ESIGD_BENCH_UNUSED_SECRET", "x")
        .arg("--config")
        .arg(&cfg)
        .args([
            "serve",
            "--public",
            "127.0.0.1:0",
            "--eservice",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::from(
            std::fs::File::create(w.join("esigd.log")).unwrap(),
        ));
    let (esigd, (), banner) = start(cmd, |l| (l == "ready").then_some(()));
    let addr_of = |prefix: &str| {
        banner
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {prefix:?} in the banner:\n{banner}"))
            .to_string()
    };
    let (public, eservice) = (
        addr_of("public listener    http://"),
        addr_of("e-Service listener https://"),
    );
    let pid = esigd.0.id();
    let tls = tls_config(&ca.pem(), &client.0, &client.1);
    let reqs = Requests::new(&eservice, tokens, &docs);
    let kept: Kept = Default::default();

    // Warm-up (connections, JWKS fetch, first store writes, page cache), then idle RSS.
    let top = *levels.iter().max().unwrap();
    run_load(
        &eservice,
        &tls,
        top,
        Duration::from_secs(1),
        None,
        &reqs,
        &kept,
    );
    std::thread::sleep(Duration::from_secs(1));
    let rss_idle = rss_kib(pid);

    let mut bare_threads = vec![1, 2, cores];
    bare_threads.sort_unstable();
    bare_threads.dedup();
    let mut bare_s = vec![Vec::new(); bare_threads.len()];
    let mut bare_cpu_s = vec![Vec::new(); bare_threads.len()];
    let mut api_s: Vec<Vec<Sample>> = levels.iter().map(|_| Vec::new()).collect();
    let (mut server_cpu_s, mut client_cpu_s) = (
        vec![Vec::new(); levels.len()],
        vec![Vec::new(); levels.len()],
    );
    let mut others_s = vec![Vec::new(); levels.len()];
    let metrics_before = scrape(&public);
    // Open loop at half of the best closed-loop rate (the best level's median over the rounds so
    // far), as many clients as the top level, once per round after the closed-loop levels.
    let (mut hp50_s, mut hp99_s, mut hrate_s) = (Vec::new(), Vec::new(), Vec::new());
    let mut hothers_s = Vec::new();
    let trace_dir = std::env::var_os("BENCH_TRACE").map(PathBuf::from);
    if let Some(d) = &trace_dir {
        std::fs::create_dir_all(d).unwrap();
    }
    let rss = RssSampler::start(pid);
    let mut signed = 0usize;
    for round in 0..rounds {
        for ((t, s), c) in bare_threads.iter().zip(&mut bare_s).zip(&mut bare_cpu_s) {
            let (c0, t0) = (process_cpu(), Instant::now());
            let rate = raw::keygen_sign_destroy_loop(&bare_token, 3, *t, dur);
            c.push((process_cpu() - c0).as_secs_f64() * 1e6 / (rate * t0.elapsed().as_secs_f64()));
            s.push(rate);
        }
        for (k, &clients) in levels.iter().enumerate() {
            let (server0, client0) = (process_cpu_of(pid), process_cpu());
            let mut others = OthersCpu::start(pid);
            let s = run_load(&eservice, &tls, clients, dur, None, &reqs, &kept);
            others_s[k].push(others.cores());
            let n = s.lat_ms.len() as f64;
            signed += s.lat_ms.len();
            server_cpu_s[k].push((process_cpu_of(pid) - server0).as_secs_f64() * 1e6 / n);
            client_cpu_s[k].push((process_cpu() - client0).as_secs_f64() * 1e6 / n);
            api_s[k].push(s);
        }
        // Half of the best level's median rate so far (what the table reports as the best).
        let half = api_s
            .iter()
            .map(|v| median(v.iter().map(|s| s.per_sec).collect()))
            .fold(0.0, f64::max)
            / 2.0;
        let mut others = OthersCpu::start(pid);
        // Other processes' CPU per 100 ms (trace only).
        let series = trace_dir.as_ref().map(|_| {
            let on = Arc::new(AtomicBool::new(true));
            let o = on.clone();
            let h = std::thread::spawn(move || {
                let (t0, mut w, mut out) = (Instant::now(), OthersCpu::start(pid), String::new());
                while o.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    let c = w.cores();
                    out += &format!("{:.0},{c:.2}\n", t0.elapsed().as_secs_f64() * 1e3);
                }
                out
            });
            (on, h)
        });
        let s = run_load(&eservice, &tls, top, dur, Some(half), &reqs, &kept);
        hothers_s.push(others.cores());
        signed += s.lat_ms.len();
        if let Some(d) = &trace_dir {
            if let Some((on, h)) = series {
                on.store(false, Ordering::Relaxed);
                std::fs::write(d.join(format!("others-cpu-{round}.csv")), h.join().unwrap())
                    .unwrap();
            }
            let csv: String = s
                .trace
                .iter()
                .map(|(t, l)| format!("{t:.3},{l:.3}\n"))
                .collect();
            std::fs::write(d.join(format!("open-loop-{round}.csv")), csv).unwrap();
        }
        hrate_s.push(s.per_sec);
        hp50_s.push(quantile(&s.lat_ms, 0.50));
        hp99_s.push(quantile(&s.lat_ms, 0.99));
    }
    let rss_peak = rss.peak_kib();
    drop(rss);
    let metrics_after = scrape(&public);
    let stage_rows = stages(&metrics_before, &metrics_after, signed as f64);

    let bare_m: Vec<f64> = bare_s.into_iter().map(median).collect();
    let bare_cpu: Vec<f64> = bare_cpu_s.into_iter().map(median).collect();
    let bare_at = |clients: usize| {
        let i = bare_threads
            .iter()
            .rposition(|t| *t <= clients)
            .unwrap_or(0);
        (bare_threads[i], bare_m[i])
    };
    let (bare_best_i, bare_best) = bare_m
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    struct Level {
        clients: usize,
        rate: f64,
        p50: f64,
        p99: f64,
        server_cpu: f64,
        client_cpu: f64,
        others: f64,
    }
    let rows: Vec<Level> = levels
        .iter()
        .zip(api_s)
        .zip(server_cpu_s.into_iter().zip(client_cpu_s))
        .zip(others_s)
        .map(|(((&clients, s), (sc, cc)), others)| Level {
            clients,
            rate: median(s.iter().map(|s| s.per_sec).collect()),
            p50: median(s.iter().map(|s| quantile(&s.lat_ms, 0.50)).collect()),
            p99: median(s.iter().map(|s| quantile(&s.lat_ms, 0.99)).collect()),
            server_cpu: median(sc),
            client_cpu: median(cc),
            others: median(others),
        })
        .collect();
    let best = rows
        .iter()
        .max_by(|a, b| a.rate.total_cmp(&b.rate))
        .unwrap();
    let (hp50, hp99, hrate) = (median(hp50_s), median(hp99_s), median(hrate_s));
    let (hothers, hothers_max) = (
        median(hothers_s.clone()),
        hothers_s.iter().copied().fold(0.0, f64::max),
    );

    std::thread::sleep(Duration::from_secs(1));
    let rss_idle_after = rss_kib(pid);

    let load_end = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let ok = |b: bool| if b { "met" } else { "NOT met" };
    let mib = |k: u64| k as f64 / 1024.0;
    println!();
    println!(
        "| clients (closed loop) | signatures/s | p50 ms | p99 ms | esigd CPU µs/sig | client CPU µs/sig | other processes, cores | bare sequence/s (threads) | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let (t, b) = bare_at(r.clients);
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.0} | {:.2} | {b:.0} ({t}) | {:.2} |",
            r.clients,
            r.rate,
            r.p50,
            r.p99,
            r.server_cpu,
            r.client_cpu,
            r.others,
            r.rate / b
        );
    }
    println!();
    println!("| figure | value | goal |");
    println!("|---|---|---|");
    let bare_list = bare_threads
        .iter()
        .zip(&bare_m)
        .map(|(t, m)| format!("{m:.0} ({t})"))
        .collect::<Vec<_>>()
        .join(" / ");
    println!("| bare PKCS#11 keygen + 3 signs + destroy per s (threads) | {bare_list} | |");
    println!(
        "| API one-time signatures/s, best level ({} clients) | {:.0}, p50 {:.1} ms, p99 {:.1} ms | ≥ 60 % of the best bare sequence ({:.0}, {} threads): {:.0} % ({}) |",
        best.clients,
        best.rate,
        best.p50,
        best.p99,
        bare_best,
        bare_threads[bare_best_i],
        100.0 * best.rate / bare_best,
        ok(best.rate >= 0.6 * bare_best)
    );
    let api_cpu = best.server_cpu + best.client_cpu;
    println!(
        "| CPU per operation: bare sequence ({} thread) / API signature (esigd + client, {} clients) | {:.0} / {:.0} µs | the same ratio on CPU time (less sensitive to other processes): {:.0} % |",
        bare_threads[0],
        best.clients,
        bare_cpu[0],
        api_cpu,
        100.0 * bare_cpu[0] / api_cpu
    );
    println!(
        "| latency at half of the best rate ({hrate:.0}/s paced, {top} clients, open loop; other processes {hothers:.2} cores, max {hothers_max:.2}), p50 / p99 | {hp50:.1} / {hp99:.1} ms | p99 < 25 ms ({}) |",
        ok(hp99 < 25.0)
    );
    println!(
        "| esigd RSS: idle after warm-up / peak under load / idle after | {:.0} / {:.0} / {:.0} MiB | |",
        mib(rss_idle),
        mib(rss_peak),
        mib(rss_idle_after)
    );
    println!();
    println!("Server-side stages over all load samples ({signed} signatures; from /metrics):");
    println!();
    println!("| stage | per signature | mean ms |");
    println!("|---|---|---|");
    for (label, per, mean) in stage_rows {
        println!("| {label} | {per:.2} | {mean:.3} |");
    }
    println!();
    println!("load average at the end: {}", load_end.trim());
    if let Some(d) = &trace_dir {
        let _ = std::fs::copy(w.join("esigd.log"), d.join("esigd.log"));
        let _ = std::fs::copy(data.join("db/LOG"), d.join("rocksdb.LOG"));
        std::fs::write(d.join("metrics.txt"), scrape(&public)).unwrap();
        println!("open-loop traces and logs in {}", d.display());
    }
    let verified = verify_sample(&kept, &data, &docs, w, env_num("BENCH_VERIFY", 3) as usize);
    println!(
        "{verified} signatures made under load: `openssl cms -verify -cades` against the signed file and `openssl ts -verify` of their signature time-stamp: OK"
    );
}
