//! Sessions and locks.

use crate::machine::{limit, out_of_range, ClientEvent, Cx, Origin, StateMachine};
use crate::op::{
    FencingToken, LockInfo, LockMode, OpError, OpOutcome, OpResult, SessionId, SessionInfo,
};
use crate::state::{Deadline, Lock, Role, Session, Waiter};
use primitives::ClientId;

impl StateMachine {
    /// The session, if `client` owns it.
    pub(crate) fn owned(&self, client: ClientId, id: SessionId) -> Result<Session, OpError> {
        let session = self.sessions.get(&id).ok_or(OpError::NoSuchSession)?;
        if session.owner != client {
            return Err(OpError::NotOwner);
        }
        Ok(session.clone())
    }

    fn check_ttl(&self, ttl: u64) -> Result<(), OpError> {
        if ttl < self.config.session_ttl_min || ttl > self.config.session_ttl_max {
            return Err(out_of_range("ttl"));
        }
        Ok(())
    }

    pub(crate) fn check_name(&self, name: &str) -> Result<(), OpError> {
        if name.len() > self.config.name_bytes_max as usize {
            return Err(out_of_range("name"));
        }
        Ok(())
    }

    pub(crate) fn create_session(&mut self, cx: &mut Cx, client: ClientId, ttl: u64) -> OpOutcome {
        self.check_ttl(ttl)?;
        let record = self.clients.get(&client).expect("client recorded first");
        if record.sessions >= self.config.sessions_per_client_max {
            return Err(limit("sessions_per_client_max"));
        }
        if self.sessions.len() >= self.config.sessions_max as usize {
            return Err(limit("sessions_max"));
        }
        let id = SessionId(cx.token());
        let expires_at = cx.now.saturating_add(ttl);
        let session = Session {
            owner: client,
            expires_at,
            locks: 0,
            claims: 0,
        };
        self.sessions.insert(id, session);
        let deadline = (expires_at, Deadline::SessionExpiry(id));
        self.deadlines.insert(deadline, ());
        self.clients.update(&client, |c| c.sessions += 1);
        Ok(OpResult::SessionCreated {
            session: id,
            expires_at,
        })
    }

    pub(crate) fn renew_session(
        &mut self,
        cx: &mut Cx,
        client: ClientId,
        id: SessionId,
        ttl: u64,
    ) -> OpOutcome {
        let session = self.owned(client, id)?;
        self.check_ttl(ttl)?;
        let old = (session.expires_at, Deadline::SessionExpiry(id));
        self.deadlines.remove(&old);
        let expires_at = cx.now.saturating_add(ttl);
        self.deadlines
            .insert((expires_at, Deadline::SessionExpiry(id)), ());
        self.sessions.update(&id, |s| s.expires_at = expires_at);
        Ok(OpResult::Renewed { expires_at })
    }

    pub(crate) fn destroy_session(
        &mut self,
        cx: &mut Cx,
        client: ClientId,
        id: SessionId,
    ) -> OpOutcome {
        self.owned(client, id)?;
        self.end_session(cx, id, None);
        Ok(OpResult::Done)
    }

    pub(crate) fn session_status(&self, client: ClientId, id: SessionId) -> OpOutcome {
        let session = self.owned(client, id)?;
        Ok(OpResult::Session(SessionInfo {
            owner: session.owner,
            expires_at: session.expires_at,
            locks: session.locks,
            claims: session.claims,
        }))
    }

    /// A session's lease ran out at `at`.
    pub(crate) fn expire_session(&mut self, cx: &mut Cx, id: SessionId, at: u64) {
        let session = self.sessions.get(&id).expect("deadline of a live session");
        assert_eq!(session.expires_at, at, "stale session deadline");
        let client = session.owner;
        self.bump(|s| s.session_expiries += 1);
        cx.out.events.push(ClientEvent::SessionExpired {
            client,
            session: id,
        });
        self.end_session(cx, id, Some(at));
    }

    /// Ends a session: releases its locks (granting waiters), drops its
    /// waits and returns its claims. `expired_at` is set when the lease ran
    /// out, which starts the lock-delay of the locks it held.
    pub(crate) fn end_session(&mut self, cx: &mut Cx, id: SessionId, expired_at: Option<u64>) {
        let session = self
            .sessions
            .get(&id)
            .expect("ending a live session")
            .clone();
        let roles: Vec<(String, Role)> = self
            .session_locks
            .range((id, String::new())..)
            .take_while(|((s, _), _)| *s == id)
            .map(|((_, r), role)| (r.clone(), *role))
            .collect();
        for (resource, role) in roles {
            match role {
                Role::Held => {
                    let token = self.drop_holder(id, &resource);
                    if let Some(at) = expired_at {
                        cx.out.events.push(ClientEvent::LockLost {
                            client: session.owner,
                            session: id,
                            resource: resource.clone(),
                            token,
                        });
                        self.start_lock_delay(&resource, at);
                    }
                    self.grant_waiters(cx, &resource);
                }
                Role::Waiting(ticket) => {
                    self.end_wait(cx, &resource, ticket, OpError::WaitAborted);
                    self.grant_waiters(cx, &resource);
                }
            }
            self.remove_lock_if_idle(&resource);
        }
        let claims: Vec<_> = self
            .session_claims
            .range((id, Default::default())..)
            .take_while(|((s, _), _)| *s == id)
            .map(|((_, m), _)| *m)
            .collect();
        for message in claims {
            self.unclaim(cx, message);
        }
        let session = self.sessions.remove(&id).expect("live");
        let deadline = (session.expires_at, Deadline::SessionExpiry(id));
        self.deadlines.remove(&deadline);
        self.clients.update(&session.owner, |c| c.sessions -= 1);
    }

    fn start_lock_delay(&mut self, resource: &str, expired_at: u64) {
        if self.config.lock_delay == 0 {
            return;
        }
        let until = expired_at.saturating_add(self.config.lock_delay);
        let key = resource.to_string();
        let lock = self.locks.get(&key).expect("held lock exists").clone();
        if let Some(old) = lock.delayed_until {
            if old >= until {
                return;
            }
            self.deadlines
                .remove(&(old, Deadline::LockDelay(key.clone())));
        }
        self.deadlines
            .insert((until, Deadline::LockDelay(key.clone())), ());
        self.locks.update(&key, |l| l.delayed_until = Some(until));
    }

    pub(crate) fn end_lock_delay(&mut self, cx: &mut Cx, resource: String) {
        self.locks.update(&resource, |l| l.delayed_until = None);
        self.grant_waiters(cx, &resource);
        self.remove_lock_if_idle(&resource);
    }

    /// Removes `session` from the holders of `resource`; returns its token.
    fn drop_holder(&mut self, session: SessionId, resource: &str) -> FencingToken {
        let key = (resource.to_string(), session);
        let token = self.holders.remove(&key).expect("holder");
        self.session_locks.remove(&(session, resource.to_string()));
        self.sessions.update(&session, |s| s.locks -= 1);
        self.locks.update(&key.0, |l| {
            l.holders -= 1;
            if l.holders == 0 {
                l.mode = None;
            }
        });
        token
    }

    /// Removes a waiter; with `error` it gets a final receipt and event.
    fn end_wait(&mut self, cx: &mut Cx, resource: &str, ticket: FencingToken, error: OpError) {
        let key = (resource.to_string(), ticket);
        let waiter = self.waiters.remove(&key).expect("waiter");
        let deadline = (
            waiter.deadline,
            Deadline::WaiterTimeout(key.0.clone(), ticket),
        );
        self.deadlines.remove(&deadline);
        self.session_locks.remove(&(waiter.session, key.0.clone()));
        self.sessions.update(&waiter.session, |s| s.locks -= 1);
        self.locks.update(&key.0, |l| l.waiters -= 1);
        cx.receipt(waiter.request, waiter.op_index, &Err(error.clone()));
        cx.out.events.push(ClientEvent::WaitEnded {
            client: waiter.client,
            session: waiter.session,
            resource: key.0,
            error,
            request: waiter.request,
            op_index: waiter.op_index,
        });
    }

    pub(crate) fn time_out_waiter(&mut self, cx: &mut Cx, resource: String, ticket: FencingToken) {
        self.bump(|s| s.wait_timeouts += 1);
        self.end_wait(cx, &resource, ticket, OpError::WaitTimedOut);
        // The head may have blocked compatible waiters behind it.
        self.grant_waiters(cx, &resource);
        self.remove_lock_if_idle(&resource);
    }

    fn remove_lock_if_idle(&mut self, resource: &str) {
        let key = resource.to_string();
        if let Some(lock) = self.locks.get(&key) {
            if lock.holders == 0 && lock.waiters == 0 && lock.delayed_until.is_none() {
                self.locks.remove(&key);
            }
        }
    }

    /// Grants waiters from the head of the FIFO while they are compatible.
    fn grant_waiters(&mut self, cx: &mut Cx, resource: &str) {
        let key = resource.to_string();
        loop {
            let Some(lock) = self.locks.get(&key) else {
                return;
            };
            if lock.delayed_until.is_some() {
                return;
            }
            let Some(((_, ticket), waiter)) = self
                .waiters
                .range((key.clone(), FencingToken::default())..)
                .next()
                .filter(|((r, _), _)| *r == key)
            else {
                return;
            };
            if !compatible(lock, waiter.mode) {
                return;
            }
            let (ticket, waiter) = (*ticket, waiter.clone());
            self.waiters.remove(&(key.clone(), ticket));
            let deadline = (
                waiter.deadline,
                Deadline::WaiterTimeout(key.clone(), ticket),
            );
            self.deadlines.remove(&deadline);
            self.locks.update(&key, |l| l.waiters -= 1);
            let token = self.add_holder(cx, waiter.session, &key, waiter.mode);
            self.bump(|s| s.grants_after_wait += 1);
            cx.receipt(
                waiter.request,
                waiter.op_index,
                &Ok(OpResult::Granted { token }),
            );
            cx.out.events.push(ClientEvent::Granted {
                client: waiter.client,
                session: waiter.session,
                resource: key.clone(),
                token,
                request: waiter.request,
                op_index: waiter.op_index,
            });
        }
    }

    /// Makes `session` a holder (the lock entry exists); the caller has
    /// already counted the session's lock if it is new.
    fn add_holder(
        &mut self,
        cx: &mut Cx,
        session: SessionId,
        resource: &str,
        mode: LockMode,
    ) -> FencingToken {
        let token = cx.token();
        let key = resource.to_string();
        self.holders.insert((key.clone(), session), token);
        self.session_locks
            .insert((session, key.clone()), Role::Held);
        self.locks.update(&key, |l| {
            l.holders += 1;
            l.mode = Some(mode);
            l.last_token = Some(token);
        });
        token
    }

    pub(crate) fn acquire(
        &mut self,
        cx: &mut Cx,
        origin: Origin,
        id: SessionId,
        resource: String,
        mode: LockMode,
        wait: Option<u64>,
    ) -> OpOutcome {
        let session = self.owned(origin.client, id)?;
        self.check_name(&resource)?;
        if let Some(wait) = wait {
            if wait == 0 || wait > self.config.wait_max {
                return Err(out_of_range("wait"));
            }
            if cx.atomic {
                return Err(OpError::WaitInAtomic);
            }
        }
        if self.session_locks.contains(&(id, resource.clone())) {
            return Err(OpError::AlreadyHeld);
        }
        if session.locks >= self.config.locks_per_session_max {
            return Err(limit("locks_per_session_max"));
        }
        let existing = self.locks.get(&resource).cloned();
        if existing.is_none() && self.locks.len() >= self.config.resources_max as usize {
            return Err(limit("resources_max"));
        }
        let lock = existing.unwrap_or_default();
        let free = lock.delayed_until.is_none() && lock.waiters == 0 && compatible(&lock, mode);
        if free {
            self.locks.insert(resource.clone(), lock);
            self.sessions.update(&id, |s| s.locks += 1);
            let token = self.add_holder(cx, id, &resource, mode);
            return Ok(OpResult::Granted { token });
        }
        let Some(wait) = wait else {
            return Err(OpError::WouldBlock);
        };
        if lock.waiters >= self.config.waiters_per_resource_max {
            return Err(limit("waiters_per_resource_max"));
        }
        if self.waiters.len() >= self.config.waiters_max as usize {
            return Err(limit("waiters_max"));
        }
        let ticket = cx.token();
        let deadline = cx.now.saturating_add(wait);
        let waiter = Waiter {
            session: id,
            client: origin.client,
            mode,
            deadline,
            request: origin.request,
            op_index: origin.op_index,
        };
        self.waiters.insert((resource.clone(), ticket), waiter);
        let timeout = (deadline, Deadline::WaiterTimeout(resource.clone(), ticket));
        self.deadlines.insert(timeout, ());
        self.session_locks
            .insert((id, resource.clone()), Role::Waiting(ticket));
        self.sessions.update(&id, |s| s.locks += 1);
        self.locks.update(&resource, |l| l.waiters += 1);
        Ok(OpResult::Queued {
            position: lock.waiters,
        })
    }

    pub(crate) fn release(
        &mut self,
        cx: &mut Cx,
        client: ClientId,
        id: SessionId,
        resource: String,
    ) -> OpOutcome {
        self.owned(client, id)?;
        let role = *self
            .session_locks
            .get(&(id, resource.clone()))
            .ok_or(OpError::NotHolder)?;
        match role {
            Role::Held => {
                self.drop_holder(id, &resource);
                self.grant_waiters(cx, &resource);
            }
            Role::Waiting(ticket) => {
                // Withdrawn by its own client: no separate final receipt.
                let key = (resource.clone(), ticket);
                let waiter = self.waiters.remove(&key).expect("waiter");
                let deadline = (waiter.deadline, Deadline::WaiterTimeout(key.0, ticket));
                self.deadlines.remove(&deadline);
                self.session_locks.remove(&(id, resource.clone()));
                self.sessions.update(&id, |s| s.locks -= 1);
                self.locks.update(&resource, |l| l.waiters -= 1);
                self.grant_waiters(cx, &resource);
            }
        }
        self.remove_lock_if_idle(&resource);
        Ok(OpResult::Done)
    }

    pub(crate) fn renew_lock(
        &mut self,
        cx: &mut Cx,
        client: ClientId,
        id: SessionId,
        resource: String,
        ttl: u64,
    ) -> OpOutcome {
        self.owned(client, id)?;
        if self.session_locks.get(&(id, resource)) != Some(&Role::Held) {
            return Err(OpError::NotHolder);
        }
        self.renew_session(cx, client, id, ttl)
    }

    pub(crate) fn check(&self, resource: &str) -> OpResult {
        let key = resource.to_string();
        let Some(lock) = self.locks.get(&key) else {
            return OpResult::Lock(LockInfo {
                mode: None,
                holders: vec![],
                waiters: vec![],
                last_token: None,
                delayed_until: None,
            });
        };
        let listing = self.config.listing_max as usize;
        let holders = self
            .holders
            .range((key.clone(), SessionId::default())..)
            .take_while(|((r, _), _)| *r == key)
            .take(listing)
            .map(|((_, s), t)| (*s, *t))
            .collect();
        let waiters = self
            .waiters
            .range((key.clone(), FencingToken::default())..)
            .take_while(|((r, _), _)| *r == key)
            .take(listing)
            .map(|(_, w)| (w.session, w.mode))
            .collect();
        OpResult::Lock(LockInfo {
            mode: lock.mode,
            holders,
            waiters,
            last_token: lock.last_token,
            delayed_until: lock.delayed_until,
        })
    }
}

/// Whether a `mode` request is compatible with the lock's holders.
fn compatible(lock: &Lock, mode: LockMode) -> bool {
    lock.holders == 0 || (mode == LockMode::Shared && lock.mode == Some(LockMode::Shared))
}
