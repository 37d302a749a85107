//! The active view: which peers a replica pushes to and announces to.
//!
//! Membership is fixed by the cluster configuration, so instead of
//! HyParView's join/shuffle protocol every replica computes the same
//! overlay from a shared seed: a ring (so it is connected) plus random
//! chords (so its diameter is logarithmic), each node's degree capped at
//! [`crate::Config::active_view_max`]. It is symmetric by construction,
//! which Plumtree's PRUNE/GRAFT assume. Small clusters use the full mesh.
//! Lazy traffic is therefore O(n · degree), not O(n²).

use primitives::ReplicaId;
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

/// The neighbours of `me` in the shared overlay of `n` replicas.
pub fn active_view(
    me: ReplicaId,
    n: usize,
    degree_target: usize,
    degree_max: usize,
    seed: u64,
) -> BTreeSet<ReplicaId> {
    assert!(me.index() < n, "replica {me:?} outside a cluster of {n}");
    assert!(degree_target <= degree_max && degree_max >= 2);
    if n - 1 <= degree_max {
        return (0..n)
            .filter(|&i| i != me.index())
            .map(|i| ReplicaId(i as u16))
            .collect();
    }
    let mut adjacency: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    for i in 0..n {
        let j = (i + 1) % n;
        adjacency[i].insert(j);
        adjacency[j].insert(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Each node asks for chords until it reaches the target degree; a
    // bounded number of draws keeps this a loop with a known end.
    for i in 0..n {
        let mut draws = 0;
        while adjacency[i].len() < degree_target && draws < 8 * degree_max {
            draws += 1;
            let j = rng.gen_range(0..n);
            if j == i || adjacency[j].len() >= degree_max {
                continue;
            }
            adjacency[i].insert(j);
            adjacency[j].insert(i);
        }
    }
    let view: BTreeSet<ReplicaId> = adjacency[me.index()]
        .iter()
        .map(|&i| ReplicaId(i as u16))
        .collect();
    assert!(
        view.len() <= degree_max + 2,
        "overlay degree over its bound"
    );
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_clusters_use_the_full_mesh() {
        let view = active_view(ReplicaId(2), 7, 4, 8, 1);
        assert_eq!(view.len(), 6);
        assert!(!view.contains(&ReplicaId(2)));
    }

    #[test]
    fn large_overlay_is_symmetric_bounded_and_connected() {
        let n = 128;
        let views: Vec<_> = (0..n)
            .map(|i| active_view(ReplicaId(i as u16), n, 8, 12, 7))
            .collect();
        for (i, view) in views.iter().enumerate() {
            assert!(view.len() >= 3 && view.len() <= 14);
            for j in view {
                assert!(views[j.index()].contains(&ReplicaId(i as u16)));
            }
        }
        let mut reached = BTreeSet::from([0usize]);
        let mut frontier = vec![0usize];
        while let Some(i) = frontier.pop() {
            for j in &views[i] {
                if reached.insert(j.index()) {
                    frontier.push(j.index());
                }
            }
        }
        assert_eq!(reached.len(), n);
    }
}
