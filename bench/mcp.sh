#!/usr/bin/env bash
# MCP `tools/call` round trips over stdio, measured by one client (bench/mcp_roundtrip.py:
# write a request line, read until its answer), in one run:
#   - `remit mcp`, a trivial tool that stays inside the task (`secret_names`: decided by the
#     gate, recorded by group commit, answered from memory);
#   - `remit mcp`, a tool that changes something (`write_file`: recorded durably before it
#     runs, performed by the helper inside the task);
#   - the Python MCP SDK's own server with a trivial tool (the peer);
#   - `ping` on each (transport and dispatch only).
#
# Usage: bench/mcp.sh [CALLS]      (default 2000)
# Needs: python3 with venv; installs mcp==2.3.0 from PyPI into target/mcp-venv.
set -euo pipefail

calls="${1:-2000}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
out="$here/out/mcp"
mkdir -p "$out"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
log="$out/mcp-$stamp.txt"
exec > >(tee "$log") 2>&1

if ! cargo build --release -q -p remit --manifest-path "$root/Cargo.toml"; then
    [ -x "$root/target/release/remit" ] || exit 1
    echo "WARNING: the build failed; measuring the remit binary already built"
fi
remit="$root/target/release/remit"
venv="$root/target/mcp-venv"
if ! "$venv/bin/python" -c 'import mcp' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'mcp==2.3.0'
fi
py="$venv/bin/python"

ws="$(mktemp -d /tmp/remit-bench-mcp.XXXXXX)"
trap 'rm -rf "$ws"' EXIT
cd "$ws"
export REMIT_HOME="$ws/.state"

echo "== $calls sequential calls each, after 100 warm-up calls; microseconds"
echo "-- remit mcp, secret_names (stays inside the task)"
"$py" "$here/mcp_roundtrip.py" "$calls" secret_names '{}' -- "$remit" mcp
echo "-- remit mcp, write_file (durable record first, helper in the task)"
"$py" "$here/mcp_roundtrip.py" "$((calls / 4))" write_file '{"path": "out.txt", "content": "x"}' -- "$remit" mcp
echo "-- peer: Python MCP SDK server, trivial tool"
"$py" "$here/mcp_roundtrip.py" "$calls" secret_names '{}' -- "$py" "$here/mcp_peer_server.py"
echo "== log: $log"
