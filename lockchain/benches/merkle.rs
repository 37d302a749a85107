//! Micro-benchmark of the receipts tree every replica builds once per
//! executed batch (the root it signs in its `BatchStatement`) and of the
//! inclusion proof a gateway cuts for each reply.
//!
//! `cargo bench --profile release -p lockchain --bench merkle`
//! (BENCHMARKS.md, "Micro-benchmarks").

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lockchain::ReceiptTree;
use primitives::{Bytes, Digest, Domain, HlcTimestamp, Receipt, SeqNum};
use std::hint::black_box;

/// Bytes of one encoded op result (an `Acquired` with its fencing token).
const RESULT_BYTES: usize = 24;

fn receipts(count: usize) -> Vec<Receipt> {
    (0..count)
        .map(|i| Receipt {
            request: Digest::of(Domain::Test, &(i as u64).to_le_bytes()),
            op_index: 0,
            seq: SeqNum(7),
            time: HlcTimestamp::from_micros(1_800_000_000_000_000),
            result: Bytes(vec![i as u8; RESULT_BYTES]),
        })
        .collect()
}

fn receipt_tree(c: &mut Criterion) {
    let mut g = c.benchmark_group("receipt_tree");
    for count in [256usize, 1_000] {
        let batch = receipts(count);
        g.throughput(Throughput::Elements(count as u64));
        g.bench_with_input(BenchmarkId::new("root", count), &batch, |b, batch| {
            b.iter(|| ReceiptTree::new(black_box(batch)).root())
        });
        let tree = ReceiptTree::new(&batch);
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("proof", count), &tree, |b, tree| {
            b.iter(|| tree.proof(black_box(count as u64 / 3)).expect("in range"))
        });
    }
    g.finish();
}

criterion_group!(benches, receipt_tree);
criterion_main!(benches);
