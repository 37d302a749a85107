//! Scenario tests of the simulator: determinism, the checkers, and the
//! benign-fault seed range CI runs.

use simulator::{run_seed, FaultSet, ScriptedPartition, SimOptions, Summary};

fn opts(seed: u64, replicas: usize, faults: &str) -> SimOptions {
    let mut o = SimOptions::new(seed, replicas);
    o.faults = faults.parse().unwrap();
    o
}

#[test]
fn the_same_seed_gives_a_byte_identical_trace() {
    let mut o = opts(7, 4, "benign");
    o.keep_trace = true;
    let a = run_seed(&o);
    let b = run_seed(&o);
    assert!(!a.trace.is_empty());
    assert_eq!(a.trace, b.trace, "byte-identical traces");
    assert_eq!(a.trace_digest, b.trace_digest);
    o.seed = 8;
    let c = run_seed(&o);
    assert_ne!(a.trace_digest, c.trace_digest, "another seed, another run");
}

#[test]
fn a_faultless_cluster_commits_every_request_everywhere() {
    let r = run_seed(&opts(1, 4, "none"));
    assert!(r.passed(), "{:?} {:?}", r.violations, r.liveness_failures);
    assert_eq!(r.committed_requests, 60);
    assert!(r.stable_checkpoints > 0, "checkpoints became stable");
    assert!(r.faults.is_empty());
}

#[test]
fn development_mode_single_replica_commits() {
    let r = run_seed(&opts(3, 1, "none"));
    assert!(r.passed(), "{:?} {:?}", r.violations, r.liveness_failures);
    assert_eq!(r.committed_requests, 60);
}

#[test]
fn network_faults_without_partitions_keep_safety_and_liveness() {
    // Drops, long delays, duplicates, reordering and clock skew: the
    // checkers find no violation, and after healing every request commits
    // at every replica (lost messages are retransmitted, a lagging replica
    // catches up by committed batches).
    let mut summary = Summary::default();
    for seed in 0..6 {
        summary.add(&run_seed(&opts(
            seed,
            4,
            "drop,delay,duplicate,reorder,skew",
        )));
    }
    assert_eq!(summary.violations, 0, "{:?}", summary.failing_seeds);
    assert_eq!(summary.liveness_failures, 0, "{:?}", summary.failing_seeds);
    // Clients stop issuing at the heal, so a slow seed may issue fewer
    // than its quota; every issued one committed (no liveness failure).
    assert!(summary.committed_requests >= 6 * 50);
    for kind in ["drop", "delay", "duplicate", "reorder"] {
        assert!(
            summary.faults.get(kind).is_some_and(|n| *n > 0),
            "{kind} injected"
        );
    }
}

#[test]
fn benign_faults_with_partitions_never_violate_safety() {
    let mut summary = Summary::default();
    for seed in 0..4 {
        summary.add(&run_seed(&opts(seed, 4, "benign")));
    }
    summary.add(&run_seed(&opts(0, 7, "benign")));
    assert_eq!(summary.violations, 0, "{:?}", summary.failing_seeds);
    assert!(summary.faults.get("partition").is_some_and(|n| *n > 0));
}

#[test]
fn fault_sets_parse_and_print() {
    let set: FaultSet = "drop,partition".parse().unwrap();
    assert_eq!(set.to_string(), "drop,partition");
    assert!("benign".parse::<FaultSet>().unwrap().0.len() >= 5);
    assert!("bogus".parse::<FaultSet>().is_err());
}

fn isolate(at_micros: u64, length_micros: u64, groups: &[bool]) -> ScriptedPartition {
    ScriptedPartition {
        at_micros,
        length_micros,
        groups: groups.to_vec(),
    }
}

#[test]
fn view_change_primary_partitioned_away() {
    // The primary of view 0 is cut off for a second, longer than the clock
    // skew: its proposals go stale, the others change views and commit
    // everything under the new primary; after healing replica 0 catches up.
    let mut o = opts(11, 4, "none");
    o.scripted_partitions = vec![isolate(20_000, 1_000_000, &[true, false, false, false])];
    let r = run_seed(&o);
    assert!(r.passed(), "{:?} {:?}", r.violations, r.liveness_failures);
    assert!(r.view_changes >= 1);
    assert_eq!(r.committed_requests, 60);
}

#[test]
fn partition_2_2_heals_and_progress_resumes() {
    // No side has a quorum: nothing commits while it lasts, everything
    // commits after it heals.
    let mut o = opts(12, 4, "none");
    o.scripted_partitions = vec![isolate(20_000, 800_000, &[true, true, false, false])];
    let r = run_seed(&o);
    assert!(r.passed(), "{:?} {:?}", r.violations, r.liveness_failures);
    assert_eq!(r.committed_requests, 60);
}

#[test]
fn view_change_during_a_view_change() {
    // Replica 0 is cut off, then replica 1 (primary of view 1) too, before
    // the others suspect replica 0 (view-change timeout 400 ms): a quorum
    // asks for view 1, whose primary stays away past the next timeout, so
    // they move on to view 2 (§4.5.2).
    let mut o = opts(13, 7, "none");
    o.scripted_partitions = vec![
        isolate(
            20_000,
            1_900_000,
            &[true, false, false, false, false, false, false],
        ),
        isolate(
            300_000,
            1_800_000,
            &[true, true, false, false, false, false, false],
        ),
    ];
    let r = run_seed(&o);
    assert!(r.passed(), "{:?} {:?}", r.violations, r.liveness_failures);
    assert!(r.view_changes >= 2, "view {}", r.view_changes);
}

#[test]
fn view_change_primary_crashed() {
    let mut o = opts(14, 4, "none");
    o.scripted_crashes = vec![(0, 20_000, 1_500_000)];
    let r = run_seed(&o);
    assert!(r.passed(), "{:?} {:?}", r.violations, r.liveness_failures);
    assert!(r.view_changes >= 1);
    assert_eq!(r.faults.get("crash"), Some(&1));
}

#[test]
fn replica_restarted_behind_two_stable_checkpoints_catches_up_by_state_transfer() {
    // Down while the others order ~40 batches (K = 8) and collect their
    // logs below each stable checkpoint: on restart it recovers from its
    // disk, cannot fetch the collected batches, so it fetches the certified
    // snapshot chunk by chunk, then the batches after it, and ends with
    // every request executed and a lockchain that verifies.
    let mut o = opts(15, 4, "none");
    o.scripted_crashes = vec![(3, 20_000, 1_500_000)];
    let r = run_seed(&o);
    assert!(r.passed(), "{:?} {:?}", r.violations, r.liveness_failures);
    // One transfer, or two when the others collected again meanwhile.
    assert!(
        (1..=2).contains(&r.state_transfers),
        "{} transfers",
        r.state_transfers
    );
    assert_eq!(r.chunks_rejected, 0);
    assert!(r.lockchain_lengths.iter().all(|l| *l == r.pulses));
}

#[test]
fn state_transfer_corrupt_chunks_cost_one_chunk_each_and_the_state_is_right() {
    // The same restart, while servers flip a byte in some chunks: each bad
    // chunk is refused against the manifest and fetched from another peer;
    // the installed state still matches everyone's (the agreement and
    // checkpoint checkers would say otherwise).
    let mut summary = Summary::default();
    for seed in 15..25 {
        let mut o = opts(seed, 4, "corrupt-chunk");
        o.workload = "mixed".parse().unwrap();
        o.scripted_crashes = vec![(3, 20_000, 1_500_000)];
        summary.add(&run_seed(&o));
    }
    assert_eq!(summary.violations, 0, "{:?}", summary.failing_seeds);
    assert_eq!(summary.liveness_failures, 0, "{:?}", summary.failing_seeds);
    assert!(summary.state_transfers >= 10, "{}", summary.state_transfers);
    assert!(summary.chunks_rejected > 0, "some chunk was corrupted");
    assert_eq!(
        summary.chunks_rejected,
        summary.faults.get("corrupt-chunk").copied().unwrap_or(0),
        "every corrupted chunk that arrived was refused"
    );
}

#[test]
fn crashes_with_every_other_fault_keep_safety_and_liveness() {
    let mut summary = Summary::default();
    for seed in 0..4 {
        summary.add(&run_seed(&opts(seed, 4, "all")));
    }
    assert_eq!(summary.violations, 0, "{:?}", summary.failing_seeds);
    assert_eq!(summary.liveness_failures, 0, "{:?}", summary.failing_seeds);
    assert!(summary.faults.get("crash").is_some_and(|n| *n > 0));
}

#[test]
fn idle_cluster_heartbeat_batches_keep_time_moving() {
    // No client submits anything; the application has a pulse deadline
    // every 100 ms of effective time. Empty heartbeat batches carry the
    // effective time along with the clock.
    let mut o = opts(16, 4, "none");
    o.clients = 0;
    o.pulse_micros = Some(100_000);
    let r = run_seed(&o);
    assert!(r.passed(), "{:?} {:?}", r.violations, r.liveness_failures);
    assert_eq!(r.committed_requests, 0);
    assert!(r.batches >= 15, "{} heartbeat batches", r.batches);
    assert!(
        r.effective_micros_min >= 1_700_000,
        "{}",
        r.effective_micros_min
    );
}

#[test]
fn a_stalled_primary_with_a_deadline_due_is_replaced() {
    // Idle but for a due deadline: the backups see no heartbeat from the
    // crashed primary and change views (DESIGN.md step 5).
    let mut o = opts(17, 4, "none");
    o.clients = 0;
    o.pulse_micros = Some(100_000);
    o.scripted_crashes = vec![(0, 300_000, 1_500_000)];
    let r = run_seed(&o);
    assert!(r.passed(), "{:?} {:?}", r.violations, r.liveness_failures);
    assert!(r.view_changes >= 1);
    assert!(
        r.effective_micros_min >= 1_700_000,
        "{}",
        r.effective_micros_min
    );
}

#[test]
fn gossip_carries_every_request_to_every_replica() {
    // No faults: Plumtree alone disseminates (the gateway no longer
    // forwards), so each replica but the gateway gets each request by
    // gossip, and the tree forms (duplicates prune links to lazy).
    let r = run_seed(&opts(1, 4, "none"));
    assert!(r.passed(), "{:?} {:?}", r.violations, r.liveness_failures);
    assert_eq!(r.committed_requests, 60);
    let g = |k: &str| r.gossip.get(k).copied().unwrap_or(0);
    assert!(g("delivered") >= 60 * 3, "{:?}", r.gossip);
    assert!(g("eager") >= 60 * 3, "{:?}", r.gossip);
    assert!(g("prune") > 0, "the tree formed: {:?}", r.gossip);
    assert_eq!(g("invalid"), 0);
}

#[test]
fn gossip_repairs_losses_with_ihave_and_graft() {
    let mut summary = Summary::default();
    for seed in 0..4 {
        summary.add(&run_seed(&opts(seed, 4, "drop,delay,reorder")));
    }
    assert_eq!(summary.violations, 0, "{:?}", summary.failing_seeds);
    assert_eq!(summary.liveness_failures, 0, "{:?}", summary.failing_seeds);
    let g = |k: &str| summary.gossip.get(k).copied().unwrap_or(0);
    assert!(g("ihave") > 0 && g("graft") > 0, "{:?}", summary.gossip);
}

#[test]
fn lockchain_every_replica_chain_verifies_and_chains_agree() {
    // Pulse headers are what the CHECKPOINTs sign; every replica's chain
    // of certified headers passes verify_continuity, and the checkers
    // found no two replicas with different headers for one pulse.
    for workload in ["chain", "mixed"] {
        let mut o = opts(2, 4, "all");
        o.workload = workload.parse().unwrap();
        let r = run_seed(&o);
        assert!(r.passed(), "{:?} {:?}", r.violations, r.liveness_failures);
        assert!(r.pulses >= 3, "{workload}: {} pulses", r.pulses);
        // A Byzantine replica's chain is nobody's evidence: not kept.
        let correct: Vec<u64> = r
            .lockchain_lengths
            .iter()
            .enumerate()
            .filter(|(i, _)| !r.byzantine_replicas.contains(i))
            .map(|(_, l)| *l)
            .collect();
        let total: u64 = correct.iter().sum();
        assert_eq!(r.lockchain_checked, total, "every stored pulse checked");
        assert!(
            correct.iter().all(|l| *l + 1 >= r.pulses),
            "{workload}: every chain reaches the last pulse but one: {:?}",
            r.lockchain_lengths
        );
    }
}

#[test]
fn lockchain_restarted_replicas_chain_verifies_and_continues() {
    // Replica 2 crashes after some pulses and restarts from its disk (its
    // unsynced writes lost); its lockchain, kept on disk, verifies and
    // grows past the restart.
    let mut o = opts(5, 4, "none");
    o.requests_per_client = 25;
    o.scripted_crashes = vec![(2, 150_000, 250_000)];
    let r = run_seed(&o);
    assert!(r.passed(), "{:?} {:?}", r.violations, r.liveness_failures);
    let &(node, at_restart) = r.restarts.first().expect("a restart");
    assert_eq!(node, 2);
    assert!(at_restart >= 1, "pulses before the crash: {at_restart}");
    let own = r.lockchain_lengths[2];
    assert!(
        own > at_restart + 1,
        "chain grew from {at_restart} to {own}; {} pulses: {:?}",
        r.pulses,
        r.lockchain_lengths
    );
    let total: u64 = r.lockchain_lengths.iter().sum();
    assert_eq!(r.lockchain_checked, total, "every stored pulse checked");
}

/// Seeds `range` on 4 replicas with replica `byzantine` lying in the ways
/// `faults` names (and no other fault).
fn byzantine_runs(faults: &str, byzantine: usize, range: std::ops::Range<u64>) -> Summary {
    let mut summary = Summary::default();
    for seed in range {
        let mut o = opts(seed, 4, faults);
        o.byzantine = vec![byzantine];
        summary.add(&run_seed(&o));
    }
    assert_eq!(summary.violations, 0, "{:?}", summary.failing_seeds);
    assert_eq!(summary.liveness_failures, 0, "{:?}", summary.failing_seeds);
    summary
}

fn fault(s: &Summary, kind: &str) -> u64 {
    s.faults.get(kind).copied().unwrap_or(0)
}

#[test]
fn byzantine_equivocating_primary_cannot_commit_two_batches_at_one_seq() {
    // Replica 0, the first primary, sends odd backups a different batch for
    // each seq: at most one of them commits (the agreement checkers), and
    // the cluster moves on.
    let s = byzantine_runs("equivocate", 0, 0..6);
    assert!(fault(&s, "equivocate") > 0);
    assert!(s.rejections.contains_key("conflicting_pre_prepare") || s.view_changes > 0);
    assert_eq!(s.committed_requests, 6 * 60);
}

#[test]
fn byzantine_withheld_payloads_never_commit_and_the_primary_is_replaced() {
    // The primary proposes requests it shows nobody: no correct backup
    // PREPAREs them (DESIGN.md step 4), so they never commit; a view
    // change replaces the primary and every client request commits.
    let s = byzantine_runs("withhold-payloads", 0, 0..4);
    assert!(fault(&s, "withhold-payloads") > 0);
    assert!(s.view_changes > 0, "the withholding primary was replaced");
    assert_eq!(s.committed_requests, 4 * 60);
}

#[test]
fn byzantine_conflicting_votes_bad_signatures_and_replays_are_refused() {
    let s = byzantine_runs("conflicting-votes,bad-signatures,replay", 1, 0..6);
    for kind in ["conflicting-votes", "bad-signatures", "replay"] {
        assert!(fault(&s, kind) > 0, "{kind} injected");
    }
    assert!(s.rejections.get("bad_signature").is_some_and(|n| *n > 0));
    assert_eq!(s.committed_requests, 6 * 60);
}

#[test]
fn byzantine_silent_replica_and_skew_edge_primary_leave_3_of_4_progressing() {
    let silent = byzantine_runs("silent", 2, 0..4);
    assert!(fault(&silent, "silent") > 0);
    let skew = byzantine_runs("skew-edge,skew", 0, 0..4);
    assert!(fault(&skew, "skew-edge") > 0);
    assert_eq!(silent.committed_requests + skew.committed_requests, 8 * 60);
}

#[test]
fn byzantine_flood_keeps_every_correct_replica_within_its_bounds() {
    // Eight validly signed junk votes (seqs near and far, views ahead,
    // checkpoints far beyond the window) per message: the bound checker
    // at the end of each run finds every store within its limit.
    let s = byzantine_runs("flood", 3, 0..4);
    assert!(fault(&s, "flood") > 1_000, "{}", fault(&s, "flood"));
    assert!(s
        .rejections
        .get("outside_watermarks")
        .is_some_and(|n| *n > 0));
}

#[test]
fn twins_one_identity_on_two_replicas_forks_nothing() {
    // Replica 0 runs twice with one key (Bano et al. 2021), each copy
    // talking to part of the cluster: as primary the twins equivocate
    // without any hand-written adversary; nothing forks.
    let s = byzantine_runs("twins", 0, 0..6);
    assert!(fault(&s, "twins") > 0);
    assert_eq!(s.committed_requests, 6 * 60);
}

#[test]
fn byzantine_clients_bad_signatures_replays_and_limits_change_nothing() {
    let mut summary = Summary::default();
    for seed in 0..4 {
        summary.add(&run_seed(&opts(seed, 4, "byzantine-clients")));
    }
    assert_eq!(summary.violations, 0, "{:?}", summary.failing_seeds);
    assert_eq!(summary.liveness_failures, 0, "{:?}", summary.failing_seeds);
    for kind in [
        "client-bad-signature",
        "client-replay",
        "client-reused-number",
        "client-reordered",
        "client-at-limits",
    ] {
        assert!(fault(&summary, kind) > 0, "{kind} injected");
    }
    assert!(summary
        .rejections
        .get("invalid_request")
        .is_some_and(|n| *n > 0));
}
