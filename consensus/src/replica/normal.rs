//! The normal case (PBFT §4.2): PRE-PREPARE → PREPARE → COMMIT, batching,
//! the payload availability and time rules (DESIGN.md steps 4–5), persist
//! before vote (step 6) and execution in seq order.

use super::{signed_vote, Deferred, Replica, Slot};
use crate::config::Mutation;
use crate::io::{ExecuteBatch, Output, PersistRecord, TimerKind};
use crate::message::{Batch, CommittedBatch, Message, PrePrepare, SignedMessage, Vote};
use crate::reject::Rejection;
use primitives::{Digest, ReplicaId, SeqNum, Signature};
use std::collections::BTreeSet;

impl Replica {
    /// The primary batches waiting digests: a full batch at once, a
    /// partial one when the batch delay has run out or nothing is in
    /// flight; several in flight up to the high watermark (§4.2,
    /// "batching" in TOCS §5.1).
    pub(super) fn try_propose(&mut self) {
        if self.installing_view {
            // The new view's log and next seq are not set up yet; the
            // installation proposes once they are.
            return;
        }
        if !self.is_primary() || !self.view_active {
            self.batch_deadline = None;
            return;
        }
        // Adaptive batching: with room in the pipeline a request goes out at
        // once (light load pays no batch delay); with the pipeline full,
        // requests gather until the batch is full, the delay runs out or a
        // batch executes (heavy load gets large batches).
        let late = self.batch_deadline.is_some_and(|d| d <= self.now);
        if self.heartbeat_due() && self.hears_quorum() {
            self.propose_heartbeat();
        }
        if !self.hears_quorum() {
            // Retried at the next status tick.
            if self.queued > 0 && self.batch_deadline.is_none() {
                let at = self.now + self.cfg.batch_delay_micros;
                self.batch_deadline = Some(at);
                self.set_timer(TimerKind::Batch, at);
            }
            return;
        }
        while self.queued > 0
            && (late || self.pipeline_has_room() || self.queued >= self.cfg.batch_size_max)
        {
            let seq = self.next_seq.next();
            if seq.0 > self.low.0 + self.cfg.watermark_window {
                break;
            }
            let Ok(batch_time) = self.hlc.now(self.now) else {
                break;
            };
            let digests = self.dequeue(self.cfg.batch_size_max);
            self.propose(
                seq,
                Batch {
                    digests,
                    batch_time,
                },
            );
        }
        if self.queued == 0 {
            self.batch_deadline = None;
        } else if self.batch_deadline.is_none_or(|d| d <= self.now) {
            let at = self.now + self.cfg.batch_delay_micros;
            self.batch_deadline = Some(at);
            self.set_timer(TimerKind::Batch, at);
        }
    }

    /// Whether fewer than `batches_in_flight_max` of our batches are
    /// proposed and not yet executed (with `propose_when_idle`).
    fn pipeline_has_room(&self) -> bool {
        let in_flight = self.next_seq.0.saturating_sub(self.last_executed.0);
        self.cfg.propose_when_idle && in_flight < self.cfg.batches_in_flight_max
    }

    /// Whether a quorum (us included) was heard from within two status
    /// intervals. A primary cut off from a quorum does not propose: its
    /// batches would reach the backups only after their time went stale.
    fn hears_quorum(&self) -> bool {
        let recent = 2 * self.cfg.status_interval_micros;
        let heard = self
            .last_heard
            .iter()
            .filter(|t| **t > 0 && self.now.saturating_sub(**t) <= recent)
            .count();
        heard + 1 >= self.quorum()
    }

    /// A deadline is due on our clock, effective time has not reached it
    /// and nothing is in flight: time only moves with batches, so propose
    /// an empty one (DESIGN.md step 5, heartbeats).
    fn heartbeat_due(&self) -> bool {
        let Some(at) = self.deadline else {
            return false;
        };
        let in_flight = self.log.range(self.last_executed.next()..).next().is_some();
        self.now >= at.wall && self.last_time < at && self.queued == 0 && !in_flight
    }

    fn propose_heartbeat(&mut self) {
        let seq = self.next_seq.next();
        if seq.0 > self.low.0 + self.cfg.watermark_window {
            return;
        }
        if let Ok(batch_time) = self.hlc.now(self.now) {
            let batch = Batch {
                digests: Vec::new(),
                batch_time,
            };
            self.propose(seq, batch);
        }
    }

    /// A backup's view: the deadline is due even allowing for the
    /// primary's clock being behind by the skew, and effective time has
    /// not reached it.
    pub(super) fn deadline_overdue(&self) -> bool {
        self.deadline.is_some_and(|at| {
            self.now >= at.wall.saturating_add(self.cfg.max_clock_skew_micros)
                && self.last_time < at
        })
    }

    fn propose(&mut self, seq: SeqNum, batch: Batch) {
        self.next_seq = seq;
        let pp = PrePrepare {
            view: self.view,
            seq,
            batch: batch.clone(),
        };
        let signed = self.sign(Message::PrePrepare(pp));
        let digest = batch.digest();
        let missing = self.reference_batch(&batch);
        assert!(
            missing.is_empty(),
            "the primary proposed payloads it does not hold"
        );
        let slot = self.log.entry(seq).or_default();
        assert!(slot.pre_prepare.is_none(), "primary reused {seq:?}");
        slot.pre_prepare = Some((signed.clone(), batch, digest));
        slot.pre_prepare_persisting = true;
        self.persist(
            PersistRecord::PrePrepare(signed),
            Deferred::BroadcastPrePrepare(seq, self.view),
        );
    }

    /// The primary's own PRE-PREPARE is durable: send it; it stands for the
    /// primary's PREPARE.
    pub(super) fn pre_prepare_durable(&mut self, seq: SeqNum) {
        let Some(slot) = self.log.get_mut(&seq) else {
            return;
        };
        slot.pre_prepare_durable = true;
        if let Some((signed, ..)) = &slot.pre_prepare {
            let signed = signed.clone();
            self.broadcast(signed);
        }
        self.try_progress(seq);
    }

    /// The cheap checks a PRE-PREPARE passes before its signature is
    /// worth checking (also used to pick what [`Replica::preverify`]
    /// checks); the batch's digest if it passes.
    pub(super) fn pre_prepare_admissible(&self, pp: &PrePrepare) -> Result<Digest, Rejection> {
        if pp.view != self.view || !self.view_active {
            return Err(Rejection::WrongView);
        }
        self.check_window(pp.seq)?;
        self.check_batch_shape(&pp.batch)?;
        let digest = pp.batch.digest();
        let slot = self.log.get(&pp.seq);
        let held = slot.and_then(|s| s.pre_prepare.as_ref().or(s.stale_pre_prepare.as_ref()));
        match held {
            Some((_, _, d)) if *d == digest => Err(Rejection::Duplicate),
            Some(_) => Err(Rejection::ConflictingPrePrepare),
            None => Ok(digest),
        }
    }

    pub(super) fn on_pre_prepare(
        &mut self,
        from: ReplicaId,
        signed: SignedMessage,
        pp: PrePrepare,
    ) {
        let digest = match self.pre_prepare_admissible(&pp) {
            Ok(digest) => digest,
            Err(reason) => return self.reject(Some(from), reason),
        };
        if !self.verify(from, &signed) {
            return;
        }
        let wall = pp.batch.batch_time.wall;
        let skew = self.cfg.max_clock_skew_micros;
        if wall > self.now.saturating_add(skew) {
            return self.reject(Some(from), Rejection::BatchTimeSkew);
        }
        let entry = (signed, pp.batch, digest);
        let slot = self.log.entry(pp.seq).or_default();
        if wall + skew < self.now {
            // Too old to accept on our own clock: accept once f+1 replicas
            // (the primary among them) vouch for it, so one correct
            // replica checked it when it was fresh.
            slot.stale_pre_prepare = Some(entry);
        } else {
            self.accept_pre_prepare(pp.seq, entry);
        }
        self.try_progress(pp.seq);
    }

    pub(super) fn accept_pre_prepare(
        &mut self,
        seq: SeqNum,
        entry: (SignedMessage, Batch, Digest),
    ) {
        // Keeps our clock at or above accepted batch times, so our own
        // batches as a later primary come after them. A time the clock
        // refuses (beyond the skew) was let in by f+1 vouchers: ignore it.
        let _ = self.hlc.update(entry.1.batch_time, self.now);
        let missing = self.reference_batch(&entry.1);
        let slot = self.log.entry(seq).or_default();
        slot.stale_pre_prepare = None;
        slot.pre_prepare = Some(entry);
        if !missing.is_empty() {
            let hint = self.cfg.membership.primary(self.view);
            self.out.push(Output::FetchPayloads {
                digests: missing,
                hint,
            });
        }
    }

    /// Watermarks (§4.2): above the stable checkpoint and what we executed,
    /// at most `L` above the low watermark.
    pub(super) fn check_window(&self, seq: SeqNum) -> Result<(), Rejection> {
        if seq <= self.low || seq <= self.last_executed {
            Err(Rejection::Stale)
        } else if seq.0 > self.low.0 + self.cfg.watermark_window {
            Err(Rejection::OutsideWatermarks)
        } else {
            Ok(())
        }
    }

    pub(super) fn check_batch_shape(&self, batch: &Batch) -> Result<(), Rejection> {
        if batch.digests.len() > self.cfg.batch_size_max {
            return Err(Rejection::BatchTooLarge);
        }
        let distinct: BTreeSet<&Digest> = batch.digests.iter().collect();
        if distinct.len() != batch.digests.len() {
            return Err(Rejection::DuplicateDigestInBatch);
        }
        Ok(())
    }

    pub(super) fn on_prepare(&mut self, from: ReplicaId, vote: Vote, sig: Signature) {
        if from == self.cfg.membership.primary(vote.view) {
            return self.reject(Some(from), Rejection::PrepareFromPrimary);
        }
        self.on_vote(from, vote, sig, false);
    }

    pub(super) fn on_commit(&mut self, from: ReplicaId, vote: Vote, sig: Signature) {
        self.on_vote(from, vote, sig, true);
    }

    /// The cheap checks a vote passes before its signature is worth
    /// checking (also used to pick what [`Replica::preverify`] checks).
    pub(super) fn vote_admissible(
        &self,
        from: ReplicaId,
        vote: &Vote,
        commit: bool,
    ) -> Result<(), Rejection> {
        if vote.view != self.view || !self.view_active {
            return Err(Rejection::WrongView);
        }
        self.check_window(vote.seq)?;
        if self
            .log
            .get(&vote.seq)
            .is_some_and(|s| s.committed || (!commit && s.prepared_persisting))
        {
            // Committed (perhaps by a fetched certificate of another view),
            // or a PREPARE once the prepared certificate is taken (§4.2):
            // the vote changes nothing, so it costs no signature check.
            return Err(Rejection::Stale);
        }
        let votes = self.log.get(&vote.seq).map(|s| votes_of(s, commit));
        if let Some(held) = votes.and_then(|v| v.get(&from)) {
            return Err(if held.0 == *vote {
                Rejection::Duplicate
            } else {
                Rejection::ConflictingVote
            });
        }
        Ok(())
    }

    fn on_vote(&mut self, from: ReplicaId, vote: Vote, sig: Signature, commit: bool) {
        if let Err(reason) = self.vote_admissible(from, &vote, commit) {
            return self.reject(Some(from), reason);
        }
        if !self.verify(from, &signed_vote(commit, vote, sig)) {
            return;
        }
        let slot = self.log.entry(vote.seq).or_default();
        let votes = if commit {
            &mut slot.commits
        } else {
            &mut slot.prepares
        };
        votes.insert(from, (vote, sig));
        self.try_progress(vote.seq);
    }

    /// Moves a slot as far as its messages allow: accept a vouched-for
    /// stale PRE-PREPARE, persist it once its payloads are held, persist
    /// the prepared certificate, mark it committed.
    pub(super) fn try_progress(&mut self, seq: SeqNum) {
        self.promote_stale(seq);
        let quorum = self.quorum();
        let is_primary = self.is_primary();
        let Some(slot) = self.log.get_mut(&seq) else {
            return;
        };
        let Some((signed, batch, digest)) = &slot.pre_prepare else {
            return;
        };
        let digest = *digest;
        if !slot.pre_prepare_persisting && !is_primary {
            // The mutant votes without the payloads.
            let mutant = self.cfg.mutation == Mutation::PrepareBeforePayloads;
            let all_held = mutant
                || batch
                    .digests
                    .iter()
                    .all(|d| self.payloads.get(d).is_some_and(|p| p.held));
            if !all_held {
                return;
            }
            slot.pre_prepare_persisting = true;
            let record = PersistRecord::PrePrepare(signed.clone());
            self.persist(record, Deferred::SendPrepare(seq, self.view));
            return;
        }
        let prepares = matching(&slot.prepares, digest);
        if slot.pre_prepare_durable && !slot.prepared_persisting && prepares + 1 >= quorum {
            slot.prepared_persisting = true;
            let certificate = certificate(&slot.prepares, digest, false);
            slot.prepared_proof = Some(crate::message::PreparedProof {
                pre_prepare: signed.clone(),
                prepares: certificate.clone(),
            });
            let record = PersistRecord::Prepared {
                view: self.view,
                seq,
                batch: digest,
                prepares: certificate,
            };
            self.persist(record, Deferred::SendCommit(seq, self.view));
            return;
        }
        if slot.commit_sent && !slot.committed && matching(&slot.commits, digest) >= quorum {
            slot.committed = true;
            self.try_execute();
        }
    }

    fn promote_stale(&mut self, seq: SeqNum) {
        let weak = self.cfg.membership.weak_quorum();
        let Some(slot) = self.log.get_mut(&seq) else {
            return;
        };
        let Some((_, _, digest)) = &slot.stale_pre_prepare else {
            return;
        };
        // The primary vouches by its PRE-PREPARE, backups by PREPAREs.
        if 1 + matching(&slot.prepares, *digest) >= weak {
            let entry = slot.stale_pre_prepare.take().expect("checked above");
            self.accept_pre_prepare(seq, entry);
        }
    }

    pub(super) fn send_prepare(&mut self, seq: SeqNum) {
        let view = self.view;
        let id = self.cfg.id;
        let Some(slot) = self.log.get_mut(&seq) else {
            return;
        };
        let Some((_, _, digest)) = &slot.pre_prepare else {
            return;
        };
        slot.pre_prepare_durable = true;
        let vote = Vote {
            view,
            seq,
            batch: *digest,
            replica: id,
        };
        let signed = self.sign(Message::Prepare(vote));
        let slot = self.log.get_mut(&seq).expect("checked above");
        slot.prepares.insert(id, (vote, signed.signature));
        self.broadcast(signed);
        self.try_progress(seq);
    }

    pub(super) fn send_commit(&mut self, seq: SeqNum) {
        let view = self.view;
        let id = self.cfg.id;
        let Some((_, _, digest)) = self.log.get(&seq).and_then(|s| s.pre_prepare.as_ref()) else {
            return;
        };
        let vote = Vote {
            view,
            seq,
            batch: *digest,
            replica: id,
        };
        if self.log.get(&seq).is_some_and(|s| s.committed) {
            // Committed already (by a fetched certificate, perhaps of an
            // earlier view): our vote would only overwrite one of the
            // certificate's.
            return;
        }
        let signed = self.sign(Message::Commit(vote));
        let slot = self.log.get_mut(&seq).expect("checked above");
        slot.commits.insert(id, (vote, signed.signature));
        slot.commit_sent = true;
        self.broadcast(signed);
        self.try_progress(seq);
    }

    /// Hands committed batches to the application strictly in seq order,
    /// each at its effective time (DESIGN.md step 5).
    pub(super) fn try_execute(&mut self) {
        let before = self.last_executed;
        self.execute_ready();
        if self.last_executed > before && self.is_primary() && self.queued > 0 {
            // The pipeline has room again: waiting requests need not sit
            // out the batch delay.
            self.try_propose();
        }
    }

    fn execute_ready(&mut self) {
        loop {
            let seq = self.next_to_execute();
            let Some(slot) = self.log.get(&seq) else {
                return;
            };
            let Some((signed, batch, digest)) =
                slot.pre_prepare.as_ref().filter(|_| slot.committed)
            else {
                return;
            };
            if !batch
                .digests
                .iter()
                .all(|d| self.payloads.get(d).is_some_and(|p| p.held))
            {
                return;
            }
            let time = batch.batch_time.max(self.last_time.next_tick());
            let Message::PrePrepare(pp) = &signed.message else {
                unreachable!("a slot holds a PRE-PREPARE");
            };
            // Only COMMITs of the PRE-PREPARE's own view certify it.
            let commits: Vec<SignedMessage> = certificate(&slot.commits, *digest, true)
                .into_iter()
                .filter(|s| matches!(&s.message, Message::Commit(v) if v.view == pp.view))
                .collect();
            assert!(
                commits.len() >= self.quorum(),
                "executing {seq:?} without a commit certificate of its view"
            );
            let certificate = CommittedBatch {
                pre_prepare: signed.clone(),
                commits,
            };
            self.out.push(Output::Execute(ExecuteBatch {
                seq,
                time,
                digests: batch.digests.clone(),
                certificate,
            }));
            self.last_executed = seq;
            self.last_time = time;
        }
    }
}

impl Replica {
    /// The seq to execute next: the one after the last executed. The
    /// [`Mutation::ExecuteOutOfOrder`] mutant takes the lowest committed
    /// slot above it instead, skipping uncommitted predecessors.
    fn next_to_execute(&self) -> SeqNum {
        let next = self.last_executed.next();
        if self.cfg.mutation != Mutation::ExecuteOutOfOrder {
            return next;
        }
        self.log
            .range(next..)
            .find(|(_, s)| s.committed && s.pre_prepare.is_some())
            .map_or(next, |(seq, _)| *seq)
    }
}

fn votes_of(
    slot: &Slot,
    commit: bool,
) -> &std::collections::BTreeMap<ReplicaId, (Vote, Signature)> {
    if commit {
        &slot.commits
    } else {
        &slot.prepares
    }
}

/// Votes for `digest`.
pub(super) fn matching(
    votes: &std::collections::BTreeMap<ReplicaId, (Vote, Signature)>,
    digest: Digest,
) -> usize {
    votes.values().filter(|(v, _)| v.batch == digest).count()
}

/// The signed votes for `digest`.
pub(super) fn certificate(
    votes: &std::collections::BTreeMap<ReplicaId, (Vote, Signature)>,
    digest: Digest,
    commit: bool,
) -> Vec<SignedMessage> {
    votes
        .values()
        .filter(|(v, _)| v.batch == digest)
        .map(|(v, s)| signed_vote(commit, *v, *s))
        .collect()
}
