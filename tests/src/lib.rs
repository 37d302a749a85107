//! End-to-end tests of QLOCK against real multi-process clusters on
//! 127.0.0.1, each bounded in time and stopping what it started. The tests
//! themselves live in `tests/tests/`; this is their one fixture, built on
//! the harness library of `simulator cluster` ([`simulator::cluster`]):
//! start, stop, kill -9, pause, resume and restart replicas, find the
//! primary, run a workload, collect its history and check it.
//!
//! The binaries under test (`qlockd`, `qlock`) are found next to the test
//! executable (`target/<profile>/`); `cargo test --workspace` builds them.
//! Clusters of one test binary run one at a time ([`TestCluster::start`]
//! takes a turn), so timing-sensitive parts (view-change timeouts) do not
//! compete for the CPU with another cluster.

use client::{Client, ClientOptions, ClusterConfig};
use primitives::{KeyPair, PulseNumber};
use simulator::cluster::history::{check_history, CheckReport};
use simulator::cluster::{ClusterSpec, LocalCluster, WorkloadReport, WorkloadRun, WorkloadSpec};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub use simulator::cluster::{self, NodeState, WorkloadKind};

/// The view-change timeout of test clusters (qlockd's default is 2 s): a
/// test with a failed primary waits less.
pub const VIEW_CHANGE_MS: u64 = 1_000;

/// The liveness bound the tests allow for a cluster to recover from a
/// fault (generous: a statement about liveness, never about speed).
pub const RECOVERY: Duration = Duration::from_secs(30);

/// How long tests poll between looks.
const POLL: Duration = Duration::from_millis(200);

/// Log lines of each replica shown when a test fails.
const LOG_TAIL_LINES: usize = 40;

/// One cluster at a time per test binary.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The executable `name` next to the test binary, or a panic that says
/// how to build it.
pub fn binary(name: &str) -> PathBuf {
    match simulator::cluster::locate_binary(name) {
        Ok(path) => path,
        Err(e) => panic!(
            "{e}\nThe end-to-end tests run the real binaries: run `cargo test --workspace`, which builds {name} into the target directory next to the tests."
        ),
    }
}

/// Runs `f`, failing the test if it takes longer than `limit`.
pub async fn bounded<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not done within {} s", limit.as_secs()),
    }
}

/// Polls `probe` until it returns `Some`, at most `limit`; panics naming
/// `what` and the last observation otherwise.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!(
                    "{what}: not within {} s; last seen: {last}",
                    limit.as_secs()
                )
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// A local cluster owned by one test: stopped on drop (killed, if the test
/// panicked, after printing the tail of every replica's log).
pub struct TestCluster {
    /// The processes.
    pub cluster: LocalCluster,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl std::ops::Deref for TestCluster {
    type Target = LocalCluster;
    fn deref(&self) -> &LocalCluster {
        &self.cluster
    }
}

impl std::ops::DerefMut for TestCluster {
    fn deref_mut(&mut self) -> &mut LocalCluster {
        &mut self.cluster
    }
}

impl TestCluster {
    /// Waits for this binary's turn, then starts `nodes` replicas on free
    /// ports with [`VIEW_CHANGE_MS`] and waits until they commit.
    pub async fn start(nodes: usize) -> TestCluster {
        let turn = TURN.lock().await;
        let mut spec = ClusterSpec::new(nodes, binary("qlockd"));
        spec.view_change_ms = Some(VIEW_CHANGE_MS);
        let cluster = match LocalCluster::launch(spec).await {
            Ok(c) => c,
            Err(e) => panic!("the cluster did not start: {e}"),
        };
        TestCluster {
            cluster,
            _turn: turn,
        }
    }

    /// A client with a fresh key, talking to any replica.
    pub async fn client(&self) -> Client {
        connect(
            self.client_config(),
            KeyPair::generate(&mut rand::rngs::OsRng),
        )
        .await
    }

    /// A client signing with `key` (its sessions survive a reconnect).
    pub async fn connect_with(&self, key: KeyPair) -> Client {
        connect(self.client_config(), key).await
    }

    /// A client that can reach replica `i` only.
    pub async fn client_of(&self, i: usize) -> Client {
        connect(
            self.only_replica_config(i),
            KeyPair::generate(&mut rand::rngs::OsRng),
        )
        .await
    }

    /// Runs a workload of `kind` for `duration` with `clients` clients and
    /// waits for its end.
    pub async fn run_workload(
        &self,
        kind: WorkloadKind,
        clients: usize,
        duration: Duration,
    ) -> WorkloadReport {
        let run = self.start_workload(kind, clients, duration);
        run.finish(self.n()).await
    }

    /// Starts a workload and returns at once (faults can be applied while
    /// it runs).
    pub fn start_workload(
        &self,
        kind: WorkloadKind,
        clients: usize,
        duration: Duration,
    ) -> WorkloadRun {
        let spec = WorkloadSpec::new(kind, clients, duration);
        WorkloadRun::start(self.client_config(), spec).expect("a valid workload")
    }

    /// The replica every running replica names as primary (see
    /// [`LocalCluster::primary`]), waiting for one.
    pub async fn primary_now(&mut self) -> usize {
        match self.wait_for_primary(RECOVERY).await {
            Some(p) => p,
            None => panic!(
                "the replicas agree on no primary within {} s",
                RECOVERY.as_secs()
            ),
        }
    }

    /// Waits until every replica in `replicas` reports the same view and
    /// the same last executed seq (nothing in flight); returns them.
    pub async fn settled(&mut self, replicas: &[usize]) -> (u64, u64) {
        let replicas = replicas.to_vec();
        let me = &*self;
        eventually(RECOVERY, "replicas agree on view and executed seq", || {
            let replicas = replicas.clone();
            async move {
                let mut seen = Vec::new();
                for &i in &replicas {
                    let s = me
                        .status(i)
                        .await
                        .map_err(|e| format!("replica {i}: {e}"))?;
                    seen.push((s.view.0, s.last_executed.0));
                }
                if seen.windows(2).all(|w| w[0] == w[1]) {
                    Ok(seen[0])
                } else {
                    Err(format!("(view, executed) per replica: {seen:?}"))
                }
            }
        })
        .await
    }

    /// The certified pulse headers replica `i` serves (every certificate
    /// and link checked by the client), as `(pulse, header digest)`.
    pub async fn pulses_of(&self, i: usize) -> Vec<(u64, String)> {
        let c = self.client_of(i).await;
        let pulses = bounded(RECOVERY, "pulses", c.pulses(PulseNumber(1), 10_000))
            .await
            .unwrap_or_else(|e| panic!("pulses from replica {i}: {e}"));
        pulses
            .iter()
            .map(|p| (p.header.pulse.0, p.header.digest().to_hex()))
            .collect()
    }

    /// Every replica in `replicas` serves the same lockchain (on the
    /// pulses they all have) and at least `min` pulses; returns the
    /// shortest chain's length.
    pub async fn lockchains_agree(&self, replicas: &[usize], min: usize) -> usize {
        let mut chains = Vec::new();
        for &i in replicas {
            chains.push((i, self.pulses_of(i).await));
        }
        let shortest = chains.iter().map(|(_, c)| c.len()).min().unwrap_or(0);
        assert!(
            shortest >= min,
            "a replica serves {shortest} pulses, fewer than {min}: {:?}",
            chains.iter().map(|(i, c)| (i, c.len())).collect::<Vec<_>>()
        );
        let (first, reference) = &chains[0];
        for (i, chain) in &chains[1..] {
            assert_eq!(
                &chain[..shortest],
                &reference[..shortest],
                "replicas {first} and {i} serve different lockchains: a fork"
            );
        }
        shortest
    }

    /// Runs the `qlock` CLI with `--json` against this cluster (cluster
    /// file `cluster`, key `key`) and returns its exit code and JSON.
    /// Needs a multi-threaded runtime.
    pub fn qlock(&self, cluster: &Path, key: &Path, args: &[&str]) -> (i32, serde_json::Value) {
        let mut command = Command::new(binary("qlock"));
        command
            .arg("--cluster")
            .arg(cluster)
            .arg("--key")
            .arg(key)
            .arg("--json")
            .args(args);
        // A child process from async code: let the runtime move its other
        // tasks (workload clients) off this thread meanwhile.
        let output = tokio::task::block_in_place(|| command.output())
            .unwrap_or_else(|e| panic!("cannot run qlock: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "qlock {args:?} printed no JSON ({e}): stdout {stdout:?}, stderr {:?}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output.status.code().unwrap_or(-1), json)
    }

    fn print_logs(&self) {
        for i in 0..self.n() {
            let path = self.log_file(i);
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            eprintln!(
                "---- replica {i} log ({}), last {} lines",
                path.display(),
                tail.len()
            );
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
            // LocalCluster's own drop kills every replica.
        } else {
            self.cluster.stop_all();
        }
    }
}

async fn connect(config: ClusterConfig, key: KeyPair) -> Client {
    let options = ClientOptions {
        request_timeout: Duration::from_secs(5),
        keepalive: false,
        ..ClientOptions::default()
    };
    bounded(
        RECOVERY,
        "client connect",
        Client::connect(config, key, options),
    )
    .await
    .unwrap_or_else(|e| panic!("no replica accepted a client: {e}"))
}

/// Checks a workload's history; panics with every violation otherwise.
pub fn assert_history_passes(report: &WorkloadReport) -> CheckReport {
    assert!(
        !report.history_full,
        "the history reached its bound: the run is too long to check"
    );
    assert_eq!(report.aborted, 0, "clients still busy at the end bound");
    let check = check_history(&report.history, &qlock::Config::default());
    assert!(
        check.passed(),
        "history check failed: {}\nviolations: {:#?}\ninconclusive: {:?}",
        check.summary(),
        check.violations,
        check.inconclusive()
    );
    check
}
