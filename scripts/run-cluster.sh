#!/usr/bin/env bash
# Runs a local 4-replica QLOCK cluster with a demo workload.
#
# Not yet with real processes: the replica binary (issue 10) and the
# cluster harness (issue 12) have not landed. Until they do, this runs the
# same PBFT core as a deterministic simulation of 4 replicas with clients
# submitting signed requests over a faulty virtual network (drops, delays,
# duplicates, partitions, crashes), and prints what was committed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

ensure_debian_packages clang libclang-dev
echo "run-cluster: real qlockd processes are not built yet (issues 10, 12)." >&2
echo "run-cluster: running a simulated 4-replica cluster instead (seed ${SEED:-1})." >&2
cargo run --quiet --release -p simulator -- sim --seed "${SEED:-1}" --replicas 4 --faults all
