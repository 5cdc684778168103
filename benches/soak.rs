//! Soak (issue #16): the mixed load of `esigd_testkit::load` (time-stamps, one-time signatures, fetches)
//! paced at half the maximum rates measured by a short probe, for `ESIGD_SOAK_MINUTES` (default 30),
//! sampling every `ESIGD_SOAK_SAMPLE_SECS` (default 10) RSS, open fds, HSM sessions, active connections,
//! ready one-time keys, the notification outbox depth and the p99 latency per window; then the verdict of
//! `esigd_testkit::soak` (trend over the last two thirds: RSS slope ≤ `ESIGD_SOAK_RSS_KIB_PER_MIN`, default
//! 1024 KiB/min; fds slope ≤ 1/min or ≤ 4 more fds; p99 late ≤ 2 × early or + 50 ms; ≤ 0.1 % failures).
//! Exits with status 1 when a check fails. `benches/soak.sh` builds and runs it.
//!
//! ```sh
//! cargo build --release --workspace --bins && ESIGD_SOAK_MINUTES=30 cargo bench --bench soak
//! ```
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::time::Duration;

use esigd_testkit::onetime_env::OneTimeEnv;
use esigd_testkit::soak::{SoakSpec, Thresholds, soak};

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        })
        .unwrap_or(default)
}

fn main() {
    let minutes = env_f64("ESIGD_SOAK_MINUTES", 30.0);
    let spec = SoakSpec {
        duration: Duration::from_secs_f64(minutes * 60.0),
        sample: Duration::from_secs_f64(env_f64("ESIGD_SOAK_SAMPLE_SECS", 10.0)),
        probe: Duration::from_secs_f64(env_f64("ESIGD_SOAK_PROBE_SECS", 20.0)),
        thresholds: Thresholds {
            rss_kib_per_min: env_f64("ESIGD_SOAK_RSS_KIB_PER_MIN", 1024.0),
            ..Thresholds::default()
        },
    };
    let env = OneTimeEnv::start();
    let report = soak(&env, &spec);
    if !report.passed() {
        eprintln!(
            "soak: FAILED (see the checks above; the daemon's log: {})",
            env.path("esigd.log").display()
        );
        std::process::exit(1);
    }
    eprintln!("soak: passed");
}
