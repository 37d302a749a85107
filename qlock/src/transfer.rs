//! Chunked state transfer (DESIGN.md step 9): a lagging replica rebuilds
//! the state certified at a checkpoint from chunks served by peers, and
//! checks **each chunk against the certified state digest before asking
//! for the next**, so a Byzantine peer serving a bad chunk costs one chunk.
//!
//! How a chunk can be checked on its own: the state digest is the hash of
//! the digests of 16 384 buckets (see `table.rs`), and every entry lives
//! in the bucket its key names. The [`TransferManifest`] lists every
//! bucket digest — the receiver checks they hash to the certified state
//! digest — and splits the buckets into contiguous spans, one per chunk.
//! A chunk holds exactly the entries of its span: loaded into a scratch
//! state machine, its entries must land inside the span only, and the
//! span's bucket digests must equal the manifest's. Nothing from a chunk
//! is kept until it passes. The finished state is rebuilt from the
//! accepted chunks and its digest checked once more.
//!
//! A manifest's spans are chosen by the server (chunks of about
//! `chunk_bytes_max` bytes); the receiver only requires that they cover
//! every bucket once, in order.

use crate::config::Config;
use crate::machine::{SnapshotError, StateMachine};
use crate::table::{root_of, Record, BUCKETS};
use primitives::{codec, CodecError, Digest};
use serde::{Deserialize, Serialize};

/// Bytes of an encoded [`TransferManifest`] at most (16 384 bucket digests
/// and as many spans, with room for the encoding).
pub const MANIFEST_BYTES_MAX: usize = BUCKETS * (32 + 16) + 1024;

/// The buckets `first..end` (one chunk's share of the state).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkSpan {
    /// The first bucket.
    pub first: u32,
    /// One past the last bucket.
    pub end: u32,
}

/// What a receiver needs before the first chunk: every bucket digest (they
/// hash to the state digest) and the chunks' bucket spans.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferManifest {
    /// The digest of every bucket, in bucket order.
    pub bucket_digests: Vec<Digest>,
    /// Each chunk's buckets, in order, covering all of them once.
    pub chunks: Vec<ChunkSpan>,
}

impl TransferManifest {
    /// The state digest the bucket digests hash to.
    pub fn state_digest(&self) -> Digest {
        root_of(&self.bucket_digests)
    }

    /// Encodes with the shared codec.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes with the shared codec and [`MANIFEST_BYTES_MAX`].
    pub fn decode(bytes: &[u8]) -> Result<TransferManifest, CodecError> {
        codec::decode(bytes, MANIFEST_BYTES_MAX)
    }

    /// Checks the shape: one digest per bucket, spans that are non-empty,
    /// contiguous and cover every bucket.
    fn check_shape(&self) -> Result<(), TransferError> {
        if self.bucket_digests.len() != BUCKETS {
            return Err(TransferError::Manifest("not one digest per bucket"));
        }
        if self.chunks.is_empty() || self.chunks.len() > BUCKETS {
            return Err(TransferError::Manifest("chunk count out of range"));
        }
        let mut next = 0u32;
        for span in &self.chunks {
            if span.first != next || span.end <= span.first {
                return Err(TransferError::Manifest("spans not contiguous"));
            }
            next = span.end;
        }
        if next as usize != BUCKETS {
            return Err(TransferError::Manifest("spans do not cover every bucket"));
        }
        Ok(())
    }
}

/// A state cut into verifiable chunks, as a server keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferSnapshot {
    /// The manifest.
    pub manifest: TransferManifest,
    /// The chunks: each the codec encoding of its span's records. The same
    /// format [`StateMachine::restore`] reads.
    pub chunks: Vec<Vec<u8>>,
}

/// Why a transfer step failed. A manifest or chunk error is the serving
/// peer's fault: ask another peer for the same item.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The manifest is malformed.
    #[error("bad manifest: {0}")]
    Manifest(&'static str),
    /// The manifest's bucket digests do not hash to the certified digest.
    #[error("the manifest does not match the certified state digest")]
    ManifestDigest,
    /// A chunk other than the next one was offered.
    #[error("chunk {got} offered, chunk {expected} expected")]
    OutOfOrder {
        /// The chunk wanted next.
        expected: u32,
        /// The chunk offered.
        got: u32,
    },
    /// The chunk does not decode.
    #[error("chunk {0} does not decode")]
    Undecodable(u32),
    /// A record of the chunk names no table, does not decode or repeats a
    /// key.
    #[error("chunk {0} holds a bad record")]
    BadRecord(u32),
    /// A record of the chunk lives outside the chunk's span.
    #[error("chunk {0} holds a record outside its buckets")]
    OutsideSpan(u32),
    /// The chunk's buckets do not hash to the manifest's digests.
    #[error("chunk {0} does not match the manifest")]
    ChunkDigest(u32),
    /// `finish` before every chunk was accepted.
    #[error("{0} chunks still missing")]
    Incomplete(u32),
    /// The accepted chunks do not rebuild a state machine.
    #[error("restore: {0}")]
    Restore(SnapshotError),
    /// The rebuilt state's digest differs from the certified one (cannot
    /// happen if every chunk passed; checked anyway).
    #[error("the rebuilt state does not match the certified digest")]
    FinalDigest,
}

impl StateMachine {
    /// The state cut into chunks of about `chunk_bytes_max` bytes along
    /// bucket boundaries (a bucket larger than the bound gets a chunk of its
    /// own), with the manifest that lets a receiver check each chunk.
    pub fn transfer_snapshot(&mut self, chunk_bytes_max: usize) -> TransferSnapshot {
        self.flush_digest();
        let mut by_bucket: Vec<Vec<Record>> = vec![Vec::new(); BUCKETS];
        for record in self.records() {
            let bucket = record.bucket();
            by_bucket[bucket].push(record);
        }
        let mut spans = Vec::new();
        let mut chunks = Vec::new();
        let mut current: Vec<Record> = Vec::new();
        let mut size = 0usize;
        let mut first = 0usize;
        for (bucket, records) in by_bucket.into_iter().enumerate() {
            let len: usize = records
                .iter()
                .map(|r| r.key.0.len() + r.value.0.len() + 16)
                .sum();
            if !current.is_empty() && size + len > chunk_bytes_max {
                spans.push(ChunkSpan {
                    first: first as u32,
                    end: bucket as u32,
                });
                chunks.push(codec::encode(&current));
                current.clear();
                size = 0;
                first = bucket;
            }
            size += len;
            current.extend(records);
        }
        spans.push(ChunkSpan {
            first: first as u32,
            end: BUCKETS as u32,
        });
        chunks.push(codec::encode(&current));
        let snapshot = TransferSnapshot {
            manifest: TransferManifest {
                bucket_digests: self.dt.bucket_digests(),
                chunks: spans,
            },
            chunks,
        };
        assert_eq!(snapshot.manifest.state_digest(), self.state_digest());
        snapshot
    }
}

/// A transfer in progress at the receiver: accepts chunks in order, each
/// checked before it is kept.
#[derive(Debug)]
pub struct Installer {
    manifest: TransferManifest,
    certified: Digest,
    accepted: Vec<Vec<u8>>,
}

impl Installer {
    /// Starts a transfer of the state certified as `certified` from
    /// `manifest` (as served by some peer).
    pub fn new(manifest: TransferManifest, certified: Digest) -> Result<Installer, TransferError> {
        manifest.check_shape()?;
        if manifest.state_digest() != certified {
            return Err(TransferError::ManifestDigest);
        }
        Ok(Installer {
            manifest,
            certified,
            accepted: Vec::new(),
        })
    }

    /// How many chunks the state has.
    pub fn chunk_count(&self) -> u32 {
        self.manifest.chunks.len() as u32
    }

    /// The chunk to ask for next; `None` once all are accepted.
    pub fn next_chunk(&self) -> Option<u32> {
        let next = self.accepted.len() as u32;
        (next < self.chunk_count()).then_some(next)
    }

    /// Checks chunk `index` and keeps it if it matches the manifest. On an
    /// error nothing changes: ask another peer for the same chunk.
    pub fn accept(&mut self, index: u32, bytes: Vec<u8>) -> Result<(), TransferError> {
        let expected = self.accepted.len() as u32;
        if index != expected || index >= self.chunk_count() {
            return Err(TransferError::OutOfOrder {
                expected,
                got: index,
            });
        }
        let span = self.manifest.chunks[index as usize];
        let records: Vec<Record> = codec::decode(&bytes, codec::FRAME_BYTES_MAX)
            .map_err(|_| TransferError::Undecodable(index))?;
        let range = span.first as usize..span.end as usize;
        if records.iter().any(|r| !range.contains(&r.bucket())) {
            return Err(TransferError::OutsideSpan(index));
        }
        // A scratch machine hashes the records exactly as the tables will
        // (re-encoded values), so a non-canonical encoding cannot pass.
        let mut scratch = StateMachine::empty(Config::default());
        for record in &records {
            if !scratch.load(record) {
                return Err(TransferError::BadRecord(index));
            }
        }
        scratch.flush_tables();
        if scratch.dt.dirty().iter().any(|b| !range.contains(b)) {
            return Err(TransferError::OutsideSpan(index));
        }
        let digests = scratch.dt.bucket_digests();
        if digests[range.clone()] != self.manifest.bucket_digests[range] {
            return Err(TransferError::ChunkDigest(index));
        }
        self.accepted.push(bytes);
        Ok(())
    }

    /// The chunks accepted so far, in order (to store the snapshot once the
    /// transfer completes).
    pub fn chunks(&self) -> &[Vec<u8>] {
        &self.accepted
    }

    /// The manifest the transfer follows.
    pub fn manifest(&self) -> &TransferManifest {
        &self.manifest
    }

    /// The state, once every chunk is accepted.
    pub fn finish(self) -> Result<StateMachine, TransferError> {
        let missing = self.chunk_count() - self.accepted.len() as u32;
        if missing > 0 {
            return Err(TransferError::Incomplete(missing));
        }
        let mut machine = StateMachine::restore(&self.accepted).map_err(TransferError::Restore)?;
        if machine.state_digest() != self.certified {
            return Err(TransferError::FinalDigest);
        }
        Ok(machine)
    }
}
