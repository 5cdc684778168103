//! `kill -9` at random points under a mixed load, then restart, many times over (issue #16):
//!
//! * the load (`esigd_testkit::load`, tolerant mode): two keep-alive clients of `POST /tsa`, two threads of
//!   one-time CAdES signatures (`POST /v1/sign/onetime`, a fresh ID token each) and one thread fetching the
//!   signatures made (`GET /v1/sign/response/{id}`);
//! * each iteration: the load runs until it has at least a few acknowledged time-stamps and one signature,
//!   then for a random 0–1.5 s more; the daemon gets SIGKILL in the middle of it; the load stops; the
//!   daemon is started again on the same data directory and HSM token, and its time from spawn to the
//!   `ready` banner line is recorded;
//! * after each restart, every signature acknowledged so far (200 with a `signatureId`) is fetchable;
//! * over all iterations: no TSA serial and no one-time certificate serial was handed out twice; every
//!   acknowledged signature has its `signature.created` event in `GET /v1/audit/log` (as the auditor);
//!   every acknowledged time-stamp has its `timestamp.issued` event (serial, imprint) in the same log, and its
//!   record, with the same imprint, in the TSA's issued-token journal in the store (read with the daemon
//!   killed).
//!
//! Iterations: `ESIGD_KILL9_ITERATIONS` (default 10, the CI form); `benches/kill9.sh` runs the same test
//! binary with 100 and prints the recovery times. `ESIGD_KILL9_SEED` fixes the random kill points (the seed
//! used is printed).
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use esigd_testkit::load::{self, Acked, LoadSpec, StopOnPanic};
use esigd_testkit::onetime_env::OneTimeEnv;

/// xorshift64*: random kill points without a dependency (the seed is printed to reproduce a run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[test]
fn kill9_at_random_points_under_load_loses_and_repeats_nothing() {
    let iterations = env_u64("ESIGD_KILL9_ITERATIONS").unwrap_or(10);
    assert!(iterations > 0, "ESIGD_KILL9_ITERATIONS must be at least 1");
    let seed = env_u64("ESIGD_KILL9_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1
    });
    eprintln!("kill9: {iterations} iterations, ESIGD_KILL9_SEED={seed}");
    let mut rng = Rng(seed);
    let mut env = OneTimeEnv::start();
    let spec = LoadSpec {
        tsa_clients: 2,
        signers: 2,
        fetchers: 1,
        tsa_pause: Duration::from_millis(2),
        strict: false,
        ..LoadSpec::default()
    };

    // serial → iteration, across every iteration.
    let mut tsa_serials: HashMap<u64, u64> = HashMap::new();
    let mut cert_serials: HashMap<String, u64> = HashMap::new();
    let mut stamps: Vec<(u64, [u8; 32])> = Vec::new();
    let mut signatures: Vec<String> = Vec::new();
    let mut recovery: Vec<Duration> = Vec::new();
    let mut failures = 0u64;

    for it in 0..iterations {
        let acked = Mutex::new(Acked::default());
        let stop = AtomicBool::new(false);
        let extra = Duration::from_millis(rng.next() % 1500);
        std::thread::scope(|s| {
            s.spawn(|| load::run(&env, &spec, it + 1, &stop, &acked));
            let _stop = StopOnPanic(&stop);
            load::wait_for(&acked, &stop, 5, 1, Duration::from_secs(120));
            std::thread::sleep(extra);
            env.daemon.signal(nix::sys::signal::Signal::SIGKILL);
            // Let the clients see the dead daemon (requests in flight fail, none is acknowledged).
            std::thread::sleep(Duration::from_millis(100));
            stop.store(true, Ordering::SeqCst);
        });
        let acked = acked.into_inner().unwrap();
        let took = env.kill9_restart(&format!("esigd-{it}.log"));
        recovery.push(took);
        failures += acked.failures;
        eprintln!(
            "kill9 iteration {it}: killed {:.0} ms after the warm-up; acknowledged {} time-stamps, {} signatures, {} fetches; {} failed requests; restart → ready {:.0} ms",
            ms(extra),
            acked.stamps.len(),
            acked.signatures.len(),
            acked.fetches,
            acked.failures,
            ms(took)
        );
        for (serial, digest, _) in &acked.stamps {
            if let Some(prev) = tsa_serials.insert(*serial, it) {
                panic!("TSA serial {serial} handed out twice (iterations {prev} and {it})");
            }
            stamps.push((*serial, *digest));
        }
        for (signed, _) in &acked.signatures {
            if let Some(prev) = cert_serials.insert(signed.cert_serial.clone(), it) {
                panic!(
                    "certificate serial {} issued twice (iterations {prev} and {it})",
                    signed.cert_serial
                );
            }
            signatures.push(signed.id.clone());
        }
        // Every signature acknowledged so far survived the kill.
        for id in &signatures {
            let r = env.call("GET", &format!("/v1/sign/response/{id}"), &[]);
            assert_eq!(
                r.status,
                200,
                "acknowledged signature {id} lost after the kill of iteration {it}: {}",
                String::from_utf8_lossy(&r.body)
            );
            assert!(
                r.json()["signature"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty())
            );
        }
    }
    assert!(!stamps.is_empty() && !signatures.is_empty());

    // Audit: every acknowledged signature has its creation event.
    let events = load::audit_events(&env);
    let created: HashSet<&str> = events
        .iter()
        .filter(|e| e["event"] == "signature.created")
        .filter_map(|e| e["signatureId"].as_str())
        .collect();
    let missing: Vec<&String> = signatures
        .iter()
        .filter(|id| !created.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged signatures have no signature.created audit event: {:?}",
        missing.len(),
        signatures.len(),
        &missing[..missing.len().min(10)]
    );

    // ... and every acknowledged time-stamp its `timestamp.issued` event (serial and imprint).
    let issued: HashMap<u64, &str> = events
        .iter()
        .filter(|e| e["event"] == "timestamp.issued")
        .filter_map(|e| Some((e["tsaSerial"].as_u64()?, e["digest"].as_str().unwrap_or(""))))
        .collect();
    let unaudited: Vec<u64> = stamps
        .iter()
        .filter(|(serial, digest)| issued.get(serial) != Some(&hex::encode(digest).as_str()))
        .map(|(s, _)| *s)
        .collect();
    assert!(
        unaudited.is_empty(),
        "{} of {} acknowledged time-stamps have no timestamp.issued audit event with their imprint: {:?}",
        unaudited.len(),
        stamps.len(),
        &unaudited[..unaudited.len().min(20)]
    );

    // Time-stamps: every acknowledged token is in the TSA's issued-token journal (with the daemon killed
    // once more: the store opens as soon as the process is gone).
    env.daemon.signal(nix::sys::signal::Signal::SIGKILL);
    let db = env.path("data").join("db");
    let deadline = Instant::now() + Duration::from_secs(30);
    let store = loop {
        match esigd_store::Store::open(&db, esigd_store::StoreOptions::default()) {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "store does not open: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let journal = esigd_store::persist::RocksImprintLog::new(store);
    let lost: Vec<u64> = stamps
        .iter()
        .filter(|(serial, digest)| {
            journal
                .get(*serial)
                .unwrap()
                .is_none_or(|r| r.imprint.as_slice() != digest.as_slice())
        })
        .map(|(s, _)| *s)
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged time-stamps have no journal record: {:?}",
        lost.len(),
        stamps.len(),
        &lost[..lost.len().min(20)]
    );

    let mut sorted: Vec<f64> = recovery.iter().map(|d| ms(*d)).collect();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
    eprintln!(
        "kill9 summary: iterations={iterations} time_stamps={} signatures={} failed_requests={failures} lost_signatures=0 lost_time_stamps=0 duplicate_tsa_serials=0 duplicate_cert_serials=0 recovery_ms_median={:.0} recovery_ms_p90={:.0} recovery_ms_max={:.0}",
        stamps.len(),
        signatures.len(),
        pct(0.5),
        pct(0.9),
        pct(1.0)
    );
}

/// The short soak (the CI form of `benches/soak.rs`): the mixed load paced at half the probed maximum for
/// `ESIGD_SOAK_MINUTES` (default 2), a sample every 10 s; fails when RSS or open fds trend upwards or p99
/// drifts (the checks and limits of `esigd_testkit::soak`). Two minutes cannot tell RocksDB's memtables and
/// block cache filling up to their bounds (`[store] memtable_budget_mib` 32 + `block_cache_mib` 16 by
/// default) from a leak, so the RSS limit here is `ESIGD_SOAK_RSS_KIB_PER_MIN`, default 16384 KiB/min: it
/// catches gross leaks (several KiB per request); the long run of `benches/soak.rs` is the real check.
#[test]
fn soak_at_half_load_keeps_rss_fds_and_p99_flat() {
    use esigd_testkit::soak::{SoakSpec, Thresholds, soak};
    let minutes: f64 = std::env::var("ESIGD_SOAK_MINUTES")
        .ok()
        .map(|v| v.parse().expect("ESIGD_SOAK_MINUTES: a number"))
        .unwrap_or(2.0);
    let rss: f64 = std::env::var("ESIGD_SOAK_RSS_KIB_PER_MIN")
        .ok()
        .map(|v| v.parse().expect("ESIGD_SOAK_RSS_KIB_PER_MIN: a number"))
        .unwrap_or(16384.0);
    let env = OneTimeEnv::start();
    let report = soak(
        &env,
        &SoakSpec {
            duration: Duration::from_secs_f64(minutes * 60.0),
            sample: Duration::from_secs(10),
            probe: Duration::from_secs(10),
            thresholds: Thresholds {
                rss_kib_per_min: rss,
                ..Thresholds::default()
            },
        },
    );
    assert!(
        report.passed(),
        "soak failed: {:#?}",
        report
            .checks
            .iter()
            .filter(|c| !c.0)
            .map(|c| &c.1)
            .collect::<Vec<_>>()
    );
}
