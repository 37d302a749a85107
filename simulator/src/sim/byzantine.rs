//! The Byzantine campaign (issue 5): up to `f` replicas per seed lie, and
//! some clients do too; the checkers must still find nothing wrong with the
//! correct replicas.
//!
//! A Byzantine replica runs the real core (so it takes part and knows what
//! to lie about); what it *sends* goes through its adversary, one mix of
//! behaviours per replica drawn from the seed:
//!
//! - `equivocate`: as primary, a different batch for the same seq to some
//!   backups (re-signed: its key is its own);
//! - `conflicting-votes`: PREPAREs, COMMITs and CHECKPOINTs for digests it
//!   never saw, VIEW-CHANGEs that hide its prepared certificates;
//! - `bad-signatures`: signatures with a flipped bit, on its consensus
//!   messages and on the client requests it gossips (a forged copy under
//!   the genuine request's id, which must not keep the genuine one out);
//! - `silent`: sends nothing;
//! - `replay`: old messages again, from earlier views too;
//! - `withhold-payloads`: proposes requests it signed itself (as a
//!   colluding client) and shows nobody, so no correct backup can PREPARE;
//! - `skew-edge`: as primary, batch times at the edge of the skew window,
//!   to split backups whose clocks differ;
//! - `flood`: far more than its share — duplicates and validly signed junk
//!   votes for seqs near and far (bounded memory must hold: checked);
//! - `twins` (Bano et al., 2021): a second core with the same identity and
//!   key, talking to part of the cluster.
//!
//! `byzantine-clients`: requests with bad signatures, replayed and reused
//! request numbers, numbers out of order or below the window, and requests
//! at and beyond every size limit.

use super::{Event, NetMsg, Sim};
use crate::node::App;
use crate::options::FaultKind;
use consensus::{Checkpoint, Input, Message, Output, Replica, TimerKind, Vote, WireMessage};
use primitives::{
    codec, Bytes, Digest, Domain, HlcTimestamp, KeyPair, ReplicaId, Request, RequestBody,
    RequestNumber, SeqNum,
};
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The replica-level Byzantine behaviours.
pub const REPLICA_KINDS: [FaultKind; 9] = [
    FaultKind::Equivocate,
    FaultKind::ConflictingVotes,
    FaultKind::BadSignatures,
    FaultKind::Silent,
    FaultKind::Replay,
    FaultKind::WithholdPayloads,
    FaultKind::SkewEdge,
    FaultKind::Flood,
    FaultKind::Twins,
];

/// Old messages a replaying replica keeps.
const REPLAY_STASH_MAX: usize = 64;
/// Junk messages a flooding replica adds per message it sends.
const FLOOD_PER_MESSAGE: usize = 8;
/// How often a withholding replica makes up a request.
const WITHHOLD_EVERY_MICROS: u64 = 120_000;
/// How often a Byzantine client misbehaves.
const BYZANTINE_CLIENT_EVERY_MICROS: u64 = 40_000;

/// What one Byzantine replica does.
pub struct ByzantineRole {
    /// Its behaviours this seed.
    pub kinds: BTreeSet<FaultKind>,
    stash: VecDeque<WireMessage>,
    /// The colluding client key its withheld requests are signed with.
    client: KeyPair,
    next_number: u64,
    /// The twin (same identity, own state) and the peers it talks to.
    twin: Option<Box<Twin>>,
    twin_peers: BTreeSet<usize>,
}

/// A second replica with the same identity.
struct Twin {
    core: Replica,
    app: App,
}

/// A misbehaving client.
#[derive(Debug)]
pub struct ByzantineClient {
    key: KeyPair,
    next: u64,
    sent: Vec<Request>,
}

impl Sim {
    /// Draws this seed's Byzantine replicas (at most `f`, none if no
    /// replica-level kind is on) and clients.
    pub(super) fn draw_byzantine(&mut self) {
        let enabled: Vec<FaultKind> = REPLICA_KINDS
            .into_iter()
            .filter(|k| self.opts.faults.has(*k))
            .collect();
        let f = self.membership.f();
        let n = self.nodes.len();
        if !enabled.is_empty() && f > 0 {
            let forced = !self.opts.byzantine.is_empty();
            let chosen: Vec<usize> = if forced {
                self.opts.byzantine.clone()
            } else {
                let count = self.rng.gen_range(0..=f);
                let mut ids: Vec<usize> = (0..n).collect();
                ids.shuffle(&mut self.rng);
                ids.truncate(count);
                ids
            };
            assert!(chosen.len() <= f, "more than f Byzantine replicas");
            for i in chosen {
                let mut kinds: BTreeSet<FaultKind> = enabled
                    .iter()
                    .copied()
                    .filter(|_| forced || self.rng.gen_bool(0.4))
                    .collect();
                if kinds.is_empty() {
                    kinds.insert(*enabled.choose(&mut self.rng).expect("non-empty"));
                }
                let twin = kinds.contains(&FaultKind::Twins).then(|| {
                    let core = Replica::new(self.nodes[i].config.clone()).expect("valid config");
                    let qlock = self.opts.workload.is_qlock();
                    let interval = self.nodes[i].config.checkpoint_interval;
                    Box::new(Twin {
                        core,
                        app: App::new(qlock, self.cluster, interval),
                    })
                });
                let twin_peers = (0..n)
                    .filter(|j| *j != i && self.rng.gen_bool(0.5))
                    .collect();
                self.trace(format!("byzantine {i} {kinds:?}"));
                self.nodes[i].byzantine = Some(Box::new(ByzantineRole {
                    kinds,
                    stash: VecDeque::new(),
                    client: KeyPair::generate(&mut self.rng),
                    next_number: 1,
                    twin,
                    twin_peers,
                }));
                self.report.byzantine_replicas.push(i);
            }
        }
        if self.opts.faults.has(FaultKind::ByzantineClients) {
            for c in 0..2 {
                self.byzantine_clients.push(ByzantineClient {
                    key: KeyPair::generate(&mut self.rng),
                    next: 1,
                    sent: Vec::new(),
                });
                let at = self.now + self.rng.gen_range(0..BYZANTINE_CLIENT_EVERY_MICROS);
                self.schedule(at, Event::ByzantineClientTick(c));
            }
        }
    }

    /// Starts what Byzantine replicas do on their own (twins, withholding).
    pub(super) fn start_byzantine(&mut self) {
        for i in 0..self.nodes.len() {
            if self.has_kind(i, FaultKind::Twins) {
                self.twin_step(i, Input::Start);
            }
            if self.has_kind(i, FaultKind::WithholdPayloads) {
                self.schedule(self.now + WITHHOLD_EVERY_MICROS, Event::Withhold(i));
            }
        }
    }

    /// Whether replica `i` is correct (not Byzantine this seed).
    pub(super) fn correct(&self, i: usize) -> bool {
        self.nodes[i].byzantine.is_none()
    }

    /// How many replicas are correct.
    pub(super) fn correct_count(&self) -> usize {
        (0..self.nodes.len()).filter(|i| self.correct(*i)).count()
    }

    /// Whether replica `i` runs a twin.
    pub(super) fn has_twin(&self, i: usize) -> bool {
        self.nodes[i]
            .byzantine
            .as_ref()
            .is_some_and(|b| b.twin.is_some())
    }

    pub(super) fn has_kind(&self, i: usize, kind: FaultKind) -> bool {
        self.nodes[i]
            .byzantine
            .as_ref()
            .is_some_and(|b| b.kinds.contains(&kind))
    }

    /// A consensus message Byzantine replica `i` sends to `to`, through its
    /// adversary.
    pub(super) fn byzantine_send(&mut self, i: usize, to: Vec<usize>, message: WireMessage) {
        if self.has_kind(i, FaultKind::Silent) {
            self.count_fault("silent");
            return;
        }
        let key = self.nodes[i].config.key.clone();
        for j in to {
            let mut out = vec![self.mutate(i, j, &key, &message)];
            if self.has_kind(i, FaultKind::Replay) {
                out.extend(self.replay(i));
            }
            if self.has_kind(i, FaultKind::Flood) {
                out.extend(self.junk(i, &key, &message));
            }
            for m in out {
                self.observe_sent(i, &m);
                self.send(Some(i), j, NetMsg::Consensus(codec::encode(&m)));
            }
        }
        if let Some(role) = self.nodes[i].byzantine.as_mut() {
            if role.kinds.contains(&FaultKind::Replay) {
                role.stash.push_back(message);
                while role.stash.len() > REPLAY_STASH_MAX {
                    role.stash.pop_front();
                }
            }
        }
    }

    /// The message as Byzantine replica `i` tells it to `to`.
    fn mutate(&mut self, i: usize, to: usize, key: &KeyPair, message: &WireMessage) -> WireMessage {
        let WireMessage::Signed(signed) = message else {
            return message.clone();
        };
        let mut m = signed.message.clone();
        let mut changed = false;
        match &mut m {
            Message::PrePrepare(pp) => {
                if self.has_kind(i, FaultKind::Equivocate) && to % 2 == 1 {
                    if pp.batch.digests.len() >= 2 {
                        pp.batch.digests.reverse();
                    } else {
                        pp.batch.batch_time = pp.batch.batch_time.next_tick();
                    }
                    changed = true;
                    self.count_fault("equivocate");
                }
                if self.has_kind(i, FaultKind::SkewEdge) && self.rng.gen_bool(0.5) {
                    let skew = self.nodes[i].config.max_clock_skew_micros;
                    let local = self.nodes[i].local(self.now);
                    let edge = skew.saturating_sub(2_000);
                    let wall = if self.rng.gen_bool(0.5) {
                        local + edge
                    } else {
                        local.saturating_sub(edge)
                    };
                    pp.batch.batch_time = HlcTimestamp::from_micros(wall);
                    changed = true;
                    self.count_fault("skew-edge");
                }
            }
            Message::Prepare(v) | Message::Commit(v) => {
                if self.has_kind(i, FaultKind::ConflictingVotes) && self.rng.gen_bool(0.4) {
                    v.batch = Digest::of(Domain::Test, &self.rng.gen::<u64>().to_le_bytes());
                    changed = true;
                    self.count_fault("conflicting-votes");
                }
            }
            Message::Checkpoint(c) => {
                if self.has_kind(i, FaultKind::ConflictingVotes) && self.rng.gen_bool(0.4) {
                    c.app_digest = Digest::of(Domain::Test, &self.rng.gen::<u64>().to_le_bytes());
                    changed = true;
                    self.count_fault("conflicting-votes");
                }
            }
            Message::ViewChange(vc) => {
                if self.has_kind(i, FaultKind::ConflictingVotes) && !vc.prepared.is_empty() {
                    vc.prepared.clear();
                    changed = true;
                    self.count_fault("conflicting-votes");
                }
            }
            Message::NewView(_) => {}
        }
        let mut out = if changed {
            m.sign(self.cluster, key)
        } else {
            signed.clone()
        };
        if self.has_kind(i, FaultKind::BadSignatures) && self.rng.gen_bool(0.3) {
            let at = self.rng.gen_range(0..64);
            out.signature.0[at] ^= 1 << self.rng.gen_range(0..8);
            self.count_fault("bad-signatures");
        }
        WireMessage::Signed(out)
    }

    fn replay(&mut self, i: usize) -> Option<WireMessage> {
        if !self.rng.gen_bool(0.3) {
            return None;
        }
        let role = self.nodes[i].byzantine.as_ref()?;
        if role.stash.is_empty() {
            return None;
        }
        let at = self.rng.gen_range(0..role.stash.len());
        let old = role.stash[at].clone();
        self.count_fault("replay");
        Some(old)
    }

    /// Duplicates and validly signed votes for seqs near and far, views
    /// ahead, checkpoints far beyond the watermarks.
    fn junk(&mut self, i: usize, key: &KeyPair, message: &WireMessage) -> Vec<WireMessage> {
        let me = ReplicaId(i as u16);
        let view = self.nodes[i].core.view();
        let low = self.nodes[i].core.low_watermark();
        let mut out = Vec::with_capacity(FLOOD_PER_MESSAGE);
        for _ in 0..FLOOD_PER_MESSAGE {
            self.count_fault("flood");
            let seq = SeqNum(low.0 + self.rng.gen_range(1..10_000));
            let digest = Digest::of(Domain::Test, &self.rng.gen::<u64>().to_le_bytes());
            let m = match self.rng.gen_range(0..4) {
                0 => {
                    out.push(message.clone());
                    continue;
                }
                1 => Message::Prepare(Vote {
                    view,
                    seq,
                    batch: digest,
                    replica: me,
                }),
                2 => Message::Commit(Vote {
                    view: view.next(),
                    seq,
                    batch: digest,
                    replica: me,
                }),
                _ => Message::Checkpoint(Checkpoint {
                    seq: SeqNum(seq.0 / 8 * 8 + 8),
                    app_digest: digest,
                    replica: me,
                }),
            };
            out.push(WireMessage::Signed(m.sign(self.cluster, key)));
        }
        out
    }

    /// A withholding replica makes up a request only it holds and offers
    /// it to its own core (which, as primary, will propose it).
    pub(super) fn withhold(&mut self, i: usize) {
        self.schedule(self.now + WITHHOLD_EVERY_MICROS, Event::Withhold(i));
        if !self.nodes[i].up {
            return;
        }
        let Some(role) = self.nodes[i].byzantine.as_mut() else {
            return;
        };
        let number = role.next_number;
        role.next_number += 1;
        let request = RequestBody {
            cluster: self.cluster,
            client: role.client.public(),
            number: RequestNumber(number),
            atomic: false,
            ops: vec![Bytes(b"withheld".to_vec())],
        }
        .sign(&role.client);
        let digest = request.digest();
        self.nodes[i].mempool.insert(digest, request);
        self.count_fault("withhold-payloads");
        self.step(i, Input::RequestReady { digest });
    }

    // ----- Twins ----------------------------------------------------------

    /// Whether a message from `from` to Byzantine replica `to` goes to its
    /// twin instead.
    pub(super) fn to_twin(&self, from: usize, to: usize) -> bool {
        self.nodes[to]
            .byzantine
            .as_ref()
            .is_some_and(|b| b.twin.is_some() && b.twin_peers.contains(&from))
    }

    /// Feeds the twin of replica `i`; its outputs go out as `i`'s.
    pub(super) fn twin_step(&mut self, i: usize, input: Input) {
        let mut work = VecDeque::from([input]);
        while let Some(input) = work.pop_front() {
            let local = self.nodes[i].local(self.now);
            let Some(role) = self.nodes[i].byzantine.as_mut() else {
                return;
            };
            let Some(twin) = role.twin.as_mut() else {
                return;
            };
            let outputs = twin.core.step(local, input);
            for output in outputs {
                self.twin_apply(i, output, &mut work);
            }
        }
    }

    fn twin_apply(&mut self, i: usize, output: Output, work: &mut VecDeque<Input>) {
        let n = self.nodes.len();
        match output {
            Output::Send { to, message } => self.twin_send(i, vec![to.index()], &message),
            Output::Broadcast { message } => {
                let to = (0..n).filter(|j| *j != i).collect();
                self.twin_send(i, to, &message);
            }
            // The twin's disk is perfect: durable at once.
            Output::Persist { id, .. } => work.push_back(Input::PersistAck { id }),
            Output::SetTimer { kind, at_micros } => {
                let at = self.nodes[i].global(at_micros);
                self.schedule(at, Event::TwinTimer { node: i, kind });
            }
            Output::FetchPayloads { digests, .. } => {
                for digest in digests {
                    if self.nodes[i].mempool.contains_key(&digest)
                        || self.nodes[i].disk.payloads.contains_key(&digest)
                    {
                        work.push_back(Input::PayloadFetched {
                            digest,
                            valid: true,
                        });
                    }
                }
            }
            Output::Execute(batch) => {
                let node = &mut self.nodes[i];
                let payloads: BTreeMap<Digest, Request> = batch
                    .digests
                    .iter()
                    .filter_map(|d| {
                        node.mempool
                            .get(d)
                            .or_else(|| node.disk.payloads.get(d))
                            .map(|r| (*d, r.clone()))
                    })
                    .collect();
                let Some(twin) = node.byzantine.as_mut().and_then(|b| b.twin.as_mut()) else {
                    return;
                };
                twin.app
                    .apply(batch.seq, batch.time, &batch.digests, &payloads);
                work.push_back(Input::Executed {
                    seq: batch.seq,
                    app_digest: twin.app.checkpoint_digest(batch.seq),
                });
            }
            _ => {}
        }
    }

    fn twin_send(&mut self, i: usize, to: Vec<usize>, message: &WireMessage) {
        let bytes = codec::encode(message);
        for j in to {
            self.count_fault("twins");
            self.observe_sent(i, message);
            self.send(Some(i), j, NetMsg::Consensus(bytes.clone()));
        }
    }

    /// A twin's timer fired.
    pub(super) fn twin_timer(&mut self, i: usize, kind: TimerKind) {
        if self.nodes[i].up {
            self.twin_step(i, Input::Timer(kind));
        }
    }

    // ----- Byzantine clients ------------------------------------------------

    /// Byzantine client `c` sends something wrong (during the safety phase).
    pub(super) fn byzantine_client_tick(&mut self, c: usize) {
        if self.healed {
            return;
        }
        self.schedule(
            self.now + BYZANTINE_CLIENT_EVERY_MICROS,
            Event::ByzantineClientTick(c),
        );
        let gateway = self.rng.gen_range(0..self.nodes.len());
        let limits = self.limits;
        let cluster = self.cluster;
        let action = self.rng.gen_range(0..6);
        let client = &mut self.byzantine_clients[c];
        let sign = |key: &KeyPair, number: u64, ops: Vec<Bytes>| {
            RequestBody {
                cluster,
                client: key.public(),
                number: RequestNumber(number),
                atomic: false,
                ops,
            }
            .sign(key)
        };
        let (request, kind) = match action {
            0 => {
                let mut r = sign(&client.key, client.next, vec![Bytes(b"forged".to_vec())]);
                r.signature.0[0] ^= 1;
                (r, "client-bad-signature")
            }
            1 if !client.sent.is_empty() => {
                let at = self.rng.gen_range(0..client.sent.len());
                (client.sent[at].clone(), "client-replay")
            }
            2 if client.next > 1 => {
                // A number seen before with other ops: the cached reply,
                // never a second execution.
                let reused = self.rng.gen_range(1..client.next);
                let r = sign(&client.key, reused, vec![Bytes(b"again".to_vec())]);
                (r, "client-reused-number")
            }
            3 => {
                // Ahead within the window, or far below/above it.
                let jump = match self.rng.gen_range(0..3) {
                    0 => client.next + 100,
                    1 => client.next + 100_000,
                    _ => 0,
                };
                let r = sign(&client.key, jump, vec![Bytes(b"jump".to_vec())]);
                (r, "client-reordered")
            }
            4 => {
                // At a limit, or one beyond: the most ops, the largest op,
                // (rarely) close to the largest request.
                let beyond = usize::from(self.rng.gen_bool(0.5));
                let ops = match self.rng.gen_range(0..5) {
                    0 => vec![Bytes(vec![7; limits.op_bytes_max + beyond])],
                    1 => {
                        let count = limits.request_bytes_max / limits.op_bytes_max - 1;
                        vec![Bytes(vec![7; limits.op_bytes_max]); count]
                    }
                    _ => vec![Bytes(vec![7; 8]); limits.ops_max + beyond],
                };
                let r = sign(&client.key, client.next, ops);
                client.next += 1;
                (r, "client-at-limits")
            }
            _ => {
                let r = sign(&client.key, client.next, vec![Bytes(b"plain".to_vec())]);
                client.next += 1;
                (r, "client-plain")
            }
        };
        if client.sent.len() < 256 {
            client.sent.push(request.clone());
        }
        self.count_fault(kind);
        self.send(None, gateway, NetMsg::Request(Box::new(request)));
    }

    /// Correct replicas keep every store within its bound, whatever the
    /// Byzantine replicas sent (the flood's point).
    pub(super) fn check_bounds(&mut self) {
        for i in 0..self.nodes.len() {
            if !self.correct(i) || !self.nodes[i].up {
                continue;
            }
            let core = &self.nodes[i].core;
            let cfg = core.config();
            let n = cfg.membership.n();
            let log_max = (cfg.watermark_window + cfg.catch_up_batches_max) as usize + 1;
            let votes_max = cfg.checkpoint_votes_per_peer_max * n;
            let payloads_max = cfg.mempool_digests_max + log_max * cfg.batch_size_max;
            let (log, votes, payloads) = (
                core.log_len(),
                core.checkpoint_votes_len(),
                core.payloads_len(),
            );
            if log > log_max || votes > votes_max || payloads > payloads_max {
                self.violation(format!(
                    "replica {i} outgrew its bounds: log {log}/{log_max}, checkpoint votes {votes}/{votes_max}, payloads {payloads}/{payloads_max}"
                ));
            }
        }
    }
}

impl Sim {
    /// A gossip message Byzantine replica `i` sends: with `bad-signatures`,
    /// a payload it forwards may carry a flipped bit in the client's
    /// signature (the last bytes of an encoded request), keeping the
    /// request's id.
    pub(super) fn byzantine_gossip(
        &mut self,
        i: usize,
        message: gossip::Message,
    ) -> gossip::Message {
        match message {
            gossip::Message::Gossip { hop, mut payload }
                if self.has_kind(i, FaultKind::BadSignatures)
                    && payload.0.len() >= 64
                    && self.rng.gen_bool(0.5) =>
            {
                let at = payload.0.len() - 1 - self.rng.gen_range(0..64);
                payload.0[at] ^= 1 << self.rng.gen_range(0..8);
                self.count_fault("bad-signatures");
                gossip::Message::Gossip { hop, payload }
            }
            other => other,
        }
    }
}
