//! Micro-benchmark of one Plumtree step at n = 4: the origin broadcasting a
//! request-sized payload, and a peer receiving it (validate hook, cache,
//! deliver, eager forward or IHAVE). The validator here only hashes the
//! payload for its id; the signature check the node's validator adds is
//! counted by the `primitives` benchmarks.
//!
//! `cargo bench --profile release -p gossip --bench plumtree`
//! (BENCHMARKS.md, "Micro-benchmarks").

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gossip::{Config, InEvent, Invalid, Message, Plumtree, Validator};
use primitives::{Bytes, Digest, ReplicaId};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

/// Replicas.
const N: usize = 4;

/// Bytes of one gossiped payload: an encoded single-op signed request.
const PAYLOAD_BYTES: usize = 200;

/// Virtual time between two steps, µs.
const STEP_MICROS: u64 = 20;

/// Accepts everything; ids are the default blake3 of the payload.
struct AcceptAll;

impl Validator for AcceptAll {
    fn validate(&mut self, _id: &Digest, _payload: &[u8]) -> Result<(), Invalid> {
        Ok(())
    }
}

fn core(me: u16) -> Plumtree<AcceptAll> {
    let mut p = Plumtree::new(
        ReplicaId(me),
        N,
        Config::default(),
        AcceptAll,
        ChaCha8Rng::seed_from_u64(7),
    );
    for peer in (0..N as u16).filter(|p| *p != me) {
        p.handle(0, InEvent::PeerUp(ReplicaId(peer)))
            .expect("peer up");
    }
    p
}

fn payload(counter: u64) -> Bytes {
    let mut bytes = vec![0xAB; PAYLOAD_BYTES];
    bytes[..8].copy_from_slice(&counter.to_le_bytes());
    Bytes(bytes)
}

fn plumtree(c: &mut Criterion) {
    let mut g = c.benchmark_group("plumtree_n4");
    g.throughput(Throughput::Elements(1));
    let mut origin = core(0);
    let (mut now, mut counter) = (1u64, 0u64);
    g.bench_function("broadcast", |b| {
        b.iter(|| {
            now += STEP_MICROS;
            counter += 1;
            origin
                .handle(now, InEvent::Broadcast(payload(counter)))
                .expect("broadcast")
        })
    });
    let mut peer = core(1);
    g.bench_function("receive_gossip", |b| {
        b.iter(|| {
            now += STEP_MICROS;
            counter += 1;
            let event = InEvent::Message {
                from: ReplicaId(0),
                message: Message::Gossip {
                    hop: 1,
                    payload: payload(counter),
                },
            };
            black_box(peer.handle(now, event).expect("receive"))
        })
    });
    g.finish();
}

criterion_group!(benches, plumtree);
criterion_main!(benches);
