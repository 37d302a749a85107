//! The normal case of PBFT (Castro & Liskov, OSDI'99 §4.2; TOCS 2002 §4.2)
//! with batching, payload availability, the time rule and persist-before-
//! vote, asserted on the replicas' outputs.

mod common;

use common::{config, keys, request, Cluster, T0};
use consensus::{
    Batch, Config, ConfigError, Input, Message, Output, PersistRecord, PrePrepare, Rejection,
    Replica, Vote, WireMessage,
};
use primitives::{HlcTimestamp, ReplicaId, SeqNum, ViewNumber};

fn pre_prepare(seq: u64, digests: Vec<primitives::Digest>, wall: u64) -> WireMessage {
    let keys = keys(4);
    let cfg = config(&keys, 0);
    let pp = PrePrepare {
        view: ViewNumber(0),
        seq: SeqNum(seq),
        batch: Batch {
            digests,
            batch_time: HlcTimestamp::from_micros(wall),
        },
    };
    WireMessage::Signed(Message::PrePrepare(pp).sign(cfg.cluster, &keys[0]))
}

fn backup() -> Replica {
    let keys = keys(4);
    let mut r = Replica::new(config(&keys, 1)).unwrap();
    r.step(T0, Input::Start);
    r
}

fn peer(from: u16, message: WireMessage) -> Input {
    Input::Peer {
        from: ReplicaId(from),
        message,
    }
}

fn rejected(outputs: &[Output]) -> Vec<Rejection> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Rejected { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

/// The persist id of the accepted PRE-PREPARE among `outputs`.
fn pre_prepare_persist_id(outputs: &[Output]) -> consensus::PersistId {
    outputs
        .iter()
        .find_map(|o| match o {
            Output::Persist {
                id,
                record: PersistRecord::PrePrepare(_),
            } => Some(*id),
            _ => None,
        })
        .expect("the accepted PRE-PREPARE is persisted")
}

fn sends_vote(outputs: &[Output]) -> bool {
    outputs.iter().any(|o| {
        matches!(o, Output::Broadcast { message: WireMessage::Signed(s) }
            if matches!(s.message, Message::Prepare(_) | Message::Commit(_)))
    })
}

#[test]
fn config_checks_watermarks_and_identity() {
    let keys = keys(4);
    let mut cfg = config(&keys, 1);
    assert_eq!(cfg.validate(), Ok(()));
    cfg.watermark_window = cfg.checkpoint_interval; // §4.3: L ≥ 2K here
    assert!(matches!(cfg.validate(), Err(ConfigError::Invalid(_))));
    let mut cfg = config(&keys, 1);
    cfg.key = keys[2].clone();
    assert_eq!(cfg.validate(), Err(ConfigError::WrongKey(ReplicaId(1))));
    // A batch must not wait as long as a backup waits before suspecting
    // the primary (§4.5.2).
    let mut cfg = config(&keys, 1);
    cfg.batch_delay_micros = cfg.view_change_timeout_micros;
    assert_eq!(
        cfg.validate(),
        Err(ConfigError::Invalid(
            "batch_delay_micros >= view_change_timeout_micros"
        ))
    );
}

#[test]
fn quorum_is_2f_plus_1_for_3f_plus_1_and_larger_otherwise() {
    // §4 (n = 3f+1) and the general ⌈(n+f+1)/2⌉ for other sizes.
    for (n, quorum) in [(1, 1), (4, 3), (5, 4), (6, 4), (7, 5)] {
        let keys = keys(n);
        let cfg: Config = config(&keys, 0);
        assert_eq!(cfg.membership.quorum(), quorum, "n = {n}");
    }
}

#[test]
fn normal_case_orders_executes_in_seq_order_everywhere() {
    // §4.2: PRE-PREPARE, PREPARE, COMMIT; execution strictly in seq order.
    let mut c = Cluster::new(4);
    c.submit((0..10).map(request));
    c.run(20);
    let batches = |i: usize| -> Vec<_> {
        c.executed[i]
            .iter()
            .map(|b| (b.seq, b.time, b.digests.clone()))
            .collect()
    };
    let first = c.executed[0].clone();
    let total: usize = first.iter().map(|b| b.digests.len()).sum();
    assert_eq!(total, 10, "every request executed once");
    assert!(first.iter().all(|b| b.digests.len() <= 4), "batch_size_max");
    for i in 0..4 {
        let seqs = c.executed_seqs(i);
        let expected: Vec<SeqNum> = (1..=seqs.len() as u64).map(SeqNum).collect();
        assert_eq!(seqs, expected, "replica {i} executes 1, 2, 3, …");
        assert_eq!(batches(i), batches(0), "replica {i} agrees");
    }
    let times: Vec<HlcTimestamp> = first.iter().map(|b| b.time).collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "effective time increases"
    );
}

#[test]
fn partial_batch_waits_for_the_batch_delay() {
    // TOCS §5.1 batching: a partial batch goes out when the delay runs out.
    let mut c = Cluster::new(4);
    c.submit([request(1)]);
    c.deliver_all();
    assert!(c.executed[0].is_empty(), "nothing before the batch delay");
    c.run(5);
    assert_eq!(c.executed_seqs(0), vec![SeqNum(1)]);
}

#[test]
fn adaptive_batching_proposes_at_once_when_idle_and_gathers_while_busy() {
    // TOCS §5.1 batching, adaptive: with nothing in flight a lone request
    // goes out at once; while a batch is in flight, the next requests wait
    // for the batch delay (or a full batch) and go out together.
    let keys = keys(4);
    let replicas = (0..4)
        .map(|i| {
            let mut cfg = config(&keys, i);
            cfg.propose_when_idle = true;
            cfg.batches_in_flight_max = 1;
            Replica::new(cfg).unwrap()
        })
        .collect();
    let mut c = Cluster::with(replicas);
    c.submit([request(1)]);
    c.deliver_all();
    assert_eq!(
        c.executed_seqs(0),
        vec![SeqNum(1)],
        "no batch delay when idle"
    );
    c.submit([request(2)]);
    assert_eq!(pre_prepares(&c), 2, "idle again: proposed at once");
    c.submit([request(3), request(4), request(5)]);
    assert_eq!(pre_prepares(&c), 2, "seq 2 in flight: the rest wait");
    c.run(5);
    let sizes: Vec<usize> = c.executed[0].iter().map(|b| b.digests.len()).collect();
    assert_eq!(
        sizes,
        vec![1, 1, 3],
        "the waiting requests went out together"
    );
}

#[test]
fn pipelined_batching_keeps_two_batches_in_flight_and_refills_on_execution() {
    // TOCS §5.1 batching with a pipeline: below `batches_in_flight_max`
    // a partial batch goes out at once; with the pipeline full the next
    // requests gather, and go out together as soon as a batch executes --
    // not only when the batch delay runs out.
    let keys = keys(4);
    let replicas = (0..4)
        .map(|i| {
            let mut cfg = config(&keys, i);
            cfg.propose_when_idle = true;
            cfg.batches_in_flight_max = 2;
            Replica::new(cfg).unwrap()
        })
        .collect();
    let mut c = Cluster::with(replicas);
    c.submit([request(1)]);
    assert_eq!(pre_prepares(&c), 1, "empty pipeline: proposed at once");
    c.submit([request(2)]);
    assert_eq!(pre_prepares(&c), 2, "one in flight: room for another");
    c.submit([request(3), request(4), request(5)]);
    assert_eq!(pre_prepares(&c), 2, "two in flight: the rest wait");
    // No timer fires here: only the executions can release the waiters.
    c.deliver_all();
    assert_eq!(
        c.executed_seqs(0),
        vec![SeqNum(1), SeqNum(2), SeqNum(3)],
        "the waiting requests went out when a batch executed"
    );
    let sizes: Vec<usize> = c.executed[0].iter().map(|b| b.digests.len()).collect();
    assert_eq!(sizes, vec![1, 1, 3], "and went out together");
}

/// The PRE-PREPAREs the primary (replica 0) has broadcast.
fn pre_prepares(c: &Cluster) -> usize {
    c.outputs[0]
        .iter()
        .filter(|o| matches!(o, Output::Broadcast { message: WireMessage::Signed(s) } if matches!(s.message, Message::PrePrepare(_))))
        .count()
}

#[test]
fn single_replica_commits_alone() {
    // n = 1, f = 0, quorum 1: the development mode.
    let mut c = Cluster::new(1);
    c.submit((0..6).map(request));
    c.run(5);
    assert_eq!(c.executed_seqs(0), vec![SeqNum(1), SeqNum(2)]);
}

#[test]
fn prepare_is_sent_only_after_the_pre_prepare_is_durable() {
    // DESIGN.md step 6 (PBFT's log must survive a crash, TOCS §4.4).
    let mut r = backup();
    r.step(T0, Input::RequestReady { digest: request(1) });
    let out = r.step(T0, peer(0, pre_prepare(1, vec![request(1)], T0)));
    let id = pre_prepare_persist_id(&out);
    assert!(!sends_vote(&out), "no PREPARE before the acknowledgement");
    let out = r.step(T0, Input::PersistAck { id });
    assert!(sends_vote(&out), "PREPARE after the acknowledgement");
}

#[test]
fn one_acknowledgement_covers_several_persists() {
    // Group commit: an ack of id i covers every id ≤ i.
    let mut r = backup();
    let mut ids = Vec::new();
    for s in 1..=3 {
        r.step(T0, Input::RequestReady { digest: request(s) });
        let out = r.step(T0, peer(0, pre_prepare(s, vec![request(s)], T0)));
        ids.extend(out.iter().filter_map(|o| match o {
            Output::Persist { id, .. } => Some(*id),
            _ => None,
        }));
    }
    assert_eq!(ids.len(), 3);
    let out = r.step(T0, Input::PersistAck { id: ids[2] });
    let prepares = out
        .iter()
        .filter(|o| matches!(o, Output::Broadcast { message: WireMessage::Signed(s) } if matches!(s.message, Message::Prepare(_))))
        .count();
    assert_eq!(prepares, 3);
}

#[test]
fn missing_payloads_are_fetched_before_prepare() {
    // DESIGN.md step 4, payload availability.
    let mut r = backup();
    let out = r.step(
        T0,
        peer(0, pre_prepare(1, vec![request(1), request(2)], T0)),
    );
    let fetched: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::FetchPayloads { digests, hint } => Some((digests.clone(), *hint)),
            _ => None,
        })
        .collect();
    assert_eq!(fetched, vec![(vec![request(1), request(2)], ReplicaId(0))]);
    assert!(!out.iter().any(|o| matches!(o, Output::Persist { .. })));
    let out = r.step(
        T0,
        Input::PayloadFetched {
            digest: request(1),
            valid: true,
        },
    );
    assert!(
        !out.iter().any(|o| matches!(o, Output::Persist { .. })),
        "one still missing"
    );
    let out = r.step(
        T0,
        Input::PayloadFetched {
            digest: request(2),
            valid: false,
        },
    );
    assert_eq!(rejected(&out), vec![Rejection::InvalidPayload]);
    assert!(
        !out.iter().any(|o| matches!(o, Output::Persist { .. })),
        "invalid is not held"
    );
    let out = r.step(T0, Input::RequestReady { digest: request(2) });
    assert!(
        out.iter().any(|o| matches!(o, Output::Persist { .. })),
        "all held: persist"
    );
}

#[test]
fn batch_time_from_the_future_is_refused() {
    // DESIGN.md step 5: batch_time within max_clock_skew of the local clock.
    let mut r = backup();
    r.step(T0, Input::RequestReady { digest: request(1) });
    let skew = 100_000;
    let out = r.step(T0, peer(0, pre_prepare(1, vec![request(1)], T0 + skew + 1)));
    assert_eq!(rejected(&out), vec![Rejection::BatchTimeSkew]);
    let out = r.step(T0, peer(0, pre_prepare(1, vec![request(1)], T0 + skew)));
    assert!(
        out.iter().any(|o| matches!(o, Output::Persist { .. })),
        "at the bound: accepted"
    );
}

#[test]
fn stale_batch_time_needs_f_plus_1_vouchers() {
    // A PRE-PREPARE older than the skew is accepted only once f+1 replicas
    // (the primary and f backups) vouch for it.
    let keys = keys(4);
    let cfg = config(&keys, 2);
    let mut r = backup();
    r.step(T0, Input::RequestReady { digest: request(1) });
    let old = pre_prepare(1, vec![request(1)], T0 - 200_000);
    let WireMessage::Signed(signed) = &old else {
        unreachable!()
    };
    let Message::PrePrepare(pp) = &signed.message else {
        unreachable!()
    };
    let out = r.step(T0, peer(0, old.clone()));
    assert!(!out.iter().any(|o| matches!(o, Output::Persist { .. })));
    let vote = Vote {
        view: ViewNumber(0),
        seq: SeqNum(1),
        batch: pp.batch.digest(),
        replica: ReplicaId(2),
    };
    let prepare = Message::Prepare(vote).sign(cfg.cluster, &keys[2]);
    let out = r.step(T0, peer(2, WireMessage::Signed(prepare)));
    assert!(
        out.iter().any(|o| matches!(o, Output::Persist { .. })),
        "vouched: accepted"
    );
}

#[test]
fn invalid_peer_inputs_are_rejected_by_name() {
    // §4.2: signature, view, sender, watermarks, conflicts; bounds.
    let keys = keys(4);
    let cfg = config(&keys, 0);
    let mut r = backup();
    let out = r.step(T0, peer(0, pre_prepare(9, vec![request(1)], T0)));
    assert_eq!(
        rejected(&out),
        vec![Rejection::OutsideWatermarks],
        "h + L = 8"
    );
    let mut bad = pre_prepare(1, vec![request(1)], T0);
    if let WireMessage::Signed(s) = &mut bad {
        s.signature.0[0] ^= 1;
    }
    assert_eq!(
        rejected(&r.step(T0, peer(0, bad))),
        vec![Rejection::BadSignature]
    );
    let big = pre_prepare(1, (0..5).map(request).collect(), T0);
    assert_eq!(
        rejected(&r.step(T0, peer(0, big))),
        vec![Rejection::BatchTooLarge]
    );
    let dup = pre_prepare(1, vec![request(1), request(1)], T0);
    assert_eq!(
        rejected(&r.step(T0, peer(0, dup))),
        vec![Rejection::DuplicateDigestInBatch]
    );
    r.step(T0, peer(0, pre_prepare(1, vec![request(1)], T0)));
    let again = r.step(T0, peer(0, pre_prepare(1, vec![request(1)], T0)));
    assert_eq!(rejected(&again), vec![Rejection::Duplicate]);
    let other = r.step(T0, peer(0, pre_prepare(1, vec![request(2)], T0)));
    assert_eq!(rejected(&other), vec![Rejection::ConflictingPrePrepare]);
    // A PREPARE signed by the primary.
    let vote = Vote {
        view: ViewNumber(0),
        seq: SeqNum(1),
        batch: request(7),
        replica: ReplicaId(0),
    };
    let from_primary = Message::Prepare(vote).sign(cfg.cluster, &keys[0]);
    let out = r.step(T0, peer(0, WireMessage::Signed(from_primary)));
    assert_eq!(rejected(&out), vec![Rejection::PrepareFromPrimary]);
    // Wrong view.
    let vote = Vote {
        view: ViewNumber(3),
        replica: ReplicaId(2),
        ..vote
    };
    let wrong_view = Message::Commit(vote).sign(cfg.cluster, &keys[2]);
    let out = r.step(T0, peer(2, WireMessage::Signed(wrong_view)));
    assert_eq!(rejected(&out), vec![Rejection::WrongView]);
    // Two different COMMITs from one replica.
    let vote = Vote {
        view: ViewNumber(0),
        ..vote
    };
    let a = Message::Commit(vote).sign(cfg.cluster, &keys[2]);
    let b = Message::Commit(Vote {
        batch: request(8),
        ..vote
    })
    .sign(cfg.cluster, &keys[2]);
    assert!(rejected(&r.step(T0, peer(2, WireMessage::Signed(a)))).is_empty());
    let out = r.step(T0, peer(2, WireMessage::Signed(b)));
    assert_eq!(rejected(&out), vec![Rejection::ConflictingVote]);
}

#[test]
fn a_full_mempool_refuses_and_releases() {
    let mut r = backup();
    for i in 0..64 {
        assert!(rejected(&r.step(T0, Input::RequestReady { digest: request(i) })).is_empty());
    }
    let out = r.step(
        T0,
        Input::RequestReady {
            digest: request(64),
        },
    );
    assert_eq!(rejected(&out), vec![Rejection::MempoolFull]);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Release { digests } if digests == &vec![request(64)])));
    assert_eq!(r.payloads_len(), 64);
}

/// A backup that accepted the PRE-PREPARE of `request(1)` at seq 1 and
/// sent its PREPARE; the batch's digest.
fn backup_that_prepared_request_1() -> (Replica, primitives::Digest) {
    let mut r = backup();
    r.step(T0, Input::RequestReady { digest: request(1) });
    let pp = pre_prepare(1, vec![request(1)], T0);
    let WireMessage::Signed(signed) = &pp else {
        unreachable!()
    };
    let Message::PrePrepare(proposal) = &signed.message else {
        unreachable!()
    };
    let digest = proposal.batch.digest();
    let out = r.step(T0, peer(0, pp));
    let id = pre_prepare_persist_id(&out);
    assert!(sends_vote(&r.step(T0, Input::PersistAck { id })));
    (r, digest)
}

#[test]
fn a_prepare_after_the_prepared_certificate_costs_no_signature_check() {
    // §4.2: prepared(m, v, n, i) needs the PRE-PREPARE and 2f PREPAREs;
    // once the certificate is taken, a further PREPARE changes nothing,
    // so it is refused as stale before its signature is checked.
    let keys = keys(4);
    let cfg = config(&keys, 0);
    let (mut r, digest) = backup_that_prepared_request_1();
    let vote = |replica| Vote {
        view: ViewNumber(0),
        seq: SeqNum(1),
        batch: digest,
        replica: ReplicaId(replica),
    };
    let mut bad = Message::Prepare(vote(3)).sign(cfg.cluster, &keys[3]);
    bad.signature.0[0] ^= 1;
    // Before the certificate, a forged PREPARE is checked and refused.
    let out = r.step(T0, peer(3, WireMessage::Signed(bad.clone())));
    assert_eq!(rejected(&out), vec![Rejection::BadSignature]);
    let good = Message::Prepare(vote(2)).sign(cfg.cluster, &keys[2]);
    let out = r.step(T0, peer(2, WireMessage::Signed(good)));
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Persist {
                record: PersistRecord::Prepared { .. },
                ..
            }
        )),
        "own PREPARE + one more + the PRE-PREPARE: prepared"
    );
    let out = r.step(T0, peer(3, WireMessage::Signed(bad)));
    assert_eq!(rejected(&out), vec![Rejection::Stale]);
}

#[test]
fn preverify_batched_signature_checks_change_no_output() {
    // §4.2 authentication, batched: checking a pass's signatures in one
    // batch is an optimisation only. The same run, each delivery preceded
    // by a batch check of everything queued to the receiver, yields the
    // same outputs at every replica, including checkpoints (§4.3).
    let run = |preverify: bool| {
        let mut c = Cluster::new(4);
        c.preverify = preverify;
        for round in 0..12u64 {
            c.submit((round * 3..round * 3 + 3).map(request));
            c.run(3);
        }
        c.run(20);
        c
    };
    let plain = run(false);
    let batched = run(true);
    let executed: usize = plain.executed[0].iter().map(|b| b.digests.len()).sum();
    assert_eq!(executed, 36, "every request executed");
    assert!(
        plain.outputs[1]
            .iter()
            .any(|o| matches!(o, Output::StableCheckpoint { .. })),
        "the run reaches a stable checkpoint"
    );
    for i in 0..4 {
        assert_eq!(
            format!("{:?}", batched.outputs[i]),
            format!("{:?}", plain.outputs[i]),
            "replica {i}"
        );
    }
}

#[test]
fn preverify_does_not_lend_a_valid_signature_to_another_message() {
    // §4.2: a vote counts only with its own signer's signature over it. A
    // forged COMMIT carrying the signature of that signer's valid PREPARE,
    // checked in the same batch, is still refused; the PREPARE counts.
    let keys = keys(4);
    let cfg = config(&keys, 0);
    let (mut r, digest) = backup_that_prepared_request_1();
    let vote = Vote {
        view: ViewNumber(0),
        seq: SeqNum(1),
        batch: digest,
        replica: ReplicaId(2),
    };
    let prepare = Message::Prepare(vote).sign(cfg.cluster, &keys[2]);
    let mut forged = Message::Commit(vote).sign(cfg.cluster, &keys[2]);
    forged.signature = prepare.signature;
    let batch = [
        WireMessage::Signed(forged.clone()),
        WireMessage::Signed(prepare.clone()),
    ];
    r.preverify(&batch);
    let out = r.step(T0, peer(2, WireMessage::Signed(forged)));
    assert_eq!(rejected(&out), vec![Rejection::BadSignature]);
    let out = r.step(T0, peer(2, WireMessage::Signed(prepare)));
    assert!(rejected(&out).is_empty(), "the valid PREPARE counts");
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Persist {
                record: PersistRecord::Prepared { .. },
                ..
            }
        )),
        "PRE-PREPARE + 2f PREPAREs (ours and replica 2's): prepared"
    );
}
