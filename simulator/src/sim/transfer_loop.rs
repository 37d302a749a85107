//! Chunked state transfer in the loop (issue 4): replicas collect their
//! committed batches below each stable checkpoint, keeping a snapshot of
//! the application there, so a replica that falls behind a collected log
//! must fetch the certified state.
//!
//! The receiver asks one peer at a time for its snapshot at or above the
//! checkpoint consensus named (`Output::FetchState`). The offer's pulse
//! certificate must verify and its manifest must hash to the certified
//! header's state digest; then chunks come one at a time, each checked
//! before the next is asked for: an executed-set chunk against its digest
//! in the manifest, a qlock chunk by [`qlock::Installer`]. Under the
//! `corrupt-chunk` fault, servers flip a byte in some chunks they serve;
//! each costs one chunk (counted) and the receiver moves to another peer.

use super::{Event, NetMsg, Sim};
use crate::node::{App, SnapshotManifest};
use crate::options::FaultKind;
use consensus::Input;
use lockchain::PulseCertificate;
use primitives::{codec, Digest, Domain, ReplicaId, SeqNum};
use rand::Rng;
use std::collections::BTreeSet;

/// How long a receiver waits for one answer before asking another peer.
const TRANSFER_STEP_MICROS: u64 = 200_000;

/// A state transfer in progress at one replica.
#[derive(Debug)]
pub struct Transfer {
    /// The lowest checkpoint wanted.
    target: SeqNum,
    /// The peer asked last, and when its answer is overdue.
    peer: usize,
    deadline: u64,
    /// Bumped on every request, so a stale timeout is ignored.
    attempt: u64,
    /// The checked offer and what has been accepted of it.
    offer: Option<Offer>,
}

#[derive(Debug)]
struct Offer {
    pulse: PulseCertificate,
    manifest: SnapshotManifest,
    executed: BTreeSet<Digest>,
    /// Executed-set chunks accepted so far (qlock's count in `installer`).
    executed_done: usize,
    installer: Option<qlock::Installer>,
}

impl Offer {
    fn next_chunk(&self) -> Option<u32> {
        if self.executed_done < self.manifest.executed.len() {
            return Some(self.executed_done as u32);
        }
        let base = self.manifest.executed.len() as u32;
        self.installer
            .as_ref()
            .and_then(|i| i.next_chunk())
            .map(|c| base + c)
    }

    /// Checks chunk `index` and keeps it; false if it does not match.
    fn accept(&mut self, index: u32, bytes: Vec<u8>) -> bool {
        if Some(index) != self.next_chunk() {
            return false;
        }
        let executed = self.manifest.executed.len();
        if (index as usize) < executed {
            if Digest::of(Domain::Test, &bytes) != self.manifest.executed[index as usize] {
                return false;
            }
            let Ok(digests) = codec::decode::<Vec<Digest>>(&bytes, codec::FRAME_BYTES_MAX) else {
                return false;
            };
            self.executed.extend(digests);
            self.executed_done += 1;
            return true;
        }
        match &mut self.installer {
            Some(installer) => installer.accept(index - executed as u32, bytes).is_ok(),
            None => false,
        }
    }
}

impl Sim {
    /// Consensus at replica `i` asks for the state certified at `seq`.
    pub(super) fn start_transfer(&mut self, i: usize, seq: SeqNum) {
        let node = &self.nodes[i];
        if node.core.last_executed() >= seq
            || node.transfer.as_ref().is_some_and(|t| t.target >= seq)
        {
            return;
        }
        self.trace(format!("{} transfer-start {i} {}", self.now, seq.0));
        self.nodes[i].transfer = Some(Transfer {
            target: seq,
            peer: i,
            deadline: 0,
            attempt: 0,
            offer: None,
        });
        self.transfer_next_peer(i);
    }

    /// Asks the next peer (round robin from a random start) for what we
    /// still need: the offer, or the snapshot we are already fetching.
    fn transfer_next_peer(&mut self, i: usize) {
        let n = self.nodes.len();
        let step = self.rng.gen_range(1..n);
        let now = self.now;
        let Some(t) = self.nodes[i].transfer.as_mut() else {
            return;
        };
        t.peer = (t.peer + step) % n;
        if t.peer == i {
            t.peer = (t.peer + 1) % n;
        }
        t.attempt += 1;
        t.deadline = now + TRANSFER_STEP_MICROS;
        let seq = t
            .offer
            .as_ref()
            .map_or(t.target, |o| o.pulse.header.last_seq);
        let (peer, attempt) = (t.peer, t.attempt);
        self.trace(format!("{now} transfer-ask {i} {peer} {} {attempt}", seq.0));
        self.send(Some(i), peer, NetMsg::FetchSnapshot(seq));
        self.schedule(
            now + TRANSFER_STEP_MICROS,
            Event::TransferTimeout(i, attempt),
        );
    }

    /// An answer did not come in time.
    pub(super) fn transfer_timeout(&mut self, i: usize, attempt: u64) {
        let overdue = self.nodes[i]
            .transfer
            .as_ref()
            .is_some_and(|t| t.attempt == attempt && t.deadline <= self.now);
        if overdue && self.nodes[i].up {
            self.transfer_next_peer(i);
        }
    }

    /// Replica `to` serves its snapshot at or above `seq` to `from`.
    pub(super) fn serve_snapshot(&mut self, from: usize, to: usize, seq: SeqNum) {
        let node = &self.nodes[to];
        let offer = node.disk.snapshot.as_ref().and_then(|s| {
            let pulse = node.disk.lockchain.get(&s.header.pulse)?;
            (s.header.last_seq >= seq).then(|| (pulse.clone(), s.manifest.clone()))
        });
        let have = node.disk.snapshot.as_ref().map(|s| s.header.last_seq);
        self.trace(format!(
            "{} snapshot-asked {to} by {from} for {} have {have:?} offer {}",
            self.now,
            seq.0,
            offer.is_some()
        ));
        if let Some((pulse, manifest)) = offer {
            self.send(
                Some(to),
                from,
                NetMsg::SnapshotOffer(Box::new((pulse, manifest))),
            );
        }
    }

    /// Replica `to` serves chunk `index` of its snapshot at `seq`.
    pub(super) fn serve_chunk(&mut self, from: usize, to: usize, seq: SeqNum, index: u32) {
        let chunk = self.nodes[to]
            .disk
            .snapshot
            .as_ref()
            .filter(|s| s.header.last_seq == seq)
            .and_then(|s| s.chunks.get(index as usize).cloned());
        let Some(mut bytes) = chunk else {
            return;
        };
        if !self.healed
            && self.opts.faults.has(FaultKind::CorruptChunk)
            && !bytes.is_empty()
            && self.rng.gen_bool(0.3)
        {
            let at = self.rng.gen_range(0..bytes.len());
            bytes[at] ^= 1 << self.rng.gen_range(0..8);
            self.count_fault("corrupt-chunk");
        }
        self.send(Some(to), from, NetMsg::Chunk(seq, index, bytes));
    }

    /// An offer at replica `to`: checked before any chunk is asked for.
    pub(super) fn on_snapshot_offer(
        &mut self,
        from: usize,
        to: usize,
        pulse: PulseCertificate,
        manifest: SnapshotManifest,
    ) {
        let Some(t) = self.nodes[to].transfer.as_ref() else {
            return;
        };
        if t.peer != from {
            return;
        }
        let header = pulse.header;
        let fetching_same = t.offer.as_ref().is_some_and(|o| o.pulse.header == header);
        if header.last_seq < t.target {
            return self.transfer_next_peer(to);
        }
        if !fetching_same {
            let sound = self.verifier.verify_pulse_certificate(&pulse).is_ok()
                && manifest.state_digest() == header.state_digest;
            let installer = match &manifest.qlock {
                Some(q) => qlock::Installer::new(q.clone(), q.state_digest()).ok(),
                None => None,
            };
            if !sound || manifest.qlock.is_some() != installer.is_some() {
                self.count_rejection("snapshot_offer_bad");
                return self.transfer_next_peer(to);
            }
            let offer = Offer {
                pulse,
                manifest,
                executed: BTreeSet::new(),
                executed_done: 0,
                installer,
            };
            if let Some(t) = self.nodes[to].transfer.as_mut() {
                t.offer = Some(offer);
            }
        }
        self.request_chunk(to);
    }

    fn request_chunk(&mut self, i: usize) {
        let now = self.now;
        let Some(t) = self.nodes[i].transfer.as_mut() else {
            return;
        };
        let Some(offer) = &t.offer else {
            return;
        };
        let seq = offer.pulse.header.last_seq;
        match offer.next_chunk() {
            Some(index) => {
                t.attempt += 1;
                t.deadline = now + TRANSFER_STEP_MICROS;
                let (peer, attempt) = (t.peer, t.attempt);
                self.send(Some(i), peer, NetMsg::FetchChunk(seq, index));
                self.schedule(
                    now + TRANSFER_STEP_MICROS,
                    Event::TransferTimeout(i, attempt),
                );
            }
            None => self.finish_transfer(i),
        }
    }

    /// A chunk at replica `to`.
    pub(super) fn on_chunk(
        &mut self,
        from: usize,
        to: usize,
        seq: SeqNum,
        index: u32,
        bytes: Vec<u8>,
    ) {
        let Some(t) = self.nodes[to].transfer.as_mut() else {
            return;
        };
        let Some(offer) = t.offer.as_mut() else {
            return;
        };
        if t.peer != from || offer.pulse.header.last_seq != seq || offer.next_chunk() != Some(index)
        {
            return;
        }
        if offer.accept(index, bytes) {
            self.request_chunk(to);
        } else {
            self.report.chunks_rejected += 1;
            self.trace(format!(
                "{} chunk-rejected {to} {index} from {from}",
                self.now
            ));
            self.transfer_next_peer(to);
        }
    }

    /// Every chunk is in: replace the application, store the snapshot and
    /// the pulse, collect the log, and let consensus continue.
    fn finish_transfer(&mut self, i: usize) {
        let Some(transfer) = self.nodes[i].transfer.take() else {
            return;
        };
        let Some(offer) = transfer.offer else {
            return;
        };
        let header = offer.pulse.header;
        let seq = header.last_seq;
        if self.nodes[i].core.last_executed() >= seq {
            return;
        }
        let machine = match offer.installer {
            Some(installer) => match installer.finish() {
                Ok(machine) => Some(machine),
                Err(e) => {
                    return self.violation(format!("replica {i}: checked chunks failed: {e}"))
                }
            },
            None => None,
        };
        let interval = self.nodes[i].config.checkpoint_interval;
        let mut app = App::from_snapshot(
            &header,
            offer.manifest.head,
            offer.executed,
            machine,
            interval,
        );
        if app.state_digest() != header.state_digest {
            return self.violation(format!(
                "replica {i}: a transferred state does not match its header"
            ));
        }
        let snapshot = app.snapshot(header);
        for d in &app.executed {
            self.mark_executed(i, *d);
        }
        let node = &mut self.nodes[i];
        node.app = app;
        node.disk.committed = node.disk.committed.split_off(&seq.next());
        node.disk.snapshot = Some(snapshot);
        self.report.state_transfers += 1;
        self.trace(format!("{} transfer-done {i} {}", self.now, seq.0));
        let certificate: Vec<(ReplicaId, primitives::Signature)> = offer
            .pulse
            .signatures
            .iter()
            .map(|s| (s.replica, s.signature))
            .collect();
        self.store_pulse(i, seq, header.digest(), &certificate);
        self.step(
            i,
            Input::StateInstalled {
                seq,
                app_digest: header.digest(),
                time: header.time,
                certificate,
            },
        );
        self.report_deadline(i);
        self.endorse_predecessor(i, &header);
    }

    /// Replica `i` holds the certified `header` but never computed the
    /// pulse before it: vouch for that one by the hash link, so it still
    /// gets its quorum certificate.
    pub(super) fn endorse_predecessor(&mut self, i: usize, header: &lockchain::PulseHeader) {
        if header.pulse.0 < 2 {
            return;
        }
        let below = primitives::PulseNumber(header.pulse.0 - 1);
        if self.nodes[i].disk.lockchain.contains_key(&below) {
            return;
        }
        let seq = SeqNum(header.first_seq.0 - 1);
        self.step(
            i,
            Input::EndorseCheckpoint {
                seq,
                app_digest: header.previous,
            },
        );
    }

    /// At replica `i`, checkpoint `seq` executed: keep the snapshot until
    /// the checkpoint is stable (bounded).
    pub(super) fn take_snapshot(&mut self, i: usize, seq: SeqNum) {
        let node = &mut self.nodes[i];
        let Some(header) = node.app.pulses.headers.get(&seq).copied() else {
            return;
        };
        let snapshot = node.app.snapshot(header);
        node.pending_snapshots.insert(seq, snapshot);
        while node.pending_snapshots.len() > 4 {
            node.pending_snapshots.pop_first();
        }
    }

    /// Checkpoint `seq` is stable at replica `i`: its snapshot goes to disk
    /// and the committed batches up to it are collected.
    pub(super) fn collect_log(&mut self, i: usize, seq: SeqNum) {
        let node = &mut self.nodes[i];
        let Some(snapshot) = node.pending_snapshots.remove(&seq) else {
            return;
        };
        node.pending_snapshots = node.pending_snapshots.split_off(&seq);
        node.disk.committed = node.disk.committed.split_off(&seq.next());
        node.disk.snapshot = Some(snapshot);
    }
}
