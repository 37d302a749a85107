#!/usr/bin/env bash
# The end-to-end benchmark of BENCHMARKS.md ("End to end: QLOCK against
# etcd"): installs etcd (Debian's etcd-server 3.4) and protoc if missing,
# builds qlockd and the simulator in the release profile (the simulator
# with its `etcd` feature), then runs `simulator bench`: local QLOCK
# clusters of 4 and 7 replicas and a local 3-member etcd, one after the
# other, every workload, closed- and open-loop. Prints the table; writes
# bench-results/bench.json and bench-results/bench.svg.
#
#   scripts/bench.sh                      # the full run (about 40 minutes)
#   scripts/bench.sh --duration 2s        # any `simulator bench` flag
#   scripts/bench.sh --smoke              # seconds, QLOCK only (as CI)
#
# Everything listens on 127.0.0.1 only and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/etcd-install.sh
cargo build --profile release -p node --bin qlockd
cargo build --profile release -p simulator --bin simulator --features etcd
target_dir="${CARGO_TARGET_DIR:-target}"
exec "$target_dir/release/simulator" bench --out "${BENCH_OUT:-bench-results}" "$@"
