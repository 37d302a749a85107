# Shared helpers for scripts/*.sh. Source it; it does nothing by itself.

# Installs the Debian packages given as arguments that are missing, running
# `apt-get update` at most once per script run.
ensure_debian_packages() {
    local missing=()
    local pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: missing packages ${missing[*]} and no apt-get to install them" >&2
        return 1
    fi
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "==> installing ${missing[*]}" >&2
    if [ -z "${QLOCK_APT_UPDATED:-}" ]; then
        $sudo apt-get update -qq
        export QLOCK_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Runs a named step and prints how long it took.
step() {
    local name=$1
    shift
    local start=$SECONDS
    echo "==> $name" >&2
    "$@"
    echo "    $name: $((SECONDS - start)) s" >&2
}
