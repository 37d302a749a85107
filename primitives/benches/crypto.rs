//! Micro-benchmarks of what every request costs every replica: ed25519
//! sign, verify and batch verify (`primitives::keys`,
//! `request::verify_many`), the request digest, and the codec of a full
//! batch of signed requests.
//!
//! `cargo bench --profile release -p primitives --bench crypto`
//! (BENCHMARKS.md, "Micro-benchmarks").

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use primitives::keys;
use primitives::request::{verify_many, RequestLimits};
use primitives::{
    codec, Bytes, ClusterId, Digest, Domain, KeyPair, Request, RequestBody, RequestNumber,
};
use std::hint::black_box;

/// Requests in the largest batch benchmarked (PBFT's `batch_size_max`).
const BATCH_MAX: usize = 256;

/// Bytes of one op: the size of an encoded `Acquire` of a 16-character
/// resource name.
const OP_BYTES: usize = 40;

fn cluster() -> ClusterId {
    ClusterId(Digest([3; 32]))
}

fn key(i: usize) -> KeyPair {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
    KeyPair::from_seed(&seed)
}

/// `count` requests of `ops` ops each, from distinct clients.
fn requests(count: usize, ops: usize) -> Vec<Request> {
    requests_from(0, count, ops)
}

/// [`requests`] from the clients numbered `first..first + count`.
fn requests_from(first: usize, count: usize, ops: usize) -> Vec<Request> {
    (first..first + count)
        .map(|i| {
            let k = key(i);
            RequestBody {
                cluster: cluster(),
                client: k.public(),
                number: RequestNumber(i as u64 + 1),
                atomic: false,
                ops: (0..ops).map(|j| Bytes(vec![j as u8; OP_BYTES])).collect(),
            }
            .sign(&k)
        })
        .collect()
}

fn signatures(c: &mut Criterion) {
    let k = key(0);
    let public = k.public();
    let message = Digest::of(Domain::Test, b"a request digest");
    let signature = k.sign(Domain::RequestSignature, message.as_bytes());
    let mut g = c.benchmark_group("ed25519");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign", |b| {
        b.iter(|| k.sign(Domain::RequestSignature, black_box(message.as_bytes())))
    });
    g.bench_function("verify", |b| {
        b.iter(|| {
            public.verify(
                Domain::RequestSignature,
                black_box(message.as_bytes()),
                &signature,
            )
        })
    });
    g.finish();

    // A pass of PBFT votes: a PREPARE and a COMMIT for each of 2 seqs from
    // each of 3 peers (what a replica's `preverify` checks at once).
    let peers: Vec<KeyPair> = (1..4).map(key).collect();
    let votes: Vec<(Vec<u8>, usize)> = (0..12u8)
        .map(|i| (vec![i; 64], usize::from(i) % 3))
        .collect();
    let signed: Vec<_> = votes
        .iter()
        .map(|(m, p)| {
            (
                peers[*p].public(),
                Domain::Prepare,
                &m[..],
                peers[*p].sign(Domain::Prepare, m),
            )
        })
        .collect();
    let mut g = c.benchmark_group("ed25519_votes");
    g.throughput(Throughput::Elements(signed.len() as u64));
    g.bench_function("verify_many 12 from 3 signers", |b| {
        b.iter(|| {
            let verdicts = keys::verify_many(black_box(&signed));
            assert!(verdicts.iter().all(Result::is_ok));
            verdicts
        })
    });
    g.finish();

    let limits = RequestLimits::default();
    let mut g = c.benchmark_group("verify_many");
    for count in [1usize, 8, 64, BATCH_MAX] {
        let batch = requests(count, 1);
        g.throughput(Throughput::Elements(count as u64));
        g.bench_with_input(BenchmarkId::from_parameter(count), &batch, |b, batch| {
            b.iter(|| {
                let verdicts = verify_many(black_box(batch), cluster(), &limits);
                assert!(verdicts.iter().all(Result::is_ok));
                verdicts
            })
        });
    }
    g.finish();
}

fn digests(c: &mut Criterion) {
    let mut g = c.benchmark_group("request_digest");
    for ops in [1usize, 8] {
        let request = requests(1, ops).remove(0);
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("ops", ops), &request, |b, r| {
            b.iter(|| black_box(r).digest())
        });
    }
    g.finish();
}

fn codec_batch(c: &mut Criterion) {
    let batch = requests(BATCH_MAX, 1);
    let bytes = codec::encode(&batch);
    let mut g = c.benchmark_group("codec_256_requests");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("encode", |b| b.iter(|| codec::encode(black_box(&batch))));
    g.bench_function("decode", |b| {
        b.iter(|| {
            codec::decode::<Vec<Request>>(black_box(&bytes), codec::FRAME_BYTES_MAX)
                .expect("decodes")
        })
    });
    // One request at a time, as gossip and the client API see them.
    let one: Vec<Vec<u8>> = batch.iter().map(codec::encode).collect();
    g.bench_function("decode_each", |b| {
        b.iter(|| {
            one.iter()
                .map(|bytes| Request::decode(bytes, &RequestLimits::default()).expect("decodes"))
                .collect::<Vec<Request>>()
        })
    });
    // Clients never seen before: every key is decompressed (the rows
    // above hit the per-thread key cache after their first iteration).
    // The batch is made on another thread: making its keys here would put
    // them in this thread's cache.
    let mut fresh = 0usize;
    g.bench_function("decode_unseen_keys", |b| {
        b.iter_batched(
            || {
                fresh += 1;
                let first = fresh * 1_000_000;
                std::thread::spawn(move || codec::encode(&requests_from(first, BATCH_MAX, 1)))
                    .join()
                    .expect("the batch maker does not panic")
            },
            |bytes| {
                codec::decode::<Vec<Request>>(black_box(&bytes), codec::FRAME_BYTES_MAX)
                    .expect("decodes")
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, signatures, digests, codec_batch);
criterion_main!(benches);
