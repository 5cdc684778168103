//! The reference device app (`esigd-device`) with its web UI, as a citizen uses it: a real
//! process registered with a running `esigd-remote-scd` ([`crate::rscd`]), its own SoftHSM token,
//! the phone-sized page on a free localhost port; and `pkcs11-tool` reads of that token with the
//! PIN the citizen chose.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::rscd::{
    Pki, Proc, Rscd, SOFTHSM, device_binary, softhsm_conf, token_public_keys, wait_for_log,
};

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
