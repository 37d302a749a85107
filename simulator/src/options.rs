//! What one simulated run looks like: cluster size, workload, faults.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// A kind of fault the simulator injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// Messages are lost.
    Drop,
    /// Some messages take far longer than usual.
    Delay,
    /// Messages arrive twice.
    Duplicate,
    /// Per-message jitter: messages overtake each other.
    Reorder,
    /// The replicas split into two groups that cannot talk, then heal.
    Partition,
    /// Each replica's clock is off by a constant within the allowed skew.
    Skew,
    /// Replicas crash (losing unsynced writes) and restart from their disk.
    Crash,
    /// Replicas serving a state transfer flip a byte in some chunks (a
    /// faulty or lying server): each must be refused and re-fetched.
    CorruptChunk,
    /// A Byzantine primary sends different batches for one seq.
    Equivocate,
    /// A Byzantine replica votes for digests it never saw and hides its
    /// prepared certificates in VIEW-CHANGEs.
    ConflictingVotes,
    /// A Byzantine replica's signatures have flipped bits.
    BadSignatures,
    /// A Byzantine replica sends nothing.
    Silent,
    /// A Byzantine replica sends old messages again.
    Replay,
    /// A Byzantine primary proposes requests whose payloads it withholds.
    WithholdPayloads,
    /// A Byzantine primary picks batch times at the edge of the skew window.
    SkewEdge,
    /// A Byzantine replica sends far more than its share.
    Flood,
    /// A Byzantine identity is run by two replicas at once (Twins).
    Twins,
    /// Clients with bad signatures, replayed or reused request numbers,
    /// numbers out of order, requests at and beyond the limits.
    ByzantineClients,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 18] = [
        FaultKind::Drop,
        FaultKind::Delay,
        FaultKind::Duplicate,
        FaultKind::Reorder,
        FaultKind::Partition,
        FaultKind::Skew,
        FaultKind::Crash,
        FaultKind::CorruptChunk,
        FaultKind::Equivocate,
        FaultKind::ConflictingVotes,
        FaultKind::BadSignatures,
        FaultKind::Silent,
        FaultKind::Replay,
        FaultKind::WithholdPayloads,
        FaultKind::SkewEdge,
        FaultKind::Flood,
        FaultKind::Twins,
        FaultKind::ByzantineClients,
    ];

    /// Network faults and skew: no crash, no liar.
    pub fn is_benign(self) -> bool {
        matches!(
            self,
            FaultKind::Drop
                | FaultKind::Delay
                | FaultKind::Duplicate
                | FaultKind::Reorder
                | FaultKind::Partition
                | FaultKind::Skew
        )
    }

    /// Its name on the command line and in the summary.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Drop => "drop",
            FaultKind::Delay => "delay",
            FaultKind::Duplicate => "duplicate",
            FaultKind::Reorder => "reorder",
            FaultKind::Partition => "partition",
            FaultKind::Skew => "skew",
            FaultKind::Crash => "crash",
            FaultKind::CorruptChunk => "corrupt-chunk",
            FaultKind::Equivocate => "equivocate",
            FaultKind::ConflictingVotes => "conflicting-votes",
            FaultKind::BadSignatures => "bad-signatures",
            FaultKind::Silent => "silent",
            FaultKind::Replay => "replay",
            FaultKind::WithholdPayloads => "withhold-payloads",
            FaultKind::SkewEdge => "skew-edge",
            FaultKind::Flood => "flood",
            FaultKind::Twins => "twins",
            FaultKind::ByzantineClients => "byzantine-clients",
        }
    }
}

/// A set of fault kinds: `benign` (network faults and skew), `all`
/// (benign plus crashes), `none`, or a comma-separated list of names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultSet(pub BTreeSet<FaultKind>);

impl FaultSet {
    /// The benign faults of issue 3: network faults and bounded skew (no
    /// crashes, no corrupt chunks).
    pub fn benign() -> FaultSet {
        FaultSet(
            FaultKind::ALL
                .into_iter()
                .filter(|k| k.is_benign())
                .collect(),
        )
    }

    /// Every kind.
    pub fn all() -> FaultSet {
        FaultSet(FaultKind::ALL.into_iter().collect())
    }

    /// Whether `kind` is on.
    pub fn has(&self, kind: FaultKind) -> bool {
        self.0.contains(&kind)
    }
}

impl FromStr for FaultSet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "benign" => return Ok(FaultSet::benign()),
            "byzantine" => {
                return Ok(FaultSet(
                    FaultKind::ALL
                        .into_iter()
                        .filter(|k| !k.is_benign() && *k != FaultKind::Crash)
                        .collect(),
                ))
            }
            "all" => return Ok(FaultSet::all()),
            "none" | "" => return Ok(FaultSet(BTreeSet::new())),
            _ => {}
        }
        let mut set = BTreeSet::new();
        for name in s.split(',').map(str::trim) {
            let kind = FaultKind::ALL
                .into_iter()
                .find(|k| k.name() == name)
                .ok_or_else(|| format!("unknown fault kind {name:?}"))?;
            set.insert(kind);
        }
        Ok(FaultSet(set))
    }
}

impl fmt::Display for FaultSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.0.iter().map(|k| k.name()).collect();
        f.write_str(&names.join(","))
    }
}

/// A scripted partition: from `at_micros` (after the start) for
/// `length_micros`, replica `i` is in group `groups[i]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptedPartition {
    /// When it starts, from the start of the run.
    pub at_micros: u64,
    /// How long it lasts.
    pub length_micros: u64,
    /// Each replica's side.
    pub groups: Vec<bool>,
}

/// One run.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Everything random in the run comes from this seed.
    pub seed: u64,
    /// Replicas `n`.
    pub replicas: usize,
    /// Faults injected during the safety phase.
    pub faults: FaultSet,
    /// Simulated clients (each keeps one request outstanding).
    pub clients: usize,
    /// Requests each client submits.
    pub requests_per_client: u64,
    /// Virtual length of the safety phase (faults on, clients submitting).
    pub safety_micros: u64,
    /// After healing, every pending request must commit at every replica
    /// within this virtual time, else it is a liveness failure.
    pub liveness_micros: u64,
    /// Partitions to inject in addition to the random ones (scenario
    /// tests).
    pub scripted_partitions: Vec<ScriptedPartition>,
    /// Crashes to inject in addition to the random ones: `(replica, at
    /// micros from the start, down for micros)`.
    pub scripted_crashes: Vec<(usize, u64, u64)>,
    /// The test application's pulse: a deadline every this many
    /// microseconds of effective time, which heartbeat batches must reach
    /// even when no client submits (off by default).
    pub pulse_micros: Option<u64>,
    /// Keep the full trace (for the determinism test); its digest is
    /// always computed.
    pub keep_trace: bool,
    /// What the replicas execute and the clients submit.
    pub workload: crate::workload::Workload,
    /// TEST ONLY: run a deliberately broken core (mutation checks, issue
    /// 5): the checkers must report a violation.
    pub mutation: consensus::Mutation,
    /// The replicas that run `mutation`; empty means every replica.
    pub mutated_replicas: Vec<usize>,
    /// Scenario tests: these replicas are Byzantine with every enabled
    /// Byzantine kind (instead of a random draw of at most `f`).
    pub byzantine: Vec<usize>,
}

impl SimOptions {
    /// The defaults for `seed` and `replicas`, with the benign faults.
    pub fn new(seed: u64, replicas: usize) -> SimOptions {
        SimOptions {
            seed,
            replicas,
            faults: FaultSet::benign(),
            clients: 6,
            requests_per_client: 10,
            safety_micros: 2_000_000,
            liveness_micros: 10_000_000,
            scripted_partitions: Vec::new(),
            scripted_crashes: Vec::new(),
            pulse_micros: None,
            keep_trace: false,
            workload: crate::workload::Workload::default(),
            mutation: consensus::Mutation::None,
            mutated_replicas: Vec::new(),
            byzantine: Vec::new(),
        }
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        let mut command = format!(
            "simulator sim --seed {} --replicas {} --faults {} --clients {} --requests {}",
            self.seed, self.replicas, self.faults, self.clients, self.requests_per_client
        );
        command.push_str(&format!(" --workload {}", self.workload));
        if let Some(pulse) = self.pulse_micros {
            command.push_str(&format!(" --pulse-micros {pulse}"));
        }
        if self.mutation != consensus::Mutation::None {
            command.push_str(&format!(" --mutate {}", self.mutation.name()));
            let chosen: Vec<String> = self
                .mutated_replicas
                .iter()
                .map(|r| r.to_string())
                .collect();
            if !chosen.is_empty() {
                command.push_str(&format!(":{}", chosen.join(",")));
            }
        }
        command
    }

    /// Whether replica `i` runs the mutation.
    pub fn mutated(&self, i: usize) -> bool {
        self.mutation != consensus::Mutation::None
            && (self.mutated_replicas.is_empty() || self.mutated_replicas.contains(&i))
    }
}

/// Parses `--mutate NAME[:i,j,...]`: a [`consensus::Mutation`] name and
/// optionally the replicas that run it (default: all).
pub fn parse_mutation(s: &str) -> Result<(consensus::Mutation, Vec<usize>), String> {
    let (name, replicas) = s.split_once(':').unwrap_or((s, ""));
    let mutation = consensus::Mutation::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = consensus::Mutation::ALL.iter().map(|m| m.name()).collect();
        format!("unknown mutation {name:?}; one of {}", names.join(", "))
    })?;
    let replicas = replicas
        .split(',')
        .filter(|r| !r.is_empty())
        .map(|r| r.trim().parse::<usize>().map_err(|e| e.to_string()))
        .collect::<Result<Vec<usize>, String>>()?;
    Ok((mutation, replicas))
}
