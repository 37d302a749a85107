//! A linearizability checker for client histories of sessions, locks and
//! queues, with effective time.
//!
//! The search is Wing & Gong's, with Lowe's memoisation ("Testing for
//! linearizability", 2017; the algorithm behind Porcupine and Knossos'
//! WGL checker): walk the history's call/return events in time order;
//! at a call, try to linearize that operation now (the model accepts its
//! output from the current state, and the pair (set of linearized ops,
//! state) was not tried before); at a return of an operation not yet
//! linearized, backtrack. A model may offer several successor states for
//! one op (an op whose effective time is unknown); the search tries each.
//! Iterative, with an explicit stack, and bounded: after `steps_max` steps
//! the answer is [`Verdict::Unknown`].
//!
//! Time. Every certified receipt carries the effective time of its batch,
//! and the state machine judges leases, waits, lock-delays and visibility
//! timeouts on effective time only, before the batch's ops. So an op's
//! input is [`Timed`]: the effective time the client learned from its
//! receipt (`None` when it never got one), and the models first run every
//! deadline due by that time, then the op. Real time orders the search
//! (invoke/response); effective time must also be non-decreasing along a
//! linearization (the models refuse an op whose time is below the state's
//! clock). Both must hold: that is what makes a lock held past its lease,
//! or a claim acked after its visibility timeout, a violation.
//!
//! The models ([`locks::LockModel`]: one resource and the sessions that touch
//! it; [`queues::QueueModel`]: one queue and its claimants' sessions) are written
//! from the specification (issue 6) and share no code with the state
//! machine. [`record`] maps what clients observed (`qlock` ops and
//! outcomes) to per-resource and per-queue histories and checks them all.

use primitives::HlcTimestamp;
use std::collections::BTreeSet;

mod legacy;
pub mod locks;
pub mod queues;
pub mod record;
mod sessions;

// The untimed lock model under its old names, until the simulator uses
// `check_observed`; then this line goes and the timed models are
// re-exported here instead (`locks::LockModel`, `queues::QueueModel`).
pub use legacy::{LockInput, LockModel, LockOutput};
pub use locks::LockState;
pub use queues::{QueueModel, QueueState};
pub use record::{check_observed, partition, Observed, Partition, PartitionVerdict, Receipted};

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
    /// Every state `input` can lead to when answered with `output` (`None`
    /// output: any answer), in a fixed order; empty if the specification
    /// forbids that answer.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Vec<Self::State>;
}

/// The checker's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
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
    // (call event, state before it, which successor was taken)
    let mut stack: Vec<(usize, M::State, usize)> = Vec::new();
    let mut state = model.init();
    let mut entry = events.0[0].next;
    // The first successor to try at the next call (after a backtrack: the
    // one after the successor that failed).
    let mut first_choice = 0;
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
            let successors = model.step(&state, &op.input, output);
            let mut taken = false;
            for (choice, next) in successors.into_iter().enumerate().skip(first_choice) {
                linearized[event.op] = true;
                if tried.insert((linearized.clone(), next.clone())) {
                    stack.push((entry, std::mem::replace(&mut state, next), choice));
                    events.lift(entry);
                    entry = events.0[0].next;
                    taken = true;
                    break;
                }
                linearized[event.op] = false;
            }
            first_choice = 0;
            if !taken {
                entry = event.next;
            }
        } else {
            // A return whose op is not linearized yet: undo the last choice.
            let Some((call, previous, choice)) = stack.pop() else {
                return Verdict::NotLinearizable;
            };
            state = previous;
            linearized[events.0[call].op] = false;
            events.unlift(call);
            entry = call;
            first_choice = choice + 1;
        }
    }
    Verdict::Unknown
}

/// An op's input with the effective time of its receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timed {
    /// The receipt's effective time; `None` when the client has no receipt
    /// (the op is pending: the model tries it at the state's clock and at
    /// each deadline it knows of).
    pub time: Option<HlcTimestamp>,
    /// The op.
    pub call: Call,
}

/// A waiting acquire's wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wait {
    /// Names the wait, so its later [`Call::WaitEnd`] finds it (the
    /// recorder's choice; unique in a history).
    pub id: u64,
    /// How long it may wait (µs of effective time).
    pub timeout: u64,
}

/// The operations the models know (sessions are in both; lock ops go to
/// [`locks::LockModel`], queue ops to [`QueueModel`]; the other model refuses
/// them). Sessions, tokens and messages are integers the recorder chose
/// (order-preserving for sessions and tokens).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// Opens a session for `ttl` µs.
    CreateSession {
        /// The lease.
        ttl: u64,
    },
    /// Extends a session to `now + ttl`.
    RenewSession {
        /// The session.
        session: u64,
        /// The lease.
        ttl: u64,
    },
    /// Ends a session (locks released without lock-delay, waits aborted,
    /// claims returned).
    DestroySession {
        /// The session.
        session: u64,
    },
    /// Takes the lock: try once (`wait: None`) or wait FIFO.
    Acquire {
        /// The session.
        session: u64,
        /// Exclusive (true) or shared.
        exclusive: bool,
        /// The wait, if it waits.
        wait: Option<Wait>,
    },
    /// The later receipt of a queued acquire: granted, timed out or
    /// aborted. Its effective time is the batch that ended the wait.
    WaitEnd {
        /// [`Wait::id`] of the acquire.
        wait: u64,
    },
    /// Gives the lock up or withdraws a wait.
    Release {
        /// The session.
        session: u64,
    },
    /// Confirms the session holds the lock; extends its lease.
    RenewLock {
        /// The session.
        session: u64,
        /// The lease.
        ttl: u64,
    },
    /// Adds message `id` (the recorder knows ids before the answer).
    Submit {
        /// The message.
        id: u64,
        /// 0 (Critical) … 3 (Low).
        rank: u8,
        /// The dedup key, if any.
        dedup: Option<u64>,
    },
    /// Claims the next message for `visibility_timeout` µs.
    Claim {
        /// The session.
        session: u64,
        /// The visibility timeout.
        visibility_timeout: u64,
    },
    /// Completes delivery `delivery` of message `id`.
    Ack {
        /// The session.
        session: u64,
        /// The message.
        id: u64,
        /// The delivery.
        delivery: u32,
    },
    /// Returns delivery `delivery` of message `id` now.
    Nack {
        /// The session.
        session: u64,
        /// The message.
        id: u64,
        /// The delivery.
        delivery: u32,
    },
    /// Ready per priority, claimed and dead counts.
    Depth,
    /// The message a claim would return now.
    Peek,
}

/// What an op answered (the judged results; anything else the recorder
/// drops or treats as unknown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A new session and its expiry (µs).
    SessionCreated {
        /// The session.
        session: u64,
        /// Its expiry.
        expires_at: u64,
    },
    /// A lease's new expiry (µs).
    Renewed {
        /// The expiry.
        expires_at: u64,
    },
    /// Took effect.
    Done,
    /// Holds the lock with this token.
    Granted {
        /// The fencing token as an integer.
        token: u64,
    },
    /// Waits behind `position` waiters.
    Queued {
        /// Waiters ahead.
        position: u32,
    },
    /// Submitted (or deduplicated to) message `id`.
    Submitted {
        /// The message.
        id: u64,
        /// The dedup key matched.
        duplicate: bool,
    },
    /// Claimed delivery `delivery` of message `id`.
    Claimed {
        /// The message.
        id: u64,
        /// Deliveries so far, this one included.
        delivery: u32,
    },
    /// Nothing ready.
    Empty,
    /// A queue's counts.
    Depth {
        /// Ready per priority, Critical first.
        ready: [u32; 4],
        /// Claimed.
        claimed: u32,
        /// Dead letters.
        dead: u32,
    },
    /// The message a claim would return.
    Peeked(Option<u64>),
    /// The session does not exist (never, ended or expired).
    NoSuchSession,
    /// The lock is taken, delayed or has waiters; no wait asked.
    WouldBlock,
    /// The session already holds or waits for the lock.
    AlreadyHeld,
    /// The session neither holds nor waits (RenewLock: does not hold).
    NotHolder,
    /// The wait ran out.
    WaitTimedOut,
    /// The waiting session ended.
    WaitAborted,
    /// Not claimed by this session in this delivery.
    NoSuchClaim,
}

/// How many candidate times an op without a receipt is tried at (its
/// state's clock and the deadlines after it, one after the other).
pub const PENDING_TIMES_MAX: usize = 64;

/// A model state with a clock and deadlines, for [`successors`].
trait Clocked: Clone {
    fn clock(&self) -> HlcTimestamp;
    /// Runs every deadline due by `at` and sets the clock to it.
    fn advance(&mut self, at: HlcTimestamp, exact: bool);
    /// The next deadline after the clock (µs), if any.
    fn next_deadline(&self) -> Option<u64>;
    /// Applies the op at the clock; false if `output` is impossible.
    fn apply(&mut self, call: &Call, output: Option<&Answer>, exact: bool) -> bool;
}

/// The states `input` can lead to: at its receipt's time if it has one
/// (not before the clock), else at the clock and after each deadline to
/// come (an unanswered op may have run in any batch, and what it sees only
/// changes at deadlines; the deadlines an op itself starts are then only
/// approximate).
fn successors<S: Clocked>(s: &S, input: &Timed, output: Option<&Answer>) -> Vec<S> {
    match input.time {
        Some(t) if t < s.clock() => vec![],
        Some(t) => {
            let mut next = s.clone();
            next.advance(t, true);
            if next.apply(&input.call, output, true) {
                vec![next]
            } else {
                vec![]
            }
        }
        None => {
            let mut found = Vec::new();
            let mut base = s.clone();
            for _ in 0..PENDING_TIMES_MAX {
                let mut next = base.clone();
                if next.apply(&input.call, output, false) {
                    found.push(next);
                }
                let Some(at) = base.next_deadline() else {
                    break;
                };
                base.advance(HlcTimestamp::from_micros(at), false);
            }
            found
        }
    }
}

/// Whether an observed `output` (`None`: unknown) is `want`.
fn answers(output: Option<&Answer>, want: &Answer) -> bool {
    output.is_none_or(|o| o == want)
}
