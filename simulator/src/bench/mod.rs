//! `simulator bench`: throughput and latency of QLOCK against etcd on this
//! machine (BENCHMARKS.md, "End to end: QLOCK against etcd").
//!
//! - [`target`]: the systems' workers and the workloads (the table of what
//!   each system does per unit);
//! - [`load`]: closed-loop and open-loop load, the measured window;
//! - [`histogram`]: bounded latency histograms and percentiles;
//! - [`report`]: the JSON result file, the markdown table, the SVG plot;
//! - `etcd` (feature `etcd`): local etcd members and the etcd worker;
//! - [`cli`]: the command.

pub mod cli;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod histogram;
pub mod load;
pub mod report;
pub mod target;
