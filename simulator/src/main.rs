//! `simulator`: the command line of the simulation harness (`sim`) and
//! of the local real-process cluster (`cluster`).

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use simulator::{run_seed, FaultSet, SimOptions, Summary};
use std::ops::Range;
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Deterministic simulation of a QLOCK cluster, and a local real-process cluster")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run seeded simulations; one JSON summary line on stdout.
    Sim(SimArgs),
    /// Run real qlockd replicas on 127.0.0.1 with a workload and faults;
    /// print ops/s and latency, check the history.
    Cluster(simulator::cluster::cli::ClusterArgs),
    /// Benchmark QLOCK (local clusters) against etcd: closed- and
    /// open-loop load; prints the table, writes bench.json and bench.svg.
    Bench(simulator::bench::cli::BenchArgs),
}

#[derive(clap::Args)]
struct SimArgs {
    /// Replay exactly this seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run the seeds `A..B` (B excluded).
    #[arg(long, value_parser = parse_range)]
    seeds: Option<Range<u64>>,
    /// Replicas.
    #[arg(long, default_value_t = 4)]
    replicas: usize,
    /// Faults: `all` (every kind; each seed draws its own mix), `benign`
    /// (network faults and skew), `byzantine` (the liars), `none`, or a
    /// list of drop,delay,duplicate,reorder,partition,skew,crash,
    /// corrupt-chunk,equivocate,conflicting-votes,bad-signatures,silent,
    /// replay,withhold-payloads,skew-edge,flood,twins,byzantine-clients.
    #[arg(long, default_value = "all")]
    faults: FaultSet,
    /// Simulated clients.
    #[arg(long, default_value_t = 6)]
    clients: usize,
    /// Requests per client.
    #[arg(long, default_value_t = 10)]
    requests: u64,
    /// A pulse deadline every this many microseconds of effective time
    /// (heartbeat batches); off by default.
    #[arg(long)]
    pulse_micros: Option<u64>,
    /// What the replicas run: chain (hash-chain test app), locks, queue, mixed (qlock).
    #[arg(long, default_value = "chain")]
    workload: simulator::Workload,
    /// TEST ONLY: run a deliberately broken core, `NAME[:i,j,...]` (on
    /// every replica unless replicas are named): quorum-2f,
    /// new-view-skips-prepared-check, prepare-before-payloads,
    /// execute-out-of-order. The checkers should report violations.
    #[arg(long, value_parser = simulator::options::parse_mutation)]
    mutate: Option<(consensus::Mutation, Vec<usize>)>,
    /// Print the trace of a single seed on stderr.
    #[arg(long)]
    trace: bool,
}

fn parse_range(s: &str) -> Result<Range<u64>, String> {
    let (a, b) = s.split_once("..").ok_or("expected A..B")?;
    let a = a.parse::<u64>().map_err(|e| e.to_string())?;
    let b = b.parse::<u64>().map_err(|e| e.to_string())?;
    if a >= b {
        return Err("empty range".into());
    }
    Ok(a..b)
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Sim(args) => sim(args),
        Command::Cluster(args) => simulator::cluster::cli::main(args),
        Command::Bench(args) => simulator::bench::cli::main(args),
    }
}

fn sim(args: SimArgs) -> ExitCode {
    let seeds = match (args.seed, args.seeds.clone()) {
        (Some(s), _) => s..s + 1,
        (None, Some(r)) => r,
        (None, None) => 0..1,
    };
    let progress = if seeds.end - seeds.start > 1 {
        let bar = ProgressBar::new(seeds.end - seeds.start);
        let style = ProgressStyle::with_template("{bar:40} {pos}/{len} seeds {elapsed} {msg}")
            .expect("valid template");
        bar.set_style(style);
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut summary = Summary::default();
    for seed in seeds {
        let mut opts = SimOptions::new(seed, args.replicas);
        opts.faults = args.faults.clone();
        opts.clients = args.clients;
        opts.requests_per_client = args.requests;
        opts.keep_trace = args.trace;
        opts.pulse_micros = args.pulse_micros;
        opts.workload = args.workload;
        if let Some((mutation, replicas)) = args.mutate.clone() {
            opts.mutation = mutation;
            opts.mutated_replicas = replicas;
        }
        let report = run_seed(&opts);
        if args.trace {
            eprint!("{}", String::from_utf8_lossy(&report.trace));
        }
        if !report.passed() {
            progress.suspend(|| {
                eprintln!("seed {seed} FAILED");
                for v in report.violations.iter().chain(&report.liveness_failures) {
                    eprintln!("  {v}");
                }
                eprintln!("  replay: {}", opts.replay_command());
            });
        }
        summary.add(&report);
        progress.set_message(format!("{} failing", summary.failing_seeds.len()));
        progress.inc(1);
    }
    progress.finish_and_clear();
    println!("{}", summary.to_json());
    if summary.failing_seeds.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
