"""The Python MCP SDK's own server with one trivial tool: the peer for bench/mcp.sh."""

from mcp.server.mcpserver import MCPServer

server = MCPServer("peer")


@server.tool()
def secret_names() -> dict:
    """A trivial tool."""
    return {"names": []}


server.run()
