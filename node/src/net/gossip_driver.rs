//! Drives the sans-IO Plumtree core ([`gossip::Plumtree`]) from the gossip
//! frame protocol: swarm events and due timers go in, the core's sends go
//! out on `/qlock/gossip/1`, its deliveries go back to the caller.
//!
//! The driver owns the core's clock: `now` is microseconds since the driver
//! was created, read from tokio's clock (so tests may pause it). Sends the
//! transport refuses (peer down, queue full) are counted and dropped:
//! Plumtree repairs loss with IHAVE/GRAFT and anti-entropy, so dropping is
//! the right response to a slow peer — it must not grow our memory.

use super::frames::{self, SendError};
use super::identity::ReplicaPeers;
use gossip::{Delivery, GossipError, InEvent, OutEvent, Plumtree, Timer, Validator};
use libp2p::PeerId;
use primitives::{Bytes, Digest, ReplicaId};
use std::collections::BTreeMap;
use tokio::time::{Duration, Instant};

/// The gossip protocol's behaviour.
pub type GossipBehaviour = frames::Behaviour<gossip::Message>;

/// What the core hands the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GossipOutput {
    /// A validated payload, once per id.
    Deliver(Delivery),
    /// A fetch-by-digest found no peer that answered.
    FetchFailed(Digest),
}

/// Counters of the driver (the core keeps its own [`gossip::Stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Messages the transport refused because the peer was not connected.
    pub send_not_connected: u64,
    /// Messages the transport refused because the peer's queue was full.
    pub send_queue_full: u64,
    /// Messages from peers the core refused (unknown, malformed, invalid).
    pub rejected: u64,
    /// Messages larger than the gossip frame limit (the frame limit is
    /// smaller than the core's bound: see [`gossip_frame_config`]).
    pub send_oversized: u64,
    /// Timers dropped because `timers_max` were pending.
    pub timers_dropped: u64,
}

/// The gossip protocol's frame configuration for a core configured with
/// `config`: the frame bound is the largest message the core may build.
pub fn gossip_frame_config(config: &gossip::Config) -> frames::FrameConfig {
    frames::FrameConfig::new(
        super::GOSSIP_PROTOCOL,
        "gossip",
        gossip::Message::encoded_len_max(config),
    )
}

/// The Plumtree core bound to a swarm's gossip protocol.
pub struct GossipDriver<V: Validator> {
    core: Plumtree<V>,
    replicas: ReplicaPeers,
    /// Pending timers by (due time, arrival order).
    timers: BTreeMap<(u64, u64), Timer>,
    timers_seq: u64,
    timers_max: usize,
    epoch: Instant,
    stats: DriverStats,
}

impl<V: Validator> GossipDriver<V> {
    /// Binds `core` to the replica set `replicas` (the local replica
    /// included). `connected` says which peers are already up; the others
    /// are reported down to the core until they connect. `timers_max`
    /// bounds the pending timers (the core's missing and fetch bounds plus
    /// one tick suffice).
    pub fn new(
        core: Plumtree<V>,
        replicas: ReplicaPeers,
        connected: impl Fn(&PeerId) -> bool,
        timers_max: usize,
    ) -> Self {
        assert!(core.me().index() < replicas.len());
        let mut driver = GossipDriver {
            core,
            replicas,
            timers: BTreeMap::new(),
            timers_seq: 0,
            timers_max,
            epoch: Instant::now(),
            stats: DriverStats::default(),
        };
        let me = driver.core.me();
        let down: Vec<ReplicaId> = driver
            .replicas
            .iter()
            .filter(|p| !connected(p))
            .filter_map(|p| driver.replicas.replica(p))
            .filter(|r| *r != me)
            .collect();
        for replica in down {
            // PeerDown sends nothing, but the core's first event arms its
            // housekeeping tick: that timer must be kept.
            let out = driver.core.handle(driver.now(), InEvent::PeerDown(replica));
            for event in out.expect("PeerDown of a member is accepted") {
                match event {
                    OutEvent::SetTimer { at_micros, timer } => driver.set_timer(at_micros, timer),
                    other => panic!("PeerDown produced {other:?}"),
                }
            }
        }
        driver
    }

    /// The core (for its stats and views).
    pub fn core(&self) -> &Plumtree<V> {
        &self.core
    }

    /// The core's validation hook.
    pub fn validator_mut(&mut self) -> &mut V {
        self.core.validator_mut()
    }

    /// The driver's counters.
    pub fn stats(&self) -> &DriverStats {
        &self.stats
    }

    /// Microseconds since the driver started: the core's clock.
    pub fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Broadcasts a payload this replica has validated. The broadcaster is
    /// not handed its own payload back.
    pub fn broadcast(
        &mut self,
        net: &mut GossipBehaviour,
        payload: Bytes,
    ) -> Result<Vec<GossipOutput>, GossipError> {
        self.step(net, InEvent::Broadcast(payload))
    }

    /// Asks the cluster for the payload with id `id` (payload availability
    /// for consensus); `hints` are asked first.
    pub fn fetch(
        &mut self,
        net: &mut GossipBehaviour,
        id: Digest,
        hints: Vec<ReplicaId>,
    ) -> Result<Vec<GossipOutput>, GossipError> {
        self.step(net, InEvent::Fetch { id, hints })
    }

    /// Feeds one event of the gossip behaviour.
    pub fn on_event(
        &mut self,
        net: &mut GossipBehaviour,
        event: frames::Event<gossip::Message>,
    ) -> Vec<GossipOutput> {
        match event {
            frames::Event::Received { peer, message } => {
                let Some(from) = self.replicas.replica(&peer) else {
                    self.stats.rejected += 1;
                    return Vec::new();
                };
                self.step_peer(net, InEvent::Message { from, message })
            }
            frames::Event::Rejected { .. } => {
                self.stats.rejected += 1;
                Vec::new()
            }
        }
    }

    /// Lets the validation hook check the new payloads of `events` (the
    /// next ones to be fed to [`Self::on_event`]) together; see
    /// [`Plumtree::prepare`]. Events of unknown peers are left out.
    pub fn prepare<'a>(
        &mut self,
        events: impl IntoIterator<Item = &'a frames::Event<gossip::Message>>,
    ) {
        let replicas = &self.replicas;
        let messages = events.into_iter().filter_map(|e| match e {
            frames::Event::Received { peer, message } if replicas.replica(peer).is_some() => {
                Some(message)
            }
            _ => None,
        });
        self.core.prepare(messages);
    }

    /// Reports that `peer` got its first connection.
    pub fn on_peer_up(&mut self, net: &mut GossipBehaviour, peer: &PeerId) -> Vec<GossipOutput> {
        match self.replicas.replica(peer) {
            Some(r) if r != self.core.me() => self.step_peer(net, InEvent::PeerUp(r)),
            _ => Vec::new(),
        }
    }

    /// Reports that `peer` lost its last connection.
    pub fn on_peer_down(&mut self, net: &mut GossipBehaviour, peer: &PeerId) -> Vec<GossipOutput> {
        match self.replicas.replica(peer) {
            Some(r) if r != self.core.me() => self.step_peer(net, InEvent::PeerDown(r)),
            _ => Vec::new(),
        }
    }

    /// When the earliest pending timer is due (for the event loop's sleep).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers
            .keys()
            .next()
            .map(|(at, _)| self.epoch + Duration::from_micros(*at))
    }

    /// Fires every timer due by now.
    pub fn fire_due_timers(&mut self, net: &mut GossipBehaviour) -> Vec<GossipOutput> {
        let now = self.now();
        let mut outputs = Vec::new();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            outputs.extend(self.step_peer(net, InEvent::TimerFired(timer)));
        }
        outputs
    }

    /// One input whose refusal is the peer's fault: counted, not returned.
    fn step_peer(&mut self, net: &mut GossipBehaviour, event: InEvent) -> Vec<GossipOutput> {
        match self.step(net, event) {
            Ok(outputs) => outputs,
            Err(e) => {
                tracing::debug!("gossip input refused: {e}");
                self.stats.rejected += 1;
                Vec::new()
            }
        }
    }

    fn step(
        &mut self,
        net: &mut GossipBehaviour,
        event: InEvent,
    ) -> Result<Vec<GossipOutput>, GossipError> {
        let out = self.core.handle(self.now(), event)?;
        let mut outputs = Vec::new();
        for event in out {
            match event {
                OutEvent::Send { to, message } => self.send(net, to, &message),
                OutEvent::Deliver(delivery) => outputs.push(GossipOutput::Deliver(delivery)),
                OutEvent::FetchFailed { id } => outputs.push(GossipOutput::FetchFailed(id)),
                OutEvent::SetTimer { at_micros, timer } => self.set_timer(at_micros, timer),
            }
        }
        Ok(outputs)
    }

    fn send(&mut self, net: &mut GossipBehaviour, to: ReplicaId, message: &gossip::Message) {
        let Some(peer) = self.replicas.peer(to) else {
            panic!("the gossip core addressed replica {to:?} outside the set");
        };
        match net.send(peer, message) {
            Ok(()) => {}
            Err(SendError::NotConnected) => self.stats.send_not_connected += 1,
            Err(SendError::QueueFull { .. }) => self.stats.send_queue_full += 1,
            Err(SendError::Oversized { .. }) => self.stats.send_oversized += 1,
        }
    }

    fn set_timer(&mut self, at_micros: u64, timer: Timer) {
        // The tick keeps the core alive: it is never dropped.
        if self.timers.len() >= self.timers_max && timer != Timer::Tick {
            self.stats.timers_dropped += 1;
            return;
        }
        self.timers_seq += 1;
        self.timers.insert((at_micros, self.timers_seq), timer);
    }
}
