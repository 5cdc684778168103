//! Helpers shared by the benchmarks (`#[path = "common/mod.rs"] mod common;` in each bench target).
//!
//! Each bench is its own crate and uses only part of this module.
#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

pub mod load;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use esigd_hsm::testing::TestToken;
use esigd_hsm::{Hsm, KeyKind};

/// `name` from the environment as a number, `default` when unset or not a number.
pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Median (upper median for an even count) of `v`.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs `f` from `threads` threads for `dur`; operations per second.
pub fn par(threads: usize, dur: Duration, f: Arc<dyn Fn() + Send + Sync>) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let (f, stop, count) = (f.clone(), stop.clone(), count.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    f();
                    n += 1;
                }
                count.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    let t0 = Instant::now();
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64()
}

/// The run parameters every bench reads from the environment and prints in its header.
pub struct Settings {
    /// Length of one sample (`BENCH_SECS`).
    pub dur: Duration,
    /// Samples per figure (`BENCH_ROUNDS`, default 5).
    pub rounds: usize,
    /// Available parallelism.
    pub cores: usize,
    /// `/proc/loadavg`, trimmed.
    pub load: String,
}

impl Settings {
    /// `None` when `cargo test --benches` probes the binary (`--list`/`--test`): nothing to run.
    pub fn from_env(default_secs: u64) -> Option<Settings> {
        if std::env::args().any(|a| a == "--list" || a == "--test") {
            return None;
        }
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        Some(Settings {
            dur: Duration::from_millis(env_num("BENCH_SECS", default_secs) * 1000),
            rounds: env_num("BENCH_ROUNDS", 5) as usize,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            load: load.trim().to_string(),
        })
    }

    /// `{cores} cores, {rounds} samples x {dur:?}, load {load}` for the header line.
    pub fn describe(&self) -> String {
        format!(
            "{} cores, {} samples x {:?}, load {}",
            self.cores, self.rounds, self.dur, self.load
        )
    }
}

/// A throw-away token and an HSM with a pool of `pool_size` sessions holding the ECDSA P-256
/// key pair `label`.
pub fn hsm_with_key(label: &str, pool_size: usize) -> (TestToken, Hsm) {
    let token = TestToken::create();
    let mut cfg = token.config();
    cfg.pool_size = pool_size;
    let hsm = Hsm::open(cfg).unwrap();
    hsm.generate_key_pair(label, KeyKind::EcP256).unwrap();
    (token, hsm)
}

/// CPU time used by this process so far, all threads (finished ones included), from
/// `/proc/self/stat` (`utime + stime`, clock ticks of 10 ms). Unlike wall-clock rates, CPU time
/// per operation is hardly affected by other processes competing for the cores.
pub fn process_cpu() -> Duration {
    cpu_of("self")
}

/// [`process_cpu`] of another process (e.g. the server under load).
pub fn process_cpu_of(pid: u32) -> Duration {
    cpu_of(&pid.to_string())
}

fn cpu_of(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)` one; utime and stime are fields 14 and 15 of the whole line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Runs `f` on the calling thread for `dur`; CPU microseconds of the whole process per call.
pub fn cpu_us_per_op(dur: Duration, mut f: impl FnMut()) -> f64 {
    let (c0, t0) = (process_cpu(), Instant::now());
    let mut n = 0u64;
    while t0.elapsed() < dur {
        f();
        n += 1;
    }
    (process_cpu() - c0).as_secs_f64() * 1e6 / n as f64
}

/// Value at quantile `q` of sorted `v`.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

/// A child process killed and reaped on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` with stdout piped and reads it until `until(line)` yields a value; keeps draining
/// stdout afterwards. Returns the process, the value and every line read (stderr is the caller's).
pub fn start<T>(mut cmd: Command, mut until: impl FnMut(&str) -> Option<T>) -> (Proc, T, String) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawn");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let proc = Proc(child);
    let mut seen = String::new();
    let mut line = String::new();
    let found = loop {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            panic!("{cmd:?} ended before it was ready:\n{seen}");
        }
        seen.push_str(&line);
        if let Some(v) = until(line.trim()) {
            break v;
        }
    };
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = out.read_to_end(&mut sink);
    });
    (proc, found, seen)
}

/// The release `esigd` next to the running bench (`target/release/deps/<bench>-<hash>` →
/// `target/release/esigd`), or `$ESIGD_BIN`.
#[allow(unused_imports)] // each bench uses a part
pub use esigd_testkit::esigd_binary;
