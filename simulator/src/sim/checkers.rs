//! The qlock checkers, over the committed history (the receipts and
//! events of the first replica to execute each batch; agreement checks
//! that every other replica produced the same state):
//!
//! - lock mutual exclusion: never an exclusive holder beside another
//!   holder (a batch's releases and expiries are applied before its
//!   grants, as qlock puts a release's grants before its own receipt);
//! - fencing-token order: each resource's grants carry increasing tokens;
//! - queue exactly-once ack: a message is acked at most once and never
//!   claimed after its ack;
//! - equal state digests at every checkpoint seq on all replicas;
//! - linearizability of the clients' observed lock histories against
//!   `qlock::history::LockModel`, per resource, up to the first lock lost
//!   to a session expiry on that resource (the model has no expiries).
//!   Queue histories are not checked this way: `QueueModel` has neither
//!   visibility timeouts nor nacks, which this workload uses throughout.

use super::Sim;
use crate::workload::{op_kind, ObservedOp};
use primitives::{Digest, SeqNum};
use qlock::history::{self, LockInput, LockModel, LockOutput, Operation, Verdict};
use qlock::{
    decode_outcome, BatchOutcome, ClientEvent, FencingToken, LockMode, MessageId, Op, OpError,
    OpOutcome, OpResult, SessionId,
};
use std::collections::{BTreeMap, BTreeSet};

/// What the checkers remember.
#[derive(Debug, Default)]
pub(super) struct Checks {
    /// Every qlock request's op, by request digest.
    pub(super) ops: BTreeMap<Digest, Op>,
    /// Final committed outcomes (not `Queued`), by (request, op index).
    pub(super) outcomes: BTreeMap<(Digest, u32), OpOutcome>,
    /// Current holders of each resource.
    holders: BTreeMap<String, BTreeMap<SessionId, LockMode>>,
    /// Each session's resources held.
    held_by: BTreeMap<SessionId, BTreeSet<String>>,
    /// The latest token granted on each resource.
    last_token: BTreeMap<String, FencingToken>,
    /// Messages acked.
    acked: BTreeSet<MessageId>,
    /// The state digest at each checkpoint seq, and who reported it first.
    checkpoint_states: BTreeMap<SeqNum, (usize, Digest)>,
    /// The clients' observed histories.
    pub(super) history: Vec<ObservedOp>,
    /// When each resource first lost a lock to an expiry (virtual time).
    lock_cutoff: BTreeMap<String, u64>,
}

impl Sim {
    /// Replica `i` executed `seq` and reached `state`: at checkpoint seqs
    /// every replica must have the same state digest.
    pub(super) fn check_checkpoint_state(&mut self, i: usize, seq: SeqNum, state: Digest) {
        let interval = self.nodes[i].config.checkpoint_interval;
        if !self.opts.workload.is_qlock() || !seq.0.is_multiple_of(interval) {
            return;
        }
        let (first, agreed) = *self
            .checks
            .checkpoint_states
            .entry(seq)
            .or_insert((i, state));
        if agreed != state {
            self.violation(format!(
                "state digest at checkpoint {seq:?}: replica {first} has {agreed:?}, replica {i} has {state:?}"
            ));
        }
    }

    /// The first execution of batch `seq` anywhere: its receipts and
    /// events become the committed history.
    pub(super) fn on_committed_outcome(&mut self, seq: SeqNum, outcome: &BatchOutcome) {
        // Grants lost again to an expiry in the same batch (the order of
        // events among receipts is not kept): they never stay held.
        let mut lost = BTreeSet::new();
        for event in &outcome.events {
            match event {
                ClientEvent::LockLost {
                    session,
                    resource,
                    token,
                    ..
                } => {
                    lost.insert((*session, resource.clone(), *token));
                    let now = self.now;
                    self.checks
                        .lock_cutoff
                        .entry(resource.clone())
                        .or_insert(now);
                    self.drop_holder(*session, resource);
                }
                ClientEvent::SessionExpired { session, .. } => self.drop_session(*session),
                _ => {}
            }
        }
        let mut grants = Vec::new();
        for receipt in &outcome.receipts {
            let Ok(result) = decode_outcome(&receipt.result.0) else {
                self.violation(format!("undecodable receipt in {seq:?}"));
                continue;
            };
            if matches!(result, Ok(OpResult::Queued { .. })) {
                continue;
            }
            let Some(op) = self.checks.ops.get(&receipt.request).cloned() else {
                continue;
            };
            match (&op, &result) {
                (Op::Release { session, resource }, Ok(OpResult::Done)) => {
                    self.drop_holder(*session, resource);
                }
                (Op::DestroySession { session }, Ok(_)) => self.drop_session(*session),
                (Op::Acquire { .. }, Ok(OpResult::Granted { token })) => {
                    grants.push((op.clone(), *token));
                }
                _ => self.check_queue_op(&op, &result),
            }
            let key = (receipt.request, receipt.op_index);
            self.checks.outcomes.insert(key, result);
        }
        for (op, token) in grants {
            let kept = match &op {
                Op::Acquire {
                    session, resource, ..
                } => !lost.contains(&(*session, resource.clone(), token)),
                _ => true,
            };
            self.check_grant(&op, token, kept);
        }
    }

    fn drop_session(&mut self, session: SessionId) {
        for resource in self.checks.held_by.remove(&session).unwrap_or_default() {
            self.drop_holder(session, &resource);
        }
    }

    fn drop_holder(&mut self, session: SessionId, resource: &str) {
        if let Some(holders) = self.checks.holders.get_mut(resource) {
            holders.remove(&session);
        }
        if let Some(held) = self.checks.held_by.get_mut(&session) {
            held.remove(resource);
        }
    }

    /// A grant: increasing tokens, no conflicting holder; it stays held
    /// unless `kept` is false.
    fn check_grant(&mut self, op: &Op, token: FencingToken, kept: bool) {
        let Op::Acquire {
            session,
            resource,
            mode,
            ..
        } = op
        else {
            return;
        };
        let last = self.checks.last_token.insert(resource.clone(), token);
        if last.is_some_and(|last| last >= token) {
            self.violation(format!(
                "fencing: {resource} granted {token:?} after {last:?}"
            ));
        }
        let holders = self.checks.holders.entry(resource.clone()).or_default();
        let conflict = holders
            .values()
            .any(|m| *m == LockMode::Exclusive || *mode == LockMode::Exclusive);
        let what = format!(
            "mutual exclusion: {resource} granted {mode:?} to {session:?} while held by {holders:?}"
        );
        if conflict {
            self.violation(what);
        }
        if !kept {
            return;
        }
        self.checks
            .holders
            .entry(resource.clone())
            .or_default()
            .insert(*session, *mode);
        self.checks
            .held_by
            .entry(*session)
            .or_default()
            .insert(resource.clone());
    }

    fn check_queue_op(&mut self, op: &Op, result: &OpOutcome) {
        match (op, result) {
            (Op::Ack { message, .. }, Ok(_)) if !self.checks.acked.insert(*message) => {
                self.violation(format!("queue: {message:?} acked twice"));
            }
            (Op::Claim { .. }, Ok(OpResult::Claimed(view)))
                if self.checks.acked.contains(&view.id) =>
            {
                self.violation(format!("queue: {:?} claimed after its ack", view.id));
            }
            _ => {}
        }
    }

    /// Client `c` learned the final outcome of its op (request `digest`):
    /// it updates what the client knows and joins its observed history.
    pub(super) fn record_observed(&mut self, c: usize, digest: Digest, invoke: u64, op: Op) {
        let Some(outcome) = self.checks.outcomes.get(&(digest, 0)).cloned() else {
            return;
        };
        *self.report.op_counts.entry(op_kind(&op)).or_default() += 1;
        self.clients[c].qlock.observe(&op, &outcome);
        self.checks.history.push(ObservedOp {
            client: c,
            invoke,
            complete: self.now,
            op,
            outcome,
        });
    }

    /// End of run: qlock's counters from the replica furthest along.
    pub(super) fn finish_checks(&mut self) {
        let Some(stats) = self
            .nodes
            .iter()
            .filter_map(|n| n.app.machine.as_ref())
            .map(|m| m.stats().clone())
            .max_by_key(|s| s.last_seq)
        else {
            return;
        };
        let r = &mut self.report;
        r.grants_after_wait = stats.grants_after_wait;
        r.wait_timeouts = stats.wait_timeouts;
        r.session_expiries = stats.session_expiries;
        r.redeliveries = stats.redeliveries;
        r.dead_letters = stats.dead_letters;
        r.observed_ops = self.checks.history.len() as u64;
        self.check_lock_histories();
    }

    /// Partitions the observed lock ops by resource and checks each part
    /// with the WGL checker. Ops still outstanding, and waits or
    /// shared try-locks that ended without a grant, count as pending:
    /// they may or may not have taken effect (a refused shared try-lock
    /// can be FIFO fairness, which the model does not know).
    fn check_lock_histories(&mut self) {
        let mut parts: BTreeMap<String, Vec<Operation<LockInput, LockOutput>>> = BTreeMap::new();
        let pending = self
            .clients
            .iter()
            .filter_map(|c| c.op.clone())
            .map(|(op, invoke)| (op, invoke, None));
        let done = self.checks.history.iter().map(|o| {
            (
                o.op.clone(),
                o.invoke,
                Some((o.complete, o.outcome.clone())),
            )
        });
        for (op, invoke, answer) in done.chain(pending).collect::<Vec<_>>() {
            let Some((resource, input, output)) = lock_operation(&op, answer.as_ref()) else {
                continue;
            };
            let cutoff = self.checks.lock_cutoff.get(&resource).copied();
            if cutoff.is_some_and(|cut| invoke >= cut) {
                continue;
            }
            let response = answer
                .map(|(at, _)| at)
                .filter(|at| cutoff.is_none_or(|cut| *at < cut) && output.is_some());
            parts.entry(resource).or_default().push(Operation {
                invoke,
                response,
                input,
                output: output.unwrap_or(LockOutput::Busy),
            });
        }
        for (resource, ops) in parts {
            self.report.lock_histories_checked += 1;
            match history::check(&LockModel, &ops, LINEARIZABILITY_STEPS_MAX) {
                Verdict::Linearizable => {}
                Verdict::Unknown => self.report.lock_histories_unknown += 1,
                Verdict::NotLinearizable => self.violation(format!(
                    "linearizability: the observed history of lock {resource} ({} ops)",
                    ops.len()
                )),
            }
        }
    }
}

/// The search bound of one lock history's linearizability check.
const LINEARIZABILITY_STEPS_MAX: u64 = 200_000;

/// A lock op as `LockModel` sees it: the resource, the input, and the
/// output (`None`: unknown or not modelled, the op counts as pending).
/// `None` overall for ops that are not lock ops or had no effect.
fn lock_operation(
    op: &Op,
    answer: Option<&(u64, OpOutcome)>,
) -> Option<(String, LockInput, Option<LockOutput>)> {
    let outcome = answer.map(|(_, o)| o);
    match op {
        Op::Acquire {
            session,
            resource,
            mode,
            ..
        } => {
            let exclusive = *mode == LockMode::Exclusive;
            let output = match outcome {
                Some(Ok(OpResult::Granted { token })) => Some(LockOutput::Granted(token.as_u64())),
                Some(Err(OpError::AlreadyHeld)) => Some(LockOutput::Busy),
                Some(Err(OpError::WouldBlock)) if exclusive => Some(LockOutput::Busy),
                Some(Err(OpError::NoSuchSession | OpError::NotOwner)) => return None,
                _ => None,
            };
            let client = session.0.as_u64();
            Some((
                resource.clone(),
                LockInput::Acquire { client, exclusive },
                output,
            ))
        }
        Op::Release { session, resource } => {
            let output = match outcome {
                Some(Ok(_)) => Some(LockOutput::Released),
                Some(Err(OpError::NotHolder)) => Some(LockOutput::NotHolder),
                Some(Err(OpError::NoSuchSession | OpError::NotOwner)) => return None,
                _ => None,
            };
            let client = session.0.as_u64();
            Some((resource.clone(), LockInput::Release { client }, output))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use primitives::SeqNum;

    fn acquire(session: u32) -> Op {
        Op::Acquire {
            session: SessionId(FencingToken {
                seq: SeqNum(1),
                index: session,
            }),
            resource: "r".into(),
            mode: LockMode::Exclusive,
            wait: None,
        }
    }

    fn operation(
        op: &Op,
        invoke: u64,
        complete: u64,
        outcome: OpOutcome,
    ) -> Operation<LockInput, LockOutput> {
        let (_, input, output) = lock_operation(op, Some(&(complete, outcome))).expect("lock op");
        Operation {
            invoke,
            response: Some(complete),
            input,
            output: output.expect("modelled"),
        }
    }

    fn granted(seq: u64) -> OpOutcome {
        Ok(OpResult::Granted {
            token: FencingToken {
                seq: SeqNum(seq),
                index: 0,
            },
        })
    }

    #[test]
    fn two_exclusive_grants_without_release_are_rejected() {
        let bad = [
            operation(&acquire(1), 0, 10, granted(2)),
            operation(&acquire(2), 20, 30, granted(3)),
        ];
        assert_eq!(
            history::check(&LockModel, &bad, 10_000),
            Verdict::NotLinearizable
        );
    }

    #[test]
    fn a_busy_answer_while_held_is_accepted() {
        let good = [
            operation(&acquire(1), 0, 10, granted(2)),
            operation(&acquire(2), 20, 30, Err(OpError::WouldBlock)),
        ];
        assert_eq!(
            history::check(&LockModel, &good, 10_000),
            Verdict::Linearizable
        );
    }
}
