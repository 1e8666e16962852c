"""Both transports with the SDK's own client: stdio (``python -m agents``
as a subprocess, the key in VOICEAI_API_KEY) and streamable HTTP (``/mcp``
on a live server process), each against the suite's test database.

The cross-clinic walk: clinic B's key calls every tool and reads every
resource with clinic A's ids and search terms, over each transport, and
sees nothing — the same answer as for an id that exists nowhere."""

import http.client
import json
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from clinics.audit import AuditAction
from clinics.models import AuditEvent
from tests.agents.conftest import CLIENT_NAME, Consultations, http_client, stdio_client
from tests.servers import requires_shared_database
from voiceai.db import db_async

pytestmark = [pytest.mark.slow, requires_shared_database(), pytest.mark.django_db(transaction=True)]

Connect = Callable[[str], AbstractAsyncContextManager[Client]]


@pytest.fixture(params=["stdio", "http-legacy", "http-modern"])
def connect(request, consultations, server_factory) -> Connect:
    """``connect(raw_key)``: an SDK client over the transport (HTTP: with the
    initialize handshake, and with the 2026-07-28 per-request envelope)."""
    if request.param == "stdio":
        media = str(server_factory.media_root)
        return lambda raw_key: stdio_client(raw_key, media)
    server = server_factory()
    mode = "legacy" if request.param == "http-legacy" else "auto"
    return lambda raw_key: http_client(server.url, raw_key, mode=mode)


def _data(result) -> dict[str, Any]:
    assert not result.is_error, result.content
    return result.structured_content


@db_async
def _read_audits() -> list[tuple[str, dict]]:
    rows = AuditEvent.objects.filter(action=AuditAction.TRANSCRIPT_READ).order_by("id")
    return [(row.object_id, row.details) for row in rows]


async def test_it_lists_reads_and_searches_in_japanese_and_english(connect: Connect, consultations: Consultations):
    async with connect(consultations.key_a_admin) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        listed = _data(await client.call_tool("search_consultations", {"status": "ended"}))
        ja = _data(await client.call_tool("search_consultations", {"text": "頭痛"}))
        en = _data(await client.call_tool("search_consultations", {"text": "headache"}))
        transcript = _data(await client.call_tool("get_transcript", {"session_id": str(consultations.ja.pk)}))
        resource = await client.read_resource(f"consultation://{consultations.en.pk}/transcript")
    assert tools == {"search_consultations", "get_transcript", "get_note", "list_live_sessions"}
    assert {c["session_id"] for c in listed["consultations"]} == {str(consultations.ja.pk), str(consultations.en.pk)}
    assert [h["segment_id"] for h in ja["hits"]] == ["j2"]
    assert [h["segment_id"] for h in en["hits"]] == ["e2"]
    assert transcript["segments"][1]["text"] == "先週の火曜日から頭痛がひどくて、夜も眠れません。"
    assert json.loads(resource.contents[0].text)["consultation"]["session_id"] == str(consultations.en.pk)
    audits = await _read_audits()
    assert [(object_id, details["format"], details["via"]) for object_id, details in audits] == [
        (str(consultations.ja.pk), "search", "mcp"),
        (str(consultations.en.pk), "search", "mcp"),
        (str(consultations.ja.pk), "json", "mcp"),
        (str(consultations.en.pk), "json", "mcp"),
    ]


async def test_it_shows_clinic_b_nothing_of_clinic_a_through_any_tool_or_resource(
    connect: Connect, consultations: Consultations
):
    a_ids = [str(consultations.ja.pk), str(consultations.en.pk), str(consultations.live.pk)]
    async with connect(consultations.key_b) as client:
        for text in ("頭痛", "headache", "migraine", "today"):
            assert _data(await client.call_tool("search_consultations", {"text": text}))["hits"] == []
        for ref in ("ja-ref-1", "en-ref-1", "live-ref"):
            found = _data(await client.call_tool("search_consultations", {"external_ref": ref}))
            assert found["consultations"] == []
        assert _data(await client.call_tool("search_consultations", {}))["consultations"] == []
        assert _data(await client.call_tool("list_live_sessions", {}))["consultations"] == []
        missing_id = str(uuid.uuid4())
        answers_by_id: dict[str, list[str]] = {}
        for session_id in [*a_ids, missing_id]:
            answers = answers_by_id[session_id] = []
            for tool in ("get_transcript", "get_note"):
                result = await client.call_tool(tool, {"session_id": session_id})
                assert result.is_error
                answers.append(result.content[0].text)
            for kind in ("transcript", "note"):
                with pytest.raises(MCPError) as refused:
                    await client.read_resource(f"consultation://{session_id}/{kind}")
                answers.append(refused.value.error.message)
    # Another clinic's consultation answers exactly like one that exists nowhere.
    nowhere = answers_by_id.pop(missing_id)
    assert all("Session not found." in answer for answer in nowhere)
    assert list(answers_by_id.values()) == [nowhere] * len(a_ids)
    assert await _read_audits() == []


async def test_it_names_the_mcp_client_in_the_audit_row(connect: Connect, consultations: Consultations, request):
    async with connect(consultations.key_a_admin) as client:
        _data(await client.call_tool("get_transcript", {"session_id": str(consultations.en.pk)}))
    [(_, details)] = await _read_audits()
    # stdio keeps the connection's initialize; stateless HTTP knows the name
    # only when the client sends it with each request (2026-07-28), else "mcp".
    assert details["client"] == ("mcp" if "http-legacy" in request.node.callspec.id else CLIENT_NAME)


async def test_it_refuses_calls_while_mcp_is_off(connect: Connect, consultations: Consultations):
    @db_async
    def switch_off() -> None:
        clinic = consultations.ja.clinic
        clinic.mcp_enabled = False
        clinic.save(update_fields=["mcp_enabled"])

    await switch_off()
    async with connect(consultations.key_a_admin) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("search_consultations", {"text": "頭痛"})
    assert refused.value.error.data["code"] == "mcp_disabled"


def test_it_refuses_http_without_a_valid_api_key(consultations, server_factory):
    server = server_factory()
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}},
    }
    for header, code in [
        (None, "not_authenticated"),
        ("Api-Key", "not_authenticated"),
        ("Bearer something", "not_authenticated"),
        ("Api-Key vai_bogus_key", "authentication_failed"),
        (f"Api-Key {consultations.key_a_admin}x", "authentication_failed"),
    ]:
        headers = {"Accept": "application/json, text/event-stream", **({"Authorization": header} if header else {})}
        response = httpx2.post(f"{server.url}/mcp", json=initialize, headers=headers, timeout=10)
        assert response.status_code == 401, header
        assert response.json()["error"]["code"] == code
        assert response.headers["www-authenticate"] == "Api-Key"
    authorized = {"Accept": "application/json, text/event-stream", "Authorization": f"Api-Key {consultations.key_b}"}
    answered = httpx2.post(f"{server.url}/mcp", json=initialize, headers=authorized, timeout=10)
    assert answered.status_code == 200
    assert answered.headers["cache-control"] == "private, no-store"


def test_it_keeps_the_body_limit_in_front_of_mcp(consultations, server_factory):
    server = server_factory()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("POST", "/mcp")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", "5000000000")  # announced, never sent
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"]["code"] == "request_too_large"
    conn.close()
