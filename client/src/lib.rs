//! The QLOCK Rust client library (and, later, the `qlock` CLI).
//!
//! It signs requests with the client's own key and verifies every reply's
//! certificate against the cluster's public keys, so a lying gateway can
//! stall a client but never fool it.
