//! Merkle trees in the style of RFC 6962 / RFC 9162 (Certificate
//! Transparency), hashed with blake3 in [`Domain::MerkleTree`].
//!
//! - leaf hash `= H(0x00 ‖ leaf bytes)`, node hash `= H(0x01 ‖ left ‖ right)`:
//!   the prefixes keep a leaf from posing as an inner node (second-preimage
//!   attacks);
//! - a tree of `n > 1` leaves splits at `k`, the largest power of two below
//!   `n`: `MTH(D[0..n]) = node(MTH(D[0..k]), MTH(D[k..n]))`;
//! - the root of the empty tree is `H()`: the hash of zero bytes, as in
//!   RFC 6962 §2.1. Its input is zero bytes long, so it cannot equal any leaf
//!   (≥ 1 byte) or node (65 bytes) hash input.
//!
//! `H` is `Digest::of(Domain::MerkleTree, ·)`, blake3 in `derive_key` mode
//! with context `"qlock 2026-11 merkle tree v1"`.
//!
//! The tree is built bottom-up: level by level, pairs are hashed left to
//! right and an unpaired last node moves up unchanged. That is the same tree
//! as the RFC's recursive split (the left subtree is always the complete one
//! of `k` leaves), without recursion.

use primitives::digest::Hasher;
use primitives::{Digest, Domain, Receipt};
use serde::{Deserialize, Serialize};

/// The longest inclusion path: a tree has at most 2^64 leaves.
pub const PATH_LEN_MAX: usize = 64;

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// The hash of a leaf: `H(0x00 ‖ bytes)`.
pub fn leaf_hash(bytes: &[u8]) -> Digest {
    let mut hasher = Hasher::new(Domain::MerkleTree);
    hasher.update(&[LEAF_PREFIX]).update(bytes);
    hasher.finalize()
}

/// The hash of an inner node: `H(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Digest, right: &Digest) -> Digest {
    let mut hasher = Hasher::new(Domain::MerkleTree);
    hasher
        .update(&[NODE_PREFIX])
        .update(left.as_bytes())
        .update(right.as_bytes());
    hasher.finalize()
}

/// The root of the tree with no leaves: `H()`, the hash of the empty string.
pub fn empty_root() -> Digest {
    Digest::of(Domain::MerkleTree, &[])
}

/// Why an inclusion path does not lead to the expected root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// The leaf index is not below the tree size (an empty tree has no
    /// leaves to prove).
    #[error("leaf index {index} is outside a tree of {size} leaves")]
    IndexOutOfRange {
        /// The claimed index.
        index: u64,
        /// The claimed tree size.
        size: u64,
    },
    /// The path does not have the length that index and size dictate.
    #[error("inclusion path has {actual} hashes, a leaf at this index and size needs {expected}")]
    PathLength {
        /// What the shape of the tree requires.
        expected: usize,
        /// What the proof holds.
        actual: usize,
    },
    /// The path leads to another root: leaf, path, index, size or root was
    /// changed.
    #[error("inclusion path leads to root {computed}, expected {expected}")]
    RootMismatch {
        /// The root the proof should reach.
        expected: Digest,
        /// The root it reaches.
        computed: Digest,
    },
}

/// A Merkle tree kept whole, so it can hand out inclusion proofs.
/// Memory: about `2n` digests for `n` leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleTree {
    /// `levels[0]` are the leaf hashes; each next level has
    /// `⌈len / 2⌉` nodes; the last level holds the root alone. Empty for
    /// the empty tree.
    levels: Vec<Vec<Digest>>,
}

impl MerkleTree {
    /// The tree over leaves whose hashes (see [`leaf_hash`]) are given.
    pub fn from_leaf_hashes(leaves: Vec<Digest>) -> MerkleTree {
        let mut levels = Vec::new();
        if leaves.is_empty() {
            return MerkleTree { levels };
        }
        levels.push(leaves);
        while let Some(below) = levels.last().filter(|level| level.len() > 1) {
            let above: Vec<Digest> = below
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => node_hash(left, right),
                    [single] => *single,
                    _ => unreachable!("chunks(2) yields one or two items"),
                })
                .collect();
            levels.push(above);
        }
        assert!(levels.len() <= PATH_LEN_MAX + 1);
        MerkleTree { levels }
    }

    /// The tree over raw leaves (each is hashed with [`leaf_hash`]).
    pub fn from_leaves<'a>(leaves: impl IntoIterator<Item = &'a [u8]>) -> MerkleTree {
        MerkleTree::from_leaf_hashes(leaves.into_iter().map(leaf_hash).collect())
    }

    /// The number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// The root ([`empty_root`] for no leaves).
    pub fn root(&self) -> Digest {
        match self.levels.last() {
            Some(top) => {
                assert_eq!(top.len(), 1, "the top level is the root alone");
                top[0]
            }
            None => empty_root(),
        }
    }

    /// The hash of leaf `index`, if there is one.
    pub fn leaf(&self, index: u64) -> Option<Digest> {
        let index = usize::try_from(index).ok()?;
        self.levels.first()?.get(index).copied()
    }

    /// The inclusion proof of leaf `index`, or `None` past the last leaf.
    pub fn proof(&self, index: u64) -> Option<InclusionProof> {
        let size = self.len();
        if index >= size {
            return None;
        }
        let mut path = Vec::new();
        let mut position = usize::try_from(index).ok()?;
        for level in &self.levels[..self.levels.len() - 1] {
            // The sibling is absent when this node is the unpaired last one:
            // it moves up unchanged and contributes no hash.
            if let Some(sibling) = level.get(position ^ 1) {
                path.push(*sibling);
            }
            position /= 2;
        }
        assert_eq!(path.len(), path_len(index, size));
        Some(InclusionProof { index, size, path })
    }
}

/// The number of hashes in the inclusion path of leaf `index` in a tree of
/// `size` leaves (`index < size`).
pub fn path_len(index: u64, size: u64) -> usize {
    assert!(index < size, "path_len of a leaf outside the tree");
    let (mut position, mut width, mut len) = (index, size, 0);
    while width > 1 {
        if position & 1 == 1 || position + 1 < width {
            len += 1;
        }
        position >>= 1;
        width = width.div_ceil(2);
    }
    len
}

/// The audit path of one leaf: the sibling hashes from the leaf's level up
/// to just below the root (RFC 9162 §2.1.3.1 order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The leaf's position, from 0.
    pub index: u64,
    /// The number of leaves in the tree.
    pub size: u64,
    /// Sibling hashes, bottom up.
    pub path: Vec<Digest>,
}

impl InclusionProof {
    /// The root that `leaf` (a leaf hash) and this path lead to, or why the
    /// path is malformed for its index and size.
    pub fn root_from(&self, leaf: Digest) -> Result<Digest, MerkleError> {
        let (index, size) = (self.index, self.size);
        if index >= size {
            return Err(MerkleError::IndexOutOfRange { index, size });
        }
        let expected = path_len(index, size);
        if self.path.len() != expected {
            return Err(MerkleError::PathLength {
                expected,
                actual: self.path.len(),
            });
        }
        let mut siblings = self.path.iter();
        let (mut position, mut width, mut node) = (index, size, leaf);
        while width > 1 {
            if position & 1 == 1 {
                let left = siblings.next().expect("length checked above");
                node = node_hash(left, &node);
            } else if position + 1 < width {
                let right = siblings.next().expect("length checked above");
                node = node_hash(&node, right);
            }
            position >>= 1;
            width = width.div_ceil(2);
        }
        assert!(siblings.next().is_none(), "length checked above");
        Ok(node)
    }

    /// Checks that `leaf` (a leaf hash) sits at `self.index` in the tree of
    /// `self.size` leaves with root `root`.
    pub fn verify(&self, leaf: Digest, root: Digest) -> Result<(), MerkleError> {
        let computed = self.root_from(leaf)?;
        if computed != root {
            return Err(MerkleError::RootMismatch {
                expected: root,
                computed,
            });
        }
        Ok(())
    }
}

/// The receipts tree of one batch: leaf `i` is the `i`-th receipt's
/// [`Receipt::leaf_bytes`], in execution order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptTree {
    tree: MerkleTree,
}

impl ReceiptTree {
    /// The tree over a batch's receipts (none for an empty heartbeat batch).
    pub fn new(receipts: &[Receipt]) -> ReceiptTree {
        let leaves = receipts.iter().map(receipt_leaf_hash).collect();
        ReceiptTree {
            tree: MerkleTree::from_leaf_hashes(leaves),
        }
    }

    /// The receipts root a replica signs in its
    /// [`primitives::BatchStatement`].
    pub fn root(&self) -> Digest {
        self.tree.root()
    }

    /// The number of receipts.
    pub fn len(&self) -> u64 {
        self.tree.len()
    }

    /// Whether the batch had no receipts.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// The path of receipt `index` to the root, or `None` past the end.
    pub fn proof(&self, index: u64) -> Option<InclusionProof> {
        self.tree.proof(index)
    }
}

/// A receipt's leaf hash: [`leaf_hash`] of [`Receipt::leaf_bytes`].
pub fn receipt_leaf_hash(receipt: &Receipt) -> Digest {
    leaf_hash(&receipt.leaf_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_len_matches_tree_shape() {
        // 5 leaves: ((0 1)(2 3)) 4 — leaf 4 has one sibling, the others 3.
        let lens: Vec<usize> = (0..5).map(|i| path_len(i, 5)).collect();
        assert_eq!(lens, vec![3, 3, 3, 3, 1]);
        assert_eq!(path_len(0, 1), 0);
        assert_eq!(path_len(6, 7), 2);
    }

    #[test]
    fn out_of_range_proofs_are_none() {
        let tree = MerkleTree::from_leaves([&b"a"[..], b"b"]);
        assert!(tree.proof(2).is_none());
        assert!(MerkleTree::from_leaf_hashes(vec![]).proof(0).is_none());
    }
}
