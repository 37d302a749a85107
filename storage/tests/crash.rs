//! Crash tests with the real RocksDB (issue 8): a child process writes the
//! deterministic workload through the storage API and prints each
//! acknowledgement; the test kills it with SIGKILL at random points, reopens
//! the store, and checks that every acknowledged write is there and that the
//! recovered state digest is the one acknowledged.
//!
//! SIGKILL leaves the page cache intact, so this cannot tell a sync from no
//! sync; `sync.rs` proves the sync.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use storage::workload::{self, Workload, SNAPSHOT_EVERY};
use storage::{StorageConfig, Store};

const ROUNDS: usize = 8;

/// Runs the writer on `dir` for `run_for`, SIGKILLs it, and returns the
/// acknowledged `(seq, state hex)` pairs it printed.
fn run_writer_and_kill(dir: &Path, run_for: Duration) -> Vec<(u64, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_storage-crash-writer"))
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the crash writer");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    std::thread::sleep(run_for);
    child.kill().expect("SIGKILL the writer"); // std sends SIGKILL on Unix
    child.wait().unwrap();
    let lines = reader.join().unwrap();
    lines.iter().filter_map(|line| parse_ack(line)).collect()
}

/// `ack <seq> <state hex> <µs>`; a line cut by the kill is ignored (its
/// write never completed, so it was not an acknowledgement).
fn parse_ack(line: &str) -> Option<(u64, String)> {
    let mut words = line.split(' ');
    (words.next()? == "ack").then_some(())?;
    let seq = words.next()?.parse().ok()?;
    let state = words.next()?;
    words.next()?.parse::<u64>().ok()?;
    (state.len() == 64).then(|| (seq, state.to_string()))
}

/// The state digest after every seq through `last`, computed from scratch.
fn expected_chain(last: u64) -> Vec<String> {
    let mut state = Workload::genesis().state;
    let mut chain = vec![state.to_hex()];
    for seq in 1..=last {
        state = workload::next_state(state, primitives::SeqNum(seq));
        chain.push(state.to_hex());
    }
    chain
}

fn check_recovered(dir: &Path, acked: &BTreeMap<u64, String>) -> u64 {
    let store = Store::open(dir, StorageConfig::default()).expect("reopen after SIGKILL");
    let history = Workload::recover(&store).expect("recovery finds a consistent workload");
    let last = history.last().unwrap().seq.0;
    let max_acked = acked.keys().last().copied().unwrap_or(0);
    assert!(
        last >= max_acked,
        "acknowledged seq {max_acked} lost: store ends at {last}"
    );
    let chain = expected_chain(last);
    for (seq, state) in acked {
        assert_eq!(
            &chain[*seq as usize], state,
            "acknowledged state of seq {seq}"
        );
    }
    for at in &history {
        assert_eq!(
            at.state.to_hex(),
            chain[at.seq.0 as usize],
            "recovered state of {:?}",
            at.seq
        );
    }
    // Every acknowledged pulse's lockchain entry is there, intact.
    for pulse in 1..=max_acked / SNAPSHOT_EVERY {
        let seq = primitives::SeqNum(pulse * SNAPSHOT_EVERY);
        let root = store.root(workload::pulse_of(seq)).unwrap();
        let state = primitives::Digest(hex_to_array(&chain[seq.0 as usize]));
        assert_eq!(
            root,
            Some(workload::root_entry(seq, state)),
            "root of pulse {pulse}"
        );
    }
    last
}

fn hex_to_array(hex: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

/// A tiny seeded generator (SplitMix64) for the kill times.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[test]
fn sigkill_at_random_points_loses_no_acknowledged_write() {
    let seed = std::env::var("STORAGE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.unwrap().as_nanos() as u64
        });
    eprintln!("crash test seed: {seed} (rerun with STORAGE_CRASH_SEED={seed})");
    let mut rng = SplitMix64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let mut last = 0;
    for round in 0..ROUNDS {
        // Mostly mid-run kills; sometimes during open and recovery.
        let run_for = Duration::from_millis(5 + rng.next() % 600);
        let acks = run_writer_and_kill(dir.path(), run_for);
        for (seq, state) in acks {
            assert!(
                seq > last,
                "round {round}: writer re-acknowledged {seq} (store had {last})"
            );
            acked.insert(seq, state);
        }
        last = check_recovered(dir.path(), &acked);
        eprintln!(
            "round {round}: killed after {run_for:?}; {} acks so far, store at seq {last}",
            acked.len()
        );
    }
    assert!(
        acked.len() as u64 > 2 * SNAPSHOT_EVERY,
        "only {} acknowledgements: the test did not exercise snapshots and gc",
        acked.len()
    );
}
