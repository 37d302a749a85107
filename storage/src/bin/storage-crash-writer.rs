//! The child process of the storage crash tests: opens a store, recovers
//! the deterministic workload from it, then commits seq after seq, printing
//! one line per acknowledged commit:
//!
//! ```text
//! ack <seq> <state digest hex> <sync latency µs>
//! ```
//!
//! The line is written (unbuffered, one `write` call) only after
//! [`storage::Store::commit`] returned, so every printed seq must survive a
//! SIGKILL. Usage: `storage-crash-writer <dir> [--no-sync] [--max-seq N]`.
//! `--no-sync` turns the WAL sync off, only to show that the sync test
//! notices.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use storage::workload::Workload;
use storage::{StorageConfig, Store};

struct Args {
    dir: PathBuf,
    sync: bool,
    max_seq: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or("usage: storage-crash-writer <dir> [--no-sync] [--max-seq N]")?;
    let mut parsed = Args {
        dir: PathBuf::from(dir),
        sync: true,
        max_seq: u64::MAX,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--no-sync" => parsed.sync = false,
            "--max-seq" => {
                let n = args.next().ok_or("--max-seq needs a number")?;
                parsed.max_seq = n.parse().map_err(|e| format!("--max-seq: {e}"))?;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(parsed)
}

fn run(args: Args) -> Result<(), String> {
    let config = StorageConfig {
        sync_writes: args.sync,
        ..StorageConfig::default()
    };
    let store = Store::open(&args.dir, config).map_err(|e| e.to_string())?;
    let history = Workload::recover(&store)?;
    let mut workload = *history.last().expect("recovery returns at least the start");
    let mut stdout = std::io::stdout().lock();
    while workload.seq.0 < args.max_seq {
        let committed = workload.step(&store).map_err(|e| e.to_string())?;
        let line = format!(
            "ack {} {} {}\n",
            workload.seq.0,
            workload.state.to_hex(),
            committed.sync_latency.as_micros()
        );
        // One write call per ack, so a trace shows each ack as one syscall.
        stdout
            .write_all(line.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("storage-crash-writer: {e}");
            ExitCode::FAILURE
        }
    }
}
