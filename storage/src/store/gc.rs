//! Garbage collection below the stable checkpoint.

use super::{GcReport, Scan, StableCheckpoint, Store};
use crate::error::StorageError;
use crate::keys::{self, ColumnFamily, SafetyKey};
use crate::record;
use primitives::{PulseNumber, SeqNum};
use rocksdb::WriteBatch;

impl Store {
    /// Removes what the stable checkpoint `stable` makes unnecessary, in one
    /// synced batch:
    /// - accepted PRE-PREPAREs and prepared certificates with seq ≤ `stable.seq`;
    /// - log entries, payloads (whose every referencing seq is at or below
    ///   the cut) and older snapshots, where the cut is the newest complete
    ///   snapshot at or below `stable.seq` — never more, so recovery always
    ///   has a snapshot and the whole log after it;
    /// - receipt trees older than the retention window.
    ///
    /// Pulse entries are kept forever. A `stable` older than the recorded
    /// one changes nothing.
    pub fn gc(&self, stable: StableCheckpoint) -> Result<GcReport, StorageError> {
        let _writer = self.lock_writer()?;
        if self.stable_checkpoint()?.is_some_and(|old| old > stable) {
            return Ok(GcReport::default());
        }
        let mut batch = WriteBatch::default();
        for (start, end) in SafetyKey::seq_ranges_through(stable.seq) {
            batch.delete_range_cf(self.cf(ColumnFamily::Safety), start, end);
        }
        let snapshot_seq = self.latest_snapshot(Some(stable.seq))?.map(|m| m.seq);
        let mut payloads_deleted = 0;
        if let Some(cut) = snapshot_seq {
            self.gc_log_and_snapshots(&mut batch, cut);
            payloads_deleted = self.gc_payloads(&mut batch, cut)?;
        }
        let receipts_below = self.gc_receipts(&mut batch, stable.pulse);
        let mut body = stable.seq.0.to_be_bytes().to_vec();
        body.extend_from_slice(&stable.pulse.0.to_be_bytes());
        let sealed = record::seal(ColumnFamily::Meta, keys::META_STABLE, &body);
        batch.put_cf(self.cf(ColumnFamily::Meta), keys::META_STABLE, sealed);
        let sync_latency = self.write(batch)?;
        Ok(GcReport {
            snapshot_seq,
            payloads_deleted,
            receipts_below,
            sync_latency,
        })
    }

    fn gc_log_and_snapshots(&self, batch: &mut WriteBatch, cut: SeqNum) {
        batch.delete_range_cf(self.cf(ColumnFamily::Log), vec![], keys::seq_end(cut));
        for (start, end) in keys::snapshot_ranges_below(cut) {
            batch.delete_range_cf(self.cf(ColumnFamily::Snapshots), start, end);
        }
    }

    /// Deletes the payload references with seq ≤ `cut`, and each referenced
    /// payload unless a later seq referenced it too. Examines at most
    /// `gc_payload_refs_max` references; the rest wait for the next pass.
    fn gc_payloads(&self, batch: &mut WriteBatch, cut: SeqNum) -> Result<usize, StorageError> {
        let end = keys::seq_end(cut);
        let scan = Scan {
            cf: ColumnFamily::PayloadRefs,
            start: &[],
            end: Some(end.as_slice()),
            reverse: false,
        };
        let refs = self.scan_keys(scan, self.config.limits.gc_payload_refs_max)?;
        let mut deleted = 0;
        for key in refs {
            batch.delete_cf(self.cf(ColumnFamily::PayloadRefs), &key);
            let Some((_, digest)) = keys::decode_payload_ref_key(&key) else {
                continue;
            };
            let keep = match self.payload_record(&digest) {
                Ok(Some((seq, _))) => seq > cut,
                Ok(None) => false,
                // Unusable anyway; a later seq that needs it fetches it again.
                Err(StorageError::Corrupt { .. }) => false,
                Err(e) => return Err(e),
            };
            if !keep {
                batch.delete_cf(self.cf(ColumnFamily::Payloads), keys::payload_key(&digest));
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    fn gc_receipts(&self, batch: &mut WriteBatch, stable: PulseNumber) -> Option<PulseNumber> {
        let retention = self.config.receipts_retention_pulses?;
        let below = PulseNumber(stable.0.saturating_add(1).saturating_sub(retention));
        let end = keys::receipts_key(below, SeqNum(0)).to_vec();
        batch.delete_range_cf(self.cf(ColumnFamily::Receipts), vec![], end);
        Some(below)
    }

    /// Up to `max` keys in a range, values not read or verified (a corrupt
    /// reference is deleted like an intact one).
    fn scan_keys(&self, scan: Scan<'_>, max: usize) -> Result<Vec<Vec<u8>>, StorageError> {
        let mut options = rocksdb::ReadOptions::default();
        options.set_iterate_lower_bound(scan.start.to_vec());
        if let Some(end) = scan.end {
            options.set_iterate_upper_bound(end.to_vec());
        }
        let mode = rocksdb::IteratorMode::Start;
        let mut keys = Vec::new();
        for item in self.db.iterator_cf_opt(self.cf(scan.cf), options, mode) {
            if keys.len() == max {
                break;
            }
            keys.push(item?.0.to_vec());
        }
        Ok(keys)
    }
}
