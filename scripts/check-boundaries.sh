#!/usr/bin/env bash
# Architecture invariant check (see ARCHITECTURE.md):
# 1. the protocol cores depend on no tokio, libp2p or RocksDB;
# 2. the cores' clippy.toml really rejects a clock read and a HashMap: a
#    canary crate using them with the same clippy.toml must fail clippy.
set -euo pipefail
cd "$(dirname "$0")/.."

cores=(primitives consensus gossip qlock lockchain)
status=0
for core in "${cores[@]}"; do
    offenders=$(cargo tree -p "$core" -e normal --prefix none --quiet |
        grep -E '^(tokio|libp2p[a-z0-9-]*|rocksdb|librocksdb-sys) v' | sort -u || true)
    if [ -n "$offenders" ]; then
        echo "error: core crate $core depends on IO crates:" >&2
        echo "$offenders" >&2
        status=1
    fi
done
[ $status -eq 0 ] || exit $status
echo "    no core crate (${cores[*]}) depends on tokio, libp2p or rocksdb" >&2

target=${CARGO_TARGET_DIR:-$PWD/target}
canary="$target/clippy-canary"
rm -rf "$canary"
mkdir -p "$canary/src"
cp primitives/clippy.toml "$canary/clippy.toml"
cat >"$canary/Cargo.toml" <<'TOML'
[package]
name = "clippy-canary"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]
TOML
cat >"$canary/src/lib.rs" <<'RS'
//! Must fail clippy under the cores' clippy.toml.
pub fn reads_the_clock() -> std::time::Instant {
    std::time::Instant::now()
}
pub fn hash_order() -> std::collections::HashMap<u8, u8> {
    std::collections::HashMap::new()
}
RS
if out=$(cargo clippy --quiet --manifest-path "$canary/Cargo.toml" -- -D clippy::disallowed_methods -D clippy::disallowed_types 2>&1); then
    echo "error: a crate calling Instant::now passed clippy with the cores' clippy.toml" >&2
    exit 1
fi
for needle in "std::time::Instant::now" "std::collections::HashMap"; do
    if ! grep -q "$needle" <<<"$out"; then
        echo "error: clippy did not flag $needle in the canary:" >&2
        echo "$out" >&2
        exit 1
    fi
done
echo "    clippy rejects Instant::now and HashMap in a core crate (canary)" >&2
