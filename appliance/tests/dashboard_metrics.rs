//! The monitoring files in `contrib/` against real daemons: every `esigd_*` name used in a query of
//! the Grafana dashboard (`contrib/grafana/esigd.json`) or in the Prometheus rules
//! (`contrib/prometheus/esigd-rules.yml`) must be exported on `/metrics` of a running esigd
//! (a histogram's `_bucket`/`_sum`/`_count` samples count as its own).
//!
//! Many families only have samples once something happened, so the test makes it happen on two
//! daemons. One has the one-time workflow and a CRL for the e-Service client CA: a signature
//! over the API, a time-stamp, a browser login refused for its level of assurance
//! (`esigd_errors_total{kind="login_failed"}`), then the TSA key deleted from the token under the
//! running daemon and concurrent time-stamp requests, so that PKCS#11 calls fail for real
//! (`CKR_OBJECT_HANDLE_INVALID` in `esigd_hsm_operation_errors_total`). The other is the Remote
//! SCD world with a device onboarded (`esigd_scd_*`). The union of their expositions is what the
//! files may use. The expiry and store gauges are also checked against openssl's reading of the
//! same files.
//!
//! Needs `esigd` built (`cargo build --workspace --bins`), node (the Identity BB), openssl, curl
//! and `pkcs11-tool` (Debian package `opensc`); a missing tool fails the test.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use esigd_hsm::testing::{TestToken, softhsm_module};
use esigd_testkit::api::{mtls, sha256_of_cert};
use esigd_testkit::idp::{Idp, e2e_dir};
use esigd_testkit::pki::{CA_CNF, Ca, openssl};
use esigd_testkit::{Daemon, config, curl, esigd, free_port, init};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/grafana/esigd.json");
const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../contrib/prometheus/esigd-rules.yml"
);

const AUD: &str = "service-a";
const SECRET: &str = "service-a-secret";
const REDIRECT: &str = "http://127.0.0.1:9/cb";
const CALLBACK: &str = "https://land.example.test/cb/";
const IDP_SECRET: &str = "esigd-test-secret";

/// Every `esigd_*` metric name in `text` (a name ends with a letter or digit).
fn names_in(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while let Some(off) = text[i..].find("esigd_") {
        let start = i + off;
        let boundary = start == 0
            || !matches!(bytes[start - 1], b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b':');
        let mut end = start + "esigd_".len();
        while end < bytes.len() && matches!(bytes[end], b'a'..=b'z' | b'0'..=b'9' | b'_') {
            end += 1;
        }
        let name = text[start..end].trim_end_matches('_');
        if boundary && name.len() > "esigd_".len() {
            out.insert(name.to_string());
        }
        i = end;
    }
    out
}

/// The query strings of the dashboard: panel `expr`s and the template variables' queries.
fn dashboard_queries(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "definition" | "query", Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_queries(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

/// The names used by the dashboard and the rules, each with the file(s) using it.
fn used_names() -> BTreeMap<String, Vec<&'static str>> {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    assert!(
        queries.len() >= 30,
        "only {} queries found in {DASHBOARD}",
        queries.len()
    );
    let in_dashboard: BTreeSet<String> = queries.iter().flat_map(|q| names_in(q)).collect();
    let in_rules = names_in(&std::fs::read_to_string(RULES).unwrap());
    // The extraction must find what the files are about, or the check below proves nothing.
    for (file, names, expected) in [
        (
            "dashboard",
            &in_dashboard,
            &[
                "esigd_signatures_created_total",
                "esigd_tsa_tokens_total",
                "esigd_http_request_duration_seconds_bucket",
                "esigd_hsm_sessions",
                "esigd_clock_synchronized",
                "esigd_errors_total",
                "esigd_scd_sessions",
            ][..],
        ),
        (
            "rules",
            &in_rules,
            &[
                "esigd_clock_synchronized",
                "esigd_hsm_operation_errors_total",
                "esigd_http_requests_total",
                "esigd_certificate_not_after_timestamp_seconds",
                "esigd_crl_next_update_timestamp_seconds",
                "esigd_store_filesystem_available_bytes",
            ][..],
        ),
    ] {
        for e in expected {
            assert!(names.contains(*e), "{e} not found in the {file}: {names:?}");
        }
    }
    let mut used: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    for n in in_dashboard {
        used.entry(n).or_default().push(DASHBOARD);
    }
    for n in in_rules {
        used.entry(n).or_default().push(RULES);
    }
    used
}

/// The metric names of an exposition: families (`# TYPE`) and sample names (with a histogram's
/// `_bucket`, `_sum` and `_count`).
#[derive(Default)]
struct Exported(BTreeSet<String>);

impl Exported {
    fn add(&mut self, text: &str) {
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                self.0
                    .insert(rest.split_whitespace().next().unwrap().to_string());
            } else if !line.starts_with('#') && !line.is_empty() {
                let name = line.split(['{', ' ']).next().unwrap();
                self.0.insert(name.to_string());
            }
        }
    }

    fn has(&self, name: &str) -> bool {
        self.0.contains(name)
    }
}

/// The value of the sample `series` (name with labels, exactly as exported) in `text`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `notAfter` of a PEM certificate as openssl reads it, in Unix seconds.
fn openssl_not_after(cert: &Path) -> f64 {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-enddate", "-dateopt", "iso_8601", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // notAfter=2028-12-06 11:52:47Z
    let text = String::from_utf8(out.stdout).unwrap();
    let date = text
        .trim()
        .trim_start_matches("notAfter=")
        .replace(' ', "T");
    humantime::parse_rfc3339(&date)
        .unwrap()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `promtool check metrics` on a live exposition (the new gauges included): no finding.
fn promtool_lint(text: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool: {e}: apt-get install prometheus (scripts/install-deps.sh)")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {out:?}"
    );
}

/// The one-time workflow: exposition after a signature, a time-stamp and HSM failures.
fn one_time_daemon() -> String {
    let dir = tempfile::tempdir().unwrap();
    let token = TestToken::create();
    let public = format!("127.0.0.1:{}", free_port());
    let idp = Idp::start_with(&json!({
        "clients": [
            {"client_id": AUD, "client_secret": SECRET, "redirect_uris": [REDIRECT],
             "token_endpoint_auth_method": "client_secret_basic"},
            {"client_id": "esigd", "client_secret": IDP_SECRET,
             "token_endpoint_auth_method": "client_secret_basic",
             "redirect_uris": [format!("http://{public}/v1/oidc/callback")]}
        ]
    }));
    let pki = Ca::new(dir.path(), "eservice-ca");
    let server = pki.issue("server", "/CN=esigd.test", "server_ext", None);
    let client = pki.issue("a", "/CN=service-a", "client_ext", None);
    // The client CA's CRL (v2, a CRL number), valid 7 days.
    let cnf = CA_CNF.replace("[d]\n", "[d]\ncrlnumber = crlnumber\n");
    std::fs::write(pki.dir.join("crl.cnf"), cnf).unwrap();
    std::fs::write(pki.dir.join("crlnumber"), "01\n").unwrap();
    openssl(
        &pki.dir,
        &[
            "ca", "-config", "crl.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-gencrl",
            "-crldays", "7", "-out", "crl.pem",
        ],
    );
    let crl_made = unix_now();
    let toml = format!(
        r#"
[tls]
cert = {server:?}
key = {server_key:?}
client_ca = {ca:?}
client_crl = {crl:?}

[ca]
base_url = "http://{public}"

[tsa]
allow_unsynchronized_clock = true

[identity]
issuer = {issuer:?}
client_id = "esigd"
client_secret = {{ env = "ESIGD_TEST_IDP_SECRET" }}
# mari logs in at this level, juri below it.
acr_values = ["http://eidas.europa.eu/LoA/high"]
[identity.claims]
default_country = "EE"

[[eservice]]
id = "svc-a"
name = "Land Registry"
client_cert_sha256 = {a_fp:?}
allowed_ips = ["127.0.0.1/32"]
id_token_audiences = ["{AUD}"]
callback_prefixes = [{CALLBACK:?}]
"#,
        server = server.0,
        server_key = server.1,
        ca = pki.pem(),
        crl = pki.dir.join("crl.pem"),
        issuer = idp.issuer,
        a_fp = sha256_of_cert(&client.0),
    );
    let cfg = config(dir.path(), &token, &toml);
    init(&cfg);
    let mut cmd = esigd();
    cmd.arg("--config")
        .arg(&cfg)
        .args(["serve", "--public", &public, "--eservice", "127.0.0.1:0"])
        .env("ESIGD_TEST_IDP_SECRET", IDP_SECRET);
    let d = Daemon::start_logged(cmd, dir.path().join("esigd.log"));

    let sign = |id_token: &str| {
        let body = json!({
            "format": "CAdES",
            "hash": B64.encode(Sha256::digest(b"dashboard metrics")),
            "hashType": "SHA2-256",
            "dataToBeDisplayed": "Consent form 1234",
            "requestTimestamp": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        });
        mtls(
            &d.eservice,
            &pki.pem(),
            Some(&client),
            "POST",
            "/v1/sign/onetime",
            &[
                "-H",
                &format!("X-GovStack-AuthenticationToken: {id_token}"),
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body.to_string(),
            ],
        )
    };
    let r = sign(&idp.id_token(AUD, SECRET, REDIRECT, "mari"));
    assert_eq!(r.status, 200, "{}", r.message());

    let w = dir.path();
    std::fs::write(w.join("doc.txt"), b"dashboard metrics\n").unwrap();
    openssl(
        w,
        &[
            "ts", "-query", "-data", "doc.txt", "-sha256", "-cert", "-out", "q.tsq",
        ],
    );
    let tsq = format!("@{}", w.join("q.tsq").display());
    let tsa = d.url("/tsa");
    let stamp = || {
        curl(&[
            "-H",
            "Content-Type: application/timestamp-query",
            "--data-binary",
            &tsq,
            &tsa,
        ])
    };
    assert_eq!(stamp().0, 200);

    // A browser login below identity.acr_values: esigd refuses it (login_failed).
    let mut start = url::Url::parse(&format!("http://{public}/v1/sign/interactive")).unwrap();
    start
        .query_pairs_mut()
        .append_pair("serviceId", "svc-a")
        .append_pair("hash", &B64.encode(Sha256::digest(b"assurance")))
        .append_pair("hashType", "SHA2-256")
        .append_pair("format", "CAdES")
        .append_pair("dataToBeDisplayed", &URL_SAFE_NO_PAD.encode("Order 42"))
        .append_pair("callbackUrl", &format!("{CALLBACK}done"))
        .append_pair("state", "st-1")
        .append_pair("nonce", "no-1");
    let flow = Command::new("node")
        .arg(e2e_dir().join("http-flow.mjs"))
        .args(["--start", start.as_str(), "--callback-prefix", CALLBACK])
        .args(["--action", "login", "--user", "juri"])
        .output()
        .unwrap();
    assert!(flow.status.success(), "http-flow.mjs: {flow:?}");
    let ended: Value = serde_json::from_slice(&flow.stdout).unwrap();
    assert_eq!(ended["params"]["error"], "login_failed", "{ended}");

    // The TSA key disappears from the token under the running daemon. Pooled sessions that
    // look it up again make SoftHSM drop the object, and signing with the handle other sessions
    // cached fails (CKR_OBJECT_HANDLE_INVALID); concurrent requests spread over the sessions.
    let deleted = Command::new("pkcs11-tool")
        .arg("--module")
        .arg(softhsm_module())
        .args([
            "--token-label",
            &token.label,
            "--login",
            "--pin",
            &token.pin,
        ])
        .args(["--delete-object", "--type", "privkey", "--label", "tsa-key"])
        .output()
        .unwrap_or_else(|e| {
            panic!("pkcs11-tool: {e}: apt-get install opensc (scripts/install-deps.sh)")
        });
    assert!(deleted.status.success(), "pkcs11-tool: {deleted:?}");
    for _ in 0..3 {
        std::thread::scope(|s| {
            for _ in 0..12 {
                s.spawn(stamp);
            }
        });
    }

    let (code, body) = d.get("/metrics", &[]);
    assert_eq!(code, 200);
    let text = String::from_utf8(body).unwrap();

    // The expiry gauges read the same dates as openssl; the store gauges are plausible.
    assert_eq!(
        sample(
            &text,
            "esigd_certificate_not_after_timestamp_seconds{certificate=\"tls_server\"}"
        ),
        openssl_not_after(&server.0)
    );
    let data = w.join("data/pki");
    for (name, file) in [("ca", "ca.pem"), ("tsa", "tsa.pem")] {
        assert_eq!(
            sample(
                &text,
                &format!("esigd_certificate_not_after_timestamp_seconds{{certificate=\"{name}\"}}")
            ),
            openssl_not_after(&data.join(file)),
            "{name}"
        );
    }
    let next_update = sample(
        &text,
        "esigd_crl_next_update_timestamp_seconds{crl=\"tls_client\"}",
    );
    let week = Duration::from_secs(7 * 86_400).as_secs_f64();
    assert!(
        (next_update - (crl_made + week)).abs() < 600.0,
        "nextUpdate {next_update}, CRL made at {crl_made} for 7 days"
    );
    promtool_lint(&text);
    // The HSM failures are the deleted key's: signing with a stale handle.
    assert!(
        text.lines().any(
            |l| l.starts_with("esigd_hsm_operation_errors_total{") && l.contains("op=\"sign\"")
        ),
        "no failed C_Sign counted:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("esigd_errors_total{kind=\"login_failed\"} ")),
        "{text}"
    );
    let used = sample(&text, "esigd_store_disk_bytes");
    let available = sample(&text, "esigd_store_filesystem_available_bytes");
    let size = sample(&text, "esigd_store_filesystem_size_bytes");
    assert!(used > 0.0 && available > 0.0 && size >= available, "{text}");
    d.stop();
    text
}

/// The Remote SCD world: exposition after a device was onboarded.
fn scd_daemon() -> String {
    let mut w = esigd_testkit::scd_world::world();
    let mari = w.idp.tokens(
        esigd_testkit::scd_world::AUD,
        esigd_testkit::scd_world::SECRET,
        esigd_testkit::scd_world::REDIRECT,
        "mari",
    );
    w.onboard(&mari.access_token, 0);
    let (code, body) = w.esigd.get("/metrics", &[]);
    assert_eq!(code, 200);
    String::from_utf8(body).unwrap()
}

#[test]
fn every_metric_of_the_dashboard_and_the_alerts_is_exported() {
    let used = used_names();
    let mut exported = Exported::default();
    exported.add(&one_time_daemon());
    exported.add(&scd_daemon());
    // The check can fail: a name nobody exports is not found.
    assert!(!exported.has("esigd_no_such_metric_total"));
    let missing: Vec<String> = used
        .iter()
        .filter(|(name, _)| !exported.has(name))
        .map(|(name, files)| format!("{name} (in {})", files.join(", ")))
        .collect();
    assert!(
        missing.is_empty(),
        "used but not exported by a running esigd:\n  {}\nexported: {:?}",
        missing.join("\n  "),
        exported.0
    );
}
