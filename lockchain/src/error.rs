//! Why a proof, certificate or chain was refused: one variant per check, so
//! a caller (and a test) can tell exactly which one failed.

use crate::merkle::MerkleError;
use primitives::{ClusterId, CodecError, Digest, PulseNumber, ReplicaId, SeqNum};

/// A failed verification. Checks run cheapest first: cluster, sequence
/// numbers, Merkle paths, signer set, then signatures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The object names another cluster than the verifier's.
    #[error("made for cluster {found}, expected {expected}")]
    ClusterMismatch {
        /// The verifier's cluster.
        expected: ClusterId,
        /// The cluster the object names.
        found: ClusterId,
    },
    /// The receipt names another batch than its certificate.
    #[error("receipt is of batch {receipt:?}, the certificate of batch {certificate:?}")]
    ReceiptSeqMismatch {
        /// The receipt's seq.
        receipt: SeqNum,
        /// The certificate's seq.
        certificate: SeqNum,
    },
    /// The receipt's batch is not in the pulse's seq range.
    #[error("receipt of batch {seq:?} is outside pulse range {first:?}..={last:?}")]
    SeqOutsidePulse {
        /// The receipt's seq.
        seq: SeqNum,
        /// The pulse's first seq.
        first: SeqNum,
        /// The pulse's last seq.
        last: SeqNum,
    },
    /// The header's seq range is empty (first after last).
    #[error("pulse header range {first:?}..={last:?} is empty")]
    HeaderSeqRange {
        /// The first seq.
        first: SeqNum,
        /// The last seq.
        last: SeqNum,
    },
    /// The receipt's path does not lead to the batch's receipts root.
    #[error("receipt path: {0}")]
    ReceiptPath(MerkleError),
    /// The batch path's position does not match the receipt's seq within
    /// the pulse (index `seq − first`, size `last − first + 1`).
    #[error("batch path is for leaf {index} of {size}, expected leaf {expected_index} of {expected_size}")]
    BatchPathPosition {
        /// The path's index.
        index: u64,
        /// The path's tree size.
        size: u64,
        /// The index the receipt's seq calls for.
        expected_index: u64,
        /// The number of batches in the pulse.
        expected_size: u64,
    },
    /// The batch root's path does not lead to the header's batches root.
    #[error("batch path: {0}")]
    BatchPath(MerkleError),
    /// A signer id is not a configured replica.
    #[error("signer {replica:?} is not a configured replica")]
    UnknownSigner {
        /// The signer.
        replica: ReplicaId,
    },
    /// A replica appears twice among the signers.
    #[error("signer {replica:?} appears twice")]
    DuplicateSigner {
        /// The signer.
        replica: ReplicaId,
    },
    /// Fewer distinct signers than the caller requires.
    #[error("{have} distinct signers, {need} required")]
    TooFewSigners {
        /// Distinct configured signers present.
        have: usize,
        /// The threshold.
        need: usize,
    },
    /// A signature does not verify for its replica's key and the statement
    /// (the statement, or the signature, or the signer id was changed).
    #[error("signature of {replica:?} does not verify")]
    BadSignature {
        /// The signer whose signature failed (the first, in certificate
        /// order).
        replica: ReplicaId,
    },
    /// Consecutive headers of a chain belong to different clusters.
    #[error("chain switches cluster from {previous} to {next}")]
    ChainClusterChanged {
        /// The earlier header's cluster.
        previous: ClusterId,
        /// The later header's cluster.
        next: ClusterId,
    },
    /// Pulse numbers of consecutive headers do not increase by one.
    #[error("pulse {next:?} does not follow pulse {previous:?}")]
    PulseNotConsecutive {
        /// The earlier pulse.
        previous: PulseNumber,
        /// The later pulse.
        next: PulseNumber,
    },
    /// The later header's range does not start right after the earlier's.
    #[error("pulse starts at {next_first:?}, the previous one ended at {previous_last:?}")]
    SeqNotContiguous {
        /// The earlier header's last seq.
        previous_last: SeqNum,
        /// The later header's first seq.
        next_first: SeqNum,
    },
    /// The later header's `previous` is not the earlier header's digest.
    #[error("header names previous {found}, the previous header's digest is {expected}")]
    PreviousMismatch {
        /// The earlier header's digest.
        expected: Digest,
        /// What the later header names.
        found: Digest,
    },
    /// Effective time did not increase from one pulse to the next.
    #[error("pulse time does not increase")]
    TimeNotIncreasing,
}

/// A chain of certified headers failed at one position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("header {position} of the chain: {error}")]
pub struct ChainError {
    /// The index of the failing header (for a broken link: the later one).
    pub position: usize,
    /// What failed.
    pub error: VerifyError,
}

/// Bytes that are not an encoding of the expected object (see FORMAT.md).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("input ends inside {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// The object ended before the input did.
    #[error("{extra} trailing bytes after the object")]
    TrailingBytes {
        /// How many bytes were left.
        extra: usize,
    },
    /// The input does not start with the object's magic.
    #[error("magic {found:02x?} is not {expected:?}")]
    BadMagic {
        /// The magic the object needs.
        expected: &'static str,
        /// The first four bytes found.
        found: [u8; 4],
    },
    /// A count or length is beyond its bound.
    #[error("{field} of {len} exceeds the limit of {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// The length found.
        len: u64,
        /// The bound.
        max: u64,
    },
    /// The receipt bytes do not decode as a receipt.
    #[error("receipt: {0}")]
    Receipt(CodecError),
    /// The receipt bytes decode, but are not the receipt's one canonical
    /// encoding ([`primitives::Receipt::leaf_bytes`]).
    #[error("receipt bytes are not canonical")]
    ReceiptNotCanonical,
}
