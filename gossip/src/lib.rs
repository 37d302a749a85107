//! The Plumtree epidemic broadcast core after Leitão, Pereira and Rodrigues,
//! "Epidemic Broadcast Trees" (SRDS 2007).
//!
//! Sans-IO, as iroh-gossip's `proto`: `handle(now, event) -> events`. The
//! libp2p binding lives in `node`, so this crate never depends on libp2p.
