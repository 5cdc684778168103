//! systemd service notifications (`sd_notify(3)`) and the watchdog of `esigd serve`.
//!
//! The protocol is one datagram per notification, `KEY=VALUE` lines, sent to the `AF_UNIX`
//! socket named by `$NOTIFY_SOCKET` (a path, or an abstract name written with a leading `@`).
//! Without `$NOTIFY_SOCKET` (not started by systemd with `Type=notify`) every call is a no-op.
//!
//! What `serve` tells systemd:
//! * `READY=1` once the HSM session pool, the store and both listeners are up and a first health
//!   probe (HSM health check, store commit and read back, clock state) found the HSM and the store
//!   answering (retried every second until then; `TimeoutStartSec=` bounds the wait);
//! * `STATUS=…` after each probe when the text changed, e.g.
//!   `serving; 8 HSM sessions (3 open, 0 in use); clock synced ±12 ms`;
//! * `RELOADING=1` + `MONOTONIC_USEC=…` before a SIGHUP reload and `READY=1` after it (applied or
//!   refused);
//! * `STOPPING=1` when SIGTERM/SIGINT starts the shutdown;
//! * `WATCHDOG=1` every half `$WATCHDOG_USEC` (when set for this process), but only while the HSM
//!   and the store answer: each ping follows a fresh probe that answered within a quarter of the
//!   interval. A PKCS#11 call or a store commit that hangs stops the pings, and systemd restarts
//!   the daemon (`WatchdogSec=`); the reason is logged and put in `STATUS=`.
//!
//! The probe runs on its own thread (`esigd-watchdog`), never on the async executor: a stuck
//! PKCS#11 call blocks that thread only, and the async side notices that no answer came in time.
//!
//! Which failures stop the pings (see [`Health::alive`]): a check that does not answer in time
//! (hung HSM call, no pooled HSM session came free within `hsm.checkout_timeout`, a store write
//! that is not acknowledged, a full store write queue that does not drain), and a store that
//! answers with an error (the store has no in-process recovery; a restart reopens it). An HSM
//! that answers with an error (token unreachable, session lost) does not: the session pool
//! reconnects by itself, `/readyz` already reports it, and a restart could not open an
//! unreachable HSM either (the unit would run into its start limit and stay down instead of
//! recovering); `STATUS=` says `degraded` meanwhile.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use esigd_hsm::{HsmError, HsmStats};
use esigd_service::Service;
use esigd_store::{Batch, Cf, Store, StoreError};
use tokio::sync::oneshot;

/// How long a notification may wait for room in systemd's socket queue before it is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// The probe's key in the store's `meta` column family (written, then read back).
const STORE_PROBE_KEY: &[u8] = b"watchdog";
/// Between two probes before the first `READY=1` while a check fails.
const STARTUP_RETRY: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// The notification socket

/// Where `$NOTIFY_SOCKET` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyAddr {
    /// A socket file.
    Path(PathBuf),
    /// A Linux abstract socket name (given as `@name`; the `@` stands for the leading NUL byte).
    Abstract(Vec<u8>),
}

impl NotifyAddr {
    /// The socket address to send to (fails when the name is too long for `sun_path`).
    pub fn socket_addr(&self) -> io::Result<SocketAddr> {
        match self {
            NotifyAddr::Path(p) => SocketAddr::from_pathname(p),
            NotifyAddr::Abstract(name) => {
                <SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name)
            }
        }
    }
}

impl std::fmt::Display for NotifyAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotifyAddr::Path(p) => write!(f, "{}", p.display()),
            NotifyAddr::Abstract(n) => write!(f, "@{}", String::from_utf8_lossy(n)),
        }
    }
}

/// Parses `$NOTIFY_SOCKET` as `sd_notify(3)` does: an absolute path, or `@name` for an abstract
/// socket. `vsock:` addresses (systemd in a VM talking to the host) are not supported.
pub fn parse_notify_socket(value: &OsStr) -> Result<NotifyAddr, String> {
    let b = value.as_bytes();
    match b.first() {
        None => Err("empty".into()),
        Some(b'/') => Ok(NotifyAddr::Path(PathBuf::from(value))),
        Some(b'@') if b.len() > 1 => Ok(NotifyAddr::Abstract(b[1..].to_vec())),
        Some(b'@') => Err("an abstract socket name needs at least one character after @".into()),
        Some(_) if b.starts_with(b"vsock:") => {
            Err("AF_VSOCK notification sockets are not supported".into())
        }
        Some(_) => Err("neither an absolute path nor an abstract socket name (@name)".into()),
    }
}

/// One notification: `KEY=VALUE` lines. A newline inside a value would start a new assignment,
/// so each value is put on one line (every run of white space becomes one space).
pub fn message(fields: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (key, value) in fields {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(&one_line(value));
    }
    out
}

/// `value` on one line: every run of white space (line breaks included) becomes one space.
fn one_line(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `RELOADING=1` with the `CLOCK_MONOTONIC` time the reload started (systemd requires it with
/// `Type=notify-reload` and accepts it with `Type=notify`).
pub fn reloading_message(monotonic_usec: u64) -> String {
    message(&[
        ("RELOADING", "1"),
        ("MONOTONIC_USEC", &monotonic_usec.to_string()),
        ("STATUS", "reloading the configuration"),
    ])
}

/// A `timespec` in microseconds (negative parts count as 0).
pub fn timespec_usec(sec: i64, nsec: i64) -> u64 {
    let sec = u64::try_from(sec).unwrap_or(0);
    let nsec = u64::try_from(nsec).unwrap_or(0);
    sec.saturating_mul(1_000_000).saturating_add(nsec / 1_000)
}

/// `CLOCK_MONOTONIC` now, in microseconds (what `MONOTONIC_USEC=` carries).
pub fn monotonic_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| timespec_usec(t.tv_sec(), t.tv_nsec()))
        .unwrap_or(0)
}

/// Sends notifications to systemd; does nothing when `$NOTIFY_SOCKET` was not set. Cheap to
/// clone. Sending never blocks longer than a second (then the notification is dropped and the
/// failure logged).
#[derive(Clone, Default)]
pub struct Notifier {
    target: Option<Arc<Target>>,
}

struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
    shown: String,
    /// The last `STATUS=` sent, so that an unchanged status is not sent again.
    status: Mutex<Option<String>>,
    /// Whether the last send failed (the first failure of a series is logged as a warning).
    failing: AtomicBool,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            Some(t) => write!(f, "Notifier({})", t.shown),
            None => f.write_str("Notifier(disabled)"),
        }
    }
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier::default()
    }

    /// From `$NOTIFY_SOCKET`; disabled when it is unset, or (with a warning) unusable.
    pub fn from_env() -> Notifier {
        let Some(value) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier::disabled();
        };
        let made = parse_notify_socket(&value)
            .map_err(|e| e.to_string())
            .and_then(|a| Notifier::to(&a).map_err(|e| e.to_string()));
        match made {
            Ok(n) => n,
            Err(error) => {
                tracing::warn!(
                    socket = %value.to_string_lossy(),
                    %error,
                    "NOTIFY_SOCKET is set but unusable: no notifications to systemd"
                );
                Notifier::disabled()
            }
        }
    }

    /// A notifier sending to `addr`.
    pub fn to(addr: &NotifyAddr) -> io::Result<Notifier> {
        let socket = UnixDatagram::unbound()?;
        socket.set_write_timeout(Some(SEND_TIMEOUT))?;
        Ok(Notifier {
            target: Some(Arc::new(Target {
                socket,
                addr: addr.socket_addr()?,
                shown: addr.to_string(),
                status: Mutex::new(None),
                failing: AtomicBool::new(false),
            })),
        })
    }

    /// Whether notifications are sent at all.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one notification (see [`message`]); false when disabled or when sending failed.
    pub fn send(&self, msg: &str) -> bool {
        let Some(t) = &self.target else {
            return false;
        };
        match t.socket.send_to_addr(msg.as_bytes(), &t.addr) {
            Ok(_) => {
                t.failing.store(false, Ordering::Relaxed);
                if let Some(s) = msg.lines().find_map(|l| l.strip_prefix("STATUS=")) {
                    *lock(&t.status) = Some(s.to_string());
                }
                true
            }
            Err(error) => {
                if t.failing.swap(true, Ordering::Relaxed) {
                    tracing::debug!(socket = %t.shown, %error, "systemd notification not sent");
                } else {
                    tracing::warn!(socket = %t.shown, %error, "systemd notification not sent");
                }
                false
            }
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) -> bool {
        self.send(&message(&[("READY", "1"), ("STATUS", status)]))
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` now.
    pub fn reloading(&self) -> bool {
        self.send(&reloading_message(monotonic_usec()))
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) -> bool {
        self.send(&message(&[
            ("STOPPING", "1"),
            ("STATUS", "shutting down: finishing in-flight requests"),
        ]))
    }

    /// `WATCHDOG=1` when `ping`, and `STATUS=status` when it differs from the last one sent;
    /// nothing when there is neither.
    pub fn update(&self, ping: bool, status: &str) -> bool {
        let Some(t) = &self.target else {
            return false;
        };
        let status = one_line(status);
        let changed = lock(&t.status).as_deref() != Some(status.as_str());
        let mut fields = Vec::with_capacity(2);
        if ping {
            fields.push(("WATCHDOG", "1"));
        }
        if changed {
            fields.push(("STATUS", status.as_str()));
        }
        !fields.is_empty() && self.send(&message(&fields))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Watchdog timing

/// `$WATCHDOG_USEC` / `$WATCHDOG_PID` as `sd_watchdog_enabled(3)` reads them: the interval
/// when the watchdog is meant for the process `our_pid`, `None` when it is off or meant for
/// another process, an error when the values are malformed.
pub fn watchdog_interval(
    usec: Option<&OsStr>,
    pid: Option<&OsStr>,
    our_pid: u32,
) -> Result<Option<Duration>, String> {
    let Some(usec) = usec else {
        return Ok(None);
    };
    let usec = usec
        .to_str()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            format!(
                "WATCHDOG_USEC={:?} is not a positive number",
                usec.to_string_lossy()
            )
        })?;
    if let Some(pid) = pid {
        let pid = pid
            .to_str()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                format!(
                    "WATCHDOG_PID={:?} is not a process id",
                    pid.to_string_lossy()
                )
            })?;
        if pid != our_pid {
            return Ok(None);
        }
    }
    Ok(Some(Duration::from_micros(usec)))
}

/// When the health probe runs and how long its answer is waited for.
///
/// With a watchdog interval `W`: a probe `W/2` after the previous ping (`sd_watchdog_enabled(3)`
/// advises pinging at half the interval), the ping sent as soon as the probe found the service
/// alive. A probe that has not answered after `W/4` is given up for that round, so while all is
/// well two pings are at most `W/2 + W/4 = 3W/4` apart. After a round that found the service not
/// alive the probe is repeated every `W/10` (a hung probe is waited for, not repeated), so that
/// a hiccup shorter than about `W/4` costs no restart; a check that keeps failing or hangs makes
/// systemd fire `W` after the last ping. Inside the probe, a busy store queue is retried until
/// `W/5`, so that its answer (busy) still comes before the `W/4` limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// From a ping to the next probe.
    pub period: Duration,
    /// From a round that found the service not alive to the next probe.
    pub retry: Duration,
    /// The probe stops retrying busy checks after this long.
    pub probe_deadline: Duration,
    /// The probe's answer is waited for this long.
    pub answer_timeout: Duration,
    /// Whether `WATCHDOG=1` is sent (otherwise the probe only keeps `STATUS=` current).
    pub watchdog: bool,
}

impl Timing {
    /// For the watchdog interval `interval` (`$WATCHDOG_USEC`).
    pub fn watchdog(interval: Duration) -> Timing {
        Timing {
            period: interval / 2,
            retry: interval / 10,
            probe_deadline: interval / 5,
            answer_timeout: interval / 4,
            watchdog: true,
        }
    }

    /// Without a watchdog: `STATUS=` refreshed every 30 s.
    pub fn status_only() -> Timing {
        Timing {
            period: Duration::from_secs(30),
            retry: Duration::from_secs(3),
            probe_deadline: Duration::from_secs(10),
            answer_timeout: Duration::from_secs(15),
            watchdog: false,
        }
    }

    /// From `$WATCHDOG_USEC` / `$WATCHDOG_PID` (malformed values are logged and ignored).
    pub fn from_env() -> Timing {
        match watchdog_interval(
            std::env::var_os("WATCHDOG_USEC").as_deref(),
            std::env::var_os("WATCHDOG_PID").as_deref(),
            std::process::id(),
        ) {
            Ok(Some(interval)) => Timing::watchdog(interval),
            Ok(None) => Timing::status_only(),
            Err(error) => {
                tracing::warn!(%error, "watchdog settings ignored");
                Timing::status_only()
            }
        }
    }

    /// The longest gap between two pings while every probe answers in time.
    pub fn max_ping_gap(&self) -> Duration {
        self.period + self.answer_timeout
    }
}

// ---------------------------------------------------------------------------------------------
// Health: what one probe found, and what follows from it

/// How one check answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// It works.
    Ok,
    /// It answered with an error.
    Error(String),
    /// It did not answer in time (busy past the deadline).
    NoAnswer(String),
}

/// The clock as `STATUS=` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClockView {
    /// Synchronised, maximum error within `tsa.accuracy`.
    Synced {
        /// The kernel's maximum error estimate.
        max_error: Duration,
    },
    /// Synchronised, but the maximum error exceeds `tsa.accuracy` (no time-stamps).
    TooCoarse {
        /// The kernel's maximum error estimate.
        max_error: Duration,
        /// `tsa.accuracy`.
        accuracy: Duration,
    },
    /// Not synchronised; `allowed` with `tsa.allow_unsynchronized_clock` (development).
    Unsynced {
        /// Whether time-stamping goes on all the same.
        allowed: bool,
    },
    /// The clock state could not be read.
    Unreadable(String),
}

impl ClockView {
    /// Reads `clock` and judges it as the TSA does.
    pub fn read(
        clock: &dyn esigd_tsa::ClockState,
        accuracy: Duration,
        allow_unsynchronized: bool,
    ) -> ClockView {
        match clock.status() {
            Err(e) => ClockView::Unreadable(e.to_string()),
            Ok(s) if !s.synchronized => ClockView::Unsynced {
                allowed: allow_unsynchronized,
            },
            Ok(s) if s.max_error > accuracy && !allow_unsynchronized => ClockView::TooCoarse {
                max_error: s.max_error,
                accuracy,
            },
            Ok(s) => ClockView::Synced {
                max_error: s.max_error,
            },
        }
    }

    fn text(&self) -> String {
        match self {
            ClockView::Synced { max_error } => format!("clock synced ±{}", short(*max_error)),
            ClockView::TooCoarse {
                max_error,
                accuracy,
            } => format!(
                "clock max error ±{} above tsa.accuracy {}: no time-stamps",
                short(*max_error),
                short(*accuracy)
            ),
            ClockView::Unsynced { allowed: false } => {
                "clock not synchronised: no time-stamps".into()
            }
            ClockView::Unsynced { allowed: true } => {
                "clock not synchronised (tsa.allow_unsynchronized_clock)".into()
            }
            ClockView::Unreadable(e) => format!("clock state unreadable: {e}"),
        }
    }
}

/// A duration for a status line: `0.3 ms`, `12 ms`, `1.5 s`.
pub fn short(d: Duration) -> String {
    let us = d.as_micros();
    if us < 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else if us < 1_000_000 {
        format!("{} ms", (us + 500) / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// `Hsm::health_check`: a pooled session answers `C_GetSessionInfo`.
    pub hsm: Answer,
    /// A store commit (synced) and the value read back.
    pub store: Answer,
    /// The session pool.
    pub sessions: Option<HsmStats>,
    /// The clock.
    pub clock: ClockView,
}

impl Health {
    /// Whether the daemon may tell systemd it is alive (`READY=1`, `WATCHDOG=1`); otherwise why
    /// not. See the module documentation for the policy.
    pub fn alive(&self) -> Result<(), String> {
        match (&self.hsm, &self.store) {
            (Answer::NoAnswer(e), _) => Err(format!("HSM health check: {e}")),
            (_, Answer::NoAnswer(e)) => Err(format!("store: {e}")),
            (_, Answer::Error(e)) => Err(format!("store: {e}")),
            _ => Ok(()),
        }
    }

    /// The status line, without the watchdog suffix.
    fn text(&self) -> String {
        let sessions = match &self.sessions {
            Some(s) => format!(
                "; {} HSM sessions ({} open, {} in use)",
                s.pool_size, s.open, s.in_use
            ),
            None => String::new(),
        };
        let clock = self.clock.text();
        match (self.alive(), &self.hsm) {
            (Err(why), _) => format!("failing: {why}"),
            (Ok(()), Answer::Error(e)) => format!("degraded: HSM: {e}{sessions}; {clock}"),
            (Ok(()), _) => format!("serving{sessions}; {clock}"),
        }
    }
}

/// What became of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It answered in time.
    Answered(Health),
    /// It has not answered: the probe thread is stuck in `step` since `since`.
    Stuck {
        /// What the probe thread was doing when last heard of.
        step: &'static str,
        /// How long the unanswered probe has been running.
        since: Duration,
    },
    /// The probe thread is gone (it panicked, or could not be started).
    WorkerGone,
}

/// What one round concludes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the daemon counts as alive (ping, or `READY=1` at startup).
    pub alive: bool,
    /// The `STATUS=` line.
    pub status: String,
    /// What is wrong, for the log (also set when alive but degraded).
    pub problem: Option<String>,
}

/// Judges one probe outcome; `watchdog` adds "watchdog pings stopped" to the status line of a
/// round that does not ping.
pub fn judge(outcome: &Outcome, watchdog: bool) -> Verdict {
    let suffix = if watchdog {
        "; watchdog pings stopped"
    } else {
        ""
    };
    match outcome {
        Outcome::Answered(h) => match h.alive() {
            Ok(()) => Verdict {
                alive: true,
                status: h.text(),
                problem: match &h.hsm {
                    Answer::Error(e) => Some(format!("HSM: {e}")),
                    _ => None,
                },
            },
            Err(why) => Verdict {
                alive: false,
                status: format!("{}{suffix}", h.text()),
                problem: Some(why),
            },
        },
        Outcome::Stuck { step, since } => {
            let why = format!("the {step} has not returned for {}", short(*since));
            Verdict {
                alive: false,
                status: format!("not answering: {why}{suffix}"),
                problem: Some(why),
            }
        }
        Outcome::WorkerGone => {
            let why = "the health probe thread is gone".to_string();
            Verdict {
                alive: false,
                status: format!("failing: {why}{suffix}"),
                problem: Some(why),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The probe thread

/// What a probe run is given: its deadline, and where it says what it is doing (so that a hung
/// probe can be named).
#[derive(Debug)]
pub struct ProbeCtx {
    /// Busy checks are retried until then.
    pub deadline: Instant,
    step: Arc<Mutex<&'static str>>,
}

impl ProbeCtx {
    /// Records the step the probe is in now.
    pub fn step(&self, what: &'static str) {
        *lock(&self.step) = what;
    }
}

struct Request {
    deadline: Instant,
    reply: oneshot::Sender<Health>,
}

struct Worker {
    tx: SyncSender<Request>,
    step: Arc<Mutex<&'static str>>,
}

impl Worker {
    fn spawn(mut probe: impl FnMut(&ProbeCtx) -> Health + Send + 'static) -> io::Result<Worker> {
        let (tx, rx) = sync_channel::<Request>(1);
        let step = Arc::new(Mutex::new("idle"));
        let shared = step.clone();
        std::thread::Builder::new()
            .name("esigd-watchdog".into())
            .spawn(move || {
                while let Ok(req) = rx.recv() {
                    let ctx = ProbeCtx {
                        deadline: req.deadline,
                        step: shared.clone(),
                    };
                    let health = probe(&ctx);
                    ctx.step("idle");
                    let _ = req.reply.send(health);
                }
            })?;
        Ok(Worker { tx, step })
    }
}

struct InFlight {
    started: Instant,
    deadline: tokio::time::Instant,
    rx: oneshot::Receiver<Health>,
}

/// Runs the health probe, sends `READY=1`, `STATUS=` and the watchdog pings.
pub struct Supervisor {
    notifier: Notifier,
    timing: Timing,
    worker: Option<Worker>,
    in_flight: Option<InFlight>,
    last_problem: Option<String>,
    last_logged: Option<Instant>,
}

impl Supervisor {
    /// A supervisor running `probe` on its own thread. With a disabled notifier, no thread is
    /// started and [`Supervisor::run`] returns at once.
    pub fn new(
        notifier: Notifier,
        timing: Timing,
        probe: impl FnMut(&ProbeCtx) -> Health + Send + 'static,
    ) -> Supervisor {
        let worker = if notifier.is_enabled() {
            match Worker::spawn(probe) {
                Ok(w) => Some(w),
                Err(error) => {
                    tracing::error!(%error, "cannot start the health probe thread");
                    None
                }
            }
        } else {
            None
        };
        Supervisor {
            notifier,
            timing,
            worker,
            in_flight: None,
            last_problem: None,
            last_logged: None,
        }
    }

    /// The supervisor of the running service: watchdog settings from the environment, the probe
    /// of [`probe_service`]. Holds the service weakly.
    pub fn for_service(notifier: Notifier, svc: &Arc<Service>) -> Supervisor {
        let timing = Timing::from_env();
        if !notifier.is_enabled() {
            return Supervisor::new(notifier, timing, |_: &ProbeCtx| unreachable_health());
        }
        let checkout = svc.hsm.config().checkout_timeout;
        if timing.watchdog {
            tracing::info!(
                every = %humantime::format_duration(timing.period),
                answer_within = %humantime::format_duration(timing.answer_timeout),
                "systemd watchdog on: pinging while the HSM and the store answer"
            );
            if timing.answer_timeout <= checkout {
                tracing::warn!(
                    answer_within = %humantime::format_duration(timing.answer_timeout),
                    hsm_checkout_timeout = %humantime::format_duration(checkout),
                    "WatchdogSec is short: an HSM session pool busy for longer than answer_within counts as not answering (use WatchdogSec >= 5 x hsm.checkout_timeout)"
                );
            }
        }
        let weak: Weak<Service> = Arc::downgrade(svc);
        Supervisor::new(notifier, timing, move |ctx: &ProbeCtx| {
            match weak.upgrade() {
                Some(svc) => probe_service(&svc, ctx),
                None => unreachable_health(),
            }
        })
    }

    /// Starts a probe, or goes on waiting for the one still running; waits for its answer up to
    /// the answer timeout (counted from the probe's start).
    pub async fn probe_once(&mut self) -> Outcome {
        let Some(worker) = &self.worker else {
            return Outcome::WorkerGone;
        };
        let mut f = match self.in_flight.take() {
            Some(mut f) => match f.rx.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => f,
                Err(oneshot::error::TryRecvError::Closed) => return Outcome::WorkerGone,
                Ok(_) => {
                    tracing::warn!(
                        after = %short(f.started.elapsed()),
                        "the previous health probe answered late"
                    );
                    match self.start(worker) {
                        Some(f) => f,
                        None => return Outcome::WorkerGone,
                    }
                }
            },
            None => match self.start(worker) {
                Some(f) => f,
                None => return Outcome::WorkerGone,
            },
        };
        match tokio::time::timeout_at(f.deadline, &mut f.rx).await {
            Ok(Ok(health)) => Outcome::Answered(health),
            Ok(Err(_)) => Outcome::WorkerGone,
            Err(_) => {
                let step = *lock(&worker.step);
                let since = f.started.elapsed();
                self.in_flight = Some(f);
                Outcome::Stuck { step, since }
            }
        }
    }

    fn start(&self, worker: &Worker) -> Option<InFlight> {
        let started = Instant::now();
        let (reply, rx) = oneshot::channel();
        let req = Request {
            deadline: started + self.timing.probe_deadline,
            reply,
        };
        // A request is only sent once the previous one was answered, and the thread takes each
        // off the channel before probing: the channel is never full, only closed when the thread
        // is gone.
        match worker.tx.try_send(req) {
            Ok(()) => Some(InFlight {
                started,
                deadline: tokio::time::Instant::from_std(started + self.timing.answer_timeout),
                rx,
            }),
            Err(_) => None,
        }
    }

    /// Probes until the service is alive, then sends `READY=1` with the status line.
    pub async fn ready(&mut self) {
        if !self.notifier.is_enabled() {
            return;
        }
        loop {
            let v = judge(&self.probe_once().await, false);
            if v.alive {
                self.notifier.ready(&v.status);
                self.log(&v, false);
                return;
            }
            tracing::error!(
                problem = v.problem.as_deref().unwrap_or(""),
                "not ready yet (systemd is told READY=1 once the HSM and the store answer)"
            );
            self.notifier
                .update(false, &format!("starting: {}", v.status));
            tokio::time::sleep(STARTUP_RETRY).await;
        }
    }

    /// `READY=1` (see [`Supervisor::ready`]), then probes (see [`Timing`]): `WATCHDOG=1` after
    /// each one that finds the service alive, `STATUS=` when it changed. Returns at once when
    /// notifications are off; otherwise runs until aborted.
    pub async fn run(mut self) {
        if !self.notifier.is_enabled() {
            return;
        }
        self.ready().await;
        let mut next = tokio::time::Instant::now() + self.timing.period;
        loop {
            tokio::time::sleep_until(next).await;
            let v = judge(&self.probe_once().await, self.timing.watchdog);
            self.notifier
                .update(v.alive && self.timing.watchdog, &v.status);
            self.log(&v, self.timing.watchdog);
            let wait = if v.alive {
                self.timing.period
            } else {
                self.timing.retry
            };
            next = tokio::time::Instant::now() + wait.max(Duration::from_millis(1));
        }
    }

    /// Logs what changed: a new problem, a recovery; while the pings are withheld, an error at
    /// most once per period.
    fn log(&mut self, v: &Verdict, watchdog: bool) {
        let changed = self.last_problem != v.problem;
        match (&v.problem, v.alive) {
            (Some(problem), false) if watchdog => {
                let due = self
                    .last_logged
                    .is_none_or(|t| t.elapsed() >= self.timing.period);
                if changed_kind(self.last_problem.as_deref(), problem) || due {
                    tracing::error!(
                        %problem,
                        "watchdog: not pinging systemd, which restarts esigd once WatchdogSec passes without a ping"
                    );
                    self.last_logged = Some(Instant::now());
                }
            }
            (Some(problem), _) if changed_kind(self.last_problem.as_deref(), problem) => {
                tracing::warn!(%problem, "health probe");
                self.last_logged = Some(Instant::now());
            }
            (None, _) if changed => {
                tracing::info!("health probe: the HSM and the store answer again");
                self.last_logged = None;
            }
            _ => {}
        }
        self.last_problem = v.problem.clone();
    }
}

/// Whether `problem` is another kind of problem than `before` (a hung step's growing duration
/// is the same problem).
fn changed_kind(before: Option<&str>, problem: &str) -> bool {
    let kind = |p: &str| p.split(" for ").next().map(str::to_owned);
    before.map(kind) != Some(kind(problem))
}

fn unreachable_health() -> Health {
    Health {
        hsm: Answer::NoAnswer("the service is shut down".into()),
        store: Answer::NoAnswer("the service is shut down".into()),
        sessions: None,
        clock: ClockView::Unreadable("the service is shut down".into()),
    }
}

/// The probe of the running service (blocking: PKCS#11 and RocksDB calls). The HSM health check
/// (a pooled session answers `C_GetSessionInfo`; `Busy` after `hsm.checkout_timeout` counts as no
/// answer), a synced store commit read back, the clock state.
pub fn probe_service(svc: &Service, ctx: &ProbeCtx) -> Health {
    ctx.step("HSM health check");
    let hsm = match svc.hsm.health_check() {
        Ok(()) => Answer::Ok,
        Err(e @ HsmError::Busy(_)) => Answer::NoAnswer(e.to_string()),
        Err(e) => Answer::Error(e.to_string()),
    };
    let sessions = Some(svc.hsm.stats());
    let store = probe_store(&svc.store, svc.clock.unix_now(), ctx);
    ctx.step("clock state read");
    let clock = ClockView::read(
        svc.discipline.as_ref(),
        svc.settings.tsa.accuracy,
        svc.settings.tsa.allow_unsynchronized_clock,
    );
    Health {
        hsm,
        store,
        sessions,
        clock,
    }
}

/// Commits `meta/watchdog` = now (a synced group commit through the writer thread) and reads it
/// back. A full write queue is retried until the deadline, then counts as no answer.
pub fn probe_store(store: &Store, now: u64, ctx: &ProbeCtx) -> Answer {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let value = format!("{now}/{}", SEQ.fetch_add(1, Ordering::Relaxed)).into_bytes();
    ctx.step("store commit");
    loop {
        let mut batch = Batch::new();
        batch.put(Cf::Meta, STORE_PROBE_KEY.to_vec(), value.clone());
        match store.commit_blocking(batch) {
            Ok(()) => break,
            Err(StoreError::Busy { .. }) if Instant::now() < ctx.deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e @ StoreError::Busy { .. }) => return Answer::NoAnswer(e.to_string()),
            Err(e) => return Answer::Error(e.to_string()),
        }
    }
    ctx.step("store read");
    match store.get(Cf::Meta, STORE_PROBE_KEY) {
        Ok(Some(v)) if v == value => Answer::Ok,
        Ok(_) => Answer::Error("the value just committed does not read back".into()),
        Err(e) => Answer::Error(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn os(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn notify_socket_addresses() {
        assert_eq!(
            parse_notify_socket(os("/run/systemd/notify")),
            Ok(NotifyAddr::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            parse_notify_socket(os("@/org/freedesktop/systemd1/notify/123")),
            Ok(NotifyAddr::Abstract(
                b"/org/freedesktop/systemd1/notify/123".to_vec()
            ))
        );
        for bad in ["", "@", "relative/sock", "vsock:2:1234"] {
            assert!(parse_notify_socket(os(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(
            NotifyAddr::Abstract(b"x".to_vec()).to_string(),
            "@x".to_string()
        );
        // sun_path holds 108 bytes.
        let long = NotifyAddr::Path(format!("/{}", "a".repeat(200)).into());
        assert!(long.socket_addr().is_err());
    }

    #[test]
    fn messages_are_key_value_lines() {
        assert_eq!(
            message(&[("READY", "1"), ("STATUS", "serving; 8 HSM sessions")]),
            "READY=1\nSTATUS=serving; 8 HSM sessions"
        );
        // A newline in a value cannot smuggle in another assignment.
        assert_eq!(
            message(&[("STATUS", "bad\nWATCHDOG=trigger\r\n  | x")]),
            "STATUS=bad WATCHDOG=trigger | x"
        );
        assert_eq!(
            reloading_message(1_234_567),
            "RELOADING=1\nMONOTONIC_USEC=1234567\nSTATUS=reloading the configuration"
        );
    }

    #[test]
    fn monotonic_microseconds() {
        assert_eq!(timespec_usec(2, 345_678_999), 2_345_678);
        assert_eq!(timespec_usec(-1, 5), 0);
        let a = monotonic_usec();
        std::thread::sleep(Duration::from_millis(5));
        let b = monotonic_usec();
        assert!(a > 0 && b >= a + 5_000, "{a} {b}");
    }

    #[test]
    fn watchdog_environment() {
        let w = |usec: Option<&str>, pid: Option<&str>| {
            watchdog_interval(usec.map(os), pid.map(os), 4242)
        };
        assert_eq!(w(None, None), Ok(None));
        assert_eq!(w(None, Some("4242")), Ok(None));
        assert_eq!(w(Some("2000000"), None), Ok(Some(Duration::from_secs(2))));
        assert_eq!(
            w(Some("30000000"), Some("4242")),
            Ok(Some(Duration::from_secs(30)))
        );
        // Meant for another process (e.g. inherited from a parent).
        assert_eq!(w(Some("30000000"), Some("1")), Ok(None));
        for (usec, pid) in [
            ("0", None),
            ("-5", None),
            ("1s", None),
            ("", None),
            ("100", Some("x")),
            ("100", Some("0")),
        ] {
            assert!(w(Some(usec), pid).is_err(), "{usec:?} {pid:?}");
        }
    }

    #[test]
    fn watchdog_interval_maths() {
        let t = Timing::watchdog(Duration::from_secs(30));
        assert_eq!(t.period, Duration::from_secs(15));
        assert_eq!(t.probe_deadline, Duration::from_secs(6));
        assert_eq!(t.answer_timeout, Duration::from_millis(7500));
        assert_eq!(t.retry, Duration::from_secs(3));
        assert!(t.watchdog);
        for secs in [1, 2, 3, 10, 30, 60, 600] {
            let w = Duration::from_secs(secs);
            let t = Timing::watchdog(w);
            // Pings stay well inside the interval while probes answer in time...
            assert!(t.max_ping_gap() <= w * 3 / 4, "{t:?}");
            // ...and the probe gives up on busy checks before its answer is given up.
            assert!(t.probe_deadline < t.answer_timeout && t.answer_timeout < t.period);
        }
        // Microsecond intervals do not make a zero period.
        assert!(Timing::watchdog(Duration::from_micros(1)).period > Duration::ZERO);
        assert!(!Timing::status_only().watchdog);
    }

    #[test]
    fn short_durations() {
        assert_eq!(short(Duration::from_micros(300)), "0.3 ms");
        assert_eq!(short(Duration::from_micros(12_400)), "12 ms");
        assert_eq!(short(Duration::from_micros(12_600)), "13 ms");
        assert_eq!(short(Duration::from_millis(1500)), "1.5 s");
    }

    fn stats() -> HsmStats {
        HsmStats {
            pool_size: 8,
            open: 3,
            in_use: 1,
            dedicated: 2,
        }
    }

    fn healthy() -> Health {
        Health {
            hsm: Answer::Ok,
            store: Answer::Ok,
            sessions: Some(stats()),
            clock: ClockView::Synced {
                max_error: Duration::from_millis(12),
            },
        }
    }

    #[test]
    fn status_lines_and_the_ping_policy() {
        let v = judge(&Outcome::Answered(healthy()), true);
        assert_eq!(
            v,
            Verdict {
                alive: true,
                status: "serving; 8 HSM sessions (3 open, 1 in use); clock synced ±12 ms".into(),
                problem: None
            }
        );
        // An HSM that answers with an error: degraded, still pinging (the pool reconnects).
        let h = Health {
            hsm: Answer::Error("HSM unavailable: token gone".into()),
            ..healthy()
        };
        let v = judge(&Outcome::Answered(h), true);
        assert!(v.alive, "{v:?}");
        assert!(
            v.status
                .starts_with("degraded: HSM: HSM unavailable: token gone; 8 HSM sessions"),
            "{v:?}"
        );
        assert!(v.problem.is_some());
        // An HSM whose pool gives no session in time: not answering.
        let h = Health {
            hsm: Answer::NoAnswer("HSM busy".into()),
            ..healthy()
        };
        let v = judge(&Outcome::Answered(h), true);
        assert!(!v.alive);
        assert_eq!(
            v.status,
            "failing: HSM health check: HSM busy; watchdog pings stopped"
        );
        // A store error stops the pings (no in-process recovery).
        let h = Health {
            store: Answer::Error("RocksDB write failed".into()),
            ..healthy()
        };
        let v = judge(&Outcome::Answered(h.clone()), true);
        assert!(!v.alive);
        assert_eq!(
            v.status,
            "failing: store: RocksDB write failed; watchdog pings stopped"
        );
        // Without a watchdog, no suffix.
        assert_eq!(
            judge(&Outcome::Answered(h), false).status,
            "failing: store: RocksDB write failed"
        );
        let v = judge(
            &Outcome::Stuck {
                step: "store commit",
                since: Duration::from_millis(2500),
            },
            true,
        );
        assert!(!v.alive);
        assert_eq!(
            v.status,
            "not answering: the store commit has not returned for 2.5 s; watchdog pings stopped"
        );
        assert!(!judge(&Outcome::WorkerGone, true).alive);
    }

    #[test]
    fn clock_views() {
        use esigd_tsa::{ClockStatus, FixedClock};
        let acc = Duration::from_secs(1);
        let synced = FixedClock::synchronized(Duration::from_millis(12));
        assert_eq!(
            ClockView::read(&synced, acc, false).text(),
            "clock synced ±12 ms"
        );
        let coarse = FixedClock::synchronized(Duration::from_millis(1500));
        assert_eq!(
            ClockView::read(&coarse, acc, false).text(),
            "clock max error ±1.5 s above tsa.accuracy 1.0 s: no time-stamps"
        );
        let unsynced = FixedClock(ClockStatus {
            synchronized: false,
            max_error: Duration::from_secs(16),
        });
        assert_eq!(
            ClockView::read(&unsynced, acc, false).text(),
            "clock not synchronised: no time-stamps"
        );
        assert_eq!(
            ClockView::read(&unsynced, acc, true).text(),
            "clock not synchronised (tsa.allow_unsynchronized_clock)"
        );
    }

    /// A datagram socket standing in for systemd's.
    fn systemd_socket(dir: &std::path::Path) -> (UnixDatagram, Notifier) {
        let path = dir.join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let n = Notifier::to(&NotifyAddr::Path(path)).unwrap();
        (sock, n)
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn notifier_sends_to_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let (sock, n) = systemd_socket(dir.path());
        assert!(n.ready("serving"));
        assert_eq!(recv(&sock), "READY=1\nSTATUS=serving");
        // An unchanged status is not sent again; a ping goes alone.
        assert!(n.update(true, "serving"));
        assert_eq!(recv(&sock), "WATCHDOG=1");
        assert!(!n.update(false, "serving"));
        assert!(n.update(true, "degraded"));
        assert_eq!(recv(&sock), "WATCHDOG=1\nSTATUS=degraded");
        assert!(n.reloading());
        let m = recv(&sock);
        assert!(
            m.starts_with("RELOADING=1\nMONOTONIC_USEC=")
                && m.ends_with("\nSTATUS=reloading the configuration"),
            "{m}"
        );
        assert!(n.stopping());
        assert!(recv(&sock).starts_with("STOPPING=1\n"));

        let name = format!("esigd-notify-test-{}", std::process::id());
        let addr = NotifyAddr::Abstract(name.clone().into_bytes());
        let sock = UnixDatagram::bind_addr(&addr.socket_addr().unwrap()).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let n = Notifier::to(&parse_notify_socket(os(&format!("@{name}"))).unwrap()).unwrap();
        assert!(n.send("READY=1"));
        assert_eq!(recv(&sock), "READY=1");

        // Disabled: nothing is sent, nothing fails.
        let off = Notifier::disabled();
        assert!(!off.is_enabled() && !off.ready("x") && !off.update(true, "x"));
        // No socket at that path (systemd gone): false, no panic.
        let gone = Notifier::to(&NotifyAddr::Path(dir.path().join("none"))).unwrap();
        assert!(!gone.send("WATCHDOG=1"));
    }

    /// Every notification `sock` receives during `for_` (blocking), with its arrival time.
    fn collect(sock: UnixDatagram, for_: Duration) -> (UnixDatagram, Vec<(Instant, String)>) {
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let end = Instant::now() + for_;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            if let Ok(n) = sock.recv(&mut buf) {
                got.push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                ));
            }
        }
        (sock, got)
    }

    /// The watchdog with a fake probe that can be made to hang: pings while it answers, none
    /// while it hangs (the status names the step it hangs in), pings again once it answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pings_stop_while_the_probe_hangs_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let (sock, n) = systemd_socket(dir.path());
        let hang = Arc::new(AtomicBool::new(false));
        let probes = Arc::new(AtomicUsize::new(0));
        let (h, p) = (hang.clone(), probes.clone());
        let timing = Timing::watchdog(Duration::from_millis(600));
        let sup = Supervisor::new(n, timing, move |ctx: &ProbeCtx| {
            p.fetch_add(1, Ordering::SeqCst);
            ctx.step("HSM health check");
            while h.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            healthy()
        });
        let task = tokio::spawn(sup.run());
        let (sock, got) =
            tokio::task::spawn_blocking(move || collect(sock, Duration::from_millis(1500)))
                .await
                .unwrap();
        assert!(got[0].1.starts_with("READY=1\nSTATUS=serving"), "{got:?}");
        let pings = got.iter().filter(|(_, m)| m.contains("WATCHDOG=1")).count();
        assert!(pings >= 3, "{got:?}");

        hang.store(true, Ordering::SeqCst);
        let before_hang = probes.load(Ordering::SeqCst);
        let (sock, got) =
            tokio::task::spawn_blocking(move || collect(sock, Duration::from_millis(1500)))
                .await
                .unwrap();
        // At most the ping of a probe that was already answered when the hang began.
        let pings: Vec<_> = got
            .iter()
            .filter(|(_, m)| m.contains("WATCHDOG=1"))
            .collect();
        assert!(pings.len() <= 1, "{got:?}");
        assert!(
            got.iter().any(|(_, m)| m
                .contains("STATUS=not answering: the HSM health check has not returned for")
                && m.ends_with("; watchdog pings stopped")),
            "{got:?}"
        );
        // The hung probe is waited for; no new probes pile up behind it.
        let during = probes.load(Ordering::SeqCst);
        assert!(during - before_hang <= 1, "{before_hang} {during}");

        hang.store(false, Ordering::SeqCst);
        let (_, got) =
            tokio::task::spawn_blocking(move || collect(sock, Duration::from_millis(1500)))
                .await
                .unwrap();
        let pings = got.iter().filter(|(_, m)| m.contains("WATCHDOG=1")).count();
        assert!(pings >= 2, "{got:?}");
        assert!(
            got.iter().any(|(_, m)| m.contains("STATUS=serving")),
            "{got:?}"
        );
        assert!(probes.load(Ordering::SeqCst) > during);
        task.abort();
    }

    /// A round whose HSM check finds the pool busy costs no restart: the probe is repeated soon,
    /// and the next ping still comes within the interval.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_failed_round_is_retried_within_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let (sock, n) = systemd_socket(dir.path());
        let w = Duration::from_secs(1);
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let sup = Supervisor::new(n, Timing::watchdog(w), move |_: &ProbeCtx| {
            // The third probe (after READY=1 and one ping) finds the pool busy.
            if c.fetch_add(1, Ordering::SeqCst) == 2 {
                Health {
                    hsm: Answer::NoAnswer("HSM busy".into()),
                    ..healthy()
                }
            } else {
                healthy()
            }
        });
        let task = tokio::spawn(sup.run());
        let (_, got) = tokio::task::spawn_blocking(move || collect(sock, Duration::from_secs(3)))
            .await
            .unwrap();
        task.abort();
        assert!(
            got.iter()
                .any(|(_, m)| m
                    == "STATUS=failing: HSM health check: HSM busy; watchdog pings stopped"),
            "{got:?}"
        );
        let alive: Vec<Instant> = got
            .iter()
            .filter(|(_, m)| m.starts_with("READY=1") || m.starts_with("WATCHDOG=1"))
            .map(|(at, _)| *at)
            .collect();
        assert!(alive.len() >= 5, "{got:?}");
        for pair in alive.windows(2) {
            assert!(
                pair[1] - pair[0] < w,
                "{:?} between pings: {got:?}",
                pair[1] - pair[0]
            );
        }
    }

    /// READY=1 waits until the store answers; before it, STATUS says why.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ready_waits_for_a_working_store() {
        let dir = tempfile::tempdir().unwrap();
        let (sock, n) = systemd_socket(dir.path());
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let mut sup = Supervisor::new(
            n,
            Timing::watchdog(Duration::from_secs(2)),
            move |_: &ProbeCtx| {
                if c.fetch_add(1, Ordering::SeqCst) == 0 {
                    Health {
                        store: Answer::Error("RocksDB write failed".into()),
                        ..healthy()
                    }
                } else {
                    healthy()
                }
            },
        );
        sup.ready().await;
        assert_eq!(
            recv(&sock),
            "STATUS=starting: failing: store: RocksDB write failed"
        );
        assert!(recv(&sock).starts_with("READY=1\nSTATUS=serving"));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    /// The real probe against a real store and SoftHSM token.
    #[test]
    fn the_service_probe_commits_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store"), Default::default()).unwrap();
        let ctx = ProbeCtx {
            deadline: Instant::now() + Duration::from_secs(5),
            step: Arc::new(Mutex::new("idle")),
        };
        assert_eq!(probe_store(&store, 1, &ctx), Answer::Ok);
        assert_eq!(*lock(&ctx.step), "store read");
        assert_eq!(probe_store(&store, 2, &ctx), Answer::Ok);
    }
}
