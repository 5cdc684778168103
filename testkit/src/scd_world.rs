//! A whole Remote SCD world on real parts, for the tests of workflows 9.2.1 and 9.2.2: the
//! `esigd` binary on a SoftHSM token with `[scd]`, the npm `oidc-provider` Identity BB (an
//! `esigd` client that may introspect, an e-Service client), the `esigd-remote-scd` service and an
//! `esigd-device` in `--cli` mode with its own token.

use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::SystemTime;

use esigd_hsm::testing::TestToken;
use serde_json::{Value, json};

use crate::api::{Reply, mtls, sha256_of_cert};
use crate::idp::Idp;
use crate::pki::Ca;
use crate::rscd::{Device, PIN, Pki, Rscd, start_device, start_rscd};
use crate::{Daemon, config, esigd, free_port};

/// The e-Service's client ID at the Identity BB (its `id_token_audiences`).
pub const AUD: &str = "service-a";
/// Its client secret.
pub const SECRET: &str = "service-a-secret";
/// Its redirect URI.
pub const REDIRECT: &str = "http://127.0.0.1:9/cb";

/// Everything running.
pub struct World {
    /// Everything's files (esigd data in `data/`, logs `*.log`).
    pub dir: tempfile::TempDir,
    _token: TestToken,
    /// The Identity BB.
    pub idp: Idp,
    /// The CA of the e-Service listener's certificates.
    pub ca: PathBuf,
    /// The e-Service's client certificate and key (`svc-a`).
    pub client: (PathBuf, PathBuf),
    /// An auditor's client certificate and key.
    pub auditor: (PathBuf, PathBuf),
    _rscd: Rscd,
    /// The citizen's device.
    pub device: Device,
    /// The appliance.
    pub esigd: Daemon,
}

/// Starts everything; esigd's `scd.onboarding_timeout` and `scd.signing_timeout` are 8 s.
pub fn world() -> World {
    world_with(json!([]), "", "")
}

/// [`world`] with Identity BB `users` added (replacing a default one of the same login),
/// `eservice_extra` added to the `svc-a` entry and `extra_toml` to the end of esigd's
/// configuration (e.g. `[notifications]`).
pub fn world_with(users: Value, eservice_extra: &str, extra_toml: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let token = TestToken::create();
    let idp = Idp::start_with(&json!({
        "clients": [
            {"client_id": "esigd", "client_secret": "esigd-secret",
             "redirect_uris": ["http://127.0.0.1:9/esigd"], "introspect_any_token": true},
            {"client_id": AUD, "client_secret": SECRET, "redirect_uris": [REDIRECT]}
        ],
        "users": users
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
signing_timeout = "8s"

[[eservice]]
id = "svc-a"
name = "Land Registry"
client_cert_sha256 = {a_fp:?}
allowed_ips = ["127.0.0.1/32"]
id_token_audiences = ["{AUD}"]
callback_prefixes = ["https://land.example.test/cb/"]
{eservice_extra}

[[auditor]]
name = "Audit Office"
client_cert_sha256 = {aud_fp:?}
allowed_ips = ["127.0.0.1/32"]
{extra_toml}
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
    crate::init(&cfg);
    let mut cmd = esigd();
    cmd.arg("--config")
        .arg(&cfg)
        .args(crate::SERVE)
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
    pub fn create(&self, token: &str, slot: u32) -> JoinHandle<Reply> {
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
    pub fn on_screen(&self) -> Value {
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

    /// The log file `name` (`esigd.log`, `rscd.log`, `device.log`).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// Onboards key slot `slot` of the device for `token`'s citizen (the right code, PIN twice on
    /// first use); the `/v1/cert/create` answer.
    pub fn onboard(&mut self, token: &str, slot: u32) -> Value {
        let call = self.create(token, slot);
        let screen = self.on_screen();
        let tx = screen["transactionId"].as_str().unwrap().to_owned();
        let mut decision = json!({"transactionId": tx, "decision": "confirm",
            "choice": screen["vc"], "pin": PIN});
        if screen["choosePin"] == true {
            decision["pinAgain"] = PIN.into();
        }
        let sent = self.device.decide(decision);
        assert_eq!(sent["sent"], "OK", "{sent}");
        let r = call.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.message());
        r.json()
    }

    /// An mTLS call of the e-Service `svc-a` with extra curl arguments.
    pub fn call(&self, method: &str, path: &str, extra: &[&str]) -> Reply {
        mtls(
            &self.esigd.eservice,
            &self.ca,
            Some(&self.client),
            method,
            path,
            extra,
        )
    }
}
