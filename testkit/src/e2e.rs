//! The Node parts of the end-to-end tests: the example e-Service (`examples/eservice/server.mjs`)
//! as a process with its mutual-TLS client certificate, any Node server that prints one JSON
//! ready line, and a run of a Playwright driver of `tests/e2e/` for its one-line JSON report.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::idp::{e2e_dir, repo_root};

/// A Node process that prints one JSON line `{"ready":true,…}` on stdout; killed on drop.
pub struct NodeServer {
    child: Child,
    /// Its ready line.
    pub ready: Value,
    /// Its stderr.
    pub log: PathBuf,
}

impl NodeServer {
    /// Starts `cmd` with stderr to `log`; waits up to 20 s for the ready line (panics with the
    /// log otherwise). `what` names it in messages.
    pub fn start(mut cmd: Command, what: &str, log: PathBuf) -> NodeServer {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `node` ({e}): run `scripts/install-deps.sh --with-test-tools`")
            });
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut out = BufReader::new(out);
            let mut line = String::new();
            let _ = tx.send(out.read_line(&mut line).map(|_| line));
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        });
        let ready = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(l)) => serde_json::from_str::<Value>(l.trim()).ok(),
            _ => None,
        };
        match ready {
            Some(ready) if ready["ready"] == true => NodeServer { child, ready, log },
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{what} did not start:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the example e-Service reaches esigd and who it is there.
pub struct EServiceSetup<'a> {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// esigd's public listener (`http://…`): where it redirects the browser, where `esig.js` is.
    pub esigd_public: &'a str,
    /// esigd's e-Service listener (`host:port`): where it fetches signatures over mutual TLS.
    pub esigd_eservice: &'a str,
    /// Its client certificate and key (PEM).
    pub client: &'a (PathBuf, PathBuf),
    /// The CA of esigd's e-Service listener certificate.
    pub ca: &'a Path,
    /// Its `serviceId` at esigd.
    pub service_id: &'a str,
}

/// Starts `examples/eservice/server.mjs` with its TLS material copied under `dir/pki` and its
/// log in `dir.log`; checks it listens at `http://127.0.0.1:<port>/`.
pub fn start_example_eservice(dir: &Path, s: &EServiceSetup<'_>) -> NodeServer {
    std::fs::create_dir_all(dir.join("pki")).unwrap();
    for (from, to) in [
        (s.client.0.as_path(), "demo-eservice.pem"),
        (s.client.1.as_path(), "demo-eservice.key"),
        (s.ca, "eservice-client-ca.pem"),
    ] {
        std::fs::copy(from, dir.join("pki").join(to)).unwrap();
    }
    let mut cmd = Command::new("node");
    cmd.arg(repo_root().join("examples/eservice/server.mjs"))
        .args(["--port", &s.port.to_string(), "--host", "127.0.0.1"])
        .args(["--esigd-public", s.esigd_public])
        .args(["--esigd-api", &format!("https://{}", s.esigd_eservice)])
        .arg("--data")
        .arg(dir)
        .args(["--service-id", s.service_id]);
    let server = NodeServer::start(cmd, "the example e-Service", dir.with_extension("log"));
    assert_eq!(
        server.ready["url"].as_str(),
        Some(format!("http://127.0.0.1:{}/", s.port).as_str()),
        "{}",
        server.ready
    );
    server
}

/// Runs the driver `tests/e2e/<script>` with `--out out` and `args`; returns its JSON report
/// (the last stdout line) when it exited 0 with `"ok":true`, else panics with its output, where
/// the screenshots are, and `diagnostics()` (the logs of the parts). Prints how long it took.
pub fn drive(script: &str, out: &Path, args: &[&str], diagnostics: impl Fn() -> String) -> Value {
    let started = Instant::now();
    let o = Command::new("node")
        .arg(e2e_dir().join(script))
        .arg("--out")
        .arg(out)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run node tests/e2e/{script}: {e}"));
    println!(
        "{script} {}: {:.1} s",
        args.get(1).unwrap_or(&""),
        started.elapsed().as_secs_f64()
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let report = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str::<Value>(l).ok());
    match report {
        Some(r) if o.status.success() && r["ok"] == true => r,
        _ => panic!(
            "{script} {args:?} failed ({}); screenshots in {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n{}",
            o.status,
            out.display(),
            diagnostics()
        ),
    }
}
