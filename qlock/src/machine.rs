//! The state machine: batches in, receipts and events out.

use crate::config::Config;
use crate::op::{
    decode_outcome, encode_outcome, FencingToken, MessageId, Op, OpError, OpOutcome, SessionId,
};
use crate::state::{
    CachedReply, ClientRecord, ConfigEntry, Deadline, Lock, Message, QueueCounts, Role, Session,
    Stats, Waiter,
};
use crate::table::{DigestTree, Record, Table};
use primitives::{Bytes, ClientId, Digest, HlcTimestamp, Receipt, Request, SeqNum, WindowVerdict};

/// Written keys (over all tables) held back from the digest tree between
/// two state digests; beyond it a batch hands them over at its end, so the
/// memory held for them stays bounded however long a checkpoint interval
/// is. Hashing early only costs the saving of hashing late.
pub const DIRTY_KEYS_MAX: usize = 65_536;

/// What a client is told outside the reply to its own request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// A waiting acquire was granted (its receipt is in the same outcome).
    Granted {
        /// The waiting client.
        client: ClientId,
        /// Its session.
        session: SessionId,
        /// The lock.
        resource: String,
        /// The grant's token.
        token: FencingToken,
        /// The request of the acquire.
        request: Digest,
        /// The acquire's index in it.
        op_index: u32,
    },
    /// A waiting acquire ended without a grant (timeout or session end);
    /// its receipt is in the same outcome.
    WaitEnded {
        /// The waiting client.
        client: ClientId,
        /// Its session.
        session: SessionId,
        /// The lock.
        resource: String,
        /// `WaitTimedOut` or `WaitAborted`.
        error: OpError,
        /// The request of the acquire.
        request: Digest,
        /// The acquire's index in it.
        op_index: u32,
    },
    /// A lock was lost because its session expired.
    LockLost {
        /// The owner.
        client: ClientId,
        /// The expired session.
        session: SessionId,
        /// The lock.
        resource: String,
        /// The token that is no longer valid.
        token: FencingToken,
    },
    /// A session expired.
    SessionExpired {
        /// The owner.
        client: ClientId,
        /// The session.
        session: SessionId,
    },
    /// A queue went from no ready message to some.
    QueueNonEmpty {
        /// The queue.
        queue: String,
    },
}

/// What one batch produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// One receipt per op of every request, in order, with the receipts of
    /// waiters granted or timed out in this batch among them (deadline
    /// receipts first, a release's grants just before the release's own).
    pub receipts: Vec<Receipt>,
    /// Events for clients.
    pub events: Vec<ClientEvent>,
}

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// A chunk does not decode.
    #[error("chunk {0} does not decode")]
    Chunk(usize),
    /// A record names no table, does not decode, or repeats a key.
    #[error("bad record {record} in chunk {chunk}")]
    Record {
        /// The chunk.
        chunk: usize,
        /// The record's index in it.
        record: usize,
    },
    /// The snapshot has no configuration record.
    #[error("snapshot has no configuration")]
    NoConfig,
}

/// Who asked for an op: the client, its request and the op's index.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Origin {
    pub(crate) client: ClientId,
    pub(crate) request: Digest,
    pub(crate) op_index: u32,
}

/// The per-batch context: time, token counter and outputs.
pub(crate) struct Cx {
    pub(crate) seq: SeqNum,
    pub(crate) time: HlcTimestamp,
    pub(crate) now: u64,
    next_index: u32,
    /// Requests of this batch executed so far (the reply cache's order).
    requests: u32,
    /// Ops executed in this batch (counted once, at the end).
    ops: u64,
    pub(crate) atomic: bool,
    pub(crate) out: BatchOutcome,
}

impl Cx {
    /// The next fencing token of this batch.
    pub(crate) fn token(&mut self) -> FencingToken {
        let token = FencingToken {
            seq: self.seq,
            index: self.next_index,
        };
        self.next_index = self
            .next_index
            .checked_add(1)
            .expect("token index overflow");
        token
    }

    /// A receipt for `(request, op_index)` at this batch.
    pub(crate) fn receipt(&mut self, request: Digest, op_index: u32, outcome: &OpOutcome) {
        self.out.receipts.push(Receipt {
            request,
            op_index,
            seq: self.seq,
            time: self.time,
            result: encode_outcome(outcome),
        });
    }
}

/// The replicated state machine of QLOCK. Deterministic: the same batches
/// at the same times give the same outcomes and the same digest.
#[derive(Clone, Debug)]
pub struct StateMachine {
    pub(crate) config: Config,
    pub(crate) dt: DigestTree,
    pub(crate) config_table: Table<(), ConfigEntry>,
    pub(crate) stats: Table<(), Stats>,
    pub(crate) clients: Table<ClientId, ClientRecord>,
    pub(crate) replies: Table<(ClientId, u64), CachedReply>,
    pub(crate) reply_order: Table<(SeqNum, u32), (ClientId, u64)>,
    pub(crate) sessions: Table<SessionId, Session>,
    pub(crate) locks: Table<String, Lock>,
    pub(crate) holders: Table<(String, SessionId), FencingToken>,
    pub(crate) waiters: Table<(String, FencingToken), Waiter>,
    pub(crate) session_locks: Table<(SessionId, String), Role>,
    pub(crate) queues: Table<String, QueueCounts>,
    pub(crate) messages: Table<MessageId, Message>,
    pub(crate) ready: Table<(String, u8, FencingToken), MessageId>,
    pub(crate) dead: Table<(String, FencingToken), (MessageId, Message)>,
    pub(crate) dedup: Table<(String, Bytes), (MessageId, u64)>,
    pub(crate) dedup_deadlines: Table<(u64, String, Bytes), ()>,
    pub(crate) session_claims: Table<(SessionId, MessageId), ()>,
    pub(crate) deadlines: Table<(u64, Deadline), ()>,
}

/// Applies `$body` to every table (mutably, or shared with `ref`), in tag
/// order.
macro_rules! for_each_table {
    (ref $self:ident, $t:ident => $body:expr) => {
        for_each_table!(@ref $self, $t, $body, config_table, stats, clients, replies, reply_order, sessions, locks, holders, waiters, session_locks, queues, messages, ready, dead, dedup, dedup_deadlines, session_claims, deadlines)
    };
    ($self:ident, $t:ident => $body:expr) => {
        for_each_table!(@mut $self, $t, $body, config_table, stats, clients, replies, reply_order, sessions, locks, holders, waiters, session_locks, queues, messages, ready, dead, dedup, dedup_deadlines, session_claims, deadlines)
    };
    (@mut $self:ident, $t:ident, $body:expr, $($f:ident),*) => {{
        $({
            let $t = &mut $self.$f;
            $body;
        })*
    }};
    (@ref $self:ident, $t:ident, $body:expr, $($f:ident),*) => {{
        $({
            let $t = &$self.$f;
            $body;
        })*
    }};
}

impl StateMachine {
    /// An empty state machine with `config`.
    pub fn new(config: Config) -> StateMachine {
        let mut sm = StateMachine::empty(config.clone());
        sm.config_table.insert((), config);
        sm.stats.insert((), Stats::default());
        sm.flush_digest();
        sm
    }

    pub(crate) fn empty(config: Config) -> StateMachine {
        StateMachine {
            config,
            dt: DigestTree::new(),
            config_table: Table::new(0),
            stats: Table::new(1),
            clients: Table::new(2),
            replies: Table::new(3),
            reply_order: Table::new(4),
            sessions: Table::new(5),
            locks: Table::new(6),
            holders: Table::new(7),
            waiters: Table::new(8),
            session_locks: Table::new(9),
            queues: Table::new(10),
            messages: Table::new(11),
            ready: Table::new(12),
            dead: Table::new(13),
            dedup: Table::new(14),
            dedup_deadlines: Table::new(15),
            session_claims: Table::new(16),
            deadlines: Table::new(17),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        self.stats.get(&()).expect("stats entry exists")
    }

    /// Live sessions, held-or-waiting lock entries, waiters and held
    /// messages (ready + claimed), for metrics.
    pub fn sizes(&self) -> (usize, usize, usize, usize) {
        (
            self.sessions.len(),
            self.locks.len(),
            self.waiters.len(),
            self.messages.len(),
        )
    }

    pub(crate) fn bump(&mut self, f: impl FnOnce(&mut Stats)) {
        self.stats.update(&(), f);
    }

    /// The digest of everything that affects future results (see
    /// `table.rs` for how it is kept incremental and why that is sound).
    /// Hashes the writes since the last call first: a replica asks at
    /// checkpoints only, so an entry written by many batches in between
    /// (a client record, a session, the stats) is hashed once, and one
    /// created and removed in between (most locks, cached replies) never.
    pub fn state_digest(&mut self) -> Digest {
        self.flush_digest();
        self.dt.root()
    }

    /// Hands the tables' writes to the digest tree (which marks their
    /// buckets dirty).
    pub(crate) fn flush_tables(&mut self) {
        let dt = &mut self.dt;
        for_each_table!(self, t => t.flush_into(dt));
    }

    /// Hashes everything written since the last flush: once per batch.
    pub(crate) fn flush_digest(&mut self) {
        self.flush_tables();
        self.dt.flush();
    }

    /// The earliest time at which a lease, waiter deadline, lock-delay or
    /// visibility timeout is due: consensus proposes a heartbeat batch then
    /// if nothing else is pending. (Dedup-window expiry is not reported:
    /// nobody waits for it, and the next batch processes it first anyway.)
    pub fn next_deadline(&self) -> Option<HlcTimestamp> {
        self.deadlines
            .first()
            .map(|((at, _), _)| HlcTimestamp::from_micros(*at))
    }

    /// Executes one committed batch at its effective time: first every
    /// deadline due by `time`, then every op of every request in order.
    /// Requests must be signature-checked already; everything else is
    /// checked here. Panics if `seq` or `time` go backwards (a consensus
    /// bug, not bad input).
    pub fn execute_batch(
        &mut self,
        seq: SeqNum,
        time: HlcTimestamp,
        requests: &[Request],
    ) -> BatchOutcome {
        let digests: Vec<Digest> = requests.iter().map(Request::digest).collect();
        self.execute_batch_digested(seq, time, requests, &digests)
    }

    /// [`StateMachine::execute_batch`] with each request's digest given:
    /// a replica has them already (consensus orders digests), and hashing
    /// a request body again costs 1–3 µs. `digests[i]` must be
    /// `requests[i].digest()` (checked in debug builds only: checking it
    /// here would be the cost this avoids).
    pub fn execute_batch_digested(
        &mut self,
        seq: SeqNum,
        time: HlcTimestamp,
        requests: &[Request],
        digests: &[Digest],
    ) -> BatchOutcome {
        assert_eq!(requests.len(), digests.len(), "one digest per request");
        let stats = self.stats();
        assert!(
            stats.last_seq.is_none_or(|last| seq > last),
            "batch {seq:?} executed after {:?}",
            stats.last_seq
        );
        assert!(time >= stats.last_time, "effective time went backwards");
        let mut cx = Cx {
            seq,
            time,
            now: time.wall,
            next_index: 0,
            requests: 0,
            ops: 0,
            atomic: false,
            out: BatchOutcome::default(),
        };
        self.run_deadlines(&mut cx);
        for (request, digest) in requests.iter().zip(digests) {
            debug_assert_eq!(request.digest(), *digest, "digest of another request");
            self.execute_request(&mut cx, request, *digest);
            cx.requests += 1;
        }
        let ops = cx.ops;
        self.bump(|s| {
            s.ops += ops;
            s.last_seq = Some(seq);
            s.last_time = time;
        });
        if self.dirty_keys() > DIRTY_KEYS_MAX {
            self.flush_tables();
        }
        cx.out
    }

    /// Keys written since they were last handed to the digest tree.
    fn dirty_keys(&self) -> usize {
        let mut keys = 0;
        for_each_table!(ref self, t => keys += t.dirty_len());
        keys
    }

    fn execute_request(&mut self, cx: &mut Cx, request: &Request, digest: Digest) {
        let client = request.body.client;
        let number = request.body.number.0;
        let count = request.body.ops.len();
        let refuse = |cx: &mut Cx, error: OpError| {
            for i in 0..count {
                cx.receipt(digest, i as u32, &Err(error.clone()));
            }
        };
        let mut record = match self.clients.get(&client) {
            Some(record) => record.clone(),
            None if self.clients.len() >= self.config.clients_max as usize => {
                return refuse(cx, limit("clients_max"));
            }
            None => ClientRecord::default(),
        };
        match record.window.admit(number) {
            WindowVerdict::Fresh => {}
            WindowVerdict::BelowWindow => return refuse(cx, OpError::RequestTooOld),
            WindowVerdict::Seen => return self.replay(cx, request, digest),
        }
        self.clients.insert(client, record);
        let results = self.execute_ops(cx, request, digest);
        self.cache_reply(cx, client, number, digest, results);
    }

    /// A repeat of an executed request number: the cached results again.
    fn replay(&mut self, cx: &mut Cx, request: &Request, digest: Digest) {
        let key = (request.body.client, request.body.number.0);
        let count = request.body.ops.len();
        match self.replies.get(&key) {
            Some(cached) if cached.request == digest => {
                for (i, result) in cached.results.clone().into_iter().enumerate() {
                    cx.out.receipts.push(Receipt {
                        request: digest,
                        op_index: i as u32,
                        seq: cx.seq,
                        time: cx.time,
                        result,
                    });
                }
            }
            Some(_) => {
                (0..count).for_each(|i| cx.receipt(digest, i as u32, &Err(OpError::NumberReused)))
            }
            None => {
                (0..count).for_each(|i| cx.receipt(digest, i as u32, &Err(OpError::ReplyEvicted)))
            }
        }
    }

    /// Runs the ops of a fresh request; returns their encoded results.
    fn execute_ops(&mut self, cx: &mut Cx, request: &Request, digest: Digest) -> Vec<Bytes> {
        let client = request.body.client;
        let atomic = request.body.atomic;
        let (receipts_before, events_before) = (cx.out.receipts.len(), cx.out.events.len());
        if atomic {
            for_each_table!(self, t => t.begin());
        }
        cx.atomic = atomic;
        let mut results = Vec::with_capacity(request.body.ops.len());
        for (i, bytes) in request.body.ops.iter().enumerate() {
            let op_index = i as u32;
            let outcome = match Op::decode(&bytes.0) {
                Ok(op) => self.execute_op(cx, client, digest, op_index, op),
                Err(_) => Err(OpError::Malformed),
            };
            cx.ops += 1;
            if atomic {
                if let Err(error) = outcome {
                    cx.atomic = false;
                    return self.abort(
                        cx,
                        request,
                        digest,
                        (receipts_before, events_before),
                        op_index,
                        error,
                    );
                }
            }
            cx.receipt(digest, op_index, &outcome);
            results.push(encode_outcome(&outcome));
        }
        if atomic {
            for_each_table!(self, t => t.commit());
        }
        cx.atomic = false;
        results
    }

    /// Undoes an atomic request whose op `failed` failed with `error`.
    fn abort(
        &mut self,
        cx: &mut Cx,
        request: &Request,
        digest: Digest,
        (receipts_before, events_before): (usize, usize),
        failed: u32,
        error: OpError,
    ) -> Vec<Bytes> {
        for_each_table!(self, t => t.rollback());
        cx.out.receipts.truncate(receipts_before);
        cx.out.events.truncate(events_before);
        (0..request.body.ops.len() as u32)
            .map(|i| {
                let outcome = if i == failed {
                    Err(error.clone())
                } else {
                    Err(OpError::Aborted { failed_op: failed })
                };
                cx.receipt(digest, i, &outcome);
                encode_outcome(&outcome)
            })
            .collect()
    }

    fn execute_op(
        &mut self,
        cx: &mut Cx,
        client: ClientId,
        request: Digest,
        op_index: u32,
        op: Op,
    ) -> OpOutcome {
        let origin = Origin {
            client,
            request,
            op_index,
        };
        match op {
            Op::CreateSession { ttl } => self.create_session(cx, client, ttl),
            Op::RenewSession { session, ttl } => self.renew_session(cx, client, session, ttl),
            Op::DestroySession { session } => self.destroy_session(cx, client, session),
            Op::SessionStatus { session } => self.session_status(client, session),
            Op::Acquire {
                session,
                resource,
                mode,
                wait,
            } => self.acquire(cx, origin, session, resource, mode, wait),
            Op::Release { session, resource } => self.release(cx, client, session, resource),
            Op::RenewLock {
                session,
                resource,
                ttl,
            } => self.renew_lock(cx, client, session, resource, ttl),
            Op::Check { resource } => Ok(self.check(&resource)),
            Op::Submit {
                queue,
                priority,
                payload,
                dedup_key,
                durability: _,
            } => self.submit(cx, origin, queue, priority, payload, dedup_key),
            Op::Claim {
                session,
                queue,
                visibility_timeout,
            } => self.claim(cx, client, session, queue, visibility_timeout),
            Op::Ack {
                session,
                message,
                delivery,
            } => self.ack(cx, client, session, message, delivery),
            Op::Nack {
                session,
                message,
                delivery,
            } => self.nack(cx, client, session, message, delivery),
            Op::Depth { queue } => Ok(self.depth(&queue)),
            Op::Peek { queue } => Ok(self.peek(&queue)),
            Op::PeekDeadLetters { queue } => Ok(self.peek_dead(&queue)),
        }
    }

    /// Remembers a request's results for repeats of its number, evicting
    /// the client's oldest and then the globally oldest entries.
    fn cache_reply(
        &mut self,
        cx: &Cx,
        client: ClientId,
        number: u64,
        request: Digest,
        results: Vec<Bytes>,
    ) {
        // Not a fencing token: the eviction order is internal, and tokens
        // are only spent on grants, waits, sessions and messages.
        let order = (cx.seq, cx.requests);
        let size: u64 = results.iter().map(|r| r.0.len() as u64).sum();
        self.bump(|s| s.reply_cache_bytes += size);
        let reply = CachedReply {
            request,
            results,
            order,
        };
        self.replies.insert((client, number), reply);
        self.reply_order.insert(order, (client, number));
        self.clients.update(&client, |c| c.replies += 1);
        let own = self.clients.get(&client).expect("client exists").replies;
        if own > self.config.reply_cache_per_client_max {
            let oldest = self
                .replies
                .range((client, 0)..=(client, u64::MAX))
                .next()
                .map(|(k, _)| *k)
                .expect("client has replies");
            self.evict_reply(oldest);
        }
        while self.replies.len() > self.config.reply_cache_max as usize
            || self.stats().reply_cache_bytes > self.config.reply_cache_bytes_max
        {
            let (_, key) = self.reply_order.first().expect("orders match replies");
            self.evict_reply(*key);
        }
    }

    fn evict_reply(&mut self, key: (ClientId, u64)) {
        let reply = self.replies.remove(&key).expect("reply exists");
        self.reply_order.remove(&reply.order);
        let size: u64 = reply.results.iter().map(|r| r.0.len() as u64).sum();
        self.bump(|s| s.reply_cache_bytes -= size);
        self.clients.update(&key.0, |c| c.replies -= 1);
    }

    /// Processes every deadline due by `cx.now`, earliest first.
    fn run_deadlines(&mut self, cx: &mut Cx) {
        while let Some(((at, deadline), _)) = self.deadlines.first() {
            if *at > cx.now {
                break;
            }
            let key = (*at, deadline.clone());
            self.deadlines.remove(&key);
            let (at, deadline) = key;
            match deadline {
                Deadline::SessionExpiry(session) => self.expire_session(cx, session, at),
                Deadline::LockDelay(resource) => self.end_lock_delay(cx, resource),
                Deadline::WaiterTimeout(resource, ticket) => {
                    self.time_out_waiter(cx, resource, ticket)
                }
                Deadline::Visibility(id) => {
                    self.bump(|s| s.redeliveries += 1);
                    self.unclaim(cx, id);
                }
            }
        }
        while let Some(((at, queue, key), _)) = self.dedup_deadlines.first() {
            if *at > cx.now {
                break;
            }
            let entry = (*at, queue.clone(), key.clone());
            self.dedup_deadlines.remove(&entry);
            self.dedup.remove(&(entry.1, entry.2));
        }
    }

    /// The state as chunks of encoded records, each at most about
    /// `chunk_bytes_max` (a chunk holds at least one record, so one larger
    /// than the bound gets a chunk of its own).
    pub fn snapshot_chunks(&self, chunk_bytes_max: usize) -> Vec<Vec<u8>> {
        let records = self.records();
        let mut chunks = Vec::new();
        let mut current: Vec<Record> = Vec::new();
        let mut size = 0;
        for record in records {
            let len = record.key.0.len() + record.value.0.len() + 16;
            if !current.is_empty() && size + len > chunk_bytes_max {
                chunks.push(primitives::codec::encode(&current));
                current.clear();
                size = 0;
            }
            size += len;
            current.push(record);
        }
        if !current.is_empty() {
            chunks.push(primitives::codec::encode(&current));
        }
        chunks
    }

    /// Every entry of every table, in tag and key order.
    pub(crate) fn records(&self) -> Vec<Record> {
        let mut records = Vec::new();
        for_each_table!(ref self, t => t.dump(&mut records));
        records
    }

    /// Rebuilds a state machine from [`StateMachine::snapshot_chunks`].
    /// Only the encoding is checked here: the caller must compare
    /// [`StateMachine::state_digest`] with the certified digest before
    /// using the result.
    pub fn restore(chunks: &[Vec<u8>]) -> Result<StateMachine, SnapshotError> {
        let mut sm = StateMachine::empty(Config::default());
        for (c, chunk) in chunks.iter().enumerate() {
            let records: Vec<Record> =
                primitives::codec::decode(chunk, primitives::codec::FRAME_BYTES_MAX)
                    .map_err(|_| SnapshotError::Chunk(c))?;
            for (r, record) in records.iter().enumerate() {
                if !sm.load(record) {
                    return Err(SnapshotError::Record {
                        chunk: c,
                        record: r,
                    });
                }
            }
        }
        sm.config = sm
            .config_table
            .get(&())
            .ok_or(SnapshotError::NoConfig)?
            .clone();
        if sm.stats.get(&()).is_none() {
            return Err(SnapshotError::NoConfig);
        }
        sm.flush_digest();
        Ok(sm)
    }

    pub(crate) fn load(&mut self, record: &Record) -> bool {
        match record.tag {
            0 => self.config_table.load(record),
            1 => self.stats.load(record),
            2 => self.clients.load(record),
            3 => self.replies.load(record),
            4 => self.reply_order.load(record),
            5 => self.sessions.load(record),
            6 => self.locks.load(record),
            7 => self.holders.load(record),
            8 => self.waiters.load(record),
            9 => self.session_locks.load(record),
            10 => self.queues.load(record),
            11 => self.messages.load(record),
            12 => self.ready.load(record),
            13 => self.dead.load(record),
            14 => self.dedup.load(record),
            15 => self.dedup_deadlines.load(record),
            16 => self.session_claims.load(record),
            17 => self.deadlines.load(record),
            _ => false,
        }
    }
}

/// A `LimitReached` error for the bound named `name`.
pub(crate) fn limit(name: &str) -> OpError {
    OpError::LimitReached {
        limit: name.to_string(),
    }
}

/// An `OutOfRange` error for the parameter named `what`.
pub(crate) fn out_of_range(what: &str) -> OpError {
    OpError::OutOfRange {
        what: what.to_string(),
    }
}

/// Decodes a receipt's result (re-exported convenience for tests).
#[allow(dead_code)]
pub(crate) fn outcome_of(receipt: &Receipt) -> OpOutcome {
    decode_outcome(&receipt.result.0).expect("receipts carry encoded outcomes")
}
