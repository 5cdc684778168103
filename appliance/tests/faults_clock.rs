//! The clock fault (issue #16): the kernel's clock discipline cannot be changed in a test, so the
//! service is built in process (`esigd::wiring::build_service`, the daemon's own wiring, real
//! SoftHSM token and RocksDB store) with an injected clock discipline the test switches, and the
//! real `/metrics` registry as its meter with the clock probe `esigd serve` installs. While the
//! discipline says unsynchronised, the TSA answers `rejection` / `timeNotAvailable`, the readiness
//! `clock` check fails and `/metrics` shows `esigd_clock_synchronized 0` and counts the refusals
//! under `esigd_tsa_tokens_total{result="clock_unsynchronized"}`; once
//! synchronised again, tokens are granted at once. Times are printed
//! (`cargo test --test faults_clock -- --nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use esigd_hsm::testing::TestToken;
use esigd_tsa::{ClockStatus, FixedClock};

/// A clock discipline the test switches while the service runs.
struct SwitchableClock(Mutex<ClockStatus>);

impl esigd_tsa::ClockState for SwitchableClock {
    fn status(&self) -> Result<ClockStatus, esigd_tsa::ClockError> {
        Ok(*self.0.lock().unwrap())
    }
}

fn openssl(args: &[&str], dir: &Path) -> String {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(key))
        .map(str::trim)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsynchronised_clock_refuses_time_stamps_and_resumes_when_synchronised() {
    let dir = tempfile::tempdir().unwrap();
    let token = TestToken::create();
    let clock = Arc::new(SwitchableClock(Mutex::new(
        FixedClock::synchronized(Duration::from_millis(10)).0,
    )));
    let data = dir.path().join("data");
    let discipline: esigd_service::clock::ClockDiscipline = clock.clone();
    let metrics = Arc::new(esigd_web::metrics::Metrics::new().unwrap());
    let svc = tokio::task::block_in_place(|| {
        let hsm = esigd_hsm::Hsm::open(token.config()).unwrap();
        let mut cfg = esigd::config::Config::dev_defaults(&data);
        cfg.tsa.allow_unsynchronized_clock = false;
        cfg.tsa.accuracy = Duration::from_secs(1);
        let tls = esigd::devsetup::ensure_dev_tls(&cfg).unwrap();
        esigd::devsetup::apply_dev_registrations(&mut cfg, &tls).unwrap();
        esigd::wiring::build_service(
            &cfg,
            hsm,
            metrics.clone(),
            esigd_service::clock::system(),
            discipline,
        )
        .unwrap()
    });
    // The scrape-time probe `esigd serve` installs (appliance/src/main.rs, install_probes).
    let probe = svc.discipline.clone();
    metrics.set_clock_probe(Box::new(move || {
        probe
            .status()
            .ok()
            .map(|s| (s.synchronized, s.max_error.as_secs_f64()))
    }));

    let w = dir.path();
    std::fs::write(w.join("doc.txt"), b"clock fault\n").unwrap();
    std::fs::copy(data.join("pki/ca.pem"), w.join("ca.pem")).unwrap();
    openssl(
        &[
            "ts", "-query", "-data", "doc.txt", "-sha256", "-cert", "-out", "q.tsq",
        ],
        w,
    );
    let query = std::fs::read(w.join("q.tsq")).unwrap();
    let mut n = 0;
    let mut stamp = async |svc: &esigd_service::service::Service| {
        n += 1;
        let t0 = Instant::now();
        let reply = svc.stamp_queue.stamp(query.clone()).await.unwrap();
        let took = t0.elapsed();
        let r = format!("r{n}.tsr");
        std::fs::write(w.join(&r), &reply).unwrap();
        let t = openssl(&["ts", "-reply", "-in", &r, "-text"], w);
        (
            field(&t, "Status:").unwrap_or("?").to_string(),
            field(&t, "Failure info:").map(str::to_string),
            took,
        )
    };
    let clock_check = |svc: &esigd_service::service::Service| {
        tokio::task::block_in_place(|| {
            svc.readiness()
                .into_iter()
                .find(|(name, _)| *name == "clock")
                .map(|(_, r)| r)
                .unwrap()
        })
    };

    // Synchronised: granted, ready, metric 1.
    let (status, _, _) = stamp(&svc).await;
    assert_eq!(status, "Granted.");
    assert_eq!(clock_check(&svc), Ok(()));
    assert!(metrics.render().contains("esigd_clock_synchronized 1\n"));

    // The discipline loses synchronisation.
    *clock.0.lock().unwrap() = FixedClock::unsynchronized().0;
    let mut refusals = Vec::new();
    for _ in 0..3 {
        let (status, failure, took) = stamp(&svc).await;
        assert_eq!(status, "Rejected.");
        assert_eq!(
            failure.as_deref(),
            Some("the TSA's time source is not available")
        );
        refusals.push(took);
    }
    let check = clock_check(&svc);
    assert!(check.is_err(), "readiness clock check: {check:?}");
    let text = metrics.render();
    assert!(text.contains("esigd_clock_synchronized 0\n"), "{text}");
    assert!(
        text.contains("esigd_clock_max_error_seconds 16\n"),
        "{text}"
    );
    assert!(
        text.contains("esigd_tsa_tokens_total{result=\"clock_unsynchronized\"} 3\n"),
        "the three refusals are not counted:\n{text}"
    );

    // Synchronised again: the next request is granted (the discipline is read per request).
    *clock.0.lock().unwrap() = FixedClock::synchronized(Duration::from_millis(20)).0;
    let t_sync = Instant::now();
    let (status, _, _) = stamp(&svc).await;
    let recovery = t_sync.elapsed();
    assert_eq!(status, "Granted.");
    openssl(
        &[
            "ts",
            "-verify",
            "-queryfile",
            "q.tsq",
            "-in",
            &format!("r{n}.tsr"),
            "-CAfile",
            "ca.pem",
        ],
        w,
    );
    assert_eq!(clock_check(&svc), Ok(()));
    let text = metrics.render();
    assert!(text.contains("esigd_clock_synchronized 1\n"), "{text}");
    assert!(
        text.contains("esigd_tsa_tokens_total{result=\"granted\"} 2\n"),
        "{text}"
    );
    println!(
        "CLOCK unsynchronised: timeNotAvailable in {refusals:?}, readiness clock: {check:?}; \
         synchronised → first granted token {recovery:?}"
    );
    tokio::task::block_in_place(|| svc.stamp_queue.close());
}
