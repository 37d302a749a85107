//! Deterministic simulation of a QLOCK cluster: one thread, one seeded
//! `rand_chacha` RNG, virtual time; the real protocol cores on a faulty
//! virtual network, disk and clock. Later also the local real-process
//! cluster harness and the benchmarks.
//!
//! - [`options`]: what a run looks like ([`SimOptions`], [`FaultSet`]);
//! - [`sim`]: the event loop, network, clients and checkers ([`Sim`]);
//! - [`node`]: one replica's driver parts: mempool, disk, test application;
//! - [`report`]: a run's findings ([`SeedReport`]) and the summary over
//!   many ([`Summary`]).

pub mod node;
pub mod options;
pub mod report;
pub mod sim;

pub use options::{FaultKind, FaultSet, ScriptedPartition, SimOptions};
pub use report::{SeedReport, Summary};
pub use sim::Sim;

/// Runs one seed.
pub fn run_seed(opts: &SimOptions) -> SeedReport {
    Sim::new(opts).run()
}
