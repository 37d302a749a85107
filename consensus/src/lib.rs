//! The PBFT replica core after Castro & Liskov (OSDI'99; TOCS 2002).
//!
//! Sans-IO and deterministic: the driver feeds it inputs (a request digest
//! entered the mempool, a peer message, a timer, a persist acknowledgement,
//! a fetched payload, an execution result) with the current time, and it
//! returns outputs (send/broadcast, persist, set timer, fetch payload,
//! execute batch). It never touches a socket, a disk, the clock or OS
//! randomness. See ARCHITECTURE.md.
