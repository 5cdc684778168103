//! The audit ledger on RocksDB: every audit event becomes a leaf in its own group commit, proofs built from
//! stored rows verify against the root recomputed from the leaves, the tree survives a reopen, and a changed
//! leaf no longer verifies.

#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use esigd_ledger::{Frontier, leaf_hash, verify_consistency, verify_inclusion};
use esigd_store::ledger::{LedgerStore, leaf_key};
use esigd_store::signatures::{AuditEvent, SignatureStore};
use esigd_store::{Batch, Cf, Store};

fn event(i: u64, txn: Option<&str>) -> AuditEvent {
    let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000 + i);
    let mut e = AuditEvent::new("signature.created", at);
    e.tsa_serial = Some(i);
    e.signature_id = txn.map(str::to_owned);
    e
}

fn recomputed_root(ledger: &LedgerStore) -> [u8; 32] {
    let mut f = Frontier::new();
    for l in ledger.leaves(0, ledger.size(), usize::MAX).unwrap() {
        f.append(leaf_hash(&l.leaf));
    }
    f.root()
}

#[tokio::test]
async fn events_become_leaves_with_verifiable_proofs_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = Store::open(&path, Default::default()).unwrap();
        let sigs = SignatureStore::new(store.clone());
        let ledger = LedgerStore::new(store.clone());
        assert_eq!(ledger.size(), 0);
        // Concurrent commits ride shared group commits; each event still gets its own leaf.
        let mut set = tokio::task::JoinSet::new();
        for i in 0..40u64 {
            let txn = if i % 3 == 0 { Some("txn-a") } else { None };
            let mut b = Batch::new();
            b.put(Cf::Signatures, format!("rec{i}"), "r");
            b.extend(sigs.audit_batch(&event(i, txn), SystemTime::now()).unwrap());
            set.spawn(store.commit(b));
        }
        while let Some(r) = set.join_next().await {
            r.unwrap().unwrap();
        }
        assert_eq!(ledger.size(), 40);
        let root = ledger.root(40).unwrap();
        assert_eq!(root, recomputed_root(&ledger));
        for i in 0..40 {
            let leaf = ledger.leaf(i).unwrap().unwrap();
            let path = ledger.inclusion(i, 40).unwrap();
            assert!(verify_inclusion(&leaf, i, 40, &path, &root));
        }
        let txn = ledger.transaction(b"txn-a", 40).unwrap();
        assert_eq!(txn.len(), 14);
        for i in txn {
            let e: AuditEvent = serde_json::from_slice(&ledger.leaf(i).unwrap().unwrap()).unwrap();
            assert_eq!(e.signature_id.as_deref(), Some("txn-a"));
        }
        // The time-ordered listing carries the leaf index.
        let (listed, _) = sigs
            .audit_range(
                UNIX_EPOCH,
                SystemTime::now() + Duration::from_secs(5),
                None,
                100,
            )
            .unwrap();
        assert_eq!(listed.len(), 40);
        assert!(listed.iter().all(|e| e.leaf_index.is_some()));
        assert!(ledger.inclusion(0, 41).is_err());
    }
    // Reopen: the frontier is loaded, appends continue the same tree.
    let store = Store::open(&path, Default::default()).unwrap();
    let sigs = SignatureStore::new(store.clone());
    let ledger = LedgerStore::new(store.clone());
    assert_eq!(ledger.size(), 40);
    let old_root = ledger.root(40).unwrap();
    for i in 40..45u64 {
        store
            .commit(
                sigs.audit_batch(&event(i, None), SystemTime::now())
                    .unwrap(),
            )
            .await
            .unwrap();
    }
    assert_eq!(ledger.size(), 45);
    let root = ledger.root(45).unwrap();
    assert_eq!(root, recomputed_root(&ledger));
    let c = ledger.consistency(40, 45).unwrap();
    assert!(verify_consistency(40, 45, &old_root, &root, &c.proof));

    // One changed byte in a stored event: its proof no longer leads to the root.
    let mut leaf = ledger.leaf(7).unwrap().unwrap();
    let path7 = ledger.inclusion(7, 45).unwrap();
    leaf[5] ^= 1;
    let mut b = Batch::new();
    b.put(Cf::Ledger, leaf_key(7), leaf.clone());
    store.commit(b).await.unwrap();
    let stored = ledger.leaf(7).unwrap().unwrap();
    assert!(!verify_inclusion(&stored, 7, 45, &path7, &root));
    assert_ne!(
        recomputed_root(&ledger),
        root,
        "a monitor recomputing the root sees it"
    );
}

#[tokio::test]
async fn events_about_one_subject_are_listed_newest_first_without_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("db"), Default::default()).unwrap();
    let sigs = SignatureStore::new(store.clone());
    let ledger = LedgerStore::new(store.clone());
    // Three subjects interleaved; "ab" is a prefix of "abc" (the length byte keeps them apart).
    let subjects = ["ab", "abc", "ff"];
    for i in 0..30u64 {
        let mut e = event(i, Some(&format!("txn-{i}")));
        e.user_ref = (i % 4 != 3).then(|| subjects[(i % 4) as usize % 3].to_string());
        store
            .commit(sigs.audit_batch(&e, SystemTime::now()).unwrap())
            .await
            .unwrap();
    }
    let of = |s: &str, limit, before| ledger.by_subject(s.as_bytes(), limit, before).unwrap();
    let ab = of("ab", 100, None);
    let expected: Vec<u64> = (0..30u64).rev().filter(|i| i % 4 == 0).collect();
    assert_eq!(ab, expected);
    for i in &ab {
        let e: AuditEvent = serde_json::from_slice(&ledger.leaf(*i).unwrap().unwrap()).unwrap();
        assert_eq!(e.user_ref.as_deref(), Some("ab"));
    }
    assert_eq!(
        of("abc", 100, None),
        (0..30u64).rev().filter(|i| i % 4 == 1).collect::<Vec<_>>()
    );
    assert!(of("a", 100, None).is_empty());
    assert!(of("nobody", 100, None).is_empty());
    // Pages: `limit` newest, then those before the last one seen.
    let first = of("ff", 3, None);
    assert_eq!(first, vec![26, 22, 18]);
    assert_eq!(of("ff", 3, Some(18)), vec![14, 10, 6]);
    assert_eq!(of("ff", 3, Some(6)), vec![2]);
    assert!(of("ff", 3, Some(2)).is_empty());
    // A `before` above the ledger's size is clipped to it.
    assert_eq!(of("ff", 1, Some(u64::MAX)), vec![26]);
    // Events with no user reference are in no subject's index, still in the ledger.
    assert_eq!(ledger.size(), 30);
}
