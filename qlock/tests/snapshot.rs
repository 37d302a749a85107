//! Snapshots and the state digest: a round trip keeps the digest, and a
//! change to any single field of any entry changes it.

mod common;

use common::*;
use primitives::Bytes;
use qlock::{Config, Durability, LockMode, Op, OpResult, Priority, SessionId, StateMachine};

/// A state with an entry in every table: sessions, holders, waiters, a
/// lock-delay, ready/claimed/dead messages, dedup keys, cached replies.
fn rich_state() -> Harness {
    let config = Config {
        dead_letter_after: 1,
        ..Config::default()
    };
    let mut h = Harness::new(config, 3);
    let mut sessions = vec![];
    for c in 0..3 {
        match h.ok(c, Op::CreateSession { ttl: 30 * SEC }) {
            OpResult::SessionCreated { session, .. } => sessions.push(session),
            other => panic!("{other:?}"),
        }
    }
    let acquire = |s: SessionId, r: &str, wait: Option<u64>| Op::Acquire {
        session: s,
        resource: r.into(),
        mode: LockMode::Exclusive,
        wait,
    };
    h.ok(0, acquire(sessions[0], "held", None));
    h.ok(1, acquire(sessions[1], "held", Some(20 * SEC)));
    for (i, p) in [Priority::High, Priority::Low, Priority::Normal]
        .into_iter()
        .enumerate()
    {
        h.ok(
            2,
            Op::Submit {
                queue: "q".into(),
                priority: p,
                payload: Bytes(vec![i as u8; 3]),
                dedup_key: Some(Bytes(vec![i as u8])),
                durability: Durability::Async,
            },
        );
    }
    let claim = Op::Claim {
        session: sessions[2],
        queue: "q".into(),
        visibility_timeout: 2 * SEC,
    };
    h.ok(2, claim.clone());
    h.advance(2 * SEC);
    h.ok(2, claim);
    // A session that expires while holding a lock leaves a lock-delay.
    let short = match h.ok(0, Op::CreateSession { ttl: 5 * SEC }) {
        OpResult::SessionCreated { session, .. } => session,
        other => panic!("{other:?}"),
    };
    h.ok(0, acquire(short, "delayed", None));
    h.advance(5 * SEC);
    h.batch(&[]);
    h
}

#[test]
fn round_trip_keeps_the_digest_at_any_chunk_size() {
    let mut h = rich_state();
    let digest = h.sm.state_digest();
    for chunk_bytes_max in [1, 100, 1 << 20] {
        let chunks = h.sm.snapshot_chunks(chunk_bytes_max);
        let mut restored = StateMachine::restore(&chunks).unwrap();
        assert_eq!(restored.state_digest(), digest);
        assert_eq!(restored.next_deadline(), h.sm.next_deadline());
        assert_eq!(restored.stats(), h.sm.stats());
    }
    assert!(StateMachine::restore(&[]).is_err(), "no configuration");
    assert!(StateMachine::restore(&[vec![1, 2, 3]]).is_err());
}

#[test]
fn every_single_byte_change_that_decodes_changes_the_digest() {
    let mut h = rich_state();
    let digest = h.sm.state_digest();
    // One record per chunk: a flipped byte touches exactly one entry.
    let chunks = h.sm.snapshot_chunks(1);
    let (mut decoded, mut changed) = (0, 0);
    for c in 0..chunks.len() {
        for i in 0..chunks[c].len() {
            for bit in [0x01u8] {
                let mut tampered = chunks.clone();
                tampered[c][i] ^= bit;
                let Ok(mut restored) = StateMachine::restore(&tampered) else {
                    continue;
                };
                decoded += 1;
                if restored.snapshot_chunks(1) == chunks {
                    // A non-canonical encoding of the same state.
                    assert_eq!(restored.state_digest(), digest);
                } else {
                    changed += 1;
                    assert_ne!(restored.state_digest(), digest, "chunk {c} byte {i}");
                }
            }
        }
    }
    eprintln!("{changed} of {decoded} decodable tamperings changed the state");
    assert!(
        changed > 100,
        "only {changed} of {decoded} tampered snapshots differed"
    );
}

/// The same batches, the digest asked after `ask_every` of them (0: only
/// at the end): locks taken and given up in between, a session renewed.
fn locks_script(ask_every: u64) -> (Harness, Vec<(u64, primitives::Digest)>) {
    let mut h = Harness::new(Config::default(), 2);
    let mut asked = vec![];
    let session = match h.ok(0, Op::CreateSession { ttl: 30 * SEC }) {
        OpResult::SessionCreated { session, .. } => session,
        other => panic!("{other:?}"),
    };
    for i in 0..40u64 {
        let resource = format!("r{}", (i / 2) % 7);
        let op = if i % 2 == 0 {
            Op::Acquire {
                session,
                resource,
                mode: LockMode::Exclusive,
                wait: None,
            }
        } else {
            Op::Release { session, resource }
        };
        h.run(0, op).0.expect("op");
        if i % 5 == 0 {
            h.ok(
                0,
                Op::RenewSession {
                    session,
                    ttl: 30 * SEC,
                },
            );
        }
        h.advance(SEC / 10);
        if ask_every > 0 && h.seq.is_multiple_of(ask_every) {
            asked.push((h.seq, h.sm.state_digest()));
        }
    }
    (h, asked)
}

#[test]
fn the_state_digest_does_not_depend_on_how_often_it_is_asked() {
    // A replica asks at checkpoints only, so writes between two digests
    // are hashed once (and entries created and removed in between never);
    // the digest must equal the one of a machine asked after every batch.
    let (mut every, asked) = locks_script(1);
    let (mut at_end, none) = locks_script(0);
    assert!(none.is_empty());
    let digest = at_end.sm.state_digest();
    assert_eq!(every.sm.state_digest(), digest);
    assert_eq!(asked.last().map(|(_, d)| *d), Some(digest));
    let (_, some) = locks_script(3);
    assert!(some.len() > 5);
    for at in &some {
        assert!(asked.contains(at), "digest after batch {} differs", at.0);
    }
    let mut restored = StateMachine::restore(&at_end.sm.snapshot_chunks(512)).unwrap();
    assert_eq!(restored.state_digest(), digest);
}
