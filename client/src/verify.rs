//! Checking what a gateway answered, against the cluster's public keys
//! alone: a lying gateway can stall the client, never fool it.
//!
//! A certified reply must carry exactly one proof per op, in op order;
//! each proof's receipt must name *this* request's digest and that op's
//! index, all at the reply's seq; each must pass
//! [`Verifier::verify_receipt_in_batch`] (cluster id, Merkle path to the
//! signed receipts root, enough distinct configured signers, every
//! signature); and each result must decode.

use crate::api::Reply;
use lockchain::{
    PulseCertificate, ReceiptBatchProof, ReceiptPulseProof, Threshold, Verifier, VerifyError,
};
use primitives::{CodecError, Digest, Request, SeqNum};
use qlock::{decode_outcome, Durability, Op, OpOutcome};

/// Why a reply (or event, or proof) from one replica was not believed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyReplyError {
    /// The reply is about another request.
    #[error("reply is for request {found}, not {expected}")]
    WrongRequest {
        /// This request's digest.
        expected: Digest,
        /// What the reply (or one of its receipts) names.
        found: Digest,
    },
    /// Not one proof per op.
    #[error("reply carries {found} proofs for {expected} ops")]
    ProofCount {
        /// Ops in the request.
        expected: usize,
        /// Proofs in the reply.
        found: usize,
    },
    /// A proof is for another op of the request.
    #[error("proof {position} is for op {found}")]
    OpIndex {
        /// Its position in the reply.
        position: usize,
        /// The op index its receipt names.
        found: u32,
    },
    /// A receipt is of another batch than the reply says.
    #[error("receipt {op} is of batch {found:?}, the reply says {expected:?}")]
    SeqMismatch {
        /// The op.
        op: usize,
        /// The reply's seq.
        expected: SeqNum,
        /// The receipt's.
        found: SeqNum,
    },
    /// A proof does not verify (which check failed is inside).
    #[error("proof of op {op} does not verify: {source}")]
    Proof {
        /// The op.
        op: usize,
        /// The failed check.
        source: VerifyError,
    },
    /// A certified result does not decode as an op outcome.
    #[error("result of op {op} does not decode: {source}")]
    Result {
        /// The op.
        op: usize,
        /// The codec's error.
        source: CodecError,
    },
    /// A chain of pulse headers does not verify.
    #[error("pulse chain: {0}")]
    Chain(#[from] lockchain::ChainError),
    /// An answer of the wrong kind for the question.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

/// The signatures a reply to `request` must carry: 2f + 1 when any op is a
/// `sync` queue submit (durable on a quorum), f + 1 otherwise.
pub fn reply_threshold(ops: &[Op]) -> Threshold {
    let sync = ops.iter().any(|op| {
        matches!(
            op,
            Op::Submit {
                durability: Durability::Sync,
                ..
            }
        )
    });
    if sync {
        Threshold::Quorum
    } else {
        Threshold::WeakQuorum
    }
}

/// Checks a certified reply to `request` and returns the decoded outcome
/// of each op, in op order.
pub fn verify_reply(
    verifier: &Verifier,
    request: &Request,
    reply: &Reply,
    threshold: Threshold,
) -> Result<Vec<OpOutcome>, VerifyReplyError> {
    let digest = request.digest();
    if reply.request != digest {
        return Err(VerifyReplyError::WrongRequest {
            expected: digest,
            found: reply.request,
        });
    }
    let ops = request.body.ops.len();
    if reply.proofs.len() != ops {
        return Err(VerifyReplyError::ProofCount {
            expected: ops,
            found: reply.proofs.len(),
        });
    }
    // Structure of every proof first: it costs no crypto.
    for (position, proof) in reply.proofs.iter().enumerate() {
        let receipt = &proof.receipt;
        if receipt.request != digest {
            return Err(VerifyReplyError::WrongRequest {
                expected: digest,
                found: receipt.request,
            });
        }
        if receipt.op_index as usize != position {
            return Err(VerifyReplyError::OpIndex {
                position,
                found: receipt.op_index,
            });
        }
        if receipt.seq != reply.seq {
            return Err(VerifyReplyError::SeqMismatch {
                op: position,
                expected: reply.seq,
                found: receipt.seq,
            });
        }
    }
    let mut outcomes = Vec::with_capacity(ops);
    // The ops of one reply share the batch certificate: its signatures are
    // checked once (they were 2 × ops signature checks per reply).
    let mut checked: Option<&lockchain::BatchCertificate> = None;
    for (op, proof) in reply.proofs.iter().enumerate() {
        match checked {
            Some(certificate) => {
                verifier.verify_receipt_in_verified_batch(proof, certificate, threshold)
            }
            None => verifier.verify_receipt_in_batch(proof, threshold),
        }
        .map_err(|source| VerifyReplyError::Proof { op, source })?;
        checked = Some(&proof.certificate);
        let outcome = decode_outcome(&proof.receipt.result.0)
            .map_err(|source| VerifyReplyError::Result { op, source })?;
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Checks a pushed wait outcome (f + 1 signers) and decodes its result.
pub fn verify_event(
    verifier: &Verifier,
    proof: &ReceiptBatchProof,
) -> Result<OpOutcome, VerifyReplyError> {
    verifier
        .verify_receipt_in_batch(proof, Threshold::WeakQuorum)
        .map_err(|source| VerifyReplyError::Proof {
            op: proof.receipt.op_index as usize,
            source,
        })?;
    decode_outcome(&proof.receipt.result.0).map_err(|source| VerifyReplyError::Result {
        op: proof.receipt.op_index as usize,
        source,
    })
}

/// Checks a receipt's proof up to a certified pulse, and that it is the
/// receipt asked for.
pub fn verify_pulse_proof(
    verifier: &Verifier,
    proof: &ReceiptPulseProof,
    request: Digest,
    op_index: u32,
) -> Result<OpOutcome, VerifyReplyError> {
    if proof.receipt.request != request {
        return Err(VerifyReplyError::WrongRequest {
            expected: request,
            found: proof.receipt.request,
        });
    }
    if proof.receipt.op_index != op_index {
        return Err(VerifyReplyError::OpIndex {
            position: op_index as usize,
            found: proof.receipt.op_index,
        });
    }
    verifier
        .verify_receipt_in_pulse(proof)
        .map_err(|source| VerifyReplyError::Proof {
            op: op_index as usize,
            source,
        })?;
    decode_outcome(&proof.receipt.result.0).map_err(|source| VerifyReplyError::Result {
        op: op_index as usize,
        source,
    })
}

/// Checks certified pulse headers answered for `from..`: they start at
/// `from`, are consecutive, and every quorum certificate and link holds.
pub fn verify_pulses(
    verifier: &Verifier,
    from: primitives::PulseNumber,
    pulses: &[PulseCertificate],
) -> Result<(), VerifyReplyError> {
    if let Some(first) = pulses.first() {
        if first.header.pulse != from {
            return Err(VerifyReplyError::Unexpected(format!(
                "asked for pulses from {from:?}, got {:?} first",
                first.header.pulse
            )));
        }
    }
    verifier.verify_continuity(pulses)?;
    Ok(())
}
