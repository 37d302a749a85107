//! Durable priority queues: submit, claim with a visibility timeout,
//! ack/nack, redelivery, dead letters, dedup.

use crate::machine::{limit, out_of_range, ClientEvent, Cx, Origin, StateMachine};
use crate::op::{
    FencingToken, MessageId, MessageView, OpError, OpOutcome, OpResult, Priority, Provenance,
    QueueDepth, SessionId,
};
use crate::state::{Claim, Deadline, Message};
use primitives::{Bytes, ClientId};

impl StateMachine {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn submit(
        &mut self,
        cx: &mut Cx,
        origin: Origin,
        queue: String,
        priority: Priority,
        payload: Bytes,
        dedup_key: Option<Bytes>,
    ) -> OpOutcome {
        self.check_name(&queue)?;
        if payload.0.len() > self.config.payload_bytes_max as usize {
            return Err(out_of_range("payload"));
        }
        if let Some(key) = &dedup_key {
            if key.0.len() > self.config.dedup_key_bytes_max as usize {
                return Err(out_of_range("dedup_key"));
            }
            if let Some((id, _)) = self.dedup.get(&(queue.clone(), key.clone())) {
                return Ok(OpResult::Submitted {
                    id: *id,
                    duplicate: true,
                });
            }
        }
        self.admit_message(&origin, &queue, payload.0.len() as u64, dedup_key.is_some())?;
        let id = MessageId {
            request: origin.request,
            op_index: origin.op_index,
        };
        let order = cx.token();
        let message = Message {
            queue: queue.clone(),
            priority,
            provenance: Provenance {
                submitter: origin.client,
                seq: cx.seq,
                time: cx.time,
            },
            payload,
            delivery: 0,
            order,
            claim: None,
        };
        let len = message.payload.0.len() as u64;
        self.messages.insert(id, message);
        self.make_ready(cx, &queue, priority, order, id);
        self.clients.update(&origin.client, |c| c.messages += 1);
        self.bump(|s| s.payload_bytes += len);
        if let Some(key) = dedup_key {
            let expires = cx.now.saturating_add(self.config.dedup_window);
            self.dedup
                .insert((queue.clone(), key.clone()), (id, expires));
            self.dedup_deadlines.insert((expires, queue, key), ());
        }
        Ok(OpResult::Submitted {
            id,
            duplicate: false,
        })
    }

    /// Checks every bound a new message counts against.
    fn admit_message(
        &self,
        origin: &Origin,
        queue: &String,
        len: u64,
        dedup: bool,
    ) -> Result<(), OpError> {
        let record = self.clients.get(&origin.client).expect("client recorded");
        if record.messages >= self.config.messages_per_client_max {
            return Err(limit("messages_per_client_max"));
        }
        if self.messages.len() >= self.config.messages_max as usize {
            return Err(limit("messages_max"));
        }
        match self.queues.get(queue) {
            None if self.queues.len() >= self.config.queues_max as usize => {
                return Err(limit("queues_max"));
            }
            Some(c) if c.ready.iter().sum::<u32>() + c.claimed >= self.config.queue_depth_max => {
                return Err(limit("queue_depth_max"));
            }
            _ => {}
        }
        if self.stats().payload_bytes + len > self.config.payload_bytes_total_max {
            return Err(limit("payload_bytes_total_max"));
        }
        if dedup && self.dedup.len() >= self.config.dedup_keys_max as usize {
            return Err(limit("dedup_keys_max"));
        }
        Ok(())
    }

    /// Changes a queue's counts, creating or removing its entry as needed.
    fn counts(&mut self, queue: &str, f: impl FnOnce(&mut QueueDepth)) {
        let key = queue.to_string();
        let mut counts = self.queues.get(&key).cloned().unwrap_or_default();
        f(&mut counts);
        if counts == QueueDepth::default() {
            self.queues.remove(&key);
        } else {
            self.queues.insert(key, counts);
        }
    }

    fn make_ready(
        &mut self,
        cx: &mut Cx,
        queue: &str,
        priority: Priority,
        order: FencingToken,
        id: MessageId,
    ) {
        let was_empty = self
            .queues
            .get(&queue.to_string())
            .is_none_or(|c| c.ready.iter().all(|n| *n == 0));
        self.ready
            .insert((queue.to_string(), priority.rank(), order), id);
        self.counts(queue, |c| c.ready[usize::from(priority.rank())] += 1);
        if was_empty {
            cx.out.events.push(ClientEvent::QueueNonEmpty {
                queue: queue.to_string(),
            });
        }
    }

    fn first_ready(&self, queue: &str) -> Option<(u8, FencingToken, MessageId)> {
        let key = queue.to_string();
        self.ready
            .range((key.clone(), 0, FencingToken::default())..)
            .next()
            .filter(|((q, _, _), _)| *q == key)
            .map(|((_, p, o), id)| (*p, *o, *id))
    }

    pub(crate) fn claim(
        &mut self,
        cx: &mut Cx,
        client: ClientId,
        session: SessionId,
        queue: String,
        visibility_timeout: u64,
    ) -> OpOutcome {
        let s = self.owned(client, session)?;
        if visibility_timeout < self.config.visibility_timeout_min
            || visibility_timeout > self.config.visibility_timeout_max
        {
            return Err(out_of_range("visibility_timeout"));
        }
        if s.claims >= self.config.claims_per_session_max {
            return Err(limit("claims_per_session_max"));
        }
        let Some((rank, order, id)) = self.first_ready(&queue) else {
            return Ok(OpResult::Empty);
        };
        self.ready.remove(&(queue.clone(), rank, order));
        let until = cx.now.saturating_add(visibility_timeout);
        self.messages.update(&id, |m| {
            m.delivery += 1;
            m.claim = Some(Claim { session, until });
        });
        self.deadlines.insert((until, Deadline::Visibility(id)), ());
        self.session_claims.insert((session, id), ());
        self.sessions.update(&session, |s| s.claims += 1);
        self.counts(&queue, |c| {
            c.ready[usize::from(rank)] -= 1;
            c.claimed += 1;
        });
        let message = self.messages.get(&id).expect("claimed message");
        Ok(OpResult::Claimed(view(id, message)))
    }

    /// The message, if `session` (owned by `client`) holds its `delivery`.
    fn claimed_by(
        &self,
        client: ClientId,
        session: SessionId,
        id: MessageId,
        delivery: u32,
    ) -> Result<Message, OpError> {
        self.owned(client, session)?;
        let message = self.messages.get(&id).ok_or(OpError::NoSuchClaim)?;
        match &message.claim {
            Some(claim) if claim.session == session && message.delivery == delivery => {
                Ok(message.clone())
            }
            _ => Err(OpError::NoSuchClaim),
        }
    }

    pub(crate) fn ack(
        &mut self,
        _cx: &mut Cx,
        client: ClientId,
        session: SessionId,
        id: MessageId,
        delivery: u32,
    ) -> OpOutcome {
        let message = self.claimed_by(client, session, id, delivery)?;
        let claim = message.claim.as_ref().expect("claimed");
        self.messages.remove(&id);
        self.deadlines
            .remove(&(claim.until, Deadline::Visibility(id)));
        self.session_claims.remove(&(session, id));
        self.sessions.update(&session, |s| s.claims -= 1);
        self.counts(&message.queue, |c| c.claimed -= 1);
        self.clients
            .update(&message.provenance.submitter, |c| c.messages -= 1);
        let len = message.payload.0.len() as u64;
        self.bump(|s| s.payload_bytes -= len);
        Ok(OpResult::Done)
    }

    pub(crate) fn nack(
        &mut self,
        cx: &mut Cx,
        client: ClientId,
        session: SessionId,
        id: MessageId,
        delivery: u32,
    ) -> OpOutcome {
        self.claimed_by(client, session, id, delivery)?;
        self.unclaim(cx, id);
        Ok(OpResult::Done)
    }

    /// Ends a claim (nack, visibility timeout, session end): the message
    /// goes back to ready, or to the dead letters after enough deliveries.
    pub(crate) fn unclaim(&mut self, cx: &mut Cx, id: MessageId) {
        let mut message = self.messages.get(&id).expect("claimed message").clone();
        let claim = message.claim.take().expect("message is claimed");
        self.deadlines
            .remove(&(claim.until, Deadline::Visibility(id)));
        self.session_claims.remove(&(claim.session, id));
        if self.sessions.contains(&claim.session) {
            self.sessions.update(&claim.session, |s| s.claims -= 1);
        }
        self.counts(&message.queue, |c| c.claimed -= 1);
        if message.delivery >= self.config.dead_letter_after {
            self.dead_letter(id, message);
        } else {
            let (queue, priority, order) = (message.queue.clone(), message.priority, message.order);
            self.messages.insert(id, message);
            self.make_ready(cx, &queue, priority, order, id);
        }
    }

    fn dead_letter(&mut self, id: MessageId, message: Message) {
        self.messages.remove(&id);
        let queue = message.queue.clone();
        self.clients
            .update(&message.provenance.submitter, |c| c.messages -= 1);
        self.dead
            .insert((queue.clone(), message.order), (id, message));
        self.counts(&queue, |c| c.dead += 1);
        self.bump(|s| s.dead_letters += 1);
        let dead = self
            .queues
            .get(&queue)
            .expect("queue has a dead letter")
            .dead;
        if dead > self.config.dead_letters_per_queue_max {
            let oldest = self
                .dead
                .range((queue.clone(), FencingToken::default())..)
                .next()
                .map(|(k, _)| k.clone())
                .expect("queue has a dead letter");
            let (_, dropped) = self.dead.remove(&oldest).expect("exists");
            let len = dropped.payload.0.len() as u64;
            self.counts(&queue, |c| c.dead -= 1);
            self.bump(|s| {
                s.payload_bytes -= len;
                s.dead_letters_dropped += 1;
            });
        }
    }

    pub(crate) fn depth(&self, queue: &str) -> OpResult {
        OpResult::Depth(
            self.queues
                .get(&queue.to_string())
                .cloned()
                .unwrap_or_default(),
        )
    }

    pub(crate) fn peek(&self, queue: &str) -> OpResult {
        let found = self.first_ready(queue).map(|(_, _, id)| {
            let message = self.messages.get(&id).expect("ready message exists");
            view(id, message)
        });
        OpResult::Peeked(found)
    }

    pub(crate) fn peek_dead(&self, queue: &str) -> OpResult {
        let key = queue.to_string();
        let letters = self
            .dead
            .range((key.clone(), FencingToken::default())..)
            .take_while(|((q, _), _)| *q == key)
            .take(self.config.listing_max as usize)
            .map(|(_, (id, m))| view(*id, m))
            .collect();
        OpResult::DeadLetters(letters)
    }
}

fn view(id: MessageId, message: &Message) -> MessageView {
    MessageView {
        id,
        priority: message.priority,
        payload: message.payload.clone(),
        delivery: message.delivery,
        provenance: message.provenance.clone(),
    }
}
