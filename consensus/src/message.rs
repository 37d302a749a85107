//! PBFT messages (Castro & Liskov §4.2–4.3). They carry digests, never
//! payloads (DESIGN.md step 3), and every one but STATUS is signed by its
//! sender in its own [`Domain`], over `(cluster id, message)`.

use primitives::{
    codec, CheckpointStatement, ClusterId, Digest, Domain, HlcTimestamp, KeyPair, Membership,
    PublicKey, ReplicaId, SeqNum, Signature, ViewNumber,
};
use serde::{Deserialize, Serialize};

/// An ordered batch of request digests with the primary's clock reading.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The requests, by digest, in execution order.
    pub digests: Vec<Digest>,
    /// The primary's HLC reading when it proposed the batch.
    pub batch_time: HlcTimestamp,
}

impl Batch {
    /// The batch digest PREPARE and COMMIT vote on.
    pub fn digest(&self) -> Digest {
        Digest::of(Domain::Batch, &codec::encode(self))
    }
}

/// `PRE-PREPARE(v, n, batch)`: the primary's proposal (§4.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrePrepare {
    /// The view.
    pub view: ViewNumber,
    /// The sequence number assigned.
    pub seq: SeqNum,
    /// The batch.
    pub batch: Batch,
}

/// `PREPARE(v, n, d, i)` or `COMMIT(v, n, d, i)` (§4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The view.
    pub view: ViewNumber,
    /// The sequence number.
    pub seq: SeqNum,
    /// The batch digest voted for.
    pub batch: Digest,
    /// The voter.
    pub replica: ReplicaId,
}

/// `CHECKPOINT(n, d, i)` (§4.3): `d` is the application's digest after
/// executing through `n` (the pulse header's digest). Its signature is a
/// [`CheckpointStatement`] signature, so 2f+1 of them are literally the
/// lockchain's pulse quorum certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last sequence number covered.
    pub seq: SeqNum,
    /// The application's digest at `seq`.
    pub app_digest: Digest,
    /// The signer.
    pub replica: ReplicaId,
}

/// A prepared certificate (§4.4, the P set): a PRE-PREPARE and a quorum
/// minus one of matching PREPAREs from backups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedProof {
    /// The signed PRE-PREPARE.
    pub pre_prepare: SignedMessage,
    /// The matching signed PREPAREs.
    pub prepares: Vec<SignedMessage>,
}

/// `VIEW-CHANGE(v+1, n, C, P, i)` (§4.4): the sender's stable checkpoint
/// with its certificate and its prepared certificates above it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewChange {
    /// The view the sender moves to.
    pub view: ViewNumber,
    /// The sender's stable checkpoint.
    pub stable: SeqNum,
    /// A quorum of CHECKPOINTs proving `stable` (empty for seq 0).
    pub stable_certificate: Vec<SignedMessage>,
    /// Prepared certificates for seqs above `stable`.
    pub prepared: Vec<PreparedProof>,
    /// The sender.
    pub replica: ReplicaId,
}

/// `NEW-VIEW(v, V, O)` (§4.4): the new primary's proof that a quorum moved
/// to `view`, and the PRE-PREPAREs it re-proposes (computed from `V`, so
/// every backup can check them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewView {
    /// The new view.
    pub view: ViewNumber,
    /// A quorum of signed VIEW-CHANGEs for `view`.
    pub view_changes: Vec<SignedMessage>,
    /// The re-proposed and null PRE-PREPAREs, signed by the new primary.
    pub pre_prepares: Vec<SignedMessage>,
}

/// The signed PBFT messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// The primary's proposal.
    PrePrepare(PrePrepare),
    /// A backup accepted a proposal.
    Prepare(Vote),
    /// A replica holds a prepared certificate.
    Commit(Vote),
    /// A replica's state digest at a checkpoint.
    Checkpoint(Checkpoint),
    /// A replica suspects the primary.
    ViewChange(ViewChange),
    /// The new primary starts its view.
    NewView(NewView),
}

/// A message with its sender's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedMessage {
    /// The message.
    pub message: Message,
    /// The sender's signature (see [`Message::signing_bytes`]).
    pub signature: Signature,
}

/// A replica's progress report, broadcast every status interval. It only
/// triggers retransmission of self-authenticating messages and catch-up
/// fetches, so it is authenticated by the transport alone (see the report:
/// a `Domain::Status` would let it be signed too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The sender's view.
    pub view: ViewNumber,
    /// The last sequence number the sender executed.
    pub last_executed: SeqNum,
    /// The sender's stable checkpoint (low watermark).
    pub stable: SeqNum,
    /// Whether the sender is in `view` (false while it changes views).
    pub view_active: bool,
}

/// What travels between replicas' consensus cores.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireMessage {
    /// A signed PBFT message.
    Signed(SignedMessage),
    /// A progress report.
    Status(Status),
}

impl WireMessage {
    /// Decodes a message of at most `max_len` bytes
    /// ([`crate::Config::message_bytes_max`]).
    pub fn decode(bytes: &[u8], max_len: usize) -> Result<WireMessage, primitives::CodecError> {
        codec::decode(bytes, max_len)
    }
}

/// A committed batch with its proof: the primary's PRE-PREPARE and a quorum
/// of matching COMMITs. What the driver stores per seq, and what a lagging
/// replica fetches to catch up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedBatch {
    /// The signed PRE-PREPARE.
    pub pre_prepare: SignedMessage,
    /// At least a quorum of signed COMMITs from distinct replicas.
    pub commits: Vec<SignedMessage>,
}

impl Message {
    /// The signing domain of this message type.
    pub fn domain(&self) -> Domain {
        match self {
            Message::PrePrepare(_) => Domain::PrePrepare,
            Message::Prepare(_) => Domain::Prepare,
            Message::Commit(_) => Domain::Commit,
            Message::Checkpoint(_) => Domain::Checkpoint,
            Message::ViewChange(_) => Domain::ViewChange,
            Message::NewView(_) => Domain::NewView,
        }
    }

    /// The claimed sender: the primary of the view for a PRE-PREPARE.
    pub fn sender(&self, membership: &Membership) -> ReplicaId {
        match self {
            Message::PrePrepare(pp) => membership.primary(pp.view),
            Message::Prepare(v) | Message::Commit(v) => v.replica,
            Message::Checkpoint(c) => c.replica,
            Message::ViewChange(vc) => vc.replica,
            Message::NewView(nv) => membership.primary(nv.view),
        }
    }

    /// The bytes signed: the cluster id and the message, or the
    /// [`CheckpointStatement`] for a CHECKPOINT.
    pub fn signing_bytes(&self, cluster: ClusterId) -> Vec<u8> {
        match self {
            Message::Checkpoint(c) => codec::encode(&checkpoint_statement(cluster, c)),
            Message::PrePrepare(pp) => codec::encode(&(cluster, pp)),
            Message::Prepare(v) | Message::Commit(v) => codec::encode(&(cluster, v)),
            Message::ViewChange(vc) => codec::encode(&(cluster, vc)),
            Message::NewView(nv) => codec::encode(&(cluster, nv)),
        }
    }

    /// Signs the message with `key`.
    pub fn sign(self, cluster: ClusterId, key: &KeyPair) -> SignedMessage {
        let signature = match &self {
            Message::Checkpoint(c) => checkpoint_statement(cluster, c).sign(key),
            other => key.sign(other.domain(), &other.signing_bytes(cluster)),
        };
        SignedMessage {
            message: self,
            signature,
        }
    }
}

impl SignedMessage {
    /// Checks the signature against `key`.
    pub fn verify(&self, cluster: ClusterId, key: &PublicKey) -> bool {
        key.verify(
            self.message.domain(),
            &self.message.signing_bytes(cluster),
            &self.signature,
        )
        .is_ok()
    }
}

/// The lockchain statement a CHECKPOINT signs.
pub fn checkpoint_statement(cluster: ClusterId, c: &Checkpoint) -> CheckpointStatement {
    CheckpointStatement {
        cluster,
        seq: c.seq,
        header: c.app_digest,
    }
}
