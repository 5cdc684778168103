//! Workflow 9.1 end to end in a real browser: Debian's Chromium driven by npm `playwright-core`
//! (`tests/e2e/sign-flow.mjs`), the example e-Service (`examples/eservice/server.mjs`) with its
//! mutual-TLS back end, a real OpenID provider as the Identity BB (`tests/e2e/idp.mjs`, npm
//! `oidc-provider`) whose login form the browser fills, and the real `esigd` binary on a SoftHSM
//! token. The signature the browser downloads is checked with `openssl cms -verify` and
//! `openssl ts -verify`. In the other formats the e-Service offers, the citizen downloads a signed
//! PDF (PAdES: prepared and embedded in the browser by the WebAssembly `esig-pdf.js`; pyHanko,
//! pdfsig and qpdf check it), the document with its XAdES / JAdES signature (xmlsec1, signxml,
//! jwcrypto), or an ASiC-E container zipped in the browser (also libdigidocpp).
//!
//! Screenshots of every page go to `$ESIGD_TEST_ARTIFACTS/<test>/` (default: under cargo's
//! `CARGO_TARGET_TMPDIR`, `browser-flow/<test>/`); the tests print the folder.
//! `scripts/screenshots.sh` copies the happy-path ones to `docs/screenshots/`.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use esigd_hsm::testing::TestToken;
use esigd_testkit::api::{
    check_one_time_certificate, mtls, run_ok, sha256_of_cert, verify_with_openssl,
};
use esigd_testkit::browser::{self, require_browser, tail};
use esigd_testkit::e2e::{EServiceSetup, NodeServer, drive, start_example_eservice};
use esigd_testkit::formats_check::{
    Anchors, DocFile, check_jws_signature, check_pdf_signature, check_xml_signature, pdfsig,
    pyhanko_validate_pdf, qpdf_check, simple_pdf,
};
use esigd_testkit::idp::Idp;
use esigd_testkit::pki::{Ca, openssl};
use esigd_testkit::{Daemon, config, esigd, free_port};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The OIDC client secret of esigd at the test IdP.
const OIDC_SECRET: &str = "esigd-browser-test-secret";
/// The e-Service the example server plays.
const SERVICE: &str = "demo-svc";
const SERVICE_NAME: &str = "Demo e-Service (browser test)";
/// An e-Service that must present payment tokens (its callbacks go to the same example server).
const PAID: &str = "paid-svc";
const PAID_NAME: &str = "Paid e-Service (browser test)";
/// `payment.audience`.
const PAYMENT_AUD: &str = "esigd";

/// The (emptied) artifacts folder of `test` (default: under cargo's `CARGO_TARGET_TMPDIR`).
fn artifacts(test: &str) -> PathBuf {
    browser::artifacts(
        &Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-flow"),
        test,
    )
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Client certificates and the e-Service listener's server certificate (one test CA).
struct Pki {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    eservice: (PathBuf, PathBuf),
    paid: (PathBuf, PathBuf),
    auditor: (PathBuf, PathBuf),
}

/// IdP, a configured and running esigd, and the example e-Service.
struct Env {
    eservice: NodeServer,
    daemon: Daemon,
    idp: Idp,
    pki: Pki,
    /// `http://127.0.0.1:<port>`: esigd's public listener = `ca.base_url`.
    public: String,
    /// `http://127.0.0.1:<port>`: the example e-Service.
    eservice_origin: String,
    /// PKCS#8 PEM private keys: the Payment BB's, and one esigd does not know.
    payment_key: PathBuf,
    stranger_key: PathBuf,
    _token: TestToken,
    dir: tempfile::TempDir,
}

impl Env {
    fn start() -> Env {
        require_browser();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let token = TestToken::create();
        let public_port = free_port();
        let mut eservice_port = free_port();
        while eservice_port == public_port {
            eservice_port = free_port();
        }
        let public = format!("http://127.0.0.1:{public_port}");
        let eservice_origin = format!("http://127.0.0.1:{eservice_port}");

        let idp = Idp::start_with(&serde_json::json!({
            "clients": [{
                "client_id": "esigd",
                "client_name": "esigd eSignature service",
                "client_secret": OIDC_SECRET,
                "token_endpoint_auth_method": "client_secret_basic",
                "redirect_uris": [format!("{public}/v1/oidc/callback")],
            }]
        }));

        let ca = Ca::new(root, "eservice-ca");
        let pki = Pki {
            server: ca.issue("server", "/CN=esigd.test", "server_ext", None),
            eservice: ca.issue("demo", "/CN=demo-eservice/O=Demo", "client_ext", None),
            paid: ca.issue("paid", "/CN=paid-eservice/O=Demo", "client_ext", None),
            auditor: ca.issue("auditor", "/CN=auditor/O=Audit Office", "client_ext", None),
            ca: ca.pem(),
        };
        for name in ["payment", "stranger"] {
            openssl(
                root,
                &[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                    &format!("{name}.key"),
                ],
            );
            openssl(
                root,
                &[
                    "pkey",
                    "-in",
                    &format!("{name}.key"),
                    "-pubout",
                    "-out",
                    &format!("{name}.pub.pem"),
                ],
            );
        }

        let toml = format!(
            r#"
[ca]
base_url = {public:?}

[tls]
cert = {server:?}
key = {server_key:?}
client_ca = {ca:?}

[tsa]
allow_unsynchronized_clock = true

[identity]
issuer = {issuer:?}
client_id = "esigd"
client_secret = {{ env = "ESIGD_TEST_OIDC_SECRET" }}
[identity.claims]
default_country = "EE"

[payment]
audience = "{PAYMENT_AUD}"
key_file = {pay:?}

[[eservice]]
id = "{SERVICE}"
name = "{SERVICE_NAME}"
client_cert_sha256 = {es_fp:?}
allowed_ips = ["127.0.0.1/32"]
callback_prefixes = ["{eservice_origin}/"]

[[eservice]]
id = "{PAID}"
name = "{PAID_NAME}"
client_cert_sha256 = {paid_fp:?}
allowed_ips = ["127.0.0.1/32"]
callback_prefixes = ["{eservice_origin}/"]
payment_required = true

[[auditor]]
name = "Audit Office"
client_cert_sha256 = {aud_fp:?}
allowed_ips = ["127.0.0.1/32"]
"#,
            server = pki.server.0,
            server_key = pki.server.1,
            ca = pki.ca,
            issuer = idp.issuer,
            pay = root.join("payment.pub.pem"),
            es_fp = sha256_of_cert(&pki.eservice.0),
            paid_fp = sha256_of_cert(&pki.paid.0),
            aud_fp = sha256_of_cert(&pki.auditor.0),
        );
        let cfg = config(root, &token, &toml);
        esigd_testkit::init(&cfg);
        let mut cmd = esigd();
        cmd.arg("--config").arg(&cfg).args([
            "serve",
            "--public",
            &format!("127.0.0.1:{public_port}"),
            "--eservice",
            "127.0.0.1:0",
        ]);
        cmd.env("ESIGD_TEST_OIDC_SECRET", OIDC_SECRET);
        let daemon = Daemon::start_logged(cmd, root.join("esigd.log"));
        // The example e-Service: its mTLS client certificate and the CA of esigd's server certificate.
        let eservice = start_example_eservice(
            &root.join("eservice"),
            &EServiceSetup {
                port: eservice_port,
                esigd_public: &public,
                esigd_eservice: &daemon.eservice,
                client: &pki.eservice,
                ca: &pki.ca,
                service_id: SERVICE,
            },
        );

        Env {
            eservice,
            daemon,
            idp,
            pki,
            public,
            eservice_origin,
            payment_key: root.join("payment.key"),
            stranger_key: root.join("stranger.key"),
            _token: token,
            dir,
        }
    }

    /// Logs of everything involved, for failure messages.
    fn diagnostics(&self) -> String {
        format!(
            "--- esigd log (tail) ---\n{}\n--- e-Service log (tail) ---\n{}\n--- IdP log (tail) ---\n{}",
            tail(&self.daemon.log_text(), 60),
            tail(
                &std::fs::read_to_string(&self.eservice.log).unwrap_or_default(),
                30
            ),
            tail(&self.idp.log(), 40)
        )
    }

    /// Runs `tests/e2e/sign-flow.mjs` with `args`; returns its JSON report (panics on failure).
    fn drive(&self, out: &Path, args: &[&str]) -> Value {
        drive("sign-flow.mjs", out, args, || self.diagnostics())
    }

    fn callback_url(&self) -> String {
        format!("{}/callback", self.eservice_origin)
    }

    /// `GET /v1/sign/interactive` for `service` with valid defaults; `set` replaces or adds parameters.
    fn interactive_url(&self, service: &str, set: &[(&str, &str)]) -> String {
        let hash = B64.encode(Sha256::digest(b"browser flow: negative cases"));
        let ts = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let (state, nonce, callback) = (random_hex(), random_hex(), self.callback_url());
        let mut params: Vec<(&str, &str)> = vec![
            ("serviceId", service),
            ("hash", &hash),
            ("hashType", "SHA2-256"),
            ("format", "CAdES"),
            ("dataToBeDisplayed", "Consent form 1234"),
            ("callbackUrl", &callback),
            ("state", &state),
            ("nonce", &nonce),
            ("requestTimestamp", &ts),
        ];
        for (k, v) in set {
            match params.iter_mut().find(|(n, _)| n == k) {
                Some(p) => p.1 = v,
                None => params.push((k, v)),
            }
        }
        // The display text travels base64url-encoded, as the GovStack API has it.
        let display = params
            .iter()
            .find(|(k, _)| *k == "dataToBeDisplayed")
            .map(|(_, v)| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v))
            .unwrap_or_default();
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter().map(|(k, v)| {
                (
                    *k,
                    if *k == "dataToBeDisplayed" {
                        display.as_str()
                    } else {
                        *v
                    },
                )
            }))
            .finish();
        format!("{}/v1/sign/interactive?{query}", self.public)
    }

    /// A Payment BB token (ES256) for the paid e-Service (`sub`, as `payment.eservice_claim`
    /// requires by default) signed with `key`, expiring `ttl` seconds from now (negative: expired).
    fn payment_token(&self, key: &Path, aud: &str, ttl: i64) -> String {
        let key = jsonwebtoken::EncodingKey::from_ec_pem(&std::fs::read(key).unwrap()).unwrap();
        let claims = serde_json::json!({
            "aud": aud,
            "iat": now(),
            "exp": now() + ttl,
            "jti": random_hex(),
            "sub": PAID,
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &claims,
            &key,
        )
        .unwrap()
    }

    /// The auditor's view of the audit log.
    fn audit_log(&self) -> Vec<Value> {
        let r = mtls(
            &self.daemon.eservice,
            &self.pki.ca,
            Some(&self.pki.auditor),
            "GET",
            "/v1/audit/log?limit=1000",
            &[],
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json().as_array().unwrap().clone()
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn is_signature_id(v: &Value) -> bool {
    let id = s(v);
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Every main-frame navigation in `report` stayed on `origin`.
fn stayed_on(report: &Value, origin: &str) -> bool {
    report["navigations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| s(&n["url"]).starts_with(origin))
}

#[test]
fn one_time_signature_in_a_real_browser() {
    let env = Env::start();
    let out = artifacts("happy");
    let doc = env.dir.path().join("contract.txt");
    std::fs::write(
        &doc,
        "Land sale contract no. 77\nSeller: Jaan Tamm\nBuyer: Mari Maasikas\n",
    )
    .unwrap();
    let r = env.drive(
        &out,
        &[
            "--scenario",
            "happy",
            "--eservice",
            s(&env.eservice.ready["url"]),
            "--user",
            "mari",
            "--document",
            doc.to_str().unwrap(),
        ],
    );
    let ctx = format!("report: {r:#}\n{}", env.diagnostics());
    let start = &r["start"];
    let (state, nonce) = (s(&start["state"]), s(&start["nonce"]));
    assert!(!state.is_empty() && !nonce.is_empty(), "{ctx}");

    // The esigd choice page: who asks, what is signed, the two ways to sign; the session cookie.
    let choice = &r["choice"];
    assert_eq!(choice["status"], 200, "{ctx}");
    assert_eq!(s(&choice["eserviceName"]), SERVICE_NAME, "{ctx}");
    assert_eq!(
        s(&choice["displayText"]),
        "Demo e-Service: sign \"contract.txt\"",
        "{ctx}"
    );
    assert!(!s(&choice["hashFingerprint"]).is_empty(), "{ctx}");
    assert!(
        s(&choice["nationalIdText"]).contains("National ID"),
        "{ctx}"
    );
    assert!(s(&choice["scdText"]).contains("signing device"), "{ctx}");
    assert_eq!(s(&choice["query"]["state"]), state, "{ctx}");
    assert_eq!(s(&choice["query"]["nonce"]), nonce, "{ctx}");
    let cookie = &choice["cookies"][0];
    assert_eq!(cookie["name"], "esigd_session", "{ctx}");
    assert_eq!(cookie["httpOnly"], true, "{ctx}");
    assert_eq!(cookie["sameSite"], "Lax", "{ctx}");

    // The authorization request at the Identity BB: code flow with PKCE (S256), esigd's own state and
    // nonce (not the e-Service's), our registered redirect URI.
    let q = &r["idp"]["query"];
    assert_eq!(s(&q["client_id"]), "esigd", "{ctx}");
    assert_eq!(s(&q["response_type"]), "code", "{ctx}");
    assert_eq!(s(&q["code_challenge_method"]), "S256", "{ctx}");
    assert!(s(&q["code_challenge"]).len() >= 43, "{ctx}");
    assert_eq!(
        s(&q["redirect_uri"]),
        format!("{}/v1/oidc/callback", env.public),
        "{ctx}"
    );
    assert!(
        s(&q["state"]).len() >= 16 && s(&q["state"]) != state,
        "{ctx}"
    );
    assert!(
        s(&q["nonce"]).len() >= 16 && s(&q["nonce"]) != nonce,
        "{ctx}"
    );
    assert!(s(&q["scope"]).split(' ').any(|x| x == "openid"), "{ctx}");

    // The esigd result page links to the callback (and refreshes to it).
    let res = &r["esigdResult"];
    assert!(
        s(&res["continueHref"]).starts_with(&env.callback_url()),
        "{ctx}"
    );
    assert!(!s(&res["metaRefresh"]).is_empty(), "{ctx}");

    // Back at the e-Service callback with signatureId, state and nonce intact.
    let cb = &r["callback"];
    let id = s(&cb["query"]["signatureId"]).to_string();
    assert!(is_signature_id(&cb["query"]["signatureId"]), "{ctx}");
    assert_eq!(s(&cb["query"]["state"]), state, "{ctx}");
    assert_eq!(s(&cb["query"]["nonce"]), nonce, "{ctx}");
    assert!(cb["query"]["error"].is_null(), "{ctx}");
    assert!(s(&res["continueHref"]).contains(&id), "{ctx}");
    // The e-Service's back end fetched the signature over mTLS and checked it against its hash;
    // esig.js did the same in the browser.
    assert_eq!(s(&cb["signatureId"]), id, "{ctx}");
    assert_eq!(cb["serverCheckOk"], "true", "{ctx}");
    assert_eq!(cb["browserCheckOk"], "true", "{ctx}");
    assert_eq!(cb["timestampPresent"], "true", "{ctx}");
    assert!(s(&cb["subject"]).contains("Mari Maasikas"), "{ctx}");
    let events = env.audit_log();
    for kind in ["signature.created", "signature.fetched"] {
        assert!(
            events
                .iter()
                .any(|e| e["event"] == kind && e["signatureId"] == id.as_str()),
            "{kind} of {id} missing from the audit log: {events:#?}\n{ctx}"
        );
    }

    // The signature the user downloaded: openssl verifies it against the document, its time-stamp,
    // and the one-time certificate names the user and lives 60 s.
    let p7s = std::fs::read(s(&r["signature"])).unwrap();
    let doc_digest = Sha256::digest(std::fs::read(&doc).unwrap());
    let verified =
        esigd_pki::cms::verify_detached_digest(&p7s, Some(doc_digest.as_slice())).unwrap();
    let signed_at = verified
        .signing_time
        .map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs());
    let work = env.dir.path().join("verify");
    verify_with_openssl(
        &env.dir.path().join("data/pki/ca.pem"),
        &env.dir.path().join("data/pki/tsa.pem"),
        &p7s,
        &doc,
        &work,
        signed_at,
    );
    // pyHanko validates it too (as of the signing time: the one-time certificate lives 60 s); its
    // status fields, parsed, for the signature and its time-stamp over the signature value.
    let report = esigd_testkit::validators::pyhanko_validate_cms(
        &work.join("sig.p7s"),
        &doc,
        &env.dir.path().join("data/pki/ca.pem"),
        signed_at,
    );
    assert!(
        report.signature.ok() && report.bottom_line && report.timestamp_valid(),
        "pyHanko did not accept the signature and its time-stamp: {report:#?}"
    );
    let ts = report.timestamp.as_ref().unwrap();
    let sigval_digest = hex::encode(Sha256::digest(&verified.signature));
    assert_eq!(ts.imprint, sigval_digest, "{report:#?}");
    let pem = der::EncodePem::to_pem(&verified.signer_cert, der::pem::LineEnding::LF).unwrap();
    check_one_time_certificate(&pem, &work);
    run_ok(
        Command::new("openssl")
            .args(["cms", "-cmsout", "-print", "-inform", "DER", "-in"])
            .arg(s(&r["signature"]))
            .arg("-out")
            .arg(out.join("signature.txt")),
    );

    // The OIDC callback replayed (same code, same state): refused, no second trip to the e-Service.
    let replay = &r["replay"];
    assert!(!replay.is_null(), "the OIDC callback was not seen\n{ctx}");
    assert_eq!(replay["status"], 400, "{ctx}");
    assert!(!s(&replay["error"]).is_empty(), "{ctx}");
    assert!(stayed_on(replay, &env.public), "{ctx}");

    assert_eq!(r["dialogs"], serde_json::json!([]), "{ctx}");
    assert_eq!(r["pageErrors"], serde_json::json!([]), "{ctx}");
    let shots: Vec<&str> = r["screenshots"].as_array().unwrap().iter().map(s).collect();
    for name in [
        "01-eservice-start.png",
        "02-esigd-choice.png",
        "03-idp-login.png",
        "04-esigd-result.png",
        "05-eservice-result.png",
    ] {
        assert!(
            shots.iter().any(|p| p.ends_with(name)) && out.join(name).is_file(),
            "{name} missing: {shots:?}"
        );
    }

    // Nothing secret or personal reached esigd's log: not the authorization code, not the user's name.
    let code = url::Url::parse(s(&r["oidcCallback"]))
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let log = env.daemon.log_text();
    assert!(
        code.is_empty() || !log.contains(&code),
        "the authorization code was logged"
    );
    assert!(!log.contains("Mari Maasikas"), "personal data was logged");
    if !r["consoleErrors"].as_array().unwrap().is_empty() {
        println!("browser console errors: {:#}", r["consoleErrors"]);
    }
    println!(
        "browser-flow artifacts (screenshots, signature.p7s): {}",
        out.display()
    );
}

#[test]
fn refused_cancelled_and_unpaid_requests_in_a_real_browser() {
    let env = Env::start();
    let out = artifacts("negative");
    let unregistered = format!("http://127.0.0.1:{}/callback", free_port());
    let short_hash = B64.encode([7u8; 20]);
    let long_text = "x".repeat(257);
    let script = "<script>alert(1)</script>";
    let expired = env.payment_token(&env.payment_key, PAYMENT_AUD, -600);
    let stranger = env.payment_token(&env.stranger_key, PAYMENT_AUD, 300);
    let wrong_aud = env.payment_token(&env.payment_key, "someone-else", 300);
    let pages: Vec<(&str, String)> = vec![
        (
            "unregistered-callback",
            env.interactive_url(SERVICE, &[("callbackUrl", &unregistered)]),
        ),
        (
            "foreign-callback",
            env.interactive_url(SERVICE, &[("callbackUrl", "http://attacker.test/callback")]),
        ),
        (
            "unknown-service",
            env.interactive_url("no-such-service", &[]),
        ),
        (
            "bad-hash",
            env.interactive_url(SERVICE, &[("hash", &short_hash)]),
        ),
        (
            "display-too-long",
            env.interactive_url(SERVICE, &[("dataToBeDisplayed", &long_text)]),
        ),
        (
            "stale-request",
            env.interactive_url(SERVICE, &[("requestTimestamp", "2020-01-01T00:00:00Z")]),
        ),
        (
            "script-display-text",
            env.interactive_url(SERVICE, &[("dataToBeDisplayed", script)]),
        ),
        ("payment-missing", env.interactive_url(PAID, &[])),
        (
            "payment-expired",
            env.interactive_url(PAID, &[("paymentToken", &expired)]),
        ),
        (
            "payment-unknown-key",
            env.interactive_url(PAID, &[("paymentToken", &stranger)]),
        ),
        (
            "payment-wrong-audience",
            env.interactive_url(PAID, &[("paymentToken", &wrong_aud)]),
        ),
    ];
    let mut args = vec!["--scenario", "page", "--scd"];
    for (name, url) in &pages {
        args.extend(["--url", url.as_str(), "--name", name]);
    }
    let r = env.drive(&out.join("pages"), &args);
    let diag = env.diagnostics();
    let report = |name: &str| -> &Value {
        r["pages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()
    };

    // Invalid requests: an error page with a message, never a redirect (no open redirect).
    for name in [
        "unregistered-callback",
        "foreign-callback",
        "unknown-service",
        "bad-hash",
        "display-too-long",
        "stale-request",
    ] {
        let p = report(name);
        let ctx = format!("{name}: {p:#}\n{diag}");
        assert_eq!(p["status"], 400, "{ctx}");
        assert!(!s(&p["error"]).is_empty(), "{ctx}");
        assert!(p["redirectedFrom"].is_null(), "{ctx}");
        assert_eq!(p["navigations"].as_array().unwrap().len(), 1, "{ctx}");
        assert!(stayed_on(p, &env.public), "{ctx}");
        assert_eq!(s(&p["url"]), s(&p["requested"]), "{ctx}");
        assert!(p["choiceNationalId"].is_null(), "{ctx}");
    }
    for name in ["unregistered-callback", "foreign-callback"] {
        let p = report(name);
        assert!(
            s(&p["error"]).to_lowercase().contains("callback"),
            "{name}: the error should say what is wrong: {p:#}"
        );
    }

    // Display text with markup is shown as text; nothing runs. Security headers are set. The SCD path
    // says it is not available yet.
    let p = report("script-display-text");
    let ctx = format!("script-display-text: {p:#}\n{diag}");
    assert_eq!(p["status"], 200, "{ctx}");
    assert_eq!(s(&p["displayText"]), script, "{ctx}");
    assert_eq!(p["displayTextScripts"], 0, "{ctx}");
    assert_eq!(p["dialogs"], serde_json::json!([]), "{ctx}");
    assert_eq!(s(&p["eserviceName"]), SERVICE_NAME, "{ctx}");
    assert_eq!(
        s(&p["headers"]["x-frame-options"]).to_ascii_uppercase(),
        "DENY",
        "{ctx}"
    );
    let csp = s(&p["headers"]["content-security-policy"]);
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"),
        "{ctx}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{ctx}");
    assert!(
        s(&p["scd"]["unavailable"]).contains("not available"),
        "{ctx}"
    );

    // Readable on a phone: on a 360 px touch screen the choice page does not scroll sideways, both
    // choices are whole on screen and at least 44 px tall (WCAG 2.5.5 target size), no text is tiny.
    let phone_choice = env.interactive_url(
        SERVICE,
        &[(
            "dataToBeDisplayed",
            "Contract 2026/118: a long description that has to wrap on a small screen",
        )],
    );
    let unknown_service = env.interactive_url("no-such-service", &[]);
    let unpaid = env.interactive_url(PAID, &[]);
    let phone = env.drive(
        &out.join("phone"),
        &[
            "--scenario",
            "page",
            "--phone",
            "--axe",
            "--scd",
            "--url",
            &phone_choice,
            "--name",
            "choice-on-a-phone",
            "--url",
            &unknown_service,
            "--name",
            "error-on-a-phone",
            "--url",
            &unpaid,
            "--name",
            "payment-on-a-phone",
        ],
    );
    // Accessibility: axe-core (WCAG 2.1 A and AA rules) finds nothing on the choice, SCD, error and
    // payment pages.
    let scd_page = &phone["pages"][0]["scd"];
    assert!(!scd_page["accessibility"].is_null(), "{scd_page:#}");
    for page in phone["pages"].as_array().unwrap().iter().chain([scd_page]) {
        let a = &page["accessibility"];
        assert!(
            a["passes"].as_u64().unwrap() > 0,
            "axe did not run: {page:#}"
        );
        assert_eq!(
            a["violations"],
            serde_json::json!([]),
            "{}: {:#}",
            s(&page["name"]).to_owned() + s(&page["url"]),
            a["violations"]
        );
    }
    let p = &phone["pages"][0];
    let l = &p["layout"];
    let ctx = format!("phone: {p:#}\n{diag}");
    assert_eq!(p["status"], 200, "{ctx}");
    let width = l["viewportWidth"].as_f64().unwrap();
    assert_eq!(width, 360.0, "{ctx}");
    assert!(l["scrollWidth"].as_f64().unwrap() <= width, "{ctx}");
    for choice in ["nationalId", "scd", "displayText"] {
        let b = &l[choice];
        assert!(b["left"].as_f64().unwrap() >= 0.0, "{choice} {ctx}");
        assert!(b["right"].as_f64().unwrap() <= width, "{choice} {ctx}");
    }
    for choice in ["nationalId", "scd"] {
        assert!(
            l[choice]["height"].as_f64().unwrap() >= 44.0,
            "{choice} {ctx}"
        );
    }
    assert!(l["minFontPx"].as_f64().unwrap() >= 12.0, "{ctx}");

    // Payment required: no token, an expired one, one signed by another key, one for someone else.
    for name in [
        "payment-missing",
        "payment-expired",
        "payment-unknown-key",
        "payment-wrong-audience",
    ] {
        let p = report(name);
        let ctx = format!("{name}: {p:#}\n{diag}");
        assert_eq!(p["status"], 402, "{ctx}");
        assert!(!s(&p["paymentRequired"]).is_empty(), "{ctx}");
        assert!(p["choiceNationalId"].is_null(), "{ctx}");
        assert!(stayed_on(p, &env.public), "{ctx}");
    }

    // The user cancels at the Identity BB: back at the e-Service with error=access_denied, its state
    // and nonce, and no signature.
    let c = env.drive(
        &out.join("cancel"),
        &[
            "--scenario",
            "cancel",
            "--eservice",
            s(&env.eservice.ready["url"]),
        ],
    );
    let ctx = format!("cancel: {c:#}\n{diag}");
    let q = &c["callback"]["query"];
    assert!(
        s(&c["callback"]["url"]).starts_with(&env.callback_url()),
        "{ctx}"
    );
    assert_eq!(s(&q["error"]), "access_denied", "{ctx}");
    assert!(q["signatureId"].is_null(), "{ctx}");
    assert_eq!(q["state"], c["start"]["state"], "{ctx}");
    assert_eq!(q["nonce"], c["start"]["nonce"], "{ctx}");
    assert_eq!(s(&c["callback"]["errorCode"]), "access_denied", "{ctx}");

    // A tampered state on the OIDC callback (the genuine callback never reached esigd): refused.
    let t = env.drive(
        &out.join("tampered-state"),
        &[
            "--scenario",
            "tampered-state",
            "--eservice",
            s(&env.eservice.ready["url"]),
            "--user",
            "mari",
        ],
    );
    let tampered = &t["tampered"];
    let ctx = format!("tampered state: {t:#}\n{}", env.diagnostics());
    assert_eq!(tampered["status"], 400, "{ctx}");
    assert!(!s(&tampered["error"]).is_empty(), "{ctx}");
    assert!(stayed_on(tampered, &env.public), "{ctx}");
    assert!(
        s(&tampered["url"]).starts_with(&format!("{}/v1/oidc/callback", env.public)),
        "{ctx}"
    );
    // The genuine callback opened in another browser (no session cookie): refused as well.
    let forged = &t["withoutSession"];
    assert_eq!(forged["status"], 400, "{ctx}");
    assert!(!s(&forged["error"]).is_empty(), "{ctx}");
    assert!(stayed_on(forged, &env.public), "{ctx}");

    // With a valid payment token the paid e-Service gets a signature; the same token again: 402.
    let token = env.payment_token(&env.payment_key, PAYMENT_AUD, 300);
    let (state, nonce) = (random_hex(), random_hex());
    let url = env.interactive_url(
        PAID,
        &[
            ("paymentToken", &token),
            ("state", &state),
            ("nonce", &nonce),
        ],
    );
    let p = env.drive(
        &out.join("paid"),
        &[
            "--scenario",
            "paid",
            "--url",
            &url,
            "--user",
            "mari",
            "--callback-prefix",
            &env.callback_url(),
        ],
    );
    let ctx = format!("paid: {p:#}\n{}", env.diagnostics());
    assert_eq!(p["first"]["status"], 200, "{ctx}");
    assert_eq!(s(&p["first"]["eserviceName"]), PAID_NAME, "{ctx}");
    let q = &p["callback"]["query"];
    assert!(is_signature_id(&q["signatureId"]), "{ctx}");
    assert_eq!(s(&q["state"]), state, "{ctx}");
    assert_eq!(s(&q["nonce"]), nonce, "{ctx}");
    assert_eq!(p["reused"]["status"], 402, "{ctx}");
    assert!(!s(&p["reused"]["paymentRequired"]).is_empty(), "{ctx}");

    // Only the paid request produced a signature: not the cancelled, tampered or refused ones.
    let created: Vec<Value> = env
        .audit_log()
        .into_iter()
        .filter(|e| e["event"] == "signature.created")
        .collect();
    assert_eq!(created.len(), 1, "{created:#?}\n{ctx}");
    assert_eq!(created[0]["signatureId"], q["signatureId"], "{ctx}");
    assert!(
        !env.daemon.log_text().contains(&token),
        "the payment token was logged"
    );
    println!("browser-flow artifacts (screenshots): {}", out.display());
}

/// `pdf` (from [`simple_pdf`]) grown by `size` random bytes: an incremental update adding one
/// stream object (as a scanned page would weigh), so that the browser keeps megabytes across the
/// round trip through esigd.
fn heavy_pdf(pdf: &[u8], size: usize) -> Vec<u8> {
    let text = String::from_utf8_lossy(pdf).into_owned();
    let prev: usize = text
        .rsplit("startxref\n")
        .next()
        .and_then(|t| t.lines().next())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let size_at = text.rfind("/Size ").unwrap() + "/Size ".len();
    let objects: usize = text[size_at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let id = &text[text.rfind("/ID [").unwrap()..];
    let id = &id[..=id.find(']').unwrap()];
    let mut out = pdf.to_vec();
    let at = out.len();
    out.extend_from_slice(format!("{objects} 0 obj\n<< /Length {size} >>\nstream\n").as_bytes());
    let mut filler = vec![0u8; size];
    for chunk in filler.chunks_mut(32) {
        let r: [u8; 32] = rand::random();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    out.extend_from_slice(&filler);
    out.extend_from_slice(b"\nendstream\nendobj\n");
    let xref = out.len();
    out.extend_from_slice(
        format!(
            "xref\n0 1\n0000000000 65535 f \n{objects} 1\n{at:010} 00000 n \n\
             trailer\n<< /Size {} /Root 1 0 R /Prev {prev} {id} >>\nstartxref\n{xref}\n%%EOF\n",
            objects + 1
        )
        .as_bytes(),
    );
    out
}

/// `qpdf --check` finds `pdf` clean (the test's own PDF, before anything signs it).
fn qpdf_check_ok(pdf: &[u8], dir: &Path) {
    let file = dir.join("unsigned.pdf");
    std::fs::write(&file, pdf).unwrap();
    qpdf_check(&file).accepted("qpdf --check of the unsigned PDF");
}

/// libdigidocpp (pydigidoc, with client/tests/digidoc_validate.py, offline) opens the ASiC-E
/// `container`, finds `lease.txt` and one time-stamped signature, and finds nothing wrong with it
/// but what it must say of a test CA in no trusted list (trust, revocation).
fn digidoc_accepts(container: &Path, work: &Path, ctx: &str) {
    esigd_testkit::formats_check::require_python_module("pydigidoc");
    std::fs::create_dir_all(work).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../client/tests/digidoc_validate.py");
    let o = esigd_testkit::formats_check::python()
        .arg(script)
        .arg(container)
        .arg(work)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "libdigidocpp: {e}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    assert!(v.get("open_error").is_none(), "libdigidocpp: {v:#}\n{ctx}");
    assert_eq!(v["files"][0]["name"], "lease.txt", "libdigidocpp: {v:#}");
    assert_eq!(
        v["files"].as_array().unwrap().len(),
        1,
        "libdigidocpp: {v:#}"
    );
    let sigs = v["signatures"].as_array().unwrap();
    assert_eq!(sigs.len(), 1, "libdigidocpp: {v:#}");
    assert!(!s(&sigs[0]["tst_time"]).is_empty(), "libdigidocpp: {v:#}");
    let trust = [
        "Signature validation",
        "Unable to verify signing certificate",
        "unable to get local issuer certificate",
        "TSL",
        "Certificate status: unknown",
        "RevocationValues object is missing",
        "OCSP",
        "time stamp routines::certificate verify error",
    ];
    let other: Vec<&str> = s(&sigs[0]["error"])
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !trust.iter().any(|t| l.contains(t)))
        .collect();
    assert!(
        other.is_empty(),
        "libdigidocpp findings beyond trust and revocation: {other:#?}\n{v:#}"
    );
}

/// The DER of the first certificate of a PEM text.
fn pem_der(pem: &str) -> Vec<u8> {
    esigd_pki::pem::decode_pem("certificate", pem.as_bytes())
        .unwrap()
        .1
}

/// What esigd answered the e-Service (its result page has it): the signer's certificate (DER)
/// and the signature time-stamp token.
fn signer_and_timestamp(r: &Value) -> (Vec<u8>, Vec<u8>) {
    let resp = &r["result"]["response"];
    (
        pem_der(s(&resp["certificate"])),
        B64.decode(s(&resp["signatureTimestamp"])).unwrap(),
    )
}

#[test]
fn signed_pdf_and_the_other_formats_in_a_real_browser() {
    let env = Env::start();
    let out = artifacts("formats");
    let work = env.dir.path().join("formats");
    std::fs::create_dir_all(&work).unwrap();
    let anchors = Anchors::of_data_dir(&env.dir.path().join("data"));
    let url = s(&env.eservice.ready["url"]).to_owned();

    // PAdES, which the e-Service chooses for a PDF: the browser prepares the PDF (WebAssembly),
    // esigd signs the digest of its byte ranges, the browser embeds the CMS and offers the signed
    // PDF under the document's name. 4 MiB: the browser keeps it (and the prepared copy) in
    // IndexedDB across the round trip.
    let pdf = work.join("contract.pdf");
    let original = heavy_pdf(
        &simple_pdf(&[
            "Land sale contract no. 77",
            "Seller: Jaan Tamm. Buyer: Mari Maasikas.",
        ]),
        4 << 20,
    );
    qpdf_check_ok(&original, &work);
    std::fs::write(&pdf, &original).unwrap();
    let pades_out = out.join("pades");
    let r = env.drive(
        &pades_out,
        &[
            "--scenario",
            "happy",
            "--eservice",
            &url,
            "--user",
            "mari",
            "--document",
            pdf.to_str().unwrap(),
        ],
    );
    let ctx = format!("report: {r:#}\n{}", env.diagnostics());
    assert_eq!(s(&r["formatChoice"]["defaultFormat"]), "PAdES", "{ctx}");
    assert_eq!(s(&r["choice"]["format"]), "PAdES", "{ctx}");
    assert_eq!(s(&r["callback"]["format"]), "PAdES", "{ctx}");
    assert_eq!(r["callback"]["serverCheckOk"], "true", "{ctx}");
    assert_eq!(r["callback"]["browserCheckOk"], "true", "{ctx}");
    assert_eq!(r["callback"]["timestampPresent"], "true", "{ctx}");
    assert_eq!(
        s(&r["result"]["downloadPdfText"]),
        "Download signed PDF",
        "{ctx}"
    );
    assert_eq!(
        s(&r["result"]["signedPdf"]["name"]),
        "contract-signed.pdf",
        "{ctx}"
    );
    let signed = std::fs::read(s(&r["result"]["signedPdf"]["file"])).unwrap();
    // An incremental update: the citizen's PDF is unchanged at the start of the signed one.
    assert!(signed.starts_with(&original), "{ctx}");
    // The CMS of the answer is the one in the PDF, over the digest the browser sent.
    let cms = std::fs::read(s(&r["signature"])).unwrap();
    let digest = B64.decode(s(&r["result"]["hash"])).unwrap();
    esigd_pki::cms::verify_detached_digest(&cms, Some(&digest)).unwrap();
    assert!(
        signed
            .windows(64)
            .any(|w| w == hex::encode_upper(&cms[..32]).as_bytes()
                || w == hex::encode(&cms[..32]).as_bytes()),
        "the CMS is not in the PDF's /Contents"
    );
    // pyHanko, pdfsig and qpdf accept it; a changed byte of the text ("contract" on page one) is
    // caught.
    let at = signed.windows(8).position(|w| w == b"contract").unwrap();
    let file = check_pdf_signature(&signed, "Mari Maasikas", at, &anchors, &work.join("pades"));
    std::fs::copy(&file, pades_out.join("signed.pdf")).unwrap();
    // The validators' words next to the screenshots (for the documentation).
    let report = [
        format!(
            "$ pyhanko sign validate --pretty-print --trust ca.pem --trust-replace --no-revocation-check signed.pdf\n{}",
            pyhanko_validate_pdf(&file, &anchors.ca).accepted("pyHanko")
        ),
        format!("$ pdfsig signed.pdf\n{}", pdfsig(&file).accepted("pdfsig")),
        format!("$ qpdf --check signed.pdf\n{}", qpdf_check(&file).accepted("qpdf")),
    ]
    .join("\n");
    std::fs::write(pades_out.join("validation.txt"), report).unwrap();
    for name in ["01-eservice-start.png", "05-eservice-result.png"] {
        assert!(pades_out.join(name).is_file(), "{name} missing\n{ctx}");
    }
    assert_eq!(r["pageErrors"], serde_json::json!([]), "{ctx}");

    // XAdES, ASiC-E and JAdES: the document and its signature file, named after it; for ASiC-E
    // also the container the browser zipped around both.
    let text = "Lease agreement no. 42\nLandlord: Jaan Tamm\nTenant: Mari Maasikas\n";
    let doc = work.join("lease.txt");
    std::fs::write(&doc, text).unwrap();
    for (format, ext) in [
        ("XAdES", "xml"),
        ("ASIC", "signatures0.xml"),
        ("JWS", "json"),
    ] {
        let fout = out.join(format.to_lowercase());
        let r = env.drive(
            &fout,
            &[
                "--scenario",
                "happy",
                "--eservice",
                &url,
                "--user",
                "mari",
                "--document",
                doc.to_str().unwrap(),
                "--format",
                format,
            ],
        );
        let ctx = format!("{format}: report: {r:#}\n{}", env.diagnostics());
        assert_eq!(s(&r["formatChoice"]["defaultFormat"]), "CAdES", "{ctx}");
        assert_eq!(s(&r["choice"]["format"]), format, "{ctx}");
        // The document goes by name (a `doc` parameter), not as an anonymous hash.
        let docs = r["choice"]["docs"].as_array().unwrap();
        assert_eq!(docs.len(), 1, "{ctx}");
        assert!(s(&docs[0]).starts_with("lease.txt|text/plain|"), "{ctx}");
        assert!(r["choice"]["query"]["hash"].is_null(), "{ctx}");
        assert_eq!(r["callback"]["serverCheckOk"], "true", "{ctx}");
        assert_eq!(r["callback"]["browserCheckOk"], "true", "{ctx}");
        assert_eq!(
            s(&r["result"]["signature"]["name"]),
            format!("lease.txt.{ext}"),
            "{ctx}"
        );
        assert_eq!(s(&r["result"]["document"]["name"]), "lease.txt", "{ctx}");
        let kept = std::fs::read(s(&r["result"]["document"]["file"])).unwrap();
        assert_eq!(
            kept,
            text.as_bytes(),
            "the document the browser kept\n{ctx}"
        );
        let sig = std::fs::read(s(&r["result"]["signature"]["file"])).unwrap();
        let (signer, timestamp) = signer_and_timestamp(&r);
        let dir = work.join(format.to_lowercase());
        let docs = [DocFile::write(
            &dir.join("docs"),
            "lease.txt",
            "lease.txt",
            "text/plain",
            &kept,
        )];
        if format == "XAdES" {
            check_xml_signature(&sig, false, &docs, &signer, &timestamp, &anchors, &dir);
        } else if format == "ASIC" {
            assert_eq!(s(&r["result"]["container"]["name"]), "lease.asice", "{ctx}");
            let container = std::fs::read(s(&r["result"]["container"]["file"])).unwrap();
            // `mimetype` first, stored, no extra field: its name at byte 30, its value at 38.
            assert_eq!(&container[30..38], b"mimetype", "{ctx}");
            assert_eq!(
                &container[38..69],
                b"application/vnd.etsi.asic-e+zip",
                "{ctx}"
            );
            // What an independent ZIP reader (Python's zipfile) finds in it: the document as
            // the citizen had it, the manifest, and the signature esigd made.
            let unzipped = dir.join("unzipped");
            let out = std::process::Command::new("python3")
                .args([
                    "-c",
                    "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); \
                     assert z.testzip() is None; print('\\n'.join(z.namelist())); z.extractall(sys.argv[2])",
                ])
                .arg(s(&r["result"]["container"]["file"]))
                .arg(&unzipped)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .collect::<Vec<_>>(),
                [
                    "mimetype",
                    "lease.txt",
                    "META-INF/manifest.xml",
                    "META-INF/signatures0.xml"
                ],
                "{ctx}"
            );
            assert_eq!(std::fs::read(unzipped.join("lease.txt")).unwrap(), kept);
            let inside = std::fs::read(unzipped.join("META-INF/signatures0.xml")).unwrap();
            assert_eq!(inside, sig, "{ctx}");
            check_xml_signature(&inside, true, &docs, &signer, &timestamp, &anchors, &dir);
            digidoc_accepts(
                Path::new(s(&r["result"]["container"]["file"])),
                &dir.join("digidoc"),
                &ctx,
            );
        } else {
            check_jws_signature(&sig, "ES256", &docs, &signer, &timestamp, &anchors, &dir);
        }
        assert_eq!(r["pageErrors"], serde_json::json!([]), "{ctx}");
    }
    println!(
        "browser-flow artifacts (signed PDF, screenshots): {}",
        out.display()
    );
}
