//! A deterministic workload over the whole storage API, for the crash tests
//! and the `storage-crash-writer` binary.
//!
//! The "state machine" is a hash chain: `state(seq) = H(state(seq − 1) ‖
//! batch(seq))`. Every step commits the batch with its certificate, its
//! payload and safety records; every [`SNAPSHOT_EVERY`] seqs it also writes a
//! snapshot, a lockchain root and receipts, then garbage-collects below it.
//! [`Workload::recover`] rebuilds the chain from the store alone, checking
//! every record against what the workload would have written.

use crate::store::{Committed, SnapshotManifest, StableCheckpoint, Store};
use crate::{SafetyKey, StorageError, WriteSet};
use primitives::{Digest, Domain, PulseNumber, SeqNum, ViewNumber};

/// A snapshot (and a pulse) every this many seqs.
pub const SNAPSHOT_EVERY: u64 = 16;
/// Chunks per snapshot.
const SNAPSHOT_CHUNKS: u32 = 3;

/// The workload's position: the last committed seq and the state after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    /// The last seq written.
    pub seq: SeqNum,
    /// The state digest after it.
    pub state: Digest,
}

/// Deterministic bytes of length `len` for `(label, seq)`: digests in
/// counter mode, so the workload needs nothing beyond `primitives`.
fn bytes_for(label: &str, seq: SeqNum, len: usize) -> Vec<u8> {
    let mut seed = label.as_bytes().to_vec();
    seed.extend_from_slice(&seq.0.to_le_bytes());
    let seed = Digest::of(Domain::Test, &seed);
    let mut out = vec![0u8; len];
    for (counter, block) in out.chunks_mut(32).enumerate() {
        let mut input = seed.0.to_vec();
        input.extend_from_slice(&(counter as u64).to_le_bytes());
        block.copy_from_slice(&Digest::of(Domain::Test, &input).0[..block.len()]);
    }
    out
}

/// The batch committed at `seq` (16 B to 4 KiB).
pub fn batch(seq: SeqNum) -> Vec<u8> {
    let len = 16 + (Digest::of(Domain::Test, &seq.0.to_le_bytes()).0[0] as usize) * 16;
    bytes_for("batch", seq, len)
}

/// The commit certificate of `seq`.
pub fn certificate(seq: SeqNum) -> Vec<u8> {
    bytes_for("certificate", seq, 96)
}

/// The payload referenced by `seq`, and its digest.
pub fn payload(seq: SeqNum) -> (Digest, Vec<u8>) {
    let bytes = bytes_for("payload", seq, 256);
    (Digest::of(Domain::Test, &bytes), bytes)
}

/// The state after applying the batch at `seq` to `state`.
pub fn next_state(state: Digest, seq: SeqNum) -> Digest {
    let mut input = state.0.to_vec();
    input.extend_from_slice(&batch(seq));
    Digest::of(Domain::Test, &input)
}

/// The pulse whose last seq is `seq` (a multiple of [`SNAPSHOT_EVERY`]).
pub fn pulse_of(seq: SeqNum) -> PulseNumber {
    PulseNumber(seq.0 / SNAPSHOT_EVERY)
}

/// The lockchain entry of a pulse ending at `seq` with `state`.
pub fn root_entry(seq: SeqNum, state: Digest) -> Vec<u8> {
    let mut entry = b"pulse header + qc: ".to_vec();
    entry.extend_from_slice(&seq.0.to_be_bytes());
    entry.extend_from_slice(&state.0);
    entry
}

fn snapshot_chunk(seq: SeqNum, state: Digest, index: u32) -> Vec<u8> {
    if index == 0 {
        let mut chunk = state.0.to_vec();
        chunk.extend_from_slice(&seq.0.to_be_bytes());
        return chunk;
    }
    bytes_for(&format!("chunk {index}"), seq, 1024)
}

impl Workload {
    /// The state before seq 1.
    pub fn genesis() -> Workload {
        Workload {
            seq: SeqNum(0),
            state: Digest::of(Domain::Test, b"workload genesis"),
        }
    }

    /// Commits the next seq (and at a snapshot seq, garbage-collects after
    /// it). Returns the commit's report; `self` advances only on success.
    pub fn step(&mut self, store: &Store) -> Result<Committed, StorageError> {
        let seq = self.seq.next();
        let state = next_state(self.state, seq);
        let (digest, bytes) = payload(seq);
        let mut set = WriteSet::new();
        set.put_payload(digest, seq, &bytes)
            .put_log(seq, &batch(seq), &certificate(seq))
            .put_safety(SafetyKey::View, seq.0.to_be_bytes())
            .put_safety(SafetyKey::Prepared(seq), certificate(seq))
            .put_safety(SafetyKey::ViewChange(ViewNumber(seq.0)), b"own view change");
        let snapshot = seq.0.is_multiple_of(SNAPSHOT_EVERY);
        if snapshot {
            self.add_snapshot(&mut set, seq, state);
        }
        let committed = store.commit(set)?;
        *self = Workload { seq, state };
        if snapshot {
            store.gc(StableCheckpoint {
                seq,
                pulse: pulse_of(seq),
            })?;
        }
        Ok(committed)
    }

    fn add_snapshot(&self, set: &mut WriteSet, seq: SeqNum, state: Digest) {
        for index in 0..SNAPSHOT_CHUNKS {
            set.put_snapshot_chunk(seq, index, &snapshot_chunk(seq, state, index));
        }
        set.put_snapshot_manifest(&SnapshotManifest {
            seq,
            chunk_count: SNAPSHOT_CHUNKS,
            state_digest: state,
            meta: b"workload".to_vec(),
        })
        .put_root(pulse_of(seq), &root_entry(seq, state))
        .put_receipts(pulse_of(seq), seq, &bytes_for("receipts", seq, 128))
        .delete_view_changes_below(ViewNumber(seq.0));
    }

    /// Rebuilds the workload from `store` and returns every `(seq, state)`
    /// it passed through from the snapshot on, checking each record against
    /// what [`Workload::step`] writes. An `Err` describes the first mismatch.
    pub fn recover(store: &Store) -> Result<Vec<Workload>, String> {
        let recovered = store.recover().map_err(|e| e.to_string())?;
        let mut at = match &recovered.snapshot {
            None => Workload::genesis(),
            Some(snapshot) => {
                let manifest = &snapshot.manifest;
                let (seq, state) = (manifest.seq, manifest.state_digest);
                if snapshot.chunks.first() != Some(&snapshot_chunk(seq, state, 0)) {
                    return Err(format!("snapshot {seq:?}: chunk 0 disagrees with manifest"));
                }
                Workload { seq, state }
            }
        };
        if !recovered.corrupt_log.is_empty() {
            return Err(format!("corrupt log entries {:?}", recovered.corrupt_log));
        }
        let mut history = vec![at];
        for (seq, entry) in &recovered.log {
            if *seq != at.seq.next() {
                return Err(format!("log gap: {seq:?} after {:?}", at.seq));
            }
            if entry.batch != batch(*seq) || entry.certificate != certificate(*seq) {
                return Err(format!("log entry {seq:?} differs from the one written"));
            }
            if store
                .payload(&payload(*seq).0)
                .map_err(|e| e.to_string())?
                .is_none()
            {
                return Err(format!("payload of {seq:?} missing"));
            }
            at = Workload {
                seq: *seq,
                state: next_state(at.state, *seq),
            };
            history.push(at);
        }
        Self::check_safety(&recovered.safety, at.seq)?;
        Ok(history)
    }

    fn check_safety(safety: &[(SafetyKey, Vec<u8>)], last: SeqNum) -> Result<(), String> {
        let view = safety.iter().find(|(key, _)| *key == SafetyKey::View);
        match view {
            _ if last == SeqNum(0) => Ok(()),
            Some((_, value)) if value[..] == last.0.to_be_bytes() => Ok(()),
            other => Err(format!("safety View is {other:?}, last seq {last:?}")),
        }
    }
}
