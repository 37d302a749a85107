//! The replica state machine: [`Replica::step`] and the state it keeps.
//!
//! The protocol logic is split by concern: `normal` (PRE-PREPARE, PREPARE,
//! COMMIT, execution; PBFT §4.2), `checkpoint` (CHECKPOINT, stability and
//! garbage collection; §4.3), `catchup` (STATUS-driven retransmission,
//! payload fetches and committed-batch catch-up; TOCS §5.2 "retransmission").

mod catchup;
mod checkpoint;
mod normal;
mod payloads;
mod recovery;
mod state_transfer;
mod view_change;

pub use recovery::RecoveredState;

use crate::config::{Config, ConfigError, Mutation};
use crate::io::{Input, Output, PersistId, PersistRecord, TimerKind};
use crate::message::{Batch, Message, PreparedProof, SignedMessage, Status, Vote, WireMessage};
use crate::reject::Rejection;
use primitives::{Digest, Hlc, HlcTimestamp, ReplicaId, SeqNum, Signature, ViewNumber};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// One sequence number's state in the log (PBFT §4.2).
#[derive(Debug, Default)]
struct Slot {
    /// The accepted (or certified) PRE-PREPARE and its batch.
    pre_prepare: Option<(SignedMessage, Batch, Digest)>,
    /// A PRE-PREPARE older than the clock skew allows, waiting for f+1
    /// replicas (the primary included) to vouch for it with PREPAREs.
    stale_pre_prepare: Option<(SignedMessage, Batch, Digest)>,
    /// The PRE-PREPARE's persist was requested (the primary's own: at
    /// proposal).
    pre_prepare_persisting: bool,
    /// The PRE-PREPARE is durable (so PREPARE may be, or was, sent).
    pre_prepare_durable: bool,
    /// PREPAREs by sender.
    prepares: BTreeMap<ReplicaId, (Vote, Signature)>,
    /// COMMITs by sender.
    commits: BTreeMap<ReplicaId, (Vote, Signature)>,
    /// The prepared certificate's persist was requested.
    prepared_persisting: bool,
    /// Our COMMIT was sent.
    commit_sent: bool,
    /// Committed-local (§4.2) or proven by a fetched certificate.
    committed: bool,
    /// The latest prepared certificate for this seq, in any view: what a
    /// VIEW-CHANGE reports (§4.4). Survives view changes.
    prepared_proof: Option<PreparedProof>,
}

/// What a persist acknowledgement unblocks.
#[derive(Clone, Copy, Debug)]
enum Deferred {
    /// The primary's PRE-PREPARE is durable: send it.
    BroadcastPrePrepare(SeqNum, ViewNumber),
    /// The accepted PRE-PREPARE is durable: send PREPARE.
    SendPrepare(SeqNum, ViewNumber),
    /// The prepared certificate is durable: send COMMIT.
    SendCommit(SeqNum, ViewNumber),
    /// Our VIEW-CHANGE is durable: send it.
    SendViewChange(ViewNumber),
    /// The NEW-VIEW is durable: send it and start the view.
    SendNewView(ViewNumber),
}

/// A payload the replica knows of.
#[derive(Clone, Copy, Debug, Default)]
struct Payload {
    /// The driver holds it, validated.
    held: bool,
    /// Slots in the log referencing it.
    refs: u32,
    /// Waiting to be ordered.
    queued: bool,
}

/// A PBFT replica. Feed it inputs with [`Replica::step`]; carry out the
/// outputs it returns.
pub struct Replica {
    cfg: Config,
    view: ViewNumber,
    /// False while changing to `view` (no NEW-VIEW installed yet).
    view_active: bool,
    /// Our VIEW-CHANGE while it is being persisted.
    pending_view_change: Option<SignedMessage>,
    /// The latest VIEW-CHANGE of each replica (ours included).
    view_changes: BTreeMap<ReplicaId, SignedMessage>,
    /// The NEW-VIEW that started `view` (none for view 0).
    new_view: Option<SignedMessage>,
    /// `last_executed` when progress was last seen, and when.
    progress_seq: SeqNum,
    progress_at: u64,
    /// View changes since the last progress (the timeout backs off).
    view_change_attempts: u32,
    hlc: Hlc,
    now: u64,
    out: Vec<Output>,
    /// The stable checkpoint: the low watermark `h`.
    low: SeqNum,
    /// The last seq the primary assigned.
    next_seq: SeqNum,
    last_executed: SeqNum,
    /// The last seq the application reported executed.
    last_applied: SeqNum,
    /// The effective time of `last_executed`.
    last_time: HlcTimestamp,
    log: BTreeMap<SeqNum, Slot>,
    payloads: BTreeMap<Digest, Payload>,
    /// Digests waiting to be ordered, oldest first (lazily pruned: an entry
    /// whose payload is no longer `queued` is skipped).
    queue: VecDeque<Digest>,
    queued: usize,
    /// When the primary proposes a partial batch.
    batch_deadline: Option<u64>,
    /// The application's earliest pending deadline (heartbeats).
    deadline: Option<HlcTimestamp>,
    next_persist: u64,
    deferred: BTreeMap<PersistId, Deferred>,
    /// CHECKPOINT votes above the low watermark, by seq and signer.
    checkpoints: BTreeMap<SeqNum, BTreeMap<ReplicaId, SignedMessage>>,
    /// Our own application digests at checkpoint seqs above `low`.
    own_checkpoints: BTreeMap<SeqNum, Digest>,
    /// The quorum of CHECKPOINTs that made `low` stable.
    stable_certificate: Vec<SignedMessage>,
    /// The last STATUS from each peer.
    peers: Vec<Option<Status>>,
    /// When we last heard anything from each peer (local time).
    last_heard: Vec<u64>,
    /// When we last retransmitted to each peer: at most once per half
    /// status interval, so STATUS (unsigned, cheap to send) cannot make us
    /// send far more than it costs.
    last_served: Vec<u64>,
    /// `last_executed` at the previous status tick (stall detection).
    executed_at_last_tick: SeqNum,
    /// Status ticks so far (rotates fetch targets).
    ticks: u64,
    /// Checkpoint seqs whose divergence was already reported.
    diverged_reported: SeqNum,
    /// Consecutive status ticks without execution progress while behind a
    /// certified checkpoint.
    stalled_ticks: u32,
    /// Own checkpoints at or below `low` still waiting for their quorum
    /// certificate (bounded by `orphan_checkpoints_max`).
    orphans: BTreeMap<SeqNum, Orphan>,
    /// A NEW-VIEW is being installed: no proposal until its log is set up.
    installing_view: bool,
    /// Signatures found valid by [`Replica::preverify`], by signer, signed
    /// digest and signature; each is consumed by the one `verify` it
    /// spares. At most `PREVERIFY_MAX`, cleared at every `preverify`.
    preverified: BTreeSet<(ReplicaId, Digest, [u8; 64])>,
}

/// Signatures [`Replica::preverify`] checks in one batch at most.
pub const PREVERIFY_MAX: usize = 1024;

/// An own checkpoint skipped by a later stable one, still collecting
/// matching votes so its pulse gets a certificate.
#[derive(Debug)]
struct Orphan {
    digest: Digest,
    votes: BTreeMap<ReplicaId, SignedMessage>,
}

impl Replica {
    /// A replica at the initial state (view 0, nothing executed).
    pub fn new(cfg: Config) -> Result<Replica, ConfigError> {
        cfg.validate()?;
        let n = cfg.membership.n();
        Ok(Replica {
            hlc: Hlc::new(cfg.max_clock_skew_micros),
            cfg,
            view: ViewNumber(0),
            view_active: true,
            pending_view_change: None,
            view_changes: BTreeMap::new(),
            new_view: None,
            progress_seq: SeqNum(0),
            progress_at: 0,
            view_change_attempts: 0,
            now: 0,
            out: Vec::new(),
            low: SeqNum(0),
            next_seq: SeqNum(0),
            last_executed: SeqNum(0),
            last_applied: SeqNum(0),
            last_time: HlcTimestamp::default(),
            log: BTreeMap::new(),
            payloads: BTreeMap::new(),
            queue: VecDeque::new(),
            queued: 0,
            batch_deadline: None,
            deadline: None,
            next_persist: 0,
            deferred: BTreeMap::new(),
            checkpoints: BTreeMap::new(),
            own_checkpoints: BTreeMap::new(),
            stable_certificate: Vec::new(),
            peers: vec![None; n],
            last_heard: vec![0; n],
            last_served: vec![0; n],
            executed_at_last_tick: SeqNum(0),
            ticks: 0,
            diverged_reported: SeqNum(0),
            stalled_ticks: 0,
            orphans: BTreeMap::new(),
            installing_view: false,
            preverified: BTreeSet::new(),
        })
    }

    /// Handles one input at local time `now_micros` (microseconds since the
    /// UNIX epoch; the only clock the replica reads) and returns what the
    /// driver must do.
    pub fn step(&mut self, now_micros: u64, input: Input) -> Vec<Output> {
        self.now = self.now.max(now_micros);
        match input {
            Input::Start => {
                // Suspicion counts from the (re)start, not from time zero.
                self.progress_at = self.now;
                self.resend_restored_votes();
                self.on_status_timer();
            }
            Input::RequestReady { digest } => self.on_request_ready(digest),
            Input::Peer { from, message } => self.on_peer(from, message),
            Input::Timer(TimerKind::Batch) => self.try_propose(),
            Input::Timer(TimerKind::Status) => self.on_status_timer(),
            Input::PersistAck { id } => self.on_persist_ack(id),
            Input::PayloadFetched { digest, valid } => self.on_payload_fetched(digest, valid),
            Input::Executed { seq, app_digest } => self.on_executed(seq, app_digest),
            Input::NextDeadline { at } => {
                self.deadline = at;
                self.try_propose();
            }
            Input::CommittedBatch { from, batch } => self.on_committed_batch(from, batch),
            Input::EndorseCheckpoint { seq, app_digest } => {
                self.on_endorse_checkpoint(seq, app_digest)
            }
            Input::StateInstalled {
                seq,
                app_digest,
                time,
                certificate,
            } => self.on_state_installed(seq, app_digest, time, certificate),
        }
        std::mem::take(&mut self.out)
    }

    /// This replica's id.
    pub fn id(&self) -> ReplicaId {
        self.cfg.id
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The current view.
    pub fn view(&self) -> ViewNumber {
        self.view
    }

    /// The last sequence number handed to the application.
    pub fn last_executed(&self) -> SeqNum {
        self.last_executed
    }

    /// The stable checkpoint (low watermark).
    pub fn low_watermark(&self) -> SeqNum {
        self.low
    }

    /// Whether the replica is in its view (not changing views).
    pub fn view_active(&self) -> bool {
        self.view_active
    }

    /// Whether this replica is the primary of its view.
    pub fn is_primary(&self) -> bool {
        self.cfg.membership.primary(self.view) == self.cfg.id
    }

    /// Slots in the log (bounded by the watermark window plus the catch-up
    /// range).
    pub fn log_len(&self) -> usize {
        self.log.len()
    }

    /// Payload digests the replica tracks (bounded by the mempool bound
    /// plus the log's batches).
    pub fn payloads_len(&self) -> usize {
        self.payloads.len()
    }

    /// CHECKPOINT votes held above the low watermark (bounded by
    /// `checkpoint_votes_per_peer_max` per replica).
    pub fn checkpoint_votes_len(&self) -> usize {
        self.checkpoints.values().map(|v| v.len()).sum()
    }

    fn quorum(&self) -> usize {
        if self.cfg.mutation == Mutation::QuorumTwoF {
            // The mutant: 2f, too small for two quorums to share a
            // correct replica.
            return (2 * self.cfg.membership.f()).max(1);
        }
        self.cfg.membership.quorum()
    }

    fn reject(&mut self, from: Option<ReplicaId>, reason: Rejection) {
        self.out.push(Output::Rejected { from, reason });
    }

    fn sign(&self, message: Message) -> SignedMessage {
        message.sign(self.cfg.cluster, &self.cfg.key)
    }

    fn broadcast(&mut self, message: SignedMessage) {
        self.out.push(Output::Broadcast {
            message: WireMessage::Signed(message),
        });
    }

    fn persist(&mut self, record: PersistRecord, then: Deferred) {
        self.next_persist += 1;
        let id = PersistId(self.next_persist);
        self.deferred.insert(id, then);
        self.out.push(Output::Persist { id, record });
    }

    fn set_timer(&mut self, kind: TimerKind, at_micros: u64) {
        self.out.push(Output::SetTimer { kind, at_micros });
    }

    fn on_persist_ack(&mut self, id: PersistId) {
        // Group commit: one acknowledgement covers every id up to `id`.
        while let Some(entry) = self.deferred.first_entry() {
            if *entry.key() > id {
                break;
            }
            let then = entry.remove();
            // A vote of an earlier view is moot after a view change.
            let current = |view: ViewNumber| view == self.view && self.view_active;
            match then {
                Deferred::BroadcastPrePrepare(seq, v) if current(v) => {
                    self.pre_prepare_durable(seq)
                }
                Deferred::SendPrepare(seq, v) if current(v) => self.send_prepare(seq),
                Deferred::SendCommit(seq, v) if current(v) => self.send_commit(seq),
                Deferred::BroadcastPrePrepare(..)
                | Deferred::SendPrepare(..)
                | Deferred::SendCommit(..) => {}
                Deferred::SendViewChange(view) => self.send_view_change(view),
                Deferred::SendNewView(view) => self.send_new_view(view),
            }
        }
    }

    fn on_peer(&mut self, from: ReplicaId, message: WireMessage) {
        if from == self.cfg.id || from.index() >= self.cfg.membership.n() {
            return self.reject(Some(from), Rejection::SenderMismatch);
        }
        self.last_heard[from.index()] = self.now;
        match message {
            WireMessage::Status(status) => self.on_status(from, status),
            WireMessage::Signed(signed) => {
                // Signed messages authenticate themselves, so a peer may
                // forward another's (retransmission, certificates): what
                // counts is the signer, checked against its own key.
                let signer = signed.message.sender(&self.cfg.membership);
                if signer.index() >= self.cfg.membership.n() {
                    return self.reject(Some(from), Rejection::SenderMismatch);
                }
                if signer == self.cfg.id {
                    return self.reject(Some(from), Rejection::Duplicate);
                }
                let from = signer;
                match signed.message.clone() {
                    Message::PrePrepare(pp) => self.on_pre_prepare(from, signed, pp),
                    Message::Prepare(vote) => self.on_prepare(from, vote, signed.signature),
                    Message::Commit(vote) => self.on_commit(from, vote, signed.signature),
                    Message::Checkpoint(c) => self.on_checkpoint(from, c, signed),
                    Message::ViewChange(vc) => self.on_view_change(from, vc, signed),
                    Message::NewView(nv) => self.on_new_view(from, nv, signed),
                }
            }
        }
    }

    /// Checks a signature by `from` (after the cheap checks, so junk costs
    /// no verification), unless [`Replica::preverify`] found it valid.
    fn verify(&mut self, from: ReplicaId, signed: &SignedMessage) -> bool {
        let domain = signed.message.domain();
        let bytes = signed.message.signing_bytes(self.cfg.cluster);
        if !self.preverified.is_empty() {
            let checked = (from, Digest::of(domain, &bytes), signed.signature.0);
            if self.preverified.remove(&checked) {
                return true;
            }
        }
        let key = self.cfg.membership.key(from).copied();
        let ok = key.is_some_and(|k| k.verify(domain, &bytes, &signed.signature).is_ok());
        if !ok {
            self.reject(Some(from), Rejection::BadSignature);
        }
        ok
    }

    /// Checks the signatures of messages about to be stepped in one batch
    /// verification (cheaper per signature than one check each: ed25519
    /// batch verification, BENCHMARKS.md). Only messages that would reach
    /// their signature check now are checked; the valid ones are then not
    /// checked again when stepped. Purely an optimisation: stepping the
    /// same messages without it gives the same outputs (batch and single
    /// checks agree on every input, `primitives::keys`).
    pub fn preverify<'a>(&mut self, messages: impl IntoIterator<Item = &'a WireMessage>) {
        self.preverified.clear();
        let mut items = Vec::new();
        for message in messages {
            if items.len() >= PREVERIFY_MAX {
                break;
            }
            let WireMessage::Signed(signed) = message else {
                continue;
            };
            let from = signed.message.sender(&self.cfg.membership);
            let Some(key) = self.cfg.membership.key(from).copied() else {
                continue;
            };
            if from == self.cfg.id || !self.worth_preverifying(from, &signed.message) {
                continue;
            }
            let domain = signed.message.domain();
            let bytes = signed.message.signing_bytes(self.cfg.cluster);
            items.push((from, key, domain, bytes, signed.signature));
        }
        if items.len() < 2 {
            return; // One signature gains nothing from a batch.
        }
        let refs: Vec<_> = items
            .iter()
            .map(|(_, key, domain, bytes, sig)| (*key, *domain, &bytes[..], *sig))
            .collect();
        let verdicts = primitives::keys::verify_many(&refs);
        for ((from, _, domain, bytes, sig), verdict) in items.iter().zip(verdicts) {
            if verdict.is_ok() {
                self.preverified
                    .insert((*from, Digest::of(*domain, bytes), sig.0));
            }
        }
    }

    /// Whether stepping `message` now would check its signature (the
    /// cheap checks of its handler pass).
    fn worth_preverifying(&self, from: ReplicaId, message: &Message) -> bool {
        match message {
            Message::PrePrepare(pp) => self.pre_prepare_admissible(pp).is_ok(),
            Message::Prepare(vote) => {
                from != self.cfg.membership.primary(vote.view)
                    && self.vote_admissible(from, vote, false).is_ok()
            }
            Message::Commit(vote) => self.vote_admissible(from, vote, true).is_ok(),
            Message::Checkpoint(c) => {
                c.seq > self.low && self.checkpoint_admissible(from, c.seq, message).is_ok()
            }
            Message::ViewChange(_) | Message::NewView(_) => false,
        }
    }
}

/// Rebuilds a signed vote from its stored parts.
fn signed_vote(commit: bool, vote: Vote, signature: Signature) -> SignedMessage {
    let message = if commit {
        Message::Commit(vote)
    } else {
        Message::Prepare(vote)
    };
    SignedMessage { message, signature }
}
