//! The ledger's tree and proofs against the Certificate Transparency reference vectors and against a naive
//! recursive implementation of RFC 9162 §2.1, for every size up to 70.

#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::collections::HashMap;
use std::convert::Infallible;

use esigd_ledger::{
    EMPTY_ROOT, Frontier, Hash, NodeSource, consistency_proof, inclusion_proof, leaf_hash,
    node_hash, verify_consistency, verify_inclusion,
};

/// Nodes kept in a map, as the store keeps them in rows.
#[derive(Default)]
struct Mem(HashMap<(u8, u64), Hash>);

impl NodeSource for Mem {
    type Error = Infallible;
    fn node(&self, level: u8, index: u64) -> Result<Hash, Infallible> {
        Ok(*self.0.get(&(level, index)).expect("node stored"))
    }
}

fn build(leaves: &[Vec<u8>]) -> (Mem, Frontier) {
    let mut mem = Mem::default();
    let mut f = Frontier::new();
    for l in leaves {
        for (level, index, h) in f.append(leaf_hash(l)) {
            assert!(
                mem.0.insert((level, index), h).is_none(),
                "node written twice"
            );
        }
    }
    (mem, f)
}

/// RFC 9162 MTH, straight from the definition.
fn mth(leaves: &[Vec<u8>]) -> Hash {
    match leaves.len() {
        0 => EMPTY_ROOT,
        1 => leaf_hash(&leaves[0]),
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// The eight leaves of the CT reference tests (certificate-transparency merkle_tree_test.cc).
fn ct_leaves() -> Vec<Vec<u8>> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|h| hex::decode(h).unwrap())
    .collect()
}

#[test]
fn roots_match_the_certificate_transparency_vectors() {
    let roots = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let leaves = ct_leaves();
    for n in 1..=8 {
        let (_, f) = build(&leaves[..n]);
        assert_eq!(hex::encode(f.root()), roots[n - 1], "root of {n} leaves");
    }
    assert_eq!(Frontier::new().root(), EMPTY_ROOT);
}

#[test]
fn ct_reference_inclusion_and_consistency_paths() {
    let leaves = ct_leaves();
    let (mem, _) = build(&leaves);
    // merkle_tree_test.cc: path of leaf 0 in the tree of 8 leaves.
    let path: Vec<String> = inclusion_proof(&mem, 0, 8)
        .unwrap()
        .iter()
        .map(hex::encode)
        .collect();
    assert_eq!(
        path,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ]
    );
    // Consistency 1 → 8 and 6 → 8.
    let c: Vec<String> = consistency_proof(&mem, 1, 8)
        .unwrap()
        .iter()
        .map(hex::encode)
        .collect();
    assert_eq!(
        c,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ]
    );
    let c: Vec<String> = consistency_proof(&mem, 6, 8)
        .unwrap()
        .iter()
        .map(hex::encode)
        .collect();
    assert_eq!(
        c,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ]
    );
}

#[test]
fn every_proof_up_to_70_leaves_verifies_and_any_change_breaks_it() {
    let leaves: Vec<Vec<u8>> = (0..70u32)
        .map(|i| format!("event {i}").into_bytes())
        .collect();
    let (mem, full) = build(&leaves);
    for size in 1..=leaves.len() as u64 {
        let root = mth(&leaves[..size as usize]);
        let (_, f) = build(&leaves[..size as usize]);
        assert_eq!(f.root(), root, "frontier root at {size}");
        assert_eq!(
            Frontier::load(size, &mem).unwrap(),
            f,
            "frontier loaded at {size}"
        );
        for index in 0..size {
            let leaf = &leaves[index as usize];
            let path = inclusion_proof(&mem, index, size).unwrap();
            assert!(
                verify_inclusion(leaf, index, size, &path, &root),
                "{index} in {size}"
            );
            assert!(!verify_inclusion(b"forged", index, size, &path, &root));
            if size > 1 {
                assert!(!verify_inclusion(
                    leaf,
                    (index + 1) % size,
                    size,
                    &path,
                    &root
                ));
                let mut bad = path.clone();
                bad[0][0] ^= 1;
                assert!(!verify_inclusion(leaf, index, size, &bad, &root));
            }
        }
        for first in 1..=size {
            let old = mth(&leaves[..first as usize]);
            let proof = consistency_proof(&mem, first, size).unwrap();
            assert!(
                verify_consistency(first, size, &old, &root, &proof),
                "{first} → {size}"
            );
            if first < size {
                let other = mth(&leaves[1..first as usize + 1]);
                assert!(!verify_consistency(first, size, &other, &root, &proof));
                let mut bad = proof.clone();
                let last = bad.len() - 1;
                bad[last][31] ^= 1;
                assert!(!verify_consistency(first, size, &old, &root, &bad));
            }
        }
    }
    assert_eq!(full.size(), 70);
}

#[test]
fn proof_sizes_stay_logarithmic() {
    let leaves: Vec<Vec<u8>> = (0..1000u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let (mem, _) = build(&leaves);
    for index in [0u64, 1, 511, 512, 998, 999] {
        assert!(inclusion_proof(&mem, index, 1000).unwrap().len() <= 10);
    }
    assert!(consistency_proof(&mem, 3, 1000).unwrap().len() <= 2 * 10);
    assert!(inclusion_proof(&mem, 1000, 1000).is_err());
    assert!(consistency_proof(&mem, 0, 1000).is_err());
    assert!(consistency_proof(&mem, 1001, 1000).is_err());
}
