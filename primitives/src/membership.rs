//! The replica set: who votes, how many may be faulty, how many make a
//! quorum.

use crate::codec;
use crate::digest::{Digest, Domain};
use crate::ids::{ClusterId, ReplicaId, ViewNumber};
use crate::keys::PublicKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The largest replica set QLOCK accepts (bounds every per-replica array).
pub const REPLICAS_MAX: usize = 256;

/// The fixed replica set of a cluster. Its digest is the [`ClusterId`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// A human name, part of the cluster id so two clusters with the same
    /// keys still differ.
    pub name: String,
    /// Replica `i`'s public key is `replicas[i]`.
    pub replicas: Vec<PublicKey>,
}

/// Why a replica set is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// No replicas, or more than [`REPLICAS_MAX`].
    #[error("a cluster has 1 to {REPLICAS_MAX} replicas, not {0}")]
    Size(usize),
    /// Two replicas share a key (Twins is a fault, not a configuration).
    #[error("replicas {0} and {1} have the same public key")]
    DuplicateKey(usize, usize),
}

impl Membership {
    /// Checks the set and builds it.
    pub fn new(name: impl Into<String>, replicas: Vec<PublicKey>) -> Result<Self, MembershipError> {
        if replicas.is_empty() || replicas.len() > REPLICAS_MAX {
            return Err(MembershipError::Size(replicas.len()));
        }
        let mut seen = BTreeSet::new();
        for (i, key) in replicas.iter().enumerate() {
            if !seen.insert(*key) {
                let first = replicas.iter().position(|k| k == key).unwrap_or(0);
                return Err(MembershipError::DuplicateKey(first, i));
            }
        }
        Ok(Membership {
            name: name.into(),
            replicas,
        })
    }

    /// The number of replicas, `n`.
    pub fn n(&self) -> usize {
        self.replicas.len()
    }

    /// The number of faulty replicas tolerated: `f = ⌊(n − 1)/3⌋`.
    pub fn f(&self) -> usize {
        (self.n() - 1) / 3
    }

    /// The quorum size: `2f + 1` when `n = 3f + 1`, and `⌈(n + f + 1)/2⌉` in
    /// general, the smallest size at which any two quorums share a correct
    /// replica.
    pub fn quorum(&self) -> usize {
        (self.n() + self.f() + 1).div_ceil(2)
    }

    /// `f + 1`: enough that at least one is correct.
    pub fn weak_quorum(&self) -> usize {
        self.f() + 1
    }

    /// The key of `replica`, if it is a member.
    pub fn key(&self, replica: ReplicaId) -> Option<&PublicKey> {
        self.replicas.get(replica.index())
    }

    /// The replica holding `key`, if any.
    pub fn replica_of(&self, key: &PublicKey) -> Option<ReplicaId> {
        self.replicas
            .iter()
            .position(|k| k == key)
            .map(|i| ReplicaId(i as u16))
    }

    /// Every replica id, in order.
    pub fn ids(&self) -> impl Iterator<Item = ReplicaId> + '_ {
        (0..self.n()).map(|i| ReplicaId(i as u16))
    }

    /// The primary of `view`: replica `view mod n` (PBFT §4.1).
    pub fn primary(&self, view: ViewNumber) -> ReplicaId {
        ReplicaId((view.0 % self.n() as u64) as u16)
    }

    /// The cluster id: the digest of this configuration.
    pub fn cluster_id(&self) -> ClusterId {
        ClusterId(Digest::of(Domain::ClusterConfig, &codec::encode(self)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyPair;

    fn members(n: usize) -> Membership {
        let keys = (0..n)
            .map(|i| KeyPair::from_seed(&[i as u8 + 1; 32]).public())
            .collect();
        Membership::new("test", keys).unwrap()
    }

    #[test]
    fn quorums_for_3f_plus_1_and_other_sizes() {
        // (n, f, quorum)
        let cases = [
            (1, 0, 1),
            (2, 0, 2),
            (3, 0, 2),
            (4, 1, 3),
            (5, 1, 4),
            (6, 1, 4),
            (7, 2, 5),
            (10, 3, 7),
            (16, 5, 11),
        ];
        for (n, f, q) in cases {
            let m = members(n);
            assert_eq!((m.f(), m.quorum()), (f, q), "n = {n}");
            // Two quorums intersect in at least f + 1 replicas, one correct.
            assert!(2 * m.quorum() > n + f, "n = {n}");
        }
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let k = KeyPair::from_seed(&[1; 32]).public();
        assert_eq!(
            Membership::new("x", vec![k, k]),
            Err(MembershipError::DuplicateKey(0, 1))
        );
        assert_eq!(Membership::new("x", vec![]), Err(MembershipError::Size(0)));
    }

    #[test]
    fn cluster_id_depends_on_name_and_keys() {
        let a = members(4);
        let mut b = a.clone();
        b.name = "other".into();
        let mut c = a.clone();
        c.replicas.swap(0, 1);
        assert_ne!(a.cluster_id(), b.cluster_id());
        assert_ne!(a.cluster_id(), c.cluster_id());
        assert_eq!(a.cluster_id(), members(4).cluster_id());
    }

    #[test]
    fn primary_rotates_with_the_view() {
        let m = members(4);
        assert_eq!(m.primary(ViewNumber(0)), ReplicaId(0));
        assert_eq!(m.primary(ViewNumber(5)), ReplicaId(1));
    }
}
