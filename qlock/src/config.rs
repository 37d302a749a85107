//! Every bound of the state machine, by name.
//!
//! The configuration is part of the replicated state (it is covered by the
//! state digest and travels in snapshots): replicas configured differently
//! would compute different results, and the digest makes that visible at
//! the first checkpoint instead of silently diverging.

use serde::{Deserialize, Serialize};

/// One second in microseconds, the unit of every time quantity here.
pub const SECOND_US: u64 = 1_000_000;

/// The limits and time constants of the state machine. Time quantities are
/// microseconds of effective time (`HlcTimestamp::wall`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Distinct client keys the state remembers (request windows, counters).
    /// New keys are free, so this is the flood bound: when it is reached,
    /// requests from unknown keys are refused. Default 100 000.
    pub clients_max: u32,
    /// Live sessions of one client. Default 64.
    pub sessions_per_client_max: u32,
    /// Live sessions in total. Default 100 000.
    pub sessions_max: u32,
    /// Shortest session TTL: above a view change's duration plus twice the
    /// clock skew (DESIGN.md step 5). Default 5 s.
    pub session_ttl_min: u64,
    /// Longest session TTL. Default 1 h.
    pub session_ttl_max: u64,
    /// Locks one session holds or waits for. Default 256.
    pub locks_per_session_max: u32,
    /// Lock resources with any state (holders, waiters or a lock-delay).
    /// Default 100 000.
    pub resources_max: u32,
    /// Waiters queued on one resource. Default 1 024.
    pub waiters_per_resource_max: u32,
    /// Waiters on all resources together. Default 100 000.
    pub waiters_max: u32,
    /// Longest wait a waiter may ask for. Default 10 min.
    pub wait_max: u64,
    /// Bytes of a resource or queue name. Default 256.
    pub name_bytes_max: u32,
    /// How long a resource stays unavailable after a holder's session
    /// *expired* (not after a clean release or destroy): Chubby's
    /// lock-delay. Should be at least the clock skew. 0 disables it.
    /// Default 2 s.
    pub lock_delay: u64,
    /// Queues with any messages (ready, claimed or dead). Default 10 000.
    pub queues_max: u32,
    /// Messages in one queue, ready plus claimed. Default 100 000.
    pub queue_depth_max: u32,
    /// Messages held in total, ready plus claimed. Default 1 000 000.
    pub messages_max: u32,
    /// Outstanding (unacknowledged) messages one client submitted.
    /// Default 10 000.
    pub messages_per_client_max: u32,
    /// Bytes of one message payload. Default 64 KiB.
    pub payload_bytes_max: u32,
    /// Payload bytes held in total (ready, claimed and dead).
    /// Default 1 GiB.
    pub payload_bytes_total_max: u64,
    /// Messages one session has claimed and not yet acked. Default 1 024.
    pub claims_per_session_max: u32,
    /// Shortest visibility timeout of a claim. Default 1 s.
    pub visibility_timeout_min: u64,
    /// Longest visibility timeout of a claim. Default 12 h.
    pub visibility_timeout_max: u64,
    /// A message delivered this many times and not acked goes to the
    /// dead-letter queue instead of back to ready. Default 5.
    pub dead_letter_after: u32,
    /// Dead letters kept per queue; beyond that the oldest is dropped
    /// (and counted). Default 1 000.
    pub dead_letters_per_queue_max: u32,
    /// How long a dedup key maps to its first message id. Default 5 min.
    pub dedup_window: u64,
    /// Dedup keys remembered in total. Default 100 000.
    pub dedup_keys_max: u32,
    /// Bytes of one dedup key. Default 128.
    pub dedup_key_bytes_max: u32,
    /// Cached replies kept per client (oldest evicted first). Default 32.
    pub reply_cache_per_client_max: u32,
    /// Cached replies kept in total (globally oldest evicted first).
    /// Default 200 000.
    pub reply_cache_max: u32,
    /// Result bytes cached in total (globally oldest evicted first): a
    /// claim's reply carries its payload. Default 256 MiB.
    pub reply_cache_bytes_max: u64,
    /// Entries one `Check`/`PeekDeadLetters` answer lists. Default 64.
    pub listing_max: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            clients_max: 100_000,
            sessions_per_client_max: 64,
            sessions_max: 100_000,
            session_ttl_min: 5 * SECOND_US,
            session_ttl_max: 3_600 * SECOND_US,
            locks_per_session_max: 256,
            resources_max: 100_000,
            waiters_per_resource_max: 1_024,
            waiters_max: 100_000,
            wait_max: 600 * SECOND_US,
            name_bytes_max: 256,
            lock_delay: 2 * SECOND_US,
            queues_max: 10_000,
            queue_depth_max: 100_000,
            messages_max: 1_000_000,
            messages_per_client_max: 10_000,
            payload_bytes_max: 64 * 1024,
            payload_bytes_total_max: 1 << 30,
            claims_per_session_max: 1_024,
            visibility_timeout_min: SECOND_US,
            visibility_timeout_max: 12 * 3_600 * SECOND_US,
            dead_letter_after: 5,
            dead_letters_per_queue_max: 1_000,
            dedup_window: 300 * SECOND_US,
            dedup_keys_max: 100_000,
            dedup_key_bytes_max: 128,
            reply_cache_per_client_max: 32,
            reply_cache_max: 200_000,
            reply_cache_bytes_max: 256 << 20,
            listing_max: 64,
        }
    }
}
