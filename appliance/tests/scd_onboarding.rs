//! Workflow 9.2.1 through the API with every part real (issue 12): the `esigd` binary on a
//! SoftHSM token, the npm `oidc-provider` Identity BB (the e-Service passes the citizen's ACCESS
//! token; esigd introspects it), the `esigd-remote-scd` service over mutual TLS, and the
//! `esigd-device` app with its own SoftHSM token, answering in `--cli` mode as the citizen would.
//! The certificate is checked by `openssl verify -x509_strict`, pkilint and `openssl ocsp`, and
//! its key is read back from the device's token with `pkcs11-tool`.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::PathBuf;
use std::time::SystemTime;

use esigd_hsm::testing::TestToken;
use esigd_testkit::api::{Reply, mtls, sha256_of_cert};
use esigd_testkit::certcheck::{check_scd_certificate, ocsp, openssl};
use esigd_testkit::idp::Idp;
use esigd_testkit::pki::Ca;
use esigd_testkit::rscd::{Device, PIN, Pki, Rscd, start_device, start_rscd};
use esigd_testkit::{Daemon, config, esigd, free_port};
use serde_json::{Value, json};

const AUD: &str = "service-a";
const SECRET: &str = "service-a-secret";
const REDIRECT: &str = "http://127.0.0.1:9/cb";

struct World {
    dir: tempfile::TempDir,
    _token: TestToken,
    idp: Idp,
    ca: PathBuf,
    client: (PathBuf, PathBuf),
    auditor: (PathBuf, PathBuf),
    _rscd: Rscd,
    device: Device,
    esigd: Daemon,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let token = TestToken::create();
    let idp = Idp::start_with(&json!({
        "clients": [
            {"client_id": "esigd", "client_secret": "esigd-secret",
             "redirect_uris": ["http://127.0.0.1:9/esigd"], "introspect_any_token": true},
            {"client_id": AUD, "client_secret": SECRET, "redirect_uris": [REDIRECT]}
        ]
    }));
    let pki = Ca::new(dir.path(), "eservice-ca");
    let server = pki.issue("server", "/CN=esigd.test", "server_ext", None);
    let client = pki.issue("a", "/CN=service-a", "client_ext", None);
    let auditor = pki.issue("auditor", "/CN=auditor", "client_ext", None);
    // The Remote SCD service and the citizen's device, with the development PKI.
    let rscd_pki = Pki::new(dir.path());
    let rscd = start_rscd(
        &rscd_pki,
        &dir.path().join("rscd"),
        free_port(),
        free_port(),
        &dir.path().join("rscd.log"),
    );
    let device = start_device(
        &rscd_pki,
        &rscd,
        &dir.path().join("device"),
        &dir.path().join("device.log"),
    );
    let toml = format!(
        r#"
[tls]
cert = {server:?}
key = {server_key:?}
client_ca = {ca:?}

[ca]
# A public name in the CRL and OCSP links (pkilint refuses internal ones).
base_url = "http://esig.example.com"

[tsa]
allow_unsynchronized_clock = true

[identity]
issuer = {issuer:?}
client_id = "esigd"
client_secret = {{ env = "ESIGD_TEST_IDP_SECRET" }}
[identity.claims]
default_country = "EE"

[scd]
url = "https://localhost:{rp_port}"
client_cert = {rp:?}
client_key = {rp_key:?}
server_ca = {rscd_ca:?}
relying_party_uuid = "00000000-0000-4000-8000-000000000001"
relying_party_name = "Land Registry signing"
onboarding_timeout = "8s"

[[eservice]]
id = "svc-a"
name = "Land Registry"
client_cert_sha256 = {a_fp:?}
allowed_ips = ["127.0.0.1/32"]
id_token_audiences = ["{AUD}"]

[[auditor]]
name = "Audit Office"
client_cert_sha256 = {aud_fp:?}
allowed_ips = ["127.0.0.1/32"]
"#,
        server = server.0,
        server_key = server.1,
        ca = pki.pem(),
        issuer = idp.issuer,
        rp_port = rscd.rp_port,
        rp = rscd_pki.path("esigd-rp.pem"),
        rp_key = rscd_pki.path("esigd-rp.key"),
        rscd_ca = rscd_pki.path("rscd-ca.pem"),
        a_fp = sha256_of_cert(&client.0),
        aud_fp = sha256_of_cert(&auditor.0),
    );
    let cfg = config(dir.path(), &token, &toml);
    esigd_testkit::init(&cfg);
    let mut cmd = esigd();
    cmd.arg("--config")
        .arg(&cfg)
        .args(esigd_testkit::SERVE)
        .env("ESIGD_TEST_IDP_SECRET", "esigd-secret")
        .env("RUST_LOG", "debug");
    let esigd = Daemon::start_logged(cmd, dir.path().join("esigd.log"));
    World {
        ca: pki.pem(),
        dir,
        _token: token,
        idp,
        client,
        auditor,
        _rscd: rscd,
        device,
        esigd,
    }
}

impl World {
    /// `POST /v1/cert/create` without a CSR, in a thread (it waits for the device).
    fn create(&self, token: &str, slot: u32) -> std::thread::JoinHandle<Reply> {
        let body = json!({
            "SCDType": "REMOTE_SCD",
            "SCDRemoteId": self.device.id.to_uppercase(),
            "SCDKeyId": slot,
            "requestTimestamp": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        });
        let (addr, ca, client) = (
            self.esigd.eservice.clone(),
            self.ca.clone(),
            self.client.clone(),
        );
        let auth = format!("X-GovStack-AuthenticationToken: {token}");
        std::thread::spawn(move || {
            let body = body.to_string();
            mtls(
                &addr,
                &ca,
                Some(&client),
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
                    "60",
                ],
            )
        })
    }

    /// The onboarding request as the device shows it.
    fn on_screen(&self) -> Value {
        let screen = self.device.next();
        assert_eq!(screen["type"], "ONBOARD", "{screen}");
        assert_eq!(screen["rpName"], "Land Registry signing", "{screen}");
        assert!(
            screen["text"].as_str().unwrap().contains("Mari Maasikas"),
            "{screen}"
        );
        // The citizen picks the page's code out of three (the choice interaction).
        let choices = screen["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 3, "{screen}");
        assert!(choices.contains(&screen["vc"]), "{screen}");
        screen
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

#[test]
fn a_citizen_onboards_their_device_through_the_api() {
    let mut w = world();
    let mari = w.idp.tokens(AUD, SECRET, REDIRECT, "mari");

    // 1. The device is asked; the citizen picks the right code, accepts and chooses a PIN (twice).
    let call = w.create(&mari.access_token, 0);
    let screen = w.on_screen();
    let tx = screen["transactionId"].as_str().unwrap().to_owned();
    assert_eq!(screen["choosePin"], true, "{screen}");
    let sent = w
        .device
        .decide(json!({"transactionId": tx, "decision": "confirm",
        "choice": screen["vc"], "pin": PIN, "pinAgain": PIN}));
    assert_eq!(sent["sent"], "OK", "{sent}");
    let r = call.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.message());
    let v = r.json();
    let id = v["certificateId"].as_str().unwrap().to_owned();
    let pseudonym = v["pseudonym"].as_str().unwrap().to_owned();
    assert_eq!(pseudonym.len(), 14, "{pseudonym}");

    // The certificate: valid, linted, OCSP good, subject from the Identity BB, key = the device's.
    let cert = w.dir.path().join("scd.pem");
    std::fs::write(&cert, v["certificate"].as_str().unwrap()).unwrap();
    let esigd_ca = w.dir.path().join("data/pki/ca.pem");
    check_scd_certificate(&esigd_ca, &cert);
    let out = ocsp(
        &esigd_ca,
        &w.esigd.url("/ocsp"),
        &["-cert", cert.to_str().unwrap()],
        false,
    );
    assert!(out.contains(": good"), "{out}");
    let subject = openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-subject",
        "-nameopt",
        "RFC2253",
    ]);
    assert!(subject.contains("CN=Mari Maasikas"), "{subject}");
    let spki_der = w.dir.path().join("spki.der");
    openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-pubkey",
        "-out",
        w.dir.path().join("spki.pem").to_str().unwrap(),
    ]);
    openssl(&[
        "pkey",
        "-pubin",
        "-in",
        w.dir.path().join("spki.pem").to_str().unwrap(),
        "-outform",
        "DER",
        "-out",
        spki_der.to_str().unwrap(),
    ]);
    assert!(
        w.device
            .token_public_keys()
            .contains(&std::fs::read(&spki_der).unwrap()),
        "the certificate's key is the one in the device's token"
    );
    // 2. The same device and key slot again: refused at once (its certificate is active).
    let r = w.create(&mari.id_token, 0).join().unwrap();
    assert_eq!(r.status, 409, "{}", r.message());
    assert!(r.message().contains(&id), "{}", r.message());

    // 3. The citizen refuses on the device.
    let call = w.create(&mari.access_token, 1);
    let tx = w.on_screen()["transactionId"].as_str().unwrap().to_owned();
    let sent = w
        .device
        .decide(json!({"transactionId": tx, "decision": "refuse"}));
    assert!(
        sent["sent"].as_str().unwrap().starts_with("USER_REFUSED"),
        "{sent}"
    );
    let r = call.join().unwrap();
    assert_eq!(r.status, 403, "{}", r.message());
    assert!(r.message().contains("refused"), "{}", r.message());

    // 4. The citizen picks a code other than the page's.
    let call = w.create(&mari.access_token, 1);
    let screen = w.on_screen();
    let tx = screen["transactionId"].as_str().unwrap().to_owned();
    let wrong = screen["choices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| **c != screen["vc"])
        .unwrap()
        .clone();
    let sent = w
        .device
        .decide(json!({"transactionId": tx, "decision": "confirm", "choice": wrong, "pin": PIN}));
    assert_eq!(sent["sent"], "WRONG_VC", "{sent}");
    let r = call.join().unwrap();
    assert_eq!(r.status, 403, "{}", r.message());
    assert!(r.message().contains("verification code"), "{}", r.message());

    // 5. No answer from the device within scd.onboarding_timeout (8 s): 504.
    let call = w.create(&mari.access_token, 1);
    let _ = w.on_screen();
    let r = call.join().unwrap();
    assert_eq!(r.status, 504, "{}", r.message());

    // The service passed the certificate on to the device, which stored it in its token (it
    // fetches at its next poll, which the requests above have woken).
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while w.device.token_certificates().is_empty() {
        assert!(
            std::time::Instant::now() < until,
            "the certificate did not reach the device's token"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // The citizen has one certificate.
    let auth = format!("X-GovStack-AuthenticationToken: {}", mari.access_token);
    let list = mtls(
        &w.esigd.eservice,
        &w.ca,
        Some(&w.client),
        "GET",
        "/v1/cert/list",
        &["-H", &auth],
    );
    let list = list.json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["pseudonym"], pseudonym.as_str());

    // Each step is an audit event: 4 onboardings started, 3 refused (citizen, wrong code,
    // timeout), 1 certificate issued.
    let log = mtls(
        &w.esigd.eservice,
        &w.ca,
        Some(&w.auditor),
        "GET",
        "/v1/audit/log?limit=1000",
        &[],
    );
    assert_eq!(log.status, 200, "{}", log.message());
    let events = log.json();
    let count = |kind: &str| {
        events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == kind && e["eservice"] == "svc-a")
            .count()
    };
    assert_eq!(count("scd.onboarding.started"), 4, "{events}");
    assert_eq!(count("scd.onboarding.refused"), 3, "{events}");
    assert_eq!(count("scd.certificate.issued"), 1, "{events}");

    // The PIN is in no log of the three processes (all at debug level); nor are the tokens.
    w.esigd.signal(nix::sys::signal::Signal::SIGTERM);
    std::thread::sleep(std::time::Duration::from_millis(500));
    for name in ["esigd.log", "rscd.log", "device.log"] {
        let text = w.log(name);
        assert!(!text.is_empty(), "{name} is empty");
        assert!(!text.contains(PIN), "the PIN is in {name}");
        assert!(!text.contains(&mari.access_token), "a token is in {name}");
    }
}
