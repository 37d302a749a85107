//! The composed behaviour. In its own module because the derive generates
//! `BehaviourEvent` with undocumented variants (`Peers`, `Pbft`, `Gossip`,
//! one per field, carrying that field's events).
#![allow(missing_docs)]

use super::{frames, peers, Message};
use libp2p::swarm::NetworkBehaviour;

/// The swarm's behaviour: admission first (a refused connection never
/// reaches the protocols), then the two frame protocols.
#[derive(NetworkBehaviour)]
pub struct Behaviour<P: Message, G: Message> {
    /// Admission and reconnection.
    pub peers: peers::Behaviour,
    /// PBFT messages, point to point.
    pub pbft: frames::Behaviour<P>,
    /// Plumtree messages.
    pub gossip: frames::Behaviour<G>,
}
