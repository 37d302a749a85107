//! Certified replies (DESIGN.md step 8): each replica signs
//! `(cluster id, seq, receipts root)` once per executed batch; a reply
//! carries the receipt, its Merkle path and the signatures of distinct
//! replicas over that root. This module keeps the receipt trees of recent
//! batches and collects the signatures — no IO, no clock.

use client::api::Reply;
use lockchain::{BatchCertificate, ReceiptBatchProof, ReceiptTree};
use primitives::{
    BatchStatement, ClusterId, Digest, KeyPair, Membership, Receipt, ReplicaId, SeqNum, Signature,
};
use std::collections::BTreeMap;

/// Why a peer's batch signature was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureRefused {
    /// Its receipts root differs from ours: the peer executed something
    /// else (Byzantine, or we diverged — state transfer repairs us).
    #[error("receipts root differs from ours")]
    RootMismatch,
    /// The signature does not verify, or the signer is unknown.
    #[error("bad signature")]
    BadSignature,
    /// A second signature of the same signer for the same batch.
    #[error("duplicate")]
    Duplicate,
    /// Too old (evicted) or too far ahead of our execution.
    #[error("outside the window")]
    OutOfWindow,
    /// The batch already has a quorum of signatures (the most any reply
    /// needs): not checked, not kept. Not a fault of the sender.
    #[error("certificate already complete")]
    Redundant,
}

impl SignatureRefused {
    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            SignatureRefused::RootMismatch => "batch_signature_root_mismatch",
            SignatureRefused::BadSignature => "batch_signature_bad",
            SignatureRefused::Duplicate => "batch_signature_duplicate",
            SignatureRefused::OutOfWindow => "batch_signature_out_of_window",
            SignatureRefused::Redundant => "batch_signature_redundant",
        }
    }
}

/// One executed batch: its receipts, their tree and the signatures so far.
#[derive(Clone, Debug)]
pub struct BatchEntry {
    /// The receipts, in execution order.
    pub receipts: Vec<Receipt>,
    /// Their Merkle tree.
    pub tree: ReceiptTree,
    /// The statement and the signatures collected (ours included).
    pub certificate: BatchCertificate,
}

impl BatchEntry {
    /// The proof of receipt `index` with the signatures collected so far.
    pub fn proof(&self, index: usize) -> Option<ReceiptBatchProof> {
        let receipt = self.receipts.get(index)?.clone();
        let receipt_path = self.tree.proof(index as u64)?;
        Some(ReceiptBatchProof {
            receipt,
            receipt_path,
            certificate: self.certificate.clone(),
        })
    }

    /// The index of the first receipt of `(request, op_index)` (a waiter
    /// granted in the same batch has a second, later one).
    pub fn first_receipt(&self, request: &Digest, op_index: u32) -> Option<usize> {
        self.receipts
            .iter()
            .position(|r| r.request == *request && r.op_index == op_index)
    }

    /// The index of the last receipt of `(request, op_index)`.
    pub fn last_receipt(&self, request: &Digest, op_index: u32) -> Option<usize> {
        self.receipts
            .iter()
            .rposition(|r| r.request == *request && r.op_index == op_index)
    }
}

/// The receipt trees of recent batches and their signatures.
#[derive(Debug)]
pub struct Certifier {
    membership: Membership,
    cluster: ClusterId,
    me: ReplicaId,
    /// Executed batches kept, newest last; bounded by `batches_max`.
    batches: BTreeMap<SeqNum, BatchEntry>,
    batches_max: usize,
    /// Peers' signatures for batches we have not executed yet, at most
    /// `early_window` seqs ahead of `last_executed`, one per peer and seq.
    early: BTreeMap<SeqNum, BTreeMap<ReplicaId, (Digest, Signature)>>,
    early_window: u64,
    last_executed: SeqNum,
}

impl Certifier {
    /// A certifier for replica `me` of `membership`, keeping `batches_max`
    /// batches and early signatures up to `early_window` seqs ahead.
    pub fn new(
        membership: Membership,
        me: ReplicaId,
        batches_max: usize,
        early_window: u64,
    ) -> Self {
        assert!(batches_max > 0 && early_window > 0);
        Certifier {
            cluster: membership.cluster_id(),
            membership,
            me,
            batches: BTreeMap::new(),
            batches_max,
            early: BTreeMap::new(),
            early_window,
            last_executed: SeqNum(0),
        }
    }

    /// The last batch executed.
    pub fn last_executed(&self) -> SeqNum {
        self.last_executed
    }

    /// A batch we executed, if still kept.
    pub fn batch(&self, seq: SeqNum) -> Option<&BatchEntry> {
        self.batches.get(&seq)
    }

    /// Batches kept.
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Records our execution of `seq`: builds the receipts tree, signs its
    /// root with `key`, adds the early signatures that match. Returns our
    /// signature (to broadcast) and the seqs evicted to stay in bound.
    pub fn executed(
        &mut self,
        seq: SeqNum,
        receipts: Vec<Receipt>,
        key: &KeyPair,
    ) -> (Digest, Signature, Vec<SeqNum>) {
        assert!(seq > self.last_executed, "batches execute in seq order");
        self.last_executed = seq;
        let tree = ReceiptTree::new(&receipts);
        let root = tree.root();
        let statement = BatchStatement {
            cluster: self.cluster,
            seq,
            receipts_root: root,
        };
        let signature = statement.sign(key);
        debug_assert!(statement.verify(&key.public(), &signature).is_ok());
        let mut certificate = BatchCertificate::new(self.cluster, seq, root);
        certificate
            .add_verified(&self.membership, self.me, signature)
            .expect("we are a member");
        let mut entry = BatchEntry {
            receipts,
            tree,
            certificate,
        };
        // Seqs at or below this one can no longer be early.
        let mut later = self.early.split_off(&seq.next());
        if let Some(sigs) = self.early.remove(&seq) {
            for (from, (peer_root, sig)) in sigs {
                if peer_root == root {
                    // Verified on arrival over this very statement.
                    let _ = entry.certificate.add_verified(&self.membership, from, sig);
                }
            }
        }
        std::mem::swap(&mut self.early, &mut later);
        self.batches.insert(seq, entry);
        let mut evicted = Vec::new();
        while self.batches.len() > self.batches_max {
            let (old, _) = self.batches.pop_first().expect("non-empty");
            evicted.push(old);
        }
        (root, signature, evicted)
    }

    /// A peer's signature over `(cluster, seq, root)`. `Ok(true)` if it
    /// was added to an executed batch's certificate (the caller re-checks
    /// who waits on `seq`), `Ok(false)` if kept for later.
    pub fn add_signature(
        &mut self,
        from: ReplicaId,
        seq: SeqNum,
        root: Digest,
        signature: Signature,
    ) -> Result<bool, SignatureRefused> {
        if let Some(entry) = self.batches.get_mut(&seq) {
            if entry.certificate.statement.receipts_root != root {
                return Err(SignatureRefused::RootMismatch);
            }
            if entry
                .certificate
                .signatures
                .iter()
                .any(|s| s.replica == from)
            {
                return Err(SignatureRefused::Duplicate);
            }
            if entry.certificate.signatures.len() >= self.membership.quorum() {
                return Err(SignatureRefused::Redundant);
            }
            return entry
                .certificate
                .add(&self.membership, from, signature)
                .map(|()| true)
                .map_err(|_| SignatureRefused::BadSignature);
        }
        if seq <= self.last_executed || seq.0 > self.last_executed.0 + self.early_window {
            return Err(SignatureRefused::OutOfWindow);
        }
        if let Some(held) = self.early.get(&seq) {
            if held.contains_key(&from) {
                return Err(SignatureRefused::Duplicate);
            }
            // With ours, these over the same root make a quorum once we
            // execute (if ours matches; a liar's other root takes no room).
            let same_root = held.values().filter(|(r, _)| *r == root).count();
            if same_root + 1 >= self.membership.quorum() {
                return Err(SignatureRefused::Redundant);
            }
        }
        // Verified now so a forged early signature cannot take the slot of
        // the peer's real one.
        let key = self
            .membership
            .key(from)
            .ok_or(SignatureRefused::BadSignature)?;
        let statement = BatchStatement {
            cluster: self.cluster,
            seq,
            receipts_root: root,
        };
        statement
            .verify(key, &signature)
            .map_err(|_| SignatureRefused::BadSignature)?;
        self.early
            .entry(seq)
            .or_default()
            .insert(from, (root, signature));
        Ok(false)
    }

    /// Distinct signers of batch `seq` so far (0 if not kept).
    pub fn signers(&self, seq: SeqNum) -> usize {
        self.batches
            .get(&seq)
            .map_or(0, |e| e.certificate.signatures.len())
    }

    /// The reply to `request` (with `ops` ops) executed at `seq`, with at
    /// most `signers_max` of the signatures collected so far (what the
    /// reply needs: the client checks every signature it is sent); `None`
    /// if the batch is gone or holds none of the request's receipts.
    pub fn reply(
        &self,
        seq: SeqNum,
        request: Digest,
        ops: usize,
        signers_max: usize,
    ) -> Option<Reply> {
        let entry = self.batches.get(&seq)?;
        let proofs: Vec<ReceiptBatchProof> = (0..ops as u32)
            .filter_map(|i| entry.first_receipt(&request, i))
            .filter_map(|index| entry.proof(index))
            .map(|mut proof| {
                proof.certificate.signatures.truncate(signers_max);
                proof
            })
            .collect();
        if proofs.is_empty() {
            return None;
        }
        Some(Reply {
            request,
            seq,
            proofs,
        })
    }

    /// Forgets everything (after a state transfer replaced the state).
    pub fn reset(&mut self, last_executed: SeqNum) {
        self.batches.clear();
        self.early.clear();
        self.last_executed = last_executed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockchain::{Threshold, Verifier};
    use primitives::{Bytes, HlcTimestamp};

    fn cluster(n: usize) -> (Vec<KeyPair>, Membership) {
        let keys: Vec<KeyPair> = (0..n)
            .map(|i| KeyPair::from_seed(&[i as u8 + 1; 32]))
            .collect();
        let membership = Membership::new("t", keys.iter().map(KeyPair::public).collect()).unwrap();
        (keys, membership)
    }

    fn receipts(seq: SeqNum, request: Digest, ops: u32) -> Vec<Receipt> {
        (0..ops)
            .map(|op_index| Receipt {
                request,
                op_index,
                seq,
                time: HlcTimestamp::from_micros(seq.0 * 10),
                result: Bytes(vec![op_index as u8]),
            })
            .collect()
    }

    #[test]
    fn a_reply_verifies_once_f_plus_one_replicas_signed_the_same_root() {
        let (keys, membership) = cluster(4);
        let request = Digest([9; 32]);
        let mut certifiers: Vec<Certifier> = (0..4)
            .map(|i| Certifier::new(membership.clone(), ReplicaId(i), 8, 8))
            .collect();
        let mut sigs = Vec::new();
        for (i, c) in certifiers.iter_mut().enumerate() {
            let (root, sig, _) = c.executed(SeqNum(1), receipts(SeqNum(1), request, 3), &keys[i]);
            sigs.push((ReplicaId(i as u16), root, sig));
        }
        let c0 = &mut certifiers[0];
        assert_eq!(c0.signers(SeqNum(1)), 1);
        let (from, root, sig) = sigs[1];
        assert_eq!(c0.add_signature(from, SeqNum(1), root, sig), Ok(true));
        assert_eq!(
            c0.add_signature(from, SeqNum(1), root, sig),
            Err(SignatureRefused::Duplicate)
        );
        // A signature by replica 2 presented as replica 3's is refused.
        assert_eq!(
            c0.add_signature(ReplicaId(3), SeqNum(1), root, sigs[2].2),
            Err(SignatureRefused::BadSignature)
        );
        assert_eq!(
            c0.add_signature(ReplicaId(3), SeqNum(1), Digest([1; 32]), sigs[3].2),
            Err(SignatureRefused::RootMismatch)
        );
        let reply = c0.reply(SeqNum(1), request, 3, 4).unwrap();
        assert_eq!(reply.proofs.len(), 3);
        let verifier = Verifier::new(membership.clone());
        for proof in &reply.proofs {
            verifier
                .verify_receipt_in_batch(proof, Threshold::WeakQuorum)
                .unwrap();
            assert!(verifier
                .verify_receipt_in_batch(proof, Threshold::Quorum)
                .is_err());
        }
    }

    #[test]
    fn signatures_beyond_a_quorum_are_refused_unchecked_early_or_late() {
        let (keys, membership) = cluster(4);
        let request = Digest([3; 32]);
        let batch = || receipts(SeqNum(1), request, 1);
        let sigs: Vec<(ReplicaId, Digest, Signature)> = (0..4)
            .map(|i| {
                let mut c = Certifier::new(membership.clone(), ReplicaId(i), 8, 8);
                let (root, sig, _) = c.executed(SeqNum(1), batch(), &keys[i as usize]);
                (ReplicaId(i), root, sig)
            })
            .collect();
        let root = sigs[0].1;
        // Replica 1's signature presented as replica 3's: a check would
        // refuse it as BadSignature.
        let forged = sigs[1].2;
        let verifier = Verifier::new(membership.clone());

        // Early: two valid ones make a quorum with ours once we execute;
        // a third is refused without being checked.
        let mut c0 = Certifier::new(membership.clone(), ReplicaId(0), 8, 8);
        for &(from, root, sig) in &sigs[1..3] {
            assert_eq!(c0.add_signature(from, SeqNum(1), root, sig), Ok(false));
        }
        assert_eq!(
            c0.add_signature(ReplicaId(3), SeqNum(1), root, forged),
            Err(SignatureRefused::Redundant)
        );
        c0.executed(SeqNum(1), batch(), &keys[0]);
        assert_eq!(c0.signers(SeqNum(1)), 3);
        let reply = c0.reply(SeqNum(1), request, 1, 3).unwrap();
        verifier
            .verify_receipt_in_batch(&reply.proofs[0], Threshold::Quorum)
            .unwrap();

        // An early signature over another root takes no room: the two
        // over ours are still taken.
        let mut c0 = Certifier::new(membership.clone(), ReplicaId(0), 8, 8);
        let other = BatchStatement {
            cluster: membership.cluster_id(),
            seq: SeqNum(1),
            receipts_root: Digest([8; 32]),
        };
        let liar = other.sign(&keys[3]);
        assert_eq!(
            c0.add_signature(ReplicaId(3), SeqNum(1), other.receipts_root, liar),
            Ok(false)
        );
        for &(from, root, sig) in &sigs[1..3] {
            assert_eq!(c0.add_signature(from, SeqNum(1), root, sig), Ok(false));
        }
        c0.executed(SeqNum(1), batch(), &keys[0]);
        assert_eq!(c0.signers(SeqNum(1)), 3);

        // Late: after ours and two more, the fourth is refused unchecked.
        let mut c0 = Certifier::new(membership.clone(), ReplicaId(0), 8, 8);
        c0.executed(SeqNum(1), batch(), &keys[0]);
        for &(from, root, sig) in &sigs[1..3] {
            assert_eq!(c0.add_signature(from, SeqNum(1), root, sig), Ok(true));
        }
        assert_eq!(
            c0.add_signature(ReplicaId(3), SeqNum(1), root, forged),
            Err(SignatureRefused::Redundant)
        );
        assert_eq!(c0.signers(SeqNum(1)), 3);
        let reply = c0.reply(SeqNum(1), request, 1, 3).unwrap();
        verifier
            .verify_receipt_in_batch(&reply.proofs[0], Threshold::Quorum)
            .unwrap();
        // An ordinary reply carries the f + 1 signatures it needs.
        let reply = c0.reply(SeqNum(1), request, 1, 2).unwrap();
        assert_eq!(reply.proofs[0].certificate.signatures.len(), 2);
        verifier
            .verify_receipt_in_batch(&reply.proofs[0], Threshold::WeakQuorum)
            .unwrap();
    }

    #[test]
    fn early_signatures_are_kept_and_evictions_are_bounded() {
        let (keys, membership) = cluster(4);
        let request = Digest([7; 32]);
        let mut c0 = Certifier::new(membership.clone(), ReplicaId(0), 2, 4);
        let mut c1 = Certifier::new(membership, ReplicaId(1), 2, 4);
        let (root, sig, _) = c1.executed(SeqNum(1), receipts(SeqNum(1), request, 1), &keys[1]);
        assert_eq!(
            c0.add_signature(ReplicaId(1), SeqNum(1), root, sig),
            Ok(false)
        );
        assert_eq!(
            c0.add_signature(ReplicaId(1), SeqNum(9), root, sig),
            Err(SignatureRefused::OutOfWindow)
        );
        c0.executed(SeqNum(1), receipts(SeqNum(1), request, 1), &keys[0]);
        assert_eq!(c0.signers(SeqNum(1)), 2);
        c0.executed(SeqNum(2), receipts(SeqNum(2), request, 1), &keys[0]);
        let (_, _, evicted) = c0.executed(SeqNum(3), receipts(SeqNum(3), request, 1), &keys[0]);
        assert_eq!(evicted, vec![SeqNum(1)]);
        assert!(c0.reply(SeqNum(1), request, 1, 3).is_none());
        assert_eq!(c0.len(), 2);
    }
}
