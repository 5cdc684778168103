//! RFC 3161 over HTTP against the running `esigd` binary: `openssl ts` as client and verifier for every
//! hash × nonce × certReq combination, the rejections, the clock gate decided from the real kernel
//! reading, pyHanko's `HTTPTimeStamper`, and 10,000 tokens from parallel keep-alive clients (also across a
//! `kill -9` and restart: serials stay distinct and every token a client received has its audit record).
//!
//! The load clients are a few lines of blocking HTTP/1.1 over `std::net::TcpStream` (keep-alive,
//! `Content-Length` bodies only): the appliance's dev-dependencies have no HTTP client, and a thread per
//! connection makes "which replies had arrived before the kill" exact.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use der::asn1::{Int, OctetString};
use der::{Decode, Encode};
use esigd_hsm::testing::TestToken;
use esigd_pki::tsp::{
    MessageImprint, PkiStatus, TimeStampReq, TimeStampResp, TspVersion, token_tst_info,
};
use esigd_testkit::validators::{
    TS_IMPRINT_MISMATCH, TS_SIGNER_NOT_FOUND, assert_openssl_refused, pyhanko_validate_tst,
};
use esigd_testkit::{Daemon, SERVE, config, esigd, text};
use sha2::Digest;

const POLICY: &str = "1.3.6.1.4.1.99999.1.1";

fn openssl(args: &[&str], dir: &Path) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl")
}

/// Runs openssl and requires success; returns stdout+stderr.
fn openssl_ok(args: &[&str], dir: &Path) -> String {
    let o = openssl(args, dir);
    assert!(o.status.success(), "openssl {args:?} failed:\n{}", text(&o));
    text(&o)
}

/// `esigd serve` on the embedded defaults in `data`, on free ports; the log goes next to `data`.
fn dev(data: &Path) -> Daemon {
    let mut cmd = esigd();
    cmd.arg("--data-dir").arg(data).args(SERVE);
    Daemon::start_logged(cmd, data.with_extension(format!("log.{}", unique())))
}

fn unique() -> u64 {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed) as u64
}

/// POST with curl; returns (HTTP status, Content-Type, body).
fn curl_post(url: &str, content_type: &str, body_file: &Path) -> (u16, String, Vec<u8>) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code} %{content_type}",
            "-H",
        ])
        .arg(format!("Content-Type: {content_type}"))
        .arg("--data-binary")
        .arg(format!("@{}", body_file.display()))
        .arg(url)
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl failed: {}", text(&out));
    let body = out.stdout;
    let split = body.iter().rposition(|b| *b == b'\n').unwrap();
    let trailer = String::from_utf8_lossy(&body[split + 1..]).to_string();
    let (code, ct) = trailer.split_once(' ').unwrap_or((&trailer, ""));
    (
        code.parse().unwrap(),
        ct.to_string(),
        body[..split].to_vec(),
    )
}

/// Value after `key` on its line of `openssl ts ... -text` output.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .map(str::trim)
}

/// genTime as printed by openssl (`Nov 28 10:15:02.123 2026 GMT`): fraction present? Also checks the
/// RFC 3161 §2.4.2 form (no trailing zeros in the fraction).
fn gen_time_has_fraction(reply_text: &str) -> bool {
    let t = field(reply_text, "Time stamp:").expect("Time stamp line");
    let hms = t.split_whitespace().nth(2).expect("time of day");
    match hms.split_once('.') {
        Some((_, frac)) => {
            assert!(
                !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit()),
                "fraction {t}"
            );
            assert!(
                !frac.ends_with('0'),
                "trailing zero in genTime fraction: {t}"
            );
            true
        }
        None => false,
    }
}

#[test]
fn openssl_queries_for_every_hash_nonce_and_cert_request_verify() {
    let dir = tempfile::tempdir().unwrap();
    let d = dev(&dir.path().join("data"));
    let w = dir.path();
    std::fs::copy(dir.path().join("data/pki/ca.pem"), w.join("ca.pem")).unwrap();
    std::fs::copy(dir.path().join("data/pki/tsa.pem"), w.join("tsa.pem")).unwrap();
    std::fs::write(w.join("doc.txt"), b"esigd RFC 3161 over HTTP\n").unwrap();

    let mut cases = 0;
    let mut with_fraction = 0;
    for hash in ["-sha256", "-sha384", "-sha512"] {
        for nonce in [true, false] {
            for cert in [true, false] {
                let case = format!("{hash} nonce={nonce} cert={cert}");
                let mut q = vec!["ts", "-query", "-data", "doc.txt", hash, "-out", "q.tsq"];
                if !nonce {
                    q.push("-no_nonce");
                }
                if cert {
                    q.push("-cert");
                }
                openssl_ok(&q, w);
                let qtext = openssl_ok(&["ts", "-query", "-in", "q.tsq", "-text"], w);
                let (code, ct, body) = curl_post(
                    &d.url("/tsa"),
                    "application/timestamp-query",
                    &w.join("q.tsq"),
                );
                assert_eq!(
                    (code, ct.as_str()),
                    (200, "application/timestamp-reply"),
                    "{case}"
                );
                std::fs::write(w.join("r.tsr"), &body).unwrap();

                let rtext = openssl_ok(&["ts", "-reply", "-in", "r.tsr", "-text"], w);
                assert_eq!(
                    field(&rtext, "Status:"),
                    Some("Granted."),
                    "{case}:\n{rtext}"
                );
                assert_eq!(
                    field(&rtext, "Policy OID:"),
                    Some(POLICY),
                    "{case}:\n{rtext}"
                );
                let alg = hash.trim_start_matches('-');
                assert_eq!(
                    field(&rtext, "Hash Algorithm:"),
                    Some(alg),
                    "{case}:\n{rtext}"
                );
                let sent_nonce = field(&qtext, "Nonce:").unwrap();
                if nonce {
                    assert!(sent_nonce.starts_with("0x"), "{case}: {qtext}");
                    assert_eq!(
                        field(&rtext, "Nonce:"),
                        Some(sent_nonce),
                        "{case}: nonce echoed:\n{rtext}"
                    );
                } else {
                    assert_eq!(
                        field(&rtext, "Nonce:"),
                        Some("unspecified"),
                        "{case}:\n{rtext}"
                    );
                }
                assert!(
                    field(&rtext, "Accuracy:").is_some_and(|a| a != "unspecified"),
                    "{case}:\n{rtext}"
                );
                if gen_time_has_fraction(&rtext) {
                    with_fraction += 1;
                }

                // openssl verifies the chain to the CA, EKU, ESS cert id, imprint; -queryfile also nonce/policy.
                let mut v = vec![
                    "ts", "-verify", "-data", "doc.txt", "-in", "r.tsr", "-CAfile", "ca.pem",
                ];
                let mut vq = vec![
                    "ts",
                    "-verify",
                    "-queryfile",
                    "q.tsq",
                    "-in",
                    "r.tsr",
                    "-CAfile",
                    "ca.pem",
                ];
                if !cert {
                    // certReq false: the token must not carry the TSA certificate, so openssl needs it
                    // given, and fails without it.
                    assert_openssl_refused(
                        &openssl(&v, w),
                        TS_SIGNER_NOT_FOUND,
                        Some(1),
                        &format!("{case}: verify without the TSA cert although certReq=false"),
                    );
                    v.extend(["-untrusted", "tsa.pem"]);
                    vq.extend(["-untrusted", "tsa.pem"]);
                }
                for args in [&v, &vq] {
                    let out = openssl_ok(args, w);
                    assert!(out.contains("Verification: OK"), "{case} {args:?}:\n{out}");
                }
                // And a different document does not verify.
                std::fs::write(w.join("other.txt"), b"another document\n").unwrap();
                let mut bad = v.clone();
                bad[3] = "other.txt";
                assert_openssl_refused(
                    &openssl(&bad, w),
                    TS_IMPRINT_MISMATCH,
                    Some(1),
                    &format!("{case}: a different document"),
                );
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 12);
    // A genTime on an exact millisecond prints without fraction (1 in 1000); twelve in a row cannot.
    assert!(
        with_fraction > 0,
        "no genTime carried a fraction of a second"
    );
    d.stop();
}

#[test]
fn rejections_are_time_stamp_responses_with_the_right_failure_info() {
    let dir = tempfile::tempdir().unwrap();
    let d = dev(&dir.path().join("data"));
    let w = dir.path();
    std::fs::write(w.join("doc.txt"), b"esigd rejections\n").unwrap();

    let reply_text = |name: &str, body_file: &str| -> String {
        let (code, ct, body) = curl_post(
            &d.url("/tsa"),
            "application/timestamp-query",
            &w.join(body_file),
        );
        assert_eq!(
            (code, ct.as_str()),
            (200, "application/timestamp-reply"),
            "{name}"
        );
        std::fs::write(w.join("r.tsr"), &body).unwrap();
        // Our own decoder agrees with openssl about the status.
        let resp = TimeStampResp::from_der(&body).unwrap();
        assert_eq!(resp.status.status, PkiStatus::Rejection, "{name}");
        assert!(resp.time_stamp_token.is_none(), "{name}");
        openssl_ok(&["ts", "-reply", "-in", "r.tsr", "-text"], w)
    };

    openssl_ok(
        &[
            "ts", "-query", "-data", "doc.txt", "-sha1", "-cert", "-out", "sha1.tsq",
        ],
        w,
    );
    openssl_ok(
        &[
            "ts",
            "-query",
            "-data",
            "doc.txt",
            "-sha256",
            "-tspolicy",
            "1.2.3.4",
            "-out",
            "policy.tsq",
        ],
        w,
    );
    std::fs::write(w.join("garbage.bin"), b"this is not a TimeStampReq").unwrap();
    // Larger than tsa.max_request_bytes (64 KiB) but below the HTTP body limit.
    std::fs::write(w.join("big.bin"), vec![0x30u8; 70 * 1024]).unwrap();

    for (name, file, info) in [
        (
            "sha1",
            "sha1.tsq",
            "unrecognized or unsupported algorithm identifier",
        ),
        (
            "policy 1.2.3.4",
            "policy.tsq",
            "the requested TSA policy is not supported by the TSA",
        ),
        (
            "garbage",
            "garbage.bin",
            "the data submitted has the wrong format",
        ),
        (
            "oversized",
            "big.bin",
            "transaction not permitted or supported",
        ),
    ] {
        let t = reply_text(name, file);
        assert_eq!(field(&t, "Status:"), Some("Rejected."), "{name}:\n{t}");
        assert_eq!(field(&t, "Failure info:"), Some(info), "{name}:\n{t}");
        assert!(
            field(&t, "Status description:").is_some(),
            "{name}: statusString:\n{t}"
        );
    }

    // Beyond the HTTP body limit (128 KiB) the body is not read at all: HTTP 413.
    std::fs::write(w.join("huge.bin"), vec![0x30u8; 200 * 1024]).unwrap();
    assert_eq!(
        curl_post(
            &d.url("/tsa"),
            "application/timestamp-query",
            &w.join("huge.bin")
        )
        .0,
        413
    );

    // Wrong media type: HTTP 415, not a TimeStampResp.
    openssl_ok(
        &[
            "ts", "-query", "-data", "doc.txt", "-sha256", "-out", "ok.tsq",
        ],
        w,
    );
    let (code, _, _) = curl_post(
        &d.url("/tsa"),
        "application/octet-stream",
        &w.join("ok.tsq"),
    );
    assert_eq!(code, 415);
    // The same query with the right media type is granted (the 415 was about the header only).
    let (code, _, body) = curl_post(
        &d.url("/tsa"),
        "application/timestamp-query",
        &w.join("ok.tsq"),
    );
    assert_eq!(code, 200);
    assert_eq!(
        TimeStampResp::from_der(&body).unwrap().status.status,
        PkiStatus::Granted
    );
    let log = d.log_text();
    for kind in ["bad_alg", "unaccepted_policy", "malformed", "too_large"] {
        assert!(log.contains(kind), "rejection {kind} not logged:\n{log}");
    }
    d.stop();
}

/// Configured (non-dev) run with `tsa.allow_unsynchronized_clock = false` and `tsa.accuracy = 1us`. The
/// expected decision is computed from this machine's adjtimex reading through the appliance's own reader.
/// A configured (non-dev) daemon for `token` with `extra` TOML: `esigd init`, then e-Service
/// TLS files made with openssl (the embedded defaults make their own; a configured run does not).
fn configured(dir: &Path, token: &TestToken, extra: &str) -> Daemon {
    let cfg = config(dir, token, extra);
    let o = esigd()
        .arg("--config")
        .arg(&cfg)
        .arg("init")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let tls = dir.join("data/tls");
    std::fs::create_dir_all(&tls).unwrap();
    openssl_ok(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.pem",
        ],
        &tls,
    );
    std::fs::copy(tls.join("server.pem"), tls.join("client-ca.pem")).unwrap();
    let mut cmd = esigd();
    cmd.arg("--config").arg(&cfg).args(SERVE);
    Daemon::start_logged(cmd, dir.join("esigd.log"))
}

/// curl from the local address `interface` with `args` (headers, body) to `url`, the body saved
/// as `out` in `dir`: the HTTP status.
fn curl_from(dir: &Path, interface: &str, args: &[&str], url: &str, out: &str) -> String {
    let o = Command::new("curl")
        .args([
            "-s",
            "--interface",
            interface,
            "-o",
            out,
            "-w",
            "%{http_code}",
        ])
        .args(args)
        .arg(url)
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// curl arguments that POST the time-stamp query file `q.tsq`.
const TSQ_BODY: [&str; 4] = [
    "-H",
    "Content-Type: application/timestamp-query",
    "--data-binary",
    "@q.tsq",
];

/// Writes `doc.txt` with `text` and an openssl query for it, `q.tsq`, into `dir`.
fn query_file(dir: &Path, text: &[u8]) {
    std::fs::write(dir.join("doc.txt"), text).unwrap();
    openssl_ok(
        &[
            "ts", "-query", "-data", "doc.txt", "-sha256", "-cert", "-out", "q.tsq",
        ],
        dir,
    );
}

/// `openssl ts -verify` of the reply `reply` in `dir` against `doc.txt` and the daemon's CA.
fn verify_reply(dir: &Path, reply: &str) {
    let v = openssl_ok(
        &[
            "ts",
            "-verify",
            "-data",
            "doc.txt",
            "-in",
            reply,
            "-CAfile",
            "data/pki/ca.pem",
        ],
        dir,
    );
    assert!(v.contains("Verification: OK"), "{v}");
}

/// `tsa.allowed_ips`: only listed source addresses may stamp; others get 403 and no token.
#[test]
fn tsa_allowed_ips_refuses_other_addresses() {
    let token = TestToken::create();
    let dir = tempfile::tempdir().unwrap();
    let d = configured(
        dir.path(),
        &token,
        "[tsa]\nallow_unsynchronized_clock = true\nallowed_ips = [\"127.0.0.2/32\"]\n",
    );
    let w = dir.path();
    query_file(w, b"allow list\n");
    let post = |interface: &str| curl_from(w, interface, &TSQ_BODY, &d.url("/tsa"), "r.tsr");
    assert_eq!(
        post("127.0.0.1"),
        "403",
        "an address outside tsa.allowed_ips must be refused"
    );
    assert!(
        std::fs::read_to_string(w.join("r.tsr"))
            .unwrap()
            .contains("tsa.allowed_ips")
    );
    assert_eq!(post("127.0.0.2"), "200");
    verify_reply(w, "r.tsr");
}

/// Issue #11: `limits.public_rate_per_ip` on `/tsa` and `/ocsp`. A burst beyond the budget from
/// one address gets 429 with `Retry-After` (and no token); an exempt network and another
/// address still get 200 and a token that verifies.
#[test]
fn a_burst_over_the_public_rate_limit_gets_429_with_retry_after() {
    let token = TestToken::create();
    let dir = tempfile::tempdir().unwrap();
    let d = configured(
        dir.path(),
        &token,
        "[tsa]\nallow_unsynchronized_clock = true\n[limits]\npublic_rate_per_ip = 1\npublic_rate_burst = 3\npublic_rate_exempt = [\"127.0.0.2/32\"]\n",
    );
    let w = dir.path();
    query_file(w, b"rate limit\n");
    // Ten POSTs on one keep-alive connection (one curl process: well under a second, so at most
    // one more request than the burst can have been refilled): status codes and headers.
    let burst = |interface: &str| -> (Vec<String>, String) {
        let url = d.url("/tsa");
        let mut args: Vec<&str> = vec!["-D", "headers.txt"];
        args.extend(TSQ_BODY);
        args.extend(["-w", "%{http_code}\n"]);
        let urls = vec![url.as_str(); 10];
        let mut outs = Vec::new();
        for i in 0..urls.len() {
            outs.push(format!("r{i}.out"));
        }
        let o = Command::new("curl")
            .args(["-s", "--interface", interface])
            .args(&args)
            .args(outs.iter().flat_map(|o| ["-o", o.as_str()]))
            .args(&urls)
            .current_dir(w)
            .output()
            .unwrap();
        let codes = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        let headers = std::fs::read_to_string(w.join("headers.txt")).unwrap();
        std::fs::remove_file(w.join("headers.txt")).unwrap();
        (codes, headers)
    };
    let (codes, headers) = burst("127.0.0.1");
    assert_eq!(codes.len(), 10, "{codes:?}");
    assert_eq!(
        &codes[..3],
        ["200", "200", "200"],
        "the burst passes: {codes:?}"
    );
    let refused = codes.iter().filter(|c| *c == "429").count();
    assert!(refused >= 6, "over the budget must be 429: {codes:?}");
    assert!(codes.iter().all(|c| c == "200" || c == "429"), "{codes:?}");
    let lower = headers.to_ascii_lowercase();
    let retry_after: Vec<u64> = lower
        .lines()
        .filter_map(|l| l.strip_prefix("retry-after:"))
        .map(|v| v.trim().parse().unwrap())
        .collect();
    assert_eq!(retry_after.len(), refused, "{headers}");
    assert!(retry_after.iter().all(|s| (1..=2).contains(s)), "{headers}");
    let last = codes.iter().rposition(|c| c == "429").unwrap();
    let body = std::fs::read_to_string(w.join(format!("r{last}.out"))).unwrap();
    assert!(body.contains("limits.public_rate_per_ip"), "{body}");
    // /ocsp shares the budget of that address: refused too, before any parsing or signing.
    let ocsp = curl_from(
        w,
        "127.0.0.1",
        &[
            "-H",
            "Content-Type: application/ocsp-request",
            "--data-binary",
            "@q.tsq",
        ],
        &d.url("/ocsp"),
        "o.out",
    );
    assert_eq!(ocsp, "429");
    // The exempt network is not limited; its tokens verify.
    let (codes, _) = burst("127.0.0.2");
    assert!(codes.iter().all(|c| c == "200"), "exempt: {codes:?}");
    verify_reply(w, "r9.out");
    // Another address has a budget of its own.
    assert_eq!(
        curl_from(w, "127.0.0.3", &TSQ_BODY, &d.url("/tsa"), "r.tsr"),
        "200"
    );
    verify_reply(w, "r.tsr");
}

/// `listen.trusted_proxies`: behind a trusted proxy the client named in X-Forwarded-For is what
/// `tsa.allowed_ips` and `ui.max_sessions_per_ip` see; the header from any other peer is ignored.
#[test]
fn behind_a_trusted_proxy_the_forwarded_client_is_checked() {
    let token = TestToken::create();
    let dir = tempfile::tempdir().unwrap();
    let d = configured(
        dir.path(),
        &token,
        &format!(
            r#"
[listen]
trusted_proxies = ["127.0.0.2/32"]
[tsa]
allow_unsynchronized_clock = true
allowed_ips = ["198.51.100.0/24"]
[ui]
max_sessions_per_ip = 1
{}"#,
            esigd_testkit::SHOP_ESERVICE
        ),
    );
    let w = dir.path();
    query_file(w, b"behind a proxy\n");
    // From `interface` with `X-Forwarded-For: forwarded` (if any): the HTTP status.
    let curl = |interface: &str, forwarded: Option<&str>, body: &[&str], url: &str| {
        let header = forwarded.map(|f| format!("X-Forwarded-For: {f}"));
        let mut args: Vec<&str> = header.iter().flat_map(|h| ["-H", h.as_str()]).collect();
        args.extend(body);
        curl_from(w, interface, &args, url, "r.out")
    };
    let stamp = |interface: &str, forwarded: Option<&str>| {
        curl(interface, forwarded, &TSQ_BODY, &d.url("/tsa"))
    };
    // Not a trusted proxy: its header is ignored, and 127.0.0.1 is not allowed.
    assert_eq!(stamp("127.0.0.1", Some("198.51.100.7")), "403");
    // The trusted proxy forwards an allowed client: granted, and the token verifies.
    assert_eq!(stamp("127.0.0.2", Some("198.51.100.7")), "200");
    verify_reply(w, "r.out");
    // The nearest untrusted hop is the client, whatever the client wrote on the left.
    assert_eq!(stamp("127.0.0.2", Some("198.51.100.7, 203.0.113.5")), "403");
    // The proxy itself, with no header, is not an allowed client.
    assert_eq!(stamp("127.0.0.2", None), "403");
    // The proxy passes on a hop that is not an address: refused, never taken as the proxy itself.
    assert_eq!(stamp("127.0.0.2", Some("unknown")), "400");
    // What the client wrote left of its own address is never parsed.
    assert_eq!(stamp("127.0.0.2", Some("x, 198.51.100.7")), "200");

    // The per-address session cap counts forwarded clients, not the proxy.
    let mut page = url::Url::parse(&d.url("/v1/sign/interactive")).unwrap();
    page.query_pairs_mut()
        .append_pair("serviceId", "shop")
        .append_pair(
            "hash",
            &base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]),
        )
        .append_pair("hashType", "SHA2-256")
        .append_pair("format", "CAdES")
        .append_pair(
            "dataToBeDisplayed",
            &base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                "Order 42",
            ),
        )
        .append_pair("callbackUrl", "https://shop.example/cb/done")
        .append_pair("state", "s")
        .append_pair("nonce", "n");
    let open = |forwarded: &str| curl("127.0.0.2", Some(forwarded), &[], page.as_str());
    assert_eq!(open("198.51.100.7"), "200");
    assert_eq!(open("198.51.100.8"), "200");
    assert_eq!(
        open("198.51.100.7"),
        "503",
        "a second live session from one client"
    );
    let log = std::fs::read_to_string(w.join("esigd.log")).unwrap();
    assert!(
        log.contains("ip=198.51.100.7"),
        "the refusal names the client, not the proxy"
    );
}

/// The kernel's NTP state read WITHOUT the code under test: `adjtimex(2)` with `modes = 0` through
/// Python's `ctypes` (its own `struct timex` layout, checked by size and a sane `tick`).
const ADJTIMEX_PY: &str = r#"
import ctypes, ctypes.util, json
class Timeval(ctypes.Structure):
    _fields_ = [('tv_sec', ctypes.c_long), ('tv_usec', ctypes.c_long)]
class Timex(ctypes.Structure):
    _fields_ = [('modes', ctypes.c_uint), ('offset', ctypes.c_long), ('freq', ctypes.c_long),
                ('maxerror', ctypes.c_long), ('esterror', ctypes.c_long), ('status', ctypes.c_int),
                ('constant', ctypes.c_long), ('precision', ctypes.c_long), ('tolerance', ctypes.c_long),
                ('time', Timeval), ('tick', ctypes.c_long), ('ppsfreq', ctypes.c_long),
                ('jitter', ctypes.c_long), ('shift', ctypes.c_int), ('stabil', ctypes.c_long),
                ('jitcnt', ctypes.c_long), ('calcnt', ctypes.c_long), ('errcnt', ctypes.c_long),
                ('stbcnt', ctypes.c_long), ('tai', ctypes.c_int), ('_reserved', ctypes.c_int * 11)]
assert ctypes.sizeof(Timex) == 208, ctypes.sizeof(Timex)  # x86_64 / aarch64 Linux
libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
t = Timex(modes=0)
state = libc.adjtimex(ctypes.byref(t))
if state < 0:
    raise OSError(ctypes.get_errno(), 'adjtimex')
print(json.dumps({'state': state, 'status': t.status, 'maxerror_us': t.maxerror, 'tick': t.tick}))
"#;

/// What the clock gate must decide for the current kernel state, derived from `adjtimex(2)` as its
/// man page documents it (not from esigd-tsa): `TIME_ERROR` (5), `STA_UNSYNC` (0x40) or
/// `STA_CLOCKERR` (0x1000) mean unsynchronised, and so does `maxerror` at the kernel's 16 s cap
/// (NTP_PHASE_LIMIT, where the kernel sets STA_UNSYNC); otherwise `maxerror` (µs) is the error bound.
/// Returns the expected rejection reason (`None` = granted) and the raw reading.
fn independent_clock_expectation(accuracy: Duration) -> (Option<&'static str>, serde_json::Value) {
    let python = esigd_testkit::venv().join("bin/python");
    let o = Command::new(&python)
        .args(["-c", ADJTIMEX_PY])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    assert!(
        o.status.success(),
        "adjtimex through ctypes failed:\n{}",
        text(&o)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("unparseable adjtimex reading ({e}):\n{}", text(&o)));
    let int = |k: &str| v[k].as_i64().unwrap_or_else(|| panic!("no `{k}` in {v}"));
    let (state, status, maxerror_us, tick) =
        (int("state"), int("status"), int("maxerror_us"), int("tick"));
    // A wrong struct layout would read garbage: tick is 1/USER_HZ s ± 10 % (USER_HZ 100 → 10000 µs).
    assert!(
        (9_000..=11_000).contains(&tick),
        "implausible timex.tick {tick}: {v}"
    );
    assert!(
        (0..=5).contains(&state) && maxerror_us >= 0,
        "implausible reading {v}"
    );
    let unsynchronized =
        state == 5 || status & 0x0040 != 0 || status & 0x1000 != 0 || maxerror_us >= 16_000_000;
    let expect = if unsynchronized {
        Some("clock_unsynchronized")
    } else if Duration::from_micros(maxerror_us.unsigned_abs()) > accuracy {
        Some("clock_max_error")
    } else {
        None
    };
    (expect, v)
}

#[test]
fn clock_gate_refuses_from_the_kernel_reading() {
    use esigd_tsa::{ClockState, KernelClock};
    let accuracy = Duration::from_micros(1);
    // The expected outcome comes from an independent reading of the kernel...
    let (expect_kind, independent) = independent_clock_expectation(accuracy);
    // ... and the code under test must read the same state (it is what the daemon uses).
    let reading = esigd_tsa::TimexSource::read(&esigd::sys::Adjtimex).unwrap();
    let status = KernelClock(esigd::sys::Adjtimex).status().unwrap();
    eprintln!(
        "ctypes adjtimex: {independent}; esigd: {reading:?} -> {status:?}; expecting {expect_kind:?}"
    );
    assert_eq!(
        status.synchronized,
        expect_kind != Some("clock_unsynchronized"),
        "esigd's kernel clock disagrees with the independent adjtimex reading {independent}: {reading:?} -> {status:?}"
    );

    let token = TestToken::create();
    let dir = tempfile::tempdir().unwrap();
    let d = configured(
        dir.path(),
        &token,
        "[tsa]\nallow_unsynchronized_clock = false\naccuracy = \"1us\"\n",
    );

    let w = dir.path();
    std::fs::write(w.join("doc.txt"), b"clock gate\n").unwrap();
    openssl_ok(
        &[
            "ts", "-query", "-data", "doc.txt", "-sha256", "-cert", "-out", "q.tsq",
        ],
        w,
    );
    let (code, _, body) = curl_post(
        &d.url("/tsa"),
        "application/timestamp-query",
        &w.join("q.tsq"),
    );
    assert_eq!(code, 200);
    std::fs::write(w.join("r.tsr"), &body).unwrap();
    let t = openssl_ok(&["ts", "-reply", "-in", "r.tsr", "-text"], w);
    match expect_kind {
        Some(kind) => {
            assert_eq!(field(&t, "Status:"), Some("Rejected."), "{t}");
            assert_eq!(
                field(&t, "Failure info:"),
                Some("the TSA's time source is not available"),
                "{t}"
            );
            // The daemon logs the refusal with the reason.
            let deadline = Instant::now() + Duration::from_secs(5);
            while !d.log_text().contains(kind) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let log = d.log_text();
            assert!(
                log.contains("time-stamp request rejected") && log.contains(kind),
                "{kind} not logged:\n{log}"
            );
        }
        None => {
            // Only a kernel claiming ≤ 1 µs maximum error gets here: then the token must be granted.
            assert_eq!(field(&t, "Status:"), Some("Granted."), "{t}");
        }
    }
    d.stop();
}

/// A clock state the test switches while the service runs (the TSA's injected `ClockDiscipline`).
struct SwitchableClock(Mutex<esigd_tsa::ClockStatus>);

impl esigd_tsa::ClockState for SwitchableClock {
    fn status(&self) -> Result<esigd_tsa::ClockStatus, esigd_tsa::ClockError> {
        Ok(*self.0.lock().unwrap())
    }
}

/// Both branches of the clock gate, whatever the machine's clock: the service is built in process
/// with an injected clock state and the TSA stamps through its queue (what `POST /tsa` calls). A
/// synchronised clock within `tsa.accuracy` gets a token openssl verifies; an unsynchronised clock,
/// or one whose maximum error exceeds the accuracy, gets `rejection` / `timeNotAvailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_clock_grants_only_while_synchronized_within_the_accuracy() {
    use esigd_tsa::{ClockStatus, FixedClock};
    let dir = tempfile::tempdir().unwrap();
    let token = TestToken::create();
    let clock = Arc::new(SwitchableClock(Mutex::new(
        FixedClock::synchronized(Duration::from_millis(10)).0,
    )));
    let data = dir.path().join("data");
    let discipline: esigd_service::clock::ClockDiscipline = clock.clone();
    let svc = tokio::task::block_in_place(|| {
        let hsm = esigd_hsm::Hsm::open(token.config()).unwrap();
        let mut cfg = esigd::config::Config::dev_defaults(&data);
        cfg.tsa.allow_unsynchronized_clock = false;
        cfg.tsa.accuracy = Duration::from_secs(1);
        let tls = esigd::devsetup::ensure_dev_tls(&cfg).unwrap();
        esigd::devsetup::apply_dev_registrations(&mut cfg, &tls).unwrap();
        esigd::wiring::build_service(
            &cfg,
            hsm,
            Arc::new(esigd_service::meter::NoMeter),
            esigd_service::clock::system(),
            discipline,
        )
        .unwrap()
    });
    let w = dir.path();
    std::fs::write(w.join("doc.txt"), b"injected clock\n").unwrap();
    std::fs::copy(data.join("pki/ca.pem"), w.join("ca.pem")).unwrap();
    openssl_ok(
        &[
            "ts", "-query", "-data", "doc.txt", "-sha256", "-cert", "-out", "q.tsq",
        ],
        w,
    );
    let query = std::fs::read(w.join("q.tsq")).unwrap();

    let cases = [
        (
            "synchronized, 10 ms ≤ 1 s",
            FixedClock::synchronized(Duration::from_millis(10)).0,
            true,
        ),
        ("unsynchronized", FixedClock::unsynchronized().0, false),
        (
            "synchronized, 2 s > 1 s",
            ClockStatus {
                synchronized: true,
                max_error: Duration::from_secs(2),
            },
            false,
        ),
        (
            "synchronized again",
            FixedClock::synchronized(Duration::from_millis(999)).0,
            true,
        ),
    ];
    for (i, (case, state, granted)) in cases.into_iter().enumerate() {
        *clock.0.lock().unwrap() = state;
        let reply = svc.stamp_queue.stamp(query.clone()).await.unwrap();
        let r = format!("r{i}.tsr");
        std::fs::write(w.join(&r), &reply).unwrap();
        let t = openssl_ok(&["ts", "-reply", "-in", &r, "-text"], w);
        if granted {
            assert_eq!(field(&t, "Status:"), Some("Granted."), "{case}:\n{t}");
            let v = openssl_ok(
                &[
                    "ts",
                    "-verify",
                    "-queryfile",
                    "q.tsq",
                    "-in",
                    &r,
                    "-CAfile",
                    "ca.pem",
                ],
                w,
            );
            assert!(v.contains("Verification: OK"), "{case}:\n{v}");
        } else {
            assert_eq!(field(&t, "Status:"), Some("Rejected."), "{case}:\n{t}");
            assert_eq!(
                field(&t, "Failure info:"),
                Some("the TSA's time source is not available"),
                "{case}:\n{t}"
            );
            let resp = TimeStampResp::from_der(&reply).unwrap();
            assert!(
                resp.time_stamp_token.is_none(),
                "{case}: a rejection carries no token"
            );
        }
    }
    tokio::task::block_in_place(|| svc.stamp_queue.close());
}

/// pyHanko's own RFC 3161 client fetches a token; the token goes to a file for the validation.
const PYHANKO_FETCH: &str = r#"
import asyncio, hashlib, sys
from pyhanko.sign.timestamps import HTTPTimeStamper

async def main(url, out):
    digest = hashlib.sha256(b'esigd pyHanko HTTPTimeStamper').digest()
    token = await HTTPTimeStamper(url).async_timestamp(digest, 'sha256')
    open(out, 'wb').write(token.dump())

asyncio.run(main(sys.argv[1], sys.argv[2]))
"#;

#[test]
fn pyhanko_http_timestamper_gets_and_validates_a_token() {
    let python = esigd_testkit::venv().join("bin/python");
    let dir = tempfile::tempdir().unwrap();
    let d = dev(&dir.path().join("data"));
    let script = dir.path().join("pyhanko_tsa.py");
    std::fs::write(&script, PYHANKO_FETCH).unwrap();
    let token = dir.path().join("token.der");
    let o = Command::new(&python)
        .arg(&script)
        .arg(d.url("/tsa"))
        .arg(&token)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    assert!(
        o.status.success(),
        "pyHanko's HTTPTimeStamper (from the test venv) failed:\n{}",
        text(&o)
    );
    d.stop();

    // pyHanko's validation of the token: status fields parsed, not words in its output.
    let ca = dir.path().join("data/pki/ca.pem");
    let digest = sha2::Sha256::digest(b"esigd pyHanko HTTPTimeStamper");
    let t = pyhanko_validate_tst(&token, &digest, &ca, None);
    assert!(t.status.ok(), "pyHanko did not accept the token: {t:#?}");
    assert_eq!(t.policy, POLICY, "{t:#?}");
    assert_eq!(t.imprint_algorithm, "sha256", "{t:#?}");
    assert_eq!(t.imprint, hex::encode(digest), "{t:#?}");
    // A token over another digest is not intact for pyHanko.
    let other = sha2::Sha256::digest(b"other");
    let bad = pyhanko_validate_tst(&token, &other, &ca, None);
    assert!(
        !bad.status.intact && !bad.status.ok(),
        "pyHanko accepted the token for another digest: {bad:#?}"
    );
    assert!(
        bad.status.valid,
        "the signature itself is still valid: {bad:#?}"
    );
    // Nor trusted under another root.
    openssl_ok(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "other.key",
            "-out",
            "other.pem",
            "-subj",
            "/CN=Another CA",
            "-days",
            "2",
        ],
        dir.path(),
    );
    let untrusted = pyhanko_validate_tst(&token, &digest, &dir.path().join("other.pem"), None);
    assert!(
        untrusted.status.intact && !untrusted.status.trusted && !untrusted.status.ok(),
        "pyHanko trusted the token under another root: {untrusted:#?}"
    );
}

// ---------------------------------------------------------------------------------------------------
// Parallel load.

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    addr: String,
    r: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: &str) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn {
            addr: addr.to_string(),
            r: BufReader::new(s),
        })
    }

    /// POST /tsa; (status, body). Fails on any I/O error (no retry: a killed daemon must show).
    fn post(&mut self, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        let mut req = format!(
            "POST /tsa HTTP/1.1\r\nHost: {}\r\nContent-Type: application/timestamp-query\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        self.r.get_mut().write_all(&req)?;
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(&line))?;
        let mut len = None;
        loop {
            line.clear();
            if self.r.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse::<usize>().ok();
            }
        }
        let mut out = vec![0; len.ok_or_else(|| bad("no Content-Length"))?];
        self.r.read_exact(&mut out)?;
        Ok((status, out))
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

/// A SHA-256 TimeStampReq with certReq and a nonce made of `nonce` (8 bytes, big-endian, positive).
fn request(nonce: u64, data: &[u8]) -> (Vec<u8>, [u8; 32]) {
    let digest: [u8; 32] = sha2::Sha256::digest(data).into();
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
        nonce: Some(positive_int(nonce)),
        cert_req: true,
        extensions: None,
    };
    (req.to_der().unwrap(), digest)
}

/// A token a client received: serial, the reply DER, what was asked.
#[derive(Clone)]
struct Got {
    serial: u64,
    reply: Vec<u8>,
    digest: [u8; 32],
    nonce: u64,
}

fn be_u64(bytes: &[u8]) -> u64 {
    let b: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    assert!(b.len() <= 8, "serial longer than 64 bits");
    b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x))
}

/// Checks one reply against its request and returns the serial.
fn check_reply(reply: &[u8], digest: &[u8; 32], nonce: u64) -> u64 {
    let resp = TimeStampResp::from_der(reply).expect("TimeStampResp DER");
    assert_eq!(resp.status.status, PkiStatus::Granted);
    let token = resp.token_der().unwrap().expect("token");
    let tst = token_tst_info(&token).expect("TSTInfo");
    assert_eq!(tst.message_imprint.hashed_message.as_bytes(), digest);
    assert_eq!(
        be_u64(tst.nonce.as_ref().expect("nonce echoed").as_bytes()),
        nonce
    );
    be_u64(tst.serial_number.as_bytes())
}

/// `clients` threads, one keep-alive connection each, `per_client` requests each (or until an I/O error,
/// or until `stop`). Every complete reply is checked and collected; the count of errors is returned.
fn load(
    addr: &str,
    clients: u64,
    per_client: u64,
    run: u64,
    stop: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<Got>>>,
) -> usize {
    let hs: Vec<_> = (0..clients)
        .map(|c| {
            let (addr, stop, got) = (addr.to_string(), stop.clone(), got.clone());
            std::thread::spawn(move || -> usize {
                let Ok(mut conn) = Conn::open(&addr) else {
                    return 1;
                };
                for i in 0..per_client {
                    if stop.load(Ordering::Relaxed) {
                        return 0;
                    }
                    let nonce = (run << 48) | (c << 32) | i;
                    let (req, digest) = request(nonce, format!("doc {run}/{c}/{i}").as_bytes());
                    match conn.post(&req) {
                        Ok((200, reply)) => {
                            let serial = check_reply(&reply, &digest, nonce);
                            got.lock().unwrap().push(Got {
                                serial,
                                reply,
                                digest,
                                nonce,
                            });
                        }
                        Ok((code, body)) => {
                            panic!("HTTP {code}: {}", String::from_utf8_lossy(&body))
                        }
                        Err(_) => return 1,
                    }
                }
                0
            })
        })
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).sum()
}

fn assert_distinct(tokens: &[Got]) {
    let mut seen = HashMap::new();
    for t in tokens {
        if let Some(prev) = seen.insert(t.serial, t.nonce) {
            panic!(
                "serial {} issued twice (nonces {prev:#x} and {:#x})",
                t.serial, t.nonce
            );
        }
    }
}

/// `openssl ts -verify` on a few replies.
fn spot_check(tokens: &[Got], data: &Path, n: usize) {
    let w = tempfile::tempdir().unwrap();
    std::fs::copy(data.join("pki/ca.pem"), w.path().join("ca.pem")).unwrap();
    let step = (tokens.len() / n).max(1);
    for t in tokens.iter().step_by(step).take(n) {
        std::fs::write(w.path().join("r.tsr"), &t.reply).unwrap();
        let out = openssl_ok(
            &[
                "ts",
                "-verify",
                "-digest",
                &hex::encode(t.digest),
                "-in",
                "r.tsr",
                "-CAfile",
                "ca.pem",
            ],
            w.path(),
        );
        assert!(
            out.contains("Verification: OK"),
            "serial {}:\n{out}",
            t.serial
        );
    }
}

#[test]
fn ten_thousand_tokens_from_parallel_clients_have_distinct_serials() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = dev(&data);
    let got = Arc::new(Mutex::new(Vec::new()));
    let errors = load(
        &d.public,
        8,
        1250,
        1,
        Arc::new(AtomicBool::new(false)),
        got.clone(),
    );
    assert_eq!(errors, 0);
    let tokens = got.lock().unwrap().clone();
    assert_eq!(tokens.len(), 10_000);
    assert_distinct(&tokens);
    spot_check(&tokens, &data, 10);
    d.stop();
}

#[test]
fn kill_9_mid_run_keeps_serials_distinct_and_every_returned_token_audited() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // Run 1: 8 clients stamping; kill -9 once 3,000 tokens have arrived, requests still in flight.
    let d = dev(&data);
    let before = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let loader = {
        let (addr, stop, before) = (d.public.clone(), stop.clone(), before.clone());
        std::thread::spawn(move || load(&addr, 8, 10_000, 1, stop, before))
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while before.lock().unwrap().len() < 3000 {
        assert!(
            Instant::now() < deadline,
            "too slow: {} tokens",
            before.lock().unwrap().len()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    d.kill9();
    let errors = loader.join().unwrap();
    // The clients were cut off by the kill, not finished.
    assert!(errors > 0, "no client saw the kill");
    let before = before.lock().unwrap().clone();
    assert!(
        before.len() >= 3000 && before.len() < 80_000,
        "{}",
        before.len()
    );

    // Run 2 on the same data directory.
    let d = dev(&data);
    let after = Arc::new(Mutex::new(Vec::new()));
    assert_eq!(
        load(
            &d.public,
            8,
            250,
            2,
            Arc::new(AtomicBool::new(false)),
            after.clone()
        ),
        0
    );
    let after = after.lock().unwrap().clone();
    assert_eq!(after.len(), 2000);
    d.stop();

    let all: Vec<Got> = before.iter().chain(after.iter()).cloned().collect();
    assert_distinct(&all);
    // Serials continue above every serial of run 1 (a fresh block after the crash).
    let max_before = before.iter().map(|t| t.serial).max().unwrap();
    assert!(
        after.iter().all(|t| t.serial > max_before),
        "run 2 reused a serial range of run 1"
    );

    // Every token a client received has its durable audit record (read with the daemon stopped).
    let store =
        esigd_store::Store::open(data.join("db"), esigd_store::StoreOptions::default()).unwrap();
    let log = esigd_store::persist::RocksImprintLog::new(store);
    let mut missing = Vec::new();
    for t in &all {
        match log.get(t.serial).unwrap() {
            Some(r) => {
                assert_eq!(r.imprint, t.digest, "serial {}", t.serial);
                assert_eq!(
                    r.nonce.as_deref().map(be_u64),
                    Some(t.nonce),
                    "serial {}",
                    t.serial
                );
            }
            None => missing.push(t.serial),
        }
    }
    assert!(
        missing.is_empty(),
        "{} tokens returned without audit record, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // No record claims a serial that no client holds other than those in flight at the kill (≤ 8 + queue).
    let holders: HashSet<u64> = all.iter().map(|t| t.serial).collect();
    let mut extra = 0;
    let mut after_serial = None;
    loop {
        let page = log.list_by_serial(after_serial, 1000).unwrap();
        let Some(last) = page.last() else { break };
        after_serial = Some(last.serial);
        extra += page.iter().filter(|r| !holders.contains(&r.serial)).count();
    }
    // Each of the 8 clients had at most one request in flight at the kill.
    assert!(
        extra <= 8,
        "{extra} audit records for tokens no client received"
    );
    eprintln!(
        "kill -9 after {} tokens ({errors} clients cut off), {} after restart, {extra} records of in-flight requests",
        before.len(),
        after.len()
    );
    drop(log);

    spot_check(&before, &data, 5);
    spot_check(&after, &data, 5);
}
