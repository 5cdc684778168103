//! `POST /v1/sign/onetime`, `GET /v1/sign/response/{id}` and `GET /v1/audit/log` end to end: the
//! real `esigd` binary with a SoftHSM token, a real OpenID provider (`tests/e2e/idp.mjs`,
//! npm `oidc-provider`) issuing the ID tokens, curl as the mTLS client, and validators we did not
//! write: `openssl cms -verify`, `openssl ts -verify`, pyHanko.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use esigd_hsm::testing::TestToken;
use esigd_testkit::api::{
    Reply, check_one_time_certificate, mtls, sha256_of_cert, verify_with_openssl,
};
use esigd_testkit::idp::Idp;
use esigd_testkit::pki::{Ca, openssl_out};
use esigd_testkit::validators::pyhanko_validate_cms;
use esigd_testkit::{Daemon, config, esigd};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// Client certificates and the server certificate of the e-Service listener.
struct Clients {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    a: (PathBuf, PathBuf),
    b: (PathBuf, PathBuf),
    auditor: (PathBuf, PathBuf),
    unregistered: (PathBuf, PathBuf),
    expired: (PathBuf, PathBuf),
    foreign: (PathBuf, PathBuf),
}

/// SHA-256 of the certificate's SubjectPublicKeyInfo (the `client_spki_sha256` form).
fn sha256_of_spki(pem: &Path) -> String {
    let out = openssl_out(
        pem.parent().unwrap(),
        &format!(
            "openssl x509 -in {} -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r",
            pem.display()
        ),
    );
    out.split_whitespace().next().unwrap().to_string()
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

fn clients(root: &Path) -> Clients {
    let ca = Ca::new(root, "eservice-ca");
    let other = Ca::new(root, "other-ca");
    Clients {
        server: ca.issue("server", "/CN=esigd.test", "server_ext", None),
        a: ca.issue("a", "/CN=service-a/O=Land Registry", "client_ext", None),
        b: ca.issue("b", "/CN=service-b/O=Tax Board", "client_ext", None),
        // Registered by subject + issuer (client_subject): a CN with a comma, escaped in the
        // RFC 4514 form the configuration gets from openssl.
        auditor: ca.issue(
            "auditor",
            "/CN=Auditor, National/O=Audit Office",
            "client_ext",
            None,
        ),
        unregistered: ca.issue("unreg", "/CN=nobody", "client_ext", None),
        expired: ca.issue(
            "expired",
            "/CN=service-a/O=Land Registry",
            "client_ext",
            Some(("20200101000000Z", "20200102000000Z")),
        ),
        foreign: other.issue(
            "foreign",
            "/CN=service-a/O=Land Registry",
            "client_ext",
            None,
        ),
        ca: ca.pem(),
    }
}

/// Everything a test needs: IdP, token, client PKI, a configured and initialised data dir.
struct Env {
    dir: tempfile::TempDir,
    _token: TestToken,
    idp: Idp,
    pki: Clients,
    cfg: PathBuf,
}

const A_AUD: &str = "service-a";
const A_SECRET: &str = "service-a-secret";
const A_REDIRECT: &str = "http://127.0.0.1:9/cb";

fn idp_config() -> serde_json::Value {
    serde_json::json!({
        "clients": [
            {"client_id": A_AUD, "client_secret": A_SECRET, "redirect_uris": [A_REDIRECT],
             "token_endpoint_auth_method": "client_secret_basic"},
            {"client_id": "short-lived", "client_secret": "s", "redirect_uris": [A_REDIRECT],
             "token_endpoint_auth_method": "client_secret_basic", "id_token_ttl": 1},
            {"client_id": "stranger", "client_secret": "s", "redirect_uris": [A_REDIRECT],
             "token_endpoint_auth_method": "client_secret_basic"}
        ]
    })
}

fn env_with(extra: impl FnOnce(&Clients) -> String) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let token = TestToken::create();
    let idp = Idp::start_with(&idp_config());
    let pki = clients(dir.path());
    let extra = extra(&pki);
    let toml = format!(
        r#"
[tls]
cert = {server:?}
key = {server_key:?}
client_ca = {ca:?}

[tsa]
allow_unsynchronized_clock = true

[identity]
issuer = {issuer:?}
client_id = "esigd"
client_secret = {{ env = "ESIGD_TEST_UNUSED_SECRET" }}
clock_skew = "1s"
[identity.claims]
default_country = "EE"

[[eservice]]
id = "svc-a"
name = "Land Registry"
client_cert_sha256 = {a_fp:?}
allowed_ips = ["127.0.0.1/32"]
callback_prefixes = ["https://land.example.test/cb/"]
id_token_audiences = ["{A_AUD}", "short-lived"]

[[eservice]]
id = "svc-b"
name = "Tax Board"
client_spki_sha256 = {b_spki:?}
allowed_ips = ["127.0.0.1/32", "127.0.0.2/32"]
id_token_audiences = ["{A_AUD}"]

[[auditor]]
name = "Audit Office"
client_subject = {aud_subject:?}
client_issuer = {aud_issuer:?}
allowed_ips = ["127.0.0.1/32"]
{extra}
"#,
        server = pki.server.0,
        server_key = pki.server.1,
        ca = pki.ca,
        issuer = idp.issuer,
        a_fp = sha256_of_cert(&pki.a.0),
        b_spki = sha256_of_spki(&pki.b.0),
        aud_subject = dn(&pki.auditor.0, "subject"),
        aud_issuer = dn(&pki.auditor.0, "issuer"),
    );
    let cfg = config(dir.path(), &token, &toml);
    esigd_testkit::init(&cfg);
    Env {
        dir,
        _token: token,
        idp,
        pki,
        cfg,
    }
}

impl Env {
    fn start(&self) -> Daemon {
        let mut cmd = esigd();
        cmd.arg("--config")
            .arg(&self.cfg)
            .args(esigd_testkit::SERVE);
        cmd.env("ESIGD_TEST_UNUSED_SECRET", "x");
        Daemon::start_logged(cmd, self.dir.path().join("esigd.log"))
    }

    fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("data/pki/ca.pem")
    }

    fn token_for_a(&self, user: &str) -> String {
        self.idp.id_token(A_AUD, A_SECRET, A_REDIRECT, user)
    }
}

fn api(
    d: &Daemon,
    env: &Env,
    cert: Option<&(PathBuf, PathBuf)>,
    method: &str,
    path: &str,
    extra: &[&str],
) -> Reply {
    mtls(&d.eservice, &env.pki.ca, cert, method, path, extra)
}

fn sign_body(hash_type: &str, digest: &[u8]) -> String {
    serde_json::json!({
        "format": "CAdES",
        "hash": B64.encode(digest),
        "hashType": hash_type,
        "dataToBeDisplayed": "Consent form 1234",
        "requestTimestamp": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    })
    .to_string()
}

fn sign(d: &Daemon, env: &Env, cert: &(PathBuf, PathBuf), token: &str, body: &str) -> Reply {
    let auth = format!("X-GovStack-AuthenticationToken: {token}");
    api(
        d,
        env,
        Some(cert),
        "POST",
        "/v1/sign/onetime",
        &[
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ],
    )
}

/// Verifies a returned signature with openssl (CMS against the document; time-stamp against the
/// signature value), pyHanko, and checks the certificate; returns the CMS DER.
fn check_signature(env: &Env, resp: &serde_json::Value, doc: &Path, work: &Path) -> Vec<u8> {
    assert_eq!(resp["status"]["code"], "OK", "{resp}");
    let p7s = B64.decode(resp["signature"].as_str().unwrap()).unwrap();
    let ca = env.ca_pem();
    let verified = verify_with_openssl(
        &ca,
        &env.dir.path().join("data/pki/tsa.pem"),
        &p7s,
        doc,
        work,
        None,
    );
    // The signature-time-stamp token is the same as signatureTimestamp.
    let token = B64
        .decode(resp["signatureTimestamp"].as_str().unwrap())
        .unwrap();
    assert_eq!(verified.timestamp_tokens, vec![token]);

    // pyHanko validates the detached CAdES signature with its time-stamp: pyHanko's status fields,
    // parsed (testkit::validators), not words in its output.
    let report = pyhanko_validate_cms(&work.join("sig.p7s"), doc, &ca, None);
    assert!(
        report.signature.ok() && report.bottom_line,
        "pyHanko refused the signature: {report:#?}"
    );
    assert!(
        report.timestamp_valid(),
        "pyHanko did not validate the signature time-stamp: {report:#?}"
    );
    let ts = report.timestamp.as_ref().unwrap();
    assert_eq!(
        ts.imprint,
        hex::encode(Sha256::digest(&verified.signature)),
        "the time-stamp is not over the signature value: {report:#?}"
    );

    // The certificate: the test user's identity, valid for 60 s.
    check_one_time_certificate(resp["certificate"].as_str().unwrap(), work);
    p7s
}

#[test]
fn one_time_signatures_verify_with_openssl_and_pyhanko_and_can_be_fetched_once_stored() {
    let env = env_with(|_| String::new());
    let d = env.start();
    // ID tokens are single-use: one login per signature.
    let mut tokens = Vec::new();
    let work = env.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let doc = work.join("contract.txt");
    std::fs::write(&doc, b"Land sale contract no. 77\nSeller: ...\n").unwrap();
    let data = std::fs::read(&doc).unwrap();

    let mut signature_values = Vec::new();
    let mut ids = Vec::new();
    for (hash_type, digest) in [
        ("SHA2-256", Sha256::digest(&data).to_vec()),
        ("SHA2-384", Sha384::digest(&data).to_vec()),
        ("SHA2-512", Sha512::digest(&data).to_vec()),
    ] {
        let token = env.token_for_a("mari");
        let r = sign(&d, &env, &env.pki.a, &token, &sign_body(hash_type, &digest));
        tokens.push(token);
        assert_eq!(
            r.status,
            200,
            "{hash_type}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            r.headers.to_ascii_lowercase().contains("x-request-id"),
            "{}",
            r.headers
        );
        let resp = r.json();
        let id = resp["signatureId"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 64);
        let p7s = check_signature(&env, &resp, &doc, &work);
        signature_values.push(resp["signature"].as_str().unwrap().to_string());
        signature_values.push(resp["signatureTimestamp"].as_str().unwrap().to_string());
        assert!(!p7s.is_empty());
        // The owner fetches it over mTLS: the same signature.
        let f = api(
            &d,
            &env,
            Some(&env.pki.a),
            "GET",
            &format!("/v1/sign/response/{id}"),
            &[],
        );
        assert_eq!(f.status, 200, "{}", String::from_utf8_lossy(&f.body));
        assert_eq!(f.json()["signature"], resp["signature"]);
        ids.push(id);
    }

    // The caller's correlation ID is honoured: echoed, in the log lines and in the audit event.
    let token = env.token_for_a("mari");
    let r = api(
        &d,
        &env,
        Some(&env.pki.a),
        "POST",
        "/v1/sign/onetime",
        &[
            "-H",
            &format!("X-GovStack-AuthenticationToken: {token}"),
            "-H",
            "X-Request-ID: corr-4711.test",
            "--data-binary",
            &sign_body("SHA2-256", &Sha256::digest(&data)),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.message());
    assert!(
        r.headers
            .to_ascii_lowercase()
            .contains("x-request-id: corr-4711.test"),
        "{}",
        r.headers
    );
    signature_values.push(r.json()["signature"].as_str().unwrap().to_string());

    // /metrics (public listener) passes promtool and counts what happened.
    let (status, body) = d.get("/metrics", &[]);
    assert_eq!(status, 200);
    let metrics = String::from_utf8(body).unwrap();
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/install-deps.sh)");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "esigd_signatures_created_total{format=\"cades\"} 4",
        "esigd_ca_certificates_issued_total{profile=\"one-time\"} 4",
        "esigd_operation_duration_seconds_count{op=\"hsm_keygen\"}",
        "esigd_operation_duration_seconds_count{op=\"ca_issue\"} 4",
        "esigd_http_requests_total{listener=\"eservice\",route=\"/v1/sign/onetime\",status=\"200\"} 4",
        "esigd_onetime_keys_ready",
        "esigd_hsm_sessions",
    ] {
        assert!(
            metrics.contains(needle),
            "{needle} missing from /metrics:\n{metrics}"
        );
    }

    // Another e-Service asking for A's signature gets exactly what an unknown ID gets.
    let theirs = api(
        &d,
        &env,
        Some(&env.pki.b),
        "GET",
        &format!("/v1/sign/response/{}", ids[0]),
        &[],
    );
    let unknown = api(
        &d,
        &env,
        Some(&env.pki.b),
        "GET",
        &format!("/v1/sign/response/{}", "0".repeat(64)),
        &[],
    );
    assert_eq!((theirs.status, unknown.status), (404, 404));
    assert_eq!(theirs.body, unknown.body);
    let bad = api(
        &d,
        &env,
        Some(&env.pki.a),
        "GET",
        "/v1/sign/response/xyz",
        &[],
    );
    assert_eq!(bad.status, 400);
    assert!(bad.message().contains("64 hex"), "{}", bad.message());

    // The auditor sees the creations and fetches; e-Services may not read the log.
    let log = api(
        &d,
        &env,
        Some(&env.pki.auditor),
        "GET",
        "/v1/audit/log?limit=1000",
        &[],
    );
    assert_eq!(log.status, 200, "{}", String::from_utf8_lossy(&log.body));
    let events = log.json();
    let events = events.as_array().unwrap();
    for id in &ids {
        for kind in ["signature.created", "signature.fetched"] {
            assert!(
                events
                    .iter()
                    .any(|e| e["event"] == kind && e["signatureId"] == id.as_str()),
                "{kind} of {id} missing from the audit log"
            );
        }
    }
    let created = events
        .iter()
        .find(|e| e["event"] == "signature.created")
        .unwrap();
    assert_eq!(created["signatureType"], "ONETIME");
    assert_eq!(created["status"]["code"], "OK");
    assert!(created["keyDestroyed"]["keySha256"].as_str().unwrap().len() == 64);
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "signature.created" && e["requestId"] == "corr-4711.test"),
        "the correlation ID is not in the audit event"
    );
    let page = api(
        &d,
        &env,
        Some(&env.pki.auditor),
        "GET",
        "/v1/audit/log?limit=2",
        &[],
    );
    assert_eq!(page.json().as_array().unwrap().len(), 2);
    let cursor = page
        .headers
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-next-cursor:")
                .map(|v| v.trim().to_string())
        })
        .expect("a full page carries X-Next-Cursor");
    let next = api(
        &d,
        &env,
        Some(&env.pki.auditor),
        "GET",
        &format!("/v1/audit/log?limit=2&cursor={cursor}"),
        &[],
    );
    assert_eq!(next.status, 200);
    assert_ne!(next.json()[0], page.json()[0]);
    let denied = api(&d, &env, Some(&env.pki.a), "GET", "/v1/audit/log", &[]);
    assert_eq!(denied.status, 403);
    let bad_time = api(
        &d,
        &env,
        Some(&env.pki.auditor),
        "GET",
        "/v1/audit/log?start=yesterday",
        &[],
    );
    assert_eq!(bad_time.status, 400);
    assert!(bad_time.message().contains("start"));

    // Nothing secret reached the log: not the ID token, not the PIN, not a signature or token value.
    let pin = std::fs::read_to_string(&env._token.pin_file).unwrap();
    d.stop();
    let log = std::fs::read_to_string(env.dir.path().join("esigd.log")).unwrap();
    assert!(log.contains("one-time signature created"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("corr-4711.test") && l.contains("one-time signature created")),
        "the workflow's log line does not carry the request ID:\n{log}"
    );
    tokens.push(token);
    for token in &tokens {
        assert!(!log.contains(token.as_str()), "the ID token was logged");
        let payload = token.split('.').nth(1).unwrap();
        assert!(!log.contains(payload), "the ID token payload was logged");
    }
    assert!(!log.contains(pin.trim()), "the PIN was logged");
    for v in &signature_values {
        assert!(!log.contains(v.as_str()), "a signature value was logged");
    }
    assert!(!log.contains("Mari Maasikas"), "personal data was logged");
}

/// Claims of a token the test IdP could have issued to `service-a` for mari, now.
fn forged_claims(env: &Env) -> serde_json::Value {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    serde_json::json!({
        "iss": env.idp.issuer, "sub": "user-mari", "aud": A_AUD,
        "exp": now + 300, "iat": now, "auth_time": now,
        "name": "Mari Maasikas", "given_name": "Mari", "family_name": "Maasikas",
        "individual_id": "49005170001", "country": "EE",
    })
}

/// `forged_claims` with `key` set to `value` (`null` removes it).
fn with_claim(env: &Env, key: &str, value: serde_json::Value) -> serde_json::Value {
    let mut c = forged_claims(env);
    if value.is_null() {
        c.as_object_mut().unwrap().remove(key);
    } else {
        c[key] = value;
    }
    c
}

#[test]
fn bad_id_tokens_get_401() {
    let env = env_with(|_| String::new());
    let d = env.start();
    let body = sign_body("SHA2-256", &Sha256::digest(b"doc"));
    let good = env.token_for_a("mari");

    let r = api(
        &d,
        &env,
        Some(&env.pki.a),
        "POST",
        "/v1/sign/onetime",
        &["--data-binary", &body],
    );
    assert_eq!(r.status, 401);
    assert!(
        r.message().contains("X-GovStack-AuthenticationToken"),
        "{}",
        r.message()
    );

    // Tampered: one character of the payload changed; the signature no longer matches.
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    let mut p = parts[1].clone().into_bytes();
    p[10] = if p[10] == b'A' { b'B' } else { b'A' };
    parts[1] = String::from_utf8(p).unwrap();
    let tampered = parts.join(".");
    let r = sign(&d, &env, &env.pki.a, &tampered, &body);
    assert_eq!(r.status, 401, "tampered: {}", r.message());

    // Wrong audience: a token issued to a client that svc-a does not accept.
    let stranger = env.idp.id_token("stranger", "s", A_REDIRECT, "mari");
    let r = sign(&d, &env, &env.pki.a, &stranger, &body);
    assert_eq!(r.status, 401, "wrong audience: {}", r.message());
    assert!(r.message().contains("audience"), "{}", r.message());

    // Wrong issuer: a token from another OpenID provider (its own keys and issuer).
    let other = Idp::start_with(&idp_config());
    let foreign = other.id_token(A_AUD, A_SECRET, A_REDIRECT, "mari");
    let r = sign(&d, &env, &env.pki.a, &foreign, &body);
    assert_eq!(r.status, 401, "wrong issuer: {}", r.message());

    // Garbage.
    let r = sign(&d, &env, &env.pki.a, "not-a-jwt", &body);
    assert_eq!(r.status, 401);

    // Expired: a 1-second token used after expiry + the configured 1 s clock skew.
    let short = env.idp.id_token("short-lived", "s", A_REDIRECT, "mari");
    std::thread::sleep(Duration::from_millis(3500));
    let r = sign(&d, &env, &env.pki.a, &short, &body);
    assert_eq!(r.status, 401, "expired: {}", r.message());
    assert!(r.message().contains("expired"), "{}", r.message());

    // The good token works once; a replay of it is refused, naming the header.
    let r = sign(&d, &env, &env.pki.a, &good, &body);
    assert_eq!(r.status, 200, "{}", r.message());
    let r = sign(&d, &env, &env.pki.a, &good, &body);
    assert_eq!(r.status, 401, "replayed: {}", r.message());
    assert!(
        r.message().contains("X-GovStack-AuthenticationToken")
            && r.message().contains("already used"),
        "{}",
        r.message()
    );
    // Also by another e-Service that accepts the same audience.
    let r = sign(&d, &env, &env.pki.b, &good, &body);
    assert_eq!(r.status, 401, "replayed at svc-b: {}", r.message());

    // Concurrent uses of one fresh token: exactly one signature.
    let fresh = env.token_for_a("mari");
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| sign(&d, &env, &env.pki.a, &fresh, &body).status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 401),
        "{statuses:?}"
    );

    // Forged tokens. First the control: the same forging path with the IdP's real key and sound
    // claims is accepted, so each refusal below is for the one thing changed.
    let es256 = serde_json::json!({"alg": "ES256", "typ": "JWT"});
    let control = env.idp.forge(&es256, &forged_claims(&env));
    let r = sign(&d, &env, &env.pki.a, &control, &body);
    assert_eq!(r.status, 200, "control token: {}", r.message());

    let jwks_before = env.idp.jwks_fetches();
    let cases = [
        (
            "alg none",
            serde_json::json!({"alg": "none", "typ": "JWT"}),
            forged_claims(&env),
            "",
        ),
        (
            "HS256 keyed with the provider's public key",
            serde_json::json!({"alg": "HS256", "typ": "JWT"}),
            forged_claims(&env),
            "allowed_algs",
        ),
        (
            "typ at+jwt (an access token)",
            serde_json::json!({"alg": "ES256", "typ": "at+jwt"}),
            forged_claims(&env),
            "typ",
        ),
        (
            "nbf in the future",
            es256.clone(),
            with_claim(
                &env,
                "nbf",
                serde_json::json!(forged_claims(&env)["iat"].as_u64().unwrap() + 600),
            ),
            "nbf",
        ),
        (
            "iat in the future",
            es256.clone(),
            with_claim(
                &env,
                "iat",
                serde_json::json!(forged_claims(&env)["iat"].as_u64().unwrap() + 600),
            ),
            "iat",
        ),
        (
            "auth_time older than the default identity.max_age (10 min)",
            es256.clone(),
            with_claim(
                &env,
                "auth_time",
                serde_json::json!(forged_claims(&env)["iat"].as_u64().unwrap() - 3600),
            ),
            "auth_time",
        ),
        (
            "auth_time missing",
            es256.clone(),
            with_claim(&env, "auth_time", serde_json::Value::Null),
            "auth_time",
        ),
    ];
    for (what, header, claims, needle) in cases {
        let token = env.idp.forge(&header, &claims);
        let r = sign(&d, &env, &env.pki.a, &token, &body);
        assert_eq!(r.status, 401, "{what}: {}", r.message());
        assert!(r.message().contains(needle), "{what}: {}", r.message());
    }
    // None of those made the daemon re-read the JWKS.
    assert_eq!(env.idp.jwks_fetches(), jwks_before, "{}", env.idp.log());

    // An unknown kid: refused; the JWKS is re-read at most once per interval however many such
    // tokens arrive.
    let unknown = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": "no-such-key"});
    for _ in 0..3 {
        let token = env.idp.forge(&unknown, &forged_claims(&env));
        let r = sign(&d, &env, &env.pki.a, &token, &body);
        assert_eq!(r.status, 401, "unknown kid: {}", r.message());
        assert!(r.message().contains("no matching key"), "{}", r.message());
    }
    let refetched = env.idp.jwks_fetches() - jwks_before;
    assert!(
        refetched <= 1,
        "JWKS fetched {refetched} times for unknown kids"
    );
    d.stop();
}

#[test]
fn mtls_and_source_ip_rules_are_enforced_per_client() {
    let env = env_with(|_| String::new());
    let d = env.start();
    let body = sign_body("SHA2-256", &Sha256::digest(b"doc"));
    let token = env.token_for_a("mari");
    let auth = format!("X-GovStack-AuthenticationToken: {token}");
    let post = |cert: Option<&(PathBuf, PathBuf)>, extra: &[&str]| {
        let mut args = vec!["-H", auth.as_str(), "--data-binary", body.as_str()];
        args.extend_from_slice(extra);
        api(&d, &env, cert, "POST", "/v1/sign/onetime", &args)
    };
    // No client certificate, a certificate from another CA, an expired one: no TLS session.
    for (what, cert) in [
        ("no client certificate", None),
        ("certificate from another CA", Some(&env.pki.foreign)),
        ("expired certificate", Some(&env.pki.expired)),
    ] {
        let r = post(cert, &[]);
        assert!(r.rc != 0 && r.status == 0, "{what}: {r:?}");
    }
    // A valid certificate that no e-Service or auditor registered: 403.
    let r = post(Some(&env.pki.unregistered), &[]);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.message().contains("not registered"));
    // svc-a from 127.0.0.2: the listener admits the address (svc-b may use it) but not for svc-a.
    let r = post(Some(&env.pki.a), &["--interface", "127.0.0.2"]);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.message().contains("127.0.0.2"), "{}", r.message());
    // svc-b from 127.0.0.2 is fine.
    let r = post(Some(&env.pki.b), &["--interface", "127.0.0.2"]);
    assert_eq!(r.status, 200, "{}", r.message());
    // 127.0.0.3 is in nobody's list: the connection is closed before the handshake.
    let r = post(Some(&env.pki.b), &["--interface", "127.0.0.3"]);
    assert!(r.rc != 0 && r.status == 0, "{r:?}");
    // An auditor certificate cannot sign.
    let r = post(Some(&env.pki.auditor), &[]);
    assert_eq!(r.status, 403);
    d.stop();
}

#[test]
fn bad_requests_get_the_contract_codes_with_messages() {
    // A rate-limited e-Service on the otherwise unregistered certificate.
    let env = env_with(|pki| {
        format!(
            "[[eservice]]\nid = \"limited\"\nname = \"Limited\"\nclient_cert_sha256 = {:?}\nallowed_ips = [\"127.0.0.1/32\"]\nid_token_audiences = [\"service-a\"]\nrate_limit = 1\nrate_burst = 2\n",
            sha256_of_cert(&pki.unregistered.0)
        )
    });
    let d = env.start();
    let token = env.token_for_a("mari");
    let digest = Sha256::digest(b"doc");
    let case = |body: &str| sign(&d, &env, &env.pki.a, &token, body);
    let json = |v: serde_json::Value| v.to_string();
    let h = B64.encode(digest);
    for (body, status, needle) in [
        (
            json(serde_json::json!({"hash": h, "hashType": "SHA2-256"})),
            422,
            "format",
        ),
        (
            json(serde_json::json!({"format": "PDF", "hash": h, "hashType": "SHA2-256"})),
            422,
            "supported: XAdES, CAdES, ASIC, JWS, PAdES",
        ),
        (
            json(serde_json::json!({"format": "CAdES", "hash": h})),
            422,
            "hashType",
        ),
        (
            json(serde_json::json!({"format": "CAdES", "hashType": "SHA2-256"})),
            422,
            "hash is required",
        ),
        (
            json(serde_json::json!({"format": "CAdES", "hash": h, "hashType": "SHA3-256"})),
            422,
            "SHA2-256",
        ),
        (
            json(serde_json::json!({"format": "CAdES", "hash": h, "hashType": "SHA2-512"})),
            400,
            "64",
        ),
        (
            json(serde_json::json!({"format": "CAdES", "hash": "***", "hashType": "SHA2-256"})),
            400,
            "base64",
        ),
        (
            json(
                serde_json::json!({"format": "CAdES", "hash": h, "hashType": "SHA2-256", "dataToBeDisplayed": "x".repeat(300)}),
            ),
            400,
            "dataToBeDisplayed",
        ),
        (
            json(
                serde_json::json!({"format": "CAdES", "hash": h, "hashType": "SHA2-256", "requestTimestamp": "2020-01-01T00:00:00Z"}),
            ),
            400,
            "requestTimestamp",
        ),
        ("{not json".to_string(), 400, "JSON"),
    ] {
        let r = case(&body);
        assert_eq!(
            r.status,
            status,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json()["status"]["code"], "ERROR");
        assert!(r.message().contains(needle), "{body}: {}", r.message());
    }
    // A body over limits.max_body_bytes.
    let huge = "x".repeat(100 * 1024);
    let r = case(&huge);
    assert_eq!(r.status, 413, "{r:?}");
    // The per-e-Service rate limit: burst 2, then 429 with Retry-After (checked before the ID
    // token, so the replays after the first signature get 401 until the bucket is empty).
    let good = sign_body("SHA2-256", &digest);
    let statuses: Vec<u16> = (0..4)
        .map(|_| sign(&d, &env, &env.pki.unregistered, &token, &good).status)
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(statuses[0], 200, "{statuses:?}");
    d.stop();
}

#[test]
fn a_signature_survives_kill_9_right_after_its_id_was_returned() {
    let env = env_with(|_| String::new());
    let d = env.start();
    let token = env.token_for_a("mari");
    let doc = env.dir.path().join("doc.txt");
    std::fs::write(&doc, b"durable").unwrap();
    let r = sign(
        &d,
        &env,
        &env.pki.a,
        &token,
        &sign_body("SHA2-256", &Sha256::digest(b"durable")),
    );
    assert_eq!(r.status, 200, "{}", r.message());
    let first = r.json();
    d.kill9();
    let d = env.start();
    let id = first["signatureId"].as_str().unwrap();
    let f = api(
        &d,
        &env,
        Some(&env.pki.a),
        "GET",
        &format!("/v1/sign/response/{id}"),
        &[],
    );
    assert_eq!(f.status, 200, "{}", String::from_utf8_lossy(&f.body));
    let got = f.json();
    assert_eq!(got["signature"], first["signature"]);
    assert_eq!(got["certificate"], first["certificate"]);
    assert_eq!(got["signatureTimestamp"], first["signatureTimestamp"]);
    let work = env.dir.path().join("w");
    std::fs::create_dir_all(&work).unwrap();
    check_signature(&env, &got, &doc, &work);
    d.stop();
}

#[test]
fn sighup_reloads_the_e_service_registry() {
    let env = env_with(|_| String::new());
    let d = env.start();
    let token = env.token_for_a("mari");
    let body = sign_body("SHA2-256", &Sha256::digest(b"doc"));
    assert_eq!(
        sign(&d, &env, &env.pki.unregistered, &token, &body).status,
        403
    );
    let fp = sha256_of_cert(&env.pki.unregistered.0);
    let mut cfg = std::fs::read_to_string(&env.cfg).unwrap();
    cfg.push_str(&format!(
        "\n[[eservice]]\nid = \"new\"\nname = \"New\"\nclient_cert_sha256 = {fp:?}\nallowed_ips = [\"127.0.0.1/32\"]\nid_token_audiences = [\"service-a\"]\n"
    ));
    // Remove svc-b at the same time.
    let cfg = cfg.replace("id = \"svc-b\"", "id = \"svc-b-renamed\"");
    std::fs::write(&env.cfg, &cfg).unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = sign(&d, &env, &env.pki.unregistered, &token, &body);
        if r.status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reload not applied: {}",
            r.message()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A broken file is refused and the running registry stays (a new login: ID tokens are
    // single-use).
    std::fs::write(&env.cfg, format!("{cfg}\nunknown_key = 1\n")).unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    let token = env.token_for_a("mari");
    assert_eq!(
        sign(&d, &env, &env.pki.unregistered, &token, &body).status,
        200
    );
    d.stop();
    let log = std::fs::read_to_string(env.dir.path().join("esigd.log")).unwrap();
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(log.contains("configuration reload refused"), "{log}");
}
