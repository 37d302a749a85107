//! The event loop: one tokio task that owns the consensus core, the
//! Plumtree driver, the qlock state machine and the swarm, and is the only
//! place that reads the clock.
//!
//! One pass: wait for anything (swarm event, storage completion, timer,
//! command, stop), drain what else is ready into the bounded lanes, fire
//! due timers, serve the lanes in priority order (consensus, fetch,
//! client, gossip), then hand the pass's writes to the storage worker as
//! one synced commit. Votes that depend on a persist record leave only
//! after the commit's acknowledgement (`Input::PersistAck`).

use super::certify::Certifier;
use super::handle::{Command, SubmitOutcome};
use super::metrics::RuntimeMetrics;
use super::persist::{self, Done, Job, LoggedBatch, PulseEntry, SnapshotMeta};
use super::wire::{Lane, PeerMessage, COMMITTED_PER_MESSAGE_MAX, PAYLOADS_PER_MESSAGE_MAX};
use super::{RuntimeConfig, RuntimeError};
use client::api::{ApiError, Event, PeerHealth, StatusReport, PULSES_PER_QUERY_MAX};
use consensus::{
    Checkpoint, ExecuteBatch, Input, Message, Output, PersistRecord, Replica, SignedMessage,
    TimerKind,
};
use futures::{FutureExt, StreamExt};
use gossip::Plumtree;
use gossip::RequestValidator;
use libp2p::swarm::SwarmEvent;
use libp2p::PeerId;
use lockchain::{PulseBatches, PulseCertificate, PulseHeader, ReceiptPulseProof};
use primitives::{
    codec, Bytes, ClientId, Digest, HlcTimestamp, Membership, PulseNumber, ReplicaId, Request,
    RequestLimits, SeqNum,
};
use qlock::{ClientEvent, Durability, Op, StateMachine};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use storage::{SnapshotManifest, StableCheckpoint, Store, WriteSet};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::net::gossip_driver::{GossipDriver, GossipOutput};
use crate::net::{frames, BehaviourEvent, NetSwarm, ReplicaPeers};

mod transfer;

/// The swarm of a replica.
pub type Swarm = NetSwarm<PeerMessage, gossip::Message>;

/// Swarm events taken in one pass at most (the rest wait for the next).
const SWARM_EVENTS_PER_PASS_MAX: usize = 256;
/// Client commands served in one pass at most.
const CLIENT_PER_PASS_MAX: usize = 512;
/// Fetch messages served in one pass at most.
const FETCH_PER_PASS_MAX: usize = 64;
/// Gossip events served in one pass at most.
const GOSSIP_PER_PASS_MAX: usize = 256;
/// How often the loop sweeps timeouts and refreshes gauges.
const HOUSEKEEPING: Duration = Duration::from_millis(50);
/// Bytes of one snapshot chunk.
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// A transfer snapshot is taken at every this many pulses, not at every
/// one: building it is O(state) on the loop and writing it rewrites the
/// whole state into RocksDB (with ≈ 30,000 queued messages, a snapshot per
/// pulse cost a third of the throughput and most of the p99; BENCHMARKS.md).
/// The log is collected only below a written snapshot, so a laggard takes
/// the newest snapshot above what it executed and the batches after it.
pub const SNAPSHOT_PULSE_INTERVAL: u64 = 8;
/// Pulse headers kept while not (yet) certified: at least consensus's
/// `orphan_checkpoints_max`, so a late certificate finds its header.
const UNSTABLE_PULSES_MAX: usize = 9;
/// Pending gossip timers at most.
const GOSSIP_TIMERS_MAX: usize = 100_000;

fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A submitter waiting for its certified reply.
struct Waiter {
    answer: oneshot::Sender<Result<SubmitOutcome, ApiError>>,
    since: Instant,
}

/// The submitters of one request.
struct Pending {
    waiters: Vec<Waiter>,
    /// Distinct signatures its reply needs (f + 1, or 2f + 1 for `sync`).
    need: usize,
    ops: usize,
    deadline: Instant,
    /// Set once executed.
    seq: Option<SeqNum>,
}

/// Per-peer health for the status report.
#[derive(Clone, Debug, Default)]
struct Health {
    connected: bool,
    last_seen: Option<Instant>,
    errors: u64,
}

/// The pulse chain's position: the previous header's digest and the
/// receipts roots of the batches since.
#[derive(Clone, Debug)]
struct PulseChain {
    previous: Digest,
    first_seq: SeqNum,
    roots: Vec<Digest>,
    /// Headers (with their batches' roots) built at checkpoint seqs and
    /// not yet stable, with the state snapshot taken at that seq (at
    /// snapshot pulses only).
    unstable: BTreeMap<SeqNum, UnstablePulse>,
}

/// A pulse header built at a checkpoint seq, the receipts roots of its
/// batches, and the state snapshot taken there (live execution at
/// snapshot pulses only).
type UnstablePulse = (PulseHeader, Vec<Digest>, Option<qlock::TransferSnapshot>);

/// The event loop's state.
pub struct Runtime {
    cfg: RuntimeConfig,
    membership: Membership,
    me: ReplicaId,
    limits: RequestLimits,
    swarm: Swarm,
    replicas: ReplicaPeers,
    driver: GossipDriver<RequestValidator>,
    core: Replica,
    machine: StateMachine,
    store: Arc<Store>,
    metrics: RuntimeMetrics,
    commands: mpsc::Receiver<Command>,

    // Lanes.
    consensus_lane: VecDeque<(ReplicaId, PeerMessage)>,
    fetch_lane: VecDeque<(ReplicaId, PeerMessage)>,
    client_lane: VecDeque<Command>,
    gossip_lane: VecDeque<frames::Event<gossip::Message>>,

    // Requests.
    mempool: BTreeMap<Digest, Request>,
    pending: BTreeMap<Digest, Pending>,
    certifying: BTreeMap<SeqNum, Vec<Digest>>,
    pending_events: BTreeMap<SeqNum, Vec<(ClientId, usize)>>,
    subscribers: BTreeMap<ClientId, Vec<mpsc::Sender<Event>>>,
    executed_at: BTreeMap<Digest, SeqNum>,
    executed_order: VecDeque<(SeqNum, Vec<Digest>)>,
    /// Payloads written with a PRE-PREPARE, by its seq: execution at that
    /// seq need not write them again. Pruned as seqs execute, so bounded
    /// by the watermark window × `batch_size_max`.
    payloads_logged: BTreeSet<(SeqNum, Digest)>,
    certifier: Certifier,
    chain: PulseChain,
    last_time: HlcTimestamp,

    // Timers: consensus deadlines on the wall clock (µs).
    timers: BTreeMap<TimerKind, u64>,
    housekeeping_at: Instant,

    // Storage.
    write_set: WriteSet,
    write_persist_id: Option<consensus::PersistId>,
    write_gc: Option<StableCheckpoint>,
    storage_busy: bool,
    jobs: mpsc::Sender<Job>,
    worker: Option<tokio::task::JoinHandle<()>>,
    storage_done: mpsc::Receiver<Done>,

    health: BTreeMap<ReplicaId, Health>,
    state_transfers: u64,
    stopping: Option<Instant>,

    // State transfer and lockchain gap filling (`transfer.rs`).
    transfer: Option<transfer::Transfer>,
    transfer_rotation: usize,
    verifier: lockchain::Verifier,
    /// Every pulse up to this one is stored.
    lockchain_cursor: PulseNumber,
    lockchain_sync_at: Instant,
}

impl Runtime {
    /// Builds the loop's state: recovers from the store, restores the
    /// consensus core, binds the gossip core to the swarm.
    pub(super) fn new(
        cfg: RuntimeConfig,
        swarm: Swarm,
        store: Arc<Store>,
        metrics: RuntimeMetrics,
        commands: mpsc::Receiver<Command>,
    ) -> Result<Runtime, RuntimeError> {
        let membership = cfg.membership.clone();
        let me = cfg.id;
        let keys: Vec<_> = membership.replicas.clone();
        let replicas = ReplicaPeers::new(&keys);
        let validator = RequestValidator::new(membership.cluster_id(), cfg.request_limits);
        let plumtree = Plumtree::new(
            me,
            membership.n(),
            cfg.gossip.clone(),
            validator,
            ChaCha8Rng::seed_from_u64(u64::from(me.0) ^ wall_micros()),
        );
        let driver = GossipDriver::new(
            plumtree,
            replicas.clone(),
            |p| swarm.behaviour().peers.is_connected(p),
            GOSSIP_TIMERS_MAX,
        );
        let (jobs, jobs_rx) = mpsc::channel(4);
        let (done_tx, storage_done) = mpsc::channel(4);
        let worker = persist::spawn_worker(store.clone(), jobs_rx, done_tx);
        let consensus_cfg = cfg.consensus_config();
        let certifier = Certifier::new(
            membership.clone(),
            me,
            cfg.limits.batch_cache_max,
            cfg.consensus.watermark_window.max(1),
        );
        let machine = StateMachine::new(cfg.qlock.clone());
        let core = Replica::new(consensus_cfg).map_err(RuntimeError::Consensus)?;
        let health = membership
            .ids()
            .filter(|r| *r != me)
            .map(|r| (r, Health::default()))
            .collect();
        let verifier = lockchain::Verifier::new(membership.clone());
        let mut rt = Runtime {
            limits: cfg.request_limits,
            membership,
            me,
            swarm,
            replicas,
            driver,
            core,
            machine,
            store,
            metrics,
            commands,
            consensus_lane: VecDeque::new(),
            fetch_lane: VecDeque::new(),
            client_lane: VecDeque::new(),
            gossip_lane: VecDeque::new(),
            mempool: BTreeMap::new(),
            pending: BTreeMap::new(),
            certifying: BTreeMap::new(),
            pending_events: BTreeMap::new(),
            subscribers: BTreeMap::new(),
            executed_at: BTreeMap::new(),
            executed_order: VecDeque::new(),
            payloads_logged: BTreeSet::new(),
            certifier,
            chain: PulseChain {
                previous: Digest::ZERO,
                first_seq: SeqNum(1),
                roots: Vec::new(),
                unstable: BTreeMap::new(),
            },
            last_time: HlcTimestamp::default(),
            timers: BTreeMap::new(),
            housekeeping_at: Instant::now(),
            write_set: WriteSet::new(),
            write_persist_id: None,
            write_gc: None,
            storage_busy: false,
            jobs,
            worker: Some(worker),
            storage_done,
            health,
            state_transfers: 0,
            stopping: None,
            transfer: None,
            transfer_rotation: me.index(),
            verifier,
            lockchain_cursor: PulseNumber(0),
            lockchain_sync_at: Instant::now(),
            cfg,
        };
        rt.recover()?;
        Ok(rt)
    }

    // ----- Recovery -------------------------------------------------------

    /// Restores the state machine from the newest snapshot, replays the log
    /// after it, and restores the consensus core from its safety records.
    fn recover(&mut self) -> Result<(), RuntimeError> {
        let recovered = self.store.recover().map_err(RuntimeError::Storage)?;
        if let Some(snapshot) = &recovered.snapshot {
            let mut machine = StateMachine::restore(&snapshot.chunks)
                .map_err(|e| RuntimeError::Recovery(format!("snapshot: {e}")))?;
            if machine.state_digest() != snapshot.manifest.state_digest {
                return Err(RuntimeError::Recovery("snapshot digest mismatch".into()));
            }
            let meta: SnapshotMeta = codec::decode(&snapshot.manifest.meta, codec::FRAME_BYTES_MAX)
                .map_err(|e| RuntimeError::Recovery(format!("snapshot meta: {e}")))?;
            self.machine = machine;
            self.chain.previous = meta.header.digest();
            self.chain.first_seq = meta.header.last_seq.next();
            self.last_time = meta.header.time;
            self.certifier.reset(meta.header.last_seq);
        }
        let mut replayed = 0u64;
        for (seq, entry) in &recovered.log {
            if *seq != self.certifier.last_executed().next() {
                break;
            }
            let Ok((logged, _certificate)) = persist::decode_log(&entry.batch, &entry.certificate)
            else {
                break;
            };
            let mut requests = Vec::new();
            for d in &logged.digests {
                match self.stored_payload(d) {
                    Some(r) => requests.push(r),
                    None => break,
                }
            }
            if requests.len() != logged.digests.len() {
                break;
            }
            self.apply(*seq, logged.time, &requests, &logged.digests, false);
            replayed += 1;
        }
        let mut records = Vec::new();
        for (_, bytes) in &recovered.safety {
            match codec::decode::<PersistRecord>(bytes, codec::FRAME_BYTES_MAX) {
                Ok(r) => records.push(r),
                Err(e) => return Err(RuntimeError::Recovery(format!("safety record: {e}"))),
            }
        }
        let stable = match self.store.latest_root().map_err(RuntimeError::Storage)? {
            Some((_, bytes)) => {
                let entry: PulseEntry = codec::decode(&bytes, codec::FRAME_BYTES_MAX)
                    .map_err(|e| RuntimeError::Recovery(format!("pulse entry: {e}")))?;
                let header = entry.certificate.header;
                let signed = entry
                    .certificate
                    .signatures
                    .iter()
                    .map(|s| SignedMessage {
                        message: Message::Checkpoint(Checkpoint {
                            seq: header.last_seq,
                            app_digest: header.digest(),
                            replica: s.replica,
                        }),
                        signature: s.signature,
                    })
                    .collect();
                Some((header.last_seq, header.digest(), signed))
            }
            None => None,
        };
        let empty = records.is_empty() && stable.is_none() && replayed == 0;
        if !empty {
            let state = consensus::RecoveredState {
                records,
                stable,
                last_executed: self.certifier.last_executed(),
                last_time: self.last_time,
                // The pulses the replay computed; the CHECKPOINT digest is
                // the pulse header's.
                checkpoints: self
                    .chain
                    .unstable
                    .iter()
                    .map(|(seq, (header, ..))| (*seq, header.digest()))
                    .collect(),
            };
            self.core = Replica::restore(self.cfg.consensus_config(), state)
                .map_err(RuntimeError::Consensus)?;
            tracing::info!(
                replica = self.me.0,
                last_executed = self.certifier.last_executed().0,
                replayed,
                "recovered from the data dir"
            );
        }
        Ok(())
    }

    fn stored_payload(&self, digest: &Digest) -> Option<Request> {
        if let Some(r) = self.mempool.get(digest) {
            return Some(r.clone());
        }
        // Execution trusts that a payload is the request its digest names.
        let bytes = self.store.payload(digest).ok().flatten()?;
        Request::decode(&bytes, &self.limits)
            .ok()
            .filter(|r| r.digest() == *digest)
    }

    // ----- The loop -------------------------------------------------------

    /// Runs until `stop` fires (or its sender is dropped and the command
    /// channel closes), then drains and syncs.
    pub(super) async fn run(mut self, mut stop: oneshot::Receiver<()>) -> Result<(), RuntimeError> {
        self.step(Input::Start);
        let deadline = self.machine.next_deadline();
        self.step(Input::NextDeadline { at: deadline });
        let mut stop_armed = true;
        loop {
            let deadline = self.next_wakeup();
            let accepting = self.stopping.is_none();
            tokio::select! {
                biased;
                r = &mut stop, if stop_armed => {
                    stop_armed = false;
                    if r.is_ok() {
                        self.begin_stop();
                    }
                }
                Some(done) = self.storage_done.recv() => self.on_storage_done(done)?,
                event = self.swarm.select_next_some() => self.classify(event),
                () = tokio::time::sleep_until(deadline) => {}
                command = self.commands.recv(), if accepting => match command {
                    Some(c) => self.client_lane.push_back(c),
                    None => self.begin_stop(),
                },
            }
            let pass = Instant::now();
            for _ in 0..SWARM_EVENTS_PER_PASS_MAX {
                match self.swarm.select_next_some().now_or_never() {
                    Some(event) => self.classify(event),
                    None => break,
                }
            }
            while let Ok(done) = self.storage_done.try_recv() {
                self.on_storage_done(done)?;
            }
            if self.stopping.is_none() {
                while self.client_lane.len() < self.cfg.limits.client_lane_max {
                    match self.commands.try_recv() {
                        Ok(c) => self.client_lane.push_back(c),
                        Err(_) => break,
                    }
                }
            }
            self.fire_timers();
            self.serve_lanes();
            self.housekeeping();
            self.flush_storage()?;
            self.metrics
                .loop_pass_seconds
                .observe(pass.elapsed().as_secs_f64());
            if self.finished() {
                break;
            }
        }
        self.shutdown().await
    }

    fn begin_stop(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        tracing::info!(replica = self.me.0, "stopping: no new requests");
        self.stopping = Some(Instant::now() + self.cfg.limits.stop_grace);
        self.commands.close();
        while let Ok(c) = self.commands.try_recv() {
            self.client_lane.push_back(c);
        }
    }

    /// Stopping and nothing in flight (or the grace period is over).
    fn finished(&self) -> bool {
        let Some(until) = self.stopping else {
            return false;
        };
        let idle = self.certifying.is_empty()
            && self.pending.values().all(|p| p.seq.is_none())
            && !self.storage_busy
            && self.write_set.is_empty();
        idle || Instant::now() >= until
    }

    async fn shutdown(mut self) -> Result<(), RuntimeError> {
        for (_, p) in std::mem::take(&mut self.pending) {
            for w in p.waiters {
                let _ = w
                    .answer
                    .send(Err(ApiError::Unavailable("replica stopped".into())));
            }
        }
        // Finish the commit in flight, then write what is left, synced.
        while self.storage_busy {
            match self.storage_done.recv().await {
                Some(done) => self.on_storage_done(done)?,
                None => break,
            }
        }
        if !self.write_set.is_empty() {
            let set = std::mem::take(&mut self.write_set);
            self.store.commit(set).map_err(RuntimeError::Storage)?;
        }
        // Close the worker's queue and wait for it, so the store (and its
        // lock on the data dir) is released when the task ends.
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.jobs, closed));
        if let Some(worker) = self.worker.take() {
            let _ = worker.await;
        }
        tracing::info!(replica = self.me.0, "stopped");
        Ok(())
    }

    fn next_wakeup(&self) -> Instant {
        let now = Instant::now();
        let wall = wall_micros();
        let mut at = self.housekeeping_at;
        if let Some(t) = self.timers.values().min() {
            at = at.min(now + Duration::from_micros(t.saturating_sub(wall)));
        }
        if let Some(g) = self.driver.next_deadline() {
            at = at.min(g);
        }
        at
    }

    fn fire_timers(&mut self) {
        let wall = wall_micros();
        let due: Vec<TimerKind> = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= wall)
            .map(|(k, _)| *k)
            .collect();
        for kind in due {
            self.timers.remove(&kind);
            self.step(Input::Timer(kind));
        }
        let outputs = self
            .driver
            .fire_due_timers(&mut self.swarm.behaviour_mut().gossip);
        self.on_gossip_outputs(outputs);
    }

    // ----- Inbound classification -------------------------------------------

    fn classify(&mut self, event: SwarmEvent<BehaviourEvent<PeerMessage, gossip::Message>>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Pbft(frames::Event::Received {
                peer,
                message,
            })) => {
                let Some(from) = self.replica_of(&peer) else {
                    return self.metrics.reject("unknown_peer");
                };
                if let Some(h) = self.health.get_mut(&from) {
                    h.last_seen = Some(Instant::now());
                }
                let (lane, max) = match message.lane() {
                    Lane::Consensus => {
                        (&mut self.consensus_lane, self.cfg.limits.consensus_lane_max)
                    }
                    _ => (&mut self.fetch_lane, self.cfg.limits.fetch_lane_max),
                };
                if lane.len() >= max {
                    return self.metrics.reject(match message.lane() {
                        Lane::Consensus => "consensus_lane_full",
                        _ => "fetch_lane_full",
                    });
                }
                lane.push_back((from, message));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Pbft(frames::Event::Rejected {
                peer, ..
            })) => {
                if let Some(h) = self.replica_of(&peer).and_then(|r| self.health.get_mut(&r)) {
                    h.errors += 1;
                }
                self.metrics.reject("pbft_frame");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(e)) => {
                if self.gossip_lane.len() >= self.cfg.limits.gossip_lane_max {
                    return self.metrics.reject("gossip_lane_full");
                }
                self.gossip_lane.push_back(e);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } => {
                if let Some(h) = self
                    .replica_of(&peer_id)
                    .and_then(|r| self.health.get_mut(&r))
                {
                    h.connected = true;
                    h.last_seen = Some(Instant::now());
                }
                if num_established.get() == 1 {
                    let net = &mut self.swarm.behaviour_mut().gossip;
                    let outputs = self.driver.on_peer_up(net, &peer_id);
                    self.on_gossip_outputs(outputs);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                if let Some(h) = self
                    .replica_of(&peer_id)
                    .and_then(|r| self.health.get_mut(&r))
                {
                    h.connected = false;
                }
                let net = &mut self.swarm.behaviour_mut().gossip;
                let outputs = self.driver.on_peer_down(net, &peer_id);
                self.on_gossip_outputs(outputs);
            }
            _ => {}
        }
    }

    fn replica_of(&self, peer: &PeerId) -> Option<ReplicaId> {
        self.replicas.replica(peer).filter(|r| *r != self.me)
    }

    fn serve_lanes(&mut self) {
        // The pass's PBFT messages share one batch signature check.
        self.core
            .preverify(self.consensus_lane.iter().filter_map(|(_, m)| match m {
                PeerMessage::Consensus(wire) => Some(wire),
                _ => None,
            }));
        while let Some((from, message)) = self.consensus_lane.pop_front() {
            self.on_peer_message(from, message);
        }
        for _ in 0..FETCH_PER_PASS_MAX {
            // Consensus messages produced meanwhile go first.
            let Some((from, message)) = self.fetch_lane.pop_front() else {
                break;
            };
            self.on_peer_message(from, message);
        }
        for _ in 0..CLIENT_PER_PASS_MAX {
            let Some(command) = self.client_lane.pop_front() else {
                break;
            };
            self.on_command(command);
        }
        // Requests new to us in this pass's gossip share one batch
        // signature check.
        self.driver
            .prepare(self.gossip_lane.iter().take(GOSSIP_PER_PASS_MAX));
        for _ in 0..GOSSIP_PER_PASS_MAX {
            let Some(event) = self.gossip_lane.pop_front() else {
                break;
            };
            let net = &mut self.swarm.behaviour_mut().gossip;
            let outputs = self.driver.on_event(net, event);
            self.on_gossip_outputs(outputs);
        }
    }

    // ----- Peers ----------------------------------------------------------

    fn send(&mut self, to: ReplicaId, message: &PeerMessage) {
        let Some(peer) = self.replicas.peer(to).copied() else {
            return;
        };
        if to == self.me {
            return;
        }
        if let Err(e) = self.swarm.behaviour_mut().pbft.send(&peer, message) {
            tracing::trace!(to = to.0, "pbft send refused: {e}");
            if let Some(h) = self.health.get_mut(&to) {
                h.errors += 1;
            }
        }
    }

    fn broadcast(&mut self, message: &PeerMessage) {
        let peers: Vec<PeerId> = self
            .membership
            .ids()
            .filter(|r| *r != self.me)
            .filter_map(|r| self.replicas.peer(r).copied())
            .collect();
        if peers.is_empty() {
            return;
        }
        match self.swarm.behaviour_mut().pbft.send_many(&peers, message) {
            Ok(failed) => {
                for (peer, _) in failed {
                    if let Some(h) = self.replica_of(&peer).and_then(|r| self.health.get_mut(&r)) {
                        h.errors += 1;
                    }
                }
            }
            Err(e) => tracing::warn!("pbft broadcast refused: {e}"),
        }
    }

    fn on_peer_message(&mut self, from: ReplicaId, message: PeerMessage) {
        match message {
            PeerMessage::Consensus(message) => self.step(Input::Peer { from, message }),
            PeerMessage::BatchSignature {
                seq,
                receipts_root,
                signature,
            } => match self
                .certifier
                .add_signature(from, seq, receipts_root, signature)
            {
                Ok(true) => self.try_answer(seq),
                Ok(false) => {}
                Err(e) => self.metrics.reject(e.name()),
            },
            PeerMessage::FetchPayloads(digests) => {
                let found: Vec<Request> = digests
                    .iter()
                    .take(PAYLOADS_PER_MESSAGE_MAX)
                    .filter_map(|d| self.stored_payload(d))
                    .collect();
                if !found.is_empty() {
                    self.send(from, &PeerMessage::Payloads(found));
                }
            }
            PeerMessage::Payloads(requests) => self.on_payloads(requests),
            PeerMessage::FetchCommitted { first, last } => {
                let last = last.min(SeqNum(
                    first.0.saturating_add(COMMITTED_PER_MESSAGE_MAX as u64 - 1),
                ));
                let mut batches = Vec::new();
                for seq in first.0..=last.0 {
                    let Ok(Some(entry)) = self.store.log(SeqNum(seq)) else {
                        break;
                    };
                    match persist::decode_log(&entry.batch, &entry.certificate) {
                        Ok((_, certificate)) => batches.push(certificate),
                        Err(_) => break,
                    }
                }
                if !batches.is_empty() {
                    self.send(from, &PeerMessage::Committed(batches));
                }
            }
            PeerMessage::FetchSnapshot { seq } => self.serve_snapshot(from, seq),
            PeerMessage::SnapshotOffer { entry, manifest } => {
                self.on_snapshot_offer(from, *entry, manifest)
            }
            PeerMessage::FetchChunk { seq, index } => self.serve_chunk(from, seq, index),
            PeerMessage::SnapshotChunk { seq, index, bytes } => {
                self.on_snapshot_chunk(from, seq, index, bytes)
            }
            PeerMessage::NoSnapshot { .. } => self.on_no_snapshot(from),
            PeerMessage::FetchPulses { first, last } => self.serve_pulses(from, first, last),
            PeerMessage::Pulses(entries) => self.on_pulses(entries),
            PeerMessage::Committed(batches) => {
                if batches.len() > COMMITTED_PER_MESSAGE_MAX {
                    return self.metrics.reject("committed_too_many");
                }
                self.metrics.catch_up_batches.inc_by(batches.len() as u64);
                for batch in batches {
                    self.step(Input::CommittedBatch { from, batch });
                }
            }
        }
    }

    fn on_payloads(&mut self, requests: Vec<Request>) {
        if requests.len() > PAYLOADS_PER_MESSAGE_MAX {
            return self.metrics.reject("payloads_too_many");
        }
        let cluster = self.membership.cluster_id();
        let verdicts = primitives::request::verify_many(&requests, cluster, &self.limits);
        for (request, verdict) in requests.into_iter().zip(verdicts) {
            let digest = request.digest();
            let valid = verdict.is_ok();
            if !valid {
                self.metrics.reject("invalid_payload");
            } else {
                // Fetched payloads are pinned by the core: admitted past the
                // client bound (the core bounds what it fetches).
                self.mempool.entry(digest).or_insert(request);
            }
            self.step(Input::PayloadFetched { digest, valid });
        }
    }

    // ----- Gossip ---------------------------------------------------------

    fn on_gossip_outputs(&mut self, outputs: Vec<GossipOutput>) {
        for output in outputs {
            let GossipOutput::Deliver(delivery) = output else {
                continue;
            };
            // Validated by `RequestValidator` before delivery, which kept
            // the decoded request.
            let request = match self.driver.validator_mut().take_verified(&delivery.id) {
                Some(request) => request,
                None => match Request::decode(&delivery.payload.0, &self.limits) {
                    Ok(request) => request,
                    Err(_) => {
                        self.metrics.reject("gossip_undecodable");
                        continue;
                    }
                },
            };
            let digest = delivery.id;
            if self.mempool.contains_key(&digest) || self.executed_at.contains_key(&digest) {
                continue;
            }
            if self.mempool.len() >= self.cfg.limits.mempool_max {
                self.metrics.reject("mempool_full");
                continue;
            }
            self.mempool.insert(digest, request);
            self.step(Input::RequestReady { digest });
        }
    }

    // ----- Clients --------------------------------------------------------

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Submit { request, answer } => self.on_submit(*request, answer),
            Command::Status { answer } => {
                let _ = answer.send(self.status());
            }
            Command::Subscribe { client, events } => {
                let total: usize = self.subscribers.values().map(Vec::len).sum();
                if total >= self.cfg.limits.subscribers_max {
                    self.metrics.reject("subscribers_full");
                    return; // Dropping `events` closes the subscriber's stream.
                }
                self.subscribers.entry(client).or_default().push(events);
            }
            Command::Pulses {
                from,
                count,
                answer,
            } => {
                let _ = answer.send(self.pulses(from, count));
            }
            Command::ReceiptProof {
                request,
                op_index,
                answer,
            } => {
                let _ = answer.send(self.receipt_proof(request, op_index));
            }
        }
    }

    fn on_submit(
        &mut self,
        request: Request,
        answer: oneshot::Sender<Result<SubmitOutcome, ApiError>>,
    ) {
        if self.stopping.is_some() {
            let _ = answer.send(Err(ApiError::Unavailable("replica stopping".into())));
            return;
        }
        let digest = request.digest();
        let ops: Vec<Option<Op>> = request
            .body
            .ops
            .iter()
            .map(|b| Op::decode(&b.0).ok())
            .collect();
        let is_submit = |op: &Option<Op>, d: Durability| matches!(op, Some(Op::Submit { durability, .. }) if *durability == d);
        let all_async = ops.iter().all(|op| is_submit(op, Durability::Async));
        let sync = ops.iter().any(|op| is_submit(op, Durability::Sync));
        let need = if sync {
            self.membership.quorum()
        } else {
            self.membership.weak_quorum()
        };
        let known = self.mempool.contains_key(&digest);
        if !known && !self.executed_at.contains_key(&digest) {
            if self.mempool.len() >= self.cfg.limits.mempool_max {
                self.metrics.reject("mempool_full");
                let _ = answer.send(Err(ApiError::Overloaded("mempool full".into())));
                return;
            }
            if !all_async
                && !self.pending.contains_key(&digest)
                && self.pending.len() >= self.cfg.limits.pending_replies_max
            {
                self.metrics.reject("pending_replies_full");
                let _ = answer.send(Err(ApiError::Overloaded("pending replies full".into())));
                return;
            }
            let bytes = Bytes(codec::encode(&request));
            self.mempool.insert(digest, request);
            let net = &mut self.swarm.behaviour_mut().gossip;
            match self.driver.broadcast(net, bytes) {
                Ok(outputs) => self.on_gossip_outputs(outputs),
                Err(e) => tracing::debug!("gossip broadcast refused: {e}"),
            }
            self.step(Input::RequestReady { digest });
        }
        if all_async {
            let _ = answer.send(Ok(SubmitOutcome::Accepted(digest)));
            return;
        }
        // Executed already (e.g. it arrived by gossip first): answer from
        // the batch cache when certified.
        let executed = self.executed_at.get(&digest).copied();
        let now = Instant::now();
        let op_count = ops.len();
        let pending = self.pending.entry(digest).or_insert_with(|| Pending {
            waiters: Vec::new(),
            need,
            ops: op_count,
            deadline: now + self.cfg.limits.reply_timeout,
            seq: executed,
        });
        if pending.waiters.len() >= self.cfg.limits.waiters_per_request_max {
            let _ = answer.send(Err(ApiError::Overloaded("too many waiters".into())));
            return;
        }
        pending.waiters.push(Waiter { answer, since: now });
        if let Some(seq) = executed {
            let list = self.certifying.entry(seq).or_default();
            if !list.contains(&digest) {
                list.push(digest);
            }
            self.try_answer(seq);
        }
    }

    fn status(&self) -> StatusReport {
        let view = self.core.view();
        let now = Instant::now();
        StatusReport {
            replica: self.me,
            view,
            primary: self.membership.primary(view),
            last_executed: self.certifier.last_executed(),
            stable_checkpoint: self.core.low_watermark(),
            state_transfers: self.state_transfers,
            peers: self
                .health
                .iter()
                .map(|(r, h)| PeerHealth {
                    replica: *r,
                    connected: h.connected,
                    rtt_micros: None,
                    last_seen_micros_ago: h
                        .last_seen
                        .map(|t| now.saturating_duration_since(t).as_micros() as u64),
                    errors: h.errors,
                })
                .collect(),
        }
    }

    fn pulses(&self, from: PulseNumber, count: u32) -> Vec<PulseCertificate> {
        let count = count.clamp(1, PULSES_PER_QUERY_MAX);
        let to = PulseNumber(from.0.saturating_add(u64::from(count) - 1));
        match self.store.roots(from, to) {
            Ok(entries) => entries
                .into_iter()
                .zip(from.0..)
                // Only the run that starts at `from` and has no gap: a pulse
                // not stored (yet: before a transferred snapshot, until gap
                // filling fetches it) ends the answer. Skipping it would
                // start the answer later than asked, which clients refuse
                // as unverifiable.
                .take_while(|((pulse, _), expected)| pulse.0 == *expected)
                .map_while(|((_, bytes), _)| {
                    codec::decode::<PulseEntry>(&bytes, codec::FRAME_BYTES_MAX).ok()
                })
                .map(|e| e.certificate)
                .collect(),
            Err(e) => {
                tracing::warn!("pulse lookup failed: {e}");
                Vec::new()
            }
        }
    }

    fn pulse_of(&self, seq: SeqNum) -> PulseNumber {
        let k = self.cfg.consensus.checkpoint_interval;
        PulseNumber(seq.0.saturating_sub(1) / k + 1)
    }

    fn receipt_proof(&self, request: Digest, op_index: u32) -> Result<ReceiptPulseProof, ApiError> {
        let seq = *self.executed_at.get(&request).ok_or(ApiError::NotFound)?;
        let pulse = self.pulse_of(seq);
        let bytes = self
            .store
            .root(pulse)
            .map_err(|e| ApiError::Unavailable(e.to_string()))?
            .ok_or(ApiError::NotFound)?;
        let entry: PulseEntry = codec::decode(&bytes, codec::FRAME_BYTES_MAX)
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let header = entry.certificate.header;
        let receipts: Vec<primitives::Receipt> = match self.certifier.batch(seq) {
            Some(b) => b.receipts.clone(),
            None => {
                let bytes = self
                    .store
                    .receipts(pulse, seq)
                    .map_err(|e| ApiError::Unavailable(e.to_string()))?
                    .ok_or(ApiError::NotFound)?;
                codec::decode(&bytes, codec::FRAME_BYTES_MAX)
                    .map_err(|e| ApiError::Unavailable(e.to_string()))?
            }
        };
        let tree = lockchain::ReceiptTree::new(&receipts);
        let index = receipts
            .iter()
            .position(|r| r.request == request && r.op_index == op_index)
            .ok_or(ApiError::NotFound)?;
        let batches = PulseBatches::new(header.first_seq, &entry.receipts_roots);
        let batch_path = batches.proof(seq).ok_or(ApiError::NotFound)?;
        Ok(ReceiptPulseProof {
            receipt: receipts[index].clone(),
            receipt_path: tree.proof(index as u64).ok_or(ApiError::NotFound)?,
            receipts_root: tree.root(),
            batch_path,
            pulse: entry.certificate,
        })
    }

    // ----- Consensus ------------------------------------------------------

    /// Feeds one input to the core and carries out everything it asks for,
    /// including the inputs that follow at once (execution results).
    fn step(&mut self, input: Input) {
        let mut work = VecDeque::from([input]);
        while let Some(input) = work.pop_front() {
            let outputs = self.core.step(wall_micros(), input);
            for output in outputs {
                self.on_output(output, &mut work);
            }
        }
    }

    fn on_output(&mut self, output: Output, work: &mut VecDeque<Input>) {
        match output {
            Output::Send { to, message } => self.send(to, &PeerMessage::Consensus(message)),
            Output::Broadcast { message } => self.broadcast(&PeerMessage::Consensus(message)),
            Output::Persist { id, record } => self.persist(id, record),
            Output::SetTimer { kind, at_micros } => {
                self.timers.insert(kind, at_micros);
            }
            Output::FetchPayloads { digests, hint } => {
                let to = if hint == self.me {
                    ReplicaId(((self.me.0 as usize + 1) % self.membership.n()) as u16)
                } else {
                    hint
                };
                for chunk in digests.chunks(PAYLOADS_PER_MESSAGE_MAX) {
                    self.send(to, &PeerMessage::FetchPayloads(chunk.to_vec()));
                }
            }
            Output::Release { digests } => {
                for d in digests {
                    self.mempool.remove(&d);
                }
            }
            Output::FetchCommitted { from, first, last } => {
                self.send(from, &PeerMessage::FetchCommitted { first, last });
            }
            Output::Execute(batch) => self.execute(batch, work),
            Output::StableCheckpoint {
                seq,
                app_digest,
                certificate,
            } => self.stable_checkpoint(seq, app_digest, certificate),
            Output::CheckpointCertified {
                seq,
                app_digest,
                certificate,
            } => self.checkpoint_certified(seq, app_digest, certificate),
            Output::FetchState { seq, .. } => self.start_transfer(seq),
            Output::StateDiverged {
                seq,
                local,
                certified,
            } => {
                tracing::error!(
                    seq = seq.0,
                    ?local,
                    ?certified,
                    "state diverged from the certified checkpoint"
                );
                self.metrics.reject("state_diverged");
            }
            Output::ViewInstalled { view } => {
                self.metrics.view_changes.inc();
                self.metrics.view.set(view.0 as i64);
                tracing::info!(replica = self.me.0, view = view.0, "view installed");
            }
            Output::Rejected { from, reason } => {
                if let Some(h) = from.and_then(|r| self.health.get_mut(&r)) {
                    h.errors += 1;
                }
                self.metrics.reject(reason.name());
            }
        }
    }

    fn persist(&mut self, id: consensus::PersistId, record: PersistRecord) {
        let Some(key) = persist::safety_key(&record) else {
            // The core only emits well-formed records.
            unreachable!("persist record without its message: {record:?}");
        };
        if let PersistRecord::PrePrepare(signed) = &record {
            if let Message::PrePrepare(pp) = &signed.message {
                for d in &pp.batch.digests {
                    if let Some(r) = self.mempool.get(d) {
                        self.write_set.put_payload(*d, pp.seq, &codec::encode(r));
                        self.payloads_logged.insert((pp.seq, *d));
                    }
                }
            }
        }
        self.write_set.put_safety(key, codec::encode(&record));
        self.write_persist_id = Some(self.write_persist_id.map_or(id, |old| old.max(id)));
    }

    /// Executes a committed batch (payloads pinned by the core), signs its
    /// receipts root and reports the state digest back to the core.
    fn execute(&mut self, batch: ExecuteBatch, work: &mut VecDeque<Input>) {
        let requests: Vec<Request> = batch
            .digests
            .iter()
            .map(|d| {
                let r = self.stored_payload(d);
                assert!(
                    r.is_some(),
                    "executing {:?} without payload {d:?}",
                    batch.seq
                );
                r.expect("asserted")
            })
            .collect();
        let record = LoggedBatch {
            time: batch.time,
            digests: batch.digests.clone(),
        };
        self.write_set.put_log(
            batch.seq,
            &codec::encode(&record),
            &codec::encode(&batch.certificate),
        );
        let later = self
            .payloads_logged
            .split_off(&(batch.seq.next(), Digest::ZERO));
        let logged = std::mem::replace(&mut self.payloads_logged, later);
        for (d, r) in batch.digests.iter().zip(&requests) {
            // Written with this seq's PRE-PREPARE (committed before this
            // write set: execution follows the prepared certificate).
            if !logged.contains(&(batch.seq, *d)) {
                self.write_set.put_payload(*d, batch.seq, &codec::encode(r));
            }
        }
        let app_digest = self.apply(batch.seq, batch.time, &requests, &batch.digests, true);
        work.push_back(Input::Executed {
            seq: batch.seq,
            app_digest,
        });
        work.push_back(Input::NextDeadline {
            at: self.machine.next_deadline(),
        });
    }

    /// Runs the state machine on one batch and does the bookkeeping shared
    /// by live execution and replay. Returns the application digest the
    /// core checkpoints: the pulse header's at checkpoint seqs.
    fn apply(
        &mut self,
        seq: SeqNum,
        time: HlcTimestamp,
        requests: &[Request],
        digests: &[Digest],
        live: bool,
    ) -> Digest {
        let outcome = self
            .machine
            .execute_batch_digested(seq, time, requests, digests);
        self.last_time = time;
        let k = self.cfg.consensus.checkpoint_interval;
        let pulse = self.pulse_of(seq);
        if live {
            self.write_set
                .put_receipts(pulse, seq, &codec::encode(&outcome.receipts));
        }
        let (root, signature, evicted) =
            self.certifier
                .executed(seq, outcome.receipts, &self.cfg.key);
        for old in evicted {
            self.expire_seq(old);
        }
        for d in digests {
            self.executed_at.insert(*d, seq);
        }
        self.executed_order.push_back((seq, digests.to_vec()));
        while self.executed_order.len() > self.cfg.limits.batch_cache_max {
            let (_, old) = self.executed_order.pop_front().expect("non-empty");
            for d in old {
                if self.executed_at.get(&d).is_some_and(|s| *s <= seq) {
                    self.executed_at.remove(&d);
                }
            }
        }
        self.chain.roots.push(root);
        let app_digest = if seq.0.is_multiple_of(k) {
            let batches = PulseBatches::new(self.chain.first_seq, &self.chain.roots);
            let header = batches.header(
                self.membership.cluster_id(),
                PulseNumber(seq.0 / k),
                self.machine.state_digest(),
                self.chain.previous,
                time,
            );
            let snapshot = (live && pulse.0.is_multiple_of(SNAPSHOT_PULSE_INTERVAL)).then(|| {
                let started = Instant::now();
                let snapshot = self.machine.transfer_snapshot(SNAPSHOT_CHUNK_BYTES);
                self.metrics
                    .snapshot_seconds
                    .observe(started.elapsed().as_secs_f64());
                snapshot
            });
            let roots = std::mem::take(&mut self.chain.roots);
            self.chain.unstable.insert(seq, (header, roots, snapshot));
            while self.chain.unstable.len() > UNSTABLE_PULSES_MAX {
                self.chain.unstable.pop_first();
            }
            self.chain.previous = header.digest();
            self.chain.first_seq = seq.next();
            header.digest()
        } else {
            // Consensus reads the application digest at checkpoint seqs
            // only; hashing the state's 16 384 bucket digests per batch was
            // a tenth of a replica's CPU.
            Digest::ZERO
        };
        if !live {
            return app_digest;
        }
        self.metrics.committed_batches.inc();
        self.metrics
            .committed_requests
            .inc_by(requests.len() as u64);
        self.metrics.last_executed.set(seq.0 as i64);
        self.broadcast(&PeerMessage::BatchSignature {
            seq,
            receipts_root: root,
            signature,
        });
        let mut waiting = Vec::new();
        for d in digests {
            if let Some(p) = self.pending.get_mut(d) {
                if p.seq.is_none() {
                    p.seq = Some(seq);
                    waiting.push(*d);
                }
            }
        }
        if !waiting.is_empty() {
            self.certifying.insert(seq, waiting);
        }
        let events = self.event_receipts(seq, &outcome.events);
        if !events.is_empty() {
            self.pending_events.insert(seq, events);
        }
        self.try_answer(seq);
        app_digest
    }

    /// The `(client, receipt index)` of each grant or wait end in batch
    /// `seq` whose client has a subscriber.
    fn event_receipts(&self, seq: SeqNum, events: &[ClientEvent]) -> Vec<(ClientId, usize)> {
        let Some(entry) = self.certifier.batch(seq) else {
            return Vec::new();
        };
        events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Granted {
                    client,
                    request,
                    op_index,
                    ..
                }
                | ClientEvent::WaitEnded {
                    client,
                    request,
                    op_index,
                    ..
                } => Some((*client, entry.last_receipt(request, *op_index)?)),
                _ => None,
            })
            .filter(|(client, _)| self.subscribers.contains_key(client))
            .collect()
    }

    /// Answers the submitters and subscribers of batch `seq` whose
    /// signature count is reached.
    fn try_answer(&mut self, seq: SeqNum) {
        let signers = self.certifier.signers(seq);
        if signers == 0 {
            return;
        }
        if let Some(digests) = self.certifying.get(&seq).cloned() {
            let mut left = Vec::new();
            for d in digests {
                let ready = self.pending.get(&d).is_some_and(|p| p.need <= signers);
                if !ready {
                    if self.pending.contains_key(&d) {
                        left.push(d);
                    }
                    continue;
                }
                let p = self.pending.remove(&d).expect("checked");
                let outcome = match self.certifier.reply(seq, d, p.ops, p.need) {
                    Some(reply) => Ok(SubmitOutcome::Replied(reply)),
                    None => Err(ApiError::NotFound),
                };
                for w in p.waiters {
                    self.metrics
                        .commit_latency_seconds
                        .observe(w.since.elapsed().as_secs_f64());
                    self.metrics.replies.inc();
                    let _ = w.answer.send(outcome.clone());
                }
            }
            if left.is_empty() {
                self.certifying.remove(&seq);
            } else {
                self.certifying.insert(seq, left);
            }
        }
        if signers >= self.membership.weak_quorum() {
            if let Some(events) = self.pending_events.remove(&seq) {
                for (client, index) in events {
                    let Some(proof) = self.certifier.batch(seq).and_then(|b| b.proof(index)) else {
                        continue;
                    };
                    self.push_event(client, Event::WaitOutcome(Box::new(proof)));
                }
            }
        }
    }

    fn push_event(&mut self, client: ClientId, event: Event) {
        let Some(subs) = self.subscribers.get_mut(&client) else {
            return;
        };
        subs.retain(|s| match s.try_send(event.clone()) {
            Ok(()) => {
                self.metrics.events.inc();
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.events_dropped.inc();
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        if subs.is_empty() {
            self.subscribers.remove(&client);
        }
    }

    /// Batch `seq` left the cache: its submitters cannot be answered.
    fn expire_seq(&mut self, seq: SeqNum) {
        self.pending_events.remove(&seq);
        for d in self.certifying.remove(&seq).unwrap_or_default() {
            if let Some(p) = self.pending.remove(&d) {
                for w in p.waiters {
                    self.metrics.reply_timeouts.inc();
                    let _ = w.answer.send(Err(ApiError::Timeout));
                }
            }
        }
    }

    /// A stable checkpoint: its CHECKPOINT signatures are the pulse's
    /// quorum certificate. Stored with the snapshot taken at that seq, then
    /// the store collects garbage below it.
    fn stable_checkpoint(
        &mut self,
        seq: SeqNum,
        app_digest: Digest,
        certificate: Vec<(ReplicaId, primitives::Signature)>,
    ) {
        // Older headers stay, without their snapshots, for certificates
        // that form late (`Output::CheckpointCertified`).
        for (_, entry) in self.chain.unstable.range_mut(..seq) {
            entry.2 = None;
        }
        let Some((header, roots, snapshot)) = self.chain.unstable.remove(&seq) else {
            tracing::debug!(seq = seq.0, "stable checkpoint without a local header");
            return;
        };
        if !self.store_pulse(header, roots, app_digest, certificate) {
            return;
        }
        if let Some(snapshot) = snapshot {
            self.write_snapshot(&header, &snapshot.chunks, snapshot.manifest.encode());
        }
    }

    /// Writes the snapshot at `header`'s last seq (chunks and manifest) and
    /// asks for garbage collection below it once written.
    fn write_snapshot(&mut self, header: &PulseHeader, chunks: &[Vec<u8>], manifest: Vec<u8>) {
        let seq = header.last_seq;
        for (i, chunk) in chunks.iter().enumerate() {
            self.write_set.put_snapshot_chunk(seq, i as u32, chunk);
        }
        let meta = SnapshotMeta {
            header: *header,
            transfer_manifest: manifest,
        };
        self.write_set.put_snapshot_manifest(&SnapshotManifest {
            seq,
            chunk_count: chunks.len() as u32,
            state_digest: header.state_digest,
            meta: codec::encode(&meta),
        });
        self.write_gc = Some(StableCheckpoint {
            seq,
            pulse: header.pulse,
        });
    }

    /// A checkpoint below the stable one got its certificate late: store
    /// it as its pulse's quorum certificate (no snapshot, no GC).
    fn checkpoint_certified(
        &mut self,
        seq: SeqNum,
        app_digest: Digest,
        certificate: Vec<(ReplicaId, primitives::Signature)>,
    ) {
        let Some((header, roots, _)) = self.chain.unstable.remove(&seq) else {
            tracing::debug!(seq = seq.0, "late certificate without a local header");
            return;
        };
        self.store_pulse(header, roots, app_digest, certificate);
    }

    /// Stores `header` with the quorum certificate `certificate` under
    /// `root:{pulse}`; false if the certificate does not certify it.
    fn store_pulse(
        &mut self,
        header: PulseHeader,
        roots: Vec<Digest>,
        app_digest: Digest,
        certificate: Vec<(ReplicaId, primitives::Signature)>,
    ) -> bool {
        let seq = header.last_seq;
        if header.digest() != app_digest {
            tracing::error!(
                seq = seq.0,
                "our pulse header differs from the certified one"
            );
            self.metrics.reject("pulse_header_mismatch");
            return false;
        }
        let mut qc = PulseCertificate::new(header);
        for (replica, signature) in certificate {
            if qc.add(&self.membership, replica, signature).is_err() {
                self.metrics.reject("pulse_signature_bad");
            }
        }
        if qc.verify_signatures(&self.membership).is_err() {
            self.metrics.reject("pulse_certificate_short");
            return false;
        }
        let entry = PulseEntry {
            certificate: qc,
            receipts_roots: roots,
        };
        self.write_set
            .put_root(header.pulse, &codec::encode(&entry));
        self.metrics.pulses.inc();
        true
    }

    // ----- Storage --------------------------------------------------------

    /// Hands the pass's writes to the worker unless a commit is in flight
    /// (they then join the next one: group commit).
    fn flush_storage(&mut self) -> Result<(), RuntimeError> {
        if self.storage_busy || (self.write_set.is_empty() && self.write_gc.is_none()) {
            return Ok(());
        }
        let job = Job {
            set: std::mem::take(&mut self.write_set),
            persist_id: self.write_persist_id.take(),
            gc: self.write_gc.take(),
        };
        self.jobs
            .try_send(job)
            .map_err(|_| RuntimeError::Recovery("storage worker gone".into()))?;
        self.storage_busy = true;
        Ok(())
    }

    fn on_storage_done(&mut self, done: Done) -> Result<(), RuntimeError> {
        self.storage_busy = false;
        match done.result {
            Ok(latency) => {
                self.metrics.fsync_seconds.observe(latency.as_secs_f64());
                if let Some(id) = done.persist_id {
                    self.step(Input::PersistAck { id });
                }
                Ok(())
            }
            // A replica that cannot persist must not vote: stop.
            Err(e) => Err(RuntimeError::Storage(e)),
        }
    }

    // ----- Housekeeping -----------------------------------------------------

    fn housekeeping(&mut self) {
        let now = Instant::now();
        if now < self.housekeeping_at {
            return;
        }
        self.housekeeping_at = now + HOUSEKEEPING;
        let expired: Vec<Digest> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(d, _)| *d)
            .collect();
        for d in expired {
            let p = self.pending.remove(&d).expect("listed");
            for w in p.waiters {
                self.metrics.reply_timeouts.inc();
                let _ = w.answer.send(Err(ApiError::Timeout));
            }
        }
        let live: BTreeSet<Digest> = self.pending.keys().copied().collect();
        self.certifying.retain(|_, ds| {
            ds.retain(|d| live.contains(d));
            !ds.is_empty()
        });
        self.subscribers.retain(|_, subs| {
            subs.retain(|s| !s.is_closed());
            !subs.is_empty()
        });
        self.transfer_housekeeping(now);
        self.lockchain_housekeeping(now);
        let (sessions, locks, waiters, messages) = self.machine.sizes();
        self.metrics.sessions.set(sessions as i64);
        self.metrics.locks.set(locks as i64);
        self.metrics.waiters.set(waiters as i64);
        self.metrics.queue_messages.set(messages as i64);
        self.metrics.mempool_requests.set(self.mempool.len() as i64);
        self.metrics.view.set(self.core.view().0 as i64);
        self.metrics
            .stable_checkpoint
            .set(self.core.low_watermark().0 as i64);
        let waiting = self.pending.values().filter(|p| p.seq.is_none()).count();
        self.metrics.pending_requests.set(waiting as i64);
        let g = self.driver.core().stats().clone();
        let d = self.driver.stats().clone();
        for (kind, value) in [
            ("eager", g.gossip_sent),
            ("ihave", g.ihave_sent),
            ("ihave_ids", g.ihave_ids_sent),
            ("graft", g.graft_sent),
            ("prune", g.prune_sent),
            ("prune_suppressed", g.prune_suppressed),
            ("fetch_requests", g.fetch_requests_sent),
            ("fetch_replies", g.fetch_replies_sent),
            ("delivered", g.delivered),
            ("duplicates", g.duplicates),
            ("invalid", g.invalid),
            ("fetches_failed", g.fetches_failed),
            ("send_not_connected", d.send_not_connected),
            ("send_queue_full", d.send_queue_full),
            ("rejected", d.rejected),
        ] {
            self.metrics.gossip_to(kind, value);
        }
    }
}
