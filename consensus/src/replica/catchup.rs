//! Retransmission and catch-up, driven by STATUS (after the status
//! messages of Castro's implementation, TOCS §5.2): every interval a
//! replica reports how far it executed; a peer that reports no progress
//! gets our messages for the slots it lacks again, and a replica that
//! made no progress while a peer is ahead fetches committed batches with
//! their certificates.

use super::Replica;
use crate::io::{Output, TimerKind};
use crate::message::{CommittedBatch, Message, Status, Vote, WireMessage};
use crate::reject::Rejection;
use primitives::{keys, ReplicaId, SeqNum};
use std::collections::BTreeSet;

impl Replica {
    pub(super) fn on_status_timer(&mut self) {
        self.ticks += 1;
        let status = Status {
            view: self.view,
            last_executed: self.last_executed,
            stable: self.low,
            view_active: self.view_active,
        };
        self.out.push(Output::Broadcast {
            message: WireMessage::Status(status),
        });
        self.refetch_payloads();
        if self.last_executed == self.executed_at_last_tick {
            self.fetch_committed();
            self.maybe_fetch_state();
        } else {
            self.stalled_ticks = 0;
        }
        self.executed_at_last_tick = self.last_executed;
        self.resend_orphan_votes();
        self.check_progress();
        let at = self.now + self.cfg.status_interval_micros;
        self.set_timer(TimerKind::Status, at);
        self.try_propose();
    }

    /// A peer other than us, chosen round-robin by tick.
    fn rotating_peer(&self, candidates: &[ReplicaId]) -> Option<ReplicaId> {
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[(self.ticks as usize) % candidates.len()])
    }

    fn refetch_payloads(&mut self) {
        let missing = self.missing_payloads();
        if missing.is_empty() {
            return;
        }
        let others: Vec<ReplicaId> = self
            .cfg
            .membership
            .ids()
            .filter(|r| *r != self.cfg.id)
            .collect();
        if let Some(hint) = self.rotating_peer(&others) {
            self.out.push(Output::FetchPayloads {
                digests: missing,
                hint,
            });
        }
    }

    /// We made no progress for an interval: ask a peer that is ahead for
    /// the committed batches we lack.
    fn fetch_committed(&mut self) {
        let ahead: Vec<ReplicaId> = self
            .peers
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some_and(|s| s.last_executed > self.last_executed))
            .map(|(i, _)| ReplicaId(i as u16))
            .collect();
        let Some(from) = self.rotating_peer(&ahead) else {
            return;
        };
        let peer_last = self.peers[from.index()].map_or(SeqNum(0), |s| s.last_executed);
        let first = self.last_executed.next();
        let last = SeqNum(
            peer_last
                .0
                .min(self.last_executed.0 + self.cfg.catch_up_batches_max),
        );
        self.out.push(Output::FetchCommitted { from, first, last });
    }

    pub(super) fn on_status(&mut self, from: ReplicaId, status: Status) {
        let previous = self.peers[from.index()].replace(status);
        let served = self.last_served[from.index()];
        if served > 0 && self.now < served + self.cfg.status_interval_micros / 2 {
            return;
        }
        self.last_served[from.index()] = self.now;
        self.help_with_view(from, status);
        let stalled = previous.is_some_and(|p| p.last_executed == status.last_executed);
        if !stalled {
            return;
        }
        if status.stable < self.low {
            for signed in self.stable_certificate.clone() {
                self.send(from, signed);
            }
        }
        self.retransmit(from, status);
    }

    pub(super) fn send(&mut self, to: ReplicaId, message: crate::message::SignedMessage) {
        self.out.push(Output::Send {
            to,
            message: WireMessage::Signed(message),
        });
    }

    /// Sends a stalled peer what we hold for the slots above its last
    /// executed seq: the PRE-PREPARE, our own PREPARE and COMMIT, our own
    /// CHECKPOINTs. All are self-authenticating.
    fn retransmit(&mut self, to: ReplicaId, status: Status) {
        let id = self.cfg.id;
        let first = status.last_executed.max(self.low).next();
        let last = SeqNum(first.0 + self.cfg.retransmit_slots_max - 1);
        let mut messages = Vec::new();
        for slot in self.log.range(first..=last).map(|(_, s)| s) {
            if let Some((signed, ..)) = slot
                .pre_prepare
                .as_ref()
                .filter(|_| slot.pre_prepare_durable)
            {
                messages.push(signed.clone());
            }
            let own = |votes: &std::collections::BTreeMap<ReplicaId, (Vote, _)>, commit| {
                votes
                    .get(&id)
                    .map(|(v, s)| super::signed_vote(commit, *v, *s))
            };
            messages.extend(own(&slot.prepares, false));
            messages.extend(own(&slot.commits, true));
        }
        for seq in self.own_checkpoints.keys().filter(|s| **s > status.stable) {
            if let Some(signed) = self.checkpoints.get(seq).and_then(|v| v.get(&id)) {
                messages.push(signed.clone());
            }
        }
        for signed in messages {
            self.send(to, signed);
        }
    }

    /// A committed batch fetched while catching up: accepted if its
    /// certificate proves commitment (a PRE-PREPARE signed by its view's
    /// primary and a quorum of matching COMMITs), whatever the view.
    pub(super) fn on_committed_batch(&mut self, from: ReplicaId, batch: CommittedBatch) {
        let Message::PrePrepare(pp) = &batch.pre_prepare.message else {
            return self.reject(Some(from), Rejection::InvalidCertificate);
        };
        let seq = pp.seq;
        if seq <= self.last_executed {
            return self.reject(Some(from), Rejection::Stale);
        }
        if seq.0 > self.last_executed.0 + self.cfg.catch_up_batches_max {
            return self.reject(Some(from), Rejection::CatchUpOutOfRange);
        }
        if self.log.get(&seq).is_some_and(|s| s.committed) {
            return self.reject(Some(from), Rejection::Duplicate);
        }
        if self.check_batch_shape(&pp.batch).is_err() || !self.certificate_valid(&batch) {
            return self.reject(Some(from), Rejection::InvalidCertificate);
        }
        self.install_committed(from, batch);
        self.try_execute();
    }

    fn certificate_valid(&self, batch: &CommittedBatch) -> bool {
        let Message::PrePrepare(pp) = &batch.pre_prepare.message else {
            return false;
        };
        let digest = pp.batch.digest();
        let membership = &self.cfg.membership;
        let mut signers = BTreeSet::new();
        let mut items = Vec::new();
        let pp_bytes = batch.pre_prepare.message.signing_bytes(self.cfg.cluster);
        let primary = membership.primary(pp.view);
        let Some(key) = membership.key(primary) else {
            return false;
        };
        items.push((
            *key,
            batch.pre_prepare.message.domain(),
            pp_bytes,
            batch.pre_prepare.signature,
        ));
        for signed in batch.commits.iter().take(membership.n()) {
            let Message::Commit(v) = &signed.message else {
                return false;
            };
            if (v.view, v.seq, v.batch) != (pp.view, pp.seq, digest) || !signers.insert(v.replica) {
                return false;
            }
            let Some(key) = membership.key(v.replica) else {
                return false;
            };
            let bytes = signed.message.signing_bytes(self.cfg.cluster);
            items.push((*key, signed.message.domain(), bytes, signed.signature));
        }
        if signers.len() < self.quorum() {
            return false;
        }
        let refs: Vec<_> = items
            .iter()
            .map(|(k, d, b, s)| (*k, *d, &b[..], *s))
            .collect();
        keys::verify_many(&refs).iter().all(Result::is_ok)
    }

    fn install_committed(&mut self, from: ReplicaId, batch: CommittedBatch) {
        let Message::PrePrepare(pp) = batch.pre_prepare.message.clone() else {
            return;
        };
        let digest = pp.batch.digest();
        // A seq with a committed batch is never proposed again, should we
        // become primary before executing it (after a state transfer the
        // log above the installed checkpoint can hold such slots).
        self.next_seq = self.next_seq.max(pp.seq);
        let old = self.log.remove(&pp.seq).unwrap_or_default();
        let mut released = Vec::new();
        if let Some((_, b, _)) = &old.pre_prepare {
            self.unreference_batch(b, &mut released);
        }
        if !released.is_empty() {
            self.out.push(Output::Release { digests: released });
        }
        let missing = self.reference_batch(&pp.batch);
        let slot = self.log.entry(pp.seq).or_default();
        // A prepared certificate we held stays: our COMMIT may have been
        // one of the quorum, so our VIEW-CHANGEs must keep reporting it
        // (§4.4) until a checkpoint covers the seq.
        slot.prepared_proof = old.prepared_proof;
        slot.pre_prepare = Some((batch.pre_prepare, pp.batch, digest));
        // A certified slot needs no votes of ours.
        slot.pre_prepare_persisting = true;
        slot.pre_prepare_durable = true;
        slot.prepared_persisting = true;
        slot.commit_sent = true;
        slot.committed = true;
        for signed in batch.commits {
            if let Message::Commit(v) = signed.message {
                slot.commits.insert(v.replica, (v, signed.signature));
            }
        }
        if !missing.is_empty() {
            self.out.push(Output::FetchPayloads {
                digests: missing,
                hint: from,
            });
        }
    }
}
