//! Chunked state transfer and lockchain gap filling over the network
//! (DESIGN.md step 9, issue 10).
//!
//! **State transfer.** When the consensus core reports it is behind a
//! certified checkpoint it cannot reach batch by batch
//! (`Output::FetchState`), the loop asks one peer at a time for its newest
//! snapshot at or above that seq. The offer carries the pulse's quorum
//! certificate and the snapshot's [`TransferManifest`]; the certificate is
//! checked against the cluster's keys and the manifest against the
//! certified state digest before any chunk is fetched. Chunks then come one
//! at a time, each checked by [`Installer::accept`] before the next is
//! asked for. A peer that lies, has nothing, or is silent for
//! [`TRANSFER_STEP_TIMEOUT`] is left for the next one; chunks already
//! accepted are kept when the next peer offers the same snapshot. Once
//! complete, the state replaces the state machine, is stored as our own
//! snapshot (so a restart recovers from it) and the core continues from it
//! (`Input::StateInstalled`, with the certificate, which it checks again).
//!
//! **Lockchain gaps.** A state transfer (or a certificate that formed
//! elsewhere) leaves pulses below our newest one missing. Every
//! [`LOCKCHAIN_SYNC_EVERY`] the loop advances a cursor over its contiguous
//! prefix of stored pulses and asks a peer for the next missing ones; each
//! served entry is stored only if its certificate verifies, its batch roots
//! hash to the header's, and it links to its stored neighbours.

use super::{PulseChain, Runtime};
use crate::replica::persist::PulseEntry;
use crate::replica::wire::{PeerMessage, PULSES_PER_MESSAGE_MAX};
use consensus::Input;
use lockchain::{PulseBatches, PulseHeader};
use primitives::{codec, Digest, PulseNumber, ReplicaId, SeqNum};
use qlock::{Installer, TransferManifest};
use std::collections::BTreeMap;
use tokio::time::{Duration, Instant};

/// How long one peer gets to answer one transfer request.
pub(super) const TRANSFER_STEP_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the lockchain cursor advances and a gap is asked for.
pub(super) const LOCKCHAIN_SYNC_EVERY: Duration = Duration::from_secs(1);
/// Pulses the cursor scans per sync at most (bounded work per pass).
const LOCKCHAIN_SCAN_MAX: u64 = 1024;

/// A state transfer in progress.
pub(super) struct Transfer {
    /// The lowest checkpoint the core asked for.
    target: SeqNum,
    /// The peer asked last.
    peer: ReplicaId,
    /// When that peer's answer is overdue.
    deadline: Instant,
    /// Offered and checked: the snapshot's pulse and the chunks so far.
    accepted: Option<(PulseEntry, Installer)>,
}

impl Runtime {
    /// The core asked for the state certified at `seq`.
    pub(super) fn start_transfer(&mut self, seq: SeqNum) {
        if self.core.last_executed() >= seq {
            return;
        }
        if self.transfer.as_ref().is_some_and(|t| t.target >= seq) {
            return; // Already on it (the core repeats the request).
        }
        let Some(peer) = self.next_transfer_peer() else {
            return;
        };
        tracing::info!(replica = self.me.0, seq = seq.0, "state transfer starts");
        self.transfer = Some(Transfer {
            target: seq,
            peer,
            deadline: Instant::now() + TRANSFER_STEP_TIMEOUT,
            accepted: None,
        });
        let seq = self.snapshot_wanted();
        self.send(peer, &PeerMessage::FetchSnapshot { seq });
    }

    /// The lowest snapshot seq worth fetching. Any certified snapshot above
    /// what we executed will do, even below the core's target: peers
    /// snapshot every few pulses and keep their log back to their last
    /// snapshot, so the batches after it come by catch-up.
    fn snapshot_wanted(&self) -> SeqNum {
        self.core.last_executed().next()
    }

    /// Peers in rotation, connected ones first.
    fn next_transfer_peer(&mut self) -> Option<ReplicaId> {
        let others: Vec<ReplicaId> = self.membership.ids().filter(|r| *r != self.me).collect();
        if others.is_empty() {
            return None;
        }
        let connected: Vec<ReplicaId> = others
            .iter()
            .copied()
            .filter(|r| self.health.get(r).is_some_and(|h| h.connected))
            .collect();
        let pool = if connected.is_empty() {
            others
        } else {
            connected
        };
        self.transfer_rotation = self.transfer_rotation.wrapping_add(1);
        Some(pool[self.transfer_rotation % pool.len()])
    }

    /// The current peer failed us (lied, had nothing, timed out): ask the
    /// next one, for the snapshot we are already fetching if any.
    fn transfer_next_peer(&mut self) {
        let Some(peer) = self.next_transfer_peer() else {
            return;
        };
        let wanted = self.snapshot_wanted();
        let Some(transfer) = self.transfer.as_mut() else {
            return;
        };
        transfer.peer = peer;
        transfer.deadline = Instant::now() + TRANSFER_STEP_TIMEOUT;
        let seq = match &transfer.accepted {
            Some((entry, _)) => entry.certificate.header.last_seq,
            None => wanted,
        };
        self.send(peer, &PeerMessage::FetchSnapshot { seq });
    }

    /// Overdue answers move the transfer to the next peer.
    pub(super) fn transfer_housekeeping(&mut self, now: Instant) {
        let overdue = self.transfer.as_ref().is_some_and(|t| t.deadline <= now);
        if overdue {
            self.metrics.reject("state_transfer_timeout");
            self.transfer_next_peer();
        }
    }

    // ----- Serving ----------------------------------------------------------

    /// A peer asks for our newest snapshot at or above `seq`.
    pub(super) fn serve_snapshot(&mut self, from: ReplicaId, seq: SeqNum) {
        match self.snapshot_offer(seq) {
            Some(offer) => self.send(from, &offer),
            None => self.send(from, &PeerMessage::NoSnapshot { seq }),
        }
    }

    fn snapshot_offer(&self, seq: SeqNum) -> Option<PeerMessage> {
        let manifest = self.store.latest_snapshot(None).ok().flatten()?;
        if manifest.seq < seq {
            return None;
        }
        let meta: crate::replica::persist::SnapshotMeta =
            codec::decode(&manifest.meta, codec::FRAME_BYTES_MAX).ok()?;
        let bytes = self.store.root(meta.header.pulse).ok().flatten()?;
        let entry: PulseEntry = codec::decode(&bytes, codec::FRAME_BYTES_MAX).ok()?;
        Some(PeerMessage::SnapshotOffer {
            entry: Box::new(entry),
            manifest: meta.transfer_manifest,
        })
    }

    /// A peer asks for one chunk.
    pub(super) fn serve_chunk(&mut self, from: ReplicaId, seq: SeqNum, index: u32) {
        match self.store.snapshot_chunk(seq, index) {
            Ok(Some(bytes)) => self.send(from, &PeerMessage::SnapshotChunk { seq, index, bytes }),
            _ => self.send(from, &PeerMessage::NoSnapshot { seq }),
        }
    }

    // ----- Fetching ---------------------------------------------------------

    fn is_transfer_peer(&self, from: ReplicaId) -> bool {
        self.transfer.as_ref().is_some_and(|t| t.peer == from)
    }

    /// The current peer has no snapshot for us.
    pub(super) fn on_no_snapshot(&mut self, from: ReplicaId) {
        if self.is_transfer_peer(from) {
            self.transfer_next_peer();
        }
    }

    /// A snapshot offer: checked (certificate, batch roots, manifest
    /// against the certified state digest) before any chunk is asked for.
    pub(super) fn on_snapshot_offer(
        &mut self,
        from: ReplicaId,
        entry: PulseEntry,
        manifest: Vec<u8>,
    ) {
        if !self.is_transfer_peer(from) {
            return self.metrics.reject("unsolicited_snapshot");
        }
        if self.transfer.is_none() {
            return;
        }
        let header = entry.certificate.header;
        let useless = header.last_seq < self.snapshot_wanted();
        if useless || self.check_pulse_entry(&entry).is_err() {
            self.metrics.reject("snapshot_offer_bad");
            return self.transfer_next_peer();
        }
        let transfer = self.transfer.as_mut().expect("checked");
        let same = transfer
            .accepted
            .as_ref()
            .is_some_and(|(e, _)| e.certificate.header == header);
        if !same {
            let installer = TransferManifest::decode(&manifest)
                .ok()
                .and_then(|m| Installer::new(m, header.state_digest).ok());
            let Some(installer) = installer else {
                self.metrics.reject("snapshot_manifest_bad");
                return self.transfer_next_peer();
            };
            transfer.accepted = Some((entry, installer));
        }
        self.request_next_chunk();
    }

    fn request_next_chunk(&mut self) {
        let Some(transfer) = self.transfer.as_mut() else {
            return;
        };
        let Some((entry, installer)) = &transfer.accepted else {
            return;
        };
        let seq = entry.certificate.header.last_seq;
        match installer.next_chunk() {
            Some(index) => {
                transfer.deadline = Instant::now() + TRANSFER_STEP_TIMEOUT;
                let peer = transfer.peer;
                self.send(peer, &PeerMessage::FetchChunk { seq, index });
            }
            None => self.finish_transfer(),
        }
    }

    /// A chunk: kept only if it checks out against the manifest; a bad one
    /// costs this one chunk and the peer.
    pub(super) fn on_snapshot_chunk(
        &mut self,
        from: ReplicaId,
        seq: SeqNum,
        index: u32,
        bytes: Vec<u8>,
    ) {
        if !self.is_transfer_peer(from) {
            return self.metrics.reject("unsolicited_chunk");
        }
        let Some(transfer) = self.transfer.as_mut() else {
            return;
        };
        let Some((entry, installer)) = transfer.accepted.as_mut() else {
            return;
        };
        if entry.certificate.header.last_seq != seq {
            return self.metrics.reject("unsolicited_chunk");
        }
        match installer.accept(index, bytes) {
            Ok(()) => self.request_next_chunk(),
            Err(e) => {
                tracing::warn!(peer = from.0, seq = seq.0, index, "chunk refused: {e}");
                self.metrics.state_transfer_chunks_rejected.inc();
                self.transfer_next_peer();
            }
        }
    }

    /// Every chunk is in: install the state, store it, tell the core.
    fn finish_transfer(&mut self) {
        let Some(transfer) = self.transfer.take() else {
            return;
        };
        let Some((entry, installer)) = transfer.accepted else {
            return;
        };
        let header = entry.certificate.header;
        let seq = header.last_seq;
        if self.core.last_executed() >= seq {
            return; // Caught up batch by batch meanwhile.
        }
        let chunks = installer.chunks().to_vec();
        let manifest = installer.manifest().encode();
        let machine = match installer.finish() {
            Ok(machine) => machine,
            Err(e) => {
                tracing::error!(seq = seq.0, "state transfer failed at the end: {e}");
                self.metrics.reject("state_transfer_final");
                return;
            }
        };
        self.machine = machine;
        self.chain = PulseChain {
            previous: header.digest(),
            first_seq: seq.next(),
            roots: Vec::new(),
            unstable: BTreeMap::new(),
        };
        self.last_time = header.time;
        self.certifier.reset(seq);
        self.executed_at.clear();
        self.executed_order.clear();
        self.write_set
            .put_root(header.pulse, &codec::encode(&entry));
        self.write_snapshot(&header, &chunks, manifest);
        self.state_transfers += 1;
        self.metrics.state_transfers.inc();
        self.metrics.last_executed.set(seq.0 as i64);
        tracing::info!(
            replica = self.me.0,
            seq = seq.0,
            chunks = chunks.len(),
            "state transfer installed"
        );
        let certificate = entry
            .certificate
            .signatures
            .iter()
            .map(|s| (s.replica, s.signature))
            .collect();
        self.step(Input::StateInstalled {
            seq,
            app_digest: header.digest(),
            time: header.time,
            certificate,
        });
        let at = self.machine.next_deadline();
        self.step(Input::NextDeadline { at });
        self.endorse_predecessor(&header);
    }

    /// We hold the certified `header` but never computed the pulse before
    /// it (a state transfer skipped it): vouch for it by the hash link, so
    /// it still gets a quorum certificate while `f` replicas withhold
    /// theirs (`Input::EndorseCheckpoint`).
    fn endorse_predecessor(&mut self, header: &PulseHeader) {
        if header.pulse.0 < 2 {
            return;
        }
        if self
            .stored_header(PulseNumber(header.pulse.0 - 1))
            .is_some()
        {
            return;
        }
        self.step(Input::EndorseCheckpoint {
            seq: SeqNum(header.first_seq.0 - 1),
            app_digest: header.previous,
        });
    }

    // ----- The lockchain ------------------------------------------------------

    /// A pulse entry is sound on its own: a quorum certificate of this
    /// cluster over its header, and batch roots that hash to the header's.
    fn check_pulse_entry(&self, entry: &PulseEntry) -> Result<(), &'static str> {
        let header = &entry.certificate.header;
        self.verifier
            .verify_pulse_certificate(&entry.certificate)
            .map_err(|_| "certificate")?;
        let count = header
            .last_seq
            .0
            .checked_sub(header.first_seq.0)
            .map(|d| d + 1);
        if count != Some(entry.receipts_roots.len() as u64) {
            return Err("batch count");
        }
        if PulseBatches::new(header.first_seq, &entry.receipts_roots).root() != header.batches_root
        {
            return Err("batch roots");
        }
        Ok(())
    }

    fn stored_header(&self, pulse: PulseNumber) -> Option<PulseHeader> {
        let bytes = self.store.root(pulse).ok().flatten()?;
        let entry: PulseEntry = codec::decode(&bytes, codec::FRAME_BYTES_MAX).ok()?;
        Some(entry.certificate.header)
    }

    /// Advances the cursor over the stored prefix and asks a peer for the
    /// first gap above it.
    pub(super) fn lockchain_housekeeping(&mut self, now: Instant) {
        if now < self.lockchain_sync_at {
            return;
        }
        self.lockchain_sync_at = now + LOCKCHAIN_SYNC_EVERY;
        let Ok(Some((latest, _))) = self.store.latest_root() else {
            return;
        };
        let from = PulseNumber(self.lockchain_cursor.0 + 1);
        let to = PulseNumber(latest.0.min(self.lockchain_cursor.0 + LOCKCHAIN_SCAN_MAX));
        if from > to {
            return;
        }
        if let Ok(stored) = self.store.roots(from, to) {
            for (pulse, _) in stored {
                if pulse.0 != self.lockchain_cursor.0 + 1 {
                    break;
                }
                self.lockchain_cursor = pulse;
            }
        }
        if self.lockchain_cursor >= latest {
            return;
        }
        let first = PulseNumber(self.lockchain_cursor.0 + 1);
        let last = PulseNumber((latest.0 - 1).min(first.0 + PULSES_PER_MESSAGE_MAX as u64 - 1));
        if let Some(peer) = self.next_transfer_peer() {
            self.send(peer, &PeerMessage::FetchPulses { first, last });
        }
    }

    /// A peer asks for pulses `first..=last`.
    pub(super) fn serve_pulses(&mut self, from: ReplicaId, first: PulseNumber, last: PulseNumber) {
        let last = PulseNumber(
            last.0
                .min(first.0.saturating_add(PULSES_PER_MESSAGE_MAX as u64 - 1)),
        );
        if first > last {
            return;
        }
        let Ok(stored) = self.store.roots(first, last) else {
            return;
        };
        let entries: Vec<PulseEntry> = stored
            .into_iter()
            .filter_map(|(_, bytes)| codec::decode(&bytes, codec::FRAME_BYTES_MAX).ok())
            .collect();
        if !entries.is_empty() {
            self.send(from, &PeerMessage::Pulses(entries));
        }
    }

    /// Served pulses: each stored only if sound and linked to the stored
    /// neighbours we have (a lying peer cannot fork our chain).
    pub(super) fn on_pulses(&mut self, entries: Vec<PulseEntry>) {
        if entries.len() > PULSES_PER_MESSAGE_MAX {
            return self.metrics.reject("pulses_too_many");
        }
        // Entries accepted in this message, so a run links to itself.
        let mut accepted: BTreeMap<PulseNumber, Digest> = BTreeMap::new();
        for entry in entries {
            let header = entry.certificate.header;
            if header.pulse.0 == 0 || self.stored_header(header.pulse).is_some() {
                continue;
            }
            if self.check_pulse_entry(&entry).is_err() {
                self.metrics.reject("pulse_entry_bad");
                continue;
            }
            let below = PulseNumber(header.pulse.0 - 1);
            let below_digest = accepted
                .get(&below)
                .copied()
                .or_else(|| self.stored_header(below).map(|h| h.digest()));
            let links_below = match below_digest {
                Some(d) => d == header.previous,
                None => below.0 == 0 && header.previous == Digest::ZERO,
            };
            let above = self.stored_header(PulseNumber(header.pulse.0 + 1));
            let links_above = above.is_none_or(|h| h.previous == header.digest());
            if !(links_below || below_digest.is_none()) || !links_above {
                self.metrics.reject("pulse_entry_unlinked");
                continue;
            }
            accepted.insert(header.pulse, header.digest());
            self.write_set
                .put_root(header.pulse, &codec::encode(&entry));
            self.metrics.lockchain_pulses_fetched.inc();
            let below = PulseNumber(header.pulse.0.saturating_sub(1));
            if below.0 > 0 && !accepted.contains_key(&below) {
                self.endorse_predecessor(&header);
            }
        }
    }
}
