//! Checkpoints, garbage collection and watermarks (Castro & Liskov §4.3),
//! and catching up by retransmission and committed batches (TOCS §5.2).

mod common;

use common::{config, keys, request, Cluster, T0};
use consensus::{Checkpoint, Input, Message, Output, Rejection, Replica, WireMessage};
use primitives::{CheckpointStatement, Digest, ReplicaId, SeqNum};

type Stable = (SeqNum, Digest, Vec<(ReplicaId, primitives::Signature)>);

fn stable_checkpoints(c: &Cluster, i: usize) -> Vec<Stable> {
    c.outputs[i]
        .iter()
        .filter_map(|o| match o {
            Output::StableCheckpoint {
                seq,
                app_digest,
                certificate,
            } => Some((*seq, *app_digest, certificate.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn checkpoint_quorum_is_a_pulse_certificate_and_collects_the_log() {
    let mut c = Cluster::new(4);
    c.submit((0..16).map(request)); // 4 full batches: seq 4 = K
    c.run(10);
    let cluster = c.replicas[0].config().cluster;
    let keys = keys(4);
    for i in 0..4 {
        assert_eq!(c.executed_seqs(i).len(), 4);
        let stable = stable_checkpoints(&c, i);
        assert_eq!(stable.len(), 1, "replica {i}");
        let (seq, digest, certificate) = &stable[0];
        assert_eq!(*seq, SeqNum(4));
        assert_eq!(*digest, c.app[i], "the application's digest at seq 4");
        assert!(certificate.len() >= 3, "a quorum of signatures");
        let statement = CheckpointStatement {
            cluster,
            seq: *seq,
            header: *digest,
        };
        for (signer, signature) in certificate {
            assert_eq!(
                statement.verify(&keys[signer.index()].public(), signature),
                Ok(())
            );
        }
        assert_eq!(c.replicas[i].low_watermark(), SeqNum(4));
        assert_eq!(c.replicas[i].log_len(), 0, "the log at or below 4 is gone");
        assert_eq!(c.replicas[i].payloads_len(), 0, "payload pins released");
        let released: usize = c.outputs[i]
            .iter()
            .map(|o| match o {
                Output::Release { digests } => digests.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(released, 16);
    }
}

#[test]
fn watermarks_move_so_ordering_continues_past_the_window() {
    // L = 8: 40 requests in batches of 4 need seqs 1..=10, beyond h + L
    // unless checkpoints become stable.
    let mut c = Cluster::new(4);
    c.submit((0..40).map(request));
    c.run(30);
    for i in 0..4 {
        assert_eq!(c.executed_seqs(i).len(), 10, "replica {i}");
        assert_eq!(c.replicas[i].low_watermark(), SeqNum(8));
    }
}

#[test]
fn checkpoint_votes_are_bounded_per_peer() {
    let keys = keys(4);
    let cfg = config(&keys, 2);
    let mut r = Replica::new(config(&keys, 1)).unwrap();
    for k in 1..=10u64 {
        let c = Checkpoint {
            seq: SeqNum(4 * k),
            app_digest: request(k),
            replica: ReplicaId(2),
        };
        let signed = Message::Checkpoint(c).sign(cfg.cluster, &keys[2]);
        r.step(
            T0,
            Input::Peer {
                from: ReplicaId(2),
                message: WireMessage::Signed(signed),
            },
        );
    }
    assert_eq!(r.checkpoint_votes_len(), 3, "checkpoint_votes_per_peer_max");
    let misaligned = Checkpoint {
        seq: SeqNum(5),
        app_digest: request(1),
        replica: ReplicaId(2),
    };
    let signed = Message::Checkpoint(misaligned).sign(cfg.cluster, &keys[2]);
    let out = r.step(
        T0,
        Input::Peer {
            from: ReplicaId(2),
            message: WireMessage::Signed(signed),
        },
    );
    assert!(matches!(
        out[..],
        [Output::Rejected {
            reason: Rejection::CheckpointMisaligned,
            ..
        }]
    ));
    let conflicting = Checkpoint {
        seq: SeqNum(40),
        app_digest: request(99),
        replica: ReplicaId(2),
    };
    let signed = Message::Checkpoint(conflicting).sign(cfg.cluster, &keys[2]);
    let out = r.step(
        T0,
        Input::Peer {
            from: ReplicaId(2),
            message: WireMessage::Signed(signed),
        },
    );
    assert!(matches!(
        out[..],
        [Output::Rejected {
            reason: Rejection::ConflictingCheckpoint,
            ..
        }]
    ));
}

#[test]
fn a_replica_cut_off_past_two_checkpoints_catches_up() {
    // The others order 40 requests and collect their logs while replica 3
    // hears nothing; once reconnected it fetches the committed batches
    // with their certificates and reaches the same state.
    let mut c = Cluster::new(4);
    c.cut.insert(3);
    c.submit((0..40).map(request));
    c.run(30);
    assert_eq!(c.executed_seqs(0).len(), 10);
    assert!(c.executed[3].is_empty());
    assert_eq!(c.replicas[0].low_watermark(), SeqNum(8));
    c.cut.clear();
    c.run(200);
    assert_eq!(c.executed_seqs(3).len(), 10, "caught up");
    assert_eq!(c.app[3], c.app[0], "same state");
    assert_eq!(c.replicas[3].low_watermark(), SeqNum(8));
}

#[test]
fn lost_votes_are_retransmitted_on_status() {
    // Replica 3 misses one batch's messages but is within the window: the
    // peers resend their PRE-PREPARE/PREPARE/COMMIT when its STATUS shows
    // no progress.
    let mut c = Cluster::new(4);
    c.cut.insert(3);
    c.submit((0..4).map(request));
    c.run(5);
    assert_eq!(c.executed_seqs(0), vec![SeqNum(1)]);
    c.cut.clear();
    c.run(40);
    assert_eq!(c.executed_seqs(3), vec![SeqNum(1)]);
}

#[test]
fn a_forged_commit_certificate_is_refused() {
    let mut c = Cluster::new(4);
    c.submit((0..4).map(request));
    c.run(5);
    let mut forged = c.executed[0][0].certificate.clone();
    forged.commits.truncate(2); // below the quorum
    let keys = keys(4);
    let mut r = Replica::new(config(&keys, 3)).unwrap();
    let out = r.step(
        T0,
        Input::CommittedBatch {
            from: ReplicaId(0),
            batch: forged,
        },
    );
    assert!(matches!(
        out[..],
        [Output::Rejected {
            reason: Rejection::InvalidCertificate,
            ..
        }]
    ));
    let mut tampered = c.executed[0][0].certificate.clone();
    tampered.commits[0].signature.0[1] ^= 1;
    let out = r.step(
        T0,
        Input::CommittedBatch {
            from: ReplicaId(0),
            batch: tampered,
        },
    );
    assert!(matches!(
        out[..],
        [Output::Rejected {
            reason: Rejection::InvalidCertificate,
            ..
        }]
    ));
}

#[test]
fn a_checkpoint_skipped_by_a_later_stable_one_still_gets_its_certificate() {
    // Every CHECKPOINT for seq 4 is lost, so 8 becomes stable first (§4.3
    // lets a later checkpoint supersede). The pulse at 4 must still get a
    // quorum certificate: the replicas keep their own vote for it as an
    // orphan and send it again each status tick.
    let mut c = Cluster::new(4);
    c.drop_if = |m| {
        matches!(m, WireMessage::Signed(s)
            if matches!(&s.message, Message::Checkpoint(cp) if cp.seq == SeqNum(4)))
    };
    c.submit((0..32).map(request));
    c.run(40);
    assert_eq!(c.replicas[0].low_watermark(), SeqNum(8));
    assert!(stable_checkpoints(&c, 0).iter().all(|s| s.0 != SeqNum(4)));
    c.drop_if = |_| false;
    c.run(40);
    for i in 0..4 {
        let late: Vec<_> = c.outputs[i]
            .iter()
            .filter_map(|o| match o {
                Output::CheckpointCertified {
                    seq,
                    app_digest,
                    certificate,
                } => Some((*seq, *app_digest, certificate.len())),
                _ => None,
            })
            .collect();
        assert_eq!(late.len(), 1, "replica {i}: {late:?}");
        let (seq, digest, signers) = late[0];
        assert_eq!(seq, SeqNum(4));
        assert_eq!(digest, c.app_at[i][&SeqNum(4)], "its own digest");
        assert!(signers >= 3, "a quorum of signers");
    }
}

#[test]
fn an_endorsed_checkpoint_gets_its_certificate_while_f_withhold() {
    // Replica 2 (Byzantine) never sends its CHECKPOINT for seq 4 and
    // replica 3's is lost too (as if it had skipped seq 4 by state
    // transfer): 8 becomes stable, 4 has only two votes. Replica 3 then
    // vouches for 4 by the hash link of a certified successor
    // (Input::EndorseCheckpoint): the replicas that computed 4 now
    // collect a quorum and certify it.
    let mut c = Cluster::new(4);
    c.drop_if = |m| {
        matches!(m, WireMessage::Signed(s)
            if matches!(&s.message, Message::Checkpoint(cp)
                if cp.seq == SeqNum(4) && cp.replica.0 >= 2))
    };
    c.submit((0..32).map(request));
    c.run(60);
    assert_eq!(c.replicas[0].low_watermark(), SeqNum(8));
    let late = |c: &Cluster, i: usize| -> Vec<(SeqNum, usize)> {
        c.outputs[i]
            .iter()
            .filter_map(|o| match o {
                Output::CheckpointCertified {
                    seq, certificate, ..
                } => Some((*seq, certificate.len())),
                _ => None,
            })
            .collect()
    };
    assert!(late(&c, 0).is_empty(), "two votes are not a quorum");
    c.drop_if = |m| {
        matches!(m, WireMessage::Signed(s)
            if matches!(&s.message, Message::Checkpoint(cp)
                if cp.seq == SeqNum(4) && cp.replica.0 == 2))
    };
    let digest = c.app_at[0][&SeqNum(4)];
    c.step(
        3,
        Input::EndorseCheckpoint {
            seq: SeqNum(4),
            app_digest: digest,
        },
    );
    c.run(40);
    for i in [0, 1] {
        assert_eq!(late(&c, i), vec![(SeqNum(4), 3)], "replica {i}");
    }
}
