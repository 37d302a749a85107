//! The acceptance targets, checked on small clusters with the
//! deterministic simulation (the full table runs from
//! `examples/measure.rs` in release).

use crate::sim::{measure, Attack, Report, SimConfig};

/// Short runs so `cargo test` stays quick in the dev profile.
fn config(n: usize, seed: u64) -> SimConfig {
    let mut config = SimConfig::new(n, seed);
    config.broadcasts = 25;
    config.warmup = 5;
    config.settle_micros = 3_000_000;
    config
}

fn run(n: usize, seed: u64, loss: f64, byzantine: usize, attack: Attack) -> Report {
    let mut c = config(n, seed);
    c.loss = loss;
    c.byzantine = byzantine;
    c.attack = attack;
    measure(c)
}

#[test]
fn one_seed_one_trace() {
    assert_eq!(
        run(7, 3, 0.2, 2, Attack::Mixed),
        run(7, 3, 0.2, 2, Attack::Mixed)
    );
}

/// Acceptance: RMR < 0.1 failure-free at n ≥ 16; LDH ≤ tree depth + 1.
#[test]
fn failure_free_tree_is_lean_and_shallow() {
    for (n, seed) in [(4, 1), (7, 2), (16, 3), (16, 4), (64, 5)] {
        let r = run(n, seed, 0.0, 0, Attack::Withhold);
        assert_eq!(r.reliability_min, 1.0, "n={n}: {r:?}");
        assert!(r.rmr_mean < 0.1, "n={n}: {r:?}");
        assert!(r.ldh_over_depth_max <= 1, "n={n}: {r:?}");
    }
}

/// Acceptance: 100 % delivery to correct replicas at 20 % loss.
#[test]
fn every_message_survives_twenty_percent_loss() {
    for (n, seed) in [(4, 5), (7, 6), (16, 7), (64, 8)] {
        let r = run(n, seed, 0.2, 0, Attack::Withhold);
        assert_eq!(r.reliability_min, 1.0, "n={n}: {r:?}");
    }
}

/// Acceptance: 100 % delivery with f Byzantine peers, each attack alone
/// and all of them together with 20 % loss; memory stays bounded.
#[test]
fn every_message_survives_f_byzantine_peers() {
    let attacks = [
        (0.0, Attack::Withhold),
        (0.0, Attack::FakeIHave),
        (0.0, Attack::PruneProvoke),
        (0.2, Attack::Mixed),
    ];
    for n in [4, 7, 16] {
        let f = (n - 1) / 3;
        for (loss, attack) in attacks {
            let r = run(n, 11 + n as u64, loss, f, attack);
            assert_eq!(r.reliability_min, 1.0, "n={n} {attack:?}: {r:?}");
            assert!(r.missing_len_max <= crate::Config::default().missing_max);
        }
    }
}

/// Forged payloads from Byzantine peers are refused where they land.
#[test]
fn forged_payloads_are_refused() {
    let r = run(7, 9, 0.0, 2, Attack::Mixed);
    assert!(r.invalid_refused > 0, "{r:?}");
}

/// Seed 49 places all overlay neighbours of one correct replica among the
/// Byzantine ones (an eclipse): anti-entropy summaries to random members
/// still reach it, and it GRAFTs from outside its overlay.
#[test]
fn an_eclipsed_replica_still_delivers() {
    let r = run(64, 49, 0.0, 21, Attack::PruneProvoke);
    assert_eq!(r.reliability_min, 1.0, "{r:?}");
}
