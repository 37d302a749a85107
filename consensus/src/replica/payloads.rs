//! Payload bookkeeping (DESIGN.md step 4): which request payloads the
//! driver holds, which are waiting to be ordered, and which batches in the
//! log reference them. A payload is released to the driver only when no
//! waiting queue entry and no slot references it, so payloads of in-flight
//! batches stay pinned.

use super::{Payload, Replica};
use crate::io::Output;
use crate::message::Batch;
use crate::reject::Rejection;
use primitives::{Digest, SeqNum};

impl Replica {
    pub(super) fn on_request_ready(&mut self, digest: Digest) {
        if let Some(p) = self.payloads.get_mut(&digest) {
            if p.held {
                return self.reject(None, Rejection::Duplicate);
            }
            // A payload a batch was waiting for arrived through the mempool.
            p.held = true;
            return self.payload_arrived();
        }
        if self.queued >= self.cfg.mempool_digests_max {
            self.reject(None, Rejection::MempoolFull);
            self.out.push(Output::Release {
                digests: vec![digest],
            });
            return;
        }
        self.payloads.insert(
            digest,
            Payload {
                held: true,
                refs: 0,
                queued: true,
            },
        );
        self.queued += 1;
        self.queue.push_back(digest);
        if self.queue.len() > 2 * self.cfg.mempool_digests_max {
            // Drop the lazily-deleted entries so the queue stays bounded.
            let payloads = &self.payloads;
            self.queue
                .retain(|d| payloads.get(d).is_some_and(|p| p.queued));
        }
        self.try_propose();
    }

    pub(super) fn on_payload_fetched(&mut self, digest: Digest, valid: bool) {
        let wanted = self
            .payloads
            .get(&digest)
            .is_some_and(|p| p.refs > 0 && !p.held);
        if !wanted {
            self.reject(None, Rejection::UnsolicitedPayload);
            if valid && !self.payloads.contains_key(&digest) {
                self.out.push(Output::Release {
                    digests: vec![digest],
                });
            }
            return;
        }
        if !valid {
            // Another peer may still serve the genuine payload: the next
            // status tick asks again.
            return self.reject(None, Rejection::InvalidPayload);
        }
        if let Some(p) = self.payloads.get_mut(&digest) {
            p.held = true;
        }
        self.payload_arrived();
    }

    /// A missing payload arrived: slots waiting for it may move on.
    fn payload_arrived(&mut self) {
        let waiting: Vec<SeqNum> = self
            .log
            .iter()
            .filter(|(_, s)| s.pre_prepare.is_some() && !s.pre_prepare_persisting || s.committed)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in waiting {
            self.try_progress(seq);
        }
        self.try_execute();
    }

    /// Takes up to `max` waiting digests, oldest first.
    pub(super) fn dequeue(&mut self, max: usize) -> Vec<Digest> {
        let mut taken = Vec::new();
        while taken.len() < max {
            let Some(d) = self.queue.pop_front() else {
                break;
            };
            if let Some(p) = self.payloads.get_mut(&d).filter(|p| p.queued) {
                p.queued = false;
                self.queued -= 1;
                taken.push(d);
            }
        }
        taken
    }

    /// A batch entered the log: pin its payloads and take them off the
    /// waiting queue. Returns the ones not held.
    pub(super) fn reference_batch(&mut self, batch: &Batch) -> Vec<Digest> {
        let mut missing = Vec::new();
        for d in &batch.digests {
            let p = self.payloads.entry(*d).or_default();
            p.refs += 1;
            if p.queued {
                p.queued = false;
                self.queued -= 1;
            }
            if !p.held {
                missing.push(*d);
            }
        }
        missing
    }

    /// A batch left the log: release payloads nothing references any more.
    pub(super) fn unreference_batch(&mut self, batch: &Batch, released: &mut Vec<Digest>) {
        for d in &batch.digests {
            let Some(p) = self.payloads.get_mut(d) else {
                continue;
            };
            assert!(p.refs > 0, "payload reference count underflow");
            p.refs -= 1;
            if p.refs == 0 && !p.queued {
                if p.held {
                    released.push(*d);
                }
                self.payloads.remove(d);
            }
        }
    }

    /// A batch left the log without committing (a view change discarded
    /// it): payloads nothing references any more wait to be ordered again.
    pub(super) fn requeue_batch(&mut self, batch: &Batch) {
        for d in &batch.digests {
            let Some(p) = self.payloads.get_mut(d) else {
                continue;
            };
            assert!(p.refs > 0, "payload reference count underflow");
            p.refs -= 1;
            if p.refs == 0 && !p.queued {
                if p.held {
                    p.queued = true;
                    self.queued += 1;
                    self.queue.push_back(*d);
                } else {
                    self.payloads.remove(d);
                }
            }
        }
    }

    /// Digests referenced by the log whose payloads are missing, with the
    /// batch's seq (for re-fetching).
    pub(super) fn missing_payloads(&self) -> Vec<Digest> {
        let mut missing: Vec<Digest> = self
            .log
            .values()
            .filter_map(|s| s.pre_prepare.as_ref())
            .flat_map(|(_, b, _)| b.digests.iter())
            .filter(|d| self.payloads.get(*d).is_some_and(|p| !p.held))
            .copied()
            .collect();
        missing.sort();
        missing.dedup();
        missing
    }
}
