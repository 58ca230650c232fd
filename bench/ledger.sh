#!/usr/bin/env bash
# Ledger benchmarks in one run: `cargo bench -p remit-ledger` (the `paired` lines first: durable
# appends for batches of 1, 100 and 1,000, raw write+fdatasync of the same bytes and the bare
# store timed back to back, giving the ratio to raw and the Merkle + checkpoint overhead from
# the same moments, see docs/ledger.md; then the same as criterion groups, PostgreSQL, 1, 2
# and 4 writer processes on one ledger, the cold start of a run, Merkle and checkpoint
# overhead, verify throughput, proof latency on a 1M-event ledger), then release binaries:
# concurrent writer processes (`remit-ledger-writer`), the cold start phase by phase
# (`examples/cold_start`, with its fsyncs counted when strace is installed), and
# `remit ledger verify` and `remit ledger prove` on a 1M-event ledger.
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
log "## concurrent writer processes on one SQLite ledger (release remit-ledger-writer)"
log "# each process appends its share in batches whose last event is durable and waited for;"
log "# wall time from the first start to the last exit, process start and open included"
cargo build --release -q -p remit-ledger --features testing \
    --bin remit-ledger-writer --example cold_start --example gen_ledger
writer="$root/target/release/remit-ledger-writer"
for batch in 1 100 1000; do
    total=$(( batch == 1 ? 4000 : 100000 ))
    for procs in 1 2 4; do
        db="$REMIT_BENCH_DIR/procs.db"
        rm -f "$db" "$db-wal" "$db-shm"
        pids=()
        start=$(date +%s%N)
        for p in $(seq 1 "$procs"); do
            "$writer" --sqlite "$db" --key-seed bench.remit/ledger:7 --tag "p$p" \
                --events $(( total / procs )) --durable-every "$batch" --quiet >/dev/null &
            pids+=($!)
        done
        for pid in "${pids[@]}"; do wait "$pid"; done
        end=$(date +%s%N)
        log "$procs writer(s), batch $batch: $(( total * 1000000000 / (end - start) )) events/s ($total events in $(( (end - start) / 1000000 )) ms)"
    done
done
rm -f "$db" "$db-wal" "$db-shm"

log ""
log "## cold start of a run: open, 4 appends, flush, receipt, close (release examples/cold_start)"
cold="$REMIT_BENCH_DIR/cold"
rm -rf "$cold"
"$root/target/release/examples/cold_start" "$cold" 500 2>&1 | tee -a "$report"
if command -v strace >/dev/null; then
    log "# fsyncs over 100 runs (strace -f -c; strace slows every call, so times here are inflated):"
    strace -f -c -e trace=fsync,fdatasync,pwrite64,pread64 \
        "$root/target/release/examples/cold_start" "$cold" 100 2>&1 >/dev/null \
        | grep -E 'calls|fsync|fdatasync|pwrite|pread|total' | tee -a "$report"
fi
rm -rf "$cold"

log ""
log "## remit ledger verify / prove on $events events (release binary)"
cargo build --release -q -p remit
db="$REMIT_BENCH_DIR/cli-$events.db"
rm -f "$db" "$db-wal" "$db-shm" "${db%.db}.key"
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
rm -f "$db" "$db-wal" "$db-shm" "${db%.db}.key"
if [[ $scratch_is_ours == 1 ]]; then rmdir "$REMIT_BENCH_DIR" 2>/dev/null || true; fi
