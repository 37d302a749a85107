//! Protocol-level checkers that watch every message a replica sends, as an
//! omniscient observer would (issue 5, "prove the checkers bite"):
//!
//! - payload availability (DESIGN.md step 4): a replica sends PREPARE only
//!   for a batch whose payloads it holds;
//! - commit certificates: a batch is executed only with COMMITs from a
//!   real quorum (2f+1 distinct replicas), whatever the core believes;
//! - agreement on commitment: no two batches commit at one seq;
//! - view changes (PBFT §4.4): a NEW-VIEW re-proposes every batch that
//!   committed above its stable checkpoint, unchanged.

use super::Sim;
use consensus::{ExecuteBatch, Message, NewView, SignedMessage, WireMessage};
use primitives::{Digest, SeqNum, ViewNumber};
use std::collections::{BTreeMap, BTreeSet};

/// What the observer learned from the messages sent so far in a run.
#[derive(Debug, Default)]
pub(super) struct Observed {
    /// Batch digest → its request digests, from every PRE-PREPARE sent.
    batches: BTreeMap<Digest, Vec<Digest>>,
    /// COMMIT senders by `(view, seq, batch digest)`.
    commit_votes: BTreeMap<(ViewNumber, SeqNum, Digest), BTreeSet<usize>>,
    /// Batches a real quorum committed, by seq, with the view they
    /// committed in (the first).
    committed: BTreeMap<SeqNum, (Digest, ViewNumber)>,
    /// Views whose NEW-VIEW was checked (retransmissions are not again).
    new_views: BTreeSet<ViewNumber>,
}

impl Sim {
    /// Looks at a message replica `i` sends.
    pub(super) fn observe(&mut self, i: usize, message: &WireMessage) {
        let WireMessage::Signed(signed) = message else {
            return;
        };
        match &signed.message {
            Message::PrePrepare(pp) => {
                let digests = pp.batch.digests.clone();
                self.observed.batches.insert(pp.batch.digest(), digests);
            }
            Message::Prepare(v) if v.replica.index() == i => self.check_prepare(i, v.seq, v.batch),
            Message::Commit(v) if v.replica.index() == i => {
                self.observe_commit(i, v.view, v.seq, v.batch)
            }
            Message::NewView(nv) if self.membership.primary(nv.view).index() == i => {
                self.check_new_view(i, nv)
            }
            _ => {}
        }
    }

    /// What a Byzantine replica (or a twin) really sent: recorded for the
    /// quorum counts, never checked (it may break every rule).
    pub(super) fn observe_sent(&mut self, i: usize, message: &WireMessage) {
        let WireMessage::Signed(signed) = message else {
            return;
        };
        match &signed.message {
            Message::PrePrepare(pp) => {
                let digests = pp.batch.digests.clone();
                self.observed.batches.insert(pp.batch.digest(), digests);
            }
            Message::Commit(v) if v.replica.index() == i => {
                self.observe_commit(i, v.view, v.seq, v.batch)
            }
            _ => {}
        }
    }

    /// DESIGN.md step 4: a PREPARE vouches that the sender holds and has
    /// validated every payload of the batch.
    fn check_prepare(&mut self, i: usize, seq: SeqNum, batch: Digest) {
        let Some(digests) = self.observed.batches.get(&batch) else {
            return;
        };
        let node = &self.nodes[i];
        let missing = digests
            .iter()
            .find(|d| !node.mempool.contains_key(d) && !node.disk.payloads.contains_key(d));
        if let Some(d) = missing {
            let what =
                format!("replica {i} sent PREPARE for {seq:?} without holding payload {d:?}");
            self.violation(what);
        }
    }

    fn observe_commit(&mut self, i: usize, view: ViewNumber, seq: SeqNum, batch: Digest) {
        let voters = self
            .observed
            .commit_votes
            .entry((view, seq, batch))
            .or_default();
        voters.insert(i);
        if voters.len() < self.membership.quorum() {
            return;
        }
        let (agreed, _) = *self.observed.committed.entry(seq).or_insert((batch, view));
        if agreed != batch {
            self.violation(format!(
                "agreement: {agreed:?} and {batch:?} both committed at {seq:?}"
            ));
        }
    }

    /// §4.4: every batch committed in an earlier view above the NEW-VIEW's
    /// stable checkpoint is re-proposed unchanged (a quorum of
    /// VIEW-CHANGEs includes a correct replica that prepared it).
    fn check_new_view(&mut self, i: usize, nv: &NewView) {
        if !self.observed.new_views.insert(nv.view) {
            return;
        }
        let stable = nv
            .view_changes
            .iter()
            .filter_map(|s| match &s.message {
                Message::ViewChange(vc) => Some(vc.stable),
                _ => None,
            })
            .max()
            .unwrap_or_default();
        let proposed: BTreeMap<SeqNum, Digest> = nv
            .pre_prepares
            .iter()
            .filter_map(|s: &SignedMessage| match &s.message {
                Message::PrePrepare(pp) => Some((pp.seq, pp.batch.digest())),
                _ => None,
            })
            .collect();
        let dropped: Vec<SeqNum> = self
            .observed
            .committed
            .range(stable.next()..)
            .filter(|(seq, (d, view))| *view < nv.view && proposed.get(seq) != Some(d))
            .map(|(seq, _)| *seq)
            .collect();
        if let Some(seq) = dropped.first() {
            self.violation(format!(
                "replica {i}'s NEW-VIEW for {:?} drops the batch committed at {seq:?}",
                nv.view
            ));
        }
    }

    /// An executed batch carries COMMITs from a real quorum of distinct
    /// replicas for its PRE-PREPARE (what an auditor checks).
    pub(super) fn check_certificate(&mut self, i: usize, batch: &ExecuteBatch) {
        let Message::PrePrepare(pp) = &batch.certificate.pre_prepare.message else {
            return;
        };
        let digest = pp.batch.digest();
        let signers: BTreeSet<_> = batch
            .certificate
            .commits
            .iter()
            .filter_map(|s| match &s.message {
                Message::Commit(v) if (v.view, v.seq, v.batch) == (pp.view, pp.seq, digest) => {
                    Some(v.replica)
                }
                _ => None,
            })
            .collect();
        let quorum = self.membership.quorum();
        if signers.len() < quorum {
            let votes: Vec<String> = batch
                .certificate
                .commits
                .iter()
                .map(|s| match &s.message {
                    Message::Commit(v) => format!("{:?}@{:?}", v.replica, v.view),
                    _ => "?".into(),
                })
                .collect();
            self.violation(format!(
                "replica {i} executed {:?} ({:?}) with {} of {quorum} COMMITs: {votes:?}",
                batch.seq,
                pp.view,
                signers.len()
            ));
        }
    }
}
