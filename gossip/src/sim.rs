//! A deterministic network simulation of many [`Plumtree`] cores: seeded,
//! virtual time, per-link delay and loss, Byzantine peers. It measures the
//! paper's metrics:
//!
//! - **reliability**: the share of correct replicas (other than the
//!   source) that delivered a message;
//! - **RMR** (Relative Message Redundancy): `m / (c − 1) − 1`, where `m`
//!   is the number of payload copies correct replicas received for a
//!   message and `c` the number of correct replicas — 0 for a perfect tree;
//! - **LDH** (Last Delivery Hop): the hop count of the last delivery of a
//!   message, compared with the depth of the eager tree at broadcast time.
//!
//! RMR and LDH are averaged over the messages after the first
//! [`SimConfig::warmup`] ones (the tree forms during the warm-up, as in
//! the paper); reliability counts every message.

use crate::config::Config;
use crate::message::{Hop, Message};
use crate::overlay;
use crate::plumtree::{InEvent, Invalid, OutEvent, Plumtree, Timer, Validator};
use primitives::{Bytes, Digest, Domain, ReplicaId};
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

/// What the Byzantine peers of a run do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    /// Receive everything, forward nothing, answer no GRAFT — but announce
    /// real ids by IHAVE to lure GRAFTs.
    Withhold,
    /// Withhold, and announce a stream of ids that do not exist.
    FakeIHave,
    /// Race every other message to all neighbours over fast links (so
    /// correct replicas PRUNE their correct parents), withhold the rest.
    PruneProvoke,
    /// The three above in turn, one per Byzantine peer, plus forged
    /// payloads.
    Mixed,
}

/// One simulation run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Replicas, correct and Byzantine.
    pub n: usize,
    /// The seed of everything random in the run.
    pub seed: u64,
    /// Probability that any one message is lost.
    pub loss: f64,
    /// Each directed link's fixed delay is drawn from this range.
    pub delay_min_micros: u64,
    /// See [`SimConfig::delay_min_micros`].
    pub delay_max_micros: u64,
    /// Extra random delay per message.
    pub jitter_micros: u64,
    /// How many replicas are Byzantine (the last ones are picked at random
    /// among the non-sources, with a seeded draw).
    pub byzantine: usize,
    /// What they do.
    pub attack: Attack,
    /// Messages broadcast, each by a random correct replica.
    pub broadcasts: usize,
    /// Time between two broadcasts.
    pub broadcast_interval_micros: u64,
    /// Messages left out of the RMR and LDH averages.
    pub warmup: usize,
    /// Time simulated after the last broadcast.
    pub settle_micros: u64,
    /// Payload size.
    pub payload_bytes: usize,
    /// The cores' configuration.
    pub gossip: Config,
}

impl SimConfig {
    /// A failure-free run of `n` replicas with the default gossip config.
    pub fn new(n: usize, seed: u64) -> Self {
        SimConfig {
            n,
            seed,
            loss: 0.0,
            delay_min_micros: 1_000,
            delay_max_micros: 10_000,
            jitter_micros: 1_000,
            byzantine: 0,
            attack: Attack::Withhold,
            broadcasts: 40,
            broadcast_interval_micros: 100_000,
            warmup: 10,
            settle_micros: 5_000_000,
            payload_bytes: 64,
            gossip: Config {
                overlay_seed: seed,
                ..Config::default()
            },
        }
    }
}

/// The measurements of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Messages broadcast.
    pub messages: usize,
    /// Mean share of correct replicas that delivered a message.
    pub reliability_mean: f64,
    /// The worst message's share.
    pub reliability_min: f64,
    /// Mean RMR after warm-up.
    pub rmr_mean: f64,
    /// Mean Last Delivery Hop after warm-up.
    pub ldh_mean: f64,
    /// Largest Last Delivery Hop after warm-up.
    pub ldh_max: Hop,
    /// Largest `LDH − eager tree depth` after warm-up.
    pub ldh_over_depth_max: i64,
    /// Largest eager tree depth at broadcast time after warm-up.
    pub depth_max: u32,
    /// Mean time from broadcast to the last delivery, after warm-up.
    pub latency_mean_micros: f64,
    /// Largest time from broadcast to the last delivery, after warm-up.
    pub latency_max_micros: u64,
    /// Control messages (IHAVE, GRAFT, PRUNE) per broadcast.
    pub control_per_message: f64,
    /// GRAFTs per broadcast.
    pub grafts_per_message: f64,
    /// Invalid payloads refused by correct replicas.
    pub invalid_refused: u64,
    /// The largest missing table of any correct replica at the end.
    pub missing_len_max: usize,
}

/// The simulation's validation hook: a payload is valid when it ends with
/// its own 8-byte tag (a stand-in for a client signature).
#[derive(Clone, Debug, Default)]
pub struct TagValidator;

impl TagValidator {
    /// A valid payload with `body` in front.
    pub fn seal(mut body: Vec<u8>) -> Bytes {
        let tag = Digest::of(Domain::Test, &body);
        body.extend_from_slice(&tag.as_bytes()[..8]);
        Bytes(body)
    }
}

impl Validator for TagValidator {
    fn validate(&mut self, _id: &Digest, payload: &[u8]) -> Result<(), Invalid> {
        if payload.len() < 8 {
            return Err(Invalid("too short for a tag".into()));
        }
        let (body, tag) = payload.split_at(payload.len() - 8);
        if Digest::of(Domain::Test, body).as_bytes()[..8] != *tag {
            return Err(Invalid("bad tag".into()));
        }
        Ok(())
    }
}

/// A Byzantine replica: remembers what it saw and misbehaves on cue.
struct Byzantine {
    attack: Attack,
    neighbours: Vec<ReplicaId>,
    seen: BTreeSet<Digest>,
    received: u64,
}

enum Node {
    Correct(Box<Plumtree<TagValidator>>),
    Byzantine(Byzantine),
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Scheduled {
    at: u64,
    seq: u64,
    to: usize,
    event: SimEvent,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SimEvent {
    Message(ReplicaId, MessageBox),
    Timer(Timer),
    Broadcast(u64),
}

/// Orders messages in the queue without requiring `Ord` on them.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MessageBox(Message);

impl PartialOrd for MessageBox {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MessageBox {
    fn cmp(&self, _other: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

/// What the run records about one broadcast.
#[derive(Clone, Debug, Default)]
struct Track {
    index: usize,
    at: u64,
    depth: u32,
    copies: u64,
    deliveries: BTreeMap<usize, (u64, Hop)>,
}

/// The simulated world.
pub struct Sim {
    config: SimConfig,
    rng: ChaCha8Rng,
    nodes: Vec<Node>,
    delays: Vec<Vec<u64>>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    now: u64,
    tracks: BTreeMap<Digest, Track>,
}

impl Sim {
    /// Builds the world: links, correct cores and Byzantine peers.
    pub fn new(config: SimConfig) -> Self {
        assert!(config.n >= 2 && config.byzantine < config.n);
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let n = config.n;
        let span = config
            .delay_max_micros
            .saturating_sub(config.delay_min_micros);
        let delays = (0..n)
            .map(|_| {
                (0..n)
                    .map(|_| config.delay_min_micros + rng.gen_range(0..=span))
                    .collect()
            })
            .collect();
        let mut ids: Vec<usize> = (0..n).collect();
        rand::seq::SliceRandom::shuffle(&mut ids[..], &mut rng);
        let byzantine: BTreeSet<usize> = ids[..config.byzantine].iter().copied().collect();
        let attacks = [Attack::Withhold, Attack::FakeIHave, Attack::PruneProvoke];
        let nodes = (0..n)
            .map(|i| {
                let me = ReplicaId(i as u16);
                if byzantine.contains(&i) {
                    let attack = match config.attack {
                        Attack::Mixed => attacks[i % attacks.len()],
                        a => a,
                    };
                    Node::Byzantine(Byzantine {
                        attack,
                        neighbours: overlay_of(&config, me),
                        seen: BTreeSet::new(),
                        received: 0,
                    })
                } else {
                    let core_rng = ChaCha8Rng::seed_from_u64(config.seed ^ ((i as u64 + 1) << 32));
                    let core = Plumtree::new(me, n, config.gossip.clone(), TagValidator, core_rng);
                    Node::Correct(Box::new(core))
                }
            })
            .collect();
        Sim {
            config,
            rng,
            nodes,
            delays,
            queue: BinaryHeap::new(),
            seq: 0,
            now: 0,
            tracks: BTreeMap::new(),
        }
    }

    /// Runs the broadcasts and the settle time; returns the measurements
    /// and each replica's counters (`None` for Byzantine replicas).
    pub fn run(mut self) -> (Report, Vec<Option<crate::Stats>>) {
        let correct: Vec<usize> = (0..self.config.n).filter(|&i| self.is_correct(i)).collect();
        for k in 0..self.config.broadcasts {
            let source = correct[self.rng.gen_range(0..correct.len())];
            let at = 1_000 + k as u64 * self.config.broadcast_interval_micros;
            self.schedule(at, source, SimEvent::Broadcast(k as u64));
        }
        // Every replica starts its tick (a core keeps its own going).
        for i in 0..self.config.n {
            self.schedule(0, i, SimEvent::Timer(Timer::Tick));
        }
        let end = 1_000
            + self.config.broadcasts as u64 * self.config.broadcast_interval_micros
            + self.config.settle_micros;
        while let Some(Reverse(next)) = self.queue.pop() {
            if next.at > end {
                break;
            }
            self.now = next.at;
            self.step(next.to, next.event);
        }
        let report = self.report();
        let stats = self
            .nodes
            .iter()
            .map(|node| match node {
                Node::Correct(core) => Some(core.stats().clone()),
                Node::Byzantine(_) => None,
            })
            .collect();
        (report, stats)
    }

    fn is_correct(&self, i: usize) -> bool {
        matches!(self.nodes[i], Node::Correct(_))
    }

    fn schedule(&mut self, at: u64, to: usize, event: SimEvent) {
        self.seq += 1;
        let seq = self.seq;
        self.queue.push(Reverse(Scheduled { at, seq, to, event }));
    }

    /// Sends over the lossy link `from → to`; `fast` links model an
    /// attacker with a better network position.
    fn send(&mut self, from: usize, to: usize, message: Message, fast: bool) {
        if self.config.loss > 0.0 && self.rng.gen_bool(self.config.loss) {
            return;
        }
        if let Message::Gossip { payload, .. } = &message {
            let id = TagValidator.message_id(&payload.0);
            if self.is_correct(to) {
                if let Some(track) = self.tracks.get_mut(&id) {
                    track.copies += 1;
                }
            }
        }
        let base = if fast {
            self.config.delay_min_micros / 2
        } else {
            self.delays[from][to]
        };
        let jitter = self.rng.gen_range(0..=self.config.jitter_micros);
        let at = self.now + base + jitter;
        let sender = ReplicaId(from as u16);
        self.schedule(at, to, SimEvent::Message(sender, MessageBox(message)));
    }

    fn step(&mut self, to: usize, event: SimEvent) {
        if let Node::Byzantine(_) = self.nodes[to] {
            self.step_byzantine(to, event);
            return;
        }
        let input = match event {
            SimEvent::Message(from, MessageBox(message)) => InEvent::Message { from, message },
            SimEvent::Timer(timer) => InEvent::TimerFired(timer),
            SimEvent::Broadcast(k) => self.broadcast_input(to, k),
        };
        let Node::Correct(core) = &mut self.nodes[to] else {
            unreachable!("checked above");
        };
        // Refused inputs (forged payloads, malformed messages) produce no
        // output; the run only counts them through the cores' stats.
        let outputs = core.handle(self.now, input).unwrap_or_default();
        for output in outputs {
            self.carry_out(to, output);
        }
    }

    /// Makes broadcast number `k` at `source` and starts tracking it.
    fn broadcast_input(&mut self, source: usize, k: u64) -> InEvent {
        let mut body = Vec::with_capacity(self.config.payload_bytes);
        body.extend_from_slice(&(source as u16).to_le_bytes());
        body.extend_from_slice(&k.to_le_bytes());
        body.resize(self.config.payload_bytes.saturating_sub(8).max(10), 0xAB);
        let payload = TagValidator::seal(body);
        let id = TagValidator.message_id(&payload.0);
        let depth = self.eager_depth(source);
        let track = Track {
            index: k as usize,
            at: self.now,
            depth,
            ..Track::default()
        };
        self.tracks.insert(id, track);
        InEvent::Broadcast(payload)
    }

    fn carry_out(&mut self, at: usize, output: OutEvent) {
        match output {
            OutEvent::Send { to, message } => self.send(at, to.index(), message, false),
            OutEvent::SetTimer { at_micros, timer } => {
                self.schedule(at_micros, at, SimEvent::Timer(timer));
            }
            OutEvent::Deliver(delivery) => {
                if let Some(track) = self.tracks.get_mut(&delivery.id) {
                    track
                        .deliveries
                        .entry(at)
                        .or_insert((self.now, delivery.hop));
                }
            }
            OutEvent::FetchFailed { .. } => {}
        }
    }

    /// The depth of the eager graph of correct replicas seen from `source`.
    fn eager_depth(&self, source: usize) -> u32 {
        let mut depth = BTreeMap::from([(source, 0u32)]);
        let mut frontier = VecDeque::from([source]);
        while let Some(i) = frontier.pop_front() {
            let Node::Correct(core) = &self.nodes[i] else {
                continue;
            };
            let d = depth[&i];
            for peer in core.eager_peers() {
                if self.is_correct(peer.index()) && !depth.contains_key(&peer.index()) {
                    depth.insert(peer.index(), d + 1);
                    frontier.push_back(peer.index());
                }
            }
        }
        depth.values().copied().max().unwrap_or(0)
    }

    fn step_byzantine(&mut self, me: usize, event: SimEvent) {
        let SimEvent::Message(_, MessageBox(message)) = event else {
            if let SimEvent::Timer(Timer::Tick) = event {
                self.byzantine_tick(me);
            }
            return;
        };
        let Message::Gossip { hop, payload } = message else {
            return; // GRAFTs and fetches go unanswered: withholding.
        };
        let id = TagValidator.message_id(&payload.0);
        let Node::Byzantine(byz) = &mut self.nodes[me] else {
            unreachable!("only called for Byzantine nodes");
        };
        if !byz.seen.insert(id) {
            return;
        }
        byz.received += 1;
        let (attack, count, neighbours) = (byz.attack, byz.received, byz.neighbours.clone());
        match attack {
            Attack::PruneProvoke if count % 2 == 1 => {
                for to in neighbours {
                    let message = Message::Gossip {
                        hop: hop.saturating_add(1),
                        payload: payload.clone(),
                    };
                    self.send(me, to.index(), message, true);
                }
            }
            Attack::PruneProvoke => {}
            _ => {
                for to in neighbours {
                    let ids = vec![(id, hop)];
                    self.send(me, to.index(), Message::IHave { ids }, false);
                }
            }
        }
    }

    /// Fake IHAVEs and forged payloads, every tick.
    fn byzantine_tick(&mut self, me: usize) {
        self.schedule(
            self.now + self.config.gossip.tick_micros,
            me,
            SimEvent::Timer(Timer::Tick),
        );
        let Node::Byzantine(byz) = &self.nodes[me] else {
            return;
        };
        let (attack, neighbours) = (byz.attack, byz.neighbours.clone());
        if attack == Attack::FakeIHave {
            for to in &neighbours {
                let ids = (0..64).map(|_| (Digest(self.rng.gen()), 1)).collect();
                self.send(me, to.index(), Message::IHave { ids }, false);
            }
        }
        if self.config.attack == Attack::Mixed {
            let to = neighbours[self.rng.gen_range(0..neighbours.len())];
            let mut forged = TagValidator::seal(vec![0xEE; 32]);
            forged.0[0] ^= 1;
            let message = Message::Gossip {
                hop: 1,
                payload: forged,
            };
            self.send(me, to.index(), message, true);
        }
    }

    fn report(&self) -> Report {
        let correct: Vec<usize> = (0..self.config.n).filter(|&i| self.is_correct(i)).collect();
        let c = correct.len();
        let mut report = Report {
            messages: self.tracks.len(),
            reliability_min: 1.0,
            ..Report::default()
        };
        let mut measured = 0usize;
        for track in self.tracks.values() {
            let share = track.deliveries.len() as f64 / (c - 1).max(1) as f64;
            report.reliability_mean += share;
            report.reliability_min = report.reliability_min.min(share);
            if track.index < self.config.warmup {
                continue;
            }
            measured += 1;
            report.rmr_mean += track.copies as f64 / (c - 1).max(1) as f64 - 1.0;
            if let Some((at, hop)) = track.deliveries.values().max_by_key(|(at, _)| *at) {
                report.ldh_mean += f64::from(*hop);
                report.ldh_max = report.ldh_max.max(*hop);
                let over = i64::from(*hop) - i64::from(track.depth);
                report.ldh_over_depth_max = report.ldh_over_depth_max.max(over);
                report.latency_mean_micros += (at - track.at) as f64;
                report.latency_max_micros = report.latency_max_micros.max(at - track.at);
            }
            report.depth_max = report.depth_max.max(track.depth);
        }
        report.reliability_mean /= self.tracks.len().max(1) as f64;
        let m = measured.max(1) as f64;
        report.rmr_mean /= m;
        report.ldh_mean /= m;
        report.latency_mean_micros /= m;
        self.add_counters(&mut report);
        report
    }

    fn add_counters(&self, report: &mut Report) {
        let mut control = 0u64;
        let mut grafts = 0u64;
        for node in &self.nodes {
            if let Node::Correct(core) = node {
                let s = core.stats();
                control += s.ihave_sent + s.graft_sent + s.prune_sent;
                grafts += s.graft_sent;
                report.invalid_refused += s.invalid;
                report.missing_len_max = report.missing_len_max.max(core.missing_len());
            }
        }
        let messages = self.tracks.len().max(1) as f64;
        report.control_per_message = control as f64 / messages;
        report.grafts_per_message = grafts as f64 / messages;
    }
}

fn overlay_of(config: &SimConfig, me: ReplicaId) -> Vec<ReplicaId> {
    overlay::active_view(
        me,
        config.n,
        config.gossip.active_view_target,
        config.gossip.active_view_max,
        config.gossip.overlay_seed,
    )
    .into_iter()
    .collect()
}

/// Runs one configuration and returns its report.
pub fn measure(config: SimConfig) -> Report {
    Sim::new(config).run().0
}
