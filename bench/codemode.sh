#!/usr/bin/env bash
# Code mode's own costs, beside its peers, in one run:
#   1. in process: an isolate's cold start with a "hello" script, and a binding call's
#      overhead without any effect (criterion, `cargo bench -p remit-codemode`); beside it,
#      node creating a fresh V8 context (`vm.runInNewContext`) for the same script;
#   2. whole commands: `node -e` and `deno eval` (Deno from PyPI's `deno` package) for the
#      same script, and `remit code run hello.ts`, which also creates a contained task, a
#      gate and a ledger, records the run and signs a receipt.
#
# Usage: bench/codemode.sh [RUNS]      (default 200 runs per command)
# Needs: node, hyperfine (Debian), python3 with venv (for Deno from PyPI).
set -euo pipefail

runs="${1:-200}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
out="$here/out/codemode"
mkdir -p "$out"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
log="$out/codemode-$stamp.txt"
exec > >(tee "$log") 2>&1

echo "== machine: $(nproc) cores, $(uname -r); node $(node --version)"
if ! cargo build --release -q -p remit --manifest-path "$root/Cargo.toml"; then
    [ -x "$root/target/release/remit" ] || exit 1
    echo "WARNING: the build failed; measuring the remit binary already built"
fi
remit="$root/target/release/remit"

echo "== in process (criterion)"
cargo bench -q -p remit-codemode --bench codemode --manifest-path "$root/Cargo.toml" -- --noplot 2>&1 \
    | grep -E "^(isolate|binding call)/|time:|thrpt:" || true

echo "== in process, node: a fresh V8 context per run of the same script"
node "$here/node_vm.js" 2000

deno=""
venv="$root/target/bench-venv"
if [ ! -x "$venv/bin/deno" ]; then
    python3 -m venv "$venv" >/dev/null 2>&1 && "$venv/bin/pip" install -q deno >/dev/null 2>&1 || true
fi
[ -x "$venv/bin/deno" ] && deno="$venv/bin/deno"

ws="$(mktemp -d /tmp/remit-bench-code.XXXXXX)"
trap 'rm -rf "$ws"' EXIT
cd "$ws"
export REMIT_HOME="$ws/.state"
printf 'const greeting: string = "hello";\nconsole.log(greeting);\n' > hello.ts
printf 'const greeting = "hello";\nconsole.log(greeting);\n' > hello.js

echo "== whole commands (hyperfine -N, $runs runs each)"
args=(-n 'node -e' "node -e 'const greeting = \"hello\"; console.log(greeting)'"
      -n 'node hello.js' "node hello.js")
if [ -n "$deno" ]; then
    echo "deno: $("$deno" --version | head -1)"
    args+=(-n 'deno run hello.ts' "$deno run --quiet --no-config hello.ts")
else
    echo "deno: not installable here (pip install deno failed); left out"
fi
args+=(-n 'remit code run hello.ts' "$remit code run --quiet hello.ts")
hyperfine -N --warmup 10 --runs "$runs" --export-json "$out/commands-$stamp.json" "${args[@]}"
echo "== log: $log"
