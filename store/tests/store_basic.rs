//! RocksDB store: durability across reopen, concurrent writers, group commit, back-pressure, reads.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use esigd_store::{
    AuditKey, Batch, BatchStats, Cf, Order, Store, StoreError, StoreObserver, StoreOptions,
};

fn put(cf: Cf, key: &[u8], value: &[u8]) -> Batch {
    let mut b = Batch::new();
    b.put(cf, key.to_vec(), value.to_vec());
    b
}

#[test]
fn writes_survive_reopen_and_every_column_family_exists() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let mut b = Batch::new();
        for cf in Cf::ALL {
            b.put(cf, format!("k-{}", cf.name()), cf.name());
        }
        b.put(Cf::Signatures, "gone", "x");
        b.delete(Cf::Signatures, "gone");
        store.commit_blocking(b).unwrap();
    }
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    for cf in Cf::ALL {
        let v = store
            .get(cf, format!("k-{}", cf.name()).as_bytes())
            .unwrap();
        assert_eq!(v.as_deref(), Some(cf.name().as_bytes()));
    }
    assert_eq!(store.get(Cf::Signatures, b"gone").unwrap(), None);
    // Independent check: RocksDB itself lists the column families.
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir.path()).unwrap();
    for cf in Cf::ALL {
        assert!(
            names.iter().any(|n| n == cf.name()),
            "{} missing in {names:?}",
            cf.name()
        );
    }
}

#[test]
fn many_concurrent_writers_are_all_acknowledged_and_durable() {
    let dir = tempfile::tempdir().unwrap();
    let threads = 8;
    let per_thread = 150;
    {
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        std::thread::scope(|s| {
            for t in 0..threads {
                let store = store.clone();
                s.spawn(move || {
                    for i in 0..per_thread {
                        let key = format!("t{t:02}-{i:04}");
                        store
                            .commit_blocking(put(Cf::Signatures, key.as_bytes(), key.as_bytes()))
                            .unwrap();
                    }
                });
            }
        });
        // Async writers on a runtime at the same time as nothing else: all acked too.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..200 {
                let key = format!("async-{i:04}");
                set.spawn(store.commit(put(Cf::Audit, key.as_bytes(), b"v")));
            }
            while let Some(res) = set.join_next().await {
                res.unwrap().unwrap();
            }
        });
        let stats = store.stats();
        assert_eq!(stats.commits, (threads * per_thread + 200) as u64);
        assert_eq!(stats.failed_batches, 0);
    }
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let all = store.scan_prefix(Cf::Signatures, b"t", usize::MAX).unwrap();
    assert_eq!(all.len(), threads * per_thread);
    for (k, v) in &all {
        assert_eq!(k, v);
    }
    assert_eq!(
        store
            .scan_prefix(Cf::Audit, b"async-", usize::MAX)
            .unwrap()
            .len(),
        200
    );
}

/// Holds the writer thread inside the observer of the first group commit until released.
struct Gate {
    entered: SyncSender<()>,
    release: Mutex<Receiver<()>>,
    seen: Mutex<Vec<BatchStats>>,
}

impl StoreObserver for Gate {
    fn batch_written(&self, stats: &BatchStats) {
        let first = {
            let mut seen = self.seen.lock().unwrap();
            seen.push(stats.clone());
            seen.len() == 1
        };
        if first {
            self.entered.send(()).unwrap();
            self.release.lock().unwrap().recv().unwrap();
        }
    }
}

fn gated_store(
    dir: &std::path::Path,
    queue: usize,
) -> (Store, Arc<Gate>, Receiver<()>, SyncSender<()>) {
    let (entered_tx, entered_rx) = sync_channel(1);
    let (release_tx, release_rx) = sync_channel(1);
    let gate = Arc::new(Gate {
        entered: entered_tx,
        release: Mutex::new(release_rx),
        seen: Mutex::new(Vec::new()),
    });
    let opts = StoreOptions {
        write_queue: queue,
        observer: Some(gate.clone() as Arc<dyn StoreObserver>),
        ..StoreOptions::default()
    };
    (
        Store::open(dir, opts).unwrap(),
        gate,
        entered_rx,
        release_tx,
    )
}

#[test]
fn commits_queued_during_a_sync_share_the_next_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (store, gate, entered, release) = gated_store(dir.path(), 1024);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let first = store.commit(put(Cf::Meta, b"first", b"1"));
    entered.recv().unwrap(); // the writer is now busy with the first batch
    // 100 callers queue while the sync is in flight; `commit` enqueues on call.
    let waiting: Vec<_> = (0..100)
        .map(|i| store.commit(put(Cf::Signatures, format!("w{i:03}").as_bytes(), b"v")))
        .collect();
    release.send(()).unwrap();
    rt.block_on(async {
        first.await.unwrap();
        for w in waiting {
            w.await.unwrap();
        }
    });
    let stats = store.stats();
    assert_eq!(stats.commits, 101);
    assert!(stats.batches < stats.commits, "no batching: {stats:?}");
    assert_eq!(stats.batches, 2, "{stats:?}");
    let seen = gate.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!((seen[1].commits, seen[1].ops), (100, 100));
    assert!(seen.iter().all(|s| s.ok));
    assert_eq!(
        store
            .scan_prefix(Cf::Signatures, b"w", usize::MAX)
            .unwrap()
            .len(),
        100
    );
}

#[test]
fn full_queue_answers_busy_instead_of_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _gate, entered, release) = gated_store(dir.path(), 2);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let first = store.commit(put(Cf::Meta, b"a", b"1"));
    entered.recv().unwrap();
    let queued: Vec<_> = (0..2)
        .map(|i| store.commit(put(Cf::Meta, &[b'q', i], b"1")))
        .collect();
    let err = rt
        .block_on(store.commit(put(Cf::Meta, b"over", b"1")))
        .unwrap_err();
    assert!(matches!(err, StoreError::Busy { capacity: 2 }), "{err:?}");
    assert!(err.to_string().contains("store.write_queue"), "{err}");
    let err = store
        .commit_blocking(put(Cf::Meta, b"over2", b"1"))
        .unwrap_err();
    assert!(matches!(err, StoreError::Busy { .. }));
    release.send(()).unwrap();
    rt.block_on(async {
        first.await.unwrap();
        for q in queued {
            q.await.unwrap();
        }
    });
    assert_eq!(store.get(Cf::Meta, b"over").unwrap(), None);
    assert!(store.get(Cf::Meta, b"q\x01").unwrap().is_some());
}

#[test]
fn range_scans_list_audit_keys_in_time_order_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let keys: Vec<AuditKey>;
    {
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let mut b = Batch::new();
        // Inserted out of order; the same second twice (sequence breaks the tie).
        keys = [3u64, 1, 2, 2, 5]
            .iter()
            .map(|s| store.audit_key(t0 + Duration::from_secs(*s)))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            b.put(Cf::Audit, k.to_bytes(), format!("e{i}"));
        }
        store.commit_blocking(b).unwrap();
    }
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    // The sequence resumes after the newest stored key.
    let next = store.audit_key(SystemTime::now());
    assert!(keys.iter().all(|k| k.seq < next.seq));

    let from = AuditKey::lower_bound(t0 + Duration::from_secs(2)).to_bytes();
    let to = AuditKey::lower_bound(t0 + Duration::from_secs(5)).to_bytes();
    let asc = store
        .scan_range(Cf::Audit, &from, Some(&to), Order::Ascending, 10)
        .unwrap();
    let vals: Vec<&[u8]> = asc.iter().map(|(_, v)| v.as_slice()).collect();
    assert_eq!(vals, [b"e2", b"e3", b"e0"]);
    let desc = store
        .scan_range(Cf::Audit, &from, Some(&to), Order::Descending, 2)
        .unwrap();
    let vals: Vec<&[u8]> = desc.iter().map(|(_, v)| v.as_slice()).collect();
    assert_eq!(vals, [b"e0", b"e3"]);
    let all = store
        .scan_range(Cf::Audit, &[], None, Order::Descending, 100)
        .unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all[0].1, b"e4");
}

#[test]
fn prefix_scan_stops_at_the_prefix_and_honours_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let mut b = Batch::new();
    for k in ["a/1", "a/2", "a/3", "a0", "b/1"] {
        b.put(Cf::Certificates, k, "v");
    }
    b.put(Cf::Certificates, vec![b'a', 0xff], "edge");
    store.commit_blocking(b).unwrap();
    let keys = |v: Vec<(Vec<u8>, Vec<u8>)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(store.scan_prefix(Cf::Certificates, b"a/", 10).unwrap()),
        [b"a/1".to_vec(), b"a/2".to_vec(), b"a/3".to_vec()]
    );
    assert_eq!(
        store.scan_prefix(Cf::Certificates, b"a/", 2).unwrap().len(),
        2
    );
    assert_eq!(
        store.scan_prefix(Cf::Certificates, b"a", 10).unwrap().len(),
        5
    );
    assert!(
        store
            .scan_prefix(Cf::Signatures, b"a", 10)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_while_the_first_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let err = Store::open(dir.path(), StoreOptions::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("data_dir"), "{err}");
    drop(store);
    // After the last handle is gone the writer is joined and the lock released.
    Store::open(dir.path(), StoreOptions::default()).unwrap();
}

#[test]
fn zero_queue_is_rejected_with_the_setting_name() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        write_queue: 0,
        ..StoreOptions::default()
    };
    let err = Store::open(dir.path(), opts).err().unwrap();
    assert!(err.to_string().contains("store.write_queue"), "{err}");
}
