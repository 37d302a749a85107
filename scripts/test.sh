#!/usr/bin/env bash
# Runs every check CI runs, on a fresh Debian machine too: installs what is
# missing (clang and libclang-dev for RocksDB's bindings, strace for the
# storage sync test, prometheus for the promtool checks of
# scripts/prometheus/), then formatting, clippy, the architecture boundary
# check, the whole test suite (the end-to-end tests on real qlockd
# processes included) and a seed range of the simulator.
#
# Set CARGO_TARGET_DIR to reuse a build cache (CI does, see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

# One build for everything (RocksDB's C++ is the slow part and must be
# compiled once): clippy runs under the `test` profile, and build-script
# dependencies get the same debuginfo as normal ones, so clippy's check pass
# and the test build share every build-script unit, RocksDB's included. The
# simulator runs from the binary the test build made. (Found with
# `cargo --unit-graph`: the profile name and build-override debuginfo were
# the only differences.)
export CARGO_PROFILE_TEST_BUILD_OVERRIDE_DEBUG=line-tables-only
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"

build_tests() {
    cargo test --workspace --no-run --message-format=json-render-diagnostics \
        > "$target_dir/test-build.json"
    simulator=$(grep -o '"executable":"[^"]*/simulator"' "$target_dir/test-build.json" | head -1 | cut -d'"' -f4)
    [ -x "$simulator" ] || { echo "error: the test build made no simulator binary" >&2; return 1; }
}

start=$SECONDS
step "system packages" ensure_debian_packages clang libclang-dev strace prometheus
step "rustfmt" cargo fmt --all -- --check
mkdir -p "$target_dir"
step "build (test profile)" build_tests
step "clippy" cargo clippy --workspace --all-targets --profile test --quiet -- -D warnings
step "architecture boundaries" scripts/check-boundaries.sh
step "tests" cargo test --workspace
# Seed ranges of the deterministic simulator (each seed is a whole cluster
# run under faults; a failure prints the command that replays it).
step "simulation: 4 replicas, seeds 0..200" "$simulator" sim --seeds 0..200 --replicas 4 --faults all
step "simulation: 7 replicas, seeds 0..40" "$simulator" sim --seeds 0..40 --replicas 7 --faults all
step "simulation: qlock mixed workload, seeds 0..30" "$simulator" sim --seeds 0..30 --replicas 4 --workload mixed --faults all
# The benchmark harness against a small local cluster for a few seconds, so
# it never rots (the full run, etcd included, is scripts/bench.sh).
bench_out=$(mktemp -d)
step "benchmark smoke run" "$simulator" bench --smoke --out "$bench_out"
rm -rf "$bench_out"
echo "==> all checks passed in $((SECONDS - start)) s" >&2
