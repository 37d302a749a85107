#!/usr/bin/env bash
# Starts Debian's prometheus (installed if missing) against a local QLOCK
# cluster left running by `./scripts/run-cluster.sh --keep`, with the alert
# rules of alerts.yml, on http://127.0.0.1:${PROMETHEUS_PORT:-9090}.
#
#   scripts/prometheus/run-prometheus.sh            # the default ports (HTTP 7300..7303)
#   scripts/prometheus/run-prometheus.sh DIR        # the cluster in DIR (its cluster.toml)
#
# Runs in the foreground until Ctrl-C; its data lives in a temporary
# directory that is removed at exit. It listens on 127.0.0.1 only.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../lib/common.sh"

ensure_debian_packages prometheus
port="${PROMETHEUS_PORT:-9090}"
work="$(mktemp -d -t qlock-prometheus-XXXXXX)"
trap 'rm -rf "$work"' EXIT
cp "$here/alerts.yml" "$work/alerts.yml"

if [ $# -ge 1 ]; then
    cluster_file="$1/cluster.toml"
    [ -f "$cluster_file" ] || { echo "error: no $cluster_file (pass the directory simulator cluster --keep printed)" >&2; exit 2; }
    name=$(sed -n 's/^name = "\(.*\)"$/\1/p' "$cluster_file" | head -1)
    {
        sed -n '1,/^scrape_configs:/p' "$here/prometheus.yml"
        echo "  - job_name: qlock"
        echo "    metrics_path: /metrics"
        echo "    static_configs:"
        # Each [[cluster.replicas]] table lists its id before its http address.
        awk -v cluster="${name:-qlock-local}" '
            /^id = / { id = $3 }
            /^http = / { gsub(/"/, "", $3);
                printf "      - targets: [\"%s\"]\n        labels: { cluster: %s, replica: \"%s\" }\n", $3, cluster, id }
        ' "$cluster_file"
    } > "$work/prometheus.yml"
else
    cp "$here/prometheus.yml" "$work/prometheus.yml"
fi
promtool check config "$work/prometheus.yml" >/dev/null

if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "error: something already listens on 127.0.0.1:$port (Debian's own prometheus service? \`sudo systemctl stop prometheus\`), or pick another port: PROMETHEUS_PORT=9091 $0 $*" >&2
    exit 1
fi
targets=$(grep -o '"127\.0\.0\.1:[0-9]*"' "$work/prometheus.yml" | tr -d '"' | tr '\n' ' ')
echo "prometheus on http://127.0.0.1:$port scraping ${targets}(Ctrl-C stops it)" >&2
echo "  alerts: http://127.0.0.1:$port/alerts   try: rate(qlock_committed_requests_total[1m])" >&2
prometheus \
    --config.file="$work/prometheus.yml" \
    --storage.tsdb.path="$work/data" \
    --storage.tsdb.retention.time=1d \
    --web.listen-address="127.0.0.1:$port" \
    --log.level=warn
