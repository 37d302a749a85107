//! The sequential specification of one queue with its claimants'
//! sessions: highest priority first and FIFO within a priority, claims
//! with visibility timeouts, ack/nack by the claimant of the current
//! delivery only, redelivery after the timeout, dead letters after N
//! deliveries, dedup keys within a window.

use super::sessions::{self, SessionStep, Sessions};
use super::{answers, successors, Answer, Call, Clocked, Model, Timed};
use primitives::HlcTimestamp;
use std::collections::{BTreeMap, BTreeSet};

/// One queue and the sessions that claim from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueModel {
    /// A message delivered this many times and not acked becomes a dead
    /// letter instead of ready again.
    pub dead_letter_after: u32,
    /// How long (µs) a dedup key maps to its first message.
    pub dedup_window: u64,
}

impl QueueModel {
    /// The model of a state machine configured with `config`.
    pub fn from_config(config: &crate::Config) -> QueueModel {
        QueueModel {
            dead_letter_after: config.dead_letter_after,
            dedup_window: config.dedup_window,
        }
    }
}

/// A message held (ready or claimed).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Message {
    rank: u8,
    /// Submission order (FIFO within a rank).
    order: u64,
    delivery: u32,
    /// `(session, until)` while claimed.
    claim: Option<(u64, u64)>,
}

/// The state of [`QueueModel`].
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueueState {
    clock: HlcTimestamp,
    sessions: Sessions,
    messages: BTreeMap<u64, Message>,
    /// `(rank, order, id)` of ready messages.
    ready: BTreeSet<(u8, u64, u64)>,
    dead: u32,
    /// Dedup key → (first message, window end).
    dedup: BTreeMap<u64, (u64, u64)>,
    submitted: u64,
}

impl QueueState {
    /// Ends a claim: ready again, or a dead letter after enough deliveries.
    fn unclaim(&mut self, model: &QueueModel, id: u64) {
        let message = self.messages.get_mut(&id).expect("claimed message held");
        assert!(
            message.claim.take().is_some(),
            "unclaim of a claimed message"
        );
        if message.delivery >= model.dead_letter_after {
            self.messages.remove(&id);
            self.dead += 1;
        } else {
            self.ready.insert((message.rank, message.order, id));
        }
    }

    fn end_session(&mut self, model: &QueueModel, session: u64) {
        let claimed: Vec<u64> = self
            .messages
            .iter()
            .filter(|(_, m)| m.claim.is_some_and(|(s, _)| s == session))
            .map(|(id, _)| *id)
            .collect();
        for id in claimed {
            self.unclaim(model, id);
        }
        self.sessions.remove(&session);
    }

    /// Runs every deadline due by `at`: expiries, then visibility timeouts
    /// (their order does not change the state), then dedup windows.
    fn advance(&mut self, model: &QueueModel, at: HlcTimestamp) {
        loop {
            let expiry = sessions::first_expiry(&self.sessions).map(|(t, s)| (t, 0, s));
            let visibility = self
                .messages
                .iter()
                .filter_map(|(id, m)| m.claim.map(|(_, until)| (until, 1, *id)))
                .min();
            let due = [expiry, visibility]
                .into_iter()
                .flatten()
                .min()
                .filter(|(t, _, _)| *t <= at.wall);
            match due {
                None => break,
                Some((_, 0, session)) => self.end_session(model, session),
                Some((_, _, id)) => self.unclaim(model, id),
            }
        }
        self.dedup.retain(|_, (_, until)| *until > at.wall);
        self.clock = at;
    }

    fn next_deadline(&self) -> Option<u64> {
        let claims = self.messages.values().filter_map(|m| m.claim.map(|c| c.1));
        self.sessions.values().copied().chain(claims).min()
    }

    /// Whether `session` holds delivery `delivery` of `id`.
    fn holds(&self, session: u64, id: u64, delivery: u32) -> bool {
        self.messages
            .get(&id)
            .is_some_and(|m| m.delivery == delivery && m.claim.is_some_and(|(s, _)| s == session))
    }

    fn apply(&mut self, model: &QueueModel, call: &Call, output: Option<&Answer>) -> bool {
        let now = self.clock.wall;
        match sessions::step(&mut self.sessions, call, now, output) {
            SessionStep::Forbidden => return false,
            SessionStep::Applied => return true,
            SessionStep::End(session) => {
                self.end_session(model, session);
                return true;
            }
            SessionStep::NotMine => {}
        }
        match call {
            Call::Submit { id, rank, dedup } => {
                if let Some((first, _)) = dedup.and_then(|k| self.dedup.get(&k)) {
                    let want = Answer::Submitted {
                        id: *first,
                        duplicate: true,
                    };
                    return answers(output, &want);
                }
                let want = Answer::Submitted {
                    id: *id,
                    duplicate: false,
                };
                if self.messages.contains_key(id) || !answers(output, &want) {
                    return false;
                }
                let order = self.submitted;
                self.submitted += 1;
                let message = Message {
                    rank: *rank,
                    order,
                    delivery: 0,
                    claim: None,
                };
                self.messages.insert(*id, message);
                self.ready.insert((*rank, order, *id));
                if let Some(key) = dedup {
                    let until = now.saturating_add(model.dedup_window);
                    self.dedup.insert(*key, (*id, until));
                }
                true
            }
            Call::Claim {
                session,
                visibility_timeout,
            } => {
                if !self.sessions.contains_key(session) {
                    return answers(output, &Answer::NoSuchSession);
                }
                let Some(first) = self.ready.pop_first() else {
                    return answers(output, &Answer::Empty);
                };
                let id = first.2;
                let message = self.messages.get_mut(&id).expect("ready message held");
                message.delivery += 1;
                message.claim = Some((*session, now.saturating_add(*visibility_timeout)));
                let delivery = message.delivery;
                answers(output, &Answer::Claimed { id, delivery })
            }
            Call::Ack {
                session,
                id,
                delivery,
            }
            | Call::Nack {
                session,
                id,
                delivery,
            } => {
                if !self.sessions.contains_key(session) {
                    return answers(output, &Answer::NoSuchSession);
                }
                if !self.holds(*session, *id, *delivery) {
                    return answers(output, &Answer::NoSuchClaim);
                }
                if matches!(call, Call::Ack { .. }) {
                    self.messages.remove(id);
                } else {
                    self.unclaim(model, *id);
                }
                answers(output, &Answer::Done)
            }
            Call::Depth => {
                let mut ready = [0u32; 4];
                for (rank, _, _) in &self.ready {
                    ready[usize::from(*rank).min(3)] += 1;
                }
                let claimed = self.messages.values().filter(|m| m.claim.is_some()).count();
                let want = Answer::Depth {
                    ready,
                    claimed: claimed as u32,
                    dead: self.dead,
                };
                answers(output, &want)
            }
            Call::Peek => {
                let first = self.ready.first().map(|(_, _, id)| *id);
                answers(output, &Answer::Peeked(first))
            }
            _ => false,
        }
    }
}

impl Model for QueueModel {
    type State = QueueState;
    type Input = Timed;
    type Output = Answer;

    fn init(&self) -> QueueState {
        QueueState::default()
    }

    fn step(&self, s: &QueueState, input: &Timed, output: Option<&Answer>) -> Vec<QueueState> {
        let with = WithModel {
            model: *self,
            state: s.clone(),
        };
        successors(&with, input, output)
            .into_iter()
            .map(|w| w.state)
            .collect()
    }
}

/// A state with its model's parameters, for the shared time handling.
#[derive(Clone)]
struct WithModel {
    model: QueueModel,
    state: QueueState,
}

impl Clocked for WithModel {
    fn clock(&self) -> HlcTimestamp {
        self.state.clock
    }

    fn advance(&mut self, at: HlcTimestamp, _exact: bool) {
        self.state.advance(&self.model, at);
    }

    fn next_deadline(&self) -> Option<u64> {
        self.state.next_deadline()
    }

    fn apply(&mut self, call: &Call, output: Option<&Answer>, _exact: bool) -> bool {
        self.state.apply(&self.model, call, output)
    }
}
