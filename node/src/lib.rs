//! The QLOCK replica (`qlockd`) as a library, so its parts can be tested
//! in-process.
//!
//! - [`config`]: the TOML configuration, checked into typed values, and
//!   `init-cluster`.
//! - [`api`]: the client API servers (binary TCP protocol, HTTP/JSON,
//!   `/metrics`, `/healthz`).
//! - [`telemetry`]: logging and the metrics registry.
//! - [`net`]: the libp2p network — TCP + Noise + Yamux, admission of the
//!   configured replicas only, the PBFT and gossip frame protocols, and the
//!   driver that connects the Plumtree core to the gossip protocol.
//!
//! **Architecture invariant:** this crate is where IO lives (tokio, libp2p,
//! the clock); the protocol cores it drives do none.

pub mod api;
pub mod config;
pub mod net;
pub mod replica;
pub mod telemetry;
