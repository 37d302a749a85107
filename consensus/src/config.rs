//! The replica's configuration: membership, identity, protocol constants
//! and a named bound for everything a peer can make the replica store.

use primitives::{ClusterId, KeyPair, Membership, ReplicaId};

/// Everything a [`crate::Replica`] needs to know before its first step.
#[derive(Clone, Debug)]
pub struct Config {
    /// The fixed replica set.
    pub membership: Membership,
    /// This replica's index in `membership`.
    pub id: ReplicaId,
    /// This replica's key; its public half must be `membership.key(id)`.
    pub key: KeyPair,
    /// The cluster id (the digest of `membership`); named in every
    /// signature so nothing signed for one cluster counts in another.
    pub cluster: ClusterId,
    /// `K`: a checkpoint (pulse) every `K` sequence numbers (PBFT §4.3).
    pub checkpoint_interval: u64,
    /// `L`: sequence numbers accepted above the low watermark (PBFT §4.3).
    /// At least `2K`, so the primary can keep proposing while the next
    /// checkpoint becomes stable.
    pub watermark_window: u64,
    /// Request digests in one batch.
    pub batch_size_max: usize,
    /// How long the primary waits to fill a batch before proposing a
    /// partial one, in microseconds.
    pub batch_delay_micros: u64,
    /// Adaptive batching: with fewer than `batches_in_flight_max` of its
    /// batches proposed and not yet executed, the primary proposes a
    /// partial batch at once instead of waiting out `batch_delay_micros`
    /// (light load pays no batch delay; under load the pipeline is full
    /// and requests gather into large batches, so the per-batch costs --
    /// votes, signatures, fsyncs -- are shared by more requests).
    pub propose_when_idle: bool,
    /// Batches in flight (proposed, not yet executed) below which
    /// `propose_when_idle` proposes a partial batch at once. At least 1.
    /// A full batch is proposed whatever this says (up to the watermark
    /// window), and so is a partial one whose batch delay ran out.
    pub batches_in_flight_max: u64,
    /// How far a fresh PRE-PREPARE's `batch_time` may be from the local
    /// clock, in microseconds (DESIGN.md step 5).
    pub max_clock_skew_micros: u64,
    /// How often a replica broadcasts its STATUS (retransmission and
    /// catch-up are driven by it), in microseconds.
    pub status_interval_micros: u64,
    /// How long pending work may see no execution progress before a
    /// replica suspects the primary and starts a view change (§4.5.2); it
    /// doubles with each consecutive view change and resets on progress.
    pub view_change_timeout_micros: u64,
    /// Request digests waiting to be ordered that the replica tracks (the
    /// driver's mempool should have the same bound).
    pub mempool_digests_max: usize,
    /// CHECKPOINT votes kept per peer (above the low watermark).
    pub checkpoint_votes_per_peer_max: usize,
    /// Slots retransmitted to one stalled peer per STATUS.
    pub retransmit_slots_max: u64,
    /// Committed batches fetched (and buffered) ahead of execution while
    /// catching up.
    pub catch_up_batches_max: u64,
    /// Status ticks without execution progress, while a certified
    /// checkpoint above our state is known, before asking the driver for a
    /// state transfer (the peers may have collected the log we need); the
    /// request is repeated every as many ticks while it stays so.
    pub state_transfer_after_ticks: u32,
    /// Own checkpoints kept below the low watermark while their quorum
    /// certificate is still missing (a later checkpoint became stable
    /// first), so every pulse still gets its certificate.
    pub orphan_checkpoints_max: usize,
    /// TEST ONLY: a deliberately broken protocol rule, so the simulator
    /// can prove its checkers catch it (issue 5, mutation checks). Always
    /// [`Mutation::None`] outside tests: [`Config::new`] sets it, no
    /// configuration file names it, and a node must never set it.
    pub mutation: Mutation,
}

/// TEST ONLY: a deliberately broken rule of the core (a mutant). The
/// simulator runs replicas with one of these to check that a violation is
/// reported; a production replica always runs [`Mutation::None`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutation {
    /// The correct protocol.
    #[default]
    None,
    /// Quorums of `2f` instead of `2f + 1` (prepared, committed, stable
    /// checkpoint, view change): two quorums need not share a correct
    /// replica.
    QuorumTwoF,
    /// The NEW-VIEW's re-proposals are computed (and checked) without the
    /// VIEW-CHANGEs' prepared certificates (§4.4's O set is all null
    /// batches): the new primary may drop committed batches.
    NewViewSkipsPreparedCheck,
    /// A backup sends PREPARE before it holds and has validated every
    /// payload of the batch (breaks DESIGN.md step 4's availability rule).
    PrepareBeforePayloads,
    /// A committed batch is executed before its predecessors are.
    ExecuteOutOfOrder,
}

impl Mutation {
    /// Every mutant, [`Mutation::None`] excluded.
    pub const ALL: [Mutation; 4] = [
        Mutation::QuorumTwoF,
        Mutation::NewViewSkipsPreparedCheck,
        Mutation::PrepareBeforePayloads,
        Mutation::ExecuteOutOfOrder,
    ];

    /// Its name on the simulator's command line (`--mutate NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Mutation::None => "none",
            Mutation::QuorumTwoF => "quorum-2f",
            Mutation::NewViewSkipsPreparedCheck => "new-view-skips-prepared-check",
            Mutation::PrepareBeforePayloads => "prepare-before-payloads",
            Mutation::ExecuteOutOfOrder => "execute-out-of-order",
        }
    }

    /// The mutation called `name` (see [`Mutation::name`]).
    pub fn from_name(name: &str) -> Option<Mutation> {
        std::iter::once(Mutation::None)
            .chain(Mutation::ALL)
            .find(|m| m.name() == name)
    }
}

/// Why a configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `id` is not a member.
    #[error("replica {0} is not in the membership")]
    NotAMember(ReplicaId),
    /// `key` is not the member's key.
    #[error("the key pair is not replica {0}'s key in the membership")]
    WrongKey(ReplicaId),
    /// `cluster` is not the membership's digest.
    #[error("the cluster id is not the digest of the membership")]
    WrongCluster,
    /// A constant is out of its range.
    #[error("invalid setting: {0}")]
    Invalid(&'static str),
}

impl Config {
    /// [`Config::batch_delay_micros`] of [`Config::new`] (and of
    /// `qlockd`'s `[batching]`).
    pub const BATCH_DELAY_MICROS_DEFAULT: u64 = 2_000;
    /// [`Config::batches_in_flight_max`] of [`Config::new`].
    pub const BATCHES_IN_FLIGHT_MAX_DEFAULT: u64 = 1;

    /// A configuration with the defaults below for everything but the
    /// identity.
    pub fn new(membership: Membership, id: ReplicaId, key: KeyPair) -> Config {
        let cluster = membership.cluster_id();
        Config {
            membership,
            id,
            key,
            cluster,
            checkpoint_interval: 128,
            watermark_window: 256,
            batch_size_max: 256,
            batch_delay_micros: Self::BATCH_DELAY_MICROS_DEFAULT,
            propose_when_idle: true,
            batches_in_flight_max: Self::BATCHES_IN_FLIGHT_MAX_DEFAULT,
            max_clock_skew_micros: 500_000,
            status_interval_micros: 100_000,
            view_change_timeout_micros: 2_000_000,
            mempool_digests_max: 65_536,
            checkpoint_votes_per_peer_max: 8,
            retransmit_slots_max: 32,
            catch_up_batches_max: 64,
            state_transfer_after_ticks: 3,
            orphan_checkpoints_max: 8,
            mutation: Mutation::None,
        }
    }

    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let member = self
            .membership
            .key(self.id)
            .ok_or(ConfigError::NotAMember(self.id))?;
        if *member != self.key.public() {
            return Err(ConfigError::WrongKey(self.id));
        }
        if self.cluster != self.membership.cluster_id() {
            return Err(ConfigError::WrongCluster);
        }
        let checks = [
            (self.checkpoint_interval == 0, "checkpoint_interval is 0"),
            (
                self.watermark_window < 2 * self.checkpoint_interval,
                "watermark_window < 2 * checkpoint_interval",
            ),
            (self.batch_size_max == 0, "batch_size_max is 0"),
            (
                self.batches_in_flight_max == 0,
                "batches_in_flight_max is 0",
            ),
            (
                self.status_interval_micros == 0,
                "status_interval_micros is 0",
            ),
            // A loaded primary must not be suspected for batching.
            (
                self.batch_delay_micros >= self.view_change_timeout_micros,
                "batch_delay_micros >= view_change_timeout_micros",
            ),
            (self.mempool_digests_max == 0, "mempool_digests_max is 0"),
            (
                self.checkpoint_votes_per_peer_max < 2,
                "checkpoint_votes_per_peer_max < 2",
            ),
            (self.catch_up_batches_max == 0, "catch_up_batches_max is 0"),
            (
                self.state_transfer_after_ticks == 0,
                "state_transfer_after_ticks is 0",
            ),
        ];
        match checks.iter().find(|(bad, _)| *bad) {
            Some((_, why)) => Err(ConfigError::Invalid(why)),
            None => Ok(()),
        }
    }

    /// The largest encoded peer message this configuration produces: a
    /// driver decodes [`crate::WireMessage`]s with this bound.
    pub fn message_bytes_max(&self) -> usize {
        // A PRE-PREPARE: 33 bytes per digest plus headers and a signature;
        // a commit certificate: one COMMIT per replica.
        let batch = self.batch_size_max * 33 + 256;
        let proof = batch + self.membership.n() * 200;
        // A VIEW-CHANGE carries up to L prepared certificates; a NEW-VIEW a
        // quorum of VIEW-CHANGEs and up to L re-proposals.
        let view_change = self.watermark_window as usize * proof + self.membership.n() * 200;
        let new_view =
            self.membership.quorum() * view_change + self.watermark_window as usize * batch;
        new_view.min(primitives::codec::FRAME_BYTES_MAX)
    }
}
