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
use crate::reject::Rejection;
use primitives::{Digest, HlcTimestamp, SeqNum};

impl Replica {
    /// The highest checkpoint above our state that a quorum certified.
    fn transfer_target(&self) -> Option<(SeqNum, Digest)> {
        let from = self.last_applied.next();
        let seqs: Vec<SeqNum> = self.checkpoints.range(from..).map(|(s, _)| *s).collect();
        seqs.into_iter()
            .rev()
            .find_map(|seq| self.certified(seq).map(|(digest, _)| (seq, digest)))
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
    ) {
        if seq <= self.last_executed || seq <= self.low {
            return self.reject(None, Rejection::Stale);
        }
        let Some((digest, certificate)) = self.certified(seq) else {
            return self.reject(None, Rejection::StateUncertified);
        };
        if digest != app_digest {
            return self.reject(None, Rejection::StateUncertified);
        }
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
}
