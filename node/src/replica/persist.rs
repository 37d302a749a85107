//! The runtime's records in RocksDB (`storage::Store`): how consensus
//! persist records, executed batches, pulses and snapshots are encoded,
//! the storage worker that commits them off the event loop, and recovery.

use consensus::{CommittedBatch, Message, PersistRecord};
use lockchain::{PulseCertificate, PulseHeader};
use primitives::{codec, Digest, HlcTimestamp};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use storage::{SafetyKey, StableCheckpoint, StorageError, Store, WriteSet};
use tokio::sync::mpsc;

/// Where a consensus persist record is kept: one slot per seq (accepted,
/// prepared) or view (view change, new view); a later record of the same
/// slot replaces the earlier one.
pub fn safety_key(record: &PersistRecord) -> Option<SafetyKey> {
    match record {
        PersistRecord::PrePrepare(signed) => match &signed.message {
            Message::PrePrepare(pp) => Some(SafetyKey::Accepted(pp.seq)),
            _ => None,
        },
        PersistRecord::Prepared { seq, .. } => Some(SafetyKey::Prepared(*seq)),
        PersistRecord::ViewChange(signed) => match &signed.message {
            Message::ViewChange(vc) => Some(SafetyKey::ViewChange(vc.view)),
            _ => None,
        },
        PersistRecord::NewView(signed) => match &signed.message {
            Message::NewView(nv) => Some(SafetyKey::NewView(nv.view)),
            _ => None,
        },
    }
}

/// The `batch` part of a log entry: what execution needs besides the
/// payloads (the certificate is stored beside it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedBatch {
    /// The effective time it executed at.
    pub time: HlcTimestamp,
    /// Its requests, in order.
    pub digests: Vec<Digest>,
}

/// What the lockchain column stores per pulse: the certified header and
/// the receipts roots of its batches (for `ReceiptPulseProof`s).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PulseEntry {
    /// The header with its quorum certificate.
    pub certificate: PulseCertificate,
    /// The receipts root of each batch `first_seq..=last_seq`.
    pub receipts_roots: Vec<Digest>,
}

/// What a snapshot's manifest carries besides the state: the pulse chain's
/// position, so execution after a restore builds the same headers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The header of the pulse ending at the snapshot's seq.
    pub header: PulseHeader,
    /// The snapshot's [`qlock::TransferManifest`] (encoded): what a peer
    /// needs to check each chunk it fetches from us.
    pub transfer_manifest: Vec<u8>,
}

/// Decodes a stored log entry.
pub fn decode_log(
    batch: &[u8],
    certificate: &[u8],
) -> Result<(LoggedBatch, CommittedBatch), codec::CodecError> {
    Ok((
        codec::decode(batch, codec::FRAME_BYTES_MAX)?,
        codec::decode(certificate, codec::FRAME_BYTES_MAX)?,
    ))
}

/// A job for the storage worker.
#[derive(Debug)]
pub struct Job {
    /// Records to commit in one synced batch.
    pub set: WriteSet,
    /// The highest consensus persist id in `set`, acknowledged once durable.
    pub persist_id: Option<consensus::PersistId>,
    /// Garbage-collect below this stable checkpoint after the commit.
    pub gc: Option<StableCheckpoint>,
}

/// What the storage worker reports.
#[derive(Debug)]
pub struct Done {
    /// The job's persist id.
    pub persist_id: Option<consensus::PersistId>,
    /// The commit's sync latency, or why it failed.
    pub result: Result<Duration, StorageError>,
}

/// Runs jobs one at a time on a blocking thread until `jobs` closes.
pub fn spawn_worker(
    store: Arc<Store>,
    mut jobs: mpsc::Receiver<Job>,
    done: mpsc::Sender<Done>,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        while let Some(job) = jobs.blocking_recv() {
            let mut result = store.commit(job.set).map(|c| c.sync_latency);
            if let (Ok(_), Some(stable)) = (&result, job.gc) {
                if let Err(e) = store.gc(stable) {
                    result = Err(e);
                }
            }
            let report = Done {
                persist_id: job.persist_id,
                result,
            };
            if done.blocking_send(report).is_err() {
                return;
            }
        }
    })
}
