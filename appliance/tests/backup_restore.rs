//! `esigd backup` / `esigd restore` round trip against the real daemon (SoftHSM token, RocksDB, the
//! development Identity BB for one-time signatures):
//!
//! 1. time-stamps over HTTP and one-time signatures (9.1) run from threads; `esigd backup` is taken in the
//!    middle of the load, signing goes on; every acknowledged serial and signature ID is recorded;
//! 2. the daemon stops; the backup is restored into a FRESH data directory (same HSM token): the backup is
//!    the newest state, so no `--force` is needed; the daemon starts there: everything acknowledged before
//!    the backup is there, new serials and the next CRL number are above everything issued before; a restore
//!    over the live directory is refused;
//! 3. the same (now older) backup is refused without `--force`, with a message naming the marks, and over a
//!    non-empty store; with `--force` it is restored and serials and CRL numbers still continue above
//!    everything ever issued (also by the run of step 2).
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use esigd_testkit::load::{self, Acked, LoadSpec, StopOnPanic, TsaConn, one_time_signature, stamp};
use esigd_testkit::onetime_env::OneTimeEnv;
use esigd_testkit::{Daemon, SERVE, esigd, text};
use sha2::Digest;

/// The ID-token client secret the environment's configuration reads from the environment.
const SECRET_ENV: (&str, &str) = ("ESIGD_TEST_UNUSED_SECRET", "x");

/// `esigd --config cfg args…`.
fn esigd_cmd(cfg: &Path, args: &[&str]) -> Output {
    esigd()
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env(SECRET_ENV.0, SECRET_ENV.1)
        .output()
        .unwrap()
}

fn esigd_ok(cfg: &Path, args: &[&str]) -> String {
    let o = esigd_cmd(cfg, args);
    assert!(o.status.success(), "esigd {args:?} failed:\n{}", text(&o));
    text(&o)
}

fn esigd_refused(cfg: &Path, args: &[&str]) -> String {
    let o = esigd_cmd(cfg, args);
    assert!(
        !o.status.success(),
        "esigd {args:?} should fail:\n{}",
        text(&o)
    );
    text(&o)
}

/// `esigd serve` with `cfg`.
fn serve(cfg: &Path, log: PathBuf) -> Daemon {
    let mut cmd = esigd();
    cmd.arg("--config")
        .arg(cfg)
        .args(SERVE)
        .env(SECRET_ENV.0, SECRET_ENV.1);
    Daemon::start_logged(cmd, log)
}

/// A stand-in that holds `OneTimeEnv::daemon` while the real daemon is stopped (the environment's
/// helpers read the daemon's addresses from that field): a shell that prints a banner and sleeps.
fn placeholder() -> Daemon {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(
        "printf 'public listener    http://127.0.0.1:9\\ne-Service listener https://127.0.0.1:9\\nready\\n'; exec sleep 600",
    );
    Daemon::start(cmd)
}

/// A configuration equal to `cfg` but with `data_dir = data`.
fn config_with_data_dir(cfg: &Path, old: &Path, data: &Path, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(cfg).unwrap();
    let from = format!("data_dir = {old:?}");
    assert!(text.contains(&from), "{text}");
    let out = cfg.with_file_name(name);
    std::fs::write(&out, text.replace(&from, &format!("data_dir = {data:?}"))).unwrap();
    out
}

/// The CRL number of the daemon's current CRL (`GET /pki/crl`, read by openssl).
fn crl_number(d: &Daemon, work: &Path) -> u64 {
    let (status, der) = d.get("/pki/crl", &[]);
    assert_eq!(status, 200);
    let file = work.join("crl.der");
    std::fs::write(&file, der).unwrap();
    let o = Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-crlnumber", "-in"])
        .arg(&file)
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let hex = out
        .trim()
        .strip_prefix("crlNumber=")
        .unwrap_or_else(|| panic!("{out}"));
    u64::from_str_radix(hex.trim_start_matches("0x"), 16).unwrap()
}

/// Time-stamps `n` documents on a fresh connection: their serials.
fn stamps(d: &Daemon, run: u64, n: u64) -> Vec<u64> {
    let mut conn = TsaConn::open(&d.public);
    (0..n)
        .map(|i| {
            stamp(
                &mut conn,
                (run << 48) | i,
                format!("after {run}/{i}").as_bytes(),
            )
            .0
        })
        .collect()
}

/// Every time-stamp in `expected` has its record in the store of `data` (daemon stopped).
fn assert_stamps_in_store(data: &Path, expected: &[(u64, [u8; 32], Instant)]) {
    let store =
        esigd_store::Store::open(data.join("db"), esigd_store::StoreOptions::default()).unwrap();
    let log = esigd_store::persist::RocksImprintLog::new(store);
    let missing: Vec<u64> = expected
        .iter()
        .filter(|(serial, digest, _)| {
            log.get(*serial)
                .unwrap()
                .is_none_or(|r| r.imprint.as_slice() != digest.as_slice())
        })
        .map(|(s, _, _)| *s)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} time-stamps acknowledged before the backup are missing after the restore: {:?}",
        missing.len(),
        expected.len(),
        &missing[..missing.len().min(20)]
    );
}

/// Every signature in `ids` is fetchable from the running daemon.
fn assert_signatures_fetchable(env: &OneTimeEnv, ids: &[String]) {
    for id in ids {
        let r = env.call("GET", &format!("/v1/sign/response/{id}"), &[]);
        assert_eq!(r.status, 200, "signature {id}: {}", r.message());
        assert!(
            r.json()["signature"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        );
    }
}

#[test]
fn backup_mid_load_restores_into_a_fresh_directory_and_serials_never_go_backwards() {
    let mut env = OneTimeEnv::start();
    let cfg1 = env.path("esigd.toml");
    let data1 = env.path("data");
    let work = env.path("work");
    std::fs::create_dir_all(&work).unwrap();
    let crl_before = crl_number(&env.daemon, &work);

    // ---- Run 1: load, a backup in the middle of it, more load.
    let acked = Mutex::new(Acked::default());
    let stop = AtomicBool::new(false);
    let backup1 = env.path("backup-1");
    let backup_started = std::thread::scope(|s| {
        // Three time-stamp clients at a steady, modest rate (10 ms apart: the test needs interleaving, not
        // throughput; run 1 must stay inside the first serial block, 3,072 serials before the next
        // reservation, or the backup would already be older than the HSM's marks when it is restored) and
        // one thread of one-time signatures.
        s.spawn(|| load::run(&env, &LoadSpec::default(), 1, &stop, &acked));
        let _stop = StopOnPanic(&stop);
        load::wait_for(&acked, &stop, 150, 3, Duration::from_secs(300));
        let started = Instant::now();
        let out = esigd_ok(&cfg1, &["backup", backup1.to_str().unwrap()]);
        assert!(out.contains("backup written to"), "{out}");
        let after_backup = {
            let a = acked.lock().unwrap();
            (a.stamps.len(), a.signatures.len())
        };
        // Signing went on during and after the backup.
        load::wait_for(
            &acked,
            &stop,
            after_backup.0 + 150,
            after_backup.1 + 2,
            Duration::from_secs(300),
        );
        stop.store(true, Ordering::SeqCst);
        started
    });
    let acked = acked.into_inner().unwrap();
    let all_run1: Vec<u64> = acked.stamps.iter().map(|s| s.0).collect();
    let before: Vec<_> = acked
        .stamps
        .iter()
        .filter(|s| s.2 < backup_started)
        .cloned()
        .collect();
    let sigs_before: Vec<String> = acked
        .signatures
        .iter()
        .filter(|s| s.1 < backup_started)
        .map(|s| s.0.id.clone())
        .collect();
    let after = acked.stamps.len() - before.len();
    assert!(
        before.len() >= 150 && after >= 150,
        "{} / {after}",
        before.len()
    );
    assert!(sigs_before.len() >= 3);

    // The manifest: format, marks, counts, every file hashed.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup1.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["format"], "esigd-backup");
    assert_eq!(manifest["format_version"], 1);
    let backup_marks = manifest["marks"].clone();
    let backup_tsa_mark = backup_marks["tsa_serial_mark"].as_u64().unwrap();
    assert!(
        before.iter().all(|s| s.0 < backup_tsa_mark),
        "the backup's TSA mark {backup_tsa_mark} covers every serial acknowledged before it"
    );
    assert_eq!(backup_marks["crl_number"].as_u64(), Some(crl_before));
    assert!(
        manifest["column_families"]["signatures"].as_u64().unwrap() >= sigs_before.len() as u64
    );
    let files = manifest["files"].as_array().unwrap();
    for name in ["db/CURRENT", "pki/ca.pem", "pki/tsa.pem"] {
        let f = files
            .iter()
            .find(|f| f["path"] == name)
            .unwrap_or_else(|| panic!("{name}"));
        let bytes = std::fs::read(backup1.join(name)).unwrap();
        assert_eq!(
            f["sha256"],
            hex::encode(sha2::Sha256::digest(&bytes)),
            "{name}"
        );
    }

    // The setting of this test: run 1 stayed inside its first serial block (no reservation after the
    // backup), so the backup is the newest state when it is restored below.
    let max_run1 = *all_run1.iter().max().unwrap();
    assert!(
        max_run1 + 1025 < backup_tsa_mark,
        "run 1 reached serial {max_run1}: past the low-water mark of the block below {backup_tsa_mark}; slow the load down"
    );

    // Restoring over the live directory is refused, even with --force.
    let out = esigd_refused(&cfg1, &["restore", backup1.to_str().unwrap(), "--force"]);
    assert!(
        out.contains("esigd is running on this data directory"),
        "{out}"
    );

    // The marks went to the HSM (the block reserved at start, the CRL); their cost, for the record.
    let log = env.daemon.log_text();
    let recorded: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("high-water marks recorded in the HSM"))
        .collect();
    assert!(!recorded.is_empty(), "no marks recorded in the HSM:\n{log}");
    for l in &recorded {
        eprintln!("{l}");
    }
    let d1 = std::mem::replace(&mut env.daemon, placeholder());
    d1.stop();

    // ---- Restore into a fresh data directory (same HSM token): the backup is the newest state.
    let data2 = env.path("data-2");
    let cfg2 = config_with_data_dir(&cfg1, &data1, &data2, "esigd-2.toml");
    let out = esigd_ok(&cfg2, &["restore", backup1.to_str().unwrap()]);
    assert!(out.contains("restored"), "{out}");
    assert!(!out.contains("WARNING"), "{out}");
    env.daemon = serve(&cfg2, env.path("esigd-2.log"));
    assert_signatures_fetchable(&env, &sigs_before);
    let run2 = stamps(&env.daemon, 2, 50);
    assert!(
        run2.iter().all(|s| *s > max_run1),
        "after the restore, serials {:?}… are not all above {max_run1}, the largest issued before",
        &run2[..3]
    );
    let crl2 = crl_number(&env.daemon, &work);
    assert!(
        crl2 > crl_before,
        "CRL number {crl2} after the restore, {crl_before} before"
    );
    let sig2 = one_time_signature(&env, 99);
    // A restore over the live directory is refused.
    let out = esigd_refused(&cfg2, &["restore", backup1.to_str().unwrap(), "--force"]);
    assert!(
        out.contains("esigd is running on this data directory"),
        "{out}"
    );
    let d2 = std::mem::replace(&mut env.daemon, placeholder());
    d2.stop();
    assert_stamps_in_store(&data2, &before);

    // ---- The same backup is now older than what run 2 published.
    let data3 = env.path("data-3");
    let cfg3 = config_with_data_dir(&cfg1, &data1, &data3, "esigd-3.toml");
    let out = esigd_refused(&cfg3, &["restore", backup1.to_str().unwrap()]);
    assert!(
        out.contains("older than what was already published")
            && out.contains(&format!(
                "tsa_serial_mark {backup_tsa_mark} in the backup <"
            ))
            && out.contains(&format!(
                "crl_number {crl_before} in the backup < {crl2} recorded in the HSM"
            ))
            && out.contains("--force"),
        "{out}"
    );
    assert!(
        !data3.join("db").exists(),
        "a refused restore wrote nothing"
    );
    // Over a directory that has a store: refused without --force.
    let out = esigd_refused(&cfg2, &["restore", backup1.to_str().unwrap()]);
    assert!(out.contains("already holds a store"), "{out}");
    // --force: restored with a warning, the marks lifted above the HSM's.
    let out = esigd_ok(&cfg3, &["restore", backup1.to_str().unwrap(), "--force"]);
    assert!(
        out.contains("WARNING") && out.contains("raised to the HSM's marks"),
        "{out}"
    );
    let max_run2 = *run2.iter().max().unwrap();
    {
        // The restored store itself (before any start) continues above everything issued.
        let store =
            esigd_store::Store::open(data3.join("db"), esigd_store::StoreOptions::default())
                .unwrap();
        let m = store.marks().unwrap();
        assert!(
            m.tsa_serial_mark > max_run2 && m.crl_number >= crl2,
            "restored store {m}; run 2 issued serials up to {max_run2} and CRL {crl2}"
        );
    }
    env.daemon = serve(&cfg3, env.path("esigd-3.log"));
    assert_signatures_fetchable(&env, &sigs_before);
    let run3 = stamps(&env.daemon, 3, 20);
    assert!(
        run3.iter().all(|s| *s > max_run2 && *s > max_run1),
        "after the forced restore, serials {:?}… are not above {max_run2}",
        &run3[..3]
    );
    let crl3 = crl_number(&env.daemon, &work);
    assert!(
        crl3 > crl2,
        "CRL number {crl3} after the forced restore, {crl2} before"
    );
    // The signature made in run 2 is not in the older backup: lost, as the warning said.
    let r = env.call("GET", &format!("/v1/sign/response/{sig2}"), &[]);
    assert_eq!(r.status, 404);
    let d3 = std::mem::replace(&mut env.daemon, placeholder());
    d3.stop();
    assert_stamps_in_store(&data3, &before);

    // ---- The old backup copied back by hand, without `esigd restore`: the daemon itself lifts the store
    // above the HSM's marks at start (with a warning), so serials and CRL numbers still never repeat.
    let data4 = env.path("data-4");
    let cfg4 = config_with_data_dir(&cfg1, &data1, &data4, "esigd-4.toml");
    for sub in ["db", "pki"] {
        std::fs::create_dir_all(data4.join(sub)).unwrap();
        for e in std::fs::read_dir(backup1.join(sub)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), data4.join(sub).join(e.file_name())).unwrap();
        }
    }
    let d4 = serve(&cfg4, env.path("esigd-4.log"));
    let max_run3 = *run3.iter().max().unwrap();
    let run4 = stamps(&d4, 4, 20);
    assert!(
        run4.iter().all(|s| *s > max_run3),
        "a store copied back by hand hands out serials {:?}… at or below {max_run3}",
        &run4[..3]
    );
    let crl4 = crl_number(&d4, &work);
    assert!(
        crl4 > crl3,
        "CRL number {crl4} after a copy by hand, {crl3} before"
    );
    assert!(
        d4.log_text()
            .contains("the store is behind the high-water marks recorded in the HSM"),
        "{}",
        d4.log_text()
    );
    d4.stop();
}
