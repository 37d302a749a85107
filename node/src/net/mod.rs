//! The replica's libp2p network: TCP + Noise + Yamux, the replica set as
//! the only admitted peers, and two frame protocols.
//!
//! Codemap:
//! - [`identity`] — the libp2p identity of a replica (its ed25519 seed) and
//!   the peer id of a configured public key;
//! - [`peers`] — admission (configured peer ids only, refused ones counted)
//!   and reconnection with back-off;
//! - [`frames`] — a one-way message protocol on its own id — length-prefixed
//!   frames, bounded, with back-pressure;
//! - [`wire`] — the frame format;
//! - [`metrics`] — the counters;
//! - [`gossip_driver`] — feeds the Plumtree core from the gossip protocol.
//!
//! [`build_swarm`] puts them together into one [`Swarm`] with the
//! behaviour [`Behaviour`]: `peers`, then `pbft` on [`PBFT_PROTOCOL`], then
//! `gossip` on [`GOSSIP_PROTOCOL`].
//!
//! Every replica dials every configured peer it has an address for while
//! it is not connected to it; when two replicas dial each other at once
//! they keep both connections and the protocols send on the less loaded.
//!
//! The event loop's use, in outline (`tests/net.rs` has the full loop):
//!
//! ```ignore
//! let mut swarm = build_swarm::<PbftMessage, gossip::Message>(&seed, &config, &metrics)?;
//! let mut driver = GossipDriver::new(core, ReplicaPeers::new(&keys), |p| false, timers_max);
//! loop {
//!     tokio::select! {
//!         event = swarm.select_next_some() => match event {
//!             SwarmEvent::Behaviour(BehaviourEvent::Pbft(Event::Received { peer, message })) => ..,
//!             SwarmEvent::Behaviour(BehaviourEvent::Gossip(e)) =>
//!                 deliveries = driver.on_event(&mut swarm.behaviour_mut().gossip, e),
//!             SwarmEvent::ConnectionEstablished { peer_id, num_established, .. }
//!                 if num_established.get() == 1 => driver.on_peer_up(..),
//!             SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } =>
//!                 driver.on_peer_down(..),
//!             _ => {}
//!         },
//!         () = sleep_until(driver.next_deadline()) => driver.fire_due_timers(..),
//!     }
//!     swarm.behaviour_mut().pbft.send(&peer, &message)?; // QueueFull = back-pressure
//! }
//! ```

pub mod frames;
pub mod gossip_driver;
pub mod identity;
pub mod metrics;
pub mod peers;
pub mod wire;

pub use frames::{FrameConfig, Message, SendError};
pub use identity::ReplicaPeers;
pub use metrics::{FrameMetrics, NetMetrics};
pub use peers::PeersConfig;

use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, Swarm, SwarmBuilder};
use primitives::PublicKey;
use std::time::Duration;

/// The protocol id of PBFT's point-to-point messages.
pub const PBFT_PROTOCOL: &str = "/qlock/pbft/1";
/// The protocol id of Plumtree's messages.
pub const GOSSIP_PROTOCOL: &str = "/qlock/gossip/1";
/// The largest PBFT frame: the codec's global bound (a NEW-VIEW or a state
/// transfer chunk is the largest message).
pub const PBFT_FRAME_BYTES_MAX: usize = primitives::codec::FRAME_BYTES_MAX;

/// One configured replica as the network sees it.
#[derive(Clone, Debug)]
pub struct PeerAddress {
    /// Its ed25519 key (its peer id is derived from it).
    pub key: PublicKey,
    /// Where to dial it (may be empty: it then has to dial us).
    pub addresses: Vec<Multiaddr>,
}

/// Everything the network layer needs besides the secret key.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Addresses to listen on (port 0 picks a free port).
    pub listen: Vec<Multiaddr>,
    /// The replica set; the local replica may be included.
    pub peers: Vec<PeerAddress>,
    /// Admission and reconnection.
    pub admission: PeersConfig,
    /// The PBFT protocol's bounds.
    pub pbft: FrameConfig,
    /// The gossip protocol's bounds (derive them from the gossip core's
    /// configuration with [`gossip_driver::gossip_frame_config`]).
    pub gossip: FrameConfig,
}

impl NetConfig {
    /// Defaults with the given listen addresses and replica set.
    pub fn new(listen: Vec<Multiaddr>, peers: Vec<PeerAddress>) -> Self {
        NetConfig {
            listen,
            peers,
            admission: PeersConfig::default(),
            pbft: FrameConfig::new(PBFT_PROTOCOL, "pbft", PBFT_FRAME_BYTES_MAX),
            gossip: gossip_driver::gossip_frame_config(&gossip::Config::default()),
        }
    }
}

/// Why the network could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The Noise configuration could not be built from the key.
    #[error("noise: {0}")]
    Noise(#[from] noise::Error),
    /// Listening on an address failed.
    #[error("listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// The transport's error.
        reason: String,
    },
}

mod behaviour;
pub use behaviour::{Behaviour, BehaviourEvent};

/// The swarm of a replica carrying PBFT messages `P` and gossip messages `G`.
pub type NetSwarm<P, G> = Swarm<Behaviour<P, G>>;

/// Builds the swarm of the replica whose ed25519 seed is `seed` and starts
/// listening. Must run inside a tokio runtime.
pub fn build_swarm<P: Message, G: Message>(
    seed: &[u8; 32],
    config: &NetConfig,
    metrics: &NetMetrics,
) -> Result<NetSwarm<P, G>, NetError> {
    let keypair = identity::keypair_from_seed(seed);
    let local = keypair.public().to_peer_id();
    let allowed = config
        .peers
        .iter()
        .map(|p| (identity::peer_id(&p.key), p.addresses.clone()));
    let behaviour = Behaviour {
        peers: peers::Behaviour::new(local, allowed, config.admission.clone(), metrics.clone()),
        pbft: frames::Behaviour::new(config.pbft.clone(), metrics.frames(config.pbft.name)),
        gossip: frames::Behaviour::new(config.gossip.clone(), metrics.frames(config.gossip.name)),
    };
    let mut swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| behaviour)
        .unwrap_or_else(|never| match never {})
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(Duration::from_secs(60))
                .with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
        })
        .build();
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
    }
    Ok(swarm)
}

/// The peer id of replica key `key`.
pub fn peer_id(key: &PublicKey) -> PeerId {
    identity::peer_id(key)
}
