//! Inclusion and consistency proofs (RFC 9162 §2.1.3 and §2.1.4): building them from stored complete
//! subtrees and verifying them.

use crate::tree::{Hash, NodeSource, leaf_hash, node_hash};

/// Why a proof could not be built or does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError<E> {
    /// Reading a stored node failed.
    #[error("reading the ledger failed: {0}")]
    Read(E),
    /// The leaf index is not below the tree size.
    #[error("leaf {index} is not in a tree of {size} leaves")]
    LeafOutOfRange {
        /// Requested leaf.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// Consistency needs `0 < first <= second <= stored size`.
    #[error("no consistency proof from tree size {first} to {second}")]
    BadSizes {
        /// Older tree size.
        first: u64,
        /// Newer tree size.
        second: u64,
    },
}

/// Largest power of two strictly below `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The root of leaves `[start, end)` as the RFC's recursion sees them: complete aligned subtrees are read,
/// the right edge is folded from at most log₂ n of them.
pub fn subtree_hash<S: NodeSource + ?Sized>(
    nodes: &S,
    start: u64,
    end: u64,
) -> Result<Hash, S::Error> {
    let n = end - start;
    if n.is_power_of_two() && start.is_multiple_of(n) {
        return nodes.node(n.trailing_zeros() as u8, start / n);
    }
    let k = split(n);
    let left = subtree_hash(nodes, start, start + k)?;
    let right = subtree_hash(nodes, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The audit path of leaf `index` in the tree of the first `size` leaves (RFC 9162 PATH), leaf side first.
pub fn inclusion_proof<S: NodeSource + ?Sized>(
    nodes: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if index >= size {
        return Err(ProofError::LeafOutOfRange { index, size });
    }
    let mut path = Vec::new();
    let (mut start, mut end) = (0u64, size);
    // Walk down from the root, remembering the sibling at each level; the path lists them bottom-up.
    while end - start > 1 {
        let k = split(end - start);
        if index < start + k {
            path.push(subtree_hash(nodes, start + k, end).map_err(ProofError::Read)?);
            end = start + k;
        } else {
            path.push(subtree_hash(nodes, start, start + k).map_err(ProofError::Read)?);
            start += k;
        }
    }
    path.reverse();
    Ok(path)
}

/// The consistency proof between the trees of the first `first` and the first `second` leaves
/// (RFC 9162 PROOF / SUBPROOF), in the RFC's order.
pub fn consistency_proof<S: NodeSource + ?Sized>(
    nodes: &S,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if first == 0 || first > second {
        return Err(ProofError::BadSizes { first, second });
    }
    let mut out = Vec::new();
    if first == second {
        return Ok(out);
    }
    // SUBPROOF(m, D[start:end], b), iteratively; the hashes come out root side first, the RFC lists them
    // leaf side first.
    let (mut m, mut start, mut end, mut whole) = (first, 0u64, second, true);
    loop {
        let n = end - start;
        if m == n {
            if !whole {
                out.push(subtree_hash(nodes, start, end).map_err(ProofError::Read)?);
            }
            break;
        }
        let k = split(n);
        if m <= k {
            out.push(subtree_hash(nodes, start + k, end).map_err(ProofError::Read)?);
            end = start + k;
        } else {
            out.push(subtree_hash(nodes, start, start + k).map_err(ProofError::Read)?);
            m -= k;
            start += k;
            whole = false;
        }
    }
    out.reverse();
    Ok(out)
}

/// Verifies that `leaf` is at `index` in the tree of `size` leaves whose root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &[u8], index: u64, size: u64, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = leaf_hash(leaf);
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && &r == root
}

/// Verifies that the tree of `second` leaves with root `second_root` extends the tree of `first` leaves with
/// root `first_root` (RFC 9162 §2.1.4.2). Equal sizes need an empty proof and equal roots.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first == 0 || first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    let mut nodes: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        nodes.push(*first_root);
    }
    nodes.extend_from_slice(proof);
    let Some((head, rest)) = nodes.split_first() else {
        return false;
    };
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*head, *head);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    &fr == first_root && &sr == second_root && s == 0
}
