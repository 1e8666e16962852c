"""The MCP server: four read-only tools and two resource templates over a
clinic's consultations (docs/mcp.md).

Each call resolves its principal afresh — from the HTTP request's API key
(``agents.http`` authenticated it) or, on stdio, from the key in
``VOICEAI_API_KEY`` — so a revoked key, a suspended clinic or MCP switched
off take effect on the next call. Then the gate (``require_mcp_access``,
the per-key rate limit) and the read itself, in a worker thread
(``db_async``) through ``agents.reads``.

Errors: a refusal of the caller (no or bad key, MCP off, key role not
allowed, rate limited) is a JSON-RPC error with a stable ``data.code``; a
problem with the call (no such consultation — also another clinic's — or a
bad query) is a tool result with ``isError`` and a message the assistant
can act on; resources answer both as JSON-RPC errors. Arguments are
checked against each tool's JSON schema before any of this runs. Nothing
else reaches the client: the SDK answers an unexpected exception with
"Error executing tool …", never its text or traceback.
"""

import os
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from django.conf import settings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import ToolAnnotations
from pydantic import Field

from agents import reads
from clinics.access import Principal, require_mcp_access
from clinics.principals import principal_for_caller
from clinics.services import api_key_authenticate
from voiceai.db import db_async
from voiceai.errors import DomainError, Forbidden, NotFound
from voiceai.rate_limit import RateLimit, RateLimited, rate_limit_hit

#: Where the stdio server finds its API key (Claude Desktop's "env").
API_KEY_ENV = "VOICEAI_API_KEY"
#: The ASGI scope key under which ``agents.http`` leaves the principal.
SCOPE_PRINCIPAL = "voiceai.mcp_principal"
#: The client's name in audit rows when it gave none (no initialize seen).
DEFAULT_CLIENT = "mcp"

# JSON-RPC error codes for refusals (the implementation-defined range).
UNAUTHORIZED = -32001
FORBIDDEN = -32003
RATE_LIMITED = -32029

_T = TypeVar("_T")

INSTRUCTIONS = (
    "VoiceAI holds one clinic's recorded consultations and their transcripts (Japanese and English), nothing of "
    "any other clinic. Find consultations with search_consultations (by words or quoted phrases in the transcript, "
    "date range, external reference, status), then read one with get_transcript; each hit names the segment and "
    "its time. Results come in pages: pass next_offset as offset for the next one. Every transcript you read is "
    "recorded in the clinic's audit log under your client's name."
)

mcp_server = MCPServer(
    "voiceai",
    title="VoiceAI consultations",
    instructions=INSTRUCTIONS,
    version="1",
)

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)

SessionId = Annotated[UUID, Field(description="The consultation's id (session_id in search results).")]
Offset = Annotated[int, Field(ge=0, le=reads.MAX_OFFSET, description="Where the page starts; next_offset of the last.")]


# --- who is calling -----------------------------------------------------------------


def _stdio_principal() -> Principal:
    raw = os.environ.get(API_KEY_ENV, "").strip()
    if not raw:
        raise MCPError(
            code=UNAUTHORIZED,
            message=f"No API key: set {API_KEY_ENV} to a clinic API key in the MCP client's configuration.",
            data={"code": "not_authenticated"},
        )
    key = api_key_authenticate(raw)
    if key is None:
        raise MCPError(
            code=UNAUTHORIZED,
            message=f"The API key in {API_KEY_ENV} is invalid or revoked.",
            data={"code": "authentication_failed"},
        )
    return principal_for_caller(api_key=key)


def _caller(ctx: Context) -> tuple[Principal | None, str]:
    """The principal ``agents.http`` left on the request (None on stdio) and
    the client's name from its ``initialize``."""
    request = ctx.request_context.request
    scope = getattr(request, "scope", None)
    principal = scope.get(SCOPE_PRINCIPAL) if isinstance(scope, dict) else None
    if scope is not None and principal is None:
        # An HTTP request that did not come through agents.http: never fall back to the stdio key.
        raise MCPError(code=UNAUTHORIZED, message="Authentication required.", data={"code": "not_authenticated"})
    params = ctx.session.client_params
    name = params.client_info.name if params is not None and params.client_info is not None else ""
    return principal, (name or DEFAULT_CLIENT)[:64]


def _admit(principal: Principal | None) -> Principal:
    """The gate every call passes, in the worker thread: who (stdio: the
    environment's key), MCP on for the clinic and this key role, rate."""
    try:
        if principal is None:
            principal = _stdio_principal()
        require_mcp_access(principal)
        rate_limit_hit(
            RateLimit(scope="mcp", limit=settings.MCP_CALLS_PER_MINUTE, window_seconds=60),
            principal.label,  # api-key:<prefix>: the prefix is random and never reused
        )
    except RateLimited as exc:
        raise MCPError(code=RATE_LIMITED, message=exc.message, data={"code": exc.code, **exc.details}) from None
    except Forbidden as exc:
        raise MCPError(code=FORBIDDEN, message=exc.message, data={"code": exc.code}) from None
    return principal


async def _run(ctx: Context, read: Callable[[Principal, str], _T], *, resource: bool = False) -> _T:
    """Admit the caller, then ``read(principal, client)`` in a worker thread.
    Domain errors become the MCP error the kind of call expects."""
    principal, client = _caller(ctx)

    def call() -> _T:
        return read(_admit(principal), client)

    try:
        return await db_async(call)()
    except NotFound as exc:
        if resource:
            raise ResourceNotFoundError(exc.message) from None
        raise ToolError(f"{exc.message} ({exc.code})") from None
    except DomainError as exc:
        if resource:
            raise ResourceError(f"{exc.message} ({exc.code})") from None
        raise ToolError(f"{exc.message} ({exc.code})") from None


# --- tools ------------------------------------------------------------------------------


@mcp_server.tool(
    title="Search consultations",
    annotations=READ_ONLY,
    description=(
        "Find this clinic's consultations. With `text`: the transcript segments (finals, latest corrections) "
        'containing every word or "quoted phrase" — Japanese or English, case-insensitive — best match first, '
        "each with its session_id, segment_id, start/end time in ms, speaker and a snippet; pass the session_id to "
        "get_transcript to read around it. Without `text`: the consultations, newest first. Filter by date "
        "(created_after/created_before, ISO 8601), external_ref (the integrator's id, exact), status and language. "
        f"At most {reads.MAX_PAGE} results per call; page with offset = next_offset (null: no more)."
    ),
)
async def search_consultations(
    ctx: Context,
    text: Annotated[
        str | None,
        Field(max_length=200, description='Words or "quoted phrases" that must all occur, e.g. 頭痛 or "chest pain".'),
    ] = None,
    created_after: Annotated[
        datetime | None, Field(description="Consultations created at or after (ISO 8601).")
    ] = None,
    created_before: Annotated[datetime | None, Field(description="Consultations created before (ISO 8601).")] = None,
    external_ref: Annotated[
        str | None, Field(max_length=128, description="The integrator's reference for the consultation (exact).")
    ] = None,
    status: Annotated[
        Literal["created", "live", "ended", "failed"] | None, Field(description="Only consultations in this state.")
    ] = None,
    language: Annotated[
        Literal["ja-JP", "en-US"] | None, Field(description="Only consultations in this language.")
    ] = None,
    offset: Offset = 0,
    limit: Annotated[int, Field(ge=1, le=reads.MAX_PAGE, description="Results per page.")] = 10,
) -> dict[str, Any]:
    return await _run(
        ctx,
        lambda principal, client: reads.consultations_search(
            principal=principal,
            client=client,
            text=text,
            status=status,
            language=language,
            external_ref=external_ref,
            created_after=created_after,
            created_before=created_before,
            offset=offset,
            limit=limit,
        ),
    )


@mcp_server.tool(
    title="Get a consultation's transcript",
    annotations=READ_ONLY,
    description=(
        "The transcript of one consultation: its final segments in time order, each with segment_id, speaker, "
        "start_ms/end_ms, confidence and its latest text (clinicians' corrections applied). With "
        "include_revisions, also each segment's original engine text and its corrections (who, when, before, "
        f"after). Long consultations come in pages of at most {reads.MAX_SEGMENTS_PAGE} segments: pass next_offset "
        "as offset. An id of another clinic, or none, is 'Session not found'."
    ),
)
async def get_transcript(
    ctx: Context,
    session_id: SessionId,
    include_revisions: Annotated[bool, Field(description="Add each segment's correction history.")] = False,
    offset: Offset = 0,
    limit: Annotated[int, Field(ge=1, le=reads.MAX_SEGMENTS_PAGE, description="Segments per page.")] = 200,
) -> dict[str, Any]:
    return await _run(
        ctx,
        lambda principal, client: reads.transcript_get(
            principal=principal,
            client=client,
            session_id=str(session_id),
            include_revisions=include_revisions,
            offset=offset,
            limit=limit,
        ),
    )


@mcp_server.tool(
    title="Get a consultation's note",
    annotations=READ_ONLY,
    description=(
        "The SOAP note of one consultation: its latest version, with sections (subjective, objective, assessment, "
        "plan), sentences and the transcript segment ids each sentence is drawn from (evidence). A draft that no "
        "clinician has signed comes with a message saying so; only a signed note is part of the record. Before a "
        "draft exists: note = null with a message; use get_transcript for what was said."
    ),
)
async def get_note(ctx: Context, session_id: SessionId) -> dict[str, Any]:
    return await _run(ctx, lambda principal, client: reads.note_get(principal=principal, session_id=str(session_id)))


@mcp_server.tool(
    title="List live consultations",
    annotations=READ_ONLY,
    description=(
        "The consultations being recorded right now (status live), newest first, without transcript text. "
        f"At most {reads.MAX_PAGE} per call; page with offset = next_offset."
    ),
)
async def list_live_sessions(
    ctx: Context,
    offset: Offset = 0,
    limit: Annotated[int, Field(ge=1, le=reads.MAX_PAGE, description="Results per page.")] = 20,
) -> dict[str, Any]:
    return await _run(ctx, lambda principal, client: reads.live_list(principal=principal, offset=offset, limit=limit))


# --- resources --------------------------------------------------------------------------


@mcp_server.resource(
    "consultation://{session_id}/transcript",
    name="consultation-transcript",
    title="Consultation transcript",
    description=(
        "A consultation's transcript as JSON (final segments, speakers, times, latest text), to attach as context. "
        f"Cut at {reads.RESOURCE_MAX_SEGMENTS} segments (next_offset then says where get_transcript goes on)."
    ),
    mime_type="application/json",
)
async def transcript_resource(session_id: str, ctx: Context) -> dict[str, Any]:
    return await _run(
        ctx,
        lambda principal, client: reads.transcript_get(
            principal=principal,
            client=client,
            session_id=session_id,
            limit=reads.RESOURCE_MAX_SEGMENTS,
            max_limit=reads.RESOURCE_MAX_SEGMENTS,
        ),
        resource=True,
    )


@mcp_server.resource(
    "consultation://{session_id}/note",
    name="consultation-note",
    title="Consultation note",
    description=(
        "A consultation's SOAP note as JSON (latest version, with its evidence segment ids; a draft says it is "
        "unsigned); note = null, with a message, before a draft exists."
    ),
    mime_type="application/json",
)
async def note_resource(session_id: str, ctx: Context) -> dict[str, Any]:
    return await _run(
        ctx, lambda principal, client: reads.note_get(principal=principal, session_id=session_id), resource=True
    )
