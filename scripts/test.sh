#!/usr/bin/env bash
# Runs every check CI runs, on a fresh Debian machine too: installs what is
# missing (clang and libclang-dev for RocksDB's bindings, strace for the
# storage sync test), then formatting, clippy, the architecture boundary
# check, the whole test suite and a seed range of the simulator.
#
# Set CARGO_TARGET_DIR to reuse a build cache (CI does, see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

start=$SECONDS
step "system packages" ensure_debian_packages clang libclang-dev strace
step "rustfmt" cargo fmt --all -- --check
step "clippy" cargo clippy --workspace --all-targets --quiet -- -D warnings
step "architecture boundaries" scripts/check-boundaries.sh
step "tests" cargo test --workspace
# A seed range of the deterministic simulator (each seed is a whole cluster
# run under faults; a failure prints the command that replays it).
step "simulation: 4 replicas, seeds 0..200" cargo run --quiet -p simulator -- sim --seeds 0..200 --replicas 4 --faults all
step "simulation: 7 replicas, seeds 0..40" cargo run --quiet -p simulator -- sim --seeds 0..40 --replicas 7 --faults all
step "simulation: qlock mixed workload, seeds 0..30" cargo run --quiet -p simulator -- sim --seeds 0..30 --replicas 4 --workload mixed --faults all
echo "==> all checks passed in $((SECONDS - start)) s" >&2
