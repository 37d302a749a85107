//! The client request of DESIGN.md step 1.
//!
//! A request is `{cluster id, client key, request number, atomic, ops[]}`
//! signed by the client. Its **digest** is the blake3 digest of the body in
//! [`Domain::Request`]; the signature is over that digest in
//! [`Domain::RequestSignature`]. Ops are opaque here: the state machine
//! (`qlock`) defines and decodes them.
//!
//! Signatures come first (Aardvark): every replica can check every request
//! on its own, so a Byzantine client cannot make correct replicas disagree
//! about which requests are valid.

use crate::bytes_serde::Bytes;
use crate::codec::{self, CodecError};
use crate::digest::{Digest, Domain};
use crate::ids::{ClientId, ClusterId, RequestNumber};
use crate::keys::{self, KeyPair, Signature, SignatureError};
use serde::{Deserialize, Serialize};

/// The bounds a request must fit in. Every replica uses the same values
/// (they come from the cluster configuration), so validity is agreed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestLimits {
    /// Ops in one request (a client pipelining).
    pub ops_max: usize,
    /// Bytes of one encoded op.
    pub op_bytes_max: usize,
    /// Bytes of one encoded request, signature included.
    pub request_bytes_max: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            ops_max: 64,
            op_bytes_max: 64 * 1024,
            request_bytes_max: 1024 * 1024,
        }
    }
}

/// What a client signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestBody {
    /// The cluster this request is for.
    pub cluster: ClusterId,
    /// The client: its public key.
    pub client: ClientId,
    /// Checked against the client's sliding window.
    pub number: RequestNumber,
    /// All ops succeed or none takes effect.
    pub atomic: bool,
    /// The operations, encoded by the state machine.
    pub ops: Vec<Bytes>,
}

/// Bytes of an encoded [`Signature`]: a one-byte length, then 64 bytes.
const SIGNATURE_ENCODED_BYTES: usize = 65;

/// A signed request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The signed part.
    pub body: RequestBody,
    /// The client's signature over the body's digest.
    pub signature: Signature,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The bytes do not decode.
    #[error("request does not decode: {0}")]
    Codec(#[from] CodecError),
    /// Signed for another cluster.
    #[error("request is for cluster {got}, this is {expected}")]
    WrongCluster {
        /// This cluster.
        expected: ClusterId,
        /// The request's.
        got: ClusterId,
    },
    /// No ops at all.
    #[error("request has no ops")]
    NoOps,
    /// Too many ops.
    #[error("request has {count} ops, the limit is {max}")]
    TooManyOps {
        /// Ops in the request.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// One op is too large.
    #[error("op {index} has {len} bytes, the limit is {max}")]
    OpTooLarge {
        /// Which op.
        index: usize,
        /// Its size.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The signature does not verify.
    #[error("bad request signature: {0}")]
    Signature(#[from] SignatureError),
}

impl RequestBody {
    /// The request digest: the name of the request everywhere (mempool,
    /// batches, receipts, message ids).
    pub fn digest(&self) -> Digest {
        Digest::of(Domain::Request, &codec::encode(self))
    }

    /// Signs the body.
    pub fn sign(self, key: &KeyPair) -> Request {
        debug_assert_eq!(
            key.public(),
            self.client,
            "signing with another client's key"
        );
        let signature = key.sign(Domain::RequestSignature, self.digest().as_bytes());
        Request {
            body: self,
            signature,
        }
    }
}

impl Request {
    /// The request digest (see [`RequestBody::digest`]).
    pub fn digest(&self) -> Digest {
        self.body.digest()
    }

    /// The digest of an encoded request without decoding it: the wire form
    /// is the encoded body followed by the encoded signature, so the digest
    /// is a hash of a prefix (no allocation, no key decompression). It is
    /// the request's digest only if `bytes` is the canonical encoding; a
    /// caller that goes on to trust the request must decode it and compare
    /// digests (the gossip validator does), which refuses every other form.
    /// `None` if `bytes` cannot end in a signature.
    pub fn digest_of_encoded(bytes: &[u8]) -> Option<Digest> {
        let body_len = bytes.len().checked_sub(SIGNATURE_ENCODED_BYTES)?;
        // The signature's length prefix: one varint byte for 64.
        if bytes[body_len] != 64 {
            return None;
        }
        Some(Digest::of(Domain::Request, &bytes[..body_len]))
    }

    /// Decodes a request from the wire, within `limits`.
    pub fn decode(bytes: &[u8], limits: &RequestLimits) -> Result<Request, RequestError> {
        Ok(codec::decode(bytes, limits.request_bytes_max)?)
    }

    /// Checks everything but the signature: cluster and limits.
    pub fn check_shape(
        &self,
        cluster: ClusterId,
        limits: &RequestLimits,
    ) -> Result<(), RequestError> {
        if self.body.cluster != cluster {
            return Err(RequestError::WrongCluster {
                expected: cluster,
                got: self.body.cluster,
            });
        }
        let count = self.body.ops.len();
        if count == 0 {
            return Err(RequestError::NoOps);
        }
        if count > limits.ops_max {
            return Err(RequestError::TooManyOps {
                count,
                max: limits.ops_max,
            });
        }
        if let Some((index, op)) = self
            .body
            .ops
            .iter()
            .enumerate()
            .find(|(_, op)| op.0.len() > limits.op_bytes_max)
        {
            return Err(RequestError::OpTooLarge {
                index,
                len: op.0.len(),
                max: limits.op_bytes_max,
            });
        }
        Ok(())
    }

    /// Full validation of one request: shape, then signature. Returns the
    /// digest, which the check had to compute anyway.
    pub fn verify(
        &self,
        cluster: ClusterId,
        limits: &RequestLimits,
    ) -> Result<Digest, RequestError> {
        self.check_shape(cluster, limits)?;
        let digest = self.digest();
        self.body
            .client
            .verify(Domain::RequestSignature, digest.as_bytes(), &self.signature)?;
        Ok(digest)
    }
}

/// Validates many requests, checking their signatures in one batch. Returns
/// one verdict per request, in order, with the digest of each valid one.
pub fn verify_many(
    requests: &[Request],
    cluster: ClusterId,
    limits: &RequestLimits,
) -> Vec<Result<Digest, RequestError>> {
    let shaped: Vec<Result<Digest, RequestError>> = requests
        .iter()
        .map(|r| r.check_shape(cluster, limits).map(|()| r.digest()))
        .collect();
    let items: Vec<_> = requests
        .iter()
        .zip(&shaped)
        .filter_map(|(r, s)| s.as_ref().ok().map(|d| (r, *d)))
        .collect();
    let signed: Vec<_> = items
        .iter()
        .map(|(r, d)| {
            (
                r.body.client,
                Domain::RequestSignature,
                &d.as_bytes()[..],
                r.signature,
            )
        })
        .collect();
    let mut sig_verdicts = keys::verify_many(&signed).into_iter();
    shaped
        .into_iter()
        .map(|s| {
            let digest = s?;
            sig_verdicts
                .next()
                .expect("one signature verdict per well-shaped request")?;
            Ok(digest)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyPair;

    fn body(key: &KeyPair, number: u64, ops: usize) -> RequestBody {
        RequestBody {
            cluster: ClusterId(Digest([7; 32])),
            client: key.public(),
            number: RequestNumber(number),
            atomic: false,
            ops: (0..ops).map(|i| Bytes(vec![i as u8; 4])).collect(),
        }
    }

    #[test]
    fn signed_request_verifies_and_round_trips() {
        let key = KeyPair::from_seed(&[1; 32]);
        let limits = RequestLimits::default();
        let req = body(&key, 1, 3).sign(&key);
        let digest = req.verify(req.body.cluster, &limits).unwrap();
        let bytes = codec::encode(&req);
        let back = Request::decode(&bytes, &limits).unwrap();
        assert_eq!(back, req);
        assert_eq!(back.digest(), digest);
    }

    #[test]
    fn tampering_and_limits_are_caught() {
        let key = KeyPair::from_seed(&[1; 32]);
        let limits = RequestLimits {
            ops_max: 4,
            op_bytes_max: 8,
            request_bytes_max: 1024,
        };
        let cluster = ClusterId(Digest([7; 32]));
        let mut req = body(&key, 1, 2).sign(&key);
        req.body.number = RequestNumber(2);
        assert!(matches!(
            req.verify(cluster, &limits),
            Err(RequestError::Signature(_))
        ));
        let req = body(&key, 1, 5).sign(&key);
        assert!(matches!(
            req.verify(cluster, &limits),
            Err(RequestError::TooManyOps { .. })
        ));
        let req = body(&key, 1, 0).sign(&key);
        assert_eq!(req.verify(cluster, &limits), Err(RequestError::NoOps));
        let mut b = body(&key, 1, 1);
        b.ops[0] = Bytes(vec![0; 9]);
        assert!(matches!(
            b.sign(&key).verify(cluster, &limits),
            Err(RequestError::OpTooLarge { .. })
        ));
        let req = body(&key, 1, 1).sign(&key);
        assert!(matches!(
            req.verify(ClusterId(Digest([8; 32])), &limits),
            Err(RequestError::WrongCluster { .. })
        ));
    }

    #[test]
    fn signature_encoding_has_the_assumed_length() {
        let encoded = codec::encode(&Signature([9; 64]));
        assert_eq!(encoded.len(), SIGNATURE_ENCODED_BYTES);
        assert_eq!(encoded[0], 64);
    }

    proptest::proptest! {
        /// The digest of the encoded form is the digest of the request, for
        /// any shape of body.
        #[test]
        fn digest_of_encoded_matches_the_decoded_digest(
            number in proptest::prelude::any::<u64>(),
            atomic in proptest::prelude::any::<bool>(),
            ops in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 0..9),
        ) {
            let key = KeyPair::from_seed(&[3; 32]);
            let req = RequestBody {
                cluster: ClusterId(Digest([7; 32])),
                client: key.public(),
                number: RequestNumber(number),
                atomic,
                ops: ops.into_iter().map(Bytes).collect(),
            }
            .sign(&key);
            let bytes = codec::encode(&req);
            proptest::prop_assert_eq!(Request::digest_of_encoded(&bytes), Some(req.digest()));
        }
    }

    #[test]
    fn digest_of_encoded_refuses_what_cannot_end_in_a_signature() {
        assert_eq!(Request::digest_of_encoded(&[64; 64]), None);
        assert_eq!(Request::digest_of_encoded(&[0; 100]), None);
    }

    #[test]
    fn batch_verification_matches_one_by_one() {
        let keys: Vec<_> = (0..6u8).map(|i| KeyPair::from_seed(&[i + 1; 32])).collect();
        let limits = RequestLimits::default();
        let mut reqs: Vec<_> = keys.iter().map(|k| body(k, 1, 1).sign(k)).collect();
        reqs[2].signature.0[5] ^= 0x40;
        reqs[4].body.ops.clear();
        let cluster = reqs[0].body.cluster;
        let batch = verify_many(&reqs, cluster, &limits);
        let single: Vec<_> = reqs.iter().map(|r| r.verify(cluster, &limits)).collect();
        assert_eq!(batch, single);
        assert_eq!(batch.iter().filter(|v| v.is_ok()).count(), 4);
    }
}
