//! The reference Remote SCD service (`esigd-remote-scd`) and device app (`esigd-device`) as real
//! processes: the development PKI made by `scripts/dev-rscd-pki.sh`, the service on free ports,
//! a device in `--cli` mode with its own SoftHSM token taking the citizen's decisions as JSON
//! lines on stdin, and `pkcs11-tool` reads of that token.
//!
//! The binaries are found next to the running test's directory (`target/<profile>/`, built by
//! `cargo build --workspace` or a whole-workspace `cargo nextest run`), or at
//! `$ESIGD_REMOTE_SCD_BIN` / `$ESIGD_DEVICE_BIN`.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::idp::repo_root;

/// The SoftHSM module the devices use.
pub const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The citizen's PIN in tests (distinctive, so that a log check cannot match by accident).
pub const PIN: &str = "739146";
/// A wrong PIN (as distinctive).
pub const WRONG_PIN: &str = "582937";

/// The workspace binary `name` next to the running test's directory, or `$env`.
pub fn sibling_binary(name: &str, env: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().and_then(Path::parent).unwrap().join(name);
    assert!(
        p.is_file(),
        "{} missing: cargo build --workspace (or cargo build -p {name}), or set {env}",
        p.display()
    );
    p
}

/// The `esigd-device` binary.
pub fn device_binary() -> PathBuf {
    sibling_binary("esigd-device", "ESIGD_DEVICE_BIN")
}

/// The `esigd-remote-scd` binary.
pub fn rscd_binary() -> PathBuf {
    sibling_binary("esigd-remote-scd", "ESIGD_REMOTE_SCD_BIN")
}

/// The development PKI, made by the script run-dev.sh uses.
pub struct Pki {
    /// Where the files are.
    pub dir: PathBuf,
}

impl Pki {
    /// Makes (or keeps) the PKI under `dir/pki`.
    pub fn new(dir: &Path) -> Pki {
        let dir = dir.join("pki");
        let out = Command::new(repo_root().join("scripts/dev-rscd-pki.sh"))
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dev-rscd-pki.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Pki { dir }
    }

    /// A file of the PKI (`rscd-ca.pem`, `esigd-rp.pem`, ...).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `esigd-remote-scd serve`.
pub struct Rscd {
    /// The process.
    pub proc: Proc,
    /// Port of the relying-party API (mutual TLS).
    pub rp_port: u16,
    /// Port of the device API.
    pub device_port: u16,
    /// Its stderr.
    pub log: PathBuf,
}

/// Starts `esigd-remote-scd serve` on the two ports with its journal in `state`, stderr to `log`.
pub fn start_rscd(pki: &Pki, state: &Path, rp_port: u16, device_port: u16, log: &Path) -> Rscd {
    let child = Command::new(rscd_binary())
        .arg("serve")
        .args(["--rp-listen", &format!("127.0.0.1:{rp_port}")])
        .arg("--rp-client-ca")
        .arg(pki.path("rscd-ca.pem"))
        .args(["--device-listen", &format!("127.0.0.1:{device_port}")])
        .arg("--cert")
        .arg(pki.path("rscd-server.pem"))
        .arg("--key")
        .arg(pki.path("rscd-server.key"))
        .arg("--state")
        .arg(state)
        .args(["--push-limit", "50"])
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(log).unwrap())
        .spawn()
        .unwrap();
    let rscd = Rscd {
        proc: Proc(child),
        rp_port,
        device_port,
        log: log.to_owned(),
    };
    wait_for_log(
        &rscd.log,
        "esigd-remote-scd serving",
        Duration::from_secs(30),
    );
    rscd
}

impl Rscd {
    /// `https://localhost:<rp port><path>`.
    pub fn rp_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.rp_port)
    }

    /// The device API's base URL.
    pub fn device_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.device_port)
    }
}

/// Waits until a line of the file `path` contains `needle`; that line.
pub fn wait_for_log(path: &Path, needle: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return line.to_owned();
        }
        assert!(
            start.elapsed() < limit,
            "{needle:?} not in {} after {limit:?}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `esigd-device run --cli`.
pub struct Device {
    _proc: Proc,
    stdin: ChildStdin,
    lines: mpsc::Receiver<Value>,
    /// Its device ID (`SCDRemoteId`).
    pub id: String,
    /// Its state directory.
    pub state: PathBuf,
    /// Its stderr.
    pub log: PathBuf,
}

/// Starts `esigd-device run --cli` (after `init` on first use of `state`), stderr to `log`.
pub fn start_device(pki: &Pki, rscd: &Rscd, state: &Path, log: &Path) -> Device {
    let bin = device_binary();
    if !state.join("softhsm2.conf").exists() {
        let out = Command::new(&bin)
            .args(["init", "--state"])
            .arg(state)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "esigd-device init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("SOFTHSM2_CONF="), "{stdout}");
    }
    let conf = std::fs::canonicalize(state.join("softhsm2.conf")).unwrap();
    let mut child = Command::new(&bin)
        .args(["run", "--cli", "--state"])
        .arg(state)
        .args(["--service", &rscd.device_url()])
        .arg("--service-ca")
        .arg(pki.path("rscd-ca.pem"))
        .args(["--module", SOFTHSM])
        .env("SOFTHSM2_CONF", &conf)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(File::create(log).unwrap())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("device stdout is not JSON ({e}): {line}"));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let proc = Proc(child);
    let line = wait_for_log(log, "device ID (SCDRemoteId): ", Duration::from_secs(30));
    let id = line
        .rsplit("device ID (SCDRemoteId): ")
        .next()
        .unwrap()
        .trim()
        .to_owned();
    Device {
        _proc: proc,
        stdin,
        lines,
        id,
        state: state.to_owned(),
        log: log.to_owned(),
    }
}

impl Device {
    /// The next line the device prints (a request on screen or the fate of a decision).
    pub fn next(&self) -> Value {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "no line from the device in 60 s; its log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )
            })
    }

    /// The next line within `wait`, if the device prints one.
    pub fn try_next(&self, wait: Duration) -> Option<Value> {
        self.lines.recv_timeout(wait).ok()
    }

    /// Waits for the request `tx` on screen.
    pub fn shown(&self, tx: &str) -> Value {
        let line = self.next();
        assert_eq!(line["transactionId"], tx, "{line}");
        assert!(line.get("type").is_some(), "{line}");
        line
    }

    /// Writes a decision line; the device's next line.
    pub fn decide(&mut self, decision: Value) -> Value {
        writeln!(self.stdin, "{decision}").unwrap();
        self.stdin.flush().unwrap();
        self.next()
    }

    /// Confirms `tx` with `pin` (and `pin_again` when choosing it); the device's next line.
    pub fn confirm(&mut self, tx: &str, pin: &str, pin_again: Option<&str>) -> Value {
        let mut d = serde_json::json!({"transactionId": tx, "decision": "confirm", "pin": pin});
        if let Some(again) = pin_again {
            d["pinAgain"] = again.into();
        }
        self.decide(d)
    }

    /// Labels of the certificates on the device's token (logged in with [`PIN`]).
    pub fn token_certificates(&self) -> Vec<String> {
        token_certificates(&self.state, PIN)
    }

    /// The DER SubjectPublicKeyInfo of each public key on the device's token (pkcs11-tool, an
    /// independent PKCS#11 client, logged in with [`PIN`]).
    pub fn token_public_keys(&self) -> Vec<Vec<u8>> {
        token_public_keys(&self.state, PIN)
    }
}

/// The device's own `softhsm2.conf` (absolute), made by `esigd-device init --state`.
pub fn softhsm_conf(state: &Path) -> PathBuf {
    std::fs::canonicalize(state.join("softhsm2.conf")).unwrap()
}

/// `pkcs11-tool` (OpenSC: a PKCS#11 client we did not write) on the device token of `state`,
/// logged in with `pin`, with `args`; stdout. Panics with the install hint when it is missing.
pub fn pkcs11_tool(state: &Path, pin: &str, args: &[&str]) -> String {
    let out = Command::new("pkcs11-tool")
        .args(["--module", SOFTHSM, "--login", "--pin", pin])
        .args(args)
        .env("SOFTHSM2_CONF", softhsm_conf(state))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run pkcs11-tool ({e}): run `scripts/install-deps.sh --with-test-tools` (Debian package `opensc`)")
        });
    assert!(
        out.status.success(),
        "pkcs11-tool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Labels of the certificates on the device token of `state` (`pkcs11-tool`, logged in with
/// `pin`).
pub fn token_certificates(state: &Path, pin: &str) -> Vec<String> {
    pkcs11_tool(state, pin, &["--list-objects", "--type", "cert"])
        .lines()
        .filter_map(|l| l.trim().strip_prefix("label:"))
        .map(|l| l.trim().to_owned())
        .collect()
}

/// The DER SubjectPublicKeyInfo of each public key on the device token of `state`, read with
/// `pkcs11-tool` logged in with `pin`.
pub fn token_public_keys(state: &Path, pin: &str) -> Vec<Vec<u8>> {
    let list = pkcs11_tool(state, pin, &["--list-objects", "--type", "pubkey"]);
    let out = state.join("pubkey.der");
    let out_arg = out.to_str().unwrap();
    list.lines()
        .filter_map(|l| l.trim().strip_prefix("label:"))
        .map(str::trim)
        .map(|label| {
            pkcs11_tool(
                state,
                pin,
                &[
                    "--read-object",
                    "--type",
                    "pubkey",
                    "--label",
                    label,
                    "--output-file",
                    out_arg,
                ],
            );
            std::fs::read(&out).unwrap()
        })
        .collect()
}
