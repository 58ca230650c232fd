#!/usr/bin/env bash
# Regenerate crates/cli/startup.order: the functions and constants a `remit run` touches,
# which the release link places together (crates/cli/build.rs), so that a task's supervisor
# maps a few hundred KiB of the binary instead of most of it.
#
# How: link the release binary once through a wrapper that keeps its objects. Then:
#   1. every function a task's supervisor runs, in the order it first runs, from one
#      breakpoint per function (bench/entry-trace.c) over a few tasks: steady ones first,
#      then what only the first task of a new home runs;
#   2. round after round, relink with the list so far, run tasks under a page-fault trace,
#      and add every constant (and any function) a fault landed in. The kernel maps file
#      pages 64 KiB at a time, so a round sees only the first touch in each window; once
#      the touched data is packed together the rounds stop finding new symbols.
# The names are stable from build to build because the release profile compiles each crate
# as one code-generation unit (no `.llvm.<hash>` suffixes on promoted local symbols).
#
# Usage: bench/startup-order.sh [ROUNDS]      (default 40)
# Needs: perf, readelf, nm, python3, a C compiler; root (the traces and the tasks).
set -euo pipefail

rounds="${1:-40}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
order="$root/crates/cli/startup.order"
for tool in perf readelf nm python3 cc; do
    command -v "$tool" >/dev/null || { echo "startup-order: needs \`$tool\`" >&2; exit 2; }
done

work="$(mktemp -d /tmp/remit-order.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/objs" "$work/ws" "$work/home"

# 1. The link line, with copies of the objects it names (rustc deletes its own).
cat > "$work/cc" <<'EOF'
#!/usr/bin/env python3
import os, shutil, sys
work = os.environ["REMIT_ORDER_WORK"]
args = []
for i, arg in enumerate(sys.argv[1:]):
    if os.path.isfile(arg) and (arg.endswith(".o") or "/rustc" in arg):
        copy = os.path.join(work, "objs", f"{i}-{os.path.basename(arg)}")
        shutil.copy(arg, copy)
        arg = copy
    args.append(arg)
with open(os.path.join(work, "link.args"), "w") as f:
    f.write("\0".join(args))
os.execvp("cc", ["cc"] + sys.argv[1:])
EOF
chmod +x "$work/cc"
REMIT_ORDER_WORK="$work" cargo rustc --release -q -p remit --bin remit \
    --manifest-path "$root/Cargo.toml" -- -C linker="$work/cc"

# 2. Relink with a given list (the build's own list is replaced by the working one).
relink() {
    python3 - "$work" "$1" <<'EOF'
import os, subprocess, sys
work, order = sys.argv[1], sys.argv[2]
args = open(os.path.join(work, "link.args")).read().split("\0")
out, i = [], 0
while i < len(args):
    a = args[i]
    if a == "-o":
        out += ["-o", os.path.join(work, "remit")]
        i += 2
        continue
    if a.startswith("-Wl,--symbol-ordering-file="):
        a = "-Wl,--symbol-ordering-file=" + order
    out.append(a)
    i += 1
if not any(a.startswith("-Wl,--symbol-ordering-file=") for a in out):
    out += ["-Wl,--symbol-ordering-file=" + order, "-Wl,--no-warn-symbol-ordering"]
subprocess.run(["cc"] + out, check=True)
EOF
}

# 3. The symbols that page faults landed in, over tasks run by the relinked binary.
touched() {
    (
        cd "$work/ws"
        export REMIT_HOME="$work/home"
        "$work/remit" run --quiet -- /bin/true
        # With `fresh`, the first task of a new home (keys, stores) is traced as well.
        perf record -q -o "$work/faults.data" -e exceptions:page_fault_user -- sh -c '
            if [ "$1" = fresh ]; then
                REMIT_HOME="$(mktemp -d "$REMIT_HOME.XXXXXX")" "$0" run --quiet -- /bin/true
            fi
            for i in 1 2 3 4 5; do
                "$0" run --quiet -- /bin/true
                "$0" run --quiet -- sh -c "echo hi" >/dev/null
            done' "$work/remit" "${1:-}" 2>/dev/null
    )
    python3 - "$work/remit" "$work/faults.data" <<'EOF'
import bisect, re, subprocess, sys
binary, data = sys.argv[1], sys.argv[2]
run = lambda *a: subprocess.run(a, capture_output=True, text=True, check=True).stdout
segments = [(int(p[1], 16), int(p[2], 16), int(p[4], 16))
            for p in (l.split() for l in run("readelf", "-lW", binary).splitlines())
            if p and p[0] == "LOAD"]
# Every symbol bounds the one before it; only code and read-only data are kept.
symbols = [(int(p[0], 16), p[2], p[1] in "tTrR")
           for p in (l.split() for l in run("nm", "-n", "--defined-only", binary).splitlines())
           if len(p) == 3]
starts = [s[0] for s in symbols]
end = segments[-1][1] + segments[-1][2]
mapping = re.compile(r"PERF_RECORD_MMAP2? .*\[(0x[0-9a-f]+)\((0x[0-9a-f]+)\) @ (0x[0-9a-f]+|0) .*\]: \S+ (\S+)")
fault = re.compile(r"address=(0x[0-9a-f]+) ")
bases, seen = set(), {}
for line in run("perf", "script", "-i", data, "--show-mmap-events", "-F", "pid,trace").splitlines():
    m = mapping.search(line)
    if m:
        if m.group(4) == binary:
            start, pgoff = int(m.group(1), 16), int(m.group(3), 16)
            offset, vaddr, _ = max(s for s in segments if s[0] <= pgoff + 0xfff)
            bases.add(start - (pgoff + vaddr - offset))
        continue
    m = fault.search(line)
    if not m:
        continue
    address = int(m.group(1), 16)
    for base in bases:
        if 0 <= address - base < end:
            i = bisect.bisect_right(starts, address - base) - 1
            if i >= 0 and symbols[i][2]:
                seen.setdefault(symbols[i][1], None)
            break
print("\n".join(seen))
EOF
}

# Every function the supervisor runs, first run first.
cc -O2 -o "$work/entry-trace" "$here/entry-trace.c"
: > "$work/order"
relink "$work/order"
# Functions only (a breakpoint in data read as a table would change what is read).
readelf -sW "$work/remit" | awk '$4 == "FUNC" && $7 != "UND" && $2 !~ /^0+$/ { print $2, $8 }' \
    > "$work/functions"
(
    cd "$work/ws"
    export REMIT_HOME="$work/home"
    "$work/remit" run --quiet -- /bin/true
    trace() {
        "$work/entry-trace" "$work/functions" "$work/trace.$1" -- "$work/remit" "${@:2}" \
            >/dev/null 2>"$work/trace.$1.err" || { cat "$work/trace.$1.err" >&2; exit 1; }
    }
    trace 1 run --quiet -- /bin/true
    trace 2 run --quiet -- sh -c "echo hi"
    trace 3 run --quiet -- sleep 0.2
    trace 4 run -- /bin/true
    trace 5 --version
    REMIT_HOME="$(mktemp -d "$REMIT_HOME.XXXXXX")" trace 6 run --quiet -- /bin/true
)
cat "$work"/trace.[1-6] | awk '!seen[$0]++' > "$work/order"
echo "traced: $(wc -l < "$work/order") functions"
for round in $(seq "$rounds"); do
    relink "$work/order"
    touched > "$work/new"
    added="$(grep -vxF -f "$work/order" "$work/new" | tee -a "$work/order" | wc -l)"
    echo "round $round: $added new symbols, $(wc -l < "$work/order") in all"
    [ "$added" -lt 10 ] && break
done
# What only the first task of a home touches goes after the rest.
for round in $(seq 20); do
    relink "$work/order"
    touched fresh > "$work/new"
    added="$(grep -vxF -f "$work/order" "$work/new" | tee -a "$work/order" | wc -l)"
    echo "first-task round $round: $added new symbols, $(wc -l < "$work/order") in all"
    [ "$added" -lt 10 ] && break
done
cp "$work/order" "$order"
echo "wrote $order"
