//! `qlockd`, the QLOCK replica binary.
//!
//! - `qlockd --config FILE [--log-json]`: run a replica;
//! - `qlockd --config FILE --byzantine MODE --i-am-a-test` (or with
//!   `QLOCK_ALLOW_BYZANTINE=1`): **tests only**, run a replica whose
//!   gateway lies to its clients (`node::api::byzantine`);
//! - `qlockd keygen --out FILE`: write a new key (mode 0600), print its
//!   public half;
//! - `qlockd init-cluster --replicas N --dir D [--base-port P]`: write a
//!   local cluster's keys, configs and `cluster.toml`.
//!
//! The only place that does IO: it wires the sans-IO cores to libp2p,
//! RocksDB (through `storage`), the clock and the client API.

use clap::{Parser, Subcommand};
use node::api::byzantine::{self, Liar, OptIn};
use node::api::{self, ApiContext};
use node::config::{init_cluster, Config, DEFAULT_BASE_PORT};
use node::telemetry::{self, ApiMetrics};
use primitives::KeyPair;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// A loaded replica allocates and frees many small buffers per request
/// (frames, decoded messages, map nodes) across threads; glibc's malloc
/// spent a sixth of its CPU on them (BENCHMARKS.md, 2026-12-08).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "qlockd", version, about = "The QLOCK replica")]
struct Cli {
    /// The replica's configuration file (run mode).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log JSON lines instead of human-readable text.
    #[arg(long)]
    log_json: bool,
    /// TESTS ONLY: lie to clients in MODE (forged-result, wrong-path,
    /// few-signatures, duplicate-signers, wrong-cluster). Refused unless
    /// --i-am-a-test is passed or QLOCK_ALLOW_BYZANTINE=1 is set.
    #[arg(long, value_name = "MODE", requires = "config")]
    byzantine: Option<byzantine::Mode>,
    /// Confirms that --byzantine is meant (a test harness is running this).
    #[arg(long, requires = "byzantine")]
    i_am_a_test: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Writes a new ed25519 key (mode 0600) and prints its public key hex.
    Keygen {
        /// Where to write it (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Writes a local cluster on 127.0.0.1: replica-i.key, replica-i.toml
    /// and cluster.toml (for clients).
    InitCluster {
        /// How many replicas.
        #[arg(long)]
        replicas: usize,
        /// The directory to write into.
        #[arg(long)]
        dir: PathBuf,
        /// libp2p ports are base+i, client ports base+100+i, HTTP base+200+i.
        #[arg(long, default_value_t = DEFAULT_BASE_PORT)]
        base_port: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Keygen { out }) => keygen(&out),
        Some(Command::InitCluster {
            replicas,
            dir,
            base_port,
        }) => init(&dir, replicas, base_port),
        None => match cli.config {
            // The opt-in is checked before anything is opened, so a refused
            // run leaves no trace.
            Some(config) => allow_byzantine(cli.byzantine, cli.i_am_a_test)
                .and_then(|opt_in| run(&config, cli.log_json, opt_in)),
            None => Err("nothing to do: pass --config FILE, or a subcommand (see --help)".into()),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qlockd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keygen(out: &Path) -> Result<(), String> {
    let key = KeyPair::generate(&mut rand::rngs::OsRng);
    key.save(out).map_err(|e| e.to_string())?;
    println!("{}", key.public().to_hex());
    Ok(())
}

fn init(dir: &Path, replicas: usize, base_port: u16) -> Result<(), String> {
    let written = init_cluster(dir, replicas, base_port, &mut rand::rngs::OsRng)
        .map_err(|e| e.to_string())?;
    for (i, (config, key)) in written.configs.iter().zip(&written.public_keys).enumerate() {
        println!("replica {i}: {} (public key {key})", config.display());
    }
    println!("clients: {}", written.cluster_file.display());
    Ok(())
}

/// The opt-in for `--byzantine`, if it was asked for and allowed: only
/// the flag or the environment can allow it, never the config file.
fn allow_byzantine(mode: Option<byzantine::Mode>, flag: bool) -> Result<Option<OptIn>, String> {
    let Some(mode) = mode else {
        return Ok(None);
    };
    let env = std::env::var_os(byzantine::ALLOW_ENV);
    let opt_in = OptIn::check(mode, flag, env.as_deref()).map_err(|e| e.to_string())?;
    // Straight to stderr as well as the log: a log filter must not be
    // able to hide that this replica lies.
    eprintln!("qlockd: WARNING: --byzantine {mode}: this replica's gateway LIES to its clients; for tests only");
    Ok(Some(opt_in))
}

fn run(path: &Path, log_json: bool, byzantine: Option<OptIn>) -> Result<(), String> {
    telemetry::init_logging(log_json)?;
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let key = config.load_key(path).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.runtime.worker_threads())
        .enable_all()
        .thread_name("qlockd")
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(serve(config, key, byzantine))
}

async fn serve(config: Config, key: KeyPair, byzantine: Option<OptIn>) -> Result<(), String> {
    let mut registry = telemetry::new_registry();
    let api_metrics = ApiMetrics::default();
    api_metrics.register(&mut registry);
    let (handle, replica) = node::replica::spawn(config.runtime_config(key), &mut registry)
        .map_err(|e| format!("replica: {e}"))?;
    let registry = Arc::new(registry);
    let (cluster, limits, timeouts) = (
        config.cluster_id(),
        config.limits.clone(),
        config.timeouts.clone(),
    );
    let ctx = match byzantine {
        None => ApiContext::new(handle, cluster, limits, timeouts, api_metrics),
        Some(opt_in) => {
            let liar = Liar::new(opt_in, config.cluster.membership.weak_quorum());
            ApiContext::new_lying(handle, cluster, limits, timeouts, api_metrics, liar)
        }
    };
    let tcp = api::tcp::serve(config.client_listen, ctx.clone())
        .await
        .map_err(|e| format!("client_listen {}: {e}", config.client_listen))?;
    let http = api::http::serve(config.http_listen, ctx.clone(), registry)
        .await
        .map_err(|e| format!("http_listen {}: {e}", config.http_listen))?;
    tracing::info!(
        replica = config.replica.0,
        cluster = %config.cluster_id(),
        client = %tcp.local_addr,
        http = %http.local_addr,
        byzantine = ctx.byzantine().map_or("no", byzantine::Mode::name),
        "qlockd serving"
    );
    let signal = shutdown_signal().await;
    tracing::info!(signal, "stopping: no new connections or requests");
    ctx.shut_down();
    // The servers wait (up to timeouts.shutdown_ms) for answers in flight.
    let _ = tcp.task.await;
    let _ = http.task.await;
    drop(ctx);
    // Finishes the batch in flight and syncs the store.
    replica.stop().await.map_err(|e| format!("replica: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C, naming which.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
