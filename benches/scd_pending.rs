//! Signatures waiting for citizens' devices (workflow 9.2.2, issue 13's load figures): what 200
//! pending SCD signatures cost the release `esigd` in memory, whether they slow down one-time
//! signing, and how long the 200 take to complete once the devices answer.
//!
//! `cargo build --release --workspace --bins --bench scd_pending && cargo bench --bench scd_pending`
//! (env: `BENCH_PENDING` signatures kept pending at once, default 200, one per key, 16 keys per
//! device; `BENCH_CLIENTS` closed-loop one-time clients, default 4; `BENCH_SECS` per throughput
//! sample, default 3; `BENCH_ROUNDS` rounds, default 5; `ESIGD_BIN`, `ESIGD_REMOTE_SCD_BIN`,
//! `ESIGD_DEVICE_BIN` to use other binaries than the ones next to this bench's target directory).
//!
//! Set-up, all real processes: the development Identity BB (`tests/e2e/idp.mjs`, npm
//! `oidc-provider`; esigd may introspect its access tokens), the reference Remote SCD service
//! (`esigd-remote-scd`, `--push-limit 100000 --user-window 600s` so that hundreds of sessions fit)
//! and `ceil(BENCH_PENDING / 16)` devices (`esigd-device run --cli`, each its own SoftHSM token),
//! `esigd init`, then `esigd serve` with `[scd]` as in `testkit::scd_world` but
//! `signing_timeout = "600s"` and `max_pending` at least twice `BENCH_PENDING`. `BENCH_PENDING`
//! key slots are onboarded through `POST /v1/cert/create` (one citizen, the devices answering in
//! parallel).
//!
//! Each round: (a) one-time signing (`POST /v1/sign/onetime`, the client of `onetime_api`:
//! rustls, one keep-alive connection per client, closed loop, a fresh ID token per request) with
//! no SCD signature pending; (b) esigd's idle `VmRSS`; `BENCH_PENDING` pseudonym tokens and
//! `POST /v1/sign/pseudonym` requests, one per key, answered at once while the devices do not
//! answer; after 2 s the idle `VmRSS` again; (c) the same one-time load with them pending, then a
//! check that every one of them still answers 202; (d) the devices confirm (CLI, PIN) and the
//! time until `GET /v1/sign/response/{id}` answers 200 for all of them. Baseline and pending
//! samples thus alternate; figures are medians over the rounds, throughput compared as a ratio to
//! the baseline of the same run. RSS rarely falls after a drain (the allocator keeps freed pages),
//! so the first round's growth is the cleanest per-session figure; later rounds are shown too.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

#[path = "common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::load::{
    Conn, Esigd, Kept, OthersCpu, Requests, esigd_init, login, mint_id_tokens, rss_kib, run_load,
    start_idp, tls_config,
};
use common::{Settings, env_num, esigd_binary, median, process_cpu_of};
use esigd_hsm::testing::TestToken;
use esigd_testkit::api::{mtls, sha256_of_cert};
use esigd_testkit::rscd::Pki;
use esigd_testkit::scd_fleet::{
    SLOTS_PER_DEVICE, confirm_signatures, onboard, start_devices, start_rscd_with,
};
use esigd_testkit::{config, free_port, pki};
use serde_json::json;
use sha2::{Digest, Sha256};

/// The e-Service's client at the IdP (ID tokens valid for an hour).
const CLIENT_ID: &str = "bench-eservice";
const CLIENT_SECRET: &str = "bench-eservice-secret";
const REDIRECT: &str = "http://127.0.0.1:9/cb";
/// esigd's own client at the IdP (introspects the e-Service's access tokens).
const ESIGD_SECRET: &str = "esigd-secret";
/// Small files whose SHA-256 the one-time clients sign.
const DOCS: usize = 8;

/// The `POST /v1/sign/pseudonym` body for request `i` of round `round` (a document of its own:
/// the Remote SCD service answers an identical request within 15 s with the same session).
fn pseudonym_body(round: usize, i: usize) -> serde_json::Value {
    json!({
        "format": "CAdES",
        "hash": B64.encode(Sha256::digest(format!("pending document {round}-{i}\n"))),
        "hashType": "SHA2-256",
        "dataToBeDisplayed": format!("Bench document {round}-{i}"),
        "nonce": "d2dff00401c92ca6879ef5f0938ce31580898266d59832d8531e8d04fc3898a6",
        "state": "2569cb4125cb7303f0f16782e7e2814b2269888c734af4c90639653e4f92d3a5",
        "requestTimestamp": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    })
}

/// A token and a signature request for each pseudonym over `conn` (round `round`); the
/// signature IDs.
fn make_pending(conn: &mut Conn, round: usize, pseudonyms: &[String]) -> Vec<String> {
    pseudonyms
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (status, v) = conn.call("GET", &format!("/v1/token/pseodonym/{p}"), &[], None);
            assert_eq!(status, 200, "pseudonym token: {v}");
            let jwt = v["jwt"].as_str().unwrap();
            let (status, v) = conn.call(
                "POST",
                "/v1/sign/pseudonym",
                &[format!("X-Pseodonym-Token: {jwt}")],
                Some(&pseudonym_body(round, i)),
            );
            assert_eq!(status, 200, "POST /v1/sign/pseudonym: {v}");
            v["signatureId"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// `GET /v1/sign/response/{id}?timeoutMs=ms`: (status, body).
fn response(conn: &mut Conn, id: &str, ms: u64) -> (u16, serde_json::Value) {
    conn.call(
        "GET",
        &format!("/v1/sign/response/{id}?timeoutMs={ms}"),
        &[],
        None,
    )
}

/// One round's figures.
struct Round {
    base: f64,
    base_others: f64,
    base_cpu: f64,
    pending: f64,
    pending_others: f64,
    pending_cpu: f64,
    rss_before: u64,
    rss_with: u64,
    rss_after: u64,
    create: Duration,
    drain: Duration,
}

fn main() {
    let Some(set) = Settings::from_env(3) else {
        return; // `cargo test --benches` probes bench binaries; nothing to list
    };
    let (dur, rounds) = (set.dur, set.rounds.max(1));
    let n = env_num("BENCH_PENDING", 200) as usize;
    let clients = env_num("BENCH_CLIENTS", 4) as usize;
    let per = SLOTS_PER_DEVICE as usize;
    let n_devices = n.div_ceil(per);
    let bin = esigd_binary();
    println!("scd_pending: {}", set.describe());
    println!(
        "esigd: {}; {n} pending SCD signatures on {n_devices} devices; one-time load: {clients} clients, closed loop",
        bin.display()
    );

    // Set-up: e-Service PKI, IdP, Remote SCD service, devices, esigd.
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let token = TestToken::create();
    let ca = pki::Ca::new(w, "eservice-ca");
    let server = ca.issue("server", "/CN=esigd.test", "server_ext", None);
    let client = ca.issue("bench", "/CN=bench/O=Bench Office", "client_ext", None);
    let (_idp, issuer) = start_idp(
        w,
        &json!({"clients": [
            {"client_id": "esigd", "client_secret": ESIGD_SECRET,
             "redirect_uris": ["http://127.0.0.1:9/esigd"], "introspect_any_token": true},
            {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [REDIRECT],
             "token_endpoint_auth_method": "client_secret_basic", "id_token_ttl": 3600}
        ]}),
    );
    let (id_token, access_token) = login(&issuer, CLIENT_ID, CLIENT_SECRET, REDIRECT, "mari");
    let samples = 2 * rounds + 1;
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
    let rscd_pki = Pki::new(w);
    let rscd = start_rscd_with(
        &rscd_pki,
        &w.join("rscd"),
        free_port(),
        free_port(),
        &w.join("rscd.log"),
        &["--push-limit", "100000", "--user-window", "600s"],
    );
    let t0 = Instant::now();
    let mut devices = start_devices(&rscd_pki, &rscd, w, n_devices);
    let devices_started = t0.elapsed();
    let toml = format!(
        r#"
[tls]
cert = {server:?}
key = {server_key:?}
client_ca = {client_ca:?}

[ca]
base_url = "http://esig.example.com"

[tsa]
allow_unsynchronized_clock = true

[identity]
issuer = {issuer:?}
client_id = "esigd"
# The minted tokens carry the set-up time as auth_time; a long run must not outlast the login.
max_age = "2h"
client_secret = {{ env = "ESIGD_BENCH_IDP_SECRET" }}
[identity.claims]
default_country = "EE"

[scd]
url = "https://localhost:{rp_port}"
client_cert = {rp:?}
client_key = {rp_key:?}
server_ca = {rscd_ca:?}
relying_party_uuid = "00000000-0000-4000-8000-000000000001"
relying_party_name = "Bench signing"
onboarding_timeout = "60s"
signing_timeout = "600s"
max_pending = {max_pending}

[[eservice]]
id = "bench"
name = "Bench Office"
client_cert_sha256 = {fp:?}
allowed_ips = ["127.0.0.1/32"]
id_token_audiences = ["{CLIENT_ID}"]
"#,
        server = server.0,
        server_key = server.1,
        client_ca = ca.pem(),
        rp_port = rscd.rp_port,
        rp = rscd_pki.path("esigd-rp.pem"),
        rp_key = rscd_pki.path("esigd-rp.key"),
        rscd_ca = rscd_pki.path("rscd-ca.pem"),
        max_pending = (2 * n).max(256),
        fp = sha256_of_cert(&client.0),
    );
    let cfg = config(w, &token, &toml);
    let env = [("ESIGD_BENCH_IDP_SECRET", ESIGD_SECRET)];
    esigd_init(&bin, &cfg, &env);
    let esigd = Esigd::serve(&bin, &cfg, &w.join("esigd.log"), &env);
    let pid = esigd.pid();
    let tls = tls_config(&ca.pem(), &client.0, &client.1);

    // Onboarding through the API, the devices answering.
    let t0 = Instant::now();
    let eservice = esigd.eservice.clone();
    let (ca_pem, client_pair) = (ca.pem(), client.clone());
    let create = move |device: &str, slot: u32| {
        let body = json!({
            "SCDType": "REMOTE_SCD",
            "SCDRemoteId": device,
            "SCDKeyId": slot,
            "requestTimestamp": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        })
        .to_string();
        let auth = format!("X-GovStack-AuthenticationToken: {access_token}");
        mtls(
            &eservice,
            &ca_pem,
            Some(&client_pair),
            "POST",
            "/v1/cert/create",
            &[
                "-H",
                &auth,
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body,
                "--max-time",
                "120",
            ],
        )
    };
    let by_device = onboard(&mut devices, n, &create);
    let onboarded = t0.elapsed();
    let counts: Vec<usize> = by_device.iter().map(Vec::len).collect();
    let pseudonyms: Vec<String> = by_device.into_iter().flatten().collect();
    assert_eq!(pseudonyms.len(), n);
    println!(
        "set-up: {n_devices} devices started in {:.1} s, {n} keys onboarded through the API in {:.1} s",
        devices_started.as_secs_f64(),
        onboarded.as_secs_f64()
    );

    let reqs = Requests::new(&esigd.eservice, tokens, &docs);
    let kept: Kept = Default::default();
    // A fresh connection for each phase (an idle keep-alive connection may be closed meanwhile).
    let conn = || Conn::open(&esigd.eservice, &tls);
    // Warm-up: connections, JWKS fetch, first store writes, page cache.
    run_load(
        &esigd.eservice,
        &tls,
        clients,
        Duration::from_secs(1),
        None,
        &reqs,
        &kept,
    );
    // Signatures/s, other processes' CPU (cores) and esigd's CPU per signature (µs; hardly
    // affected by other processes, and it includes whatever the pending signatures cost).
    let load = |reqs: &Arc<Requests>| {
        let (mut others, cpu0) = (OthersCpu::start(pid), process_cpu_of(pid));
        let s = run_load(&esigd.eservice, &tls, clients, dur, None, reqs, &kept);
        let cpu = (process_cpu_of(pid) - cpu0).as_secs_f64() * 1e6 / s.lat_ms.len() as f64;
        (s.per_sec, others.cores(), cpu)
    };

    let mut out = Vec::new();
    for round in 0..rounds {
        // (a) Baseline: nothing pending.
        let (base, base_others, base_cpu) = load(&reqs);
        std::thread::sleep(Duration::from_secs(1));
        let rss_before = rss_kib(pid);
        // (b) n signatures pending, one per key.
        let t0 = Instant::now();
        let ids = make_pending(&mut conn(), round, &pseudonyms);
        let made = t0.elapsed();
        std::thread::sleep(Duration::from_secs(2));
        let rss_with = rss_kib(pid);
        // (c) The same load with them pending; they must all still be pending afterwards.
        let (pending, pending_others, pending_cpu) = load(&reqs);
        let mut c = conn();
        for id in &ids {
            let (status, v) = response(&mut c, id, 0);
            assert_eq!(
                status, 202,
                "round {round}: not pending after the load sample: {v}"
            );
        }
        // (d) The devices answer; every signature completes.
        let t0 = Instant::now();
        std::thread::scope(|s| {
            let devices = &mut devices;
            let counts = &counts;
            let h = s.spawn(move || confirm_signatures(devices, counts));
            let mut c = conn();
            for id in &ids {
                loop {
                    let (status, v) = response(&mut c, id, 20_000);
                    match status {
                        200 => break,
                        202 => continue,
                        _ => panic!("round {round}: signature {id}: HTTP {status}: {v}"),
                    }
                }
            }
            h.join().unwrap();
        });
        let drain = t0.elapsed();
        std::thread::sleep(Duration::from_secs(1));
        let rss_after = rss_kib(pid);
        out.push(Round {
            base,
            base_others,
            base_cpu,
            pending,
            pending_others,
            pending_cpu,
            rss_before,
            rss_with,
            rss_after,
            create: made,
            drain,
        });
    }

    let mib = |k: u64| k as f64 / 1024.0;
    let per_kib = |r: &Round| (r.rss_with as f64 - r.rss_before as f64) / n as f64;
    println!();
    println!(
        "| round | one-time/s, 0 pending (others, cores; esigd CPU µs/sig) | one-time/s, {n} pending (others, cores; esigd CPU µs/sig) | ratio | esigd RSS before / with {n} pending / after drain, MiB | KiB per pending | {n} requests made in | drain |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (i, r) in out.iter().enumerate() {
        println!(
            "| {} | {:.0} ({:.2}; {:.0}) | {:.0} ({:.2}; {:.0}) | {:.3} | {:.1} / {:.1} / {:.1} | {:.1} | {:.2} s | {:.2} s |",
            i + 1,
            r.base,
            r.base_others,
            r.base_cpu,
            r.pending,
            r.pending_others,
            r.pending_cpu,
            r.pending / r.base,
            mib(r.rss_before),
            mib(r.rss_with),
            mib(r.rss_after),
            per_kib(r),
            r.create.as_secs_f64(),
            r.drain.as_secs_f64()
        );
    }
    let med = |f: &dyn Fn(&Round) -> f64| median(out.iter().map(f).collect());
    let (base, pending) = (med(&|r| r.base), med(&|r| r.pending));
    let ratio = pending / base;
    let ratio_med = med(&|r| r.pending / r.base);
    let ok = |b: bool| if b { "met" } else { "NOT met" };
    println!();
    println!(
        "| figure (medians over {} rounds) | value | goal |",
        out.len()
    );
    println!("|---|---|---|");
    println!(
        "| one-time signatures/s ({clients} clients): 0 pending / {n} pending | {base:.0} / {pending:.0} | |"
    );
    println!(
        "| throughput ratio, {n} pending vs none (of the medians; median of per-round ratios) | {ratio:.3}; {ratio_med:.3} | ≥ 0.90 ({}) |",
        ok(ratio >= 0.90)
    );
    println!(
        "| esigd CPU per one-time signature: 0 pending / {n} pending (less sensitive to other processes) | {:.0} / {:.0} µs (ratio {:.3}) | |",
        med(&|r| r.base_cpu),
        med(&|r| r.pending_cpu),
        med(&|r| r.base_cpu) / med(&|r| r.pending_cpu)
    );
    println!(
        "| other processes' CPU during the samples: 0 pending / {n} pending | {:.2} / {:.2} cores | |",
        med(&|r| r.base_others),
        med(&|r| r.pending_others)
    );
    println!(
        "| esigd RSS growth per pending signature: round 1; median | {:.1} KiB; {:.1} KiB | |",
        per_kib(&out[0]),
        med(&per_kib)
    );
    println!(
        "| {n} tokens + `POST /v1/sign/pseudonym` (one connection, in turn) | {:.2} s | |",
        med(&|r| r.create.as_secs_f64())
    );
    println!(
        "| drain: devices confirm ({n_devices} in parallel, each its requests in turn) until all {n} answer 200 | {:.2} s ({:.1} signatures/s) | |",
        med(&|r| r.drain.as_secs_f64()),
        n as f64 / med(&|r| r.drain.as_secs_f64())
    );
    let load_end = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!();
    println!("load average at the end: {}", load_end.trim());
}
