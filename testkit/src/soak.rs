//! The soak run (issue #16), shared by `benches/soak.rs` (30 minutes for the record) and the short test in
//! `appliance/tests/kill9_load.rs` (2 minutes):
//!
//! 1. **probe**: the mixed load of [`crate::load`] without pauses (4 time-stamp clients, 2 signers) for a
//!    few seconds gives the maximum rates of time-stamps and one-time signatures on this machine;
//! 2. **soak**: the same mix *paced* at half those rates (2 time-stamp clients, 2 signers, 1 fetcher at half
//!    the signature rate) for the given minutes; every `sample` (10 s) a row: RSS (`/proc/PID/status`
//!    VmRSS), open fds (`/proc/PID/fd`), `esigd_hsm_sessions{state}`, `esigd_listener_connections_active`,
//!    `esigd_onetime_keys_ready`, `esigd_notify_outbox_depth` from `/metrics`, and the p99 latency of
//!    time-stamps and signatures in that window;
//! 3. **verdict** over the samples after the warm-up (the first third of the run is warm-up; the trend is
//!    fitted by least squares over the last two thirds):
//!    * RSS: slope ≤ `rss_kib_per_min` (KiB per minute);
//!    * fds: slope ≤ `fds_per_min`, or at most 4 more fds at the end than at the start of the window;
//!    * p99: for time-stamps and for signatures, the median p99 of the last third of the windows is at most
//!      `p99_ratio` × that of the first third of the fitted range, or at most 50 ms above it;
//!    * failed requests ≤ 0.1 % (the daemon runs at half its capacity: it should refuse nothing).
//!
//! The thresholds are in [`Thresholds`]; the verdict lists every check with its figure.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::load::{self, Acked, LoadSpec, Op};
use crate::onetime_env::OneTimeEnv;

/// Pass/fail limits of the trend checks.
#[derive(Clone, Debug)]
pub struct Thresholds {
    /// Largest RSS slope over the fitted range, KiB per minute.
    pub rss_kib_per_min: f64,
    /// Largest open-fd slope over the fitted range, fds per minute.
    pub fds_per_min: f64,
    /// Largest ratio of late to early median p99 (per operation).
    pub p99_ratio: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            rss_kib_per_min: 1024.0,
            fds_per_min: 1.0,
            p99_ratio: 2.0,
        }
    }
}

/// The shape of a soak run.
#[derive(Clone, Debug)]
pub struct SoakSpec {
    /// Length of the paced run.
    pub duration: Duration,
    /// Sampling period.
    pub sample: Duration,
    /// Length of the unpaced probe for the maximum rates.
    pub probe: Duration,
    /// Pass/fail limits.
    pub thresholds: Thresholds,
}

/// One sampling row.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Seconds since the paced run started.
    pub t: f64,
    /// Resident set size, KiB.
    pub rss_kib: f64,
    /// Open file descriptors.
    pub fds: f64,
    /// `esigd_hsm_sessions{state="in_use"}` and `{state="idle"}` (as scraped; -1 when absent).
    pub hsm_in_use: f64,
    /// Idle HSM sessions.
    pub hsm_idle: f64,
    /// Sum of `esigd_listener_connections_active`.
    pub connections: f64,
    /// `esigd_onetime_keys_ready`.
    pub keys_ready: f64,
    /// `esigd_notify_outbox_depth`.
    pub outbox: f64,
    /// p99 of time-stamps in the window, ms (NaN if none).
    pub p99_stamp_ms: f64,
    /// p99 of signatures in the window, ms (NaN if none).
    pub p99_sign_ms: f64,
    /// Requests completed in the window.
    pub requests: usize,
}

/// What a soak run measured, and its verdict.
#[derive(Debug)]
pub struct SoakReport {
    /// Maximum rates found by the probe: (time-stamps/s, signatures/s).
    pub max_rates: (f64, f64),
    /// The paced rates actually reached: (time-stamps/s, signatures/s, fetches/s).
    pub rates: (f64, f64, f64),
    /// Every sample.
    pub samples: Vec<Sample>,
    /// RSS slope over the fitted range, KiB/min.
    pub rss_slope: f64,
    /// fd slope over the fitted range, fds/min.
    pub fd_slope: f64,
    /// Failed requests / all requests.
    pub failures: (u64, u64),
    /// One line per check: (passed, text).
    pub checks: Vec<(bool, String)>,
}

impl SoakReport {
    /// True when every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.0)
    }
}

/// Least-squares slope of `y` over `x`.
pub fn slope(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    if x.len() < 2 {
        return 0.0;
    }
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let num: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let den: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
    if den == 0.0 { 0.0 } else { num / den }
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn median(v: Vec<f64>) -> f64 {
    percentile(v.into_iter().filter(|x| !x.is_nan()).collect(), 0.5)
}

fn proc_status_kib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn open_fds(pid: u32) -> f64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(f64::NAN, |d| d.count() as f64)
}

/// Sum of the samples of metric `name` whose labels contain `labels` (-1 when none).
fn metric(text: &str, name: &str, labels: &str) -> f64 {
    let mut found = false;
    let mut sum = 0.0;
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = l.rsplit_once(' ') else {
            continue;
        };
        let (metric, lab) = key.split_once('{').unwrap_or((key, ""));
        if metric == name
            && lab.contains(labels)
            && let Ok(v) = value.parse::<f64>()
        {
            sum += v;
            found = true;
        }
    }
    if found { sum } else { -1.0 }
}

fn probe(env: &OneTimeEnv, within: Duration) -> (f64, f64) {
    let spec = LoadSpec {
        tsa_clients: 4,
        signers: 2,
        fetchers: 0,
        tsa_pause: Duration::ZERO,
        strict: false,
        ..LoadSpec::default()
    };
    let acked = Mutex::new(Acked::default());
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| load::run(env, &spec, 1000, &stop, &acked));
        std::thread::sleep(within);
        stop.store(true, Ordering::SeqCst);
    });
    let secs = started.elapsed().as_secs_f64();
    let a = acked.into_inner().unwrap();
    assert!(
        !a.stamps.is_empty() && !a.signatures.is_empty(),
        "probe: nothing acknowledged (last failure {:?})",
        a.last_failure
    );
    (
        a.stamps.len() as f64 / secs,
        a.signatures.len() as f64 / secs,
    )
}

/// Runs the soak of `spec` against `env` (probe, paced run, verdict); prints a row per sample and the
/// verdict to stderr. Never panics on a failed check: see [`SoakReport::passed`].
pub fn soak(env: &OneTimeEnv, spec: &SoakSpec) -> SoakReport {
    let max_rates = probe(env, spec.probe);
    // Half the maximum: two paced threads of each kind share it.
    let every = |rate: f64, threads: f64| Duration::from_secs_f64(threads / (rate / 2.0));
    let load_spec = LoadSpec {
        tsa_clients: 2,
        signers: 2,
        fetchers: 1,
        tsa_pause: every(max_rates.0, 2.0),
        sign_pause: every(max_rates.1, 2.0),
        // Fetches at half the (paced) signature rate.
        fetch_pause: every(max_rates.1 / 2.0, 1.0),
        paced: true,
        strict: false,
        latencies: true,
    };
    eprintln!(
        "soak: probe max {:.1} time-stamps/s, {:.2} signatures/s (mixed); pacing at half: {:?} per time-stamp client (2), {:?} per signer (2), {:?} per fetch; {:?} in all, a sample every {:?}",
        max_rates.0,
        max_rates.1,
        load_spec.tsa_pause,
        load_spec.sign_pause,
        load_spec.fetch_pause,
        spec.duration,
        spec.sample
    );
    eprintln!(
        "{:>6} {:>9} {:>5} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>9} {:>9}",
        "t s",
        "RSS KiB",
        "fds",
        "hsm_u",
        "hsm_i",
        "conns",
        "keys",
        "outbox",
        "reqs",
        "p99 tsa",
        "p99 sign"
    );
    let pid = env.daemon.pid();
    let acked = Mutex::new(Acked::default());
    let stop = AtomicBool::new(false);
    let mut samples = Vec::new();
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| load::run(env, &load_spec, 2000, &stop, &acked));
        let _stop = load::StopOnPanic(&stop);
        let mut next = started + spec.sample;
        while next <= started + spec.duration {
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            next += spec.sample;
            let window = std::mem::take(&mut acked.lock().unwrap().latencies);
            let p99 = |op: Op| {
                percentile(
                    window
                        .iter()
                        .filter(|l| l.0 == op)
                        .map(|l| l.2.as_secs_f64() * 1000.0)
                        .collect(),
                    0.99,
                )
            };
            let (status, body) = env.daemon.get("/metrics", &[]);
            let m = if status == 200 {
                String::from_utf8_lossy(&body).into_owned()
            } else {
                String::new()
            };
            let row = Sample {
                t: started.elapsed().as_secs_f64(),
                rss_kib: proc_status_kib(pid, "VmRSS:"),
                fds: open_fds(pid),
                hsm_in_use: metric(&m, "esigd_hsm_sessions", "in_use"),
                hsm_idle: metric(&m, "esigd_hsm_sessions", "idle"),
                connections: metric(&m, "esigd_listener_connections_active", ""),
                keys_ready: metric(&m, "esigd_onetime_keys_ready", ""),
                outbox: metric(&m, "esigd_notify_outbox_depth", ""),
                p99_stamp_ms: p99(Op::Stamp),
                p99_sign_ms: p99(Op::Sign),
                requests: window.len(),
            };
            eprintln!(
                "{:>6.0} {:>9.0} {:>5.0} {:>6.0} {:>6.0} {:>6.0} {:>6.0} {:>6.0} {:>7} {:>9.1} {:>9.1}",
                row.t,
                row.rss_kib,
                row.fds,
                row.hsm_in_use,
                row.hsm_idle,
                row.connections,
                row.keys_ready,
                row.outbox,
                row.requests,
                row.p99_stamp_ms,
                row.p99_sign_ms
            );
            samples.push(row);
        }
        stop.store(true, Ordering::SeqCst);
    });
    let secs = started.elapsed().as_secs_f64();
    let a = acked.into_inner().unwrap();
    let done = (a.stamps.len() + a.signatures.len()) as u64 + a.fetches;
    let rates = (
        a.stamps.len() as f64 / secs,
        a.signatures.len() as f64 / secs,
        a.fetches as f64 / secs,
    );
    verdict(
        spec,
        max_rates,
        rates,
        samples,
        (a.failures, done + a.failures),
    )
}

fn verdict(
    spec: &SoakSpec,
    max_rates: (f64, f64),
    rates: (f64, f64, f64),
    samples: Vec<Sample>,
    failures: (u64, u64),
) -> SoakReport {
    let th = &spec.thresholds;
    let fitted: Vec<&Sample> = samples.iter().skip(samples.len() / 3).collect();
    let mins: Vec<f64> = fitted.iter().map(|s| s.t / 60.0).collect();
    let rss: Vec<f64> = fitted.iter().map(|s| s.rss_kib).collect();
    let fds: Vec<f64> = fitted.iter().map(|s| s.fds).collect();
    let rss_slope = slope(&mins, &rss);
    let fd_slope = slope(&mins, &fds);
    let mut checks = Vec::new();
    checks.push((
        fitted.len() >= 3,
        format!(
            "{} samples after the warm-up (at least 3 to fit a trend)",
            fitted.len()
        ),
    ));
    checks.push((
        rss_slope <= th.rss_kib_per_min,
        format!(
            "RSS slope {rss_slope:.0} KiB/min over the last 2/3 (limit {:.0}); {:.0} → {:.0} KiB",
            th.rss_kib_per_min,
            rss.first().copied().unwrap_or(f64::NAN),
            rss.last().copied().unwrap_or(f64::NAN)
        ),
    ));
    let fd_growth = fds.last().copied().unwrap_or(0.0) - fds.first().copied().unwrap_or(0.0);
    checks.push((
        fd_slope <= th.fds_per_min || fd_growth <= 4.0,
        format!(
            "open fds slope {fd_slope:.2}/min (limit {:.2}), {fd_growth:+.0} over the last 2/3",
            th.fds_per_min
        ),
    ));
    let third = fitted.len().div_ceil(3).max(1);
    for (name, get) in [
        (
            "time-stamp",
            (|s: &Sample| s.p99_stamp_ms) as fn(&Sample) -> f64,
        ),
        ("signature", |s: &Sample| s.p99_sign_ms),
    ] {
        let early = median(fitted.iter().take(third).map(|s| get(s)).collect());
        let late = median(fitted.iter().rev().take(third).map(|s| get(s)).collect());
        checks.push((
            late <= early * th.p99_ratio || late <= early + 50.0,
            format!(
                "{name} p99: {early:.1} ms early, {late:.1} ms late (limit ×{:.1} or +50 ms)",
                th.p99_ratio
            ),
        ));
    }
    checks.push((
        failures.0 * 1000 <= failures.1,
        format!(
            "{} failed of {} requests (limit 0.1 %)",
            failures.0, failures.1
        ),
    ));
    let report = SoakReport {
        max_rates,
        rates,
        samples,
        rss_slope,
        fd_slope,
        failures,
        checks,
    };
    eprintln!(
        "soak: {:.1} time-stamps/s, {:.2} signatures/s, {:.2} fetches/s paced (probe max {:.1} / {:.2})",
        rates.0, rates.1, rates.2, max_rates.0, max_rates.1
    );
    for (ok, text) in &report.checks {
        eprintln!("soak: {} {text}", if *ok { "PASS" } else { "FAIL" });
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_noise() {
        let x = [0.0, 1.0, 2.0, 3.0];
        assert!((slope(&x, &[1.0, 3.0, 5.0, 7.0]) - 2.0).abs() < 1e-9);
        assert!(slope(&x, &[5.0, 5.0, 5.0, 5.0]).abs() < 1e-9);
        assert_eq!(slope(&[1.0], &[2.0]), 0.0);
    }

    #[test]
    fn metric_sums_matching_samples() {
        let text = "# HELP x\nesigd_hsm_sessions{state=\"idle\"} 3\nesigd_hsm_sessions{state=\"in_use\"} 1\nesigd_onetime_keys_ready 7\n";
        assert_eq!(metric(text, "esigd_hsm_sessions", "idle"), 3.0);
        assert_eq!(metric(text, "esigd_hsm_sessions", ""), 4.0);
        assert_eq!(metric(text, "esigd_onetime_keys_ready", ""), 7.0);
        assert_eq!(metric(text, "esigd_missing", ""), -1.0);
    }
}
