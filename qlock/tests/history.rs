//! The timed lock and queue models reject hand-written non-linearizable
//! histories and accept tricky legal ones.

use primitives::HlcTimestamp;
use qlock::history::locks::LockModel;
use qlock::history::{check, Answer, Call, Operation, QueueModel, Timed, Verdict, Wait};

const BOUND: u64 = 1_000_000;

/// An answered op: real interval, effective time (µs), call, answer.
fn op(
    invoke: u64,
    response: u64,
    time: u64,
    call: Call,
    answer: Answer,
) -> Operation<Timed, Answer> {
    Operation {
        invoke,
        response: Some(response),
        input: Timed {
            time: Some(HlcTimestamp::from_micros(time)),
            call,
        },
        output: answer,
    }
}

/// An op without an answer.
fn pending(invoke: u64, call: Call) -> Operation<Timed, Answer> {
    Operation {
        invoke,
        response: None,
        input: Timed { time: None, call },
        output: Answer::Done,
    }
}

const TTL: u64 = 1_000;

/// Session `s` created at effective time `t` (real time `r`, `r + 1`).
fn create(r: u64, t: u64, s: u64) -> Operation<Timed, Answer> {
    create_ttl(r, t, s, TTL)
}

fn create_ttl(r: u64, t: u64, s: u64, ttl: u64) -> Operation<Timed, Answer> {
    op(
        r,
        r + 1,
        t,
        Call::CreateSession { ttl },
        Answer::SessionCreated {
            session: s,
            expires_at: t + ttl,
        },
    )
}

fn try_x(s: u64) -> Call {
    Call::Acquire {
        session: s,
        exclusive: true,
        wait: None,
    }
}

fn try_shared(s: u64) -> Call {
    Call::Acquire {
        session: s,
        exclusive: false,
        wait: None,
    }
}

fn wait_x(s: u64, id: u64, timeout: u64) -> Call {
    Call::Acquire {
        session: s,
        exclusive: true,
        wait: Some(Wait { id, timeout }),
    }
}

fn granted(token: u64) -> Answer {
    Answer::Granted { token }
}

fn rel(s: u64) -> Call {
    Call::Release { session: s }
}

const LOCKS: LockModel = LockModel { lock_delay: 50 };
const NO_DELAY: LockModel = LockModel { lock_delay: 0 };

fn lock_verdict(model: &LockModel, history: &[Operation<Timed, Answer>]) -> Verdict {
    check(model, history, BOUND)
}

// ------------------------------------------------------------- locks --

#[test]
fn lock_two_holders_overlapping_is_rejected() {
    let h = [
        create(0, 1, 1),
        create(2, 2, 2),
        op(10, 11, 10, try_x(1), granted(10)),
        op(20, 21, 20, try_x(2), granted(11)),
        op(30, 31, 30, rel(1), Answer::Done),
    ];
    assert_eq!(lock_verdict(&LOCKS, &h), Verdict::NotLinearizable);
    // The same with the second grant after the release is fine.
    let mut ok = h.clone();
    ok[4] = op(15, 16, 15, rel(1), Answer::Done);
    assert_eq!(lock_verdict(&LOCKS, &ok), Verdict::Linearizable);
}

#[test]
fn lock_token_going_backwards_is_rejected() {
    let h = [
        create(0, 1, 1),
        create(2, 2, 2),
        op(10, 11, 10, try_x(1), granted(10)),
        op(12, 13, 12, rel(1), Answer::Done),
        op(20, 21, 20, try_x(2), granted(9)),
    ];
    assert_eq!(lock_verdict(&LOCKS, &h), Verdict::NotLinearizable);
}

#[test]
fn lock_granted_to_an_expired_session_is_rejected() {
    // Session 1 lives until 101; the acquire's receipt is at 150.
    let h = [
        create_ttl(0, 1, 1, 100),
        op(10, 11, 150, try_x(1), granted(10)),
    ];
    assert_eq!(lock_verdict(&LOCKS, &h), Verdict::NotLinearizable);
    let renewed_after_expiry = [
        create_ttl(0, 1, 1, 100),
        op(
            10,
            11,
            150,
            Call::RenewSession {
                session: 1,
                ttl: 100,
            },
            Answer::Renewed { expires_at: 250 },
        ),
    ];
    assert_eq!(
        lock_verdict(&LOCKS, &renewed_after_expiry),
        Verdict::NotLinearizable
    );
}

#[test]
fn lock_held_past_its_lease_is_rejected() {
    // Session 1 expires at 101, the lock-delay ends at 151: at 200 the
    // lock must be free.
    let h = [
        create_ttl(0, 1, 1, 100),
        create(1, 2, 2),
        op(10, 11, 10, try_x(1), granted(10)),
        op(20, 21, 200, try_x(2), Answer::WouldBlock),
    ];
    assert_eq!(lock_verdict(&LOCKS, &h), Verdict::NotLinearizable);
}

#[test]
fn lock_granted_during_lock_delay_is_rejected() {
    let h = [
        create_ttl(0, 1, 1, 100),
        create(1, 2, 2),
        op(10, 11, 10, try_x(1), granted(10)),
        op(20, 21, 120, try_x(2), granted(11)),
    ];
    assert_eq!(lock_verdict(&LOCKS, &h), Verdict::NotLinearizable);
    // Without a lock-delay the grant is right.
    assert_eq!(lock_verdict(&NO_DELAY, &h), Verdict::Linearizable);
}

#[test]
fn lock_waiters_out_of_fifo_order_are_rejected() {
    let h = [
        create(0, 1, 1),
        create(1, 2, 2),
        create(2, 3, 3),
        op(10, 11, 10, try_x(1), granted(10)),
        op(
            12,
            13,
            12,
            wait_x(2, 100, 500),
            Answer::Queued { position: 0 },
        ),
        op(
            14,
            15,
            14,
            wait_x(3, 101, 500),
            Answer::Queued { position: 1 },
        ),
        op(20, 21, 30, rel(1), Answer::Done),
        // Session 3 is told it got the lock: 2 was first.
        op(14, 25, 30, Call::WaitEnd { wait: 101 }, granted(11)),
    ];
    assert_eq!(lock_verdict(&LOCKS, &h), Verdict::NotLinearizable);
    let mut ok = h.clone();
    ok[7] = op(12, 25, 30, Call::WaitEnd { wait: 100 }, granted(11));
    assert_eq!(lock_verdict(&LOCKS, &ok), Verdict::Linearizable);
}

#[test]
fn lock_grant_at_another_batch_than_the_release_is_rejected() {
    let h = [
        create(0, 1, 1),
        create(1, 2, 2),
        op(10, 11, 10, try_x(1), granted(10)),
        op(
            12,
            13,
            12,
            wait_x(2, 100, 500),
            Answer::Queued { position: 0 },
        ),
        op(20, 21, 30, rel(1), Answer::Done),
        // The release grants in its own batch (30), not later.
        op(12, 25, 40, Call::WaitEnd { wait: 100 }, granted(11)),
    ];
    assert_eq!(lock_verdict(&LOCKS, &h), Verdict::NotLinearizable);
}

#[test]
fn effective_time_against_real_time_is_rejected() {
    // The first op answered (real 11) before the second was sent (real
    // 20), but the second has the earlier effective time.
    let h = [
        create(0, 100, 1),
        op(
            20,
            21,
            50,
            Call::CreateSession { ttl: TTL },
            Answer::SessionCreated {
                session: 2,
                expires_at: 50 + TTL,
            },
        ),
    ];
    assert_eq!(lock_verdict(&LOCKS, &h), Verdict::NotLinearizable);
    // Concurrent, they can be ordered by effective time.
    let mut ok = h.clone();
    ok[1].invoke = 0;
    assert_eq!(lock_verdict(&LOCKS, &ok), Verdict::Linearizable);
}

#[test]
fn lock_reentry_and_strangers_are_rejected() {
    let reentry = [
        create(0, 1, 1),
        op(10, 11, 10, try_x(1), granted(10)),
        op(12, 13, 12, try_x(1), granted(11)),
    ];
    let stranger_release = [
        create(0, 1, 1),
        create(1, 2, 2),
        op(10, 11, 10, try_x(1), granted(10)),
        op(12, 13, 12, rel(2), Answer::Done),
    ];
    let busy_when_free = [
        create(0, 1, 1),
        op(10, 11, 10, try_x(1), Answer::WouldBlock),
    ];
    for h in [&reentry[..], &stranger_release, &busy_when_free] {
        assert_eq!(lock_verdict(&LOCKS, h), Verdict::NotLinearizable);
    }
}

#[test]
fn lock_concurrent_acquires_in_either_order_are_accepted() {
    // Both in the same batch (time 10), concurrent in real time: whoever
    // the checker puts first got it.
    for (a, b) in [(1, 2), (2, 1)] {
        let h = [
            create(0, 1, 1),
            create(1, 2, 2),
            op(10, 20, 10, try_x(a), granted(10)),
            op(11, 19, 10, try_x(b), Answer::WouldBlock),
        ];
        assert_eq!(lock_verdict(&LOCKS, &h), Verdict::Linearizable);
    }
    // Shared holders together, an exclusive one refused.
    let h = [
        create(0, 1, 1),
        create(1, 2, 2),
        create(2, 3, 3),
        op(10, 20, 10, try_shared(1), granted(10)),
        op(11, 19, 11, try_shared(2), granted(11)),
        op(12, 18, 12, try_x(3), Answer::WouldBlock),
    ];
    assert_eq!(lock_verdict(&LOCKS, &h), Verdict::Linearizable);
}

#[test]
fn lock_grant_right_after_expiry_is_accepted() {
    // Session 1 expires at 101; the lock-delay ends at 151. A try at 151
    // gets it, and so does a waiter, in the heartbeat batch at 160.
    let try_at_delay_end = [
        create_ttl(0, 1, 1, 100),
        create(1, 2, 2),
        op(10, 11, 10, try_x(1), granted(10)),
        op(20, 21, 120, try_x(2), Answer::WouldBlock),
        op(30, 31, 151, try_x(2), granted(11)),
    ];
    assert_eq!(
        lock_verdict(&LOCKS, &try_at_delay_end),
        Verdict::Linearizable
    );
    let waiter = [
        create_ttl(0, 1, 1, 100),
        create(1, 2, 2),
        op(10, 11, 10, try_x(1), granted(10)),
        op(
            20,
            21,
            50,
            wait_x(2, 7, 500),
            Answer::Queued { position: 0 },
        ),
        op(20, 40, 160, Call::WaitEnd { wait: 7 }, granted(11)),
        op(41, 42, 170, rel(2), Answer::Done),
    ];
    assert_eq!(lock_verdict(&LOCKS, &waiter), Verdict::Linearizable);
}

#[test]
fn lock_wait_timeouts_and_aborts_are_accepted() {
    let h = [
        create(0, 1, 1),
        create_ttl(1, 2, 2, 300),
        create(2, 3, 3),
        op(10, 11, 10, try_x(1), granted(10)),
        op(
            12,
            13,
            20,
            wait_x(2, 7, 100),
            Answer::Queued { position: 0 },
        ),
        // Timed out at 120, seen in the heartbeat batch at 130.
        op(12, 50, 130, Call::WaitEnd { wait: 7 }, Answer::WaitTimedOut),
        op(
            51,
            52,
            140,
            wait_x(2, 8, 500),
            Answer::Queued { position: 0 },
        ),
        // Session 2 expires at 302: its wait is aborted.
        op(51, 60, 310, Call::WaitEnd { wait: 8 }, Answer::WaitAborted),
        op(61, 62, 320, try_x(3), Answer::WouldBlock),
    ];
    assert_eq!(lock_verdict(&LOCKS, &h), Verdict::Linearizable);
    // A timeout reported before the deadline is wrong.
    let mut early = h.clone();
    early[5] = op(12, 50, 100, Call::WaitEnd { wait: 7 }, Answer::WaitTimedOut);
    assert_eq!(lock_verdict(&LOCKS, &early), Verdict::NotLinearizable);
}

#[test]
fn lock_pending_ops_may_or_may_not_have_happened() {
    let took_it = [
        create(0, 1, 1),
        create(1, 2, 2),
        pending(10, try_x(1)),
        op(20, 21, 20, try_x(2), Answer::WouldBlock),
    ];
    let did_not = [
        create(0, 1, 1),
        create(1, 2, 2),
        pending(10, try_x(1)),
        op(20, 21, 20, try_x(2), granted(5)),
    ];
    // A pending acquire that waited and got the lock when the holder's
    // lease ran out, in a batch nobody observed.
    let after_expiry = [
        create_ttl(0, 1, 1, 100),
        create(1, 2, 2),
        op(3, 4, 10, try_x(1), granted(3)),
        pending(5, try_x(2)),
        op(
            20,
            21,
            300,
            Call::RenewLock {
                session: 2,
                ttl: 100,
            },
            Answer::Renewed { expires_at: 400 },
        ),
    ];
    for h in [&took_it[..], &did_not, &after_expiry] {
        assert_eq!(lock_verdict(&LOCKS, h), Verdict::Linearizable);
    }
}

// ------------------------------------------------------------ queues --

const QUEUE: QueueModel = QueueModel {
    dead_letter_after: 2,
    dedup_window: 1_000,
};

fn queue_verdict(history: &[Operation<Timed, Answer>]) -> Verdict {
    check(&QUEUE, history, BOUND)
}

fn submit(id: u64, rank: u8) -> Call {
    Call::Submit {
        id,
        rank,
        dedup: None,
    }
}

fn submitted(id: u64) -> Answer {
    Answer::Submitted {
        id,
        duplicate: false,
    }
}

fn claim(s: u64) -> Call {
    Call::Claim {
        session: s,
        visibility_timeout: 100,
    }
}

fn claimed(id: u64, delivery: u32) -> Answer {
    Answer::Claimed { id, delivery }
}

fn ack(s: u64, id: u64, delivery: u32) -> Call {
    Call::Ack {
        session: s,
        id,
        delivery,
    }
}

fn nack(s: u64, id: u64, delivery: u32) -> Call {
    Call::Nack {
        session: s,
        id,
        delivery,
    }
}

/// Sessions 1 and 2 and message 7 (Normal).
fn queue_start() -> Vec<Operation<Timed, Answer>> {
    vec![
        create(0, 1, 1),
        create(1, 2, 2),
        op(2, 3, 3, submit(7, 2), submitted(7)),
    ]
}

fn with(
    mut start: Vec<Operation<Timed, Answer>>,
    more: &[Operation<Timed, Answer>],
) -> Vec<Operation<Timed, Answer>> {
    start.extend_from_slice(more);
    start
}

#[test]
fn queue_claimed_by_two_sessions_inside_the_timeout_is_rejected() {
    let h = with(
        queue_start(),
        &[
            op(10, 11, 10, claim(1), claimed(7, 1)),
            op(20, 21, 50, claim(2), claimed(7, 2)),
        ],
    );
    assert_eq!(queue_verdict(&h), Verdict::NotLinearizable);
}

#[test]
fn queue_acked_message_claimed_again_is_rejected() {
    let h = with(
        queue_start(),
        &[
            op(10, 11, 10, claim(1), claimed(7, 1)),
            op(12, 13, 20, ack(1, 7, 1), Answer::Done),
            op(20, 21, 500, claim(2), claimed(7, 2)),
        ],
    );
    assert_eq!(queue_verdict(&h), Verdict::NotLinearizable);
}

#[test]
fn queue_expired_claim_acked_is_rejected() {
    // Claimed at 10 for 100: gone at 110.
    let h = with(
        queue_start(),
        &[
            op(10, 11, 10, claim(1), claimed(7, 1)),
            op(12, 13, 120, ack(1, 7, 1), Answer::Done),
        ],
    );
    assert_eq!(queue_verdict(&h), Verdict::NotLinearizable);
    let mut ok = h.clone();
    ok[4].output = Answer::NoSuchClaim;
    assert_eq!(queue_verdict(&ok), Verdict::Linearizable);
}

#[test]
fn queue_priority_and_fifo_violations_are_rejected() {
    let lower_first = [
        create(0, 1, 1),
        op(2, 3, 3, submit(1, 3), submitted(1)),
        op(4, 5, 5, submit(2, 0), submitted(2)),
        op(10, 11, 10, claim(1), claimed(1, 1)),
    ];
    let fifo = [
        create(0, 1, 1),
        op(2, 3, 3, submit(1, 2), submitted(1)),
        op(4, 5, 5, submit(2, 2), submitted(2)),
        op(10, 11, 10, claim(1), claimed(2, 1)),
    ];
    let lost = [
        create(0, 1, 1),
        op(2, 3, 3, submit(1, 2), submitted(1)),
        op(10, 11, 10, claim(1), Answer::Empty),
    ];
    for h in [&lower_first[..], &fifo, &lost] {
        assert_eq!(queue_verdict(h), Verdict::NotLinearizable);
    }
}

#[test]
fn queue_wrong_claimant_or_delivery_is_rejected() {
    let stranger_ack = with(
        queue_start(),
        &[
            op(10, 11, 10, claim(1), claimed(7, 1)),
            op(12, 13, 20, ack(2, 7, 1), Answer::Done),
        ],
    );
    // After the timeout the redelivery is the second delivery.
    let wrong_count = with(
        queue_start(),
        &[
            op(10, 11, 10, claim(1), claimed(7, 1)),
            op(12, 13, 200, claim(2), claimed(7, 1)),
        ],
    );
    let acked_twice = with(
        queue_start(),
        &[
            op(10, 11, 10, claim(1), claimed(7, 1)),
            op(12, 13, 20, ack(1, 7, 1), Answer::Done),
            op(14, 15, 30, ack(1, 7, 1), Answer::Done),
        ],
    );
    for h in [&stranger_ack[..], &wrong_count, &acked_twice] {
        assert_eq!(queue_verdict(h), Verdict::NotLinearizable);
    }
}

#[test]
fn queue_dead_letter_and_session_end_violations_are_rejected() {
    // Two deliveries expired: a dead letter, never claimed again.
    let resurrected = with(
        queue_start(),
        &[
            op(10, 11, 10, claim(1), claimed(7, 1)),
            op(12, 13, 200, claim(1), claimed(7, 2)),
            op(14, 15, 400, claim(2), claimed(7, 3)),
        ],
    );
    // A session's expiry returns its claims.
    let kept_after_expiry = [
        create_ttl(0, 1, 1, 100),
        create(1, 2, 2),
        op(2, 3, 3, submit(7, 2), submitted(7)),
        op(
            10,
            11,
            10,
            Call::Claim {
                session: 1,
                visibility_timeout: 10_000,
            },
            claimed(7, 1),
        ),
        op(20, 21, 150, claim(2), Answer::Empty),
    ];
    // A dedup key within its window does not add a message.
    let dedup_ignored = [
        op(
            2,
            3,
            3,
            Call::Submit {
                id: 1,
                rank: 2,
                dedup: Some(9),
            },
            submitted(1),
        ),
        op(
            4,
            5,
            5,
            Call::Submit {
                id: 2,
                rank: 2,
                dedup: Some(9),
            },
            submitted(2),
        ),
    ];
    for h in [&resurrected[..], &kept_after_expiry, &dedup_ignored] {
        assert_eq!(queue_verdict(h), Verdict::NotLinearizable);
    }
}

#[test]
fn queue_redelivery_to_another_session_is_accepted() {
    let h = with(
        queue_start(),
        &[
            op(10, 11, 10, claim(1), claimed(7, 1)),
            op(20, 21, 120, claim(2), claimed(7, 2)),
            // The first claimant's ack comes too late.
            op(15, 30, 125, ack(1, 7, 1), Answer::NoSuchClaim),
            op(31, 32, 130, ack(2, 7, 2), Answer::Done),
            op(
                33,
                34,
                140,
                Call::Depth,
                Answer::Depth {
                    ready: [0; 4],
                    claimed: 0,
                    dead: 0,
                },
            ),
        ],
    );
    assert_eq!(queue_verdict(&h), Verdict::Linearizable);
}

#[test]
fn queue_concurrent_submits_nacks_dead_letters_and_dedup_are_accepted() {
    // Concurrent submits: either order, so claiming 2 first is fine.
    let concurrent = [
        create(0, 1, 1),
        op(2, 10, 5, submit(1, 2), submitted(1)),
        op(3, 9, 5, submit(2, 2), submitted(2)),
        op(11, 12, 12, claim(1), claimed(2, 1)),
        op(13, 14, 14, Call::Peek, Answer::Peeked(Some(1))),
    ];
    let nacked = with(
        queue_start(),
        &[
            op(10, 11, 10, claim(1), claimed(7, 1)),
            op(12, 13, 20, nack(1, 7, 1), Answer::Done),
            op(14, 15, 30, claim(2), claimed(7, 2)),
            // The second delivery expires: a dead letter.
            op(16, 17, 200, claim(1), Answer::Empty),
            op(
                18,
                19,
                210,
                Call::Depth,
                Answer::Depth {
                    ready: [0; 4],
                    claimed: 0,
                    dead: 1,
                },
            ),
        ],
    );
    let dedup = [
        op(
            2,
            3,
            3,
            Call::Submit {
                id: 1,
                rank: 2,
                dedup: Some(9),
            },
            submitted(1),
        ),
        op(
            4,
            5,
            5,
            Call::Submit {
                id: 2,
                rank: 2,
                dedup: Some(9),
            },
            Answer::Submitted {
                id: 1,
                duplicate: true,
            },
        ),
        // The window (1 000) is over: a new message.
        op(
            6,
            7,
            1_100,
            Call::Submit {
                id: 3,
                rank: 2,
                dedup: Some(9),
            },
            submitted(3),
        ),
    ];
    // A submit nobody heard back from may have happened.
    let pending_submit = [
        create(0, 1, 1),
        pending(2, submit(5, 1)),
        op(10, 11, 10, claim(1), claimed(5, 1)),
    ];
    for h in [&concurrent[..], &nacked, &dedup, &pending_submit] {
        assert_eq!(queue_verdict(h), Verdict::Linearizable);
    }
}

#[test]
fn the_bound_gives_unknown() {
    let mut h: Vec<_> = (0..6)
        .map(|i| op(0, 100, 5, submit(i, 2), submitted(i)))
        .collect();
    h.insert(0, create(0, 1, 1));
    h.push(op(101, 102, 10, claim(1), claimed(99, 1)));
    assert_eq!(check(&QUEUE, &h, 50), Verdict::Unknown);
    assert_eq!(check(&QUEUE, &h, u64::MAX), Verdict::NotLinearizable);
}
