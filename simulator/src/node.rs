//! One simulated replica: the real consensus and gossip cores plus the
//! driver's parts they need — a bounded mempool, a disk, and the test
//! application (a hash chain over executed request digests, or qlock).

use consensus::{
    CommittedBatch, Config, Message, PersistId, PersistRecord, Replica, SignedMessage, TimerKind,
};
use gossip::Plumtree;
use lockchain::{PulseBatches, PulseCertificate, PulseHeader, ReceiptTree};
use primitives::{
    Bytes, ClusterId, Digest, Domain, HlcTimestamp, PulseNumber, Receipt, Request, SeqNum,
    ViewNumber,
};
use std::collections::{BTreeMap, BTreeSet};

/// What a replica's disk holds: every record persisted, which of them are
/// durable (acknowledged), and the committed batches it serves to peers.
#[derive(Debug, Default)]
pub struct Disk {
    /// Records written but not yet synced (lost in a crash).
    pub pending: Vec<(PersistId, PersistRecord)>,
    /// Synced records, in order: what a restart recovers.
    pub durable: Vec<PersistRecord>,
    /// The latest stable checkpoint and its certificate (the lockchain's
    /// quorum certificate store).
    pub stable: Option<(SeqNum, Digest, Vec<SignedMessage>)>,
    /// The highest acknowledged id.
    pub durable_id: u64,
    /// Durable PRE-PREPAREs: `(view, seq, batch digest)`.
    pub pre_prepares: BTreeSet<(ViewNumber, SeqNum, Digest)>,
    /// Durable prepared certificates: `(view, seq, batch digest)`.
    pub prepared: BTreeSet<(ViewNumber, SeqNum, Digest)>,
    /// Views of our durable VIEW-CHANGEs.
    pub view_changes: BTreeSet<ViewNumber>,
    /// Views of our durable NEW-VIEWs.
    pub new_views: BTreeSet<ViewNumber>,
    /// Committed batches with their certificates, by seq.
    pub committed: BTreeMap<SeqNum, CommittedBatch>,
    /// Request payloads written with PRE-PREPAREs and executed batches
    /// (the storage layer's payload column family).
    pub payloads: BTreeMap<Digest, Request>,
    /// Records written in total.
    pub records_written: u64,
    /// The lockchain (the storage layer's `root:{pulse:020}` entries): each
    /// certified pulse header with its quorum certificate. Written when the
    /// checkpoint becomes stable or a peer serves a missing pulse; survives
    /// crashes.
    pub lockchain: BTreeMap<PulseNumber, PulseCertificate>,
    /// The snapshot at the latest stable checkpoint (committed batches at
    /// or below it are collected): what a restart starts from and what
    /// state transfers to peers serve.
    pub snapshot: Option<AppSnapshot>,
}

impl Disk {
    /// Makes every pending record up to `id` durable.
    pub fn sync(&mut self, id: PersistId) {
        self.durable_id = self.durable_id.max(id.0);
        let (done, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(i, _)| *i <= id);
        self.pending = rest;
        for (_, record) in done {
            self.durable.push(record.clone());
            match record {
                PersistRecord::PrePrepare(signed) => {
                    if let consensus::Message::PrePrepare(pp) = signed.message {
                        self.pre_prepares
                            .insert((pp.view, pp.seq, pp.batch.digest()));
                    }
                }
                PersistRecord::Prepared {
                    view, seq, batch, ..
                } => {
                    self.prepared.insert((view, seq, batch));
                }
                PersistRecord::ViewChange(signed) => {
                    if let consensus::Message::ViewChange(vc) = signed.message {
                        self.view_changes.insert(vc.view);
                    }
                }
                PersistRecord::NewView(signed) => {
                    if let consensus::Message::NewView(nv) = signed.message {
                        self.new_views.insert(nv.view);
                        // Its re-proposals are the new primary's durable
                        // PRE-PREPAREs.
                        for pp in nv.pre_prepares {
                            if let consensus::Message::PrePrepare(pp) = pp.message {
                                self.pre_prepares
                                    .insert((pp.view, pp.seq, pp.batch.digest()));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Pulse headers a replica keeps computed (certified or not): the oldest
/// are dropped beyond it.
pub const PULSE_HEADERS_MAX: usize = 4096;

/// Executed-request digests per snapshot chunk.
pub const EXECUTED_PER_CHUNK: usize = 64;

/// qlock state bytes per snapshot chunk (small, so transfers have several
/// chunks to get wrong).
pub const SNAPSHOT_CHUNK_BYTES: usize = 2048;

/// What a state transfer receiver checks chunks against; it hashes to the
/// pulse header's state digest.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotManifest {
    /// The hash-chain head (also for qlock, where it is not state).
    pub head: Digest,
    /// The digest of each executed-set chunk.
    pub executed: Vec<Digest>,
    /// qlock's manifest, under a qlock workload.
    pub qlock: Option<qlock::TransferManifest>,
}

impl SnapshotManifest {
    /// The state digest of an application whose state part is `state` (the
    /// head, or qlock's state digest) and whose executed set has chunk
    /// digests `executed`.
    pub fn combine(qlock: bool, state: Digest, executed: &[Digest]) -> Digest {
        let mut bytes = vec![u8::from(qlock)];
        bytes.extend_from_slice(state.as_bytes());
        for d in executed {
            bytes.extend_from_slice(d.as_bytes());
        }
        Digest::of(Domain::Test, &bytes)
    }

    /// The state digest this manifest claims.
    pub fn state_digest(&self) -> Digest {
        match &self.qlock {
            Some(q) => SnapshotManifest::combine(true, q.state_digest(), &self.executed),
            None => SnapshotManifest::combine(false, self.head, &self.executed),
        }
    }

    /// Chunks in all: the executed set's, then qlock's.
    pub fn chunk_count(&self) -> usize {
        self.executed.len() + self.qlock.as_ref().map_or(0, |q| q.chunks.len())
    }
}

/// A snapshot as a replica keeps and serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppSnapshot {
    /// The pulse it ends.
    pub header: PulseHeader,
    /// The manifest.
    pub manifest: SnapshotManifest,
    /// The executed-set chunks, then qlock's.
    pub chunks: Vec<Vec<u8>>,
}

/// The executed set as chunks of sorted digests, and their digests.
fn executed_chunks(executed: &BTreeSet<Digest>) -> (Vec<Vec<u8>>, Vec<Digest>) {
    let all: Vec<Digest> = executed.iter().copied().collect();
    let chunks: Vec<Vec<u8>> = all
        .chunks(EXECUTED_PER_CHUNK)
        .map(primitives::codec::encode)
        .collect();
    let digests = chunks.iter().map(|c| Digest::of(Domain::Test, c)).collect();
    (chunks, digests)
}

/// The lockchain builder of the application (DESIGN.md step 9): the
/// receipts root of every executed batch, and at every checkpoint seq the
/// pulse header over the roots of the batches since the last one,
/// hash-chained to the previous header. Its digest is what consensus signs
/// as the CHECKPOINT (`Input::Executed` at checkpoint seqs), so 2f+1
/// CHECKPOINT signatures are the header's quorum certificate.
#[derive(Debug)]
pub struct Pulses {
    cluster: ClusterId,
    /// `K`: a pulse ends at every multiple of it.
    pub interval: u64,
    /// Receipts roots of the current pulse's batches, by seq.
    roots: BTreeMap<SeqNum, Digest>,
    /// The last header's digest ([`Digest::ZERO`] before the first pulse).
    pub previous: Digest,
    /// Headers computed, by their last seq (bounded by
    /// [`PULSE_HEADERS_MAX`]).
    pub headers: BTreeMap<SeqNum, PulseHeader>,
}

impl Pulses {
    fn new(cluster: ClusterId, interval: u64) -> Pulses {
        assert!(interval > 0, "a checkpoint interval of 0");
        Pulses {
            cluster,
            interval,
            roots: BTreeMap::new(),
            previous: Digest::ZERO,
            headers: BTreeMap::new(),
        }
    }

    /// Batch `seq` executed with `receipts`; at a checkpoint seq the pulse
    /// closes and its header is returned.
    fn executed(
        &mut self,
        seq: SeqNum,
        time: HlcTimestamp,
        receipts: &[Receipt],
        state: Digest,
    ) -> Option<PulseHeader> {
        self.roots.insert(seq, ReceiptTree::new(receipts).root());
        if !seq.0.is_multiple_of(self.interval) {
            return None;
        }
        let first = SeqNum(seq.0 + 1 - self.interval);
        let roots: Vec<Digest> = self.roots.range(first..=seq).map(|(_, r)| *r).collect();
        self.roots.clear();
        if roots.len() as u64 != self.interval {
            // Execution skipped a seq (a broken consensus core, which the
            // simulator's checkers report): no header covers the hole.
            return None;
        }
        let pulse = PulseNumber(seq.0 / self.interval);
        let batches = PulseBatches::new(first, &roots);
        let header = batches.header(self.cluster, pulse, state, self.previous, time);
        self.previous = header.digest();
        self.headers.insert(seq, header);
        while self.headers.len() > PULSE_HEADERS_MAX {
            self.headers.pop_first();
        }
        Some(header)
    }
}

/// The test application: a hash chain over executed requests, skipping a
/// request executed before (as qlock's reply cache would).
#[derive(Debug)]
pub struct App {
    /// The chain head: the state digest.
    pub head: Digest,
    /// The last seq executed.
    pub last_seq: SeqNum,
    /// Its effective time.
    pub last_time: HlcTimestamp,
    /// Requests executed.
    pub executed: BTreeSet<Digest>,
    /// The qlock state machine, under a qlock workload: it executes the
    /// requests and its state digest is the application digest.
    pub machine: Option<qlock::StateMachine>,
    /// The lockchain builder.
    pub pulses: Pulses,
}

impl App {
    /// An empty application: the hash chain, or qlock if `qlock`; its
    /// pulses close every `interval` seqs.
    pub fn new(qlock: bool, cluster: ClusterId, interval: u64) -> App {
        App {
            pulses: Pulses::new(cluster, interval),
            head: Digest::ZERO,
            last_seq: SeqNum(0),
            last_time: HlcTimestamp::default(),
            executed: BTreeSet::new(),
            machine: qlock.then(|| qlock::StateMachine::new(crate::workload::qlock_config())),
        }
    }

    /// Applies a batch whose payloads are in `payloads`; returns the
    /// requests executed for the first time and, under qlock, what the
    /// state machine produced. The caller checked the payloads are there.
    ///
    /// The batch's receipts go into the lockchain: qlock's receipts under
    /// a qlock workload; for the hash chain, one receipt per request
    /// executed for the first time, its result the chain head right after
    /// it (so the receipts commit to the application state too).
    pub fn apply(
        &mut self,
        seq: SeqNum,
        time: HlcTimestamp,
        digests: &[Digest],
        payloads: &BTreeMap<Digest, Request>,
    ) -> (Vec<Digest>, Option<qlock::BatchOutcome>) {
        let mut fresh = Vec::new();
        let mut receipts = Vec::new();
        for d in digests {
            if self.executed.insert(*d) {
                self.head = chain(self.head, d.as_bytes());
                fresh.push(*d);
                receipts.push(Receipt {
                    request: *d,
                    op_index: 0,
                    seq,
                    time,
                    result: Bytes(self.head.as_bytes().to_vec()),
                });
            }
        }
        let mut stamp = seq.0.to_le_bytes().to_vec();
        stamp.extend_from_slice(&time.wall.to_le_bytes());
        stamp.extend_from_slice(&time.logical.to_le_bytes());
        self.head = chain(self.head, &stamp);
        self.last_seq = seq;
        self.last_time = time;
        let outcome = self.machine.as_mut().map(|machine| {
            let (digests, requests): (Vec<Digest>, Vec<Request>) = fresh
                .iter()
                .filter_map(|d| payloads.get(d).map(|r| (*d, r.clone())))
                .unzip();
            machine.execute_batch_digested(seq, time, &requests, &digests)
        });
        if let Some(machine) = &mut self.machine {
            self.head = machine.state_digest();
        }
        if let Some(outcome) = &outcome {
            receipts.clone_from(&outcome.receipts);
        }
        // The header's state digest covers everything later batches depend
        // on (so a transferred state can be checked against it); computed
        // at checkpoint seqs only.
        let state = if seq.0.is_multiple_of(self.pulses.interval) {
            self.state_digest()
        } else {
            self.head
        };
        self.pulses.executed(seq, time, &receipts, state);
        (fresh, outcome)
    }

    /// What a pulse header's state digest commits to: the chain head (or
    /// qlock's state digest) and the set of executed requests, chunked as
    /// a state transfer serves it.
    pub fn state_digest(&mut self) -> Digest {
        let (_, digests) = executed_chunks(&self.executed);
        let state = match &mut self.machine {
            Some(machine) => machine.state_digest(),
            None => self.head,
        };
        SnapshotManifest::combine(self.machine.is_some(), state, &digests)
    }

    /// The state after the checkpoint `header` ends, as chunks a peer can
    /// check one by one.
    pub fn snapshot(&mut self, header: PulseHeader) -> AppSnapshot {
        let (executed, executed_digests) = executed_chunks(&self.executed);
        let qlock = self
            .machine
            .as_mut()
            .map(|m| m.transfer_snapshot(SNAPSHOT_CHUNK_BYTES));
        AppSnapshot {
            header,
            manifest: SnapshotManifest {
                head: self.head,
                executed: executed_digests,
                qlock: qlock.as_ref().map(|q| q.manifest.clone()),
            },
            chunks: executed
                .into_iter()
                .chain(qlock.map(|q| q.chunks).unwrap_or_default())
                .collect(),
        }
    }

    /// The application rebuilt from a complete, checked snapshot.
    pub fn from_snapshot(
        header: &PulseHeader,
        head: Digest,
        executed: BTreeSet<Digest>,
        machine: Option<qlock::StateMachine>,
        interval: u64,
    ) -> App {
        let mut pulses = Pulses::new(header.cluster, interval);
        pulses.previous = header.digest();
        pulses.headers.insert(header.last_seq, *header);
        App {
            head,
            last_seq: header.last_seq,
            last_time: header.time,
            executed,
            machine,
            pulses,
        }
    }

    /// What the replica signs as its CHECKPOINT after `seq`: the pulse
    /// header's digest at a checkpoint seq, else the state digest.
    pub fn checkpoint_digest(&self, seq: SeqNum) -> Digest {
        self.pulses
            .headers
            .get(&seq)
            .map_or(self.head, PulseHeader::digest)
    }

    /// When the application next needs a batch (qlock's next deadline).
    pub fn next_deadline(&self) -> Option<HlcTimestamp> {
        self.machine.as_ref().and_then(|m| m.next_deadline())
    }
}

fn chain(head: Digest, bytes: &[u8]) -> Digest {
    let mut input = head.0.to_vec();
    input.extend_from_slice(bytes);
    Digest::of(Domain::Test, &input)
}

impl App {
    /// The application rebuilt from the stored committed batches (its
    /// snapshot plus log replay), as far as they are contiguous.
    pub fn replay(
        committed: &BTreeMap<SeqNum, CommittedBatch>,
        payloads: &BTreeMap<Digest, Request>,
        blank: App,
    ) -> App {
        let mut app = blank;
        for (seq, batch) in committed {
            if *seq != app.last_seq.next() {
                break;
            }
            let Message::PrePrepare(pp) = &batch.pre_prepare.message else {
                break;
            };
            if pp.batch.digests.iter().any(|d| !payloads.contains_key(d)) {
                break;
            }
            let time = pp.batch.batch_time.max(app.last_time.next_tick());
            app.apply(*seq, time, &pp.batch.digests, payloads);
        }
        app
    }
}

/// The gossip validation hook (ARCHITECTURE.md step 2 at every hop), the
/// replica's own: a disseminated payload is a signed client request that
/// decodes within the limits, names our cluster and carries a valid
/// signature, under its request digest.
pub use gossip::RequestValidator;

/// A replica's gossip core.
pub type Gossip = Plumtree<RequestValidator>;

/// A simulated replica.
pub struct Node {
    /// The consensus core.
    pub core: Replica,
    /// The gossip core (volatile: rebuilt empty at a restart).
    pub gossip: Gossip,
    /// Counts restarts, so gossip timers of an earlier life are ignored
    /// (the gossip core never cancels timers).
    pub incarnation: u64,
    /// Gossip counters of earlier lives (the core's own reset at a crash).
    pub gossip_stats_before: gossip::Stats,
    /// Verified request payloads the core has been told of.
    pub mempool: BTreeMap<Digest, Request>,
    /// The disk.
    pub disk: Disk,
    /// The application.
    pub app: App,
    /// The current deadline of each timer, on the node's clock.
    pub timers: BTreeMap<TimerKind, u64>,
    /// The node's clock offset from virtual time, in microseconds.
    pub clock_offset: i64,
    /// Whether a disk sync is already scheduled.
    pub sync_scheduled: bool,
    /// Whether a lockchain fetch is already scheduled.
    pub lockchain_sync_scheduled: bool,
    /// Snapshots taken at checkpoint seqs, waiting for the checkpoint to
    /// become stable (volatile; bounded).
    pub pending_snapshots: BTreeMap<SeqNum, AppSnapshot>,
    /// A state transfer in progress (volatile).
    pub transfer: Option<crate::sim::Transfer>,
    /// Set if the replica is Byzantine this seed (its adversary).
    pub byzantine: Option<Box<crate::sim::ByzantineRole>>,
    /// Whether it is running (false between a crash and its restart).
    pub up: bool,
    /// Its configuration, to restart it.
    pub config: Config,
}

impl Node {
    /// A node around `core` and `gossip`.
    pub fn new(core: Replica, gossip: Gossip, clock_offset: i64, qlock: bool) -> Node {
        let cluster = core.config().membership.cluster_id();
        let interval = core.config().checkpoint_interval;
        Node {
            config: core.config().clone(),
            up: true,
            core,
            gossip,
            incarnation: 0,
            gossip_stats_before: gossip::Stats::default(),
            mempool: BTreeMap::new(),
            disk: Disk::default(),
            app: App::new(qlock, cluster, interval),
            timers: BTreeMap::new(),
            clock_offset,
            sync_scheduled: false,
            lockchain_sync_scheduled: false,
            pending_snapshots: BTreeMap::new(),
            transfer: None,
            byzantine: None,
        }
    }

    /// A crash: everything volatile is gone, and so are unsynced writes.
    pub fn crash(&mut self) {
        self.up = false;
        let stats = self.gossip_stats();
        self.gossip_stats_before = stats;
        self.mempool.clear();
        self.timers.clear();
        self.disk.pending.clear();
        self.sync_scheduled = false;
        self.lockchain_sync_scheduled = false;
        self.pending_snapshots.clear();
        self.transfer = None;
    }

    /// A restart from the disk: the application replays its committed
    /// batches, the consensus core recovers from its durable records, the
    /// gossip core starts empty (`gossip`).
    pub fn restart(&mut self, gossip: Gossip) {
        self.gossip = gossip;
        self.incarnation += 1;
        let qlock = self.app.machine.is_some();
        let interval = self.config.checkpoint_interval;
        let blank = match &self.disk.snapshot {
            Some(snapshot) => restore_snapshot(snapshot, interval),
            None => App::new(qlock, self.config.membership.cluster_id(), interval),
        };
        self.app = App::replay(&self.disk.committed, &self.disk.payloads, blank);
        let state = consensus::RecoveredState {
            records: self.disk.durable.clone(),
            stable: self.disk.stable.clone(),
            last_executed: self.app.last_seq,
            last_time: self.app.last_time,
            // The CHECKPOINT digest is the pulse header's.
            checkpoints: self
                .app
                .pulses
                .headers
                .iter()
                .map(|(seq, header)| (*seq, header.digest()))
                .collect(),
        };
        self.core = Replica::restore(self.config.clone(), state).expect("valid config");
        self.up = true;
    }

    /// Gossip counters over every life of the node.
    pub fn gossip_stats(&self) -> gossip::Stats {
        let a = &self.gossip_stats_before;
        let b = self.gossip.stats();
        gossip::Stats {
            gossip_sent: a.gossip_sent + b.gossip_sent,
            ihave_sent: a.ihave_sent + b.ihave_sent,
            ihave_ids_sent: a.ihave_ids_sent + b.ihave_ids_sent,
            graft_sent: a.graft_sent + b.graft_sent,
            prune_sent: a.prune_sent + b.prune_sent,
            prune_suppressed: a.prune_suppressed + b.prune_suppressed,
            fetch_requests_sent: a.fetch_requests_sent + b.fetch_requests_sent,
            fetch_replies_sent: a.fetch_replies_sent + b.fetch_replies_sent,
            delivered: a.delivered + b.delivered,
            duplicates: a.duplicates + b.duplicates,
            invalid: a.invalid + b.invalid,
            missing_dropped: a.missing_dropped + b.missing_dropped,
            missing_expired: a.missing_expired + b.missing_expired,
            ihave_ids_dropped: a.ihave_ids_dropped + b.ihave_ids_dropped,
            fetches_failed: a.fetches_failed + b.fetches_failed,
            answers_refused: a.answers_refused + b.answers_refused,
        }
    }

    /// The node's local reading of virtual time `now`.
    pub fn local(&self, now: u64) -> u64 {
        now.saturating_add_signed(self.clock_offset)
    }

    /// The virtual time at which the node's clock reads `local`.
    pub fn global(&self, local: u64) -> u64 {
        local.saturating_add_signed(-self.clock_offset)
    }
}

/// The application from a snapshot of our own disk (already checked when
/// it was taken or transferred).
fn restore_snapshot(snapshot: &AppSnapshot, interval: u64) -> App {
    let executed_chunks = snapshot.manifest.executed.len();
    let mut executed = BTreeSet::new();
    for chunk in &snapshot.chunks[..executed_chunks] {
        let digests: Vec<Digest> =
            primitives::codec::decode(chunk, primitives::codec::FRAME_BYTES_MAX)
                .expect("our own snapshot decodes");
        executed.extend(digests);
    }
    let machine = snapshot.manifest.qlock.as_ref().map(|_| {
        qlock::StateMachine::restore(&snapshot.chunks[executed_chunks..])
            .expect("our own snapshot restores")
    });
    App::from_snapshot(
        &snapshot.header,
        snapshot.manifest.head,
        executed,
        machine,
        interval,
    )
}
