//! Dissemination (ARCHITECTURE.md step 3): each replica's real Plumtree
//! core, its messages on the simulated network (so drops, delays and
//! partitions apply), its timers in the virtual-time event queue, its
//! deliveries into the replica's mempool and consensus core.
//!
//! A delivery becomes a consensus input: through the tree,
//! `Input::RequestReady`; as the answer to consensus's fetch-by-digest,
//! `Input::PayloadFetched`. The validation hook has already verified the
//! client signature, so a delivered payload is valid.

use super::{Event, NetMsg, Sim};
use consensus::Input;
use gossip::{GossipError, InEvent, OutEvent, Via};
use primitives::{ReplicaId, Request};

impl Sim {
    /// Feeds one input to replica `i`'s gossip core and carries out what it
    /// asks for; returns the consensus inputs its deliveries produce (the
    /// caller feeds them, so a delivery inside a consensus step queues
    /// behind that step's outputs instead of re-entering the core).
    pub(super) fn gossip(&mut self, i: usize, event: InEvent) -> Vec<Input> {
        let local = self.nodes[i].local(self.now);
        let out = match self.nodes[i].gossip.handle(local, event) {
            Ok(out) => out,
            Err(e) => {
                self.count_rejection(gossip_error_name(&e));
                return Vec::new();
            }
        };
        let mut inputs = Vec::new();
        for event in out {
            match event {
                OutEvent::Send { to, message } => {
                    let message = self.byzantine_gossip(i, message);
                    self.send(Some(i), to.index(), NetMsg::Gossip(message.encode()));
                }
                OutEvent::SetTimer { at_micros, timer } => {
                    let at = self.nodes[i].global(at_micros);
                    let incarnation = self.nodes[i].incarnation;
                    let node = i;
                    self.schedule(
                        at,
                        Event::GossipTimer {
                            node,
                            incarnation,
                            timer,
                        },
                    );
                }
                OutEvent::Deliver(delivery) => {
                    inputs.extend(self.on_delivery(i, delivery));
                }
                OutEvent::FetchFailed { id } => {
                    // Consensus asks again on its next status tick.
                    self.trace(format!("{} fetch-failed {i} {id:?}", self.now));
                    self.count_rejection("gossip_fetch_failed");
                }
            }
        }
        inputs
    }

    /// [`Sim::gossip`], then the consensus inputs it produced.
    pub(super) fn gossip_then_step(&mut self, i: usize, event: InEvent) {
        let inputs = self.gossip(i, event);
        self.step_all(i, inputs);
    }

    /// Feeds several inputs to replica `i`, in order.
    pub(super) fn step_all(&mut self, i: usize, inputs: Vec<Input>) {
        for input in inputs {
            if !self.nodes[i].up {
                return;
            }
            self.step(i, input);
        }
    }

    /// A gossip message reached replica `to`.
    pub(super) fn on_gossip_message(&mut self, from: usize, to: usize, bytes: &[u8]) {
        match gossip::Message::decode(bytes, &self.gossip_config) {
            Ok(message) => {
                let from = ReplicaId(from as u16);
                self.gossip_then_step(to, InEvent::Message { from, message });
            }
            Err(_) => self.count_rejection("gossip_undecodable"),
        }
    }

    /// A validated payload: into the mempool, and the consensus input that
    /// tells the core.
    fn on_delivery(&mut self, i: usize, delivery: gossip::Delivery) -> Option<Input> {
        let digest = delivery.id;
        let request = match self.nodes[i].gossip.validator_mut().take_verified(&digest) {
            Some(request) => request,
            None => Request::decode(&delivery.payload.0, &self.limits)
                .expect("the validation hook accepted only decodable requests"),
        };
        assert_eq!(request.digest(), digest, "gossip id is the request digest");
        let via = match delivery.via {
            Via::Gossip => "tree",
            Via::Fetch => "fetch",
        };
        self.trace(format!(
            "{} gdeliver {i} {digest:?} {via} {:?}",
            self.now, delivery.hop
        ));
        let node = &mut self.nodes[i];
        match delivery.via {
            Via::Gossip => {
                if node.app.executed.contains(&digest) || node.mempool.contains_key(&digest) {
                    return None;
                }
                node.mempool.insert(digest, request);
                Some(Input::RequestReady { digest })
            }
            Via::Fetch => {
                node.mempool.entry(digest).or_insert(request);
                Some(Input::PayloadFetched {
                    digest,
                    valid: true,
                })
            }
        }
    }

    /// The gateway role for a client's request (ARCHITECTURE.md step 2):
    /// the request was verified; it enters the local mempool and the
    /// gossip tree.
    pub(super) fn gateway_broadcast(&mut self, i: usize, request: &Request) {
        let payload = primitives::Bytes(primitives::codec::encode(request));
        // A broadcast delivers nothing locally: the gateway's own mempool
        // entry is the caller's.
        let inputs = self.gossip(i, InEvent::Broadcast(payload));
        assert!(inputs.is_empty(), "a broadcast delivers nothing locally");
    }
}

/// The rejection counter a gossip error is counted under.
fn gossip_error_name(e: &GossipError) -> &'static str {
    match e {
        GossipError::UnknownPeer(_) => "gossip_unknown_peer",
        GossipError::Malformed { .. } => "gossip_malformed",
        GossipError::InvalidPayload { .. } => "gossip_invalid_payload",
        GossipError::PayloadTooLarge { .. } => "gossip_payload_too_large",
        // A client retried through a gateway that already has it.
        GossipError::AlreadyKnown(_) => "gossip_already_known",
        GossipError::FetchOverload => "gossip_fetch_overload",
    }
}
