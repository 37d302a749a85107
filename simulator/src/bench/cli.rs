//! `simulator bench`: QLOCK (local clusters started by the harness) and,
//! with the `etcd` feature, etcd (3 local members), one after the other in
//! one invocation, under closed-loop and open-loop load; prints every
//! point and the summary table, writes `bench.json` and `bench.svg`.
//!
//! Exit codes: 0 done (with `--smoke`: every point committed ops without
//! errors and both files were written); 1 a smoke check failed; 2 a system
//! could not be set up (missing binary, not ready).

use super::load::{self, Load};
use super::report::{self, BenchResult, Machine, Point, ServerCost};
use super::target::{QlockWorker, Worker, Workload, OPS_PER_REQUEST_MAX};
use crate::cluster::faults::parse_duration;
use crate::cluster::http;
use crate::cluster::process::{locate_binary, ClusterSpec, LocalCluster};
use indicatif::{ProgressBar, ProgressStyle};
use lockchain::CheckedSignatures;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Workers at most (clients of a closed-loop point, workers of an open
/// loop).
pub const CLIENTS_MAX: usize = 512;

/// Points of one invocation at most.
pub const POINTS_MAX: usize = 1_000;

/// A system to benchmark: `qlock:N` or `etcd:N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemSpec {
    /// Which.
    pub kind: SystemKind,
    /// Replicas or members.
    pub nodes: usize,
}

/// The systems.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemKind {
    /// QLOCK's `qlockd`.
    Qlock,
    /// etcd.
    Etcd,
}

impl FromStr for SystemSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, n) = s.split_once(':').unwrap_or((s, ""));
        let kind = match name {
            "qlock" => SystemKind::Qlock,
            "etcd" => SystemKind::Etcd,
            other => return Err(format!("unknown system {other:?}: qlock:N or etcd:N")),
        };
        let default = if kind == SystemKind::Qlock { 4 } else { 3 };
        let nodes = if n.is_empty() {
            default
        } else {
            n.parse().map_err(|_| format!("bad node count in {s:?}"))?
        };
        Ok(SystemSpec { kind, nodes })
    }
}

impl SystemSpec {
    fn name(&self) -> &'static str {
        match self.kind {
            SystemKind::Qlock => "qlock",
            SystemKind::Etcd => "etcd",
        }
    }
}

/// The flags of `simulator bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Systems, run one after the other: `qlock:N`, `etcd:N`.
    #[arg(long, value_delimiter = ',', default_value = "qlock:4,qlock:7,etcd:3")]
    pub systems: Vec<SystemSpec>,
    /// Workloads: locks, contended, queue, submit, renew.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "locks,contended,queue,submit,renew"
    )]
    pub workloads: Vec<Workload>,
    /// Ops per request (each value is its own series; `contended` runs 1
    /// only).
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub ops_per_request: Vec<usize>,
    /// Closed-loop points: concurrent clients.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64,128")]
    pub clients: Vec<usize>,
    /// Open-loop points: offered rates as fractions of the series'
    /// closed-loop peak (in units/s).
    #[arg(long, value_delimiter = ',', default_value = "0.25,0.5,0.9")]
    pub open_fractions: Vec<f64>,
    /// Workers of an open-loop point (the most units in flight).
    #[arg(long, default_value_t = 128)]
    pub open_clients: usize,
    /// Measured time per point (5s, 500ms).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured warm-up before each point.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Where `bench.json` and `bench.svg` go.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// The qlockd binary; default: next to this one.
    #[arg(long)]
    pub qlockd: Option<PathBuf>,
    /// Integer settings of every qlockd replica's config, `section.key=N`
    /// (`--qlockd-set batching.delay_ms=20,batching.in_flight_max=2`).
    #[arg(long, value_delimiter = ',', value_parser = parse_setting)]
    pub qlockd_set: Vec<(String, i64)>,
    /// The etcd binary.
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd: PathBuf,
    /// Seed of the workers' keys and choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A few seconds of small load on a 4-replica QLOCK cluster, no etcd:
    /// checks that the benchmark runs (CI). Overrides the sweep flags.
    #[arg(long)]
    pub smoke: bool,
}

/// `section.key=N`.
fn parse_setting(s: &str) -> Result<(String, i64), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not section.key=N"))?;
    if !name.contains('.') {
        return Err(format!("{name:?} is not section.key"));
    }
    let value = value
        .parse()
        .map_err(|_| format!("{value:?} in {s:?} is not an integer"))?;
    Ok((name.to_string(), value))
}

impl BenchArgs {
    /// The smoke run's settings.
    fn smoke(mut self) -> BenchArgs {
        self.systems = vec![SystemSpec {
            kind: SystemKind::Qlock,
            nodes: 4,
        }];
        self.workloads = Workload::ALL.to_vec();
        self.ops_per_request = vec![1, 8];
        self.clients = vec![4];
        self.open_fractions = vec![0.5];
        self.open_clients = 8;
        self.duration = Duration::from_millis(800);
        self.warmup = Duration::from_millis(200);
        self
    }

    fn check(&self) -> Result<(), String> {
        let clients_ok = self
            .clients
            .iter()
            .chain([&self.open_clients])
            .all(|c| (1..=CLIENTS_MAX).contains(c));
        if !clients_ok {
            return Err(format!("clients must be 1 to {CLIENTS_MAX}"));
        }
        if !self
            .ops_per_request
            .iter()
            .all(|k| (1..=OPS_PER_REQUEST_MAX).contains(k))
        {
            return Err(format!(
                "ops per request must be 1 to {OPS_PER_REQUEST_MAX}"
            ));
        }
        if !self.open_fractions.iter().all(|f| *f > 0.0 && *f <= 2.0) {
            return Err("open-loop fractions must be in (0, 2]".into());
        }
        let points = self.systems.len()
            * self.workloads.len()
            * self.ops_per_request.len()
            * (self.clients.len() + self.open_fractions.len());
        if points > POINTS_MAX {
            return Err(format!("{points} points asked for, at most {POINTS_MAX}"));
        }
        if self.duration.is_zero() {
            return Err("--duration must be above 0".into());
        }
        Ok(())
    }
}

/// A system started for the benchmark.
enum Running {
    /// The cluster, and the signature checks its workers share.
    Qlock(Box<LocalCluster>, Arc<CheckedSignatures>),
    #[cfg(feature = "etcd")]
    Etcd(super::etcd::EtcdCluster),
}

impl Running {
    async fn start(spec: SystemSpec, args: &BenchArgs) -> Result<Running, String> {
        match spec.kind {
            SystemKind::Qlock => {
                let qlockd = match &args.qlockd {
                    Some(p) => p.clone(),
                    None => locate_binary("qlockd").map_err(|e| e.to_string())?,
                };
                let mut cluster_spec = ClusterSpec::new(spec.nodes, qlockd);
                cluster_spec.log_filter = "warn".into();
                cluster_spec.settings = args.qlockd_set.clone();
                LocalCluster::launch(cluster_spec)
                    .await
                    .map(|c| Running::Qlock(Box::new(c), Arc::default()))
                    .map_err(|e| e.to_string())
            }
            #[cfg(feature = "etcd")]
            SystemKind::Etcd => super::etcd::EtcdCluster::launch(&args.etcd, spec.nodes)
                .await
                .map(Running::Etcd)
                .map_err(|e| e.to_string()),
            #[cfg(not(feature = "etcd"))]
            SystemKind::Etcd => Err("this simulator was built without the `etcd` feature: \
                 run scripts/etcd-install.sh, then build with `--features etcd`"
                .into()),
        }
    }

    async fn worker(
        &self,
        workload: Workload,
        k: usize,
        index: usize,
        seed: u64,
    ) -> Result<Worker, String> {
        match self {
            Running::Qlock(c, checked) => {
                QlockWorker::connect(c.client_config(), checked, workload, k, index, seed)
                    .await
                    .map(|w| Worker::Qlock(Box::new(w)))
                    .map_err(|e| e.to_string())
            }
            #[cfg(feature = "etcd")]
            Running::Etcd(c) => super::etcd::EtcdWorker::connect(c, workload, k, index, seed)
                .await
                .map(|w| Worker::Etcd(Box::new(w)))
                .map_err(|e| e.to_string()),
        }
    }

    /// The servers' CPU time so far and replica 0's executed batches and
    /// requests (QLOCK only; `None` if anything could not be read).
    async fn counters(&self) -> Option<ServerCounters> {
        match self {
            Running::Qlock(c, _) => {
                let mut cpu_seconds = 0.0;
                for i in 0..c.n() {
                    cpu_seconds += process_cpu_seconds(c.pid(i)?)?;
                }
                let text = c.metrics(0).await.ok()?;
                Some(ServerCounters {
                    cpu_seconds,
                    batches: http::metric(&text, "qlock_committed_batches_total")?,
                    requests: http::metric(&text, "qlock_committed_requests_total")?,
                })
            }
            #[cfg(feature = "etcd")]
            Running::Etcd(_) => None,
        }
    }

    fn stop(self) {
        match self {
            Running::Qlock(mut c, _) => c.stop_all(),
            #[cfg(feature = "etcd")]
            Running::Etcd(mut c) => c.stop(),
        }
    }
}

/// A reading of [`Running::counters`].
#[derive(Clone, Copy, Debug)]
struct ServerCounters {
    cpu_seconds: f64,
    batches: f64,
    requests: f64,
}

impl ServerCounters {
    /// What the servers spent between `self` and `later`.
    fn cost_until(self, later: ServerCounters) -> Option<ServerCost> {
        let batches = later.batches - self.batches;
        let requests = later.requests - self.requests;
        (batches > 0.0 && requests > 0.0).then(|| ServerCost {
            requests_per_batch: requests / batches,
            cpu_micros_per_request: (later.cpu_seconds - self.cpu_seconds) * 1e6 / requests,
        })
    }
}

/// User + system CPU seconds of process `pid` (`/proc/PID/stat`).
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: fields are
    // counted after its closing one, from field 3 (state).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLOCK_TICKS_PER_SECOND)
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux this runs on (the kernel's
/// USER_HZ, fixed for user space whatever the kernel's own tick).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// Runs the command.
pub fn main(args: BenchArgs) -> ExitCode {
    let args = if args.smoke { args.smoke() } else { args };
    if let Err(e) = args.check() {
        eprintln!("simulator bench: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("simulator bench: no tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(run(args))
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

async fn run(args: BenchArgs) -> ExitCode {
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!("simulator bench: {}: {e}", args.out.display());
        return ExitCode::from(2);
    }
    let series_count: usize = args.systems.len()
        * args
            .workloads
            .iter()
            .map(|w| {
                if w.batches() {
                    args.ops_per_request.len()
                } else {
                    1
                }
            })
            .sum::<usize>();
    let per_series = args.clients.len() + args.open_fractions.len();
    let bar = ProgressBar::new((series_count * per_series) as u64);
    bar.set_style(
        ProgressStyle::with_template("[{elapsed_precise}] {bar:30} {pos}/{len} points  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut points: Vec<Point> = Vec::new();
    let mut failure = None;
    for spec in &args.systems {
        bar.set_message(format!("starting {}-{}", spec.name(), spec.nodes));
        let running = match Running::start(*spec, &args).await {
            Ok(r) => r,
            Err(e) => {
                say(
                    &bar,
                    format!("simulator bench: {}-{}: {e}", spec.name(), spec.nodes),
                );
                failure = Some(ExitCode::from(2));
                continue;
            }
        };
        let result = run_system(&running, *spec, &args, &bar, &mut points).await;
        running.stop();
        if let Err(e) = result {
            say(
                &bar,
                format!("simulator bench: {}-{}: {e}", spec.name(), spec.nodes),
            );
            failure = Some(ExitCode::from(2));
        }
    }
    bar.finish_and_clear();
    let result = BenchResult {
        format: 1,
        command: command_line(),
        started_unix,
        machine: Machine::probe(),
        seconds_per_point: args.duration.as_secs_f64(),
        warmup_seconds: args.warmup.as_secs_f64(),
        points,
    };
    let json_path = args.out.join("bench.json");
    let svg_path = args.out.join("bench.svg");
    let written = serde_json::to_string_pretty(&result)
        .map_err(|e| e.to_string())
        .and_then(|text| std::fs::write(&json_path, text).map_err(|e| e.to_string()))
        .and_then(|()| report::plot(&result.points, &svg_path));
    println!("{}", report::table(&result.points));
    match &written {
        Ok(()) => println!("wrote {} and {}", json_path.display(), svg_path.display()),
        Err(e) => eprintln!("simulator bench: writing results: {e}"),
    }
    if let Some(code) = failure {
        return code;
    }
    if args.smoke {
        return smoke_verdict(&result, written.is_ok());
    }
    if written.is_err() {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn smoke_verdict(result: &BenchResult, written: bool) -> ExitCode {
    let bad: Vec<String> = result
        .points
        .iter()
        .filter(|p| p.measured.ops_per_sec <= 0.0 || p.measured.errors > 0)
        .map(report::point_line)
        .collect();
    let expected = Workload::ALL.len() * 2 * 2 - 2;
    if !written || !bad.is_empty() || result.points.len() != expected {
        eprintln!(
            "simulator bench --smoke: FAILED ({} points of {expected}, files written: {written})",
            result.points.len()
        );
        for line in bad {
            eprintln!("  {line}");
        }
        return ExitCode::from(1);
    }
    println!(
        "simulator bench --smoke: ok, {} points",
        result.points.len()
    );
    ExitCode::SUCCESS
}

/// Every series of one running system.
async fn run_system(
    running: &Running,
    spec: SystemSpec,
    args: &BenchArgs,
    bar: &ProgressBar,
    points: &mut Vec<Point>,
) -> Result<(), String> {
    let pool_size = args
        .clients
        .iter()
        .copied()
        .chain([args.open_clients])
        .max()
        .unwrap_or(1);
    for &workload in &args.workloads {
        let ks: Vec<usize> = if workload.batches() {
            args.ops_per_request.clone()
        } else {
            vec![1]
        };
        for k in ks {
            bar.set_message(format!(
                "{}-{} {workload} k={k}: connecting {pool_size} clients",
                spec.name(),
                spec.nodes
            ));
            let mut pool = Vec::with_capacity(pool_size);
            for i in 0..pool_size {
                pool.push(running.worker(workload, k, i, args.seed).await?);
            }
            let mut peak_units = 0.0f64;
            let mut loads: Vec<Load> = args
                .clients
                .iter()
                .map(|&clients| Load::Closed { clients })
                .collect();
            loads.extend(args.open_fractions.iter().map(|_| Load::Open {
                rate: 0.0,
                clients: args.open_clients,
            }));
            let mut fractions = args.open_fractions.iter();
            for mut l in loads {
                if let Load::Open { rate, .. } = &mut l {
                    let fraction = fractions.next().copied().unwrap_or(0.5);
                    *rate = (peak_units * fraction).max(1.0);
                }
                let n = l.clients();
                let rest = pool.split_off(n.min(pool.len()));
                let label = format!("{}-{} {workload} k={k} {l:?}", spec.name(), spec.nodes);
                let before = running.counters().await;
                let (measured, mut back) =
                    load::run(pool, l, args.warmup, args.duration, bar, label).await;
                let after = running.counters().await;
                let server = before.zip(after).and_then(|(b, a)| b.cost_until(a));
                if matches!(l, Load::Closed { .. }) {
                    peak_units = peak_units.max(measured.units_per_sec);
                }
                let point = Point {
                    system: spec.name().to_string(),
                    nodes: spec.nodes,
                    workload,
                    ops_per_request: k,
                    load: l,
                    measured,
                    server,
                };
                say(bar, report::point_line(&point));
                for e in point.measured.error_samples.iter().take(2) {
                    say(bar, format!("    error: {e}"));
                }
                points.push(point);
                bar.inc(1);
                back.extend(rest);
                // A worker lost to a stuck unit is replaced.
                while back.len() < pool_size {
                    let i = pool_size + back.len();
                    back.push(running.worker(workload, k, i, args.seed).await?);
                }
                pool = back;
            }
        }
    }
    Ok(())
}

/// A line above the progress bar, or on stderr when the bar is hidden
/// (not a terminal: indicatif then drops its own lines).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}
