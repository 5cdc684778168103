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
