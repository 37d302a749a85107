//! What replicas sign about executed state, and the receipt of one op.
//!
//! These are shared by `consensus` (which signs checkpoints), `lockchain`
//! (which verifies certificates offline), `qlock` (which produces receipts),
//! the node and the client, so they live here and are encoded one way.

use crate::bytes_serde::Bytes;
use crate::codec;
use crate::digest::Domain;
use crate::hlc::HlcTimestamp;
use crate::ids::{ClusterId, SeqNum};
use crate::keys::{KeyPair, PublicKey, Signature, SignatureError};
use crate::Digest;
use serde::{Deserialize, Serialize};

/// The outcome of one op: a leaf of its batch's receipts tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The request the op came in.
    pub request: Digest,
    /// The op's index in the request.
    pub op_index: u32,
    /// The batch that decided it (for a waiter granted later: the batch
    /// in which the grant happened).
    pub seq: SeqNum,
    /// The batch's effective time.
    pub time: HlcTimestamp,
    /// The result, encoded by the state machine.
    pub result: Bytes,
}

impl Receipt {
    /// The bytes hashed as the receipt's Merkle leaf.
    pub fn leaf_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }
}

/// "Batch `seq` of cluster `cluster` produced receipts with Merkle root
/// `receipts_root`": what a replica signs once per executed batch, and what
/// a reply's certificate is made of (f + 1 signatures, 2f + 1 for `sync`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchStatement {
    /// The cluster.
    pub cluster: ClusterId,
    /// The batch.
    pub seq: SeqNum,
    /// The root of the batch's receipts tree.
    pub receipts_root: Digest,
}

/// "After executing through `seq`, the pulse header of cluster `cluster`
/// has digest `header`": the PBFT CHECKPOINT signature. 2f + 1 of them are
/// the pulse's quorum certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointStatement {
    /// The cluster.
    pub cluster: ClusterId,
    /// The last sequence number the pulse covers.
    pub seq: SeqNum,
    /// The digest of the pulse header (the checkpoint's state digest).
    pub header: Digest,
}

macro_rules! signed_statement {
    ($ty:ty, $domain:expr) => {
        impl $ty {
            /// Signs the statement in its own domain.
            pub fn sign(&self, key: &KeyPair) -> Signature {
                key.sign($domain, &codec::encode(self))
            }

            /// Verifies a signature over the statement.
            pub fn verify(
                &self,
                key: &PublicKey,
                signature: &Signature,
            ) -> Result<(), SignatureError> {
                key.verify($domain, &codec::encode(self), signature)
            }
        }
    };
}

signed_statement!(BatchStatement, Domain::BatchCertificate);
signed_statement!(CheckpointStatement, Domain::Checkpoint);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_signature_does_not_pass_as_a_checkpoint() {
        let key = KeyPair::from_seed(&[4; 32]);
        let batch = BatchStatement {
            cluster: ClusterId(Digest([1; 32])),
            seq: SeqNum(8),
            receipts_root: Digest([2; 32]),
        };
        let checkpoint = CheckpointStatement {
            cluster: batch.cluster,
            seq: batch.seq,
            header: batch.receipts_root,
        };
        let sig = batch.sign(&key);
        assert_eq!(batch.verify(&key.public(), &sig), Ok(()));
        assert_eq!(
            checkpoint.verify(&key.public(), &sig),
            Err(SignatureError::Invalid)
        );
    }
}
