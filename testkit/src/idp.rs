//! The development Identity Building Block for tests: `tests/e2e/idp.mjs`, a real OpenID Connect provider
//! (npm `oidc-provider`) run with Node, and `tests/e2e/get-id-token.mjs`, which logs a user in without a
//! browser and returns a real ID token ([`Idp::id_token`]), or the ID token and the opaque access token of
//! one login ([`Idp::tokens`]; the IdP's introspection endpoint, `/token/introspection`, lets the built-in
//! `esigd` client read the access tokens of every client).
//!
//! Needs `node` and `tests/e2e/node_modules` (`scripts/install-deps.sh --with-test-tools`); without them the
//! tests fail (they are not skipped).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the IdP may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The repository root (`testkit/..`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit has a parent directory")
        .to_path_buf()
}

/// `tests/e2e` in the repository.
pub fn e2e_dir() -> PathBuf {
    repo_root().join("tests").join("e2e")
}

/// Panics with the fix if the npm packages of `tests/e2e` are not installed.
pub fn require_node_modules() {
    let marker = e2e_dir()
        .join("node_modules")
        .join("oidc-provider")
        .join("package.json");
    assert!(
        marker.is_file(),
        "{} is missing: run `scripts/install-deps.sh --with-test-tools` (it runs `npm ci --prefix tests/e2e`)",
        marker.display()
    );
}

fn node() -> Command {
    Command::new("node")
}

/// The ID token and the access token of one login (`get-id-token.mjs --json`).
#[derive(Debug, Clone)]
pub struct Tokens {
    /// The raw ID token (compact JWS).
    pub id_token: String,
    /// The access token: opaque, good for userinfo, introspectable, revocable by its client.
    pub access_token: String,
}

/// A running development IdP (`tests/e2e/idp.mjs`); killed and reaped on drop.
pub struct Idp {
    /// The issuer URL, e.g. `http://127.0.0.1:43123` (no trailing slash).
    pub issuer: String,
    child: Child,
    /// The IdP's stderr (one line per request) so far.
    log: Arc<Mutex<String>>,
    log_reader: Option<JoinHandle<()>>,
    /// The IdP's private signing keys (`idp.mjs --keys`), for forging tokens in tests.
    keys: PathBuf,
    _dir: tempfile::TempDir,
}

impl Idp {
    /// Starts the IdP with its built-in clients (`esigd`, `demo-eservice`) and users (`mari`, `juri`).
    pub fn start() -> Idp {
        Idp::start_with(&serde_json::json!({}))
    }

    /// Starts the IdP with `config` (`{"clients": [...], "users": [...]}`, added to the built-in ones) on a
    /// free port; waits up to 20 s for its ready line.
    pub fn start_with(config: &serde_json::Value) -> Idp {
        require_node_modules();
        let dir = tempfile::tempdir().expect("tempdir for the IdP config");
        let config_path = dir.path().join("idp.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(config).expect("serialize IdP config"),
        )
        .expect("write IdP config");

        let keys = dir.path().join("keys.json");
        let mut child = node()
            .arg(e2e_dir().join("idp.mjs"))
            .args(["--host", "127.0.0.1", "--port", "0", "--config"])
            .arg(&config_path)
            .arg("--keys")
            .arg(&keys)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `node` ({e}): run `scripts/install-deps.sh --with-test-tools` to install Node.js"
                )
            });

        // Drain stderr continuously (the IdP logs every request) into a shared buffer.
        let log = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr piped");
        let sink = Arc::clone(&log);
        let log_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });

        // Read the ready line on a thread so that the wait can time out; keep draining stdout afterwards.
        let out = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut out = BufReader::new(out);
            let mut line = String::new();
            let first = out.read_line(&mut line).map(|_| line);
            let _ = tx.send(first);
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        });

        let mut idp = Idp {
            issuer: String::new(),
            child,
            log,
            log_reader: Some(log_reader),
            keys,
            _dir: dir,
        };
        let line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(Ok(line)) if !line.is_empty() => line,
            Ok(Ok(_)) => idp.fail("exited before printing its ready line"),
            Ok(Err(e)) => idp.fail(&format!("stdout: {e}")),
            Err(_) => idp.fail(&format!("not ready within {READY_TIMEOUT:?}")),
        };
        let ready: serde_json::Value = match serde_json::from_str(line.trim()) {
            Ok(v) => v,
            Err(e) => idp.fail(&format!("bad ready line {line:?}: {e}")),
        };
        match (ready["ready"].as_bool(), ready["issuer"].as_str()) {
            (Some(true), Some(issuer)) => idp.issuer = issuer.to_string(),
            _ => idp.fail(&format!("bad ready line {line:?}")),
        }
        idp
    }

    /// Kills the IdP and panics with `why` and its stderr.
    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(h) = self.log_reader.take() {
            let _ = h.join();
        }
        panic!(
            "development IdP (tests/e2e/idp.mjs) failed to start: {why}\n--- its stderr ---\n{}",
            self.log()
        );
    }

    /// The IdP's stderr so far: one line per request (`METHOD /path STATUS`), plus errors.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// How many times the JWKS was served so far (`GET /jwks` lines of the log).
    pub fn jwks_fetches(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.starts_with("GET /jwks "))
            .count()
    }

    /// A JWT with exactly `header` and `claims`, made by `get-id-token.mjs --forge` with this IdP's
    /// keys: `alg` ES256 / RS256 signs with the IdP's own key of that type (`kid` defaults to its
    /// kid; `"kid": null` leaves it out), HS256 is an HMAC keyed with the PEM of the IdP's public
    /// ES256 key (key confusion), `none` has an empty signature.
    pub fn forge(&self, header: &serde_json::Value, claims: &serde_json::Value) -> String {
        let out = node()
            .arg(e2e_dir().join("get-id-token.mjs"))
            .arg("--forge")
            .arg("--keys")
            .arg(&self.keys)
            .args(["--header", &header.to_string()])
            .args(["--claims", &claims.to_string()])
            .stdin(Stdio::null())
            .output()
            .expect("run node tests/e2e/get-id-token.mjs --forge");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !stdout.trim().is_empty(),
            "get-id-token.mjs --forge failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout.trim().to_string()
    }

    /// Logs `user` (password `test`) in for the client with scope `openid profile national_id` and a random
    /// nonce; returns the raw ID token (compact JWS). Panics with the script's and the IdP's stderr on failure.
    pub fn id_token(
        &self,
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        user: &str,
    ) -> String {
        self.id_token_with_args(client_id, client_secret, redirect_uri, user, &[])
    }

    /// As [`Idp::id_token`], with extra `get-id-token.mjs` arguments (`--nonce N`, `--scope S`,
    /// `--password P`).
    pub fn id_token_with_args(
        &self,
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        user: &str,
        extra: &[&str],
    ) -> String {
        self.get_id_token(client_id, client_secret, redirect_uri, user, extra)
    }

    /// Logs `user` (password `test`) in for the client with scope `openid profile national_id`;
    /// returns the ID token and the access token of that one login. Panics on failure like
    /// [`Idp::id_token`].
    pub fn tokens(
        &self,
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        user: &str,
    ) -> Tokens {
        self.tokens_with_args(client_id, client_secret, redirect_uri, user, &[])
    }

    /// As [`Idp::tokens`], with extra `get-id-token.mjs` arguments (`--nonce N`, `--scope S`,
    /// `--password P`).
    pub fn tokens_with_args(
        &self,
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        user: &str,
        extra: &[&str],
    ) -> Tokens {
        let mut args = extra.to_vec();
        args.push("--json");
        let line = self.get_id_token(client_id, client_secret, redirect_uri, user, &args);
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("get-id-token.mjs --json printed no JSON object: {e}"));
        match (v["id_token"].as_str(), v["access_token"].as_str()) {
            (Some(id), Some(at)) => Tokens {
                id_token: id.to_string(),
                access_token: at.to_string(),
            },
            _ => panic!("get-id-token.mjs --json: no id_token / access_token"),
        }
    }

    /// Runs `get-id-token.mjs` for `user` at the client; its one line of output.
    fn get_id_token(
        &self,
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        user: &str,
        extra: &[&str],
    ) -> String {
        let out = node()
            .arg(e2e_dir().join("get-id-token.mjs"))
            .args(["--issuer", &self.issuer])
            .args(["--client-id", client_id])
            .args(["--client-secret", client_secret])
            .args(["--redirect-uri", redirect_uri])
            .args(["--user", user])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .expect("run node tests/e2e/get-id-token.mjs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !stdout.trim().is_empty(),
            "get-id-token.mjs for {user} at {client_id} failed ({}):\n{}\n--- IdP stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        stdout.trim().to_string()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
