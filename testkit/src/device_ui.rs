//! The reference device app (`esigd-device`) with its web UI, as a citizen uses it: a real
//! process registered with a running `esigd-remote-scd` ([`crate::rscd`]), its own SoftHSM token,
//! the phone-sized page on a free localhost port; and `pkcs11-tool` reads of that token with the
//! PIN the citizen chose.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::rscd::{Pki, Proc, Rscd, SOFTHSM, device_binary, wait_for_log};

/// A running `esigd-device run` serving its web UI; killed on drop.
pub struct DeviceUi {
    _proc: Proc,
    /// Its device ID (`SCDRemoteId`, e.g. `k7m2-9xqa-h3dz`), as printed on stderr.
    pub id: String,
    /// `http://127.0.0.1:<port>/`: the UI.
    pub ui: String,
    /// Its state directory (device key, token, processed requests).
    pub state: PathBuf,
    /// Its stderr (logged at debug level).
    pub log: PathBuf,
}

impl DeviceUi {
    /// `esigd-device init` (on first use of `state`), then `esigd-device run` against `rscd`'s
    /// device API with the UI on a free port, `SOFTHSM2_CONF` its own, `RUST_LOG=debug`, stderr
    /// to `log`; waits up to 30 s for its device ID and UI address.
    pub fn start(pki: &Pki, rscd: &Rscd, state: &Path, log: &Path) -> DeviceUi {
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
        }
        let child = Command::new(&bin)
            .args(["run", "--state"])
            .arg(state)
            .args(["--service", &rscd.device_url()])
            .arg("--service-ca")
            .arg(pki.path("rscd-ca.pem"))
            .args(["--ui", "127.0.0.1:0", "--module", SOFTHSM])
            .env("SOFTHSM2_CONF", softhsm_conf(state))
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(log).unwrap())
            .spawn()
            .unwrap();
        let proc = Proc(child);
        let limit = Duration::from_secs(30);
        let id = after(
            &wait_for_log(log, "device ID (SCDRemoteId): ", limit),
            "device ID (SCDRemoteId): ",
        );
        let ui = after(
            &wait_for_log(log, "device UI: http://", limit),
            "device UI: ",
        );
        DeviceUi {
            _proc: proc,
            id,
            ui,
            state: state.to_owned(),
            log: log.to_owned(),
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The DER SubjectPublicKeyInfo of each public key on the device's token.
    pub fn token_public_keys(&self, pin: &str) -> Vec<Vec<u8>> {
        token_public_keys(&self.state, pin)
    }
}

/// What follows `marker` in `line`, trimmed.
fn after(line: &str, marker: &str) -> String {
    line.rsplit(marker)
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
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
