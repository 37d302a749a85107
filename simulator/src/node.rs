//! One simulated replica: the real consensus core plus the driver's parts
//! it needs — a bounded mempool, a disk, and the test application (a hash
//! chain over executed request digests).

use consensus::{
    CommittedBatch, Config, Message, PersistId, PersistRecord, Replica, SignedMessage, TimerKind,
};
use primitives::{Digest, Domain, HlcTimestamp, Request, SeqNum, ViewNumber};
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
}

impl App {
    /// An empty application: the hash chain, or qlock if `qlock`.
    pub fn new(qlock: bool) -> App {
        App {
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
    pub fn apply(
        &mut self,
        seq: SeqNum,
        time: HlcTimestamp,
        digests: &[Digest],
        payloads: &BTreeMap<Digest, Request>,
    ) -> (Vec<Digest>, Option<qlock::BatchOutcome>) {
        let mut fresh = Vec::new();
        for d in digests {
            if self.executed.insert(*d) {
                self.head = chain(self.head, d.as_bytes());
                fresh.push(*d);
            }
        }
        let mut stamp = seq.0.to_le_bytes().to_vec();
        stamp.extend_from_slice(&time.wall.to_le_bytes());
        stamp.extend_from_slice(&time.logical.to_le_bytes());
        self.head = chain(self.head, &stamp);
        self.last_seq = seq;
        self.last_time = time;
        let outcome = self.machine.as_mut().map(|machine| {
            let requests: Vec<Request> = fresh
                .iter()
                .filter_map(|d| payloads.get(d).cloned())
                .collect();
            machine.execute_batch(seq, time, &requests)
        });
        if let Some(machine) = &self.machine {
            self.head = machine.state_digest();
        }
        (fresh, outcome)
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
        qlock: bool,
    ) -> App {
        let mut app = App::new(qlock);
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

/// A simulated replica.
pub struct Node {
    /// The consensus core.
    pub core: Replica,
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
    /// Whether it is running (false between a crash and its restart).
    pub up: bool,
    /// Its configuration, to restart it.
    pub config: Config,
}

impl Node {
    /// A node around `core`.
    pub fn new(core: Replica, clock_offset: i64, qlock: bool) -> Node {
        Node {
            config: core.config().clone(),
            up: true,
            core,
            mempool: BTreeMap::new(),
            disk: Disk::default(),
            app: App::new(qlock),
            timers: BTreeMap::new(),
            clock_offset,
            sync_scheduled: false,
        }
    }

    /// A crash: everything volatile is gone, and so are unsynced writes.
    pub fn crash(&mut self) {
        self.up = false;
        self.mempool.clear();
        self.timers.clear();
        self.disk.pending.clear();
        self.sync_scheduled = false;
    }

    /// A restart from the disk: the application replays its committed
    /// batches, the consensus core recovers from its durable records.
    pub fn restart(&mut self) {
        let qlock = self.app.machine.is_some();
        self.app = App::replay(&self.disk.committed, &self.disk.payloads, qlock);
        let state = consensus::RecoveredState {
            records: self.disk.durable.clone(),
            stable: self.disk.stable.clone(),
            last_executed: self.app.last_seq,
            last_time: self.app.last_time,
        };
        self.core = Replica::restore(self.config.clone(), state).expect("valid config");
        self.up = true;
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
