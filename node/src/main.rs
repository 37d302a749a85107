//! `qlockd`, the QLOCK replica binary.
//!
//! The only place that does IO: it wires the sans-IO cores to libp2p,
//! RocksDB (through `storage`), the clock and the client API.

fn main() {
    eprintln!("qlockd: the replica binary is not built yet (see issue 10)");
    std::process::exit(2);
}
