//! A small driver for tests: clients with keys, request numbers, batches.

#![allow(dead_code)]

use primitives::{
    ClusterId, Digest, HlcTimestamp, KeyPair, Request, RequestBody, RequestNumber, SeqNum,
};
use qlock::{decode_outcome, BatchOutcome, Config, Op, OpOutcome, StateMachine};

pub const SEC: u64 = 1_000_000;
pub const T0: u64 = 1_700_000_000 * SEC;

pub struct Harness {
    pub sm: StateMachine,
    pub seq: u64,
    pub now: u64,
    pub keys: Vec<KeyPair>,
    pub numbers: Vec<u64>,
}

impl Harness {
    pub fn new(config: Config, clients: usize) -> Harness {
        Harness {
            sm: StateMachine::new(config),
            seq: 0,
            now: T0,
            keys: (0..clients)
                .map(|i| KeyPair::from_seed(&[i as u8 + 1; 32]))
                .collect(),
            numbers: vec![0; clients],
        }
    }

    /// A signed request of `client` with the next request number.
    pub fn request(&mut self, client: usize, ops: &[Op], atomic: bool) -> Request {
        self.numbers[client] += 1;
        self.request_numbered(client, self.numbers[client], ops, atomic)
    }

    pub fn request_numbered(
        &self,
        client: usize,
        number: u64,
        ops: &[Op],
        atomic: bool,
    ) -> Request {
        let key = &self.keys[client];
        RequestBody {
            cluster: ClusterId(Digest([9; 32])),
            client: key.public(),
            number: RequestNumber(number),
            atomic,
            ops: ops.iter().map(Op::encode).collect(),
        }
        .sign(key)
    }

    /// Executes a batch at `now` (which must not go backwards).
    pub fn batch(&mut self, requests: &[Request]) -> BatchOutcome {
        self.seq += 1;
        self.sm.execute_batch(
            SeqNum(self.seq),
            HlcTimestamp::from_micros(self.now),
            requests,
        )
    }

    /// Runs one request of ops; returns their outcomes and the batch outcome.
    pub fn run_ops(
        &mut self,
        client: usize,
        ops: &[Op],
        atomic: bool,
    ) -> (Vec<OpOutcome>, BatchOutcome) {
        let request = self.request(client, ops, atomic);
        let out = self.batch(std::slice::from_ref(&request));
        (own_outcomes(&out, &request), out)
    }

    /// Runs one op; returns its outcome and the batch outcome.
    pub fn run(&mut self, client: usize, op: Op) -> (OpOutcome, BatchOutcome) {
        let (mut outcomes, out) = self.run_ops(client, &[op], false);
        (outcomes.remove(0), out)
    }

    /// Runs one op that must succeed.
    pub fn ok(&mut self, client: usize, op: Op) -> qlock::OpResult {
        let (outcome, _) = self.run(client, op);
        outcome.expect("op failed")
    }

    pub fn advance(&mut self, micros: u64) {
        self.now += micros;
    }
}

/// The outcomes of `request`'s own ops in `out` (in op order).
pub fn own_outcomes(out: &BatchOutcome, request: &Request) -> Vec<OpOutcome> {
    let digest = request.digest();
    let mut found: Vec<(u32, OpOutcome)> = out
        .receipts
        .iter()
        .filter(|r| r.request == digest)
        .map(|r| (r.op_index, decode_outcome(&r.result.0).unwrap()))
        .collect();
    found.sort_by_key(|(i, _)| *i);
    found.into_iter().map(|(_, o)| o).collect()
}

/// All receipts in `out` for `(request, op_index)`, decoded.
pub fn receipts_for(out: &BatchOutcome, request: Digest, op_index: u32) -> Vec<OpOutcome> {
    out.receipts
        .iter()
        .filter(|r| r.request == request && r.op_index == op_index)
        .map(|r| decode_outcome(&r.result.0).unwrap())
        .collect()
}
