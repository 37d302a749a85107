//! Edge cases of each operation, asserted on receipts, events and digests.

mod common;

use common::*;
use primitives::Bytes;
use qlock::{
    ClientEvent, Config, Durability, FencingToken, LockInfo, LockMode, Op, OpError, OpResult,
    Priority, QueueDepth, SessionId, StateMachine,
};

fn session(h: &mut Harness, client: usize, ttl: u64) -> SessionId {
    match h.run(client, Op::CreateSession { ttl }).0 {
        Ok(OpResult::SessionCreated { session, .. }) => session,
        other => panic!("create failed: {other:?}"),
    }
}

fn acquire(s: SessionId, r: &str, mode: LockMode, wait: Option<u64>) -> Op {
    Op::Acquire {
        session: s,
        resource: r.into(),
        mode,
        wait,
    }
}

fn token(outcome: qlock::OpOutcome) -> FencingToken {
    match outcome {
        Ok(OpResult::Granted { token }) => token,
        other => panic!("not granted: {other:?}"),
    }
}

fn check(h: &mut Harness, r: &str) -> LockInfo {
    match h.run(0, Op::Check { resource: r.into() }).0 {
        Ok(OpResult::Lock(info)) => info,
        other => panic!("{other:?}"),
    }
}

#[test]
fn session_ttl_bounds_and_ownership() {
    let mut h = Harness::new(Config::default(), 2);
    let min = Config::default().session_ttl_min;
    assert!(matches!(
        h.run(0, Op::CreateSession { ttl: min - 1 }).0,
        Err(OpError::OutOfRange { .. })
    ));
    let s = session(&mut h, 0, min);
    for op in [
        Op::RenewSession {
            session: s,
            ttl: min,
        },
        Op::DestroySession { session: s },
        Op::SessionStatus { session: s },
        acquire(s, "r", LockMode::Exclusive, None),
    ] {
        assert_eq!(h.run(1, op).0, Err(OpError::NotOwner));
    }
    assert!(matches!(
        h.run(0, Op::SessionStatus { session: s }).0,
        Ok(OpResult::Session(_))
    ));
    assert_eq!(
        h.run(0, Op::DestroySession { session: s }).0,
        Ok(OpResult::Done)
    );
    assert_eq!(
        h.run(0, Op::DestroySession { session: s }).0,
        Err(OpError::NoSuchSession)
    );
}

#[test]
fn expiry_is_judged_on_effective_time_before_the_ops() {
    let mut h = Harness::new(Config::default(), 1);
    let ttl = 10 * SEC;
    let s = session(&mut h, 0, ttl);
    let created = h.now;
    assert_eq!(h.sm.next_deadline().unwrap().wall, created + ttl);
    h.now = created + ttl - 1;
    assert!(h.run(0, Op::SessionStatus { session: s }).0.is_ok());
    h.now = created + ttl;
    let (outcome, out) = h.run(0, Op::SessionStatus { session: s });
    assert_eq!(outcome, Err(OpError::NoSuchSession));
    assert!(out
        .events
        .iter()
        .any(|e| matches!(e, ClientEvent::SessionExpired { session, .. } if *session == s)));
    assert_eq!(h.sm.next_deadline(), None);
}

#[test]
fn exclusive_excludes_shared_shares_and_only_holders_release() {
    let mut h = Harness::new(Config::default(), 2);
    let a = session(&mut h, 0, 60 * SEC);
    let b = session(&mut h, 1, 60 * SEC);
    token(h.run(0, acquire(a, "x", LockMode::Shared, None)).0);
    token(h.run(1, acquire(b, "x", LockMode::Shared, None)).0);
    assert_eq!(check(&mut h, "x").holders.len(), 2);
    assert_eq!(
        h.run(0, acquire(a, "x", LockMode::Shared, None)).0,
        Err(OpError::AlreadyHeld)
    );
    token(h.run(0, acquire(a, "y", LockMode::Exclusive, None)).0);
    assert_eq!(
        h.run(1, acquire(b, "y", LockMode::Shared, None)).0,
        Err(OpError::WouldBlock)
    );
    assert_eq!(
        h.run(
            1,
            Op::Release {
                session: b,
                resource: "y".into()
            }
        )
        .0,
        Err(OpError::NotHolder)
    );
    assert_eq!(
        h.run(
            1,
            Op::Release {
                session: a,
                resource: "y".into()
            }
        )
        .0,
        Err(OpError::NotOwner)
    );
    assert_eq!(
        h.run(
            0,
            Op::Release {
                session: a,
                resource: "y".into()
            }
        )
        .0,
        Ok(OpResult::Done)
    );
    assert_eq!(check(&mut h, "y").mode, None);
}

#[test]
fn waiters_are_served_fifo_with_increasing_tokens_and_own_receipts() {
    let mut h = Harness::new(Config::default(), 3);
    let s: Vec<_> = (0..3).map(|c| session(&mut h, c, 60 * SEC)).collect();
    let t0 = token(h.run(0, acquire(s[0], "r", LockMode::Exclusive, None)).0);
    let r1 = h.request(
        1,
        &[acquire(s[1], "r", LockMode::Exclusive, Some(30 * SEC))],
        false,
    );
    let r2 = h.request(
        2,
        &[acquire(s[2], "r", LockMode::Shared, Some(30 * SEC))],
        false,
    );
    let out = h.batch(&[r1.clone(), r2.clone()]);
    assert_eq!(
        own_outcomes(&out, &r1),
        vec![Ok(OpResult::Queued { position: 0 })]
    );
    assert_eq!(
        own_outcomes(&out, &r2),
        vec![Ok(OpResult::Queued { position: 1 })]
    );
    let info = check(&mut h, "r");
    assert_eq!(
        info.waiters,
        vec![(s[1], LockMode::Exclusive), (s[2], LockMode::Shared)]
    );
    let (_, out) = h.run(
        0,
        Op::Release {
            session: s[0],
            resource: "r".into(),
        },
    );
    let t1 = token(receipts_for(&out, r1.digest(), 0).remove(0));
    assert!(t1 > t0);
    assert!(receipts_for(&out, r2.digest(), 0).is_empty());
    assert!(out
        .events
        .iter()
        .any(|e| matches!(e, ClientEvent::Granted { session, .. } if *session == s[1])));
    let (_, out) = h.run(
        1,
        Op::Release {
            session: s[1],
            resource: "r".into(),
        },
    );
    let t2 = token(receipts_for(&out, r2.digest(), 0).remove(0));
    assert!(t2 > t1);
    // Tokens keep growing after the resource's entry is gone.
    h.ok(
        2,
        Op::Release {
            session: s[2],
            resource: "r".into(),
        },
    );
    assert_eq!(check(&mut h, "r").last_token, None);
    let t3 = token(h.run(0, acquire(s[0], "r", LockMode::Exclusive, None)).0);
    assert!(t3 > t2);
}

#[test]
fn a_waiter_times_out_and_unblocks_compatible_waiters_behind_it() {
    let mut h = Harness::new(Config::default(), 3);
    let s: Vec<_> = (0..3).map(|c| session(&mut h, c, 120 * SEC)).collect();
    token(h.run(0, acquire(s[0], "r", LockMode::Shared, None)).0);
    let r1 = h.request(
        1,
        &[acquire(s[1], "r", LockMode::Exclusive, Some(5 * SEC))],
        false,
    );
    h.batch(std::slice::from_ref(&r1));
    let r2 = h.request(
        2,
        &[acquire(s[2], "r", LockMode::Shared, Some(50 * SEC))],
        false,
    );
    h.batch(std::slice::from_ref(&r2));
    assert_eq!(h.sm.next_deadline().unwrap().wall, h.now + 5 * SEC);
    h.advance(5 * SEC);
    let out = h.batch(&[]);
    assert_eq!(
        receipts_for(&out, r1.digest(), 0),
        vec![Err(OpError::WaitTimedOut)]
    );
    token(receipts_for(&out, r2.digest(), 0).remove(0));
    assert_eq!(h.sm.stats().wait_timeouts, 1);
    assert_eq!(h.sm.stats().grants_after_wait, 1);
}

#[test]
fn lock_delay_after_expiry_but_not_after_release() {
    let config = Config::default();
    let delay = config.lock_delay;
    let mut h = Harness::new(config, 2);
    let a = session(&mut h, 0, 10 * SEC);
    let created = h.now;
    token(h.run(0, acquire(a, "r", LockMode::Exclusive, None)).0);
    let b = session(&mut h, 1, 600 * SEC);
    h.now = created + 10 * SEC;
    let (outcome, out) = h.run(1, acquire(b, "r", LockMode::Exclusive, None));
    assert_eq!(outcome, Err(OpError::WouldBlock));
    assert!(out
        .events
        .iter()
        .any(|e| matches!(e, ClientEvent::LockLost { .. })));
    assert_eq!(
        check(&mut h, "r").delayed_until,
        Some(created + 10 * SEC + delay)
    );
    let waiting = h.request(
        1,
        &[acquire(b, "r", LockMode::Exclusive, Some(60 * SEC))],
        false,
    );
    h.batch(std::slice::from_ref(&waiting));
    assert_eq!(
        h.sm.next_deadline().unwrap().wall,
        created + 10 * SEC + delay
    );
    h.now = created + 10 * SEC + delay;
    let out = h.batch(&[]);
    token(receipts_for(&out, waiting.digest(), 0).remove(0));
    // A clean release has no delay.
    h.ok(
        1,
        Op::Release {
            session: b,
            resource: "r".into(),
        },
    );
    let c = session(&mut h, 0, 60 * SEC);
    token(h.run(0, acquire(c, "r", LockMode::Exclusive, None)).0);
}

#[test]
fn request_numbers_dedup_replay_and_refuse() {
    let mut h = Harness::new(Config::default(), 1);
    let create = [Op::CreateSession { ttl: 10 * SEC }];
    let first = h.request(0, &create, false);
    let out1 = h.batch(std::slice::from_ref(&first));
    let out2 = h.batch(std::slice::from_ref(&first));
    assert_eq!(own_outcomes(&out1, &first), own_outcomes(&out2, &first));
    assert_eq!(
        h.sm.sizes().0,
        1,
        "a repeat did not create a second session"
    );
    let other = h.request_numbered(0, 1, &[Op::CreateSession { ttl: 11 * SEC }], false);
    let out = h.batch(std::slice::from_ref(&other));
    assert_eq!(own_outcomes(&out, &other), vec![Err(OpError::NumberReused)]);
    let far = h.request_numbered(0, 1000, &create, false);
    h.batch(&[far]);
    let old = h.request_numbered(0, 2, &create, false);
    let out = h.batch(std::slice::from_ref(&old));
    assert_eq!(own_outcomes(&out, &old), vec![Err(OpError::RequestTooOld)]);
}

#[test]
fn reply_cache_is_bounded() {
    let config = Config {
        reply_cache_per_client_max: 2,
        ..Config::default()
    };
    let mut h = Harness::new(config, 1);
    let reqs: Vec<_> = (0..3)
        .map(|_| h.request(0, &[Op::Depth { queue: "q".into() }], false))
        .collect();
    h.batch(&reqs);
    let out = h.batch(&reqs);
    assert_eq!(
        own_outcomes(&out, &reqs[0]),
        vec![Err(OpError::ReplyEvicted)]
    );
    assert!(own_outcomes(&out, &reqs[2])[0].is_ok());
}

#[test]
fn malformed_ops_get_error_receipts() {
    let mut h = Harness::new(Config::default(), 1);
    let mut request = h.request(0, &[Op::Depth { queue: "q".into() }], false);
    request.body.ops.push(Bytes(vec![0xff, 0xff, 0xff]));
    request.body.ops.push(Bytes(vec![]));
    let out = h.batch(std::slice::from_ref(&request));
    let outcomes = own_outcomes(&out, &request);
    assert!(outcomes[0].is_ok());
    assert_eq!(outcomes[1], Err(OpError::Malformed));
    assert_eq!(outcomes[2], Err(OpError::Malformed));
}

#[test]
fn atomic_requests_are_all_or_nothing() {
    let mut h = Harness::new(Config::default(), 2);
    let a = session(&mut h, 0, 60 * SEC);
    let b = session(&mut h, 1, 60 * SEC);
    token(h.run(1, acquire(b, "y", LockMode::Exclusive, None)).0);
    let ops = [
        acquire(a, "x", LockMode::Exclusive, None),
        Op::Submit {
            queue: "q".into(),
            priority: Priority::Normal,
            payload: Bytes(vec![1]),
            dedup_key: None,
            durability: Durability::Sync,
        },
        acquire(a, "y", LockMode::Exclusive, None),
    ];
    let (outcomes, out) = h.run_ops(0, &ops, true);
    assert_eq!(outcomes[0], Err(OpError::Aborted { failed_op: 2 }));
    assert_eq!(outcomes[1], Err(OpError::Aborted { failed_op: 2 }));
    assert_eq!(outcomes[2], Err(OpError::WouldBlock));
    assert!(
        out.events.is_empty(),
        "no QueueNonEmpty from a rolled back submit"
    );
    assert_eq!(check(&mut h, "x").mode, None);
    match h.run(0, Op::Depth { queue: "q".into() }).0 {
        Ok(OpResult::Depth(d)) => assert_eq!(d, QueueDepth::default()),
        other => panic!("{other:?}"),
    }
    // The same ops succeed together once "y" is free.
    h.ok(
        1,
        Op::Release {
            session: b,
            resource: "y".into(),
        },
    );
    let (outcomes, _) = h.run_ops(0, &ops, true);
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
    let (outcomes, _) = h.run_ops(0, &[acquire(a, "z", LockMode::Shared, Some(SEC))], true);
    assert_eq!(outcomes[0], Err(OpError::WaitInAtomic));
}

fn submit(q: &str, priority: Priority, payload: u8, dedup: Option<&[u8]>) -> Op {
    Op::Submit {
        queue: q.into(),
        priority,
        payload: Bytes(vec![payload]),
        dedup_key: dedup.map(|d| Bytes(d.to_vec())),
        durability: Durability::Sync,
    }
}

fn claim_op(s: SessionId, q: &str) -> Op {
    Op::Claim {
        session: s,
        queue: q.into(),
        visibility_timeout: 10 * SEC,
    }
}

fn claimed(outcome: qlock::OpOutcome) -> qlock::MessageView {
    match outcome {
        Ok(OpResult::Claimed(view)) => view,
        other => panic!("not claimed: {other:?}"),
    }
}

#[test]
fn claims_serve_priority_then_fifo_and_ack_exactly_once() {
    let mut h = Harness::new(Config::default(), 2);
    let s = session(&mut h, 1, 600 * SEC);
    let (_, out) = h.run(0, submit("q", Priority::Low, 1, None));
    assert!(matches!(
        &out.events[..],
        [ClientEvent::QueueNonEmpty { .. }]
    ));
    h.ok(0, submit("q", Priority::High, 2, None));
    h.ok(0, submit("q", Priority::High, 3, None));
    h.ok(0, submit("q", Priority::Critical, 4, None));
    let order: Vec<u8> = (0..4)
        .map(|_| claimed(h.run(1, claim_op(s, "q")).0).payload.0[0])
        .collect();
    assert_eq!(order, vec![4, 2, 3, 1]);
    assert_eq!(h.run(1, claim_op(s, "q")).0, Ok(OpResult::Empty));
    h.ok(0, submit("q", Priority::Normal, 5, None));
    let m = claimed(h.run(1, claim_op(s, "q")).0);
    assert_eq!(m.provenance.submitter, h.keys[0].public());
    let ack = Op::Ack {
        session: s,
        message: m.id,
        delivery: m.delivery,
    };
    let other = session(&mut h, 0, 600 * SEC);
    let wrong = Op::Ack {
        session: other,
        message: m.id,
        delivery: m.delivery,
    };
    assert_eq!(h.run(0, wrong).0, Err(OpError::NoSuchClaim));
    assert_eq!(h.run(1, ack.clone()).0, Ok(OpResult::Done));
    assert_eq!(h.run(1, ack).0, Err(OpError::NoSuchClaim));
    match h.run(0, Op::Depth { queue: "q".into() }).0 {
        Ok(OpResult::Depth(d)) => assert_eq!(d.claimed, 4),
        other => panic!("{other:?}"),
    }
}

#[test]
fn redelivery_after_timeout_then_dead_letter() {
    let config = Config {
        dead_letter_after: 2,
        ..Config::default()
    };
    let mut h = Harness::new(config, 1);
    let s = session(&mut h, 0, 600 * SEC);
    h.ok(0, submit("q", Priority::Normal, 7, None));
    let first = claimed(h.run(0, claim_op(s, "q")).0);
    assert_eq!(first.delivery, 1);
    h.advance(10 * SEC);
    let (outcome, out) = h.run(
        0,
        Op::Ack {
            session: s,
            message: first.id,
            delivery: 1,
        },
    );
    assert_eq!(
        outcome,
        Err(OpError::NoSuchClaim),
        "ack after the claim expired"
    );
    assert!(out
        .events
        .iter()
        .any(|e| matches!(e, ClientEvent::QueueNonEmpty { .. })));
    let second = claimed(h.run(0, claim_op(s, "q")).0);
    assert_eq!((second.id, second.delivery), (first.id, 2));
    assert_eq!(h.sm.stats().redeliveries, 1);
    let nack = Op::Nack {
        session: s,
        message: second.id,
        delivery: 2,
    };
    assert_eq!(h.run(0, nack).0, Ok(OpResult::Done));
    assert_eq!(h.run(0, claim_op(s, "q")).0, Ok(OpResult::Empty));
    match h.run(0, Op::PeekDeadLetters { queue: "q".into() }).0 {
        Ok(OpResult::DeadLetters(letters)) => assert_eq!(letters[0].id, first.id),
        other => panic!("{other:?}"),
    }
    match h.run(0, Op::Depth { queue: "q".into() }).0 {
        Ok(OpResult::Depth(d)) => assert_eq!((d.ready, d.claimed, d.dead), ([0; 4], 0, 1)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn dedup_key_returns_the_first_id_within_the_window() {
    let mut h = Harness::new(Config::default(), 1);
    let window = Config::default().dedup_window;
    let first = h.run(0, submit("q", Priority::Normal, 1, Some(b"k"))).0;
    let again = h.run(0, submit("q", Priority::Normal, 2, Some(b"k"))).0;
    let (
        Ok(OpResult::Submitted {
            id: a,
            duplicate: false,
        }),
        Ok(OpResult::Submitted {
            id: b,
            duplicate: true,
        }),
    ) = (first, again)
    else {
        panic!("unexpected");
    };
    assert_eq!(a, b);
    h.advance(window);
    assert!(matches!(
        h.run(0, submit("q", Priority::Normal, 3, Some(b"k"))).0,
        Ok(OpResult::Submitted {
            duplicate: false,
            ..
        })
    ));
}

#[test]
fn ending_a_session_releases_locks_wakes_waiters_and_returns_claims() {
    let mut h = Harness::new(Config::default(), 2);
    let a = session(&mut h, 0, 60 * SEC);
    let b = session(&mut h, 1, 60 * SEC);
    token(h.run(0, acquire(a, "r", LockMode::Exclusive, None)).0);
    let wait = h.request(
        1,
        &[acquire(b, "r", LockMode::Exclusive, Some(30 * SEC))],
        false,
    );
    h.batch(std::slice::from_ref(&wait));
    h.ok(1, submit("q", Priority::Normal, 1, None));
    claimed(h.run(0, claim_op(a, "q")).0);
    let (_, out) = h.run(0, Op::DestroySession { session: a });
    token(receipts_for(&out, wait.digest(), 0).remove(0));
    assert!(claimed(h.run(1, claim_op(b, "q")).0).delivery == 2);
}

#[test]
fn limits_are_typed_errors() {
    let config = Config {
        sessions_per_client_max: 1,
        waiters_per_resource_max: 1,
        queue_depth_max: 1,
        ..Config::default()
    };
    let mut h = Harness::new(config, 3);
    let a = session(&mut h, 0, 60 * SEC);
    assert!(matches!(
        h.run(0, Op::CreateSession { ttl: 60 * SEC }).0,
        Err(OpError::LimitReached { limit }) if limit == "sessions_per_client_max"
    ));
    let b = session(&mut h, 1, 60 * SEC);
    let c = session(&mut h, 2, 60 * SEC);
    token(h.run(0, acquire(a, "r", LockMode::Exclusive, None)).0);
    h.ok(1, acquire(b, "r", LockMode::Exclusive, Some(SEC)));
    assert!(matches!(
        h.run(2, acquire(c, "r", LockMode::Exclusive, Some(SEC))).0,
        Err(OpError::LimitReached { limit }) if limit == "waiters_per_resource_max"
    ));
    h.ok(0, submit("q", Priority::Normal, 1, None));
    assert!(matches!(
        h.run(0, submit("q", Priority::Normal, 1, None)).0,
        Err(OpError::LimitReached { limit }) if limit == "queue_depth_max"
    ));
}

#[test]
fn identical_histories_give_identical_digests() {
    let run = || {
        let mut h = Harness::new(Config::default(), 2);
        let a = session(&mut h, 0, 60 * SEC);
        h.ok(0, acquire(a, "r", LockMode::Exclusive, None));
        h.ok(1, submit("q", Priority::High, 3, Some(b"d")));
        h.sm.state_digest()
    };
    assert_eq!(run(), run());
    assert_ne!(run(), StateMachine::new(Config::default()).state_digest());
}

#[test]
fn reply_cache_is_bounded_in_bytes() {
    let config = Config {
        reply_cache_bytes_max: 1,
        ..Config::default()
    };
    let mut h = Harness::new(config, 1);
    let request = h.request(0, &[Op::Depth { queue: "q".into() }], false);
    h.batch(std::slice::from_ref(&request));
    assert_eq!(h.sm.stats().reply_cache_bytes, 0);
    let out = h.batch(std::slice::from_ref(&request));
    assert_eq!(
        own_outcomes(&out, &request),
        vec![Err(OpError::ReplyEvicted)]
    );
}
