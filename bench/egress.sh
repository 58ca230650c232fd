#!/usr/bin/env bash
# Egress proxy cost, in one run, against a local origin, beside Debian's tinyproxy doing
# plain forwarding:
#   - small requests (64-byte answers, keep-alive): p50/p99 latency on one connection, and
#     requests/s over 16 connections;
#   - bulk: one 1 GiB download.
# Modes: direct HTTP and HTTPS; through remit as a plain HTTP forward proxy, as a plain
# CONNECT tunnel (a `dangerously_tunnel` host), and with TLS interception; through tinyproxy
# as a plain HTTP forward proxy and a CONNECT tunnel. remit decides every request with the
# real policy engine and scans every intercepted request for the task's identity token.
# Last, the whole path of a real task: the load client runs inside `remit run` and goes
# through the task's own proxy, which decides each request and records it in the task's
# ledger (written durably before the request leaves) as `remit run` always does.
#
# Usage: bench/egress.sh [REQUESTS] [SECONDS] [BULK_BYTES]   (default 5000, 5, 1 GiB)
# Needs: tinyproxy (installed from Debian if missing).
set -euo pipefail

requests="${1:-5000}"
seconds="${2:-5}"
bulk="${3:-1073741824}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
out="$here/out"
mkdir -p "$out"
report="$out/egress-$(date -u +%Y%m%dT%H%M%SZ).txt"

command -v tinyproxy >/dev/null || apt-get install -y -qq tinyproxy >/dev/null

cargo build --release -q -p remit-egress --example egress_bench --manifest-path "$root/Cargo.toml"
cargo build --release -q -p remit --manifest-path "$root/Cargo.toml"
bin="$root/target/release/examples/egress_bench"
remit_bin="$root/target/release/remit"
dir="$(mktemp -d /tmp/remit-egress-bench.XXXXXX)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT

wait_line() { # file pattern
    for _ in $(seq 100); do
        if grep -q "$2" "$1" 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "timed out waiting for $2 in $1" >&2
    exit 2
}

"$bin" origin "$dir" >"$dir/origin.out" &
pids+=($!)
wait_line "$dir/origin.out" http=
read -r http tls tls2 < <(sed -E 's/http=([0-9]+) tls=([0-9]+) tls2=([0-9]+)/\1 \2 \3/' "$dir/origin.out")
"$bin" proxy "$dir" "$http" "$tls" "$tls2" >"$dir/proxy.out" &
pids+=($!)
wait_line "$dir/proxy.out" proxy=
remit="$(sed -E 's/proxy=([0-9]+)/\1/' "$dir/proxy.out")"

tiny="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat >"$dir/tinyproxy.conf" <<CONF
Port $tiny
Listen 127.0.0.1
Timeout 600
MaxClients 256
Allow 127.0.0.1
ConnectPort $tls2
DisableViaHeader Yes
LogLevel Critical
CONF
tinyproxy -d -c "$dir/tinyproxy.conf" >"$dir/tinyproxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$tiny") 2>/dev/null && break; sleep 0.05; done
(echo >"/dev/tcp/127.0.0.1/$tiny") 2>/dev/null || { echo "tinyproxy did not start:" >&2; cat "$dir/tinyproxy.log" >&2; exit 2; }

export BENCH_DIR="$dir" BENCH_PORTS="$http,$tls,$tls2"
mkdir -p "$dir/ws" "$dir/home"
cat >"$dir/task.remit.toml" <<REMIT
[filesystem]
read_only = ["$(dirname "$bin")"]

[environment]
set = { BENCH_DIR = "/tmp", BENCH_PORTS = "$http,$tls,$tls2" }

[network]
allow = ["127.0.0.1:$http"]
private = ["127.0.0.1"]
REMIT
# Inside a task the proxy is on the task's own loopback, port 3128.
in_task=(env REMIT_HOME="$dir/home" "$remit_bin" run --quiet --remit "$dir/task.remit.toml" --workspace "$dir/ws" --)
modes=(
    "direct-http|direct HTTP"
    "proxy-http:$remit|remit, HTTP forward"
    "proxy-http:$tiny|tinyproxy, HTTP forward"
    "direct-https|direct HTTPS"
    "connect:$remit|remit, CONNECT tunnel"
    "connect:$tiny|tinyproxy, CONNECT tunnel"
    "intercept:$remit|remit, TLS intercepted"
    "task:proxy-http:3128|remit run, HTTP, ledger"
)

{
    echo "# egress benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores; $(tinyproxy -v 2>&1 | head -1)"
    echo "# small: $requests sequential requests after 200 warm-up (one connection); rps: 16 connections for ${seconds}s; bulk: $bulk bytes"
    printf '%-26s %10s %10s %12s %10s %10s %9s\n' mode p50_us p99_us added_p50_us rps bulk_MB/s of_direct
} | tee "$report"

declare -A p50
for entry in "${modes[@]}"; do
    mode="${entry%%|*}"
    name="${entry#*|}"
    run=()
    if [ "${mode#task:}" != "$mode" ]; then
        mode="${mode#task:}"
        run=("${in_task[@]}")
    fi
    lat="$("${run[@]}" "$bin" load latency "$mode" "$requests")"
    rps="$("${run[@]}" "$bin" load rps "$mode" 16 "$seconds")"
    mbs="$("${run[@]}" "$bin" load bulk "$mode" "$bulk")"
    p="$(sed -E 's/p50_us=([0-9.]+).*/\1/' <<<"$lat")"
    q="$(sed -E 's/.*p99_us=([0-9.]+)/\1/' <<<"$lat")"
    r="${rps#rps=}"
    m="${mbs#mb_per_s=}"
    p50[$name]="$p"
    case "$mode" in
        direct-http | proxy-http:*) base="direct HTTP" ;;
        *) base="direct HTTPS" ;;
    esac
    added="$(awk -v a="$p" -v b="${p50[$base]}" 'BEGIN { printf "%.1f", a - b }')"
    if [ "$name" = "$base" ]; then added="-"; fi
    case "$base" in
        "direct HTTP") direct_bulk="${direct_http_bulk:-$m}"; direct_http_bulk="$direct_bulk" ;;
        *) direct_bulk="${direct_https_bulk:-$m}"; direct_https_bulk="$direct_bulk" ;;
    esac
    share="$(awk -v a="$m" -v b="$direct_bulk" 'BEGIN { printf "%.0f%%", 100 * a / b }')"
    printf '%-26s %10s %10s %12s %10s %10s %9s\n' "$name" "$p" "$q" "$added" "$r" "$m" "$share" | tee -a "$report"
done
echo "report: $report"
