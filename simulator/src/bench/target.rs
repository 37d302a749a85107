//! The systems under test, one worker per client: QLOCK through the real
//! `client` crate (signed requests, verified replies) and, with the `etcd`
//! feature, etcd through its gRPC API (`etcd-client`).
//!
//! The workloads, for a worker with `k` ops per request:
//!
//! | workload | QLOCK | etcd |
//! |---|---|---|
//! | `locks` | `k` try-once acquires of random resources of 100 000, then their `k` releases (2 requests) | `k = 1`: the lock service (`Lock` with the worker's lease, `Unlock`); `k > 1`: one txn taking `k` keys if absent (create revision 0, put with lease), one txn deleting them |
//! | `contended` | a waiting acquire of one of 4 hot resources, release once granted (1 op per request) | `Lock` of one of 4 hot names (waits in revision order), `Unlock` |
//! | `queue` | `k` sync submits, `k` claims, `k` acks (3 requests) | a txn of `k` puts, a txn moving the `k` keys to claim keys under the lease, a txn deleting them |
//! | `submit` | `k` sync submits (1 request) | a txn of `k` puts (`k = 1`: a put) |
//! | `renew` | one request renewing `k` sessions | `k` lease keep-alives (etcd has no batched renewal; counted as `k` requests) |

use super::load::Recorder;
use client::{Client, ClientError, ClientOptions, ClusterConfig};
use lockchain::CheckedSignatures;
use primitives::{Bytes, KeyPair, ReplicaId};
use qlock::{Durability, LockMode, Op, OpOutcome, OpResult, Priority, SessionId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Resources the `locks` workload picks from.
pub const RESOURCES: u64 = 100_000;

/// Hot resources of the `contended` workload.
pub const HOT_RESOURCES: u64 = 4;

/// A contended acquire's longest wait.
pub const WAIT: Duration = Duration::from_secs(5);

/// Session and lease length: longer than any run, so nothing expires
/// mid-benchmark (renewals are measured by `renew`, not needed).
pub const SESSION_TTL: Duration = Duration::from_secs(900);

/// A claim's visibility timeout.
pub const VISIBILITY: Duration = Duration::from_secs(60);

/// Bytes of a queue message's payload.
pub const PAYLOAD_BYTES: usize = 64;

/// Messages a `submit` worker puts in one queue before moving on to the
/// next (QLOCK bounds a queue's depth).
pub const SUBMITS_PER_QUEUE: u64 = 20_000;

/// Ops per request at most (QLOCK's default `ops_max`).
pub const OPS_PER_REQUEST_MAX: usize = 64;

/// Which workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// Acquire + release pairs on many resources.
    Locks,
    /// Waiting acquires of a few hot resources.
    Contended,
    /// Sync submit + claim + ack.
    Queue,
    /// Sync submits alone (etcd: puts).
    Submit,
    /// Session renewals (etcd: lease keep-alives).
    Renew,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 5] = [
        Workload::Locks,
        Workload::Contended,
        Workload::Queue,
        Workload::Submit,
        Workload::Renew,
    ];

    /// Whether the workload uses `ops_per_request` (contended locks are
    /// one op per request).
    pub fn batches(self) -> bool {
        self != Workload::Contended
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Workload::Locks => "locks",
            Workload::Contended => "contended",
            Workload::Queue => "queue",
            Workload::Submit => "submit",
            Workload::Renew => "renew",
        })
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Workload::ALL
            .into_iter()
            .find(|w| w.to_string() == s)
            .ok_or_else(|| {
                format!("unknown workload {s:?}: locks, contended, queue, submit or renew")
            })
    }
}

/// One client of the system under test.
pub enum Worker {
    /// A QLOCK client.
    Qlock(Box<QlockWorker>),
    /// An etcd client.
    #[cfg(feature = "etcd")]
    Etcd(Box<super::etcd::EtcdWorker>),
}

impl Worker {
    /// Runs one unit of the worker's workload, recording its requests;
    /// `false` if a request failed.
    pub async fn unit(&mut self, rec: &mut Recorder, started: Instant) -> bool {
        match self {
            Worker::Qlock(w) => w.unit(rec, started).await,
            #[cfg(feature = "etcd")]
            Worker::Etcd(w) => w.unit(rec, started).await,
        }
    }
}

/// A QLOCK worker: its own key, connection, sessions and RNG.
pub struct QlockWorker {
    client: Client,
    sessions: Vec<SessionId>,
    workload: Workload,
    k: usize,
    index: usize,
    rng: ChaCha8Rng,
    counter: u64,
}

/// Whether an outcome is a refusal by the state machine.
fn refused(o: &OpOutcome) -> bool {
    o.is_err()
}

impl QlockWorker {
    /// Connects worker `index` (to replica `index mod n` first, so
    /// gateways share the load) and opens its sessions.
    pub async fn connect(
        config: ClusterConfig,
        checked: &Arc<CheckedSignatures>,
        workload: Workload,
        k: usize,
        index: usize,
        seed: u64,
    ) -> Result<QlockWorker, ClientError> {
        let n = config.replicas.len();
        let options = ClientOptions {
            keepalive: false,
            preferred_replica: Some(ReplicaId((index % n) as u16)),
            // The workers are one process's clients: each replica's
            // signature on a batch is checked once, not once per reply.
            checked_signatures: Some(checked.clone()),
            ..ClientOptions::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9E37_79B9));
        let key = KeyPair::from_seed(&rng.gen());
        let client = Client::connect(config, key, options).await?;
        let sessions_needed = if workload == Workload::Renew { k } else { 1 };
        let mut sessions = Vec::new();
        for _ in 0..sessions_needed {
            sessions.push(client.create_session(SESSION_TTL).await?.id);
        }
        Ok(QlockWorker {
            client,
            sessions,
            workload,
            k,
            index,
            rng,
            counter: 0,
        })
    }

    /// One request of `ops`; records it, returns its outcomes.
    async fn request(
        &mut self,
        rec: &mut Recorder,
        kind: &'static str,
        started: Instant,
        ops: Vec<Op>,
    ) -> Option<Vec<OpOutcome>> {
        let count = ops.len();
        match self.client.submit(ops, false).await {
            Ok(reply) => {
                let refused = reply.outcomes.iter().filter(|o| refused(o)).count();
                rec.request(kind, started, count, refused);
                Some(reply.outcomes)
            }
            Err(e) => {
                rec.error(kind, e);
                None
            }
        }
    }

    async fn unit(&mut self, rec: &mut Recorder, started: Instant) -> bool {
        match self.workload {
            Workload::Locks => self.locks(rec, started).await,
            Workload::Contended => self.contended(rec, started).await,
            Workload::Queue => self.queue(rec, started).await,
            Workload::Submit => self.submit(rec, started).await.is_some(),
            Workload::Renew => self.renew(rec, started).await,
        }
    }

    async fn locks(&mut self, rec: &mut Recorder, started: Instant) -> bool {
        let session = self.sessions[0];
        let base = self.rng.gen_range(0..RESOURCES);
        let names: Vec<String> = (0..self.k as u64)
            .map(|i| format!("bench/{}", (base + i) % RESOURCES))
            .collect();
        let acquires = names
            .iter()
            .map(|resource| Op::Acquire {
                session,
                resource: resource.clone(),
                mode: LockMode::Exclusive,
                wait: None,
            })
            .collect();
        let Some(outcomes) = self.request(rec, "acquire", started, acquires).await else {
            return false;
        };
        // Release what was granted (a taken lock was refused: WouldBlock).
        let releases: Vec<Op> = names
            .into_iter()
            .zip(&outcomes)
            .filter(|(_, o)| o.is_ok())
            .map(|(resource, _)| Op::Release { session, resource })
            .collect();
        if releases.is_empty() {
            return true;
        }
        self.request(rec, "release", Instant::now(), releases)
            .await
            .is_some()
    }

    async fn contended(&mut self, rec: &mut Recorder, started: Instant) -> bool {
        let session = self.sessions[0];
        let resource = format!("hot/{}", self.rng.gen_range(0..HOT_RESOURCES));
        let guard = match self
            .client
            .acquire(session, &resource, LockMode::Exclusive, Some(WAIT))
            .await
        {
            Ok(g) => g,
            Err(ClientError::Op(e)) => {
                // A wait that timed out is a committed, refused op.
                rec.request("acquire", started, 1, 1);
                let _ = e;
                return true;
            }
            Err(e) => {
                rec.error("acquire", e);
                return false;
            }
        };
        rec.request("acquire", started, 1, 0);
        let t = Instant::now();
        match guard.release().await {
            Ok(()) => {
                rec.request("release", t, 1, 0);
                true
            }
            Err(e) => {
                rec.error("release", e);
                false
            }
        }
    }

    fn queue_name(&self) -> String {
        format!(
            "bench/{}/{}",
            self.index,
            self.counter / SUBMITS_PER_QUEUE.max(1)
        )
    }

    async fn submit(&mut self, rec: &mut Recorder, started: Instant) -> Option<String> {
        let queue = self.queue_name();
        let ops = (0..self.k)
            .map(|i| Op::Submit {
                queue: queue.clone(),
                priority: Priority::ALL[i % Priority::ALL.len()],
                payload: Bytes(vec![0x51; PAYLOAD_BYTES]),
                dedup_key: None,
                durability: Durability::Sync,
            })
            .collect();
        self.counter += self.k as u64;
        self.request(rec, "submit", started, ops).await?;
        Some(queue)
    }

    async fn queue(&mut self, rec: &mut Recorder, started: Instant) -> bool {
        let session = self.sessions[0];
        let Some(queue) = self.submit(rec, started).await else {
            return false;
        };
        let claims = (0..self.k)
            .map(|_| Op::Claim {
                session,
                queue: queue.clone(),
                visibility_timeout: VISIBILITY.as_micros() as u64,
            })
            .collect();
        let Some(outcomes) = self.request(rec, "claim", Instant::now(), claims).await else {
            return false;
        };
        let acks: Vec<Op> = outcomes
            .into_iter()
            .filter_map(|o| match o {
                Ok(OpResult::Claimed(view)) => Some(Op::Ack {
                    session,
                    message: view.id,
                    delivery: view.delivery,
                }),
                _ => None,
            })
            .collect();
        if acks.is_empty() {
            return true;
        }
        self.request(rec, "ack", Instant::now(), acks)
            .await
            .is_some()
    }

    async fn renew(&mut self, rec: &mut Recorder, started: Instant) -> bool {
        let ops = self
            .sessions
            .iter()
            .map(|session| Op::RenewSession {
                session: *session,
                ttl: SESSION_TTL.as_micros() as u64,
            })
            .collect();
        self.request(rec, "renew", started, ops).await.is_some()
    }
}
