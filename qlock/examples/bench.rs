//! Rough timings of the state machine: `cargo run -p qlock --release
//! --example bench`. Requests are signed before the clock starts (the
//! caller checks signatures; `execute_batch` does not).

// A measurement harness, not part of the core: it reads the wall clock to
// time the core, which itself never does.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use primitives::{
    ClusterId, Digest, HlcTimestamp, KeyPair, Request, RequestBody, RequestNumber, SeqNum,
};
use qlock::{
    decode_outcome, Config, Durability, LockMode, Op, OpResult, Priority, SessionId, StateMachine,
};
use std::time::{Duration, Instant};

const CLIENTS: usize = 2_000;
const BATCH: usize = 200;

struct Bench {
    sm: StateMachine,
    keys: Vec<KeyPair>,
    numbers: Vec<u64>,
    seq: u64,
    now: u64,
}

impl Bench {
    fn request(&mut self, c: usize, op: Op) -> Request {
        self.numbers[c] += 1;
        RequestBody {
            cluster: ClusterId(Digest([1; 32])),
            client: self.keys[c].public(),
            number: RequestNumber(self.numbers[c]),
            atomic: false,
            ops: vec![op.encode()],
        }
        .sign(&self.keys[c])
    }

    /// Executes `requests` in batches; returns the outcomes and the time.
    fn run(&mut self, name: &str, requests: Vec<Request>) -> Vec<qlock::OpOutcome> {
        let n = requests.len();
        let mut outcomes = Vec::with_capacity(n);
        let start = Instant::now();
        let mut digest_time = Duration::ZERO;
        for batch in requests.chunks(BATCH) {
            self.seq += 1;
            self.now += 1_000;
            let out =
                self.sm
                    .execute_batch(SeqNum(self.seq), HlcTimestamp::from_micros(self.now), batch);
            let t = Instant::now();
            std::hint::black_box(self.sm.state_digest());
            digest_time += t.elapsed();
            outcomes.extend(
                out.receipts
                    .iter()
                    .map(|r| decode_outcome(&r.result.0).unwrap()),
            );
        }
        let total = start.elapsed() - digest_time;
        println!(
            "{name:>10}: {n} ops in {total:?} = {:.0} ops/s ({:?}/op); state_digest {:?} per call",
            n as f64 / total.as_secs_f64(),
            total / n as u32,
            digest_time / n.div_ceil(BATCH) as u32
        );
        outcomes
    }
}

fn main() {
    let mut b = Bench {
        sm: StateMachine::new(Config::default()),
        keys: (0..CLIENTS)
            .map(|i| KeyPair::from_seed(&blake3::hash(&i.to_le_bytes()).into()))
            .collect(),
        numbers: vec![0; CLIENTS],
        seq: 0,
        now: 1_700_000_000_000_000,
    };
    let reqs: Vec<_> = (0..CLIENTS * 5)
        .map(|i| b.request(i % CLIENTS, Op::CreateSession { ttl: 600_000_000 }))
        .collect();
    let sessions: Vec<SessionId> = b
        .run("create", reqs)
        .into_iter()
        .map(|o| match o {
            Ok(OpResult::SessionCreated { session, .. }) => session,
            other => panic!("{other:?}"),
        })
        .collect();
    let reqs: Vec<_> = (0..sessions.len())
        .map(|i| {
            let op = Op::Acquire {
                session: sessions[i],
                resource: format!("resource-{}", i % 2_000),
                mode: if i % 3 == 0 {
                    LockMode::Exclusive
                } else {
                    LockMode::Shared
                },
                wait: Some(300_000_000),
            };
            b.request(i % CLIENTS, op)
        })
        .collect();
    b.run("acquire", reqs);
    let reqs: Vec<_> = (0..sessions.len())
        .map(|i| {
            let op = Op::Submit {
                queue: format!("queue-{}", i % 10),
                priority: Priority::ALL[i % 4],
                payload: primitives::Bytes(vec![7; 256]),
                dedup_key: None,
                durability: Durability::Sync,
            };
            b.request(i % CLIENTS, op)
        })
        .collect();
    b.run("submit", reqs);
    let reqs: Vec<_> = (0..sessions.len())
        .map(|i| {
            let op = Op::Claim {
                session: sessions[i],
                queue: format!("queue-{}", i % 10),
                visibility_timeout: 30_000_000,
            };
            b.request(i % CLIENTS, op)
        })
        .collect();
    b.run("claim", reqs);
    let reqs: Vec<_> = (0..sessions.len())
        .map(|i| {
            b.request(
                i % CLIENTS,
                Op::Release {
                    session: sessions[i],
                    resource: format!("resource-{}", i % 2_000),
                },
            )
        })
        .collect();
    b.run("release", reqs);

    let t = Instant::now();
    let chunks = b.sm.snapshot_chunks(1 << 20);
    let snap = t.elapsed();
    let bytes: usize = chunks.iter().map(Vec::len).sum();
    let t = Instant::now();
    let mut restored = StateMachine::restore(&chunks).unwrap();
    let restore = t.elapsed();
    assert_eq!(restored.state_digest(), b.sm.state_digest());
    println!(
        "snapshot: {bytes} bytes in {} chunks, {snap:?}; restore {restore:?}; sizes {:?}",
        chunks.len(),
        b.sm.sizes()
    );
}
