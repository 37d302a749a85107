//! View changes (Castro & Liskov §4.4 "View Changes", §4.5.2 liveness):
//! a silent primary is replaced, prepared batches survive into the new
//! view, and forged VIEW-CHANGE / NEW-VIEW messages are refused.

mod common;

use common::{config, keys, request, Cluster, T0};
use consensus::{Input, Message, NewView, Output, PreparedProof, Rejection, Replica, WireMessage};
use primitives::{ReplicaId, SeqNum, ViewNumber};

fn new_view_of(c: &Cluster, i: usize) -> Option<NewView> {
    c.outputs[i].iter().find_map(|o| match o {
        Output::Broadcast {
            message: WireMessage::Signed(s),
        } => match &s.message {
            Message::NewView(nv) => Some(nv.clone()),
            _ => None,
        },
        _ => None,
    })
}

#[test]
fn view_change_primary_cut_off() {
    // §4.5.2: backups with pending requests and no progress suspect the
    // primary; replica 1, primary of view 1, takes over.
    let mut c = Cluster::new(4);
    c.cut.insert(0);
    c.submit((0..8).map(request));
    c.run(400);
    for i in 1..4 {
        assert_eq!(c.replicas[i].view(), ViewNumber(1), "replica {i}");
        assert!(c.replicas[i].view_active());
        assert_eq!(c.views_installed(i), vec![ViewNumber(1)]);
        let total: usize = c.executed[i].iter().map(|b| b.digests.len()).sum();
        assert_eq!(total, 8, "replica {i} executed everything in view 1");
    }
    assert!(
        new_view_of(&c, 1).is_some(),
        "the new primary sent NEW-VIEW"
    );
    // Replica 0 rejoins. Cut off, it suspected its own view too, but alone
    // it went no further than view 1 (§4.5.2), so the others' NEW-VIEW,
    // sent when its STATUS shows it behind, lets it in.
    c.cut.clear();
    c.run(200);
    assert_eq!(c.replicas[0].view(), ViewNumber(1));
    assert!(c.replicas[0].view_active());
    assert_eq!(c.views_installed(0), vec![ViewNumber(1)]);
    assert_eq!(c.app[0], c.app[1]);
}

#[test]
fn a_replica_alone_in_its_view_change_does_not_climb_views() {
    // §4.5.2: a backup starts the timer for view v+2 only once it holds
    // 2f+1 VIEW-CHANGEs for v+1. Cut off for 40 view-change timeouts,
    // replica 3 stays in its first view change; with the quorum the others
    // move on from a view whose primary (replica 1) is gone too.
    let mut c = Cluster::new(4);
    c.cut.insert(3);
    c.submit((0..4).map(request));
    c.cut.insert(0);
    c.cut.insert(1);
    c.run(4_000);
    assert_eq!(
        c.replicas[3].view(),
        ViewNumber(1),
        "alone: one view change"
    );
    assert!(!c.replicas[3].view_active());
    // Replica 2 is alone too (0 and 1 are gone): it also stays.
    assert_eq!(c.replicas[2].view(), ViewNumber(1));
    // Replicas 2 and 3 see each other and replica 0: a quorum asks for
    // view 1, whose primary is cut off, so they climb to view 2 together,
    // and replica 0 (alive again) installs it with them.
    c.cut.clear();
    c.cut.insert(1);
    c.run(2_000);
    for i in [0, 2, 3] {
        assert_eq!(c.replicas[i].view(), ViewNumber(2), "replica {i}");
        assert!(c.replicas[i].view_active(), "replica {i}");
    }
    let total: usize = c.executed[2].iter().map(|b| b.digests.len()).sum();
    assert_eq!(total, 4, "the requests commit in view 2");
}

/// Seq 1 prepares everywhere but no COMMIT of view 0 gets through; then
/// the primary is cut off and the others change views.
fn prepared_then_view_change() -> (Cluster, Vec<(SeqNum, primitives::Digest)>) {
    let mut c = Cluster::new(4);
    c.drop_if = |m| {
        matches!(m, WireMessage::Signed(s)
            if matches!(s.message, Message::Commit(v) if v.view == ViewNumber(0)))
    };
    c.submit((0..4).map(request));
    c.run(5);
    assert!(c.executed[1].is_empty(), "no COMMIT got through");
    let prepared: Vec<_> = c.outputs[1]
        .iter()
        .filter_map(|o| match o {
            Output::Persist {
                record: consensus::PersistRecord::Prepared { seq, batch, .. },
                ..
            } => Some((*seq, *batch)),
            _ => None,
        })
        .collect();
    assert_eq!(prepared.len(), 1, "seq 1 prepared at replica 1");
    c.cut.insert(0);
    c.run(400);
    (c, prepared)
}

#[test]
fn prepared_batches_survive_the_view_change() {
    // §4.4: a batch prepared at a quorum is re-proposed with the same
    // digests and time at the same seq in the new view.
    let (c, prepared) = prepared_then_view_change();
    let nv = new_view_of(&c, 1).expect("NEW-VIEW");
    let Message::PrePrepare(pp) = &nv.pre_prepares[0].message else {
        panic!("O holds PRE-PREPAREs");
    };
    assert_eq!((pp.view, pp.seq), (ViewNumber(1), SeqNum(1)));
    assert_eq!(pp.batch.digest(), prepared[0].1, "same batch, same time");
    for i in 1..4 {
        assert_eq!(c.executed[i][0].seq, SeqNum(1));
        assert_eq!(
            c.executed[i][0].digests,
            (0..4).map(request).collect::<Vec<_>>()
        );
    }
}

#[test]
fn forged_view_changes_and_new_views_are_refused() {
    let (c, _) = prepared_then_view_change();
    let keys = keys(4);
    let cluster = config(&keys, 0).cluster;
    let nv = new_view_of(&c, 1).expect("NEW-VIEW");
    let fresh = || {
        let mut r = Replica::new(config(&keys, 3)).unwrap();
        r.step(T0, Input::Start);
        r
    };
    let feed = |r: &mut Replica, from: u16, m: Message, key: usize| {
        let signed = m.sign(cluster, &keys[key]);
        let message = WireMessage::Signed(signed);
        r.step(
            T0,
            Input::Peer {
                from: ReplicaId(from),
                message,
            },
        )
    };
    let is = |out: &[Output], reason: Rejection| {
        out.iter()
            .any(|o| matches!(o, Output::Rejected { reason: r, .. } if *r == reason))
    };
    // The genuine NEW-VIEW is accepted.
    let out = feed(&mut fresh(), 1, Message::NewView(nv.clone()), 1);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::ViewInstalled { .. })));
    // Below a quorum of VIEW-CHANGEs.
    let mut short = nv.clone();
    short.view_changes.truncate(2);
    let out = feed(&mut fresh(), 1, Message::NewView(short), 1);
    assert!(is(&out, Rejection::InvalidNewView));
    // A re-proposal the VIEW-CHANGEs do not imply.
    let mut extra = nv.clone();
    let Message::PrePrepare(mut pp) = extra.pre_prepares[0].message.clone() else {
        panic!()
    };
    pp.seq = SeqNum(7);
    extra
        .pre_prepares
        .push(Message::PrePrepare(pp).sign(cluster, &keys[1]));
    let out = feed(&mut fresh(), 1, Message::NewView(extra), 1);
    assert!(is(&out, Rejection::InvalidNewView));
    // A VIEW-CHANGE claiming a prepared certificate without the PREPAREs.
    let Message::ViewChange(mut vc) = nv.view_changes[0].message.clone() else {
        panic!()
    };
    let signer = vc.replica.index();
    vc.view = ViewNumber(2);
    vc.prepared = vec![PreparedProof {
        pre_prepare: nv.pre_prepares[0].clone(),
        prepares: Vec::new(),
    }];
    let out = feed(&mut fresh(), signer as u16, Message::ViewChange(vc), signer);
    assert!(is(&out, Rejection::InvalidViewChange));
}

#[test]
fn the_new_primary_sends_one_new_view_per_view() {
    // While its NEW-VIEW is being persisted, more VIEW-CHANGEs arrive: it
    // must not compute a second, possibly different, NEW-VIEW for the same
    // view (that would be equivocation by a correct primary).
    let mut c = Cluster::new(4);
    c.drop_if = |m| {
        matches!(m, WireMessage::Signed(s)
            if matches!(&s.message, Message::PrePrepare(pp) if pp.view == ViewNumber(0)))
    };
    c.auto_ack = false;
    c.submit((0..4).map(request));
    let is_new_view = |o: &Output| {
        matches!(
            o,
            Output::Persist {
                record: consensus::PersistRecord::NewView(_),
                ..
            }
        )
    };
    for _ in 0..400 {
        c.advance(1_000);
        for i in 0..4 {
            let holding = i == 1 && c.outputs[1].iter().any(is_new_view);
            if let (false, Some(id)) = (holding, c.unacked[i].take()) {
                c.step(i, Input::PersistAck { id });
            }
        }
    }
    assert_eq!(c.outputs[1].iter().filter(|o| is_new_view(o)).count(), 1);
}
