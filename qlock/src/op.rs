//! The client-facing operations and their results: the API of QLOCK.
//!
//! An op travels as opaque bytes in `RequestBody::ops` ([`Op::encode`]);
//! its outcome travels as the result bytes of a receipt
//! ([`encode_outcome`]). Both use the one wire codec of `primitives`.

use primitives::{codec, Bytes, ClientId, CodecError, Digest, HlcTimestamp, SeqNum};
use serde::{Deserialize, Serialize};

/// The largest encoded op [`Op::decode`] accepts (a full payload plus its
/// names fits well under it; requests bound ops further).
pub const OP_BYTES_MAX: usize = 1 << 20;

/// The largest encoded outcome [`decode_outcome`] accepts.
pub const OUTCOME_BYTES_MAX: usize = 1 << 22;

/// A fencing token: `(seq, index)` of the grant, ordered lexicographically.
/// `index` counts the tokens issued earlier in the same batch — one for
/// every session created, lock granted (at once or to a waiter), waiter
/// queued and message submitted, in execution order — so tokens strictly
/// increase per resource and cluster-wide, even across resources whose
/// entries were removed while idle (Chubby's sequencer). A storage service
/// protected by a lock refuses writes carrying a smaller token than the
/// largest it has seen.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct FencingToken {
    /// The batch that made the grant.
    pub seq: SeqNum,
    /// Tokens issued earlier in that batch.
    pub index: u32,
}

impl FencingToken {
    /// The token as one integer, `seq << 24 | index`, for storage systems
    /// that compare integers (ordered the same way while `index < 2^24`,
    /// which a batch's bounded size guarantees).
    pub fn as_u64(self) -> u64 {
        (self.seq.0 << 24) | u64::from(self.index)
    }
}

/// A session, named by the fencing token of the op that created it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct SessionId(pub FencingToken);

/// A queue message: the submitting request's digest and the op's index in
/// it. The client can compute it before the reply arrives (`async`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct MessageId {
    /// The submitting request.
    pub request: Digest,
    /// The submit op's index in it.
    pub op_index: u32,
}

/// Exclusive (one holder) or shared (many readers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LockMode {
    /// One holder.
    Exclusive,
    /// Any number of shared holders, no exclusive one.
    Shared,
}

/// Queue priority; claims serve the highest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Priority {
    /// Served first.
    Critical,
    /// Served after Critical.
    High,
    /// The usual.
    Normal,
    /// Served last.
    Low,
}

impl Priority {
    /// All priorities, highest first.
    pub const ALL: [Priority; 4] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];

    /// 0 for Critical … 3 for Low: the ready index sorts by it.
    pub fn rank(self) -> u8 {
        self as u8
    }
}

/// How a submit is acknowledged (DESIGN.md step 8). The state machine
/// treats both alike; the gateway decides when to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Durability {
    /// Answered after commit with 2f + 1 signatures.
    Sync,
    /// Answered on acceptance by the gateway, uncertified.
    Async,
}

/// Every operation a client can ask for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Opens a session owned by the signing client, for `ttl` µs.
    CreateSession {
        /// Lease length, within `[session_ttl_min, session_ttl_max]`.
        ttl: u64,
    },
    /// Extends a session's lease to `now + ttl` (owner only).
    RenewSession {
        /// The session.
        session: SessionId,
        /// The new lease length.
        ttl: u64,
    },
    /// Ends a session: releases its locks, drops its waits, returns its
    /// claims (owner only).
    DestroySession {
        /// The session.
        session: SessionId,
    },
    /// Describes a session (owner only).
    SessionStatus {
        /// The session.
        session: SessionId,
    },
    /// Takes a lock for a session (owner only).
    Acquire {
        /// The owning session.
        session: SessionId,
        /// The lock's name.
        resource: String,
        /// Exclusive or shared.
        mode: LockMode,
        /// `None`: try once. `Some(d)`: wait up to `d` µs, FIFO.
        wait: Option<u64>,
    },
    /// Gives a lock up, or withdraws a wait (holder only).
    Release {
        /// The holding session.
        session: SessionId,
        /// The lock's name.
        resource: String,
    },
    /// Confirms the session still holds the lock and extends the session's
    /// lease to `now + ttl` (locks live as long as their session).
    RenewLock {
        /// The holding session.
        session: SessionId,
        /// The lock's name.
        resource: String,
        /// The new lease length of the session.
        ttl: u64,
    },
    /// Describes a lock: holders, mode, waiters, last token. Anyone.
    Check {
        /// The lock's name.
        resource: String,
    },
    /// Adds a message to a queue.
    Submit {
        /// The queue.
        queue: String,
        /// Its priority.
        priority: Priority,
        /// The payload.
        payload: Bytes,
        /// A repeat of this key within the dedup window returns the first
        /// message's id and adds nothing.
        dedup_key: Option<Bytes>,
        /// How the gateway acknowledges.
        durability: Durability,
    },
    /// Takes the highest-priority oldest ready message for a session,
    /// invisible to others for `visibility_timeout` µs.
    Claim {
        /// The claiming session (owner only).
        session: SessionId,
        /// The queue.
        queue: String,
        /// How long the claim lasts.
        visibility_timeout: u64,
    },
    /// Completes a claimed message: it never returns (claimant only, once).
    Ack {
        /// The claiming session.
        session: SessionId,
        /// The message.
        message: MessageId,
        /// The delivery being acked ([`MessageView::delivery`]): an ack for
        /// an earlier, expired delivery fails.
        delivery: u32,
    },
    /// Gives a claimed message back now (claimant only).
    Nack {
        /// The claiming session.
        session: SessionId,
        /// The message.
        message: MessageId,
        /// The delivery being returned.
        delivery: u32,
    },
    /// Ready, claimed and dead counts of a queue. Anyone.
    Depth {
        /// The queue.
        queue: String,
    },
    /// The message a claim would return now, without claiming. Anyone.
    Peek {
        /// The queue.
        queue: String,
    },
    /// The oldest dead letters of a queue. Anyone.
    PeekDeadLetters {
        /// The queue.
        queue: String,
    },
}

impl Op {
    /// The wire bytes (the codec of `primitives`).
    pub fn encode(&self) -> Bytes {
        Bytes(codec::encode(self))
    }

    /// Decodes an op; bad bytes are a typed error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Op, CodecError> {
        codec::decode(bytes, OP_BYTES_MAX)
    }
}

/// Where a message came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The client that submitted it.
    pub submitter: ClientId,
    /// The batch that accepted it.
    pub seq: SeqNum,
    /// That batch's effective time.
    pub time: HlcTimestamp,
}

/// A message as a claim or a peek shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    /// Its id.
    pub id: MessageId,
    /// Its priority.
    pub priority: Priority,
    /// Its payload.
    pub payload: Bytes,
    /// How many times it has been claimed (this claim included).
    pub delivery: u32,
    /// Where it came from.
    pub provenance: Provenance,
}

/// A lock as [`Op::Check`] describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// The mode of the current holders, if any.
    pub mode: Option<LockMode>,
    /// Holders and their tokens, by session (at most `listing_max`).
    pub holders: Vec<(SessionId, FencingToken)>,
    /// Waiters in FIFO order (at most `listing_max`).
    pub waiters: Vec<(SessionId, LockMode)>,
    /// The token of the latest grant, if the resource has state.
    pub last_token: Option<FencingToken>,
    /// Unavailable until then (µs), after a holder's session expired.
    pub delayed_until: Option<u64>,
}

/// A session as [`Op::SessionStatus`] describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Its owner.
    pub owner: ClientId,
    /// When it expires (µs) unless renewed.
    pub expires_at: u64,
    /// Locks held or waited for.
    pub locks: u32,
    /// Messages claimed and not acked.
    pub claims: u32,
}

/// Message counts of a queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepth {
    /// Ready messages per priority, Critical first.
    pub ready: [u32; 4],
    /// Claimed, not yet acked.
    pub claimed: u32,
    /// In the dead-letter queue.
    pub dead: u32,
}

/// What a successful op returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// A new session.
    SessionCreated {
        /// Its id.
        session: SessionId,
        /// Its expiry (µs).
        expires_at: u64,
    },
    /// The new expiry (µs) of a renewed session.
    Renewed {
        /// The new expiry.
        expires_at: u64,
    },
    /// The op took effect and has nothing to report.
    Done,
    /// A session's description.
    Session(SessionInfo),
    /// The lock is held, with this token.
    Granted {
        /// The fencing token.
        token: FencingToken,
    },
    /// The session waits; a grant (or a timeout) comes later as its own
    /// receipt and event.
    Queued {
        /// Waiters ahead of this one.
        position: u32,
    },
    /// A lock's description.
    Lock(LockInfo),
    /// A submitted (or deduplicated) message.
    Submitted {
        /// Its id.
        id: MessageId,
        /// True when the dedup key matched an earlier message.
        duplicate: bool,
    },
    /// A claimed message.
    Claimed(MessageView),
    /// Nothing ready to claim.
    Empty,
    /// A queue's counts.
    Depth(QueueDepth),
    /// A peek's answer.
    Peeked(Option<MessageView>),
    /// Dead letters, oldest first.
    DeadLetters(Vec<MessageView>),
}

/// Why an op failed. Every failure is typed; none changes state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum OpError {
    /// The op bytes do not decode.
    #[error("op does not decode")]
    Malformed,
    /// The request number is below the client's window.
    #[error("request number below the window")]
    RequestTooOld,
    /// The request number was seen, but its reply left the cache.
    #[error("request already executed; reply no longer cached")]
    ReplyEvicted,
    /// The request number was seen with a different request.
    #[error("request number reused for another request")]
    NumberReused,
    /// Another op of this atomic request failed; nothing took effect.
    #[error("atomic request aborted by op {failed_op}")]
    Aborted {
        /// The op that failed.
        failed_op: u32,
    },
    /// Waiting is not allowed inside an atomic request.
    #[error("waiting acquire inside an atomic request")]
    WaitInAtomic,
    /// No such session (never existed, ended or expired).
    #[error("no such session")]
    NoSuchSession,
    /// The session belongs to another client.
    #[error("session owned by another client")]
    NotOwner,
    /// A parameter is outside its bounds.
    #[error("{what} out of range")]
    OutOfRange {
        /// Which parameter.
        what: String,
    },
    /// A named bound was reached.
    #[error("limit {limit} reached")]
    LimitReached {
        /// The bound's name in [`crate::Config`].
        limit: String,
    },
    /// The lock is taken (or delayed) and the op did not wait.
    #[error("lock busy")]
    WouldBlock,
    /// The session already holds or waits for this lock.
    #[error("session already holds or waits for this lock")]
    AlreadyHeld,
    /// The session neither holds nor waits for this lock.
    #[error("session does not hold this lock")]
    NotHolder,
    /// A wait ran out before the lock was granted.
    #[error("wait timed out")]
    WaitTimedOut,
    /// The waiting session ended before the lock was granted.
    #[error("session ended while waiting")]
    WaitAborted,
    /// No such message, or not claimed by this session in this delivery
    /// (acked, expired, redelivered, dead-lettered).
    #[error("no such claim")]
    NoSuchClaim,
}

/// An op's outcome, as a receipt carries it.
pub type OpOutcome = Result<OpResult, OpError>;

/// The result bytes of a receipt.
pub fn encode_outcome(outcome: &OpOutcome) -> Bytes {
    Bytes(codec::encode(outcome))
}

/// Decodes a receipt's result bytes.
pub fn decode_outcome(bytes: &[u8]) -> Result<OpOutcome, CodecError> {
    codec::decode(bytes, OUTCOME_BYTES_MAX)
}
