//! Offline verification: honest proofs verify; every kind of tampering the
//! issue lists (receipt, path, header, signature, signer set, cluster id)
//! is refused with the error naming the check that failed.

mod common;

use common::{batch_proof, cluster, pulse, receipts, Cluster};
use lockchain::{
    verify_link, DecodeLimits, MerkleError, PulseBatches, ReceiptBatchProof, ReceiptPulseProof,
    ReceiptTree, ReplicaSignature, Threshold, VerifyError,
};
use primitives::{ClusterId, Digest, ReplicaId, SeqNum};

fn is_root_mismatch(error: &MerkleError) -> bool {
    matches!(error, MerkleError::RootMismatch { .. })
}

// ---- batch certificates -------------------------------------------------

#[test]
fn batch_certificate_thresholds_are_the_callers() {
    let c = cluster(4); // f = 1: weak quorum 2, quorum 3
    let two = batch_proof(&c, SeqNum(7), 5, 3, &[0, 2]);
    assert_eq!(
        c.verifier
            .verify_receipt_in_batch(&two, Threshold::WeakQuorum),
        Ok(())
    );
    assert_eq!(
        c.verifier.verify_receipt_in_batch(&two, Threshold::Quorum),
        Err(VerifyError::TooFewSigners { have: 2, need: 3 })
    );
    let three = batch_proof(&c, SeqNum(7), 5, 3, &[3, 1, 0]);
    assert_eq!(
        c.verifier
            .verify_receipt_in_batch(&three, Threshold::Quorum),
        Ok(())
    );
    let one = batch_proof(&c, SeqNum(7), 5, 3, &[1]);
    assert_eq!(
        c.verifier
            .verify_receipt_in_batch(&one, Threshold::WeakQuorum),
        Err(VerifyError::TooFewSigners { have: 1, need: 2 })
    );
}

#[test]
fn development_cluster_of_one_needs_one_signer() {
    let c = cluster(1);
    let proof = batch_proof(&c, SeqNum(1), 1, 0, &[0]);
    assert_eq!(
        c.verifier
            .verify_receipt_in_batch(&proof, Threshold::Quorum),
        Ok(())
    );
}

#[test]
fn signatures_are_sorted_and_checked_as_they_are_added() {
    let c = cluster(4);
    let certificate = c.batch_certificate(SeqNum(3), Digest([5; 32]), &[2, 0, 3]);
    let order: Vec<u16> = certificate.signatures.iter().map(|s| s.replica.0).collect();
    assert_eq!(order, vec![0, 2, 3]);

    let mut growing = certificate.clone();
    let sig = c.sign_batch(&growing.statement, 2);
    assert_eq!(
        growing.add(&c.membership, ReplicaId(2), sig),
        Err(VerifyError::DuplicateSigner {
            replica: ReplicaId(2)
        })
    );
    assert_eq!(
        growing.add(&c.membership, ReplicaId(4), sig),
        Err(VerifyError::UnknownSigner {
            replica: ReplicaId(4)
        })
    );
    // Replica 2's signature is not replica 1's.
    assert_eq!(
        growing.add(&c.membership, ReplicaId(1), sig),
        Err(VerifyError::BadSignature {
            replica: ReplicaId(1)
        })
    );
    assert_eq!(growing, certificate, "a refused signature changes nothing");
}

#[test]
fn a_batch_signature_is_not_a_checkpoint_signature() {
    let c = cluster(4);
    let p = pulse(&c, 0, SeqNum(1), &[2], Digest::ZERO, &[0, 1, 2]);
    let header = p.certificate.header;
    // A batch statement that happens to carry the header digest as root.
    let batch = c.batch_certificate(header.last_seq, header.digest(), &[0, 1, 2]);
    let mut forged = p.certificate.clone();
    forged.signatures = batch.signatures;
    assert_eq!(
        c.verifier.verify_pulse_certificate(&forged),
        Err(VerifyError::BadSignature {
            replica: ReplicaId(0)
        })
    );
}

// ---- receipts in batches: tampering -------------------------------------

#[test]
fn tampered_batch_proofs_name_the_failed_check() {
    let c = cluster(4);
    let good = batch_proof(&c, SeqNum(9), 6, 4, &[0, 1, 3]);
    let verify = |p: &ReceiptBatchProof| c.verifier.verify_receipt_in_batch(p, Threshold::Quorum);
    assert_eq!(verify(&good), Ok(()));

    // One byte of the receipt.
    let mut p = good.clone();
    p.receipt.result.0[0] ^= 1;
    assert!(matches!(verify(&p), Err(VerifyError::ReceiptPath(e)) if is_root_mismatch(&e)));
    let mut p = good.clone();
    p.receipt.op_index += 1;
    assert!(matches!(verify(&p), Err(VerifyError::ReceiptPath(e)) if is_root_mismatch(&e)));
    let mut p = good.clone();
    p.receipt.seq = SeqNum(10);
    assert_eq!(
        verify(&p),
        Err(VerifyError::ReceiptSeqMismatch {
            receipt: SeqNum(10),
            certificate: SeqNum(9)
        })
    );

    // One byte of the path.
    let mut p = good.clone();
    p.receipt_path.path[1].0[31] ^= 0x80;
    assert!(matches!(verify(&p), Err(VerifyError::ReceiptPath(e)) if is_root_mismatch(&e)));
    let mut p = good.clone();
    p.receipt_path.index = 5;
    assert!(matches!(verify(&p), Err(VerifyError::ReceiptPath(_))));

    // One byte of the certified root: every signature then fails... but the
    // path is checked first, against the root the certificate claims.
    let mut p = good.clone();
    p.certificate.statement.receipts_root.0[0] ^= 1;
    assert!(matches!(verify(&p), Err(VerifyError::ReceiptPath(e)) if is_root_mismatch(&e)));

    // One byte of a signature.
    let mut p = good.clone();
    p.certificate.signatures[1].signature.0[10] ^= 1;
    assert_eq!(
        verify(&p),
        Err(VerifyError::BadSignature {
            replica: ReplicaId(1)
        })
    );

    // The cluster id.
    let mut p = good.clone();
    p.certificate.statement.cluster.0 .0[0] ^= 1;
    assert!(matches!(
        verify(&p),
        Err(VerifyError::ClusterMismatch { .. })
    ));

    // The seq of the whole statement (receipt and certificate moved together).
    let mut p = good.clone();
    p.receipt.seq = SeqNum(10);
    p.certificate.statement.seq = SeqNum(10);
    assert!(matches!(verify(&p), Err(VerifyError::ReceiptPath(_))));
}

#[test]
fn tampered_signer_sets_are_refused() {
    let c = cluster(7); // f = 2: quorum 5
    let good = batch_proof(&c, SeqNum(2), 3, 0, &[0, 1, 2, 4, 6]);
    let verify = |p: &ReceiptBatchProof| c.verifier.verify_receipt_in_batch(p, Threshold::Quorum);
    assert_eq!(verify(&good), Ok(()));

    // A duplicated signer padding the count.
    let mut p = good.clone();
    p.certificate.signatures[4] = p.certificate.signatures[0];
    assert_eq!(
        verify(&p),
        Err(VerifyError::DuplicateSigner {
            replica: ReplicaId(0)
        })
    );
    // An unconfigured signer id.
    let mut p = good.clone();
    p.certificate.signatures[2].replica = ReplicaId(7);
    assert_eq!(
        verify(&p),
        Err(VerifyError::UnknownSigner {
            replica: ReplicaId(7)
        })
    );
    // A signature credited to another (configured) replica.
    let mut p = good.clone();
    p.certificate.signatures[2].replica = ReplicaId(5);
    assert_eq!(
        verify(&p),
        Err(VerifyError::BadSignature {
            replica: ReplicaId(5)
        })
    );
    // Two signers' ids swapped.
    let mut p = good.clone();
    p.certificate.signatures.swap(0, 1);
    p.certificate.signatures[0].replica = ReplicaId(0);
    p.certificate.signatures[1].replica = ReplicaId(1);
    assert_eq!(
        verify(&p),
        Err(VerifyError::BadSignature {
            replica: ReplicaId(0)
        })
    );
    // A signer dropped below the quorum.
    let mut p = good.clone();
    p.certificate.signatures.pop();
    assert_eq!(
        verify(&p),
        Err(VerifyError::TooFewSigners { have: 4, need: 5 })
    );
    // Order does not matter.
    let mut p = good.clone();
    p.certificate.signatures.reverse();
    assert_eq!(verify(&p), Ok(()));
    // An extra bad signature is not ignored, even above the threshold.
    let mut p = good.clone();
    let mut extra = ReplicaSignature {
        replica: ReplicaId(3),
        signature: c.sign_batch(&p.certificate.statement, 3),
    };
    extra.signature.0[0] ^= 1;
    p.certificate.signatures.push(extra);
    assert_eq!(
        verify(&p),
        Err(VerifyError::BadSignature {
            replica: ReplicaId(3)
        })
    );
}

#[test]
fn empty_and_single_receipt_batches() {
    let c = cluster(4);
    // An empty heartbeat batch has the empty root and no provable receipt.
    let tree = ReceiptTree::new(&[]);
    assert_eq!(tree.root(), lockchain::merkle::empty_root());
    assert!(tree.proof(0).is_none());
    let proof = batch_proof(&c, SeqNum(4), 1, 0, &[0, 1, 2]);
    assert!(proof.receipt_path.path.is_empty());
    assert_eq!(
        c.verifier
            .verify_receipt_in_batch(&proof, Threshold::Quorum),
        Ok(())
    );
}

// ---- receipts in pulses ---------------------------------------------------

fn pulse_fixture(c: &Cluster) -> common::Pulse {
    // Batches 11..=15, including an empty heartbeat batch (13).
    pulse(
        c,
        3,
        SeqNum(11),
        &[4, 1, 0, 7, 2],
        Digest([8; 32]),
        &[0, 1, 2],
    )
}

#[test]
fn every_receipt_of_a_pulse_verifies() {
    let c = cluster(4);
    let p = pulse_fixture(&c);
    assert_eq!(c.verifier.verify_pulse_certificate(&p.certificate), Ok(()));
    for (b, batch) in p.batches.iter().enumerate() {
        for index in 0..batch.len() {
            let proof = p.receipt_proof(SeqNum(11 + b as u64), index);
            assert_eq!(c.verifier.verify_receipt_in_pulse(&proof), Ok(()));
        }
    }
}

#[test]
fn tampered_pulse_proofs_name_the_failed_check() {
    let c = cluster(4);
    let p = pulse_fixture(&c);
    let good = p.receipt_proof(SeqNum(14), 5);
    let verify = |p: &ReceiptPulseProof| c.verifier.verify_receipt_in_pulse(p);
    assert_eq!(verify(&good), Ok(()));

    // The receipt.
    let mut t = good.clone();
    t.receipt.request.0[3] ^= 4;
    assert!(matches!(verify(&t), Err(VerifyError::ReceiptPath(e)) if is_root_mismatch(&e)));
    let mut t = good.clone();
    t.receipt.seq = SeqNum(16);
    assert!(matches!(
        verify(&t),
        Err(VerifyError::SeqOutsidePulse { .. })
    ));
    let mut t = good.clone();
    t.receipt.seq = SeqNum(12);
    assert!(matches!(
        verify(&t),
        Err(VerifyError::BatchPathPosition { .. })
    ));

    // The receipt path.
    let mut t = good.clone();
    t.receipt_path.path[0].0[0] ^= 1;
    assert!(matches!(verify(&t), Err(VerifyError::ReceiptPath(e)) if is_root_mismatch(&e)));
    // The receipts root, with a receipt path that leads to it: it is not
    // the root of batch 14 in this pulse.
    let mut t = good.clone();
    let other = p.receipt_proof(SeqNum(11), 0);
    t.receipt = other.receipt.clone();
    t.receipt.seq = SeqNum(14);
    let forged = ReceiptTree::new(std::slice::from_ref(&t.receipt));
    t.receipt_path = forged.proof(0).unwrap();
    t.receipts_root = forged.root();
    assert!(matches!(verify(&t), Err(VerifyError::BatchPath(e)) if is_root_mismatch(&e)));
    let mut t = good.clone();
    t.receipt_path.path.pop();
    assert!(matches!(
        verify(&t),
        Err(VerifyError::ReceiptPath(MerkleError::PathLength { .. }))
    ));

    // The batch path.
    let mut t = good.clone();
    t.batch_path.path[1].0[7] ^= 2;
    assert!(matches!(verify(&t), Err(VerifyError::BatchPath(e)) if is_root_mismatch(&e)));
    let mut t = good.clone();
    t.batch_path.size = 6;
    assert!(matches!(
        verify(&t),
        Err(VerifyError::BatchPathPosition { .. })
    ));

    // The header: signed fields break the quorum certificate...
    let mut t = good.clone();
    t.pulse.header.state_digest.0[0] ^= 1;
    assert_eq!(
        verify(&t),
        Err(VerifyError::BadSignature {
            replica: ReplicaId(0)
        })
    );
    let mut t = good.clone();
    t.pulse.header.time.logical += 1;
    assert_eq!(
        verify(&t),
        Err(VerifyError::BadSignature {
            replica: ReplicaId(0)
        })
    );
    let mut t = good.clone();
    t.pulse.header.previous.0[31] ^= 1;
    assert_eq!(
        verify(&t),
        Err(VerifyError::BadSignature {
            replica: ReplicaId(0)
        })
    );
    // ...and the batches root no longer matches the path first.
    let mut t = good.clone();
    t.pulse.header.batches_root.0[0] ^= 1;
    assert!(matches!(verify(&t), Err(VerifyError::BatchPath(e)) if is_root_mismatch(&e)));
    let mut t = good.clone();
    t.pulse.header.last_seq = SeqNum(10);
    assert!(matches!(
        verify(&t),
        Err(VerifyError::HeaderSeqRange { .. })
    ));

    // A signature, the signer set, the cluster id.
    let mut t = good.clone();
    t.pulse.signatures[2].signature.0[40] ^= 1;
    assert_eq!(
        verify(&t),
        Err(VerifyError::BadSignature {
            replica: ReplicaId(2)
        })
    );
    let mut t = good.clone();
    t.pulse.signatures[2] = t.pulse.signatures[1];
    assert_eq!(
        verify(&t),
        Err(VerifyError::DuplicateSigner {
            replica: ReplicaId(1)
        })
    );
    let mut t = good.clone();
    t.pulse.signatures.pop();
    assert_eq!(
        verify(&t),
        Err(VerifyError::TooFewSigners { have: 2, need: 3 })
    );
    let mut t = good.clone();
    t.pulse.header.cluster = ClusterId(Digest([1; 32]));
    assert!(matches!(
        verify(&t),
        Err(VerifyError::ClusterMismatch { .. })
    ));
}

#[test]
fn another_cluster_with_the_same_keys_is_refused() {
    let c = cluster(4);
    let mut other = c.membership.clone();
    other.name = "another cluster".into();
    let other = lockchain::Verifier::new(other);
    let p = pulse_fixture(&c);
    assert!(matches!(
        other.verify_receipt_in_pulse(&p.receipt_proof(SeqNum(11), 0)),
        Err(VerifyError::ClusterMismatch { .. })
    ));
}

// ---- bytes --------------------------------------------------------------

#[test]
fn a_receipt_verifies_from_bytes_alone() {
    let c = cluster(4);
    let limits = DecodeLimits::default();
    let batch_bytes = batch_proof(&c, SeqNum(9), 6, 4, &[0, 1]).to_bytes();
    let pulse_bytes = pulse_fixture(&c).receipt_proof(SeqNum(15), 1).to_bytes();

    // What a client holds: the proof's bytes and the cluster's public keys.
    let verifier = lockchain::Verifier::new(c.membership.clone());
    let batch = ReceiptBatchProof::from_bytes(&batch_bytes, &limits).unwrap();
    assert_eq!(
        verifier.verify_receipt_in_batch(&batch, Threshold::WeakQuorum),
        Ok(())
    );
    let pulse = ReceiptPulseProof::from_bytes(&pulse_bytes, &limits).unwrap();
    assert_eq!(verifier.verify_receipt_in_pulse(&pulse), Ok(()));
    assert_eq!(pulse.to_bytes(), pulse_bytes, "one proof, one encoding");
}

/// Flipping any single bit of an encoded proof makes it fail to decode or
/// to verify — with one documented exception: the receipts tree's size is
/// not certified, so a changed size that leaves the path's shape (and hence
/// the root) unchanged still proves the same receipt in the same batch.
#[test]
fn any_flipped_bit_of_an_encoded_proof_is_caught() {
    let c = cluster(4);
    let limits = DecodeLimits::default();
    let pulse_proof = pulse_fixture(&c).receipt_proof(SeqNum(14), 6);
    let bytes = pulse_proof.to_bytes();
    for bit in 0..bytes.len() * 8 {
        let mut tampered = bytes.clone();
        tampered[bit / 8] ^= 1 << (bit % 8);
        if let Ok(decoded) = ReceiptPulseProof::from_bytes(&tampered, &limits) {
            if c.verifier.verify_receipt_in_pulse(&decoded).is_ok() {
                let mut expected = pulse_proof.clone();
                expected.receipt_path.size = decoded.receipt_path.size;
                assert_eq!(decoded, expected, "bit {bit} passed unnoticed");
            }
        }
    }
    let batch = batch_proof(&c, SeqNum(9), 6, 4, &[0, 1, 2]);
    let bytes = batch.to_bytes();
    for bit in 0..bytes.len() * 8 {
        let mut tampered = bytes.clone();
        tampered[bit / 8] ^= 1 << (bit % 8);
        if let Ok(decoded) = ReceiptBatchProof::from_bytes(&tampered, &limits) {
            if c.verifier
                .verify_receipt_in_batch(&decoded, Threshold::Quorum)
                .is_ok()
            {
                let mut expected = batch.clone();
                expected.receipt_path.size = decoded.receipt_path.size;
                assert_eq!(decoded, expected, "bit {bit} passed unnoticed");
            }
        }
    }
}

// ---- the chain --------------------------------------------------------------

fn chain(c: &Cluster, pulses: usize) -> Vec<lockchain::PulseCertificate> {
    let mut previous = Digest::ZERO;
    let mut first = SeqNum(1);
    let mut out = Vec::new();
    for number in 0..pulses as u64 {
        let p = pulse(c, number, first, &[3, 0, 2, 1], previous, &[0, 1, 2, 3]);
        previous = p.certificate.header.digest();
        first = SeqNum(p.certificate.header.last_seq.0 + 1);
        out.push(p.certificate);
    }
    out
}

#[test]
fn a_certified_chain_is_continuous() {
    let c = cluster(4);
    let headers = chain(&c, 5);
    assert_eq!(c.verifier.verify_continuity(&headers), Ok(()));
    assert_eq!(c.verifier.verify_continuity(&[]), Ok(()));
    assert_eq!(headers[0].header.previous, Digest::ZERO);
    let limits = DecodeLimits::default();
    let decoded =
        lockchain::format::decode_chain(&lockchain::format::encode_chain(&headers), &limits);
    assert_eq!(decoded.as_ref(), Ok(&headers));
}

#[test]
fn broken_chains_name_the_position_and_the_link() {
    let c = cluster(4);
    let headers = chain(&c, 4);
    let at = |position: usize, headers: &[lockchain::PulseCertificate]| {
        let error = c.verifier.verify_continuity(headers).unwrap_err();
        assert_eq!(error.position, position);
        error.error
    };

    // A dropped header: pulses and seqs skip, previous does not match.
    let gap = [headers[0].clone(), headers[2].clone()];
    assert!(matches!(
        at(1, &gap),
        VerifyError::PulseNotConsecutive { .. }
    ));
    // Swapped order.
    let swapped = [headers[1].clone(), headers[0].clone()];
    assert!(matches!(
        at(1, &swapped),
        VerifyError::PulseNotConsecutive { .. }
    ));
    // A QC broken in the middle.
    let mut broken = headers.clone();
    broken[2].signatures[0].signature.0[0] ^= 1;
    assert_eq!(
        at(2, &broken),
        VerifyError::BadSignature {
            replica: ReplicaId(0)
        }
    );

    // Links alone, without signatures.
    let (a, b) = (headers[0].header, headers[1].header);
    assert_eq!(verify_link(&a, &b), Ok(()));
    let mut forked = b;
    forked.previous.0[0] ^= 1;
    assert!(matches!(
        verify_link(&a, &forked),
        Err(VerifyError::PreviousMismatch { .. })
    ));
    let mut overlap = b;
    overlap.first_seq = a.last_seq;
    assert!(matches!(
        verify_link(&a, &overlap),
        Err(VerifyError::SeqNotContiguous { .. })
    ));
    let mut late = b;
    late.time = a.time;
    assert_eq!(verify_link(&a, &late), Err(VerifyError::TimeNotIncreasing));
    let mut other = b;
    other.cluster = ClusterId(Digest([3; 32]));
    assert!(matches!(
        verify_link(&a, &other),
        Err(VerifyError::ChainClusterChanged { .. })
    ));
    let mut empty = b;
    empty.last_seq = SeqNum(b.first_seq.0 - 1);
    assert!(matches!(
        verify_link(&a, &empty),
        Err(VerifyError::HeaderSeqRange { .. })
    ));

    // A fork re-signed by a quorum is still caught by the link.
    let mut resigned = b;
    resigned.previous = Digest([6; 32]);
    let mut forked_chain = headers.clone();
    forked_chain[1] = c.pulse_certificate(resigned, &[0, 1, 2]);
    assert!(matches!(
        at(1, &forked_chain),
        VerifyError::PreviousMismatch { .. }
    ));
}

#[test]
fn pulse_batches_cover_exactly_their_range() {
    let roots: Vec<Digest> = (0..5).map(|i| Digest([i; 32])).collect();
    let batches = PulseBatches::new(SeqNum(100), &roots);
    assert_eq!(batches.last_seq(), SeqNum(104));
    assert!(batches.proof(SeqNum(99)).is_none());
    assert!(batches.proof(SeqNum(105)).is_none());
    let proof = batches.proof(SeqNum(103)).unwrap();
    assert_eq!((proof.index, proof.size), (3, 5));
    // The leaf names its seq: the same root at another seq is another leaf.
    let leaf = |seq| {
        lockchain::merkle::leaf_hash(&lockchain::pulse::batch_leaf_bytes(SeqNum(seq), &roots[3]))
    };
    assert_eq!(proof.verify(leaf(103), batches.root()), Ok(()));
    assert!(proof.verify(leaf(102), batches.root()).is_err());
    // Same roots, another starting seq: another tree.
    assert_ne!(
        PulseBatches::new(SeqNum(101), &roots).root(),
        batches.root()
    );
    let _ = receipts(SeqNum(1), 0);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // Every case checks signatures for every receipt: keep it small.
        #![proptest_config(ProptestConfig {
            cases: 64,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn every_receipt_of_any_pulse_shape_verifies_from_bytes(
            shape in prop::collection::vec(0usize..9, 1..7),
            first in 1u64..1_000_000,
        ) {
            prop_assume!(shape.iter().any(|&count| count > 0));
            let c = cluster(4);
            let p = pulse(&c, 1, SeqNum(first), &shape, Digest([1; 32]), &[3, 2, 1]);
            let limits = DecodeLimits::default();
            let mut proofs = Vec::new();
            for (b, &count) in shape.iter().enumerate() {
                for index in 0..count {
                    let proof = p.receipt_proof(SeqNum(first + b as u64), index);
                    let decoded = ReceiptPulseProof::from_bytes(&proof.to_bytes(), &limits).unwrap();
                    prop_assert_eq!(c.verifier.verify_receipt_in_pulse(&decoded), Ok(()));
                    proofs.push(proof);
                }
            }
            // A receipt paired with another receipt's path never verifies.
            for pair in proofs.windows(2) {
                let mut mixed = pair[0].clone();
                mixed.receipt = pair[1].receipt.clone();
                prop_assert!(c.verifier.verify_receipt_in_pulse(&mixed).is_err());
            }
        }
    }
}

#[test]
fn a_certificate_checked_once_still_checks_each_receipts_path() {
    // The ops of one reply share a certificate: its signatures are checked
    // once, but every receipt's own path still is, and a different
    // certificate is checked in full.
    let c = cluster(4);
    let first = batch_proof(&c, SeqNum(7), 5, 0, &[0, 2]);
    let second = batch_proof(&c, SeqNum(7), 5, 3, &[0, 2]);
    let verified = &first.certificate;
    let weak = Threshold::WeakQuorum;
    assert_eq!(
        c.verifier
            .verify_receipt_in_verified_batch(&second, verified, weak),
        Ok(())
    );
    let mut forged = second.clone();
    forged.receipt.result.0.push(1);
    assert!(matches!(
        c.verifier
            .verify_receipt_in_verified_batch(&forged, verified, weak),
        Err(VerifyError::ReceiptPath(_))
    ));
    let short = batch_proof(&c, SeqNum(7), 5, 3, &[1]);
    assert_eq!(
        c.verifier
            .verify_receipt_in_verified_batch(&short, verified, weak),
        Err(VerifyError::TooFewSigners { have: 1, need: 2 })
    );
}
