//! Contract test of the e-Service API against its own OpenAPI document: schemathesis (PyPI, in the
//! test venv) reads `/v1/openapi.yaml` as the running daemon serves it and sends generated
//! requests, valid and invalid, to every e-Service API operation over mutual TLS, as a registered
//! e-Service and as a registered auditor. The real `esigd` binary runs with a SoftHSM token, the
//! development Identity BB and one real signature made beforehand (so `/v1/audit/log` answers
//! with real events). Every answer must be no server error, have a documented status code and
//! content type, and match the documented schema; invalid requests must be refused.
//!
//! Bounded: at most `MAX_EXAMPLES` generated cases per operation and phase, and the whole run
//! is killed after `RUN_LIMIT`. Without schemathesis in the venv the test fails with the fix.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use esigd_hsm::testing::TestToken;
use esigd_testkit::api::{mtls, sha256_of_cert};
use esigd_testkit::idp::Idp;
use esigd_testkit::pki::{Ca, openssl_out};
use esigd_testkit::{Daemon, config, esigd, venv};
use sha2::{Digest, Sha256};

/// Generated cases per operation (per phase).
const MAX_EXAMPLES: &str = "50";
/// The whole schemathesis run (all operations, both clients) must end within this.
const RUN_LIMIT: Duration = Duration::from_secs(240);
/// The checks every answer must pass (`st run --checks`). Left out: `positive_data_acceptance`
/// (a schema-valid body still needs a real single-use ID token, so it gets 401), and the checks
/// that need OpenAPI links or security schemes (`use_after_free`, `ensure_resource_availability`,
/// `ignored_auth`, `object_level_authorization`): the document defines none.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
response_headers_conformance,response_schema_conformance,negative_data_rejection,\
missing_required_header,unsupported_method";

/// The `st` command of the venv; panics with the fix when schemathesis is not installed.
fn schemathesis() -> PathBuf {
    let st = venv().join("bin/st");
    assert!(
        st.is_file(),
        "{} missing: schemathesis is not installed in the test venv; run `scripts/install-deps.sh --with-test-tools` (tests/requirements.txt)",
        st.display()
    );
    st
}

/// The certificate's subject or issuer as `openssl x509 -nameopt RFC2253` prints it.
fn dn(pem: &Path, which: &str) -> String {
    openssl_out(
        pem.parent().unwrap(),
        &format!(
            "openssl x509 -in {} -noout -{which} -nameopt RFC2253",
            pem.display()
        ),
    )
    .trim()
    .trim_start_matches(&format!("{which}="))
    .to_string()
}

/// Runs `st run` against the e-Service API with `cert`, limited to the paths matching
/// `path_regex`; returns (success, output).
fn run_st(
    st: &Path,
    d: &Daemon,
    mtls: Option<(&Path, &(PathBuf, PathBuf))>,
    path_regex: &str,
    work: &Path,
    deadline: Instant,
) -> (bool, String) {
    let schema = d.url("/v1/openapi.yaml");
    let mut cmd = Command::new(st);
    cmd.args(["--no-color", "run"])
        .arg(&schema)
        .args(["--include-path-regex", path_regex])
        // Binary bodies (DER) schemathesis cannot generate; fuzz/ covers these parsers.
        .args(["--exclude-path-regex", "^/(ocsp|tsa)$"])
        .args(["--checks", CHECKS])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--workers", "1", "--seed", "11", "--request-timeout", "30"])
        .args([
            "--suppress-health-check",
            "all",
            "--generation-database",
            "none",
        ]);
    match mtls {
        Some((ca, cert)) => {
            cmd.args(["--url", &format!("https://{}", d.eservice)])
                .arg("--tls-verify")
                .arg(ca)
                .arg("--request-cert")
                .arg(&cert.0)
                .arg("--request-cert-key")
                .arg(&cert.1);
        }
        None => {
            cmd.args(["--url", &format!("http://{}", d.public)]);
        }
    }
    let mut child = cmd
        .current_dir(work)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "schemathesis did not finish within {RUN_LIMIT:?}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The number of generated cases schemathesis reports for the run (its line `N generated, …`).
fn generated(output: &str) -> usize {
    output
        .lines()
        .filter_map(|l| {
            let (n, rest) = l.trim().split_once(' ')?;
            rest.starts_with("generated")
                .then(|| n.parse::<usize>().ok())?
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn the_e_service_api_conforms_to_its_openapi_document() {
    let st = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    let token = TestToken::create();
    let idp = Idp::start();
    let pki = Ca::new(dir.path(), "eservice-ca");
    let server = pki.issue("server", "/CN=esigd.test", "server_ext", None);
    let client = pki.issue("svc", "/CN=service-a/O=Land Registry", "client_ext", None);
    let auditor = pki.issue("auditor", "/CN=auditor/O=Audit Office", "client_ext", None);
    let toml = format!(
        r#"
[tls]
cert = {server_cert:?}
key = {server_key:?}
client_ca = {ca:?}

[tsa]
allow_unsynchronized_clock = true

[identity]
issuer = {issuer:?}
client_id = "esigd"
client_secret = {{ env = "ESIGD_TEST_UNUSED_SECRET" }}
[identity.claims]
default_country = "EE"

[[eservice]]
id = "svc-a"
name = "Land Registry"
client_cert_sha256 = {fp:?}
allowed_ips = ["127.0.0.1/32"]
callback_prefixes = ["https://land.example.test/cb/"]

[[auditor]]
name = "Audit Office"
client_subject = {aud_subject:?}
client_issuer = {aud_issuer:?}
allowed_ips = ["127.0.0.1/32"]
"#,
        server_cert = server.0,
        server_key = server.1,
        ca = pki.pem(),
        issuer = idp.issuer,
        fp = sha256_of_cert(&client.0),
        aud_subject = dn(&auditor.0, "subject"),
        aud_issuer = dn(&auditor.0, "issuer"),
    );
    let cfg = config(dir.path(), &token, &toml);
    esigd_testkit::init(&cfg);
    let mut cmd = esigd();
    cmd.arg("--config")
        .arg(&cfg)
        .args(esigd_testkit::SERVE)
        .env("ESIGD_TEST_UNUSED_SECRET", "x");
    let d = Daemon::start_logged(cmd, dir.path().join("esigd.log"));

    // One real signature, so that the audit log and the stored signatures are not empty.
    let id_token = idp.id_token(
        "esigd",
        "esigd-dev-secret",
        "http://127.0.0.1:8080/v1/oidc/callback",
        "mari",
    );
    let body = serde_json::json!({
        "format": "CAdES",
        "hash": B64.encode(Sha256::digest(b"contract")),
        "hashType": "SHA2-256",
        "dataToBeDisplayed": "Contract 77",
        "requestTimestamp": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    })
    .to_string();
    let auth = format!("X-GovStack-AuthenticationToken: {id_token}");
    let r = mtls(
        &d.eservice,
        &pki.pem(),
        Some(&client),
        "POST",
        "/v1/sign/onetime",
        &[
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
        ],
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    let work = dir.path().join("st");
    std::fs::create_dir_all(&work).unwrap();
    let deadline = Instant::now() + RUN_LIMIT;
    let mut failures = Vec::new();
    let mut total = 0;
    let ca = pki.pem();
    for (who, mtls, paths) in [
        (
            "e-Service",
            Some((ca.as_path(), &client)),
            "^/v1/sign/(onetime|response/)",
        ),
        (
            "auditor",
            Some((ca.as_path(), &auditor)),
            "^/v1/audit/(log|sth|sth/consistency|proof/|entries|key)",
        ),
        // The public listener's operations (plain HTTP, no client certificate).
        (
            "public client",
            None,
            "^/(v1/sign/interactive|v1/oidc|v1/client|v1/openapi|healthz|readyz|metrics|pki|ocsp|tsa)",
        ),
    ] {
        let (ok, out) = run_st(&st, &d, mtls, paths, &work, deadline);
        let n = generated(&out);
        total += n;
        // The summary of the run (the last lines), for the test log.
        let tail: Vec<&str> = out.lines().rev().take(25).collect();
        eprintln!(
            "schemathesis as the {who}:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
        if !ok || n == 0 {
            failures.push(format!(
                "--- schemathesis as the {who} ({n} cases) ---\n{out}"
            ));
        }
    }
    let problems: Vec<String> = d
        .log_text()
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .map(str::to_owned)
        .collect();
    assert!(
        failures.is_empty(),
        "{}\n--- esigd warnings and errors ---\n{}",
        failures.join("\n"),
        problems.join("\n")
    );
    assert!(total > 0, "schemathesis generated no test case");
    d.stop();
}
