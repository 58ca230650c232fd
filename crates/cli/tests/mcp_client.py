"""A real MCP client (the Python MCP SDK) for remit's tests.

usage: mcp_client.py stdio REMIT_BINARY ENV_JSON CALLS_JSON -- SERVER_ARGS...
       mcp_client.py http URL TOKEN CALLS_JSON

CALLS_JSON is a list of [tool, arguments]. The client initializes, lists the tools, calls
each in order and prints one JSON object: the server's name, the tool names, and each
call's `is_error`, text and structured content.
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


async def exercise(read, write, calls):
    async with ClientSession(read, write) as session:
        init = await session.initialize()
        listed = await session.list_tools()
        out = {
            "server": init.server_info.name,
            "tools": sorted(t.name for t in listed.tools),
            "schemas": {t.name: t.input_schema for t in listed.tools},
            "calls": [],
        }
        for name, args in calls:
            try:
                r = await session.call_tool(name, args)
                out["calls"].append(
                    {
                        "tool": name,
                        "is_error": bool(r.is_error),
                        "text": "".join(getattr(c, "text", "") for c in r.content),
                        "structured": r.structured_content,
                    }
                )
            except Exception as e:  # a protocol error (unknown tool)
                out["calls"].append({"tool": name, "protocol_error": str(e)})
        print(json.dumps(out))


async def main():
    mode = sys.argv[1]
    if mode == "stdio":
        binary, env, calls = sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
        sep = sys.argv.index("--")
        params = StdioServerParameters(command=binary, args=sys.argv[sep + 1 :], env=env)
        async with stdio_client(params) as (read, write):
            await exercise(read, write, calls)
    elif mode == "http":
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        url, token, calls = sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
        client = httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(60.0)
        )
        async with streamable_http_client(url, http_client=client) as (read, write):
            await exercise(read, write, calls)
    else:
        raise SystemExit(f"unknown mode {mode}")


asyncio.run(main())
