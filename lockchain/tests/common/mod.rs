//! A small cluster and a lockchain built the way the node will build it.

#![allow(dead_code)]

use lockchain::{
    BatchCertificate, PulseBatches, PulseCertificate, ReceiptBatchProof, ReceiptPulseProof,
    ReceiptTree, Verifier,
};
use primitives::{
    BatchStatement, Bytes, CheckpointStatement, Digest, HlcTimestamp, KeyPair, Membership,
    PulseNumber, Receipt, ReplicaId, SeqNum,
};

/// `n` replicas with keys from fixed seeds.
pub struct Cluster {
    pub keys: Vec<KeyPair>,
    pub membership: Membership,
    pub verifier: Verifier,
}

pub fn cluster(n: usize) -> Cluster {
    let keys: Vec<KeyPair> = (0..n)
        .map(|i| KeyPair::from_seed(&[i as u8 + 1; 32]))
        .collect();
    let membership = Membership::new("lockchain test", keys.iter().map(|k| k.public()).collect())
        .expect("valid membership");
    let verifier = Verifier::new(membership.clone());
    Cluster {
        keys,
        membership,
        verifier,
    }
}

/// The effective time of batch `seq` (strictly increasing).
pub fn time_of(seq: SeqNum) -> HlcTimestamp {
    HlcTimestamp {
        wall: 1_800_000_000_000_000 + seq.0 * 1000,
        logical: (seq.0 % 3) as u16,
    }
}

/// `count` receipts of batch `seq`.
pub fn receipts(seq: SeqNum, count: usize) -> Vec<Receipt> {
    (0..count)
        .map(|i| Receipt {
            request: Digest::of(primitives::Domain::Test, &[seq.0 as u8, i as u8]),
            op_index: (i % 3) as u32,
            seq,
            time: time_of(seq),
            result: Bytes(format!("granted token {}:{i}", seq.0).into_bytes()),
        })
        .collect()
}

impl Cluster {
    /// Replica `signer`'s batch signature, made exactly as a replica makes it.
    pub fn sign_batch(&self, statement: &BatchStatement, signer: u16) -> primitives::Signature {
        statement.sign(&self.keys[usize::from(signer)])
    }

    /// A batch certificate signed by `signers`, collected with `add`.
    pub fn batch_certificate(
        &self,
        seq: SeqNum,
        receipts_root: Digest,
        signers: &[u16],
    ) -> BatchCertificate {
        let mut certificate =
            BatchCertificate::new(self.membership.cluster_id(), seq, receipts_root);
        for &signer in signers {
            let signature = self.sign_batch(&certificate.statement, signer);
            certificate
                .add(&self.membership, ReplicaId(signer), signature)
                .expect("an honest signature is accepted");
        }
        certificate
    }

    /// A pulse certificate signed by `signers`: each signature is a PBFT
    /// CHECKPOINT signature, written out the way consensus makes it.
    pub fn pulse_certificate(
        &self,
        header: lockchain::PulseHeader,
        signers: &[u16],
    ) -> PulseCertificate {
        let statement = CheckpointStatement {
            cluster: header.cluster,
            seq: header.last_seq,
            header: header.digest(),
        };
        let mut certificate = PulseCertificate::new(header);
        for &signer in signers {
            let signature = statement.sign(&self.keys[usize::from(signer)]);
            certificate
                .add(&self.membership, ReplicaId(signer), signature)
                .expect("an honest signature is accepted");
        }
        certificate
    }
}

/// One pulse built as the node builds it: batches `first..first+batch_count`
/// with `receipts_per_batch[i % len]` receipts each.
pub struct Pulse {
    pub batches: Vec<Vec<Receipt>>,
    pub trees: Vec<ReceiptTree>,
    pub pulse_batches: PulseBatches,
    pub certificate: PulseCertificate,
}

pub fn pulse(
    c: &Cluster,
    number: u64,
    first: SeqNum,
    receipts_per_batch: &[usize],
    previous: Digest,
    signers: &[u16],
) -> Pulse {
    let batches: Vec<Vec<Receipt>> = receipts_per_batch
        .iter()
        .enumerate()
        .map(|(i, &count)| receipts(SeqNum(first.0 + i as u64), count))
        .collect();
    let trees: Vec<ReceiptTree> = batches.iter().map(|b| ReceiptTree::new(b)).collect();
    let roots: Vec<Digest> = trees.iter().map(ReceiptTree::root).collect();
    let pulse_batches = PulseBatches::new(first, &roots);
    let last = pulse_batches.last_seq();
    let header = pulse_batches.header(
        c.membership.cluster_id(),
        PulseNumber(number),
        Digest::of(primitives::Domain::Test, &last.0.to_be_bytes()),
        previous,
        time_of(last),
    );
    let certificate = c.pulse_certificate(header, signers);
    Pulse {
        batches,
        trees,
        pulse_batches,
        certificate,
    }
}

impl Pulse {
    /// The pulse proof of receipt `index` of batch `seq`.
    pub fn receipt_proof(&self, seq: SeqNum, index: usize) -> ReceiptPulseProof {
        let b = (seq.0 - self.pulse_batches.first_seq().0) as usize;
        ReceiptPulseProof {
            receipt: self.batches[b][index].clone(),
            receipt_path: self.trees[b].proof(index as u64).unwrap(),
            receipts_root: self.trees[b].root(),
            batch_path: self.pulse_batches.proof(seq).unwrap(),
            pulse: self.certificate.clone(),
        }
    }
}

/// The batch proof of receipt `index` of a batch of `count` receipts.
pub fn batch_proof(
    c: &Cluster,
    seq: SeqNum,
    count: usize,
    index: usize,
    signers: &[u16],
) -> ReceiptBatchProof {
    let batch = receipts(seq, count);
    let tree = ReceiptTree::new(&batch);
    ReceiptBatchProof {
        receipt: batch[index].clone(),
        receipt_path: tree.proof(index as u64).unwrap(),
        certificate: c.batch_certificate(seq, tree.root(), signers),
    }
}
