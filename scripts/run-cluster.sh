#!/usr/bin/env bash
# Runs a local 4-replica QLOCK cluster with a demo workload.
#
# Not yet: the replica binary (issue 10) and the cluster harness (issue 12)
# have not landed. Until they do, this script says so and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "run-cluster: not yet — qlockd and 'simulator cluster' are still being built (issues 10 and 12)." >&2
exit 2
