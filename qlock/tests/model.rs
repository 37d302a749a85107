//! Model-based test: random batches from many clients on few resources,
//! executed by `qlock` and by a reference model written from the spec with
//! plain vectors and scans (it shares no code with the crate, only the
//! public op and result types). After every batch the receipts must agree,
//! and the invariants of issue 6 must hold on what `qlock` answers.

mod common;

use common::{Harness, SEC};
use primitives::{Bytes, Digest, HlcTimestamp, Request};
use proptest::prelude::*;
use qlock::{
    decode_outcome, Config, Durability, FencingToken, LockInfo, LockMode, MessageId, MessageView,
    Op, OpError, OpOutcome, OpResult, Priority, Provenance, QueueDepth, SessionId, SessionInfo,
    StateMachine,
};
use std::collections::{BTreeMap, BTreeSet};

const CLIENTS: usize = 4;
const RESOURCES: [&str; 3] = ["a", "b", "c"];
const QUEUES: [&str; 2] = ["q1", "q2"];

fn config() -> Config {
    Config {
        lock_delay: 2 * SEC,
        session_ttl_min: 5 * SEC,
        dead_letter_after: 2,
        visibility_timeout_min: SEC,
        dedup_window: 20 * SEC,
        reply_cache_per_client_max: 1_000,
        ..Config::default()
    }
}

// ---------------------------------------------------------------- model --

#[derive(Clone, Debug)]
struct MWaiter {
    session: SessionId,
    mode: LockMode,
    deadline: u64,
    request: Digest,
    op_index: u32,
    ticket: FencingToken,
}

#[derive(Clone, Debug, Default)]
struct MLock {
    holders: BTreeMap<SessionId, (LockMode, FencingToken)>,
    waiters: Vec<MWaiter>,
    delayed: Option<u64>,
    last: Option<FencingToken>,
}

#[derive(Clone, Debug)]
struct MMsg {
    id: MessageId,
    queue: String,
    priority: Priority,
    payload: Bytes,
    provenance: Provenance,
    delivery: u32,
    order: FencingToken,
    claim: Option<(SessionId, u64)>,
}

#[derive(Clone, Debug, Default)]
struct MClient {
    seen: BTreeSet<u64>,
    replies: BTreeMap<u64, (Digest, Vec<OpOutcome>)>,
}

#[derive(Clone, Debug)]
struct Model {
    cfg: Config,
    seq: u64,
    now: u64,
    index: u32,
    clients: BTreeMap<primitives::ClientId, MClient>,
    sessions: BTreeMap<SessionId, (primitives::ClientId, u64)>,
    locks: BTreeMap<String, MLock>,
    msgs: Vec<MMsg>,
    dead: Vec<MMsg>,
    dedup: Vec<(String, Bytes, MessageId, u64)>,
    receipts: Vec<(Digest, u32, OpOutcome)>,
    dead_lettered: u64,
}

impl Model {
    fn new(cfg: Config) -> Model {
        Model {
            cfg,
            seq: 0,
            now: 0,
            index: 0,
            clients: BTreeMap::new(),
            sessions: BTreeMap::new(),
            locks: BTreeMap::new(),
            msgs: vec![],
            dead: vec![],
            dedup: vec![],
            receipts: vec![],
            dead_lettered: 0,
        }
    }

    fn token(&mut self) -> FencingToken {
        self.index += 1;
        FencingToken {
            seq: primitives::SeqNum(self.seq),
            index: self.index - 1,
        }
    }

    fn batch(&mut self, seq: u64, now: u64, requests: &[Request]) -> Vec<(Digest, u32, OpOutcome)> {
        self.seq = seq;
        self.now = now;
        self.index = 0;
        self.receipts.clear();
        self.deadlines();
        for r in requests {
            self.request(r);
        }
        std::mem::take(&mut self.receipts)
    }

    /// The earliest due deadline, in the spec's order: time, then kind
    /// (session, lock-delay, waiter, visibility), then id.
    fn next_due(&self) -> Option<(u64, u8, Vec<u8>, Due)> {
        let mut due: Vec<(u64, u8, Vec<u8>, Due)> = vec![];
        for (s, (_, exp)) in &self.sessions {
            due.push((*exp, 0, primitives::codec::encode(s), Due::Session(*s)));
        }
        for (r, l) in &self.locks {
            if let Some(d) = l.delayed {
                due.push((d, 1, r.as_bytes().to_vec(), Due::Delay(r.clone())));
            }
            for w in &l.waiters {
                let key = (r.as_bytes().to_vec(), w.ticket);
                due.push((
                    w.deadline,
                    2,
                    format!("{key:?}").into_bytes(),
                    Due::Waiter(r.clone(), w.ticket, key),
                ));
            }
        }
        for m in &self.msgs {
            if let Some((_, until)) = m.claim {
                due.push((until, 3, vec![], Due::Visibility(m.id)));
            }
        }
        due.into_iter()
            .filter(|d| d.0 <= self.now)
            .min_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| a.3.id_cmp(&b.3)))
    }

    fn deadlines(&mut self) {
        while let Some((at, _, _, due)) = self.next_due() {
            match due {
                Due::Session(s) => self.end_session(s, Some(at)),
                Due::Delay(r) => {
                    self.locks.get_mut(&r).unwrap().delayed = None;
                    self.grant(&r);
                    self.tidy(&r);
                }
                Due::Waiter(r, ticket, _) => {
                    let l = self.locks.get_mut(&r).unwrap();
                    let pos = l.waiters.iter().position(|w| w.ticket == ticket).unwrap();
                    let w = l.waiters.remove(pos);
                    self.receipts
                        .push((w.request, w.op_index, Err(OpError::WaitTimedOut)));
                    self.grant(&r);
                    self.tidy(&r);
                }
                Due::Visibility(id) => self.unclaim(id),
            }
        }
        let now = self.now;
        self.dedup.retain(|d| d.3 > now);
    }

    fn request(&mut self, r: &Request) {
        let digest = r.digest();
        let client = r.body.client;
        let n = r.body.number.0;
        let c = self.clients.entry(client).or_default();
        let highest = c.seen.last().copied().unwrap_or(0);
        let count = r.body.ops.len() as u32;
        if n == 0 || (n <= highest && highest - n >= 128) {
            for i in 0..count {
                self.receipts.push((digest, i, Err(OpError::RequestTooOld)));
            }
            return;
        }
        if c.seen.contains(&n) {
            let out = match c.replies.get(&n) {
                Some((d, outs)) if *d == digest => outs.clone(),
                Some(_) => vec![Err(OpError::NumberReused); count as usize],
                None => vec![Err(OpError::ReplyEvicted); count as usize],
            };
            for (i, o) in out.into_iter().enumerate() {
                self.receipts.push((digest, i as u32, o));
            }
            return;
        }
        c.seen.insert(n);
        let saved = self.clone();
        let mut outs = vec![];
        for (i, bytes) in r.body.ops.iter().enumerate() {
            let outcome = match Op::decode(&bytes.0) {
                Ok(op) => self.op(client, digest, i as u32, op, r.body.atomic),
                Err(_) => Err(OpError::Malformed),
            };
            if r.body.atomic && outcome.is_err() {
                let index = self.index;
                *self = saved;
                self.index = index;
                self.clients.get_mut(&client).unwrap().seen.insert(n);
                outs = (0..count)
                    .map(|j| {
                        if j == i as u32 {
                            outcome.clone()
                        } else {
                            Err(OpError::Aborted {
                                failed_op: i as u32,
                            })
                        }
                    })
                    .collect();
                for (j, o) in outs.iter().enumerate() {
                    self.receipts.push((digest, j as u32, o.clone()));
                }
                break;
            }
            self.receipts.push((digest, i as u32, outcome.clone()));
            outs.push(outcome);
        }
        self.clients
            .get_mut(&client)
            .unwrap()
            .replies
            .insert(n, (digest, outs));
    }

    fn owned(&self, client: primitives::ClientId, s: SessionId) -> Result<(), OpError> {
        match self.sessions.get(&s) {
            None => Err(OpError::NoSuchSession),
            Some((owner, _)) if *owner != client => Err(OpError::NotOwner),
            Some(_) => Ok(()),
        }
    }

    fn ttl_ok(&self, ttl: u64) -> Result<(), OpError> {
        if ttl < self.cfg.session_ttl_min || ttl > self.cfg.session_ttl_max {
            return Err(OpError::OutOfRange { what: "ttl".into() });
        }
        Ok(())
    }

    fn role(&self, s: SessionId, r: &str) -> Option<bool> {
        let l = self.locks.get(r)?;
        if l.holders.contains_key(&s) {
            Some(true)
        } else if l.waiters.iter().any(|w| w.session == s) {
            Some(false)
        } else {
            None
        }
    }

    fn op(
        &mut self,
        client: primitives::ClientId,
        request: Digest,
        op_index: u32,
        op: Op,
        atomic: bool,
    ) -> OpOutcome {
        match op {
            Op::CreateSession { ttl } => {
                self.ttl_ok(ttl)?;
                let id = SessionId(self.token());
                self.sessions.insert(id, (client, self.now + ttl));
                Ok(OpResult::SessionCreated {
                    session: id,
                    expires_at: self.now + ttl,
                })
            }
            Op::RenewSession { session, ttl } => self.renew(client, session, ttl),
            Op::DestroySession { session } => {
                self.owned(client, session)?;
                self.end_session(session, None);
                Ok(OpResult::Done)
            }
            Op::SessionStatus { session } => {
                self.owned(client, session)?;
                let locks = self
                    .locks
                    .keys()
                    .filter(|r| self.role(session, r).is_some())
                    .count();
                let claims = self
                    .msgs
                    .iter()
                    .filter(|m| m.claim.is_some_and(|c| c.0 == session))
                    .count();
                Ok(OpResult::Session(SessionInfo {
                    owner: client,
                    expires_at: self.sessions[&session].1,
                    locks: locks as u32,
                    claims: claims as u32,
                }))
            }
            Op::Acquire {
                session,
                resource,
                mode,
                wait,
            } => {
                self.owned(client, session)?;
                if let Some(w) = wait {
                    if w == 0 || w > self.cfg.wait_max {
                        return Err(OpError::OutOfRange {
                            what: "wait".into(),
                        });
                    }
                    if atomic {
                        return Err(OpError::WaitInAtomic);
                    }
                }
                if self.role(session, &resource).is_some() {
                    return Err(OpError::AlreadyHeld);
                }
                let l = self.locks.get(&resource).cloned().unwrap_or_default();
                let free = l.delayed.is_none() && l.waiters.is_empty() && compatible(&l, mode);
                if free {
                    let token = self.token();
                    let l = self.locks.entry(resource).or_default();
                    l.holders.insert(session, (mode, token));
                    l.last = Some(token);
                    return Ok(OpResult::Granted { token });
                }
                let Some(w) = wait else {
                    return Err(OpError::WouldBlock);
                };
                let ticket = self.token();
                let deadline = self.now + w;
                let l = self.locks.entry(resource).or_default();
                l.waiters.push(MWaiter {
                    session,
                    mode,
                    deadline,
                    request,
                    op_index,
                    ticket,
                });
                Ok(OpResult::Queued {
                    position: l.waiters.len() as u32 - 1,
                })
            }
            Op::Release { session, resource } => {
                self.owned(client, session)?;
                match self.role(session, &resource) {
                    None => return Err(OpError::NotHolder),
                    Some(true) => {
                        self.locks
                            .get_mut(&resource)
                            .unwrap()
                            .holders
                            .remove(&session);
                    }
                    Some(false) => {
                        self.locks
                            .get_mut(&resource)
                            .unwrap()
                            .waiters
                            .retain(|w| w.session != session);
                    }
                }
                self.grant(&resource);
                self.tidy(&resource);
                Ok(OpResult::Done)
            }
            Op::RenewLock {
                session,
                resource,
                ttl,
            } => {
                self.owned(client, session)?;
                if self.role(session, &resource) != Some(true) {
                    return Err(OpError::NotHolder);
                }
                self.renew(client, session, ttl)
            }
            Op::Check { resource } => Ok(OpResult::Lock(self.check(&resource))),
            Op::Submit {
                queue,
                priority,
                payload,
                dedup_key,
                ..
            } => {
                if let Some(k) = &dedup_key {
                    if let Some(d) = self.dedup.iter().find(|d| d.0 == queue && d.1 == *k) {
                        return Ok(OpResult::Submitted {
                            id: d.2,
                            duplicate: true,
                        });
                    }
                }
                let id = MessageId { request, op_index };
                let order = self.token();
                self.msgs.push(MMsg {
                    id,
                    queue: queue.clone(),
                    priority,
                    payload,
                    provenance: Provenance {
                        submitter: client,
                        seq: primitives::SeqNum(self.seq),
                        time: HlcTimestamp::from_micros(self.now),
                    },
                    delivery: 0,
                    order,
                    claim: None,
                });
                if let Some(k) = dedup_key {
                    self.dedup
                        .push((queue, k, id, self.now + self.cfg.dedup_window));
                }
                Ok(OpResult::Submitted {
                    id,
                    duplicate: false,
                })
            }
            Op::Claim {
                session,
                queue,
                visibility_timeout,
            } => {
                self.owned(client, session)?;
                if visibility_timeout < self.cfg.visibility_timeout_min
                    || visibility_timeout > self.cfg.visibility_timeout_max
                {
                    return Err(OpError::OutOfRange {
                        what: "visibility_timeout".into(),
                    });
                }
                let Some(i) = self.first_ready(&queue) else {
                    return Ok(OpResult::Empty);
                };
                let now = self.now;
                let m = &mut self.msgs[i];
                m.delivery += 1;
                m.claim = Some((session, now + visibility_timeout));
                Ok(OpResult::Claimed(mview(m)))
            }
            Op::Ack {
                session,
                message,
                delivery,
            } => {
                let i = self.claimed(client, session, message, delivery)?;
                self.msgs.remove(i);
                Ok(OpResult::Done)
            }
            Op::Nack {
                session,
                message,
                delivery,
            } => {
                self.claimed(client, session, message, delivery)?;
                self.unclaim(message);
                Ok(OpResult::Done)
            }
            Op::Depth { queue } => Ok(OpResult::Depth(self.depth(&queue))),
            Op::Peek { queue } => Ok(OpResult::Peeked(
                self.first_ready(&queue).map(|i| mview(&self.msgs[i])),
            )),
            Op::PeekDeadLetters { queue } => {
                let mut d: Vec<&MMsg> = self.dead.iter().filter(|m| m.queue == queue).collect();
                d.sort_by_key(|m| m.order);
                Ok(OpResult::DeadLetters(d.into_iter().map(mview).collect()))
            }
        }
    }

    fn renew(&mut self, client: primitives::ClientId, s: SessionId, ttl: u64) -> OpOutcome {
        self.owned(client, s)?;
        self.ttl_ok(ttl)?;
        let expires_at = self.now + ttl;
        self.sessions.get_mut(&s).unwrap().1 = expires_at;
        Ok(OpResult::Renewed { expires_at })
    }

    fn claimed(
        &self,
        client: primitives::ClientId,
        s: SessionId,
        id: MessageId,
        delivery: u32,
    ) -> Result<usize, OpError> {
        self.owned(client, s)?;
        self.msgs
            .iter()
            .position(|m| m.id == id && m.claim.is_some_and(|c| c.0 == s) && m.delivery == delivery)
            .ok_or(OpError::NoSuchClaim)
    }

    fn first_ready(&self, queue: &str) -> Option<usize> {
        (0..self.msgs.len())
            .filter(|i| self.msgs[*i].queue == queue && self.msgs[*i].claim.is_none())
            .min_by_key(|i| (self.msgs[*i].priority, self.msgs[*i].order))
    }

    fn depth(&self, queue: &str) -> QueueDepth {
        let mut d = QueueDepth::default();
        for m in self.msgs.iter().filter(|m| m.queue == queue) {
            match m.claim {
                Some(_) => d.claimed += 1,
                None => d.ready[m.priority as usize] += 1,
            }
        }
        d.dead = self.dead.iter().filter(|m| m.queue == queue).count() as u32;
        d
    }

    fn unclaim(&mut self, id: MessageId) {
        let i = self.msgs.iter().position(|m| m.id == id).unwrap();
        self.msgs[i].claim = None;
        if self.msgs[i].delivery >= self.cfg.dead_letter_after {
            let m = self.msgs.remove(i);
            self.dead.push(m);
            self.dead_lettered += 1;
        }
    }

    fn end_session(&mut self, s: SessionId, expired: Option<u64>) {
        let resources: Vec<String> = self
            .locks
            .keys()
            .filter(|r| self.role(s, r).is_some())
            .cloned()
            .collect();
        for r in resources {
            let l = self.locks.get_mut(&r).unwrap();
            if l.holders.remove(&s).is_some() {
                if let (Some(at), true) = (expired, self.cfg.lock_delay > 0) {
                    let until = at + self.cfg.lock_delay;
                    l.delayed = Some(l.delayed.map_or(until, |d| d.max(until)));
                }
            } else {
                let pos = l.waiters.iter().position(|w| w.session == s).unwrap();
                let w = l.waiters.remove(pos);
                self.receipts
                    .push((w.request, w.op_index, Err(OpError::WaitAborted)));
            }
            self.grant(&r);
            self.tidy(&r);
        }
        let mut claims: Vec<MessageId> = self
            .msgs
            .iter()
            .filter(|m| m.claim.is_some_and(|c| c.0 == s))
            .map(|m| m.id)
            .collect();
        claims.sort();
        for id in claims {
            self.unclaim(id);
        }
        self.sessions.remove(&s);
    }

    fn grant(&mut self, r: &str) {
        loop {
            let Some(l) = self.locks.get(r) else { return };
            if l.delayed.is_some() || l.waiters.is_empty() || !compatible(l, l.waiters[0].mode) {
                return;
            }
            let token = self.token();
            let l = self.locks.get_mut(r).unwrap();
            let w = l.waiters.remove(0);
            l.holders.insert(w.session, (w.mode, token));
            l.last = Some(token);
            self.receipts
                .push((w.request, w.op_index, Ok(OpResult::Granted { token })));
        }
    }

    fn tidy(&mut self, r: &str) {
        if let Some(l) = self.locks.get(r) {
            if l.holders.is_empty() && l.waiters.is_empty() && l.delayed.is_none() {
                self.locks.remove(r);
            }
        }
    }

    fn check(&self, r: &str) -> LockInfo {
        let Some(l) = self.locks.get(r) else {
            return LockInfo {
                mode: None,
                holders: vec![],
                waiters: vec![],
                last_token: None,
                delayed_until: None,
            };
        };
        LockInfo {
            mode: l.holders.values().next().map(|h| h.0),
            holders: l.holders.iter().map(|(s, h)| (*s, h.1)).collect(),
            waiters: l.waiters.iter().map(|w| (w.session, w.mode)).collect(),
            last_token: l.last,
            delayed_until: l.delayed,
        }
    }
}

#[derive(Debug)]
enum Due {
    Session(SessionId),
    Delay(String),
    Waiter(String, FencingToken, (Vec<u8>, FencingToken)),
    Visibility(MessageId),
}

impl Due {
    fn id_cmp(&self, other: &Due) -> std::cmp::Ordering {
        match (self, other) {
            (Due::Session(a), Due::Session(b)) => a.cmp(b),
            (Due::Delay(a), Due::Delay(b)) => a.cmp(b),
            (Due::Waiter(_, _, a), Due::Waiter(_, _, b)) => a.cmp(b),
            (Due::Visibility(a), Due::Visibility(b)) => a.cmp(b),
            _ => unreachable!("kinds compared first"),
        }
    }
}

fn compatible(l: &MLock, mode: LockMode) -> bool {
    l.holders.is_empty()
        || (mode == LockMode::Shared && l.holders.values().all(|h| h.0 == LockMode::Shared))
}

fn mview(m: &MMsg) -> MessageView {
    MessageView {
        id: m.id,
        priority: m.priority,
        payload: m.payload.clone(),
        delivery: m.delivery,
        provenance: m.provenance.clone(),
    }
}

// ------------------------------------------------------------ generator --

#[derive(Clone, Debug)]
enum AOp {
    Create(u64),
    Renew(usize, u64),
    Destroy(usize),
    Status(usize),
    Acquire(usize, usize, bool, Option<u64>),
    Release(usize, usize),
    RenewLock(usize, usize),
    Check(usize),
    Submit(usize, u8, u8, Option<u8>),
    Claim(usize, usize, u64),
    Ack(usize, bool),
    Nack(usize, bool),
    Depth(usize),
    Peek(usize),
    PeekDead(usize),
    Garbage,
}

#[derive(Clone, Debug)]
enum Step {
    Batch {
        advance: u64,
        requests: Vec<(usize, bool, Vec<AOp>)>,
    },
    Replay {
        advance: u64,
        back: usize,
    },
}

fn aop() -> impl Strategy<Value = AOp> {
    let ttl =
        prop_oneof![2 => Just(6 * SEC), 3 => Just(15 * SEC), 3 => Just(40 * SEC), 1 => Just(SEC)];
    let s = 0usize..12;
    let r = 0usize..RESOURCES.len();
    let q = 0usize..QUEUES.len();
    prop_oneof![
        6 => ttl.clone().prop_map(AOp::Create),
        2 => (s.clone(), ttl.clone()).prop_map(|(s, t)| AOp::Renew(s, t)),
        1 => s.clone().prop_map(AOp::Destroy),
        1 => s.clone().prop_map(AOp::Status),
        10 => (s.clone(), r.clone(), any::<bool>(), prop::option::of(1u64..12)).prop_map(|(s, r, e, w)| AOp::Acquire(s, r, e, w.map(|w| w * SEC))),
        6 => (s.clone(), r.clone()).prop_map(|(s, r)| AOp::Release(s, r)),
        1 => (s.clone(), r.clone()).prop_map(|(s, r)| AOp::RenewLock(s, r)),
        1 => r.clone().prop_map(AOp::Check),
        4 => (q.clone(), 0u8..4, any::<u8>(), prop::option::of(0u8..3)).prop_map(|(q, p, b, d)| AOp::Submit(q, p, b, d)),
        4 => (s.clone(), q.clone(), prop_oneof![Just(SEC), Just(3 * SEC)]).prop_map(|(s, q, v)| AOp::Claim(s, q, v)),
        3 => (0usize..4, prop::bool::weighted(0.85)).prop_map(|(k, own)| AOp::Ack(k, own)),
        1 => (0usize..4, prop::bool::weighted(0.85)).prop_map(|(k, own)| AOp::Nack(k, own)),
        1 => q.clone().prop_map(AOp::Depth),
        1 => q.clone().prop_map(AOp::Peek),
        1 => q.prop_map(AOp::PeekDead),
        1 => Just(AOp::Garbage),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let advance = prop_oneof![4 => 0u64..SEC, 2 => 0u64..3 * SEC, 1 => 0u64..15 * SEC];
    let request = (
        0usize..CLIENTS,
        prop::bool::weighted(0.1),
        prop::collection::vec(aop(), 1..3),
    );
    prop_oneof![
        12 => (advance.clone(), prop::collection::vec(request, 0..4)).prop_map(|(advance, requests)| Step::Batch { advance, requests }),
        1 => (advance, 0usize..6).prop_map(|(advance, back)| Step::Replay { advance, back }),
    ]
}

// --------------------------------------------------------------- driver --

/// What the run has observed, to resolve abstract ops and check invariants.
#[derive(Default)]
struct Observed {
    sessions: Vec<(SessionId, usize)>,
    owners: BTreeMap<Digest, usize>,
    claims: Vec<(SessionId, MessageView)>,
    sent: Vec<Request>,
    tokens: BTreeMap<String, FencingToken>,
    all_tokens: BTreeSet<FencingToken>,
    acked: BTreeSet<MessageId>,
    deliveries: BTreeMap<MessageId, u32>,
    submitted: u64,
    acks: u64,
}

fn concrete(a: &AOp, obs: &Observed, client: usize, model: &Model) -> Op {
    // Mostly one of the client's three newest sessions; sometimes anyone's.
    let own: Vec<SessionId> = obs
        .sessions
        .iter()
        .rev()
        .filter(|(s, c)| *c == client && model.sessions.contains_key(s))
        .map(|(s, _)| *s)
        .take(3)
        .collect();
    let sess = |i: usize| {
        let pool: Vec<SessionId> = if i < 10 {
            own.clone()
        } else {
            obs.sessions.iter().map(|(s, _)| *s).collect()
        };
        pool.get(i % pool.len().max(1)).copied().unwrap_or_default()
    };
    let res = |i: usize| RESOURCES[i].to_string();
    let queue = |i: usize| QUEUES[i].to_string();
    let claim = |k: usize, own: bool| -> (SessionId, MessageId, u32) {
        match obs.claims.iter().rev().nth(k % obs.claims.len().max(1)) {
            Some((s, v)) => (if own { *s } else { sess(k) }, v.id, v.delivery),
            None => (sess(k), MessageId::default(), 1),
        }
    };
    let needs_own_session = match a {
        AOp::Renew(s, _)
        | AOp::Destroy(s)
        | AOp::Status(s)
        | AOp::Acquire(s, ..)
        | AOp::Release(s, _)
        | AOp::RenewLock(s, _)
        | AOp::Claim(s, ..) => *s < 10,
        _ => false,
    };
    if needs_own_session && own.is_empty() {
        // A client without a live session opens one first.
        return Op::CreateSession { ttl: 40 * SEC };
    }
    match a.clone() {
        AOp::Create(ttl) => Op::CreateSession { ttl },
        AOp::Renew(s, ttl) => Op::RenewSession {
            session: sess(s),
            ttl,
        },
        AOp::Destroy(s) => Op::DestroySession { session: sess(s) },
        AOp::Status(s) => Op::SessionStatus { session: sess(s) },
        AOp::Acquire(s, r, excl, wait) => Op::Acquire {
            session: sess(s),
            resource: res(r),
            mode: if excl {
                LockMode::Exclusive
            } else {
                LockMode::Shared
            },
            wait,
        },
        AOp::Release(s, r) => Op::Release {
            session: sess(s),
            resource: res(r),
        },
        AOp::RenewLock(s, r) => Op::RenewLock {
            session: sess(s),
            resource: res(r),
            ttl: 8 * SEC,
        },
        AOp::Check(r) => Op::Check { resource: res(r) },
        AOp::Submit(q, p, b, d) => Op::Submit {
            queue: queue(q),
            priority: Priority::ALL[p as usize],
            payload: Bytes(vec![b]),
            dedup_key: d.map(|d| Bytes(vec![d])),
            durability: Durability::Sync,
        },
        AOp::Claim(s, q, v) => Op::Claim {
            session: sess(s),
            queue: queue(q),
            visibility_timeout: v,
        },
        AOp::Ack(k, own) => {
            let (session, message, delivery) = claim(k, own);
            Op::Ack {
                session,
                message,
                delivery,
            }
        }
        AOp::Nack(k, own) => {
            let (session, message, delivery) = claim(k, own);
            Op::Nack {
                session,
                message,
                delivery,
            }
        }
        AOp::Depth(q) => Op::Depth { queue: queue(q) },
        AOp::Peek(q) => Op::Peek { queue: queue(q) },
        AOp::PeekDead(q) => Op::PeekDeadLetters { queue: queue(q) },
        AOp::Garbage => Op::Depth {
            queue: "garbage".into(),
        },
    }
}

/// "Ok Granted", "Err NotHolder", ...: an outcome's variant names.
fn variant(o: &OpOutcome) -> String {
    let s = format!("{o:?}");
    let words: Vec<&str> = s
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(2)
        .collect();
    words.join(" ")
}

fn sorted(mut v: Vec<(Digest, u32, OpOutcome)>) -> Vec<(Digest, u32, OpOutcome)> {
    v.sort_by(|a, b| (a.0, a.1, format!("{:?}", a.2)).cmp(&(b.0, b.1, format!("{:?}", b.2))));
    v
}

/// Records what the receipts show and checks the history invariants.
fn observe(
    obs: &mut Observed,
    receipts: &[(Digest, u32, OpOutcome)],
    requests: &[Request],
    seq: u64,
    replayed: &BTreeSet<Digest>,
) {
    let ops: BTreeMap<(Digest, u32), Op> =
        requests
            .iter()
            .chain(obs.sent.iter())
            .flat_map(|r| {
                r.body.ops.iter().enumerate().filter_map(move |(i, b)| {
                    Some(((r.digest(), i as u32), Op::decode(&b.0).ok()?))
                })
            })
            .collect();
    for (d, i, outcome) in receipts {
        let op = ops.get(&(*d, *i));
        let fresh_grant = matches!(outcome, Ok(OpResult::Granted { token }) if token.seq.0 == seq);
        if replayed.contains(d) && !fresh_grant {
            // A cached reply: seen before, nothing new to record.
            continue;
        }
        match (outcome, op) {
            (Ok(OpResult::SessionCreated { session, .. }), _) => {
                obs.sessions.push((*session, obs.owners[d]))
            }
            (Ok(OpResult::Granted { token }), Some(Op::Acquire { resource, .. })) => {
                if let Some(prev) = obs.tokens.get(resource) {
                    assert!(token > prev, "token for {resource} did not increase");
                }
                obs.tokens.insert(resource.clone(), *token);
                assert!(obs.all_tokens.insert(*token), "token issued twice");
            }
            (Ok(OpResult::Claimed(v)), Some(Op::Claim { session, .. })) => {
                assert!(!obs.acked.contains(&v.id), "an acked message came back");
                let prev = obs.deliveries.insert(v.id, v.delivery).unwrap_or(0);
                assert_eq!(v.delivery, prev + 1, "two claims share a delivery");
                obs.claims.push((*session, v.clone()));
            }
            (Ok(OpResult::Peeked(Some(v))), _) => assert!(!obs.acked.contains(&v.id)),
            (
                Ok(OpResult::Submitted {
                    duplicate: false, ..
                }),
                _,
            ) => obs.submitted += 1,
            (Ok(OpResult::Done), Some(Op::Ack { message, .. })) => {
                assert!(obs.acked.insert(*message), "acked twice");
                obs.acks += 1;
            }
            _ => {}
        }
    }
}

/// Every grant or end of a wait is told twice, as a receipt and an event.
fn check_events(out: &qlock::BatchOutcome, got: &[(Digest, u32, OpOutcome)]) {
    let mut told = 0;
    for event in &out.events {
        let expected = match event {
            qlock::ClientEvent::Granted {
                request,
                op_index,
                token,
                ..
            } => (*request, *op_index, Ok(OpResult::Granted { token: *token })),
            qlock::ClientEvent::WaitEnded {
                request,
                op_index,
                error,
                ..
            } => (*request, *op_index, Err(error.clone())),
            _ => continue,
        };
        told += 1;
        assert!(got.contains(&expected), "event without receipt: {event:?}");
    }
    let waits_ended = got
        .iter()
        .filter(|(_, _, o)| matches!(o, Err(OpError::WaitTimedOut | OpError::WaitAborted)))
        .count();
    assert!(told >= waits_ended, "a wait ended without an event");
}

/// Looks at the state through a throwaway clone: lock exclusion and the
/// depth equation.
fn check_state(h: &Harness, model: &Model, obs: &Observed) {
    let mut probe = Harness {
        sm: h.sm.clone(),
        seq: h.seq,
        now: h.now,
        keys: h.keys.clone(),
        numbers: h.numbers.clone(),
    };
    let mut ops: Vec<Op> = RESOURCES
        .iter()
        .map(|r| Op::Check {
            resource: r.to_string(),
        })
        .collect();
    ops.extend(QUEUES.iter().map(|q| Op::Depth {
        queue: q.to_string(),
    }));
    let (outcomes, _) = probe.run_ops(0, &ops, false);
    let mut held = 0u64;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome.unwrap() {
            OpResult::Lock(info) => {
                if info.mode == Some(LockMode::Exclusive) {
                    assert_eq!(info.holders.len(), 1, "two exclusive holders");
                }
                assert_eq!(info, model.check(RESOURCES[i]));
            }
            OpResult::Depth(d) => {
                assert_eq!(d, model.depth(QUEUES[i - RESOURCES.len()]));
                held += u64::from(d.ready.iter().sum::<u32>() + d.claimed);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        held,
        obs.submitted - obs.acks - model.dead_lettered,
        "depth = submitted - acked - dead"
    );
}

fn run_case(steps: &[Step]) {
    let mut h = Harness::new(config(), CLIENTS);
    let mut model = Model::new(config());
    let mut obs = Observed::default();
    for step in steps {
        let (advance, requests) = match step {
            Step::Batch { advance, requests } => {
                let reqs: Vec<Request> = requests
                    .iter()
                    .map(|(c, atomic, aops)| {
                        let ops: Vec<Op> =
                            aops.iter().map(|a| concrete(a, &obs, *c, &model)).collect();
                        let mut r = h.request(*c, &ops, *atomic);
                        obs.owners.insert(r.digest(), *c);
                        if aops.iter().any(|a| matches!(a, AOp::Garbage)) {
                            r.body.ops.push(Bytes(vec![0xee; 3]));
                            r = r.body.clone().sign(&h.keys[*c]);
                            obs.owners.insert(r.digest(), *c);
                        }
                        r
                    })
                    .collect();
                (*advance, reqs)
            }
            Step::Replay { advance, back } => {
                let r = obs.sent.iter().rev().nth(*back).cloned();
                (*advance, r.into_iter().collect())
            }
        };
        h.advance(advance);
        let out = h.batch(&requests);
        let got: Vec<_> = out
            .receipts
            .iter()
            .map(|r| (r.request, r.op_index, decode_outcome(&r.result.0).unwrap()))
            .collect();
        let want = model.batch(h.seq, h.now, &requests);
        check_events(&out, &got);
        assert_eq!(
            sorted(got.clone()),
            sorted(want),
            "receipts differ at seq {}",
            h.seq
        );
        let replayed: BTreeSet<Digest> = match step {
            Step::Replay { .. } => requests.iter().map(|r| r.digest()).collect(),
            Step::Batch { .. } => BTreeSet::new(),
        };
        observe(&mut obs, &got, &requests, h.seq, &replayed);
        if std::env::var("QLOCK_MODEL_STATS").is_ok() {
            // Coverage: `... -- --nocapture | grep OUTCOME | sort | uniq -c`.
            for (_, _, o) in &got {
                eprintln!("OUTCOME {}", variant(o));
            }
        }
        obs.sent.extend(requests);
        check_state(&h, &model, &obs);
        let next = h.sm.next_deadline();
        if let Some(t) = next {
            assert!(t.wall > h.now, "a due deadline was left unprocessed");
        }
    }
    if std::env::var("QLOCK_MODEL_STATS").is_ok() {
        eprintln!(
            "{:?} sizes={:?} sessions={} tokens={}",
            h.sm.stats(),
            h.sm.sizes(),
            obs.sessions.len(),
            obs.all_tokens.len()
        );
    }
    round_trip(&mut h);
}

/// Snapshot and restore at small chunk sizes: equal digests, and the
/// restored machine behaves identically afterwards.
fn round_trip(h: &mut Harness) {
    let digest = h.sm.state_digest();
    for chunk in [64, 4096] {
        let chunks = h.sm.snapshot_chunks(chunk);
        let mut restored = StateMachine::restore(&chunks).expect("restores");
        assert_eq!(restored.state_digest(), digest);
        assert_eq!(restored.snapshot_chunks(chunk), chunks);
    }
    let restored = StateMachine::restore(&h.sm.snapshot_chunks(1024)).unwrap();
    let mut outcomes = vec![];
    for sm in [h.sm.clone(), restored] {
        let mut twin = Harness {
            sm,
            seq: h.seq,
            now: h.now,
            keys: h.keys.clone(),
            numbers: h.numbers.clone(),
        };
        twin.advance(30 * SEC);
        let (outcome, out) = twin.run(0, Op::CreateSession { ttl: 5 * SEC });
        outcomes.push((outcome, out, twin.sm.state_digest()));
    }
    assert_eq!(outcomes[0], outcomes[1]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn qlock_agrees_with_the_model(steps in prop::collection::vec(step(), 1..60)) {
        run_case(&steps);
    }
}
