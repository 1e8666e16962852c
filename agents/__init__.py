"""AI assistants' way in: a read-only, tenant-scoped MCP server over the
clinic's consultations (issue 14; docs/mcp.md).

An adapter like the REST API: it turns an API key into a principal
(``clinics.principals``), gates it (``clinics.access.require_mcp_access``,
a per-key rate limit) and reads only through the access layer, the
selectors and the services, which write the same ``transcript.read`` audit
rows as REST. ``reads`` holds the reads, ``server`` the MCP tools and
resources, ``http`` the streamable HTTP endpoint (``/mcp``), ``stdio`` the
stdio entry point (``python -m agents``).
"""
