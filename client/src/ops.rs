//! The typed helpers over [`Client::submit`]: sessions, locks (with a
//! [`LockGuard`]) and queues (with a [`ClaimedMessage`] consumed by
//! `ack`/`nack`).

use crate::client::{first_outcome, to_micros, unexpected_result, Background, Client, Session};
use crate::error::ClientError;
use qlock::{
    Durability, FencingToken, LockInfo, LockMode, MessageId, MessageView, Op, OpResult, Priority,
    QueueDepth, SessionId, SessionInfo,
};
use std::time::{Duration, Instant};

/// A submitted message's id, and whether it is certified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Submitted {
    /// The message id (request digest and op index).
    pub id: MessageId,
    /// `Some(true)` when the dedup key matched an earlier message;
    /// `None` for an `async` submit (not known yet).
    pub duplicate: Option<bool>,
}

impl Client {
    /// Opens a session with lease `ttl` (the cluster bounds it, 5 s to
    /// 1 h by default). With `keepalive` on, the client renews it at a
    /// third of its TTL until it is destroyed.
    ///
    /// ```no_run
    /// # async fn demo(client: client::Client) -> Result<(), client::ClientError> {
    /// let session = client.create_session(std::time::Duration::from_secs(10)).await?;
    /// println!("session {:?} expires at {} µs", session.id, session.expires_at);
    /// # Ok(()) }
    /// ```
    pub async fn create_session(&self, ttl: Duration) -> Result<Session, ClientError> {
        let sent_at = Instant::now();
        match self
            .one(Op::CreateSession {
                ttl: to_micros(ttl),
            })
            .await?
        {
            OpResult::SessionCreated {
                session,
                expires_at,
            } => {
                self.track_session(session, ttl, sent_at);
                Ok(Session {
                    id: session,
                    ttl,
                    expires_at,
                })
            }
            other => Err(unexpected_result("create session", &other)),
        }
    }

    /// Extends a session's lease to now + `ttl`; returns the new expiry
    /// (µs, cluster time).
    pub async fn renew(&self, session: SessionId, ttl: Duration) -> Result<u64, ClientError> {
        let sent_at = Instant::now();
        match self
            .one(Op::RenewSession {
                session,
                ttl: to_micros(ttl),
            })
            .await?
        {
            OpResult::Renewed { expires_at } => {
                self.note_renewal(session, ttl, sent_at);
                Ok(expires_at)
            }
            other => Err(unexpected_result("renew", &other)),
        }
    }

    /// Ends a session: its locks are released and its claims returned.
    pub async fn destroy_session(&self, session: SessionId) -> Result<(), ClientError> {
        self.untrack_session(session);
        match self.one(Op::DestroySession { session }).await? {
            OpResult::Done => Ok(()),
            other => Err(unexpected_result("destroy session", &other)),
        }
    }

    /// Describes a session (owner only).
    pub async fn session_status(&self, session: SessionId) -> Result<SessionInfo, ClientError> {
        match self.one(Op::SessionStatus { session }).await? {
            OpResult::Session(info) => Ok(info),
            other => Err(unexpected_result("session status", &other)),
        }
    }

    /// Takes `resource` for `session`. `wait: None` tries once
    /// ([`qlock::OpError::WouldBlock`] if taken); `Some(d)` waits up to
    /// `d` in FIFO order for the grant, which arrives as a pushed, verified
    /// event. The guard releases the lock when dropped (through the
    /// background task) or by [`LockGuard::release`].
    ///
    /// ```no_run
    /// # async fn demo(client: client::Client, s: qlock::SessionId) -> Result<(), client::ClientError> {
    /// use std::time::Duration;
    /// let guard = client
    ///     .acquire(s, "printer", qlock::LockMode::Exclusive, Some(Duration::from_secs(2)))
    ///     .await?;
    /// // Pass the token to the protected resource: it refuses smaller ones.
    /// println!("token {}", guard.token().as_u64());
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn acquire(
        &self,
        session: SessionId,
        resource: &str,
        mode: LockMode,
        wait: Option<Duration>,
    ) -> Result<LockGuard, ClientError> {
        let token = self
            .acquire_op(Op::Acquire {
                session,
                resource: resource.to_string(),
                mode,
                wait: wait.map(to_micros),
            })
            .await?;
        Ok(LockGuard {
            client: self.clone(),
            session,
            resource: resource.to_string(),
            token,
            released: false,
        })
    }

    /// Releases a lock (or withdraws a wait) without a guard.
    pub async fn release(&self, session: SessionId, resource: &str) -> Result<(), ClientError> {
        match self
            .one(Op::Release {
                session,
                resource: resource.to_string(),
            })
            .await?
        {
            OpResult::Done => Ok(()),
            other => Err(unexpected_result("release", &other)),
        }
    }

    /// Confirms `session` holds `resource` and extends the session's lease
    /// to now + `ttl`; returns the new expiry (µs).
    pub async fn renew_lock(
        &self,
        session: SessionId,
        resource: &str,
        ttl: Duration,
    ) -> Result<u64, ClientError> {
        let sent_at = Instant::now();
        match self
            .one(Op::RenewLock {
                session,
                resource: resource.to_string(),
                ttl: to_micros(ttl),
            })
            .await?
        {
            OpResult::Renewed { expires_at } => {
                self.note_renewal(session, ttl, sent_at);
                Ok(expires_at)
            }
            other => Err(unexpected_result("renew lock", &other)),
        }
    }

    /// Describes a lock: holders with tokens, waiters, last token.
    pub async fn check(&self, resource: &str) -> Result<LockInfo, ClientError> {
        match self
            .one(Op::Check {
                resource: resource.to_string(),
            })
            .await?
        {
            OpResult::Lock(info) => Ok(info),
            other => Err(unexpected_result("check", &other)),
        }
    }

    /// Adds a message to `queue`. `Sync`: answered with 2f + 1 signatures
    /// once durable on a quorum; `Async`: answered on acceptance,
    /// uncertified, with the id the client computes itself.
    ///
    /// ```no_run
    /// # async fn demo(client: client::Client) -> Result<(), client::ClientError> {
    /// use qlock::{Durability, Priority};
    /// let sent = client
    ///     .queue_submit("jobs", Priority::High, b"resize 42".to_vec(), None, Durability::Sync)
    ///     .await?;
    /// println!("message {:?}", sent.id);
    /// # Ok(()) }
    /// ```
    pub async fn queue_submit(
        &self,
        queue: &str,
        priority: Priority,
        payload: Vec<u8>,
        dedup: Option<Vec<u8>>,
        durability: Durability,
    ) -> Result<Submitted, ClientError> {
        let reply = self
            .submit(
                vec![Op::Submit {
                    queue: queue.to_string(),
                    priority,
                    payload: primitives::Bytes(payload),
                    dedup_key: dedup.map(primitives::Bytes),
                    durability,
                }],
                false,
            )
            .await?;
        let certified = reply.certified();
        match first_outcome(reply)? {
            OpResult::Submitted { id, duplicate } => Ok(Submitted {
                id,
                duplicate: certified.then_some(duplicate),
            }),
            other => Err(unexpected_result("submit", &other)),
        }
    }

    /// Claims the highest-priority oldest ready message of `queue` for
    /// `session`, invisible to others for `visibility`. `None` when the
    /// queue has nothing ready. The handle must be acked or nacked; a
    /// dropped one is nacked in the background.
    ///
    /// ```no_run
    /// # async fn demo(client: client::Client, s: qlock::SessionId) -> Result<(), client::ClientError> {
    /// if let Some(msg) = client.claim(s, "jobs", std::time::Duration::from_secs(30)).await? {
    ///     println!("{} bytes", msg.payload().len());
    ///     msg.ack().await?; // msg is consumed: a second ack does not compile
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn claim(
        &self,
        session: SessionId,
        queue: &str,
        visibility: Duration,
    ) -> Result<Option<ClaimedMessage>, ClientError> {
        match self
            .one(Op::Claim {
                session,
                queue: queue.to_string(),
                visibility_timeout: to_micros(visibility),
            })
            .await?
        {
            OpResult::Claimed(view) => Ok(Some(ClaimedMessage {
                client: self.clone(),
                session,
                view,
                done: false,
            })),
            OpResult::Empty => Ok(None),
            other => Err(unexpected_result("claim", &other)),
        }
    }

    /// Acks a claimed message by id and delivery (the CLI's form; in code
    /// prefer [`ClaimedMessage::ack`]).
    pub async fn ack_message(
        &self,
        session: SessionId,
        message: MessageId,
        delivery: u32,
    ) -> Result<(), ClientError> {
        match self
            .one(Op::Ack {
                session,
                message,
                delivery,
            })
            .await?
        {
            OpResult::Done => Ok(()),
            other => Err(unexpected_result("ack", &other)),
        }
    }

    /// Nacks a claimed message by id and delivery.
    pub async fn nack_message(
        &self,
        session: SessionId,
        message: MessageId,
        delivery: u32,
    ) -> Result<(), ClientError> {
        match self
            .one(Op::Nack {
                session,
                message,
                delivery,
            })
            .await?
        {
            OpResult::Done => Ok(()),
            other => Err(unexpected_result("nack", &other)),
        }
    }

    /// Ready (per priority), claimed and dead counts of `queue`.
    pub async fn depth(&self, queue: &str) -> Result<QueueDepth, ClientError> {
        match self
            .one(Op::Depth {
                queue: queue.to_string(),
            })
            .await?
        {
            OpResult::Depth(depth) => Ok(depth),
            other => Err(unexpected_result("depth", &other)),
        }
    }

    /// The message a claim would return now, without claiming it.
    pub async fn peek(&self, queue: &str) -> Result<Option<MessageView>, ClientError> {
        match self
            .one(Op::Peek {
                queue: queue.to_string(),
            })
            .await?
        {
            OpResult::Peeked(view) => Ok(view),
            other => Err(unexpected_result("peek", &other)),
        }
    }
}

/// A held lock. Released when dropped (by the client's background task)
/// or explicitly by [`LockGuard::release`]. The lock lives as long as the
/// session: check [`LockGuard::is_valid`] before acting on it.
#[derive(Debug)]
pub struct LockGuard {
    client: Client,
    session: SessionId,
    resource: String,
    token: FencingToken,
    released: bool,
}

impl LockGuard {
    /// The fencing token of the grant: hand it to the protected resource,
    /// which must refuse any smaller token than the largest it has seen.
    pub fn token(&self) -> FencingToken {
        self.token
    }

    /// The lock's name.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The holding session.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// Whether the session's lease surely still runs (on this client's
    /// clock, minus the cluster's clock skew). Only known for sessions this
    /// client keeps alive; `false` otherwise.
    pub fn is_valid(&self) -> bool {
        self.client.lease_remaining(self.session).is_some()
    }

    /// Confirms the lock is still held and extends the session's lease.
    pub async fn renew(&self, ttl: Duration) -> Result<u64, ClientError> {
        self.client
            .renew_lock(self.session, &self.resource, ttl)
            .await
    }

    /// Gives up the guard without releasing: the lock stays held until a
    /// release or the session's end (a CLI that exits keeps its lock).
    pub fn keep(mut self) -> FencingToken {
        self.released = true;
        self.token
    }

    /// Releases the lock now and waits for the certified answer.
    pub async fn release(mut self) -> Result<(), ClientError> {
        self.released = true;
        self.client.release(self.session, &self.resource).await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let job = Background::Release {
            session: self.session,
            resource: std::mem::take(&mut self.resource),
        };
        if self.client.inner.background.try_send(job).is_err() {
            tracing::warn!("background queue full: the lock is released when the session ends");
        }
    }
}

/// A claimed message. `ack(self)` and `nack(self)` consume it, so it is
/// acked at most once by construction; a dropped one is nacked in the
/// background (it would come back after its visibility timeout anyway).
#[derive(Debug)]
pub struct ClaimedMessage {
    client: Client,
    session: SessionId,
    view: MessageView,
    done: bool,
}

impl ClaimedMessage {
    /// The message's id.
    pub fn id(&self) -> MessageId {
        self.view.id
    }

    /// Its payload.
    pub fn payload(&self) -> &[u8] {
        &self.view.payload.0
    }

    /// The whole view: priority, delivery count, provenance.
    pub fn view(&self) -> &MessageView {
        &self.view
    }

    /// Gives up the handle without acking or nacking: the message returns
    /// after its visibility timeout unless acked by id
    /// ([`Client::ack_message`]).
    pub fn keep(mut self) -> MessageView {
        self.done = true;
        self.view.clone()
    }

    /// Completes the message: it never comes back.
    pub async fn ack(mut self) -> Result<(), ClientError> {
        self.done = true;
        self.client
            .ack_message(self.session, self.view.id, self.view.delivery)
            .await
    }

    /// Gives the message back now for another claim.
    pub async fn nack(mut self) -> Result<(), ClientError> {
        self.done = true;
        self.client
            .nack_message(self.session, self.view.id, self.view.delivery)
            .await
    }
}

impl Drop for ClaimedMessage {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let job = Background::Nack {
            session: self.session,
            message: self.view.id,
            delivery: self.view.delivery,
        };
        if self.client.inner.background.try_send(job).is_err() {
            tracing::warn!(
                "background queue full: the message returns after its visibility timeout"
            );
        }
    }
}
