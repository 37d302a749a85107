//! Chunked state transfer: every chunk is checked against the certified
//! state digest before the next is asked for, so a lying peer costs one
//! chunk and never a wrong state.

mod common;

use common::*;
use primitives::{codec, Bytes, Digest};
use qlock::{
    Config, Durability, Installer, Op, OpResult, Priority, StateMachine, TransferError,
    TransferSnapshot,
};

/// A state with a few hundred entries spread over many buckets.
fn busy_state() -> Harness {
    let mut h = Harness::new(Config::default(), 8);
    for c in 0..8 {
        let session = match h.ok(c, Op::CreateSession { ttl: 60 * SEC }) {
            OpResult::SessionCreated { session, .. } => session,
            other => panic!("{other:?}"),
        };
        for r in 0..10 {
            h.ok(
                c,
                Op::Acquire {
                    session,
                    resource: format!("lock-{c}-{r}"),
                    mode: qlock::LockMode::Exclusive,
                    wait: None,
                },
            );
            h.ok(
                c,
                Op::Submit {
                    queue: format!("queue-{}", r % 3),
                    priority: Priority::Normal,
                    payload: Bytes(vec![c as u8; 64]),
                    dedup_key: None,
                    durability: Durability::Sync,
                },
            );
        }
    }
    h
}

fn install(snapshot: &TransferSnapshot, certified: Digest) -> StateMachine {
    let mut installer = Installer::new(snapshot.manifest.clone(), certified).unwrap();
    while let Some(i) = installer.next_chunk() {
        installer
            .accept(i, snapshot.chunks[i as usize].clone())
            .unwrap();
    }
    installer.finish().unwrap()
}

#[test]
fn a_state_cut_into_chunks_installs_with_the_same_digest() {
    let mut h = busy_state();
    let digest = h.sm.state_digest();
    for chunk_bytes_max in [1, 2_000, 1 << 20] {
        let snapshot = h.sm.transfer_snapshot(chunk_bytes_max);
        assert_eq!(snapshot.manifest.chunks.len(), snapshot.chunks.len());
        if chunk_bytes_max == 2_000 {
            assert!(snapshot.chunks.len() > 5, "{}", snapshot.chunks.len());
        }
        let mut installed = install(&snapshot, digest);
        assert_eq!(installed.state_digest(), digest);
        assert_eq!(installed.next_deadline(), h.sm.next_deadline());
        // The chunks are ordinary snapshot chunks too.
        assert_eq!(
            StateMachine::restore(&snapshot.chunks)
                .unwrap()
                .state_digest(),
            digest
        );
    }
}

#[test]
fn a_manifest_for_another_state_or_malformed_is_refused() {
    let mut h = busy_state();
    let snapshot = h.sm.transfer_snapshot(2_000);
    let other = StateMachine::new(Config::default()).state_digest();
    assert_eq!(
        Installer::new(snapshot.manifest.clone(), other).unwrap_err(),
        TransferError::ManifestDigest
    );
    let mut m = snapshot.manifest.clone();
    m.bucket_digests[7] = Digest::ZERO;
    assert_eq!(
        Installer::new(m, h.sm.state_digest()).unwrap_err(),
        TransferError::ManifestDigest
    );
    let mut m = snapshot.manifest.clone();
    m.chunks.pop();
    assert!(matches!(
        Installer::new(m, h.sm.state_digest()),
        Err(TransferError::Manifest(_))
    ));
    let mut m = snapshot.manifest.clone();
    m.bucket_digests.pop();
    assert!(matches!(
        Installer::new(m, h.sm.state_digest()),
        Err(TransferError::Manifest(_))
    ));
    // Bytes from the wire decode within the bound, and garbage does not.
    let bytes = snapshot.manifest.encode();
    assert!(bytes.len() <= qlock::transfer::MANIFEST_BYTES_MAX);
    assert_eq!(
        qlock::TransferManifest::decode(&bytes).unwrap(),
        snapshot.manifest
    );
    assert!(qlock::TransferManifest::decode(&bytes[..100]).is_err());
}

#[test]
fn a_bad_chunk_costs_one_chunk_and_the_good_one_is_then_accepted() {
    let mut h = busy_state();
    let digest = h.sm.state_digest();
    let snapshot = h.sm.transfer_snapshot(2_000);
    let mut installer = Installer::new(snapshot.manifest.clone(), digest).unwrap();
    installer.accept(0, snapshot.chunks[0].clone()).unwrap();
    let good = snapshot.chunks[1].clone();
    // Every single flipped byte is caught.
    for at in (0..good.len()).step_by(7) {
        let mut bad = good.clone();
        bad[at] ^= 0x40;
        assert!(installer.accept(1, bad).is_err(), "byte {at}");
        assert_eq!(installer.next_chunk(), Some(1), "nothing kept");
    }
    // Another chunk's bytes, out-of-order indexes and garbage too.
    assert!(installer.accept(1, snapshot.chunks[2].clone()).is_err());
    assert_eq!(
        installer.accept(2, snapshot.chunks[2].clone()).unwrap_err(),
        TransferError::OutOfOrder {
            expected: 1,
            got: 2
        }
    );
    assert_eq!(
        installer.accept(1, vec![0xff; 9]).unwrap_err(),
        TransferError::Undecodable(1)
    );
    installer.accept(1, good).unwrap();
    while let Some(i) = installer.next_chunk() {
        installer
            .accept(i, snapshot.chunks[i as usize].clone())
            .unwrap();
    }
    assert_eq!(installer.finish().unwrap().state_digest(), digest);
}

#[test]
fn a_chunk_missing_a_record_or_carrying_a_foreign_one_is_refused() {
    // A liar cannot drop an entry (a lock it wants gone) or smuggle one in
    // from outside the chunk's buckets.
    let mut h = busy_state();
    let digest = h.sm.state_digest();
    let snapshot = h.sm.transfer_snapshot(2_000);
    let mut records: Vec<(u8, Bytes, Bytes)> =
        codec::decode(&snapshot.chunks[1], codec::FRAME_BYTES_MAX).unwrap();
    assert!(records.len() > 1);
    let dropped = records.pop().unwrap();
    let mut installer = Installer::new(snapshot.manifest.clone(), digest).unwrap();
    installer.accept(0, snapshot.chunks[0].clone()).unwrap();
    assert_eq!(
        installer.accept(1, codec::encode(&records)).unwrap_err(),
        TransferError::ChunkDigest(1)
    );
    let mut foreign: Vec<(u8, Bytes, Bytes)> =
        codec::decode(&snapshot.chunks[2], codec::FRAME_BYTES_MAX).unwrap();
    records.push(dropped);
    records.push(foreign.pop().unwrap());
    assert_eq!(
        installer.accept(1, codec::encode(&records)).unwrap_err(),
        TransferError::OutsideSpan(1)
    );
    assert!(matches!(
        installer.finish(),
        Err(TransferError::Incomplete(_))
    ));
}
