//! Property: histories produced by running `qlock` sequentially (one
//! linearization, batches at increasing effective times, heartbeats in
//! between) and then blurred with random real-time overlap are accepted by
//! the timed models, through the same recorder the simulator uses
//! (`history::check_observed`). The two sides share no code: the models
//! are written from the specification.

mod common;

use common::Harness;
use primitives::{Bytes, Digest, HlcTimestamp};
use proptest::prelude::*;
use qlock::history::locks::LockModel;
use qlock::history::{check_observed, Observed, QueueModel, Receipted, Verdict};
use qlock::{
    decode_outcome, Config, Durability, LockMode, MessageId, Op, OpError, OpResult, Priority,
    SessionId,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

const MS: u64 = 1_000;
const CLIENTS: usize = 3;
const BATCHES: usize = 70;
/// Real-time units between two batches' linearization points.
const GAP: u64 = 1_000;
/// How far an op's invoke and response may lie from its point.
const BLUR: u64 = 2_500;

fn config() -> Config {
    Config {
        session_ttl_min: 100 * MS,
        lock_delay: 50 * MS,
        visibility_timeout_min: 20 * MS,
        dead_letter_after: 2,
        dedup_window: 200 * MS,
        ..Config::default()
    }
}

#[derive(Default)]
struct Client {
    session: Option<SessionId>,
    claims: Vec<(MessageId, u32)>,
}

fn next_op(client: &mut Client, rng: &mut ChaCha8Rng) -> Op {
    let Some(session) = client.session else {
        return Op::CreateSession { ttl: 150 * MS };
    };
    let resource = ["a", "b"][rng.gen_range(0..2)].to_string();
    let queue = "q".to_string();
    match rng.gen_range(0..100) {
        0..=7 => Op::RenewSession {
            session,
            ttl: 150 * MS,
        },
        8..=9 => Op::DestroySession { session },
        10..=34 => Op::Acquire {
            session,
            resource,
            mode: if rng.gen_bool(0.3) {
                LockMode::Shared
            } else {
                LockMode::Exclusive
            },
            wait: rng.gen_bool(0.5).then_some(100 * MS),
        },
        35..=49 => Op::Release { session, resource },
        50..=51 => Op::RenewLock {
            session,
            resource,
            ttl: 150 * MS,
        },
        52..=66 => Op::Submit {
            queue,
            priority: Priority::ALL[rng.gen_range(0..4)],
            payload: Bytes(vec![rng.gen()]),
            dedup_key: rng
                .gen_bool(0.2)
                .then(|| Bytes(vec![rng.gen_range(0..3u8)])),
            durability: Durability::Sync,
        },
        67..=79 => Op::Claim {
            session,
            queue,
            visibility_timeout: 40 * MS,
        },
        80..=93 if !client.claims.is_empty() => {
            let (message, delivery) = client.claims.remove(rng.gen_range(0..client.claims.len()));
            if rng.gen_bool(0.7) {
                Op::Ack {
                    session,
                    message,
                    delivery,
                }
            } else {
                Op::Nack {
                    session,
                    message,
                    delivery,
                }
            }
        }
        80..=96 => Op::Depth { queue },
        _ => Op::Peek { queue },
    }
}

/// Runs `qlock` and records what clients would have observed.
fn generate(seed: u64) -> Vec<Observed> {
    generate_with(seed, BLUR, 0.05)
}

fn generate_with(seed: u64, blur_max: u64, drop: f64) -> Vec<Observed> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut h = Harness::new(config(), CLIENTS);
    let mut clients: Vec<Client> = (0..CLIENTS).map(|_| Client::default()).collect();
    let mut observed: Vec<Observed> = Vec::new();
    // Queued acquires waiting for their end: (request digest) → observed index.
    let mut waiting: BTreeMap<Digest, usize> = BTreeMap::new();
    let blur = |rng: &mut ChaCha8Rng| rng.gen_range(0..blur_max.max(1));
    for k in 0..BATCHES {
        let point = 10 * BLUR + GAP * k as u64;
        h.advance(rng.gen_range(0..60 * MS));
        let count = if rng.gen_bool(0.2) {
            0 // a heartbeat: deadlines only
        } else {
            rng.gen_range(1..=3)
        };
        let mut requests = Vec::new();
        let mut ops = Vec::new();
        for _ in 0..count {
            let c = rng.gen_range(0..CLIENTS);
            let op = next_op(&mut clients[c], &mut rng);
            requests.push(h.request(c, std::slice::from_ref(&op), false));
            ops.push((c, op));
        }
        let out = h.batch(&requests);
        let time = HlcTimestamp::from_micros(h.now);
        // Ends of earlier waits.
        for receipt in &out.receipts {
            if let Some(index) = waiting.remove(&receipt.request) {
                let outcome = decode_outcome(&receipt.result.0).unwrap();
                if let (Ok(OpResult::Granted { .. }), Op::Acquire { .. }) =
                    (&outcome, &observed[index].op)
                {
                    // Nothing to learn: releases pick resources at random.
                }
                observed[index].wait_end = Some(Receipted {
                    at: point + blur(&mut rng),
                    time: receipt.time,
                    outcome,
                });
            }
        }
        for (request, (c, op)) in requests.iter().zip(ops) {
            let digest = request.digest();
            let receipt = out
                .receipts
                .iter()
                .find(|r| r.request == digest && r.op_index == 0)
                .expect("every op has a receipt");
            assert_eq!(receipt.time, time);
            let outcome = decode_outcome(&receipt.result.0).unwrap();
            // Some replies never reach their client (which then cannot
            // learn from them either).
            let dropped = rng.gen_bool(drop);
            // Most unanswered ops still have a known execution time (the
            // committed history); the rest start no deadline (see
            // `Observed::executed_at`).
            let starts_deadline = matches!(
                op,
                Op::CreateSession { .. }
                    | Op::RenewSession { .. }
                    | Op::RenewLock { .. }
                    | Op::Claim { .. }
                    | Op::Acquire { wait: Some(_), .. }
            );
            let executed_at = (dropped && (starts_deadline || rng.gen_bool(0.5))).then_some(time);
            let client = &mut clients[c];
            match (&op, &outcome) {
                _ if dropped => {}
                (_, Err(OpError::NoSuchSession)) => *client = Client::default(),
                (Op::CreateSession { .. }, Ok(OpResult::SessionCreated { session, .. })) => {
                    client.session = Some(*session)
                }
                (Op::DestroySession { .. }, Ok(_)) => *client = Client::default(),
                (Op::Claim { .. }, Ok(OpResult::Claimed(view))) => {
                    client.claims.push((view.id, view.delivery))
                }
                _ => {}
            }
            if matches!(outcome, Ok(OpResult::Queued { .. })) {
                waiting.insert(digest, observed.len());
            }
            let reply = (!dropped).then(|| Receipted {
                at: point + blur(&mut rng),
                time,
                outcome,
            });
            observed.push(Observed {
                invoke: point - blur(&mut rng),
                request: digest,
                op_index: 0,
                op,
                reply,
                wait_end: None,
                executed_at,
            });
        }
    }
    observed
}

fn models() -> (LockModel, QueueModel) {
    (
        LockModel::from_config(&config()),
        QueueModel::from_config(&config()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn sequential_runs_with_overlap_are_linearizable(seed in any::<u64>()) {
        let observed = generate(seed);
        let (locks, queues) = models();
        let verdicts = check_observed(&observed, &locks, &queues, 2_000_000);
        prop_assert!(verdicts.len() >= 2, "parts: {verdicts:?}");
        for v in &verdicts {
            prop_assert_eq!(v.verdict, Verdict::Linearizable, "{:?}", v);
        }
    }
}

/// The recorder feeds real violations through: a claim answer changed to
/// a message that is not first in line is caught.
#[test]
fn a_tampered_claim_is_caught() {
    let mut caught = 0;
    for seed in 0..20 {
        let mut observed = generate(seed);
        // Find two claims of different messages; give the later one the
        // earlier one's answer (a message claimed while already claimed,
        // or after its ack).
        let claims: Vec<usize> = observed
            .iter()
            .enumerate()
            .filter(|(_, o)| {
                matches!(
                    o.reply.as_ref().map(|r| &r.outcome),
                    Some(Ok(OpResult::Claimed(_)))
                )
            })
            .map(|(i, _)| i)
            .collect();
        let Some((&first, &last)) = claims.first().zip(claims.last()) else {
            continue;
        };
        if first == last {
            continue;
        }
        let answer = observed[first].reply.clone().unwrap().outcome;
        observed[last].reply.as_mut().unwrap().outcome = answer;
        let (locks, queues) = models();
        let verdicts = check_observed(&observed, &locks, &queues, 2_000_000);
        if verdicts
            .iter()
            .any(|v| v.verdict == Verdict::NotLinearizable)
        {
            caught += 1;
        }
    }
    assert!(caught >= 15, "caught {caught} of 20");
}
