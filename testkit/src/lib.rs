//! esigd-testkit: the helpers the tests and benchmarks share (a dev-dependency only).
//!
//! * the `esigd` binary, a daemon on free ports with its config file, `esigd init`, curl;
//! * [`api`]: the mTLS client of the e-Service API and openssl checks of what it returns;
//! * [`browser`]: Chromium and playwright-core present, the screenshots' artifacts folder;
//! * [`certcheck`]: openssl verify / ocsp and pkilint checks of issued certificates, openssl CSRs;
//! * [`device_ui`]: the reference device app with its web UI, and reads of its token;
//! * [`e2e`]: the example e-Service as a process, and runs of the Playwright drivers of `tests/e2e/`;
//! * [`formats_check`]: the validators of the five signature formats (xmlsec1, signxml, jwcrypto,
//!   `openssl ts`, pyHanko, pdfsig, qpdf) and a small PDF;
//! * [`idp`]: the development Identity BB (npm `oidc-provider`);
//! * [`pki`]: a throw-away openssl CA for client certificates;
//! * [`rscd`]: the reference Remote SCD service and device app as processes;
//! * [`scd_world`]: esigd, the Identity BB, the Remote SCD service and a device, together;
//! * [`venv`]: the Python venv of the independent validators (pkilint, pyHanko).
#![allow(missing_docs, clippy::unwrap_used)]

pub mod api;
pub mod browser;
pub mod certcheck;
pub mod device_ui;
pub mod e2e;
pub mod flood;
pub mod formats_check;
pub mod idp;
pub mod load;
pub mod onetime_env;
pub mod pki;
pub mod rscd;
pub mod scd_fleet;
pub mod scd_world;
pub mod soak;
pub mod validators;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use esigd_hsm::testing::{TestToken, softhsm_module};

/// The `esigd` binary next to the running test or bench (`target/<profile>/deps/<test>-<hash>`
/// → `target/<profile>/esigd`), or `$ESIGD_BIN`. Cargo builds it before the tests of the `esigd`
/// package and before any target that runs `cargo build --workspace` first.
pub fn esigd_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ESIGD_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().and_then(Path::parent).unwrap().join("esigd");
    assert!(
        p.is_file(),
        "{} missing: cargo build --workspace --all-targets --all-features",
        p.display()
    );
    p
}

/// The `esigd` binary under test.
pub fn esigd() -> Command {
    Command::new(esigd_binary())
}

/// The `esig` client binary next to the running test (built with the workspace), or `$ESIG_BIN`.
pub fn esig() -> Command {
    Command::new(rscd::sibling_binary("esig", "ESIG_BIN"))
}

/// Runs `cmd` to completion.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run esigd")
}

/// stdout followed by stderr, lossily decoded.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Writes `dir/esigd.toml` for `token` with `data_dir = dir/data`; `extra` is appended (TOML).
pub fn config(dir: &Path, token: &TestToken, extra: &str) -> PathBuf {
    let p = dir.join("esigd.toml");
    std::fs::write(
        &p,
        format!(
            "data_dir = {:?}\n[hsm]\nmodule = {:?}\ntoken = {:?}\npin = {{ file = {:?} }}\n{extra}",
            dir.join("data"),
            softhsm_module(),
            token.label,
            token.pin_file
        ),
    )
    .unwrap();
    p
}

/// A test e-Service `shop` (no real client certificate: only its pages are used) with callback
/// prefix `https://shop.example/cb/`, as a config file section.
pub const SHOP_ESERVICE: &str = r#"
[[eservice]]
id = "shop"
name = "Web Shop"
client_cert_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
allowed_ips = ["127.0.0.1/32"]
callback_prefixes = ["https://shop.example/cb/"]
"#;

/// `serve` on free ports for the public and the e-Service listener.
pub const SERVE: [&str; 5] = [
    "serve",
    "--public",
    "127.0.0.1:0",
    "--eservice",
    "127.0.0.1:0",
];

/// curl with `args`: (status, body).
pub fn curl(args: &[&str]) -> (u16, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let body = out.stdout;
    let split = body.iter().rposition(|b| *b == b'\n').unwrap();
    let code = std::str::from_utf8(&body[split + 1..])
        .unwrap()
        .parse()
        .unwrap();
    (code, body[..split].to_vec())
}

/// The PKIStatus (RFC 3161 §2.4.2: 0 granted, 1 grantedWithMods, 2 rejection, …) of a DER
/// TimeStampResp, or `None` when `der` is not one. Decoded with `der` against the RFC's outline
/// (`SEQUENCE { SEQUENCE { INTEGER status, … }, token OPTIONAL }`); x509-tsp 0.1 is not used
/// because its failInfo flags (cmpv2 0.2) decode bit 0 as two flags and refuse high bits.
pub fn tsa_pki_status(der: &[u8]) -> Option<u8> {
    use der::{Decode, Reader, SliceReader};
    let mut reader = SliceReader::new(der).ok()?;
    let status = reader
        .sequence(|resp| {
            let status = resp.sequence(|info| {
                let status = u8::decode(info)?;
                while !info.is_finished() {
                    der::Any::decode(info)?;
                }
                Ok(status)
            })?;
            Option::<der::Any>::decode(resp)?;
            Ok(status)
        })
        .ok()?;
    reader.finish(status).ok()
}

/// A running `esigd serve`; killed on drop.
pub struct Daemon {
    child: Child,
    /// `host:port` of the public listener, from the banner.
    pub public: String,
    /// `host:port` of the e-Service (mTLS) listener, from the banner.
    pub eservice: String,
    /// stdout up to and including the line `ready` (the banner).
    pub stdout: String,
    /// Where stderr (the log) goes, if not to a pipe.
    log: Option<PathBuf>,
}

impl Daemon {
    /// Starts `cmd` (which must include `serve …`) with stderr piped; waits up to 60 s for `ready`.
    pub fn start(cmd: Command) -> Daemon {
        Daemon::spawn(cmd, None, Duration::from_secs(60))
    }

    /// Starts `cmd` with stderr (the log) written to `log`; waits up to 90 s for `ready`.
    pub fn start_logged(cmd: Command, log: PathBuf) -> Daemon {
        Daemon::spawn(cmd, Some(log), Duration::from_secs(90))
    }

    fn spawn(mut cmd: Command, log: Option<PathBuf>, wait: Duration) -> Daemon {
        let err = match &log {
            Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
            None => Stdio::piped(),
        };
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("spawn esigd");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let deadline = Instant::now() + wait;
        let mut stdout = String::new();
        let mut public = None;
        let mut eservice = None;
        loop {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 || Instant::now() > deadline {
                let _ = child.kill();
                let err = match (&log, child.stderr.take()) {
                    (Some(p), _) => std::fs::read_to_string(p).unwrap_or_default(),
                    (None, Some(mut e)) => {
                        let mut s = String::new();
                        e.read_to_string(&mut s).unwrap();
                        s
                    }
                    (None, None) => String::new(),
                };
                panic!("esigd did not become ready:\n{stdout}\n{err}");
            }
            stdout.push_str(&line);
            if let Some(rest) = line.trim().strip_prefix("public listener    http://") {
                public = rest.split_whitespace().next().map(str::to_string);
            }
            if let Some(rest) = line.trim().strip_prefix("e-Service listener https://") {
                eservice = rest.split_whitespace().next().map(str::to_string);
            }
            if line.trim() == "ready" {
                break;
            }
        }
        // Keep draining stdout so the daemon never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        });
        Daemon {
            child,
            public: public.expect("public address printed"),
            eservice: eservice.expect("e-Service address printed"),
            stdout,
            log,
        }
    }

    /// `http://<public listener><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.public)
    }

    /// GET on the public listener with extra curl arguments: (status, body).
    pub fn get(&self, path: &str, extra: &[&str]) -> (u16, Vec<u8>) {
        let url = self.url(path);
        let mut args: Vec<&str> = extra.to_vec();
        args.push(&url);
        curl(&args)
    }

    /// The log so far (empty unless started with [`Daemon::start_logged`]).
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Sends `sig` to the daemon.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// SIGTERM; the exit status must be success (within 30 s).
    pub fn stop(mut self) {
        self.stop_in_place();
    }

    /// Stops this daemon like [`Daemon::stop`], then starts `cmd` in its place, logging to `log`.
    pub fn restart(&mut self, cmd: Command, log: PathBuf) {
        self.restart_after(cmd, log, || {});
    }

    /// Like [`Daemon::restart`], running `between` while no daemon runs.
    pub fn restart_after(&mut self, cmd: Command, log: PathBuf, between: impl FnOnce()) {
        self.stop_in_place();
        between();
        *self = Daemon::start_logged(cmd, log);
    }

    fn stop_in_place(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "esigd exited with {status}:\n{}",
                    self.log_text()
                );
                return;
            }
            assert!(Instant::now() < deadline, "esigd did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9` (if it still runs), reap, then start `cmd` in its place, logging to `log`; returns how
    /// long the new process took from spawn to its `ready` banner line.
    pub fn kill9_restart(&mut self, cmd: Command, log: PathBuf) -> Duration {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "esigd was killed, not exited: {status}");
        let started = Instant::now();
        *self = Daemon::start_logged(cmd, log);
        started.elapsed()
    }

    /// The daemon's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9` and reap.
    pub fn kill9(mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "esigd was killed, not exited: {status}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python virtualenv with the validators (pyHanko, pkilint): `$ESIGD_VENV`, else
/// `~/.cache/esigd-venv` (where `scripts/install-deps.sh --with-test-tools` puts it). Panics with
/// the fix when it is missing: validator checks are never skipped silently.
pub fn venv() -> PathBuf {
    let p = std::env::var_os("ESIGD_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/esigd-venv")))
        .expect("ESIGD_VENV or HOME is set");
    assert!(
        p.join("bin/python").exists(),
        "{} has no Python: run `scripts/install-deps.sh --with-test-tools`",
        p.display()
    );
    p
}

/// A free TCP port on 127.0.0.1 (bound, then released: for listeners whose address must be known
/// before they start, e.g. an OIDC redirect URI).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// `esigd --config <cfg> init`, asserting success; returns its output.
pub fn init(cfg: &Path) -> String {
    let o = esigd()
        .arg("--config")
        .arg(cfg)
        .arg("init")
        .output()
        .unwrap();
    assert!(o.status.success(), "esigd init: {}", text(&o));
    text(&o)
}
