//! Real `qlockd` processes on 127.0.0.1 under load and faults: the client
//! histories stay linearizable (no two holders at once, tokens in order,
//! no message acked twice), the cluster recovers from a killed or paused
//! primary and a killed backup, and a whole-cluster crash loses nothing
//! that was acknowledged.
//!
//! Each test is bounded in time; its cluster is stopped when it ends (and
//! killed, with the replicas' logs printed, when it fails). Time bounds are
//! liveness bounds, deliberately generous; nothing here measures speed.

use e2e::{
    assert_history_passes, bounded, eventually, TestCluster, WorkloadKind, RECOVERY, VIEW_CHANGE_MS,
};
use qlock::{Durability, LockMode, OpResult, Priority};
use std::collections::BTreeSet;
use std::time::Duration;

/// Every test finishes within this, whatever happens.
const TEST_LIMIT: Duration = Duration::from_secs(240);

/// Sequence numbers between checkpoints (consensus' default
/// `checkpoint_interval`, which qlockd's config file does not change).
const CHECKPOINT_INTERVAL: u64 = 128;
/// qlockd writes a transfer snapshot at every this many pulses
/// (`SNAPSHOT_PULSE_INTERVAL` in `node/src/replica/runtime.rs`).
const SNAPSHOT_PULSE_INTERVAL: u64 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contended_locks_on_four_nodes_keep_one_holder_and_ordered_tokens() {
    bounded(TEST_LIMIT, "test", async {
        let cluster = TestCluster::start(4).await;
        let report = cluster
            .run_workload(WorkloadKind::Contended, 4, Duration::from_secs(8))
            .await;
        let check = assert_history_passes(&report);
        assert!(
            check.grants >= 20,
            "too few grants to mean anything: {}",
            check.summary()
        );
        let waited = report
            .history
            .iter()
            .filter(|op| {
                matches!(
                    op.wait_end.as_ref().map(|(r, _)| &r.outcome),
                    Some(Ok(OpResult::Granted { .. }))
                )
            })
            .count();
        assert!(
            waited > 0,
            "no grant after a wait: the workload did not contend ({})",
            check.summary()
        );
        assert_eq!(report.errors, 0, "requests failed: {:?}", report.last_error);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_messages_are_acked_at_most_once_and_all_accounted_for() {
    bounded(TEST_LIMIT, "test", async {
        let cluster = TestCluster::start(4).await;
        let report = cluster
            .run_workload(WorkloadKind::Queue, 4, Duration::from_secs(8))
            .await;
        // Includes "no message acked twice" and the queue's linearizability.
        let check = assert_history_passes(&report);
        let account = report.queue_account();
        assert!(
            account.submitted.len() >= 20,
            "too few messages: {}",
            check.summary()
        );
        let unaccounted = account.unaccounted();
        assert!(
            unaccounted.is_empty(),
            "{} of {} certified submits were neither acked nor dead-lettered by the end",
            unaccounted.len(),
            account.submitted.len()
        );
        // And the cluster agrees the queue is empty.
        let depth = cluster
            .client()
            .await
            .depth(&report.spec.queue_name())
            .await
            .expect("depth");
        assert_eq!(depth.ready, [0; 4], "{depth:?}");
        assert_eq!(depth.claimed, 0, "{depth:?}");
        assert_eq!(
            depth.dead as usize,
            account.dead.len(),
            "dead letters counted and listed differ"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_primary_under_load_changes_the_view_and_clients_go_on() {
    bounded(TEST_LIMIT, "test", async {
        let mut cluster = TestCluster::start(4).await;
        let old_view = cluster.status(0).await.expect("status").view.0;
        let run = cluster.start_workload(WorkloadKind::Mixed, 6, Duration::from_secs(16));
        tokio::time::sleep(Duration::from_secs(4)).await;
        let primary = cluster.primary_now().await;
        cluster.kill(primary).expect("kill -9 the primary");
        let killed_at = run.now_ns();
        let survivors: Vec<usize> = (0..4).filter(|i| *i != primary).collect();
        let me = &cluster;
        let new_view = eventually(RECOVERY, "a view change", || {
            let survivors = survivors.clone();
            async move {
                let mut views = Vec::new();
                for i in survivors {
                    let s = me
                        .status(i)
                        .await
                        .map_err(|e| format!("replica {i}: {e}"))?;
                    views.push((s.view.0, s.primary.0));
                }
                match views.iter().min() {
                    Some((v, p)) if *v > old_view && usize::from(*p) != primary => Ok(*v),
                    _ => Err(format!("(view, primary) of the survivors: {views:?}")),
                }
            }
        })
        .await;
        let report = run.finish(cluster.n()).await;
        let resumed = report
            .first_completion_after(killed_at)
            .expect("no op sent after the kill ever completed");
        let gap = Duration::from_nanos(resumed - killed_at);
        assert!(
            gap <= RECOVERY,
            "clients completed no op for {gap:?} after the primary was killed"
        );
        assert_history_passes(&report);
        assert!(new_view > old_view);
        let (view, _) = cluster.settled(&survivors).await;
        assert!(view >= new_view);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backup_restarted_after_a_snapshot_catches_up_by_transfer_and_batches() {
    bounded(TEST_LIMIT, "test", async {
        let mut cluster = TestCluster::start(4).await;
        let primary = cluster.primary_now().await;
        let backup = (primary + 1) % 4;
        let others: Vec<usize> = (0..4).filter(|i| *i != backup).collect();
        cluster.kill(backup).expect("kill -9 a backup");
        let stable_at_kill = cluster
            .status(primary)
            .await
            .expect("status")
            .stable_checkpoint
            .0;
        // Load until the others made a snapshot pulse above the kill stable
        // and one checkpoint more: they collect their log below the
        // snapshot, so the backup must fetch it, then catch up the rest by
        // batches.
        let snapshot_seqs = SNAPSHOT_PULSE_INTERVAL * CHECKPOINT_INTERVAL;
        let target = (stable_at_kill / snapshot_seqs + 1) * snapshot_seqs + CHECKPOINT_INTERVAL;
        let run = cluster.start_workload(WorkloadKind::Locks, 4, Duration::from_secs(60));
        let me = &cluster;
        eventually(
            Duration::from_secs(90),
            "two stable checkpoints without the backup",
            || async move {
                let s = me.status(primary).await?;
                if s.stable_checkpoint.0 >= target {
                    Ok(())
                } else {
                    Err(format!(
                        "stable checkpoint {} of {target}",
                        s.stable_checkpoint.0
                    ))
                }
            },
        )
        .await;
        run.stop();
        let report = run.finish(cluster.n()).await;
        assert_history_passes(&report);
        cluster.start(backup).expect("restart the backup");
        let (_, executed) = cluster.settled(&(0..4).collect::<Vec<_>>()).await;
        assert!(
            executed >= target,
            "executed {executed}, expected at least {target}"
        );
        let status = cluster.status(backup).await.expect("status");
        assert!(
            status.state_transfers > 0,
            "the backup caught up without a state transfer: {status:?}"
        );
        let metric = cluster
            .metric(backup, "qlock_state_transfers_total")
            .await
            .expect("the state transfer counter is exported");
        assert!(metric >= 1.0, "qlock_state_transfers_total = {metric}");
        // `qlock lockchain verify` against the restarted replica alone.
        let only = cluster
            .write_only_replica_file(backup)
            .expect("cluster file");
        let key = cluster.dir().join("verifier.key");
        let (code, out) = cluster.qlock(&only, &key, &["keygen", "--out", key.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}");
        // The pulses before the transferred state are filled in after it.
        let want = target / CHECKPOINT_INTERVAL;
        let me = &cluster;
        let out = eventually(
            RECOVERY,
            "lockchain verify against the restarted backup",
            || {
                let (only, key) = (only.clone(), key.clone());
                async move {
                    // Until the gap below the transferred state is
                    // filled, it serves fewer pulses (from 1, none).
                    match me.qlock(&only, &key, &["lockchain", "verify"]) {
                        (0, out) if out["count"].as_u64().unwrap_or(0) >= want => Ok(out),
                        (_, out) => Err(out.to_string()),
                    }
                }
            },
        )
        .await;
        assert_eq!(out["verified"], true, "{out}");
        let count = out["count"].as_u64().unwrap_or(0);
        assert!(
            count >= want,
            "the restarted backup serves {count} pulses: {out}"
        );
        cluster
            .lockchains_agree(&(0..4).collect::<Vec<_>>(), 2)
            .await;
        let _ = others;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_every_replica_loses_no_acknowledged_submit_or_grant() {
    bounded(TEST_LIMIT, "test", async {
        let mut cluster = TestCluster::start(4).await;
        let key = primitives::KeyPair::generate(&mut rand::rngs::OsRng);
        let c = cluster.connect_with(key.clone()).await;
        let session = c
            .create_session(Duration::from_secs(600))
            .await
            .expect("session");
        // Grants and sync submits, certified one by one, still going when
        // the whole cluster is killed.
        let writer = {
            let c = c.clone();
            tokio::spawn(async move {
                let mut grants = Vec::new();
                let mut submits = BTreeSet::new();
                for n in 0u32.. {
                    let resource = format!("durable-{n}");
                    match c
                        .acquire(session.id, &resource, LockMode::Exclusive, None)
                        .await
                    {
                        Ok(guard) => grants.push((resource, guard.keep())),
                        Err(_) => break,
                    }
                    match c
                        .queue_submit(
                            "durable",
                            Priority::Normal,
                            format!("message {n}").into_bytes(),
                            None,
                            Durability::Sync,
                        )
                        .await
                    {
                        Ok(sent) => {
                            submits.insert(sent.id);
                        }
                        Err(_) => break,
                    }
                }
                (grants, submits)
            })
        };
        tokio::time::sleep(Duration::from_secs(4)).await;
        for i in 0..4 {
            cluster.kill(i).expect("kill -9");
        }
        let (grants, submits) = bounded(RECOVERY * 3, "the writer gives up", writer)
            .await
            .expect("writer task");
        drop(c);
        assert!(
            grants.len() >= 5 && submits.len() >= 5,
            "too little was acknowledged before the crash: {} grants, {} submits",
            grants.len(),
            submits.len()
        );
        for i in 0..4 {
            cluster.start(i).expect("restart");
        }
        cluster
            .wait_ready(Duration::from_secs(60))
            .await
            .expect("the restarted cluster commits");
        let c = cluster.connect_with(key).await;
        for (resource, token) in &grants {
            let info = c.check(resource).await.expect("check");
            assert!(
                info.holders.contains(&(session.id, *token)),
                "the grant of {resource} (token {}) is gone after the crash: {info:?}",
                token.as_u64()
            );
        }
        let mut claimed = BTreeSet::new();
        for _ in 0..submits.len() + 100 {
            match c
                .claim(session.id, "durable", Duration::from_secs(600))
                .await
                .expect("claim")
            {
                Some(msg) => {
                    claimed.insert(msg.keep().id);
                }
                None => break,
            }
        }
        let lost: Vec<_> = submits.difference(&claimed).collect();
        assert!(
            lost.is_empty(),
            "{} of {} acknowledged sync submits are gone after the crash",
            lost.len(),
            submits.len()
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_primary_rejoins_the_new_view_without_a_fork() {
    bounded(TEST_LIMIT, "test", async {
        let mut cluster = TestCluster::start(4).await;
        let run = cluster.start_workload(WorkloadKind::Locks, 4, Duration::from_secs(16));
        tokio::time::sleep(Duration::from_secs(3)).await;
        let primary = cluster.primary_now().await;
        let old_view = cluster.status(primary).await.expect("status").view.0;
        cluster.pause(primary).expect("SIGSTOP the primary");
        let paused_at = std::time::Instant::now();
        let others: Vec<usize> = (0..4).filter(|i| *i != primary).collect();
        let me = &cluster;
        eventually(RECOVERY, "a new view without the paused primary", || {
            let others = others.clone();
            async move {
                let mut views = Vec::new();
                for i in others {
                    views.push(
                        me.status(i)
                            .await
                            .map_err(|e| format!("replica {i}: {e}"))?
                            .view
                            .0,
                    );
                }
                if views.iter().all(|v| *v > old_view) {
                    Ok(())
                } else {
                    Err(format!("views {views:?}"))
                }
            }
        })
        .await;
        // Paused well past the view-change timeout.
        let pause = Duration::from_millis(4 * VIEW_CHANGE_MS);
        tokio::time::sleep(pause.saturating_sub(paused_at.elapsed())).await;
        cluster.resume(primary).expect("SIGCONT");
        let report = run.finish(cluster.n()).await;
        assert_history_passes(&report);
        let all: Vec<usize> = (0..4).collect();
        let (view, _) = cluster.settled(&all).await;
        assert!(view > old_view, "the cluster is back in view {view}");
        cluster.lockchains_agree(&all, 1).await;
    })
    .await
}
