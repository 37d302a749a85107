//! Ordered tables that keep the state digest up to date, journal changes
//! for atomic rollback, and dump themselves for snapshots.
//!
//! **The incremental digest.** Every table entry `(tag, key, value)` is
//! hashed once per state digest (a replica asks at checkpoints) whose
//! interval wrote it, however often it was written: a table remembers the
//! keys written since the last flush and hashes them at the flush,
//! `k = H(tag ‖ key)`, `v = H(value)`. Entries are spread over [`BUCKETS`] buckets by the first bytes of `k`; a
//! bucket's digest is the hash of its entries' `(k, v)` pairs in `k` order;
//! the state digest is the hash of all bucket digests in bucket order. A
//! write marks its bucket dirty, each dirty bucket is re-hashed once per
//! flush, and a state digest costs one hash over `BUCKETS × 32` bytes,
//! whatever the state's size.
//!
//! Why it is sound: every level is a collision-resistant hash over an
//! unambiguous (length-prefixed, canonically ordered) encoding of the level
//! below, so two states with equal digests have equal entries, barring a
//! blake3 collision. We deliberately do *not* use an XOR or sum of entry
//! hashes: those are linear, and whoever can choose entries (a Byzantine
//! client, or a replica forging a snapshot) can solve for a colliding set
//! by Gaussian elimination (Wagner's generalized birthday attack).

use primitives::{codec, Bytes, Digest, Domain};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeBounds;

/// Number of digest buckets: 16 384 × 32 bytes = 512 KiB hashed per
/// `state_digest` (a few hundred µs); at a million entries a bucket holds
/// ~60 pairs (4 KiB re-hashed per dirty bucket).
pub const BUCKETS: usize = 16_384;

/// The bucketed digest of all entries of all tables.
#[derive(Clone, Debug)]
pub(crate) struct DigestTree {
    /// Per bucket: hash of the tagged key → hash of the value bytes.
    buckets: Vec<BTreeMap<Digest, Digest>>,
    /// The cached digest of each bucket, valid unless the bucket is dirty.
    bucket_digests: Vec<Digest>,
    /// Buckets written since the last flush.
    dirty: BTreeSet<usize>,
}

impl DigestTree {
    pub(crate) fn new() -> Self {
        let empty = bucket_digest(&BTreeMap::new());
        DigestTree {
            buckets: vec![BTreeMap::new(); BUCKETS],
            bucket_digests: vec![empty; BUCKETS],
            dirty: BTreeSet::new(),
        }
    }

    fn set(&mut self, key: Digest, value_hash: Option<Digest>) {
        let bucket = bucket_of(&key);
        let changed = match value_hash {
            Some(hash) => self.buckets[bucket].insert(key, hash) != Some(hash),
            // An entry created and removed between two flushes was never
            // in the tree: its bucket is unchanged.
            None => self.buckets[bucket].remove(&key).is_some(),
        };
        if changed {
            self.dirty.insert(bucket);
        }
    }

    /// Re-hashes the buckets written since the last flush.
    pub(crate) fn flush(&mut self) {
        for bucket in std::mem::take(&mut self.dirty) {
            self.bucket_digests[bucket] = bucket_digest(&self.buckets[bucket]);
        }
    }

    /// The digest over all buckets (dirty ones are hashed on the fly).
    pub(crate) fn root(&self) -> Digest {
        if self.dirty.is_empty() {
            return root_of(&self.bucket_digests);
        }
        root_of(&self.bucket_digests())
    }

    /// Every bucket's digest (dirty ones hashed on the fly).
    pub(crate) fn bucket_digests(&self) -> Vec<Digest> {
        let mut digests = self.bucket_digests.clone();
        for &i in &self.dirty {
            digests[i] = bucket_digest(&self.buckets[i]);
        }
        digests
    }

    /// The buckets written since the last flush.
    pub(crate) fn dirty(&self) -> &BTreeSet<usize> {
        &self.dirty
    }
}

/// The bucket of the entry named `key` (`H(tag ‖ key)`).
pub(crate) fn bucket_of(key: &Digest) -> usize {
    usize::from(u16::from_le_bytes([key.0[0], key.0[1]])) % BUCKETS
}

/// The state digest over bucket digests, in bucket order.
pub(crate) fn root_of(bucket_digests: &[Digest]) -> Digest {
    // One contiguous input: blake3 hashes it with SIMD, many times faster
    // than 16 384 small updates.
    let mut bytes = Vec::with_capacity(12 + bucket_digests.len() * 32);
    bytes.extend_from_slice(b"root");
    bytes.extend_from_slice(&(bucket_digests.len() as u64).to_le_bytes());
    for digest in bucket_digests {
        bytes.extend_from_slice(digest.as_bytes());
    }
    Digest::of(Domain::StateDigest, &bytes)
}

fn bucket_digest(entries: &BTreeMap<Digest, Digest>) -> Digest {
    // One contiguous input: per-call overhead dominates blake3 on inputs
    // this small.
    let mut bytes = Vec::with_capacity(16 + 64 * entries.len());
    bytes.extend_from_slice(b"bucket");
    bytes.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (key, value) in entries {
        bytes.extend_from_slice(key.as_bytes());
        bytes.extend_from_slice(value.as_bytes());
    }
    Digest::of(Domain::StateDigest, &bytes)
}

/// One entry of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) tag: u8,
    pub(crate) key: Bytes,
    pub(crate) value: Bytes,
}

impl Record {
    /// The digest-tree bucket its entry lives in (as [`Table`] names it).
    pub(crate) fn bucket(&self) -> usize {
        let mut bytes = Vec::with_capacity(1 + self.key.0.len());
        bytes.push(self.tag);
        bytes.extend_from_slice(&self.key.0);
        bucket_of(&Digest::of(Domain::StateDigest, &bytes))
    }
}

/// An ordered map whose writes go through the digest tree and, while a
/// transaction is open, into an undo journal.
#[derive(Clone, Debug)]
pub(crate) struct Table<K, V> {
    tag: u8,
    map: BTreeMap<K, V>,
    /// `Some` while an atomic request runs: the previous value of every
    /// key written, in write order.
    journal: Option<Vec<(K, Option<V>)>>,
    /// Keys written since the last [`Table::flush_into`]: a batch writes
    /// the client record, the counters and a lock several times each, and
    /// each is hashed once. Handed over at each state digest, or at the end
    /// of a batch once all tables hold more than
    /// [`crate::machine::DIRTY_KEYS_MAX`].
    dirty: BTreeSet<K>,
}

impl<K, V> Table<K, V>
where
    K: Ord + Clone + Serialize + DeserializeOwned,
    V: Clone + Serialize + DeserializeOwned,
{
    pub(crate) fn new(tag: u8) -> Self {
        Table {
            tag,
            map: BTreeMap::new(),
            journal: None,
            dirty: BTreeSet::new(),
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    pub(crate) fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn first(&self) -> Option<(&K, &V)> {
        self.map.first_key_value()
    }

    pub(crate) fn range<R: RangeBounds<K>>(&self, range: R) -> impl Iterator<Item = (&K, &V)> {
        self.map.range(range)
    }

    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        let old = self.map.insert(key.clone(), value);
        if let Some(journal) = &mut self.journal {
            journal.push((key.clone(), old.clone()));
        }
        self.dirty.insert(key);
        old
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let old = self.map.remove(key)?;
        self.dirty.insert(key.clone());
        if let Some(journal) = &mut self.journal {
            journal.push((key.clone(), Some(old.clone())));
        }
        Some(old)
    }

    /// Reads, changes and writes back one entry that must exist.
    pub(crate) fn update(&mut self, key: &K, f: impl FnOnce(&mut V)) {
        let mut value = self.map.get(key).expect("updating a missing entry").clone();
        f(&mut value);
        self.insert(key.clone(), value);
    }

    /// Brings the digest tree's entries of the keys written since the last
    /// flush up to date (the tree re-hashes their buckets at its own flush).
    pub(crate) fn flush_into(&mut self, dt: &mut DigestTree) {
        let mut bytes = Vec::new();
        for key in std::mem::take(&mut self.dirty) {
            let value_hash = self.map.get(&key).map(|value| {
                bytes.clear();
                codec::encode_into(value, &mut bytes);
                Digest::of(Domain::StateDigest, &bytes)
            });
            dt.set(self.key_hash(&key, &mut bytes), value_hash);
        }
    }

    /// Keys written since the last [`Table::flush_into`].
    pub(crate) fn dirty_len(&self) -> usize {
        self.dirty.len()
    }

    /// `H(tag ‖ key)`: the entry's name in the digest tree.
    fn key_hash(&self, key: &K, scratch: &mut Vec<u8>) -> Digest {
        scratch.clear();
        scratch.push(self.tag);
        codec::encode_into(key, scratch);
        Digest::of(Domain::StateDigest, scratch)
    }

    pub(crate) fn begin(&mut self) {
        assert!(self.journal.is_none(), "nested transaction");
        self.journal = Some(Vec::new());
    }

    pub(crate) fn commit(&mut self) {
        self.journal.take().expect("commit without begin");
    }

    pub(crate) fn rollback(&mut self) {
        let journal = self.journal.take().expect("rollback without begin");
        for (key, old) in journal.into_iter().rev() {
            match old {
                Some(value) => self.insert(key, value),
                None => self.remove(&key),
            };
        }
    }

    pub(crate) fn dump(&self, out: &mut Vec<Record>) {
        for (key, value) in &self.map {
            out.push(Record {
                tag: self.tag,
                key: Bytes(codec::encode(key)),
                value: Bytes(codec::encode(value)),
            });
        }
    }

    /// Loads one snapshot record; false if it does not decode or repeats a
    /// key.
    pub(crate) fn load(&mut self, record: &Record) -> bool {
        let (Ok(key), Ok(value)) = (
            codec::decode::<K>(&record.key.0, codec::FRAME_BYTES_MAX),
            codec::decode::<V>(&record.value.0, codec::FRAME_BYTES_MAX),
        ) else {
            return false;
        };
        if self.map.contains_key(&key) {
            return false;
        }
        self.insert(key, value);
        true
    }
}
