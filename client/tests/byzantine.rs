//! A lying gateway cannot fool the client: each kind of forged reply is
//! rejected with its own error, and the same signed request then succeeds
//! through an honest gateway — executed once.

mod common;

use client::verify::VerifyReplyError;
use client::{Client, ClientError, ClientOptions, ReplicaError};
use common::{dead_addr, FakeCluster, Gateway, Mode};
use lockchain::{MerkleError, VerifyError};
use primitives::{KeyPair, ReplicaId};
use qlock::{Durability, Priority};
use std::time::Duration;

fn options(preferred: u16) -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
        preferred_replica: Some(ReplicaId(preferred)),
        keepalive: false,
        ..ClientOptions::default()
    }
}

/// Replica 0 lies in `mode`, replica 1 is honest, 2 and 3 are down.
/// Returns the error the client recorded for replica 0.
async fn lie_then_recover(mode: Mode) -> VerifyReplyError {
    let cluster = FakeCluster::new(4);
    let liar = Gateway::start(cluster.clone(), 0, mode).await;
    let honest = Gateway::start(cluster.clone(), 1, Mode::Honest).await;
    let addrs = [liar.addr, honest.addr, dead_addr().await, dead_addr().await];
    // An earlier honest reply, for the liar that replays another request's.
    let other = Client::connect(
        cluster.config(&addrs),
        KeyPair::from_seed(&[1; 32]),
        options(1),
    )
    .await
    .unwrap();
    other.check("warm-up").await.unwrap();

    let c = Client::connect(
        cluster.config(&addrs),
        KeyPair::from_seed(&[2; 32]),
        options(0),
    )
    .await
    .unwrap();
    // A sync submit (2f + 1 signatures): executing it twice would show
    // as two messages.
    let queue = format!("q-{mode:?}");
    let sent = c
        .queue_submit(
            &queue,
            Priority::Normal,
            b"x".to_vec(),
            None,
            Durability::Sync,
        )
        .await
        .expect("the honest gateway answers");
    assert_eq!(sent.duplicate, Some(false));
    assert_eq!(liar.submits.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(c.current_replica(), ReplicaId(1), "moved to the honest one");
    let depth = c.depth(&queue).await.unwrap();
    assert_eq!(depth.ready.iter().sum::<u32>(), 1, "executed once");

    let failures = c.replica_failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].replica, ReplicaId(0));
    match &failures[0].error {
        ReplicaError::Unverifiable(e) => e.clone(),
        other => panic!("{mode:?}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_result_bytes_are_rejected() {
    let e = lie_then_recover(Mode::ForgeResult).await;
    assert!(
        matches!(
            e,
            VerifyReplyError::Proof {
                op: 0,
                source: VerifyError::ReceiptPath(MerkleError::RootMismatch { .. })
            }
        ),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_merkle_path_is_rejected() {
    let e = lie_then_recover(Mode::WrongPath).await;
    assert!(
        matches!(
            e,
            VerifyReplyError::Proof {
                source: VerifyError::ReceiptPath(_),
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_signatures_are_rejected() {
    let e = lie_then_recover(Mode::TooFewSignatures).await;
    // A sync submit needs 2f + 1 = 3 of 4.
    assert!(
        matches!(
            e,
            VerifyReplyError::Proof {
                source: VerifyError::TooFewSigners { have: 1, need: 3 },
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_signers_are_rejected() {
    let e = lie_then_recover(Mode::DuplicateSigners).await;
    assert!(
        matches!(
            e,
            VerifyReplyError::Proof {
                source: VerifyError::DuplicateSigner { .. },
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_for_another_cluster_are_rejected() {
    let e = lie_then_recover(Mode::OtherCluster).await;
    assert!(
        matches!(
            e,
            VerifyReplyError::Proof {
                source: VerifyError::ClusterMismatch { .. },
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_for_another_request_is_rejected() {
    let e = lie_then_recover(Mode::OtherRequest).await;
    assert!(matches!(e, VerifyReplyError::WrongRequest { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_gateway_times_out_and_the_next_answers() {
    let cluster = FakeCluster::new(4);
    let silent = Gateway::start(cluster.clone(), 0, Mode::Silent).await;
    let honest = Gateway::start(cluster.clone(), 1, Mode::Honest).await;
    let addrs = [
        silent.addr,
        honest.addr,
        dead_addr().await,
        dead_addr().await,
    ];
    let c = Client::connect(
        cluster.config(&addrs),
        KeyPair::from_seed(&[3; 32]),
        options(0),
    )
    .await
    .unwrap();
    let info = c.check("r").await.unwrap();
    assert!(info.holders.is_empty());
    let failures = c.replica_failures();
    assert!(
        matches!(failures[0].error, ReplicaError::Timeout(500)),
        "{failures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_only_liars_reachable_the_call_fails_unverifiable() {
    let cluster = FakeCluster::new(4);
    let a = Gateway::start(cluster.clone(), 0, Mode::ForgeResult).await;
    let b = Gateway::start(cluster.clone(), 1, Mode::OtherCluster).await;
    let addrs = [a.addr, b.addr, dead_addr().await, dead_addr().await];
    let mut opts = options(0);
    opts.attempts_max = Some(4);
    let c = Client::connect(cluster.config(&addrs), KeyPair::from_seed(&[4; 32]), opts)
        .await
        .unwrap();
    let err = c.check("r").await.unwrap_err();
    let ClientError::Unavailable { failures } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(failures.0.len(), 4);
    assert!(matches!(failures.0[0].error, ReplicaError::Unverifiable(_)));
    assert!(matches!(failures.0[1].error, ReplicaError::Unverifiable(_)));
    assert!(matches!(failures.0[2].error, ReplicaError::Connect(_)));
    assert_eq!(err.exit_code(), 3);
    assert!(
        err.to_string()
            .contains("check that the cluster is running"),
        "{err}"
    );
}
