//! Rough costs and sizes, for the report and for capacity planning. Not a
//! benchmark harness: run with
//! `cargo test -p lockchain --release --test measure -- --ignored --nocapture`.

// Measuring needs the wall clock, which the core crates' clippy.toml bans;
// this test binary is not part of the core.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use common::{cluster, pulse, receipts};
use lockchain::{ReceiptTree, Threshold};
use primitives::{Digest, SeqNum};
use std::time::Instant;

fn per_item(label: &str, items: usize, run: impl FnOnce()) {
    let start = Instant::now();
    run();
    let elapsed = start.elapsed();
    println!(
        "{label}: {:.2} µs each ({items} in {:?})",
        elapsed.as_secs_f64() * 1e6 / items as f64,
        elapsed
    );
}

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn costs_and_sizes() {
    let c = cluster(4);
    let batch = receipts(SeqNum(1), 1024);
    per_item(
        "receipt tree of 1024 receipts, per receipt",
        1024 * 20,
        || {
            for _ in 0..20 {
                std::hint::black_box(ReceiptTree::new(&batch).root());
            }
        },
    );
    let tree = ReceiptTree::new(&batch);
    per_item("inclusion proof out of a 1024 tree", 1024, || {
        for i in 0..1024 {
            std::hint::black_box(tree.proof(i));
        }
    });

    // 128 batches per pulse, 64 receipts each.
    let p = pulse(&c, 0, SeqNum(1), &[64; 128], Digest::ZERO, &[0, 1, 2, 3]);
    let proof = p.receipt_proof(SeqNum(77), 33);
    println!(
        "pulse proof (n = 4, 4 signers, 64 × 128): {} bytes",
        proof.to_bytes().len()
    );
    per_item("verify receipt in pulse (n = 4, 4 signatures)", 200, || {
        for _ in 0..200 {
            c.verifier.verify_receipt_in_pulse(&proof).unwrap();
        }
    });
    let batch_proof = common::batch_proof(&c, SeqNum(9), 1024, 500, &[0, 1]);
    println!(
        "batch proof (1024 receipts, 2 signers): {} bytes",
        batch_proof.to_bytes().len()
    );
    per_item(
        "verify receipt in batch (f + 1 = 2 signatures)",
        200,
        || {
            for _ in 0..200 {
                c.verifier
                    .verify_receipt_in_batch(&batch_proof, Threshold::WeakQuorum)
                    .unwrap();
            }
        },
    );
    let batch_proof = common::batch_proof(&c, SeqNum(9), 1024, 500, &[0, 1, 2]);
    per_item(
        "verify receipt in batch (2f + 1 = 3 signatures)",
        200,
        || {
            for _ in 0..200 {
                c.verifier
                    .verify_receipt_in_batch(&batch_proof, Threshold::Quorum)
                    .unwrap();
            }
        },
    );
}
