//! The records the tables hold. They are encoded into the state digest and
//! into snapshots, so every field here is part of the replicated state.

use crate::config::Config;
use crate::op::{FencingToken, LockMode, MessageId, Priority, Provenance, SessionId};
use primitives::{Bytes, ClientId, Digest, HlcTimestamp, RequestWindow, SeqNum};
use serde::{Deserialize, Serialize};

/// Counters of what happened, for metrics and the simulator's summary.
/// They are replicated state (covered by the digest) like everything else.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// The last batch executed.
    pub last_seq: Option<SeqNum>,
    /// Its effective time.
    pub last_time: HlcTimestamp,
    /// Ops executed (cached replies not counted).
    pub ops: u64,
    /// Locks granted to a waiter after it waited.
    pub grants_after_wait: u64,
    /// Waiters dropped by their deadline.
    pub wait_timeouts: u64,
    /// Sessions ended by expiry.
    pub session_expiries: u64,
    /// Messages back in ready after a visibility timeout.
    pub redeliveries: u64,
    /// Messages moved to a dead-letter queue.
    pub dead_letters: u64,
    /// Dead letters dropped because their queue's dead-letter bound was hit.
    pub dead_letters_dropped: u64,
    /// Result bytes held in the reply cache.
    pub reply_cache_bytes: u64,
    /// Payload bytes held (ready, claimed and dead messages).
    pub payload_bytes: u64,
}

/// What the state knows of one client key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ClientRecord {
    pub(crate) window: RequestWindow,
    pub(crate) sessions: u32,
    /// Messages it submitted that are neither acked nor dead.
    pub(crate) messages: u32,
    /// Its entries in the reply cache.
    pub(crate) replies: u32,
}

/// The results of an executed request, for a repeat of its number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CachedReply {
    pub(crate) request: Digest,
    pub(crate) results: Vec<Bytes>,
    /// Position in the global eviction order: (batch, request index).
    pub(crate) order: (SeqNum, u32),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Session {
    pub(crate) owner: ClientId,
    pub(crate) expires_at: u64,
    /// Locks held or waited for.
    pub(crate) locks: u32,
    pub(crate) claims: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Lock {
    pub(crate) mode: Option<LockMode>,
    pub(crate) holders: u32,
    pub(crate) waiters: u32,
    pub(crate) last_token: Option<FencingToken>,
    pub(crate) delayed_until: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Waiter {
    pub(crate) session: SessionId,
    pub(crate) client: ClientId,
    pub(crate) mode: LockMode,
    pub(crate) deadline: u64,
    pub(crate) request: Digest,
    pub(crate) op_index: u32,
}

/// A session's relation to a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Role {
    Held,
    /// Waiting, with this ticket (the waiter's key).
    Waiting(FencingToken),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claim {
    pub(crate) session: SessionId,
    pub(crate) until: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Message {
    pub(crate) queue: String,
    pub(crate) priority: Priority,
    pub(crate) payload: Bytes,
    pub(crate) provenance: Provenance,
    pub(crate) delivery: u32,
    /// FIFO position within its priority (the submit's token).
    pub(crate) order: FencingToken,
    pub(crate) claim: Option<Claim>,
}

/// A queue's counts; the queue's entry exists while any is non-zero.
pub(crate) type QueueCounts = crate::op::QueueDepth;

/// Something due at a time. At equal times they run in this variant order,
/// then by id: every replica processes them identically.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum Deadline {
    SessionExpiry(SessionId),
    LockDelay(String),
    WaiterTimeout(String, FencingToken),
    Visibility(MessageId),
}

/// The configuration as a table entry (see `config.rs` for why it is state).
pub(crate) type ConfigEntry = Config;
