//! The qlock workloads in the simulator (issue 6, "In the simulator"):
//! every replica runs `qlock::StateMachine`; the checkers (mutual
//! exclusion, fencing order, exactly-once ack, equal checkpoint state
//! digests, agreement) find nothing, under every fault including crashes
//! with recovery by replay, and the workloads do contend.

use simulator::{run_seed, FaultSet, SeedReport, SimOptions, Workload};

fn run(workload: Workload, seed: u64) -> SeedReport {
    let mut opts = SimOptions::new(seed, 4);
    opts.faults = FaultSet::all();
    opts.workload = workload;
    let report = run_seed(&opts);
    assert!(
        report.passed(),
        "{workload} seed {seed}: {:?} {:?}\nreplay: {}",
        report.violations,
        report.liveness_failures,
        opts.replay_command()
    );
    report
}

#[test]
fn locks_contend_without_violations() {
    let reports: Vec<SeedReport> = (0..4).map(|s| run(Workload::Locks, s)).collect();
    let waited: u64 = reports.iter().map(|r| r.grants_after_wait).sum();
    assert!(waited > 0, "no grant after waiting: no contention");
    assert!(reports.iter().all(|r| r.observed_ops > 0));
    let checked: u64 = reports.iter().map(|r| r.lock_histories_checked).sum();
    assert!(checked > 0, "no lock history checked for linearizability");
}

#[test]
fn queue_runs_without_violations() {
    let reports: Vec<SeedReport> = (0..4).map(|s| run(Workload::Queue, s)).collect();
    let claims: u64 = reports
        .iter()
        .map(|r| r.op_counts.get("claim").copied().unwrap_or(0))
        .sum();
    let redeliveries: u64 = reports.iter().map(|r| r.redeliveries).sum();
    assert!(claims > 0);
    assert!(redeliveries > 0, "no visibility timeout ran out");
}

#[test]
fn mixed_runs_without_violations() {
    let reports: Vec<SeedReport> = (0..4).map(|s| run(Workload::Mixed, s)).collect();
    let waited: u64 = reports.iter().map(|r| r.grants_after_wait).sum();
    let expiries: u64 = reports.iter().map(|r| r.session_expiries).sum();
    assert!(waited > 0, "no grant after waiting: no contention");
    assert!(expiries > 0, "no session expired");
}

#[test]
fn qlock_runs_are_deterministic() {
    let a = run(Workload::Mixed, 7);
    let b = run(Workload::Mixed, 7);
    assert_eq!(a.trace_digest, b.trace_digest);
    assert_eq!(a.op_counts, b.op_counts);
}

#[test]
fn workload_names_round_trip() {
    for w in Workload::ALL {
        assert_eq!(w.name().parse::<Workload>(), Ok(w));
    }
    assert!("nope".parse::<Workload>().is_err());
}

#[test]
fn a_grant_lost_in_its_own_batch_is_not_a_violation() {
    // Seed 123 grants a waiter a lock and expires the waiter's session in
    // one batch; the checker once kept it as a holder forever.
    let report = run(Workload::Mixed, 123);
    assert!(report.session_expiries > 0);
}
