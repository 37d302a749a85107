//! Deterministic simulation of a QLOCK cluster: one thread, one seeded
//! `rand_chacha` RNG, virtual time; the real protocol cores on a faulty
//! virtual network, disk and clock. Later also the local real-process
//! cluster harness and the benchmarks.
