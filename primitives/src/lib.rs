//! The foundation every QLOCK crate stands on.
//!
//! It holds what the protocol cores, the storage layer, the node and the
//! client must agree on byte for byte:
//!
//! - [`ids`]: the newtypes of the PBFT paper and of the cluster
//!   ([`ReplicaId`], [`ClientId`], [`ViewNumber`], [`SeqNum`], [`PulseNumber`],
//!   [`ClusterId`]);
//! - [`digest`]: blake3 [`Digest`]s and the registry of hashing [`Domain`]s —
//!   every hashed or signed type has its own context string, so a signature
//!   over one message type never passes as another;
//! - [`keys`]: ed25519 key pairs, domain-separated signing, batch verification
//!   and the key file format;
//! - [`membership`]: the replica set, `f` and the quorum sizes;
//! - [`codec`]: the one wire encoding (bincode 2, fixed configuration, a size
//!   limit on every decode);
//! - [`request`]: the signed client request of DESIGN.md step 1;
//! - [`window`]: the per-client sliding window of request numbers;
//! - [`hlc`]: the hybrid logical clock (Kulkarni et al. 2014).
//!
//! **Architecture invariant:** this crate reads no clock and no OS randomness
//! and iterates no hash maps (clippy enforces it, see `clippy.toml`). The only
//! IO it does is reading and writing key files, on request.

pub mod codec;
pub mod digest;
pub mod hlc;
pub mod ids;
pub mod keys;
pub mod membership;
pub mod request;
pub mod statement;
pub mod window;

mod bytes_serde;
pub use bytes_serde::Bytes;

pub use codec::CodecError;
pub use digest::{Digest, Domain};
pub use hlc::{Hlc, HlcError, HlcTimestamp};
pub use ids::{ClientId, ClusterId, PulseNumber, ReplicaId, RequestNumber, SeqNum, ViewNumber};
pub use keys::{KeyPair, PublicKey, Signature, SignatureError};
pub use membership::{Membership, MembershipError};
pub use request::{Request, RequestBody, RequestError, RequestLimits};
pub use statement::{BatchStatement, CheckpointStatement, Receipt};
pub use window::{RequestWindow, WindowVerdict};
