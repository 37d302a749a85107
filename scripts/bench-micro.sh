#!/usr/bin/env bash
# The micro-benchmarks of BENCHMARKS.md ("Micro-benchmarks"): criterion
# benches of the cores and of storage, in the release profile. Prints
# criterion's report of each; `scripts/bench-micro.sh pure` skips the
# storage bench (the only one that needs RocksDB).
set -euo pipefail
cd "$(dirname "$0")/.."

benches=(
    "primitives crypto"
    "lockchain merkle"
    "qlock execute"
    "gossip plumtree"
    "consensus pbft"
)
if [ "${1:-}" != "pure" ]; then
    benches+=("storage commit")
fi
for b in "${benches[@]}"; do
    set -- $b
    echo "== $1 / $2"
    cargo bench --profile release -p "$1" --bench "$2" -- --noplot
done
