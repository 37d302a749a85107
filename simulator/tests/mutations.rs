//! Mutation checks (issue 5, "prove the checkers bite"): a deliberately
//! broken consensus core ([`consensus::Mutation`], test-only) must make the
//! simulator's checkers report a violation within the CI seed range
//! (`scripts/test.sh`: seeds 0..200, 4 replicas, every fault kind). Each
//! test runs the range in order and stops at the first seed that shows
//! the expected violation, so a caught mutant costs a few seeds.

use consensus::Mutation;
use simulator::{run_seed, SeedReport, SimOptions};
use std::ops::Range;

/// The seed range CI runs.
const CI_SEEDS: Range<u64> = 0..200;

fn mutant(seed: u64, mutation: Mutation, faults: &str) -> SimOptions {
    let mut o = SimOptions::new(seed, 4);
    o.faults = faults.parse().expect("fault set");
    o.mutation = mutation;
    o
}

/// Runs the CI seeds with `mutation` until a seed reports a violation
/// containing `expected`; returns that seed's report.
fn first_caught(
    mutation: Mutation,
    expected: &str,
    setup: impl Fn(&mut SimOptions),
) -> (u64, SeedReport) {
    for seed in CI_SEEDS {
        let mut o = mutant(seed, mutation, "all");
        setup(&mut o);
        let r = run_seed(&o);
        if r.violations.iter().any(|v| v.contains(expected)) {
            return (seed, r);
        }
    }
    panic!(
        "{} not caught in seeds {CI_SEEDS:?} (expected a violation containing {expected:?})",
        mutation.name()
    );
}

#[test]
fn quorum_of_2f_is_caught_by_the_commit_certificate_check() {
    // A replica executes a batch with 2f COMMITs: an auditor counting the
    // certificate's distinct signers sees fewer than 2f+1.
    let (seed, r) = first_caught(Mutation::QuorumTwoF, "COMMITs", |_| {});
    assert!(seed < 5, "caught only at seed {seed}: {:?}", r.violations);
}

#[test]
fn new_view_without_prepared_certificates_is_caught() {
    // §4.4: the NEW-VIEW must re-propose every batch committed above its
    // stable checkpoint; the mutant re-proposes null batches only.
    let (seed, r) = first_caught(Mutation::NewViewSkipsPreparedCheck, "NEW-VIEW", |_| {});
    assert!(r.view_changes >= 1);
    assert!(seed < 40, "caught only at seed {seed}: {:?}", r.violations);
}

#[test]
fn prepare_before_payloads_is_caught() {
    // DESIGN.md step 4: a PREPARE vouches for held, validated payloads.
    let (seed, r) = first_caught(
        Mutation::PrepareBeforePayloads,
        "without holding payload",
        |_| {},
    );
    assert!(seed < 5, "caught only at seed {seed}: {:?}", r.violations);
}

#[test]
fn execution_out_of_seq_order_is_caught() {
    let (seed, r) = first_caught(Mutation::ExecuteOutOfOrder, "executed", |_| {});
    assert!(seed < 5, "caught only at seed {seed}: {:?}", r.violations);
    assert!(r.violations.iter().any(|v| v.contains(" after ")));
}

#[test]
fn a_mutant_on_one_replica_only_is_caught() {
    // `--mutate NAME:i`: only replica 2 runs the mutant.
    let (_, r) = first_caught(Mutation::ExecuteOutOfOrder, "replica 2 executed", |o| {
        o.mutated_replicas = vec![2];
    });
    assert!(r.violations.iter().all(|v| v.contains("replica 2")));
}

#[test]
fn mutation_names_parse_and_replay() {
    for m in Mutation::ALL {
        let (parsed, replicas) = simulator::options::parse_mutation(m.name()).expect("name");
        assert_eq!((parsed, replicas), (m, vec![]));
        let o = mutant(9, m, "all");
        assert!(o
            .replay_command()
            .contains(&format!("--mutate {}", m.name())));
    }
    let (m, replicas) = simulator::options::parse_mutation("quorum-2f:0,3").expect("list");
    assert_eq!((m, replicas), (Mutation::QuorumTwoF, vec![0, 3]));
    assert!(simulator::options::parse_mutation("no-such-mutant").is_err());
    assert_eq!(
        SimOptions::new(0, 4).mutation,
        Mutation::None,
        "off by default"
    );
}
