//! The client protocol: what a client and a replica's gateway say to each
//! other. Pure types and framing — no IO — shared by the client library
//! and `qlockd`, so both sides always agree on the bytes.
//!
//! Transport: one TCP connection carries frames in both directions, each
//! a 4-byte big-endian length followed by the frame in the shared codec
//! (`primitives::codec`). The client sends [`ClientFrame`]s; the replica
//! answers with [`ServerFrame`]s, matched by the client-chosen `id`, and
//! pushes [`Event`]s for every client key that has submitted a request on
//! that connection (a signed request proves the connection speaks for the
//! key; nobody polls).
//!
//! Trust: a reply is a [`ReceiptBatchProof`] per op — the receipt, its
//! Merkle path, and signatures of distinct replicas over
//! `(cluster id, seq, receipts root)`. The client checks them with
//! `lockchain::Verifier` against the cluster's public keys, so a lying
//! gateway can stall a client but not fool it.

use lockchain::{PulseCertificate, ReceiptBatchProof, ReceiptPulseProof};
use primitives::{codec, CodecError, Digest, PulseNumber, ReplicaId, Request, SeqNum, ViewNumber};
use serde::{Deserialize, Serialize};

/// The largest frame either side accepts (a request is bounded far below
/// this by `RequestLimits`; a reply by ops per request × proof size).
pub const CLIENT_FRAME_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The most pulse headers one [`ClientFrame::Pulses`] query returns.
pub const PULSES_PER_QUERY_MAX: u32 = 256;

/// How many distinct replica signatures a reply must carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplyQuorum {
    /// f + 1: at least one correct replica executed it.
    Ordinary,
    /// 2f + 1: durable on a quorum (a request with a `sync` queue submit).
    Sync,
}

/// Client → replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientFrame {
    /// Order and execute a signed request. Answered with
    /// [`ServerFrame::Replied`] (certified), [`ServerFrame::Accepted`]
    /// (when every op is an `async` queue submit) or
    /// [`ServerFrame::Rejected`].
    Submit {
        /// Chosen by the client, echoed in the answer.
        id: u64,
        /// The signed request.
        request: Box<Request>,
    },
    /// The replica's view of the cluster.
    Status {
        /// Echoed in the answer.
        id: u64,
    },
    /// Certified pulse headers `from..from + count` (as many as are
    /// stored, at most [`PULSES_PER_QUERY_MAX`]).
    Pulses {
        /// Echoed in the answer.
        id: u64,
        /// The first pulse.
        from: PulseNumber,
        /// How many.
        count: u32,
    },
    /// The proof that an op happened, up to a certified pulse header.
    ReceiptProof {
        /// Echoed in the answer.
        id: u64,
        /// The request.
        request: Digest,
        /// The op's index in it.
        op_index: u32,
    },
}

/// Replica → client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerFrame {
    /// The request was executed; one proof per op, in op order.
    Replied {
        /// The client's id of the submit.
        id: u64,
        /// The certified reply.
        reply: Reply,
    },
    /// An all-`async` request was accepted for ordering (not certified;
    /// may be lost in a crash).
    Accepted {
        /// The client's id of the submit.
        id: u64,
        /// The request's digest (with an op index, the message id).
        request: Digest,
    },
    /// The frame was refused.
    Rejected {
        /// The client's id of the frame, 0 if it could not be decoded.
        id: u64,
        /// Why.
        error: ApiError,
    },
    /// Something happened to one of the connection's clients.
    Event(Event),
    /// The answer to [`ClientFrame::Status`].
    Status {
        /// The client's id.
        id: u64,
        /// The report.
        status: StatusReport,
    },
    /// The answer to [`ClientFrame::Pulses`].
    Pulses {
        /// The client's id.
        id: u64,
        /// Certified headers in pulse order.
        pulses: Vec<PulseCertificate>,
    },
    /// The answer to [`ClientFrame::ReceiptProof`].
    ReceiptProof {
        /// The client's id.
        id: u64,
        /// The proof.
        proof: Box<ReceiptPulseProof>,
    },
}

/// A certified reply to one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The request's digest.
    pub request: Digest,
    /// The batch that executed it.
    pub seq: SeqNum,
    /// One proof per op, in op order; each receipt's `result` decodes
    /// with `qlock::decode_outcome`.
    pub proofs: Vec<ReceiptBatchProof>,
}

/// Pushed to a connection for a client key that submitted on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A later outcome of a waiting acquire — its grant or the end of its
    /// wait — with its own certified receipt (at the seq where it happened).
    WaitOutcome(Box<ReceiptBatchProof>),
}

/// A replica's view of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// This replica.
    pub replica: ReplicaId,
    /// Its current view.
    pub view: ViewNumber,
    /// The primary of that view.
    pub primary: ReplicaId,
    /// The last seq it executed.
    pub last_executed: SeqNum,
    /// Its latest stable checkpoint.
    pub stable_checkpoint: SeqNum,
    /// State transfers completed since start.
    pub state_transfers: u64,
    /// Health of each configured peer.
    pub peers: Vec<PeerHealth>,
}

/// What a replica knows of one peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHealth {
    /// The peer.
    pub replica: ReplicaId,
    /// Whether a connection is up.
    pub connected: bool,
    /// The last measured round trip, in µs.
    pub rtt_micros: Option<u64>,
    /// Microseconds since anything was heard from it.
    pub last_seen_micros_ago: Option<u64>,
    /// Errors counted on its connections.
    pub errors: u64,
}

/// Why a gateway refused a frame: the binary protocol's equivalent of an
/// HTTP 4xx/5xx with a typed body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApiError {
    /// The frame or request does not decode.
    #[error("malformed: {0}")]
    Malformed(String),
    /// Over a size or count limit.
    #[error("over the limit: {0}")]
    Oversized(String),
    /// The request's signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The request names another cluster.
    #[error("wrong cluster id")]
    WrongCluster,
    /// The request number is below the client's window.
    #[error("request number below the client's window")]
    Stale,
    /// The replica is at a bound (mempool, pending replies, connections):
    /// retry later, or elsewhere.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// No certified reply within the gateway's wait bound (the request may
    /// still commit: resubmit the same request to learn its outcome).
    #[error("timed out waiting for a certified reply")]
    Timeout,
    /// The looked-up pulse or receipt is not (or no longer) stored.
    #[error("not found")]
    NotFound,
    /// The replica is shutting down or not yet serving.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl ApiError {
    /// The HTTP status of the JSON form.
    pub fn http_status(&self) -> u16 {
        match self {
            ApiError::Malformed(_) | ApiError::Stale => 400,
            ApiError::BadSignature | ApiError::WrongCluster => 403,
            ApiError::NotFound => 404,
            ApiError::Oversized(_) => 413,
            ApiError::Overloaded(_) => 429,
            ApiError::Unavailable(_) => 503,
            ApiError::Timeout => 504,
        }
    }
}

/// Appends `frame` to `out` as a length-prefixed frame.
pub fn encode_frame<T: Serialize>(frame: &T, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    codec::encode_into(frame, out);
    let len = out.len() - start - 4;
    assert!(
        len <= CLIENT_FRAME_BYTES_MAX,
        "frame of {len} bytes over the limit"
    );
    out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
}

/// Why bytes on a client connection are not a frame.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is over [`CLIENT_FRAME_BYTES_MAX`].
    #[error("frame of {0} bytes is over the limit")]
    Oversized(usize),
    /// The body does not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Takes one whole frame off the front of `buf`, if it holds one.
/// `Ok(None)`: more bytes are needed. An error poisons the connection.
pub fn decode_frame<T: serde::de::DeserializeOwned>(
    buf: &mut Vec<u8>,
) -> Result<Option<T>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > CLIENT_FRAME_BYTES_MAX {
        return Err(FrameError::Oversized(len));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let frame = codec::decode(&buf[4..4 + len], CLIENT_FRAME_BYTES_MAX);
    buf.drain(..4 + len);
    Ok(Some(frame?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_split_anywhere() {
        let frames = vec![
            ClientFrame::Status { id: 7 },
            ClientFrame::Pulses {
                id: 8,
                from: PulseNumber(3),
                count: 2,
            },
        ];
        let mut bytes = Vec::new();
        for f in &frames {
            encode_frame(f, &mut bytes);
        }
        for split in 0..bytes.len() {
            let mut buf = bytes[..split].to_vec();
            let mut got = Vec::new();
            while let Some(f) = decode_frame::<ClientFrame>(&mut buf).unwrap() {
                got.push(f);
            }
            buf.extend_from_slice(&bytes[split..]);
            while let Some(f) = decode_frame::<ClientFrame>(&mut buf).unwrap() {
                got.push(f);
            }
            assert_eq!(got, frames, "split at {split}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn an_oversized_length_prefix_is_refused_before_buffering() {
        let mut buf = ((CLIENT_FRAME_BYTES_MAX + 1) as u32).to_be_bytes().to_vec();
        assert_eq!(
            decode_frame::<ClientFrame>(&mut buf),
            Err(FrameError::Oversized(CLIENT_FRAME_BYTES_MAX + 1))
        );
    }

    #[test]
    fn garbage_is_a_codec_error_not_a_panic() {
        let mut buf = vec![0, 0, 0, 3, 0xff, 0xff, 0xff];
        assert!(matches!(
            decode_frame::<ClientFrame>(&mut buf),
            Err(FrameError::Codec(_))
        ));
    }
}
