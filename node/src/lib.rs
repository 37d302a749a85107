//! The QLOCK replica (`qlockd`) as a library, so its parts can be tested
//! in-process.
//!
//! - [`net`]: the libp2p network — TCP + Noise + Yamux, admission of the
//!   configured replicas only, the PBFT and gossip frame protocols, and the
//!   driver that connects the Plumtree core to the gossip protocol.
//!
//! **Architecture invariant:** this crate is where IO lives (tokio, libp2p,
//! the clock); the protocol cores it drives do none.

pub mod net;
