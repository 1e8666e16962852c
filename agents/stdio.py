"""The MCP server on stdin/stdout, for desktop assistants that start it as
a child process (Claude Desktop's ``mcpServers``): ``python -m agents`` or
``python manage.py mcp``, with the clinic API key in ``VOICEAI_API_KEY``.

stdout carries the protocol only: the project's logs go to stderr
(``LOGGING``'s console handler), as the SDK's do.
"""

import os
import sys

from agents.server import API_KEY_ENV


def run() -> None:
    """Serve until stdin closes (Django must be set up)."""
    from agents.server import mcp_server

    if not os.environ.get(API_KEY_ENV, "").strip():
        # Served anyway, so the client sees the same clear error on each call.
        print(f"voiceai mcp: {API_KEY_ENV} is not set; every call will be refused.", file=sys.stderr)
    mcp_server.run("stdio")
