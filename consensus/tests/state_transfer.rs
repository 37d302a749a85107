//! State transfer (PBFT §4.3, TOCS §5.3.2): a replica behind a stable
//! checkpoint whose log the others collected fetches the certified state,
//! and continues from it; it never installs an uncertified one.

mod common;

use common::{request, Cluster};
use consensus::{Input, Output, Rejection};
use primitives::{Digest, HlcTimestamp, SeqNum};

fn fetch_states(c: &Cluster, i: usize) -> Vec<(SeqNum, Option<Digest>)> {
    c.outputs[i]
        .iter()
        .filter_map(|o| match o {
            Output::FetchState { seq, app_digest } => Some((*seq, *app_digest)),
            _ => None,
        })
        .collect()
}

#[test]
fn state_transfer_replica_behind_a_collected_log_installs_the_certified_state() {
    // Replicas 0..2 order 40 requests (10 batches, checkpoints at 4 and 8)
    // and serve committed batches only above their stable checkpoint 8.
    // Replica 3 heard nothing: batch-by-batch catch-up cannot start at 1,
    // so it asks for the state certified at 8, then executes 9 and 10.
    let mut c = Cluster::new(4);
    c.gc_log = true;
    c.cut.insert(3);
    c.submit((0..40).map(request));
    c.run(30);
    assert_eq!(c.replicas[0].low_watermark(), SeqNum(8));
    assert!(c.executed[3].is_empty());
    c.cut.clear();
    c.run(300);
    let asked = fetch_states(&c, 3);
    assert!(!asked.is_empty(), "replica 3 asked for the state");
    assert!(asked.iter().all(|(seq, _)| *seq == SeqNum(8)));
    assert_eq!(
        asked[0].1,
        Some(c.app_at[0][&SeqNum(8)]),
        "the certified digest"
    );
    assert_eq!(c.state_transfers[3], 1);
    assert_eq!(c.replicas[3].low_watermark(), SeqNum(8));
    assert_eq!(c.executed_seqs(3), vec![SeqNum(9), SeqNum(10)]);
    assert_eq!(c.app[3], c.app[0], "same state after the transfer");
    assert_eq!(c.replicas[3].last_executed(), SeqNum(10));
    // Up-to-date replicas never asked.
    assert!((0..3).all(|i| fetch_states(&c, i).is_empty()));
}

#[test]
fn state_transfer_without_a_collected_log_is_not_needed() {
    // The same cut, but the peers keep their logs: catch-up by committed
    // batches suffices and no state transfer is asked for.
    let mut c = Cluster::new(4);
    c.cut.insert(3);
    c.submit((0..40).map(request));
    c.run(30);
    c.cut.clear();
    c.run(300);
    assert_eq!(c.executed_seqs(3).len(), 10);
    assert!(fetch_states(&c, 3).is_empty());
}

#[test]
fn an_uncertified_installed_state_is_refused() {
    // A driver bug (or a lie) reporting a state nobody certified changes
    // nothing.
    let mut c = Cluster::new(4);
    c.submit((0..8).map(request));
    c.run(30);
    let before = c.replicas[1].last_executed();
    let outputs = c.replicas[1].step(
        c.now,
        Input::StateInstalled {
            seq: SeqNum(12),
            app_digest: Digest::ZERO,
            time: HlcTimestamp::default(),
            certificate: Vec::new(),
        },
    );
    assert!(outputs.iter().any(|o| matches!(
        o,
        Output::Rejected {
            reason: Rejection::StateUncertified,
            ..
        }
    )));
    assert_eq!(c.replicas[1].last_executed(), before);
}

#[test]
fn a_served_quorum_certificate_lets_a_replica_install_a_state_it_never_heard_of() {
    // Replica 3 heard no CHECKPOINT at all; the certificate that comes with
    // the served state is checked on its own: a quorum of distinct members
    // over (seq, digest). Too few or repeated signers are refused.
    let mut c = Cluster::new(4);
    c.cut.insert(3);
    c.submit((0..40).map(request));
    c.run(30);
    let (seq, digest, certificate) = c.outputs[0]
        .iter()
        .rev()
        .find_map(|o| match o {
            Output::StableCheckpoint {
                seq,
                app_digest,
                certificate,
            } => Some((*seq, *app_digest, certificate.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(seq, SeqNum(8));
    let time = c.executed[0][7].time;
    let install = |r: &mut consensus::Replica, certificate| {
        r.step(
            c.now,
            Input::StateInstalled {
                seq,
                app_digest: digest,
                time,
                certificate,
            },
        )
    };
    let refused = |outputs: &[Output]| {
        outputs.iter().any(|o| {
            matches!(
                o,
                Output::Rejected {
                    reason: Rejection::StateUncertified,
                    ..
                }
            )
        })
    };
    let short: Vec<_> = certificate.iter().take(2).copied().collect();
    assert!(refused(&install(&mut c.replicas[3], short)));
    let mut repeated: Vec<_> = certificate.iter().take(2).copied().collect();
    repeated.push(repeated[0]);
    assert!(refused(&install(&mut c.replicas[3], repeated)));
    let mut forged = certificate.clone();
    forged[0].1 = forged[1].1;
    assert!(refused(&install(&mut c.replicas[3], forged)));
    assert_eq!(c.replicas[3].last_executed(), SeqNum(0));
    let outputs = install(&mut c.replicas[3], certificate);
    assert!(!refused(&outputs));
    assert_eq!(c.replicas[3].last_executed(), seq);
    assert_eq!(c.replicas[3].low_watermark(), seq);
}
