//! The simulation: one thread, one ChaCha RNG from the seed, virtual time,
//! an event queue; replicas built from the real consensus core on a faulty
//! virtual network; simulated clients submitting real signed requests.

use crate::node::Node;
use crate::options::{FaultKind, SimOptions};
use crate::report::SeedReport;
use crate::workload::QlockClient;
use consensus::{CommittedBatch, Config, Input, Message, Output, Replica, TimerKind, WireMessage};
use primitives::digest::Hasher;
use primitives::{
    codec, ClusterId, Digest, Domain, HlcTimestamp, KeyPair, Membership, PulseNumber, ReplicaId,
    Request, RequestLimits, SeqNum,
};
use qlock::Op;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Virtual time starts here (microseconds since the UNIX epoch).
const START_MICROS: u64 = 1_800_000_000_000_000;
/// The clock skew the replicas allow.
const MAX_CLOCK_SKEW_MICROS: u64 = 250_000;
/// How often a client looks at its outstanding request.
const CLIENT_TICK_MICROS: u64 = 5_000;
/// When a client resubmits a request that has not committed.
const CLIENT_RETRY_MICROS: u64 = 400_000;

/// What travels on the simulated network.
#[derive(Clone, Debug)]
enum NetMsg {
    /// An encoded consensus [`WireMessage`].
    Consensus(Vec<u8>),
    /// A client request, from the client to its gateway replica.
    Request(Box<Request>),
    /// An encoded [`gossip::Message`] between two replicas' gossip cores.
    Gossip(Vec<u8>),
    /// Asks for the lockchain's pulses `first..=last`.
    FetchPulses(PulseNumber, PulseNumber),
    /// Pulse certificates served.
    Pulses(Vec<lockchain::PulseCertificate>),
    /// Asks for committed batches `first..=last`.
    FetchCommitted(SeqNum, SeqNum),
    /// Committed batches served.
    Committed(Vec<CommittedBatch>),
    /// State transfer: the newest snapshot at or above this seq, please.
    FetchSnapshot(SeqNum),
    /// A snapshot on offer: its pulse certificate and manifest.
    SnapshotOffer(Box<(lockchain::PulseCertificate, crate::node::SnapshotManifest)>),
    /// Chunk `index` of the snapshot at `seq`, please.
    FetchChunk(SeqNum, u32),
    /// A chunk served.
    Chunk(SeqNum, u32, Vec<u8>),
}

#[derive(Debug)]
enum Event {
    Deliver {
        from: Option<usize>,
        to: usize,
        msg: NetMsg,
    },
    Timer {
        node: usize,
        kind: TimerKind,
        at_local: u64,
    },
    Sync {
        node: usize,
    },
    GossipTimer {
        node: usize,
        incarnation: u64,
        timer: gossip::Timer,
    },
    ClientTick(usize),
    LockchainSync(usize),
    TransferTimeout(usize, u64),
    Withhold(usize),
    TwinTimer {
        node: usize,
        kind: TimerKind,
    },
    ByzantineClientTick(usize),
    Partition(Option<Vec<bool>>),
    Heal,
    Crash(usize),
    Restart(usize),
    EndSafety,
}

struct Client {
    key: KeyPair,
    issued: u64,
    current: Option<(Request, Digest, u64)>,
    /// Under a qlock workload: what the client knows, and its outstanding
    /// op with its first send time.
    qlock: QlockClient,
    op: Option<(Op, u64)>,
}

/// One seeded run.
pub struct Sim {
    opts: SimOptions,
    rng: ChaCha8Rng,
    now: u64,
    order: u64,
    queue: BTreeMap<(u64, u64), Event>,
    membership: Membership,
    cluster: ClusterId,
    limits: RequestLimits,
    message_bytes_max: usize,
    gossip_config: gossip::Config,
    nodes: Vec<Node>,
    clients: Vec<Client>,
    partition: Option<Vec<bool>>,
    healed: bool,
    drop_p: f64,
    duplicate_p: f64,
    submitted: BTreeSet<Digest>,
    executions: BTreeMap<Digest, BTreeSet<usize>>,
    executed_everywhere: usize,
    seen_committed: BTreeSet<Digest>,
    agreed: BTreeMap<SeqNum, (usize, Digest, HlcTimestamp, Digest)>,
    checkpoints: BTreeMap<SeqNum, Digest>,
    /// Checks pulse certificates and chains.
    verifier: lockchain::Verifier,
    /// The first stored header digest of every pulse, and who stored it.
    pulse_headers: BTreeMap<PulseNumber, (usize, Digest)>,
    /// Restarts: the replica and its lockchain's length then.
    restarts: Vec<(usize, u64)>,
    checks: checkers::Checks,
    report: SeedReport,
    trace: Hasher,
    observed: observe::Observed,
    /// This seed's misbehaving clients.
    byzantine_clients: Vec<byzantine::ByzantineClient>,
    /// `QLOCK_SIM_LIVE_TRACE` is set: every trace line also goes to stderr
    /// as it happens (a run that panics keeps its trace).
    live_trace: bool,
}

/// The gossip configuration: the defaults (the ones qlockd runs with), the
/// overlay seeded from the cluster id so every replica computes the same.
pub fn gossip_config(cluster: ClusterId) -> gossip::Config {
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&cluster.0.as_bytes()[..8]);
    gossip::Config {
        overlay_seed: u64::from_le_bytes(seed),
        ..gossip::Config::default()
    }
}

/// A fresh gossip core for replica `i`, its randomness drawn from the run's
/// generator.
fn new_gossip(
    i: usize,
    n: usize,
    config: &gossip::Config,
    cluster: ClusterId,
    limits: &RequestLimits,
    rng: &mut ChaCha8Rng,
) -> crate::node::Gossip {
    let validator = crate::node::RequestValidator::new(cluster, *limits);
    let rng = ChaCha8Rng::seed_from_u64(rng.gen());
    gossip::Plumtree::new(ReplicaId(i as u16), n, config.clone(), validator, rng)
}

/// The consensus configuration the simulator runs with: small intervals,
/// so checkpoints, garbage collection and watermarks are exercised.
pub fn replica_config(membership: &Membership, id: usize, key: KeyPair) -> Config {
    let mut cfg = Config::new(membership.clone(), ReplicaId(id as u16), key);
    cfg.checkpoint_interval = 8;
    cfg.watermark_window = 16;
    cfg.batch_size_max = 8;
    cfg.batch_delay_micros = 1_000;
    cfg.max_clock_skew_micros = MAX_CLOCK_SKEW_MICROS;
    cfg.status_interval_micros = 50_000;
    cfg.view_change_timeout_micros = 400_000;
    cfg.mempool_digests_max = 512;
    cfg.checkpoint_votes_per_peer_max = 4;
    cfg.retransmit_slots_max = 16;
    cfg.catch_up_batches_max = 16;
    cfg
}

impl Sim {
    /// Builds the cluster and the workload of `opts`.
    pub fn new(opts: &SimOptions) -> Sim {
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
        let keys: Vec<KeyPair> = (0..opts.replicas)
            .map(|_| KeyPair::generate(&mut rng))
            .collect();
        let membership =
            Membership::new("sim", keys.iter().map(KeyPair::public).collect()).expect("sim keys");
        let cluster = membership.cluster_id();
        let gossip_config = gossip_config(cluster);
        let limits = RequestLimits::default();
        let mut nodes = Vec::new();
        let mut message_bytes_max = 0;
        for (i, key) in keys.into_iter().enumerate() {
            let mut cfg = replica_config(&membership, i, key);
            if opts.mutated(i) {
                cfg.mutation = opts.mutation;
            }
            message_bytes_max = cfg.message_bytes_max();
            let skew = (MAX_CLOCK_SKEW_MICROS / 3) as i64;
            let offset = if opts.faults.has(FaultKind::Skew) {
                rng.gen_range(-skew..=skew)
            } else {
                0
            };
            let core = Replica::new(cfg).expect("valid sim config");
            let gossip = new_gossip(i, opts.replicas, &gossip_config, cluster, &limits, &mut rng);
            nodes.push(Node::new(core, gossip, offset, opts.workload.is_qlock()));
        }
        let clients = (0..opts.clients)
            .map(|c| Client {
                key: KeyPair::generate(&mut rng),
                issued: 0,
                current: None,
                qlock: QlockClient {
                    renews: c % 3 != 2,
                    ..QlockClient::default()
                },
                op: None,
            })
            .collect();
        let drop_p = if opts.faults.has(FaultKind::Drop) {
            rng.gen_range(0.0..0.1)
        } else {
            0.0
        };
        let duplicate_p = if opts.faults.has(FaultKind::Duplicate) {
            rng.gen_range(0.0..0.05)
        } else {
            0.0
        };
        let report = SeedReport {
            seed: opts.seed,
            ..SeedReport::default()
        };
        Sim {
            opts: opts.clone(),
            rng,
            now: START_MICROS,
            order: 0,
            queue: BTreeMap::new(),
            membership: membership.clone(),
            cluster,
            limits,
            message_bytes_max,
            gossip_config,
            nodes,
            clients,
            partition: None,
            healed: false,
            drop_p,
            duplicate_p,
            submitted: BTreeSet::new(),
            executions: BTreeMap::new(),
            executed_everywhere: 0,
            seen_committed: BTreeSet::new(),
            agreed: BTreeMap::new(),
            checkpoints: BTreeMap::new(),
            verifier: lockchain::Verifier::new(membership.clone()),
            pulse_headers: BTreeMap::new(),
            restarts: Vec::new(),
            checks: checkers::Checks::default(),
            report,
            trace: Hasher::new(Domain::Test),
            observed: observe::Observed::default(),
            byzantine_clients: Vec::new(),
            live_trace: std::env::var_os("QLOCK_SIM_LIVE_TRACE").is_some(),
        }
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.order += 1;
        self.queue.insert((at.max(self.now), self.order), event);
    }

    fn trace(&mut self, line: String) {
        if self.live_trace {
            eprintln!("{line}");
        }
        self.trace.update(line.as_bytes());
        if self.opts.keep_trace {
            self.report.trace.extend_from_slice(line.as_bytes());
            self.report.trace.push(b'\n');
        }
    }

    fn violation(&mut self, what: String) {
        self.trace(format!("VIOLATION {what}"));
        if self.report.violations.len() < 20 {
            self.report.violations.push(what);
        }
    }

    fn count_fault(&mut self, kind: &'static str) {
        *self.report.faults.entry(kind).or_default() += 1;
    }

    /// Runs the safety phase, heals, runs the liveness phase, checks.
    pub fn run(mut self) -> SeedReport {
        self.simulate();
        self.finish();
        self.report
    }

    /// Runs the safety and liveness phases (without the final checks).
    fn simulate(&mut self) {
        let end_safety = START_MICROS + self.opts.safety_micros;
        let deadline = end_safety + self.opts.liveness_micros;
        self.draw_byzantine();
        for i in 0..self.nodes.len() {
            self.step(i, Input::Start);
            self.report_deadline(i);
        }
        self.start_byzantine();
        for c in 0..self.clients.len() {
            let at = self.now + self.rng.gen_range(0..CLIENT_TICK_MICROS);
            self.schedule(at, Event::ClientTick(c));
        }
        if self.opts.faults.has(FaultKind::Partition) {
            for _ in 0..self.rng.gen_range(1..=3) {
                let at = START_MICROS + self.rng.gen_range(0..self.opts.safety_micros);
                let length = self.rng.gen_range(50_000..600_000);
                self.schedule(at, Event::Partition(None));
                self.schedule((at + length).min(end_safety), Event::Heal);
            }
        }
        if self.opts.faults.has(FaultKind::Crash) {
            for _ in 0..self.rng.gen_range(1..=3) {
                let node = self.rng.gen_range(0..self.nodes.len());
                let at = START_MICROS + self.rng.gen_range(0..self.opts.safety_micros);
                let down = self.rng.gen_range(50_000..800_000);
                self.schedule(at, Event::Crash(node));
                self.schedule(at + down, Event::Restart(node));
            }
        }
        for (node, at, down) in self.opts.scripted_crashes.clone() {
            self.schedule(START_MICROS + at, Event::Crash(node));
            self.schedule(START_MICROS + at + down, Event::Restart(node));
        }
        for p in self.opts.scripted_partitions.clone() {
            let at = START_MICROS + p.at_micros;
            self.schedule(at, Event::Partition(Some(p.groups)));
            self.schedule((at + p.length_micros).min(end_safety), Event::Heal);
        }
        self.schedule(end_safety, Event::EndSafety);
        while let Some(((at, _), event)) = self.queue.pop_first() {
            if at > deadline {
                break;
            }
            self.now = at;
            self.handle(event);
            if self.healed && self.done() && self.lockchains_settled() {
                break;
            }
        }
    }

    fn done(&self) -> bool {
        self.clients.iter().all(|c| c.current.is_none())
            && self.executed_everywhere == self.submitted.len()
    }

    /// The test application's next pulse deadline, if pulses are on.
    fn report_deadline(&mut self, i: usize) {
        if let Some(input) = self.next_deadline(i) {
            self.step(i, input);
        }
    }

    pub(super) fn next_deadline(&self, i: usize) -> Option<Input> {
        if self.opts.workload.is_qlock() {
            let at = self.nodes[i].app.next_deadline();
            return Some(Input::NextDeadline { at });
        }
        let pulse = self.opts.pulse_micros?;
        let last = self.nodes[i].app.last_time.wall.max(START_MICROS);
        let at = HlcTimestamp::from_micros((last / pulse + 1) * pulse);
        Some(Input::NextDeadline { at: Some(at) })
    }

    fn finish(&mut self) {
        self.report.virtual_micros = self.now - START_MICROS;
        self.report.effective_micros_min = self
            .nodes
            .iter()
            .map(|n| n.app.last_time.wall.saturating_sub(START_MICROS))
            .min()
            .unwrap_or(0);
        self.report.committed_requests = self.seen_committed.len() as u64;
        for node in &self.nodes {
            let s = node.gossip_stats();
            for (k, v) in [
                ("eager", s.gossip_sent),
                ("ihave", s.ihave_sent),
                ("ihave_ids", s.ihave_ids_sent),
                ("graft", s.graft_sent),
                ("prune", s.prune_sent),
                ("prune_suppressed", s.prune_suppressed),
                ("delivered", s.delivered),
                ("duplicates", s.duplicates),
                ("invalid", s.invalid),
                ("fetch_requests", s.fetch_requests_sent),
                ("fetch_replies", s.fetch_replies_sent),
                ("fetches_failed", s.fetches_failed),
                ("missing_expired", s.missing_expired),
            ] {
                *self.report.gossip.entry(k).or_default() += v;
            }
        }
        if !self.done() {
            let n = self.correct_count();
            let correct_executions = |d: &Digest| {
                self.executions
                    .get(d)
                    .map_or(0, |who| who.iter().filter(|j| self.correct(**j)).count())
            };
            let pending: Vec<String> = self
                .submitted
                .iter()
                .filter(|d| correct_executions(d) < n)
                .take(5)
                .map(|d| {
                    let k = correct_executions(d);
                    format!(
                        "request {d:?} executed by {k}/{n} correct replicas at the liveness deadline"
                    )
                })
                .collect();
            self.report.liveness_failures = pending;
            if self.report.liveness_failures.is_empty() {
                self.report
                    .liveness_failures
                    .push("a client request never committed".into());
            }
        }
        self.finish_checks();
        self.check_bounds();
        self.finish_lockchain();
        self.report.trace_digest = self.trace.finalize().to_hex();
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Deliver { from, to, msg } => self.deliver(from, to, msg),
            Event::Timer {
                node,
                kind,
                at_local,
            } => {
                if self.nodes[node].up && self.nodes[node].timers.get(&kind) == Some(&at_local) {
                    self.nodes[node].timers.remove(&kind);
                    self.trace(format!("{} timer {node} {kind:?}", self.now));
                    self.step(node, Input::Timer(kind));
                }
            }
            Event::Sync { node } => self.sync(node),
            Event::GossipTimer {
                node,
                incarnation,
                timer,
            } => {
                let n = &self.nodes[node];
                if n.up && n.incarnation == incarnation {
                    self.gossip_then_step(node, gossip::InEvent::TimerFired(timer));
                }
            }
            Event::ClientTick(c) => self.client_tick(c),
            Event::LockchainSync(node) => self.lockchain_sync(node),
            Event::TransferTimeout(node, attempt) => self.transfer_timeout(node, attempt),
            Event::Withhold(node) => self.withhold(node),
            Event::TwinTimer { node, kind } => self.twin_timer(node, kind),
            Event::ByzantineClientTick(c) => self.byzantine_client_tick(c),
            Event::Crash(node) => self.crash(node),
            Event::Restart(node) => self.restart(node),
            Event::Partition(groups) => self.start_partition(groups),
            Event::Heal => {
                self.trace(format!("{} heal", self.now));
                self.partition = None;
            }
            Event::EndSafety => {
                self.trace(format!("{} end of safety phase", self.now));
                self.healed = true;
                self.partition = None;
            }
        }
    }

    /// Crashes `i` unless that would take down more than f replicas.
    fn crash(&mut self, i: usize) {
        // At most f faulty at once: the crashed and the Byzantine.
        let faulty = (0..self.nodes.len())
            .filter(|j| !self.nodes[*j].up || !self.correct(*j))
            .count();
        if !self.nodes[i].up || !self.correct(i) || faulty >= self.membership.f() {
            return;
        }
        self.trace(format!("{} crash {i}", self.now));
        self.count_fault("crash");
        self.nodes[i].crash();
        // The transport of every other replica sees the connection close.
        for j in (0..self.nodes.len()).filter(|j| *j != i) {
            if self.nodes[j].up {
                self.gossip_then_step(j, gossip::InEvent::PeerDown(ReplicaId(i as u16)));
            }
        }
    }

    fn restart(&mut self, i: usize) {
        if self.nodes[i].up {
            return;
        }
        self.trace(format!("{} restart {i}", self.now));
        let n = self.nodes.len();
        let gossip = new_gossip(
            i,
            n,
            &self.gossip_config,
            self.cluster,
            &self.limits,
            &mut self.rng,
        );
        let pulses = self.nodes[i].disk.lockchain.len() as u64;
        self.restarts.push((i, pulses));
        self.nodes[i].restart(gossip);
        self.step(i, Input::Start);
        self.report_deadline(i);
        // A chain with a gap on disk (a transfer skipped pulses) is filled
        // after the restart too.
        self.nodes[i].lockchain_sync_scheduled = true;
        self.schedule(self.now, Event::LockchainSync(i));
        for j in (0..n).filter(|j| *j != i) {
            if self.nodes[j].up {
                self.gossip_then_step(j, gossip::InEvent::PeerUp(ReplicaId(i as u16)));
            }
        }
    }

    fn start_partition(&mut self, scripted: Option<Vec<bool>>) {
        if self.healed {
            return;
        }
        let n = self.nodes.len();
        let groups = scripted.unwrap_or_else(|| {
            let mut groups: Vec<bool> = (0..n).map(|_| self.rng.gen_bool(0.5)).collect();
            if groups.iter().all(|g| *g == groups[0]) {
                groups[0] = !groups[0];
            }
            groups
        });
        self.trace(format!("{} partition {groups:?}", self.now));
        self.count_fault("partition");
        self.partition = Some(groups);
    }

    fn sync(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.sync_scheduled = false;
        let Some(id) = node.disk.pending.iter().map(|(id, _)| *id).max() else {
            return;
        };
        node.disk.sync(id);
        self.trace(format!("{} sync {i} {}", self.now, id.0));
        self.step(i, Input::PersistAck { id });
    }

    /// Feeds one input to replica `i` and carries out everything it asks
    /// for, including inputs that follow at once (execution results).
    fn step(&mut self, i: usize, input: Input) {
        if let Input::RequestReady { digest } = &input {
            if self.has_twin(i) {
                self.twin_step(i, Input::RequestReady { digest: *digest });
            }
        }
        let mut work = VecDeque::from([input]);
        while let Some(input) = work.pop_front() {
            let local = self.nodes[i].local(self.now);
            let outputs = self.nodes[i].core.step(local, input);
            for output in outputs {
                self.apply(i, output, &mut work);
            }
        }
    }

    fn apply(&mut self, i: usize, output: Output, work: &mut VecDeque<Input>) {
        match output {
            Output::Send { to, message } if !self.correct(i) => {
                self.byzantine_send(i, vec![to.index()], message)
            }
            Output::Broadcast { message } if !self.correct(i) => {
                let to = (0..self.nodes.len()).filter(|j| *j != i).collect();
                self.byzantine_send(i, to, message);
            }
            Output::Send { to, message } => {
                self.check_persisted(i, &message);
                self.observe(i, &message);
                let bytes = codec::encode(&message);
                self.send(Some(i), to.index(), NetMsg::Consensus(bytes));
            }
            Output::Broadcast { message } => {
                self.check_persisted(i, &message);
                self.observe(i, &message);
                let bytes = codec::encode(&message);
                for j in (0..self.nodes.len()).filter(|j| *j != i) {
                    self.send(Some(i), j, NetMsg::Consensus(bytes.clone()));
                }
            }
            Output::Persist { id, record } => self.persist(i, id, record),
            Output::SetTimer { kind, at_micros } => {
                self.nodes[i].timers.insert(kind, at_micros);
                let at = self.nodes[i].global(at_micros);
                self.schedule(
                    at,
                    Event::Timer {
                        node: i,
                        kind,
                        at_local: at_micros,
                    },
                );
            }
            Output::FetchPayloads { digests, hint } => {
                // Fetch-by-digest is the gossip core's: it asks the hint
                // first, then the digest's announcers, then other peers.
                for id in digests {
                    let hints = vec![hint];
                    let inputs = self.gossip(i, gossip::InEvent::Fetch { id, hints });
                    work.extend(inputs);
                }
            }
            Output::Release { digests } => {
                for d in digests {
                    self.nodes[i].mempool.remove(&d);
                }
            }
            Output::FetchCommitted { from, first, last } => {
                self.send(Some(i), from.index(), NetMsg::FetchCommitted(first, last));
            }
            Output::Execute(batch) => self.execute(i, batch, work),
            Output::StableCheckpoint {
                seq,
                app_digest,
                certificate,
            } => self.stable_checkpoint(i, seq, app_digest, certificate),
            Output::CheckpointCertified {
                seq,
                app_digest,
                certificate,
            } => {
                // An endorsed checkpoint's header was never computed here:
                // the replicas that computed it store the certificate, and
                // the lockchain sync brings it.
                if self.nodes[i].app.pulses.headers.contains_key(&seq) {
                    self.report.late_certificates += 1;
                    self.store_pulse(i, seq, app_digest, &certificate);
                }
            }
            Output::FetchState { seq, .. } => self.start_transfer(i, seq),
            Output::StateDiverged { .. } if !self.correct(i) => {}
            Output::StateDiverged { seq, .. } => {
                self.violation(format!(
                    "replica {i} diverged from the certified state at {seq:?}"
                ));
            }
            Output::ViewInstalled { view } => {
                self.trace(format!("{} view {i} {view:?}", self.now));
                self.report.view_changes = self.report.view_changes.max(view.0);
            }
            Output::Rejected { from, reason } => {
                self.trace(format!(
                    "{} reject {i} {from:?} {}",
                    self.now,
                    reason.name()
                ));
                *self.report.rejections.entry(reason.name()).or_default() += 1;
            }
        }
    }

    /// The disk: a record is written now and durable at the next sync
    /// (one sync covers every record written before it: group commit).
    fn persist(&mut self, i: usize, id: consensus::PersistId, record: consensus::PersistRecord) {
        let node = &mut self.nodes[i];
        if let consensus::PersistRecord::PrePrepare(signed) = &record {
            if let Message::PrePrepare(pp) = &signed.message {
                for d in &pp.batch.digests {
                    if let Some(request) = node.mempool.get(d) {
                        node.disk.payloads.insert(*d, request.clone());
                    }
                }
            }
        }
        node.disk.pending.push((id, record));
        node.disk.records_written += 1;
        if !node.sync_scheduled {
            node.sync_scheduled = true;
            let at = self.now + self.rng.gen_range(50..500);
            self.schedule(at, Event::Sync { node: i });
        }
    }

    /// A stable checkpoint: stored (the lockchain keeps the quorum
    /// certificate) and checked against every other replica's.
    fn stable_checkpoint(
        &mut self,
        i: usize,
        seq: SeqNum,
        app_digest: Digest,
        certificate: Vec<(ReplicaId, primitives::Signature)>,
    ) {
        let signed = certificate
            .iter()
            .map(|(replica, signature)| consensus::SignedMessage {
                message: Message::Checkpoint(consensus::Checkpoint {
                    seq,
                    app_digest,
                    replica: *replica,
                }),
                signature: *signature,
            })
            .collect();
        self.nodes[i].disk.stable = Some((seq, app_digest, signed));
        self.report.stable_checkpoints += 1;
        self.collect_log(i, seq);
        self.store_pulse(i, seq, app_digest, &certificate);
        if !self.correct(i) {
            return;
        }
        let agreed = *self.checkpoints.entry(seq).or_insert(app_digest);
        if agreed != app_digest {
            self.violation(format!(
                "replica {i} made {seq:?} stable with another digest"
            ));
        }
    }

    /// DESIGN.md step 6: a vote leaves only after what it depends on is
    /// durable.
    fn check_persisted(&mut self, i: usize, message: &WireMessage) {
        let WireMessage::Signed(signed) = message else {
            return;
        };
        let disk = &self.nodes[i].disk;
        let ok = match &signed.message {
            Message::PrePrepare(pp) if self.membership.primary(pp.view).index() == i => disk
                .pre_prepares
                .contains(&(pp.view, pp.seq, pp.batch.digest())),
            Message::Prepare(v) if v.replica.index() == i => {
                disk.pre_prepares.contains(&(v.view, v.seq, v.batch))
            }
            Message::Commit(v) if v.replica.index() == i => {
                disk.prepared.contains(&(v.view, v.seq, v.batch))
            }
            Message::ViewChange(vc) if vc.replica.index() == i => {
                disk.view_changes.contains(&vc.view)
            }
            Message::NewView(nv) if self.membership.primary(nv.view).index() == i => {
                disk.new_views.contains(&nv.view)
            }
            _ => true,
        };
        if !ok {
            let what = format!("replica {i} sent {:?} before persisting", signed.message);
            self.violation(what);
        }
    }
}

mod byzantine;
mod checkers;
mod drive;
mod gossip_loop;
mod lockchain_loop;
mod observe;
mod transfer_loop;

pub use byzantine::ByzantineRole;
pub use transfer_loop::Transfer;
