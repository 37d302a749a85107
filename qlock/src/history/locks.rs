//! The sequential specification of one lock resource with sessions:
//! exclusive or shared holders, FIFO waiters with deadlines, lock-delay
//! after a holder's session expires, tokens increasing per resource.

use super::sessions::{self, SessionStep, Sessions};
use super::{answers, successors, Answer, Call, Clocked, Model, Timed};
use primitives::HlcTimestamp;
use std::collections::BTreeMap;

/// One resource and the sessions that touch it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockModel {
    /// How long (µs) the resource stays unavailable after a holder's
    /// session *expired* (Chubby's lock-delay); 0: none.
    pub lock_delay: u64,
}

impl LockModel {
    /// The model of a state machine configured with `config`.
    pub fn from_config(config: &crate::Config) -> LockModel {
        LockModel {
            lock_delay: config.lock_delay,
        }
    }
}

/// A queued acquire.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Waiter {
    wait: u64,
    session: u64,
    exclusive: bool,
    deadline: u64,
}

/// How a wait ended, when, and whether that time is exact (an op of
/// unknown time may have run the deadline that ended it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Ended {
    at: HlcTimestamp,
    exact: bool,
    answer: WaitAnswer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum WaitAnswer {
    Granted,
    TimedOut,
    Aborted,
}

/// The state of [`LockModel`].
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct LockState {
    /// The effective time of the last op: ops may not go back before it.
    clock: HlcTimestamp,
    sessions: Sessions,
    /// Holders: session → exclusive.
    holders: BTreeMap<u64, bool>,
    /// FIFO.
    waiters: Vec<Waiter>,
    delayed_until: Option<u64>,
    /// The largest token observed on this resource (0: none yet).
    last_token: u64,
    /// Waits that ended and whose end was not observed yet.
    ended: BTreeMap<u64, Ended>,
}

impl LockState {
    fn compatible(&self, exclusive: bool) -> bool {
        self.holders.is_empty() || (!exclusive && self.holders.values().all(|e| !e))
    }

    /// Grants waiters from the head while they are compatible.
    fn grant_waiters(&mut self, at: HlcTimestamp, exact: bool) {
        while self.delayed_until.is_none() {
            let Some(head) = self.waiters.first() else {
                return;
            };
            if !self.compatible(head.exclusive) {
                return;
            }
            let head = self.waiters.remove(0);
            self.holders.insert(head.session, head.exclusive);
            self.end_wait(head.wait, at, exact, WaitAnswer::Granted);
        }
    }

    fn end_wait(&mut self, wait: u64, at: HlcTimestamp, exact: bool, answer: WaitAnswer) {
        let ended = Ended { at, exact, answer };
        assert!(self.ended.insert(wait, ended).is_none(), "wait ids unique");
    }

    /// Ends `session` (its expiry at `expired`, or a destroy): the lock is
    /// released (with lock-delay after an expiry), a wait is aborted.
    fn end_session(
        &mut self,
        model: &LockModel,
        session: u64,
        expired: Option<u64>,
        at: HlcTimestamp,
        exact: bool,
    ) {
        if self.holders.remove(&session).is_some() {
            if let Some(expired) = expired.filter(|_| model.lock_delay > 0) {
                let until = expired.saturating_add(model.lock_delay);
                self.delayed_until = Some(self.delayed_until.map_or(until, |d| d.max(until)));
            }
            self.grant_waiters(at, exact);
        }
        if let Some(i) = self.waiters.iter().position(|w| w.session == session) {
            let waiter = self.waiters.remove(i);
            self.end_wait(waiter.wait, at, exact, WaitAnswer::Aborted);
            self.grant_waiters(at, exact);
        }
        self.sessions.remove(&session);
    }

    /// Runs every deadline due by `at`, earliest first; at equal times
    /// expiries, then the lock-delay's end, then wait timeouts (FIFO).
    fn advance(&mut self, model: &LockModel, at: HlcTimestamp, exact: bool) {
        loop {
            let expiry = sessions::first_expiry(&self.sessions).map(|(t, s)| (t, 0, s));
            let delay = self.delayed_until.map(|t| (t, 1, 0));
            let timeout = self
                .waiters
                .iter()
                .enumerate()
                .map(|(i, w)| (w.deadline, 2, i as u64))
                .min();
            let due = [expiry, delay, timeout]
                .into_iter()
                .flatten()
                .min()
                .filter(|(t, _, _)| *t <= at.wall);
            match due {
                None => break,
                Some((t, 0, session)) => self.end_session(model, session, Some(t), at, exact),
                Some((_, 1, _)) => {
                    self.delayed_until = None;
                    self.grant_waiters(at, exact);
                }
                Some((_, _, i)) => {
                    let waiter = self.waiters.remove(i as usize);
                    self.end_wait(waiter.wait, at, exact, WaitAnswer::TimedOut);
                    self.grant_waiters(at, exact);
                }
            }
        }
        self.clock = at;
    }

    fn next_deadline(&self) -> Option<u64> {
        self.sessions
            .values()
            .copied()
            .chain(self.delayed_until)
            .chain(self.waiters.iter().map(|w| w.deadline))
            .min()
    }

    /// Applies `call` at the clock; false if `output` is impossible.
    fn apply(
        &mut self,
        model: &LockModel,
        call: &Call,
        output: Option<&Answer>,
        exact: bool,
    ) -> bool {
        let now = self.clock.wall;
        match sessions::step(&mut self.sessions, call, now, output) {
            SessionStep::Forbidden => return false,
            SessionStep::Applied => return true,
            SessionStep::End(session) => {
                self.end_session(model, session, None, self.clock, exact);
                return true;
            }
            SessionStep::NotMine => {}
        }
        let live = |s: &u64| self.sessions.contains_key(s);
        match call {
            Call::Acquire {
                session,
                exclusive,
                wait,
            } => {
                if !live(session) {
                    return answers(output, &Answer::NoSuchSession);
                }
                let waiting = self.waiters.iter().any(|w| w.session == *session);
                if self.holders.contains_key(session) || waiting {
                    return answers(output, &Answer::AlreadyHeld);
                }
                let free = self.delayed_until.is_none()
                    && self.waiters.is_empty()
                    && self.compatible(*exclusive);
                if free {
                    match output {
                        None => {}
                        Some(Answer::Granted { token }) if *token > self.last_token => {
                            self.last_token = *token;
                        }
                        Some(_) => return false,
                    }
                    self.holders.insert(*session, *exclusive);
                    return true;
                }
                let Some(wait) = wait else {
                    return answers(output, &Answer::WouldBlock);
                };
                let position = self.waiters.len() as u32;
                if !answers(output, &Answer::Queued { position }) {
                    return false;
                }
                self.waiters.push(Waiter {
                    wait: wait.id,
                    session: *session,
                    exclusive: *exclusive,
                    deadline: now.saturating_add(wait.timeout),
                });
                true
            }
            Call::WaitEnd { wait } => {
                let Some(ended) = self.ended.remove(wait) else {
                    return false;
                };
                // The end's receipt is from the batch that ended the wait.
                if exact && ended.exact && ended.at != self.clock {
                    return false;
                }
                match (ended.answer, output) {
                    (_, None) => true,
                    (WaitAnswer::Granted, Some(Answer::Granted { token }))
                        if *token > self.last_token =>
                    {
                        self.last_token = *token;
                        true
                    }
                    (WaitAnswer::TimedOut, Some(Answer::WaitTimedOut)) => true,
                    (WaitAnswer::Aborted, Some(Answer::WaitAborted)) => true,
                    _ => false,
                }
            }
            Call::Release { session } => {
                if !live(session) {
                    return answers(output, &Answer::NoSuchSession);
                }
                if self.holders.remove(session).is_some() {
                    self.grant_waiters(self.clock, exact);
                    return answers(output, &Answer::Done);
                }
                if let Some(i) = self.waiters.iter().position(|w| w.session == *session) {
                    // Withdrawn by its own client: no end receipt follows.
                    self.waiters.remove(i);
                    self.grant_waiters(self.clock, exact);
                    return answers(output, &Answer::Done);
                }
                answers(output, &Answer::NotHolder)
            }
            Call::RenewLock { session, ttl } => {
                if !live(session) {
                    return answers(output, &Answer::NoSuchSession);
                }
                if !self.holders.contains_key(session) {
                    return answers(output, &Answer::NotHolder);
                }
                let expires_at = now.saturating_add(*ttl);
                self.sessions.insert(*session, expires_at);
                answers(output, &Answer::Renewed { expires_at })
            }
            _ => false,
        }
    }
}

impl Model for LockModel {
    type State = LockState;
    type Input = Timed;
    type Output = Answer;

    fn init(&self) -> LockState {
        LockState::default()
    }

    fn step(&self, s: &LockState, input: &Timed, output: Option<&Answer>) -> Vec<LockState> {
        let with = |state: &LockState| WithModel {
            model: *self,
            state: state.clone(),
        };
        successors(&with(s), input, output)
            .into_iter()
            .map(|w| w.state)
            .collect()
    }
}

/// A state with its model's parameters, for the shared time handling.
#[derive(Clone)]
struct WithModel {
    model: LockModel,
    state: LockState,
}

impl Clocked for WithModel {
    fn clock(&self) -> HlcTimestamp {
        self.state.clock
    }

    fn advance(&mut self, at: HlcTimestamp, exact: bool) {
        self.state.advance(&self.model, at, exact);
    }

    fn next_deadline(&self) -> Option<u64> {
        self.state.next_deadline()
    }

    fn apply(&mut self, call: &Call, output: Option<&Answer>, exact: bool) -> bool {
        self.state.apply(&self.model, call, output, exact)
    }
}
