//! A frame protocol: one message type on its own protocol id.
//!
//! Every connection to a peer carries at most one long-lived outbound
//! stream per protocol (opened on first use, re-opened after an error) on
//! which length-prefixed frames ([`super::wire`]) are written back to back,
//! and the inbound streams the remote opened, from which frames are read
//! and decoded with `primitives::codec` under the protocol's bound.
//!
//! Why a hand-written `NetworkBehaviour` + `ConnectionHandler` rather than
//! `request_response`: PBFT and Plumtree are one-way message protocols with
//! no answer to wait for, and at the target rate (tens of thousands of
//! messages a second) a substream, a multistream-select negotiation and an
//! ack per message would cost more than the message. A long-lived stream
//! keeps the order of one sender's messages, batches many frames into one
//! write, and gives back-pressure for free: yamux's per-stream window stops
//! our writes when the remote stops reading, our per-peer count of
//! unwritten frames then reaches `outbound_frames_max` and
//! [`Behaviour::send`] returns [`SendError::QueueFull`].
//!
//! Inbound, frames are decoded inside the connection task (off the event
//! loop) and handed to the swarm through libp2p's bounded per-connection
//! event channel, so a slow event loop stops the reading, not the memory.

use super::metrics::FrameMetrics;
use super::wire::{self, ReadError};
use futures::future::BoxFuture;
use futures::stream::{BoxStream, SelectAll};
use futures::{FutureExt, StreamExt};
use libp2p::core::upgrade::ReadyUpgrade;
use libp2p::core::{transport::PortUse, Endpoint, Multiaddr};
use libp2p::swarm::handler::{ConnectionEvent, FullyNegotiatedInbound, FullyNegotiatedOutbound};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, NotifyHandler, Stream, StreamProtocol, SubstreamProtocol, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::PeerId;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// One encoded message, shared between the connections it is sent on.
pub type Frame = Arc<Vec<u8>>;

/// What a frame protocol can carry: any value the shared codec encodes.
pub trait Message: Serialize + DeserializeOwned + fmt::Debug + Send + 'static {}
impl<T: Serialize + DeserializeOwned + fmt::Debug + Send + 'static> Message for T {}

/// The bounds and identity of one frame protocol.
#[derive(Clone, Debug)]
pub struct FrameConfig {
    /// The protocol id, e.g. `/qlock/pbft/1`.
    pub protocol: StreamProtocol,
    /// A short name for metrics labels, e.g. `pbft`.
    pub name: &'static str,
    /// The largest encoded message accepted or sent.
    pub frame_bytes_max: usize,
    /// Frames handed to a peer's connections and not yet written; beyond
    /// it `send` says [`SendError::QueueFull`].
    pub outbound_frames_max: usize,
    /// Frames gathered into one write.
    pub write_batch_frames_max: usize,
    /// Messages decoded and handed to the swarm in one event.
    pub read_batch_frames_max: usize,
    /// Inbound streams of this protocol read at once per connection (a
    /// correct remote uses one; extra ones are reset).
    pub inbound_streams_max: usize,
}

impl FrameConfig {
    /// Defaults for `protocol`, bounded by `frame_bytes_max`.
    pub fn new(protocol: &'static str, name: &'static str, frame_bytes_max: usize) -> Self {
        assert!(frame_bytes_max <= primitives::codec::FRAME_BYTES_MAX);
        FrameConfig {
            protocol: StreamProtocol::new(protocol),
            name,
            frame_bytes_max,
            outbound_frames_max: 1024,
            write_batch_frames_max: 64,
            read_batch_frames_max: 64,
            inbound_streams_max: 2,
        }
    }
}

/// Why a message was not queued for a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No connection to the peer (the caller may retry once it is back).
    #[error("peer not connected")]
    NotConnected,
    /// The peer's outbound queue is full: it reads slower than we write.
    #[error("outbound queue full ({max} frames)")]
    QueueFull {
        /// The bound that was reached.
        max: usize,
    },
    /// The encoded message is larger than the protocol's bound.
    #[error("message of {len} bytes exceeds the frame limit of {max}")]
    Oversized {
        /// The encoded length.
        len: usize,
        /// The bound.
        max: usize,
    },
}

/// Why an inbound frame was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    /// Its length prefix exceeded the bound; the stream was closed.
    Oversized {
        /// The announced length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// It did not decode as the protocol's message type.
    Malformed(String),
}

/// What the behaviour reports to the swarm.
#[derive(Debug)]
pub enum Event<M> {
    /// A message from a connected, configured peer.
    Received {
        /// The sender (authenticated by Noise).
        peer: PeerId,
        /// The decoded message.
        message: M,
    },
    /// A frame from `peer` was dropped (also counted in the metrics).
    Rejected {
        /// The sender.
        peer: PeerId,
        /// Why.
        reason: RejectReason,
    },
}

/// The frame protocol's `NetworkBehaviour`.
pub struct Behaviour<M> {
    config: FrameConfig,
    metrics: FrameMetrics,
    /// Per peer, its connections and their frames not yet written.
    connections: HashMap<PeerId, Vec<(ConnectionId, usize)>>,
    /// Frames accepted by `send` and not yet handed to their connection,
    /// batched per connection (one task hop per batch, not per frame).
    /// Bounded by the in-flight counts.
    outbound: HashMap<ConnectionId, (PeerId, Vec<Frame>)>,
    /// Events for the swarm; the swarm takes one per poll before it reads
    /// more from the connections, so this stays within one handler batch.
    events: VecDeque<Event<M>>,
    waker: Option<Waker>,
}

impl<M: Message> Behaviour<M> {
    /// A behaviour for `config`, counting into `metrics`.
    pub fn new(config: FrameConfig, metrics: FrameMetrics) -> Self {
        Behaviour {
            config,
            metrics,
            connections: HashMap::new(),
            outbound: HashMap::new(),
            events: VecDeque::new(),
            waker: None,
        }
    }

    /// The protocol's configuration.
    pub fn config(&self) -> &FrameConfig {
        &self.config
    }

    /// Encodes `message` and queues it for `peer`.
    pub fn send(&mut self, peer: &PeerId, message: &M) -> Result<(), SendError> {
        let frame = self.encode(message)?;
        self.send_frame(peer, frame)
    }

    /// Encodes `message` once and queues it for every peer in `peers`;
    /// returns the peers it could not be queued for.
    pub fn send_many<'a>(
        &mut self,
        peers: impl IntoIterator<Item = &'a PeerId>,
        message: &M,
    ) -> Result<Vec<(PeerId, SendError)>, SendError> {
        let frame = self.encode(message)?;
        let mut failed = Vec::new();
        for peer in peers {
            if let Err(e) = self.send_frame(peer, frame.clone()) {
                failed.push((*peer, e));
            }
        }
        Ok(failed)
    }

    /// Frames queued for `peer` and not yet written (over all its
    /// connections).
    pub fn queued(&self, peer: &PeerId) -> usize {
        self.connections
            .get(peer)
            .map_or(0, |conns| conns.iter().map(|(_, n)| n).sum())
    }

    fn encode(&self, message: &M) -> Result<Frame, SendError> {
        let bytes = primitives::codec::encode(message);
        if bytes.len() > self.config.frame_bytes_max {
            self.metrics.send_oversized.inc();
            return Err(SendError::Oversized {
                len: bytes.len(),
                max: self.config.frame_bytes_max,
            });
        }
        Ok(Arc::new(bytes))
    }

    fn send_frame(&mut self, peer: &PeerId, frame: Frame) -> Result<(), SendError> {
        let Some(conns) = self.connections.get_mut(peer) else {
            self.metrics.send_not_connected.inc();
            return Err(SendError::NotConnected);
        };
        // The bound is per peer, over all its connections.
        let queued: usize = conns.iter().map(|(_, n)| n).sum();
        if queued >= self.config.outbound_frames_max {
            self.metrics.send_queue_full.inc();
            return Err(SendError::QueueFull {
                max: self.config.outbound_frames_max,
            });
        }
        // The least loaded connection (there are two when both sides
        // dialled each other at once).
        let (connection, in_flight) = conns
            .iter_mut()
            .min_by_key(|(_, n)| *n)
            .expect("a peer entry exists only while it has connections");
        *in_flight += 1;
        self.outbound
            .entry(*connection)
            .or_insert_with(|| (*peer, Vec::new()))
            .1
            .push(frame);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
        Ok(())
    }

    fn written(&mut self, peer: PeerId, connection: ConnectionId, frames: usize) {
        let Some(conns) = self.connections.get_mut(&peer) else {
            return;
        };
        if let Some((_, in_flight)) = conns.iter_mut().find(|(c, _)| *c == connection) {
            assert!(
                *in_flight >= frames,
                "a handler reported frames it was never given"
            );
            *in_flight -= frames;
        }
    }

    fn handler(&self) -> Handler<M> {
        Handler::new(self.config.clone(), self.metrics.clone())
    }
}

impl<M: Message> NetworkBehaviour for Behaviour<M> {
    type ConnectionHandler = Handler<M>;
    type ToSwarm = Event<M>;

    fn handle_established_inbound_connection(
        &mut self,
        _connection: ConnectionId,
        _peer: PeerId,
        _local: &Multiaddr,
        _remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler())
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler())
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                self.connections
                    .entry(e.peer_id)
                    .or_default()
                    .push((e.connection_id, 0));
            }
            FromSwarm::ConnectionClosed(e) => {
                let Some(conns) = self.connections.get_mut(&e.peer_id) else {
                    return;
                };
                if let Some(i) = conns.iter().position(|(c, _)| *c == e.connection_id) {
                    let (_, lost) = conns.swap_remove(i);
                    self.metrics.send_dropped.inc_by(lost as u64);
                }
                self.outbound.remove(&e.connection_id);
                if conns.is_empty() {
                    self.connections.remove(&e.peer_id);
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {
            HandlerOut::Received(messages) => self.events.extend(
                messages
                    .into_iter()
                    .map(|message| Event::Received { peer, message }),
            ),
            HandlerOut::Rejected(reason) => self.events.push_back(Event::Rejected { peer, reason }),
            HandlerOut::Written(n) => self.written(peer, connection, n),
            HandlerOut::Dropped(n) => {
                self.metrics.send_dropped.inc_by(n as u64);
                self.written(peer, connection, n);
            }
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Event<M>, THandlerInEvent<Self>>> {
        if let Some(event) = self.events.pop_front() {
            return Poll::Ready(ToSwarm::GenerateEvent(event));
        }
        let next = self.outbound.keys().next().copied();
        if let Some((connection, (peer, frames))) =
            next.and_then(|c| self.outbound.remove_entry(&c))
        {
            return Poll::Ready(ToSwarm::NotifyHandler {
                peer_id: peer,
                handler: NotifyHandler::One(connection),
                event: frames,
            });
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// What a connection's handler tells the behaviour.
#[derive(Debug)]
pub enum HandlerOut<M> {
    /// Decoded messages, in arrival order (batched: one task hop for many).
    Received(Vec<M>),
    /// A dropped inbound frame.
    Rejected(RejectReason),
    /// This many queued frames were written.
    Written(usize),
    /// This many queued frames were lost (the stream failed).
    Dropped(usize),
}

/// The read buffer of an inbound stream.
const READ_BUFFER_BYTES: usize = 64 * 1024;

type WriteFuture = BoxFuture<'static, (usize, io::Result<Stream>)>;
type InboundFrames<M> = BoxStream<'static, Result<M, RejectReason>>;

/// The state of the one outbound stream.
enum Outbound {
    /// None open and none requested.
    Closed,
    /// Requested from the connection, not negotiated yet.
    Opening,
    /// Open and not writing.
    Idle(Stream),
    /// Writing a batch of frames.
    Writing(WriteFuture),
}

/// The per-connection half of the protocol.
pub struct Handler<M> {
    config: FrameConfig,
    metrics: FrameMetrics,
    queue: VecDeque<Frame>,
    outbound: Outbound,
    inbound: SelectAll<InboundFrames<M>>,
    events: VecDeque<HandlerOut<M>>,
    _message: PhantomData<fn() -> M>,
}

impl<M: Message> Handler<M> {
    fn new(config: FrameConfig, metrics: FrameMetrics) -> Self {
        Handler {
            config,
            metrics,
            queue: VecDeque::new(),
            outbound: Outbound::Closed,
            inbound: SelectAll::new(),
            events: VecDeque::new(),
            _message: PhantomData,
        }
    }

    fn upgrade(&self) -> SubstreamProtocol<ReadyUpgrade<StreamProtocol>, ()> {
        SubstreamProtocol::new(ReadyUpgrade::new(self.config.protocol.clone()), ())
    }

    /// Starts writing up to `write_batch_frames_max` queued frames.
    fn start_write(&mut self, mut stream: Stream) -> WriteFuture {
        let count = self.queue.len().min(self.config.write_batch_frames_max);
        let mut bytes = Vec::new();
        for frame in self.queue.drain(..count) {
            wire::put_frame(&mut bytes, &frame);
        }
        async move {
            let result = wire::write_all_flush(&mut stream, &bytes).await;
            (count, result.map(|()| stream))
        }
        .boxed()
    }

    /// Advances the outbound stream; `Some` is an event for the connection.
    fn poll_outbound(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Option<ConnectionHandlerEvent<ReadyUpgrade<StreamProtocol>, (), HandlerOut<M>>> {
        loop {
            match std::mem::replace(&mut self.outbound, Outbound::Closed) {
                Outbound::Closed if !self.queue.is_empty() => {
                    self.outbound = Outbound::Opening;
                    return Some(ConnectionHandlerEvent::OutboundSubstreamRequest {
                        protocol: self.upgrade(),
                    });
                }
                Outbound::Idle(stream) if !self.queue.is_empty() => {
                    self.outbound = Outbound::Writing(self.start_write(stream));
                }
                Outbound::Writing(mut write) => match write.poll_unpin(cx) {
                    Poll::Ready((n, Ok(stream))) => {
                        self.metrics.sent.inc_by(n as u64);
                        self.outbound = Outbound::Idle(stream);
                        return Some(ConnectionHandlerEvent::NotifyBehaviour(
                            HandlerOut::Written(n),
                        ));
                    }
                    Poll::Ready((n, Err(e))) => {
                        tracing::debug!(protocol = self.config.name, "outbound stream failed: {e}");
                        return Some(ConnectionHandlerEvent::NotifyBehaviour(
                            HandlerOut::Dropped(n),
                        ));
                    }
                    Poll::Pending => {
                        self.outbound = Outbound::Writing(write);
                        return None;
                    }
                },
                other => {
                    self.outbound = other;
                    return None;
                }
            }
        }
    }

    fn add_inbound(&mut self, stream: Stream) {
        if self.inbound.len() >= self.config.inbound_streams_max {
            tracing::debug!(protocol = self.config.name, "extra inbound stream reset");
            return;
        }
        let max = self.config.frame_bytes_max;
        // Buffered: small frames cost one read from the muxer per buffer,
        // not three per frame.
        let stream = futures::io::BufReader::with_capacity(READ_BUFFER_BYTES, stream);
        let frames = futures::stream::unfold(Some(stream), move |state| async move {
            let mut stream = state?;
            match wire::read_frame(&mut stream, max).await {
                Ok(Some(bytes)) => {
                    let item = primitives::codec::decode::<M>(&bytes, max)
                        .map_err(|e| RejectReason::Malformed(e.to_string()));
                    Some((item, Some(stream)))
                }
                Ok(None) | Err(ReadError::Io(_)) => None,
                // The stream cannot be resynchronised: report, then end it.
                Err(ReadError::Oversized { len, max }) => {
                    Some((Err(RejectReason::Oversized { len, max }), None))
                }
            }
        });
        self.inbound.push(frames.boxed());
    }

    /// Reads up to `read_batch_frames_max` decoded messages; `Some` is an
    /// event for the behaviour.
    fn poll_inbound(&mut self, cx: &mut Context<'_>) -> Option<HandlerOut<M>> {
        let mut batch = Vec::new();
        while batch.len() < self.config.read_batch_frames_max {
            match self.inbound.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(message))) => batch.push(message),
                Poll::Ready(Some(Err(reason))) => {
                    match &reason {
                        RejectReason::Oversized { .. } => self.metrics.rejected_oversized.inc(),
                        RejectReason::Malformed(_) => self.metrics.rejected_malformed.inc(),
                    };
                    tracing::debug!(
                        protocol = self.config.name,
                        ?reason,
                        "inbound frame rejected"
                    );
                    // After the messages read before it, to keep the order.
                    self.events.push_back(HandlerOut::Rejected(reason));
                    break;
                }
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        if batch.is_empty() {
            return self.events.pop_front();
        }
        self.metrics.received.inc_by(batch.len() as u64);
        Some(HandlerOut::Received(batch))
    }
}

impl<M: Message> ConnectionHandler for Handler<M> {
    type FromBehaviour = Vec<Frame>;
    type ToBehaviour = HandlerOut<M>;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, ()> {
        self.upgrade()
    }

    /// Replica links are permanent: never close one for being idle.
    fn connection_keep_alive(&self) -> bool {
        true
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        if let Some(event) = self.events.pop_front() {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(event));
        }
        if let Some(event) = self.poll_outbound(cx) {
            return Poll::Ready(event);
        }
        // Polled only when the connection has room for our event: that is
        // the inbound back-pressure.
        if let Some(event) = self.poll_inbound(cx) {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(event));
        }
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, frames: Vec<Frame>) {
        self.queue.extend(frames);
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: stream,
                ..
            }) => self.add_inbound(stream),
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: stream,
                ..
            }) => self.outbound = Outbound::Idle(stream),
            ConnectionEvent::DialUpgradeError(e) => {
                // The remote refused or could not open the stream: drop
                // what was queued rather than retry in a loop; the next
                // send asks again.
                tracing::debug!(
                    protocol = self.config.name,
                    "outbound stream: {:?}",
                    e.error
                );
                self.outbound = Outbound::Closed;
                let lost = self.queue.len();
                self.queue.clear();
                if lost > 0 {
                    self.events.push_back(HandlerOut::Dropped(lost));
                }
            }
            _ => {}
        }
    }
}
