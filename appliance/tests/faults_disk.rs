//! Disk full under the store (issue #16), against the running `esigd` binary: the data directory
//! is moved onto a small tmpfs, one-time signatures run while a file fills the tmpfs, then the file
//! is removed. Expected: `503` with `Retry-After` while the disk is full (never a `500`, never a
//! hang), a log line naming the store and the full disk, `/readyz` naming the `store` check; once
//! space is free, one-time signing and time-stamping resume WITHOUT a restart (the store reopens its
//! database by itself) and `/readyz` is 200 again; no acknowledged signature is lost (each is
//! fetchable from the same process, and again after a restart). The measured times are printed
//! (`cargo nextest run -p esigd --test faults_disk --no-capture`). Needs root (mount).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use esigd_testkit::onetime_env::OneTimeEnv;
use esigd_testkit::tsa_pki_status;
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

/// One `POST /tsa`: (HTTP status, PKIStatus, has Retry-After, took).
fn timestamp(env: &OneTimeEnv, query: &Path) -> (u16, Option<u8>, bool, Duration) {
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
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        code,
        tsa_pki_status(&raw[split..]),
        head.contains("retry-after:"),
        took,
    )
}

/// A time-stamp was granted (status granted or grantedWithMods).
fn granted(t: &(u16, Option<u8>, bool, Duration)) -> bool {
    t.0 == 200 && matches!(t.1, Some(0 | 1))
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
    // The data directory onto a tmpfs with 7 MiB free (RocksDB's files copied across). Less than
    // the WAL preallocation block (1.1 × a column family's memtable, 8.8 MiB by default): with more
    // room RocksDB reserves that block at the first write and signing goes on in it for thousands of
    // signatures after the filler took the rest of the disk.
    env.restart("esigd-tmpfs.log", |data| {
        let orig = data.with_file_name("data.orig");
        std::fs::rename(data, &orig).unwrap();
        let size = du_bytes(&orig) + (7 << 20);
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
    let query = env.path("q.tsq");
    std::fs::write(env.path("doc.txt"), b"disk probe\n").unwrap();
    let o = Command::new("openssl")
        .args(["ts", "-query", "-data"])
        .arg(env.path("doc.txt"))
        .args(["-sha256", "-cert", "-out"])
        .arg(&query)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ts = timestamp(&env, &query);
    assert!(granted(&ts), "time-stamp before the fault: {ts:?}");
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

    let ts_full = timestamp(&env, &query);
    assert!(
        ts_full.3 < Duration::from_secs(10),
        "a time-stamp took {:?} on a full disk (must fail fast)",
        ts_full.3
    );
    assert!(
        granted(&ts_full)
            || ts_full.0 == 200 && ts_full.1 == Some(2)
            || ts_full.0 == 503 && ts_full.2,
        "time-stamp on a full disk: {ts_full:?}"
    );
    println!(
        "DISK full: time-stamp {} in {:?}",
        if granted(&ts_full) {
            "granted (no store write needed)".to_string()
        } else {
            format!("HTTP {} PKIStatus {:?}", ts_full.0, ts_full.1)
        },
        ts_full.3
    );

    // Space back: signing and time-stamping must resume WITHOUT a restart (the store reopens its
    // database by itself, checking once a second).
    std::fs::remove_file(&filler).unwrap();
    let t_free = Instant::now();
    let mut signed_after = None;
    let mut stamped_after = None;
    let mut ready_after = None;
    while signed_after.is_none() || stamped_after.is_none() || ready_after.is_none() {
        if signed_after.is_none() {
            n += 1;
            let (s, _, id, _, m) = sign(&env, n);
            match s {
                200 => {
                    acknowledged.push(id.unwrap());
                    signed_after = Some(t_free.elapsed());
                }
                503 => {}
                s => panic!("after freeing space: {s}: {m}"),
            }
        }
        if stamped_after.is_none() && granted(&timestamp(&env, &query)) {
            stamped_after = Some(t_free.elapsed());
        }
        if ready_after.is_none() && readyz(&env).0 == 200 {
            ready_after = Some(t_free.elapsed());
        }
        assert!(
            t_free.elapsed() < Duration::from_secs(30),
            "no recovery within 30 s of freeing space without a restart (signature {signed_after:?}, \
             time-stamp {stamped_after:?}, readyz {ready_after:?}):\n{}",
            env.daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = env.daemon.log_text();
    let reopened = log
        .lines()
        .find(|l| l.contains("store writable again"))
        .unwrap_or("(no \"store writable again\" line)")
        .to_string();
    println!(
        "DISK recovered without restart: space freed → first one-time signature {:?}, first \
         time-stamp {:?}, /readyz 200 {:?}; log: {reopened}",
        signed_after.unwrap(),
        stamped_after.unwrap(),
        ready_after.unwrap()
    );
    // A few more, then every acknowledged signature from the same process.
    for _ in 0..3 {
        n += 1;
        let (s, _, id, _, m) = sign(&env, n);
        assert_eq!(s, 200, "after recovery: {m}");
        acknowledged.push(id.unwrap());
    }
    for id in &acknowledged {
        let r = env.call("GET", &format!("/v1/sign/response/{id}"), &[]);
        assert_eq!(
            r.status,
            200,
            "acknowledged signature {id} not readable after recovery: {}",
            r.message()
        );
    }

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
