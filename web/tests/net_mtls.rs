//! e-Service listener with real TLS: PKI made by the openssl CLI, client is curl (an independent TLS stack) or a
//! raw TCP socket.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::{Extension, Json, Router};
use esigd_web::net::{
    AllowList, EserviceTls, Limits, ListenerStats, MtlsPem, PeerInfo, Reloadable, ServeOptions,
    ShutdownReport, mtls_server_config, serve_eservice,
};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use esigd_testkit::pki::{CA_CNF, Ca, openssl, openssl_out};

struct Pki {
    _tmp: tempfile::TempDir,
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
    expired: (PathBuf, PathBuf),
    foreign: (PathBuf, PathBuf),
}

fn pki() -> Pki {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "esig-test-ca");
    let other = Ca::new(tmp.path(), "other-ca");
    Pki {
        server: ca.issue("server", "/CN=esigd.test", "server_ext", None),
        client: ca.issue(
            "client",
            "/CN=client-01/O=Land Registry",
            "client_ext",
            None,
        ),
        // Same CA, same profile as `client`; only the validity period differs.
        expired: ca.issue(
            "expired",
            "/CN=client-01/O=Land Registry",
            "client_ext",
            Some(("20200101000000Z", "20200102000000Z")),
        ),
        foreign: other.issue(
            "foreign",
            "/CN=client-01/O=Land Registry",
            "client_ext",
            None,
        ),
        ca: ca.pem(),
        _tmp: tmp,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Server under test

struct Server {
    addr: SocketAddr,
    allow: AllowList,
    stats: ListenerStats,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<ShutdownReport>,
    entered: mpsc::Receiver<()>,
    release: Arc<Notify>,
}

impl Server {
    async fn stop(mut self) -> ShutdownReport {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap()
    }
}

async fn whoami(
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Extension(peer): Extension<Arc<PeerInfo>>,
) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "ip": addr.ip().to_string(),
        "peer_ip": peer.addr.ip().to_string(),
        "cert_sha256": peer.cert_sha256_hex(),
        "spki_sha256": peer.spki_sha256_hex(),
        "subject": peer.subject,
        "cert_len": peer.client_cert_der.len(),
    }))
}

async fn start(pki: &Pki, allow: &[&str], limits: Limits) -> Server {
    start_tls(&pki.server, &pki.ca, None, allow, limits).await
}

/// A server with certificate `server`, client CAs `ca` and, if given, the CRL file `crl` (PEM or DER).
async fn start_tls(
    server: &(PathBuf, PathBuf),
    ca: &Path,
    crl: Option<&Path>,
    allow: &[&str],
    limits: Limits,
) -> Server {
    let read = |p: &Path| std::fs::read(p).unwrap();
    let (cert, key, ca) = (read(&server.0), read(&server.1), read(ca));
    let crl = crl.map(read);
    let config = mtls_server_config(&MtlsPem {
        cert_chain: &cert,
        key: &key,
        client_ca: &ca,
        client_crl: crl.as_deref(),
    })
    .unwrap();
    let allow = AllowList::new(allow.iter().map(|n| n.parse().unwrap()).collect());
    let (entered_tx, entered) = mpsc::channel(8);
    let release = Arc::new(Notify::new());
    let slow_release = release.clone();
    let app = Router::new().route("/whoami", get(whoami)).route(
        "/slow",
        get(move || {
            let (entered, release) = (entered_tx.clone(), slow_release.clone());
            async move {
                entered.send(()).await.unwrap();
                release.notified().await;
                "done"
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = ListenerStats::default();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let tls = EserviceTls {
        config: Reloadable::from_arc(config),
        allow: allow.clone(),
    };
    let opts = ServeOptions {
        limits,
        stats: stats.clone(),
        ..ServeOptions::default()
    };
    let task = tokio::spawn(async move {
        serve_eservice(listener, app, tls, opts, async move {
            let _ = stop_rx.await;
        })
        .await
        .unwrap()
    });
    Server {
        addr,
        allow,
        stats,
        stop: Some(stop_tx),
        task,
        entered,
        release,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Client: curl

struct CurlOut {
    ok: bool,
    code: String,
    http_version: String,
    body: String,
    stderr: String,
}

async fn curl(addr: SocketAddr, path: &str, extra: &[&str]) -> CurlOut {
    let url = format!("https://127.0.0.1:{}{path}", addr.port());
    let mut args: Vec<String> = [
        "-sS",
        "--max-time",
        "20",
        "-w",
        "\n%{http_code} %{http_version}",
        &url,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let out =
        tokio::task::spawn_blocking(move || Command::new("curl").args(&args).output().unwrap())
            .await
            .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, tail) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let mut tail = tail.split(' ');
    CurlOut {
        ok: out.status.success(),
        code: tail.next().unwrap_or("").to_owned(),
        http_version: tail.next().unwrap_or("").to_owned(),
        body: body.to_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

fn with_cert<'a>(pki: &'a Pki, pair: &'a (PathBuf, PathBuf)) -> Vec<&'a str> {
    vec![
        "--cacert",
        pki.ca.to_str().unwrap(),
        "--cert",
        pair.0.to_str().unwrap(),
        "--key",
        pair.1.to_str().unwrap(),
    ]
}

/// `/slow` with the client certificate, in the background (it waits for `server.release`).
fn slow_in_flight(pki: &Pki, addr: SocketAddr) -> tokio::task::JoinHandle<CurlOut> {
    let args: Vec<String> = with_cert(pki, &pki.client)
        .iter()
        .map(|s| s.to_string())
        .collect();
    tokio::spawn(async move {
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        curl(addr, "/slow", &args).await
    })
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never happened: {what}");
}

fn limits() -> Limits {
    Limits {
        handshake_timeout: Duration::from_secs(30),
        ..Limits::default()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_client_certificate_reaches_the_handler_with_its_identity() {
    let pki = pki();
    let server = start(&pki, &["127.0.0.1/32"], limits()).await;
    // Independent fingerprints from openssl.
    let dir = pki.client.0.parent().unwrap();
    let cert_fp = openssl_out(
        dir,
        "openssl x509 -in client.pem -outform DER | openssl dgst -sha256 -r",
    );
    let spki_fp = openssl_out(
        dir,
        "openssl x509 -in client.pem -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r",
    );
    let subject = openssl_out(
        dir,
        "openssl x509 -in client.pem -noout -subject -nameopt RFC2253",
    );
    let cert_fp = cert_fp.split_whitespace().next().unwrap();
    let spki_fp = spki_fp.split_whitespace().next().unwrap();
    let subject = subject.trim().strip_prefix("subject=").unwrap();

    for (proto, want_version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let mut args = with_cert(&pki, &pki.client);
        args.push(proto);
        let out = curl(server.addr, "/whoami", &args).await;
        assert!(out.ok, "curl failed: {}", out.stderr);
        assert_eq!(
            (out.code.as_str(), out.http_version.as_str()),
            ("200", want_version)
        );
        let body: serde_json::Value = serde_json::from_str(&out.body).unwrap();
        assert_eq!(body["ip"], "127.0.0.1");
        assert_eq!(body["peer_ip"], "127.0.0.1");
        assert_eq!(body["cert_sha256"], cert_fp);
        assert_eq!(body["spki_sha256"], spki_fp);
        assert_eq!(body["subject"], subject);
    }
    let c = server.stats.snapshot();
    assert_eq!((c.accepted, c.handshake_failed, c.rejected_ip), (2, 0, 0));
    assert_eq!(server.stop().await, ShutdownReport { aborted: 0 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_client_certificates_and_tls12_are_refused() {
    let pki = pki();
    let server = start(&pki, &["127.0.0.1/32"], limits()).await;
    let ca = pki.ca.to_str().unwrap();
    let mut tls12 = with_cert(&pki, &pki.client);
    tls12.extend(["--tlsv1.2", "--tls-max", "1.2"]);
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("no client certificate", vec!["--cacert", ca]),
        ("certificate from another CA", with_cert(&pki, &pki.foreign)),
        ("expired certificate", with_cert(&pki, &pki.expired)),
        ("TLS 1.2 client", tls12),
    ];
    for (n, (what, args)) in cases.iter().enumerate() {
        let out = curl(server.addr, "/whoami", args).await;
        assert!(
            !out.ok && out.code != "200",
            "{what} was accepted: {} {}",
            out.code,
            out.body
        );
        let want = n as u64 + 1;
        let stats = server.stats.clone();
        eventually(what, || stats.snapshot().handshake_failed == want).await;
    }
    // Control: the same server still serves the valid certificate.
    let out = curl(server.addr, "/whoami", &with_cert(&pki, &pki.client)).await;
    assert_eq!(out.code, "200", "{}", out.stderr);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ip_outside_the_allow_list_is_closed_before_the_handshake() {
    let pki = pki();
    let server = start(&pki, &["127.0.0.1/32"], limits()).await;

    // Raw socket from 127.0.0.2 that sends nothing: the server closes it without writing a byte.
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut stream = sock.connect(server.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("server kept the connection open")
        .unwrap_or(0);
    assert_eq!(n, 0, "server sent bytes to a disallowed peer");
    let stats = server.stats.clone();
    eventually("rejected_ip = 1", || stats.snapshot().rejected_ip == 1).await;

    // curl from 127.0.0.2 with a valid certificate fails too, and no handshake was attempted.
    let mut args = with_cert(&pki, &pki.client);
    args.extend(["--interface", "127.0.0.2"]);
    let out = curl(server.addr, "/whoami", &args).await;
    assert!(!out.ok, "disallowed IP was served: {}", out.body);
    eventually("rejected_ip = 2", || stats.snapshot().rejected_ip == 2).await;
    let c = server.stats.snapshot();
    assert_eq!((c.accepted, c.handshake_failed), (0, 0), "{c:?}");

    // Reload (SIGHUP path): the new list applies to the next connection.
    server.allow.replace(vec![
        "127.0.0.1/32".parse().unwrap(),
        "127.0.0.2/32".parse().unwrap(),
    ]);
    let out = curl(server.addr, "/whoami", &args).await;
    assert_eq!(out.code, "200", "{}", out.stderr);
    let body: serde_json::Value = serde_json::from_str(&out.body).unwrap();
    assert_eq!(body["ip"], "127.0.0.2");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_refused() {
    let pki = pki();
    let server = start(
        &pki,
        &["127.0.0.1/32"],
        Limits {
            max_connections: 1,
            ..limits()
        },
    )
    .await;
    // Occupies the only slot (waits in the handshake).
    let held = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let stats = server.stats.clone();
    eventually("first connection active", || stats.snapshot().active == 1).await;
    let out = curl(server.addr, "/whoami", &with_cert(&pki, &pki.client)).await;
    assert!(!out.ok, "second connection was served");
    eventually("rejected_limit = 1", || {
        stats.snapshot().rejected_limit == 1
    })
    .await;
    drop(held);
    eventually("slot released", || stats.snapshot().active == 0).await;
    let out = curl(server.addr, "/whoami", &with_cert(&pki, &pki.client)).await;
    assert_eq!(out.code, "200", "{}", out.stderr);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish_and_stops_accepting() {
    let pki = pki();
    let mut server = start(&pki, &["127.0.0.1/32"], limits()).await;
    let addr = server.addr;
    let in_flight = slow_in_flight(&pki, addr);
    server.entered.recv().await.unwrap();
    let _ = server.stop.take().unwrap().send(());
    // The listener closes: new connections are refused.
    let mut refused = false;
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "listener still accepting after shutdown");
    assert!(
        !server.task.is_finished(),
        "returned before the in-flight request finished"
    );
    server.release.notify_one();
    let out = in_flight.await.unwrap();
    assert_eq!(
        (out.code.as_str(), out.body.as_str()),
        ("200", "done"),
        "{}",
        out.stderr
    );
    assert_eq!(server.task.await.unwrap(), ShutdownReport { aborted: 0 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_aborts_connections_still_open_at_the_deadline() {
    let pki = pki();
    let mut server = start(
        &pki,
        &["127.0.0.1/32"],
        Limits {
            shutdown_grace: Duration::from_millis(300),
            ..limits()
        },
    )
    .await;
    let addr = server.addr;
    let in_flight = slow_in_flight(&pki, addr);
    server.entered.recv().await.unwrap();
    // Never released.
    let report = server.stop().await;
    assert_eq!(report, ShutdownReport { aborted: 1 });
    let out = in_flight.await.unwrap();
    assert!(!out.ok && out.code != "200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_completes_the_handshake_is_closed_after_the_timeout() {
    let pki = pki();
    let server = start(
        &pki,
        &["127.0.0.1/32"],
        Limits {
            handshake_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
    )
    .await;
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut buf))
        .await
        .expect("server kept a silent connection open")
        .unwrap_or(0);
    assert_eq!(n, 0);
    let stats = server.stats.clone();
    eventually("handshake_failed = 1", || {
        let c = stats.snapshot();
        c.handshake_failed == 1 && c.active == 0
    })
    .await;
    assert_eq!(server.stats.snapshot().accepted, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_per_address_limit_are_refused() {
    let pki = pki();
    let server = start(
        &pki,
        &["127.0.0.1/32", "127.0.0.2/32"],
        Limits {
            max_connections_per_ip: 2,
            ..limits()
        },
    )
    .await;
    // Two connections from 127.0.0.1 (waiting in the handshake) use its share.
    let held = [
        tokio::net::TcpStream::connect(server.addr).await.unwrap(),
        tokio::net::TcpStream::connect(server.addr).await.unwrap(),
    ];
    let stats = server.stats.clone();
    eventually("two connections active", || stats.snapshot().active == 2).await;
    let out = curl(server.addr, "/whoami", &with_cert(&pki, &pki.client)).await;
    assert!(!out.ok, "a third connection from 127.0.0.1 was served");
    eventually("rejected_limit = 1", || {
        stats.snapshot().rejected_limit == 1
    })
    .await;
    // Another address is not affected.
    let mut args = with_cert(&pki, &pki.client);
    args.extend(["--interface", "127.0.0.2"]);
    let out = curl(server.addr, "/whoami", &args).await;
    assert_eq!(out.code, "200", "{}", out.stderr);
    drop(held);
    eventually("slots released", || stats.snapshot().active == 0).await;
    let out = curl(server.addr, "/whoami", &with_cert(&pki, &pki.client)).await;
    assert_eq!(out.code, "200", "{}", out.stderr);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_client_certificate_is_refused_when_the_crl_is_configured() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "crl-ca");
    let server_pair = ca.issue("server", "/CN=esigd.test", "server_ext", None);
    let good = ca.issue("good", "/CN=good-client", "client_ext", None);
    let revoked = ca.issue("revoked", "/CN=revoked-client", "client_ext", None);
    // openssl revokes and issues the CRL (v2: with a CRL number).
    let cnf = CA_CNF.replace("[d]\n", "[d]\ncrlnumber = crlnumber\n");
    std::fs::write(ca.dir.join("crl.cnf"), cnf).unwrap();
    std::fs::write(ca.dir.join("crlnumber"), "01\n").unwrap();
    let ca_args = [
        "-config", "crl.cnf", "-cert", "ca.pem", "-keyfile", "ca.key",
    ];
    let mut revoke = vec!["ca"];
    revoke.extend(ca_args);
    revoke.extend(["-revoke", "revoked.pem", "-crl_reason", "keyCompromise"]);
    openssl(&ca.dir, &revoke);
    let mut gencrl = vec!["ca"];
    gencrl.extend(ca_args);
    gencrl.extend(["-gencrl", "-crldays", "7", "-out", "crl.pem"]);
    openssl(&ca.dir, &gencrl);
    openssl(
        &ca.dir,
        &[
            "crl", "-in", "crl.pem", "-outform", "DER", "-out", "crl.der",
        ],
    );
    let text = openssl_out(&ca.dir, "openssl crl -in crl.pem -noout -text");
    assert!(text.contains("Key Compromise"), "{text}");

    let client = |pair: &(PathBuf, PathBuf)| -> Vec<String> {
        [
            "--cacert",
            ca.pem().to_str().unwrap(),
            "--cert",
            pair.0.to_str().unwrap(),
            "--key",
            pair.1.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    // Control: without the CRL the revoked certificate is served (it is valid otherwise).
    let server = start_tls(&server_pair, &ca.pem(), None, &["127.0.0.1/32"], limits()).await;
    let args = client(&revoked);
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let out = curl(server.addr, "/whoami", &args).await;
    assert_eq!(out.code, "200", "{}", out.stderr);
    server.stop().await;

    for crl in ["crl.pem", "crl.der"] {
        let server = start_tls(
            &server_pair,
            &ca.pem(),
            Some(&ca.dir.join(crl)),
            &["127.0.0.1/32"],
            limits(),
        )
        .await;
        let args = client(&revoked);
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let out = curl(server.addr, "/whoami", &args).await;
        assert!(
            !out.ok && out.code != "200",
            "{crl}: revoked certificate served"
        );
        let stats = server.stats.clone();
        eventually("handshake_failed = 1", || {
            stats.snapshot().handshake_failed == 1
        })
        .await;
        let args = client(&good);
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let out = curl(server.addr, "/whoami", &args).await;
        assert_eq!(out.code, "200", "{crl}: {}", out.stderr);
        server.stop().await;
    }
}

#[test]
fn a_bad_crl_file_is_an_error_naming_tls_client_crl() {
    let pki = pki();
    let read = |p: &Path| std::fs::read(p).unwrap();
    let (cert, key, ca) = (read(&pki.server.0), read(&pki.server.1), read(&pki.ca));
    for crl in [
        &b"not a CRL"[..],
        b"",
        b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
    ] {
        let err = mtls_server_config(&MtlsPem {
            cert_chain: &cert,
            key: &key,
            client_ca: &ca,
            client_crl: Some(crl),
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("tls.client_crl"), "{err}");
    }
}
