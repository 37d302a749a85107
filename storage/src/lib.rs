//! RocksDB storage for one QLOCK replica: the consensus safety state, the
//! committed log, request payloads, snapshots, the lockchain and its receipt
//! trees, each in a column family of one database. The only crate besides
//! `node` that touches the disk.
//!
//! **API boundary:** the protocol crates' records are stored as opaque,
//! already-encoded bytes behind typed keys ([`SafetyKey`],
//! [`primitives::SeqNum`], [`primitives::Digest`],
//! [`primitives::PulseNumber`]). This crate never decodes a consensus or
//! lockchain type, so it does not depend on them; the node encodes and
//! decodes.
//!
//! Codemap:
//! - [`store`] — [`Store`] — open, group commit ([`Store::commit`]), reads,
//!   garbage collection ([`Store::gc`]) and recovery ([`Store::recover`]);
//! - [`write_set`] — [`WriteSet`], everything one pass of the event loop asks
//!   to persist, written as one synced RocksDB batch;
//! - [`keys`] — the key layout of every column family;
//! - [`record`] — the checksummed value envelope every record is stored in;
//! - [`config`] — [`StorageConfig`] and the named bounds in [`StorageLimits`];
//! - [`error`] — [`StorageError`];
//! - [`workload`] — the deterministic workload of the crash tests (also used
//!   by the `storage-crash-writer` binary).
//!
//! **Durability invariant:** [`Store::commit`] returns `Ok` only after
//! RocksDB wrote the batch to its WAL and synced it (`fdatasync`). After any
//! failed write the store is poisoned and refuses every further write: the
//! replica must stop voting rather than continue without durability.
//!
//! **Integrity invariant:** every value carries a blake3 checksum
//! ([`primitives::Domain::StorageRecord`]) over its column family, key and
//! body; a record that fails it is reported as
//! [`StorageError::Corrupt`] and never returned.

pub mod config;
pub mod error;
pub mod keys;
pub mod record;
pub mod store;
pub mod workload;
pub mod write_set;

pub use config::{StorageConfig, StorageLimits};
pub use error::{CorruptReason, StorageError};
pub use keys::{ColumnFamily, SafetyKey};
pub use store::{
    Committed, GcReport, LogEntry, Recovered, Snapshot, SnapshotManifest, StableCheckpoint, Store,
};
pub use write_set::WriteSet;
