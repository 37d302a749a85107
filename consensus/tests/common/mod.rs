//! A minimal in-memory driver for tests: a reliable network that can be
//! told to drop, instant (or withheld) persist acknowledgements, and an
//! application whose digest is a hash chain of executed batches.

#![allow(dead_code)]

use consensus::{Config, ExecuteBatch, Input, Output, PersistId, Replica, TimerKind, WireMessage};
use primitives::{Digest, Domain, KeyPair, Membership, ReplicaId, SeqNum};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Virtual time starts here.
pub const T0: u64 = 1_800_000_000_000_000;

pub fn keys(n: usize) -> Vec<KeyPair> {
    (0..n)
        .map(|i| KeyPair::from_seed(&[i as u8 + 1; 32]))
        .collect()
}

pub fn membership(keys: &[KeyPair]) -> Membership {
    Membership::new("test", keys.iter().map(KeyPair::public).collect()).unwrap()
}

/// Small constants so checkpoints and watermarks are reached quickly.
pub fn config(keys: &[KeyPair], id: usize) -> Config {
    let mut cfg = Config::new(membership(keys), ReplicaId(id as u16), keys[id].clone());
    cfg.checkpoint_interval = 4;
    cfg.watermark_window = 8;
    cfg.batch_size_max = 4;
    cfg.batch_delay_micros = 1_000;
    // The tests count batches and seqs: batching by size and delay only
    // (adaptive batching has its own test).
    cfg.propose_when_idle = false;
    cfg.max_clock_skew_micros = 100_000;
    cfg.status_interval_micros = 10_000;
    cfg.view_change_timeout_micros = 100_000;
    cfg.mempool_digests_max = 64;
    cfg.checkpoint_votes_per_peer_max = 3;
    cfg
}

pub fn request(i: u64) -> Digest {
    Digest::of(Domain::Test, &i.to_le_bytes())
}

pub struct Cluster {
    pub replicas: Vec<Replica>,
    pub now: u64,
    pub network: VecDeque<(usize, usize, WireMessage)>,
    pub executed: Vec<Vec<ExecuteBatch>>,
    pub outputs: Vec<Vec<Output>>,
    pub timers: Vec<BTreeMap<TimerKind, u64>>,
    pub app: Vec<Digest>,
    /// Replicas whose links are cut (messages to and from them dropped).
    pub cut: BTreeSet<usize>,
    /// Persists waiting for an acknowledgement, per replica.
    pub unacked: Vec<Option<PersistId>>,
    pub auto_ack: bool,
    /// Messages for which this returns true are dropped.
    pub drop_if: fn(&WireMessage) -> bool,
    /// Before each delivery, the receiver batch-checks the signatures of
    /// that message and of every later one queued to it
    /// (`Replica::preverify`, as the node does once per pass).
    pub preverify: bool,
    /// The application digest after each executed or installed seq.
    pub app_at: Vec<BTreeMap<SeqNum, Digest>>,
    /// Replicas serve committed batches only above their stable
    /// checkpoint, like a store that collected its log.
    pub gc_log: bool,
    /// State transfers each replica completed.
    pub state_transfers: Vec<u64>,
    /// Requested state transfers, carried out once the current input's
    /// work is done (as a real driver's transfer completes later).
    pending_installs: Vec<(usize, SeqNum, Option<Digest>)>,
}

impl Cluster {
    pub fn new(n: usize) -> Cluster {
        let keys = keys(n);
        let replicas = (0..n)
            .map(|i| Replica::new(config(&keys, i)).unwrap())
            .collect();
        Cluster::with(replicas)
    }

    pub fn with(replicas: Vec<Replica>) -> Cluster {
        let n = replicas.len();
        let mut c = Cluster {
            replicas,
            now: T0,
            network: VecDeque::new(),
            executed: vec![Vec::new(); n],
            outputs: vec![Vec::new(); n],
            timers: vec![BTreeMap::new(); n],
            app: vec![Digest::ZERO; n],
            cut: BTreeSet::new(),
            unacked: vec![None; n],
            auto_ack: true,
            drop_if: |_| false,
            preverify: false,
            app_at: vec![BTreeMap::new(); n],
            gc_log: false,
            state_transfers: vec![0; n],
            pending_installs: Vec::new(),
        };
        for i in 0..n {
            c.step(i, Input::Start);
        }
        // The first STATUS round: the primary proposes only while it hears
        // from a quorum.
        c.deliver_all();
        c
    }

    /// Feeds an input and carries out the outputs (recording them).
    pub fn step(&mut self, i: usize, input: Input) {
        let mut work = VecDeque::from([input]);
        while let Some(input) = work.pop_front() {
            let outputs = self.replicas[i].step(self.now, input);
            for o in outputs {
                self.apply(i, &o, &mut work);
                self.outputs[i].push(o);
            }
        }
        for (i, seq, digest) in std::mem::take(&mut self.pending_installs) {
            self.install(i, seq, digest);
        }
    }

    /// Installs the state at `seq` from a peer holding it, unless the
    /// replica got there meanwhile (then the transfer is moot).
    fn install(&mut self, i: usize, seq: SeqNum, wanted: Option<Digest>) {
        if self.replicas[i].last_executed() >= seq {
            return;
        }
        let n = self.replicas.len();
        let Some(j) = (0..n).find(|j| {
            *j != i
                && self.app_at[*j]
                    .get(&seq)
                    .is_some_and(|d| wanted.is_none_or(|w| w == *d))
        }) else {
            return;
        };
        let app_digest = self.app_at[j][&seq];
        let time = self.executed[j]
            .iter()
            .find(|b| b.seq == seq)
            .map(|b| b.time)
            .expect("a served state was executed");
        self.app[i] = app_digest;
        self.app_at[i].insert(seq, app_digest);
        self.state_transfers[i] += 1;
        let certificate = self.outputs[j]
            .iter()
            .rev()
            .find_map(|o| match o {
                Output::StableCheckpoint {
                    seq: s,
                    certificate,
                    ..
                } if *s == seq => Some(certificate.clone()),
                _ => None,
            })
            .unwrap_or_default();
        self.step(
            i,
            Input::StateInstalled {
                seq,
                app_digest,
                time,
                certificate,
            },
        );
    }

    fn apply(&mut self, i: usize, o: &Output, work: &mut VecDeque<Input>) {
        let n = self.replicas.len();
        match o {
            Output::Send { to, message } => {
                self.network.push_back((i, to.index(), message.clone()))
            }
            Output::Broadcast { message } => {
                for j in (0..n).filter(|j| *j != i) {
                    self.network.push_back((i, j, message.clone()));
                }
            }
            Output::Persist { id, .. } => {
                if self.auto_ack {
                    work.push_back(Input::PersistAck { id: *id });
                } else {
                    self.unacked[i] = Some(*id);
                }
            }
            Output::SetTimer { kind, at_micros } => {
                self.timers[i].insert(*kind, *at_micros);
            }
            Output::FetchPayloads { digests, .. } => {
                for d in digests {
                    work.push_back(Input::PayloadFetched {
                        digest: *d,
                        valid: true,
                    });
                }
            }
            Output::Execute(batch) => {
                let mut bytes = self.app[i].0.to_vec();
                bytes.extend_from_slice(&batch.seq.0.to_le_bytes());
                for d in &batch.digests {
                    bytes.extend_from_slice(d.as_bytes());
                }
                self.app[i] = Digest::of(Domain::Test, &bytes);
                self.app_at[i].insert(batch.seq, self.app[i]);
                self.executed[i].push(batch.clone());
                work.push_back(Input::Executed {
                    seq: batch.seq,
                    app_digest: self.app[i],
                });
            }
            Output::FetchState { seq, app_digest } => {
                // Any peer that holds the certified state at `seq` serves
                // it (the chunking is the driver's business, not tested
                // here).
                self.pending_installs.push((i, *seq, *app_digest));
            }
            Output::FetchCommitted { from, first, last } => {
                let low = self.replicas[from.index()].low_watermark();
                let gc = self.gc_log;
                let served: Vec<_> = self.executed[from.index()]
                    .iter()
                    .filter(|b| !gc || b.seq > low)
                    .filter(|b| b.seq >= *first && b.seq <= *last)
                    .map(|b| b.certificate.clone())
                    .collect();
                for batch in served {
                    work.push_back(Input::CommittedBatch { from: *from, batch });
                }
            }
            _ => {}
        }
    }

    /// Every replica learns of the request digests.
    pub fn submit(&mut self, digests: impl IntoIterator<Item = Digest>) {
        for d in digests {
            for i in 0..self.replicas.len() {
                self.step(i, Input::RequestReady { digest: d });
            }
        }
    }

    /// Delivers messages until the network is empty.
    pub fn deliver_all(&mut self) {
        while let Some((from, to, message)) = self.network.pop_front() {
            if self.cut.contains(&from) || self.cut.contains(&to) || (self.drop_if)(&message) {
                continue;
            }
            if self.preverify {
                let queued = self.network.iter().filter(|(_, t, _)| *t == to);
                let ahead: Vec<WireMessage> = std::iter::once(message.clone())
                    .chain(queued.map(|(_, _, m)| m.clone()))
                    .collect();
                self.replicas[to].preverify(&ahead);
            }
            let from = ReplicaId(from as u16);
            self.step(to, Input::Peer { from, message });
        }
    }

    /// Advances time by `micros`, firing due timers, then delivers.
    pub fn advance(&mut self, micros: u64) {
        self.now += micros;
        for i in 0..self.replicas.len() {
            let due: Vec<TimerKind> = self.timers[i]
                .iter()
                .filter(|(_, at)| **at <= self.now)
                .map(|(k, _)| *k)
                .collect();
            for kind in due {
                self.timers[i].remove(&kind);
                self.step(i, Input::Timer(kind));
            }
        }
        self.deliver_all();
    }

    /// Runs `rounds` of 1 ms steps.
    pub fn run(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.advance(1_000);
        }
    }

    pub fn executed_seqs(&self, i: usize) -> Vec<SeqNum> {
        self.executed[i].iter().map(|b| b.seq).collect()
    }

    pub fn views_installed(&self, i: usize) -> Vec<primitives::ViewNumber> {
        self.outputs[i]
            .iter()
            .filter_map(|o| match o {
                Output::ViewInstalled { view } => Some(*view),
                _ => None,
            })
            .collect()
    }

    pub fn rejections(&self, i: usize) -> Vec<consensus::Rejection> {
        self.outputs[i]
            .iter()
            .filter_map(|o| match o {
                Output::Rejected { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }
}
