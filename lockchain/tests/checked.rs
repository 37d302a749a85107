//! Remembered signature checks (`Verifier::remembering`): the verdicts are
//! the plain verifier's, only signatures already found valid are skipped,
//! and the memory is bounded.

mod common;

use common::{batch_proof, cluster};
use lockchain::{CheckedSignatures, ReceiptBatchProof, Threshold, VerifyError};
use primitives::{ReplicaId, SeqNum};
use proptest::prelude::*;
use std::sync::Arc;

#[test]
fn a_valid_signature_is_remembered_and_a_bad_one_never_is() {
    let c = cluster(4);
    let checked = Arc::new(CheckedSignatures::new(64));
    let verifier = c.verifier.clone().remembering(checked.clone());
    let good = batch_proof(&c, SeqNum(3), 4, 1, &[0, 2]);
    assert_eq!(
        verifier.verify_receipt_in_batch(&good, Threshold::WeakQuorum),
        Ok(())
    );
    assert_eq!(checked.len(), 2, "both signatures remembered");
    // Another receipt of the same batch, with one more signer: only the
    // new signature is checked, and remembered.
    let other = batch_proof(&c, SeqNum(3), 4, 2, &[0, 2, 3]);
    assert_eq!(
        verifier.verify_receipt_in_batch(&other, Threshold::Quorum),
        Ok(())
    );
    assert_eq!(checked.len(), 3);

    // A remembered signer next to a bad one: still refused, naming it.
    let mut bad = good.clone();
    bad.certificate.signatures[1].signature.0[7] ^= 1;
    assert_eq!(
        verifier.verify_receipt_in_batch(&bad, Threshold::WeakQuorum),
        Err(VerifyError::BadSignature {
            replica: ReplicaId(2)
        })
    );
    assert_eq!(checked.len(), 3, "a failed check is not remembered");
    // A remembered signature credited to another replica is not a hit.
    let mut moved = good.clone();
    moved.certificate.signatures[1].replica = ReplicaId(1);
    assert_eq!(
        verifier.verify_receipt_in_batch(&moved, Threshold::WeakQuorum),
        Err(VerifyError::BadSignature {
            replica: ReplicaId(1)
        })
    );
    // Nor is it over another statement.
    let mut other_seq = good.certificate.clone();
    other_seq.statement.seq = SeqNum(4);
    assert_eq!(
        verifier.verify_batch_certificate(&other_seq, Threshold::WeakQuorum),
        Err(VerifyError::BadSignature {
            replica: ReplicaId(0)
        })
    );
    // Structure is still checked before the memory is asked.
    let mut twice = good.clone();
    twice.certificate.signatures[1] = twice.certificate.signatures[0];
    assert_eq!(
        verifier.verify_receipt_in_batch(&twice, Threshold::WeakQuorum),
        Err(VerifyError::DuplicateSigner {
            replica: ReplicaId(0)
        })
    );
}

#[test]
fn the_memory_forgets_the_oldest_past_its_bound() {
    let c = cluster(4);
    let checked = Arc::new(CheckedSignatures::new(5));
    let verifier = c.verifier.clone().remembering(checked.clone());
    for seq in 1..=10 {
        let proof = batch_proof(&c, SeqNum(seq), 2, 0, &[0, 1]);
        assert_eq!(
            verifier.verify_receipt_in_batch(&proof, Threshold::WeakQuorum),
            Ok(())
        );
        assert!(checked.len() <= 5, "bound held: {}", checked.len());
    }
    assert_eq!(checked.len(), 5);
}

/// One step of the property below: a proof of batch `seq` signed by
/// `signers`, with signature `corrupt` (if any) flipped.
fn proof_for(
    c: &common::Cluster,
    seq: u64,
    signers: &[u16],
    corrupt: Option<usize>,
) -> ReceiptBatchProof {
    let mut proof = batch_proof(c, SeqNum(seq), 3, (seq % 3) as usize, signers);
    if let Some(i) = corrupt {
        let i = i % proof.certificate.signatures.len();
        proof.certificate.signatures[i].signature.0[seq as usize % 64] ^= 0x10;
    }
    proof
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any sequence of good and corrupted certificates gets the same
    /// verdict from a remembering verifier (small memory, so entries are
    /// forgotten too) as from a plain one.
    #[test]
    fn remembered_verdicts_match_the_plain_verifier(
        steps in prop::collection::vec(
            (1u64..6, prop::sample::subsequence(vec![0u16, 1, 2, 3], 1..=4), prop::option::of(0usize..4), any::<bool>()),
            1..24,
        ),
    ) {
        let c = cluster(4);
        let verifier = c.verifier.clone().remembering(Arc::new(CheckedSignatures::new(6)));
        for (seq, signers, corrupt, quorum) in steps {
            let proof = proof_for(&c, seq, &signers, corrupt);
            let threshold = if quorum { Threshold::Quorum } else { Threshold::WeakQuorum };
            prop_assert_eq!(
                verifier.verify_receipt_in_batch(&proof, threshold),
                c.verifier.verify_receipt_in_batch(&proof, threshold)
            );
        }
    }
}
