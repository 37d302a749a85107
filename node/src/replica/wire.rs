//! What replicas say to each other on the PBFT protocol: consensus
//! messages plus the node-level traffic the cores leave to the driver
//! (batch signatures for certified replies, payload and committed-batch
//! fetches).

use consensus::{CommittedBatch, WireMessage};
use primitives::{Digest, Request, SeqNum, Signature};
use serde::{Deserialize, Serialize};

/// Payloads asked for or served in one message at most.
pub const PAYLOADS_PER_MESSAGE_MAX: usize = 256;

/// Committed batches served in one message at most.
pub const COMMITTED_PER_MESSAGE_MAX: usize = 64;

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
}

impl PeerMessage {
    /// The lane an inbound message is queued in.
    pub fn lane(&self) -> Lane {
        match self {
            PeerMessage::Consensus(_) | PeerMessage::BatchSignature { .. } => Lane::Consensus,
            PeerMessage::FetchPayloads(_)
            | PeerMessage::Payloads(_)
            | PeerMessage::FetchCommitted { .. }
            | PeerMessage::Committed(_) => Lane::Fetch,
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
