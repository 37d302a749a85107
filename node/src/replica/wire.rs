//! What replicas say to each other on the PBFT protocol: consensus
//! messages plus the node-level traffic the cores leave to the driver
//! (batch signatures for certified replies, payload and committed-batch
//! fetches).

use super::persist::PulseEntry;
use consensus::{CommittedBatch, WireMessage};
use primitives::{Digest, PulseNumber, Request, SeqNum, Signature};
use serde::{Deserialize, Serialize};

/// Payloads asked for or served in one message at most.
pub const PAYLOADS_PER_MESSAGE_MAX: usize = 256;

/// Committed batches served in one message at most.
pub const COMMITTED_PER_MESSAGE_MAX: usize = 64;

/// Pulse entries served in one message at most.
pub const PULSES_PER_MESSAGE_MAX: usize = 64;

/// One frame on `/qlock/pbft/1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMessage {
    /// A consensus message for the PBFT core.
    Consensus(WireMessage),
    /// The sender executed `seq` and signed `(cluster, seq, receipts_root)`
    /// (the `BatchStatement`): one signature per batch, never per op.
    BatchSignature {
        /// The batch.
        seq: SeqNum,
        /// The root of its receipts tree at the sender.
        receipts_root: Digest,
        /// The sender's signature over the statement.
        signature: Signature,
    },
    /// Asks for request payloads by digest (consensus's payload
    /// availability: a backup fetches what a PRE-PREPARE names).
    FetchPayloads(Vec<Digest>),
    /// Payloads served; the receiver verifies every one.
    Payloads(Vec<Request>),
    /// Asks for committed batches `first..=last` (catch-up).
    FetchCommitted {
        /// The first seq.
        first: SeqNum,
        /// The last seq.
        last: SeqNum,
    },
    /// Committed batches served; the consensus core checks their
    /// certificates.
    Committed(Vec<CommittedBatch>),
    /// State transfer: asks for the sender's newest snapshot at or above
    /// `seq` (the asker's executed seq + 1: any newer state helps it).
    FetchSnapshot {
        /// The lowest acceptable checkpoint.
        seq: SeqNum,
    },
    /// A snapshot on offer: its pulse (header, quorum certificate, batch
    /// roots) and its encoded [`qlock::TransferManifest`].
    SnapshotOffer {
        /// The certified pulse the snapshot ends.
        entry: Box<PulseEntry>,
        /// The manifest the chunks are checked against.
        manifest: Vec<u8>,
    },
    /// Asks for chunk `index` of the snapshot at `seq`.
    FetchChunk {
        /// The snapshot.
        seq: SeqNum,
        /// The chunk.
        index: u32,
    },
    /// A chunk served; the receiver checks it against the manifest.
    SnapshotChunk {
        /// The snapshot.
        seq: SeqNum,
        /// The chunk.
        index: u32,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// The sender holds no snapshot at or above `seq` (or not that chunk).
    NoSnapshot {
        /// The seq asked for.
        seq: SeqNum,
    },
    /// Lockchain gap filling: asks for pulses `first..=last`.
    FetchPulses {
        /// The first pulse.
        first: PulseNumber,
        /// The last pulse.
        last: PulseNumber,
    },
    /// Pulse entries served; each is checked (certificate, batch roots,
    /// hash chain) before it is stored.
    Pulses(Vec<PulseEntry>),
}

impl PeerMessage {
    /// The lane an inbound message is queued in.
    pub fn lane(&self) -> Lane {
        match self {
            PeerMessage::Consensus(_) | PeerMessage::BatchSignature { .. } => Lane::Consensus,
            PeerMessage::FetchPayloads(_)
            | PeerMessage::Payloads(_)
            | PeerMessage::FetchCommitted { .. }
            | PeerMessage::Committed(_)
            | PeerMessage::FetchSnapshot { .. }
            | PeerMessage::SnapshotOffer { .. }
            | PeerMessage::FetchChunk { .. }
            | PeerMessage::SnapshotChunk { .. }
            | PeerMessage::NoSnapshot { .. }
            | PeerMessage::FetchPulses { .. }
            | PeerMessage::Pulses(_) => Lane::Fetch,
        }
    }
}

/// The inbound work classes, in the order the loop serves them (Aardvark:
/// a flood of one class must not starve the ones above it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lane {
    /// Consensus messages and batch signatures.
    Consensus,
    /// Payload and committed-batch fetches and their answers.
    Fetch,
    /// Client commands.
    Client,
    /// Gossip (request dissemination).
    Gossip,
}

impl Lane {
    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            Lane::Consensus => "consensus",
            Lane::Fetch => "fetch",
            Lane::Client => "client",
            Lane::Gossip => "gossip",
        }
    }
}
