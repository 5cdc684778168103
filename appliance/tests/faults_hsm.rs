//! HSM faults against the running `esigd` binary (issue #16), with one-time signatures
//! (`POST /v1/sign/onetime`) and time-stamps (`POST /tsa`) probed throughout:
//!
//! * a second process calls `C_CloseAllSessions` on the daemon's SoftHSM token (SoftHSM sessions
//!   belong to the process that opened them: the daemon must not notice);
//! * the token's directory is moved away from SoftHSM's token directory and back (the tests run as
//!   root, where `chmod 000` stops nothing; a missing directory is what an unreadable one looks like
//!   to SoftHSM's file store);
//! * the token is deleted with `softhsm2-util --delete-token` and restored from a copy of its files.
//!
//! While the token is gone every request must end at once with `503` and `Retry-After` (one-time
//! signing) or an RFC 3161 `systemFailure` (time-stamps), never a `500` or a hang; `/readyz` must
//! name the `hsm` check. When the token is back, service must resume WITHOUT restarting esigd,
//! within 20 s: one-time signatures, time-stamps and `/readyz` 200. SoftHSM 2.6 keeps a token
//! whose files disappeared invalid until `C_Initialize` rescans the token directory, so the HSM
//! pool re-initialises the library in the background (at most once a second) until the token is
//! found again (`hsm/src/core.rs`; in-process tests in `hsm/tests/token_loss.rs`). The times from
//! "HSM back" to the first success are printed (`cargo nextest run -p esigd --test faults_hsm
//! --no-capture`; README, "Faults").
//!
//! The in-process equivalent of the first fault (`C_CloseAllSessions` inside the daemon's own
//! process, which does close its sessions) is `hsm/tests/recovery.rs`
//! (`recovers_from_close_all_sessions_during_signing`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use esigd_testkit::onetime_env::OneTimeEnv;
use esigd_testkit::tsa_pki_status;
use sha2::{Digest, Sha256};

/// What one probe request got.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Signed / granted.
    Ok,
    /// `503` with `Retry-After`.
    Unavailable,
    /// RFC 3161 reply with status rejection (2) – `systemFailure` or `timeNotAvailable`.
    Rejected,
    /// Anything else (a defect): status and message.
    Bad(u16, String),
}

/// One probe: its outcome and how long it took.
#[derive(Debug, Clone)]
struct Probe {
    outcome: Outcome,
    took: Duration,
}

fn onetime(env: &OneTimeEnv, n: usize) -> Probe {
    let digest = Sha256::digest(format!("fault probe {n}").as_bytes());
    let body = serde_json::json!({
        "format": "CAdES",
        "hash": B64.encode(digest),
        "hashType": "SHA2-256",
        "dataToBeDisplayed": "Fault probe",
        "requestTimestamp": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    });
    let t0 = Instant::now();
    let r = env.post(&body);
    let took = t0.elapsed();
    let retry = r.headers.to_ascii_lowercase().contains("retry-after:");
    let outcome = match r.status {
        200 => Outcome::Ok,
        503 if retry => Outcome::Unavailable,
        s => Outcome::Bad(s, format!("{} (headers: {})", r.message(), r.headers)),
    };
    Probe { outcome, took }
}

fn timestamp(env: &OneTimeEnv, query: &Path) -> Probe {
    let t0 = Instant::now();
    let o = Command::new("curl")
        .args(["-s", "-o", "-", "-D", "-", "--max-time", "30"])
        .args(["-H", "Content-Type: application/timestamp-query"])
        .arg("--data-binary")
        .arg(format!("@{}", query.display()))
        .arg(env.daemon.url("/tsa"))
        .output()
        .unwrap();
    let took = t0.elapsed();
    let raw = o.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = &raw[split..];
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let outcome = match (code, tsa_pki_status(body)) {
        (200, Some(0 | 1)) => Outcome::Ok,
        (200, Some(2)) => Outcome::Rejected,
        (503, _) if head.contains("retry-after:") => Outcome::Unavailable,
        (c, s) => Outcome::Bad(
            c,
            format!("TSA status {s:?}, curl rc {:?}", o.status.code()),
        ),
    };
    Probe { outcome, took }
}

/// `/readyz`: status and the `hsm` check's text.
fn readyz(env: &OneTimeEnv) -> (u16, String, String) {
    let (code, body) = env.daemon.get("/readyz", &["--max-time", "30"]);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let hsm = v["checks"]["hsm"].as_str().unwrap_or("?").to_string();
    let store = v["checks"]["store"].as_str().unwrap_or("?").to_string();
    (code, hsm, store)
}

/// The SoftHSM token directory of the test process (set by scripts/test-runner).
fn softhsm_dir() -> PathBuf {
    PathBuf::from(
        std::env::var_os("ESIGD_TEST_SOFTHSM_DIR").expect(
            "ESIGD_TEST_SOFTHSM_DIR is not set: run tests through cargo (scripts/test-runner)",
        ),
    )
}

/// The daemon's token label (from its configuration file).
fn token_label(env: &OneTimeEnv) -> String {
    let cfg = std::fs::read_to_string(&env.cfg).unwrap();
    let line = cfg
        .lines()
        .find(|l| l.starts_with("token = "))
        .expect("token in config");
    line.trim_start_matches("token = ")
        .trim_matches('"')
        .to_string()
}

/// The directory holding the token labelled `label` (its `token.object` carries the label).
fn token_dir(label: &str) -> PathBuf {
    for e in std::fs::read_dir(softhsm_dir().join("tokens")).unwrap() {
        let p = e.unwrap().path();
        let obj = std::fs::read(p.join("token.object")).unwrap_or_default();
        if obj.windows(label.len()).any(|w| w == label.as_bytes()) {
            return p;
        }
    }
    panic!("no token directory for {label}");
}

fn sh(cmd: &mut Command) {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// C_CloseAllSessions on the token's slot from a second process (python ctypes on the SoftHSM
/// module; the process inherits SOFTHSM2_CONF).
const CLOSE_ALL_PY: &str = r#"
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
label = sys.argv[2].encode()
assert lib.C_Initialize(None) == 0
n = ctypes.c_ulong(0)
assert lib.C_GetSlotList(1, None, ctypes.byref(n)) == 0
slots = (ctypes.c_ulong * n.value)()
assert lib.C_GetSlotList(1, slots, ctypes.byref(n)) == 0
done = 0
for s in slots[: n.value]:
    info = ctypes.create_string_buffer(1024)
    assert lib.C_GetTokenInfo(ctypes.c_ulong(s), info) == 0
    if info.raw[:32].rstrip(b" ") == label:
        rv = lib.C_CloseAllSessions(ctypes.c_ulong(s))
        print("C_CloseAllSessions rv=%d slot=%d" % (rv, s))
        assert rv == 0
        done += 1
lib.C_Finalize(None)
assert done == 1, "token not found"
"#;

fn close_all_sessions_from_another_process(label: &str) {
    let python = esigd_testkit::venv().join("bin/python");
    let module = esigd_hsm::testing::softhsm_module();
    sh(Command::new(python)
        .args(["-c", CLOSE_ALL_PY])
        .arg(module)
        .arg(label));
}

/// The daemon log's last lines.
fn log_tail(env: &OneTimeEnv) -> String {
    let log = env.daemon.log_text();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// What a fault did, for the note.
#[derive(Debug)]
struct Figures {
    onetime_during: Vec<Probe>,
    tsa_during: Vec<Probe>,
    readyz_during: Vec<(u16, String, String)>,
    /// Fault applied → first failed one-time signature (None: never failed).
    detected_after: Option<Duration>,
    /// HSM back → first one-time signature / time-stamp / ready.
    recovery_onetime: Duration,
    recovery_tsa: Duration,
    recovery_ready: Duration,
    /// Whether service came back without restarting esigd (always, or the test has failed).
    recovered_without_restart: bool,
}

/// Probes until one-time signing, time-stamps and `/readyz` all work: times since `t0`, or None
/// after `limit`.
fn await_recovery(
    env: &OneTimeEnv,
    query: &Path,
    name: &str,
    t0: Instant,
    limit: Duration,
) -> Option<(Duration, Duration, Duration)> {
    let (mut r1, mut r2, mut r3) = (None, None, None);
    let mut n = 1_000_000usize;
    while r1.is_none() || r2.is_none() || r3.is_none() {
        if t0.elapsed() > limit {
            return None;
        }
        if r1.is_none() {
            n += 1;
            match onetime(env, n).outcome {
                Outcome::Ok => r1 = Some(t0.elapsed()),
                Outcome::Unavailable => {}
                o => panic!(
                    "{name}: after repair one-time signing got {o:?}; log tail:\n{}",
                    log_tail(env)
                ),
            }
        }
        if r2.is_none() {
            match timestamp(env, query).outcome {
                Outcome::Ok => r2 = Some(t0.elapsed()),
                Outcome::Unavailable | Outcome::Rejected => {}
                o => panic!(
                    "{name}: after repair TSA got {o:?}; log tail:\n{}",
                    log_tail(env)
                ),
            }
        }
        if r3.is_none() && readyz(env).0 == 200 {
            r3 = Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Some((r1?, r2?, r3?))
}

/// Applies `fault`, probes while it lasts, then `repair`s and measures the way back.
fn run_fault(
    env: &OneTimeEnv,
    query: &Path,
    name: &str,
    fault: impl FnOnce(),
    repair: impl FnOnce(),
    expect_outage: bool,
) -> Figures {
    let mut n = 0usize;
    let mut next = || {
        n += 1;
        n
    };
    // Working before the fault.
    assert_eq!(onetime(env, next()).outcome, Outcome::Ok, "{name}: before");
    assert_eq!(timestamp(env, query).outcome, Outcome::Ok, "{name}: before");
    let t_fault = Instant::now();
    fault();
    let mut onetime_during = Vec::new();
    let mut tsa_during = Vec::new();
    let mut readyz_during = Vec::new();
    let mut detected_after = None;
    // Until the outage shows (or 6 probes when none is expected), then 3 more probes.
    let mut extra = 0;
    while extra < 3 {
        let p = onetime(env, next());
        if p.outcome != Outcome::Ok && detected_after.is_none() {
            detected_after = Some(t_fault.elapsed());
        }
        onetime_during.push(p);
        tsa_during.push(timestamp(env, query));
        readyz_during.push(readyz(env));
        if detected_after.is_some() || !expect_outage && onetime_during.len() >= 3 {
            extra += 1;
        }
        assert!(
            t_fault.elapsed() < Duration::from_secs(60),
            "{name}: no outage within 60 s: {onetime_during:?}"
        );
    }
    println!(
        "FAULT {name} (during): detected after {detected_after:?}; one-time {:?}; TSA {:?}; readyz {readyz_during:?}",
        onetime_during
            .iter()
            .map(|p| (&p.outcome, p.took))
            .collect::<Vec<_>>(),
        tsa_during
            .iter()
            .map(|p| (&p.outcome, p.took))
            .collect::<Vec<_>>(),
    );
    repair();
    // The HSM is back: service must resume in this process, without restarting esigd.
    let t_back = Instant::now();
    let back = await_recovery(env, query, name, t_back, Duration::from_secs(20));
    let recovered_without_restart = back.is_some();
    let (r1, r2, r3) = back.unwrap_or_else(|| {
        panic!(
            "{name}: no recovery within 20 s of the HSM coming back, without a restart (the HSM \
             pool should re-initialise the PKCS#11 library); log tail:\n{}",
            log_tail(env)
        )
    });
    let f = Figures {
        onetime_during,
        tsa_during,
        readyz_during,
        detected_after,
        recovered_without_restart,
        recovery_onetime: r1,
        recovery_tsa: r2,
        recovery_ready: r3,
    };
    let max = |v: &[Probe]| v.iter().map(|p| p.took).max().unwrap_or_default();
    println!(
        "FAULT {name}: detected after {:?}; during: one-time {:?} (slowest {:?}), TSA {:?} \
         (slowest {:?}), readyz {:?}; recovered without restart: {}; recovery (HSM back → first success): \
         one-time {:?}, TSA {:?}, readyz {:?}",
        f.detected_after,
        f.onetime_during
            .iter()
            .map(|p| &p.outcome)
            .collect::<Vec<_>>(),
        max(&f.onetime_during),
        f.tsa_during.iter().map(|p| &p.outcome).collect::<Vec<_>>(),
        max(&f.tsa_during),
        f.readyz_during,
        f.recovered_without_restart,
        f.recovery_onetime,
        f.recovery_tsa,
        f.recovery_ready,
    );
    f
}

/// The checks every outage must pass: fast 503s with Retry-After, never a 500 or a hang, `/readyz`
/// naming the hsm check (and only it).
fn assert_outage(name: &str, f: &Figures) {
    assert!(
        f.detected_after.is_some(),
        "{name}: the fault was never noticed: {f:?}"
    );
    for p in f.onetime_during.iter().chain(&f.tsa_during) {
        assert!(
            !matches!(p.outcome, Outcome::Bad(..)),
            "{name}: a request got {:?}",
            p.outcome
        );
        assert!(
            p.took < Duration::from_secs(10),
            "{name}: a request took {:?} (must fail fast)",
            p.took
        );
    }
    // Once noticed, every one-time signature is refused with 503 + Retry-After.
    let last = &f.onetime_during[f.onetime_during.len() - 3..];
    assert!(
        last.iter().all(|p| p.outcome == Outcome::Unavailable),
        "{name}: {last:?}"
    );
    // ... and no time-stamp is granted while the HSM is gone.
    let last_tsa = &f.tsa_during[f.tsa_during.len() - 3..];
    assert!(
        last_tsa.iter().all(|p| p.outcome != Outcome::Ok),
        "{name}: time-stamps granted during the outage: {last_tsa:?}"
    );
    let (code, hsm, store) = &f.readyz_during[f.readyz_during.len() - 1];
    assert_eq!(*code, 503, "{name}: /readyz during the outage");
    assert_ne!(hsm, "ok", "{name}: /readyz hsm check");
    assert_eq!(store, "ok", "{name}: /readyz store check");
}

fn start() -> (OneTimeEnv, PathBuf) {
    let env = OneTimeEnv::start();
    let q = env.path("q.tsq");
    std::fs::write(env.path("doc.txt"), b"fault probe\n").unwrap();
    sh(Command::new("openssl")
        .args(["ts", "-query", "-data"])
        .arg(env.path("doc.txt"))
        .args(["-sha256", "-cert", "-out"])
        .arg(&q));
    (env, q)
}

#[test]
fn close_all_sessions_in_a_second_process_does_not_touch_the_daemon() {
    let (env, q) = start();
    let label = token_label(&env);
    let f = run_fault(
        &env,
        &q,
        "C_CloseAllSessions from a second process",
        || close_all_sessions_from_another_process(&label),
        || {},
        false,
    );
    // SoftHSM sessions belong to the process that opened them: nothing changes for the daemon.
    assert_eq!(f.detected_after, None, "{f:?}");
    assert!(f.recovered_without_restart, "{f:?}");
    assert!(f.readyz_during.iter().all(|(c, ..)| *c == 200), "{f:?}");
}

#[test]
fn token_directory_gone_answers_503_and_service_resumes_when_back() {
    let (env, q) = start();
    let dir = token_dir(&token_label(&env));
    let away = softhsm_dir().join("token-moved-away");
    let f = run_fault(
        &env,
        &q,
        "token directory moved away and back",
        || std::fs::rename(&dir, &away).unwrap(),
        || std::fs::rename(&away, &dir).unwrap(),
        true,
    );
    assert_outage("token directory gone", &f);
    assert!(f.recovered_without_restart, "{f:?}");
    let log = env.daemon.log_text();
    assert!(log.contains("HSM"), "no HSM log line:\n{log}");
    assert!(
        log.contains("HSM token back"),
        "no log line for the re-initialisation:\n{}",
        log_tail(&env)
    );
}

#[test]
fn token_deleted_answers_503_and_service_resumes_when_restored() {
    let (env, q) = start();
    let label = token_label(&env);
    let dir = token_dir(&label);
    let backup = softhsm_dir().join("token-backup");
    sh(Command::new("cp").arg("-a").arg(&dir).arg(&backup));
    let f = run_fault(
        &env,
        &q,
        "slot removed (softhsm2-util --delete-token) and re-added from a copy",
        || {
            sh(Command::new("softhsm2-util")
                .args(["--delete-token", "--token"])
                .arg(&label));
            assert!(!dir.exists(), "softhsm2-util left {}", dir.display());
        },
        || sh(Command::new("cp").arg("-a").arg(&backup).arg(&dir)),
        true,
    );
    assert_outage("token deleted", &f);
    assert!(f.recovered_without_restart, "{f:?}");
    assert!(
        env.daemon.log_text().contains("HSM token back"),
        "no log line for the re-initialisation:\n{}",
        log_tail(&env)
    );
}
