//! View changes (PBFT §4.4–4.5, signed variant): a replica whose pending
//! work sees no progress suspects the primary and sends VIEW-CHANGE with
//! its stable checkpoint certificate and prepared certificates; the new
//! primary collects a quorum and sends NEW-VIEW with the re-proposals
//! computed from them; every backup recomputes and checks them.

use super::{Deferred, Replica, Slot};
use crate::config::Mutation;
use crate::io::{Output, PersistRecord};
use crate::message::{
    Batch, Message, NewView, PrePrepare, PreparedProof, SignedMessage, Status, ViewChange,
    WireMessage,
};
use crate::reject::Rejection;
use primitives::{keys, Digest, HlcTimestamp, ReplicaId, SeqNum, ViewNumber};
use std::collections::{BTreeMap, BTreeSet};

/// What a valid VIEW-CHANGE says: its stable checkpoint and, per seq, the
/// prepared batch with the view it prepared in.
struct CheckedViewChange {
    stable: SeqNum,
    prepared: BTreeMap<SeqNum, (ViewNumber, Batch)>,
}

impl Replica {
    /// Called every status tick: pending work without execution progress
    /// for the (backed-off) timeout makes us suspect the primary (§4.5.2).
    pub(super) fn check_progress(&mut self) {
        if self.last_executed > self.progress_seq || !self.has_pending_work() {
            if self.last_executed > self.progress_seq && self.view_active {
                self.view_change_attempts = 0;
            }
            self.progress_seq = self.last_executed;
            self.progress_at = self.now;
            return;
        }
        if !self.view_active && !self.view_change_quorum() {
            // §4.5.2: the timer for view v+1 starts only once a quorum
            // asks for view v. A replica alone in its view change (resumed
            // after a pause, or cut off) would otherwise climb views nobody
            // joins, and the others, in a view below, could never hand it
            // their NEW-VIEW.
            self.progress_at = self.now;
            return;
        }
        let backoff = 1u64 << self.view_change_attempts.min(6);
        let timeout = self.cfg.view_change_timeout_micros.saturating_mul(backoff);
        if self.now.saturating_sub(self.progress_at) >= timeout {
            self.start_view_change(self.view.next());
        }
    }

    /// A quorum of replicas (us included) whose latest VIEW-CHANGE asks for
    /// our view or a later one.
    fn view_change_quorum(&self) -> bool {
        let asking = self
            .view_changes
            .values()
            .filter(|s| matches!(&s.message, Message::ViewChange(vc) if vc.view >= self.view))
            .count();
        asking >= self.quorum()
    }

    fn has_pending_work(&self) -> bool {
        if !self.view_active || self.queued > 0 || self.deadline_overdue() {
            return true;
        }
        self.log
            .range(self.last_executed.next()..)
            .any(|(_, s)| s.pre_prepare.is_some() || s.stale_pre_prepare.is_some())
    }

    fn start_view_change(&mut self, view: ViewNumber) {
        assert!(view > self.view, "view changes only move forward");
        self.view = view;
        self.view_active = false;
        self.view_change_attempts += 1;
        self.progress_at = self.now;
        self.batch_deadline = None;
        let prepared = self
            .log
            .range(self.low.next()..)
            .filter_map(|(_, s)| s.prepared_proof.clone())
            .collect();
        let vc = ViewChange {
            view,
            stable: self.low,
            stable_certificate: self.stable_certificate.clone(),
            prepared,
            replica: self.cfg.id,
        };
        let signed = self.sign(Message::ViewChange(vc));
        self.pending_view_change = Some(signed.clone());
        self.persist(
            PersistRecord::ViewChange(signed),
            Deferred::SendViewChange(view),
        );
    }

    pub(super) fn send_view_change(&mut self, view: ViewNumber) {
        if self.view != view || self.view_active {
            return;
        }
        if let Some(signed) = self.pending_view_change.take() {
            self.view_changes.insert(self.cfg.id, signed.clone());
            self.broadcast(signed);
        }
        self.try_new_view();
    }

    pub(super) fn on_view_change(
        &mut self,
        from: ReplicaId,
        vc: ViewChange,
        signed: SignedMessage,
    ) {
        if vc.view < self.view || (vc.view == self.view && self.view_active) {
            return self.reject(Some(from), Rejection::Stale);
        }
        if let Some(Message::ViewChange(held)) = self.view_changes.get(&from).map(|s| &s.message) {
            if held.view >= vc.view {
                return self.reject(Some(from), Rejection::Duplicate);
            }
        }
        if self.check_view_change(&vc, true).is_none() || !self.verify(from, &signed) {
            return self.reject(Some(from), Rejection::InvalidViewChange);
        }
        self.view_changes.insert(from, signed);
        self.join_view_change();
        self.try_new_view();
    }

    /// §4.5.2: f+1 replicas asking for views above ours mean at least one
    /// correct replica suspects the primary: join the smallest such view.
    fn join_view_change(&mut self) {
        let above: Vec<ViewNumber> = self
            .view_changes
            .values()
            .filter_map(|s| match &s.message {
                Message::ViewChange(vc) if vc.view > self.view => Some(vc.view),
                _ => None,
            })
            .collect();
        if above.len() >= self.cfg.membership.weak_quorum() {
            let smallest = *above.iter().min().expect("non-empty");
            self.start_view_change(smallest);
        }
    }

    /// Checks a VIEW-CHANGE's certificates (signatures included).
    /// `verify` is false for VIEW-CHANGEs whose signatures were checked
    /// already (our own store).
    fn check_view_change(&self, vc: &ViewChange, verify: bool) -> Option<CheckedViewChange> {
        let mut to_verify: Vec<&SignedMessage> = Vec::new();
        if vc.stable.0 > 0 {
            self.checkpoint_certificate(vc.stable, &vc.stable_certificate)?;
            to_verify.extend(vc.stable_certificate.iter());
        }
        if vc.prepared.len() as u64 > self.cfg.watermark_window {
            return None;
        }
        let mut prepared = BTreeMap::new();
        for proof in &vc.prepared {
            let (seq, view, batch) = self.check_prepared_proof(proof, vc)?;
            if prepared.insert(seq, (view, batch)).is_some() {
                return None;
            }
            to_verify.push(&proof.pre_prepare);
            to_verify.extend(proof.prepares.iter());
        }
        (!verify || self.verify_all(&to_verify)).then_some(CheckedViewChange {
            stable: vc.stable,
            prepared,
        })
    }

    /// The digest a quorum of distinct CHECKPOINTs for `seq` agree on
    /// (signatures are checked by the caller).
    fn checkpoint_certificate(&self, seq: SeqNum, certificate: &[SignedMessage]) -> Option<Digest> {
        let mut signers = BTreeSet::new();
        let mut digest = None;
        for signed in certificate.iter().take(self.cfg.membership.n()) {
            let Message::Checkpoint(c) = &signed.message else {
                return None;
            };
            if c.seq != seq || *digest.get_or_insert(c.app_digest) != c.app_digest {
                return None;
            }
            signers.insert(c.replica);
        }
        (signers.len() >= self.quorum()).then_some(digest?)
    }

    fn check_prepared_proof(
        &self,
        proof: &PreparedProof,
        vc: &ViewChange,
    ) -> Option<(SeqNum, ViewNumber, Batch)> {
        let Message::PrePrepare(pp) = &proof.pre_prepare.message else {
            return None;
        };
        let in_window = pp.seq > vc.stable && pp.seq.0 <= vc.stable.0 + self.cfg.watermark_window;
        if !in_window || pp.view >= vc.view || self.check_batch_shape(&pp.batch).is_err() {
            return None;
        }
        let digest = pp.batch.digest();
        let primary = self.cfg.membership.primary(pp.view);
        let mut signers = BTreeSet::new();
        for signed in proof.prepares.iter().take(self.cfg.membership.n()) {
            let Message::Prepare(v) = &signed.message else {
                return None;
            };
            if (v.view, v.seq, v.batch) != (pp.view, pp.seq, digest) || v.replica == primary {
                return None;
            }
            signers.insert(v.replica);
        }
        (signers.len() + 1 >= self.quorum()).then(|| (pp.seq, pp.view, pp.batch.clone()))
    }

    /// Verifies every message's signature against its signer's key, in
    /// one batch.
    fn verify_all(&self, messages: &[&SignedMessage]) -> bool {
        let mut items = Vec::with_capacity(messages.len());
        for signed in messages {
            let signer = signed.message.sender(&self.cfg.membership);
            let Some(key) = self.cfg.membership.key(signer) else {
                return false;
            };
            let bytes = signed.message.signing_bytes(self.cfg.cluster);
            items.push((*key, signed.message.domain(), bytes, signed.signature));
        }
        let refs: Vec<_> = items
            .iter()
            .map(|(k, d, b, s)| (*k, *d, &b[..], *s))
            .collect();
        keys::verify_many(&refs).iter().all(Result::is_ok)
    }

    /// The VIEW-CHANGEs for our (pending) view.
    fn view_changes_for(&self, view: ViewNumber) -> Vec<SignedMessage> {
        self.view_changes
            .values()
            .filter(|s| matches!(&s.message, Message::ViewChange(vc) if vc.view == view))
            .cloned()
            .collect()
    }

    /// The new primary: with a quorum of VIEW-CHANGEs, compute and persist
    /// the NEW-VIEW.
    fn try_new_view(&mut self) {
        let view = self.view;
        if self.view_active || self.cfg.membership.primary(view) != self.cfg.id {
            return;
        }
        let sent = self.new_view.as_ref().map(|s| &s.message);
        if matches!(sent, Some(Message::NewView(nv)) if nv.view == view) {
            // One NEW-VIEW per view: a second, from other VIEW-CHANGEs,
            // could re-propose differently (equivocation).
            return;
        }
        let vcs = self.view_changes_for(view);
        if vcs.len() < self.quorum() || !self.view_changes.contains_key(&self.cfg.id) {
            return;
        }
        let Some((_, _, reproposals)) = self.reproposals(view, &vcs, false) else {
            return;
        };
        let pre_prepares = reproposals
            .into_iter()
            .map(|pp| self.sign(Message::PrePrepare(pp)))
            .collect();
        let nv = NewView {
            view,
            view_changes: vcs,
            pre_prepares,
        };
        let signed = self.sign(Message::NewView(nv));
        self.new_view = Some(signed.clone());
        self.persist(PersistRecord::NewView(signed), Deferred::SendNewView(view));
    }

    /// The O set of §4.4: for each seq between the highest stable
    /// checkpoint in `vcs` and the highest prepared seq, the batch prepared
    /// in the highest view, or a null batch. Returns the stable seq, its
    /// certificate and the PRE-PREPAREs for `view`.
    fn reproposals(
        &self,
        view: ViewNumber,
        vcs: &[SignedMessage],
        verify: bool,
    ) -> Option<(SeqNum, Vec<SignedMessage>, Vec<PrePrepare>)> {
        let mut min_s = SeqNum(0);
        let mut certificate = Vec::new();
        let mut best: BTreeMap<SeqNum, (ViewNumber, Batch)> = BTreeMap::new();
        for signed in vcs {
            let Message::ViewChange(vc) = &signed.message else {
                return None;
            };
            let checked = self.check_view_change(vc, verify)?;
            if checked.stable > min_s {
                min_s = checked.stable;
                certificate = vc.stable_certificate.clone();
            }
            if self.cfg.mutation == Mutation::NewViewSkipsPreparedCheck {
                // The mutant: the prepared certificates are ignored.
                continue;
            }
            for (seq, (v, batch)) in checked.prepared {
                if best.get(&seq).is_none_or(|(held, _)| v > *held) {
                    best.insert(seq, (v, batch));
                }
            }
        }
        let max_s = best.keys().next_back().copied().unwrap_or(min_s).max(min_s);
        let null = Batch {
            digests: Vec::new(),
            batch_time: HlcTimestamp::default(),
        };
        let pre_prepares = (min_s.0 + 1..=max_s.0)
            .map(|n| PrePrepare {
                view,
                seq: SeqNum(n),
                batch: best
                    .get(&SeqNum(n))
                    .map_or(null.clone(), |(_, b)| b.clone()),
            })
            .collect();
        Some((min_s, certificate, pre_prepares))
    }

    pub(super) fn send_new_view(&mut self, view: ViewNumber) {
        if self.view != view || self.view_active {
            return;
        }
        let Some(signed) = self.new_view.clone() else {
            return;
        };
        self.broadcast(signed.clone());
        if let Message::NewView(nv) = signed.message {
            self.install_view(nv, true);
        }
    }

    pub(super) fn on_new_view(&mut self, from: ReplicaId, nv: NewView, signed: SignedMessage) {
        if nv.view < self.view || (nv.view == self.view && self.view_active) {
            return self.reject(Some(from), Rejection::Stale);
        }
        if !self.new_view_valid(&nv) || !self.verify(from, &signed) {
            return self.reject(Some(from), Rejection::InvalidNewView);
        }
        self.view = nv.view;
        self.new_view = Some(signed);
        self.install_view(nv, false);
    }

    /// §4.4: a quorum of valid VIEW-CHANGEs for the view from distinct
    /// replicas, and exactly the re-proposals they imply, signed by the new
    /// primary.
    fn new_view_valid(&self, nv: &NewView) -> bool {
        let mut signers = BTreeSet::new();
        for signed in nv.view_changes.iter().take(self.cfg.membership.n()) {
            match &signed.message {
                Message::ViewChange(vc) if vc.view == nv.view => signers.insert(vc.replica),
                _ => return false,
            };
        }
        if signers.len() < self.quorum() || signers.len() != nv.view_changes.len() {
            return false;
        }
        let refs: Vec<&SignedMessage> = nv.view_changes.iter().collect();
        if !self.verify_all(&refs) {
            return false;
        }
        let Some((_, _, expected)) = self.reproposals(nv.view, &nv.view_changes, true) else {
            return false;
        };
        let primary = self.cfg.membership.primary(nv.view);
        let given: Vec<&PrePrepare> = nv
            .pre_prepares
            .iter()
            .filter_map(|s| match &s.message {
                Message::PrePrepare(pp) => Some(pp),
                _ => None,
            })
            .collect();
        let signed_by_primary = nv
            .pre_prepares
            .iter()
            .all(|s| s.message.sender(&self.cfg.membership) == primary);
        let refs: Vec<&SignedMessage> = nv.pre_prepares.iter().collect();
        given.len() == nv.pre_prepares.len()
            && signed_by_primary
            && given.into_iter().eq(expected.iter())
            && self.verify_all(&refs)
    }

    /// Starts `nv.view`: discard uncommitted slots, adopt the highest
    /// stable checkpoint's certificate, accept the re-proposals (exempt
    /// from the clock-skew check: their times were checked when fresh).
    fn install_view(&mut self, nv: NewView, primary: bool) {
        self.installing_view = true;
        self.install_view_log(nv, primary);
        self.installing_view = false;
        self.try_propose();
    }

    fn install_view_log(&mut self, nv: NewView, primary: bool) {
        self.view = nv.view;
        self.view_active = true;
        self.progress_at = self.now;
        self.progress_seq = self.last_executed;
        self.view_changes
            .retain(|_, s| matches!(&s.message, Message::ViewChange(vc) if vc.view > nv.view));
        let Some((min_s, certificate, _)) = self.reproposals(nv.view, &nv.view_changes, false)
        else {
            return;
        };
        self.adopt_checkpoint_certificate(min_s, certificate);
        self.reset_uncommitted_slots();
        let mut max_s = min_s;
        for signed in nv.pre_prepares {
            let Message::PrePrepare(pp) = signed.message.clone() else {
                continue;
            };
            max_s = max_s.max(pp.seq);
            if pp.seq <= self.last_executed || pp.seq <= self.low {
                continue;
            }
            let _ = self.hlc.update(pp.batch.batch_time, self.now);
            let digest = pp.batch.digest();
            self.accept_pre_prepare(pp.seq, (signed, pp.batch, digest));
            if primary {
                let slot = self.log.entry(pp.seq).or_default();
                slot.pre_prepare_persisting = true;
                slot.pre_prepare_durable = true;
            }
            self.try_progress(pp.seq);
        }
        self.next_seq = max_s.max(self.last_executed).max(self.low);
        self.out.push(Output::ViewInstalled { view: nv.view });
    }

    /// Keeps a certificate for a checkpoint above ours, so it becomes
    /// stable once we execute (or catch up) to it.
    fn adopt_checkpoint_certificate(&mut self, seq: SeqNum, certificate: Vec<SignedMessage>) {
        if seq <= self.low {
            return;
        }
        for signed in certificate {
            if let Message::Checkpoint(c) = &signed.message {
                let signer = c.replica;
                self.checkpoints
                    .entry(seq)
                    .or_default()
                    .insert(signer, signed.clone());
                self.bound_checkpoints_of(signer);
            }
        }
        self.try_stabilize(seq);
    }

    /// Slots above what we executed start over in the new view; their
    /// prepared certificates are kept for later view changes, their
    /// payloads go back to the waiting queue unless re-proposed.
    fn reset_uncommitted_slots(&mut self) {
        let seqs: Vec<SeqNum> = self
            .log
            .range(self.last_executed.next()..)
            .map(|(s, _)| *s)
            .collect();
        for seq in seqs {
            let old = self.log.remove(&seq).unwrap_or_default();
            if let Some((_, batch, _)) = &old.pre_prepare {
                self.requeue_batch(batch);
            }
            self.log.insert(
                seq,
                Slot {
                    prepared_proof: old.prepared_proof,
                    ..Slot::default()
                },
            );
        }
    }

    /// Retransmission for view changes: a peer in an older view gets our
    /// NEW-VIEW (if we are in a view) or our VIEW-CHANGE (if we are
    /// changing).
    pub(super) fn help_with_view(&mut self, to: ReplicaId, status: Status) {
        let behind = status.view < self.view || (status.view == self.view && !status.view_active);
        if !behind {
            return;
        }
        let message = if self.view_active {
            self.new_view.clone()
        } else {
            self.view_changes.get(&self.cfg.id).cloned()
        };
        if let Some(signed) = message {
            self.out.push(Output::Send {
                to,
                message: WireMessage::Signed(signed),
            });
        }
    }
}
