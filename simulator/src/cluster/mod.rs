//! The local real-process cluster harness (`simulator cluster`): real
//! `qlockd` replicas on 127.0.0.1, real clients, faults at chosen times,
//! and the same history checker as the simulator.
//!
//! Library modules, so the end-to-end tests (`tests/`, crate `e2e`) reuse
//! them:
//! - [`process`]: write a cluster (`qlockd init-cluster`), start, stop,
//!   kill -9, pause, resume and restart replicas, read their status and
//!   metrics ([`LocalCluster`]);
//! - [`workload`]: C clients running a workload and recording every op
//!   ([`WorkloadRun`], [`WorkloadReport`]);
//! - [`faults`]: faults at chosen times ([`FaultPlan`]);
//! - [`history`]: the history's JSON lines and its checks
//!   ([`check_history`]);
//! - [`http`]: the little HTTP the harness speaks to replicas;
//! - [`cli`]: the `simulator cluster` command itself.

pub mod cli;
pub mod faults;
pub mod history;
pub mod http;
pub mod process;
pub mod workload;

pub use faults::{FaultPlan, Target};
pub use history::{check_history, CheckReport, HistoryOp};
pub use process::{locate_binary, ClusterError, ClusterSpec, LocalCluster, NodeState};
pub use workload::{WorkloadKind, WorkloadReport, WorkloadRun, WorkloadSpec};
