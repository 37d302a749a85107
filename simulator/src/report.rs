//! What a run found, and the summary over many runs.

use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The result of one seed.
#[derive(Clone, Debug, Default)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// Safety violations (agreement, order, persistence, payloads).
    pub violations: Vec<String>,
    /// Requests that did not commit everywhere within the liveness bound.
    pub liveness_failures: Vec<String>,
    /// Distinct client requests committed (seen by a client).
    pub committed_requests: u64,
    /// Batches executed (at replica 0's seq).
    pub batches: u64,
    /// Stable checkpoints reached, over all replicas.
    pub stable_checkpoints: u64,
    /// View changes (issue 4; zero in part 1).
    pub view_changes: u64,
    /// Committed batches fetched by lagging replicas.
    pub catch_up_batches: u64,
    /// Messages sent over the network.
    pub messages: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Inputs the cores rejected, by reason.
    pub rejections: BTreeMap<&'static str, u64>,
    /// Virtual time at the end, in microseconds from the start.
    pub virtual_micros: u64,
    /// The lowest effective time any replica's application reached, in
    /// microseconds from the start (0 if one executed nothing).
    pub effective_micros_min: u64,
    /// blake3 over the trace: equal seeds give equal digests.
    pub trace_digest: String,
    /// The full trace, if asked for.
    pub trace: Vec<u8>,
    /// qlock ops completed by clients, by kind.
    pub op_counts: BTreeMap<&'static str, u64>,
    /// Client ops with an observed outcome (their history's length).
    pub observed_ops: u64,
    /// Locks granted to a waiter after it waited (qlock's counter).
    pub grants_after_wait: u64,
    /// Waits that timed out.
    pub wait_timeouts: u64,
    /// Sessions ended by expiry.
    pub session_expiries: u64,
    /// Messages redelivered after a visibility timeout.
    pub redeliveries: u64,
    /// Messages dead-lettered.
    pub dead_letters: u64,
    /// Per-resource lock histories checked for linearizability.
    pub lock_histories_checked: u64,
    /// Of them, those the search bound cut short.
    pub lock_histories_unknown: u64,
    /// Gossip counters summed over the replicas (and their lives): eager
    /// payload pushes, IHAVE messages and ids, GRAFTs, PRUNEs, deliveries,
    /// duplicates, fetches.
    pub gossip: BTreeMap<&'static str, u64>,
    /// Pulses certified: the longest replica lockchain at the end.
    pub pulses: u64,
    /// Pulse certificates checked by the end-of-run chain checkers
    /// (`verify_continuity`), over every replica.
    pub lockchain_checked: u64,
    /// Lockchain fetches sent by replicas with a gap in their chain.
    pub lockchain_fetches: u64,
    /// Each replica's lockchain length (certified pulses) at the end.
    pub lockchain_lengths: Vec<u64>,
    /// Restarts: the replica and its lockchain's length when it restarted.
    pub restarts: Vec<(usize, u64)>,
    /// Pulse certificates that formed after a later checkpoint was stable.
    pub late_certificates: u64,
    /// State transfers completed (a checked snapshot installed).
    pub state_transfers: u64,
    /// The replicas that were Byzantine this seed.
    pub byzantine_replicas: Vec<usize>,
    /// Snapshot chunks refused during state transfers.
    pub chunks_rejected: u64,
}

impl SeedReport {
    /// Whether the run found no problem.
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.liveness_failures.is_empty()
    }
}

/// Totals over many seeds.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Seeds run.
    pub seeds: u64,
    /// Seeds with a violation.
    pub violations: u64,
    /// Seeds with a liveness failure.
    pub liveness_failures: u64,
    /// The failing seeds.
    pub failing_seeds: Vec<u64>,
    /// Sums over the seeds.
    pub committed_requests: u64,
    /// Batches executed.
    pub batches: u64,
    /// Stable checkpoints.
    pub stable_checkpoints: u64,
    /// View changes.
    pub view_changes: u64,
    /// Catch-up batches.
    pub catch_up_batches: u64,
    /// Messages.
    pub messages: u64,
    /// Faults by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Rejections by reason.
    pub rejections: BTreeMap<&'static str, u64>,
    /// qlock ops completed, by kind.
    pub op_counts: BTreeMap<&'static str, u64>,
    /// qlock counters summed over the seeds: grants after waiting, wait
    /// timeouts, session expiries, redeliveries, dead letters.
    pub qlock: BTreeMap<&'static str, u64>,
    /// Gossip counters summed over the seeds.
    pub gossip: BTreeMap<&'static str, u64>,
    /// Pulses certified, summed over the seeds.
    pub pulses: u64,
    /// Pulse certificates checked in replica chains.
    pub lockchain_checked: u64,
    /// Lockchain fetches.
    pub lockchain_fetches: u64,
    /// Pulse certificates that formed late, summed over the seeds.
    pub late_certificates: u64,
    /// State transfers completed, summed over the seeds.
    pub state_transfers: u64,
    /// Byzantine replicas, summed over the seeds.
    pub byzantine_replicas: u64,
    /// Snapshot chunks refused, summed over the seeds.
    pub chunks_rejected: u64,
}

impl Summary {
    /// Adds one seed's result.
    pub fn add(&mut self, r: &SeedReport) {
        self.seeds += 1;
        self.violations += u64::from(!r.violations.is_empty());
        self.liveness_failures += u64::from(!r.liveness_failures.is_empty());
        if !r.passed() {
            self.failing_seeds.push(r.seed);
        }
        self.committed_requests += r.committed_requests;
        self.batches += r.batches;
        self.stable_checkpoints += r.stable_checkpoints;
        self.view_changes += r.view_changes;
        self.catch_up_batches += r.catch_up_batches;
        self.messages += r.messages;
        self.pulses += r.pulses;
        self.lockchain_checked += r.lockchain_checked;
        self.lockchain_fetches += r.lockchain_fetches;
        self.late_certificates += r.late_certificates;
        self.state_transfers += r.state_transfers;
        self.byzantine_replicas += r.byzantine_replicas.len() as u64;
        self.chunks_rejected += r.chunks_rejected;
        for (k, v) in &r.faults {
            *self.faults.entry(k).or_default() += v;
        }
        for (k, v) in &r.rejections {
            *self.rejections.entry(k).or_default() += v;
        }
        for (k, v) in &r.gossip {
            *self.gossip.entry(k).or_default() += v;
        }
        for (k, v) in &r.op_counts {
            *self.op_counts.entry(k).or_default() += v;
        }
        for (k, v) in [
            ("observed_ops", r.observed_ops),
            ("grants_after_wait", r.grants_after_wait),
            ("wait_timeouts", r.wait_timeouts),
            ("session_expiries", r.session_expiries),
            ("redeliveries", r.redeliveries),
            ("dead_letters", r.dead_letters),
            ("lock_histories_checked", r.lock_histories_checked),
            ("lock_histories_unknown", r.lock_histories_unknown),
        ] {
            *self.qlock.entry(k).or_default() += v;
        }
    }

    /// The one-line JSON summary.
    pub fn to_json(&self) -> Value {
        json!({
            "seeds": self.seeds,
            "violations": self.violations,
            "liveness_failures": self.liveness_failures,
            "failing_seeds": self.failing_seeds,
            "committed_requests": self.committed_requests,
            "batches": self.batches,
            "stable_checkpoints": self.stable_checkpoints,
            "view_changes": self.view_changes,
            "catch_up_batches": self.catch_up_batches,
            "messages": self.messages,
            "faults": self.faults,
            "rejections": self.rejections,
            "ops": self.op_counts,
            "qlock": self.qlock,
            "gossip": self.gossip,
            "pulses": self.pulses,
            "lockchain_checked": self.lockchain_checked,
            "lockchain_fetches": self.lockchain_fetches,
            "late_certificates": self.late_certificates,
            "state_transfers": self.state_transfers,
            "byzantine_replicas": self.byzantine_replicas,
            "chunks_rejected": self.chunks_rejected,
        })
    }
}
