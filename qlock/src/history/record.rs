//! From what clients observed (`qlock` ops and outcomes, real times and
//! receipt times) to one history per lock resource and per queue, and
//! their check.
//!
//! Partitioning is sound for the verdict "not linearizable": each part is
//! a projection of the whole history onto one resource or queue plus the
//! session ops of the sessions that touch it (leases are the only state
//! shared across parts), so a violation found in a part is a violation of
//! the whole. (The converse does not hold: a cross-object anomaly can pass
//! every part; per-object checking keeps the search small.)

use super::locks::LockModel;
use super::{check, Answer, Call, Operation, QueueModel, Timed, Verdict, Wait};
use crate::op::{MessageId, Op, OpError, OpOutcome, OpResult};
use primitives::{Bytes, Digest, HlcTimestamp};
use std::collections::{BTreeMap, BTreeSet};

/// A receipt as a client learned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipted {
    /// When the client learned it (real or virtual time, the clock of
    /// [`Observed::invoke`]).
    pub at: u64,
    /// The receipt's effective time (`Receipt.time`).
    pub time: HlcTimestamp,
    /// The decoded result.
    pub outcome: OpOutcome,
}

/// One op as its client observed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// When the client first sent it.
    pub invoke: u64,
    /// The request that carries it (a submit's message id is
    /// `(request, op_index)`).
    pub request: Digest,
    /// Its index in the request.
    pub op_index: u32,
    /// The op.
    pub op: Op,
    /// Its first receipt (for a waiting acquire: `Queued`, or the grant
    /// if it was immediate); `None` if the client never got one.
    pub reply: Option<Receipted>,
    /// For an acquire answered `Queued`: the later receipt that ended the
    /// wait (grant, timeout, abort), if the client got it.
    pub wait_end: Option<Receipted>,
    /// When `reply` is `None`: the effective time the op executed at, if
    /// known from elsewhere (the committed history). Without it an
    /// unanswered op is tried at the deadlines the model knows, which is
    /// exact for what it sees but not for deadlines it starts itself (a
    /// claim's visibility timeout, a lease, a wait).
    pub executed_at: Option<HlcTimestamp>,
}

/// A part of the history: one lock resource or one queue.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Partition {
    /// A lock resource.
    Lock(String),
    /// A queue.
    Queue(String),
}

/// The verdict on one part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionVerdict {
    /// The part.
    pub partition: Partition,
    /// Its ops (session ops included).
    pub ops: usize,
    /// The checker's answer.
    pub verdict: Verdict,
}

/// What the models make of an outcome.
enum Judged {
    Answer(Answer),
    /// The op may have taken effect with an unknown result (a repeat of
    /// an executed request whose reply is gone).
    Unknown,
    /// Refused before any effect (limits, ranges, ownership, atomic
    /// aborts) or not modelled (describe ops): left out.
    Skip,
}

/// Dense integers for message ids and dedup keys, in order of first
/// appearance.
#[derive(Default)]
struct Names {
    messages: BTreeMap<MessageId, u64>,
    keys: BTreeMap<Bytes, u64>,
}

impl Names {
    fn message(&mut self, id: MessageId) -> u64 {
        let next = self.messages.len() as u64;
        *self.messages.entry(id).or_insert(next)
    }

    fn key(&mut self, key: &Bytes) -> u64 {
        let next = self.keys.len() as u64;
        *self.keys.entry(key.clone()).or_insert(next)
    }
}

fn judge(outcome: &OpOutcome, names: &mut Names) -> Judged {
    let answer = match outcome {
        Ok(OpResult::SessionCreated {
            session,
            expires_at,
        }) => Answer::SessionCreated {
            session: session.0.as_u64(),
            expires_at: *expires_at,
        },
        Ok(OpResult::Renewed { expires_at }) => Answer::Renewed {
            expires_at: *expires_at,
        },
        Ok(OpResult::Done) => Answer::Done,
        Ok(OpResult::Granted { token }) => Answer::Granted {
            token: token.as_u64(),
        },
        Ok(OpResult::Queued { position }) => Answer::Queued {
            position: *position,
        },
        Ok(OpResult::Submitted { id, duplicate }) => Answer::Submitted {
            id: names.message(*id),
            duplicate: *duplicate,
        },
        Ok(OpResult::Claimed(view)) => Answer::Claimed {
            id: names.message(view.id),
            delivery: view.delivery,
        },
        Ok(OpResult::Empty) => Answer::Empty,
        Ok(OpResult::Depth(d)) => Answer::Depth {
            ready: d.ready,
            claimed: d.claimed,
            dead: d.dead,
        },
        Ok(OpResult::Peeked(view)) => Answer::Peeked(view.as_ref().map(|v| names.message(v.id))),
        Ok(OpResult::Session(_) | OpResult::Lock(_) | OpResult::DeadLetters(_)) => {
            return Judged::Skip
        }
        Err(OpError::NoSuchSession) => Answer::NoSuchSession,
        Err(OpError::WouldBlock) => Answer::WouldBlock,
        Err(OpError::AlreadyHeld) => Answer::AlreadyHeld,
        Err(OpError::NotHolder) => Answer::NotHolder,
        Err(OpError::WaitTimedOut) => Answer::WaitTimedOut,
        Err(OpError::WaitAborted) => Answer::WaitAborted,
        Err(OpError::NoSuchClaim) => Answer::NoSuchClaim,
        Err(OpError::ReplyEvicted | OpError::RequestTooOld) => return Judged::Unknown,
        Err(
            OpError::Malformed
            | OpError::NumberReused
            | OpError::Aborted { .. }
            | OpError::WaitInAtomic
            | OpError::NotOwner
            | OpError::OutOfRange { .. }
            | OpError::LimitReached { .. },
        ) => return Judged::Skip,
    };
    Judged::Answer(answer)
}

/// One op of a part's history.
type PartOp = Operation<Timed, Answer>;

/// An op of a part, before it knows its partition's sessions.
struct Entry {
    op: Operation<Timed, Answer>,
    /// The session it names, if any.
    session: Option<u64>,
}

fn operation(
    invoke: u64,
    answered: Option<(&Receipted, Answer)>,
    executed_at: Option<HlcTimestamp>,
    call: Call,
) -> Operation<Timed, Answer> {
    match answered {
        Some((r, answer)) => Operation {
            invoke,
            response: Some(r.at),
            input: Timed {
                time: Some(r.time),
                call,
            },
            output: answer,
        },
        None => Operation {
            invoke,
            response: None,
            input: Timed {
                time: executed_at,
                call,
            },
            output: Answer::Done,
        },
    }
}

/// Splits observed ops into one history per lock resource and per queue;
/// every part gets the session ops (create, renew, destroy, and renew-lock
/// of other resources as a renew) of the sessions its ops name.
pub fn partition(observed: &[Observed]) -> BTreeMap<Partition, Vec<Operation<Timed, Answer>>> {
    let mut names = Names::default();
    // Where each message lives: from its submit, or a claim of it.
    let mut queue_of: BTreeMap<u64, String> = BTreeMap::new();
    for o in observed {
        if let Op::Submit { queue, .. } = &o.op {
            let id = names.message(MessageId {
                request: o.request,
                op_index: o.op_index,
            });
            queue_of.insert(id, queue.clone());
        }
        if let (Op::Claim { queue, .. }, Some(Ok(OpResult::Claimed(view)))) =
            (&o.op, o.reply.as_ref().map(|r| &r.outcome))
        {
            let id = names.message(view.id);
            queue_of.entry(id).or_insert_with(|| queue.clone());
        }
    }
    let mut parts: BTreeMap<Partition, Vec<Entry>> = BTreeMap::new();
    // Session ops, each with the part it belongs to as a part op (a
    // renew-lock), which gets it in its own form.
    let mut session_ops: BTreeMap<u64, Vec<(PartOp, Option<Partition>)>> = BTreeMap::new();
    for (index, o) in observed.iter().enumerate() {
        let answered = match o.reply.as_ref().map(|r| (r, judge(&r.outcome, &mut names))) {
            None | Some((_, Judged::Unknown)) => None,
            Some((_, Judged::Skip)) => continue,
            Some((r, Judged::Answer(a))) => Some((r, a)),
        };
        let mut add = |part: Partition, call: Call, session: Option<u64>| {
            let op = operation(o.invoke, answered.clone(), o.executed_at, call);
            parts.entry(part).or_default().push(Entry { op, session });
        };
        match &o.op {
            Op::CreateSession { ttl } => {
                if let Some((_, Answer::SessionCreated { session, .. })) = &answered {
                    let op = operation(
                        o.invoke,
                        answered.clone(),
                        o.executed_at,
                        Call::CreateSession { ttl: *ttl },
                    );
                    session_ops.entry(*session).or_default().push((op, None));
                }
            }
            Op::RenewSession { session, ttl } => {
                let s = session.0.as_u64();
                let call = Call::RenewSession {
                    session: s,
                    ttl: *ttl,
                };
                let op = operation(o.invoke, answered.clone(), o.executed_at, call);
                session_ops.entry(s).or_default().push((op, None));
            }
            Op::DestroySession { session } => {
                let s = session.0.as_u64();
                let op = operation(
                    o.invoke,
                    answered.clone(),
                    o.executed_at,
                    Call::DestroySession { session: s },
                );
                session_ops.entry(s).or_default().push((op, None));
            }
            Op::RenewLock {
                session,
                resource,
                ttl,
            } => {
                let s = session.0.as_u64();
                let part = Partition::Lock(resource.clone());
                add(
                    part.clone(),
                    Call::RenewLock {
                        session: s,
                        ttl: *ttl,
                    },
                    Some(s),
                );
                // Elsewhere it is a renew of the session, or nothing.
                let renew = match &answered {
                    Some((_, Answer::NotHolder)) => None,
                    other => Some(other.clone()),
                };
                if let Some(renewed) = renew {
                    let call = Call::RenewSession {
                        session: s,
                        ttl: *ttl,
                    };
                    let op = operation(o.invoke, renewed, o.executed_at, call);
                    session_ops.entry(s).or_default().push((op, Some(part)));
                }
            }
            Op::Acquire {
                session,
                resource,
                mode,
                wait,
            } => {
                let s = session.0.as_u64();
                let part = Partition::Lock(resource.clone());
                let exclusive = *mode == crate::op::LockMode::Exclusive;
                let wait = wait.map(|timeout| Wait {
                    id: index as u64,
                    timeout,
                });
                let queued = matches!(answered, Some((_, Answer::Queued { .. })));
                add(
                    part.clone(),
                    Call::Acquire {
                        session: s,
                        exclusive,
                        wait,
                    },
                    Some(s),
                );
                if let (true, Some(end)) = (queued, &o.wait_end) {
                    if let Judged::Answer(answer) = judge(&end.outcome, &mut names) {
                        let call = Call::WaitEnd { wait: index as u64 };
                        let op = operation(o.invoke, Some((end, answer)), None, call);
                        parts.entry(part).or_default().push(Entry {
                            op,
                            session: Some(s),
                        });
                    }
                }
            }
            Op::Release { session, resource } => {
                let s = session.0.as_u64();
                add(
                    Partition::Lock(resource.clone()),
                    Call::Release { session: s },
                    Some(s),
                );
            }
            Op::Submit {
                queue,
                priority,
                dedup_key,
                ..
            } => {
                let id = names.message(MessageId {
                    request: o.request,
                    op_index: o.op_index,
                });
                let call = Call::Submit {
                    id,
                    rank: priority.rank(),
                    dedup: dedup_key.as_ref().map(|k| names.key(k)),
                };
                add(Partition::Queue(queue.clone()), call, None);
            }
            Op::Claim {
                session,
                queue,
                visibility_timeout,
            } => {
                let s = session.0.as_u64();
                let call = Call::Claim {
                    session: s,
                    visibility_timeout: *visibility_timeout,
                };
                add(Partition::Queue(queue.clone()), call, Some(s));
            }
            Op::Ack {
                session,
                message,
                delivery,
            }
            | Op::Nack {
                session,
                message,
                delivery,
            } => {
                let id = names.message(*message);
                let Some(queue) = queue_of.get(&id) else {
                    continue; // a message nobody saw: no part to judge it in
                };
                let (s, delivery) = (session.0.as_u64(), *delivery);
                let call = if matches!(o.op, Op::Ack { .. }) {
                    Call::Ack {
                        session: s,
                        id,
                        delivery,
                    }
                } else {
                    Call::Nack {
                        session: s,
                        id,
                        delivery,
                    }
                };
                add(Partition::Queue(queue.clone()), call, Some(s));
            }
            Op::Depth { queue } => add(Partition::Queue(queue.clone()), Call::Depth, None),
            Op::Peek { queue } => add(Partition::Queue(queue.clone()), Call::Peek, None),
            Op::SessionStatus { .. } | Op::Check { .. } | Op::PeekDeadLetters { .. } => {}
        }
    }
    parts
        .into_iter()
        .map(|(part, entries)| {
            let touched: BTreeSet<u64> = entries.iter().filter_map(|e| e.session).collect();
            let mut ops: Vec<_> = entries.into_iter().map(|e| e.op).collect();
            for session in touched {
                for (op, own) in session_ops.get(&session).into_iter().flatten() {
                    if own.as_ref() != Some(&part) {
                        ops.push(op.clone());
                    }
                }
            }
            (part, ops)
        })
        .collect()
}

/// Checks every part of `observed` (see [`partition`]), each with at most
/// `steps_max` search steps.
pub fn check_observed(
    observed: &[Observed],
    locks: &LockModel,
    queues: &QueueModel,
    steps_max: u64,
) -> Vec<PartitionVerdict> {
    partition(observed)
        .into_iter()
        .map(|(partition, ops)| {
            let verdict = match &partition {
                Partition::Lock(_) => check(locks, &ops, steps_max),
                Partition::Queue(_) => check(queues, &ops, steps_max),
            };
            PartitionVerdict {
                partition,
                ops: ops.len(),
                verdict,
            }
        })
        .collect()
}
