//! The QLOCK replicated state machine: sessions, locks with fencing tokens,
//! and durable priority queues.
//!
//! Pure and deterministic: every replica executes the same committed batches
//! at the same effective time and reaches the same state digest. No IO, no
//! clock: time comes with each batch.
