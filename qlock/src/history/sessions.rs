//! Sessions as both models see them: id → lease expiry (µs of effective
//! time). A lease is live while `now < expires_at`: its expiry is a
//! deadline, run before any op at or after it.

use super::{answers, Answer, Call};
use std::collections::BTreeMap;

/// Live sessions and their expiries.
pub(super) type Sessions = BTreeMap<u64, u64>;

/// What a session call did.
pub(super) enum SessionStep {
    /// Not a session call: the model handles it.
    NotMine,
    /// The answer is impossible here.
    Forbidden,
    /// Done (or a refusal that changes nothing).
    Applied,
    /// The session must end now (destroyed): the model releases what it
    /// holds and removes it.
    End(u64),
}

/// Applies a session call at `now` (µs) to `sessions`.
pub(super) fn step(
    sessions: &mut Sessions,
    call: &Call,
    now: u64,
    output: Option<&Answer>,
) -> SessionStep {
    let judge = |ok: bool| {
        if ok {
            SessionStep::Applied
        } else {
            SessionStep::Forbidden
        }
    };
    match call {
        Call::CreateSession { ttl } => match output {
            // An unanswered create: nobody can name its session.
            None => SessionStep::Applied,
            Some(Answer::SessionCreated {
                session,
                expires_at,
            }) if *expires_at == now.saturating_add(*ttl) && !sessions.contains_key(session) => {
                sessions.insert(*session, *expires_at);
                SessionStep::Applied
            }
            Some(_) => SessionStep::Forbidden,
        },
        Call::RenewSession { session, ttl } => {
            if !sessions.contains_key(session) {
                return judge(answers(output, &Answer::NoSuchSession));
            }
            let expires_at = now.saturating_add(*ttl);
            if !answers(output, &Answer::Renewed { expires_at }) {
                return SessionStep::Forbidden;
            }
            sessions.insert(*session, expires_at);
            SessionStep::Applied
        }
        Call::DestroySession { session } => {
            if !sessions.contains_key(session) {
                return judge(answers(output, &Answer::NoSuchSession));
            }
            if !answers(output, &Answer::Done) {
                return SessionStep::Forbidden;
            }
            SessionStep::End(*session)
        }
        _ => SessionStep::NotMine,
    }
}

/// The earliest session expiry, as `(at, session)`.
pub(super) fn first_expiry(sessions: &Sessions) -> Option<(u64, u64)> {
    sessions.iter().map(|(s, at)| (*at, *s)).min()
}
