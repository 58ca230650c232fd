"""Round trips of MCP `tools/call` over stdio, measured from the client side.

usage: mcp_roundtrip.py N TOOL ARGS_JSON -- SERVER COMMAND...

Starts the server, does the `initialize` handshake, warms up, then times N sequential
`tools/call` requests (write the request line, read until its response) and N `ping`
requests (transport and dispatch only). Prints p50/p90/p99/mean in microseconds.
"""

import json
import statistics
import subprocess
import sys
import time


def main():
    n = int(sys.argv[1])
    tool = sys.argv[2]
    args = json.loads(sys.argv[3])
    command = sys.argv[sys.argv.index("--") + 1 :]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
    out = proc.stdout
    next_id = [0]

    def request(method, params=None):
        next_id[0] += 1
        msg = {"jsonrpc": "2.0", "id": next_id[0], "method": method}
        if params is not None:
            msg["params"] = params
        proc.stdin.write((json.dumps(msg) + "\n").encode())
        while True:
            line = out.readline()
            if not line:
                raise SystemExit("the server closed its output")
            reply = json.loads(line)
            if reply.get("id") == next_id[0]:
                return reply

    init = request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}})
    assert "result" in init, init
    proc.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')

    def timed(method, params):
        for _ in range(min(100, n)):
            r = request(method, params)
            assert "result" in r and not r["result"].get("isError"), r
        samples = []
        for _ in range(n):
            t = time.perf_counter_ns()
            request(method, params)
            samples.append((time.perf_counter_ns() - t) / 1000)
        samples.sort()
        q = lambda p: samples[min(len(samples) - 1, int(p * len(samples)))]
        return {"p50_us": round(q(0.5), 1), "p90_us": round(q(0.9), 1), "p99_us": round(q(0.99), 1), "mean_us": round(statistics.mean(samples), 1), "n": n}

    result = {
        "tools/call " + tool: timed("tools/call", {"name": tool, "arguments": args}),
        "ping": timed("ping", None),
    }
    proc.stdin.close()
    proc.wait(timeout=30)
    print(json.dumps(result))


main()
