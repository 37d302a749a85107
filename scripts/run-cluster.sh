#!/usr/bin/env bash
# The README's first command: a local 4-replica QLOCK cluster — real qlockd
# processes on 127.0.0.1 — with a ~20 s demo workload (contended locks,
# queue producers and consumers). Prints committed ops/s, latency
# percentiles and the history check, then stops everything it started
# (also on Ctrl-C).
#
# On a fresh Debian machine it first installs what is missing (clang and
# libclang-dev, for RocksDB's bindings) and builds in release mode; the
# first build compiles RocksDB's C++ (about 15 minutes on 2 cores).
#
# Arguments go to `simulator cluster` (`--help` lists them), e.g.
#   ./scripts/run-cluster.sh --keep --dir /tmp/qlock-tour   # leave it running
#   ./scripts/run-cluster.sh --workload contended --kill-primary-at 8s
#
# QLOCK_BIN_DIR=DIR uses the qlockd, qlock and simulator binaries in DIR
# instead of building (e.g. the test profile's target/debug).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

ensure_debian_packages clang libclang-dev
if [ -n "${QLOCK_BIN_DIR:-}" ]; then
    bin_dir=$QLOCK_BIN_DIR
else
    if ! command -v cargo >/dev/null 2>&1; then
        echo "error: cargo not found: install Rust first (https://rustup.rs)" >&2
        exit 1
    fi
    step "build (release)" cargo build --release -p node -p client -p simulator
    bin_dir="${CARGO_TARGET_DIR:-$PWD/target}/release"
fi
[ -x "$bin_dir/simulator" ] || { echo "error: no simulator binary in $bin_dir" >&2; exit 1; }

# The demo's shape, unless the arguments say otherwise.
args=("$@")
given() {
    local a
    for a in "${args[@]}"; do
        [[ $a == "$1" || $a == "$1="* ]] && return 0
    done
    return 1
}
given --nodes || args=(--nodes 4 "${args[@]}")
given --duration || args=(--duration 20s "${args[@]}")
given --workload || args=(--workload mixed "${args[@]}")
echo "==> simulator cluster ${args[*]}" >&2
# exec: Ctrl-C and SIGTERM reach the harness, which stops the replicas.
exec "$bin_dir/simulator" cluster "${args[@]}"
