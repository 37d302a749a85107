//! The history of a real-cluster run: every client op with its real
//! invoke and complete times and what its verified receipt said, written
//! as JSON lines and checked — by `qlock::history` (linearizability per
//! lock and per queue, with effective time) and by direct checks that say
//! plainly what went wrong (two holders at once, tokens out of order, a
//! message acked twice).

use primitives::{Digest, HlcTimestamp};
use qlock::history::locks::LockModel;
use qlock::history::{check, partition, Observed, Partition, QueueModel, Receipted, Verdict};
use qlock::{Op, OpError, OpOutcome, OpResult, SessionId};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

/// Memory the linearizability search may use per part, roughly: its memo
/// holds one bit vector of the part's length per step.
const CHECK_BYTES_PER_PART_MAX: u64 = 512 << 20;

/// Search steps per part at most (and at least, for tiny parts).
const CHECK_STEPS_MAX: u64 = 5_000_000;
const CHECK_STEPS_MIN: u64 = 100_000;

/// One client op as its client observed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryOp {
    /// Which workload client.
    pub client: usize,
    /// When the request was sent, ns since the run started.
    pub invoke_ns: u64,
    /// When its certified reply (for a waiting acquire: the end of the
    /// wait) arrived; `None` if it never did.
    pub complete_ns: Option<u64>,
    /// The request's digest (`None`: refused before it was sent).
    pub request: Option<Digest>,
    /// The op's index in the request.
    pub op_index: u32,
    /// The op.
    pub op: Op,
    /// The batch of the reply.
    pub seq: Option<u64>,
    /// The reply's receipt.
    pub reply: Option<Receipted>,
    /// For an acquire answered `Queued`: the receipt that ended the wait,
    /// with its batch.
    pub wait_end: Option<(Receipted, u64)>,
}

fn session_str(s: &SessionId) -> String {
    format!("{}.{}", s.0.seq.0, s.0.index)
}

fn message_str(id: &qlock::MessageId) -> String {
    format!("{}:{}", id.request.to_hex(), id.op_index)
}

/// The snake-case name of an op and its arguments.
pub fn op_json(op: &Op) -> (&'static str, Value) {
    match op {
        Op::CreateSession { ttl } => ("create_session", json!({"ttl_us": ttl})),
        Op::RenewSession { session, ttl } => (
            "renew_session",
            json!({"session": session_str(session), "ttl_us": ttl}),
        ),
        Op::DestroySession { session } => {
            ("destroy_session", json!({"session": session_str(session)}))
        }
        Op::SessionStatus { session } => {
            ("session_status", json!({"session": session_str(session)}))
        }
        Op::Acquire {
            session,
            resource,
            mode,
            wait,
        } => (
            "acquire",
            json!({"session": session_str(session), "resource": resource,
                "mode": format!("{mode:?}").to_lowercase(), "wait_us": wait}),
        ),
        Op::Release { session, resource } => (
            "release",
            json!({"session": session_str(session), "resource": resource}),
        ),
        Op::RenewLock {
            session,
            resource,
            ttl,
        } => (
            "renew_lock",
            json!({"session": session_str(session), "resource": resource, "ttl_us": ttl}),
        ),
        Op::Check { resource } => ("check", json!({"resource": resource})),
        Op::Submit {
            queue,
            priority,
            payload,
            dedup_key,
            durability,
        } => (
            "submit",
            json!({"queue": queue, "priority": format!("{priority:?}").to_lowercase(),
                "payload_bytes": payload.0.len(), "dedup": dedup_key.as_ref().map(|k| hex_of(&k.0)),
                "durability": format!("{durability:?}").to_lowercase()}),
        ),
        Op::Claim {
            session,
            queue,
            visibility_timeout,
        } => (
            "claim",
            json!({"session": session_str(session), "queue": queue,
                "visibility_us": visibility_timeout}),
        ),
        Op::Ack {
            session,
            message,
            delivery,
        } => (
            "ack",
            json!({"session": session_str(session), "message": message_str(message),
                "delivery": delivery}),
        ),
        Op::Nack {
            session,
            message,
            delivery,
        } => (
            "nack",
            json!({"session": session_str(session), "message": message_str(message),
                "delivery": delivery}),
        ),
        Op::Depth { queue } => ("depth", json!({"queue": queue})),
        Op::Peek { queue } => ("peek", json!({"queue": queue})),
        Op::PeekDeadLetters { queue } => ("peek_dead_letters", json!({"queue": queue})),
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An outcome as JSON: `ok`, the result's fields, and for acquires
/// `granted` and `token` (the fencing token as one integer).
pub fn outcome_json(op: &Op, outcome: &OpOutcome) -> Value {
    let mut v = match outcome {
        Err(e) => json!({"ok": false, "error": error_name(e), "message": e.to_string()}),
        Ok(r) => match r {
            OpResult::SessionCreated {
                session,
                expires_at,
            } => json!({"ok": true, "session": session_str(session), "expires_at_us": expires_at}),
            OpResult::Renewed { expires_at } => json!({"ok": true, "expires_at_us": expires_at}),
            OpResult::Done => json!({"ok": true}),
            OpResult::Session(info) => {
                json!({"ok": true, "locks": info.locks, "claims": info.claims,
                "expires_at_us": info.expires_at})
            }
            OpResult::Granted { token } => {
                json!({"ok": true, "granted": true, "token": token.as_u64()})
            }
            OpResult::Queued { position } => {
                json!({"ok": true, "granted": false, "queued": true, "position": position})
            }
            OpResult::Lock(info) => json!({"ok": true,
                "holders": info.holders.iter().map(|(s, t)| json!({"session": session_str(s), "token": t.as_u64()})).collect::<Vec<_>>(),
                "waiters": info.waiters.len(), "last_token": info.last_token.map(|t| t.as_u64())}),
            OpResult::Submitted { id, duplicate } => {
                json!({"ok": true, "message": message_str(id), "duplicate": duplicate})
            }
            OpResult::Claimed(view) => json!({"ok": true, "message": message_str(&view.id),
                "delivery": view.delivery}),
            OpResult::Empty => json!({"ok": true, "empty": true}),
            OpResult::Depth(d) => json!({"ok": true, "ready": d.ready, "claimed": d.claimed,
                "dead": d.dead}),
            OpResult::Peeked(view) => {
                json!({"ok": true, "message": view.as_ref().map(|v| message_str(&v.id))})
            }
            OpResult::DeadLetters(views) => json!({"ok": true,
                "messages": views.iter().map(|v| message_str(&v.id)).collect::<Vec<_>>()}),
        },
    };
    // Every acquire says whether it was granted.
    if matches!(op, Op::Acquire { .. }) {
        if let Some(obj) = v.as_object_mut() {
            obj.entry("granted").or_insert(Value::Bool(false));
            obj.entry("token").or_insert(Value::Null);
        }
    }
    v
}

/// The snake-case name of an op error.
pub fn error_name(e: &OpError) -> &'static str {
    match e {
        OpError::Malformed => "malformed",
        OpError::RequestTooOld => "request_too_old",
        OpError::ReplyEvicted => "reply_evicted",
        OpError::NumberReused => "number_reused",
        OpError::Aborted { .. } => "aborted",
        OpError::WaitInAtomic => "wait_in_atomic",
        OpError::NoSuchSession => "no_such_session",
        OpError::NotOwner => "not_owner",
        OpError::OutOfRange { .. } => "out_of_range",
        OpError::LimitReached { .. } => "limit_reached",
        OpError::WouldBlock => "would_block",
        OpError::AlreadyHeld => "already_held",
        OpError::NotHolder => "not_holder",
        OpError::WaitTimedOut => "wait_timed_out",
        OpError::WaitAborted => "wait_aborted",
        OpError::NoSuchClaim => "no_such_claim",
    }
}

impl HistoryOp {
    /// The outcome the client finally learned: the end of a wait if it had
    /// one, else the reply's.
    pub fn final_outcome(&self) -> Option<&OpOutcome> {
        self.wait_end
            .as_ref()
            .map(|(r, _)| &r.outcome)
            .or(self.reply.as_ref().map(|r| &r.outcome))
    }

    /// The fencing token this op was granted, if it was (at once or after
    /// waiting), with the receipt's effective time.
    pub fn grant(&self) -> Option<(u64, HlcTimestamp)> {
        let r = match &self.wait_end {
            Some((r, _)) => r,
            None => self.reply.as_ref()?,
        };
        match &r.outcome {
            Ok(OpResult::Granted { token }) => Some((token.as_u64(), r.time)),
            _ => None,
        }
    }

    /// One line of the `--history` file: `{"client","op","args",
    /// "invoke_ns","complete_ns","result"}` plus the request, op index,
    /// batch and effective time of the receipt (`result` is `null` for an
    /// op that got no answer).
    pub fn to_json(&self) -> Value {
        let (name, args) = op_json(&self.op);
        let result = self.final_outcome().map(|o| {
            let mut v = outcome_json(&self.op, o);
            if let (Some(obj), Some((_, _)), Some(first)) =
                (v.as_object_mut(), &self.wait_end, &self.reply)
            {
                // A grant after waiting: also say it queued first.
                obj.insert("first".into(), outcome_json(&self.op, &first.outcome));
            }
            v
        });
        let time = self
            .wait_end
            .as_ref()
            .map(|(r, _)| r.time)
            .or(self.reply.as_ref().map(|r| r.time));
        json!({
            "client": self.client,
            "op": name,
            "args": args,
            "invoke_ns": self.invoke_ns,
            "complete_ns": self.complete_ns,
            "result": result,
            "request": self.request.map(|d| d.to_hex()),
            "op_index": self.op_index,
            "seq": self.wait_end.as_ref().map(|(_, s)| *s).or(self.seq),
            "effective_time_us": time.map(|t| t.wall),
        })
    }

    /// The checker's form. An op refused before it was sent has no request
    /// and never ran: `None`.
    pub fn observed(&self) -> Option<Observed> {
        Some(Observed {
            invoke: self.invoke_ns,
            request: self.request?,
            op_index: self.op_index,
            op: self.op.clone(),
            reply: self.reply.clone(),
            wait_end: self.wait_end.as_ref().map(|(r, _)| r.clone()),
            executed_at: None,
        })
    }
}

/// Writes one JSON line per op, in invoke order.
pub fn write_jsonl(path: &Path, ops: &[HistoryOp]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for op in ops {
        serde_json::to_writer(&mut out, &op.to_json())?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// The verdict on one part of the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartReport {
    /// `lock NAME` or `queue NAME`.
    pub part: String,
    /// Ops in it (session ops included).
    pub ops: usize,
    /// The linearizability checker's answer.
    pub verdict: Verdict,
}

/// What the checks found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Ops checked.
    pub ops: usize,
    /// One per lock resource and queue.
    pub parts: Vec<PartReport>,
    /// Safety violations, each said plainly.
    pub violations: Vec<String>,
    /// Lock grants seen.
    pub grants: usize,
    /// Acks that succeeded.
    pub acks: usize,
}

impl CheckReport {
    /// No violation and every part linearizable.
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.inconclusive().is_empty()
    }

    /// No violation found (a part may be inconclusive: the search bound
    /// ran out).
    pub fn safe(&self) -> bool {
        self.violations.is_empty()
    }

    /// Parts whose search ran out of steps.
    pub fn inconclusive(&self) -> Vec<&PartReport> {
        self.parts
            .iter()
            .filter(|p| p.verdict == Verdict::Unknown)
            .collect()
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        let linearizable = self
            .parts
            .iter()
            .filter(|p| p.verdict == Verdict::Linearizable)
            .count();
        format!(
            "{} ops in {} parts: {} linearizable, {} inconclusive, {} violations; {} lock grants, {} acks",
            self.ops,
            self.parts.len(),
            linearizable,
            self.inconclusive().len(),
            self.violations.len(),
            self.grants,
            self.acks
        )
    }
}

/// Runs every check on `ops` for a state machine configured with
/// `config` (qlockd runs `qlock::Config::default()`).
pub fn check_history(ops: &[HistoryOp], config: &qlock::Config) -> CheckReport {
    check_history_with(ops, config, None)
}

/// [`check_history`] with a chosen search bound per part (`None`: one
/// that keeps the search's memory bounded).
pub fn check_history_with(
    ops: &[HistoryOp],
    config: &qlock::Config,
    steps_per_part: Option<u64>,
) -> CheckReport {
    let mut report = CheckReport {
        ops: ops.len(),
        ..CheckReport::default()
    };
    let observed: Vec<Observed> = ops.iter().filter_map(HistoryOp::observed).collect();
    let locks = LockModel::from_config(config);
    let queues = QueueModel::from_config(config);
    for (part, history) in partition(&observed) {
        let len = history.len().max(1) as u64;
        let steps = steps_per_part.unwrap_or_else(|| {
            (CHECK_BYTES_PER_PART_MAX / len).clamp(CHECK_STEPS_MIN, CHECK_STEPS_MAX)
        });
        let (name, verdict) = match &part {
            Partition::Lock(r) => (format!("lock {r}"), check(&locks, &history, steps)),
            Partition::Queue(q) => (format!("queue {q}"), check(&queues, &history, steps)),
        };
        if verdict == Verdict::NotLinearizable {
            report.violations.push(format!(
                "{name}: the history of its {} ops is not linearizable",
                history.len()
            ));
        }
        report.parts.push(PartReport {
            part: name,
            ops: history.len(),
            verdict,
        });
    }
    check_locks(ops, &mut report);
    check_acks(ops, &mut report);
    report
}

/// Per resource: exclusive holds never overlap in effective time, tokens
/// grow in effective-time order, and a grant that completed before
/// another was sent has the smaller token.
fn check_locks(ops: &[HistoryOp], report: &mut CheckReport) {
    struct Hold {
        token: u64,
        from: HlcTimestamp,
        /// The effective time of the certified release (or session end).
        until: Option<HlcTimestamp>,
        granted_ns: Option<u64>,
        invoke_ns: u64,
        session: SessionId,
    }
    let mut holds: BTreeMap<&str, Vec<Hold>> = BTreeMap::new();
    for op in ops {
        // Shared holders may overlap: only exclusive grants are judged.
        if let (
            Op::Acquire {
                resource,
                session,
                mode: qlock::LockMode::Exclusive,
                ..
            },
            Some((token, from)),
        ) = (&op.op, op.grant())
        {
            holds.entry(resource).or_default().push(Hold {
                token,
                from,
                until: None,
                granted_ns: op.complete_ns,
                invoke_ns: op.invoke_ns,
                session: *session,
            });
        }
    }
    // The end of each hold: the first certified release of that session
    // on that resource, or destroy of the session, at or after the grant.
    let mut ends: BTreeMap<(&str, SessionId), Vec<HlcTimestamp>> = BTreeMap::new();
    let mut destroys: BTreeMap<SessionId, Vec<HlcTimestamp>> = BTreeMap::new();
    for op in ops {
        let Some(r) = &op.reply else { continue };
        if !matches!(r.outcome, Ok(OpResult::Done)) {
            continue;
        }
        match &op.op {
            Op::Release { session, resource } => {
                ends.entry((resource, *session)).or_default().push(r.time)
            }
            Op::DestroySession { session } => destroys.entry(*session).or_default().push(r.time),
            _ => {}
        }
    }
    for (resource, list) in holds.iter_mut() {
        report.grants += list.len();
        for h in list.iter_mut() {
            let release = ends
                .get(&(*resource, h.session))
                .and_then(|ts| ts.iter().filter(|t| **t >= h.from).min().copied());
            let destroy = destroys
                .get(&h.session)
                .and_then(|ts| ts.iter().filter(|t| **t >= h.from).min().copied());
            h.until = match (release, destroy) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        list.sort_by_key(|h| (h.from, h.token));
        for pair in list.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if b.token <= a.token {
                report.violations.push(format!(
                    "lock {resource}: token {} granted at effective time {} is not above token {} granted earlier at {}",
                    b.token, b.from.wall, a.token, a.from.wall
                ));
            }
            if let Some(until) = a.until {
                if b.from < until {
                    report.violations.push(format!(
                        "lock {resource}: two holders at once: token {} held from {} until {} (µs, effective time), token {} granted at {}",
                        a.token, a.from.wall, until.wall, b.token, b.from.wall
                    ));
                }
            }
        }
        // Real-time order: a grant the client saw before another grant's
        // request was even sent must carry the smaller token.
        let mut by_completion: Vec<&Hold> =
            list.iter().filter(|h| h.granted_ns.is_some()).collect();
        by_completion.sort_by_key(|h| h.granted_ns);
        // The largest token among grants completed so far.
        let mut max_before: Option<u64> = None;
        let mut sorted_by_invoke: Vec<&Hold> = list.iter().collect();
        sorted_by_invoke.sort_by_key(|h| h.invoke_ns);
        let mut i = 0;
        for b in sorted_by_invoke {
            while i < by_completion.len() && by_completion[i].granted_ns < Some(b.invoke_ns) {
                let t = by_completion[i].token;
                max_before = Some(max_before.map_or(t, |m| m.max(t)));
                i += 1;
            }
            if let Some(t) = max_before {
                if b.token <= t {
                    report.violations.push(format!(
                        "lock {resource}: token {} was granted to a request sent after token {t} had been granted (real-time order)",
                        b.token
                    ));
                }
            }
        }
    }
}

/// No message is acked successfully twice.
fn check_acks(ops: &[HistoryOp], report: &mut CheckReport) {
    let mut acked: BTreeMap<qlock::MessageId, usize> = BTreeMap::new();
    for op in ops {
        if let (Op::Ack { message, .. }, Some(Ok(OpResult::Done))) =
            (&op.op, op.reply.as_ref().map(|r| &r.outcome))
        {
            *acked.entry(*message).or_default() += 1;
        }
    }
    report.acks = acked.values().sum();
    for (id, count) in acked {
        if count > 1 {
            report
                .violations
                .push(format!("message {} acked {count} times", message_str(&id)));
        }
    }
}

/// What became of a queue's messages, from the history alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueAccount {
    /// Messages whose sync submit was certified.
    pub submitted: BTreeSet<qlock::MessageId>,
    /// Messages acked successfully.
    pub acked: BTreeSet<qlock::MessageId>,
    /// Messages a dead-letter listing showed.
    pub dead: BTreeSet<qlock::MessageId>,
}

impl QueueAccount {
    /// Certified submits neither acked nor seen dead.
    pub fn unaccounted(&self) -> Vec<qlock::MessageId> {
        self.submitted
            .iter()
            .filter(|m| !self.acked.contains(m) && !self.dead.contains(m))
            .copied()
            .collect()
    }
}

/// Accounts for the messages of `queue` in `ops`.
pub fn queue_account(ops: &[HistoryOp], queue: &str) -> QueueAccount {
    let mut account = QueueAccount::default();
    let mut mine: BTreeSet<qlock::MessageId> = BTreeSet::new();
    for op in ops {
        let outcome = op.reply.as_ref().map(|r| &r.outcome);
        match (&op.op, outcome) {
            (Op::Submit { queue: q, .. }, Some(Ok(OpResult::Submitted { id, .. })))
                if q == queue =>
            {
                account.submitted.insert(*id);
                mine.insert(*id);
            }
            (Op::PeekDeadLetters { queue: q }, Some(Ok(OpResult::DeadLetters(views))))
                if q == queue =>
            {
                account.dead.extend(views.iter().map(|v| v.id));
            }
            _ => {}
        }
    }
    for op in ops {
        if let (Op::Ack { message, .. }, Some(Ok(OpResult::Done))) =
            (&op.op, op.reply.as_ref().map(|r| &r.outcome))
        {
            if mine.contains(message) {
                account.acked.insert(*message);
            }
        }
    }
    account
}

#[cfg(test)]
mod tests {
    use super::*;
    use primitives::SeqNum;
    use qlock::{FencingToken, LockMode};

    fn session(n: u64) -> SessionId {
        SessionId(FencingToken {
            seq: SeqNum(n),
            index: 0,
        })
    }

    fn at(ns: u64, micros: u64, outcome: OpOutcome) -> Receipted {
        Receipted {
            at: ns,
            time: HlcTimestamp::from_micros(micros),
            outcome,
        }
    }

    fn op(client: usize, n: u8, invoke: u64, op: Op, reply: Option<Receipted>) -> HistoryOp {
        HistoryOp {
            client,
            invoke_ns: invoke,
            complete_ns: reply.as_ref().map(|r| r.at),
            request: Some(Digest([n; 32])),
            op_index: 0,
            op,
            seq: reply.as_ref().map(|_| u64::from(n)),
            reply,
            wait_end: None,
        }
    }

    fn token(seq: u64) -> FencingToken {
        FencingToken {
            seq: SeqNum(seq),
            index: 0,
        }
    }

    /// Two clients, each with a session, taking `r` one after the other
    /// (or, with `overlap`, the second while the first still holds it).
    fn two_holders(overlap: bool) -> Vec<HistoryOp> {
        let ttl = 60_000_000;
        let acquire = |s| Op::Acquire {
            session: session(s),
            resource: "r".into(),
            mode: LockMode::Exclusive,
            wait: None,
        };
        let release = |s| Op::Release {
            session: session(s),
            resource: "r".into(),
        };
        let created = |s| {
            Ok(OpResult::SessionCreated {
                session: session(s),
                expires_at: 1_000 + ttl,
            })
        };
        let second_grant_at = if overlap { 25 } else { 45 };
        vec![
            op(
                0,
                1,
                0,
                Op::CreateSession { ttl },
                Some(at(10, 1_000, created(1))),
            ),
            op(
                1,
                2,
                0,
                Op::CreateSession { ttl },
                Some(at(10, 1_000, created(2))),
            ),
            op(
                0,
                3,
                20,
                acquire(1),
                Some(at(30, 2_000, Ok(OpResult::Granted { token: token(3) }))),
            ),
            op(
                0,
                4,
                40,
                release(1),
                Some(at(50, 4_000, Ok(OpResult::Done))),
            ),
            op(
                1,
                5,
                second_grant_at - 5,
                acquire(2),
                Some(at(
                    second_grant_at + 10,
                    if overlap { 3_000 } else { 5_000 },
                    Ok(OpResult::Granted { token: token(5) }),
                )),
            ),
        ]
    }

    #[test]
    fn one_holder_after_another_passes_every_check() {
        let report = check_history(&two_holders(false), &qlock::Config::default());
        assert!(report.passed(), "{report:?}");
        assert_eq!(report.grants, 2);
    }

    #[test]
    fn a_grant_while_another_session_holds_the_lock_is_a_violation() {
        let report = check_history(&two_holders(true), &qlock::Config::default());
        assert!(!report.safe(), "{report:?}");
        assert!(
            report
                .violations
                .iter()
                .any(|v| v.contains("two holders at once")),
            "{:?}",
            report.violations
        );
        assert!(
            report
                .violations
                .iter()
                .any(|v| v.contains("not linearizable")),
            "the model must see it too: {:?}",
            report.violations
        );
    }

    #[test]
    fn a_smaller_token_for_a_request_sent_after_a_grant_is_a_violation() {
        let mut ops = two_holders(false);
        // The second grant (sent after the first completed, after its
        // release) carries a smaller token than the first.
        ops[4].reply = Some(at(55, 5_000, Ok(OpResult::Granted { token: token(2) })));
        let report = check_history(&ops, &qlock::Config::default());
        assert!(
            report
                .violations
                .iter()
                .any(|v| v.contains("real-time order")),
            "{:?}",
            report.violations
        );
        assert!(
            report
                .violations
                .iter()
                .any(|v| v.contains("is not above token")),
            "{:?}",
            report.violations
        );
    }

    #[test]
    fn a_message_acked_twice_is_a_violation() {
        let message = qlock::MessageId {
            request: Digest([9; 32]),
            op_index: 0,
        };
        let ack = Op::Ack {
            session: session(1),
            message,
            delivery: 1,
        };
        let ops = vec![
            op(0, 1, 0, ack.clone(), Some(at(5, 100, Ok(OpResult::Done)))),
            op(0, 2, 10, ack, Some(at(15, 200, Ok(OpResult::Done)))),
        ];
        let mut report = CheckReport::default();
        check_acks(&ops, &mut report);
        assert_eq!(report.violations.len(), 1, "{report:?}");
        assert!(report.violations[0].contains("acked 2 times"));
    }

    #[test]
    fn history_lines_carry_granted_and_token() {
        let ops = two_holders(false);
        let line = ops[2].to_json();
        assert_eq!(line["op"], "acquire");
        assert_eq!(line["result"]["granted"], true);
        assert_eq!(line["result"]["token"], token(3).as_u64());
        assert_eq!(line["invoke_ns"], 20);
        assert_eq!(line["complete_ns"], 30);
        let busy = HistoryOp {
            reply: Some(at(30, 2_000, Err(OpError::WouldBlock))),
            ..ops[2].clone()
        };
        assert_eq!(busy.to_json()["result"]["granted"], false);
        assert_eq!(busy.to_json()["result"]["error"], "would_block");
    }
}
