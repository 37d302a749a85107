//! The replica set at the connection level: only configured peer ids may
//! connect, and every configured peer with a known address is dialled
//! again, with exponential back-off, whenever it is not connected.
//!
//! The check happens once Noise has authenticated the remote (its peer id
//! is the hash of its ed25519 key), so a refused peer costs one handshake.
//! Inbound connections still in their handshake are bounded by
//! `pending_inbound_max`, so a flood of half-open connections cannot grow
//! memory.

use super::metrics::NetMetrics;
use libp2p::core::{transport::PortUse, Endpoint, Multiaddr};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, DialError, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::PeerId;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Reconnection and admission bounds.
#[derive(Clone, Debug)]
pub struct PeersConfig {
    /// The first retry delay after a lost connection or failed dial.
    pub backoff_min: Duration,
    /// The longest retry delay (the delay doubles up to it).
    pub backoff_max: Duration,
    /// Inbound connections allowed in their handshake at once.
    pub pending_inbound_max: usize,
}

impl Default for PeersConfig {
    fn default() -> Self {
        PeersConfig {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            pending_inbound_max: 64,
        }
    }
}

/// A remote peer id that is not in the configuration.
#[derive(Debug, thiserror::Error)]
#[error("peer {0} is not a configured replica")]
pub struct NotConfigured(pub PeerId);

/// Too many inbound connections are in their handshake.
#[derive(Debug, thiserror::Error)]
#[error("too many pending inbound connections ({0})")]
pub struct TooManyPending(pub usize);

#[derive(Debug, Default)]
struct PeerState {
    addresses: Vec<Multiaddr>,
    connections: usize,
    dialing: bool,
    /// The delay before the next retry (doubles on each failure).
    backoff: Duration,
    /// When to dial next, if disconnected.
    next_dial: Option<Instant>,
    /// When the current run of connections began.
    connected_since: Option<Instant>,
}

/// The connection-level `NetworkBehaviour` of the replica set.
pub struct Behaviour {
    config: PeersConfig,
    metrics: NetMetrics,
    peers: BTreeMap<PeerId, PeerState>,
    pending_inbound: BTreeSet<ConnectionId>,
    timer: Option<Pin<Box<Sleep>>>,
    waker: Option<Waker>,
}

impl Behaviour {
    /// Admits exactly `allowed` (the local peer id may be among them; it is
    /// never dialled).
    pub fn new(
        local: PeerId,
        allowed: impl IntoIterator<Item = (PeerId, Vec<Multiaddr>)>,
        config: PeersConfig,
        metrics: NetMetrics,
    ) -> Self {
        let now = Instant::now();
        let peers = allowed
            .into_iter()
            .filter(|(peer, _)| *peer != local)
            .map(|(peer, addresses)| {
                let state = PeerState {
                    addresses,
                    backoff: config.backoff_min,
                    next_dial: Some(now),
                    ..PeerState::default()
                };
                (peer, state)
            })
            .collect::<BTreeMap<_, _>>();
        metrics.peers_configured.set(peers.len() as i64);
        Behaviour {
            config,
            metrics,
            peers,
            pending_inbound: BTreeSet::new(),
            timer: None,
            waker: None,
        }
    }

    /// Replaces the addresses of configured `peer` and dials it now if it
    /// is not connected. Returns false for a peer not in the configuration.
    pub fn set_addresses(&mut self, peer: &PeerId, addresses: Vec<Multiaddr>) -> bool {
        let Some(state) = self.peers.get_mut(peer) else {
            return false;
        };
        state.addresses = addresses;
        state.backoff = self.config.backoff_min;
        state.next_dial = Some(Instant::now());
        self.wake();
        true
    }

    /// Updates the connected-peers gauge.
    fn count_connected(&self) {
        let connected = self.peers.values().filter(|s| s.connections > 0).count();
        self.metrics.peers_connected.set(connected as i64);
    }

    /// Whether `peer` has at least one connection.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|s| s.connections > 0)
    }

    /// The configured peers (without the local one), in peer-id order.
    pub fn configured(&self) -> impl Iterator<Item = &PeerId> {
        self.peers.keys()
    }

    /// The configured peers currently connected.
    pub fn connected(&self) -> impl Iterator<Item = &PeerId> {
        self.peers
            .iter()
            .filter(|(_, s)| s.connections > 0)
            .map(|(p, _)| p)
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    fn admit(&self, peer: PeerId) -> Result<(), ConnectionDenied> {
        if self.peers.contains_key(&peer) {
            Ok(())
        } else {
            self.metrics.connections_refused.inc();
            tracing::info!(%peer, "refused a connection from an unconfigured peer");
            Err(ConnectionDenied::new(NotConfigured(peer)))
        }
    }

    /// Schedules the next dial of `peer` after its back-off, then doubles it.
    fn schedule_retry(&mut self, peer: &PeerId) {
        let max = self.config.backoff_max;
        if let Some(state) = self.peers.get_mut(peer) {
            state.dialing = false;
            if state.connections == 0 {
                state.next_dial = Some(Instant::now() + state.backoff);
                state.backoff = (state.backoff * 2).min(max);
            }
        }
        self.wake();
    }

    /// The first peer due for a dial, marked as dialling.
    fn due_dial(&mut self, now: Instant) -> Option<DialOpts> {
        let (peer, state) = self.peers.iter_mut().find(|(_, s)| {
            s.connections == 0
                && !s.dialing
                && !s.addresses.is_empty()
                && s.next_dial.is_some_and(|t| t <= now)
        })?;
        state.dialing = true;
        state.next_dial = None;
        self.metrics.dials.inc();
        Some(
            DialOpts::peer_id(*peer)
                .addresses(state.addresses.clone())
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build(),
        )
    }

    /// Arms the timer for the earliest future dial; true if it fired.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let earliest = self
            .peers
            .values()
            .filter(|s| s.connections == 0 && !s.dialing && !s.addresses.is_empty())
            .filter_map(|s| s.next_dial)
            .min();
        let Some(deadline) = earliest else {
            self.timer = None;
            return false;
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx).is_ready()
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection: ConnectionId,
        _local: &Multiaddr,
        _remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        if self.pending_inbound.len() >= self.config.pending_inbound_max {
            self.metrics.connections_pending_refused.inc();
            return Err(ConnectionDenied::new(TooManyPending(
                self.pending_inbound.len(),
            )));
        }
        self.pending_inbound.insert(connection);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        _remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.pending_inbound.remove(&connection);
        self.admit(peer)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection: ConnectionId,
        peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(peer)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                if let Some(state) = self.peers.get_mut(&e.peer_id) {
                    state.connections += 1;
                    state.dialing = false;
                    state.next_dial = None;
                    state.connected_since.get_or_insert_with(Instant::now);
                }
                self.count_connected();
            }
            FromSwarm::ConnectionClosed(e) => {
                let stable_after = self.config.backoff_max;
                if let Some(state) = self.peers.get_mut(&e.peer_id) {
                    state.connections -= 1;
                    if state.connections == 0 {
                        tracing::info!(peer = %e.peer_id, "connection lost; will redial");
                        // Only a connection that lasted resets the back-off:
                        // a peer that accepts and drops at once is not
                        // redialled in a tight loop.
                        let since = state.connected_since.take();
                        if since.is_some_and(|t| t.elapsed() >= stable_after) {
                            state.backoff = self.config.backoff_min;
                        }
                    }
                }
                self.count_connected();
                self.schedule_retry(&e.peer_id);
            }
            FromSwarm::DialFailure(e) => {
                // "Already connected or dialling" is not a failure.
                if matches!(e.error, DialError::DialPeerConditionFalse(_)) {
                    return;
                }
                if let Some(peer) = e.peer_id {
                    if self.peers.contains_key(&peer) {
                        self.metrics.dial_failures.inc();
                        tracing::debug!(%peer, "dial failed: {}", e.error);
                        self.schedule_retry(&peer);
                    }
                }
            }
            FromSwarm::ListenFailure(e) => {
                self.pending_inbound.remove(&e.connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.waker = Some(cx.waker().clone());
        let now = Instant::now();
        if let Some(opts) = self.due_dial(now) {
            return Poll::Ready(ToSwarm::Dial { opts });
        }
        if self.poll_timer(cx) {
            // A deadline passed: dial on the next poll.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}
