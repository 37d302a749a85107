//! Pulse headers: every `K` sequence numbers, one header over the batch
//! roots of its range, hash-chained to the one before.
//!
//! Every field is deterministic (a function of the committed log and the
//! executed state), so all correct replicas sign the same bytes, and
//! consensus's CHECKPOINT signature *is* a signature on the header.

use crate::error::VerifyError;
use crate::format;
use crate::merkle::{leaf_hash, InclusionProof, MerkleTree};
use primitives::{
    CheckpointStatement, ClusterId, Digest, Domain, HlcTimestamp, PulseNumber, SeqNum,
};
use serde::{Deserialize, Serialize};

/// The header of one pulse. Its digest is `Digest::of(Domain::PulseHeader,
/// header.to_bytes())` over the fixed 162-byte layout of FORMAT.md.
///
/// The serde derives only let other crates carry a header inside their own
/// messages (through `primitives::codec`); what is hashed and signed is
/// always [`PulseHeader::to_bytes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PulseHeader {
    /// The cluster.
    pub cluster: ClusterId,
    /// The pulse's number.
    pub pulse: PulseNumber,
    /// The first batch the pulse covers.
    pub first_seq: SeqNum,
    /// The last batch the pulse covers (the PBFT checkpoint's seq).
    pub last_seq: SeqNum,
    /// The Merkle root over the batches' leaves, see [`batch_leaf_bytes`].
    pub batches_root: Digest,
    /// The state machine's digest after executing `last_seq`.
    pub state_digest: Digest,
    /// The digest of the previous pulse's header; [`Digest::ZERO`] for the
    /// first pulse of a cluster.
    pub previous: Digest,
    /// The effective time of batch `last_seq`.
    pub time: HlcTimestamp,
}

impl PulseHeader {
    /// The header's digest, what a CHECKPOINT signs and what the next
    /// header names as `previous`.
    pub fn digest(&self) -> Digest {
        Digest::of(Domain::PulseHeader, &self.to_bytes())
    }

    /// The canonical bytes (FORMAT.md, "Pulse header").
    pub fn to_bytes(&self) -> Vec<u8> {
        format::encode_header(self)
    }

    /// The statement a replica signs as its PBFT CHECKPOINT for this pulse.
    pub fn checkpoint_statement(&self) -> CheckpointStatement {
        CheckpointStatement {
            cluster: self.cluster,
            seq: self.last_seq,
            header: self.digest(),
        }
    }

    /// The number of batches the header covers, or an error if its range
    /// is empty.
    pub fn batch_count(&self) -> Result<u64, VerifyError> {
        if self.first_seq > self.last_seq {
            return Err(VerifyError::HeaderSeqRange {
                first: self.first_seq,
                last: self.last_seq,
            });
        }
        // Cannot overflow unless the range is all of u64, which no log holds.
        (self.last_seq.0 - self.first_seq.0)
            .checked_add(1)
            .ok_or(VerifyError::HeaderSeqRange {
                first: self.first_seq,
                last: self.last_seq,
            })
    }
}

/// The leaf of batch `seq` in its pulse's tree: `seq` (u64 big-endian) ‖
/// receipts root, 40 bytes. Naming the seq in the leaf means a batch root
/// can never be presented as another batch's, whatever the proof's index.
pub fn batch_leaf_bytes(seq: SeqNum, receipts_root: &Digest) -> [u8; 40] {
    let mut leaf = [0u8; 40];
    leaf[..8].copy_from_slice(&seq.0.to_be_bytes());
    leaf[8..].copy_from_slice(receipts_root.as_bytes());
    leaf
}

/// The tree over the receipts roots of a pulse's consecutive batches,
/// `first_seq ..= last_seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PulseBatches {
    first_seq: SeqNum,
    tree: MerkleTree,
}

impl PulseBatches {
    /// The tree over `receipts_roots[i]`, the root of batch `first_seq + i`.
    /// Panics on no roots: a pulse covers at least one batch.
    pub fn new(first_seq: SeqNum, receipts_roots: &[Digest]) -> PulseBatches {
        assert!(
            !receipts_roots.is_empty(),
            "a pulse covers at least one batch"
        );
        let count = receipts_roots.len() as u64;
        assert!(first_seq.0.checked_add(count - 1).is_some(), "seq overflow");
        let leaves = (first_seq.0..)
            .zip(receipts_roots)
            .map(|(seq, root)| leaf_hash(&batch_leaf_bytes(SeqNum(seq), root)))
            .collect();
        PulseBatches {
            first_seq,
            tree: MerkleTree::from_leaf_hashes(leaves),
        }
    }

    /// The first batch.
    pub fn first_seq(&self) -> SeqNum {
        self.first_seq
    }

    /// The last batch.
    pub fn last_seq(&self) -> SeqNum {
        SeqNum(self.first_seq.0 + self.tree.len() - 1)
    }

    /// The header's `batches_root`.
    pub fn root(&self) -> Digest {
        self.tree.root()
    }

    /// The path of batch `seq`'s leaf to [`Self::root`], or `None` if the
    /// pulse does not cover `seq`.
    pub fn proof(&self, seq: SeqNum) -> Option<InclusionProof> {
        let index = seq.0.checked_sub(self.first_seq.0)?;
        self.tree.proof(index)
    }

    /// The pulse's header. `previous` is the previous header's
    /// [`PulseHeader::digest`] ([`Digest::ZERO`] for the first pulse), `time`
    /// the effective time of the last batch.
    pub fn header(
        &self,
        cluster: ClusterId,
        pulse: PulseNumber,
        state_digest: Digest,
        previous: Digest,
        time: HlcTimestamp,
    ) -> PulseHeader {
        PulseHeader {
            cluster,
            pulse,
            first_seq: self.first_seq,
            last_seq: self.last_seq(),
            batches_root: self.root(),
            state_digest,
            previous,
            time,
        }
    }
}

/// Checks that `next` directly follows `previous` in one cluster's chain:
/// same cluster, pulse number + 1, seq range continuing without gap,
/// `next.previous == previous.digest()`, effective time increasing, both
/// ranges non-empty. Pure: checks no signature.
pub fn verify_link(previous: &PulseHeader, next: &PulseHeader) -> Result<(), VerifyError> {
    previous.batch_count()?;
    next.batch_count()?;
    if previous.cluster != next.cluster {
        return Err(VerifyError::ChainClusterChanged {
            previous: previous.cluster,
            next: next.cluster,
        });
    }
    if previous.pulse.0.checked_add(1) != Some(next.pulse.0) {
        return Err(VerifyError::PulseNotConsecutive {
            previous: previous.pulse,
            next: next.pulse,
        });
    }
    if previous.last_seq.0.checked_add(1) != Some(next.first_seq.0) {
        return Err(VerifyError::SeqNotContiguous {
            previous_last: previous.last_seq,
            next_first: next.first_seq,
        });
    }
    let expected = previous.digest();
    if next.previous != expected {
        return Err(VerifyError::PreviousMismatch {
            expected,
            found: next.previous,
        });
    }
    if next.time <= previous.time {
        return Err(VerifyError::TimeNotIncreasing);
    }
    Ok(())
}
