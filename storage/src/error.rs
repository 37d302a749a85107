//! Why the store failed.

use crate::keys::ColumnFamily;

/// Why the store failed. Every disk problem is one of these, never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// RocksDB reported an IO error (disk full, device error).
    #[error("rocksdb IO error: {0}")]
    Io(String),
    /// RocksDB's own checksums (WAL, SST blocks) found corruption.
    #[error("rocksdb corruption: {0}")]
    RocksCorruption(String),
    /// Any other RocksDB error.
    #[error("rocksdb: {0}")]
    Rocks(String),
    /// A record failed its checksum or could not be parsed; it was not used.
    #[error("corrupt record in {column_family:?} at key {key}: {reason}")]
    Corrupt {
        /// Where it is.
        column_family: ColumnFamily,
        /// The key, in hex.
        key: String,
        /// What is wrong with it.
        reason: CorruptReason,
    },
    /// An earlier write failed, so nothing written since can be trusted to
    /// be durable: the store refuses writes until the process restarts.
    #[error("the store is poisoned by an earlier failed write; restart the replica")]
    Poisoned,
    /// A bound of [`crate::StorageLimits`] would be exceeded.
    #[error("{what}: {len} exceeds the limit of {max}")]
    Limit {
        /// Which bound.
        what: &'static str,
        /// The requested size.
        len: u64,
        /// The bound.
        max: u64,
    },
    /// A snapshot's manifest names a chunk that is not on disk.
    #[error("snapshot at seq {seq} lacks chunk {index}")]
    SnapshotChunkMissing {
        /// The snapshot.
        seq: u64,
        /// The missing chunk.
        index: u32,
    },
}

/// What is wrong with a corrupt record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CorruptReason {
    /// Shorter than the envelope, or an unknown format byte.
    #[error("bad envelope")]
    Envelope,
    /// The checksum does not match the key and body.
    #[error("checksum mismatch")]
    Checksum,
    /// The checksum matched but the body does not parse (a bug, or a record
    /// written by another format version).
    #[error("malformed body")]
    Body,
    /// The key does not parse in its column family.
    #[error("malformed key")]
    Key,
}

impl From<rocksdb::Error> for StorageError {
    fn from(e: rocksdb::Error) -> Self {
        match e.kind() {
            rocksdb::ErrorKind::IOError => StorageError::Io(e.into_string()),
            rocksdb::ErrorKind::Corruption => StorageError::RocksCorruption(e.into_string()),
            _ => StorageError::Rocks(e.into_string()),
        }
    }
}
