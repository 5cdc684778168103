//! esigd-ledger: the tamper-evident audit ledger, in the shape of RFC 9162 (Certificate Transparency v2).
//!
//! * Every audit event is a leaf of one append-only Merkle tree: leaf hash `SHA-256(0x00 ‖ leaf)`, node hash
//!   `SHA-256(0x01 ‖ left ‖ right)`, the tree over `n` leaves split at the largest power of two below `n`
//!   (RFC 9162 §2.1.1).
//! * Storage keeps the hash of every **complete** subtree (level `k`, index `i`: leaves `[i·2^k, (i+1)·2^k)`).
//!   Appending a leaf completes on average two of them ([`Frontier::append`] returns them for the caller to
//!   store in the same write as the leaf). Any subtree of the RFC's recursion is either complete (one read) or
//!   the right edge of the tree (at most log₂ n complete pieces), so an inclusion or consistency proof costs
//!   O(log n) reads through [`NodeSource`].
//! * [`Frontier`]: the complete subtrees on the right edge (one per set bit of the size, at most 64 hashes). It is
//!   all the writer keeps in memory, gives the root at once, and is loaded from storage in O(log n) reads, so
//!   start-up does not grow with the number of leaves. A monitor uses the same type to recompute a log's root
//!   from its entries.
//! * [`inclusion_proof`] / [`consistency_proof`] build the RFC's PATH and PROOF; [`verify_inclusion`] /
//!   [`verify_consistency`] are the RFC 9162 §2.1.3.2 / §2.1.4.2 algorithms.
//! * [`SignedTreeHead`]: size, time, root, signed over the RFC 6962 `TreeHeadSignature` structure with an
//!   ECDSA P-256 key (the appliance keeps it in the HSM; [`SignedTreeHead::verify`] checks it with the public key).
//!
//! No I/O and no clock: time is a parameter.

mod bundle;
mod proof;
mod sth;
mod tree;

pub use bundle::{BundleEntry, BundleError, ConsistencyProof, ProofBundle};
pub use proof::{
    ProofError, consistency_proof, inclusion_proof, subtree_hash, verify_consistency,
    verify_inclusion,
};
pub use sth::{SignedTreeHead, SthError, tree_head_signature_input};
pub use tree::{EMPTY_ROOT, Frontier, FrontierError, Hash, NodeSource, leaf_hash, node_hash};
