//! A linearizability checker for client histories of locks and queues.
//!
//! The search is Wing & Gong's, with Lowe's memoisation ("Testing for
//! linearizability", 2017; the algorithm behind Porcupine and Knossos'
//! WGL checker): walk the history's call/return events in time order;
//! at a call, try to linearize that operation now (the model accepts its
//! output from the current state, and the pair (set of linearized ops,
//! state) was not tried before); at a return of an operation not yet
//! linearized, backtrack. Iterative, with an explicit stack, and bounded:
//! after `steps_max` steps the answer is [`Verdict::Unknown`].
//!
//! The checker is pure and knows nothing of `qlock`: the simulator records
//! what its clients saw (invocation and response times in virtual time) as
//! [`Operation`]s and checks them against [`LockModel`] (one resource) or
//! [`QueueModel`] (one queue, without visibility timeouts).

use std::collections::{BTreeMap, BTreeSet};

/// One client operation as the client observed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// When the client sent it.
    pub invoke: u64,
    /// When the client got the answer; `None` if it never did (the op may
    /// or may not have taken effect).
    pub response: Option<u64>,
    /// What was asked.
    pub input: I,
    /// What was answered (ignored when `response` is `None`).
    pub output: O,
}

/// A sequential specification.
pub trait Model {
    /// The abstract state; ordered so the search can memoise it.
    type State: Clone + Ord;
    /// An operation's input.
    type Input;
    /// An operation's output.
    type Output;
    /// The initial state.
    fn init(&self) -> Self::State;
    /// The state after `input` answered with `output` (`None` output: any
    /// answer), or `None` if the specification forbids that answer.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// The checker's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A linearization exists.
    Linearizable,
    /// None exists.
    NotLinearizable,
    /// The step bound ran out first.
    Unknown,
}

/// A call or return event in the doubly linked list of the search.
#[derive(Clone, Copy, Debug)]
struct Event {
    op: usize,
    is_call: bool,
    /// For a call: the index of its return event.
    partner: usize,
    prev: usize,
    next: usize,
}

/// The event list with O(1) lift/unlift; index 0 is the head sentinel.
struct Events(Vec<Event>);

impl Events {
    fn build<I, O>(history: &[Operation<I, O>]) -> Events {
        let mut order: Vec<(u64, u8, usize, bool)> = Vec::with_capacity(2 * history.len());
        for (i, op) in history.iter().enumerate() {
            order.push((op.invoke, 0, i, true));
            // Pending ops return "at infinity", after everything else.
            order.push((op.response.unwrap_or(u64::MAX), 1, i, false));
        }
        // Calls before returns at equal times: the permissive reading.
        order.sort();
        let n = order.len();
        let mut events = vec![
            Event {
                op: usize::MAX,
                is_call: false,
                partner: 0,
                prev: 0,
                next: 0,
            };
            n + 1
        ];
        let mut return_of = vec![0; history.len()];
        for (k, (_, _, op, is_call)) in order.iter().enumerate() {
            let e = k + 1;
            events[e] = Event {
                op: *op,
                is_call: *is_call,
                partner: 0,
                prev: e - 1,
                next: if e == n { 0 } else { e + 1 },
            };
            if !is_call {
                return_of[*op] = e;
            }
        }
        events[0].next = if n == 0 { 0 } else { 1 };
        for event in events.iter_mut().skip(1) {
            if event.is_call {
                event.partner = return_of[event.op];
            }
        }
        Events(events)
    }

    fn unlink(&mut self, e: usize) {
        let Event { prev, next, .. } = self.0[e];
        self.0[prev].next = next;
        self.0[next].prev = prev;
    }

    fn relink(&mut self, e: usize) {
        let Event { prev, next, .. } = self.0[e];
        self.0[prev].next = e;
        self.0[next].prev = e;
    }

    /// Removes a call and its return (relinked in reverse order).
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.0[call].partner);
    }

    fn unlift(&mut self, call: usize) {
        self.relink(self.0[call].partner);
        self.relink(call);
    }
}

/// Checks `history` against `model`, giving up after `steps_max` steps.
pub fn check<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    steps_max: u64,
) -> Verdict {
    let mut events = Events::build(history);
    let mut linearized = vec![false; history.len()];
    let mut tried: BTreeSet<(Vec<bool>, M::State)> = BTreeSet::new();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    let mut entry = events.0[0].next;
    for _ in 0..steps_max {
        if entry == 0 {
            return Verdict::Linearizable;
        }
        let event = events.0[entry];
        let op = &history[event.op];
        if !event.is_call && op.response.is_none() {
            // Only pending ops are left: they may simply not have happened.
            return Verdict::Linearizable;
        }
        if event.is_call {
            let output = op.response.map(|_| &op.output);
            if let Some(next) = model.step(&state, &op.input, output) {
                linearized[event.op] = true;
                if tried.insert((linearized.clone(), next.clone())) {
                    stack.push((entry, std::mem::replace(&mut state, next)));
                    events.lift(entry);
                    entry = events.0[0].next;
                    continue;
                }
                linearized[event.op] = false;
            }
            entry = event.next;
        } else {
            // A return whose op is not linearized yet: undo the last choice.
            let Some((call, previous)) = stack.pop() else {
                return Verdict::NotLinearizable;
            };
            state = previous;
            linearized[events.0[call].op] = false;
            events.unlift(call);
            entry = events.0[call].next;
        }
    }
    Verdict::Unknown
}

/// Lock operations on one resource, as clients observe them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockInput {
    /// `client` asks for the lock in a mode (true: exclusive).
    Acquire {
        /// Who.
        client: u64,
        /// Exclusive (true) or shared.
        exclusive: bool,
    },
    /// `client` gives it up.
    Release {
        /// Who.
        client: u64,
    },
}

/// What a lock operation answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockOutput {
    /// Granted with this fencing token (as an integer).
    Granted(u64),
    /// Refused: held in a conflicting mode.
    Busy,
    /// Released.
    Released,
    /// Not held by the client.
    NotHolder,
}

/// The sequential lock: one exclusive holder or many shared ones; tokens
/// strictly increase.
#[derive(Clone, Copy, Debug, Default)]
pub struct LockModel;

/// The state of [`LockModel`].
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct LockState {
    exclusive: Option<u64>,
    shared: BTreeSet<u64>,
    last_token: u64,
}

impl Model for LockModel {
    type State = LockState;
    type Input = LockInput;
    type Output = LockOutput;

    fn init(&self) -> LockState {
        LockState::default()
    }

    fn step(
        &self,
        s: &LockState,
        input: &LockInput,
        out: Option<&LockOutput>,
    ) -> Option<LockState> {
        let mut next = s.clone();
        match input {
            LockInput::Acquire { client, exclusive } => {
                let holds = s.exclusive == Some(*client) || s.shared.contains(client);
                let free = s.exclusive.is_none() && (s.shared.is_empty() || !exclusive);
                match out {
                    Some(LockOutput::Granted(token)) if free && !holds && *token > s.last_token => {
                        next.last_token = *token;
                    }
                    None if free && !holds => {}
                    Some(LockOutput::Busy) if !free || holds => return Some(next),
                    None => return Some(next),
                    _ => return None,
                }
                if *exclusive {
                    next.exclusive = Some(*client);
                } else {
                    next.shared.insert(*client);
                }
            }
            LockInput::Release { client } => {
                let holds = s.exclusive == Some(*client) || s.shared.contains(client);
                match out {
                    Some(LockOutput::Released) | None if holds => {
                        if s.exclusive == Some(*client) {
                            next.exclusive = None;
                        }
                        next.shared.remove(client);
                    }
                    Some(LockOutput::NotHolder) if !holds => {}
                    None => {}
                    _ => return None,
                }
            }
        }
        Some(next)
    }
}

/// Queue operations on one queue, as clients observe them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueInput {
    /// Submit message `id` with a priority rank (0 is served first).
    Submit {
        /// The message.
        id: u64,
        /// Its priority rank.
        rank: u8,
    },
    /// Claim the next message.
    Claim,
    /// Acknowledge message `id`.
    Ack {
        /// The message.
        id: u64,
    },
}

/// What a queue operation answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueOutput {
    /// Submitted, or acked.
    Ok,
    /// Claimed this message.
    Claimed(u64),
    /// Nothing to claim.
    Empty,
    /// The ack failed: not claimed, or already acked.
    Failed,
}

/// The sequential priority queue: claims serve the lowest rank first, FIFO
/// within a rank (in linearization order); a message is claimed at most
/// once and acked at most once. (Visibility timeouts are not modelled:
/// check histories in which no claim expires.)
#[derive(Clone, Copy, Debug, Default)]
pub struct QueueModel;

/// The state of [`QueueModel`].
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueueState {
    ready: BTreeMap<(u8, u64), u64>,
    claimed: BTreeSet<u64>,
    submitted: u64,
}

impl Model for QueueModel {
    type State = QueueState;
    type Input = QueueInput;
    type Output = QueueOutput;

    fn init(&self) -> QueueState {
        QueueState::default()
    }

    fn step(
        &self,
        s: &QueueState,
        input: &QueueInput,
        out: Option<&QueueOutput>,
    ) -> Option<QueueState> {
        let mut next = s.clone();
        match (input, out) {
            (QueueInput::Submit { id, rank }, Some(QueueOutput::Ok) | None) => {
                next.ready.insert((*rank, s.submitted), *id);
                next.submitted += 1;
            }
            (QueueInput::Claim, Some(QueueOutput::Empty)) if s.ready.is_empty() => {}
            (QueueInput::Claim, Some(QueueOutput::Claimed(id))) => {
                let (key, first) = s.ready.first_key_value()?;
                if first != id {
                    return None;
                }
                next.ready.remove(key);
                next.claimed.insert(*id);
            }
            (QueueInput::Claim, None) => {
                if let Some((key, id)) = s.ready.first_key_value() {
                    next.ready.remove(key);
                    next.claimed.insert(*id);
                }
            }
            (QueueInput::Ack { id }, Some(QueueOutput::Ok) | None) if s.claimed.contains(id) => {
                next.claimed.remove(id);
            }
            (QueueInput::Ack { id }, Some(QueueOutput::Failed)) if !s.claimed.contains(id) => {}
            (QueueInput::Ack { .. }, None) => {}
            _ => return None,
        }
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op<I, O>(invoke: u64, response: u64, input: I, output: O) -> Operation<I, O> {
        Operation {
            invoke,
            response: Some(response),
            input,
            output,
        }
    }

    fn acq(client: u64) -> LockInput {
        LockInput::Acquire {
            client,
            exclusive: true,
        }
    }

    fn rel(client: u64) -> LockInput {
        LockInput::Release { client }
    }

    const BOUND: u64 = 100_000;

    #[test]
    fn accepts_sequential_and_reordered_lock_histories() {
        let sequential = [
            op(0, 1, acq(1), LockOutput::Granted(10)),
            op(2, 3, acq(2), LockOutput::Busy),
            op(4, 5, rel(1), LockOutput::Released),
            op(6, 7, acq(2), LockOutput::Granted(11)),
        ];
        assert_eq!(check(&LockModel, &sequential, BOUND), Verdict::Linearizable);
        // Client 1's acquire overlaps client 2's whole tenure and got the
        // larger token: it must be linearized after client 2's release.
        let concurrent = [
            op(0, 10, acq(1), LockOutput::Granted(20)),
            op(1, 2, acq(2), LockOutput::Granted(15)),
            op(3, 4, rel(2), LockOutput::Released),
            op(11, 12, rel(1), LockOutput::Released),
        ];
        assert_eq!(check(&LockModel, &concurrent, BOUND), Verdict::Linearizable);
        // A pending acquire may or may not have happened.
        let mut pending = sequential.to_vec();
        pending.push(Operation {
            invoke: 8,
            response: None,
            input: acq(3),
            output: LockOutput::Busy,
        });
        assert_eq!(check(&LockModel, &pending, BOUND), Verdict::Linearizable);
    }

    #[test]
    fn rejects_invalid_lock_histories() {
        let two_holders = [
            op(0, 1, acq(1), LockOutput::Granted(10)),
            op(2, 3, acq(2), LockOutput::Granted(11)),
            op(4, 5, rel(1), LockOutput::Released),
        ];
        let token_went_back = [
            op(0, 1, acq(1), LockOutput::Granted(10)),
            op(2, 3, rel(1), LockOutput::Released),
            op(4, 5, acq(2), LockOutput::Granted(9)),
        ];
        let release_by_stranger = [
            op(0, 1, acq(1), LockOutput::Granted(10)),
            op(2, 3, rel(2), LockOutput::Released),
        ];
        let busy_when_free = [op(0, 1, acq(1), LockOutput::Busy)];
        for history in [
            &two_holders[..],
            &token_went_back,
            &release_by_stranger,
            &busy_when_free,
        ] {
            assert_eq!(check(&LockModel, history, BOUND), Verdict::NotLinearizable);
        }
    }

    fn submit(id: u64, rank: u8) -> QueueInput {
        QueueInput::Submit { id, rank }
    }

    #[test]
    fn accepts_valid_queue_histories() {
        let history = [
            op(0, 5, submit(1, 2), QueueOutput::Ok),
            op(1, 2, submit(2, 2), QueueOutput::Ok),
            // Concurrent submits: either order, so claiming 2 first is fine.
            op(6, 7, QueueInput::Claim, QueueOutput::Claimed(2)),
            op(8, 9, QueueInput::Ack { id: 2 }, QueueOutput::Ok),
            op(10, 11, QueueInput::Claim, QueueOutput::Claimed(1)),
            op(12, 13, QueueInput::Claim, QueueOutput::Empty),
        ];
        assert_eq!(check(&QueueModel, &history, BOUND), Verdict::Linearizable);
    }

    #[test]
    fn rejects_invalid_queue_histories() {
        let lost = [
            op(0, 1, submit(1, 2), QueueOutput::Ok),
            op(2, 3, QueueInput::Claim, QueueOutput::Empty),
        ];
        let double_claim = [
            op(0, 1, submit(1, 2), QueueOutput::Ok),
            op(2, 3, QueueInput::Claim, QueueOutput::Claimed(1)),
            op(4, 5, QueueInput::Claim, QueueOutput::Claimed(1)),
        ];
        let priority_inversion = [
            op(0, 1, submit(1, 3), QueueOutput::Ok),
            op(2, 3, submit(2, 0), QueueOutput::Ok),
            op(4, 5, QueueInput::Claim, QueueOutput::Claimed(1)),
        ];
        let fifo_violation = [
            op(0, 1, submit(1, 2), QueueOutput::Ok),
            op(2, 3, submit(2, 2), QueueOutput::Ok),
            op(4, 5, QueueInput::Claim, QueueOutput::Claimed(2)),
        ];
        let acked_twice = [
            op(0, 1, submit(1, 2), QueueOutput::Ok),
            op(2, 3, QueueInput::Claim, QueueOutput::Claimed(1)),
            op(4, 5, QueueInput::Ack { id: 1 }, QueueOutput::Ok),
            op(6, 7, QueueInput::Ack { id: 1 }, QueueOutput::Ok),
        ];
        for history in [
            &lost[..],
            &double_claim,
            &priority_inversion,
            &fifo_violation,
            &acked_twice,
        ] {
            assert_eq!(check(&QueueModel, history, BOUND), Verdict::NotLinearizable);
        }
    }

    #[test]
    fn the_bound_gives_unknown() {
        let history: Vec<_> = (0..7)
            .map(|i| op(0, 100, submit(i, 2), QueueOutput::Ok))
            .chain(std::iter::once(op(
                101,
                102,
                QueueInput::Claim,
                QueueOutput::Claimed(99),
            )))
            .collect();
        assert_eq!(check(&QueueModel, &history, 50), Verdict::Unknown);
        assert_eq!(
            check(&QueueModel, &history, u64::MAX),
            Verdict::NotLinearizable
        );
    }
}
