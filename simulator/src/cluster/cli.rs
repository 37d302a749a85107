//! `simulator cluster`: start N `qlockd` on 127.0.0.1, run a workload
//! with faults at chosen times, print committed ops/s and latency
//! percentiles, check the history, and stop everything it started (also
//! on Ctrl-C) — or, with `--keep`, leave the cluster running and say how
//! to reach it.
//!
//! Exit codes: 0 passed; 1 a safety violation in the history, or a replica
//! exited by itself; 2 the cluster could not be set up (bad flags,
//! missing binary, ports taken, not ready).

use super::faults::{parse_duration, parse_node_at, parse_pause, Applied, FaultPlan, Target};
use super::history::{check_history, write_jsonl, CheckReport};
use super::process::{locate_binary, ClusterSpec, KeptCluster, LocalCluster, NodeState};
use super::workload::{WorkloadKind, WorkloadReport, WorkloadRun, WorkloadSpec};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// `init-cluster`'s default base port: with `--keep` the cluster uses it
/// unless told otherwise, so `scripts/prometheus/prometheus.yml` (HTTP
/// ports 7300..) and the README's tour match it.
pub const KEEP_BASE_PORT: u16 = 7100;

/// After Ctrl-C, how long the clients get to finish their op.
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);

/// How often the progress line is redrawn and due faults are applied.
const TICK: Duration = Duration::from_millis(100);

/// The flags of `simulator cluster`.
#[derive(clap::Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Replicas (qlockd processes).
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    /// locks, contended, queue or mixed.
    #[arg(long, default_value = "mixed")]
    pub workload: WorkloadKind,
    /// How long the clients work (15s, 500ms, 2m); 0 runs no workload.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Workload clients, each with its own key and connection.
    #[arg(long, default_value_t = 6)]
    pub clients: usize,
    /// Ops in each signed request.
    #[arg(long, default_value_t = 1)]
    pub ops_per_request: usize,
    /// Kill -9 whoever is primary at this time (repeatable).
    #[arg(long = "kill-primary-at", value_parser = parse_duration, value_name = "TIME")]
    pub kill_primary_at: Vec<Duration>,
    /// Kill -9 a replica, `NODE@TIME` (NODE: an index or `primary`).
    #[arg(long, value_parser = parse_node_at, value_name = "NODE@TIME")]
    pub kill: Vec<(Target, Duration)>,
    /// Restart a replica on its data, `NODE@TIME` (`primary`: the one a
    /// primary-targeted kill hit).
    #[arg(long, value_parser = parse_node_at, value_name = "NODE@TIME")]
    pub restart: Vec<(Target, Duration)>,
    /// Pause a replica (SIGSTOP, then SIGCONT), `NODE@FROM..TO`.
    #[arg(long, value_parser = parse_pause, value_name = "NODE@FROM..TO")]
    pub pause: Vec<(Target, Duration, Duration)>,
    /// Write one JSON line per completed client op to FILE.
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// Leave the cluster running at the end and print how to reach it.
    #[arg(long)]
    pub keep: bool,
    /// Write the cluster here (must not hold one) instead of a temporary
    /// directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// init-cluster's base port (libp2p base+i, clients base+100+i, HTTP
    /// base+200+i). Default: free ports at random; 7100 with --keep.
    #[arg(long)]
    pub base_port: Option<u16>,
    /// The qlockd executable (default: next to this one).
    #[arg(long, value_name = "PATH")]
    pub qlockd: Option<PathBuf>,
    /// The replicas' view-change timeout (ms), if not qlockd's default.
    #[arg(long)]
    pub view_change_ms: Option<u64>,
    /// How long a client waits for one replica before trying another (ms).
    #[arg(long, default_value_t = 5_000)]
    pub request_timeout_ms: u64,
    /// Seeds the clients' choices (default: random; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3))
}

/// Runs `simulator cluster` (on its own tokio runtime).
pub fn main(args: ClusterArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("simulator cluster: tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(run(args));
    // A history check abandoned at Ctrl-C must not hold the exit up.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

async fn run(args: ClusterArgs) -> ExitCode {
    let setup = |e: String| {
        eprintln!("simulator cluster: {e}");
        ExitCode::from(2)
    };
    let qlockd = match args
        .qlockd
        .clone()
        .map_or_else(|| locate_binary("qlockd"), Ok)
    {
        Ok(p) => p,
        Err(e) => return setup(e.to_string()),
    };
    let mut plan = match FaultPlan::from_flags(
        &args.kill_primary_at,
        &args.kill,
        &args.restart,
        &args.pause,
        args.nodes,
    ) {
        Ok(p) => p,
        Err(e) => return setup(e),
    };
    if let Some(last) = plan.last_at() {
        if last >= args.duration {
            return setup(format!(
                "a fault at {:.1} s is not within --duration {:.1} s",
                last.as_secs_f64(),
                args.duration.as_secs_f64()
            ));
        }
    }
    let mut spec = WorkloadSpec::new(args.workload, args.clients, args.duration);
    spec.ops_per_request = args.ops_per_request;
    spec.request_timeout = Duration::from_millis(args.request_timeout_ms.max(1));
    if let Some(seed) = args.seed {
        spec.seed = seed;
    }
    let run_workload = !args.duration.is_zero();
    if run_workload {
        if let Err(e) = spec.validate() {
            return setup(e);
        }
    }
    let mut cluster_spec = ClusterSpec::new(args.nodes, qlockd);
    cluster_spec.dir = args.dir.clone();
    cluster_spec.base_port = args.base_port.or(if args.keep {
        Some(KEEP_BASE_PORT)
    } else {
        None
    });
    cluster_spec.view_change_ms = args.view_change_ms;
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(format!("starting {} qlockd replicas", args.nodes));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let launched = tokio::select! {
        c = LocalCluster::launch(cluster_spec) => c,
        _ = interrupt() => {
            spinner.finish_and_clear();
            eprintln!("interrupted while starting (every replica started was killed)");
            return ExitCode::from(130);
        }
    };
    spinner.finish_and_clear();
    let mut cluster = match launched {
        Ok(c) => c,
        Err(e) => {
            let hint = if args.keep && args.base_port.is_none() {
                " (with --keep the cluster uses ports 7100.. by default: pass --base-port P to use others)"
            } else {
                ""
            };
            return setup(format!("{e}{hint}"));
        }
    };
    if !args.json {
        println!(
            "cluster: {} qlockd replicas on 127.0.0.1 in {}",
            cluster.n(),
            cluster.dir().display()
        );
    }
    let mut outcome = Outcome::default();
    if run_workload {
        let config = cluster.client_config();
        let run = match WorkloadRun::start(config, spec.clone()) {
            Ok(r) => r,
            Err(e) => return setup(e),
        };
        if !args.json {
            println!(
                "workload {}: {} clients, {} op(s) per request, {:.0} s (seed {})",
                spec.kind,
                spec.clients,
                spec.ops_per_request,
                spec.duration.as_secs_f64(),
                spec.seed
            );
        }
        let (report, faults, interrupted) = drive(&mut cluster, run, &mut plan, &spec).await;
        match report {
            Some(report) => {
                outcome = conclude(&mut cluster, &args, report, faults, interrupted).await;
            }
            // Dropping the cluster kills every replica at once.
            None => return ExitCode::from(130),
        }
    }
    let crashed = cluster.exited();
    for (i, status) in &crashed {
        eprintln!(
            "replica {i} exited by itself ({status}): see {}",
            cluster.log_file(*i).display()
        );
    }
    if args.keep && !outcome.interrupted {
        match cluster.keep() {
            Ok(kept) => print_kept(&kept, args.json),
            Err(e) => return setup(e.to_string()),
        }
    } else {
        cluster.stop_all();
    }
    if outcome.interrupted {
        return ExitCode::from(130);
    }
    if !outcome.safe || !crashed.is_empty() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM: either way the harness stops
/// what it started before it exits.
async fn interrupt() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[derive(Default)]
struct Outcome {
    safe: bool,
    interrupted: bool,
}

/// Runs the workload to its end, applying faults on time and drawing
/// progress; Ctrl-C stops it early.
async fn drive(
    cluster: &mut LocalCluster,
    run: WorkloadRun,
    plan: &mut FaultPlan,
    spec: &WorkloadSpec,
) -> (Option<WorkloadReport>, Vec<Applied>, bool) {
    let total_ms = spec.duration.as_millis() as u64;
    let bar = ProgressBar::new(total_ms);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:30}] {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut applied = Vec::new();
    let mut interrupted = false;
    let mut ctrl_c = Box::pin(interrupt());
    let deadline = tokio::time::Instant::from_std(run.deadline(cluster.n()));
    loop {
        let elapsed = run.origin().elapsed();
        for a in plan.apply_due(cluster, elapsed, run.now_ns()).await {
            say(
                &bar,
                format!("  {:>6.1} s  {}", a.at_ns as f64 / 1e9, a.note),
            );
            applied.push(a);
        }
        let p = run.progress();
        let secs = p.elapsed.as_secs_f64().max(1e-3);
        let next = plan
            .next_at()
            .map(|t| format!(" | next fault at {:.0} s", t.as_secs_f64()))
            .unwrap_or_default();
        let phase = if p.elapsed >= spec.duration {
            " | draining"
        } else {
            ""
        };
        bar.set_position((p.elapsed.as_millis() as u64).min(total_ms));
        bar.set_message(format!(
            "{} ops ({:.0}/s), {} failed requests{next}{phase}",
            p.ops,
            p.ops as f64 / secs,
            p.errors
        ));
        if run.done() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = &mut ctrl_c => {
                say(&bar, "interrupted: stopping the clients, then the replicas".into());
                interrupted = true;
                run.stop();
                break;
            }
        }
    }
    bar.finish_and_clear();
    let report = if interrupted {
        let grace = std::time::Instant::now() + INTERRUPT_GRACE;
        tokio::select! {
            r = run.finish_by(grace) => Some(r),
            _ = interrupt() => {
                eprintln!("interrupted again: killing the replicas");
                None
            }
        }
    } else {
        Some(run.finish(cluster.n()).await)
    };
    (report, applied, interrupted)
}

/// A line above the progress bar, or on stderr when there is no bar (not
/// a terminal: indicatif then drops its own lines).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// Prints the summary, writes the history and checks it.
async fn conclude(
    cluster: &mut LocalCluster,
    args: &ClusterArgs,
    report: WorkloadReport,
    faults: Vec<Applied>,
    interrupted: bool,
) -> Outcome {
    if let Some(path) = &args.history {
        if let Err(e) = write_jsonl(path, &report.history) {
            eprintln!("cannot write the history to {}: {e}", path.display());
        }
    }
    let check: Option<CheckReport> = if report.history_full || interrupted {
        None
    } else {
        // CPU-bound: off the runtime, so a Ctrl-C is still heard.
        let history = report.history.clone();
        let checking =
            tokio::task::spawn_blocking(move || check_history(&history, &qlock::Config::default()));
        tokio::select! {
            c = checking => c.ok(),
            _ = interrupt() => {
                eprintln!("interrupted while checking the history");
                return Outcome { safe: true, interrupted: true };
            }
        }
    };
    let statuses = cluster.statuses().await;
    let status_json: Vec<_> = statuses
        .iter()
        .map(|(i, s)| {
            json!({"replica": i, "view": s.view.0, "primary": s.primary.0,
                "last_executed": s.last_executed.0, "stable_checkpoint": s.stable_checkpoint.0,
                "state_transfers": s.state_transfers})
        })
        .collect();
    let states: Vec<String> = (0..cluster.n())
        .map(|i| match cluster.state(i) {
            NodeState::Running => "running".to_string(),
            NodeState::Paused => "paused".to_string(),
            NodeState::Down => "down".to_string(),
        })
        .collect();
    let safe = check.as_ref().is_none_or(CheckReport::safe);
    if args.json {
        let mut summary = report.to_json();
        let obj = summary.as_object_mut().expect("an object");
        obj.insert("replicas".into(), json!(status_json));
        obj.insert("replica_states".into(), json!(states));
        obj.insert(
            "faults".into(),
            json!(faults
                .iter()
                .map(|a| json!({"at_s": a.at_ns as f64 / 1e9, "what": a.note}))
                .collect::<Vec<_>>()),
        );
        obj.insert(
            "history_check".into(),
            match &check {
                Some(c) => json!({"passed": c.passed(), "safe": c.safe(),
                    "summary": c.summary(), "violations": c.violations}),
                None => serde_json::Value::Null,
            },
        );
        obj.insert("interrupted".into(), json!(interrupted));
        println!("{summary}");
    } else {
        println!(
            "committed: {} ops in {:.1} s = {:.1} ops/s ({} certified requests, {} failed)",
            report.window_ops,
            report.window.as_secs_f64(),
            report.ops_per_sec(),
            report.requests,
            report.errors
        );
        println!(
            "latency per request: p50 {}, p90 {}, p99 {}, p99.9 {}",
            ms(report.latency(0.5)),
            ms(report.latency(0.9)),
            ms(report.latency(0.99)),
            ms(report.latency(0.999))
        );
        if let Some(e) = &report.last_error {
            println!("last failed request: {e}");
        }
        for f in &report.client_failures {
            println!("client failure: {f}");
        }
        if report.aborted > 0 {
            println!(
                "{} clients were still busy at the end bound and were stopped",
                report.aborted
            );
        }
        for a in &faults {
            println!("fault at {:.1} s: {}", a.at_ns as f64 / 1e9, a.note);
        }
        for (i, s) in &statuses {
            println!(
                "replica {i}: view {} (primary {}), executed {}, stable checkpoint {}, state transfers {}",
                s.view.0, s.primary.0, s.last_executed.0, s.stable_checkpoint.0, s.state_transfers
            );
        }
        for (i, state) in states.iter().enumerate() {
            if state != "running" {
                println!("replica {i}: {state}");
            }
        }
        if let Some(path) = &args.history {
            println!(
                "history: {} ops written to {}",
                report.history.len(),
                path.display()
            );
        }
        match &check {
            Some(c) => {
                println!("history check: {}", c.summary());
                for v in &c.violations {
                    println!("  VIOLATION: {v}");
                }
                for p in c.inconclusive() {
                    println!(
                        "  inconclusive: {} ({} ops; the search bound ran out)",
                        p.part, p.ops
                    );
                }
            }
            None if report.history_full => println!(
                "history check skipped: the history reached its bound and the run stopped early"
            ),
            None => println!("history check skipped: interrupted"),
        }
    }
    Outcome { safe, interrupted }
}

fn print_kept(kept: &KeptCluster, json: bool) {
    let qlock = locate_binary("qlock")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "qlock".into());
    let dir = kept.dir.display();
    if json {
        println!(
            "{}",
            json!({"kept": true, "dir": dir.to_string(), "pids": kept.pids,
                "client": kept.client.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "metrics": kept.http.iter().map(|a| format!("http://{a}/metrics")).collect::<Vec<_>>(),
                "qlock": qlock})
        );
        return;
    }
    println!("\nthe cluster keeps running in {dir}");
    for (i, ((pid, client), http)) in kept
        .pids
        .iter()
        .zip(&kept.client)
        .zip(&kept.http)
        .enumerate()
    {
        let pid = pid.map_or("down".to_string(), |p| format!("pid {p}"));
        println!("  replica {i}: {pid}, clients {client}, metrics http://{http}/metrics");
    }
    println!(
        "\ntry it (the cluster file and a key in {dir} are the defaults there):\n  \
         cd {dir}\n  \
         alias qlock={qlock}\n  \
         qlock keygen --out client.key\n  \
         qlock status\n  \
         qlock session create --ttl-ms 600000\n  \
         qlock lock acquire --session SEQ.INDEX my-lock\n  \
         qlock lockchain verify\n\
         \nwatch it in Prometheus: scripts/prometheus/run-prometheus.sh {dir}\n\
         stop it: kill $(cat {dir}/pids)"
    );
}
