//! esigd with the one-time workflow (9.1) for API tests: a SoftHSM token, `esigd init` and
//! `esigd serve`, the development Identity BB (npm `oidc-provider`) issuing ID tokens for one
//! e-Service audience, and an openssl CA for the e-Service listener with the server certificate
//! and one e-Service client certificate (registered as `svc-a`, "Land Registry").

use std::path::PathBuf;

use esigd_hsm::testing::TestToken;
use serde_json::json;

use crate::api::{Reply, mtls, sha256_of_cert};
use crate::idp::Idp;
use crate::pki::Ca;
use crate::{Daemon, config, esigd};

/// The ID-token audience of the e-Service.
pub const AUD: &str = "service-a";
const SECRET: &str = "service-a-secret";
const REDIRECT: &str = "http://127.0.0.1:9/cb";

/// A running esigd with its Identity BB and one e-Service.
pub struct OneTimeEnv {
    /// The test's directory (`data/` is esigd's).
    pub dir: tempfile::TempDir,
    _token: TestToken,
    /// The Identity BB.
    pub idp: Idp,
    /// The CA of the e-Service listener's certificates (server and client).
    pub ca: PathBuf,
    /// The e-Service's client certificate and key (PEM paths).
    pub client: (PathBuf, PathBuf),
    /// The daemon (its listeners' addresses).
    pub daemon: Daemon,
    /// A registered auditor's client certificate and key (PEM paths).
    pub auditor: (PathBuf, PathBuf),
    /// The configuration file.
    pub cfg: PathBuf,
}

impl OneTimeEnv {
    /// Starts everything; the daemon logs to `esigd.log` in the test directory.
    pub fn start() -> OneTimeEnv {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = TestToken::create();
        let idp = Idp::start_with(&json!({
            "clients": [{"client_id": AUD, "client_secret": SECRET, "redirect_uris": [REDIRECT],
                         "token_endpoint_auth_method": "client_secret_basic"}]
        }));
        let pki = Ca::new(dir.path(), "eservice-ca");
        let server = pki.issue("server", "/CN=esigd.test", "server_ext", None);
        let client = pki.issue("a", "/CN=service-a/O=Land Registry", "client_ext", None);
        let auditor = pki.issue("auditor", "/CN=auditor/O=Audit Office", "client_ext", None);
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
            a_fp = sha256_of_cert(&client.0),
            aud_fp = sha256_of_cert(&auditor.0),
        );
        let cfg = config(dir.path(), &token, &toml);
        crate::init(&cfg);
        let daemon = Daemon::start_logged(serve(&cfg), dir.path().join("esigd.log"));
        OneTimeEnv {
            auditor,
            cfg,
            ca: pki.pem(),
            dir,
            _token: token,
            idp,
            client,
            daemon,
        }
    }

    /// Stops the daemon, runs `between` on the stopped data directory (`data/`), and starts the daemon
    /// again, logging to `log` in the test directory.
    pub fn restart(&mut self, log: &str, between: impl FnOnce(&std::path::Path)) {
        let cmd = serve(&self.cfg);
        let log = self.path(log);
        let data = self.path("data");
        // Stop first: the store is locked while the daemon runs.
        self.daemon.restart_after(cmd, log, || between(&data));
    }

    /// `kill -9` of the daemon (if it still runs), then a start in its place logging to `log` in the test
    /// directory; returns the new process's time from spawn to its `ready` banner line.
    pub fn kill9_restart(&mut self, log: &str) -> std::time::Duration {
        let cmd = serve(&self.cfg);
        let log = self.path(log);
        self.daemon.kill9_restart(cmd, log)
    }

    /// A call of the e-Service API over mutual TLS as the auditor.
    pub fn call_as_auditor(&self, method: &str, path: &str, extra: &[&str]) -> Reply {
        mtls(
            &self.daemon.eservice,
            &self.ca,
            Some(&self.auditor),
            method,
            path,
            extra,
        )
    }

    /// A fresh ID token of the Identity BB's user `user` for the e-Service (single use).
    pub fn id_token(&self, user: &str) -> String {
        self.idp.id_token(AUD, SECRET, REDIRECT, user)
    }

    /// A call of the e-Service API over mutual TLS (curl arguments in `extra`).
    pub fn call(&self, method: &str, path: &str, extra: &[&str]) -> Reply {
        mtls(
            &self.daemon.eservice,
            &self.ca,
            Some(&self.client),
            method,
            path,
            extra,
        )
    }

    /// `POST /v1/sign/onetime` with `body`, after a fresh login of `mari`.
    pub fn post(&self, body: &serde_json::Value) -> Reply {
        let auth = format!("X-GovStack-AuthenticationToken: {}", self.id_token("mari"));
        self.call(
            "POST",
            "/v1/sign/onetime",
            &[
                "-H",
                &auth,
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body.to_string(),
            ],
        )
    }

    /// A path in the test directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn serve(cfg: &std::path::Path) -> std::process::Command {
    let mut cmd = esigd();
    cmd.arg("--config")
        .arg(cfg)
        .args(crate::SERVE)
        .env("ESIGD_TEST_UNUSED_SECRET", "x");
    cmd
}
