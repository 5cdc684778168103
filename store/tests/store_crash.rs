//! Crash test: every write acknowledged before a `kill -9` is present after reopen.
//!
//! The parent test re-runs this test binary as a child (`crash_child_writer`, selected by an environment
//! variable and `--ignored`), which writes from several threads and prints `ACK <key>` after each acknowledged
//! commit. The parent kills it with SIGKILL mid-stream, then reopens the store and checks every acked key.
//!
//! SIGKILL does not drop the page cache, so this proves "acknowledged only after the write reached RocksDB's
//! WAL"; the `sync=true` part (surviving power loss) is not observable from a test.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use esigd_store::{Batch, Cf, Store, StoreOptions};

const DIR_ENV: &str = "ESIGD_STORE_CRASH_DIR";
const THREADS: usize = 4;

#[test]
#[ignore = "child process of acked_writes_survive_kill_9; runs only when ESIGD_STORE_CRASH_DIR is set"]
fn crash_child_writer() {
    let dir = std::env::var(DIR_ENV).expect("ESIGD_STORE_CRASH_DIR");
    let store = Store::open(&dir, StoreOptions::default()).unwrap();
    let out = std::sync::Mutex::new(std::io::stdout());
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (store, out) = (store.clone(), &out);
            s.spawn(move || {
                // Runs until killed.
                for i in 0u64.. {
                    let key = format!("t{t}-{i:08}");
                    let mut b = Batch::new();
                    b.put(Cf::Signatures, key.clone(), format!("value-of-{key}"));
                    b.put(Cf::Audit, format!("audit-{key}"), "a");
                    store.commit_blocking(b).unwrap();
                    let mut out = out.lock().unwrap();
                    writeln!(out, "ACK {key}").unwrap();
                    out.flush().unwrap();
                }
            });
        }
    });
}

#[test]
fn acked_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "crash_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    while acked.len() < 400 {
        let line = lines.next().expect("child ended before 400 acks").unwrap();
        if let Some(key) = line.strip_prefix("ACK ") {
            acked.push(key.to_owned());
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the child must have been killed, got {status:?}"
    );
    // Acks printed between the threshold and the kill count too.
    for line in lines {
        let line = line.unwrap();
        if let Some(key) = line.strip_prefix("ACK ") {
            acked.push(key.to_owned());
        }
    }

    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    for key in &acked {
        let v = store.get(Cf::Signatures, key.as_bytes()).unwrap();
        assert_eq!(
            v,
            Some(format!("value-of-{key}").into_bytes()),
            "acked key {key} lost"
        );
        let a = store
            .get(Cf::Audit, format!("audit-{key}").as_bytes())
            .unwrap();
        assert!(a.is_some(), "half of the batch of {key} lost");
    }
    // Each child thread's keys are dense up to its last ack (a batch is atomic and acks are in order per thread).
    for t in 0..THREADS {
        let stored = store
            .scan_prefix(Cf::Signatures, format!("t{t}-").as_bytes(), usize::MAX)
            .unwrap();
        let acked_t = acked
            .iter()
            .filter(|k| k.starts_with(&format!("t{t}-")))
            .count();
        assert!(
            stored.len() >= acked_t,
            "thread {t}: {} stored < {acked_t} acked",
            stored.len()
        );
    }
}
