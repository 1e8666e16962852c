"""``manage.py mcp``: the MCP server on stdio, the API key in VOICEAI_API_KEY (agents.stdio)."""

from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the MCP server (AI assistants) on stdin/stdout; the clinic API key comes from VOICEAI_API_KEY."

    def handle(self, *args: Any, **options: Any) -> None:
        from agents.stdio import run

        run()
