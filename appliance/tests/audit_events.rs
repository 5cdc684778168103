//! Every user activity is an audit event (GovStack 6.6, issue #15): the browser signing flow (through the
//! pages without a browser, `tests/e2e/http-flow.mjs`, against the real OpenID provider), a failed login,
//! `POST /tsa`, a SIGHUP reload and an admin action each leave their events in `GET /v1/audit/log`, with
//! the request ID, the e-Service, the outcome and a leaf index; and `GET /v1/audit/proof/{signatureId}` of
//! a browser-flow signature returns the whole transaction, from `session.started` to `signature.fetched`.

#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use esigd_hsm::testing::TestToken;
use esigd_testkit::api::{mtls, sha256_of_cert};
use esigd_testkit::idp::{Idp, e2e_dir};
use esigd_testkit::pki::Ca;
use esigd_testkit::{Daemon, config, esigd, free_port, text};
use serde_json::Value;
use sha2::{Digest, Sha256};

const CALLBACK: &str = "https://shop.example.test/cb/";
const SECRET: &str = "esigd-audit-secret";

struct Env {
    dir: tempfile::TempDir,
    _token: TestToken,
    _idp: Idp,
    d: Daemon,
    public: String,
    ca: PathBuf,
    shop: (PathBuf, PathBuf),
    auditor: (PathBuf, PathBuf),
    cfg: PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let token = TestToken::create();
    let public = format!("127.0.0.1:{}", free_port());
    let idp = Idp::start_with(&serde_json::json!({
        "clients": [
            {"client_id": "esigd", "client_secret": SECRET,
             "token_endpoint_auth_method": "client_secret_basic",
             "redirect_uris": [format!("http://{public}/v1/oidc/callback")]}
        ]
    }));
    let ca = Ca::new(dir.path(), "eservice-ca");
    let server = ca.issue("server", "/CN=esigd.test", "server_ext", None);
    let shop = ca.issue("shop", "/CN=shop", "client_ext", None);
    let auditor = ca.issue("auditor", "/CN=auditor/O=Audit Office", "client_ext", None);
    let toml = format!(
        r#"
[tls]
cert = {server:?}
key = {server_key:?}
client_ca = {ca:?}

[ca]
base_url = "http://{public}"

[tsa]
allow_unsynchronized_clock = true

[identity]
issuer = {issuer:?}
client_id = "esigd"
client_secret = {{ env = "ESIGD_TEST_OIDC_SECRET" }}
[identity.claims]
default_country = "EE"

[[eservice]]
id = "shop"
name = "Web Shop"
client_cert_sha256 = {shop_fp:?}
allowed_ips = ["127.0.0.1/32"]
callback_prefixes = [{CALLBACK:?}]

[[auditor]]
name = "Audit Office"
client_cert_sha256 = {aud_fp:?}
allowed_ips = ["127.0.0.1/32"]
"#,
        server = server.0,
        server_key = server.1,
        ca = ca.pem(),
        issuer = idp.issuer,
        shop_fp = sha256_of_cert(&shop.0),
        aud_fp = sha256_of_cert(&auditor.0),
    );
    let cfg = config(dir.path(), &token, &toml);
    esigd_testkit::init(&cfg);
    let mut cmd = esigd();
    cmd.arg("--config")
        .arg(&cfg)
        .args(["serve", "--public", &public, "--eservice", "127.0.0.1:0"])
        .env("ESIGD_TEST_OIDC_SECRET", SECRET);
    let d = Daemon::start_logged(cmd, dir.path().join("esigd.log"));
    Env {
        ca: ca.pem(),
        dir,
        _token: token,
        _idp: idp,
        d,
        public,
        shop,
        auditor,
        cfg,
    }
}

impl Env {
    fn interactive_url(&self, digest: &[u8]) -> String {
        let mut u =
            url::Url::parse(&format!("http://{}/v1/sign/interactive", self.public)).unwrap();
        u.query_pairs_mut()
            .append_pair("serviceId", "shop")
            .append_pair("hash", &B64.encode(digest))
            .append_pair("hashType", "SHA2-256")
            .append_pair("format", "CAdES")
            .append_pair("dataToBeDisplayed", &URL_SAFE_NO_PAD.encode("Order 7"))
            .append_pair("callbackUrl", &format!("{CALLBACK}done"))
            .append_pair("state", "st-1")
            .append_pair("nonce", "no-1");
        u.to_string()
    }

    /// The browserless flow: the callback's parameters.
    fn flow(&self, start: &str, action: &str) -> Value {
        let out = Command::new("node")
            .arg(e2e_dir().join("http-flow.mjs"))
            .args([
                "--start",
                start,
                "--callback-prefix",
                CALLBACK,
                "--action",
                action,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n--- esigd ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.d.log_text()
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["params"].clone()
    }

    fn call(&self, who: &(PathBuf, PathBuf), method: &str, path: &str) -> (u16, Value) {
        let r = mtls(&self.d.eservice, &self.ca, Some(who), method, path, &[]);
        (
            r.status,
            serde_json::from_slice(&r.body).unwrap_or_default(),
        )
    }

    /// Every event of the audit log (as the auditor).
    fn log(&self) -> Vec<Value> {
        let (status, v) = self.call(&self.auditor, "GET", "/v1/audit/log?limit=1000");
        assert_eq!(status, 200, "{v}");
        v.as_array().unwrap().clone()
    }
}

fn events_of<'a>(log: &'a [Value], kind: &str) -> Vec<&'a Value> {
    log.iter().filter(|e| e["event"] == kind).collect()
}

/// The one event of `kind` in the transaction `id`.
fn one<'a>(log: &'a [Value], kind: &str, id: &str) -> &'a Value {
    let found: Vec<&Value> = log
        .iter()
        .filter(|e| e["event"] == kind && e["signatureId"] == id)
        .collect();
    assert_eq!(found.len(), 1, "{kind} of {id}: {log:#?}");
    found[0]
}

/// The fields every event of a page step has.
fn assert_step(e: &Value) {
    assert!(e["leafIndex"].as_u64().is_some(), "{e}");
    assert!(
        e["requestId"].as_str().is_some_and(|r| !r.is_empty()),
        "{e}"
    );
    assert_eq!(e["eservice"], "shop", "{e}");
    assert!(e["time"].as_str().is_some(), "{e}");
}

fn openssl(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within 20 s");
}

#[test]
fn every_user_activity_is_an_audit_event_and_a_transaction_proves_whole() {
    let env = env();
    let digest = Sha256::digest(b"Order 7: 1 bicycle");

    // 1. A signature through the signing pages, fetched by the e-Service.
    let params = env.flow(&env.interactive_url(&digest), "login");
    assert!(params.get("error").is_none(), "{params}");
    let id = params["signatureId"].as_str().unwrap().to_owned();
    let (status, fetched) = env.call(&env.shop, "GET", &format!("/v1/sign/response/{id}"));
    assert_eq!(status, 200, "{fetched}");

    let log = env.log();
    let started = one(&log, "session.started", &id);
    assert_step(started);
    assert_eq!(started["outcome"], "success");
    assert_eq!(started["digest"], hex::encode(digest), "{started}");
    let method = one(&log, "session.method", &id);
    assert_step(method);
    assert_eq!(method["signatureType"], "ONETIME", "{method}");
    let login = one(&log, "login.succeeded", &id);
    assert_step(login);
    assert_eq!(login["outcome"], "success");
    // No personal data in the login event (the user is Mari Maasikas, 47101010033 at the dev IdP),
    // only the keyed hash that signature.created carries too.
    let user_ref = login["userRef"]
        .as_str()
        .expect("login.succeeded has a userRef");
    assert_eq!(user_ref.len(), 64, "{login}");
    let mut without_ref = login.clone();
    without_ref.as_object_mut().unwrap().remove("userRef");
    let login_text = without_ref.to_string();
    assert!(
        !login_text.contains("Mari") && !login_text.contains("4710"),
        "{login_text}"
    );
    let cert = one(&log, "certificate.issued", &id);
    assert_step(cert);
    let created = one(&log, "signature.created", &id);
    assert_eq!(cert["certificateSerial"], created["certificateSerial"]);
    assert_eq!(created["userRef"].as_str(), Some(user_ref), "{created}");
    // The certificate in the ledger is the one in the signature (the CA is auditable like CT).
    let pem = fetched["certificate"].as_str().unwrap();
    let der = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>();
    let der = B64.decode(der).unwrap();
    assert_eq!(cert["certificateSha256"], hex::encode(Sha256::digest(&der)));
    let stamp = one(&log, "timestamp.issued", &id);
    assert_step(stamp);
    assert_eq!(stamp["tsaSerial"], created["tsaSerial"], "{stamp}");
    assert!(stamp["genTime"].as_str().is_some(), "{stamp}");
    assert_eq!(stamp["tokenSha256"].as_str().map(str::len), Some(64));
    let sent = one(&log, "callback.sent", &id);
    assert_step(sent);
    assert_eq!(sent["code"], "signed", "{sent}");
    one(&log, "signature.fetched", &id);
    // The key destruction stays in signature.created.
    assert!(created["keyDestroyed"]["keySha256"].as_str().is_some());

    // 2. The proof bundle of the transaction: the whole chain, for the e-Service that owns it.
    let (status, sth) = env.call(&env.auditor, "POST", "/v1/audit/sth");
    assert_eq!(status, 200, "{sth}");
    let (status, bundle) = env.call(&env.shop, "GET", &format!("/v1/audit/proof/{id}"));
    assert_eq!(status, 200, "{bundle}");
    let chain: Vec<String> = bundle["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let leaf = B64.decode(e["leaf"].as_str().unwrap()).unwrap();
            let v: Value = serde_json::from_slice(&leaf).unwrap();
            v["event"].as_str().unwrap().to_owned()
        })
        .collect();
    for kind in [
        "session.started",
        "session.method",
        "login.succeeded",
        "certificate.issued",
        "timestamp.issued",
        "signature.created",
        "callback.sent",
        "signature.fetched",
    ] {
        assert!(chain.iter().any(|k| k == kind), "{kind} in {chain:?}");
    }
    let pos = |k: &str| chain.iter().position(|c| c == k).unwrap();
    assert!(pos("session.started") < pos("session.method"), "{chain:?}");
    assert!(pos("session.method") < pos("login.succeeded"), "{chain:?}");
    assert!(
        pos("login.succeeded") < pos("signature.created"),
        "{chain:?}"
    );
    assert!(
        pos("signature.created") < pos("signature.fetched"),
        "{chain:?}"
    );

    // 3. A login cancelled at the Identity BB: login.failed, and the callback with the error.
    let params = env.flow(&env.interactive_url(&digest), "cancel");
    assert_eq!(params["error"], "access_denied", "{params}");
    let log = env.log();
    let failed = events_of(&log, "login.failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    let failed = failed[0];
    assert_step(failed);
    assert_eq!(failed["outcome"], "failure");
    assert_eq!(failed["message"], "access_denied");
    let txn = failed["signatureId"].as_str().unwrap();
    assert_ne!(txn, id);
    let back = one(&log, "callback.sent", txn);
    assert_eq!(back["code"], "access_denied", "{back}");
    assert_eq!(back["outcome"], "failure");
    one(&log, "session.started", txn);
    assert!(events_of(&log, "signature.created").len() == 1);

    // 4. POST /tsa: timestamp.issued with the token's serial.
    let w = env.dir.path();
    std::fs::write(w.join("doc.txt"), b"time-stamp me").unwrap();
    openssl(
        w,
        &[
            "ts", "-query", "-data", "doc.txt", "-sha256", "-cert", "-out", "q.tsq",
        ],
    );
    let out = Command::new("curl")
        .current_dir(w)
        .args([
            "-s",
            "-H",
            "Content-Type: application/timestamp-query",
            "--data-binary",
            "@q.tsq",
            "-o",
            "r.tsr",
            &format!("http://{}/tsa", env.public),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let reply = openssl(w, &["ts", "-reply", "-in", "r.tsr", "-text"]);
    let serial_line = reply
        .lines()
        .find(|l| l.trim_start().starts_with("Serial number:"))
        .unwrap_or_else(|| panic!("{reply}"));
    let serial_hex = serial_line
        .split(':')
        .nth(1)
        .unwrap()
        .trim()
        .trim_start_matches("0x");
    let serial = u64::from_str_radix(serial_hex, 16).unwrap();
    let imprint = hex::encode(Sha256::digest(b"time-stamp me"));
    let log = env.log();
    let stamps: Vec<&Value> = events_of(&log, "timestamp.issued")
        .into_iter()
        .filter(|e| e["tsaSerial"] == serial)
        .collect();
    assert_eq!(stamps.len(), 1, "serial {serial}: {log:#?}");
    assert_eq!(stamps[0]["digest"], imprint, "{}", stamps[0]);
    assert!(stamps[0]["leafIndex"].as_u64().is_some());
    assert!(stamps[0]["genTime"].as_str().is_some());

    // 5. A SIGHUP reload: config.reloaded with its outcome.
    env.d.signal(nix::sys::signal::Signal::SIGHUP);
    eventually("config.reloaded", || {
        env.log()
            .iter()
            .any(|e| e["event"] == "config.reloaded" && e["outcome"] == "success")
    });

    // 6. An admin action: admin.certificate.issued with the caller's uid.
    esigd_testkit::certcheck::ec_csr(w, "scd");
    let o = esigd()
        .arg("--config")
        .arg(&env.cfg)
        .args(["admin", "cert", "issue", "--csr"])
        .arg(w.join("scd.csr"))
        .arg("--claims")
        .arg(
            serde_json::json!({"given_name": "Juri", "family_name": "Juurikas",
                               "personal_identifier": "38001010008", "country": "EE"})
            .to_string(),
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let issued: Value = serde_json::from_slice(&o.stdout).unwrap();
    let log = env.log();
    let admin: Vec<&Value> = events_of(&log, "admin.certificate.issued");
    assert_eq!(admin.len(), 1, "{log:#?}");
    assert_eq!(admin[0]["certificateSerial"], issued["certificateId"]);
    assert_eq!(
        admin[0]["callerUid"].as_u64(),
        Some(u64::from(nix::unistd::getuid().as_raw()))
    );
    assert_eq!(admin[0]["outcome"], "success");
    let admin_text = admin[0].to_string();
    assert!(
        !admin_text.contains("Juri") && !admin_text.contains("38001010008"),
        "{admin_text}"
    );
}
