#!/usr/bin/env bash
# Egress proxy cost, in one run, against a local origin, beside Debian's tinyproxy doing
# plain forwarding:
#   - small requests (64-byte answers, keep-alive): p50/p99 latency on one connection, and
#     requests/s over 16 connections;
#   - bulk: a 1 GiB download.
# Modes: direct HTTP and HTTPS; through remit as a plain HTTP forward proxy, as a plain
# CONNECT tunnel (a `dangerously_tunnel` host), and with TLS interception; through tinyproxy
# as a plain HTTP forward proxy and a CONNECT tunnel. remit decides every request with the
# real policy engine and scans every intercepted request for the task's identity token.
# Last, the whole path of a real task: the load client runs inside `remit run` and goes
# through the task's own proxy, which decides each request and records it in the task's
# ledger (written durably before the request leaves) as `remit run` always does.
#
# The stand-alone proxy serves on one thread, as `remit run`'s supervisor serves a task's
# proxy (BENCH_PROXY_THREADS=2 gives it a two-thread runtime instead).
#
# Usage: [ROUNDS=5] [BENCH_PROXY_THREADS=1] bench/egress.sh [REQUESTS] [SECONDS] [BULK_BYTES]
#        (default 2000, 5, 1 GiB per round)
# Needs: tinyproxy (installed from Debian if missing).
set -euo pipefail

requests="${1:-2000}"
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
origin_pid=$!
wait_line "$dir/origin.out" http=
read -r http tls tls2 < <(sed -E 's/http=([0-9]+) tls=([0-9]+) tls2=([0-9]+)/\1 \2 \3/' "$dir/origin.out")
"$bin" proxy "$dir" "$http" "$tls" "$tls2" >"$dir/proxy.out" &
pids+=($!)
proxy_pid=$!
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
tiny_pid=$!
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

rounds="${ROUNDS:-5}"
{
    echo "# egress benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores; $(tinyproxy -v 2>&1 | head -1)"
    echo "# small: $rounds rounds of $requests sequential requests after 200 warm-up (one connection); rps: 16 connections for ${seconds}s; bulk: $rounds rounds of $bulk bytes"
    echo "# every mode runs once per round, in turn, so each is compared with direct in the same moment; medians over the rounds"
} | tee "$report"

# CPU time (user + system, in clock ticks) a process has used so far.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz="$(getconf CLK_TCK)"

# One measurement: load KIND ENTRY ARGS… — prints the value.
measure() {
    local kind="$1" entry="$2"
    shift 2
    local mode="${entry%%|*}" run=()
    if [ "${mode#task:}" != "$mode" ]; then
        mode="${mode#task:}"
        run=("${in_task[@]}")
    fi
    "${run[@]}" "$bin" load "$kind" "$mode" "$@"
}

raw="$dir/raw.tsv"
: >"$raw"
for entry in "${modes[@]}"; do
    name="${entry#*|}"
    r="$(measure rps "$entry" 16 "$seconds")"
    printf '0\t%s\trps\t%s\n' "$name" "${r#rps=}" >>"$raw"
done
for round in $(seq "$rounds"); do
    for entry in "${modes[@]}"; do
        name="${entry#*|}"
        lat="$(measure latency "$entry" "$requests")"
        printf '%s\t%s\tp50\t%s\n' "$round" "$name" "$(sed -E 's/p50_us=([0-9.]+).*/\1/' <<<"$lat")" >>"$raw"
        printf '%s\t%s\tp99\t%s\n' "$round" "$name" "$(sed -E 's/.*p99_us=([0-9.]+)/\1/' <<<"$lat")" >>"$raw"
        # The bulk download, with the CPU each party spent on it: the client (the load
        # process, and for a task everything remit ran), the proxy in between, the origin.
        case "$entry" in
            *":$remit|"*) middle="$proxy_pid" ;;
            *":$tiny|"*) middle="$tiny_pid" ;;
            *) middle="" ;;
        esac
        o0="$(ticks "$origin_pid")"
        p0="${middle:+$(ticks "$middle")}"
        m="$( { TIMEFORMAT='%U %S'; time measure bulk "$entry" "$bulk" 2>/dev/null; } 2>"$dir/time" )"
        read -r cu cs <"$dir/time"
        printf '%s\t%s\tbulk\t%s\n' "$round" "$name" "${m#mb_per_s=}" >>"$raw"
        printf '%s\t%s\tcpu_client\t%s\n' "$round" "$name" "$(awk -v u="$cu" -v s="$cs" 'BEGIN { print u + s }')" >>"$raw"
        printf '%s\t%s\tcpu_origin\t%s\n' "$round" "$name" "$(awk -v a="$(ticks "$origin_pid")" -v b="$o0" -v hz="$hz" 'BEGIN { print (a - b) / hz }')" >>"$raw"
        if [ -n "$middle" ]; then
            printf '%s\t%s\tcpu_proxy\t%s\n' "$round" "$name" "$(awk -v a="$(ticks "$middle")" -v b="$p0" -v hz="$hz" 'BEGIN { print (a - b) / hz }')" >>"$raw"
        fi
    done
done

modes_list="$(printf '%s\n' "${modes[@]}")"
python3 - "$raw" "$modes_list" "$bulk" <<'PY' | tee -a "$report"
import statistics, sys
from collections import defaultdict
raw, modes, bulk_bytes = sys.argv[1], [m for m in sys.argv[2].splitlines() if m], int(sys.argv[3])
data = defaultdict(dict)  # (name, metric) -> {round: value}
for line in open(raw):
    rnd, name, metric, value = line.rstrip("\n").split("\t")
    data[(name, metric)][int(rnd)] = float(value)
def base(mode):
    kind = mode.split("|")[0].removeprefix("task:")
    return "direct HTTP" if kind == "direct-http" or kind.startswith("proxy-http") else "direct HTTPS"
print(f"{'mode':26} {'p50_us':>9} {'p99_us':>9} {'added_p50_us':>13} {'rps':>8} {'bulk_MB/s':>10} {'of_direct':>14} {'CPU_s/GiB client+proxy+origin':>30}")
for entry in modes:
    name = entry.split("|", 1)[1]
    b = base(entry)
    med = lambda metric: statistics.median(data[(name, metric)].values())
    p50s, bulks = data[(name, "p50")], data[(name, "bulk")]
    added = [p50s[r] - data[(b, "p50")][r] for r in p50s]
    share = [bulks[r] / data[(b, "bulk")][r] for r in bulks]
    added_s = "-" if name == b else f"{statistics.median(added):.1f}"
    share_s = "-" if name == b else f"{100 * statistics.median(share):.0f}% ({100 * min(share):.0f}-{100 * max(share):.0f})"
    gib = bulk_bytes / (1 << 30)
    cpu = lambda metric: f"{med(metric) / gib:.2f}" if data.get((name, metric)) else "-"
    cpus = f"{cpu('cpu_client')}+{cpu('cpu_proxy')}+{cpu('cpu_origin')}"
    print(f"{name:26} {med('p50'):9.1f} {med('p99'):9.1f} {added_s:>13} {data[(name, 'rps')][0]:8.0f} {med('bulk'):10.0f} {share_s:>14} {cpus:>30}")
print("CPU: seconds per GiB of the bulk download, medians; for `remit run` the client's share is everything remit ran for the task (proxy and ledger included).")
PY
cp "$raw" "${report%.txt}.tsv"
echo "report: $report (raw measurements: ${report%.txt}.tsv)"
