//! Prints the gossip measurement table (BENCHMARKS.md, "Gossip").
//!
//! `cargo run --release -p gossip --example measure [-- --quick]`, or
//! `-- --seeds N` to check the acceptance targets over seeds 1..=N.

use gossip::sim::{measure, Attack, Report, Sim, SimConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--seeds") {
        let seeds = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(20);
        sweep(seeds);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let sizes: &[usize] = if quick {
        &[4, 7, 16]
    } else {
        &[4, 7, 16, 64, 128]
    };
    println!("| n | loss | Byzantine | reliability (mean / min) | RMR | LDH (mean / max) | depth max | LDH − depth max | last delivery ms (mean / max) | control msgs / bcast | GRAFTs / bcast |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in sizes {
        for (loss, byzantine, attack) in scenarios(n) {
            let mut config = SimConfig::new(n, 7);
            config.loss = loss;
            config.byzantine = byzantine;
            config.attack = attack;
            let report = measure(config);
            let who = if byzantine == 0 {
                "—".to_string()
            } else {
                format!("{byzantine} {attack:?}")
            };
            row(n, loss, &who, &report);
        }
    }
    mitigations(if quick { &[64] } else { &[16, 64, 128] });
}

/// The PRUNE-provocation mitigations: their cost failure-free and their
/// effect under attack.
fn mitigations(sizes: &[usize]) {
    println!();
    println!("| n | mitigation | failure-free RMR | failure-free last delivery ms (mean / max) | under attack: RMR | under attack: last delivery ms (mean / max) | under attack: GRAFTs / bcast | PRUNEs suppressed / bcast |");
    println!("|---|---|---|---|---|---|---|---|");
    for &n in sizes {
        let f = (n - 1) / 3;
        let variants = [
            ("none", 0, 0),
            (
                "graft protection + racer demotion, 10 s (default)",
                10_000_000,
                0,
            ),
            ("eager_min = 2", 0, 2),
            ("eager_min = f + 1", 0, f + 1),
        ];
        for (name, protection, eager_min) in variants {
            let make = |byzantine: usize| {
                let mut config = SimConfig::new(n, 7);
                // Long enough to see the steady state under attack: each
                // racer is caught once per victim, then stays suspect.
                config.broadcasts = 150;
                config.warmup = 75;
                config.gossip.graft_protection_micros = protection;
                config.gossip.eager_min = eager_min;
                config.byzantine = byzantine;
                config.attack = Attack::PruneProvoke;
                config
            };
            let calm = measure(make(0));
            let (attacked, stats) = Sim::new(make(f)).run();
            let suppressed: u64 = stats.iter().flatten().map(|s| s.prune_suppressed).sum();
            println!(
                "| {n} | {name} | {:.3} | {:.1} / {:.1} | {:.3} | {:.1} / {:.1} | {:.2} | {:.2} |",
                calm.rmr_mean,
                calm.latency_mean_micros / 1000.0,
                calm.latency_max_micros as f64 / 1000.0,
                attacked.rmr_mean,
                attacked.latency_mean_micros / 1000.0,
                attacked.latency_max_micros as f64 / 1000.0,
                attacked.grafts_per_message,
                suppressed as f64 / attacked.messages as f64,
            );
        }
    }
}

fn scenarios(n: usize) -> Vec<(f64, usize, Attack)> {
    let f = (n - 1) / 3;
    vec![
        (0.0, 0, Attack::Withhold),
        (0.05, 0, Attack::Withhold),
        (0.20, 0, Attack::Withhold),
        (0.0, f, Attack::Withhold),
        (0.0, f, Attack::FakeIHave),
        (0.0, f, Attack::PruneProvoke),
        (0.0, f, Attack::Mixed),
        (0.20, f, Attack::Mixed),
    ]
}

fn row(n: usize, loss: f64, who: &str, r: &Report) {
    println!(
        "| {n} | {:.0} % | {who} | {:.2} % / {:.2} % | {:.3} | {:.2} / {} | {} | {} | {:.1} / {:.1} | {:.1} | {:.2} |",
        loss * 100.0,
        r.reliability_mean * 100.0,
        r.reliability_min * 100.0,
        r.rmr_mean,
        r.ldh_mean,
        r.ldh_max,
        r.depth_max,
        r.ldh_over_depth_max,
        r.latency_mean_micros / 1000.0,
        r.latency_max_micros as f64 / 1000.0,
        r.control_per_message,
        r.grafts_per_message,
    );
}

/// The acceptance scenarios over many seeds: the worst reliability seen,
/// and the worst failure-free RMR and LDH − depth.
fn sweep(seeds: u64) {
    println!("| n | scenario | seeds | worst reliability | worst RMR | worst LDH − depth |");
    println!("|---|---|---|---|---|---|");
    for n in [4, 7, 16, 64] {
        let f = (n - 1) / 3;
        let scenarios = [
            ("failure-free", 0.0, 0, Attack::Withhold),
            ("20 % loss", 0.2, 0, Attack::Withhold),
            ("f Mixed + 20 % loss", 0.2, f, Attack::Mixed),
            ("f PruneProvoke", 0.0, f, Attack::PruneProvoke),
        ];
        for (name, loss, byzantine, attack) in scenarios {
            let (mut reliability, mut rmr, mut over) = (1.0f64, 0.0f64, i64::MIN);
            for seed in 1..=seeds {
                let mut config = SimConfig::new(n, seed);
                config.loss = loss;
                config.byzantine = byzantine;
                config.attack = attack;
                let r = measure(config);
                if r.reliability_min < 1.0 {
                    eprintln!("n={n} {name} seed={seed}: {r:?}");
                }
                reliability = reliability.min(r.reliability_min);
                rmr = rmr.max(r.rmr_mean);
                over = over.max(r.ldh_over_depth_max);
            }
            println!(
                "| {n} | {name} | {seeds} | {:.2} % | {rmr:.3} | {over} |",
                reliability * 100.0
            );
        }
    }
}
