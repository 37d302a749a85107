//! Checkpoints and garbage collection (PBFT §4.3): every `K` seqs each
//! replica signs the application's digest; a quorum of matching
//! CHECKPOINTs makes it stable, the log below it is discarded and the
//! watermarks move.

use super::{Orphan, Replica};
use crate::io::Output;
use crate::message::{Checkpoint, Message, SignedMessage};
use crate::reject::Rejection;
use primitives::{Digest, ReplicaId, SeqNum};
use std::collections::BTreeMap;

impl Replica {
    /// Our CHECKPOINT at `seq`, signed and kept with the others' (the
    /// signature is deterministic, so recovery re-signs the same message
    /// for a seq executed in an earlier life): peers' CHECKPOINTs are
    /// matched against it, and STATUS resends it.
    pub(super) fn record_own_checkpoint(
        &mut self,
        seq: SeqNum,
        app_digest: Digest,
    ) -> SignedMessage {
        self.own_checkpoints.insert(seq, app_digest);
        let checkpoint = Checkpoint {
            seq,
            app_digest,
            replica: self.cfg.id,
        };
        let signed = self.sign(Message::Checkpoint(checkpoint));
        self.checkpoints
            .entry(seq)
            .or_default()
            .insert(self.cfg.id, signed.clone());
        signed
    }

    pub(super) fn on_executed(&mut self, seq: SeqNum, app_digest: Digest) {
        if seq != self.last_applied.next() || seq > self.last_executed {
            return self.reject(None, Rejection::ExecutedOutOfOrder);
        }
        self.last_applied = seq;
        if !seq.0.is_multiple_of(self.cfg.checkpoint_interval) {
            return;
        }
        let signed = self.record_own_checkpoint(seq, app_digest);
        self.broadcast(signed);
        self.try_stabilize(seq);
    }

    fn checkpoint_aligned(&self, seq: SeqNum) -> bool {
        seq.0 != 0 && seq.0.is_multiple_of(self.cfg.checkpoint_interval)
    }

    /// The cheap checks a CHECKPOINT above the low watermark passes before
    /// its signature is worth checking (also used to pick what
    /// [`Replica::preverify`] checks).
    pub(super) fn checkpoint_admissible(
        &self,
        from: ReplicaId,
        seq: SeqNum,
        message: &Message,
    ) -> Result<(), Rejection> {
        if !self.checkpoint_aligned(seq) {
            return Err(Rejection::CheckpointMisaligned);
        }
        match self.checkpoints.get(&seq).and_then(|v| v.get(&from)) {
            Some(held) if held.message == *message => Err(Rejection::Duplicate),
            Some(_) => Err(Rejection::ConflictingCheckpoint),
            None => Ok(()),
        }
    }

    pub(super) fn on_checkpoint(&mut self, from: ReplicaId, c: Checkpoint, signed: SignedMessage) {
        if self.checkpoint_aligned(c.seq) && c.seq <= self.low {
            return self.on_orphan_vote(from, c, signed);
        }
        if let Err(reason) = self.checkpoint_admissible(from, c.seq, &signed.message) {
            return self.reject(Some(from), reason);
        }
        if !self.verify(from, &signed) {
            return;
        }
        self.checkpoints
            .entry(c.seq)
            .or_default()
            .insert(from, signed);
        self.bound_checkpoints_of(from);
        self.try_stabilize(c.seq);
    }

    /// Keeps at most `checkpoint_votes_per_peer_max` votes of one peer,
    /// dropping its lowest: a peer cannot grow our memory by signing
    /// checkpoints far ahead.
    pub(super) fn bound_checkpoints_of(&mut self, from: ReplicaId) {
        let seqs: Vec<SeqNum> = self
            .checkpoints
            .iter()
            .filter(|(_, votes)| votes.contains_key(&from))
            .map(|(seq, _)| *seq)
            .collect();
        let excess = seqs
            .len()
            .saturating_sub(self.cfg.checkpoint_votes_per_peer_max);
        for seq in seqs.into_iter().take(excess) {
            if let Some(votes) = self.checkpoints.get_mut(&seq) {
                votes.remove(&from);
                if votes.is_empty() {
                    self.checkpoints.remove(&seq);
                }
            }
        }
    }

    /// The digest a quorum signed at `seq`, with its signers.
    pub(super) fn certified(&self, seq: SeqNum) -> Option<(Digest, Vec<SignedMessage>)> {
        let votes = self.checkpoints.get(&seq)?;
        let mut by_digest: BTreeMap<Digest, Vec<SignedMessage>> = BTreeMap::new();
        for signed in votes.values() {
            if let Message::Checkpoint(c) = &signed.message {
                by_digest
                    .entry(c.app_digest)
                    .or_default()
                    .push(signed.clone());
            }
        }
        by_digest
            .into_iter()
            .find(|(_, signers)| signers.len() >= self.quorum())
    }

    pub(super) fn try_stabilize(&mut self, seq: SeqNum) {
        let Some((digest, certificate)) = self.certified(seq) else {
            return;
        };
        if self.last_applied < seq {
            // We are behind a certified checkpoint: STATUS-driven catch-up
            // fetches the committed batches up to it.
            return;
        }
        match self.own_checkpoints.get(&seq) {
            Some(own) if *own == digest => self.make_stable(seq, digest, certificate),
            Some(own) if self.diverged_reported < seq => {
                self.diverged_reported = seq;
                let local = *own;
                self.out.push(Output::StateDiverged {
                    seq,
                    local,
                    certified: digest,
                });
            }
            _ => {}
        }
    }

    /// `seq` is stable: discard the log, checkpoints and payload pins at or
    /// below it and move the low watermark (§4.3).
    pub(super) fn make_stable(
        &mut self,
        seq: SeqNum,
        digest: Digest,
        certificate: Vec<SignedMessage>,
    ) {
        assert!(seq > self.low, "stable checkpoints only move forward");
        self.adopt_orphans(seq);
        self.low = seq;
        self.next_seq = self.next_seq.max(seq);
        let keep = self.log.split_off(&seq.next());
        let gone = std::mem::replace(&mut self.log, keep);
        let mut released = Vec::new();
        for slot in gone.into_values() {
            if let Some((_, batch, _)) = &slot.pre_prepare {
                self.unreference_batch(batch, &mut released);
            }
        }
        self.checkpoints = self.checkpoints.split_off(&seq.next());
        self.own_checkpoints = self.own_checkpoints.split_off(&seq.next());
        let signatures = certificate
            .iter()
            .map(|s| (s.message.sender(&self.cfg.membership), s.signature))
            .collect();
        self.stable_certificate = certificate;
        if !released.is_empty() {
            self.out.push(Output::Release { digests: released });
        }
        self.out.push(Output::StableCheckpoint {
            seq,
            app_digest: digest,
            certificate: signatures,
        });
        self.try_propose();
    }

    /// Own checkpoints below `seq` (about to become stable) never got
    /// their quorum: keep collecting votes for them, so their pulses still
    /// get certificates (a lockchain without gaps).
    fn adopt_orphans(&mut self, seq: SeqNum) {
        let skipped: Vec<(SeqNum, Digest)> = self
            .own_checkpoints
            .range(..seq)
            .map(|(s, d)| (*s, *d))
            .collect();
        for (s, digest) in skipped {
            let votes = self
                .checkpoints
                .get(&s)
                .map(|v| {
                    v.iter()
                        .filter(|(_, m)| {
                            matches!(&m.message, Message::Checkpoint(c) if c.app_digest == digest)
                        })
                        .map(|(r, m)| (*r, m.clone()))
                        .collect()
                })
                .unwrap_or_default();
            self.orphans.insert(s, Orphan { digest, votes });
        }
        while self.orphans.len() > self.cfg.orphan_checkpoints_max {
            self.orphans.pop_first();
        }
    }

    /// A CHECKPOINT at or below the low watermark: a vote for an orphan,
    /// or stale.
    fn on_orphan_vote(&mut self, from: ReplicaId, c: Checkpoint, signed: SignedMessage) {
        let Some(orphan) = self.orphans.get(&c.seq) else {
            return self.reject(Some(from), Rejection::Stale);
        };
        if orphan.votes.contains_key(&from) {
            return self.reject(Some(from), Rejection::Duplicate);
        }
        if orphan.digest != c.app_digest {
            return self.reject(Some(from), Rejection::ConflictingCheckpoint);
        }
        if !self.verify(from, &signed) {
            return;
        }
        let quorum = self.quorum();
        let orphan = self.orphans.get_mut(&c.seq).expect("checked");
        orphan.votes.insert(from, signed);
        if orphan.votes.len() < quorum {
            return;
        }
        let orphan = self.orphans.remove(&c.seq).expect("checked");
        let certificate = orphan
            .votes
            .into_iter()
            .map(|(r, m)| (r, m.signature))
            .collect();
        self.out.push(Output::CheckpointCertified {
            seq: c.seq,
            app_digest: orphan.digest,
            certificate,
        });
    }

    /// The driver vouches for a skipped checkpoint (see
    /// [`crate::Input::EndorseCheckpoint`]): sign it and collect votes.
    pub(super) fn on_endorse_checkpoint(&mut self, seq: SeqNum, digest: Digest) {
        let aligned = seq.0 > 0 && seq.0.is_multiple_of(self.cfg.checkpoint_interval);
        if !aligned || seq > self.low || self.orphans.contains_key(&seq) {
            return;
        }
        let id = self.cfg.id;
        let signed = self.sign(Message::Checkpoint(Checkpoint {
            seq,
            app_digest: digest,
            replica: id,
        }));
        let votes = BTreeMap::from([(id, signed.clone())]);
        self.orphans.insert(seq, Orphan { digest, votes });
        while self.orphans.len() > self.cfg.orphan_checkpoints_max {
            self.orphans.pop_first();
        }
        self.broadcast(signed);
    }

    /// Each status tick: our own votes for orphans go out again (a lost
    /// CHECKPOINT is otherwise never resent once a later one is stable).
    pub(super) fn resend_orphan_votes(&mut self) {
        let id = self.cfg.id;
        let own: Vec<SignedMessage> = self
            .orphans
            .values()
            .filter_map(|o| o.votes.get(&id).cloned())
            .collect();
        for signed in own {
            self.broadcast(signed);
        }
    }
}
