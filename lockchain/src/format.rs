//! The compact byte format of headers, certificates and proofs, specified
//! in `lockchain/FORMAT.md` so that verifiers in other languages can read
//! it: fixed-width big-endian integers, raw 32-byte digests and 64-byte
//! signatures, explicit counts, no padding, no trailing bytes. Decoding
//! checks every count against a bound before it allocates.

use crate::certificate::{BatchCertificate, PulseCertificate, ReplicaSignature};
use crate::error::DecodeError;
use crate::merkle::{InclusionProof, PATH_LEN_MAX};
use crate::proof::{ReceiptBatchProof, ReceiptPulseProof};
use crate::pulse::PulseHeader;
use primitives::membership::REPLICAS_MAX;
use primitives::{
    codec, BatchStatement, ClusterId, Digest, HlcTimestamp, PulseNumber, Receipt, ReplicaId,
    SeqNum, Signature,
};

/// The encoded size of a [`PulseHeader`].
pub const HEADER_BYTES: usize = 32 + 8 + 8 + 8 + 32 + 32 + 32 + 8 + 2;

/// Magic of an encoded [`ReceiptBatchProof`].
pub const RECEIPT_BATCH_PROOF_MAGIC: &[u8; 4] = b"QLRB";
/// Magic of an encoded [`ReceiptPulseProof`].
pub const RECEIPT_PULSE_PROOF_MAGIC: &[u8; 4] = b"QLRP";
/// Magic of an encoded chain of [`PulseCertificate`]s.
pub const CHAIN_MAGIC: &[u8; 4] = b"QLCH";

/// Bounds on what decoding accepts from untrusted bytes. Paths are bounded
/// by [`PATH_LEN_MAX`] and signer lists by [`REPLICAS_MAX`] regardless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Bytes of one encoded receipt (its result included).
    pub receipt_bytes_max: usize,
    /// Headers in one encoded chain.
    pub chain_len_max: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            // A result may carry a queue message (an op is ≤ 64 KiB).
            receipt_bytes_max: 128 * 1024,
            chain_len_max: 4096,
        }
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated { field });
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, field)?;
        Ok(bytes.try_into().expect("take returned N bytes"))
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }
    fn digest(&mut self, field: &'static str) -> Result<Digest, DecodeError> {
        Ok(Digest(self.array(field)?))
    }
    fn magic(&mut self, expected: &'static [u8; 4]) -> Result<(), DecodeError> {
        let found = self.array::<4>("magic")?;
        if &found != expected {
            return Err(DecodeError::BadMagic {
                expected: std::str::from_utf8(expected).expect("magics are ASCII"),
                found,
            });
        }
        Ok(())
    }
    fn count(&mut self, field: &'static str, len: u64, max: usize) -> Result<usize, DecodeError> {
        if len > max as u64 {
            return Err(DecodeError::TooLong {
                field,
                len,
                max: max as u64,
            });
        }
        Ok(len as usize)
    }
    fn finish(self) -> Result<(), DecodeError> {
        if !self.0.is_empty() {
            return Err(DecodeError::TrailingBytes {
                extra: self.0.len(),
            });
        }
        Ok(())
    }
}

/// Decodes a whole object: `read` it, then refuse leftover bytes.
fn decode_all<T>(
    bytes: &[u8],
    read: impl FnOnce(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let mut reader = Reader(bytes);
    let value = read(&mut reader)?;
    reader.finish()?;
    Ok(value)
}

pub(crate) fn encode_header(header: &PulseHeader) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(HEADER_BYTES));
    write_header(&mut w, header);
    assert_eq!(w.0.len(), HEADER_BYTES);
    w.0
}

fn write_header(w: &mut Writer, h: &PulseHeader) {
    w.bytes(h.cluster.0.as_bytes());
    w.u64(h.pulse.0);
    w.u64(h.first_seq.0);
    w.u64(h.last_seq.0);
    w.bytes(h.batches_root.as_bytes());
    w.bytes(h.state_digest.as_bytes());
    w.bytes(h.previous.as_bytes());
    w.u64(h.time.wall);
    w.u16(h.time.logical);
}

fn read_header(r: &mut Reader<'_>) -> Result<PulseHeader, DecodeError> {
    Ok(PulseHeader {
        cluster: ClusterId(r.digest("header cluster")?),
        pulse: PulseNumber(r.u64("header pulse")?),
        first_seq: SeqNum(r.u64("header first seq")?),
        last_seq: SeqNum(r.u64("header last seq")?),
        batches_root: r.digest("header batches root")?,
        state_digest: r.digest("header state digest")?,
        previous: r.digest("header previous")?,
        time: HlcTimestamp {
            wall: r.u64("header time")?,
            logical: r.u16("header time")?,
        },
    })
}

fn write_path(w: &mut Writer, proof: &InclusionProof) {
    assert!(
        proof.path.len() <= PATH_LEN_MAX,
        "path longer than any tree"
    );
    w.u64(proof.index);
    w.u64(proof.size);
    w.bytes(&[proof.path.len() as u8]);
    for digest in &proof.path {
        w.bytes(digest.as_bytes());
    }
}

fn read_path(r: &mut Reader<'_>) -> Result<InclusionProof, DecodeError> {
    let index = r.u64("path index")?;
    let size = r.u64("path size")?;
    let len = r.u8("path length")?;
    let len = r.count("path length", u64::from(len), PATH_LEN_MAX)?;
    let path = (0..len)
        .map(|_| r.digest("path hash"))
        .collect::<Result<_, _>>()?;
    Ok(InclusionProof { index, size, path })
}

fn write_signatures(w: &mut Writer, signatures: &[ReplicaSignature]) {
    assert!(signatures.len() <= usize::from(u16::MAX), "signer count");
    w.u16(signatures.len() as u16);
    for entry in signatures {
        w.u16(entry.replica.0);
        w.bytes(&entry.signature.0);
    }
}

fn read_signatures(r: &mut Reader<'_>) -> Result<Vec<ReplicaSignature>, DecodeError> {
    let count = r.u16("signature count")?;
    let count = r.count("signature count", u64::from(count), REPLICAS_MAX)?;
    (0..count)
        .map(|_| {
            Ok(ReplicaSignature {
                replica: ReplicaId(r.u16("signer")?),
                signature: Signature(r.array("signature")?),
            })
        })
        .collect()
}

fn write_batch_certificate(w: &mut Writer, c: &BatchCertificate) {
    w.bytes(c.statement.cluster.0.as_bytes());
    w.u64(c.statement.seq.0);
    w.bytes(c.statement.receipts_root.as_bytes());
    write_signatures(w, &c.signatures);
}

fn read_batch_certificate(r: &mut Reader<'_>) -> Result<BatchCertificate, DecodeError> {
    let statement = BatchStatement {
        cluster: ClusterId(r.digest("certificate cluster")?),
        seq: SeqNum(r.u64("certificate seq")?),
        receipts_root: r.digest("certificate receipts root")?,
    };
    Ok(BatchCertificate {
        statement,
        signatures: read_signatures(r)?,
    })
}

fn write_pulse_certificate(w: &mut Writer, c: &PulseCertificate) {
    write_header(w, &c.header);
    write_signatures(w, &c.signatures);
}

fn read_pulse_certificate(r: &mut Reader<'_>) -> Result<PulseCertificate, DecodeError> {
    Ok(PulseCertificate {
        header: read_header(r)?,
        signatures: read_signatures(r)?,
    })
}

fn write_receipt(w: &mut Writer, receipt: &Receipt) {
    let bytes = receipt.leaf_bytes();
    w.u32(u32::try_from(bytes.len()).expect("a receipt is under 4 GiB"));
    w.bytes(&bytes);
}

fn read_receipt(r: &mut Reader<'_>, limits: &DecodeLimits) -> Result<Receipt, DecodeError> {
    let len = r.u32("receipt length")?;
    let len = r.count("receipt length", u64::from(len), limits.receipt_bytes_max)?;
    let bytes = r.take(len, "receipt")?;
    let receipt: Receipt = codec::decode(bytes, len).map_err(DecodeError::Receipt)?;
    // One receipt, one byte string: the leaf hash is over these bytes.
    if receipt.leaf_bytes() != bytes {
        return Err(DecodeError::ReceiptNotCanonical);
    }
    Ok(receipt)
}

impl InclusionProof {
    /// The encoding of FORMAT.md, "Inclusion path".
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        write_path(&mut w, self);
        w.0
    }

    /// Decodes [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<InclusionProof, DecodeError> {
        decode_all(bytes, read_path)
    }
}

impl PulseHeader {
    /// Decodes [`PulseHeader::to_bytes`] (exactly [`HEADER_BYTES`] bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<PulseHeader, DecodeError> {
        decode_all(bytes, read_header)
    }
}

impl BatchCertificate {
    /// The encoding of FORMAT.md, "Batch certificate".
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        write_batch_certificate(&mut w, self);
        w.0
    }

    /// Decodes [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<BatchCertificate, DecodeError> {
        decode_all(bytes, read_batch_certificate)
    }
}

impl PulseCertificate {
    /// The encoding of FORMAT.md, "Pulse certificate".
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        write_pulse_certificate(&mut w, self);
        w.0
    }

    /// Decodes [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<PulseCertificate, DecodeError> {
        decode_all(bytes, read_pulse_certificate)
    }
}

impl ReceiptBatchProof {
    /// The encoding of FORMAT.md, "Receipt batch proof" (magic `QLRB`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        w.bytes(RECEIPT_BATCH_PROOF_MAGIC);
        write_receipt(&mut w, &self.receipt);
        write_path(&mut w, &self.receipt_path);
        write_batch_certificate(&mut w, &self.certificate);
        w.0
    }

    /// Decodes [`Self::to_bytes`].
    pub fn from_bytes(
        bytes: &[u8],
        limits: &DecodeLimits,
    ) -> Result<ReceiptBatchProof, DecodeError> {
        decode_all(bytes, |r| {
            r.magic(RECEIPT_BATCH_PROOF_MAGIC)?;
            Ok(ReceiptBatchProof {
                receipt: read_receipt(r, limits)?,
                receipt_path: read_path(r)?,
                certificate: read_batch_certificate(r)?,
            })
        })
    }
}

impl ReceiptPulseProof {
    /// The encoding of FORMAT.md, "Receipt pulse proof" (magic `QLRP`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        w.bytes(RECEIPT_PULSE_PROOF_MAGIC);
        write_receipt(&mut w, &self.receipt);
        write_path(&mut w, &self.receipt_path);
        w.bytes(self.receipts_root.as_bytes());
        write_path(&mut w, &self.batch_path);
        write_pulse_certificate(&mut w, &self.pulse);
        w.0
    }

    /// Decodes [`Self::to_bytes`].
    pub fn from_bytes(
        bytes: &[u8],
        limits: &DecodeLimits,
    ) -> Result<ReceiptPulseProof, DecodeError> {
        decode_all(bytes, |r| {
            r.magic(RECEIPT_PULSE_PROOF_MAGIC)?;
            Ok(ReceiptPulseProof {
                receipt: read_receipt(r, limits)?,
                receipt_path: read_path(r)?,
                receipts_root: r.digest("receipts root")?,
                batch_path: read_path(r)?,
                pulse: read_pulse_certificate(r)?,
            })
        })
    }
}

/// Encodes a chain of certified headers (FORMAT.md, "Chain"; magic `QLCH`).
pub fn encode_chain(chain: &[PulseCertificate]) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    w.bytes(CHAIN_MAGIC);
    w.u32(u32::try_from(chain.len()).expect("a chain of under 2^32 headers"));
    for certificate in chain {
        write_pulse_certificate(&mut w, certificate);
    }
    w.0
}

/// Decodes [`encode_chain`], refusing more than `limits.chain_len_max`
/// headers.
pub fn decode_chain(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<Vec<PulseCertificate>, DecodeError> {
    decode_all(bytes, |r| {
        r.magic(CHAIN_MAGIC)?;
        let len = r.u32("chain length")?;
        let len = r.count("chain length", u64::from(len), limits.chain_len_max)?;
        (0..len).map(|_| read_pulse_certificate(r)).collect()
    })
}
