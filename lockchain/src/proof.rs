//! Offline verification: what a client or an auditor holds, and the
//! [`Verifier`] that checks it against the cluster's public keys alone.

use crate::certificate::{BatchCertificate, PulseCertificate, Threshold};
use crate::checked::CheckedSignatures;
use crate::error::{ChainError, VerifyError};
use crate::merkle::{leaf_hash, receipt_leaf_hash, InclusionProof};
use crate::pulse::{batch_leaf_bytes, verify_link};
use primitives::{ClusterId, Digest, Membership, Receipt};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// "This op happened in batch `seq`": a receipt, its path to the batch's
/// receipts root, and the batch certificate. What a reply carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBatchProof {
    /// The receipt.
    pub receipt: Receipt,
    /// Its path in the batch's receipts tree.
    pub receipt_path: InclusionProof,
    /// Signatures over `(cluster, seq, receipts root)`.
    pub certificate: BatchCertificate,
}

/// The receipt is in the statement's batch: same seq, and its path leads
/// to the statement's receipts root (signatures not checked).
fn receipt_in_statement(proof: &ReceiptBatchProof) -> Result<(), VerifyError> {
    let statement = &proof.certificate.statement;
    if proof.receipt.seq != statement.seq {
        return Err(VerifyError::ReceiptSeqMismatch {
            receipt: proof.receipt.seq,
            certificate: statement.seq,
        });
    }
    proof
        .receipt_path
        .verify(receipt_leaf_hash(&proof.receipt), statement.receipts_root)
        .map_err(VerifyError::ReceiptPath)
}

/// "This op happened, and the pulse that covers it is certified": a
/// receipt, its path to the batch root, the batch root's path to the
/// pulse's batches root, and the header with its quorum certificate. What
/// an auditor keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptPulseProof {
    /// The receipt.
    pub receipt: Receipt,
    /// Its path in the batch's receipts tree.
    pub receipt_path: InclusionProof,
    /// The batch's receipts root. Implied by receipt and path; carried so
    /// that a bad receipt (or receipt path) and a bad batch path fail with
    /// different errors.
    pub receipts_root: Digest,
    /// The path of the batch's leaf (see [`batch_leaf_bytes`]) in the
    /// pulse's batches tree.
    pub batch_path: InclusionProof,
    /// The pulse header and its 2f + 1 CHECKPOINT signatures.
    pub pulse: PulseCertificate,
}

/// Verifies proofs and chains of one cluster, knowing only its membership
/// (public keys). Holds the cluster id, computed once.
#[derive(Clone, Debug)]
pub struct Verifier {
    membership: Membership,
    cluster: ClusterId,
    /// Batch-certificate signatures found valid before, if remembered.
    checked: Option<Arc<CheckedSignatures>>,
}

impl Verifier {
    /// A verifier for the cluster `membership` describes.
    pub fn new(membership: Membership) -> Verifier {
        let cluster = membership.cluster_id();
        Verifier {
            membership,
            cluster,
            checked: None,
        }
    }

    /// This verifier, remembering in `checked` the batch-certificate
    /// signatures it finds valid and not checking those again (verdicts do
    /// not change: only a signature already verified is skipped).
    pub fn remembering(mut self, checked: Arc<CheckedSignatures>) -> Verifier {
        self.checked = Some(checked);
        self
    }

    /// The replica set.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The cluster id everything must name.
    pub fn cluster(&self) -> ClusterId {
        self.cluster
    }

    fn check_cluster(&self, found: ClusterId) -> Result<(), VerifyError> {
        if found != self.cluster {
            return Err(VerifyError::ClusterMismatch {
                expected: self.cluster,
                found,
            });
        }
        Ok(())
    }

    /// Checks a batch certificate: cluster, signer set, `threshold`
    /// distinct signers, every signature.
    pub fn verify_batch_certificate(
        &self,
        certificate: &BatchCertificate,
        threshold: Threshold,
    ) -> Result<(), VerifyError> {
        self.check_cluster(certificate.statement.cluster)?;
        certificate.verify_signatures_remembered(
            &self.membership,
            threshold,
            self.checked.as_deref(),
        )
    }

    /// Checks a pulse's quorum certificate: cluster, non-empty range,
    /// 2f + 1 distinct signers, every signature.
    pub fn verify_pulse_certificate(
        &self,
        certificate: &PulseCertificate,
    ) -> Result<(), VerifyError> {
        self.check_cluster(certificate.header.cluster)?;
        certificate.header.batch_count()?;
        certificate.verify_signatures(&self.membership)
    }

    /// Checks that the receipt is in the certified batch: same seq, path to
    /// the certified receipts root, certificate with `threshold` signers.
    pub fn verify_receipt_in_batch(
        &self,
        proof: &ReceiptBatchProof,
        threshold: Threshold,
    ) -> Result<(), VerifyError> {
        self.check_cluster(proof.certificate.statement.cluster)?;
        receipt_in_statement(proof)?;
        proof.certificate.verify_signatures_remembered(
            &self.membership,
            threshold,
            self.checked.as_deref(),
        )
    }

    /// [`Verifier::verify_receipt_in_batch`] for a proof whose certificate
    /// is `verified`, one this verifier already checked (all ops of one
    /// reply share one batch certificate): the path and seq are checked,
    /// the signatures not again. Any other certificate is checked in full.
    pub fn verify_receipt_in_verified_batch(
        &self,
        proof: &ReceiptBatchProof,
        verified: &BatchCertificate,
        threshold: Threshold,
    ) -> Result<(), VerifyError> {
        if proof.certificate != *verified {
            return self.verify_receipt_in_batch(proof, threshold);
        }
        receipt_in_statement(proof)
    }

    /// Checks that the receipt is in a batch of a certified pulse: seq in
    /// the header's range, batch path at position `seq − first` of
    /// `last − first + 1`, receipt path to the claimed receipts root, that
    /// root's batch leaf on a path to the header's batches root, then the
    /// quorum certificate.
    pub fn verify_receipt_in_pulse(&self, proof: &ReceiptPulseProof) -> Result<(), VerifyError> {
        let header = &proof.pulse.header;
        self.check_cluster(header.cluster)?;
        let batches = header.batch_count()?;
        let seq = proof.receipt.seq;
        if seq < header.first_seq || seq > header.last_seq {
            return Err(VerifyError::SeqOutsidePulse {
                seq,
                first: header.first_seq,
                last: header.last_seq,
            });
        }
        let expected_index = seq.0 - header.first_seq.0;
        let path = &proof.batch_path;
        if path.index != expected_index || path.size != batches {
            return Err(VerifyError::BatchPathPosition {
                index: path.index,
                size: path.size,
                expected_index,
                expected_size: batches,
            });
        }
        proof
            .receipt_path
            .verify(receipt_leaf_hash(&proof.receipt), proof.receipts_root)
            .map_err(VerifyError::ReceiptPath)?;
        let batch_leaf = leaf_hash(&batch_leaf_bytes(seq, &proof.receipts_root));
        path.verify(batch_leaf, header.batches_root)
            .map_err(VerifyError::BatchPath)?;
        proof.pulse.verify_signatures(&self.membership)
    }

    /// Checks a chain of certified headers: every quorum certificate, and
    /// every link ([`verify_link`]: same cluster, consecutive pulses and
    /// seqs, previous-header digests, increasing time). Where the chain
    /// starts is the caller's business: compare `chain[0].header.previous`
    /// with a header you trust. An empty chain is trivially continuous.
    pub fn verify_continuity(&self, chain: &[PulseCertificate]) -> Result<(), ChainError> {
        let at = |position: usize| move |error| ChainError { position, error };
        for (position, certificate) in chain.iter().enumerate() {
            if position > 0 {
                verify_link(&chain[position - 1].header, &certificate.header)
                    .map_err(at(position))?;
            }
            self.verify_pulse_certificate(certificate)
                .map_err(at(position))?;
        }
        Ok(())
    }
}
