#!/usr/bin/env bash
# Spawn cost of a contained command, in one run, beside its peers:
#   plain exec, `remit run` (full containment, default remit), and bubblewrap with the
#   equivalent isolation (user, mount, pid, net, ipc, uts, cgroup namespaces; /usr and /etc
#   read-only; fresh /proc, /dev and /tmp; the workspace read-write).
# Then the warm path (a second command in an already-running task, from the supervisor's
# own process, beside a plain fork+exec from the same process), and the supervisor's peak RSS.
#
# Usage: bench/spawn.sh [RUNS]      (default 300 runs per command)
# Needs: root or user namespaces; installs bubblewrap and hyperfine from Debian if missing.
set -euo pipefail

runs="${1:-300}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
out="$here/out/spawn"
mkdir -p "$out"

need=()
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v hyperfine >/dev/null || need+=(hyperfine)
if [ "${#need[@]}" -gt 0 ]; then
    apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build --release -q -p remit --manifest-path "$root/Cargo.toml"
remit="$root/target/release/remit"
ws="$(mktemp -d /tmp/remit-bench-ws.XXXXXX)"
export REMIT_HOME="$out/state"
trap 'rm -rf "$ws"' EXIT
cd "$ws"

bwrap_args=(--unshare-all --die-with-parent --new-session
    --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/sbin /sbin
    --symlink usr/lib /lib --symlink usr/lib64 /lib64 --ro-bind /etc /etc
    --proc /proc --dev /dev --tmpfs /tmp --bind "$ws" "$ws" --chdir "$ws")

echo "== cold start (hyperfine -N, $runs runs each, same run)"
hyperfine -N --warmup 20 --runs "$runs" --export-json "$out/cold.json" \
    -n 'plain /bin/true' '/bin/true' \
    -n 'remit run /bin/true' "$remit run --quiet -- /bin/true" \
    -n 'bwrap /bin/true' "bwrap ${bwrap_args[*]} /bin/true" \
    -n "plain sh -c 'echo hi'" "sh -c 'echo hi'" \
    -n "remit run sh -c 'echo hi'" "$remit run --quiet -- sh -c 'echo hi'" \
    -n "bwrap sh -c 'echo hi'" "bwrap ${bwrap_args[*]} sh -c 'echo hi'" \
    >"$out/cold.txt"
grep -E '^Benchmark|Time \(mean' "$out/cold.txt" | paste - - | sed -E 's/ +/ /g'

python3 - "$out/cold.json" <<'EOF'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
def median(name):
    return sorted(results[name]["times"])[len(results[name]["times"]) // 2] * 1000
print()
print("| command | plain (ms) | remit (ms) | bwrap (ms) | remit / bwrap | remit / plain |")
print("|---|---|---|---|---|---|")
for label, plain, remit, bwrap in [
    ("/bin/true", "plain /bin/true", "remit run /bin/true", "bwrap /bin/true"),
    ("sh -c 'echo hi'", "plain sh -c 'echo hi'", "remit run sh -c 'echo hi'", "bwrap sh -c 'echo hi'"),
]:
    p, r, b = median(plain), median(remit), median(bwrap)
    print(f"| `{label}` (median) | {p:.2f} | {r:.2f} | {b:.2f} | {r / b:.2f}x | {r / p:.2f}x |")
EOF

echo
echo "== warm path: a second command in a running task (criterion)"
cargo bench -q -p remit-sandbox --bench warm --manifest-path "$root/Cargo.toml" -- --noplot 2>/dev/null \
    | tee "$out/warm.txt" | grep -E '^second command|time:' | paste - - | sed -E 's/ +/ /g' || true
python3 - "$out/warm.txt" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
times = {}
for name, mid, unit in re.findall(r"second command in a running task/(.+?)\n\s+time:\s+\[\S+ \S+ (\S+) (\S+)", text):
    scale = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    times[name.strip()] = float(mid) * scale
for prog in ["true", "sh -c 'echo hi'"]:
    plain, task = times.get(f"plain fork+exec: {prog}"), times.get(f"remit task: {prog}")
    if plain and task:
        print(f"| warm `{prog}` | plain {plain:.3f} ms | remit task {task:.3f} ms | {task / plain:.2f}x |")
EOF

echo
echo "== supervisor peak RSS (VmHWM of the remit process, sampled while its task runs)"
python3 - "$remit" <<'EOF'
import subprocess, sys, time
peaks = []
for _ in range(5):
    p = subprocess.Popen([sys.argv[1], "run", "--quiet", "--", "sleep", "0.3"])
    peak = 0
    while p.poll() is None:
        try:
            for line in open(f"/proc/{p.pid}/status"):
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.02)
    peaks.append(peak)
print(f"peak RSS of the supervisor: {max(peaks) / 1024:.1f} MiB (max of 5 runs; target <= 10 MiB)")
EOF
