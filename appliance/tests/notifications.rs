//! Notifications (GovStack 6.8) with real receivers: `tests/notify_receivers.py` runs an SMTP
//! server (aiosmtpd), an e-Service webhook receiver that verifies the JWS of every POST with
//! jwcrypto and the key it fetches from esigd's `GET /v1/notifications/jwks`, and an SMS
//! gateway; esigd runs as the binary with a SoftHSM token, the development Identity BB (users
//! with `email` and `phone_number` claims) and a registered e-Service with a `notify_url`.
//!
//! * `signature_and_failure_are_notified_on_every_channel`: a one-time signature reaches the
//!   webhook (signed, verified, with its signatureId), the citizen's mailbox and the SMS gateway;
//!   a signature that fails (the identity cannot make a certificate) is notified too; the
//!   `esigd_notify_*` metrics count the attempts and the outbox ends empty.
//! * `the_outbox_survives_kill_9`: with every receiver down, the rows are attempted and kept;
//!   esigd is killed with SIGKILL; restarted with the receivers up, it delivers each
//!   notification exactly once to each receiver (counted by `Idempotency-Key`).
//!
//! * `scd_signatures_and_status_changes_are_notified`: with the Remote SCD service and a
//!   device, an SCD signature and one refused on the device reach the webhook; the citizen's
//!   suspension of the certificate reaches the webhook of the e-Service that onboarded it and
//!   the citizen's mailbox.
//!
//! Needs `node` with `tests/e2e/node_modules` and the Python venv with aiosmtpd and jwcrypto
//! (`scripts/install-deps.sh --with-test-tools`); without them the tests fail with that hint.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use esigd_hsm::testing::TestToken;
use esigd_testkit::api::{Reply, mtls, sha256_of_cert};
use esigd_testkit::idp::{Idp, repo_root};
use esigd_testkit::pki::Ca;
use esigd_testkit::{Daemon, config, curl, esigd, free_port, venv};
use serde_json::{Value, json};

const AUD: &str = "service-a";
const SECRET: &str = "service-a-secret";
const REDIRECT: &str = "http://127.0.0.1:9/cb";
const MARI_EMAIL: &str = "mari.maasikas@example.test";
const MARI_PHONE: &str = "+372 5555 0101";

/// The receivers (`tests/notify_receivers.py`); killed on drop.
struct Receivers {
    child: Child,
    http: u16,
}

impl Receivers {
    fn start(http: u16, smtp: u16, jwks_url: &str) -> Receivers {
        let python = venv().join("bin/python");
        let mut child = Command::new(&python)
            .arg(repo_root().join("tests/notify_receivers.py"))
            .args(["--http-port", &http.to_string()])
            .args(["--smtp-port", &smtp.to_string()])
            .args(["--jwks-url", jwks_url])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "tests/notify_receivers.py did not start (aiosmtpd and jwcrypto missing? run \
             `scripts/install-deps.sh --with-test-tools`)"
        );
        Receivers { child, http }
    }

    /// Everything received so far.
    fn state(&self) -> Value {
        let (status, body) = curl(&[&format!("http://127.0.0.1:{}/state", self.http)]);
        assert_eq!(status, 200);
        serde_json::from_slice(&body).unwrap()
    }

    /// Waits up to 60 s for `done(state)`; the last state.
    fn wait(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.state();
            if done(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "{what} not received: {s:#}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// esigd's configuration, the Identity BB and the e-Service's client certificate.
struct Env {
    dir: tempfile::TempDir,
    _token: TestToken,
    idp: Idp,
    cfg: PathBuf,
    ca: PathBuf,
    client: (PathBuf, PathBuf),
    public: u16,
    http: u16,
    smtp: u16,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let token = TestToken::create();
        let idp = Idp::start_with(&json!({
            "clients": [{"client_id": AUD, "client_secret": SECRET, "redirect_uris": [REDIRECT],
                         "token_endpoint_auth_method": "client_secret_basic"}],
            "users": [
                {"login": "mari", "sub": "user-mari", "name": "Mari Maasikas", "given_name": "Mari",
                 "family_name": "Maasikas", "individual_id": "49005170001", "country": "EE",
                 "email": MARI_EMAIL, "email_verified": true, "phone_number": MARI_PHONE},
                // No country and no default_country: no certificate subject, the signature fails.
                {"login": "kati", "sub": "user-kati", "name": "Kati Karu",
                 "individual_id": "49105170002", "email": "kati@example.test"}
            ]
        }));
        let pki = Ca::new(dir.path(), "eservice-ca");
        let server = pki.issue("server", "/CN=esigd.test", "server_ext", None);
        let client = pki.issue("a", "/CN=service-a/O=Land Registry", "client_ext", None);
        let (public, http, smtp) = (free_port(), free_port(), free_port());
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

[notifications]
timeout = "3s"
retry_initial = "200ms"
retry_max = "1s"
poll_interval = "500ms"

[notifications.email]
host = "127.0.0.1"
port = {smtp}
security = "none"
from = "esigd <noreply@esigd.test>"

[notifications.sms]
url = "http://127.0.0.1:{http}/sms"
template = '{{"to":"{{phone}}","text":"{{text}}"}}'

[[eservice]]
id = "svc-a"
name = "Land Registry"
client_cert_sha256 = {a_fp:?}
allowed_ips = ["127.0.0.1/32"]
id_token_audiences = ["{AUD}"]
notify_url = "http://127.0.0.1:{http}/hook"
"#,
            server = server.0,
            server_key = server.1,
            ca = pki.pem(),
            issuer = idp.issuer,
            a_fp = sha256_of_cert(&client.0),
        );
        let cfg = config(dir.path(), &token, &toml);
        esigd_testkit::init(&cfg);
        Env {
            ca: pki.pem(),
            dir,
            _token: token,
            idp,
            cfg,
            client,
            public,
            http,
            smtp,
        }
    }

    /// `esigd serve` on the fixed public port (the receivers' JWKS URL) logging to `log`.
    fn start(&self, log: &str) -> Daemon {
        let mut cmd = esigd();
        cmd.arg("--config")
            .arg(&self.cfg)
            .args([
                "serve",
                "--public",
                &format!("127.0.0.1:{}", self.public),
                "--eservice",
                "127.0.0.1:0",
            ])
            .env("ESIGD_TEST_UNUSED_SECRET", "x");
        Daemon::start_logged(cmd, self.dir.path().join(log))
    }

    fn receivers(&self) -> Receivers {
        Receivers::start(
            self.http,
            self.smtp,
            &format!("http://127.0.0.1:{}/v1/notifications/jwks", self.public),
        )
    }

    /// `POST /v1/sign/onetime` after a fresh login of `user`.
    fn sign(&self, d: &Daemon, user: &str) -> Reply {
        let token = self.idp.id_token(AUD, SECRET, REDIRECT, user);
        let body = json!({
            "format": "CAdES",
            "hash": B64.encode([7u8; 32]),
            "hashType": "SHA2-256",
            "dataToBeDisplayed": "Consent form 1234",
            "requestTimestamp": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        });
        mtls(
            &d.eservice,
            &self.ca,
            Some(&self.client),
            "POST",
            "/v1/sign/onetime",
            &[
                "-H",
                &format!("X-GovStack-AuthenticationToken: {token}"),
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body.to_string(),
            ],
        )
    }
}

/// The value of the sample `name` (with its labels, e.g. `x{channel="sms"}`) in `/metrics`.
fn metric(d: &Daemon, sample: &str) -> f64 {
    let (status, body) = d.get("/metrics", &[]);
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{sample} not in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

/// The webhook POSTs (verified or not) whose event is of `kind`.
fn hooks<'a>(s: &'a Value, kind: &str) -> Vec<&'a Value> {
    s["webhook"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"]["type"] == kind)
        .collect()
}

#[test]
fn signature_and_failure_are_notified_on_every_channel() {
    let env = Env::new();
    let d = env.start("esigd.log");
    // The JWKS is published (jwcrypto in the receiver reads it).
    let (status, jwks) = d.get("/v1/notifications/jwks", &[]);
    assert_eq!(status, 200);
    let jwks: Value = serde_json::from_slice(&jwks).unwrap();
    let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_owned();
    assert_eq!(jwks["keys"][0]["crv"], "P-256");
    let rx = env.receivers();

    let reply = env.sign(&d, "mari");
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let signature_id = reply.json()["signatureId"].as_str().unwrap().to_owned();

    let s = rx.wait("the signature's webhook, e-mail and SMS", |s| {
        !hooks(s, "signature.created").is_empty()
            && !s["mail"].as_array().unwrap().is_empty()
            && !s["sms"].as_array().unwrap().is_empty()
    });
    // The webhook: signed with the published key (verified by jwcrypto), the signature's IDs,
    // the Idempotency-Key equal to the event's id, nothing personal.
    let hook = hooks(&s, "signature.created")[0];
    assert_eq!(hook["verified"], true, "{hook:#}");
    assert_eq!(hook["kid"], kid.as_str());
    assert_eq!(hook["typ"], "esigd-notification+json");
    let event = &hook["event"];
    assert_eq!(event["signatureId"], signature_id.as_str());
    assert_eq!(event["eserviceId"], "svc-a");
    assert_eq!(event["signatureType"], "ONETIME");
    assert_eq!(hook["key"], event["id"]);
    let text = event.to_string();
    assert!(
        !text.contains("Maasikas") && !text.contains(MARI_EMAIL),
        "{text}"
    );
    // The citizen's e-mail.
    let mail = &s["mail"][0];
    assert_eq!(mail["rcpt_tos"], json!([MARI_EMAIL]));
    assert_eq!(mail["mail_from"], "noreply@esigd.test");
    assert_eq!(mail["subject"], "Document signed for Land Registry");
    let body = mail["body"].as_str().unwrap();
    assert!(body.contains(&signature_id[..16]), "{body}");
    assert!(
        body.contains("You signed a document for Land Registry"),
        "{body}"
    );
    // The SMS gateway got the template filled in.
    let sms = &s["sms"][0];
    assert_eq!(sms["body"]["to"], MARI_PHONE);
    assert!(
        sms["body"]["text"]
            .as_str()
            .unwrap()
            .contains(&signature_id[..16]),
        "{sms:#}"
    );
    assert_eq!(sms["content_type"], "application/json");
    assert!(sms["key"].as_str().is_some_and(|k| k.len() == 32));

    // A signature that fails once started: no country for the certificate subject.
    let reply = env.sign(&d, "kati");
    assert_eq!(
        reply.status,
        422,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let s = rx.wait("the failure's webhook and e-mail", |s| {
        !hooks(s, "signature.failed").is_empty() && s["mail"].as_array().unwrap().len() >= 2
    });
    let failed = hooks(&s, "signature.failed")[0];
    assert_eq!(failed["verified"], true, "{failed:#}");
    assert_eq!(failed["event"]["error"], "signing_failed");
    assert_eq!(failed["event"]["eserviceId"], "svc-a");
    let mail = &s["mail"][1];
    assert_eq!(mail["rcpt_tos"], json!(["kati@example.test"]));
    assert_eq!(mail["subject"], "Signature for Land Registry not made");
    // kati has no phone_number: one SMS in all.
    assert_eq!(s["sms"].as_array().unwrap().len(), 1);

    // Every webhook verified, none repeated; the metrics count the deliveries; the outbox is
    // empty once the worker's next round has run.
    for h in s["webhook"].as_array().unwrap() {
        assert_eq!(h["verified"], true, "{h:#}");
        assert_eq!(h["repeat"], false, "{h:#}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&d, "esigd_notify_outbox_depth") != 0.0 {
        assert!(Instant::now() < deadline, "the outbox does not empty");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(metric(&d, r#"esigd_notify_attempts_total{channel="webhook"}"#) >= 2.0);
    assert!(metric(&d, r#"esigd_notify_attempts_total{channel="email"}"#) >= 2.0);
    assert!(metric(&d, r#"esigd_notify_attempts_total{channel="sms"}"#) >= 1.0);
    // The log never names the citizen's address or number.
    let log = d.log_text();
    assert!(
        !log.contains(MARI_EMAIL) && !log.contains("5555"),
        "contact data in the log"
    );
    d.stop();
}

#[test]
fn the_outbox_survives_kill_9() {
    let env = Env::new();
    let d = env.start("esigd-1.log");
    // Every receiver is down: the rows are attempted, fail and stay.
    let reply = env.sign(&d, "mari");
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let signature_id = reply.json()["signatureId"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    for channel in ["webhook", "email", "sms"] {
        while metric(
            &d,
            &format!(r#"esigd_notify_failures_total{{channel="{channel}"}}"#),
        ) < 1.0
        {
            assert!(
                Instant::now() < deadline,
                "no failed {channel} attempt:\n{}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(metric(&d, "esigd_notify_outbox_depth"), 3.0);
    d.kill9();

    // Receivers up, esigd back: the rows of the store are delivered.
    let rx = env.receivers();
    let d = env.start("esigd-2.log");
    let s = rx.wait("the notifications after the restart", |s| {
        !hooks(s, "signature.created").is_empty()
            && !s["mail"].as_array().unwrap().is_empty()
            && !s["sms"].as_array().unwrap().is_empty()
    });
    assert_eq!(
        hooks(&s, "signature.created")[0]["event"]["signatureId"],
        signature_id.as_str()
    );
    // Nothing more arrives: each notification exactly once per receiver, each with its own key.
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&d, "esigd_notify_outbox_depth") != 0.0 {
        assert!(Instant::now() < deadline, "the outbox does not empty");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let s = rx.state();
    let webhooks = s["webhook"].as_array().unwrap();
    assert_eq!(webhooks.len(), 1, "{s:#}");
    assert_eq!(webhooks[0]["verified"], true);
    assert_eq!(webhooks[0]["repeat"], false);
    assert_eq!(s["sms"].as_array().unwrap().len(), 1, "{s:#}");
    assert_eq!(s["mail"].as_array().unwrap().len(), 1, "{s:#}");
    assert_eq!(s["mail"][0]["rcpt_tos"], json!([MARI_EMAIL]));
    let keys: std::collections::HashSet<&str> = [&webhooks[0]["key"], &s["sms"][0]["key"]]
        .iter()
        .filter_map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys.len(),
        2,
        "each notification has its own Idempotency-Key"
    );
    d.stop();
}

#[test]
fn scd_signatures_and_status_changes_are_notified() {
    use esigd_testkit::rscd::PIN;
    use esigd_testkit::scd_world::{AUD, REDIRECT, SECRET, world_with};
    let (http, smtp) = (free_port(), free_port());
    let mut w = world_with(
        json!([{"login": "mari", "sub": "user-mari", "name": "Mari Maasikas", "given_name": "Mari",
                "family_name": "Maasikas", "individual_id": "49005170001", "country": "EE",
                "email": MARI_EMAIL}]),
        &format!("notify_url = \"http://127.0.0.1:{http}/hook\""),
        &format!(
            r#"
[notifications]
timeout = "3s"
retry_initial = "200ms"
retry_max = "1s"
poll_interval = "500ms"

[notifications.email]
host = "127.0.0.1"
port = {smtp}
security = "none"
from = "esigd <noreply@esigd.test>"
"#
        ),
    );
    let rx = Receivers::start(http, smtp, &w.esigd.url("/v1/notifications/jwks"));
    let mari = w.idp.tokens(AUD, SECRET, REDIRECT, "mari");
    let onboarded = w.onboard(&mari.access_token, 0);
    let pseudonym = onboarded["pseudonym"].as_str().unwrap().to_owned();
    let serial = onboarded["certificateId"].as_str().unwrap().to_owned();
    let sign = |w: &esigd_testkit::scd_world::World, n: u8| -> String {
        let t = w.call("GET", &format!("/v1/token/pseodonym/{pseudonym}"), &[]);
        assert_eq!(t.status, 200, "{}", t.message());
        let token = t.json()["jwt"].as_str().unwrap().to_owned();
        let body = json!({
            "format": "CAdES",
            "hash": B64.encode([n; 32]),
            "hashType": "SHA2-256",
            "dataToBeDisplayed": format!("Lease {n}"),
            "requestTimestamp": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        })
        .to_string();
        let r = w.call(
            "POST",
            "/v1/sign/pseudonym",
            &[
                "-H",
                &format!("X-Pseudonym-Token: {token}"),
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body,
            ],
        );
        assert_eq!(r.status, 200, "{}", r.message());
        r.json()["signatureId"].as_str().unwrap().to_owned()
    };
    // Signed on the device.
    let signed = sign(&w, 1);
    let tx = w.device.next()["transactionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(w.device.confirm(&tx, PIN, None)["sent"], "OK");
    // Refused on the device.
    let refused = sign(&w, 2);
    let tx = w.device.next()["transactionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = w
        .device
        .decide(json!({"transactionId": tx, "decision": "refuse"}));
    assert!(
        sent["sent"].as_str().unwrap().starts_with("USER_REFUSED"),
        "{sent}"
    );
    // Suspended by its owner through the e-Service.
    let again = w.idp.tokens(AUD, SECRET, REDIRECT, "mari");
    let r = w.call(
        "PATCH",
        &format!("/v1/cert/{serial}"),
        &[
            "-H",
            &format!("X-GovStack-AuthenticationToken: {}", again.id_token),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &json!({"status": {"code": "SUSPEND", "message": "lost phone"}}).to_string(),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.message());

    let s = rx.wait("the SCD signature, the refusal and the suspension", |s| {
        !hooks(s, "signature.created").is_empty()
            && !hooks(s, "signature.failed").is_empty()
            && !hooks(s, "certificate.status_changed").is_empty()
            && !s["mail"].as_array().unwrap().is_empty()
    });
    for h in s["webhook"].as_array().unwrap() {
        assert_eq!(h["verified"], true, "{h:#}");
        assert_eq!(h["repeat"], false, "{s:#}");
    }
    let created = &hooks(&s, "signature.created")[0]["event"];
    assert_eq!(created["signatureId"], signed.as_str());
    assert_eq!(created["signatureType"], "SCD");
    assert_eq!(created["certificateId"], serial.as_str());
    let failed = &hooks(&s, "signature.failed")[0]["event"];
    assert_eq!(failed["signatureId"], refused.as_str());
    assert_eq!(failed["error"], "access_denied");
    let changed = &hooks(&s, "certificate.status_changed")[0]["event"];
    assert_eq!(changed["certificateId"], serial.as_str());
    assert_eq!(changed["status"], "SUSPENDED");
    assert_eq!(changed["eserviceId"], "svc-a");
    // The citizen's mail of the suspension (SCD signatures have no login: no mail for them).
    let mails = s["mail"].as_array().unwrap();
    assert_eq!(mails.len(), 1, "{s:#}");
    assert_eq!(mails[0]["rcpt_tos"], json!([MARI_EMAIL]));
    assert_eq!(mails[0]["subject"], "Your signing certificate is suspended");
    assert!(
        mails[0]["body"]
            .as_str()
            .unwrap()
            .contains(&serial[..serial.len().min(16)]),
        "{s:#}"
    );
}
