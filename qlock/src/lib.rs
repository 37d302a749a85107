//! The QLOCK replicated state machine: sessions, locks with fencing tokens,
//! and durable priority queues.
//!
//! Pure and deterministic: every replica executes the same committed batches
//! at the same effective time and reaches the same state digest. No IO, no
//! clock: time comes with each batch.
//!
//! ```
//! use primitives::{ClusterId, HlcTimestamp, KeyPair, RequestBody, RequestNumber, SeqNum};
//! use qlock::{decode_outcome, Config, LockMode, Op, OpResult, StateMachine};
//!
//! let mut sm = StateMachine::new(Config::default());
//! let key = KeyPair::from_seed(&[7; 32]);
//! let request = RequestBody {
//!     cluster: ClusterId::default(),
//!     client: key.public(),
//!     number: RequestNumber(1),
//!     atomic: false,
//!     ops: vec![Op::CreateSession { ttl: 10_000_000 }.encode()],
//! }
//! .sign(&key);
//! // Consensus hands over committed batches with their effective time.
//! let time = HlcTimestamp::from_micros(1_700_000_000_000_000);
//! let outcome = sm.execute_batch(SeqNum(1), time, &[request]);
//! let result = decode_outcome(&outcome.receipts[0].result.0).unwrap();
//! assert!(matches!(result, Ok(OpResult::SessionCreated { .. })));
//! // The next lease expiry: when to propose a heartbeat batch.
//! assert_eq!(sm.next_deadline().unwrap().wall, time.wall + 10_000_000);
//! let digest = sm.state_digest();
//! let mut restored = StateMachine::restore(&sm.snapshot_chunks(64 * 1024)).unwrap();
//! assert_eq!(restored.state_digest(), digest);
//! # let _ = LockMode::Shared;
//! ```
//!
//! Codemap:
//! - [`config`]: every bound and time constant ([`Config`]);
//! - [`op`]: the client-facing operations, results and errors (the API);
//! - [`history`]: a linearizability checker (WGL) for client histories;
//! - `machine`: [`StateMachine`], batch execution, the reply cache,
//!   deadlines, snapshots;
//! - `locks`, `queues`: the operations on sessions/locks and queues;
//! - `table`: ordered tables with the incremental state digest and the
//!   undo journal of atomic requests;
//! - `state`: the records the tables hold;
//! - [`transfer`]: chunked state transfer, each chunk checked against the
//!   certified state digest.

pub mod config;
pub mod history;
mod locks;
mod machine;
pub mod op;
mod queues;
mod state;
mod table;
pub mod transfer;

pub use config::Config;
pub use machine::{BatchOutcome, ClientEvent, SnapshotError, StateMachine};
pub use op::{
    decode_outcome, encode_outcome, Durability, FencingToken, LockInfo, LockMode, MessageId,
    MessageView, Op, OpError, OpOutcome, OpResult, Priority, Provenance, QueueDepth, SessionId,
    SessionInfo,
};
pub use state::Stats;
pub use transfer::{ChunkSpan, Installer, TransferError, TransferManifest, TransferSnapshot};
