//! The untimed lock model the simulator used before the timed models
//! ([`super::locks::LockModel`]): kept only so `simulator` builds until it
//! is wired to [`super::check_observed`]. Delete this file and its
//! re-export then.

use super::Model;
use std::collections::BTreeSet;

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

/// The untimed sequential lock (no sessions, no expiry).
#[derive(Clone, Copy, Debug, Default)]
pub struct LockModel;

/// The state of the untimed [`LockModel`].
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct UntimedLockState {
    exclusive: Option<u64>,
    shared: BTreeSet<u64>,
    last_token: u64,
}

impl Model for LockModel {
    type State = UntimedLockState;
    type Input = LockInput;
    type Output = LockOutput;

    fn init(&self) -> UntimedLockState {
        UntimedLockState::default()
    }

    fn step(
        &self,
        s: &UntimedLockState,
        input: &LockInput,
        out: Option<&LockOutput>,
    ) -> Vec<UntimedLockState> {
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
                    Some(LockOutput::Busy) if !free || holds => return vec![next],
                    None => return vec![next],
                    _ => return vec![],
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
                    _ => return vec![],
                }
            }
        }
        vec![next]
    }
}
