#!/usr/bin/env bash
# Runs every check CI runs, on a fresh Debian machine too: installs what is
# missing (clang and libclang-dev for RocksDB's bindings, strace for the
# storage sync test), then formatting, clippy, the architecture boundary
# check and the whole test suite.
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
echo "==> all checks passed in $((SECONDS - start)) s" >&2
