//! The JSON shapes shared by the appliance and offline verifiers: a transaction's proof bundle and a
//! consistency proof.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::proof::{verify_consistency, verify_inclusion};
use crate::sth::{SignedTreeHead, SthError, b64_bytes};
use crate::tree::Hash;

/// One leaf and its audit path under the bundle's tree head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleEntry {
    /// Position of the leaf in the ledger.
    pub leaf_index: u64,
    /// The leaf: the audit event exactly as logged (JSON bytes, base64).
    #[serde(with = "b64_bytes")]
    pub leaf: Vec<u8>,
    /// RFC 9162 audit path, leaf side first (base64 hashes).
    #[serde(with = "b64_hashes")]
    pub audit_path: Vec<Hash>,
}

/// The inclusion proofs of every logged event of one transaction under one signed tree head
/// (`GET /v1/audit/proof/{signatureId}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProofBundle {
    /// The transaction (signatureId).
    pub signature_id: String,
    /// The tree head the paths lead to.
    pub sth: SignedTreeHead,
    /// The transaction's events, in ledger order.
    pub entries: Vec<BundleEntry>,
}

/// A consistency proof between two tree sizes (`GET /v1/audit/sth/consistency`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsistencyProof {
    /// Older tree size.
    pub first: u64,
    /// Newer tree size.
    pub second: u64,
    /// RFC 9162 consistency proof (base64 hashes).
    #[serde(with = "b64_hashes")]
    pub proof: Vec<Hash>,
}

/// Why a bundle does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    /// The tree head's signature is bad.
    #[error("tree head: {0}")]
    Sth(#[from] SthError),
    /// The bundle was made under another tree head than the one the verifier trusts, and no consistency
    /// proof links them.
    #[error(
        "the bundle's tree head (size {bundle}) is not the trusted tree head (size {trusted}); fetch the bundle under the trusted head (?treeSize={trusted})"
    )]
    OtherTreeHead {
        /// Size of the bundle's head.
        bundle: u64,
        /// Size of the trusted head.
        trusted: u64,
    },
    /// A leaf's audit path does not lead to the root.
    #[error(
        "entry {position} (leaf {leaf_index}): the audit path does not lead to the tree head's root"
    )]
    NotIncluded {
        /// Position in `entries`.
        position: usize,
        /// Its leaf index.
        leaf_index: u64,
    },
    /// The bundle lists no event.
    #[error("entries: the bundle holds no event")]
    Empty,
}

impl ProofBundle {
    /// Checks the tree head signature with `key`, that the bundle's head is `trusted` (when given: the same
    /// size and root), and every entry's inclusion.
    pub fn verify(
        &self,
        key: &VerifyingKey,
        trusted: Option<&SignedTreeHead>,
    ) -> Result<(), BundleError> {
        self.sth.verify(key)?;
        if let Some(t) = trusted {
            t.verify(key)?;
            if t.tree_size != self.sth.tree_size || t.root_hash != self.sth.root_hash {
                return Err(BundleError::OtherTreeHead {
                    bundle: self.sth.tree_size,
                    trusted: t.tree_size,
                });
            }
        }
        if self.entries.is_empty() {
            return Err(BundleError::Empty);
        }
        for (position, e) in self.entries.iter().enumerate() {
            if !verify_inclusion(
                &e.leaf,
                e.leaf_index,
                self.sth.tree_size,
                &e.audit_path,
                &self.sth.root_hash,
            ) {
                return Err(BundleError::NotIncluded {
                    position,
                    leaf_index: e.leaf_index,
                });
            }
        }
        Ok(())
    }
}

impl ConsistencyProof {
    /// Checks that `newer` extends `older` (sizes must match the proof's).
    pub fn verify(&self, older: &SignedTreeHead, newer: &SignedTreeHead) -> bool {
        self.first == older.tree_size
            && self.second == newer.tree_size
            && verify_consistency(
                self.first,
                self.second,
                &older.root_hash,
                &newer.root_hash,
                &self.proof,
            )
    }
}

/// Base64 for a list of hashes.
pub(crate) mod b64_hashes {
    use super::*;

    pub(crate) fn serialize<S: serde::Serializer>(v: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|h| STANDARD.encode(h)))
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<Hash>, D::Error> {
        let texts = Vec::<String>::deserialize(d)?;
        texts
            .iter()
            .map(|t| {
                let b = STANDARD
                    .decode(t.as_bytes())
                    .map_err(serde::de::Error::custom)?;
                Hash::try_from(b).map_err(|_| serde::de::Error::custom("a hash is 32 bytes"))
            })
            .collect()
    }
}
