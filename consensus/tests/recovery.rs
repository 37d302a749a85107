//! Crash recovery (DESIGN.md step 6; TOCS §4.4: what a replica persisted
//! survives a crash): a replica restored from its durable records never
//! votes against them.

mod common;

use common::{config, keys, request, T0};
use consensus::{
    Batch, Input, Message, Output, PersistRecord, PrePrepare, RecoveredState, Rejection, Replica,
    WireMessage,
};
use primitives::{HlcTimestamp, ReplicaId, SeqNum, ViewNumber};

fn pre_prepare(seq: u64, digest: u64) -> WireMessage {
    let keys = keys(4);
    let pp = PrePrepare {
        view: ViewNumber(0),
        seq: SeqNum(seq),
        batch: Batch {
            digests: vec![request(digest)],
            batch_time: HlcTimestamp::from_micros(T0),
        },
    };
    WireMessage::Signed(Message::PrePrepare(pp).sign(config(&keys, 0).cluster, &keys[0]))
}

/// Runs `inputs` through `r`, acknowledging every persist, and returns the
/// outputs and the durable records.
fn drive(r: &mut Replica, inputs: Vec<Input>) -> (Vec<Output>, Vec<PersistRecord>) {
    let mut outputs = Vec::new();
    let mut records = Vec::new();
    let mut work: std::collections::VecDeque<Input> = inputs.into();
    while let Some(input) = work.pop_front() {
        for o in r.step(T0, input) {
            if let Output::Persist { id, record } = &o {
                records.push(record.clone());
                work.push_back(Input::PersistAck { id: *id });
            }
            outputs.push(o);
        }
    }
    (outputs, records)
}

fn prepares(outputs: &[Output]) -> Vec<primitives::Digest> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Broadcast {
                message: WireMessage::Signed(s),
            } => match &s.message {
                Message::Prepare(v) => Some(v.batch),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn a_restored_backup_keeps_its_accepted_pre_prepare() {
    let keys = keys(4);
    let mut r = Replica::new(config(&keys, 1)).unwrap();
    let peer = |m| Input::Peer {
        from: ReplicaId(0),
        message: m,
    };
    let (out, records) = drive(
        &mut r,
        vec![
            Input::Start,
            Input::RequestReady { digest: request(1) },
            peer(pre_prepare(1, 1)),
        ],
    );
    let before = prepares(&out);
    assert_eq!(before.len(), 1);
    // Crash; restart from the durable records.
    let state = RecoveredState {
        records,
        ..RecoveredState::default()
    };
    let mut r = Replica::restore(config(&keys, 1), state).unwrap();
    let (out, _) = drive(&mut r, vec![Input::Start]);
    assert_eq!(
        prepares(&out),
        before,
        "the same PREPARE again, nothing else"
    );
    let (out, _) = drive(&mut r, vec![peer(pre_prepare(1, 2))]);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Rejected {
            reason: Rejection::ConflictingPrePrepare,
            ..
        }
    )));
}

#[test]
fn a_restored_primary_never_reuses_a_seq() {
    let keys = keys(4);
    let mut r = Replica::new(config(&keys, 0)).unwrap();
    let hello: Vec<Input> = (1..4)
        .map(|i| Input::Peer {
            from: ReplicaId(i),
            message: WireMessage::Status(consensus::Status {
                view: ViewNumber(0),
                last_executed: SeqNum(0),
                stable: SeqNum(0),
                view_active: true,
            }),
        })
        .collect();
    let mut inputs = vec![Input::Start];
    inputs.extend(hello.clone());
    inputs.extend((0..8).map(|i| Input::RequestReady { digest: request(i) }));
    let (_, records) = drive(&mut r, inputs);
    assert_eq!(records.len(), 2, "two full batches proposed and persisted");
    let state = RecoveredState {
        records,
        ..RecoveredState::default()
    };
    let mut r = Replica::restore(config(&keys, 0), state).unwrap();
    let mut inputs = vec![Input::Start];
    inputs.extend(hello);
    inputs.extend((8..12).map(|i| Input::RequestReady { digest: request(i) }));
    let (out, _) = drive(&mut r, inputs);
    let proposed: Vec<SeqNum> = out
        .iter()
        .filter_map(|o| match o {
            Output::Persist {
                record: PersistRecord::PrePrepare(s),
                ..
            } => match &s.message {
                Message::PrePrepare(pp) => Some(pp.seq),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(proposed, vec![SeqNum(3)]);
}

fn signed(keys: &[primitives::KeyPair], i: usize, message: Message) -> WireMessage {
    WireMessage::Signed(message.sign(config(keys, 0).cluster, &keys[i]))
}

#[test]
fn a_restored_replica_still_reports_a_prepared_batch_it_executed() {
    // §4.4: a VIEW-CHANGE carries a prepared certificate for every seq
    // prepared above the stable checkpoint, executed or not — else a
    // NEW-VIEW from a quorum that includes this replica may drop a batch
    // that committed. The certificate must survive a restart even though
    // the slot was executed before the crash.
    let keys = keys(4);
    let mut r = Replica::new(config(&keys, 1)).unwrap();
    let Message::PrePrepare(pp) = (match pre_prepare(1, 1) {
        WireMessage::Signed(s) => s.message,
        WireMessage::Status(_) => unreachable!(),
    }) else {
        unreachable!()
    };
    let digest = pp.batch.digest();
    let vote = |i: usize| consensus::Vote {
        view: ViewNumber(0),
        seq: SeqNum(1),
        batch: digest,
        replica: ReplicaId(i as u16),
    };
    let mut inputs = vec![
        Input::Start,
        Input::RequestReady { digest: request(1) },
        Input::Peer {
            from: ReplicaId(0),
            message: pre_prepare(1, 1),
        },
    ];
    for i in [2, 3] {
        inputs.push(Input::Peer {
            from: ReplicaId(i as u16),
            message: signed(&keys, i, Message::Prepare(vote(i))),
        });
    }
    let (_, records) = drive(&mut r, inputs);
    assert!(records
        .iter()
        .any(|rec| matches!(rec, PersistRecord::Prepared { .. })));
    // Crash after executing seq 1; restart from the disk.
    let state = RecoveredState {
        records,
        last_executed: SeqNum(1),
        last_time: HlcTimestamp::from_micros(T0),
        ..RecoveredState::default()
    };
    let mut r = Replica::restore(config(&keys, 1), state).unwrap();
    // f+1 others move to view 1: we join (§4.5.2).
    let mut inputs = vec![Input::Start];
    for i in [2, 3] {
        let vc = consensus::ViewChange {
            view: ViewNumber(1),
            stable: SeqNum(0),
            stable_certificate: Vec::new(),
            prepared: Vec::new(),
            replica: ReplicaId(i as u16),
        };
        inputs.push(Input::Peer {
            from: ReplicaId(i as u16),
            message: signed(&keys, i, Message::ViewChange(vc)),
        });
    }
    let (_, records) = drive(&mut r, inputs);
    let reported: Vec<SeqNum> = records
        .iter()
        .filter_map(|rec| match rec {
            PersistRecord::ViewChange(s) => match &s.message {
                Message::ViewChange(vc) => Some(vc.prepared.clone()),
                _ => None,
            },
            _ => None,
        })
        .flatten()
        .filter_map(|proof| match proof.pre_prepare.message {
            Message::PrePrepare(pp) => Some(pp.seq),
            _ => None,
        })
        .collect();
    assert_eq!(reported, vec![SeqNum(1)]);
}

/// PBFT §4.3 across a crash: a replica executed checkpoint seq 4 but
/// crashed before its quorum of CHECKPOINTs arrived. Restored with the
/// digest its replay recomputed, it makes the checkpoint stable from the
/// peers' CHECKPOINTs alone (the cluster executes nothing more that would
/// recompute it); restored without it, it cannot.
#[test]
fn a_checkpoint_executed_before_a_crash_becomes_stable_after_it() {
    let keys = keys(4);
    let digest = request(99);
    let checkpoint = |i: usize| {
        signed(
            &keys,
            i,
            Message::Checkpoint(consensus::Checkpoint {
                seq: SeqNum(4),
                app_digest: digest,
                replica: ReplicaId(i as u16),
            }),
        )
    };
    let stable_after = |checkpoints: Vec<(SeqNum, primitives::Digest)>| {
        let state = RecoveredState {
            last_executed: SeqNum(5),
            last_time: HlcTimestamp::from_micros(T0),
            checkpoints,
            ..RecoveredState::default()
        };
        let mut r = Replica::restore(config(&keys, 1), state).unwrap();
        let mut inputs = vec![Input::Start];
        for i in [0, 2] {
            inputs.push(Input::Peer {
                from: ReplicaId(i),
                message: checkpoint(i as usize),
            });
        }
        let (out, _) = drive(&mut r, inputs);
        out.iter().any(|o| {
            matches!(o, Output::StableCheckpoint { seq, app_digest, .. }
                if *seq == SeqNum(4) && *app_digest == digest)
        })
    };
    assert!(stable_after(vec![(SeqNum(4), digest)]));
    assert!(
        !stable_after(Vec::new()),
        "the digest is what makes it stable"
    );
}
