//! Whole replicas (event loop, libp2p on 127.0.0.1, RocksDB in temp dirs)
//! in one tokio runtime: signed client requests commit and their replies
//! verify against the cluster's public keys.
//!
//! Every test is bounded by a timeout and stops its replicas.

mod common;

use client::api::{Event, Reply};
use libp2p::Multiaddr;
use lockchain::{Threshold, Verifier};
use node::replica::{spawn, ReplicaHandle, RuntimeConfig, RuntimeTask, SubmitOutcome};
use primitives::{KeyPair, Membership, ReplicaId, Request, RequestBody, RequestNumber, SeqNum};
use prometheus_client::registry::Registry;
use qlock::{decode_outcome, LockMode, Op, OpError, OpResult, SessionId};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;
use tokio::time::timeout;

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

fn replica_key(i: usize) -> KeyPair {
    KeyPair::from_seed(&[i as u8 + 1; 32])
}

fn membership(n: usize) -> Membership {
    Membership::new(
        "cluster-test",
        (0..n).map(|i| replica_key(i).public()).collect(),
    )
    .unwrap()
}

fn addr(port: u16) -> Multiaddr {
    format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
}

struct Cluster {
    membership: Membership,
    ports: Vec<u16>,
    handles: Vec<ReplicaHandle>,
    tasks: Vec<Option<RuntimeTask>>,
    registries: Vec<Registry>,
    dir: tempfile::TempDir,
}

fn config(membership: &Membership, ports: &[u16], i: usize, dir: &Path) -> RuntimeConfig {
    let mut cfg = RuntimeConfig::new(
        ReplicaId(i as u16),
        replica_key(i),
        membership.clone(),
        vec![addr(ports[i])],
        dir.join(format!("replica-{i}")),
    );
    cfg.peer_addresses = ports.iter().map(|p| vec![addr(*p)]).collect();
    // Small intervals so checkpoints, pulses and garbage collection run.
    cfg.consensus.checkpoint_interval = 8;
    cfg.consensus.watermark_window = 32;
    cfg.consensus.batch_delay_micros = 1_000;
    cfg.consensus.status_interval_micros = 50_000;
    cfg.consensus.view_change_timeout_micros = 1_000_000;
    cfg
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        let membership = membership(n);
        let ports = common::free_ports(n);
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = Cluster {
            membership,
            ports,
            handles: Vec::new(),
            tasks: Vec::new(),
            registries: Vec::new(),
            dir,
        };
        for i in 0..n {
            let mut registry = Registry::default();
            let cfg = config(&cluster.membership, &cluster.ports, i, cluster.dir.path());
            let (handle, task) = spawn(cfg, &mut registry).unwrap();
            cluster.handles.push(handle);
            cluster.tasks.push(Some(task));
            cluster.registries.push(registry);
        }
        cluster
    }

    async fn restart(&mut self, i: usize) {
        if let Some(task) = self.tasks[i].take() {
            task.stop().await.unwrap();
        }
        let mut registry = Registry::default();
        let cfg = config(&self.membership, &self.ports, i, self.dir.path());
        let (handle, task) = spawn(cfg, &mut registry).unwrap();
        self.handles[i] = handle;
        self.tasks[i] = Some(task);
        self.registries[i] = registry;
    }

    async fn stop(mut self) {
        for task in self.tasks.iter_mut().filter_map(Option::take) {
            task.stop().await.unwrap();
        }
    }

    fn metric(&self, i: usize, name: &str) -> f64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registries[i]).unwrap();
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0.0, |v| v.parse().unwrap())
    }
}

struct TestClient {
    key: KeyPair,
    next: u64,
}

impl TestClient {
    fn new(seed: u8) -> TestClient {
        TestClient {
            key: KeyPair::from_seed(&[seed; 32]),
            next: 1,
        }
    }

    fn request(&mut self, membership: &Membership, ops: Vec<Op>) -> Request {
        let number = RequestNumber(self.next);
        self.next += 1;
        RequestBody {
            cluster: membership.cluster_id(),
            client: self.key.public(),
            number,
            atomic: false,
            ops: ops.iter().map(Op::encode).collect(),
        }
        .sign(&self.key)
    }
}

/// Submits until a certified reply (retrying while the cluster connects)
/// and checks it against the membership.
async fn submit(handle: &ReplicaHandle, verifier: &Verifier, request: Request) -> Reply {
    let reply = loop {
        match handle.submit(request.clone()).await {
            Ok(SubmitOutcome::Replied(reply)) => break reply,
            Ok(other) => panic!("unexpected outcome {other:?}"),
            Err(e) => {
                eprintln!("submit retry: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(reply.request, request.digest());
    assert_eq!(reply.proofs.len(), request.body.ops.len());
    for (i, proof) in reply.proofs.iter().enumerate() {
        assert_eq!(proof.receipt.request, request.digest());
        assert_eq!(proof.receipt.op_index, i as u32);
        assert_eq!(proof.receipt.seq, reply.seq);
        verifier
            .verify_receipt_in_batch(proof, Threshold::WeakQuorum)
            .expect("the reply verifies against the cluster keys");
        let signers: BTreeSet<ReplicaId> = proof
            .certificate
            .signatures
            .iter()
            .map(|s| s.replica)
            .collect();
        assert!(signers.len() >= verifier.membership().weak_quorum());
    }
    reply
}

fn outcome(reply: &Reply, op: usize) -> Result<OpResult, OpError> {
    decode_outcome(&reply.proofs[op].receipt.result.0).unwrap()
}

fn session_of(reply: &Reply) -> SessionId {
    match outcome(reply, 0) {
        Ok(OpResult::SessionCreated { session, .. }) => session,
        other => panic!("no session: {other:?}"),
    }
}

const TTL: u64 = 30_000_000;

/// `clients` clients, each creating a session and then taking
/// `per_client - 1` locks, submitting through replica `c % n`.
async fn run_workload(cluster: &Cluster, clients: usize, per_client: usize) -> Vec<SeqNum> {
    let verifier = Verifier::new(cluster.membership.clone());
    let mut tasks = Vec::new();
    for c in 0..clients {
        let handle = cluster.handles[c % cluster.handles.len()].clone();
        let membership = cluster.membership.clone();
        let verifier = verifier.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = TestClient::new(100 + c as u8);
            let create = client.request(&membership, vec![Op::CreateSession { ttl: TTL }]);
            let reply = submit(&handle, &verifier, create).await;
            let session = session_of(&reply);
            let mut seqs = vec![reply.seq];
            for k in 1..per_client {
                let acquire = Op::Acquire {
                    session,
                    resource: format!("lock-{c}-{k}"),
                    mode: LockMode::Exclusive,
                    wait: None,
                };
                let request = client.request(&membership, vec![acquire]);
                let reply = submit(&handle, &verifier, request).await;
                assert!(
                    matches!(outcome(&reply, 0), Ok(OpResult::Granted { .. })),
                    "{:?}",
                    outcome(&reply, 0)
                );
                seqs.push(reply.seq);
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_replicas_commit_requests_with_verified_replies() {
    let cluster = Cluster::start(4);
    let started = std::time::Instant::now();
    let seqs = timeout(TEST_TIMEOUT, run_workload(&cluster, 8, 8))
        .await
        .expect("timed out");
    let elapsed = started.elapsed();
    assert_eq!(seqs.len(), 64);
    eprintln!(
        "4 replicas: 64 requests certified in {elapsed:?}, highest seq {:?}",
        seqs.iter().max()
    );
    // Every replica executed and the metrics moved.
    timeout(TEST_TIMEOUT, async {
        loop {
            let statuses: Vec<_> =
                futures::future::join_all(cluster.handles.iter().map(|h| h.status())).await;
            let max = *seqs.iter().max().unwrap();
            if statuses
                .iter()
                .all(|s| s.as_ref().is_ok_and(|s| s.last_executed >= max))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("replicas executed everything");
    for i in 0..4 {
        assert!(cluster.metric(i, "qlock_committed_requests_total") >= 64.0);
        assert!(cluster.metric(i, "qlock_committed_batches_total") >= 1.0);
        assert!(cluster.metric(i, "qlock_loop_pass_seconds_count") >= 1.0);
    }
    let status = cluster.handles[0].status().await.unwrap();
    assert_eq!(status.peers.len(), 3);
    assert!(status.peers.iter().all(|p| p.connected));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_replica_commits() {
    let cluster = Cluster::start(1);
    let seqs = timeout(TEST_TIMEOUT, run_workload(&cluster, 2, 5))
        .await
        .expect("timed out");
    assert_eq!(seqs.len(), 10);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_acquire_is_granted_by_event_after_the_release() {
    let cluster = Cluster::start(4);
    let verifier = Verifier::new(cluster.membership.clone());
    timeout(TEST_TIMEOUT, async {
        let m = &cluster.membership;
        let mut holder = TestClient::new(7);
        let mut waiter = TestClient::new(8);
        let h0 = &cluster.handles[0];
        let h1 = &cluster.handles[1];
        let mut events = h1.subscribe(waiter.key.public()).unwrap();
        let s_holder = session_of(
            &submit(
                h0,
                &verifier,
                holder.request(m, vec![Op::CreateSession { ttl: TTL }]),
            )
            .await,
        );
        let s_waiter = session_of(
            &submit(
                h1,
                &verifier,
                waiter.request(m, vec![Op::CreateSession { ttl: TTL }]),
            )
            .await,
        );
        let acquire = |session| Op::Acquire {
            session,
            resource: "shared-lock".into(),
            mode: LockMode::Exclusive,
            wait: Some(20_000_000),
        };
        let held = submit(h0, &verifier, holder.request(m, vec![acquire(s_holder)])).await;
        assert!(matches!(outcome(&held, 0), Ok(OpResult::Granted { .. })));
        let wait_request = waiter.request(m, vec![acquire(s_waiter)]);
        let queued = submit(h1, &verifier, wait_request.clone()).await;
        assert!(
            matches!(outcome(&queued, 0), Ok(OpResult::Queued { .. })),
            "{:?}",
            outcome(&queued, 0)
        );
        let release = Op::Release {
            session: s_holder,
            resource: "shared-lock".into(),
        };
        let released = submit(h0, &verifier, holder.request(m, vec![release])).await;
        let Event::WaitOutcome(proof) = events.recv().await.expect("an event");
        verifier
            .verify_receipt_in_batch(&proof, Threshold::WeakQuorum)
            .unwrap();
        assert_eq!(proof.receipt.request, wait_request.digest());
        assert_eq!(proof.receipt.op_index, 0);
        assert_eq!(proof.receipt.seq, released.seq);
        let granted = decode_outcome(&proof.receipt.result.0).unwrap();
        assert!(
            matches!(granted, Ok(OpResult::Granted { .. })),
            "{granted:?}"
        );
    })
    .await
    .expect("timed out");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_recovers_and_catches_up() {
    let mut cluster = Cluster::start(4);
    let verifier = Verifier::new(cluster.membership.clone());
    timeout(TEST_TIMEOUT, async {
        run_workload(&cluster, 4, 4).await;
        let before = cluster.handles[3].status().await.unwrap().last_executed;
        assert!(before > SeqNum(0));
        cluster.restart(3).await;
        // Recovered from its data dir, not from zero.
        let after = cluster.handles[3].status().await.unwrap().last_executed;
        assert!(after >= before, "recovered {after:?} < {before:?}");
        // New requests through the restarted replica commit.
        let mut client = TestClient::new(42);
        let create = client.request(&cluster.membership, vec![Op::CreateSession { ttl: TTL }]);
        let reply = submit(&cluster.handles[3], &verifier, create).await;
        assert!(reply.seq > before);
        // And it keeps up with the others.
        let target = reply.seq;
        loop {
            let s = cluster.handles[3].status().await.unwrap();
            if s.last_executed >= target {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("timed out");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_down_across_collected_checkpoints_catches_up_by_state_transfer() {
    // Replica 3 is stopped while the others pass a snapshot pulse and two
    // stable checkpoints more (interval 8) and collect their logs below the
    // snapshot. Restarted, it cannot catch up batch by batch from seq 1: it
    // fetches the certified snapshot in chunks, installs it, catches up
    // the batches after it, executes on from there, and fills its
    // lockchain so the whole chain verifies.
    let past = SeqNum(8 * node::replica::SNAPSHOT_PULSE_INTERVAL + 16);
    let mut cluster = Cluster::start(4);
    let verifier = Verifier::new(cluster.membership.clone());
    timeout(TEST_TIMEOUT, async {
        if let Some(task) = cluster.tasks[3].take() {
            task.stop().await.unwrap();
        }
        let m = cluster.membership.clone();
        let mut client = TestClient::new(50);
        let session = session_of(
            &submit(
                &cluster.handles[0],
                &verifier,
                client.request(&m, vec![Op::CreateSession { ttl: TTL }]),
            )
            .await,
        );
        let mut i = 0u64;
        loop {
            let status = cluster.handles[0].status().await.unwrap();
            if status.stable_checkpoint >= past {
                break;
            }
            let acquire = Op::Acquire {
                session,
                resource: format!("lock-{i}"),
                mode: LockMode::Exclusive,
                wait: None,
            };
            let handle = &cluster.handles[(i % 3) as usize];
            submit(handle, &verifier, client.request(&m, vec![acquire])).await;
            i += 1;
        }
        let stable = cluster.handles[0].status().await.unwrap().stable_checkpoint;
        cluster.restart(3).await;
        loop {
            let s = cluster.handles[3].status().await.unwrap();
            if s.state_transfers >= 1 && s.last_executed >= stable {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(cluster.metric(3, "qlock_state_transfers_total") >= 1.0);
        // The snapshot it installed was built (and timed) by a peer.
        assert!(cluster.metric(0, "qlock_snapshot_seconds_count") >= 1.0);
        // It serves again: a request through it gets a certified reply.
        let reply = submit(
            &cluster.handles[3],
            &verifier,
            client.request(&m, vec![Op::CreateSession { ttl: TTL }]),
        )
        .await;
        assert!(reply.seq > stable);
        // Its lockchain fills in below the transferred pulse and verifies.
        let wanted = stable.0 / 8;
        loop {
            let pulses = cluster.handles[3]
                .pulses(primitives::PulseNumber(1), wanted as u32)
                .await
                .unwrap();
            if pulses.len() as u64 >= wanted {
                verifier.verify_continuity(&pulses).unwrap();
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("timed out");
    cluster.stop().await;
}
