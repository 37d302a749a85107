//! The PBFT replica core after Castro & Liskov (OSDI'99; TOCS 2002).
//!
//! Sans-IO and deterministic: the driver feeds it inputs (a request digest
//! entered the mempool, a peer message, a timer, a persist acknowledgement,
//! a fetched payload, an execution result) with the current time, and it
//! returns outputs (send/broadcast, persist, set timer, fetch payload,
//! execute batch). It never touches a socket, a disk, the clock or OS
//! randomness. See ARCHITECTURE.md.
//!
//! - [`config`]: [`Config`], with a named bound for every store;
//! - [`message`]: the signed PBFT messages and STATUS;
//! - [`io`]: [`Input`] and [`Output`];
//! - [`reject`]: [`Rejection`], why a peer input was refused;
//! - [`Replica`]: the state machine.
//!
//! The normal case, checkpoints, retransmission and catch-up (issue 3) and
//! the view change (§4.4–4.5, issue 4). Crash recovery and chunked state
//! transfer (issue 4) fit in as further inputs and persist records.

pub mod config;
pub mod io;
pub mod message;
pub mod reject;
mod replica;

pub use config::{Config, ConfigError, Mutation};
pub use io::{ExecuteBatch, Input, Output, PersistId, PersistRecord, TimerKind};
pub use message::{
    Batch, Checkpoint, CommittedBatch, Message, NewView, PrePrepare, PreparedProof, SignedMessage,
    Status, ViewChange, Vote, WireMessage,
};
pub use reject::Rejection;
pub use replica::{RecoveredState, Replica};
