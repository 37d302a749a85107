//! The lockchain: receipt Merkle trees (RFC 6962/9162 style over blake3),
//! batch certificates, pulse headers with quorum certificates, and offline
//! verification of receipts and of the header chain.
//!
//! Pure: anyone with the cluster's public keys can verify, offline.
//!
//! # Codemap
//!
//! - [`merkle`]: leaf and node hashes with distinct prefixes, the tree over
//!   any number of leaves, inclusion proofs and their verification.
//! - [`certificate`]: signatures from distinct configured replicas over a
//!   [`primitives::BatchStatement`] ([`BatchCertificate`]) or over a pulse
//!   header's [`primitives::CheckpointStatement`] ([`PulseCertificate`], the
//!   pulse's quorum certificate).
//! - [`pulse`]: the [`PulseHeader`], the tree over a pulse's batch roots
//!   ([`PulseBatches`]) and the hash-chain link check ([`verify_link`]).
//! - [`checked`]: [`CheckedSignatures`], a bounded memory of certificate
//!   signatures already found valid, shared by the clients of a process.
//! - [`proof`]: what a client or auditor holds — [`ReceiptBatchProof`] and
//!   [`ReceiptPulseProof`] — and the [`Verifier`] that checks them and a
//!   chain of certified headers.
//! - [`format`](mod@format): the compact byte format of all of the above, specified in
//!   `lockchain/FORMAT.md`.
//! - [`error`]: [`VerifyError`] (which check failed) and [`DecodeError`].
//!
//! What the node calls: [`ReceiptTree::new`] after executing a batch (root
//! to sign, paths for replies), [`PulseBatches::new`] +
//! [`PulseBatches::header`] at a pulse boundary (header whose checkpoint
//! statement consensus signs), [`BatchCertificate::add`] /
//! [`PulseCertificate::add`] to collect signatures.
//!
//! **Architecture invariant:** no IO, no clock, no randomness, no hash-order
//! iteration. Every input that comes from outside is bounded (see
//! [`DecodeLimits`], [`merkle::PATH_LEN_MAX`],
//! [`primitives::membership::REPLICAS_MAX`]) and refused with a typed error,
//! never a panic.

pub mod certificate;
pub mod checked;
pub mod error;
pub mod format;
pub mod merkle;
pub mod proof;
pub mod pulse;

pub use certificate::{BatchCertificate, PulseCertificate, ReplicaSignature, Threshold};
pub use checked::{CheckedSignatures, CHECKED_SIGNATURES_MAX};
pub use error::{ChainError, DecodeError, VerifyError};
pub use format::DecodeLimits;
pub use merkle::{InclusionProof, MerkleError, MerkleTree, ReceiptTree};
pub use proof::{ReceiptBatchProof, ReceiptPulseProof, Verifier};
pub use pulse::{verify_link, PulseBatches, PulseHeader};
