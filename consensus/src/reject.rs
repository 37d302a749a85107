//! Why a replica refused an input: one name per reason, for the driver's
//! rejected-inputs metric.

/// A refused input. Bad input from a peer, a client or the driver is never a
/// panic: it is one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum Rejection {
    /// The signature does not verify for the claimed sender.
    #[error("bad signature")]
    BadSignature,
    /// The transport sender is not the message's signer, or not a member.
    #[error("sender does not match the message")]
    SenderMismatch,
    /// The message is for another view.
    #[error("wrong view")]
    WrongView,
    /// A PREPARE from the primary (its PRE-PREPARE stands for it, §4.2).
    #[error("prepare from the primary")]
    PrepareFromPrimary,
    /// The seq is outside the low/high watermarks (§4.2).
    #[error("outside the watermarks")]
    OutsideWatermarks,
    /// Already executed or below the stable checkpoint.
    #[error("stale")]
    Stale,
    /// A batch with more digests than `batch_size_max`.
    #[error("batch too large")]
    BatchTooLarge,
    /// A batch naming the same digest twice.
    #[error("duplicate digest in batch")]
    DuplicateDigestInBatch,
    /// A fresh PRE-PREPARE whose `batch_time` is beyond the clock skew.
    #[error("batch time beyond the clock skew")]
    BatchTimeSkew,
    /// A second, different PRE-PREPARE for the same view and seq.
    #[error("conflicting pre-prepare")]
    ConflictingPrePrepare,
    /// A second, different PREPARE/COMMIT from the same replica.
    #[error("conflicting vote")]
    ConflictingVote,
    /// A second, different CHECKPOINT from the same replica for one seq.
    #[error("conflicting checkpoint")]
    ConflictingCheckpoint,
    /// A CHECKPOINT at a seq that is not a multiple of K.
    #[error("checkpoint not at a checkpoint seq")]
    CheckpointMisaligned,
    /// Exactly what we already hold.
    #[error("duplicate")]
    Duplicate,
    /// The replica's bounded set of waiting request digests is full.
    #[error("mempool full")]
    MempoolFull,
    /// A payload nobody asked for.
    #[error("unsolicited payload")]
    UnsolicitedPayload,
    /// A fetched payload failed validation: its batch can never prepare.
    #[error("invalid payload")]
    InvalidPayload,
    /// A committed-batch certificate that does not prove commitment.
    #[error("invalid commit certificate")]
    InvalidCertificate,
    /// A committed batch outside the catch-up range.
    #[error("committed batch outside the catch-up range")]
    CatchUpOutOfRange,
    /// An execution result out of seq order or for a batch never executed.
    #[error("execution result out of order")]
    ExecutedOutOfOrder,
    /// A VIEW-CHANGE whose certificates do not check out.
    #[error("invalid view change")]
    InvalidViewChange,
    /// A NEW-VIEW whose view changes or re-proposals do not check out.
    #[error("invalid new view")]
    InvalidNewView,
    /// The driver reported a state transfer to a checkpoint this replica
    /// holds no quorum certificate for (or whose digest differs).
    #[error("state installed without a matching certified checkpoint")]
    StateUncertified,
}

impl Rejection {
    /// A stable snake_case name, for metrics labels and summaries.
    pub fn name(self) -> &'static str {
        match self {
            Rejection::BadSignature => "bad_signature",
            Rejection::SenderMismatch => "sender_mismatch",
            Rejection::WrongView => "wrong_view",
            Rejection::PrepareFromPrimary => "prepare_from_primary",
            Rejection::OutsideWatermarks => "outside_watermarks",
            Rejection::Stale => "stale",
            Rejection::BatchTooLarge => "batch_too_large",
            Rejection::DuplicateDigestInBatch => "duplicate_digest_in_batch",
            Rejection::BatchTimeSkew => "batch_time_skew",
            Rejection::ConflictingPrePrepare => "conflicting_pre_prepare",
            Rejection::ConflictingVote => "conflicting_vote",
            Rejection::ConflictingCheckpoint => "conflicting_checkpoint",
            Rejection::CheckpointMisaligned => "checkpoint_misaligned",
            Rejection::Duplicate => "duplicate",
            Rejection::MempoolFull => "mempool_full",
            Rejection::UnsolicitedPayload => "unsolicited_payload",
            Rejection::InvalidPayload => "invalid_payload",
            Rejection::InvalidCertificate => "invalid_certificate",
            Rejection::CatchUpOutOfRange => "catch_up_out_of_range",
            Rejection::ExecutedOutOfOrder => "executed_out_of_order",
            Rejection::InvalidViewChange => "invalid_view_change",
            Rejection::InvalidNewView => "invalid_new_view",
            Rejection::StateUncertified => "state_uncertified",
        }
    }
}
