//! What a restarting replica loads.

use super::{decode_log_entry, Recovered, Scan, Store};
use crate::error::{CorruptReason, StorageError};
use crate::keys::{self, ColumnFamily, SafetyKey};
use crate::record;
use primitives::SeqNum;

impl Store {
    /// Loads the newest complete snapshot, every log entry after it and the
    /// consensus safety state. The node restores the snapshot, replays the
    /// contiguous log after it (the resulting state digest equals the one
    /// before the crash), restores the consensus core from the safety state
    /// and fetches whatever is missing or in `corrupt_log` from peers.
    ///
    /// A corrupt snapshot or safety record is an error: without them the
    /// replica would be amnesiac, so it must not vote until repaired.
    pub fn recover(&self) -> Result<Recovered, StorageError> {
        let stable = self.stable_checkpoint()?;
        let snapshot = match self.latest_snapshot(None)? {
            Some(manifest) => Some(self.snapshot_chunks(&manifest)?),
            None => None,
        };
        let after = snapshot
            .as_ref()
            .map(|s| s.manifest.seq.0.saturating_add(1));
        let (log, corrupt_log) = self.log_from(SeqNum(after.unwrap_or(0)))?;
        let safety = self.safety_all()?;
        Ok(Recovered {
            stable,
            snapshot,
            log,
            corrupt_log,
            safety,
        })
    }

    /// Every log entry with seq ≥ `from`; corrupt ones are listed apart.
    #[allow(clippy::type_complexity)]
    fn log_from(
        &self,
        from: SeqNum,
    ) -> Result<(Vec<(SeqNum, super::LogEntry)>, Vec<SeqNum>), StorageError> {
        let max = self.config.limits.recovery_log_entries_max;
        let start = keys::log_key(from);
        let mut options = rocksdb::ReadOptions::default();
        options.set_iterate_lower_bound(start.to_vec());
        let mode = rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward);
        let (mut log, mut corrupt) = (Vec::new(), Vec::new());
        for item in self
            .db
            .iterator_cf_opt(self.cf(ColumnFamily::Log), options, mode)
        {
            let (key, value) = item?;
            let seq = keys::decode_u64(&key)
                .map(SeqNum)
                .ok_or_else(|| record::corrupt(ColumnFamily::Log, &key, CorruptReason::Key))?;
            if log.len() + corrupt.len() == max {
                return Err(StorageError::Limit {
                    what: "log entries at recovery",
                    len: max as u64 + 1,
                    max: max as u64,
                });
            }
            let entry = record::open(ColumnFamily::Log, &key, &value)
                .ok()
                .and_then(decode_log_entry);
            match entry {
                Some(entry) => log.push((seq, entry)),
                None => corrupt.push(seq),
            }
        }
        Ok((log, corrupt))
    }

    /// Every safety record, verified.
    fn safety_all(&self) -> Result<Vec<(SafetyKey, Vec<u8>)>, StorageError> {
        let max = self.config.limits.safety_records_max;
        let scan = Scan {
            cf: ColumnFamily::Safety,
            start: &[],
            end: None,
            reverse: false,
        };
        let records = self.scan(scan, max.saturating_add(1))?;
        if records.len() > max {
            return Err(StorageError::Limit {
                what: "safety records",
                len: records.len() as u64,
                max: max as u64,
            });
        }
        records
            .into_iter()
            .map(|(key, body)| match SafetyKey::decode(&key) {
                Some(safety_key) => Ok((safety_key, body)),
                None => Err(record::corrupt(
                    ColumnFamily::Safety,
                    &key,
                    CorruptReason::Key,
                )),
            })
            .collect()
    }
}
