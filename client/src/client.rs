//! The client: signs requests, sends them to one replica at a time, checks
//! every answer, and moves to another replica when one fails, lies or
//! stalls — resubmitting the *same* signed request (same number), which the
//! cluster answers from its reply cache instead of executing it twice.

use crate::api::{ApiError, ClientFrame, Event, ServerFrame, StatusReport};
use crate::config::ClusterConfig;
use crate::conn::{Connection, EventSink};
use crate::error::{ClientError, Failures, ReplicaError, ReplicaFailure};
use crate::numbers::RequestNumbers;
use crate::verify::{
    reply_threshold, verify_event, verify_pulse_proof, verify_pulses, verify_reply,
    VerifyReplyError,
};
use lockchain::{
    CheckedSignatures, PulseCertificate, ReceiptBatchProof, ReceiptPulseProof, Verifier,
};
use primitives::{
    ClusterId, Digest, KeyPair, PulseNumber, ReplicaId, Request, RequestBody, RequestLimits,
    RequestNumber, SeqNum,
};
use qlock::{Durability, MessageId, Op, OpOutcome, OpResult, SessionId};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot, Notify};

/// How the client behaves. [`Default`] suits a cluster with `qlockd`'s
/// default timeouts.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// How long to wait for one replica's answer before trying another.
    /// Above the gateway's own wait (10 s by default), so a slow commit
    /// is answered `Timeout` by the gateway rather than abandoned here.
    pub request_timeout: Duration,
    /// How long a TCP connect may take.
    pub connect_timeout: Duration,
    /// Attempts per call, over all replicas; `None`: twice the replica
    /// count.
    pub attempts_max: Option<usize>,
    /// The replica tried first; `None`: one chosen at random (spreads
    /// clients over gateways).
    pub preferred_replica: Option<ReplicaId>,
    /// The cluster's maximum clock skew: a lease is treated as ending this
    /// much early (DESIGN.md step 5).
    pub max_clock_skew: Duration,
    /// Renew sessions created through this client in the background, at a
    /// third of their TTL.
    pub keepalive: bool,
    /// How often the background task looks for due renewals.
    pub keepalive_tick: Duration,
    /// Verified events buffered for each [`Events`] subscriber; a slower
    /// subscriber skips the oldest.
    pub events_max: usize,
    /// Releases and nacks queued for the background task (from dropped
    /// guards); past it a drop only logs (the lease ends the lock anyway).
    pub background_queue_max: usize,
    /// Recent replica failures kept for [`Client::replica_failures`].
    pub failures_max: usize,
    /// The request bounds of the cluster (`qlockd`'s `[limits]`).
    pub request_limits: RequestLimits,
    /// Replica signatures on batch certificates already found valid, so
    /// the replies to requests of one batch cost one check per signer.
    /// Share one among the clients of a process (they see the same
    /// batches); `None`: this client keeps its own.
    pub checked_signatures: Option<Arc<CheckedSignatures>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            request_timeout: Duration::from_secs(12),
            connect_timeout: Duration::from_secs(2),
            attempts_max: None,
            preferred_replica: None,
            max_clock_skew: Duration::from_millis(500),
            keepalive: true,
            keepalive_tick: Duration::from_millis(250),
            events_max: 1024,
            background_queue_max: 1024,
            failures_max: 64,
            request_limits: RequestLimits::default(),
            checked_signatures: None,
        }
    }
}

/// A reply the client has checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedReply {
    /// The request's digest (with an op index, a receipt's or message's
    /// name).
    pub request: Digest,
    /// The request number used.
    pub number: RequestNumber,
    /// The replica whose answer was accepted.
    pub replica: ReplicaId,
    /// The batch that executed it; `None` for an uncertified `async`
    /// acceptance.
    pub seq: Option<SeqNum>,
    /// One outcome per op, in op order. For an `async` acceptance these
    /// are `Submitted` with the client-computed message ids and
    /// `duplicate: false` (dedup is not known yet).
    pub outcomes: Vec<OpOutcome>,
    /// The checked proofs, one per op (empty for an `async` acceptance).
    pub proofs: Vec<ReceiptBatchProof>,
}

impl VerifiedReply {
    /// Whether the reply is certified by replica signatures.
    pub fn certified(&self) -> bool {
        self.seq.is_some()
    }
}

/// A later outcome of a waiting acquire, checked (f + 1 signatures).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitOutcome {
    /// The acquire's request.
    pub request: Digest,
    /// The acquire's op index.
    pub op_index: u32,
    /// The batch where it happened.
    pub seq: SeqNum,
    /// `Granted` or `WaitTimedOut`/`WaitAborted`.
    pub outcome: OpOutcome,
    /// The proof.
    pub proof: ReceiptBatchProof,
}

/// A stream of verified [`WaitOutcome`]s for this client's key.
pub struct Events {
    rx: broadcast::Receiver<WaitOutcome>,
}

impl Events {
    /// The next event; `None` once the client is gone. A subscriber that
    /// fell more than `events_max` behind skips the oldest.
    pub async fn next(&mut self) -> Option<WaitOutcome> {
        loop {
            match self.rx.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::warn!(skipped, "event subscriber lagged");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// A session as created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    /// Its id.
    pub id: SessionId,
    /// Its lease length.
    pub ttl: Duration,
    /// Its expiry on the cluster's clock (µs), unless renewed.
    pub expires_at: u64,
}

/// A session's lease as this client sees it.
#[derive(Clone, Copy, Debug)]
struct Lease {
    ttl: Duration,
    /// Local time just before the last successful create or renewal was
    /// sent: the lease surely started no earlier.
    renewed_at: Instant,
    lost: bool,
}

/// Work for the background task.
#[derive(Debug)]
pub(crate) enum Background {
    /// A dropped lock guard.
    Release {
        session: SessionId,
        resource: String,
    },
    /// A dropped claimed message.
    Nack {
        session: SessionId,
        message: MessageId,
        delivery: u32,
    },
}

/// Recent events seen, to drop duplicates pushed by several gateways.
const RECENT_EVENTS_MAX: usize = 256;

pub(crate) struct Inner {
    config: ClusterConfig,
    key: KeyPair,
    verifier: Verifier,
    cluster: ClusterId,
    pub(crate) options: ClientOptions,
    numbers: Mutex<RequestNumbers>,
    numbers_freed: Notify,
    next_frame_id: AtomicU64,
    current: AtomicUsize,
    connections: Vec<tokio::sync::Mutex<Option<Arc<Connection>>>>,
    events: broadcast::Sender<WaitOutcome>,
    waits: Mutex<BTreeMap<(Digest, u32), oneshot::Sender<WaitOutcome>>>,
    recent_events: Mutex<VecDeque<(Digest, u32, SeqNum)>>,
    failures: Mutex<VecDeque<ReplicaFailure>>,
    sessions: Mutex<BTreeMap<SessionId, Lease>>,
    pub(crate) background: mpsc::Sender<Background>,
    unverifiable_events: AtomicU64,
}

/// The QLOCK client. Cheap to clone (one shared state); background tasks
/// stop when the last clone is dropped.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("cluster", &self.inner.cluster)
            .field("key", &self.inner.key.public())
            .finish()
    }
}

fn wall_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A refusal that every correct replica would give too: once f + 1
/// replicas agree on one, retrying elsewhere is pointless.
fn definitive(error: &ApiError) -> Option<&'static str> {
    match error {
        ApiError::Malformed(_) => Some("malformed"),
        ApiError::Oversized(_) => Some("oversized"),
        ApiError::BadSignature => Some("bad_signature"),
        ApiError::WrongCluster => Some("wrong_cluster"),
        ApiError::Stale => Some("stale"),
        ApiError::NotFound => Some("not_found"),
        ApiError::Overloaded(_) | ApiError::Timeout | ApiError::Unavailable(_) => None,
    }
}

impl Client {
    /// A client for the cluster `config` describes, signing with `key`.
    /// Connects to one replica (the preferred one, else a random one, else
    /// any that answers); must run inside a tokio runtime.
    pub async fn connect(
        config: ClusterConfig,
        key: KeyPair,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let n = config.replicas.len();
        let start = match options.preferred_replica {
            Some(r) if r.index() < n => r.index(),
            Some(r) => {
                return Err(ClientError::InvalidArgument(format!(
                    "preferred replica {} is not in 0..{n}",
                    r.0
                )))
            }
            None => rand::random::<usize>() % n,
        };
        let (background, background_rx) = mpsc::channel(options.background_queue_max.max(1));
        let (events, _) = broadcast::channel(options.events_max.max(1));
        let inner = Arc::new(Inner {
            verifier: Verifier::new(config.membership.clone())
                .remembering(options.checked_signatures.clone().unwrap_or_default()),
            cluster: config.cluster_id(),
            connections: (0..n).map(|_| tokio::sync::Mutex::new(None)).collect(),
            config,
            key,
            numbers: Mutex::new(RequestNumbers::starting_at(wall_micros())),
            numbers_freed: Notify::new(),
            next_frame_id: AtomicU64::new(1),
            current: AtomicUsize::new(start),
            events,
            waits: Mutex::new(BTreeMap::new()),
            recent_events: Mutex::new(VecDeque::new()),
            failures: Mutex::new(VecDeque::new()),
            sessions: Mutex::new(BTreeMap::new()),
            background,
            unverifiable_events: AtomicU64::new(0),
            options,
        });
        tokio::spawn(background_task(Arc::downgrade(&inner), background_rx));
        let client = Client { inner };
        let mut failures = Vec::new();
        for i in 0..n {
            let replica = (start + i) % n;
            match client.connection(replica).await {
                Ok(_) => {
                    client.inner.current.store(replica, Ordering::Release);
                    return Ok(client);
                }
                Err(error) => failures.push(client.record_failure(replica, error)),
            }
        }
        Err(ClientError::Unavailable {
            failures: Failures(failures),
        })
    }

    /// This client's key (its identity).
    pub fn client_id(&self) -> primitives::ClientId {
        self.inner.key.public()
    }

    /// The cluster's id.
    pub fn cluster_id(&self) -> ClusterId {
        self.inner.cluster
    }

    /// The verifier (membership and cluster id) this client checks with.
    pub fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }

    /// The replica calls go to first.
    pub fn current_replica(&self) -> ReplicaId {
        ReplicaId(self.inner.current.load(Ordering::Acquire) as u16)
    }

    /// Recent failed attempts (oldest first, at most `failures_max`).
    pub fn replica_failures(&self) -> Vec<ReplicaFailure> {
        self.inner
            .failures
            .lock()
            .expect("failures lock")
            .iter()
            .cloned()
            .collect()
    }

    /// Pushed events that failed verification and were dropped.
    pub fn unverifiable_events(&self) -> u64 {
        self.inner.unverifiable_events.load(Ordering::Relaxed)
    }

    /// A stream of this key's verified wait outcomes (grants and ends of
    /// waits), from now on. Events are pushed on connections where this
    /// client has submitted.
    pub fn events(&self) -> Events {
        Events {
            rx: self.inner.events.subscribe(),
        }
    }

    fn record_failure(&self, replica: usize, error: ReplicaError) -> ReplicaFailure {
        let failure = ReplicaFailure {
            replica: ReplicaId(replica as u16),
            error,
        };
        tracing::debug!("{failure}");
        let mut failures = self.inner.failures.lock().expect("failures lock");
        if failures.len() >= self.inner.options.failures_max.max(1) {
            failures.pop_front();
        }
        failures.push_back(failure.clone());
        failure
    }

    async fn connection(&self, replica: usize) -> Result<Arc<Connection>, ReplicaError> {
        let mut slot = self.inner.connections[replica].lock().await;
        if let Some(conn) = slot.as_ref() {
            if !conn.is_closed() {
                return Ok(conn.clone());
            }
        }
        let weak = Arc::downgrade(&self.inner);
        let sink: EventSink = Arc::new(move |from, event| {
            if let Some(inner) = weak.upgrade() {
                inner.on_event(from, event);
            }
        });
        let endpoint = &self.inner.config.replicas[replica];
        let conn = Arc::new(
            Connection::open(
                endpoint.id,
                endpoint.client,
                self.inner.options.connect_timeout,
                sink,
            )
            .await?,
        );
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn drop_connection(&self, replica: usize) {
        *self.inner.connections[replica].lock().await = None;
    }

    /// Sends frames built by `make` (given a fresh frame id) to one replica
    /// after another until `check` accepts an answer. Rejections that f + 1
    /// replicas agree on end the call.
    async fn call_any<T>(
        &self,
        make: impl Fn(u64) -> ClientFrame,
        check: impl Fn(ServerFrame) -> Result<T, ReplicaError>,
    ) -> Result<(T, ReplicaId), ClientError> {
        let n = self.inner.config.replicas.len();
        let attempts = self.inner.options.attempts_max.unwrap_or(2 * n).max(1);
        let start = self.inner.current.load(Ordering::Acquire);
        let weak_quorum = self.inner.config.membership.weak_quorum();
        let mut refusals: BTreeMap<&'static str, BTreeSet<usize>> = BTreeMap::new();
        let mut failures = Vec::new();
        for attempt in 0..attempts {
            let replica = (start + attempt) % n;
            match self.attempt(replica, &make, &check).await {
                Ok(value) => {
                    self.inner.current.store(replica, Ordering::Release);
                    return Ok((value, ReplicaId(replica as u16)));
                }
                Err(error) => {
                    if let ReplicaError::Rejected(api) = &error {
                        if let Some(kind) = definitive(api) {
                            let agreeing = refusals.entry(kind).or_default();
                            agreeing.insert(replica);
                            if agreeing.len() >= weak_quorum {
                                return Err(ClientError::Rejected { error: api.clone() });
                            }
                        }
                    }
                    if matches!(
                        error,
                        ReplicaError::ConnectionLost(_)
                            | ReplicaError::Timeout(_)
                            | ReplicaError::Unverifiable(_)
                    ) {
                        // A lying or stuck gateway: do not reuse its
                        // connection (and its pending answers).
                        self.drop_connection(replica).await;
                    }
                    failures.push(self.record_failure(replica, error));
                    // Later calls start at the next replica.
                    let _ = self.inner.current.compare_exchange(
                        replica,
                        (replica + 1) % n,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                }
            }
        }
        Err(ClientError::Unavailable {
            failures: Failures(failures),
        })
    }

    async fn attempt<T>(
        &self,
        replica: usize,
        make: &impl Fn(u64) -> ClientFrame,
        check: &impl Fn(ServerFrame) -> Result<T, ReplicaError>,
    ) -> Result<T, ReplicaError> {
        let conn = self.connection(replica).await?;
        let id = self.inner.next_frame_id.fetch_add(1, Ordering::Relaxed);
        let frame = make(id);
        let timeout = self.inner.options.request_timeout;
        let answer = tokio::time::timeout(timeout, conn.call(id, &frame))
            .await
            .map_err(|_| ReplicaError::Timeout(timeout.as_millis() as u64))??;
        if let ServerFrame::Rejected { error, .. } = answer {
            return Err(ReplicaError::Rejected(error));
        }
        check(answer)
    }

    // -----------------------------------------------------------------
    // Requests

    /// Allocates a request number (waiting while 128 are in flight) and
    /// signs `ops` into a request.
    async fn prepare(&self, ops: &[Op], atomic: bool) -> Result<Request, ClientError> {
        let limits = &self.inner.options.request_limits;
        if ops.is_empty() || ops.len() > limits.ops_max {
            return Err(ClientError::InvalidArgument(format!(
                "a request carries 1 to {} ops, not {}",
                limits.ops_max,
                ops.len()
            )));
        }
        let encoded: Vec<_> = ops.iter().map(Op::encode).collect();
        if let Some((i, op)) = encoded
            .iter()
            .enumerate()
            .find(|(_, op)| op.0.len() > limits.op_bytes_max)
        {
            return Err(ClientError::InvalidArgument(format!(
                "op {i} encodes to {} bytes, the limit is {} (use a smaller payload)",
                op.0.len(),
                limits.op_bytes_max
            )));
        }
        let number = loop {
            let freed = self.inner.numbers_freed.notified();
            if let Some(number) = self.inner.numbers.lock().expect("numbers lock").allocate() {
                break number;
            }
            freed.await;
        };
        let body = RequestBody {
            cluster: self.inner.cluster,
            client: self.inner.key.public(),
            number,
            atomic,
            ops: encoded,
        };
        Ok(body.sign(&self.inner.key))
    }

    fn finish(&self, number: RequestNumber) {
        self.inner
            .numbers
            .lock()
            .expect("numbers lock")
            .finish(number);
        self.inner.numbers_freed.notify_waiters();
    }

    /// Signs `ops` into one request (all-or-nothing if `atomic`), sends it,
    /// and returns the checked outcome of every op. Failing, lying or slow
    /// replicas are skipped; the same signed request goes to the next one.
    pub async fn submit(&self, ops: Vec<Op>, atomic: bool) -> Result<VerifiedReply, ClientError> {
        self.submit_named(ops, atomic).await.1
    }

    /// [`Client::submit`], also naming the request: its digest, known
    /// before it is sent, so also when the call fails — the request may
    /// still execute, and whoever records a history needs its name (a
    /// submit's message id is the digest and the op index). `None`:
    /// nothing was sent (the ops were refused here).
    pub async fn submit_named(
        &self,
        ops: Vec<Op>,
        atomic: bool,
    ) -> (Option<Digest>, Result<VerifiedReply, ClientError>) {
        let request = match self.prepare(&ops, atomic).await {
            Ok(request) => request,
            Err(e) => return (None, Err(e)),
        };
        let number = request.body.number;
        let result = self.send(&request, &ops).await;
        self.finish(number);
        (Some(request.digest()), result)
    }

    /// Sends a signed request (again): the cluster executes a request
    /// number once and answers repeats from its reply cache.
    async fn send(&self, request: &Request, ops: &[Op]) -> Result<VerifiedReply, ClientError> {
        let threshold = reply_threshold(ops);
        let all_async = ops.iter().all(|op| {
            matches!(
                op,
                Op::Submit {
                    durability: Durability::Async,
                    ..
                }
            )
        });
        let digest = request.digest();
        let verifier = &self.inner.verifier;
        let make = |id| ClientFrame::Submit {
            id,
            request: Box::new(request.clone()),
        };
        let check = |frame| match frame {
            ServerFrame::Replied { reply, .. } => {
                let outcomes = verify_reply(verifier, request, &reply, threshold)
                    .map_err(ReplicaError::Unverifiable)?;
                Ok((Some(reply.seq), outcomes, reply.proofs))
            }
            ServerFrame::Accepted { request: d, .. } if all_async && d == digest => {
                let outcomes = (0..ops.len())
                    .map(|i| {
                        Ok(OpResult::Submitted {
                            id: MessageId {
                                request: digest,
                                op_index: i as u32,
                            },
                            duplicate: false,
                        })
                    })
                    .collect();
                Ok((None, outcomes, Vec::new()))
            }
            other => Err(ReplicaError::Unverifiable(VerifyReplyError::Unexpected(
                format!("answer {} to a submit", frame_name(&other)),
            ))),
        };
        let ((seq, outcomes, proofs), replica) = self.call_any(make, check).await?;
        Ok(VerifiedReply {
            request: digest,
            number: request.body.number,
            replica,
            seq,
            outcomes,
            proofs,
        })
    }

    /// Submits one op and returns its result; a refused op is
    /// [`ClientError::Op`].
    pub async fn one(&self, op: Op) -> Result<OpResult, ClientError> {
        let reply = self.submit(vec![op], false).await?;
        first_outcome(reply)
    }

    // -----------------------------------------------------------------
    // Queries that are not ordered

    /// One replica's view of the cluster. Not signed: informational only.
    pub async fn status(&self) -> Result<StatusReport, ClientError> {
        let check = |frame| match frame {
            ServerFrame::Status { status, .. } => Ok(status),
            other => Err(unexpected(&other, "status")),
        };
        Ok(self
            .call_any(|id| ClientFrame::Status { id }, check)
            .await?
            .0)
    }

    /// Each replica's status (or why it did not answer), in id order.
    pub async fn status_all(&self) -> Vec<(ReplicaId, Result<StatusReport, ReplicaError>)> {
        let mut out = Vec::new();
        for replica in 0..self.inner.config.replicas.len() {
            let check = |frame| match frame {
                ServerFrame::Status { status, .. } => Ok(status),
                other => Err(unexpected(&other, "status")),
            };
            let result = self
                .attempt(replica, &|id| ClientFrame::Status { id }, &check)
                .await;
            out.push((ReplicaId(replica as u16), result));
        }
        out
    }

    /// Certified pulse headers `from..from + count` (as many as the
    /// answering replica stores, in pages of at most
    /// [`crate::api::PULSES_PER_QUERY_MAX`]), each quorum certificate and
    /// every link checked.
    pub async fn pulses(
        &self,
        from: PulseNumber,
        count: u32,
    ) -> Result<Vec<PulseCertificate>, ClientError> {
        let mut out: Vec<PulseCertificate> = Vec::new();
        let mut next = from;
        let mut left = count;
        while left > 0 {
            let page = left.min(crate::api::PULSES_PER_QUERY_MAX);
            let verifier = &self.inner.verifier;
            let previous = out.last().map(|c| c.header);
            let check = |frame| match frame {
                ServerFrame::Pulses { pulses, .. } => {
                    if pulses.len() > page as usize {
                        return Err(ReplicaError::Unverifiable(VerifyReplyError::Unexpected(
                            format!("{} pulses for a query of {page}", pulses.len()),
                        )));
                    }
                    verify_pulses(verifier, next, &pulses).map_err(ReplicaError::Unverifiable)?;
                    if let (Some(previous), Some(first)) = (previous, pulses.first()) {
                        lockchain::verify_link(&previous, &first.header).map_err(|source| {
                            ReplicaError::Unverifiable(VerifyReplyError::Chain(
                                lockchain::ChainError {
                                    position: 0,
                                    error: source,
                                },
                            ))
                        })?;
                    }
                    Ok(pulses)
                }
                other => Err(unexpected(&other, "pulses")),
            };
            let make = |id| ClientFrame::Pulses {
                id,
                from: next,
                count: page,
            };
            let (pulses, _) = self.call_any(make, check).await?;
            let got = pulses.len() as u32;
            out.extend(pulses);
            if got < page {
                break;
            }
            left -= got;
            next = PulseNumber(next.0 + u64::from(got));
        }
        Ok(out)
    }

    /// The proof that op `op_index` of request `request` happened, up to a
    /// certified pulse; checked, with the op's outcome.
    pub async fn receipt_proof(
        &self,
        request: Digest,
        op_index: u32,
    ) -> Result<(ReceiptPulseProof, OpOutcome), ClientError> {
        let verifier = &self.inner.verifier;
        let check = |frame| match frame {
            ServerFrame::ReceiptProof { proof, .. } => {
                let outcome = verify_pulse_proof(verifier, &proof, request, op_index)
                    .map_err(ReplicaError::Unverifiable)?;
                Ok((*proof, outcome))
            }
            other => Err(unexpected(&other, "receipt proof")),
        };
        let make = |id| ClientFrame::ReceiptProof {
            id,
            request,
            op_index,
        };
        Ok(self.call_any(make, check).await?.0)
    }

    // -----------------------------------------------------------------
    // Waiting acquires

    /// Submits an acquire that may wait, and waits for its outcome: the
    /// reply if it is final, else the pushed event (or, if no event comes
    /// by the deadline, a `Check` of the lock).
    pub(crate) async fn acquire_op(&self, op: Op) -> Result<qlock::FencingToken, ClientError> {
        let (session, resource, wait) = match &op {
            Op::Acquire {
                session,
                resource,
                wait,
                ..
            } => (*session, resource.clone(), *wait),
            _ => unreachable!("acquire_op takes an acquire"),
        };
        let ops = vec![op];
        let request = self.prepare(&ops, false).await?;
        let key = (request.digest(), 0u32);
        let (tx, rx) = oneshot::channel();
        if wait.is_some() {
            self.inner.waits.lock().expect("waits lock").insert(key, tx);
        }
        let number = request.body.number;
        let sent = self.send(&request, &ops).await;
        self.finish(number);
        let reply = match sent {
            Ok(reply) => reply,
            Err(e) => {
                self.inner.waits.lock().expect("waits lock").remove(&key);
                return Err(e);
            }
        };
        let result = match first_outcome(reply) {
            Ok(OpResult::Granted { token }) => Ok(token),
            Ok(OpResult::Queued { .. }) => {
                let wait = Duration::from_micros(wait.unwrap_or(0));
                let bound = wait + self.inner.options.request_timeout;
                match tokio::time::timeout(bound, rx).await {
                    Ok(Ok(event)) => match event.outcome {
                        Ok(OpResult::Granted { token }) => Ok(token),
                        Ok(other) => Err(unexpected_result("acquire", &other)),
                        Err(e) => Err(ClientError::Op(e)),
                    },
                    // No event (connection changed, or lost): ask.
                    _ => self.holder_token(session, &resource).await,
                }
            }
            Ok(other) => Err(unexpected_result("acquire", &other)),
            Err(e) => Err(e),
        };
        self.inner.waits.lock().expect("waits lock").remove(&key);
        result
    }

    async fn holder_token(
        &self,
        session: SessionId,
        resource: &str,
    ) -> Result<qlock::FencingToken, ClientError> {
        let info = match self
            .one(Op::Check {
                resource: resource.to_string(),
            })
            .await?
        {
            OpResult::Lock(info) => info,
            other => return Err(unexpected_result("check", &other)),
        };
        info.holders
            .iter()
            .find(|(s, _)| *s == session)
            .map(|(_, token)| *token)
            .ok_or(ClientError::Op(qlock::OpError::WaitTimedOut))
    }

    // -----------------------------------------------------------------
    // Leases

    pub(crate) fn track_session(&self, session: SessionId, ttl: Duration, sent_at: Instant) {
        if self.inner.options.keepalive {
            self.inner.sessions.lock().expect("sessions lock").insert(
                session,
                Lease {
                    ttl,
                    renewed_at: sent_at,
                    lost: false,
                },
            );
        }
    }

    pub(crate) fn untrack_session(&self, session: SessionId) {
        self.inner
            .sessions
            .lock()
            .expect("sessions lock")
            .remove(&session);
    }

    pub(crate) fn note_renewal(&self, session: SessionId, ttl: Duration, sent_at: Instant) {
        if let Some(lease) = self
            .inner
            .sessions
            .lock()
            .expect("sessions lock")
            .get_mut(&session)
        {
            lease.ttl = ttl;
            lease.renewed_at = lease.renewed_at.max(sent_at);
        }
    }

    /// How long the session's lease surely lasts, judged on this client's
    /// clock and ending `max_clock_skew` early; `None` if it is not kept
    /// alive by this client, lost, or over.
    pub fn lease_remaining(&self, session: SessionId) -> Option<Duration> {
        let sessions = self.inner.sessions.lock().expect("sessions lock");
        let lease = sessions.get(&session)?;
        if lease.lost {
            return None;
        }
        let end = lease.renewed_at + lease.ttl.checked_sub(self.inner.options.max_clock_skew)?;
        end.checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }

    /// Renews every tracked session whose renewal is due (a third of its
    /// TTL since the last one), in one request.
    async fn keepalive_pass(&self) {
        let now = Instant::now();
        let ops_max = self.inner.options.request_limits.ops_max;
        let due: Vec<(SessionId, Duration)> = self
            .inner
            .sessions
            .lock()
            .expect("sessions lock")
            .iter()
            .filter(|(_, l)| !l.lost && now >= l.renewed_at + l.ttl / 3)
            .map(|(s, l)| (*s, l.ttl))
            .take(ops_max)
            .collect();
        if due.is_empty() {
            return;
        }
        let ops = due
            .iter()
            .map(|(session, ttl)| Op::RenewSession {
                session: *session,
                ttl: micros(*ttl),
            })
            .collect();
        let sent_at = Instant::now();
        match self.submit(ops, false).await {
            Ok(reply) => {
                for ((session, ttl), outcome) in due.iter().zip(reply.outcomes) {
                    match outcome {
                        Ok(_) => self.note_renewal(*session, *ttl, sent_at),
                        Err(e) => {
                            tracing::warn!(?session, "session lost: {e}");
                            if let Some(l) = self
                                .inner
                                .sessions
                                .lock()
                                .expect("sessions lock")
                                .get_mut(session)
                            {
                                l.lost = true;
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!("keepalive failed, will retry: {e}"),
        }
    }
}

impl Inner {
    fn on_event(&self, from: ReplicaId, event: Event) {
        let Event::WaitOutcome(proof) = event;
        let outcome = match verify_event(&self.verifier, &proof) {
            Ok(outcome) => outcome,
            Err(e) => {
                self.unverifiable_events.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(replica = from.0, "dropped an unverifiable event: {e}");
                return;
            }
        };
        let receipt = &proof.receipt;
        let name = (receipt.request, receipt.op_index, receipt.seq);
        {
            let mut recent = self.recent_events.lock().expect("recent lock");
            if recent.contains(&name) {
                return;
            }
            if recent.len() >= RECENT_EVENTS_MAX {
                recent.pop_front();
            }
            recent.push_back(name);
        }
        let event = WaitOutcome {
            request: receipt.request,
            op_index: receipt.op_index,
            seq: receipt.seq,
            outcome,
            proof: *proof,
        };
        if let Some(tx) = self
            .waits
            .lock()
            .expect("waits lock")
            .remove(&(event.request, event.op_index))
        {
            let _ = tx.send(event.clone());
        }
        let _ = self.events.send(event);
    }
}

/// Releases and nacks for dropped handles, and session keepalive.
async fn background_task(inner: Weak<Inner>, mut rx: mpsc::Receiver<Background>) {
    let tick = match inner.upgrade() {
        Some(i) => i.options.keepalive_tick,
        None => return,
    };
    let mut interval = tokio::time::interval(tick.max(Duration::from_millis(10)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let keepalive_running = Arc::new(std::sync::atomic::AtomicBool::new(false));
    loop {
        tokio::select! {
            job = rx.recv() => {
                let Some(job) = job else { return };
                let Some(inner) = inner.upgrade() else { return };
                let client = Client { inner };
                tokio::spawn(async move {
                    let op = match job {
                        Background::Release { session, resource } => Op::Release { session, resource },
                        Background::Nack { session, message, delivery } => Op::Nack { session, message, delivery },
                    };
                    if let Err(e) = client.one(op).await {
                        tracing::warn!("background release/nack failed (the lease or visibility timeout ends it): {e}");
                    }
                });
            }
            _ = interval.tick() => {
                let Some(inner) = inner.upgrade() else { return };
                if !inner.options.keepalive || keepalive_running.swap(true, Ordering::AcqRel) {
                    continue;
                }
                let client = Client { inner };
                let running = keepalive_running.clone();
                tokio::spawn(async move {
                    client.keepalive_pass().await;
                    running.store(false, Ordering::Release);
                });
            }
        }
    }
}

fn frame_name(frame: &ServerFrame) -> &'static str {
    match frame {
        ServerFrame::Replied { .. } => "Replied",
        ServerFrame::Accepted { .. } => "Accepted",
        ServerFrame::Rejected { .. } => "Rejected",
        ServerFrame::Event(_) => "Event",
        ServerFrame::Status { .. } => "Status",
        ServerFrame::Pulses { .. } => "Pulses",
        ServerFrame::ReceiptProof { .. } => "ReceiptProof",
    }
}

fn unexpected(frame: &ServerFrame, asked: &str) -> ReplicaError {
    ReplicaError::Unverifiable(VerifyReplyError::Unexpected(format!(
        "answer {} to a {asked} query",
        frame_name(frame)
    )))
}

pub(crate) fn unexpected_result(op: &'static str, got: &OpResult) -> ClientError {
    ClientError::UnexpectedResult {
        op,
        got: format!("{got:?}"),
    }
}

pub(crate) fn first_outcome(reply: VerifiedReply) -> Result<OpResult, ClientError> {
    reply
        .outcomes
        .into_iter()
        .next()
        .expect("a verified reply has one outcome per op")
        .map_err(ClientError::Op)
}

pub(crate) fn to_micros(d: Duration) -> u64 {
    micros(d)
}
