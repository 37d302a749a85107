#!/usr/bin/env bash
# Installs what the etcd side of the benchmark needs (BENCHMARKS.md,
# "QLOCK against etcd"): Debian's etcd-server (3.4) and etcd-client
# (etcdctl), and protobuf-compiler with libprotobuf-dev (the well-known
# .proto files), which the `etcd-client` crate's build script needs (only
# with `--features etcd` of the simulator).
# Idempotent: installs only what is missing; one `apt-get update` at most.
set -euo pipefail

need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
# protoc's well-known types (google/protobuf/descriptor.proto, …).
[ -f /usr/include/google/protobuf/descriptor.proto ] || need+=(libprotobuf-dev)
if [ "${#need[@]}" -eq 0 ]; then
    echo "etcd-install: etcd, etcdctl, protoc and its well-known types are installed"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "etcd-install: installing ${need[*]}"
$SUDO apt-get update -qq
# Debian's etcd-server package starts a system etcd on 2379 when systemd
# runs; the benchmark starts its own members on other ports and never uses
# that one. No daemon is started inside a container without systemd.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
etcd --version | head -1
protoc --version
