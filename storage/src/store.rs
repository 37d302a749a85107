//! The replica's database: open, group commit, reads, garbage collection
//! and recovery.

use crate::config::StorageConfig;
use crate::error::{CorruptReason, StorageError};
use crate::keys::{self, ColumnFamily, SafetyKey};
use crate::record;
use crate::write_set::{Write, WriteSet};
use primitives::{Digest, PulseNumber, SeqNum};
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, WriteOptions, DB};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A committed batch and the certificate that it committed, both in the
/// consensus crate's encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// The batch (`CommittedBatch` bytes).
    pub batch: Vec<u8>,
    /// Its commit certificate.
    pub certificate: Vec<u8>,
}

/// Describes a complete snapshot: the state after executing through `seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotManifest {
    /// The last seq the snapshot covers.
    pub seq: SeqNum,
    /// How many chunks it has (indices `0..chunk_count`).
    pub chunk_count: u32,
    /// The certified state digest the chunks must reassemble to (checked by
    /// the state machine, which knows how to hash its state).
    pub state_digest: Digest,
    /// Anything else the node needs to resume (opaque).
    pub meta: Vec<u8>,
}

/// A snapshot read back: its manifest and every chunk, checksums verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The manifest.
    pub manifest: SnapshotManifest,
    /// Chunks `0..manifest.chunk_count`, in order.
    pub chunks: Vec<Vec<u8>>,
}

/// The stable checkpoint garbage collection runs below.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StableCheckpoint {
    /// The last seq the checkpoint covers.
    pub seq: SeqNum,
    /// Its pulse.
    pub pulse: PulseNumber,
}

/// What [`Store::commit`] reports once the write set is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// How long the synced RocksDB write took (WAL append + fdatasync): the
    /// fsync-latency metric.
    pub sync_latency: Duration,
    /// How many records were written.
    pub writes: usize,
    /// How many bytes of keys and values were written (before envelopes).
    pub bytes: usize,
}

/// What [`Store::gc`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Log entries, payload references and snapshots below this seq were
    /// removed: the newest complete snapshot at or below the stable
    /// checkpoint (`None`: no such snapshot, so the log was kept whole).
    pub snapshot_seq: Option<SeqNum>,
    /// Payloads deleted.
    pub payloads_deleted: usize,
    /// Receipt trees of pulses below this one were removed (`None`: retention
    /// keeps them all).
    pub receipts_below: Option<PulseNumber>,
    /// The synced write's latency.
    pub sync_latency: Duration,
}

/// What a restarting replica loads: the newest snapshot, the log after it
/// and the consensus safety state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The last stable checkpoint garbage collection ran at.
    pub stable: Option<StableCheckpoint>,
    /// The newest complete snapshot (`None`: start from the initial state).
    pub snapshot: Option<Snapshot>,
    /// Every intact log entry after the snapshot, in seq order. Replay the
    /// contiguous run that starts right after the snapshot; entries after a
    /// gap are committed but cannot execute until the gap is fetched.
    pub log: Vec<(SeqNum, LogEntry)>,
    /// Log entries after the snapshot that failed their checksum: not
    /// returned, to be fetched from peers.
    pub corrupt_log: Vec<SeqNum>,
    /// Every piece of safety state, in key order.
    pub safety: Vec<(SafetyKey, Vec<u8>)>,
}

/// A replica's database. Reads may run concurrently; writes (commit, gc)
/// are serialised. Once a write fails the store is poisoned: every later
/// write returns [`StorageError::Poisoned`].
pub struct Store {
    db: DB,
    config: StorageConfig,
    writer: Mutex<()>,
    poisoned: AtomicBool,
    #[cfg(test)]
    fail_next_write: AtomicBool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.db.path())
            .field("poisoned", &self.is_poisoned())
            .finish()
    }
}

impl Store {
    /// Opens (creating if missing) the database at `path` with every column
    /// family. A WAL that is corrupt anywhere but in its last record (which
    /// a crash may tear, and which was then never acknowledged) is refused
    /// with an error rather than silently truncated.
    pub fn open(path: &Path, config: StorageConfig) -> Result<Store, StorageError> {
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_paranoid_checks(true);
        options.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
        // RocksDB's info LOG files would otherwise accumulate forever.
        options.set_keep_log_file_num(4);
        let names = ColumnFamily::ALL.map(ColumnFamily::name);
        let db = DB::open_cf(&options, path, names)?;
        Ok(Store {
            db,
            config,
            writer: Mutex::new(()),
            poisoned: AtomicBool::new(false),
            #[cfg(test)]
            fail_next_write: AtomicBool::new(false),
        })
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    /// Whether an earlier write failed. A poisoned store takes no writes; the
    /// replica must stop voting.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    /// Writes `set` as one RocksDB batch, synced to disk when the config says
    /// so (always, outside the sync test), and returns only after the sync.
    /// This return is the acknowledgement: the caller may send the votes
    /// that depend on the set only now.
    pub fn commit(&self, set: WriteSet) -> Result<Committed, StorageError> {
        self.check_limits(&set)?;
        let _writer = self.lock_writer()?;
        let (writes, bytes) = (set.len(), set.bytes());
        if set.is_empty() {
            // Every earlier commit was synced before it returned.
            return Ok(Committed {
                sync_latency: Duration::ZERO,
                writes,
                bytes,
            });
        }
        let batch = self.build_batch(set)?;
        let sync_latency = self.write(batch)?;
        Ok(Committed {
            sync_latency,
            writes,
            bytes,
        })
    }

    fn lock_writer(&self) -> Result<MutexGuard<'_, ()>, StorageError> {
        // A panic in another writer leaves nothing half-written in RocksDB
        // (a batch is atomic), so a poisoned mutex is still usable.
        let guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_poisoned() {
            return Err(StorageError::Poisoned);
        }
        Ok(guard)
    }

    fn check_limits(&self, set: &WriteSet) -> Result<(), StorageError> {
        let limits = &self.config.limits;
        check_limit("write set records", set.len(), limits.write_set_records_max)?;
        check_limit("write set bytes", set.bytes(), limits.write_set_bytes_max)?;
        for write in &set.writes {
            match write {
                Write::Put { body, .. } => {
                    check_limit("record bytes", body.len(), limits.record_bytes_max)?
                }
                Write::Payload { bytes, .. } => {
                    check_limit("record bytes", bytes.len(), limits.record_bytes_max)?
                }
                Write::Delete { .. } | Write::DeleteRange { .. } => {}
            }
        }
        Ok(())
    }

    /// Turns a write set into a RocksDB batch, sealing every value. Payloads
    /// keep the highest seq that ever referenced them.
    fn build_batch(&self, set: WriteSet) -> Result<WriteBatch, StorageError> {
        let mut batch = WriteBatch::default();
        let mut payloads: BTreeMap<Digest, (SeqNum, Vec<u8>)> = BTreeMap::new();
        for write in set.writes {
            match write {
                Write::Put { cf, key, body } => {
                    batch.put_cf(self.cf(cf), &key, record::seal(cf, &key, &body))
                }
                Write::Delete { cf, key } => batch.delete_cf(self.cf(cf), key),
                Write::DeleteRange { cf, start, end } => {
                    batch.delete_range_cf(self.cf(cf), start, end)
                }
                Write::Payload { digest, seq, bytes } => {
                    let refs = self.cf(ColumnFamily::PayloadRefs);
                    let ref_key = keys::payload_ref_key(seq, &digest);
                    let sealed = record::seal(ColumnFamily::PayloadRefs, &ref_key, &[]);
                    batch.put_cf(refs, ref_key, sealed);
                    let entry = payloads.entry(digest).or_insert((seq, Vec::new()));
                    *entry = (entry.0.max(seq), bytes);
                }
            }
        }
        for (digest, (seq, bytes)) in payloads {
            let seq = match self.payload_record(&digest) {
                Ok(Some((stored, _))) => seq.max(stored),
                // A corrupt record is overwritten by this intact one.
                Ok(None) | Err(StorageError::Corrupt { .. }) => seq,
                Err(e) => return Err(e),
            };
            let key = keys::payload_key(&digest);
            let mut body = seq.0.to_be_bytes().to_vec();
            body.extend_from_slice(&bytes);
            let sealed = record::seal(ColumnFamily::Payloads, &key, &body);
            batch.put_cf(self.cf(ColumnFamily::Payloads), key, sealed);
        }
        Ok(batch)
    }

    /// Writes `batch` with the configured sync and measures it. Any failure
    /// poisons the store: RocksDB may or may not have made some of it
    /// durable, so nothing written from now on can be acknowledged.
    fn write(&self, batch: WriteBatch) -> Result<Duration, StorageError> {
        let mut options = WriteOptions::default();
        options.set_sync(self.config.sync_writes);
        let start = Instant::now();
        #[cfg(test)]
        if self.fail_next_write.swap(false, Ordering::SeqCst) {
            self.poisoned.store(true, Ordering::SeqCst);
            return Err(StorageError::Io("injected write failure".into()));
        }
        match self.db.write_opt(batch, &options) {
            Ok(()) => Ok(start.elapsed()),
            Err(e) => {
                self.poisoned.store(true, Ordering::SeqCst);
                Err(e.into())
            }
        }
    }

    fn cf(&self, cf: ColumnFamily) -> &rocksdb::ColumnFamily {
        // Every family is created at open; a missing one is a bug.
        self.db
            .cf_handle(cf.name())
            .unwrap_or_else(|| panic!("column family {} missing", cf.name()))
    }

    /// Reads and verifies one record's body.
    fn get(&self, cf: ColumnFamily, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        match self.db.get_pinned_cf(self.cf(cf), key)? {
            None => Ok(None),
            Some(value) => Ok(Some(record::open(cf, key, &value)?.to_vec())),
        }
    }

    /// Reads up to `max` verified records with keys in `[start, end)`,
    /// forward or (`reverse`) backward. Returns the raw key with each body.
    fn scan(&self, scan: Scan<'_>, max: usize) -> Result<Records, StorageError> {
        let mut options = ReadOptions::default();
        options.set_iterate_lower_bound(scan.start.to_vec());
        if let Some(end) = scan.end {
            options.set_iterate_upper_bound(end.to_vec());
        }
        let mode = if scan.reverse {
            IteratorMode::End
        } else {
            IteratorMode::From(scan.start, Direction::Forward)
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf_opt(self.cf(scan.cf), options, mode) {
            if out.len() == max {
                break;
            }
            let (key, value) = item?;
            let body = record::open(scan.cf, &key, &value).map(<[u8]>::to_vec);
            out.push((key.to_vec(), body?));
        }
        Ok(out)
    }

    /// A piece of safety state.
    pub fn safety(&self, key: SafetyKey) -> Result<Option<Vec<u8>>, StorageError> {
        self.get(ColumnFamily::Safety, &key.encode())
    }

    /// The committed batch at `seq`, if stored.
    pub fn log(&self, seq: SeqNum) -> Result<Option<LogEntry>, StorageError> {
        let key = keys::log_key(seq);
        match self.get(ColumnFamily::Log, &key)? {
            None => Ok(None),
            Some(body) => decode_log_entry(&body)
                .map(Some)
                .ok_or_else(|| record::corrupt(ColumnFamily::Log, &key, CorruptReason::Body)),
        }
    }

    /// The payload with this digest, if stored. (The store checks its own
    /// checksum; the caller checks the bytes against the digest's domain.)
    pub fn payload(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.payload_record(digest)?.map(|(_, bytes)| bytes))
    }

    /// The payload with the highest seq that referenced it.
    fn payload_record(&self, digest: &Digest) -> Result<Option<(SeqNum, Vec<u8>)>, StorageError> {
        let key = keys::payload_key(digest);
        let Some(mut body) = self.get(ColumnFamily::Payloads, &key)? else {
            return Ok(None);
        };
        let Some(seq) = body.get(..8).and_then(keys::decode_u64) else {
            return Err(record::corrupt(
                ColumnFamily::Payloads,
                &key,
                CorruptReason::Body,
            ));
        };
        body.drain(..8);
        Ok(Some((SeqNum(seq), body)))
    }

    /// Chunk `index` of the snapshot at `seq`, if stored.
    pub fn snapshot_chunk(&self, seq: SeqNum, index: u32) -> Result<Option<Vec<u8>>, StorageError> {
        self.get(
            ColumnFamily::Snapshots,
            &keys::snapshot_chunk_key(seq, index),
        )
    }

    /// The newest snapshot manifest with seq ≤ `through` (any seq if
    /// `None`).
    pub fn latest_snapshot(
        &self,
        through: Option<SeqNum>,
    ) -> Result<Option<SnapshotManifest>, StorageError> {
        let end = match through {
            Some(seq) => keys::snapshot_manifest_key(seq)
                .into_iter()
                .chain([0])
                .collect(),
            None => keys::snapshot_manifests_end(),
        };
        let scan = Scan {
            cf: ColumnFamily::Snapshots,
            start: &[],
            end: Some(end.as_slice()),
            reverse: true,
        };
        let Some((key, body)) = self.scan(scan, 1)?.pop() else {
            return Ok(None);
        };
        let corrupt = |reason| record::corrupt(ColumnFamily::Snapshots, &key, reason);
        let seq = keys::decode_snapshot_manifest_key(&key).ok_or(corrupt(CorruptReason::Key))?;
        let manifest = decode_manifest(&body).ok_or(corrupt(CorruptReason::Body))?;
        if manifest.seq != seq {
            return Err(corrupt(CorruptReason::Body));
        }
        Ok(Some(manifest))
    }

    /// Every chunk of a snapshot, in order; an error if one is missing or
    /// corrupt.
    pub fn snapshot_chunks(&self, manifest: &SnapshotManifest) -> Result<Snapshot, StorageError> {
        check_limit(
            "snapshot chunks",
            manifest.chunk_count as usize,
            self.config.limits.snapshot_chunks_max as usize,
        )?;
        let mut chunks = Vec::with_capacity(manifest.chunk_count as usize);
        for index in 0..manifest.chunk_count {
            match self.snapshot_chunk(manifest.seq, index)? {
                Some(chunk) => chunks.push(chunk),
                None => {
                    return Err(StorageError::SnapshotChunkMissing {
                        seq: manifest.seq.0,
                        index,
                    })
                }
            }
        }
        Ok(Snapshot {
            manifest: manifest.clone(),
            chunks,
        })
    }

    /// The lockchain entry of `pulse`, if stored.
    pub fn root(&self, pulse: PulseNumber) -> Result<Option<Vec<u8>>, StorageError> {
        self.get(ColumnFamily::Lockchain, &keys::root_key(pulse))
    }

    /// The lockchain entries of pulses `from..=to` that are stored, in pulse
    /// order. At most `roots_range_max` pulses may be asked for at once.
    pub fn roots(
        &self,
        from: PulseNumber,
        to: PulseNumber,
    ) -> Result<Vec<(PulseNumber, Vec<u8>)>, StorageError> {
        if to < from {
            return Ok(Vec::new());
        }
        let asked = (to.0 - from.0).saturating_add(1);
        let max = self.config.limits.roots_range_max;
        if asked > max {
            return Err(StorageError::Limit {
                what: "roots range",
                len: asked,
                max,
            });
        }
        let start = keys::root_key(from);
        let mut end = keys::root_key(to);
        end.push(0);
        let scan = Scan {
            cf: ColumnFamily::Lockchain,
            start: &start,
            end: Some(end.as_slice()),
            reverse: false,
        };
        self.scan(scan, asked as usize)?
            .into_iter()
            .map(|(key, body)| match keys::decode_root_key(&key) {
                Some(pulse) => Ok((pulse, body)),
                None => Err(record::corrupt(
                    ColumnFamily::Lockchain,
                    &key,
                    CorruptReason::Key,
                )),
            })
            .collect()
    }

    /// The newest lockchain entry, if any.
    pub fn latest_root(&self) -> Result<Option<(PulseNumber, Vec<u8>)>, StorageError> {
        let scan = Scan {
            cf: ColumnFamily::Lockchain,
            start: &b"root:"[..],
            end: Some(&b"root;"[..]),
            reverse: true,
        };
        match self.scan(scan, 1)?.pop() {
            None => Ok(None),
            Some((key, body)) => match keys::decode_root_key(&key) {
                Some(pulse) => Ok(Some((pulse, body))),
                None => Err(record::corrupt(
                    ColumnFamily::Lockchain,
                    &key,
                    CorruptReason::Key,
                )),
            },
        }
    }

    /// The receipt tree of the batch at `seq` in `pulse`, if stored (and not
    /// yet past retention).
    pub fn receipts(
        &self,
        pulse: PulseNumber,
        seq: SeqNum,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        self.get(ColumnFamily::Receipts, &keys::receipts_key(pulse, seq))
    }

    /// The stable checkpoint of the last garbage collection.
    pub fn stable_checkpoint(&self) -> Result<Option<StableCheckpoint>, StorageError> {
        let Some(body) = self.get(ColumnFamily::Meta, keys::META_STABLE)? else {
            return Ok(None);
        };
        let parse = |range: std::ops::Range<usize>| body.get(range).and_then(keys::decode_u64);
        match (body.len(), parse(0..8), parse(8..16)) {
            (16, Some(seq), Some(pulse)) => Ok(Some(StableCheckpoint {
                seq: SeqNum(seq),
                pulse: PulseNumber(pulse),
            })),
            _ => Err(record::corrupt(
                ColumnFamily::Meta,
                keys::META_STABLE,
                CorruptReason::Body,
            )),
        }
    }
}

/// Raw keys with their verified bodies.
type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// A range read of one column family.
struct Scan<'a> {
    cf: ColumnFamily,
    start: &'a [u8],
    end: Option<&'a [u8]>,
    reverse: bool,
}

fn check_limit(what: &'static str, len: usize, max: usize) -> Result<(), StorageError> {
    if len > max {
        return Err(StorageError::Limit {
            what,
            len: len as u64,
            max: max as u64,
        });
    }
    Ok(())
}

/// `batch length (u32 LE) ‖ batch ‖ certificate`.
pub(crate) fn encode_log_entry(batch: &[u8], certificate: &[u8]) -> Vec<u8> {
    let len = u32::try_from(batch.len()).expect("a batch is bounded far below 4 GiB");
    let mut body = Vec::with_capacity(4 + batch.len() + certificate.len());
    body.extend_from_slice(&len.to_le_bytes());
    body.extend_from_slice(batch);
    body.extend_from_slice(certificate);
    body
}

fn decode_log_entry(body: &[u8]) -> Option<LogEntry> {
    let len = u32::from_le_bytes(body.get(..4)?.try_into().ok()?) as usize;
    let batch = body.get(4..4usize.checked_add(len)?)?;
    Some(LogEntry {
        batch: batch.to_vec(),
        certificate: body[4 + len..].to_vec(),
    })
}

/// `seq (u64 BE) ‖ chunk count (u32 BE) ‖ state digest ‖ meta`.
pub(crate) fn encode_manifest(manifest: &SnapshotManifest) -> Vec<u8> {
    let mut body = manifest.seq.0.to_be_bytes().to_vec();
    body.extend_from_slice(&manifest.chunk_count.to_be_bytes());
    body.extend_from_slice(manifest.state_digest.as_bytes());
    body.extend_from_slice(&manifest.meta);
    body
}

fn decode_manifest(body: &[u8]) -> Option<SnapshotManifest> {
    Some(SnapshotManifest {
        seq: SeqNum(keys::decode_u64(body.get(..8)?)?),
        chunk_count: u32::from_be_bytes(body.get(8..12)?.try_into().ok()?),
        state_digest: Digest(body.get(12..44)?.try_into().ok()?),
        meta: body[44..].to_vec(),
    })
}

mod gc;
mod recovery;
#[cfg(test)]
mod tests;
