//! The audit ledger at scale, and what it adds to a signature's durable write, in one run.
//!
//! `cargo bench -p esigd-store --bench ledger` (env: `BENCH_LEAVES`, default 10 000 000; `BENCH_ROUNDS`, default 7;
//! `BENCH_DIR`, default a temp dir on the same file system as `$TMPDIR`).
//!
//! 1. Builds a ledger of `BENCH_LEAVES` audit events (each a ~330-byte event JSON as esigd logs it) through
//!    the store's writer, 10 000 leaves per group commit: leaves/s.
//! 2. Reopens the store: the time to load the ledger's frontier (start-up must be flat in leaves).
//! 3. At that size: inclusion proofs for 1000 random leaves and consistency proofs for 1000 random older
//!    sizes, built from RocksDB rows: median time per proof, hashes per proof and bytes; the root; and a
//!    proof bundle's JSON size and offline verification time.
//! 4. The append overhead: one signature's durable write (the signature record + its audit event, one
//!    synced group commit) with the event as a ledger leaf vs. the event as a plain row, alternating in
//!    rounds (medians; the ratio is per round). One caller at a time, so each write is its own fsync.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use esigd_ledger::{
    BundleEntry, ProofBundle, SignedTreeHead, verify_consistency, verify_inclusion,
};
use esigd_store::ledger::LedgerStore;
use esigd_store::signatures::{AuditEvent, SignatureStore, SignatureType};
use esigd_store::{Batch, Cf, Store, StoreOptions};
use rand_core::RngCore;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn event(i: u64) -> AuditEvent {
    let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000 + i / 100);
    let mut e = AuditEvent::new("signature.created", at);
    e.request_id = Some(format!("req-{i:016x}"));
    e.eservice = Some("land-registry".into());
    e.signature_id = Some(format!("{:064x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    e.signature_type = Some(SignatureType::OneTime);
    e.certificate_serial = Some(format!("{:032x}", i));
    e.certificate_sha256 = Some(format!("{:064x}", i ^ 0x5555));
    e.tsa_serial = Some(i);
    e.hash_type = Some("SHA2-256".into());
    e.digest = Some(format!("{:064x}", i.rotate_left(17)));
    e
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let leaves = env_u64("BENCH_LEAVES", 10_000_000);
    let rounds = env_u64("BENCH_ROUNDS", 7) as usize;
    let base = std::env::var("BENCH_DIR")
        .map(std::path::PathBuf::from)
        .ok();
    let dir = match &base {
        Some(b) => tempfile::tempdir_in(b).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let path = dir.path().join("db");
    let mut rng = rand_core::OsRng;

    // 1. Build.
    let store = Store::open(&path, StoreOptions::default()).unwrap();
    let sigs = SignatureStore::new(store.clone());
    let ledger = LedgerStore::new(store.clone());
    let per_batch = 10_000u64;
    let started = Instant::now();
    let mut leaf_bytes = 0usize;
    let mut i = 0u64;
    while i < leaves {
        let mut b = Batch::new();
        for j in i..(i + per_batch).min(leaves) {
            let e = event(j);
            leaf_bytes += serde_json::to_vec(&e).unwrap().len();
            b.extend(sigs.audit_batch(&e, SystemTime::now()).unwrap());
        }
        store.commit_blocking(b).unwrap();
        i += per_batch;
        if i.is_multiple_of(1_000_000) {
            eprintln!("  {} leaves, {:.0} s", i, started.elapsed().as_secs_f64());
        }
    }
    let build = started.elapsed();
    assert_eq!(ledger.size(), leaves);
    println!(
        "ledger of {leaves} leaves (mean leaf {} bytes) built in {:.1} s: {:.0} leaves/s",
        leaf_bytes / leaves.max(1) as usize,
        build.as_secs_f64(),
        leaves as f64 / build.as_secs_f64()
    );
    drop((sigs, ledger, store));

    // 2. Reopen.
    let mut opens = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let s = Store::open(&path, StoreOptions::default()).unwrap();
        opens.push(t.elapsed().as_secs_f64() * 1e3);
        drop(s);
    }
    println!(
        "store open with the ledger's frontier: median {:.1} ms",
        median(&mut opens)
    );
    let store = Store::open(&path, StoreOptions::default()).unwrap();
    let ledger = LedgerStore::new(store.clone());
    let n = ledger.size();

    // 3. Proofs at size n.
    let t = Instant::now();
    let root = ledger.root(n).unwrap();
    println!(
        "root of {n} leaves from stored subtrees: {:.3} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let mut times = Vec::new();
    let mut hashes = Vec::new();
    let mut verify_times = Vec::new();
    for _ in 0..1000 {
        let index = rng.next_u64() % n;
        let t = Instant::now();
        let path = ledger.inclusion(index, n).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e6);
        hashes.push(path.len() as f64);
        let leaf = ledger.leaf(index).unwrap().unwrap();
        let t = Instant::now();
        assert!(verify_inclusion(&leaf, index, n, &path, &root));
        verify_times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    println!(
        "inclusion proof: median {:.1} µs to build, {:.0} hashes ({:.0} bytes), {:.1} µs to verify",
        median(&mut times),
        median(&mut hashes.clone()),
        median(&mut hashes) * 32.0,
        median(&mut verify_times)
    );
    let mut times = Vec::new();
    let mut hashes = Vec::new();
    for _ in 0..1000 {
        let first = 1 + rng.next_u64() % (n - 1);
        let t = Instant::now();
        let c = ledger.consistency(first, n).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e6);
        hashes.push(c.proof.len() as f64);
        let old = ledger.root(first).unwrap();
        assert!(verify_consistency(first, n, &old, &root, &c.proof));
    }
    println!(
        "consistency proof: median {:.1} µs to build, {:.0} hashes ({:.0} bytes)",
        median(&mut times),
        median(&mut hashes.clone()),
        median(&mut hashes) * 32.0
    );
    // A transaction's bundle (two events, as created + fetched), JSON size.
    let entries: Vec<BundleEntry> = [n / 3, n / 3 + 1]
        .iter()
        .map(|&i| BundleEntry {
            leaf_index: i,
            leaf: ledger.leaf(i).unwrap().unwrap(),
            audit_path: ledger.inclusion(i, n).unwrap(),
        })
        .collect();
    let bundle = ProofBundle {
        signature_id: "x".repeat(64),
        sth: SignedTreeHead {
            tree_size: n,
            timestamp: 0,
            root_hash: root,
            signature: vec![0; 71],
        },
        entries,
    };
    println!(
        "proof bundle of a transaction with 2 events: {} bytes of JSON",
        serde_json::to_vec(&bundle).unwrap().len()
    );
    drop((ledger, store));

    // 4. Append overhead per signature's durable write.
    let dir2 = tempfile::tempdir_in(dir.path()).unwrap();
    let store = Store::open(dir2.path().join("db"), StoreOptions::default()).unwrap();
    let sigs = SignatureStore::new(store.clone());
    let per_round = env_u64("BENCH_WRITES", 200);
    let record = vec![7u8; 2600]; // a CAdES-B-T signature record is about this size
    let mut plain = Vec::new();
    let mut leafed = Vec::new();
    let mut ratios = Vec::new();
    let mut k = 0u64;
    for _ in 0..rounds {
        let mut one = |ledger: bool| {
            let t = Instant::now();
            for _ in 0..per_round {
                k += 1;
                let e = event(k);
                let mut b = Batch::new();
                b.put(Cf::Signatures, k.to_be_bytes().to_vec(), record.clone());
                if ledger {
                    b.extend(sigs.audit_batch(&e, SystemTime::now()).unwrap());
                } else {
                    let json = serde_json::to_vec(&e).unwrap();
                    b.put(
                        Cf::Audit,
                        store.audit_key(SystemTime::now()).to_bytes().to_vec(),
                        json,
                    );
                }
                store.commit_blocking(b).unwrap();
            }
            t.elapsed().as_secs_f64() * 1e6 / per_round as f64
        };
        let p = one(false);
        let l = one(true);
        plain.push(p);
        leafed.push(l);
        ratios.push(l / p);
    }
    let (p, l) = (median(&mut plain), median(&mut leafed));
    println!(
        "durable write of one signature (record + audit event, synced): plain row {p:.1} µs, ledger leaf {l:.1} µs: +{:.1} µs, ratio {:.3} (median of {rounds} rounds)",
        l - p,
        median(&mut ratios)
    );
}
