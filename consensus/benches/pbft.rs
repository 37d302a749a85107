//! Micro-benchmark of one PBFT round at a backup (n = 4): 256 requests
//! become ready, then PRE-PREPARE from the primary, PREPAREs from the two
//! other backups and COMMITs from the three others arrive; every persist
//! is acknowledged at once; the round ends when the batch is handed over
//! for execution. What it costs: verifying 6 signed messages, signing a
//! PREPARE and a COMMIT, the batch digest and the bookkeeping.
//!
//! `cargo bench --profile release -p consensus --bench pbft`
//! (BENCHMARKS.md, "Micro-benchmarks").

use consensus::{Batch, Config, Input, Message, Output, PrePrepare, Replica, Vote, WireMessage};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use primitives::{
    Digest, Domain, HlcTimestamp, KeyPair, Membership, ReplicaId, SeqNum, ViewNumber,
};
use std::collections::VecDeque;

/// Replicas.
const N: usize = 4;

/// Requests in the batch (the default `batch_size_max`).
const BATCH: usize = 256;

/// The benchmark's local clock, µs since the epoch.
const NOW: u64 = 1_800_000_000_000_000;

/// The backup under test.
const ME: ReplicaId = ReplicaId(1);

struct Round {
    cfg: Config,
    digests: Vec<Digest>,
    messages: Vec<(ReplicaId, WireMessage)>,
}

fn round() -> Round {
    let keys: Vec<KeyPair> = (0..N)
        .map(|i| KeyPair::from_seed(&[i as u8 + 1; 32]))
        .collect();
    let membership =
        Membership::new("bench", keys.iter().map(KeyPair::public).collect()).expect("membership");
    let cfg = Config::new(membership, ME, keys[ME.index()].clone());
    let digests: Vec<Digest> = (0..BATCH as u64)
        .map(|i| Digest::of(Domain::Test, &i.to_le_bytes()))
        .collect();
    let batch = Batch {
        digests: digests.clone(),
        batch_time: HlcTimestamp::from_micros(NOW),
    };
    let batch_digest = batch.digest();
    let (view, seq) = (ViewNumber(0), SeqNum(1));
    let signed = |from: usize, m: Message| {
        (
            ReplicaId(from as u16),
            WireMessage::Signed(m.sign(cfg.cluster, &keys[from])),
        )
    };
    let vote = |replica: usize| Vote {
        view,
        seq,
        batch: batch_digest,
        replica: ReplicaId(replica as u16),
    };
    let mut messages = vec![signed(
        0,
        Message::PrePrepare(PrePrepare { view, seq, batch }),
    )];
    messages.extend([2, 3].map(|r| signed(r, Message::Prepare(vote(r)))));
    messages.extend([0, 2, 3].map(|r| signed(r, Message::Commit(vote(r)))));
    Round {
        cfg,
        digests,
        messages,
    }
}

/// Steps `input` and everything it leads to (persist acknowledgements,
/// execution reports); returns how many batches were handed over.
fn drive(replica: &mut Replica, input: Input) -> usize {
    let mut work = VecDeque::from([input]);
    let mut executed = 0;
    while let Some(input) = work.pop_front() {
        for output in replica.step(NOW, input) {
            match output {
                Output::Persist { id, .. } => work.push_back(Input::PersistAck { id }),
                Output::Execute(batch) => {
                    executed += 1;
                    work.push_back(Input::Executed {
                        seq: batch.seq,
                        app_digest: Digest::ZERO,
                    });
                }
                _ => {}
            }
        }
    }
    executed
}

fn pbft(c: &mut Criterion) {
    let r = round();
    let mut g = c.benchmark_group("pbft_backup_round");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("batch_256", |b| {
        b.iter_batched(
            || {
                let mut replica = Replica::new(r.cfg.clone()).expect("config");
                drive(&mut replica, Input::Start);
                (replica, r.messages.clone())
            },
            |(mut replica, messages)| {
                for digest in &r.digests {
                    drive(&mut replica, Input::RequestReady { digest: *digest });
                }
                let executed: usize = messages
                    .into_iter()
                    .map(|(from, message)| drive(&mut replica, Input::Peer { from, message }))
                    .sum();
                assert_eq!(executed, 1, "the round executes its batch");
                replica
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, pbft);
criterion_main!(benches);
