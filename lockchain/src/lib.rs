//! The lockchain: receipt Merkle trees (RFC 6962/9162 style over blake3),
//! batch certificates, pulse headers with quorum certificates, and offline
//! verification of receipts and of the header chain.
//!
//! Pure: anyone with the cluster's public keys can verify, offline.
