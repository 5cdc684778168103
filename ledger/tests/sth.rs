//! Signed tree heads and proof bundles: signatures made with a software P-256 key verify, changes do not.

#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use esigd_ledger::{
    BundleEntry, BundleError, Frontier, Hash, NodeSource, ProofBundle, SignedTreeHead,
    inclusion_proof, leaf_hash, tree_head_signature_input,
};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use std::collections::HashMap;

struct Mem(HashMap<(u8, u64), Hash>);
impl NodeSource for Mem {
    type Error = ();
    fn node(&self, level: u8, index: u64) -> Result<Hash, ()> {
        self.0.get(&(level, index)).copied().ok_or(())
    }
}

fn sign(key: &SigningKey, size: u64, root: Hash) -> SignedTreeHead {
    let sig: Signature = key.sign(&tree_head_signature_input(size, 1_765_000_000_000, &root));
    SignedTreeHead {
        tree_size: size,
        timestamp: 1_765_000_000_000,
        root_hash: root,
        signature: sig.to_der().as_bytes().to_vec(),
    }
}

#[test]
fn bundle_round_trip_and_tampering() {
    let key = SigningKey::random(&mut rand_core::OsRng);
    let leaves: Vec<Vec<u8>> = (0..13)
        .map(|i| format!("{{\"e\":{i}}}").into_bytes())
        .collect();
    let mut f = Frontier::new();
    let mut mem = Mem(HashMap::new());
    for l in &leaves {
        for (lv, i, h) in f.append(leaf_hash(l)) {
            mem.0.insert((lv, i), h);
        }
    }
    let sth = sign(&key, 13, f.root());
    assert_eq!(sth.signed_bytes().len(), 50);
    let entries = [3u64, 7, 12]
        .iter()
        .map(|&i| BundleEntry {
            leaf_index: i,
            leaf: leaves[i as usize].clone(),
            audit_path: inclusion_proof(&mem, i, 13).unwrap(),
        })
        .collect();
    let bundle = ProofBundle {
        signature_id: "abc".into(),
        sth: sth.clone(),
        entries,
    };
    let json = serde_json::to_string(&bundle).unwrap();
    let back: ProofBundle = serde_json::from_str(&json).unwrap();
    back.verify(key.verifying_key(), Some(&sth)).unwrap();

    // One byte of one event changed.
    let mut tampered = back.clone();
    tampered.entries[1].leaf[3] ^= 1;
    assert_eq!(
        tampered.verify(key.verifying_key(), None),
        Err(BundleError::NotIncluded {
            position: 1,
            leaf_index: 7
        })
    );
    // Another key.
    let other = SigningKey::random(&mut rand_core::OsRng);
    assert!(matches!(
        back.verify(other.verifying_key(), None),
        Err(BundleError::Sth(_))
    ));
    // A tree head with a changed size no longer verifies.
    let mut head = sth.clone();
    head.tree_size = 14;
    assert!(head.verify(key.verifying_key()).is_err());
    // A different (validly signed) trusted head is reported.
    let newer = sign(&key, 12, [7; 32]);
    assert!(matches!(
        back.verify(key.verifying_key(), Some(&newer)),
        Err(BundleError::OtherTreeHead { .. })
    ));
}
