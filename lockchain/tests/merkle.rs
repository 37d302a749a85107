//! The Merkle tree against RFC 6962 §2.1 / RFC 9162 §2.1: known answers
//! worked out by hand, and property tests against the RFC's recursive
//! definition taken literally as the model.

use lockchain::merkle::{empty_root, leaf_hash, node_hash, path_len};
use lockchain::{InclusionProof, MerkleError, MerkleTree};
use primitives::Digest;
use proptest::prelude::*;

fn leaves(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("leaf {i}").into_bytes()).collect()
}

fn tree(data: &[Vec<u8>]) -> MerkleTree {
    MerkleTree::from_leaves(data.iter().map(Vec::as_slice))
}

/// RFC 6962 §2.1 MTH, recursive exactly as written (the model).
fn model_root(data: &[Vec<u8>]) -> Digest {
    match data.len() {
        0 => empty_root(),
        1 => leaf_hash(&data[0]),
        n => {
            let k = largest_power_of_two_below(n);
            node_hash(&model_root(&data[..k]), &model_root(&data[k..]))
        }
    }
}

/// RFC 6962 §2.1.1 PATH(m, D[n]), recursive exactly as written.
fn model_path(m: usize, data: &[Vec<u8>]) -> Vec<Digest> {
    let n = data.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = largest_power_of_two_below(n);
    if m < k {
        let mut path = model_path(m, &data[..k]);
        path.push(model_root(&data[k..]));
        path
    } else {
        let mut path = model_path(m - k, &data[k..]);
        path.push(model_root(&data[..k]));
        path
    }
}

fn largest_power_of_two_below(n: usize) -> usize {
    assert!(n > 1);
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

#[test]
fn hash_inputs_follow_rfc_6962_prefixes() {
    // Recomputed with blake3 directly, as another language would.
    let h = |bytes: &[u8]| {
        let mut hasher = blake3::Hasher::new_derive_key("qlock 2026-11 merkle tree v1");
        hasher.update(bytes);
        Digest(*hasher.finalize().as_bytes())
    };
    assert_eq!(empty_root(), h(b""));
    assert_eq!(leaf_hash(b"abc"), h(b"\x00abc"));
    let (l, r) = (Digest([7; 32]), Digest([9; 32]));
    let mut node = vec![1u8];
    node.extend_from_slice(&[7; 32]);
    node.extend_from_slice(&[9; 32]);
    assert_eq!(node_hash(&l, &r), h(&node));
    // A leaf can never pose as a node: same 64 bytes, different prefix.
    let mut pair = [7u8; 64];
    pair[32..].copy_from_slice(&[9; 32]);
    assert_ne!(leaf_hash(&pair), node_hash(&l, &r));
    // Nor can the empty tree pose as a leaf of no bytes.
    assert_ne!(empty_root(), leaf_hash(b""));
}

#[test]
fn known_answers_for_small_trees() {
    let d = leaves(8);
    let l: Vec<Digest> = d.iter().map(|x| leaf_hash(x)).collect();
    let n = |a: Digest, b: Digest| node_hash(&a, &b);

    assert_eq!(tree(&d[..0]).root(), empty_root());
    // 1 leaf: the root is the leaf hash.
    assert_eq!(tree(&d[..1]).root(), l[0]);
    // 2 leaves: one node.
    assert_eq!(tree(&d[..2]).root(), n(l[0], l[1]));
    // 3 leaves: k = 2, so ((0 1) 2).
    assert_eq!(tree(&d[..3]).root(), n(n(l[0], l[1]), l[2]));
    // 5 leaves: k = 4, so (((0 1)(2 3)) 4).
    let n0123 = n(n(l[0], l[1]), n(l[2], l[3]));
    assert_eq!(tree(&d[..5]).root(), n(n0123, l[4]));
    // 6 and 7 leaves: the right subtree splits again.
    assert_eq!(tree(&d[..6]).root(), n(n0123, n(l[4], l[5])));
    assert_eq!(tree(&d[..7]).root(), n(n0123, n(n(l[4], l[5]), l[6])));
    // 8 leaves: complete.
    let n4567 = n(n(l[4], l[5]), n(l[6], l[7]));
    assert_eq!(tree(&d[..8]).root(), n(n0123, n4567));
}

#[test]
fn known_answer_paths() {
    let d = leaves(5);
    let l: Vec<Digest> = d.iter().map(|x| leaf_hash(x)).collect();
    let n = |a: Digest, b: Digest| node_hash(&a, &b);
    let t = tree(&d);
    // Leaf 2 of 5: sibling 3, then (0 1), then leaf 4.
    assert_eq!(t.proof(2).unwrap().path, vec![l[3], n(l[0], l[1]), l[4]]);
    // Leaf 4 of 5: moves up alone to the top; one sibling, (0 1 2 3).
    let n0123 = n(n(l[0], l[1]), n(l[2], l[3]));
    assert_eq!(t.proof(4).unwrap().path, vec![n0123]);
    // The single leaf of a 1-tree has an empty path.
    assert_eq!(tree(&d[..1]).proof(0).unwrap().path, Vec::<Digest>::new());
}

#[test]
fn pinned_roots_for_other_implementations() {
    // Listed in FORMAT.md as test vectors; leaves are the ASCII strings
    // "leaf 0", "leaf 1", ...
    let hex = |n: usize| tree(&leaves(n)).root().to_hex();
    let pinned = [
        (
            0,
            "9b2c68dd1aee1645fc4346043e1a33681b4c76dcef63fe4db6be1261f6363cd9",
        ),
        (
            1,
            "8cd6420fda4dc30b7510c233360b6be598009adc354470b429fcbf8db058fc12",
        ),
        (
            3,
            "740d5377381e131d32363ee0dd666ff90f92547494aacefe9b6694f236a06a1e",
        ),
        (
            5,
            "75b9cb83ec3a7ff5dc63afdf2a17d4b25fe6cdae11490f0ad6737824e13f66f3",
        ),
    ];
    for (n, expected) in pinned {
        assert_eq!(hex(n), expected, "root of {n} leaves");
    }
}

#[test]
fn malformed_paths_are_refused_precisely() {
    let d = leaves(5);
    let t = tree(&d);
    let root = t.root();
    let leaf = leaf_hash(&d[1]);
    let mut proof = t.proof(1).unwrap();
    assert_eq!(proof.verify(leaf, root), Ok(()));

    proof.index = 5;
    assert_eq!(
        proof.verify(leaf, root),
        Err(MerkleError::IndexOutOfRange { index: 5, size: 5 })
    );
    proof.index = 1;
    proof.path.push(Digest::ZERO);
    assert_eq!(
        proof.verify(leaf, root),
        Err(MerkleError::PathLength {
            expected: 3,
            actual: 4
        })
    );
    let empty = InclusionProof {
        index: 0,
        size: 0,
        path: vec![],
    };
    assert!(matches!(
        empty.verify(leaf, root),
        Err(MerkleError::IndexOutOfRange { .. })
    ));
}

proptest! {
    // Integration tests have no lib.rs next to them to persist failures to;
    // proptest prints the failing case and seed instead.
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn tree_matches_the_rfc_model(n in 0usize..70) {
        let d = leaves(n);
        let t = tree(&d);
        prop_assert_eq!(t.root(), model_root(&d));
        prop_assert_eq!(t.len(), n as u64);
        for m in 0..n {
            let proof = t.proof(m as u64).unwrap();
            prop_assert_eq!(&proof.path, &model_path(m, &d));
            prop_assert_eq!(proof.path.len(), path_len(m as u64, n as u64));
        }
    }

    #[test]
    fn every_leaf_verifies_and_nothing_else_does(
        n in 1usize..100,
        pick in any::<prop::sample::Index>(),
        other in any::<prop::sample::Index>(),
    ) {
        let d = leaves(n);
        let t = tree(&d);
        let root = t.root();
        for (m, data) in d.iter().enumerate() {
            let proof = t.proof(m as u64).unwrap();
            prop_assert_eq!(proof.verify(leaf_hash(data), root), Ok(()));
        }
        let m = pick.index(n);
        let proof = t.proof(m as u64).unwrap();
        let leaf = leaf_hash(&d[m]);
        // Another leaf with this proof.
        let o = other.index(n);
        if o != m {
            prop_assert!(proof.verify(leaf_hash(&d[o]), root).is_err());
            // This leaf at another index.
            let mut moved = proof.clone();
            moved.index = o as u64;
            prop_assert!(moved.verify(leaf, root).is_err());
        }
        // Another root.
        prop_assert!(proof.verify(leaf, tree(&leaves(n + 1)).root()).is_err());
        // The leaf bytes posing as its hash, or the hash as leaf bytes.
        prop_assert!(proof.verify(leaf_hash(leaf.as_bytes()), root).is_err());
    }

    #[test]
    fn any_flipped_bit_fails(n in 2usize..64, pick in any::<prop::sample::Index>(), bit in 0usize..256) {
        let d = leaves(n);
        let t = tree(&d);
        let m = pick.index(n);
        let proof = t.proof(m as u64).unwrap();
        let leaf = leaf_hash(&d[m]);
        let flip = |mut digest: Digest| { digest.0[bit / 8] ^= 1 << (bit % 8); digest };
        for i in 0..proof.path.len() {
            let mut bad = proof.clone();
            bad.path[i] = flip(bad.path[i]);
            let rejected = matches!(bad.verify(leaf, t.root()), Err(MerkleError::RootMismatch { .. }));
            prop_assert!(rejected);
        }
        prop_assert!(proof.verify(flip(leaf), t.root()).is_err());
        prop_assert!(proof.verify(leaf, flip(t.root())).is_err());
    }

    #[test]
    fn path_bytes_round_trip(n in 1usize..300, pick in any::<prop::sample::Index>()) {
        let t = tree(&leaves(n));
        let proof = t.proof(pick.index(n) as u64).unwrap();
        prop_assert_eq!(InclusionProof::from_bytes(&proof.to_bytes()).unwrap(), proof);
    }
}
