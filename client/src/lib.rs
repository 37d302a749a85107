//! The QLOCK Rust client library (the `qlock` CLI is its binary).
//!
//! It signs requests with the client's own key and verifies every reply's
//! certificate against the cluster's public keys, so a lying gateway can
//! stall a client but never fool it: a reply that does not verify counts as
//! that replica's failure and the *same* signed request goes to another
//! replica (the cluster executes a request number once).
//!
//! - [`api`]: the client protocol's frames, shared with `qlockd`;
//! - [`config`]: the `cluster.toml` a client loads ([`ClusterConfig`]);
//! - [`Client`]: connect, [`Client::submit`] (pipelined: many concurrent
//!   calls share one connection, up to 128 requests in flight), typed
//!   helpers for sessions, locks ([`LockGuard`]) and queues
//!   ([`ClaimedMessage`]), [`Client::events`], pulses and receipt proofs;
//! - [`verify`]: the checks applied to every answer;
//! - [`numbers`]: request-number allocation within the replicas' window;
//! - [`ClientError`]: typed errors whose messages say what to do.
//!
//! ```no_run
//! # async fn demo() -> Result<(), client::ClientError> {
//! use client::{Client, ClientOptions, ClusterConfig};
//! use std::time::Duration;
//! let config = ClusterConfig::load("cluster.toml".as_ref())?;
//! let key = primitives::KeyPair::load("me.key".as_ref())?;
//! let client = Client::connect(config, key, ClientOptions::default()).await?;
//! let session = client.create_session(Duration::from_secs(10)).await?;
//! let guard = client
//!     .acquire(session.id, "db-migration", qlock::LockMode::Exclusive, None)
//!     .await?;
//! println!("fencing token {}", guard.token().as_u64());
//! guard.release().await?;
//! # Ok(()) }
//! ```

pub mod api;
mod client;
pub mod config;
mod conn;
mod error;
pub mod numbers;
mod ops;
pub mod verify;

pub use client::{Client, ClientOptions, Events, Session, VerifiedReply, WaitOutcome};
pub use config::{ClusterConfig, ReplicaEndpoint};
pub use error::{ClientError, Failures, ReplicaError, ReplicaFailure};
pub use ops::{ClaimedMessage, LockGuard, Submitted};
