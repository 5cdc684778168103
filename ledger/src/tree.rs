//! Hashes, the right-edge frontier and the narrow storage trait.

use sha2::{Digest, Sha256};

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// The root of the empty tree: `SHA-256()` of nothing (RFC 9162 §2.1.1).
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// `SHA-256(0x00 ‖ leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Stored hashes of complete subtrees: `node(level, index)` is the root of leaves
/// `[index·2^level, (index+1)·2^level)`; level 0 holds the leaf hashes.
pub trait NodeSource {
    /// Why a read failed (I/O, missing row).
    type Error;
    /// The hash of one complete subtree that the tree already holds.
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// Why a frontier could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrontierError {
    /// The number of hashes does not match the set bits of the size.
    #[error("a tree of {size} leaves has {expected} right-edge subtrees, {got} were given")]
    Shape {
        /// Tree size.
        size: u64,
        /// `size.count_ones()`.
        expected: usize,
        /// Hashes given.
        got: usize,
    },
}

/// The complete subtrees along the right edge of a tree of `size` leaves: one per set bit of `size`, largest
/// (leftmost) first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// From a size and its right-edge hashes (largest subtree first), e.g. a monitor's saved state.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, FrontierError> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(FrontierError::Shape {
                size,
                expected,
                got: hashes.len(),
            });
        }
        Ok(Frontier { size, hashes })
    }

    /// Loads the frontier of a stored tree of `size` leaves: `size.count_ones()` reads.
    pub fn load<S: NodeSource + ?Sized>(size: u64, nodes: &S) -> Result<Self, S::Error> {
        let mut hashes = Vec::with_capacity(size.count_ones() as usize);
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if size & (1u64 << level) != 0 {
                hashes.push(nodes.node(level, start >> level)?);
                start += 1u64 << level;
            }
        }
        Ok(Frontier { size, hashes })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The right-edge hashes, largest subtree first.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends a leaf (its [`leaf_hash`]) and returns every subtree the append completed, as
    /// `(level, index, hash)`, starting with the leaf itself at level 0. Store them with the leaf.
    pub fn append(&mut self, leaf: Hash) -> Vec<(u8, u64, Hash)> {
        let index = self.size;
        let mut done = vec![(0u8, index, leaf)];
        let mut hash = leaf;
        let mut level = 0u8;
        // Each trailing one bit of the old size is a complete subtree of the same size just left of the new
        // leaf: merge them, like a binary carry.
        while index & (1u64 << level) != 0 {
            // The popped hash exists: one hash per set bit.
            let left = self.hashes.pop().unwrap_or(EMPTY_ROOT);
            hash = node_hash(&left, &hash);
            level += 1;
            done.push((level, index >> level, hash));
        }
        self.hashes.push(hash);
        self.size += 1;
        done
    }

    /// The tree's root hash (RFC 9162 MTH): the right-edge subtrees folded from the right.
    pub fn root(&self) -> Hash {
        let mut it = self.hashes.iter().rev();
        match it.next() {
            None => EMPTY_ROOT,
            Some(last) => it.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }
}
