//! How a store is opened and the bounds it enforces.

/// How a [`crate::Store`] behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageConfig {
    /// Sync the WAL before a commit is acknowledged. `true` in every real
    /// deployment; `false` exists only so the sync test can show that its
    /// check notices a missing sync.
    pub sync_writes: bool,
    /// Receipt trees are kept for this many most recent pulses (counting the
    /// stable one); `None` keeps them all. Pulse headers and their quorum
    /// certificates are always kept.
    pub receipts_retention_pulses: Option<u64>,
    /// The bounds.
    pub limits: StorageLimits,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            sync_writes: true,
            receipts_retention_pulses: None,
            limits: StorageLimits::default(),
        }
    }
}

/// Every bound the store enforces. Going over one is a typed error
/// ([`crate::StorageError::Limit`]), never unbounded growth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageLimits {
    /// The largest value of one record (one payload, one snapshot chunk, one
    /// log entry's batch plus certificate).
    pub record_bytes_max: usize,
    /// The most records one [`crate::WriteSet`] may hold.
    pub write_set_records_max: usize,
    /// The most bytes (keys and values) one [`crate::WriteSet`] may hold.
    pub write_set_bytes_max: usize,
    /// The most pulses one [`crate::Store::roots`] query returns.
    pub roots_range_max: u64,
    /// The most safety records [`crate::Store::recover`] loads.
    pub safety_records_max: usize,
    /// The most log entries [`crate::Store::recover`] loads after the
    /// snapshot (at least the watermark window).
    pub recovery_log_entries_max: usize,
    /// The most chunks one snapshot may have.
    pub snapshot_chunks_max: u32,
    /// The most payload references one [`crate::Store::gc`] pass examines;
    /// the rest wait for the next pass.
    pub gc_payload_refs_max: usize,
}

impl Default for StorageLimits {
    fn default() -> Self {
        StorageLimits {
            record_bytes_max: primitives::codec::FRAME_BYTES_MAX,
            write_set_records_max: 65_536,
            write_set_bytes_max: 256 * 1024 * 1024,
            roots_range_max: 4_096,
            safety_records_max: 65_536,
            recovery_log_entries_max: 65_536,
            snapshot_chunks_max: 65_536,
            gc_payload_refs_max: 1 << 20,
        }
    }
}
