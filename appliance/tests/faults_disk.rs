//! Disk full under the store (issue #16), against the running `esigd` binary: the data directory
//! is moved onto a small tmpfs, one-time signatures run while a file fills the tmpfs, then the file
//! is removed. Expected: `503` with `Retry-After` while the disk is full (never a `500`, never a
//! hang), a log line naming the store and the full disk, `/readyz` naming the `store` check, no
//! acknowledged signature lost (each is fetchable afterwards, also after a restart: the store
//! reopens), and signing resumes without a restart once space is free. The measured times are
//! printed (`cargo test --test faults_disk -- --nocapture`). Needs root (mount).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use esigd_testkit::onetime_env::OneTimeEnv;
use sha2::{Digest, Sha256};

/// A tmpfs mounted by this test; unmounted (and its mount point removed) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size_bytes: u64) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size_bytes}"))
            .arg("esigd-faults")
            .arg(at)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "mount -t tmpfs (the test needs root): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn du_bytes(p: &Path) -> u64 {
    let o = Command::new("du").args(["-sb"]).arg(p).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap()
}

/// One one-time signature: (status, has Retry-After, signatureId, took).
fn sign(env: &OneTimeEnv, n: usize) -> (u16, bool, Option<String>, Duration, String) {
    let digest = Sha256::digest(format!("disk probe {n}").as_bytes());
    let body = serde_json::json!({
        "format": "CAdES",
        "hash": B64.encode(digest),
        "hashType": "SHA2-256",
        "dataToBeDisplayed": "Disk probe",
        "requestTimestamp": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    });
    let t0 = Instant::now();
    let r = env.post(&body);
    let took = t0.elapsed();
    let retry = r.headers.to_ascii_lowercase().contains("retry-after:");
    let id = (r.status == 200)
        .then(|| r.json()["signatureId"].as_str().map(str::to_string))
        .flatten();
    (r.status, retry, id, took, r.message())
}

fn readyz(env: &OneTimeEnv) -> (u16, serde_json::Value) {
    let (code, body) = env.daemon.get("/readyz", &["--max-time", "30"]);
    (code, serde_json::from_slice(&body).unwrap_or_default())
}

/// Fills the file system holding `path` with `path` (until ENOSPC).
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5a_u8; 256 << 10];
    let mut n = 0u64;
    while f.write_all(&chunk).is_ok() {
        n += chunk.len() as u64;
    }
    // The last partial chunk, byte pages at a time.
    while f.write_all(&chunk[..4096]).is_ok() {
        n += 4096;
    }
    let _ = f.flush();
    n
}

#[test]
fn disk_full_refuses_with_503_loses_nothing_and_resumes_when_space_is_free() {
    let mut mnt: Option<Tmpfs> = None;
    let mut env = OneTimeEnv::start();
    // One signature first: the daemon is fully up (signal handlers installed) before the restart.
    let (s, _, first, _, m) = sign(&env, 0);
    assert_eq!(s, 200, "{m}");
    // The data directory onto a tmpfs with 16 MiB free (RocksDB's files copied across).
    env.restart("esigd-tmpfs.log", |data| {
        let orig = data.with_file_name("data.orig");
        std::fs::rename(data, &orig).unwrap();
        let size = du_bytes(&orig) + (16 << 20);
        mnt = Some(Tmpfs::mount(data, size));
        let o = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", orig.display()))
            .arg(data)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    });
    let data = env.path("data");
    let mut acknowledged = vec![first.unwrap()];
    let mut n = 0;
    for _ in 0..3 {
        n += 1;
        let (s, _, id, _, m) = sign(&env, n);
        assert_eq!(s, 200, "before the fault: {m}");
        acknowledged.push(id.unwrap());
    }

    let filler = data.join("filler");
    let t_full = Instant::now();
    let filled = fill(&filler);
    println!("DISK filled {filled} bytes in {:?}", t_full.elapsed());

    // Sign until refused (RocksDB may still have preallocated WAL space for a while).
    let mut refused = Vec::new();
    let mut first_refusal = None;
    while refused.len() < 3 {
        n += 1;
        let (s, retry, id, took, m) = sign(&env, n);
        assert!(
            took < Duration::from_secs(10),
            "a signature took {took:?} on a full disk (must fail fast)"
        );
        match s {
            200 => acknowledged.push(id.unwrap()),
            503 => {
                assert!(retry, "503 without Retry-After: {m}");
                first_refusal.get_or_insert((t_full.elapsed(), n));
                refused.push((took, m));
            }
            s => panic!("disk full: got {s}: {m}\nlog:\n{}", env.daemon.log_text()),
        }
        assert!(
            t_full.elapsed() < Duration::from_secs(120),
            "never refused on a full disk ({} acknowledged)",
            acknowledged.len()
        );
    }
    let (code, ready) = readyz(&env);
    assert_eq!(code, 503, "/readyz on a full disk: {ready}");
    assert_ne!(ready["checks"]["store"], "ok", "{ready}");
    assert_eq!(ready["checks"]["hsm"], "ok", "{ready}");
    let log = env.daemon.log_text();
    let full_line = log
        .lines()
        .find(|l| l.contains("store") && l.contains("No space left on device"))
        .unwrap_or_else(|| panic!("no log line naming the store and the full disk:\n{log}"))
        .to_string();
    println!(
        "DISK full: first refusal after {:?} (request #{}), {} acknowledged in total; refusals \
         {:?}; readyz {ready}; log: {full_line}",
        first_refusal.map(|f| f.0),
        first_refusal.map_or(0, |f| f.1),
        acknowledged.len(),
        refused,
    );

    // Space back: signing must resume, first probed for 30 s without a restart (RocksDB's own
    // recovery from a "no space" background error), then after restarting esigd.
    std::fs::remove_file(&filler).unwrap();
    let t_free = Instant::now();
    let mut without_restart = true;
    let mut t0 = t_free;
    let recovered = loop {
        n += 1;
        let (s, _, id, _, m) = sign(&env, n);
        match s {
            200 => {
                acknowledged.push(id.unwrap());
                break t0.elapsed();
            }
            503 => {}
            s => panic!("after freeing space: {s}: {m}"),
        }
        if without_restart && t_free.elapsed() > Duration::from_secs(30) {
            println!(
                "DISK no recovery within 30 s of freeing space without a restart; restarting esigd"
            );
            without_restart = false;
            t0 = Instant::now();
            env.restart("esigd-restarted.log", |_| {});
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "signing did not resume after freeing space (restarted: {}):\n{}",
            !without_restart,
            env.daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let ready_after = loop {
        if readyz(&env).0 == 200 {
            break t0.elapsed();
        }
        assert!(t_free.elapsed() < Duration::from_secs(120), "not ready");
        std::thread::sleep(Duration::from_millis(100));
    };
    println!(
        "DISK recovered without restart: {without_restart}; {} → first signature {recovered:?}, \
         readyz 200 after {ready_after:?}",
        if without_restart {
            "space freed"
        } else {
            "restart"
        }
    );

    // No acknowledged signature lost, and the store reopens after a restart.
    env.restart("esigd-after.log", |_| {});
    for id in &acknowledged {
        let r = env.call("GET", &format!("/v1/sign/response/{id}"), &[]);
        assert_eq!(
            r.status,
            200,
            "acknowledged signature {id} lost: {}",
            r.message()
        );
        assert!(r.json()["signature"].is_string(), "{id}");
    }
    println!(
        "DISK after restart: all {} acknowledged signatures fetched",
        acknowledged.len()
    );
    drop(env);
    drop(mnt);
}
