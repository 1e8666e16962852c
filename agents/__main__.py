"""``python -m agents``: the MCP server on stdio (agents.stdio)."""

import os

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceai.settings")
    django.setup()
    from agents.stdio import run

    run()


if __name__ == "__main__":
    main()
