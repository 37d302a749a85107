//! Deterministic simulation of a QLOCK cluster: one thread, one seeded
//! `rand_chacha` RNG, virtual time; the real protocol cores on a faulty
//! virtual network, disk and clock. Also the local real-process cluster
//! harness ([`cluster`]) and the benchmarks ([`bench`]).
//!
//! - [`options`]: what a run looks like ([`SimOptions`], [`FaultSet`]);
//! - [`sim`]: the event loop, network, clients, gossip (the real Plumtree
//!   core disseminates requests and serves consensus's fetch-by-digest),
//!   the lockchain (pulse certificates from the CHECKPOINT quorum) and the
//!   checkers ([`Sim`]);
//! - [`node`]: one replica's driver parts: the gossip validation hook,
//!   mempool, disk (with its lockchain), the application and its pulse
//!   builder;
//! - [`workload`]: the qlock workloads and their clients ([`Workload`]);
//! - [`report`]: a run's findings ([`SeedReport`]) and the summary over
//!   many ([`Summary`]);
//! - [`cluster`]: real `qlockd` processes on 127.0.0.1 with workloads,
//!   faults and the history checker (`simulator cluster`, and the
//!   end-to-end tests' fixture);
//! - [`bench`]: `simulator bench`, QLOCK against etcd under closed- and
//!   open-loop load (JSON results, SVG plot).

pub mod bench;
pub mod cluster;
pub mod node;
pub mod options;
pub mod report;
pub mod sim;
pub mod workload;

pub use options::{FaultKind, FaultSet, ScriptedPartition, SimOptions};
pub use report::{SeedReport, Summary};
pub use sim::Sim;
pub use workload::Workload;

/// Runs one seed. A broken invariant in a core (an `assert!` firing, as
/// under a mutant) is reported as a violation of that seed, so the run
/// goes on and the seed can be replayed.
pub fn run_seed(opts: &SimOptions) -> SeedReport {
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Sim::new(opts).run()));
    run.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        SeedReport {
            seed: opts.seed,
            violations: vec![format!("panic: {what}")],
            ..SeedReport::default()
        }
    })
}
