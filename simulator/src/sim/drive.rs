//! The network, the clients, request dissemination and execution.

use super::{Event, NetMsg, Sim, CLIENT_RETRY_MICROS, CLIENT_TICK_MICROS};
use crate::options::FaultKind;
use consensus::{ExecuteBatch, Input, Message, WireMessage};
use primitives::request::verify_many;
use primitives::{Bytes, ReplicaId, Request, RequestBody, RequestNumber};
use rand::Rng;
use std::collections::{BTreeSet, VecDeque};

impl Sim {
    /// Sends over the faulty network (faults only in the safety phase).
    pub(super) fn send(&mut self, from: Option<usize>, to: usize, msg: NetMsg) {
        self.report.messages += 1;
        if let (Some(f), Some(groups)) = (from, &self.partition) {
            if groups[f] != groups[to] {
                return;
            }
        }
        let faults = !self.healed;
        if faults && self.drop_p > 0.0 && self.rng.gen_bool(self.drop_p) {
            return self.count_fault("drop");
        }
        let mut delay = self.rng.gen_range(100..1_500);
        if faults && self.opts.faults.has(FaultKind::Reorder) && self.rng.gen_bool(0.2) {
            delay += self.rng.gen_range(0..5_000);
            self.count_fault("reorder");
        }
        if faults && self.opts.faults.has(FaultKind::Delay) && self.rng.gen_bool(0.02) {
            delay += self.rng.gen_range(20_000..200_000);
            self.count_fault("delay");
        }
        if faults && self.duplicate_p > 0.0 && self.rng.gen_bool(self.duplicate_p) {
            let again = self.now + delay + self.rng.gen_range(0..2_000);
            let copy = msg.clone();
            self.schedule(
                again,
                Event::Deliver {
                    from,
                    to,
                    msg: copy,
                },
            );
            self.count_fault("duplicate");
        }
        self.schedule(self.now + delay, Event::Deliver { from, to, msg });
    }

    pub(super) fn deliver(&mut self, from: Option<usize>, to: usize, msg: NetMsg) {
        if !self.nodes[to].up {
            return;
        }
        match msg {
            NetMsg::Consensus(bytes) => {
                let Some(from) = from else { return };
                match WireMessage::decode(&bytes, self.message_bytes_max) {
                    Ok(message) => {
                        let twin = self.to_twin(from, to);
                        let from = ReplicaId(from as u16);
                        if twin {
                            self.twin_step(to, Input::Peer { from, message });
                        } else {
                            self.step(to, Input::Peer { from, message });
                        }
                    }
                    Err(_) => self.count_rejection("undecodable"),
                }
            }
            NetMsg::Request(request) => self.on_request(to, *request),
            NetMsg::Gossip(bytes) => {
                let Some(from) = from else { return };
                self.on_gossip_message(from, to, &bytes);
            }
            NetMsg::FetchPulses(first, last) => {
                let Some(from) = from else { return };
                self.serve_pulses(from, to, first, last);
            }
            NetMsg::Pulses(pulses) => self.on_pulses(to, pulses),
            NetMsg::FetchCommitted(first, last) => {
                let Some(from) = from else { return };
                let batches: Vec<_> = self.nodes[to]
                    .disk
                    .committed
                    .range(first..=last)
                    .map(|(_, b)| b.clone())
                    .collect();
                if !batches.is_empty() {
                    self.send(Some(to), from, NetMsg::Committed(batches));
                }
            }
            NetMsg::FetchSnapshot(seq) => {
                let Some(from) = from else { return };
                self.serve_snapshot(from, to, seq);
            }
            NetMsg::SnapshotOffer(offer) => {
                let Some(from) = from else { return };
                let (pulse, manifest) = *offer;
                self.on_snapshot_offer(from, to, pulse, manifest);
            }
            NetMsg::FetchChunk(seq, index) => {
                let Some(from) = from else { return };
                self.serve_chunk(from, to, seq, index);
            }
            NetMsg::Chunk(seq, index, bytes) => {
                let Some(from) = from else { return };
                self.on_chunk(from, to, seq, index, bytes);
            }
            NetMsg::Committed(batches) => {
                let Some(from) = from else { return };
                for batch in batches {
                    self.report.catch_up_batches += 1;
                    let from = ReplicaId(from as u16);
                    self.step(to, Input::CommittedBatch { from, batch });
                }
            }
        }
    }

    /// Replica `i` executed request `d` (or installed a state with it); a
    /// request counts as executed everywhere once every correct replica
    /// did (a Byzantine one may never).
    pub(super) fn mark_executed(&mut self, i: usize, d: primitives::Digest) {
        let correct = self.correct_count();
        // Only the correct clients' requests are owed to everyone.
        let is_correct = self.correct(i) && self.submitted.contains(&d);
        let who = self.executions.entry(d).or_default();
        if who.insert(i) && is_correct {
            let done = who
                .iter()
                .filter(|j| self.nodes[**j].byzantine.is_none())
                .count();
            if done == correct {
                self.executed_everywhere += 1;
            }
        }
    }

    pub(super) fn count_rejection(&mut self, name: &'static str) {
        *self.report.rejections.entry(name).or_default() += 1;
    }

    /// A client's request reached replica `to`, its gateway: verify,
    /// disseminate by gossip, admit.
    fn on_request(&mut self, to: usize, request: Request) {
        let verdict = verify_many(std::slice::from_ref(&request), self.cluster, &self.limits);
        let Some(Ok(digest)) = verdict.into_iter().next() else {
            return self.count_rejection("invalid_request");
        };
        self.trace(format!("{} request {to} {digest:?}", self.now));
        self.gateway_broadcast(to, &request);
        let node = &mut self.nodes[to];
        if node.app.executed.contains(&digest) || node.mempool.contains_key(&digest) {
            return;
        }
        node.mempool.insert(digest, request);
        self.step(to, Input::RequestReady { digest });
    }

    pub(super) fn client_tick(&mut self, c: usize) {
        let quorum_f1 = self.membership.weak_quorum();
        if let Some((request, digest, sent_at)) = self.clients[c].current.clone() {
            let executed = self.executions.get(&digest).map_or(0, BTreeSet::len);
            if executed >= quorum_f1 {
                if self.opts.workload.is_qlock() {
                    // A waiting acquire completes with its later receipt.
                    if !self.checks.outcomes.contains_key(&(digest, 0)) {
                        self.schedule(self.now + CLIENT_TICK_MICROS, Event::ClientTick(c));
                        return;
                    }
                    if let Some((op, invoke)) = self.clients[c].op.take() {
                        self.record_observed(c, digest, invoke, op);
                    }
                }
                self.seen_committed.insert(digest);
                self.clients[c].current = None;
            } else if self.now >= sent_at + CLIENT_RETRY_MICROS {
                self.submit(c, request, digest);
            }
        }
        let quota = self.opts.requests_per_client;
        let client = &self.clients[c];
        if client.current.is_none() && !self.healed && client.issued < quota {
            let request = self.new_request(c);
            let digest = request.digest();
            self.submitted.insert(digest);
            self.submit(c, request, digest);
        }
        if self.clients[c].current.is_some() || (!self.healed && self.clients[c].issued < quota) {
            self.schedule(self.now + CLIENT_TICK_MICROS, Event::ClientTick(c));
        }
    }

    fn new_request(&mut self, c: usize) -> Request {
        let op = if self.opts.workload.is_qlock() {
            let op = self.clients[c]
                .qlock
                .next_op(self.opts.workload, c, &mut self.rng);
            self.clients[c].op = Some((op.clone(), self.now));
            op.encode()
        } else {
            let len = self.rng.gen_range(8..64);
            Bytes((0..len).map(|_| self.rng.gen()).collect())
        };
        let client = &mut self.clients[c];
        client.issued += 1;
        let request = RequestBody {
            cluster: self.cluster,
            client: client.key.public(),
            number: RequestNumber(client.issued),
            atomic: false,
            ops: vec![op],
        }
        .sign(&client.key);
        if let Some((op, _)) = &self.clients[c].op {
            self.checks.ops.insert(request.digest(), op.clone());
        }
        request
    }

    fn submit(&mut self, c: usize, request: Request, digest: primitives::Digest) {
        let gateway = self.rng.gen_range(0..self.nodes.len());
        self.trace(format!("{} submit {c} {digest:?} via {gateway}", self.now));
        self.clients[c].current = Some((request.clone(), digest, self.now));
        self.send(None, gateway, NetMsg::Request(Box::new(request)));
    }

    /// The application executes a committed batch; the checkers look at it.
    pub(super) fn execute(&mut self, i: usize, batch: ExecuteBatch, work: &mut VecDeque<Input>) {
        let node = &self.nodes[i];
        let correct = self.correct(i);
        let mut problems = Vec::new();
        if batch.seq != node.app.last_seq.next() {
            problems.push(format!(
                "replica {i} executed {:?} after {:?}",
                batch.seq, node.app.last_seq
            ));
        }
        if batch.time <= node.app.last_time {
            problems.push(format!(
                "replica {i}: effective time went backwards at {:?}",
                batch.seq
            ));
        }
        if let Some(d) = batch.digests.iter().find(|d| !node.mempool.contains_key(d)) {
            problems.push(format!(
                "replica {i} executed {:?} without payload {d:?}",
                batch.seq
            ));
        }
        for p in problems.into_iter().filter(|_| correct) {
            self.violation(p);
        }
        let node = &mut self.nodes[i];
        for d in &batch.digests {
            if let Some(request) = node.mempool.get(d) {
                node.disk.payloads.insert(*d, request.clone());
            }
        }
        let (fresh, outcome) =
            node.app
                .apply(batch.seq, batch.time, &batch.digests, &node.disk.payloads);
        let head = node.app.head;
        if let Some(outcome) = outcome.filter(|_| correct) {
            if !self.agreed.contains_key(&batch.seq) {
                self.on_committed_outcome(batch.seq, &outcome);
            }
        }
        if correct {
            self.check_checkpoint_state(i, batch.seq, head);
        }
        if batch
            .seq
            .0
            .is_multiple_of(self.nodes[i].config.checkpoint_interval)
        {
            self.take_snapshot(i, batch.seq);
        }
        let node = &mut self.nodes[i];
        node.disk
            .committed
            .insert(batch.seq, batch.certificate.clone());
        for d in fresh {
            self.mark_executed(i, d);
        }
        if correct {
            self.check_agreement(i, &batch, head);
            self.check_certificate(i, &batch);
        }
        self.report.batches = self.report.batches.max(batch.seq.0);
        self.trace(format!("{} exec {i} {:?} {head:?}", self.now, batch.seq));
        // At a checkpoint seq, the pulse header's digest (what the
        // CHECKPOINT signs); the state digest otherwise.
        let app_digest = self.nodes[i].app.checkpoint_digest(batch.seq);
        work.push_back(Input::Executed {
            seq: batch.seq,
            app_digest,
        });
        work.extend(self.next_deadline(i));
    }

    /// Agreement: no two replicas execute different batches, at different
    /// times, or reach different states at the same seq.
    fn check_agreement(&mut self, i: usize, batch: &ExecuteBatch, head: primitives::Digest) {
        let Message::PrePrepare(pp) = &batch.certificate.pre_prepare.message else {
            return self.violation(format!("replica {i}: certificate without a pre-prepare"));
        };
        let digest = pp.batch.digest();
        let entry = (i, digest, batch.time, head);
        let agreed = *self.agreed.entry(batch.seq).or_insert(entry);
        if (agreed.1, agreed.2, agreed.3) != (digest, batch.time, head) {
            self.violation(format!(
                "agreement: at {:?} replica {} executed {:?} at {:?} (state {:?}), replica {i} executed {digest:?} at {:?} (state {head:?})",
                batch.seq, agreed.0, agreed.1, agreed.2, agreed.3, batch.time
            ));
        }
    }
}
