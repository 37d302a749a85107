//! Faults at chosen times: kill -9, restart, pause (SIGSTOP) and resume
//! (SIGCONT) a chosen replica or the current primary.
//!
//! Command-line forms: a time is `15s`, `500ms`, `2m` or plain seconds;
//! a target is a replica index or `primary`. `--kill primary@15s` (or
//! `--kill-primary-at 15s`) kills whoever is primary at 15 s; a later
//! `--restart primary@25s` restarts the replica that kill hit. `--pause
//! 1@5s..12s` pauses replica 1 from 5 s to 12 s (with `primary`, the
//! replica paused at the start is the one resumed).

use super::process::{ClusterError, LocalCluster};
use std::fmt;
use std::time::Duration;

/// Faults in one run at most.
pub const FAULTS_MAX: usize = 256;

/// How long a primary-targeted fault waits for the replicas to agree on
/// a primary.
const PRIMARY_WAIT: Duration = Duration::from_secs(10);

/// Parses `15s`, `500ms`, `2m`, `1.5s` or `10` (seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (15s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: unit must be ms, s or m")),
    };
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{text:?}: must be 0 to 24 h"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Which replica a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Replica `i`.
    Node(usize),
    /// Whoever is primary at the time (for restart and resume: the replica
    /// an earlier primary-targeted kill or pause hit).
    Primary,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Node(i) => write!(f, "replica {i}"),
            Target::Primary => f.write_str("the primary"),
        }
    }
}

fn parse_target(text: &str) -> Result<Target, String> {
    if text == "primary" {
        return Ok(Target::Primary);
    }
    text.parse()
        .map(Target::Node)
        .map_err(|_| format!("{text:?} is not a replica index or `primary`"))
}

/// Parses `NODE@TIME` (`2@10s`, `primary@15s`).
pub fn parse_node_at(text: &str) -> Result<(Target, Duration), String> {
    let (node, at) = text
        .split_once('@')
        .ok_or_else(|| format!("{text:?} is not NODE@TIME (2@10s, primary@15s)"))?;
    Ok((parse_target(node)?, parse_duration(at)?))
}

/// Parses `NODE@FROM..TO` (`1@5s..12s`).
pub fn parse_pause(text: &str) -> Result<(Target, Duration, Duration), String> {
    let (node, range) = text
        .split_once('@')
        .ok_or_else(|| format!("{text:?} is not NODE@FROM..TO (1@5s..12s)"))?;
    let (from, to) = range
        .split_once("..")
        .ok_or_else(|| format!("{text:?} is not NODE@FROM..TO (1@5s..12s)"))?;
    let (from, to) = (parse_duration(from)?, parse_duration(to)?);
    if to <= from {
        return Err(format!("{text:?}: the pause must end after it starts"));
    }
    Ok((parse_target(node)?, from, to))
}

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `kill -9`.
    Kill,
    /// Start again on its data (stopping it first if it runs).
    Restart,
    /// SIGSTOP.
    Pause,
    /// SIGCONT.
    Resume,
}

/// One fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// When, since the workload started.
    pub at: Duration,
    /// What.
    pub action: Action,
    /// To whom.
    pub target: Target,
}

/// A fault as it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// When it was applied, ns since the workload started.
    pub at_ns: u64,
    /// The fault.
    pub fault: Fault,
    /// The replica it hit.
    pub node: Option<usize>,
    /// What happened, for people.
    pub note: String,
}

/// Faults in time order, and which replica each primary-targeted one hit.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    faults: Vec<Fault>,
    next: usize,
    /// The replica the last primary-targeted kill hit.
    killed_primary: Option<usize>,
    /// The replica the last primary-targeted pause hit.
    paused_primary: Option<usize>,
}

impl FaultPlan {
    /// A plan of `faults` (sorted by time; at equal times in the given
    /// order). Refuses more than [`FAULTS_MAX`] and replicas out of range.
    pub fn new(mut faults: Vec<Fault>, nodes: usize) -> Result<FaultPlan, String> {
        if faults.len() > FAULTS_MAX {
            return Err(format!("at most {FAULTS_MAX} faults, not {}", faults.len()));
        }
        for f in &faults {
            if let Target::Node(i) = f.target {
                if i >= nodes {
                    return Err(format!("replica {i} is not in 0..{nodes}"));
                }
            }
        }
        faults.sort_by_key(|f| f.at);
        Ok(FaultPlan {
            faults,
            ..FaultPlan::default()
        })
    }

    /// The faults of the command-line flags.
    pub fn from_flags(
        kill_primary_at: &[Duration],
        kill: &[(Target, Duration)],
        restart: &[(Target, Duration)],
        pause: &[(Target, Duration, Duration)],
        nodes: usize,
    ) -> Result<FaultPlan, String> {
        let mut faults = Vec::new();
        for at in kill_primary_at {
            faults.push(Fault {
                at: *at,
                action: Action::Kill,
                target: Target::Primary,
            });
        }
        for (target, at) in kill {
            faults.push(Fault {
                at: *at,
                action: Action::Kill,
                target: *target,
            });
        }
        for (target, at) in restart {
            faults.push(Fault {
                at: *at,
                action: Action::Restart,
                target: *target,
            });
        }
        for (target, from, to) in pause {
            faults.push(Fault {
                at: *from,
                action: Action::Pause,
                target: *target,
            });
            faults.push(Fault {
                at: *to,
                action: Action::Resume,
                target: *target,
            });
        }
        FaultPlan::new(faults, nodes)
    }

    /// Every fault, in time order.
    pub fn faults(&self) -> &[Fault] {
        &self.faults
    }

    /// The time of the next fault not applied yet.
    pub fn next_at(&self) -> Option<Duration> {
        self.faults.get(self.next).map(|f| f.at)
    }

    /// The latest fault time.
    pub fn last_at(&self) -> Option<Duration> {
        self.faults.last().map(|f| f.at)
    }

    /// Applies every fault due by `elapsed` (since the workload started,
    /// `now_ns` in ns) to `cluster`. A fault that cannot be applied (its
    /// replica is down, no primary is agreed) is reported, not fatal.
    pub async fn apply_due(
        &mut self,
        cluster: &mut LocalCluster,
        elapsed: Duration,
        now_ns: u64,
    ) -> Vec<Applied> {
        let mut applied = Vec::new();
        while let Some(fault) = self.faults.get(self.next).copied() {
            if fault.at > elapsed {
                break;
            }
            self.next += 1;
            let (node, note) = match self.apply(cluster, fault).await {
                Ok((node, note)) => (Some(node), note),
                Err(e) => (None, format!("not applied: {e}")),
            };
            applied.push(Applied {
                at_ns: now_ns,
                fault,
                node,
                note,
            });
        }
        applied
    }

    async fn apply(
        &mut self,
        cluster: &mut LocalCluster,
        fault: Fault,
    ) -> Result<(usize, String), ClusterError> {
        let node = match (fault.target, fault.action) {
            (Target::Node(i), _) => i,
            (Target::Primary, Action::Kill | Action::Pause) => cluster
                .wait_for_primary(PRIMARY_WAIT)
                .await
                .ok_or_else(|| ClusterError::Invalid("the replicas agree on no primary".into()))?,
            (Target::Primary, Action::Restart) => self.killed_primary.ok_or_else(|| {
                ClusterError::Invalid("no primary was killed before this restart".into())
            })?,
            (Target::Primary, Action::Resume) => self.paused_primary.ok_or_else(|| {
                ClusterError::Invalid("no primary was paused before this resume".into())
            })?,
        };
        let who = match fault.target {
            Target::Primary => format!("replica {node} (primary)"),
            Target::Node(_) => format!("replica {node}"),
        };
        let note = match fault.action {
            Action::Kill => {
                cluster.kill(node)?;
                if fault.target == Target::Primary {
                    self.killed_primary = Some(node);
                }
                format!("kill -9 {who}")
            }
            Action::Restart => {
                cluster.restart(node)?;
                format!("restarted {who}")
            }
            Action::Pause => {
                cluster.pause(node)?;
                if fault.target == Target::Primary {
                    self.paused_primary = Some(node);
                }
                format!("paused {who} (SIGSTOP)")
            }
            Action::Resume => {
                cluster.resume(node)?;
                format!("resumed {who} (SIGCONT)")
            }
        };
        Ok((node, note))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_their_units() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn fault_flags_parse_targets_and_ranges() {
        assert_eq!(
            parse_node_at("primary@15s"),
            Ok((Target::Primary, Duration::from_secs(15)))
        );
        assert_eq!(
            parse_node_at("2@500ms"),
            Ok((Target::Node(2), Duration::from_millis(500)))
        );
        assert_eq!(
            parse_pause("1@5s..12s"),
            Ok((
                Target::Node(1),
                Duration::from_secs(5),
                Duration::from_secs(12)
            ))
        );
        assert!(parse_pause("1@12s..5s").is_err(), "an empty pause");
        assert!(parse_node_at("2").is_err());
        assert!(parse_node_at("two@1s").is_err());
    }

    #[test]
    fn a_plan_is_in_time_order_and_pairs_each_pause_with_its_resume() {
        let plan = FaultPlan::from_flags(
            &[Duration::from_secs(15)],
            &[(Target::Node(3), Duration::from_secs(2))],
            &[(Target::Primary, Duration::from_secs(20))],
            &[(
                Target::Node(1),
                Duration::from_secs(5),
                Duration::from_secs(8),
            )],
            4,
        )
        .unwrap();
        let order: Vec<(u64, Action)> = plan
            .faults()
            .iter()
            .map(|f| (f.at.as_secs(), f.action))
            .collect();
        assert_eq!(
            order,
            vec![
                (2, Action::Kill),
                (5, Action::Pause),
                (8, Action::Resume),
                (15, Action::Kill),
                (20, Action::Restart)
            ]
        );
        assert!(
            FaultPlan::from_flags(&[], &[(Target::Node(4), Duration::ZERO)], &[], &[], 4).is_err()
        );
    }
}
