//! The listeners of the real daemon under abuse and reload (issue #11): one host holding a thousand idle
//! connections and trickling request bodies while another host uses `/tsa`, `/ocsp` and the signing page;
//! `tls.client_ca` and `tls.client_crl` replaced by SIGHUP. Clients: curl and openssl (implementations we did
//! not write), raw sockets for the abuse.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use esigd_hsm::testing::TestToken;
use esigd_testkit::api::{mtls, sha256_of_cert};
use esigd_testkit::flood::{connect_from, expect_408, require_open_files, trickle};
use esigd_testkit::pki::{CA_CNF, Ca, openssl};
use esigd_testkit::{Daemon, config, esigd, init};

/// A configured daemon with `tls` (the `[tls]` section), `extra` TOML and the e-Service `shop`; logs to
/// `<dir>/esigd.log`. Returns the daemon and its configuration file.
fn daemon(dir: &Path, token: &TestToken, tls: &str, extra: &str) -> (Daemon, PathBuf) {
    let cfg = config(
        dir,
        token,
        &format!(
            "[tls]\n{tls}\n[tsa]\nallow_unsynchronized_clock = true\n{extra}\n{}",
            esigd_testkit::SHOP_ESERVICE
        ),
    );
    init(&cfg);
    let mut cmd = esigd();
    cmd.arg("--config").arg(&cfg).args(esigd_testkit::SERVE);
    (Daemon::start_logged(cmd, dir.join("esigd.log")), cfg)
}

/// curl from 127.0.0.1: (HTTP status, 0 when there was no answer; seconds taken).
fn curl(args: &[&str]) -> (u16, f64) {
    let t = Instant::now();
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "20",
            "-w",
            "%{http_code}",
        ])
        .args(args)
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0);
    (code, t.elapsed().as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_cannot_starve_tsa_ocsp_and_the_signing_page() {
    require_open_files(1500);
    let dir = tempfile::tempdir().unwrap();
    let token = TestToken::create();
    let ca = Ca::new(dir.path(), "eservice-ca");
    let server = ca.issue("server", "/CN=esigd.test", "server_ext", None);
    let tls = format!(
        "cert = {:?}\nkey = {:?}\nclient_ca = {:?}",
        server.0,
        server.1,
        ca.pem()
    );
    // Production listener settings except a 1 s body deadline, so the test is quick.
    let (d, _) = daemon(
        dir.path(),
        &token,
        &tls,
        "[listen]\nbody_read_timeout = \"1s\"\n",
    );
    let addr: SocketAddr = d.public.parse().unwrap();
    let w = dir.path();
    std::fs::write(w.join("doc.txt"), b"listener exhaustion\n").unwrap();
    openssl(
        w,
        &[
            "ts", "-query", "-data", "doc.txt", "-sha256", "-cert", "-out", "q.tsq",
        ],
    );
    let ca_pem = w.join("data/pki/ca.pem");
    openssl(
        w,
        &[
            "ocsp",
            "-issuer",
            ca_pem.to_str().unwrap(),
            "-serial",
            "0x1000",
            "-reqout",
            "ocsp.der",
        ],
    );
    let page = d.url(&format!(
        "/v1/sign/interactive?serviceId=shop&hashType=SHA2-256&format=CAdES&hash={}&callbackUrl=https%3A%2F%2Fshop.example%2Fcb%2Fdone&dataToBeDisplayed={}",
        "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc%3D",
        URL_SAFE_NO_PAD.encode("Order 42"),
    ));
    let (tsa, ocsp) = (d.url("/tsa"), d.url("/ocsp"));
    let tsq = format!("@{}", w.join("q.tsq").display());
    let ocsp_req = format!("@{}", w.join("ocsp.der").display());
    let legit = move || {
        let mut answers = Vec::new();
        for (what, args) in [
            (
                "/tsa",
                vec![
                    "-H",
                    "Content-Type: application/timestamp-query",
                    "--data-binary",
                    &tsq,
                    &tsa,
                ],
            ),
            (
                "/ocsp",
                vec![
                    "-H",
                    "Content-Type: application/ocsp-request",
                    "--data-binary",
                    &ocsp_req,
                    &ocsp,
                ],
            ),
            ("signing page", vec![page.as_str()]),
        ] {
            let (code, secs) = curl(&args);
            answers.push((what, code, secs));
        }
        answers
    };
    let before = tokio::task::spawn_blocking(legit.clone()).await.unwrap();
    for (what, code, _) in &before {
        assert!(*code > 0, "{what}: no answer");
    }
    assert_eq!(before[0].1, 200, "/tsa");

    // From 127.0.0.2: eight bodies trickled at one byte per 2 s, then 1,024 connections that send nothing
    // (as many as listen.max_connections).
    let mut trickles = Vec::new();
    for _ in 0..8 {
        let s = connect_from("127.0.0.2", addr).await.unwrap();
        let (r, w) = s.into_split();
        let head = "POST /tsa HTTP/1.1\r\nHost: x\r\nContent-Type: application/timestamp-query\r\nContent-Length: 1000\r\n\r\n";
        let writer = trickle(w, head.into(), 1000, Duration::from_secs(2));
        trickles.push((r, writer));
    }
    let mut idle = Vec::new();
    for _ in 0..1024 {
        if let Ok(s) = connect_from("127.0.0.2", addr).await {
            idle.push(s);
        }
    }
    // Another host still gets prompt answers.
    for round in 0..3 {
        let answers = tokio::task::spawn_blocking(legit.clone()).await.unwrap();
        for ((what, code, secs), (_, before, _)) in answers.iter().zip(&before) {
            assert_eq!(
                code, before,
                "{what} (round {round}) while 127.0.0.2 holds connections"
            );
            assert!(*secs < 10.0, "{what} took {secs:.1} s");
        }
    }
    // The trickled bodies end with 408 within seconds, not after the 2,000 s they would take.
    expect_408(trickles).await;
    drop(idle);
    // The refusals were logged, but not once per connection.
    let log = d.log_text();
    let lines = log
        .lines()
        .filter(|l| l.contains("connection refused"))
        .count();
    assert!(
        (1..100).contains(&lines),
        "{lines} refusal lines for ~960 refused connections"
    );
    assert!(log.contains("listen.max_connections_per_ip"), "{log}");
    d.stop();
}

/// `openssl ca` configuration with a CRL number (so the CRL is v2, as RFC 5280 wants).
fn crl_ready(ca: &Ca) {
    let cnf = CA_CNF.replace("[d]\n", "[d]\ncrlnumber = crlnumber\n");
    std::fs::write(ca.dir.join("crl.cnf"), cnf).unwrap();
    std::fs::write(ca.dir.join("crlnumber"), "01\n").unwrap();
}

/// `openssl ca` with `args` on `ca`'s database.
fn ca_cmd(ca: &Ca, args: &[&str]) {
    let mut all = vec![
        "ca", "-config", "crl.cnf", "-cert", "ca.pem", "-keyfile", "ca.key",
    ];
    all.extend(args);
    openssl(&ca.dir, &all);
}

/// Whether `cert` completes the TLS handshake with the e-Service listener (any HTTP status).
fn handshakes(d: &Daemon, server_ca: &Path, cert: &(PathBuf, PathBuf)) -> bool {
    mtls(
        &d.eservice,
        server_ca,
        Some(cert),
        "GET",
        "/v1/sign/response/none",
        &[],
    )
    .status
        != 0
}

fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sighup_replaces_the_client_ca_and_the_crl() {
    let dir = tempfile::tempdir().unwrap();
    let token = TestToken::create();
    let a = Ca::new(dir.path(), "client-ca-a");
    let b = Ca::new(dir.path(), "client-ca-b");
    crl_ready(&b);
    let server = a.issue("server", "/CN=esigd.test", "server_ext", None);
    let from_a = a.issue("svc", "/CN=service-a", "client_ext", None);
    let from_b = b.issue("svc", "/CN=service-b", "client_ext", None);
    let from_b2 = b.issue("svc2", "/CN=service-b2", "client_ext", None);
    let client_ca = dir.path().join("client-ca.pem");
    std::fs::copy(a.pem(), &client_ca).unwrap();
    let tls = format!(
        "cert = {:?}\nkey = {:?}\nclient_ca = {client_ca:?}",
        server.0, server.1
    );
    let eservice = format!(
        "[[eservice]]\nid = \"svc\"\nname = \"Service\"\nclient_cert_sha256 = {:?}\nallowed_ips = [\"127.0.0.1/32\"]\n",
        sha256_of_cert(&from_b.0)
    );
    let (d, cfg) = daemon(dir.path(), &token, &tls, &eservice);
    let server_ca = a.pem();
    assert!(
        handshakes(&d, &server_ca, &from_a),
        "client of CA A refused at start"
    );
    assert!(
        !handshakes(&d, &server_ca, &from_b),
        "client of CA B accepted at start"
    );

    // The operator replaces the client CA file and reloads.
    std::fs::copy(b.pem(), &client_ca).unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    eventually("client of CA B accepted after SIGHUP", || {
        handshakes(&d, &server_ca, &from_b)
    });
    assert!(
        !handshakes(&d, &server_ca, &from_a),
        "client of CA A still accepted"
    );

    // B revokes one certificate; the operator configures the CRL and reloads.
    ca_cmd(&b, &["-revoke", "svc.pem", "-crl_reason", "keyCompromise"]);
    ca_cmd(&b, &["-gencrl", "-crldays", "7", "-out", "crl.pem"]);
    let text = std::fs::read_to_string(&cfg).unwrap();
    let with_crl = text.replace(
        "[tls]\n",
        &format!("[tls]\nclient_crl = {:?}\n", b.dir.join("crl.pem")),
    );
    std::fs::write(&cfg, &with_crl).unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    eventually("revoked client refused after SIGHUP", || {
        !handshakes(&d, &server_ca, &from_b)
    });
    assert!(
        handshakes(&d, &server_ca, &from_b2),
        "unrevoked client of CA B refused"
    );

    // A CRL file that does not load: the reload is refused and the running TLS configuration stays.
    std::fs::write(b.dir.join("crl.pem"), "not a CRL\n").unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    eventually("reload refused in the log", || {
        d.log_text().contains("tls.client_crl")
    });
    assert!(handshakes(&d, &server_ca, &from_b2));
    assert!(!handshakes(&d, &server_ca, &from_b));
    let log = d.log_text();
    assert!(log.contains("configuration reload refused"), "{log}");
    d.stop();
}
