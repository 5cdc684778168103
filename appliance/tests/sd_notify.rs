//! `esigd serve` under a stand-in for systemd (issue #16): a datagram socket as `NOTIFY_SOCKET`,
//! `WATCHDOG_USEC`, and the HSM PIN as a credential in `CREDENTIALS_DIRECTORY`, the way
//! `systemd/esigd.service` starts it (`esigd --config <file> serve`, as user `esigd` when the
//! test runs as root). Checks READY=1 (only with both listeners accepting), STATUS=, the watchdog
//! pings, RELOADING=1/READY=1 around SIGHUP, STOPPING=1 and a clean exit on SIGTERM; and that the
//! pings stop while the store's writer thread is frozen (ptrace), and resume after.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use esigd_hsm::testing::softhsm_module;
use esigd_testkit::pki::Ca;
use esigd_testkit::{SHOP_ESERVICE, esigd_binary, free_port, text};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Pid, Uid, User};

/// `WATCHDOG_USEC` of the main test: a ping every 2 s, each after a probe that answered within
/// 1 s (a synced RocksDB commit on a busy CI disk stays well inside that).
const WATCHDOG: Duration = Duration::from_secs(4);
/// `WATCHDOG_USEC` of the frozen-store test: quick to stop and resume.
const SHORT_WATCHDOG: Duration = Duration::from_secs(2);
const PIN: &str = "246810";

/// A throw-away appliance: SoftHSM token directory of its own, PIN credential, TLS files, config,
/// `esigd init` done; everything owned by the user the daemon runs as.
struct Setup {
    dir: tempfile::TempDir,
    bin: PathBuf,
    cfg: PathBuf,
    /// `Some` when the test runs as root: the daemon runs as `esigd`.
    user: Option<(Uid, Gid)>,
}

/// The `esigd` system user, created from `systemd/sysusers.d/esigd.conf` when missing.
fn esigd_user() -> (Uid, Gid) {
    if let Some(u) = User::from_name("esigd").unwrap() {
        return (u.uid, u.gid);
    }
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/sysusers.d/esigd.conf");
    match Command::new("systemd-sysusers").arg(&conf).output() {
        Ok(o) => assert!(o.status.success(), "systemd-sysusers: {}", text(&o)),
        // Without systemd-sysusers: what that file says, with useradd.
        Err(_) => {
            let o = Command::new("useradd")
                .args(["--system", "--user-group", "--no-create-home"])
                .args([
                    "--home-dir",
                    "/var/lib/esigd",
                    "--shell",
                    "/usr/sbin/nologin",
                ])
                .args([
                    "--comment",
                    "esigd eSignature trust-service appliance",
                    "esigd",
                ])
                .output()
                .unwrap();
            assert!(
                o.status.success() || User::from_name("esigd").unwrap().is_some(),
                "useradd: {}",
                text(&o)
            );
        }
    }
    let u = User::from_name("esigd")
        .unwrap()
        .unwrap_or_else(|| panic!("no user esigd after applying {}", conf.display()));
    (u.uid, u.gid)
}

fn chown_tree(p: &Path, uid: Uid, gid: Gid) {
    std::os::unix::fs::lchown(p, Some(uid.as_raw()), Some(gid.as_raw())).unwrap();
    if p.is_dir() && !p.is_symlink() {
        for e in std::fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // A token directory for the daemon alone (not the test runner's: the daemon may run as
        // another user), initialised by softhsm2-util.
        std::fs::create_dir(root.join("tokens")).unwrap();
        std::fs::write(
            root.join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                root.join("tokens").display()
            ),
        )
        .unwrap();
        let o = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", root.join("softhsm2.conf"))
            .args(["--init-token", "--free", "--label", "sd-notify"])
            .args(["--so-pin", "so-secret-1", "--pin", PIN])
            .output()
            .unwrap();
        assert!(o.status.success(), "softhsm2-util: {}", text(&o));
        // The PIN as systemd's LoadCredential= hands it over.
        std::fs::create_dir(root.join("creds")).unwrap();
        std::fs::write(root.join("creds/hsm-pin"), format!("{PIN}\n")).unwrap();
        let ca = Ca::new(root, "eservice-ca");
        let (cert, key) = ca.issue("server", "/CN=esigd.test", "server_ext", None);
        let cfg = root.join("esigd.toml");
        std::fs::write(
            &cfg,
            format!(
                "data_dir = {:?}\n[hsm]\nmodule = {:?}\ntoken = \"sd-notify\"\npin = {{ credential = \"hsm-pin\" }}\n\
                 [tls]\ncert = {cert:?}\nkey = {key:?}\nclient_ca = {:?}\n\
                 [tsa]\nallow_unsynchronized_clock = true\n{SHOP_ESERVICE}",
                root.join("data"),
                softhsm_module(),
                ca.pem()
            ),
        )
        .unwrap();
        let (bin, user) = if nix::unistd::geteuid().is_root() {
            let (uid, gid) = esigd_user();
            // The build directory may be private to root: a copy the esigd user can execute.
            std::fs::create_dir(root.join("bin")).unwrap();
            let bin = root.join("bin/esigd");
            std::fs::copy(esigd_binary(), &bin).unwrap();
            chmod(&bin, 0o755);
            chown_tree(root, uid, gid);
            (bin, Some((uid, gid)))
        } else {
            (esigd_binary(), None)
        };
        chmod(&root.join("creds/hsm-pin"), 0o400);
        chmod(&root.join("creds"), 0o500);
        let s = Setup {
            dir,
            bin,
            cfg,
            user,
        };
        let o = s.esigd().arg("init").output().unwrap();
        assert!(o.status.success(), "esigd init: {}", text(&o));
        s
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `esigd --config <file>` with the unit's environment (credentials, token directory), as
    /// the daemon's user.
    fn esigd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--config")
            .arg(&self.cfg)
            .env("SOFTHSM2_CONF", self.path("softhsm2.conf"))
            .env("CREDENTIALS_DIRECTORY", self.path("creds"))
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("ESIGD_CONFIG")
            .current_dir(self.dir.path());
        if let Some((uid, gid)) = self.user {
            c.uid(uid.as_raw()).gid(gid.as_raw());
        }
        c
    }

    /// Binds the stand-in for systemd's notification socket (writable by the daemon's user).
    fn notify_socket(&self) -> (PathBuf, UnixDatagram) {
        let p = self.path("notify.sock");
        let sock = UnixDatagram::bind(&p).unwrap();
        if let Some((uid, gid)) = self.user {
            std::os::unix::fs::lchown(&p, Some(uid.as_raw()), Some(gid.as_raw())).unwrap();
        }
        (p, sock)
    }

    /// Starts `esigd --config <file> serve` on two free ports with `NOTIFY_SOCKET` and
    /// `WATCHDOG_USEC = watchdog` set, reading the notifications as they come.
    fn serve(&self, watchdog: Duration) -> Daemon {
        let (sock_path, sock) = self.notify_socket();
        let public: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let eservice: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = self.path("esigd.log");
        let mut child = self
            .esigd()
            .arg("serve")
            .arg("--public")
            .arg(public.to_string())
            .arg("--eservice")
            .arg(eservice.to_string())
            .env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", watchdog.as_micros().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        });
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok(n) = sock.recv(&mut buf) else { return };
                let at = Instant::now();
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                // At the moment READY=1 arrives, both listeners must accept connections.
                let listeners_up = text.lines().any(|l| l == "READY=1")
                    && [public, eservice]
                        .iter()
                        .all(|a| TcpStream::connect_timeout(a, Duration::from_secs(1)).is_ok());
                if tx
                    .send(Note {
                        at,
                        text,
                        listeners_up,
                    })
                    .is_err()
                {
                    return;
                }
            }
        });
        Daemon {
            child,
            log,
            rx,
            seen: Vec::new(),
        }
    }
}

/// One notification as received.
#[derive(Debug, Clone)]
struct Note {
    at: Instant,
    text: String,
    /// For READY=1: whether both listeners accepted a TCP connection right then.
    listeners_up: bool,
}

impl Note {
    fn has(&self, line: &str) -> bool {
        self.text.lines().any(|l| l == line)
    }
    fn field(&self, key: &str) -> Option<&str> {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    }
}

struct Daemon {
    child: Child,
    log: PathBuf,
    rx: Receiver<Note>,
    /// Every notification received so far.
    seen: Vec<Note>,
}

impl Daemon {
    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Receives notifications until one satisfies `pred`; returns those received meanwhile,
    /// the match last.
    fn until(&mut self, within: Duration, what: &str, pred: impl Fn(&Note) -> bool) -> Vec<Note> {
        let end = Instant::now() + within;
        let mut got = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(n) => {
                    self.seen.push(n.clone());
                    let done = pred(&n);
                    got.push(n);
                    if done {
                        return got;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    let exited = self.child.try_wait().unwrap();
                    panic!(
                        "no {what} within {within:?} (esigd exited: {exited:?}); received: {got:#?}\nlog:\n{}",
                        self.log_text()
                    );
                }
            }
        }
    }

    /// Everything received during `for_`.
    fn during(&mut self, for_: Duration) -> Vec<Note> {
        let end = Instant::now() + for_;
        let mut got = Vec::new();
        while let Ok(n) = self
            .rx
            .recv_timeout(end.saturating_duration_since(Instant::now()))
        {
            self.seen.push(n.clone());
            got.push(n);
        }
        got
    }

    fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).unwrap();
    }

    /// SIGTERM; the exit must be clean, within 30 s. Returns the notifications sent meanwhile.
    fn stop(&mut self) -> Vec<Note> {
        self.signal(Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < end, "esigd did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "esigd exited with {status}:\n{}",
            self.log_text()
        );
        // The datagrams sent before the exit are queued in the socket.
        self.during(Duration::from_millis(500))
    }

    /// The uid the daemon runs as.
    fn uid(&self) -> u32 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pings(notes: &[Note]) -> Vec<&Note> {
    notes.iter().filter(|n| n.has("WATCHDOG=1")).collect()
}

#[test]
fn notifies_systemd_of_start_status_watchdog_reload_and_stop() {
    let s = Setup::new();
    let mut d = s.serve(WATCHDOG);
    let t0 = Instant::now();

    // READY=1 once both listeners accept connections; before it at most STATUS= lines.
    let start = d.until(Duration::from_secs(90), "READY=1", |n| n.has("READY=1"));
    let ready = start.last().unwrap().clone();
    assert!(
        ready.listeners_up,
        "READY=1 came before both listeners accepted connections: {ready:?}"
    );
    for n in &start[..start.len() - 1] {
        assert!(
            n.text.lines().all(|l| l.starts_with("STATUS=")),
            "before READY=1: {n:?}"
        );
    }
    if let Some((uid, _)) = s.user {
        assert_eq!(d.uid(), uid.as_raw(), "the daemon must run as esigd");
    }
    // STATUS= with what the daemon knows: HSM session pool and clock.
    let status = ready.field("STATUS").unwrap_or_default().to_string();
    assert!(
        status.starts_with("serving; ")
            && status.contains(" HSM sessions (")
            && status.contains("clock "),
        "{ready:?}"
    );
    eprintln!("READY=1 after {:?}: STATUS={status}", ready.at - t0);

    // Watchdog pings, each within the interval of the one before.
    let mut last = ready.at;
    for i in 0..4 {
        let got = d.until(WATCHDOG * 2, "WATCHDOG=1", |n| n.has("WATCHDOG=1"));
        let ping = got.last().unwrap();
        assert!(
            ping.at - last < WATCHDOG,
            "ping {i} came {:?} after the previous one (WATCHDOG_USEC = {WATCHDOG:?})",
            ping.at - last
        );
        last = ping.at;
    }

    // SIGHUP: RELOADING=1 with the CLOCK_MONOTONIC time of the reload, then READY=1.
    let before = esigd::notify::monotonic_usec();
    d.signal(Signal::SIGHUP);
    let got = d.until(Duration::from_secs(10), "RELOADING=1", |n| {
        n.has("RELOADING=1")
    });
    let after = esigd::notify::monotonic_usec();
    let reloading = got.last().unwrap().clone();
    let usec: u64 = reloading
        .field("MONOTONIC_USEC")
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC=: {reloading:?}"))
        .parse()
        .unwrap();
    assert!(
        (before..=after).contains(&usec),
        "MONOTONIC_USEC={usec} is not the reload's time ({before}..={after})"
    );
    let got = d.until(Duration::from_secs(10), "READY=1 after the reload", |n| {
        n.has("READY=1")
    });
    assert_eq!(
        got.last().unwrap().field("STATUS"),
        Some("serving; configuration reloaded (e-Services: 1, auditors: 0)")
    );
    assert!(d.log_text().contains("configuration reloaded"));

    // A file that does not validate: the reload is refused, and systemd still hears READY=1.
    let good = std::fs::read_to_string(&s.cfg).unwrap();
    std::fs::write(&s.cfg, format!("{good}\ncolour = \"blue\"\n")).unwrap();
    d.signal(Signal::SIGHUP);
    d.until(Duration::from_secs(10), "RELOADING=1", |n| {
        n.has("RELOADING=1")
    });
    let got = d.until(
        Duration::from_secs(10),
        "READY=1 after the refused reload",
        |n| n.has("READY=1"),
    );
    let st = got.last().unwrap().field("STATUS").unwrap_or_default();
    assert!(
        st.contains("reload refused") && st.contains("colour"),
        "{st}"
    );
    std::fs::write(&s.cfg, good).unwrap();

    // Pings go on after the reloads; the status returns to the probe's line.
    let got = d.until(WATCHDOG * 2, "WATCHDOG=1", |n| n.has("WATCHDOG=1"));
    assert!(
        got.iter().any(|n| n
            .field("STATUS")
            .is_some_and(|s| s.starts_with("serving; "))),
        "{got:?}"
    );

    // SIGTERM: STOPPING=1, clean exit.
    let got = d.stop();
    assert!(got.iter().any(|n| n.has("STOPPING=1")), "{got:?}");
    let after_stop: Vec<_> = got
        .iter()
        .skip_while(|n| !n.has("STOPPING=1"))
        .filter(|n| n.has("READY=1"))
        .collect();
    assert!(after_stop.is_empty(), "{got:?}");
    let log = d.log_text();
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        !log.contains("watchdog: not pinging"),
        "no probe may have failed: {log}"
    );
}

/// The writer thread of the store is frozen with ptrace (as a hung fsync would leave it): the
/// probe's commit is never acknowledged, the pings stop within the interval, STATUS= and the log
/// say why; once the thread runs again, the pings resume.
#[test]
fn watchdog_pings_stop_while_the_store_does_not_answer() {
    use nix::sys::ptrace;
    use nix::sys::wait::{WaitPidFlag, waitpid};

    const WATCHDOG: Duration = SHORT_WATCHDOG;
    let s = Setup::new();
    let mut d = s.serve(WATCHDOG);
    d.until(Duration::from_secs(90), "READY=1", |n| n.has("READY=1"));
    d.until(WATCHDOG * 2, "WATCHDOG=1", |n| n.has("WATCHDOG=1"));

    // The store's writer thread (comm is cut to 15 bytes).
    let tasks = format!("/proc/{}/task", d.pid());
    let writers: Vec<i32> = std::fs::read_dir(&tasks)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            (comm.trim() == "esigd-store-wri").then(|| e.file_name().to_str()?.parse().ok())?
        })
        .collect();
    assert_eq!(writers.len(), 1, "store writer threads: {writers:?}");
    let writer = Pid::from_raw(writers[0]);
    if let Err(e) = ptrace::seize(writer, ptrace::Options::empty()) {
        // Without CAP_SYS_PTRACE (another user's process) or under a ptrace-restricting policy:
        // a check that cannot run fails, it is never skipped.
        panic!(
            "cannot ptrace the store writer thread ({e}): run the tests as root or with CAP_SYS_PTRACE (kernel.yama.ptrace_scope ≤ 1)"
        );
    }
    ptrace::interrupt(writer).unwrap();
    waitpid(writer, Some(WaitPidFlag::__WALL)).unwrap();
    let frozen = Instant::now();

    // A probe that had its commit acknowledged just before may still ping; nothing after.
    let got = d.during(WATCHDOG * 2);
    let late: Vec<_> = pings(&got)
        .into_iter()
        .filter(|n| n.at > frozen + Duration::from_millis(300))
        .collect();
    assert!(
        late.is_empty(),
        "pings while the store does not answer: {late:?}\nall: {got:?}"
    );
    assert!(
        got.iter().any(|n| n.field("STATUS").is_some_and(|s| s
            .starts_with("not answering: the store commit has not returned for")
            && s.ends_with("; watchdog pings stopped"))),
        "{got:?}"
    );
    let log = d.log_text();
    assert!(
        log.contains("watchdog: not pinging systemd") && log.contains("store commit"),
        "{log}"
    );

    ptrace::detach(writer, None).unwrap();
    let got = d.until(
        WATCHDOG * 3,
        "WATCHDOG=1 after the store answers again",
        |n| n.has("WATCHDOG=1"),
    );
    assert!(
        got.iter().any(|n| n
            .field("STATUS")
            .is_some_and(|s| s.starts_with("serving; "))),
        "{got:?}"
    );
    let got = d.stop();
    assert!(got.iter().any(|n| n.has("STOPPING=1")), "{got:?}");
}
