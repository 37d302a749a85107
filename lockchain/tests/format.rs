//! The byte format of FORMAT.md, pinned: field offsets, the encodings of
//! the signed statements and of receipts, the signing input, a complete
//! test vector, and decoding of hostile bytes (bounded, never a panic).

mod common;

use common::{batch_proof, cluster, pulse};
use lockchain::format::{decode_chain, encode_chain, HEADER_BYTES};
use lockchain::{
    BatchCertificate, DecodeError, DecodeLimits, InclusionProof, PulseCertificate, PulseHeader,
    ReceiptBatchProof, ReceiptPulseProof, Threshold,
};
use primitives::{
    codec, BatchStatement, Bytes, CheckpointStatement, ClusterId, Digest, HlcTimestamp, KeyPair,
    Membership, PulseNumber, Receipt, SeqNum,
};
use proptest::prelude::*;

fn sample_header() -> PulseHeader {
    PulseHeader {
        cluster: ClusterId(Digest([0xC1; 32])),
        pulse: PulseNumber(0x0102_0304_0506_0708),
        first_seq: SeqNum(0x11),
        last_seq: SeqNum(0x2233),
        batches_root: Digest([0xB0; 32]),
        state_digest: Digest([0x5D; 32]),
        previous: Digest([0x9E; 32]),
        time: HlcTimestamp {
            wall: 0x0A0B_0C0D_0E0F_1011,
            logical: 0xBEEF,
        },
    }
}

#[test]
fn header_layout_is_fixed_width_big_endian() {
    let bytes = sample_header().to_bytes();
    assert_eq!(bytes.len(), HEADER_BYTES);
    assert_eq!(HEADER_BYTES, 162);
    assert_eq!(&bytes[0..32], &[0xC1; 32]);
    assert_eq!(&bytes[32..40], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&bytes[40..48], &[0, 0, 0, 0, 0, 0, 0, 0x11]);
    assert_eq!(&bytes[48..56], &[0, 0, 0, 0, 0, 0, 0x22, 0x33]);
    assert_eq!(&bytes[56..88], &[0xB0; 32]);
    assert_eq!(&bytes[88..120], &[0x5D; 32]);
    assert_eq!(&bytes[120..152], &[0x9E; 32]);
    assert_eq!(
        &bytes[152..160],
        &[0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11]
    );
    assert_eq!(&bytes[160..162], &[0xBE, 0xEF]);
    assert_eq!(PulseHeader::from_bytes(&bytes), Ok(sample_header()));
    // The digest is blake3 derive_key over exactly these bytes.
    let mut hasher = blake3::Hasher::new_derive_key("qlock 2026-11 pulse header v1");
    hasher.update(&bytes);
    assert_eq!(sample_header().digest().0, *hasher.finalize().as_bytes());
}

#[test]
fn signed_statements_are_bincode_varint_as_documented() {
    // FORMAT.md, "Signed statements": these bytes are fixed by primitives.
    let batch = BatchStatement {
        cluster: ClusterId(Digest([0xC1; 32])),
        seq: SeqNum(300),
        receipts_root: Digest([0xAA; 32]),
    };
    let mut expected = vec![32];
    expected.extend_from_slice(&[0xC1; 32]);
    expected.extend_from_slice(&[0xFB, 0x2C, 0x01]); // varint 300: 0xFB + u16 LE
    expected.push(32);
    expected.extend_from_slice(&[0xAA; 32]);
    assert_eq!(codec::encode(&batch), expected);

    let checkpoint = CheckpointStatement {
        cluster: ClusterId(Digest([0xC1; 32])),
        seq: SeqNum(7),
        header: Digest([0x4E; 32]),
    };
    let mut expected = vec![32];
    expected.extend_from_slice(&[0xC1; 32]);
    expected.push(7);
    expected.push(32);
    expected.extend_from_slice(&[0x4E; 32]);
    assert_eq!(codec::encode(&checkpoint), expected);
}

#[test]
fn receipt_leaf_bytes_are_bincode_varint_as_documented() {
    let receipt = Receipt {
        request: Digest([0x77; 32]),
        op_index: 2,
        seq: SeqNum(70_000),
        time: HlcTimestamp {
            wall: 251,
            logical: 0,
        },
        result: Bytes(b"ok".to_vec()),
    };
    let mut expected = vec![32];
    expected.extend_from_slice(&[0x77; 32]);
    expected.push(2);
    expected.extend_from_slice(&[0xFC, 0x70, 0x11, 0x01, 0x00]); // 70000: 0xFC + u32 LE
    expected.extend_from_slice(&[0xFB, 251, 0]); // 251: 0xFB + u16 LE
    expected.push(0);
    expected.push(2);
    expected.extend_from_slice(b"ok");
    assert_eq!(receipt.leaf_bytes(), expected);
}

#[test]
fn signing_input_is_ed25519_over_the_domain_digest() {
    // As another language checks a certificate signature.
    let c = cluster(4);
    let certificate = c.batch_certificate(SeqNum(5), Digest([3; 32]), &[1]);
    let message = codec::encode(&certificate.statement);
    let mut hasher = blake3::Hasher::new_derive_key("qlock 2026-11 batch certificate v1");
    hasher.update(&message);
    let signed = hasher.finalize();
    let key = ed25519_dalek::VerifyingKey::from_bytes(c.keys[1].public().as_bytes()).unwrap();
    let signature = ed25519_dalek::Signature::from_bytes(&certificate.signatures[0].signature.0);
    assert!(key.verify_strict(signed.as_bytes(), &signature).is_ok());

    let p = pulse(&c, 0, SeqNum(1), &[1], Digest::ZERO, &[2, 0, 1]);
    let message = codec::encode(&p.certificate.header.checkpoint_statement());
    let mut hasher = blake3::Hasher::new_derive_key("qlock 2026-11 pbft checkpoint v1");
    hasher.update(&message);
    let key = ed25519_dalek::VerifyingKey::from_bytes(c.keys[0].public().as_bytes()).unwrap();
    let signature = ed25519_dalek::Signature::from_bytes(&p.certificate.signatures[0].signature.0);
    assert!(key
        .verify_strict(hasher.finalize().as_bytes(), &signature)
        .is_ok());
}

/// The test vector of FORMAT.md: one replica (seed 32 × 0x01), cluster
/// name "lockchain test vector", batch 7 of three receipts, receipt 1.
fn test_vector() -> (Membership, ReceiptBatchProof) {
    let key = KeyPair::from_seed(&[1; 32]);
    let membership = Membership::new("lockchain test vector", vec![key.public()]).unwrap();
    let receipts: Vec<Receipt> = (0..3u8)
        .map(|i| Receipt {
            request: Digest([i; 32]),
            op_index: u32::from(i),
            seq: SeqNum(7),
            time: HlcTimestamp::from_micros(1_000_000),
            result: Bytes(vec![i; 2]),
        })
        .collect();
    let tree = lockchain::ReceiptTree::new(&receipts);
    let mut certificate = BatchCertificate::new(membership.cluster_id(), SeqNum(7), tree.root());
    let signature = certificate.statement.sign(&key);
    certificate
        .add(&membership, primitives::ReplicaId(0), signature)
        .unwrap();
    let proof = ReceiptBatchProof {
        receipt: receipts[1].clone(),
        receipt_path: tree.proof(1).unwrap(),
        certificate,
    };
    (membership, proof)
}

#[test]
fn pinned_test_vector() {
    let (membership, proof) = test_vector();
    let hex = hex::encode(proof.to_bytes());
    println!("public key {}", membership.replicas[0].to_hex());
    println!("cluster id {}", membership.cluster_id());
    println!("proof {hex}");
    let pinned = include_str!("test_vector.hex").trim();
    assert_eq!(hex, pinned);
    let decoded =
        ReceiptBatchProof::from_bytes(&hex::decode(pinned).unwrap(), &DecodeLimits::default())
            .unwrap();
    let verifier = lockchain::Verifier::new(membership);
    assert_eq!(
        verifier.verify_receipt_in_batch(&decoded, Threshold::Quorum),
        Ok(())
    );
}

#[test]
fn hostile_counts_and_framing_are_refused() {
    let c = cluster(4);
    let limits = DecodeLimits::default();
    let good = batch_proof(&c, SeqNum(9), 6, 4, &[0, 1, 2]).to_bytes();

    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(matches!(
        ReceiptBatchProof::from_bytes(&bad, &limits),
        Err(DecodeError::BadMagic { .. })
    ));
    assert!(matches!(
        ReceiptPulseProof::from_bytes(&good, &limits),
        Err(DecodeError::BadMagic { .. })
    ));
    let mut bad = good.clone();
    bad.push(0);
    assert_eq!(
        ReceiptBatchProof::from_bytes(&bad, &limits),
        Err(DecodeError::TrailingBytes { extra: 1 })
    );
    assert!(matches!(
        ReceiptBatchProof::from_bytes(&good[..good.len() - 1], &limits),
        Err(DecodeError::Truncated { .. })
    ));
    // A receipt longer than the limit is refused before it is read.
    let tight = DecodeLimits {
        receipt_bytes_max: 10,
        ..limits
    };
    assert!(matches!(
        ReceiptBatchProof::from_bytes(&good, &tight),
        Err(DecodeError::TooLong {
            field: "receipt length",
            ..
        })
    ));
    // A path of 65 hashes.
    let mut path = vec![0u8; 16];
    path.push(65);
    assert!(matches!(
        InclusionProof::from_bytes(&path),
        Err(DecodeError::TooLong {
            field: "path length",
            ..
        })
    ));
    // 257 signatures.
    let mut certificate = vec![0u8; 72];
    certificate.extend_from_slice(&257u16.to_be_bytes());
    assert!(matches!(
        BatchCertificate::from_bytes(&certificate),
        Err(DecodeError::TooLong {
            field: "signature count",
            ..
        })
    ));
    // A chain longer than the limit.
    let mut chain = b"QLCH".to_vec();
    chain.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        decode_chain(&chain, &limits),
        Err(DecodeError::TooLong {
            field: "chain length",
            ..
        })
    ));
}

#[test]
fn non_canonical_receipt_bytes_are_refused() {
    let c = cluster(4);
    let proof = batch_proof(&c, SeqNum(9), 2, 0, &[0, 1]);
    let receipt = proof.receipt.leaf_bytes();
    // op_index 0 written as a three-byte varint (0xFB 0x00 0x00).
    let at = 33;
    assert_eq!(receipt[at], 0);
    let mut stretched = receipt[..at].to_vec();
    stretched.extend_from_slice(&[0xFB, 0, 0]);
    stretched.extend_from_slice(&receipt[at + 1..]);
    let mut bytes = b"QLRB".to_vec();
    bytes.extend_from_slice(&(stretched.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&stretched);
    bytes.extend_from_slice(&proof.receipt_path.to_bytes());
    bytes.extend_from_slice(&proof.certificate.to_bytes());
    let verdict = ReceiptBatchProof::from_bytes(&bytes, &DecodeLimits::default());
    assert!(
        matches!(
            verdict,
            Err(DecodeError::ReceiptNotCanonical | DecodeError::Receipt(_))
        ),
        "{verdict:?}"
    );
}

#[test]
fn objects_round_trip() {
    let c = cluster(4);
    let p = pulse(&c, 2, SeqNum(5), &[3, 1], Digest([2; 32]), &[0, 1, 3]);
    let cert = &p.certificate;
    assert_eq!(
        PulseCertificate::from_bytes(&cert.to_bytes()).as_ref(),
        Ok(cert)
    );
    let proof = p.receipt_proof(SeqNum(5), 2);
    let limits = DecodeLimits::default();
    assert_eq!(
        ReceiptPulseProof::from_bytes(&proof.to_bytes(), &limits).as_ref(),
        Ok(&proof)
    );
    let batch = batch_proof(&c, SeqNum(9), 6, 4, &[0, 1]);
    assert_eq!(
        BatchCertificate::from_bytes(&batch.certificate.to_bytes()).as_ref(),
        Ok(&batch.certificate)
    );
    let chain = vec![cert.clone()];
    assert_eq!(decode_chain(&encode_chain(&chain), &limits), Ok(chain));
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let limits = DecodeLimits::default();
        let _ = InclusionProof::from_bytes(&bytes);
        let _ = PulseHeader::from_bytes(&bytes);
        let _ = BatchCertificate::from_bytes(&bytes);
        let _ = PulseCertificate::from_bytes(&bytes);
        let mut framed = b"QLRB".to_vec();
        framed.extend_from_slice(&bytes);
        let _ = ReceiptBatchProof::from_bytes(&framed, &limits);
        framed[3] = b'P';
        let _ = ReceiptPulseProof::from_bytes(&framed, &limits);
        framed[2..4].copy_from_slice(b"CH");
        let _ = decode_chain(&framed, &limits);
    }

    #[test]
    fn decoded_garbage_never_verifies(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        // Whatever decodes from random bytes must still fail verification
        // (and not panic doing so).
        let c = cluster(4);
        let mut framed = b"QLRP".to_vec();
        framed.extend_from_slice(&bytes);
        if let Ok(proof) = ReceiptPulseProof::from_bytes(&framed, &DecodeLimits::default()) {
            prop_assert!(c.verifier.verify_receipt_in_pulse(&proof).is_err());
        }
    }
}

#[test]
fn cluster_id_is_the_digest_of_the_documented_config_bytes() {
    let (membership, _) = test_vector();
    let name = b"lockchain test vector";
    let mut config = vec![name.len() as u8];
    config.extend_from_slice(name);
    config.push(1); // one replica
    config.push(32);
    config.extend_from_slice(membership.replicas[0].as_bytes());
    let mut hasher = blake3::Hasher::new_derive_key("qlock 2026-11 cluster config v1");
    hasher.update(&config);
    assert_eq!(membership.cluster_id().0 .0, *hasher.finalize().as_bytes());
}
