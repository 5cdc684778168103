#![allow(clippy::unwrap_used)] // tests and benches may unwrap
//! Disk full under the store (issue #16), on a real small file system: a tmpfs mounted under a temporary
//! directory (needs root; without it the test fails with a hint, it never skips). The store is filled up,
//! writes are refused fast with the cause and the store reports itself degraded while reads go on; once
//! space is freed, the SAME `Store` accepts writes again (the database reopened behind the shared handle),
//! every acknowledged write is readable and the audit ledger is whole (same root as recomputed from the
//! acknowledged leaves), also after a restart.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use esigd_ledger::{Frontier, leaf_hash, verify_inclusion};
use esigd_store::ledger::LedgerStore;
use esigd_store::{Batch, Cf, Store, StoreError, StoreOptions};

/// A tmpfs mounted by this test; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `options`: tmpfs mount options (`size=16m`, `nr_inodes=…`).
    fn mount(at: &Path, options: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(options)
            .arg("esigd-store-test")
            .arg(at)
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount: {e}"));
        assert!(
            o.status.success(),
            "mount -t tmpfs failed: this test needs root (or CAP_SYS_ADMIN) to mount a small file system \
             and fill it; run it as root, it is not skipped: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the file system holding `path` with the file `path` (until ENOSPC).
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5a_u8; 64 << 10];
    let mut n = 0u64;
    while f.write_all(&chunk).is_ok() {
        n += chunk.len() as u64;
    }
    while f.write_all(&chunk[..4096]).is_ok() {
        n += 4096;
    }
    let _ = f.flush();
    n
}

/// One record and one ledger leaf, as a signature commit writes them.
fn record(store: &Store, i: u64) -> Batch {
    let mut b = Batch::new();
    b.put(Cf::Signatures, key(i), value(i));
    b.append_leaf(
        store.audit_key(std::time::SystemTime::now()).to_bytes(),
        leaf(i),
        Some(format!("tx{i}").as_bytes()),
        None,
    );
    b
}

fn key(i: u64) -> Vec<u8> {
    format!("s/{i:08}").into_bytes()
}

fn value(i: u64) -> Vec<u8> {
    // Some bulk, so the disk fills within a few hundred writes.
    let mut v = format!("record {i} ").into_bytes();
    v.resize(2048, (i % 251) as u8);
    v
}

fn leaf(i: u64) -> Vec<u8> {
    format!("{{\"event\":\"signature.created\",\"n\":{i}}}").into_bytes()
}

/// Checks every acknowledged record and the ledger against what was acknowledged, in order.
fn check(store: &Store, acknowledged: &[u64]) {
    for &i in acknowledged {
        assert_eq!(
            store.get(Cf::Signatures, &key(i)).unwrap().as_deref(),
            Some(value(i).as_slice()),
            "acknowledged record {i} lost or damaged"
        );
    }
    let ledger = LedgerStore::new(store.clone());
    assert_eq!(
        ledger.size(),
        acknowledged.len() as u64,
        "one leaf per acknowledged commit, none for the refused ones"
    );
    let mut expected = Frontier::new();
    for (index, &i) in acknowledged.iter().enumerate() {
        assert_eq!(
            ledger.leaf(index as u64).unwrap(),
            Some(leaf(i)),
            "leaf {index}"
        );
        expected.append(leaf_hash(&leaf(i)));
    }
    let size = ledger.size();
    let root = ledger.root(size).unwrap();
    assert_eq!(root, expected.root(), "ledger root");
    for index in [0, size / 2, size - 1] {
        let path = ledger.inclusion(index, size).unwrap();
        assert!(verify_inclusion(
            &leaf(acknowledged[index as usize]),
            index,
            size,
            &path,
            &root
        ));
    }
}

#[test]
fn writes_resume_in_the_same_store_after_space_is_freed_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = Tmpfs::mount(&dir.path().join("mnt"), "size=16m");
    let db = mnt.0.join("db");
    let store = Store::open(&db, StoreOptions::default()).unwrap();

    let mut acknowledged = Vec::new();
    let mut n = 0u64;
    for _ in 0..50 {
        store.commit_blocking(record(&store, n)).unwrap();
        acknowledged.push(n);
        n += 1;
    }

    let filler = mnt.0.join("filler");
    let filled = fill(&filler);
    // Write until refused (RocksDB may have WAL space left).
    let t_full = Instant::now();
    let refusal = loop {
        match store.commit_blocking(record(&store, n)) {
            Ok(()) => acknowledged.push(n),
            Err(e) => break e,
        }
        n += 1;
        assert!(
            t_full.elapsed() < Duration::from_secs(60),
            "never refused on a full disk ({} acknowledged)",
            acknowledged.len()
        );
    };
    n += 1;
    println!(
        "STORE filled {filled} bytes; first refusal after {:?} ({} acknowledged): {refusal}",
        t_full.elapsed(),
        acknowledged.len()
    );
    assert!(
        matches!(&refusal, StoreError::Write(m) if m.contains("No space left on device")),
        "{refusal:?}"
    );
    let degraded = store.degraded().expect("degraded after the failed write");
    assert!(degraded.contains("No space left on device"), "{degraded}");

    // While the disk stays full: refused at once, with the cause; reads go on; no reopen loop breaks them.
    for _ in 0..5 {
        let t = Instant::now();
        let e = store.commit_blocking(record(&store, n)).unwrap_err();
        n += 1;
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "a refusal took {:?}",
            t.elapsed()
        );
        assert!(
            matches!(&e, StoreError::Write(m) if m.contains("No space left on device")),
            "{e:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    check(&store, &acknowledged);
    assert!(
        store.degraded().is_some(),
        "still degraded while the disk is full"
    );

    // A reader keeps reading through the reopen: it never sees an error or a missing record.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, stop, first) = (store.clone(), stop.clone(), acknowledged[..50].to_vec());
        std::thread::spawn(move || {
            let ledger = LedgerStore::new(store.clone());
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for &i in &first {
                    assert!(
                        store.get(Cf::Signatures, &key(i)).unwrap().is_some(),
                        "record {i} missing while the store reopens"
                    );
                }
                ledger.root(ledger.size()).unwrap();
                reads += 1;
            }
            reads
        })
    };

    // Two writers keep the queue busy through the recovery (the store must still check on time), with
    // plain records (no ledger leaves: the main thread's leaves keep their order).
    let hammers: Vec<_> = (0..2u8)
        .map(|t| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut acked, mut refused) = (Vec::new(), 0u64);
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut b = Batch::new();
                    b.put(Cf::Signatures, format!("h/{t}/{i}"), value(i));
                    match store.commit_blocking(b) {
                        Ok(()) => acked.push(i),
                        Err(StoreError::Write(_)) => refused += 1,
                        Err(e) => panic!("hammer {t}: {e:?}"),
                    }
                    i += 1;
                }
                (t, acked, refused)
            })
        })
        .collect();

    // Space back: the same store accepts writes again.
    std::fs::remove_file(&filler).unwrap();
    let t_free = Instant::now();
    let recovered = loop {
        match store.commit_blocking(record(&store, n)) {
            Ok(()) => {
                acknowledged.push(n);
                n += 1;
                break t_free.elapsed();
            }
            Err(e) => {
                n += 1;
                assert!(
                    t_free.elapsed() < Duration::from_secs(15),
                    "writes did not resume within 15 s of freeing space: {e}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    let stats = store.stats();
    println!(
        "STORE space freed → first accepted write {recovered:?}; reopens {}, refused {}",
        stats.reopens, stats.refused
    );
    assert!(
        recovered < Duration::from_secs(3),
        "recovery took {recovered:?}"
    );
    assert!(store.degraded().is_none());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.join().unwrap();
    assert!(reads > 0);
    let hammered: Vec<_> = hammers.into_iter().map(|h| h.join().unwrap()).collect();
    for (t, acked, refused) in &hammered {
        println!(
            "STORE hammer {t}: {} acknowledged, {refused} refused",
            acked.len()
        );
        for i in acked {
            assert_eq!(
                store
                    .get(Cf::Signatures, format!("h/{t}/{i}").as_bytes())
                    .unwrap(),
                Some(value(*i)),
                "hammer {t}: acknowledged write {i} lost"
            );
        }
    }
    for _ in 0..50 {
        store.commit_blocking(record(&store, n)).unwrap();
        acknowledged.push(n);
        n += 1;
    }
    check(&store, &acknowledged);

    // Restart: the same, from disk.
    drop(store);
    let store = Store::open(&db, StoreOptions::default()).unwrap();
    check(&store, &acknowledged);
    store.commit_blocking(record(&store, n)).unwrap();
    acknowledged.push(n);
    check(&store, &acknowledged);
    drop(store);
    drop(mnt);
}

#[test]
fn a_failed_reopen_keeps_reads_going_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    // Few inodes: once they are used up, bytes are free but RocksDB cannot create a file.
    let mnt = Tmpfs::mount(&dir.path().join("mnt"), "size=16m,nr_inodes=64");
    let db = mnt.0.join("db");
    let store = Store::open(&db, StoreOptions::default()).unwrap();
    let mut acknowledged = Vec::new();
    let mut n = 0u64;
    for _ in 0..20 {
        store.commit_blocking(record(&store, n)).unwrap();
        acknowledged.push(n);
        n += 1;
    }
    let filler = mnt.0.join("filler");
    fill(&filler);
    while store.commit_blocking(record(&store, n)).is_ok() {
        acknowledged.push(n);
        n += 1;
        assert!(n < 10_000, "never refused on a full disk");
    }
    n += 1;
    assert!(store.degraded().is_some());
    // Every inode taken, then the bytes freed: the reopen is tried (there is room) and fails.
    let mut eaters = Vec::new();
    while let Ok(f) = std::fs::File::create(mnt.0.join(format!("inode{}", eaters.len()))) {
        drop(f);
        eaters.push(mnt.0.join(format!("inode{}", eaters.len())));
        assert!(eaters.len() < 1000, "nr_inodes is not enforced");
    }
    std::fs::remove_file(&filler).unwrap();
    // Attempts at about 1 s and 3 s (then the interval doubles) fail; the store stays degraded and the
    // readers go on meanwhile (read-only handle).
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(3500) {
        check(&store, &acknowledged);
        assert!(store.commit_blocking(record(&store, n)).is_err());
        n += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        store.degraded().is_some(),
        "still degraded while no file can be created"
    );
    assert_eq!(store.stats().reopens, 0);
    // Inodes back: the next attempt (within the backoff, ≤ 4 s + 1 s) succeeds.
    for e in &eaters {
        std::fs::remove_file(e).unwrap();
    }
    let t = Instant::now();
    let recovered = loop {
        match store.commit_blocking(record(&store, n)) {
            Ok(()) => {
                acknowledged.push(n);
                n += 1;
                break t.elapsed();
            }
            Err(e) => {
                n += 1;
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "writes did not resume after the failed reopens: {e}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    println!(
        "STORE after failed reopens: writes resumed {recovered:?} after the inodes came back; {:?}",
        store.stats()
    );
    assert_eq!(store.stats().reopens, 1);
    for _ in 0..10 {
        store.commit_blocking(record(&store, n)).unwrap();
        acknowledged.push(n);
        n += 1;
    }
    check(&store, &acknowledged);
    drop(store);
    let store = Store::open(&db, StoreOptions::default()).unwrap();
    check(&store, &acknowledged);
    drop(store);
    drop(mnt);
}
