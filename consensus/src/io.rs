//! What the driver feeds a replica and what the replica asks of it.

use crate::message::{CommittedBatch, SignedMessage, WireMessage};
use crate::reject::Rejection;
use primitives::{Digest, HlcTimestamp, ReplicaId, SeqNum, Signature, ViewNumber};
use serde::{Deserialize, Serialize};

/// Names one persist request. Ids increase; an acknowledgement of id `i`
/// covers every persist with an id `≤ i` (group commit: one fsync per pass
/// of the event loop acknowledges all of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PersistId(pub u64);

/// The replica's timers. Setting one replaces its earlier deadline; a timer
/// that fires late or spuriously is harmless.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TimerKind {
    /// The primary's batch delay ran out: propose a partial batch.
    Batch,
    /// Time to broadcast STATUS, retry fetches and retransmit.
    Status,
}

/// An input to [`crate::Replica::step`].
#[derive(Clone, Debug)]
pub enum Input {
    /// The replica starts (or restarts): arms its timers.
    Start,
    /// A request whose payload the driver holds and has verified (shape and
    /// signature) entered the mempool. The driver keeps the payload until
    /// the replica releases it ([`Output::Release`]).
    RequestReady {
        /// The request digest.
        digest: Digest,
    },
    /// A message from a peer, authenticated by the transport as `from`.
    Peer {
        /// The transport-level sender.
        from: ReplicaId,
        /// The message.
        message: WireMessage,
    },
    /// A timer fired.
    Timer(TimerKind),
    /// Every persist with an id `≤ id` is durable.
    PersistAck {
        /// The highest durable id.
        id: PersistId,
    },
    /// A payload asked for with [`Output::FetchPayloads`] arrived. `valid`
    /// says whether it decoded, matched the digest and carried a valid
    /// client signature. A valid one is now held like a mempool entry.
    PayloadFetched {
        /// The request digest.
        digest: Digest,
        /// Whether the payload is valid.
        valid: bool,
    },
    /// The application executed `seq` ([`Output::Execute`]) and its state
    /// digest is now `app_digest` (the pulse header digest at checkpoint
    /// seqs). Must arrive in seq order.
    Executed {
        /// The batch executed.
        seq: SeqNum,
        /// The application's digest after it.
        app_digest: Digest,
    },
    /// The application's earliest pending deadline (a lease, waiter,
    /// visibility timeout or pulse), in effective time; `None` if there is
    /// none. Once the local clock passes it with no batch pending, the
    /// primary proposes an empty heartbeat batch so effective time moves
    /// past it, and a backup that sees no such batch suspects the primary
    /// (DESIGN.md step 5).
    NextDeadline {
        /// The deadline.
        at: Option<HlcTimestamp>,
    },
    /// The driver installed the application state certified at checkpoint
    /// `seq` ([`Output::FetchState`]): snapshot fetched, every chunk checked
    /// against the certified digest. The replica continues from there.
    StateInstalled {
        /// The checkpoint.
        seq: SeqNum,
        /// Its certified application digest.
        app_digest: Digest,
        /// The effective time of batch `seq` (the next batch's effective
        /// time is above it).
        time: HlcTimestamp,
        /// The checkpoint's quorum certificate as the serving peer sent it
        /// (`(signer, CHECKPOINT signature)`): checked here, so a state
        /// newer than any checkpoint this replica heard of can be installed.
        certificate: Vec<(ReplicaId, Signature)>,
    },
    /// The driver vouches that the checkpoint at `seq` (at or below the
    /// stable one, never computed here: a state transfer skipped it) has
    /// `app_digest`, because a certified later pulse header hash-links to
    /// it. The replica signs that CHECKPOINT and collects the others' like
    /// an orphan's, so the skipped pulse still gets its quorum certificate
    /// even while `f` replicas withhold theirs.
    EndorseCheckpoint {
        /// The checkpoint.
        seq: SeqNum,
        /// Its digest, as the certified successor names it.
        app_digest: Digest,
    },
    /// A committed batch asked for with [`Output::FetchCommitted`].
    CommittedBatch {
        /// The peer that served it.
        from: ReplicaId,
        /// The batch and its certificate (checked by the replica).
        batch: CommittedBatch,
    },
}

/// What must be on disk before the vote that depends on it is sent
/// (DESIGN.md step 6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PersistRecord {
    /// An accepted (or, at the primary, proposed) PRE-PREPARE. The driver
    /// persists the payloads of its digests with it.
    PrePrepare(SignedMessage),
    /// A prepared certificate: the PRE-PREPARE's `(view, seq, digest)` and
    /// the matching PREPAREs.
    Prepared {
        /// The view.
        view: ViewNumber,
        /// The sequence number.
        seq: SeqNum,
        /// The batch digest.
        batch: Digest,
        /// The quorum of PREPAREs (the replica's own included).
        prepares: Vec<SignedMessage>,
    },
    /// Our VIEW-CHANGE, before it is sent: a restarted replica must not
    /// send a different one for the same view.
    ViewChange(SignedMessage),
    /// The new primary's NEW-VIEW (its re-proposals), before it is sent.
    NewView(SignedMessage),
}

/// A committed batch to execute, strictly in seq order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecuteBatch {
    /// The sequence number.
    pub seq: SeqNum,
    /// The effective time: `max(batch_time, previous effective + 1 tick)`.
    pub time: HlcTimestamp,
    /// The requests, in order. Every payload is held by the driver.
    pub digests: Vec<Digest>,
    /// The proof it committed; the driver stores it by seq and serves it to
    /// lagging peers.
    pub certificate: CommittedBatch,
}

/// An output of [`crate::Replica::step`], to be carried out by the driver.
#[derive(Clone, Debug)]
pub enum Output {
    /// Send a message to one peer.
    Send {
        /// The peer.
        to: ReplicaId,
        /// The message.
        message: WireMessage,
    },
    /// Send a message to every other replica.
    Broadcast {
        /// The message.
        message: WireMessage,
    },
    /// Persist a record durably, then acknowledge with [`Input::PersistAck`].
    Persist {
        /// Its id.
        id: PersistId,
        /// The record.
        record: PersistRecord,
    },
    /// Fire [`Input::Timer`]`(kind)` at `at_micros` (replacing an earlier
    /// deadline of the same kind).
    SetTimer {
        /// Which timer.
        kind: TimerKind,
        /// When, on the same clock as `now_micros`.
        at_micros: u64,
    },
    /// Fetch these payloads by digest, preferably from `hint`; answer with
    /// [`Input::PayloadFetched`].
    FetchPayloads {
        /// The missing payloads.
        digests: Vec<Digest>,
        /// A peer likely to hold them.
        hint: ReplicaId,
    },
    /// The replica no longer needs these payloads: the driver may drop them.
    /// Until then it must keep every payload it reported (this is the pin:
    /// payloads of in-flight batches are never released).
    Release {
        /// The payloads.
        digests: Vec<Digest>,
    },
    /// Ask `from` for its committed batches `first..=last` (served from its
    /// store of [`ExecuteBatch::certificate`]s); answer with
    /// [`Input::CommittedBatch`].
    FetchCommitted {
        /// The peer.
        from: ReplicaId,
        /// The first seq wanted.
        first: SeqNum,
        /// The last seq wanted.
        last: SeqNum,
    },
    /// Execute a committed batch.
    Execute(ExecuteBatch),
    /// This replica is behind a certified checkpoint and cannot catch up
    /// batch by batch: fetch the application state certified at `seq`
    /// (chunked, each chunk checked against `app_digest`) from peers,
    /// install it, then answer [`Input::StateInstalled`]. Repeated while the
    /// replica stays behind; a newer request supersedes an older one.
    FetchState {
        /// The lowest checkpoint wanted.
        seq: SeqNum,
        /// The application digest a quorum certified there, if this
        /// replica holds that quorum; `None` when the target comes from
        /// peers' STATUS (f + 1 of them report a stable checkpoint that
        /// high): the served snapshot's quorum certificate is then all the
        /// proof, and the replica checks it at [`Input::StateInstalled`].
        app_digest: Option<Digest>,
    },
    /// A checkpoint below the stable one got its quorum certificate late
    /// (a later checkpoint became stable first). Nothing changes for
    /// consensus; the certificate is that pulse's quorum certificate.
    CheckpointCertified {
        /// The checkpoint.
        seq: SeqNum,
        /// The application digest a quorum signed.
        app_digest: Digest,
        /// `(signer, CheckpointStatement signature)`, a quorum of them.
        certificate: Vec<(ReplicaId, Signature)>,
    },
    /// A checkpoint became stable: the log below it is gone. The
    /// certificate is the pulse's quorum certificate.
    StableCheckpoint {
        /// The checkpoint.
        seq: SeqNum,
        /// The application digest a quorum signed.
        app_digest: Digest,
        /// `(signer, CheckpointStatement signature)`, a quorum of them.
        certificate: Vec<(ReplicaId, Signature)>,
    },
    /// A quorum certified an application digest that differs from ours at
    /// the same seq: this replica's state is wrong (nondeterministic
    /// application or corruption) and must be repaired by state transfer.
    StateDiverged {
        /// The checkpoint.
        seq: SeqNum,
        /// Our digest.
        local: Digest,
        /// The certified one.
        certified: Digest,
    },
    /// A new view is installed (the driver counts view changes).
    ViewInstalled {
        /// The view.
        view: ViewNumber,
    },
    /// An input was refused; the driver counts these by
    /// [`Rejection::name`].
    Rejected {
        /// The peer it came from, if any.
        from: Option<ReplicaId>,
        /// Why.
        reason: Rejection,
    },
}
