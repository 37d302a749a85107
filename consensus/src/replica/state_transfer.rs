//! State transfer (PBFT §4.3 and TOCS §5.3.2, "a replica that is behind
//! fetches the state of a stable checkpoint"): when a quorum certified a
//! checkpoint above what this replica applied and batch-by-batch catch-up
//! makes no progress (the peers collected the log it needs), the replica
//! asks the driver for the certified state. The transfer itself — chunks,
//! checked one by one against the certified digest, from whichever peer
//! serves them correctly — is the driver's (the core never sees
//! application state); the core only names the target and, once told the
//! state is installed, continues from it.

use super::Replica;
use crate::io::Output;
use crate::message::{Checkpoint, Message, SignedMessage};
use crate::reject::Rejection;
use primitives::{keys, Digest, HlcTimestamp, ReplicaId, SeqNum, Signature};
use std::collections::BTreeSet;

impl Replica {
    /// The checkpoint to transfer to: the highest above our state that a
    /// quorum certified here, or — if higher — the stable checkpoint that
    /// f + 1 peers report in STATUS (so at least one correct replica has
    /// it; a Byzantine peer alone cannot send us chasing a seq that does
    /// not exist). The second covers a replica that cannot assemble the
    /// quorum itself because a liar's conflicting vote got there first.
    fn transfer_target(&self) -> Option<(SeqNum, Option<Digest>)> {
        let from = self.last_applied.next();
        let seqs: Vec<SeqNum> = self.checkpoints.range(from..).map(|(s, _)| *s).collect();
        let certified = seqs
            .into_iter()
            .rev()
            .find_map(|seq| self.certified(seq).map(|(digest, _)| (seq, Some(digest))));
        let mut stables: Vec<SeqNum> = self.peers.iter().flatten().map(|s| s.stable).collect();
        stables.sort_unstable_by(|a, b| b.cmp(a));
        let reported = stables
            .get(self.cfg.membership.f())
            .copied()
            .filter(|s| *s > self.last_applied)
            .map(|s| (s, None));
        match (certified, reported) {
            (Some(c), Some(r)) if r.0 > c.0 => Some(r),
            (Some(c), _) => Some(c),
            (None, r) => r,
        }
    }

    /// At a status tick without progress: after `state_transfer_after_ticks`
    /// of them behind a certified checkpoint, ask for the state (and again
    /// every as many ticks). Ticks count only while the target is known,
    /// so an idle replica that learns of a checkpoint first tries the
    /// cheaper batch-by-batch catch-up.
    pub(super) fn maybe_fetch_state(&mut self) {
        let Some((seq, app_digest)) = self.transfer_target() else {
            self.stalled_ticks = 0;
            return;
        };
        self.stalled_ticks = self.stalled_ticks.saturating_add(1);
        if self.stalled_ticks < self.cfg.state_transfer_after_ticks {
            return;
        }
        self.stalled_ticks = 0;
        self.out.push(Output::FetchState { seq, app_digest });
    }

    /// The driver installed the state certified at `seq`.
    pub(super) fn on_state_installed(
        &mut self,
        seq: SeqNum,
        app_digest: Digest,
        time: HlcTimestamp,
        certificate: Vec<(ReplicaId, Signature)>,
    ) {
        if seq <= self.last_executed || seq <= self.low {
            return self.reject(None, Rejection::Stale);
        }
        let certificate = match self.certified(seq) {
            Some((digest, held)) if digest == app_digest => held,
            _ => match self.check_certificate(seq, app_digest, &certificate) {
                Some(signed) => signed,
                None => return self.reject(None, Rejection::StateUncertified),
            },
        };
        let digest = app_digest;
        self.last_executed = seq;
        self.last_applied = seq;
        self.last_time = self.last_time.max(time);
        self.executed_at_last_tick = seq;
        self.stalled_ticks = 0;
        self.own_checkpoints.insert(seq, digest);
        // Checkpoints below `seq` we signed were never certified here, but
        // we did not compute the ones we skipped: only those we signed
        // become orphans.
        self.make_stable(seq, digest, certificate);
        self.check_progress();
        self.try_execute();
    }

    /// The CHECKPOINT messages of a served certificate, if a quorum of
    /// distinct members signed `(seq, app_digest)`.
    fn check_certificate(
        &self,
        seq: SeqNum,
        app_digest: Digest,
        certificate: &[(ReplicaId, Signature)],
    ) -> Option<Vec<SignedMessage>> {
        let membership = &self.cfg.membership;
        let mut signers = BTreeSet::new();
        let mut signed = Vec::new();
        for (replica, signature) in certificate.iter().take(membership.n()) {
            membership.key(*replica)?;
            if !signers.insert(*replica) {
                return None;
            }
            signed.push(SignedMessage {
                message: Message::Checkpoint(Checkpoint {
                    seq,
                    app_digest,
                    replica: *replica,
                }),
                signature: *signature,
            });
        }
        if signers.len() < self.quorum() {
            return None;
        }
        let items: Vec<_> = signed
            .iter()
            .map(|s| {
                let signer = s.message.sender(membership);
                let key = *membership.key(signer).expect("checked member");
                (
                    key,
                    s.message.domain(),
                    s.message.signing_bytes(self.cfg.cluster),
                    s.signature,
                )
            })
            .collect();
        let refs: Vec<_> = items
            .iter()
            .map(|(k, d, b, s)| (*k, *d, &b[..], *s))
            .collect();
        keys::verify_many(&refs)
            .iter()
            .all(Result::is_ok)
            .then_some(signed)
    }
}
