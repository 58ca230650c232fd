#!/usr/bin/env bash
# Ledger benchmarks in one run: `cargo bench -p remit-ledger` (durable appends for batches of
# 1, 100 and 1,000 beside raw write+fdatasync of the same bytes and beside PostgreSQL, Merkle
# and checkpoint overhead, verify throughput, proof latency on a 1M-event ledger), then the
# real binary: `remit ledger verify` and `remit ledger prove` on a 1M-event ledger.
#
# Usage: bench/ledger.sh [--quick]
#   --quick   shorter measurements, a 100k-event proof ledger
# Environment: REMIT_BENCH_DIR (scratch dir on the disk to measure; default: bench/out/tmp),
#   REMIT_BENCH_NO_PG=1 to skip PostgreSQL (needs Debian's `postgresql` package otherwise).
# Results: bench/out/ledger-<date>.txt (criterion's reports stay in target/criterion).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
out_dir="$root/bench/out"
mkdir -p "$out_dir"
report="$out_dir/ledger-$(date -u +%Y%m%dT%H%M%SZ).txt"
scratch_is_ours=0
if [[ -z "${REMIT_BENCH_DIR:-}" ]]; then
    export REMIT_BENCH_DIR="$out_dir/tmp"
    scratch_is_ours=1
fi
mkdir -p "$REMIT_BENCH_DIR"
events=1000000
if [[ "${1:-}" == "--quick" ]]; then
    export REMIT_BENCH_QUICK=1
    events=100000
fi

log() { printf '%s\n' "$*" | tee -a "$report"; }

log "# remit ledger benchmarks, $(date -u +%FT%TZ)"
log "# host: $(nproc) cores, $(uname -r); scratch: $REMIT_BENCH_DIR ($(df -h "$REMIT_BENCH_DIR" | awk 'NR==2 {print $1}'))"
log ""
log "## cargo bench -p remit-ledger"
cargo bench -p remit-ledger --bench ledger -- --noplot 2>&1 \
    | grep -vE '^\s*$|Warming up|Collecting|Analyzing|outliers|high mild|high severe|low mild|low severe|Gnuplot' \
    | tee -a "$report"

log ""
log "## remit ledger verify / prove on $events events (release binary)"
cargo build --release -q -p remit -p remit-ledger --example gen_ledger
db="$REMIT_BENCH_DIR/cli-$events.db"
rm -f "$db" "$db-wal" "$db-shm" "${db%.db}.key" "$db.writer-lock"
"$root/target/release/examples/gen_ledger" "$db" "$events" 2>&1 | tee -a "$report"
remit="$root/target/release/remit"
for run in 1 2 3; do
    # verify prints its own rate on stderr
    "$remit" ledger verify --ledger "$db" --key "${db%.db}.key" 2>&1 >/dev/null | tee -a "$report"
done
start=$(date +%s%N)
for i in $(seq 1 50); do
    "$remit" ledger prove $(( (i * 7919) % events )) --ledger "$db" >/dev/null
done
end=$(date +%s%N)
log "remit ledger prove: $(( (end - start) / 50 / 1000 )) µs per call including process start (50 calls)"
log ""
log "report: $report"
rm -f "$db" "$db-wal" "$db-shm" "${db%.db}.key" "$db.writer-lock"
if [[ $scratch_is_ours == 1 ]]; then rmdir "$REMIT_BENCH_DIR" 2>/dev/null || true; fi
