//! The runtime's Prometheus metrics (prometheus-client). Names follow the
//! Prometheus conventions: base units, `_total` on counters (added by the
//! client library), histograms for latencies.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Reason = [(&'static str, &'static str); 1];

/// Every metric of the replica runtime. Shared handles: cloning is cheap.
#[derive(Clone, Debug)]
pub struct RuntimeMetrics {
    /// Batches executed.
    pub committed_batches: Counter,
    /// Requests executed.
    pub committed_requests: Counter,
    /// The current view.
    pub view: Gauge,
    /// Views installed since start.
    pub view_changes: Counter,
    /// Requests held in the mempool.
    pub mempool_requests: Gauge,
    /// Inputs refused, by reason (consensus rejections, full queues, bad
    /// peer messages, ...).
    pub rejected_inputs: Family<Reason, Counter>,
    /// Latency of one grouped storage commit (write + fsync).
    pub fsync_seconds: Histogram,
    /// From a submit reaching the loop to its certified reply.
    pub commit_latency_seconds: Histogram,
    /// One pass of the event loop, from its wake-up to its storage
    /// hand-off: everything a replica does waits behind a long one.
    pub loop_pass_seconds: Histogram,
    /// Building one transfer snapshot of the whole state (on the loop).
    pub snapshot_seconds: Histogram,
    /// State transfers completed (a certified snapshot installed).
    pub state_transfers: Counter,
    /// Snapshot chunks refused during state transfers (a peer served a
    /// chunk that did not match the certified manifest).
    pub state_transfer_chunks_rejected: Counter,
    /// Committed batches received while catching up batch by batch.
    pub catch_up_batches: Counter,
    /// Pulse entries fetched from peers to fill lockchain gaps.
    pub lockchain_pulses_fetched: Counter,
    /// Pulses made stable (quorum certificates stored).
    pub pulses: Counter,
    /// Live sessions of the state machine.
    pub sessions: Gauge,
    /// Lock entries (held or waited on).
    pub locks: Gauge,
    /// Waiting acquires.
    pub waiters: Gauge,
    /// Queue messages held (ready and claimed).
    pub queue_messages: Gauge,
    /// Replies answered to submitters.
    pub replies: Counter,
    /// Submits answered with a timeout.
    pub reply_timeouts: Counter,
    /// Events pushed to subscribers.
    pub events: Counter,
    /// Events dropped because a subscriber was full.
    pub events_dropped: Counter,
    /// The last executed seq.
    pub last_executed: Gauge,
    /// Client requests not executed yet whose submitters wait for the
    /// reply (requests merely held in the mempool may be executed ones,
    /// pinned until the checkpoint): with no commits, a stall.
    pub pending_requests: Gauge,
    /// The latest stable checkpoint (low watermark): a replica whose last
    /// executed seq is below another's stable checkpoint needs a state
    /// transfer (an alert rule compares the two).
    pub stable_checkpoint: Gauge,
    /// Plumtree activity by kind (eager pushes, IHAVEs, GRAFTs, PRUNEs,
    /// deliveries, duplicates, invalid payloads, fetches, refused sends).
    pub gossip: Family<Kind, Counter>,
}

type Kind = [(&'static str, &'static str); 1];

impl Default for RuntimeMetrics {
    fn default() -> Self {
        RuntimeMetrics {
            committed_batches: Counter::default(),
            committed_requests: Counter::default(),
            view: Gauge::default(),
            view_changes: Counter::default(),
            mempool_requests: Gauge::default(),
            rejected_inputs: Family::default(),
            // 50 µs .. ~1.6 s.
            fsync_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            // 100 µs .. ~3.3 s.
            commit_latency_seconds: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            // 10 µs .. ~0.3 s, and above.
            loop_pass_seconds: Histogram::new(exponential_buckets(0.000_01, 2.0, 16)),
            // 1 ms .. ~33 s.
            snapshot_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            state_transfers: Counter::default(),
            state_transfer_chunks_rejected: Counter::default(),
            catch_up_batches: Counter::default(),
            lockchain_pulses_fetched: Counter::default(),
            pulses: Counter::default(),
            sessions: Gauge::default(),
            locks: Gauge::default(),
            waiters: Gauge::default(),
            queue_messages: Gauge::default(),
            replies: Counter::default(),
            reply_timeouts: Counter::default(),
            events: Counter::default(),
            events_dropped: Counter::default(),
            last_executed: Gauge::default(),
            stable_checkpoint: Gauge::default(),
            pending_requests: Gauge::default(),
            gossip: Family::default(),
        }
    }
}

impl RuntimeMetrics {
    /// Counts one refused input.
    pub fn reject(&self, reason: &'static str) {
        self.rejected_inputs
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// The count of refusals for `reason` (tests and status).
    pub fn rejected(&self, reason: &'static str) -> u64 {
        self.rejected_inputs
            .get_or_create(&[("reason", reason)])
            .get()
    }

    /// Raises the gossip counter `kind` to the cumulative `value` (the
    /// gossip core keeps cumulative statistics; counters only move up).
    pub fn gossip_to(&self, kind: &'static str, value: u64) {
        let c = self.gossip.get_or_create(&[("kind", kind)]);
        let now = c.get();
        if value > now {
            c.inc_by(value - now);
        }
    }

    /// Registers every metric under `registry` with the `qlock_` names.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry;
        r.register(
            "qlock_committed_batches",
            "Batches executed",
            self.committed_batches.clone(),
        );
        r.register(
            "qlock_committed_requests",
            "Requests executed",
            self.committed_requests.clone(),
        );
        r.register("qlock_view", "The current PBFT view", self.view.clone());
        r.register(
            "qlock_view_changes",
            "Views installed",
            self.view_changes.clone(),
        );
        r.register(
            "qlock_mempool_requests",
            "Requests in the mempool",
            self.mempool_requests.clone(),
        );
        r.register(
            "qlock_rejected_inputs",
            "Inputs refused, by reason",
            self.rejected_inputs.clone(),
        );
        r.register(
            "qlock_fsync_seconds",
            "Latency of one grouped storage commit with its sync",
            self.fsync_seconds.clone(),
        );
        r.register(
            "qlock_loop_pass_seconds",
            "One pass of the replica's event loop",
            self.loop_pass_seconds.clone(),
        );
        r.register(
            "qlock_snapshot_seconds",
            "Building one transfer snapshot of the state",
            self.snapshot_seconds.clone(),
        );
        r.register(
            "qlock_commit_latency_seconds",
            "From submit to certified reply",
            self.commit_latency_seconds.clone(),
        );
        r.register(
            "qlock_state_transfers",
            "State transfers completed (certified snapshots installed)",
            self.state_transfers.clone(),
        );
        r.register(
            "qlock_state_transfer_chunks_rejected",
            "Snapshot chunks refused during state transfers",
            self.state_transfer_chunks_rejected.clone(),
        );
        r.register(
            "qlock_catch_up_batches",
            "Committed batches received while catching up",
            self.catch_up_batches.clone(),
        );
        r.register(
            "qlock_lockchain_pulses_fetched",
            "Pulse entries fetched from peers to fill lockchain gaps",
            self.lockchain_pulses_fetched.clone(),
        );
        r.register("qlock_pulses", "Pulses made stable", self.pulses.clone());
        r.register("qlock_sessions", "Live sessions", self.sessions.clone());
        r.register(
            "qlock_locks",
            "Lock entries held or waited on",
            self.locks.clone(),
        );
        r.register("qlock_waiters", "Waiting acquires", self.waiters.clone());
        r.register(
            "qlock_queue_messages",
            "Queue messages held (ready and claimed)",
            self.queue_messages.clone(),
        );
        r.register(
            "qlock_replies",
            "Certified replies answered",
            self.replies.clone(),
        );
        r.register(
            "qlock_reply_timeouts",
            "Submits answered with a timeout",
            self.reply_timeouts.clone(),
        );
        r.register(
            "qlock_events",
            "Events pushed to subscribers",
            self.events.clone(),
        );
        r.register(
            "qlock_events_dropped",
            "Events dropped because the subscriber was full",
            self.events_dropped.clone(),
        );
        r.register(
            "qlock_gossip_messages",
            "Plumtree activity by kind",
            self.gossip.clone(),
        );
        r.register(
            "qlock_last_executed_seq",
            "The last executed seq",
            self.last_executed.clone(),
        );
        r.register(
            "qlock_pending_requests",
            "Client requests not executed yet with submitters waiting",
            self.pending_requests.clone(),
        );
        r.register(
            "qlock_stable_checkpoint_seq",
            "The latest stable checkpoint",
            self.stable_checkpoint.clone(),
        );
    }
}
