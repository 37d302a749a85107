//! Crash recovery (DESIGN.md step 6, TOCS §4.4 "the replica's state must
//! survive a crash"): a replica rebuilt from what it persisted never votes
//! against it. It keeps its view (or view change), the PRE-PREPAREs it
//! accepted, its prepared certificates, its VIEW-CHANGE and NEW-VIEW, and
//! never reuses a seq it proposed; the rest it learns again from its peers.

use super::{Replica, Slot};
use crate::config::{Config, ConfigError};
use crate::io::PersistRecord;
use crate::message::{Message, PreparedProof, SignedMessage};
use primitives::{Digest, HlcTimestamp, SeqNum, ViewNumber};
use std::collections::BTreeMap;

/// What the driver recovered from its disk.
#[derive(Clone, Debug, Default)]
pub struct RecoveredState {
    /// Every durable record, in the order they were persisted.
    pub records: Vec<PersistRecord>,
    /// The latest stable checkpoint the driver stored
    /// ([`crate::Output::StableCheckpoint`]): seq, application digest and
    /// the quorum of signed CHECKPOINTs.
    pub stable: Option<(SeqNum, Digest, Vec<SignedMessage>)>,
    /// The last seq the application has applied (snapshot plus replay).
    pub last_executed: SeqNum,
    /// The application digest at each checkpoint seq above the stable one
    /// that the replay passed. Without them a replica that executed a
    /// checkpoint seq before a crash, but had not yet collected its
    /// quorum, could never make it stable: the peers' CHECKPOINTs are
    /// matched against its own digest, and a quiet cluster executes
    /// nothing that would compute it again.
    pub checkpoints: Vec<(SeqNum, Digest)>,
    /// Its effective time.
    pub last_time: HlcTimestamp,
}

impl Replica {
    /// A replica restarted from `state`. Feed it [`crate::Input::Start`]
    /// next; it re-sends its persisted votes and fetches what it lacks.
    pub fn restore(cfg: Config, state: RecoveredState) -> Result<Replica, ConfigError> {
        let mut r = Replica::new(cfg)?;
        if let Some((seq, _, certificate)) = state.stable {
            r.low = seq;
            r.stable_certificate = certificate;
        }
        r.last_executed = state.last_executed.max(r.low);
        r.last_applied = r.last_executed;
        r.last_time = state.last_time;
        r.next_seq = r.last_executed;
        r.progress_seq = r.last_executed;
        r.executed_at_last_tick = r.last_executed;
        r.restore_view(&state.records);
        // The driver may pass every pulse it replayed; those the stable
        // checkpoint covers are done already.
        for (seq, digest) in state.checkpoints {
            assert!(
                seq.0 > 0 && seq.0.is_multiple_of(r.cfg.checkpoint_interval),
                "the driver recovered a checkpoint digest at {seq:?}, not a checkpoint seq"
            );
            if seq > r.low && seq <= r.last_executed {
                r.record_own_checkpoint(seq, digest);
            }
        }
        // Durable PRE-PREPAREs by (view, seq), the new primary's
        // re-proposals included: a prepared certificate is rebuilt from
        // its own view's PRE-PREPARE, even for a slot executed since or
        // superseded by a later view (§4.4: VIEW-CHANGEs report every
        // prepared seq above the stable checkpoint).
        let mut pre_prepares = BTreeMap::new();
        for record in &state.records {
            for signed in pre_prepares_of(record) {
                if let Message::PrePrepare(pp) = &signed.message {
                    pre_prepares.insert((pp.view, pp.seq), signed.clone());
                }
            }
            r.restore_record(record, &pre_prepares);
        }
        Ok(r)
    }

    /// The highest view the records show; in it the replica is active
    /// unless its latest record there is its own VIEW-CHANGE.
    fn restore_view(&mut self, records: &[PersistRecord]) {
        let mut view = ViewNumber(0);
        let mut active = true;
        for record in records {
            let (v, is_view_change) = match record {
                PersistRecord::PrePrepare(s) => match &s.message {
                    Message::PrePrepare(pp) => (pp.view, false),
                    _ => continue,
                },
                PersistRecord::Prepared { view, .. } => (*view, false),
                PersistRecord::ViewChange(s) => match &s.message {
                    Message::ViewChange(vc) => (vc.view, true),
                    _ => continue,
                },
                PersistRecord::NewView(s) => match &s.message {
                    Message::NewView(nv) => (nv.view, false),
                    _ => continue,
                },
            };
            if v > view || (v == view && !is_view_change) {
                active = !is_view_change;
            }
            view = view.max(v);
        }
        self.view = view;
        self.view_active = active;
    }

    fn restore_record(
        &mut self,
        record: &PersistRecord,
        pre_prepares: &BTreeMap<(ViewNumber, SeqNum), SignedMessage>,
    ) {
        match record {
            PersistRecord::PrePrepare(signed) => self.restore_pre_prepare(signed),
            PersistRecord::Prepared {
                view,
                seq,
                batch,
                prepares,
            } => {
                let Some(signed) = pre_prepares.get(&(*view, *seq)) else {
                    return;
                };
                let matches = matches!(&signed.message,
                    Message::PrePrepare(pp) if pp.batch.digest() == *batch);
                if !matches || *seq <= self.low {
                    return;
                }
                let proof = PreparedProof {
                    pre_prepare: signed.clone(),
                    prepares: prepares.clone(),
                };
                let current = *view == self.view;
                let slot = self.log.entry(*seq).or_default();
                slot.prepared_persisting = current && slot.pre_prepare.is_some();
                slot.prepared_proof = Some(proof);
            }
            PersistRecord::ViewChange(signed) => {
                self.view_changes.insert(self.cfg.id, signed.clone());
            }
            PersistRecord::NewView(signed) => {
                if let Message::NewView(nv) = &signed.message {
                    self.next_seq = self.next_seq.max(max_seq(&nv.pre_prepares));
                }
                self.new_view = Some(signed.clone());
            }
        }
    }

    /// An accepted PRE-PREPARE of the current view holds its slot (no
    /// conflicting one is accepted); the primary never reuses its seq.
    fn restore_pre_prepare(&mut self, signed: &SignedMessage) {
        let Message::PrePrepare(pp) = &signed.message else {
            return;
        };
        if self.cfg.membership.primary(pp.view) == self.cfg.id {
            self.next_seq = self.next_seq.max(pp.seq);
        }
        if pp.seq <= self.last_executed || pp.seq.0 > self.low.0 + self.cfg.watermark_window {
            return;
        }
        let old = self.log.remove(&pp.seq).unwrap_or_default();
        if let Some((_, batch, _)) = &old.pre_prepare {
            let mut released = Vec::new();
            self.unreference_batch(batch, &mut released);
        }
        let current = pp.view == self.view;
        // Missing payloads are fetched at the first status tick.
        self.reference_batch(&pp.batch);
        let entry = (signed.clone(), pp.batch.clone(), pp.batch.digest());
        self.log.insert(
            pp.seq,
            Slot {
                pre_prepare: current.then_some(entry),
                pre_prepare_persisting: current,
                pre_prepare_durable: current,
                prepared_proof: old.prepared_proof,
                ..Slot::default()
            },
        );
        if !current {
            // Not ours to vote on any more, but its payloads stay pinned
            // only while a slot holds the batch.
            let mut released = Vec::new();
            self.unreference_batch(&pp.batch, &mut released);
        }
    }

    /// After a restart: send again the PREPAREs and COMMITs the records
    /// allow (the same votes as before the crash: the persisted ones).
    pub(super) fn resend_restored_votes(&mut self) {
        let seqs: Vec<(SeqNum, bool, bool)> = self
            .log
            .iter()
            .filter(|(_, s)| s.pre_prepare.is_some() && s.prepares.is_empty())
            .map(|(seq, s)| (*seq, s.pre_prepare_durable, s.prepared_persisting))
            .collect();
        let is_primary = self.is_primary();
        for (seq, durable, prepared) in seqs {
            if durable && !is_primary {
                self.send_prepare(seq);
            }
            if prepared {
                self.send_commit(seq);
            }
        }
    }
}

/// The PRE-PREPAREs a record holds: its own, or a NEW-VIEW's.
fn pre_prepares_of(record: &PersistRecord) -> Vec<&SignedMessage> {
    match record {
        PersistRecord::PrePrepare(signed) => vec![signed],
        PersistRecord::NewView(signed) => match &signed.message {
            Message::NewView(nv) => nv.pre_prepares.iter().collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn max_seq(pre_prepares: &[SignedMessage]) -> SeqNum {
    pre_prepares
        .iter()
        .filter_map(|s| match &s.message {
            Message::PrePrepare(pp) => Some(pp.seq),
            _ => None,
        })
        .max()
        .unwrap_or_default()
}
