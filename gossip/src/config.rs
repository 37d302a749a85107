//! Every limit and timeout of the core, named (`*_max`, `*_micros`).

use serde::{Deserialize, Serialize};

/// The knobs of one [`crate::Plumtree`]. Every queue, cache and batch has a
/// bound here; nothing grows on a peer's say-so beyond these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// The largest payload broadcast or accepted.
    pub payload_bytes_max: usize,
    /// Messages whose payload is kept to answer GRAFTs and fetches.
    pub cache_max: usize,
    /// How long a payload is kept for GRAFTs and fetches.
    pub cache_age_max_micros: u64,
    /// Ids remembered (delivered or known invalid) to suppress duplicates.
    pub seen_max: usize,
    /// How long an id is remembered; a copy arriving later is delivered
    /// again, so the application dedupes by digest beyond this horizon.
    pub seen_age_max_micros: u64,
    /// Ids in one IHAVE message.
    pub ihave_batch_max: usize,
    /// Ids waiting to be announced to one peer; beyond it the oldest are
    /// dropped (anti-entropy repairs what that loses).
    pub ihave_queue_max: usize,
    /// Ids announced but not received (each with a GRAFT timer).
    pub missing_max: usize,
    /// Missing ids first announced by one peer: stops one liar filling
    /// the whole missing table with fake IHAVEs.
    pub missing_per_peer_max: usize,
    /// Announcers remembered per missing id.
    pub announcers_max: usize,
    /// Announced ids of one peer that expired unanswered ("strikes", each
    /// forgiven after one tick) beyond which its IHAVEs start no new waits:
    /// a liar's fake ids then cost no GRAFTs at all.
    pub announcer_strikes_max: u32,
    /// The paper's first timer: how long to wait for the eager copy of an
    /// announced id before sending GRAFT.
    pub graft_timeout_micros: u64,
    /// The paper's second timer: how long to wait for the answer to a GRAFT
    /// before asking the next announcer.
    pub graft_retry_micros: u64,
    /// GRAFTs sent for one missing id (cycling through its announcers)
    /// before it is forgotten.
    pub graft_attempts_max: u32,
    /// GRAFTs sent to any one announcer of a missing id: a liar announcing
    /// ids that do not exist gets at most this many GRAFTs per fake id.
    pub grafts_per_announcer_max: u32,
    /// The period of the housekeeping tick: IHAVE flush, anti-entropy,
    /// expiry.
    pub tick_micros: u64,
    /// Every this many ticks, one active peer gets a summary of recent ids
    /// (anti-entropy: repairs what loss of pushes and IHAVEs left behind).
    pub anti_entropy_every_ticks: u32,
    /// Ids younger than this go into anti-entropy summaries.
    pub anti_entropy_window_micros: u64,
    /// The largest active view (peers we push or announce to). With
    /// `n − 1` at or below it, every peer is active (full mesh).
    pub active_view_max: usize,
    /// The degree of the shared random overlay when `n − 1` exceeds
    /// [`Config::active_view_max`].
    pub active_view_target: usize,
    /// Seed of the shared overlay; every replica must use the same value
    /// (e.g. derived from the cluster id) so the overlay is symmetric.
    pub overlay_seed: u64,
    /// PRUNE-provocation mitigation: a peer we had to GRAFT (the tree
    /// failed us and it helped) is not pruned for this long, so a fast
    /// Byzantine duplicate cannot cut the repaired link again at once; and
    /// when we GRAFT, eager peers whose fast copy displaced a tree link
    /// within this window are made lazy and suspect for this long (their
    /// fast copies then prune nobody). 0 disables the mitigation.
    pub graft_protection_micros: u64,
    /// Never prune below this many eager peers (a second, costlier
    /// mitigation; 0 disables it).
    pub eager_min: usize,
    /// Payloads sent to one peer per tick in answer to its GRAFTs and
    /// fetch requests: a peer asking for the same large payload over and
    /// over gets at most this many per tick.
    pub answers_per_tick_max: u32,
    /// Fetch-by-digest requests in flight.
    pub fetches_pending_max: usize,
    /// Peer hints accepted per fetch.
    pub fetch_hints_max: usize,
    /// How long to wait for one fetch answer before asking the next peer.
    pub fetch_timeout_micros: u64,
    /// Peers asked for one fetch before it fails.
    pub fetch_attempts_max: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            payload_bytes_max: 1024 * 1024,
            cache_max: 16 * 1024,
            cache_age_max_micros: 30_000_000,
            seen_max: 64 * 1024,
            seen_age_max_micros: 120_000_000,
            ihave_batch_max: 512,
            ihave_queue_max: 4096,
            missing_max: 4096,
            missing_per_peer_max: 1024,
            announcers_max: 8,
            announcer_strikes_max: 32,
            graft_timeout_micros: 100_000,
            graft_retry_micros: 60_000,
            graft_attempts_max: 12,
            grafts_per_announcer_max: 2,
            tick_micros: 20_000,
            anti_entropy_every_ticks: 10,
            anti_entropy_window_micros: 10_000_000,
            active_view_max: 16,
            active_view_target: 8,
            overlay_seed: 0,
            graft_protection_micros: 10_000_000,
            eager_min: 0,
            answers_per_tick_max: 64,
            fetches_pending_max: 4096,
            fetch_hints_max: 8,
            fetch_timeout_micros: 200_000,
            fetch_attempts_max: 8,
        }
    }
}

impl Config {
    /// Checks the values are usable together. A bad configuration is the
    /// operator's bug, so the core asserts on it at construction.
    pub fn check(&self) -> Result<(), &'static str> {
        let positive = [
            self.payload_bytes_max,
            self.cache_max,
            self.seen_max,
            self.ihave_batch_max,
            self.ihave_queue_max,
            self.missing_max,
            self.missing_per_peer_max,
            self.announcers_max,
            self.active_view_max,
            self.active_view_target,
            self.fetches_pending_max,
        ];
        if positive.contains(&0) {
            return Err("every *_max must be positive");
        }
        if self.tick_micros == 0 || self.graft_timeout_micros == 0 || self.graft_retry_micros == 0 {
            return Err("timers must be positive");
        }
        if self.answers_per_tick_max == 0 {
            return Err("answers_per_tick_max must be positive");
        }
        if self.graft_attempts_max == 0 || self.grafts_per_announcer_max == 0 {
            return Err("GRAFT attempts must be positive");
        }
        if self.fetch_timeout_micros == 0 || self.anti_entropy_every_ticks == 0 {
            return Err("timers must be positive");
        }
        if self.active_view_target > self.active_view_max {
            return Err("active_view_target exceeds active_view_max");
        }
        if self.seen_max < self.cache_max || self.seen_age_max_micros < self.cache_age_max_micros {
            return Err("ids must be remembered at least as long as payloads");
        }
        Ok(())
    }
}
