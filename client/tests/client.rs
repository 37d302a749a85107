//! The client's features against an honest fake cluster (the real `qlock`
//! state machine behind certified replies).

mod common;

use client::{Client, ClientError, ClientOptions};
use common::{FakeCluster, Gateway, Mode};
use primitives::{KeyPair, PulseNumber, ReplicaId};
use qlock::{Durability, LockMode, Op, OpError, OpResult, Priority};
use std::sync::Arc;
use std::time::Duration;

async fn setup(seeds: &[u8]) -> (Arc<FakeCluster>, Gateway, Vec<Client>) {
    let cluster = FakeCluster::new(1);
    let gw = Gateway::start(cluster.clone(), 0, Mode::Honest).await;
    let mut clients = Vec::new();
    for s in seeds {
        let opts = ClientOptions {
            request_timeout: Duration::from_secs(5),
            preferred_replica: Some(ReplicaId(0)),
            keepalive_tick: Duration::from_millis(50),
            ..ClientOptions::default()
        };
        clients.push(
            Client::connect(
                cluster.config(&[gw.addr]),
                KeyPair::from_seed(&[*s; 32]),
                opts,
            )
            .await
            .unwrap(),
        );
    }
    (cluster, gw, clients)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_exclusion_waiting_grant_by_event_and_release_on_drop() {
    let (_c, _gw, clients) = setup(&[1, 2]).await;
    let (a, b) = (&clients[0], &clients[1]);
    let sa = a.create_session(Duration::from_secs(10)).await.unwrap();
    let sb = b.create_session(Duration::from_secs(10)).await.unwrap();
    let guard = a
        .acquire(sa.id, "r", LockMode::Exclusive, None)
        .await
        .unwrap();
    let first = guard.token();
    // Busy: try-once refuses.
    let err = b
        .acquire(sb.id, "r", LockMode::Exclusive, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Op(OpError::WouldBlock)),
        "{err:?}"
    );
    assert_eq!(err.exit_code(), 1);
    // A waiter is granted (through the pushed event) once a releases.
    let mut events = b.events();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            b.acquire(
                sb.id,
                "r",
                LockMode::Exclusive,
                Some(Duration::from_secs(5)),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    guard.release().await.unwrap();
    let second = waiter.await.unwrap().unwrap();
    assert!(second.token() > first, "fencing tokens grow");
    let event = tokio::time::timeout(Duration::from_secs(2), events.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        event.outcome,
        Ok(OpResult::Granted {
            token: second.token()
        })
    );
    // Dropping the guard releases in the background.
    drop(second);
    let mut free = false;
    for _ in 0..50 {
        if a.check("r").await.unwrap().holders.is_empty() {
            free = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(free, "dropped guard released the lock");
    // A wait that runs out is a typed error.
    let _held = a
        .acquire(sa.id, "r", LockMode::Exclusive, None)
        .await
        .unwrap();
    let err = b
        .acquire(
            sb.id,
            "r",
            LockMode::Exclusive,
            Some(Duration::from_millis(100)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Op(OpError::WaitTimedOut)),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_submit_claim_ack_nack_depth_peek() {
    let (_c, _gw, clients) = setup(&[3]).await;
    let c = &clients[0];
    let s = c.create_session(Duration::from_secs(10)).await.unwrap();
    let low = c
        .queue_submit("q", Priority::Low, b"low".to_vec(), None, Durability::Sync)
        .await
        .unwrap();
    let high = c
        .queue_submit(
            "q",
            Priority::High,
            b"high".to_vec(),
            Some(b"k".to_vec()),
            Durability::Sync,
        )
        .await
        .unwrap();
    let again = c
        .queue_submit(
            "q",
            Priority::High,
            b"high".to_vec(),
            Some(b"k".to_vec()),
            Durability::Sync,
        )
        .await
        .unwrap();
    assert_eq!(again.id, high.id);
    assert_eq!(again.duplicate, Some(true));
    // An async submit is answered uncertified with the computed id.
    let fire = c
        .queue_submit(
            "q",
            Priority::Normal,
            b"async".to_vec(),
            None,
            Durability::Async,
        )
        .await
        .unwrap();
    assert_eq!(fire.duplicate, None);
    assert_eq!(fire.id.op_index, 0);
    let depth = c.depth("q").await.unwrap();
    assert_eq!(depth.ready, [0, 1, 1, 1]);
    assert_eq!(c.peek("q").await.unwrap().unwrap().id, high.id);
    let m = c
        .claim(s.id, "q", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.id(), high.id);
    assert_eq!(m.payload(), b"high");
    m.ack().await.unwrap();
    let m = c
        .claim(s.id, "q", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.id(), fire.id);
    m.nack().await.unwrap();
    let m = c
        .claim(s.id, "q", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (m.id(), m.view().delivery),
        (fire.id, 2),
        "nacked comes back"
    );
    m.ack().await.unwrap();
    let m = c
        .claim(s.id, "q", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.id(), low.id);
    drop(m); // nacked in the background
    let mut back = false;
    for _ in 0..50 {
        if c.depth("q").await.unwrap().ready == [0, 0, 0, 1] {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(back, "a dropped claim is returned");
    assert!(c
        .claim(s.id, "empty", Duration::from_secs(1))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_submits_share_one_connection() {
    let (cluster, _gw, clients) = setup(&[4]).await;
    let c = &clients[0];
    let started = std::time::Instant::now();
    let calls: Vec<_> = (0..300)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.check(&format!("r{i}")).await })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap().unwrap().holders.is_empty());
    }
    let elapsed = started.elapsed();
    eprintln!("300 pipelined verified submits in {elapsed:?}");
    assert_eq!(
        cluster.executed.load(std::sync::atomic::Ordering::Relaxed),
        300
    );
    assert!(c.replica_failures().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomic_requests_and_op_errors_are_per_op() {
    let (_c, _gw, clients) = setup(&[5]).await;
    let c = &clients[0];
    let s = c.create_session(Duration::from_secs(10)).await.unwrap();
    let acquire = |r: &str| Op::Acquire {
        session: s.id,
        resource: r.into(),
        mode: LockMode::Exclusive,
        wait: None,
    };
    let reply = c
        .submit(vec![acquire("x"), acquire("y")], true)
        .await
        .unwrap();
    assert!(reply.certified());
    assert_eq!(reply.proofs.len(), 2);
    assert!(reply
        .outcomes
        .iter()
        .all(|o| matches!(o, Ok(OpResult::Granted { .. }))));
    // "x" again fails, so the atomic pair takes nothing.
    let reply = c
        .submit(vec![acquire("z"), acquire("x")], true)
        .await
        .unwrap();
    assert!(
        reply.outcomes.iter().all(Result::is_err),
        "{:?}",
        reply.outcomes
    );
    assert!(c.check("z").await.unwrap().holders.is_empty());
    let err = c.submit(vec![], false).await.unwrap_err();
    assert_eq!(err.exit_code(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_renews_sessions_and_the_lease_ends_skew_early() {
    let (_c, _gw, clients) = setup(&[6]).await;
    let c = &clients[0];
    // The cluster's minimum TTL is 5 s: without renewals it would be gone
    // after 6 s.
    let s = c.create_session(Duration::from_secs(5)).await.unwrap();
    let remaining = c.lease_remaining(s.id).unwrap();
    assert!(remaining <= Duration::from_millis(4_500), "{remaining:?}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let info = c.session_status(s.id).await.unwrap();
    assert!(info.expires_at > s.expires_at, "renewed");
    assert!(c.lease_remaining(s.id).is_some());
    c.destroy_session(s.id).await.unwrap();
    assert!(c.lease_remaining(s.id).is_none());
    let err = c.session_status(s.id).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Op(OpError::NoSuchSession)),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulses_and_receipt_proofs_verify() {
    let (cluster, _gw, clients) = setup(&[7]).await;
    let c = &clients[0];
    let reply = c
        .submit(
            vec![Op::Check {
                resource: "p".into(),
            }],
            false,
        )
        .await
        .unwrap();
    cluster.pulse_until(3);
    let chain = c.pulses(PulseNumber(1), 10).await.unwrap();
    assert_eq!(chain.len(), 3);
    c.verifier().verify_continuity(&chain).unwrap();
    let (proof, outcome) = c.receipt_proof(reply.request, 0).await.unwrap();
    assert_eq!(proof.receipt.request, reply.request);
    assert_eq!(outcome, reply.outcomes[0]);
    let missing = c
        .receipt_proof(primitives::Digest([1; 32]), 0)
        .await
        .unwrap_err();
    assert!(
        matches!(
            missing,
            ClientError::Rejected {
                error: client::api::ApiError::NotFound
            }
        ),
        "{missing:?}"
    );
}
