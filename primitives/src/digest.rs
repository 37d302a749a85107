//! blake3 digests and the registry of hashing domains.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A 32-byte blake3 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Digest(#[serde(with = "crate::bytes_serde")] pub [u8; 32]);

impl Digest {
    /// The all-zero digest: "nothing before this" (e.g. the previous header of
    /// the first pulse).
    pub const ZERO: Digest = Digest([0; 32]);

    /// The digest of `bytes` in `domain`.
    pub fn of(domain: Domain, bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::new(domain);
        hasher.update(bytes);
        hasher.finalize()
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight hex digits tell digests apart in logs and test failures.
        write!(f, "Digest({})", &self.to_hex()[..8])
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// An incremental hasher bound to one [`Domain`].
pub struct Hasher(blake3::Hasher);

impl Hasher {
    /// A hasher whose output can only collide with hashes of the same domain.
    pub fn new(domain: Domain) -> Hasher {
        Hasher(Self::started(domain).clone())
    }

    /// Each domain's hasher with its context key already derived: deriving
    /// it hashes the context string, as much work again as hashing a small
    /// message (state-digest entries, votes, request bodies), so it is done
    /// once per process. A clone of an unfed hasher is a small copy.
    fn started(domain: Domain) -> &'static blake3::Hasher {
        static STARTED: std::sync::OnceLock<[blake3::Hasher; Domain::ALL.len()]> =
            std::sync::OnceLock::new();
        &STARTED.get_or_init(|| Domain::ALL.map(|d| blake3::Hasher::new_derive_key(d.context())))
            [domain as usize]
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(bytes);
        self
    }

    /// The digest of everything fed so far.
    pub fn finalize(&self) -> Digest {
        Digest(*self.0.finalize().as_bytes())
    }
}

/// Every kind of value QLOCK hashes or signs, each with its own context
/// string (blake3's `derive_key` mode). A digest or signature made in one
/// domain never verifies in another, so a signed PREPARE can never be
/// replayed as a COMMIT, nor a client request as a checkpoint.
///
/// Add a variant for every new hashed or signed type; never reuse one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Domain {
    /// The cluster configuration: its digest is the [`crate::ClusterId`].
    ClusterConfig,
    /// The body of a client request: its digest names the request.
    Request,
    /// Signatures a client makes over a request digest.
    RequestSignature,
    /// PBFT PRE-PREPARE.
    PrePrepare,
    /// PBFT PREPARE.
    Prepare,
    /// PBFT COMMIT.
    Commit,
    /// PBFT CHECKPOINT (a signature over a pulse header).
    Checkpoint,
    /// PBFT VIEW-CHANGE.
    ViewChange,
    /// PBFT NEW-VIEW.
    NewView,
    /// A batch of request digests ordered by consensus.
    Batch,
    /// A replica's signature over `(cluster id, seq, receipts root)`.
    BatchCertificate,
    /// A lockchain pulse header.
    PulseHeader,
    /// A receipt: one operation's outcome.
    Receipt,
    /// Leaf and node hashes of a Merkle tree (RFC 6962 prefixes inside).
    MerkleTree,
    /// The application state digest.
    StateDigest,
    /// A chunk of a state snapshot.
    SnapshotChunk,
    /// A gossip message id.
    GossipMessage,
    /// A storage record checksum.
    StorageRecord,
    /// The name under which a verified signature is remembered
    /// (`lockchain::CheckedSignatures`; never stored or sent).
    CheckedSignature,
    /// Test-only domain, so tests can hash without squatting on a real one.
    Test,
}

impl Domain {
    /// Every domain, for tests that check the registry.
    pub const ALL: [Domain; 20] = [
        Domain::ClusterConfig,
        Domain::Request,
        Domain::RequestSignature,
        Domain::PrePrepare,
        Domain::Prepare,
        Domain::Commit,
        Domain::Checkpoint,
        Domain::ViewChange,
        Domain::NewView,
        Domain::Batch,
        Domain::BatchCertificate,
        Domain::PulseHeader,
        Domain::Receipt,
        Domain::MerkleTree,
        Domain::StateDigest,
        Domain::SnapshotChunk,
        Domain::GossipMessage,
        Domain::StorageRecord,
        Domain::CheckedSignature,
        Domain::Test,
    ];

    /// The blake3 `derive_key` context: globally unique, hard-coded, never
    /// changed once released (changing it changes every digest).
    pub const fn context(self) -> &'static str {
        match self {
            Domain::ClusterConfig => "qlock 2026-11 cluster config v1",
            Domain::Request => "qlock 2026-11 request body v1",
            Domain::RequestSignature => "qlock 2026-11 request signature v1",
            Domain::PrePrepare => "qlock 2026-11 pbft pre-prepare v1",
            Domain::Prepare => "qlock 2026-11 pbft prepare v1",
            Domain::Commit => "qlock 2026-11 pbft commit v1",
            Domain::Checkpoint => "qlock 2026-11 pbft checkpoint v1",
            Domain::ViewChange => "qlock 2026-11 pbft view-change v1",
            Domain::NewView => "qlock 2026-11 pbft new-view v1",
            Domain::Batch => "qlock 2026-11 batch v1",
            Domain::BatchCertificate => "qlock 2026-11 batch certificate v1",
            Domain::PulseHeader => "qlock 2026-11 pulse header v1",
            Domain::Receipt => "qlock 2026-11 receipt v1",
            Domain::MerkleTree => "qlock 2026-11 merkle tree v1",
            Domain::StateDigest => "qlock 2026-11 state digest v1",
            Domain::SnapshotChunk => "qlock 2026-11 snapshot chunk v1",
            Domain::GossipMessage => "qlock 2026-11 gossip message v1",
            Domain::StorageRecord => "qlock 2026-11 storage record v1",
            Domain::CheckedSignature => "qlock 2026-12 checked signature v1",
            Domain::Test => "qlock 2026-11 test v1",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_domain_has_a_distinct_context() {
        let contexts: BTreeSet<_> = Domain::ALL.iter().map(|d| d.context()).collect();
        assert_eq!(contexts.len(), Domain::ALL.len());
    }

    #[test]
    fn same_bytes_in_two_domains_hash_differently() {
        let digests: BTreeSet<_> = Domain::ALL
            .iter()
            .map(|d| Digest::of(*d, b"same bytes"))
            .collect();
        assert_eq!(digests.len(), Domain::ALL.len());
    }

    #[test]
    fn the_started_hashers_are_blake3_derive_key_of_each_context() {
        for (i, domain) in Domain::ALL.iter().enumerate() {
            assert_eq!(*domain as usize, i, "Domain::ALL is in declaration order");
            for bytes in [&b""[..], b"x", &[7u8; 2000]] {
                assert_eq!(
                    Digest::of(*domain, bytes).0,
                    blake3::derive_key(domain.context(), bytes),
                    "{domain:?}"
                );
            }
        }
    }

    #[test]
    fn incremental_hashing_equals_one_shot() {
        let mut h = Hasher::new(Domain::Test);
        h.update(b"ab").update(b"cd");
        assert_eq!(h.finalize(), Digest::of(Domain::Test, b"abcd"));
    }
}
