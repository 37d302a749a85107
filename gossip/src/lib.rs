//! The Plumtree epidemic broadcast core after Leitão, Pereira and Rodrigues,
//! "Epidemic Broadcast Trees" (SRDS 2007).
//!
//! Sans-IO, as iroh-gossip's `proto`: [`Plumtree::handle`]`(now, event) ->
//! events`. The libp2p binding lives in `node`, so this crate never depends
//! on libp2p.
//!
//! Codemap:
//! - [`plumtree`]: the state machine — eager push along a tree, lazy IHAVE
//!   to the other active peers, GRAFT after a timer, PRUNE on duplicates,
//!   anti-entropy summaries, fetch-by-digest, the validation hook;
//! - [`requests`]: the validation hook for signed client requests, shared
//!   by the replica and the simulator;
//! - [`message`]: the wire messages and their bounds;
//! - [`config`]: every limit and timeout, named;
//! - [`overlay`]: the bounded, symmetric active view for large clusters;
//! - [`sim`]: a deterministic network simulation that measures
//!   reliability, RMR and Last Delivery Hop, with Byzantine peers.
//!
//! **Architecture invariant:** no clock, no OS randomness, no IO, no hash
//! order. Time is the `now` argument; randomness comes from the caller's
//! seeded `ChaCha8Rng`. One seed, one trace.

mod cache;
pub mod config;
pub mod message;
pub mod overlay;
pub mod plumtree;
pub mod requests;
pub mod sim;

pub use config::Config;
pub use message::{Hop, Message, MessageError};
pub use plumtree::{
    Delivery, GossipError, InEvent, Invalid, OutEvent, Plumtree, Stats, Timer, Validator, Via,
};
pub use requests::RequestValidator;

#[cfg(test)]
mod core_tests;
#[cfg(test)]
mod sim_tests;
