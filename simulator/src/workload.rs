//! The qlock workloads: which state machine the replicas run, and what the
//! simulated clients ask of it (sessions with renewals, contended locks
//! with waits, queue submit/claim/ack/nack with visibility timeouts).

use primitives::Bytes;
use qlock::{FencingToken, LockMode, MessageId, Op, OpOutcome, OpResult, Priority, SessionId};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Session lease the clients ask for (µs of effective time).
pub const SESSION_TTL_MICROS: u64 = 400_000;
/// How long a waiting acquire may wait.
pub const WAIT_MICROS: u64 = 300_000;
/// The visibility timeout of a claim.
pub const VISIBILITY_MICROS: u64 = 100_000;
/// Hot resources: well over half of the lock ops go to these.
pub const HOT_RESOURCES: u32 = 4;
/// Cold resources per client.
pub const COLD_RESOURCES: u32 = 8;
/// Queues.
pub const QUEUES: u32 = 2;

/// What the replicas execute and the clients submit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Workload {
    /// The hash-chain test application with opaque random ops.
    #[default]
    Chain,
    /// qlock: sessions and locks.
    Locks,
    /// qlock: sessions and queues.
    Queue,
    /// qlock: sessions, locks and queues.
    Mixed,
}

impl Workload {
    /// Every workload.
    pub const ALL: [Workload; 4] = [
        Workload::Chain,
        Workload::Locks,
        Workload::Queue,
        Workload::Mixed,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Chain => "chain",
            Workload::Locks => "locks",
            Workload::Queue => "queue",
            Workload::Mixed => "mixed",
        }
    }

    /// Whether the replicas run the qlock state machine.
    pub fn is_qlock(self) -> bool {
        self != Workload::Chain
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| format!("unknown workload {s:?} (chain, locks, queue, mixed)"))
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The qlock configuration of the simulation: short leases and timeouts,
/// so expiries, lock-delays and redeliveries happen within a run.
pub fn qlock_config() -> qlock::Config {
    qlock::Config {
        session_ttl_min: 100_000,
        lock_delay: 50_000,
        visibility_timeout_min: 20_000,
        dead_letter_after: 3,
        ..qlock::Config::default()
    }
}

/// The name of an op's kind, for the summary.
pub fn op_kind(op: &Op) -> &'static str {
    match op {
        Op::CreateSession { .. } => "create_session",
        Op::RenewSession { .. } => "renew_session",
        Op::DestroySession { .. } => "destroy_session",
        Op::SessionStatus { .. } => "session_status",
        Op::Acquire { wait: None, .. } => "try_acquire",
        Op::Acquire { .. } => "acquire_wait",
        Op::Release { .. } => "release",
        Op::RenewLock { .. } => "renew_lock",
        Op::Check { .. } => "check",
        Op::Submit { .. } => "submit",
        Op::Claim { .. } => "claim",
        Op::Ack { .. } => "ack",
        Op::Nack { .. } => "nack",
        Op::Depth { .. } => "depth",
        Op::Peek { .. } => "peek",
        Op::PeekDeadLetters { .. } => "peek_dead_letters",
    }
}

/// One completed op as its client observed it (virtual times).
#[derive(Clone, Debug)]
pub struct ObservedOp {
    /// The client.
    pub client: usize,
    /// When it was first sent.
    pub invoke: u64,
    /// When the client learned its final outcome.
    pub complete: u64,
    /// What was asked.
    pub op: Op,
    /// The final outcome (a waiting acquire's grant or timeout, not its
    /// `Queued`).
    pub outcome: OpOutcome,
}

/// What one qlock client knows of its own state, from its outcomes.
#[derive(Clone, Debug, Default)]
pub struct QlockClient {
    /// Its session, once created.
    pub session: Option<SessionId>,
    /// Locks it holds.
    pub held: BTreeMap<String, FencingToken>,
    /// Deliveries it claimed and has not acked or nacked.
    pub claims: Vec<(MessageId, u32)>,
    /// Whether it renews its session (a few clients let theirs expire).
    pub renews: bool,
    /// Messages submitted, for payloads.
    pub submitted: u64,
}

impl QlockClient {
    /// The next op of client `c` under `workload`.
    pub fn next_op(&mut self, workload: Workload, c: usize, rng: &mut ChaCha8Rng) -> Op {
        let Some(session) = self.session else {
            return Op::CreateSession {
                ttl: SESSION_TTL_MICROS,
            };
        };
        if self.renews && rng.gen_bool(0.15) {
            return Op::RenewSession {
                session,
                ttl: SESSION_TTL_MICROS,
            };
        }
        let locks = match workload {
            Workload::Locks => true,
            Workload::Queue => false,
            _ => rng.gen_bool(0.5),
        };
        if locks {
            self.lock_op(session, c, rng)
        } else {
            self.queue_op(session, c, rng)
        }
    }

    fn lock_op(&mut self, session: SessionId, c: usize, rng: &mut ChaCha8Rng) -> Op {
        if let Some(resource) = self.held.keys().next().cloned() {
            if rng.gen_bool(0.7) {
                return Op::Release { session, resource };
            }
        }
        let resource = if rng.gen_bool(0.6) {
            format!("hot-{}", rng.gen_range(0..HOT_RESOURCES))
        } else {
            format!("cold-{c}-{}", rng.gen_range(0..COLD_RESOURCES))
        };
        if rng.gen_bool(0.1) {
            return Op::Check { resource };
        }
        let mode = if rng.gen_bool(0.25) {
            LockMode::Shared
        } else {
            LockMode::Exclusive
        };
        let wait = rng.gen_bool(0.6).then_some(WAIT_MICROS);
        Op::Acquire {
            session,
            resource,
            mode,
            wait,
        }
    }

    fn queue_op(&mut self, session: SessionId, c: usize, rng: &mut ChaCha8Rng) -> Op {
        if !self.claims.is_empty() && rng.gen_bool(0.6) {
            let (message, delivery) = self.claims.remove(0);
            // Some claims are abandoned: the visibility timeout redelivers.
            return match rng.gen_range(0..10) {
                0..=5 => Op::Ack {
                    session,
                    message,
                    delivery,
                },
                6..=7 => Op::Nack {
                    session,
                    message,
                    delivery,
                },
                _ => Op::Depth {
                    queue: "q-0".into(),
                },
            };
        }
        let queue = format!("q-{}", rng.gen_range(0..QUEUES));
        if rng.gen_bool(0.5) {
            self.submitted += 1;
            let priority = [
                Priority::Critical,
                Priority::High,
                Priority::Normal,
                Priority::Low,
            ][rng.gen_range(0..4)];
            return Op::Submit {
                queue,
                priority,
                payload: Bytes(format!("{c}/{}", self.submitted).into_bytes()),
                dedup_key: None,
                durability: qlock::Durability::Sync,
            };
        }
        Op::Claim {
            session,
            queue,
            visibility_timeout: VISIBILITY_MICROS,
        }
    }

    /// Learns from the final outcome of `op`.
    pub fn observe(&mut self, op: &Op, outcome: &OpOutcome) {
        match (op, outcome) {
            (_, Err(qlock::OpError::NoSuchSession)) => {
                // Expired: start over with a new session.
                self.session = None;
                self.held.clear();
                self.claims.clear();
            }
            (Op::CreateSession { .. }, Ok(OpResult::SessionCreated { session, .. })) => {
                self.session = Some(*session);
            }
            (Op::Acquire { resource, .. }, Ok(OpResult::Granted { token })) => {
                self.held.insert(resource.clone(), *token);
            }
            (Op::Release { resource, .. }, _) => {
                self.held.remove(resource);
            }
            (Op::Claim { .. }, Ok(OpResult::Claimed(view))) => {
                self.claims.push((view.id, view.delivery));
            }
            _ => {}
        }
    }
}
