//! Certificates: signatures of distinct configured replicas over one
//! statement.
//!
//! The signed statements are [`primitives::BatchStatement`] (one per
//! executed batch) and [`primitives::CheckpointStatement`] (the PBFT
//! CHECKPOINT, over a pulse header's digest). This module does not define a
//! signing format of its own: a signature in a certificate is exactly what
//! `statement.sign(key)` returns.

use crate::checked::CheckedSignatures;
use crate::error::VerifyError;
use crate::pulse::PulseHeader;
use primitives::{
    codec, keys, BatchStatement, ClusterId, Digest, Domain, Membership, ReplicaId, SeqNum,
    Signature,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// One replica's signature, named by the replica's index in the
/// [`Membership`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaSignature {
    /// The signer.
    pub replica: ReplicaId,
    /// Its signature over the certificate's statement.
    pub signature: Signature,
}

/// How many distinct signers a caller requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threshold {
    /// `f + 1`: at least one correct replica vouches (an ordinary reply).
    WeakQuorum,
    /// `2f + 1` (the quorum): a `sync` reply, durable on a quorum, and
    /// every pulse quorum certificate.
    Quorum,
}

impl Threshold {
    /// The number of signers this threshold needs in `membership`.
    pub fn count(self, membership: &Membership) -> usize {
        match self {
            Threshold::WeakQuorum => membership.weak_quorum(),
            Threshold::Quorum => membership.quorum(),
        }
    }
}

/// Checks that `signatures` come from distinct configured replicas, at
/// least `need` of them, and that each verifies over `message` in `domain`.
/// Structure is checked before any signature, so a bad set costs no crypto.
/// A signature `checked` remembers is not checked again; the ones checked
/// here are remembered when they verify.
pub(crate) fn verify_signers(
    membership: &Membership,
    signatures: &[ReplicaSignature],
    need: usize,
    domain: Domain,
    message: &[u8],
    checked: Option<&CheckedSignatures>,
) -> Result<(), VerifyError> {
    assert!(need >= 1, "a certificate needs at least one signer");
    let mut seen = BTreeSet::new();
    let mut items = Vec::with_capacity(signatures.len().min(membership.n()));
    // For each item: its entry's position, and (with a memory) its key there.
    let mut positions = Vec::with_capacity(items.capacity());
    let mut checks = Vec::new();
    for (position, entry) in signatures.iter().enumerate() {
        let replica = entry.replica;
        let key = membership
            .key(replica)
            .ok_or(VerifyError::UnknownSigner { replica })?;
        if !seen.insert(replica) {
            return Err(VerifyError::DuplicateSigner { replica });
        }
        if let Some(checked) = checked {
            let check = CheckedSignatures::key(key, domain, message, &entry.signature);
            if checked.contains(&check) {
                continue;
            }
            checks.push(check);
        }
        positions.push(position);
        items.push((*key, domain, message, entry.signature));
    }
    assert!(seen.len() <= membership.n());
    if seen.len() < need {
        return Err(VerifyError::TooFewSigners {
            have: seen.len(),
            need,
        });
    }
    let verdicts = keys::verify_many(&items);
    if let Some(bad) = verdicts.iter().position(Result::is_err) {
        return Err(VerifyError::BadSignature {
            replica: signatures[positions[bad]].replica,
        });
    }
    if let Some(checked) = checked {
        checked.insert_all(checks);
    }
    Ok(())
}

/// Adds `signature` by `replica` to a signer list kept sorted by replica,
/// after checking membership, uniqueness and, given the signed `message`,
/// the signature itself (`None`: the caller verified it already).
fn add_signature(
    signatures: &mut Vec<ReplicaSignature>,
    membership: &Membership,
    entry: ReplicaSignature,
    domain: Domain,
    message: Option<&[u8]>,
) -> Result<(), VerifyError> {
    let replica = entry.replica;
    let key = membership
        .key(replica)
        .ok_or(VerifyError::UnknownSigner { replica })?;
    let slot = match signatures.binary_search_by_key(&replica, |s| s.replica) {
        Ok(_) => return Err(VerifyError::DuplicateSigner { replica }),
        Err(slot) => slot,
    };
    if let Some(message) = message {
        key.verify(domain, message, &entry.signature)
            .map_err(|_| VerifyError::BadSignature { replica })?;
    }
    signatures.insert(slot, entry);
    assert!(signatures.len() <= membership.n());
    Ok(())
}

/// A batch's receipts root with signatures of replicas that executed it:
/// the certificate of a reply (f + 1, or 2f + 1 for `sync`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCertificate {
    /// `(cluster id, seq, receipts root)`, what every signer signed.
    pub statement: BatchStatement,
    /// The signers, sorted by replica when built with [`Self::add`].
    pub signatures: Vec<ReplicaSignature>,
}

impl BatchCertificate {
    /// A certificate without signatures yet, for batch `seq` of `cluster`
    /// with receipts root `receipts_root`.
    pub fn new(cluster: ClusterId, seq: SeqNum, receipts_root: Digest) -> BatchCertificate {
        BatchCertificate {
            statement: BatchStatement {
                cluster,
                seq,
                receipts_root,
            },
            signatures: Vec::new(),
        }
    }

    /// Adds a replica's signature after checking it (unknown signers,
    /// duplicates and bad signatures are refused and leave `self` as is).
    pub fn add(
        &mut self,
        membership: &Membership,
        replica: ReplicaId,
        signature: Signature,
    ) -> Result<(), VerifyError> {
        let message = codec::encode(&self.statement);
        self.insert(membership, replica, signature, Some(&message))
    }

    /// Adds a signature the caller has already verified over this
    /// certificate's statement (its own, just made, or one checked on
    /// arrival): membership and uniqueness are still checked, the
    /// signature is not checked twice. A certificate built with an
    /// unverified signature here fails [`Self::verify_signatures`].
    pub fn add_verified(
        &mut self,
        membership: &Membership,
        replica: ReplicaId,
        signature: Signature,
    ) -> Result<(), VerifyError> {
        self.insert(membership, replica, signature, None)
    }

    fn insert(
        &mut self,
        membership: &Membership,
        replica: ReplicaId,
        signature: Signature,
        message: Option<&[u8]>,
    ) -> Result<(), VerifyError> {
        let entry = ReplicaSignature { replica, signature };
        add_signature(
            &mut self.signatures,
            membership,
            entry,
            Domain::BatchCertificate,
            message,
        )
    }

    /// Checks the signer set and every signature against `membership`,
    /// requiring `threshold` distinct signers. (The cluster is checked by
    /// [`crate::Verifier`], which knows the expected one.)
    pub fn verify_signatures(
        &self,
        membership: &Membership,
        threshold: Threshold,
    ) -> Result<(), VerifyError> {
        self.verify_signatures_remembered(membership, threshold, None)
    }

    /// [`Self::verify_signatures`], skipping the signatures `checked`
    /// remembers and remembering the ones it checks.
    pub fn verify_signatures_remembered(
        &self,
        membership: &Membership,
        threshold: Threshold,
        checked: Option<&CheckedSignatures>,
    ) -> Result<(), VerifyError> {
        let message = codec::encode(&self.statement);
        verify_signers(
            membership,
            &self.signatures,
            threshold.count(membership),
            Domain::BatchCertificate,
            &message,
            checked,
        )
    }
}

/// A pulse header with its quorum certificate: 2f + 1 replicas' PBFT
/// CHECKPOINT signatures over [`PulseHeader::checkpoint_statement`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PulseCertificate {
    /// The certified header.
    pub header: PulseHeader,
    /// The signers, sorted by replica when built with [`Self::add`].
    pub signatures: Vec<ReplicaSignature>,
}

impl PulseCertificate {
    /// A certificate for `header` without signatures yet.
    pub fn new(header: PulseHeader) -> PulseCertificate {
        PulseCertificate {
            header,
            signatures: Vec::new(),
        }
    }

    /// Adds a replica's CHECKPOINT signature after checking it.
    pub fn add(
        &mut self,
        membership: &Membership,
        replica: ReplicaId,
        signature: Signature,
    ) -> Result<(), VerifyError> {
        let message = codec::encode(&self.header.checkpoint_statement());
        let entry = ReplicaSignature { replica, signature };
        add_signature(
            &mut self.signatures,
            membership,
            entry,
            Domain::Checkpoint,
            Some(&message),
        )
    }

    /// Checks that at least a quorum (2f + 1) of distinct configured
    /// replicas signed the header's checkpoint statement.
    pub fn verify_signatures(&self, membership: &Membership) -> Result<(), VerifyError> {
        let message = codec::encode(&self.header.checkpoint_statement());
        verify_signers(
            membership,
            &self.signatures,
            Threshold::Quorum.count(membership),
            Domain::Checkpoint,
            &message,
            None,
        )
    }
}
