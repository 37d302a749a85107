//! A replica's libp2p identity is its ed25519 key from the cluster
//! configuration: the libp2p keypair is built from the same 32-byte seed as
//! `primitives::KeyPair`, so a replica's peer id follows from its public key
//! and the configuration alone.

use libp2p::identity::{ed25519, Keypair, PublicKey as Libp2pPublicKey};
use libp2p::PeerId;
use primitives::{PublicKey, ReplicaId};
use std::collections::HashMap;

/// The libp2p keypair of the replica whose ed25519 seed is `seed` (the seed
/// of `primitives::KeyPair::from_seed`).
pub fn keypair_from_seed(seed: &[u8; 32]) -> Keypair {
    // `ed25519_from_bytes` zeroes the buffer it is given: give it a copy.
    let mut copy = *seed;
    Keypair::ed25519_from_bytes(&mut copy).expect("any 32 bytes are an ed25519 secret key")
}

/// The peer id of the replica holding `key`.
pub fn peer_id(key: &PublicKey) -> PeerId {
    // Every `primitives::PublicKey` is a valid point, which is all libp2p
    // checks.
    let public = ed25519::PublicKey::try_from_bytes(key.as_bytes())
        .expect("a primitives::PublicKey is a valid ed25519 point");
    Libp2pPublicKey::from(public).to_peer_id()
}

/// The peer ids of a replica set, both ways: replica `i` is `peers[i]`.
#[derive(Clone, Debug)]
pub struct ReplicaPeers {
    peers: Vec<PeerId>,
    replicas: HashMap<PeerId, ReplicaId>,
}

impl ReplicaPeers {
    /// The peer ids of `keys` (replica `i` holds `keys[i]`, as in
    /// `primitives::Membership::replicas`).
    pub fn new(keys: &[PublicKey]) -> Self {
        Self::from_peer_ids(keys.iter().map(peer_id).collect())
    }

    /// From peer ids already derived (replica `i` is `peers[i]`).
    pub fn from_peer_ids(peers: Vec<PeerId>) -> Self {
        assert!(peers.len() <= primitives::membership::REPLICAS_MAX);
        let replicas: HashMap<PeerId, ReplicaId> = peers
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, ReplicaId(i as u16)))
            .collect();
        assert_eq!(replicas.len(), peers.len(), "two replicas share a key");
        ReplicaPeers { peers, replicas }
    }

    /// The number of replicas.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The peer id of `replica`, if it is a member.
    pub fn peer(&self, replica: ReplicaId) -> Option<&PeerId> {
        self.peers.get(replica.index())
    }

    /// The replica a peer id belongs to, if any.
    pub fn replica(&self, peer: &PeerId) -> Option<ReplicaId> {
        self.replicas.get(peer).copied()
    }

    /// Every peer id, in replica order.
    pub fn iter(&self) -> impl Iterator<Item = &PeerId> {
        self.peers.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use primitives::KeyPair;

    #[test]
    fn libp2p_identity_matches_the_replica_key() {
        for i in 0..8u8 {
            let seed = [i.wrapping_mul(37).wrapping_add(1); 32];
            let replica = KeyPair::from_seed(&seed);
            let libp2p = keypair_from_seed(&seed);
            let ed = libp2p.public().try_into_ed25519().unwrap();
            assert_eq!(&ed.to_bytes(), replica.public().as_bytes());
            assert_eq!(libp2p.public().to_peer_id(), peer_id(&replica.public()));
        }
    }
}
