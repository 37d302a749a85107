//! Real `qlockd` processes on 127.0.0.1: a cluster written by `qlockd
//! init-cluster` into a directory, each replica a child process that can
//! be stopped (SIGTERM), killed (SIGKILL), paused (SIGSTOP), resumed
//! (SIGCONT) and restarted on the same data directory, and asked for its
//! status and metrics over HTTP.
//!
//! Everything started here is stopped here: [`LocalCluster::stop_all`], or
//! on drop (kill -9, so a panicking test leaves no replica behind) unless
//! [`LocalCluster::keep`] hands the processes over on purpose. Children
//! run in their own process group, so a Ctrl-C at the terminal reaches the
//! harness only, which then stops them in order.

use super::http;
use client::api::StatusReport;
use client::ClusterConfig;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use primitives::ReplicaId;
use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The most replicas a local cluster runs (each is a whole process with
/// RocksDB; `init-cluster` allows 100 ports per kind).
pub const NODES_MAX: usize = 32;

/// How long a replica gets after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Start attempts with freshly picked ports when a replica dies at start
/// (a port picked as free was taken meanwhile by another process).
const START_ATTEMPTS_MAX: usize = 3;

/// Picked base ports lie here: below Linux's ephemeral range (32768 and
/// up), so an outgoing connection cannot hold a replica's port when it
/// restarts, and away from `init-cluster`'s default 7100.
const PORT_RANGE: std::ops::Range<u16> = 10_000..32_000;

/// How often readiness and fault loops poll.
const POLL: Duration = Duration::from_millis(100);

/// One HTTP query's bound.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the harness could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A binary is not where it was looked for.
    #[error("{name} not found (looked in {looked}): build it with `cargo test --workspace` (test profile, target/debug) or `cargo build --release -p node -p client -p simulator`, or pass its path")]
    BinaryMissing {
        /// The binary's name.
        name: String,
        /// Where it was looked for.
        looked: String,
    },
    /// A process could not be started.
    #[error("cannot run {what}: {source}")]
    Spawn {
        /// The command.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// `qlockd init-cluster` failed.
    #[error("qlockd init-cluster failed: {0}")]
    Init(String),
    /// A file of the cluster could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The arguments make no cluster.
    #[error("{0}")]
    Invalid(String),
    /// A replica is not in the state the operation needs.
    #[error("replica {replica}: {reason}")]
    Replica {
        /// The replica.
        replica: usize,
        /// Why.
        reason: String,
    },
    /// A signal could not be sent.
    #[error("signal {signal} to replica {replica} (pid {pid}): {source}")]
    Signal {
        /// The signal.
        signal: &'static str,
        /// The replica.
        replica: usize,
        /// Its pid.
        pid: u32,
        /// The OS error.
        source: nix::Error,
    },
    /// The cluster did not become ready in time.
    #[error("cluster not ready after {secs} s: {detail} (replica logs: {logs})")]
    NotReady {
        /// The bound.
        secs: u64,
        /// What was still missing.
        detail: String,
        /// Where the replicas' logs are.
        logs: String,
    },
}

/// Finds the executable `name` next to the running one: the same
/// directory, or its parent when the running one is a test binary in
/// `target/<profile>/deps/`.
pub fn locate_binary(name: &str) -> Result<PathBuf, ClusterError> {
    let exe = std::env::current_exe().map_err(|e| ClusterError::BinaryMissing {
        name: name.to_string(),
        looked: format!("(no current executable: {e})"),
    })?;
    let mut dirs = Vec::new();
    if let Some(dir) = exe.parent() {
        dirs.push(dir.to_path_buf());
        if dir.file_name().is_some_and(|n| n == "deps") {
            if let Some(up) = dir.parent() {
                dirs.push(up.to_path_buf());
            }
        }
    }
    for dir in &dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(ClusterError::BinaryMissing {
        name: name.to_string(),
        looked: dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// What cluster to run.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Replicas, `1..=NODES_MAX`.
    pub nodes: usize,
    /// The `qlockd` executable.
    pub qlockd: PathBuf,
    /// Where to write the cluster (must not hold one yet); `None`: a fresh
    /// temporary directory, removed when the cluster is dropped (unless
    /// kept).
    pub dir: Option<PathBuf>,
    /// `init-cluster`'s base port; `None`: free ports picked at random
    /// (and picked again if a replica cannot bind).
    pub base_port: Option<u16>,
    /// `timeouts.view_change_ms` of every replica, if not the default.
    pub view_change_ms: Option<u64>,
    /// `timeouts.request_ms` (a gateway's wait for a certified reply), if
    /// not the default.
    pub request_ms: Option<u64>,
    /// Further integer settings of every replica's config, as
    /// `("section.key", value)` (`("batching.delay_ms", 20)`); qlockd
    /// refuses unknown keys when it starts.
    pub settings: Vec<(String, i64)>,
    /// `RUST_LOG` of the replicas (their logs go to `replica-i.log`).
    pub log_filter: String,
    /// How long [`LocalCluster::launch`] waits for the cluster to commit.
    pub ready_timeout: Duration,
}

impl ClusterSpec {
    /// `nodes` replicas of `qlockd` in a temporary directory on random
    /// ports, with qlockd's default timeouts.
    pub fn new(nodes: usize, qlockd: PathBuf) -> ClusterSpec {
        ClusterSpec {
            nodes,
            qlockd,
            dir: None,
            base_port: None,
            view_change_ms: None,
            request_ms: None,
            settings: Vec::new(),
            log_filter: "info".to_string(),
            ready_timeout: Duration::from_secs(60),
        }
    }
}

/// The directory a cluster lives in.
#[derive(Debug)]
enum ClusterDir {
    /// Removed on drop.
    Temp(tempfile::TempDir),
    /// Left in place.
    Kept(PathBuf),
}

impl ClusterDir {
    fn path(&self) -> &Path {
        match self {
            ClusterDir::Temp(t) => t.path(),
            ClusterDir::Kept(p) => p,
        }
    }
}

/// What a replica process is doing, as far as the harness knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Running.
    Running,
    /// Stopped with SIGSTOP.
    Paused,
    /// Not running: never started, stopped, killed or exited.
    Down,
}

#[derive(Debug)]
struct Node {
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    paused: bool,
    /// How the last process ended, if it did.
    exit: Option<ExitStatus>,
    /// Ended by the harness (stop or kill) rather than by itself.
    ended_on_purpose: bool,
}

/// A running local cluster of `qlockd` processes.
#[derive(Debug)]
pub struct LocalCluster {
    dir: ClusterDir,
    spec: ClusterSpec,
    nodes: Vec<Node>,
    config: ClusterConfig,
    http: Vec<SocketAddr>,
    kept: bool,
}

/// A cluster left running by [`LocalCluster::keep`].
#[derive(Clone, Debug)]
pub struct KeptCluster {
    /// Its directory (configs, keys, data, logs, `cluster.toml`).
    pub dir: PathBuf,
    /// The replicas' pids, in id order (`None`: not running).
    pub pids: Vec<Option<u32>>,
    /// Each replica's client address.
    pub client: Vec<SocketAddr>,
    /// Each replica's HTTP address (`/metrics`, `/healthz`, `/v1/...`).
    pub http: Vec<SocketAddr>,
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> ClusterError {
    ClusterError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Whether every port of an `init-cluster` of `n` at `base` can be bound
/// on 127.0.0.1 right now.
fn ports_free(base: u16, n: usize) -> bool {
    (0..n as u16).all(|i| {
        [0u16, 100, 200]
            .iter()
            .all(|offset| std::net::TcpListener::bind(("127.0.0.1", base + offset + i)).is_ok())
    })
}

/// A base port whose `3n` ports are free now.
fn pick_base_port(n: usize) -> Result<u16, ClusterError> {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    for _ in 0..200 {
        let base = rng.gen_range(PORT_RANGE.start..PORT_RANGE.end - 200 - n as u16);
        if ports_free(base, n) {
            return Ok(base);
        }
    }
    Err(ClusterError::Invalid(
        "no free ports for a local cluster after 200 tries".into(),
    ))
}

impl LocalCluster {
    /// Writes the cluster (`qlockd init-cluster`), starts every replica
    /// and waits until the cluster commits a request. With random ports,
    /// a replica that dies at start (its port was taken meanwhile) makes
    /// it try again on other ports, a few times.
    pub async fn launch(spec: ClusterSpec) -> Result<LocalCluster, ClusterError> {
        if spec.nodes == 0 || spec.nodes > NODES_MAX {
            return Err(ClusterError::Invalid(format!(
                "--nodes must be 1 to {NODES_MAX}, not {}",
                spec.nodes
            )));
        }
        if !spec.qlockd.is_file() {
            return Err(ClusterError::BinaryMissing {
                name: "qlockd".into(),
                looked: spec.qlockd.display().to_string(),
            });
        }
        let attempts = if spec.base_port.is_some() || spec.dir.is_some() {
            1
        } else {
            START_ATTEMPTS_MAX
        };
        let mut last = None;
        for _ in 0..attempts {
            let mut cluster = LocalCluster::write(spec.clone())?;
            cluster.start_all()?;
            match cluster.wait_ready(spec.ready_timeout).await {
                Ok(()) => return Ok(cluster),
                Err(e) => {
                    let died = cluster.nodes.iter_mut().any(|n| {
                        n.child
                            .as_mut()
                            .is_some_and(|c| !matches!(c.try_wait(), Ok(None)))
                    });
                    cluster.stop_all();
                    if !died {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// Writes the cluster's files and edits the configs; starts nothing.
    fn write(spec: ClusterSpec) -> Result<LocalCluster, ClusterError> {
        let dir = match &spec.dir {
            Some(d) => {
                if d.join("cluster.toml").exists() {
                    return Err(ClusterError::Invalid(format!(
                        "{} already holds a cluster: remove it or pick another --dir",
                        d.display()
                    )));
                }
                std::fs::create_dir_all(d).map_err(|e| file_error(d, e))?;
                ClusterDir::Kept(d.clone())
            }
            None => ClusterDir::Temp(
                tempfile::Builder::new()
                    .prefix("qlock-cluster-")
                    .tempdir()
                    .map_err(|e| file_error(Path::new("temporary directory"), e))?,
            ),
        };
        let base = match spec.base_port {
            Some(b) => b,
            None => pick_base_port(spec.nodes)?,
        };
        let output = Command::new(&spec.qlockd)
            .arg("init-cluster")
            .arg("--replicas")
            .arg(spec.nodes.to_string())
            .arg("--dir")
            .arg(dir.path())
            .arg("--base-port")
            .arg(base.to_string())
            .stdin(Stdio::null())
            .output()
            .map_err(|source| ClusterError::Spawn {
                what: format!("{} init-cluster", spec.qlockd.display()),
                source,
            })?;
        if !output.status.success() {
            return Err(ClusterError::Init(
                String::from_utf8_lossy(&output.stderr).trim().to_string(),
            ));
        }
        let mut nodes = Vec::new();
        for i in 0..spec.nodes {
            let config = dir.path().join(format!("replica-{i}.toml"));
            edit_config(&config, &spec)?;
            nodes.push(Node {
                config,
                log: dir.path().join(format!("replica-{i}.log")),
                child: None,
                paused: false,
                exit: None,
                ended_on_purpose: false,
            });
        }
        let cluster_file = dir.path().join("cluster.toml");
        let config =
            ClusterConfig::load(&cluster_file).map_err(|e| file_error(&cluster_file, e))?;
        let http = read_http_addresses(&cluster_file)?;
        Ok(LocalCluster {
            dir,
            spec,
            nodes,
            config,
            http,
            kept: false,
        })
    }

    fn start_all(&mut self) -> Result<(), ClusterError> {
        for i in 0..self.nodes.len() {
            self.start(i)?;
        }
        Ok(())
    }

    /// Waits until every running replica answers `/healthz` and a request
    /// commits (a fresh client's lock check).
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        let mut missing = String::from("no replica answered yet");
        while Instant::now() < deadline {
            if let Some((i, status)) = self.exited().into_iter().next() {
                return Err(ClusterError::Replica {
                    replica: i,
                    reason: format!(
                        "exited at start ({status}); see {}",
                        self.nodes[i].log.display()
                    ),
                });
            }
            let mut unhealthy = Vec::new();
            for i in 0..self.nodes.len() {
                if self.state(i) == NodeState::Running && !self.healthy(i).await {
                    unhealthy.push(i);
                }
            }
            if unhealthy.is_empty() {
                match self.probe().await {
                    Ok(()) => return Ok(()),
                    Err(e) => missing = format!("no request committed yet: {e}"),
                }
            } else {
                missing = format!("replicas {unhealthy:?} not serving /healthz");
            }
            tokio::time::sleep(POLL).await;
        }
        Err(ClusterError::NotReady {
            secs: timeout.as_secs(),
            detail: missing,
            logs: self.dir().join("replica-*.log").display().to_string(),
        })
    }

    /// One committed request through any replica.
    async fn probe(&self) -> Result<(), client::ClientError> {
        let key = primitives::KeyPair::generate(&mut rand::rngs::OsRng);
        let options = client::ClientOptions {
            request_timeout: Duration::from_secs(3),
            keepalive: false,
            ..client::ClientOptions::default()
        };
        let c = client::Client::connect(self.config.clone(), key, options).await?;
        c.check("qlock.harness.ready").await.map(|_| ())
    }

    /// Whether replica `i` answers `/healthz` with 200.
    pub async fn healthy(&self, i: usize) -> bool {
        matches!(http::get(self.http[i], "/healthz", HTTP_TIMEOUT).await, Ok(r) if r.status == 200)
    }

    /// The number of replicas.
    pub fn n(&self) -> usize {
        self.nodes.len()
    }

    /// `f`, the faults the cluster tolerates.
    pub fn f(&self) -> usize {
        (self.nodes.len() - 1) / 3
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The clients' cluster file.
    pub fn cluster_file(&self) -> PathBuf {
        self.dir().join("cluster.toml")
    }

    /// Replica `i`'s configuration file.
    pub fn config_file(&self, i: usize) -> &Path {
        &self.nodes[i].config
    }

    /// Replica `i`'s log file.
    pub fn log_file(&self, i: usize) -> &Path {
        &self.nodes[i].log
    }

    /// The clients' view of the cluster.
    pub fn client_config(&self) -> ClusterConfig {
        self.config.clone()
    }

    /// A view of the cluster in which only replica `i` is reachable (the
    /// others' client addresses point at a closed port): what a client
    /// learns then comes from `i` alone, still checked against every key.
    pub fn only_replica_config(&self, i: usize) -> ClusterConfig {
        let mut config = self.config.clone();
        for (j, r) in config.replicas.iter_mut().enumerate() {
            if j != i {
                // Port 1 on loopback: nothing listens there, connects fail
                // at once.
                r.client = SocketAddr::from(([127, 0, 0, 1], 1));
            }
        }
        config
    }

    /// Writes [`LocalCluster::only_replica_config`] as a cluster file for
    /// the `qlock` CLI (`--cluster FILE`), returning its path.
    pub fn write_only_replica_file(&self, i: usize) -> Result<PathBuf, ClusterError> {
        let source = self.cluster_file();
        let text = std::fs::read_to_string(&source).map_err(|e| file_error(&source, e))?;
        let mut table: toml::Table = text.parse().map_err(|e| file_error(&source, e))?;
        let replicas = table
            .get_mut("cluster")
            .and_then(|c| c.get_mut("replicas"))
            .and_then(|r| r.as_array_mut())
            .ok_or_else(|| file_error(&source, "no cluster.replicas"))?;
        for r in replicas.iter_mut() {
            let id = r.get("id").and_then(|v| v.as_integer());
            if id != Some(i as i64) {
                if let Some(t) = r.as_table_mut() {
                    t.insert("client".into(), toml::Value::String("127.0.0.1:1".into()));
                }
            }
        }
        let path = self.dir().join(format!("cluster-only-{i}.toml"));
        std::fs::write(&path, table.to_string()).map_err(|e| file_error(&path, e))?;
        Ok(path)
    }

    /// Replica `i`'s client protocol address.
    pub fn client_addr(&self, i: usize) -> SocketAddr {
        self.config.replicas[i].client
    }

    /// Replica `i`'s HTTP address.
    pub fn http_addr(&self, i: usize) -> SocketAddr {
        self.http[i]
    }

    /// Replica `i`'s pid, while it runs (or is paused).
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// What replica `i` is doing (a process that exited by itself is
    /// noticed here).
    pub fn state(&mut self, i: usize) -> NodeState {
        let node = &mut self.nodes[i];
        let Some(child) = node.child.as_mut() else {
            return NodeState::Down;
        };
        match child.try_wait() {
            Ok(None) if node.paused => NodeState::Paused,
            Ok(None) => NodeState::Running,
            Ok(Some(status)) => {
                node.exit = Some(status);
                node.child = None;
                node.paused = false;
                NodeState::Down
            }
            // Cannot tell: treat as running, a signal will tell.
            Err(_) => NodeState::Running,
        }
    }

    /// Replicas that exited by themselves (not stopped or killed by the
    /// harness) since they were started, with how they ended. A correct
    /// replica never does: the harness reports these.
    pub fn exited(&mut self) -> Vec<(usize, ExitStatus)> {
        (0..self.nodes.len())
            .filter_map(|i| {
                self.state(i);
                let node = &self.nodes[i];
                match (node.ended_on_purpose, node.exit) {
                    (false, Some(status)) => Some((i, status)),
                    _ => None,
                }
            })
            .collect()
    }

    /// Starts replica `i` on its existing configuration and data (a
    /// restart after a stop or a kill).
    pub fn start(&mut self, i: usize) -> Result<(), ClusterError> {
        self.check_index(i)?;
        if self.state(i) != NodeState::Down {
            return Err(ClusterError::Replica {
                replica: i,
                reason: "already running".into(),
            });
        }
        let node = &mut self.nodes[i];
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(|e| file_error(&node.log, e))?;
        let log_err = log.try_clone().map_err(|e| file_error(&node.log, e))?;
        let child = Command::new(&self.spec.qlockd)
            .arg("--config")
            .arg(&node.config)
            .env("RUST_LOG", &self.spec.log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            // Its own process group: a terminal's Ctrl-C goes to the
            // harness, which stops the replicas itself.
            .process_group(0)
            .spawn()
            .map_err(|source| ClusterError::Spawn {
                what: format!(
                    "{} --config {}",
                    self.spec.qlockd.display(),
                    node.config.display()
                ),
                source,
            })?;
        node.child = Some(child);
        node.paused = false;
        node.exit = None;
        node.ended_on_purpose = false;
        Ok(())
    }

    fn check_index(&self, i: usize) -> Result<(), ClusterError> {
        if i < self.nodes.len() {
            Ok(())
        } else {
            Err(ClusterError::Invalid(format!(
                "replica {i} is not in 0..{}",
                self.nodes.len()
            )))
        }
    }

    fn signal(&mut self, i: usize, signal: Signal) -> Result<(), ClusterError> {
        self.check_index(i)?;
        let Some(pid) = self.pid(i) else {
            return Err(ClusterError::Replica {
                replica: i,
                reason: format!("not running (cannot send {})", signal.as_str()),
            });
        };
        kill(Pid::from_raw(pid as i32), signal).map_err(|source| ClusterError::Signal {
            signal: signal.as_str(),
            replica: i,
            pid,
            source,
        })
    }

    /// `kill -9` replica `i` and reaps it: no shutdown, no final sync.
    pub fn kill(&mut self, i: usize) -> Result<(), ClusterError> {
        self.signal(i, Signal::SIGKILL)?;
        self.reap(i, None);
        Ok(())
    }

    /// Stops replica `i` with SIGTERM (a clean shutdown), killing it if it
    /// has not ended after [`STOP_GRACE`]. Returns its exit status.
    pub fn stop(&mut self, i: usize) -> Result<Option<ExitStatus>, ClusterError> {
        if self.nodes[i].paused {
            self.resume(i)?;
        }
        self.signal(i, Signal::SIGTERM)?;
        Ok(self.reap(i, Some(STOP_GRACE)))
    }

    /// Pauses replica `i` (SIGSTOP): it keeps its connections and state
    /// but does nothing until resumed.
    pub fn pause(&mut self, i: usize) -> Result<(), ClusterError> {
        self.signal(i, Signal::SIGSTOP)?;
        self.nodes[i].paused = true;
        Ok(())
    }

    /// Resumes a paused replica (SIGCONT).
    pub fn resume(&mut self, i: usize) -> Result<(), ClusterError> {
        self.signal(i, Signal::SIGCONT)?;
        self.nodes[i].paused = false;
        Ok(())
    }

    /// Stops replica `i` cleanly if it runs, then starts it again.
    pub fn restart(&mut self, i: usize) -> Result<(), ClusterError> {
        if self.state(i) != NodeState::Down {
            self.stop(i)?;
        }
        self.start(i)
    }

    /// Waits for replica `i` to end (up to `grace`, then SIGKILL; `None`:
    /// it was killed, wait for it).
    fn reap(&mut self, i: usize, grace: Option<Duration>) -> Option<ExitStatus> {
        let node = &mut self.nodes[i];
        let mut child = node.child.take()?;
        node.ended_on_purpose = true;
        node.paused = false;
        let status = match grace {
            None => child.wait().ok(),
            Some(grace) => {
                let deadline = Instant::now() + grace;
                loop {
                    match child.try_wait() {
                        Ok(Some(status)) => break Some(status),
                        Ok(None) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        _ => {
                            let _ = child.kill();
                            break child.wait().ok();
                        }
                    }
                }
            }
        };
        node.exit = status;
        status
    }

    /// Stops every replica: paused ones are resumed, all get SIGTERM at
    /// once, stragglers are killed after [`STOP_GRACE`].
    pub fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.state(i) == NodeState::Paused {
                let _ = self.resume(i);
            }
            if self.state(i) != NodeState::Down {
                let _ = self.signal(i, Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        for i in 0..self.nodes.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            self.reap(i, Some(left));
        }
    }

    /// Replica `i`'s status (`GET /v1/status`).
    pub async fn status(&self, i: usize) -> Result<StatusReport, String> {
        let r = http::get(self.http[i], "/v1/status", HTTP_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        if r.status != 200 {
            return Err(format!("status {}: {}", r.status, r.body.trim()));
        }
        serde_json::from_str(&r.body).map_err(|e| format!("status JSON: {e}"))
    }

    /// Replica `i`'s metrics text (`GET /metrics`).
    pub async fn metrics(&self, i: usize) -> Result<String, String> {
        let r = http::get(self.http[i], "/metrics", HTTP_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        if r.status != 200 {
            return Err(format!("metrics: status {}", r.status));
        }
        Ok(r.body)
    }

    /// One sample of replica `i`'s metrics (exact name, no labels).
    pub async fn metric(&self, i: usize, name: &str) -> Option<f64> {
        http::metric(&self.metrics(i).await.ok()?, name)
    }

    /// The statuses of the replicas that run and are not paused.
    pub async fn statuses(&mut self) -> Vec<(usize, StatusReport)> {
        let mut out = Vec::new();
        for i in 0..self.nodes.len() {
            if self.state(i) == NodeState::Running {
                if let Ok(s) = self.status(i).await {
                    out.push((i, s));
                }
            }
        }
        out
    }

    /// The primary that at least f + 1 running replicas name for the
    /// highest view so named (so at least one correct replica agrees);
    /// `None` while they disagree (a view change in progress).
    pub async fn primary(&mut self) -> Option<usize> {
        let statuses = self.statuses().await;
        let mut votes: std::collections::BTreeMap<(u64, u16), usize> = Default::default();
        for (_, s) in &statuses {
            *votes.entry((s.view.0, s.primary.0)).or_default() += 1;
        }
        let weak = self.f() + 1;
        votes
            .into_iter()
            .rev()
            .find(|(_, count)| *count >= weak)
            .map(|((_, primary), _)| usize::from(primary))
    }

    /// Waits up to `timeout` for a primary (see [`LocalCluster::primary`]).
    pub async fn wait_for_primary(&mut self, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = self.primary().await {
                return Some(p);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Leaves the replicas running after the harness exits and the
    /// directory in place; writes their pids to `DIR/pids`.
    pub fn keep(mut self) -> Result<KeptCluster, ClusterError> {
        let dir = match std::mem::replace(&mut self.dir, ClusterDir::Kept(PathBuf::new())) {
            ClusterDir::Temp(t) => t.keep(),
            ClusterDir::Kept(p) => p,
        };
        self.dir = ClusterDir::Kept(dir.clone());
        self.kept = true;
        let pids: Vec<Option<u32>> = (0..self.nodes.len()).map(|i| self.pid(i)).collect();
        let text: String = pids.iter().flatten().map(|p| format!("{p}\n")).collect();
        let path = dir.join("pids");
        std::fs::write(&path, text).map_err(|e| file_error(&path, e))?;
        Ok(KeptCluster {
            dir,
            pids,
            client: self.config.replicas.iter().map(|r| r.client).collect(),
            http: self.http.clone(),
        })
    }

    /// The replica-id form of `i`.
    pub fn replica_id(i: usize) -> ReplicaId {
        ReplicaId(i as u16)
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        // A panic or an early return: kill at once, leave nothing behind.
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_some() {
                let _ = self.signal(i, Signal::SIGKILL);
                self.reap(i, None);
            }
        }
    }
}

/// Applies the spec's overrides to one replica config (the TOML
/// `init-cluster` wrote; qlockd refuses unknown fields when it starts, so a
/// misspelt setting fails the launch rather than being ignored).
fn edit_config(path: &Path, spec: &ClusterSpec) -> Result<(), ClusterError> {
    let mut settings = spec.settings.clone();
    if let Some(ms) = spec.view_change_ms {
        settings.push(("timeouts.view_change_ms".into(), ms as i64));
    }
    if let Some(ms) = spec.request_ms {
        settings.push(("timeouts.request_ms".into(), ms as i64));
    }
    if settings.is_empty() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
    let mut table: toml::Table = text.parse().map_err(|e| file_error(path, e))?;
    for (name, value) in settings {
        let Some((section, key)) = name.split_once('.') else {
            return Err(file_error(
                path,
                format!("setting {name:?} is not section.key"),
            ));
        };
        table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| file_error(path, format!("{section} is not a table")))?
            .insert(key.into(), toml::Value::Integer(value));
    }
    let mut file = File::create(path).map_err(|e| file_error(path, e))?;
    use std::io::Write;
    file.write_all(table.to_string().as_bytes())
        .map_err(|e| file_error(path, e))
}

/// The HTTP addresses `cluster.toml` lists, in id order.
fn read_http_addresses(cluster_file: &Path) -> Result<Vec<SocketAddr>, ClusterError> {
    let text = std::fs::read_to_string(cluster_file).map_err(|e| file_error(cluster_file, e))?;
    let table: toml::Table = text.parse().map_err(|e| file_error(cluster_file, e))?;
    let replicas = table
        .get("cluster")
        .and_then(|c| c.get("replicas"))
        .and_then(|r| r.as_array())
        .ok_or_else(|| file_error(cluster_file, "no cluster.replicas"))?;
    let mut by_id: Vec<(i64, SocketAddr)> = Vec::new();
    for r in replicas {
        let id = r
            .get("id")
            .and_then(|v| v.as_integer())
            .ok_or_else(|| file_error(cluster_file, "a replica without id"))?;
        let http = r
            .get("http")
            .and_then(|v| v.as_str())
            .ok_or_else(|| file_error(cluster_file, format!("replica {id} has no http address")))?;
        let addr = http
            .parse()
            .map_err(|_| file_error(cluster_file, format!("replica {id}: bad http {http:?}")))?;
        by_id.push((id, addr));
    }
    by_id.sort();
    Ok(by_id.into_iter().map(|(_, a)| a).collect())
}
