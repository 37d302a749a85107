//! Everything one pass of the event loop asks to persist.

use crate::keys::{self, ColumnFamily, SafetyKey};
use crate::store::{encode_log_entry, encode_manifest, SnapshotManifest};
use primitives::{Digest, PulseNumber, SeqNum, ViewNumber};

/// One write of a [`WriteSet`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Write {
    /// Put an unsealed `body` at `key`.
    Put {
        cf: ColumnFamily,
        key: Vec<u8>,
        body: Vec<u8>,
    },
    /// Delete `key`.
    Delete { cf: ColumnFamily, key: Vec<u8> },
    /// Delete `[start, end)`.
    DeleteRange {
        cf: ColumnFamily,
        start: Vec<u8>,
        end: Vec<u8>,
    },
    /// Store a payload referenced by `seq` (the store keeps the highest seq
    /// that referenced it, for garbage collection).
    Payload {
        digest: Digest,
        seq: SeqNum,
        bytes: Vec<u8>,
    },
}

/// A group commit: every record the cores asked to persist in one pass,
/// written by [`crate::Store::commit`] as one RocksDB batch with one sync.
/// Either all of it is durable when `commit` returns `Ok`, or none of it is
/// acknowledged.
///
/// Values are the protocol crates' own encodings; the store adds a checksum
/// and never looks inside.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteSet {
    pub(crate) writes: Vec<Write>,
    pub(crate) bytes: usize,
}

impl WriteSet {
    /// An empty set.
    pub fn new() -> WriteSet {
        WriteSet::default()
    }

    /// How many writes it holds.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// The bytes of keys and values it holds (before the envelope).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn put(&mut self, cf: ColumnFamily, key: Vec<u8>, body: Vec<u8>) -> &mut Self {
        self.bytes += key.len() + body.len();
        self.writes.push(Write::Put { cf, key, body });
        self
    }

    fn delete_range(&mut self, cf: ColumnFamily, start: Vec<u8>, end: Vec<u8>) -> &mut Self {
        self.bytes += start.len() + end.len();
        self.writes.push(Write::DeleteRange { cf, start, end });
        self
    }

    /// Stores a piece of consensus safety state.
    pub fn put_safety(&mut self, key: SafetyKey, value: impl Into<Vec<u8>>) -> &mut Self {
        self.put(ColumnFamily::Safety, key.encode(), value.into())
    }

    /// Deletes a piece of consensus safety state.
    pub fn delete_safety(&mut self, key: SafetyKey) -> &mut Self {
        let key = key.encode();
        self.bytes += key.len();
        self.writes.push(Write::Delete {
            cf: ColumnFamily::Safety,
            key,
        });
        self
    }

    /// Deletes this replica's VIEW-CHANGE and NEW-VIEW records of every view
    /// below `view` (once `view` is active they are no longer needed).
    pub fn delete_view_changes_below(&mut self, view: ViewNumber) -> &mut Self {
        for (start, end) in SafetyKey::view_ranges_below(view) {
            self.delete_range(ColumnFamily::Safety, start, end);
        }
        self
    }

    /// Stores the committed batch at `seq` with its commit certificate.
    pub fn put_log(&mut self, seq: SeqNum, batch: &[u8], certificate: &[u8]) -> &mut Self {
        let body = encode_log_entry(batch, certificate);
        self.put(ColumnFamily::Log, keys::log_key(seq).to_vec(), body)
    }

    /// Stores a request payload by digest, referenced by the batch at `seq`
    /// (it is garbage-collected once every seq that referenced it is below
    /// the stable checkpoint).
    pub fn put_payload(&mut self, digest: Digest, seq: SeqNum, bytes: &[u8]) -> &mut Self {
        self.bytes += 32 + 8 + bytes.len();
        self.writes.push(Write::Payload {
            digest,
            seq,
            bytes: bytes.to_vec(),
        });
        self
    }

    /// Stores chunk `index` of the snapshot at `seq`. Chunks may span many
    /// write sets; the snapshot counts only once its manifest is stored.
    pub fn put_snapshot_chunk(&mut self, seq: SeqNum, index: u32, chunk: &[u8]) -> &mut Self {
        let key = keys::snapshot_chunk_key(seq, index);
        self.put(ColumnFamily::Snapshots, key, chunk.to_vec())
    }

    /// Stores a snapshot's manifest. Commit it after (or with) all its
    /// chunks: recovery uses the newest snapshot that has a manifest.
    pub fn put_snapshot_manifest(&mut self, manifest: &SnapshotManifest) -> &mut Self {
        let key = keys::snapshot_manifest_key(manifest.seq);
        self.put(ColumnFamily::Snapshots, key, encode_manifest(manifest))
    }

    /// Stores a lockchain pulse entry (header and quorum certificate) under
    /// `root:{pulse:020}`. Kept forever.
    pub fn put_root(&mut self, pulse: PulseNumber, entry: &[u8]) -> &mut Self {
        self.put(
            ColumnFamily::Lockchain,
            keys::root_key(pulse),
            entry.to_vec(),
        )
    }

    /// Stores the receipt tree of the batch at `seq` in `pulse`, kept for
    /// inclusion proofs under the retention setting.
    pub fn put_receipts(&mut self, pulse: PulseNumber, seq: SeqNum, tree: &[u8]) -> &mut Self {
        let key = keys::receipts_key(pulse, seq).to_vec();
        self.put(ColumnFamily::Receipts, key, tree.to_vec())
    }
}
