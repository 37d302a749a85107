//! Micro-benchmark of one group commit: `Store::commit` of the write set a
//! replica syncs for one batch (the accepted PRE-PREPARE and the prepared
//! certificate as safety records, the log entry with its commit
//! certificate, the batch's request payloads and its receipts), synced to
//! disk as in production.
//!
//! `cargo bench --profile release -p storage --bench commit`
//! (BENCHMARKS.md, "Micro-benchmarks"). The store lives in a temporary
//! directory (`TMPDIR`), so the number is that disk's sync latency plus
//! RocksDB's work.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use primitives::{Digest, Domain, PulseNumber, SeqNum};
use storage::{SafetyKey, StorageConfig, Store, WriteSet};

/// Bytes of one encoded signed single-op request.
const PAYLOAD_BYTES: usize = 200;

/// Bytes of one digest in an encoded batch.
const DIGEST_BYTES: usize = 33;

/// Bytes of one signed vote (a PREPARE or COMMIT with its signature).
const VOTE_BYTES: usize = 140;

/// Bytes of one receipt in the encoded receipts of a batch.
const RECEIPT_BYTES: usize = 110;

/// The write set of batch `seq` with `requests` requests.
fn write_set(seq: SeqNum, requests: usize) -> WriteSet {
    let batch = vec![0x5A; requests * DIGEST_BYTES + 24];
    let pre_prepare = vec![0x17; batch.len() + 96];
    let prepared = vec![0x18; 3 * VOTE_BYTES + 64];
    let certificate = vec![0x19; 3 * VOTE_BYTES + batch.len()];
    let mut set = WriteSet::new();
    set.put_safety(SafetyKey::Accepted(seq), pre_prepare)
        .put_safety(SafetyKey::Prepared(seq), prepared)
        .put_log(seq, &batch, &certificate)
        .put_receipts(
            PulseNumber(seq.0 / 128),
            seq,
            &vec![0x1A; requests * RECEIPT_BYTES],
        );
    for i in 0..requests {
        let mut name = seq.0.to_le_bytes().to_vec();
        name.extend_from_slice(&(i as u64).to_le_bytes());
        let digest = Digest::of(Domain::Test, &name);
        set.put_payload(digest, seq, &[i as u8; PAYLOAD_BYTES]);
    }
    set
}

fn commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open(dir.path(), StorageConfig::default()).expect("store opens");
    let mut seq = 0u64;
    let mut g = c.benchmark_group("store_commit_synced");
    g.sample_size(50);
    for requests in [8usize, 64, 256] {
        g.throughput(Throughput::Elements(requests as u64));
        g.bench_function(BenchmarkId::new("requests", requests), |b| {
            b.iter_batched(
                || {
                    seq += 1;
                    write_set(SeqNum(seq), requests)
                },
                |set| store.commit(set).expect("commit"),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, commit);
criterion_main!(benches);
