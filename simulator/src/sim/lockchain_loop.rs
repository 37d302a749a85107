//! The lockchain in the loop (DESIGN.md step 9, issue 8): each replica's
//! application builds a pulse header at every checkpoint seq (see
//! [`crate::node::Pulses`]) and consensus signs its digest as the
//! CHECKPOINT, so the 2f+1 signatures of a stable checkpoint are the
//! header's [`PulseCertificate`]. The replica stores it on its simulated
//! disk (it survives crashes). A replica whose checkpoint jumped past a
//! pulse (catch-up, restart) fetches the missing certificates from a peer
//! and accepts them only if they verify and certify the header it computed
//! itself.
//!
//! Checkers at the end of a run: every replica's chain is gap-free from
//! pulse 1, passes [`lockchain::Verifier::verify_continuity`] and matches
//! the headers it computed; all chains agree on their common prefix; a
//! restarted replica's chain continues past its restart.

use super::{Event, NetMsg, Sim};
use lockchain::PulseCertificate;
use primitives::{Digest, PulseNumber, ReplicaId, SeqNum, Signature};
use rand::Rng;

/// Pulse certificates served in one answer to a lockchain fetch.
pub(super) const PULSES_PER_REPLY_MAX: u64 = 16;
/// How often a replica with a gap in its lockchain asks a peer again.
const LOCKCHAIN_SYNC_MICROS: u64 = 100_000;

impl Sim {
    /// A stable checkpoint at replica `i`: the certified digest must be
    /// the header it computed; the header and its certificate go to disk.
    pub(super) fn store_pulse(
        &mut self,
        i: usize,
        seq: SeqNum,
        app_digest: Digest,
        certificate: &[(ReplicaId, Signature)],
    ) {
        if !self.correct(i) {
            return; // A Byzantine replica's chain is nobody's evidence.
        }
        let Some(header) = self.nodes[i].app.pulses.headers.get(&seq).copied() else {
            // Consensus makes a checkpoint stable only after executing it,
            // and the application computes the header on execution.
            return self.violation(format!(
                "replica {i}: stable checkpoint {seq:?} without a computed pulse header"
            ));
        };
        if header.digest() != app_digest {
            return self.violation(format!(
                "replica {i}: checkpoint {seq:?} certifies {app_digest:?}, not its pulse header {:?}",
                header.digest()
            ));
        }
        let mut pulse = PulseCertificate::new(header);
        for (replica, signature) in certificate {
            if let Err(e) = pulse.add(&self.membership, *replica, *signature) {
                return self.violation(format!(
                    "replica {i}: stable checkpoint {seq:?} carries a bad signature: {e}"
                ));
            }
        }
        if let Err(e) = self.verifier.verify_pulse_certificate(&pulse) {
            return self.violation(format!(
                "replica {i}: stable checkpoint {seq:?} is no pulse certificate: {e}"
            ));
        }
        self.put_pulse(i, pulse);
    }

    /// Writes a verified pulse certificate to `i`'s disk, checks it against
    /// every other replica's pulse of that number, and starts a lockchain
    /// fetch if pulses below it are missing.
    fn put_pulse(&mut self, i: usize, pulse: PulseCertificate) {
        let number = pulse.header.pulse;
        let digest = pulse.header.digest();
        let (first, agreed) = *self.pulse_headers.entry(number).or_insert((i, digest));
        if agreed != digest {
            self.violation(format!(
                "lockchain: pulse {number:?} is {agreed:?} at replica {first}, {digest:?} at replica {i}"
            ));
        }
        self.trace(format!("{} pulse {i} {} {digest:?}", self.now, number.0));
        self.nodes[i].disk.lockchain.insert(number, pulse);
        if self.first_gap(i).is_some() && !self.nodes[i].lockchain_sync_scheduled {
            self.nodes[i].lockchain_sync_scheduled = true;
            self.schedule(self.now, Event::LockchainSync(i));
        }
    }

    /// The lowest pulse missing below `i`'s highest stored one.
    pub(super) fn first_gap(&self, i: usize) -> Option<PulseNumber> {
        let chain = &self.nodes[i].disk.lockchain;
        let (highest, _) = chain.last_key_value()?;
        (1..highest.0)
            .map(PulseNumber)
            .find(|p| !chain.contains_key(p))
    }

    /// Asks a random peer for the missing pulses, and again later while
    /// the gap stays.
    pub(super) fn lockchain_sync(&mut self, i: usize) {
        self.nodes[i].lockchain_sync_scheduled = false;
        if !self.nodes[i].up || self.nodes.len() < 2 {
            return;
        }
        let Some(gap) = self.first_gap(i) else {
            return;
        };
        let n = self.nodes.len();
        let to = (i + self.rng.gen_range(1..n)) % n;
        let last = PulseNumber(gap.0 + PULSES_PER_REPLY_MAX - 1);
        self.trace(format!(
            "{} lockchain-fetch {i} {} from {to}",
            self.now, gap.0
        ));
        self.report.lockchain_fetches += 1;
        self.send(Some(i), to, NetMsg::FetchPulses(gap, last));
        self.nodes[i].lockchain_sync_scheduled = true;
        self.schedule(self.now + LOCKCHAIN_SYNC_MICROS, Event::LockchainSync(i));
    }

    /// Serves `first..=last` (at most [`PULSES_PER_REPLY_MAX`]) from `to`'s
    /// disk to `from`.
    pub(super) fn serve_pulses(
        &mut self,
        from: usize,
        to: usize,
        first: PulseNumber,
        last: PulseNumber,
    ) {
        let last = PulseNumber(last.0.min(first.0.saturating_add(PULSES_PER_REPLY_MAX - 1)));
        if first > last {
            return;
        }
        let pulses: Vec<PulseCertificate> = self.nodes[to]
            .disk
            .lockchain
            .range(first..=last)
            .map(|(_, p)| p.clone())
            .collect();
        if !pulses.is_empty() {
            self.send(Some(to), from, NetMsg::Pulses(pulses));
        }
    }

    /// Pulse certificates served by a peer: each must verify and certify
    /// the header `to` computed itself; one it has not computed yet (it is
    /// behind) is left for later.
    pub(super) fn on_pulses(&mut self, to: usize, pulses: Vec<PulseCertificate>) {
        for pulse in pulses.into_iter().take(PULSES_PER_REPLY_MAX as usize) {
            if self.nodes[to]
                .disk
                .lockchain
                .contains_key(&pulse.header.pulse)
            {
                continue;
            }
            if self.verifier.verify_pulse_certificate(&pulse).is_err() {
                self.count_rejection("lockchain_bad_certificate");
                continue;
            }
            let own = self.nodes[to]
                .app
                .pulses
                .headers
                .get(&pulse.header.last_seq)
                .copied();
            match own {
                Some(own) if own == pulse.header => self.put_pulse(to, pulse),
                Some(own) => self.violation(format!(
                    "replica {to} computed pulse {:?} as {:?}, a quorum certified {:?}",
                    own.pulse,
                    own.digest(),
                    pulse.header.digest()
                )),
                // Not computed here (a state transfer skipped it): kept if
                // it links to a stored neighbour and conflicts with none.
                None if self.links_into_chain(to, &pulse) => {
                    let header = pulse.header;
                    self.put_pulse(to, pulse);
                    self.endorse_predecessor(to, &header);
                }
                None => self.count_rejection("lockchain_pulse_unlinked"),
            }
        }
    }

    /// Whether every correct replica is up (a crashed one restarts before
    /// the run ends) and has a lockchain without gaps, at most one pulse
    /// (in flight) behind the longest.
    pub(super) fn lockchains_settled(&self) -> bool {
        if (0..self.nodes.len()).any(|i| self.correct(i) && !self.nodes[i].up) {
            return false;
        }
        let live = |i: &usize| self.correct(*i);
        let highest = |i: usize| {
            self.nodes[i]
                .disk
                .lockchain
                .last_key_value()
                .map_or(0, |(p, _)| p.0)
        };
        let longest = (0..self.nodes.len()).filter(live).map(highest).max();
        (0..self.nodes.len())
            .filter(live)
            .all(|i| self.first_gap(i).is_none() && highest(i) + 1 >= longest.unwrap_or(0))
    }

    /// The lockchain checkers, at the end of a run.
    pub(super) fn finish_lockchain(&mut self) {
        let mut problems = Vec::new();
        let mut liveness = Vec::new();
        let mut checked = 0;
        for (i, node) in self.nodes.iter().enumerate() {
            if node.byzantine.is_some() {
                continue;
            }
            let chain: Vec<PulseCertificate> = node.disk.lockchain.values().cloned().collect();
            for (k, pulse) in chain.iter().enumerate() {
                if pulse.header.pulse != PulseNumber(k as u64 + 1) {
                    liveness.push(format!(
                        "lockchain: replica {i} lacks pulse {} at the end",
                        k + 1
                    ));
                    break;
                }
                if let Some(own) = node.app.pulses.headers.get(&pulse.header.last_seq) {
                    if *own != pulse.header {
                        problems.push(format!(
                            "lockchain: replica {i} stored pulse {} unlike the header it computed",
                            k + 1
                        ));
                    }
                }
            }
            if let Some(first) = chain.first() {
                if first.header.previous != Digest::ZERO {
                    problems.push(format!(
                        "lockchain: replica {i}'s first pulse names a predecessor"
                    ));
                }
            }
            match self.verifier.verify_continuity(&chain) {
                Ok(()) => checked += chain.len() as u64,
                Err(e) => problems.push(format!("lockchain: replica {i}'s chain: {e}")),
            }
        }
        // Common prefix: pulse by pulse, every replica holds the same header.
        let longest = self.nodes.iter().map(|n| n.disk.lockchain.len()).max();
        for p in 1..=longest.unwrap_or(0) as u64 {
            let mut digests = self
                .nodes
                .iter()
                .filter_map(|n| n.disk.lockchain.get(&PulseNumber(p)))
                .map(|c| c.header.digest());
            if let Some(first) = digests.next() {
                if digests.any(|d| d != first) {
                    problems.push(format!("lockchain: replicas disagree on pulse {p}"));
                }
            }
        }
        // A restarted replica continues its chain: once the others are a
        // pulse or more past where it restarted (one in flight is allowed),
        // so is it.
        for (i, at_restart) in self.restarts.clone() {
            let own = self.nodes[i].disk.lockchain.len() as u64;
            let others = (0..self.nodes.len())
                .filter(|j| *j != i)
                .map(|j| self.nodes[j].disk.lockchain.len() as u64)
                .max()
                .unwrap_or(0);
            if self.nodes[i].up && others > at_restart + 1 && own <= at_restart {
                liveness.push(format!(
                    "lockchain: replica {i} restarted at pulse {at_restart} and certified none since (others have {others})"
                ));
            }
        }
        self.report.pulses = longest.unwrap_or(0) as u64;
        self.report.lockchain_lengths = self
            .nodes
            .iter()
            .map(|n| n.disk.lockchain.len() as u64)
            .collect();
        self.report.restarts.clone_from(&self.restarts);
        self.report.lockchain_checked = checked;
        for p in problems {
            self.violation(p);
        }
        for l in liveness {
            if self.report.liveness_failures.len() < 20 {
                self.report.liveness_failures.push(l);
            }
        }
    }

    /// Whether `pulse` hash-links to a neighbour in `i`'s chain and
    /// contradicts neither.
    fn links_into_chain(&self, i: usize, pulse: &PulseCertificate) -> bool {
        let chain = &self.nodes[i].disk.lockchain;
        let number = pulse.header.pulse.0;
        let below = match number {
            0 => return false,
            1 => Some(pulse.header.previous == Digest::ZERO),
            _ => chain
                .get(&PulseNumber(number - 1))
                .map(|b| b.header.digest() == pulse.header.previous),
        };
        let above = chain
            .get(&PulseNumber(number + 1))
            .map(|a| a.header.previous == pulse.header.digest());
        below != Some(false) && above != Some(false) && (below == Some(true) || above == Some(true))
    }
}

#[cfg(test)]
mod tests {
    //! The lockchain checkers bite: a run's chains are tampered with after
    //! the run, before the checks.
    use super::Sim;
    use crate::options::SimOptions;
    use primitives::{Digest, PulseNumber};

    fn simulated(seed: u64, crash: Option<(usize, u64, u64)>) -> Sim {
        let mut o = SimOptions::new(seed, 4);
        o.faults = "none".parse().unwrap();
        o.requests_per_client = 20;
        o.scripted_crashes.extend(crash);
        let mut sim = Sim::new(&o);
        sim.simulate();
        assert!(sim.nodes[1].disk.lockchain.len() >= 3, "pulses were made");
        sim
    }

    fn finished(mut sim: Sim) -> crate::SeedReport {
        sim.finish();
        sim.report
    }

    #[test]
    fn untampered_chains_pass() {
        let r = finished(simulated(4, None));
        assert!(r.passed(), "{:?} {:?}", r.violations, r.liveness_failures);
        assert_eq!(r.lockchain_checked, r.lockchain_lengths.iter().sum::<u64>());
    }

    #[test]
    fn a_forged_header_breaks_continuity_and_agreement() {
        let mut sim = simulated(4, None);
        let pulse = sim.nodes[1]
            .disk
            .lockchain
            .get_mut(&PulseNumber(2))
            .unwrap();
        pulse.header.state_digest = Digest::of(primitives::Domain::Test, b"forged");
        let r = finished(sim);
        let all = r.violations.join("\n");
        assert!(all.contains("replica 1's chain"), "{all}");
        assert!(all.contains("disagree on pulse 2"), "{all}");
        assert!(all.contains("unlike the header it computed"), "{all}");
    }

    #[test]
    fn a_gap_in_a_chain_is_reported() {
        let mut sim = simulated(4, None);
        sim.nodes[3].disk.lockchain.remove(&PulseNumber(2));
        let r = finished(sim);
        let all = r.liveness_failures.join("\n");
        assert!(all.contains("replica 3 lacks pulse 2"), "{all}");
    }

    #[test]
    fn a_restarted_replica_that_stops_its_chain_is_reported() {
        let mut sim = simulated(6, Some((2, 150_000, 200_000)));
        let (node, at_restart) = sim.restarts[0];
        assert_eq!(node, 2);
        let chain = &mut sim.nodes[2].disk.lockchain;
        while chain.len() as u64 > at_restart {
            chain.pop_last();
        }
        let r = finished(sim);
        let all = r.liveness_failures.join("\n");
        assert!(all.contains("replica 2 restarted at pulse"), "{all}");
    }
}
