//! Workloads against a real cluster: C clients, each with its own key and
//! connection, submitting signed requests of `ops_per_request` ops and
//! recording every op (real invoke and complete times, the verified
//! receipt) for the history checkers.
//!
//! - `locks`: try-once acquires of a few of many resources, then releases
//!   (little contention);
//! - `contended`: waiting acquires of 2 hot resources (or of
//!   `ops_per_request` of them, in order), a short hold, releases — FIFO
//!   waiters and grants pushed as events;
//! - `queue`: producers submit `sync` messages, consumers claim and ack
//!   (nack some), then drain the queue once producers are done;
//! - `mixed`: contended lock clients, producers and consumers in turn.
//!
//! Every limit is named: clients, ops per request, recorded history ops,
//! latency samples; the run ends early (and says so) when the history is
//! full.

use super::history::{queue_account, HistoryOp, QueueAccount};
use client::{Client, ClientOptions, ClusterConfig, Events};
use primitives::{Bytes, Digest, KeyPair, ReplicaId};
use qlock::history::Receipted;
use qlock::{
    Durability, LockMode, MessageId, Op, OpError, OpOutcome, OpResult, Priority, SessionId,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Workload clients at most.
pub const CLIENTS_MAX: usize = 256;

/// Ops per request at most (the cluster's default `ops_max` is higher).
pub const OPS_PER_REQUEST_MAX: usize = 64;

/// Recorded ops at most; the run stops early when the history is full
/// (the checker needs a whole history, not a sample).
pub const HISTORY_OPS_MAX: usize = 1_000_000;

/// How long a waiting acquire waits.
pub const WAIT: Duration = Duration::from_secs(2);

/// A claim's visibility timeout.
pub const VISIBILITY: Duration = Duration::from_secs(5);

/// How long a contended lock is held before its release is sent.
pub const HOLD: Duration = Duration::from_millis(2);

/// Of 100 claimed messages, how many are nacked (returned) instead of
/// acked.
pub const NACK_PERCENT: u32 = 10;

/// Messages submitted and not yet acked, at most, per `ops_per_request`:
/// producers wait above it. A short queue keeps the history checkable
/// (the order of messages submitted in one batch is only learned when
/// they are claimed, so every unclaimed message multiplies what the
/// checker must consider) and is what a healthy queue looks like.
pub const BACKLOG_PER_OP_MAX: u64 = 8;

/// Which workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WorkloadKind {
    /// Try-once acquires of many resources.
    Locks,
    /// Waiting acquires of two hot resources.
    Contended,
    /// Producers and consumers of one queue.
    Queue,
    /// Contended locks, producers and consumers.
    Mixed,
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WorkloadKind::Locks => "locks",
            WorkloadKind::Contended => "contended",
            WorkloadKind::Queue => "queue",
            WorkloadKind::Mixed => "mixed",
        })
    }
}

impl FromStr for WorkloadKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "locks" => Ok(WorkloadKind::Locks),
            "contended" => Ok(WorkloadKind::Contended),
            "queue" => Ok(WorkloadKind::Queue),
            "mixed" => Ok(WorkloadKind::Mixed),
            other => Err(format!(
                "unknown workload {other:?}: locks, contended, queue or mixed"
            )),
        }
    }
}

/// What one client does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Locks,
    Contended,
    Producer,
    Consumer,
}

/// A workload's shape.
#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    /// Which workload.
    pub kind: WorkloadKind,
    /// Clients, `1..=CLIENTS_MAX` (queue: at least 2, mixed: at least 3).
    pub clients: usize,
    /// How long clients start new work (consumers then drain the queue).
    pub duration: Duration,
    /// Ops in each request, `1..=OPS_PER_REQUEST_MAX`.
    pub ops_per_request: usize,
    /// How long a client waits for one replica before trying the next.
    pub request_timeout: Duration,
    /// How long consumers may drain after `duration`.
    pub drain_max: Duration,
    /// Seeds the clients' choices; also names this run's resources and
    /// queue (`w{seed:x}-...`), so runs on a kept cluster do not collide.
    pub seed: u64,
}

impl WorkloadSpec {
    /// `kind` with `clients` clients for `duration`, one op per request.
    pub fn new(kind: WorkloadKind, clients: usize, duration: Duration) -> WorkloadSpec {
        WorkloadSpec {
            kind,
            clients,
            duration,
            ops_per_request: 1,
            request_timeout: Duration::from_secs(5),
            drain_max: Duration::from_secs(30),
            seed: rand::random(),
        }
    }

    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), String> {
        if self.clients == 0 || self.clients > CLIENTS_MAX {
            return Err(format!(
                "--clients must be 1 to {CLIENTS_MAX}, not {}",
                self.clients
            ));
        }
        let least = match self.kind {
            WorkloadKind::Queue => 2,
            WorkloadKind::Mixed => 3,
            _ => 1,
        };
        if self.clients < least {
            return Err(format!(
                "the {} workload needs at least {least} clients (producers and consumers)",
                self.kind
            ));
        }
        if self.ops_per_request == 0 || self.ops_per_request > OPS_PER_REQUEST_MAX {
            return Err(format!(
                "--ops-per-request must be 1 to {OPS_PER_REQUEST_MAX}, not {}",
                self.ops_per_request
            ));
        }
        if self.duration.is_zero() {
            return Err("--duration must be positive".into());
        }
        Ok(())
    }

    /// The prefix of this run's resource and queue names.
    pub fn prefix(&self) -> String {
        format!("w{:x}-", self.seed & 0xffff_ffff)
    }

    /// The queue the queue and mixed workloads use.
    pub fn queue_name(&self) -> String {
        format!("{}jobs", self.prefix())
    }

    /// A session lease that outlives the run (the clients do not renew:
    /// every op they send is in the history).
    fn session_ttl(&self) -> Duration {
        let run = self.duration + self.drain_max + Duration::from_secs(120);
        run.clamp(Duration::from_secs(5), Duration::from_secs(3_600))
    }

    fn role(&self, client: usize) -> Role {
        match self.kind {
            WorkloadKind::Locks => Role::Locks,
            WorkloadKind::Contended => Role::Contended,
            WorkloadKind::Queue => {
                if client.is_multiple_of(2) {
                    Role::Producer
                } else {
                    Role::Consumer
                }
            }
            WorkloadKind::Mixed => match client % 3 {
                0 => Role::Contended,
                1 => Role::Producer,
                _ => Role::Consumer,
            },
        }
    }
}

/// The run's counters, shared by its clients.
#[derive(Debug)]
struct Shared {
    origin: Instant,
    end: Instant,
    stop: AtomicBool,
    ops: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    recorded: AtomicUsize,
    history_full: AtomicBool,
    producers_active: AtomicUsize,
    /// Certified submits minus successful acks.
    backlog: AtomicU64,
    logs: Vec<Mutex<Vec<HistoryOp>>>,
    latencies: Mutex<Vec<u64>>,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
}

/// A snapshot of a run in progress.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Since the start.
    pub elapsed: Duration,
    /// Ops in certified replies.
    pub ops: u64,
    /// Requests answered with a certified reply.
    pub requests: u64,
    /// Requests that failed on every replica tried.
    pub errors: u64,
    /// The last such failure.
    pub last_error: Option<String>,
}

/// A workload running against a cluster.
#[derive(Debug)]
pub struct WorkloadRun {
    spec: WorkloadSpec,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<Result<(), String>>>,
}

/// What a finished run measured and recorded.
#[derive(Clone, Debug)]
pub struct WorkloadReport {
    /// The workload.
    pub spec: WorkloadSpec,
    /// From start to the last client's end (drain included).
    pub elapsed: Duration,
    /// The measured window: `duration`, or less if stopped early.
    pub window: Duration,
    /// Ops in certified replies completed within the window.
    pub window_ops: u64,
    /// Ops in certified replies, drain included.
    pub ops: u64,
    /// Requests with certified replies.
    pub requests: u64,
    /// Requests that failed on every replica tried.
    pub errors: u64,
    /// The last such failure.
    pub last_error: Option<String>,
    /// Latency of each certified request (ns), sorted.
    pub latencies_ns: Vec<u64>,
    /// Every op, in invoke order.
    pub history: Vec<HistoryOp>,
    /// The history reached [`HISTORY_OPS_MAX`] and the run stopped early.
    pub history_full: bool,
    /// Clients that could not run (no connection, no session).
    pub client_failures: Vec<String>,
    /// Clients still busy at the end bound, stopped (their last op is
    /// recorded as unanswered).
    pub aborted: usize,
}

impl WorkloadReport {
    /// Committed ops per second over the window.
    pub fn ops_per_sec(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.window_ops as f64 / secs
        } else {
            0.0
        }
    }

    /// The `p`-quantile of request latency (`0.0..=1.0`), nearest rank.
    pub fn latency(&self, p: f64) -> Option<Duration> {
        if self.latencies_ns.is_empty() {
            return None;
        }
        let rank = ((p * self.latencies_ns.len() as f64).ceil() as usize)
            .clamp(1, self.latencies_ns.len());
        Some(Duration::from_nanos(self.latencies_ns[rank - 1]))
    }

    /// The first certified completion at or after `ns` (since the start)
    /// of an op sent at or after `ns`, in ns.
    pub fn first_completion_after(&self, ns: u64) -> Option<u64> {
        self.history
            .iter()
            .filter(|op| op.invoke_ns >= ns && op.reply.is_some())
            .filter_map(|op| op.complete_ns)
            .min()
    }

    /// What became of this run's queue messages.
    pub fn queue_account(&self) -> QueueAccount {
        queue_account(&self.history, &self.spec.queue_name())
    }

    /// The summary as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let ms = |p| self.latency(p).map(|d| d.as_secs_f64() * 1e3);
        serde_json::json!({
            "workload": self.spec.kind.to_string(),
            "clients": self.spec.clients,
            "ops_per_request": self.spec.ops_per_request,
            "seconds": self.window.as_secs_f64(),
            "committed_ops": self.window_ops,
            "committed_ops_per_sec": self.ops_per_sec(),
            "requests": self.requests,
            "failed_requests": self.errors,
            "latency_ms": {"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p99.9": ms(0.999)},
            "history_ops": self.history.len(),
            "history_full": self.history_full,
            "client_failures": self.client_failures,
            "aborted_clients": self.aborted,
        })
    }
}

impl WorkloadRun {
    /// Starts the workload's clients against `config`. Returns at once.
    pub fn start(config: ClusterConfig, spec: WorkloadSpec) -> Result<WorkloadRun, String> {
        spec.validate()?;
        let origin = Instant::now();
        let producers = (0..spec.clients)
            .filter(|c| spec.role(*c) == Role::Producer)
            .count();
        let shared = Arc::new(Shared {
            origin,
            end: origin + spec.duration,
            stop: AtomicBool::new(false),
            ops: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            recorded: AtomicUsize::new(0),
            history_full: AtomicBool::new(false),
            producers_active: AtomicUsize::new(producers),
            backlog: AtomicU64::new(0),
            logs: (0..spec.clients).map(|_| Mutex::new(Vec::new())).collect(),
            latencies: Mutex::new(Vec::new()),
            last_error: Mutex::new(None),
        });
        let spec_arc = Arc::new(spec.clone());
        let tasks = (0..spec.clients)
            .map(|id| {
                let (config, shared, spec) = (config.clone(), shared.clone(), spec_arc.clone());
                tokio::spawn(async move { client_main(id, config, shared, spec).await })
            })
            .collect();
        Ok(WorkloadRun {
            spec,
            shared,
            tasks,
        })
    }

    /// The run's start (the origin of every `*_ns` time in its history).
    pub fn origin(&self) -> Instant {
        self.shared.origin
    }

    /// Nanoseconds since the start.
    pub fn now_ns(&self) -> u64 {
        self.shared.now_ns()
    }

    /// Counters so far.
    pub fn progress(&self) -> Progress {
        Progress {
            elapsed: self.shared.origin.elapsed(),
            ops: self.shared.ops.load(Ordering::Relaxed),
            requests: self.shared.requests.load(Ordering::Relaxed),
            errors: self.shared.errors.load(Ordering::Relaxed),
            last_error: self.shared.last_error.lock().expect("last error").clone(),
        }
    }

    /// Whether every client has ended.
    pub fn done(&self) -> bool {
        self.tasks.iter().all(JoinHandle::is_finished)
    }

    /// Asks the clients to stop after their current op (no drain).
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }

    /// The latest the clients can still be busy: the end of the window,
    /// the drain, and one op failing over every replica.
    pub fn deadline(&self, replicas: usize) -> Instant {
        let attempts = 2 * replicas.max(1) as u32;
        self.shared.end + self.spec.drain_max + self.spec.request_timeout * attempts
    }

    /// Waits for the clients (each at most until [`WorkloadRun::deadline`],
    /// then stopped) and gathers what they measured.
    pub async fn finish(self, replicas: usize) -> WorkloadReport {
        let deadline = self.deadline(replicas);
        self.finish_by(deadline).await
    }

    /// Waits for the clients until `deadline` (then stops them) and
    /// gathers what they measured.
    pub async fn finish_by(self, deadline: Instant) -> WorkloadReport {
        let deadline = tokio::time::Instant::from_std(deadline);
        let mut failures = Vec::new();
        let mut aborted = 0;
        for (id, task) in self.tasks.into_iter().enumerate() {
            let abort = task.abort_handle();
            match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => failures.push(format!("client {id}: {e}")),
                Ok(Err(e)) => failures.push(format!("client {id}: task failed: {e}")),
                Err(_) => {
                    abort.abort();
                    aborted += 1;
                }
            }
        }
        let shared = &self.shared;
        let elapsed = shared.origin.elapsed();
        let mut history: Vec<HistoryOp> = shared
            .logs
            .iter()
            .flat_map(|log| std::mem::take(&mut *log.lock().expect("log")))
            .collect();
        history.sort_by_key(|op| (op.invoke_ns, op.client, op.op_index));
        let mut latencies = std::mem::take(&mut *shared.latencies.lock().expect("latencies"));
        latencies.sort_unstable();
        let window = self.spec.duration.min(elapsed);
        let window_ns = window.as_nanos() as u64;
        let window_ops = history
            .iter()
            .filter(|op| op.reply.is_some() && op.complete_ns.is_some_and(|c| c <= window_ns))
            .count() as u64;
        WorkloadReport {
            spec: self.spec,
            elapsed,
            window,
            window_ops,
            ops: shared.ops.load(Ordering::Relaxed),
            requests: shared.requests.load(Ordering::Relaxed),
            errors: shared.errors.load(Ordering::Relaxed),
            last_error: shared.last_error.lock().expect("last error").clone(),
            latencies_ns: latencies,
            history,
            history_full: shared.history_full.load(Ordering::Relaxed),
            client_failures: failures,
            aborted,
        }
    }
}

/// One client: its key, connection, session and choices.
struct Worker {
    id: usize,
    role: Role,
    client: Client,
    events: Events,
    rng: ChaCha8Rng,
    shared: Arc<Shared>,
    spec: Arc<WorkloadSpec>,
    session: Option<SessionId>,
    /// Submits sent, for payloads.
    sent: u64,
}

/// A certified reply as the worker uses it.
struct Answered {
    digest: Digest,
    outcomes: Vec<OpOutcome>,
    /// Where the request's ops are in this worker's log.
    first_log_index: usize,
}

async fn client_main(
    id: usize,
    config: ClusterConfig,
    shared: Arc<Shared>,
    spec: Arc<WorkloadSpec>,
) -> Result<(), String> {
    let role = spec.role(id);
    let result = run_client(id, role, config, shared.clone(), spec).await;
    if role == Role::Producer {
        shared.producers_active.fetch_sub(1, Ordering::Relaxed);
    }
    result
}

async fn run_client(
    id: usize,
    role: Role,
    config: ClusterConfig,
    shared: Arc<Shared>,
    spec: Arc<WorkloadSpec>,
) -> Result<(), String> {
    let n = config.replicas.len();
    let options = ClientOptions {
        request_timeout: spec.request_timeout,
        // Spread the clients over the gateways.
        preferred_replica: Some(ReplicaId((id % n) as u16)),
        // Every op the client sends must be in the history: no background
        // renewals (sessions outlive the run instead).
        keepalive: false,
        ..ClientOptions::default()
    };
    let key = KeyPair::generate(&mut rand::rngs::OsRng);
    let client = loop {
        match Client::connect(config.clone(), key.clone(), options.clone()).await {
            Ok(c) => break c,
            Err(e) => {
                if Instant::now() >= shared.end || shared.stop.load(Ordering::Relaxed) {
                    return Err(format!("no connection: {e}"));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let events = client.events();
    let mut worker = Worker {
        id,
        role,
        client,
        events,
        rng: ChaCha8Rng::seed_from_u64(spec.seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        shared,
        spec,
        session: None,
        sent: 0,
    };
    worker.run().await
}

impl Worker {
    fn running(&self) -> bool {
        !self.shared.stop.load(Ordering::Relaxed) && Instant::now() < self.shared.end
    }

    fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }

    async fn run(&mut self) -> Result<(), String> {
        if self.role != Role::Producer && !self.ensure_session().await {
            return Err("no session could be created".into());
        }
        match self.role {
            Role::Locks => {
                while self.running() {
                    self.locks_round().await;
                }
            }
            Role::Contended => {
                while self.running() {
                    self.contended_round().await;
                }
            }
            Role::Producer => {
                while self.running() {
                    self.produce().await;
                }
            }
            Role::Consumer => self.consume().await,
        }
        if let Some(session) = self.session.take() {
            if !self.stopped() {
                self.request(vec![Op::DestroySession { session }]).await;
            }
        }
        Ok(())
    }

    /// Creates a session unless one is live; false if none could be made
    /// before the run ended.
    async fn ensure_session(&mut self) -> bool {
        while self.session.is_none() {
            if Instant::now() >= self.shared.end + self.spec.drain_max || self.stopped() {
                return false;
            }
            let ttl = self.spec.session_ttl().as_micros() as u64;
            if let Some(a) = self.request(vec![Op::CreateSession { ttl }]).await {
                if let Some(Ok(OpResult::SessionCreated { session, .. })) = a.outcomes.first() {
                    self.session = Some(*session);
                }
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        true
    }

    /// Sends one request of `ops` and records each op; the certified
    /// outcomes, or `None` if every replica tried failed (the ops stay in
    /// the history unanswered: they may or may not have executed).
    async fn request(&mut self, ops: Vec<Op>) -> Option<Answered> {
        let shared = self.shared.clone();
        let n = ops.len();
        if shared.recorded.fetch_add(n, Ordering::Relaxed) + n > HISTORY_OPS_MAX {
            shared.history_full.store(true, Ordering::Relaxed);
            shared.stop.store(true, Ordering::Relaxed);
            return None;
        }
        let invoke = shared.now_ns();
        let first_log_index = {
            let mut log = shared.logs[self.id].lock().expect("log");
            let first = log.len();
            for (i, op) in ops.iter().enumerate() {
                log.push(HistoryOp {
                    client: self.id,
                    invoke_ns: invoke,
                    complete_ns: None,
                    request: None,
                    op_index: i as u32,
                    op: op.clone(),
                    seq: None,
                    reply: None,
                    wait_end: None,
                });
            }
            first
        };
        let (digest, result) = self.client.submit_named(ops, false).await;
        let complete = shared.now_ns();
        let mut log = shared.logs[self.id].lock().expect("log");
        for entry in &mut log[first_log_index..first_log_index + n] {
            entry.request = digest;
        }
        match result {
            Ok(reply) => {
                shared.requests.fetch_add(1, Ordering::Relaxed);
                shared.ops.fetch_add(n as u64, Ordering::Relaxed);
                {
                    let mut l = shared.latencies.lock().expect("latencies");
                    if l.len() < HISTORY_OPS_MAX {
                        l.push(complete - invoke);
                    }
                }
                for (i, entry) in log[first_log_index..first_log_index + n]
                    .iter_mut()
                    .enumerate()
                {
                    // A sync reply carries one proof per op; without one
                    // the op's effective time is unknown: leave it open.
                    let (Some(proof), Some(outcome)) = (reply.proofs.get(i), reply.outcomes.get(i))
                    else {
                        continue;
                    };
                    entry.complete_ns = Some(complete);
                    entry.seq = reply.seq.map(|s| s.0);
                    entry.reply = Some(Receipted {
                        at: complete,
                        time: proof.receipt.time,
                        outcome: outcome.clone(),
                    });
                }
                Some(Answered {
                    digest: digest.unwrap_or(reply.request),
                    outcomes: reply.outcomes,
                    first_log_index,
                })
            }
            Err(e) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                *shared.last_error.lock().expect("last error") = Some(e.to_string());
                None
            }
        }
    }

    /// Waits for the pushed ends of the waits `(op index → log index)` of
    /// request `digest`, up to the wait plus a reply's time; records each
    /// end. Returns the outcomes that arrived, by op index.
    async fn await_waits(
        &mut self,
        digest: Digest,
        mut waiting: BTreeMap<u32, usize>,
    ) -> BTreeMap<u32, OpOutcome> {
        let mut ended = BTreeMap::new();
        let deadline =
            tokio::time::Instant::now() + WAIT + self.spec.request_timeout + Duration::from_secs(1);
        while !waiting.is_empty() {
            let event = match tokio::time::timeout_at(deadline, self.events.next()).await {
                Ok(Some(event)) => event,
                _ => break,
            };
            if event.request != digest {
                continue; // a late event of an earlier request
            }
            let Some(log_index) = waiting.remove(&event.op_index) else {
                continue;
            };
            let complete = self.shared.now_ns();
            let mut log = self.shared.logs[self.id].lock().expect("log");
            let entry = &mut log[log_index];
            entry.complete_ns = Some(complete);
            entry.wait_end = Some((
                Receipted {
                    at: complete,
                    time: event.proof.receipt.time,
                    outcome: event.outcome.clone(),
                },
                event.seq.0,
            ));
            ended.insert(event.op_index, event.outcome);
        }
        ended
    }

    fn note_outcome(&mut self, outcome: &OpOutcome) {
        if matches!(outcome, Err(OpError::NoSuchSession)) {
            self.session = None;
        }
    }

    /// Try-once acquires of `k` of many resources, then their releases.
    async fn locks_round(&mut self) {
        if !self.ensure_session().await {
            return;
        }
        let Some(session) = self.session else { return };
        let k = self.spec.ops_per_request;
        let pool = (8 * self.spec.clients * k).max(16);
        let mut names: Vec<String> = Vec::new();
        while names.len() < k {
            let name = format!("{}lock-{}", self.spec.prefix(), self.rng.gen_range(0..pool));
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let ops = names
            .iter()
            .map(|r| Op::Acquire {
                session,
                resource: r.clone(),
                mode: LockMode::Exclusive,
                wait: None,
            })
            .collect();
        let release: Vec<String> = match self.request(ops).await {
            Some(a) => {
                let outcomes = a.outcomes.clone();
                outcomes.iter().for_each(|o| self.note_outcome(o));
                names
                    .iter()
                    .zip(&outcomes)
                    .filter(|(_, o)| {
                        matches!(o, Ok(OpResult::Granted { .. }) | Err(OpError::AlreadyHeld))
                    })
                    .map(|(r, _)| r.clone())
                    .collect()
            }
            // Unknown whether granted: release them all (harmless if not).
            None => names,
        };
        self.release(session, release).await;
    }

    /// Waiting acquires of the hot resources, a short hold, releases.
    async fn contended_round(&mut self) {
        if !self.ensure_session().await {
            return;
        }
        let Some(session) = self.session else { return };
        let k = self.spec.ops_per_request;
        let prefix = self.spec.prefix();
        let names: Vec<String> = if k == 1 {
            vec![format!("{prefix}hot-{}", self.rng.gen_range(0..2))]
        } else {
            // In a fixed order, so waiters cannot deadlock for long.
            (0..k).map(|i| format!("{prefix}hot-{i}")).collect()
        };
        let ops = names
            .iter()
            .map(|r| Op::Acquire {
                session,
                resource: r.clone(),
                mode: LockMode::Exclusive,
                wait: Some(WAIT.as_micros() as u64),
            })
            .collect();
        let Some(answered) = self.request(ops).await else {
            self.release(session, names).await;
            return;
        };
        let mut release = Vec::new();
        let mut waiting = BTreeMap::new();
        for (i, outcome) in answered.outcomes.iter().enumerate() {
            self.note_outcome(outcome);
            match outcome {
                Ok(OpResult::Granted { .. }) | Err(OpError::AlreadyHeld) => {
                    release.push(names[i].clone())
                }
                Ok(OpResult::Queued { .. }) => {
                    waiting.insert(i as u32, answered.first_log_index + i);
                }
                _ => {}
            }
        }
        if !waiting.is_empty() {
            let unanswered: Vec<u32> = waiting.keys().copied().collect();
            let ended = self.await_waits(answered.digest, waiting).await;
            for i in unanswered {
                match ended.get(&i) {
                    Some(Ok(OpResult::Granted { .. })) => release.push(names[i as usize].clone()),
                    Some(_) => {}
                    // No event (the gateway failed, say): it may have been
                    // granted; a release settles it either way.
                    None => release.push(names[i as usize].clone()),
                }
            }
        }
        if !release.is_empty() {
            tokio::time::sleep(HOLD).await;
        }
        self.release(session, release).await;
    }

    async fn release(&mut self, session: SessionId, resources: Vec<String>) {
        if resources.is_empty() || self.session != Some(session) {
            return;
        }
        let ops = resources
            .into_iter()
            .map(|resource| Op::Release { session, resource })
            .collect();
        if let Some(a) = self.request(ops).await {
            let outcomes = a.outcomes;
            outcomes.iter().for_each(|o| self.note_outcome(o));
        }
    }

    /// One request of `k` sync submits, once the backlog allows.
    async fn produce(&mut self) {
        let k = self.spec.ops_per_request as u64;
        if self.shared.backlog.load(Ordering::Relaxed) + k > BACKLOG_PER_OP_MAX * k {
            tokio::time::sleep(Duration::from_millis(10)).await;
            return;
        }
        let queue = self.spec.queue_name();
        let ops = (0..self.spec.ops_per_request)
            .map(|_| {
                self.sent += 1;
                Op::Submit {
                    queue: queue.clone(),
                    priority: Priority::ALL[self.rng.gen_range(0..4)],
                    payload: Bytes(
                        format!("client {} message {}", self.id, self.sent).into_bytes(),
                    ),
                    dedup_key: None,
                    durability: Durability::Sync,
                }
            })
            .collect();
        match self.request(ops).await {
            Some(a) => {
                let submitted = a
                    .outcomes
                    .iter()
                    .filter(|o| matches!(o, Ok(OpResult::Submitted { .. })))
                    .count();
                self.shared
                    .backlog
                    .fetch_add(submitted as u64, Ordering::Relaxed);
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }

    /// Claims and acks (or nacks) until the producers are done and the
    /// queue is empty, then lists the dead letters.
    async fn consume(&mut self) {
        let queue = self.spec.queue_name();
        let drain_end = self.shared.end + self.spec.drain_max;
        loop {
            if self.stopped() || Instant::now() >= drain_end {
                break;
            }
            let draining = Instant::now() >= self.shared.end
                && self.shared.producers_active.load(Ordering::Relaxed) == 0;
            if !self.ensure_session().await {
                break;
            }
            let Some(session) = self.session else { break };
            let ops = (0..self.spec.ops_per_request)
                .map(|_| Op::Claim {
                    session,
                    queue: queue.clone(),
                    visibility_timeout: VISIBILITY.as_micros() as u64,
                })
                .collect();
            let claimed: Vec<(MessageId, u32)> = match self.request(ops).await {
                Some(a) => {
                    let outcomes = a.outcomes;
                    outcomes.iter().for_each(|o| self.note_outcome(o));
                    outcomes
                        .iter()
                        .filter_map(|o| match o {
                            Ok(OpResult::Claimed(view)) => Some((view.id, view.delivery)),
                            _ => None,
                        })
                        .collect()
                }
                None => Vec::new(),
            };
            if claimed.is_empty() {
                if draining && self.queue_settled(&queue).await {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            let ops: Vec<Op> = claimed
                .into_iter()
                .map(|(message, delivery)| {
                    if self.rng.gen_range(0..100) < NACK_PERCENT {
                        Op::Nack {
                            session,
                            message,
                            delivery,
                        }
                    } else {
                        Op::Ack {
                            session,
                            message,
                            delivery,
                        }
                    }
                })
                .collect();
            let acks: Vec<bool> = ops_are_acks(&ops);
            if let Some(a) = self.request(ops).await {
                let outcomes = a.outcomes;
                outcomes.iter().for_each(|o| self.note_outcome(o));
                let acked = outcomes
                    .iter()
                    .zip(&acks)
                    .filter(|(o, ack)| **ack && matches!(o, Ok(OpResult::Done)))
                    .count() as u64;
                // Saturating: a message acked after a producer's reply was
                // lost was never counted in.
                let _ =
                    self.shared
                        .backlog
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                            Some(b.saturating_sub(acked))
                        });
            }
        }
        if !self.stopped() {
            self.request(vec![Op::PeekDeadLetters { queue }]).await;
        }
    }

    /// Whether the queue has nothing ready and nothing claimed.
    async fn queue_settled(&mut self, queue: &str) -> bool {
        let Some(a) = self
            .request(vec![Op::Depth {
                queue: queue.to_string(),
            }])
            .await
        else {
            return false;
        };
        matches!(a.outcomes.first(), Some(Ok(OpResult::Depth(d)))
            if d.ready.iter().all(|r| *r == 0) && d.claimed == 0)
    }
}

fn ops_are_acks(ops: &[Op]) -> Vec<bool> {
    ops.iter().map(|op| matches!(op, Op::Ack { .. })).collect()
}
